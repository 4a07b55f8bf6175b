//! `ferry verify` against targets corrupted in one way at a time: every corruption is caught
//! and names its key (and column), and the untouched copy passes. Three routes:
//! MariaDB → PostgreSQL and PostgreSQL → PostgreSQL (copied and verified through the tunnel:
//! the agent hashes the source, `ferry verify --admin` asks the broker; PostgreSQL sums its
//! rows itself, under PostgreSQL's hash functions) and MariaDB → SQLite (standalone, canonical
//! hashes). `--repair` then re-syncs each corrupted copy.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::{Rig, RigSource};
use ferry_tests::db::{pg_url, MyDb, PgSchema};
use serde_json::Value;

/// Every type family, edge values, NULLs and '' (MariaDB).
const SOURCE: &str = r#"
CREATE TABLE t (id INT PRIMARY KEY, i BIGINT NULL, u INT UNSIGNED NULL, d DECIMAL(12,3) NULL,
  f DOUBLE NULL, s VARCHAR(40) NULL, txt TEXT NULL, bl BLOB NULL, dt DATE NULL,
  dtt DATETIME(6) NULL, ts TIMESTAMP(6) NULL DEFAULT NULL, tm TIME(6) NULL,
  e ENUM('red','green','blue') NULL, st SET('a','b','c') NULL, j JSON NULL, flag TINYINT(1) NULL);
SET time_zone = '+00:00';
INSERT INTO t VALUES
 (1, 1, 1, 1.500, 0.5, 'one', 'text one', 0x00010203, '2024-01-01', '2024-01-01 10:00:00.000001',
  '2024-01-01 10:00:00', '10:00:00', 'red', 'a,b', '{"a": 1}', 1),
 (2, -2, 2, -2.250, -1.25, '', '', '', '2024-02-29', '2024-02-29 23:59:59.999999',
  '2024-02-29 12:00:00.5', '-838:59:59', 'green', '', '[]', 0),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (4, 9223372036854775807, 4294967295, 999999999.999, 1e300, 'emoji 🚀', 'ü', 0x00, '1000-01-01',
  '1000-01-01 00:00:00', '2000-01-01 00:00:00', '838:59:59', 'blue', 'a,b,c', '{"n": {"x": [1, 2]}}', 1),
 (5, 5, 5, 5.555, 5.5, 'five', 'text five', 0x05, '2024-05-05', '2024-05-05 05:05:05',
  '2024-05-05 05:05:05', '05:05:05', 'red', 'c', '{"five": 5}', 0),
 (6, 6, 6, 6.000, 1.5, 'six', 'text six', 0x06, '2024-06-06', '2024-06-06 06:06:06',
  '2024-06-06 06:06:06', '06:06:06.5', 'green', 'a', 'null', 1),
 (7, 7, 7, 7.700, 7.25, 'seven', 'text seven', 0x07, '2024-07-07', '2024-07-07 07:07:07',
  '2024-07-07 07:07:07', '07:07:07', 'blue', 'b', '"seven"', 0),
 (8, -8, 8, -0.001, -0.0, 'eight', 'text\neight', 0xFFFE, '2024-08-08', '2024-08-08 08:08:08',
  '2024-08-08 08:08:08', '-00:00:01', 'red', 'a,c', '[1, "x", null]', 1),
 (9, 9, 9, 0.000, 1e-300, 'nine', 'text nine', 0x0909, '9999-12-31', '9999-12-31 23:59:59.999999',
  '2038-01-19 03:14:07', '00:00:00', 'green', 'b,c', '{"b": 2, "a": 1}', 0),
 (10, 10, 10, 10.010, 10.0, 'ten', 'text ten', 0x10, '2024-10-10', '2024-10-10 10:10:10',
  '2024-10-10 10:10:10', '10:10:10', 'blue', 'a,b,c', '{"ten": [10]}', 1);
"#;

/// One way to corrupt a correct copy (`{T}`: its table), and what verify must report:
/// (key, kind, column).
struct Corruption {
    what: &'static str,
    postgres: &'static str,
    /// When SQLite needs other SQL; `DUP` makes a keyless copy first.
    sqlite: Option<&'static str>,
    expect: &'static [(&'static str, &'static str, &'static str)],
}

