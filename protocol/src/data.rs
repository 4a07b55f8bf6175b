//! Data streams: one [`StreamHeader`], then batch frames, then [`End`]; the broker answers on
//! the same bidirectional stream with [`Ack`]s.
//!
//! Each batch frame holds one Arrow IPC `RecordBatch` message (the schema travels once, in the
//! header), optionally zstd-compressed as a whole. Compressing the whole message rather than
//! using IPC buffer compression lets the frame header declare the decompressed size, which the
//! decoder checks against its limit before inflating anything.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_ipc::writer::{DictionaryTracker, IpcDataGenerator, IpcWriteOptions, StreamEncoder};
use arrow_ipc::MetadataVersion;
use arrow_schema::{Schema, SchemaRef};
use bytes::{BufMut, Bytes};
use serde::{Deserialize, Serialize};

use crate::control::check_len;
use crate::frame::{Frame, FrameKind};
use crate::ipc;
use crate::limits::Limits;
use crate::ProtocolError;

/// Longest task id, in bytes.
pub const MAX_TASK_ID_LEN: usize = 256;
/// Size of the fixed part of a batch payload: seq, rows, codec, raw_len.
pub const BATCH_HEADER_LEN: usize = 8 + 4 + 1 + 4;
/// Codec byte: body is the raw IPC message.
pub const CODEC_NONE: u8 = 0;
/// Codec byte: body is one zstd frame of the IPC message.
pub const CODEC_ZSTD: u8 = 1;
/// zstd level used by `Compression::parse("zstd")`.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
/// Highest zstd level accepted (zstd's maximum); negative "fast" levels are not allowed.
pub const MAX_ZSTD_LEVEL: i32 = 22;

/// IPC alignment: 8 is all arrow needs and wastes less than the default 64 on narrow columns.
const IPC_ALIGNMENT: usize = 8;

/// Compression of batch bodies, chosen per stream by the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "codec", rename_all = "snake_case")]
pub enum Compression {
    /// Raw Arrow IPC.
    #[default]
    None,
    /// zstd at `level` (1..=22).
    Zstd {
        /// zstd compression level.
        level: i32,
    },
}

impl Compression {
    /// Parses a user setting: `off`, `none`, `zstd` (level 3), `zstd:N` or `zstd-N`.
    pub fn parse(s: &str) -> Result<Self, ProtocolError> {
        let t = s.trim().to_ascii_lowercase();
        let c = match t.as_str() {
            "off" | "none" => Compression::None,
            "zstd" => Compression::Zstd {
                level: DEFAULT_ZSTD_LEVEL,
            },
            _ => {
                let level = t
                    .strip_prefix("zstd:")
                    .or_else(|| t.strip_prefix("zstd-"))
                    .and_then(|l| l.parse::<i32>().ok())
                    .ok_or_else(|| {
                        ProtocolError::InvalidCompression(format!(
                            "{s:?}: expected off, none, zstd, zstd:LEVEL or zstd-LEVEL"
                        ))
                    })?;
                Compression::Zstd { level }
            }
        };
        c.validate()?;
        Ok(c)
    }

    /// Checks the zstd level is in 1..=22.
    pub fn validate(&self) -> Result<(), ProtocolError> {
        match *self {
            Compression::Zstd { level } if !(1..=MAX_ZSTD_LEVEL).contains(&level) => {
                Err(ProtocolError::InvalidCompression(format!(
                    "zstd level {level} is outside 1..={MAX_ZSTD_LEVEL}"
                )))
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Compression::None => f.write_str("none"),
            Compression::Zstd { level } => write!(f, "zstd:{level}"),
        }
    }
}

impl FromStr for Compression {
    type Err = ProtocolError;
    fn from_str(s: &str) -> Result<Self, ProtocolError> {
        Compression::parse(s)
    }
}

/// First frame ([`FrameKind::StreamHeader`]) of every data stream.
///
/// Payload: `[u32 BE json_len][JSON of the other fields][Arrow IPC schema message]`. The schema
/// is sent in Arrow's own encoding so every Arrow type and its metadata survive exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamHeader {
    /// Task this stream belongs to (at most 256 bytes).
    pub task_id: String,
    /// Split (partition) of the task.
    pub split: u32,
    /// When resuming, the last sequence number the broker acknowledged.
    pub resume_after_seq: Option<u64>,
    /// Compression the sender intends to use (each batch frame still says its own codec).
    pub compression: Compression,
    /// Schema of every batch on the stream.
    pub schema: SchemaRef,
}

