//! UDP relays for one client on loopback.
//!
//! [`BlackholeRelay`] passes only the first `pass_back` datagrams of the
//! server's answers and swallows the rest: the server then sees a client
//! that started a handshake (and, with `pass_back >= 1`, answered a Retry,
//! so its address is validated) and never finishes it — a half-open
//! handshake. [`SwitchRelay`] drops everything until it is opened.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay's two sockets on loopback: the one the client sends to (and its
/// address) and the one facing the server, both with a short read timeout
/// so the relay threads notice a stop.
fn sockets() -> (UdpSocket, SocketAddr, UdpSocket) {
    let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
    let addr = front.local_addr().expect("relay addr");
    let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
    for s in [&front, &back] {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
    }
    (front, addr, back)
}

/// A relay for one client; stops when dropped.
pub struct BlackholeRelay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl BlackholeRelay {
    pub fn new(server: SocketAddr, pass_back: usize) -> Self {
        let (front, addr, back) = sockets();
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        {
            let (front, back, stop, client) = (
                front.try_clone().expect("clone"),
                back.try_clone().expect("clone"),
                stop.clone(),
                client.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = front.recv_from(&mut buf) {
                        *client.lock().unwrap() = Some(from);
                        let _ = back.send_to(&buf[..n], server);
                    }
                }
            });
        }
        {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                let mut passed = 0;
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, _)) = back.recv_from(&mut buf) {
                        if passed < pass_back {
                            passed += 1;
                            if let Some(c) = *client.lock().unwrap() {
                                let _ = front.send_to(&buf[..n], c);
                            }
                        }
                    }
                }
            });
        }
        Self { addr, stop }
    }
}

impl Drop for BlackholeRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A UDP relay for one client that passes datagrams both ways only while
/// it is open: closed, it is a path that drops UDP; opened, the same path
/// works. (What a firewall change, or a NAT that lets UDP through again,
/// looks like to the client.)
pub struct SwitchRelay {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl SwitchRelay {
    /// A relay to `server`, closed at first.
    pub fn new(server: SocketAddr) -> Self {
        let (front, addr, back) = sockets();
        let open = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::default();
        let pump = |from: UdpSocket, to: UdpSocket, upstream: bool| {
            let (open, stop, client) = (open.clone(), stop.clone(), client.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = from.recv_from(&mut buf) else {
                        continue;
                    };
                    if !open.load(Ordering::Relaxed) {
                        continue;
                    }
                    if upstream {
                        *client.lock().unwrap() = Some(peer);
                        let _ = to.send_to(&buf[..n], server);
                    } else if let Some(c) = *client.lock().unwrap() {
                        let _ = to.send_to(&buf[..n], c);
                    }
                }
            });
        };
        pump(
            front.try_clone().expect("clone"),
            back.try_clone().expect("clone"),
            true,
        );
        pump(back, front, false);
        Self { addr, open, stop }
    }

    /// Lets datagrams through from now on.
    pub fn open(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// Drops every datagram from now on (the link is cut).
    pub fn close(&self) {
        self.open.store(false, Ordering::Relaxed);
    }
}

impl Drop for SwitchRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
