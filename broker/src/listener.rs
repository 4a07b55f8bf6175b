//! The accept loops: QUIC, and TLS over TCP for agents whose UDP is blocked.
//!
//! Junk must be cheap: quinn drops datagrams that are not QUIC without
//! allocating a connection. Connection attempts are bounded by a semaphore
//! of `max_handshakes`: beyond it a new attempt is refused at once (a QUIC
//! CONNECTION_REFUSED, no TLS work). Attempts from addresses not yet
//! validated are asked to do a stateless Retry first, so spoofed floods
//! cost one packet each and hold no state. Every admitted handshake has
//! `handshake_timeout_secs` to complete TLS and the Hello, so half-open
//! attempts free their slot quickly. Established tunnels are separate tasks
//! and are not slowed by any of this.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::{CloseCause, Connection};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tracing::{debug, warn};

use crate::server::Shared;
use crate::session::{self, HandshakeError};

pub(crate) async fn accept_loop(shared: Arc<Shared>, endpoint: quinn::Endpoint) {
    let max = shared.config.limits.max_handshakes;
    let slots = Arc::new(Semaphore::new(max));
    while let Some(incoming) = endpoint.accept().await {
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            debug!(remote = %incoming.remote_address(), "handshake limit reached; refusing");
            incoming.refuse();
            continue;
        };
        // Address validation first: one extra round trip for an agent (which
        // connects rarely), and spoofed or blackholed floods never get a slot.
        if !incoming.remote_address_validated() && incoming.may_retry() {
            drop(permit);
            let _ = incoming.retry();
            continue;
        }
        let tracker = shared.tasks.clone();
        let shared = shared.clone();
        tracker.spawn(async move {
            let remote = incoming.remote_address();
            let handshake = async {
                let conn = incoming.accept()?.await?;
                Ok::<_, quinn::ConnectionError>(Connection::from(conn))
            };
            establish(shared, remote, handshake).await;
            drop(permit);
        });
    }
}

/// Accepts agents that fall back to TLS over TCP. The same handshake limit
/// and timeout apply; a TCP connection costs a socket before TLS, so one
/// beyond the limit is closed at once.
pub(crate) async fn tcp_accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let max = shared.config.limits.max_handshakes;
    let slots = Arc::new(Semaphore::new(max));
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                warn!("TCP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            shared.stats.refused_busy.fetch_add(1, Ordering::Relaxed);
            debug!(%remote, "handshake limit reached; refusing TCP connection");
            continue;
        };
        let tracker = shared.tasks.clone();
        let shared = shared.clone();
        tracker.spawn(async move {
            let tls = shared.tcp_tls();
            let settings = shared.config.transport.clone();
            let handshake = async move {
                ferry_tunnel::tcp::accept(tcp, remote, tls, &settings)
                    .await
                    .map(Connection::from)
            };
            establish(shared, remote, handshake).await;
            drop(permit);
        });
    }
}

/// Runs TLS (`handshake`) and the Hello within the handshake timeout, then
/// serves the session, or says why the attempt failed.
async fn establish<E>(
    shared: Arc<Shared>,
    remote: SocketAddr,
    handshake: impl Future<Output = Result<Connection, E>>,
) where
    HandshakeError: From<E>,
{
    let timeout = Duration::from_secs(shared.config.limits.handshake_timeout_secs);
    let result = tokio::time::timeout(timeout, async {
        let conn = handshake.await?;
        let admitted = session::admit(&shared, &conn).await;
        Ok::<_, HandshakeError>((conn, admitted))
    })
    .await;
    match result {
        Ok(Ok((conn, Ok(admitted)))) => session::serve(shared, conn, admitted).await,
        Ok(Ok((conn, Err(e)))) => {
            shared
                .stats
                .refused_handshake
                .fetch_add(1, Ordering::Relaxed);
            warn!(%remote, transport = %conn.transport(), "agent refused: {e}");
            conn.close(ferry_tunnel::CloseCode::Rejected, &e.to_string());
        }
        Ok(Err(HandshakeError::Connection(cause))) => {
            shared.stats.refused_tls.fetch_add(1, Ordering::Relaxed);
            match cause {
                CloseCause::Refused(r) => {
                    warn!(%remote, reason = %r, "agent refused in TLS handshake: {r}")
                }
                other => debug!(%remote, "connection attempt failed: {other}"),
            }
        }
        Ok(Err(e)) => warn!(%remote, "connection attempt failed: {e}"),
        Err(_) => {
            shared.stats.refused_timeout.fetch_add(1, Ordering::Relaxed);
            warn!(%remote, "handshake not completed within {}s; dropped", timeout.as_secs());
        }
    }
}
