//! Agent configuration (TOML).
//!
//! ```toml
//! broker = "broker.example.com:7800"   # host:port, resolved on every attempt
//! # server_name = "broker.example.com" # name checked in the broker's certificate;
//!                                      # defaults to the host part of `broker`
//! # bind = "10.0.0.7"                  # local address to dial from (a multi-homed host);
//!                                      # default: the one the routing table picks
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
//! [tcp_fallback]                       # optional: where UDP is blocked
//! mode = "auto"                        # auto: QUIC; TLS over TCP only when QUIC gets no
//!                                      # answer twice while TCP gets through (UDP blocked);
//!                                      # always: TLS over TCP only; never: QUIC only
//! address = "broker.example.com:443"   # the broker's TCP address (default: `broker`)
//! quic_wait_secs = 5                   # how long an unanswered QUIC attempt is given
//! retry_quic_secs = 600                # after a fallback, reconnect over TCP this long
//!                                      # before QUIC is tried again (0: try QUIC every time)
//! probe_quic_secs = 60                 # on TLS/TCP, try QUIC this often in the background
//!                                      # and move to it when idle (0: never)
//!
//! [sources.orders_db]                  # data sources jobs may name as <group>/orders_db
//! kind = "mysql"                       # mysql, postgres, sqlite, file
//! url = "mysql://reader@10.0.0.5:3306/shop"
//! password = { env = "ORDERS_DB_PASSWORD" }  # or { file = "orders.pw" }, or "literal"
//! options = { zeroDate = "null" }      # connector options (optional)
//! tables = ["orders", "audit.*"]       # what jobs may read (default: any table)
//! allow_query_sql = false              # free-form querySql (default: off)
//! changes = {}                        # change streams (default: off); PostgreSQL:
//!                                      # { slot = "..", publication = ".." }, MySQL:
//!                                      # { server_id = 1718000000 } (the replica id base)
//!
//! [limits]                             # optional: caps on what the broker may ask
//! max_fetch_size = 100000              # rows per batch (a job's fetchSize)
//! max_splits = 1024                    # splits per plan (a job's channel asks for them)
//! max_tasks = 64                       # tasks running at once
//! max_plans = 16                       # plan requests answered at once
//!
//! [sources.lake]
//! kind = "file"
//! url = { env = "LAKE_URL" }           # the whole URL may be secret too
//! options = { endpoint = "http://minio:9000", region = "us-east-1" }
//! secret_options = { accessKey = { env = "S3_ACCESS_KEY" }, secretKey = { file = "s3.secret" } }
//! ```
//! The broker learns each source's name and kind, never its URL.
//! Relative paths are taken from the config file's directory.
//!
//! Secrets (`url`, `password`, `secret_options` values) are a string, `{ env
//! = "NAME" }` (an environment variable) or `{ file = "PATH" }` (the file's
//! contents, one trailing newline removed; a warning is logged when the file
//! is readable by group or others). They are read once, by
//! [`AgentConfig::load`]: a variable that is not set or a file that cannot be
//! read is a config error naming the source and the variable or file, never
//! the value. `password` goes into the URL's user info, percent-encoded; it
//! is for `mysql` and `postgres` sources whose URL names a user and holds no
//! password itself. `secret_options` are merged into `options` (a name may
//! not be in both). Neither the URL nor a secret option appears in `Debug`
//! output or in an error.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ferry_certs::ClientTlsFiles;
use ferry_connectors::Kind;
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
    /// Local address to dial the broker from (QUIC and TCP alike), for a
    /// host with several; by default the routing table picks.
    #[serde(default)]
    pub bind: Option<std::net::IpAddr>,
    pub tls: TlsSection,
    #[serde(default)]
    pub reconnect: Reconnect,
    #[serde(default)]
    pub transport: TransportSettings,
    /// TLS over TCP when QUIC cannot get through.
    #[serde(default)]
    pub tcp_fallback: TcpFallback,
    /// The data sources this agent reads, by name.
    #[serde(default)]
    pub sources: std::collections::BTreeMap<String, SourceConfig>,
    /// Caps on what one message from the broker may make the agent do.
    #[serde(default)]
    pub limits: crate::policy::ReadLimits,
}

