//! Change streams on a data stream.
//!
//! A change stream is a data stream (its [`StreamHeader`](crate::data::StreamHeader) names
//! the task; its schema is empty) whose frames carry several tables in source commit order:
//!
//! * [`FrameKind::Table`] declares table `index` of the task and its read columns (and again
//!   after its columns changed), before any of its batches;
//! * [`FrameKind::Changes`] is one change batch of a declared table: `[u32 BE index]`
//!   followed by a [`FrameKind::Batch`] frame's payload, decoded by that table's
//!   [`BatchDecoder`](crate::data::BatchDecoder);
//! * [`FrameKind::Commit`] ends a source transaction: the changes since the previous commit
//!   are applied together, and the broker's [`Ack`](crate::data::Ack) of the commit's `seq`
//!   lets the agent advance the source to its position.
//!
//! Batches and commits share one sequence of numbers, which increases along the stream.

use std::sync::Arc;

use arrow_schema::SchemaRef;
use bytes::{BufMut, Bytes};
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, FrameKind};
use crate::limits::Limits;
use crate::{ipc, ProtocolError};

/// Most tables one change stream carries.
pub const MAX_STREAM_TABLES: u32 = 10_000;
/// Longest table name in a declaration.
pub const MAX_TABLE_NAME: usize = 512;

/// [`FrameKind::Table`]: table `index` of a change stream and its read columns.
///
/// Payload: `[u32 BE json_len][JSON {index, table, key}][Arrow IPC schema message]`.
#[derive(Debug, Clone, PartialEq)]
pub struct TableDecl {
    /// The table's index among the task's tables (less than [`MAX_STREAM_TABLES`]).
    pub index: u32,
    /// The table, as the task named it.
    pub table: String,
    /// The key's columns, as indexes into `schema` (empty: the table has no key).
    pub key: Vec<u32>,
    /// The table's read columns: a change batch adds its own columns after them.
    pub schema: SchemaRef,
}

#[derive(Serialize, Deserialize)]
struct DeclJson {
    index: u32,
    table: String,
    key: Vec<u32>,
}

impl TableDecl {
    /// Encodes the declaration; fails on a field the receiver would refuse.
    pub fn to_frame(&self) -> Result<Frame, ProtocolError> {
        self.check()?;
        ipc::check_schema(&self.schema)?;
        let json = serde_json::to_vec(&DeclJson {
            index: self.index,
            table: self.table.clone(),
            key: self.key.clone(),
        })?;
        crate::data::json_schema_frame(FrameKind::Table, &json, &self.schema)
    }

    /// Decodes a declaration; its payload must fit `limits.max_control_frame` (it is
    /// metadata, not data).
    pub fn from_frame(frame: &Frame, limits: &Limits) -> Result<Self, ProtocolError> {
        frame.expect_kind(FrameKind::Table, "table")?;
        let (json, schema) = crate::data::split_json_schema(
            frame,
            limits,
            ("table declaration", "table declaration JSON"),
        )?;
        let d: DeclJson = serde_json::from_slice(json)?;
        let decl = TableDecl {
            index: d.index,
            table: d.table,
            key: d.key,
            schema: Arc::new(schema),
        };
        decl.check()?;
        Ok(decl)
    }

    fn check(&self) -> Result<(), ProtocolError> {
        if self.index >= MAX_STREAM_TABLES {
            return Err(ProtocolError::InvalidField {
                field: "index",
                why: format!("{} is not below {MAX_STREAM_TABLES}", self.index),
            });
        }
        if self.table.is_empty() || self.table.len() > MAX_TABLE_NAME {
            return Err(ProtocolError::FieldTooLong {
                field: "table",
                len: self.table.len(),
                limit: MAX_TABLE_NAME,
            });
        }
        let columns = self.schema.fields().len();
        if self.key.len() > columns {
            return Err(ProtocolError::FieldTooLong {
                field: "key",
                len: self.key.len(),
                limit: columns,
            });
        }
        for (i, k) in self.key.iter().enumerate() {
            if *k as usize >= columns || self.key.iter().take(i).any(|x| x == k) {
                return Err(ProtocolError::InvalidField {
                    field: "key",
                    why: format!("column {k} of {columns} named twice or out of range"),
                });
            }
        }
        Ok(())
    }
}

/// A [`FrameKind::Changes`] frame of table `index` around an encoded batch frame.
pub fn changes_frame(index: u32, batch: &Frame) -> Frame {
    let mut payload = Vec::with_capacity(4 + batch.payload.len());
    payload.put_u32(index);
    payload.extend_from_slice(&batch.payload);
    Frame::new(FrameKind::Changes, Bytes::from(payload))
}

