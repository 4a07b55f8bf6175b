//! The contract every reader and writer implements.
//!
//! Sources and sinks are kept apart (as in vector's sources/sinks): a
//! source plans splits and reads one split into Arrow batches; a sink
//! prepares the target once per job, then one writer per task writes and
//! commits batches. The same code runs in one process and split across the
//! tunnel; only what carries the batches between them changes.

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::error::ConnectorError;
use crate::spec::{Position, ReadSpec, Split, TableSchema, WriteSpec};

/// A readable data source (one database or file location).
#[async_trait]
pub trait Source: Send + Sync {
    /// The Arrow schema of what `spec` reads, columns in read order.
    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, ConnectorError>;

    /// Every column name of the table or query `spec` reads from, whether
    /// or not Ferry can carry its type: what a row filter may refer to.
    async fn column_names(&self, spec: &ReadSpec) -> Result<Vec<String>, ConnectorError> {
        let all = ReadSpec {
            columns: Vec::new(),
            ..spec.clone()
        };
        let schema = self.schema(&all).await?;
        Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
    }

    /// The whole table `spec` reads (every column, not only those read): keys, indexes,
    /// foreign keys, defaults, identity, comments. `None` for a query or a source without
    /// such things (files).
    async fn describe(&self, spec: &ReadSpec) -> Result<Option<TableSchema>, ConnectorError> {
        let _ = spec;
        Ok(None)
    }

    /// The tables of the source's own database (MySQL) or schemas (PostgreSQL: every
    /// schema but the system's, `schema.table` outside the current schema; SQLite: `main`),
    /// and what a whole-database job does not migrate (views, routines). Empty for files.
    async fn list_tables(&self) -> Result<TableListing, ConnectorError> {
        Ok(TableListing::default())
    }

    /// Cuts the read into at most about `max_splits` splits (DataX splitPk).
    /// Rows with a NULL split key get a split of their own.
    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, ConnectorError>;

    /// Rows `spec` will read, when the source can estimate it without a
    /// scan (table statistics); used for the ETA, never for correctness.
    async fn estimate_rows(&self, spec: &ReadSpec) -> Option<u64> {
        let _ = spec;
        None
    }

    /// What the source's login may do beyond reading what jobs read (a superuser, file or
    /// write privileges), each as a sentence saying what is held and what the login should
    /// be instead; empty when nothing is amiss. Reads are read-only whatever the login holds,
    /// but a login that can read server files or run programs gives a job's SQL more than
    /// tables. Never fails: a check that could not run is itself a warning.
    async fn privilege_warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// Opens a change stream of `spec`'s tables (the reader's policy checked them).
    /// Sources without change data capture refuse.
    async fn open_changes(
        &self,
        spec: &crate::stream::ChangeSpec,
    ) -> Result<Box<dyn crate::stream::ChangeStream>, ConnectorError> {
        let _ = spec;
        Err(ConnectorError::config(
            "changes",
            "this kind of source has no change stream",
        ))
    }

    /// The hash kind of each column `spec` reads under the PostgreSQL verification scheme
    /// ([`ferry_model::Scheme::Postgres`]), when this source computes them inside the
    /// database; `None` otherwise.
    async fn hash_kinds(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<Vec<ferry_model::PgHash>>, ConnectorError> {
        let _ = spec;
        Ok(None)
    }

    /// The buckets pass of `ask` over one split computed inside the database: (bucket, rows,
    /// hash sum) of every non-empty bucket. `None` when the source cannot: the caller reads
    /// the rows and hashes them itself.
    async fn bucket_sums(
        &self,
        spec: &ReadSpec,
        split: &Split,
        ask: &ferry_model::VerifyAsk,
    ) -> Result<Option<Vec<(u32, u64, u64)>>, ConnectorError> {
        let _ = (spec, split, ask);
        Ok(None)
    }

    /// Reads one split, sending batches of `schema` (at most
    /// `spec.fetch_size` rows each) into `out`. A full channel slows the
    /// read down (backpressure). Returns the rows read.
    async fn read(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<u64, ConnectorError>;
}

/// `batch` carrying `changes` (values its read changed on purpose) in its schema
/// metadata, for whoever sends or writes it ([`take_changes`]). A source calls it on a
/// batch it changed values in.
pub fn tag_changes(
    batch: RecordBatch,
    changes: &crate::spec::Changes,
) -> Result<RecordBatch, ConnectorError> {
    if changes.is_empty() {
        return Ok(batch);
    }
    let json = serde_json::to_string(changes)
        .map_err(|e| ConnectorError::Schema(format!("encoding changed values: {e}")))?;
    let mut meta = batch.schema().metadata().clone();
    meta.insert(crate::spec::Changes::METADATA_KEY.to_string(), json);
    let schema = arrow_schema::Schema::new_with_metadata(batch.schema().fields().clone(), meta);
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(schema),
        batch.columns().to_vec(),
    )?)
}

