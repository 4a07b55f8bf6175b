//! The accept loop.
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

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::CloseCause;
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
            let timeout = Duration::from_secs(shared.config.limits.handshake_timeout_secs);
            let result = tokio::time::timeout(timeout, async {
                let conn = incoming.accept()?.await?;
                let admitted = session::admit(&shared, &conn).await;
                Ok::<_, HandshakeError>((conn, admitted))
            })
            .await;
            drop(permit);
            match result {
                Ok(Ok((conn, Ok(admitted)))) => session::serve(shared, conn, admitted).await,
                Ok(Ok((conn, Err(e)))) => {
                    shared
                        .stats
                        .refused_handshake
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(%remote, "agent refused: {e}");
                    conn.close(
                        ferry_tunnel::CloseCode::Rejected.varint(),
                        e.to_string().as_bytes(),
                    );
                }
                Ok(Err(HandshakeError::Connection(e))) => {
                    shared.stats.refused_tls.fetch_add(1, Ordering::Relaxed);
                    match CloseCause::classify(&e) {
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
        });
    }
}