/// The table index of a [`FrameKind::Changes`] frame and the batch frame it carries (the
/// payload is shared, not copied).
pub fn split_changes(frame: &Frame) -> Result<(u32, Frame), ProtocolError> {
    frame.expect_kind(FrameKind::Changes, "changes")?;
    let (index, _) = frame
        .payload
        .split_first_chunk::<4>()
        .ok_or(ProtocolError::Truncated {
            what: "changes frame",
            need: 4,
            have: frame.payload.len(),
        })?;
    let index = u32::from_be_bytes(*index);
    Ok((
        index,
        Frame::new(FrameKind::Batch, frame.payload.slice(4..)),
    ))
}

/// [`FrameKind::Commit`] (JSON): the source transaction whose changes came since the
/// previous commit committed at `position`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The commit's number in the stream's sequence; the broker acknowledges it.
    pub seq: u64,
    /// The source's position after the transaction: where the stream resumes.
    pub position: ferry_model::Position,
    /// When the source committed it, in microseconds since the Unix epoch (for lag).
    pub commit_time_us: i64,
}

impl Commit {
    /// Encodes as a JSON `commit` frame.
    pub fn to_frame(&self) -> Result<Frame, ProtocolError> {
        Ok(Frame::new(
            FrameKind::Commit,
            Bytes::from(serde_json::to_vec(self)?),
        ))
    }

    /// Decodes a `commit` frame (whose position is checked as it is read).
    pub fn from_frame(frame: &Frame) -> Result<Self, ProtocolError> {
        frame.expect_kind(FrameKind::Commit, "commit")?;
        Ok(serde_json::from_slice(&frame.payload)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, Field, Schema};

    fn decl() -> TableDecl {
        TableDecl {
            index: 3,
            table: "public.orders".into(),
            key: vec![0],
            schema: Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, false),
                Field::new("note", DataType::Utf8, true),
            ])),
        }
    }

    #[test]
    fn declarations_round_trip_and_bad_ones_are_refused() {
        let limits = Limits::default();
        let d = decl();
        assert_eq!(
            TableDecl::from_frame(&d.to_frame().unwrap(), &limits).unwrap(),
            d
        );
        for bad in [
            TableDecl {
                index: MAX_STREAM_TABLES,
                ..decl()
            },
            TableDecl {
                key: vec![2],
                ..decl()
            },
            TableDecl {
                key: vec![0, 0],
                ..decl()
            },
            TableDecl {
                table: String::new(),
                ..decl()
            },
        ] {
            assert!(bad.to_frame().is_err(), "{bad:?}");
        }
        // A hostile sender's frame is checked on arrival too.
        let mut frame = d.to_frame().unwrap();
        let p = frame.payload.to_vec();
        let json_len = u32::from_be_bytes(p[..4].try_into().unwrap()) as usize;
        let json = String::from_utf8(p[4..4 + json_len].to_vec())
            .unwrap()
            .replace("\"key\":[0]", "\"key\":[9]");
        let mut q = (json.len() as u32).to_be_bytes().to_vec();
        q.extend_from_slice(json.as_bytes());
        q.extend_from_slice(&p[4 + json_len..]);
        frame.payload = Bytes::from(q);
        assert!(TableDecl::from_frame(&frame, &limits).is_err());
        // Every prefix is an error, never a panic.
        let whole = d.to_frame().unwrap().payload;
        for n in 0..whole.len() {
            let f = Frame::new(FrameKind::Table, whole.slice(..n));
            assert!(TableDecl::from_frame(&f, &limits).is_err());
        }
    }

    #[test]
    fn changes_frames_carry_their_table() {
        let batch = Frame::new(FrameKind::Batch, Bytes::from_static(b"abc"));
        let (i, inner) = split_changes(&changes_frame(7, &batch)).unwrap();
        assert_eq!((i, inner), (7, batch));
        for n in 0..4 {
            let f = Frame::new(FrameKind::Changes, Bytes::from(vec![0u8; n]));
            assert!(split_changes(&f).is_err());
        }
    }

    #[test]
    fn commits_check_their_position() {
        let c = Commit {
            seq: 9,
            position: ferry_model::Position::int(123),
            commit_time_us: 1,
        };
        assert_eq!(Commit::from_frame(&c.to_frame().unwrap()).unwrap(), c);
        let empty = Frame::new(
            FrameKind::Commit,
            Bytes::from_static(br#"{"seq":1,"position":[],"commit_time_us":0}"#),
        );
        assert!(Commit::from_frame(&empty).is_err());
    }
}
