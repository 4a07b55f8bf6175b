//! Binlog row events decoded into change batches (`ferry-change`'s layout), sans-IO.
//!
//! `mysql_common` decodes a row event's storage formats; this module turns its values into
//! the values a snapshot read of the same row gives ([`super::read`]): the same Arrow types
//! (built from the same column metadata), a TIMESTAMP as the instant it is, a DATETIME as
//! its wall clock, ENUM and SET as their member names, BIT as an integer, YEAR 0 as 0, text
//! in UTF-8 whatever the column's character set, BINARY(n) padded as the server pads it,
//! and zero dates as the source's `zeroDate` option says.
//!
//! The caller describes each table it streams ([`BinlogTable`], after its own policy check)
//! and binds it to the table id a table map event announces; rows of tables not bound are
//! not decoded. Errors name the table, the column and its type, never a value: a change
//! stream's errors may be logged on the cloud side.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use ferry_change::{Layout, Meta, Op};
use mysql_async::binlog::events::{RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;
use mysql_async::Value;

use super::meta::ColMeta;
use super::read::{narrow, zero_date, Builder, ZeroDate};
use super::value::{days_from_civil, parse_decimal128, parse_decimal256};
use crate::error::ConnectorError;

/// How a text column's bytes become UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charset {
    Utf8,
    /// MySQL's `latin1`: Windows-1252, its five unassigned bytes as the C1 controls.
    Latin1,
}

impl Charset {
    fn of(name: Option<&str>) -> Option<Charset> {
        match name.map(str::to_ascii_lowercase).as_deref() {
            None | Some("utf8mb4" | "utf8mb3" | "utf8" | "ascii" | "binary") => Some(Charset::Utf8),
            Some("latin1") => Some(Charset::Latin1),
            _ => None,
        }
    }
}

/// Windows-1252's characters for bytes 0x80..=0x9F (MySQL's latin1 keeps the five bytes
/// Windows leaves unassigned as C1 controls).
const CP1252_HIGH: [char; 32] = [
    '\u{20AC}', '\u{0081}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}', '\u{2021}',
    '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{008D}', '\u{017D}', '\u{008F}',
    '\u{0090}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}', '\u{2013}', '\u{2014}',
    '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}', '\u{009D}', '\u{017E}', '\u{0178}',
];

fn latin1(b: &[u8]) -> String {
    b.iter()
        .map(|&x| match x {
            0x80..=0x9F => CP1252_HIGH[(x - 0x80) as usize],
            _ => char::from(x),
        })
        .collect()
}

/// One read column: its metadata and how its binlog values are read.
#[derive(Debug, Clone)]
struct Col {
    meta: ColMeta,
    charset: Charset,
    /// ENUM / SET members, in declaration order.
    members: Vec<String>,
    /// BINARY(n)'s n: the binlog drops the zero bytes the server pads it with.
    binary_len: Option<usize>,
    /// Integer width in bits (for unsigned values the binlog sent as signed).
    bits: u32,
}

impl Col {
    fn new(table: &str, meta: ColMeta) -> Result<Self, ConnectorError> {
        let charset = if matches!(
            meta.base.as_str(),
            "char"
                | "varchar"
                | "tinytext"
                | "text"
                | "mediumtext"
                | "longtext"
                | "enum"
                | "set"
                | "json"
        ) {
            Charset::of(meta.charset.as_deref()).ok_or_else(|| {
                ConnectorError::Schema(format!(
                    "{table}: column `{}` is in character set {}, which a change stream does \
                     not decode (utf8mb4, utf8mb3, ascii and latin1 are)",
                    meta.name,
                    meta.charset.as_deref().unwrap_or("?")
                ))
            })?
        } else {
            Charset::Utf8
        };
        let members = if matches!(meta.base.as_str(), "enum" | "set") {
            meta.members()
        } else {
            Vec::new()
        };
        let binary_len =
            (meta.base == "binary").then(|| meta.num_args().first().copied().unwrap_or(1) as usize);
        let bits = match meta.base.as_str() {
            "tinyint" | "bool" | "boolean" => 8,
            "smallint" => 16,
            "mediumint" => 24,
            "int" | "integer" => 32,
            _ => 64,
        };
        Ok(Col {
            meta,
            charset,
            members,
            binary_len,
            bits,
        })
    }

