//! Column metadata (from information_schema or `SHOW COLUMNS`) and the MySQL → Arrow mapping.

use std::collections::HashMap;

use arrow_schema::{DataType, Field, TimeUnit};
use sqlx::mysql::MySqlRow;
use sqlx::{Executor, MySqlConnection, Row};

use super::{quote_ident, split_table};
use crate::error::ConnectorError;

/// One column as the server declares it.
#[derive(Debug, Clone)]
pub(crate) struct ColMeta {
    pub name: String,
    /// Base type, lower case (`int`, `varchar`, `decimal`, `json`, ...).
    pub base: String,
    /// Arguments in parentheses (`65,30`; `'a','b'` for enum/set).
    pub args: String,
    pub unsigned: bool,
    pub nullable: bool,
    /// `utf8mb3`, `utf8mb4`, `latin1`, ...
    pub charset: Option<String>,
    /// Column carries JSON (MySQL `JSON`, MariaDB `LONGTEXT` with a `json_valid` check).
    pub json: bool,
}

impl ColMeta {
    pub fn from_column_type(name: &str, column_type: &str, nullable: bool) -> Self {
        let ct = column_type.trim();
        let lower = ct.to_ascii_lowercase();
        let (base, args, rest) = match ct.find('(') {
            Some(open) => {
                let close = ct.rfind(')').unwrap_or(ct.len());
                (
                    lower[..open].trim().to_string(),
                    ct[open + 1..close.max(open + 1)].to_string(),
                    lower[close.min(lower.len())..].to_string(),
                )
            }
            None => {
                let mut it = lower.splitn(2, ' ');
                let b = it.next().unwrap_or("").to_string();
                (b, String::new(), it.next().unwrap_or("").to_string())
            }
        };
        let json = base == "json";
        ColMeta {
            name: name.to_string(),
            base,
            args,
            unsigned: rest.contains("unsigned"),
            nullable,
            charset: None,
            json,
        }
    }

    /// Numeric arguments (`decimal(p,s)`, `varchar(n)`).
    pub fn num_args(&self) -> Vec<u64> {
        self.args
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect()
    }

    /// `enum('a','b')` / `set(..)` members.
    pub fn members(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut inq = false;
        let mut chars = self.args.chars().peekable();
        while let Some(c) = chars.next() {
            if inq {
                if c == '\'' {
                    if chars.peek() == Some(&'\'') {
                        cur.push('\'');
                        chars.next();
                    } else {
                        inq = false;
                        out.push(std::mem::take(&mut cur));
                    }
                } else if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else {
                    cur.push(c);
                }
            } else if c == '\'' {
                inq = true;
            }
        }
        out
    }

    pub fn is_geometry(&self) -> bool {
        matches!(
            self.base.as_str(),
            "geometry"
                | "point"
                | "linestring"
                | "polygon"
                | "multipoint"
                | "multilinestring"
                | "multipolygon"
                | "geometrycollection"
                | "geomcollection"
        )
    }

    /// The Arrow field this column reads as.
    pub fn arrow_field(&self) -> Result<Field, ConnectorError> {
        let mut md: HashMap<String, String> = HashMap::new();
        let u = self.unsigned;
        let dt = match self.base.as_str() {
            "tinyint" | "bool" | "boolean" => {
                if u {
                    DataType::UInt8
                } else {
                    if self.base != "tinyint" || self.num_args().first() == Some(&1) {
                        md.insert("ferry.type".into(), "tinyint(1)".into());
                    }
                    DataType::Int8
                }
            }
            "smallint" => {
                if u {
                    DataType::UInt16
                } else {
                    DataType::Int16
                }
            }
            "mediumint" | "int" | "integer" => {
                if u {
                    DataType::UInt32
                } else {
                    DataType::Int32
                }
            }
            "bigint" => {
                if u {
                    DataType::UInt64
                } else {
                    DataType::Int64
                }
            }
            "decimal" | "numeric" | "dec" | "fixed" => {
                let a = self.num_args();
                let p = a.first().copied().unwrap_or(10) as u8;
                let s = a.get(1).copied().unwrap_or(0) as i8;
                if p <= 38 {
                    DataType::Decimal128(p, s)
                } else {
                    DataType::Decimal256(p, s)
                }
            }
            "float" => DataType::Float32,
            "double" | "real" | "double precision" => DataType::Float64,
            "char" | "varchar" => {
                if let Some(n) = self.num_args().first() {
                    md.insert("ferry.max_length".into(), n.to_string());
                }
                if self.json {
                    md.insert("ferry.type".into(), "json".into());
                }
                DataType::Utf8
            }
            "tinytext" | "text" | "mediumtext" | "longtext" | "json" => {
                if self.json {
                    md.insert("ferry.type".into(), "json".into());
                }
                DataType::Utf8
            }
            "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                DataType::Binary
            }
            "date" => DataType::Date32,
            "datetime" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "time" => DataType::Duration(TimeUnit::Microsecond),
            "year" => {
                md.insert("ferry.type".into(), "year".into());
                DataType::Int16
            }
            "enum" => {
                md.insert("ferry.type".into(), "enum".into());
                md.insert("ferry.enum_values".into(), self.members().join(","));
                DataType::Utf8
            }
            "set" => {
                md.insert("ferry.type".into(), "set".into());
                md.insert("ferry.set_values".into(), self.members().join(","));
                DataType::Utf8
            }
            "bit" => {
                md.insert("ferry.type".into(), "bit".into());
                let w = self.num_args().first().copied().unwrap_or(1);
                md.insert("ferry.bit_width".into(), w.to_string());
                DataType::UInt64
            }
            _ if self.is_geometry() => {
                md.insert("ferry.type".into(), "geometry".into());
                DataType::Binary
            }
            other => {
                return Err(ConnectorError::UnsupportedType {
                    column: self.name.clone(),
                    type_name: other.to_string(),
                })
            }
        };
        Ok(Field::new(&self.name, dt, self.nullable).with_metadata(md))
    }

    /// Largest value an integer column holds, and smallest.
    pub fn int_range(&self) -> Option<(i128, i128)> {
        let bits = match self.base.as_str() {
            "tinyint" | "bool" | "boolean" => 8,
            "smallint" => 16,
            "mediumint" => 24,
            "int" | "integer" => 32,
            "bigint" => 64,
            "year" => return Some((0, 2155)),
            "bit" => {
                let w = self.num_args().first().copied().unwrap_or(1) as u32;
                return Some((0, (1i128 << w) - 1));
            }
            _ => return None,
        };
        Some(if self.unsigned {
            (0, (1i128 << bits) - 1)
        } else {
            (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
        })
    }
}

