//! The fallback transport: TLS 1.3 over TCP, streams multiplexed by yamux.
//!
//! Many corporate firewalls let only TCP out (often only to port 443), so
//! QUIC never gets an answer there. The agent then dials the broker over TCP
//! instead and runs the same protocol: the same rustls configurations (so
//! the same mutual authentication, CRL and ALPN), one yamux stream for the
//! control messages and one per data task, each with its own flow-control
//! window, so a slow task does not stall the control stream.
//!
//! The server speaks first: one byte once it has accepted the client's
//! certificate, so a refusal reaches the client as the TLS alert it is.
//!
//! What yamux lacks, and how it is made up here:
//! - a close code and reason (QUIC's CONNECTION_CLOSE): a side that closes
//!   opens one last stream, tagged [`TAG_CLOSE`], carrying the code and the
//!   reason, then ends the TCP connection; every other stream starts with
//!   [`TAG_STREAM`]. The tag costs one byte per stream.
//! - STOP_SENDING: stopping a stream resets it whole.
//! - idle detection: TCP keep-alive probes and `TCP_USER_TIMEOUT` end a
//!   connection whose peer is gone within the idle timeout, and yamux pings
//!   every keep-alive interval keep NAT and firewall state fresh.
//!
//! TCP has one byte stream, so a lost segment stalls every stream behind it
//! (head-of-line blocking) and loss recovery is TCP's: this transport is for
//! reaching the broker at all, QUIC remains the one to prefer.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_certs::Refusal;
use futures::StreamExt;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_yamux::{Session, StreamHandle};

use crate::close::{CloseCause, CloseCode};
use crate::settings::TransportSettings;

/// The byte the server sends once it has accepted the client's
/// certificate. In TLS 1.3 the client finishes its handshake before the
/// server has checked its certificate; a client that wrote first could hit
/// the closed socket (EPIPE) before reading the server's refusal. Reading
/// this byte (or the alert in its place) first makes the refusal the error.
const READY: u8 = 0xF7;

/// First byte of an ordinary stream.
pub const TAG_STREAM: u8 = 0;
/// First byte of the stream that carries a close notice.
pub const TAG_CLOSE: u8 = 1;
/// Longest close reason sent or accepted, bytes.
const MAX_REASON: usize = 1024;
/// How long a newly accepted stream may take to send its tag.
const TAG_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams accepted but not yet taken by `accept_bi`.
const ACCEPT_BACKLOG: usize = 64;
/// Largest yamux stream window (and so largest yamux frame) accepted.
const MAX_WINDOW: u64 = 16 << 20;

/// A TLS/TCP tunnel connection; cheap to clone.
#[derive(Clone)]
pub struct TcpConnection(Arc<Shared>);

struct Shared {
    control: tokio_yamux::Control,
    incoming: tokio::sync::Mutex<mpsc::Receiver<StreamHandle>>,
    cause: watch::Sender<Option<CloseCause>>,
    commands: mpsc::UnboundedSender<Command>,
    remote: SocketAddr,
    certs: Option<Vec<CertificateDer<'static>>>,
    /// A duplicate of the socket, to read the kernel's RTT estimate.
    probe: Option<std::net::TcpStream>,
}

impl Drop for Shared {
    /// The last handle (connection or stream) is gone: close, as quinn does.
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Close(
            CloseCode::Normal,
            "connection dropped".into(),
        ));
    }
}

enum Command {
    /// Send a close notice, then end the connection.
    Close(CloseCode, String),
    /// The peer sent its close notice: end the connection.
    PeerClosed,
}

/// Opens a TCP connection to `addr`, from `local` (an address of this
/// host; any port) if given.
pub async fn dial(addr: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    let Some(local) = local else {
        return TcpStream::connect(addr).await;
    };
    let socket = if local.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(addr).await
}

/// Dials `addr` over TCP (from `local`, if given) and runs the TLS
/// handshake as a client.
pub async fn connect(
    addr: SocketAddr,
    local: Option<IpAddr>,
    server_name: ServerName<'static>,
    tls: Arc<rustls::ClientConfig>,
    settings: &TransportSettings,
) -> Result<TcpConnection, CloseCause> {
    let tcp = dial(addr, local).await.map_err(|e| classify_io(&e))?;
    let probe = tune(&tcp, settings);
    let mut stream = tokio_rustls::TlsConnector::from(tls)
        .connect(server_name, tcp)
        .await
        .map_err(|e| classify_io(&e))?;
    let mut ready = [0u8; 1];
    stream
        .read_exact(&mut ready)
        .await
        .map_err(|e| classify_io(&e))?;
    if ready[0] != READY {
        return Err(CloseCause::Transport(format!(
            "the peer at {addr} does not speak Ferry's TLS/TCP transport (first byte {:#04x})",
            ready[0]
        )));
    }
    let certs = stream.get_ref().1.peer_certificates().map(|c| c.to_vec());
    Ok(TcpConnection::start(
        Session::new_client(stream, yamux_config(settings)),
        addr,
        certs,
        probe,
    ))
}

