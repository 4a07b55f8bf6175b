//! Decoded `pgoutput` changes into change batches (`ferry-change`'s layout), sans-IO.
//!
//! Values go through the snapshot reader's column builders (a binary `pgoutput` value is the
//! type's send format, the bytes a binary COPY carries), so a streamed row holds exactly the
//! values a snapshot read of it would. The caller describes each table it streams
//! ([`PostgresSource::change_table`], after its own policy check) and binds it to the
//! relation the stream announces; changes of relations not bound are not decoded.
//!
//! Errors name the table, the column and its type, never a value: a change stream's errors
//! may be logged on the cloud side.

use std::collections::HashMap;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use ferry_change::{Layout, Meta, Op};

use super::binary::ColBuilder;
use super::pgoutput::{Cell, Message, Old, Relation};
use super::{PgCol, PostgresSource};
use crate::error::ConnectorError;
use crate::spec::ReadSpec;

/// A table as a change stream reads it: the snapshot read's columns and their key.
#[derive(Debug, Clone)]
pub struct ChangeTable {
    name: String,
    cols: Vec<PgCol>,
    schema: SchemaRef,
    key: Vec<usize>,
}

impl ChangeTable {
    /// The read's schema, the same as a snapshot read's.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The primary key's positions among the read's columns (empty: no primary key read).
    pub fn key(&self) -> &[usize] {
        &self.key
    }

    /// Only the columns `relation` has: the catalog is read when a relation message
    /// arrives, which can be after later DDL committed (an ADD COLUMN whose column the
    /// changes before it do not carry). A read column the relation lacks is not in the WAL
    /// being decoded.
    pub(crate) fn as_of(&self, relation: &Relation) -> ChangeTable {
        let has = |c: &PgCol| relation.columns.iter().any(|rc| rc.name == c.name);
        let kept: Vec<usize> = (0..self.cols.len())
            .filter(|&i| has(&self.cols[i]))
            .collect();
        if kept.len() == self.cols.len() {
            return self.clone();
        }
        let cols: Vec<PgCol> = kept.iter().map(|&i| self.cols[i].clone()).collect();
        let fields: Vec<_> = kept
            .iter()
            .map(|&i| self.schema.fields()[i].clone())
            .collect();
        // A key column the relation lacks leaves no key (the broker then refuses the stream:
        // its key changed).
        let key = self
            .key
            .iter()
            .map(|k| kept.iter().position(|i| i == k))
            .collect::<Option<Vec<usize>>>()
            .unwrap_or_default();
        ChangeTable {
            name: self.name.clone(),
            cols,
            schema: std::sync::Arc::new(arrow_schema::Schema::new(fields)),
            key,
        }
    }
}

impl PostgresSource {
    /// Describes `spec`'s table for a change stream: its read columns (those of a snapshot
    /// read of `spec`) and its primary key, when every key column is read.
    pub async fn change_table(&self, spec: &ReadSpec) -> Result<ChangeTable, ConnectorError> {
        let name = spec
            .table
            .clone()
            .ok_or_else(|| ConnectorError::config("table", "a change stream reads a table"))?;
        let mut tx = self.begin_read().await?;
        let cols = Self::columns_on(&mut tx, spec).await?;
        let all = Self::all_columns_on(&mut tx, spec).await?;
        let pk = super::primary_key(&mut *tx, &super::quote_qualified(&name)?, &all).await?;
        tx.rollback().await.map_err(super::q("rollback"))?;
        let key: Option<Vec<usize>> = pk
            .iter()
            .map(|(k, _)| cols.iter().position(|c| &c.name == k))
            .collect();
        let schema = std::sync::Arc::new(arrow_schema::Schema::new(
            cols.iter().map(PgCol::field).collect::<Vec<_>>(),
        ));
        Ok(ChangeTable {
            name,
            cols,
            schema,
            key: key.unwrap_or_default(),
        })
    }
}

/// One bound relation's pending rows.
struct Bound {
    table: ChangeTable,
    layout: Layout,
    /// Read column of each of the relation's columns (`None`: not read).
    read_of: Vec<Option<usize>>,
    /// The relation's column of each key column.
    key_at: Vec<usize>,
    data: Vec<ColBuilder>,
    old: Vec<ColBuilder>,
    meta: Meta,
}

