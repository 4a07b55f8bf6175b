//! The job runner, the same for both transports.
//!
//! A job is: read the schema and plan splits (through a [`Reading`]), prepare
//! the target once, run the splits as tasks, at most `channel` at once, each
//! writing its batches through one [`SinkWriter`](ferry_connectors::SinkWriter),
//! then finish the target. Only where batches come from changes: the reader
//! in this process ([`crate::local`]) or an agent across the tunnel (the
//! broker's implementation). Any task failure stops the job; dirty records
//! go to a JSON-lines file and count against `errorLimit`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use ferry_connectors::spec::TableSchema;
use ferry_connectors::{Checkpoint, ConnectorError, DirtyRecord, ReadSpec, Sink, Split};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Job;
use crate::position::Follow;
use crate::summary::Summary;
use crate::throttle::Throttle;

/// Why a read stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError {
    pub message: String,
    /// The reader was lost (its agent dropped, the tunnel broke), not the
    /// read refused: the task may start again, elsewhere.
    pub transient: bool,
}

impl ReadError {
    /// A reader lost on the way.
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }
}

impl From<String> for ReadError {
    fn from(message: String) -> Self {
        Self {
            message,
            transient: false,
        }
    }
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Where a job's batches come from.
#[async_trait]
pub trait Reading: Send + Sync {
    /// The Arrow schema of what the reader reads.
    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, String>;
    /// The source table's keys, indexes, defaults and identity, for the columns read
    /// (`None` for a query or a file). Call after `schema`.
    async fn describe(&self, spec: &ReadSpec) -> Result<Option<TableSchema>, String> {
        let _ = spec;
        Ok(None)
    }
    /// Splits of the read, at most about `max_splits`.
    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, String>;
    /// Rows the read will produce, when the source can estimate it cheaply
    /// (for the ETA). Call after `plan`.
    fn estimated_rows(&self) -> Option<u64> {
        None
    }
    /// Starts reading one split; `attempt` counts from 1.
    async fn open(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        attempt: u32,
    ) -> Result<Box<dyn SplitFeed>, ReadError>;
    /// Bytes that crossed a network between reader and writer so far.
    fn wire_bytes(&self) -> u64 {
        0
    }
    /// The hash kind of each column `spec` reads under the PostgreSQL verification scheme,
    /// when this side computes them inside its database (the side's kinds decide the
    /// scheme's); `None` otherwise.
    async fn hash_kinds(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<Vec<ferry_model::PgHash>>, String> {
        let _ = spec;
        Ok(None)
    }
    /// Whether this reader can fingerprint under [`ferry_model::Scheme::Postgres`] (an agent
    /// across the tunnel must say it can).
    async fn hashes_postgres(&self) -> bool {
        true
    }
    /// Fingerprints one split instead of handing over its rows (`ferry verify`): the result
    /// batches of `ask`'s pass. Here the rows are read and hashed in this process; a reader
    /// across the tunnel has its agent hash them, so only the result crosses.
    async fn fingerprint(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        ask: &ferry_model::VerifyAsk,
        attempt: u32,
    ) -> Result<Vec<RecordBatch>, ReadError> {
        let feed = self.open(spec, schema.clone(), split, attempt).await?;
        hash_feed(feed, &schema, ask).await
    }
}

/// Reads `feed` (of `schema`) and hashes its rows for `ask`: the result batches.
pub async fn hash_feed(
    feed: Box<dyn SplitFeed>,
    schema: &SchemaRef,
    ask: &ferry_model::VerifyAsk,
) -> Result<Vec<RecordBatch>, ReadError> {
    let mut digester = ferry_fingerprint::Digester::new(schema, ask)
        .map_err(|e| ReadError::from(e.to_string()))?;
    let mut out = Vec::new();
    drain(feed, |batch| {
        if let Some(o) = digester
            .feed(&batch)
            .map_err(|e| ReadError::from(e.to_string()))?
        {
            out.push(o);
        }
        Ok(())
    })
    .await?;
    out.extend(
        digester
            .finish()
            .map_err(|e| ReadError::from(e.to_string()))?,
    );
    Ok(out)
}

/// Reads `feed` to its end, handing each batch to `each` and acknowledging it, then closes
/// it with the outcome.
pub async fn drain(
    mut feed: Box<dyn SplitFeed>,
    mut each: impl FnMut(RecordBatch) -> Result<(), ReadError> + Send,
) -> Result<(), ReadError> {
    let read: Result<(), ReadError> = async {
        while let Some(batch) = feed.next().await? {
            let rows = batch.num_rows() as u64;
            each(batch)?;
            feed.committed(rows).await?;
        }
        Ok(())
    }
    .await;
    let outcome = read.as_ref().map(|_| ()).map_err(|e| e.message.as_str());
    let closed = feed.close(outcome).await;
    read?;
    closed?;
    Ok(())
}

/// The batches of one split, in order.
#[async_trait]
pub trait SplitFeed: Send {
    /// The next batch, or `None` once the split is read completely.
    async fn next(&mut self) -> Result<Option<RecordBatch>, ReadError>;
    /// The writer committed the last batch `next` returned (`rows` of it
    /// were written, the rest were dirty).
    async fn committed(&mut self, rows: u64) -> Result<(), ReadError>;
    /// Where the batches come from (an agent's id), for the job's log.
    fn origin(&self) -> Option<&str> {
        None
    }
    /// Values the read changed on purpose that its batches did not carry (an agent
    /// reports them at the end of its stream); asked once `next` gave `None`.
    fn changes(&self) -> ferry_connectors::spec::Changes {
        Default::default()
    }
    /// The split ended: `Ok` after the last batch was committed, or the
    /// job's error. Releases the reader.
    async fn close(self: Box<Self>, outcome: Result<(), &str>) -> Result<(), String>;
}

/// How to run.
#[derive(Clone)]
pub struct RunOptions {
    /// Where dirty records go (created on the first one).
    pub dirty_path: PathBuf,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// Who hears about planning, commits and task ends.
    pub observer: Option<Arc<dyn RunObserver>>,
    /// Picks up a job that ran before (see [`Resume`]).
    pub resume: Option<Resume>,
    /// The job's key, unique across brokers and runs: the target keeps
    /// each split's checkpoint under it. A resumed job passes the key it
    /// ran with; `None` makes a fresh one.
    pub job_key: Option<String>,
    /// Task slots shared with other tables of a whole-database job (instead of the job's
    /// own `channel`).
    pub slots: Option<Arc<Semaphore>>,
    /// Held while the table is planned and its target prepared, so a whole-database job
    /// does not open every table at once.
    pub starting: Option<Arc<Semaphore>>,
    /// Foreign keys go here instead of being added: a whole-database job adds them once
    /// every table is loaded.
    pub deferred: Option<crate::database::Deferred>,
    /// How a whole-database job names target tables: foreign keys refer to the target
    /// names of their tables.
    pub naming: Option<crate::database::TableNaming>,
    /// A many-table job (whole-database, sharded): the progress its caller watches, kept
    /// the sum of its tables'; failing it (a cancel) stops every table.
    pub totals: Option<Arc<Progress>>,
    /// `setting.speed`'s limits, shared by the tables of a many-table job (the limits
    /// are the job's).
    pub throttle: Option<Arc<Throttle>>,
    /// A whole-database job picked up again: what its earlier runs recorded per table.
    pub earlier: Option<std::collections::BTreeMap<String, crate::database::EarlierTable>>,
}

impl RunOptions {
    /// A fresh run with dirty records in `dirty_path`, no progress line.
    pub fn new(dirty_path: PathBuf) -> Self {
        Self {
            dirty_path,
            progress: false,
            observer: None,
            resume: None,
            job_key: None,
            slots: None,
            starting: None,
            deferred: None,
            naming: None,
            totals: None,
            throttle: None,
            earlier: None,
        }
    }
}

/// A fresh job key (a random UUID).
pub fn new_job_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("dirty_path", &self.dirty_path)
            .field("progress", &self.progress)
            .field("observer", &self.observer.is_some())
            .field("resume", &self.resume)
            .field("job_key", &self.job_key)
            .finish()
    }
}

