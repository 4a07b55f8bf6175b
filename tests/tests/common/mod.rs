//! Shared setup for the in-process tunnel tests.
#![allow(dead_code)]

pub mod replication;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use ferry_agent::AgentConfig;
use ferry_broker::{Broker, BrokerConfig, DataHandler};
use ferry_tests::pki::{CertFiles, Pki};

/// Log lines of every test in this binary (tests run in parallel; assert on
/// content unique to a test).
pub fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let w = buf.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info,ferry=debug"))
            .with_ansi(false)
            .with_writer(move || LogWriter(w.clone()))
            .try_init();
        buf
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        if std::env::var("FERRY_TEST_ECHO").is_ok() {
            let _ = std::io::stderr().write_all(b);
        }
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn log_text() -> String {
    String::from_utf8_lossy(&logs().lock().unwrap()).into_owned()
}

/// Waits until the log contains every needle.
pub async fn wait_log(needles: &[&str], timeout: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        let text = log_text();
        if text.lines().any(|l| needles.iter().all(|n| l.contains(n))) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub struct Setup {
    pub pki: Pki,
    pub broker_cert: CertFiles,
}

impl Setup {
    pub fn new() -> Self {
        logs();
        let pki = Pki::new();
        let broker_cert = pki.broker(&["127.0.0.1", "localhost"]);
        Self { pki, broker_cert }
    }

    pub fn broker_config(&self, listen: SocketAddr) -> BrokerConfig {
        let text = self
            .pki
            .broker_toml(&self.broker_cert, &listen.to_string(), "127.0.0.1:0");
        let mut c: BrokerConfig = toml_from(&text);
        c.limits.handshake_timeout_secs = 3;
        // Its own state store: a broker picks up the unfinished jobs it finds.
        c.jobs_dir = self.pki.dir.path().join("broker-jobs");
        c
    }

    pub async fn broker(&self, handler: DataHandler) -> Broker {
        self.broker_on("127.0.0.1:0".parse().unwrap(), handler)
            .await
    }

    pub async fn broker_on(&self, listen: SocketAddr, handler: DataHandler) -> Broker {
        Broker::start(self.broker_config(listen), handler)
            .await
            .expect("broker starts")
    }

    pub fn agent_config(&self, agent: &CertFiles, broker: SocketAddr) -> AgentConfig {
        toml_from(&self.pki.agent_toml(agent, &broker.to_string(), "localhost"))
    }
}

impl Default for Setup {
    fn default() -> Self {
        Self::new()
    }
}

pub fn toml_from<T: serde::de::DeserializeOwned>(text: &str) -> T {
    toml::from_str(text).expect("valid toml")
}

/// Waits until `f` is true.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}

/// Waits until `broker` has one agent registered, then returns its admin
/// API's `GET /v1/agents`.
pub async fn listed_agents(broker: &Broker) -> serde_json::Value {
    eventually("agent registered", Duration::from_secs(5), || {
        broker.registry().len() == 1
    })
    .await;
    let url = format!("http://{}/v1/agents", broker.admin_addr());
    reqwest::get(&url).await.unwrap().json().await.unwrap()
}

/// Revokes `agent_id`'s certificate and waits for the broker, which polls
/// its CRL file, to close `session` with the Revoked code.
pub async fn revoke_and_expect_close(s: &Setup, agent_id: &str, session: &ferry_agent::Session) {
    use ferry_tunnel::{CloseCause, CloseCode};
    s.pki
        .ca
        .revoke(&ferry_certs::RevokeSelector::AgentId(agent_id.into()))
        .unwrap();
    let cause = tokio::time::timeout(Duration::from_secs(10), session.closed())
        .await
        .expect("closed in time");
    assert!(
        matches!(
            cause,
            CloseCause::Closed {
                code: CloseCode::Revoked,
                ..
            }
        ),
        "{cause}"
    );
}

/// A small mixed-type batch.
pub fn sample_batch(start: i64, rows: usize) -> arrow_array::RecordBatch {
    use arrow_array::{Decimal128Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("amount", DataType::Decimal128(18, 4), true),
    ]));
    let ids: Vec<i64> = (start..start + rows as i64).collect();
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|i| (i % 7 != 0).then(|| format!("名前 {i} 🚚")))
        .collect();
    let amounts: Vec<Option<i128>> = ids
        .iter()
        .map(|i| (i % 5 != 0).then_some(*i as i128 * 12345 - 7))
        .collect();
    arrow_array::RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(names)),
            Arc::new(
                Decimal128Array::from(amounts)
                    .with_precision_and_scale(18, 4)
                    .unwrap(),
            ),
        ],
    )
    .unwrap()
}

