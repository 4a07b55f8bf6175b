//! PostgreSQL source and sink, both over binary `COPY`.
//!
//! A split is read in one `REPEATABLE READ READ ONLY` transaction with
//! `COPY (SELECT ...) TO STDOUT (FORMAT binary)`, decoded incrementally into Arrow batches
//! of `fetch_size` rows. A batch is written in one transaction with
//! `COPY ... FROM STDIN (FORMAT binary)` (through an `ON COMMIT DROP` staging table and
//! `INSERT ... ON CONFLICT DO UPDATE` for `update` / `replace`). Values the target column
//! cannot hold are found before the `COPY` and come back as dirty records.
//!
//! Change streams (in progress, see `docs/cdc.md`): [`pgoutput`] decodes logical replication
//! messages, `changes` turns them into change batches with the same column builders as the
//! snapshot reader, `stream` reads a slot over the replication protocol ([`PgChangeStream`]),
//! and `apply` applies change batches to a table ([`PgApplier`]), one source transaction per
//! target transaction with the stream's checkpoint.
//!
//! # Type mapping
//!
//! | PostgreSQL                       | Arrow (reader)                                             |
//! |----------------------------------|------------------------------------------------------------|
//! | `smallint`                       | `Int16`                                                    |
//! | `integer`                        | `Int32`                                                    |
//! | `bigint`                         | `Int64`                                                    |
//! | `numeric(p,s)`, p <= 38          | `Decimal128(p,s)`                                          |
//! | `numeric(p,s)`, 38 < p <= 76     | `Decimal256(p,s)`                                          |
//! | `numeric` (unconstrained, p > 76, s > p or s < 0) | `Utf8`, metadata `ferry.type = numeric` (exact text) |
//! | `real` / `double precision`      | `Float32` / `Float64`                                      |
//! | `text`, `varchar(n)`, `char(n)`  | `Utf8` (metadata `ferry.max_length = n` when known)        |
//! | `bytea`                          | `Binary`                                                   |
//! | `boolean`                        | `Boolean`                                                  |
//! | `date`                           | `Date32` (±infinity: error)                                |
//! | `timestamp`                      | `Timestamp(Microsecond, None)` (±infinity: error)          |
//! | `timestamptz`                    | `Timestamp(Microsecond, Some("UTC"))`                      |
//! | `time`                           | `Time64(Microsecond)`                                      |
//! | `interval`                       | `Interval(MonthDayNano)`                                   |
//! | `json`, `jsonb`                  | `Utf8`, metadata `ferry.type = json`                       |
//! | `uuid`                           | `Utf8`, metadata `ferry.type = uuid`                       |
//! | anything else                    | [`ConnectorError::UnsupportedType`]                        |
//!
//! | Arrow (writer, `createTable`)         | PostgreSQL                                          |
//! |---------------------------------------|-----------------------------------------------------|
//! | `Int8`, `UInt8`, `Int16`              | `smallint`                                          |
//! | `UInt16`, `Int32`                     | `integer`                                           |
//! | `UInt32`, `Int64`                     | `bigint`                                            |
//! | `UInt64`                              | `numeric(20,0)`                                     |
//! | `Decimal128/256(p,s)`                 | `numeric(p,s)`                                      |
//! | `Float32` / `Float64`                 | `real` / `double precision`                         |
//! | `Utf8`, `LargeUtf8`                   | `text`; `varchar(n)` with `ferry.max_length`; `jsonb` / `uuid` / `numeric` with `ferry.type` json / uuid / numeric |
//! | `Binary`, `LargeBinary`               | `bytea`                                             |
//! | `Boolean`                             | `boolean`                                           |
//! | `Date32`                              | `date`                                              |
//! | `Timestamp(any unit, None)`           | `timestamp`                                         |
//! | `Timestamp(any unit, Some(_))`        | `timestamptz`                                       |
//! | `Time32`, `Time64`                    | `time`                                              |
//! | `Duration(any unit)`, `Interval(MonthDayNano)` | `interval`                                 |
//!
//! Into an existing table the encoder also accepts: any integer into any integer,
//! `numeric`, float or text column (range checked); decimals and floats into `numeric`
//! (exact, checked against p/s; NaN/±Infinity floats are dirty) or text; text into
//! `numeric`, `json`/`jsonb` (validated) and `uuid` (parsed).

mod apply;
mod binary;
mod changes;
mod ddl;
pub(crate) use ddl::table_ddl;
mod describe;
mod fingerprint;
pub mod pgoutput;
mod stream;

pub use apply::PgChangeTarget;
pub use changes::{ChangeDecoder, ChangeTable};
pub use stream::{check_name, lsn_of, position_of, PgChangeStream, StreamEvent};

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use futures::StreamExt;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, Executor, PgPool, Postgres, Row};
use tokio::sync::mpsc;

use crate::error::ConnectorError;
use crate::existing::{self, Step};
use crate::spec::{int_splits, ReadSpec, Split, WriteMode, WriteSpec};
use crate::traits::{
    Checkpoint, CheckpointSql, DirtyRecord, Sink, SinkWriter, Source, WriteOutcome,
};

/// Field metadata key naming the PostgreSQL flavour of a `Utf8` column.
pub const META_TYPE: &str = "ferry.type";
/// Field metadata key holding the declared maximum length of a text column.
pub const META_MAX_LENGTH: &str = "ferry.max_length";

/// What a column holds, as far as COPY binary encoding is concerned.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PgKind {
    Int2,
    Int4,
    Int8,
    /// `(precision, scale)` when constrained.
    Numeric(Option<(i32, i32)>),
    Float4,
    Float8,
    /// text, varchar(n), char(n).
    Text {
        max_len: Option<usize>,
    },
    Json,
    Jsonb,
    Uuid,
    Bytea,
    Bool,
    Date,
    Timestamp,
    Timestamptz,
    Time,
    Interval,
}

/// A column of a table (or query) as the catalog describes it.
#[derive(Debug, Clone)]
pub(crate) struct PgCol {
    pub(crate) name: String,
    pub(crate) kind: PgKind,
    pub(crate) not_null: bool,
    /// `format_type` text, for messages.
    pub(crate) type_name: String,
    /// The type's oid and modifier, from the catalog: a change stream's relation message
    /// must agree with them to be decoded as this column.
    pub(crate) type_id: Option<(u32, i32)>,
}

impl PgCol {
    fn from_catalog(
        name: String,
        typname: &str,
        typmod: i32,
        not_null: bool,
        type_name: String,
    ) -> Result<Self, ConnectorError> {
        let kind = match typname {
            "int2" => PgKind::Int2,
            "int4" => PgKind::Int4,
            "int8" => PgKind::Int8,
            "numeric" => PgKind::Numeric((typmod >= 4).then(|| {
                let t = typmod - 4;
                let p = (t >> 16) & 0xffff;
                // PostgreSQL 15+ stores the scale as an 11-bit signed number.
                let s = ((t & 0x7ff) ^ 1024) - 1024;
                (p, s)
            })),
            "float4" => PgKind::Float4,
            "float8" => PgKind::Float8,
            "text" | "name" => PgKind::Text { max_len: None },
            "varchar" | "bpchar" => PgKind::Text {
                max_len: (typmod >= 4).then(|| (typmod - 4) as usize),
            },
            "json" => PgKind::Json,
            "jsonb" => PgKind::Jsonb,
            "uuid" => PgKind::Uuid,
            "bytea" => PgKind::Bytea,
            "bool" => PgKind::Bool,
            "date" => PgKind::Date,
            "timestamp" => PgKind::Timestamp,
            "timestamptz" => PgKind::Timestamptz,
            "time" => PgKind::Time,
            "interval" => PgKind::Interval,
            _ => {
                return Err(ConnectorError::UnsupportedType {
                    column: name,
                    type_name,
                })
            }
        };
        Ok(Self {
            name,
            kind,
            not_null,
            type_name,
            type_id: None,
        })
    }

