//! Data streams: one bidirectional QUIC stream per task.
//!
//! The agent sends a `StreamHeader` (task, split, schema, compression), then
//! `Batch` frames, then `End`. The broker answers on the same stream with
//! `Ack` frames once batches are committed, or a control `Error` frame.
//! QUIC flow control on the stream carries backpressure from whoever
//! consumes the [`DataStream`] back to the agent's reader.
//!
//! The header is read under the header limit (`max_control_frame`, 1 MiB),
//! not the batch limit: a larger length prefix is refused before any of its
//! payload is buffered, so an agent cannot make the broker hold 64 MiB per
//! stream just by opening streams.

use std::sync::Arc;
use std::time::Duration;

use ferry_certs::AgentIdentity;
use ferry_protocol::changes::{split_changes, Commit, TableDecl};
use ferry_protocol::control::{ControlMessage, ErrorCode};
use ferry_protocol::data::{Ack, BatchDecoder, DecodedBatch, End, StreamHeader};
use ferry_protocol::frame::FrameKind;
use ferry_protocol::limits::Limits;
use ferry_protocol::ProtocolError;
use ferry_tunnel::{FrameReader, FrameWriter, StreamError};

/// Receives every data stream an agent opens. It owns the stream from then
/// on: reads batches, acks what it committed, and finishes it.
pub type DataHandler = Arc<dyn Fn(DataStream) + Send + Sync>;

/// How long an agent has to send the header after opening a stream.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// A failure on a data stream.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("no stream header within {0:?}")]
    HeaderTimeout(Duration),
    #[error("agent said the stream carried {declared_batches} batches / {declared_rows} rows, but {got_batches} / {got_rows} arrived")]
    CountMismatch {
        declared_batches: u64,
        declared_rows: u64,
        got_batches: u64,
        got_rows: u64,
    },
    #[error("batch sequence went from {previous} to {got}; sequences must increase")]
    Sequence { previous: u64, got: u64 },
    #[error("unexpected {0:?} frame on a data stream")]
    UnexpectedFrame(FrameKind),
    /// The `End` frame's report of changed values breaks a bound.
    #[error("{0}")]
    Changes(#[from] ferry_connectors::spec::ChangesError),
    /// A change batch of a table the stream did not declare.
    #[error("change batch of table {0}, which the stream did not declare")]
    Undeclared(u32),
}

/// One frame of a change stream.
#[derive(Debug)]
pub enum ChangeFrame {
    /// A table (again, after its columns changed).
    Table(TableDecl),
    /// A change batch of declared table `index`.
    Changes { index: u32, batch: DecodedBatch },
    /// The end of a source transaction.
    Commit(Commit),
}

