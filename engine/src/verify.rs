//! `ferry verify`: does the target hold exactly what the source holds, table by table?
//!
//! Both sides are read where they are: the source through its [`Reading`] (an agent across
//! the tunnel hashes its rows itself; only fingerprints come back), the target in this
//! process. Rows are hashed over canonical values (`ferry-fingerprint`), so a value the type
//! mapping changed in form only (a `DECIMAL(10,2)` 5.00 that became `numeric` 5.0, a
//! `TINYINT(1)` that became a boolean, a `TIME` kept as text by SQLite) still compares equal.
//! Per table, three passes:
//!
//! 1. **buckets**: every split of both sides gives rows and a hash sum per bucket of the key
//!    hash; the sums are added up per side and compared;
//! 2. **rows**: the rows of the buckets that differ (at most [`MAX_EXAMINED_BUCKETS`]) come
//!    back as key, row hash and column hashes, and are compared key by key: missing, extra,
//!    duplicated, or changed in named columns;
//! 3. **values** (`--show-values` only: values may be sensitive): the differing rows' values.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferry_connectors::{ReadSpec, Source, Split};
use ferry_fingerprint::{
    diff_rows, read_rows, read_values, BucketTotals, DiffKind, RowDigest, RowValues,
};
use ferry_model::{TextAs, TextKind, VerifyAsk, VerifyPass, MAX_ROW_BUCKETS, MAX_VALUE_KEYS};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::config::Job;
use crate::local::LocalReading;
use crate::run::{read_spec, target_schema, ReadError, Reading, RunError};

/// Buckets that differ whose rows are compared one by one; beyond that a table is reported
/// as differing in more buckets than were examined.
pub const MAX_EXAMINED_BUCKETS: usize = 256;
/// Most result rows one side may send for one pass of one table.
const MAX_RESULT_ROWS: usize = 4_000_000;

/// How to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Fetch and show the values of differing rows (off by default: values may be sensitive).
    pub show_values: bool,
    /// Most differing rows listed per table.
    pub listed: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            show_values: false,
            listed: 20,
        }
    }
}

/// The outcome of verifying a job's tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub tables: Vec<TableVerdict>,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Bytes that crossed the tunnel (the source's fingerprints and differing keys).
    pub wire_bytes: u64,
}

/// One table's verdict.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableVerdict {
    /// The target table.
    pub table: String,
    pub source_rows: Option<u64>,
    pub target_rows: Option<u64>,
    /// Rows found to differ (in the buckets examined).
    pub differing_rows: u64,
    /// Buckets that differ but were not examined row by row (more than
    /// [`MAX_EXAMINED_BUCKETS`] differ).
    #[serde(default)]
    pub unexamined_buckets: u64,
    /// The first differing rows.
    pub differences: Vec<Difference>,
    /// The table could not be verified.
    #[serde(default)]
    pub error: Option<String>,
}

/// A differing row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Difference {
    /// The row's key as the source reads it (empty for a table without a key).
    pub key: String,
    /// `missing`, `extra`, `duplicated` or `changed`.
    pub kind: String,
    /// The columns that differ (changed rows).
    #[serde(default)]
    pub columns: Vec<String>,
    /// With `--show-values`: the differing columns' values on each side.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<ValueDiff>,
}

/// One column of a differing row, on both sides (`None`: NULL, or the side lacks the row).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ValueDiff {
    pub column: String,
    pub source: Option<String>,
    pub target: Option<String>,
}

