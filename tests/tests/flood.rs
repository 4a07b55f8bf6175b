//! Slow clients and junk cannot keep agents out or fill the broker's log.
//!
//! The real `ferry broker run` process, default limits but a long handshake
//! timeout (so stalled handshakes stay stalled for the whole test): 64
//! agents connect; a slow client then stalls 64 handshakes (bare TCP
//! connections that never start TLS, and QUIC handshakes whose answers are
//! swallowed); agents 65…200 connect anyway; then a flood of junk TCP
//! connections and UDP datagrams leaves every session as it was and adds a
//! bounded number of lines to the log.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use ferry_agent::AgentConfig;
use ferry_tests::pki::{CertFiles, Pki};
use ferry_tests::proc::{ferry_bin, free_port, Proc};

const FIRST: usize = 64;
const ALL: usize = 200;
const STALLED_TCP: usize = 48;
const STALLED_QUIC: usize = 16;

fn agent_config(pki: &Pki, cert: &CertFiles, i: usize, broker: SocketAddr) -> AgentConfig {
    let mut text = format!(
        "broker = \"{broker}\"\nserver_name = \"localhost\"\nbind = \"127.2.{}.{}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n",
        i / 250,
        i % 250 + 1,
        pki.ca_pem().display(),
        cert.cert.display(),
        cert.key.display()
    );
    if i % 4 == 3 {
        text.push_str(&format!(
            "\n[tcp_fallback]\nmode = \"always\"\naddress = \"{broker}\"\n"
        ));
    }
    toml_from(&text)
}

/// id → session id of the agents the broker lists.
async fn sessions(admin: SocketAddr) -> HashMap<String, u64> {
    let Ok(resp) = reqwest::get(format!("http://{admin}/v1/agents")).await else {
        return HashMap::new();
    };
    let rows: Vec<serde_json::Value> = resp.json().await.unwrap_or_default();
    rows.iter()
        .filter_map(|r| {
            Some((
                r["agent_id"].as_str()?.to_string(),
                r["session_id"].as_u64()?,
            ))
        })
        .collect()
}

