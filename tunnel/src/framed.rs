//! Ferry frames on tunnel streams (QUIC or TLS/TCP), with the size limits
//! of `ferry-protocol`.

use bytes::Bytes;
use ferry_protocol::frame::{encode_header, Frame, FrameCodec};
use ferry_protocol::ProtocolError;
use futures::StreamExt;
use tokio_util::codec::FramedRead;

use crate::conn::{RecvStream, SendStream};

/// A failure while moving frames over a stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The bytes were not a valid frame (or exceeded a limit).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// Reading from the stream failed (reset, connection lost).
    #[error("stream read failed: {0}")]
    Read(#[source] std::io::Error),
    /// Writing to the stream failed (stopped or reset by the peer, connection lost).
    #[error("stream write failed: {0}")]
    Write(#[source] std::io::Error),
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    TruncatedFrame,
    /// The stream was already finished or reset.
    #[error("stream already closed")]
    Closed,
}

impl StreamError {
    /// Separates the stream's own read errors from bad frames.
    fn from_codec(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                StreamError::TruncatedFrame
            }
            ProtocolError::Io(io) => StreamError::Read(io),
            other => StreamError::Protocol(other),
        }
    }
}

/// Reads frames from a receive stream; never buffers more than one frame of
/// at most `max_frame` bytes.
pub struct FrameReader {
    inner: FramedRead<RecvStream, FrameCodec>,
    wire_bytes: u64,
}

impl FrameReader {
    /// `max_frame`: the largest payload accepted on this stream.
    pub fn new(stream: RecvStream, max_frame: u32) -> Self {
        Self {
            inner: FramedRead::with_capacity(stream, FrameCodec::new(max_frame), 64 * 1024),
            wire_bytes: 0,
        }
    }

    /// Changes the largest payload accepted from the next frame on, e.g. a
    /// small limit for a stream's header, the larger one for what follows.
    /// A frame over the limit is refused as soon as its length prefix is
    /// in, before its payload is buffered.
    pub fn set_max_frame(&mut self, max_frame: u32) {
        *self.inner.decoder_mut() = FrameCodec::new(max_frame);
    }

    /// The largest payload accepted now.
    pub fn max_frame(&self) -> u32 {
        self.inner.decoder().max_frame_len()
    }

    /// The next frame, or `None` when the peer finished the stream cleanly
    /// between frames.
    pub async fn next(&mut self) -> Result<Option<Frame>, StreamError> {
        match self.inner.next().await {
            None => Ok(None),
            Some(Ok(frame)) => {
                self.wire_bytes += frame.wire_len() as u64;
                Ok(Some(frame))
            }
            Some(Err(e)) => Err(StreamError::from_codec(e)),
        }
    }

    /// Like [`next`](Self::next), but a stream that ends here is an error.
    pub async fn require(&mut self) -> Result<Frame, StreamError> {
        self.next().await?.ok_or(StreamError::TruncatedFrame)
    }

    /// Frame bytes read so far (headers included).
    pub fn wire_bytes(&self) -> u64 {
        self.wire_bytes
    }

    /// Asks the peer to stop sending on this stream.
    pub fn stop(&mut self) {
        self.inner.get_mut().stop();
    }
}

/// Writes frames to a send stream without copying payloads.
pub struct FrameWriter {
    inner: SendStream,
    wire_bytes: u64,
}

impl FrameWriter {
    pub fn new(stream: SendStream) -> Self {
        Self {
            inner: stream,
            wire_bytes: 0,
        }
    }

    /// Sends one frame; returns when QUIC has accepted it into the stream's
    /// send buffer (flow control applies backpressure here).
    pub async fn send(&mut self, frame: &Frame) -> Result<(), StreamError> {
        let len = u32::try_from(frame.payload.len()).map_err(|_| ProtocolError::FrameTooLarge {
            len: frame.payload.len() as u64,
            limit: u32::MAX,
        })?;
        let header = Bytes::copy_from_slice(&encode_header(frame.kind, len));
        let mut chunks = [header, frame.payload.clone()];
        self.inner
            .write_all_chunks(&mut chunks)
            .await
            .map_err(StreamError::Write)?;
        self.wire_bytes += frame.wire_len() as u64;
        Ok(())
    }

    /// Finishes the stream: the peer reads `None` after the last frame.
    pub fn finish(&mut self) -> Result<(), StreamError> {
        self.inner.finish().map_err(|_| StreamError::Closed)
    }

    /// Frame bytes written so far (headers included).
    pub fn wire_bytes(&self) -> u64 {
        self.wire_bytes
    }

    /// The underlying stream (reset, stopped()).
    pub fn stream(&mut self) -> &mut SendStream {
        &mut self.inner
    }
}
