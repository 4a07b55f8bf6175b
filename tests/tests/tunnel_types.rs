//! Every type of `docs/type-mapping.md`, edge values included, through the
//! tunnel: the reader runs on the agent, the batches cross a real QUIC
//! tunnel, the writer runs on the broker. Each target is checked cell by
//! cell with SQL (psql, mariadb, sqlite3).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use ferry_broker::jobs::{JobState, JobStatus};
use ferry_engine::summary::Summary;
use ferry_tests::db::{pg_url, MyDb, PgSchema};

/// Cells as `storage-class:value` (SQLite's `typeof`), NULL as is.
fn typed(class: &str, cells: &[&str]) -> Vec<String> {
    cells
        .iter()
        .map(|x| {
            if *x == "NULL" {
                x.to_string()
            } else {
                format!("{class}:{x}")
            }
        })
        .collect()
}

/// Separator between cells in one aggregated query result.
const SEP: char = '\u{1e}';

/// `DECIMAL(65,30)` / `numeric(65,30)` maximum.
fn d65_max() -> String {
    format!("{}.{}", "9".repeat(35), "9".repeat(30))
}

/// All 256 byte values, lowercase hex.
fn all_bytes_hex() -> String {
    (0..=255u8).map(|b| format!("{b:02x}")).collect()
}

const TEXT1: &str = "🚀👍🏽 中文 'q' \"dq\" back\\slash\ttab\nnewline";

/// Asserts success and returns the summary.
fn succeeded(status: &JobStatus, rows: u64) -> Summary {
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    let summary = status.summary.clone().expect("summary");
    assert_eq!(summary.records_written, rows, "{summary:?}");
    assert!(summary.wire_bytes > 0, "wire bytes counted: {summary:?}");
    summary
}

/// Splits one aggregated cell list (NULL shown as `NULL`).
fn split_cells(out: &str) -> Vec<String> {
    let out = out.strip_suffix('\n').unwrap_or(out);
    out.split(SEP).map(String::from).collect()
}