    /// The Arrow field this column reads into.
    pub(crate) fn field(&self) -> Field {
        let mut meta = HashMap::new();
        let dt = match &self.kind {
            PgKind::Int2 => DataType::Int16,
            PgKind::Int4 => DataType::Int32,
            PgKind::Int8 => DataType::Int64,
            PgKind::Numeric(Some((p, s))) if *p <= 38 && *s >= 0 && s <= p => {
                DataType::Decimal128(*p as u8, *s as i8)
            }
            PgKind::Numeric(Some((p, s))) if *p <= 76 && *s >= 0 && s <= p => {
                DataType::Decimal256(*p as u8, *s as i8)
            }
            PgKind::Numeric(_) => {
                meta.insert(META_TYPE.to_string(), "numeric".to_string());
                DataType::Utf8
            }
            PgKind::Float4 => DataType::Float32,
            PgKind::Float8 => DataType::Float64,
            PgKind::Text { max_len } => {
                if let Some(n) = max_len {
                    meta.insert(META_MAX_LENGTH.to_string(), n.to_string());
                }
                DataType::Utf8
            }
            PgKind::Json | PgKind::Jsonb => {
                meta.insert(META_TYPE.to_string(), "json".to_string());
                DataType::Utf8
            }
            PgKind::Uuid => {
                meta.insert(META_TYPE.to_string(), "uuid".to_string());
                DataType::Utf8
            }
            PgKind::Bytea => DataType::Binary,
            PgKind::Bool => DataType::Boolean,
            PgKind::Date => DataType::Date32,
            PgKind::Timestamp => DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
            PgKind::Timestamptz => {
                DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some("UTC".into()))
            }
            PgKind::Time => DataType::Time64(arrow_schema::TimeUnit::Microsecond),
            PgKind::Interval => DataType::Interval(arrow_schema::IntervalUnit::MonthDayNano),
        };
        Field::new(&self.name, dt, !self.not_null).with_metadata(meta)
    }
}

/// The PostgreSQL type `create_table` gives an Arrow field.
pub(crate) fn pg_type_for(field: &Field) -> Result<String, ConnectorError> {
    use arrow_schema::IntervalUnit;
    let meta = field.metadata();
    let unsupported = || ConnectorError::UnsupportedType {
        column: field.name().clone(),
        type_name: field.data_type().to_string(),
    };
    Ok(match field.data_type() {
        DataType::Int8 | DataType::UInt8 | DataType::Int16 => "smallint".into(),
        DataType::UInt16 | DataType::Int32 => "integer".into(),
        DataType::UInt32 | DataType::Int64 => "bigint".into(),
        DataType::UInt64 => "numeric(20,0)".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("numeric({p},{s})"),
        DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Utf8 | DataType::LargeUtf8 => match meta.get(META_TYPE).map(String::as_str) {
            Some("json") => "jsonb".into(),
            Some("uuid") => "uuid".into(),
            Some("numeric") => "numeric".into(),
            _ => match meta
                .get(META_MAX_LENGTH)
                .and_then(|n| n.parse::<u32>().ok())
            {
                Some(n) if n > 0 && n <= 10_485_760 => format!("varchar({n})"),
                _ => "text".into(),
            },
        },
        DataType::Binary | DataType::LargeBinary => "bytea".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(_, None) => "timestamp".into(),
        DataType::Timestamp(_, Some(_)) => "timestamptz".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time".into(),
        DataType::Duration(_) | DataType::Interval(IntervalUnit::MonthDayNano) => "interval".into(),
        _ => return Err(unsupported()),
    })
}

/// `"name"`, with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How a PostgreSQL read writes key columns and values: text as an escape
/// string (`E'…'`, backslash and quote escaped, so it means the same
/// whatever `standard_conforming_strings` says), binary through `decode`.
/// An untyped literal takes the key column's type (a date, a timestamp).
pub(crate) struct PgKeys;

impl crate::spec::KeySql for PgKeys {
    fn ident(&self, name: &str) -> String {
        quote_ident(name)
    }

    fn text(&self, text: &str) -> String {
        format!("E'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
    }

    fn bytes(&self, bytes: &[u8]) -> String {
        format!("decode('{}', 'hex')", hex::encode(bytes))
    }
}

/// Quotes a possibly schema-qualified name: `public.orders` → `"public"."orders"`,
/// `"My ""Schema"".T` → `"My ""Schema"""."T"`. Unquoted parts keep their case.
pub fn quote_qualified(name: &str) -> Result<String, ConnectorError> {
    let bad = |why: &str| ConnectorError::config("table", format!("`{name}`: {why}"));
    let mut parts: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut chars = name.trim().chars().peekable();
    let mut quoted_part = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if cur.trim().is_empty() && !quoted_part => {
                cur.clear();
                quoted_part = true;
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cur.push('"');
                        }
                        Some('"') => break,
                        Some(c) => cur.push(c),
                        None => return Err(bad("unterminated quote")),
                    }
                }
            }
            '.' => {
                parts.push(std::mem::take(&mut cur));
                quoted_part = false;
            }
            c if quoted_part && !c.is_whitespace() => {
                return Err(bad("text after a closing quote"));
            }
            c => cur.push(c),
        }
    }
    parts.push(cur);
    let parts: Vec<String> = parts
        .into_iter()
        .map(|p| p.trim().to_string())
        .collect::<Vec<_>>();
    if parts.iter().any(String::is_empty) || parts.len() > 3 {
        return Err(bad("not a table name"));
    }
    Ok(parts
        .iter()
        .map(|p| quote_ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

/// Removes the password of a connection URL from a message.
fn scrub(url: &str, message: &str) -> String {
    let authority = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?']).next().unwrap_or(""))
        .unwrap_or("");
    match authority
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
    {
        Some((_, password)) if !password.is_empty() => message.replace(password, "***"),
        _ => message.to_string(),
    }
}

/// Session settings of every source connection, as startup parameters so they hold from the
/// first statement: read-only even outside an explicit transaction (a job's SQL can never
/// write, whatever the login may), standard string literals, and UTC.
const SOURCE_SESSION: [(&str, &str); 3] = [
    ("default_transaction_read_only", "on"),
    ("standard_conforming_strings", "on"),
    ("TimeZone", "UTC"),
];

/// A pool; `source` pools are read-only sessions ([`SOURCE_SESSION`]), sink pools are not.
async fn connect_pool(url: &str, source: bool) -> Result<PgPool, ConnectorError> {
    let opts = PgConnectOptions::from_str(url).map_err(|e| ConnectorError::Connect {
        what: "PostgreSQL".into(),
        message: format!("invalid connection URL: {}", scrub(url, &e.to_string())),
        code: None,
    })?;
    let opts = if source {
        opts.options(SOURCE_SESSION)
    } else {
        opts
    };
    // A split's COPY legitimately runs for minutes: sqlx's slow-statement
    // warnings would only be noise (statement logging stays at debug).
    let opts = sqlx::ConnectOptions::log_slow_statements(
        opts,
        log::LevelFilter::Off,
        std::time::Duration::from_secs(1),
    );
    let what = format!(
        "PostgreSQL {}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("")
    );
    // One direct connection first: a clear, immediate error (the pool would retry until
    // its acquire timeout).
    let conn = sqlx::PgConnection::connect_with(&opts)
        .await
        .map_err(|e| ConnectorError::connect(what.clone(), e, |m| scrub(url, m)))?;
    let _ = conn.close().await;
    Ok(PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy_with(opts))
}

fn q(what: &str) -> impl FnOnce(sqlx::Error) -> ConnectorError + '_ {
    move |e| ConnectorError::query(what, e)
}

const CATALOG_SQL: &str = "SELECT a.attname::text, t.typname::text, a.atttypmod, a.attnotnull, \
     format_type(a.atttypid, a.atttypmod), t.typtype::text, a.atttypid::int8 \
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
     ORDER BY a.attnum";

/// Whether a relation exists (`qualified` is already quoted).
async fn relation_exists<'e, E>(ex: E, qualified: &str) -> Result<bool, ConnectorError>
where
    E: Executor<'e, Database = Postgres>,
{
    let row = sqlx::query("SELECT to_regclass($1) IS NOT NULL")
        .bind(qualified)
        .fetch_one(ex)
        .await
        .map_err(q("table lookup"))?;
    Ok(row.get::<bool, _>(0))
}

/// Every column of a relation, as `(name, Result<PgCol>)` (unsupported types are only an
/// error when selected).
async fn relation_columns<'e, E>(
    ex: E,
    qualified: &str,
) -> Result<Vec<(String, Result<PgCol, ConnectorError>)>, ConnectorError>
where
    E: Executor<'e, Database = Postgres>,
{
    let rows = sqlx::query(CATALOG_SQL)
        .bind(qualified)
        .fetch_all(ex)
        .await
        .map_err(q("column lookup"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let name: String = r.get(0);
            let typname: String = r.get(1);
            let typmod: i32 = r.get(2);
            let not_null: bool = r.get(3);
            let type_name: String = r.get(4);
            let typtype: String = r.get(5);
            let oid: i64 = r.get(6);
            // An enum's values go over COPY binary as their labels' text.
            let typname = if typtype == "e" { "text" } else { &typname };
            let col = PgCol::from_catalog(name.clone(), typname, typmod, not_null, type_name).map(
                |mut c| {
                    c.type_id = u32::try_from(oid).ok().map(|o| (o, typmod));
                    c
                },
            );
            (name, col)
        })
        .collect())
}

