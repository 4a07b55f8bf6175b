//! MySQL / MariaDB source and sink.
//!
//! Every connection sets `time_zone = '+00:00'` and `NAMES utf8mb4`; reader connections are
//! read-only sessions (`SET SESSION TRANSACTION READ ONLY`) and run every statement in a
//! `READ ONLY` transaction, text from a job only in prepared statements (one statement each:
//! sqlx always asks for `CLIENT_MULTI_STATEMENTS`, which it has no option to turn off, so the
//! text protocol is kept for Ferry's own fixed statements); writer connections
//! also set a strict `sql_mode` (`STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,...`), so
//! values never depend on server or session defaults. Readers keep a lenient, fixed
//! `sql_mode` so that zero dates already stored can still be read.
//!
//! Rows are read with the binary protocol (prepared statements) and decoded from the raw
//! wire bytes, so floats keep every bit, `DECIMAL` keeps all 65 digits (parsed from its text
//! into i128 / i256 at the column scale) and `BIGINT UNSIGNED` keeps 2^64-1.
//!
//! # Type mapping
//!
//! | MySQL (reader)                          | Arrow                                  | field metadata                                   |
//! |-----------------------------------------|----------------------------------------|--------------------------------------------------|
//! | `TINYINT` / `UNSIGNED`                  | Int8 / UInt8                           |                                                  |
//! | `TINYINT(1)`, `BOOLEAN`                 | Int8 (holds -128..127)                 | `ferry.type=tinyint(1)`                          |
//! | `SMALLINT` / `UNSIGNED`                 | Int16 / UInt16                         |                                                  |
//! | `MEDIUMINT`, `INT` / `UNSIGNED`         | Int32 / UInt32                         |                                                  |
//! | `BIGINT` / `UNSIGNED`                   | Int64 / UInt64                         |                                                  |
//! | `DECIMAL(p,s)` p <= 38 / p > 38         | Decimal128(p,s) / Decimal256(p,s)      |                                                  |
//! | `FLOAT` / `DOUBLE`                      | Float32 / Float64                      |                                                  |
//! | `CHAR(n)`, `VARCHAR(n)`                 | Utf8                                   | `ferry.max_length=n`                             |
//! | `TINYTEXT` .. `LONGTEXT`                | Utf8                                   |                                                  |
//! | `BINARY`, `VARBINARY`, `*BLOB`          | Binary                                 |                                                  |
//! | `DATE`                                  | Date32                                 |                                                  |
//! | `DATETIME(n)`                           | Timestamp(Microsecond, None)           | (wall clock)                                     |
//! | `TIMESTAMP(n)`                          | Timestamp(Microsecond, "UTC")          | (instant, read in session zone +00:00)           |
//! | `TIME(n)`                               | Duration(Microsecond)                  | (-838:59:59..838:59:59)                          |
//! | `YEAR`                                  | Int16                                  | `ferry.type=year`                                |
//! | `ENUM(..)`                              | Utf8                                   | `ferry.type=enum`, `ferry.enum_values=a,b,c`     |
//! | `SET(..)`                               | Utf8 (comma-separated members)         | `ferry.type=set`, `ferry.set_values=a,b,c`       |
//! | `JSON` (MariaDB: LONGTEXT + json_valid) | Utf8                                   | `ferry.type=json`                                |
//! | `BIT(n)`                                | UInt64                                 | `ferry.type=bit`, `ferry.bit_width=n`            |
//! | `GEOMETRY`, `POINT`, ... (spatial)      | Binary (4-byte SRID + WKB)             | `ferry.type=geometry`                            |
//! | anything else                           | error `UnsupportedType`                |                                                  |
//!
//! | Arrow (writer, `create_table`)          | MySQL                                                     |
//! |-----------------------------------------|-----------------------------------------------------------|
//! | Int8 / UInt8                            | `TINYINT` (`TINYINT(1)` with tinyint(1) metadata) / `TINYINT UNSIGNED` |
//! | Int16 / UInt16                          | `SMALLINT` (`YEAR` with year metadata) / `SMALLINT UNSIGNED` |
//! | Int32 / UInt32                          | `INT` / `INT UNSIGNED`                                     |
//! | Int64 / UInt64                          | `BIGINT` / `BIGINT UNSIGNED` (`BIT(n)` with bit metadata)  |
//! | Decimal128/256(p,s)                     | `DECIMAL(p,s)` (p > 65: error)                             |
//! | Float32 / Float64                       | `FLOAT` / `DOUBLE`                                         |
//! | Utf8, LargeUtf8                         | `LONGTEXT`; `VARCHAR(n)` / `JSON` / `ENUM` / `SET` from metadata |
//! | Binary, LargeBinary                     | `LONGBLOB` (`GEOMETRY` with geometry metadata)             |
//! | Boolean                                 | `TINYINT(1)`                                               |
//! | Date32                                  | `DATE`                                                     |
//! | Timestamp(_, None)                      | `DATETIME(6)`                                              |
//! | Timestamp(_, Some(_))                   | `TIMESTAMP(6) NULL DEFAULT NULL`                           |
//! | Time64(us), Duration(us)                | `TIME(6)`                                                  |
//!
//! Notes:
//! * Zero dates: the binary protocol sends `0000-00-00` as NULL, so every DATE / DATETIME /
//!   TIMESTAMP column is read with a companion flag `c IS NOT NULL` telling a
//!   zero date from a real NULL ([`ZeroDate`] decides what happens). With
//!   [`ZeroDate::Null`] those fields are nullable in the Arrow schema even for `NOT NULL`
//!   columns. A `querySql` with temporal columns is wrapped as
//!   `SELECT ferry_q.*, <flags> FROM (<query>) AS ferry_q`.
//! * `querySql` is described without creating anything: `SELECT * FROM (<query>) AS ferry_q` is
//!   prepared (not executed) for its columns' types, then one row over the query with `LIMIT 0`
//!   gives each decimal's scale and each string's character set. ENUM / SET columns of a query
//!   read as plain text (their members are not in the result metadata), MariaDB JSON as text.
//! * Created tables are `ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin` (binary
//!   collation: values that differ only in case or trailing spaces stay distinct keys).
//!
//! Writers bind decimals as strings, u64 as u64, timestamps as
//! `YYYY-MM-DD HH:MM:SS.ffffff` in UTC (session zone +00:00), binary as bytes. Sub-microsecond
//! parts of nanosecond timestamps are truncated (MySQL keeps microseconds).