/// When the agent uses TLS over TCP instead of QUIC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FallbackMode {
    /// QUIC first; TLS over TCP when QUIC gets no answer at all (UDP
    /// blocked). Every reconnect tries QUIC again first.
    #[default]
    Auto,
    /// TLS over TCP only (a network known to drop UDP).
    Always,
    /// QUIC only.
    Never,
}

/// The `[tcp_fallback]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcpFallback {
    pub mode: FallbackMode,
    /// The broker's TCP `host:port`; default: the same as `broker` (the
    /// broker listens on TCP at the port of its QUIC listener unless told
    /// otherwise).
    pub address: Option<String>,
    /// Seconds a QUIC attempt may go without any answer before TCP is tried.
    pub quic_wait_secs: u64,
    /// After QUIC got no answer, reconnects go straight to TLS over TCP for
    /// this many seconds, so a network that drops UDP does not cost
    /// `quic_wait_secs` on every reconnect; then QUIC is tried again. 0: try
    /// QUIC first every time.
    pub retry_quic_secs: u64,
    /// While the tunnel runs over TLS/TCP, QUIC is tried in the background
    /// this often; once it answers, the tunnel moves to it at a moment no
    /// task or plan is running. 0: never.
    pub probe_quic_secs: u64,
}

impl Default for TcpFallback {
    fn default() -> Self {
        Self {
            mode: FallbackMode::Auto,
            address: None,
            quic_wait_secs: 5,
            retry_quic_secs: 600,
            probe_quic_secs: 60,
        }
    }
}

/// One data source of the agent's catalog.
///
/// Deserialized as written; the secrets it refers to (`{ env = ... }`,
/// `{ file = ... }`, `password`, `secret_options`) are read by
/// [`AgentConfig::load`] (or [`AgentConfig::resolve_secrets`]), after which
/// `url` and `options` hold the values to connect with.
#[derive(Clone, Serialize, Deserialize)]
#[serde(from = "RawSource")]
pub struct SourceConfig {
    /// Connector kind (`mysql`, `postgres`, `sqlite`, ...).
    pub kind: String,
    /// Where it is, with credentials. Never sent to the broker.
    pub url: String,
    /// Connector options (as a job's reader parameters would give them).
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Tables jobs may read (`orders`, `shop.*`, `*`); empty: any table.
    pub tables: Vec<String>,
    /// Whether jobs may send free-form SQL (`querySql`): one read-only
    /// statement over tables `tables` allows. Off unless set. A `where` is
    /// always screened to a plain filter on the table's columns.
    pub allow_query_sql: bool,
    /// Change streams of this source: off unless `[sources.NAME.changes]` is given.
    pub changes: Option<ChangesConfig>,
    /// Secrets not read yet, and which options hold secrets.
    #[serde(skip)]
    pub(crate) secrets: SourceSecrets,
}

/// `[sources.NAME.changes]`: jobs may stream this source's committed changes (of the tables
/// `tables` allows).
///
/// PostgreSQL: the agent makes the publication (`FOR TABLE` the streamed tables) and the
/// slot if they do not exist; both names are the agent's, never a job's, so a broker cannot
/// make a source keep WAL for slots of its choosing. The login needs the `REPLICATION`
/// attribute, and to make the publication, ownership of the tables (or name a publication
/// an administrator made).
///
/// MySQL / MariaDB: the agent reads the binary log as a replica (the login needs
/// `REPLICATION SLAVE` and `BINLOG MONITOR` or `REPLICATION CLIENT`), registering with a
/// replica id of `server_id` plus a number derived from the streamed tables, so streams of
/// different tables do not displace each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangesConfig {
    /// The replication slot (default `ferry_<source name>`, `.` and `-` as `_`).
    #[serde(default)]
    pub slot: Option<String>,
    /// The publication (default: the slot's name).
    #[serde(default)]
    pub publication: Option<String>,
    /// MySQL: the base of the replica ids streams register with (default 1718000000).
    #[serde(default)]
    pub server_id: Option<u32>,
}

/// The base of MySQL replica ids when the config gives none: far from the small ids
/// servers are usually given.
pub const DEFAULT_SERVER_ID: u32 = 1_718_000_000;

impl ChangesConfig {
    /// The slot and publication names for source `source`.
    pub fn names(&self, source: &str) -> (String, String) {
        let slot = self.slot.clone().unwrap_or_else(|| {
            format!("ferry_{source}")
                .to_ascii_lowercase()
                .replace(['.', '-'], "_")
        });
        let publication = self.publication.clone().unwrap_or_else(|| slot.clone());
        (slot, publication)
    }
}

