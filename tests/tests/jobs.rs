//! Jobs through the tunnel, in one process: the broker plans with an agent,
//! the agent reads its own data source (the broker never sees the URL),
//! batches cross a real QUIC tunnel, the broker writes and acks.

mod common;

use common::*;
use ferry_broker::jobs::JobState;
use ferry_tests::db::{pg_url, MyDb, PgSchema};

fn pg_to_pg_job(ds: &str, src: &str, dst: &str, extra_reader: &str) -> String {
    format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {src}.orders\n    splitPk: id\n{extra_reader}\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {dst}.orders\n    createTable: true\n\
         setting:\n  speed: {{channel: 3}}\n",
        url = pg_url()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_to_postgres_through_the_tunnel() {
    let Some(src) = PgSchema::new("ferry_job_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_job_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE orders (id bigint, name text, amount numeric(18,4), ts timestamptz, d date, paid boolean, raw bytea);
         INSERT INTO orders SELECT g, CASE WHEN g % 7 = 0 THEN NULL WHEN g % 11 = 0 THEN '' ELSE 'name ' || g || ' 東京 🚚' END,
                g * 1.2345 - 500, timestamptz '2024-06-20 00:00:00+00' + g * interval '1 second',
                date '2024-06-20' - (g % 400), g % 3 = 0, CASE WHEN g % 5 = 0 THEN '\\x00ff00'::bytea END
           FROM generate_series(-50, 30000) g;
         INSERT INTO orders VALUES (NULL, 'null key', 1, now(), NULL, NULL, NULL);
         ANALYZE orders;",
    );
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let job = pg_to_pg_job(&rig.datasource("shop"), &src.name, &dst.name, "");
    let status = rig.run(&job).await;
    assert_eq!(status.state, JobState::Succeeded, "{status:?}");
    let summary = status.summary.expect("summary");
    assert_eq!(summary.records_written, 30052);
    assert!(summary.splits > 3, "{summary:?}");
    assert!(summary.wire_bytes > 0, "wire bytes counted: {summary:?}");
    assert!(
        summary.to_string().contains("Bytes on the wire"),
        "{summary}"
    );
    let diff = dst.sql(&format!(
        "SELECT count(*) FROM ((SELECT * FROM {s}.orders EXCEPT ALL SELECT * FROM orders)
          UNION ALL (SELECT * FROM orders EXCEPT ALL SELECT * FROM {s}.orders)) x",
        s = src.name
    ));
    assert_eq!(diff.trim(), "0", "source and target differ");
    // The broker knows the source's name and kind, never its URL.
    let agents = rig.broker.registry().list();
    let a = agents.iter().find(|a| a.agent_id == rig.agent_id).unwrap();
    assert_eq!(a.sources.len(), 1);
    assert_eq!(
        (a.sources[0].name.as_str(), a.sources[0].kind.as_str()),
        ("shop", "postgres")
    );
    assert!(!serde_json::to_string(&agents).unwrap().contains(&pg_url()));
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_source_or_group_fails_with_a_clear_error() {
    let Some(dst) = PgSchema::new("ferry_job_dst") else {
        return;
    };
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let job = pg_to_pg_job(&rig.datasource("nope"), "public", &dst.name, "");
    let s = rig.run(&job).await;
    assert_eq!(s.state, JobState::Failed);
    let e = s.error.unwrap();
    assert!(e.contains("has a data source `nope`"), "{e}");

    let job = pg_to_pg_job("no-such-group/shop", "public", &dst.name, "");
    let s = rig.run(&job).await;
    let e = s.error.unwrap();
    assert!(e.contains("no agent of group `no-such-group`"), "{e}");

    // The agent's own error (here: a missing table) comes back as it is.
    let job = pg_to_pg_job(&rig.datasource("shop"), &dst.name, &dst.name, "");
    let s = rig.run(&job).await;
    let e = s.error.unwrap();
    assert!(e.contains("orders") && e.contains("agent `rig-"), "{e}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_fails_on_the_agent_fails_the_job() {
    let Some(my) = MyDb::new("ferry_job_my") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_job_dst") else {
        return;
    };
    my.sql(
        "SET SESSION sql_mode = '';
         CREATE TABLE t (id INT PRIMARY KEY, d DATE NOT NULL);
         INSERT INTO t SELECT seq, '2024-01-01' FROM seq_1_to_5000;
         INSERT INTO t VALUES (5001, '0000-00-00');",
    );
    let rig = Rig::start(&[RigSource {
        name: "legacy",
        kind: "mysql",
        url: &my.url(),
        extra: "options = { zeroDate = \"error\" }",
    }])
    .await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: t\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.t\n    createTable: true\n",
        rig.datasource("legacy"),
        pg_url(),
        dst.name
    );
    let s = rig.run(&job).await;
    assert_eq!(s.state, JobState::Failed, "{s:?}");
    // The broker hears which column could not be read; the row and the
    // reason (they may quote source data) stay in the agent's log.
    let e = s.error.unwrap();
    assert!(
        e.contains("column `d`") && e.contains("withheld") && e.contains("agent `rig-"),
        "{e}"
    );
    assert!(
        common::wait_log(
            &["column `d`", "row ", "zero date"],
            std::time::Duration::from_secs(5)
        )
        .await,
        "the agent's log has the whole error"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_reads_outside_its_policy() {
    let Some(src) = PgSchema::new("ferry_job_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_job_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE orders (id int PRIMARY KEY, v text);
         CREATE TABLE secrets (id int PRIMARY KEY, password text);
         INSERT INTO orders VALUES (1, 'a'), (2, 'b');
         INSERT INTO secrets VALUES (1, 'hunter2');",
    );
    let policy = format!("tables = [\"{}.orders\"]", src.name);
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "postgres",
        url: &pg_url(),
        extra: &policy,
    }])
    .await;
    let ds = rig.datasource("shop");
    let job = |reader_extra: &str, table: &str| {
        format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n{reader_extra}\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.{table}\n    createTable: true\n",
            url = pg_url(),
            d = dst.name
        )
    };
    // A table the agent does not list.
    let s = rig
        .run(&job(&format!("    table: {}.secrets\n", src.name), "t1"))
        .await;
    assert_eq!(s.state, JobState::Failed);
    let e = s.error.unwrap();
    assert!(
        e.contains("does not allow reading table") && e.contains("secrets"),
        "{e}"
    );
    // Free-form SQL, off by default.
    let s = rig
        .run(&job(
            &format!(
                "    querySql: \"SELECT password FROM {}.secrets\"\n",
                src.name
            ),
            "t2",
        ))
        .await;
    let e = s.error.unwrap();
    assert!(
        e.contains("querySql") && e.contains("allow_query_sql"),
        "{e}"
    );
    // A subquery in `where` is refused when the job is submitted (and by
    // the agent, were it sent: tests/tests/hostile_broker.rs).
    let e = rig
        .broker
        .submit(
            &job(
                &format!(
                    "    table: {s}.orders\n    where: \"id IN (SELECT id FROM {s}.secrets)\"\n",
                    s = src.name
                ),
                "t3",
            ),
            ferry_engine::config::default_vars(),
            None,
        )
        .await
        .expect_err("a subquery in `where` is refused")
        .to_string();
    assert!(e.contains("where") && e.contains("subquer"), "{e}");
    // What the policy allows works.
    let s = rig
        .run(&job(&format!("    table: {}.orders\n", src.name), "t4"))
        .await;
    assert_eq!(s.state, JobState::Succeeded, "{s:?}");
    assert_eq!(dst.sql("SELECT count(*) FROM t4").trim(), "2");
    rig.stop().await;
}