const CORRUPTIONS: &[Corruption] = &[
    Corruption {
        what: "a lost row",
        postgres: "DELETE FROM {T} WHERE id = 3",
        sqlite: None,
        expect: &[("3", "missing", "")],
    },
    Corruption {
        what: "an extra row",
        postgres: "INSERT INTO {T} (id, s) VALUES (100, 'new')",
        sqlite: None,
        expect: &[("100", "extra", "")],
    },
    Corruption {
        what: "a duplicated row (the target has no key)",
        postgres: "DO $$ DECLARE c text; BEGIN SELECT conname INTO c FROM pg_constraint \
                   WHERE conrelid = '{T}'::regclass AND contype = 'p'; \
                   EXECUTE format('ALTER TABLE {T} DROP CONSTRAINT %I', c); END $$; \
                   INSERT INTO {T} SELECT * FROM {T} WHERE id = 4",
        sqlite: Some("DUP INSERT INTO {T} SELECT * FROM {T} WHERE id = 4"),
        expect: &[("4", "duplicated", "")],
    },
    Corruption {
        what: "an integer",
        postgres: "UPDATE {T} SET i = 6 WHERE id = 5",
        sqlite: None,
        expect: &[("5", "changed", "i")],
    },
    Corruption {
        what: "an unsigned integer at its maximum",
        postgres: "UPDATE {T} SET u = 4294967294 WHERE id = 4",
        sqlite: None,
        expect: &[("4", "changed", "u")],
    },
    Corruption {
        what: "a decimal's last digit",
        postgres: "UPDATE {T} SET d = '5.556' WHERE id = 5",
        sqlite: None,
        expect: &[("5", "changed", "d")],
    },
    Corruption {
        what: "a double's last bit",
        postgres: "UPDATE {T} SET f = 1.5000000000000002 WHERE id = 6",
        sqlite: None,
        expect: &[("6", "changed", "f")],
    },
    Corruption {
        what: "a text",
        postgres: "UPDATE {T} SET s = 'Six' WHERE id = 6",
        sqlite: None,
        expect: &[("6", "changed", "s")],
    },
    Corruption {
        what: "NULL became ''",
        postgres: "UPDATE {T} SET s = '' WHERE id = 3",
        sqlite: None,
        expect: &[("3", "changed", "s")],
    },
    Corruption {
        what: "'' became NULL",
        postgres: "UPDATE {T} SET txt = NULL WHERE id = 2",
        sqlite: None,
        expect: &[("2", "changed", "txt")],
    },
    Corruption {
        what: "a trailing space",
        postgres: "UPDATE {T} SET txt = 'text one ' WHERE id = 1",
        sqlite: None,
        expect: &[("1", "changed", "txt")],
    },
    Corruption {
        what: "a TIMESTAMP shifted by a +08:00 session zone",
        postgres: "UPDATE {T} SET ts = ts + interval '8 hours' WHERE id = 1",
        sqlite: Some("UPDATE {T} SET ts = '2024-01-01 18:00:00.000000' WHERE id = 1"),
        expect: &[("1", "changed", "ts")],
    },
    Corruption {
        what: "a DATETIME's microsecond",
        postgres: "UPDATE {T} SET dtt = '2024-01-01 10:00:00.000002' WHERE id = 1",
        sqlite: None,
        expect: &[("1", "changed", "dtt")],
    },
    Corruption {
        what: "a date",
        postgres: "UPDATE {T} SET dt = '2024-02-28' WHERE id = 2",
        sqlite: None,
        expect: &[("2", "changed", "dt")],
    },
    Corruption {
        what: "a TIME",
        postgres: "UPDATE {T} SET tm = tm + interval '1 second' WHERE id = 1",
        sqlite: Some("UPDATE {T} SET tm = '10:00:01.000000' WHERE id = 1"),
        expect: &[("1", "changed", "tm")],
    },
    Corruption {
        what: "an enum member",
        postgres: "UPDATE {T} SET e = 'blue' WHERE id = 1",
        sqlite: None,
        expect: &[("1", "changed", "e")],
    },
    Corruption {
        what: "a set member",
        postgres: "UPDATE {T} SET st = 'a,c' WHERE id = 1",
        sqlite: None,
        expect: &[("1", "changed", "st")],
    },
    Corruption {
        what: "one byte of a blob",
        postgres: "UPDATE {T} SET bl = '\\x00010204' WHERE id = 1",
        sqlite: Some("UPDATE {T} SET bl = X'00010204' WHERE id = 1"),
        expect: &[("1", "changed", "bl")],
    },
    Corruption {
        what: "a JSON value",
        postgres: "UPDATE {T} SET j = '{\"a\": 2}' WHERE id = 1",
        sqlite: None,
        expect: &[("1", "changed", "j")],
    },
    Corruption {
        what: "a TINYINT(1) flag",
        postgres: "UPDATE {T} SET flag = 0 WHERE id = 1",
        sqlite: None,
        expect: &[("1", "changed", "flag")],
    },
    Corruption {
        what: "a pair of values swapped between rows",
        postgres:
            "UPDATE {T} SET s = CASE id WHEN 6 THEN 'seven' ELSE 'six' END WHERE id IN (6, 7)",
        sqlite: None,
        expect: &[("6", "changed", "s"), ("7", "changed", "s")],
    },
];

