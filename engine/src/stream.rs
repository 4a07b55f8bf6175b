//! Change-stream jobs (`setting.mode: stream`): a source's committed changes applied to the
//! target, transaction by transaction, until the job is stopped.
//!
//! The stream is the job's one split (split 0) whose position is the source's (an LSN).
//! Each source transaction is applied in one target transaction that also records the
//! position, then acknowledged, and only then does the agent let the source forget it: a
//! restart of either side resumes from the position the target holds, and what the source
//! sends again up to there is skipped by the source itself (it starts after that position).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use async_trait::async_trait;
use ferry_change::Layout;
use ferry_connectors::{Checkpoint, Position, ReadSpec, Sink};
use futures::FutureExt;
use time::OffsetDateTime;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use crate::run::{described, read_spec, target_schema};
use crate::{Job, Progress, ReadError, Reading, RunError, RunOptions, Summary};

/// The stream's split: a stream job has one.
const STREAM_SPLIT: u32 = 0;
/// How long a stream runs before its loss no longer counts as a failure in a row.
const STREAM_SETTLED: Duration = Duration::from_secs(10);
/// How often a waiting stream looks whether the job was stopped.
const STOP_POLL: Duration = Duration::from_millis(200);

/// One event of a change stream as it arrives.
#[derive(Debug)]
pub enum FeedEvent {
    /// Table `index` of the stream and its read columns (again after they changed).
    Table {
        index: usize,
        table: String,
        key: Vec<usize>,
        read: SchemaRef,
    },
    /// A change batch of declared table `index`.
    Changes { index: usize, batch: RecordBatch },
    /// The changes since the previous commit form one source transaction.
    Commit {
        seq: u64,
        position: Position,
        commit_time_us: i64,
    },
}

/// A running change stream from a reader (an agent's, through the tunnel).
#[async_trait]
pub trait ChangeFeed: Send {
    /// The next event.
    async fn next(&mut self) -> Result<FeedEvent, ReadError>;
    /// Batches of table `index` have `schema` (its change layout) from now on.
    fn declare(&mut self, index: usize, schema: SchemaRef);
    /// Everything up to commit `seq` is applied and recorded in the target.
    async fn ack(&mut self, seq: u64) -> Result<(), ReadError>;
    /// Ends the stream (`error`: why, for the reader's side).
    async fn close(self: Box<Self>, error: Option<&str>);
    /// Where to store how far the stream is behind its source (bytes of its log after the
    /// position last acknowledged), whenever the reader learns it: set from outside the
    /// stream's own frames, so it is current while they are held up.
    fn report_behind(&mut self, gauge: Arc<AtomicU64>) {
        let _ = gauge;
    }
}

/// Opens change streams of a source.
#[async_trait]
pub trait ChangeReading: Send + Sync {
    /// Starts streaming `tables` after `start` (`None`: from where the source's slot stands);
    /// `attempt` counts from 1.
    async fn open_changes(
        &self,
        tables: &[ReadSpec],
        start: Option<Position>,
        attempt: u32,
    ) -> Result<Box<dyn ChangeFeed>, ReadError>;
}

/// Lists a source's tables again while a whole-database stream runs, so that tables added
/// to its selection since it started join it.
#[async_trait]
pub trait TableLister: Send + Sync {
    /// The source's tables its policy allows, as listed for the job's start.
    async fn tables(&self) -> Result<Vec<String>, String>;
}

/// A whole-database stream's source tables: as listed for its start, and what lists them
/// again while it runs (`None`: tables added later are not looked for).
pub struct Listed {
    pub tables: Vec<String>,
    pub again: Option<Arc<dyn TableLister>>,
}

/// How often a whole-database stream looks for tables added to its selection.
const NEW_TABLES_EVERY: Duration = Duration::from_secs(10);

/// A table of a stream job: what is read, where it goes, how its batches are laid out.
struct StreamTable {
    name: String,
    rspec: ReadSpec,
    wspec: ferry_connectors::WriteSpec,
    layout: Layout,
}

