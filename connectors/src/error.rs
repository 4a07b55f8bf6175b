//! Errors of readers and writers.
//!
//! An error has two texts. [`Display`](std::fmt::Display) is the whole story, for the agent's
//! own log. [`ConnectorError::peer_message`] is what may leave the agent (to the broker, which
//! is not trusted with source data): a database's own message is kept only where it cannot
//! carry a value read from the source, and value / file errors name the column or file and
//! line but not what was in it.

use std::any::Any;
use std::fmt;

/// What withheld details are replaced with in [`ConnectorError::peer_message`].
const WITHHELD: &str =
    "details withheld: the message may contain source values; see the agent's log";

/// The code a database (or its driver) gave a failure: what decides whether the database's
/// message may go to the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DbCode {
    /// A PostgreSQL SQLSTATE (`22P02`).
    Postgres(String),
    /// A MySQL / MariaDB error number (`1064`) and its SQLSTATE (`42000`).
    MySql {
        number: u16,
        sqlstate: Option<String>,
    },
    /// An SQLite extended result code (`8` is `SQLITE_READONLY`).
    Sqlite(i32),
    /// Not a database's code: the driver could not decode (or encode) a value, and its message
    /// may quote the value.
    Decode,
}

impl DbCode {
    /// The code of a driver error; `None` for failures that are not the database's
    /// (I/O, TLS, pool timeouts), whose messages hold no source data.
    pub fn of(e: &sqlx::Error) -> Option<Self> {
        match e {
            sqlx::Error::Database(db) => {
                if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                    return Some(DbCode::MySql {
                        number: my.number(),
                        sqlstate: my.code().map(str::to_string),
                    });
                }
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    return Some(DbCode::Postgres(db.code().unwrap_or_default().into_owned()));
                }
                if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                    let code = db.code().and_then(|c| c.parse().ok()).unwrap_or(1);
                    return Some(DbCode::Sqlite(code));
                }
                // Another driver: nothing known about its messages, so they stay home.
                Some(DbCode::Decode)
            }
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } | sqlx::Error::Encode(_) => {
                Some(DbCode::Decode)
            }
            _ => None,
        }
    }

    /// Whether the database's message for this code never embeds a data value.
    ///
    /// PostgreSQL: classes 08 (connection), 28 (authorization), 25 (transaction state, e.g.
    /// `cannot execute setval() in a read-only transaction`), 40 (rollback: serialization,
    /// deadlock), 53 (resources), 57 (operator intervention, cancel, timeout), and 42501
    /// (`permission denied for table t`). The rest of class 42 and classes 3D / 3F are *not*
    /// kept although they name only objects in ordinary use: a job's SQL can turn a value into
    /// such a name — `(SELECT secret FROM t)::regclass` fails with 42P01 `relation "<secret>"
    /// does not exist`, `pg_database_size(secret)` with 3D000, `::regnamespace` with 3F000,
    /// and `query_to_xml('select ' || secret, ...)` with any parse error quoting it. Only the
    /// primary message is sent (sqlx leaves out DETAIL and HINT), which for these classes is
    /// fixed text with object and command names.
    ///
    /// MySQL / MariaDB: SQLSTATE classes 08, 28, 40 and 25, and error numbers whose text
    /// names only what the statement or the login named: 1044/1045 (access denied), 1049
    /// (unknown database), 1054 (unknown column), 1064 (syntax: quotes the statement, which
    /// is the job's own text — MySQL cannot run SQL built from data inside a SELECT), 1142 /
    /// 1143 / 1370 (command denied), 1146 (no such table), 1227 (privilege needed), 1305
    /// (no such function), 1792 / 1836 (read only), 1040 / 1205 / 1213 / 1317 / 1969 / 3024
    /// (connections, lock waits, deadlock, interrupted, timeouts). Not kept: conversion and
    /// duplicate-key errors (1292, 1366, 1062 quote values), and HY000 catch-alls such as
    /// 1105 (`EXTRACTVALUE`'s XPATH error quotes its argument).
    ///
    /// SQLite: busy, read-only, permission, I/O, corruption and open failures; not
    /// `SQLITE_ERROR` (function errors) nor constraint failures.
    pub fn message_is_safe(&self) -> bool {
        match self {
            DbCode::Postgres(state) => {
                matches!(
                    state.get(..2),
                    Some("08" | "28" | "25" | "40" | "53" | "57")
                ) || state == "42501"
            }
            DbCode::MySql { number, sqlstate } => {
                matches!(
                    number,
                    1040 | 1044
                        | 1045
                        | 1049
                        | 1054
                        | 1064
                        | 1142
                        | 1143
                        | 1146
                        | 1205
                        | 1213
                        | 1227
                        | 1305
                        | 1317
                        | 1370
                        | 1792
                        | 1836
                        | 1969
                        | 3024
                ) || matches!(
                    sqlstate.as_deref().and_then(|s| s.get(..2)),
                    Some("08" | "28" | "40" | "25")
                )
            }
            // Primary result codes: BUSY, READONLY, PERM, IOERR, CORRUPT, FULL, CANTOPEN,
            // AUTH, NOTADB (extended codes keep the primary one in the low byte).
            DbCode::Sqlite(code) => matches!(code & 0xff, 3 | 5 | 8 | 10 | 11 | 13 | 14 | 23 | 26),
            DbCode::Decode => false,
        }
    }

    /// The peer's text when the message is withheld: the code and, for common codes, the
    /// condition's name.
    fn withheld(&self) -> String {
        match self {
            DbCode::Postgres(state) => {
                let name = match state.as_str() {
                    "22P02" => " invalid_text_representation",
                    "22003" => " numeric_value_out_of_range",
                    "22012" => " division_by_zero",
                    "22023" => " invalid_parameter_value",
                    "23505" => " unique_violation",
                    "42601" => " syntax_error",
                    "42P01" => " undefined_table",
                    "42703" => " undefined_column",
                    "42704" => " undefined_object",
                    "42883" => " undefined_function",
                    "42804" => " datatype_mismatch",
                    "3D000" => " invalid_catalog_name",
                    "3F000" => " invalid_schema_name",
                    _ => "",
                };
                format!("PostgreSQL error {state}{name} ({WITHHELD})")
            }
            DbCode::MySql { number, sqlstate } => match sqlstate {
                Some(s) => format!("MySQL error {number} ({s}) ({WITHHELD})"),
                None => format!("MySQL error {number} ({WITHHELD})"),
            },
            DbCode::Sqlite(code) => format!("SQLite error {code} ({WITHHELD})"),
            DbCode::Decode => format!("a value could not be decoded ({WITHHELD})"),
        }
    }
}

