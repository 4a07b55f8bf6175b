//! The broker's durable state: jobs, their splits and per-split
//! checkpoints, agent sessions and job logs.
//!
//! Why: the broker used to keep jobs in memory, so a restart forgot them and
//! a job interrupted half-way had to be run again from the start. With this
//! store a restarted broker finds its running jobs
//! ([`StateStore::unfinished_jobs`]), which of their splits are done, and the
//! last batch committed in the target for the others
//! ([`StateStore::checkpoint`]).
//!
//! Two backends behind one set of queries: SQLite (one file, the default)
//! and PostgreSQL (so that several brokers can share their state later). The
//! queries go through [`sqlx::AnyPool`] and are written once, in SQL both
//! accept (`$1` placeholders, `RETURNING`); only the migrations differ, one
//! directory per backend (`migrations/sqlite`, `migrations/postgres`).
//!
//! Times are unix milliseconds (`i64`). Values that are `u64` in Rust are
//! stored as `BIGINT`; anything a row holds that does not fit its Rust type
//! is reported as [`StateError::Corrupt`] naming the column, never a panic.

mod jobs;
mod logs;
mod open;
mod row;
mod sessions;
mod splits;
mod tables;

use std::fmt;

use sqlx::AnyPool;

pub use jobs::{JobRecord, NewJob};
pub use logs::LogRecord;
pub use sessions::AgentSessionRecord;
pub use splits::{SplitRecord, SplitState};
pub use tables::TableRecord;

/// The broker's state store. Cloning is cheap: the clones share one pool.
#[derive(Clone)]
pub struct StateStore {
    pool: AnyPool,
    backend: Backend,
    location: std::sync::Arc<str>,
}

impl fmt::Debug for StateStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateStore")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Which database holds the state.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the state is, for logs: the SQLite file's absolute path, or the
    /// PostgreSQL URL with any password removed.
    pub fn location(&self) -> &str {
        &self.location
    }
}

/// The database behind a [`StateStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// What can go wrong with the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The store could not be opened (`url` has its password removed).
    #[error("cannot open the state store {url}: {source}")]
    Open {
        url: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The schema migrations failed.
    #[error("migrating the state store {location}: {source}")]
    Migrate {
        location: String,
        source: sqlx::migrate::MigrateError,
    },
    /// A query failed; `context` says what the store was doing.
    #[error("state store: {context}: {source}")]
    Db {
        context: String,
        source: sqlx::Error,
    },
    /// The stored state is not what it should be: a value that does not fit
    /// its column's meaning, or a job planned twice.
    #[error("state store: {what}: {message}")]
    Corrupt { what: String, message: String },
    /// The job or split an update names does not exist.
    #[error("state store: no {what}")]
    NotFound { what: String },
    /// An argument the store cannot take (an unknown final job state, a
    /// number too large for the database).
    #[error("state store: {0}")]
    Invalid(String),
}

impl StateError {
    /// For `map_err`: a query failed while doing what `context` says (only
    /// formatted on failure, so hot paths do not pay for it).
    fn db(context: impl FnOnce() -> String) -> impl FnOnce(sqlx::Error) -> StateError {
        move |source| StateError::Db {
            context: context(),
            source,
        }
    }
}

/// The current time in unix milliseconds.
fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// A `u64` as the database's `BIGINT`.
fn to_db(value: u64, what: &str) -> Result<i64, StateError> {
    i64::try_from(value)
        .map_err(|_| StateError::Invalid(format!("{what} {value} is too large to be stored")))
}

/// Checks that an UPDATE found its row.
fn found(
    result: sqlx::any::AnyQueryResult,
    what: impl FnOnce() -> String,
) -> Result<(), StateError> {
    if result.rows_affected() == 0 {
        Err(StateError::NotFound { what: what() })
    } else {
        Ok(())
    }
}
