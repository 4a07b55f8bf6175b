//! A link-impairment relay: a UDP relay that adds delay, jitter, loss,
//! reordering and duplication, so QUIC between network namespaces can be
//! tested over a lossy, long link. The kernel here has no `netem`, so this
//! does in user space what `tc qdisc ... netem` would do.
//!
//! Clients send to [`ImpairRelay::addr`]; each distinct client address gets
//! its own upstream socket towards the server (so several clients, and a
//! client whose address changes as in QUIC migration, both work), and the
//! server's answers go back to the client that the upstream socket belongs to.
//!
//! Direction and seeding: `up` impairs client → server, `down` server →
//! client. Each direction has its own RNG, seeded from its impairment's
//! `seed`, and every datagram draws the same number of values in the same
//! order, so a given seed and the same sequence of datagrams give the same
//! decisions (their timing does not matter). With several clients the down
//! direction's RNG is shared, so the interleaving of their answers counts.
//! Only datagrams coming from `server` itself are passed back.
//!
//! Limits: no bandwidth shaping or queue limits (use `tc tbf` on the veth for
//! that); delay precision is about a millisecond (a scheduler thread per
//! direction sleeping on a condvar); at most [`MAX_CLIENTS`] client addresses
//! are tracked, the least recently seen one is forgotten beyond that.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Client addresses tracked at once; the least recently seen is evicted.
pub const MAX_CLIENTS: usize = 64;

/// How often blocked threads look at the stop flag.
const POLL: Duration = Duration::from_millis(50);

/// Impairment of one direction. `Default` is a perfect link.
#[derive(Clone, Debug, Default)]
pub struct Impairment {
    /// One-way delay.
    pub delay: Duration,
    /// Uniform ± around `delay`, never below zero. Does not reorder by
    /// itself: non-reordered datagrams leave in the order they came.
    pub jitter: Duration,
    /// Probability (0..1) that a datagram is dropped.
    pub loss: f64,
    /// Probability (0..1) that a datagram is held back an extra
    /// `delay / 2 + 5 ms`, so that later ones overtake it.
    pub reorder: f64,
    /// Probability (0..1) that a datagram is sent twice.
    pub duplicate: f64,
    /// Seed of this direction's RNG.
    pub seed: u64,
}

impl Impairment {
    /// A link with only a one-way delay.
    pub fn delay(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }
    pub fn loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }
    pub fn reorder(mut self, p: f64) -> Self {
        self.reorder = p;
        self
    }
    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
}

/// Counters of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Datagrams that came in.
    pub received: u64,
    /// Datagrams sent out, duplicates included.
    pub forwarded: u64,
    /// Datagrams dropped as loss.
    pub dropped: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Datagrams held back so that later ones overtake them.
    pub reordered: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Client → server.
    pub up: DirStats,
    /// Server → client.
    pub down: DirStats,
}

#[derive(Default)]
struct Counters {
    received: AtomicU64,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    reordered: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> DirStats {
        DirStats {
            received: self.received.load(Ordering::Relaxed),
            forwarded: self.forwarded.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            duplicated: self.duplicated.load(Ordering::Relaxed),
            reordered: self.reordered.load(Ordering::Relaxed),
        }
    }
}

/// A datagram waiting for its release time. Ordered by (release, seq) so
/// that equal release times keep arrival order.
struct Pending {
    release: Instant,
    seq: u64,
    bytes: Vec<u8>,
    via: Arc<UdpSocket>,
    to: SocketAddr,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.release, self.seq) == (other.release, other.seq)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.release, self.seq).cmp(&(other.release, other.seq))
    }
}

struct DirState {
    rng: StdRng,
    heap: BinaryHeap<Reverse<Pending>>,
    seq: u64,
    /// Latest release time of a non-reordered datagram: jitter alone must
    /// not let a datagram overtake an earlier one.
    last_release: Option<Instant>,
}

/// One direction: decisions, the release queue and its counters.
struct Dir {
    imp: Impairment,
    state: Mutex<DirState>,
    wake: Condvar,
    counters: Counters,
}