/// One column's cells in the target, in `id` order.
fn pg_cells(pg: &PgSchema, table: &str, expr: &str) -> Vec<String> {
    split_cells(&pg.sql(&format!(
        "SELECT string_agg(coalesce(({expr})::text, 'NULL'), E'\\x1e' ORDER BY id) FROM {table}"
    )))
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = Command::new("sqlite3")
        .args(["-batch", "-noheader"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("the sqlite3 CLI runs (apt-get install sqlite3; .ci/run installs it)");
    assert!(
        out.status.success(),
        "sqlite3 failed: {}\nSQL: {sql}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sqlite_cells(db: &Path, table: &str, expr: &str) -> Vec<String> {
    split_cells(&sqlite(
        db,
        &format!(
            "SELECT group_concat(coalesce({expr}, 'NULL'), char(30)) FROM (SELECT * FROM {table} ORDER BY id)"
        ),
    ))
}

/// Compares every column's cells with the expected ones; reports every
/// mismatch at once.
fn check_cells(what: &str, checks: &[(&str, Vec<String>)], cells: impl Fn(&str) -> Vec<String>) {
    let mut bad = Vec::new();
    for (expr, want) in checks {
        let got = cells(expr);
        if &got != want {
            bad.push(format!("  {expr}:\n    want {want:?}\n    got  {got:?}"));
        }
    }
    assert!(bad.is_empty(), "{what}: cells differ\n{}", bad.join("\n"));
}

/// A double's exact bits, as SQLite's `hex(ieee754_to_blob(x))` shows them.
fn bits(x: f64) -> String {
    format!("{:016X}", x.to_bits())
}

fn v(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// The MySQL table of every type.

/// Every MySQL type of the mapping table. Rows: 1 minimums, 2 maximums,
/// 3 small / odd values, 4 NULL everywhere, 5 zero dates, -0.0 and the
/// remaining edges (inserted with `sql_mode = ''`).
fn my_every_type(my: &MyDb) {
    let d65 = d65_max();
    let d650 = "9".repeat(65);
    let b64 = "1".repeat(64);
    let all = all_bytes_hex();
    my.sql(&format!(
        r#"SET time_zone = '+08:00';
        CREATE TABLE t (
          id INT PRIMARY KEY,
          ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED,
          mi MEDIUMINT, miu MEDIUMINT UNSIGNED, i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
          d65 DECIMAL(65,30), d650 DECIMAL(65,0), d18 DECIMAL(18,4), f FLOAT, db DOUBLE,
          ch CHAR(3), vc VARCHAR(100), tx TEXT, bn BINARY(4), vb VARBINARY(300), bl BLOB,
          dt DATE, dtm DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6), yr YEAR,
          en ENUM('a','b','c'), st SET('x','y','z'), js JSON, b1 BIT(1), b64 BIT(64), bo BOOLEAN,
          zd DATE NULL, zdt DATETIME NULL, geo GEOMETRY NULL
        ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
        INSERT INTO t VALUES
         (1, -128, 0, -32768, 0, -8388608, 0, -2147483648, 0, -9223372036854775808, 0,
          '-{d65}', '-{d650}', -99999999999999.9999, -3.4028234663852886e38, -1.7976931348623157e308,
          'ab', '🚀👍🏽 中文 ''q'' "dq" back\\slash\ttab\nnewline', '', X'00', X'00', X'0000FF00',
          '1000-01-01', '1000-01-01 00:00:00.000001', '1970-01-01 08:00:01', '-838:59:59', 1901,
          'a', '', '{{"a": [1, 2, {{"b": null}}], "ü": "東京 🚀"}}', b'0', 0, 0,
          '2024-02-29', '2024-02-29 12:00:00', ST_GeomFromText('POINT(1 2)')),
         (2, 127, 255, 32767, 65535, 8388607, 16777215, 2147483647, 4294967295,
          9223372036854775807, 18446744073709551615,
          '{d65}', '{d650}', 99999999999999.9999, 3.4028234663852886e38, 1.7976931348623157e308,
          'xyz', '', '漢字 🚀 한국어', X'FFFFFFFF', X'{all}', X'',
          '9999-12-31', '9999-12-31 23:59:59.999999', '2038-01-19 11:14:07.999999', '838:59:59', 2155,
          'c', 'x,y,z', '[]', b'1', b'{b64}', 1, NULL, NULL, ST_GeomFromText('LINESTRING(0 0, 1.5 -2)')),
         (3, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
          '-0.000000000000000000000000000001', '0', 0.0001, 1.17549435e-38, 2.2250738585072014e-308,
          '', ' a ', 'trailing space ', X'0000FF00', X'0000FF00', X'00000000',
          '2024-02-29', '2024-02-29 23:59:59.5', '2024-01-01 08:00:00.123456', '-01:00:00.5', 0,
          'b', 'y', '"str"', b'1', b'1010', 127, NULL, NULL, NULL),
         (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
          NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        SET SESSION sql_mode = '';
        INSERT INTO t (id, f, db, tm, bo, zd, zdt)
          VALUES (5, -0.0e0, -0.0e0, '25:00:00.000001', -128, '0000-00-00', '0000-00-00 00:00:00');"#
    ));
}

fn mysql_rig_source(url: &str) -> RigSource<'_> {
    RigSource {
        name: "legacy",
        kind: "mysql",
        url,
        extra: "",
    }
}

// ---------------------------------------------------------------------------
// 1. MySQL -> PostgreSQL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_every_type_to_postgres_cell_by_cell() {
    let Some(my) = MyDb::new("ferry_tt_my") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_tt_dst") else {
        return;
    };
    my_every_type(&my);
    let url = my.url();
    let rig = Rig::start(&[mysql_rig_source(&url)]).await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: t\n    splitPk: id\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.t\n    createTable: true\n",
        rig.datasource("legacy"),
        pg_url(),
        dst.name
    );
    let status = rig.run(&job).await;
    let summary = succeeded(&status, 5);
    assert_eq!(summary.dirty_records, 0, "{summary:?}");
    // The zero dates read as NULL are counted in the summary, per column, across the tunnel.
    assert_eq!(
        summary.changes.entries().collect::<Vec<_>>(),
        vec![
            ("zd", "zero date read as NULL", 1),
            ("zdt", "zero date read as NULL", 1)
        ],
        "{summary:?}"
    );
    rig.stop().await;

    // Column types created by createTable, as documented (the ENUM as an enum type).
    let types = dst.sql(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
           FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped",
    );
    assert_eq!(
        types.trim(),
        "id integer, ti smallint, tiu smallint, si smallint, siu integer, mi integer, miu bigint, \
         i integer, iu bigint, bi bigint, biu numeric(20,0), d65 numeric(65,30), d650 numeric(65,0), \
         d18 numeric(18,4), f real, db double precision, ch character varying(3), \
         vc character varying(100), tx text, bn bytea, vb bytea, bl bytea, dt date, \
         dtm timestamp without time zone, ts timestamp with time zone, tm interval, yr smallint, \
         en t_en, st text, js jsonb, b1 numeric(20,0), b64 numeric(20,0), bo smallint, zd date, \
         zdt timestamp without time zone, geo bytea"
    );

    let d65 = d65_max();
    let d650 = "9".repeat(65);
    let all = all_bytes_hex();
    let n = "NULL";
    let geo_hex: Vec<String> = my
        .sql("SELECT COALESCE(LOWER(HEX(geo)), 'NULL') FROM t ORDER BY id")
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(geo_hex.len(), 5);
    assert!(
        geo_hex[0].starts_with("00000000"),
        "SRID 0 then WKB: {geo_hex:?}"
    );
    let checks: Vec<(&str, Vec<String>)> = vec![
        ("id", v(&["1", "2", "3", "4", "5"])),
        ("ti", v(&["-128", "127", "0", n, n])),
        ("tiu", v(&["0", "255", "1", n, n])),
        ("si", v(&["-32768", "32767", "0", n, n])),
        ("siu", v(&["0", "65535", "1", n, n])),
        ("mi", v(&["-8388608", "8388607", "0", n, n])),
        ("miu", v(&["0", "16777215", "1", n, n])),
        ("i", v(&["-2147483648", "2147483647", "0", n, n])),
        ("iu", v(&["0", "4294967295", "1", n, n])),
        (
            "bi",
            v(&["-9223372036854775808", "9223372036854775807", "0", n, n]),
        ),
        ("biu", v(&["0", "18446744073709551615", "1", n, n])),
        (
            "d65",
            v(&[
                &format!("-{d65}"),
                &d65,
                "-0.000000000000000000000000000001",
                n,
                n,
            ]),
        ),
        ("d650", v(&[&format!("-{d650}"), &d650, "0", n, n])),
        (
            "d18",
            v(&[
                "-99999999999999.9999",
                "99999999999999.9999",
                "0.0001",
                n,
                n,
            ]),
        ),
        // MariaDB does not keep the sign of -0.0 in a FLOAT / DOUBLE.
        (
            "f",
            v(&["-3.4028235e+38", "3.4028235e+38", "1.1754944e-38", n, "0"]),
        ),
        (
            "db",
            v(&[
                "-1.7976931348623157e+308",
                "1.7976931348623157e+308",
                "2.2250738585072014e-308",
                n,
                "0",
            ]),
        ),
        ("ch", v(&["ab", "xyz", "", n, n])),
        ("vc", v(&[TEXT1, "", " a ", n, n])),
        ("tx", v(&["", "漢字 🚀 한국어", "trailing space ", n, n])),
        (
            "encode(bn, 'hex')",
            v(&["00000000", "ffffffff", "0000ff00", n, n]),
        ),
        ("encode(vb, 'hex')", v(&["00", &all, "0000ff00", n, n])),
        ("encode(bl, 'hex')", v(&["0000ff00", "", "00000000", n, n])),
        ("dt", v(&["1000-01-01", "9999-12-31", "2024-02-29", n, n])),
        (
            "dtm",
            v(&[
                "1000-01-01 00:00:00.000001",
                "9999-12-31 23:59:59.999999",
                "2024-02-29 23:59:59.5",
                n,
                n,
            ]),
        ),
        // Inserted by a +08:00 session: the same instants, in UTC.
        (
            "ts",
            v(&[
                "1970-01-01 00:00:01+00",
                "2038-01-19 03:14:07.999999+00",
                "2024-01-01 00:00:00.123456+00",
                n,
                n,
            ]),
        ),
        (
            "tm",
            v(&[
                "-838:59:59",
                "838:59:59",
                "-01:00:00.5",
                n,
                "25:00:00.000001",
            ]),
        ),
        (
            "extract(epoch from tm)",
            v(&[
                "-3020399.000000",
                "3020399.000000",
                "-3600.500000",
                n,
                "90000.000001",
            ]),
        ),
        ("yr", v(&["1901", "2155", "0", n, n])),
        ("en", v(&["a", "c", "b", n, n])),
        ("st", v(&["", "x,y,z", "y", n, n])),
        (
            "js",
            v(&[
                r#"{"a": [1, 2, {"b": null}], "ü": "東京 🚀"}"#,
                "[]",
                r#""str""#,
                n,
                n,
            ]),
        ),
        ("b1", v(&["0", "1", "1", n, n])),
        ("b64", v(&["0", "18446744073709551615", "10", n, n])),
        ("bo", v(&["0", "1", "127", n, "-128"])),
        // zeroDate: null (the default): a zero date arrives as NULL.
        ("zd", v(&["2024-02-29", n, n, n, n])),
        ("zdt", v(&["2024-02-29 12:00:00", n, n, n, n])),
        ("encode(geo, 'hex')", geo_hex),
    ];
    check_cells("MySQL -> PostgreSQL", &checks, |e| pg_cells(&dst, "t", e));
}

// ---------------------------------------------------------------------------
// 2. MySQL -> MySQL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_every_type_to_mysql_cell_by_cell() {
    let Some(my) = MyDb::new("ferry_tt_my") else {
        return;
    };
    let Some(out) = MyDb::new("ferry_tt_myout") else {
        return;
    };
    my_every_type(&my);
    let url = my.url();
    let rig = Rig::start(&[mysql_rig_source(&url)]).await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: t\n    splitPk: id\n\
         writer:\n  name: mysqlwriter\n  parameter:\n    url: {}\n    table: t\n    createTable: true\n",
        rig.datasource("legacy"),
        out.url(),
    );
    let status = rig.run(&job).await;
    let summary = succeeded(&status, 5);
    assert_eq!(summary.dirty_records, 0, "{summary:?}");
    rig.stop().await;

    // Column types created by createTable, as documented.
    let types = out.sql(&format!(
        "SELECT GROUP_CONCAT(CONCAT(COLUMN_NAME, ' ', COLUMN_TYPE) ORDER BY ORDINAL_POSITION SEPARATOR ', ')
           FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 't'",
        out.name
    ));
    assert_eq!(
        types.trim(),
        "id int(11), ti tinyint(4), tiu tinyint(3) unsigned, si smallint(6), siu smallint(5) unsigned, \
         mi int(11), miu int(10) unsigned, i int(11), iu int(10) unsigned, bi bigint(20), \
         biu bigint(20) unsigned, d65 decimal(65,30), d650 decimal(65,0), d18 decimal(18,4), f float, \
         db double, ch varchar(3), vc varchar(100), tx longtext, bn longblob, vb longblob, bl longblob, \
         dt date, dtm datetime(6), ts timestamp(6), tm time(6), yr year(4), en enum('a','b','c'), \
         st set('x','y','z'), js longtext, b1 bit(1), b64 bit(64), bo tinyint(1), zd date, \
         zdt datetime(6), geo geometry"
    );

    // Cell by cell: every column of every row, by value and by bytes.
    let cols = [
        "ti", "tiu", "si", "siu", "mi", "miu", "i", "iu", "bi", "biu", "d65", "d650", "d18", "f",
        "db", "ch", "vc", "tx", "bn", "vb", "bl", "dt", "dtm", "ts", "tm", "yr", "en", "st", "js",
        "b1", "b64", "bo", "geo",
    ];
    let (s, d) = (&my.name, &out.name);
    let mut bad = Vec::new();
    for c in cols {
        let ids = out.sql(&format!(
            "SELECT COALESCE(GROUP_CONCAT(id ORDER BY id), 'none') FROM {s}.t s LEFT JOIN {d}.t d USING (id)
              WHERE d.id IS NULL OR NOT (s.{c} <=> d.{c})
                 OR NOT (CAST(s.{c} AS BINARY) <=> CAST(d.{c} AS BINARY))"
        ));
        if ids.trim() != "none" {
            bad.push(format!("{c}: rows {}", ids.trim()));
        }
    }
    assert!(bad.is_empty(), "source and target differ: {bad:?}");
    assert_eq!(out.sql("SELECT COUNT(*) FROM t").trim(), "5");
    // The json column is still valid JSON, and unchanged text.
    assert_eq!(
        out.sql("SELECT JSON_VALUE(js, '$.\"ü\"') FROM t WHERE id = 1")
            .trim(),
        "東京 🚀"
    );
    // zeroDate: null: the zero dates of row 5 arrive as NULL.
    assert_eq!(
        out.sql("SELECT CONCAT_WS('|', id, IFNULL(zd, 'NULL'), IFNULL(zdt, 'NULL')) FROM t ORDER BY id"),
        "1|2024-02-29|2024-02-29 12:00:00.000000\n2|NULL|NULL\n3|NULL|NULL\n4|NULL|NULL\n5|NULL|NULL\n"
    );
}

