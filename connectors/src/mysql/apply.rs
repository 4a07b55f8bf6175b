//! Applying change batches to a MySQL/MariaDB table: one source transaction (or a group of
//! them) in one InnoDB transaction, with the stream's checkpoint recorded in that same
//! transaction, so a replay after any crash finds what was applied and skips it.
//!
//! Rows are applied in their order, in runs ([`ferry_change::Rows::steps`]): consecutive
//! inserts and updates become one multi-row `INSERT … ON DUPLICATE KEY UPDATE` (later rows
//! of a key win, as the server applies a statement's rows in order), consecutive deletes one
//! `DELETE … WHERE key IN (…)`. An update that did not send every value (PostgreSQL's
//! unchanged TOAST) is an `UPDATE` of the values it sent. Values are checked against the
//! target column as the batch writer checks them; a change that does not fit stops the
//! stream, naming the column but not the value.
//!
//! ADD COLUMN is the one exception to "whole or not at all": MySQL commits implicitly
//! before DDL. The engine commits the group before a new column arrives at a transaction
//! boundary (MySQL sources always); a PostgreSQL source's ADD COLUMN inside a transaction
//! makes the rows before it visible early. Replaying them after a crash is harmless: every
//! step writes a row's values by key.

use arrow_array::{ArrayRef, RecordBatch};
use ferry_change::Layout;
use sqlx::{Executor, MySql, MySqlConnection, MySqlPool, Row};

use super::meta::{pick_columns, table_columns, ColMeta};
use super::write::{
    acquire, build_args, build_sql, check, checkpoint_sql, ensure_checkpoints, mysql_type,
    plan_chunks, value, Val, MAX_PLACEHOLDERS,
};
use super::{quote_ident, quote_table, split_table, MySqlSink};
use crate::apply::KeyWrites;
use crate::error::ConnectorError;
use crate::spec::{Position, WriteSpec};
use crate::stream::ChangeTarget;
use crate::traits::{Checkpoint, CheckpointSql};

/// Applies the change batches of one stream's tables: each source transaction in one
/// target transaction, with the stream's checkpoint.
pub struct MySqlChangeTarget {
    pool: MySqlPool,
    specs: Vec<WriteSpec>,
    tables: Vec<Applier>,
    checkpoint: CheckpointSql,
    /// The open transaction: a source transaction (or group) being applied.
    tx: Option<sqlx::Transaction<'static, MySql>>,
    max_bytes: usize,
    /// See [`ChangeTarget::tolerate_missing`].
    tolerate_missing: bool,
}

/// Applies change batches of one table.
struct Applier {
    table: String,
    /// The target column of each read column.
    metas: Vec<ColMeta>,
    layout: Layout,
    /// Bytes of values one statement may carry (half of `max_allowed_packet`).
    max_bytes: usize,
}

/// `ConnectorError::Schema` of a message.
fn schema(message: impl Into<String>) -> ConnectorError {
    ConnectorError::Schema(message.into())
}

impl MySqlSink {
    /// A target for a change stream of `tables` (each a table's write spec and the layout of
    /// its change batches), recording its checkpoint as split `split` of `job` in the first
    /// table's checkpoint table. Each table needs its stream key as its primary key or a
    /// unique index: `ON DUPLICATE KEY UPDATE` finds rows by it.
    pub(crate) async fn open_change_target(
        &self,
        tables: &[(WriteSpec, Layout)],
        job: &str,
        split: u32,
    ) -> Result<MySqlChangeTarget, ConnectorError> {
        let first = crate::stream::first_table(tables)?;
        let mut conn = acquire(&self.pool).await?;
        let max_packet: i64 = sqlx::query_scalar("SELECT CAST(@@max_allowed_packet AS SIGNED)")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| ConnectorError::query("reading max_allowed_packet", e))?;
        let max_bytes = ((max_packet.max(64 * 1024) as usize) / 2).min(64 << 20);
        let mut appliers = Vec::with_capacity(tables.len());
        for (spec, layout) in tables {
            appliers.push(applier(&mut conn, spec, layout, max_bytes).await?);
        }
        ensure_checkpoints(&mut conn, first).await?;
        Ok(MySqlChangeTarget {
            pool: self.pool.clone(),
            specs: tables.iter().map(|(s, _)| s.clone()).collect(),
            tables: appliers,
            checkpoint: checkpoint_sql(first, job, split),
            tx: None,
            max_bytes,
            tolerate_missing: false,
        })
    }
}

