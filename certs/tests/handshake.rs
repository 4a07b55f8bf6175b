//! Real rustls TLS 1.3 handshakes, in memory, with the configs of this crate.

mod common;

use common::{handshake, issuer, Outcome, Pki, ALPN, BROKER_NAME};
use ferry_certs::{
    agent_identity, CertError, Refusal, RevokeSelector, SubjectName, Validity, WRONG_KEY_USAGE,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, ClientConfig};
use time::{Duration, OffsetDateTime};

/// A rustls client config that skips our own-certificate checks, to present
/// certificates the real `client_config` would refuse to use.
fn raw_client_config(ca_pem: &str, cert_pem: &str, key_pem: &str) -> ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(ferry_certs::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    cfg
}

/// The server refused; checks the classification from the server's own error
/// and — the way quinn reports it to the agent — from the alert the client
/// received plus the server error's Display as the close reason.
fn assert_server_refused(o: &Outcome, want: Refusal) {
    let server_err = o.server_err.as_ref().expect("server should have refused");
    assert_eq!(
        Refusal::from_rustls(server_err),
        want,
        "server error: {server_err}"
    );
    let Some(rustls::Error::AlertReceived(alert)) = &o.client_err else {
        panic!(
            "client should have received an alert, got {:?}",
            o.client_err
        );
    };
    let alert = u8::from(*alert);
    assert_eq!(
        Refusal::from_alert(alert, &server_err.to_string()),
        want,
        "alert {alert}, reason {server_err}"
    );
    assert_eq!(
        Refusal::from_quic_error_code(0x100 + u64::from(alert), &server_err.to_string()),
        Some(want)
    );
}

/// The client refused the broker (same double check, roles swapped).
fn assert_client_refused(o: &Outcome, want: Refusal) {
    let client_err = o.client_err.as_ref().expect("client should have refused");
    assert_eq!(
        Refusal::from_rustls(client_err),
        want,
        "client error: {client_err}"
    );
    let Some(rustls::Error::AlertReceived(alert)) = &o.server_err else {
        panic!(
            "server should have received an alert, got {:?}",
            o.server_err
        );
    };
    assert_eq!(
        Refusal::from_alert(u8::from(*alert), &client_err.to_string()),
        want
    );
}

#[test]
fn valid_agent_is_accepted_and_identified() {
    let pki = Pki::new();
    let agent = pki
        .ca
        .issue_agent("agent-7", "plant.north", Validity::days(10))
        .unwrap();
    let (client, own) = ferry_certs::client_config_from_pem(
        pki.ca.ca_cert_pem(),
        &agent.cert_pem,
        agent.key_pem(),
        ALPN,
    )
    .unwrap();
    assert_eq!(own.agent_id, "agent-7");
    assert_eq!(own.group, "plant.north");

    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(
        o.established(),
        "client {:?} server {:?}",
        o.client_err,
        o.server_err
    );
    assert_eq!(o.server.alpn_protocol(), Some(&b"ferry/1"[..]));
    let peer = &o.server.peer_certificates().unwrap()[0];
    let id = agent_identity(peer).unwrap();
    assert_eq!(id.agent_id, "agent-7");
    assert_eq!(id.group, "plant.north");
    assert_eq!(id.serial, agent.serial);
    assert_eq!(id, own);
    assert_eq!(id.fingerprint_sha256.len(), 64);
    assert_eq!(id.not_after, agent.not_after);

    // Dialling the broker by IP address works too.
    let o = handshake(pki.agent_config(&agent), pki.server_config(), "127.0.0.1");
    assert!(o.established());
}

#[test]
fn reloaded_ca_issues_certificates_that_verify() {
    let pki = Pki::new();
    let ca = ferry_certs::CertificateAuthority::load(pki.ca.dir()).unwrap();
    let agent = ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let o = handshake(pki.agent_config(&agent), pki.server_config(), BROKER_NAME);
    assert!(
        o.established(),
        "client {:?} server {:?}",
        o.client_err,
        o.server_err
    );
}

#[test]
fn no_client_certificate() {
    let pki = Pki::new();
    let client =
        ferry_certs::client_config_without_client_cert(pki.ca.ca_cert_pem(), ALPN).unwrap();
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::NoCertificatesPresented)
    ));
    assert!(matches!(
        o.client_err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired
        ))
    ));
    assert_server_refused(&o, Refusal::NoClientCertificate);
}