impl TableVerdict {
    fn failed(table: &str, error: String) -> Self {
        Self {
            table: table.to_string(),
            error: Some(error),
            ..Default::default()
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none()
            && self.differing_rows == 0
            && self.unexamined_buckets == 0
            && self.source_rows == self.target_rows
    }

    /// `ok`, or what is wrong in a few words.
    pub fn status(&self) -> String {
        if let Some(e) = &self.error {
            return format!("error: {e}");
        }
        if self.passed() {
            return "ok".into();
        }
        let mut counts: Vec<(String, usize)> = Vec::new();
        for d in &self.differences {
            match counts.iter_mut().find(|(k, _)| *k == d.kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((d.kind.clone(), 1)),
            }
        }
        let mut parts: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let listed = self.differences.len() as u64;
        if self.differing_rows > listed {
            parts.push(format!("{} more rows differ", self.differing_rows - listed));
        }
        if self.unexamined_buckets > 0 {
            parts.push(format!(
                "{} more buckets of rows differ (not examined)",
                self.unexamined_buckets
            ));
        }
        if parts.is_empty() {
            parts.push("row counts differ".into());
        }
        format!("FAILED: {}", parts.join(", "))
    }
}

impl VerifyReport {
    pub fn passed(&self) -> usize {
        self.tables.iter().filter(|t| t.passed()).count()
    }

