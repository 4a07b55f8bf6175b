//! A UDP relay between a client and a server on loopback that passes only
//! the first `pass_back` datagrams of the server's answers and swallows the
//! rest: the server then sees a client that started a handshake (and, with
//! `pass_back >= 1`, answered a Retry, so its address is validated) and
//! never finishes it — a half-open handshake.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A relay for one client; stops when dropped.
pub struct BlackholeRelay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl BlackholeRelay {
    pub fn new(server: SocketAddr, pass_back: usize) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        let addr = front.local_addr().expect("relay addr");
        let back = UdpSocket::bind("127.0.0.1:0").expect("bind relay back");
        for s in [&front, &back] {
            s.set_read_timeout(Some(Duration::from_millis(50)))
                .expect("timeout");
        }
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
