//! Sharded jobs: the tables a selection takes from one or more sources (`shards`, each a
//! `url` or a `datasource` with its `tables`), merged into the writer's one `table`,
//! optionally with columns naming the source and table each row came from.
//!
//! ```yaml
//! reader:
//!   name: mysqlreader
//!   parameter:
//!     tables: ["order_[0-9]*"]                 # every shard's, unless it names its own
//!     shards:
//!       - {datasource: idc-a/db_0}
//!       - {datasource: idc-b/db_1, tables: [order_7]}
//!     sourceColumns: {source: src_db, table: src_table, inKey: true}
//! writer:
//!   name: postgresqlwriter
//!   parameter: {url: "postgres://…/dw", table: orders, createTable: true}
//! ```
//!
//! Each shard table runs as the one-table job it would be on its own (splits, positions,
//! checkpoints), all sharing `channel`; the target is prepared once before (created from
//! the first shard table's description, `existing` applied once) and its indexes are built
//! once after. Before anything is written the shards' columns are compared: a shard with
//! other columns or types is named with what differs. A row whose key another shard
//! already wrote is refused by the target's key and named as a key collision, unless the
//! key holds the source columns (`inKey`) or the write mode replaces rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use ferry_connectors::spec::{ColumnDef, TableSchema};
use ferry_connectors::{Existing, ReadSpec, Sink, Split, TableListing};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::{Job, Location};
use crate::database::{TableSelection, MAX_TABLES};
use crate::run::{
    described, read_spec, run_job, target_schema, ReadError, Reading, RunError, RunOptions,
    SplitFeed, KEY_COLLISION,
};
use crate::summary::{Summary, TableLine};

/// One source of a sharded job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// How the source is named in the summary and in the `source` column: the data
    /// source's `group/name`, else the URL's database, unless the job names it.
    pub name: String,
    pub location: Location,
    /// The shard's tables (its own `tables`, else the reader's).
    pub tables: TableSelection,
}

/// A reader's `sourceColumns`: target columns that record where each row came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceColumns {
    /// The column holding the shard's name.
    pub source: Option<String>,
    /// The column holding the source table's name.
    pub table: Option<String>,
    /// Whether the target's primary key and unique indexes take these columns too, so
    /// the same key from two shards is two rows.
    #[serde(default)]
    pub in_key: bool,
}

impl SourceColumns {
    fn names(&self) -> Vec<String> {
        self.source.iter().chain(&self.table).cloned().collect()
    }
}

/// What merges into the writer's one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    pub shards: Vec<Shard>,
    pub source_columns: SourceColumns,
}

/// Longest source or table name a source column holds.
const NAME_WIDTH: usize = 255;

impl Merge {
    /// The name a shard at `location` goes by when the job gives none.
    pub fn default_name(location: &Location) -> String {
        match location {
            Location::DataSource { group, name } => format!("{group}/{name}"),
            // The URL's database: its last path segment (never its login).
            Location::Url(url) => {
                let path = url.split('?').next().unwrap_or_default();
                let after = path.split_once("://").map_or(path, |(_, r)| r);
                match after.split_once('/') {
                    Some((_, db)) if !db.is_empty() => {
                        db.rsplit('/').next().unwrap_or(db).to_string()
                    }
                    _ => after.rsplit('@').next().unwrap_or(after).to_string(),
                }
            }
        }
    }