/// The primary key of a relation, in key order, each column with whether a
/// read can be ordered and resumed by it (its values compare in SQL as
/// they sort, and come back as a [`KeyValue`](crate::spec::KeyValue)).
async fn primary_key<'e, E>(
    ex: E,
    qualified: &str,
    all: &[(String, Result<PgCol, ConnectorError>)],
) -> Result<Vec<(String, bool)>, ConnectorError>
where
    E: Executor<'e, Database = Postgres>,
{
    let rows = sqlx::query(
        "SELECT a.attname::text FROM pg_index i \
         CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
         WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY k.n",
    )
    .bind(qualified)
    .fetch_all(ex)
    .await
    .map_err(q("primary key lookup"))?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let name: String = r.get(0);
            let ok = all.iter().any(|(n, c)| {
                n == &name
                    && c.as_ref().is_ok_and(|c| {
                        matches!(
                            c.kind,
                            PgKind::Int2
                                | PgKind::Int4
                                | PgKind::Int8
                                | PgKind::Numeric(_)
                                | PgKind::Text { .. }
                                | PgKind::Uuid
                                | PgKind::Bytea
                                | PgKind::Date
                                | PgKind::Timestamp
                                | PgKind::Timestamptz
                        )
                    })
            });
            (name, ok)
        })
        .collect())
}

/// Picks `wanted` (all when empty or `*`) out of `all`, by exact name, else by a unique
/// case-insensitive match.
fn select_columns(
    all: Vec<(String, Result<PgCol, ConnectorError>)>,
    wanted: &[String],
    relation: &str,
) -> Result<Vec<PgCol>, ConnectorError> {
    if wanted.is_empty() || (wanted.len() == 1 && wanted[0].trim() == "*") {
        return all.into_iter().map(|(_, c)| c).collect();
    }
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let w = w.trim();
        let unq = w
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .map(|x| x.replace("\"\"", "\""));
        let key = unq.as_deref().unwrap_or(w);
        let idx = all.iter().position(|(n, _)| n == key).or_else(|| {
            let m: Vec<usize> = (0..all.len())
                .filter(|i| all[*i].0.eq_ignore_ascii_case(key))
                .collect();
            (m.len() == 1 && unq.is_none()).then(|| m[0])
        });
        match idx {
            Some(i) => match &all[i].1 {
                Ok(c) => out.push(c.clone()),
                Err(ConnectorError::UnsupportedType { column, type_name }) => {
                    return Err(ConnectorError::UnsupportedType {
                        column: column.clone(),
                        type_name: type_name.clone(),
                    })
                }
                Err(e) => return Err(ConnectorError::Schema(e.to_string())),
            },
            None => {
                return Err(ConnectorError::Schema(format!(
                    "column `{key}` does not exist in `{relation}`"
                )))
            }
        }
    }
    Ok(out)
}

/// Opens every transaction on a source: read-only whatever the session's defaults, one
/// snapshot for all of its statements.
const BEGIN_READ: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Type names and modifiers of described query columns: each column's type, and the table
/// column it comes from (0 when computed) for its modifier. Every column gets a row, in order.
const DESCRIBE_SQL: &str = "SELECT t.typname::text, COALESCE(a.atttypmod, -1), \
     format_type(c.typ::oid, COALESCE(a.atttypmod, -1)) \
     FROM unnest($1::int8[], $2::int8[], $3::int2[]) WITH ORDINALITY AS c(typ, rel, att, i) \
     LEFT JOIN pg_type t ON t.oid = c.typ::oid \
     LEFT JOIN pg_attribute a ON a.attrelid = c.rel::oid AND a.attnum = c.att \
       AND a.atttypid = c.typ::oid AND NOT a.attisdropped \
     ORDER BY c.i";

/// The columns of a `querySql`, without running it or creating anything: the server parses
/// `SELECT * FROM (<query>) ferry_q` (Parse/Describe of the extended protocol, which refuses a
/// second statement) and reports each column's type and the table column it comes from, whose
/// type modifier (`numeric(p,s)`, `varchar(n)`) the catalog then gives. Columns the query
/// computes have none (an unconstrained `numeric`, a `varchar` without length).
async fn describe_query(
    conn: &mut sqlx::PgConnection,
    query: &str,
) -> Result<Vec<(String, Result<PgCol, ConnectorError>)>, ConnectorError> {
    use sqlx::{Column, Statement};
    let sql = format!("SELECT * FROM ({query}) ferry_q");
    let stmt = (&mut *conn)
        .prepare(sql.as_str())
        .await
        .map_err(q("describing querySql"))?;
    let cols = stmt.columns();
    let types: Vec<i64> = cols
        .iter()
        .map(|c| c.type_info().oid().map_or(0, |o| i64::from(o.0)))
        .collect();
    let rels: Vec<i64> = cols
        .iter()
        .map(|c| c.relation_id().map_or(0, |o| i64::from(o.0)))
        .collect();
    let atts: Vec<i16> = cols
        .iter()
        .map(|c| c.relation_attribute_no().unwrap_or(0))
        .collect();
    let rows = sqlx::query(DESCRIBE_SQL)
        .bind(&types)
        .bind(&rels)
        .bind(&atts)
        .fetch_all(&mut *conn)
        .await
        .map_err(q("describing querySql"))?;
    if rows.len() != cols.len() {
        return Err(ConnectorError::Schema(format!(
            "querySql has {} columns, the catalog described {}",
            cols.len(),
            rows.len()
        )));
    }
    Ok(cols
        .iter()
        .zip(rows)
        .map(|(c, r)| {
            let name = c.name().to_string();
            let typname: Option<String> = r.get(0);
            let typmod: i32 = r.get(1);
            let type_name: Option<String> = r.get(2);
            let type_name = type_name.unwrap_or_else(|| c.type_info().to_string());
            // Not null is not known of a query's column (an outer join can null any).
            let col = PgCol::from_catalog(
                name.clone(),
                typname.as_deref().unwrap_or(""),
                typmod,
                false,
                type_name,
            );
            (name, col)
        })
        .collect())
}

/// Reads PostgreSQL tables and queries.
///
/// Every statement runs in a `READ ONLY` transaction (ended with `ROLLBACK`, which also undoes
/// any setting a job's SQL changed with `set_config`), and sessions opened by
/// [`connect`](Self::connect) are read-only outside transactions too. Text from a job (`where`,
/// `querySql`) reaches the server only in single statements: through the extended protocol,
/// or — for the binary `COPY` read, which sqlx streams only through the simple protocol — after
/// the same text was parsed through the extended protocol.
#[derive(Clone)]
pub struct PostgresSource {
    pool: PgPool,
    /// The URL it was opened from (with its credentials): a change stream's replication
    /// connection and its slot and publication use it.
    url: Option<Arc<str>>,
}

