//! Live agent sessions.
//!
//! One session per agent, keyed by [`AgentKey`]: group *and* id from the
//! certificate, so `a1` of group X and `a1` of group Y are two agents. When
//! an agent connects again while an older session of the same key is still
//! registered, the **newest wins**: the old
//! connection is closed at once with `CloseCode::Superseded` instead of
//! waiting for its idle timeout. This is what a reconnecting agent needs
//! (its old path is usually dead already: NAT rebinding, a restarted
//! process). Two live processes sharing one certificate would keep
//! superseding each other; the agent backs off at its longest delay on
//! `Superseded` and both sides log it, so an operator sees the duplicate.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferry_certs::AgentIdentity;
use ferry_protocol::control::{ControlMessage, SourceInfo};
use ferry_tunnel::{CloseCode, Connection, Transport};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// Who an agent is: its group and id, both from its certificate. Agent ids
/// are unique only within a group, so everything the broker keeps per agent
/// (sessions, plan requests, tasks) is keyed by both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentKey {
    pub group: String,
    pub id: String,
}

impl AgentKey {
    pub fn new(group: impl Into<String>, id: impl Into<String>) -> Self {
        Self {
            group: group.into(),
            id: id.into(),
        }
    }

    /// The key of the agent that presented `identity`.
    pub fn of(identity: &AgentIdentity) -> Self {
        Self::new(identity.group.clone(), identity.agent_id.clone())
    }
}

impl fmt::Display for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.group, self.id)
    }
}

/// What the broker knows of one connected agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentInfo {
    pub agent_id: String,
    pub group: String,
    pub session_id: u64,
    pub remote_addr: SocketAddr,
    /// `quic`, or `tls-tcp` when the agent fell back to TLS over TCP.
    pub transport: Transport,
    #[serde(with = "time::serde::rfc3339")]
    pub connected_since: OffsetDateTime,
    pub protocol_version: u16,
    pub certificate_serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub certificate_not_after: OffsetDateTime,
    pub rtt_ms: f64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_heartbeat: Option<OffsetDateTime>,
    /// Data sources the agent offers (names and kinds only).
    pub sources: Vec<SourceInfo>,
    /// Optional features the agent said it supports in its `Hello`.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

struct Entry {
    info: AgentInfo,
    connection: Connection,
    /// Control messages to the session's control stream.
    outbox: mpsc::Sender<ControlMessage>,
}

/// What the handshake settled for a new session.
pub struct Session {
    pub session_id: u64,
    pub protocol_version: u16,
    /// Optional features the agent said it supports.
    pub capabilities: Vec<String>,
}

/// A live agent session that can be sent control messages.
#[derive(Clone)]
pub struct AgentHandle {
    /// Group and id: answers are accepted from this agent only.
    pub key: AgentKey,
    pub agent_id: String,
    pub session_id: u64,
    pub outbox: mpsc::Sender<ControlMessage>,
    /// Optional features the agent supports.
    pub capabilities: Vec<String>,
}

/// The registry of live sessions; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<AgentKey, Entry>>>,
    next_session: Arc<AtomicU64>,
}