mod apply;
mod binlog;
mod ddl;
pub(crate) use ddl::table_ddl;
mod describe;
mod gtid;
mod meta;
mod read;
mod stream;
mod value;
mod write;

use std::str::FromStr;

use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{Executor, MySqlPool};

use crate::error::ConnectorError;

pub use gtid::GtidSet;
pub use read::{MySqlReadOptions, ZeroDate, OPTIONS};
pub use stream::{binlog_of, position_of, start_of, MySqlChangeStream, Start};

/// Session settings of every connection.
const SESSION_SQL: &str = "SET NAMES utf8mb4, time_zone = '+00:00'";
/// Reader sql_mode: lenient and fixed (zero dates stay readable).
const READER_SQL_MODE: &str = "SET SESSION sql_mode = 'NO_ENGINE_SUBSTITUTION'";
/// Reader sessions are read-only outside explicit transactions too: an autocommit statement
/// that writes fails (`ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION`).
const READER_READ_ONLY: &str = "SET SESSION TRANSACTION READ ONLY";
/// Writer sql_mode: strict, so the server refuses what it would otherwise mangle.
const WRITER_SQL_MODE: &str = "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO'";

/// A MySQL / MariaDB table or query to read.
pub struct MySqlSource {
    pool: MySqlPool,
    options: MySqlReadOptions,
    /// Where it was opened: a change stream reads the binary log over its own connection.
    url: std::sync::Arc<str>,
}

/// A MySQL / MariaDB database to write into.
pub struct MySqlSink {
    pool: MySqlPool,
}

impl MySqlSource {
    /// Connects with default read options.
    pub async fn connect(url: &str) -> Result<Self, ConnectorError> {
        Self::connect_with(url, MySqlReadOptions::default()).await
    }

    /// Connects with `options`.
    pub async fn connect_with(
        url: &str,
        options: MySqlReadOptions,
    ) -> Result<Self, ConnectorError> {
        let pool = pool(url, false).await?;
        Ok(Self {
            pool,
            options,
            url: url.into(),
        })
    }

