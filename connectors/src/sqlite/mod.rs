//! SQLite source and sink (sqlx, bundled libsqlite3).
//!
//! A split is read in one deferred transaction (a read snapshot) and streamed into Arrow
//! batches of `fetch_size` rows. A batch is written in one transaction with multi-row
//! `INSERT`s (at most 500 rows and [`MAX_VARIABLES`] bound values per statement). SQLite is dynamically
//! typed: every value is checked against its column's declared type, and a value that does
//! not fit (text `abc` in an `INTEGER` column, a fraction in a `DECIMAL(p,0)` column) fails
//! the read with an error naming the column and the rowid — never a silent NULL.
//!
//! # Type mapping
//!
//! | SQLite declared type                                 | Arrow (reader)                                     |
//! |------------------------------------------------------|----------------------------------------------------|
//! | `INTEGER`, `INT`, `BIGINT`, `SMALLINT`, `TINYINT`, `MEDIUMINT`, `INT2`, `INT8` | `Int64` (integer values only) |
//! | `REAL`, `DOUBLE`, `DOUBLE PRECISION`, `FLOAT`        | `Float64` (integers accepted when exact)           |
//! | `TEXT`, `CLOB`, `VARCHAR(n)`, `CHAR(n)`, `NCHAR(n)`, `NVARCHAR(n)`, `CHARACTER(n)` | `Utf8` (`ferry.max_length = n` when given) |
//! | `BLOB`                                               | `Binary`                                           |
//! | `BOOLEAN`, `BOOL`                                    | `Boolean` (integers 0 / 1 only)                    |
//! | `DATE`                                               | `Date32` (text `YYYY-MM-DD`)                       |
//! | `DATETIME`, `TIMESTAMP`                              | `Timestamp(Microsecond, None)` (text `YYYY-MM-DD HH:MM:SS[.ffffff]`, `T` and a final `Z` accepted) |
//! | `DECIMAL(p,s)`, `NUMERIC(p,s)` (also `DECIMAL TEXT(p,s)`), 1 ≤ p ≤ 38, 0 ≤ s ≤ p | `Decimal128(p,s)`: text and integers parsed exactly; a real is parsed from its shortest round-trip text, so one with more than s decimals (or any value beyond p digits) is an error |
//! | `JSON`                                               | `Utf8`, metadata `ferry.type = json` (numbers rendered as text) |
//! | none, or anything else                               | `Utf8` when every value is text, else [`ConnectorError::UnsupportedType`] |
//!
//! | Arrow (writer, `createTable`)                 | SQLite declared type                              |
//! |-----------------------------------------------|---------------------------------------------------|
//! | `Int8..Int64`, `UInt8..UInt64`                | `INTEGER` (`UInt64` above `i64::MAX`: dirty)      |
//! | `Float32`, `Float64`                          | `REAL`                                            |
//! | `Decimal128/256(p,s)`                         | `DECIMAL TEXT(p,s)`: the exact decimal string. The word `TEXT` gives the column TEXT affinity; a plain `DECIMAL(p,s)` column has NUMERIC affinity, which SQLite turns into a REAL (15 significant digits) |
//! | `Utf8`, `LargeUtf8`                           | `TEXT`; `VARCHAR(n)` with `ferry.max_length`; `JSON` with `ferry.type = json` |
//! | `Binary`, `LargeBinary`                       | `BLOB`                                            |
//! | `Boolean`                                     | `BOOLEAN` (0 / 1)                                 |
//! | `Date32`                                      | `DATE` (`YYYY-MM-DD`)                             |
//! | `Timestamp(any unit, None)`                   | `DATETIME` (`YYYY-MM-DD HH:MM:SS.ffffff`)         |
//! | `Timestamp(any unit, Some(tz))`               | `DATETIME`, the instant in UTC (same text, no zone; it reads back as `Timestamp(Microsecond, None)`) |
//! | `Time32`, `Time64`                            | `TEXT` (`HH:MM:SS.ffffff`)                        |
//! | `Duration(any unit)`                          | `TEXT` (exact seconds, e.g. `1.500000`)           |
//!
//! Dirty records (the rest of the batch is written): `UInt64` above `i64::MAX`, NaN (SQLite
//! would store NULL), NaN / ±inf
//! into a `DECIMAL` column, NULL into a `NOT NULL` column, nanosecond timestamps with a
//! sub-microsecond part. SQLite does not enforce `VARCHAR(n)` lengths: longer strings are
//! kept as they are, never truncated nor refused.
//!
//! URLs: `sqlite:///abs/path.db` or `sqlite://relative.db`. The reader opens the file
//! read-only (a missing file is an error naming it); the writer creates it, in WAL mode.

mod apply;
mod ddl;
pub(crate) use ddl::table_ddl;
mod describe;
mod value;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Executor, Row, Sqlite, SqlitePool, TypeInfo, ValueRef};
use tokio::sync::mpsc;

use crate::error::ConnectorError;
use crate::existing::{self, Step};
use crate::spec::{int_splits, ReadSpec, Split, WriteMode, WriteSpec};
use crate::traits::{
    Checkpoint, CheckpointSql, DirtyRecord, Sink, SinkWriter, Source, WriteOutcome,
};
use value::SqlVal;

/// Field metadata key naming the flavour of a `Utf8` column (`json`).
pub const META_TYPE: &str = "ferry.type";
/// Field metadata key holding the declared maximum length of a text column.
pub const META_MAX_LENGTH: &str = "ferry.max_length";
/// Bound values per statement: `SQLITE_MAX_VARIABLE_NUMBER` of the bundled SQLite (3.46,
/// default 32766 since 3.32).
pub const MAX_VARIABLES: usize = 32_766;

/// What a column holds, from its declared type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    Int,
    Real,
    Text {
        max_len: Option<usize>,
    },
    Blob,
    Bool,
    Date,
    DateTime,
    Decimal(u8, i8),
    Json,
    /// No declared type, or one Ferry does not know: text values only.
    Untyped,
}

