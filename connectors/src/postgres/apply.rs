//! Applying change batches to a PostgreSQL table: one source transaction in one target
//! transaction, with the stream's checkpoint (its source position, as a split's) recorded in
//! that same transaction, so a replay after any crash finds what was applied and skips it.
//!
//! Rows are applied in their order, in runs: consecutive inserts and updates that leave the
//! same columns unchanged become one upsert (staged with a binary COPY, the last row of a key
//! winning), consecutive deletes one `DELETE … USING`. An update that moved a row to another
//! key deletes the old key first. Columns an update left unchanged (PostgreSQL's unchanged
//! TOAST) are not written.

use arrow_array::{ArrayRef, RecordBatch};
use ferry_change::{Layout, Step};
use sqlx::{Executor, PgPool, Postgres};

use super::{binary, q, quote_ident, record_checkpoint, PgCol, PostgresSink};
use crate::error::ConnectorError;
use crate::spec::WriteSpec;
use crate::stream::ChangeTarget;
use crate::traits::{Checkpoint, CheckpointSql};

/// Applies the change batches of one stream's tables: each source transaction in one
/// target transaction, with the stream's checkpoint.
pub struct PgChangeTarget {
    pool: PgPool,
    specs: Vec<WriteSpec>,
    tables: Vec<PgApplier>,
    checkpoint: CheckpointSql,
    /// The open transaction: a source transaction being applied.
    tx: Option<sqlx::Transaction<'static, Postgres>>,
    /// Each table's batches not applied yet (all in the open transaction).
    pending: Vec<Vec<RecordBatch>>,
    pending_rows: usize,
    /// See [`ChangeTarget::tolerate_missing`].
    tolerate_missing: bool,
}

/// Rows held before they are applied: batches of a transaction (or of several grouped into
/// one) are applied together, by their net effect where it does not depend on their order.
const PENDING_ROWS: usize = 20_000;

/// Applies change batches of one table, inside a transaction it is given.
struct PgApplier {
    qualified: String,
    names: Vec<String>,
    cols: Vec<PgCol>,
    layout: Layout,
}

impl PostgresSink {
    /// A target for a change stream of `tables` (each a table's write spec and the layout of
    /// its change batches, indexed as [`ChangeTarget::apply`] names them), recording its
    /// checkpoint as split `split` of `job` in the first table's checkpoint table (where
    /// [`crate::Sink::checkpoint`] finds it). Each table needs its stream key as its primary
    /// key or a unique index.
    pub(crate) async fn open_change_target(
        &self,
        tables: &[(WriteSpec, Layout)],
        job: &str,
        split: u32,
    ) -> Result<PgChangeTarget, ConnectorError> {
        let first = crate::stream::first_table(tables)?;
        let mut appliers = Vec::with_capacity(tables.len());
        for (spec, layout) in tables {
            appliers.push(self.applier(spec, layout).await?);
        }
        self.ensure_checkpoints(first).await?;
        Ok(PgChangeTarget {
            pool: self.pool.clone(),
            specs: tables.iter().map(|(s, _)| s.clone()).collect(),
            pending: vec![Vec::new(); appliers.len()],
            tables: appliers,
            checkpoint: super::checkpoint_sql(first, job, split)?,
            tx: None,
            pending_rows: 0,
            tolerate_missing: false,
        })
    }

    /// The applier of `layout`'s batches into `spec`'s table, as the table is now.
    async fn applier(
        &self,
        spec: &WriteSpec,
        layout: &Layout,
    ) -> Result<PgApplier, ConnectorError> {
        if layout.key().is_empty() {
            return Err(ConnectorError::Schema(format!(
                "{}: a change stream applies by key, and the source table has no primary key",
                spec.table
            )));
        }
        let (qualified, names, cols) = self.target_columns(spec, &layout.read_schema()).await?;
        Ok(PgApplier {
            qualified,
            names,
            cols,
            layout: layout.clone(),
        })
    }
}

