//! The link-impairment relay on loopback, behind a UDP echo server.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ferry_tests::impair::{ImpairRelay, Impairment, RelayStats};

const LOCAL: &str = "127.0.0.1:0";

/// Echoes every datagram and records (sequence number, source address).
struct Echo {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(u64, SocketAddr)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Echo {
    fn start() -> Self {
        let sock = UdpSocket::bind(LOCAL).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        big_rcvbuf(&sock);
        let addr = sock.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<(u64, SocketAddr)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (seen.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = sock.recv_from(&mut buf) {
                        seen.lock().unwrap().push((seq_of(&buf[..n]), from));
                        let _ = sock.send_to(&buf[..n], from);
                    }
                }
            })
        };
        Self {
            addr,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seqs(&self) -> Vec<u64> {
        self.seen.lock().unwrap().iter().map(|s| s.0).collect()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn seq_of(b: &[u8]) -> u64 {
    b.get(..8)
        .map(|b| u64::from_be_bytes(b.try_into().unwrap()))
        .unwrap_or(u64::MAX)
}

fn datagram(seq: u64) -> [u8; 32] {
    let mut d = [0u8; 32];
    d[..8].copy_from_slice(&seq.to_be_bytes());
    d
}

/// Under CPU load the echo thread may fall behind a burst; the kernel must
/// not drop what the relay forwarded, or the counts below would not add up.
fn big_rcvbuf(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let size: libc::c_int = 4 << 20;
    // SAFETY: valid fd, pointer and length of a c_int for SO_RCVBUF.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &size as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind(LOCAL).unwrap();
    big_rcvbuf(&c);
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c
}

fn relay(server: SocketAddr, up: Impairment, down: Impairment) -> ImpairRelay {
    ImpairRelay::start(LOCAL.parse().unwrap(), server, up, down).unwrap()
}

/// Waits until the `sent` datagrams went through both directions: the relay
/// got them all, the up queue is empty, the echo server answered all that
/// came through, the down queue is empty.
fn settle(r: &ImpairRelay, sent: u64) -> RelayStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = r.stats();
        let drained =
            |d: ferry_tests::impair::DirStats| d.forwarded == d.received - d.dropped + d.duplicated;
        if s.up.received == sent
            && drained(s.up)
            && s.down.received == s.up.forwarded
            && drained(s.down)
        {
            return s;
        }
        assert!(Instant::now() < deadline, "relay did not settle: {s:?}");
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Sends `n` sequence-numbered datagrams, pausing now and then so socket
/// buffers never overflow.
fn burst(c: &UdpSocket, to: SocketAddr, n: u64, gap: Duration) {
    for i in 0..n {
        c.send_to(&datagram(i), to).unwrap();
        if !gap.is_zero() {
            std::thread::sleep(gap);
        } else if i % 20 == 19 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

fn inversions(seqs: &[u64]) -> usize {
    seqs.windows(2).filter(|w| w[1] < w[0]).count()
}

#[test]
fn delay_adds_to_round_trip() {
    let echo = Echo::start();
    let d = Duration::from_millis(50);
    let r = relay(echo.addr, Impairment::delay(d), Impairment::delay(d));
    let c = client();
    let mut buf = [0u8; 64];
    for i in 0..5 {
        let t = Instant::now();
        c.send_to(&datagram(i), r.addr).unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        let rtt = t.elapsed();
        assert_eq!((seq_of(&buf[..n]), from), (i, r.addr));
        assert!(rtt >= 2 * d, "rtt {rtt:?}");
        assert!(rtt < 2 * d + Duration::from_millis(300), "rtt {rtt:?}");
    }
}

#[test]
fn loss_drops_about_the_set_fraction() {
    let echo = Echo::start();
    let up = Impairment::default().loss(0.3).seed(1);
    let r = relay(echo.addr, up, Impairment::default());
    let c = client();
    burst(&c, r.addr, 2000, Duration::ZERO);
    let s = settle(&r, 2000);
    assert_eq!(s.up.received, 2000, "{s:?}");
    assert_eq!(s.up.forwarded + s.up.dropped, s.up.received);
    let frac = s.up.forwarded as f64 / s.up.received as f64;
    assert!((0.6..0.8).contains(&frac), "forwarded fraction {frac}");
    assert_eq!(echo.seqs().len() as u64, s.up.forwarded);
    assert_eq!(s.down.dropped, 0);
}

#[test]
fn duplication_adds_copies() {
    let echo = Echo::start();
    let up = Impairment::default().duplicate(0.2).seed(2);
    let r = relay(echo.addr, up, Impairment::default());
    let c = client();
    burst(&c, r.addr, 1000, Duration::ZERO);
    let s = settle(&r, 1000);
    let seen = echo.seqs().len() as u64;
    assert_eq!(s.up.received, 1000, "{s:?}");
    assert_eq!(seen, 1000 + s.up.duplicated, "{s:?}");
    assert_eq!(seen, s.up.forwarded);
    assert!((120..280).contains(&s.up.duplicated), "{s:?}");
}

#[test]
fn reorder_lets_later_datagrams_overtake_but_jitter_alone_does_not() {
    let gap = Duration::from_micros(200);
    let echo = Echo::start();
    let up = Impairment::delay(Duration::from_millis(10))
        .reorder(0.2)
        .seed(3);
    let r = relay(echo.addr, up, Impairment::default());
    let c = client();
    burst(&c, r.addr, 500, gap);
    let s = settle(&r, 500);
    let seqs = echo.seqs();
    assert_eq!(seqs.len(), 500);
    assert!(s.up.reordered > 50, "{s:?}");
    assert!(inversions(&seqs) > 20, "{} inversions", inversions(&seqs));
    drop((r, echo));

    let echo = Echo::start();
    let up = Impairment {
        delay: Duration::from_millis(10),
        jitter: Duration::from_millis(8),
        seed: 3,
        ..Default::default()
    };
    let r = relay(echo.addr, up, Impairment::default());
    burst(&c, r.addr, 500, gap);
    let s = settle(&r, 500);
    let seqs = echo.seqs();
    assert_eq!(seqs.len(), 500);
    assert_eq!(s.up.reordered, 0);
    assert_eq!(inversions(&seqs), 0, "jitter reordered: {seqs:?}");
}

#[test]
fn same_seed_same_decisions() {
    let run = || {
        let echo = Echo::start();
        let up = Impairment::default()
            .jitter(Duration::from_millis(1))
            .loss(0.3)
            .duplicate(0.1)
            .reorder(0.1)
            .seed(42);
        let down = Impairment::default().loss(0.2).seed(7);
        let r = relay(echo.addr, up, down);
        let c = client();
        c.set_nonblocking(true).unwrap();
        let mut back = Vec::new();
        let mut buf = [0u8; 64];
        // One at a time, so the decisions, not the timing, decide the result.
        for i in 0..500 {
            c.send_to(&datagram(i), r.addr).unwrap();
            settle(&r, i + 1);
            while let Ok(n) = c.recv(&mut buf) {
                back.push(seq_of(&buf[..n]));
            }
        }
        (echo.seqs(), back, r.stats())
    };
    let (seen1, back1, s1) = run();
    let (seen2, back2, s2) = run();
    assert_eq!(s1, s2);
    assert_eq!(seen1, seen2);
    assert_eq!(back1, back2);
    // The impairments did something.
    assert!(s1.up.dropped > 100 && s1.down.dropped > 30, "{s1:?}");
    assert!(s1.up.duplicated > 0 && s1.up.reordered > 0, "{s1:?}");
}

#[test]
fn client_changing_address_still_gets_answers() {
    let echo = Echo::start();
    let r = relay(echo.addr, Impairment::default(), Impairment::default());
    let (a, b) = (client(), client());
    let mut buf = [0u8; 64];
    for (i, c) in [&a, &b, &a].into_iter().enumerate() {
        c.send_to(&datagram(i as u64), r.addr).unwrap();
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!((seq_of(&buf[..n]), from), (i as u64, r.addr));
    }
    let seen = echo.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    // One upstream socket per client address.
    assert_ne!(seen[0].1, seen[1].1);
    assert_eq!(seen[0].1, seen[2].1);
}

#[test]
fn bind_error_is_returned() {
    let taken = UdpSocket::bind(LOCAL).unwrap();
    let addr = taken.local_addr().unwrap();
    let r = ImpairRelay::start(addr, addr, Impairment::default(), Impairment::default());
    assert!(r.is_err());
}
