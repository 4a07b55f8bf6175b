//! Fingerprinting a split: batches in, one small result out, as Arrow batches so it crosses the
//! tunnel on a data stream like any read (compressed, bounded, acknowledged).
//!
//! A row's hash combines its columns' hashes in column order; its key hash combines its key
//! columns' (a table without a key: the row hash). The key hash picks the row's bucket, so both
//! sides put the same row in the same bucket whatever order and splits they read in.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, UInt32Builder, UInt64Builder};
use arrow_array::cast::AsArray;
use arrow_array::types::{UInt32Type, UInt64Type};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use ferry_model::{PgHash, Scheme, TextKind, VerifyAsk, VerifyPass};
use twox_hash::XxHash3_64;

use crate::canon::{column_hashes, text_kind};
use crate::FingerprintError;

/// Rows per result batch of the rows and values passes.
const RESULT_BATCH_ROWS: usize = 4096;
/// Seed of key hashes, so a one-column key's hash is not its row's.
const KEY_SEED: u64 = 0x006b_6579;

/// The result batches' schema of a pass over a read of schema `read` (the copy pass sends
/// the read's own rows).
pub fn result_schema(pass: &VerifyPass, read: &SchemaRef) -> SchemaRef {
    let u64f = |n: &str| Field::new(n, DataType::UInt64, false);
    Arc::new(Schema::new(match pass {
        VerifyPass::Copy { .. } => return read.clone(),
        VerifyPass::Buckets => vec![
            Field::new("bucket", DataType::UInt32, false),
            u64f("rows"),
            u64f("sum"),
        ],
        VerifyPass::Rows { .. } => vec![
            u64f("key_hash"),
            Field::new("key", DataType::Utf8, false),
            u64f("row_hash"),
            Field::new("columns", DataType::Binary, false),
        ],
        VerifyPass::Values { .. } => vec![
            u64f("key_hash"),
            Field::new("key", DataType::Utf8, false),
            Field::new("values", DataType::Utf8, false),
        ],
    }))
}

/// The buckets pass's result from (bucket, rows, hash sum) of each non-empty bucket, as a
/// database computed them.
pub fn bucket_batch(sums: &[(u32, u64, u64)]) -> Result<RecordBatch, FingerprintError> {
    let schema = result_schema(&VerifyPass::Buckets, &Arc::new(Schema::empty()));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(arrow_array::UInt32Array::from_iter_values(
            sums.iter().map(|s| s.0),
        )),
        Arc::new(arrow_array::UInt64Array::from_iter_values(
            sums.iter().map(|s| s.1),
        )),
        Arc::new(arrow_array::UInt64Array::from_iter_values(
            sums.iter().map(|s| s.2),
        )),
    ];
    RecordBatch::try_new(schema, columns).map_err(|e| FingerprintError::Shape(e.to_string()))
}

/// Column `i`'s share of a row's hash, given its value's hash. A row's hash is the wrapping
/// sum of its columns' shares: columns appended to a read (a sharded job's source columns,
/// the same value in every row) add a known amount, so a reader that appends them can
/// adjust hashes an agent computed without them.
pub fn column_term(i: usize, hash: u64) -> u64 {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b[8..].copy_from_slice(&hash.to_le_bytes());
    XxHash3_64::oneshot(&b)
}

