//! Ferry wire protocol: everything that crosses the QUIC tunnel between the agent and the
//! broker, as bytes, with no sockets.
//!
//! * [`frame`]: the `[kind][u32 length][payload]` framing shared by every stream, and a
//!   `tokio_util` codec that enforces a size limit before buffering anything.
//! * [`control`]: JSON control messages (handshake, heartbeats, errors) on the control stream.
//! * [`data`]: data streams — a [`data::StreamHeader`] carrying the Arrow schema, then batch
//!   frames holding one Arrow IPC record batch each (optionally zstd-compressed), then
//!   [`data::End`]; the broker answers with [`data::Ack`]s.
//! * [`changes`]: change streams on a data stream — table declarations, change batches of
//!   several tables in commit order, and commits with the source position.
//! * [`version`] / [`limits`]: version negotiation and the resource limits a decoder enforces.
//!
//! Everything that decodes bytes from the network treats them as hostile: it never panics and
//! never allocates more than a configured [`limits::Limits`] bound, checking declared lengths
//! against both the limit and the bytes actually present before touching them.

// Decoders handle hostile bytes: no panicking shortcuts outside tests.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable
    )
)]

pub mod changes;
pub mod control;
pub mod data;
mod error;
pub mod frame;
mod ipc;
pub mod limits;
pub mod version;

pub use error::ProtocolError;
pub use frame::{Frame, FrameCodec, FrameKind};
pub use limits::Limits;

/// ALPN identifier of the Ferry protocol on the QUIC tunnel; bump the suffix only for a
/// change that cannot be negotiated through [`version`].
pub const ALPN: &[u8] = b"ferry/1";
