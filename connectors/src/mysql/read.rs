//! The reader: schema, split planning (DataX splitPk) and streaming reads into Arrow.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, Date32Builder, Decimal128Builder, Decimal256Builder, DurationMicrosecondBuilder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, Int8Builder,
    StringBuilder, TimestampMicrosecondBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
    UInt8Builder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use futures::TryStreamExt;
use sqlx::mysql::MySqlRow;
use sqlx::{Column, Executor, MySqlConnection, Row, TypeInfo};
use tokio::sync::mpsc;

use super::meta::{pick_columns, primary_key, query_columns, table_columns};
use super::value::{decode_datetime, decode_time, parse_decimal128, parse_decimal256, Temporal};
use super::{quote_ident, quote_table, MySqlSource};
use crate::error::ConnectorError;
use crate::spec::{int_splits, ReadSpec, Split, TableSchema};
use crate::traits::Source;

/// How a zero date (`0000-00-00`, or a zero month/day) is read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ZeroDate {
    /// As NULL, counted and logged once per column.
    #[default]
    Null,
    /// The read fails, naming the column and the row.
    Error,
}

/// Reader options beyond the job's [`ReadSpec`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MySqlReadOptions {
    pub zero_date: ZeroDate,
}

/// The keys of a job's `parameter` that are MySQL reader options.
pub const OPTIONS: &[&str] = &["zeroDate"];

impl MySqlReadOptions {
    /// The options in a connector options object (`{"zeroDate": "null"}`);
    /// keys that are not MySQL options are left to others.
    pub fn from_options(
        options: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, ConnectorError> {
        let mut o = Self::default();
        if let Some(v) = options.get("zeroDate") {
            o.zero_date = match v.as_str() {
                Some("null") => ZeroDate::Null,
                Some("error") => ZeroDate::Error,
                _ => {
                    return Err(ConnectorError::config(
                        "zeroDate",
                        format!("`{v}`: expected null or error"),
                    ))
                }
            };
        }
        Ok(o)
    }
}

fn table_of(spec: &ReadSpec) -> Result<&str, ConnectorError> {
    spec.table
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| ConnectorError::config("table", "a table or querySql is required"))
}

/// Whether a field reads a DATE / DATETIME / TIMESTAMP (which may hold zero dates).
fn is_temporal(f: &Field) -> bool {
    matches!(f.data_type(), DataType::Date32 | DataType::Timestamp(..))
}

/// The binary protocol sends zero dates as NULL: each temporal column gets a companion flag
/// `c IS NOT NULL` (1 for a zero date, 0 for a real NULL: in a select list the server tests
/// the stored value, which a zero date is), appended after the columns in field order. It
/// costs the server a third of what `CAST(c AS CHAR) IS NOT NULL` did.
fn zero_flags(schema: &Schema, qualifier: &str) -> String {
    schema
        .fields()
        .iter()
        .filter(|f| is_temporal(f))
        .map(|f| format!(", ({qualifier}{} IS NOT NULL)", quote_ident(f.name())))
        .collect()
}

