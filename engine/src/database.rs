//! Whole-database jobs: a reader's `tables` (names and glob patterns, minus `exclude`),
//! each table into its own target table (named by the writer's `schema`, `tablePrefix`,
//! `tableSuffix`, `tableCase`), all in one job.
//!
//! Each table runs as the one-table job it would be on its own (same splits, positions,
//! checkpoints, `existing` and DDL), so there is no second model of what flows: the
//! tables share the job's `channel` (one pool of task slots), and foreign keys are added
//! once every table is loaded, since they may point at any of them.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use ferry_connectors::ddl::DdlStep;
use ferry_connectors::{Existing, Sink, TableListing, WriteMode, WriteSpec};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Job;
use crate::local::LocalReading;
use crate::run::{run_job, Reading, RunError, RunOptions};
use crate::summary::{Summary, TableLine};

/// Most tables one job may select.
pub const MAX_TABLES: usize = 10_000;

/// Tables a whole-database job never takes: Ferry's own.
const OWN_TABLES: &[&str] = &["ferry_checkpoints"];

/// A reader's `tables` and `exclude`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableSelection {
    /// Names or glob patterns (`*`, `?`, `[a-z]`); `["*"]` is every table.
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl TableSelection {
    /// Takes `tables` and `exclude` out of a reader's parameters; `None` without `tables`.
    pub fn take(param: &mut Map<String, Value>) -> Result<Option<Self>, String> {
        let list = |v: Value, key: &str| -> Result<Vec<String>, String> {
            match v {
                Value::String(s) => Ok(vec![s]),
                Value::Array(a) => a
                    .into_iter()
                    .map(|v| match v {
                        Value::String(s) if !s.trim().is_empty() => Ok(s),
                        _ => Err(format!(
                            "`{key}` holds names or patterns (non-empty strings)"
                        )),
                    })
                    .collect(),
                _ => Err(format!("`{key}` is a list of table names or patterns")),
            }
        };
        let exclude = param
            .remove("exclude")
            .map(|v| list(v, "exclude"))
            .transpose()?;
        let Some(tables) = param.remove("tables") else {
            if exclude.is_some() {
                return Err("`exclude` needs `tables`".into());
            }
            return Ok(None);
        };
        let s = Self {
            include: list(tables, "tables")?,
            exclude: exclude.unwrap_or_default(),
        };
        if s.include.is_empty() {
            return Err("`tables` is empty (`[\"*\"]` selects every table)".into());
        }
        for p in s.include.iter().chain(&s.exclude) {
            glob::Pattern::new(p).map_err(|e| format!("pattern `{p}`: {e}"))?;
        }
        Ok(Some(s))
    }

    /// The tables of `all` this selection takes, in `all`'s order.
    pub fn select(&self, all: &[String]) -> Vec<String> {
        let pats = |ps: &[String]| -> Vec<glob::Pattern> {
            ps.iter()
                .filter_map(|p| glob::Pattern::new(p).ok())
                .collect()
        };
        let (inc, exc) = (pats(&self.include), pats(&self.exclude));
        all.iter()
            .filter(|t| !OWN_TABLES.contains(&t.as_str()))
            .filter(|t| inc.iter().any(|p| p.matches(t)))
            .filter(|t| !exc.iter().any(|p| p.matches(t)))
            .cloned()
            .collect()
    }

    /// Names this selection gives exactly (not as patterns) that are not in `all`.
    pub fn missing(&self, all: &[String]) -> Vec<String> {
        self.include
            .iter()
            .filter(|p| !p.contains(['*', '?', '[']) && !all.contains(p))
            .cloned()
            .collect()
    }
}

/// How a table's target name is made from its source name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableCase {
    #[default]
    Keep,
    Lower,
    Upper,
}