async fn metric(admin: SocketAddr, name: &str) -> u64 {
    let text = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

async fn wait_for_agents(admin: SocketAddr, n: usize, within: Duration) -> HashMap<String, u64> {
    let start = Instant::now();
    loop {
        let s = sessions(admin).await;
        if s.len() >= n {
            return s;
        }
        assert!(
            start.elapsed() < within,
            "only {} of {n} agents within {within:?}",
            s.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A TCP connection from `local` to the broker that never says a word.
fn silent_tcp(local: IpAddr, to: SocketAddr) -> std::io::Result<std::net::TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect(&to.into())?;
    Ok(socket.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_get_in_while_64_handshakes_are_stalled_and_junk_changes_nothing() {
    logs();
    let pki = Pki::new();
    let broker_cert = pki.broker(&["localhost", "127.0.0.1"]);
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = pki.path().join("broker.toml");
    let text = pki.broker_toml(&broker_cert, &addr.to_string(), &admin.to_string());
    // Default limits (256 slots, 32 a source, 50 a second a source), but
    // stalled handshakes are held for the whole test.
    let text = format!("{text}\n[limits]\nhandshake_timeout_secs = 60\n");
    std::fs::write(&config, text).unwrap();
    let mut cmd = Command::new(ferry_bin());
    cmd.args(["broker", "run", "--config"]).arg(&config);
    let broker = Proc::spawn("broker", cmd);
    assert!(broker.wait_for("broker listening", Duration::from_secs(30)));

    let certs: Vec<CertFiles> = (0..ALL)
        .map(|i| pki.agent(&format!("crowd-{i:03}"), "g"))
        .collect();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut runs = Vec::new();
    let mut start_agent = |i: usize| {
        let config = agent_config(&pki, &certs[i], i, addr);
        let mut stopped = stopped.clone();
        runs.push(tokio::spawn(ferry_agent::run(config, async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    };
    for i in 0..FIRST {
        start_agent(i);
    }
    wait_for_agents(admin, FIRST, Duration::from_secs(60)).await;

    // The slow client: 48 TCP connections from three addresses that never
    // start TLS, and 16 QUIC handshakes whose answers are swallowed.
    let mut stalled_tcp = Vec::new();
    for k in 0..STALLED_TCP {
        let from = IpAddr::V4(Ipv4Addr::new(127, 3, 0, 1 + (k / 16) as u8));
        stalled_tcp.push(silent_tcp(from, addr).expect("TCP connect"));
    }
    let relays: Vec<_> = (0..STALLED_QUIC)
        .map(|_| ferry_tests::relay::BlackholeRelay::new(addr, 1))
        .collect();
    let mut half_open = Vec::new();
    for r in &relays {
        let (ep, connecting) = start_handshake(&pki.ca_pem(), r.addr);
        half_open.push((ep, tokio::spawn(connecting)));
    }
    let stall_start = Instant::now();
    eventually_async("64 handshakes stalled", Duration::from_secs(15), || async {
        metric(admin, "ferry_handshakes_in_progress").await >= 64
    })
    .await;
    // One source cannot hold more than its share: 40 more silent
    // connections from one of the slow client's addresses, 16 held at most.
    let busy_before = metric(
        admin,
        "ferry_connections_refused_total{reason=\"source_busy\"",
    )
    .await;
    let mut extra = Vec::new();
    for _ in 0..40 {
        if let Ok(c) = silent_tcp(IpAddr::V4(Ipv4Addr::new(127, 3, 0, 1)), addr) {
            extra.push(c);
        }
    }
    eventually_async(
        "a source held to its share",
        Duration::from_secs(10),
        || async {
            metric(
                admin,
                "ferry_connections_refused_total{reason=\"source_busy\"",
            )
            .await
                >= busy_before + 24
        },
    )
    .await;

    // Agents 65…200 connect while the handshakes stay stalled.
    for i in FIRST..ALL {
        start_agent(i);
    }
    let before = wait_for_agents(admin, ALL, Duration::from_secs(40)).await;
    let in_progress = metric(admin, "ferry_handshakes_in_progress").await;
    eprintln!(
        "flood: {ALL} agents connected {:.1}s after 64 handshakes were stalled; {in_progress} handshakes still in progress",
        stall_start.elapsed().as_secs_f64()
    );
    assert!(
        in_progress >= 64,
        "the stalled handshakes were still held: {in_progress}"
    );

    // The junk flood: TCP connections that send garbage, and datagrams.
    let log_before = broker.output().len();
    let lines_before = broker.output().lines().count();
    let junk = tokio::task::spawn_blocking(move || {
        let mut sent_tcp = 0;
        for k in 0..2000usize {
            let from = IpAddr::V4(Ipv4Addr::new(127, 4, 0, 1 + (k % 8) as u8));
            if let Ok(mut c) = silent_tcp(from, addr) {
                let garbage: Vec<u8> = (0..(k % 300) + 1).map(|_| rand::random::<u8>()).collect();
                let _ = c.write_all(&garbage);
                sent_tcp += 1;
            }
        }
        let socks: Vec<_> = (0..8)
            .map(|k| std::net::UdpSocket::bind(format!("127.4.1.{}:0", k + 1)).unwrap())
            .collect();
        for i in 0..20_000usize {
            let len = 1 + (i * 7919) % 1400;
            let mut bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            if i % 3 == 0 && len > 8 {
                // Long-header packets of QUIC v1, with garbage after.
                bytes[0] = 0xc0;
                bytes[1..5].copy_from_slice(&1u32.to_be_bytes());
            }
            let _ = socks[i % 8].send_to(&bytes, addr);
        }
        sent_tcp
    });
    let sent_tcp = junk.await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = sessions(admin).await;
    let added = &broker.output()[log_before..];
    let new_lines = broker.output().lines().count() - lines_before;
    eprintln!(
        "flood: {sent_tcp} junk TCP connections and 20000 junk datagrams added {new_lines} log lines ({} bytes); refused: tls {}, transport {}, source_rate {}, source_busy {}",
        added.len(),
        metric(admin, "ferry_connections_refused_total{reason=\"tls\"").await,
        metric(admin, "ferry_connections_refused_total{reason=\"transport\"").await,
        metric(admin, "ferry_connections_refused_total{reason=\"source_rate\"").await,
        metric(admin, "ferry_connections_refused_total{reason=\"source_busy\"").await,
    );
    assert_eq!(
        after, before,
        "every agent kept its session through the flood"
    );
    assert!(
        new_lines <= 8,
        "the flood adds at most a line per refusal reason:\n{added}"
    );
    let refused: u64 = metric(admin, "ferry_connections_refused_total").await;
    assert!(
        refused >= sent_tcp as u64,
        "every junk connection is counted: {refused} < {sent_tcp}"
    );

    let _ = stop.send(true);
    for r in runs {
        let _ = tokio::time::timeout(Duration::from_secs(10), r).await;
    }
    drop((stalled_tcp, extra, half_open, relays));
}

/// Waits until the async `f` is true.
async fn eventually_async<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out after {timeout:?} waiting for: {what}");
}