fn column_list(schema: &Schema) -> String {
    let cols = schema
        .fields()
        .iter()
        .map(|f| quote_ident(f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    format!("{cols}{}", zero_flags(schema, ""))
}

/// The SELECT a split runs.
pub(crate) fn select_sql(
    spec: &ReadSpec,
    schema: &Schema,
    split: &Split,
) -> Result<String, ConnectorError> {
    if let Some(q) = spec.query_sql.as_deref().filter(|q| !q.trim().is_empty()) {
        let flags = zero_flags(schema, "ferry_q.");
        return Ok(if flags.is_empty() {
            q.to_string()
        } else {
            format!("SELECT ferry_q.*{flags} FROM ({q}) AS ferry_q")
        });
    }
    let table = table_of(spec)?;
    let conds = crate::spec::read_conditions(spec, Some(split), &super::MySqlKeys);
    Ok(format!(
        "SELECT {} FROM {}{}{}",
        column_list(schema),
        quote_table(table),
        crate::spec::where_suffix(&conds),
        crate::spec::order_suffix(Some(split), &super::MySqlKeys)
    ))
}

/// Opens a read-only transaction on `conn`: every statement of a source runs in one, whatever
/// the session (see `READER_READ_ONLY`) or the login allows.
async fn begin_read(conn: &mut MySqlConnection) -> Result<(), ConnectorError> {
    let start = "START TRANSACTION READ ONLY";
    (&mut *conn)
        .execute(start)
        .await
        .map_err(|e| ConnectorError::query(start, e))?;
    Ok(())
}

/// Ends what [`begin_read`] opened; on error the connection is not reused (it may be mid-result
/// or mid-transaction).
async fn end_read<T>(
    mut conn: sqlx::pool::PoolConnection<sqlx::MySql>,
    result: Result<T, ConnectorError>,
) -> Result<T, ConnectorError> {
    match result {
        Ok(v) => {
            if let Err(e) = (&mut *conn).execute("ROLLBACK").await {
                conn.close_on_drop();
                return Err(ConnectorError::query("ending the read-only transaction", e));
            }
            Ok(v)
        }
        Err(e) => {
            conn.close_on_drop();
            Err(e)
        }
    }
}

impl MySqlSource {
    async fn acquire(&self) -> Result<sqlx::pool::PoolConnection<sqlx::MySql>, ConnectorError> {
        self.pool
            .acquire()
            .await
            .map_err(|e| ConnectorError::query("acquiring a connection", e))
    }

    async fn columns_on(
        conn: &mut MySqlConnection,
        spec: &ReadSpec,
    ) -> Result<Vec<super::meta::ColMeta>, ConnectorError> {
        begin_read(conn).await?;
        if let Some(q) = spec.query_sql.as_deref().filter(|q| !q.trim().is_empty()) {
            query_columns(conn, q.trim().trim_end_matches(';')).await
        } else {
            let table = table_of(spec)?;
            let all = table_columns(conn, table).await?;
            pick_columns(table, all, &spec.columns)
        }
    }

    async fn plan_on(
        conn: &mut MySqlConnection,
        spec: &ReadSpec,
        max_splits: usize,
    ) -> Result<Vec<Split>, ConnectorError> {
        let table = table_of(spec)?;
        begin_read(conn).await?;
        let all = table_columns(conn, table).await?;
        let pk = primary_key(conn, table, &all).await?;
        let key = match crate::spec::split_column(spec, &pk) {
            None => None,
            Some(k) => {
                let col = pick_columns(table, all, &[k.to_string()])?.remove(0);
                let is_int = matches!(
                    col.base.as_str(),
                    "tinyint" | "smallint" | "mediumint" | "int" | "integer" | "bigint"
                );
                if !is_int {
                    tracing::info!(table, split_pk = k, column_type = %col.base, "splitPk is not an integer column; reading in one split");
                }
                is_int.then_some(col)
            }
        };
        let order = crate::spec::key_order(&pk, key.as_ref().map(|c| c.name.as_str()));
        let Some(col) = key.filter(|_| max_splits > 1) else {
            return Ok(vec![Split::all().ordered(order)]);
        };
        let pk = col.name.as_str();
        let c = quote_ident(&col.name);
        let mut sql = format!(
            "SELECT CAST(MIN({c}) AS CHAR), CAST(MAX({c}) AS CHAR) FROM {}",
            quote_table(table)
        );
        if let Some(w) = spec
            .where_clause
            .as_deref()
            .filter(|w| !w.trim().is_empty())
        {
            sql.push_str(&format!(" WHERE ({w})"));
        }
        // Prepared: one statement, whatever `where` holds.
        let row = sqlx::query(&sql)
            .persistent(false)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| ConnectorError::query(format!("finding the range of `{pk}`"), e))?;
        let get = |i: usize| -> Result<Option<i128>, ConnectorError> {
            let raw: Option<Vec<u8>> = row
                .try_get_unchecked(i)
                .map_err(|e| ConnectorError::query("reading MIN/MAX", e))?;
            raw.map(|b| {
                String::from_utf8_lossy(&b)
                    .trim()
                    .parse::<i128>()
                    .map_err(|e| ConnectorError::query("reading MIN/MAX", e))
            })
            .transpose()
        };
        let (min, max) = match (get(0)?, get(1)?) {
            (Some(a), Some(b)) => (a, b),
            _ => (0, 0),
        };
        Ok(int_splits(&col.name, min, max, max_splits, order))
    }

    /// Global privileges beyond reading, from `SHOW GRANTS`.
    async fn risky_grants(&self) -> Result<Vec<String>, ConnectorError> {
        let mut conn = self.acquire().await?;
        let rows = (&mut *conn)
            .fetch_all("SHOW GRANTS")
            .await
            .map_err(|e| ConnectorError::query("SHOW GRANTS", e))?;
        let mut risky: Vec<String> = Vec::new();
        for r in &rows {
            let line: Option<Vec<u8>> = r
                .try_get_unchecked(0)
                .map_err(|e| ConnectorError::query("SHOW GRANTS", e))?;
            let line = String::from_utf8_lossy(&line.unwrap_or_default()).into_owned();
            for p in super::meta::risky_global_grants(&line) {
                if !risky.contains(&p) {
                    risky.push(p);
                }
            }
        }
        Ok(risky)
    }
}

#[async_trait]
impl Source for MySqlSource {
    async fn estimate_rows(&self, spec: &ReadSpec) -> Option<u64> {
        if spec.query_sql.is_some() || spec.where_clause.is_some() {
            return None;
        }
        let (db, table) = crate::mysql::split_table(spec.table.as_deref()?);
        let mut conn = self.acquire().await.ok()?;
        let r = async {
            begin_read(&mut conn).await?;
            // InnoDB's TABLE_ROWS is a statistic (can be off by tens of percent).
            sqlx::query_scalar::<_, Option<u64>>(
                "SELECT CAST(TABLE_ROWS AS UNSIGNED) FROM information_schema.TABLES \
                 WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            )
            .bind(db)
            .bind(table)
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| ConnectorError::query("reading table statistics", e))
        }
        .await;
        let n = end_read(conn, r).await.ok()?;
        n.filter(|n| *n > 0)
    }

    async fn schema(&self, spec: &ReadSpec) -> Result<SchemaRef, ConnectorError> {
        let mut conn = self.acquire().await?;
        let r = Self::columns_on(&mut conn, spec).await;
        let cols = end_read(conn, r).await?;
        let mut fields = cols
            .iter()
            .map(|c| c.arrow_field())
            .collect::<Result<Vec<Field>, _>>()?;
        if self.options.zero_date == ZeroDate::Null {
            // A NOT NULL date column may still hold zero dates, which read as NULL.
            for f in fields.iter_mut().filter(|f| is_temporal(f)) {
                *f = f.clone().with_nullable(true);
            }
        }
        Ok(Arc::new(Schema::new(fields)))
    }

    async fn list_tables(&self) -> Result<crate::traits::TableListing, ConnectorError> {
        let mut conn = self.acquire().await?;
        let r = async {
            begin_read(&mut conn).await?;
            super::describe::list_tables(&mut conn).await
        }
        .await;
        end_read(conn, r).await
    }

    async fn describe(&self, spec: &ReadSpec) -> Result<Option<TableSchema>, ConnectorError> {
        if spec
            .query_sql
            .as_deref()
            .is_some_and(|q| !q.trim().is_empty())
        {
            return Ok(None);
        }
        let table = table_of(spec)?;
        let mut conn = self.acquire().await?;
        let r = async {
            begin_read(&mut conn).await?;
            let all = table_columns(&mut conn, table).await?;
            super::describe::table_schema(&mut conn, table, &all).await
        }
        .await;
        end_read(conn, r).await.map(Some)
    }

    async fn plan(&self, spec: &ReadSpec, max_splits: usize) -> Result<Vec<Split>, ConnectorError> {
        let query = spec
            .query_sql
            .as_deref()
            .is_some_and(|q| !q.trim().is_empty());
        if query || spec.table.is_none() {
            return Ok(vec![Split::all()]);
        }
        let mut conn = self.acquire().await?;
        let r = Self::plan_on(&mut conn, spec, max_splits).await;
        end_read(conn, r).await
    }

    async fn read(
        &self,
        spec: &ReadSpec,
        schema: SchemaRef,
        split: &Split,
        out: mpsc::Sender<RecordBatch>,
    ) -> Result<u64, ConnectorError> {
        let sql = select_sql(spec, &schema, split)?;
        let mut conn = self.acquire().await?;
        let begin = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ";
        (&mut *conn)
            .execute(begin)
            .await
            .map_err(|e| ConnectorError::query(begin, e))?;
        let start = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY";
        (&mut *conn)
            .execute(start)
            .await
            .map_err(|e| ConnectorError::query(start, e))?;
        let result = read_rows(&mut conn, &sql, spec, self.options, schema, out).await;
        match result {
            Ok(n) => {
                if let Err(e) = (&mut *conn).execute("ROLLBACK").await {
                    conn.close_on_drop();
                    return Err(ConnectorError::query("ending the snapshot", e));
                }
                Ok(n)
            }
            Err(e) => {
                // The result set may be half read (cancelled, bad value): dropping the
                // connection now ends the transaction (and its locks) without draining the
                // rest of the rows.
                drop(conn.detach());
                Err(e)
            }
        }
    }

    async fn open_changes(
        &self,
        spec: &crate::stream::ChangeSpec,
    ) -> Result<Box<dyn crate::stream::ChangeStream>, ConnectorError> {
        Ok(Box::new(self.open_change_stream(spec).await?))
    }

    async fn privilege_warnings(&self) -> Vec<String> {
        let instead = "it should be a read-only user with SELECT on the listed tables only";
        match self.risky_grants().await {
            Ok(risky) if risky.is_empty() => Vec::new(),
            Ok(risky) => vec![format!(
                "the MySQL login holds {} on *.* (every database): a job's SQL could do more \
                 than read (FILE reads and writes server files, SUPER bypasses read-only \
                 settings); {instead}",
                risky.join(", ")
            )],
            Err(e) => vec![format!(
                "the MySQL login's privileges could not be checked ({}); {instead}",
                e.peer_message()
            )],
        }
    }
}

/// How a column arrives on the wire (binary protocol).
#[derive(Debug, Clone, Copy)]
enum Wire {
    Int { unsigned: bool },
    F32,
    F64,
    DateTime,
    Time,
    Bytes,
}

fn wire_of(type_name: &str) -> Wire {
    let unsigned = type_name.contains("UNSIGNED");
    match type_name.split(' ').next().unwrap_or("") {
        "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "BOOLEAN" | "YEAR" => {
            Wire::Int { unsigned }
        }
        "FLOAT" => Wire::F32,
        "DOUBLE" => Wire::F64,
        "DATE" | "DATETIME" | "TIMESTAMP" => Wire::DateTime,
        "TIME" => Wire::Time,
        _ => Wire::Bytes,
    }
}

