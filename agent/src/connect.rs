//! One connection attempt: resolve, QUIC + mutual TLS (or TLS over TCP
//! where UDP is blocked), Hello → Welcome.
//!
//! QUIC or TLS/TCP is decided on evidence, in `auto` mode: a QUIC attempt
//! that gets no answer is followed by a bare TCP connect to the broker. If
//! TCP fails too, the broker (or the network) is down, which is no reason to
//! leave QUIC: the attempt fails and the agent retries later. If TCP gets
//! through, the broker is up *now*, so QUIC is tried once more (an attempt
//! that started while a restarting broker was down gets its second chance);
//! only when that gets no answer either is UDP taken to be blocked and the
//! tunnel opened over TLS/TCP. The log says which of these happened.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_certs::{AgentIdentity, CertError};
use ferry_protocol::control::{ControlMessage, RejectCode};
use ferry_protocol::limits::Limits;
use ferry_protocol::version::VersionRange;
use ferry_tunnel::{
    CloseCause, CloseCode, Connection, EndpointError, FrameReader, FrameWriter, StreamError,
};
use tracing::{debug, info, warn};

use crate::catalog::Catalog;
use crate::config::{AgentConfig, ConfigError, FallbackMode};
use crate::session::Session;

/// How long TLS plus Hello/Welcome may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(15);

/// Why an attempt to open the tunnel failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("agent TLS setup: {0}")]
    Tls(#[from] CertError),
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error("cannot resolve broker address `{broker}`: {reason}")]
    Resolve { broker: String, reason: String },
    #[error("cannot start connection to {addr}: {source}")]
    Start {
        addr: SocketAddr,
        source: quinn::ConnectError,
    },
    #[error("broker at {addr}: {cause}")]
    Closed { addr: SocketAddr, cause: CloseCause },
    #[error("broker at {addr} rejected the agent ({code:?}): {message}")]
    Rejected {
        addr: SocketAddr,
        code: RejectCode,
        message: String,
    },
    #[error("broker at {addr}: control stream: {source}")]
    Stream {
        addr: SocketAddr,
        source: StreamError,
    },
    #[error("broker at {addr}: {source}")]
    Protocol {
        addr: SocketAddr,
        source: ferry_protocol::ProtocolError,
    },
    #[error("broker at {addr} answered hello with `{got}`")]
    Unexpected { addr: SocketAddr, got: String },
    #[error("broker at {addr} did not complete the handshake within {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("broker at {addr}: no answer over QUIC within {waited:?} (UDP blocked on the way?)")]
    NoAnswer { addr: SocketAddr, waited: Duration },
    #[error("broker at {addr}: no answer over QUIC within {waited:?}, and TCP to {tcp} failed too ({reason}): the broker or the network is down, which is no reason to leave QUIC")]
    Unreachable {
        addr: SocketAddr,
        waited: Duration,
        tcp: SocketAddr,
        reason: String,
    },
}

impl ConnectError {
    /// A local problem the agent cannot retry its way out of (bad config,
    /// unreadable or invalid own certificate).
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            ConnectError::Config(_) | ConnectError::Tls(_) | ConnectError::Endpoint(_)
        )
    }

    /// A refusal only an operator can fix: retry at the longest delay.
    pub fn needs_operator(&self) -> bool {
        match self {
            ConnectError::Closed { cause, .. } => cause.needs_operator(),
            ConnectError::Rejected { .. } => true,
            _ => self.is_local(),
        }
    }
}

/// Opens tunnels to one broker; keeps one UDP endpoint across attempts.
pub struct Connector {
    config: AgentConfig,
    catalog: Arc<Catalog>,
    endpoint: quinn::Endpoint,
    alpn: Vec<u8>,
    versions: VersionRange,
    /// In `auto` mode, after QUIC got no answer: when QUIC is tried again.
    tcp_until: Mutex<Option<Instant>>,
    /// Why the last TLS/TCP tunnel is not QUIC, for the log.
    tcp_reason: Mutex<String>,
    /// The broker's reconnect spread (ms), from its latest Welcome or
    /// heartbeat ack.
    spread_ms: Arc<AtomicU32>,
}

/// The longest reconnect spread taken from a broker: a hostile one could
/// only delay reconnects, which it can do anyway by not answering; this
/// keeps a typo from parking the agent for days.
const MAX_SPREAD: Duration = Duration::from_secs(600);

