//! The TLS-over-TCP fallback in one process, over loopback: the same
//! protocol, mutual authentication and close reasons as over QUIC, and the
//! agent's switch to it when QUIC gets no answer. (Through a NAT whose
//! router drops UDP: `nat.rs`.)

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ferry_agent::connect::Connector;
use ferry_agent::{AgentConfig, ConnectError};
use ferry_broker::data::{counting, refuse_all, Counters};
use ferry_certs::Refusal;
use ferry_protocol::data::{Compression, StreamHeader};
use ferry_tests::pki::CertFiles;
use ferry_tunnel::{CloseCause, Transport};

fn header(task: &str, compression: Compression) -> StreamHeader {
    StreamHeader {
        task_id: task.into(),
        split: 0,
        resume_after_seq: None,
        compression,
        schema: sample_batch(0, 1).schema(),
    }
}

fn logs_contain(needle: &str) -> bool {
    String::from_utf8_lossy(&logs().lock().unwrap()).contains(needle)
}

/// An agent config whose QUIC address is `quic` and whose TLS/TCP address
/// is `tcp`, in fallback `mode`.
fn config(
    s: &Setup,
    agent: &CertFiles,
    quic: SocketAddr,
    tcp: SocketAddr,
    mode: &str,
) -> AgentConfig {
    toml_from(&format!(
        "{}\n[tcp_fallback]\nmode = \"{mode}\"\naddress = \"{tcp}\"\nquic_wait_secs = 1\n",
        s.pki.agent_toml(agent, &quic.to_string(), "localhost")
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_protocol_runs_over_tls_tcp_with_its_close_reasons() {
    let s = Setup::new();
    let counters = Arc::new(Counters::default());
    let broker = s.broker(counting(counters.clone())).await;
    let tcp = broker.tcp_addr().expect("the fallback listens by default");
    let agent = s.pki.agent("tcp-01", "g-tcp");
    let session = ferry_agent::connect(&config(&s, &agent, broker.local_addr(), tcp, "always"))
        .await
        .expect("agent connects over TLS/TCP");
    assert_eq!(session.transport(), Transport::TlsTcp);
    assert_eq!(session.welcome().agent_id, "tcp-01");

    // Listed as such, with the identity from the certificate.
    let agents = listed_agents(&broker).await;
    assert_eq!(agents[0]["transport"], "tls-tcp", "{agents}");
    assert_eq!(agents[0]["certificate_serial"], agent.serial.as_str());

    // Two data streams at once beside the control stream, acknowledged.
    let mut senders = Vec::new();
    for (task, compression) in [
        ("t-plain", Compression::None),
        ("t-zstd", Compression::Zstd { level: 3 }),
    ] {
        senders.push(
            session
                .open_stream(header(task, compression), 2)
                .await
                .unwrap(),
        );
    }
    for i in 0..20 {
        for tx in &mut senders {
            tx.send(sample_batch(i * 1000, 1000)).await.unwrap();
        }
    }
    for tx in senders {
        let summary = tx.finish().await.unwrap();
        assert_eq!((summary.rows, summary.acked_rows), (20_000, 20_000));
        assert_eq!(summary.acked_seq, Some(20));
    }
    eventually("both streams counted", Duration::from_secs(5), || {
        counters.streams_done.load(Ordering::Relaxed) == 2
    })
    .await;
    assert_eq!(counters.rows.load(Ordering::Relaxed), 40_000);

    // The broker's close code crosses too: revoke the certificate.
    revoke_and_expect_close(&s, "tcp-01", &session).await;
    // And a new attempt is refused in TLS, by name.
    let err =
        match ferry_agent::connect(&config(&s, &agent, broker.local_addr(), tcp, "always")).await {
            Err(e) => e,
            Ok(_) => panic!("a revoked agent connected"),
        };
    assert!(err.needs_operator(), "{err}");
    assert!(
        matches!(
            &err,
            ConnectError::Closed {
                cause: CloseCause::Refused(Refusal::Revoked),
                ..
            }
        ),
        "{err}"
    );
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_falls_back_when_quic_gets_no_answer() {
    logs();
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let tcp = broker.tcp_addr().unwrap();
    // A UDP port that swallows everything: what a firewall dropping UDP looks like.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let agent = s.pki.agent("fb-01", "g");
    let start = Instant::now();
    let session = ferry_agent::connect(&config(
        &s,
        &agent,
        silent.local_addr().unwrap(),
        tcp,
        "auto",
    ))
    .await
    .expect("connects over TLS/TCP");
    assert_eq!(session.transport(), Transport::TlsTcp);
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "QUIC was given its second"
    );
    assert!(
        logs_contain("no answer over QUIC") && logs_contain("falling back to TLS over TCP"),
        "the agent says so"
    );

    // Where QUIC answers, auto mode uses it.
    let agent2 = s.pki.agent("fb-02", "g");
    let quic = ferry_agent::connect(&config(&s, &agent2, broker.local_addr(), tcp, "auto"))
        .await
        .unwrap();
    assert_eq!(quic.transport(), Transport::Quic);

    // A refused data stream fails at once over TCP too, with the broker's
    // reason (yamux has no STOP_SENDING: the broker drains and says why).
    let mut tx = session
        .open_stream(header("orphan-tcp", Compression::None), 1)
        .await
        .unwrap();
    let finished = tokio::time::timeout(Duration::from_secs(10), async {
        for i in 0..50 {
            if tx.send(sample_batch(i * 1000, 1000)).await.is_err() {
                break;
            }
        }
        tx.finish().await
    })
    .await
    .expect("the refusal arrives; nothing hangs");
    let err = finished.unwrap_err().to_string();
    assert!(err.contains("orphan-tcp"), "{err}");
    session.close("done").await;
    quic.close("done").await;
    broker.shutdown().await;
}

/// Datagrams that reached `silent` since the last call.
fn datagrams(silent: &UdpSocket) -> usize {
    silent.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    while silent.recv(&mut buf).is_ok() {
        n += 1;
    }
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_fallback_reconnects_skip_quic_for_a_while() {
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let tcp = broker.tcp_addr().unwrap();
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let agent = s.pki.agent("fb-03", "g");
    let cfg = config(&s, &agent, silent.local_addr().unwrap(), tcp, "auto");
    // Let a dropped attempt's last packets land before counting.
    let settle = || tokio::time::sleep(Duration::from_millis(300));

    let connector = Connector::new(&cfg).unwrap();
    let first = connector.connect().await.expect("falls back");
    assert_eq!(first.transport(), Transport::TlsTcp);
    settle().await;
    assert!(datagrams(&silent) > 0, "QUIC was tried first");
    first.close("reconnect").await;
    let second = connector.connect().await.expect("reconnects");
    assert_eq!(second.transport(), Transport::TlsTcp);
    settle().await;
    assert_eq!(
        datagrams(&silent),
        0,
        "the reconnect went straight to TLS/TCP"
    );
    second.close("done").await;

    // retry_quic_secs = 0: QUIC is tried first on every attempt.
    let mut every_time = cfg.clone();
    every_time.tcp_fallback.retry_quic_secs = 0;
    let connector = Connector::new(&every_time).unwrap();
    for attempt in 0..2 {
        let session = connector.connect().await.expect("falls back");
        assert_eq!(session.transport(), Transport::TlsTcp);
        settle().await;
        assert!(datagrams(&silent) > 0, "attempt {attempt} tried QUIC");
        session.close("done").await;
    }
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_is_refused_over_tls_tcp_by_name() {
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let tcp = broker.tcp_addr().unwrap();
    let other = ferry_tests::pki::Pki::new();
    let stranger = other.agent("stranger-01", "g");
    // Trusts our broker, but its certificate is from another CA.
    let text = format!(
        "broker = \"{q}\"\nserver_name = \"localhost\"\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\
         [tcp_fallback]\nmode = \"always\"\naddress = \"{tcp}\"\n",
        s.pki.ca_pem().display(),
        stranger.cert.display(),
        stranger.key.display(),
        q = broker.local_addr()
    );
    let err = match ferry_agent::connect(&toml_from::<AgentConfig>(&text)).await {
        Err(e) => e,
        Ok(_) => panic!("a stranger connected"),
    };
    assert!(
        matches!(
            &err,
            ConnectError::Closed {
                cause: CloseCause::Refused(Refusal::UnknownCa),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.needs_operator());
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_fallback_settings_are_named() {
    let s = Setup::new();
    let agent = s.pki.agent("cfg-01", "g");
    let base = s.pki.agent_toml(&agent, "127.0.0.1:7800", "localhost");
    for (section, field) in [
        ("address = \"no-port\"", "tcp_fallback.address"),
        ("quic_wait_secs = 0", "tcp_fallback.quic_wait_secs"),
        ("retry_quic_secs = 86401", "tcp_fallback.retry_quic_secs"),
    ] {
        let c: AgentConfig = toml_from(&format!("{base}\n[tcp_fallback]\n{section}\n"));
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    let e =
        toml::from_str::<AgentConfig>(&format!("{base}\n[tcp_fallback]\nmode = \"sometimes\"\n"))
            .unwrap_err()
            .to_string();
    assert!(e.contains("sometimes"), "{e}");
}