impl PostgresSource {
    /// Connects (a pool of at most 8 connections, read-only sessions).
    pub async fn connect(url: &str) -> Result<Self, ConnectorError> {
        Ok(Self {
            pool: connect_pool(url, true).await?,
            url: Some(url.into()),
        })
    }

    fn url(&self) -> Option<&str> {
        self.url.as_deref()
    }

    /// A source over an existing pool. Every statement still runs in a read-only transaction,
    /// but the pool's sessions are read-only outside of them only if it was built so (as
    /// [`connect`](Self::connect) does).
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool, url: None }
    }

    /// The source's pool (read-only sessions when built by [`connect`](Self::connect)).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A read-only transaction on a pooled connection; end it with `rollback`.
    async fn begin_read(&self) -> Result<sqlx::Transaction<'static, Postgres>, ConnectorError> {
        self.pool
            .begin_with(BEGIN_READ)
            .await
            .map_err(q("begin read-only transaction"))
    }

    fn query_sql(spec: &ReadSpec) -> Option<&str> {
        spec.query_sql
            .as_deref()
            .map(|s| s.trim().trim_end_matches(';'))
            .filter(|s| !s.trim().is_empty())
    }

    /// The `FROM` item of a read.
    fn from_item(spec: &ReadSpec) -> Result<String, ConnectorError> {
        match (Self::query_sql(spec), &spec.table) {
            (Some(qs), _) => Ok(format!("({qs}) ferry_q")),
            (_, Some(t)) => quote_qualified(t),
            _ => Err(ConnectorError::config(
                "table",
                "either `table` or `querySql` is required",
            )),
        }
    }

    /// The selected columns of a read.
    async fn columns(&self, spec: &ReadSpec) -> Result<Vec<PgCol>, ConnectorError> {
        let mut tx = self.begin_read().await?;
        let cols = Self::columns_on(&mut tx, spec).await?;
        tx.rollback().await.map_err(q("rollback"))?;
        Ok(cols)
    }

    async fn columns_on(
        conn: &mut sqlx::PgConnection,
        spec: &ReadSpec,
    ) -> Result<Vec<PgCol>, ConnectorError> {
        let all = Self::all_columns_on(conn, spec).await?;
        let from = spec.table.as_deref().unwrap_or("querySql");
        select_columns(all, &spec.columns, from)
    }

    /// Every column of the table or query, with its mapping (or why there is none).
    async fn all_columns_on(
        conn: &mut sqlx::PgConnection,
        spec: &ReadSpec,
    ) -> Result<Vec<(String, Result<PgCol, ConnectorError>)>, ConnectorError> {
        if let Some(qs) = Self::query_sql(spec) {
            return describe_query(conn, qs).await;
        }
        let table = spec.table.as_deref().ok_or_else(|| {
            ConnectorError::config("table", "either `table` or `querySql` is required")
        })?;
        let qualified = quote_qualified(table)?;
        if !relation_exists(&mut *conn, &qualified).await? {
            return Err(ConnectorError::NoSuchTable(table.to_string()));
        }
        relation_columns(&mut *conn, &qualified).await
    }

    fn where_sql(spec: &ReadSpec, split: Option<&Split>) -> String {
        crate::spec::where_suffix(&crate::spec::read_conditions(spec, split, &PgKeys))
    }

    async fn read_on(
        conn: &mut PoolConnection<Postgres>,
        sql: &str,
        schema: SchemaRef,
        cols: &[PgCol],
        fetch_size: usize,
        out: &mpsc::Sender<RecordBatch>,
    ) -> Result<u64, ConnectorError> {
        (&mut **conn)
            .execute(BEGIN_READ)
            .await
            .map_err(q("begin snapshot"))?;
        (&mut **conn)
            .execute("SET LOCAL TimeZone = 'UTC'")
            .await
            .map_err(q("begin snapshot"))?;
        // sqlx streams COPY out only through the simple protocol, which runs every statement
        // of a string. The same text parsed first through the extended protocol (nothing is
        // executed) is refused if it holds more than one statement, so the simple protocol
        // then runs exactly this one COPY, inside the read-only transaction.
        (&mut **conn)
            .prepare(sql)
            .await
            .map_err(q("checking the read statement"))?;
        let mut dec = binary::CopyDecoder::new(schema, cols, fetch_size)?;
        let mut batches = Vec::new();
        {
            let mut stream = conn.copy_out_raw(sql).await.map_err(q("COPY TO STDOUT"))?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(q("COPY TO STDOUT"))?;
                dec.feed(&chunk, &mut batches)?;
                for b in batches.drain(..) {
                    out.send(b).await.map_err(|_| ConnectorError::Cancelled)?;
                }
            }
        }
        let total = dec.total();
        if let Some(b) = dec.finish()? {
            out.send(b).await.map_err(|_| ConnectorError::Cancelled)?;
        }
        (&mut **conn)
            .execute("ROLLBACK")
            .await
            .map_err(q("end of snapshot"))?;
        Ok(total)
    }

    /// What the login may do beyond reading (see [`Source::privilege_warnings`]).
    async fn privileges(&self) -> Result<Vec<String>, ConnectorError> {
        let mut tx = self.begin_read().await?;
        let row = sqlx::query(
            "SELECT r.rolname::text, r.rolsuper, r.rolcreaterole, r.rolcreatedb, \
             r.rolbypassrls, r.rolreplication, \
             ARRAY(SELECT b.rolname::text FROM pg_roles b \
                   WHERE b.rolname IN ('pg_read_server_files', 'pg_write_server_files', \
                         'pg_execute_server_program', 'pg_write_all_data') \
                     AND pg_has_role(r.oid, b.oid, 'MEMBER') ORDER BY b.rolname) \
             FROM pg_roles r WHERE r.rolname = current_user",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(q("reading the login's privileges"))?;
        tx.rollback().await.map_err(q("rollback"))?;
        let user: String = row.get(0);
        let instead = "use a read-only user with SELECT on the listed tables only";
        if row.get::<bool, _>(1) {
            return Ok(vec![format!(
                "the PostgreSQL login `{user}` is a superuser: a job's SQL could read and write \
                 files and run programs on the database server; {instead}"
            )]);
        }
        let mut warnings = Vec::new();
        let roles: Vec<String> = row.get(6);
        if !roles.is_empty() {
            warnings.push(format!(
                "the PostgreSQL login `{user}` is a member of {}: a job's SQL could read or \
                 write server files, run programs or write every table; {instead}",
                roles.join(", ")
            ));
        }
        let abilities: Vec<&str> = [
            (2, "create roles (and so grant itself more)"),
            (3, "create databases"),
            (4, "bypass row-level security"),
            (5, "replicate"),
        ]
        .into_iter()
        .filter(|(i, _)| row.get::<bool, _>(*i))
        .map(|(_, what)| what)
        .collect();
        if !abilities.is_empty() {
            warnings.push(format!(
                "the PostgreSQL login `{user}` can {}; {instead}",
                abilities.join(", ")
            ));
        }
        Ok(warnings)
    }
}