/// `POST /v1/jobs/{id}/resume` (what `ferry job resume` calls): a job that
/// failed mid-way starts again from its state; the splits it finished are
/// not read again, and the target ends equal to the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_resumed_by_hand_skips_the_splits_it_finished() {
    let Some(src) = PgSchema::new("ferry_resume_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_resume_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE orders (id int PRIMARY KEY, v text);
         INSERT INTO orders SELECT g, 'v' || g FROM generate_series(1, 20000) g;",
    );
    // The target refuses one row of the last splits until an operator
    // fixes it.
    dst.sql(
        "CREATE TABLE orders (id int PRIMARY KEY, v text CONSTRAINT not_yet CHECK (v <> 'v17000'));",
    );
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {}\n    table: {}.orders\n    splitPk: id\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.orders\n    writeMode: replace\n\
         setting:\n  speed: {{channel: 1}}\n  errorLimit: {{record: 0}}\n",
        rig.datasource("shop"),
        src.name,
        pg_url(),
        dst.name
    );
    let failed = rig.run(&job).await;
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    let done_before: Vec<u32> = failed
        .tasks
        .iter()
        .filter(|t| t.state == ferry_state::SplitState::Done)
        .map(|t| t.split)
        .collect();
    assert!(!done_before.is_empty(), "{failed:?}");

    // The operator fixes the target, then resumes.
    dst.sql("ALTER TABLE orders DROP CONSTRAINT not_yet");
    assert_eq!(rig.resume(&failed.id).await, 202);
    let end = rig
        .wait(&failed.id, std::time::Duration::from_secs(120))
        .await;
    assert_eq!(end.state, JobState::Succeeded, "{end:?}");
    assert_eq!(end.resumes, 1);
    for t in &end.tasks {
        if done_before.contains(&t.split) {
            assert_eq!(t.attempts, 1, "split {} was read again: {end:?}", t.split);
        }
    }
    let q = "SELECT count(*), md5(string_agg(id || v, ',' ORDER BY id)) FROM orders";
    assert_eq!(dst.sql(q), src.sql(q));
    // A job that succeeded has nothing to resume; an unknown one is not found.
    assert_eq!(rig.resume(&failed.id).await, 409);
    assert_eq!(rig.resume("job-999").await, 404);
    let logs = rig
        .broker
        .jobs()
        .logs(&failed.id, 0, 1000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        logs.iter().any(|l| l
            .message
            .starts_with(&format!("resumed by an operator: {} of", done_before.len()))),
        "{logs:?}"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_is_a_setting_of_the_job() {
    let Some(src) = PgSchema::new("ferry_job_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_job_dst") else {
        return;
    };
    src.sql(
        "CREATE TABLE orders (id bigint, v text);
         INSERT INTO orders SELECT g, repeat(md5((g % 50)::text), 4) FROM generate_series(1, 20000) g;",
    );
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let mut wire = Vec::new();
    for (i, level) in ["none", "zstd:9"].into_iter().enumerate() {
        let job = format!(
            "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {s}.orders\n\
             writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.o{i}\n    createTable: true\n\
             setting:\n  compression: \"{level}\"\n",
            ds = rig.datasource("shop"),
            s = src.name,
            d = dst.name,
            url = pg_url()
        );
        let status = rig.run(&job).await;
        assert_eq!(status.state, JobState::Succeeded, "{status:?}");
        let summary = status.summary.expect("summary");
        assert_eq!(summary.records_written, 20000);
        wire.push(summary.wire_bytes);
    }
    // Repetitive text: zstd makes it several times smaller than none.
    assert!(wire[0] > 4 * wire[1], "none vs zstd:9 wire bytes: {wire:?}");
    // A bad setting is refused at submission, naming it.
    let bad = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {s}.orders\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.o9\n    createTable: true\n\
         setting:\n  compression: \"lz4\"\n",
        ds = rig.datasource("shop"),
        s = src.name,
        d = dst.name,
        url = pg_url()
    );
    let e = rig
        .broker
        .submit(&bad, ferry_engine::config::default_vars(), None)
        .await
        .expect_err("lz4 is not offered");
    assert!(e.to_string().contains("setting.compression"), "{e}");
    rig.stop().await;
}
