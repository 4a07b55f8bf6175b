//! What a job asks of a reader, in DataX's vocabulary.

use serde::{Deserialize, Serialize};

/// Rows per batch when a job does not say.
pub const DEFAULT_FETCH_SIZE: usize = 8192;

/// A reader's parameters, resolved (variables substituted, data source
/// looked up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadSpec {
    /// Table to read, optionally schema-qualified (`public.orders`).
    #[serde(default)]
    pub table: Option<String>,
    /// Columns to read, in order; empty means every column of the table
    /// (DataX calls it `column`).
    #[serde(default, alias = "column")]
    pub columns: Vec<String>,
    /// Extra SQL predicate (DataX `where`).
    #[serde(default, rename = "where")]
    pub where_clause: Option<String>,
    /// Column to split on (DataX `splitPk`).
    #[serde(default)]
    pub split_pk: Option<String>,
    /// Without `splitPk`: split on the first column of the table's primary key when it is
    /// an integer (`splitOnKey: true`; a whole-database job sets it for every table).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub split_on_key: bool,
    /// A free-form query instead of `table` (DataX `querySql`); never split.
    #[serde(default)]
    pub query_sql: Option<String>,
    /// Rows per batch.
    #[serde(default = "default_fetch_size")]
    pub fetch_size: usize,
}

fn default_fetch_size() -> usize {
    DEFAULT_FETCH_SIZE
}

impl ReadSpec {
    /// The table this read names, of data source `source` (`None` for a query).
    pub fn table_ref(&self, source: Option<&str>) -> Option<crate::TableRef> {
        if self
            .query_sql
            .as_deref()
            .is_some_and(|q| !q.trim().is_empty())
        {
            return None;
        }
        crate::TableRef::parse(self.table.as_deref()?, source)
    }
}
