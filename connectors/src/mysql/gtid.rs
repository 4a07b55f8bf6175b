//! GTID sets a change stream may start after, in MariaDB's form (`domain-server-seq`, one
//! per replication domain) or MySQL's (`uuid:1-100:200,uuid2:5`).
//!
//! A set arrives from the cloud side (the job's `setting.start`), so it is parsed here into
//! numbers and written back from them: no text of it reaches the server as given.

use mysql_async::{GnoInterval, Sid};

use crate::error::ConnectorError;

/// Longest set taken, in bytes (a position's text value holds at most 8 KiB).
const MAX_SET_LEN: usize = 8 * 1024;
/// Most members (domains, or source UUIDs with their intervals) in one set.
const MAX_MEMBERS: usize = 256;

/// A MySQL source's transactions: its UUID and the inclusive ranges of numbers held.
pub type SourceRanges = ([u8; 16], Vec<(u64, u64)>);

/// A parsed GTID set: the transactions the target already holds; the stream starts after
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GtidSet {
    /// MariaDB: per replication domain, the last transaction held (domain, server, seq).
    MariaDb(Vec<(u32, u32, u64)>),
    /// MySQL: per source UUID, the transaction numbers held, as inclusive ranges.
    MySql(Vec<SourceRanges>),
}

fn bad(text: &str, why: impl std::fmt::Display) -> ConnectorError {
    let shown: String = text.chars().take(80).collect();
    ConnectorError::config(
        "position",
        format!(
            "{shown:?} is not a GTID set ({why}); give MariaDB's `domain-server-seq,…` \
             (as @@gtid_binlog_pos shows it) or MySQL's `uuid:first-last,…` (as \
             @@gtid_executed shows it)"
        ),
    )
}

fn number<T: std::str::FromStr>(text: &str, part: &str) -> Result<T, ConnectorError> {
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(text, format!("`{part}` is not a number")));
    }
    part.parse()
        .map_err(|_| bad(text, format!("`{part}` is out of range")))
}

fn uuid(text: &str, part: &str) -> Result<[u8; 16], ConnectorError> {
    let groups: Vec<&str> = part.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    if lens != [8, 4, 4, 4, 12] {
        return Err(bad(text, format!("`{part}` is not a UUID")));
    }
    let hex: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = hex
            .get(2 * i..2 * i + 2)
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| bad(text, format!("`{part}` is not a UUID")))?;
    }
    Ok(out)
}

impl GtidSet {
    /// Parses `text`, refusing anything but a well-formed set of one form.
    pub fn parse(text: &str) -> Result<Self, ConnectorError> {
        if text.len() > MAX_SET_LEN {
            return Err(bad(text, format!("longer than {MAX_SET_LEN} bytes")));
        }
        let members: Vec<&str> = text
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .collect();
        if members.is_empty() {
            return Err(bad(text, "it is empty"));
        }
        if members.len() > MAX_MEMBERS {
            return Err(bad(text, format!("more than {MAX_MEMBERS} members")));
        }
        if members[0].contains(':') {
            let mut out: Vec<SourceRanges> = Vec::new();
            for m in members {
                let mut parts = m.split(':');
                let id = uuid(text, parts.next().unwrap_or(""))?;
                let mut ranges = Vec::new();
                for r in parts {
                    let (first, last) = match r.split_once('-') {
                        Some((a, b)) => (number::<u64>(text, a)?, number::<u64>(text, b)?),
                        None if r.bytes().next().is_some_and(|b| b.is_ascii_digit()) => {
                            let n = number::<u64>(text, r)?;
                            (n, n)
                        }
                        // MySQL 8.3's tagged GTIDs (`uuid:tag:1-5`).
                        None => {
                            return Err(bad(text, format!("tagged GTIDs (`{r}`) are not taken")))
                        }
                    };
                    // The wire form's end is exclusive: `last + 1` must fit.
                    if first == 0 || first > last || last >= i64::MAX as u64 {
                        return Err(bad(text, format!("`{r}` is not a range of transactions")));
                    }
                    ranges.push((first, last));
                }
                if ranges.is_empty() {
                    return Err(bad(text, format!("`{m}` has no transactions")));
                }
                if out.iter().any(|(u, _)| *u == id) {
                    return Err(bad(text, "a source UUID appears twice"));
                }
                out.push((id, ranges));
            }
            Ok(GtidSet::MySql(out))
        } else {
            let mut out: Vec<(u32, u32, u64)> = Vec::new();
            for m in members {
                let parts: Vec<&str> = m.split('-').collect();
                let [d, s, n] = parts.as_slice() else {
                    return Err(bad(text, format!("`{m}` is not domain-server-seq")));
                };
                let member = (number(text, d)?, number(text, s)?, number(text, n)?);
                if out.iter().any(|o| o.0 == member.0) {
                    return Err(bad(text, "a replication domain appears twice"));
                }
                out.push(member);
            }
            Ok(GtidSet::MariaDb(out))
        }
    }

