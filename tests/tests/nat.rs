//! Through NAT: the agent sits in an IDC whose private addresses a router
//! masquerades; the broker sits in `cloud`, which has no way into the IDC.
//! The tunnel comes up from inside, the broker sees the router's public
//! address, a job syncs a table, and a connection opened from `cloud`
//! towards the IDC is refused by the router even with a route to it.
//!
//! ```text
//!   idc (agent) 192.168.N.2 ── router (MASQUERADE) 198.18.N.1 ── 198.18.N.2 cloud (broker)
//! ```
//!
//! The databases listen on the root namespace's loopback, which no
//! namespace reaches: the agent reads and the broker writes through the
//! servers' unix sockets (sockets are not namespaced).
//!
//! Also through NAT: a link of 100 ms round trip losing 2 % of the
//! datagrams each way (a seeded relay in `cloud`, `ferry_tests::impair`),
//! an agent whose address changes mid-job, a router whose public address
//! (and so every NAT mapping) changes mid-job, and a firewall that drops
//! all UDP, where the agent falls back to TLS over TCP.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::db::PgSchema;
use ferry_tests::impair::{ImpairRelay, Impairment};
use ferry_tests::netns::{self, NatSite};
use ferry_tests::pki::Pki;
use ferry_tests::proc::{ferry_bin, Proc};

fn pg_socket_url() -> String {
    std::env::var("FERRY_TEST_PG_SOCKET")
        .unwrap_or_else(|_| "postgres://postgres@localhost/test?host=/var/run/postgresql".into())
}

/// `ferry ARGS` inside `ns`, to completion.
fn ferry_in(ns: &netns::Netns, dir: &Path, args: &[&str]) -> std::process::Output {
    ns.command(&ferry_bin())
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run ferry in a namespace")
}

/// A table in PostgreSQL, a NAT site, certificates and configs, a broker
/// in `cloud` and an agent in `idc` (through `relay` when given).
struct Rig {
    src: PgSchema,
    dst: PgSchema,
    site: NatSite,
    pki: Pki,
    broker: Proc,
    agent: Proc,
    _relay: Option<ImpairRelay>,
}

impl Rig {
    fn start(n: u8, rows: u64, link: Option<(Impairment, Impairment)>) -> Option<Self> {
        Self::start_with(n, rows, link, false)
    }

    /// `udp_blocked`: the router drops every UDP datagram before the agent starts.
    fn start_with(
        n: u8,
        rows: u64,
        link: Option<(Impairment, Impairment)>,
        udp_blocked: bool,
    ) -> Option<Self> {
        if let Err(why) = netns::available() {
            if ferry_tests::missing(&why) {
                return None;
            }
        }
        let src = PgSchema::new("ferry_nat_src")?;
        let dst = PgSchema::new("ferry_nat_dst")?;
        src.sql(&format!(
            "CREATE TABLE t (id bigint PRIMARY KEY, v text, n numeric(12,2));
             INSERT INTO t SELECT g, md5(g::text), g / 7.0 FROM generate_series(1, {rows}) g;"
        ));
        dst.sql("CREATE TABLE t (id bigint, v text, n numeric(12,2));");
        let site = NatSite::new(n);
        if udp_blocked {
            site.block_udp();
        }
        let pki = Pki::new();
        let dir = pki.dir.path().to_path_buf();
        let broker_cert = pki.broker(&[&site.cloud_ip]);
        let agent_cert = pki.agent("nat-01", "idc-nat");
        let listen: SocketAddr = format!("{}:7800", site.cloud_ip).parse().unwrap();
        // Short timeouts: a lost path is noticed in seconds.
        let transport = "\n[transport]\nkeep_alive_secs = 1\nidle_timeout_secs = 5\n";
        std::fs::write(
            dir.join("broker.toml"),
            format!(
                "{}{transport}",
                pki.broker_toml(&broker_cert, &listen.to_string(), "127.0.0.1:7801")
            ),
        )
        .unwrap();
        let relay = link.map(|(up, down)| {
            let at: SocketAddr = format!("{}:7900", site.cloud_ip).parse().unwrap();
            site.cloud
                .run(move || ImpairRelay::start(at, listen, up, down))
                .expect("start the relay")
        });
        let dial = relay.as_ref().map_or(listen, |r| r.addr);
        std::fs::write(
            dir.join("agent.toml"),
            format!(
                "{}{transport}\n[tcp_fallback]\nquic_wait_secs = 2\n[sources.src]\nkind = \"postgres\"\nurl = \"{}\"\n",
                pki.agent_toml(&agent_cert, &dial.to_string(), &site.cloud_ip),
                pg_socket_url()
            ),
        )
        .unwrap();
        let mut cmd = site.cloud.command(&ferry_bin());
        cmd.current_dir(&dir)
            .args(["broker", "run", "--config", "broker.toml"]);
        let broker = Proc::spawn("broker", cmd);
        assert!(
            broker.wait_for("broker listening", Duration::from_secs(15)),
            "{}",
            broker.output()
        );
        let mut cmd = site.idc.command(&ferry_bin());
        cmd.current_dir(&dir)
            .args(["agent", "run", "--config", "agent.toml"]);
        let agent = Proc::spawn("agent", cmd);
        assert!(
            agent.wait_for("tunnel up", Duration::from_secs(20)),
            "tunnel did not come up through the NAT:\n{}",
            agent.output()
        );
        Some(Self {
            src,
            dst,
            site,
            pki,
            broker,
            agent,
            _relay: relay,
        })
    }