#[derive(Serialize, Deserialize)]
struct HeaderJson {
    task_id: String,
    split: u32,
    #[serde(default)]
    resume_after_seq: Option<u64>,
    compression: Compression,
}

impl StreamHeader {
    /// Encodes the header frame. Fails on an unsupported schema or invalid field, so the
    /// sender finds out before the broker rejects the stream.
    pub fn to_frame(&self) -> Result<Frame, ProtocolError> {
        check_len("task_id", &self.task_id, MAX_TASK_ID_LEN)?;
        self.compression.validate()?;
        ipc::check_schema(&self.schema)?;
        let json = serde_json::to_vec(&HeaderJson {
            task_id: self.task_id.clone(),
            split: self.split,
            resume_after_seq: self.resume_after_seq,
            compression: self.compression,
        })?;
        json_schema_frame(FrameKind::StreamHeader, &json, &self.schema)
    }

    /// Decodes a header frame; its payload must fit `limits.max_control_frame`, since it is
    /// metadata, not data.
    pub fn from_frame(frame: &Frame, limits: &Limits) -> Result<Self, ProtocolError> {
        frame.expect_kind(FrameKind::StreamHeader, "stream header")?;
        let (json, schema) =
            split_json_schema(frame, limits, ("stream header", "stream header JSON"))?;
        let h: HeaderJson = serde_json::from_slice(json)?;
        check_len("task_id", &h.task_id, MAX_TASK_ID_LEN)?;
        h.compression.validate()?;
        Ok(StreamHeader {
            task_id: h.task_id,
            split: h.split,
            resume_after_seq: h.resume_after_seq,
            compression: h.compression,
            schema: Arc::new(schema),
        })
    }
}

fn write_options() -> Result<IpcWriteOptions, ProtocolError> {
    IpcWriteOptions::try_new(IPC_ALIGNMENT, false, MetadataVersion::V5).map_err(ProtocolError::Ipc)
}

/// A `[u32 BE json_len][json][Arrow IPC schema message]` frame of `kind`: metadata with a
/// schema (a stream header, a change stream's table).
pub(crate) fn json_schema_frame(
    kind: FrameKind,
    json: &[u8],
    schema: &Schema,
) -> Result<Frame, ProtocolError> {
    let schema_msg = encode_schema(schema)?;
    let json_len = u32::try_from(json.len()).map_err(|_| ProtocolError::FrameTooLarge {
        len: json.len() as u64,
        limit: u32::MAX,
    })?;
    let mut payload = Vec::with_capacity(4 + json.len() + schema_msg.len());
    payload.put_u32(json_len);
    payload.extend_from_slice(json);
    payload.extend_from_slice(&schema_msg);
    Ok(Frame::new(kind, Bytes::from(payload)))
}

/// The JSON and the decoded schema of a [`json_schema_frame`], whose payload must fit
/// `limits.max_control_frame` (it is metadata, not data).
pub(crate) fn split_json_schema<'a>(
    frame: &'a Frame,
    limits: &Limits,
    (what, what_json): (&'static str, &'static str),
) -> Result<(&'a [u8], Schema), ProtocolError> {
    let p = &frame.payload[..];
    if p.len() > limits.max_control_frame as usize {
        return Err(ProtocolError::FrameTooLarge {
            len: p.len() as u64,
            limit: limits.max_control_frame,
        });
    }
    let (len, rest) = p.split_first_chunk::<4>().ok_or(ProtocolError::Truncated {
        what,
        need: 4,
        have: p.len(),
    })?;
    let json_len = u32::from_be_bytes(*len) as usize;
    let (json, schema) = rest
        .split_at_checked(json_len)
        .ok_or(ProtocolError::Truncated {
            what: what_json,
            need: json_len,
            have: rest.len(),
        })?;
    Ok((json, ipc::decode_schema(schema)?))
}