    /// Checks the shards' names and the source columns.
    pub fn check(&self) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for s in &self.shards {
            if s.name.is_empty() || s.name.chars().count() > NAME_WIDTH {
                return Err(format!(
                    "a shard's name is 1 to {NAME_WIDTH} characters: {:?}",
                    s.name
                ));
            }
            if !seen.insert(&s.name) {
                return Err(format!(
                    "two shards are named `{}`: give each a `name`",
                    s.name
                ));
            }
        }
        let kinds: BTreeSet<bool> = self
            .shards
            .iter()
            .map(|s| matches!(s.location, Location::Url(_)))
            .collect();
        if kinds.len() > 1 {
            return Err(
                "shards are all `url`s (ferry run) or all `datasource`s (through a broker)".into(),
            );
        }
        let c = &self.source_columns;
        if c.source.is_some() && c.source == c.table {
            return Err("`sourceColumns`: `source` and `table` need two names".into());
        }
        if c.in_key && c.source.is_none() && c.table.is_none() {
            return Err("`sourceColumns.inKey` needs `source` or `table`".into());
        }
        Ok(())
    }
}

/// One table of one shard.
#[derive(Debug, Clone)]
pub(crate) struct Unit {
    pub(crate) shard: usize,
    pub(crate) table: String,
    /// `shard.table`, as the summary names it.
    pub(crate) label: String,
}

/// Runs sharded `job`: `listings[i]` is what shard `i` lists, `reading_for(i, table)` reads
/// one of its tables.
pub async fn run_merge(
    job: &Job,
    listings: Vec<TableListing>,
    reading_for: &(dyn Fn(usize, &str) -> Arc<dyn Reading> + Send + Sync),
    sink: Arc<dyn Sink>,
    opts: &RunOptions,
) -> Result<Summary, RunError> {
    let start = OffsetDateTime::now_utc();
    let Resolved {
        units,
        readings,
        wspec,
        tschema,
    } = resolve(job, &listings, reading_for).await?;
    let conn = |stage| move |source| RunError::Connector { stage, source };
    let ddl = sink
        .table_ddl(&wspec, &tschema)
        .map_err(conn("rendering the target's DDL"))?;
    let created = wspec.existing == Some(Existing::Drop)
        || sink.table_exists(&wspec).await.ok().flatten() == Some(false);
    sink.prepare(&wspec, &tschema)
        .await
        .map_err(conn("preparing the target"))?;

    // Each shard table as a one-table job appending to it.
    let pool = crate::database::TablePool::new(job, opts);
    let follower = pool.follow(opts);
    let mut set = JoinSet::new();
    for (i, (u, reading)) in units.iter().zip(readings).enumerate() {
        let mut one = job.clone();
        one.reader.merge = None;
        one.reader.spec.table = Some(u.table.clone());
        one.reader.spec.split_on_key |= one.reader.spec.split_pk.is_none();
        let w = &mut one.writer.spec;
        w.columns = wspec.columns.clone();
        w.create_table = false;
        w.existing = Some(Existing::Append);
        w.pre_sql.clear();
        w.post_sql.clear();
        w.collisions_fail = true;
        let (o, progress) = pool.table(opts, &u.label, i);
        let (sink, label, target) = (sink.clone(), u.label.clone(), wspec.table.clone());
        set.spawn(async move {
            let t0 = OffsetDateTime::now_utc();
            let r = run_job(&one, reading, sink, &o, progress).await;
            let summary = r.unwrap_or_else(|e| Summary::failed_at(t0, e.to_string()));
            (i, TableLine::of(label, target, summary))
        });
    }
    let mut lines: Vec<Option<TableLine>> = vec![None; units.len()];
    while let Some(r) = set.join_next().await {
        match r {
            Ok((i, line)) => lines[i] = Some(line),
            Err(e) => warn!("a shard's task ended abnormally: {e}"),
        }
    }
    pool.end(follower, opts);
    let mut lines: Vec<TableLine> = lines.into_iter().flatten().collect();
    for l in &mut lines {
        if let Some(f) = l.failed.as_mut().filter(|f| f.contains(KEY_COLLISION)) {
            *f = format!(
                "key collision across shards: a row of {} has a key another shard already \
                 wrote into {} (put the source columns in the key with `sourceColumns: \
                 {{…, inKey: true}}`, or set `writeMode: replace`): {f}",
                l.source, l.target
            );
        }
    }
    let failed: Vec<&str> = lines
        .iter()
        .filter(|l| l.failed.is_some())
        .map(|l| l.source.as_str())
        .collect();
    let mut total = Summary::sum(start, lines.iter().map(|l| l.summary.as_ref()));
    total.changes = Default::default();
    for l in &lines {
        for (column, what, n) in l.summary.changes.entries() {
            total
                .changes
                .add(&format!("{}.{column}", l.source), what, n);
        }
    }
    if failed.is_empty() {
        // Indexes and identity counters once every shard is in; foreign keys are not
        // carried (they point into one shard's tables).
        if let Some(ddl) = &ddl {
            if let Err(e) = sink.apply_ddl(&wspec, &ddl.after_load).await {
                total.failed = Some(format!("building indexes: {e}"));
            }
        }
        if total.failed.is_none() {
            if let Err(e) = sink.finish(&job.writer.spec).await {
                total.failed = Some(format!("postSql: {e}"));
            }
        }
    } else {
        let mut why = format!(
            "{} of {} shard tables failed: {}",
            failed.len(),
            lines.len(),
            failed.join(", ")
        );
        if created && total.records_written == 0 {
            match sink.clear_tables(std::slice::from_ref(&wspec), true).await {
                Ok(()) => why.push_str(" (the table it created is dropped again)"),
                Err(e) => warn!("dropping the empty target of a failed merge: {e}"),
            }
        } else {
            why.push_str("; its indexes are not built");
        }
        total.failed = Some(why);
    }
    total.tables = lines;
    Ok(total)
}