impl SourceConfig {
    /// The connector kind (`None` for a name no connector has, which
    /// [`AgentConfig::check`] refuses).
    pub fn connector(&self) -> Option<Kind> {
        Kind::from_name(&self.kind)
    }
}

/// The secret parts of a source before [`AgentConfig::load`] reads them.
#[derive(Clone, Default)]
pub(crate) struct SourceSecrets {
    url: Option<Secret>,
    password: Option<Secret>,
    options: std::collections::BTreeMap<String, Secret>,
    /// Options that came from `secret_options`: redacted in `Debug`.
    redact: std::collections::BTreeSet<String>,
}

impl SourceSecrets {
    fn pending(&self) -> bool {
        self.url.is_some() || self.password.is_some() || !self.options.is_empty()
    }
}

/// The source as written in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: String,
    url: Secret,
    #[serde(default)]
    password: Option<Secret>,
    #[serde(default)]
    options: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    secret_options: std::collections::BTreeMap<String, Secret>,
    #[serde(default)]
    tables: Vec<String>,
    #[serde(default)]
    allow_query_sql: bool,
    #[serde(default)]
    changes: Option<ChangesConfig>,
}

impl From<RawSource> for SourceConfig {
    fn from(raw: RawSource) -> Self {
        let (url, url_secret) = match raw.url {
            Secret::Literal(u) => (u, None),
            other => (String::new(), Some(other)),
        };
        SourceConfig {
            kind: raw.kind,
            url,
            options: raw.options,
            tables: raw.tables,
            allow_query_sql: raw.allow_query_sql,
            changes: raw.changes,
            secrets: SourceSecrets {
                url: url_secret,
                password: raw.password,
                options: raw.secret_options,
                redact: Default::default(),
            },
        }
    }
}

/// A secret value in the config: the value itself, an environment
/// variable, or a file.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Literal(String),
    Env(String),
    File(PathBuf),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Literal(_) => f.write_str("<redacted>"),
            Secret::Env(name) => write!(f, "{{ env = {name:?} }}"),
            Secret::File(path) => write!(f, "{{ file = {:?} }}", path.display().to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string, { env = \"NAME\" } or { file = \"PATH\" }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::Literal(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Secret, A::Error> {
                use serde::de::Error;
                let mut found = None;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    let secret = match key.as_str() {
                        "env" if !value.is_empty() => Secret::Env(value),
                        "file" if !value.is_empty() => Secret::File(PathBuf::from(value)),
                        "env" | "file" => {
                            return Err(A::Error::custom(format!("`{key}` must not be empty")))
                        }
                        _ => return Err(A::Error::unknown_field(&key, &["env", "file"])),
                    };
                    if found.replace(secret).is_some() {
                        return Err(A::Error::custom("give one of `env` or `file`, not both"));
                    }
                }
                found.ok_or_else(|| {
                    A::Error::custom("expected { env = \"NAME\" } or { file = \"PATH\" }")
                })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            Secret::Literal(v) => s.serialize_str(v),
            Secret::Env(name) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("env", name)?;
                m.end()
            }
            Secret::File(path) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("file", path)?;
                m.end()
            }
        }
    }
}

impl Secret {
    /// The value: read from the environment or a file (relative to `base`).
    /// Errors name `what`, the source and the variable or file, never a value.
    fn read(
        &self,
        source: &str,
        what: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<String, ConfigError> {
        let invalid = |reason: String| source_error(source, reason);
        match self {
            Secret::Literal(v) => Ok(v.clone()),
            Secret::Env(name) => match env(name) {
                Some(v) if !v.is_empty() => Ok(v),
                Some(_) => Err(invalid(format!(
                    "environment variable `{name}` (for `{what}`) is empty"
                ))),
                None => Err(invalid(format!(
                    "environment variable `{name}` (for `{what}`) is not set"
                ))),
            },
            Secret::File(path) => {
                let path = if path.is_relative() {
                    base.join(path)
                } else {
                    path.clone()
                };
                let cannot = |e: std::io::Error| {
                    invalid(format!(
                        "cannot read {} (for `{what}`): {e}",
                        path.display()
                    ))
                };
                let meta = std::fs::metadata(&path).map_err(cannot)?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = meta.permissions().mode();
                    if mode & 0o077 != 0 {
                        tracing::warn!(
                            source,
                            file = %path.display(),
                            mode = format!("{:o}", mode & 0o777),
                            "secret file for `{what}` is accessible to group or others; chmod 600 it"
                        );
                    }
                }
                #[cfg(not(unix))]
                let _ = meta;
                let text = std::fs::read_to_string(&path).map_err(cannot)?;
                let text = text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text);
                if text.is_empty() {
                    return Err(invalid(format!(
                        "{} (for `{what}`) is empty",
                        path.display()
                    )));
                }
                Ok(text.to_string())
            }
        }
    }
}

