//! The reading half of jobs: plan requests and tasks from the broker.
//!
//! The broker names a data source; the agent resolves it from its own
//! catalog, so URLs and credentials never cross the tunnel. Every request
//! is checked by the catalog against the source's policy first (the broker
//! is not trusted to have done so), and at most `[limits] max_plans` plans
//! and `max_tasks` tasks run at once. A plan answers with the schema and
//! splits. A task reads one split into a bounded
//! channel and sends it on its own data stream; QUIC flow control on that
//! stream slows the source cursor when the broker's writer is slower.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use ferry_connectors::{ConnectorError, ReadSpec, Split};
use ferry_fingerprint::{result_schema, Digester};
use ferry_model::VerifyAsk;
use ferry_protocol::control::{ControlMessage, Options};
use ferry_protocol::data::{Compression, StreamHeader};
use ferry_protocol::limits::Limits;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::catalog::Catalog;
use crate::sender::DataSender;

/// Batches encoded at once per task.
const ENCODE_PARALLELISM: usize = 1;

/// Runs the job work one session receives.
pub struct Worker {
    conn: ferry_tunnel::Connection,
    catalog: Arc<Catalog>,
    outbox: mpsc::Sender<ControlMessage>,
    tasks: Mutex<HashMap<String, AbortHandle>>,
    /// Plan requests being answered.
    plans: AtomicUsize,
}

/// Gives back a plan's slot when its answer is sent (or its task dies).
struct PlanSlot<'a>(&'a AtomicUsize);

impl Drop for PlanSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Worker {
    pub(crate) fn new(
        conn: ferry_tunnel::Connection,
        catalog: Arc<Catalog>,
        outbox: mpsc::Sender<ControlMessage>,
    ) -> Arc<Self> {
        Arc::new(Self {
            conn,
            catalog,
            outbox,
            tasks: Mutex::new(HashMap::new()),
            plans: AtomicUsize::new(0),
        })
    }

    /// No task and no plan is running.
    pub(crate) fn is_idle(&self) -> bool {
        self.plans.load(Ordering::Acquire) == 0 && self.lock_tasks().is_empty()
    }

    /// Takes a plan slot for request `request_id` (a plan or a table listing), or refuses
    /// the request when `[limits] max_plans` are running.
    fn admit_plan(self: &Arc<Self>, request_id: u64) -> bool {
        let max_plans = self.catalog.limits().max_plans;
        if self.plans.fetch_add(1, Ordering::AcqRel) < max_plans {
            return true;
        }
        self.plans.fetch_sub(1, Ordering::AcqRel);
        warn!(
            request_id,
            "plan refused: {max_plans} plans already running"
        );
        let me = self.clone();
        tokio::spawn(async move {
            me.send(ControlMessage::plan_failed(
                request_id,
                format!("this agent answers at most {max_plans} plan requests at once ([limits] max_plans)"),
            ))
            .await;
        });
        false
    }

    /// Handles a job message; returns `false` for any other message.
    pub(crate) fn handle(self: &Arc<Self>, msg: ControlMessage) -> bool {
        match msg {
            ControlMessage::PlanRequest {
                request_id,
                datasource,
                spec,
                options,
                max_splits,
            } => {
                if !self.admit_plan(request_id) {
                    return true;
                }
                let me = self.clone();
                tokio::spawn(async move {
                    let slot = PlanSlot(&me.plans);
                    let planning = {
                        let (me, datasource) = (me.clone(), datasource.clone());
                        tokio::spawn(async move {
                            me.plan(&datasource, &spec, &options, max_splits).await
                        })
                    };
                    let reply = match planning.await.unwrap_or_else(|e| Err(crashed(e))) {
                        Ok(reply) => reply(request_id),
                        Err(e) => {
                            warn!(request_id, %datasource, "plan failed: {e}");
                            ControlMessage::plan_failed(request_id, me.catalog.scrub(e))
                        }
                    };
                    drop(slot);
                    me.send(reply).await;
                });
            }
            ControlMessage::ListTables {
                request_id,
                datasource,
            } => {
                if !self.admit_plan(request_id) {
                    return true;
                }
                let me = self.clone();
                tokio::spawn(async move {
                    let slot = PlanSlot(&me.plans);
                    let listing = {
                        let (me, datasource) = (me.clone(), datasource.clone());
                        tokio::spawn(async move { me.catalog.list_tables(&datasource).await })
                    };
                    let reply = match listing.await.unwrap_or_else(|e| Err(crashed(e))) {
                        Ok(l) => ControlMessage::TableList {
                            request_id,
                            tables: l.tables,
                            not_migrated: l.not_migrated,
                            rows: l.rows,
                        },
                        Err(e) => {
                            warn!(request_id, %datasource, "listing tables failed: {e}");
                            ControlMessage::plan_failed(request_id, me.catalog.scrub(e))
                        }
                    };
                    drop(slot);
                    me.send(reply).await;
                });
            }
            ControlMessage::TaskAssign {
                task_id,
                datasource,
                spec,
                options,
                split,
                compression,
                verify,
            } => {
                let me = self.clone();
                self.start_task(task_id.clone(), async move {
                    let task = Task {
                        id: &task_id,
                        datasource: &datasource,
                        spec: &spec,
                        options: &options,
                        split: &split,
                        compression,
                    };
                    match verify {
                        None => me.run_task(task).await,
                        Some(ask) => me.run_fingerprint(task, &ask).await,
                    }
                    .map_err(TaskError::from)
                });
            }
            ControlMessage::StreamAssign {
                task_id,
                datasource,
                tables,
                options,
                start,
                compression,
            } => {
                let me = self.clone();
                let task = crate::stream::StreamTask {
                    id: task_id.clone(),
                    datasource,
                    tables,
                    options,
                    start,
                    compression,
                };
                self.start_task(task_id, async move {
                    crate::stream::run(&me.conn, &me.catalog, task, me.outbox.clone()).await
                });
            }
            ControlMessage::TaskCancel { task_id, reason } => {
                if let Some(h) = self.lock_tasks().remove(&task_id) {
                    info!(task = %task_id, %reason, "task cancelled by the broker");
                    h.abort();
                }
            }
            _ => return false,
        }
        true
    }