/// A writer's `schema`, `tablePrefix`, `tableSuffix`, `tableCase` and `existingTables`:
/// where each table of a whole-database job goes, and what to do with it if it exists.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TableNaming {
    /// The target schema (PostgreSQL) or database (MySQL); unset: the connection's.
    pub schema: Option<String>,
    pub table_prefix: String,
    pub table_suffix: String,
    pub table_case: TableCase,
    /// `existing` per source table (a name or glob pattern), over the writer's own.
    pub existing_tables: std::collections::BTreeMap<String, Existing>,
}

impl TableNaming {
    /// Takes the naming keys out of a writer's parameters.
    pub fn take(param: &mut Map<String, Value>) -> Result<Self, String> {
        let mut found = Map::new();
        for k in [
            "schema",
            "tablePrefix",
            "tableSuffix",
            "tableCase",
            "existingTables",
        ] {
            if let Some(v) = param.remove(k) {
                found.insert(k.to_string(), v);
            }
        }
        let naming: Self =
            serde_json::from_value(Value::Object(found)).map_err(|e| e.to_string())?;
        for p in naming.existing_tables.keys() {
            glob::Pattern::new(p).map_err(|e| format!("existingTables: pattern `{p}`: {e}"))?;
        }
        Ok(naming)
    }

    /// The `existing` mode `existingTables` gives source table `table`: its exact name
    /// first, else the first pattern (in name order) that matches.
    pub fn existing_for(&self, table: &str) -> Option<Existing> {
        if let Some(e) = self.existing_tables.get(table) {
            return Some(*e);
        }
        self.existing_tables
            .iter()
            .find(|(p, _)| glob::Pattern::new(p).is_ok_and(|p| p.matches(table)))
            .map(|(_, e)| *e)
    }

    /// The target table's name (without schema) for source table `source` (`schema.table`
    /// or `table`): the source schema dropped, prefix, suffix and case applied.
    pub fn name(&self, source: &str) -> String {
        let bare = ferry_connectors::TableRef::parse(source, None)
            .map(|t| t.name)
            .unwrap_or_else(|| source.to_string());
        let name = format!("{}{bare}{}", self.table_prefix, self.table_suffix);
        match self.table_case {
            TableCase::Keep => name,
            TableCase::Lower => name.to_lowercase(),
            TableCase::Upper => name.to_uppercase(),
        }
    }

    /// Points `desc`'s foreign keys to tables of the same database at their target names.
    pub fn retarget(&self, desc: &mut ferry_connectors::spec::TableSchema) {
        for f in desc.foreign_keys.iter_mut() {
            if f.references.schema.is_none() {
                f.references.name = self.name(&f.references.name);
            }
        }
    }

    /// The writer's `table` for source table `source`: [`name`](Self::name) in this
    /// naming's schema, quoted only where a name needs it (MySQL's backticks for `mysql`).
    pub fn target(&self, source: &str, kind: ferry_connectors::Kind) -> String {
        let quote = |s: &str| {
            if !s.contains(['.', '"', '`']) {
                s.to_string()
            } else if kind == ferry_connectors::Kind::MySql {
                format!("`{}`", s.replace('`', "``"))
            } else {
                format!("\"{}\"", s.replace('"', "\"\""))
            }
        };
        let name = quote(&self.name(source));
        match &self.schema {
            Some(s) => format!("{}.{name}", quote(s)),
            None => name,
        }
    }
}

/// What an earlier run of a whole-database job recorded about one of its tables.
#[derive(Debug, Clone)]
pub struct EarlierTable {
    /// The job created, emptied or dropped it: every row in it is the job's.
    pub owned: bool,
    /// It loaded (indexes included): a resume does not load it again.
    pub done: bool,
    /// Its summary line, when done.
    pub line: Option<TableLine>,
}

