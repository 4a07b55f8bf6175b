//! `ferry run job.yaml`: standalone jobs against the real PostgreSQL and
//! MariaDB, checked in the target with SQL.

use ferry_tests::db::{pg_url, MyDb, PgSchema};

fn ferry_run(dir: &std::path::Path, job: &str, extra: &[&str]) -> (bool, String, String) {
    let dirty = dir.join("dirty.jsonl");
    let mut args = vec![
        "--quiet",
        "--dirty-file",
        dirty.to_str().expect("a UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    ferry_tests::proc::ferry_run_job(dir, job, &args)
}

#[test]
fn postgres_to_postgres_with_splits_and_variables() {
    let Some(src) = PgSchema::new("ferry_run_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_run_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE orders (id bigint, name text, amount numeric(18,4), ts timestamptz, d date, paid boolean);
         INSERT INTO orders SELECT g, CASE WHEN g % 7 = 0 THEN NULL ELSE 'name ' || g || ' 東京 🚚' END,
                g * 1.2345 - 500, timestamptz '2024-06-20 00:00:00+00' + g * interval '1 second',
                date '2024-06-20' - (g % 400), g % 3 = 0
           FROM generate_series(-50, 20000) g;
         INSERT INTO orders VALUES (NULL, 'null key', 1, now(), NULL, NULL), (NULL, '', 0, NULL, NULL, true);",
    );
    let tmp = tempfile::tempdir().unwrap();
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    url: {url}\n    table: {s}.orders\n    column: [id, name, amount, ts, d, paid]\n    splitPk: id\n    where: \"d <= '${{bizdate}}'\"\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {t}.orders_copy\n    createTable: true\n\
         setting:\n  speed: {{channel: 3}}\n",
        url = pg_url(),
        s = src.name,
        t = dst.name
    );
    let (ok, out, err) = ferry_run(tmp.path(), &job, &["-p", "bizdate=2024-06-20"]);
    assert!(ok, "{out}\n{err}");
    let expected = src
        .sql("SELECT count(*) FROM orders WHERE d <= '2024-06-20'")
        .trim()
        .to_string();
    assert!(
        out.contains(&format!("Records written       : {expected}")),
        "{out}"
    );
    assert!(out.contains("Result                : succeeded"), "{out}");
    let diff = dst.sql(&format!(
        "SELECT count(*) FROM ((SELECT * FROM {s}.orders WHERE d <= '2024-06-20' EXCEPT ALL SELECT * FROM orders_copy)
          UNION ALL (SELECT * FROM orders_copy EXCEPT ALL SELECT * FROM {s}.orders WHERE d <= '2024-06-20')) x",
        s = src.name
    ));
    assert_eq!(diff.trim(), "0", "source and target differ");
}

#[test]
fn mysql_to_postgres_keeps_values_exact() {
    let Some(my) = MyDb::new("ferry_run_my") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_run_dst") else {
        return;
    };
    my.sql(
        "SET time_zone = '+08:00';
         CREATE TABLE t (id BIGINT UNSIGNED PRIMARY KEY, small TINYINT, amount DECIMAL(65,30), name VARCHAR(40),
                         created DATETIME(6), updated TIMESTAMP(6) NULL, blob_col VARBINARY(16));
         INSERT INTO t VALUES
           (18446744073709551615, -128, '99999999999999999999999999999999999.999999999999999999999999999999', 'Zoë 🚀 東京', '2024-06-20 12:34:56.123456', '2024-06-20 12:34:56.654321', X'00FF00'),
           (1, 127, '-0.000000000000000000000000000001', '', '1000-01-01 00:00:00', NULL, NULL),
           (2, NULL, NULL, NULL, NULL, '1970-01-01 08:00:01', X'');",
    );
    let tmp = tempfile::tempdir().unwrap();
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    url: {}\n    table: t\n    splitPk: id\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.t\n    createTable: true\n",
        my.url(),
        pg_url(),
        dst.name
    );
    let (ok, out, err) = ferry_run(tmp.path(), &job, &[]);
    assert!(ok, "{out}\n{err}");
    let rows = dst.sql("SELECT id, small, amount, name, created, updated, encode(blob_col, 'hex') FROM t ORDER BY id");
    let expected = "1|127|-0.000000000000000000000000000001||1000-01-01 00:00:00||\n\
2|||||1970-01-01 00:00:01+00|\n\
18446744073709551615|-128|99999999999999999999999999999999999.999999999999999999999999999999|Zoë 🚀 東京|2024-06-20 12:34:56.123456|2024-06-20 04:34:56.654321+00|00ff00\n";
    assert_eq!(rows, expected);
}

