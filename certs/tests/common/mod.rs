//! Shared helpers: a CA in a tempdir and an in-memory TLS 1.3 handshake.

#![allow(dead_code)]

use std::sync::Arc;

use ferry_certs::{CertificateAuthority, IssuedCert, SubjectName, Validity};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

pub const ALPN: &[&[u8]] = &[b"ferry/1"];
pub const BROKER_NAME: &str = "broker.ferry.test";

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: CertificateAuthority,
    pub broker: IssuedCert,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(
            &dir.path().join("pki"),
            "Ferry Test CA",
            Validity::days(30),
        )
        .unwrap();
        let broker = ca
            .issue_server(
                "broker",
                &[
                    SubjectName::Dns(BROKER_NAME.into()),
                    "127.0.0.1".parse().unwrap(),
                ],
                Validity::days(30),
            )
            .unwrap();
        Pki { dir, ca, broker }
    }

    pub fn crl_pem(&self) -> String {
        std::fs::read_to_string(self.ca.crl_path()).unwrap()
    }

    /// The broker's config with the CA's current crl.pem.
    pub fn server_config(&self) -> ServerConfig {
        ferry_certs::server_config_from_pem(
            self.ca.ca_cert_pem(),
            &self.broker.cert_pem,
            self.broker.key_pem(),
            &[self.crl_pem()],
            ALPN,
        )
        .unwrap()
    }

    pub fn agent_config(&self, agent: &IssuedCert) -> ClientConfig {
        ferry_certs::client_config_from_pem(
            self.ca.ca_cert_pem(),
            &agent.cert_pem,
            agent.key_pem(),
            ALPN,
        )
        .unwrap()
        .0
    }
}

pub struct Outcome {
    pub client: ClientConnection,
    pub server: ServerConnection,
    pub client_err: Option<rustls::Error>,
    pub server_err: Option<rustls::Error>,
}

impl Outcome {
    pub fn established(&self) -> bool {
        self.client_err.is_none()
            && self.server_err.is_none()
            && !self.client.is_handshaking()
            && !self.server.is_handshaking()
    }
}

/// Moves all pending TLS bytes from `from` to `to`; returns whether any moved.
fn transfer<A, B>(
    from: &mut rustls::ConnectionCommon<A>,
    to: &mut rustls::ConnectionCommon<B>,
    to_err: &mut Option<rustls::Error>,
) -> bool {
    let mut moved = false;
    while from.wants_write() {
        let mut buf = Vec::new();
        let n = from.write_tls(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        moved = true;
        if to_err.is_some() {
            continue; // the receiver already failed; drop what it would read
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            match to.read_tls(&mut rd) {
                Ok(0) => break,
                Ok(_) => {
                    if let Err(e) = to.process_new_packets() {
                        *to_err = Some(e);
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    moved
}

/// Runs a TLS handshake between `client` (dialling `name`) and `server` in
/// memory, until both are done or one failed and all alerts were delivered.
pub fn handshake(client: ClientConfig, server: ServerConfig, name: &str) -> Outcome {
    let mut c = ClientConnection::new(
        Arc::new(client),
        ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    let mut s = ServerConnection::new(Arc::new(server)).unwrap();
    let mut client_err = None;
    let mut server_err = None;
    for _ in 0..20 {
        let a = transfer(&mut c, &mut s, &mut server_err);
        let b = transfer(&mut s, &mut c, &mut client_err);
        if !a && !b {
            break;
        }
    }
    Outcome {
        client: c,
        server: s,
        client_err,
        server_err,
    }
}

/// A CA's `ca.key` as an rcgen issuer (for certificates made by hand).
pub fn issuer(ca: &CertificateAuthority) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let key_pem = std::fs::read_to_string(ca.dir().join("ca.key")).unwrap();
    let key = rcgen::KeyPair::from_pem(&key_pem).unwrap();
    rcgen::Issuer::from_ca_cert_pem(ca.ca_cert_pem(), key).unwrap()
}