impl Connector {
    /// Checks the config and the agent's own certificate (an expired or
    /// not-yet-valid certificate is an error here, before any network I/O).
    pub fn new(config: &AgentConfig) -> Result<Self, ConnectError> {
        Self::with_protocol(config, ferry_protocol::ALPN, VersionRange::ours())
    }

    /// Like [`new`](Self::new) with another ALPN or version range: for
    /// interoperability tests of the broker's refusals.
    pub fn with_protocol(
        config: &AgentConfig,
        alpn: &[u8],
        versions: VersionRange,
    ) -> Result<Self, ConnectError> {
        config.check()?;
        let (tls, identity) = ferry_certs::client_config(&config.tls_files(), &[alpn])?;
        let bind = SocketAddr::new(
            config
                .bind
                .unwrap_or(IpAddr::from(std::net::Ipv4Addr::UNSPECIFIED)),
            0,
        );
        let endpoint = ferry_tunnel::client_endpoint(bind, tls, &config.transport)?;
        debug!(agent = %identity.agent_id, "agent endpoint ready");
        Ok(Self {
            catalog: Arc::new(Catalog::new(config.sources.clone(), config.limits)),
            config: config.clone(),
            endpoint,
            alpn: alpn.to_vec(),
            versions,
            tcp_until: Mutex::new(None),
            tcp_reason: Mutex::new(String::new()),
            spread_ms: Arc::new(AtomicU32::new(0)),
        })
    }

    /// The window the broker asked reconnects to be spread over (zero
    /// until a broker said so).
    pub fn reconnect_spread(&self) -> Duration {
        Duration::from_millis(u64::from(self.spread_ms.load(Ordering::Relaxed))).min(MAX_SPREAD)
    }

    /// Why the latest TLS/TCP tunnel is not over QUIC.
    pub fn tcp_reason(&self) -> String {
        lock(&self.tcp_reason).clone()
    }

    fn set_tcp_reason(&self, reason: String) {
        *lock(&self.tcp_reason) = reason;
    }

    /// Whether a tunnel over TLS/TCP should probe QUIC in the background,
    /// and how often.
    pub fn probe_quic_every(&self) -> Option<Duration> {
        let f = &self.config.tcp_fallback;
        (f.mode == FallbackMode::Auto && f.probe_quic_secs > 0)
            .then(|| Duration::from_secs(f.probe_quic_secs))
    }

    /// The agent's data sources.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The identity in the agent's certificate (re-read from disk).
    pub fn identity(&self) -> Result<AgentIdentity, ConnectError> {
        Ok(ferry_certs::client_config(&self.config.tls_files(), &[&self.alpn])?.1)
    }

    /// One attempt, over QUIC or TLS/TCP as `[tcp_fallback]` says (in
    /// `auto` mode, on the evidence the module docs describe; after a
    /// fallback, reconnects go straight to TLS/TCP for `retry_quic_secs`).
    /// Certificates are re-read from disk each time, so a renewed
    /// certificate is picked up without a restart.
    pub async fn connect(&self) -> Result<Session, ConnectError> {
        let fallback = &self.config.tcp_fallback;
        match fallback.mode {
            FallbackMode::Never => self.connect_quic(HANDSHAKE_TIMEOUT).await,
            FallbackMode::Always => {
                self.set_tcp_reason("configured: tcp_fallback.mode = \"always\"".into());
                self.connect_tcp().await
            }
            FallbackMode::Auto => {
                if let Some(until) = self.tcp_preferred() {
                    let left = until.saturating_duration_since(Instant::now()).as_secs();
                    info!(
                        "QUIC was found blocked recently; connecting over TLS/TCP at {} (reconnects try QUIC again in {left}s)",
                        self.config.broker_tcp(),
                    );
                    self.set_tcp_reason(format!(
                        "QUIC was found blocked recently; QUIC is tried again in {left}s"
                    ));
                    return self.connect_tcp().await;
                }
                let wait = Duration::from_secs(fallback.quic_wait_secs).min(HANDSHAKE_TIMEOUT);
                let addr = match self.connect_quic(wait).await {
                    Err(ConnectError::NoAnswer { addr, .. }) => addr,
                    other => return other,
                };
                // Is the broker there at all? A broker that is down is not
                // a blocked UDP path.
                let tcp = resolve(self.config.broker_tcp()).await?;
                let dial = ferry_tunnel::tcp::dial(tcp, self.config.bind);
                match tokio::time::timeout(wait, dial).await {
                    Ok(Ok(_probe)) => {}
                    Ok(Err(e)) => {
                        return Err(ConnectError::Unreachable {
                            addr,
                            waited: wait,
                            tcp,
                            reason: e.to_string(),
                        })
                    }
                    Err(_) => {
                        return Err(ConnectError::Unreachable {
                            addr,
                            waited: wait,
                            tcp,
                            reason: format!("no answer within {wait:?}"),
                        })
                    }
                }
                info!(
                    "QUIC to {addr} got no answer within {wait:?}, but the broker accepts TCP at {tcp}: trying QUIC once more before falling back"
                );
                match self.connect_quic(wait).await {
                    Err(e @ ConnectError::NoAnswer { .. }) => {
                        warn!("{e}, twice, while TCP to {tcp} gets through: UDP looks blocked on the way; falling back to TLS over TCP");
                        self.set_tcp_reason(format!(
                            "UDP looks blocked: QUIC to {addr} got no answer twice within {wait:?} while TCP to {tcp} got through"
                        ));
                        let session = self.connect_tcp().await?;
                        // Remember only a fallback that worked.
                        self.prefer_tcp_for(Duration::from_secs(fallback.retry_quic_secs));
                        Ok(session)
                    }
                    other => other,
                }
            }
        }
    }

