//! The control-stream protocol with one agent.
//!
//! Order: TLS (client certificate required) → the agent opens the control
//! stream and sends `Hello` → the broker checks the protocol version and
//! that the claimed agent id is the one in the certificate → `Welcome` (or
//! `Reject` and close) → registration (an older session of the same agent is
//! closed at once) → heartbeats until the connection ends. A data stream
//! goes to the task it names if that task was assigned to *this* agent
//! (group and id), is refused if it was assigned to another, and goes to the
//! [`DataHandler`](crate::DataHandler) if no task has that id; plan replies
//! and task failures likewise count only from the agent asked.

use std::sync::Arc;
use std::time::Duration;

use ferry_certs::AgentIdentity;
use ferry_protocol::control::{ControlMessage, RejectCode};
use ferry_protocol::version::{negotiate, VersionRange};
use ferry_tunnel::{CloseCause, CloseCode, Connection, FrameReader, FrameWriter, StreamError};
use tracing::{debug, info, warn};

use crate::data::DataStream;
use crate::registry::AgentKey;
use crate::routes::{Routed, StreamRouted};
use crate::server::Sessions;

/// Heartbeat interval the broker asks agents for.
pub const HEARTBEAT_SECS: u32 = 10;

/// Why a connection was not admitted after TLS succeeded.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("peer presented no usable certificate: {0}")]
    Identity(String),
    #[error("control stream: {0}")]
    Stream(#[from] StreamError),
    #[error("connection lost during handshake: {0}")]
    Connection(#[from] CloseCause),
    #[error("first control message must be hello, got {0}")]
    NotHello(String),
    #[error(
        "no common protocol version: agent speaks {}..={}, broker speaks {}..={}",
        theirs.min, theirs.max, ours.min, ours.max
    )]
    Version {
        theirs: VersionRange,
        ours: VersionRange,
    },
    #[error("agent claims id `{claimed}` but its certificate says `{actual}`")]
    IdentityMismatch { claimed: String, actual: String },
    #[error(transparent)]
    Protocol(#[from] ferry_protocol::ProtocolError),
    #[error(transparent)]
    Full(#[from] crate::registry::RegistryFull),
}

impl From<quinn::ConnectionError> for HandshakeError {
    fn from(e: quinn::ConnectionError) -> Self {
        HandshakeError::Connection(CloseCause::classify(&e))
    }
}

impl HandshakeError {
    fn reject_code(&self) -> Option<RejectCode> {
        match self {
            HandshakeError::NotHello(_) => Some(RejectCode::NotFirstMessage),
            HandshakeError::Version { .. } => Some(RejectCode::UnsupportedVersion),
            HandshakeError::IdentityMismatch { .. } => Some(RejectCode::IdentityMismatch),
            HandshakeError::Protocol(_) => Some(RejectCode::Malformed),
            HandshakeError::Full(_) => Some(RejectCode::ShuttingDown),
            _ => None,
        }
    }
}

/// The agent's identity, from the certificate it presented in TLS.
pub fn peer_identity(conn: &Connection) -> Result<AgentIdentity, HandshakeError> {
    let chain = conn
        .peer_certificates()
        .ok_or_else(|| HandshakeError::Identity("no certificate".into()))?;
    let leaf = chain
        .first()
        .ok_or_else(|| HandshakeError::Identity("empty certificate chain".into()))?;
    ferry_certs::agent_identity(leaf).map_err(|e| HandshakeError::Identity(e.to_string()))
}

/// An admitted agent, after `Welcome` was sent.
pub(crate) struct Admitted {
    pub identity: AgentIdentity,
    pub session_id: u64,
    pub version: u16,
    /// Optional features the agent said it supports.
    pub capabilities: Vec<String>,
    pub reader: FrameReader,
    pub writer: FrameWriter,
}

/// Runs the control-stream handshake on an established connection.
pub(crate) async fn admit(
    shared: &Sessions,
    conn: &Connection,
) -> Result<Admitted, HandshakeError> {
    let identity = peer_identity(conn)?;
    let (send, recv) = conn.accept_bi().await?;
    let mut reader = FrameReader::new(recv, shared.protocol_limits.max_control_frame);
    let mut writer = FrameWriter::new(send);
    match hello(&identity, &mut reader).await {
        Ok((version, capabilities)) => {
            let session_id = shared.registry.next_session_id();
            let welcome = ControlMessage::Welcome {
                version,
                session_id,
                agent_id: identity.agent_id.clone(),
                group: identity.group.clone(),
                heartbeat_secs: HEARTBEAT_SECS,
                reconnect_spread_ms: shared.reconnect_spread_ms(),
            };
            writer.send(&welcome.to_frame()?).await?;
            Ok(Admitted {
                identity,
                session_id,
                version,
                capabilities,
                reader,
                writer,
            })
        }
        Err(e) => {
            if let Some(code) = e.reject_code() {
                let reject = ControlMessage::Reject {
                    code,
                    message: e.to_string(),
                };
                if let Ok(frame) = reject.to_frame() {
                    let _ = writer.send(&frame).await;
                    let _ = writer.finish();
                }
                // Give the Reject a moment to leave before the close.
                let _ = tokio::time::timeout(Duration::from_millis(200), writer.stream().stopped())
                    .await;
                CloseCode::Rejected.close(conn, &e.to_string());
            }
            Err(e)
        }
    }
}

async fn hello(
    identity: &AgentIdentity,
    reader: &mut FrameReader,
) -> Result<(u16, Vec<String>), HandshakeError> {
    let frame = reader.require().await?;
    let msg = ControlMessage::from_frame(&frame)?;
    let ControlMessage::Hello {
        versions,
        agent_id,
        capabilities,
        ..
    } = msg
    else {
        return Err(HandshakeError::NotHello(msg.type_name().to_string()));
    };
    let ours = VersionRange::ours();
    let version = negotiate(ours, versions).ok_or(HandshakeError::Version {
        theirs: versions,
        ours,
    })?;
    if agent_id != identity.agent_id {
        return Err(HandshakeError::IdentityMismatch {
            claimed: agent_id,
            actual: identity.agent_id.clone(),
        });
    }
    Ok((version, capabilities))
}

/// Serves an admitted session until the connection ends.
pub(crate) async fn serve(shared: Arc<Sessions>, conn: Connection, admitted: Admitted) {
    let Admitted {
        identity,
        session_id,
        version,
        capabilities,
        mut reader,
        mut writer,
    } = admitted;
    let agent = identity.agent_id.clone();
    // Plan replies, task reports and data streams are accepted only for
    // work sent to this key (group and id from the certificate).
    let key = AgentKey::of(&identity);
    let remote = conn.remote_address();
    // Open data streams of this connection, each holding a read buffer.
    let max_streams = shared.config.limits.max_data_streams;
    let stream_slots = Arc::new(tokio::sync::Semaphore::new(max_streams));
    let (outbox, mut outgoing) = tokio::sync::mpsc::channel::<ControlMessage>(64);
    match shared.registry.register(
        &identity,
        crate::registry::Session {
            session_id,
            protocol_version: version,
            capabilities,
        },
        conn.clone(),
        outbox,
        shared.config.limits.max_agents,
    ) {
        Ok(Some(old)) if old.transport != conn.transport() => info!(
            agent = %agent, session_id, old_session = old.session_id, from = %old.transport, to = %conn.transport(),
            "agent moved to another transport; closed its previous session"
        ),
        Ok(Some(old)) => warn!(
            agent = %agent, session_id, old_session = old.session_id, old_remote = %old.remote_addr,
            "agent connected again; closed its previous session (newest wins)"
        ),
        Ok(None) => {}
        Err(e) => {
            warn!(agent = %agent, %remote, "{e}");
            CloseCode::Rejected.close(&conn, &e.to_string());
            return;
        }
    }
    let transport = conn.transport();
    shared.metrics.session_opened(transport.label());
    // Why an agent uses TLS/TCP (configured, or UDP found blocked) is in
    // the agent's own log; the broker cannot tell.
    info!(agent = %agent, group = %identity.group, %remote, %transport, session_id, version, serial = %identity.serial, "agent connected");
    let identity = Arc::new(identity);
    // The session's row in the state store, written when the catalog
    // arrives (right after the handshake) so it lists the sources.
    let mut stored: Option<i64> = None;

    let cause = loop {
        tokio::select! {
            frame = reader.next() => match frame {
                Ok(Some(frame)) => match ControlMessage::from_frame(shared.tapped(&frame)) {
                    Ok(ControlMessage::Heartbeat { seq, sent_unix_ms }) => {
                        shared.registry.heartbeat(&key, session_id);
                        let ack = ControlMessage::HeartbeatAck {
                            seq,
                            sent_unix_ms,
                            reconnect_spread_ms: shared.reconnect_spread_ms(),
                        };
                        if let Ok(f) = ack.to_frame() {
                            if let Err(e) = writer.send(&f).await {
                                debug!(agent = %agent, "heartbeat ack not sent: {e}");
                            }
                        }
                    }
                    Ok(ControlMessage::Goodbye { reason }) => {
                        info!(agent = %agent, session_id, %reason, "agent said goodbye");
                        CloseCode::Normal.close(&conn, "goodbye");
                        break CloseCause::LocallyClosed;
                    }
                    Ok(ControlMessage::Catalog { sources }) => {
                        info!(agent = %agent, sources = %sources.iter().map(|s| format!("{}({})", s.name, s.kind)).collect::<Vec<_>>().join(", "), "agent's data sources");
                        if stored.is_none() {
                            stored = record_session(&shared, &identity, remote, &sources).await;
                        }
                        shared.registry.set_sources(&key, session_id, sources);
                    }
                    Ok(other) => {
                        let name = other.type_name();
                        match shared.routes.message(&key, other) {
                            Some(a) => refused_answer(&shared, &key, remote, a.what, &a.id, &a.routed),
                            None => debug!(agent = %agent, "ignoring control message {name}"),
                        }
                    }
                    Err(e) => {
                        warn!(agent = %agent, session_id, "protocol violation on control stream: {e}");
                        CloseCode::ProtocolViolation.close(&conn, &e.to_string());
                        break CloseCause::LocallyClosed;
                    }
                },
                Ok(None) => {
                    CloseCode::ProtocolViolation.close(&conn, "control stream finished");
                    break CloseCause::LocallyClosed;
                }
                Err(e) => {
                    // A read error follows a connection loss; report that instead.
                    let cause = conn.closed().await;
                    debug!(agent = %agent, "control stream ended: {e}");
                    break cause;
                }
            },
            Some(msg) = outgoing.recv() => match msg.to_frame() {
                Ok(f) => {
                    if let Err(e) = writer.send(&f).await {
                        debug!(agent = %agent, "control message not sent: {e}");
                    }
                }
                Err(e) => warn!(agent = %agent, "cannot encode {}: {e}", msg.type_name()),
            },
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let Ok(slot) = stream_slots.clone().try_acquire_owned() else {
                        warn!(agent = %key, %remote, max_data_streams = max_streams, "data stream reset: the agent has limits.max_data_streams open already");
                        shared.metrics.error("data_stream_cap");
                        crate::data::reset(send, recv);
                        continue;
                    };
                    let tracker = shared.tasks.clone();
                    let shared = shared.clone();
                    let identity = identity.clone();
                    let key = key.clone();
                    tracker.spawn(async move {
                        match DataStream::open(identity, send, recv, shared.protocol_limits, Some(slot)).await {
                            Ok(ds) => match shared.routes.stream(&key, ds) {
                                StreamRouted::Delivered => {}
                                StreamRouted::Unknown(ds) => (shared.data_handler)(ds),
                                StreamRouted::NotYours { stream, expected } => {
                                    shared.metrics.error("foreign_answer");
                                    warn!(agent = %key, %remote, task = %stream.header().task_id, assigned_to = %expected, "data stream refused: the task was assigned to another agent");
                                    crate::data::refuse_unexpected(stream).await;
                                }
                            },
                            Err(e) => warn!(agent = %key, %remote, "data stream refused: {e}"),
                        }
                    });
                }
                Err(cause) => break cause,
            },
        }
    };
    let still_current = shared.registry.unregister(&key, session_id);
    if stored.is_none() {
        stored = record_session(&shared, &identity, remote, &[]).await;
    }
    if let Some(id) = stored {
        if let Err(e) = shared
            .state
            .agent_disconnected(id, &cause.to_string())
            .await
        {
            warn!(agent = %agent, "state store: recording the session's end: {e}");
        }
    }
    match &cause {
        CloseCause::Closed {
            code: CloseCode::Superseded,
            ..
        }
        | CloseCause::LocallyClosed
            if !still_current =>
        {
            info!(agent = %agent, session_id, "session replaced by a newer one");
        }
        _ => info!(agent = %agent, session_id, %remote, cause = %cause, "agent disconnected"),
    }
}

