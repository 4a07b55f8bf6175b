//! The contract of change streams: a source's stream of committed changes
//! ([`ChangeStream`], opened by [`crate::Source::open_changes`]) and a target that applies
//! them ([`ChangeTarget`], from [`crate::Sink::change_target`]).
//!
//! A stream is one split of its tables whose [`Position`] is the source's (an LSN, a binlog
//! file and offset): the same model as a snapshot split, resumed from the position the
//! target committed last.

use std::sync::Arc;

use arrow_array::RecordBatch;
use async_trait::async_trait;
use ferry_change::Layout;

use crate::error::ConnectorError;
use crate::spec::{Position, ReadSpec};
use crate::traits::Checkpoint;

/// What a change stream reads, as the agent checked it.
#[derive(Debug, Clone)]
pub struct ChangeSpec {
    /// The source's replication slot (PostgreSQL), from the agent's config.
    pub slot: String,
    /// The publication the slot streams through (PostgreSQL), from the agent's config.
    pub publication: String,
    /// The base of the replica id the stream registers with (MySQL), from the agent's
    /// config; the stream adds a number of its tables, since a server keeps one replica per
    /// id and drops the other.
    pub server_id: u32,
    /// Whom the stream serves (the job, as the broker names it): a MySQL stream's replica
    /// id is of its owner and tables, so two jobs' streams of one table do not displace
    /// each other, while a restarted stream keeps its id.
    pub owner: String,
    /// The tables, each a read its policy allows; events name them by index here.
    pub tables: Vec<ReadSpec>,
    /// Resume after this position (what the target committed); `None`: from the source's
    /// own saved position (a new slot starts now).
    pub start: Option<Position>,
    /// Most rows in one change batch.
    pub batch_rows: usize,
}

/// What a change stream yields, in commit order.
#[derive(Debug, Clone)]
pub enum ChangeEvent {
    /// Changes of `tables[table]`, laid out by `layout` (a new layout after the table's
    /// columns changed).
    Changes {
        table: usize,
        layout: Layout,
        batch: RecordBatch,
    },
    /// The changes since the previous commit form one source transaction, committed at
    /// `position`; acknowledge it once they are applied.
    Commit {
        position: Position,
        /// Microseconds since the Unix epoch.
        commit_time_us: i64,
    },
    /// Nothing pending; the source is at `position` (a quiet database's position moves).
    Idle { position: Position },
}

/// A running change stream.
#[async_trait]
pub trait ChangeStream: Send {
    /// The next event; `None` once the stream ended.
    ///
    /// Cancel-safe: a caller may wait on it in a `select!` beside other work (the stream's
    /// acknowledgements) without losing an event.
    async fn next(&mut self) -> Result<Option<ChangeEvent>, ConnectorError>;

    /// Everything up to `position` (a commit's) is applied: the source may forget it.
    fn ack(&mut self, position: &Position) -> Result<(), ConnectorError>;

    /// What measures how far this stream is behind its source, apart from the stream itself
    /// (so a stream held up by its consumer is measured all the same); `None` where the
    /// source cannot say.
    fn source_end(&self) -> Option<Arc<dyn SourceEnd>> {
        None
    }

    /// Stops the stream, after telling the source the last acknowledged position where it
    /// can.
    async fn stop(self: Box<Self>) -> Result<(), ConnectorError>;
}

/// How far a change stream is behind its source's log.
#[async_trait]
pub trait SourceEnd: Send + Sync {
    /// Bytes of the source's log written after `applied` (a position the stream gave), as
    /// the source reports its end now; `None` when it cannot say (the position's log file
    /// is gone).
    async fn behind(&self, applied: &Position) -> Result<Option<u64>, ConnectorError>;
}

/// A target applying one change stream's tables: a source transaction's batches are applied
/// as they arrive inside one open target transaction (so a transaction of any size needs
/// memory for one batch), which [`commit`](ChangeTarget::commit) ends with the stream's
/// checkpoint.
#[async_trait]
pub trait ChangeTarget: Send {
    /// Applies one change batch of table `table` in the open transaction (beginning one if
    /// none is open). Returns the rows applied.
    async fn apply(&mut self, table: usize, batch: &RecordBatch) -> Result<u64, ConnectorError>;

    /// Records `checkpoint` and commits the open transaction (or records it alone).
    async fn commit(&mut self, checkpoint: &Checkpoint) -> Result<(), ConnectorError>;

    /// Rolls back the open transaction, if any (the stream broke in the middle of one).
    async fn rollback(&mut self);

    /// While `on`, an update that did not send every value (PostgreSQL's unchanged TOAST)
    /// and finds no row is skipped instead of failing the stream. Only for catching up after
    /// a snapshot read later than the stream's start: the row was deleted after the update,
    /// before the snapshot read it, and the delete follows in the stream.
    fn tolerate_missing(&mut self, on: bool) {
        let _ = on;
    }

    /// Table `table`'s batches have `layout` from now on, whose read columns are the old
    /// ones followed by new ones: the target adds the new columns (in the open transaction)
    /// and returns their names.
    async fn add_columns(
        &mut self,
        table: usize,
        layout: &Layout,
    ) -> Result<Vec<String>, ConnectorError>;
}

/// The first of a change stream's tables (whose checkpoint table holds the stream's
/// position); a stream without tables is refused.
pub(crate) fn first_table(
    tables: &[(crate::spec::WriteSpec, Layout)],
) -> Result<&crate::spec::WriteSpec, ConnectorError> {
    tables
        .first()
        .map(|(spec, _)| spec)
        .ok_or_else(|| ConnectorError::config("tables", "a change stream needs a table"))
}
