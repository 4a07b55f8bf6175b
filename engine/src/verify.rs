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
//!
//! `--repair` then deletes the extra rows in the target, has the source send the rows of the
//! missing and changed keys again (a copy pass: the source filters its rows by key hash, so no
//! key value becomes SQL on the source side), writes them as upserts by key, and verifies the
//! table again. A target with duplicated keys has no unique key to upsert by: every differing
//! key's rows are deleted there and the source's inserted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferry_connectors::spec::{WriteMode, WriteSpec};
use ferry_connectors::{ReadSpec, Sink, Source, Split};
use ferry_fingerprint::{
    diff_rows, read_rows, read_values, BucketTotals, DiffKind, RowDigest, RowValues,
};
use ferry_model::{
    Scheme, TextAs, TextKind, VerifyAsk, VerifyPass, MAX_COPY_KEYS, MAX_ROW_BUCKETS, MAX_VALUE_KEYS,
};
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
    /// Re-sync the differing rows (delete them in the target, copy the source's again),
    /// then verify again.
    pub repair: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            show_values: false,
            listed: 20,
            repair: false,
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
    /// How rows were hashed: `postgres` (the target summed its rows inside PostgreSQL) or
    /// `canonical`.
    #[serde(default)]
    pub hashing: String,
    /// With `--repair`: what was re-synced before this verdict (which is the second one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repaired: Option<Repaired>,
}

