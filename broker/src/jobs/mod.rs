//! Jobs submitted to the broker: the writing half runs here, the reading
//! half on agents of the job's group.
//!
//! A job names its reader's data source as `group/name`; the broker asks an
//! agent of that group to plan it and any live agent of the group to read
//! each split ([`reading::TunnelReading`]), and writes through the job's
//! sink with the same runner as `ferry run` ([`ferry_engine::run_job`]).
//!
//! Everything a restart needs is in the state store ([`ferry_state`]): the
//! job as submitted (text and variables), its plan, each split's state and
//! checkpoint, and the job's log ([`observer::JobObserver`] writes them as
//! the run goes). A broker that starts finds its unfinished jobs there and
//! picks them up again ([`resume_unfinished`]): finished splits are not
//! read again, the others start over where the target allows it.

mod changes;
pub mod dispatch;
pub mod observer;
pub mod reading;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_connectors::Split;
use ferry_engine::config::Location;
use ferry_engine::verify::VerifyReport;
use ferry_engine::{Job, Progress, ProgressSnapshot, Resume, RunOptions, Summary};
use ferry_protocol::data::Compression;
use ferry_state::{JobRecord, NewJob, SplitRecord, SplitState, StateError, StateStore};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::registry::{AgentKey, Registry};
use crate::routes::{AgentRoutes, Answered, StreamRouted};
use observer::{JobLog, JobObserver};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    Succeeded,
    Failed,
    Cancelled,
    /// Stopped by an operator to go on later (`ferry job resume`): a stream's position
    /// stays in its target, a copy's finished splits stay done.
    Stopped,
}

impl JobState {
    fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Stopped => "stopped",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "running" => JobState::Running,
            "succeeded" => JobState::Succeeded,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "stopped" => JobState::Stopped,
            _ => return None,
        })
    }
}