impl fmt::Display for DbCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbCode::Postgres(s) => write!(f, "SQLSTATE {s}"),
            DbCode::MySql {
                number,
                sqlstate: Some(s),
            } => write!(f, "error {number} ({s})"),
            DbCode::MySql { number, .. } => write!(f, "error {number}"),
            DbCode::Sqlite(c) => write!(f, "SQLite code {c}"),
            DbCode::Decode => f.write_str("decode error"),
        }
    }
}

/// A failure of a connector.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// A parameter is missing or wrong.
    #[error("invalid parameter `{field}`: {reason}")]
    Config { field: String, reason: String },
    /// The data source could not be reached.
    #[error("cannot connect to {what}: {message}")]
    Connect {
        what: String,
        message: String,
        /// The database's code, when the database refused.
        code: Option<DbCode>,
    },
    /// A statement failed.
    #[error("{what} failed: {message}")]
    Query {
        what: String,
        message: String,
        /// The database's code, when the database (or the driver decoding a value) failed.
        code: Option<DbCode>,
    },
    /// A column type has no mapping.
    #[error("column `{column}` has type {type_name}, which Ferry cannot carry yet")]
    UnsupportedType { column: String, type_name: String },
    /// A value that cannot be read (the whole read fails: a source is never silently lossy).
    #[error("column `{column}`: {message}")]
    Value { column: String, message: String },
    /// The table does not exist (and was not to be created).
    #[error("table `{0}` does not exist")]
    NoSuchTable(String),
    /// Source and target schemas do not fit together.
    #[error("schema mismatch: {0}")]
    Schema(String),
    /// Bad input in a file (a malformed line, a value that does not parse,
    /// an unreadable Parquet footer); `line` is 1-based where known.
    #[error("file {path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    File {
        path: String,
        line: Option<u64>,
        message: String,
    },
    /// The storage service (local disk, S3, HTTP) failed.
    #[error("storage {what}: {message}")]
    Storage { what: String, message: String },
    /// Building or converting Arrow data failed (its messages may print values).
    #[error(transparent)]
    Arrow(#[from] arrow_schema::ArrowError),
    /// Local I/O failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The consumer of the batches went away (the job was cancelled).
    #[error("the batch consumer stopped")]
    Cancelled,
}

