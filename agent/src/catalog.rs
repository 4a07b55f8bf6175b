//! The agent's data sources: names from its config, opened on first use.
//!
//! Connection pools are kept per source for the life of the process so
//! every task of a job does not reconnect. What the broker sees of the
//! catalog is [`Catalog::advertised`]: names and kinds only. Every read the
//! broker asks for goes through [`Catalog::prepare`], which holds it
//! against the source's policy ([`crate::policy`]) before the source is
//! touched, and every split through [`Catalog::check_split`].
//!
//! What a plan learned of a read (its schema, its table's columns) is kept
//! for the job's tasks ([`Described`]), so a task does not ask the
//! database again; only what this agent found itself is kept, never what
//! the broker says.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow_schema::SchemaRef;
use ferry_connectors::{Kind, ReadSpec, Source, Split, SplitBounds};
use ferry_protocol::control::SourceInfo;
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::config::SourceConfig;
use crate::files::{FileRoot, Listings};
use crate::policy::{self, ReadLimits};

/// What the broker may be told of a connector error (never source values);
/// the whole error goes to the agent's log.
pub(crate) fn peer_message(e: &ferry_connectors::ConnectorError) -> String {
    tracing::warn!("{e}");
    e.peer_message()
}

/// Reads whose description this agent keeps (least recently planned dropped
/// first): far more than the jobs one agent runs at once.
const MAX_DESCRIBED: usize = 256;

/// What this agent found out about one read, kept for the job's tasks.
#[derive(Default)]
struct Described {
    /// The Arrow schema of what the read returns.
    schema: tokio::sync::OnceCell<SchemaRef>,
    /// Every column of the table or query it reads.
    columns: tokio::sync::OnceCell<Vec<String>>,
}

/// Descriptions by job key (data source, options and spec as the broker
/// sent them), bounded.
#[derive(Default)]
struct Descriptions {
    map: HashMap<String, Arc<Described>>,
    order: std::collections::VecDeque<String>,
}

impl Descriptions {
    fn get(&mut self, job: &str) -> Arc<Described> {
        if let Some(d) = self.map.get(job) {
            return d.clone();
        }
        while self.map.len() >= MAX_DESCRIBED {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        let d = Arc::new(Described::default());
        self.map.insert(job.to_string(), d.clone());
        self.order.push_back(job.to_string());
        d
    }
}

/// Options only the agent's config may set.
const AGENT_ONLY: &[&str] = &["endpoint", "region", "accessKey", "secretKey"];

/// The data sources an agent may read.
pub struct Catalog {
    configs: BTreeMap<String, SourceConfig>,
    limits: ReadLimits,
    open: Mutex<HashMap<String, Arc<dyn Source>>>,
    listings: Listings,
    described: std::sync::Mutex<Descriptions>,
}

/// A read the source's policy allows, ready to plan or run.
pub struct Read {
    /// The data source's name.
    pub name: String,
    pub source: Arc<dyn Source>,
    /// The spec as checked: `where` rendered again, `querySql` screened.
    pub spec: ReadSpec,
    /// File sources: the directory split paths are relative to.
    files: Option<FileRoot>,
    /// The job as the broker described it (source, options, spec), for the
    /// file listings and descriptions kept per job.
    job: String,
    /// What this agent found out about the read, shared by the job's tasks.
    described: Arc<Described>,
}

impl Read {
    /// Every column of what the spec reads (its table or query), as the
    /// source's catalog spells them.
    async fn column_names(&self) -> Result<&[String], String> {
        self.described
            .columns
            .get_or_try_init(|| async {
                let all = ReadSpec {
                    where_clause: None,
                    ..self.spec.clone()
                };
                self.source
                    .column_names(&all)
                    .await
                    .map_err(|e| peer_message(&e))
            })
            .await
            .map(Vec::as_slice)
    }