/// A result batch of `pass` over a read of `own` columns, as if the read had also had the
/// columns `constants` (each holding the same text in every row) after them: the rows of the
/// copy pass get the columns, the other passes' hashes and values are adjusted. `schema` is
/// the schema of the read with the columns.
pub fn append_constants(
    batch: &RecordBatch,
    pass: &VerifyPass,
    own: usize,
    constants: &[String],
    schema: &SchemaRef,
) -> Result<RecordBatch, FingerprintError> {
    let shape = |e: arrow_schema::ArrowError| FingerprintError::Shape(e.to_string());
    let hashes: Vec<u64> = constants
        .iter()
        .map(|v| {
            let a: ArrayRef = Arc::new(arrow_array::StringArray::from(vec![v.as_str()]));
            column_hashes(&a, None)[0]
        })
        .collect();
    let extra = hashes
        .iter()
        .enumerate()
        .fold(0u64, |h, (j, c)| h.wrapping_add(column_term(own + j, *c)));
    let n = batch.num_rows();
    let mut columns = batch.columns().to_vec();
    match pass {
        VerifyPass::Copy { .. } => {
            for v in constants {
                columns.push(Arc::new(arrow_array::StringArray::from_iter_values(
                    std::iter::repeat_n(v.as_str(), n),
                )));
            }
            return RecordBatch::try_new(schema.clone(), columns).map_err(shape);
        }
        VerifyPass::Buckets => {
            expect_schema(batch, pass)?;
            let rows = batch.column(1).as_primitive::<UInt64Type>();
            let sums = batch.column(2).as_primitive::<UInt64Type>();
            let sums: arrow_array::UInt64Array = rows
                .iter()
                .zip(sums.iter())
                .map(|(r, s)| Some(s?.wrapping_add(r?.wrapping_mul(extra))))
                .collect();
            columns[2] = Arc::new(sums);
        }
        VerifyPass::Rows { .. } => {
            expect_schema(batch, pass)?;
            let rh = batch.column(2).as_primitive::<UInt64Type>();
            let rh: arrow_array::UInt64Array =
                rh.iter().map(|h| Some(h?.wrapping_add(extra))).collect();
            let cols = batch.column(3).as_binary::<i32>();
            let mut b = BinaryBuilder::new();
            for i in 0..n {
                let mut v = cols.value(i).to_vec();
                for h in &hashes {
                    v.extend_from_slice(&h.to_le_bytes());
                }
                b.append_value(&v);
            }
            columns[2] = Arc::new(rh);
            columns[3] = Arc::new(b.finish());
        }
        VerifyPass::Values { .. } => {
            expect_schema(batch, pass)?;
            let values = batch.column(2).as_string::<i32>();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let mut v: Vec<Option<String>> = serde_json::from_str(values.value(i))
                    .map_err(|e| FingerprintError::Shape(format!("a row's values: {e}")))?;
                v.extend(constants.iter().cloned().map(Some));
                out.push(serde_json::to_string(&v).unwrap_or_default());
            }
            columns[2] = Arc::new(arrow_array::StringArray::from(out));
        }
    }
    RecordBatch::try_new(batch.schema(), columns).map_err(shape)
}

/// Hashes one split's batches for an ask.
pub struct Digester {
    read: SchemaRef,
    buckets: u32,
    key: Vec<usize>,
    text: Vec<Option<TextKind>>,
    /// Under the PostgreSQL scheme: each column's hash kind.
    postgres: Option<Vec<PgHash>>,
    state: State,
}

enum State {
    /// Rows and hash sum per bucket.
    Buckets(Vec<(u64, u64)>),
    Rows {
        wanted: HashSet<u32>,
        out: RowsOut,
    },
    Values {
        wanted: HashSet<u64>,
        out: ValuesOut,
    },
    Copy {
        wanted: HashSet<u64>,
    },
}

#[derive(Default)]
struct RowsOut {
    key_hash: Vec<u64>,
    key: Vec<String>,
    row_hash: Vec<u64>,
    columns: Vec<Vec<u8>>,
}

#[derive(Default)]
struct ValuesOut {
    key_hash: Vec<u64>,
    key: Vec<String>,
    values: Vec<String>,
}

