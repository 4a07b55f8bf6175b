//! What a running job leaves behind: its state in the store (plan, each
//! split's start, checkpoints and end), its log, and the broker's metrics.

use std::sync::Arc;
use std::time::Duration;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use ferry_connectors::{Checkpoint, Split};
use ferry_engine::RunObserver;
use ferry_state::{SplitState, StateStore};
use tracing::{error, info, warn};

use super::{Entry, TaskStatus};
use crate::metrics::Metrics;

/// A job's log: each line goes to `tracing` and to the state store, where
/// `GET /v1/jobs/{id}/logs` and `ferry job logs` read it.
#[derive(Clone)]
pub(crate) struct JobLog {
    store: StateStore,
    /// `None`: work that is no job (a verification asked for through the API) logs to the
    /// broker's own log only.
    number: Option<u64>,
}

impl JobLog {
    pub fn new(store: StateStore, number: u64) -> Self {
        Self {
            store,
            number: Some(number),
        }
    }

    /// A log for work that is no job: the broker's own log only.
    pub fn none(store: StateStore) -> Self {
        Self {
            store,
            number: None,
        }
    }

    pub async fn info(&self, message: impl Into<String>) {
        let m = message.into();
        info!(job = ?self.number, "{m}");
        self.write("info", m).await;
    }

    pub async fn warn(&self, message: impl Into<String>) {
        let m = message.into();
        warn!(job = ?self.number, "{m}");
        self.write("warn", m).await;
    }

    pub async fn error(&self, message: impl Into<String>) {
        let m = message.into();
        error!(job = ?self.number, "{m}");
        self.write("error", m).await;
    }

    async fn write(&self, level: &str, message: String) {
        let Some(number) = self.number else { return };
        // A log line that cannot be stored is still in the broker's own log.
        if let Err(e) = self.store.append_log(number, level, &message).await {
            warn!(
                job = number,
                "state store: cannot append to the job's log: {e}"
            );
        }
    }
}

/// The broker's [`RunObserver`] for one job.
pub(crate) struct JobObserver {
    entry: Arc<Entry>,
    store: StateStore,
    metrics: Arc<Metrics>,
    log: JobLog,
}

impl JobObserver {
    pub fn new(entry: Arc<Entry>, store: StateStore, metrics: Arc<Metrics>, log: JobLog) -> Self {
        Self {
            entry,
            store,
            metrics,
            log,
        }
    }

    fn number(&self) -> u64 {
        self.entry.number
    }

    fn stored<T>(&self, what: &str, r: Result<T, ferry_state::StateError>) -> Result<T, String> {
        r.map_err(|e| {
            self.metrics.error("state_store");
            format!("state store: {what}: {e}")
        })
    }
}

#[async_trait]
impl RunObserver for JobObserver {
    async fn tables_planned(&self, tables: &[(String, bool)]) -> Result<(), String> {
        self.store
            .tables_planned(self.number(), tables)
            .await
            .map_err(|e| {
                self.metrics.error("state_store");
                e.to_string()
            })
    }

    async fn table_ended(&self, line: &ferry_engine::TableLine, done: bool) {
        let json = serde_json::to_string(line).ok();
        if let Err(e) = self
            .store
            .table_ended(
                self.number(),
                &line.source,
                done,
                json.as_deref().filter(|_| done),
            )
            .await
        {
            // The table is loaded again if the job resumes: more work, nothing lost.
            self.metrics.error("state_store");
            warn!(job = self.number(), table = %line.source, "recording a table's end: {e}");
        }
    }