fn encode_schema(schema: &Schema) -> Result<Vec<u8>, ProtocolError> {
    let opts = write_options()?;
    let encoded = IpcDataGenerator::default().schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut DictionaryTracker::new(false),
        &opts,
    );
    let mut out = Vec::with_capacity(encoded.ipc_message.len() + 16);
    arrow_ipc::writer::write_message(&mut out, encoded, &opts).map_err(ProtocolError::Ipc)?;
    Ok(out)
}

/// Names, types and nullability equal; metadata is ignored because it is not sent per batch.
fn same_fields(a: &Schema, b: &Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields().iter()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        })
}

fn describe_mismatch(expected: &Schema, got: &Schema) -> String {
    if expected.fields().len() != got.fields().len() {
        return format!(
            "batch has {} columns, the stream schema has {}",
            got.fields().len(),
            expected.fields().len()
        );
    }
    for (i, (e, g)) in expected
        .fields()
        .iter()
        .zip(got.fields().iter())
        .enumerate()
    {
        if e.name() != g.name()
            || e.data_type() != g.data_type()
            || e.is_nullable() != g.is_nullable()
        {
            return format!(
                "column {i}: batch has {:?} {}{}, the stream schema has {:?} {}{}",
                g.name(),
                g.data_type(),
                if g.is_nullable() { " (nullable)" } else { "" },
                e.name(),
                e.data_type(),
                if e.is_nullable() { " (nullable)" } else { "" },
            );
        }
    }
    "schemas differ".into()
}

/// A batch frame produced by [`BatchEncoder::encode`].
#[derive(Debug, Clone)]
pub struct EncodedBatch {
    /// The [`FrameKind::Batch`] frame.
    pub frame: Frame,
    /// Rows in the batch.
    pub rows: u32,
    /// Arrow IPC bytes before compression.
    pub raw_len: usize,
}

/// Encodes record batches of one schema into batch frames.
///
/// Batch payload: `[u64 BE seq][u32 BE rows][u8 codec][u32 BE raw_len][body]`, body being one
/// Arrow IPC RecordBatch message, zstd-compressed when codec = 1. Keeps its IPC and zstd
/// contexts and scratch buffers between calls, since this is the agent's hot path.
pub struct BatchEncoder {
    schema: SchemaRef,
    compression: Compression,
    limits: Limits,
    ipc: Option<StreamEncoder>,
    zstd: Option<zstd::bulk::Compressor<'static>>,
    raw_scratch: Vec<u8>,
    zstd_scratch: Vec<u8>,
}

impl fmt::Debug for BatchEncoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchEncoder")
            .field("compression", &self.compression)
            .field("fields", &self.schema.fields().len())
            .finish_non_exhaustive()
    }
}

impl BatchEncoder {
    /// An encoder for batches of `schema`, enforcing the default [`Limits`] so it never
    /// produces a frame a default decoder would refuse.
    pub fn new(schema: SchemaRef, compression: Compression) -> Self {
        BatchEncoder {
            schema,
            compression,
            limits: Limits::default(),
            ipc: None,
            zstd: None,
            raw_scratch: Vec::new(),
            zstd_scratch: Vec::new(),
        }
    }

