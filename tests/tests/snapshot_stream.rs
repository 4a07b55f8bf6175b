//! Full + incremental (`setting.mode: snapshot+stream`) through the tunnel: the stream's
//! start position recorded in the target, the table copied while writers change it, then
//! the changes since that position streamed. Its own test binary: the copy loads the shared
//! server, and the change-stream tests beside it wait on timeouts.

mod common;

use std::time::{Duration, Instant};

use common::replication::*;
use common::*;
use ferry_broker::jobs::JobState;
use ferry_tests::db::{MyDb, PgSchema};

/// Writes to `acc` at about 1,000 rows/s until stopped: per 100 ms, one transaction of 40
/// updates, 20 deletes and 40 inserts, plus an update of a row with a TOASTed value (not
/// sent again) that the next round deletes: a snapshot read after both sees neither.
struct Writers {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writers {
    /// Writers running their SQL through `exec` (true: committed) on a table of `rows`.
    fn start(rows: u64, exec: impl Fn(&str) -> bool + Send + 'static) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x % rows + 1
            };
            let (mut round, mut written) = (0u64, 0u64);
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                let ids = |n: usize, next: &mut dyn FnMut() -> u64| {
                    (0..n)
                        .map(|_| next().to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                };
                let updated = ids(40, &mut next);
                let deleted = ids(20, &mut next);
                let base = rows + 1 + round * 40;
                let inserted = (base..base + 40)
                    .map(|g| format!("({g}, {}, {g}, 'new', NULL)", g % 7))
                    .collect::<Vec<_>>()
                    .join(", ");
                // From the end of the table, which the copy reads last.
                let toasted = rows - (round % 900) * 1000;
                let sql = format!(
                    "BEGIN;
                     UPDATE acc SET amount = amount + 1, note = 'round {round}' WHERE id IN ({updated});
                     DELETE FROM acc WHERE id IN ({deleted});
                     INSERT INTO acc VALUES {inserted};
                     UPDATE acc SET amount = amount + 1 WHERE id = {toasted};
                     DELETE FROM acc WHERE id = {};
                     COMMIT;",
                    toasted + 1000
                );
                if exec(&sql) {
                    written += 100;
                }
                round += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            written
        });
        Self {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the writers; returns the rows they changed.
    fn stop(&mut self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Full + incremental (`setting.mode: snapshot+stream`): a 1,000,000-row table copied while
/// writers change it at about 1,000 rows/s, then the changes since the copy began streamed;
/// once caught up, the target equals the source (count and checksum).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_then_its_stream_misses_nothing_while_writers_run() {
    let Some((repl, dst)) = Replication::with_target("ferry_chg_full") else {
        return;
    };
    let src = &repl.src;
    const ROWS: u64 = 1_000_000;
    src.sql(&format!(
        "CREATE TABLE acc (id bigint PRIMARY KEY, grp int, amount numeric(14,2), note text, big text);
         ALTER TABLE acc ALTER big SET STORAGE EXTERNAL;
         INSERT INTO acc SELECT g, g % 7, g, 'row ' || g,
                CASE WHEN g % 1000 = 0 THEN repeat(md5(g::text), 100) END
           FROM generate_series(1, {ROWS}) g;
         ANALYZE acc;"
    ));
    let mut rig = repl.rig("").await;
    let schema = src.name.clone();
    let mut writers = Writers::start(ROWS, move |sql| {
        ferry_tests::db::psql(sql, Some(&schema)).is_ok()
    });
    let job = stream_job(&rig.datasource("shop"), &src.name, &dst.name, "")
        .replace("mode: stream", "mode: snapshot+stream");
    let vars = ferry_engine::config::default_vars();
    let started = Instant::now();
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    // A third into the copy, the agent is killed: the copy goes on after the last chunk the
    // target committed.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
        assert_eq!(
            status.state,
            JobState::Running,
            "{status:?}\n{}",
            log_text()
        );
        if status.progress.records_written >= ROWS / 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the copy did not start: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.kill_agent().await;
    // The copy runs, then the stream: its progress appears once changes are applied.
    wait_streaming_after_copy(&rig, &id, ROWS).await;
    let copied = started.elapsed();
    // Writers go on a little into the stream, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changed = writers.stop();
    let rows: usize = src.sql("SELECT count(*) FROM acc").trim().parse().unwrap();
    eprintln!(
        "full + incremental: copy and start {:.1} s, {changed} rows changed by the writers meanwhile",
        copied.as_secs_f64()
    );
    assert!(changed >= 1_000, "the writers changed {changed} rows");
    let sum = |s: &PgSchema| {
        s.sql(&format!(
            "SELECT count(*) || ' ' || md5(string_agg(a::text, '|' ORDER BY id)) FROM {}.acc a",
            s.name
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (want, got) = (sum(src), sum(&dst));
        if want == got {
            assert!(want.starts_with(&format!("{rows} ")), "{want}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target did not catch up: source {want}, target {got}, {} rows differ; the log:\n{}",
            differing(src, &dst),
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The only fault in this binary's tests: the line is this copy's.
    assert!(
        log_text().contains("resuming after its last checkpoint"),
        "the copy was not resumed by chunk"
    );
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// The same from MariaDB: the stream's start is the server's binlog position when the job
/// began, the copy reads the table while writers change it, then the binlog from that
/// position is applied; the target ends equal to the source, row for row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mariadb_snapshot_then_its_stream_misses_nothing_while_writers_run() {
    logs();
    let Some(my) = MyDb::new("ferry_full_my") else {
        return;
    };
    let settings = my.sql("SELECT @@log_bin, @@binlog_format, @@binlog_row_image");
    if settings.split_whitespace().collect::<Vec<_>>() != ["1", "ROW", "FULL"] {
        ferry_tests::missing(&format!(
            "MariaDB's binary log in ROW format with FULL images ({}; .ci/cdc-servers.sh sets them)",
            settings.trim()
        ));
        return;
    }
    let Some(dst) = PgSchema::new("ferry_full_my_dst") else {
        return;
    };
    const ROWS: u64 = 1_000_000;
    my.sql(&format!(
        "CREATE TABLE acc (id BIGINT PRIMARY KEY, grp INT, amount DECIMAL(14,2), note TEXT, big LONGTEXT);
         INSERT INTO acc SELECT seq, seq % 7, seq, CONCAT('row ', seq),
                IF(seq % 1000 = 0, REPEAT(MD5(seq), 100), NULL)
           FROM seq_1_to_{ROWS};"
    ));
    let rig = Rig::start(&[RigSource {
        name: "legacy",
        kind: "mysql",
        url: &my.url(),
        extra: "changes = {}",
    }])
    .await;
    let db = my.name.clone();
    let mut writers = Writers::start(ROWS, move |sql| {
        ferry_tests::db::mariadb_cli(Some(&db))
            .args(["-e", sql])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    let job = format!(
        "reader:\n  name: mysqlreader\n  parameter:\n    datasource: {ds}\n    table: acc\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {d}.acc\n    createTable: true\n\
         setting:\n  mode: snapshot+stream\n",
        ds = rig.datasource("legacy"),
        url = ferry_tests::db::pg_url(),
        d = dst.name
    );
    let vars = ferry_engine::config::default_vars();
    let started = Instant::now();
    let id = rig.broker.submit(&job, vars, None).await.unwrap();
    wait_streaming_after_copy(&rig, &id, ROWS).await;
    let copied = started.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let changed = writers.stop();
    eprintln!(
        "full + incremental from MariaDB: copy and start {:.1} s, {changed} rows changed by the writers meanwhile",
        copied.as_secs_f64()
    );
    assert!(changed >= 1_000, "the writers changed {changed} rows");
    let want = my.sql(
        "SELECT CONCAT_WS('|', id, grp, amount, note, IFNULL(MD5(big), '-')) FROM acc ORDER BY id",
    );
    let got = || {
        dst.sql(&format!(
            "SELECT concat_ws('|', id, grp, amount, note, coalesce(md5(big), '-')) FROM {}.acc ORDER BY id",
            dst.name
        ))
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = got();
        if now == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the target did not catch up: {} source rows, {} target rows, first differences {:?}; the log:\n{}",
            want.lines().count(),
            now.lines().count(),
            want.lines().zip(now.lines()).filter(|(a, b)| a != b).take(3).collect::<Vec<_>>(),
            log_text()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let status = rig.broker.jobs().get(&id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Running, "{status:?}");
    assert!(rig.broker.jobs().cancel(&id));
    rig.wait(&id, Duration::from_secs(30)).await;
    rig.stop().await;
}

/// Waits until job `id` copied `rows` and its stream applied something.
async fn wait_streaming_after_copy(rig: &Rig, id: &str, rows: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = rig.broker.jobs().get(id).await.unwrap().unwrap();
        assert_eq!(
            status.state,
            JobState::Running,
            "{status:?}\n{}",
            log_text()
        );
        if status.progress.records_written >= rows && status.progress.stream.is_some() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no stream after the copy: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
