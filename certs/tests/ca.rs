//! The CA directory: files, modes, ledger, revocation, loading.

mod common;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{handshake, Pki, ALPN, BROKER_NAME};
use ferry_certs::{
    revoked_serials, CertError, CertKind, CertificateAuthority, ClientTlsFiles, RevokeSelector,
    Validity,
};
use time::{Duration, OffsetDateTime};

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn crl_number(path: &Path) -> u64 {
    let crls = ferry_certs::load_crls(path).unwrap();
    let (_, crl) = x509_parser::parse_x509_crl(crls[0].as_ref()).unwrap();
    let bytes = crl.crl_number().unwrap().to_bytes_be();
    bytes.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

#[test]
fn init_writes_the_ca_directory_with_safe_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/pki");
    let ca = CertificateAuthority::init(&dir, "Ferry CA", Validity::days(365)).unwrap();
    assert_eq!(ca.dir(), dir);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("ca.pem")), 0o644);
    assert!(ca.ca_cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(
        fs::read_to_string(dir.join("ca.pem")).unwrap(),
        ca.ca_cert_pem()
    );
    // The empty CRL loads, and lists nothing.
    assert_eq!(ca.crl_path(), dir.join("crl.pem"));
    assert!(revoked_serials(&ca.crl_path()).unwrap().is_empty());
    assert_eq!(crl_number(&ca.crl_path()), 1);
    assert!(ca.ledger().unwrap().is_empty());
    assert!(dir.join("issued.json").exists());
    // No temporary files left behind.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["ca.key", "ca.pem", "crl.pem", "issued.json"]);
}