impl PgChangeTarget {
    /// The open transaction, begun if none is.
    async fn tx(&mut self) -> Result<&mut sqlx::Transaction<'static, Postgres>, ConnectorError> {
        if self.tx.is_none() {
            self.tx = Some(self.pool.begin().await.map_err(q("begin"))?);
        }
        self.tx
            .as_mut()
            .ok_or_else(|| ConnectorError::Schema("no open transaction".into()))
    }

    /// Applies what is pending, table by table, in the open transaction.
    async fn flush(&mut self) -> Result<(), ConnectorError> {
        for table in 0..self.tables.len() {
            self.flush_table(table).await?;
        }
        self.pending_rows = 0;
        Ok(())
    }

    /// Applies table `table`'s pending batches: by their net effect (one delete and one
    /// upsert) where it does not depend on their order, else row by row in order. The net
    /// effect runs under a savepoint: should its order trip a constraint the source's order
    /// did not (a unique index other than the key), the rows are applied in order instead.
    async fn flush_table(&mut self, table: usize) -> Result<(), ConnectorError> {
        let batches = std::mem::take(&mut self.pending[table]);
        if batches.is_empty() {
            return Ok(());
        }
        self.tx().await?;
        let (Some(applier), Some(tx)) = (self.tables.get(table), self.tx.as_mut()) else {
            return Err(ConnectorError::Schema(format!(
                "table {table} is not one of the stream's"
            )));
        };
        let net = applier
            .layout
            .net(&batches)
            .map_err(|e| ConnectorError::Schema(e.to_string()))?;
        if let Some(net) = net {
            (&mut **tx)
                .execute("SAVEPOINT ferry_net")
                .await
                .map_err(q("savepoint"))?;
            match applier.apply_net(tx, &net).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::debug!("applying the net effect failed, applying in order: {e}");
                    (&mut **tx)
                        .execute("ROLLBACK TO SAVEPOINT ferry_net")
                        .await
                        .map_err(q("rollback to savepoint"))?;
                }
            }
        }
        for batch in &batches {
            applier.apply(tx, batch, self.tolerate_missing).await?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl ChangeTarget for PgChangeTarget {
    async fn apply(&mut self, table: usize, batch: &RecordBatch) -> Result<u64, ConnectorError> {
        if table >= self.pending.len() {
            return Err(ConnectorError::Schema(format!(
                "change batch of table {table}, which the stream does not have"
            )));
        }
        // Rows of other tables held so far go first: across tables, the source's order is
        // kept (a row may refer to one written just before it).
        if self.pending_rows > 0 && self.pending[table].is_empty() {
            self.flush().await?;
        }
        let Some(pending) = self.pending.get_mut(table) else {
            return Ok(0);
        };
        pending.push(batch.clone());
        self.pending_rows += batch.num_rows();
        if self.pending_rows >= PENDING_ROWS {
            self.flush().await?;
        }
        Ok(batch.num_rows() as u64)
    }

    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError> {
        self.flush().await?;
        self.tx().await?;
        let Some(mut tx) = self.tx.take() else {
            return Err(ConnectorError::Schema("no open transaction".into()));
        };
        record_checkpoint(&mut tx, &self.checkpoint, checkpoint).await?;
        tx.commit().await.map_err(q("commit"))?;
        Ok(())
    }

    fn tolerate_missing(&mut self, on: bool) {
        self.tolerate_missing = on;
    }

    async fn rollback(&mut self) {
        for p in &mut self.pending {
            p.clear();
        }
        self.pending_rows = 0;
        if let Some(tx) = self.tx.take() {
            let _ = tx.rollback().await;
        }
    }

    async fn add_columns(
        &mut self,
        table: usize,
        layout: &Layout,
    ) -> Result<Vec<String>, ConnectorError> {
        // Rows of the old shape go first.
        self.flush().await?;
        let (Some(spec), Some(old)) = (self.specs.get(table).cloned(), self.tables.get(table))
        else {
            return Err(ConnectorError::Schema(format!(
                "table {table} is not one of the stream's"
            )));
        };
        let had = old.layout.columns();
        let fields = layout.schema().fields();
        let mut added = Vec::new();
        let qualified = old.qualified.clone();
        for f in fields.iter().take(layout.columns()).skip(had) {
            let ty = super::pg_type_for(f)?;
            let sql = format!(
                "ALTER TABLE {qualified} ADD COLUMN IF NOT EXISTS {} {ty}",
                quote_ident(f.name())
            );
            (&mut **self.tx().await?)
                .execute(sql.as_str())
                .await
                .map_err(q("add a column the source added"))?;
            added.push(f.name().clone());
        }
        // The new columns exist only inside the open transaction: resolve them there.
        let (qualified, names, cols) =
            super::target_columns_on(self.tx().await?, &spec, &layout.read_schema()).await?;
        let applier = PgApplier {
            qualified,
            names,
            cols,
            layout: layout.clone(),
        };
        if let Some(slot) = self.tables.get_mut(table) {
            *slot = applier;
        }
        Ok(added)
    }
}

impl PgApplier {
    /// Applies the net effect of some batches in `tx`: the deletes, then the upserts (their
    /// keys differ, so the order between them does not matter).
    async fn apply_net(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        net: &ferry_change::Net,
    ) -> Result<(), ConnectorError> {
        let b = &net.batch;
        let columns = self.layout.columns();
        if !net.deletes.is_empty() {
            let keys: Vec<ArrayRef> = self
                .layout
                .key()
                .iter()
                .map(|k| b.column(*k).clone())
                .collect();
            self.delete(tx, &keys, &net.deletes).await?;
        }
        if !net.deletes_old.is_empty() {
            let old: Vec<ArrayRef> = (0..self.layout.key().len())
                .map(|i| b.column(columns + 2 + i).clone())
                .collect();
            self.delete(tx, &old, &net.deletes_old).await?;
        }
        if !net.upserts.is_empty() {
            let data: Vec<ArrayRef> = (0..columns).map(|c| b.column(c).clone()).collect();
            self.upsert(tx, &data, &net.upserts, &[], false).await?;
        }
        Ok(())
    }

    /// Applies `batch` in `tx`. Returns the rows applied.
    async fn apply(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        batch: &RecordBatch,
        tolerate_missing: bool,
    ) -> Result<u64, ConnectorError> {
        let mut applied = 0u64;
        {
            let rows = self
                .layout
                .rows(batch)
                .map_err(|e| ConnectorError::Schema(e.to_string()))?;
            let data: Vec<ArrayRef> = (0..self.layout.columns())
                .map(|c| rows.column(c).clone())
                .collect();
            let old: Vec<ArrayRef> = (0..self.layout.key().len())
                .map(|i| rows.old_key(i).clone())
                .collect();
            for step in rows.steps() {
                applied += match &step {
                    Step::Upsert { rows, unchanged } => {
                        self.upsert(tx, &data, rows, unchanged, tolerate_missing)
                            .await?
                    }
                    Step::Delete { rows, old: true } => self.delete(tx, &old, rows).await?,
                    Step::Move { row, unchanged } => {
                        self.move_row(tx, &data, &old, *row, unchanged).await?
                    }
                    Step::Delete { rows, old: false } => {
                        let keys: Vec<ArrayRef> =
                            self.layout.key().iter().map(|k| data[*k].clone()).collect();
                        self.delete(tx, &keys, rows).await?
                    }
                };
            }
        }
        Ok(applied)
    }

    /// A temporary table of `cols` (without constraints), filled with `rows` of `arrays` by a
    /// binary COPY; the `unchanged` columns stage as NULL (they are not written).
    async fn stage(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        cols: &[usize],
        arrays: &[ArrayRef],
        rows: &[usize],
        unchanged: &[usize],
    ) -> Result<(), ConnectorError> {
        let list = self.list(cols);
        (&mut **tx)
            .execute(
                format!(
                    // The notice of a staging table that was not there is noise.
                    "SET LOCAL client_min_messages = warning; \
                     DROP TABLE IF EXISTS pg_temp.ferry_apply; \
                     CREATE TEMP TABLE ferry_apply ON COMMIT DROP AS \
                     SELECT {list} FROM {} WITH NO DATA",
                    self.qualified
                )
                .as_str(),
            )
            .await
            .map_err(q("creating the staging table"))?;
        let mut buf = Vec::new();
        binary::put_header(&mut buf);
        let ncols = (cols.len() as i16).to_be_bytes();
        for r in rows {
            buf.extend_from_slice(&ncols);
            for (a, c) in arrays.iter().zip(cols) {
                if unchanged.contains(c) {
                    buf.extend_from_slice(&(-1i32).to_be_bytes());
                    continue;
                }
                binary::encode_cell(a.as_ref(), *r, &self.cols[*c], &mut buf).map_err(|_| {
                    ConnectorError::Value {
                        column: self.names[*c].clone(),
                        message: format!(
                            "a change of {}: a value the column cannot hold (type {})",
                            self.qualified, self.cols[*c].type_name
                        ),
                    }
                })?;
            }
        }
        binary::put_trailer(&mut buf);
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY ferry_apply ({list}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .map_err(q("COPY FROM STDIN"))?;
        copy.send(buf).await.map_err(q("COPY FROM STDIN"))?;
        copy.finish().await.map_err(q("COPY FROM STDIN"))?;
        Ok(())
    }

    /// `t.k = <from>.k AND …` over the key.
    fn key_match(&self, from: &str) -> String {
        self.layout
            .key()
            .iter()
            .map(|c| format!("t.{0} = {from}.{0}", quote_ident(&self.names[*c])))
            .collect::<Vec<_>>()
            .join(" AND ")
    }

    /// `c = <from>.c` for the columns of `cols` that are neither key nor `unchanged`.
    fn sets(&self, cols: &[usize], unchanged: &[usize], from: &str) -> Vec<String> {
        cols.iter()
            .filter(|c| !self.layout.key().contains(c) && !unchanged.contains(c))
            .map(|c| format!("{0} = {from}.{0}", quote_ident(&self.names[*c])))
            .collect()
    }

    fn list(&self, cols: &[usize]) -> String {
        cols.iter()
            .map(|c| quote_ident(&self.names[*c]))
            .collect::<Vec<_>>()
            .join(", ")
    }

    async fn upsert(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        data: &[ArrayRef],
        rows: &[usize],
        unchanged: &[usize],
        tolerate_missing: bool,
    ) -> Result<u64, ConnectorError> {
        let all: Vec<usize> = (0..self.names.len()).collect();
        self.stage(tx, &all, data, rows, unchanged).await?;
        let key = self.list(self.layout.key());
        let sets = self.sets(&all, unchanged, "EXCLUDED");
        let distinct =
            format!("(SELECT DISTINCT ON ({key}) * FROM ferry_apply ORDER BY {key}, ctid DESC) s");
        if !unchanged.is_empty() {
            // Updates that did not send some values: the rows exist, and an INSERT would
            // check the missing values against NOT NULL before finding the conflict.
            let on = self.key_match("s");
            let sets = self.sets(&all, unchanged, "s");
            let done = (&mut **tx)
                .execute(
                    format!(
                        "UPDATE {} t SET {} FROM {distinct} WHERE {on}",
                        self.qualified,
                        sets.join(", ")
                    )
                    .as_str(),
                )
                .await
                .map_err(q("applying updates"))?;
            let keys: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM (SELECT DISTINCT {key} FROM ferry_apply) k"
            ))
            .fetch_one(&mut **tx)
            .await
            .map_err(q("counting updated keys"))?;
            if done.rows_affected() != keys as u64 && !tolerate_missing {
                return Err(ConnectorError::Schema(format!(
                    "{}: {} updated rows are not in the target, and the change did not carry \
                     all their values (unchanged TOAST): the target needs a new snapshot",
                    self.qualified,
                    keys as u64 - done.rows_affected().min(keys as u64)
                )));
            }
            return Ok(done.rows_affected());
        }
        let action = if sets.is_empty() {
            "DO NOTHING".to_string()
        } else {
            format!("DO UPDATE SET {}", sets.join(", "))
        };
        let list = self.list(&all);
        // The last row of a key wins (COPY fills a fresh table in order).
        let done = (&mut **tx)
            .execute(
                format!(
                    "INSERT INTO {} ({list}) SELECT {list} FROM {distinct} ON CONFLICT ({key}) {action}",
                    self.qualified
                )
                .as_str(),
            )
            .await
            .map_err(q("applying inserts and updates"))?;
        Ok(done.rows_affected())
    }

    /// Updates the row at `row`'s old key to its new values, but for `unchanged`.
    async fn move_row(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        data: &[ArrayRef],
        old: &[ArrayRef],
        row: usize,
        unchanged: &[usize],
    ) -> Result<u64, ConnectorError> {
        // Stage the old key first (as the key's columns), then set the row from its values.
        self.stage(tx, self.layout.key(), old, &[row], &[]).await?;
        (&mut **tx)
            .execute("ALTER TABLE ferry_apply RENAME TO ferry_apply_old")
            .await
            .map_err(q("staging the old key"))?;
        let all: Vec<usize> = (0..self.names.len()).collect();
        self.stage(tx, &all, data, &[row], unchanged).await?;
        let sets: Vec<String> = all
            .iter()
            .filter(|c| !unchanged.contains(c))
            .map(|c| format!("{0} = s.{0}", quote_ident(&self.names[*c])))
            .collect();
        let on = self.key_match("o");
        let done = (&mut **tx)
            .execute(
                format!(
                    "UPDATE {} t SET {} FROM ferry_apply s, ferry_apply_old o WHERE {on}; \
                     DROP TABLE ferry_apply_old",
                    self.qualified,
                    sets.join(", ")
                )
                .as_str(),
            )
            .await
            .map_err(q("applying a key change"))?;
        if done.rows_affected() != 1 {
            return Err(ConnectorError::Schema(format!(
                "{}: a row whose key changed is not in the target, and the change did not \
                 carry all its values (unchanged TOAST): the target needs a new snapshot",
                self.qualified
            )));
        }
        Ok(1)
    }

    /// Deletes the rows whose key is `keys` (the key columns' arrays) at `rows`.
    async fn delete(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        keys: &[ArrayRef],
        rows: &[usize],
    ) -> Result<u64, ConnectorError> {
        self.stage(tx, self.layout.key(), keys, rows, &[]).await?;
        let on = self.key_match("s");
        let done = (&mut **tx)
            .execute(
                format!(
                    "DELETE FROM {} t USING ferry_apply s WHERE {on}",
                    self.qualified
                )
                .as_str(),
            )
            .await
            .map_err(q("applying deletes"))?;
        Ok(done.rows_affected())
    }
}