/// A sharded job's tables and its one target, before anything is written.
pub(crate) struct Resolved {
    pub(crate) units: Vec<Unit>,
    /// Each unit's reading, the source columns added.
    pub(crate) readings: Vec<Arc<dyn Reading>>,
    /// The writer's spec for the target (its `described` filled with `createTable`).
    pub wspec: ferry_connectors::WriteSpec,
    /// The target's columns.
    pub tschema: SchemaRef,
}

impl Resolved {
    /// Every shard table, `shard.table`.
    pub fn labels(&self) -> Vec<String> {
        self.units.iter().map(|u| u.label.clone()).collect()
    }
}

/// Selects the shard tables of `listings`, compares their columns, and describes the
/// target from the first one (over the widest text columns of all).
pub(crate) async fn resolve(
    job: &Job,
    listings: &[TableListing],
    reading_for: &(dyn Fn(usize, &str) -> Arc<dyn Reading> + Send + Sync),
) -> Result<Resolved, RunError> {
    let merge = job.reader.merge.as_ref().ok_or_else(|| RunError::Reader {
        stage: "merging shards",
        message: "not a sharded job".into(),
    })?;
    let units = select(merge, listings)?;
    info!(
        shards = merge.shards.len(),
        tables = units.len(),
        "sharded job"
    );
    let select_err = |message| RunError::Reader {
        stage: "comparing the shards' columns",
        message,
    };
    let extra = merge.source_columns.names();
    let mut readings = Vec::with_capacity(units.len());
    let mut schemas = Vec::with_capacity(units.len());
    for u in &units {
        let mut values = Vec::new();
        if let Some(c) = &merge.source_columns.source {
            values.push((c.clone(), merge.shards[u.shard].name.clone()));
        }
        if let Some(c) = &merge.source_columns.table {
            values.push((c.clone(), u.table.clone()));
        }
        let reading: Arc<dyn Reading> = Arc::new(Tagged {
            inner: reading_for(u.shard, &u.table),
            values,
            in_key: merge.source_columns.in_key,
        });
        let schema = reading
            .schema(&unit_spec(job, u))
            .await
            .map_err(|e| select_err(format!("{}: {e}", u.label)))?;
        readings.push(reading);
        schemas.push(schema);
    }
    let merged = compare(&units, &schemas).map_err(select_err)?;
    let mut wspec = job.writer.spec.clone();
    if !wspec.columns.is_empty() && wspec.columns != ["*"] {
        wspec.columns.extend(extra.iter().cloned());
    }
    let tschema = target_schema(&merged, &wspec.columns).map_err(|source| RunError::Connector {
        stage: "mapping columns",
        source,
    })?;
    let (tschema, _) = job.writer.type_map.apply(&tschema);
    if wspec.create_table {
        wspec.described = described(
            readings[0].as_ref(),
            &unit_spec(job, &units[0]),
            &schemas[0],
            &tschema,
            None,
        )
        .await
        .map_err(|message| RunError::Reader {
            stage: "describing the first shard's table",
            message,
        })?;
    }
    Ok(Resolved {
        units,
        readings,
        wspec,
        tschema,
    })
}

