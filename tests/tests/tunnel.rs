//! The tunnel end to end, in one process: real QUIC over loopback, real
//! certificates, broker and agent from their libraries.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ferry_agent::connect::Connector;
use ferry_agent::ConnectError;
use ferry_broker::data::{counting, refuse_all, Counters};
use ferry_certs::{Refusal, RevokeSelector, Validity};
use ferry_protocol::control::RejectCode;
use ferry_protocol::data::{Compression, StreamHeader};
use ferry_protocol::version::VersionRange;
use ferry_tunnel::{CloseCause, CloseCode};
use time::{Duration as TimeDelta, OffsetDateTime};

fn header(task: &str, compression: Compression) -> StreamHeader {
    StreamHeader {
        task_id: task.into(),
        split: 0,
        resume_after_seq: None,
        compression,
        schema: sample_batch(0, 1).schema(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_connects_is_listed_and_streams_batches() {
    let s = Setup::new();
    let counters = Arc::new(Counters::default());
    let broker = s.broker(counting(counters.clone())).await;
    let agent = s.pki.agent("sh-01", "idc-sh");
    let session = ferry_agent::connect(&s.agent_config(&agent, broker.local_addr()))
        .await
        .expect("agent connects");
    assert_eq!(session.welcome().agent_id, "sh-01");
    assert_eq!(session.welcome().group, "idc-sh");

    // Listed by the registry and by the admin API, identity from the certificate.
    let agents = listed_agents(&broker).await;
    let a = &agents[0];
    assert_eq!(a["agent_id"], "sh-01");
    assert_eq!(a["group"], "idc-sh");
    assert_eq!(a["protocol_version"], ferry_protocol::version::CURRENT);
    assert_eq!(a["certificate_serial"], agent.serial.as_str());
    assert!(a["connected_since"].as_str().is_some());
    assert!(a["remote_addr"].as_str().unwrap().starts_with("127.0.0.1:"));

    // Batches cross, compressed and not, and are acknowledged.
    for (task, compression) in [
        ("t-plain", Compression::None),
        ("t-zstd", Compression::Zstd { level: 1 }),
    ] {
        let mut tx = session
            .open_stream(header(task, compression), 2)
            .await
            .unwrap();
        for i in 0..20 {
            tx.send(sample_batch(i * 1000, 1000)).await.unwrap();
        }
        let summary = tx.finish().await.unwrap();
        assert_eq!(summary.rows, 20_000);
        assert_eq!(summary.acked_seq, Some(20));
        assert_eq!(summary.acked_rows, 20_000);
        if compression != Compression::None {
            assert!(summary.frame_bytes < summary.raw_bytes, "{summary:?}");
        }
    }
    eventually("both streams counted", Duration::from_secs(5), || {
        counters.streams_done.load(Ordering::Relaxed) == 2
    })
    .await;
    assert_eq!(counters.rows.load(Ordering::Relaxed), 40_000);
    assert_eq!(counters.streams_failed.load(Ordering::Relaxed), 0);

    session.close("test done").await;
    eventually("agent unregistered", Duration::from_secs(5), || {
        broker.registry().is_empty()
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_without_a_job_refuses_data_streams_clearly() {
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let agent = s.pki.agent("nojob-01", "g");
    let session = ferry_agent::connect(&s.agent_config(&agent, broker.local_addr()))
        .await
        .unwrap();
    let mut tx = session
        .open_stream(header("orphan-task", Compression::None), 1)
        .await
        .unwrap();
    let _ = tx.send(sample_batch(0, 10)).await;
    let err = tx.finish().await.unwrap_err().to_string();
    assert!(err.contains("orphan-task"), "{err}");
    broker.shutdown().await;
}

/// Connects with a raw rustls client config, bypassing the agent's own
/// certificate checks, to see what the broker does.
async fn raw_connect(
    broker: SocketAddr,
    tls: rustls::ClientConfig,
) -> Result<quinn::Connection, CloseCause> {
    let ep = ferry_tunnel::client_endpoint(
        "127.0.0.1:0".parse().unwrap(),
        tls,
        &ferry_tunnel::TransportSettings::default(),
    )
    .unwrap();
    let conn = ep
        .connect(broker, "localhost")
        .unwrap()
        .await
        .map_err(|e| CloseCause::classify(&e))?;
    // In TLS 1.3 the server verifies the client certificate after the client
    // considers the handshake done; a refusal shows up as the close.
    match tokio::time::timeout(Duration::from_secs(2), conn.closed()).await {
        Ok(e) => Err(CloseCause::classify(&e)),
        Err(_) => Ok(conn),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_has_its_own_error_on_both_sides() {
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let addr = broker.local_addr();
    let ca = s.pki.ca_pem();

    // 1. No client certificate.
    let tls = ferry_certs::client_config_without_client_cert(
        &std::fs::read_to_string(&ca).unwrap(),
        &[ferry_protocol::ALPN],
    )
    .unwrap();
    let cause = raw_connect(addr, tls).await.unwrap_err();
    assert_eq!(
        cause,
        CloseCause::Refused(Refusal::NoClientCertificate),
        "{cause}"
    );
    assert!(
        wait_log(
            &["agent refused in TLS handshake", "no client certificate"],
            Duration::from_secs(5)
        )
        .await,
        "{}",
        log_text()
    );

    // 2. A certificate from another CA.
    let other = ferry_tests::pki::Pki::new();
    let stranger = other.agent("stranger-01", "g");
    let cause = raw_connect(addr, common::raw_client(&ca, &stranger.cert, &stranger.key))
        .await
        .unwrap_err();
    assert_eq!(cause, CloseCause::Refused(Refusal::UnknownCa), "{cause}");

    // 3. Expired.
    let now = OffsetDateTime::now_utc();
    let old = s.pki.agent_with(
        "old-01",
        "g",
        Validity::between(now - TimeDelta::days(10), now - TimeDelta::days(1)),
    );
    let cause = raw_connect(addr, common::raw_client(&ca, &old.cert, &old.key))
        .await
        .unwrap_err();
    assert_eq!(cause, CloseCause::Refused(Refusal::Expired), "{cause}");
    // The agent itself refuses to start with it, naming the date.
    let e = Connector::new(&s.agent_config(&old, addr))
        .err()
        .expect("refused locally");
    assert!(
        matches!(e, ConnectError::Tls(_)) && e.to_string().contains("expired"),
        "{e}"
    );

    // 4. Not yet valid.
    let early = s.pki.agent_with(
        "early-01",
        "g",
        Validity::between(now + TimeDelta::days(1), now + TimeDelta::days(10)),
    );
    let cause = raw_connect(addr, common::raw_client(&ca, &early.cert, &early.key))
        .await
        .unwrap_err();
    assert_eq!(cause, CloseCause::Refused(Refusal::NotYetValid), "{cause}");
    let e = Connector::new(&s.agent_config(&early, addr))
        .err()
        .expect("refused locally");
    assert!(
        e.to_string().contains("not yet valid") || e.to_string().contains("not valid before"),
        "{e}"
    );

    // 5. Revoked (picked up without a restart).
    let bad = s.pki.agent("bad-01", "g");
    s.pki
        .ca
        .revoke(&RevokeSelector::Serial(bad.serial.clone()))
        .unwrap();
    broker.reload_revocations();
    let e = ferry_agent::connect(&s.agent_config(&bad, addr))
        .await
        .err()
        .expect("refused");
    match &e {
        ConnectError::Closed {
            cause: CloseCause::Refused(Refusal::Revoked),
            ..
        } => {}
        other => panic!("expected a revocation refusal, got {other}"),
    }
    assert!(
        wait_log(
            &["agent refused in TLS handshake", "revoked"],
            Duration::from_secs(5)
        )
        .await
    );

    // 6. Wrong ALPN.
    let good = s.pki.agent("good-01", "g");
    let e = Connector::with_protocol(
        &s.agent_config(&good, addr),
        b"ferry/0",
        VersionRange::ours(),
    )
    .unwrap()
    .connect()
    .await
    .err()
    .expect("refused");
    match &e {
        ConnectError::Closed {
            cause: CloseCause::Refused(Refusal::NoCommonAlpn),
            ..
        } => {}
        other => panic!("expected an ALPN refusal, got {other}"),
    }

    // 7. Wrong protocol version.
    let e = Connector::with_protocol(
        &s.agent_config(&good, addr),
        ferry_protocol::ALPN,
        VersionRange { min: 90, max: 99 },
    )
    .unwrap()
    .connect()
    .await
    .err()
    .expect("rejected");
    match &e {
        ConnectError::Rejected {
            code: RejectCode::UnsupportedVersion,
            message,
            ..
        } => {
            assert!(message.contains("no common protocol version"), "{message}")
        }
        other => panic!("expected a version rejection, got {other}"),
    }
    assert!(
        wait_log(
            &["agent refused", "no common protocol version"],
            Duration::from_secs(5)
        )
        .await
    );

    // All different, and the good agent still gets in.
    ferry_agent::connect(&s.agent_config(&good, addr))
        .await
        .expect("good agent connects");
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connected_agent_closes_its_session() {
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let agent = s.pki.agent("live-01", "g");
    let session = ferry_agent::connect(&s.agent_config(&agent, broker.local_addr()))
        .await
        .unwrap();
    eventually("registered", Duration::from_secs(5), || {
        broker.registry().len() == 1
    })
    .await;
    // No explicit reload: the broker's watcher polls the CRL file every second.
    revoke_and_expect_close(&s, "live-01", &session).await;
    eventually("unregistered", Duration::from_secs(5), || {
        broker.registry().is_empty()
    })
    .await;
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_connection_of_an_agent_replaces_the_first_at_once() {
    let s = Setup::new();
    let broker = s.broker(refuse_all()).await;
    let agent = s.pki.agent("twin-01", "g");
    let cfg = s.agent_config(&agent, broker.local_addr());
    let first = ferry_agent::connect(&cfg).await.unwrap();
    let second = ferry_agent::connect(&cfg).await.unwrap();
    let cause = tokio::time::timeout(Duration::from_secs(2), first.closed())
        .await
        .expect("old session closed at once, not after an idle timeout");
    assert!(
        matches!(
            cause,
            CloseCause::Closed {
                code: CloseCode::Superseded,
                ..
            }
        ),
        "{cause}"
    );
    let list = broker.registry().list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].session_id, second.welcome().session_id);
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_comes_back_by_itself_after_a_broker_restart() {
    let s = Setup::new();
    let addr = port_below_ephemeral_range();
    let broker = s.broker_on(addr, refuse_all()).await;
    let agent = s.pki.agent("phoenix-01", "g");
    let cfg = s.agent_config(&agent, addr);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(ferry_agent::run(cfg, async {
        let _ = stop_rx.await;
    }));
    eventually("first registration", Duration::from_secs(10), || {
        broker.registry().len() == 1
    })
    .await;
    broker.shutdown().await;

    // Same address, new process state: the agent registers again on its own.
    let broker = s.broker_on(addr, refuse_all()).await;
    eventually(
        "registration after restart",
        Duration::from_secs(15),
        || broker.registry().len() == 1,
    )
    .await;
    let _ = stop_tx.send(());
    runner.await.unwrap().unwrap();
    broker.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_and_handshake_floods_leave_tunnels_alone() {
    let s = Setup::new();
    let mut config = s.broker_config("127.0.0.1:0".parse().unwrap());
    config.limits.max_handshakes = 4;
    config.limits.handshake_timeout_secs = 2;
    let counters = Arc::new(Counters::default());
    let broker = ferry_broker::Broker::start(config, counting(counters.clone()))
        .await
        .unwrap();
    let addr = broker.local_addr();
    let agent = s.pki.agent("steady-01", "g");
    let session = ferry_agent::connect(&s.agent_config(&agent, addr))
        .await
        .unwrap();

    // Random datagrams.
    let junk = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..3000u32 {
        let len = 1 + (i as usize * 7919) % 1400;
        let bytes: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
        let _ = junk.send_to(&bytes, addr);
    }

    // Half-open handshakes: the broker's answers are swallowed, so each
    // attempt holds a handshake slot until the timeout.
    let relays: Vec<_> = (0..12)
        .map(|_| ferry_tests::relay::BlackholeRelay::new(addr, 1))
        .collect();
    let mut half_open = Vec::new();
    for r in &relays {
        let (ep, connecting) = start_handshake(&s.pki.ca_pem(), r.addr);
        half_open.push((ep, tokio::spawn(async move { connecting.await.is_ok() })));
    }
    // A flood of full connection attempts without client certificates.
    let mut flood = Vec::new();
    for _ in 0..40 {
        let ca = std::fs::read_to_string(s.pki.ca_pem()).unwrap();
        flood.push(tokio::spawn(async move {
            let tls = ferry_certs::client_config_without_client_cert(&ca, &[ferry_protocol::ALPN])
                .unwrap();
            raw_connect(addr, tls).await.is_ok()
        }));
    }

    // Meanwhile the established tunnel moves data as usual.
    let mut tx = session
        .open_stream(header("during-flood", Compression::Zstd { level: 1 }), 2)
        .await
        .unwrap();
    for i in 0..50 {
        tx.send(sample_batch(i * 500, 500)).await.unwrap();
    }
    let summary = tokio::time::timeout(Duration::from_secs(20), tx.finish())
        .await
        .expect("in time")
        .unwrap();
    assert_eq!(summary.acked_rows, 25_000);

    for f in flood {
        assert!(!f.await.unwrap(), "no flood connection may be admitted");
    }
    let health: serde_json::Value = reqwest::get(format!("http://{}/healthz", broker.admin_addr()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        health["refused_busy"].as_u64().unwrap() > 0,
        "handshake limit never hit: {health}"
    );

    // Once the flood stops and the half-open attempts time out, new agents
    // get in again. (While stalled handshakes outnumber the slots they keep
    // re-taking them; live tunnels are unaffected, new agents back off.)
    drop(half_open);
    drop(relays);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let other = s.pki.agent("late-01", "g");
    ferry_agent::connect(&s.agent_config(&other, addr))
        .await
        .expect("new agent admitted after the flood");
    assert_eq!(broker.registry().len(), 2);
    broker.shutdown().await;
}