    /// Whether a table map's column type is one this column's values can have: another
    /// type means the table changed after the changes being read were made.
    fn fits(&self, t: ColumnType) -> bool {
        use ColumnType::*;
        let m = &self.meta;
        match m.base.as_str() {
            "tinyint" | "bool" | "boolean" => t == MYSQL_TYPE_TINY,
            "smallint" => t == MYSQL_TYPE_SHORT,
            "mediumint" => t == MYSQL_TYPE_INT24,
            "int" | "integer" => t == MYSQL_TYPE_LONG,
            "bigint" => t == MYSQL_TYPE_LONGLONG,
            "decimal" | "numeric" | "dec" | "fixed" => t == MYSQL_TYPE_NEWDECIMAL,
            "float" => t == MYSQL_TYPE_FLOAT,
            "double" | "real" | "double precision" => t == MYSQL_TYPE_DOUBLE,
            "date" => matches!(t, MYSQL_TYPE_NEWDATE | MYSQL_TYPE_DATE),
            "datetime" => matches!(t, MYSQL_TYPE_DATETIME2 | MYSQL_TYPE_DATETIME),
            "timestamp" => matches!(t, MYSQL_TYPE_TIMESTAMP2 | MYSQL_TYPE_TIMESTAMP),
            "time" => matches!(t, MYSQL_TYPE_TIME2 | MYSQL_TYPE_TIME),
            "year" => t == MYSQL_TYPE_YEAR,
            "bit" => t == MYSQL_TYPE_BIT,
            "enum" => matches!(t, MYSQL_TYPE_ENUM | MYSQL_TYPE_STRING),
            "set" => matches!(t, MYSQL_TYPE_SET | MYSQL_TYPE_STRING),
            "char" | "varchar" | "binary" | "varbinary" => {
                matches!(
                    t,
                    MYSQL_TYPE_STRING | MYSQL_TYPE_VARCHAR | MYSQL_TYPE_VAR_STRING
                )
            }
            "json" => matches!(t, MYSQL_TYPE_JSON | MYSQL_TYPE_BLOB),
            "tinytext" | "text" | "mediumtext" | "longtext" | "tinyblob" | "blob"
            | "mediumblob" | "longblob" => matches!(
                t,
                MYSQL_TYPE_BLOB
                    | MYSQL_TYPE_TINY_BLOB
                    | MYSQL_TYPE_MEDIUM_BLOB
                    | MYSQL_TYPE_LONG_BLOB
            ),
            _ if m.is_geometry() => matches!(t, MYSQL_TYPE_GEOMETRY | MYSQL_TYPE_BLOB),
            _ => false,
        }
    }

    fn int(&self, v: &Value) -> Result<i128, String> {
        let n = self.raw_int(v)?;
        // A signed MEDIUMINT arrives as its 24 bits read unsigned.
        Ok(
            if !self.meta.unsigned
                && self.bits < 64
                && n >= 1i128 << (self.bits - 1)
                && n < 1i128 << self.bits
            {
                n - (1i128 << self.bits)
            } else {
                n
            },
        )
    }

    fn raw_int(&self, v: &Value) -> Result<i128, String> {
        match v {
            Value::Int(i) => {
                let i = i128::from(*i);
                // Without the binlog's signedness metadata an unsigned value arrives signed.
                Ok(if self.meta.unsigned && i < 0 {
                    i + (1i128 << self.bits)
                } else {
                    i
                })
            }
            Value::UInt(u) => Ok(i128::from(*u)),
            Value::Bytes(b) if self.meta.base == "bit" => {
                if b.len() > 8 {
                    return Err(format!("a BIT value of {} bytes", b.len()));
                }
                Ok(i128::from(
                    b.iter().fold(0u64, |a, &x| (a << 8) | u64::from(x)),
                ))
            }
            Value::Bytes(b) => {
                let n = std::str::from_utf8(b)
                    .ok()
                    .and_then(|t| t.trim().parse::<i128>().ok())
                    .ok_or("an integer that does not parse")?;
                // mysql_common reads YEAR as 1900 + the stored byte: 0 (the zero year) is 1900,
                // which YEAR cannot hold otherwise.
                Ok(if self.meta.base == "year" && n == 1900 {
                    0
                } else {
                    n
                })
            }
            other => Err(format!("an integer column holds {}", kind(other))),
        }
    }