    pub fn failed_tables(&self) -> Vec<&str> {
        self.tables
            .iter()
            .filter(|t| !t.passed())
            .map(|t| t.table.as_str())
            .collect()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = self
            .tables
            .iter()
            .map(|t| t.table.len())
            .max()
            .unwrap_or(5)
            .max(5);
        let rows = |n: Option<u64>| n.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
        writeln!(
            f,
            "{:<width$}  {:>12}  {:>12}  status",
            "table", "source rows", "target rows"
        )?;
        for t in &self.tables {
            writeln!(
                f,
                "{:<width$}  {:>12}  {:>12}  {}",
                t.table,
                rows(t.source_rows),
                rows(t.target_rows),
                t.status()
            )?;
            for d in &t.differences {
                let key = if d.key.is_empty() {
                    "(a row; the table has no key)".to_string()
                } else {
                    format!("key {}", d.key)
                };
                if d.columns.is_empty() {
                    writeln!(f, "  {:<10} {key}", d.kind)?;
                } else {
                    writeln!(f, "  {:<10} {key}: {}", d.kind, d.columns.join(", "))?;
                }
                for v in &d.values {
                    let show = |v: &Option<String>| match v {
                        Some(s) => format!("{s:?}"),
                        None => "NULL".into(),
                    };
                    writeln!(
                        f,
                        "      {}: {} -> {}",
                        v.column,
                        show(&v.source),
                        show(&v.target)
                    )?;
                }
            }
        }
        write!(
            f,
            "{} passed, {} failed ({:.1} s, {} bytes through the tunnel)",
            self.passed(),
            self.tables.len() - self.passed(),
            self.seconds,
            self.wire_bytes
        )
    }
}

/// One side of a table: where it is read and what is read.
pub struct Side {
    pub reading: Arc<dyn Reading>,
    pub spec: ReadSpec,
    /// Task slots of this side (shared by the tables verified together).
    pub slots: Arc<Semaphore>,
}

/// The target table of a one-table job, read as a source.
pub fn target_spec(job: &Job) -> ReadSpec {
    ReadSpec {
        table: Some(job.writer.spec.table.clone()),
        columns: Vec::new(),
        where_clause: None,
        split_pk: None,
        split_on_key: true,
        query_sql: None,
        fetch_size: job.reader.spec.fetch_size,
    }
}

/// Verifies one table: `source` against `target`, up to `channel` splits at a time per side.
/// `columns` are the writer's column names (empty: the reader's).
pub async fn verify_table(
    label: &str,
    source: &Side,
    target: &Side,
    columns: &[String],
    channel: usize,
    opts: &VerifyOptions,
) -> TableVerdict {
    match compare(label, source, target, columns, channel, opts).await {
        Ok(v) => v,
        Err(e) => {
            warn!(table = label, "verification failed: {e}");
            TableVerdict::failed(label, e)
        }
    }
}

async fn compare(
    label: &str,
    source: &Side,
    target: &Side,
    columns: &[String],
    channel: usize,
    opts: &VerifyOptions,
) -> Result<TableVerdict, String> {
    let sschema = source
        .reading
        .schema(&source.spec)
        .await
        .map_err(|e| format!("reading the source's schema: {e}"))?;
    // The target read names the columns the job wrote, in the source's order.
    let expect = target_schema(&sschema, columns).map_err(|e| e.to_string())?;
    let tspec = ReadSpec {
        columns: expect.fields().iter().map(|f| f.name().clone()).collect(),
        ..target.spec.clone()
    };
    let tschema = target
        .reading
        .schema(&tspec)
        .await
        .map_err(|e| format!("reading the target's schema: {e}"))?;
    if tschema.fields().len() != sschema.fields().len() {
        return Err(format!(
            "the target reads {} columns where the source reads {}",
            tschema.fields().len(),
            sschema.fields().len()
        ));
    }
    let names: Vec<String> = tschema.fields().iter().map(|f| f.name().clone()).collect();
    // The source's primary key, when every column of it is read; else rows are their own key.
    let key_at: Vec<usize> = match source.reading.describe(&source.spec).await? {
        Some(d) => {
            let at: Vec<Option<usize>> = d
                .primary_key
                .iter()
                .map(|k| sschema.index_of(k).ok())
                .collect();
            if at.iter().all(Option::is_some) {
                at.into_iter().flatten().collect()
            } else {
                Vec::new()
            }
        }
        None => Vec::new(),
    };
    let (stext, ttext) = text_kinds(&sschema, &tschema);
    let ssplits = source
        .reading
        .plan(&source.spec, channel * 4)
        .await
        .map_err(|e| format!("planning the source's read: {e}"))?;
    let tsplits = target
        .reading
        .plan(&tspec, channel * 4)
        .await
        .map_err(|e| format!("planning the target's read: {e}"))?;
    let estimate = source
        .reading
        .estimated_rows()
        .or(target.reading.estimated_rows());
    let buckets = bucket_count(estimate);
    let ask = |schema: &Schema, text: Vec<TextAs>, pass: VerifyPass| VerifyAsk {
        key: key_at
            .iter()
            .map(|i| schema.field(*i).name().clone())
            .collect(),
        buckets,
        text_as: text,
        pass,
    };
    let sask = |pass| ask(&sschema, stext.clone(), pass);
    let task = |pass| ask(&tschema, ttext.clone(), pass);
    let tside = Side {
        reading: target.reading.clone(),
        spec: tspec.clone(),
        slots: target.slots.clone(),
    };
    info!(
        table = label,
        buckets,
        source_splits = ssplits.len(),
        target_splits = tsplits.len(),
        "verifying"
    );

    // Pass 1: buckets.
    let (s, t) = tokio::join!(
        run_pass(source, &sschema, &ssplits, sask(VerifyPass::Buckets)),
        run_pass(&tside, &tschema, &tsplits, task(VerifyPass::Buckets)),
    );
    let (mut stotal, mut ttotal) = (BucketTotals::new(buckets), BucketTotals::new(buckets));
    for b in s.map_err(|e| format!("source: {e}"))? {
        stotal.add(&b).map_err(|e| format!("source: {e}"))?;
    }
    for b in t.map_err(|e| format!("target: {e}"))? {
        ttotal.add(&b).map_err(|e| format!("target: {e}"))?;
    }
    let mut verdict = TableVerdict {
        table: label.to_string(),
        source_rows: Some(stotal.rows),
        target_rows: Some(ttotal.rows),
        ..Default::default()
    };
    let differing = stotal.differing(&ttotal);
    if differing.is_empty() {
        return Ok(verdict);
    }

    // Pass 2: the rows of the differing buckets.
    let examined: Vec<u32> = differing
        .iter()
        .copied()
        .take(MAX_EXAMINED_BUCKETS.min(MAX_ROW_BUCKETS))
        .collect();
    verdict.unexamined_buckets = (differing.len() - examined.len()) as u64;
    let rows_pass = VerifyPass::Rows { buckets: examined };
    let (s, t) = tokio::join!(
        run_pass(source, &sschema, &ssplits, sask(rows_pass.clone())),
        run_pass(&tside, &tschema, &tsplits, task(rows_pass)),
    );
    let digests = |batches: Vec<RecordBatch>| -> Result<Vec<RowDigest>, String> {
        let mut out = Vec::new();
        for b in &batches {
            out.extend(read_rows(b, names.len()).map_err(|e| e.to_string())?);
        }
        Ok(out)
    };
    let sd = digests(s.map_err(|e| format!("source: {e}"))?)?;
    let td = digests(t.map_err(|e| format!("target: {e}"))?)?;
    let diffs = diff_rows(sd, td);
    verdict.differing_rows = diffs.len() as u64;
    let listed: Vec<_> = diffs.into_iter().take(opts.listed).collect();

    // Pass 3: their values, when asked for.
    let mut values: (HashMap<u64, RowValues>, HashMap<u64, RowValues>) = Default::default();
    if opts.show_values && !listed.is_empty() {
        let mut keys: Vec<u64> = listed.iter().map(|d| d.key_hash).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.truncate(MAX_VALUE_KEYS);
        let pass = VerifyPass::Values { keys };
        let (s, t) = tokio::join!(
            run_pass(source, &sschema, &ssplits, sask(pass.clone())),
            run_pass(&tside, &tschema, &tsplits, task(pass)),
        );
        let rows = |batches: Vec<RecordBatch>| -> Result<HashMap<u64, RowValues>, String> {
            let mut out = HashMap::new();
            for b in &batches {
                for r in read_values(b, names.len()).map_err(|e| e.to_string())? {
                    out.insert(r.key_hash, r);
                }
            }
            Ok(out)
        };
        values = (
            rows(s.map_err(|e| format!("source: {e}"))?)?,
            rows(t.map_err(|e| format!("target: {e}"))?)?,
        );
    }
    verdict.differences = listed
        .into_iter()
        .map(|d| {
            let changed: Vec<usize> = match &d.kind {
                DiffKind::Changed { columns } => columns.clone(),
                _ => Vec::new(),
            };
            let shown: Vec<usize> = if changed.is_empty() {
                (0..names.len()).collect()
            } else {
                changed.clone()
            };
            let value = |side: &HashMap<u64, RowValues>, i: usize| {
                side.get(&d.key_hash)
                    .and_then(|r| r.values.get(i).cloned().flatten())
            };
            let vals = if opts.show_values {
                shown
                    .iter()
                    .map(|i| ValueDiff {
                        column: names[*i].clone(),
                        source: match d.kind {
                            DiffKind::Extra => None,
                            _ => value(&values.0, *i),
                        },
                        target: match d.kind {
                            DiffKind::Missing => None,
                            _ => value(&values.1, *i),
                        },
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Difference {
                key: d.key,
                kind: d.kind.label().to_string(),
                columns: changed.iter().map(|i| names[*i].clone()).collect(),
                values: vals,
            }
        })
        .collect();
    Ok(verdict)
}

/// Buckets for a table of about `rows` rows: about a thousand rows each, so a differing
/// bucket's rows are cheap to list, and a few KiB of sums per split otherwise.
fn bucket_count(rows: Option<u64>) -> u32 {
    let rows = rows.unwrap_or(1 << 20);
    (rows / 1024)
        .next_power_of_two()
        .clamp(16, u64::from(ferry_model::MAX_BUCKETS)) as u32
}

/// The family a typed column's text counterpart is read as.
fn family(dt: &DataType) -> Option<TextKind> {
    match dt {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Boolean
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => Some(TextKind::Number),
        DataType::Date32 | DataType::Date64 => Some(TextKind::Date),
        DataType::Time32(_) | DataType::Time64(_) => Some(TextKind::Time),
        DataType::Timestamp(..) => Some(TextKind::Timestamp),
        DataType::Duration(_) | DataType::Interval(_) => Some(TextKind::Duration),
        _ => None,
    }
}

fn is_text(f: &Field) -> bool {
    matches!(
        f.data_type(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

fn is_json(f: &Field) -> bool {
    f.metadata().get("ferry.type").map(String::as_str) == Some("json")
}

/// Which text columns each side reads as a typed value: JSON when either side says JSON, and
/// a type's text form where one side holds text and the other the type.
fn text_kinds(source: &Schema, target: &Schema) -> (Vec<TextAs>, Vec<TextAs>) {
    let (mut s, mut t) = (Vec::new(), Vec::new());
    for (fs, ft) in source.fields().iter().zip(target.fields()) {
        let both = |kind, s: &mut Vec<TextAs>, t: &mut Vec<TextAs>| {
            if is_text(fs) {
                s.push(TextAs {
                    column: fs.name().clone(),
                    kind,
                });
            }
            if is_text(ft) {
                t.push(TextAs {
                    column: ft.name().clone(),
                    kind,
                });
            }
        };
        if is_json(fs) || is_json(ft) {
            both(TextKind::Json, &mut s, &mut t);
        } else if is_text(fs) && !is_text(ft) {
            if let Some(k) = family(ft.data_type()) {
                both(k, &mut s, &mut t);
            }
        } else if is_text(ft) && !is_text(fs) {
            if let Some(k) = family(fs.data_type()) {
                both(k, &mut s, &mut t);
            }
        }
    }
    (s, t)
}

/// Runs one pass over every split of a side, `side.slots` at a time; a split whose reader
/// was lost is tried again, as a job's task is.
async fn run_pass(
    side: &Side,
    schema: &SchemaRef,
    splits: &[Split],
    ask: VerifyAsk,
) -> Result<Vec<RecordBatch>, String> {
    let ask = Arc::new(ask);
    let mut tasks = JoinSet::new();
    for split in splits.iter().cloned() {
        let (reading, spec, schema, ask, slots) = (
            side.reading.clone(),
            side.spec.clone(),
            schema.clone(),
            ask.clone(),
            side.slots.clone(),
        );
        tasks.spawn(async move {
            let _permit = slots.acquire_owned().await;
            let mut attempt = 1;
            loop {
                match reading
                    .fingerprint(&spec, schema.clone(), &split, &ask, attempt)
                    .await
                {
                    Ok(b) => return Ok(b),
                    Err(ReadError {
                        transient: true,
                        message,
                    }) if attempt < 5 => {
                        warn!(
                            split = split.index,
                            attempt, "fingerprint retried: {message}"
                        );
                        tokio::time::sleep(Duration::from_millis(500 << attempt.min(5))).await;
                        attempt += 1;
                    }
                    Err(e) => return Err(format!("split {}: {e}", split.index)),
                }
            }
        });
    }
    let mut out = Vec::new();
    let mut rows = 0usize;
    while let Some(r) = tasks.join_next().await {
        let batches = r.map_err(|e| format!("a verification task failed: {e}"))??;
        rows += batches.iter().map(RecordBatch::num_rows).sum::<usize>();
        if rows > MAX_RESULT_ROWS {
            return Err(format!(
                "more than {MAX_RESULT_ROWS} rows of fingerprints in one pass"
            ));
        }
        out.extend(batches);
    }
    Ok(out)
}

/// The one-table sides of `job` and their tables, for a one-table or whole-database job.
/// `source_for(table)` reads a source table; `target` reads the target.
pub async fn verify_job(
    job: &Job,
    source_tables: Option<Vec<String>>,
    source_for: &(dyn Fn(&str) -> Arc<dyn Reading> + Send + Sync),
    target: Arc<dyn Source>,
    wire: &(dyn Fn() -> u64 + Send + Sync),
    opts: &VerifyOptions,
) -> Result<VerifyReport, RunError> {
    let start = Instant::now();
    if job.reader.merge.is_some() {
        return Err(RunError::Reader {
            stage: "verifying",
            message: "verifying a sharded job is not supported yet".into(),
        });
    }
    let channel = job.setting.speed.channel.max(1);
    let (sslots, tslots) = (
        Arc::new(Semaphore::new(channel)),
        Arc::new(Semaphore::new(channel)),
    );
    let ones: Vec<Job> = match (&job.reader.tables, source_tables) {
        (Some(selection), Some(all)) => {
            let missing = selection.missing(&all);
            if !missing.is_empty() {
                return Err(RunError::Reader {
                    stage: "selecting tables",
                    message: format!(
                        "no table {} in the source (or not allowed to read it)",
                        missing.join(", ")
                    ),
                });
            }
            selection
                .select(&all)
                .into_iter()
                .map(|t| {
                    let mut one = job.clone();
                    one.reader.tables = None;
                    one.writer.spec.table = job.writer.naming.target(&t, job.writer.kind);
                    one.reader.spec.table = Some(t);
                    one.reader.spec.split_on_key = true;
                    one
                })
                .collect()
        }
        _ => vec![job.clone()],
    };
    // Tables side by side, a few at a time: each holds a plan and connections.
    let starting = Arc::new(Semaphore::new(channel.min(4)));
    let mut tasks = JoinSet::new();
    for (i, one) in ones.into_iter().enumerate() {
        let source = Side {
            reading: source_for(one.reader.spec.table.as_deref().unwrap_or_default()),
            spec: read_spec(&one),
            slots: sslots.clone(),
        };
        let target = Side {
            reading: Arc::new(LocalReading::new(target.clone())),
            spec: target_spec(&one),
            slots: tslots.clone(),
        };
        let (opts, starting) = (opts.clone(), starting.clone());
        tasks.spawn(async move {
            let _turn = starting.acquire_owned().await;
            let label = one.writer.spec.table.clone();
            let columns = one.writer.spec.columns.clone();
            let v = verify_table(&label, &source, &target, &columns, channel, &opts).await;
            (i, v)
        });
    }
    let mut tables = Vec::new();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(v) => tables.push(v),
            Err(e) => {
                return Err(RunError::Reader {
                    stage: "verifying",
                    message: format!("a table's verification failed: {e}"),
                })
            }
        }
    }
    tables.sort_by_key(|(i, _)| *i);
    Ok(VerifyReport {
        tables: tables.into_iter().map(|(_, v)| v).collect(),
        seconds: start.elapsed().as_secs_f64(),
        wire_bytes: wire(),
    })
}

/// Opens the writer's target as a source, to read it back.
pub async fn open_target(job: &Job) -> Result<Arc<dyn Source>, RunError> {
    let url = match &job.writer.location {
        crate::config::Location::Url(u) => u.clone(),
        crate::config::Location::DataSource { group, name } => {
            return Err(RunError::Reader {
                stage: "opening the target",
                message: format!(
                    "the writer names data source `{group}/{name}`; verification reads the target through a `url`"
                ),
            })
        }
    };
    let source = crate::registry::open_source_at(job.writer.kind, &url, &Default::default())
        .await
        .map_err(|e| RunError::Reader {
            stage: "opening the target",
            message: e.to_string(),
        })?;
    Ok(source)
}

/// Verifies `job` with both sides read in this process.
pub async fn verify_standalone(job: &Job, opts: &VerifyOptions) -> Result<VerifyReport, RunError> {
    let source = crate::registry::open_source(&job.reader).await?;
    let target = open_target(job).await?;
    let tables = match &job.reader.tables {
        Some(_) => Some(
            source
                .list_tables()
                .await
                .map_err(|e| RunError::Reader {
                    stage: "listing the source's tables",
                    message: e.to_string(),
                })?
                .tables,
        ),
        None => None,
    };
    let source_for =
        move |_: &str| -> Arc<dyn Reading> { Arc::new(LocalReading::new(source.clone())) };
    verify_job(job, tables, &source_for, target, &|| 0, opts).await
}
