//! Building quinn endpoints from rustls configurations.
//!
//! TLS verification is configured by `ferry-certs`, whose builders require a
//! CA in every case; this module only adds QUIC on top. There is no way to
//! get an endpoint here without a complete rustls config.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig, TokioRuntime};
use socket2::{Domain, Protocol, Socket, Type};

use crate::settings::{SettingsError, TransportSettings};

/// UDP socket buffer size asked of the kernel. Larger buffers absorb bursts
/// at high rates; the kernel may cap it (net.core.rmem_max), which is fine.
const SOCKET_BUFFER: usize = 8 << 20;

/// Failure to set up an endpoint.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("cannot bind UDP socket on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS configuration unusable for QUIC: {0}")]
    Tls(String),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// The quinn server configuration for `tls` (which must be TLS 1.3).
pub fn quic_server_config(
    tls: rustls::ServerConfig,
    settings: &TransportSettings,
) -> Result<ServerConfig, EndpointError> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(settings.to_quinn()?);
    // Agents behind NAT may change address; QUIC migration keeps the session.
    config.migration(true);
    Ok(config)
}

/// A server endpoint bound to `bind`.
///
/// `reset_secret` (the server's private key, say) keys the endpoint's
/// stateless resets. Derived from a secret that outlives the process, the
/// key is the same after a restart: an agent still sending on a connection
/// the old process held gets a reset it recognises and reconnects at once,
/// instead of waiting out its idle timeout. `None`: a random key.
pub fn server_endpoint(
    bind: SocketAddr,
    config: ServerConfig,
    reset_secret: Option<&[u8]>,
) -> Result<Endpoint, EndpointError> {
    let socket = udp_socket(bind)?;
    let endpoint_config = match reset_secret {
        Some(secret) => EndpointConfig::new(Arc::new(reset_key(secret))),
        None => EndpointConfig::default(),
    };
    Endpoint::new(
        endpoint_config,
        Some(config),
        socket,
        Arc::new(TokioRuntime),
    )
    .map_err(|source| EndpointError::Bind { addr: bind, source })
}

/// A client endpoint bound to `bind` (usually `0.0.0.0:0` or `[::]:0`) whose
/// connections use `tls` and `settings`.
pub fn client_endpoint(
    bind: SocketAddr,
    tls: rustls::ClientConfig,
    settings: &TransportSettings,
) -> Result<Endpoint, EndpointError> {
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| EndpointError::Tls(e.to_string()))?;
    let mut client = ClientConfig::new(Arc::new(crypto));
    client.transport_config(settings.to_quinn()?);
    let socket = udp_socket(bind)?;
    let mut endpoint = Endpoint::new(
        EndpointConfig::default(),
        None,
        socket,
        Arc::new(TokioRuntime),
    )
    .map_err(|source| EndpointError::Bind { addr: bind, source })?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}

/// The stateless-reset key derived from `secret`: HMAC-SHA256 under a
/// purpose-specific salt (HKDF's extract step), so the key reveals nothing
/// of the secret.
fn reset_key(secret: &[u8]) -> ring::hmac::Key {
    use ring::hmac;
    let salt = hmac::Key::new(hmac::HMAC_SHA256, b"ferry quic stateless reset v1");
    hmac::Key::new(hmac::HMAC_SHA256, hmac::sign(&salt, secret).as_ref())
}

fn udp_socket(bind: SocketAddr) -> Result<UdpSocket, EndpointError> {
    let err = |source| EndpointError::Bind { addr: bind, source };
    let socket =
        Socket::new(Domain::for_address(bind), Type::DGRAM, Some(Protocol::UDP)).map_err(err)?;
    if bind.is_ipv6() {
        // Dual-stack when bound to [::], so one listener serves both families.
        let _ = socket.set_only_v6(false);
    }
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    socket.bind(&bind.into()).map_err(err)?;
    Ok(socket.into())
}