impl Digester {
    /// A digester for batches of `schema`. Fails when the ask is out of bounds or names a
    /// column the read does not have.
    pub fn new(schema: &SchemaRef, ask: &VerifyAsk) -> Result<Self, FingerprintError> {
        ask.check().map_err(FingerprintError::Ask)?;
        let index = |name: &str| {
            schema
                .index_of(name)
                .map_err(|_| FingerprintError::NoColumn(name.to_string()))
        };
        let key = ask
            .key
            .iter()
            .map(|k| index(k))
            .collect::<Result<Vec<_>, _>>()?;
        let mut asked = vec![None; schema.fields().len()];
        for t in &ask.text_as {
            asked[index(&t.column)?] = Some(t.kind);
        }
        let text: Vec<_> = schema
            .fields()
            .iter()
            .zip(asked)
            .map(|(f, a)| text_kind(f, a))
            .collect();
        let postgres = match &ask.scheme {
            Scheme::Canonical => None,
            Scheme::Postgres(kinds) if kinds.len() == text.len() => Some(kinds.clone()),
            Scheme::Postgres(kinds) => {
                return Err(FingerprintError::Ask(format!(
                    "{} hash kinds for a read of {} columns",
                    kinds.len(),
                    text.len()
                )))
            }
        };
        let state = match &ask.pass {
            VerifyPass::Buckets => State::Buckets(vec![(0, 0); ask.buckets as usize]),
            VerifyPass::Rows { buckets } => State::Rows {
                wanted: buckets.iter().copied().collect(),
                out: RowsOut::default(),
            },
            VerifyPass::Values { keys } => State::Values {
                wanted: keys.iter().copied().collect(),
                out: ValuesOut::default(),
            },
            VerifyPass::Copy { keys } => State::Copy {
                wanted: keys.iter().copied().collect(),
            },
        };
        Ok(Self {
            read: schema.clone(),
            buckets: ask.buckets,
            key,
            text,
            postgres,
            state,
        })
    }