/// The applier of `layout`'s batches into `spec`'s table, as the table is now.
async fn applier(
    conn: &mut MySqlConnection,
    spec: &WriteSpec,
    layout: &Layout,
    max_bytes: usize,
) -> Result<Applier, ConnectorError> {
    if layout.key().is_empty() {
        return Err(schema(format!(
            "{}: a change stream applies by key, and the source table has no primary key",
            spec.table
        )));
    }
    let names: Vec<String> = spec
        .target_names(&layout.read_schema())?
        .into_iter()
        .map(|c| c.trim_matches('`').to_string())
        .collect();
    let all = table_columns(conn, &spec.table).await?;
    let metas = pick_columns(&spec.table, all, &names)?;
    let key: Vec<String> = layout
        .key()
        .iter()
        .filter_map(|k| metas.get(*k).map(|m| m.name.to_lowercase()))
        .collect();
    if !unique_keys(conn, &spec.table)
        .await?
        .contains(&sorted(key.clone()))
    {
        return Err(schema(format!(
            "{}: a change stream applies by key, and the target has no primary key or unique \
             index on ({}) — the source's key",
            spec.table,
            key.join(", ")
        )));
    }
    Ok(Applier {
        table: spec.table.clone(),
        metas,
        layout: layout.clone(),
        max_bytes,
    })
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// The column sets (lower case, sorted) of `table`'s primary key and unique indexes.
async fn unique_keys(
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<Vec<Vec<String>>, ConnectorError> {
    let (db, t) = split_table(table);
    let rows = sqlx::query(
        "SELECT CAST(INDEX_NAME AS CHAR), CAST(COLUMN_NAME AS CHAR) FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND NON_UNIQUE = 0 \
         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| ConnectorError::query("reading the target's unique indexes", e))?;
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for r in rows {
        let (index, column): (String, String) = (
            r.try_get(0)
                .map_err(|e| ConnectorError::query("reading the target's unique indexes", e))?,
            r.try_get(1)
                .map_err(|e| ConnectorError::query("reading the target's unique indexes", e))?,
        );
        match out.last_mut() {
            Some((i, cols)) if *i == index => cols.push(column.to_lowercase()),
            _ => out.push((index, vec![column.to_lowercase()])),
        }
    }
    Ok(out.into_iter().map(|(_, cols)| sorted(cols)).collect())
}

impl MySqlChangeTarget {
    /// The open transaction, begun if none is.
    async fn tx(&mut self) -> Result<&mut sqlx::Transaction<'static, MySql>, ConnectorError> {
        if self.tx.is_none() {
            self.tx = Some(
                self.pool
                    .begin()
                    .await
                    .map_err(|e| ConnectorError::query("BEGIN", e))?,
            );
        }
        self.tx
            .as_mut()
            .ok_or_else(|| schema("no open transaction"))
    }
}

#[async_trait::async_trait]
impl ChangeTarget for MySqlChangeTarget {
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
            .bind(sql.split)
            .bind(checkpoint.seq as i64)
            .bind(checkpoint.rows as i64)
            .bind(checkpoint.written as i64)
            .bind(checkpoint.position.as_ref().map(Position::to_stored))
            .execute(&mut *tx)
            .await
            .map_err(|e| ConnectorError::query("recording the checkpoint", e))?;
        tx.commit()
            .await
            .map_err(|e| ConnectorError::query("COMMIT", e))
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
        let (had, max_bytes) = (old.layout.columns(), self.max_bytes);
        let tx = self.tx().await?;
        let present: Vec<String> = table_columns(tx, &spec.table)
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
            // There already when the job resumes with the plan it was submitted with, or
            // when a replay comes here again (the DDL committed itself).
            if present.contains(&f.name().to_lowercase()) {
                continue;
            }
            let ty = mysql_type(&f.as_ref().clone().with_nullable(true))?;
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN {} {ty}",
                quote_table(&spec.table),
                quote_ident(f.name())
            );
            (&mut **tx)
                .execute(sql.as_str())
                .await
                .map_err(|e| ConnectorError::query("adding a column the source added", e))?;
            added.push(f.name().clone());
        }
        let fresh = applier(tx, &spec, layout, max_bytes).await?;
        if let Some(slot) = self.tables.get_mut(table) {
            *slot = fresh;
        }
        Ok(added)
    }
}

impl Applier {
    /// The values of `row` in `arrays` (columns `cols` of the read), checked against their
    /// target columns.
    fn values(
        &self,
        arrays: &[ArrayRef],
        cols: &[usize],
        row: usize,
    ) -> Result<Vec<Val>, ConnectorError> {
        let fields = self.layout.schema().fields();
        arrays
            .iter()
            .zip(cols)
            .map(|(a, c)| {
                let m = &self.metas[*c];
                let v = value(a, row, &fields[*c])?;
                match check(&v, m) {
                    None => Ok(v),
                    // The reason names the value: a stream's errors must not.
                    Some(_) => Err(ConnectorError::Value {
                        column: m.name.clone(),
                        message: format!(
                            "a change of {}: {}",
                            self.table,
                            match v {
                                Val::Null => "NULL into a NOT NULL column".to_string(),
                                _ => format!("a value the column cannot hold ({})", m.base),
                            }
                        ),
                    }),
                }
            })
            .collect()
    }

    /// `k1 = ? AND k2 = ?` over the key.
    fn key_match(&self) -> String {
        self.layout
            .key()
            .iter()
            .map(|c| format!("{} = ?", quote_ident(&self.metas[*c].name)))
            .collect::<Vec<_>>()
            .join(" AND ")
    }
}

type Tx = sqlx::Transaction<'static, MySql>;