/// Where a job that ran before stands: its target was prepared and its
/// splits planned (the [`Reading`] gives the same plan again).
#[derive(Debug, Clone, Default)]
pub struct Resume {
    /// Splits written completely, with their rows: not run again.
    pub done: BTreeMap<u32, u64>,
    /// Splits a writer had started on: some of their batches may be in the
    /// target already. They resume after their last checkpoint where the
    /// target keeps one, else run again from their start only where the
    /// sink is [replay-safe](ferry_connectors::Sink::replay_safe).
    pub started: BTreeSet<u32>,
}

/// Hears what a run does, to persist it (the broker's state store) or
/// count it (metrics). An `Err` from a persisting method fails the task:
/// a run whose progress cannot be recorded could not be resumed.
#[async_trait]
pub trait RunObserver: Send + Sync {
    /// The target is prepared and the splits are planned (a resumed run
    /// does not plan again).
    async fn planned(
        &self,
        schema: &SchemaRef,
        splits: &[Split],
        estimated_rows: Option<u64>,
    ) -> Result<(), String> {
        let _ = (schema, splits, estimated_rows);
        Ok(())
    }
    /// A split's reader and writer are open, before anything is written;
    /// `attempt` counts from 1, `origin` is where it reads (an agent).
    async fn split_started(
        &self,
        split: &Split,
        attempt: u32,
        origin: Option<&str>,
    ) -> Result<(), String> {
        let _ = (split, attempt, origin);
        Ok(())
    }
    /// A batch of the split was committed in the target; `checkpoint`
    /// says where the split stands (across attempts).
    async fn committed(&self, split: &Split, checkpoint: &Checkpoint) -> Result<(), String> {
        let _ = (split, checkpoint);
        Ok(())
    }
    /// The split's reader was lost; it starts again as `attempt`.
    async fn split_retrying(&self, split: &Split, attempt: u32, error: &str) {
        let _ = (split, attempt, error);
    }
    /// The split is written completely.
    async fn split_done(&self, split: &Split, rows: u64, elapsed: Duration) -> Result<(), String> {
        let _ = (split, rows, elapsed);
        Ok(())
    }
    /// The split failed for good (the job fails with it).
    async fn split_failed(&self, split: &Split, error: &str, elapsed: Duration) {
        let _ = (split, error, elapsed);
    }
    /// A whole-database job's tables, before any of them loads: each source table and
    /// whether the job owns its content (it creates, empties or drops it).
    async fn tables_planned(&self, tables: &[(String, bool)]) -> Result<(), String> {
        let _ = tables;
        Ok(())
    }
    /// A table of a whole-database job ended: `done` (loaded, indexes built) or not.
    async fn table_ended(&self, line: &crate::summary::TableLine, done: bool) {
        let _ = (line, done);
    }
    /// A batch arrived from the reader.
    fn batch_read(&self, rows: u64, bytes: u64) {
        let _ = (rows, bytes);
    }
    /// One write and its commit: rows written (`bytes` their share of
    /// the batch), dirty rows, and how long the target took.
    fn batch_written(&self, rows: u64, bytes: u64, dirty: u64, took: Duration) {
        let _ = (rows, bytes, dirty, took);
    }
}