impl Dir {
    fn new(imp: Impairment) -> Self {
        Self {
            state: Mutex::new(DirState {
                rng: StdRng::seed_from_u64(imp.seed),
                heap: BinaryHeap::new(),
                seq: 0,
                last_release: None,
            }),
            imp,
            wake: Condvar::new(),
            counters: Counters::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, DirState> {
        // A panicking holder cannot leave the queue inconsistent in a way
        // that matters for a test tool; keep going.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decides the fate of one datagram and queues it.
    fn submit(&self, bytes: &[u8], via: &Arc<UdpSocket>, to: SocketAddr) {
        let now = Instant::now();
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let mut st = self.lock();
        // Always draw all four values, in this order, so a decision for one
        // datagram never shifts the RNG stream for the following ones.
        let r_loss: f64 = st.rng.random();
        let r_dup: f64 = st.rng.random();
        let r_reorder: f64 = st.rng.random();
        let r_jitter: f64 = st.rng.random();
        if r_loss < self.imp.loss {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let jitter = self.imp.jitter.as_secs_f64() * (2.0 * r_jitter - 1.0);
        let delay = (self.imp.delay.as_secs_f64() + jitter).max(0.0);
        let mut release = now + Duration::from_secs_f64(delay);
        if r_reorder < self.imp.reorder {
            // Held back, exempt from the monotonic rule, so later ones pass.
            release += self.imp.delay / 2 + Duration::from_millis(5);
            self.counters.reordered.fetch_add(1, Ordering::Relaxed);
        } else {
            if let Some(last) = st.last_release {
                release = release.max(last);
            }
            st.last_release = Some(release);
        }
        let copies = if r_dup < self.imp.duplicate {
            self.counters.duplicated.fetch_add(1, Ordering::Relaxed);
            2
        } else {
            1
        };
        for _ in 0..copies {
            st.seq += 1;
            let seq = st.seq;
            st.heap.push(Reverse(Pending {
                release,
                seq,
                bytes: bytes.to_vec(),
                via: via.clone(),
                to,
            }));
        }
        drop(st);
        self.wake.notify_one();
    }

    /// Scheduler loop: sleeps until the next release time and sends.
    fn run(&self, stop: &AtomicBool) {
        let mut due = Vec::new();
        let mut st = self.lock();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            while st.heap.peek().is_some_and(|p| p.0.release <= now) {
                if let Some(Reverse(p)) = st.heap.pop() {
                    due.push(p);
                }
            }
            if !due.is_empty() {
                // Send without the lock so readers are not held up.
                drop(st);
                for p in due.drain(..) {
                    if p.via.send_to(&p.bytes, p.to).is_ok() {
                        self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
                    }
                }
                st = self.lock();
                continue;
            }
            let wait = match st.heap.peek() {
                Some(p) => p.0.release.saturating_duration_since(now).min(POLL),
                None => POLL,
            };
            st = self
                .wake
                .wait_timeout(st, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// The relay; stops and joins its threads when dropped.
pub struct ImpairRelay {
    /// Where clients send to.
    pub addr: SocketAddr,
    up: Arc<Dir>,
    down: Arc<Dir>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

struct Upstream {
    sock: Arc<UdpSocket>,
    last_seen: Instant,
    stop: Arc<AtomicBool>,
}

impl ImpairRelay {
    /// Listens on `listen` and relays to `server`, impairing client → server
    /// with `up` and server → client with `down`.
    pub fn start(
        listen: SocketAddr,
        server: SocketAddr,
        up: Impairment,
        down: Impairment,
    ) -> io::Result<ImpairRelay> {
        let front = UdpSocket::bind(listen)?;
        front.set_read_timeout(Some(POLL))?;
        grow_rcvbuf(&front);
        let addr = front.local_addr()?;
        let front = Arc::new(front);
        let up = Arc::new(Dir::new(up));
        let down = Arc::new(Dir::new(down));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for dir in [&up, &down] {
            let (dir, stop) = (dir.clone(), stop.clone());
            threads.push(
                std::thread::Builder::new()
                    .name("impair-sched".into())
                    .spawn(move || dir.run(&stop))?,
            );
        }
        let ctx = Front {
            front,
            server,
            up: up.clone(),
            down: down.clone(),
            stop: stop.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("impair-front".into())
            .spawn(move || ctx.run());
        let mut relay = ImpairRelay {
            addr,
            up,
            down,
            stop,
            threads,
        };
        // On error `relay` drops here, which stops the schedulers.
        relay.threads.push(spawned?);
        Ok(relay)
    }

    pub fn stats(&self) -> RelayStats {
        RelayStats {
            up: self.up.counters.snapshot(),
            down: self.down.counters.snapshot(),
        }
    }
}

impl Drop for ImpairRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for dir in [&self.up, &self.down] {
            // Take the lock so the notify cannot fall between a scheduler's
            // stop check and its wait.
            drop(dir.lock());
            dir.wake.notify_all();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The client-facing side: reads clients' datagrams, owns the map of client
/// address → upstream socket and the upstream readers' threads.
struct Front {
    front: Arc<UdpSocket>,
    server: SocketAddr,
    up: Arc<Dir>,
    down: Arc<Dir>,
    stop: Arc<AtomicBool>,
}

impl Front {
    fn run(self) {
        let mut clients: HashMap<SocketAddr, Upstream> = HashMap::new();
        let mut readers: Vec<JoinHandle<()>> = Vec::new();
        let mut buf = vec![0u8; 65536];
        while !self.stop.load(Ordering::Relaxed) {
            let (n, from) = match self.front.recv_from(&mut buf) {
                Ok(x) => x,
                // Timeouts, and ICMP errors surfacing as recv errors.
                Err(_) => continue,
            };
            let sock = match clients.get_mut(&from) {
                Some(u) => {
                    u.last_seen = Instant::now();
                    u.sock.clone()
                }
                None => match self.connect_client(from, &mut clients, &mut readers) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("impair relay: no upstream socket for {from}: {e}");
                        continue;
                    }
                },
            };
            self.up.submit(&buf[..n], &sock, self.server);
        }
        for t in readers {
            let _ = t.join();
        }
    }

    fn connect_client(
        &self,
        client: SocketAddr,
        clients: &mut HashMap<SocketAddr, Upstream>,
        readers: &mut Vec<JoinHandle<()>>,
    ) -> io::Result<Arc<UdpSocket>> {
        if clients.len() >= MAX_CLIENTS {
            let oldest = clients
                .iter()
                .min_by_key(|(_, u)| u.last_seen)
                .map(|(a, _)| *a);
            if let Some(u) = oldest.and_then(|a| clients.remove(&a)) {
                u.stop.store(true, Ordering::Relaxed);
            }
        }
        readers.retain(|t| !t.is_finished());
        let bind: SocketAddr = if self.server.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let sock = UdpSocket::bind(bind)?;
        sock.set_read_timeout(Some(POLL))?;
        grow_rcvbuf(&sock);
        let sock = Arc::new(sock);
        let own_stop = Arc::new(AtomicBool::new(false));
        let (s, front, down, stop, own, server) = (
            sock.clone(),
            self.front.clone(),
            self.down.clone(),
            self.stop.clone(),
            own_stop.clone(),
            self.server,
        );
        readers.push(
            std::thread::Builder::new()
                .name("impair-back".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while !stop.load(Ordering::Relaxed) && !own.load(Ordering::Relaxed) {
                        match s.recv_from(&mut buf) {
                            // Only the server's answers go back.
                            Ok((n, src)) if src == server => down.submit(&buf[..n], &front, client),
                            _ => {}
                        }
                    }
                })?,
        );
        clients.insert(
            client,
            Upstream {
                sock: sock.clone(),
                last_seen: Instant::now(),
                stop: own_stop,
            },
        );
        Ok(sock)
    }
}

/// Bursts of small datagrams should meet the relay's queue, not a full
/// socket buffer; best effort, capped by `net.core.rmem_max`.
fn grow_rcvbuf(sock: &UdpSocket) {
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