#[test]
fn agent_from_another_ca() {
    let pki = Pki::new();
    let other = Pki::new();
    let agent = other.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    // The agent trusts our CA (so it accepts the broker) but its own cert is foreign.
    let client = raw_client_config(pki.ca.ca_cert_pem(), &agent.cert_pem, agent.key_pem());
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    ));
    assert_server_refused(&o, Refusal::UnknownCa);

    // A foreign CA that copied our CA's exact name: webpki reports a bad
    // signature (alert decrypt_error), still classified as another CA.
    let impostor =
        rcgen::Issuer::from_ca_cert_pem(pki.ca.ca_cert_pem(), rcgen::KeyPair::generate().unwrap())
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        ferry_certs::agent_uri("g", "a1").try_into().unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::hours(1);
    let cert = params.signed_by(&key, &impostor).unwrap();
    let client = raw_client_config(pki.ca.ca_cert_pem(), &cert.pem(), &key.serialize_pem());
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::BadSignature
        ))
    ));
    assert_server_refused(&o, Refusal::UnknownCa);
}

#[test]
fn expired_agent() {
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let agent = pki
        .ca
        .issue_agent(
            "old",
            "g",
            Validity::between(now - Duration::days(10), now - Duration::days(1)),
        )
        .unwrap();
    let client = raw_client_config(pki.ca.ca_cert_pem(), &agent.cert_pem, agent.key_pem());
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext { .. }
        ))
    ));
    assert_server_refused(&o, Refusal::Expired);
}

#[test]
fn not_yet_valid_agent() {
    let pki = Pki::new();
    let now = OffsetDateTime::now_utc();
    let agent = pki
        .ca
        .issue_agent(
            "future",
            "g",
            Validity::between(now + Duration::days(1), now + Duration::days(10)),
        )
        .unwrap();
    let client = raw_client_config(pki.ca.ca_cert_pem(), &agent.cert_pem, agent.key_pem());
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYetContext { .. }
        ))
    ));
    // Same alert (45) as expired: only the reason text tells them apart.
    assert!(matches!(
        o.client_err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::CertificateExpired
        ))
    ));
    assert_server_refused(&o, Refusal::NotYetValid);
}

#[test]
fn revoked_agent_after_crl_reload() {
    let pki = Pki::new();
    let agent = pki.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let o = handshake(pki.agent_config(&agent), pki.server_config(), BROKER_NAME);
    assert!(o.established());

    let revoked = pki
        .ca
        .revoke(&RevokeSelector::Serial(agent.serial.to_uppercase()))
        .unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].serial, agent.serial);

    // Rebuild the broker config from the new crl.pem (what the broker does on reload).
    let files = ferry_certs::ServerTlsFiles {
        ca: pki.ca.ca_cert_path(),
        cert: pki.dir.path().join("broker.pem"),
        key: pki.dir.path().join("broker.key"),
        crl: pki.ca.crl_path(),
    };
    pki.broker.write(&files.cert, &files.key).unwrap();
    let server = ferry_certs::server_config(&files, ALPN).unwrap();
    let o = handshake(pki.agent_config(&agent), server, BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::InvalidCertificate(CertificateError::Revoked))
    ));
    assert_server_refused(&o, Refusal::Revoked);

    // Another agent of the same CA is still fine with the new CRL.
    let other = pki.ca.issue_agent("a2", "g", Validity::days(1)).unwrap();
    let o = handshake(pki.agent_config(&other), pki.server_config(), BROKER_NAME);
    assert!(o.established());
}

#[test]
fn agent_certificate_without_identity_uri() {
    let pki = Pki::new();
    let issuer = issuer(&pki.ca);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "sneaky");
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::hours(1);
    let cert = params.signed_by(&key, &issuer).unwrap();

    // Our own client_config refuses to use it...
    let err = ferry_certs::client_config_from_pem(
        pki.ca.ca_cert_pem(),
        &cert.pem(),
        &key.serialize_pem(),
        ALPN,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::NoAgentIdentity { .. }), "{err}");

    // ...and the broker refuses it after webpki accepted the chain.
    let client = raw_client_config(pki.ca.ca_cert_pem(), &cert.pem(), &key.serialize_pem());
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure
        ))
    ));
    assert!(matches!(
        o.client_err,
        Some(rustls::Error::AlertReceived(AlertDescription::AccessDenied))
    ));
    assert_server_refused(&o, Refusal::NoAgentIdentity);

    // A malformed identity URI is no identity either.
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "ferry://agent/bad group/x".try_into().unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let err = agent_identity(cert.der()).unwrap_err();
    assert!(matches!(err, CertError::NoAgentIdentity { .. }), "{err}");
}

#[test]
fn server_certificate_presented_as_client_certificate() {
    let pki = Pki::new();
    let client = raw_client_config(
        pki.ca.ca_cert_pem(),
        &pki.broker.cert_pem,
        pki.broker.key_pem(),
    );
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(
        matches!(
            o.server_err,
            Some(rustls::Error::InvalidCertificate(
                CertificateError::InvalidPurposeContext { .. } | CertificateError::InvalidPurpose
            ))
        ),
        "{:?}",
        o.server_err
    );
    assert!(matches!(
        o.client_err,
        Some(rustls::Error::AlertReceived(
            AlertDescription::UnsupportedCertificate
        ))
    ));
    assert_server_refused(&o, Refusal::Other(WRONG_KEY_USAGE.into()));

    // Even a server cert that carries a ferry URI is refused for its EKU.
    let issuer = issuer(&pki.ca);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        ferry_certs::agent_uri("g", "a1").try_into().unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::hours(1);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (client, _) = ferry_certs::client_config_from_pem(
        pki.ca.ca_cert_pem(),
        &cert.pem(),
        &key.serialize_pem(),
        ALPN,
    )
    .unwrap();
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert_server_refused(&o, Refusal::Other(WRONG_KEY_USAGE.into()));
}