/// Where the target is and how to reach it.
enum Target<'a> {
    Postgres(&'a PgSchema),
    Sqlite(&'a Path),
}

impl Target<'_> {
    fn writer(&self, table: &str) -> String {
        match self {
            Target::Postgres(s) => format!(
                "writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.{table}\n    createTable: true\n    existing: drop\n",
                pg_url(),
                s.name
            ),
            Target::Sqlite(db) => format!(
                "writer:\n  name: sqlitewriter\n  parameter:\n    url: sqlite://{}\n    table: {table}\n    createTable: true\n    existing: drop\n",
                db.display()
            ),
        }
    }

    fn corrupt(&self, c: &Corruption, table: &str) {
        match self {
            Target::Postgres(s) => {
                s.sql(&c.postgres.replace("{T}", &format!("{}.{table}", s.name)));
            }
            Target::Sqlite(db) => {
                let sql = c.sqlite.unwrap_or(c.postgres).replace("{T}", table);
                let sql = match sql.strip_prefix("DUP ") {
                    Some(rest) => format!("{}{rest}", keyless_sqlite(db, table)),
                    None => sql,
                };
                sqlite(db, &sql);
            }
        }
    }
}

fn sqlite(db: &Path, sql: &str) -> String {
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// SQL that rebuilds SQLite table `table` without its primary key (SQLite cannot drop one).
fn keyless_sqlite(db: &Path, table: &str) -> String {
    let ddl = sqlite(
        db,
        &format!("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = '{table}'"),
    );
    let mut keyless = ddl.replacen(&format!("\"{table}\""), &format!("\"{table}_k\""), 1);
    keyless = keyless.replacen(&format!("TABLE {table} "), &format!("TABLE {table}_k "), 1);
    keyless = keyless.replace("AUTOINCREMENT", "");
    // `, PRIMARY KEY ("id")` or a column's `PRIMARY KEY`.
    if let Some(at) = keyless.find(", PRIMARY KEY (") {
        let end = keyless[at..]
            .find(')')
            .map(|e| at + e + 1)
            .expect("a key clause");
        keyless.replace_range(at..end, "");
    }
    keyless = keyless.replace("PRIMARY KEY", "");
    assert!(keyless.contains(&format!("{table}_k")), "{keyless}");
    format!(
        "{keyless}; INSERT INTO {table}_k SELECT * FROM {table}; DROP TABLE {table}; \
         ALTER TABLE {table}_k RENAME TO {table}; "
    )
}

/// How the jobs run: `ferry run` and `ferry verify` here, or through a broker and agent.
enum Via<'a> {
    Here,
    Tunnel(&'a Rig),
}

/// A job from `reader_line` (`url: …` or the rig's source) into `writer`.
fn job(reader: &str, reader_line: &str, table: &str, writer: &str) -> String {
    format!(
        "reader:\n  name: {reader}\n  parameter:\n    {reader_line}\n    table: {table}\n{writer}setting:\n  speed: {{channel: 2}}\n"
    )
}

/// Copies, then verifies: the report as JSON and whether verify passed.
async fn copy_and_verify(
    via: &Via<'_>,
    dir: &Path,
    job_text: &str,
    corrupt: impl FnOnce(),
) -> (bool, Value) {
    match via {
        Via::Here => {
            let (ok, out, err) = ferry_tests::proc::ferry_run_job(dir, job_text, &["--quiet"]);
            assert!(ok, "copy failed: {out}\n{err}");
        }
        Via::Tunnel(rig) => {
            let s = rig.run(job_text).await;
            assert_eq!(
                s.state,
                ferry_broker::jobs::JobState::Succeeded,
                "copy failed: {:?}",
                s.error
            );
        }
    }
    corrupt();
    verify(via, dir, job_text, &["--show-values"])
}

/// `ferry verify --json` of `job_text` with `args`: whether it passed, and its report.
fn verify(via: &Via<'_>, dir: &Path, job_text: &str, args: &[&str]) -> (bool, Value) {
    let path = dir.join("verify.yaml");
    std::fs::write(&path, job_text).unwrap();
    let mut cmd = std::process::Command::new(ferry_tests::proc::ferry_bin());
    cmd.current_dir(dir)
        .arg("verify")
        .arg(&path)
        .arg("--json")
        .args(args);
    if let Via::Tunnel(rig) = via {
        cmd.args(["--admin", &rig.broker.admin_addr().to_string()]);
    }
    let out = cmd.output().expect("ferry verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!(
            "not a report ({e}): {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), report)
}

/// Each corruption into its own fresh copy (`c1`, `c2`, …), verified; the clean copy `c0`.
async fn every_corruption(
    via: Via<'_>,
    reader: &str,
    reader_line: &str,
    source_table: &str,
    target: Target<'_>,
    hashing: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, report) = copy_and_verify(
        &via,
        dir.path(),
        &job(reader, reader_line, source_table, &target.writer("c0")),
        || {},
    )
    .await;
    let t = &report["tables"][0];
    assert!(ok, "the untouched copy must pass: {report:#}");
    assert_eq!(t["source_rows"], 10, "{report:#}");
    assert_eq!(t["target_rows"], 10, "{report:#}");
    assert_eq!(t["hashing"], hashing, "{report:#}");
    if matches!(via, Via::Tunnel(_)) {
        assert!(
            report["wire_bytes"].as_u64().unwrap() > 0,
            "fingerprints crossed the tunnel: {report:#}"
        );
    }
    for (n, c) in CORRUPTIONS.iter().enumerate() {
        let table = format!("c{}", n + 1);
        let job_text = job(reader, reader_line, source_table, &target.writer(&table));
        let (ok, report) =
            copy_and_verify(&via, dir.path(), &job_text, || target.corrupt(c, &table)).await;
        assert!(
            !ok,
            "{}: verify passed a corrupted copy: {report:#}",
            c.what
        );
        let t = &report["tables"][0];
        assert!(t["error"].is_null(), "{}: {report:#}", c.what);
        assert_eq!(t["hashing"], hashing, "{}: {report:#}", c.what);
        let found: BTreeSet<(String, String, String)> = t["differences"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                let cols: Vec<&str> = d["columns"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c.as_str().unwrap())
                    .collect();
                (
                    d["key"].as_str().unwrap().to_string(),
                    d["kind"].as_str().unwrap().to_string(),
                    cols.join(","),
                )
            })
            .collect();
        let want: BTreeSet<(String, String, String)> = c
            .expect
            .iter()
            .map(|(k, kind, col)| (k.to_string(), kind.to_string(), col.to_string()))
            .collect();
        assert_eq!(found, want, "{}: {report:#}", c.what);
        // --show-values: the differing column, both sides.
        if let Some(d) = t["differences"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["kind"] == "changed")
        {
            let v = &d["values"][0];
            assert_eq!(v["column"], d["columns"][0], "{}: {report:#}", c.what);
            assert_ne!(v["source"], v["target"], "{}: {report:#}", c.what);
        }
        // --repair re-syncs exactly the differing rows, and the copy verifies again.
        let (ok, report) = verify(&via, dir.path(), &job_text, &["--repair"]);
        let t = &report["tables"][0];
        assert!(ok, "{}: not repaired: {report:#}", c.what);
        assert_eq!(
            t["repaired"]["differing_rows"],
            c.expect.len(),
            "{}: {report:#}",
            c.what
        );
        let (ok, report) = verify(&via, dir.path(), &job_text, &[]);
        assert!(ok, "{}: after the repair: {report:#}", c.what);
        assert!(report["tables"][0]["repaired"].is_null(), "{report:#}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_each_single_corruption_mariadb_to_postgres_through_the_tunnel_and_postgres_to_postgres(
) {
    let Some(src) = MyDb::new("ferry_vfy_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_vfy_pg") else {
        return;
    };
    let Some(dst2) = PgSchema::new("ferry_vfy_pg2") else {
        return;
    };
    src.sql(SOURCE);
    let url = src.url();
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "mysql",
        url: &url,
        extra: "",
    }])
    .await;
    let line = format!("datasource: {}", rig.datasource("shop"));
    every_corruption(
        Via::Tunnel(&rig),
        "mysqlreader",
        &line,
        "t",
        Target::Postgres(&dst),
        // The target sums its rows inside PostgreSQL; the agent hashes MariaDB's the same way.
        "postgres",
    )
    .await;
    rig.stop().await;
    // PostgreSQL → PostgreSQL through the tunnel: the clean copy above is the source, which
    // its agent fingerprints inside PostgreSQL too.
    let rig = Rig::start(&[RigSource {
        name: "pg",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let line = format!("datasource: {}", rig.datasource("pg"));
    every_corruption(
        Via::Tunnel(&rig),
        "postgresqlreader",
        &line,
        &format!("{}.c0", dst.name),
        Target::Postgres(&dst2),
        "postgres",
    )
    .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_catches_each_single_corruption_mariadb_to_sqlite() {
    let Some(src) = MyDb::new("ferry_vfy_lite") else {
        return;
    };
    src.sql(SOURCE);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    every_corruption(
        Via::Here,
        "mysqlreader",
        &format!("url: {}", src.url()),
        "t",
        Target::Sqlite(&db),
        "canonical",
    )
    .await;
}

/// `setting.verify: true`: a copy a target trigger changes on the way in is written whole,
/// then verified, and the job fails naming the table; through the broker the report is in
/// the job's status and its log, standalone it is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setting_verify_fails_a_job_whose_target_changed_what_it_wrote() {
    let Some(src) = MyDb::new("ferry_vfy_set") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_vfy_set") else {
        return;
    };
    src.sql("CREATE TABLE t (id INT PRIMARY KEY, s VARCHAR(10)); INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, '3');");
    let d = &dst.name;
    dst.sql(&format!(
        "CREATE TABLE {d}.t (id int PRIMARY KEY, s text);
         CREATE TABLE {d}.clean (id int PRIMARY KEY, s text);
         CREATE FUNCTION {d}.up() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.s := upper(NEW.s); RETURN NEW; END $$;
         CREATE TRIGGER up BEFORE INSERT ON {d}.t FOR EACH ROW EXECUTE FUNCTION {d}.up();"
    ));
    let url = src.url();
    let rig = Rig::start(&[RigSource {
        name: "src",
        kind: "mysql",
        url: &url,
        extra: "",
    }])
    .await;
    let job = |reader_line: &str, table: &str| {
        format!(
            "reader:\n  name: mysqlreader\n  parameter:\n    {reader_line}\n    table: t\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {d}.{table}\n\
             setting:\n  verify: true\n",
            pg_url()
        )
    };
    let tunnel = format!("datasource: {}", rig.datasource("src"));
    // A clean copy passes its verification.
    let s = rig.run(&job(&tunnel, "clean")).await;
    assert_eq!(s.state, ferry_broker::jobs::JobState::Succeeded, "{s:?}");
    let v = s.verify.as_ref().expect("a verification");
    assert_eq!(v.passed(), 1, "{v}");
    assert!(v.wire_bytes > 0, "{v}");
    // The trigger changed two of three rows: written whole, then failed by verification.
    let s = rig.run(&job(&tunnel, "t")).await;
    assert_eq!(s.state, ferry_broker::jobs::JobState::Failed, "{s:?}");
    assert_eq!(s.summary.as_ref().map(|x| x.records_written), Some(3));
    let e = s.error.clone().unwrap_or_default();
    assert!(e.contains("verification found 1 of 1 tables differ"), "{e}");
    let v = s.verify.as_ref().expect("a verification");
    assert_eq!(v.tables[0].differing_rows, 2, "{v}");
    let logs = rig
        .broker
        .jobs()
        .logs(&s.id, 0, 1000)
        .await
        .expect("the job's log");
    let text = format!("{logs:?}");
    assert!(
        text.contains("verify ") && text.contains("2 changed"),
        "{text}"
    );
    rig.stop().await;
    // Standalone: the report is printed and `ferry run` fails.
    let dir = tempfile::tempdir().unwrap();
    dst.sql(&format!("TRUNCATE {d}.t"));
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(
        dir.path(),
        &job(&format!("url: {url}"), "t"),
        &["--quiet"],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("0 passed, 1 failed"), "{out}");
    assert!(out.contains("changed    key 1: s"), "{out}");
    assert!(err.contains("verification failed"), "{err}");
}
