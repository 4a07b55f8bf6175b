//! PostgreSQL change streams' test setup: a source schema with its slot and publication,
//! the stream job, and comparisons of source and target.

use std::time::{Duration, Instant};

use ferry_tests::db::{pg_url, PgSchema};

use super::{log_text, logs, Rig, RigSource};

/// The slot and publication a test's agent makes: dropped at the end, also when the test
/// fails (after the agent stopped streaming, or its walsender is ended first).
pub struct Replication {
    pub src: PgSchema,
}

impl Replication {
    /// `None`: skipped (not under CI) because the server cannot stream changes.
    pub fn new(prefix: &str) -> Option<Self> {
        logs();
        let src = PgSchema::new(prefix)?;
        let wal = src.sql("SHOW wal_level");
        if wal.trim() != "logical" {
            ferry_tests::missing(&format!(
                "PostgreSQL wal_level is {}, change streams need logical (.ci/cdc-servers.sh sets it)",
                wal.trim()
            ));
            return None;
        }
        Some(Self { src })
    }

    /// A source schema to stream and a target schema, or `None` (skipped, not under CI).
    pub fn with_target(prefix: &str) -> Option<(Self, PgSchema)> {
        let repl = Self::new(prefix)?;
        let dst = PgSchema::new(&format!("{prefix}_dst"))?;
        Some((repl, dst))
    }

    /// The slot's (and publication's) name: the source schema's, unique per test.
    pub fn slot(&self) -> &str {
        &self.src.name
    }

    pub fn confirmed_flush(&self) -> Option<String> {
        let v = self.src.sql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}'",
            self.slot()
        ));
        let v = v.trim();
        (!v.is_empty()).then(|| v.to_string())
    }

    /// A broker and an agent whose source `shop` streams changes through this slot
    /// (`extra`: more of the source's TOML).
    pub async fn rig(&self, extra: &str) -> Rig {
        Rig::start(&[RigSource {
            name: "shop",
            kind: "postgres",
            url: &pg_url(),
            extra: &format!("{extra}\nchanges = {{ slot = \"{}\" }}", self.slot()),
        }])
        .await
    }

    /// Waits until the slot's confirmed position reaches `lsn`.
    pub async fn wait_flushed(&self, lsn: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let flushed = self.confirmed_flush().expect("the slot exists");
            let reached = self
                .src
                .sql(&format!("SELECT '{flushed}'::pg_lsn >= '{lsn}'::pg_lsn"));
            if reached.trim() == "t" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the slot stayed at {flushed}, short of {lsn}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the agent's stream is attached to the slot: a walsender holds it. (A slot
    /// being made shows as active too, held by the backend making it, which waits for the
    /// transactions running then to end: changes committed meanwhile come before the slot's
    /// start and are never streamed.)
    pub async fn wait_active(&self) {
        let sql = format!(
            "SELECT count(*) FROM pg_replication_slots s JOIN pg_stat_replication r \
               ON r.pid = s.active_pid WHERE s.slot_name = '{}'",
            self.slot()
        );
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.src.sql(&sql).trim() != "1" {
            assert!(
                Instant::now() < deadline,
                "the agent never attached to its slot"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Replication {
    fn drop(&mut self) {
        let slot = self.slot().to_string();
        let _ = self.src.sql(&format!(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active_pid IS NOT NULL"
        ));
        for _ in 0..50 {
            let _ = self.src.sql(&format!(
                "SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active"
            ));
            let left = self.src.sql(&format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ));
            if left.trim() == "0" {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.src.sql(&format!("DROP PUBLICATION IF EXISTS {slot}"));
    }
}

pub fn stream_job(ds: &str, src: &str, dst: &str, existing: &str) -> String {
    format!(
        "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: {ds}\n    table: {src}.acc\n\
         writer:\n  name: postgresqlwriter\n  parameter:\n    url: {url}\n    table: {dst}.acc\n    createTable: true\n{existing}\
         setting:\n  mode: stream\n",
        url = pg_url()
    )
}

/// Source and target rows that differ (both ways), by every column's text.
pub fn differing(src: &PgSchema, dst: &PgSchema) -> String {
    dst.sql(&format!(
        "SELECT count(*) FROM ((SELECT * FROM {s}.acc EXCEPT ALL SELECT * FROM {d}.acc)
          UNION ALL (SELECT * FROM {d}.acc EXCEPT ALL SELECT * FROM {s}.acc)) x",
        s = src.name,
        d = dst.name
    ))
    .trim()
    .to_string()
}

pub async fn wait_equal(src: &PgSchema, dst: &PgSchema, rows: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = dst.sql(&format!("SELECT count(*) FROM {}.acc", dst.name));
        if n.trim() == rows.to_string() && differing(src, dst) == "0" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the target did not catch up: {} rows, {} differing; the log:\n{}",
            n.trim(),
            differing(src, dst),
            log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
