//! A job's reader across the tunnel: the broker's [`Reading`].
//!
//! Planning is a `PlanRequest` to an agent of the job's group that offers
//! the data source. Each split becomes a task assigned to one of those
//! agents (round robin); the agent opens a data stream for it, and the
//! writer acks each batch once it is committed.
//!
//! Losing the agent (its connection closes, its stream breaks without a
//! report of a failed read, it does not open the stream in time) is a
//! transient error: the runner starts the split again, and `open` picks
//! whichever agent of the group is live then, waiting for one to connect
//! if none is. A read the agent reports as failed is not retried.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use async_trait::async_trait;
use ferry_connectors::{ReadSpec, Split, TableRef};
use ferry_engine::{ReadError, Reading, SplitFeed};
use ferry_protocol::control::{ControlMessage, ErrorCode, Options};
use ferry_protocol::data::Compression;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::dispatch::{Answer, PlanAnswer, TaskEvent};
use super::JobHub;
use crate::data::DataStream;
use crate::registry::AgentHandle;

/// How long an agent has to answer a plan request.
const PLAN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an agent has to open a task's data stream.
const STREAM_TIMEOUT: Duration = Duration::from_secs(60);
/// How long planning waits for an agent of the group to be connected.
const PLAN_AGENT_WAIT: Duration = Duration::from_secs(15);
/// How long a task waits for one (after a broker restart agents need a
/// reconnect; after an agent dropped, another may come).
pub(super) const TASK_AGENT_WAIT: Duration = Duration::from_secs(60);

/// What a [`TunnelReading`] reads, for which job.
pub(crate) struct TunnelJob<'a> {
    pub job_id: String,
    /// Task ids start with it: unique per run of the job, so a task of a
    /// run before a restart is never taken for one of this run (a random
    /// part follows, so no agent can guess another's task ids).
    pub attempt_prefix: String,
    pub group: String,
    pub datasource: String,
    pub options: &'a serde_json::Map<String, serde_json::Value>,
    pub compression: Compression,
    pub max_splits: usize,
    /// The plan a previous run recorded (a resumed job is not planned again).
    pub plan: Option<super::StoredPlan>,
    /// A run after a restart: agents may still be reconnecting, so planning
    /// waits as long for one as a task does.
    pub resumed: bool,
    pub log: super::observer::JobLog,
}

/// Reads a job's data source through agents of its group.
pub struct TunnelReading {
    pub(super) shared: Arc<JobHub>,
    pub(super) job_id: String,
    pub(super) attempt_prefix: String,
    group: String,
    pub(super) datasource: String,
    /// The job's reader options.
    pub(super) options: Options,
    pub(super) compression: Compression,
    max_splits: usize,
    plan: Mutex<Option<(Vec<Split>, Option<u64>)>>,
    stored_schema: Option<SchemaRef>,
    /// The source table's description from the agent's plan reply.
    described: Mutex<Option<ferry_connectors::spec::TableSchema>>,
    plan_wait: Duration,
    next_agent: AtomicUsize,
    pub(super) wire: Arc<AtomicU64>,
    /// A many-table job's wire bytes, which this reading's add to.
    pub(super) total_wire: Option<Arc<AtomicU64>>,
    log: super::observer::JobLog,
}

impl TunnelReading {
    pub(crate) fn new(shared: Arc<JobHub>, job: TunnelJob<'_>) -> Self {
        let (stored_schema, plan) = match job.plan {
            Some(p) => (Some(p.schema), Some((p.splits, p.estimated_rows))),
            None => (None, None),
        };
        Self {
            shared,
            job_id: job.job_id,
            attempt_prefix: job.attempt_prefix,
            group: job.group,
            datasource: job.datasource,
            options: job.options.clone(),
            compression: job.compression,
            max_splits: job.max_splits,
            plan: Mutex::new(plan),
            described: Mutex::new(None),
            stored_schema,
            plan_wait: if job.resumed {
                TASK_AGENT_WAIT
            } else {
                PLAN_AGENT_WAIT
            },
            next_agent: AtomicUsize::new(0),
            wire: Arc::new(AtomicU64::new(0)),
            total_wire: None,
            log: job.log,
        }
    }

    /// Bytes that crossed the tunnel for this job so far, shared.
    pub(crate) fn wire_counter(&self) -> Arc<AtomicU64> {
        self.wire.clone()
    }

    /// Also counts this reading's wire bytes into `total` (a many-table job's).
    pub(crate) fn counting_into(mut self, total: Arc<AtomicU64>) -> Self {
        self.total_wire = Some(total);
        self
    }

