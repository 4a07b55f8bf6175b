//! Applying change batches to a SQLite table: one source transaction (or a group of them)
//! in one `BEGIN IMMEDIATE` transaction, with the stream's checkpoint recorded in that same
//! transaction, so a replay after any crash finds what was applied and skips it.
//!
//! Rows are applied in their order, in runs ([`ferry_change::Rows::steps`]): consecutive
//! inserts and updates become multi-row `INSERT … ON CONFLICT (key) DO UPDATE` (SQLite
//! applies a statement's rows in order, so a key's last row wins), consecutive deletes one
//! `DELETE … WHERE key IN (VALUES …)`. An update that did not send every value
//! (PostgreSQL's unchanged TOAST) is an `UPDATE` of the values it sent. SQLite's DDL is
//! transactional: ADD COLUMN commits with the rows around it.

use arrow_array::{ArrayRef, RecordBatch};
use ferry_change::Layout;
use sqlx::sqlite::SqliteArguments;
use sqlx::{Arguments, Executor, Sqlite, SqliteConnection, SqlitePool};

use super::value::{self, SqlVal};
use super::{
    checkpoint_sql, q, qualified, quote_ident, split_name, sqlite_type_for, table_columns, Col,
    Kind, SqliteSink, MAX_VARIABLES,
};
use crate::apply::KeyWrites;
use crate::error::ConnectorError;
use crate::spec::{Position, WriteSpec};
use crate::stream::ChangeTarget;
use crate::traits::{Checkpoint, CheckpointSql};

/// Applies the change batches of one stream's tables: each source transaction in one
/// target transaction, with the stream's checkpoint.
pub struct SqliteChangeTarget {
    pool: SqlitePool,
    specs: Vec<WriteSpec>,
    tables: Vec<Applier>,
    checkpoint: CheckpointSql,
    /// The open transaction: a source transaction (or group) being applied.
    tx: Option<sqlx::Transaction<'static, Sqlite>>,
    /// See [`ChangeTarget::tolerate_missing`].
    tolerate_missing: bool,
}

/// Applies change batches of one table.
struct Applier {
    name: String,
    /// The table, qualified and quoted.
    table: String,
    /// The target column of each read column.
    cols: Vec<Col>,
    layout: Layout,
}

fn schema(message: impl Into<String>) -> ConnectorError {
    ConnectorError::Schema(message.into())
}

impl SqliteSink {
    /// A target for a change stream of `tables` (each a table's write spec and the layout of
    /// its change batches), recording its checkpoint as split `split` of `job` in the first
    /// table's checkpoint table (made by `prepare`). Each table needs its stream key as its
    /// primary key or a unique index: `ON CONFLICT` finds rows by it.
    pub(crate) async fn open_change_target(
        &self,
        tables: &[(WriteSpec, Layout)],
        job: &str,
        split: u32,
    ) -> Result<SqliteChangeTarget, ConnectorError> {
        let first = crate::stream::first_table(tables)?;
        let mut conn = self.pool.acquire().await.map_err(q("acquire connection"))?;
        let mut appliers = Vec::with_capacity(tables.len());
        for (spec, layout) in tables {
            appliers.push(applier(&mut conn, spec, layout).await?);
        }
        Ok(SqliteChangeTarget {
            pool: self.pool.clone(),
            specs: tables.iter().map(|(s, _)| s.clone()).collect(),
            tables: appliers,
            checkpoint: checkpoint_sql(first, job, split)?,
            tx: None,
            tolerate_missing: false,
        })
    }
}

