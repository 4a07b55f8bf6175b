//! The agent's main loop: keep a tunnel to the broker, forever.
//!
//! Every failure is retried with [`ferry_tunnel::Backoff`]; refusals that
//! need an operator (revoked or unknown certificate, rejected hello,
//! superseded by a twin) go straight to the longest delay so a fleet of
//! misconfigured agents does not hammer the broker. Only a local problem at
//! startup (bad config, invalid own certificate) ends the loop.

use std::future::Future;

use ferry_tunnel::{CloseCause, CloseCode};
use tracing::{error, info, warn};

use crate::config::AgentConfig;
use crate::connect::{ConnectError, Connector};

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
                backoff.connected();
                let w = session.welcome();
                match session.transport() {
                    ferry_tunnel::Transport::Quic => {
                        info!(broker = %config.broker, transport = "quic", session_id = w.session_id, version = w.version, "tunnel up")
                    }
                    t => {
                        warn!(broker = %config.broker_tcp(), transport = %t, session_id = w.session_id, version = w.version, "tunnel up over TLS/TCP (fallback: QUIC could not get through; expect less throughput on lossy links)")
                    }
                }
                let cause = tokio::select! {
                    c = session.closed() => c,
                    _ = &mut shutdown => {
                        session.close("agent shutting down").await;
                        info!("agent stopped");
                        return Ok(());
                    }
                };
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
            }
            Err(e) if e.needs_operator() => {
                error!("{e}");
                backoff.saturate();
            }
            Err(e) => warn!("{e}"),
        }
        let delay = backoff.next_delay();
        info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}
