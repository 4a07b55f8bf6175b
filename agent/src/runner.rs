//! The agent's main loop: keep a tunnel to the broker, forever.
//!
//! Every failure is retried with [`ferry_tunnel::Backoff`], the delay drawn
//! from a window at least as wide as the broker's reconnect spread (which
//! grows with the number of agents it serves), so a restarted broker sees
//! its agents come back at a pace it can take. Refusals that need an
//! operator (revoked or unknown certificate, rejected hello, superseded by
//! a twin) go straight to the longest delay so a fleet of misconfigured
//! agents does not hammer the broker. Only a local problem at startup (bad
//! config, invalid own certificate) ends the loop.
//!
//! A tunnel over TLS/TCP in `auto` mode probes QUIC in the background and
//! moves to it, once it answers, at a moment no task or plan runs.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ferry_tunnel::{CloseCause, CloseCode, Transport};
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use crate::config::{AgentConfig, FallbackMode};
use crate::connect::{ConnectError, Connector};
use crate::session::Session;

/// How soon a QUIC probe that found the agent busy looks again.
const BUSY_RECHECK: Duration = Duration::from_secs(2);

/// Runs until `shutdown` completes. Returns an error only for a problem
/// found before the first attempt.
pub async fn run(
    config: AgentConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ConnectError> {
    let connector = Connector::new(&config)?;
    let identity = connector.identity()?;
    info!(agent = %identity.agent_id, group = %identity.group, broker = %config.broker, "agent starting");
    // In the background: a source that is down must not keep the tunnel down.
    let catalog = connector.catalog().clone();
    tokio::spawn(async move { catalog.check_logins().await });
    let mut backoff = config.reconnect.backoff();
    tokio::pin!(shutdown);
    loop {
        let attempt = tokio::select! {
            r = connector.connect() => r,
            _ = &mut shutdown => return Ok(()),
        };
        match attempt {
            Ok(session) => {
                if let Served::Shutdown =
                    serve(&connector, &config, session, &mut backoff, &mut shutdown).await
                {
                    return Ok(());
                }
            }
            Err(e) if e.needs_operator() => {
                error!("{e}");
                backoff.saturate();
            }
            Err(e) => warn!("{e}"),
        }
        let spread = connector.reconnect_spread();
        let delay = backoff.next_delay_spread(spread);
        info!(
            delay_ms = delay.as_millis() as u64,
            broker_spread_ms = spread.as_millis() as u64,
            "reconnecting"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}

enum Served {
    /// The tunnel was lost; reconnect.
    Lost,
    /// The agent is stopping.
    Shutdown,
}

/// Keeps `session`, and the QUIC session that replaces it when a probe
/// finds QUIC working again, until the tunnel is lost or `shutdown` comes.
async fn serve<F: Future<Output = ()>>(
    connector: &Connector,
    config: &AgentConfig,
    mut session: Session,
    backoff: &mut ferry_tunnel::Backoff,
    shutdown: &mut Pin<&mut F>,
) -> Served {
    loop {
        backoff.connected();
        log_up(connector, config, &session);
        let probe_every = match session.transport() {
            Transport::TlsTcp => connector.probe_quic_every(),
            Transport::Quic => None,
        };
        let mut next_probe = probe_every.map(|every| Instant::now() + jittered(every));
        let cause = loop {
            let probe_at = next_probe.unwrap_or_else(Instant::now);
            tokio::select! {
                c = session.closed() => break Some(c),
                _ = &mut *shutdown => {
                    session.close("agent shutting down").await;
                    info!("agent stopped");
                    return Served::Shutdown;
                }
                _ = tokio::time::sleep_until(probe_at), if next_probe.is_some() => {
                    let every = probe_every.unwrap_or(BUSY_RECHECK);
                    let probe = tokio::select! {
                        r = connector.probe_quic(|| session.is_idle()) => r,
                        _ = &mut *shutdown => {
                            session.close("agent shutting down").await;
                            info!("agent stopped");
                            return Served::Shutdown;
                        }
                    };
                    match probe {
                        Ok(Some(quic)) => {
                            info!(
                                from = %session.welcome().session_id,
                                to = %quic.welcome().session_id,
                                "QUIC gets through again: the tunnel moved from TLS/TCP to QUIC"
                            );
                            // The broker closed the TLS/TCP session when
                            // the new one said hello.
                            session = quic;
                            break None;
                        }
                        Ok(None) => {
                            debug!("QUIC gets through; the tunnel moves once no task or plan runs");
                            next_probe = Some(Instant::now() + BUSY_RECHECK);
                        }
                        Err(ConnectError::NoAnswer { .. }) => {
                            debug!("QUIC still gets no answer; the tunnel stays on TLS/TCP");
                            next_probe = Some(Instant::now() + jittered(every));
                        }
                        Err(e) => {
                            warn!("QUIC probe failed: {e}; the tunnel stays on TLS/TCP");
                            next_probe = Some(Instant::now() + jittered(every));
                        }
                    }
                }
            }
        };
        // None: moved to QUIC; serve the new session.
        let Some(cause) = cause else { continue };
        match &cause {
            CloseCause::Closed {
                code: CloseCode::Superseded,
                ..
            } => {
                error!("another connection with this agent's identity replaced this one; is the same certificate used twice?");
                backoff.saturate();
            }
            c if c.needs_operator() => {
                error!("tunnel closed by broker: {c}");
                backoff.saturate();
            }
            c => warn!("tunnel lost: {c}"),
        }
        return Served::Lost;
    }
}

fn log_up(connector: &Connector, config: &AgentConfig, session: &Session) {
    let w = session.welcome();
    match session.transport() {
        Transport::Quic => {
            info!(broker = %config.broker, transport = "quic", session_id = w.session_id, version = w.version, "tunnel up")
        }
        Transport::TlsTcp if config.tcp_fallback.mode == FallbackMode::Always => {
            info!(broker = %config.broker_tcp(), transport = "tls-tcp", session_id = w.session_id, version = w.version, "tunnel up (tcp_fallback.mode = \"always\")")
        }
        Transport::TlsTcp => {
            warn!(broker = %config.broker_tcp(), transport = "tls-tcp", session_id = w.session_id, version = w.version, reason = %connector.tcp_reason(), "tunnel up over TLS/TCP; expect less throughput on lossy links (QUIC is probed in the background)")
        }
    }
}

/// `every`, give or take half, so agents that fell back together do not
/// probe together.
fn jittered(every: Duration) -> Duration {
    let ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX).max(2);
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms + ms / 2))
}