/// The applier of `layout`'s batches into `spec`'s table, as the table is now.
async fn applier(
    conn: &mut SqliteConnection,
    spec: &WriteSpec,
    layout: &Layout,
) -> Result<Applier, ConnectorError> {
    if layout.key().is_empty() {
        return Err(schema(format!(
            "{}: a change stream applies by key, and the source table has no primary key",
            spec.table
        )));
    }
    let (sch, name) = split_name(&spec.table)?;
    let all = table_columns(&mut *conn, &sch, &name).await?;
    if all.is_empty() {
        return Err(ConnectorError::NoSuchTable(spec.table.clone()));
    }
    let names = spec.target_names(&layout.read_schema())?;
    let mut cols = Vec::with_capacity(names.len());
    for (n, f) in names.iter().zip(layout.read_schema().fields()) {
        let col = all.iter().find(|c| &c.name == n).ok_or_else(|| {
            schema(format!(
                "column `{n}` does not exist in table `{}`",
                spec.table
            ))
        })?;
        if !value::can_encode(f.data_type()) {
            return Err(ConnectorError::UnsupportedType {
                column: n.clone(),
                type_name: f.data_type().to_string(),
            });
        }
        cols.push(col.clone());
    }
    let mut key: Vec<String> = layout
        .key()
        .iter()
        .filter_map(|k| cols.get(*k).map(|c| c.name.to_lowercase()))
        .collect();
    key.sort();
    if !unique_keys(conn, &sch, &name, &all).await?.contains(&key) {
        return Err(schema(format!(
            "{}: a change stream applies by key, and the target has no primary key or unique \
             index on ({}) — the source's key",
            spec.table,
            key.join(", ")
        )));
    }
    Ok(Applier {
        name: spec.table.clone(),
        table: qualified(&sch, &name),
        cols,
        layout: layout.clone(),
    })
}

/// The column sets (lower case, sorted) of the table's primary key and unique indexes.
async fn unique_keys(
    conn: &mut SqliteConnection,
    sch: &Option<String>,
    name: &str,
    all: &[Col],
) -> Result<Vec<Vec<String>>, ConnectorError> {
    let mut out = Vec::new();
    let mut pk: Vec<String> = all
        .iter()
        .filter(|c| c.pk > 0)
        .map(|c| c.name.to_lowercase())
        .collect();
    pk.sort();
    if !pk.is_empty() {
        out.push(pk);
    }
    let indexes: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pragma_index_list(?1, ?2) WHERE \"unique\"")
            .bind(name)
            .bind(sch.as_deref())
            .fetch_all(&mut *conn)
            .await
            .map_err(q("reading the target's unique indexes"))?;
    for index in indexes {
        let mut cols: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_index_info(?1, ?2) WHERE name IS NOT NULL")
                .bind(&index)
                .bind(sch.as_deref())
                .fetch_all(&mut *conn)
                .await
                .map_err(q("reading the target's unique indexes"))?;
        cols.iter_mut().for_each(|c| *c = c.to_lowercase());
        cols.sort();
        out.push(cols);
    }
    Ok(out)
}

impl SqliteChangeTarget {
    /// The open transaction, begun if none is.
    async fn tx(&mut self) -> Result<&mut sqlx::Transaction<'static, Sqlite>, ConnectorError> {
        if self.tx.is_none() {
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(q("begin"))?;
            super::see_schema(&mut tx).await?;
            self.tx = Some(tx);
        }
        self.tx
            .as_mut()
            .ok_or_else(|| schema("no open transaction"))
    }
}

#[async_trait::async_trait]
impl ChangeTarget for SqliteChangeTarget {
    async fn apply(&mut self, table: usize, batch: &RecordBatch) -> Result<u64, ConnectorError> {
        let tolerate = self.tolerate_missing;
        self.tx().await?;
        let (Some(applier), Some(tx)) = (self.tables.get(table), self.tx.as_mut()) else {
            return Err(schema(format!(
                "change batch of table {table}, which the stream does not have"
            )));
        };
        crate::apply::apply_batch(applier, tx, batch, tolerate).await
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        self.tx().await?;
        let Some(mut tx) = self.tx.take() else {
            return Err(schema("no open transaction"));
        };
        let sql = &self.checkpoint;
        sqlx::query(&sql.upsert)
            .bind(&sql.job)
            .bind(i64::from(sql.split))
            .bind(checkpoint.seq as i64)
            .bind(checkpoint.rows as i64)
            .bind(checkpoint.written as i64)
            .bind(checkpoint.position.as_ref().map(Position::to_stored))
            .execute(&mut *tx)
            .await
            .map_err(q("recording the checkpoint"))?;
        tx.commit().await.map_err(q("commit"))
    }