/// A job that could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Open(#[from] crate::registry::OpenError),
    #[error("{stage}: {source}")]
    Connector {
        stage: &'static str,
        source: ConnectorError,
    },
    #[error("{stage}: {message}")]
    Reader {
        stage: &'static str,
        message: String,
    },
}

/// Live counters of a running job, shared with whoever reports on it (the
/// progress line, the broker's API). Also how a job is cancelled.
#[derive(Debug)]
pub struct Progress {
    started: Instant,
    read: AtomicU64,
    written: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    dirty: AtomicU64,
    splits_total: AtomicU64,
    splits_done: AtomicU64,
    /// Estimated rows, `u64::MAX` when unknown.
    estimate: AtomicU64,
    failure: Mutex<Option<String>>,
    /// Values the reads changed on purpose, of batches written.
    changes: Mutex<ferry_connectors::spec::Changes>,
    /// A change stream's position and lag.
    stream: Mutex<Option<StreamSnapshot>>,
    /// How far a change stream's source log is ahead of the target, as last reported
    /// (`u64::MAX`: not yet).
    behind: Arc<AtomicU64>,
}

impl Default for Progress {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            dirty: AtomicU64::new(0),
            splits_total: AtomicU64::new(0),
            splits_done: AtomicU64::new(0),
            estimate: AtomicU64::new(u64::MAX),
            failure: Mutex::new(None),
            changes: Mutex::new(Default::default()),
            stream: Mutex::new(None),
            behind: Arc::new(AtomicU64::new(u64::MAX)),
        }
    }
}

impl Progress {
    /// Counts values a read changed on purpose.
    pub fn add_changes(&self, changes: &ferry_connectors::spec::Changes) {
        if !changes.is_empty() {
            self.changes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .merge(changes);
        }
    }

    /// Makes the counters the sum of `parts`' (the tables of a many-table job); failures
    /// are not summed: each part has its own.
    pub fn absorb(&self, parts: &[Arc<Progress>]) {
        let sum = |f: fn(&Progress) -> &AtomicU64| -> u64 {
            parts.iter().map(|p| f(p).load(Ordering::Relaxed)).sum()
        };
        self.read.store(sum(|p| &p.read), Ordering::Relaxed);
        self.written.store(sum(|p| &p.written), Ordering::Relaxed);
        self.bytes_read
            .store(sum(|p| &p.bytes_read), Ordering::Relaxed);
        self.bytes_written
            .store(sum(|p| &p.bytes_written), Ordering::Relaxed);
        self.dirty.store(sum(|p| &p.dirty), Ordering::Relaxed);
        self.splits_total
            .store(sum(|p| &p.splits_total), Ordering::Relaxed);
        self.splits_done
            .store(sum(|p| &p.splits_done), Ordering::Relaxed);
        let known = parts
            .iter()
            .map(|p| p.estimate.load(Ordering::Relaxed))
            .filter(|e| *e != u64::MAX);
        self.estimate.store(known.sum(), Ordering::Relaxed);
    }

    /// Values the reads changed on purpose so far.
    pub fn changes(&self) -> ferry_connectors::spec::Changes {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The tables of a many-table job (whole-database, sharded), each with its own
/// [`Progress`], seen as one: `total` (what the caller watches) is kept their sum while
/// they run, and a failure of `total` (a cancel, a broker stopping) reaches every one.
#[derive(Clone, Default)]
pub(crate) struct Parts(Arc<Mutex<Vec<Arc<Progress>>>>);

impl Parts {
    /// A new table's progress.
    pub fn add(&self) -> Arc<Progress> {
        let p = Arc::new(Progress::new());
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(p.clone());
        p
    }

    fn all(&self) -> Vec<Arc<Progress>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Follows the parts into `total` until the returned handle is dropped (or the
    /// job ends: [`Parts::end`]).
    pub fn follow(&self, total: Option<Arc<Progress>>) -> Option<tokio::task::JoinHandle<()>> {
        let total = total?;
        let parts = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                let all = parts.all();
                total.absorb(&all);
                if let Some(why) = total.failure() {
                    for p in all.iter().filter(|p| !p.failed()) {
                        p.fail(why.clone());
                    }
                }
            }
        }))
    }

    /// The job ended: stops following and leaves `total` the final sum.
    pub fn end(&self, follower: Option<tokio::task::JoinHandle<()>>, total: Option<&Progress>) {
        if let Some(f) = follower {
            f.abort();
        }
        if let Some(t) = total {
            t.absorb(&self.all());
        }
    }
}

/// A point-in-time view of [`Progress`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgressSnapshot {
    pub elapsed_secs: f64,
    pub records_read: u64,
    pub records_written: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub wire_bytes: u64,
    pub dirty_records: u64,
    pub splits_total: u64,
    pub splits_done: u64,
    /// Rows the source expects to produce, when it could estimate them.
    pub estimated_rows: Option<u64>,
    /// Seconds left at the current rate, when the total is known.
    pub eta_secs: Option<f64>,
    /// Records written per second, on average since the start.
    #[serde(default)]
    pub records_per_sec: f64,
    /// Bytes read per second, on average since the start.
    #[serde(default)]
    pub bytes_per_sec: f64,
    /// A change stream's position and lag (`setting.mode: stream`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamSnapshot>,
}

/// Where a change stream stands.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamSnapshot {
    /// Source transactions applied since this run started.
    pub transactions: u64,
    /// The source position the target holds (PostgreSQL: the LSN as a number).
    pub position: String,
    /// When the source committed the last transaction applied (UTC, RFC 3339).
    pub source_commit: String,
    /// Seconds from that source commit to its commit in the target.
    pub lag_secs: f64,
    /// Bytes of the source's log (WAL, binlog) after the position the target holds, as the
    /// agent last measured them (at most once a second); `None` until it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_bytes: Option<u64>,
}

