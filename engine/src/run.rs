//! The standalone runner: reader and writer in one process.
//!
//! Splits run as tasks, at most `channel` at once. In each task the reader
//! fills a small bounded channel (2 batches) and the writer drains it, so a
//! slow target slows the read instead of filling memory. Any task failure
//! stops the job; dirty records go to a JSON-lines file and count against
//! `errorLimit`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use ferry_connectors::{ConnectorError, DirtyRecord, Sink, Source, Split};
use time::OffsetDateTime;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Job;
use crate::registry::{open_sink, open_source, OpenError};
use crate::summary::Summary;
use crate::throttle::Throttle;

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
    Open(#[from] OpenError),
    #[error("{stage}: {source}")]
    Connector {
        stage: &'static str,
        source: ConnectorError,
    },
}

#[derive(Default)]
struct Counters {
    read: AtomicU64,
    written: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    dirty: AtomicU64,
}

struct Shared {
    counters: Counters,
    throttle: Throttle,
    dirty_file: Mutex<Option<std::io::BufWriter<std::fs::File>>>,
    dirty_path: PathBuf,
    dirty_limit: Option<u64>,
    failure: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, message: String) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            warn!("job failing: {message}");
            *f = Some(message);
        }
    }

    fn failed(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

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
            .counters
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
fn target_schema(source: &SchemaRef, columns: &[String]) -> Result<SchemaRef, ConnectorError> {
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

/// Runs `job` with reader and writer in this process.
pub async fn run_standalone(job: &Job, opts: &RunOptions) -> Result<Summary, RunError> {
    let start = OffsetDateTime::now_utc();
    let source = open_source(&job.reader).await?;
    let sink = open_sink(&job.writer).await?;
    let conn = |stage| move |source| RunError::Connector { stage, source };

    let mut rspec = job.reader.spec.clone();
    if rspec.columns == ["*"] {
        rspec.columns.clear();
    }
    let schema = source
        .schema(&rspec)
        .await
        .map_err(conn("reading the source schema"))?;
    let tschema =
        target_schema(&schema, &job.writer.spec.columns).map_err(conn("mapping columns"))?;
    sink.prepare(&job.writer.spec, &tschema)
        .await
        .map_err(conn("preparing the target"))?;
    let channel = job.setting.speed.channel.max(1);
    let splits = source
        .plan(&rspec, channel * 4)
        .await
        .map_err(conn("planning splits"))?;
    info!(splits = splits.len(), channel, "job planned");

    let shared = Arc::new(Shared {
        counters: Counters::default(),
        throttle: Throttle::new(job.setting.speed.byte, job.setting.speed.record),
        dirty_file: Mutex::new(None),
        dirty_path: opts.dirty_path.clone(),
        dirty_limit: job.setting.error_limit.record,
        failure: Mutex::new(None),
    });
    let progress = opts
        .progress
        .then(|| tokio::spawn(progress_line(shared.clone(), Instant::now())));

    let slots = Arc::new(Semaphore::new(channel));
    let mut tasks = JoinSet::new();
    for split in splits.iter().cloned() {
        let permit = slots.clone().acquire_owned().await.ok();
        if shared.failed() {
            break;
        }
        let (source, sink, shared) = (source.clone(), sink.clone(), shared.clone());
        let (rspec, wspec) = (rspec.clone(), job.writer.spec.clone());
        let (schema, tschema) = (schema.clone(), tschema.clone());
        tasks.spawn(async move {
            let r = run_split(
                source, sink, &rspec, &wspec, schema, tschema, &split, &shared,
            )
            .await;
            if let Err(e) = r {
                shared.fail(format!("split {} of {}: {e}", split.index + 1, split.total));
            }
            drop(permit);
        });
    }
    while tasks.join_next().await.is_some() {}
    if let Some(p) = progress {
        p.abort();
        if opts.progress {
            eprintln!();
        }
    }

    let c = &shared.counters;
    let (read, dirty) = (
        c.read.load(Ordering::Relaxed),
        c.dirty.load(Ordering::Relaxed),
    );
    if let Some(pct) = job.setting.error_limit.percentage {
        if read > 0 && dirty as f64 / read as f64 > pct {
            shared.fail(format!(
                "{dirty} dirty of {read} records ({:.2} %) exceed setting.errorLimit.percentage = {:.2} %",
                100.0 * dirty as f64 / read as f64,
                100.0 * pct
            ));
        }
    }
    if !shared.failed() {
        if let Err(e) = sink.finish(&job.writer.spec).await {
            shared.fail(format!("postSql: {e}"));
        }
    }
    let failed = shared
        .failure
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(Summary {
        start,
        end: OffsetDateTime::now_utc(),
        records_read: read,
        records_written: c.written.load(Ordering::Relaxed),
        bytes_read: c.bytes_read.load(Ordering::Relaxed),
        bytes_written: c.bytes_written.load(Ordering::Relaxed),
        wire_bytes: 0,
        dirty_records: dirty,
        dirty_file: (dirty > 0).then(|| opts.dirty_path.clone()),
        splits: splits.len(),
        failed,
    })
}

#[allow(clippy::too_many_arguments)]
async fn run_split(
    source: Arc<dyn Source>,
    sink: Arc<dyn Sink>,
    rspec: &ferry_connectors::ReadSpec,
    wspec: &ferry_connectors::WriteSpec,
    schema: SchemaRef,
    tschema: SchemaRef,
    split: &Split,
    shared: &Shared,
) -> Result<(), String> {
    let (tx, mut rx) = mpsc::channel::<RecordBatch>(2);
    let reader = {
        let (source, rspec, split, schema) =
            (source.clone(), rspec.clone(), split.clone(), schema.clone());
        tokio::spawn(async move { source.read(&rspec, schema, &split, tx).await })
    };
    let mut writer = sink
        .writer(wspec, &tschema)
        .await
        .map_err(|e| format!("opening the writer: {e}"))?;
    let mut result = Ok(());
    while let Some(batch) = rx.recv().await {
        if shared.failed() {
            break;
        }
        let rows = batch.num_rows() as u64;
        let bytes = batch.get_array_memory_size() as u64;
        shared.counters.read.fetch_add(rows, Ordering::Relaxed);
        shared
            .counters
            .bytes_read
            .fetch_add(bytes, Ordering::Relaxed);
        shared.throttle.wait(bytes, rows).await;
        let batch = match RecordBatch::try_new(tschema.clone(), batch.columns().to_vec()) {
            Ok(b) => b,
            Err(e) => {
                result = Err(format!("renaming columns: {e}"));
                break;
            }
        };
        match writer.write(&batch).await {
            Ok(outcome) => {
                shared
                    .counters
                    .written
                    .fetch_add(outcome.written, Ordering::Relaxed);
                if let Some(share) = (bytes * outcome.written).checked_div(rows) {
                    shared
                        .counters
                        .bytes_written
                        .fetch_add(share, Ordering::Relaxed);
                }
                if let Err(e) = shared.record_dirty(split.index, &outcome.dirty) {
                    result = Err(e);
                    break;
                }
            }
            Err(e) => {
                result = Err(format!("writing: {e}"));
                break;
            }
        }
    }
    drop(rx);
    let read_result = reader.await;
    let _ = writer.close().await;
    result?;
    match read_result {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(ConnectorError::Cancelled)) if shared.failed() => Ok(()),
        Ok(Err(e)) => Err(format!("reading: {e}")),
        Err(e) => Err(format!("reader task: {e}")),
    }
}

async fn progress_line(shared: Arc<Shared>, start: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let c = &shared.counters;
        let secs = start.elapsed().as_secs_f64().max(1e-3);
        let written = c.written.load(Ordering::Relaxed);
        eprint!(
            "\r{} records written, {:.0} rec/s, {:.1} MB/s, {} dirty   ",
            written,
            written as f64 / secs,
            c.bytes_read.load(Ordering::Relaxed) as f64 / 1e6 / secs,
            c.dirty.load(Ordering::Relaxed)
        );
    }
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
}