    /// Enforce `limits` (the receiver's) instead of the defaults.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The stream schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The configured compression.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The IPC encoder, created on first use. arrow's `StreamEncoder` emits the schema with
    /// its first batch, so we feed it an empty batch once and drop that output: after that it
    /// yields bare RecordBatch messages whose buffers reference the arrays (no body copy).
    fn ipc_encoder(&mut self) -> Result<&mut StreamEncoder, ProtocolError> {
        match &mut self.ipc {
            Some(e) => Ok(e),
            slot @ None => {
                ipc::check_schema(&self.schema)?;
                let mut enc = StreamEncoder::try_new_with_options(&self.schema, write_options()?)
                    .map_err(ProtocolError::Ipc)?;
                enc.encode(&RecordBatch::new_empty(Arc::clone(&self.schema)))
                    .map_err(ProtocolError::Ipc)?;
                Ok(slot.insert(enc))
            }
        }
    }

    /// Encodes `batch` as frame `seq`. Errors if the batch's schema differs from the stream's
    /// (names, types, nullability) or a limit would be exceeded.
    pub fn encode(&mut self, seq: u64, batch: &RecordBatch) -> Result<EncodedBatch, ProtocolError> {
        if !same_fields(&self.schema, batch.schema_ref()) {
            return Err(ProtocolError::SchemaMismatch(describe_mismatch(
                &self.schema,
                batch.schema_ref(),
            )));
        }
        let limit = self.limits.max_batch_rows;
        let rows = u32::try_from(batch.num_rows())
            .ok()
            .filter(|r| *r <= limit)
            .ok_or(ProtocolError::TooManyRows {
                rows: u32::try_from(batch.num_rows()).unwrap_or(u32::MAX),
                limit,
            })?;
        let segments = self
            .ipc_encoder()?
            .encode(batch)
            .map_err(ProtocolError::Ipc)?;
        let raw_len: usize = segments.iter().map(|b| b.len()).sum();
        let raw_len_u32 = u32::try_from(raw_len)
            .ok()
            .filter(|l| *l <= self.limits.max_decompressed_batch)
            .ok_or(ProtocolError::DecompressedTooLarge {
                declared: raw_len as u64,
                limit: self.limits.max_decompressed_batch,
            })?;

        let payload = match self.compression {
            Compression::None => None,
            Compression::Zstd { level } => {
                self.raw_scratch.clear();
                self.raw_scratch.reserve(raw_len);
                for s in &segments {
                    self.raw_scratch.extend_from_slice(s.as_slice());
                }
                let zstd = match &mut self.zstd {
                    Some(c) => c,
                    slot @ None => {
                        Compression::Zstd { level }.validate()?;
                        slot.insert(
                            zstd::bulk::Compressor::new(level).map_err(ProtocolError::Zstd)?,
                        )
                    }
                };
                self.zstd_scratch.clear();
                self.zstd_scratch
                    .reserve(zstd::zstd_safe::compress_bound(raw_len));
                let n = zstd
                    .compress_to_buffer(&self.raw_scratch, &mut self.zstd_scratch)
                    .map_err(ProtocolError::Zstd)?;
                // Incompressible data goes out raw: the codec byte is per frame.
                (n < raw_len).then(|| {
                    let mut p = Vec::with_capacity(BATCH_HEADER_LEN + n);
                    put_batch_header(&mut p, seq, rows, CODEC_ZSTD, raw_len_u32);
                    p.extend_from_slice(&self.zstd_scratch);
                    p
                })
            }
        };
        let payload = match payload {
            Some(p) => p,
            None => {
                let mut p = Vec::with_capacity(BATCH_HEADER_LEN + raw_len);
                put_batch_header(&mut p, seq, rows, CODEC_NONE, raw_len_u32);
                match self.compression {
                    // Already concatenated for the compressor.
                    Compression::Zstd { .. } => p.extend_from_slice(&self.raw_scratch),
                    Compression::None => {
                        for s in &segments {
                            p.extend_from_slice(s.as_slice());
                        }
                    }
                }
                p
            }
        };
        if payload.len() > self.limits.max_data_frame as usize {
            return Err(ProtocolError::FrameTooLarge {
                len: payload.len() as u64,
                limit: self.limits.max_data_frame,
            });
        }
        Ok(EncodedBatch {
            frame: Frame::new(FrameKind::Batch, Bytes::from(payload)),
            rows,
            raw_len,
        })
    }
}

