//! What `ferry verify` asks of a reader: fingerprints of a split instead of its rows.
//!
//! Both sides read the same logical table (the source through its agent, the target on the
//! broker) and hash every row over canonical values; only the hashes, and the keys of rows
//! that differ, cross the tunnel. An ask travels from a possibly hostile broker, so
//! [`VerifyAsk::check`] bounds every list before an agent acts on it.

use serde::{Deserialize, Serialize};

/// Most buckets a table's rows are spread over.
pub const MAX_BUCKETS: u32 = 1 << 16;
/// Most buckets whose rows one [`VerifyPass::Rows`] asks for.
pub const MAX_ROW_BUCKETS: usize = 1024;
/// Most key hashes whose values one [`VerifyPass::Values`] asks for.
pub const MAX_VALUE_KEYS: usize = 1000;
/// Most key hashes whose rows one [`VerifyPass::Copy`] asks for (about 400 KiB of JSON, well
/// inside a control frame).
pub const MAX_COPY_KEYS: usize = 20_000;

/// Fingerprint a split instead of sending its rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyAsk {
    /// The key columns, by name among the read's columns, in key order. Empty: the table
    /// has no key and a whole row is its own key.
    #[serde(default)]
    pub key: Vec<String>,
    /// How many buckets rows are spread over by the hash of their key, 1 to [`MAX_BUCKETS`].
    pub buckets: u32,
    /// Text columns compared as another kind, because the other side holds them typed (a
    /// SQLite target keeps a `TIME` as text) or as JSON.
    #[serde(default)]
    pub text_as: Vec<TextAs>,
    /// What to send back.
    pub pass: VerifyPass,
}

/// A text column to compare as a typed value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextAs {
    pub column: String,
    pub kind: TextKind,
}

/// How a text column's values are read before hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextKind {
    /// JSON, compared as a document (key order and spacing do not matter).
    Json,
    /// A decimal number (`1.50` equals `1.5`).
    Number,
    /// `YYYY-MM-DD`.
    Date,
    /// `HH:MM:SS[.ffffff]`.
    Time,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `T` and a final `Z` accepted).
    Timestamp,
    /// Seconds (`1.500000`) or `[-]H:MM:SS[.ffffff]`.
    Duration,
}

/// What a fingerprinted split sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "pass", rename_all = "snake_case")]
pub enum VerifyPass {
    /// Per non-empty bucket: its rows and the sum of their hashes.
    Buckets,
    /// Every row of these buckets: its key, its hash and each column's hash.
    Rows { buckets: Vec<u32> },
    /// The values of the rows whose key hashes are these (`--show-values`).
    Values { keys: Vec<u64> },
    /// The rows themselves whose key hashes are these, as the read has them (`--repair`
    /// copies them again).
    Copy { keys: Vec<u64> },
}

impl VerifyAsk {
    /// Bounds every list and number of an ask that came over the network.
    pub fn check(&self) -> Result<(), String> {
        if self.buckets == 0 || self.buckets > MAX_BUCKETS {
            return Err(format!(
                "buckets must be 1 to {MAX_BUCKETS}, not {}",
                self.buckets
            ));
        }
        if self.key.len() > crate::MAX_KEY_COLUMNS {
            return Err(format!(
                "at most {} key columns, not {}",
                crate::MAX_KEY_COLUMNS,
                self.key.len()
            ));
        }
        if self.text_as.len() > 4096 {
            return Err(format!(
                "at most 4096 text columns, not {}",
                self.text_as.len()
            ));
        }
        for name in self
            .key
            .iter()
            .chain(self.text_as.iter().map(|t| &t.column))
        {
            if name.is_empty() || name.len() > crate::MAX_IDENT_LEN {
                return Err(format!(
                    "a column name must be 1 to {} bytes",
                    crate::MAX_IDENT_LEN
                ));
            }
        }
        match &self.pass {
            VerifyPass::Buckets => Ok(()),
            VerifyPass::Rows { buckets } => {
                if buckets.len() > MAX_ROW_BUCKETS {
                    return Err(format!(
                        "at most {MAX_ROW_BUCKETS} buckets per pass, not {}",
                        buckets.len()
                    ));
                }
                match buckets.iter().find(|b| **b >= self.buckets) {
                    Some(b) => Err(format!("bucket {b} is not below {}", self.buckets)),
                    None => Ok(()),
                }
            }
            VerifyPass::Values { keys } if keys.len() > MAX_VALUE_KEYS => Err(format!(
                "at most {MAX_VALUE_KEYS} keys per pass, not {}",
                keys.len()
            )),
            VerifyPass::Values { .. } => Ok(()),
            VerifyPass::Copy { keys } if keys.len() > MAX_COPY_KEYS => Err(format!(
                "at most {MAX_COPY_KEYS} keys per pass, not {}",
                keys.len()
            )),
            VerifyPass::Copy { .. } => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(pass: VerifyPass) -> VerifyAsk {
        VerifyAsk {
            key: vec!["id".into()],
            buckets: 16,
            text_as: vec![],
            pass,
        }
    }

    #[test]
    fn bounds_are_checked() {
        assert!(ask(VerifyPass::Buckets).check().is_ok());
        let mut a = ask(VerifyPass::Buckets);
        a.buckets = 0;
        assert!(a.check().unwrap_err().contains("buckets"));
        a.buckets = MAX_BUCKETS + 1;
        assert!(a.check().is_err());
        assert!(ask(VerifyPass::Rows { buckets: vec![16] })
            .check()
            .unwrap_err()
            .contains("not below 16"));
        assert!(ask(VerifyPass::Rows {
            buckets: vec![0; MAX_ROW_BUCKETS + 1]
        })
        .check()
        .is_err());
        assert!(ask(VerifyPass::Values {
            keys: vec![0; MAX_VALUE_KEYS + 1]
        })
        .check()
        .is_err());
        let mut a = ask(VerifyPass::Buckets);
        a.key = vec![String::new()];
        assert!(a.check().is_err());
    }

    #[test]
    fn round_trips_as_json() {
        let a = VerifyAsk {
            key: vec!["id".into()],
            buckets: 1024,
            text_as: vec![TextAs {
                column: "doc".into(),
                kind: TextKind::Json,
            }],
            pass: VerifyPass::Rows {
                buckets: vec![3, 7],
            },
        };
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<VerifyAsk>(&j).unwrap(), a);
    }
}