fn source_error(source: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        field: "sources",
        reason: format!("`{source}`: {reason}"),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `url` with `password` put into its user info. The reason of an error
/// never holds the URL (it may hold secrets itself).
fn with_password(url: &str, password: &str) -> Result<String, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("`url` is not of the form scheme://user@host/...")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return Err("`password` is given but `url` names no user (scheme://user@host/...)".into());
    };
    if userinfo.contains(':') {
        return Err(
            "`url` already holds a password and `password` is given too: keep one of them".into(),
        );
    }
    if userinfo.is_empty() {
        return Err("`password` is given but `url` names no user (scheme://user@host/...)".into());
    }
    Ok(format!(
        "{scheme}://{userinfo}:{}@{host}{tail}",
        percent_encode(password)
    ))
}

impl SourceConfig {
    /// Reads this source's secrets into `url` and `options`.
    fn resolve(
        &mut self,
        name: &str,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let secrets = std::mem::take(&mut self.secrets);
        let mut redact = secrets.redact;
        if let Some(url) = &secrets.url {
            self.url = url.read(name, "url", base, env)?;
        }
        for (key, secret) in &secrets.options {
            if self.options.contains_key(key) {
                return Err(source_error(
                    name,
                    format!("`{key}` is in both `options` and `secret_options`"),
                ));
            }
            let value = secret.read(name, &format!("secret_options.{key}"), base, env)?;
            self.options
                .insert(key.clone(), serde_json::Value::String(value));
            redact.insert(key.clone());
        }
        if let Some(password) = &secrets.password {
            if !self.connector().is_some_and(Kind::takes_password) {
                let takers: Vec<&str> = Kind::ALL
                    .into_iter()
                    .filter(|k| k.takes_password())
                    .map(Kind::name)
                    .collect();
                return Err(source_error(
                    name,
                    format!(
                        "kind `{}` takes no `password` (only {} do); give credentials in `url` or `secret_options`",
                        self.kind,
                        takers.join(" and ")
                    ),
                ));
            }
            let password = password.read(name, "password", base, env)?;
            self.url = with_password(&self.url, &password).map_err(|e| source_error(name, e))?;
        }
        self.secrets.redact = redact;
        Ok(())
    }
}