/// One task of a job: the reading and writing of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskStatus {
    /// The split's index, from 0.
    pub split: u32,
    pub state: SplitState,
    /// The agent reading it (the last one, after a retry).
    pub agent: Option<String>,
    pub attempts: u32,
    /// Rows of the split committed in the target (an attempt that resumes
    /// after a checkpoint counts those before it).
    pub rows: u64,
    /// Split key of the last row committed: a resumed attempt reads the
    /// rows after it (key-ordered splits only).
    #[serde(default)]
    pub last_key: Option<String>,
    pub error: Option<String>,
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
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub ended: Option<OffsetDateTime>,
    /// Times a broker (re)start picked the job up again.
    #[serde(default)]
    pub resumes: u32,
    pub progress: ProgressSnapshot,
    /// One per split, once the job is planned.
    #[serde(default)]
    pub tasks: Vec<TaskStatus>,
    /// Present once the job ended.
    pub summary: Option<Summary>,
    /// With `setting.verify`: the verification of what the job wrote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify: Option<VerifyReport>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A job refused at submission.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Job(#[from] ferry_engine::JobError),
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
    #[error("verification: {0}")]
    Verify(String),
    #[error("setting.compression: {0}")]
    Compression(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Why the API could not answer about jobs.
pub type JobsError = StateError;

/// A job that cannot be resumed by hand.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("no job `{0}`")]
    NotFound(String),
    #[error("job `{0}` is running")]
    Running(String),
    #[error("job `{0}` succeeded: there is nothing left to do")]
    Succeeded(String),
    #[error("job `{id}` cannot be resumed: {message}")]
    Unusable { id: String, message: String },
    #[error(transparent)]
    State(#[from] StateError),
}

/// A job running on this broker.
pub(crate) struct Entry {
    pub number: u64,
    status: Mutex<JobStatus>,
    progress: Arc<Progress>,
    wire: Arc<AtomicU64>,
    /// The broker is stopping: the job stays "running" in the store, for
    /// the next start to pick up.
    stopping: AtomicBool,
    cancelled: AtomicBool,
    /// Stopped by an operator, to be resumed.
    stopped: AtomicBool,
}

impl Entry {
    pub(crate) fn update_task(&self, index: u32, f: impl FnOnce(&mut TaskStatus)) {
        let mut st = lock(&self.status);
        if let Some(t) = st.tasks.get_mut(index as usize) {
            f(t);
        }
    }

    pub(crate) fn set_tasks(&self, tasks: Vec<TaskStatus>) {
        lock(&self.status).tasks = tasks;
    }

    fn running_tasks(&self) -> usize {
        lock(&self.status)
            .tasks
            .iter()
            .filter(|t| t.state == SplitState::Running)
            .count()
    }
}

/// What the job side of the broker shares: the jobs, the work sent to
/// agents and waiting for their answers, and the few things of the rest of
/// the broker a job uses (the agents connected, the state store, metrics).
pub(crate) struct JobHub {
    pub jobs: Jobs,
    /// Plan requests and tasks waiting for agents.
    pub dispatch: Arc<dispatch::Dispatch>,
    /// Connected agents, to find one offering a job's data source.
    pub registry: Registry,
    pub state: StateStore,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Job runs, awaited on shutdown with the broker's other tasks.
    pub tasks: tokio_util::task::TaskTracker,
    /// Where each job keeps its file of dirty records.
    pub jobs_dir: PathBuf,
    /// `limits.max_plans_per_agent`.
    pub max_plans_per_agent: usize,
}

impl AgentRoutes for JobHub {
    fn message(
        &self,
        from: &AgentKey,
        msg: ferry_protocol::control::ControlMessage,
    ) -> Option<Answered> {
        use ferry_protocol::control::ControlMessage as M;
        Some(match msg {
            M::PlanReply {
                request_id,
                schema,
                splits,
                estimated_rows,
                table,
            } => {
                let answer = dispatch::PlanAnswer {
                    agent_id: from.id.clone(),
                    schema,
                    splits,
                    estimated_rows,
                    table: table.map(|t| *t),
                };
                Answered {
                    what: "plan reply",
                    id: request_id.to_string(),
                    routed: self.dispatch.plan_answered(
                        from,
                        request_id,
                        Ok(dispatch::Answer::Plan(Box::new(answer))),
                    ),
                }
            }
            M::TableList {
                request_id,
                tables,
                not_migrated,
                rows,
            } => Answered {
                what: "table list",
                id: request_id.to_string(),
                routed: self.dispatch.plan_answered(
                    from,
                    request_id,
                    Ok(dispatch::Answer::Tables(ferry_connectors::TableListing {
                        tables,
                        not_migrated,
                        rows,
                    })),
                ),
            },
            M::PlanFailed {
                request_id,
                message,
            } => Answered {
                what: "plan failure",
                id: request_id.to_string(),
                routed: self.dispatch.plan_answered(from, request_id, Err(message)),
            },
            M::TaskFailed {
                task_id,
                message,
                retryable,
            } => {
                let routed = self
                    .dispatch
                    .task_failed(from, &task_id, message.clone(), retryable);
                if routed != crate::routes::Routed::Delivered {
                    tracing::debug!(agent = %from, task = %task_id, "refused failure report said: {message}");
                }
                Answered {
                    what: "task failure",
                    id: task_id,
                    routed,
                }
            }
            M::StreamProgress {
                task_id,
                behind_bytes,
            } => Answered {
                what: "stream progress",
                routed: self.dispatch.task_progress(from, &task_id, behind_bytes),
                id: task_id,
            },
            _ => return None,
        })
    }

    fn stream(&self, from: &AgentKey, stream: crate::data::DataStream) -> StreamRouted {
        self.dispatch.deliver_stream(from, stream)
    }
}

/// The broker's jobs: live ones in memory, all of them in the state store.
pub struct Jobs {
    store: StateStore,
    live: Mutex<BTreeMap<u64, Arc<Entry>>>,
    /// Jobs an operator's resume is starting (not live yet).
    resuming: Mutex<std::collections::BTreeSet<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn number_of(id: &str) -> Option<u64> {
    id.strip_prefix("job-")?.parse().ok()
}

fn time_of(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// What the store keeps of an ended job besides its state.
#[derive(Serialize, Deserialize)]
struct Ending {
    summary: Option<Summary>,
    progress: ProgressSnapshot,
    #[serde(default)]
    verify: Option<VerifyReport>,
}

fn task_of(s: &SplitRecord) -> TaskStatus {
    TaskStatus {
        split: s.index,
        state: s.state,
        agent: s.agent.clone(),
        attempts: s.attempts,
        rows: s.rows_committed,
        last_key: s.last_key.clone(),
        error: s.error.clone(),
    }
}

impl Jobs {
    pub(crate) fn new(store: StateStore) -> Self {
        Self {
            store,
            live: Mutex::new(BTreeMap::new()),
            resuming: Mutex::new(std::collections::BTreeSet::new()),
        }
    }

    /// The newest 500 jobs, oldest first.
    pub async fn list(&self) -> Result<Vec<JobStatus>, JobsError> {
        let records = self.store.jobs(500).await?;
        Ok(records
            .iter()
            .map(|r| match self.entry(r.number) {
                Some(e) => snapshot(&e),
                None => status_of(r, Vec::new()),
            })
            .collect())
    }

    /// One job, with its tasks.
    pub async fn get(&self, id: &str) -> Result<Option<JobStatus>, JobsError> {
        let Some(n) = number_of(id) else {
            return Ok(None);
        };
        if let Some(e) = self.entry(n) {
            return Ok(Some(snapshot(&e)));
        }
        let Some(r) = self.store.job(n).await? else {
            return Ok(None);
        };
        let tasks = self.store.splits(n).await?.iter().map(task_of).collect();
        Ok(Some(status_of(&r, tasks)))
    }

    /// The job's log after entry `after`, at most `limit` entries; `None`
    /// if there is no such job.
    pub async fn logs(
        &self,
        id: &str,
        after: i64,
        limit: u32,
    ) -> Result<Option<Vec<ferry_state::LogRecord>>, JobsError> {
        let Some(n) = number_of(id) else {
            return Ok(None);
        };
        if self.store.job(n).await?.is_none() {
            return Ok(None);
        }
        Ok(Some(self.store.logs(n, after, limit).await?))
    }

    /// Whether the job runs on this broker now.
    pub fn is_running(&self, id: &str) -> bool {
        number_of(id).is_some_and(|n| self.entry(n).is_some())
    }

    /// Stops a running job to go on later (`ferry job resume`); `false` if it is not
    /// running here.
    pub fn stop(&self, id: &str) -> bool {
        match number_of(id).and_then(|n| self.entry(n)) {
            Some(e) => {
                e.stopped.store(true, Ordering::Relaxed);
                e.progress.fail(
                    "stopped by an operator; `ferry job resume` goes on from where it stopped"
                        .into(),
                );
                true
            }
            None => false,
        }
    }

    /// Ends a running job; `false` if it is not running here.
    pub fn cancel(&self, id: &str) -> bool {
        match number_of(id).and_then(|n| self.entry(n)) {
            Some(e) => {
                e.cancelled.store(true, Ordering::Relaxed);
                e.progress.fail("cancelled by an operator".into());
                true
            }
            None => false,
        }
    }

    /// Stops every running job because the broker stops; they stay
    /// unfinished in the store and resume at the next start.
    pub(crate) fn stop_all(&self) {
        for e in lock(&self.live).values() {
            e.stopping.store(true, Ordering::Relaxed);
            e.progress
                .fail("the broker stopped; the job resumes when it starts again".into());
        }
    }

    /// Jobs running on this broker, and their tasks being written.
    pub(crate) fn running(&self) -> (usize, usize) {
        let live = lock(&self.live);
        let tasks = live.values().map(|e| e.running_tasks()).sum();
        (live.len(), tasks)
    }

    /// Running change-stream jobs that applied something: their id and lag in seconds.
    pub(crate) fn streams(&self) -> Vec<crate::metrics::StreamLive> {
        lock(&self.live)
            .values()
            .filter_map(|e| {
                let st = e.progress.snapshot(0).stream?;
                Some(crate::metrics::StreamLive {
                    job: format!("job-{}", e.number),
                    lag_secs: st.lag_secs,
                    behind_bytes: st.behind_bytes,
                })
            })
            .collect()
    }

    fn entry(&self, number: u64) -> Option<Arc<Entry>> {
        lock(&self.live).get(&number).cloned()
    }
}

fn snapshot(e: &Entry) -> JobStatus {
    let mut s = lock(&e.status).clone();
    if s.state == JobState::Running {
        s.progress = e.progress.snapshot(e.wire.load(Ordering::Relaxed));
    }
    s
}

fn status_of(r: &JobRecord, tasks: Vec<TaskStatus>) -> JobStatus {
    let ending: Option<Ending> = r
        .summary_json
        .as_deref()
        .and_then(|j| serde_json::from_str(j).ok());
    let (summary, progress, verify) = match ending {
        Some(e) => (e.summary, e.progress, e.verify),
        None => (None, ProgressSnapshot::default(), None),
    };
    JobStatus {
        id: format!("job-{}", r.number),
        // A state this broker does not know (a newer one wrote it) shows as failed.
        state: JobState::parse(&r.state).unwrap_or(JobState::Failed),
        source: r.source.clone(),
        target: r.target.clone(),
        submitted: time_of(r.submitted_ms),
        ended: r.ended_ms.map(time_of),
        resumes: r.resumes,
        progress,
        tasks,
        summary,
        verify,
        error: r.error.clone(),
    }
}

/// A job's plan as the store keeps it.
pub(crate) struct StoredPlan {
    pub schema: arrow_schema::SchemaRef,
    pub splits: Vec<Split>,
    pub estimated_rows: Option<u64>,
}

/// Submits the job `text` (YAML or JSON, `${vars}` filled from `vars`):
/// records it and starts it in the background; returns its id.
pub(crate) async fn submit(
    shared: &Arc<JobHub>,
    text: &str,
    vars: BTreeMap<String, String>,
    compression: Option<Compression>,
) -> Result<String, SubmitError> {
    let job = Job::parse(text, &vars)?;
    // The submitter's choice, else the job's, else zstd level 1.
    let compression = match (compression, job.setting.compression.as_deref()) {
        (Some(c), _) => c,
        (None, Some(text)) => {
            Compression::parse(text).map_err(|e| SubmitError::Compression(e.to_string()))?
        }
        (None, None) => Compression::Zstd { level: 1 },
    };
    let Location::DataSource { group, name } = &job.reader.location else {
        return Err(SubmitError::NotBrokered);
    };
    if !matches!(job.writer.location, Location::Url(_)) {
        return Err(SubmitError::WriterOnAgent);
    }
    let sink = ferry_engine::registry::open_sink(&job.writer).await?;
    let dir = shared.jobs_dir.clone();
    std::fs::create_dir_all(&dir).map_err(|source| SubmitError::Dir {
        path: dir.clone(),
        source,
    })?;
    let source = format!("{group}/{name}");
    let submitted = OffsetDateTime::now_utc();
    let job_key = ferry_engine::new_job_key();
    let number = shared
        .state
        .insert_job(&NewJob {
            spec: text.to_string(),
            vars_json: serde_json::to_string(&vars).unwrap_or_default(),
            compression: serde_json::to_string(&compression).unwrap_or_default(),
            source: source.clone(),
            target: job.writer.kind.to_string(),
            submitted_ms: (submitted.unix_timestamp_nanos() / 1_000_000) as i64,
            job_key: job_key.clone(),
        })
        .await?;
    let id = format!("job-{number}");
    info!(job = %id, %source, target = %job.writer.kind, "job submitted");
    let log = JobLog::new(shared.state.clone(), number);
    log.info(format!(
        "submitted: {source} → {} (channel {}, compression {compression:?})",
        job.writer.kind, job.setting.speed.channel
    ))
    .await;
    launch(
        shared,
        Launch {
            number,
            job,
            sink,
            compression,
            submitted,
            resumes: 0,
            plan: None,
            resume: None,
            tasks: Vec::new(),
            job_key,
            earlier: None,
        },
    );
    Ok(id)
}

struct Launch {
    number: u64,
    job: Job,
    sink: Arc<dyn ferry_connectors::Sink>,
    compression: Compression,
    submitted: OffsetDateTime,
    resumes: u32,
    plan: Option<StoredPlan>,
    resume: Option<Resume>,
    tasks: Vec<TaskStatus>,
    /// The key the target's checkpoints of this job are kept under.
    job_key: String,
    /// A whole-database job picked up again: its tables as recorded.
    earlier: Option<std::collections::BTreeMap<String, ferry_engine::database::EarlierTable>>,
}

/// Runs a job in the background: a new one, or one picked up again.
fn launch(shared: &Arc<JobHub>, l: Launch) {
    let Launch {
        number,
        job,
        sink,
        compression,
        submitted,
        resumes,
        plan,
        resume,
        tasks,
        job_key,
        earlier,
    } = l;
    let id = format!("job-{number}");
    let Location::DataSource { group, name } = job.reader.location.clone() else {
        return;
    };
    let progress = Arc::new(Progress::new());
    let log = JobLog::new(shared.state.clone(), number);
    let reading = Arc::new(reading::TunnelReading::new(
        shared.clone(),
        reading::TunnelJob {
            job_id: id.clone(),
            attempt_prefix: if resumes == 0 {
                id.clone()
            } else {
                format!("{id}.r{resumes}")
            },
            group: group.clone(),
            datasource: name.clone(),
            options: &job.reader.options,
            compression,
            max_splits: job.setting.speed.channel.max(1) * 4,
            plan,
            resumed: resumes > 0,
            log: log.clone(),
        },
    ));
    let entry = Arc::new(Entry {
        number,
        status: Mutex::new(JobStatus {
            id: id.clone(),
            state: JobState::Running,
            source: format!("{group}/{name}"),
            target: job.writer.kind.to_string(),
            submitted,
            ended: None,
            resumes,
            progress: ProgressSnapshot::default(),
            tasks,
            summary: None,
            verify: None,
            error: None,
        }),
        progress: progress.clone(),
        // The reading's own counter: the API reads it live.
        wire: reading.wire_counter(),
        stopping: AtomicBool::new(false),
        cancelled: AtomicBool::new(false),
        stopped: AtomicBool::new(false),
    });
    lock(&shared.jobs.live).insert(number, entry.clone());
    let observer = Arc::new(JobObserver::new(
        entry.clone(),
        shared.state.clone(),
        shared.metrics.clone(),
        log.clone(),
    ));
    let mut opts = RunOptions::new(shared.jobs_dir.join(format!("{id}.dirty.jsonl")));
    opts.observer = Some(observer);
    opts.resume = resume;
    opts.job_key = Some(job_key);
    opts.earlier = earlier;
    let shared2 = shared.clone();
    let many = ManyTables {
        shared: shared.clone(),
        id: id.clone(),
        compression,
        log: log.clone(),
        next: Default::default(),
        wire: entry.wire.clone(),
    };
    // A many-table job's tables add up into the job's progress, and a cancel reaches them.
    opts.totals = Some(progress.clone());
    shared.tasks.spawn(async move {
        let result = if job.setting.mode.streams() {
            many.stream(&job, reading.clone(), sink, &opts, progress.clone())
                .await
        } else if job.reader.tables.is_some() || job.reader.merge.is_some() {
            many.run(&job, sink, &opts).await
        } else {
            ferry_engine::run_job(&job, reading, sink, &opts, progress.clone()).await
        };
        // `setting.verify`: a job that wrote everything is verified; a difference fails it.
        let verified = match &result {
            Ok(summary)
                if summary.succeeded()
                    && job.setting.verify
                    && !entry.cancelled.load(Ordering::Relaxed)
                    && !entry.stopped.load(Ordering::Relaxed)
                    && !entry.stopping.load(Ordering::Relaxed) =>
            {
                log.info("verifying what the job wrote (setting.verify)").await;
                Some(
                    many.verify(&job, &ferry_engine::verify::VerifyOptions::default())
                        .await,
                )
            }
            _ => None,
        };
        let wire_now = entry.wire.load(Ordering::Relaxed);
        let snap = progress.snapshot(wire_now);
        let (state, summary, mut error) = match result {
            Ok(summary) => {
                let state = if summary.succeeded() {
                    JobState::Succeeded
                } else {
                    JobState::Failed
                };
                let error = summary.failed.clone();
                (state, Some(summary), error)
            }
            Err(e) => (JobState::Failed, None, Some(e.to_string())),
        };
        let state = if entry.cancelled.load(Ordering::Relaxed) {
            JobState::Cancelled
        } else if entry.stopped.load(Ordering::Relaxed) {
            JobState::Stopped
        } else {
            state
        };
        let (state, verify) = match verified {
            None => (state, None),
            Some(Ok(report)) => {
                many.log_verdicts(&report).await;
                let failed = report.failed_tables();
                if failed.is_empty() {
                    (state, Some(report))
                } else {
                    error = Some(format!(
                        "the job wrote every row, but verification found {} of {} tables differ: {}",
                        failed.len(),
                        report.tables.len(),
                        failed.join(", ")
                    ));
                    (JobState::Failed, Some(report))
                }
            }
            Some(Err(e)) => {
                error = Some(format!(
                    "the job wrote every row, but could not be verified: {e}"
                ));
                (JobState::Failed, None)
            }
        };
        lock(&shared2.jobs.live).remove(&number);
        if entry.stopping.load(Ordering::Relaxed) {
            log.info("the broker stopped; the job resumes when it starts again")
                .await;
            return;
        }
        match &summary {
            Some(s) => log.info(format!(
                "ended {}: {} records written, {} dirty, {} wire bytes, {:.1} s",
                state.as_str(),
                s.records_written,
                s.dirty_records,
                s.wire_bytes,
                (s.end - s.start).as_seconds_f64()
            )),
            None => log.info(format!("ended {}", state.as_str())),
        }
        .await;
        if let Some(e) = &error {
            log.error(format!("error: {e}")).await;
        }
        shared2.metrics.job_ended(state.as_str());
        if state == JobState::Failed {
            shared2.metrics.error("job_failed");
        }
        let ending = serde_json::to_string(&Ending {
            summary: summary.clone(),
            progress: snap.clone(),
            verify: verify.clone(),
        })
        .ok();
        if let Err(e) = shared2
            .state
            .finish_job(number, state.as_str(), ending.as_deref(), error.as_deref())
            .await
        {
            shared2.metrics.error("state_store");
            warn!(job = number, "recording the job's end: {e}");
        }
        info!(job = number, state = state.as_str(), "job ended");
        let mut st = lock(&entry.status);
        st.state = state;
        st.progress = snap;
        st.summary = summary;
        st.verify = verify;
        st.error = error;
        st.ended = Some(OffsetDateTime::now_utc());
    });
}

/// A whole-database or sharded job through the tunnel: an agent of each source's group
/// lists the tables its policy allows, and each selected table runs as a one-table job
/// through its own [`reading::TunnelReading`] (task ids unique per table), sharing
/// `channel`.
struct ManyTables {
    shared: Arc<JobHub>,
    id: String,
    compression: Compression,
    log: JobLog,
    /// Readings made so far: numbers each table's task ids.
    next: std::sync::atomic::AtomicUsize,
    /// The job's wire bytes, which every table's reading adds to (live, for the API).
    wire: Arc<std::sync::atomic::AtomicU64>,
}

impl ManyTables {
    /// A reading of data source `group/datasource`, for one table (or for its listing).
    fn reading(&self, job: &Job, group: &str, datasource: &str) -> reading::TunnelReading {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        reading::TunnelReading::new(
            self.shared.clone(),
            reading::TunnelJob {
                job_id: self.id.clone(),
                attempt_prefix: format!("{}.t{i}", self.id),
                group: group.to_string(),
                datasource: datasource.to_string(),
                options: &job.reader.options,
                compression: self.compression,
                max_splits: job.setting.speed.channel.max(1) * 4,
                plan: None,
                resumed: false,
                log: self.log.clone(),
            },
        )
        .counting_into(self.wire.clone())
    }

    async fn list(
        &self,
        job: &Job,
        group: &str,
        datasource: &str,
    ) -> Result<ferry_connectors::TableListing, ferry_engine::RunError> {
        let listing = self
            .reading(job, group, datasource)
            .list_tables()
            .await
            .map_err(|message| ferry_engine::RunError::Reader {
                stage: "listing the source's tables",
                message: format!("{group}/{datasource}: {message}"),
            })?;
        self.log
            .info(format!(
                "an agent of {group} lists {} tables of {datasource} its policy allows",
                listing.tables.len()
            ))
            .await;
        Ok(listing)
    }

    async fn run(
        &self,
        job: &Job,
        sink: Arc<dyn ferry_connectors::Sink>,
        opts: &RunOptions,
    ) -> Result<Summary, ferry_engine::RunError> {
        let Some(merge) = &job.reader.merge else {
            let Location::DataSource { group, name } = &job.reader.location else {
                return Err(not_brokered());
            };
            let listing = self.list(job, group, name).await?;
            let reading_for = |_: &str| -> Arc<dyn ferry_engine::Reading> {
                Arc::new(self.reading(job, group, name))
            };
            return ferry_engine::run_database(job, listing, &reading_for, sink, opts).await;
        };
        let (sources, listings) = self.shards(job, merge).await?;
        let reading_for = |i: usize, _: &str| -> Arc<dyn ferry_engine::Reading> {
            let (group, name) = sources[i];
            Arc::new(self.reading(job, group, name))
        };
        ferry_engine::run_merge(job, listings, &reading_for, sink, opts).await
    }

    /// Each shard's `(group, data source)` and its table listing from an agent of its group.
    async fn shards<'a>(
        &self,
        job: &Job,
        merge: &'a ferry_engine::merge::Merge,
    ) -> Result<
        (Vec<(&'a str, &'a str)>, Vec<ferry_connectors::TableListing>),
        ferry_engine::RunError,
    > {
        let mut sources = Vec::with_capacity(merge.shards.len());
        let mut listings = Vec::with_capacity(merge.shards.len());
        for shard in &merge.shards {
            let Location::DataSource { group, name } = &shard.location else {
                return Err(not_brokered());
            };
            listings.push(self.list(job, group, name).await?);
            sources.push((group.as_str(), name.as_str()));
        }
        Ok((sources, listings))
    }
}

impl ManyTables {
    /// Verifies what `job` wrote: the source through agents of its group (they hash their
    /// rows; only fingerprints cross), the target here.
    async fn verify(
        &self,
        job: &Job,
        opts: &ferry_engine::verify::VerifyOptions,
    ) -> Result<VerifyReport, ferry_engine::RunError> {
        let target = ferry_engine::verify::open_target(job).await?;
        let wire = self.wire.clone();
        let wire = move || wire.load(Ordering::Relaxed);
        if let Some(merge) = &job.reader.merge {
            let (sources, listings) = self.shards(job, merge).await?;
            let reading_for = |i: usize, _: &str| -> Arc<dyn ferry_engine::Reading> {
                let (group, name) = sources[i];
                Arc::new(self.reading(job, group, name))
            };
            return ferry_engine::verify::verify_merge(
                job,
                listings,
                &reading_for,
                target,
                &wire,
                opts,
            )
            .await;
        }
        let Location::DataSource { group, name } = &job.reader.location else {
            return Err(not_brokered());
        };
        let sink = match opts.repair {
            true => Some(ferry_engine::registry::open_sink(&job.writer).await?),
            false => None,
        };
        let tables = match &job.reader.tables {
            Some(_) => Some(self.list(job, group, name).await?.tables),
            None => None,
        };
        let source_for = |_: &str| -> Arc<dyn ferry_engine::Reading> {
            Arc::new(self.reading(job, group, name))
        };
        ferry_engine::verify::verify_job(job, tables, &source_for, target, sink, &wire, opts).await
    }

    /// A change-stream job: one table through `reading`, or a whole-database job's tables
    /// (as an agent lists them), each planned by its own reading, all in one stream.
    async fn stream(
        &self,
        job: &Job,
        reading: Arc<reading::TunnelReading>,
        sink: Arc<dyn ferry_connectors::Sink>,
        opts: &RunOptions,
        progress: Arc<Progress>,
    ) -> Result<Summary, ferry_engine::RunError> {
        let Location::DataSource { group, name } = &job.reader.location else {
            return Err(not_brokered());
        };
        let tables = match &job.reader.tables {
            Some(_) => Some(self.list(job, group, name).await?.tables),
            None => None,
        };
        let one = reading.clone();
        let reading_for = |_: &str| -> Arc<dyn ferry_engine::Reading> {
            match tables {
                None => one.clone(),
                Some(_) => Arc::new(self.reading(job, group, name)),
            }
        };
        // Tables added to the selection later join the running stream.
        let listed = tables.clone().map(|tables| ferry_engine::stream::Listed {
            tables,
            again: Some(Arc::new(changes::TunnelLister(
                self.reading(job, group, name),
            ))),
        });
        ferry_engine::stream::run_stream(
            job,
            listed,
            &reading_for,
            reading.as_ref(),
            sink,
            opts,
            progress,
        )
        .await
    }

    /// One log line per table of a verification.
    async fn log_verdicts(&self, report: &VerifyReport) {
        for t in &report.tables {
            let rows = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
            let line = format!(
                "verify {}: {} source rows, {} target rows: {}",
                t.table,
                rows(t.source_rows),
                rows(t.target_rows),
                t.status()
            );
            if t.passed() {
                self.log.info(line).await;
            } else {
                self.log.warn(line).await;
            }
        }
        self.log
            .info(format!(
                "verified: {} passed, {} failed, {} wire bytes",
                report.passed(),
                report.tables.len() - report.passed(),
                report.wire_bytes
            ))
            .await;
    }
}

/// Verifies job `text` (`ferry verify`, `POST /v1/verify`): no job is recorded; the broker's
/// own log has the verdicts.
pub(crate) async fn verify(
    shared: &Arc<JobHub>,
    text: &str,
    vars: BTreeMap<String, String>,
    opts: &ferry_engine::verify::VerifyOptions,
) -> Result<VerifyReport, SubmitError> {
    let job = Job::parse(text, &vars)?;
    if !matches!(job.reader.location, Location::DataSource { .. }) {
        return Err(SubmitError::NotBrokered);
    }
    if !matches!(job.writer.location, Location::Url(_)) {
        return Err(SubmitError::WriterOnAgent);
    }
    let id = format!("verify-{}", dispatch::random_tag());
    let many = ManyTables {
        shared: shared.clone(),
        id: id.clone(),
        compression: Compression::Zstd { level: 1 },
        log: JobLog::none(shared.state.clone()),
        next: Default::default(),
        wire: Default::default(),
    };
    info!(verification = %id, "verifying a job's target against its source");
    let report = many
        .verify(&job, opts)
        .await
        .map_err(|e| SubmitError::Verify(e.to_string()))?;
    many.log_verdicts(&report).await;
    Ok(report)
}

fn not_brokered() -> ferry_engine::RunError {
    ferry_engine::RunError::Reader {
        stage: "reading through the tunnel",
        message: "every source of a brokered job is a `datasource`".into(),
    }
}

/// Picks up the jobs a previous broker left unfinished (it stopped or
/// crashed); called once at start.
pub(crate) async fn resume_unfinished(shared: &Arc<JobHub>) -> Result<usize, StateError> {
    let records = shared.state.unfinished_jobs().await?;
    let n = records.len();
    for r in records {
        let number = r.number;
        let log = JobLog::new(shared.state.clone(), number);
        match prepare_resume(shared, &r).await {
            Ok(l) => relaunch(shared, l, "picked up again after a broker restart").await?,
            Err(e) => {
                log.error(format!("cannot be picked up again: {e}")).await;
                warn!(job = number, "cannot resume: {e}");
                shared
                    .state
                    .finish_job(number, "failed", None, Some(&e))
                    .await?;
            }
        }
    }
    Ok(n)
}

/// Starts a failed, cancelled or stopped job again, by an operator's request: the
/// splits it finished are not read again (the same rules as after a
/// restart decide about the others).
pub(crate) async fn resume(shared: &Arc<JobHub>, id: &str) -> Result<(), ResumeError> {
    let jobs = &shared.jobs;
    let number = number_of(id).ok_or_else(|| ResumeError::NotFound(id.to_string()))?;
    {
        let live = lock(&jobs.live);
        let mut resuming = lock(&jobs.resuming);
        if live.contains_key(&number) || !resuming.insert(number) {
            return Err(ResumeError::Running(id.to_string()));
        }
    }
    let result = async {
        let r = jobs
            .store
            .job(number)
            .await?
            .ok_or_else(|| ResumeError::NotFound(id.to_string()))?;
        match JobState::parse(&r.state) {
            Some(JobState::Running) => return Err(ResumeError::Running(id.to_string())),
            Some(JobState::Succeeded) => return Err(ResumeError::Succeeded(id.to_string())),
            _ => {}
        }
        let l = prepare_resume(shared, &r)
            .await
            .map_err(|message| ResumeError::Unusable {
                id: id.to_string(),
                message,
            })?;
        relaunch(shared, l, "resumed by an operator").await?;
        Ok(())
    }
    .await;
    lock(&jobs.resuming).remove(&number);
    result
}

/// Marks a prepared job running again in the store, logs `why` with how
/// far it had come, and runs it.
async fn relaunch(shared: &Arc<JobHub>, l: Launch, why: &str) -> Result<(), StateError> {
    let number = l.number;
    shared.state.reopen_job(number).await?;
    let done = l.resume.as_ref().map_or(0, |r| r.done.len());
    let total = l.plan.as_ref().map_or(0, |p| p.splits.len());
    JobLog::new(shared.state.clone(), number)
        .info(format!("{why}: {done} of {total} splits were done"))
        .await;
    info!(job = number, done, total, "resuming job: {why}");
    launch(shared, l);
    Ok(())
}

async fn prepare_resume(shared: &Arc<JobHub>, r: &JobRecord) -> Result<Launch, String> {
    let vars: BTreeMap<String, String> =
        serde_json::from_str(&r.vars_json).map_err(|e| format!("stored variables: {e}"))?;
    let job = Job::parse(&r.spec, &vars).map_err(|e| format!("the job no longer parses: {e}"))?;
    if job.reader.merge.is_some() {
        return Err(
            "a sharded job is not picked up again yet: run it anew (say with `existing` what \
             to do with the rows it wrote)"
                .into(),
        );
    }
    let compression: Compression =
        serde_json::from_str(&r.compression).map_err(|e| format!("stored compression: {e}"))?;
    let sink = ferry_engine::registry::open_sink(&job.writer)
        .await
        .map_err(|e| format!("opening the writer: {e}"))?;
    let (plan, resume, tasks) = match &r.schema_json {
        None => (None, None, Vec::new()),
        Some(schema) => {
            let schema: arrow_schema::Schema =
                serde_json::from_str(schema).map_err(|e| format!("stored schema: {e}"))?;
            let records = shared
                .state
                .splits(r.number)
                .await
                .map_err(|e| e.to_string())?;
            let mut splits = Vec::with_capacity(records.len());
            let mut resume = Resume::default();
            for s in &records {
                let split: Split = serde_json::from_str(&s.split_json)
                    .map_err(|e| format!("stored split {}: {e}", s.index))?;
                splits.push(split);
                match s.state {
                    SplitState::Done => {
                        resume.done.insert(s.index, s.rows_committed);
                    }
                    _ if s.attempts > 0 => {
                        resume.started.insert(s.index);
                    }
                    _ => {}
                }
            }
            let tasks = records.iter().map(task_of).collect();
            (
                Some(StoredPlan {
                    schema: Arc::new(schema),
                    splits,
                    estimated_rows: r.estimated_rows,
                }),
                Some(resume),
                tasks,
            )
        }
    };
    // A whole-database job: the tables that loaded are not loaded again.
    let earlier = match job.reader.tables {
        None => None,
        Some(_) => Some(
            shared
                .state
                .tables(r.number)
                .await
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|t| {
                    let line = t
                        .line_json
                        .as_deref()
                        .and_then(|j| serde_json::from_str(j).ok());
                    let e = ferry_engine::database::EarlierTable {
                        owned: t.owned,
                        done: t.done,
                        line,
                    };
                    (t.source, e)
                })
                .collect(),
        ),
    };
    Ok(Launch {
        number: r.number,
        earlier,
        job,
        sink,
        compression,
        submitted: time_of(r.submitted_ms),
        resumes: r.resumes + 1,
        plan,
        resume,
        tasks,
        // Jobs stored before job keys existed have no checkpoints to find.
        job_key: r.job_key.clone().unwrap_or_else(ferry_engine::new_job_key),
    })
}
