//! The single error type of the crate.

use crate::frame::FrameKind;

/// Everything that can go wrong while encoding or decoding Ferry wire data.
///
/// Messages are meant to be shown to operators as-is, so each says what was wrong and by how much.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A frame (or frame payload) is bigger than the limit for its stream.
    #[error("frame of {len} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// Declared or actual length.
        len: u64,
        /// Limit in force.
        limit: u32,
    },
    /// The frame kind byte is not one this version knows.
    #[error("unknown frame kind {0} (expected 1..=5)")]
    UnknownFrameKind(u8),
    /// A valid frame arrived where another kind was required.
    #[error("expected a {expected} frame, got a {got} frame")]
    UnexpectedFrame {
        /// What the caller wanted.
        expected: &'static str,
        /// What arrived.
        got: FrameKind,
    },
    /// A structure ends before its declared or fixed size.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// Which structure.
        what: &'static str,
        /// Bytes required.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// JSON of a control message (or of a data-stream JSON part) is invalid.
    #[error("malformed control message: {0}")]
    Json(#[from] serde_json::Error),
    /// A string or list field is longer than the protocol allows.
    #[error("field `{field}` is {len} long, the limit is {limit}")]
    FieldTooLong {
        /// Field name.
        field: &'static str,
        /// Actual length (bytes for strings, entries for lists).
        len: usize,
        /// Allowed maximum.
        limit: usize,
    },
    /// A field holds a value the protocol does not allow (a split whose resume position
    /// does not match its order).
    #[error("field `{field}` is invalid: {why}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A batch declares an uncompressed size above the limit (a possible zstd bomb).
    #[error("batch declares {declared} uncompressed bytes, the limit is {limit}")]
    DecompressedTooLarge {
        /// Declared uncompressed length.
        declared: u64,
        /// Limit in force.
        limit: u32,
    },
    /// The body does not have the uncompressed length its frame declared.
    #[error("batch body is {actual} bytes once decompressed, but {declared} were declared")]
    DecompressedLengthMismatch {
        /// Declared uncompressed length.
        declared: usize,
        /// Length found.
        actual: usize,
    },
    /// zstd failed, e.g. corrupt data or more output than declared ("Destination buffer is too small").
    #[error("zstd: {0}")]
    Zstd(std::io::Error),
    /// arrow refused to encode or decode the IPC data.
    #[error("invalid Arrow IPC data: {0}")]
    Ipc(arrow_schema::ArrowError),
    /// The IPC message framing or metadata is malformed (found by our own checks, before
    /// arrow sees the bytes).
    #[error("malformed Arrow IPC message: {0}")]
    IpcFraming(String),
    /// A batch or schema does not match the stream's schema, or uses an unsupported type.
    #[error("schema mismatch: {0}")]
    SchemaMismatch(String),
    /// A batch has more rows than allowed.
    #[error("batch of {rows} rows exceeds the limit of {limit} rows")]
    TooManyRows {
        /// Rows declared or present.
        rows: u32,
        /// Limit in force.
        limit: u32,
    },
    /// The decoded batch does not have the row count its frame declared.
    #[error("batch frame declares {declared} rows but its data has {actual}")]
    RowCountMismatch {
        /// Rows declared in the frame header.
        declared: u32,
        /// Rows in the IPC data.
        actual: usize,
    },
    /// A compression setting or codec byte is not valid.
    #[error("invalid compression: {0}")]
    InvalidCompression(String),
    /// I/O error surfaced through the `tokio_util` codec.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl From<arrow_schema::ArrowError> for ProtocolError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        ProtocolError::Ipc(e)
    }
}