    async fn planned(
        &self,
        schema: &SchemaRef,
        splits: &[Split],
        estimated_rows: Option<u64>,
    ) -> Result<(), String> {
        let schema_json = serde_json::to_string(schema.as_ref()).map_err(|e| e.to_string())?;
        let split_json = splits
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())?;
        self.stored(
            "recording the plan",
            self.store
                .job_planned(self.number(), &schema_json, estimated_rows, &split_json)
                .await,
        )?;
        self.entry.set_tasks(
            splits
                .iter()
                .map(|s| TaskStatus {
                    split: s.index,
                    state: SplitState::Pending,
                    agent: None,
                    attempts: 0,
                    rows: 0,
                    last_key: None,
                    error: None,
                })
                .collect(),
        );
        let estimate = match estimated_rows {
            Some(n) => format!(", about {n} rows"),
            None => String::new(),
        };
        self.log
            .info(format!(
                "planned: {} columns, {} splits{estimate}",
                schema.fields().len(),
                splits.len()
            ))
            .await;
        Ok(())
    }

    async fn split_started(
        &self,
        split: &Split,
        attempt: u32,
        origin: Option<&str>,
    ) -> Result<(), String> {
        self.stored(
            "recording a task's start",
            self.store
                .split_started(self.number(), split.index, origin)
                .await,
        )?;
        self.entry.update_task(split.index, |t| {
            t.state = SplitState::Running;
            t.agent = origin.map(str::to_string);
            t.attempts += 1;
            t.rows = 0;
            t.error = None;
        });
        let on = origin
            .map(|a| format!(" on agent `{a}`"))
            .unwrap_or_default();
        let again = if attempt > 1 {
            format!(" (attempt {attempt})")
        } else {
            String::new()
        };
        self.log
            .info(format!(
                "split {} of {} started{on}{again}",
                split.index + 1,
                split.total
            ))
            .await;
        Ok(())
    }

    async fn committed(&self, split: &Split, cp: &Checkpoint) -> Result<(), String> {
        let position = cp.position.as_ref().map(|p| p.to_stored());
        self.stored(
            "recording a checkpoint",
            self.store
                .checkpoint(
                    self.number(),
                    split.index,
                    cp.seq,
                    cp.written,
                    position.as_deref(),
                )
                .await,
        )?;
        self.entry.update_task(split.index, |t| {
            t.rows = cp.written;
            t.last_key = position;
        });
        Ok(())
    }

    async fn split_retrying(&self, split: &Split, attempt: u32, error: &str) {
        self.metrics.error("task_retried");
        if let Err(e) = self.store.split_pending(self.number(), split.index).await {
            self.metrics.error("state_store");
            warn!(job = self.number(), "state store: {e}");
        }
        self.entry.update_task(split.index, |t| {
            t.state = SplitState::Pending;
            t.error = Some(error.to_string());
        });
        self.log
            .warn(format!(
                "split {} of {}: {error}; starting it again (attempt {attempt})",
                split.index + 1,
                split.total
            ))
            .await;
    }

    async fn split_done(&self, split: &Split, rows: u64, elapsed: Duration) -> Result<(), String> {
        self.stored(
            "recording a task's end",
            self.store
                .split_done(self.number(), split.index, rows)
                .await,
        )?;
        self.metrics.task_seconds.observe(elapsed.as_secs_f64());
        self.entry.update_task(split.index, |t| {
            t.state = SplitState::Done;
            t.rows = rows;
        });
        self.log
            .info(format!(
                "split {} of {} done: {rows} rows in {:.1} s",
                split.index + 1,
                split.total,
                elapsed.as_secs_f64()
            ))
            .await;
        Ok(())
    }

    async fn split_failed(&self, split: &Split, error: &str, elapsed: Duration) {
        self.metrics.error("task_failed");
        self.metrics.task_seconds.observe(elapsed.as_secs_f64());
        if let Err(e) = self
            .store
            .split_failed(self.number(), split.index, error)
            .await
        {
            self.metrics.error("state_store");
            warn!(job = self.number(), "state store: {e}");
        }
        self.entry.update_task(split.index, |t| {
            t.state = SplitState::Failed;
            t.error = Some(error.to_string());
        });
        self.log.error(error.to_string()).await;
    }

    fn batch_read(&self, rows: u64, bytes: u64) {
        self.metrics.rows_read.inc_by(rows);
        self.metrics.bytes_read.inc_by(bytes);
    }

    fn batch_written(&self, rows: u64, bytes: u64, dirty: u64, took: Duration) {
        self.metrics.rows_written.inc_by(rows);
        self.metrics.bytes_written.inc_by(bytes);
        self.metrics.dirty_records.inc_by(dirty);
        self.metrics.commit_seconds.observe(took.as_secs_f64());
    }
}