#[async_trait]
impl Source for PostgresSource {
    async fn hash_kinds(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<Vec<ferry_model::PgHash>>, ConnectorError> {
        self.hash_kinds_of(spec).await
    }

    async fn bucket_sums(
        &self,
        spec: &ReadSpec,
        split: &Split,
        ask: &ferry_model::VerifyAsk,
    ) -> Result<Option<Vec<(u32, u64, u64)>>, ConnectorError> {
        self.bucket_sums_of(spec, split, ask).await
    }

    async fn list_tables(&self) -> Result<crate::traits::TableListing, ConnectorError> {
        let mut tx = self.begin_read().await?;
        let listing = describe::list_tables(&mut tx).await?;
        tx.rollback().await.map_err(q("rollback"))?;
        Ok(listing)
    }

    async fn describe(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<crate::spec::TableSchema>, ConnectorError> {
        if spec
            .query_sql
            .as_deref()
            .is_some_and(|q| !q.trim().is_empty())
        {
            return Ok(None);
        }
        let Some(table) = spec.table.as_deref() else {
            return Ok(None);
        };
        let qualified = quote_qualified(table)?;
        let mut tx = self.begin_read().await?;
        if !relation_exists(&mut *tx, &qualified).await? {
            return Err(ConnectorError::NoSuchTable(table.to_string()));
        }
        let described = describe::table_schema(&mut tx, &qualified).await?;
        tx.rollback().await.map_err(q("rollback"))?;
        Ok(Some(described))
    }

    async fn estimate_rows(&self, spec: &ReadSpec) -> Option<u64> {
        if spec.query_sql.is_some() || spec.where_clause.is_some() {
            return None;
        }
        let qualified = quote_qualified(spec.table.as_deref()?).ok()?;
        let mut tx = self.begin_read().await.ok()?;
        // reltuples is -1 (PG 14+) or 0 before the first ANALYZE: unknown.
        let n: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = $1::regclass")
            .bind(&qualified)
            .fetch_one(&mut *tx)
            .await
            .ok()?;
        tx.rollback().await.ok()?;
        (n > 0.0).then_some(n as u64)
    }

    async fn column_names(&self, spec: &ReadSpec) -> Result<Vec<String>, ConnectorError> {
        let mut tx = self.begin_read().await?;
        let all = Self::all_columns_on(&mut tx, spec).await?;
        tx.rollback().await.map_err(q("rollback"))?;
        Ok(all.into_iter().map(|(name, _)| name).collect())
    }

    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, ConnectorError> {
        let cols = self.columns(spec).await?;
        Ok(Arc::new(Schema::new(
            cols.iter().map(PgCol::field).collect::<Vec<_>>(),
        )))
    }

    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, ConnectorError> {
        let table = match spec.table.as_deref() {
            Some(t) if Self::query_sql(spec).is_none() => t,
            _ => return Ok(vec![Split::all()]),
        };
        let qualified = quote_qualified(table)?;
        let mut tx = self.begin_read().await?;
        if !relation_exists(&mut *tx, &qualified).await? {
            return Err(ConnectorError::NoSuchTable(table.to_string()));
        }
        let all = relation_columns(&mut *tx, &qualified).await?;
        let pk = primary_key(&mut *tx, &qualified, &all).await?;
        let split_key = match crate::spec::split_column(spec, &pk) {
            None => None,
            Some(pk) => {
                let key = select_columns(all, &[pk.to_string()], table)
                    .map_err(|e| ConnectorError::config("splitPk", e.to_string()))?
                    .remove(0);
                if matches!(key.kind, PgKind::Int2 | PgKind::Int4 | PgKind::Int8) {
                    Some(key)
                } else {
                    tracing::info!(
                        table,
                        split_pk = pk,
                        type_name = %key.type_name,
                        "split key is not an integer column; reading the table as one split"
                    );
                    None
                }
            }
        };
        let order = crate::spec::key_order(&pk, split_key.as_ref().map(|k| k.name.as_str()));
        let Some(key) = split_key.filter(|_| max_splits > 1) else {
            tx.rollback().await.map_err(q("rollback"))?;
            return Ok(vec![Split::all().ordered(order)]);
        };
        let sql = format!(
            "SELECT min({k})::text, max({k})::text FROM {qualified}{w}",
            k = quote_ident(&key.name),
            w = Self::where_sql(spec, None)
        );
        // Extended protocol: one statement, whatever `where` holds.
        let row = sqlx::query(&sql)
            .fetch_one(&mut *tx)
            .await
            .map_err(q("split key range"))?;
        tx.rollback().await.map_err(q("rollback"))?;
        let parse = |v: Option<String>| -> Result<Option<i128>, ConnectorError> {
            v.map(|s| {
                s.parse::<i128>()
                    .map_err(|e| ConnectorError::query("split key range", e))
            })
            .transpose()
        };
        let min = parse(row.get(0))?;
        let max = parse(row.get(1))?;
        Ok(match (min, max) {
            (Some(lo), Some(hi)) => int_splits(&key.name, lo, hi, max_splits, order),
            _ => int_splits(&key.name, 0, 0, 1, order),
        })
    }

    async fn read(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<u64, ConnectorError> {
        let cols = self.columns(spec).await?;
        let list = cols
            .iter()
            .map(|c| quote_ident(&c.name))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "COPY (SELECT {list} FROM {}{}{}) TO STDOUT (FORMAT binary)",
            Self::from_item(spec)?,
            Self::where_sql(spec, Some(split)),
            crate::spec::order_suffix(Some(split), &PgKeys)
        );
        tracing::debug!(%sql, split = split.index, "reading split");
        let mut conn = self.pool.acquire().await.map_err(q("acquire connection"))?;
        let r = Self::read_on(&mut conn, &sql, schema, &cols, spec.fetch_size, &out).await;
        if r.is_err() {
            // The connection may be mid-COPY or mid-transaction: do not reuse it.
            conn.close_on_drop();
        }
        r
    }

    async fn open_changes(
        &self,
        spec: &crate::stream::ChangeSpec,
    ) -> Result<Box<dyn crate::stream::ChangeStream>, ConnectorError> {
        Ok(Box::new(self.open_change_stream(spec).await?))
    }

    async fn privilege_warnings(&self) -> Vec<String> {
        self.privileges().await.unwrap_or_else(|e| {
            vec![format!(
                "the PostgreSQL login's privileges could not be checked ({}); it should be a \
                 read-only user with SELECT on the listed tables only",
                e.peer_message()
            )]
        })
    }
}

/// Writes PostgreSQL tables.
pub struct PostgresSink {
    pool: PgPool,
}

impl PostgresSink {
    /// Connects (a pool of at most 8 connections).
    pub async fn connect(url: &str) -> Result<Self, ConnectorError> {
        Ok(Self {
            pool: connect_pool(url, false).await?,
        })
    }

    /// A sink over an existing pool.
    pub fn from_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    async fn run_all(&self, statements: &[String], what: &str) -> Result<(), ConnectorError> {
        for s in statements.iter().filter(|s| !s.trim().is_empty()) {
            sqlx::raw_sql(s)
                .execute(&self.pool)
                .await
                .map_err(|e| ConnectorError::query(format!("{what} `{s}`"), e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl Sink for PostgresSink {
    async fn prepare(&self, spec: &WriteSpec, schema: &SchemaRef) -> Result<(), ConnectorError> {
        let qualified = quote_qualified(&spec.table)?;
        let names = spec.target_names(schema)?;
        let mut exists = relation_exists(&self.pool, &qualified).await?;
        let step = existing::step(spec, exists)?;
        if exists && step != Step::Recreate {
            let all = relation_columns(&self.pool, &qualified).await?;
            let present: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
            for n in &names {
                if !present.contains(&n.as_str()) {
                    return Err(ConnectorError::Schema(format!(
                        "column `{n}` does not exist in table `{}`",
                        spec.table
                    )));
                }
            }
        }
        if step == Step::RefuseIfNotEmpty {
            let sql = format!("SELECT EXISTS (SELECT 1 FROM {qualified})");
            let rows: bool = sqlx::query_scalar(&sql)
                .fetch_one(&self.pool)
                .await
                .map_err(q("looking for rows in the target"))?;
            if rows {
                return Err(existing::not_empty(&spec.table));
            }
        }
        exists &= step != Step::Recreate;
        if let Some(sql) = existing::statement(step, &qualified, "TRUNCATE TABLE") {
            tracing::info!(%sql, "existing target table");
            sqlx::raw_sql(&sql)
                .execute(&self.pool)
                .await
                .map_err(q("emptying or dropping the target (`existing`)"))?;
        }
        if !exists {
            if !existing::creates(spec) {
                return Err(ConnectorError::NoSuchTable(spec.table.clone()));
            }
            if let Some(ddl) = self.table_ddl(spec, schema)? {
                for n in &ddl.notes {
                    tracing::warn!(table = %spec.table, "{n}");
                }
                create_in_one_transaction(&self.pool, &ddl.create).await?;
            } else {
                let mut defs = Vec::with_capacity(names.len());
                for (name, field) in names.iter().zip(schema.fields()) {
                    defs.push(format!(
                        "{} {}{}",
                        quote_ident(name),
                        pg_type_for(field)?,
                        if field.is_nullable() { "" } else { " NOT NULL" }
                    ));
                }
                let ddl = format!(
                    "CREATE TABLE IF NOT EXISTS {qualified} ({})",
                    defs.join(", ")
                );
                tracing::info!(%ddl, "creating target table");
                sqlx::raw_sql(&ddl)
                    .execute(&self.pool)
                    .await
                    .map_err(q("CREATE TABLE"))?;
            }
        }
        self.ensure_checkpoints(spec).await?;
        self.run_all(&spec.pre_sql, "preSql").await
    }

    async fn task_writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
        job: &str,
        split: u32,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        let mut w = self.open_writer(spec, schema).await?;
        w.checkpoint = Some(checkpoint_sql(spec, job, split)?);
        Ok(Box::new(w))
    }

    fn records_checkpoints(&self, _spec: &WriteSpec) -> bool {
        true
    }

    async fn checkpoint(
        &self,
        spec: &WriteSpec,
        job: &str,
        split: u32,
    ) -> Result<Option<Checkpoint>, ConnectorError> {
        let table = quote_qualified(&spec.checkpoint_table())?;
        // No checkpoint table: nothing of any job was committed here yet.
        if !relation_exists(&self.pool, &table).await? {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT seq, rows_read, rows_written, last_key FROM {table} WHERE job = $1 AND split = $2"
        ))
        .bind(job)
        .bind(split as i32)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| ConnectorError::query(format!("reading checkpoint table {table}"), e))?;
        row.map(|r| Checkpoint::from_stored(&table, r.get(0), r.get(1), r.get(2), r.get(3)))
            .transpose()
    }

    async fn suspend_foreign_keys(
        &self,
        specs: &[WriteSpec],
    ) -> Result<Vec<(usize, Vec<crate::ddl::DdlStep>)>, ConnectorError> {
        suspend_foreign_keys(&self.pool, specs).await
    }

    async fn table_exists(&self, spec: &WriteSpec) -> Result<Option<bool>, ConnectorError> {
        let qualified = quote_qualified(&spec.table)?;
        relation_exists(&self.pool, &qualified).await.map(Some)
    }

    async fn clear_tables(&self, specs: &[WriteSpec], drop: bool) -> Result<(), ConnectorError> {
        let mut present = Vec::new();
        for spec in specs {
            let qualified = quote_qualified(&spec.table)?;
            if relation_exists(&self.pool, &qualified).await? {
                present.push(qualified);
            }
        }
        if present.is_empty() {
            return Ok(());
        }
        // One statement: PostgreSQL refuses to empty a table another one refers to,
        // unless that one is emptied with it.
        let sql = format!(
            "{} {}",
            if drop { "DROP TABLE" } else { "TRUNCATE TABLE" },
            present.join(", ")
        );
        tracing::info!(%sql, "existing target tables");
        sqlx::raw_sql(&sql)
            .execute(&self.pool)
            .await
            .map_err(|e| ConnectorError::query(format!("`existing`: `{sql}`"), e))?;
        Ok(())
    }

    async fn delete_keys(
        &self,
        spec: &WriteSpec,
        columns: &[String],
        keys: &[Vec<String>],
    ) -> Result<u64, ConnectorError> {
        let table = quote_qualified(&spec.table)?;
        let mut deleted = 0;
        for chunk in keys.chunks(crate::repair::KEYS_PER_STATEMENT) {
            let sql = crate::repair::delete_sql(
                &table,
                columns,
                chunk.len(),
                |c| format!("{}::text", quote_ident(c)),
                |n| format!("${n}"),
            );
            let mut q = sqlx::query(&sql);
            for v in chunk.iter().flatten() {
                q = q.bind(v);
            }
            deleted += q
                .execute(&self.pool)
                .await
                .map_err(|e| ConnectorError::query(format!("deleting rows by key in {table}"), e))?
                .rows_affected();
        }
        Ok(deleted)
    }

    async fn forget(&self, spec: &WriteSpec, job: &str) -> Result<(), ConnectorError> {
        let table = quote_qualified(&spec.checkpoint_table())?;
        sqlx::query(&format!("DELETE FROM {table} WHERE job = $1"))
            .bind(job)
            .execute(&self.pool)
            .await
            .map_err(|e| ConnectorError::query(format!("clearing checkpoints in {table}"), e))?;
        Ok(())
    }

    async fn writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        Ok(Box::new(self.open_writer(spec, schema).await?))
    }

    fn table_ddl(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Option<crate::ddl::TableDdl>, ConnectorError> {
        let Some(desc) = spec.described.as_ref() else {
            return Ok(None);
        };
        let names = spec.target_names(schema)?;
        ddl::table_ddl(spec, schema, &names, desc).map(Some)
    }

    async fn apply_ddl(
        &self,
        spec: &WriteSpec,
        steps: &[crate::ddl::DdlStep],
    ) -> Result<(), ConnectorError> {
        let table = quote_qualified(&spec.table)?;
        // The foreign key the step before added (its validation follows).
        let mut added: Option<String> = None;
        for step in steps {
            let exists: bool = match &step.creates {
                None => false,
                Some(crate::ddl::Object::Index(name)) => {
                    let schema = crate::spec::TableRef::parse(&spec.table, None)
                        .and_then(|t| t.schema);
                    let qualified = match schema {
                        Some(s) => format!("{}.{}", quote_ident(&s), quote_ident(name)),
                        None => quote_ident(name),
                    };
                    relation_exists(&self.pool, &qualified).await?
                }
                Some(crate::ddl::Object::ForeignKey(name)) => sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass($1) AND conname = $2)",
                )
                .bind(&table)
                .bind(name)
                .fetch_one(&self.pool)
                .await
                .map_err(q("looking up a foreign key"))?,
            };
            if exists {
                added = None;
                continue;
            }
            tracing::info!(sql = %step.sql, "target table DDL");
            if let Err(e) = sqlx::raw_sql(&step.sql).execute(&self.pool).await {
                // A foreign key added NOT VALID whose validation the rows fail is dropped
                // again: the table has no key rather than one that does not hold.
                if let (None, Some(name)) = (&step.creates, &added) {
                    let drop = format!(
                        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {}",
                        quote_ident(name)
                    );
                    if let Err(e) = sqlx::raw_sql(&drop).execute(&self.pool).await {
                        tracing::warn!(%drop, "dropping a foreign key that failed validation: {e}");
                    }
                }
                return Err(ConnectorError::query(format!("`{}`", step.sql), e));
            }
            added = match &step.creates {
                Some(crate::ddl::Object::ForeignKey(name)) => Some(name.clone()),
                _ => None,
            };
        }
        Ok(())
    }

    async fn change_target(
        &self,
        tables: &[(WriteSpec, ferry_change::Layout)],
        job: &str,
        split: u32,
    ) -> Result<Box<dyn crate::stream::ChangeTarget>, ConnectorError> {
        Ok(Box::new(self.open_change_target(tables, job, split).await?))
    }

    async fn finish(&self, spec: &WriteSpec) -> Result<(), ConnectorError> {
        self.run_all(&spec.post_sql, "postSql").await
    }
}

/// [`Sink::suspend_foreign_keys`] for PostgreSQL: drops the foreign keys among the tables
/// `specs` name and returns the statements that add them again.
async fn suspend_foreign_keys(
    pool: &PgPool,
    specs: &[WriteSpec],
) -> Result<Vec<(usize, Vec<crate::ddl::DdlStep>)>, ConnectorError> {
    let names: Vec<crate::spec::TableRef> = specs
        .iter()
        .filter_map(|s| crate::spec::TableRef::parse(&s.table, None))
        .collect();
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let qualified = quote_qualified(&spec.table)?;
        if !relation_exists(pool, &qualified).await? {
            continue;
        }
        let schema = crate::spec::TableRef::parse(&spec.table, None).and_then(|t| t.schema);
        let desc = {
            let mut conn = pool.acquire().await.map_err(q("acquire connection"))?;
            describe::table_schema(&mut conn, &qualified).await?
        };
        let mut steps = Vec::new();
        for f in desc.foreign_keys {
            let target = crate::spec::TableRef {
                source: None,
                schema: f.references.schema.clone().or_else(|| schema.clone()),
                name: f.references.name.clone(),
            };
            if !names.contains(&target) {
                continue;
            }
            let name = quote_ident(&f.name);
            let drop = format!("ALTER TABLE {qualified} DROP CONSTRAINT {name}");
            tracing::info!(sql = %drop, "foreign key set aside while loading");
            sqlx::raw_sql(&drop)
                .execute(pool)
                .await
                .map_err(|e| ConnectorError::query(format!("`{drop}`"), e))?;
            let references = match &target.schema {
                Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&target.name)),
                None => quote_ident(&target.name),
            };
            steps.push(crate::ddl::DdlStep {
                sql: format!(
                    "ALTER TABLE {qualified} ADD CONSTRAINT {name} {}",
                    crate::ddl::foreign_key(&f, &references, quote_ident)
                ),
                creates: Some(crate::ddl::Object::ForeignKey(f.name.clone())),
            });
        }
        if !steps.is_empty() {
            out.push((i, steps));
        }
    }
    Ok(out)
}