/// Opens each shard's source in this process and lists its tables.
pub(crate) async fn open_shards(
    job: &Job,
) -> Result<(Vec<Arc<dyn ferry_connectors::Source>>, Vec<TableListing>), RunError> {
    let merge = job.reader.merge.as_ref().ok_or_else(|| RunError::Reader {
        stage: "merging shards",
        message: "not a sharded job".into(),
    })?;
    let mut sources = Vec::with_capacity(merge.shards.len());
    let mut listings = Vec::with_capacity(merge.shards.len());
    for shard in &merge.shards {
        let mut reader = job.reader.clone();
        reader.location = shard.location.clone();
        let source = crate::registry::open_source(&reader).await?;
        listings.push(source.list_tables().await.map_err(|e| RunError::Reader {
            stage: "listing a shard's tables",
            message: format!("shard {}: {e}", shard.name),
        })?);
        sources.push(source);
    }
    Ok((sources, listings))
}

/// Runs sharded `job` with its readers in this process.
pub async fn run_merge_standalone(job: &Job, opts: &RunOptions) -> Result<Summary, RunError> {
    let (sources, listings) = open_shards(job).await?;
    let sink = crate::registry::open_sink(&job.writer).await?;
    let reading_for = move |i: usize, _: &str| -> Arc<dyn Reading> {
        Arc::new(crate::local::LocalReading::new(sources[i].clone()))
    };
    run_merge(job, listings, &reading_for, sink, opts).await
}

/// The shard tables `merge` selects, in shard order.
fn select(merge: &Merge, listings: &[TableListing]) -> Result<Vec<Unit>, RunError> {
    let err = |message| RunError::Reader {
        stage: "selecting the shards' tables",
        message,
    };
    let mut units = Vec::new();
    for (i, (shard, listing)) in merge.shards.iter().zip(listings).enumerate() {
        let missing = shard.tables.missing(&listing.tables);
        if !missing.is_empty() {
            return Err(err(format!(
                "shard {}: no table {} (or not allowed to read it)",
                shard.name,
                missing.join(", ")
            )));
        }
        let tables = shard.tables.select(&listing.tables);
        if tables.is_empty() {
            return Err(err(format!(
                "shard {}: `tables` {:?} selects none of its {} tables",
                shard.name,
                shard.tables.include,
                listing.tables.len()
            )));
        }
        units.extend(tables.into_iter().map(|table| Unit {
            shard: i,
            label: format!("{}.{table}", shard.name),
            table,
        }));
        if units.len() > MAX_TABLES {
            return Err(err(format!("more than {MAX_TABLES} shard tables selected")));
        }
    }
    if units.is_empty() {
        return Err(err("no shard".into()));
    }
    Ok(units)
}

/// The reader's spec for one shard table.
fn unit_spec(job: &Job, u: &Unit) -> ReadSpec {
    let mut spec = read_spec(job);
    spec.table = Some(u.table.clone());
    spec
}

