//! The accept loops: QUIC, and TLS over TCP for agents whose UDP is blocked.
//!
//! Junk must be cheap: quinn drops datagrams that are not QUIC without
//! allocating a connection. Attempts from addresses not yet validated are
//! asked to do a stateless Retry first, so spoofed floods cost one packet
//! each and hold no state. Then [`Admission`](crate::admission) gives the
//! attempt a handshake slot, or refuses it at once (a QUIC
//! CONNECTION_REFUSED, or the TCP connection closed; no TLS work). The slot
//! is held for `handshake_timeout_secs` at most, to complete TLS and the
//! Hello, and given back as soon as the handshake ends: an established
//! session holds none, so `max_agents` alone bounds sessions. Refusals are
//! counted and logged at a bounded rate ([`RefusalLog`](crate::refusals)).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ferry_tunnel::{CloseCause, Connection};
use tokio::net::TcpListener;

use crate::admission::Permit;
use crate::refusals::Reason;
use crate::server::Sessions;
use crate::session::{self, HandshakeError};

pub(crate) async fn accept_loop(shared: Arc<Sessions>, endpoint: quinn::Endpoint) {
    while let Some(incoming) = endpoint.accept().await {
        let remote = incoming.remote_address();
        // Address validation first: one extra round trip for an agent (which
        // connects rarely), and spoofed or blackholed floods never get a slot.
        if !incoming.remote_address_validated() && incoming.may_retry() {
            let _ = incoming.retry();
            continue;
        }
        let permit = match shared.admission.admit(remote.ip()) {
            Ok(p) => p,
            Err(refused) => {
                shared.refused(refused.into(), remote, || "no handshake slot".into());
                incoming.refuse();
                continue;
            }
        };
        let tracker = shared.tasks.clone();
        let shared = shared.clone();
        tracker.spawn(async move {
            let handshake = async {
                let conn = incoming.accept()?.await?;
                Ok::<_, quinn::ConnectionError>(Connection::from(conn))
            };
            establish(shared, remote, handshake, permit).await;
        });
    }
}

/// Accepts agents that fall back to TLS over TCP. The same slots and
/// timeout apply; a TCP connection costs a socket before TLS, so one
/// without a slot is closed at once.
pub(crate) async fn tcp_accept_loop(shared: Arc<Sessions>, listener: TcpListener) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                let local = listener
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
                shared.refused(Reason::Accept, local, || format!("TCP accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match shared.admission.admit(remote.ip()) {
            Ok(p) => p,
            Err(refused) => {
                shared.refused(refused.into(), remote, || {
                    "no handshake slot; TCP connection closed".into()
                });
                continue;
            }
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
            establish(shared, remote, handshake, permit).await;
        });
    }
}

/// Runs TLS (`handshake`) and the Hello within the handshake timeout,
/// holding `permit` only for that long, then serves the session; or counts
/// why the attempt failed.
async fn establish<E>(
    shared: Arc<Sessions>,
    remote: SocketAddr,
    handshake: impl Future<Output = Result<Connection, E>>,
    permit: Permit,
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
    drop(permit);
    match result {
        Ok(Ok((conn, Ok(admitted)))) => session::serve(shared, conn, admitted).await,
        Ok(Ok((conn, Err(e)))) => {
            let transport = conn.transport();
            shared.refused(Reason::Rejected, remote, || {
                format!("agent refused after TLS over {transport}: {e}")
            });
            conn.close(ferry_tunnel::CloseCode::Rejected, &e.to_string());
        }
        Ok(Err(HandshakeError::Connection(CloseCause::Refused(r)))) => {
            shared.refused(Reason::Tls, remote, || {
                format!("agent refused in TLS handshake: {r}")
            });
        }
        Ok(Err(e)) => {
            shared.refused(Reason::Transport, remote, || {
                format!("connection attempt failed: {e}")
            });
        }
        Err(_) => {
            shared.refused(Reason::Timeout, remote, || {
                format!(
                    "handshake not completed within {}s; dropped",
                    timeout.as_secs()
                )
            });
        }
    }
}
