//! The job runner, the same for both transports.
//!
//! A job is: read the schema and plan splits (through a [`Reading`]), prepare
//! the target once, run the splits as tasks, at most `channel` at once, each
//! writing its batches through one [`SinkWriter`](ferry_connectors::SinkWriter),
//! then finish the target. Only where batches come from changes: the reader
//! in this process ([`crate::local`]) or an agent across the tunnel (the
//! broker's implementation). Any task failure stops the job; dirty records
//! go to a JSON-lines file and count against `errorLimit`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use ferry_connectors::{ConnectorError, DirtyRecord, ReadSpec, Sink, Split};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Job;
use crate::summary::Summary;
use crate::throttle::Throttle;

/// Where a job's batches come from.
#[async_trait]
pub trait Reading: Send + Sync {
    /// The Arrow schema of what the reader reads.
    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, String>;
    /// Splits of the read, at most about `max_splits`.
    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, String>;
    /// Rows the read will produce, when the source can estimate it cheaply
    /// (for the ETA). Call after `plan`.
    fn estimated_rows(&self) -> Option<u64> {
        None
    }
    /// Starts reading one split.
    async fn open(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
    ) -> Result<Box<dyn SplitFeed>, String>;
    /// Bytes that crossed a network between reader and writer so far.
    fn wire_bytes(&self) -> u64 {
        0
    }
}

/// The batches of one split, in order.
#[async_trait]
pub trait SplitFeed: Send {
    /// The next batch, or `None` once the split is read completely.
    async fn next(&mut self) -> Result<Option<RecordBatch>, String>;
    /// The writer committed the last batch `next` returned (`rows` of it
    /// were written, the rest were dirty).
    async fn committed(&mut self, rows: u64) -> Result<(), String>;
    /// The split ended: `Ok` after the last batch was committed, or the
    /// job's error. Releases the reader.
    async fn close(self: Box<Self>, outcome: Result<(), &str>) -> Result<(), String>;
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Where dirty records go (created on the first one).
    pub dirty_path: PathBuf,
    /// Print a progress line on stderr every second.
    pub progress: bool,
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
        }
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
    throttle: Throttle,
    dirty_file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    dirty_path: PathBuf,
    dirty_limit: Option<u64>,
}