impl Kind {
    pub(crate) fn from_decl(decl: &str) -> Kind {
        let up = decl.trim().to_ascii_uppercase();
        let (base, args) = match up.split_once('(') {
            Some((b, a)) => (
                b.trim().to_string(),
                Some(a.trim_end_matches(')').to_string()),
            ),
            None => (up.clone(), None),
        };
        let base = base.split_whitespace().collect::<Vec<_>>().join(" ");
        let nums: Vec<Option<u32>> = args
            .as_deref()
            .map(|a| a.split(',').map(|x| x.trim().parse().ok()).collect())
            .unwrap_or_default();
        match base.as_str() {
            "INTEGER" | "INT" | "BIGINT" | "SMALLINT" | "TINYINT" | "MEDIUMINT" | "INT2"
            | "INT8" | "UNSIGNED BIG INT" => Kind::Int,
            "REAL" | "DOUBLE" | "DOUBLE PRECISION" | "FLOAT" => Kind::Real,
            "TEXT" | "CLOB" | "VARCHAR" | "CHAR" | "NCHAR" | "NVARCHAR" | "CHARACTER"
            | "VARYING CHARACTER" | "NATIVE CHARACTER" => Kind::Text {
                max_len: match nums.as_slice() {
                    [Some(n)] => Some(*n as usize),
                    _ => None,
                },
            },
            "BLOB" => Kind::Blob,
            "BOOLEAN" | "BOOL" => Kind::Bool,
            "DATE" => Kind::Date,
            "DATETIME" | "TIMESTAMP" => Kind::DateTime,
            "JSON" => Kind::Json,
            b if b == "DECIMAL"
                || b == "NUMERIC"
                || b.starts_with("DECIMAL ")
                || b.starts_with("NUMERIC ") =>
            {
                let (p, s) = match nums.as_slice() {
                    [Some(p)] => (*p, 0),
                    [Some(p), Some(s)] => (*p, *s),
                    _ => return Kind::Untyped,
                };
                if (1..=38).contains(&p) && s <= p {
                    Kind::Decimal(p as u8, s as i8)
                } else {
                    Kind::Untyped
                }
            }
            _ => Kind::Untyped,
        }
    }
}

/// A column as `PRAGMA table_info` describes it.
#[derive(Debug, Clone)]
pub(crate) struct Col {
    pub(crate) name: String,
    pub(crate) decl: String,
    pub(crate) kind: Kind,
    pub(crate) not_null: bool,
    /// 1-based position in the primary key, 0 when not part of it.
    pub(crate) pk: i64,
}

impl Col {
    /// The Arrow field this column reads into.
    pub(crate) fn field(&self) -> Field {
        let mut meta = HashMap::new();
        let dt = match &self.kind {
            Kind::Int => DataType::Int64,
            Kind::Real => DataType::Float64,
            Kind::Text { max_len } => {
                if let Some(n) = max_len {
                    meta.insert(META_MAX_LENGTH.to_string(), n.to_string());
                }
                DataType::Utf8
            }
            Kind::Json => {
                meta.insert(META_TYPE.to_string(), "json".to_string());
                DataType::Utf8
            }
            Kind::Untyped => DataType::Utf8,
            Kind::Blob => DataType::Binary,
            Kind::Bool => DataType::Boolean,
            Kind::Date => DataType::Date32,
            Kind::DateTime => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::Decimal(p, s) => DataType::Decimal128(*p, *s),
        };
        Field::new(&self.name, dt, !self.not_null).with_metadata(meta)
    }
}

/// The declared type `create_table` gives an Arrow field.
pub(crate) fn sqlite_type_for(field: &Field) -> Result<String, ConnectorError> {
    let meta = field.metadata();
    Ok(match field.data_type() {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "INTEGER".into(),
        DataType::Float32 | DataType::Float64 => "REAL".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            format!("DECIMAL TEXT({p},{s})")
        }
        DataType::Utf8 | DataType::LargeUtf8 => match meta.get(META_TYPE).map(String::as_str) {
            Some("json") => "JSON".into(),
            _ => match meta
                .get(META_MAX_LENGTH)
                .and_then(|n| n.parse::<u32>().ok())
            {
                Some(n) if n > 0 => format!("VARCHAR({n})"),
                _ => "TEXT".into(),
            },
        },
        DataType::Binary | DataType::LargeBinary => "BLOB".into(),
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(_, _) => "DATETIME".into(),
        DataType::Time32(_) | DataType::Time64(_) | DataType::Duration(_) => "TEXT".into(),
        _ => {
            return Err(ConnectorError::UnsupportedType {
                column: field.name().clone(),
                type_name: field.data_type().to_string(),
            })
        }
    })
}

/// `"name"`, with embedded quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How a SQLite read writes key columns and values (SQLite strings know no
/// backslash escapes: a quote doubled is all).
pub(crate) struct SqliteKeys;

impl crate::spec::KeySql for SqliteKeys {
    fn ident(&self, name: &str) -> String {
        quote_ident(name)
    }

    fn text(&self, text: &str) -> String {
        format!("'{}'", text.replace('\'', "''"))
    }
}

/// A table name as `(schema, table)`: `main.t`, `"My t"`, `"s"."t"`.
fn split_name(name: &str) -> Result<(Option<String>, String), ConnectorError> {
    // Validates and quotes each part; then unquote them again.
    let quoted = crate::postgres::quote_qualified(name)?;
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = quoted.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => {}
            '.' => parts.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    parts.push(cur);
    match parts.len() {
        1 => Ok((None, parts.remove(0))),
        2 => {
            let t = parts.remove(1);
            Ok((Some(parts.remove(0)), t))
        }
        _ => Err(ConnectorError::config(
            "table",
            format!("`{name}`: SQLite names have at most two parts"),
        )),
    }
}

fn qualified(schema: &Option<String>, table: &str) -> String {
    match schema {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(table)),
        None => quote_ident(table),
    }
}

fn q(what: &str) -> impl FnOnce(sqlx::Error) -> ConnectorError + '_ {
    move |e| ConnectorError::query(what, e)
}