impl ConnectorError {
    pub fn config(field: &str, reason: impl Into<String>) -> Self {
        ConnectorError::Config {
            field: field.to_string(),
            reason: reason.into(),
        }
    }

    pub fn file(path: impl Into<String>, line: Option<u64>, message: impl Into<String>) -> Self {
        ConnectorError::File {
            path: path.into(),
            line,
            message: message.into(),
        }
    }

    /// A failed statement. When `e` is a [`sqlx::Error`], its database code is kept (see
    /// [`DbCode::of`]): every database failure goes through here (or
    /// [`connect`](Self::connect)), so none loses the code that decides what the broker sees.
    pub fn query(what: impl Into<String>, e: impl fmt::Display + 'static) -> Self {
        let code = sqlx_code(&e);
        let mut message = e.to_string();
        // PostgreSQL names the key taken only in its DETAIL (`Key (id)=(5) already exists.`),
        // which sqlx leaves out of the message; a writer's user needs it. The code stays
        // 23505, so an agent still withholds it (it quotes a value).
        if let Some(detail) = (&e as &dyn Any)
            .downcast_ref::<sqlx::Error>()
            .and_then(|e| e.as_database_error())
            .and_then(|d| d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
            .filter(|d| d.code() == "23505")
            .and_then(|d| d.detail())
        {
            message = format!("{message}: {detail}");
        }
        ConnectorError::Query {
            what: what.into(),
            message,
            code,
        }
    }

    /// Whether the database refused a row because its key (or another unique index's
    /// value) is already in the table.
    pub fn is_unique_violation(&self) -> bool {
        match self.db_code() {
            Some(DbCode::Postgres(state)) => state == "23505",
            Some(DbCode::MySql { number, .. }) => *number == 1062,
            // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY
            Some(DbCode::Sqlite(code)) => matches!(code, 2067 | 1555),
            _ => false,
        }
    }

    /// A failed connection; `scrub` removes secrets (the password) from the message.
    pub fn connect(
        what: impl Into<String>,
        e: impl fmt::Display + 'static,
        scrub: impl FnOnce(&str) -> String,
    ) -> Self {
        ConnectorError::Connect {
            what: what.into(),
            message: scrub(&e.to_string()),
            code: sqlx_code(&e),
        }
    }

    /// The database's code, for `Query` and `Connect` errors from a database.
    pub fn db_code(&self) -> Option<&DbCode> {
        match self {
            ConnectorError::Query { code, .. } | ConnectorError::Connect { code, .. } => {
                code.as_ref()
            }
            _ => None,
        }
    }

    /// The text an agent may send to the broker: like `Display`, but without what may hold
    /// source values (a database message that can quote one, a value that did not decode, the
    /// content of a file line). The full text belongs in the agent's own log.
    pub fn peer_message(&self) -> String {
        match self {
            ConnectorError::Query {
                what,
                message,
                code,
                ..
            } => match code {
                Some(c) if !c.message_is_safe() => format!("{what} failed: {}", c.withheld()),
                _ => format!("{what} failed: {message}"),
            },
            // The message names the source's host, login and database, which only the
            // agent may know; the code (a refused login, an unknown database) says enough.
            ConnectorError::Connect { code, .. } => format!(
                "cannot connect to the data source{} (details withheld: they name its host and \
                 login; see the agent's log)",
                code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            ConnectorError::Value { column, .. } => {
                format!("column `{column}`: a value could not be read ({WITHHELD})")
            }
            ConnectorError::File { path, line, .. } => format!(
                "file {path}{}: the input could not be read (details withheld: the message may \
                 quote the input; see the agent's log)",
                line.map(|l| format!(", line {l}")).unwrap_or_default()
            ),
            ConnectorError::Arrow(_) => {
                format!("building Arrow data failed ({WITHHELD})")
            }
            ConnectorError::Config { .. }
            | ConnectorError::UnsupportedType { .. }
            | ConnectorError::NoSuchTable(_)
            | ConnectorError::Schema(_)
            | ConnectorError::Storage { .. }
            | ConnectorError::Io(_)
            | ConnectorError::Cancelled => self.to_string(),
        }
    }
}

/// The database code of `e` when it is a driver error.
fn sqlx_code(e: &(dyn Any + 'static)) -> Option<DbCode> {
    e.downcast_ref::<sqlx::Error>().and_then(DbCode::of)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(code: Option<DbCode>) -> ConnectorError {
        ConnectorError::Query {
            what: "reading rows".into(),
            message: "invalid input syntax for type integer: \"hunter2\"".into(),
            code,
        }
    }

    #[test]
    fn value_carrying_database_messages_are_withheld() {
        let e = query(Some(DbCode::Postgres("22P02".into())));
        assert!(e.to_string().contains("hunter2"));
        let p = e.peer_message();
        assert!(!p.contains("hunter2"), "{p}");
        assert!(
            p.starts_with("reading rows failed: PostgreSQL error 22P02"),
            "{p}"
        );
        for code in [
            DbCode::Postgres("42P01".into()),
            DbCode::Postgres("3D000".into()),
            DbCode::MySql {
                number: 1292,
                sqlstate: Some("22007".into()),
            },
            DbCode::MySql {
                number: 1105,
                sqlstate: Some("HY000".into()),
            },
            DbCode::Sqlite(1),
            DbCode::Decode,
        ] {
            let p = query(Some(code.clone())).peer_message();
            assert!(!p.contains("hunter2"), "{code:?}: {p}");
            assert!(p.contains("withheld"), "{code:?}: {p}");
        }
    }

    #[test]
    fn safe_database_messages_are_kept() {
        for code in [
            DbCode::Postgres("25006".into()),
            DbCode::Postgres("28P01".into()),
            DbCode::Postgres("57014".into()),
            DbCode::Postgres("42501".into()),
            DbCode::MySql {
                number: 1064,
                sqlstate: Some("42000".into()),
            },
            DbCode::MySql {
                number: 1792,
                sqlstate: Some("25006".into()),
            },
            DbCode::Sqlite(8),
            DbCode::Sqlite(264),
        ] {
            let e = query(Some(code.clone()));
            assert_eq!(e.peer_message(), e.to_string(), "{code:?}");
        }
        // Not the database's failure (I/O, our own parse errors): kept.
        let e = query(None);
        assert_eq!(e.peer_message(), e.to_string());
    }

    #[test]
    fn codes_come_from_sqlx_errors_only() {
        let e = ConnectorError::query("x", sqlx::Error::PoolTimedOut);
        assert_eq!(e.db_code(), None);
        let e = ConnectorError::query("x", sqlx::Error::Decode("bad `hunter2`".into()));
        assert_eq!(e.db_code(), Some(&DbCode::Decode));
        assert!(!e.peer_message().contains("hunter2"));
        let e = ConnectorError::query("x", "plain text");
        assert_eq!(e.db_code(), None);
    }

    #[test]
    fn every_variant_has_a_peer_message() {
        let secret = "hunter2";
        let value = ConnectorError::Value {
            column: "pw".into(),
            message: format!("row 3, key 7: `{secret}` is not an integer"),
        };
        assert!(value.to_string().contains(secret));
        let p = value.peer_message();
        assert!(p.contains("`pw`") && !p.contains(secret), "{p}");

        let file = ConnectorError::file("s3://b/x.csv", Some(12), format!("bad field `{secret}`"));
        let p = file.peer_message();
        assert!(
            p.contains("s3://b/x.csv, line 12") && !p.contains(secret),
            "{p}"
        );
        let p = ConnectorError::file("x.parquet", None, secret).peer_message();
        assert!(
            p.starts_with("file x.parquet:") && !p.contains(secret),
            "{p}"
        );

        let arrow = ConnectorError::Arrow(arrow_schema::ArrowError::CastError(format!(
            "Cannot cast string '{secret}'"
        )));
        assert!(!arrow.peer_message().contains(secret));

        let connect = ConnectorError::connect(
            "PostgreSQL u@h:5432/db",
            sqlx::Error::PoolTimedOut,
            str::to_string,
        );
        let p = connect.peer_message();
        assert!(p.contains("cannot connect") && !p.contains("u@h"), "{p}");

        for e in [
            ConnectorError::config("table", "missing"),
            ConnectorError::UnsupportedType {
                column: "p".into(),
                type_name: "point".into(),
            },
            ConnectorError::NoSuchTable("t".into()),
            ConnectorError::Schema("column `x` does not exist".into()),
            ConnectorError::Storage {
                what: "s3".into(),
                message: "403".into(),
            },
            ConnectorError::Io(std::io::Error::other("disk")),
            ConnectorError::Cancelled,
        ] {
            assert_eq!(e.peer_message(), e.to_string());
        }
    }
}
