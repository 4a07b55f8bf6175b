//! Lines of a file, streamed: the file is read in chunks through opendal and
//! cut at `\n` (a trailing `\r` is dropped), so memory holds one chunk and
//! the current line, never the file. A line longer than [`MAX_LINE`] is an
//! error naming the file and line, not an unbounded buffer.

use bytes::Bytes;
use futures::StreamExt;

use super::location::{storage_error, Location};
use crate::error::ConnectorError;

/// The longest line accepted (64 MiB).
pub const MAX_LINE: usize = 64 << 20;

type ByteStream = std::pin::Pin<Box<dyn futures::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Opens the byte stream of a whole file.
pub(crate) async fn byte_stream(loc: &Location, path: &str) -> Result<ByteStream, ConnectorError> {
    let reader = loc
        .op
        .reader_with(path)
        .chunk(1 << 20)
        .await
        .map_err(|e| storage_error(path, e))?;
    let s = reader
        .into_bytes_stream(..)
        .await
        .map_err(|e| storage_error(path, e))?;
    Ok(Box::pin(s))
}

/// Streams lines of one file.
pub(crate) struct Lines {
    stream: ByteStream,
    path: String,
    buf: Vec<u8>,
    chunk: Bytes,
    pos: usize,
    done: bool,
    /// 1-based number of the last line returned.
    pub line: u64,
}

impl Lines {
    pub async fn open(loc: &Location, path: &str) -> Result<Self, ConnectorError> {
        Ok(Self {
            stream: byte_stream(loc, path).await?,
            path: path.to_string(),
            buf: Vec::new(),
            chunk: Bytes::new(),
            pos: 0,
            done: false,
            line: 0,
        })
    }

    /// The next line (without its terminator), or `None` at the end.
    pub async fn next_line(&mut self) -> Result<Option<(u64, &[u8])>, ConnectorError> {
        self.buf.clear();
        loop {
            if self.pos < self.chunk.len() {
                let rest = &self.chunk[self.pos..];
                if let Some(i) = memchr::memchr(b'\n', rest) {
                    self.buf.extend_from_slice(&rest[..i]);
                    self.pos += i + 1;
                    break;
                }
                self.buf.extend_from_slice(rest);
                self.pos = self.chunk.len();
                if self.buf.len() > MAX_LINE {
                    return Err(ConnectorError::file(
                        &self.path,
                        Some(self.line + 1),
                        format!("line longer than {MAX_LINE} bytes"),
                    ));
                }
            }
            if self.done {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                break;
            }
            match self.stream.next().await {
                Some(Ok(c)) => {
                    self.chunk = c;
                    self.pos = 0;
                }
                Some(Err(e)) => {
                    return Err(ConnectorError::Storage {
                        what: self.path.clone(),
                        message: e.to_string(),
                    })
                }
                None => self.done = true,
            }
        }
        self.line += 1;
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some((self.line, &self.buf)))
    }

    /// The next line as UTF-8.
    pub async fn next_str(&mut self) -> Result<Option<(u64, &str)>, ConnectorError> {
        let path = self.path.clone();
        match self.next_line().await? {
            None => Ok(None),
            Some((line, b)) => std::str::from_utf8(b)
                .map(|s| Some((line, s)))
                .map_err(|e| ConnectorError::file(path, Some(line), format!("not UTF-8: {e}"))),
        }
    }
}