    /// The Arrow schema of what the read returns, looked up once per job.
    pub async fn schema(&self) -> Result<SchemaRef, String> {
        self.described
            .schema
            .get_or_try_init(|| async {
                self.source
                    .schema(&self.spec)
                    .await
                    .map_err(|e| peer_message(&e))
            })
            .await
            .cloned()
    }
}

impl Catalog {
    pub fn new(configs: BTreeMap<String, SourceConfig>, limits: ReadLimits) -> Self {
        Self {
            configs,
            limits,
            open: Mutex::new(HashMap::new()),
            listings: Listings::default(),
            described: std::sync::Mutex::new(Descriptions::default()),
        }
    }

    pub fn limits(&self) -> &ReadLimits {
        &self.limits
    }

    /// Warns (in the agent's log) about each database source whose login
    /// may do more than read: a superuser, or one holding file access or
    /// write privileges. The agent's policy does not depend on it, but the
    /// login's grants are the last line when `allow_query_sql` is on.
    pub async fn check_logins(&self) {
        for (name, config) in &self.configs {
            if policy::dialect(&config.kind).is_none() {
                continue;
            }
            match self.source(name, &Map::new()).await {
                Ok(source) => {
                    for w in source.privilege_warnings().await {
                        tracing::warn!(source = %name, "data source `{name}`: {w}");
                    }
                }
                Err(e) => {
                    tracing::warn!(source = %name, "data source `{name}`: its login could not be checked: {e}")
                }
            }
        }
    }

    /// `message` with every location of the agent's sources (URLs, paths,
    /// also as the file connectors write them) replaced by the source's
    /// name: what leaves for the broker never says where a source is.
    pub fn scrub(&self, message: String) -> String {
        let mut places: Vec<(String, &str)> = Vec::new();
        for (name, config) in &self.configs {
            let url = config.url.trim_end_matches('/');
            // `file:///d`, `sqlite:///d/x.db`: the path on the agent's disk.
            let local = url.split_once("://").map_or(url, |(_, path)| path);
            let mut forms = vec![url.to_string(), local.to_string()];
            if let Ok(real) = std::fs::canonicalize(local) {
                forms.push(real.to_string_lossy().into_owned());
            }
            for form in forms {
                let bare = form.trim_start_matches('/').to_string();
                for f in [form, bare] {
                    // Short forms ("/", "data") would mangle ordinary words.
                    if f.len() >= 4 {
                        places.push((f, name));
                    }
                }
            }
        }
        places.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
        places.into_iter().fold(message, |m, (f, name)| {
            m.replace(&f, &format!("<source {name}>"))
        })
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

    /// Checks a read the broker sent (`spec` and connector `options`) for
    /// data source `name`, and opens the source.
    pub async fn prepare(
        &self,
        name: &str,
        spec: &ReadSpec,
        options: &Map<String, Value>,
    ) -> Result<Read, String> {
        let config = self.config(name)?;
        let job = serde_json::to_string(&(name, options, spec)).map_err(|e| e.to_string())?;
        let mut spec = spec.clone();
        policy::check_spec(name, config, &mut spec, &self.limits).map_err(|e| e.to_string())?;
        let source = self.source(name, options).await?;
        let files = match config.connector() {
            Some(Kind::File) => Some(FileRoot::of(&config.url)?),
            _ => None,
        };
        let described = self
            .described
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&job);
        let mut read = Read {
            name: name.to_string(),
            source,
            spec,
            files,
            job,
            described,
        };
        if read.spec.where_clause.is_some() {
            let columns = read.column_names().await?.to_vec();
            policy::screen_where(name, config, &mut read.spec, &columns)
                .map_err(|e| e.to_string())?;
        }
        Ok(read)
    }