impl Bound {
    fn new(relation: &Relation, table: ChangeTable) -> Result<Self, ConnectorError> {
        let layout = Layout::new(&table.schema, table.key.clone())
            .map_err(|e| ConnectorError::Schema(format!("{}: {e}", table.name)))?;
        let read_of: Vec<Option<usize>> = relation
            .columns
            .iter()
            .map(|rc| table.cols.iter().position(|c| c.name == rc.name))
            .collect();
        if let Some(missing) = table
            .cols
            .iter()
            .find(|c| !relation.columns.iter().any(|rc| rc.name == c.name))
        {
            return Err(ConnectorError::Schema(format!(
                "{}: the change stream's description of the table has no column `{}`",
                table.name, missing.name
            )));
        }
        for (rc, read) in relation.columns.iter().zip(&read_of) {
            let Some(col) = read.and_then(|r| table.cols.get(r)) else {
                continue;
            };
            if col
                .type_id
                .is_some_and(|id| id != (rc.type_oid, rc.type_modifier))
            {
                return Err(ConnectorError::Schema(format!(
                    "{}: column `{}` is {} now, and had another type when the changes being \
                     read were made; the stream stops here",
                    table.name, col.name, col.type_name
                )));
            }
        }
        let key_at = table
            .key
            .iter()
            .map(|k| {
                read_of
                    .iter()
                    .position(|r| *r == Some(*k))
                    .unwrap_or_default()
            })
            .collect();
        let mut b = Self {
            meta: Meta::new(&layout),
            layout,
            read_of,
            key_at,
            data: Vec::new(),
            old: Vec::new(),
            table,
        };
        b.data = b.builders(None)?;
        b.old = b.builders(Some(&b.table.key.clone()))?;
        Ok(b)
    }

    fn builders(&self, only: Option<&[usize]>) -> Result<Vec<ColBuilder>, ConnectorError> {
        let pick: Vec<usize> = match only {
            Some(k) => k.to_vec(),
            None => (0..self.table.cols.len()).collect(),
        };
        pick.iter()
            .map(|i| {
                ColBuilder::new(
                    &self.table.cols[*i].kind,
                    self.table.schema.field(*i).data_type(),
                )
            })
            .collect()
    }

    fn value_error(&self, col: usize, what: &str) -> ConnectorError {
        let c = &self.table.cols[col];
        ConnectorError::Value {
            column: c.name.clone(),
            message: format!(
                "a change of {}: {what} (type {})",
                self.table.name, c.type_name
            ),
        }
    }

    fn append(b: &mut ColBuilder, cell: &Cell) -> Result<(), &'static str> {
        match cell {
            Cell::Null | Cell::Unchanged => {
                b.append_null();
                Ok(())
            }
            // The error text may quote the value: it is not passed on.
            Cell::Binary(v) => b.append(v).map_err(|_| "a value this type cannot hold"),
            Cell::Text(_) => Err("a value in text form (the stream must be started binary)"),
        }
    }

    /// One row: `cells` the relation's columns, `old_key` the old key's cells when the key
    /// changed.
    fn push(
        &mut self,
        op: Op,
        cells: &[Cell],
        old_key: Option<&[Cell]>,
    ) -> Result<(), ConnectorError> {
        if cells.len() != self.read_of.len() {
            return Err(ConnectorError::Schema(format!(
                "{}: a change of {} columns where the table has {}",
                self.table.name,
                cells.len(),
                self.read_of.len()
            )));
        }
        let mut unchanged = Vec::new();
        for (cell, read) in cells.iter().zip(&self.read_of) {
            let Some(i) = *read else { continue };
            if *cell == Cell::Unchanged {
                unchanged.push(i);
            }
            Self::append(&mut self.data[i], cell).map_err(|w| self.value_error(i, w))?;
        }
        for (j, at) in self.key_at.clone().into_iter().enumerate() {
            let cell = old_key.map_or(Cell::Null, |o| o.get(at).copied().unwrap_or(Cell::Null));
            Self::append(&mut self.old[j], &cell)
                .map_err(|w| self.value_error(self.table.key[j], w))?;
        }
        self.meta.push(op, &unchanged);
        Ok(())
    }

    fn take(&mut self) -> Result<RecordBatch, ConnectorError> {
        let data: Vec<ArrayRef> = self.data.iter_mut().map(ColBuilder::finish).collect();
        let old: Vec<ArrayRef> = self.old.iter_mut().map(ColBuilder::finish).collect();
        let meta = std::mem::replace(&mut self.meta, Meta::new(&self.layout));
        self.layout
            .assemble(data, meta, old)
            .map_err(|e| ConnectorError::Schema(format!("{}: {e}", self.table.name)))
    }
}

