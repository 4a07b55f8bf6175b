//! Sending record batches on one data stream.
//!
//! Encoding (Arrow IPC + zstd) is the agent's heaviest CPU work, so up to
//! `parallelism` batches are encoded at once on blocking threads while
//! frames still leave in sequence order. The number of batches held at any
//! time is bounded by `parallelism` (encoding) plus what QUIC flow control
//! lets into the stream: a slow broker slows the reader, memory does not grow.

use std::collections::VecDeque;

use arrow_array::RecordBatch;
use ferry_protocol::control::{ControlMessage, ErrorCode};
use ferry_protocol::data::{Ack, BatchEncoder, EncodedBatch, End, StreamHeader};
use ferry_protocol::frame::FrameKind;
use ferry_protocol::limits::Limits;
use ferry_protocol::ProtocolError;
use ferry_tunnel::{FrameReader, FrameWriter, StreamError};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A failure while sending on a data stream.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("tunnel lost: {0}")]
    Connection(#[from] ferry_tunnel::CloseCause),
    #[error(transparent)]
    Stream(#[from] StreamError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    #[error("broker refused the stream ({code:?}): {message}")]
    Broker { code: ErrorCode, message: String },
    #[error("encoder task failed: {0}")]
    Encoder(String),
    #[error("the broker closed the stream before acknowledging batch {0}")]
    AckLost(u64),
}

/// Totals of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendSummary {
    pub batches: u64,
    pub rows: u64,
    /// Arrow IPC bytes before compression.
    pub raw_bytes: u64,
    /// Frame bytes written to the stream (after compression).
    pub frame_bytes: u64,
    /// Last sequence number the broker acknowledged.
    pub acked_seq: Option<u64>,
    pub acked_rows: u64,
}

/// What the broker answered on a data stream so far.
#[derive(Debug, Clone, Default)]
pub(crate) struct AckState {
    /// The highest sequence number it acknowledged.
    pub seq: Option<u64>,
    pub rows: u64,
    /// The error it refused the stream with.
    pub error: Option<(ErrorCode, String)>,
    /// It closed its side.
    pub ended: bool,
}

type EncodeJob = JoinHandle<(BatchEncoder, Result<EncodedBatch, ProtocolError>)>;

/// The sending half of a data stream.
pub struct DataSender {
    writer: FrameWriter,
    acks: watch::Receiver<AckState>,
    idle: Vec<BatchEncoder>,
    inflight: VecDeque<EncodeJob>,
    next_seq: u64,
    summary: SendSummary,
    /// Values the read changed on purpose, for `End`.
    changed: ferry_connectors::spec::Changes,
}

impl DataSender {
    pub(crate) async fn start(
        send: ferry_tunnel::SendStream,
        recv: ferry_tunnel::RecvStream,
        header: StreamHeader,
        parallelism: usize,
        limits: Limits,
    ) -> Result<Self, SendError> {
        let mut writer = FrameWriter::new(send);
        writer.send(&header.to_frame()?).await?;
        let (tx, rx) = watch::channel(AckState::default());
        tokio::spawn(read_acks(
            FrameReader::new(recv, limits.max_control_frame),
            tx,
        ));
        let idle = (0..parallelism.max(1))
            .map(|_| BatchEncoder::new(header.schema.clone(), header.compression))
            .collect();
        Ok(Self {
            writer,
            acks: rx,
            idle,
            inflight: VecDeque::new(),
            next_seq: header.resume_after_seq.map_or(1, |s| s + 1),
            summary: SendSummary::default(),
            changed: Default::default(),
        })
    }

