//! Change streams: a source's committed changes sent on one data stream, and the source
//! advanced only past what the broker acknowledged.
//!
//! Every table of a `StreamAssign` is checked against the source's policy as a task's read
//! is (`Catalog::prepare`), and only plain table reads stream: no `where`, no `querySql`.
//! The slot and publication (PostgreSQL) and the replica id (MySQL) are the agent's
//! (`[sources.NAME.changes]`), never the broker's; a start position from the broker is
//! checked against the source (an LSN within its WAL; a binlog file it has, an offset
//! within it). Changes of other tables are never decoded (the source binds only the tables
//! asked for).
//!
//! A commit is acknowledged to the source (PostgreSQL's `confirmed_flush_lsn`; a MySQL
//! server keeps no reader's position) once the broker acknowledged its sequence number,
//! which it does after the target transaction that applied it (and recorded its position)
//! committed. A crash of either side replays from the last acknowledged commit; the
//! target's recorded position makes the replay harmless.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow_schema::{Schema, SchemaRef};
use ferry_connectors::stream::{ChangeEvent, ChangeSpec, ChangeStream, SourceEnd};
use ferry_connectors::{Position, ReadSpec};
use ferry_protocol::changes::{changes_frame, Commit, TableDecl};
use ferry_protocol::control::{ControlMessage, Options};
use ferry_protocol::data::{BatchEncoder, Compression, StreamHeader};
use ferry_protocol::limits::Limits;
use ferry_tunnel::{FrameReader, FrameWriter};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info};

use crate::catalog::{peer_message, Catalog};
use crate::sender::{read_acks, AckState};
use crate::worker::{AbortOnDrop, TaskError};

/// Most rows of one table in one change batch.
const BATCH_ROWS: usize = 8192;
/// How often the stream measures how far it is behind its source (one query of the source).
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a `StreamAssign` asks for.
pub(crate) struct StreamTask {
    pub id: String,
    pub datasource: String,
    pub tables: Vec<ReadSpec>,
    pub options: Options,
    pub start: Option<Position>,
    pub compression: Compression,
}

/// A table as the stream last declared it.
struct Declared {
    read: SchemaRef,
    encoder: BatchEncoder,
}

/// Runs change stream `task` until it fails or is cancelled (aborted).
pub(crate) async fn run(
    conn: &ferry_tunnel::Connection,
    catalog: &Catalog,
    task: StreamTask,
    outbox: mpsc::Sender<ControlMessage>,
) -> Result<u64, TaskError> {
    let changes = catalog.changes(&task.datasource)?;
    let (slot, publication) = changes.names(&task.datasource);
    let mut checked = Vec::with_capacity(task.tables.len());
    let mut source = None;
    for spec in &task.tables {
        if spec.query_sql.is_some() || spec.where_clause.is_some() || spec.table.is_none() {
            return Err(TaskError::from(
                "a change stream reads whole tables: no `querySql` and no `where`".to_string(),
            ));
        }
        let read = catalog
            .prepare(&task.datasource, spec, &task.options)
            .await?;
        source.get_or_insert(read.source);
        checked.push(read.spec);
    }
    let Some(source) = source else {
        return Err(TaskError::from(
            "a change stream needs at least one table".to_string(),
        ));
    };
    let names: Vec<String> = checked
        .iter()
        .map(|s| s.table.clone().unwrap_or_default())
        .collect();
    let spec = ChangeSpec {
        // The broker names a stream's tasks `<job>-stream-a<attempt>-<tag>`: the job part
        // stays across restarts. (A broker naming them otherwise only picks other ids.)
        owner: task
            .id
            .split("-stream-")
            .next()
            .unwrap_or_default()
            .to_string(),
        slot,
        publication,
        server_id: changes
            .server_id
            .unwrap_or(crate::config::DEFAULT_SERVER_ID),
        tables: checked,
        start: task.start.clone(),
        batch_rows: BATCH_ROWS.min(catalog.limits().max_fetch_size.max(1)),
    };
    // The data stream opens first: making the slot waits for every transaction running on
    // the server to end, and the broker then knows the task started.
    let (send, recv) = conn
        .open_bi()
        .await
        .map_err(|e| format!("opening a data stream: {e}"))?;
    let mut writer = FrameWriter::new(send);
    let header = StreamHeader {
        task_id: task.id.clone(),
        split: 0,
        resume_after_seq: None,
        compression: task.compression,
        schema: Arc::new(Schema::empty()),
    };
    writer
        .send(&header.to_frame().map_err(|e| e.to_string())?)
        .await
        .map_err(sent)?;
    let (tx, acks) = watch::channel(AckState::default());
    let limits = Limits::default();
    tokio::spawn(read_acks(
        FrameReader::new(recv, limits.max_control_frame),
        tx,
    ));
    let mut stream = match source.open_changes(&spec).await {
        Ok(s) => s,
        Err(e) => {
            writer.stream().reset();
            return Err(TaskError {
                message: format!("opening the change stream: {}", peer_message(&e)),
                retryable: source_gone(&e),
            });
        }
    };
    info!(task = %task.id, tables = names.len(), slot = %spec.slot, "change stream started");
    let r = pump(&task, &names, stream.as_mut(), &mut writer, acks, &outbox).await;
    if r.is_err() {
        writer.stream().reset();
    }
    if let Err(e) = stream.stop().await {
        debug!(task = %task.id, "stopping the change stream: {e}");
    }
    r
}

