//! Broker configuration (TOML).
//!
//! ```toml
//! listen = "0.0.0.0:7800"          # UDP, QUIC
//! # tcp_listen = "0.0.0.0:443"     # TCP, TLS: for agents whose network blocks UDP;
//!                                  # default: the address of `listen`; "off": none
//! admin_listen = "127.0.0.1:7801"  # HTTP admin API; loopback unless you mean it
//! jobs_dir = "jobs"                # dirty-record files of submitted jobs
//! state = "jobs/state.db"          # durable jobs, tasks, checkpoints, sessions, logs:
//!                                  # an SQLite file (the default) or postgres://…
//!                                  # (`ferry broker run --state` overrides it)
//! admin_token_file = "admin.token" # operators send `Authorization: Bearer <token>`;
//!                                  # required when admin_listen is not loopback
//!
//! [tls]                            # every path is required: no "skip verify"
//! ca = "pki/ca.pem"
//! cert = "pki/broker.pem"
//! key = "pki/broker.key"
//! crl = "pki/crl.pem"
//!
//! [limits]                         # all optional; the defaults are shown
//! max_handshakes = 256             # handshakes (TLS and Hello) in progress at once
//! max_handshakes_per_source = 32   # of them from one source address
//! handshake_rate_per_source = 50   # new handshakes a second from one source address
//!                                  # (bursts of twice that)
//! handshake_timeout_secs = 10      # to finish TLS and send Hello
//! max_agents = 10000               # live agent sessions (a session holds no handshake slot)
//! reconnect_rate = 200             # agents a second the broker asks to come back at when
//!                                  # their sessions are lost (spread: agents / rate seconds)
//! max_data_streams = 256           # data streams open at once on one agent's connection
//! max_plans_per_agent = 16         # plan requests waiting for one agent's answer
//! ```
//! Relative paths are taken from the config file's directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ferry_certs::ServerTlsFiles;
use ferry_tunnel::TransportSettings;
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read broker config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid broker config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid broker config: `{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    /// UDP address for agents' QUIC connections.
    pub listen: SocketAddr,
    /// TCP address for agents that fall back to TLS over TCP: an address,
    /// or `off`. Default: the address of `listen` (its port on TCP).
    #[serde(default)]
    pub tcp_listen: Option<String>,
    /// HTTP address of the admin API.
    #[serde(default = "default_admin")]
    pub admin_listen: SocketAddr,
    /// A file holding the admin API's bearer token (at least 16 characters).
    /// Without it the API is open, which is allowed only on loopback.
    #[serde(default)]
    pub admin_token_file: Option<PathBuf>,
    /// Where jobs' dirty-record files go.
    #[serde(default = "default_jobs_dir")]
    pub jobs_dir: PathBuf,
    /// The state store: an SQLite file path (default `<jobs_dir>/state.db`)
    /// or a `postgres://` URL.
    #[serde(default)]
    pub state: Option<String>,
    pub tls: TlsSection,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub transport: TransportSettings,
}

/// Certificates. No field is optional: a missing CA is a startup error.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// Certificate revocation list, reloaded while running.
    pub crl: PathBuf,
    /// Seconds between checks of the CRL file for changes.
    #[serde(default = "default_crl_poll")]
    pub crl_poll_secs: u64,
}

/// Protection against floods and slow clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Handshakes (TLS and Hello) in progress at once, over both
    /// transports; more are refused at once. A session holds none.
    pub max_handshakes: usize,
    /// Handshakes in progress at once from one source address.
    pub max_handshakes_per_source: usize,
    /// New handshakes a second from one source address, in bursts of up to
    /// twice that.
    pub handshake_rate_per_source: u32,
    /// Seconds a client has to finish TLS and send its Hello.
    pub handshake_timeout_secs: u64,
    /// Live agent sessions at most.
    pub max_agents: usize,
    /// Agents a second the broker wants to see come back after their
    /// sessions were lost (a restart): each agent spreads its reconnect over
    /// `agents / reconnect_rate` seconds, which the broker tells it.
    pub reconnect_rate: u32,
    /// Data streams one agent's connection may have open at once; more are
    /// reset at once (each open stream holds a read buffer).
    pub max_data_streams: usize,
    /// Plan requests waiting for one agent's answer at once; a job that
    /// would send another fails at once instead of queueing behind them.
    pub max_plans_per_agent: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_handshakes: 256,
            max_handshakes_per_source: 32,
            handshake_rate_per_source: 50,
            handshake_timeout_secs: 10,
            max_agents: 10_000,
            reconnect_rate: 200,
            max_data_streams: 256,
            max_plans_per_agent: 16,
        }
    }
}

fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7801))
}

fn default_jobs_dir() -> PathBuf {
    PathBuf::from("jobs")
}

fn default_crl_poll() -> u64 {
    2
}

impl BrokerConfig {
    /// Where the TLS/TCP fallback listens, if anywhere.
    pub fn tcp_listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        match self.tcp_listen.as_deref().map(str::trim) {
            None => Ok(Some(self.listen)),
            Some("off") => Ok(None),
            Some(a) => a.parse().map(Some).map_err(|_| ConfigError::Invalid {
                field: "tcp_listen",
                reason: format!("`{a}` is neither an address (ip:port) nor `off`"),
            }),
        }
    }

    /// Reads and checks a config file; relative paths are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: BrokerConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.tls.resolve(base);
        if config.jobs_dir.is_relative() {
            config.jobs_dir = base.join(&config.jobs_dir);
        }
        if let Some(st) = config.state.as_mut() {
            // A bare relative file path is the config file's neighbour, as
            // every other path here.
            if !st.contains("://")
                && !st.starts_with("sqlite:")
                && Path::new(st.as_str()).is_relative()
            {
                *st = base.join(st.as_str()).display().to_string();
            }
        }
        if let Some(t) = config.admin_token_file.as_mut() {
            if t.is_relative() {
                *t = base.join(&*t);
            }
        }
        config.check()?;
        Ok(config)
    }

    /// Where the state store is (see `state`).
    pub fn state_location(&self) -> String {
        match &self.state {
            Some(s) => s.clone(),
            None => self.jobs_dir.join("state.db").display().to_string(),
        }
    }

    /// The admin API's bearer token, read from `admin_token_file`.
    pub fn admin_token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.admin_token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let token = text.trim().to_string();
        if token.len() < 16 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::Invalid {
                field: "admin_token_file",
                reason: format!(
                    "{} must hold one token of at least 16 characters without spaces",
                    path.display()
                ),
            });
        }
        Ok(Some(token))
    }

    /// Checks values that the type system does not.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.tcp_listen_addr()?;
        if !self.admin_listen.ip().is_loopback() && self.admin_token_file.is_none() {
            return Err(ConfigError::Invalid {
                field: "admin_token_file",
                reason: format!(
                    "is required when admin_listen ({}) is not a loopback address: the admin API submits jobs",
                    self.admin_listen
                ),
            });
        }
        let at_least_one: [(&'static str, u64); 4] = [
            ("limits.max_handshakes", self.limits.max_handshakes as u64),
            (
                "limits.max_handshakes_per_source",
                self.limits.max_handshakes_per_source as u64,
            ),
            (
                "limits.handshake_rate_per_source",
                u64::from(self.limits.handshake_rate_per_source),
            ),
            (
                "limits.reconnect_rate",
                u64::from(self.limits.reconnect_rate),
            ),
        ];
        for (field, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if self.limits.handshake_timeout_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "limits.handshake_timeout_secs",
                reason: "must be at least 1".into(),
            });
        }
        if self.limits.max_data_streams == 0 {
            return Err(ConfigError::Invalid {
                field: "limits.max_data_streams",
                reason: "must be at least 1: every task needs a data stream".into(),
            });
        }
        if self.limits.max_plans_per_agent == 0 {
            return Err(ConfigError::Invalid {
                field: "limits.max_plans_per_agent",
                reason: "must be at least 1: jobs are planned by agents".into(),
            });
        }
        if self.tls.crl_poll_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "tls.crl_poll_secs",
                reason: "must be at least 1".into(),
            });
        }
        self.transport
            .to_quinn()
            .map_err(|e| ConfigError::Invalid {
                field: "transport",
                reason: e.to_string(),
            })?;
        Ok(())
    }
}