/// Runs stream job `job` until it is stopped through `progress` (or fails): `reading_for`
/// plans each table (its columns and key), `changes` streams them all in one stream,
/// `sink` applies them. `tables`: a whole-database job's tables, as the source lists them
/// (`None` for a one-table job).
pub async fn run_stream(
    job: &Job,
    listed: Option<Listed>,
    reading_for: &(dyn Fn(&str) -> Arc<dyn Reading> + Send + Sync),
    changes: &dyn ChangeReading,
    sink: Arc<dyn Sink>,
    opts: &RunOptions,
    progress: Arc<Progress>,
) -> Result<Summary, RunError> {
    let (tables, lister) = match listed {
        Some(l) => (Some(l.tables), l.again),
        None => (None, None),
    };
    let start = OffsetDateTime::now_utc();
    let reader = |stage| move |message| RunError::Reader { stage, message };
    let conn = |stage| move |source| RunError::Connector { stage, source };
    use ferry_connectors::Kind;
    if !matches!(job.writer.kind, Kind::Postgres | Kind::MySql | Kind::Sqlite) {
        return Err(reader("checking the job")(format!(
            "a change stream applies to PostgreSQL, MySQL/MariaDB and SQLite targets, not {}",
            job.writer.kind
        )));
    }
    let jobs = table_jobs(job, tables)?;
    let job_key: String = opts.job_key.clone().unwrap_or_else(crate::new_job_key);
    // A job that applied changes before (picked up again after a broker restart) finds its
    // position in the target, in the first table's checkpoint table: its tables are checked
    // again, not prepared anew.
    let applied_before = opts.resume.is_some()
        || sink
            .checkpoint(&jobs[0].writer.spec, &job_key, STREAM_SPLIT)
            .await
            .map_err(conn("reading the stream's position in the target"))?
            .is_some();
    // Which of a whole-database job's tables joined its stream before (a marker each in the
    // target): listed tables without one were added to the selection since, and are copied
    // before they join.
    let (jobs, mut joining, unmarked) = if job.reader.tables.is_some() {
        joined(jobs, sink.as_ref(), &job_key, applied_before).await?
    } else {
        (jobs, Vec::new(), Vec::new())
    };
    let mut streamed = Vec::with_capacity(jobs.len());
    for one in &jobs {
        let reading = reading_for(one.reader.spec.table.as_deref().unwrap_or_default());
        streamed.push(stream_table(one, reading.as_ref(), sink.as_ref(), applied_before).await?);
    }
    let first = streamed[0].wspec.clone();
    let mut layouts: Vec<Layout> = streamed.iter().map(|t| t.layout.clone()).collect();
    let mut names: Vec<String> = streamed.iter().map(|t| t.name.clone()).collect();
    let mut rspecs: Vec<ReadSpec> = streamed.iter().map(|t| t.rspec.clone()).collect();
    let mut targets: Vec<_> = streamed.into_iter().map(|t| (t.wspec, t.layout)).collect();
    mark_joined(sink.as_ref(), &targets, &job_key, &unmarked).await?;
    let mut target = sink
        .change_target(&targets, &job_key, STREAM_SPLIT)
        .await
        .map_err(conn("opening the target for changes"))?;
    let table = names.join(", ");
    let wspec = first;
    let planner = reading_for(names[0].as_str());
    let first_backoff = Duration::from_millis(job.setting.retry.backoff_ms.max(100));
    // Full + incremental: the stream's start position first, then the copy, then the stream
    // from that position (changes the copy already holds are applied again: by key, to the
    // same end).
    let mut catch_up: Option<i64> = None;
    if job.setting.mode == crate::config::Mode::SnapshotStream {
        let snapshot_key = format!("{job_key}.snapshot");
        let done = sink
            .checkpoint(&wspec, &snapshot_key, STREAM_SPLIT)
            .await
            .map_err(conn("reading the snapshot's state in the target"))?;
        catch_up = match done {
            Some(done) => done.position.as_ref().and_then(time_of),
            None => {
                let recorded = sink
                    .checkpoint(&wspec, &job_key, STREAM_SPLIT)
                    .await
                    .map_err(conn("reading the stream's position in the target"))?;
                if recorded.is_none() {
                    let mut applying = Applying {
                        layouts: &mut layouts,
                        names: &names,
                        progress: &progress,
                        catch_up: None,
                        first_only: true,
                        positioned: false,
                        grown: None,
                    };
                    applying
                        .start_position(changes, &rspecs, None, target.as_mut(), first_backoff)
                        .await?;
                }
                if progress.failed() {
                    None
                } else {
                    let (rows, ended_us) = snapshot(
                        job,
                        &jobs,
                        &targets,
                        reading_for,
                        &sink,
                        opts,
                        &progress,
                        &|i, _| format!("{job_key}.snapshot-{i}"),
                    )
                    .await?;
                    if !progress.failed() {
                        let mut marker = sink
                            .change_target(&targets, &snapshot_key, STREAM_SPLIT)
                            .await
                            .map_err(conn("recording the snapshot in the target"))?;
                        marker
                            .commit(&Checkpoint {
                                seq: 1,
                                rows,
                                written: rows,
                                position: Some(Position::int(i128::from(ended_us))),
                            })
                            .await
                            .map_err(conn("recording the snapshot in the target"))?;
                    }
                    Some(ended_us)
                }
            }
        };
    }
    target.tolerate_missing(catch_up.is_some());
    let mut attempt = 0u32;
    let mut backoff = first_backoff;
    let mut grown = None;
    let failed = if progress.failed() {
        progress.failure()
    } else {
        loop {
            if !joining.is_empty() {
                let joined = join(
                    job,
                    std::mem::take(&mut joining),
                    reading_for,
                    changes,
                    &sink,
                    opts,
                    &progress,
                    &job_key,
                    Streamed {
                        layouts: &mut layouts,
                        names: &mut names,
                        rspecs: &mut rspecs,
                        targets: &mut targets,
                    },
                    first_backoff,
                )
                .await?;
                let Some((next, ended_us)) = joined else {
                    break progress.failure();
                };
                target = next;
                catch_up = Some(catch_up.map_or(ended_us, |c| c.max(ended_us)));
                target.tolerate_missing(true);
            }
            let _watching = match &lister {
                Some(l) if !progress.failed() => {
                    let (watcher, rx) = watch_tables(l.clone(), job.clone(), names.clone());
                    grown = Some(rx);
                    Some(watcher)
                }
                _ => None,
            };
            attempt += 1;
            let recorded = sink
                .checkpoint(&wspec, &job_key, STREAM_SPLIT)
                .await
                .map_err(conn("reading the stream's position in the target"))?;
            let (mut seq, mut rows) = recorded.as_ref().map_or((0, 0), |c| (c.seq, c.rows));
            // Nothing committed yet: where the job says the stream begins (else the source's
            // current position).
            let position = match recorded.and_then(|c| c.position) {
                Some(p) => Some(p),
                None => job
                    .setting
                    .start
                    .as_ref()
                    .map(|s| s.position())
                    .transpose()
                    .map_err(|e| reader("checking the job")(e.to_string()))?,
            };
            info!(table = %table, attempt, position = ?position, "change stream starting");
            let began = std::time::Instant::now();
            let outcome = match changes.open_changes(&rspecs, position, attempt).await {
                Ok(mut feed) => {
                    feed.report_behind(progress.behind_gauge());
                    let mut applying = Applying {
                        layouts: &mut layouts,
                        names: &names,
                        progress: &progress,
                        catch_up,
                        first_only: false,
                        positioned: false,
                        grown: grown.as_mut(),
                    };
                    let r = applying
                        .run(feed.as_mut(), target.as_mut(), &mut seq, &mut rows)
                        .await;
                    catch_up = applying.catch_up;
                    // A transaction the stream broke in the middle of is applied again whole.
                    target.rollback().await;
                    if let Err(e) = &r {
                        warn!(table = %table, attempt, "change stream ended: {e}");
                    }
                    feed.close(r.as_ref().err().map(|e| e.message.as_str()))
                        .await;
                    r
                }
                Err(e) => Err(e),
            };
            // Tables added to the selection: the stream stopped for them to join.
            let found = grown
                .as_ref()
                .and_then(|rx| rx.borrow().clone())
                .filter(|_| outcome.is_ok() && !progress.failed());
            if let Some(listed) = found {
                joining = table_jobs(job, Some(listed))?
                    .into_iter()
                    .filter(|one| {
                        !names.contains(&one.reader.spec.table.clone().unwrap_or_default())
                    })
                    .collect();
                info!(
                    tables = joining.len(),
                    "tables were added to the selection: they join the stream"
                );
                continue;
            }
            match outcome {
                // Stopped by the job (cancelled, or the broker stopping).
                Ok(()) => break progress.failure(),
                Err(e) if e.transient && !progress.failed() => {
                    // A stream that ran a while before it was lost starts again as soon as a
                    // new one would: the backoff grows only over failures in a row.
                    if began.elapsed() >= STREAM_SETTLED {
                        backoff = first_backoff;
                    }
                    warn!(table = %table, attempt, "change stream lost, starting it again: {e}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    progress.fail(e.message.clone());
                    break progress.failure();
                }
            }
        }
    };
    let snap = progress.snapshot(planner.wire_bytes());
    let mut summary = Summary::failed_at(start, String::new());
    summary.splits = 1;
    summary.records_read = snap.records_read;
    summary.records_written = snap.records_written;
    summary.bytes_read = snap.bytes_read;
    summary.bytes_written = snap.bytes_written;
    summary.wire_bytes = snap.wire_bytes;
    summary.failed = failed;
    Ok(summary)
}

/// Each streamed table as a one-table job: the job itself, or per selected table of a
/// whole-database job (selected and named as a copy's would be).
fn table_jobs(job: &Job, tables: Option<Vec<String>>) -> Result<Vec<Job>, RunError> {
    let Some(listed) = tables else {
        return Ok(vec![job.clone()]);
    };
    Ok(crate::database::select_tables(job, &listed)?
        .into_iter()
        .map(|(t, target)| {
            let mut one = job.clone();
            one.reader.tables = None;
            one.writer.spec.table = target;
            if let Some(mode) = job.writer.naming.existing_for(&t) {
                one.writer.spec.existing = Some(mode);
            }
            one.reader.spec.table = Some(t);
            one
        })
        .collect())
}

/// Plans table job `one` (columns, primary key) and prepares its target: created or
/// checked as a copy's would be, or only checked again when the job applied changes before.
async fn stream_table(
    one: &Job,
    reading: &dyn Reading,
    sink: &dyn Sink,
    applied_before: bool,
) -> Result<StreamTable, RunError> {
    let reader = |stage| move |message| RunError::Reader { stage, message };
    let conn = |stage| move |source| RunError::Connector { stage, source };
    let rspec = read_spec(one);
    if rspec.table.is_none() || rspec.query_sql.is_some() || rspec.where_clause.is_some() {
        return Err(reader("checking the job")(
            "a change stream reads whole tables: give `table` or `tables`, without `querySql` \
             or `where`"
                .into(),
        ));
    }
    let name = rspec.table.clone().unwrap_or_default();
    let schema = reading
        .schema(&rspec)
        .await
        .map_err(reader("reading the source schema"))?;
    let desc = reading
        .describe(&rspec)
        .await
        .map_err(reader("describing the source table"))?;
    let key = key_of(&schema, desc.as_ref().map(|d| d.primary_key.as_slice()))
        .map_err(|e| reader("finding the table's key")(format!("{name}: {e}")))?;
    let tschema =
        target_schema(&schema, &one.writer.spec.columns).map_err(conn("mapping columns"))?;
    let (tschema, retype) = one.writer.type_map.apply(&tschema);
    if retype.iter().any(Option::is_some) {
        return Err(reader("checking the job")(
            "a change stream does not apply `typeMap` conversions yet".into(),
        ));
    }
    let mut wspec = one.writer.spec.clone();
    if wspec.create_table {
        wspec.described = described(reading, &rspec, &schema, &tschema, None)
            .await
            .map_err(reader("describing the source table"))?;
    }
    match applied_before {
        false => sink.prepare(&wspec, &tschema).await,
        true => sink.reattach(&wspec, &tschema).await,
    }
    .map_err(conn("preparing the target"))?;
    let layout = Layout::new(&schema, key)
        .map_err(|e| reader("laying out change batches")(format!("{name}: {e}")))?;
    Ok(StreamTable {
        name,
        rspec,
        wspec,
        layout,
    })
}

/// The columns of `key` (the table's primary key) in `schema`.
fn key_of(schema: &SchemaRef, key: Option<&[String]>) -> Result<Vec<usize>, String> {
    let key = key.unwrap_or_default();
    if key.is_empty() {
        return Err(
            "the table has no primary key: a change stream applies changes by key, so tables \
             without one are not streamed"
                .into(),
        );
    }
    key.iter()
        .map(|k| {
            schema
                .index_of(k)
                .map_err(|_| format!("key column `{k}` is not read"))
        })
        .collect()
}

/// Resolves once the job was stopped (cancelled, failed elsewhere, the broker stopping).
async fn stopped(progress: &Progress) {
    while !progress.failed() {
        tokio::time::sleep(STOP_POLL).await;
    }
}

/// Most source transactions in one target transaction.
const GROUP_TXNS: u64 = 5_000;
/// The oldest a group gets before it commits (it only grows while transactions wait).
const GROUP_AGE: Duration = Duration::from_millis(50);

/// Source transactions applied in the open target transaction, not committed yet.
#[derive(Default)]
struct Group {
    txns: u64,
    rows: u64,
    bytes: u64,
    /// The last transaction's commit: its sequence number, position and time.
    last: Option<(u64, Position, i64)>,
    started: Option<std::time::Instant>,
    /// The last event was a commit (the group may end here).
    at_boundary: bool,
}

/// One attempt's applying loop.
struct Applying<'a> {
    /// Each table's change layout: the planned one, then after each ADD COLUMN.
    layouts: &'a mut [Layout],
    /// Each table's name.
    names: &'a [String],
    progress: &'a Progress,
    /// Catching up after a snapshot until a source commit at or after this time
    /// (microseconds since the epoch): see `ChangeTarget::tolerate_missing`.
    catch_up: Option<i64>,
    /// Stop once a position is committed (the start of a full + incremental job).
    first_only: bool,
    /// A position was committed.
    positioned: bool,
    /// Set when tables were added to a whole-database job's selection: the stream stops for
    /// them to join.
    grown: Option<&'a mut tokio::sync::watch::Receiver<Option<Vec<String>>>>,
}