/// Runs the steps that create a table in one transaction (PostgreSQL DDL is
/// transactional): a failure leaves no half-made table or enum type behind.
async fn create_in_one_transaction(
    pool: &PgPool,
    steps: &[crate::ddl::DdlStep],
) -> Result<(), ConnectorError> {
    let mut tx = pool.begin().await.map_err(q("begin"))?;
    for step in steps {
        tracing::info!(sql = %step.sql, "creating target table");
        (&mut *tx)
            .execute(step.sql.as_str())
            .await
            .map_err(|e| ConnectorError::query(format!("`{}`", step.sql), e))?;
    }
    tx.commit().await.map_err(q("commit CREATE TABLE"))
}

impl PostgresSink {
    /// Creates the checkpoint table unless it exists.
    async fn ensure_checkpoints(&self, spec: &WriteSpec) -> Result<(), ConnectorError> {
        let name = spec.checkpoint_table();
        let table = quote_qualified(&name)?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {table} (job text NOT NULL, split integer NOT NULL, \
             seq bigint NOT NULL, rows_read bigint NOT NULL, rows_written bigint NOT NULL, \
             last_key text, updated_at timestamptz NOT NULL, PRIMARY KEY (job, split))"
        );
        if let Err(e) = sqlx::raw_sql(&ddl).execute(&self.pool).await {
            // Two jobs creating it at once: one of them loses the race.
            if !relation_exists(&self.pool, &table).await? {
                return Err(ConnectorError::query(
                    format!(
                        "creating checkpoint table {name} (the writer's user needs CREATE there, \
                         or name another with `checkpointTable`)"
                    ),
                    e,
                ));
            }
        }
        Ok(())
    }

    /// The target table's columns `schema` is written into: quoted table name, column names,
    /// their descriptions (each checked to take its field's type).
    async fn target_columns(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<(String, Vec<String>, Vec<PgCol>), ConnectorError> {
        let mut conn = self.pool.acquire().await.map_err(q("acquire connection"))?;
        target_columns_on(&mut conn, spec, schema).await
    }
}