    /// Takes one batch; returns a result batch when enough results are pending.
    pub fn feed(&mut self, batch: &RecordBatch) -> Result<Option<RecordBatch>, FingerprintError> {
        if batch.num_columns() != self.text.len() {
            return Err(FingerprintError::Shape(format!(
                "a batch of {} columns where {} were read",
                batch.num_columns(),
                self.text.len()
            )));
        }
        let n = batch.num_rows();
        let (cols, row_hashes, key_hashes) = match &self.postgres {
            None => self.canonical(batch),
            Some(kinds) => postgres(batch, kinds, &self.key),
        };
        let mut picked = Vec::new();
        let buckets = u64::from(self.buckets);
        debug_assert_eq!(row_hashes.len(), n);
        for (r, &row_hash) in row_hashes.iter().enumerate() {
            let key_hash = match &key_hashes {
                None => row_hash,
                Some(k) => k[r],
            };
            let bucket = (key_hash % buckets) as u32;
            match &mut self.state {
                State::Buckets(sums) => {
                    let s = &mut sums[bucket as usize];
                    s.0 += 1;
                    s.1 = s.1.wrapping_add(row_hash);
                }
                State::Rows { wanted, out } => {
                    if wanted.contains(&bucket) {
                        out.key_hash.push(key_hash);
                        out.row_hash.push(row_hash);
                        // Each column's hash, for naming the columns that differ.
                        out.columns
                            .push(cols.iter().flat_map(|c| c[r].to_le_bytes()).collect());
                        picked.push(r);
                    }
                }
                State::Values { wanted, out } => {
                    if wanted.contains(&key_hash) {
                        out.key_hash.push(key_hash);
                        picked.push(r);
                    }
                }
                State::Copy { wanted } => {
                    if wanted.contains(&key_hash) {
                        picked.push(r);
                    }
                }
            }
        }
        if let State::Copy { .. } = self.state {
            if picked.is_empty() {
                return Ok(None);
            }
            let idx = arrow_array::UInt32Array::from_iter_values(picked.iter().map(|r| *r as u32));
            let columns = batch
                .columns()
                .iter()
                .map(|c| arrow_select::take::take(c.as_ref(), &idx, None))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| FingerprintError::Shape(e.to_string()))?;
            return RecordBatch::try_new(self.read.clone(), columns)
                .map(Some)
                .map_err(|e| FingerprintError::Shape(e.to_string()));
        }
        if !picked.is_empty() {
            let keys = render_keys(batch, &self.key, &picked)?;
            match &mut self.state {
                State::Rows { out, .. } => out.key.extend(keys),
                State::Values { out, .. } => {
                    out.key.extend(keys);
                    out.values.extend(render_rows(batch, &picked)?);
                }
                State::Buckets(_) | State::Copy { .. } => {}
            }
        }
        let pending = match &self.state {
            State::Buckets(_) | State::Copy { .. } => 0,
            State::Rows { out, .. } => out.key_hash.len(),
            State::Values { out, .. } => out.key_hash.len(),
        };
        if pending >= RESULT_BATCH_ROWS {
            return self.flush().map(Some);
        }
        Ok(None)
    }

    /// Column, row and key hashes of the canonical scheme (no key hashes: a row is its key).
    #[allow(clippy::type_complexity)]
    fn canonical(&self, batch: &RecordBatch) -> (Vec<Vec<u64>>, Vec<u64>, Option<Vec<u64>>) {
        let cols: Vec<Vec<u64>> = batch
            .columns()
            .iter()
            .zip(&self.text)
            .map(|(c, t)| column_hashes(c, *t))
            .collect();
        let n = batch.num_rows();
        // Column by column: each column's hashes are read in order, once.
        let mut row_hashes = vec![0u64; n];
        for (i, c) in cols.iter().enumerate() {
            for (h, v) in row_hashes.iter_mut().zip(c) {
                *h = h.wrapping_add(column_term(i, *v));
            }
        }
        if self.key.is_empty() {
            return (cols, row_hashes, None);
        }
        let mut key_buf = Vec::with_capacity(self.key.len() * 8);
        let keys = (0..n)
            .map(|r| {
                key_buf.clear();
                for k in &self.key {
                    key_buf.extend_from_slice(&cols[*k][r].to_le_bytes());
                }
                XxHash3_64::oneshot_with_seed(KEY_SEED, &key_buf)
            })
            .collect();
        (cols, row_hashes, Some(keys))
    }

    /// The last result batch (the whole result of the buckets pass), if any is pending.
    pub fn finish(mut self) -> Result<Option<RecordBatch>, FingerprintError> {
        let pending = match &self.state {
            State::Buckets(_) => true,
            State::Copy { .. } => false,
            State::Rows { out, .. } => !out.key_hash.is_empty(),
            State::Values { out, .. } => !out.key_hash.is_empty(),
        };
        pending.then(|| self.flush()).transpose()
    }

    fn flush(&mut self) -> Result<RecordBatch, FingerprintError> {
        let (schema, columns): (_, Vec<ArrayRef>) = match &mut self.state {
            State::Buckets(sums) => {
                let (mut b, mut r, mut s) = (
                    UInt32Builder::new(),
                    UInt64Builder::new(),
                    UInt64Builder::new(),
                );
                for (i, (rows, sum)) in sums.iter().enumerate() {
                    if *rows > 0 {
                        b.append_value(i as u32);
                        r.append_value(*rows);
                        s.append_value(*sum);
                    }
                }
                (
                    result_schema(&VerifyPass::Buckets, &self.read),
                    vec![
                        Arc::new(b.finish()),
                        Arc::new(r.finish()),
                        Arc::new(s.finish()),
                    ],
                )
            }
            State::Rows { out, .. } => {
                let o = std::mem::take(out);
                let mut cols = BinaryBuilder::new();
                for c in &o.columns {
                    cols.append_value(c);
                }
                (
                    result_schema(&VerifyPass::Rows { buckets: vec![] }, &self.read),
                    vec![
                        Arc::new(arrow_array::UInt64Array::from(o.key_hash)),
                        Arc::new(arrow_array::StringArray::from(o.key)),
                        Arc::new(arrow_array::UInt64Array::from(o.row_hash)),
                        Arc::new(cols.finish()),
                    ],
                )
            }
            State::Copy { .. } => {
                return Err(FingerprintError::Shape(
                    "the copy pass has no result of its own".into(),
                ))
            }
            State::Values { out, .. } => {
                let o = std::mem::take(out);
                (
                    result_schema(&VerifyPass::Values { keys: vec![] }, &self.read),
                    vec![
                        Arc::new(arrow_array::UInt64Array::from(o.key_hash)),
                        Arc::new(arrow_array::StringArray::from(o.key)),
                        Arc::new(arrow_array::StringArray::from(o.values)),
                    ],
                )
            }
        };
        RecordBatch::try_new(schema, columns).map_err(|e| FingerprintError::Shape(e.to_string()))
    }
}