    /// Queues one batch; returns once it is being encoded. Waits (applying
    /// backpressure) while all encoders are busy and the stream is full.
    pub async fn send(&mut self, batch: RecordBatch) -> Result<(), SendError> {
        self.check_broker()?;
        // What the source changed travels in `End`, not in the batch's schema.
        let (batch, changed) = ferry_connectors::take_changes(batch);
        self.changed.merge(&changed);
        if self.idle.is_empty() {
            self.write_oldest().await?;
        }
        let Some(mut encoder) = self.idle.pop() else {
            return Err(SendError::Encoder("no idle encoder".into()));
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.inflight
            .push_back(tokio::task::spawn_blocking(move || {
                let r = encoder.encode(seq, &batch);
                (encoder, r)
            }));
        Ok(())
    }

    async fn write_oldest(&mut self) -> Result<(), SendError> {
        let Some(job) = self.inflight.pop_front() else {
            return Ok(());
        };
        let (encoder, result) = job.await.map_err(|e| SendError::Encoder(e.to_string()))?;
        self.idle.push(encoder);
        let encoded = result?;
        if let Err(e) = self.writer.send(&encoded.frame).await {
            return Err(self.explain(e).await);
        }
        self.summary.batches += 1;
        self.summary.rows += u64::from(encoded.rows);
        self.summary.raw_bytes += encoded.raw_len as u64;
        self.summary.frame_bytes += encoded.frame.wire_len() as u64;
        Ok(())
    }

    /// A write failed, usually because the broker stopped the stream; the
    /// reason it sent just before (an `Error` frame) says more than
    /// "stopped by peer", so wait briefly for it.
    async fn explain(&mut self, e: StreamError) -> SendError {
        let wait = self.acks.wait_for(|s| s.error.is_some() || s.ended);
        if let Ok(Ok(state)) = tokio::time::timeout(std::time::Duration::from_secs(2), wait).await {
            if let Some((code, message)) = &state.error {
                return SendError::Broker {
                    code: *code,
                    message: message.clone(),
                };
            }
        }
        SendError::Stream(e)
    }

    fn check_broker(&self) -> Result<(), SendError> {
        match &self.acks.borrow().error {
            Some((code, message)) => Err(SendError::Broker {
                code: *code,
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The last sequence number acknowledged so far.
    pub fn acked_seq(&self) -> Option<u64> {
        self.acks.borrow().seq
    }

    /// Abandons the stream: the broker sees it reset, never an `End`, so
    /// it cannot take a partial read for a whole one.
    pub fn abort(mut self) {
        for job in self.inflight.drain(..) {
            job.abort();
        }
        self.writer.stream().reset();
    }

    /// Sends what is queued, then `End`, and waits until the broker has
    /// acknowledged the last batch.
    pub async fn finish(mut self) -> Result<SendSummary, SendError> {
        while !self.inflight.is_empty() {
            self.write_oldest().await?;
        }
        let end = End {
            batches: self.summary.batches,
            rows: self.summary.rows,
            changed: std::mem::take(&mut self.changed),
        };
        if let Err(e) = self.writer.send(&end.to_frame()?).await {
            return Err(self.explain(e).await);
        }
        self.writer.finish()?;
        let last = self
            .next_seq
            .checked_sub(1)
            .filter(|_| self.summary.batches > 0);
        let state = self
            .acks
            .wait_for(|s| s.error.is_some() || s.ended || (last.is_some() && s.seq >= last))
            .await
            .map(|s| s.clone())
            .unwrap_or_default();
        if let Some((code, message)) = state.error {
            return Err(SendError::Broker { code, message });
        }
        if let Some(last) = last {
            if state.seq < Some(last) {
                return Err(SendError::AckLost(last));
            }
        }
        self.summary.frame_bytes = self.writer.wire_bytes();
        self.summary.acked_seq = state.seq;
        self.summary.acked_rows = state.rows;
        Ok(self.summary)
    }
}

pub(crate) async fn read_acks(mut reader: FrameReader, tx: watch::Sender<AckState>) {
    loop {
        match reader.next().await {
            Ok(Some(frame)) => match frame.kind {
                FrameKind::Ack => match Ack::from_frame(&frame) {
                    Ok(ack) => tx.send_modify(|s| {
                        s.seq = Some(ack.seq);
                        s.rows += ack.rows;
                    }),
                    Err(e) => {
                        tx.send_modify(|s| s.error = Some((ErrorCode::Malformed, e.to_string())));
                        return;
                    }
                },
                FrameKind::Control => {
                    let err = match ControlMessage::from_frame(&frame) {
                        Ok(ControlMessage::Error { code, message }) => (code, message),
                        Ok(other) => (ErrorCode::Malformed, format!("unexpected {other:?}")),
                        Err(e) => (ErrorCode::Malformed, e.to_string()),
                    };
                    tx.send_modify(|s| s.error = Some(err));
                    return;
                }
                other => {
                    tx.send_modify(|s| {
                        s.error =
                            Some((ErrorCode::Malformed, format!("unexpected {other:?} frame")))
                    });
                    return;
                }
            },
            Ok(None) | Err(_) => {
                tx.send_modify(|s| s.ended = true);
                return;
            }
        }
    }
}
