//! Job configuration, in DataX's shape.
//!
//! ```yaml
//! reader:
//!   name: mysqlreader            # or: mysql, postgresqlreader, postgres, ...
//!   parameter:
//!     url: mysql://root@127.0.0.1:3306/shop     # standalone; `datasource: group/name` through a broker
//!     table: orders
//!     column: [id, amount, created_at]           # DataX's `column`; `columns` works too
//!     where: "created_at >= '${bizdate}'"
//!     splitPk: id
//!     fetchSize: 8192
//! writer:
//!   name: postgresqlwriter
//!   parameter:
//!     url: postgres://postgres@127.0.0.1:5432/dw
//!     table: ods.orders
//!     writeMode: insert          # insert | replace | update
//!     preSql: ["truncate ods.orders"]
//!     createTable: true
//!     existing: append           # a table that exists: fail | truncate | append | replace | drop
//!                                # (unset: refused if it holds rows, unless preSql or writeMode
//!                                # replace/update says how to treat them)
//! setting:
//!   speed: {channel: 4, byte: 0, record: 0}     # 0 = unlimited
//!   errorLimit: {record: 0, percentage: 0.0}
//!   retry: {attempts: 5, backoffMs: 500}       # a task whose agent dropped
//!   compression: zstd:1                         # on the tunnel: none | zstd:<1..22>
//!   mode: copy                                  # copy | stream | snapshot+stream (changes, through an agent)
//! ```
//! Files (kind `file`; names `filereader`, `txtfilereader`, `csvwriter`,
//! `jsonreader`, `parquetwriter`, `logreader`, `s3reader`, … — see
//! `ferry_connectors::Kind::from_job_name`) take `path` instead of `url`, and their options (see
//! `ferry_connectors::file`) next to it:
//!
//! ```yaml
//! reader:
//!   name: logreader
//!   parameter:
//!     path: s3://raw/logs/user_log*.txt     # a file, a directory/prefix, or a glob
//!     endpoint: http://127.0.0.1:9000
//!     pattern: user_log                     # or nginx, or a regex with named groups
//! writer:
//!   name: parquetwriter
//!   parameter:
//!     path: lake/ods_raw_log_d/dt=${bizdate}  # a directory: part-00000.parquet, …
//!     writeMode: truncate                     # append (default) | truncate | nonConflict
//! ```
//!
//! DataX's own `{"job": {"content": [{"reader": …, "writer": …}], "setting": …}}`
//! is accepted as well, as is its `connection: [{jdbcUrl, table}]` with
//! `username`/`password`.

use std::collections::BTreeMap;
use std::path::Path;

use ferry_connectors::file::FileFormat;
use ferry_connectors::{Existing, KeyValue, Kind, Position, ReadSpec, WriteMode, WriteSpec};
use serde::Deserialize;
use serde_json::{Map, Value};

/// A job that cannot run as written.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("cannot read job file {path}: {message}")]
    Read { path: String, message: String },
    #[error("job file is neither valid YAML nor JSON: {0}")]
    Syntax(String),
    #[error("`{field}`: {reason}")]
    Field { field: String, reason: String },
    #[error("variable `${{{0}}}` is used but not set (pass -p {0}=VALUE)")]
    UnsetVariable(String),
}

/// Rows per batch a job may ask a reader for (agents cap it too: `[limits]
/// max_fetch_size`).
pub const MAX_FETCH_SIZE: usize = 100_000;

/// Tasks a job may run at once (`setting.speed.channel`).
pub const MAX_CHANNEL: usize = 1024;

fn field(field: impl Into<String>, reason: impl Into<String>) -> JobError {
    JobError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Where a reader or writer connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A URL with credentials (standalone).
    Url(String),
    /// `group/name` of a data source an agent owns (broker mode).
    DataSource { group: String, name: String },
}

/// The reader half.
#[derive(Debug, Clone, PartialEq)]
pub struct ReaderConfig {
    /// Connector kind, from the DataX name.
    pub kind: Kind,
    pub location: Location,
    pub spec: ReadSpec,
    /// Connector-specific options (e.g. `zeroDate`).
    pub options: Map<String, Value>,
    /// A whole-database job: which tables (`tables`, `exclude`); `spec.table` is unset.
    pub tables: Option<crate::database::TableSelection>,
    /// A sharded job: the sources and tables merged into the writer's one table.
    pub merge: Option<crate::merge::Merge>,
}

/// The writer half.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterConfig {
    pub kind: Kind,
    pub location: Location,
    pub spec: WriteSpec,
    pub options: Map<String, Value>,
    /// Where each table of a whole-database job goes.
    pub naming: crate::database::TableNaming,
    /// Target types the job chose for some source types (`typeMap`).
    pub type_map: crate::retype::TypeMap,
}

/// `setting.speed`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Speed {
    /// Tasks at once.
    pub channel: usize,
    /// Job-wide bytes per second (0 = unlimited).
    pub byte: u64,
    /// Job-wide records per second (0 = unlimited).
    pub record: u64,
}

impl Default for Speed {
    fn default() -> Self {
        Self {
            channel: 1,
            byte: 0,
            record: 0,
        }
    }
}