/// A broker and one agent in this process, the agent offering `sources`:
/// jobs submitted to the broker read on the agent across a real QUIC
/// tunnel on loopback.
pub struct Rig {
    pub setup: Setup,
    pub broker: Broker,
    pub group: String,
    pub agent_id: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    agent: Option<tokio::task::JoinHandle<()>>,
    /// The agent's config, to start it again after [`Rig::kill_agent`].
    agent_config: AgentConfig,
    _jobs: tempfile::TempDir,
}

/// A data source of the rig's agent.
pub struct RigSource<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub url: &'a str,
    /// More TOML lines for the source, e.g. `options = { zeroDate = "error" }`
    /// or `tables = ["orders"]`.
    pub extra: &'a str,
}

impl Rig {
    pub async fn start(sources: &[RigSource<'_>]) -> Self {
        Self::start_with(sources, &BTreeMap::new(), None).await
    }

    /// [`Rig::start`], with the agent's config loaded from a file by the
    /// real loader, its secrets (`{ env = "NAME" }`) taken from `env`, and
    /// `tap` seeing every control frame the agent sends from its first.
    pub async fn start_with(
        sources: &[RigSource<'_>],
        env: &BTreeMap<String, String>,
        tap: Option<ferry_broker::server::ControlTap>,
    ) -> Self {
        Self::start_full(sources, env, tap, ferry_broker::data::refuse_all(), "").await
    }

    /// [`Rig::start_with`], with `handler` given every data stream no job
    /// expects, and `agent_extra` appended to the agent's config (e.g. a
    /// `[limits]` section).
    pub async fn start_full(
        sources: &[RigSource<'_>],
        env: &BTreeMap<String, String>,
        tap: Option<ferry_broker::server::ControlTap>,
        handler: DataHandler,
        agent_extra: &str,
    ) -> Self {
        let setup = Setup::new();
        let jobs = tempfile::tempdir().unwrap();
        let mut config = setup.broker_config("127.0.0.1:0".parse().unwrap());
        config.jobs_dir = jobs.path().to_path_buf();
        let broker = Broker::start(config, handler).await.expect("broker starts");
        if let Some(t) = tap {
            broker.tap_control(t);
        }
        let n: u32 = rand::random();
        let (agent_id, group) = (format!("rig-{n:08x}"), format!("idc-{n:08x}"));
        let cert = setup.pki.agent(&agent_id, &group);
        let mut text = setup
            .pki
            .agent_toml(&cert, &broker.local_addr().to_string(), "localhost");
        text.push_str(&format!("\n{agent_extra}\n"));
        for s in sources {
            text.push_str(&format!(
                "\n[sources.{}]\nkind = \"{}\"\nurl = \"{}\"\n{}\n",
                s.name, s.kind, s.url, s.extra
            ));
        }
        let path = setup.pki.dir.path().join(format!("{agent_id}.toml"));
        std::fs::write(&path, &text).expect("agent config written");
        let agent_config = AgentConfig::load_with_env(&path, &|name| env.get(name).cloned())
            .expect("agent config loads");
        let (stop, agent) = spawn_agent(agent_config.clone());
        let start = Instant::now();
        loop {
            let ready = broker
                .registry()
                .list()
                .iter()
                .any(|a| a.agent_id == agent_id && a.sources.len() == sources.len());
            if ready {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "agent did not register"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            setup,
            broker,
            group,
            agent_id,
            stop: Some(stop),
            agent: Some(agent),
            agent_config,
            _jobs: jobs,
        }
    }

    /// Kills the agent where it stands (its task dropped: connections cut, nothing
    /// finished), then starts it again with the same config.
    pub async fn kill_agent(&mut self) {
        if let Some(a) = self.agent.take() {
            a.abort();
            let _ = a.await;
        }
        let (stop, agent) = spawn_agent(self.agent_config.clone());
        self.stop = Some(stop);
        self.agent = Some(agent);
    }

    /// `group/name` of one of the agent's sources, for a job's `datasource`.
    pub fn datasource(&self, name: &str) -> String {
        format!("{}/{name}", self.group)
    }

    /// Submits `job` (YAML) and waits until it ends.
    pub async fn run(&self, job: &str) -> ferry_broker::jobs::JobStatus {
        let vars = ferry_engine::config::default_vars();
        let id = self
            .broker
            .submit(job, vars, None)
            .await
            .expect("job submitted");
        self.wait(&id, Duration::from_secs(300)).await
    }

    /// Waits until job `id` ends.
    /// Runs `write(k)` (k = 1, 2, …) every 300 ms for `writing`, then waits until `done()`,
    /// within 120 s; job `id` must keep running throughout.
    pub async fn write_then_wait(
        &self,
        id: &str,
        writing: Duration,
        mut write: impl FnMut(u32),
        done: impl Fn() -> bool,
    ) {
        let started = std::time::Instant::now();
        let deadline = started + Duration::from_secs(120);
        let mut k = 0;
        loop {
            if started.elapsed() < writing {
                k += 1;
                write(k);
            } else if done() {
                return;
            }
            let status = self.broker.jobs().get(id).await.unwrap().unwrap();
            assert!(
                status.state == ferry_broker::jobs::JobState::Running
                    && std::time::Instant::now() < deadline,
                "not done after {k} writes: {status:?}\n{}",
                log_text()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// The broker's `/metrics` text.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://{}/metrics", self.broker.admin_addr()))
            .await
            .expect("the admin API answers")
            .text()
            .await
            .expect("a metrics text")
    }

    pub async fn wait(&self, id: &str, timeout: Duration) -> ferry_broker::jobs::JobStatus {
        let start = Instant::now();
        loop {
            let s = self
                .broker
                .jobs()
                .get(id)
                .await
                .expect("state store answers")
                .expect("job exists");
            if s.state != ferry_broker::jobs::JobState::Running {
                return s;
            }
            assert!(start.elapsed() < timeout, "job {id} still running: {s:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `POST /v1/jobs/{id}/stop` (what `ferry job stop` calls); the HTTP status.
    pub async fn stop_job(&self, id: &str) -> u16 {
        self.post_job(id, "stop").await
    }

    /// `POST /v1/jobs/{id}/resume` (what `ferry job resume` calls); the
    /// HTTP status.
    pub async fn resume(&self, id: &str) -> u16 {
        self.post_job(id, "resume").await
    }

    async fn post_job(&self, id: &str, action: &str) -> u16 {
        let url = format!("http://{}/v1/jobs/{id}/{action}", self.broker.admin_addr());
        reqwest::Client::new()
            .post(url)
            .send()
            .await
            .expect("the admin API answers")
            .status()
            .as_u16()
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(a) = self.agent.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), a).await;
        }
        self.broker.shutdown().await;
    }
}

/// Runs an agent until its stop sender is used (or dropped).
fn spawn_agent(
    config: AgentConfig,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let _ = ferry_agent::run(config, async {
            let _ = stopped.await;
        })
        .await;
    });
    (stop, agent)
}

/// A TLS client config of our own making with `cert`/`key` (TLS 1.3,
/// Ferry's ALPN, only the CA at `ca` trusted): for raw peers that speak the
/// protocol by hand.
pub fn raw_client(
    ca: &std::path::Path,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> rustls::ClientConfig {
    let provider = ferry_certs::crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for c in ferry_certs::load_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            ferry_certs::load_certs(cert).unwrap(),
            ferry_certs::load_private_key(key).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = vec![ferry_protocol::ALPN.to_vec()];
    cfg
}

/// Starts a QUIC handshake without a client certificate to `to` (a
/// [`BlackholeRelay`](ferry_tests::relay::BlackholeRelay) in front of the
/// broker makes it a half-open one); the endpoint must be kept alive.
pub fn start_handshake(
    ca: &std::path::Path,
    to: SocketAddr,
) -> (quinn::Endpoint, quinn::Connecting) {
    let tls = ferry_certs::client_config_without_client_cert(
        &std::fs::read_to_string(ca).unwrap(),
        &[ferry_protocol::ALPN],
    )
    .unwrap();
    let ep =
        ferry_tunnel::client_endpoint("127.0.0.1:0".parse().unwrap(), tls, &Default::default())
            .unwrap();
    let connecting = ep.connect(to, "localhost").unwrap();
    (ep, connecting)
}

/// A loopback address whose port is free for both UDP and TCP and lies below the kernel's
/// ephemeral range. A broker that comes back on its old port must find it free: while it is
/// down, an agent's TCP connect to an ephemeral port on loopback can pick that very port as
/// its own source port and connect to itself (TCP simultaneous open), holding the port.
pub fn port_below_ephemeral_range() -> SocketAddr {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let span = low.saturating_sub(20_000).max(1);
    let seed = std::process::id() as u64
        ^ u64::from(
            std::time::UNIX_EPOCH
                .elapsed()
                .map_or(0, |d| d.subsec_nanos()),
        );
    for i in 0..span as u64 {
        let port = 20_000 + ((seed + i * 7919) % u64::from(span)) as u16;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpListener::bind(addr).is_ok() && std::net::UdpSocket::bind(addr).is_ok() {
            return addr;
        }
    }
    panic!("no free loopback port between 20000 and {low}");
}
