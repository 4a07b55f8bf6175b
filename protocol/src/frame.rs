//! Framing shared by every Ferry stream: `[u8 kind][u32 big-endian payload length][payload]`.
//!
//! QUIC streams are byte streams, so each message needs its own boundary; a fixed 5-byte header
//! lets the decoder learn the payload size — and refuse it — before buffering any of it.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::ProtocolError;

/// Length of the frame header: one kind byte and a big-endian `u32` payload length.
pub const HEADER_LEN: usize = 5;

/// What a frame carries; the discriminant is the kind byte on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// JSON [`crate::control::ControlMessage`].
    Control = 1,
    /// First frame of a data stream: [`crate::data::StreamHeader`].
    StreamHeader = 2,
    /// One Arrow record batch, see [`crate::data::BatchEncoder`].
    Batch = 3,
    /// End of a data stream: [`crate::data::End`].
    End = 4,
    /// Broker acknowledgement: [`crate::data::Ack`].
    Ack = 5,
    /// A change stream's table and its columns: [`crate::changes::TableDecl`].
    Table = 6,
    /// A change stream's batch of one table: [`crate::changes::split_changes`].
    Changes = 7,
    /// A change stream's source commit: [`crate::changes::Commit`].
    Commit = 8,
}

impl FrameKind {
    /// Lower-case name used in error messages and logs.
    pub const fn name(self) -> &'static str {
        match self {
            FrameKind::Control => "control",
            FrameKind::StreamHeader => "stream header",
            FrameKind::Batch => "batch",
            FrameKind::End => "end",
            FrameKind::Ack => "ack",
            FrameKind::Table => "table",
            FrameKind::Changes => "changes",
            FrameKind::Commit => "commit",
        }
    }
}

impl fmt::Display for FrameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u8> for FrameKind {
    type Error = ProtocolError;

    fn try_from(b: u8) -> Result<Self, ProtocolError> {
        Ok(match b {
            1 => FrameKind::Control,
            2 => FrameKind::StreamHeader,
            3 => FrameKind::Batch,
            4 => FrameKind::End,
            5 => FrameKind::Ack,
            6 => FrameKind::Table,
            7 => FrameKind::Changes,
            8 => FrameKind::Commit,
            other => return Err(ProtocolError::UnknownFrameKind(other)),
        })
    }
}

/// One frame: its kind and the payload (without the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Frame kind.
    pub kind: FrameKind,
    /// Payload bytes; `Bytes` so batch payloads can be handed on without copying.
    pub payload: Bytes,
}

impl Frame {
    /// A frame of `kind` carrying `payload`.
    pub fn new(kind: FrameKind, payload: Bytes) -> Self {
        Frame { kind, payload }
    }

    /// Bytes this frame occupies on the wire, header included.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Errors unless this frame is of `kind`; `expected` names it in the error.
    pub fn expect_kind(
        &self,
        kind: FrameKind,
        expected: &'static str,
    ) -> Result<(), ProtocolError> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(ProtocolError::UnexpectedFrame {
                expected,
                got: self.kind,
            })
        }
    }
}

/// Encode just the 5-byte header, so callers can send header and payload as two chunks
/// without copying the payload.
pub fn encode_header(kind: FrameKind, len: u32) -> [u8; HEADER_LEN] {
    let l = len.to_be_bytes();
    [kind as u8, l[0], l[1], l[2], l[3]]
}

/// `tokio_util` codec for [`Frame`]s with a maximum payload length.
///
/// The decoder rejects an oversized length or unknown kind as soon as the header is in,
/// before reserving memory for the payload; the encoder refuses oversized payloads so a
/// sender learns about a limit violation locally instead of from a dropped connection.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_len: u32,
}

impl FrameCodec {
    /// A codec accepting payloads of at most `max_frame_len` bytes.
    pub fn new(max_frame_len: u32) -> Self {
        FrameCodec { max_frame_len }
    }

