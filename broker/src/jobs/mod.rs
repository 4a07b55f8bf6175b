//! Jobs submitted to the broker: the writing half runs here, the reading
//! half on an agent of the job's group.
//!
//! A job names its reader's data source as `group/name`; the broker asks an
//! agent of that group to plan it and to read each split
//! ([`reading::TunnelReading`]), and writes through the job's sink with the
//! same runner as `ferry run` ([`ferry_engine::run_job`]). Job state is
//! kept in memory for now: a broker restart forgets its jobs.

pub mod dispatch;
pub mod reading;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_engine::config::Location;
use ferry_engine::{Job, Progress, ProgressSnapshot, RunOptions, Summary};
use ferry_protocol::data::Compression;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::server::Shared;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
}

/// What the API shows of a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobStatus {
    pub id: String,
    pub state: JobState,
    /// `group/name` of the reader's data source.
    pub source: String,
    /// Connector kind of the writer.
    pub target: String,
    #[serde(with = "time::serde::rfc3339")]
    pub submitted: OffsetDateTime,
    pub progress: ProgressSnapshot,
    /// Present once the job ended.
    pub summary: Option<Summary>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A job refused at submission.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the job's reader must name an agent's data source as `datasource: group/name`; a `url` job runs standalone with `ferry run`")]
    NotBrokered,
    #[error("the job's writer must be a `url` the broker can reach; a writer on an agent is not supported yet")]
    WriterOnAgent,
    #[error("opening the writer: {0}")]
    Sink(#[from] ferry_engine::registry::OpenError),
    #[error("cannot create the job directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Entry {
    status: Mutex<JobStatus>,
    progress: Arc<Progress>,
    wire: Arc<AtomicU64>,
}

/// The broker's jobs.
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    entries: Mutex<BTreeMap<u64, Arc<Entry>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Jobs {
    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobStatus> {
        let entries: Vec<Arc<Entry>> = lock(&self.entries).values().cloned().collect();
        entries.iter().map(|e| snapshot(e)).collect()
    }

    pub fn get(&self, id: &str) -> Option<JobStatus> {
        let entry = self.entry(id)?;
        Some(snapshot(&entry))
    }

    /// Stops a running job; `false` if there is no such job.
    pub fn cancel(&self, id: &str) -> bool {
        match self.entry(id) {
            Some(e) => {
                e.progress.fail("cancelled by an operator".into());
                true
            }
            None => false,
        }
    }

    /// Stops every running job (broker shutdown).
    pub fn cancel_all(&self, reason: &str) {
        for e in lock(&self.entries).values() {
            if lock(&e.status).state == JobState::Running {
                e.progress.fail(reason.to_string());
            }
        }
    }

    fn entry(&self, id: &str) -> Option<Arc<Entry>> {
        let n: u64 = id.strip_prefix("job-")?.parse().ok()?;
        lock(&self.entries).get(&n).cloned()
    }
}

fn snapshot(e: &Entry) -> JobStatus {
    let mut s = lock(&e.status).clone();
    if s.state == JobState::Running {
        s.progress = e.progress.snapshot(e.wire.load(Ordering::Relaxed));
    }
    s
}

/// Starts `job` in the background; returns its id.
pub(crate) async fn submit(
    shared: &Arc<Shared>,
    job: Job,
    compression: Compression,
) -> Result<String, SubmitError> {
    let Location::DataSource { group, name } = &job.reader.location else {
        return Err(SubmitError::NotBrokered);
    };
    if !matches!(job.writer.location, Location::Url(_)) {
        return Err(SubmitError::WriterOnAgent);
    }
    let (group, name) = (group.clone(), name.clone());
    let sink = ferry_engine::registry::open_sink(&job.writer).await?;
    let dir = shared.config.jobs_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| SubmitError::Dir {
        path: dir.clone(),
        source,
    })?;

    let jobs = &shared.jobs;
    let n = jobs.next.fetch_add(1, Ordering::Relaxed) + 1;
    let id = format!("job-{n}");
    let progress = Arc::new(Progress::new());
    let reading = Arc::new(reading::TunnelReading::new(
        shared.clone(),
        &id,
        &group,
        &name,
        &job.reader.options,
        compression,
        job.setting.speed.channel.max(1) * 4,
    ));
    let entry = Arc::new(Entry {
        status: Mutex::new(JobStatus {
            id: id.clone(),
            state: JobState::Running,
            source: format!("{group}/{name}"),
            target: job.writer.kind.clone(),
            submitted: OffsetDateTime::now_utc(),
            progress: ProgressSnapshot::default(),
            summary: None,
            error: None,
        }),
        progress: progress.clone(),
        // The reading's own counter: the API reads it live.
        wire: reading.wire_counter(),
    });
    lock(&jobs.entries).insert(n, entry.clone());
    info!(job = %id, source = %format!("{group}/{name}"), target = %job.writer.kind, "job submitted");

    let opts = RunOptions {
        dirty_path: dir.join(format!("{id}.dirty.jsonl")),
        progress: false,
    };
    let id2 = id.clone();
    shared.tasks.spawn(async move {
        let result = ferry_engine::run_job(&job, reading, sink, &opts, progress.clone()).await;
        let wire_now = entry.wire.load(Ordering::Relaxed);
        let mut st = lock(&entry.status);
        st.progress = progress.snapshot(wire_now);
        match result {
            Ok(summary) => {
                st.state = if summary.succeeded() {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                st.error = summary.failed.clone();
                info!(job = %id2, state = ?st.state, records = summary.records_written, wire_bytes = summary.wire_bytes, "job ended");
                st.summary = Some(summary);
            }
            Err(e) => {
                warn!(job = %id2, "job failed: {e}");
                st.state = JobState::Failed;
                st.error = Some(e.to_string());
            }
        }
    });
    Ok(id)
}