pub(crate) enum Builder {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    U8(UInt8Builder),
    U16(UInt16Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    D128(Decimal128Builder, u8, i8),
    D256(Decimal256Builder, u8, i8),
    F32(Float32Builder),
    F64(Float64Builder),
    Str(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Dur(DurationMicrosecondBuilder),
}

impl Builder {
    pub(crate) fn new(f: &Field, cap: usize) -> Result<Self, ConnectorError> {
        Ok(match f.data_type() {
            DataType::Int8 => Builder::I8(Int8Builder::with_capacity(cap)),
            DataType::Int16 => Builder::I16(Int16Builder::with_capacity(cap)),
            DataType::Int32 => Builder::I32(Int32Builder::with_capacity(cap)),
            DataType::Int64 => Builder::I64(Int64Builder::with_capacity(cap)),
            DataType::UInt8 => Builder::U8(UInt8Builder::with_capacity(cap)),
            DataType::UInt16 => Builder::U16(UInt16Builder::with_capacity(cap)),
            DataType::UInt32 => Builder::U32(UInt32Builder::with_capacity(cap)),
            DataType::UInt64 => Builder::U64(UInt64Builder::with_capacity(cap)),
            DataType::Decimal128(p, s) => {
                Builder::D128(Decimal128Builder::with_capacity(cap), *p, *s)
            }
            DataType::Decimal256(p, s) => {
                Builder::D256(Decimal256Builder::with_capacity(cap), *p, *s)
            }
            DataType::Float32 => Builder::F32(Float32Builder::with_capacity(cap)),
            DataType::Float64 => Builder::F64(Float64Builder::with_capacity(cap)),
            DataType::Utf8 => Builder::Str(StringBuilder::with_capacity(cap, cap * 16)),
            DataType::Binary => Builder::Bin(BinaryBuilder::with_capacity(cap, cap * 16)),
            DataType::Date32 => Builder::Date(Date32Builder::with_capacity(cap)),
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                Builder::Ts(TimestampMicrosecondBuilder::with_capacity(cap), tz.clone())
            }
            DataType::Duration(TimeUnit::Microsecond) => {
                Builder::Dur(DurationMicrosecondBuilder::with_capacity(cap))
            }
            other => {
                return Err(ConnectorError::UnsupportedType {
                    column: f.name().clone(),
                    type_name: format!("Arrow {other}"),
                })
            }
        })
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            Builder::I8(b) => b.append_null(),
            Builder::I16(b) => b.append_null(),
            Builder::I32(b) => b.append_null(),
            Builder::I64(b) => b.append_null(),
            Builder::U8(b) => b.append_null(),
            Builder::U16(b) => b.append_null(),
            Builder::U32(b) => b.append_null(),
            Builder::U64(b) => b.append_null(),
            Builder::D128(b, ..) => b.append_null(),
            Builder::D256(b, ..) => b.append_null(),
            Builder::F32(b) => b.append_null(),
            Builder::F64(b) => b.append_null(),
            Builder::Str(b) => b.append_null(),
            Builder::Bin(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Ts(b, _) => b.append_null(),
            Builder::Dur(b) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> Result<ArrayRef, ConnectorError> {
        Ok(match self {
            Builder::I8(b) => Arc::new(b.finish()),
            Builder::I16(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::I64(b) => Arc::new(b.finish()),
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U16(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::D128(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
            Builder::D256(b, p, s) => Arc::new(b.finish().with_precision_and_scale(*p, *s)?),
            Builder::F32(b) => Arc::new(b.finish()),
            Builder::F64(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
            Builder::Bin(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Ts(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Builder::Dur(b) => Arc::new(b.finish()),
        })
    }
}

/// Integer from a binary-protocol little-endian value.
fn le_int(b: &[u8], unsigned: bool) -> Result<i128, String> {
    if b.is_empty() || b.len() > 8 {
        return Err(format!("bad integer length {}", b.len()));
    }
    let mut buf = [0u8; 8];
    buf[..b.len()].copy_from_slice(b);
    if !unsigned && b[b.len() - 1] & 0x80 != 0 {
        for x in buf.iter_mut().skip(b.len()) {
            *x = 0xff;
        }
        Ok(i64::from_le_bytes(buf) as i128)
    } else {
        Ok(u64::from_le_bytes(buf) as i128)
    }
}

use crate::utf8::text;

/// The integer value of a raw cell (integers, BIT, or integer text).
fn int_value(raw: &[u8], wire: Wire, bit: bool) -> Result<i128, String> {
    match wire {
        Wire::Int { unsigned } => le_int(raw, unsigned),
        Wire::Bytes if bit => {
            if raw.len() > 8 {
                return Err(format!("BIT value of {} bytes", raw.len()));
            }
            Ok(raw.iter().fold(0u64, |a, &x| (a << 8) | x as u64) as i128)
        }
        Wire::Bytes => text(raw)?
            .trim()
            .parse::<i128>()
            .map_err(|e| format!("`{}` is not an integer: {e}", String::from_utf8_lossy(raw))),
        other => Err(format!("cannot read {other:?} as an integer")),
    }
}

fn float_value(raw: &[u8], wire: Wire) -> Result<f64, String> {
    match wire {
        Wire::F32 if raw.len() == 4 => <[u8; 4]>::try_from(raw)
            .map(|b| f32::from_le_bytes(b) as f64)
            .map_err(|_| "FLOAT value is not 4 bytes".to_string()),
        Wire::F64 if raw.len() == 8 => <[u8; 8]>::try_from(raw)
            .map(f64::from_le_bytes)
            .map_err(|_| "DOUBLE value is not 8 bytes".to_string()),
        Wire::Int { unsigned } => le_int(raw, unsigned).map(|v| v as f64),
        Wire::Bytes => text(raw)?
            .trim()
            .parse::<f64>()
            .map_err(|e| format!("`{}` is not a number: {e}", String::from_utf8_lossy(raw))),
        other => Err(format!("cannot read {other:?} as a float")),
    }
}

pub(crate) fn narrow<T: TryFrom<i128>>(v: i128) -> Result<T, String> {
    T::try_from(v).map_err(|_| format!("{v} is out of range"))
}

struct Column_ {
    name: String,
    bit: bool,
    /// Zero dates read as NULL since the last batch, and in all.
    zero_dates: u64,
    zero_dates_total: u64,
}

/// Appends one raw cell. `Ok(true)` means a zero date was read as NULL.
fn append(
    b: &mut Builder,
    c: &Column_,
    wire: Wire,
    raw: &[u8],
    zero: ZeroDate,
) -> Result<bool, String> {
    let iv = || int_value(raw, wire, c.bit);
    match b {
        Builder::I8(b) => b.append_value(narrow(iv()?)?),
        Builder::I16(b) => b.append_value(narrow(iv()?)?),
        Builder::I32(b) => b.append_value(narrow(iv()?)?),
        Builder::I64(b) => b.append_value(narrow(iv()?)?),
        Builder::U8(b) => b.append_value(narrow(iv()?)?),
        Builder::U16(b) => b.append_value(narrow(iv()?)?),
        Builder::U32(b) => b.append_value(narrow(iv()?)?),
        Builder::U64(b) => b.append_value(narrow(iv()?)?),
        Builder::D128(b, _, s) => {
            let v = match wire {
                Wire::Bytes => parse_decimal128(raw, *s)?,
                Wire::Int { .. } => iv()?
                    .checked_mul(10i128.pow((*s).max(0) as u32))
                    .ok_or("decimal overflow")?,
                other => return Err(format!("cannot read {other:?} as a decimal")),
            };
            b.append_value(v)
        }
        Builder::D256(b, _, s) => {
            let v = match wire {
                Wire::Bytes => parse_decimal256(text(raw)?, *s)?,
                Wire::Int { .. } => parse_decimal256(&iv()?.to_string(), *s)?,
                other => return Err(format!("cannot read {other:?} as a decimal")),
            };
            b.append_value(v)
        }
        Builder::F32(b) => match wire {
            Wire::F32 => b.append_value(f32::from_le_bytes(
                raw.try_into().map_err(|_| "bad FLOAT length")?,
            )),
            _ => b.append_value(float_value(raw, wire)? as f32),
        },
        Builder::F64(b) => b.append_value(float_value(raw, wire)?),
        Builder::Str(b) => match wire {
            Wire::Bytes => b.append_value(text(raw)?),
            Wire::Int { unsigned } => b.append_value(le_int(raw, unsigned)?.to_string()),
            _ => b.append_value(float_value(raw, wire)?.to_string()),
        },
        Builder::Bin(b) => b.append_value(raw),
        Builder::Date(b) => match decode_datetime(raw)? {
            Temporal::Micros(us) => b.append_value(narrow(us.div_euclid(86_400_000_000) as i128)?),
            Temporal::Zero => return zero_date(zero).map(|_| b.append_null()).map(|_| true),
        },
        Builder::Ts(b, _) => match decode_datetime(raw)? {
            Temporal::Micros(us) => b.append_value(us),
            Temporal::Zero => return zero_date(zero).map(|_| b.append_null()).map(|_| true),
        },
        Builder::Dur(b) => b.append_value(decode_time(raw)?),
    }
    Ok(false)
}

pub(crate) fn zero_date(z: ZeroDate) -> Result<(), String> {
    match z {
        ZeroDate::Null => Ok(()),
        ZeroDate::Error => Err("zero date (0000-00-00) cannot be read (zero_date = error)".into()),
    }
}

async fn read_rows(
    conn: &mut MySqlConnection,
    sql: &str,
    spec: &ReadSpec,
    options: super::MySqlReadOptions,
    schema: SchemaRef,
    out: mpsc::Sender<RecordBatch>,
) -> Result<u64, ConnectorError> {
    let fetch = spec.fetch_size.max(1);
    let mut cols: Vec<Column_> = schema
        .fields()
        .iter()
        .map(|f| Column_ {
            name: f.name().clone(),
            bit: f.metadata().get("ferry.type").map(String::as_str) == Some("bit"),
            zero_dates: 0,
            zero_dates_total: 0,
        })
        .collect();
    let key_idx = spec.split_pk.as_deref().and_then(|k| {
        cols.iter()
            .position(|c| c.name.eq_ignore_ascii_case(k.trim_matches('`')))
    });
    let new_builders = |cap: usize| -> Result<Vec<Builder>, ConnectorError> {
        schema
            .fields()
            .iter()
            .map(|f| Builder::new(f, cap))
            .collect()
    };
    let mut builders = new_builders(fetch.min(8192))?;
    let nfields = cols.len();
    let mut flag_of: Vec<Option<usize>> = vec![None; nfields];
    let mut nflags = 0;
    for (i, f) in schema.fields().iter().enumerate() {
        if is_temporal(f) {
            flag_of[i] = Some(nfields + nflags);
            nflags += 1;
        }
    }
    let mut wires: Option<Vec<Wire>> = None;
    let mut in_batch = 0usize;
    let mut total = 0u64;
    let mut stream = sqlx::query(sql).persistent(false).fetch(&mut *conn);
    while let Some(row) = stream
        .try_next()
        .await
        .map_err(|e| ConnectorError::query("reading rows", e))?
    {
        let row: MySqlRow = row;
        if wires.is_none() {
            if row.columns().len() != nfields + nflags {
                return Err(ConnectorError::Schema(format!(
                    "the query returns {} columns, the schema has {}",
                    row.columns().len() - nflags.min(row.columns().len()),
                    nfields
                )));
            }
            wires = Some(
                row.columns()
                    .iter()
                    .map(|c| wire_of(c.type_info().name()))
                    .collect(),
            );
        }
        let w = wires.as_ref().expect("set above");
        for i in 0..nfields {
            let raw: Option<&[u8]> =
                row.try_get_unchecked(i)
                    .map_err(|e| ConnectorError::Value {
                        column: cols[i].name.clone(),
                        message: e.to_string(),
                    })?;
            let zero_flag = || -> bool {
                flag_of[i]
                    .and_then(|k| row.try_get_unchecked::<Option<&[u8]>, _>(k).ok().flatten())
                    .and_then(|b| int_value(b, w[flag_of[i].unwrap_or(0)], false).ok())
                    .is_some_and(|v| v != 0)
            };
            let outcome = match raw {
                None if zero_flag() => zero_date(options.zero_date).map(|_| {
                    builders[i].append_null();
                    true
                }),
                None => {
                    builders[i].append_null();
                    Ok(false)
                }
                Some(raw) => append(&mut builders[i], &cols[i], w[i], raw, options.zero_date),
            };
            {
                match outcome {
                    Ok(false) => {}
                    Ok(true) => cols[i].zero_dates += 1,
                    Err(message) => {
                        let key = key_idx
                            .and_then(|k| {
                                let raw: Option<&[u8]> = row.try_get_unchecked(k).ok()?;
                                int_value(raw?, w[k], false).ok()
                            })
                            .map(|k| format!(", key {k}"))
                            .unwrap_or_default();
                        return Err(ConnectorError::Value {
                            column: cols[i].name.clone(),
                            message: format!("row {}{key}: {message}", total + 1),
                        });
                    }
                }
            }
        }
        in_batch += 1;
        total += 1;
        if in_batch == fetch {
            let arrays = builders
                .iter_mut()
                .map(Builder::finish)
                .collect::<Result<Vec<_>, _>>()?;
            let batch = tag_zero_dates(RecordBatch::try_new(schema.clone(), arrays)?, &mut cols)?;
            out.send(batch)
                .await
                .map_err(|_| ConnectorError::Cancelled)?;
            builders = new_builders(fetch.min(8192))?;
            in_batch = 0;
        }
    }
    drop(stream);
    if in_batch > 0 {
        let arrays = builders
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let batch = tag_zero_dates(RecordBatch::try_new(schema.clone(), arrays)?, &mut cols)?;
        out.send(batch)
            .await
            .map_err(|_| ConnectorError::Cancelled)?;
    }
    for c in &cols {
        if c.zero_dates_total > 0 {
            tracing::warn!(column = %c.name, count = c.zero_dates_total, "zero dates (0000-00-00) read as NULL");
        }
    }
    Ok(total)
}

/// What the summary calls a zero date read as NULL.
pub(crate) const ZERO_DATE_AS_NULL: &str = "zero date read as NULL";

/// Tags `batch` with the zero dates read as NULL since the last batch, per column.
fn tag_zero_dates(batch: RecordBatch, cols: &mut [Column_]) -> Result<RecordBatch, ConnectorError> {
    let mut changes = crate::spec::Changes::default();
    for c in cols.iter_mut() {
        changes.add(&c.name, ZERO_DATE_AS_NULL, c.zero_dates);
        c.zero_dates_total += c.zero_dates;
        c.zero_dates = 0;
    }
    crate::traits::tag_changes(batch, &changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SplitBounds;

    #[test]
    fn little_endian_integers() {
        assert_eq!(le_int(&[0xff], false).unwrap(), -1);
        assert_eq!(le_int(&[0xff], true).unwrap(), 255);
        assert_eq!(le_int(&[0xff; 8], true).unwrap(), u64::MAX as i128);
        assert_eq!(le_int(&[0, 0x80], false).unwrap(), i16::MIN as i128);
        assert_eq!(
            int_value(&[0xff; 8], Wire::Bytes, true).unwrap(),
            u64::MAX as i128
        );
    }

    #[test]
    fn split_predicates() {
        let schema = Schema::new(vec![Field::new("id", DataType::Int64, true)]);
        let spec = ReadSpec {
            table: Some("db.t".into()),
            where_clause: Some("x > 1".into()),
            ..Default::default()
        };
        let split = Split {
            index: 0,
            total: 2,
            ..Split::whole(SplitBounds::IntRange {
                column: "id".into(),
                lo: Some(-5),
                hi: Some(10),
            })
        }
        .ordered(Some(crate::spec::SplitOrder {
            columns: vec!["id".into()],
            unique: true,
        }));
        assert_eq!(
            select_sql(&spec, &schema, &split).unwrap(),
            "SELECT `id` FROM `db`.`t` WHERE (x > 1) AND `id` >= -5 AND `id` < 10 ORDER BY `id`"
        );
        assert_eq!(
            select_sql(&spec, &schema, &split.resumed_after(crate::spec::Position::int(3))).unwrap(),
            "SELECT `id` FROM `db`.`t` WHERE (x > 1) AND `id` >= -5 AND `id` < 10 AND `id` > 3 ORDER BY `id`"
        );
    }
}
