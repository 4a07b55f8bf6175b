//! What a database writer does with a target table that exists already
//! (`existing`), decided once, before anything is written.
//!
//! The default never adds a job's rows to rows already there by accident:
//! a table that holds rows is refused, unless the job says how to treat
//! them (an `existing` mode, a `preSql`, or a `writeMode` that replaces by
//! key).

use serde::{Deserialize, Serialize};

use crate::spec::{WriteMode, WriteSpec};
use crate::ConnectorError;

/// `existing` of a writer: what to do when the target table exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Existing {
    /// Refuse the job: the table must not exist yet.
    Fail,
    /// Empty it first (its definition, keys and indexes stay).
    Truncate,
    /// Add the rows to what it holds.
    Append,
    /// Replace rows with the same key, add the others (`writeMode: replace`).
    Replace,
    /// Drop it and create it again from the source schema.
    Drop,
}

/// What a sink does about the target table before the first write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Write into it as it is (or create it when it does not exist).
    Keep,
    /// Empty it first.
    Truncate,
    /// Drop it, then create it from the source schema.
    Recreate,
    /// Write into it only if it holds no rows.
    RefuseIfNotEmpty,
}

/// The step for a target table that `exists` (or not).
pub(crate) fn step(spec: &WriteSpec, exists: bool) -> Result<Step, ConnectorError> {
    if !exists {
        return Ok(Step::Keep);
    }
    Ok(match spec.existing {
        Some(Existing::Fail) => {
            return Err(ConnectorError::config(
                "existing",
                format!(
                    "target table `{}` exists already (existing: fail)",
                    spec.table
                ),
            ))
        }
        Some(Existing::Truncate) => Step::Truncate,
        Some(Existing::Append | Existing::Replace) => Step::Keep,
        Some(Existing::Drop) => Step::Recreate,
        None if !spec.pre_sql.is_empty() || spec.write_mode != WriteMode::Insert => Step::Keep,
        None => Step::RefuseIfNotEmpty,
    })
}

/// The statement `step` runs on `table` (quoted), given the dialect's way
/// of emptying a table (`TRUNCATE TABLE`, SQLite's `DELETE FROM`).
pub(crate) fn statement(step: Step, table: &str, empty: &str) -> Option<String> {
    match step {
        Step::Truncate => Some(format!("{empty} {table}")),
        Step::Recreate => Some(format!("DROP TABLE {table}")),
        Step::Keep | Step::RefuseIfNotEmpty => None,
    }
}

/// Whether the table is to be created when it is missing.
pub(crate) fn creates(spec: &WriteSpec) -> bool {
    spec.create_table || spec.existing == Some(Existing::Drop)
}

/// The error for a table that holds rows under the default.
pub(crate) fn not_empty(table: &str) -> ConnectorError {
    ConnectorError::config(
        "existing",
        format!(
            "target table `{table}` already holds rows, and this job would add its rows to them; \
             nothing was written. Set `existing` to `append` (add to them), `truncate` (empty it \
             first), `replace` (replace rows with the same key) or `drop` (drop it and create it \
             again)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(existing: Option<Existing>) -> WriteSpec {
        WriteSpec {
            table: "t".into(),
            existing,
            ..Default::default()
        }
    }

    #[test]
    fn the_default_refuses_a_table_with_rows_unless_the_job_says_how() {
        assert_eq!(step(&spec(None), false).unwrap(), Step::Keep);
        assert_eq!(step(&spec(None), true).unwrap(), Step::RefuseIfNotEmpty);
        let mut pre = spec(None);
        pre.pre_sql = vec!["delete from t where d = '2024-06-20'".into()];
        assert_eq!(step(&pre, true).unwrap(), Step::Keep);
        let mut upsert = spec(None);
        upsert.write_mode = WriteMode::Update;
        assert_eq!(step(&upsert, true).unwrap(), Step::Keep);
        assert!(step(&spec(Some(Existing::Fail)), true)
            .unwrap_err()
            .to_string()
            .contains("exists already"));
        assert_eq!(
            step(&spec(Some(Existing::Fail)), false).unwrap(),
            Step::Keep
        );
        assert_eq!(
            step(&spec(Some(Existing::Truncate)), true).unwrap(),
            Step::Truncate
        );
        assert_eq!(
            step(&spec(Some(Existing::Append)), true).unwrap(),
            Step::Keep
        );
        assert_eq!(
            step(&spec(Some(Existing::Drop)), true).unwrap(),
            Step::Recreate
        );
        assert!(creates(&spec(Some(Existing::Drop))) && !creates(&spec(None)));
        assert!(not_empty("t").to_string().contains("`existing`"));
    }
}
