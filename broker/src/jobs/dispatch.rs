//! Routing answers from agents to whoever waits for them: plan replies by
//! request id, data streams and task failures by task id, each accepted
//! only from the agent the request or task was sent to.
//!
//! An id alone proves nothing: any agent may send any id, and an agent of
//! one group must not answer for another group's agent (a forged plan or
//! data stream would put its data into that group's target). So every
//! pending request and task remembers the [`AgentKey`] it was sent to, and
//! an answer from any other agent is refused. The ids are random besides,
//! so another agent cannot even name them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::data::DataStream;
use crate::registry::AgentKey;
pub use crate::routes::{Routed, StreamRouted};

/// What an agent answered to a plan request.
#[derive(Debug)]
pub struct PlanAnswer {
    pub agent_id: String,
    pub schema: arrow_schema::Schema,
    pub splits: Vec<ferry_connectors::Split>,
    pub estimated_rows: Option<u64>,
    pub table: Option<ferry_connectors::spec::TableSchema>,
}

/// What an agent answered to a request: a plan, or the tables of a data source.
#[derive(Debug)]
pub enum Answer {
    Plan(Box<PlanAnswer>),
    Tables(ferry_connectors::TableListing),
}

/// Something that happened to an assigned task.
pub enum TaskEvent {
    /// The agent opened the task's data stream.
    Stream(Box<DataStream>),
    /// The agent could not run the task, or its read failed (`retryable`: the agent says
    /// the failure may pass).
    Failed {
        agent_id: String,
        message: String,
        retryable: bool,
    },
}

/// A plan request that could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// The agent has as many plan requests in flight as allowed.
    #[error("agent `{agent}` already has {in_flight} plan requests in flight (limits.max_plans_per_agent); not sending another")]
    TooManyPlans { agent: AgentKey, in_flight: usize },
}

struct PendingPlan {
    agent: AgentKey,
    tx: oneshot::Sender<Result<Answer, String>>,
}

struct PendingTask {
    agent: AgentKey,
    tx: mpsc::Sender<TaskEvent>,
    /// Where a change stream's distance behind its source goes (its job's progress).
    behind: Option<Arc<AtomicU64>>,
}