/// [`PostgresSink::target_columns`] as `conn` sees the catalog (inside its transaction).
pub(crate) async fn target_columns_on(
    conn: &mut sqlx::PgConnection,
    spec: &WriteSpec,
    schema: &SchemaRef,
) -> Result<(String, Vec<String>, Vec<PgCol>), ConnectorError> {
    {
        let qualified = quote_qualified(&spec.table)?;
        if !relation_exists(&mut *conn, &qualified).await? {
            return Err(ConnectorError::NoSuchTable(spec.table.clone()));
        }
        let names = spec.target_names(schema)?;
        let all = relation_columns(&mut *conn, &qualified).await?;
        let mut cols = Vec::with_capacity(names.len());
        for (name, field) in names.iter().zip(schema.fields()) {
            let col = match all.iter().find(|(n, _)| n == name) {
                None => {
                    return Err(ConnectorError::Schema(format!(
                        "column `{name}` does not exist in table `{}`",
                        spec.table
                    )))
                }
                Some((_, Err(ConnectorError::UnsupportedType { column, type_name }))) => {
                    return Err(ConnectorError::UnsupportedType {
                        column: column.clone(),
                        type_name: type_name.clone(),
                    })
                }
                Some((_, Err(e))) => return Err(ConnectorError::Schema(e.to_string())),
                Some((_, Ok(c))) => c.clone(),
            };
            if !binary::can_encode(field.data_type(), &col.kind) {
                return Err(ConnectorError::Schema(format!(
                    "cannot write {} into column `{name}` of type {}",
                    field.data_type(),
                    col.type_name
                )));
            }
            cols.push(col);
        }
        Ok((qualified, names, cols))
    }
}

impl PostgresSink {
    async fn open_writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<PostgresWriter, ConnectorError> {
        let (qualified, names, cols) = self.target_columns(spec, schema).await?;
        let list = names
            .iter()
            .map(|n| quote_ident(n))
            .collect::<Vec<_>>()
            .join(", ");
        let upsert = match spec.write_mode {
            WriteMode::Insert => None,
            WriteMode::Update | WriteMode::Replace => {
                let keys = if spec.keys.is_empty() {
                    let rows = sqlx::query(
                        "SELECT a.attname::text FROM pg_index i \
                         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                         WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY a.attnum",
                    )
                    .bind(&qualified)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(q("primary key lookup"))?;
                    rows.iter()
                        .map(|r| r.get::<String, _>(0))
                        .collect::<Vec<_>>()
                } else {
                    spec.keys.clone()
                };
                if keys.is_empty() {
                    return Err(ConnectorError::config(
                        "keys",
                        format!(
                            "writeMode update/replace needs `keys` or a primary key on `{}`",
                            spec.table
                        ),
                    ));
                }
                for k in &keys {
                    if !names.contains(k) {
                        return Err(ConnectorError::config(
                            "keys",
                            format!("key column `{k}` is not among the written columns"),
                        ));
                    }
                }
                let key_list = keys
                    .iter()
                    .map(|k| quote_ident(k))
                    .collect::<Vec<_>>()
                    .join(", ");
                let sets: Vec<String> = names
                    .iter()
                    .filter(|n| !keys.contains(n))
                    .map(|n| format!("{0} = EXCLUDED.{0}", quote_ident(n)))
                    .collect();
                let action = if sets.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", sets.join(", "))
                };
                Some(Upsert {
                    create: format!(
                        "CREATE TEMP TABLE ferry_stage (LIKE {qualified} INCLUDING DEFAULTS) ON COMMIT DROP"
                    ),
                    copy: format!("COPY ferry_stage ({list}) FROM STDIN (FORMAT binary)"),
                    // The last row of a key wins (COPY fills a fresh table in order).
                    merge: format!(
                        "INSERT INTO {qualified} ({list}) SELECT {list} FROM \
                         (SELECT DISTINCT ON ({key_list}) * FROM ferry_stage ORDER BY {key_list}, ctid DESC) s \
                         ON CONFLICT ({key_list}) {action}"
                    ),
                })
            }
        };
        let mut conn = self.pool.acquire().await.map_err(q("acquire connection"))?;
        // Each batch commits on its own; waiting for its WAL flush would
        // put a disk sync between every two batches. `close` makes them all
        // durable at once before the task counts as done (see there).
        (&mut *conn)
            .execute("SET synchronous_commit = off")
            .await
            .map_err(q("SET synchronous_commit"))?;
        Ok(PostgresWriter {
            conn: Some(conn),
            names,
            cols,
            copy_sql: format!("COPY {qualified} ({list}) FROM STDIN (FORMAT binary)"),
            upsert,
            checkpoint: None,
        })
    }
}

