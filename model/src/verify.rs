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
    /// How rows are hashed (a reader that does not know a scheme must not be asked for it:
    /// see [`Scheme`]).
    #[serde(default, skip_serializing_if = "Scheme::is_canonical")]
    pub scheme: Scheme,
    /// What to send back.
    pub pass: VerifyPass,
}

/// How a split's rows are hashed. Both sides of a table use the same one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheme {
    /// Canonical values hashed with XXH3 where the rows are read (any source, any target).
    #[default]
    Canonical,
    /// PostgreSQL's own seeded hash functions, one kind per read column: a PostgreSQL side
    /// hashes and sums its rows inside the database (only bucket sums leave the server); the
    /// other side computes the same functions over its values. An agent says it knows this
    /// scheme with the [`POSTGRES_HASH_CAPABILITY`] capability; one that does not would
    /// ignore the field and hash canonically, so it is never asked.
    Postgres(Vec<PgHash>),
}

/// The `Hello` capability of an agent that fingerprints with [`Scheme::Postgres`].
pub const POSTGRES_HASH_CAPABILITY: &str = "verify-postgres-hash";

impl Scheme {
    pub fn is_canonical(&self) -> bool {
        matches!(self, Scheme::Canonical)
    }
}

/// Which of PostgreSQL's hash functions a column's values go through, as the PostgreSQL
/// side's column type decides (the other side converts its value to that type's form).
///
/// A column's hash is `H(value, column_seed(i))` (NULL: [`PgHash::null_hash`]); a row's is
/// the XOR of its columns'; a key's the XOR of its key columns' under
/// [`PgHash::key_seed`]; a row's bucket is its key hash modulo the (power of two) bucket
/// count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PgHash {
    /// `hashint8extended` of the integer (`int2`, `int4`, `int8`).
    Int,
    /// `hash_numeric_extended`, XORed with 1 for a negative value (PostgreSQL's own hash
    /// leaves the sign out).
    Numeric,
    /// `hashfloat8extended` of the value as a double (`float4`, `float8`).
    Float,
    /// `hashtextextended` of the text (a deterministic collation: the bytes).
    Text,
    /// `hashtextextended` of the bytes in lowercase hex (`bytea`: its own hash is not
    /// callable from SQL).
    Bytes,
    /// `hashint4extended` of 0 or 1.
    Bool,
    /// `hashint4extended` of days since 2000-01-01.
    Date,
    /// `time_hash_extended`: microseconds since midnight.
    Time,
    /// `timestamp_hash_extended`: microseconds since 2000-01-01, in UTC for an instant, as
    /// read for a wall clock.
    Timestamp,
    /// `hashint8extended` of the interval's microseconds as `extract(epoch ...)` counts them
    /// (a year is 365.25 days, a month 30).
    Interval,
    /// `hashtextextended` of the document as `jsonb` prints it.
    Json,
}

impl PgHash {
    /// The seed of read column `i`'s hash in a row hash.
    pub fn column_seed(i: usize) -> u64 {
        0x6665_7272_7900_0000 + i as u64
    }

    /// The seed of key column `j`'s hash in a key hash.
    pub fn key_seed(j: usize) -> u64 {
        0x6b65_7900_0000_0000 + j as u64
    }

    /// The hash of NULL under `seed`.
    pub fn null_hash(seed: u64) -> u64 {
        seed.rotate_left(17) ^ 0x6e75_6c6c_6e75_6c6c
    }
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
        if let Scheme::Postgres(kinds) = &self.scheme {
            if kinds.len() > 4096 {
                return Err(format!("at most 4096 columns, not {}", kinds.len()));
            }
            if !self.buckets.is_power_of_two() {
                return Err(format!(
                    "the postgres scheme needs a power of two of buckets, not {}",
                    self.buckets
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
            scheme: Scheme::Canonical,
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
            scheme: Scheme::Postgres(vec![PgHash::Int, PgHash::Json]),
            pass: VerifyPass::Rows {
                buckets: vec![3, 7],
            },
        };
        let j = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<VerifyAsk>(&j).unwrap(), a);
    }
}