fn put_batch_header(p: &mut Vec<u8>, seq: u64, rows: u32, codec: u8, raw_len: u32) {
    p.put_u64(seq);
    p.put_u32(rows);
    p.put_u8(codec);
    p.put_u32(raw_len);
}

/// A batch decoded by [`BatchDecoder::decode`].
#[derive(Debug, Clone)]
pub struct DecodedBatch {
    /// Sequence number from the frame.
    pub seq: u64,
    /// The batch, with the stream's schema.
    pub batch: RecordBatch,
    /// Arrow IPC bytes after decompression.
    pub raw_len: usize,
    /// Frame size on the wire, header included.
    pub wire_len: usize,
}

/// Decodes batch frames of one stream, treating their bytes as hostile (see the crate docs).
pub struct BatchDecoder {
    schema: SchemaRef,
    schema_error: Option<String>,
    limits: Limits,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
    /// Always empty: dictionary batches are rejected, but arrow's API wants the map.
    dictionaries: HashMap<i64, ArrayRef>,
}

impl fmt::Debug for BatchDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchDecoder")
            .field("limits", &self.limits)
            .field("fields", &self.schema.fields().len())
            .finish_non_exhaustive()
    }
}

impl BatchDecoder {
    /// A decoder for batches of `schema` (from the stream header) under `limits`.
    pub fn new(schema: SchemaRef, limits: Limits) -> Self {
        let schema_error = ipc::check_schema(&schema).err().map(|e| e.to_string());
        BatchDecoder {
            schema,
            schema_error,
            limits,
            zstd: None,
            dictionaries: HashMap::new(),
        }
    }

    /// The stream schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes one [`FrameKind::Batch`] frame.
    pub fn decode(&mut self, frame: &Frame) -> Result<DecodedBatch, ProtocolError> {
        frame.expect_kind(FrameKind::Batch, "batch")?;
        if let Some(e) = &self.schema_error {
            return Err(ProtocolError::SchemaMismatch(e.clone()));
        }
        let payload = &frame.payload;
        if payload.len() > self.limits.max_data_frame as usize {
            return Err(ProtocolError::FrameTooLarge {
                len: payload.len() as u64,
                limit: self.limits.max_data_frame,
            });
        }
        let Some((header, _)) = payload.split_first_chunk::<BATCH_HEADER_LEN>() else {
            return Err(ProtocolError::Truncated {
                what: "batch frame header",
                need: BATCH_HEADER_LEN,
                have: payload.len(),
            });
        };
        // Constant indices into a fixed-size array: checked at compile time.
        let h: [u8; BATCH_HEADER_LEN] = *header;
        let seq = u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
        let rows = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
        let codec = h[12];
        let raw_len = u32::from_be_bytes([h[13], h[14], h[15], h[16]]);

        if rows > self.limits.max_batch_rows {
            return Err(ProtocolError::TooManyRows {
                rows,
                limit: self.limits.max_batch_rows,
            });
        }
        if raw_len > self.limits.max_decompressed_batch {
            return Err(ProtocolError::DecompressedTooLarge {
                declared: u64::from(raw_len),
                limit: self.limits.max_decompressed_batch,
            });
        }
        let raw_len = raw_len as usize;
        let body = payload.slice(BATCH_HEADER_LEN..);
        let ipc_bytes: Buffer = match codec {
            CODEC_NONE => {
                if body.len() != raw_len {
                    return Err(ProtocolError::DecompressedLengthMismatch {
                        declared: raw_len,
                        actual: body.len(),
                    });
                }
                // Zero-copy: arrow re-aligns individual buffers only if they are misaligned.
                Buffer::from(body)
            }
            CODEC_ZSTD => self.inflate(&body, raw_len)?,
            other => {
                return Err(ProtocolError::InvalidCompression(format!(
                    "unknown batch codec byte {other}"
                )))
            }
        };

        let parsed = ipc::parse_message(ipc_bytes.as_slice(), "IPC record batch message")?;
        let rb = ipc::check_record_batch(&parsed.message, &self.schema, parsed.body_len, rows)?;
        // Offsets were checked by parse_message, so this slice is in bounds.
        let body = ipc_bytes.slice_with_length(parsed.body_start, parsed.body_len);
        let batch = arrow_ipc::reader::read_record_batch(
            &body,
            rb,
            Arc::clone(&self.schema),
            &self.dictionaries,
            None,
            &parsed.message.version(),
        )
        .map_err(ProtocolError::Ipc)?;
        if batch.num_rows() != rows as usize {
            return Err(ProtocolError::RowCountMismatch {
                declared: rows,
                actual: batch.num_rows(),
            });
        }
        Ok(DecodedBatch {
            seq,
            batch,
            raw_len,
            wire_len: frame.wire_len(),
        })
    }

