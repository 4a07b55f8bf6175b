//! QUIC or TLS/TCP, decided on evidence: a broker that is down for a while
//! is not a network that blocks UDP, and an agent that did fall back moves
//! to QUIC again once QUIC gets through.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use ferry_broker::data::refuse_all;
use ferry_broker::Broker;
use ferry_tunnel::Transport;

/// Agents in `auto` mode with default fallback settings (QUIC given 5 s),
/// running their reconnect loop against `addr`.
fn start_agents(
    s: &Setup,
    prefix: &str,
    n: usize,
    addr: SocketAddr,
) -> (
    tokio::sync::watch::Sender<bool>,
    Vec<tokio::task::JoinHandle<Result<(), ferry_agent::ConnectError>>>,
) {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runs = (0..n)
        .map(|i| {
            let cert = s.pki.agent(&format!("{prefix}-{i:02}"), "g");
            let mut config = s.agent_config(&cert, addr);
            // Production defaults, not the test PKI's quick reconnects.
            config.reconnect = Default::default();
            config.tcp_fallback = Default::default();
            let mut stopped = stopped.clone();
            tokio::spawn(ferry_agent::run(config, async move {
                let _ = stopped.wait_for(|s| *s).await;
            }))
        })
        .collect();
    (stop, runs)
}

/// Every agent listed over `transport`.
fn all_over(broker: &Broker, n: usize, transport: Transport) -> bool {
    let agents = broker.registry().list();
    agents.len() == n && agents.iter().all(|a| a.transport == transport)
}

async fn keep_quic_through_a_restart_of(down: Duration, prefix: &str) {
    let s = Setup::new();
    let addr = port_below_ephemeral_range();
    let broker = s.broker_on(addr, refuse_all()).await;
    let n = 6;
    let (stop, runs) = start_agents(&s, prefix, n, addr);
    eventually("all agents over QUIC", Duration::from_secs(30), || {
        all_over(&broker, n, Transport::Quic)
    })
    .await;

    // A graceful restart: sessions closed with "shutting down", then
    // nothing on either port for `down`.
    broker.shutdown().await;
    tokio::time::sleep(down).await;
    let broker = s.broker_on(addr, refuse_all()).await;

    // The agents tried while it was down: QUIC got no answer, and neither
    // did TCP (refused), so none of them took the broker for a UDP block.
    eventually("all agents back over QUIC", Duration::from_secs(90), || {
        all_over(&broker, n, Transport::Quic)
    })
    .await;
    let metrics = broker.metrics_text();
    assert!(
        !metrics.contains("ferry_sessions_opened_total{transport=\"tls-tcp\"}"),
        "no agent came back over TLS/TCP:\n{metrics}"
    );
    // Still on QUIC a while later: nothing moves them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(all_over(&broker, n, Transport::Quic));
    let _ = stop.send(true);
    for r in runs {
        r.await.unwrap().unwrap();
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_quic_through_a_graceful_restart_of_5_s() {
    keep_quic_through_a_restart_of(Duration::from_secs(5), "five").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_keep_quic_through_a_graceful_restart_of_30_s() {
    keep_quic_through_a_restart_of(Duration::from_secs(30), "thirty").await;
    assert!(
        log_text().contains("which is no reason to leave QUIC"),
        "the agents say why they did not fall back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_on_tls_tcp_moves_to_quic_once_quic_gets_through() {
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let tcp = broker.tcp_addr().expect("the fallback listens");
    // The agent's UDP path drops everything until it is opened.
    let path = ferry_tests::relay::SwitchRelay::new(broker.local_addr());
    let cert = s.pki.agent("mover-01", "g");
    let mut config = s.agent_config(&cert, path.addr);
    config.tcp_fallback.address = Some(tcp.to_string());
    config.tcp_fallback.quic_wait_secs = 1;
    config.tcp_fallback.probe_quic_secs = 2;

    // Blocked UDP, a broker that answers TCP: a fallback, and it says why.
    let connector = ferry_agent::connect::Connector::new(&config).unwrap();
    let session = connector.connect().await.expect("falls back");
    assert_eq!(session.transport(), Transport::TlsTcp);
    assert!(
        connector.tcp_reason().contains("no answer twice"),
        "{}",
        connector.tcp_reason()
    );
    // A probe while the agent is busy changes nothing, even once QUIC
    // works: the TLS/TCP session stays the broker's.
    path.open();
    let probe = connector.probe_quic(|| false).await.unwrap();
    assert!(probe.is_none(), "a busy agent does not move");
    eventually("only the TLS/TCP session", Duration::from_secs(5), || {
        all_over(&broker, 1, Transport::TlsTcp)
    })
    .await;
    session.close("done").await;
    eventually("session gone", Duration::from_secs(5), || {
        broker.registry().is_empty()
    })
    .await;

    // The agent's own loop: starts on TLS/TCP (UDP blocked), probes every
    // ~2 s, and moves to QUIC at the first probe after the path opens.
    let path = ferry_tests::relay::SwitchRelay::new(broker.local_addr());
    config.broker = path.addr.to_string();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut stopped_rx = stopped.clone();
    let run = tokio::spawn(ferry_agent::run(config, async move {
        let _ = stopped_rx.wait_for(|s| *s).await;
    }));
    eventually("connected over TLS/TCP", Duration::from_secs(20), || {
        all_over(&broker, 1, Transport::TlsTcp)
    })
    .await;
    let on_tcp = broker.registry().list()[0].session_id;
    // Probes while UDP is still blocked leave the tunnel where it is.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(all_over(&broker, 1, Transport::TlsTcp));
    assert_eq!(broker.registry().list()[0].session_id, on_tcp);
    path.open();
    eventually("moved to QUIC", Duration::from_secs(20), || {
        all_over(&broker, 1, Transport::Quic)
    })
    .await;
    assert!(
        wait_log(
            &["QUIC gets through again", "moved from TLS/TCP to QUIC"],
            Duration::from_secs(5)
        )
        .await
    );
    assert!(
        wait_log(
            &["agent moved to another transport", "mover-01"],
            Duration::from_secs(5)
        )
        .await
    );
    // And it stays there: the TLS/TCP session's end is not a lost tunnel.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(all_over(&broker, 1, Transport::Quic));
    let _ = stop.send(true);
    drop(stopped);
    run.await.unwrap().unwrap();
    broker.shutdown().await;
}