/// What `--repair` did to a table.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Repaired {
    /// Rows that differed before.
    pub differing_rows: u64,
    /// Target rows deleted (extra rows; every differing key's rows where the target has
    /// duplicates, so no unique key to update by).
    pub deleted: u64,
    /// Source rows written again (missing and changed rows, as upserts by key; duplicated
    /// ones as inserts).
    pub copied: u64,
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
        let repaired = match &self.repaired {
            Some(r) => format!(
                " (repaired: {} rows differed, {} deleted, {} copied again)",
                r.differing_rows, r.deleted, r.copied
            ),
            None => String::new(),
        };
        if let Some(e) = &self.error {
            return format!("error: {e}{repaired}");
        }
        if self.passed() {
            return format!("ok{repaired}");
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
        format!("FAILED: {}{repaired}", parts.join(", "))
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

/// Where `--repair` writes: the job's target and its writer's parameters.
pub struct RepairTarget {
    pub sink: Arc<dyn Sink>,
    pub spec: WriteSpec,
    pub type_map: crate::retype::TypeMap,
}

/// What `--repair` must do to a table, found by the first verification.
struct RepairPlan {
    /// The target's key columns.
    key: Vec<String>,
    /// The source's key columns, its schema and its splits, as the verification found them.
    source_key: Vec<String>,
    sschema: SchemaRef,
    ssplits: Vec<Split>,
    /// The target rows to delete: their keys as the target reads them.
    delete: Vec<Vec<String>>,
    /// The source rows to copy again, by key hash (under `scheme`).
    copy: Vec<u64>,
    scheme: Scheme,
    /// Write them as upserts by `key` (the target has a unique key: changed rows are
    /// updated in place, so rows referring to them stay valid); else they are inserted
    /// after every differing key was deleted.
    upsert: bool,
    differing_rows: u64,
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
    sources: &Sources<'_>,
    target: &Side,
    columns: &[String],
    channel: usize,
    opts: &VerifyOptions,
    repair: Option<&RepairTarget>,
) -> TableVerdict {
    // Repair copies from one source table.
    let repair = repair.filter(|_| sources.parts.len() == 1);
    let first = match compare(label, sources, target, columns, channel, opts, repair).await {
        Ok(v) => v,
        Err(e) => {
            warn!(table = label, "verification failed: {e}");
            return TableVerdict::failed(label, e);
        }
    };
    let (verdict, plan) = first;
    let (Some(plan), Some(repair)) = (plan, repair) else {
        return verdict;
    };
    let repaired = match run_repair(label, &sources.parts[0], columns, repair, &plan).await {
        Ok(r) => r,
        Err(e) => {
            warn!(table = label, "repair failed: {e}");
            let mut v = verdict;
            v.error = Some(format!("repair failed: {e}"));
            return v;
        }
    };
    info!(
        table = label,
        deleted = repaired.deleted,
        copied = repaired.copied,
        "repaired; verifying again"
    );
    let mut again = match compare(label, sources, target, columns, channel, opts, None).await {
        Ok((v, _)) => v,
        Err(e) => TableVerdict::failed(label, format!("after the repair: {e}")),
    };
    again.repaired = Some(repaired);
    again
}

/// Deletes the plan's target rows and copies its source rows again.
async fn run_repair(
    label: &str,
    source: &Side,
    columns: &[String],
    to: &RepairTarget,
    plan: &RepairPlan,
) -> Result<Repaired, String> {
    let (sschema, ssplits) = (&plan.sschema, &plan.ssplits);
    let tschema = target_schema(sschema, columns).map_err(|e| e.to_string())?;
    let (tschema, retype) = to.type_map.apply(&tschema);
    let retype = retype.iter().any(Option::is_some).then_some(retype);
    let mut spec = to.spec.clone();
    if plan.upsert {
        spec.write_mode = WriteMode::Update;
        spec.keys = plan.key.clone();
    } else {
        spec.write_mode = WriteMode::Insert;
    }
    let deleted = match plan.delete.is_empty() {
        true => 0,
        false => to
            .sink
            .delete_keys(&spec, &plan.key, &plan.delete)
            .await
            .map_err(|e| format!("deleting the differing rows: {e}"))?,
    };
    let mut copied = 0;
    if !plan.copy.is_empty() {
        let mut writer = to
            .sink
            .writer(&spec, &tschema)
            .await
            .map_err(|e| format!("opening the target: {e}"))?;
        for keys in plan.copy.chunks(MAX_COPY_KEYS) {
            let ask = VerifyAsk {
                key: plan.source_key.clone(),
                buckets: 1,
                text_as: Vec::new(),
                scheme: plan.scheme.clone(),
                pass: VerifyPass::Copy {
                    keys: keys.to_vec(),
                },
            };
            for batch in run_pass(source, sschema, ssplits, ask).await? {
                let (batch, _) = ferry_connectors::take_changes(batch);
                let columns = match &retype {
                    None => batch.columns().to_vec(),
                    Some(plan) => crate::retype::convert(&batch, plan, &tschema)?.0,
                };
                let batch = RecordBatch::try_new(tschema.clone(), columns)
                    .map_err(|e| format!("renaming columns: {e}"))?;
                let outcome = writer
                    .write(&batch)
                    .await
                    .map_err(|e| format!("writing the source's rows: {e}"))?;
                if let Some(d) = outcome.dirty.first() {
                    return Err(format!(
                        "{} of the source's rows cannot be written again ({})",
                        outcome.dirty.len(),
                        d.reason
                    ));
                }
                copied += outcome.written;
            }
        }
        writer
            .close()
            .await
            .map_err(|e| format!("committing the source's rows: {e}"))?;
    }
    info!(table = label, deleted, copied, "repair written");
    Ok(Repaired {
        differing_rows: plan.differing_rows,
        deleted,
        copied,
    })
}

/// Where the source's primary key columns are in the read, when it reads them all; empty
/// otherwise (rows are then their own key).
async fn key_positions(source: &Side, sschema: &SchemaRef) -> Result<Vec<usize>, String> {
    Ok(match source.reading.describe(&source.spec).await? {
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
    })
}

/// Key types whose text form the target compares exactly (see `ferry_connectors::repair`).
fn repairable(dt: &DataType) -> bool {
    dt.is_integer()
        || matches!(
            dt,
            DataType::Decimal128(..)
                | DataType::Decimal256(..)
                | DataType::Utf8
                | DataType::LargeUtf8
        )
}

/// The source of a table: one table, or a sharded job's shard tables; and, for the latter,
/// the key to compare by (each shard's own primary key).
pub struct Sources<'a> {
    pub parts: &'a [Side],
    pub key: Option<Vec<String>>,
}

