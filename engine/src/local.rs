//! Standalone mode: the reader runs in this process.
//!
//! Each split's reader fills a small bounded channel (2 batches) that the
//! writer drains, so a slow target slows the read instead of filling memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use ferry_connectors::{ConnectorError, ReadSpec, Source, Split};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::Job;
use crate::registry::{open_sink, open_source};
use crate::run::{run_job, Progress, ReadError, Reading, RunError, RunOptions, SplitFeed};
use crate::summary::Summary;

/// A [`Source`] in this process as a job's [`Reading`].
pub struct LocalReading {
    source: Arc<dyn Source>,
    estimate: AtomicU64,
}

impl LocalReading {
    pub fn new(source: Arc<dyn Source>) -> Self {
        Self {
            source,
            estimate: AtomicU64::new(u64::MAX),
        }
    }
}

#[async_trait]
impl Reading for LocalReading {
    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, String> {
        self.source.schema(spec).await.map_err(|e| e.to_string())
    }

    async fn describe(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<ferry_connectors::spec::TableSchema>, String> {
        self.source.describe(spec).await.map_err(|e| e.to_string())
    }

    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, String> {
        let splits = self
            .source
            .plan(spec, max_splits)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|s| s.of_table(spec.table_ref(None)))
            .collect();
        if let Some(n) = self.source.estimate_rows(spec).await {
            self.estimate.store(n, Ordering::Relaxed);
        }
        Ok(splits)
    }

    fn estimated_rows(&self) -> Option<u64> {
        match self.estimate.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }

    async fn hash_kinds(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<Vec<ferry_model::PgHash>>, String> {
        self.source
            .hash_kinds(spec)
            .await
            .map_err(|e| e.to_string())
    }

    /// The buckets pass inside the database where the source can; else the rows are read
    /// and hashed here.
    async fn fingerprint(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        ask: &ferry_model::VerifyAsk,
        attempt: u32,
    ) -> Result<Vec<RecordBatch>, ReadError> {
        match self.source.bucket_sums(spec, split, ask).await {
            Ok(Some(sums)) => {
                return ferry_fingerprint::bucket_batch(&sums)
                    .map(|b| vec![b])
                    .map_err(|e| ReadError::from(e.to_string()))
            }
            Ok(None) => {}
            Err(e) => return Err(ReadError::from(e.to_string())),
        }
        let feed = self.open(spec, schema.clone(), split, attempt).await?;
        crate::run::hash_feed(feed, &schema, ask).await
    }

    async fn open(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        _attempt: u32,
    ) -> Result<Box<dyn SplitFeed>, ReadError> {
        let (tx, rx) = mpsc::channel::<RecordBatch>(2);
        let (source, spec, split) = (self.source.clone(), spec.clone(), split.clone());
        let reader = tokio::spawn(async move { source.read(&spec, schema, &split, tx).await });
        Ok(Box::new(LocalFeed { rx, reader }))
    }
}

struct LocalFeed {
    rx: mpsc::Receiver<RecordBatch>,
    reader: JoinHandle<Result<u64, ConnectorError>>,
}

#[async_trait]
impl SplitFeed for LocalFeed {
    async fn next(&mut self) -> Result<Option<RecordBatch>, ReadError> {
        match self.rx.recv().await {
            Some(b) => Ok(Some(b)),
            // The reader is done; its result says whether the read was whole.
            None => match (&mut self.reader).await {
                Ok(Ok(_)) => Ok(None),
                Ok(Err(e)) => Err(e.to_string().into()),
                Err(e) => Err(format!("reader task: {e}").into()),
            },
        }
    }

    async fn committed(&mut self, _rows: u64) -> Result<(), ReadError> {
        Ok(())
    }

    async fn close(self: Box<Self>, _outcome: Result<(), &str>) -> Result<(), String> {
        let LocalFeed { rx, reader } = *self;
        drop(rx);
        if reader.is_finished() {
            return Ok(());
        }
        // Stopped early: the reader sees the closed channel and ends.
        match reader.await {
            Ok(Ok(_)) | Ok(Err(ConnectorError::Cancelled)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("reader task: {e}")),
        }
    }
}

/// Runs `job` with reader and writer in this process.
pub async fn run_standalone(job: &Job, opts: &RunOptions) -> Result<Summary, RunError> {
    if job.setting.mode.streams() {
        return Err(RunError::Reader {
            stage: "checking the job",
            message: "`setting.mode: stream` runs through an agent: submit the job to a broker \
                      (ferry job submit) with the reader's datasource on that agent"
                .into(),
        });
    }
    let source = open_source(&job.reader).await?;
    let sink = open_sink(&job.writer).await?;
    run_job(
        job,
        Arc::new(LocalReading::new(source)),
        sink,
        opts,
        Arc::new(Progress::new()),
    )
    .await
}