    /// The source's pool (read-only sessions).
    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    /// The read options.
    pub fn options(&self) -> &MySqlReadOptions {
        &self.options
    }

    /// The URL it was opened from.
    pub(crate) fn url(&self) -> Option<&str> {
        Some(&self.url)
    }
}

impl MySqlSink {
    pub async fn connect(url: &str) -> Result<Self, ConnectorError> {
        let pool = pool(url, true).await?;
        Ok(Self { pool })
    }
}

/// `mysql://host:port/db`, never the user's password.
fn describe_target(opts: &MySqlConnectOptions) -> String {
    format!(
        "mysql://{}:{}/{}",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("")
    )
}

async fn pool(url: &str, writer: bool) -> Result<MySqlPool, ConnectorError> {
    let opts = MySqlConnectOptions::from_str(url).map_err(|_| ConnectorError::Connect {
        what: "MySQL".into(),
        message: "the URL is not a valid mysql:// URL".into(),
        code: None,
    })?;
    let what = describe_target(&opts);
    let opts = opts.charset("utf8mb4").timezone(Some("+00:00".to_string()));
    // A split's SELECT streams for as long as the split takes: sqlx's
    // slow-statement warnings would only be noise.
    let opts = sqlx::ConnectOptions::log_slow_statements(
        opts,
        log::LevelFilter::Off,
        std::time::Duration::from_secs(1),
    );
    let pool = MySqlPoolOptions::new()
        .max_connections(16)
        .min_connections(0)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                conn.execute(SESSION_SQL).await?;
                let mode = if writer {
                    WRITER_SQL_MODE
                } else {
                    READER_SQL_MODE
                };
                conn.execute(mode).await?;
                if !writer {
                    conn.execute(READER_READ_ONLY).await?;
                }
                Ok(())
            })
        })
        .connect_with(opts)
        .await
        .map_err(|e| ConnectorError::connect(what, e, |m| scrub(m, url)))?;
    Ok(pool)
}

/// Removes the URL's password from `message`, should a driver ever echo it.
fn scrub(message: &str, url: &str) -> String {
    let mut m = message.to_string();
    if let Some(rest) = url.split("://").nth(1) {
        if let Some((cred, _)) = rest.split_once('@') {
            if let Some((_, pw)) = cred.split_once(':') {
                if !pw.is_empty() {
                    m = m.replace(pw, "***");
                }
            }
        }
    }
    m
}

/// Quotes an identifier with backticks (backticks doubled).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// How a MySQL read writes key columns and values: a text key as a
/// `_utf8mb4` hex literal, so no value can end the literal (whatever the
/// connection's character set) and the column's own collation compares it.
pub(crate) struct MySqlKeys;

impl crate::spec::KeySql for MySqlKeys {
    fn ident(&self, name: &str) -> String {
        quote_ident(name)
    }

    fn text(&self, text: &str) -> String {
        if text.is_empty() {
            "''".into()
        } else {
            format!("_utf8mb4 X'{}'", hex::encode(text))
        }
    }
}

/// Quotes `table` or `db.table`.
pub(crate) fn quote_table(name: &str) -> String {
    let (db, t) = split_table(name);
    match db {
        Some(db) => format!("{}.{}", quote_ident(db), quote_ident(t)),
        None => quote_ident(t),
    }
}

fn strip_ticks(s: &str) -> &str {
    s.strip_prefix('`')
        .and_then(|x| x.strip_suffix('`'))
        .unwrap_or(s)
}

/// Splits `db.table` (backticks around either part are removed).
pub(crate) fn split_table(name: &str) -> (Option<&str>, &str) {
    match name.split_once('.') {
        Some((db, t)) if !name.starts_with('`') || db.ends_with('`') => {
            (Some(strip_ticks(db)), strip_ticks(t))
        }
        _ => (None, strip_ticks(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(quote_table("db.t"), "`db`.`t`");
        assert_eq!(quote_table("t"), "`t`");
        assert_eq!(split_table("`db`.`t`"), (Some("db"), "t"));
    }

    #[test]
    fn password_is_scrubbed() {
        assert_eq!(scrub("x secret y", "mysql://u:secret@h/db"), "x *** y");
    }
}
