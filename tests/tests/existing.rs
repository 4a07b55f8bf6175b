//! `existing`: what a job does with a target table that exists already,
//! through `ferry run` against the real databases. The default never adds a
//! job's rows to rows already there: it fails before writing and says what
//! to set.

use std::process::Command;

use ferry_tests::db::{pg_url, MyDb, PgSchema};

/// Runs `job`; (success, stdout + stderr).
fn ferry_run(dir: &std::path::Path, job: &str) -> (bool, String) {
    let (ok, out, err) = ferry_tests::proc::ferry_run_job(dir, job, &["--quiet"]);
    (ok, out + &err)
}

fn count(text: String) -> u64 {
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("a count: {text:?}"))
}

#[test]
fn every_existing_mode_on_a_postgres_target() {
    let Some(src) = PgSchema::new("ferry_ex_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_ex_dst") else {
        return;
    };
    // No primary key: the created target has none either (`createTable` carries the
    // source's keys), so `append` can add the same rows again.
    src.sql(
        "CREATE TABLE t (id int NOT NULL, v text NOT NULL);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 1000) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let job = |writer_extra: &str| {
        format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    url: {url}\n    table: {s}.t\n    splitPk: id\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.t\n    createTable: true\n{writer_extra}\
             setting:\n  speed: {{channel: 2}}\n",
            url = pg_url(),
            s = src.name,
            d = dst.name
        )
    };
    let rows = || count(dst.sql("SELECT count(*) FROM t"));

    // A new table: created and written.
    let (ok, out) = ferry_run(tmp.path(), &job(""));
    assert!(ok, "{out}");
    assert_eq!(rows(), 1000);

    // The same job again: refused before a row is written, saying what to set.
    let (ok, out) = ferry_run(tmp.path(), &job(""));
    assert!(!ok, "a second run must not add the rows again: {out}");
    assert!(
        out.contains("already holds rows") && out.contains("`existing`"),
        "{out}"
    );
    assert!(
        out.contains("append") && out.contains("truncate") && out.contains("drop"),
        "{out}"
    );
    assert_eq!(rows(), 1000, "nothing written");

    // append: added.
    let (ok, out) = ferry_run(tmp.path(), &job("    existing: append\n"));
    assert!(ok, "{out}");
    assert_eq!(rows(), 2000);

    // truncate: emptied first; the table's own index stays.
    dst.sql("CREATE INDEX t_v ON t (v)");
    let (ok, out) = ferry_run(tmp.path(), &job("    existing: truncate\n"));
    assert!(ok, "{out}");
    assert_eq!(rows(), 1000);
    assert_eq!(
        dst.sql(&format!(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = '{}' AND indexname = 't_v'",
            dst.name
        ))
        .trim(),
        "1"
    );

    // replace: rows with the same key replaced, the others kept.
    dst.sql(
        "ALTER TABLE t ADD PRIMARY KEY (id);
         UPDATE t SET v = 'changed' WHERE id <= 10;
         INSERT INTO t VALUES (5000, 'only in the target');",
    );
    let (ok, out) = ferry_run(tmp.path(), &job("    existing: replace\n"));
    assert!(ok, "{out}");
    assert_eq!(rows(), 1001);
    assert_eq!(
        dst.sql("SELECT count(*) FROM t WHERE v = 'changed'").trim(),
        "0"
    );
    // ... which `writeMode: insert` contradicts: a config error naming the field.
    let (ok, out) = ferry_run(
        tmp.path(),
        &job("    existing: replace\n    writeMode: insert\n"),
    );
    assert!(!ok && out.contains("existing"), "{out}");

    // drop: created again from the source (the target's extra column goes).
    dst.sql("ALTER TABLE t ADD COLUMN extra int");
    let (ok, out) = ferry_run(tmp.path(), &job("    existing: drop\n"));
    assert!(ok, "{out}");
    assert_eq!(rows(), 1000);
    assert_eq!(
        dst.sql(&format!(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = '{}' AND table_name = 't'",
            dst.name
        ))
        .trim(),
        "2"
    );

    // fail: the table must not exist.
    let (ok, out) = ferry_run(tmp.path(), &job("    existing: fail\n"));
    assert!(!ok && out.contains("exists already"), "{out}");
    assert_eq!(rows(), 1000);

    // A job that says how to treat the rows with `preSql` runs under the default.
    let pre = format!(
        "    preSql: [\"DELETE FROM {}.t WHERE id > 500\"]\n",
        dst.name
    );
    let (ok, out) = ferry_run(tmp.path(), &job(&pre));
    assert!(ok, "{out}");
    assert_eq!(rows(), 1500);
}

#[test]
fn mariadb_and_sqlite_targets_refuse_by_default_and_truncate_or_drop_on_request() {
    let Some(src) = PgSchema::new("ferry_ex_src") else {
        return;
    };
    let Some(my) = MyDb::new("ferry_ex_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL);
         INSERT INTO t SELECT g, 'v' || g FROM generate_series(1, 300) g;",
    );
    let tmp = tempfile::tempdir().unwrap();
    let lite = tmp.path().join("target.db");
    let job = |writer: &str, extra: &str| {
        format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    url: {url}\n    table: {s}.t\n\
             writer:\n  name: {writer}\n  parameter:\n    table: t\n    createTable: true\n{extra}",
            url = pg_url(),
            s = src.name,
        )
    };
    for (writer, url, rows) in [
        (
            "mysqlwriter",
            my.url(),
            Box::new(|| count(my.sql("SELECT COUNT(*) FROM t"))) as Box<dyn Fn() -> u64>,
        ),
        (
            "sqlitewriter",
            format!("sqlite://{}", lite.display()),
            Box::new(|| {
                let out = Command::new("sqlite3")
                    .arg(&lite)
                    .arg("SELECT count(*) FROM t")
                    .output()
                    .expect("sqlite3");
                count(String::from_utf8_lossy(&out.stdout).into_owned())
            }),
        ),
    ] {
        let url = format!("    url: {url}\n");
        let (ok, out) = ferry_run(tmp.path(), &job(writer, &url));
        assert!(ok, "{writer}: {out}");
        assert_eq!(rows(), 300, "{writer}");
        let (ok, out) = ferry_run(tmp.path(), &job(writer, &url));
        assert!(!ok && out.contains("already holds rows"), "{writer}: {out}");
        assert_eq!(rows(), 300, "{writer}: nothing written");
        let (ok, out) = ferry_run(
            tmp.path(),
            &job(writer, &format!("{url}    existing: truncate\n")),
        );
        assert!(ok, "{writer}: {out}");
        assert_eq!(rows(), 300, "{writer}");
        let (ok, out) = ferry_run(
            tmp.path(),
            &job(writer, &format!("{url}    existing: drop\n")),
        );
        assert!(ok, "{writer}: {out}");
        assert_eq!(rows(), 300, "{writer}");
    }
}