/// Runs the TLS handshake as a server on an accepted TCP connection.
pub async fn accept(
    tcp: TcpStream,
    remote: SocketAddr,
    tls: Arc<rustls::ServerConfig>,
    settings: &TransportSettings,
) -> Result<TcpConnection, CloseCause> {
    let probe = tune(&tcp, settings);
    let mut stream = tokio_rustls::TlsAcceptor::from(tls)
        .accept(tcp)
        .await
        .map_err(|e| classify_io(&e))?;
    stream
        .write_all(&[READY])
        .await
        .map_err(|e| classify_io(&e))?;
    stream.flush().await.map_err(|e| classify_io(&e))?;
    let certs = stream.get_ref().1.peer_certificates().map(|c| c.to_vec());
    Ok(TcpConnection::start(
        Session::new_server(stream, yamux_config(settings)),
        remote,
        certs,
        probe,
    ))
}

fn yamux_config(settings: &TransportSettings) -> tokio_yamux::Config {
    let window = settings.stream_window.clamp(
        u64::from(tokio_yamux::config::INITIAL_STREAM_WINDOW),
        MAX_WINDOW,
    );
    tokio_yamux::Config {
        accept_backlog: ACCEPT_BACKLOG,
        enable_keepalive: true,
        keepalive_interval: Duration::from_secs(settings.keep_alive_secs.max(1)),
        connection_write_timeout: settings.idle_timeout(),
        max_stream_count: 1024,
        max_stream_window_size: u32::try_from(window).unwrap_or(u32::MAX),
    }
}

/// Socket options: no Nagle delay for control messages, keep-alive probes
/// and a user timeout so a vanished peer is noticed within the idle timeout.
/// Returns a duplicate of the socket for RTT look-ups.
fn tune(tcp: &TcpStream, settings: &TransportSettings) -> Option<std::net::TcpStream> {
    let _ = tcp.set_nodelay(true);
    let sock = socket2::SockRef::from(tcp);
    let idle = settings.idle_timeout();
    let probe_every = Duration::from_secs(settings.keep_alive_secs.max(1));
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(probe_every)
        .with_interval(probe_every)
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(target_os = "linux")]
    let _ = sock.set_tcp_user_timeout(Some(idle));
    let _ = idle;
    sock.try_clone().ok().map(std::net::TcpStream::from)
}

/// Turns an I/O error of the TCP or TLS layer into a close cause, finding
/// TLS refusals (a rustls error inside the I/O error) on the way.
fn classify_io(e: &io::Error) -> CloseCause {
    if let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return CloseCause::Refused(Refusal::from_rustls(tls));
    }
    match e.kind() {
        io::ErrorKind::TimedOut => CloseCause::TimedOut,
        io::ErrorKind::ConnectionReset => CloseCause::Reset,
        _ => CloseCause::Transport(e.to_string()),
    }
}

impl TcpConnection {
    fn start<T>(
        session: Session<T>,
        remote: SocketAddr,
        certs: Option<Vec<CertificateDer<'static>>>,
        probe: Option<std::net::TcpStream>,
    ) -> Self
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (accepted, incoming) = mpsc::channel(ACCEPT_BACKLOG);
        let (commands, command_rx) = mpsc::unbounded_channel();
        let (cause, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            control: session.control(),
            incoming: tokio::sync::Mutex::new(incoming),
            cause: cause.clone(),
            commands: commands.clone(),
            remote,
            certs,
            probe,
        });
        tokio::spawn(drive(session, accepted, cause, commands, command_rx));
        TcpConnection(shared)
    }

    pub async fn open_bi(&self) -> Result<(TcpSend, TcpRecv), CloseCause> {
        let lost = |e: &dyn std::fmt::Display| {
            self.close_reason()
                .unwrap_or_else(|| CloseCause::Transport(format!("cannot open a stream: {e}")))
        };
        let mut handle = self
            .0
            .control
            .clone()
            .open_stream()
            .await
            .map_err(|e| lost(&format!("{e:?}")))?;
        handle
            .write_all(&[TAG_STREAM])
            .await
            .map_err(|e| lost(&e))?;
        Ok(halves(handle, &self.0))
    }

    pub async fn accept_bi(&self) -> Result<(TcpSend, TcpRecv), CloseCause> {
        let mut incoming = self.0.incoming.lock().await;
        match incoming.recv().await {
            Some(handle) => Ok(halves(handle, &self.0)),
            None => Err(self.closed().await),
        }
    }

    pub async fn closed(&self) -> CloseCause {
        let mut rx = self.0.cause.subscribe();
        let cause = match rx.wait_for(Option::is_some).await {
            Ok(cause) => cause.clone(),
            Err(_) => None,
        };
        cause.unwrap_or(CloseCause::LocallyClosed)
    }

    pub fn close_reason(&self) -> Option<CloseCause> {
        self.0.cause.borrow().clone()
    }

    pub fn close(&self, code: CloseCode, reason: &str) {
        set_cause(&self.0.cause, CloseCause::LocallyClosed);
        let _ = self
            .0
            .commands
            .send(Command::Close(code, reason.to_string()));
    }

    pub fn remote_address(&self) -> SocketAddr {
        self.0.remote
    }

    pub fn peer_certificates(&self) -> Option<Vec<CertificateDer<'static>>> {
        self.0.certs.clone()
    }

    /// The kernel's smoothed RTT of the TCP connection (zero if unknown).
    pub fn rtt(&self) -> Duration {
        self.0.probe.as_ref().map(kernel_rtt).unwrap_or_default()
    }
}