impl ProgressSnapshot {
    /// The progress line: records, rate, MB/s, ETA when known.
    pub fn line(&self) -> String {
        let secs = self.elapsed_secs.max(1e-3);
        let eta = match self.eta_secs {
            Some(s) => format!(", ETA {}", fmt_secs(s)),
            None => String::new(),
        };
        let total = match self.estimated_rows {
            Some(t) => format!(" of ~{t}"),
            None => String::new(),
        };
        if let Some(st) = &self.stream {
            let behind = match st.behind_bytes {
                Some(b) => format!(", {} behind", fmt_bytes(b)),
                None => String::new(),
            };
            return format!(
                "{} changes in {} transactions, {:.0} changes/s, lag {:.3} s{behind}, at {} (source commit {})",
                self.records_written,
                st.transactions,
                self.records_written as f64 / secs,
                st.lag_secs,
                st.position,
                st.source_commit,
            );
        }
        format!(
            "{}{total} records, {:.0} rec/s, {:.1} MB/s, splits {}/{}, {} dirty{eta}",
            self.records_written,
            self.records_written as f64 / secs,
            self.bytes_read as f64 / 1e6 / secs,
            self.splits_done,
            self.splits_total,
            self.dirty_records,
        )
    }
}

/// `b` bytes, in the largest binary unit of at least one.
fn fmt_bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

fn fmt_secs(s: f64) -> String {
    let s = s.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counters now; `wire_bytes` comes from the transport.
    pub fn snapshot(&self, wire_bytes: u64) -> ProgressSnapshot {
        let written = self.written.load(Ordering::Relaxed);
        let elapsed = self.started.elapsed().as_secs_f64();
        let estimate = match self.estimate.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        };
        let eta_secs = estimate.and_then(|total| {
            let rate = written as f64 / elapsed.max(1e-3);
            (written > 0 && rate > 0.0).then(|| total.saturating_sub(written) as f64 / rate)
        });
        ProgressSnapshot {
            elapsed_secs: elapsed,
            records_read: self.read.load(Ordering::Relaxed),
            records_written: written,
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            wire_bytes,
            dirty_records: self.dirty.load(Ordering::Relaxed),
            splits_total: self.splits_total.load(Ordering::Relaxed),
            splits_done: self.splits_done.load(Ordering::Relaxed),
            estimated_rows: estimate,
            eta_secs,
            records_per_sec: written as f64 / elapsed.max(1e-3),
            bytes_per_sec: self.bytes_read.load(Ordering::Relaxed) as f64 / elapsed.max(1e-3),
            stream: self
                .stream
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
                .map(|mut st| {
                    st.behind_bytes = match self.behind.load(Ordering::Relaxed) {
                        u64::MAX => None,
                        b => Some(b),
                    };
                    st
                }),
        }
    }

    /// Applied source transactions of a change stream (`transactions` of them): `rows`
    /// changes of `bytes`, now at `position`, the last committed by the source at
    /// `commit_time_us` (Unix microseconds).
    pub(crate) fn applied(
        &self,
        rows: u64,
        bytes: u64,
        position: &ferry_connectors::Position,
        commit_time_us: i64,
        transactions: u64,
    ) {
        self.read.fetch_add(rows, Ordering::Relaxed);
        self.written.fetch_add(rows, Ordering::Relaxed);
        self.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        self.bytes_written.fetch_add(bytes, Ordering::Relaxed);
        let now = OffsetDateTime::now_utc();
        let commit = OffsetDateTime::from_unix_timestamp_nanos(i128::from(commit_time_us) * 1000)
            .unwrap_or(now);
        let position = match position.values() {
            [ferry_connectors::KeyValue::Int(v)] => v.to_string(),
            // A binlog file and offset.
            [ferry_connectors::KeyValue::Text(f), ferry_connectors::KeyValue::Int(v)] => {
                format!("{f}:{v}")
            }
            _ => position.to_stored(),
        };
        let mut st = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let transactions = st.as_ref().map_or(0, |s| s.transactions) + transactions;
        *st = Some(StreamSnapshot {
            transactions,
            position,
            source_commit: commit
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            lag_secs: ((now - commit).as_seconds_f64()).max(0.0),
            behind_bytes: None,
        });
    }

    /// Where a change stream's reader stores how many bytes of its source's log follow the
    /// position the target holds.
    pub fn behind_gauge(&self) -> Arc<AtomicU64> {
        self.behind.clone()
    }

    /// Stops the job with `message` (the first failure wins).
    pub fn fail(&self, message: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            warn!("job failing: {message}");
            *f = Some(message);
        }
    }

    pub fn failed(&self) -> bool {
        self.failure().is_some()
    }

    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Shared {
    progress: Arc<Progress>,
    throttle: Arc<Throttle>,
    dirty_file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    dirty_path: PathBuf,
    /// A resumed job adds to the dirty records of its earlier runs.
    dirty_append: bool,
    dirty_limit: Option<u64>,
    observer: Option<Arc<dyn RunObserver>>,
}

impl Shared {
    fn record_dirty(&self, split: u32, dirty: &[DirtyRecord]) -> Result<(), String> {
        if dirty.is_empty() {
            return Ok(());
        }
        let mut guard = self.dirty_file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .append(self.dirty_append)
                .truncate(!self.dirty_append)
                .open(&self.dirty_path)
                .map_err(|e| {
                    format!(
                        "cannot create dirty-record file {}: {e}",
                        self.dirty_path.display()
                    )
                })?;
            *guard = Some(std::io::BufWriter::new(f));
        }
        if let Some(w) = guard.as_mut() {
            for d in dirty {
                let line = serde_json::json!({
                    "split": split, "row": d.row, "column": d.column, "reason": d.reason, "record": d.record,
                });
                writeln!(w, "{line}").map_err(|e| format!("writing dirty records: {e}"))?;
            }
            w.flush()
                .map_err(|e| format!("writing dirty records: {e}"))?;
        }
        let total = self
            .progress
            .dirty
            .fetch_add(dirty.len() as u64, Ordering::Relaxed)
            + dirty.len() as u64;
        if let Some(limit) = self.dirty_limit {
            if total > limit {
                return Err(format!(
                    "{total} dirty records exceed setting.errorLimit.record = {limit} (see {})",
                    self.dirty_path.display()
                ));
            }
        }
        Ok(())
    }
}