#[test]
fn dirty_records_go_to_a_file_and_error_limit_ends_the_job() {
    let Some(src) = PgSchema::new("ferry_run_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_run_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE s (id int, code text);
         INSERT INTO s SELECT g, CASE WHEN g % 100 = 0 THEN 'toolong-' || g ELSE 'ok' || (g % 10) END FROM generate_series(1, 1000) g;",
    );
    dst.sql("CREATE TABLE d (id int, code varchar(5))");
    let tmp = tempfile::tempdir().unwrap();
    let job = |limit: u32| {
        format!(
            "reader:\n  name: postgres\n  parameter:\n    url: {url}\n    table: {s}.s\n\
             writer:\n  name: postgres\n  parameter:\n    url: {url}\n    table: {t}.d\n    batchSize: 7\n\
             setting:\n  errorLimit: {{record: {limit}}}\n",
            url = pg_url(),
            s = src.name,
            t = dst.name
        )
    };
    let (ok, out, err) = ferry_run(tmp.path(), &job(100), &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Dirty records         : 10"), "{out}");
    assert_eq!(dst.sql("SELECT count(*) FROM d").trim(), "990");
    let dirty = std::fs::read_to_string(tmp.path().join("dirty.jsonl")).unwrap();
    assert_eq!(dirty.lines().count(), 10);
    let first: serde_json::Value = serde_json::from_str(dirty.lines().next().unwrap()).unwrap();
    assert_eq!(first["column"], "code", "{first}");
    // Row 100 of the one batch read; written in slices of batchSize = 7,
    // the dirty file still counts rows within the batch read.
    assert_eq!(first["row"], 99, "{first}");
    assert!(
        first["record"]["code"]
            .as_str()
            .unwrap()
            .starts_with("toolong-"),
        "{first}"
    );

    dst.sql("TRUNCATE d");
    let (ok, out, err) = ferry_run(tmp.path(), &job(5), &[]);
    assert!(!ok, "a job over its error limit must fail:\n{out}");
    assert!(
        err.contains("exceed setting.errorLimit.record = 5"),
        "{err}"
    );
}

#[test]
fn a_config_error_names_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (ok, _, err) = ferry_run(
        tmp.path(),
        "reader:\n  name: postgres\n  parameter:\n    url: postgres://x/y\n    table: t\n    splitPK: id\nwriter:\n  name: postgres\n  parameter:\n    url: postgres://x/y\n    table: t\n",
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("reader.parameter") && err.contains("splitPK"),
        "{err}"
    );
}

#[test]
fn postgres_to_sqlite_and_back() {
    let Some(src) = PgSchema::new("ferry_run_src") else {
        return;
    };
    src.sql(
        "CREATE TABLE u (uid bigint, gender text, age_range text, zodiac text, score numeric(10,2), seen timestamp);
         INSERT INTO u SELECT g, CASE WHEN g % 2 = 0 THEN '男' ELSE '女' END, (g % 5 * 10) || '-' || (g % 5 * 10 + 9),
                CASE WHEN g % 9 = 0 THEN NULL ELSE 'Aries ♈' END, g * 0.25, timestamp '2024-06-20 01:02:03.456789' + g * interval '1 day'
           FROM generate_series(1, 3000) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("warehouse.db");
    let to_sqlite = format!(
        "reader:\n  name: postgres\n  parameter:\n    url: {url}\n    table: {s}.u\n    splitPk: uid\n\
         writer:\n  name: sqlitewriter\n  parameter:\n    url: sqlite://{db}\n    table: ods_user_info_d\n    createTable: true\n\
         setting:\n  speed: {{channel: 2}}\n",
        url = pg_url(),
        s = src.name,
        db = db.display()
    );
    let (ok, out, err) = ferry_run(tmp.path(), &to_sqlite, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("Records written       : 3000"), "{out}");
    let back = format!(
        "reader:\n  name: sqlitereader\n  parameter:\n    url: sqlite://{db}\n    table: ods_user_info_d\n    splitPk: uid\n\
         writer:\n  name: postgres\n  parameter:\n    url: {url}\n    table: {s}.u_back\n    createTable: true\n",
        url = pg_url(),
        s = src.name,
        db = db.display()
    );
    let (ok, out, err) = ferry_run(tmp.path(), &back, &[]);
    assert!(ok, "{out}\n{err}");
    let diff = src.sql(
        "SELECT count(*) FROM ((SELECT uid, gender, age_range, zodiac, score, seen FROM u EXCEPT ALL SELECT uid, gender, age_range, zodiac, score, seen FROM u_back)
          UNION ALL (SELECT uid, gender, age_range, zodiac, score, seen FROM u_back EXCEPT ALL SELECT uid, gender, age_range, zodiac, score, seen FROM u)) x",
    );
    assert_eq!(
        diff.trim(),
        "0",
        "PostgreSQL -> SQLite -> PostgreSQL changed rows"
    );
}