/// One data stream from an agent, after its header was read.
pub struct DataStream {
    agent: Arc<AgentIdentity>,
    header: StreamHeader,
    reader: FrameReader,
    writer: FrameWriter,
    decoder: BatchDecoder,
    last_seq: Option<u64>,
    batches: u64,
    rows: u64,
    raw_bytes: u64,
    /// What the agent's `End` reported as changed on purpose.
    changed: ferry_connectors::spec::Changes,
    /// A change stream's declared tables: their decoders.
    tables: std::collections::HashMap<u32, BatchDecoder>,
    limits: Limits,
    /// The connection's allowance of open data streams, given back on drop.
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl DataStream {
    /// Reads the stream's header; on failure the stream is reset in both
    /// directions.
    pub(crate) async fn open(
        agent: Arc<AgentIdentity>,
        send: ferry_tunnel::SendStream,
        recv: ferry_tunnel::RecvStream,
        limits: Limits,
        slot: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<Self, DataError> {
        let mut reader = FrameReader::new(recv, limits.max_control_frame);
        let mut writer = FrameWriter::new(send);
        let header = match read_header(&mut reader, &limits).await {
            Ok(h) => h,
            Err(e) => {
                writer.stream().reset();
                reader.stop();
                return Err(e);
            }
        };
        reader.set_max_frame(limits.max_data_frame);
        let decoder = BatchDecoder::new(header.schema.clone(), limits);
        Ok(Self {
            agent,
            last_seq: header.resume_after_seq,
            header,
            reader,
            writer,
            decoder,
            batches: 0,
            rows: 0,
            raw_bytes: 0,
            changed: Default::default(),
            tables: Default::default(),
            limits,
            _slot: slot,
        })
    }

    /// The agent that opened the stream (from its certificate).
    pub fn agent(&self) -> &AgentIdentity {
        &self.agent
    }

    pub fn header(&self) -> &StreamHeader {
        &self.header
    }

    /// Values the read changed on purpose, as the agent's `End` reported them.
    pub fn changed(&self) -> &ferry_connectors::spec::Changes {
        &self.changed
    }

    /// The next batch, or `None` after the agent's `End` (whose counts are
    /// checked against what arrived).
    pub async fn next_batch(&mut self) -> Result<Option<DecodedBatch>, DataError> {
        let frame = self.reader.require().await?;
        match frame.kind {
            FrameKind::Batch => {
                let batch = self.decoder.decode(&frame)?;
                if let Some(prev) = self.last_seq {
                    if batch.seq <= prev {
                        return Err(DataError::Sequence {
                            previous: prev,
                            got: batch.seq,
                        });
                    }
                }
                self.last_seq = Some(batch.seq);
                self.batches += 1;
                self.rows += batch.batch.num_rows() as u64;
                self.raw_bytes += batch.raw_len as u64;
                Ok(Some(batch))
            }
            FrameKind::End => {
                let end = End::from_frame(&frame)?;
                if end.batches != self.batches || end.rows != self.rows {
                    return Err(DataError::CountMismatch {
                        declared_batches: end.batches,
                        declared_rows: end.rows,
                        got_batches: self.batches,
                        got_rows: self.rows,
                    });
                }
                end.changed.check()?;
                self.changed = end.changed;
                Ok(None)
            }
            other => Err(DataError::UnexpectedFrame(other)),
        }
    }

    /// The next frame of a change stream (see [`ferry_protocol::changes`]): a table
    /// declaration (the caller checks it and gives its batches' schema with
    /// [`declare`](Self::declare)), a change batch of a declared table, or a commit.
    pub async fn next_change(&mut self) -> Result<ChangeFrame, DataError> {
        let frame = self.reader.require().await?;
        match frame.kind {
            FrameKind::Table => Ok(ChangeFrame::Table(TableDecl::from_frame(
                &frame,
                &self.limits,
            )?)),
            FrameKind::Changes => {
                let (index, inner) = split_changes(&frame)?;
                let decoder = self
                    .tables
                    .get_mut(&index)
                    .ok_or(DataError::Undeclared(index))?;
                let batch = decoder.decode(&inner)?;
                self.sequence(batch.seq)?;
                self.batches += 1;
                self.rows += batch.batch.num_rows() as u64;
                self.raw_bytes += batch.raw_len as u64;
                Ok(ChangeFrame::Changes { index, batch })
            }
            FrameKind::Commit => {
                let commit = Commit::from_frame(&frame)?;
                self.sequence(commit.seq)?;
                Ok(ChangeFrame::Commit(commit))
            }
            other => Err(DataError::UnexpectedFrame(other)),
        }
    }

    /// Change batches of table `index` have `schema` from now on.
    pub fn declare(&mut self, index: u32, schema: arrow_schema::SchemaRef) {
        self.tables
            .insert(index, BatchDecoder::new(schema, self.limits));
    }

    fn sequence(&mut self, seq: u64) -> Result<(), DataError> {
        if let Some(prev) = self.last_seq {
            if seq <= prev {
                return Err(DataError::Sequence {
                    previous: prev,
                    got: seq,
                });
            }
        }
        self.last_seq = Some(seq);
        Ok(())
    }

    /// Tells the agent that everything up to `seq` is committed.
    pub async fn ack(&mut self, seq: u64, rows: u64) -> Result<(), DataError> {
        self.writer.send(&Ack { seq, rows }.to_frame()?).await?;
        Ok(())
    }

    /// Ends the stream from the broker's side after the last ack.
    pub fn finish(mut self) -> Result<(), DataError> {
        self.writer.finish()?;
        Ok(())
    }

    /// Refuses the stream with an error the agent will report.
    pub async fn fail(mut self, code: ErrorCode, message: &str) {
        let msg = ControlMessage::Error {
            code,
            message: message.to_string(),
        };
        if let Ok(frame) = msg.to_frame() {
            let _ = self.writer.send(&frame).await;
        }
        let _ = self.writer.finish();
        self.reader.stop();
    }

    /// Frame bytes received on this stream so far (what crossed the wire,
    /// before QUIC/TLS overhead).
    pub fn wire_bytes(&self) -> u64 {
        self.reader.wire_bytes()
    }

    /// Uncompressed Arrow IPC bytes received so far.
    pub fn raw_bytes(&self) -> u64 {
        self.raw_bytes
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    pub fn batches(&self) -> u64 {
        self.batches
    }
}

async fn read_header(reader: &mut FrameReader, limits: &Limits) -> Result<StreamHeader, DataError> {
    let frame = tokio::time::timeout(HEADER_TIMEOUT, reader.require())
        .await
        .map_err(|_| DataError::HeaderTimeout(HEADER_TIMEOUT))??;
    Ok(StreamHeader::from_frame(&frame, limits)?)
}

/// Resets a stream the broker will not read at all (over the connection's
/// stream cap): the agent sees it reset at once.
pub(crate) fn reset(mut send: ferry_tunnel::SendStream, mut recv: ferry_tunnel::RecvStream) {
    send.reset();
    recv.stop();
}

/// The refusal an agent gets for a stream no task of its own expects: the
/// same whether the task does not exist or belongs to another agent, so
/// the answer tells an agent nothing about others' tasks.
pub(crate) async fn refuse_unexpected(ds: DataStream) {
    let task = ds.header().task_id.clone();
    ds.fail(
        ErrorCode::Unsupported,
        &format!("no job on this broker expects task `{task}` from you"),
    )
    .await;
}

/// The handler of a broker that runs no job: every data stream is refused
/// with a clear error.
pub fn refuse_all() -> DataHandler {
    Arc::new(|ds: DataStream| {
        tokio::spawn(async move {
            let task = ds.header().task_id.clone();
            tracing::warn!(agent = %ds.agent().agent_id, group = %ds.agent().group, task = %task, "no job expects this data stream; refused");
            refuse_unexpected(ds).await;
        });
    })
}

/// A handler that reads every stream to the end, acks each batch and counts
/// rows and bytes: the benchmark's sink, and a liveness check of the data path.
pub fn counting(counters: Arc<Counters>) -> DataHandler {
    Arc::new(move |mut ds: DataStream| {
        let counters = counters.clone();
        tokio::spawn(async move {
            loop {
                match ds.next_batch().await {
                    Ok(Some(b)) => {
                        let rows = b.batch.num_rows() as u64;
                        counters.add(rows, b.raw_len as u64, b.wire_len as u64);
                        if let Err(e) = ds.ack(b.seq, rows).await {
                            tracing::warn!("ack failed: {e}");
                            break;
                        }
                    }
                    Ok(None) => {
                        counters
                            .streams_done
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let _ = ds.finish();
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(agent = %ds.agent().agent_id, "data stream failed: {e}");
                        counters
                            .streams_failed
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        break;
                    }
                }
            }
        });
    })
}

/// Totals kept by [`counting`].
#[derive(Debug, Default)]
pub struct Counters {
    pub rows: std::sync::atomic::AtomicU64,
    pub raw_bytes: std::sync::atomic::AtomicU64,
    pub wire_bytes: std::sync::atomic::AtomicU64,
    pub batches: std::sync::atomic::AtomicU64,
    pub streams_done: std::sync::atomic::AtomicU64,
    pub streams_failed: std::sync::atomic::AtomicU64,
}

impl Counters {
    fn add(&self, rows: u64, raw: u64, wire: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.rows.fetch_add(rows, Relaxed);
        self.raw_bytes.fetch_add(raw, Relaxed);
        self.wire_bytes.fetch_add(wire, Relaxed);
        self.batches.fetch_add(1, Relaxed);
    }
}