    /// One attempt over QUIC only, for an agent on TLS/TCP probing whether
    /// QUIC gets through now: TLS first, then `ready` is asked whether to
    /// go on; only then is the Hello sent (which makes the broker replace
    /// the agent's other session). `Ok(None)`: QUIC works but `ready` said
    /// no; the connection is closed again.
    pub async fn probe_quic(
        &self,
        ready: impl FnOnce() -> bool,
    ) -> Result<Option<Session>, ConnectError> {
        let wait =
            Duration::from_secs(self.config.tcp_fallback.quic_wait_secs).min(HANDSHAKE_TIMEOUT);
        let (addr, conn, identity) = self.quic_handshake(wait).await?;
        if !ready() {
            CloseCode::Normal.close(&conn, "QUIC probe; the agent is busy");
            return Ok(None);
        }
        let session = self.hello_within(addr, conn, identity).await?;
        self.prefer_tcp_for(Duration::ZERO);
        Ok(Some(session))
    }

    /// Until when reconnects skip QUIC, if they do now.
    fn tcp_preferred(&self) -> Option<Instant> {
        let mut until = lock(&self.tcp_until);
        match *until {
            Some(t) if Instant::now() < t => Some(t),
            _ => {
                *until = None;
                None
            }
        }
    }

    fn prefer_tcp_for(&self, period: Duration) {
        let t = Instant::now().checked_add(period);
        *lock(&self.tcp_until) = t.filter(|_| !period.is_zero());
    }

    /// One attempt over QUIC; the peer must answer within `wait`.
    async fn connect_quic(&self, wait: Duration) -> Result<Session, ConnectError> {
        let (addr, conn, identity) = self.quic_handshake(wait).await?;
        self.hello_within(addr, conn, identity).await
    }