/// The target-side schema: the reader's fields under the writer's column names.
pub fn target_schema(source: &SchemaRef, columns: &[String]) -> Result<SchemaRef, ConnectorError> {
    if columns.is_empty() || columns == ["*"] {
        return Ok(source.clone());
    }
    if columns.len() != source.fields().len() {
        return Err(ConnectorError::Schema(format!(
            "writer names {} columns, reader reads {}",
            columns.len(),
            source.fields().len()
        )));
    }
    let fields: Vec<_> = source
        .fields()
        .iter()
        .zip(columns)
        .map(|(f, name)| f.as_ref().clone().with_name(name.clone()))
        .collect();
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        source.metadata().clone(),
    )))
}

/// The source table's description under the target's column names, when the reader
/// reads a table that has one; with a whole-database job's `naming`, its foreign keys
/// point at the target names of their tables.
pub(crate) async fn described(
    reading: &dyn Reading,
    rspec: &ReadSpec,
    schema: &SchemaRef,
    tschema: &SchemaRef,
    naming: Option<&crate::database::TableNaming>,
) -> Result<Option<TableSchema>, String> {
    let Some(desc) = reading.describe(rspec).await? else {
        return Ok(None);
    };
    let names =
        |s: &SchemaRef| -> Vec<String> { s.fields().iter().map(|f| f.name().clone()).collect() };
    let mut desc = desc.project(&names(schema), &names(tschema));
    if let Some(naming) = naming {
        naming.retarget(&mut desc);
    }
    Ok(Some(desc))
}

/// The reader's spec as a job states it (`column: ["*"]` means all columns).
pub fn read_spec(job: &Job) -> ReadSpec {
    let mut rspec = job.reader.spec.clone();
    if rspec.columns == ["*"] {
        rspec.columns.clear();
    }
    rspec
}