    fn text(&self, v: &Value) -> Result<String, String> {
        match v {
            Value::Int(i) if self.meta.base == "enum" => Ok(usize::try_from(*i)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| self.members.get(i))
                .cloned()
                .unwrap_or_default()),
            Value::Bytes(b) if self.meta.base == "set" => {
                if b.len() > 8 {
                    return Err(format!("a SET value of {} bytes", b.len()));
                }
                let mask = b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x));
                Ok(self
                    .members
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1u64 << i) != 0)
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join(","))
            }
            Value::Bytes(b) => match self.charset {
                Charset::Utf8 => crate::utf8::text(b).map(str::to_string),
                Charset::Latin1 => Ok(latin1(b)),
            },
            other => Err(format!("a text column holds {}", kind(other))),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::NULL => "NULL",
        Value::Bytes(_) => "bytes",
        Value::Int(_) => "a signed integer",
        Value::UInt(_) => "an unsigned integer",
        Value::Float(_) => "a FLOAT",
        Value::Double(_) => "a DOUBLE",
        Value::Date(..) => "a date",
        Value::Time(..) => "a time",
    }
}

/// Microseconds of a wall-clock date and time, or `None` for a zero date.
fn wall_clock(y: u16, m: u8, d: u8, hh: u8, mi: u8, ss: u8, us: u32) -> Option<i64> {
    if m == 0 || d == 0 {
        return None;
    }
    let days = days_from_civil(i64::from(y), u32::from(m), u32::from(d));
    Some(
        days * 86_400_000_000
            + ((i64::from(hh) * 60 + i64::from(mi)) * 60 + i64::from(ss)) * 1_000_000
            + i64::from(us),
    )
}

/// A TIMESTAMP's instant in microseconds (`sec` or `sec.micros` text, or seconds), or
/// `None` for the zero timestamp.
fn instant(v: &Value) -> Result<Option<i64>, String> {
    let (sec, us) = match v {
        Value::Int(s) => (*s, 0),
        Value::Bytes(b) => {
            let t = std::str::from_utf8(b).map_err(|_| "a TIMESTAMP that is not text")?;
            let (s, f) = t.split_once('.').unwrap_or((t, "0"));
            let sec: i64 = s.parse().map_err(|_| "a TIMESTAMP that does not parse")?;
            let us: i64 = f.parse().map_err(|_| "a TIMESTAMP that does not parse")?;
            (sec, us)
        }
        other => return Err(format!("a TIMESTAMP column holds {}", kind(other))),
    };
    Ok((sec != 0 || us != 0).then(|| sec * 1_000_000 + us))
}

