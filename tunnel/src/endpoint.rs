//! Building quinn endpoints from rustls configurations.
//!
//! TLS verification is configured by `ferry-certs`, whose builders require a
//! CA in every case; this module only adds QUIC on top. There is no way to
//! get an endpoint here without a complete rustls config.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{ClientConfig, Endpoint, EndpointConfig, ServerConfig, TokioRuntime};
use quinn_proto::HashedConnectionIdGenerator;
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

/// Least time between two stateless resets the server sends. quinn's
/// default (20 ms) allows 50 a second for the whole endpoint: after a
/// restart, a thousand agents would need 20 s to all hear of it. A reset is
/// smaller than the packet that provoked it, so a faster pace amplifies
/// nothing; the interval still stops two endpoints from resetting each other
/// in a loop.
const MIN_RESET_INTERVAL: Duration = Duration::from_millis(1);

/// A server endpoint bound to `bind`.
///
/// `reset_secret` (the server's private key, say) keys the endpoint's
/// stateless resets and its connection IDs. Derived from a secret that
/// outlives the process, both are the same after a restart: an agent still
/// sending on a connection the old process held uses a connection ID the
/// new process recognises as its own (quinn drops packets whose ID another
/// generator made, without a word), so it gets a reset it can verify and
/// reconnects at once instead of waiting out its idle timeout. `None`:
/// random keys, which hold for this process only.
pub fn server_endpoint(
    bind: SocketAddr,
    config: ServerConfig,
    reset_secret: Option<&[u8]>,
) -> Result<Endpoint, EndpointError> {
    let socket = udp_socket(bind)?;
    let mut endpoint_config = match reset_secret {
        Some(secret) => {
            let mut c = EndpointConfig::new(Arc::new(reset_key(secret)));
            let cid_key = cid_key(secret);
            c.cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(cid_key)));
            c
        }
        None => EndpointConfig::default(),
    };
    endpoint_config.min_reset_interval(MIN_RESET_INTERVAL);
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
    hmac::Key::new(
        hmac::HMAC_SHA256,
        derive(secret, b"ferry quic stateless reset v1").as_ref(),
    )
}

/// The key of the connection-ID generator derived from `secret`, under its
/// own salt. The generator's check is a fast filter, not a secret: it only
/// has to be the same in every process that holds `secret`.
fn cid_key(secret: &[u8]) -> u64 {
    let tag = derive(secret, b"ferry quic connection id v1");
    let mut first = [0u8; 8];
    first.copy_from_slice(&tag.as_ref()[..8]);
    u64::from_le_bytes(first)
}

fn derive(secret: &[u8], salt: &[u8]) -> ring::hmac::Tag {
    use ring::hmac;
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, salt), secret)
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