/// Every [`PROGRESS_EVERY`], measures how far the source's log is past the last applied
/// position (`applied`) and tells the broker when that changed, on the control stream
/// (beside a data stream that may be held up). Only shown to operators: a failed
/// measurement is logged, and a report the outbox has no room for is dropped.
async fn measure(
    task_id: String,
    end: Arc<dyn SourceEnd>,
    applied: watch::Receiver<Option<Position>>,
    outbox: mpsc::Sender<ControlMessage>,
) {
    let mut reported = None;
    let mut every = tokio::time::interval(PROGRESS_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(at) = applied.borrow().clone() else {
            continue;
        };
        match end.behind(&at).await {
            Ok(Some(b)) if reported != Some(b) => {
                let msg = ControlMessage::StreamProgress {
                    task_id: task_id.clone(),
                    behind_bytes: b,
                };
                if outbox.try_send(msg).is_ok() {
                    reported = Some(b);
                }
            }
            Ok(_) => {}
            Err(e) => debug!(task = %task_id, "measuring how far the stream is behind: {e}"),
        }
    }
}

/// How long a failing stream waits for the broker to acknowledge what it sent.
const SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits (at most [`SETTLE`]) until the broker acknowledged commit `last`.
async fn settle(acks: &mut watch::Receiver<AckState>, last: Option<u64>) {
    let Some(last) = last else { return };
    let _ = tokio::time::timeout(SETTLE, async {
        loop {
            let state = acks.borrow_and_update().clone();
            if state.seq.is_some_and(|s| s >= last) || state.error.is_some() || state.ended {
                return;
            }
            if acks.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
}

/// Whether a source's error says it went away (a server restarting, a network fault), not
/// that it refused: the broker may start the stream again.
fn source_gone(e: &ferry_connectors::ConnectorError) -> bool {
    use ferry_connectors::ConnectorError as E;
    matches!(
        e,
        E::Connect { code: None, .. } | E::Query { code: None, .. } | E::Io(_)
    )
}

fn sent(e: ferry_tunnel::StreamError) -> String {
    format!("sending on the data stream: {e}")
}

/// Sends the stream's events and acknowledges to the source what the broker acknowledged
/// (`acks`).
async fn pump(
    task: &StreamTask,
    names: &[String],
    stream: &mut dyn ChangeStream,
    writer: &mut FrameWriter,
    mut acks: watch::Receiver<AckState>,
    outbox: &mpsc::Sender<ControlMessage>,
) -> Result<u64, TaskError> {
    let mut declared: Vec<Option<Declared>> = (0..names.len()).map(|_| None).collect();
    // Commits sent and not acknowledged yet: (seq, position).
    let mut unacked: VecDeque<(u64, Position)> = VecDeque::new();
    let mut seq = 0u64;
    // The last position the source was told is applied: measured against the source's end
    // by a task of its own, which goes on while this one waits to send.
    let (applied, measured) = watch::channel(None);
    let _measuring = stream.source_end().map(|end| {
        let task = tokio::spawn(measure(task.id.clone(), end, measured, outbox.clone()));
        AbortOnDrop(task.abort_handle())
    });
    loop {
        tokio::select! {
            changed = acks.changed() => {
                let state = acks.borrow_and_update().clone();
                if let Some((code, message)) = state.error {
                    return Err(format!("the broker stopped the stream ({code:?}): {message}").into());
                }
                if changed.is_err() || state.ended {
                    return Err("the broker closed the change stream".to_string().into());
                }
                let mut last = None;
                while unacked.front().is_some_and(|(s, _)| Some(*s) <= state.seq) {
                    last = unacked.pop_front().map(|(_, p)| p);
                }
                if let Some(p) = last {
                    stream.ack(&p).map_err(|e| peer_message(&e))?;
                    applied.send_replace(Some(p));
                }
            }
            event = stream.next() => {
                let event = match event {
                    Ok(e) => e,
                    Err(e) => {
                        // What was sent before the error (the commits before a DDL statement
                        // that stops the stream) is applied first: the stream is reset when
                        // this task fails, which would drop frames still in flight.
                        let last = unacked.back().map(|(s, _)| *s);
                        settle(&mut acks, last).await;
                        return Err(TaskError {
                            message: format!("change stream: {}", peer_message(&e)),
                            retryable: source_gone(&e),
                        });
                    }
                };
                match event {
                    None => {
                        return Err(TaskError {
                            message: "the source ended the change stream".into(),
                            retryable: true,
                        })
                    }
                    Some(ChangeEvent::Changes { table, layout, batch }) => {
                        let slot = declared
                            .get_mut(table)
                            .ok_or_else(|| "a change of a table not asked for".to_string())?;
                        let read: SchemaRef = Arc::new(Schema::new(
                            layout.schema().fields()[..layout.columns()].to_vec(),
                        ));
                        if slot.as_ref().is_none_or(|d| d.read != read) {
                            let decl = TableDecl {
                                index: u32::try_from(table).map_err(|e| e.to_string())?,
                                table: names[table].clone(),
                                key: layout.key().iter().map(|&k| k as u32).collect(),
                                schema: read.clone(),
                            };
                            writer
                                .send(&decl.to_frame().map_err(|e| e.to_string())?)
                                .await
                                .map_err(sent)?;
                            *slot = Some(Declared {
                                read,
                                encoder: BatchEncoder::new(layout.schema().clone(), task.compression),
                            });
                        }
                        let Some(d) = slot.as_mut() else { continue };
                        seq += 1;
                        let encoded = d.encoder.encode(seq, &batch).map_err(|e| e.to_string())?;
                        let frame = changes_frame(table as u32, &encoded.frame);
                        writer.send(&frame).await.map_err(sent)?;
                    }
                    Some(ChangeEvent::Commit { position, commit_time_us }) => {
                        seq += 1;
                        let commit = Commit { seq, position: position.clone(), commit_time_us };
                        writer
                            .send(&commit.to_frame().map_err(|e| e.to_string())?)
                            .await
                            .map_err(sent)?;
                        unacked.push_back((seq, position));
                    }
                    Some(ChangeEvent::Idle { position }) => {
                        // Everything sent is applied: the source may forget the WAL of
                        // other tables' changes up to here.
                        if unacked.is_empty() {
                            stream.ack(&position).map_err(|e| peer_message(&e))?;
                            applied.send_replace(Some(position));
                        }
                    }
                }
            }
        }
    }
}
