//! Splits resume from a position the source supplies, whatever the key:
//! a job through the tunnel fails mid-split (the target refuses one row),
//! an operator fixes the target and resumes, and the split continues after
//! the last committed row of its composite, text-led primary key. The
//! target has no key and the job writes with `writeMode: insert`, so a
//! split read again from its start would show as duplicate rows.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use ferry_broker::jobs::JobState;
use ferry_tests::db::{pg_url, MyDb, PgSchema};

/// The checkpoint the target holds for the failed job's only split: a
/// position of more than one value (stored as JSON), with some rows
/// committed but not all.
fn checkpoint(dst: &PgSchema, total: u64) -> String {
    let rows = dst.sql("SELECT count(*) FROM events");
    let rows: u64 = rows.trim().parse().unwrap();
    assert!(
        rows > 0 && rows < total,
        "{rows} of {total} rows before the failure"
    );
    let key = dst.sql("SELECT last_key FROM ferry_checkpoints");
    assert!(key.contains("\"text\""), "a composite position: {key}");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_composite_text_key_resumes_after_its_position_postgres() {
    let Some(src) = PgSchema::new("ferry_pos_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_pos_dst") else {
        return;
    };
    // Regions a literal must survive: quotes, backslashes, a tab, non-ASCII,
    // the empty string.
    src.sql(
        r"CREATE TABLE events (region text, seq int, v text NOT NULL, PRIMARY KEY (region, seq));
         INSERT INTO events
         SELECT r, g, r || '#' || g
         FROM unnest(ARRAY['O''Brien', E'a\\b', '北京', 'Zürich', 'z', '', E'tab\there']) r,
              generate_series(1, 3000) g;",
    );
    dst.sql(
        "CREATE TABLE events (region text, seq int, v text CONSTRAINT not_yet CHECK (v <> 'Zürich#1500'));",
    );
    let rig = Rig::start(&[RigSource {
        name: "shop",
        kind: "postgres",
        url: &pg_url(),
        extra: "",
    }])
    .await;
    let job = format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {}\n    table: {}.events\n    fetchSize: 500\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.events\n    writeMode: insert\n\
         setting:\n  speed: {{channel: 1}}\n  retry: {{attempts: 1}}\n",
        rig.datasource("shop"),
        src.name,
        pg_url(),
        dst.name
    );
    let failed = rig.run(&job).await;
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    let key = checkpoint(&dst, 21_000);

    dst.sql("ALTER TABLE events DROP CONSTRAINT not_yet");
    assert_eq!(rig.resume(&failed.id).await, 202);
    let end = rig.wait(&failed.id, Duration::from_secs(120)).await;
    assert_eq!(end.state, JobState::Succeeded, "{end:?}");
    let q = "SELECT count(*), md5(string_agg(region || '|' || seq || '|' || v, ',' \
             ORDER BY region COLLATE \"C\", seq)) FROM events";
    assert_eq!(dst.sql(q), src.sql(q), "resumed after {key}");
    let logs = rig
        .broker
        .jobs()
        .logs(&failed.id, 0, 1000)
        .await
        .unwrap()
        .unwrap();
    assert!(logs.iter().any(|l| l.message.contains("resum")), "{logs:?}");
    rig.stop().await;
}

/// Rows as a sorted list of per-row MD5s of `city|n|v` (the same bytes in
/// both databases, so the same digests).
fn digests(text: &str) -> Vec<String> {
    let mut d: Vec<String> = text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect();
    d.sort();
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_insensitive_key_with_a_datetime_resumes_after_its_position_mariadb() {
    let Some(src) = MyDb::new("ferry_pos_src") else {
        return;
    };
    let Some(dst) = PgSchema::new("ferry_pos_dst") else {
        return;
    };
    // utf8mb4_general_ci orders 'abc' < 'ABD' < 'Abe' (byte order would not):
    // the position must be compared by the database, in its collation.
    src.sql(
        r"CREATE TABLE events (city VARCHAR(20) COLLATE utf8mb4_general_ci, at DATETIME(6),
            n INT, v VARCHAR(100) NOT NULL, PRIMARY KEY (city, at, n));
          SET SESSION max_recursive_iterations = 10000;
          INSERT INTO events
          WITH RECURSIVE q(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM q WHERE n < 2000)
          SELECT c.city, TIMESTAMP('2024-06-20 10:00:00') + INTERVAL (q.n MOD 5) SECOND
                   + INTERVAL (q.n MOD 3) MICROSECOND,
                 q.n, CONCAT(c.city, '#', q.n)
          FROM (SELECT 'abc' AS city UNION ALL SELECT 'ABD' UNION ALL SELECT 'Abe'
                UNION ALL SELECT 'O''Brien' UNION ALL SELECT 'a\\b' UNION ALL SELECT '北京') c
          CROSS JOIN q;",
    );
    dst.sql(
        "CREATE TABLE events (city text, at timestamp, n int, v text CONSTRAINT not_yet CHECK (v <> 'Abe#1000'));",
    );
    let rig = Rig::start_with(
        &[RigSource {
            name: "shop",
            kind: "mysql",
            url: &src.url(),
            extra: "",
        }],
        &BTreeMap::new(),
        None,
    )
    .await;
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {}\n    table: events\n    fetchSize: 500\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {}\n    table: {}.events\n    writeMode: insert\n\
         setting:\n  speed: {{channel: 1}}\n  retry: {{attempts: 1}}\n",
        rig.datasource("shop"),
        pg_url(),
        dst.name
    );
    let failed = rig.run(&job).await;
    assert_eq!(failed.state, JobState::Failed, "{failed:?}");
    let key = checkpoint(&dst, 12_000);

    dst.sql("ALTER TABLE events DROP CONSTRAINT not_yet");
    assert_eq!(rig.resume(&failed.id).await, 202);
    let end = rig.wait(&failed.id, Duration::from_secs(120)).await;
    assert_eq!(end.state, JobState::Succeeded, "{end:?}");
    let want = digests(&src.sql("SELECT MD5(CONCAT(city, '|', n, '|', v)) FROM events"));
    let got = digests(&dst.sql("SELECT md5(city || '|' || n || '|' || v) FROM events"));
    assert_eq!(want.len(), 12_000);
    assert_eq!(got.len(), want.len(), "rows after resuming after {key}");
    assert_eq!(got, want, "resumed after {key}");
    rig.stop().await;
}