/// The one schema all shard tables share (a text column as wide as its widest), or what
/// differs, shard table by shard table.
fn compare(units: &[Unit], schemas: &[SchemaRef]) -> Result<SchemaRef, String> {
    const WIDTH: &str = "ferry.max_length";
    let base = &schemas[0];
    let mut fields: Vec<Field> = base.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut problems = Vec::new();
    for (u, s) in units.iter().zip(schemas).skip(1) {
        let mut what = Vec::new();
        for f in base.fields() {
            if s.field_with_name(f.name()).is_err() {
                what.push(format!("no column `{}`", f.name()));
            }
        }
        for (i, f) in s.fields().iter().enumerate() {
            let Ok(b) = base.field_with_name(f.name()) else {
                what.push(format!("an extra column `{}`", f.name()));
                continue;
            };
            let ty = |f: &Field| f.metadata().get("ferry.type").cloned();
            if b.data_type() != f.data_type() || ty(b) != ty(f) {
                what.push(format!(
                    "column `{}` is {}{} where {} has {}{}",
                    f.name(),
                    f.data_type(),
                    ty(f).map(|t| format!(" ({t})")).unwrap_or_default(),
                    units[0].label,
                    b.data_type(),
                    ty(b).map(|t| format!(" ({t})")).unwrap_or_default(),
                ));
            } else if base.index_of(f.name()).ok() != Some(i) {
                what.push(format!("column `{}` is at position {}", f.name(), i + 1));
            }
        }
        if !what.is_empty() {
            problems.push(format!("{}: {}", u.label, what.join(", ")));
        }
        // The widest text wins; an unbounded one makes the column unbounded.
        for f in fields.iter_mut() {
            let Ok(other) = s.field_with_name(f.name()) else {
                continue;
            };
            let width = |f: &Field| f.metadata().get(WIDTH).and_then(|w| w.parse::<u64>().ok());
            let mut md = f.metadata().clone();
            match (width(f), width(other)) {
                (Some(a), Some(b)) if b > a => {
                    md.insert(WIDTH, b.to_string());
                }
                (Some(_), None) => {
                    md.remove(WIDTH);
                }
                _ => {}
            }
            if other.is_nullable() && !f.is_nullable() {
                *f = f.clone().with_nullable(true);
            }
            *f = f.clone().with_metadata(md);
        }
    }
    if !problems.is_empty() {
        return Err(format!(
            "the shards' columns differ from {}'s ({}): {} (read the columns they share with \
             the reader's `column`)",
            units[0].label,
            base.fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
            problems.join("; ")
        ));
    }
    Ok(Arc::new(Schema::new_with_metadata(
        fields,
        base.metadata().clone(),
    )))
}

/// A shard table's reading with the source columns after its own.
struct Tagged {
    inner: Arc<dyn Reading>,
    /// Column name and the value every row of this table has in it.
    values: Vec<(String, String)>,
    in_key: bool,
}

impl Tagged {
    fn field(name: &str) -> Field {
        let mut md = std::collections::HashMap::new();
        md.insert("ferry.max_length".to_string(), NAME_WIDTH.to_string());
        Field::new(name, DataType::Utf8, false).with_metadata(md)
    }
}

#[async_trait]
impl Reading for Tagged {
    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, String> {
        let s = self.inner.schema(spec).await?;
        let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
        for (name, _) in &self.values {
            if s.field_with_name(name).is_ok() {
                return Err(format!(
                    "the source already has a column `{name}` (`sourceColumns` names new ones)"
                ));
            }
            fields.push(Self::field(name));
        }
        Ok(Arc::new(Schema::new_with_metadata(
            fields,
            s.metadata().clone(),
        )))
    }