async fn connect_pool(url: &str, writer: bool) -> Result<SqlitePool, ConnectorError> {
    let bad = |m: String| ConnectorError::Connect {
        what: format!("SQLite {url}"),
        message: m,
        code: None,
    };
    let opts = SqliteConnectOptions::from_str(url)
        .map_err(|e| bad(format!("invalid connection URL: {e}")))?
        .busy_timeout(Duration::from_secs(30));
    let path = opts.get_filename().to_path_buf();
    let opts = if writer {
        // A loading writer does not enforce foreign keys (sqlx turns them on): a whole
        // database loads its tables in any order, as PostgreSQL and MySQL loads do.
        opts.create_if_missing(true)
            .foreign_keys(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    } else {
        if !path.exists() {
            return Err(ConnectorError::Connect {
                what: format!("SQLite {}", path.display()),
                message: format!("database file `{}` does not exist", path.display()),
                code: None,
            });
        }
        opts.read_only(true)
    };
    let opts =
        sqlx::ConnectOptions::log_slow_statements(opts, log::LevelFilter::Off, Duration::ZERO);
    let pool = SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(opts)
        .await
        .map_err(|e| {
            ConnectorError::connect(format!("SQLite {}", path.display()), e, str::to_string)
        })?;
    Ok(pool)
}

/// Every column of a table or view (empty: no such table). `schema` may be `temp`.
async fn table_columns<'e, E>(
    ex: E,
    schema: &Option<String>,
    table: &str,
) -> Result<Vec<Col>, ConnectorError>
where
    E: Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(
        "SELECT name, type, \"notnull\", pk FROM pragma_table_info(?1, ?2) ORDER BY cid",
    )
    .bind(table)
    .bind(schema.as_deref())
    .fetch_all(ex)
    .await
    .map_err(q("column lookup"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let decl: String = r.get(1);
            Col {
                name: r.get(0),
                kind: Kind::from_decl(&decl),
                decl,
                not_null: r.get::<i64, _>(2) != 0,
                pk: r.get(3),
            }
        })
        .collect())
}

/// Picks `wanted` (all when empty or `*`) out of `all`, exactly, else by a unique
/// case-insensitive match.
fn select_columns(
    all: Vec<Col>,
    wanted: &[String],
    relation: &str,
) -> Result<Vec<Col>, ConnectorError> {
    if wanted.is_empty() || (wanted.len() == 1 && wanted[0].trim() == "*") {
        return Ok(all);
    }
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let w = w.trim();
        let unq = w
            .strip_prefix('"')
            .and_then(|x| x.strip_suffix('"'))
            .map(|x| x.replace("\"\"", "\""));
        let key = unq.as_deref().unwrap_or(w);
        let idx = all.iter().position(|c| c.name == key).or_else(|| {
            let m: Vec<usize> = (0..all.len())
                .filter(|i| all[*i].name.eq_ignore_ascii_case(key))
                .collect();
            (m.len() == 1).then(|| m[0])
        });
        match idx {
            Some(i) => out.push(all[i].clone()),
            None => {
                return Err(ConnectorError::Schema(format!(
                    "column `{key}` does not exist in `{relation}`"
                )))
            }
        }
    }
    Ok(out)
}

/// Reads SQLite tables and queries.
pub struct SqliteSource {
    pool: SqlitePool,
}

/// What a read selects from, resolved.
struct ReadPlan {
    cols: Vec<Col>,
    from: String,
    /// Whether `_rowid_` is selectable (a rowid table, not a view or query).
    has_rowid: bool,
}

impl SqliteSource {
    /// Opens the database file read-only (a pool of at most 4 connections).
    pub async fn connect(url: &str) -> Result<Self, ConnectorError> {
        Ok(Self {
            pool: connect_pool(url, false).await?,
        })
    }

    /// A source over an existing pool.
    pub fn from_pool(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// The source's pool (read-only when built by [`connect`](Self::connect)).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn query_sql(spec: &ReadSpec) -> Option<String> {
        spec.query_sql
            .as_deref()
            .map(|s| s.trim().trim_end_matches(';').trim().to_string())
            .filter(|s| !s.is_empty())
    }

    async fn resolve(&self, spec: &ReadSpec) -> Result<ReadPlan, ConnectorError> {
        if let Some(qs) = Self::query_sql(spec) {
            // A temporary view keeps the declared types of the query's columns (what
            // `sqlite3_column_decltype` reports for `SELECT ... LIMIT 0`).
            let mut conn = self.pool.acquire().await.map_err(q("acquire connection"))?;
            let r = async {
                (&mut *conn).execute("BEGIN").await.map_err(q("begin"))?;
                (&mut *conn)
                    .execute(format!("CREATE TEMP VIEW ferry_describe AS {qs}").as_str())
                    .await
                    .map_err(q("describing querySql"))?;
                let cols = table_columns(&mut *conn, &Some("temp".into()), "ferry_describe").await;
                (&mut *conn)
                    .execute("ROLLBACK")
                    .await
                    .map_err(q("rollback"))?;
                cols
            }
            .await;
            if r.is_err() {
                conn.close_on_drop();
            }
            let cols = select_columns(r?, &spec.columns, "querySql")?;
            return Ok(ReadPlan {
                cols,
                from: format!("({qs}) AS ferry_q"),
                has_rowid: false,
            });
        }
        let table = spec.table.as_deref().ok_or_else(|| {
            ConnectorError::config("table", "either `table` or `querySql` is required")
        })?;
        let (schema, name) = split_name(table)?;
        let all = table_columns(&self.pool, &schema, &name).await?;
        if all.is_empty() {
            return Err(ConnectorError::NoSuchTable(table.to_string()));
        }
        let cols = select_columns(all, &spec.columns, table)?;
        let has_rowid = sqlx::query(
            "SELECT 1 FROM pragma_table_list WHERE name = ?1 AND (?2 IS NULL OR schema = ?2) \
             AND type = 'table' AND wr = 0",
        )
        .bind(&name)
        .bind(schema.as_deref())
        .fetch_optional(&self.pool)
        .await
        .map_err(q("table lookup"))?
        .is_some();
        Ok(ReadPlan {
            cols,
            from: qualified(&schema, &name),
            has_rowid,
        })
    }

    fn where_sql(spec: &ReadSpec, split: Option<&Split>) -> String {
        crate::spec::where_suffix(&crate::spec::read_conditions(spec, split, &SqliteKeys))
    }

