//! Change batches: how a change stream's rows travel, in the same Arrow form as a snapshot
//! read of the table, so one set of type mappings serves both.
//!
//! A change batch holds the table's read columns (all nullable: a delete carries only the
//! key), then:
//! * [`OP`]: the operation ([`Op`]);
//! * [`UNCHANGED`]: which columns an update left as they were and did not send (PostgreSQL's
//!   unchanged TOAST values), a bitmap over the read columns; NULL when every column is
//!   sent. An applier must not write those columns: they are not NULL, only unknown here;
//! * one [`OLD_PREFIX`]`<key column>` per key column: the old key of an update that changed
//!   the key (NULL otherwise), so the applier finds the row to move.
//!
//! Transaction boundaries and source positions are not rows: they travel beside the
//! batches. A source builds batches with [`Layout::assemble`]; an applier checks what
//! arrived with [`Layout::rows`] before reading it, since it came from the network.

#![forbid(unsafe_code)]

use std::sync::Arc;

use arrow_array::builder::BinaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::UInt8Type;
use arrow_array::{Array, ArrayRef, BinaryArray, RecordBatch, UInt8Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// The operation column.
pub const OP: &str = "__ferry_op";
/// The columns-left-unchanged column.
pub const UNCHANGED: &str = "__ferry_unchanged";
/// The prefix of the old key's columns.
pub const OLD_PREFIX: &str = "__ferry_old.";

/// What happened to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Insert = b'I',
    Update = b'U',
    Delete = b'D',
}

impl Op {
    fn from_byte(b: u8) -> Option<Op> {
        Some(match b {
            b'I' => Op::Insert,
            b'U' => Op::Update,
            b'D' => Op::Delete,
            _ => return None,
        })
    }
}

/// Why a change batch or layout is not well formed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChangeError {
    /// A key column the read does not have.
    #[error("key column {0} is not one of the read's columns")]
    NoKeyColumn(usize),
    /// A read column whose name is reserved for change batches.
    #[error("column `{0}` uses a name reserved for change batches")]
    Reserved(String),
    /// The batch's columns are not the layout's.
    #[error("a change batch's columns are not the table's: {0}")]
    Shape(String),
    /// An operation byte that names no operation.
    #[error("row {row}: unknown operation {op:#04x}")]
    BadOp { row: usize, op: u8 },
    /// An unchanged-columns bitmap of the wrong length, or on a row that is not an update.
    #[error("row {row}: {what}")]
    BadUnchanged { row: usize, what: &'static str },
}

/// The change-batch layout of one table's read.
#[derive(Debug, Clone)]
pub struct Layout {
    columns: usize,
    key: Vec<usize>,
    schema: SchemaRef,
}

impl Layout {
    /// The layout for reads of `read` whose key is the columns at `key`.
    pub fn new(read: &Schema, key: Vec<usize>) -> Result<Self, ChangeError> {
        if let Some(k) = key.iter().find(|k| **k >= read.fields().len()) {
            return Err(ChangeError::NoKeyColumn(*k));
        }
        if let Some(f) = read
            .fields()
            .iter()
            .find(|f| f.name().starts_with("__ferry_"))
        {
            return Err(ChangeError::Reserved(f.name().clone()));
        }
        let mut fields: Vec<Field> = read
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(OP, DataType::UInt8, false));
        fields.push(Field::new(UNCHANGED, DataType::Binary, true));
        for k in &key {
            let f = read.field(*k);
            fields.push(
                f.clone()
                    .with_name(format!("{OLD_PREFIX}{}", f.name()))
                    .with_nullable(true),
            );
        }
        Ok(Self {
            columns: read.fields().len(),
            key,
            schema: Arc::new(Schema::new_with_metadata(fields, read.metadata().clone())),
        })
    }

    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The number of read columns (before the change columns).
    pub fn columns(&self) -> usize {
        self.columns
    }

    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// The read's own columns (without the change columns), as a schema.
    pub fn read_schema(&self) -> SchemaRef {
        Arc::new(Schema::new_with_metadata(
            self.schema.fields()[..self.columns].to_vec(),
            self.schema.metadata().clone(),
        ))
    }

    /// A batch of `data` (the read's columns), `meta` (one entry per row) and `old_key` (the
    /// key columns' old values, NULL where the key did not change).
    pub fn assemble(
        &self,
        data: Vec<ArrayRef>,
        meta: Meta,
        old_key: Vec<ArrayRef>,
    ) -> Result<RecordBatch, ChangeError> {
        let mut columns = data;
        let mut meta = meta;
        columns.push(Arc::new(UInt8Array::from(std::mem::take(&mut meta.ops))));
        columns.push(Arc::new(meta.unchanged.finish()));
        columns.extend(old_key);
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| ChangeError::Shape(e.to_string()))
    }

    /// A batch that came from elsewhere, checked, for reading.
    pub fn rows<'a>(&'a self, batch: &'a RecordBatch) -> Result<Rows<'a>, ChangeError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(ChangeError::Shape(format!(
                "{} columns where {} were expected, or other types",
                batch.num_columns(),
                self.schema.fields().len()
            )));
        }
        let ops = batch.column(self.columns).as_primitive::<UInt8Type>();
        let unchanged = batch.column(self.columns + 1).as_binary::<i32>();
        let width = self.columns.div_ceil(8);
        for row in 0..batch.num_rows() {
            let op = ops.value(row);
            let op = Op::from_byte(op).ok_or(ChangeError::BadOp { row, op })?;
            if unchanged.is_valid(row) {
                if op != Op::Update {
                    return Err(ChangeError::BadUnchanged {
                        row,
                        what: "only an update leaves columns unchanged",
                    });
                }
                if unchanged.value(row).len() != width {
                    return Err(ChangeError::BadUnchanged {
                        row,
                        what: "the unchanged-columns bitmap is not one bit per column",
                    });
                }
            }
        }
        Ok(Rows {
            layout: self,
            batch,
            ops,
            unchanged,
        })
    }
}