/// The changes [`tag_changes`] put on `batch`, and the batch without them (its schema as the
/// read declared it).
pub fn take_changes(batch: RecordBatch) -> (RecordBatch, crate::spec::Changes) {
    let key = crate::spec::Changes::METADATA_KEY;
    let Some(json) = batch.schema().metadata().get(key).cloned() else {
        return (batch, Default::default());
    };
    let changes = serde_json::from_str(&json).unwrap_or_default();
    let mut meta = batch.schema().metadata().clone();
    meta.remove(key);
    let schema = arrow_schema::Schema::new_with_metadata(batch.schema().fields().clone(), meta);
    match RecordBatch::try_new(std::sync::Arc::new(schema), batch.columns().to_vec()) {
        Ok(b) => (b, changes),
        Err(_) => (batch, changes),
    }
}

/// What a source's database holds, for a whole-database job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableListing {
    /// Base tables, as a job names them, in name order.
    pub tables: Vec<String>,
    /// Each table's row count as the database estimates it (statistics, not a count; 0
    /// when unknown), in `tables`' order; empty when the source estimates none. A
    /// whole-database job starts the largest tables first.
    pub rows: Vec<u64>,
    /// Views, routines and the like, one line each (`view shop_totals`): listed in the
    /// summary as not migrated.
    pub not_migrated: Vec<String>,
}

/// A writable target.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Once per job, before any writer: checks (or creates, with
    /// `create_table`) the target table for `schema` and runs `pre_sql`.
    async fn prepare(&self, spec: &WriteSpec, schema: &SchemaRef) -> Result<(), ConnectorError>;

    /// Whether the target table `spec` names exists (`None`: the target cannot tell, files).
    async fn table_exists(&self, spec: &WriteSpec) -> Result<Option<bool>, ConnectorError> {
        let _ = spec;
        Ok(None)
    }

    /// Before a whole-database job loads any table: empties (`drop`: drops) those of the
    /// tables `specs` name that exist, all together, so foreign keys among them do not
    /// stand in the way. A foreign key from a table outside `specs` still does: the
    /// target refuses, and nothing is emptied.
    async fn clear_tables(&self, specs: &[WriteSpec], drop: bool) -> Result<(), ConnectorError> {
        let _ = (specs, drop);
        Ok(())
    }

    /// Before a whole-database job loads tables that exist: drops the foreign keys among
    /// the tables `specs` name (rows of one may arrive before the rows they refer to) and
    /// returns, per table (an index into `specs`), the steps that add them again, for
    /// [`apply_ddl`](Self::apply_ddl) once every table is loaded. Targets that do not
    /// check foreign keys while loading return nothing.
    async fn suspend_foreign_keys(
        &self,
        specs: &[WriteSpec],
    ) -> Result<Vec<(usize, Vec<crate::ddl::DdlStep>)>, ConnectorError> {
        let _ = specs;
        Ok(Vec::new())
    }

    /// `ferry verify --repair`: deletes the rows whose key `columns` hold one of `keys` (each
    /// the key's values as text, in key order, compared with the columns cast to text).
    /// Returns the rows deleted. Targets without rows to delete by key (files) refuse.
    async fn delete_keys(
        &self,
        spec: &WriteSpec,
        columns: &[String],
        keys: &[Vec<String>],
    ) -> Result<u64, ConnectorError> {
        let _ = (columns, keys);
        Err(ConnectorError::config(
            "table",
            format!("`{}`: this target cannot delete rows by key", spec.table),
        ))
    }

    /// A writer for one task.
    async fn writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError>;

    /// A writer for split `split` of job `job` (a key unique across
    /// brokers): its [`SinkWriter::write_at`] commits the split's
    /// checkpoint with each batch, and a file part is named for the split,
    /// so writing the split again replaces it.
    async fn task_writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
        job: &str,
        split: u32,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let _ = (job, split);
        self.writer(spec, schema).await
    }

    /// Whether this target commits checkpoints with the rows (see
    /// [`checkpoint`](Self::checkpoint)): database targets do.
    fn records_checkpoints(&self, spec: &WriteSpec) -> bool {
        let _ = spec;
        false
    }

    /// The last checkpoint of split `split` of job `job` committed in the
    /// target; `None` when nothing of the split was committed.
    async fn checkpoint(
        &self,
        spec: &WriteSpec,
        job: &str,
        split: u32,
    ) -> Result<Option<Checkpoint>, ConnectorError> {
        let _ = (spec, job, split);
        Ok(None)
    }

    /// Removes what the target holds of job `job`'s progress (its
    /// checkpoints), once the job succeeded.
    async fn forget(&self, spec: &WriteSpec, job: &str) -> Result<(), ConnectorError> {
        let _ = (spec, job);
        Ok(())
    }

    /// The DDL that creates `spec.table` from `spec.described` (the source table's keys,
    /// indexes, defaults, identity) for rows of `schema`, by stage; `None` when there is no
    /// description or the target has no DDL (files). Touches nothing.
    fn table_ddl(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Option<crate::ddl::TableDdl>, ConnectorError> {
        let _ = (spec, schema);
        Ok(None)
    }

    /// Runs DDL steps of [`table_ddl`](Self::table_ddl) after the load (indexes, identity
    /// counters, foreign keys), skipping an index or foreign key whose name exists already,
    /// so a job picked up again can run them again.
    async fn apply_ddl(
        &self,
        spec: &WriteSpec,
        steps: &[crate::ddl::DdlStep],
    ) -> Result<(), ConnectorError> {
        let _ = (spec, steps);
        Ok(())
    }

    /// Once per job after every task succeeded: runs `post_sql`.
    async fn finish(&self, spec: &WriteSpec) -> Result<(), ConnectorError>;

    /// A target applying a change stream of `tables` (each a write spec and the layout of
    /// its change batches), recording the stream's checkpoint as split `split` of `job`.
    /// Targets that cannot apply changes refuse.
    async fn change_target(
        &self,
        tables: &[(WriteSpec, ferry_change::Layout)],
        job: &str,
        split: u32,
    ) -> Result<Box<dyn crate::stream::ChangeTarget>, ConnectorError> {
        let _ = (tables, job, split);
        Err(ConnectorError::config(
            "writer",
            "this kind of target cannot apply a change stream yet",
        ))
    }

    /// Instead of [`prepare`](Self::prepare) for a job picked up again
    /// (after a broker restart): the target was prepared already, so it is
    /// only checked (or created, if a crash came first) — `pre_sql` does not
    /// run twice.
    async fn reattach(&self, spec: &WriteSpec, schema: &SchemaRef) -> Result<(), ConnectorError> {
        let mut spec = spec.clone();
        spec.pre_sql.clear();
        spec.create_table = crate::existing::creates(&spec);
        // The rows there are the job's own: not emptied, dropped or refused again.
        spec.existing = Some(crate::existing::Existing::Append);
        self.prepare(&spec, schema).await
    }

    /// Whether a task may be written again from its start after some of
    /// its batches were committed, without the target ending up with
    /// them twice: true where a write replaces by key, or where nothing
    /// of a task is visible before its writer closes.
    fn replay_safe(&self, spec: &WriteSpec) -> bool {
        spec.write_mode != crate::spec::WriteMode::Insert
    }
}