    async fn read_on(
        conn: &mut PoolConnection<Sqlite>,
        sql: &str,
        schema: SchemaRef,
        plan: &ReadPlan,
        fetch_size: usize,
        out: &mpsc::Sender<RecordBatch>,
    ) -> Result<u64, ConnectorError> {
        (&mut **conn)
            .execute("BEGIN")
            .await
            .map_err(q("begin snapshot"))?;
        let fetch_size = fetch_size.max(1);
        let mut total = 0u64;
        let off = plan.has_rowid as usize;
        let mut builders: Vec<ColBuilder> = plan
            .cols
            .iter()
            .map(|c| ColBuilder::new(&c.kind, fetch_size))
            .collect();
        let mut pending = 0usize;
        {
            let mut rows = sqlx::query(sql).fetch(&mut **conn);
            while let Some(row) = rows.try_next().await.map_err(q("SELECT"))? {
                let rowid = if plan.has_rowid {
                    format!("rowid {}", row.try_get::<i64, _>(0).unwrap_or_default())
                } else {
                    format!("row {}", total + 1)
                };
                for (i, (c, b)) in plan.cols.iter().zip(builders.iter_mut()).enumerate() {
                    b.push(&row, i + off, c, &rowid)?;
                }
                total += 1;
                pending += 1;
                if pending == fetch_size {
                    let batch = finish_batch(&schema, &mut builders)?;
                    pending = 0;
                    out.send(batch)
                        .await
                        .map_err(|_| ConnectorError::Cancelled)?;
                }
            }
        }
        if pending > 0 {
            let batch = finish_batch(&schema, &mut builders)?;
            out.send(batch)
                .await
                .map_err(|_| ConnectorError::Cancelled)?;
        }
        (&mut **conn).execute("COMMIT").await.map_err(q("commit"))?;
        Ok(total)
    }
}

fn finish_batch(
    schema: &SchemaRef,
    builders: &mut [ColBuilder],
) -> Result<RecordBatch, ConnectorError> {
    let arrays: Vec<ArrayRef> = builders
        .iter_mut()
        .zip(schema.fields())
        .map(|(b, f)| b.finish(f.data_type()))
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), arrays)?)
}

enum ColBuilder {
    Int(Int64Builder),
    Real(Float64Builder),
    Text(StringBuilder),
    Blob(BinaryBuilder),
    Bool(BooleanBuilder),
    Date(Date32Builder),
    DateTime(TimestampMicrosecondBuilder),
    Decimal(Decimal128Builder),
}

impl ColBuilder {
    fn new(kind: &Kind, n: usize) -> Self {
        match kind {
            Kind::Int => ColBuilder::Int(Int64Builder::with_capacity(n)),
            Kind::Real => ColBuilder::Real(Float64Builder::with_capacity(n)),
            Kind::Text { .. } | Kind::Json | Kind::Untyped => {
                ColBuilder::Text(StringBuilder::with_capacity(n, n * 8))
            }
            Kind::Blob => ColBuilder::Blob(BinaryBuilder::with_capacity(n, n * 8)),
            Kind::Bool => ColBuilder::Bool(BooleanBuilder::with_capacity(n)),
            Kind::Date => ColBuilder::Date(Date32Builder::with_capacity(n)),
            Kind::DateTime => ColBuilder::DateTime(TimestampMicrosecondBuilder::with_capacity(n)),
            Kind::Decimal(..) => ColBuilder::Decimal(Decimal128Builder::with_capacity(n)),
        }
    }

    fn finish(&mut self, dt: &DataType) -> ArrayRef {
        match self {
            ColBuilder::Int(b) => Arc::new(b.finish()),
            ColBuilder::Real(b) => Arc::new(b.finish()),
            ColBuilder::Text(b) => Arc::new(b.finish()),
            ColBuilder::Blob(b) => Arc::new(b.finish()),
            ColBuilder::Bool(b) => Arc::new(b.finish()),
            ColBuilder::Date(b) => Arc::new(b.finish()),
            ColBuilder::DateTime(b) => Arc::new(b.finish()),
            ColBuilder::Decimal(b) => Arc::new(b.finish().with_data_type(dt.clone())),
        }
    }

    fn push(
        &mut self,
        row: &SqliteRow,
        i: usize,
        col: &Col,
        rowid: &str,
    ) -> Result<(), ConnectorError> {
        let raw = row.try_get_raw(i).map_err(q("SELECT"))?;
        if raw.is_null() {
            match self {
                ColBuilder::Int(b) => b.append_null(),
                ColBuilder::Real(b) => b.append_null(),
                ColBuilder::Text(b) => b.append_null(),
                ColBuilder::Blob(b) => b.append_null(),
                ColBuilder::Bool(b) => b.append_null(),
                ColBuilder::Date(b) => b.append_null(),
                ColBuilder::DateTime(b) => b.append_null(),
                ColBuilder::Decimal(b) => b.append_null(),
            }
            return Ok(());
        }
        let storage = raw.type_info().name().to_string();
        drop(raw);
        let err = |m: String| ConnectorError::Value {
            column: col.name.clone(),
            message: format!("{rowid}: {m} (declared type `{}`)", col.decl),
        };
        let misfit = || err(format!("a {storage} value does not fit"));
        let int = || row.try_get_unchecked::<i64, _>(i).map_err(q("SELECT"));
        let real = || row.try_get_unchecked::<f64, _>(i).map_err(q("SELECT"));
        let text = || row.try_get_unchecked::<String, _>(i).map_err(q("SELECT"));
        match (self, storage.as_str()) {
            (ColBuilder::Int(b), "INTEGER") => b.append_value(int()?),
            (ColBuilder::Real(b), "REAL") => b.append_value(real()?),
            (ColBuilder::Real(b), "INTEGER") => {
                let v = int()?;
                if (v as f64) as i128 != v as i128 || v.unsigned_abs() > (1u64 << 53) {
                    return Err(err(format!("integer {v} has no exact double")));
                }
                b.append_value(v as f64)
            }
            (ColBuilder::Text(b), "TEXT") => b.append_value(text()?),
            (ColBuilder::Text(b), "INTEGER" | "REAL") if col.kind == Kind::Json => {
                b.append_value(text()?)
            }
            (ColBuilder::Text(_), _) if col.kind == Kind::Untyped => {
                return Err(ConnectorError::UnsupportedType {
                    column: col.name.clone(),
                    type_name: format!(
                        "`{}` holding a {storage} value ({rowid}); only text is read from untyped columns",
                        col.decl
                    ),
                })
            }
            (ColBuilder::Blob(b), "BLOB") => {
                b.append_value(row.try_get_unchecked::<Vec<u8>, _>(i).map_err(q("SELECT"))?)
            }
            (ColBuilder::Bool(b), "INTEGER") => match int()? {
                0 => b.append_value(false),
                1 => b.append_value(true),
                v => return Err(err(format!("integer {v} is not a boolean (0 or 1)"))),
            },
            (ColBuilder::Date(b), "TEXT") => {
                let s = text()?;
                b.append_value(
                    value::parse_date(&s)
                        .ok_or_else(|| err(format!("`{s}` is not a date (YYYY-MM-DD)")))?,
                )
            }
            (ColBuilder::DateTime(b), "TEXT") => {
                let s = text()?;
                b.append_value(value::parse_datetime(&s).ok_or_else(|| {
                    err(format!(
                        "`{s}` is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff])"
                    ))
                })?)
            }
            (ColBuilder::Decimal(b), st @ ("TEXT" | "INTEGER" | "REAL")) => {
                let Kind::Decimal(p, s) = col.kind else {
                    return Err(misfit());
                };
                let s_txt = match st {
                    "INTEGER" => int()?.to_string(),
                    // Rust prints the shortest text that reads back as the same double.
                    "REAL" => {
                        let f = real()?;
                        if !f.is_finite() {
                            return Err(err(format!("{f} is not a decimal")));
                        }
                        format!("{f}")
                    }
                    _ => text()?,
                };
                b.append_value(value::parse_decimal(&s_txt, p, s).map_err(err)?)
            }
            _ => return Err(misfit()),
        }
        Ok(())
    }
}