/// Column, row and key hashes of the PostgreSQL scheme (see [`PgHash`]).
#[allow(clippy::type_complexity)]
fn postgres(
    batch: &RecordBatch,
    kinds: &[PgHash],
    key: &[usize],
) -> (Vec<Vec<u64>>, Vec<u64>, Option<Vec<u64>>) {
    let n = batch.num_rows();
    let cols: Vec<Vec<u64>> = batch
        .columns()
        .iter()
        .zip(kinds)
        .enumerate()
        .map(|(i, (c, k))| {
            let mut out = Vec::with_capacity(n);
            crate::pgscheme::column_hashes(c, *k, PgHash::column_seed(i), &mut out);
            out
        })
        .collect();
    let mut row_hashes = vec![0u64; n];
    for c in &cols {
        for (h, v) in row_hashes.iter_mut().zip(c) {
            *h ^= *v;
        }
    }
    if key.is_empty() {
        return (cols, row_hashes, None);
    }
    let mut keys = vec![0u64; n];
    let mut hashes = Vec::with_capacity(n);
    for (j, k) in key.iter().enumerate() {
        hashes.clear();
        crate::pgscheme::column_hashes(
            batch.column(*k),
            kinds[*k],
            PgHash::key_seed(j),
            &mut hashes,
        );
        for (h, v) in keys.iter_mut().zip(&hashes) {
            *h ^= *v;
        }
    }
    (cols, row_hashes, Some(keys))
}

/// The columns `cols` as they can be displayed: a timestamp's zone name (`UTC`) becomes its
/// offset, which arrow can show without a time-zone database; the instant stays.
fn displayable(batch: &RecordBatch, cols: &[usize]) -> Result<Vec<ArrayRef>, FingerprintError> {
    cols.iter()
        .map(|c| {
            let a = batch.column(*c);
            match a.data_type() {
                DataType::Timestamp(unit, Some(_)) => {
                    let t = DataType::Timestamp(*unit, Some("+00:00".into()));
                    let data = a
                        .to_data()
                        .into_builder()
                        .data_type(t)
                        .build()
                        .map_err(|e| FingerprintError::Shape(e.to_string()))?;
                    Ok(arrow_array::make_array(data))
                }
                _ => Ok(a.clone()),
            }
        })
        .collect()
}

fn formatters<'a>(
    arrays: &'a [ArrayRef],
    options: &'a FormatOptions<'a>,
) -> Result<Vec<ArrayFormatter<'a>>, FingerprintError> {
    arrays
        .iter()
        .map(|a| {
            ArrayFormatter::try_new(a.as_ref(), options)
                .map_err(|e| FingerprintError::Shape(e.to_string()))
        })
        .collect()
}

/// Each row's key values as a JSON array of text (NULL as null).
fn render_keys(
    batch: &RecordBatch,
    key: &[usize],
    rows: &[usize],
) -> Result<Vec<String>, FingerprintError> {
    render(batch, key, rows)
}

/// Each row's values as a JSON array of text (NULL as null).
fn render_rows(batch: &RecordBatch, rows: &[usize]) -> Result<Vec<String>, FingerprintError> {
    let all: Vec<usize> = (0..batch.num_columns()).collect();
    render(batch, &all, rows)
}

/// Columns `cols` of each row of `rows` as a JSON array of text (NULL as null).
fn render(
    batch: &RecordBatch,
    cols: &[usize],
    rows: &[usize],
) -> Result<Vec<String>, FingerprintError> {
    let options = FormatOptions::default();
    let all = cols;
    let arrays = displayable(batch, all)?;
    let f = formatters(&arrays, &options)?;
    Ok(rows
        .iter()
        .map(|r| {
            let v: Vec<serde_json::Value> = all
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    if batch.column(*c).is_null(*r) {
                        serde_json::Value::Null
                    } else {
                        serde_json::Value::String(f[i].value(*r).to_string())
                    }
                })
                .collect();
            serde_json::Value::Array(v).to_string()
        })
        .collect())
}

/// Rows and hash sum per bucket, summed over splits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketTotals {
    pub rows: u64,
    pub sums: Vec<(u64, u64)>,
}

impl BucketTotals {
    pub fn new(buckets: u32) -> Self {
        Self {
            rows: 0,
            sums: vec![(0, 0); buckets as usize],
        }
    }

