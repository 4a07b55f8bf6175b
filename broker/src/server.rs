//! The running broker: QUIC endpoint and TLS/TCP listener with their
//! accept loops, CRL watcher, admin API.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_protocol::limits::Limits as ProtocolLimits;
use ferry_tunnel::endpoint::quic_server_config;
use ferry_tunnel::CloseCode;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::BrokerConfig;
use crate::data::DataHandler;
use crate::registry::Registry;

/// A broker that could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("broker TLS setup failed: {0}")]
    Tls(#[from] ferry_certs::CertError),
    #[error(transparent)]
    Endpoint(#[from] ferry_tunnel::EndpointError),
    #[error("cannot listen for agents over TLS/TCP on {addr}: {source} (set `tcp_listen` to another address or \"off\")")]
    TcpListen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot listen for the admin API on {addr}: {source}")]
    Admin {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("state store: {0}")]
    State(#[from] ferry_state::StateError),
}

/// What the sessions with agents share: the transport side of the broker.
/// It knows agents, not jobs: answers to work and data streams go to
/// [`routes`](Self::routes).
pub(crate) struct Sessions {
    pub config: BrokerConfig,
    pub registry: Registry,
    pub data_handler: DataHandler,
    pub protocol_limits: ProtocolLimits,
    /// Handshake slots.
    pub admission: Arc<crate::admission::Admission>,
    /// Refused attempts, logged at a bounded rate.
    pub refusals: crate::refusals::RefusalLog,
    /// Connection and data-stream tasks, awaited on shutdown.
    pub tasks: TaskTracker,
    /// Where agents' answers to work, and their data streams, go.
    pub routes: Arc<dyn crate::routes::AgentRoutes>,
    /// Durable state; sessions record who connected when.
    pub state: ferry_state::StateStore,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Sees every control frame an agent sends (tests prove with it what
    /// crosses the tunnel).
    pub tap: std::sync::RwLock<Option<ControlTap>>,
    /// TLS configuration of the TCP fallback (replaced when the CRL changes).
    pub tcp_tls: std::sync::RwLock<Arc<rustls::ServerConfig>>,
}

impl Sessions {
    /// Counts (and maybe logs) one refused connection attempt.
    pub(crate) fn refused(
        &self,
        reason: crate::refusals::Reason,
        remote: SocketAddr,
        detail: impl FnOnce() -> String,
    ) {
        self.refusals.refused(&self.metrics, reason, remote, detail);
    }

    /// Handshakes holding a slot now.
    pub(crate) fn handshakes_in_progress(&self) -> usize {
        self.admission.in_progress()
    }

    /// The window, in milliseconds, over which an agent should spread its
    /// reconnect when its session is lost: the agents connected (this one
    /// included) at `limits.reconnect_rate` a second, at most ten minutes.
    pub(crate) fn reconnect_spread_ms(&self) -> u32 {
        let agents = self.registry.len() as u64 + 1;
        let ms = agents * 1000 / u64::from(self.config.limits.reconnect_rate.max(1));
        u32::try_from(ms.min(600_000)).unwrap_or(600_000)
    }

    pub(crate) fn tcp_tls(&self) -> Arc<rustls::ServerConfig> {
        self.tcp_tls
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

pub(crate) fn build_tcp_tls(
    config: &BrokerConfig,
) -> Result<Arc<rustls::ServerConfig>, BrokerError> {
    Ok(Arc::new(ferry_certs::server_config(
        &config.tls.files(),
        &[ferry_protocol::ALPN],
    )?))
}

/// A function given each control frame's payload as it arrives.
pub type ControlTap = Arc<dyn Fn(&[u8]) + Send + Sync>;

impl Sessions {
    /// Shows `frame` to the tap, if one is set; gives it back.
    pub(crate) fn tapped<'f>(
        &self,
        frame: &'f ferry_protocol::frame::Frame,
    ) -> &'f ferry_protocol::frame::Frame {
        let tap = self.tap.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(t) = tap {
            t(&frame.payload);
        }
        frame
    }
}

pub(crate) fn build_quic_config(config: &BrokerConfig) -> Result<quinn::ServerConfig, BrokerError> {
    let tls = ferry_certs::server_config(&config.tls.files(), &[ferry_protocol::ALPN])?;
    let mut quic = quic_server_config(tls, &config.transport)?;
    // Connection attempts queued before the accept loop sees them.
    quic.max_incoming(config.limits.max_handshakes.saturating_mul(2).max(16));
    Ok(quic)
}

/// A running broker. Dropping it does not stop it; call [`Broker::shutdown`].
pub struct Broker {
    shared: Arc<Sessions>,
    hub: Arc<crate::jobs::JobHub>,
    endpoint: quinn::Endpoint,
    tcp_addr: Option<SocketAddr>,
    admin_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Broker {
    /// Opens the state store, binds the QUIC and admin listeners, starts
    /// serving, and picks up the jobs a previous run left unfinished.
    pub async fn start(
        config: BrokerConfig,
        data_handler: DataHandler,
    ) -> Result<Self, BrokerError> {
        config.check()?;
        let admin_token = config.admin_token()?;
        let state = ferry_state::StateStore::open(&config.state_location()).await?;
        let stale = state.close_stale_sessions().await?;
        info!(state = %state.location(), backend = %state.backend(), stale_sessions = stale, "state store open");
        let quic = build_quic_config(&config)?;
        // Keyed by the broker's private key: after a restart, agents of the
        // old process get a stateless reset and reconnect at once.
        let reset_secret = std::fs::read(&config.tls.key).ok();
        let endpoint = ferry_tunnel::server_endpoint(config.listen, quic, reset_secret.as_deref())?;
        let tcp_tls = build_tcp_tls(&config)?;
        let tcp = match config.tcp_listen_addr()? {
            Some(mut addr) => {
                // On port 0 the fallback follows the port QUIC got, when free.
                if addr.port() == 0 && addr.ip() == config.listen.ip() {
                    if let Ok(quic) = endpoint.local_addr() {
                        addr.set_port(quic.port());
                    }
                }
                let listener = match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(_) if config.tcp_listen.is_none() && config.listen.port() == 0 => {
                        addr.set_port(0);
                        tokio::net::TcpListener::bind(addr)
                            .await
                            .map_err(|source| BrokerError::TcpListen { addr, source })?
                    }
                    Err(source) => return Err(BrokerError::TcpListen { addr, source }),
                };
                Some(listener)
            }
            None => None,
        };
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let admin = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .map_err(|source| BrokerError::Admin {
                addr: config.admin_listen,
                source,
            })?;
        let admin_addr = admin.local_addr().map_err(|source| BrokerError::Admin {
            addr: config.admin_listen,
            source,
        })?;
        let admission = crate::admission::Admission::new(&config.limits);
        let registry = Registry::new();
        let tasks_tracker = TaskTracker::new();
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let hub = Arc::new(crate::jobs::JobHub {
            jobs: crate::jobs::Jobs::new(state.clone()),
            dispatch: Arc::default(),
            registry: registry.clone(),
            state: state.clone(),
            metrics: metrics.clone(),
            tasks: tasks_tracker.clone(),
            jobs_dir: config.jobs_dir.clone(),
            max_plans_per_agent: config.limits.max_plans_per_agent,
        });
        let shared = Arc::new(Sessions {
            config,
            registry,
            data_handler,
            protocol_limits: ProtocolLimits::default(),
            admission,
            refusals: crate::refusals::RefusalLog::default(),
            tasks: tasks_tracker,
            routes: hub.clone(),
            state,
            metrics,
            tap: std::sync::RwLock::new(None),
            tcp_tls: std::sync::RwLock::new(tcp_tls),
        });
        let admin_state = crate::admin::AdminState {
            sessions: shared.clone(),
            hub: hub.clone(),
        };
        let mut tasks = vec![
            tokio::spawn(crate::listener::accept_loop(
                shared.clone(),
                endpoint.clone(),
            )),
            tokio::spawn(crate::revocation::watch(shared.clone(), endpoint.clone())),
            tokio::spawn({
                let app = crate::admin::router(admin_state, admin_token, admin_addr);
                async move {
                    if let Err(e) = axum::serve(admin, app).await {
                        tracing::error!("admin API stopped: {e}");
                    }
                }
            }),
        ];
        if let Some(listener) = tcp {
            tasks.push(tokio::spawn(crate::listener::tcp_accept_loop(
                shared.clone(),
                listener,
            )));
        }
        let local = endpoint.local_addr().ok();
        info!(listen = ?local, tcp_listen = ?tcp_addr, admin = %admin_addr, "broker listening");
        let resumed = crate::jobs::resume_unfinished(&hub).await?;
        if resumed > 0 {
            info!(jobs = resumed, "picked up unfinished jobs");
        }
        Ok(Self {
            shared,
            hub,
            endpoint,
            tcp_addr,
            admin_addr,
            tasks,
        })
    }

    /// The TCP address of the TLS/TCP fallback, if it listens.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The UDP address agents connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.endpoint
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// The admin API's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Connected agents.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Submitted jobs.
    pub fn jobs(&self) -> &crate::jobs::Jobs {
        &self.hub.jobs
    }

    /// Starts the job `text` (YAML or JSON; `${vars}` from `vars`, which
    /// are kept with the job so a resumed run sees the same values).
    /// `compression` overrides the job's `setting.compression`.
    pub async fn submit(
        &self,
        text: &str,
        vars: std::collections::BTreeMap<String, String>,
        compression: Option<ferry_protocol::data::Compression>,
    ) -> Result<String, crate::jobs::SubmitError> {
        crate::jobs::submit(&self.hub, text, vars, compression).await
    }

    /// Hands every control frame agents send from now on to `tap`.
    pub fn tap_control(&self, tap: ControlTap) {
        *self.shared.tap.write().unwrap_or_else(|p| p.into_inner()) = Some(tap);
    }

    /// The broker's metrics in the OpenMetrics text format.
    pub fn metrics_text(&self) -> String {
        crate::admin::render_metrics(&crate::admin::AdminState {
            sessions: self.shared.clone(),
            hub: self.hub.clone(),
        })
    }

    /// Re-reads the CRL now (the watcher also does this on its own).
    pub fn reload_revocations(&self) -> usize {
        crate::revocation::reload(&self.shared, &self.endpoint)
    }

    /// Closes every session (agents see "broker shutting down" and
    /// reconnect later), stops listening and waits for its tasks, so the
    /// UDP port is free again when this returns.
    pub async fn shutdown(self) {
        let Broker {
            shared,
            hub,
            endpoint,
            tasks,
            ..
        } = self;
        hub.jobs.stop_all();
        shared
            .registry
            .close_all(CloseCode::ShuttingDown, "broker shutting down");
        endpoint.close(CloseCode::ShuttingDown.varint(), b"broker shutting down");
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        shared.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), shared.tasks.wait()).await;
        shared.registry.clear();
        let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
        let addr = endpoint.local_addr().ok();
        drop(endpoint);
        drop(shared);
        drop(hub);
        // quinn's endpoint driver closes the socket the next time it runs,
        // after the last handle is gone; wait for that, so a broker started
        // right after this one (same process, same port) can bind.
        if let Some(addr) = addr {
            for _ in 0..200 {
                if std::net::UdpSocket::bind(addr).is_ok() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        info!("broker stopped");
    }
}
