//! One tunnel connection, whichever transport carries it.
//!
//! Agent and broker speak the same protocol over QUIC or, where UDP is
//! blocked, over TLS on TCP with yamux multiplexing ([`crate::tcp`]). Both
//! give mutually authenticated, bidirectional, flow-controlled streams; this
//! module hides which one is underneath so sessions, workers and data
//! streams are written once.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, ReadBuf};

use crate::close::{CloseCause, CloseCode};
use crate::tcp;

/// Which transport a tunnel runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// QUIC over UDP (the normal case).
    Quic,
    /// TLS 1.3 over TCP, streams multiplexed by yamux (the fallback).
    TlsTcp,
}

impl Transport {
    /// `quic` or `tls-tcp`, as logs, metrics and the admin API show it.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Quic => "quic",
            Transport::TlsTcp => "tls-tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A tunnel connection; cheap to clone (clones share the connection).
#[derive(Clone)]
pub struct Connection(Inner);

#[derive(Clone)]
enum Inner {
    Quic(quinn::Connection),
    Tcp(tcp::TcpConnection),
}

impl From<quinn::Connection> for Connection {
    fn from(c: quinn::Connection) -> Self {
        Connection(Inner::Quic(c))
    }
}

impl From<tcp::TcpConnection> for Connection {
    fn from(c: tcp::TcpConnection) -> Self {
        Connection(Inner::Tcp(c))
    }
}

impl Connection {
    pub fn transport(&self) -> Transport {
        match &self.0 {
            Inner::Quic(_) => Transport::Quic,
            Inner::Tcp(_) => Transport::TlsTcp,
        }
    }

    /// The QUIC connection underneath, if this is one.
    pub fn quic(&self) -> Option<&quinn::Connection> {
        match &self.0 {
            Inner::Quic(c) => Some(c),
            Inner::Tcp(_) => None,
        }
    }

    /// Opens a bidirectional stream.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), CloseCause> {
        match &self.0 {
            Inner::Quic(c) => c
                .open_bi()
                .await
                .map(|(s, r)| (SendStream::Quic(s), RecvStream::Quic(r)))
                .map_err(|e| CloseCause::classify(&e)),
            Inner::Tcp(c) => c
                .open_bi()
                .await
                .map(|(s, r)| (SendStream::Tcp(s), RecvStream::Tcp(r))),
        }
    }

    /// Waits for the peer to open a bidirectional stream.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), CloseCause> {
        match &self.0 {
            Inner::Quic(c) => c
                .accept_bi()
                .await
                .map(|(s, r)| (SendStream::Quic(s), RecvStream::Quic(r)))
                .map_err(|e| CloseCause::classify(&e)),
            Inner::Tcp(c) => c
                .accept_bi()
                .await
                .map(|(s, r)| (SendStream::Tcp(s), RecvStream::Tcp(r))),
        }
    }

    /// Waits until the connection has ended and says why.
    pub async fn closed(&self) -> CloseCause {
        match &self.0 {
            Inner::Quic(c) => CloseCause::classify(&c.closed().await),
            Inner::Tcp(c) => c.closed().await,
        }
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<CloseCause> {
        match &self.0 {
            Inner::Quic(c) => c.close_reason().map(|e| CloseCause::classify(&e)),
            Inner::Tcp(c) => c.close_reason(),
        }
    }

    /// Closes the connection with `code`; the peer sees `reason`.
    pub fn close(&self, code: CloseCode, reason: &str) {
        match &self.0 {
            Inner::Quic(c) => c.close(code.varint(), reason.as_bytes()),
            Inner::Tcp(c) => c.close(code, reason),
        }
    }

    /// The peer's current address (it changes when a QUIC peer migrates).
    pub fn remote_address(&self) -> SocketAddr {
        match &self.0 {
            Inner::Quic(c) => c.remote_address(),
            Inner::Tcp(c) => c.remote_address(),
        }
    }

    /// The transport's current estimate of the round-trip time.
    pub fn rtt(&self) -> Duration {
        match &self.0 {
            Inner::Quic(c) => c.rtt(),
            Inner::Tcp(c) => c.rtt(),
        }
    }

    /// The certificate chain the peer presented in TLS.
    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        match &self.0 {
            Inner::Quic(c) => c
                .peer_identity()?
                .downcast::<Vec<CertificateDer<'static>>>()
                .ok()
                .map(|b| *b),
            Inner::Tcp(c) => c.peer_certificates(),
        }
    }
}

/// The sending half of a stream.
pub enum SendStream {
    Quic(quinn::SendStream),
    Tcp(tcp::TcpSend),
}

impl SendStream {
    /// Writes all of `chunks` (without copying them on QUIC).
    pub async fn write_all_chunks(&mut self, chunks: &mut [bytes::Bytes]) -> io::Result<()> {
        match self {
            SendStream::Quic(s) => s.write_all_chunks(chunks).await.map_err(io::Error::from),
            SendStream::Tcp(s) => {
                use tokio::io::AsyncWriteExt;
                for c in chunks.iter() {
                    s.write_all(c).await?;
                }
                Ok(())
            }
        }
    }

    /// Ends the stream cleanly: the peer reads the end after the last byte.
    pub fn finish(&mut self) -> io::Result<()> {
        match self {
            SendStream::Quic(s) => s
                .finish()
                .map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e)),
            SendStream::Tcp(s) => s.finish(),
        }
    }

    /// Abandons the stream: the peer sees it reset, never a clean end.
    pub fn reset(&mut self) {
        match self {
            SendStream::Quic(s) => {
                let _ = s.reset(quinn::VarInt::from_u32(1));
            }
            SendStream::Tcp(s) => s.reset(),
        }
    }

    /// Resolves when the peer has stopped reading or the stream is gone;
    /// on TLS/TCP, when the stream was reset or the connection ended.
    pub async fn stopped(&mut self) {
        match self {
            SendStream::Quic(s) => {
                let _ = s.stopped().await;
            }
            SendStream::Tcp(s) => s.stopped().await,
        }
    }
}

/// The receiving half of a stream.
pub enum RecvStream {
    Quic(quinn::RecvStream),
    Tcp(tcp::TcpRecv),
}

impl RecvStream {
    /// Stops reading: on QUIC a STOP_SENDING; on TLS/TCP (yamux has no
    /// such thing) the rest is read and discarded until the peer ends.
    pub fn stop(&mut self) {
        match self {
            RecvStream::Quic(s) => {
                let _ = s.stop(quinn::VarInt::from_u32(1));
            }
            RecvStream::Tcp(s) => s.discard(),
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            RecvStream::Quic(s) => Pin::new(s).poll_read(cx, buf),
            RecvStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}