    /// The tables of data source `name` its policy lets jobs read, and the views and
    /// routines of those names a whole-database job would not migrate: nothing else of
    /// the database is named to the broker.
    pub async fn list_tables(&self, name: &str) -> Result<ferry_connectors::TableListing, String> {
        let config = self.config(name)?;
        let source = self.source(name, &Map::new()).await?;
        let listing = source.list_tables().await.map_err(|e| peer_message(&e))?;
        let allowed = |t: &str| policy::check_table(name, config, t).is_ok();
        let max = ferry_protocol::control::MAX_TABLES;
        let estimates = listing.rows.iter().copied().chain(std::iter::repeat(0));
        let (tables, rows): (Vec<String>, Vec<u64>) = listing
            .tables
            .into_iter()
            .zip(estimates)
            .filter(|(t, _)| allowed(t))
            .take(max)
            .unzip();
        Ok(ferry_connectors::TableListing {
            tables,
            rows,
            not_migrated: listing
                .not_migrated
                .into_iter()
                .filter(|o| o.rsplit(' ').next().is_some_and(&allowed))
                .take(max)
                .collect(),
        })
    }

    /// The table `read` reads, described for the broker's DDL: only the columns read
    /// (`schema`), and foreign keys only to tables this source's policy allows (the names
    /// of others do not leave the agent).
    pub async fn describe(
        &self,
        read: &Read,
        schema: &SchemaRef,
    ) -> Result<Option<ferry_connectors::spec::TableSchema>, String> {
        let Some(desc) = read
            .source
            .describe(&read.spec)
            .await
            .map_err(|e| peer_message(&e))?
        else {
            return Ok(None);
        };
        let config = self.config(&read.name)?;
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut desc = desc.project(&names, &names);
        desc.foreign_keys.retain(|f| {
            let name = f.references.display_name();
            policy::check_table(&read.name, config, &name).is_ok()
        });
        Ok(Some(desc))
    }

    /// Plans `read` into at most `max_splits` splits (capped by the
    /// agent's limit); file paths come out relative to the source.
    pub async fn plan(&self, read: &Read, max_splits: u32) -> Result<Vec<Split>, String> {
        let n = max_splits.clamp(1, self.limits.max_splits) as usize;
        let splits = read
            .source
            .plan(&read.spec, n)
            .await
            .map_err(|e| peer_message(&e))?
            .into_iter()
            .map(|s| s.of_table(read.spec.table_ref(Some(&read.name))))
            .collect();
        match &read.files {
            Some(root) => {
                let splits = root.relative(splits)?;
                self.listings.remember(&read.job, &splits);
                Ok(splits)
            }
            None => Ok(splits),
        }
    }

    /// Checks a split the broker sent for `read`: a file split must name a
    /// file the agent listed for this job (listed again here when this
    /// agent did not plan it), a key range a column of the table. Returns
    /// the split as the connector reads it.
    pub async fn check_split(&self, read: &Read, split: &Split) -> Result<Split, String> {
        let mut split = split.clone();
        split.check()?;
        match (&mut split.bounds, &read.files) {
            (SplitBounds::File { path }, Some(root)) => {
                let full = root.full(path)?;
                let listed = match self.listings.listed(&read.job, path) {
                    Some(listed) => listed,
                    None => {
                        self.plan(read, self.limits.max_splits).await?;
                        self.listings.listed(&read.job, path).unwrap_or(false)
                    }
                };
                if !listed {
                    return Err(format!(
                        "file `{path}` is not one this agent listed for the job"
                    ));
                }
                *path = full;
            }
            (SplitBounds::File { .. }, None) => {
                return Err("a file split for a source that is not a file source".into())
            }
            (_, Some(_)) => return Err("a file source reads file splits only".into()),
            (SplitBounds::IntRange { column, .. } | SplitBounds::NullKey { column }, None) => {
                if !read.column_names().await?.iter().any(|c| c == column) {
                    return Err(format!("split key `{column}` is not a column of the table"));
                }
            }
            (SplitBounds::All, None) => {}
        }
        // The order and the position are the broker's word: the columns must
        // be the table's, and the position's values are literals the source
        // writes in its own, injection-proof way.
        if !split.order_columns().is_empty() {
            if read.files.is_some() {
                return Err("a file split has no key order".into());
            }
            let columns = read.column_names().await?;
            if let Some(c) = split
                .order_columns()
                .iter()
                .find(|c| !columns.iter().any(|k| k == *c))
            {
                return Err(format!("order column `{c}` is not a column of the table"));
            }
        }
        // A split names its table for the engine's sake; the read is the spec's.
        if let Some(t) = &split.table {
            if Some(t) != read.spec.table_ref(Some(&read.name)).as_ref() {
                return Err(format!(
                    "split of table `{}`, for a read of another table",
                    t.display_name()
                ));
            }
        }
        Ok(split)
    }

