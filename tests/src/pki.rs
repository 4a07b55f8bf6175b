//! A throwaway PKI for tests.

use std::path::{Path, PathBuf};

use ferry_certs::{CertificateAuthority, SubjectName, Validity};
use tempfile::TempDir;

/// A CA in a temp dir, with a broker certificate for 127.0.0.1/localhost.
pub struct Pki {
    pub dir: TempDir,
    pub ca: CertificateAuthority,
}

/// Paths of an issued certificate and its key.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub serial: String,
}

impl Pki {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ferry-pki-")
            .tempdir()
            .expect("temp dir");
        let ca = CertificateAuthority::init(&dir.path().join("pki"), "Test CA", Validity::days(30))
            .expect("init CA");
        Self { dir, ca }
    }

    pub fn path(&self) -> &Path {
        self.ca.dir()
    }

    pub fn ca_pem(&self) -> PathBuf {
        self.path().join("ca.pem")
    }

    pub fn crl(&self) -> PathBuf {
        self.ca.crl_path()
    }

    /// A broker certificate for the given names (IPs or DNS names).
    pub fn broker(&self, names: &[&str]) -> CertFiles {
        let names: Vec<SubjectName> = names.iter().map(|n| n.parse().expect("name")).collect();
        let issued = self
            .ca
            .issue_server("broker", &names, Validity::days(30))
            .expect("issue broker");
        self.write("broker", issued)
    }

    /// An agent certificate valid for 30 days.
    pub fn agent(&self, id: &str, group: &str) -> CertFiles {
        self.agent_with(id, group, Validity::days(30))
    }

    /// An agent certificate with a chosen validity (expired, not yet valid).
    pub fn agent_with(&self, id: &str, group: &str, validity: Validity) -> CertFiles {
        let issued = self
            .ca
            .issue_agent(id, group, validity)
            .expect("issue agent");
        self.write(&format!("agent-{id}-{}", issued.serial), issued)
    }

    fn write(&self, stem: &str, issued: ferry_certs::IssuedCert) -> CertFiles {
        let cert = self.path().join(format!("{stem}.pem"));
        let key = self.path().join(format!("{stem}.key"));
        issued.write(&cert, &key).expect("write cert");
        CertFiles {
            cert,
            key,
            serial: issued.serial.clone(),
        }
    }

    /// Broker config text for this PKI.
    pub fn broker_toml(&self, broker: &CertFiles, listen: &str, admin: &str) -> String {
        format!(
            "listen = \"{listen}\"\nadmin_listen = \"{admin}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\ncrl = \"{}\"\ncrl_poll_secs = 1\n",
            self.ca_pem().display(),
            broker.cert.display(),
            broker.key.display(),
            self.crl().display()
        )
    }

    /// Agent config text for this PKI.
    pub fn agent_toml(&self, agent: &CertFiles, broker: &str, server_name: &str) -> String {
        format!(
            "broker = \"{broker}\"\nserver_name = \"{server_name}\"\n\n[tls]\nca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\n\n[reconnect]\ninitial_ms = 100\nmax_secs = 2\nstable_secs = 5\n",
            self.ca_pem().display(),
            agent.cert.display(),
            agent.key.display()
        )
    }
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}