// ---------------------------------------------------------------------------
// 3. PostgreSQL -> PostgreSQL

/// Every PostgreSQL type of the mapping table, inserted by an Asia/Shanghai
/// session. Rows: 1 minimums, 2 maximums, 3 zeros / NaN, 4 -0 and tiny
/// values, 5 denormals and the earliest dates, 6 NULL everywhere, 7 zone-less
/// literals read in Asia/Shanghai, `24:00:00`, an interval beyond 24 h.
fn pg_every_type(src: &PgSchema) {
    let nines38 = format!("{}.{}", "9".repeat(28), "9".repeat(10));
    let big65 = d65_max();
    let n76 = "9".repeat(76);
    let nu50 = "12345678901234567890123456789012345678901234567890";
    src.sql(&format!(
        r#"SET TimeZone = 'Asia/Shanghai';
        CREATE TABLE t (
            id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint,
            n38 numeric(38,10), n65 numeric(65,30), n76 numeric(76,0), nu numeric,
            r real, d double precision, t text, vc varchar(10), c char(3), b bytea,
            bo boolean, dt date, ts timestamp, tz timestamptz, tm time, iv interval,
            j json, jb jsonb, u uuid);
        INSERT INTO t VALUES
          (1, -32768, -2147483648, -9223372036854775808, -{nines38}, -{big65}, -{n76}, -{nu50},
           '-Infinity', '-Infinity', E'emoji 😀 CJK 中文 "q" ''s'' tab\t nl\n bs\\ end', '', 'ab',
           '\x00', false, '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00',
           '00:00:00', '-1 year -2 mons -3 days -00:00:00.000001',
           '{{"a": [1, 2, {{"b": null}}], "ü": "東京"}}', '{{"k": "v", "n": 1.50}}',
           '00000000-0000-0000-0000-000000000000'),
          (2, 32767, 2147483647, 9223372036854775807, {nines38}, {big65}, {n76},
           '1234567890123456789012345678901234567890.0123456789',
           'Infinity', 'Infinity', '', 'abcdefghij', 'xyz',
           (SELECT string_agg(set_byte('\x00'::bytea, 0, g), ''::bytea ORDER BY g)
              FROM generate_series(0, 255) g),
           true, '9999-12-31', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00',
           '23:59:59.999999', '1 year 2 mons 3 days 04:05:06.789012', '[]', '"str"',
           'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
          (3, 0, 0, 0, 0.0000000001, 0, 0, 'NaN', 'NaN', 'NaN', NULL, NULL, NULL, '', NULL,
           '1970-01-01', '1970-01-01 00:00:00', '2024-02-29 12:34:56.123456+00', NULL,
           '0 seconds', NULL, 'null', NULL),
          (4, NULL, NULL, NULL, -0.5, -0.000000000000000000000000000001, NULL,
           '0.000000000000000000000000000000000000000000000001', '-0', '-0',
           NULL, NULL, NULL, NULL, NULL, NULL, '2000-01-01 00:00:00.000001', NULL, NULL,
           NULL, NULL, NULL, NULL),
          (5, NULL, NULL, NULL, NULL, NULL, NULL, '0', 1.4e-45, 4.9406564584124654e-324, NULL, NULL,
           NULL, NULL, NULL, '4713-01-01 BC', '4713-01-01 00:00:00 BC', NULL, NULL, NULL, NULL, NULL, NULL),
          (6, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (7, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           '2024-06-20', '2024-06-20 08:00:00', '2024-06-20 08:00:00', '24:00:00', '838:59:59',
           NULL, NULL, NULL);"#
    ));
}

/// `url` with a libpq `options` parameter setting the session TimeZone.
fn pg_url_in_zone(zone: &str) -> String {
    let url = pg_url();
    let sep = if url.contains('?') { '&' } else { '?' };
    format!(
        "{url}{sep}options=-c%20TimeZone%3D{}",
        zone.replace('/', "%2F")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_type_to_postgres_cell_by_cell() {
    let Some(src) = PgSchema::new("ferry_tt_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_tt_dst") else {
        return;
    };
    pg_every_type(&src);
    // The agent's own sessions start in Asia/Shanghai too.
    let src_url = pg_url_in_zone("Asia/Shanghai");
    let rig = Rig::start(&[RigSource {
        name: "warehouse",
        kind: "postgres",
        url: &src_url,
        extra: "",
    }])
    .await;
    // The writer's session is moved to America/New_York by preSql (sqlx
    // sends `TimeZone=UTC` as a startup parameter, which wins over an
    // `options=-c TimeZone=...` URL parameter; the SET sticks to the pooled
    // connection that then writes).
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {s}.t\n    splitPk: id\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.t\n    createTable: true\n\
         \x20   preSql: [\"SET TimeZone = 'America/New_York'; CREATE TABLE {d}.zone AS SELECT current_setting('TimeZone') AS z\"]\n",
        ds = rig.datasource("warehouse"),
        s = src.name,
        d = dst.name,
        url = pg_url(),
    );
    let status = rig.run(&job).await;
    let summary = succeeded(&status, 7);
    assert_eq!(summary.dirty_records, 0, "{summary:?}");
    rig.stop().await;
    assert_eq!(dst.sql("SELECT z FROM zone").trim(), "America/New_York");

    let types = dst.sql(
        "SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' ORDER BY attnum)
           FROM pg_attribute WHERE attrelid = 't'::regclass AND attnum > 0 AND NOT attisdropped",
    );
    assert_eq!(
        types.trim(),
        "id integer, i2 smallint, i4 integer, i8 bigint, n38 numeric(38,10), n65 numeric(65,30), \
         n76 numeric(76,0), nu numeric, r real, d double precision, t text, vc character varying(10), \
         c character varying(3), b bytea, bo boolean, dt date, ts timestamp without time zone, \
         ts_placeholder"
            .replace(
                "ts_placeholder",
                "tz timestamp with time zone, tm time without time zone, iv interval, j jsonb, jb jsonb, u uuid"
            )
    );

    // Every column equal to the source (read back in UTC).
    let mut bad = Vec::new();
    for c in [
        "i2", "i4", "i8", "n38", "n65", "n76", "nu", "r", "d", "t", "vc", "b", "bo", "dt", "ts",
        "tz", "tm", "iv", "j::jsonb", "jb", "u",
    ] {
        let cc = c.split("::").next().unwrap();
        let ids = dst.sql(&format!(
            "SELECT coalesce(string_agg(id::text, ',' ORDER BY id), 'none')
               FROM {s}.t s FULL JOIN t d USING (id)
              WHERE (s.{c})::text IS DISTINCT FROM (d.{cc})::text",
            s = src.name
        ));
        if ids.trim() != "none" {
            bad.push(format!("{c}: rows {}", ids.trim()));
        }
    }
    assert!(bad.is_empty(), "source and target differ: {bad:?}");

    // And the literal cells, in UTC.
    let nines38 = format!("{}.{}", "9".repeat(28), "9".repeat(10));
    let big65 = d65_max();
    let n76 = "9".repeat(76);
    let nu50 = "12345678901234567890123456789012345678901234567890";
    let all = all_bytes_hex();
    let n = "NULL";
    let checks: Vec<(&str, Vec<String>)> = vec![
        ("i2", v(&["-32768", "32767", "0", n, n, n, n])),
        ("i4", v(&["-2147483648", "2147483647", "0", n, n, n, n])),
        (
            "i8",
            v(&[
                "-9223372036854775808",
                "9223372036854775807",
                "0",
                n,
                n,
                n,
                n,
            ]),
        ),
        (
            "n38",
            v(&[
                &format!("-{nines38}"),
                &nines38,
                "0.0000000001",
                "-0.5000000000",
                n,
                n,
                n,
            ]),
        ),
        (
            "n65",
            v(&[
                &format!("-{big65}"),
                &big65,
                "0.000000000000000000000000000000",
                "-0.000000000000000000000000000001",
                n,
                n,
                n,
            ]),
        ),
        ("n76", v(&[&format!("-{n76}"), &n76, "0", n, n, n, n])),
        (
            "nu",
            v(&[
                &format!("-{nu50}"),
                "1234567890123456789012345678901234567890.0123456789",
                "NaN",
                "0.000000000000000000000000000000000000000000000001",
                "0",
                n,
                n,
            ]),
        ),
        (
            "r",
            v(&["-Infinity", "Infinity", "NaN", "-0", "1e-45", n, n]),
        ),
        (
            "d",
            v(&["-Infinity", "Infinity", "NaN", "-0", "5e-324", n, n]),
        ),
        (
            "t",
            v(&[
                "emoji 😀 CJK 中文 \"q\" 's' tab\t nl\n bs\\ end",
                "",
                n,
                n,
                n,
                n,
                n,
            ]),
        ),
        ("vc", v(&["", "abcdefghij", n, n, n, n, n])),
        ("c", v(&["ab ", "xyz", n, n, n, n, n])),
        ("encode(b, 'hex')", v(&["00", &all, "", n, n, n, n])),
        ("bo", v(&["false", "true", n, n, n, n, n])),
        (
            "dt",
            v(&[
                "0001-01-01",
                "9999-12-31",
                "1970-01-01",
                n,
                "4713-01-01 BC",
                n,
                "2024-06-20",
            ]),
        ),
        (
            "ts",
            v(&[
                "0001-01-01 00:00:00",
                "9999-12-31 23:59:59.999999",
                "1970-01-01 00:00:00",
                "2000-01-01 00:00:00.000001",
                "4713-01-01 00:00:00 BC",
                n,
                "2024-06-20 08:00:00",
            ]),
        ),
        (
            "tz",
            v(&[
                "0001-01-01 00:00:00+00",
                "9999-12-31 23:59:59.999999+00",
                "2024-02-29 12:34:56.123456+00",
                n,
                n,
                n,
                "2024-06-20 00:00:00+00",
            ]),
        ),
        (
            "tm",
            v(&["00:00:00", "23:59:59.999999", n, n, n, n, "24:00:00"]),
        ),
        (
            "iv",
            v(&[
                "-1 years -2 mons -3 days -00:00:00.000001",
                "1 year 2 mons 3 days 04:05:06.789012",
                "00:00:00",
                n,
                n,
                n,
                "838:59:59",
            ]),
        ),
        (
            "j",
            v(&[
                r#"{"a": [1, 2, {"b": null}], "ü": "東京"}"#,
                "[]",
                n,
                n,
                n,
                n,
                n,
            ]),
        ),
        (
            "jb",
            v(&[r#"{"k": "v", "n": 1.50}"#, r#""str""#, "null", n, n, n, n]),
        ),
        (
            "u",
            v(&[
                "00000000-0000-0000-0000-000000000000",
                "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                n,
                n,
                n,
                n,
                n,
            ]),
        ),
    ];
    check_cells("PostgreSQL -> PostgreSQL", &checks, |e| {
        pg_cells(&dst, "t", e)
    });
}

/// Values the doc says Arrow cannot hold, and types it does not map, fail
/// the job with an error naming the column (never a silent change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_values_without_a_mapping_fail_the_job() {
    let Some(src) = PgSchema::new("ferry_tt_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_tt_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE inf_d (id int, d date);           INSERT INTO inf_d VALUES (1, '2024-01-01'), (2, 'infinity');
         CREATE TABLE inf_ts (id int, ts timestamp);    INSERT INTO inf_ts VALUES (1, '-infinity');
         CREATE TABLE inf_tz (id int, tz timestamptz);  INSERT INTO inf_tz VALUES (1, 'infinity');
         CREATE TABLE nan_n (id int, nn numeric(10,2)); INSERT INTO nan_n VALUES (1, 1.5), (2, 'NaN');
         CREATE TABLE arr (id int, a int[]);            INSERT INTO arr VALUES (1, '{1,2}');",
    );
    let rig = Rig::start(&[RigSource {
        name: "warehouse",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    for (table, column) in [
        ("inf_d", "d"),
        ("inf_ts", "ts"),
        ("inf_tz", "tz"),
        ("nan_n", "nn"),
        ("arr", "a"),
    ] {
        let job = format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {s}.{table}\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.{table}\n    createTable: true\n",
            ds = rig.datasource("warehouse"),
            s = src.name,
            d = dst.name,
            url = pg_url(),
        );
        let status = rig.run(&job).await;
        assert_eq!(status.state, JobState::Failed, "{table}: {status:?}");
        let e = status.error.unwrap_or_default();
        eprintln!("{table}: {e}");
        assert!(e.contains(&format!("`{column}`")), "{table}: {e}");
    }
    rig.stop().await;
}

// ---------------------------------------------------------------------------
// 4. MySQL -> SQLite, PostgreSQL -> SQLite

/// Declared types of a SQLite table, `name TYPE, ...`.
fn sqlite_types(db: &Path, table: &str) -> String {
    sqlite(
        db,
        &format!(
            "SELECT group_concat(name || ' ' || type, ', ') FROM pragma_table_info('{table}')"
        ),
    )
    .trim()
    .to_string()
}

fn sqlite_url(db: &Path) -> String {
    format!("sqlite://{}", db.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_every_type_to_sqlite_cell_by_cell() {
    let Some(my) = MyDb::new("ferry_tt_my") else {
        return;
    };
    my_every_type(&my);
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("out.db");
    let url = my.url();
    let rig = Rig::start(&[mysql_rig_source(&url)]).await;
    // SQLite INTEGER is i64: BIGINT UNSIGNED / BIT(64) above i64::MAX are
    // dirty (row 2), so the full-table job writes 4 rows; the cell checks
    // read every other column of all 5 rows.
    let cols =
        "id, ti, tiu, si, siu, mi, miu, i, iu, bi, d65, d650, d18, f, db, ch, vc, tx, bn, vb, bl, \
                dt, dtm, ts, tm, yr, en, st, js, b1, bo, zd, zdt, geo";
    let job = |table: &str, column: &str| {
        format!(
            "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: t\n    splitPk: id\n{column}\
             writer:\n  name: sqlitewriter\n  parameter:\n    url: {}\n    table: {table}\n    createTable: true\n",
            rig.datasource("legacy"),
            sqlite_url(&db),
        )
    };
    let status = rig.run(&job("t", &format!("    column: [{cols}]\n"))).await;
    let summary = succeeded(&status, 5);
    assert_eq!(summary.dirty_records, 0, "{summary:?}");
    let status = rig.run(&job("t_all", "")).await;
    let summary = succeeded(&status, 4);
    assert_eq!(summary.dirty_records, 1, "{summary:?}");
    rig.stop().await;
    assert_eq!(
        sqlite(&db, "SELECT group_concat(id || ':' || biu || ':' || b64, ' ') FROM (SELECT * FROM t_all ORDER BY id)").trim(),
        "1:0:0 3:1:10",
        "rows 1 and 3 keep their unsigned values; row 2 is dirty, 4 and 5 are NULL there"
    );
    assert_eq!(
        sqlite(
            &db,
            "SELECT group_concat(id) FROM (SELECT id FROM t_all ORDER BY id)"
        )
        .trim(),
        "1,3,4,5"
    );

    assert_eq!(
        sqlite_types(&db, "t"),
        "id INTEGER, ti INTEGER, tiu INTEGER, si INTEGER, siu INTEGER, mi INTEGER, miu INTEGER, \
         i INTEGER, iu INTEGER, bi INTEGER, d65 DECIMAL TEXT(65,30), d650 DECIMAL TEXT(65,0), \
         d18 DECIMAL TEXT(18,4), f REAL, db REAL, ch VARCHAR(3), vc VARCHAR(100), tx TEXT, bn BLOB, \
         vb BLOB, bl BLOB, dt DATE, dtm DATETIME, ts DATETIME, tm TEXT, yr INTEGER, en TEXT, st TEXT, \
         js JSON, b1 INTEGER, bo INTEGER, zd DATE, zdt DATETIME, geo BLOB"
    );

    let d65 = d65_max();
    let d650 = "9".repeat(65);
    let all = all_bytes_hex().to_uppercase();
    let n = "NULL";
    let geo_hex: Vec<String> = my
        .sql("SELECT COALESCE(CONCAT('blob:', HEX(geo)), 'NULL') FROM t ORDER BY id")
        .lines()
        .map(String::from)
        .collect();
    let int = |c: &[&str]| typed("integer", c);
    let text = |c: &[&str]| typed("text", c);
    let blob = |c: &[&str]| typed("blob", c);
    let real = |c: &[&str]| typed("real", c);
    let checks: Vec<(&str, Vec<String>)> = vec![
        ("ti", int(&["-128", "127", "0", n, n])),
        ("tiu", int(&["0", "255", "1", n, n])),
        ("si", int(&["-32768", "32767", "0", n, n])),
        ("siu", int(&["0", "65535", "1", n, n])),
        ("mi", int(&["-8388608", "8388607", "0", n, n])),
        ("miu", int(&["0", "16777215", "1", n, n])),
        ("i", int(&["-2147483648", "2147483647", "0", n, n])),
        ("iu", int(&["0", "4294967295", "1", n, n])),
        (
            "bi",
            int(&["-9223372036854775808", "9223372036854775807", "0", n, n]),
        ),
        (
            "d65",
            text(&[
                &format!("-{d65}"),
                &d65,
                "-0.000000000000000000000000000001",
                n,
                n,
            ]),
        ),
        ("d650", text(&[&format!("-{d650}"), &d650, "0", n, n])),
        (
            "d18",
            text(&[
                "-99999999999999.9999",
                "99999999999999.9999",
                "0.0001",
                n,
                n,
            ]),
        ),
        (
            "f",
            real(&[
                &bits(-f32::MAX as f64),
                &bits(f32::MAX as f64),
                &bits(f32::MIN_POSITIVE as f64),
                n,
                &bits(0.0),
            ]),
        ),
        (
            "db",
            real(&[
                &bits(f64::MIN),
                &bits(f64::MAX),
                &bits(f64::MIN_POSITIVE),
                n,
                &bits(0.0),
            ]),
        ),
        ("ch", text(&["ab", "xyz", "", n, n])),
        ("vc", text(&[TEXT1, "", " a ", n, n])),
        ("tx", text(&["", "漢字 🚀 한국어", "trailing space ", n, n])),
        ("bn", blob(&["00000000", "FFFFFFFF", "0000FF00", n, n])),
        ("vb", blob(&["00", &all, "0000FF00", n, n])),
        ("bl", blob(&["0000FF00", "", "00000000", n, n])),
        (
            "dt",
            text(&["1000-01-01", "9999-12-31", "2024-02-29", n, n]),
        ),
        (
            "dtm",
            text(&[
                "1000-01-01 00:00:00.000001",
                "9999-12-31 23:59:59.999999",
                "2024-02-29 23:59:59.500000",
                n,
                n,
            ]),
        ),
        (
            "ts",
            text(&[
                "1970-01-01 00:00:01.000000",
                "2038-01-19 03:14:07.999999",
                "2024-01-01 00:00:00.123456",
                n,
                n,
            ]),
        ),
        (
            "tm",
            text(&[
                "-3020399.000000",
                "3020399.000000",
                "-3600.500000",
                n,
                "90000.000001",
            ]),
        ),
        ("yr", int(&["1901", "2155", "0", n, n])),
        ("en", text(&["a", "c", "b", n, n])),
        ("st", text(&["", "x,y,z", "y", n, n])),
        (
            "js",
            text(&[
                r#"{"a": [1, 2, {"b": null}], "ü": "東京 🚀"}"#,
                "[]",
                r#""str""#,
                n,
                n,
            ]),
        ),
        ("b1", int(&["0", "1", "1", n, n])),
        ("bo", int(&["0", "1", "127", n, "-128"])),
        ("zd", text(&["2024-02-29", n, n, n, n])),
        ("zdt", text(&["2024-02-29 12:00:00.000000", n, n, n, n])),
        ("geo", geo_hex),
    ];
    check_cells("MySQL -> SQLite", &checks, |c| {
        let expr = match c {
            "f" | "db" => {
                format!("nullif(typeof({c}), 'null') || ':' || hex(ieee754_to_blob({c}))")
            }
            "bn" | "vb" | "bl" | "geo" => format!("nullif(typeof({c}), 'null') || ':' || hex({c})"),
            _ => format!("nullif(typeof({c}), 'null') || ':' || {c}"),
        };
        sqlite_cells(&db, "t", &expr)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_every_type_to_sqlite_cell_by_cell() {
    let Some(src) = PgSchema::new("ferry_tt_src") else {
        return;
    };
    pg_every_type(&src);
    // SQLite has no NaN: checked on its own table, below.
    src.sql(
        "UPDATE t SET r = NULL, d = NULL WHERE id = 3;
         CREATE TABLE nan_f (id int, r real, d double precision);
         INSERT INTO nan_f VALUES (1, 1.5, 2.5), (2, 'NaN', 'NaN');",
    );
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("out.db");
    let rig = Rig::start(&[RigSource {
        name: "warehouse",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let job = |table: &str, column: &str| {
        format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {}\n    table: {}.t\n    splitPk: id\n{column}\
             writer:\n  name: sqlitewriter\n  parameter:\n    url: {}\n    table: {table}\n    createTable: true\n",
            rig.datasource("warehouse"),
            src.name,
            sqlite_url(&db),
        )
    };
    // interval (Interval(MonthDayNano)) has no SQLite column in the doc.
    let cols = "id, i2, i4, i8, n38, n65, n76, nu, r, d, t, vc, c, b, bo, dt, ts, tz, tm, j, jb, u";
    let status = rig.run(&job("t", &format!("    column: [{cols}]\n"))).await;
    let summary = succeeded(&status, 7);
    assert_eq!(summary.dirty_records, 0, "{summary:?}");
    let status = rig.run(&job("t_iv", "    column: [id, iv]\n")).await;
    assert_eq!(status.state, JobState::Failed, "{status:?}");
    let e = status.error.clone().unwrap_or_default();
    eprintln!("interval into SQLite: {e}");
    assert!(e.contains("iv"), "{e}");
    let nan_job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {}\n    table: {}.nan_f\n\
         writer:\n  name: sqlitewriter\n  parameter:\n    url: {}\n    table: nan_f\n    createTable: true\n",
        rig.datasource("warehouse"),
        src.name,
        sqlite_url(&db),
    );
    let nan_status = rig.run(&nan_job).await;
    rig.stop().await;

    assert_eq!(
        sqlite_types(&db, "t"),
        "id INTEGER, i2 INTEGER, i4 INTEGER, i8 INTEGER, n38 DECIMAL TEXT(38,10), \
         n65 DECIMAL TEXT(65,30), n76 DECIMAL TEXT(76,0), nu TEXT, r REAL, d REAL, t TEXT, \
         vc VARCHAR(10), c VARCHAR(3), b BLOB, bo BOOLEAN, dt DATE, ts DATETIME, tz DATETIME, \
         tm TEXT, j JSON, jb JSON, u TEXT"
    );
    let nines38 = format!("{}.{}", "9".repeat(28), "9".repeat(10));
    let big65 = d65_max();
    let n76 = "9".repeat(76);
    let nu50 = "12345678901234567890123456789012345678901234567890";
    let all = all_bytes_hex().to_uppercase();
    let n = "NULL";
    let typed = |ty: &str, c: &[&str]| -> Vec<String> {
        c.iter()
            .map(|x| {
                if *x == "NULL" {
                    x.to_string()
                } else {
                    format!("{ty}:{x}")
                }
            })
            .collect()
    };
    let checks: Vec<(&str, Vec<String>)> = vec![
        (
            "i2",
            typed("integer", &["-32768", "32767", "0", n, n, n, n]),
        ),
        (
            "i4",
            typed("integer", &["-2147483648", "2147483647", "0", n, n, n, n]),
        ),
        (
            "i8",
            typed(
                "integer",
                &[
                    "-9223372036854775808",
                    "9223372036854775807",
                    "0",
                    n,
                    n,
                    n,
                    n,
                ],
            ),
        ),
        (
            "n38",
            typed(
                "text",
                &[
                    &format!("-{nines38}"),
                    &nines38,
                    "0.0000000001",
                    "-0.5000000000",
                    n,
                    n,
                    n,
                ],
            ),
        ),
        (
            "n65",
            typed(
                "text",
                &[
                    &format!("-{big65}"),
                    &big65,
                    "0.000000000000000000000000000000",
                    "-0.000000000000000000000000000001",
                    n,
                    n,
                    n,
                ],
            ),
        ),
        (
            "n76",
            typed("text", &[&format!("-{n76}"), &n76, "0", n, n, n, n]),
        ),
        (
            "nu",
            typed(
                "text",
                &[
                    &format!("-{nu50}"),
                    "1234567890123456789012345678901234567890.0123456789",
                    "NaN",
                    "0.000000000000000000000000000000000000000000000001",
                    "0",
                    n,
                    n,
                ],
            ),
        ),
        // Row 3's NaN is checked on its own table, below. -0.0: a REAL
        // column of SQLite keeps no sign for zero (SQLite stores the integer 0).
        (
            "r",
            typed(
                "real",
                &[
                    &bits(f64::NEG_INFINITY),
                    &bits(f64::INFINITY),
                    n,
                    &bits(0.0),
                    &bits(f32::from_bits(1) as f64),
                    n,
                    n,
                ],
            ),
        ),
        (
            "d",
            typed(
                "real",
                &[
                    &bits(f64::NEG_INFINITY),
                    &bits(f64::INFINITY),
                    n,
                    &bits(0.0),
                    &bits(f64::from_bits(1)),
                    n,
                    n,
                ],
            ),
        ),
        (
            "t",
            typed(
                "text",
                &[
                    "emoji 😀 CJK 中文 \"q\" 's' tab\t nl\n bs\\ end",
                    "",
                    n,
                    n,
                    n,
                    n,
                    n,
                ],
            ),
        ),
        ("vc", typed("text", &["", "abcdefghij", n, n, n, n, n])),
        ("c", typed("text", &["ab ", "xyz", n, n, n, n, n])),
        ("b", typed("blob", &["00", &all, "", n, n, n, n])),
        ("bo", typed("integer", &["0", "1", n, n, n, n, n])),
        (
            "dt",
            typed(
                "text",
                &[
                    "0001-01-01",
                    "9999-12-31",
                    "1970-01-01",
                    n,
                    "-4712-01-01",
                    n,
                    "2024-06-20",
                ],
            ),
        ),
        (
            "ts",
            typed(
                "text",
                &[
                    "0001-01-01 00:00:00.000000",
                    "9999-12-31 23:59:59.999999",
                    "1970-01-01 00:00:00.000000",
                    "2000-01-01 00:00:00.000001",
                    "-4712-01-01 00:00:00.000000",
                    n,
                    "2024-06-20 08:00:00.000000",
                ],
            ),
        ),
        (
            "tz",
            typed(
                "text",
                &[
                    "0001-01-01 00:00:00.000000",
                    "9999-12-31 23:59:59.999999",
                    "2024-02-29 12:34:56.123456",
                    n,
                    n,
                    n,
                    "2024-06-20 00:00:00.000000",
                ],
            ),
        ),
        (
            "tm",
            typed(
                "text",
                &[
                    "00:00:00.000000",
                    "23:59:59.999999",
                    n,
                    n,
                    n,
                    n,
                    "24:00:00.000000",
                ],
            ),
        ),
        (
            "j",
            typed(
                "text",
                &[
                    r#"{"a": [1, 2, {"b": null}], "ü": "東京"}"#,
                    "[]",
                    n,
                    n,
                    n,
                    n,
                    n,
                ],
            ),
        ),
        (
            "jb",
            typed(
                "text",
                &[r#"{"k": "v", "n": 1.50}"#, r#""str""#, "null", n, n, n, n],
            ),
        ),
        (
            "u",
            typed(
                "text",
                &[
                    "00000000-0000-0000-0000-000000000000",
                    "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
                    n,
                    n,
                    n,
                    n,
                    n,
                ],
            ),
        ),
    ];
    check_cells("PostgreSQL -> SQLite", &checks, |c| {
        let expr = match c {
            "r" | "d" => format!("nullif(typeof({c}), 'null') || ':' || hex(ieee754_to_blob({c}))"),
            "b" => format!("nullif(typeof({c}), 'null') || ':' || hex({c})"),
            _ => format!("nullif(typeof({c}), 'null') || ':' || {c}"),
        };
        sqlite_cells(&db, "t", &expr)
    });

    // SQLite has no NaN (binding a NaN double stores NULL): the NaN row must
    // be a dirty record, never a silent NULL.
    let nan_summary = succeeded(
        &nan_status,
        nan_status.summary.as_ref().map_or(0, |s| s.records_written),
    );
    let nan_rows = sqlite(
        &db,
        "SELECT group_concat(id || ':' || coalesce(r, 'NULL') || ':' || coalesce(d, 'NULL'), ' ') FROM (SELECT * FROM nan_f ORDER BY id)",
    );
    assert!(
        nan_summary.records_written == 1
            && nan_summary.dirty_records == 1
            && nan_rows.trim() == "1:1.5:2.5",
        "NaN into a SQLite REAL column must be a dirty record, not a NULL: \
         {nan_summary:?}, rows in SQLite: {nan_rows:?}"
    );
}

// ---------------------------------------------------------------------------
// 5. 20k rows, several splits and batches

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_twenty_thousand_rows_to_postgres_in_splits() {
    let Some(my) = MyDb::new("ferry_tt_my") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_tt_dst") else {
        return;
    };
    my.sql(
        "SET time_zone = '+08:00';
         CREATE TABLE big (id BIGINT PRIMARY KEY, amount DECIMAL(18,4), name VARCHAR(64),
                           created DATETIME(6), ts TIMESTAMP(6) NULL DEFAULT NULL, raw VARBINARY(16),
                           f DOUBLE, u BIGINT UNSIGNED, tm TIME(6), js JSON, bo BOOLEAN);
         INSERT INTO big SELECT seq,
             IF(seq % 13 = 0, NULL, seq * 1.2345 - 5000),
             CASE WHEN seq % 7 = 0 THEN NULL WHEN seq % 11 = 0 THEN '' ELSE CONCAT('名前 ', seq, ' 🚚') END,
             '2024-06-20 00:00:00.000001' + INTERVAL seq SECOND + INTERVAL seq MICROSECOND,
             IF(seq % 17 = 0, NULL, '2024-06-20 08:00:00' + INTERVAL seq MINUTE),
             CASE WHEN seq % 5 = 0 THEN NULL WHEN seq % 5 = 1 THEN X'' ELSE UNHEX(LPAD(HEX(seq), 8, '0')) END,
             seq / 4 - 2500,
             18446744073709551615 - seq,
             SEC_TO_TIME(seq * 61 - 600000),
             IF(seq % 3 = 0, NULL, JSON_OBJECT('n', seq, 's', CONCAT('ü', seq))),
             seq % 2
           FROM (SELECT CAST(seq AS SIGNED) AS seq FROM seq_1_to_20000) g;",
    );
    let url = my.url();
    let rig = Rig::start(&[mysql_rig_source(&url)]).await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: big\n    splitPk: id\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.big\n    createTable: true\n\
         setting:\n  speed: {{channel: 3}}\n",
        rig.datasource("legacy"),
        pg_url(),
        dst.name
    );
    let status = rig.run(&job).await;
    let summary = succeeded(&status, 20_000);
    assert!(summary.splits > 1, "several splits: {summary:?}");
    assert_eq!(summary.dirty_records, 0, "{summary:?}");
    rig.stop().await;

    // Aggregates on both sides.
    let my_agg = my.sql(
        "SELECT CONCAT_WS('|', COUNT(*), SUM(id), SUM(amount), COUNT(amount), COUNT(name), SUM(name = ''),
                SUM(f), SUM(u MOD 1000), SUM(TIME_TO_SEC(tm)), SUM(bo), COUNT(ts), SUM(LENGTH(raw)))
           FROM big",
    );
    let pg_agg = dst.sql(
        "SELECT concat_ws('|', count(*), sum(id), sum(amount), count(amount), count(name), sum((name = '')::int),
                sum(f), sum(u % 1000), sum(extract(epoch from tm)), sum(bo), count(ts), sum(length(raw)))
           FROM big",
    );
    assert_eq!(pg_agg, my_agg, "aggregates");

    // Every row as text, hashed: the documented representations normalised.
    let my_md5 = my.sql(
        "SET SESSION group_concat_max_len = 1073741824, time_zone = '+00:00';
         SELECT MD5(GROUP_CONCAT(CONCAT_WS('|', id, IFNULL(amount, '\\\\N'), IFNULL(name, '\\\\N'),
                DATE_FORMAT(created, '%Y-%m-%d %H:%i:%s.%f'),
                IFNULL(DATE_FORMAT(ts, '%Y-%m-%d %H:%i:%s.%f'), '\\\\N'),
                IFNULL(LOWER(HEX(raw)), '\\\\N'), f, u, TIME_TO_SEC(tm), IFNULL(js, '\\\\N'), bo)
                ORDER BY id SEPARATOR '\\n')) FROM big",
    );
    let pg_md5 = dst.sql(
        "SELECT md5(string_agg(concat_ws('|', id, coalesce(amount::text, '\\N'), coalesce(name, '\\N'),
                to_char(created, 'YYYY-MM-DD HH24:MI:SS.US'),
                coalesce(to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), '\\N'),
                coalesce(encode(raw, 'hex'), '\\N'), f, u, extract(epoch from tm),
                coalesce(js::text, '\\N'), bo), E'\\n' ORDER BY id)) FROM big",
    );
    assert_eq!(pg_md5, my_md5, "row hashes");
    // A few cells spelled out.
    assert_eq!(
        dst.sql("SELECT concat_ws('|', id, amount, name, created, ts, encode(raw, 'hex'), f, u, tm, js, bo) FROM big WHERE id IN (2, 20000) ORDER BY id"),
        "2|-4997.5310|名前 2 🚚|2024-06-20 00:00:02.000003|2024-06-20 00:02:00+00|00000002|-2499.5|18446744073709551613|-166:37:58|{\"n\": 2, \"s\": \"ü2\"}|0\n\
         20000|19690.0000|名前 20000 🚚|2024-06-20 05:33:20.020001|2024-07-03 21:20:00+00|2500|18446744073709531615|172:13:20|{\"n\": 20000, \"s\": \"ü20000\"}|0\n"
    );
}

// ---------------------------------------------------------------------------
// 6. MySQL -> Parquet and CSV files, through the tunnel

/// Every row of `source` read with Ferry's own reader (one split), in order.
async fn read_rows(
    source: &dyn ferry_connectors::Source,
    spec: &ferry_connectors::ReadSpec,
) -> Vec<arrow_array::RecordBatch> {
    let schema = source.schema(spec).await.expect("schema");
    let mut out = Vec::new();
    for split in source.plan(spec, 1).await.expect("plan") {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        source
            .read(spec, schema.clone(), &split, tx)
            .await
            .expect("read");
        while let Some(b) = rx.recv().await {
            out.push(b);
        }
    }
    out
}

/// Column `i` of every batch, one `ArrayData` per row (so batch boundaries do not matter).
fn rows_of(batches: &[arrow_array::RecordBatch], i: usize) -> Vec<arrow_data::ArrayData> {
    batches
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |r| b.column(i).slice(r, 1).to_data()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_every_type_to_parquet_is_exact() {
    let Some(my) = MyDb::new("ferry_tt_pq") else {
        return;
    };
    my_every_type(&my);
    let url = my.url();
    let rig = Rig::start(&[mysql_rig_source(&url)]).await;
    let tmp = tempfile::tempdir().unwrap();
    let lake = tmp.path().join("lake/t/dt=20240620");
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: t\n    splitPk: id\n\
         writer:\n  name: parquetwriter\n  parameter:\n    path: {}/\n\
         setting:\n  speed: {{channel: 2}}\n",
        rig.datasource("legacy"),
        lake.display()
    );
    let status = rig.run(&job).await;
    let summary = succeeded(&status, 5);
    assert!(summary.wire_bytes > 0);
    rig.stop().await;

    // What MySQL holds, read directly, against what the lake holds: the
    // same Arrow type and the same value in every cell.
    let spec = ferry_connectors::ReadSpec {
        table: Some("t".into()),
        split_pk: Some("id".into()),
        ..Default::default()
    };
    let direct = ferry_connectors::mysql::MySqlSource::connect(&url)
        .await
        .unwrap();
    let want = read_rows(&direct, &spec).await;
    let files = ferry_connectors::file::FileSource::open(
        &lake.display().to_string(),
        &serde_json::Map::from_iter([("format".to_string(), "parquet".into())]),
    )
    .unwrap();
    let file_spec = ferry_connectors::ReadSpec::default();
    let mut got = read_rows(&files, &file_spec).await;
    // One part per split: order the rows by id like the direct read.
    let schema = got[0].schema();
    let all = arrow_select::concat::concat_batches(&schema, &got).unwrap();
    let ids = all
        .column(0)
        .as_any()
        .downcast_ref::<arrow_array::Int32Array>()
        .expect("id is INT");
    let mut order: Vec<u32> = (0..all.num_rows() as u32).collect();
    order.sort_by_key(|&r| ids.value(r as usize));
    let order = arrow_array::UInt32Array::from(order);
    got = vec![arrow_select::take::take_record_batch(&all, &order).unwrap()];
    assert_eq!(got[0].num_rows(), 5);
    let want_schema = want[0].schema();
    assert_eq!(schema.fields().len(), want_schema.fields().len());
    for (i, f) in want_schema.fields().iter().enumerate() {
        let g = schema.field(i);
        assert_eq!(
            (g.name(), g.data_type()),
            (f.name(), f.data_type()),
            "column {i}"
        );
        assert_eq!(
            rows_of(&got, i),
            rows_of(&want, i),
            "column `{}` differs after MySQL -> tunnel -> Parquet",
            f.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_every_type_to_csv_as_documented() {
    let Some(my) = MyDb::new("ferry_tt_csv") else {
        return;
    };
    my_every_type(&my);
    let url = my.url();
    let rig = Rig::start(&[mysql_rig_source(&url)]).await;
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("export/t");
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: t\n\
         writer:\n  name: csvwriter\n  parameter:\n    path: {}/\n",
        rig.datasource("legacy"),
        out.display()
    );
    let status = rig.run(&job).await;
    succeeded(&status, 5);
    rig.stop().await;
    let text = std::fs::read_to_string(out.join("part-00000.csv")).unwrap();
    // Parse it back with a CSV reader that knows nothing of Ferry.
    let mut rdr = csv_rows(&text);
    let header = rdr.remove(0);
    let col = |row: &Vec<String>, name: &str| -> String {
        let i = header
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("no column {name}"));
        row[i].clone()
    };
    let row = |id: &str| -> Vec<String> {
        rdr.iter()
            .find(|r| r[0] == id)
            .unwrap_or_else(|| panic!("no row {id}"))
            .clone()
    };
    let (r1, r2, r3, r4) = (row("1"), row("2"), row("3"), row("4"));
    // Integers, unsigned to the top, exact decimals at full scale.
    assert_eq!(col(&r2, "biu"), "18446744073709551615");
    assert_eq!(col(&r1, "bi"), "-9223372036854775808");
    assert_eq!(col(&r2, "d65"), d65_max());
    assert_eq!(col(&r3, "d65"), "-0.000000000000000000000000000001");
    assert_eq!(col(&r2, "d18"), "99999999999999.9999");
    // Text as it was, '' distinct from NULL (\N).
    assert_eq!(col(&r1, "vc"), TEXT1);
    assert_eq!(col(&r1, "tx"), "");
    assert_eq!(col(&r4, "tx"), "\\N");
    // Binary as lowercase hex.
    assert_eq!(col(&r1, "bl"), "0000ff00");
    assert_eq!(col(&r2, "vb"), all_bytes_hex().to_lowercase());
    // Dates and times; TIMESTAMP is an instant in UTC (inserted at +08:00).
    assert_eq!(col(&r1, "dt"), "1000-01-01");
    assert_eq!(col(&r2, "dtm"), "9999-12-31T23:59:59.999999");
    assert_eq!(col(&r1, "ts"), "1970-01-01T00:00:01Z");
    assert_eq!(col(&r2, "tm"), "838:59:59.000000");
    assert_eq!(col(&r1, "tm"), "-838:59:59.000000");
    // JSON text as stored.
    assert!(col(&r1, "js").contains("東京 🚀"), "{}", col(&r1, "js"));
}

/// A small RFC 4180 reader (quotes, doubled quotes, newlines in fields), so
/// the check does not use the code under test.
fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, '\r') => {}
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}