/// Pending plan requests and assigned tasks.
#[derive(Default)]
pub struct Dispatch {
    plans: Mutex<HashMap<u64, PendingPlan>>,
    tasks: Mutex<HashMap<String, PendingTask>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section is one insert/remove: a poisoned map is consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A random suffix for task ids: 128 bits, so another agent cannot guess it.
pub fn random_tag() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl Dispatch {
    /// A fresh, random request id for a plan request to `agent`, and the
    /// receiver of its answer; refused if `agent` already has
    /// `max_in_flight` requests waiting.
    pub fn expect_plan(
        &self,
        agent: &AgentKey,
        max_in_flight: usize,
    ) -> Result<(u64, oneshot::Receiver<Result<Answer, String>>), DispatchError> {
        let (tx, rx) = oneshot::channel();
        let mut plans = lock(&self.plans);
        let in_flight = plans.values().filter(|p| &p.agent == agent).count();
        if in_flight >= max_in_flight {
            return Err(DispatchError::TooManyPlans {
                agent: agent.clone(),
                in_flight,
            });
        }
        // The protocol's request id is a u64: random, and never one in use.
        let id = loop {
            let id = rand::random::<u64>();
            if id != 0 && !plans.contains_key(&id) {
                break id;
            }
        };
        plans.insert(
            id,
            PendingPlan {
                agent: agent.clone(),
                tx,
            },
        );
        Ok((id, rx))
    }

    /// Forgets a plan request nobody waits for any more.
    pub fn forget_plan(&self, id: u64) {
        lock(&self.plans).remove(&id);
    }

    /// Delivers `from`'s answer to request `id` if it was sent to `from`.
    pub fn plan_answered(
        &self,
        from: &AgentKey,
        id: u64,
        answer: Result<Answer, String>,
    ) -> Routed {
        let mut plans = lock(&self.plans);
        match plans.get(&id) {
            None => Routed::Unknown,
            Some(p) if &p.agent != from => Routed::NotYours {
                expected: p.agent.clone(),
            },
            Some(_) => match plans.remove(&id) {
                Some(p) => {
                    // The asker may have given up a moment ago; then the answer is moot.
                    let _ = p.tx.send(answer);
                    Routed::Delivered
                }
                None => Routed::Unknown,
            },
        }
    }

    /// Registers a task assigned to `agent` before it is sent; its events
    /// arrive on the receiver.
    pub fn expect_task(&self, task_id: &str, agent: &AgentKey) -> mpsc::Receiver<TaskEvent> {
        let (tx, rx) = mpsc::channel(4);
        lock(&self.tasks).insert(
            task_id.to_string(),
            PendingTask {
                agent: agent.clone(),
                tx,
                behind: None,
            },
        );
        rx
    }

    pub fn forget_task(&self, task_id: &str) {
        lock(&self.tasks).remove(task_id);
    }

    /// Hands a data stream `from` opened to its task, if the task was
    /// assigned to `from`.
    pub fn deliver_stream(&self, from: &AgentKey, ds: DataStream) -> StreamRouted {
        let tx = match lock(&self.tasks).get(&ds.header().task_id) {
            None => return StreamRouted::Unknown(ds),
            Some(t) if &t.agent != from => {
                return StreamRouted::NotYours {
                    stream: ds,
                    expected: t.agent.clone(),
                }
            }
            Some(t) => t.tx.clone(),
        };
        match tx.try_send(TaskEvent::Stream(Box::new(ds))) {
            Ok(()) => StreamRouted::Delivered,
            Err(e) => match e.into_inner() {
                TaskEvent::Stream(ds) => StreamRouted::Unknown(*ds),
                // Not what was sent; nothing to give back.
                TaskEvent::Failed { .. } => StreamRouted::Delivered,
            },
        }
    }

    /// Task `task_id`'s reports of how far its stream is behind go to `gauge`.
    pub fn report_behind(&self, task_id: &str, gauge: Arc<AtomicU64>) {
        if let Some(t) = lock(&self.tasks).get_mut(task_id) {
            t.behind = Some(gauge);
        }
    }

    /// A change stream task's distance behind its source, from `from`, if the task was
    /// assigned to it.
    pub fn task_progress(&self, from: &AgentKey, task_id: &str, behind_bytes: u64) -> Routed {
        match lock(&self.tasks).get(task_id) {
            None => Routed::Unknown,
            Some(t) if &t.agent != from => Routed::NotYours {
                expected: t.agent.clone(),
            },
            Some(t) => {
                if let Some(g) = &t.behind {
                    // `u64::MAX` means "not known yet".
                    g.store(behind_bytes.min(u64::MAX - 1), Ordering::Relaxed);
                }
                Routed::Delivered
            }
        }
    }

    /// Reports a task failure from `from`, if the task was assigned to it.
    pub fn task_failed(
        &self,
        from: &AgentKey,
        task_id: &str,
        message: String,
        retryable: bool,
    ) -> Routed {
        let tx = match lock(&self.tasks).get(task_id) {
            None => return Routed::Unknown,
            Some(t) if &t.agent != from => {
                return Routed::NotYours {
                    expected: t.agent.clone(),
                }
            }
            Some(t) => t.tx.clone(),
        };
        match tx.try_send(TaskEvent::Failed {
            agent_id: from.id.clone(),
            message,
            retryable,
        }) {
            Ok(()) => Routed::Delivered,
            Err(_) => Routed::Unknown,
        }
    }

    /// Plan requests waiting for an answer from `agent`.
    pub fn plans_in_flight(&self, agent: &AgentKey) -> usize {
        lock(&self.plans)
            .values()
            .filter(|p| &p.agent == agent)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(agent: &str) -> Result<Answer, String> {
        Ok(Answer::Plan(Box::new(PlanAnswer {
            agent_id: agent.into(),
            schema: arrow_schema::Schema::empty(),
            splits: Vec::new(),
            estimated_rows: None,
            table: None,
        })))
    }

    #[test]
    fn a_plan_answer_counts_only_from_the_agent_asked() {
        let d = Dispatch::default();
        let asked = AgentKey::new("idc-sh", "a1");
        let (id, mut rx) = d.expect_plan(&asked, 16).unwrap();
        // Same id in another group, another id in the same group: refused.
        for other in [AgentKey::new("evil", "a1"), AgentKey::new("idc-sh", "a2")] {
            assert_eq!(
                d.plan_answered(&other, id, answer(&other.id)),
                Routed::NotYours {
                    expected: asked.clone()
                }
            );
        }
        assert!(rx.try_recv().is_err(), "nothing delivered yet");
        assert_eq!(d.plan_answered(&asked, id, answer("a1")), Routed::Delivered);
        match rx.try_recv().unwrap().unwrap() {
            Answer::Plan(p) => assert_eq!(p.agent_id, "a1"),
            Answer::Tables(_) => panic!("a plan was sent"),
        }
        assert_eq!(d.plan_answered(&asked, id, answer("a1")), Routed::Unknown);
    }

    #[test]
    fn request_ids_are_random_and_plans_per_agent_capped() {
        let d = Dispatch::default();
        let a = AgentKey::new("g", "a");
        let (x, _rx1) = d.expect_plan(&a, 2).unwrap();
        let (y, _rx2) = d.expect_plan(&a, 2).unwrap();
        assert_ne!(x, y);
        assert!(x > 1 << 20 || y > 1 << 20, "not sequential: {x} {y}");
        let e = d.expect_plan(&a, 2).unwrap_err().to_string();
        assert!(
            e.contains("2 plan requests in flight") && e.contains("g/a"),
            "{e}"
        );
        // Another agent has its own allowance.
        d.expect_plan(&AgentKey::new("g", "b"), 2).unwrap();
        d.forget_plan(x);
        assert_eq!(d.plans_in_flight(&a), 1);
        d.expect_plan(&a, 2).unwrap();
    }

    #[test]
    fn a_task_failure_counts_only_from_the_agent_assigned() {
        let d = Dispatch::default();
        let assigned = AgentKey::new("idc-sh", "a1");
        let mut rx = d.expect_task("job-1-s0-a1-x", &assigned);
        assert_eq!(
            d.task_failed(
                &AgentKey::new("evil", "a1"),
                "job-1-s0-a1-x",
                "no".into(),
                false
            ),
            Routed::NotYours {
                expected: assigned.clone()
            }
        );
        assert!(rx.try_recv().is_err());
        assert_eq!(
            d.task_failed(&assigned, "job-1-s0-a1-x", "disk full".into(), false),
            Routed::Delivered
        );
        assert!(
            matches!(rx.try_recv(), Ok(TaskEvent::Failed { message, .. }) if message == "disk full")
        );
        assert_eq!(
            d.task_failed(&assigned, "job-1-s0-a2-x", "x".into(), false),
            Routed::Unknown
        );
        assert_eq!(random_tag().len(), 32);
        assert_ne!(random_tag(), random_tag());
    }

    #[test]
    fn a_streams_distance_counts_only_from_the_agent_assigned() {
        let d = Dispatch::default();
        let assigned = AgentKey::new("idc-sh", "a1");
        let _rx = d.expect_task("job-1-stream-a1-x", &assigned);
        let gauge = Arc::new(AtomicU64::new(u64::MAX));
        // Before the job gave a gauge, a report is taken and goes nowhere.
        assert_eq!(
            d.task_progress(&assigned, "job-1-stream-a1-x", 5),
            Routed::Delivered
        );
        d.report_behind("job-1-stream-a1-x", gauge.clone());
        assert_eq!(
            d.task_progress(&AgentKey::new("evil", "a1"), "job-1-stream-a1-x", 7),
            Routed::NotYours {
                expected: assigned.clone()
            }
        );
        assert_eq!(gauge.load(Ordering::Relaxed), u64::MAX);
        assert_eq!(
            d.task_progress(&assigned, "job-1-stream-a1-x", 4096),
            Routed::Delivered
        );
        assert_eq!(gauge.load(Ordering::Relaxed), 4096);
        // `u64::MAX` would read as "not measured".
        d.task_progress(&assigned, "job-1-stream-a1-x", u64::MAX);
        assert_eq!(gauge.load(Ordering::Relaxed), u64::MAX - 1);
        assert_eq!(
            d.task_progress(&assigned, "job-2-stream-a1-x", 1),
            Routed::Unknown
        );
    }
}