    async fn describe(&self, spec: &ReadSpec) -> Result<Option<TableSchema>, String> {
        let Some(mut d) = self.inner.describe(spec).await? else {
            return Ok(None);
        };
        let names: Vec<String> = self.values.iter().map(|(n, _)| n.clone()).collect();
        d.columns.extend(names.iter().map(|n| ColumnDef {
            name: n.clone(),
            not_null: true,
            ..Default::default()
        }));
        if self.in_key {
            if !d.primary_key.is_empty() {
                d.primary_key.extend(names.iter().cloned());
            }
            for ix in d.indexes.iter_mut().filter(|ix| ix.unique) {
                ix.columns
                    .extend(names.iter().map(|n| ferry_connectors::spec::IndexColumn {
                        name: n.clone(),
                        descending: false,
                        prefix: None,
                    }));
            }
        }
        if !d.foreign_keys.is_empty() {
            d.not_carried.push(format!(
                "{} foreign keys: a sharded table's keys point into one shard",
                d.foreign_keys.len()
            ));
            d.foreign_keys.clear();
        }
        Ok(Some(d))
    }

    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, String> {
        self.inner.plan(spec, max_splits).await
    }

    fn estimated_rows(&self) -> Option<u64> {
        self.inner.estimated_rows()
    }

    async fn open(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        attempt: u32,
    ) -> Result<Box<dyn SplitFeed>, ReadError> {
        let own = schema.fields().len() - self.values.len().min(schema.fields().len());
        let inner_schema = Arc::new(Schema::new_with_metadata(
            schema.fields()[..own].to_vec(),
            schema.metadata().clone(),
        ));
        let feed = self.inner.open(spec, inner_schema, split, attempt).await?;
        Ok(Box::new(TaggedFeed {
            inner: feed,
            schema,
            values: self.values.iter().map(|(_, v)| v.clone()).collect(),
        }))
    }

    /// The source columns are added to canonical hashes only (see `append_constants`).
    async fn hashes_postgres(&self) -> bool {
        false
    }

    /// The inner reading fingerprints the shard's own columns (on its agent); the source
    /// columns, the same in every row, are added to its results here.
    async fn fingerprint(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        ask: &ferry_model::VerifyAsk,
        attempt: u32,
    ) -> Result<Vec<RecordBatch>, ReadError> {
        let own = schema.fields().len() - self.values.len().min(schema.fields().len());
        let inner_schema = Arc::new(Schema::new_with_metadata(
            schema.fields()[..own].to_vec(),
            schema.metadata().clone(),
        ));
        if let Some(k) = ask.key.iter().find(|k| inner_schema.index_of(k).is_err()) {
            return Err(format!(
                "key column `{k}` is a source column: verify keys by the shard's own key"
            )
            .into());
        }
        let mut inner_ask = ask.clone();
        inner_ask
            .text_as
            .retain(|t| inner_schema.index_of(&t.column).is_ok());
        let values: Vec<String> = self.values.iter().map(|(_, v)| v.clone()).collect();
        self.inner
            .fingerprint(spec, inner_schema, split, &inner_ask, attempt)
            .await?
            .iter()
            .map(|b| {
                ferry_fingerprint::append_constants(b, &ask.pass, own, &values, &schema)
                    .map_err(|e| ReadError::from(e.to_string()))
            })
            .collect()
    }

    fn wire_bytes(&self) -> u64 {
        self.inner.wire_bytes()
    }
}

/// A split's batches with the source columns' values appended.
struct TaggedFeed {
    inner: Box<dyn SplitFeed>,
    schema: SchemaRef,
    values: Vec<String>,
}

