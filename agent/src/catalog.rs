//! The agent's data sources: names from its config, opened on first use.
//!
//! Connection pools are kept per source for the life of the process so
//! every task of a job does not reconnect. What the broker sees of the
//! catalog is [`Catalog::advertised`]: names and kinds only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ferry_connectors::Source;
use ferry_protocol::control::SourceInfo;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::config::SourceConfig;

/// Options only the agent's config may set.
const AGENT_ONLY: &[&str] = &["endpoint", "region", "accessKey", "secretKey"];

/// The data sources an agent may read.
pub struct Catalog {
    configs: BTreeMap<String, SourceConfig>,
    open: Mutex<HashMap<String, Arc<dyn Source>>>,
}

impl Catalog {
    pub fn new(configs: BTreeMap<String, SourceConfig>) -> Self {
        Self {
            configs,
            open: Mutex::new(HashMap::new()),
        }
    }

    /// What the broker may know: name and connector kind of each source.
    pub fn advertised(&self) -> Vec<SourceInfo> {
        self.configs
            .iter()
            .map(|(name, c)| SourceInfo {
                name: name.clone(),
                kind: c.kind.clone(),
            })
            .collect()
    }

    /// Checks a read against the source's policy: its table must be one
    /// the source lists, and free-form SQL needs `allow_query_sql`.
    pub fn permit(&self, name: &str, spec: &ferry_connectors::ReadSpec) -> Result<(), String> {
        let Some(config) = self.configs.get(name) else {
            return Ok(()); // `source` reports the unknown name.
        };
        let free_sql = |what: &str| {
            format!(
                "data source `{name}` does not allow free-form SQL ({what}); set allow_query_sql = true for it in the agent's config to permit it"
            )
        };
        if !config.allow_query_sql {
            if spec
                .query_sql
                .as_deref()
                .is_some_and(|q| !q.trim().is_empty())
            {
                return Err(free_sql("querySql"));
            }
            if let Some(w) = &spec.where_clause {
                let lower = w.to_ascii_lowercase();
                let select = lower
                    .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                    .any(|word| word == "select");
                if select || w.contains(';') {
                    return Err(free_sql("a `where` with a subquery or `;`"));
                }
            }
        }
        if !config.tables.is_empty() && spec.query_sql.is_none() {
            let table = spec.table.as_deref().unwrap_or_default();
            if !config.tables.iter().any(|p| table_matches(p, table)) {
                return Err(format!(
                    "data source `{name}` does not allow reading table `{table}` (allowed: {})",
                    config.tables.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The source named `name` for a job with connector options
    /// `job_options`, opened (and kept) on first use.
    ///
    /// The agent's own options win over the job's, and a job may not set
    /// where a source is or how to log in to it (`endpoint`, `region`,
    /// `accessKey`, `secretKey`): those come from the agent's config only,
    /// so a job cannot send the agent's credentials elsewhere. For a file
    /// source, the job's `path` is taken relative to the source's URL.
    pub async fn source(
        &self,
        name: &str,
        job_options: &Map<String, Value>,
    ) -> Result<Arc<dyn Source>, String> {
        let config = self.configs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.configs.keys().map(String::as_str).collect();
            format!(
                "this agent has no data source `{name}` (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })?;
        let mut options = job_options.clone();
        for key in AGENT_ONLY {
            options.remove(*key);
        }
        let sub = options.remove("path");
        options.extend(config.options.clone());
        let url = match sub {
            None => config.url.clone(),
            Some(_) if config.kind != "file" => {
                return Err(format!(
                    "data source `{name}` is not a file source: a job may not give it a `path`"
                ))
            }
            Some(Value::String(sub)) => {
                if sub.starts_with('/') || sub.contains("://") || sub.split('/').any(|c| c == "..")
                {
                    return Err(format!(
                        "path `{sub}` leaves data source `{name}`: give a path relative to it, without `..`"
                    ));
                }
                format!("{}/{}", config.url.trim_end_matches('/'), sub)
            }
            Some(other) => return Err(format!("path must be a string, got {other}")),
        };
        // Sources are kept per name, location and options, so tasks of a
        // job share one connection pool.
        let key = format!("{name}\u{0}{url}\u{0}{}", Value::Object(options.clone()));
        // Held across the open so concurrent tasks share one pool.
        let mut open = self.open.lock().await;
        if let Some(s) = open.get(&key) {
            return Ok(s.clone());
        }
        let source = ferry_engine::registry::open_source_at(&config.kind, &url, &options)
            .await
            .map_err(|e| format!("data source `{name}`: {e}"))?;
        open.insert(key, source.clone());
        Ok(source)
    }
}

/// `pattern` is a table name, `schema.*`, or `*` (case-sensitive, quotes
/// and backticks ignored).
fn table_matches(pattern: &str, table: &str) -> bool {
    let clean = |s: &str| s.replace(['"', '`'], "");
    let (pattern, table) = (clean(pattern), clean(table));
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => table.starts_with(prefix) && !table[prefix.len()..].contains('.'),
        None => pattern == table,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let mut m = BTreeMap::new();
        for (name, kind, url) in [
            ("logs", "file", "/var/log/shop"),
            ("db", "postgres", "postgres://u:secret@h/db"),
        ] {
            m.insert(
                name.to_string(),
                SourceConfig {
                    kind: kind.into(),
                    url: url.into(),
                    options: Map::new(),
                    tables: if name == "db" {
                        vec!["orders".into(), "audit.*".into()]
                    } else {
                        vec![]
                    },
                    allow_query_sql: false,
                    secrets: Default::default(),
                },
            );
        }
        Catalog::new(m)
    }

    fn opts(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn policy_tables_and_free_sql() {
        let c = catalog();
        let spec = |table: &str, q: Option<&str>, w: Option<&str>| ferry_connectors::ReadSpec {
            table: Some(table.into()),
            query_sql: q.map(String::from),
            where_clause: w.map(String::from),
            ..Default::default()
        };
        assert!(c
            .permit("db", &spec("orders", None, Some("id > 5")))
            .is_ok());
        assert!(c.permit("db", &spec("audit.log", None, None)).is_ok());
        let e = c.permit("db", &spec("users", None, None)).unwrap_err();
        assert!(
            e.contains("table `users`") && e.contains("orders, audit.*"),
            "{e}"
        );
        assert!(c.permit("db", &spec("audit.x.y", None, None)).is_err());
        let e = c
            .permit("db", &spec("orders", Some("SELECT * FROM users"), None))
            .unwrap_err();
        assert!(
            e.contains("querySql") && e.contains("allow_query_sql"),
            "{e}"
        );
        for w in [
            "id IN (SELECT id FROM users)",
            "1=1; DROP TABLE x",
            "x=(Select 1)",
        ] {
            assert!(
                c.permit("db", &spec("orders", None, Some(w))).is_err(),
                "{w}"
            );
        }
        // `selected` is a word of its own, not a subquery.
        assert!(c
            .permit("db", &spec("orders", None, Some("selected = 1")))
            .is_ok());
        assert!(table_matches("*", "anything.at_all"));
    }

    #[tokio::test]
    async fn a_job_cannot_leave_or_redirect_a_source() {
        let c = catalog();
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "s3://other/x"] {
            let e = c
                .source("logs", &opts(&[("path", bad)]))
                .await
                .err()
                .unwrap();
            assert!(e.contains("leaves data source `logs`"), "{bad}: {e}");
        }
        let e = c
            .source("db", &opts(&[("path", "other")]))
            .await
            .err()
            .unwrap();
        assert!(e.contains("not a file source"), "{e}");
        let e = c.source("nope", &Map::new()).await.err().unwrap();
        assert!(
            e.contains("no data source `nope`") && e.contains("db, logs"),
            "{e}"
        );
        // Only names and kinds are advertised.
        let ad = format!("{:?}", c.advertised());
        assert!(ad.contains("logs") && !ad.contains("secret") && !ad.contains("/var/log"));
    }
}