    /// Runs task `id` (`run`) under `[limits] max_tasks`, reporting its failure to the
    /// broker; a `TaskCancel` of `id` aborts it.
    fn start_task(
        self: &Arc<Self>,
        id: String,
        run: impl std::future::Future<Output = Result<u64, TaskError>> + Send + 'static,
    ) {
        // Registered under the lock the task takes to deregister, so a task that ends at
        // once cannot leave a stale entry.
        let mut tasks = self.lock_tasks();
        let max_tasks = self.catalog.limits().max_tasks;
        if tasks.len() >= max_tasks || tasks.contains_key(&id) {
            drop(tasks);
            warn!(task = %id, "task refused: {max_tasks} tasks running, or the id is in use");
            let me = self.clone();
            tokio::spawn(async move {
                me.send(ControlMessage::task_failed(
                    id,
                    format!("this agent runs at most {max_tasks} tasks at once ([limits] max_tasks), each under its own id"),
                ))
                .await;
            });
            return;
        }
        let me = self.clone();
        let task_id = id.clone();
        let handle = tokio::spawn(async move {
            let running = tokio::spawn(run);
            // An abort of this task aborts the read with it.
            let _guard = AbortOnDrop(running.abort_handle());
            let r = running
                .await
                .unwrap_or_else(|e| Err(TaskError::from(crashed(e))));
            me.lock_tasks().remove(&task_id);
            match r {
                Ok(rows) => info!(task = %task_id, rows, "task done"),
                Err(TaskError { message, retryable }) => {
                    warn!(task = %task_id, retryable, "task failed: {message}");
                    let message = me.catalog.scrub(message);
                    me.send(if retryable {
                        ControlMessage::task_failed_retryable(task_id, message)
                    } else {
                        ControlMessage::task_failed(task_id, message)
                    })
                    .await;
                }
            }
        });
        tasks.insert(id, handle.abort_handle());
    }