/// `setting.errorLimit`: the job fails when dirty records exceed either.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorLimit {
    /// Dirty records allowed (absent: no count limit, unless percentage is set).
    pub record: Option<u64>,
    /// Share of dirty records allowed, 0.0–1.0.
    pub percentage: Option<f64>,
}

/// `setting.retry`: how often a task whose reader was lost (its agent
/// dropped, the tunnel broke) is started again, on any live agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Retry {
    /// Attempts per task, the first one included (1: no retry).
    pub attempts: u32,
    /// Wait before the first retry; doubles per attempt, at most 30 s.
    pub backoff_ms: u64,
}

impl Default for Retry {
    fn default() -> Self {
        Self {
            attempts: 5,
            backoff_ms: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct Setting {
    pub speed: Speed,
    pub error_limit: ErrorLimit,
    pub retry: Retry,
    /// Compression on the tunnel, `none` or `zstd:<level>` (checked by the
    /// broker; a submitter may override it; standalone runs have no tunnel).
    pub compression: Option<String>,
    /// Verify every table the job wrote once it is written (`ferry verify`); a difference
    /// fails the job.
    pub verify: bool,
    /// What the job moves: a copy of the rows (`copy`, the default), or the source's
    /// committed changes from now on, applied until the job is stopped (`stream`).
    pub mode: Mode,
    /// Where a new stream begins (`mode: stream`, MySQL/MariaDB sources): after a binlog
    /// file and offset, or after a GTID set; without it, at the source's current position.
    /// A stream that committed a position resumes from that one instead.
    pub start: Option<StreamStart>,
}

/// `setting.start`: a binlog file and offset, or a GTID set (MariaDB's `domain-server-seq,…`
/// or MySQL's `uuid:first-last,…`) naming the transactions the target already holds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StreamStart {
    pub binlog_file: Option<String>,
    pub binlog_position: Option<u64>,
    pub gtid: Option<String>,
}

impl StreamStart {
    /// The position a stream starts after: `[file, offset]` or `[set]` (the agent parses and
    /// checks either).
    pub fn position(&self) -> Result<Position, JobError> {
        let values = match (&self.binlog_file, self.binlog_position, &self.gtid) {
            (Some(file), Some(pos), None) => {
                vec![KeyValue::Text(file.clone()), KeyValue::Int(i128::from(pos))]
            }
            (None, None, Some(set)) => vec![KeyValue::Text(set.clone())],
            _ => {
                return Err(field(
                    "setting.start",
                    "give `binlogFile` with `binlogPosition`, or `gtid`",
                ))
            }
        };
        Position::new(values).map_err(|e| field("setting.start", e.to_string()))
    }
}

/// `setting.mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Copy the rows once.
    #[default]
    Copy,
    /// Apply the source's committed changes (change data capture) until stopped.
    Stream,
    /// Copy the rows, then apply the changes made since the copy began (full + incremental):
    /// the stream's start position is recorded first, the copy upserts by key, and the
    /// stream replays from that position.
    #[serde(rename = "snapshot+stream")]
    SnapshotStream,
}

impl Mode {
    /// Whether the job streams changes (and so runs until stopped).
    pub fn streams(self) -> bool {
        matches!(self, Mode::Stream | Mode::SnapshotStream)
    }
}

/// A parsed, validated job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub reader: ReaderConfig,
    pub writer: WriterConfig,
    pub setting: Setting,
}