/// The change columns of the rows being built: one [`Meta::push`] per row.
#[derive(Debug)]
pub struct Meta {
    columns: usize,
    ops: Vec<u8>,
    unchanged: BinaryBuilder,
}

impl Meta {
    pub fn new(layout: &Layout) -> Self {
        Self {
            columns: layout.columns,
            ops: Vec::new(),
            unchanged: BinaryBuilder::new(),
        }
    }

    /// One row: its operation, and the read columns it leaves as they were (an update's).
    pub fn push(&mut self, op: Op, unchanged: &[usize]) {
        self.ops.push(op as u8);
        let mut bits = vec![0u8; self.columns.div_ceil(8)];
        let mut any = false;
        for c in unchanged.iter().filter(|c| **c < self.columns) {
            bits[c / 8] |= 1 << (c % 8);
            any = true;
        }
        if any {
            self.unchanged.append_value(&bits);
        } else {
            self.unchanged.append_null();
        }
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// A checked change batch.
#[derive(Debug)]
pub struct Rows<'a> {
    layout: &'a Layout,
    batch: &'a RecordBatch,
    ops: &'a UInt8Array,
    unchanged: &'a BinaryArray,
}

impl Rows<'_> {
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    pub fn op(&self, row: usize) -> Op {
        Op::from_byte(self.ops.value(row)).unwrap_or(Op::Insert)
    }

    /// Whether `row` left read column `col` as it was (not sent: do not write it).
    pub fn unchanged(&self, row: usize, col: usize) -> bool {
        self.unchanged.is_valid(row)
            && self
                .unchanged
                .value(row)
                .get(col / 8)
                .is_some_and(|b| b & (1 << (col % 8)) != 0)
    }

    /// Whether `row` is an update that moved the row to another key.
    pub fn key_changed(&self, row: usize) -> bool {
        self.op(row) == Op::Update
            && (0..self.layout.key.len()).any(|i| self.old_key(i).is_valid(row))
    }

    /// The old values of key column `i` (of [`Layout::key`]).
    pub fn old_key(&self, i: usize) -> &ArrayRef {
        self.batch.column(self.layout.columns + 2 + i)
    }

    /// Read column `col`.
    pub fn column(&self, col: usize) -> &ArrayRef {
        self.batch.column(col)
    }
}

/// The net effect of consecutive change batches of one table applied in one transaction
/// (intermediate states are never seen): for each key, only its last change counts. A key
/// change deletes the old key and writes the row at the new one.
#[derive(Debug)]
pub struct Net {
    /// The batches, concatenated; the indexes below are its rows.
    pub batch: RecordBatch,
    /// Rows to write whole, at their key (each key once).
    pub upserts: Vec<usize>,
    /// Rows whose key (in the read columns) is deleted.
    pub deletes: Vec<usize>,
    /// Rows whose old key (a key change's) is deleted.
    pub deletes_old: Vec<usize>,
}