/// A registration refused by the registry.
#[derive(Debug, thiserror::Error)]
#[error("too many agents connected ({0}); refusing a new one")]
pub struct RegistryFull(pub usize);

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// Session ids start at the clock (milliseconds since 1970, times 1024),
    /// so a restarted broker does not hand out the ids of its previous run
    /// again (that would take over 1024 sessions a millisecond), and they
    /// stay below 2^53, exact in JSON, for two more centuries.
    pub fn new() -> Self {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            inner: Arc::default(),
            next_session: Arc::new(AtomicU64::new(ms << 10)),
        }
    }

    /// A fresh session id (unique for this broker, across restarts).
    pub fn next_session_id(&self) -> u64 {
        self.next_session.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers a session; an older session of the same agent is closed at
    /// once and its info returned.
    pub fn register(
        &self,
        identity: &AgentIdentity,
        session: Session,
        connection: Connection,
        outbox: mpsc::Sender<ControlMessage>,
        max_agents: usize,
    ) -> Result<Option<AgentInfo>, RegistryFull> {
        let Session {
            session_id,
            protocol_version,
            capabilities,
        } = session;
        let info = AgentInfo {
            agent_id: identity.agent_id.clone(),
            group: identity.group.clone(),
            session_id,
            remote_addr: connection.remote_address(),
            transport: connection.transport(),
            connected_since: OffsetDateTime::now_utc(),
            protocol_version,
            certificate_serial: identity.serial.clone(),
            certificate_not_after: identity.not_after,
            rtt_ms: 0.0,
            last_heartbeat: None,
            sources: Vec::new(),
            capabilities,
        };
        let key = AgentKey::of(identity);
        let old = {
            let mut map = self.lock();
            if !map.contains_key(&key) && map.len() >= max_agents {
                return Err(RegistryFull(map.len()));
            }
            map.insert(
                key,
                Entry {
                    info,
                    connection,
                    outbox,
                },
            )
        };
        Ok(old.map(|old| {
            CloseCode::Superseded.close(
                &old.connection,
                &format!("superseded by session {session_id}"),
            );
            old.info
        }))
    }

    /// Removes the session if it is still the registered one (a newer
    /// session of the same agent stays).
    pub fn unregister(&self, agent: &AgentKey, session_id: u64) -> bool {
        let mut map = self.lock();
        if map.get(agent).map(|e| e.info.session_id) == Some(session_id) {
            map.remove(agent);
            true
        } else {
            false
        }
    }

    /// Records a heartbeat.
    pub fn heartbeat(&self, agent: &AgentKey, session_id: u64) {
        if let Some(e) = self.lock().get_mut(agent) {
            if e.info.session_id == session_id {
                e.info.last_heartbeat = Some(OffsetDateTime::now_utc());
            }
        }
    }

    /// Records the data sources a session advertised.
    pub fn set_sources(&self, agent: &AgentKey, session_id: u64, sources: Vec<SourceInfo>) {
        if let Some(e) = self.lock().get_mut(agent) {
            if e.info.session_id == session_id {
                e.info.sources = sources;
            }
        }
    }

    /// Live agents of `group` that offer data source `datasource`, by id.
    pub fn offering(&self, group: &str, datasource: &str) -> Vec<AgentHandle> {
        let map = self.lock();
        let mut v: Vec<AgentHandle> = map
            .iter()
            .filter(|(_, e)| {
                e.info.group == group && e.info.sources.iter().any(|s| s.name == datasource)
            })
            .map(|(k, e)| AgentHandle {
                key: k.clone(),
                agent_id: e.info.agent_id.clone(),
                session_id: e.info.session_id,
                outbox: e.outbox.clone(),
                capabilities: e.info.capabilities.clone(),
            })
            .collect();
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
    }

    /// Whether any agent of `group` is connected (for error messages).
    pub fn group_agents(&self, group: &str) -> usize {
        self.lock()
            .values()
            .filter(|e| e.info.group == group)
            .count()
    }

    /// Closes every session whose certificate serial is in `revoked`;
    /// returns the agents dropped.
    pub fn close_revoked(&self, revoked: &std::collections::HashSet<String>) -> Vec<AgentInfo> {
        let map = self.lock();
        let mut dropped = Vec::new();
        for e in map.values() {
            if revoked.contains(&e.info.certificate_serial) {
                CloseCode::Revoked.close(&e.connection, "certificate revoked");
                dropped.push(e.info.clone());
            }
        }
        dropped
    }

    /// Closes every session (broker shutdown).
    pub fn close_all(&self, code: CloseCode, reason: &str) {
        for e in self.lock().values() {
            code.close(&e.connection, reason);
        }
    }

    /// Forgets every session (after they were closed), releasing their
    /// connection handles.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// A snapshot of the connected agents, sorted by id then group, with current
    /// address (it changes on migration) and RTT.
    pub fn list(&self) -> Vec<AgentInfo> {
        let map = self.lock();
        let mut v: Vec<AgentInfo> = map
            .values()
            .map(|e| {
                let mut i = e.info.clone();
                i.remote_addr = e.connection.remote_address();
                i.rtt_ms = e.connection.rtt().as_secs_f64() * 1000.0;
                i
            })
            .collect();
        v.sort_by(|a, b| (&a.agent_id, &a.group).cmp(&(&b.agent_id, &b.group)));
        v
    }

    /// The live connection of an agent.
    pub fn connection(&self, agent: &AgentKey) -> Option<Connection> {
        self.lock().get(agent).map(|e| e.connection.clone())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentKey, Entry>> {
        // A panic while holding the lock leaves a consistent map (every
        // operation is a single insert/remove), so poisoning is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