/// Writes batches of one task.
#[async_trait]
pub trait SinkWriter: Send {
    /// Writes `batch` and commits it (one transaction per call). Rows the
    /// target cannot hold are not written; they come back as dirty records
    /// and the other rows are written.
    async fn write(&mut self, batch: &RecordBatch) -> Result<WriteOutcome, ConnectorError>;

    /// [`write`](Self::write), committing `checkpoint` (where the split
    /// stands after this batch) in the same transaction as the rows, on
    /// writers from [`Sink::task_writer`] of a target that
    /// [records checkpoints](Sink::records_checkpoints). Others ignore it.
    /// `checkpoint.written` counts the rows written before this batch; the
    /// stored checkpoint adds those this call writes.
    async fn write_at(
        &mut self,
        batch: &RecordBatch,
        checkpoint: &Checkpoint,
    ) -> Result<WriteOutcome, ConnectorError> {
        let _ = checkpoint;
        self.write(batch).await
    }

    /// Ends the task's writing: commits anything held back (a file part
    /// becomes visible) and releases the connection. Called only when the
    /// task succeeded; a failed task drops the writer, which must discard
    /// what is not committed.
    async fn close(self: Box<Self>) -> Result<(), ConnectorError>;
}

/// Where a split stands: what of it is committed in the target.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Batches committed (transactions), across attempts.
    pub seq: u64,
    /// Source rows consumed: written or dirty.
    pub rows: u64,
    /// Rows written.
    pub written: u64,
    /// The position of the last row consumed, for a split read in the
    /// order of a unique key; the split resumes after it. `None` when the
    /// split has no such order: then it can only be written again from its
    /// start.
    pub position: Option<Position>,
}

impl Checkpoint {
    /// A checkpoint as a target's checkpoint table stores it (the position
    /// as text, column `last_key`: [`Position::to_stored`]); `table` names
    /// it in errors.
    pub(crate) fn from_stored(
        table: &str,
        seq: i64,
        rows: i64,
        written: i64,
        last_key: Option<String>,
    ) -> Result<Self, ConnectorError> {
        let position = last_key
            .map(|k| {
                Position::from_stored(&k).map_err(|e| {
                    ConnectorError::Schema(format!("checkpoint table {table} holds {e}"))
                })
            })
            .transpose()?;
        Ok(Self {
            seq: seq.max(0) as u64,
            rows: rows.max(0) as u64,
            written: written.max(0) as u64,
            position,
        })
    }
}

/// A database writer's statement that records its split's checkpoint, and
/// for which split.
pub(crate) struct CheckpointSql {
    pub upsert: String,
    pub job: String,
    pub split: u32,
}

/// What one `write` did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct WriteOutcome {
    pub written: u64,
    pub dirty: Vec<DirtyRecord>,
}

/// A row the target could not hold.
#[derive(Debug, Clone, PartialEq)]
pub struct DirtyRecord {
    /// Row index within the batch.
    pub row: usize,
    /// The column at fault, when known.
    pub column: Option<String>,
    /// Why it was refused.
    pub reason: String,
    /// The row, rendered as JSON for the dirty-record file.
    pub record: serde_json::Value,
}