/// What a key's last change was.
#[derive(Clone, Copy)]
enum Last {
    Upsert(usize),
    Delete(usize),
    DeleteOld(usize),
}

impl Layout {
    /// The net effect of `batches` (see [`Net`]), or `None` when it depends on the order
    /// of the rows: an update that left columns unchanged keeps values only the row before
    /// it holds.
    pub fn net(&self, batches: &[RecordBatch]) -> Result<Option<Net>, ChangeError> {
        let shape = |e: arrow_schema::ArrowError| ChangeError::Shape(e.to_string());
        let batch = arrow_select::concat::concat_batches(&self.schema, batches).map_err(shape)?;
        let rows = self.rows(&batch)?;
        if rows.unchanged.null_count() != rows.len() {
            return Ok(None);
        }
        let fields = self
            .key
            .iter()
            .map(|&k| arrow_row::SortField::new(self.schema.field(k).data_type().clone()))
            .collect();
        let converter = arrow_row::RowConverter::new(fields).map_err(shape)?;
        let keys: Vec<ArrayRef> = self.key.iter().map(|&k| batch.column(k).clone()).collect();
        let old: Vec<ArrayRef> = (0..self.key.len())
            .map(|i| rows.old_key(i).clone())
            .collect();
        let new_keys = converter.convert_columns(&keys).map_err(shape)?;
        let old_keys = converter.convert_columns(&old).map_err(shape)?;
        let mut last: std::collections::HashMap<arrow_row::Row<'_>, Last> =
            std::collections::HashMap::with_capacity(rows.len());
        for r in 0..rows.len() {
            match rows.op(r) {
                Op::Delete => {
                    last.insert(new_keys.row(r), Last::Delete(r));
                }
                Op::Insert | Op::Update => {
                    if rows.key_changed(r) {
                        last.insert(old_keys.row(r), Last::DeleteOld(r));
                    }
                    last.insert(new_keys.row(r), Last::Upsert(r));
                }
            }
        }
        let (mut upserts, mut deletes, mut deletes_old) = (Vec::new(), Vec::new(), Vec::new());
        for l in last.into_values() {
            match l {
                Last::Upsert(r) => upserts.push(r),
                Last::Delete(r) => deletes.push(r),
                Last::DeleteOld(r) => deletes_old.push(r),
            }
        }
        upserts.sort_unstable();
        deletes.sort_unstable();
        deletes_old.sort_unstable();
        Ok(Some(Net {
            batch,
            upserts,
            deletes,
            deletes_old,
        }))
    }
}

/// A run of rows an applier writes with one statement, in the rows' order (see
/// [`Rows::steps`]).
#[derive(Debug, PartialEq)]
pub enum Step {
    /// Upserts of the rows, leaving `unchanged` columns as they are.
    Upsert {
        rows: Vec<usize>,
        unchanged: Vec<usize>,
    },
    /// Deletes of the rows' keys: their old key (`old`) or their key.
    Delete { rows: Vec<usize>, old: bool },
    /// An update that moved a row to another key without sending every value: the row at
    /// the old key is updated in place (its unsent values stay).
    Move { row: usize, unchanged: Vec<usize> },
}

