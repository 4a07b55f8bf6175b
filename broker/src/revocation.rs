//! Reloads the certificate revocation list while the broker runs.
//!
//! The CRL file is polled (mtime and size) every `crl_poll_secs`; polling
//! needs no platform-specific watcher and a few stat calls a second cost
//! nothing. On a change the TLS config is rebuilt (new handshakes see the
//! new list at once) and every live session whose certificate serial is now
//! revoked is closed with `CloseCode::Revoked`. A CRL that fails to load
//! (say, half-written by hand) keeps the previous one in force and is
//! reported; `ferry certs revoke` writes it atomically.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tracing::{error, info, warn};

use crate::server::{build_quic_config, build_tcp_tls, Sessions};

fn stamp(path: &std::path::Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

pub(crate) async fn watch(shared: Arc<Sessions>, endpoint: quinn::Endpoint) {
    let path = shared.config.tls.crl.clone();
    let every = Duration::from_secs(shared.config.tls.crl_poll_secs);
    let mut last = stamp(&path);
    loop {
        tokio::time::sleep(every).await;
        let now = stamp(&path);
        if now == last {
            continue;
        }
        last = now;
        reload(&shared, &endpoint);
    }
}

/// Applies the CRL file now; returns the number of sessions closed.
pub(crate) fn reload(shared: &Sessions, endpoint: &quinn::Endpoint) -> usize {
    let path = &shared.config.tls.crl;
    let revoked = match ferry_certs::revoked_serials(path) {
        Ok(r) => r,
        Err(e) => {
            error!(crl = %path.display(), "revocation list not reloaded, previous one stays in force: {e}");
            return 0;
        }
    };
    match build_quic_config(&shared.config).and_then(|q| Ok((q, build_tcp_tls(&shared.config)?))) {
        Ok((quic, tcp)) => {
            endpoint.set_server_config(Some(quic));
            *shared.tcp_tls.write().unwrap_or_else(|p| p.into_inner()) = tcp;
        }
        Err(e) => {
            error!(crl = %path.display(), "TLS config not rebuilt, previous one stays in force: {e}");
            return 0;
        }
    }
    let dropped = shared.registry.close_revoked(&revoked);
    for a in &dropped {
        warn!(agent = %a.agent_id, serial = %a.certificate_serial, "certificate revoked; session closed");
    }
    info!(crl = %path.display(), revoked = revoked.len(), closed = dropped.len(), "revocation list reloaded");
    dropped.len()
}