#[async_trait]
impl Source for SqliteSource {
    async fn list_tables(&self) -> Result<crate::traits::TableListing, ConnectorError> {
        describe::list_tables(&self.pool).await
    }

    async fn describe(
        &self,
        spec: &ReadSpec,
    ) -> Result<Option<crate::spec::TableSchema>, ConnectorError> {
        if Self::query_sql(spec).is_some() {
            return Ok(None);
        }
        let Some(table) = spec.table.as_deref() else {
            return Ok(None);
        };
        let (schema, name) = split_name(table)?;
        describe::table_schema(&self.pool, &schema, &name)
            .await
            .map(Some)
    }

    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, ConnectorError> {
        let plan = self.resolve(spec).await?;
        if Self::query_sql(spec).is_none() {
            // Untyped columns are text columns only if every value is text.
            for c in plan.cols.iter().filter(|c| c.kind == Kind::Untyped) {
                let sql = format!(
                    "SELECT typeof({0}) FROM {1} WHERE typeof({0}) NOT IN ('text', 'null') LIMIT 1",
                    quote_ident(&c.name),
                    plan.from
                );
                if let Some(r) = sqlx::query(&sql)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(q("checking an untyped column"))?
                {
                    return Err(ConnectorError::UnsupportedType {
                        column: c.name.clone(),
                        type_name: format!(
                            "`{}` holding {} values (only all-text untyped columns are read)",
                            c.decl,
                            r.get::<String, _>(0)
                        ),
                    });
                }
            }
        }
        Ok(Arc::new(Schema::new(
            plan.cols.iter().map(Col::field).collect::<Vec<_>>(),
        )))
    }

    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, ConnectorError> {
        if Self::query_sql(spec).is_some() || spec.table.is_none() {
            return Ok(vec![Split::all()]);
        }
        let plan = self.resolve(spec).await?;
        let (schema, name) = split_name(spec.table.as_deref().unwrap_or_default())?;
        let all = table_columns(&self.pool, &schema, &name).await?;
        // Only a rowid alias (`INTEGER PRIMARY KEY` of a rowid table) is sure to
        // hold integers: any other column may hold values of any type, which
        // SQLite orders by type first.
        let mut pk: Vec<&Col> = all.iter().filter(|c| c.pk > 0).collect();
        pk.sort_by_key(|c| c.pk);
        let rowid_alias =
            plan.has_rowid && pk.len() == 1 && pk[0].decl.eq_ignore_ascii_case("INTEGER");
        let pk: Vec<(String, bool)> = pk.iter().map(|c| (c.name.clone(), rowid_alias)).collect();
        let key = match crate::spec::split_column(spec, &pk) {
            None => None,
            Some(k) => {
                let key = select_columns(all, &[k.to_string()], &name)
                    .map_err(|e| ConnectorError::config("splitPk", e.to_string()))?
                    .remove(0);
                if key.kind != Kind::Int {
                    tracing::info!(
                        split_pk = k,
                        decl = %key.decl,
                        "split key is not an integer column; reading the table as one split"
                    );
                }
                (key.kind == Kind::Int).then_some(key)
            }
        };
        let order = crate::spec::key_order(&pk, key.as_ref().map(|c| c.name.as_str()));
        let Some(key) = key.filter(|_| max_splits > 1) else {
            return Ok(vec![Split::all().ordered(order)]);
        };
        let k = quote_ident(&key.name);
        let w = Self::where_sql(spec, None);
        let cond = if w.is_empty() {
            format!(" WHERE typeof({k}) = 'integer'")
        } else {
            format!("{w} AND typeof({k}) = 'integer'")
        };
        let sql = format!("SELECT min({k}), max({k}) FROM {}{cond}", plan.from);
        let row = sqlx::query(&sql)
            .fetch_one(&self.pool)
            .await
            .map_err(q("split key range"))?;
        let min: Option<i64> = row.try_get(0).map_err(q("split key range"))?;
        let max: Option<i64> = row.try_get(1).map_err(q("split key range"))?;
        Ok(match (min, max) {
            (Some(lo), Some(hi)) => {
                int_splits(&key.name, lo as i128, hi as i128, max_splits, order)
            }
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
        let plan = self.resolve(spec).await?;
        let mut list: Vec<String> = plan.cols.iter().map(|c| quote_ident(&c.name)).collect();
        if plan.has_rowid {
            list.insert(0, "_rowid_".into());
        }
        let sql = format!(
            "SELECT {} FROM {}{}{}",
            list.join(", "),
            plan.from,
            Self::where_sql(spec, Some(split)),
            crate::spec::order_suffix(Some(split), &SqliteKeys)
        );
        tracing::debug!(%sql, split = split.index, "reading split");
        let mut conn = self.pool.acquire().await.map_err(q("acquire connection"))?;
        let r = Self::read_on(&mut conn, &sql, schema, &plan, spec.fetch_size, &out).await;
        if r.is_err() {
            // Maybe mid-transaction: do not reuse the connection.
            conn.close_on_drop();
        }
        r
    }
}

/// Writes SQLite tables.
pub struct SqliteSink {
    pool: SqlitePool,
}

impl SqliteSink {
    /// Opens (creating if missing) the database file in WAL mode.
    pub async fn connect(url: &str) -> Result<Self, ConnectorError> {
        Ok(Self {
            pool: connect_pool(url, true).await?,
        })
    }

    /// A sink over an existing pool.
    pub fn from_pool(pool: SqlitePool) -> Self {
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
impl Sink for SqliteSink {
    async fn prepare(&self, spec: &WriteSpec, schema: &SchemaRef) -> Result<(), ConnectorError> {
        let (sch, name) = split_name(&spec.table)?;
        let names = spec.target_names(schema)?;
        let mut present = table_columns(&self.pool, &sch, &name).await?;
        let table = qualified(&sch, &name);
        let step = existing::step(spec, !present.is_empty())?;
        if !present.is_empty() && step != Step::Recreate {
            for n in &names {
                if !present.iter().any(|c| &c.name == n) {
                    return Err(ConnectorError::Schema(format!(
                        "column `{n}` does not exist in table `{}`",
                        spec.table
                    )));
                }
            }
        }
        if step == Step::RefuseIfNotEmpty {
            let sql = format!("SELECT 1 FROM {table} LIMIT 1");
            let row = sqlx::query(&sql)
                .fetch_optional(&self.pool)
                .await
                .map_err(q("looking for rows in the target"))?;
            if row.is_some() {
                return Err(existing::not_empty(&spec.table));
            }
        }
        if step == Step::Recreate {
            present.clear();
        }
        if let Some(sql) = existing::statement(step, &table, "DELETE FROM") {
            tracing::info!(%sql, "existing target table");
            sqlx::raw_sql(&sql)
                .execute(&self.pool)
                .await
                .map_err(q("emptying or dropping the target (`existing`)"))?;
        }
        if present.is_empty() {
            if !existing::creates(spec) {
                return Err(ConnectorError::NoSuchTable(spec.table.clone()));
            }
            let statements = match self.table_ddl(spec, schema)? {
                Some(ddl) => {
                    for n in &ddl.notes {
                        tracing::warn!(table = %spec.table, "{n}");
                    }
                    ddl.create.into_iter().map(|s| s.sql).collect()
                }
                None => {
                    let mut defs = Vec::with_capacity(names.len());
                    for (n, field) in names.iter().zip(schema.fields()) {
                        defs.push(format!(
                            "{} {}{}",
                            quote_ident(n),
                            sqlite_type_for(field)?,
                            if field.is_nullable() { "" } else { " NOT NULL" }
                        ));
                    }
                    if !spec.keys.is_empty() {
                        defs.push(format!(
                            "PRIMARY KEY ({})",
                            spec.keys
                                .iter()
                                .map(|k| quote_ident(k))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                    }
                    vec![format!(
                        "CREATE TABLE IF NOT EXISTS {} ({})",
                        qualified(&sch, &name),
                        defs.join(", ")
                    )]
                }
            };
            for ddl in statements {
                tracing::info!(%ddl, "creating target table");
                sqlx::raw_sql(&ddl)
                    .execute(&self.pool)
                    .await
                    .map_err(|e| ConnectorError::query(format!("`{ddl}`"), e))?;
            }
        }
        let (csch, cname) = split_name(&spec.checkpoint_table())?;
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {} (job TEXT NOT NULL, split INTEGER NOT NULL, \
             seq INTEGER NOT NULL, rows_read INTEGER NOT NULL, rows_written INTEGER NOT NULL, \
             last_key TEXT, updated_at TEXT NOT NULL, PRIMARY KEY (job, split))",
            qualified(&csch, &cname)
        );
        sqlx::raw_sql(&ddl)
            .execute(&self.pool)
            .await
            .map_err(q("creating the checkpoint table"))?;
        self.run_all(&spec.pre_sql, "preSql").await
    }

    async fn writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<Box<dyn SinkWriter>, ConnectorError> {
        Ok(Box::new(self.open_writer(spec, schema).await?))
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

    async fn change_target(
        &self,
        tables: &[(WriteSpec, ferry_change::Layout)],
        job: &str,
        split: u32,
    ) -> Result<Box<dyn crate::stream::ChangeTarget>, ConnectorError> {
        Ok(Box::new(self.open_change_target(tables, job, split).await?))
    }

    async fn checkpoint(
        &self,
        spec: &WriteSpec,
        job: &str,
        split: u32,
    ) -> Result<Option<Checkpoint>, ConnectorError> {
        let (sch, name) = split_name(&spec.checkpoint_table())?;
        // No checkpoint table yet (a stream looks before it prepares): nothing recorded.
        if table_columns(&self.pool, &sch, &name).await?.is_empty() {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT seq, rows_read, rows_written, last_key FROM {} WHERE job = ? AND split = ?",
            qualified(&sch, &name)
        ))
        .bind(job)
        .bind(i64::from(split))
        .fetch_optional(&self.pool)
        .await
        .map_err(q("reading the checkpoint table"))?;
        let Some(r) = row else { return Ok(None) };
        Checkpoint::from_stored(
            &spec.checkpoint_table(),
            r.get(0),
            r.get(1),
            r.get(2),
            r.get(3),
        )
        .map(Some)
    }

    async fn table_exists(&self, spec: &WriteSpec) -> Result<Option<bool>, ConnectorError> {
        let (sch, name) = split_name(&spec.table)?;
        Ok(Some(
            !table_columns(&self.pool, &sch, &name).await?.is_empty(),
        ))
    }

    async fn clear_tables(&self, specs: &[WriteSpec], drop: bool) -> Result<(), ConnectorError> {
        // The writer's connections do not enforce foreign keys: table by table.
        for spec in specs {
            let (sch, name) = split_name(&spec.table)?;
            if table_columns(&self.pool, &sch, &name).await?.is_empty() {
                continue;
            }
            let sql = format!(
                "{} {}",
                if drop { "DROP TABLE" } else { "DELETE FROM" },
                qualified(&sch, &name)
            );
            tracing::info!(%sql, "existing target table");
            sqlx::raw_sql(&sql)
                .execute(&self.pool)
                .await
                .map_err(|e| ConnectorError::query(format!("`existing`: `{sql}`"), e))?;
        }
        Ok(())
    }

    async fn delete_keys(
        &self,
        spec: &WriteSpec,
        columns: &[String],
        keys: &[Vec<String>],
    ) -> Result<u64, ConnectorError> {
        let (sch, name) = split_name(&spec.table)?;
        let table = qualified(&sch, &name);
        let mut deleted = 0;
        for chunk in keys.chunks(crate::repair::KEYS_PER_STATEMENT) {
            let sql = crate::repair::delete_sql(
                &table,
                columns,
                chunk.len(),
                |c| format!("CAST({} AS TEXT)", quote_ident(c)),
                |_| "?".into(),
            );
            let mut query = sqlx::query(&sql);
            for v in chunk.iter().flatten() {
                query = query.bind(v);
            }
            deleted += query
                .execute(&self.pool)
                .await
                .map_err(q("deleting rows by key"))?
                .rows_affected();
        }
        Ok(deleted)
    }

    async fn forget(&self, spec: &WriteSpec, job: &str) -> Result<(), ConnectorError> {
        let (sch, name) = split_name(&spec.checkpoint_table())?;
        sqlx::query(&format!(
            "DELETE FROM {} WHERE job = ?",
            qualified(&sch, &name)
        ))
        .bind(job)
        .execute(&self.pool)
        .await
        .map_err(q("clearing checkpoints"))?;
        Ok(())
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
        let (sch, _) = split_name(&spec.table)?;
        let master = format!(
            "{}.sqlite_master",
            quote_ident(sch.as_deref().unwrap_or("main"))
        );
        for step in steps {
            if let Some(crate::ddl::Object::Index(name) | crate::ddl::Object::ForeignKey(name)) =
                &step.creates
            {
                let found = sqlx::query(&format!("SELECT 1 FROM {master} WHERE name = ?1"))
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(q("looking up an index"))?;
                if found.is_some() {
                    continue;
                }
            }
            tracing::info!(sql = %step.sql, "target table DDL");
            sqlx::raw_sql(&step.sql)
                .execute(&self.pool)
                .await
                .map_err(|e| ConnectorError::query(format!("`{}`", step.sql), e))?;
        }
        Ok(())
    }

    async fn finish(&self, spec: &WriteSpec) -> Result<(), ConnectorError> {
        self.run_all(&spec.post_sql, "postSql").await
    }
}

/// Run first in a write transaction: a connection parses `ON CONFLICT` against the schema
/// it cached, and a statement that reads makes it see indexes other connections made since
/// (without it: "ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint").
pub(crate) async fn see_schema(conn: &mut sqlx::SqliteConnection) -> Result<(), ConnectorError> {
    conn.execute("SELECT 1 FROM sqlite_master LIMIT 1")
        .await
        .map_err(q("reading the schema"))?;
    Ok(())
}

/// The statement recording split `split` of `job` in `spec`'s checkpoint table.
fn checkpoint_sql(
    spec: &WriteSpec,
    job: &str,
    split: u32,
) -> Result<CheckpointSql, ConnectorError> {
    let (sch, name) = split_name(&spec.checkpoint_table())?;
    Ok(CheckpointSql {
        upsert: format!(
            "INSERT INTO {} (job, split, seq, rows_read, rows_written, last_key, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
             ON CONFLICT (job, split) DO UPDATE SET seq = excluded.seq, \
             rows_read = excluded.rows_read, rows_written = excluded.rows_written, \
             last_key = excluded.last_key, updated_at = excluded.updated_at",
            qualified(&sch, &name)
        ),
        job: job.to_string(),
        split,
    })
}

impl SqliteSink {
    async fn open_writer(
        &self,
        spec: &WriteSpec,
        schema: &SchemaRef,
    ) -> Result<SqliteWriter, ConnectorError> {
        let (sch, name) = split_name(&spec.table)?;
        let all = table_columns(&self.pool, &sch, &name).await?;
        if all.is_empty() {
            return Err(ConnectorError::NoSuchTable(spec.table.clone()));
        }
        let names = spec.target_names(schema)?;
        let mut cols = Vec::with_capacity(names.len());
        for (n, field) in names.iter().zip(schema.fields()) {
            let col = all.iter().find(|c| &c.name == n).ok_or_else(|| {
                ConnectorError::Schema(format!(
                    "column `{n}` does not exist in table `{}`",
                    spec.table
                ))
            })?;
            if !value::can_encode(field.data_type()) {
                return Err(ConnectorError::UnsupportedType {
                    column: n.clone(),
                    type_name: field.data_type().to_string(),
                });
            }
            cols.push(col.clone());
        }
        let list = names
            .iter()
            .map(|n| quote_ident(n))
            .collect::<Vec<_>>()
            .join(", ");
        let table = qualified(&sch, &name);
        let (verb, tail) = match spec.write_mode {
            WriteMode::Insert => ("INSERT", String::new()),
            WriteMode::Replace => ("INSERT OR REPLACE", String::new()),
            WriteMode::Update => {
                let keys = if spec.keys.is_empty() {
                    let mut pk: Vec<&Col> = all.iter().filter(|c| c.pk > 0).collect();
                    pk.sort_by_key(|c| c.pk);
                    pk.iter().map(|c| c.name.clone()).collect::<Vec<_>>()
                } else {
                    spec.keys.clone()
                };
                if keys.is_empty() {
                    return Err(ConnectorError::config(
                        "keys",
                        format!(
                            "writeMode update needs `keys` or a primary key on `{}`",
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
                let sets: Vec<String> = names
                    .iter()
                    .filter(|n| !keys.contains(n))
                    .map(|n| format!("{0} = excluded.{0}", quote_ident(n)))
                    .collect();
                let key_list = keys
                    .iter()
                    .map(|k| quote_ident(k))
                    .collect::<Vec<_>>()
                    .join(", ");
                let action = if sets.is_empty() {
                    "DO NOTHING".to_string()
                } else {
                    format!("DO UPDATE SET {}", sets.join(", "))
                };
                ("INSERT", format!(" ON CONFLICT ({key_list}) {action}"))
            }
        };
        let conn = self.pool.acquire().await.map_err(q("acquire connection"))?;
        Ok(SqliteWriter {
            conn: Some(conn),
            names,
            cols,
            head: format!("{verb} INTO {table} ({list}) VALUES "),
            tail,
            checkpoint: None,
        })
    }
}

/// Writes batches into one table over one connection.
struct SqliteWriter {
    conn: Option<PoolConnection<Sqlite>>,
    names: Vec<String>,
    cols: Vec<Col>,
    head: String,
    tail: String,
    checkpoint: Option<CheckpointSql>,
}

impl SqliteWriter {
    fn statement(&self, rows: usize) -> String {
        let one = format!("({})", vec!["?"; self.cols.len()].join(","));
        let mut s = String::with_capacity(self.head.len() + rows * (one.len() + 1) + 64);
        s.push_str(&self.head);
        for r in 0..rows {
            if r > 0 {
                s.push(',');
            }
            s.push_str(&one);
        }
        s.push_str(&self.tail);
        s
    }

    /// One transaction: `rows` and, if given, the checkpoint.
    async fn commit(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        rows: &[Vec<SqlVal>],
        checkpoint: Option<(&CheckpointSql, &Checkpoint)>,
    ) -> Result<(), ConnectorError> {
        let per = (MAX_VARIABLES / self.cols.len().max(1)).clamp(1, 500);
        (&mut **conn)
            .execute("BEGIN IMMEDIATE")
            .await
            .map_err(q("begin"))?;
        see_schema(conn).await?;
        let full = self.statement(per);
        for chunk in rows.chunks(per) {
            let sql = if chunk.len() == per {
                full.clone()
            } else {
                self.statement(chunk.len())
            };
            let mut query = sqlx::query(&sql);
            for v in chunk.iter().flatten() {
                query = match v {
                    SqlVal::Null => query.bind(None::<i64>),
                    SqlVal::Int(i) => query.bind(*i),
                    SqlVal::Real(f) => query.bind(*f),
                    SqlVal::Text(s) => query.bind(s.clone()),
                    SqlVal::Blob(b) => query.bind(b.clone()),
                };
            }
            query.execute(&mut **conn).await.map_err(q("INSERT"))?;
        }
        if let Some((sql, cp)) = checkpoint {
            sqlx::query(&sql.upsert)
                .bind(&sql.job)
                .bind(i64::from(sql.split))
                .bind(cp.seq as i64)
                .bind(cp.rows as i64)
                .bind(cp.written as i64)
                .bind(cp.position.as_ref().map(crate::spec::Position::to_stored))
                .execute(&mut **conn)
                .await
                .map_err(q("recording the checkpoint"))?;
        }
        (&mut **conn).execute("COMMIT").await.map_err(q("commit"))?;
        Ok(())
    }
}

#[async_trait]
impl SinkWriter for SqliteWriter {
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
        self.conn.take();
        Ok(())
    }
}

impl SqliteWriter {
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
        let mut dirty = Vec::new();
        let mut rows = Vec::with_capacity(batch.num_rows());
        'rows: for row in 0..batch.num_rows() {
            let mut vals = Vec::with_capacity(self.cols.len());
            for (i, col) in self.cols.iter().enumerate() {
                let decimal = matches!(col.kind, Kind::Decimal(..));
                let r = value::encode(batch.column(i).as_ref(), row, decimal).and_then(|v| {
                    // An INTEGER PRIMARY KEY takes a fresh rowid for NULL.
                    let rowid_alias = col.pk > 0 && col.decl.eq_ignore_ascii_case("INTEGER");
                    if v == SqlVal::Null && col.not_null && !rowid_alias {
                        Err("NULL into a NOT NULL column".to_string())
                    } else {
                        Ok(v)
                    }
                });
                match r {
                    Ok(v) => vals.push(v),
                    Err(reason) => {
                        let record = serde_json::Value::Object(
                            self.names
                                .iter()
                                .enumerate()
                                .map(|(j, n)| {
                                    (n.clone(), value::cell_json(batch.column(j).as_ref(), row))
                                })
                                .collect(),
                        );
                        dirty.push(DirtyRecord {
                            row,
                            column: Some(col.name.clone()),
                            reason: format!("column `{}` ({}): {reason}", col.name, col.decl),
                            record,
                        });
                        continue 'rows;
                    }
                }
            }
            rows.push(vals);
        }
        let stored = checkpoint.map(|c| Checkpoint {
            written: c.written + rows.len() as u64,
            ..c.clone()
        });
        let cp = self.checkpoint.as_ref().zip(stored.as_ref());
        if !rows.is_empty() || cp.is_some() {
            let mut conn = self
                .conn
                .take()
                .ok_or_else(|| ConnectorError::config("writer", "used after close"))?;
            if let Err(e) = self.commit(&mut conn, &rows, cp).await {
                conn.close_on_drop();
                return Err(e);
            }
            self.conn = Some(conn);
        }
        Ok(WriteOutcome {
            written: rows.len() as u64,
            dirty,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_types_map() {
        assert_eq!(Kind::from_decl("bigint"), Kind::Int);
        assert_eq!(
            Kind::from_decl("VARCHAR(10)"),
            Kind::Text { max_len: Some(10) }
        );
        assert_eq!(Kind::from_decl("decimal(10, 2)"), Kind::Decimal(10, 2));
        assert_eq!(Kind::from_decl("DECIMAL TEXT(38,9)"), Kind::Decimal(38, 9));
        assert_eq!(Kind::from_decl(""), Kind::Untyped);
        assert_eq!(Kind::from_decl("NUMERIC"), Kind::Untyped);
        assert_eq!(Kind::from_decl("datetime"), Kind::DateTime);
    }

    #[test]
    fn names_split() {
        assert_eq!(split_name("t").unwrap(), (None, "t".into()));
        assert_eq!(
            split_name("main.\"a b\"").unwrap(),
            (Some("main".into()), "a b".into())
        );
        assert!(split_name("a.b.c").is_err());
    }
}