/// What the tables of a many-table job (whole-database, sharded) share: `channel`'s task
/// slots, the slots for tables being planned and prepared (each holds a connection or
/// two), `setting.speed`'s limits, the job's key, and their progress, summed into the
/// caller's.
pub(crate) struct TablePool {
    slots: Arc<Semaphore>,
    starting: Arc<Semaphore>,
    throttle: Arc<crate::throttle::Throttle>,
    job_key: String,
    parts: crate::run::Parts,
}

impl TablePool {
    pub fn new(job: &Job, opts: &RunOptions) -> Self {
        let channel = job.setting.speed.channel.max(1);
        Self {
            slots: Arc::new(Semaphore::new(channel)),
            starting: Arc::new(Semaphore::new(channel)),
            throttle: Arc::new(crate::throttle::Throttle::new(
                job.setting.speed.byte,
                job.setting.speed.record,
            )),
            job_key: opts.job_key.clone().unwrap_or_else(crate::run::new_job_key),
            parts: crate::run::Parts::default(),
        }
    }

    /// Options for one table (`label` names its dirty file, `key` its checkpoints), and
    /// the progress to run it with.
    pub fn table(
        &self,
        opts: &RunOptions,
        label: &str,
        key: usize,
    ) -> (RunOptions, Arc<crate::run::Progress>) {
        let mut o = RunOptions::new(table_dirty_path(&opts.dirty_path, label));
        o.job_key = Some(format!("{}-{key}", self.job_key));
        o.slots = Some(self.slots.clone());
        o.starting = Some(self.starting.clone());
        o.throttle = Some(self.throttle.clone());
        (o, self.parts.add())
    }

    /// Keeps `opts.totals` the sum of the tables while they run; see [`Parts::end`].
    ///
    /// [`Parts::end`]: crate::run::Parts::end
    pub fn follow(&self, opts: &RunOptions) -> Option<tokio::task::JoinHandle<()>> {
        self.parts.follow(opts.totals.clone())
    }

    pub fn end(&self, follower: Option<tokio::task::JoinHandle<()>>, opts: &RunOptions) {
        self.parts.end(follower, opts.totals.as_deref());
    }
}

/// A whole-database job's foreign keys, held back until every table is loaded.
pub type Deferred = Arc<Mutex<Vec<(WriteSpec, Vec<DdlStep>)>>>;

/// Runs whole-database `job` with reader and writer in this process.
pub async fn run_database_standalone(job: &Job, opts: &RunOptions) -> Result<Summary, RunError> {
    let source = crate::registry::open_source(&job.reader).await?;
    let sink = crate::registry::open_sink(&job.writer).await?;
    let listing = source.list_tables().await.map_err(|e| RunError::Reader {
        stage: "listing the source's tables",
        message: e.to_string(),
    })?;
    let reading_for =
        move |_: &str| -> Arc<dyn Reading> { Arc::new(LocalReading::new(source.clone())) };
    run_database(job, listing, &reading_for, sink, opts).await
}

/// The source tables a whole-database job selects from `listed` (what the source lists),
/// each with its target table's name; refused when the selection names a table the source
/// does not have, selects none or more than [`MAX_TABLES`], or maps two tables to one target.
pub fn select_tables(job: &Job, listed: &[String]) -> Result<Vec<(String, String)>, RunError> {
    let refuse = |stage, message| Err(RunError::Reader { stage, message });
    let selection = job.reader.tables.clone().unwrap_or_default();
    let missing = selection.missing(listed);
    if !missing.is_empty() {
        return refuse(
            "selecting tables",
            format!(
                "no table {} in the source (or not allowed to read it)",
                missing.join(", ")
            ),
        );
    }
    let tables = selection.select(listed);
    if tables.is_empty() {
        return refuse(
            "selecting tables",
            format!(
                "`tables` {:?} (minus `exclude` {:?}) selects none of the source's {} tables",
                selection.include,
                selection.exclude,
                listed.len()
            ),
        );
    }
    if tables.len() > MAX_TABLES {
        return refuse(
            "selecting tables",
            format!("{} tables selected, at most {MAX_TABLES}", tables.len()),
        );
    }
    let targets: Vec<String> = tables
        .iter()
        .map(|t| job.writer.naming.target(t, job.writer.kind))
        .collect();
    let distinct: BTreeSet<&String> = targets.iter().collect();
    if distinct.len() != targets.len() {
        return refuse(
            "naming target tables",
            "two source tables map to the same target table (tableCase?)".into(),
        );
    }
    Ok(tables.into_iter().zip(targets).collect())
}