    /// The payload limit in force.
    pub fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, ProtocolError> {
        let Some(header) = src.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let mut header = header;
        let kind = FrameKind::try_from(header.get_u8())?;
        let len = header.get_u32();
        if len > self.max_frame_len {
            return Err(ProtocolError::FrameTooLarge {
                len: u64::from(len),
                limit: self.max_frame_len,
            });
        }
        // u32 always fits in usize on the 32/64-bit targets we build for.
        let total = HEADER_LEN + len as usize;
        if src.len() < total {
            // Bounded by max_frame_len, checked above.
            src.reserve(total - src.len());
            return Ok(None);
        }
        src.advance(HEADER_LEN);
        let payload = src.split_to(len as usize).freeze();
        Ok(Some(Frame { kind, payload }))
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.encode(&frame, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = ProtocolError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let len = u32::try_from(frame.payload.len())
            .ok()
            .filter(|l| *l <= self.max_frame_len)
            .ok_or(ProtocolError::FrameTooLarge {
                len: frame.payload.len() as u64,
                limit: self.max_frame_len,
            })?;
        dst.reserve(frame.wire_len());
        dst.put_slice(&encode_header(frame.kind, len));
        dst.put_slice(&frame.payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(codec: &mut FrameCodec, f: &Frame) -> BytesMut {
        let mut b = BytesMut::new();
        codec.encode(f, &mut b).unwrap();
        b
    }

    #[test]
    fn roundtrip_and_partial_input() {
        let mut c = FrameCodec::new(1024);
        let f1 = Frame::new(FrameKind::Batch, Bytes::from_static(b"hello"));
        let f2 = Frame::new(FrameKind::End, Bytes::new());
        let mut wire = enc(&mut c, &f1);
        wire.extend_from_slice(&enc(&mut c, &f2));
        assert_eq!(wire.len(), f1.wire_len() + f2.wire_len());

        // Feed one byte at a time: nothing is returned until a frame is complete.
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for b in wire.iter() {
            buf.put_u8(*b);
            while let Some(f) = c.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        assert_eq!(out, vec![f1, f2]);
        assert!(buf.is_empty());
    }

    #[test]
    fn header_encoding() {
        assert_eq!(encode_header(FrameKind::Ack, 0x0102_0304), [5, 1, 2, 3, 4]);
    }

    #[test]
    fn oversized_length_rejected_before_buffering() {
        let mut c = FrameCodec::new(64 << 20);
        let mut buf = BytesMut::from(&encode_header(FrameKind::Batch, 80_000_000)[..]);
        let cap_before = buf.capacity();
        let err = c.decode(&mut buf).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::FrameTooLarge {
                len: 80_000_000,
                limit: 67_108_864
            }
        ));
        assert_eq!(
            err.to_string(),
            "frame of 80000000 bytes exceeds the limit of 67108864 bytes"
        );
        assert_eq!(
            buf.capacity(),
            cap_before,
            "must not reserve for a rejected frame"
        );
    }

    #[test]
    fn limit_is_inclusive() {
        let mut c = FrameCodec::new(3);
        let ok = Frame::new(FrameKind::Control, Bytes::from_static(b"abc"));
        let wire = enc(&mut c, &ok);
        assert_eq!(c.decode(&mut wire.clone()).unwrap(), Some(ok));
        let big = Frame::new(FrameKind::Control, Bytes::from_static(b"abcd"));
        let mut b = BytesMut::new();
        assert!(matches!(
            c.encode(&big, &mut b),
            Err(ProtocolError::FrameTooLarge { len: 4, limit: 3 })
        ));
        assert!(b.is_empty());
    }

    #[test]
    fn unknown_kind() {
        let mut c = FrameCodec::new(1024);
        for k in [0u8, 9, 255] {
            let mut buf = BytesMut::from(&[k, 0, 0, 0, 1, 9][..]);
            assert!(matches!(
                c.decode(&mut buf),
                Err(ProtocolError::UnknownFrameKind(x)) if x == k
            ));
        }
    }

    #[test]
    fn short_input_needs_more() {
        let mut c = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&[3u8, 0, 0][..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        let mut buf = BytesMut::from(&[3u8, 0, 0, 0, 10, 1, 2][..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= 15);
    }
}