/// Turns the changes of bound relations into change batches, in the order the source
/// committed them: a batch holds consecutive changes of one relation, so a transaction that
/// changes a parent and then its child arrives in that order.
pub struct ChangeDecoder {
    tables: HashMap<u32, Bound>,
    batch_rows: usize,
    /// The relation whose rows are pending.
    open: Option<u32>,
}

impl ChangeDecoder {
    /// A decoder whose batches hold at most `batch_rows` rows.
    pub fn new(batch_rows: usize) -> Self {
        Self {
            tables: HashMap::new(),
            batch_rows: batch_rows.max(1),
            open: None,
        }
    }

    /// Streams `relation`'s changes as rows of `table`. Call it for every Relation message
    /// of a table the caller streams (again after a schema change: pending rows of the old
    /// shape are returned first).
    pub fn bind(
        &mut self,
        relation: &Relation,
        table: ChangeTable,
    ) -> Result<Option<(u32, RecordBatch)>, ConnectorError> {
        let pending = match self.tables.get_mut(&relation.oid) {
            Some(b) if !b.meta.is_empty() => Some((relation.oid, b.take()?)),
            _ => None,
        };
        self.tables
            .insert(relation.oid, Bound::new(relation, table)?);
        Ok(pending)
    }

    /// The layout of a bound relation's batches.
    pub fn layout(&self, relation: u32) -> Option<&Layout> {
        self.tables.get(&relation).map(|b| &b.layout)
    }

    /// Takes an Insert, Update or Delete of a bound relation; returns the batches it
    /// completes: the pending rows of another relation, and this relation's once
    /// `batch_rows` are pending. Other messages and relations not bound are ignored.
    pub fn change(&mut self, m: &Message) -> Result<Vec<(u32, RecordBatch)>, ConnectorError> {
        let (relation, op) = match m {
            Message::Insert { relation, .. } => (*relation, Op::Insert),
            Message::Update { relation, .. } => (*relation, Op::Update),
            Message::Delete { relation, .. } => (*relation, Op::Delete),
            _ => return Ok(Vec::new()),
        };
        if !self.tables.contains_key(&relation) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        if let Some(open) = self.open.filter(|o| *o != relation) {
            if let Some(b) = self.tables.get_mut(&open).filter(|b| !b.meta.is_empty()) {
                out.push((open, b.take()?));
            }
        }
        self.open = Some(relation);
        let Some(b) = self.tables.get_mut(&relation) else {
            return Ok(out);
        };
        match m {
            Message::Insert { new, .. } => b.push(op, new, None)?,
            Message::Update { old, new, .. } => {
                let key_moved = match old {
                    Some(Old::Key(o)) => Some(o.as_slice()),
                    // The whole old row: the key moved when its key cells differ.
                    Some(Old::Full(o)) => b
                        .key_at
                        .iter()
                        .any(|k| o.get(*k) != new.get(*k))
                        .then_some(o.as_slice()),
                    None => None,
                };
                b.push(op, new, key_moved)?
            }
            Message::Delete { old, .. } => b.push(op, old.cells(), None)?,
            _ => {}
        }
        if b.meta.len() >= self.batch_rows {
            out.push((relation, b.take()?));
        }
        Ok(out)
    }

    /// Every relation's pending rows (at a transaction's commit).
    pub fn flush(&mut self) -> Result<Vec<(u32, RecordBatch)>, ConnectorError> {
        let mut out = Vec::new();
        for (oid, b) in self.tables.iter_mut() {
            if !b.meta.is_empty() {
                out.push((*oid, b.take()?));
            }
        }
        Ok(out)
    }
}