impl Rows<'_> {
    /// The runs these rows are applied in, in order: consecutive inserts and updates that
    /// leave the same columns unchanged become one upsert, consecutive deletes one delete;
    /// an update that moved its row to another key deletes the old key first (or moves the
    /// row in place when it did not send every value).
    pub fn steps(&self) -> Vec<Step> {
        let rows = self;
        let columns = self.layout.columns;
        let mut out: Vec<Step> = Vec::new();
        for r in 0..rows.len() {
            let mut push = |step: Step| match (out.last_mut(), step) {
                (
                    Some(Step::Upsert { rows, unchanged }),
                    Step::Upsert {
                        rows: more,
                        unchanged: u,
                    },
                ) if *unchanged == u => rows.extend(more),
                (Some(Step::Delete { rows, old }), Step::Delete { rows: more, old: o })
                    if *old == o =>
                {
                    rows.extend(more)
                }
                (_, step) => out.push(step),
            };
            match rows.op(r) {
                Op::Insert => push(Step::Upsert {
                    rows: vec![r],
                    unchanged: Vec::new(),
                }),
                Op::Update => {
                    let unchanged: Vec<usize> =
                        (0..columns).filter(|c| rows.unchanged(r, *c)).collect();
                    if rows.key_changed(r) && !unchanged.is_empty() {
                        push(Step::Move { row: r, unchanged });
                        continue;
                    }
                    if rows.key_changed(r) {
                        push(Step::Delete {
                            rows: vec![r],
                            old: true,
                        });
                    }
                    push(Step::Upsert {
                        rows: vec![r],
                        unchanged,
                    })
                }
                Op::Delete => push(Step::Delete {
                    rows: vec![r],
                    old: false,
                }),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::{Int32Array, StringArray};

    fn read() -> Schema {
        Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("v", DataType::Utf8, true),
            Field::new("big", DataType::Utf8, true),
        ])
    }

    #[test]
    fn a_batch_round_trips_through_its_checks() {
        let layout = Layout::new(&read(), vec![0]).unwrap();
        let mut meta = Meta::new(&layout);
        meta.push(Op::Insert, &[]);
        meta.push(Op::Update, &[2]);
        meta.push(Op::Update, &[]);
        meta.push(Op::Delete, &[]);
        let batch = layout
            .assemble(
                vec![
                    Arc::new(Int32Array::from(vec![1, 1, 2, 2])),
                    Arc::new(StringArray::from(vec![
                        Some("a"),
                        Some("b"),
                        Some("b"),
                        None,
                    ])),
                    Arc::new(StringArray::from(vec![Some("x"), None, Some("x"), None])),
                ],
                meta,
                vec![Arc::new(Int32Array::from(vec![None, None, Some(1), None]))],
            )
            .unwrap();
        let rows = layout.rows(&batch).unwrap();
        assert_eq!(
            (0..4).map(|r| rows.op(r)).collect::<Vec<_>>(),
            [Op::Insert, Op::Update, Op::Update, Op::Delete]
        );
        assert!(rows.unchanged(1, 2) && !rows.unchanged(1, 1) && !rows.unchanged(2, 2));
        assert!(!rows.key_changed(1) && rows.key_changed(2));
        assert_eq!(batch.schema().field(4).name(), "__ferry_unchanged");
        assert_eq!(batch.schema().field(5).name(), "__ferry_old.id");
    }

    /// Rows of `(op, id, v, old id)` as a batch, in two halves (two batches).
    fn changes(layout: &Layout, rows: &[(Op, i32, &str, Option<i32>)]) -> Vec<RecordBatch> {
        rows.chunks(rows.len().div_ceil(2))
            .map(|part| {
                let mut meta = Meta::new(layout);
                for r in part {
                    meta.push(r.0, &[]);
                }
                layout
                    .assemble(
                        vec![
                            Arc::new(Int32Array::from_iter_values(part.iter().map(|r| r.1))),
                            Arc::new(StringArray::from_iter_values(part.iter().map(|r| r.2))),
                            Arc::new(StringArray::from(vec![Some("x"); part.len()])),
                        ],
                        meta,
                        vec![Arc::new(Int32Array::from_iter(part.iter().map(|r| r.3)))],
                    )
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn the_net_effect_keeps_each_keys_last_change() {
        let layout = Layout::new(&read(), vec![0]).unwrap();
        let batches = changes(
            &layout,
            &[
                (Op::Insert, 1, "a", None),
                (Op::Update, 1, "b", None),
                (Op::Delete, 2, "", None),
                (Op::Insert, 2, "again", None),
                (Op::Update, 5, "moved", Some(1)),
                (Op::Delete, 3, "", None),
                (Op::Insert, 4, "short-lived", None),
                (Op::Delete, 4, "", None),
            ],
        );
        let net = layout.net(&batches).unwrap().unwrap();
        let id = |r: &usize| net.batch.column(0).as_primitive::<Int32Type>().value(*r);
        let v = |r: &usize| net.batch.column(1).as_string::<i32>().value(*r).to_string();
        let ups: Vec<(i32, String)> = net.upserts.iter().map(|r| (id(r), v(r))).collect();
        assert_eq!(ups, [(2, "again".to_string()), (5, "moved".to_string())]);
        assert_eq!(net.deletes.iter().map(id).collect::<Vec<_>>(), [3, 4]);
        // The key change's old key (1) goes: its row moved.
        assert_eq!(net.deletes_old, [4]);
        // An update that left a column unsent depends on the row before it: no net.
        let mut meta = Meta::new(&layout);
        meta.push(Op::Update, &[2]);
        let partial = layout
            .assemble(
                vec![
                    Arc::new(Int32Array::from(vec![1])),
                    Arc::new(StringArray::from(vec!["a"])),
                    Arc::new(StringArray::from(vec![None::<&str>])),
                ],
                meta,
                vec![Arc::new(Int32Array::from(vec![None]))],
            )
            .unwrap();
        assert!(layout
            .net(&[batches[0].clone(), partial])
            .unwrap()
            .is_none());
    }

    #[test]
    fn malformed_batches_are_refused() {
        let layout = Layout::new(&read(), vec![0]).unwrap();
        let build = |op: u8, unchanged: Option<&[u8]>| {
            let mut u = BinaryBuilder::new();
            match unchanged {
                Some(b) => u.append_value(b),
                None => u.append_null(),
            }
            RecordBatch::try_new(
                layout.schema().clone(),
                vec![
                    Arc::new(Int32Array::from(vec![1])),
                    Arc::new(StringArray::from(vec![Some("a")])),
                    Arc::new(StringArray::from(vec![Some("x")])),
                    Arc::new(UInt8Array::from(vec![op])),
                    Arc::new(u.finish()),
                    Arc::new(Int32Array::from(vec![None])),
                ],
            )
            .unwrap()
        };
        assert!(layout.rows(&build(b'U', Some(&[4]))).is_ok());
        assert_eq!(
            layout.rows(&build(b'X', None)).unwrap_err(),
            ChangeError::BadOp { row: 0, op: b'X' }
        );
        assert!(matches!(
            layout.rows(&build(b'I', Some(&[4]))),
            Err(ChangeError::BadUnchanged { .. })
        ));
        assert!(matches!(
            layout.rows(&build(b'U', Some(&[4, 0]))),
            Err(ChangeError::BadUnchanged { .. })
        ));
        let other = RecordBatch::try_new(
            Arc::new(read()),
            vec![
                Arc::new(Int32Array::from(vec![1])),
                Arc::new(StringArray::from(vec![Some("a")])),
                Arc::new(StringArray::from(vec![Some("x")])),
            ],
        )
        .unwrap();
        assert!(matches!(layout.rows(&other), Err(ChangeError::Shape(_))));
        assert_eq!(
            Layout::new(&read(), vec![3]).unwrap_err(),
            ChangeError::NoKeyColumn(3)
        );
        let reserved = Schema::new(vec![Field::new("__ferry_op", DataType::Int32, false)]);
        assert!(matches!(
            Layout::new(&reserved, vec![]),
            Err(ChangeError::Reserved(_))
        ));
    }

    #[test]
    fn rows_become_runs_in_order() {
        let read = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("v", DataType::Utf8, true),
        ]);
        let layout = Layout::new(&read, vec![0]).unwrap();
        let mut meta = Meta::new(&layout);
        for (op, unchanged) in [
            (Op::Insert, vec![]),
            (Op::Update, vec![]),
            (Op::Update, vec![1]),
            (Op::Update, vec![]),
            (Op::Delete, vec![]),
            (Op::Delete, vec![]),
            (Op::Insert, vec![]),
            (Op::Update, vec![1]),
        ] {
            meta.push(op, &unchanged);
        }
        let batch = layout
            .assemble(
                vec![
                    Arc::new(Int32Array::from(vec![1, 1, 1, 9, 2, 3, 4, 8])),
                    Arc::new(StringArray::from(vec![Some("a"); 8])),
                ],
                meta,
                vec![Arc::new(Int32Array::from(vec![
                    None,
                    None,
                    None,
                    Some(1),
                    None,
                    None,
                    None,
                    Some(4),
                ]))],
            )
            .unwrap();
        let rows = layout.rows(&batch).unwrap();
        assert_eq!(
            rows.steps(),
            [
                Step::Upsert {
                    rows: vec![0, 1],
                    unchanged: vec![]
                },
                Step::Upsert {
                    rows: vec![2],
                    unchanged: vec![1]
                },
                Step::Delete {
                    rows: vec![3],
                    old: true
                },
                Step::Upsert {
                    rows: vec![3],
                    unchanged: vec![]
                },
                Step::Delete {
                    rows: vec![4, 5],
                    old: false
                },
                Step::Upsert {
                    rows: vec![6],
                    unchanged: vec![]
                },
                Step::Move {
                    row: 7,
                    unchanged: vec![1]
                },
            ]
        );
    }
}
