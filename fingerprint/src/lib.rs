//! Canonical row fingerprints, for `ferry verify`.
//!
//! Verification reads both sides where they are (the source on its agent, the target on the
//! broker) and compares hashes, so only fingerprints and the keys of differing rows cross the
//! tunnel. For the same logical value to hash alike whatever type mapping a job applied, every
//! value is first put in a canonical form ([`canon`]). A split's rows are summed per bucket of
//! their key hash ([`digest`]): order-independent, so the two sides may read in any order and
//! any splits. Buckets that differ are read again row by row and compared key by key
//! ([`diff`]).

#![forbid(unsafe_code)]

pub mod canon;
pub mod diff;
pub mod digest;
mod json;
pub mod pg;
pub mod pgscheme;

pub use diff::{diff_rows, DiffKind, RowDiff};
pub use digest::{
    append_constants, bucket_batch, column_term, read_rows, read_values, result_schema,
    BucketTotals, Digester, RowDigest, RowValues,
};
/// The hash of a JSON document (key order and spacing do not count), or `None` when the text
/// is not JSON.
pub use json::hash as json_hash;

/// Why a split could not be fingerprinted, or a fingerprint not be read.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// The ask is out of bounds.
    #[error("verification request: {0}")]
    Ask(String),
    /// The ask names a column the read does not have.
    #[error("verification request: no column `{0}` in the read")]
    NoColumn(String),
    /// A batch or result is not shaped as expected.
    #[error("fingerprint: {0}")]
    Shape(String),
}