#[cfg(target_os = "linux")]
fn kernel_rtt(s: &std::net::TcpStream) -> Duration {
    use std::os::fd::AsRawFd;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which is a
    // plain C struct of that size; the fd is owned by `s` and open.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let rc = libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if rc == 0 {
            Duration::from_micros(u64::from(info.tcpi_rtt))
        } else {
            Duration::ZERO
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn kernel_rtt(_: &std::net::TcpStream) -> Duration {
    Duration::ZERO
}

fn set_cause(cause: &watch::Sender<Option<CloseCause>>, value: CloseCause) {
    cause.send_if_modified(|c| {
        if c.is_none() {
            *c = Some(value);
            true
        } else {
            false
        }
    });
}

/// Drives the yamux session: hands accepted streams over once their tag is
/// read, sends the close notice on a local close, and records why the
/// connection ended.
async fn drive<T>(
    mut session: Session<T>,
    accepted: mpsc::Sender<StreamHandle>,
    cause: watch::Sender<Option<CloseCause>>,
    commands: mpsc::UnboundedSender<Command>,
    mut command_rx: mpsc::UnboundedReceiver<Command>,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    loop {
        tokio::select! {
            item = session.next() => match item {
                Some(Ok(stream)) => {
                    tokio::spawn(sort_incoming(stream, accepted.clone(), cause.clone(), commands.clone()));
                }
                Some(Err(e)) => {
                    set_cause(&cause, classify_io(&e));
                    return;
                }
                None => {
                    set_cause(&cause, CloseCause::Transport("connection closed by the peer".into()));
                    return;
                }
            },
            cmd = command_rx.recv() => match cmd {
                Some(Command::Close(code, reason)) => {
                    send_close_notice(&mut session, code, &reason).await;
                    return;
                }
                Some(Command::PeerClosed) | None => return,
            },
        }
    }
}

/// Opens the close stream, writes the notice, and keeps the session going
/// until it has left (or a second has passed).
async fn send_close_notice<T>(session: &mut Session<T>, code: CloseCode, reason: &str)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(mut handle) = session.open_stream() else {
        return;
    };
    let mut reason = reason.as_bytes();
    reason = &reason[..reason.len().min(MAX_REASON)];
    let mut notice = Vec::with_capacity(7 + reason.len());
    notice.push(TAG_CLOSE);
    notice.extend_from_slice(&(code as u32).to_be_bytes());
    notice.extend_from_slice(&(reason.len() as u16).to_be_bytes());
    notice.extend_from_slice(reason);
    let write = async move {
        let _ = handle.write_all(&notice).await;
        let _ = handle.shutdown().await;
        handle
    };
    tokio::pin!(write);
    let deadline = tokio::time::sleep(Duration::from_secs(1));
    tokio::pin!(deadline);
    let mut written = None;
    // Poll the session (which moves the bytes) until the notice is written,
    // then once more briefly so it is flushed to the socket.
    loop {
        tokio::select! {
            h = &mut write, if written.is_none() => {
                written = Some(h);
                deadline.as_mut().reset(tokio::time::Instant::now() + Duration::from_millis(50));
            }
            item = session.next() => if item.is_none() || matches!(item, Some(Err(_))) { break },
            _ = &mut deadline => break,
        }
    }
    let _ = futures::future::poll_fn(|cx| Poll::Ready(session.shutdown(cx))).await;
}