/// The statement recording split `split` of `job`'s checkpoint in the target.
fn checkpoint_sql(
    spec: &WriteSpec,
    job: &str,
    split: u32,
) -> Result<CheckpointSql, ConnectorError> {
    let table = quote_qualified(&spec.checkpoint_table())?;
    Ok(CheckpointSql {
        upsert: format!(
            "INSERT INTO {table} (job, split, seq, rows_read, rows_written, last_key, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, now()) ON CONFLICT (job, split) DO UPDATE SET \
             seq = EXCLUDED.seq, rows_read = EXCLUDED.rows_read, rows_written = EXCLUDED.rows_written, \
             last_key = EXCLUDED.last_key, updated_at = EXCLUDED.updated_at"
        ),
        job: job.to_string(),
        split,
    })
}

/// Records `cp` with `sql` in `tx`.
async fn record_checkpoint(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    sql: &CheckpointSql,
    cp: &Checkpoint,
) -> Result<(), ConnectorError> {
    sqlx::query(&sql.upsert)
        .bind(&sql.job)
        .bind(sql.split as i32)
        .bind(cp.seq as i64)
        .bind(cp.rows as i64)
        .bind(cp.written as i64)
        .bind(cp.position.as_ref().map(crate::spec::Position::to_stored))
        .execute(&mut **tx)
        .await
        .map_err(q("recording the checkpoint"))?;
    Ok(())
}

struct Upsert {
    create: String,
    copy: String,
    merge: String,
}

/// Writes batches into one table over one connection.
struct PostgresWriter {
    conn: Option<PoolConnection<Postgres>>,
    names: Vec<String>,
    cols: Vec<PgCol>,
    copy_sql: String,
    upsert: Option<Upsert>,
    checkpoint: Option<CheckpointSql>,
}

impl PostgresWriter {
    /// One transaction: the rows in `buf` (if any) and the checkpoint.
    async fn commit(
        conn: &mut PoolConnection<Postgres>,
        buf: Option<&[u8]>,
        copy_sql: &str,
        upsert: Option<&Upsert>,
        checkpoint: Option<(&CheckpointSql, &Checkpoint)>,
    ) -> Result<(), ConnectorError> {
        let mut tx = conn.begin().await.map_err(q("begin"))?;
        if let Some(buf) = buf {
            Self::copy(&mut tx, buf, copy_sql, upsert).await?;
        }
        if let Some((sql, cp)) = checkpoint {
            record_checkpoint(&mut tx, sql, cp).await?;
        }
        tx.commit().await.map_err(q("commit"))?;
        Ok(())
    }

    async fn copy(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        buf: &[u8],
        copy_sql: &str,
        upsert: Option<&Upsert>,
    ) -> Result<(), ConnectorError> {
        let copy_sql = match upsert {
            Some(u) => {
                (&mut *tx)
                    .execute(u.create.as_str())
                    .await
                    .map_err(q("create staging table"))?;
                &u.copy
            }
            None => copy_sql,
        };
        let mut copy = tx
            .copy_in_raw(copy_sql)
            .await
            .map_err(q("COPY FROM STDIN"))?;
        copy.send(buf).await.map_err(q("COPY FROM STDIN"))?;
        copy.finish().await.map_err(q("COPY FROM STDIN"))?;
        if let Some(u) = upsert {
            (&mut *tx)
                .execute(u.merge.as_str())
                .await
                .map_err(q("upsert from staging table"))?;
        }
        Ok(())
    }

    async fn write_with(
        &mut self,
        batch: &RecordBatch,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<WriteOutcome, ConnectorError> {
        if batch.num_columns() != self.cols.len() {
            return Err(ConnectorError::Schema(format!(
                "batch has {} columns, the writer {}",
                batch.num_columns(),
                self.cols.len()
            )));
        }
        let mut buf = Vec::with_capacity(64 + batch.get_array_memory_size());
        binary::put_header(&mut buf);
        let mut dirty = Vec::new();
        let mut good = 0u64;
        let ncols = (self.cols.len() as i16).to_be_bytes();
        'rows: for row in 0..batch.num_rows() {
            let start = buf.len();
            buf.extend_from_slice(&ncols);
            for (i, col) in self.cols.iter().enumerate() {
                if let Err(reason) =
                    binary::encode_cell(batch.column(i).as_ref(), row, col, &mut buf)
                {
                    buf.truncate(start);
                    let record = serde_json::Value::Object(
                        self.names
                            .iter()
                            .enumerate()
                            .map(|(j, n)| {
                                (n.clone(), binary::cell_json(batch.column(j).as_ref(), row))
                            })
                            .collect(),
                    );
                    dirty.push(DirtyRecord {
                        row,
                        column: Some(col.name.clone()),
                        reason: format!("column `{}` ({}): {reason}", col.name, col.type_name),
                        record,
                    });
                    continue 'rows;
                }
            }
            good += 1;
        }
        binary::put_trailer(&mut buf);
        let stored = checkpoint.map(|c| Checkpoint {
            written: c.written + good,
            ..c.clone()
        });
        let cp = self.checkpoint.as_ref().zip(stored.as_ref());
        if good > 0 || cp.is_some() {
            let conn = self
                .conn
                .as_mut()
                .ok_or_else(|| ConnectorError::config("writer", "used after close"))?;
            let rows = (good > 0).then_some(buf.as_slice());
            if let Err(e) = Self::commit(conn, rows, &self.copy_sql, self.upsert.as_ref(), cp).await
            {
                conn.close_on_drop();
                self.conn = None;
                return Err(e);
            }
        }
        Ok(WriteOutcome {
            written: good,
            dirty,
        })
    }
}

#[async_trait]
impl SinkWriter for PostgresWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<WriteOutcome, ConnectorError> {
        self.write_with(batch, None).await
    }

    async fn write_at(
        &mut self,
        batch: &RecordBatch,
        checkpoint: &Checkpoint,
    ) -> Result<WriteOutcome, ConnectorError> {
        self.write_with(batch, Some(checkpoint)).await
    }

    async fn close(mut self: Box<Self>) -> Result<(), ConnectorError> {
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        // A synchronous commit that writes a commit record waits until the
        // WAL is flushed up to it, which covers every earlier asynchronous
        // commit of this writer: after this, all its batches are durable.
        let r = (&mut *conn)
            .execute("SET synchronous_commit = on; BEGIN; SELECT txid_current(); COMMIT;")
            .await;
        if let Err(e) = r {
            conn.close_on_drop();
            return Err(ConnectorError::query("flushing the commits to disk", e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted() {
        assert_eq!(
            quote_qualified("public.orders").unwrap(),
            r#""public"."orders""#
        );
        assert_eq!(quote_qualified("Orders").unwrap(), r#""Orders""#);
        assert_eq!(
            quote_qualified(r#""My ""S"".x"."T t""#).unwrap(),
            r#""My ""S"".x"."T t""#
        );
        assert_eq!(quote_ident(r#"a"b"#), r#""a""b""#);
        assert!(quote_qualified("a..b").is_err());
        assert!(quote_qualified(r#""open"#).is_err());
        assert!(quote_qualified(r#""a"b"#).is_err());
    }

    #[test]
    fn passwords_are_scrubbed() {
        let url = "postgres://u:hunter2@db:5432/x";
        assert_eq!(scrub(url, "bad hunter2 here"), "bad *** here");
        assert_eq!(scrub("postgres://u@db/x", "m"), "m");
    }

    #[test]
    fn typmods_decode() {
        let c = |t: &str, m: i32| PgCol::from_catalog("c".into(), t, m, false, t.into()).unwrap();
        assert_eq!(
            c("numeric", (38 << 16 | 10) + 4).kind,
            PgKind::Numeric(Some((38, 10)))
        );
        assert_eq!(c("numeric", -1).field().data_type(), &DataType::Utf8);
        assert_eq!(
            c("numeric", (65 << 16 | 30) + 4).field().data_type(),
            &DataType::Decimal256(65, 30)
        );
        assert_eq!(c("varchar", 14).kind, PgKind::Text { max_len: Some(10) });
        assert!(matches!(
            PgCol::from_catalog("p".into(), "point", -1, false, "point".into()),
            Err(ConnectorError::UnsupportedType { .. })
        ));
    }
}