impl TlsSection {
    fn resolve(&mut self, base: &Path) {
        for p in [&mut self.ca, &mut self.cert, &mut self.key, &mut self.crl] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The files as `ferry-certs` wants them.
    pub fn files(&self) -> ServerTlsFiles {
        ServerTlsFiles {
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            crl: self.crl.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BrokerConfig, toml::de::Error> {
        toml::from_str(s)
    }

    #[test]
    fn missing_ca_is_an_error_not_skip_verify() {
        let e =
            parse("listen = \"127.0.0.1:7800\"\n[tls]\ncert = \"a\"\nkey = \"b\"\ncrl = \"c\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("missing field `ca`"), "{e}");
    }

    #[test]
    fn missing_tls_section_is_an_error() {
        let e = parse("listen = \"127.0.0.1:7800\"\n").unwrap_err();
        assert!(e.to_string().contains("missing field `tls`"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = std::env::temp_dir().join(format!("ferry-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("broker.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:7800\"\n[tls]\nca = \"pki/ca.pem\"\ncert = \"/abs/b.pem\"\nkey = \"k\"\ncrl = \"c\"\n",
        )
        .unwrap();
        let c = BrokerConfig::load(&file).unwrap();
        assert_eq!(c.tls.ca, dir.join("pki/ca.pem"));
        assert_eq!(c.tls.cert, PathBuf::from("/abs/b.pem"));
        assert_eq!(c.admin_listen, default_admin());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_admin_api_beyond_loopback_needs_a_token() {
        let mut c = parse(
            "listen = \"127.0.0.1:7800\"\nadmin_listen = \"0.0.0.0:7801\"\n[tls]\nca = \"a\"\ncert = \"a\"\nkey = \"b\"\ncrl = \"c\"\n",
        )
        .unwrap();
        let e = c.check().unwrap_err().to_string();
        assert!(
            e.contains("admin_token_file") && e.contains("0.0.0.0:7801"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("t");
        std::fs::write(&f, "short\n").unwrap();
        c.admin_token_file = Some(f.clone());
        c.check().unwrap();
        let e = c.admin_token().unwrap_err().to_string();
        assert!(e.contains("at least 16"), "{e}");
        std::fs::write(&f, "  0123456789abcdef-long-enough \n").unwrap();
        assert_eq!(
            c.admin_token().unwrap().as_deref(),
            Some("0123456789abcdef-long-enough")
        );
    }

    #[test]
    fn zero_handshakes_is_refused() {
        let mut c = parse(
            "listen = \"127.0.0.1:7800\"\n[tls]\nca = \"a\"\ncert = \"a\"\nkey = \"b\"\ncrl = \"c\"\n",
        )
        .unwrap();
        c.limits.max_handshakes = 0;
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("max_handshakes"));
    }

    #[test]
    fn stream_and_plan_caps_have_defaults_and_must_be_positive() {
        let mut c = parse(
            "listen = \"127.0.0.1:7800\"\n[tls]\nca = \"a\"\ncert = \"a\"\nkey = \"b\"\ncrl = \"c\"\n[limits]\nmax_plans_per_agent = 3\n",
        )
        .unwrap();
        assert_eq!(c.limits.max_data_streams, 256);
        assert_eq!(c.limits.max_plans_per_agent, 3);
        c.check().unwrap();
        c.limits.max_data_streams = 0;
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("max_data_streams"));
        c.limits.max_data_streams = 1;
        c.limits.max_plans_per_agent = 0;
        assert!(c
            .check()
            .unwrap_err()
            .to_string()
            .contains("max_plans_per_agent"));
    }
}
