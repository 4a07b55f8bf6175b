//! The broker's `/metrics`, in the OpenMetrics text format Prometheus
//! scrapes (prometheus-client, the Prometheus project's own crate).
//!
//! Counters are bumped where the work happens (the job runner's observer,
//! the tunnel reader); gauges that describe "now" (agents, running tasks
//! and jobs, compression ratio) are set from live state at each scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

/// Label sets: `{kind="…"}` for errors, `{state="…"}` for ended jobs.
type KindLabel = Vec<(&'static str, &'static str)>;

/// Every metric the broker exports.
pub struct Metrics {
    registry: Registry,
    pub rows_read: Counter,
    pub rows_written: Counter,
    pub bytes_read: Counter,
    pub bytes_written: Counter,
    pub wire_bytes: Counter,
    pub dirty_records: Counter,
    pub errors: Family<KindLabel, Counter>,
    pub jobs_ended: Family<KindLabel, Counter>,
    connections_refused: Family<KindLabel, Counter>,
    sessions_opened: Family<KindLabel, Counter>,
    pub task_seconds: Histogram,
    pub commit_seconds: Histogram,
    agents: Gauge,
    tasks_active: Gauge,
    jobs_running: Gauge,
    handshakes: Gauge,
    compression_ratio: Gauge<f64, AtomicU64>,
    stream_lag: Family<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>,
    stream_behind: Family<Vec<(&'static str, String)>, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ferry");
        let m = Self {
            rows_read: Counter::default(),
            rows_written: Counter::default(),
            bytes_read: Counter::default(),
            bytes_written: Counter::default(),
            wire_bytes: Counter::default(),
            dirty_records: Counter::default(),
            errors: Family::default(),
            jobs_ended: Family::default(),
            connections_refused: Family::default(),
            sessions_opened: Family::default(),
            // 10 ms .. ~5.8 h
            task_seconds: Histogram::new(exponential_buckets(0.01, 4.0, 12)),
            // 0.1 ms .. ~6.5 s
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 3.0, 11)),
            agents: Gauge::default(),
            tasks_active: Gauge::default(),
            jobs_running: Gauge::default(),
            handshakes: Gauge::default(),
            compression_ratio: Gauge::default(),
            stream_lag: Family::default(),
            stream_behind: Family::default(),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "rows_read",
            "Rows that arrived from readers",
            m.rows_read.clone(),
        );
        r.register(
            "rows_written",
            "Rows committed in targets",
            m.rows_written.clone(),
        );
        r.register(
            "bytes_read",
            "Bytes of Arrow data that arrived from readers (uncompressed)",
            m.bytes_read.clone(),
        );
        r.register(
            "bytes_written",
            "Bytes of Arrow data committed in targets",
            m.bytes_written.clone(),
        );
        r.register(
            "wire_bytes",
            "Bytes of data streams received over the tunnel (compressed)",
            m.wire_bytes.clone(),
        );
        r.register(
            "dirty_records",
            "Rows a target could not hold",
            m.dirty_records.clone(),
        );
        r.register(
            "errors",
            "Errors by kind: task_retried, task_failed, job_failed, state_store",
            m.errors.clone(),
        );
        r.register(
            "jobs_ended",
            "Jobs that ended, by final state",
            m.jobs_ended.clone(),
        );
        r.register(
            "connections_refused",
            "Connection attempts that did not become a session, by reason: busy, source_busy, source_rate, tls, timeout, rejected, transport, accept",
            m.connections_refused.clone(),
        );
        r.register(
            "sessions_opened",
            "Agent sessions admitted, by transport: quic, tls-tcp",
            m.sessions_opened.clone(),
        );
        r.register(
            "handshakes_in_progress",
            "Connection attempts holding a handshake slot now",
            m.handshakes.clone(),
        );
        r.register(
            "task_duration_seconds",
            "Time from a task's start to its last commit, retries included",
            m.task_seconds.clone(),
        );
        r.register(
            "commit_duration_seconds",
            "Time a target took to write and commit one batch",
            m.commit_seconds.clone(),
        );
        r.register(
            "agents_connected",
            "Agents with a live session",
            m.agents.clone(),
        );
        r.register(
            "tasks_active",
            "Tasks being written now",
            m.tasks_active.clone(),
        );
        r.register(
            "jobs_running",
            "Jobs running on this broker",
            m.jobs_running.clone(),
        );
        r.register(
            "compression_ratio",
            "Arrow bytes read per wire byte, over all data streams since the start",
            m.compression_ratio.clone(),
        );
        r.register(
            "stream_lag_seconds",
            "Per running change-stream job: seconds from the source's commit of the last transaction applied to its commit in the target",
            m.stream_lag.clone(),
        );
        r.register(
            "stream_behind_bytes",
            "Per running change-stream job: bytes of the source's log (WAL, binlog) after the position the target holds, as the agent last measured them",
            m.stream_behind.clone(),
        );
        Self { registry, ..m }
    }
}

