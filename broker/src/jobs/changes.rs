//! A stream job's reader across the tunnel: a `StreamAssign` to an agent of the job's
//! group, and the change stream it opens for it ([`crate::data::DataStream::next_change`]).
//!
//! The agent is trusted for nothing here: a declared table must be one the job asked for
//! (the engine checks its columns and key against the plan), batches must belong to a
//! declared table, and sequence numbers must increase.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use arrow_schema::SchemaRef;
use async_trait::async_trait;
use ferry_connectors::{Position, ReadSpec};
use ferry_engine::stream::{ChangeFeed, ChangeReading, FeedEvent};
use ferry_engine::ReadError;
use ferry_protocol::control::{ControlMessage, ErrorCode};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::dispatch::TaskEvent;
use super::reading::{explain, task_failed, TunnelReading, WireCount, TASK_AGENT_WAIT};
use crate::data::{ChangeFrame, DataStream};
use crate::registry::AgentHandle;

/// How long closing a stream waits for the agent to hear of it.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

#[async_trait]
impl ChangeReading for TunnelReading {
    async fn open_changes(
        &self,
        tables: &[ReadSpec],
        start: Option<Position>,
        attempt: u32,
    ) -> Result<Box<dyn ChangeFeed>, ReadError> {
        let agent = self
            .agent(TASK_AGENT_WAIT)
            .await
            .map_err(ReadError::transient)?;
        let task_id = format!(
            "{}-stream-a{attempt}-{}",
            self.attempt_prefix,
            super::dispatch::random_tag()
        );
        info!(job = %self.job_id, task = %task_id, agent = %agent.key, attempt, position = ?start, "change stream assigned");
        let assign = ControlMessage::StreamAssign {
            task_id: task_id.clone(),
            datasource: self.datasource.clone(),
            tables: tables.to_vec(),
            options: self.options.clone(),
            start,
            compression: self.compression,
        };
        let (ds, events) = self.assign(&agent, &task_id, assign).await?;
        Ok(Box::new(TunnelChanges {
            ds: Some(ds),
            tables: tables.len(),
            events,
            wire: WireCount::of(self),
            task_id,
            agent,
            dispatch: self.shared.dispatch.clone(),
        }))
    }
}

/// A whole-database stream's source tables, listed again by an agent of the job's group
/// (its policy decides what it lists).
pub(super) struct TunnelLister(pub(super) TunnelReading);

#[async_trait]
impl ferry_engine::stream::TableLister for TunnelLister {
    async fn tables(&self) -> Result<Vec<String>, String> {
        self.0.list_tables().await.map(|l| l.tables)
    }
}

/// A change stream from an agent.
struct TunnelChanges {
    ds: Option<DataStream>,
    /// Tables the stream was asked for.
    tables: usize,
    events: mpsc::Receiver<TaskEvent>,
    wire: WireCount,
    task_id: String,
    agent: AgentHandle,
    dispatch: Arc<super::dispatch::Dispatch>,
}

impl TunnelChanges {
    fn count_wire(&mut self) {
        if let Some(ds) = &self.ds {
            self.wire.add(ds.wire_bytes());
        }
    }

    async fn explain(&mut self, stream_error: String) -> ReadError {
        explain(&mut self.events, &self.agent.agent_id, stream_error).await
    }
}

#[async_trait]
impl ChangeFeed for TunnelChanges {
    async fn next(&mut self) -> Result<FeedEvent, ReadError> {
        let Some(ds) = self.ds.as_mut() else {
            return Err(ReadError::transient("the change stream was closed"));
        };
        let r = tokio::select! {
            r = ds.next_change() => r.map_err(|e| Err(e.to_string())),
            ev = self.events.recv() => match ev {
                // A stream whose source went away (a server restarting) starts again.
                Some(TaskEvent::Failed { agent_id, message, retryable }) => Err(Ok(task_failed(&agent_id, &message, retryable))),
                _ => Err(Ok(ReadError::transient("task dropped"))),
            },
        };
        self.count_wire();
        let frame = match r {
            Ok(f) => f,
            Err(Ok(e)) => return Err(e),
            Err(Err(stream_error)) => return Err(self.explain(stream_error).await),
        };
        let index = |i: u32| -> Result<usize, ReadError> {
            let i = i as usize;
            if i < self.tables {
                Ok(i)
            } else {
                Err(format!(
                    "the agent sent table {i} on a stream of {} tables",
                    self.tables
                )
                .into())
            }
        };
        Ok(match frame {
            ChangeFrame::Table(d) => FeedEvent::Table {
                index: index(d.index)?,
                table: d.table,
                key: d.key.iter().map(|&k| k as usize).collect(),
                read: d.schema,
            },
            ChangeFrame::Changes { index: i, batch } => FeedEvent::Changes {
                index: index(i)?,
                batch: batch.batch,
            },
            ChangeFrame::Commit(c) => FeedEvent::Commit {
                seq: c.seq,
                position: c.position,
                commit_time_us: c.commit_time_us,
            },
        })
    }

    fn report_behind(&mut self, gauge: Arc<AtomicU64>) {
        self.dispatch.report_behind(&self.task_id, gauge);
    }

    fn declare(&mut self, index: usize, schema: SchemaRef) {
        if let Some(ds) = self.ds.as_mut() {
            ds.declare(index as u32, schema);
        }
    }

    async fn ack(&mut self, seq: u64) -> Result<(), ReadError> {
        match self.ds.as_mut() {
            Some(ds) => ds
                .ack(seq, 0)
                .await
                .map_err(|e| ReadError::transient(e.to_string())),
            None => Ok(()),
        }
    }

    async fn close(mut self: Box<Self>, error: Option<&str>) {
        self.dispatch.forget_task(&self.task_id);
        let reason = error.unwrap_or("the job stopped");
        // Bounded: the agent may be gone, its connection not yet timed out.
        if let Some(ds) = self.ds.take() {
            let _ = tokio::time::timeout(CLOSE_WAIT, ds.fail(ErrorCode::Internal, reason)).await;
        }
        let cancel = ControlMessage::TaskCancel {
            task_id: self.task_id.clone(),
            reason: reason.to_string(),
        };
        match tokio::time::timeout(CLOSE_WAIT, self.agent.outbox.send(cancel)).await {
            Ok(Ok(())) => {}
            _ => warn!(task = %self.task_id, "could not stop the change stream: agent gone"),
        }
    }
}