#[async_trait]
impl SplitFeed for TaggedFeed {
    async fn next(&mut self) -> Result<Option<RecordBatch>, ReadError> {
        let Some(b) = self.inner.next().await? else {
            return Ok(None);
        };
        let n = b.num_rows();
        let mut columns = b.columns().to_vec();
        for v in &self.values {
            columns.push(Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                v.as_str(),
                n,
            ))) as ArrayRef);
        }
        // The batch's own metadata (values changed on purpose) rides along.
        let schema = Arc::new(Schema::new_with_metadata(
            self.schema.fields().clone(),
            b.schema().metadata().clone(),
        ));
        RecordBatch::try_new(schema, columns)
            .map(Some)
            .map_err(|e| ReadError::from(format!("adding the source columns: {e}")))
    }

    async fn committed(&mut self, rows: u64) -> Result<(), ReadError> {
        self.inner.committed(rows).await
    }

    fn origin(&self) -> Option<&str> {
        self.inner.origin()
    }

    fn changes(&self) -> ferry_connectors::spec::Changes {
        self.inner.changes()
    }

    async fn close(self: Box<Self>, outcome: Result<(), &str>) -> Result<(), String> {
        self.inner.close(outcome).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(reader: &str, writer_table: &str) -> Result<Job, String> {
        let text = format!(
            "reader:\n  name: mysqlreader\n  parameter:\n{reader}\
             writer:\n  name: postgresqlwriter\n  parameter: {{url: \"postgres://x@h/d\"{writer_table}}}\n"
        );
        Job::parse(&text, &Default::default()).map_err(|e| e.to_string())
    }

    #[test]
    fn shards_parse_with_their_names_tables_and_source_columns() {
        let job = parse(
            "    tables: [\"order_*\"]\n    username: u\n    shards:\n\
             \x20     - {url: \"mysql://h1:3306/db_0\"}\n\
             \x20     - {url: \"mysql://h2/db_1?x=1\", tables: [order_7], name: west}\n\
             \x20   sourceColumns: {source: src, table: tbl, inKey: true}\n",
            ", table: orders",
        )
        .unwrap();
        let m = job.reader.merge.expect("sharded");
        assert_eq!(m.shards.len(), 2);
        assert_eq!(m.shards[0].name, "db_0");
        assert_eq!(m.shards[0].tables.include, ["order_*"]);
        assert_eq!(
            m.shards[0].location,
            Location::Url("mysql://u@h1:3306/db_0".into())
        );
        assert_eq!(m.shards[1].name, "west");
        assert_eq!(m.shards[1].tables.include, ["order_7"]);
        assert_eq!(m.source_columns.names(), ["src", "tbl"]);
        assert!(m.source_columns.in_key);
        assert!(job.reader.tables.is_none());

        // One source's tables into the writer's one table is a merge too.
        let job = parse(
            "    datasource: idc/shop\n    tables: [\"t_*\"]\n",
            ", table: all_t",
        )
        .unwrap();
        assert_eq!(
            job.reader.merge.expect("sharded").shards[0].name,
            "idc/shop"
        );
    }

    #[test]
    fn bad_shards_are_refused_with_the_reason() {
        for (reader, table, why) in [
            (
                "    url: \"mysql://h/a\"\n    tables: [t]\n    shards: [{url: \"mysql://h/b\"}]\n",
                ", table: x",
                "not with `shards`",
            ),
            (
                "    tables: [t]\n    shards: [{url: \"mysql://h/a\"}, {url: \"mysql://k/a\"}]\n",
                ", table: x",
                "two shards are named `a`",
            ),
            (
                "    tables: [t]\n    shards: [{url: \"mysql://h/a\"}, {datasource: g/b}]\n",
                ", table: x",
                "all `url`s",
            ),
            (
                "    shards: [{url: \"mysql://h/a\"}]\n",
                ", table: x",
                "give the shard's `tables`",
            ),
            (
                "    shards: [{url: \"mysql://h/a\", tables: [t], port: 1}]\n",
                ", table: x",
                "shards[0].port",
            ),
            (
                "    url: \"mysql://h/a\"\n    table: t\n    sourceColumns: {source: s}\n",
                ", table: x",
                "is for a sharded job",
            ),
            (
                "    tables: [t]\n    shards: [{url: \"mysql://h/a\"}]\n    sourceColumns: {inKey: true}\n",
                ", table: x",
                "needs `source` or `table`",
            ),
            (
                "    tables: [t]\n    shards: []\n",
                ", table: x",
                "is empty",
            ),
        ] {
            let e = parse(reader, table).err().unwrap_or_default();
            assert!(e.contains(why), "{reader}: {e}");
        }
    }
}
