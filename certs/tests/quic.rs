//! The same refusals over real QUIC (quinn, loopback): checks that the TLS
//! alert and quinn's close reason reach the other side and classify right.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::{Pki, ALPN, BROKER_NAME};
use ferry_certs::{agent_identity, Refusal, RevokeSelector, Validity};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::ConnectionError;
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

/// A close as the other side sees it: classified refusal, raw code and reason.
fn classify(e: &ConnectionError) -> (Option<Refusal>, String) {
    match e {
        ConnectionError::ConnectionClosed(cc) => {
            let reason = String::from_utf8_lossy(&cc.reason).into_owned();
            (
                Refusal::from_quic_error_code(u64::from(cc.error_code), &reason),
                format!("{cc}"),
            )
        }
        ConnectionError::TransportError(te) => (
            Refusal::from_quic_error_code(u64::from(te.code), &te.reason),
            format!("{te}"),
        ),
        other => (None, format!("{other}")),
    }
}

struct Run {
    /// The agent's view: its own failure or the broker's close.
    client: Result<(), ConnectionError>,
    /// The broker's view.
    server: Result<Vec<CertificateDer<'static>>, ConnectionError>,
}

async fn connect(server: rustls::ServerConfig, client: rustls::ClientConfig, name: &str) -> Run {
    let server_cfg =
        quinn::ServerConfig::with_crypto(Arc::new(QuicServerConfig::try_from(server).unwrap()));
    let server_ep =
        quinn::Endpoint::server(server_cfg, SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = server_ep.local_addr().unwrap();
    let server_task = tokio::spawn({
        let ep = server_ep.clone();
        async move {
            let incoming = ep.accept().await.expect("incoming connection");
            let conn = incoming.await?;
            let certs = conn
                .peer_identity()
                .and_then(|p| p.downcast::<Vec<CertificateDer<'static>>>().ok())
                .map(|b| *b)
                .unwrap_or_default();
            // Keep it open until the client has seen the handshake through.
            let _ = tokio::time::timeout(StdDuration::from_secs(2), conn.closed()).await;
            Ok(certs)
        }
    });

    let mut client_ep = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    client_ep.set_default_client_config(quinn::ClientConfig::new(Arc::new(
        QuicClientConfig::try_from(client).unwrap(),
    )));
    let client = match client_ep.connect(addr, name).unwrap().await {
        Err(e) => Err(e),
        Ok(conn) => {
            // In TLS 1.3 the client finishes before the broker has checked its
            // certificate: a refusal arrives as a close right after.
            match tokio::time::timeout(StdDuration::from_millis(500), conn.closed()).await {
                Ok(e) => Err(e),
                Err(_) => {
                    conn.close(0u32.into(), b"done");
                    Ok(())
                }
            }
        }
    };
    let server = tokio::time::timeout(StdDuration::from_secs(5), server_task)
        .await
        .expect("server task finished")
        .expect("server task did not panic");
    client_ep.close(0u32.into(), b"");
    server_ep.close(0u32.into(), b"");
    Run { client, server }
}

fn agent_client(pki: &Pki, agent: &ferry_certs::IssuedCert) -> rustls::ClientConfig {
    pki.agent_config(agent)
}

/// A rustls client config that presents `agent` even if it is out of date.
fn unchecked_client(pki: &Pki, agent: &ferry_certs::IssuedCert) -> rustls::ClientConfig {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca.ca_cert_pem().as_bytes()).unwrap())
        .unwrap();
    let mut cfg = rustls::ClientConfig::builder_with_provider(ferry_certs::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![agent.cert_der().unwrap()],
            rustls::pki_types::PrivateKeyDer::from_pem_slice(agent.key_pem().as_bytes()).unwrap(),
        )
        .unwrap();
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    cfg
}

fn assert_agent_told(run: &Run, want: Refusal) {
    let err = run
        .client
        .as_ref()
        .expect_err("agent should have been refused");
    let (got, raw) = classify(err);
    assert_eq!(got, Some(want.clone()), "agent saw {raw}");
    let err = run.server.as_ref().expect_err("broker should have refused");
    let (got, raw) = classify(err);
    assert_eq!(got, Some(want), "broker saw {raw}");
}

#[tokio::test]
async fn quic_accepts_valid_agent() {
    let pki = Pki::new();
    let agent = pki.ca.issue_agent("q1", "grp", Validity::days(1)).unwrap();
    let run = connect(pki.server_config(), agent_client(&pki, &agent), BROKER_NAME).await;
    assert!(run.client.is_ok(), "{:?}", run.client);
    let certs = run.server.expect("accepted");
    let id = agent_identity(&certs[0]).unwrap();
    assert_eq!((id.agent_id.as_str(), id.group.as_str()), ("q1", "grp"));
    assert_eq!(id.serial, agent.serial);
}

#[tokio::test]
async fn quic_refusals_reach_the_agent_classified() {
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();

    // Not yet valid vs expired share alert 45; quinn's reason tells them apart.
    let future = pki
        .ca
        .issue_agent(
            "f",
            "g",
            Validity::between(now + Duration::days(1), now + Duration::days(2)),
        )
        .unwrap();
    let run = connect(
        pki.server_config(),
        unchecked_client(&pki, &future),
        BROKER_NAME,
    )
    .await;
    assert_agent_told(&run, Refusal::NotYetValid);

    let old = pki
        .ca
        .issue_agent(
            "o",
            "g",
            Validity::between(now - Duration::days(2), now - Duration::days(1)),
        )
        .unwrap();
    let run = connect(
        pki.server_config(),
        unchecked_client(&pki, &old),
        BROKER_NAME,
    )
    .await;
    assert_agent_told(&run, Refusal::Expired);

    let revoked = pki.ca.issue_agent("r", "g", Validity::days(1)).unwrap();
    pki.ca.revoke(&RevokeSelector::AgentId("r".into())).unwrap();
    let run = connect(
        pki.server_config(),
        agent_client(&pki, &revoked),
        BROKER_NAME,
    )
    .await;
    assert_agent_told(&run, Refusal::Revoked);

    let anonymous =
        ferry_certs::client_config_without_client_cert(pki.ca.ca_cert_pem(), ALPN).unwrap();
    let run = connect(pki.server_config(), anonymous, BROKER_NAME).await;
    assert_agent_told(&run, Refusal::NoClientCertificate);

    // The agent refuses a broker certificate for another name; the broker is told why.
    let agent = pki.ca.issue_agent("n", "g", Validity::days(1)).unwrap();
    let run = connect(
        pki.server_config(),
        agent_client(&pki, &agent),
        "wrong.ferry.test",
    )
    .await;
    assert_agent_told(&run, Refusal::BadServerName);
}