    /// QUIC and TLS, before the Hello.
    async fn quic_handshake(
        &self,
        wait: Duration,
    ) -> Result<(SocketAddr, Connection, AgentIdentity), ConnectError> {
        let (tls, identity) = ferry_certs::client_config(&self.config.tls_files(), &[&self.alpn])?;
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|e| EndpointError::Tls(e.to_string()))?;
        let mut client = quinn::ClientConfig::new(std::sync::Arc::new(quic));
        client.transport_config(
            self.config
                .transport
                .to_quinn()
                .map_err(EndpointError::from)?,
        );
        let addr = resolve(&self.config.broker).await?;
        let server_name = self.config.server_name()?;
        let connecting = self
            .endpoint
            .connect_with(client, addr, &server_name)
            .map_err(|source| ConnectError::Start { addr, source })?;
        let conn = tokio::time::timeout(wait, connecting)
            .await
            .map_err(|_| ConnectError::NoAnswer { addr, waited: wait })?
            .map_err(|e| ConnectError::Closed {
                addr,
                cause: CloseCause::classify(&e),
            })?;
        Ok((addr, conn.into(), identity))
    }

    /// One attempt over TLS on TCP, with the same certificates and ALPN.
    async fn connect_tcp(&self) -> Result<Session, ConnectError> {
        let (tls, identity) = ferry_certs::client_config(&self.config.tls_files(), &[&self.alpn])?;
        let broker = self.config.broker_tcp();
        let addr = resolve(broker).await?;
        let server_name = rustls::pki_types::ServerName::try_from(self.config.server_name()?)
            .map_err(|e| ConfigError::Invalid {
                field: "server_name",
                reason: e.to_string(),
            })?;
        let connecting = ferry_tunnel::tcp::connect(
            addr,
            self.config.bind,
            server_name,
            Arc::new(tls),
            &self.config.transport,
        );
        let conn = tokio::time::timeout(HANDSHAKE_TIMEOUT, connecting)
            .await
            .map_err(|_| ConnectError::Timeout {
                addr,
                timeout: HANDSHAKE_TIMEOUT,
            })?
            .map_err(|cause| ConnectError::Closed { addr, cause })?;
        self.hello_within(addr, conn.into(), identity).await
    }

    async fn hello_within(
        &self,
        addr: SocketAddr,
        conn: Connection,
        identity: AgentIdentity,
    ) -> Result<Session, ConnectError> {
        tokio::time::timeout(HANDSHAKE_TIMEOUT, self.hello(addr, conn, identity))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr,
                timeout: HANDSHAKE_TIMEOUT,
            })?
    }

    async fn hello(
        &self,
        addr: SocketAddr,
        conn: Connection,
        identity: AgentIdentity,
    ) -> Result<Session, ConnectError> {
        let lost = |conn: &Connection, source: StreamError| match conn.close_reason() {
            Some(cause) => ConnectError::Closed { addr, cause },
            None => ConnectError::Stream { addr, source },
        };
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|cause| ConnectError::Closed { addr, cause })?;
        let mut writer = FrameWriter::new(send);
        let mut reader = FrameReader::new(recv, Limits::default().max_control_frame);
        let hello = ControlMessage::Hello {
            versions: self.versions,
            agent_id: identity.agent_id.clone(),
            software: format!("ferry-agent/{}", env!("CARGO_PKG_VERSION")),
            capabilities: vec!["batch".into(), ferry_model::POSTGRES_HASH_CAPABILITY.into()],
        };
        let frame = hello
            .to_frame()
            .map_err(|source| ConnectError::Protocol { addr, source })?;
        writer.send(&frame).await.map_err(|e| lost(&conn, e))?;
        let reply = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => {
                return Err(lost(&conn, StreamError::TruncatedFrame));
            }
            Err(e) => {
                // The stream error usually follows a close; wait briefly for its reason.
                let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
                return Err(lost(&conn, e));
            }
        };
        match ControlMessage::from_frame(&reply)
            .map_err(|source| ConnectError::Protocol { addr, source })?
        {
            ControlMessage::Welcome {
                version,
                session_id,
                agent_id,
                group,
                heartbeat_secs,
                reconnect_spread_ms,
            } => {
                self.spread_ms.store(reconnect_spread_ms, Ordering::Relaxed);
                Ok(Session::start(
                    conn,
                    reader,
                    writer,
                    crate::session::Welcome {
                        version,
                        session_id,
                        agent_id,
                        group,
                        heartbeat_secs,
                    },
                    self.catalog.clone(),
                    self.spread_ms.clone(),
                ))
            }
            ControlMessage::Reject { code, message } => Err(ConnectError::Rejected {
                addr,
                code,
                message,
            }),
            other => Err(ConnectError::Unexpected {
                addr,
                got: format!("{other:?}"),
            }),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each value under these locks is replaced whole; poisoning is moot.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Resolves `host:port`, preferring IPv4 (the endpoint is bound to IPv4).
async fn resolve(broker: &str) -> Result<SocketAddr, ConnectError> {
    let err = |reason: String| ConnectError::Resolve {
        broker: broker.to_string(),
        reason,
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host(broker)
        .await
        .map_err(|e| err(e.to_string()))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .copied()
        .ok_or_else(|| err("no IPv4 address".into()))
}

/// Convenience: one attempt with a fresh connector.
pub async fn connect(config: &AgentConfig) -> Result<Session, ConnectError> {
    Connector::new(config)?.connect().await
}