    fn tolerate_missing(&mut self, on: bool) {
        self.tolerate_missing = on;
    }

    async fn rollback(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.rollback().await;
        }
    }

    async fn add_columns(
        &mut self,
        table: usize,
        layout: &Layout,
    ) -> Result<Vec<String>, ConnectorError> {
        let (Some(spec), Some(old)) = (self.specs.get(table).cloned(), self.tables.get(table))
        else {
            return Err(schema(format!("table {table} is not one of the stream's")));
        };
        let had = old.layout.columns();
        let qualified_table = old.table.clone();
        let (sch, name) = split_name(&spec.table)?;
        let tx = self.tx().await?;
        let present: Vec<String> = table_columns(&mut **tx, &sch, &name)
            .await?
            .into_iter()
            .map(|c| c.name.to_lowercase())
            .collect();
        let mut added = Vec::new();
        for f in layout
            .schema()
            .fields()
            .iter()
            .take(layout.columns())
            .skip(had)
        {
            // There already when the job resumes with the plan it was submitted with.
            if present.contains(&f.name().to_lowercase()) {
                continue;
            }
            let ty = sqlite_type_for(f)?;
            let sql = format!(
                "ALTER TABLE {qualified_table} ADD COLUMN {} {ty}",
                quote_ident(f.name())
            );
            (&mut **tx)
                .execute(sql.as_str())
                .await
                .map_err(q("adding a column the source added"))?;
            added.push(f.name().clone());
        }
        let fresh = applier(tx, &spec, layout).await?;
        if let Some(slot) = self.tables.get_mut(table) {
            *slot = fresh;
        }
        Ok(added)
    }
}

impl Applier {
    /// The value of `row` in `a`, for read column `c`, checked against its target column.
    fn value(&self, a: &ArrayRef, c: usize, row: usize) -> Result<SqlVal, ConnectorError> {
        let col = &self.cols[c];
        let decimal = matches!(col.kind, Kind::Decimal(..));
        // The reason may name the value: a stream's errors must not.
        let refused = |what: &str| ConnectorError::Value {
            column: col.name.clone(),
            message: format!("a change of {}: {what} ({})", self.name, col.decl),
        };
        let v = value::encode(a.as_ref(), row, decimal)
            .map_err(|_| refused("a value the column cannot hold"))?;
        let rowid_alias = col.pk > 0 && col.decl.eq_ignore_ascii_case("INTEGER");
        if v == SqlVal::Null && col.not_null && !rowid_alias {
            return Err(refused("NULL into a NOT NULL column"));
        }
        Ok(v)
    }

    /// Binds `vals` in order.
    fn args(vals: &[SqlVal]) -> Result<SqliteArguments<'static>, ConnectorError> {
        let mut args = SqliteArguments::default();
        for v in vals {
            match v {
                SqlVal::Null => args.add(None::<i64>),
                SqlVal::Int(i) => args.add(*i),
                SqlVal::Real(f) => args.add(*f),
                SqlVal::Text(s) => args.add(s.clone()),
                SqlVal::Blob(b) => args.add(b.clone()),
            }
            .map_err(|e| schema(format!("binding a value: {e}")))?;
        }
        Ok(args)
    }

    fn quoted(&self, cols: &[usize]) -> Vec<String> {
        cols.iter()
            .map(|c| quote_ident(&self.cols[*c].name))
            .collect()
    }
}

type Tx = sqlx::Transaction<'static, Sqlite>;