#[async_trait::async_trait]
impl KeyWrites<Tx> for Applier {
    fn layout(&self) -> &Layout {
        &self.layout
    }

    /// `INSERT … ON DUPLICATE KEY UPDATE` of `rows`, in chunks under the packet size.
    async fn upsert(
        &self,
        tx: &mut Tx,
        data: &[ArrayRef],
        rows: &[usize],
    ) -> Result<u64, ConnectorError> {
        let all: Vec<usize> = (0..self.metas.len()).collect();
        let vals = rows
            .iter()
            .map(|r| self.values(data, &all, *r))
            .collect::<Result<Vec<_>, _>>()?;
        let quoted: Vec<String> = self.metas.iter().map(|m| quote_ident(&m.name)).collect();
        let head = format!(
            "INSERT INTO {} ({}) VALUES ",
            quote_table(&self.table),
            quoted.join(", ")
        );
        let sets: Vec<String> = all
            .iter()
            .filter(|c| !self.layout.key().contains(c))
            .map(|c| format!("{0} = VALUES({0})", quoted[*c]))
            .collect();
        let tail = if sets.is_empty() {
            let k = &quoted[self.layout.key()[0]];
            format!(" ON DUPLICATE KEY UPDATE {k} = {k}")
        } else {
            format!(" ON DUPLICATE KEY UPDATE {}", sets.join(", "))
        };
        let ncols = self.metas.len().max(1);
        let sizes: Vec<usize> = vals
            .iter()
            .map(|v| v.iter().map(Val::size).sum::<usize>() + 2 * ncols + 3)
            .collect();
        for chunk in plan_chunks(&sizes, self.max_bytes, MAX_PLACEHOLDERS / ncols) {
            let part: Vec<&Vec<Val>> = vals[chunk].iter().collect();
            let sql = build_sql(&head, &tail, ncols, part.len());
            sqlx::query_with(&sql, build_args(&self.metas, &part)?)
                .persistent(false)
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    ConnectorError::query(
                        format!("applying inserts and updates to {}", self.table),
                        e,
                    )
                })?;
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
        let set_cols: Vec<usize> = (0..self.metas.len())
            .filter(|c| !unchanged.contains(c) && (moved || !key.contains(c)))
            .collect();
        let mut sets: Vec<String> = set_cols
            .iter()
            .map(|c| format!("{} = ?", quote_ident(&self.metas[*c].name)))
            .collect();
        if sets.is_empty() {
            // Nothing to write but the row's presence to check (rows matched are counted).
            let k = quote_ident(&self.metas[key[0]].name);
            sets.push(format!("{k} = {k}"));
        }
        let sql = format!(
            "UPDATE {} SET {} WHERE {}",
            quote_table(&self.table),
            sets.join(", "),
            self.key_match()
        );
        let set_arrays: Vec<ArrayRef> = set_cols.iter().map(|c| data[*c].clone()).collect();
        let mut vals = self.values(&set_arrays, &set_cols, row)?;
        vals.extend(self.values(keys, key, row)?);
        let metas: Vec<ColMeta> = set_cols
            .iter()
            .chain(key)
            .map(|c| self.metas[*c].clone())
            .collect();
        let done = sqlx::query_with(&sql, build_args(&metas, &[&vals])?)
            .persistent(false)
            .execute(&mut **tx)
            .await
            .map_err(|e| {
                ConnectorError::query(format!("applying an update to {}", self.table), e)
            })?;
        if done.rows_affected() == 0 && tolerate_missing {
            return Ok(0);
        }
        if done.rows_affected() != 1 {
            return Err(schema(format!(
                "{}: an updated row is not in the target, and the change did not carry all \
                 its values (unchanged TOAST): the target needs a new snapshot",
                self.table
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
        let metas: Vec<ColMeta> = key.iter().map(|c| self.metas[*c].clone()).collect();
        let vals = rows
            .iter()
            .map(|r| self.values(keys, key, *r))
            .collect::<Result<Vec<_>, _>>()?;
        let list = metas
            .iter()
            .map(|m| quote_ident(&m.name))
            .collect::<Vec<_>>()
            .join(", ");
        let head = format!(
            "DELETE FROM {} WHERE ({list}) IN (",
            quote_table(&self.table)
        );
        let sizes: Vec<usize> = vals
            .iter()
            .map(|v| v.iter().map(Val::size).sum::<usize>() + 2 * key.len() + 3)
            .collect();
        let mut deleted = 0;
        for chunk in plan_chunks(&sizes, self.max_bytes, MAX_PLACEHOLDERS / key.len().max(1)) {
            let part: Vec<&Vec<Val>> = vals[chunk].iter().collect();
            let sql = build_sql(&head, ")", key.len(), part.len());
            let done = sqlx::query_with(&sql, build_args(&metas, &part)?)
                .persistent(false)
                .execute(&mut **tx)
                .await
                .map_err(|e| {
                    ConnectorError::query(format!("applying deletes to {}", self.table), e)
                })?;
            deleted += done.rows_affected();
        }
        Ok(deleted)
    }
}