#[test]
fn init_refuses_to_overwrite() {
    let pki = Pki::new();
    let dir = pki.ca.dir().to_path_buf();
    let before = fs::read(dir.join("ca.key")).unwrap();
    let err = CertificateAuthority::init(&dir, "Again", Validity::days(1)).unwrap_err();
    assert!(matches!(err, CertError::CaExists { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("already holds a CA"), "{msg}");
    assert!(msg.contains("refusing to overwrite"), "{msg}");
    assert_eq!(fs::read(dir.join("ca.key")).unwrap(), before);

    // Only the key left: still refused.
    fs::remove_file(dir.join("ca.pem")).unwrap();
    assert!(matches!(
        CertificateAuthority::init(&dir, "Again", Validity::days(1)),
        Err(CertError::CaExists { .. })
    ));
}

#[test]
fn load_errors_are_specific() {
    let tmp = tempfile::tempdir().unwrap();
    let err = CertificateAuthority::load(tmp.path()).unwrap_err();
    assert!(matches!(err, CertError::CaMissing { .. }), "{err}");
    assert!(err.to_string().contains("ca.pem"), "{err}");

    // A CA whose key was swapped for another CA's key.
    let a = Pki::new();
    let b = Pki::new();
    fs::copy(b.ca.dir().join("ca.key"), a.ca.dir().join("ca.key")).unwrap();
    let err = CertificateAuthority::load(a.ca.dir()).unwrap_err();
    assert!(matches!(err, CertError::KeyMismatch { .. }), "{err}");

    // A corrupt ledger.
    fs::write(b.ca.ledger_path(), "{not json").unwrap();
    let err = b.ca.ledger().unwrap_err();
    assert!(matches!(err, CertError::Ledger { .. }), "{err}");
    assert!(err.to_string().contains("issued.json"), "{err}");
}

#[test]
fn issued_files_modes_and_ledger() {
    let pki = Pki::new();
    let d = pki.dir.path();
    let agent = pki.ca.issue_agent("a1", "g1", Validity::days(5)).unwrap();

    // A pre-existing world-readable key file gets fixed.
    fs::write(d.join("a1.key"), "old").unwrap();
    fs::set_permissions(d.join("a1.key"), fs::Permissions::from_mode(0o644)).unwrap();
    pki.ca
        .write_issued(&agent, &d.join("a1.pem"), &d.join("a1.key"))
        .unwrap();
    assert_eq!(mode(&d.join("a1.key")), 0o600);
    assert_eq!(mode(&d.join("a1.pem")), 0o644);
    assert_eq!(
        fs::read_to_string(d.join("a1.key")).unwrap(),
        agent.key_pem()
    );

    // Debug never shows the key.
    let dbg = format!("{agent:?}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
    assert!(dbg.contains(&agent.serial));

    let ledger = pki.ca.ledger().unwrap();
    assert_eq!(ledger.len(), 2, "broker + agent");
    let server = &ledger[0];
    assert_eq!(server.kind, CertKind::Server);
    assert_eq!(server.common_name, "broker");
    assert_eq!(server.dns_names, vec![BROKER_NAME.to_string()]);
    assert_eq!(
        server.ip_addresses,
        vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    let e = &ledger[1];
    assert_eq!(e.kind, CertKind::Agent);
    assert_eq!(e.serial, agent.serial);
    assert_eq!(e.common_name, "a1");
    assert_eq!(e.agent_id.as_deref(), Some("a1"));
    assert_eq!(e.group.as_deref(), Some("g1"));
    assert_eq!(e.not_after, agent.not_after);
    assert_eq!(e.not_before, agent.not_before);
    assert!(e.revoked_at.is_none());
    assert_eq!(e.cert_path.as_deref(), Some(d.join("a1.pem").as_path()));

    // The serial is 16 bytes, canonical lowercase hex.
    assert_eq!(agent.serial.len(), 32);
    assert_eq!(agent.serial, agent.serial.to_lowercase());

    // The JSON on disk is readable and uses the lowercase kind names.
    let json = fs::read_to_string(pki.ca.ledger_path()).unwrap();
    assert!(json.contains("\"kind\": \"agent\""), "{json}");
    assert!(json.contains("\"kind\": \"server\""), "{json}");
}

#[test]
fn invalid_names_are_refused_on_issue() {
    let pki = Pki::new();
    for (id, group) in [
        ("", "g"),
        ("a/b", "g"),
        ("a", "g g"),
        ("a", &"x".repeat(65)),
    ] {
        let err = pki
            .ca
            .issue_agent(id, group, Validity::days(1))
            .unwrap_err();
        assert!(
            matches!(
                err,
                CertError::InvalidAgentId { .. } | CertError::InvalidGroup { .. }
            ),
            "{err}"
        );
    }
    assert!(matches!(
        "bad_name.example".parse::<ferry_certs::SubjectName>(),
        Err(CertError::InvalidDnsName { .. })
    ));
    // Nothing was recorded for the refused requests.
    assert_eq!(pki.ca.ledger().unwrap().len(), 1);
}

#[test]
fn revoke_records_in_ledger_and_crl() {
    let pki = Pki::new();
    let a = pki.ca.issue_agent("a1", "g", Validity::days(1)).unwrap();
    let b = pki.ca.issue_agent("b1", "g", Validity::days(1)).unwrap();
    let crl = pki.ca.crl_path();
    assert_eq!(crl_number(&crl), 1);

    // Serial as a user might type it: colons, upper case, a leading zero byte.
    let typed = format!(
        "00:{}",
        a.serial
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":")
    );
    let revoked = pki.ca.revoke(&RevokeSelector::Serial(typed)).unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].serial, a.serial);
    assert!(revoked[0].revoked_at.is_some());
    assert_eq!(crl_number(&crl), 2);

    // The CRL's serials use exactly the ledger's form.
    let listed = revoked_serials(&crl).unwrap();
    assert_eq!(listed, HashSet::from([a.serial.clone()]));
    let ledger = pki.ca.ledger().unwrap();
    let ledger_revoked: HashSet<String> = ledger
        .iter()
        .filter(|e| e.revoked_at.is_some())
        .map(|e| e.serial.clone())
        .collect();
    assert_eq!(listed, ledger_revoked);
    // ...and the form agent_identity gives for the peer certificate.
    let id = ferry_certs::agent_identity(&a.cert_der().unwrap()).unwrap();
    assert!(listed.contains(&id.serial));

    // Revoking it again, or something unknown, is an error.
    let err = pki
        .ca
        .revoke(&RevokeSelector::Serial(a.serial.clone()))
        .unwrap_err();
    assert!(matches!(err, CertError::NothingToRevoke { .. }), "{err}");
    assert!(err.to_string().contains("already revoked"), "{err}");
    let err = pki
        .ca
        .revoke(&RevokeSelector::Serial("abcdef".into()))
        .unwrap_err();
    assert!(matches!(err, CertError::NothingToRevoke { .. }), "{err}");
    let err = pki
        .ca
        .revoke(&RevokeSelector::Serial("xyz".into()))
        .unwrap_err();
    assert!(matches!(err, CertError::InvalidSerial { .. }), "{err}");
    assert_eq!(
        crl_number(&crl),
        2,
        "failed revocations do not rewrite the CRL"
    );

    // Revoke by certificate file.
    let d = pki.dir.path();
    b.write(&d.join("b.pem"), &d.join("b.key")).unwrap();
    let revoked = pki
        .ca
        .revoke(&RevokeSelector::CertFile(d.join("b.pem")))
        .unwrap();
    assert_eq!(revoked[0].serial, b.serial);
    assert_eq!(
        revoked_serials(&crl).unwrap(),
        HashSet::from([a.serial.clone(), b.serial.clone()])
    );
    assert_eq!(crl_number(&crl), 3);

    // A reloaded CA continues the CRL numbering.
    let again = CertificateAuthority::load(pki.ca.dir()).unwrap();
    let c = again.issue_agent("c1", "g", Validity::days(1)).unwrap();
    again
        .revoke(&RevokeSelector::Serial(c.serial.clone()))
        .unwrap();
    assert_eq!(crl_number(&crl), 4);
    assert_eq!(revoked_serials(&crl).unwrap().len(), 3);
}

#[test]
fn revoke_by_agent_id_revokes_all_its_certificates() {
    let pki = Pki::new();
    let a1 = pki.ca.issue_agent("a", "g1", Validity::days(1)).unwrap();
    let a2 = pki.ca.issue_agent("a", "g2", Validity::days(1)).unwrap();
    let a3 = pki.ca.issue_agent("a", "g1", Validity::days(1)).unwrap();
    let other = pki
        .ca
        .issue_agent("other", "g1", Validity::days(1))
        .unwrap();
    pki.ca
        .revoke(&RevokeSelector::Serial(a3.serial.clone()))
        .unwrap();

    let revoked = pki.ca.revoke(&RevokeSelector::AgentId("a".into())).unwrap();
    let got: HashSet<String> = revoked.iter().map(|e| e.serial.clone()).collect();
    assert_eq!(got, HashSet::from([a1.serial.clone(), a2.serial.clone()]));
    let listed = revoked_serials(&pki.ca.crl_path()).unwrap();
    assert_eq!(
        listed,
        HashSet::from([a1.serial.clone(), a2.serial.clone(), a3.serial.clone()])
    );
    assert!(!listed.contains(&other.serial));

    // Nothing left to revoke for "a"; unknown agents are an error too.
    let err = pki
        .ca
        .revoke(&RevokeSelector::AgentId("a".into()))
        .unwrap_err();
    assert!(matches!(err, CertError::NothingToRevoke { .. }), "{err}");
    let err = pki
        .ca
        .revoke(&RevokeSelector::AgentId("ghost".into()))
        .unwrap_err();
    assert!(matches!(err, CertError::NothingToRevoke { .. }), "{err}");
    assert!(err.to_string().contains("ghost"), "{err}");

    // The broker refuses every one of them, and still accepts the other agent.
    for cert in [&a1, &a2, &a3] {
        // The agent itself cannot know it was revoked; the broker refuses it.
        let o = handshake(pki.agent_config(cert), pki.server_config(), BROKER_NAME);
        assert_eq!(
            ferry_certs::Refusal::from_rustls(o.server_err.as_ref().unwrap()),
            ferry_certs::Refusal::Revoked
        );
    }
    let o = handshake(pki.agent_config(&other), pki.server_config(), BROKER_NAME);
    assert!(o.established());
}

#[test]
fn client_config_checks_its_own_certificate() {
    let pki = Pki::new();
    let d = pki.dir.path();
    let now = OffsetDateTime::now_utc();

    let expired = pki
        .ca
        .issue_agent(
            "old",
            "g",
            Validity::between(now - Duration::days(30), now - Duration::days(2)),
        )
        .unwrap();
    expired
        .write(&d.join("old.pem"), &d.join("old.key"))
        .unwrap();
    let files = ClientTlsFiles {
        ca: pki.ca.ca_cert_path(),
        cert: d.join("old.pem"),
        key: d.join("old.key"),
    };
    let err = ferry_certs::client_config(&files, ALPN).unwrap_err();
    assert!(
        matches!(err, CertError::OwnCertificateExpired { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with("agent certificate "), "{msg}");
    assert!(
        msg.contains(&d.join("old.pem").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains(" expired on "), "{msg}");
    assert!(msg.ends_with(" UTC"), "{msg}");

    let future = pki
        .ca
        .issue_agent(
            "new",
            "g",
            Validity::between(now + Duration::days(2), now + Duration::days(30)),
        )
        .unwrap();
    let err = ferry_certs::client_config_from_pem(
        pki.ca.ca_cert_pem(),
        &future.cert_pem,
        future.key_pem(),
        ALPN,
    )
    .unwrap_err();
    assert!(
        matches!(err, CertError::OwnCertificateNotYetValid { .. }),
        "{err}"
    );

    // A broker certificate has no agent identity.
    pki.broker
        .write(&d.join("b.pem"), &d.join("b.key"))
        .unwrap();
    let err = ferry_certs::client_config(
        &ClientTlsFiles {
            cert: d.join("b.pem"),
            key: d.join("b.key"),
            ..files.clone()
        },
        ALPN,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::NoAgentIdentity { .. }), "{err}");

    // Files that exist but hold the wrong thing.
    let err = ferry_certs::client_config(
        &ClientTlsFiles {
            cert: d.join("b.pem"),
            key: d.join("b.pem"),
            ..files.clone()
        },
        ALPN,
    )
    .unwrap_err();
    assert!(matches!(err, CertError::NoPrivateKey { .. }), "{err}");
    assert_eq!(
        err.to_string(),
        format!("no private key found in {}", d.join("b.pem").display())
    );
    let err = ferry_certs::load_certs(&d.join("b.key")).unwrap_err();
    assert!(matches!(err, CertError::NoCertificate { .. }), "{err}");

    // A good agent from files: config works end to end.
    let good = pki.ca.issue_agent("good", "g", Validity::days(1)).unwrap();
    pki.ca
        .write_issued(&good, &d.join("good.pem"), &d.join("good.key"))
        .unwrap();
    let (client, id) = ferry_certs::client_config(
        &ClientTlsFiles {
            cert: d.join("good.pem"),
            key: d.join("good.key"),
            ..files
        },
        ALPN,
    )
    .unwrap();
    assert_eq!(id.agent_id, "good");
    assert_eq!(client.alpn_protocols, vec![b"ferry/1".to_vec()]);
    let o = handshake(client, pki.server_config(), BROKER_NAME);
    assert!(o.established());
}
