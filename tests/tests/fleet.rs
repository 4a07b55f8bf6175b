//! One broker, a thousand agents: all connect, the broker is killed
//! (SIGKILL) and restarted, and every agent comes back over the transport it
//! had, within a stated bound, spread out in time.
//!
//! The broker is the real `ferry broker run` process (so it can be killed
//! and its memory and CPU read from /proc). The agents run in this test
//! process, each with its own certificate and key, its own source address
//! on loopback (127.1.x.y) and its own QUIC endpoint; every fourth one is
//! configured for TLS/TCP. Real mutual TLS throughout.
//!
//! `FERRY_FLEET_AGENTS` changes the number of agents (default 1000);
//! `FERRY_BIN` picks the broker binary (`bench/fleet.sh` uses a release
//! build for the figures in the README).

mod common;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use ferry_agent::AgentConfig;
use ferry_tests::pki::{CertFiles, Pki};
use ferry_tests::proc::{cpu_time, ferry_bin, free_port, rss_kib, Proc};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// How long all agents may take to be back after the broker was killed.
/// Its parts: a QUIC agent learns of the restart at its next packet (a
/// keep-alive or heartbeat, every 10 s), which the new process answers with
/// a stateless reset; every agent then waits a random delay within the
/// broker's reconnect spread (agents / 200 per second: 5 s for 1000); an
/// attempt that finds the broker still starting costs up to `quic_wait_secs`
/// (5 s) and one more backoff window. 10 + 5 + 5 + 5, with margin.
const BACK_WITHIN: Duration = Duration::from_secs(45);

fn fleet_size() -> usize {
    std::env::var("FERRY_FLEET_AGENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// Agent `i`'s own source address: 127.1.x.y.
fn source(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 1, (i / 250) as u8, (i % 250 + 1) as u8))
}

fn over_tcp(i: usize) -> bool {
    i % 4 == 3
}

fn agent_config(pki: &Pki, cert: &CertFiles, i: usize, broker: SocketAddr) -> AgentConfig {
    let mut text = format!(
        "broker = \"{broker}\"\nserver_name = \"localhost\"\nbind = \"{}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        source(i),
        pki.ca_pem().display(),
        cert.cert.display(),
        cert.key.display()
    );
    if over_tcp(i) {
        text.push_str(&format!(
            "\n[tcp_fallback]\nmode = \"always\"\naddress = \"{broker}\"\n"
        ));
    }
    toml_from(&text)
}

fn start_broker(config: &Path) -> Proc {
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["broker", "run", "--config"]).arg(config);
    let p = Proc::spawn("broker", cmd);
    assert!(
        p.wait_for("broker listening", Duration::from_secs(30)),
        "broker did not start:\n{}",
        p.output()
    );
    p
}

/// The agents the broker lists: id → (session id, transport, connected since).
async fn listed(admin: SocketAddr) -> HashMap<String, (u64, String, OffsetDateTime)> {
    let url = format!("http://{admin}/v1/agents");
    let Ok(resp) = reqwest::get(&url).await else {
        return HashMap::new();
    };
    let Ok(rows) = resp.json::<Vec<serde_json::Value>>().await else {
        return HashMap::new();
    };
    rows.into_iter()
        .filter_map(|r| {
            let since = OffsetDateTime::parse(r["connected_since"].as_str()?, &Rfc3339).ok()?;
            Some((
                r["agent_id"].as_str()?.to_string(),
                (
                    r["session_id"].as_u64()?,
                    r["transport"].as_str()?.to_string(),
                    since,
                ),
            ))
        })
        .collect()
}