/// Runs `job`: batches from `reading`, written into `sink`. `progress` is
/// the caller's view of the run (and how it cancels it).
pub async fn run_job(
    job: &Job,
    reading: Arc<dyn Reading>,
    sink: Arc<dyn Sink>,
    opts: &RunOptions,
    progress: Arc<Progress>,
) -> Result<Summary, RunError> {
    let start = OffsetDateTime::now_utc();
    let rspec = read_spec(job);
    let starting = match &opts.starting {
        Some(s) => s.clone().acquire_owned().await.ok(),
        None => None,
    };
    let reader = |stage| move |message| RunError::Reader { stage, message };
    let conn = |stage| move |source| RunError::Connector { stage, source };
    let schema = reading
        .schema(&rspec)
        .await
        .map_err(reader("reading the source schema"))?;
    let tschema =
        target_schema(&schema, &job.writer.spec.columns).map_err(conn("mapping columns"))?;
    let (tschema, retype) = job.writer.type_map.apply(&tschema);
    let retype: Option<Arc<[Option<crate::retype::Retype>]>> =
        retype.iter().any(Option::is_some).then(|| retype.into());
    let channel = job.setting.speed.channel.max(1);
    let splits = reading
        .plan(&rspec, channel * 4)
        .await
        .map_err(reader("planning splits"))?;
    let mut wspec = job.writer.spec.clone();
    if wspec.create_table {
        wspec.described = described(
            reading.as_ref(),
            &rspec,
            &schema,
            &tschema,
            opts.naming.as_ref(),
        )
        .await
        .map_err(reader("describing the source table"))?;
    }
    let ddl = sink
        .table_ddl(&wspec, &tschema)
        .map_err(conn("rendering the target's DDL"))?;
    let resume = opts.resume.clone();
    match &resume {
        None => sink
            .prepare(&wspec, &tschema)
            .await
            .map_err(conn("preparing the target"))?,
        Some(_) => sink
            .reattach(&wspec, &tschema)
            .await
            .map_err(conn("checking the target again"))?,
    }
    if resume.is_none() {
        if let Some(o) = &opts.observer {
            o.planned(&schema, &splits, reading.estimated_rows())
                .await
                .map_err(reader("recording the plan"))?;
        }
    }
    info!(
        splits = splits.len(),
        channel,
        resumed = resume.is_some(),
        "job planned"
    );
    progress
        .splits_total
        .store(splits.len() as u64, Ordering::Relaxed);
    if let Some(n) = reading.estimated_rows() {
        progress.estimate.store(n, Ordering::Relaxed);
    }
    let resume = resume.unwrap_or_default();
    let job_key: Arc<str> = opts.job_key.clone().unwrap_or_else(new_job_key).into();
    for rows in resume.done.values() {
        progress.written.fetch_add(*rows, Ordering::Relaxed);
        progress.splits_done.fetch_add(1, Ordering::Relaxed);
    }

    let shared = Arc::new(Shared {
        progress: progress.clone(),
        throttle: opts.throttle.clone().unwrap_or_else(|| {
            Arc::new(Throttle::new(
                job.setting.speed.byte,
                job.setting.speed.record,
            ))
        }),
        dirty_file: Mutex::new(None),
        dirty_path: opts.dirty_path.clone(),
        dirty_append: opts.resume.is_some(),
        dirty_limit: job.setting.error_limit.record,
        observer: opts.observer.clone(),
    });
    let line = opts.progress.then(|| {
        let (progress, reading) = (progress.clone(), reading.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                eprint!("\r{}   ", progress.snapshot(reading.wire_bytes()).line());
            }
        })
    });

    drop(starting);
    let slots = opts
        .slots
        .clone()
        .unwrap_or_else(|| Arc::new(Semaphore::new(channel)));
    let mut tasks = JoinSet::new();
    for split in splits.iter().cloned() {
        if resume.done.contains_key(&split.index) {
            continue;
        }
        let permit = slots.clone().acquire_owned().await.ok();
        if progress.failed() {
            break;
        }
        let task = Task {
            reading: reading.clone(),
            sink: sink.clone(),
            rspec: rspec.clone(),
            wspec: job.writer.spec.clone(),
            schema: schema.clone(),
            tschema: tschema.clone(),
            retype: retype.clone(),
            retry: job.setting.retry.clone(),
            shared: shared.clone(),
            job_key: job_key.clone(),
            // A split a crash interrupted may have batches in the target.
            maybe_partial: resume.started.contains(&split.index),
        };
        tasks.spawn(async move {
            task.run(&split).await;
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    if let Some(l) = line {
        l.abort();
        eprintln!("\r{}   ", progress.snapshot(reading.wire_bytes()).line());
    }

    let snap = progress.snapshot(reading.wire_bytes());
    if let Some(pct) = job.setting.error_limit.percentage {
        let (read, dirty) = (snap.records_read, snap.dirty_records);
        if read > 0 && dirty as f64 / read as f64 > pct {
            progress.fail(format!(
                "{dirty} dirty of {read} records ({:.2} %) exceed setting.errorLimit.percentage = {:.2} %",
                100.0 * dirty as f64 / read as f64,
                100.0 * pct
            ));
        }
    }
    if let (false, Some(ddl)) = (progress.failed(), &ddl) {
        // Indexes and identity counters after the load, foreign keys last.
        let constraints = match &opts.deferred {
            Some(later) => {
                let mut later = later.lock().unwrap_or_else(|p| p.into_inner());
                later.push((wspec.clone(), ddl.constraints.clone()));
                &[][..]
            }
            None => &ddl.constraints[..],
        };
        for (steps, what) in [
            (&ddl.after_load[..], "building indexes"),
            (constraints, "adding foreign keys"),
        ] {
            if let Err(e) = sink.apply_ddl(&wspec, steps).await {
                progress.fail(format!("{what}: {e}"));
                break;
            }
        }
    }
    if !progress.failed() {
        if let Err(e) = sink.finish(&job.writer.spec).await {
            progress.fail(format!("postSql: {e}"));
        } else if let Err(e) = sink.forget(&job.writer.spec, &job_key).await {
            // Rows are all in; a stale checkpoint only takes a little room.
            warn!("the job succeeded, but its checkpoints stay in the target: {e}");
        }
    }
    Ok(Summary {
        start,
        end: OffsetDateTime::now_utc(),
        records_read: snap.records_read,
        records_written: snap.records_written,
        bytes_read: snap.bytes_read,
        bytes_written: snap.bytes_written,
        wire_bytes: reading.wire_bytes(),
        dirty_records: snap.dirty_records,
        dirty_file: (snap.dirty_records > 0).then(|| opts.dirty_path.clone()),
        changes: progress.changes(),
        tables: Vec::new(),
        not_migrated: Vec::new(),
        splits: splits.len(),
        failed: progress.failure(),
    })
}

/// One split of a job, with everything its attempts need.
struct Task {
    reading: Arc<dyn Reading>,
    sink: Arc<dyn Sink>,
    rspec: ReadSpec,
    wspec: ferry_connectors::WriteSpec,
    schema: SchemaRef,
    tschema: SchemaRef,
    /// The writer's `typeMap`, per column, when it changes any.
    retype: Option<Arc<[Option<crate::retype::Retype>]>>,
    retry: crate::config::Retry,
    shared: Arc<Shared>,
    job_key: Arc<str>,
    maybe_partial: bool,
}

/// What one attempt at a split counted, taken back if it is retried. An
/// attempt that resumes after a checkpoint starts from its counts.
#[derive(Default)]
struct Counts {
    /// Transactions committed.
    batches: u64,
    /// Rows consumed (written or dirty).
    read: u64,
    /// Rows received (counted as read in the job's progress).
    seen: u64,
    bytes_read: u64,
    written: u64,
    bytes_written: u64,
}

/// Where an attempt starts.
enum Start {
    /// From the split's first row.
    Fresh,
    /// After a checkpoint with a position: rows after it in the split's order.
    After(Checkpoint),
}

impl Task {
    /// Runs the split until it is written, fails for good, or the job fails.
    async fn run(&self, split: &Split) {
        let shared = &self.shared;
        let observer = shared.observer.as_deref();
        let started = Instant::now();
        let name = format!("split {} of {}", split.index + 1, split.total);
        // Batches of an earlier attempt (or of a run a crash interrupted)
        // may be in the target.
        let mut committed_before = self.maybe_partial;
        let mut attempt = 1;
        loop {
            let start = match self.start(&name, split, committed_before).await {
                Ok(s) => s,
                Err(msg) => {
                    if let Some(o) = observer {
                        o.split_failed(split, &msg, started.elapsed()).await;
                    }
                    shared.progress.fail(msg);
                    return;
                }
            };
            let mut counts = Counts::default();
            let result = self.attempt(split, attempt, start, &mut counts).await;
            let p = &shared.progress;
            match result {
                Ok(()) if p.failed() => return,
                Ok(()) => {
                    if let Some(o) = observer {
                        if let Err(e) = o.split_done(split, counts.written, started.elapsed()).await
                        {
                            p.fail(format!("{name}: recording its end: {e}"));
                            return;
                        }
                    }
                    p.splits_done.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(_) if p.failed() => return,
                Err(e) if e.transient && attempt < self.retry.attempts => {
                    committed_before |= counts.batches > 0;
                    // What this attempt counted is read and written again,
                    // or counted again from the checkpoint it resumes after.
                    p.read.fetch_sub(counts.seen, Ordering::Relaxed);
                    p.bytes_read.fetch_sub(counts.bytes_read, Ordering::Relaxed);
                    p.written.fetch_sub(counts.written, Ordering::Relaxed);
                    p.bytes_written
                        .fetch_sub(counts.bytes_written, Ordering::Relaxed);
                    let wait = Duration::from_millis(
                        self.retry
                            .backoff_ms
                            .saturating_mul(1 << (attempt - 1).min(16))
                            .min(30_000),
                    );
                    attempt += 1;
                    warn!(
                        split = split.index,
                        attempt,
                        ?wait,
                        "{name}: {}; starting it again",
                        e.message
                    );
                    if let Some(o) = observer {
                        o.split_retrying(split, attempt, &e.message).await;
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    let msg = if e.transient && attempt > 1 {
                        format!("{name}: {} (after {attempt} attempts)", e.message)
                    } else {
                        format!("{name}: {}", e.message)
                    };
                    if let Some(o) = observer {
                        o.split_failed(split, &msg, started.elapsed()).await;
                    }
                    p.fail(msg);
                    return;
                }
            }
        }
    }

    /// Where the next attempt starts, from the checkpoint the target holds
    /// for the split; an error when it cannot start without writing rows
    /// twice.
    async fn start(
        &self,
        name: &str,
        split: &Split,
        committed_before: bool,
    ) -> Result<Start, String> {
        if !committed_before {
            return Ok(Start::Fresh);
        }
        let replay_safe = self.sink.replay_safe(&self.wspec);
        if !self.sink.records_checkpoints(&self.wspec) {
            return if replay_safe {
                Ok(Start::Fresh)
            } else {
                Err(format!(
                    "{name} was being written when its reader or the broker was lost; some of its \
                     rows may be in the target already and writeMode insert would write them again \
                     (use writeMode replace or update to let Ferry retry it)"
                ))
            };
        }
        let cp = self
            .sink
            .checkpoint(&self.wspec, &self.job_key, split.index)
            .await
            .map_err(|e| format!("{name}: reading its checkpoint in the target: {e}"))?;
        match cp {
            // Nothing of the split was committed.
            None => Ok(Start::Fresh),
            Some(cp) if cp.position.is_some() => {
                info!(
                    split = split.index,
                    rows = cp.rows,
                    position = %cp.position.as_ref().map(ToString::to_string).unwrap_or_default(),
                    "{name}: resuming after its last checkpoint"
                );
                Ok(Start::After(cp))
            }
            Some(_) if replay_safe => Ok(Start::Fresh),
            Some(cp) => Err(format!(
                "{name} was being written when its reader or the broker was lost, with {} rows \
                 committed; it is not read in the order of a unique key (a primary key, or a unique \
                 integer `splitPk`), so Ferry cannot tell which rows the target holds and writeMode insert would write \
                 them again (give the table a primary key, or use writeMode replace or update)",
                cp.rows
            )),
        }
    }

    /// One attempt: a writer and a reader from the split's start or from
    /// after its checkpoint.
    async fn attempt(
        &self,
        split: &Split,
        attempt: u32,
        start: Start,
        counts: &mut Counts,
    ) -> Result<(), ReadError> {
        let shared = &self.shared;
        let (read_split, from) = match start {
            Start::Fresh => (split.clone(), Checkpoint::default()),
            Start::After(cp) => match cp.position.clone() {
                Some(p) => (split.resumed_after(p), cp),
                None => (split.clone(), Checkpoint::default()),
            },
        };
        let mut writer = self
            .sink
            .task_writer(&self.wspec, &self.tschema, &self.job_key, split.index)
            .await
            .map_err(|e| ReadError::from(format!("opening the writer: {e}")))?;
        let mut feed = match self
            .reading
            .open(&self.rspec, self.schema.clone(), &read_split, attempt)
            .await
        {
            Ok(f) => f,
            Err(e) => {
                drop(writer);
                return Err(ReadError {
                    message: format!("starting the read: {}", e.message),
                    transient: e.transient,
                });
            }
        };
        // Recorded before anything is written, so a crash after a commit
        // knows the split may be partly in the target.
        if let Some(o) = shared.observer.as_deref() {
            if let Err(e) = o.split_started(split, attempt, feed.origin()).await {
                drop(writer);
                let _ = feed.close(Err("the job failed")).await;
                return Err(format!("recording the start: {e}").into());
            }
        }
        // What the checkpoint says is in the target counts as done.
        counts.batches = from.seq;
        counts.read = from.rows;
        counts.seen = from.rows;
        counts.written = from.written;
        shared.progress.read.fetch_add(from.rows, Ordering::Relaxed);
        shared
            .progress
            .written
            .fetch_add(from.written, Ordering::Relaxed);
        let keys = Follow::new(&self.schema, &read_split);
        let mut result = pump(
            feed.as_mut(),
            writer.as_mut(),
            &self.tschema,
            self.retype.as_deref(),
            self.wspec.batch_size,
            split,
            keys,
            shared,
            counts,
        )
        .await;
        // `close` commits what the writer holds back (a file part becomes
        // visible); after a failure the writer is dropped instead, which
        // discards it.
        if result.is_ok() && !shared.progress.failed() {
            if let Err(e) = writer.close().await {
                result = Err(format!("committing the writer: {e}").into());
            }
        } else {
            drop(writer);
        }
        let closed = feed
            .close(result.as_ref().map(|_| ()).map_err(|e| e.message.as_str()))
            .await;
        match (result, closed) {
            (Err(e), _) => Err(e),
            // A job that already failed elsewhere cancels its readers; not a new error.
            (Ok(()), Err(_)) if shared.progress.failed() => Ok(()),
            (Ok(()), Err(e)) => Err(e.into()),
            (Ok(()), Ok(())) => Ok(()),
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn pump(
    feed: &mut dyn SplitFeed,
    writer: &mut dyn ferry_connectors::SinkWriter,
    tschema: &SchemaRef,
    retype: Option<&[Option<crate::retype::Retype>]>,
    batch_size: usize,
    split: &Split,
    mut keys: Follow,
    shared: &Shared,
    counts: &mut Counts,
) -> Result<(), ReadError> {
    let counters = &shared.progress;
    let observer = shared.observer.as_deref();
    loop {
        if counters.failed() {
            return Ok(());
        }
        let batch = match feed.next().await {
            Ok(Some(b)) => b,
            Ok(None) => {
                counters.add_changes(&feed.changes());
                return Ok(());
            }
            Err(e) => {
                return Err(ReadError {
                    message: format!("reading: {}", e.message),
                    transient: e.transient,
                })
            }
        };
        let (batch, changes) = ferry_connectors::take_changes(batch);
        let rows = batch.num_rows() as u64;
        let bytes = batch_bytes(&batch);
        counters.read.fetch_add(rows, Ordering::Relaxed);
        counters.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        counts.seen += rows;
        counts.bytes_read += bytes;
        if let Some(o) = observer {
            o.batch_read(rows, bytes);
        }
        shared.throttle.wait(bytes, rows).await;
        let columns = match retype {
            None => batch.columns().to_vec(),
            Some(plan) => {
                let (columns, changed) =
                    crate::retype::convert(&batch, plan, tschema).map_err(ReadError::from)?;
                counters.add_changes(&changed);
                columns
            }
        };
        let renamed = RecordBatch::try_new(tschema.clone(), columns)
            .map_err(|e| ReadError::from(format!("renaming columns: {e}")))?;
        // `batchSize` caps the rows per write (one transaction each); a
        // larger batch from the reader is written in slices (zero-copy).
        let step = match batch_size {
            0 => renamed.num_rows().max(1),
            n => n,
        };
        let mut written = 0;
        let mut offset = 0;
        let mut checkpoint = Checkpoint::default();
        while offset < renamed.num_rows() {
            let len = step.min(renamed.num_rows() - offset);
            let chunk = renamed.slice(offset, len);
            checkpoint = Checkpoint {
                seq: counts.batches + 1,
                rows: counts.read + len as u64,
                written: counts.written,
                position: keys.follow(&batch.slice(offset, len)),
            };
            let began = Instant::now();
            let mut outcome = writer.write_at(&chunk, &checkpoint).await.map_err(|e| {
                ReadError::from(if e.is_unique_violation() {
                    format!("writing: {KEY_COLLISION}: {e}")
                } else {
                    format!("writing: {e}")
                })
            })?;
            let took = began.elapsed();
            for d in &mut outcome.dirty {
                d.row += offset;
            }
            counters
                .written
                .fetch_add(outcome.written, Ordering::Relaxed);
            let share = (bytes * outcome.written).checked_div(rows).unwrap_or(0);
            counters.bytes_written.fetch_add(share, Ordering::Relaxed);
            counts.batches += 1;
            counts.read += len as u64;
            counts.written += outcome.written;
            counts.bytes_written += share;
            checkpoint.written = counts.written;
            if let Some(o) = observer {
                o.batch_written(outcome.written, share, outcome.dirty.len() as u64, took);
            }
            shared.record_dirty(split.index, &outcome.dirty)?;
            written += outcome.written;
            offset += len;
        }
        counters.add_changes(&changes);
        feed.committed(written).await?;
        if let Some(o) = observer {
            if renamed.num_rows() > 0 {
                o.committed(split, &checkpoint)
                    .await
                    .map_err(|e| ReadError::from(format!("recording a checkpoint: {e}")))?;
            }
        }
    }
}

/// How a write refused for a key already in the target is named in a task's error.
pub(crate) const KEY_COLLISION: &str = "key collision";

/// Bytes of a batch's values: the slices it covers, not the buffers it may
/// share with other batches (a reader that slices one large buffer into
/// batches would otherwise count that buffer once per batch).
pub fn batch_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field};

    #[test]
    fn writer_columns_rename_positionally() {
        let s = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
        ]));
        let t = target_schema(&s, &["x".into(), "y".into()]).unwrap();
        assert_eq!(t.field(0).name(), "x");
        assert_eq!(t.field(1).data_type(), &DataType::Utf8);
        assert!(target_schema(&s, &["x".into()]).is_err());
        assert_eq!(target_schema(&s, &["*".into()]).unwrap(), s);
    }

    #[test]
    fn progress_eta_only_when_total_known() {
        let p = Progress::new();
        assert_eq!(p.snapshot(0).eta_secs, None);
        p.estimate.store(1000, Ordering::Relaxed);
        p.written.store(500, Ordering::Relaxed);
        let s = p.snapshot(0);
        assert!(s.eta_secs.is_some_and(|e| e >= 0.0));
        assert!(s.line().contains("of ~1000"), "{}", s.line());
        assert_eq!(fmt_secs(3725.0), "1h02m");
        assert_eq!(fmt_secs(65.0), "1m05s");
    }
}