/// Runs whole-database `job` over the source's `listing`: each selected table as its own
/// one-table job, read through `reading_for(table)`, sharing `channel`; then every
/// foreign key. The summary has a line per table.
pub async fn run_database(
    job: &Job,
    listing: TableListing,
    reading_for: &(dyn Fn(&str) -> Arc<dyn Reading> + Send + Sync),
    sink: Arc<dyn Sink>,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    let start = OffsetDateTime::now_utc();
    let (tables, targets): (Vec<String>, Vec<String>) =
        select_tables(job, &listing.tables)?.into_iter().unzip();
    info!(tables = tables.len(), "whole-database job");
    let channel = job.setting.speed.channel.max(1);
    let pool = TablePool::new(job, opts);
    let deferred: Deferred = Arc::default();
    // Each table's job, with its own `existing`; the tables to empty or drop are emptied or
    // dropped together first, so foreign keys among them do not stand in the way.
    let mut ones = Vec::with_capacity(tables.len());
    let (mut truncate, mut drop) = (Vec::new(), Vec::new());
    // A resumed job: tables that loaded before are not loaded again; one it owned that
    // did not is emptied and loaded from the start.
    let earlier = opts.earlier.as_ref();
    let mut skipped = Vec::new();
    for (table, target) in tables.iter().zip(&targets) {
        let mut one = job.clone();
        one.reader.tables = None;
        one.reader.spec.table = Some(table.clone());
        // Large tables split on their key, as a one-table job with `splitPk` would.
        one.reader.spec.split_on_key = true;
        let w = &mut one.writer.spec;
        w.table = target.clone();
        if let Some(mode) = job.writer.naming.existing_for(table) {
            w.existing = Some(mode);
            if mode == Existing::Replace && w.write_mode == WriteMode::Insert {
                w.write_mode = WriteMode::Replace;
            }
        }
        match earlier.and_then(|e| e.get(table)) {
            Some(e) if e.done => {
                skipped.push((one, e.line.clone()));
                continue;
            }
            Some(e) if e.owned && w.existing != Some(Existing::Drop) => {
                w.existing = Some(Existing::Truncate);
            }
            _ => {}
        }
        match w.existing {
            Some(Existing::Truncate) => {
                truncate.push(w.clone());
                // Emptied with the others: its rows from here on are this job's.
                w.existing = Some(Existing::Append);
            }
            Some(Existing::Drop) => drop.push(w.clone()),
            _ => {}
        }
        ones.push(one);
    }
    for (specs, dropping) in [(&truncate, false), (&drop, true)] {
        if !specs.is_empty() {
            sink.clear_tables(specs, dropping)
                .await
                .map_err(|source| RunError::Connector {
                    stage: "emptying or dropping the target tables (`existing`)",
                    source,
                })?;
        }
    }
    // Tables this job creates: one that fails before a row of it is written is dropped
    // again, so a failed job leaves no empty table behind.
    let mut created = BTreeSet::new();
    for o in &ones {
        let spec = &o.writer.spec;
        let gone = spec.existing == Some(Existing::Drop);
        if gone || sink.table_exists(spec).await.ok().flatten() == Some(false) {
            created.insert(spec.table.clone());
        }
    }
    // A table the job creates and fills with plain inserts gets its primary key after
    // the load (a bulk build), as pgloader does.
    // (An emptied one too: one an earlier run created may lack it; one that has it keeps it.)
    for o in ones.iter_mut() {
        let w = &mut o.writer.spec;
        let emptied = truncate.iter().any(|t: &WriteSpec| t.table == w.table);
        w.key_after_load =
            w.write_mode == WriteMode::Insert && (emptied || created.contains(&w.table));
    }
    // Tables that stay keep their foreign keys to each other out of the way of the load
    // (a row may come before the row it refers to); they are added again at the end.
    let kept: Vec<WriteSpec> = ones
        .iter()
        .map(|o| o.writer.spec.clone())
        .filter(|s| s.existing != Some(Existing::Drop))
        .collect();
    let restore: Vec<(WriteSpec, Vec<DdlStep>)> = sink
        .suspend_foreign_keys(&kept)
        .await
        .map_err(|source| RunError::Connector {
            stage: "setting aside the foreign keys among the target tables",
            source,
        })?
        .into_iter()
        .filter_map(|(i, steps)| kept.get(i).map(|s| (s.clone(), steps)))
        .collect();
    if let Some(o) = &opts.observer {
        let owned: Vec<(String, bool)> = ones
            .iter()
            .map(|o| {
                let spec = &o.writer.spec;
                let table = o.reader.spec.table.clone().unwrap_or_default();
                // Emptied ones are recorded as `append` from here on.
                let emptied = truncate.iter().any(|t: &WriteSpec| t.table == spec.table);
                let owned = emptied || created.contains(&spec.table);
                (table, owned)
            })
            .collect();
        o.tables_planned(&owned)
            .await
            .map_err(|message| RunError::Reader {
                stage: "recording the tables",
                message,
            })?;
    }
    // The foreign keys of tables loaded before are added with the others at the end
    // (one already there is skipped by name).
    let mut lines_before = Vec::new();
    for (one, line) in skipped {
        let table = one.reader.spec.table.clone().unwrap_or_default();
        let target = one.writer.spec.table.clone();
        let reading = reading_for(&table);
        if let Err(e) = earlier_constraints(&one, reading, sink.as_ref(), &deferred).await {
            warn!(%table, "the foreign keys of a table loaded before: {e}");
        }
        let mut line = line.unwrap_or_else(|| {
            TableLine::of(
                table.clone(),
                target,
                Summary::failed_at(start, String::new()),
            )
        });
        line.failed = None;
        line.summary.failed = None;
        line.earlier = true;
        lines_before.push(line);
    }
    let ones_specs: Vec<WriteSpec> = ones.iter().map(|o| o.writer.spec.clone()).collect();
    let follower = pool.follow(opts);
    // The largest tables start first, so the longest load does not start last.
    let rows: std::collections::HashMap<&str, u64> = listing
        .tables
        .iter()
        .map(String::as_str)
        .zip(listing.rows.iter().copied())
        .collect();
    ones.sort_by_key(|o| {
        let table = o.reader.spec.table.as_deref().unwrap_or_default();
        std::cmp::Reverse(rows.get(table).copied().unwrap_or(0))
    });
    let places: std::collections::HashMap<&str, usize> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let mut set = JoinSet::new();
    let n_ones = ones.len();
    for (i, one) in ones.into_iter().enumerate() {
        let table = one.reader.spec.table.clone().unwrap_or_default();
        let target = one.writer.spec.table.clone();
        // Keyed by the table's place in the selection, the same in every run of the job.
        let place = places.get(table.as_str()).copied().unwrap_or(i);
        let (mut o, progress) = pool.table(opts, &table, place);
        o.deferred = Some(deferred.clone());
        o.naming = Some(job.writer.naming.clone());
        let reading = reading_for(&table);
        let sink = sink.clone();
        let observer = opts.observer.clone();
        set.spawn(async move {
            let t0 = OffsetDateTime::now_utc();
            let r = run_job(&one, reading, sink, &o, progress).await;
            let summary = r.unwrap_or_else(|e| Summary::failed_at(t0, e.to_string()));
            let line = TableLine::of(table, target, summary);
            if let Some(o) = observer {
                o.table_ended(&line, line.failed.is_none()).await;
            }
            (i, line)
        });
    }
    let mut lines: Vec<Option<TableLine>> = vec![None; n_ones];
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, line)) => {
                info!(table = %line.source, ok = line.failed.is_none(), "table done");
                lines[i] = Some(line);
            }
            Err(e) => warn!("a table's task ended abnormally: {e}"),
        }
    }
    pool.end(follower, opts);
    let mut lines: Vec<TableLine> = lines.into_iter().flatten().collect();
    lines.splice(0..0, lines_before);
    let empty: Vec<WriteSpec> = lines
        .iter()
        .filter(|l| l.failed.is_some() && l.summary.records_written == 0)
        .filter(|l| created.contains(&l.target))
        .filter_map(|l| ones_specs.iter().find(|s| s.table == l.target).cloned())
        .collect();
    if !empty.is_empty() {
        match sink.clear_tables(&empty, true).await {
            Ok(()) => {
                for l in lines
                    .iter_mut()
                    .filter(|l| empty.iter().any(|s| s.table == l.target))
                {
                    if let Some(f) = &mut l.failed {
                        f.push_str(" (the table it created is dropped again)");
                    }
                }
            }
            Err(e) => warn!("dropping the empty tables of failed loads: {e}"),
        }
    }
    add_foreign_keys(&sink, &deferred, &mut lines, channel).await;
    // The keys set aside go back whether or not their table loaded: they were the
    // target's (one the source's description added again is skipped by name).
    for (spec, steps) in restore {
        if let Err(e) = sink.apply_ddl(&spec, &steps).await {
            if let Some(l) = lines.iter_mut().find(|l| l.target == spec.table) {
                l.failed = Some(format!("restoring its foreign keys: {e}"));
            }
        }
    }
    // A table whose foreign key could not be added is loaded again by a resume.
    if let Some(o) = &opts.observer {
        for l in lines.iter().filter(|l| l.failed.is_some()) {
            o.table_ended(l, false).await;
        }
    }
    lines.sort_by(|a, b| a.source.cmp(&b.source));
    let mut total = Summary::of_tables(start, &lines);
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| l.failed.is_some())
        .map(|l| l.source.as_str())
        .collect();
    if !failed.is_empty() {
        total.failed = Some(format!(
            "{} of {} tables failed: {}",
            failed.len(),
            lines.len(),
            failed.join(", ")
        ));
    }
    total.tables = lines;
    total.not_migrated = listing.not_migrated;
    Ok(total)
}