    /// MariaDB's `@slave_connect_state`, written from the parsed numbers.
    pub fn connect_state(&self) -> Option<String> {
        match self {
            GtidSet::MariaDb(m) => Some(
                m.iter()
                    .map(|(d, s, n)| format!("{d}-{s}-{n}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            GtidSet::MySql(_) => None,
        }
    }

    /// MySQL's set as COM_BINLOG_DUMP_GTID carries it.
    pub fn sids(&self) -> Option<Vec<Sid<'static>>> {
        match self {
            GtidSet::MySql(m) => Some(
                m.iter()
                    .map(|(id, ranges)| {
                        Sid::new(*id).with_intervals(
                            ranges
                                .iter()
                                .map(|(a, b)| GnoInterval::new(*a, b + 1))
                                .collect(),
                        )
                    })
                    .collect(),
            ),
            GtidSet::MariaDb(_) => None,
        }
    }

    /// Which server writes this form.
    pub fn flavor(&self) -> &'static str {
        match self {
            GtidSet::MariaDb(_) => "MariaDB",
            GtidSet::MySql(_) => "MySQL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse_and_write_back_from_numbers() {
        let m = GtidSet::parse(" 0-1-100, 7-2-5").unwrap();
        assert_eq!(m, GtidSet::MariaDb(vec![(0, 1, 100), (7, 2, 5)]));
        assert_eq!(m.connect_state().as_deref(), Some("0-1-100,7-2-5"));
        let s = GtidSet::parse(
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5:11,3e11fa47-71ca-11e1-9e33-c80aa9429563:7",
        )
        .unwrap();
        let GtidSet::MySql(sids) = &s else {
            panic!("{s:?}")
        };
        assert_eq!(sids[0].1, vec![(1, 5), (11, 11)]);
        assert_eq!(sids[0].0[0], 0x3e);
        let wire = s.sids().unwrap();
        assert_eq!(wire[0].intervals()[0].end(), 6);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "0-1-1'; DROP TABLE t; --",
            "0-1",
            "0-1-1-1",
            "0-1-x",
            "0-1-99999999999999999999999",
            "4294967296-1-1",
            "0-1-1,0-2-2",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:0-4",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:5-4",
            "3E11FA47-71CA-11E1-9E33-C80AA942956:1-4",
            "3E11FA47-71CA-11E1-9E33-C80AA942956Z:1-4",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:tag:1-4",
            "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-9223372036854775807",
        ] {
            assert!(GtidSet::parse(bad).is_err(), "{bad}");
        }
        assert!(GtidSet::parse(&"0-1-1,".repeat(2000)).is_err());
        let many: Vec<String> = (0..300).map(|d| format!("{d}-1-1")).collect();
        assert!(GtidSet::parse(&many.join(",")).is_err());
    }
}