    /// Adds a buckets-pass result batch (checked: it came from the network).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), FingerprintError> {
        expect_schema(batch, &VerifyPass::Buckets)?;
        let b = batch.column(0).as_primitive::<UInt32Type>();
        let r = batch.column(1).as_primitive::<UInt64Type>();
        let s = batch.column(2).as_primitive::<UInt64Type>();
        for i in 0..batch.num_rows() {
            let bucket = b.value(i) as usize;
            let slot = self.sums.get_mut(bucket).ok_or_else(|| {
                FingerprintError::Shape(format!("bucket {bucket} is out of range"))
            })?;
            slot.0 = slot.0.wrapping_add(r.value(i));
            slot.1 = slot.1.wrapping_add(s.value(i));
            self.rows = self.rows.wrapping_add(r.value(i));
        }
        Ok(())
    }

    /// The buckets whose rows or sums differ from `other`'s.
    pub fn differing(&self, other: &BucketTotals) -> Vec<u32> {
        self.sums
            .iter()
            .zip(&other.sums)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, _)| i as u32)
            .collect()
    }
}

fn expect_schema(batch: &RecordBatch, pass: &VerifyPass) -> Result<(), FingerprintError> {
    let want = result_schema(pass, &batch.schema());
    let got = batch.schema();
    let same = want.fields().len() == got.fields().len()
        && want
            .fields()
            .iter()
            .zip(got.fields())
            .all(|(w, g)| w.data_type() == g.data_type());
    if same {
        Ok(())
    } else {
        Err(FingerprintError::Shape(format!(
            "a result batch of columns {:?}",
            got.fields()
                .iter()
                .map(|f| f.data_type().to_string())
                .collect::<Vec<_>>()
        )))
    }
}

/// One row of the rows pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowDigest {
    pub key_hash: u64,
    /// The key as text, for the report: `42`, or `(7, x)` for a composite key.
    pub key: String,
    /// Each key column's value as text (NULL: `None`), as the side that sent it reads it.
    pub key_values: Vec<Option<String>>,
    pub row_hash: u64,
    /// Each column's hash, in read order.
    pub columns: Vec<u64>,
}

/// The rows of a rows-pass result batch of a read of `columns` columns.
pub fn read_rows(batch: &RecordBatch, columns: usize) -> Result<Vec<RowDigest>, FingerprintError> {
    expect_schema(batch, &VerifyPass::Rows { buckets: vec![] })?;
    let kh = batch.column(0).as_primitive::<UInt64Type>();
    let key = batch.column(1).as_string::<i32>();
    let rh = batch.column(2).as_primitive::<UInt64Type>();
    let cols = batch.column(3).as_binary::<i32>();
    (0..batch.num_rows())
        .map(|i| {
            let c = cols.value(i);
            if c.len() != columns * 8 {
                return Err(FingerprintError::Shape(format!(
                    "a row digest of {} bytes for {columns} columns",
                    c.len()
                )));
            }
            let key_values = key_values(key.value(i))?;
            Ok(RowDigest {
                key_hash: kh.value(i),
                key: key_text(&key_values),
                key_values,
                row_hash: rh.value(i),
                columns: c
                    .chunks_exact(8)
                    .map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
                    .collect(),
            })
        })
        .collect()
}

/// One row of the values pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowValues {
    pub key_hash: u64,
    pub key: String,
    /// Each column's value as text (NULL: `None`), in read order.
    pub values: Vec<Option<String>>,
}

/// The rows of a values-pass result batch of a read of `columns` columns.
pub fn read_values(
    batch: &RecordBatch,
    columns: usize,
) -> Result<Vec<RowValues>, FingerprintError> {
    expect_schema(batch, &VerifyPass::Values { keys: vec![] })?;
    let kh = batch.column(0).as_primitive::<UInt64Type>();
    let key = batch.column(1).as_string::<i32>();
    let values = batch.column(2).as_string::<i32>();
    (0..batch.num_rows())
        .map(|i| {
            let v: Vec<Option<String>> =
                serde_json::from_str::<Vec<Option<String>>>(values.value(i))
                    .map_err(|e| FingerprintError::Shape(format!("a row's values: {e}")))?;
            if v.len() != columns {
                return Err(FingerprintError::Shape(format!(
                    "{} values for {columns} columns",
                    v.len()
                )));
            }
            Ok(RowValues {
                key_hash: kh.value(i),
                key: key_text(&key_values(key.value(i))?),
                values: v.into_iter().map(|v| v.map(|s| bounded(&s))).collect(),
            })
        })
        .collect()
}