/// The foreign keys of `one`'s table, loaded by an earlier run, for the end of this one.
async fn earlier_constraints(
    one: &Job,
    reading: Arc<dyn Reading>,
    sink: &dyn Sink,
    deferred: &Deferred,
) -> Result<(), String> {
    let spec = &one.writer.spec;
    if !spec.create_table {
        return Ok(());
    }
    let rspec = crate::run::read_spec(one);
    let schema = reading.schema(&rspec).await?;
    let tschema = crate::run::target_schema(&schema, &spec.columns).map_err(|e| e.to_string())?;
    let (tschema, _) = one.writer.type_map.apply(&tschema);
    let mut spec = spec.clone();
    spec.described = crate::run::described(
        reading.as_ref(),
        &rspec,
        &schema,
        &tschema,
        Some(&one.writer.naming),
    )
    .await?;
    if let Some(ddl) = sink.table_ddl(&spec, &tschema).map_err(|e| e.to_string())? {
        deferred
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((spec, ddl.constraints));
    }
    Ok(())
}

/// Adds the foreign keys of every loaded table, `channel` tables at a time (PostgreSQL
/// validates keys of different tables side by side); a table whose key cannot be added (it
/// refers to a table that failed, or rows break it) fails with the reason.
async fn add_foreign_keys(
    sink: &Arc<dyn Sink>,
    deferred: &Deferred,
    lines: &mut [TableLine],
    channel: usize,
) {
    let pending = std::mem::take(&mut *deferred.lock().unwrap_or_else(|p| p.into_inner()));
    let slots = Arc::new(Semaphore::new(channel.max(1)));
    let mut set = JoinSet::new();
    for (spec, steps) in pending {
        let Some(l) = lines.iter().find(|l| l.target == spec.table) else {
            continue;
        };
        if l.failed.is_some() || steps.is_empty() {
            continue;
        }
        let (sink, slots) = (sink.clone(), slots.clone());
        set.spawn(async move {
            let _slot = slots.acquire_owned().await;
            let r = sink.apply_ddl(&spec, &steps).await;
            (spec.table, r)
        });
    }
    while let Some(r) = set.join_next().await {
        match r {
            Ok((table, Err(e))) => {
                if let Some(l) = lines.iter_mut().find(|l| l.target == table) {
                    l.failed = Some(format!("adding foreign keys: {e}"));
                }
            }
            Ok((_, Ok(()))) => {}
            Err(e) => warn!("adding a table's foreign keys ended abnormally: {e}"),
        }
    }
}