/// Reads the tag of a stream the peer opened: an ordinary stream is queued
/// for `accept_bi`, a close notice ends the connection with its cause.
async fn sort_incoming(
    mut stream: StreamHandle,
    accepted: mpsc::Sender<StreamHandle>,
    cause: watch::Sender<Option<CloseCause>>,
    commands: mpsc::UnboundedSender<Command>,
) {
    let mut tag = [0u8; 1];
    match tokio::time::timeout(TAG_TIMEOUT, stream.read_exact(&mut tag)).await {
        Ok(Ok(_)) => {}
        _ => return, // dropped: the peer sees the stream reset
    }
    match tag[0] {
        TAG_STREAM => {
            let _ = accepted.send(stream).await;
        }
        TAG_CLOSE => {
            let notice = tokio::time::timeout(TAG_TIMEOUT, read_close_notice(&mut stream)).await;
            let value = match notice {
                Ok(Ok((code, reason))) => match CloseCode::from_u64(u64::from(code)) {
                    Some(code) => CloseCause::Closed { code, reason },
                    None => CloseCause::ClosedUnknown {
                        code: u64::from(code),
                        reason,
                    },
                },
                _ => CloseCause::Transport("malformed close notice from the peer".into()),
            };
            set_cause(&cause, value);
            let _ = commands.send(Command::PeerClosed);
        }
        other => {
            tracing::debug!(tag = other, "stream with an unknown tag; reset");
        }
    }
}

async fn read_close_notice(stream: &mut StreamHandle) -> io::Result<(u32, String)> {
    let code = stream.read_u32().await?;
    let len = usize::from(stream.read_u16().await?);
    if len > MAX_REASON {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "reason too long",
        ));
    }
    let mut reason = vec![0u8; len];
    stream.read_exact(&mut reason).await?;
    Ok((code, String::from_utf8_lossy(&reason).into_owned()))
}

/// Both halves keep the connection alive, as QUIC streams do.
fn halves(handle: StreamHandle, conn: &Arc<Shared>) -> (TcpSend, TcpRecv) {
    let stream = Arc::new(Mutex::new(Some(handle)));
    (
        TcpSend {
            stream: stream.clone(),
            conn: conn.clone(),
        },
        TcpRecv {
            stream,
            _conn: conn.clone(),
        },
    )
}

type SharedHandle = Arc<Mutex<Option<StreamHandle>>>;

fn lock(s: &SharedHandle) -> MutexGuard<'_, Option<StreamHandle>> {
    // Every operation under the lock is one poll; a panic there leaves the
    // handle as consistent as yamux left it.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "stream reset")
}

/// Dropping the handle while the stream is open makes yamux send a reset.
fn reset(s: &SharedHandle) {
    drop(lock(s).take());
}

/// The sending half of a TLS/TCP stream.
pub struct TcpSend {
    stream: SharedHandle,
    conn: Arc<Shared>,
}

impl TcpSend {
    /// Sends FIN: the peer reads the end after the last byte.
    pub fn finish(&mut self) -> io::Result<()> {
        let mut guard = lock(&self.stream);
        let handle = guard.as_mut().ok_or_else(reset_error)?;
        let waker = futures::task::noop_waker();
        // yamux's shutdown only queues the FIN frame; it never waits.
        match Pin::new(handle).poll_shutdown(&mut Context::from_waker(&waker)) {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }

    pub fn reset(&mut self) {
        reset(&self.stream);
    }

    /// Resolves when the stream was reset here or the connection ended.
    pub async fn stopped(&mut self) {
        if lock(&self.stream).is_none() {
            return;
        }
        let _ = self.conn.cause.subscribe().wait_for(Option::is_some).await;
    }
}

impl AsyncWrite for TcpSend {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match lock(&self.stream).as_mut() {
            Some(h) => Pin::new(h).poll_write(cx, buf),
            None => Poll::Ready(Err(reset_error())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.stream).as_mut() {
            Some(h) => Pin::new(h).poll_flush(cx),
            None => Poll::Ready(Err(reset_error())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match lock(&self.stream).as_mut() {
            Some(h) => Pin::new(h).poll_shutdown(cx),
            None => Poll::Ready(Err(reset_error())),
        }
    }
}

/// The receiving half of a TLS/TCP stream.
pub struct TcpRecv {
    stream: SharedHandle,
    _conn: Arc<Shared>,
}

impl TcpRecv {
    /// Stops reading: what the peer still sends is read and thrown away
    /// until it ends or resets the stream. yamux has no STOP_SENDING, and a
    /// stream nobody reads never opens its window again, so the peer would
    /// wait forever; the peer learns to stop from the protocol (an `Error`
    /// frame) instead.
    pub fn discard(&mut self) {
        let mut rest = TcpRecv {
            stream: self.stream.clone(),
            _conn: self._conn.clone(),
        };
        tokio::spawn(async move {
            let mut scratch = vec![0u8; 16 * 1024];
            while let Ok(n) = rest.read(&mut scratch).await {
                if n == 0 {
                    break;
                }
            }
        });
    }
}

impl AsyncRead for TcpRecv {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match lock(&self.stream).as_mut() {
            Some(h) => Pin::new(h).poll_read(cx, buf),
            None => Poll::Ready(Err(reset_error())),
        }
    }
}