#[async_trait::async_trait]
impl KeyWrites<Tx> for Applier {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `INSERT … ON CONFLICT (key) DO UPDATE` of `rows`, in chunks under the bound-value
    /// limit.
    async fn upsert(
        &self,
        tx: &mut Tx,
        data: &[ArrayRef],
        rows: &[usize],
    ) -> Result<u64, ConnectorError> {
        let all: Vec<usize> = (0..self.cols.len()).collect();
        let names = self.quoted(&all);
        let key = self.quoted(self.layout.key());
        let sets: Vec<String> = all
            .iter()
            .filter(|c| !self.layout.key().contains(c))
            .map(|c| format!("{0} = excluded.{0}", names[*c]))
            .collect();
        let action = if sets.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", sets.join(", "))
        };
        let one = format!("({})", vec!["?"; all.len()].join(","));
        let per = (MAX_VARIABLES / all.len().max(1)).clamp(1, 500);
        for chunk in rows.chunks(per) {
            let mut vals = Vec::with_capacity(chunk.len() * all.len());
            for r in chunk {
                for (c, a) in data.iter().enumerate() {
                    vals.push(self.value(a, c, *r)?);
                }
            }
            let sql = format!(
                "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) {action}",
                self.table,
                names.join(", "),
                vec![one.as_str(); chunk.len()].join(","),
                key.join(", ")
            );
            sqlx::query_with(&sql, Self::args(&vals)?)
                .execute(&mut **tx)
                .await
                .map_err(q("applying inserts and updates"))?;
        }
        Ok(rows.len() as u64)
    }

    async fn update(
        &self,
        tx: &mut Tx,
        data: &[ArrayRef],
        old_key: Option<&[ArrayRef]>,
        row: usize,
        unchanged: &[usize],
        tolerate_missing: bool,
    ) -> Result<u64, ConnectorError> {
        let key = self.layout.key();
        let new_key: Vec<ArrayRef>;
        let keys = match old_key {
            Some(old) => old,
            None => {
                new_key = key.iter().map(|k| data[*k].clone()).collect();
                &new_key
            }
        };
        let moved = old_key.is_some();
        let set_cols: Vec<usize> = (0..self.cols.len())
            .filter(|c| !unchanged.contains(c) && (moved || !key.contains(c)))
            .collect();
        let mut sets: Vec<String> = self
            .quoted(&set_cols)
            .into_iter()
            .map(|c| format!("{c} = ?"))
            .collect();
        if sets.is_empty() {
            // Nothing to write but the row's presence to check.
            let k = quote_ident(&self.cols[key[0]].name);
            sets.push(format!("{k} = {k}"));
        }
        let matched: Vec<String> = self
            .quoted(key)
            .into_iter()
            .map(|k| format!("{k} = ?"))
            .collect();
        let sql = format!(
            "UPDATE {} SET {} WHERE {}",
            self.table,
            sets.join(", "),
            matched.join(" AND ")
        );
        let mut vals = Vec::with_capacity(set_cols.len() + key.len());
        for c in &set_cols {
            vals.push(self.value(&data[*c], *c, row)?);
        }
        for (k, a) in key.iter().zip(keys) {
            vals.push(self.value(a, *k, row)?);
        }
        let done = sqlx::query_with(&sql, Self::args(&vals)?)
            .execute(&mut **tx)
            .await
            .map_err(q("applying an update"))?;
        if done.rows_affected() == 0 && tolerate_missing {
            return Ok(0);
        }
        if done.rows_affected() != 1 {
            return Err(schema(format!(
                "{}: an updated row is not in the target, and the change did not carry all \
                 its values (unchanged TOAST): the target needs a new snapshot",
                self.name
            )));
        }
        Ok(1)
    }

    async fn delete(
        &self,
        tx: &mut Tx,
        keys: &[ArrayRef],
        rows: &[usize],
    ) -> Result<u64, ConnectorError> {
        let key = self.layout.key();
        let list = self.quoted(key).join(", ");
        let one = format!("({})", vec!["?"; key.len()].join(","));
        let per = (MAX_VARIABLES / key.len().max(1)).clamp(1, 500);
        let mut deleted = 0;
        for chunk in rows.chunks(per) {
            let mut vals = Vec::with_capacity(chunk.len() * key.len());
            for r in chunk {
                for (k, a) in key.iter().zip(keys) {
                    vals.push(self.value(a, *k, *r)?);
                }
            }
            let sql = format!(
                "DELETE FROM {} WHERE ({list}) IN (VALUES {})",
                self.table,
                vec![one.as_str(); chunk.len()].join(",")
            );
            let done = sqlx::query_with(&sql, Self::args(&vals)?)
                .execute(&mut **tx)
                .await
                .map_err(q("applying deletes"))?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }
}