    /// The next agent to give work to, waiting up to `wait` for one.
    pub(super) async fn agent(&self, wait: Duration) -> Result<AgentHandle, String> {
        self.agent_with(wait, None).await
    }

    /// An agent of the job's group offering its data source and, when `needs` says so, a
    /// capability.
    async fn agent_with(&self, wait: Duration, needs: Option<&str>) -> Result<AgentHandle, String> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let mut agents = self.shared.registry.offering(&self.group, &self.datasource);
            if let Some(c) = needs {
                agents.retain(|a| a.capabilities.iter().any(|x| x == c));
            }
            if !agents.is_empty() {
                let i = self.next_agent.fetch_add(1, Ordering::Relaxed);
                return Ok(agents[i % agents.len()].clone());
            }
            if tokio::time::Instant::now() >= deadline {
                let n = self.shared.registry.group_agents(&self.group);
                return Err(if n == 0 {
                    format!(
                        "no agent of group `{}` is connected (waited {wait:?})",
                        self.group
                    )
                } else {
                    format!(
                        "none of the {n} connected agent(s) of group `{}` has a data source `{}`",
                        self.group, self.datasource
                    )
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Sends the request `make` builds (given its id) to an agent of the job's group and
    /// waits for the answer, from that agent only.
    async fn ask(&self, make: impl FnOnce(u64) -> ControlMessage) -> Result<Answer, String> {
        let agent = self.agent(self.plan_wait).await?;
        let dispatch = &self.shared.dispatch;
        let (request_id, answer) = dispatch
            .expect_plan(&agent.key, self.shared.max_plans_per_agent)
            .map_err(|e| e.to_string())?;
        if agent.outbox.send(make(request_id)).await.is_err() {
            dispatch.forget_plan(request_id);
            return Err(format!("agent `{}` disconnected", agent.agent_id));
        }
        let answer = match tokio::time::timeout(PLAN_TIMEOUT, answer).await {
            Ok(Ok(a)) => a,
            Ok(Err(_)) => Err(format!("agent `{}` disconnected", agent.agent_id)),
            Err(_) => {
                dispatch.forget_plan(request_id);
                Err(format!(
                    "agent `{}` did not answer within {PLAN_TIMEOUT:?}",
                    agent.agent_id
                ))
            }
        };
        answer.map_err(|e| format!("agent `{}`: {e}", agent.agent_id))
    }

    /// The tables of the job's data source, as an agent of its group lists them (only
    /// those its policy allows).
    pub async fn list_tables(&self) -> Result<ferry_connectors::TableListing, String> {
        let answer = self
            .ask(|request_id| ControlMessage::ListTables {
                request_id,
                datasource: self.datasource.clone(),
            })
            .await?;
        match answer {
            Answer::Tables(t) => Ok(t),
            Answer::Plan(_) => Err("the agent answered a table listing with a plan".into()),
        }
    }

    fn lock_plan(&self) -> std::sync::MutexGuard<'_, Option<(Vec<Split>, Option<u64>)>> {
        self.plan.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Reading for TunnelReading {
    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, String> {
        if let Some(s) = &self.stored_schema {
            return Ok(s.clone());
        }
        let answer = self
            .ask(|request_id| ControlMessage::PlanRequest {
                request_id,
                datasource: self.datasource.clone(),
                spec: Box::new(spec.clone()),
                options: self.options.clone(),
                max_splits: u32::try_from(self.max_splits).unwrap_or(u32::MAX),
            })
            .await?;
        let Answer::Plan(plan) = answer else {
            return Err("the agent answered a plan request with something else".into());
        };
        let PlanAnswer {
            agent_id,
            schema,
            splits,
            estimated_rows,
            table,
        } = *plan;
        check_plan(&splits, &spec.table_ref(Some(&self.datasource))).map_err(|e| {
            format!("agent `{agent_id}` sent a plan that does not fit the job: {e}")
        })?;
        info!(job = %self.job_id, agent = %agent_id, splits = splits.len(), "planned by agent");
        self.log
            .info(format!("agent `{agent_id}` planned the read"))
            .await;
        *self.lock_plan() = Some((splits, estimated_rows));
        *self.described.lock().unwrap_or_else(|p| p.into_inner()) = table;
        Ok(Arc::new(schema))
    }

    async fn plan(&self, spec: &ReadSpec, _max_splits: usize) -> Result<Vec<Split>, String> {
        if self.lock_plan().is_none() {
            self.schema(spec).await?;
        }
        self.lock_plan()
            .as_ref()
            .map(|(s, _)| s.clone())
            .ok_or_else(|| "no plan".to_string())
    }

    fn estimated_rows(&self) -> Option<u64> {
        self.lock_plan().as_ref().and_then(|(_, e)| *e)
    }

    async fn describe(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<ferry_connectors::spec::TableSchema>, String> {
        if self.lock_plan().is_none() {
            self.schema(spec).await?;
        }
        Ok(self
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone())
    }

    async fn open(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        attempt: u32,
    ) -> Result<Box<dyn SplitFeed>, ReadError> {
        self.open_task(spec, schema, split, attempt, None).await
    }

    /// Only when every connected agent offering the source can: a task goes to any of them.
    async fn hashes_postgres(&self) -> bool {
        let agents = self.shared.registry.offering(&self.group, &self.datasource);
        !agents.is_empty()
            && agents.iter().all(|a| {
                a.capabilities
                    .iter()
                    .any(|c| c == ferry_model::POSTGRES_HASH_CAPABILITY)
            })
    }

    /// The agent hashes the split where it is; only the result crosses the tunnel.
    async fn fingerprint(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        ask: &ferry_model::VerifyAsk,
        attempt: u32,
    ) -> Result<Vec<RecordBatch>, ReadError> {
        let schema = ferry_fingerprint::result_schema(&ask.pass, &schema);
        let feed = self
            .open_task(spec, schema, split, attempt, Some(ask))
            .await?;
        let mut out = Vec::new();
        ferry_engine::run::drain(feed, |batch| {
            out.push(batch);
            Ok(())
        })
        .await?;
        Ok(out)
    }

    fn wire_bytes(&self) -> u64 {
        self.wire.load(Ordering::Relaxed)
    }
}

impl TunnelReading {
    /// Assigns a task for `split` to an agent and waits for its data stream, whose batches
    /// must have `schema` (the rows, or a verification's result).
    async fn open_task(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        attempt: u32,
        verify: Option<&ferry_model::VerifyAsk>,
    ) -> Result<Box<dyn SplitFeed>, ReadError> {
        // An agent that does not know the ask's scheme would hash canonically: never ask one.
        let needs = verify
            .filter(|a| !a.scheme.is_canonical())
            .map(|_| ferry_model::POSTGRES_HASH_CAPABILITY);
        let agent = self
            .agent_with(TASK_AGENT_WAIT, needs)
            .await
            .map_err(ReadError::transient)?;
        // Readable in logs, unguessable for other agents (nothing parses it).
        let task_id = format!(
            "{}-s{}-a{attempt}-{}",
            self.attempt_prefix,
            split.index,
            super::dispatch::random_tag()
        );
        info!(job = %self.job_id, task = %task_id, agent = %agent.key, split = split.index, attempt, "task assigned");
        let assign = ControlMessage::TaskAssign {
            task_id: task_id.clone(),
            datasource: self.datasource.clone(),
            spec: Box::new(spec.clone()),
            options: self.options.clone(),
            split: Box::new(split.clone()),
            compression: self.compression,
            verify: verify.map(|a| Box::new(a.clone())),
        };
        let (ds, events) = self.assign(&agent, &task_id, assign).await?;
        let dispatch = self.shared.dispatch.clone();
        let fail = |e: ReadError| {
            dispatch.forget_task(&task_id);
            Err(e)
        };
        if let Err(e) = same_shape(&schema, &ds.header().schema) {
            let msg = format!("the agent's stream does not match the plan: {e}");
            ds.fail(ErrorCode::SchemaMismatch, &msg).await;
            return fail(msg.into());
        }
        Ok(Box::new(TunnelFeed {
            ds: Some(ds),
            ended: false,
            events,
            last_seq: None,
            wire: WireCount::of(self),
            task_id,
            agent: agent.clone(),
            dispatch,
        }))
    }

    /// Sends task `task_id` (`assign`) to `agent` and waits for the data stream it opens
    /// for it.
    pub(super) async fn assign(
        &self,
        agent: &AgentHandle,
        task_id: &str,
        assign: ControlMessage,
    ) -> Result<(DataStream, mpsc::Receiver<TaskEvent>), ReadError> {
        let dispatch = self.shared.dispatch.clone();
        let mut events = dispatch.expect_task(task_id, &agent.key);
        let fail = |e: ReadError| {
            dispatch.forget_task(task_id);
            Err(e)
        };
        if agent.outbox.send(assign).await.is_err() {
            return fail(ReadError::transient(format!(
                "agent `{}` disconnected",
                agent.agent_id
            )));
        }
        // The agent's session ending (its outbox closes) means no stream will come.
        let event = tokio::select! {
            e = tokio::time::timeout(STREAM_TIMEOUT, events.recv()) => e,
            _ = agent.outbox.closed() => Ok(None),
        };
        match event {
            Ok(Some(TaskEvent::Stream(ds))) => Ok((*ds, events)),
            Ok(Some(TaskEvent::Failed {
                agent_id,
                message,
                retryable,
            })) => fail(task_failed(&agent_id, &message, retryable)),
            Ok(None) => fail(ReadError::transient(format!(
                "agent `{}` disconnected before it opened the task's data stream",
                agent.agent_id
            ))),
            Err(_) => fail(ReadError::transient(format!(
                "agent `{}` did not open the task's data stream within {STREAM_TIMEOUT:?}",
                agent.agent_id
            ))),
        }
    }
}

/// Same column names and types, in order (metadata may differ).
fn same_shape(want: &Schema, got: &Schema) -> Result<(), String> {
    if want.fields().len() != got.fields().len() {
        return Err(format!(
            "{} columns planned, {} sent",
            want.fields().len(),
            got.fields().len()
        ));
    }
    for (w, g) in want.fields().iter().zip(got.fields()) {
        if w.name() != g.name() || w.data_type() != g.data_type() {
            return Err(format!(
                "column `{}` {} planned, `{}` {} sent",
                w.name(),
                w.data_type(),
                g.name(),
                g.data_type()
            ));
        }
    }
    Ok(())
}

struct TunnelFeed {
    ds: Option<DataStream>,
    /// The agent's `End` arrived: every batch was read.
    ended: bool,
    events: mpsc::Receiver<TaskEvent>,
    last_seq: Option<u64>,
    wire: WireCount,
    task_id: String,
    agent: AgentHandle,
    dispatch: Arc<super::dispatch::Dispatch>,
}

impl TunnelFeed {
    fn count_wire(&mut self) {
        if let Some(ds) = &self.ds {
            self.wire.add(ds.wire_bytes());
        }
    }

    async fn explain(&mut self, stream_error: String) -> ReadError {
        explain(&mut self.events, &self.agent.agent_id, stream_error).await
    }
}

/// A data stream's wire bytes, added to the job's counters (and the metrics) as they arrive.
pub(super) struct WireCount {
    seen: u64,
    wire: Arc<AtomicU64>,
    /// A many-table job's wire bytes, which this reading's add to.
    total: Option<Arc<AtomicU64>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl WireCount {
    /// Counts a stream of `reading`'s.
    pub(super) fn of(reading: &TunnelReading) -> Self {
        Self {
            seen: 0,
            wire: reading.wire.clone(),
            total: reading.total_wire.clone(),
            metrics: reading.shared.metrics.clone(),
        }
    }

    /// The stream has carried `now` bytes so far.
    pub(super) fn add(&mut self, now: u64) {
        let new = now.saturating_sub(self.seen);
        self.wire.fetch_add(new, Ordering::Relaxed);
        if let Some(t) = &self.total {
            t.fetch_add(new, Ordering::Relaxed);
        }
        self.metrics.wire_bytes.inc_by(new);
        self.seen = now;
    }
}

/// An agent's report that its task failed: transient when the agent says the failure may
/// pass (its source went away), so the task is started again.
pub(super) fn task_failed(agent_id: &str, message: &str, retryable: bool) -> ReadError {
    let message = format!("agent `{agent_id}`: {message}");
    if retryable {
        ReadError::transient(message)
    } else {
        message.into()
    }
}

/// After a stream error, the agent's own report (a failed read) says more than "stream
/// reset"; wait briefly for it. Without one, the agent or the path to it was lost:
/// transient.
pub(super) async fn explain(
    events: &mut mpsc::Receiver<TaskEvent>,
    agent_id: &str,
    stream_error: String,
) -> ReadError {
    let wait = Duration::from_secs(2);
    loop {
        match tokio::time::timeout(wait, events.recv()).await {
            Ok(Some(TaskEvent::Failed {
                agent_id,
                message,
                retryable,
            })) => return task_failed(&agent_id, &message, retryable),
            Ok(Some(TaskEvent::Stream(_))) => continue,
            Ok(None) | Err(_) => {
                return ReadError::transient(format!("agent `{agent_id}`: {stream_error}"))
            }
        }
    }
}

#[async_trait]
impl SplitFeed for TunnelFeed {
    async fn next(&mut self) -> Result<Option<RecordBatch>, ReadError> {
        let Some(ds) = self.ds.as_mut() else {
            return Ok(None);
        };
        let r = tokio::select! {
            r = ds.next_batch() => r.map_err(|e| Err(e.to_string())),
            ev = self.events.recv() => match ev {
                Some(TaskEvent::Failed { agent_id, message, .. }) => Err(Ok(ReadError::from(format!("agent `{agent_id}`: {message}")))),
                _ => Err(Ok(ReadError::transient("task dropped"))),
            },
        };
        self.count_wire();
        match r {
            Ok(Some(b)) => {
                self.last_seq = Some(b.seq);
                Ok(Some(b.batch))
            }
            Ok(None) => {
                self.ended = true;
                Ok(None)
            }
            Err(Ok(e)) => Err(e),
            Err(Err(stream_error)) => Err(self.explain(stream_error).await),
        }
    }

    async fn committed(&mut self, rows: u64) -> Result<(), ReadError> {
        match (self.ds.as_mut(), self.last_seq) {
            // The ack only tells the agent how far the writer got; losing
            // it with the agent is the agent's loss, seen on the next read.
            (Some(ds), Some(seq)) => ds
                .ack(seq, rows)
                .await
                .map_err(|e| ReadError::transient(e.to_string())),
            _ => Ok(()),
        }
    }

    fn origin(&self) -> Option<&str> {
        Some(&self.agent.agent_id)
    }

    fn changes(&self) -> ferry_connectors::spec::Changes {
        self.ds
            .as_ref()
            .map(|ds| ds.changed().clone())
            .unwrap_or_default()
    }

    async fn close(mut self: Box<Self>, outcome: Result<(), &str>) -> Result<(), String> {
        self.dispatch.forget_task(&self.task_id);
        let Some(ds) = self.ds.take() else {
            return Ok(());
        };
        match outcome {
            Ok(()) if self.ended => ds.finish().map_err(|e| e.to_string()),
            // Stopped before the end: the job is failing elsewhere.
            Ok(()) | Err(_) => {
                let e = outcome.err().unwrap_or("stopped");
                ds.fail(ErrorCode::Internal, &format!("job failed: {e}"))
                    .await;
                let cancel = ControlMessage::TaskCancel {
                    task_id: self.task_id.clone(),
                    reason: "the job failed".into(),
                };
                if self.agent.outbox.send(cancel).await.is_err() {
                    warn!(task = %self.task_id, "could not cancel the task: agent gone");
                }
                Ok(())
            }
        }
    }
}

/// Checks an agent's plan before the job relies on it: splits numbered
/// 0..n of n, each of the job's own table (or of none: a query, a file).
fn check_plan(splits: &[Split], table: &Option<TableRef>) -> Result<(), String> {
    if splits.is_empty() {
        return Err("no splits".into());
    }
    let n = splits.len();
    for (i, s) in splits.iter().enumerate() {
        if s.index as usize != i || s.total as usize != n {
            return Err(format!(
                "split {i} of {n} calls itself {} of {}",
                s.index, s.total
            ));
        }
        if s.resume.is_some() {
            return Err(format!("split {i} is planned as resumed"));
        }
        if let Some(t) = &s.table {
            if Some(t) != table.as_ref() {
                return Err(format!("split {i} reads table `{}`", t.display_name()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod plan_tests {
    use super::*;

    #[test]
    fn an_agents_plan_must_fit_the_job() {
        let table = TableRef::parse("orders", Some("shop"));
        let ok: Vec<Split> = ferry_connectors::spec::int_splits("id", 1, 100, 3, None)
            .into_iter()
            .map(|s| s.of_table(table.clone()))
            .collect();
        assert!(check_plan(&ok, &table).is_ok());
        assert!(check_plan(&[], &table).is_err());
        let mut other = ok.clone();
        other[1].table = TableRef::parse("secrets", Some("shop"));
        assert!(check_plan(&other, &table).unwrap_err().contains("secrets"));
        let mut renumbered = ok.clone();
        renumbered[2].index = 0;
        assert!(check_plan(&renumbered, &table).is_err());
        let resumed = vec![Split::all().resumed_after(ferry_connectors::spec::Position::int(1))];
        assert!(check_plan(&resumed, &None).is_err());
    }
}