fn get_str(row: &MySqlRow, i: usize) -> Option<String> {
    row.try_get_unchecked::<Option<Vec<u8>>, _>(i)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Every column of `table` (`db.table` or the connection's database), in table order.
pub(crate) async fn table_columns(
    conn: &mut MySqlConnection,
    table: &str,
) -> Result<Vec<ColMeta>, ConnectorError> {
    let (db, t) = split_table(table);
    let rows = sqlx::query(
        "SELECT COLUMN_NAME, COLUMN_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, DATA_TYPE \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
         ORDER BY ORDINAL_POSITION",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| ConnectorError::query(format!("reading the columns of `{table}`"), e))?;
    if rows.is_empty() {
        return Err(ConnectorError::NoSuchTable(table.to_string()));
    }
    // MariaDB's JSON is LONGTEXT with a CHECK (json_valid(`col`)).
    let checks: Vec<String> = sqlx::query(
        "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map(|rows| rows.iter().filter_map(|r| get_str(r, 0)).collect())
    .unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let name = get_str(r, 0).unwrap_or_default();
        let ct = get_str(r, 1).unwrap_or_default();
        let nullable = get_str(r, 2).as_deref() == Some("YES");
        let mut m = ColMeta::from_column_type(&name, &ct, nullable);
        m.charset = get_str(r, 3);
        let data_type = get_str(r, 4).unwrap_or_default().to_ascii_lowercase();
        let needle = format!("json_valid({})", quote_ident(&name)).to_ascii_lowercase();
        if data_type == "json"
            || checks
                .iter()
                .any(|c| c.to_ascii_lowercase().contains(&needle))
        {
            m.json = true;
        }
        out.push(m);
    }
    Ok(out)
}

/// The columns of `table` named in `columns` (all when empty), in the order asked.
pub(crate) fn pick_columns(
    table: &str,
    all: Vec<ColMeta>,
    columns: &[String],
) -> Result<Vec<ColMeta>, ConnectorError> {
    if columns.is_empty() || (columns.len() == 1 && columns[0] == "*") {
        return Ok(all);
    }
    columns
        .iter()
        .map(|c| {
            let want = c.trim_matches('`');
            all.iter()
                .find(|m| m.name.eq_ignore_ascii_case(want))
                .cloned()
                .ok_or_else(|| {
                    ConnectorError::Schema(format!("table `{table}` has no column `{want}`"))
                })
        })
        .collect()
}

/// The columns of a free-form query: materialized as an empty temporary table, described with
/// `SHOW COLUMNS`.
pub(crate) async fn query_columns(
    conn: &mut MySqlConnection,
    query: &str,
) -> Result<Vec<ColMeta>, ConnectorError> {
    let tmp = "`ferry_describe_tmp`";
    let what = "describing querySql";
    (&mut *conn)
        .execute(format!("DROP TEMPORARY TABLE IF EXISTS {tmp}").as_str())
        .await
        .map_err(|e| ConnectorError::query(what, e))?;
    let create =
        format!("CREATE TEMPORARY TABLE {tmp} AS SELECT * FROM ({query}) AS ferry_q LIMIT 0");
    (&mut *conn)
        .execute(create.as_str())
        .await
        .map_err(|e| ConnectorError::query(what, e))?;
    let rows = (&mut *conn)
        .fetch_all(format!("SHOW FULL COLUMNS FROM {tmp}").as_str())
        .await;
    let _ = (&mut *conn)
        .execute(format!("DROP TEMPORARY TABLE IF EXISTS {tmp}").as_str())
        .await;
    let rows = rows.map_err(|e| ConnectorError::query(what, e))?;
    Ok(rows
        .iter()
        .map(|r| {
            // Field, Type, Collation, Null, ...
            let name = get_str(r, 0).unwrap_or_default();
            let ct = get_str(r, 1).unwrap_or_default();
            let nullable = get_str(r, 3).as_deref() != Some("NO");
            ColMeta::from_column_type(&name, &ct, nullable)
        })
        .collect())
}