/// What a scrape reads from live state.
pub struct Live {
    pub agents: usize,
    pub handshakes: usize,
    pub tasks_active: usize,
    pub jobs_running: usize,
    /// Running change-stream jobs.
    pub streams: Vec<StreamLive>,
}

/// A running change-stream job, as a scrape shows it.
pub struct StreamLive {
    /// `job-N`.
    pub job: String,
    /// Seconds from the source's commit of the last transaction applied to the target's.
    pub lag_secs: f64,
    /// Source log bytes after the target's position, once the agent measured them.
    pub behind_bytes: Option<u64>,
}

impl Metrics {
    /// One error of `kind`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&vec![("kind", kind)]).inc();
    }

    /// One job ended in `state`.
    pub fn job_ended(&self, state: &'static str) {
        self.jobs_ended.get_or_create(&vec![("state", state)]).inc();
    }

    /// One connection attempt refused for `reason`.
    pub fn refused(&self, reason: &'static str) {
        self.connections_refused
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    /// Attempts refused for `reason` so far.
    pub fn refused_count(&self, reason: &'static str) -> u64 {
        self.connections_refused
            .get_or_create(&vec![("reason", reason)])
            .get()
    }

    /// One session admitted over `transport`.
    pub fn session_opened(&self, transport: &'static str) {
        self.sessions_opened
            .get_or_create(&vec![("transport", transport)])
            .inc();
    }

    /// The exposition text, gauges set from `live`.
    pub fn render(&self, live: Live) -> String {
        self.agents.set(live.agents as i64);
        self.handshakes.set(live.handshakes as i64);
        self.tasks_active.set(live.tasks_active as i64);
        self.jobs_running.set(live.jobs_running as i64);
        // Only running streams: an ended job's series goes.
        self.stream_lag.clear();
        self.stream_behind.clear();
        for st in live.streams {
            let label = vec![("job", st.job)];
            self.stream_lag.get_or_create(&label).set(st.lag_secs);
            if let Some(b) = st.behind_bytes {
                self.stream_behind
                    .get_or_create(&label)
                    .set(i64::try_from(b).unwrap_or(i64::MAX));
            }
        }
        let wire = self.wire_bytes.get();
        if wire > 0 {
            self.compression_ratio
                .set(self.bytes_read.get() as f64 / wire as f64);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_prefix() {
        let m = Metrics::default();
        m.rows_written.inc_by(7);
        m.bytes_read.inc_by(1000);
        m.wire_bytes.inc_by(250);
        m.error("task_retried");
        m.task_seconds.observe(1.5);
        m.refused("tls");
        m.session_opened("quic");
        let text = m.render(Live {
            agents: 2,
            handshakes: 3,
            tasks_active: 1,
            jobs_running: 1,
            streams: vec![StreamLive {
                job: "job-7".into(),
                lag_secs: 0.25,
                behind_bytes: Some(4096),
            }],
        });
        for want in [
            "ferry_rows_written_total 7",
            "ferry_wire_bytes_total 250",
            "ferry_compression_ratio 4.0",
            "ferry_agents_connected 2",
            "ferry_tasks_active 1",
            "ferry_handshakes_in_progress 3",
            "ferry_stream_lag_seconds{job=\"job-7\"} 0.25",
            "ferry_stream_behind_bytes{job=\"job-7\"} 4096",
            "ferry_connections_refused_total{reason=\"tls\"} 1",
            "ferry_sessions_opened_total{transport=\"quic\"} 1",
            "ferry_errors_total{kind=\"task_retried\"} 1",
            "ferry_task_duration_seconds_count 1",
            "# EOF",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }
}