/// `ferry-dirty-job-1.jsonl` → `ferry-dirty-job-1-<table>.jsonl`.
fn table_dirty_path(path: &std::path::Path, table: &str) -> std::path::PathBuf {
    let safe: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "dirty".into());
    path.with_file_name(format!("{stem}-{safe}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_connectors::Kind;

    #[test]
    fn selection_takes_patterns_minus_exclusions() {
        let mut p: Map<String, Value> = serde_json::from_str(
            r#"{"tables": ["*"], "exclude": ["tmp_*", "audit"], "fetchSize": 5}"#,
        )
        .unwrap();
        let s = TableSelection::take(&mut p).unwrap().unwrap();
        assert_eq!(p.len(), 1, "only the reader's own keys are left");
        let all: Vec<String> = ["audit", "ferry_checkpoints", "orders", "tmp_x", "users"]
            .map(String::from)
            .to_vec();
        assert_eq!(s.select(&all), vec!["orders", "users"]);
        let mut p: Map<String, Value> =
            serde_json::from_str(r#"{"tables": ["order_[0-9]*", "users", "nope"]}"#).unwrap();
        let s = TableSelection::take(&mut p).unwrap().unwrap();
        assert_eq!(
            s.select(&["order_01".into(), "order_x".into(), "users".into()]),
            vec!["order_01", "users"]
        );
        assert_eq!(s.missing(&["users".into()]), vec!["nope"]);
        let mut p: Map<String, Value> = serde_json::from_str(r#"{"exclude": ["a"]}"#).unwrap();
        assert!(TableSelection::take(&mut p).is_err());
        let mut p: Map<String, Value> = serde_json::from_str(r#"{"tables": []}"#).unwrap();
        assert!(TableSelection::take(&mut p).is_err());
    }

    #[test]
    fn naming_makes_target_names() {
        let mut p: Map<String, Value> = serde_json::from_str(
            r#"{"schema": "dw", "tablePrefix": "src_", "tableCase": "lower", "url": "x"}"#,
        )
        .unwrap();
        let n = TableNaming::take(&mut p).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(n.target("shop.Orders", Kind::Postgres), "dw.src_orders");
        assert_eq!(
            TableNaming::default().target(r#""a.b""c""#, Kind::Postgres),
            r#""a.b""c""#
        );
        assert_eq!(TableNaming::default().target("`x.y`", Kind::MySql), "`x.y`");
        let mut p: Map<String, Value> = serde_json::from_str(r#"{"tableCase": "title"}"#).unwrap();
        assert!(TableNaming::take(&mut p).is_err());
    }
}
