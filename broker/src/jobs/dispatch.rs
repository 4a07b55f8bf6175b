//! Routing answers from agents to whoever waits for them: plan replies by
//! request id, data streams and task failures by task id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::{mpsc, oneshot};

use crate::data::DataStream;

/// What an agent answered to a plan request.
#[derive(Debug)]
pub struct PlanAnswer {
    pub agent_id: String,
    pub schema: String,
    pub splits: String,
    pub estimated_rows: Option<u64>,
}

/// Something that happened to an assigned task.
pub enum TaskEvent {
    /// The agent opened the task's data stream.
    Stream(Box<DataStream>),
    /// The agent could not run the task, or its read failed.
    Failed { agent_id: String, message: String },
}

/// Pending plan requests and assigned tasks.
#[derive(Default)]
pub struct Dispatch {
    next_request: AtomicU64,
    plans: Mutex<HashMap<u64, oneshot::Sender<Result<PlanAnswer, String>>>>,
    tasks: Mutex<HashMap<String, mpsc::Sender<TaskEvent>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is one insert/remove: a poisoned map is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Dispatch {
    /// A fresh request id and the receiver of its answer.
    pub fn expect_plan(&self) -> (u64, oneshot::Receiver<Result<PlanAnswer, String>>) {
        let id = self.next_request.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = oneshot::channel();
        lock(&self.plans).insert(id, tx);
        (id, rx)
    }

    /// Forgets a plan request nobody waits for any more.
    pub fn forget_plan(&self, id: u64) {
        lock(&self.plans).remove(&id);
    }

    /// Delivers an agent's answer; `false` if nobody asked.
    pub fn plan_answered(&self, id: u64, answer: Result<PlanAnswer, String>) -> bool {
        match lock(&self.plans).remove(&id) {
            Some(tx) => tx.send(answer).is_ok(),
            None => false,
        }
    }

    /// Registers a task before it is assigned; its events arrive on the receiver.
    pub fn expect_task(&self, task_id: &str) -> mpsc::Receiver<TaskEvent> {
        let (tx, rx) = mpsc::channel(4);
        lock(&self.tasks).insert(task_id.to_string(), tx);
        rx
    }

    pub fn forget_task(&self, task_id: &str) {
        lock(&self.tasks).remove(task_id);
    }

    /// Hands a data stream to its task; gives it back if no task expects it.
    pub fn deliver_stream(&self, ds: DataStream) -> Option<DataStream> {
        let tx = lock(&self.tasks).get(&ds.header().task_id).cloned();
        match tx {
            Some(tx) => match tx.try_send(TaskEvent::Stream(Box::new(ds))) {
                Ok(()) => None,
                Err(e) => match e.into_inner() {
                    TaskEvent::Stream(ds) => Some(*ds),
                    // Not what was sent; nothing to give back.
                    TaskEvent::Failed { .. } => None,
                },
            },
            None => Some(ds),
        }
    }

    /// Reports a task failure from an agent.
    pub fn task_failed(&self, task_id: &str, agent_id: &str, message: String) -> bool {
        let tx = lock(&self.tasks).get(task_id).cloned();
        match tx {
            Some(tx) => tx
                .try_send(TaskEvent::Failed {
                    agent_id: agent_id.to_string(),
                    message,
                })
                .is_ok(),
            None => false,
        }
    }
}
