//! Where an agent's answers go: the seam between the sessions with agents
//! and whoever gave the agents work (the jobs).
//!
//! A session handles its own messages (heartbeats, goodbye, the catalog)
//! and hands the rest (answers to plan requests and tasks, and data
//! streams) to an [`AgentRoutes`], which delivers an answer only to work
//! that was sent to the agent answering. Sessions know nothing of jobs.

use ferry_protocol::control::ControlMessage;

use crate::data::DataStream;
use crate::registry::AgentKey;

/// What became of an answer an agent sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routed {
    /// To whoever waits for it.
    Delivered,
    /// Nobody waits for this id (never issued, answered or given up on).
    Unknown,
    /// The id was sent to another agent; the answer was dropped.
    NotYours {
        /// The agent the request or task was sent to.
        expected: AgentKey,
    },
}

/// Where a data stream went; a stream not delivered is given back.
pub enum StreamRouted {
    /// To the task that waits for it.
    Delivered,
    /// No task of that id waits.
    Unknown(DataStream),
    /// The task was assigned to another agent.
    NotYours {
        stream: DataStream,
        expected: AgentKey,
    },
}

/// An answer a router took, for the session's log: what it was (`plan
/// reply`, ...), the id it answered, and where it went.
pub struct Answered {
    pub what: &'static str,
    pub id: String,
    pub routed: Routed,
}

/// Receives what agents send in answer to the work given them.
pub trait AgentRoutes: Send + Sync {
    /// A control message that is not the session's own, from agent `from`
    /// (group and id from its certificate); `None` when it is not an
    /// answer this router takes.
    fn message(&self, from: &AgentKey, msg: ControlMessage) -> Option<Answered>;

    /// A data stream `from` opened.
    fn stream(&self, from: &AgentKey, stream: DataStream) -> StreamRouted;
}
