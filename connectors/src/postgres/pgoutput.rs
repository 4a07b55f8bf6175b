//! Decoding PostgreSQL's `pgoutput` logical replication messages (protocol version 1, the
//! form a slot sends with `proto_version '1'`), sans-IO: bytes in, a typed message out, values
//! borrowed from the input. What carries the bytes (the streaming replication protocol, or
//! `pg_logical_slot_get_binary_changes` in tests) is the caller's business.
//!
//! The bytes come from the source database, not from the cloud side, but they are decoded as
//! carefully as network input: every length is checked against what is left, counts are
//! bounded before anything is allocated for them, and nothing panics.
//!
//! A column of a tuple is one of four things ([`Cell`]): NULL, a value in text or in binary
//! form (with `binary 'true'`, the type's send format, the same bytes a binary COPY carries),
//! or **unchanged TOAST**: an update that did not touch a large out-of-line value does not
//! resend it. Such a column must be left as it is in the target, never written as NULL.

use thiserror::Error;

/// PostgreSQL's limit on a table's columns (`MaxTupleAttributeNumber`); a message claiming
/// more is malformed.
pub const MAX_COLUMNS: usize = 1664;

/// Why bytes are not a `pgoutput` message.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PgOutputError {
    /// The message ended before a field it announces.
    #[error("pgoutput {message} message truncated reading {field}")]
    Truncated {
        message: &'static str,
        field: &'static str,
    },
    /// The first byte names no message of protocol version 1.
    #[error("unknown pgoutput message type {0:#04x}")]
    UnknownMessage(u8),
    /// A tuple column's kind byte is not `n`, `u`, `t` or `b`.
    #[error("unknown tuple column kind {0:#04x} in a pgoutput {1} message")]
    UnknownCell(u8, &'static str),
    /// An update or delete's tuple marker is not the one the protocol puts there.
    #[error("unexpected tuple marker {found:#04x} in a pgoutput {message} message")]
    UnexpectedMarker { message: &'static str, found: u8 },
    /// A count beyond what PostgreSQL can produce (columns) or the message can hold.
    #[error("pgoutput {message} message announces {count} {what}")]
    TooMany {
        message: &'static str,
        what: &'static str,
        count: i64,
    },
    /// A name is not UTF-8.
    #[error("pgoutput {message} message has a {field} that is not UTF-8")]
    NotUtf8 {
        message: &'static str,
        field: &'static str,
    },
    /// Bytes are left after the message's last field.
    #[error("{0} bytes after the end of a pgoutput {1} message")]
    Trailing(usize, &'static str),
}

/// A WAL position.
pub type Lsn = u64;

/// One `pgoutput` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// A transaction starts; `final_lsn` is where it commits.
    Begin {
        final_lsn: Lsn,
        /// Microseconds since 2000-01-01 00:00 UTC.
        commit_time: i64,
        xid: u32,
    },
    /// The transaction commits at `lsn`; `end_lsn` is where the next one may start.
    Commit {
        lsn: Lsn,
        end_lsn: Lsn,
        commit_time: i64,
    },
    /// Changes that follow came to this server from another (logical replication origin).
    Origin {
        lsn: Lsn,
        name: &'a str,
    },
    /// A table's description, sent before its first change in a session and after it
    /// changes (a column added, a type changed).
    Relation(Relation),
    /// A non-built-in type's name, sent before a relation that uses it.
    Type {
        oid: u32,
        namespace: String,
        name: String,
    },
    Insert {
        relation: u32,
        new: Vec<Cell<'a>>,
    },
    /// `old` is the replica identity (`Key`) when the key changed, or the whole old row
    /// (`Full`) under `REPLICA IDENTITY FULL`; `None` when the key is unchanged.
    Update {
        relation: u32,
        old: Option<Old<'a>>,
        new: Vec<Cell<'a>>,
    },
    Delete {
        relation: u32,
        old: Old<'a>,
    },
    Truncate {
        relations: Vec<u32>,
        cascade: bool,
        restart_identity: bool,
    },
    /// A `pg_logical_emit_message()`.
    Message {
        transactional: bool,
        lsn: Lsn,
        prefix: &'a str,
        content: &'a [u8],
    },
}

/// A table as the stream describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub oid: u32,
    pub namespace: String,
    pub name: String,
    /// `d` default (the primary key), `n` nothing, `f` full, `i` an index.
    pub replica_identity: u8,
    pub columns: Vec<RelationColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelationColumn {
    /// Part of the replica identity (the key old values are sent for).
    pub key: bool,
    pub name: String,
    pub type_oid: u32,
    pub type_modifier: i32,
}

/// The old values an update or delete carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Old<'a> {
    /// The replica identity's columns (others NULL).
    Key(Vec<Cell<'a>>),
    /// Every column (`REPLICA IDENTITY FULL`).
    Full(Vec<Cell<'a>>),
}

impl<'a> Old<'a> {
    pub fn cells(&self) -> &[Cell<'a>] {
        match self {
            Old::Key(c) | Old::Full(c) => c,
        }
    }
}

/// One column of a tuple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cell<'a> {
    Null,
    /// A TOASTed value the change left as it was: not sent, keep the target's.
    Unchanged,
    /// The type's text output.
    Text(&'a [u8]),
    /// The type's send format (`binary 'true'`).
    Binary(&'a [u8]),
}

/// Decodes one message.
pub fn decode(buf: &[u8]) -> Result<Message<'_>, PgOutputError> {
    let Some((&tag, rest)) = buf.split_first() else {
        return Err(PgOutputError::Truncated {
            message: "empty",
            field: "type",
        });
    };
    let name = message_name(tag).ok_or(PgOutputError::UnknownMessage(tag))?;
    let mut r = Reader {
        buf: rest,
        message: name,
    };
    let m = match tag {
        b'B' => Message::Begin {
            final_lsn: r.u64("final LSN")?,
            commit_time: r.i64("commit time")?,
            xid: r.u32("xid")?,
        },
        b'C' => {
            let _flags = r.u8("flags")?;
            Message::Commit {
                lsn: r.u64("commit LSN")?,
                end_lsn: r.u64("end LSN")?,
                commit_time: r.i64("commit time")?,
            }
        }
        b'O' => Message::Origin {
            lsn: r.u64("LSN")?,
            name: r.str("origin name")?,
        },
        b'R' => {
            let oid = r.u32("relation")?;
            let namespace = r.str("namespace")?.to_string();
            let name = r.str("relation name")?.to_string();
            let replica_identity = r.u8("replica identity")?;
            let n = r.count("columns", 1 + 1 + 4 + 4)?;
            let mut columns = Vec::with_capacity(n);
            for _ in 0..n {
                let flags = r.u8("column flags")?;
                columns.push(RelationColumn {
                    key: flags & 1 == 1,
                    name: r.str("column name")?.to_string(),
                    type_oid: r.u32("column type")?,
                    type_modifier: r.i32("type modifier")?,
                });
            }
            Message::Relation(Relation {
                oid,
                namespace,
                name,
                replica_identity,
                columns,
            })
        }
        b'Y' => Message::Type {
            oid: r.u32("type")?,
            namespace: r.str("namespace")?.to_string(),
            name: r.str("type name")?.to_string(),
        },
        b'I' => {
            let relation = r.u32("relation")?;
            r.marker(b'N')?;
            Message::Insert {
                relation,
                new: r.tuple()?,
            }
        }
        b'U' => {
            let relation = r.u32("relation")?;
            let (old, marker) = match r.u8("tuple marker")? {
                b'K' => (Some(Old::Key(r.tuple()?)), r.u8("tuple marker")?),
                b'O' => (Some(Old::Full(r.tuple()?)), r.u8("tuple marker")?),
                m => (None, m),
            };
            if marker != b'N' {
                return Err(PgOutputError::UnexpectedMarker {
                    message: name,
                    found: marker,
                });
            }
            Message::Update {
                relation,
                old,
                new: r.tuple()?,
            }
        }
        b'D' => {
            let relation = r.u32("relation")?;
            let old = match r.u8("tuple marker")? {
                b'K' => Old::Key(r.tuple()?),
                b'O' => Old::Full(r.tuple()?),
                m => {
                    return Err(PgOutputError::UnexpectedMarker {
                        message: name,
                        found: m,
                    })
                }
            };
            Message::Delete { relation, old }
        }
        b'T' => {
            let n = r.u32("relation count")?;
            let options = r.u8("options")?;
            let n = r.bounded(i64::from(n), "relations", 4)?;
            let mut relations = Vec::with_capacity(n);
            for _ in 0..n {
                relations.push(r.u32("relation")?);
            }
            Message::Truncate {
                relations,
                cascade: options & 1 != 0,
                restart_identity: options & 2 != 0,
            }
        }
        b'M' => {
            let flags = r.u8("flags")?;
            let lsn = r.u64("LSN")?;
            let prefix = r.str("prefix")?;
            let len = r.i32("content length")?;
            let len = r.bounded(i64::from(len), "content bytes", 1)?;
            Message::Message {
                transactional: flags & 1 != 0,
                lsn,
                prefix,
                content: r.take(len, "content")?,
            }
        }
        _ => return Err(PgOutputError::UnknownMessage(tag)),
    };
    if !r.buf.is_empty() {
        return Err(PgOutputError::Trailing(r.buf.len(), name));
    }
    Ok(m)
}

fn message_name(tag: u8) -> Option<&'static str> {
    Some(match tag {
        b'B' => "Begin",
        b'C' => "Commit",
        b'O' => "Origin",
        b'R' => "Relation",
        b'Y' => "Type",
        b'I' => "Insert",
        b'U' => "Update",
        b'D' => "Delete",
        b'T' => "Truncate",
        b'M' => "Message",
        _ => return None,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PgOutputError> {
        if self.buf.len() < n {
            return Err(PgOutputError::Truncated {
                message: self.message,
                field,
            });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PgOutputError> {
        let b = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, PgOutputError> {
        Ok(self.array::<1>(field)?[0])
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, PgOutputError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, PgOutputError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, PgOutputError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, PgOutputError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    /// A NUL-terminated string.
    fn str(&mut self, field: &'static str) -> Result<&'a str, PgOutputError> {
        let end = self
            .buf
            .iter()
            .position(|b| *b == 0)
            .ok_or(PgOutputError::Truncated {
                message: self.message,
                field,
            })?;
        let s = std::str::from_utf8(&self.buf[..end]).map_err(|_| PgOutputError::NotUtf8 {
            message: self.message,
            field,
        })?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// `count` items of at least `min_bytes` each, if what is left can hold them.
    fn bounded(
        &self,
        count: i64,
        what: &'static str,
        min_bytes: usize,
    ) -> Result<usize, PgOutputError> {
        let fits = usize::try_from(count)
            .ok()
            .filter(|n| n.saturating_mul(min_bytes) <= self.buf.len());
        fits.ok_or(PgOutputError::TooMany {
            message: self.message,
            what,
            count,
        })
    }

    /// A column count (Int16), within PostgreSQL's limit and what is left.
    fn count(&mut self, what: &'static str, min_bytes: usize) -> Result<usize, PgOutputError> {
        let n = i16::from_be_bytes(self.array("column count")?);
        if n < 0 || n as usize > MAX_COLUMNS {
            return Err(PgOutputError::TooMany {
                message: self.message,
                what,
                count: i64::from(n),
            });
        }
        self.bounded(i64::from(n), what, min_bytes)
    }

    fn marker(&mut self, want: u8) -> Result<(), PgOutputError> {
        match self.u8("tuple marker")? {
            m if m == want => Ok(()),
            found => Err(PgOutputError::UnexpectedMarker {
                message: self.message,
                found,
            }),
        }
    }

    fn tuple(&mut self) -> Result<Vec<Cell<'a>>, PgOutputError> {
        let n = self.count("columns", 1)?;
        let mut cells = Vec::with_capacity(n);
        for _ in 0..n {
            cells.push(match self.u8("column kind")? {
                b'n' => Cell::Null,
                b'u' => Cell::Unchanged,
                kind @ (b't' | b'b') => {
                    let len = self.i32("value length")?;
                    let len = self.bounded(i64::from(len), "value bytes", 1)?;
                    let v = self.take(len, "value")?;
                    if kind == b't' {
                        Cell::Text(v)
                    } else {
                        Cell::Binary(v)
                    }
                }
                other => return Err(PgOutputError::UnknownCell(other, self.message)),
            });
        }
        Ok(cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(cells: &[Cell]) -> Vec<u8> {
        let mut b = (cells.len() as i16).to_be_bytes().to_vec();
        for c in cells {
            match c {
                Cell::Null => b.push(b'n'),
                Cell::Unchanged => b.push(b'u'),
                Cell::Text(v) | Cell::Binary(v) => {
                    b.push(if matches!(c, Cell::Text(_)) {
                        b't'
                    } else {
                        b'b'
                    });
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
            }
        }
        b
    }

    #[test]
    fn update_with_old_key_and_unchanged_toast() {
        let mut m = vec![b'U'];
        m.extend_from_slice(&16384u32.to_be_bytes());
        m.push(b'K');
        m.extend(tuple(&[Cell::Binary(&[0, 0, 0, 1]), Cell::Null]));
        m.push(b'N');
        m.extend(tuple(&[Cell::Binary(&[0, 0, 0, 2]), Cell::Unchanged]));
        assert_eq!(
            decode(&m).unwrap(),
            Message::Update {
                relation: 16384,
                old: Some(Old::Key(vec![Cell::Binary(&[0, 0, 0, 1]), Cell::Null])),
                new: vec![Cell::Binary(&[0, 0, 0, 2]), Cell::Unchanged],
            }
        );
    }

    #[test]
    fn relation_and_truncate() {
        let mut m = vec![b'R'];
        m.extend_from_slice(&7u32.to_be_bytes());
        m.extend_from_slice(b"public\0t\0d");
        m.extend_from_slice(&2i16.to_be_bytes());
        m.extend_from_slice(b"\x01id\0");
        m.extend_from_slice(&20u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        m.extend_from_slice(b"\x00v\0");
        m.extend_from_slice(&25u32.to_be_bytes());
        m.extend_from_slice(&(-1i32).to_be_bytes());
        let Message::Relation(r) = decode(&m).unwrap() else {
            panic!("not a relation")
        };
        assert_eq!((r.oid, r.name.as_str(), r.replica_identity), (7, "t", b'd'));
        assert!(r.columns[0].key && !r.columns[1].key);
        assert_eq!(r.columns[1].type_oid, 25);

        let mut t = vec![b'T'];
        t.extend_from_slice(&2u32.to_be_bytes());
        t.push(3);
        t.extend_from_slice(&1u32.to_be_bytes());
        t.extend_from_slice(&2u32.to_be_bytes());
        assert_eq!(
            decode(&t).unwrap(),
            Message::Truncate {
                relations: vec![1, 2],
                cascade: true,
                restart_identity: true
            }
        );
    }

    #[test]
    fn malformed_messages_are_errors_not_panics_or_huge_allocations() {
        // Every prefix of valid messages, and claims of huge counts and lengths.
        let mut ins = vec![b'I'];
        ins.extend_from_slice(&1u32.to_be_bytes());
        ins.push(b'N');
        ins.extend(tuple(&[Cell::Text(b"hello"), Cell::Null]));
        assert!(matches!(decode(&ins), Ok(Message::Insert { .. })));
        for n in 0..ins.len() {
            assert!(decode(&ins[..n]).is_err(), "prefix {n}");
        }
        let mut trailing = ins.clone();
        trailing.push(0);
        assert_eq!(decode(&trailing), Err(PgOutputError::Trailing(1, "Insert")));

        let mut cols = vec![b'I', 0, 0, 0, 1, b'N'];
        cols.extend_from_slice(&i16::MAX.to_be_bytes());
        assert!(matches!(decode(&cols), Err(PgOutputError::TooMany { .. })));
        let mut len = vec![b'I', 0, 0, 0, 1, b'N', 0, 1, b't'];
        len.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode(&len), Err(PgOutputError::TooMany { .. })));
        let mut neg = vec![b'I', 0, 0, 0, 1, b'N', 0, 1, b'b'];
        neg.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(decode(&neg), Err(PgOutputError::TooMany { .. })));
        let mut trunc = vec![b'T'];
        trunc.extend_from_slice(&u32::MAX.to_be_bytes());
        trunc.push(0);
        assert!(matches!(decode(&trunc), Err(PgOutputError::TooMany { .. })));
        assert_eq!(decode(b"Z"), Err(PgOutputError::UnknownMessage(b'Z')));
        assert!(matches!(
            decode(&[b'I', 0, 0, 0, 1, b'N', 0, 1, b'x']),
            Err(PgOutputError::UnknownCell(b'x', "Insert"))
        ));
        assert!(matches!(
            decode(&[b'D', 0, 0, 0, 1, b'N', 0, 0]),
            Err(PgOutputError::UnexpectedMarker { found: b'N', .. })
        ));
        assert!(matches!(
            decode(b"O\0\0\0\0\0\0\0\x01\xff\0"),
            Err(PgOutputError::NotUtf8 { .. })
        ));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 64) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if let Some(first) = b.first_mut() {
                *first = b"BCORYIUDTM"[(next() % 10) as usize];
            }
            let _ = decode(&b);
        }
    }
}