impl Applying<'_> {
    /// Applies transactions until the job is stopped (`Ok`) or the stream fails. Batches are
    /// applied as they arrive, in the target transaction a commit ends. While more
    /// transactions are already waiting, they join the same target transaction (a group,
    /// committed with the last one's position): exactly once still, since the group commits
    /// or rolls back whole, and fewer commits when the target is behind.
    async fn run(
        &mut self,
        feed: &mut dyn ChangeFeed,
        target: &mut dyn ferry_connectors::stream::ChangeTarget,
        seq: &mut u64,
        rows: &mut u64,
    ) -> Result<(), ReadError> {
        let names = self.names.to_vec();
        let failed = |what: &str, index: usize, e: ferry_connectors::ConnectorError| {
            let table = names.get(index).map_or("?", String::as_str);
            ReadError::from(format!("{what} {table}: {e}"))
        };
        let mut group = Group::default();
        loop {
            if self.first_only && self.positioned {
                return Ok(());
            }
            // At a transaction boundary with a group open: take what is already waiting,
            // or commit the group.
            let event = if group.at_boundary && group.txns > 0 {
                match feed.next().now_or_never() {
                    Some(e) => e?,
                    None => {
                        self.commit(&mut group, feed, target, seq, rows).await?;
                        continue;
                    }
                }
            } else {
                // The feed's `next` is dropped only when the job stops or tables join (the
                // feed is closed then, and what it did not commit is rolled back).
                tokio::select! {
                    e = feed.next() => e?,
                    _ = stopped(self.progress) => return Ok(()),
                    _ = grew(&mut self.grown) => {
                        if group.at_boundary && group.txns > 0 {
                            self.commit(&mut group, feed, target, seq, rows).await?;
                        }
                        return Ok(());
                    }
                }
            };
            match event {
                FeedEvent::Table {
                    index,
                    table,
                    key,
                    read,
                } => {
                    if let Some(layout) = self.redeclared(index, &table, &key, &read)? {
                        // Between transactions, those applied so far commit first: a target
                        // whose DDL is not transactional (MySQL) commits them anyway.
                        if group.at_boundary {
                            self.commit(&mut group, feed, target, seq, rows).await?;
                        }
                        let added = target
                            .add_columns(index, &layout)
                            .await
                            .map_err(|e| failed("adding columns to", index, e))?;
                        info!(table = %table, ?added, "the source added columns; the target has them too");
                        self.layouts[index] = layout;
                    }
                    feed.declare(index, self.layouts[index].schema().clone());
                }
                FeedEvent::Changes { index, batch } => {
                    group.at_boundary = false;
                    group.rows += batch.num_rows() as u64;
                    group.bytes += crate::run::batch_bytes(&batch);
                    target
                        .apply(index, &batch)
                        .await
                        .map_err(|e| failed("applying changes to", index, e))?;
                }
                FeedEvent::Commit {
                    seq: commit_seq,
                    position,
                    commit_time_us,
                } => {
                    group.at_boundary = true;
                    group.txns += 1;
                    group.last = Some((commit_seq, position, commit_time_us));
                    let started = *group.started.get_or_insert_with(std::time::Instant::now);
                    if group.txns >= GROUP_TXNS || started.elapsed() >= GROUP_AGE {
                        self.commit(&mut group, feed, target, seq, rows).await?;
                    }
                }
            }
        }
    }

    /// Commits `group` in the target with its last transaction's position, then
    /// acknowledges that transaction.
    async fn commit(
        &mut self,
        group: &mut Group,
        feed: &mut dyn ChangeFeed,
        target: &mut dyn ferry_connectors::stream::ChangeTarget,
        seq: &mut u64,
        rows: &mut u64,
    ) -> Result<(), ReadError> {
        let g = std::mem::take(group);
        let Some((commit_seq, position, commit_time_us)) = g.last else {
            return Ok(());
        };
        *seq += 1;
        *rows += g.rows;
        let cp = Checkpoint {
            seq: *seq,
            rows: *rows,
            written: *rows,
            position: Some(position.clone()),
        };
        target
            .commit(&cp)
            .await
            .map_err(|e| ReadError::from(format!("committing changes: {e}")))?;
        self.progress
            .applied(g.rows, g.bytes, &position, commit_time_us, g.txns);
        self.positioned = true;
        // Only a transaction with changes ends the catch-up: a stream's first commit, of
        // the position it starts from, carries the time it started, not a source commit's.
        if g.rows > 0 && self.catch_up.is_some_and(|until| commit_time_us >= until) {
            info!("the stream caught up with the snapshot");
            self.catch_up = None;
            target.tolerate_missing(false);
        }
        feed.ack(commit_seq).await
    }

    /// Records where a new stream starts (the source's position now) in the target before
    /// anything is copied, applying what arrives before it; lost streams start again.
    async fn start_position(
        &mut self,
        changes: &dyn ChangeReading,
        tables: &[ReadSpec],
        from: Option<Position>,
        target: &mut dyn ferry_connectors::stream::ChangeTarget,
        first_backoff: Duration,
    ) -> Result<(), RunError> {
        let mut backoff = first_backoff;
        let (mut seq, mut rows) = (0, 0);
        for attempt in 1.. {
            let r = match changes.open_changes(tables, from.clone(), attempt).await {
                Ok(mut feed) => {
                    let r = self.run(feed.as_mut(), target, &mut seq, &mut rows).await;
                    target.rollback().await;
                    feed.close(r.as_ref().err().map(|e| e.message.as_str()))
                        .await;
                    r
                }
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.transient && !self.progress.failed() && attempt < 10 => {
                    warn!(
                        attempt,
                        "the stream's start was not recorded, trying again: {e}"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Err(e) => {
                    return Err(RunError::Reader {
                        stage: "recording where the stream starts",
                        message: e.message,
                    })
                }
            }
        }
        Ok(())
    }

    /// Checks a table declaration: the table planned with the planned key, and its planned
    /// columns (`None`) or those followed by new ones (ADD COLUMN: the layout to go on
    /// with). Any other change of its columns stops the stream here, before the first
    /// change of the new shape is applied.
    fn redeclared(
        &self,
        index: usize,
        table: &str,
        key: &[usize],
        read: &SchemaRef,
    ) -> Result<Option<Layout>, ReadError> {
        let Some(planned) = self.layouts.get(index) else {
            return Err(format!(
                "the agent declared table {index}; the stream has {}",
                self.layouts.len()
            )
            .into());
        };
        if key != planned.key() {
            return Err(format!(
                "{table}: the source table's primary key changed; the stream stops here"
            )
            .into());
        }
        let had = planned.columns();
        let fields = planned.schema().fields();
        let kept = read.fields().len() >= had
            && read
                .fields()
                .iter()
                .zip(fields.iter().take(had))
                .all(|(a, b)| a.name() == b.name() && a.data_type() == b.data_type());
        if !kept {
            let cols = |fs: &mut dyn Iterator<Item = &arrow_schema::FieldRef>| {
                fs.map(|f| format!("{} {}", f.name(), f.data_type()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!(
                "{table}: the source table's columns changed from ({}) to ({}): only ADD \
                 COLUMN is applied, so the stream stops before the first change of the new \
                 shape; change the target to match and run the job again, or copy the table anew",
                cols(&mut fields.iter().take(had)),
                cols(&mut read.fields().iter())
            )
            .into());
        }
        if read.fields().len() == had {
            return Ok(None);
        }
        Layout::new(read, key.to_vec())
            .map(Some)
            .map_err(|e| format!("{table}: {e}").into())
    }
}

/// A time recorded as a position (microseconds since the epoch).
fn time_of(p: &Position) -> Option<i64> {
    match p.values() {
        [ferry_connectors::spec::KeyValue::Int(v)] => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// The marker of table `table` having joined stream `job_key` (a checkpoint of its own).
fn joined_key(job_key: &str, table: &str) -> String {
    // FNV-1a: table names may be longer than a checkpoint's key takes.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in table.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!("{job_key}.joined-{h:016x}")
}

/// Splits a whole-database stream's table jobs into those that joined it before (and are
/// streamed) and those added to the selection since (copied, then joined), and names the
/// joined ones without a marker yet: all of them at the first start, and those of a stream
/// that ran before markers were kept.
async fn joined(
    jobs: Vec<Job>,
    sink: &dyn Sink,
    job_key: &str,
    applied_before: bool,
) -> Result<(Vec<Job>, Vec<Job>, Vec<String>), RunError> {
    let name = |j: &Job| j.reader.spec.table.clone().unwrap_or_default();
    if !applied_before {
        let names = jobs.iter().map(name).collect();
        return Ok((jobs, Vec::new(), names));
    }
    let mut marked = Vec::with_capacity(jobs.len());
    for one in &jobs {
        let m = sink
            .checkpoint(
                &one.writer.spec,
                &joined_key(job_key, &name(one)),
                STREAM_SPLIT,
            )
            .await
            .map_err(|source| RunError::Connector {
                stage: "reading which tables joined the stream",
                source,
            })?;
        marked.push(m.is_some());
    }
    if !marked.contains(&true) {
        let names = jobs.iter().map(name).collect();
        return Ok((jobs, Vec::new(), names));
    }
    let (mut old, mut new) = (Vec::new(), Vec::new());
    for (one, m) in jobs.into_iter().zip(marked) {
        if m {
            old.push(one);
        } else {
            new.push(one);
        }
    }
    Ok((old, new, Vec::new()))
}

/// Records that tables `names` joined stream `job_key` (in the first table's checkpoint
/// table, as the stream's position is).
async fn mark_joined(
    sink: &dyn Sink,
    targets: &[(ferry_connectors::WriteSpec, Layout)],
    job_key: &str,
    names: &[String],
) -> Result<(), RunError> {
    let conn = |source| RunError::Connector {
        stage: "recording which tables joined the stream",
        source,
    };
    for table in names {
        let mut marker = sink
            .change_target(&targets[..1], &joined_key(job_key, table), STREAM_SPLIT)
            .await
            .map_err(conn)?;
        let position = Position::new(vec![ferry_connectors::KeyValue::Text(table.clone())])
            .map_err(|e| RunError::Reader {
                stage: "recording which tables joined the stream",
                message: e.to_string(),
            })?;
        marker
            .commit(&Checkpoint {
                seq: 1,
                rows: 0,
                written: 0,
                position: Some(position),
            })
            .await
            .map_err(conn)?;
    }
    Ok(())
}

/// A running stream's tables, which joining tables extend.
struct Streamed<'a> {
    layouts: &'a mut Vec<Layout>,
    names: &'a mut Vec<String>,
    rspecs: &'a mut Vec<ReadSpec>,
    targets: &'a mut Vec<(ferry_connectors::WriteSpec, Layout)>,
}

/// Tables added to a whole-database stream's selection join it, the others' changes
/// waiting at the source meanwhile (their stream stopped at a transaction boundary, the
/// target holding its position P):
/// 1. each new table's target is made (or kept, if an interrupted join made it);
/// 2. a stream of every table runs from P until it commits, so the source publishes the new
///    tables' changes before they are copied (PostgreSQL adds them to the publication when
///    the stream opens);
/// 3. each is copied (upserts by key, resumed by chunk), then marked joined;
/// 4. the stream goes on from P with every table: the others' changes after P arrive for
///    the first time, and the new tables' replay converges on the copy as a full +
///    incremental job's does.
///
/// Returns the change target of every table and when the copy ended (microseconds since
/// the epoch), or `None` if the job stopped meanwhile.
#[allow(clippy::too_many_arguments)]
async fn join(
    job: &Job,
    joining: Vec<Job>,
    reading_for: &(dyn Fn(&str) -> Arc<dyn Reading> + Send + Sync),
    changes: &dyn ChangeReading,
    sink: &Arc<dyn Sink>,
    opts: &RunOptions,
    progress: &Arc<Progress>,
    job_key: &str,
    streamed: Streamed<'_>,
    first_backoff: Duration,
) -> Result<Option<(Box<dyn ferry_connectors::stream::ChangeTarget>, i64)>, RunError> {
    let conn = |stage| move |source| RunError::Connector { stage, source };
    let mut added = Vec::with_capacity(joining.len());
    for one in &joining {
        let mut one = one.clone();
        one.writer.spec.existing = Some(ferry_connectors::Existing::Append);
        let reading = reading_for(one.reader.spec.table.as_deref().unwrap_or_default());
        added.push(stream_table(&one, reading.as_ref(), sink.as_ref(), false).await?);
    }
    let new_names: Vec<String> = added.iter().map(|t| t.name.clone()).collect();
    info!(tables = ?new_names, "tables join the stream: copied first");
    let mut layouts = streamed.layouts.clone();
    let mut names = streamed.names.clone();
    let mut rspecs = streamed.rspecs.clone();
    let mut targets = streamed.targets.clone();
    let new_targets: Vec<_> = added
        .iter()
        .map(|t| (t.wspec.clone(), t.layout.clone()))
        .collect();
    for t in added {
        layouts.push(t.layout.clone());
        names.push(t.name);
        rspecs.push(t.rspec);
        targets.push((t.wspec, t.layout));
    }
    let mut target = sink
        .change_target(&targets, job_key, STREAM_SPLIT)
        .await
        .map_err(conn("opening the target for changes"))?;
    let at = sink
        .checkpoint(&targets[0].0, job_key, STREAM_SPLIT)
        .await
        .map_err(conn("reading the stream's position in the target"))?
        .and_then(|c| c.position);
    let mut publishing = Applying {
        layouts: &mut layouts,
        names: &names,
        progress,
        catch_up: None,
        first_only: true,
        positioned: false,
        grown: None,
    };
    publishing
        .start_position(changes, &rspecs, at, target.as_mut(), first_backoff)
        .await?;
    if progress.failed() {
        return Ok(None);
    }
    let (_, ended_us) = snapshot(
        job,
        &joining,
        &new_targets,
        reading_for,
        sink,
        opts,
        progress,
        &|_, name| format!("{}.copy", joined_key(job_key, name)),
    )
    .await?;
    if progress.failed() {
        return Ok(None);
    }
    mark_joined(sink.as_ref(), &targets, job_key, &new_names).await?;
    *streamed.layouts = layouts;
    *streamed.names = names;
    *streamed.rspecs = rspecs;
    *streamed.targets = targets;
    Ok(Some((target, ended_us)))
}

/// Watches the source's tables every [`NEW_TABLES_EVERY`]; once the job's selection takes
/// one not in `known`, sends the listing and ends. Aborted when the guard is dropped.
fn watch_tables(
    lister: Arc<dyn TableLister>,
    job: Job,
    known: Vec<String>,
) -> (
    AbortOnDropHandle<()>,
    tokio::sync::watch::Receiver<Option<Vec<String>>>,
) {
    let (tx, rx) = tokio::sync::watch::channel(None);
    let task = tokio::spawn(async move {
        loop {
            tokio::time::sleep(NEW_TABLES_EVERY).await;
            let listed = match lister.tables().await {
                Ok(l) => l,
                Err(e) => {
                    warn!("listing the source's tables for new ones: {e}");
                    continue;
                }
            };
            match table_jobs(&job, Some(listed.clone())) {
                Ok(selected) => {
                    let new = selected.iter().any(|one| {
                        one.reader
                            .spec
                            .table
                            .as_ref()
                            .is_some_and(|t| !known.contains(t))
                    });
                    if new {
                        let _ = tx.send(Some(listed));
                        return;
                    }
                }
                // A selected table is gone: its stream says so when it meets the DROP.
                Err(e) => warn!("selecting the source's tables: {e}"),
            }
        }
    });
    (AbortOnDropHandle::new(task), rx)
}

/// Resolves once tables were added to the selection (never without a watcher).
async fn grew(rx: &mut Option<&mut tokio::sync::watch::Receiver<Option<Vec<String>>>>) {
    if let Some(rx) = rx {
        loop {
            if rx.borrow_and_update().is_some() {
                return;
            }
            if rx.changed().await.is_err() {
                break;
            }
        }
    }
    std::future::pending::<()>().await
}

/// The copy of a full + incremental job: each table's rows, upserted by key into the
/// target prepared for the stream (nothing emptied, `preSql` not run again), its splits
/// resumed from their checkpoints after a lost reader as a copy's are. Returns the rows
/// written and when the copy ended (microseconds since the epoch).
#[allow(clippy::too_many_arguments)]
async fn snapshot(
    job: &Job,
    jobs: &[Job],
    targets: &[(ferry_connectors::WriteSpec, Layout)],
    reading_for: &(dyn Fn(&str) -> Arc<dyn Reading> + Send + Sync),
    sink: &Arc<dyn Sink>,
    opts: &RunOptions,
    progress: &Arc<Progress>,
    key_of: &(dyn Fn(usize, &str) -> String + Sync),
) -> Result<(u64, i64), RunError> {
    let pool = crate::database::TablePool::new(job, opts);
    let follower = pool.follow(opts);
    let mut rows = 0;
    let mut outcome = Ok(());
    for (i, (one, (wspec, layout))) in jobs.iter().zip(targets).enumerate() {
        if progress.failed() {
            break;
        }
        let name = one.reader.spec.table.clone().unwrap_or_default();
        let mut copy = one.clone();
        copy.setting.mode = crate::config::Mode::Copy;
        copy.writer.spec = wspec.clone();
        copy.writer.spec.existing = Some(ferry_connectors::Existing::Append);
        copy.writer.spec.write_mode = ferry_connectors::spec::WriteMode::Update;
        copy.writer.spec.pre_sql.clear();
        copy.writer.spec.post_sql.clear();
        let names = match wspec.target_names(&layout.read_schema()) {
            Ok(n) => n,
            Err(e) => {
                outcome = Err(RunError::Connector {
                    stage: "naming the snapshot's key",
                    source: e,
                });
                break;
            }
        };
        copy.writer.spec.keys = layout
            .key()
            .iter()
            .filter_map(|k| names.get(*k).cloned())
            .collect();
        let (mut o, part) = pool.table(opts, &name, i);
        o.job_key = Some(key_of(i, &name));
        info!(table = %name, "snapshot of the table starting");
        match crate::run::run_job(&copy, reading_for(&name), sink.clone(), &o, part).await {
            Ok(summary) => {
                rows += summary.records_written;
                if let Some(why) = summary.failed {
                    if !progress.failed() {
                        outcome = Err(RunError::Reader {
                            stage: "copying the snapshot",
                            message: format!("{name}: {why}"),
                        });
                    }
                    break;
                }
                info!(table = %name, rows = summary.records_written, "snapshot of the table done");
            }
            Err(e) => {
                outcome = Err(e);
                break;
            }
        }
    }
    pool.end(follower, opts);
    outcome.map(|()| {
        (
            rows,
            OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000,
        )
    })
}