/// Logs an answer that was not delivered: `what` (`plan reply`, ...) for
/// `id` from `from`.
fn refused_answer(
    shared: &Sessions,
    from: &AgentKey,
    remote: std::net::SocketAddr,
    what: &str,
    id: &str,
    routed: &Routed,
) {
    match routed {
        Routed::Delivered => {}
        Routed::Unknown => {
            warn!(agent = %from, %remote, id, "{what} dropped: nothing sent to this agent waits for it")
        }
        Routed::NotYours { expected } => {
            shared.metrics.error("foreign_answer");
            warn!(agent = %from, %remote, id, sent_to = %expected, "{what} refused: it was sent to another agent")
        }
    }
}

async fn record_session(
    shared: &Sessions,
    identity: &AgentIdentity,
    remote: std::net::SocketAddr,
    sources: &[ferry_protocol::control::SourceInfo],
) -> Option<i64> {
    let names = serde_json::to_string(sources).unwrap_or_else(|_| "[]".into());
    match shared
        .state
        .agent_connected(
            &identity.agent_id,
            &identity.group,
            &remote.to_string(),
            &names,
        )
        .await
    {
        Ok(id) => Some(id),
        Err(e) => {
            warn!(agent = %identity.agent_id, "state store: recording the session: {e}");
            None
        }
    }
}