    /// Decompresses into a buffer of exactly `raw_len` bytes (already checked against the
    /// limit), so a bomb cannot make zstd write more; a short result is a mismatch too.
    fn inflate(&mut self, body: &[u8], raw_len: usize) -> Result<Buffer, ProtocolError> {
        // Cheap early out: a frame announcing another size is rejected before allocating.
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(body) {
            if size != raw_len as u64 {
                return Err(ProtocolError::DecompressedLengthMismatch {
                    declared: raw_len,
                    actual: usize::try_from(size).unwrap_or(usize::MAX),
                });
            }
        }
        let zstd = match &mut self.zstd {
            Some(d) => d,
            slot @ None => {
                slot.insert(zstd::bulk::Decompressor::new().map_err(ProtocolError::Zstd)?)
            }
        };
        // 64-byte aligned, so arrow can use the buffers in place.
        let mut out = MutableBuffer::from_len_zeroed(raw_len);
        let n = zstd
            .decompress_to_buffer(body, out.as_slice_mut())
            .map_err(ProtocolError::Zstd)?;
        if n != raw_len {
            return Err(ProtocolError::DecompressedLengthMismatch {
                declared: raw_len,
                actual: n,
            });
        }
        Ok(out.into())
    }
}

/// End of a data stream, agent -> broker ([`FrameKind::End`], JSON): totals let the broker
/// detect lost batches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct End {
    /// Batches sent on the stream.
    pub batches: u64,
    /// Rows sent on the stream.
    pub rows: u64,
    /// Values the read changed on purpose (zero dates read as NULL), per column; the
    /// receiver checks it ([`Changes::check`](ferry_model::Changes::check)).
    #[serde(default, skip_serializing_if = "ferry_model::Changes::is_empty")]
    pub changed: ferry_model::Changes,
}

/// Broker -> agent on the same stream ([`FrameKind::Ack`], JSON): everything up to and
/// including `seq` is committed, so the agent may forget it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest committed sequence number.
    pub seq: u64,
    /// Rows committed on the stream so far.
    pub rows: u64,
}

macro_rules! json_frame {
    ($ty:ty, $kind:expr, $name:literal) => {
        impl $ty {
            #[doc = concat!("Encodes as a JSON `", $name, "` frame.")]
            pub fn to_frame(&self) -> Result<Frame, ProtocolError> {
                Ok(Frame::new($kind, Bytes::from(serde_json::to_vec(self)?)))
            }

            #[doc = concat!("Decodes a `", $name, "` frame; other kinds are an error.")]
            pub fn from_frame(frame: &Frame) -> Result<Self, ProtocolError> {
                frame.expect_kind($kind, $name)?;
                Ok(serde_json::from_slice(&frame.payload)?)
            }
        }
    };
}

json_frame!(End, FrameKind::End, "end");
json_frame!(Ack, FrameKind::Ack, "ack");
