//! Applying a change batch by key, run by run in the rows' order: the driver the MySQL and
//! SQLite change targets share (PostgreSQL's stages runs through COPY and applies a group's
//! net effect instead). A target supplies its statements ([`KeyWrites`]); the order, and
//! which statement a run needs, is decided here from [`ferry_change::Rows::steps`].

use arrow_array::{ArrayRef, RecordBatch};
use ferry_change::{Layout, Step};

use crate::error::ConnectorError;

/// A target's statements for one table, inside its open transaction `Tx`.
#[async_trait::async_trait]
pub(crate) trait KeyWrites<Tx: Send>: Sync {
    /// The layout of the table's change batches.
    fn layout(&self) -> &Layout;

    /// Writes `rows` of `data` (the read columns) whole, inserting or replacing by key.
    async fn upsert(
        &self,
        tx: &mut Tx,
        data: &[ArrayRef],
        rows: &[usize],
    ) -> Result<u64, ConnectorError>;

    /// Updates the row at `row`'s key, or at its old key (`old_key`: a key change, which
    /// writes the key too), to `row`'s values but for `unchanged` ones (not sent). A row
    /// that is not there fails, unless `tolerate_missing` (then 0).
    async fn update(
        &self,
        tx: &mut Tx,
        data: &[ArrayRef],
        old_key: Option<&[ArrayRef]>,
        row: usize,
        unchanged: &[usize],
        tolerate_missing: bool,
    ) -> Result<u64, ConnectorError>;

    /// Deletes the rows whose key (the key columns' arrays `keys`) is at `rows`.
    async fn delete(
        &self,
        tx: &mut Tx,
        keys: &[ArrayRef],
        rows: &[usize],
    ) -> Result<u64, ConnectorError>;
}

/// Applies `batch` (checked against the layout first: it came from the network) through
/// `w` in `tx`, run by run. Returns the rows applied.
pub(crate) async fn apply_batch<Tx: Send, W: KeyWrites<Tx>>(
    w: &W,
    tx: &mut Tx,
    batch: &RecordBatch,
    tolerate_missing: bool,
) -> Result<u64, ConnectorError> {
    let layout = w.layout();
    let rows = layout
        .rows(batch)
        .map_err(|e| ConnectorError::Schema(e.to_string()))?;
    let data: Vec<ArrayRef> = (0..layout.columns())
        .map(|c| rows.column(c).clone())
        .collect();
    let key = layout.key();
    let new_key: Vec<ArrayRef> = key.iter().map(|k| data[*k].clone()).collect();
    let old_key: Vec<ArrayRef> = (0..key.len()).map(|i| rows.old_key(i).clone()).collect();
    let mut applied = 0;
    for step in rows.steps() {
        applied += match step {
            Step::Upsert { rows, unchanged } if unchanged.is_empty() => {
                w.upsert(tx, &data, &rows).await?
            }
            Step::Upsert { rows, unchanged } => {
                let mut n = 0;
                for r in rows {
                    n += w
                        .update(tx, &data, None, r, &unchanged, tolerate_missing)
                        .await?;
                }
                n
            }
            // The row at the old key holds the values the change did not send: it must be
            // there, also while catching up.
            Step::Move { row, unchanged } => {
                w.update(tx, &data, Some(&old_key), row, &unchanged, false)
                    .await?
            }
            Step::Delete { rows, old } => {
                let keys = if old { &old_key } else { &new_key };
                w.delete(tx, keys, &rows).await?
            }
        };
    }
    Ok(applied)
}