impl Job {
    /// Reads a job file, fills `${var}`s from `vars`, and checks it.
    pub fn load(path: &Path, vars: &BTreeMap<String, String>) -> Result<Self, JobError> {
        let text = std::fs::read_to_string(path).map_err(|e| JobError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::parse(&text, vars)
    }

    /// Parses job text (YAML, of which JSON is a subset).
    pub fn parse(text: &str, vars: &BTreeMap<String, String>) -> Result<Self, JobError> {
        let text = substitute(text, vars)?;
        let root: Value =
            serde_yaml_ng::from_str(&text).map_err(|e| JobError::Syntax(e.to_string()))?;
        let root = unwrap_datax(root)?;
        let Value::Object(mut root) = root else {
            return Err(field(
                "(top level)",
                "must be a mapping with reader, writer, setting",
            ));
        };
        let reader = root
            .remove("reader")
            .ok_or_else(|| field("reader", "missing"))?;
        let writer = root
            .remove("writer")
            .ok_or_else(|| field("writer", "missing"))?;
        let setting = match root.remove("setting") {
            Some(v) => {
                serde_json::from_value::<Setting>(v).map_err(|e| field("setting", e.to_string()))?
            }
            None => Setting::default(),
        };
        if let Some(k) = root.keys().next() {
            return Err(field(
                k.clone(),
                "unknown key (expected reader, writer, setting)",
            ));
        }
        let (reader, shards, source_columns) = take_shards(reader)?;
        let (rkind, rloc, mut rparam, ropts) = endpoint("reader", reader)?;
        let mut tables = crate::database::TableSelection::take(&mut rparam)
            .map_err(|e| field("reader.parameter", e))?;
        let spec: ReadSpec = serde_json::from_value(Value::Object(rparam))
            .map_err(|e| field("reader.parameter", e.to_string()))?;
        let (wkind, wloc, mut wparam, wopts) = endpoint("writer", writer)?;
        let naming = crate::database::TableNaming::take(&mut wparam)
            .map_err(|e| field("writer.parameter", e))?;
        let type_map = crate::retype::TypeMap::take(&mut wparam)
            .map_err(|e| field("writer.parameter.typeMap", e))?;
        let mode_given = wparam.contains_key("writeMode");
        let mut wspec: WriteSpec = serde_json::from_value(Value::Object(wparam))
            .map_err(|e| field("writer.parameter", e.to_string()))?;
        match wspec.existing {
            // `existing: replace` is `writeMode: replace` for a table that exists.
            Some(Existing::Replace) => match (mode_given, wspec.write_mode) {
                (true, WriteMode::Insert) => {
                    return Err(field(
                        "writer.parameter.existing",
                        "`replace` replaces rows by key, which `writeMode: insert` does not; \
                         drop `writeMode` or set it to replace or update",
                    ))
                }
                (false, _) => wspec.write_mode = WriteMode::Replace,
                (true, _) => {}
            },
            Some(_) if wkind == Kind::File => return Err(field(
                "writer.parameter.existing",
                "file targets do not take `existing` yet (their parts are named per job and split)",
            )),
            _ => {}
        }
        // Sharded: `shards`, or one source's `tables` into the writer's one `table`.
        let merge =
            match shards {
                Some(list) => Some(shards_of(rkind, list, tables.take(), source_columns)?),
                None if tables.is_some() && !wspec.table.trim().is_empty() => {
                    Some(crate::merge::Merge {
                        shards: vec![crate::merge::Shard {
                            name: crate::merge::Merge::default_name(&rloc),
                            location: rloc.clone(),
                            tables: tables.take().unwrap_or_default(),
                        }],
                        source_columns: source_columns.unwrap_or_default(),
                    })
                }
                None if source_columns.is_some() => return Err(field(
                    "reader.parameter.sourceColumns",
                    "is for a sharded job (`shards`, or `tables` into the writer's one `table`)",
                )),
                None => None,
            };
        if let Some(m) = &merge {
            m.check().map_err(|e| field("reader.parameter.shards", e))?;
        }
        let job = Job {
            reader: ReaderConfig {
                kind: rkind,
                location: rloc,
                spec,
                options: ropts,
                tables,
                merge,
            },
            writer: WriterConfig {
                kind: wkind,
                location: wloc,
                spec: wspec,
                options: wopts,
                naming,
                type_map,
            },
            setting,
        };
        job.check()?;
        Ok(job)
    }

    /// The SQL a reader sends, screened as the agent will screen it, so a
    /// job the agent would refuse is refused before anything runs: a
    /// `where` must be a plain filter ([`ferry_screen::screen_where`]; the
    /// table's columns are only known where the data is, so any column name
    /// passes here), `querySql` one read-only statement.
    fn screen_sql(&self) -> Result<(), JobError> {
        let Some(dialect) = self.reader.kind.dialect() else {
            return Ok(());
        };
        let r = &self.reader.spec;
        if let Some(w) = r.where_clause.as_deref().filter(|w| !w.trim().is_empty()) {
            ferry_screen::screen_where(w, dialect, None)
                .map_err(|e| field("reader.parameter.where", e.to_string()))?;
        }
        if let Some(q) = r.query_sql.as_deref() {
            if q.trim().is_empty() {
                return Err(field("reader.parameter.querySql", "is empty"));
            }
            ferry_screen::screen_query(q, dialect)
                .map_err(|e| field("reader.parameter.querySql", e.to_string()))?;
        }
        if let Some(t) = r.table.as_deref() {
            if t.trim().is_empty() {
                return Err(field("reader.parameter.table", "is empty"));
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), JobError> {
        let r = &self.reader.spec;
        if self.reader.kind == Kind::File {
            for (set, key) in [
                (r.table.is_some(), "table"),
                (r.query_sql.is_some(), "querySql"),
                (r.where_clause.is_some(), "where"),
                (r.split_pk.is_some(), "splitPk"),
            ] {
                if set {
                    return Err(field(
                        format!("reader.parameter.{key}"),
                        "not for files (a file reader reads `path`; each file is a split)",
                    ));
                }
            }
        }
        if self.reader.merge.is_some() {
            for (set, key) in [
                (r.table.is_some(), "reader.parameter.table"),
                (r.query_sql.is_some(), "reader.parameter.querySql"),
            ] {
                if set {
                    return Err(field(
                        key,
                        "not in a sharded job (its `shards` and `tables` say what it reads)",
                    ));
                }
            }
        }
        if self.reader.tables.is_some() {
            for (set, key) in [
                (r.table.is_some(), "reader.parameter.table"),
                (r.query_sql.is_some(), "reader.parameter.querySql"),
                (r.where_clause.is_some(), "reader.parameter.where"),
                (r.split_pk.is_some(), "reader.parameter.splitPk"),
                (!r.columns.is_empty(), "reader.parameter.column"),
                (!self.writer.spec.table.is_empty(), "writer.parameter.table"),
                (
                    !self.writer.spec.columns.is_empty(),
                    "writer.parameter.column",
                ),
            ] {
                if set {
                    return Err(field(
                        key,
                        "not with `tables` (a whole-database job reads every column of each \
                         table it selects, split on its primary key, into a table named by the \
                         writer's `schema`, `tablePrefix`, `tableSuffix` and `tableCase`)",
                    ));
                }
            }
        } else if self.writer.naming != crate::database::TableNaming::default() {
            return Err(field(
                "writer.parameter.tablePrefix",
                "`schema`, `tablePrefix`, `tableSuffix`, `tableCase` and `existingTables` are for \
                 a whole-database job (reader `tables`); give the writer's `table`",
            ));
        }
        match (&r.table, &r.query_sql) {
            _ if self.reader.kind == Kind::File
                || self.reader.tables.is_some()
                || self.reader.merge.is_some() => {}
            (None, None) => {
                return Err(field(
                    "reader.parameter.table",
                    "give `table` or `querySql`",
                ))
            }
            (Some(_), Some(_)) => {
                return Err(field(
                    "reader.parameter.querySql",
                    "give either `table` or `querySql`, not both",
                ))
            }
            _ => {}
        }
        if r.query_sql.is_some() && (r.split_pk.is_some() || r.where_clause.is_some()) {
            return Err(field(
                "reader.parameter.querySql",
                "cannot be combined with `splitPk` or `where`",
            ));
        }
        if r.fetch_size == 0 {
            return Err(field("reader.parameter.fetchSize", "must be at least 1"));
        }
        if r.fetch_size > MAX_FETCH_SIZE {
            return Err(field(
                "reader.parameter.fetchSize",
                format!("at most {MAX_FETCH_SIZE} rows per batch"),
            ));
        }
        self.screen_sql()?;
        if self.writer.spec.table.trim().is_empty() && self.reader.tables.is_none() {
            return Err(field("writer.parameter.table", "missing"));
        }
        let s = &self.setting;
        if s.speed.channel == 0 {
            return Err(field("setting.speed.channel", "must be at least 1"));
        }
        if s.speed.channel > MAX_CHANNEL {
            return Err(field(
                "setting.speed.channel",
                format!("at most {MAX_CHANNEL} tasks at once"),
            ));
        }
        if s.retry.attempts == 0 {
            return Err(field(
                "setting.retry.attempts",
                "must be at least 1 (1: no retry)",
            ));
        }
        if let Some(p) = s.error_limit.percentage {
            if !(0.0..=1.0).contains(&p) {
                return Err(field(
                    "setting.errorLimit.percentage",
                    "must be between 0.0 and 1.0",
                ));
            }
        }
        if let Some(start) = &s.start {
            start.position()?;
            if s.mode != Mode::Stream || self.reader.kind != Kind::MySql {
                return Err(field(
                    "setting.start",
                    "is for `mode: stream` from a MySQL/MariaDB source (a full + incremental \
                     job starts its stream where its copy begins)",
                ));
            }
        }
        let wcols = &self.writer.spec.columns;
        if !wcols.is_empty() && !r.columns.is_empty() && wcols.len() != r.columns.len() {
            return Err(field(
                "writer.parameter.column",
                format!(
                    "{} columns, but the reader reads {}",
                    wcols.len(),
                    r.columns.len()
                ),
            ));
        }
        Ok(())
    }
}

/// Accepts DataX's `{"job": {"content": [{reader, writer}], "setting": …}}`.
fn unwrap_datax(root: Value) -> Result<Value, JobError> {
    let Value::Object(mut map) = root else {
        return Ok(root);
    };
    let Some(job) = map.remove("job") else {
        return Ok(Value::Object(map));
    };
    let Value::Object(mut job) = job else {
        return Err(field("job", "must be a mapping"));
    };
    let content = job
        .remove("content")
        .ok_or_else(|| field("job.content", "missing"))?;
    let mut items = match content {
        Value::Array(a) => a,
        other => vec![other],
    };
    if items.len() != 1 {
        return Err(field(
            "job.content",
            "exactly one {reader, writer} entry is supported",
        ));
    }
    let Value::Object(mut out) = items.remove(0) else {
        return Err(field("job.content[0]", "must be a mapping"));
    };
    if let Some(s) = job.remove("setting") {
        out.insert("setting".into(), s);
    }
    Ok(Value::Object(out))
}

type Endpoint = (Kind, Location, Map<String, Value>, Map<String, Value>);

/// A reader's `shards` and `sourceColumns`, taken out of it; the first shard's location is
/// left in its place, so the reader parses as that source's.
#[allow(clippy::type_complexity)]
fn take_shards(
    mut reader: Value,
) -> Result<
    (
        Value,
        Option<Vec<Map<String, Value>>>,
        Option<crate::merge::SourceColumns>,
    ),
    JobError,
> {
    let Some(param) = reader.get_mut("parameter").and_then(Value::as_object_mut) else {
        return Ok((reader, None, None));
    };
    let source_columns = param
        .remove("sourceColumns")
        .map(serde_json::from_value::<crate::merge::SourceColumns>)
        .transpose()
        .map_err(|e| field("reader.parameter.sourceColumns", e.to_string()))?;
    let Some(list) = param.remove("shards") else {
        return Ok((reader, None, source_columns));
    };
    let here = "reader.parameter.shards";
    let Value::Array(list) = list else {
        return Err(field(here, "is a list of {url | datasource, tables, name}"));
    };
    if list.is_empty() {
        return Err(field(here, "is empty"));
    }
    if list.len() > crate::database::MAX_TABLES {
        return Err(field(
            here,
            format!("at most {} shards", crate::database::MAX_TABLES),
        ));
    }
    if let Some(k) = ["url", "datasource", "connection"]
        .into_iter()
        .find(|k| param.contains_key(*k))
    {
        return Err(field(
            format!("reader.parameter.{k}"),
            "not with `shards` (each shard names its own `url` or `datasource`)",
        ));
    }
    let mut shards = Vec::with_capacity(list.len());
    for (i, s) in list.into_iter().enumerate() {
        let Value::Object(mut s) = s else {
            return Err(field(
                format!("{here}[{i}]"),
                "is a mapping {url | datasource, tables, name}",
            ));
        };
        // The reader's login applies to every shard that gives none.
        for key in ["username", "password"] {
            if let (false, Some(v)) = (s.contains_key(key), param.get(key)) {
                s.insert(key.into(), v.clone());
            }
        }
        shards.push(s);
    }
    for key in ["url", "datasource"] {
        if let Some(v) = shards[0].get(key) {
            param.insert(key.into(), v.clone());
        }
    }
    Ok((reader, Some(shards), source_columns))
}

/// The shards of a sharded job, each with its location and its tables (or `tables`).
fn shards_of(
    kind: Kind,
    list: Vec<Map<String, Value>>,
    tables: Option<crate::database::TableSelection>,
    source_columns: Option<crate::merge::SourceColumns>,
) -> Result<crate::merge::Merge, JobError> {
    let mut shards = Vec::with_capacity(list.len());
    for (i, mut s) in list.into_iter().enumerate() {
        let here = format!("reader.parameter.shards[{i}]");
        let name = take_str(&mut s, "name");
        let own = crate::database::TableSelection::take(&mut s).map_err(|e| field(&here, e))?;
        let location = location(&here, kind, &mut s)?;
        if let Some(k) = s.keys().next() {
            return Err(field(
                format!("{here}.{k}"),
                "unknown key (expected url or datasource, tables, exclude, name)",
            ));
        }
        let tables = own.or_else(|| tables.clone()).ok_or_else(|| {
            field(
                format!("{here}.tables"),
                "missing: give the shard's `tables`, or the reader's for every shard",
            )
        })?;
        shards.push(crate::merge::Shard {
            name: name.unwrap_or_else(|| crate::merge::Merge::default_name(&location)),
            location,
            tables,
        });
    }
    Ok(crate::merge::Merge {
        shards,
        source_columns: source_columns.unwrap_or_default(),
    })
}

/// Splits a reader/writer entry into kind, location, spec parameters and
/// connector options.
fn endpoint(which: &str, v: Value) -> Result<Endpoint, JobError> {
    let Value::Object(mut m) = v else {
        return Err(field(which, "must be a mapping with name and parameter"));
    };
    let name = match m.remove("name") {
        Some(Value::String(s)) => s,
        _ => {
            return Err(field(
                format!("{which}.name"),
                "missing (e.g. mysqlreader, postgresqlwriter)",
            ))
        }
    };
    let (kind, format_hint) =
        Kind::from_job_name(&name).map_err(|e| field(format!("{which}.name"), e.to_string()))?;
    let mut param = match m.remove("parameter") {
        Some(Value::Object(p)) => p,
        Some(_) => return Err(field(format!("{which}.parameter"), "must be a mapping")),
        None => return Err(field(format!("{which}.parameter"), "missing")),
    };
    if let Some(k) = m.keys().next() {
        return Err(field(
            format!("{which}.{k}"),
            "unknown key (expected name, parameter)",
        ));
    }
    if kind == Kind::File {
        let (location, options) = file_endpoint(which, format_hint, &mut param)?;
        return Ok((kind, location, param, options));
    }
    let location = location(which, kind, &mut param)?;
    // Connector options: keys the spec does not know and the connector does.
    let mut options = Map::new();
    for key in kind.job_options() {
        if let Some(v) = param.remove(*key) {
            options.insert(key.to_string(), v);
        }
    }
    Ok((kind, location, param, options))
}

/// Moves the file options out of `p` into `options`; a typed `column` list
/// (`{name, type}` objects) is an option, plain names stay the selection.
fn move_file_options(
    p: &mut Map<String, Value>,
    format_hint: Option<&str>,
    options: &mut Map<String, Value>,
) {
    for key in Kind::File.job_options() {
        if let Some(v) = p.remove(*key) {
            options.insert(key.to_string(), v);
        }
    }
    if let Some(Value::Array(items)) = p.get("column") {
        if items.iter().any(Value::is_object) {
            if let Some(v) = p.remove("column") {
                options.insert("column".into(), v);
            }
        }
    }
    if !options.contains_key("format") {
        if let Some(f) = format_hint {
            options.insert("format".into(), Value::String(f.into()));
        }
    }
}

/// A file reader on an agent's file source: the agent owns the base
/// location; the job's optional `path` is relative to it (no `..`, never
/// absolute, so a job cannot leave the directory the agent exposes).
fn file_datasource(
    which: &str,
    ds: &str,
    format_hint: Option<&str>,
    p: &mut Map<String, Value>,
) -> Result<(Location, Map<String, Value>), JobError> {
    let (group, name) = ds.split_once('/').ok_or_else(|| {
        field(
            format!("{which}.parameter.datasource"),
            "must be `group/name`",
        )
    })?;
    let mut options = Map::new();
    if let Some(v) = p.remove("path") {
        let Value::String(sub) = &v else {
            return Err(field(
                format!("{which}.parameter.path"),
                "must be one path relative to the data source",
            ));
        };
        if sub.starts_with('/') || sub.contains("://") || sub.split('/').any(|c| c == "..") {
            return Err(field(
                format!("{which}.parameter.path"),
                format!("`{sub}`: with `datasource`, the path is relative to the data source and may not contain `..`"),
            ));
        }
        options.insert("path".into(), v);
    }
    move_file_options(p, format_hint, &mut options);
    if let Some(f) = options.get("format") {
        f.as_str()
            .unwrap_or_default()
            .parse::<FileFormat>()
            .map_err(|e| field(format!("{which}.parameter.format"), e))?;
    }
    Ok((
        Location::DataSource {
            group: group.to_string(),
            name: name.to_string(),
        },
        options,
    ))
}

/// File kinds: `path` (required) is the location; file options move to
/// `options`; the format (option, name alias, or path extension) is checked.
fn file_endpoint(
    which: &str,
    format_hint: Option<&str>,
    p: &mut Map<String, Value>,
) -> Result<(Location, Map<String, Value>), JobError> {
    for k in ["url", "connection"] {
        if p.contains_key(k) {
            return Err(field(
                format!("{which}.parameter.{k}"),
                "file connectors take `path` (a path, file://, s3:// or http(s):// URL), or `datasource` (group/name) of an agent's file source",
            ));
        }
    }
    if which == "reader" {
        if let Some(ds) = take_str(p, "datasource") {
            return file_datasource(which, &ds, format_hint, p);
        }
    }
    let path = match p.remove("path") {
        Some(Value::String(s)) if !s.trim().is_empty() => s,
        Some(Value::Array(a)) if a.len() == 1 && a[0].is_string() => {
            a[0].as_str().unwrap_or_default().to_string()
        }
        Some(Value::Array(_)) => {
            return Err(field(
                format!("{which}.parameter.path"),
                "give one path (a directory or a glob such as logs/*.log reads many files)",
            ))
        }
        _ => {
            return Err(field(
                format!("{which}.parameter.path"),
                "missing (a path, file://, s3:// or http(s):// URL)",
            ))
        }
    };
    let mut options = Map::new();
    move_file_options(p, format_hint, &mut options);
    match options.get("format") {
        Some(Value::String(f)) => {
            f.parse::<FileFormat>()
                .map_err(|e| field(format!("{which}.parameter.format"), e))?;
        }
        Some(other) => {
            return Err(field(
                format!("{which}.parameter.format"),
                format!("must be a string, got {other}"),
            ))
        }
        None => {
            if FileFormat::from_path(&path).is_none() {
                return Err(field(
                    format!("{which}.parameter.format"),
                    format!(
                        "missing, and path `{path}` has no known extension; known: {}",
                        FileFormat::KNOWN
                    ),
                ));
            }
        }
    }
    if which == "writer" && !p.contains_key("table") {
        // Files have no table; the path stands for it in messages.
        p.insert("table".into(), Value::String(path.clone()));
    }
    Ok((Location::Url(path), options))
}

fn location(which: &str, kind: Kind, p: &mut Map<String, Value>) -> Result<Location, JobError> {
    let user = take_str(p, "username");
    let pass = take_str(p, "password");
    let found: Vec<&str> = ["url", "datasource", "connection"]
        .into_iter()
        .filter(|k| p.contains_key(*k))
        .collect();
    if found.len() != 1 {
        return Err(field(
            format!("{which}.parameter.url"),
            "give exactly one of `url` (standalone), `datasource` (group/name, through a broker) or DataX's `connection`",
        ));
    }
    if let Some(url) = take_str(p, "url") {
        return Ok(Location::Url(with_credentials(&url, user, pass)));
    }
    if let Some(ds) = take_str(p, "datasource") {
        let (group, name) = ds.split_once('/').ok_or_else(|| {
            field(
                format!("{which}.parameter.datasource"),
                "must be `group/name`",
            )
        })?;
        return Ok(Location::DataSource {
            group: group.to_string(),
            name: name.to_string(),
        });
    }
    // DataX: connection: [{jdbcUrl: "jdbc:mysql://h:3306/db" | [..], table: [..] | querySql: [..]}]
    let conn = p.remove("connection").unwrap_or(Value::Null);
    let first = match conn {
        Value::Array(mut a) if !a.is_empty() => a.remove(0),
        other => other,
    };
    let Value::Object(mut c) = first else {
        return Err(field(
            format!("{which}.parameter.connection"),
            "must be a list of {jdbcUrl, table}",
        ));
    };
    let jdbc = match c.remove("jdbcUrl") {
        Some(Value::String(s)) => s,
        Some(Value::Array(mut a)) if !a.is_empty() => match a.remove(0) {
            Value::String(s) => s,
            _ => String::new(),
        },
        _ => String::new(),
    };
    let rest = jdbc.strip_prefix("jdbc:").ok_or_else(|| {
        field(
            format!("{which}.parameter.connection[0].jdbcUrl"),
            "must start with jdbc:",
        )
    })?;
    let rest = rest.split_once('?').map_or(rest, |(a, _)| a);
    let url = match kind {
        Kind::Postgres => rest.replacen("postgresql://", "postgres://", 1),
        _ => rest.to_string(),
    };
    for key in ["table", "querySql"] {
        if let Some(v) = c.remove(key) {
            let v = match v {
                Value::Array(mut a) if !a.is_empty() => a.remove(0),
                other => other,
            };
            p.insert(key.to_string(), v);
        }
    }
    Ok(Location::Url(with_credentials(&url, user, pass)))
}

fn take_str(p: &mut Map<String, Value>, key: &str) -> Option<String> {
    match p.remove(key) {
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
        None => None,
    }
}

/// Puts `username`/`password` into a URL that has none.
fn with_credentials(url: &str, user: Option<String>, pass: Option<String>) -> String {
    let Some(user) = user else {
        return url.to_string();
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    if rest
        .split('/')
        .next()
        .is_some_and(|auth| auth.contains('@'))
    {
        return url.to_string();
    }
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    match pass {
        Some(p) if !p.is_empty() => format!("{scheme}://{}:{}@{rest}", enc(&user), enc(&p)),
        _ => format!("{scheme}://{}@{rest}", enc(&user)),
    }
}

/// Replaces `${name}` with `vars[name]`; `$${` is a literal `${`.
pub fn substitute(text: &str, vars: &BTreeMap<String, String>) -> Result<String, JobError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| field("(variables)", "`${` without a closing `}`"))?;
        let name = &after[..end];
        let value = vars
            .get(name)
            .ok_or_else(|| JobError::UnsetVariable(name.to_string()))?;
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `bizdate` defaults to yesterday (UTC), as `YYYYMMDD`, the way DataX
/// schedules use it.
pub fn default_vars() -> BTreeMap<String, String> {
    let yesterday = time::OffsetDateTime::now_utc().date().previous_day();
    let mut m = BTreeMap::new();
    if let Some(d) = yesterday {
        m.insert(
            "bizdate".to_string(),
            format!("{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()),
        );
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const YAML: &str = r#"
reader:
  name: mysqlreader
  parameter:
    url: mysql://root@127.0.0.1:3306/shop
    table: orders
    column: [id, amount]
    where: "dt = '${bizdate}'"
    splitPk: id
writer:
  name: postgresqlwriter
  parameter:
    url: postgres://postgres@127.0.0.1/dw
    table: ods.orders
    writeMode: update
    preSql: ["delete from ods.orders where dt = '${bizdate}'"]
setting:
  speed: {channel: 4, record: 1000}
  errorLimit: {record: 5}
"#;

    #[test]
    fn yaml_job_with_variables() {
        let j = Job::parse(YAML, &vars(&[("bizdate", "20240620")])).unwrap();
        assert_eq!(j.reader.kind, Kind::MySql);
        assert_eq!(j.writer.kind, Kind::Postgres);
        assert_eq!(j.reader.spec.columns, vec!["id", "amount"]);
        assert_eq!(
            j.reader.spec.where_clause.as_deref(),
            Some("dt = '20240620'")
        );
        assert_eq!(
            j.writer.spec.pre_sql[0],
            "delete from ods.orders where dt = '20240620'"
        );
        assert_eq!(j.setting.speed.channel, 4);
        assert_eq!(j.setting.error_limit.record, Some(5));
    }

    #[test]
    fn unset_variable_is_named() {
        let e = Job::parse(YAML, &BTreeMap::new()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "variable `${bizdate}` is used but not set (pass -p bizdate=VALUE)"
        );
    }

    #[test]
    fn datax_json_with_connection() {
        let text = r#"{"job": {"setting": {"speed": {"channel": 2}},
          "content": [{
            "reader": {"name": "mysqlreader", "parameter": {"username": "root", "password": "p@ss",
               "column": ["id"], "splitPk": "id",
               "connection": [{"jdbcUrl": ["jdbc:mysql://10.0.0.1:3306/shop?useSSL=false"], "table": ["orders"]}]}},
            "writer": {"name": "postgresqlwriter", "parameter": {"username": "u",
               "connection": [{"jdbcUrl": "jdbc:postgresql://db:5432/dw", "table": ["ods.orders"]}]}}
          }]}}"#;
        let j = Job::parse(text, &BTreeMap::new()).unwrap();
        assert_eq!(
            j.reader.location,
            Location::Url("mysql://root:p%40ss@10.0.0.1:3306/shop".into())
        );
        assert_eq!(j.reader.spec.table.as_deref(), Some("orders"));
        assert_eq!(
            j.writer.location,
            Location::Url("postgres://u@db:5432/dw".into())
        );
        assert_eq!(j.writer.spec.table, "ods.orders");
        assert_eq!(j.setting.speed.channel, 2);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (YAML.replace("splitPk", "splitPK"), "reader.parameter"),
            (
                YAML.replace("channel: 4", "channel: 0"),
                "setting.speed.channel",
            ),
            (YAML.replace("mysqlreader", "oraclereader"), "reader.name"),
            (
                YAML.replace("    url: mysql://root@127.0.0.1:3306/shop\n", ""),
                "reader.parameter.url",
            ),
            (
                YAML.replace("writeMode: update", "writeMode: upsert"),
                "writer.parameter",
            ),
            (
                YAML.replace("    table: orders\n", ""),
                "reader.parameter.table",
            ),
        ];
        for (text, field) in cases {
            let e = Job::parse(&text, &vars(&[("bizdate", "1")]))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with(&format!("`{field}")), "{field}: {e}");
        }
        let e = Job::parse(
            &YAML.replace("splitPk", "splitPK"),
            &vars(&[("bizdate", "1")]),
        )
        .unwrap_err();
        assert!(e.to_string().contains("splitPK"), "{e}");
    }

    #[test]
    fn datasource_location() {
        let t = YAML.replace(
            "url: mysql://root@127.0.0.1:3306/shop",
            "datasource: idc-sh/orders_db",
        );
        let j = Job::parse(&t, &vars(&[("bizdate", "1")])).unwrap();
        assert_eq!(
            j.reader.location,
            Location::DataSource {
                group: "idc-sh".into(),
                name: "orders_db".into()
            }
        );
    }

    const FILE_JOB: &str = r#"
reader:
  name: txtfilereader
  parameter:
    path: s3://logs/raw/user_log*.txt
    format: text
    pattern: user_log
    column: [{name: status, type: int}, {name: request, type: string}]
    endpoint: http://127.0.0.1:9000
    fetchSize: 500
writer:
  name: parquetwriter
  parameter:
    path: lake/ods_raw_log_d/dt=${bizdate}
    compress: snappy
    writeMode: truncate
"#;

    #[test]
    fn file_job_moves_file_options() {
        let j = Job::parse(FILE_JOB, &vars(&[("bizdate", "20240620")])).unwrap();
        assert_eq!(j.reader.kind, Kind::File);
        assert_eq!(
            j.reader.location,
            Location::Url("s3://logs/raw/user_log*.txt".into())
        );
        assert_eq!(j.reader.options["format"], "text");
        assert_eq!(j.reader.options["pattern"], "user_log");
        assert_eq!(j.reader.options["endpoint"], "http://127.0.0.1:9000");
        assert!(j.reader.options["column"].is_array());
        assert!(j.reader.spec.columns.is_empty());
        assert_eq!(j.reader.spec.fetch_size, 500);
        assert_eq!(j.writer.kind, Kind::File);
        assert_eq!(
            j.writer.location,
            Location::Url("lake/ods_raw_log_d/dt=20240620".into())
        );
        assert_eq!(j.writer.options["format"], "parquet");
        assert_eq!(j.writer.options["writeMode"], "truncate");
        assert_eq!(j.writer.options["compress"], "snappy");
        // Plain names stay the read's selection.
        let t = FILE_JOB.replace(
            "column: [{name: status, type: int}, {name: request, type: string}]",
            "column: [status, request]",
        );
        let j = Job::parse(&t, &vars(&[("bizdate", "1")])).unwrap();
        assert_eq!(j.reader.spec.columns, vec!["status", "request"]);
        assert!(!j.reader.options.contains_key("column"));
        // The format comes from the extension when the name does not say.
        let t = "reader: {name: filereader, parameter: {path: a/b.jsonl}}\nwriter: {name: csvwriter, parameter: {path: out/}}";
        let j = Job::parse(t, &BTreeMap::new()).unwrap();
        assert!(!j.reader.options.contains_key("format"));
        assert_eq!(j.writer.options["format"], "csv");
    }

    #[test]
    fn file_job_errors_name_the_field() {
        let v = vars(&[("bizdate", "1")]);
        let cases = [
            (
                FILE_JOB.replace("format: text", "format: xml"),
                "reader.parameter.format",
                "unknown format \"xml\"; known: csv, jsonl, parquet, text",
            ),
            (
                FILE_JOB.replace("    path: s3://logs/raw/user_log*.txt\n", ""),
                "reader.parameter.path",
                "missing",
            ),
            (
                FILE_JOB.replace("    fetchSize: 500\n", "    splitPk: id\n"),
                "reader.parameter.splitPk",
                "not for files",
            ),
            (
                FILE_JOB.replace("name: parquetwriter", "name: filewriter"),
                "writer.parameter.format",
                "no known extension",
            ),
            (
                FILE_JOB.replace("name: txtfilereader", "name: xmlreader"),
                "reader.name",
                "unknown connector",
            ),
        ];
        for (text, f, reason) in cases {
            let e = Job::parse(&text, &v).unwrap_err().to_string();
            assert!(e.starts_with(&format!("`{f}`")), "{f}: {e}");
            assert!(e.contains(reason), "{reason}: {e}");
        }
    }

    #[test]
    fn substitution_escapes_and_defaults() {
        assert_eq!(
            substitute("a $${x} b", &BTreeMap::new()).unwrap(),
            "a ${x} b"
        );
        assert_eq!(default_vars()["bizdate"].len(), 8);
    }
}