impl std::fmt::Debug for SourceConfig {
    // The URL may hold a password, options may hold keys: keep them out of
    // logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let options: serde_json::Map<String, serde_json::Value> = self
            .options
            .iter()
            .map(|(k, v)| {
                let lower = k.to_ascii_lowercase();
                let secret = self.secrets.redact.contains(k)
                    || ["secret", "password", "token", "credential"]
                        .iter()
                        .any(|w| lower.contains(w));
                let v = if secret {
                    serde_json::Value::String("<redacted>".into())
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        f.debug_struct("SourceConfig")
            .field("kind", &self.kind)
            .field("url", &"<redacted>")
            .field("options", &options)
            .field("tables", &self.tables)
            .field("allow_query_sql", &self.allow_query_sql)
            .field("changes", &self.changes)
            .field("secrets", &self.secrets)
            .finish()
    }
}

impl std::fmt::Debug for SourceSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Env and file names only; a literal shows as <redacted>.
        f.debug_struct("unresolved")
            .field("url", &self.url)
            .field("password", &self.password)
            .field("options", &self.options)
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
        Self::load_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`AgentConfig::load`] with `env` as the environment secrets are read
    /// from.
    pub fn load_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
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
        config.resolve_secrets(base, env)?;
        config.check()?;
        Ok(config)
    }

    /// Reads the sources' secrets (`{ env = ... }`, `{ file = ... }` with
    /// paths relative to `base`, `password`, `secret_options`) into their
    /// `url` and `options`. [`AgentConfig::load`] does this.
    pub fn resolve_secrets(
        &mut self,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        for (name, source) in &mut self.sources {
            source.resolve(name, base, env)?;
        }
        Ok(())
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
            if source.secrets.pending() {
                return Err(source_error(
                    name,
                    "holds secrets that were not read: load the config with AgentConfig::load"
                        .into(),
                ));
            }
            if source.kind.trim().is_empty() || source.url.trim().is_empty() {
                return Err(ConfigError::Invalid {
                    field: "sources",
                    reason: format!("`{name}`: `kind` and `url` must not be empty"),
                });
            }
            if let Some(c) = &source.changes {
                match source.connector() {
                    Some(Kind::Postgres) => {
                        if c.server_id.is_some() {
                            return Err(source_error(
                                name,
                                "`changes.server_id` is for MySQL sources".into(),
                            ));
                        }
                        let (slot, publication) = c.names(name);
                        for (what, n) in [("slot", &slot), ("publication", &publication)] {
                            ferry_connectors::postgres::check_name(what, n)
                                .map_err(|e| source_error(name, format!("`changes`: {e}")))?;
                        }
                    }
                    Some(Kind::MySql) => {
                        if c.slot.is_some() || c.publication.is_some() {
                            return Err(source_error(
                                name,
                                "`changes.slot` and `changes.publication` are for PostgreSQL \
                                 sources"
                                    .into(),
                            ));
                        }
                        if c.server_id
                            .is_some_and(|id| id == 0 || id > u32::MAX - 65_536)
                        {
                            return Err(source_error(
                                name,
                                format!(
                                    "`changes.server_id` must be between 1 and {}",
                                    u32::MAX - 65_536
                                ),
                            ));
                        }
                    }
                    _ => {
                        return Err(source_error(
                            name,
                            "`changes`: change streams read PostgreSQL and MySQL sources".into(),
                        ))
                    }
                }
            }
            if source.connector().is_none() {
                let known: Vec<&str> = Kind::ALL.into_iter().map(Kind::name).collect();
                return Err(source_error(
                    name,
                    format!(
                        "unknown kind `{}`; known: {}",
                        source.kind,
                        known.join(", ")
                    ),
                ));
            }
        }
        self.transport
            .to_quinn()
            .map_err(|e| ConfigError::Invalid {
                field: "transport",
                reason: e.to_string(),
            })?;
        if let Some(a) = &self.tcp_fallback.address {
            if !a
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
            {
                return Err(ConfigError::Invalid {
                    field: "tcp_fallback.address",
                    reason: format!("`{a}` is not host:port"),
                });
            }
        }
        if !(1..=60).contains(&self.tcp_fallback.quic_wait_secs) {
            return Err(ConfigError::Invalid {
                field: "tcp_fallback.quic_wait_secs",
                reason: "must be between 1 and 60".into(),
            });
        }
        if self.tcp_fallback.retry_quic_secs > 86_400 {
            return Err(ConfigError::Invalid {
                field: "tcp_fallback.retry_quic_secs",
                reason: "must be at most 86400 (a day)".into(),
            });
        }
        if self.tcp_fallback.probe_quic_secs > 86_400 {
            return Err(ConfigError::Invalid {
                field: "tcp_fallback.probe_quic_secs",
                reason: "must be at most 86400 (a day)".into(),
            });
        }
        Ok(())
    }

    /// The broker's TCP address for the fallback.
    pub fn broker_tcp(&self) -> &str {
        self.tcp_fallback.address.as_deref().unwrap_or(&self.broker)
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
        let oracle = parse(
            "broker = \"b:1\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n\
             [sources.erp]\nkind = \"oracle\"\nurl = \"oracle://h/db\"\n",
        );
        let e = oracle.check().unwrap_err().to_string();
        assert!(
            e.contains("unknown kind `oracle`; known: postgres, mysql, sqlite, file"),
            "{e}"
        );
    }

    #[test]
    fn change_stream_settings_fit_their_source() {
        let check = |kind: &str, changes: &str| {
            parse(&format!(
                "broker = \"b:1\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n\
                 [sources.s]\nkind = \"{kind}\"\nurl = \"x://h/db\"\nchanges = {changes}\n"
            ))
            .check()
            .map_err(|e| e.to_string())
        };
        assert!(check("mysql", "{}").is_ok());
        assert!(check("mysql", "{ server_id = 77 }").is_ok());
        assert!(check("postgres", "{ slot = \"s1\" }").is_ok());
        let e = check("mysql", "{ slot = \"s1\" }").unwrap_err();
        assert!(e.contains("for PostgreSQL"), "{e}");
        let e = check("postgres", "{ server_id = 77 }").unwrap_err();
        assert!(e.contains("for MySQL"), "{e}");
        let e = check("mysql", "{ server_id = 0 }").unwrap_err();
        assert!(e.contains("between 1"), "{e}");
        let e = check("sqlite", "{}").unwrap_err();
        assert!(e.contains("PostgreSQL and MySQL"), "{e}");
    }

    #[test]
    fn broker_without_port_is_refused() {
        let c = parse("broker = \"broker.example.com\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n");
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("`broker`") && e.contains("host:port"), "{e}");
    }

    const HEAD: &str = "broker = \"b:1\"\n[tls]\nca=\"a\"\ncert=\"c\"\nkey=\"k\"\n";

    /// Writes `text` (after HEAD) as agent.toml in a new directory and loads
    /// it with `env` as the environment.
    fn load(
        dir: &tempfile::TempDir,
        text: &str,
        env: &[(&str, &str)],
    ) -> Result<AgentConfig, ConfigError> {
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, format!("{HEAD}{text}")).unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AgentConfig::load_with_env(&path, &move |name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn password_literal_env_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(
            &dir,
            "[sources.a]\nkind = \"mysql\"\nurl = \"mysql://reader@h:3306/shop\"\npassword = \"lit\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.sources["a"].url, "mysql://reader:lit@h:3306/shop");

        let c = load(
            &dir,
            "[sources.a]\nkind = \"postgres\"\nurl = \"postgres://u@h/db?sslmode=disable\"\n\
             password = { env = \"PW\" }\n",
            &[("PW", "fromenv")],
        )
        .unwrap();
        assert_eq!(
            c.sources["a"].url,
            "postgres://u:fromenv@h/db?sslmode=disable"
        );

        // Relative to the config's directory; one trailing newline trimmed.
        std::fs::write(dir.path().join("pw"), "fromfile\n").unwrap();
        let c = load(
            &dir,
            "[sources.a]\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\npassword = { file = \"pw\" }\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.sources["a"].url, "mysql://u:fromfile@h/db");
        std::fs::write(dir.path().join("pw"), "two\n\n").unwrap();
        let c = load(
            &dir,
            "[sources.a]\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\npassword = { file = \"pw\" }\n",
            &[],
        )
        .unwrap();
        assert_eq!(c.sources["a"].url, "mysql://u:two%0A@h/db");
    }

    #[test]
    fn whole_url_and_secret_options() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ak"), "AKIA1\n").unwrap();
        let c = load(
            &dir,
            "[sources.lake]\nkind = \"file\"\nurl = { env = \"LAKE\" }\n\
             options = { region = \"r1\" }\n\
             secret_options = { secretKey = { env = \"S3_SECRET\" }, accessKey = { file = \"ak\" } }\n",
            &[("LAKE", "s3://bucket/p"), ("S3_SECRET", "sup3rs3cret")],
        )
        .unwrap();
        let s = &c.sources["lake"];
        assert_eq!(s.url, "s3://bucket/p");
        assert_eq!(s.options["secretKey"], "sup3rs3cret");
        assert_eq!(s.options["accessKey"], "AKIA1");
        assert_eq!(s.options["region"], "r1");
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("sup3rs3cret") && !debug.contains("AKIA1"),
            "{debug}"
        );
        assert!(!debug.contains("bucket"), "{debug}");

        let e = load(
            &dir,
            "[sources.lake]\nkind = \"file\"\nurl = \"/x\"\noptions = { secretKey = \"a\" }\n\
             secret_options = { secretKey = { env = \"S3_SECRET\" } }\n",
            &[("S3_SECRET", "sup3rs3cret")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`lake`") && e.contains("secretKey") && e.contains("both"),
            "{e}"
        );
    }

    #[test]
    fn missing_secrets_name_the_source_and_variable_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(
            &dir,
            "[sources.orders_db]\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\n\
             password = { env = \"ORDERS_DB_PASSWORD\" }\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "invalid agent config: `sources` `orders_db`: environment variable `ORDERS_DB_PASSWORD` (for `password`) is not set"
        );
        let e = load(
            &dir,
            "[sources.orders_db]\nkind = \"mysql\"\nurl = { file = \"nope.url\" }\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`orders_db`") && e.contains("nope.url") && e.contains("(for `url`)"),
            "{e}"
        );
        let e = load(
            &dir,
            "[sources.a]\nkind = \"mysql\"\nurl = \"x\"\npassword = { env = \"A\", file = \"b\" }\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not both"), "{e}");
        let e = load(
            &dir,
            "[sources.a]\nkind = \"mysql\"\nurl = \"x\"\npassword = { vault = \"A\" }\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("unknown field `vault`"), "{e}");
    }

    #[test]
    fn password_conflicts_and_kinds_without_one() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(
            &dir,
            "[sources.orders_db]\nkind = \"mysql\"\nurl = \"mysql://u:inurl-s3cret@h/db\"\n\
             password = { env = \"PW\" }\n",
            &[("PW", "env-s3cret")],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`orders_db`") && e.contains("already holds a password"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");

        let e = load(
            &dir,
            "[sources.local]\nkind = \"sqlite\"\nurl = \"sqlite:///d.db\"\npassword = \"pw-s3cret\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`local`") && e.contains("kind `sqlite` takes no `password`"),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let e = load(
            &dir,
            "[sources.logs]\nkind = \"file\"\nurl = \"/var/log\"\npassword = \"pw\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("kind `file` takes no `password`"), "{e}");

        let e = load(
            &dir,
            "[sources.a]\nkind = \"postgres\"\nurl = \"postgres://h/db\"\npassword = \"pw-s3cret\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("names no user") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn percent_encoded_password_reads_back_through_sqlx() {
        use std::str::FromStr;
        let password = "p@ss:w/rd%41#?x y&é";
        let dir = tempfile::tempdir().unwrap();
        let c = load(
            &dir,
            "[sources.my]\nkind = \"mysql\"\nurl = \"mysql://reader@10.0.0.5:3306/shop\"\n\
             password = { env = \"MY\" }\n\
             [sources.pg]\nkind = \"postgres\"\nurl = \"postgres://loader@[::1]:5432/dw?sslmode=disable\"\n\
             password = { env = \"MY\" }\n",
            &[("MY", password)],
        )
        .unwrap();
        let my = &c.sources["my"].url;
        assert!(
            my.starts_with(
                "mysql://reader:p%40ss%3Aw%2Frd%2541%23%3Fx%20y%26%C3%A9@10.0.0.5:3306/shop"
            ),
            "{my}"
        );
        let o = sqlx::mysql::MySqlConnectOptions::from_str(my).unwrap();
        assert_eq!(o.get_username(), "reader");
        assert_eq!(o.get_host(), "10.0.0.5");
        assert_eq!(o.get_database(), Some("shop"));
        // MySqlConnectOptions has no password getter: its Debug shows it.
        assert!(format!("{o:?}").contains(&format!("{password:?}")), "{o:?}");
        let pg = &c.sources["pg"].url;
        let o = sqlx::postgres::PgConnectOptions::from_str(pg).unwrap();
        assert_eq!(o.get_username(), "loader");
        assert_eq!(o.get_database(), Some("dw"));
        assert_eq!(o.get_port(), 5432);
        assert!(format!("{o:?}").contains(&format!("{password:?}")), "{o:?}");
    }

    #[test]
    fn debug_and_errors_never_show_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let c = load(
            &dir,
            "[sources.a]\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\npassword = \"lit-s3cret\"\n\
             secret_options = { token = \"tok-s3cret\" }\n",
            &[],
        )
        .unwrap();
        let debug = format!("{c:?} {:#?}", c.sources["a"]);
        assert!(!debug.contains("s3cret"), "{debug}");
        // Before loading: a literal shows as <redacted>, env/file by name.
        let raw = parse(&format!(
            "{}[sources.a]\nkind = \"mysql\"\nurl = \"mysql://u@h/db\"\npassword = \"lit-s3cret\"\n\
             secret_options = {{ k = {{ env = \"K_VAR\" }} }}\n",
            HEAD
        ));
        let debug = format!("{raw:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("K_VAR"),
            "{debug}"
        );
        // Unread secrets are refused rather than connecting with an empty URL.
        let e = raw.check().unwrap_err().to_string();
        assert!(e.contains("`a`") && e.contains("AgentConfig::load"), "{e}");
    }
}