#[test]
fn client_refuses_broker_with_wrong_name() {
    let pki = Pki::new();
    let agent = pki.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let o = handshake(
        pki.agent_config(&agent),
        pki.server_config(),
        "elsewhere.ferry.test",
    );
    assert!(matches!(
        o.client_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForNameContext { .. }
        ))
    ));
    assert_client_refused(&o, Refusal::BadServerName);

    let o = handshake(pki.agent_config(&agent), pki.server_config(), "10.9.9.9");
    assert_eq!(
        Refusal::from_rustls(o.client_err.as_ref().unwrap()),
        Refusal::BadServerName
    );
}

#[test]
fn client_refuses_broker_from_another_ca() {
    let pki = Pki::new();
    let other = Pki::new();
    let agent = pki.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let o = handshake(pki.agent_config(&agent), other.server_config(), BROKER_NAME);
    assert!(matches!(
        o.client_err,
        Some(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer
        ))
    ));
    assert_client_refused(&o, Refusal::UnknownCa);
}

#[test]
fn no_common_alpn() {
    let pki = Pki::new();
    let agent = pki.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let (client, _) = ferry_certs::client_config_from_pem(
        pki.ca.ca_cert_pem(),
        &agent.cert_pem,
        agent.key_pem(),
        &[b"other/9"],
    )
    .unwrap();
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(matches!(
        o.server_err,
        Some(rustls::Error::NoApplicationProtocol)
    ));
    assert_server_refused(&o, Refusal::NoCommonAlpn);
}

#[test]
fn server_config_needs_every_file() {
    let pki = Pki::new();
    let d = pki.dir.path();
    pki.broker
        .write(&d.join("b.pem"), &d.join("b.key"))
        .unwrap();
    let good = ferry_certs::ServerTlsFiles {
        ca: pki.ca.ca_cert_path(),
        cert: d.join("b.pem"),
        key: d.join("b.key"),
        crl: pki.ca.crl_path(),
    };
    let cfg = ferry_certs::server_config(&good, ALPN).unwrap();
    assert_eq!(cfg.alpn_protocols, vec![b"ferry/1".to_vec()]);
    let missing = d.join("missing.pem");
    for f in [
        ferry_certs::ServerTlsFiles {
            ca: missing.clone(),
            ..good.clone()
        },
        ferry_certs::ServerTlsFiles {
            crl: missing.clone(),
            ..good.clone()
        },
        ferry_certs::ServerTlsFiles {
            key: missing.clone(),
            ..good.clone()
        },
        ferry_certs::ServerTlsFiles {
            cert: missing.clone(),
            ..good.clone()
        },
    ] {
        let err = ferry_certs::server_config(&f, ALPN).unwrap_err();
        assert!(matches!(err, CertError::Io { .. }), "{err}");
        assert!(err.to_string().contains("missing.pem"), "{err}");
    }
    // A CRL file that holds something else is an error, not "nothing revoked".
    let bad = ferry_certs::ServerTlsFiles {
        crl: good.ca.clone(),
        ..good.clone()
    };
    let err = ferry_certs::server_config(&bad, ALPN).unwrap_err();
    assert!(matches!(err, CertError::NoCrl { .. }), "{err}");
    // Mismatched broker cert and key.
    let agent = pki.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let err = ferry_certs::server_config_from_pem(
        pki.ca.ca_cert_pem(),
        &pki.broker.cert_pem,
        agent.key_pem(),
        &[],
        ALPN,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");
}

#[test]
fn server_name_parsing_feeds_issue() {
    let pki = Pki::new();
    let names: Vec<SubjectName> = ["broker.example.com", "10.0.0.5", "::1"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    let cert = pki
        .ca
        .issue_server("b2", &names, Validity::days(1))
        .unwrap();
    let server = ferry_certs::server_config_from_pem(
        pki.ca.ca_cert_pem(),
        &cert.cert_pem,
        cert.key_pem(),
        &[pki.crl_pem()],
        ALPN,
    )
    .unwrap();
    let agent = pki.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let o = handshake(pki.agent_config(&agent), server, "10.0.0.5");
    assert!(o.established());
    assert!(matches!(
        pki.ca.issue_server("b3", &[], Validity::days(1)),
        Err(CertError::NoServerNames { .. })
    ));
}