    fn dir(&self) -> &Path {
        self.pki.dir.path()
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        ferry_in(&self.site.cloud, self.dir(), args)
    }

    /// Writes the job (insert into a table without a key) and submits it.
    fn submit(&self, speed: &str) -> String {
        std::fs::write(
            self.dir().join("job.yaml"),
            format!(
                "reader:\n  name: postgresqlreader\n  parameter:\n    datasource: idc-nat/src\n    table: {s}.t\n    splitPk: id\n    fetchSize: 1000\n\
                 writer:\n  name: postgresqlwriter\n  parameter:\n    url: \"{url}\"\n    table: {d}.t\n    writeMode: insert\n\
                 setting:\n  speed: {speed}\n  retry: {{attempts: 10, backoffMs: 200}}\n",
                s = self.src.name,
                d = self.dst.name,
                url = pg_socket_url()
            ),
        )
        .unwrap();
        let out = self.cli(&[
            "job",
            "--admin",
            "127.0.0.1:7801",
            "submit",
            "--detach",
            "job.yaml",
        ]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn status(&self, id: &str) -> serde_json::Value {
        let out = self.cli(&["job", "--admin", "127.0.0.1:7801", "status", id, "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_slice(&out.stdout).expect("status JSON")
    }

    fn wait_end(&self, id: &str, timeout: Duration) -> serde_json::Value {
        let start = Instant::now();
        loop {
            let s = self.status(id);
            if s["state"] != "running" {
                return s;
            }
            assert!(
                start.elapsed() < timeout,
                "job did not end in {timeout:?}: {s:#}\nbroker:\n{}\nagent:\n{}",
                self.broker.output(),
                self.agent.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn assert_target_equals_source(&self) {
        let q = "SELECT count(*), count(DISTINCT id), md5(string_agg(id || ':' || v || ':' || n, ',' ORDER BY id)) FROM t";
        assert_eq!(
            self.dst.sql(q).trim(),
            self.src.sql(q).trim(),
            "target equals source"
        );
    }
}

#[test]
fn a_job_syncs_from_behind_nat_and_cloud_cannot_reach_in() {
    let Some(rig) = Rig::start(21, 20_000, None) else {
        return;
    };
    let site = &rig.site;
    // The broker sees the router's public address, not the IDC's.
    let list = rig.cli(&["broker", "agents", "--admin", "127.0.0.1:7801", "--json"]);
    let agents: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    let remote: SocketAddr = agents[0]["remote_addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(remote.ip().to_string(), site.public_ip, "{agents}");

    let id = rig.submit("{channel: 2}");
    let end = rig.wait_end(&id, Duration::from_secs(60));
    assert_eq!(end["state"], "succeeded", "{end:#}");
    rig.assert_target_equals_source();

    // Nothing in cloud opens a connection into the IDC: with no route it
    // cannot even try; given a route, the router drops the attempt.
    let inside = site.idc.run(|| TcpListener::bind("0.0.0.0:0").unwrap());
    let target: SocketAddr = format!("{}:{}", site.idc_ip, inside.local_addr().unwrap().port())
        .parse()
        .unwrap();
    let direct = site
        .cloud
        .run(move || TcpStream::connect_timeout(&target, Duration::from_secs(2)));
    assert!(direct.is_err(), "cloud has no route into the IDC");
    site.cloud.exec(&[
        "ip",
        "route",
        "add",
        &format!("{}/32", site.idc_ip),
        "via",
        &site.public_ip,
    ]);
    let before = site.forward_drops();
    let routed = site
        .cloud
        .run(move || TcpStream::connect_timeout(&target, Duration::from_secs(2)));
    let err = routed.expect_err("the router must not forward a new flow into the IDC");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "dropped: {err}");
    assert!(site.forward_drops() > before, "the router dropped it");
}

#[test]
fn a_job_syncs_over_a_long_lossy_link_through_nat() {
    // 50 ms each way (100 ms round trip), ±5 ms, 2 % loss each way.
    let link = |seed| {
        Impairment::delay(Duration::from_millis(50))
            .jitter(Duration::from_millis(5))
            .loss(0.02)
            .seed(seed)
    };
    let Some(rig) = Rig::start(22, 50_000, Some((link(7), link(8)))) else {
        return;
    };
    let id = rig.submit("{channel: 2}");
    let end = rig.wait_end(&id, Duration::from_secs(120));
    assert_eq!(end["state"], "succeeded", "{end:#}");
    rig.assert_target_equals_source();
    let stats = rig._relay.as_ref().unwrap().stats();
    assert!(
        stats.up.dropped > 0 && stats.down.dropped > 0,
        "the link did lose datagrams: {stats:?}"
    );
    eprintln!(
        "lossy link: {} rows in {:.1} s; relay {stats:?}",
        end["progress"]["records_written"], end["progress"]["elapsed_secs"]
    );
}

#[test]
fn a_job_goes_on_when_the_agent_is_readdressed() {
    let Some(rig) = Rig::start(23, 60_000, None) else {
        return;
    };
    let site = &rig.site;
    // About 10 s of work, so the move lands mid-job.
    let id = rig.submit("{channel: 2, record: 6000}");
    wait_rows(&rig, &id, 10_000);
    // The agent's host gets a new address (DHCP, a failover): its packets
    // leave from it, and the NAT maps them to a new public port.
    site.readdress_idc(3);
    let end = rig.wait_end(&id, Duration::from_secs(90));
    assert_eq!(end["state"], "succeeded", "{end:#}\n{}", rig.agent.output());
    rig.assert_target_equals_source();
    let agent_log = rig.agent.output();
    // QUIC moved the connection to the new path: no second handshake.
    assert_eq!(
        agent_log.matches("tunnel up").count(),
        1,
        "the connection migrated instead of reconnecting:\n{agent_log}"
    );
    eprintln!(
        "re-addressed: {} task retries; agent log tail:\n{}",
        end["tasks"]
            .as_array()
            .map(|t| t
                .iter()
                .map(|t| t["attempts"].as_u64().unwrap_or(1) - 1)
                .sum::<u64>())
            .unwrap_or(0),
        agent_log
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Waits until `rows` are written.
fn wait_rows(rig: &Rig, id: &str, rows: u64) {
    let start = Instant::now();
    while rig.status(id)["progress"]["records_written"].as_u64() < Some(rows) {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "job did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn agents(rig: &Rig) -> serde_json::Value {
    let list = rig.cli(&["broker", "agents", "--admin", "127.0.0.1:7801", "--json"]);
    assert!(list.status.success(), "{list:?}");
    serde_json::from_slice(&list.stdout).unwrap()
}

#[test]
fn a_job_goes_on_when_the_nat_mapping_changes() {
    let Some(rig) = Rig::start(24, 60_000, None) else {
        return;
    };
    let site = &rig.site;
    let id = rig.submit("{channel: 2, record: 6000}");
    wait_rows(&rig, &id, 10_000);
    // The site's uplink gets a new public address (an ISP re-assigns it):
    // MASQUERADE forgets every mapping of the old address, so the agent's
    // next datagram leaves from a new address and port. The agent itself
    // sees nothing change.
    let new_public = site.readdress_public(3);
    let end = rig.wait_end(&id, Duration::from_secs(90));
    assert_eq!(end["state"], "succeeded", "{end:#}\n{}", rig.agent.output());
    rig.assert_target_equals_source();
    // The broker follows the agent to its new public address...
    let remote: SocketAddr = agents(&rig)[0]["remote_addr"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remote.ip().to_string(), new_public);
    // ... on the same connection.
    let agent_log = rig.agent.output();
    assert_eq!(
        agent_log.matches("tunnel up").count(),
        1,
        "the broker followed the new mapping instead of a reconnect:\n{agent_log}"
    );
}

#[test]
fn the_agent_falls_back_to_tls_over_tcp_where_udp_is_blocked() {
    let Some(rig) = Rig::start_with(25, 30_000, None, true) else {
        return;
    };
    let site = &rig.site;
    // The agent says so in its log...
    let agent_log = rig.agent.output();
    assert!(
        agent_log.contains("no answer over QUIC") && agent_log.contains("tunnel up over TLS/TCP"),
        "{agent_log}"
    );
    // ... and the broker in its agent list, which shows the router's address.
    let a = &agents(&rig)[0];
    assert_eq!(a["transport"], "tls-tcp", "{a}");
    let remote: SocketAddr = a["remote_addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(remote.ip().to_string(), site.public_ip);
    let table = rig.cli(&["broker", "agents", "--admin", "127.0.0.1:7801"]);
    assert!(
        String::from_utf8_lossy(&table.stdout).contains("tls-tcp"),
        "{table:?}"
    );
    assert!(site.udp_drops() > 0, "QUIC was tried and dropped");

    let id = rig.submit("{channel: 2}");
    let end = rig.wait_end(&id, Duration::from_secs(60));
    assert_eq!(end["state"], "succeeded", "{end:#}");
    rig.assert_target_equals_source();
    assert!(
        rig.broker
            .output()
            .lines()
            .any(|l| l.contains("agent connected") && l.contains("transport=tls-tcp")),
        "the broker logs the session's transport"
    );
}