    /// Stops every task (the session ended).
    pub(crate) fn abort_all(&self) {
        for (_, h) in self.lock_tasks().drain() {
            h.abort();
        }
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn send(&self, msg: ControlMessage) {
        if self.outbox.send(msg).await.is_err() {
            debug!("session ended before a job message could be sent");
        }
    }

    async fn plan(
        &self,
        datasource: &str,
        spec: &ReadSpec,
        options: &Options,
        max_splits: u32,
    ) -> Result<impl FnOnce(u64) -> ControlMessage, String> {
        let read = self.catalog.prepare(datasource, spec, options).await?;
        let schema = read.schema().await?;
        let splits = self.catalog.plan(&read, max_splits).await?;
        let estimated_rows = read.source.estimate_rows(&read.spec).await;
        let table = self.catalog.describe(&read, &schema).await?.map(Box::new);
        Ok(move |request_id| ControlMessage::PlanReply {
            request_id,
            schema: schema.as_ref().clone(),
            splits,
            estimated_rows,
            table,
        })
    }

    /// Opens task `task`'s data stream, whose batches have `schema`.
    async fn open_stream(
        &self,
        task: &Task<'_>,
        split: u32,
        schema: SchemaRef,
    ) -> Result<DataSender, String> {
        let header = StreamHeader {
            task_id: task.id.to_string(),
            split,
            resume_after_seq: None,
            compression: task.compression,
            schema,
        };
        let (send, recv) = self
            .conn
            .open_bi()
            .await
            .map_err(|e| format!("opening a data stream: {e}"))?;
        DataSender::start(send, recv, header, ENCODE_PARALLELISM, Limits::default())
            .await
            .map_err(|e| e.to_string())
    }

    async fn run_task(&self, task: Task<'_>) -> Result<u64, String> {
        let task_id = task.id;
        let read = self
            .catalog
            .prepare(task.datasource, task.spec, task.options)
            .await?;
        let split = self.catalog.check_split(&read, task.split).await?;
        let schema: SchemaRef = read.schema().await?;
        let (source, spec) = (read.source, read.spec);
        let mut sender = self.open_stream(&task, split.index, schema.clone()).await?;
        let (tx, mut rx) = mpsc::channel::<RecordBatch>(1);
        let reader = tokio::spawn(async move { source.read(&spec, schema, &split, tx).await });
        let mut send_error = None;
        while let Some(batch) = rx.recv().await {
            if let Err(e) = sender.send(batch).await {
                send_error = Some(e.to_string());
                break;
            }
        }
        drop(rx);
        let read = reader.await.map_err(|e| format!("reader task: {e}"))?;
        if let Some(e) = send_error {
            sender.abort();
            return Err(e);
        }
        match read {
            Ok(rows) => {
                let summary = sender.finish().await.map_err(|e| e.to_string())?;
                debug!(
                    task = task_id,
                    batches = summary.batches,
                    wire = summary.frame_bytes,
                    "stream finished"
                );
                Ok(rows)
            }
            Err(ConnectorError::Cancelled) => {
                sender.abort();
                Err("the read was cancelled".into())
            }
            Err(e) => {
                sender.abort();
                Err(format!("reading: {}", peer(&e)))
            }
        }
    }

    /// A verification task: reads the split as `run_task` does (the same policy checks),
    /// but hashes its rows here and sends only the result of `ask`'s pass.
    async fn run_fingerprint(&self, task: Task<'_>, ask: &VerifyAsk) -> Result<u64, String> {
        let read = self
            .catalog
            .prepare(task.datasource, task.spec, task.options)
            .await?;
        let split = self.catalog.check_split(&read, task.split).await?;
        let schema: SchemaRef = read.schema().await?;
        let mut digester = Digester::new(&schema, ask).map_err(|e| e.to_string())?;
        let (source, spec) = (read.source, read.spec);
        // A PostgreSQL source sums its buckets itself where it can (its own column kinds
        // decide, not the ask's text: the SQL is built from the catalog).
        let in_place = source
            .bucket_sums(&spec, &split, ask)
            .await
            .map_err(|e| format!("fingerprinting: {}", peer(&e)))?;
        let mut sender = self
            .open_stream(&task, split.index, result_schema(&ask.pass, &schema))
            .await?;
        if let Some(sums) = in_place {
            let rows = sums.iter().map(|s| s.1).sum::<u64>();
            let sent = match ferry_fingerprint::bucket_batch(&sums) {
                Ok(b) => sender.send(b).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                sender.abort();
                return Err(e);
            }
            sender.finish().await.map_err(|e| e.to_string())?;
            debug!(task = task.id, rows, "split fingerprinted in the database");
            return Ok(rows);
        }
        let (tx, mut rx) = mpsc::channel::<RecordBatch>(2);
        let reader = tokio::spawn(async move { source.read(&spec, schema, &split, tx).await });
        let mut failed = None;
        while let Some(batch) = rx.recv().await {
            let sent = match digester.feed(&batch) {
                Ok(Some(out)) => sender.send(out).await.map_err(|e| e.to_string()),
                Ok(None) => Ok(()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = sent {
                failed = Some(e);
                break;
            }
        }
        drop(rx);
        let read = reader.await.map_err(|e| format!("reader task: {e}"))?;
        if let Some(e) = failed {
            sender.abort();
            return Err(e);
        }
        let rows = match read {
            Ok(rows) => rows,
            Err(ConnectorError::Cancelled) => {
                sender.abort();
                return Err("the read was cancelled".into());
            }
            Err(e) => {
                sender.abort();
                return Err(format!("reading: {}", peer(&e)));
            }
        };
        match digester.finish() {
            Ok(Some(out)) => {
                if let Err(e) = sender.send(out).await {
                    sender.abort();
                    return Err(e.to_string());
                }
            }
            Ok(None) => {}
            Err(e) => {
                sender.abort();
                return Err(e.to_string());
            }
        }
        sender.finish().await.map_err(|e| e.to_string())?;
        debug!(task = task.id, rows, "split fingerprinted");
        Ok(rows)
    }
}

/// What a `TaskAssign` asks for, borrowed.
struct Task<'a> {
    id: &'a str,
    datasource: &'a str,
    spec: &'a ReadSpec,
    options: &'a Options,
    split: &'a Split,
    compression: Compression,
}

use crate::catalog::peer_message as peer;

/// The error of a plan or task whose future panicked (a bug, or a library's
/// assertion on odd input): the broker gets an answer instead of silence.
/// Why a task failed, and whether the failure may pass (the source went away).
pub(crate) struct TaskError {
    pub message: String,
    pub retryable: bool,
}

impl From<String> for TaskError {
    fn from(message: String) -> Self {
        TaskError {
            message,
            retryable: false,
        }
    }
}

fn crashed(e: tokio::task::JoinError) -> String {
    warn!("a plan or task failed unexpectedly: {e}");
    "the agent failed unexpectedly on this request (see its log)".to_string()
}

/// Aborts a spawned task when dropped (its owner was aborted, or is done with it).
pub(crate) struct AbortOnDrop(pub(crate) AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
