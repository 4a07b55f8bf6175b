//! Agent configuration (TOML).
//!
//! ```toml
//! broker = "broker.example.com:7800"   # host:port, resolved on every attempt
//! # server_name = "broker.example.com" # name checked in the broker's certificate;
//!                                      # defaults to the host part of `broker`
//! [tls]                                # all required: no "skip verify"
//! ca = "pki/ca.pem"
//! cert = "pki/agents/sh-01.pem"
//! key = "pki/agents/sh-01.key"
//!
//! [reconnect]                          # optional
//! initial_ms = 500
//! max_secs = 30
//! stable_secs = 60
//!
//! [sources.orders_db]                  # data sources jobs may name as <group>/orders_db
//! kind = "mysql"                       # mysql, postgres, sqlite, file
//! url = "mysql://reader:secret@10.0.0.5:3306/shop"
//! options = { zeroDate = "null" }      # connector options (optional)
//! tables = ["orders", "audit.*"]       # what jobs may read (default: any table)
//! allow_query_sql = false              # free-form querySql / subqueries (default: off)
//! ```
//! The broker learns each source's name and kind, never its URL.
//! Relative paths are taken from the config file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_certs::ClientTlsFiles;
use ferry_tunnel::{Backoff, TransportSettings};
use serde::{Deserialize, Serialize};

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read agent config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid agent config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid agent config: `{field}` {reason}")]
    Invalid { field: &'static str, reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The broker's `host:port`.
    pub broker: String,
    /// Name to verify in the broker's certificate.
    #[serde(default)]
    pub server_name: Option<String>,
    pub tls: TlsSection,
    #[serde(default)]
    pub reconnect: Reconnect,
    #[serde(default)]
    pub transport: TransportSettings,
    /// The data sources this agent reads, by name.
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, SourceConfig>,
}

/// One data source of the agent's catalog.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// Connector kind (`mysql`, `postgres`, `sqlite`, ...).
    pub kind: String,
    /// Where it is, with credentials. Never sent to the broker.
    pub url: String,
    /// Connector options (as a job's reader parameters would give them).
    #[serde(default)]
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Tables jobs may read (`orders`, `shop.*`, `*`); empty: any table.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Whether jobs may send free-form SQL: `querySql`, or a `where` with a
    /// subquery or a `;`. Off unless set: a free query reads any table.
    #[serde(default)]
    pub allow_query_sql: bool,
}

impl std::fmt::Debug for SourceConfig {
    // The URL may hold a password: keep it out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceConfig")
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field("options", &self.options)
            .field("tables", &self.tables)
            .field("allow_query_sql", &self.allow_query_sql)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Reconnect policy; see [`ferry_tunnel::backoff`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Reconnect {
    pub initial_ms: u64,
    pub max_secs: u64,
    pub stable_secs: u64,
}

impl Default for Reconnect {
    fn default() -> Self {
        Self {
            initial_ms: 500,
            max_secs: 30,
            stable_secs: 60,
        }
    }
}

impl Reconnect {
    pub fn backoff(&self) -> Backoff {
        Backoff::new(
            Duration::from_millis(self.initial_ms),
            Duration::from_secs(self.max_secs),
            Duration::from_secs(self.stable_secs),
        )
    }
}

impl AgentConfig {
    /// Reads and checks a config file; relative paths are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config: AgentConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.tls.ca,
            &mut config.tls.cert,
            &mut config.tls.key,
        ] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        config.check()?;
        Ok(config)
    }

    /// Checks values the type system does not.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.broker_host()?;
        if self.reconnect.initial_ms == 0 || self.reconnect.max_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "reconnect",
                reason: "initial_ms and max_secs must be at least 1".into(),
            });
        }
        for (name, source) in &self.sources {
            let ok = !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(ConfigError::Invalid {
                    field: "sources",
                    reason: format!(
                        "`{name}`: a data source name is 1-128 letters, digits, `_`, `.` or `-`"
                    ),
                });
            }
            if source.kind.trim().is_empty() || source.url.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    field: "sources",
                    reason: format!("`{name}`: `kind` and `url` must not be empty"),
                });
            }
        }
        self.transport
            .to_quinn()
            .map_err(|e| ConfigError::Invalid {
                field: "transport",
                reason: e.to_string(),
            })?;
        Ok(())
    }

    /// The host part of `broker` (brackets of an IPv6 literal removed).
    pub fn broker_host(&self) -> Result<&str, ConfigError> {
        let invalid = || ConfigError::Invalid {
            field: "broker",
            reason: format!("`{}` is not host:port", self.broker),
        };
        let (host, port) = self.broker.rsplit_once(':').ok_or_else(invalid)?;
        port.parse::<u16>().map_err(|_| invalid())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid());
        }
        Ok(host)
    }

    /// The name checked against the broker's certificate.
    pub fn server_name(&self) -> Result<String, ConfigError> {
        match &self.server_name {
            Some(n) => Ok(n.clone()),
            None => Ok(self.broker_host()?.to_string()),
        }
    }

    pub fn tls_files(&self) -> ClientTlsFiles {
        ClientTlsFiles {
            ca: self.tls.ca.clone(),
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> AgentConfig {
        toml::from_str(s).unwrap()
    }

    #[test]
    fn missing_ca_is_an_error() {
        let e =
            toml::from_str::<AgentConfig>("broker = \"b:1\"\n[tls]\ncert = \"c\"\nkey = \"k\"\n")
                .unwrap_err();
        assert!(e.to_string().contains("missing field `ca`"), "{e}");
    }

    #[test]
    fn server_name_defaults_to_broker_host() {
        let c =
            parse("broker = \"broker.example.com:7800\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n");
        assert_eq!(c.server_name().unwrap(), "broker.example.com");
        let c = parse("broker = \"[::1]:7800\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n");
        assert_eq!(c.server_name().unwrap(), "::1");
    }

    #[test]
    fn sources_parse_and_hide_their_url() {
        let c = parse(
            "broker = \"b:1\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n\
             [sources.orders_db]\nkind = \"mysql\"\nurl = \"mysql://u:hunter2@h/db\"\n\
             options = { zeroDate = \"error\" }\n",
        );
        c.check().unwrap();
        let s = &c.sources["orders_db"];
        assert_eq!(s.kind, "mysql");
        assert_eq!(s.options["zeroDate"], "error");
        assert!(!format!("{c:?}").contains("hunter2"));
        let bad = parse(
            "broker = \"b:1\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n\
             [sources.\"a/b\"]\nkind = \"mysql\"\nurl = \"x\"\n",
        );
        let e = bad.check().unwrap_err().to_string();
        assert!(e.contains("`sources`") && e.contains("a/b"), "{e}");
    }

    #[test]
    fn broker_without_port_is_refused() {
        let c = parse("broker = \"broker.example.com\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n");
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("`broker`") && e.contains("host:port"), "{e}");
    }
}