/// Appends binlog value `v` of column `c`. `Ok(true)`: a zero date read as NULL.
fn append(b: &mut Builder, c: &Col, v: &BinlogValue<'_>, zero: ZeroDate) -> Result<bool, String> {
    let v =
        match v {
            BinlogValue::Value(Value::NULL) => {
                b.append_null();
                return Ok(false);
            }
            BinlogValue::Value(v) => v,
            BinlogValue::Jsonb(j) => {
                let json = serde_json::Value::try_from(j.clone())
                    .map_err(|_| "a JSON value that does not convert".to_string())?;
                return match b {
                    Builder::Str(s) => {
                        s.append_value(json.to_string());
                        Ok(false)
                    }
                    _ => Err("a JSON value for a column that is not text".into()),
                };
            }
            BinlogValue::JsonDiff(_) => return Err(
                "a partial JSON update (binlog_row_value_options = PARTIAL_JSON is not supported)"
                    .into(),
            ),
        };
    let zero_as_null = |b: &mut Builder| zero_date(zero).map(|_| b.append_null()).map(|_| true);
    match b {
        Builder::I8(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::I16(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::I32(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::I64(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::U8(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::U16(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::U32(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::U64(b) => b.append_value(narrow(c.int(v)?)?),
        Builder::D128(b, _, s) => match v {
            Value::Bytes(t) => b.append_value(parse_decimal128(t, *s)?),
            other => return Err(format!("a DECIMAL column holds {}", kind(other))),
        },
        Builder::D256(b, _, s) => match v {
            Value::Bytes(t) => b.append_value(parse_decimal256(crate::utf8::text(t)?, *s)?),
            other => return Err(format!("a DECIMAL column holds {}", kind(other))),
        },
        Builder::F32(b) => match v {
            Value::Float(f) => b.append_value(*f),
            other => return Err(format!("a FLOAT column holds {}", kind(other))),
        },
        Builder::F64(b) => match v {
            Value::Double(f) => b.append_value(*f),
            Value::Float(f) => b.append_value(f64::from(*f)),
            other => return Err(format!("a DOUBLE column holds {}", kind(other))),
        },
        Builder::Str(b) => b.append_value(c.text(v)?),
        Builder::Bin(b) => match v {
            Value::Bytes(x) => match c.binary_len {
                Some(n) if x.len() < n => {
                    let mut padded = x.clone();
                    padded.resize(n, 0);
                    b.append_value(padded)
                }
                _ => b.append_value(x),
            },
            other => return Err(format!("a binary column holds {}", kind(other))),
        },
        Builder::Date(b) => match v {
            Value::Date(y, m, d, ..) => match wall_clock(*y, *m, *d, 0, 0, 0, 0) {
                Some(us) => b.append_value(narrow(i128::from(us.div_euclid(86_400_000_000)))?),
                None => return zero_as_null_date(b, zero),
            },
            other => return Err(format!("a DATE column holds {}", kind(other))),
        },
        Builder::Ts(tb, _) => {
            let us = if c.meta.base == "timestamp" {
                instant(v)?
            } else {
                match v {
                    Value::Date(y, m, d, hh, mi, ss, us) => {
                        wall_clock(*y, *m, *d, *hh, *mi, *ss, *us)
                    }
                    other => return Err(format!("a DATETIME column holds {}", kind(other))),
                }
            };
            match us {
                Some(us) => tb.append_value(us),
                None => return zero_as_null(b),
            }
        }
        Builder::Dur(b) => match v {
            Value::Time(neg, days, hh, mi, ss, us) => {
                let t = (((i64::from(*days) * 24 + i64::from(*hh)) * 60 + i64::from(*mi)) * 60
                    + i64::from(*ss))
                    * 1_000_000
                    + i64::from(*us);
                b.append_value(if *neg { -t } else { t })
            }
            other => return Err(format!("a TIME column holds {}", kind(other))),
        },
    }
    Ok(false)
}

fn zero_as_null_date(
    b: &mut arrow_array::builder::Date32Builder,
    zero: ZeroDate,
) -> Result<bool, String> {
    zero_date(zero)?;
    b.append_null();
    Ok(true)
}

/// A table as a change stream reads it: the snapshot read's columns, where they are in the
/// table's rows, and the primary key.
#[derive(Debug, Clone)]
pub(crate) struct BinlogTable {
    /// As the job names it.
    pub name: String,
    /// Its database and table, as table map events name them.
    pub db: String,
    pub table: String,
    cols: Vec<Col>,
    /// Each read column's position in the table's rows.
    at: Vec<usize>,
    schema: SchemaRef,
    key: Vec<usize>,
}

impl BinlogTable {
    /// `read` (the read's columns, from `all`: every column of the table in order) of table
    /// `db`.`table`, whose primary key is `pk`.
    pub fn new(
        name: &str,
        db: &str,
        table: &str,
        all: &[ColMeta],
        read: Vec<ColMeta>,
        pk: &[String],
    ) -> Result<Self, ConnectorError> {
        let at = read
            .iter()
            .map(|c| {
                all.iter()
                    .position(|a| a.name.eq_ignore_ascii_case(&c.name))
                    .ok_or_else(|| {
                        ConnectorError::Schema(format!("{name} has no column `{}`", c.name))
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let fields = read
            .iter()
            .map(ColMeta::arrow_field)
            .collect::<Result<Vec<_>, _>>()?;
        let key: Option<Vec<usize>> = pk
            .iter()
            .map(|k| read.iter().position(|c| c.name.eq_ignore_ascii_case(k)))
            .collect();
        let cols = read
            .into_iter()
            .map(|m| Col::new(name, m))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name: name.to_string(),
            db: db.to_string(),
            table: table.to_string(),
            cols,
            at,
            schema: Arc::new(Schema::new(fields)),
            key: key.unwrap_or_default(),
        })
    }

    /// Only the columns a row of `count` columns has: the catalog is read when a table map
    /// event arrives, which can be after later DDL committed (an ADD COLUMN whose column the
    /// rows before it do not carry).
    pub fn as_of(&self, count: usize) -> BinlogTable {
        let kept: Vec<usize> = (0..self.cols.len())
            .filter(|&i| self.at[i] < count)
            .collect();
        if kept.len() == self.cols.len() {
            return self.clone();
        }
        let key = self
            .key
            .iter()
            .map(|k| kept.iter().position(|i| i == k))
            .collect::<Option<Vec<usize>>>()
            .unwrap_or_default();
        BinlogTable {
            name: self.name.clone(),
            db: self.db.clone(),
            table: self.table.clone(),
            cols: kept.iter().map(|&i| self.cols[i].clone()).collect(),
            at: kept.iter().map(|&i| self.at[i]).collect(),
            schema: Arc::new(Schema::new(
                kept.iter()
                    .map(|&i| self.schema.fields()[i].clone())
                    .collect::<Vec<_>>(),
            )),
            key,
        }
    }
}

/// One bound table's pending rows.
struct Bound {
    table: BinlogTable,
    layout: Layout,
    /// The table map's column count this binding was made for.
    width: usize,
    data: Vec<Builder>,
    old: Vec<Builder>,
    meta: Meta,
}

impl Bound {
    fn new(table: BinlogTable, tme: &TableMapEvent<'_>) -> Result<Self, ConnectorError> {
        let width = tme.columns_count() as usize;
        for (c, &at) in table.cols.iter().zip(&table.at) {
            let t = tme.get_column_type(at).ok().flatten();
            if !t.is_some_and(|t| c.fits(t)) {
                return Err(ConnectorError::Schema(format!(
                    "{}: column `{}` is {} now, and had another type when the changes being \
                     read were made; the stream stops here",
                    table.name, c.meta.name, c.meta.base
                )));
            }
        }
        let layout = Layout::new(&table.schema, table.key.clone())
            .map_err(|e| ConnectorError::Schema(format!("{}: {e}", table.name)))?;
        let mut b = Self {
            meta: Meta::new(&layout),
            layout,
            width,
            data: Vec::new(),
            old: Vec::new(),
            table,
        };
        b.data = b.builders(None)?;
        b.old = b.builders(Some(&b.table.key.clone()))?;
        Ok(b)
    }

    fn builders(&self, only: Option<&[usize]>) -> Result<Vec<Builder>, ConnectorError> {
        let pick: Vec<usize> = match only {
            Some(k) => k.to_vec(),
            None => (0..self.table.cols.len()).collect(),
        };
        pick.iter()
            .map(|&i| Builder::new(self.table.schema.field(i), 256))
            .collect()
    }

    fn value_error(&self, col: usize, what: &str) -> ConnectorError {
        let c = &self.table.cols[col].meta;
        ConnectorError::Value {
            column: c.name.clone(),
            message: format!("a change of {}: {what} (type {})", self.table.name, c.base),
        }
    }

    /// The value of read column `col` in `row`; a column the row image lacks is an error
    /// (the binlog's row image is FULL, which the stream checks when it starts).
    fn cell<'r>(
        &self,
        row: &'r BinlogRow,
        col: usize,
    ) -> Result<&'r BinlogValue<'r>, ConnectorError> {
        row.as_ref(self.table.at[col]).ok_or_else(|| {
            self.value_error(
                col,
                "the row image lacks the column (binlog_row_image must be FULL)",
            )
        })
    }

    /// Appends one row: `row` with `op`, and `old`'s key (an update that moved the key).
    fn push(
        &mut self,
        op: Op,
        row: &BinlogRow,
        old: Option<&BinlogRow>,
        zero: ZeroDate,
    ) -> Result<u64, ConnectorError> {
        let mut zeros = 0;
        for i in 0..self.table.cols.len() {
            if op == Op::Delete && !self.table.key.contains(&i) {
                self.data[i].append_null();
                continue;
            }
            let v = self.cell(row, i)?;
            match append(&mut self.data[i], &self.table.cols[i], v, zero) {
                Ok(z) => zeros += u64::from(z),
                Err(e) => return Err(self.value_error(i, &e)),
            }
        }
        for (j, &k) in self.table.key.clone().iter().enumerate() {
            match old {
                Some(old) => {
                    let v = self.cell(old, k)?;
                    append(&mut self.old[j], &self.table.cols[k], v, zero)
                        .map_err(|e| self.value_error(k, &e))?;
                }
                None => self.old[j].append_null(),
            }
        }
        self.meta.push(op, &[]);
        Ok(zeros)
    }

    /// Whether `before` and `after` differ in a key column.
    fn key_changed(&self, before: &BinlogRow, after: &BinlogRow) -> bool {
        self.table.key.iter().any(|&k| {
            let at = self.table.at[k];
            before.as_ref(at) != after.as_ref(at)
        })
    }

    fn take(&mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if self.meta.is_empty() {
            return Ok(None);
        }
        let data = self
            .data
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let old = self
            .old
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        let meta = std::mem::replace(&mut self.meta, Meta::new(&self.layout));
        self.layout
            .assemble(data, meta, old)
            .map(Some)
            .map_err(|e| ConnectorError::Schema(format!("{}: {e}", self.table.name)))
    }
}

/// A finished change batch: the stream's table index, its layout, the rows.
pub(crate) type Done = (usize, Layout, RecordBatch);

/// Decodes the row events of bound tables into change batches that keep commit order
/// across tables.
pub(crate) struct BinlogDecoder {
    batch_rows: usize,
    zero: ZeroDate,
    /// Per stream table: its binding.
    tables: Vec<Option<Bound>>,
    /// Table ids of the bound tables.
    ids: HashMap<u64, usize>,
    /// The table whose rows are pending.
    last: Option<usize>,
    /// Zero dates read as NULL, in all.
    pub zero_dates: u64,
}

impl BinlogDecoder {
    pub fn new(tables: usize, batch_rows: usize, zero: ZeroDate) -> Self {
        Self {
            batch_rows: batch_rows.max(1),
            zero,
            tables: (0..tables).map(|_| None).collect(),
            ids: HashMap::new(),
            last: None,
            zero_dates: 0,
        }
    }

    /// Whether table id `id` is bound to stream table `index` with rows `width` wide (a
    /// table map event that needs no new description).
    pub fn is_bound(&self, id: u64, index: usize, width: usize) -> bool {
        self.ids.get(&id) == Some(&index)
            && self.tables[index]
                .as_ref()
                .is_some_and(|b| b.width == width)
    }

    /// The stream table table id `id` is bound to.
    pub fn index_of(&self, id: u64) -> Option<usize> {
        self.ids.get(&id).copied()
    }

    /// Binds table id `id` (announced by `tme`) to stream table `index` described as
    /// `table`. Rows pending under the previous binding are finished first.
    pub fn bind(
        &mut self,
        id: u64,
        index: usize,
        table: BinlogTable,
        tme: &TableMapEvent<'_>,
    ) -> Result<Vec<Done>, ConnectorError> {
        let done = self.flush()?;
        let bound = Bound::new(table, tme)?;
        self.ids.retain(|_, i| *i != index);
        self.ids.insert(id, index);
        self.tables[index] = Some(bound);
        Ok(done)
    }

    /// Forgets stream table `index`'s binding (its table changed: the next table map event
    /// describes it again).
    pub fn unbind(&mut self, index: usize) -> Result<Vec<Done>, ConnectorError> {
        let done = self.flush()?;
        self.ids.retain(|_, i| *i != index);
        if let Some(t) = self.tables.get_mut(index) {
            *t = None;
        }
        Ok(done)
    }

    /// Decodes a rows event of a bound table (`tme`: its table map event).
    pub fn rows(
        &mut self,
        ev: &RowsEventData<'_>,
        tme: &TableMapEvent<'_>,
    ) -> Result<Vec<Done>, ConnectorError> {
        let Some(index) = self.index_of(ev.table_id()) else {
            return Ok(Vec::new());
        };
        let mut done = Vec::new();
        if self.last.is_some_and(|l| l != index) {
            done = self.flush()?;
        }
        self.last = Some(index);
        let zero = self.zero;
        let op = match ev {
            RowsEventData::WriteRowsEvent(_) | RowsEventData::WriteRowsEventV1(_) => Op::Insert,
            RowsEventData::UpdateRowsEvent(_) | RowsEventData::UpdateRowsEventV1(_) => Op::Update,
            RowsEventData::DeleteRowsEvent(_) | RowsEventData::DeleteRowsEventV1(_) => Op::Delete,
            RowsEventData::PartialUpdateRowsEvent(_) => {
                return Err(ConnectorError::Schema(
                    "partial JSON updates (binlog_row_value_options = PARTIAL_JSON) are not \
                     supported by change streams"
                        .into(),
                ))
            }
        };
        for row in ev.rows(tme) {
            let Some(bound) = self.tables[index].as_mut() else {
                break;
            };
            let (before, after) = row.map_err(|e| {
                ConnectorError::Schema(format!(
                    "{}: a row event does not decode: {e}",
                    bound.table.name
                ))
            })?;
            let missing = || {
                ConnectorError::Schema(format!(
                    "{}: a row event without its row image",
                    bound.table.name
                ))
            };
            let zeros = match op {
                Op::Insert => {
                    bound.push(Op::Insert, after.as_ref().ok_or_else(missing)?, None, zero)?
                }
                Op::Delete => {
                    bound.push(Op::Delete, before.as_ref().ok_or_else(missing)?, None, zero)?
                }
                Op::Update => {
                    let before = before.as_ref().ok_or_else(missing)?;
                    let after = after.as_ref().ok_or_else(missing)?;
                    let old = bound.key_changed(before, after).then_some(before);
                    bound.push(Op::Update, after, old, zero)?
                }
            };
            self.zero_dates += zeros;
            if bound.meta.len() >= self.batch_rows {
                if let Some(batch) = bound.take()? {
                    done.push((index, bound.layout.clone(), batch));
                }
            }
        }
        Ok(done)
    }

    /// Finishes the pending rows (at a commit, or before another table's rows).
    pub fn flush(&mut self) -> Result<Vec<Done>, ConnectorError> {
        let Some(index) = self.last.take() else {
            return Ok(Vec::new());
        };
        let Some(bound) = self.tables.get_mut(index).and_then(Option::as_mut) else {
            return Ok(Vec::new());
        };
        Ok(bound
            .take()?
            .map(|batch| (index, bound.layout.clone(), batch))
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, ty: &str) -> Col {
        Col::new("t", ColMeta::from_column_type(name, ty, true)).unwrap()
    }

    #[test]
    fn values_read_as_a_snapshot_reads_them() {
        let tiu = col("a", "tinyint(3) unsigned");
        assert_eq!(tiu.int(&Value::Int(-1)).unwrap(), 255);
        let year = col("y", "year(4)");
        assert_eq!(year.int(&Value::Bytes(b"1900".to_vec())).unwrap(), 0);
        assert_eq!(year.int(&Value::Bytes(b"2155".to_vec())).unwrap(), 2155);
        let bit = col("b", "bit(64)");
        assert_eq!(
            bit.int(&Value::Bytes(vec![0xFF; 8])).unwrap(),
            i128::from(u64::MAX)
        );
        let en = col("e", "enum('a','b','c')");
        assert_eq!(en.text(&Value::Int(3)).unwrap(), "c");
        assert_eq!(en.text(&Value::Int(0)).unwrap(), "");
        let st = col("s", "set('x','y','z')");
        assert_eq!(st.text(&Value::Bytes(vec![0b101])).unwrap(), "x,z");
        let mut l1 = col("l", "varchar(10)");
        l1.charset = Charset::Latin1;
        assert_eq!(
            l1.text(&Value::Bytes(vec![b'a', 0x80, 0xE9, 0x81]))
                .unwrap(),
            "a€é\u{81}"
        );
        assert_eq!(
            instant(&Value::Bytes(b"1.000001".to_vec())).unwrap(),
            Some(1_000_001)
        );
        assert_eq!(instant(&Value::Bytes(b"0".to_vec())).unwrap(), None);
        assert_eq!(wall_clock(1970, 1, 2, 0, 0, 1, 5), Some(86_401_000_005));
        assert_eq!(wall_clock(2024, 0, 1, 0, 0, 0, 0), None);
    }

    #[test]
    fn other_character_sets_are_refused_by_name() {
        let mut m = ColMeta::from_column_type("g", "varchar(10)", true);
        m.charset = Some("gbk".into());
        let e = Col::new("t", m).unwrap_err().to_string();
        assert!(e.contains("gbk") && e.contains("`g`"), "{e}");
    }
}