/// Runs a pass over every split of every part, the parts side by side.
async fn run_parts(
    sources: &[Side],
    planned: &[(SchemaRef, Vec<Split>)],
    ask: VerifyAsk,
) -> Result<Vec<RecordBatch>, String> {
    let runs = sources
        .iter()
        .zip(planned)
        .map(|(side, (schema, splits))| run_pass(side, schema, splits, ask.clone()));
    let mut out = Vec::new();
    for r in futures::future::join_all(runs).await {
        out.extend(r?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn compare(
    label: &str,
    sources: &Sources<'_>,
    target: &Side,
    columns: &[String],
    channel: usize,
    opts: &VerifyOptions,
    repair: Option<&RepairTarget>,
) -> Result<(TableVerdict, Option<RepairPlan>), String> {
    let Some(source) = sources.parts.first() else {
        return Err("no source table".into());
    };
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
    let key_at = match &sources.key {
        Some(names) => names
            .iter()
            .map(|n| {
                sschema
                    .index_of(n)
                    .map_err(|_| format!("key column `{n}` is not read"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        None => key_positions(source, &sschema).await?,
    };
    let (stext, ttext) = text_kinds(&sschema, &tschema);
    let scheme = choose_scheme(sources.parts, target, &tspec, &sschema, &tschema).await;
    let mut planned = Vec::with_capacity(sources.parts.len());
    let mut estimate: Option<u64> = None;
    for part in sources.parts {
        let schema = part
            .reading
            .schema(&part.spec)
            .await
            .map_err(|e| format!("reading the source's schema: {e}"))?;
        let splits: Vec<_> = part
            .reading
            .plan(&part.spec, channel * 4)
            .await
            .map_err(|e| format!("planning the source's read: {e}"))?
            .into_iter()
            .map(Split::unordered)
            .collect();
        if let Some(n) = part.reading.estimated_rows() {
            estimate = Some(estimate.unwrap_or(0) + n);
        }
        planned.push((schema, splits));
    }
    let ssplits: usize = planned.iter().map(|(_, s)| s.len()).sum();
    let tsplits = target
        .reading
        .plan(&tspec, channel * 4)
        .await
        .map_err(|e| format!("planning the target's read: {e}"))?
        .into_iter()
        .map(Split::unordered)
        .collect::<Vec<_>>();
    let estimate = estimate.or(target.reading.estimated_rows());
    let buckets = bucket_count(estimate);
    let ask = |schema: &Schema, text: Vec<TextAs>, pass: VerifyPass| VerifyAsk {
        key: key_at
            .iter()
            .map(|i| schema.field(*i).name().clone())
            .collect(),
        buckets,
        text_as: text,
        scheme: scheme.clone(),
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
        hashing = scheme_name(&scheme),
        source_splits = ssplits,
        target_splits = tsplits.len(),
        "verifying"
    );

    // Pass 1: buckets.
    let (s, t) = tokio::join!(
        run_parts(sources.parts, &planned, sask(VerifyPass::Buckets)),
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
        hashing: scheme_name(&scheme).to_string(),
        ..Default::default()
    };
    let differing = stotal.differing(&ttotal);
    if differing.is_empty() {
        return Ok((verdict, None));
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
        run_parts(sources.parts, &planned, sask(rows_pass.clone())),
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
    let plan = match repair {
        Some(_) => match repair_plan(label, &key_at, &sschema, &tschema, &diffs) {
            Ok(p) => Some(RepairPlan {
                ssplits: planned.first().map(|(_, s)| s.clone()).unwrap_or_default(),
                scheme: scheme.clone(),
                ..p
            }),
            Err(e) => {
                verdict.error = Some(format!("not repaired: {e}"));
                None
            }
        },
        None => None,
    };
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
            run_parts(sources.parts, &planned, sask(pass.clone())),
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
    Ok((verdict, plan))
}

/// What to delete and copy again for `diffs`, or why the table cannot be repaired.
fn repair_plan(
    label: &str,
    key_at: &[usize],
    sschema: &SchemaRef,
    tschema: &Schema,
    diffs: &[ferry_fingerprint::RowDiff],
) -> Result<RepairPlan, String> {
    if key_at.is_empty() {
        return Err(format!(
            "{label} has no primary key that the job reads: --repair needs one to find rows by"
        ));
    }
    for i in key_at {
        for f in [sschema.field(*i), tschema.field(*i)] {
            if !repairable(f.data_type()) {
                return Err(format!(
                    "{label}: key column `{}` is {}; --repair handles integer, decimal and text keys",
                    f.name(),
                    f.data_type()
                ));
            }
        }
    }
    // A duplicated key means the target has no unique key on it: no upsert then.
    let upsert = !diffs.iter().any(|d| d.kind == DiffKind::Duplicated);
    let mut delete = Vec::new();
    let mut copy = Vec::new();
    for d in diffs {
        let gone = !upsert || d.kind == DiffKind::Extra;
        if let (true, Some(k)) = (gone, &d.target_key) {
            match k.iter().cloned().collect::<Option<Vec<String>>>() {
                Some(k) if k.len() == key_at.len() => delete.push(k),
                _ => return Err(format!("{label}: key {} has a NULL", d.key)),
            }
        }
        if !matches!(d.kind, DiffKind::Extra) {
            copy.push(d.key_hash);
        }
    }
    delete.sort();
    delete.dedup();
    copy.sort_unstable();
    copy.dedup();
    Ok(RepairPlan {
        source_key: key_at
            .iter()
            .map(|i| sschema.field(*i).name().clone())
            .collect(),
        sschema: sschema.clone(),
        ssplits: Vec::new(),
        key: key_at
            .iter()
            .map(|i| tschema.field(*i).name().clone())
            .collect(),
        delete,
        copy,
        scheme: Scheme::Canonical,
        upsert,
        differing_rows: diffs.len() as u64,
    })
}

fn scheme_name(scheme: &Scheme) -> &'static str {
    match scheme {
        Scheme::Canonical => "canonical",
        Scheme::Postgres(_) => "postgres",
    }
}

/// The PostgreSQL scheme when the target hashes its rows inside its database, every source
/// reader can hash under it, and every column of both reads converts to the target's kind
/// (the target hashes its own rows here too when it lists differing rows); else the
/// canonical one.
async fn choose_scheme(
    parts: &[Side],
    target: &Side,
    tspec: &ReadSpec,
    sschema: &Schema,
    tschema: &Schema,
) -> Scheme {
    let kinds = match target.reading.hash_kinds(tspec).await {
        Ok(Some(k)) if k.len() == tschema.fields().len() => k,
        Ok(_) => return Scheme::Canonical,
        Err(e) => {
            warn!("the target's hash kinds: {e}; hashing canonically");
            return Scheme::Canonical;
        }
    };
    for part in parts {
        if !part.reading.hashes_postgres().await {
            return Scheme::Canonical;
        }
    }
    let fits = kinds
        .iter()
        .zip(sschema.fields().iter().zip(tschema.fields()))
        .all(|(k, (s, t))| {
            ferry_fingerprint::pgscheme::accepts(*k, s.data_type())
                && ferry_fingerprint::pgscheme::accepts(*k, t.data_type())
        });
    match fits && kinds.len() == sschema.fields().len() {
        true => Scheme::Postgres(kinds),
        false => Scheme::Canonical,
    }
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
        dt if dt.is_integer() => Some(TextKind::Number),
        DataType::Boolean | DataType::Decimal128(..) | DataType::Decimal256(..) => {
            Some(TextKind::Number)
        }
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
    sink: Option<Arc<dyn Sink>>,
    wire: &(dyn Fn() -> u64 + Send + Sync),
    opts: &VerifyOptions,
) -> Result<VerifyReport, RunError> {
    if opts.repair && sink.is_none() {
        return Err(RunError::Reader {
            stage: "repairing",
            message: "--repair needs the job's target opened for writing".into(),
        });
    }
    let start = Instant::now();
    if job.reader.merge.is_some() {
        return Err(RunError::Reader {
            stage: "verifying",
            message: "a sharded job is verified by verify_merge".into(),
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
        let repair = match (&sink, opts.repair) {
            (Some(sink), true) => Some(RepairTarget {
                sink: sink.clone(),
                spec: one.writer.spec.clone(),
                type_map: one.writer.type_map.clone(),
            }),
            _ => None,
        };
        tasks.spawn(async move {
            let _turn = starting.acquire_owned().await;
            let label = one.writer.spec.table.clone();
            let columns = one.writer.spec.columns.clone();
            let sources = Sources {
                parts: std::slice::from_ref(&source),
                key: None,
            };
            let v = verify_table(
                &label,
                &sources,
                &target,
                &columns,
                channel,
                &opts,
                repair.as_ref(),
            )
            .await;
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

/// Verifies sharded `job`: every shard table (the source columns added, as the job wrote
/// them) against the one target table, compared as one multiset of rows by each shard's own
/// primary key. `listings[i]` is what shard `i` lists, `reading_for(i, table)` reads one of
/// its tables.
pub async fn verify_merge(
    job: &Job,
    listings: Vec<ferry_connectors::TableListing>,
    reading_for: &(dyn Fn(usize, &str) -> Arc<dyn Reading> + Send + Sync),
    target: Arc<dyn Source>,
    wire: &(dyn Fn() -> u64 + Send + Sync),
    opts: &VerifyOptions,
) -> Result<VerifyReport, RunError> {
    let start = Instant::now();
    let merge = job.reader.merge.as_ref().ok_or_else(|| RunError::Reader {
        stage: "verifying",
        message: "not a sharded job".into(),
    })?;
    if opts.repair {
        return Err(RunError::Reader {
            stage: "repairing",
            message: "--repair is not offered for sharded jobs yet: verify without it, then copy the differing shard tables again".into(),
        });
    }
    let resolved = crate::merge::resolve(job, &listings, reading_for).await?;
    let channel = job.setting.speed.channel.max(1);
    let (sslots, tslots) = (
        Arc::new(Semaphore::new(channel)),
        Arc::new(Semaphore::new(channel)),
    );
    let sources: Vec<Side> = resolved
        .units
        .iter()
        .zip(&resolved.readings)
        .map(|(u, reading)| {
            let mut one = job.clone();
            one.reader.merge = None;
            one.reader.spec.table = Some(u.table.clone());
            one.reader.spec.split_on_key |= one.reader.spec.split_pk.is_none();
            Side {
                reading: reading.clone(),
                spec: read_spec(&one),
                slots: sslots.clone(),
            }
        })
        .collect();
    // Rows are keyed by their shard table's own primary key (the source columns are the
    // same in every row of a shard table, so they add nothing to find a row by).
    let added = [&merge.source_columns.source, &merge.source_columns.table];
    let key: Vec<String> = match sources.first() {
        Some(first) => match first.reading.describe(&first.spec).await {
            Ok(Some(d)) => d
                .primary_key
                .into_iter()
                .filter(|k| !added.iter().any(|a| a.as_deref() == Some(k.as_str())))
                .collect(),
            _ => Vec::new(),
        },
        None => Vec::new(),
    };
    let mut one = job.clone();
    one.reader.merge = None;
    one.writer.spec.table = resolved.wspec.table.clone();
    let target = Side {
        reading: Arc::new(LocalReading::new(target)),
        spec: target_spec(&one),
        slots: tslots,
    };
    let label = resolved.wspec.table.clone();
    info!(
        table = %label,
        shard_tables = sources.len(),
        "verifying a sharded job's target against its shard tables"
    );
    let verdict = verify_table(
        &label,
        &Sources {
            parts: &sources,
            key: Some(key),
        },
        &target,
        &resolved.wspec.columns,
        channel,
        opts,
        None,
    )
    .await;
    Ok(VerifyReport {
        tables: vec![verdict],
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
    let target = open_target(job).await?;
    if job.reader.merge.is_some() {
        let (sources, listings) = crate::merge::open_shards(job).await?;
        let reading_for = move |i: usize, _: &str| -> Arc<dyn Reading> {
            Arc::new(LocalReading::new(sources[i].clone()))
        };
        return verify_merge(job, listings, &reading_for, target, &|| 0, opts).await;
    }
    let source = crate::registry::open_source(&job.reader).await?;
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
    let sink = match opts.repair {
        true => Some(crate::registry::open_sink(&job.writer).await?),
        false => None,
    };
    let source_for =
        move |_: &str| -> Arc<dyn Reading> { Arc::new(LocalReading::new(source.clone())) };
    verify_job(job, tables, &source_for, target, sink, &|| 0, opts).await
}