/// Polls until `want` agents are listed with the transport `expected`
/// says, each in a session newer than `after`; returns the listing.
async fn wait_for_fleet(
    admin: SocketAddr,
    expected: &HashMap<String, String>,
    after: OffsetDateTime,
    within: Duration,
) -> Result<HashMap<String, (u64, String, OffsetDateTime)>, String> {
    let start = Instant::now();
    let mut last = HashMap::new();
    while start.elapsed() < within {
        last = listed(admin).await;
        let back = expected
            .iter()
            .filter(|(id, t)| {
                last.get(*id)
                    .is_some_and(|(_, transport, since)| transport == *t && *since > after)
            })
            .count();
        if back == expected.len() {
            return Ok(last);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let missing: Vec<_> = expected
        .iter()
        .filter(|(id, t)| {
            !last
                .get(*id)
                .is_some_and(|(_, transport, since)| transport == *t && *since > after)
        })
        .map(|(id, t)| format!("{id}({t}): {:?}", last.get(id)))
        .take(10)
        .collect();
    Err(format!(
        "{} of {} agents not back over their transport within {within:?}; first: {missing:?}",
        missing.len(),
        expected.len()
    ))
}

/// Seconds from `origin` to each arrival, sorted.
fn arrivals(
    fleet: &HashMap<String, (u64, String, OffsetDateTime)>,
    origin: OffsetDateTime,
) -> Vec<f64> {
    let mut v: Vec<f64> = fleet
        .values()
        .map(|(_, _, since)| (*since - origin).as_seconds_f64())
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Arrivals in each whole second after the origin.
fn per_second(sorted: &[f64]) -> Vec<usize> {
    let seconds = sorted.last().map(|l| l.max(0.0) as usize + 1).unwrap_or(0);
    let mut buckets = vec![0; seconds];
    for t in sorted {
        buckets[(t.max(0.0) as usize).min(seconds - 1)] += 1;
    }
    buckets
}

fn now_utc() -> OffsetDateTime {
    OffsetDateTime::from(SystemTime::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_agents_come_back_after_the_broker_is_killed() {
    logs();
    let n = fleet_size();
    let pki = Pki::new();
    let broker_cert = pki.broker(&["localhost", "127.0.0.1"]);
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let broker_addr = SocketAddr::from(([127, 0, 0, 1], port));
    let config = pki.path().join("broker.toml");
    std::fs::write(
        &config,
        pki.broker_toml(&broker_cert, &broker_addr.to_string(), &admin.to_string()),
    )
    .unwrap();

    let issuing = Instant::now();
    let certs: Vec<CertFiles> = (0..n)
        .map(|i| pki.agent(&format!("fleet-{i:05}"), &format!("site-{}", i % 10)))
        .collect();
    eprintln!(
        "fleet: {n} agent certificates issued in {:.1}s",
        issuing.elapsed().as_secs_f64()
    );
    let expected: HashMap<String, String> = (0..n)
        .map(|i| {
            let t = if over_tcp(i) { "tls-tcp" } else { "quic" };
            (format!("fleet-{i:05}"), t.to_string())
        })
        .collect();
    let over_tcp_count = (0..n).filter(|&i| over_tcp(i)).count();

    let mut broker = start_broker(&config);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss = rss_kib(broker.pid());

    // All agents at once, as after a site-wide power cut.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = now_utc();
    let t0 = Instant::now();
    let mut agents = Vec::with_capacity(n);
    for (i, cert) in certs.iter().enumerate() {
        let config = agent_config(&pki, cert, i, broker_addr);
        let mut stopped = stopped.clone();
        agents.push(tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.wait_for(|s| *s).await;
            };
            ferry_agent::runner::run(config, shutdown).await
        }));
    }
    let fleet = match wait_for_fleet(
        admin,
        &expected,
        started - time::Duration::seconds(1),
        Duration::from_secs(180),
    )
    .await
    {
        Ok(f) => f,
        Err(e) => panic!("{e}\nbroker:\n{}", tail(&broker.output(), 40)),
    };
    let connect = arrivals(&fleet, started);
    eprintln!(
        "fleet: all {n} agents ({over_tcp_count} over TLS/TCP) connected in {:.1}s; arrivals p50 {:.1}s, p90 {:.1}s, max {:.1}s",
        t0.elapsed().as_secs_f64(),
        percentile(&connect, 0.5),
        percentile(&connect, 0.9),
        percentile(&connect, 1.0),
    );

    // Idle: what 1000 agents cost the broker.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_before = cpu_time(broker.pid());
    let window = Duration::from_secs(20);
    tokio::time::sleep(window).await;
    let cpu = cpu_time(broker.pid()).saturating_sub(cpu_before);
    let full_rss = rss_kib(broker.pid());
    eprintln!(
        "fleet: broker RSS {:.1} MiB idle, {:.1} MiB with {n} agents ({:.1} KiB per agent); CPU with {n} idle agents: {:.2}% of one core over {}s",
        idle_rss as f64 / 1024.0,
        full_rss as f64 / 1024.0,
        full_rss.saturating_sub(idle_rss) as f64 / n as f64,
        cpu.as_secs_f64() * 100.0 / window.as_secs_f64(),
        window.as_secs()
    );

    // Kill the broker without warning and start it again at once.
    let killed = now_utc();
    let sessions_before: HashMap<String, u64> = fleet
        .iter()
        .map(|(id, (session, _, _))| (id.clone(), *session))
        .collect();
    drop(broker);
    broker = start_broker(&config);
    let restarted = now_utc();
    let back = match wait_for_fleet(admin, &expected, killed, BACK_WITHIN).await {
        Ok(f) => f,
        Err(e) => panic!(
            "{e}\nbroker (restarted):\n{}\nagent log tail:\n{}",
            tail(&broker.output(), 40),
            tail(&log_text(), 40)
        ),
    };
    let times = arrivals(&back, killed);
    let buckets = per_second(&times);
    let peak = buckets.iter().copied().max().unwrap_or(0);
    eprintln!(
        "fleet: broker SIGKILLed and restarted ({:.2}s to listen again); all {n} back over their own transport: p50 {:.1}s, p90 {:.1}s, max {:.1}s after the kill (bound {}s)",
        (restarted - killed).as_seconds_f64(),
        percentile(&times, 0.5),
        percentile(&times, 0.9),
        percentile(&times, 1.0),
        BACK_WITHIN.as_secs()
    );
    eprintln!("fleet: arrivals per second after the kill: {buckets:?} (peak {peak})");
    let resets = log_text()
        .lines()
        .filter(|l| l.contains("tunnel lost") && l.contains("reset by peer"))
        .count();
    let timed_out = log_text()
        .lines()
        .filter(|l| l.contains("tunnel lost") && l.contains("timed out"))
        .count();
    eprintln!(
        "fleet: {resets} QUIC agents heard a stateless reset from the new process, {timed_out} waited out their idle timeout"
    );

    for (id, session) in &sessions_before {
        assert_ne!(back[id].0, *session, "{id} has a new session");
    }
    // A reset is one UDP packet: on a loaded two-core machine one may be
    // dropped (it was, once in five runs), and that agent then waits out its
    // idle timeout, still inside the bound checked below. Without resets
    // every QUIC agent would.
    assert!(
        timed_out * 100 <= resets.max(1),
        "{timed_out} agents waited out their idle timeout against {resets} reset: the new process \
         should reset the old connections (at most 1 in 100 may lose the packet)"
    );
    assert!(
        resets >= (n - over_tcp_count) * 9 / 10,
        "QUIC agents learn of the restart from a stateless reset: {resets} of {}",
        n - over_tcp_count
    );
    assert!(
        peak * 100 <= n * 40,
        "arrivals are spread out: {peak} of {n} came back in one second ({buckets:?})"
    );
    assert!(
        percentile(&times, 0.9) - percentile(&times, 0.1) >= 2.0,
        "arrivals spread over seconds, not a wall: {times:?}"
    );

    let _ = stop.send(true);
    for a in agents {
        let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
    }
    drop(broker);
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