/// A key's values from a result's JSON array (bounded: it came from the network).
fn key_values(json: &str) -> Result<Vec<Option<String>>, FingerprintError> {
    let v: Vec<Option<String>> = serde_json::from_str(json)
        .map_err(|e| FingerprintError::Shape(format!("a row's key: {e}")))?;
    if v.len() > ferry_model::MAX_KEY_COLUMNS {
        return Err(FingerprintError::Shape(format!(
            "a key of {} columns",
            v.len()
        )));
    }
    Ok(v)
}

/// A key for a report: `42`, `(7, x)`, empty for a table without a key.
fn key_text(values: &[Option<String>]) -> String {
    let one = |v: &Option<String>| bounded(v.as_deref().unwrap_or("NULL"));
    match values {
        [] => String::new(),
        [v] => one(v),
        vs => format!("({})", vs.iter().map(one).collect::<Vec<_>>().join(", ")),
    }
}

/// Text from the other side, cut to what a report line can show.
fn bounded(s: &str) -> String {
    const MAX: usize = 1024;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};

    fn batch(ids: Vec<i64>, names: Vec<Option<&str>>) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
        ])
        .unwrap()
    }

    fn ask(pass: VerifyPass) -> VerifyAsk {
        VerifyAsk {
            key: vec!["id".into()],
            buckets: 8,
            text_as: vec![],
            scheme: ferry_model::Scheme::Canonical,
            pass,
        }
    }

    fn totals(batches: &[RecordBatch]) -> BucketTotals {
        let mut t = BucketTotals::new(8);
        for b in batches {
            let mut d = Digester::new(&b.schema(), &ask(VerifyPass::Buckets)).unwrap();
            assert!(d.feed(b).unwrap().is_none());
            t.add(&d.finish().unwrap().unwrap()).unwrap();
        }
        t
    }

    /// See `canon::pinned`: an agent and a broker of different releases must agree.
    #[test]
    fn bucket_sums_do_not_change_between_releases() {
        let t = totals(&[batch(
            vec![1, 2, 3, 4, -5],
            vec![Some("a"), None, Some(""), Some("d"), Some("ü")],
        )]);
        assert_eq!(t.rows, 5);
        assert_eq!(
            t.sums,
            [
                (2, 13399828856142484644),
                (1, 12734083376070807606),
                (0, 0),
                (0, 0),
                (0, 0),
                (2, 9477062624327115561),
                (0, 0),
                (0, 0)
            ]
        );
    }

    #[test]
    fn splits_and_order_do_not_matter_and_a_change_shows() {
        let whole = totals(&[batch(
            vec![1, 2, 3, 4],
            vec![Some("a"), None, Some(""), Some("d")],
        )]);
        let split = totals(&[
            batch(vec![4, 2], vec![Some("d"), None]),
            batch(vec![3, 1], vec![Some(""), Some("a")]),
        ]);
        assert_eq!(whole, split);
        assert_eq!(whole.rows, 4);
        let changed = totals(&[batch(
            vec![1, 2, 3, 4],
            vec![Some("a"), Some(""), Some(""), Some("d")],
        )]);
        let diff = whole.differing(&changed);
        assert_eq!(diff.len(), 1);

        // The rows pass of that bucket names key 2 and its column.
        let rows = |b: &RecordBatch| {
            let mut d = Digester::new(
                &b.schema(),
                &ask(VerifyPass::Rows {
                    buckets: diff.clone(),
                }),
            )
            .unwrap();
            assert!(d.feed(b).unwrap().is_none());
            read_rows(&d.finish().unwrap().unwrap(), 2).unwrap()
        };
        let a = rows(&batch(
            vec![1, 2, 3, 4],
            vec![Some("a"), None, Some(""), Some("d")],
        ));
        let b = rows(&batch(
            vec![1, 2, 3, 4],
            vec![Some("a"), Some(""), Some(""), Some("d")],
        ));
        let a2 = a.iter().find(|r| r.key == "2").unwrap();
        let b2 = b.iter().find(|r| r.key == "2").unwrap();
        assert_eq!(a2.key_hash, b2.key_hash);
        assert_eq!(a2.columns[0], b2.columns[0]);
        assert_ne!(a2.columns[1], b2.columns[1]);
    }

    #[test]
    fn values_pass_renders_the_asked_rows() {
        let b = batch(vec![1, 2], vec![Some("a"), None]);
        let mut d = Digester::new(
            &b.schema(),
            &ask(VerifyPass::Rows {
                buckets: (0..8).collect(),
            }),
        )
        .unwrap();
        d.feed(&b).unwrap();
        let rows = read_rows(&d.finish().unwrap().unwrap(), 2).unwrap();
        let k2 = rows.iter().find(|r| r.key == "2").unwrap().key_hash;
        let mut d =
            Digester::new(&b.schema(), &ask(VerifyPass::Values { keys: vec![k2] })).unwrap();
        d.feed(&b).unwrap();
        let v = read_values(&d.finish().unwrap().unwrap(), 2).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].values, vec![Some("2".to_string()), None]);
    }

    #[test]
    fn appended_constant_columns_adjust_an_agents_results() {
        let b = batch(vec![1, 2, 3], vec![Some("a"), None, Some("c")]);
        let mut tagged = b.columns().to_vec();
        tagged.push(Arc::new(StringArray::from(vec!["east"; 3])) as ArrayRef);
        let mut fields: Vec<Field> = b
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new("shard", DataType::Utf8, false));
        let tschema = Arc::new(Schema::new(fields));
        let tagged = RecordBatch::try_new(tschema.clone(), tagged).unwrap();
        let all: Vec<u32> = (0..8).collect();
        for pass in [
            VerifyPass::Buckets,
            VerifyPass::Rows {
                buckets: all.clone(),
            },
            VerifyPass::Copy { keys: vec![] },
        ] {
            let run = |batch: &RecordBatch, pass: &VerifyPass| {
                let mut d = Digester::new(&batch.schema(), &ask(pass.clone())).unwrap();
                let mut out: Vec<RecordBatch> = d.feed(batch).unwrap().into_iter().collect();
                out.extend(d.finish().unwrap());
                out
            };
            let pass = match pass {
                // The copy pass of every key of the batch.
                VerifyPass::Copy { .. } => {
                    let r = run(
                        &b,
                        &VerifyPass::Rows {
                            buckets: all.clone(),
                        },
                    );
                    VerifyPass::Copy {
                        keys: read_rows(&r[0], 2)
                            .unwrap()
                            .iter()
                            .map(|r| r.key_hash)
                            .collect(),
                    }
                }
                p => p,
            };
            let plain = run(&b, &pass);
            let want = run(&tagged, &pass);
            let got: Vec<RecordBatch> = plain
                .iter()
                .map(|r| append_constants(r, &pass, 2, &["east".to_string()], &tschema).unwrap())
                .collect();
            assert_eq!(got, want, "{pass:?}");
        }
    }

    #[test]
    fn a_bad_ask_or_result_is_refused() {
        let b = batch(vec![1], vec![Some("a")]);
        let mut a = ask(VerifyPass::Buckets);
        a.key = vec!["nope".into()];
        assert!(matches!(
            Digester::new(&b.schema(), &a),
            Err(FingerprintError::NoColumn(_))
        ));
        let mut t = BucketTotals::new(4);
        let bad = RecordBatch::try_from_iter(vec![
            (
                "bucket",
                Arc::new(arrow_array::UInt32Array::from(vec![9])) as ArrayRef,
            ),
            (
                "rows",
                Arc::new(arrow_array::UInt64Array::from(vec![1])) as ArrayRef,
            ),
            (
                "sum",
                Arc::new(arrow_array::UInt64Array::from(vec![1])) as ArrayRef,
            ),
        ])
        .unwrap();
        assert!(t.add(&bad).is_err());
        assert!(t.add(&b).is_err());
    }
}
