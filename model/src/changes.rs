//! Values a read changed on purpose (a zero date read as NULL), counted per column and kind
//! of change, so the job summary can say so: a user looks there, not in an agent's log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most (column, kind) entries one report holds; more are folded into one.
pub const MAX_CHANGE_ENTRIES: usize = 4096;
/// Longest column name or kind of change in a report.
pub const MAX_CHANGE_TEXT: usize = 256;

/// Counts of changed values: column → kind of change → count.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Changes(BTreeMap<String, BTreeMap<String, u64>>);

/// A report from the other side of the tunnel that breaks a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a report of changed values {0}")]
pub struct ChangesError(String);

impl Changes {
    /// Field of a record batch's schema metadata that carries the batch's changes (JSON)
    /// from a reader to whoever sends or writes it.
    pub const METADATA_KEY: &'static str = "ferry.changed";

    /// Counts `n` values of `column` changed as `what` says.
    pub fn add(&mut self, column: &str, what: &str, n: u64) {
        if n == 0 {
            return;
        }
        let entries: usize = self.0.values().map(BTreeMap::len).sum();
        let known = self.0.get(column).is_some_and(|m| m.contains_key(what));
        // One entry is kept for the fold.
        let (column, what) = if known || entries + 1 < MAX_CHANGE_ENTRIES {
            (column, what)
        } else {
            ("(other columns)", "other changes")
        };
        let c = self
            .0
            .entry(column.to_string())
            .or_default()
            .entry(what.to_string())
            .or_default();
        *c = c.saturating_add(n);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Changes) {
        for (column, kinds) in &other.0 {
            for (what, n) in kinds {
                self.add(column, what, *n);
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Values changed, over every column and kind.
    pub fn total(&self) -> u64 {
        self.0
            .values()
            .flat_map(BTreeMap::values)
            .fold(0, |a, n| a.saturating_add(*n))
    }

    /// `(column, kind, count)`, by column.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str, u64)> {
        self.0
            .iter()
            .flat_map(|(c, kinds)| kinds.iter().map(move |(w, n)| (c.as_str(), w.as_str(), *n)))
    }

    /// Checks a report from the other side of the tunnel.
    pub fn check(&self) -> Result<(), ChangesError> {
        let entries: usize = self.0.values().map(BTreeMap::len).sum();
        if entries > MAX_CHANGE_ENTRIES {
            return Err(ChangesError(format!(
                "has {entries} entries, more than {MAX_CHANGE_ENTRIES}"
            )));
        }
        for (c, kinds) in &self.0 {
            for w in std::iter::once(c).chain(kinds.keys()) {
                if w.is_empty() || w.len() > MAX_CHANGE_TEXT || w.chars().any(char::is_control) {
                    return Err(ChangesError(format!(
                        "names a column or change that is empty, longer than {MAX_CHANGE_TEXT} bytes or holds control characters"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_merge_and_check() {
        let mut a = Changes::default();
        a.add("d", "zero date read as NULL", 2);
        a.add("d", "zero date read as NULL", 1);
        a.add("e", "x", 0);
        let mut b = Changes::default();
        b.add("t", "zero date read as NULL", 4);
        b.merge(&a);
        assert_eq!(b.total(), 7);
        assert_eq!(
            b.entries().collect::<Vec<_>>(),
            vec![
                ("d", "zero date read as NULL", 3),
                ("t", "zero date read as NULL", 4)
            ]
        );
        let json = serde_json::to_string(&b).unwrap();
        assert_eq!(
            json,
            r#"{"d":{"zero date read as NULL":3},"t":{"zero date read as NULL":4}}"#
        );
        let back: Changes = serde_json::from_str(&json).unwrap();
        back.check().unwrap();
        let bad: Changes = serde_json::from_str(r#"{"a\u0007":{"x":1}}"#).unwrap();
        assert!(bad.check().is_err());
        let mut many = Changes::default();
        for i in 0..MAX_CHANGE_ENTRIES + 10 {
            many.add(&format!("c{i}"), "x", 1);
        }
        many.check().unwrap();
        assert_eq!(many.total(), (MAX_CHANGE_ENTRIES + 10) as u64);
    }
}