    /// Data source `name`'s change-stream settings, or why it has none.
    pub fn changes(&self, name: &str) -> Result<crate::config::ChangesConfig, String> {
        let config = self.config(name)?;
        match &config.changes {
            Some(c) => Ok(c.clone()),
            None => Err(format!(
                "data source `{name}` does not allow change streams (the agent's config has no [sources.{name}.changes])"
            )),
        }
    }

    fn config(&self, name: &str) -> Result<&SourceConfig, String> {
        self.configs.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.configs.keys().map(String::as_str).collect();
            format!(
                "this agent has no data source `{name}` (it has: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// The source named `name` for a job with connector options
    /// `job_options`, opened (and kept) on first use.
    ///
    /// The agent's own options win over the job's, and a job may not set
    /// where a source is or how to log in to it (`endpoint`, `region`,
    /// `accessKey`, `secretKey`): those come from the agent's config only,
    /// so a job cannot send the agent's credentials elsewhere. For a file
    /// source, the job's `path` is taken relative to the source's URL, and
    /// the source is confined to the directory the agent's config names.
    pub async fn source(
        &self,
        name: &str,
        job_options: &Map<String, Value>,
    ) -> Result<Arc<dyn Source>, String> {
        let config = self.config(name)?;
        let mut options = job_options.clone();
        for key in AGENT_ONLY {
            options.remove(*key);
        }
        let sub = options.remove("path");
        options.extend(config.options.clone());
        let url = match sub {
            None => config.url.clone(),
            Some(_) if config.connector() != Some(Kind::File) => {
                return Err(format!(
                    "data source `{name}` is not a file source: a job may not give it a `path`"
                ))
            }
            Some(Value::String(sub)) => {
                if sub.starts_with('/')
                    || sub.contains("://")
                    || sub.contains(['\\', '\0'])
                    || sub.split('/').any(|c| c == "..")
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
        let kind = config
            .connector()
            .ok_or_else(|| format!("data source `{name}` is of no kind this agent knows"))?;
        let source: Arc<dyn Source> = if kind == Kind::File {
            Arc::new(
                ferry_connectors::file::FileSource::open_confined(&url, &options, &config.url)
                    .map_err(|e| format!("data source `{name}`: {}", peer_message(&e)))?,
            )
        } else {
            ferry_engine::registry::open_source_at(kind, &url, &options)
                .await
                .map_err(|e| match e {
                    ferry_engine::registry::OpenError::Connector { source, .. } => {
                        format!("data source `{name}`: {}", peer_message(&source))
                    }
                    other => format!("data source `{name}`: {other}"),
                })?
        };
        open.insert(key, source.clone());
        Ok(source)
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
                    changes: None,
                    secrets: Default::default(),
                },
            );
        }
        Catalog::new(m, ReadLimits::default())
    }

    fn opts(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    #[tokio::test]
    async fn a_job_cannot_leave_or_redirect_a_source() {
        let c = catalog();
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "a/../../b",
            "s3://other/x",
            r"a\..\b",
            "a\u{0}b",
        ] {
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
        // Messages for the broker name a source, never where it is.
        assert_eq!(
            c.scrub(
                "file var/log/shop/a.csv, line 3; /var/log/shop/b; postgres://u:secret@h/db".into()
            ),
            "file <source logs>/a.csv, line 3; <source logs>/b; <source db>"
        );
        // Only names and kinds are advertised.
        let ad = format!("{:?}", c.advertised());
        assert!(ad.contains("logs") && !ad.contains("secret") && !ad.contains("/var/log"));
    }
}