impl Shared {
    fn record_dirty(&self, split: u32, dirty: &[DirtyRecord]) -> Result<(), String> {
        if dirty.is_empty() {
            return Ok(());
        }
        let mut guard = self.dirty_file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let f = std::fs::File::create(&self.dirty_path).map_err(|e| {
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
    let reader = |stage| move |message| RunError::Reader { stage, message };
    let conn = |stage| move |source| RunError::Connector { stage, source };
    let schema = reading
        .schema(&rspec)
        .await
        .map_err(reader("reading the source schema"))?;
    let tschema =
        target_schema(&schema, &job.writer.spec.columns).map_err(conn("mapping columns"))?;
    let channel = job.setting.speed.channel.max(1);
    let splits = reading
        .plan(&rspec, channel * 4)
        .await
        .map_err(reader("planning splits"))?;
    sink.prepare(&job.writer.spec, &tschema)
        .await
        .map_err(conn("preparing the target"))?;
    info!(splits = splits.len(), channel, "job planned");
    progress
        .splits_total
        .store(splits.len() as u64, Ordering::Relaxed);
    if let Some(n) = reading.estimated_rows() {
        progress.estimate.store(n, Ordering::Relaxed);
    }

    let shared = Arc::new(Shared {
        progress: progress.clone(),
        throttle: Throttle::new(job.setting.speed.byte, job.setting.speed.record),
        dirty_file: Mutex::new(None),
        dirty_path: opts.dirty_path.clone(),
        dirty_limit: job.setting.error_limit.record,
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

    let slots = Arc::new(Semaphore::new(channel));
    let mut tasks = JoinSet::new();
    for split in splits.iter().cloned() {
        let permit = slots.clone().acquire_owned().await.ok();
        if progress.failed() {
            break;
        }
        let (reading, sink, shared) = (reading.clone(), sink.clone(), shared.clone());
        let (rspec, wspec) = (rspec.clone(), job.writer.spec.clone());
        let (schema, tschema) = (schema.clone(), tschema.clone());
        tasks.spawn(async move {
            let r = run_split(
                reading, sink, &rspec, &wspec, schema, tschema, &split, &shared,
            )
            .await;
            match r {
                Ok(()) => {
                    shared.progress.splits_done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => shared.progress.fail(format!(
                    "split {} of {}: {e}",
                    split.index + 1,
                    split.total
                )),
            }
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
    if !progress.failed() {
        if let Err(e) = sink.finish(&job.writer.spec).await {
            progress.fail(format!("postSql: {e}"));
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
        splits: splits.len(),
        failed: progress.failure(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_split(
    reading: Arc<dyn Reading>,
    sink: Arc<dyn Sink>,
    rspec: &ReadSpec,
    wspec: &ferry_connectors::WriteSpec,
    schema: SchemaRef,
    tschema: SchemaRef,
    split: &Split,
    shared: &Shared,
) -> Result<(), String> {
    let mut writer = sink
        .writer(wspec, &tschema)
        .await
        .map_err(|e| format!("opening the writer: {e}"))?;
    let mut feed = match reading.open(rspec, schema, split).await {
        Ok(f) => f,
        Err(e) => {
            drop(writer);
            return Err(format!("starting the read: {e}"));
        }
    };
    let mut result = pump(
        feed.as_mut(),
        writer.as_mut(),
        &tschema,
        wspec.batch_size,
        split,
        shared,
    )
    .await;
    // `close` commits what the writer holds back (a file part becomes
    // visible); after a failure the writer is dropped instead, which
    // discards it.
    if result.is_ok() && !shared.progress.failed() {
        if let Err(e) = writer.close().await {
            result = Err(format!("committing the writer: {e}"));
        }
    } else {
        drop(writer);
    }
    let closed = feed
        .close(result.as_ref().map(|_| ()).map_err(|e| e.as_str()))
        .await;
    match (result, closed) {
        (Err(e), _) => Err(e),
        // A job that already failed elsewhere cancels its readers; not a new error.
        (Ok(()), Err(_)) if shared.progress.failed() => Ok(()),
        (Ok(()), Err(e)) => Err(e),
        (Ok(()), Ok(())) => Ok(()),
    }
}

async fn pump(
    feed: &mut dyn SplitFeed,
    writer: &mut dyn ferry_connectors::SinkWriter,
    tschema: &SchemaRef,
    batch_size: usize,
    split: &Split,
    shared: &Shared,
) -> Result<(), String> {
    let counters = &shared.progress;
    loop {
        if counters.failed() {
            return Ok(());
        }
        let Some(batch) = feed.next().await.map_err(|e| format!("reading: {e}"))? else {
            return Ok(());
        };
        let rows = batch.num_rows() as u64;
        let bytes = batch_bytes(&batch);
        counters.read.fetch_add(rows, Ordering::Relaxed);
        counters.bytes_read.fetch_add(bytes, Ordering::Relaxed);
        shared.throttle.wait(bytes, rows).await;
        let batch = RecordBatch::try_new(tschema.clone(), batch.columns().to_vec())
            .map_err(|e| format!("renaming columns: {e}"))?;
        // `batchSize` caps the rows per write (one transaction each); a
        // larger batch from the reader is written in slices (zero-copy).
        let step = match batch_size {
            0 => batch.num_rows().max(1),
            n => n,
        };
        let mut written = 0;
        let mut offset = 0;
        while offset < batch.num_rows() {
            let len = step.min(batch.num_rows() - offset);
            let chunk = batch.slice(offset, len);
            let mut outcome = writer
                .write(&chunk)
                .await
                .map_err(|e| format!("writing: {e}"))?;
            for d in &mut outcome.dirty {
                d.row += offset;
            }
            counters
                .written
                .fetch_add(outcome.written, Ordering::Relaxed);
            if let Some(share) = (bytes * outcome.written).checked_div(rows) {
                counters.bytes_written.fetch_add(share, Ordering::Relaxed);
            }
            shared.record_dirty(split.index, &outcome.dirty)?;
            written += outcome.written;
            offset += len;
        }
        feed.committed(written).await?;
    }
}

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
