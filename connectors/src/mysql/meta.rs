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

pub(crate) fn get_str(row: &MySqlRow, i: usize) -> Option<String> {
    row.try_get_unchecked::<Option<Vec<u8>>, _>(i)
        .ok()
        .flatten()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The primary key of `table`, in key order, each column with whether a
/// read can be ordered and resumed by it: its values compare in SQL as
/// they sort (integers, decimals, strings, binary, dates and times; not
/// floats, ENUM or SET, which sort by their index, nor JSON) and come back
/// as a [`KeyValue`](crate::spec::KeyValue).
pub(crate) async fn primary_key(
    conn: &mut MySqlConnection,
    table: &str,
    all: &[ColMeta],
) -> Result<Vec<(String, bool)>, ConnectorError> {
    let (db, t) = split_table(table);
    let rows = sqlx::query(
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? AND INDEX_NAME = 'PRIMARY' \
         ORDER BY SEQ_IN_INDEX",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| ConnectorError::query(format!("reading the primary key of `{table}`"), e))?;
    Ok(rows
        .iter()
        .filter_map(|r| get_str(r, 0))
        .map(|name| {
            let ok = all.iter().any(|c| {
                c.name.eq_ignore_ascii_case(&name)
                    && !c.json
                    && matches!(
                        c.base.as_str(),
                        "tinyint"
                            | "smallint"
                            | "mediumint"
                            | "int"
                            | "integer"
                            | "bigint"
                            | "decimal"
                            | "numeric"
                            | "char"
                            | "varchar"
                            | "tinytext"
                            | "text"
                            | "mediumtext"
                            | "longtext"
                            | "binary"
                            | "varbinary"
                            | "date"
                            | "datetime"
                            | "timestamp"
                            | "year"
                    )
            });
            (name, ok)
        })
        .collect())
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

/// The column length the server reported for a result column (`decimal(p,s)`: p plus point
/// and sign; `bit(n)`: n; strings: bytes), and whether it is unsigned. sqlx keeps both but has
/// no accessor for them (its type name leaves `UNSIGNED` off decimals), so they are read from
/// the type's `Debug` text (sqlx is pinned; the MySQL tests cover the decimals).
fn length_and_sign(ti: &sqlx::mysql::MySqlTypeInfo) -> (Option<u32>, bool) {
    let text = format!("{ti:?}");
    let key = "max_size: Some(";
    let len = text
        .find(key)
        .map(|i| &text[i + key.len()..])
        .and_then(|rest| rest[..rest.find(')')?].parse().ok());
    (len, text.contains("UNSIGNED"))
}

/// What a query's column needs beyond its prepared metadata.
enum Probe {
    /// A decimal's scale: the digits after the point of `COALESCE(c, 0)`.
    Scale,
    /// A string's character set (`binary` for bytes), which the BINARY flag does not tell
    /// apart from a `_bin` collation.
    Charset,
}

/// The columns of a free-form query, without running it or creating anything.
///
/// `SELECT * FROM (<query>) AS ferry_q` is prepared, not executed (one statement: a prepared
/// statement cannot hold two), for each column's type, flags and length. What the metadata sqlx
/// keeps does not tell — a decimal's scale, whether a string is text or bytes — comes from one
/// row of expressions over the query cut to `LIMIT 0` (no row of it is read), also prepared.
pub(crate) async fn query_columns(
    conn: &mut MySqlConnection,
    query: &str,
) -> Result<Vec<ColMeta>, ConnectorError> {
    use sqlx::{Column, TypeInfo};
    let what = "describing querySql";
    let sql = format!("SELECT * FROM ({query}) AS ferry_q");
    let described = (&mut *conn)
        .describe(sql.as_str())
        .await
        .map_err(|e| ConnectorError::query(what, e))?;
    let mut cols = Vec::with_capacity(described.columns().len());
    let mut probes: Vec<(usize, Probe, String)> = Vec::new();
    for (i, c) in described.columns().iter().enumerate() {
        let ti = c.type_info();
        let type_name = ti.name();
        let (len, unsigned) = length_and_sign(ti);
        let unsigned = unsigned || type_name.ends_with(" UNSIGNED");
        let base = type_name.trim_end_matches(" UNSIGNED").to_ascii_lowercase();
        let col = quote_ident(c.name());
        let (base, args) = match base.as_str() {
            "boolean" => ("tinyint".to_string(), "1".to_string()),
            "bit" => ("bit".into(), len.unwrap_or(64).to_string()),
            "decimal" => {
                probes.push((i, Probe::Scale, format!("COALESCE(ferry_q.{col}, 0)")));
                ("decimal".into(), String::new())
            }
            "char" | "varchar" | "binary" | "varbinary" | "enum" | "set" | "tinytext" | "text"
            | "mediumtext" | "longtext" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
                probes.push((i, Probe::Charset, format!("CHARSET(ferry_q.{col})")));
                (base, String::new())
            }
            // A NULL literal: nothing to read but NULL.
            "null" => ("varbinary".into(), String::new()),
            _ => (base, String::new()),
        };
        cols.push(ColMeta {
            name: c.name().to_string(),
            base,
            args,
            unsigned,
            nullable: described.nullable(i).unwrap_or(true),
            charset: None,
            json: false,
        });
    }
    if probes.is_empty() {
        return Ok(cols);
    }
    let exprs = probes
        .iter()
        .map(|(_, _, e)| format!("CAST({e} AS CHAR)"))
        .collect::<Vec<_>>()
        .join(", ");
    let probe_sql = format!(
        "SELECT {exprs} FROM (SELECT 1 AS ferry_one) AS ferry_one \
         LEFT JOIN (SELECT * FROM ({query}) AS ferry_q0 LIMIT 0) AS ferry_q ON 1"
    );
    let row = sqlx::query(&probe_sql)
        .persistent(false)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| ConnectorError::query(what, e))?;
    for (k, (i, probe, _)) in probes.iter().enumerate() {
        let answer = get_str(&row, k).unwrap_or_default();
        let (len, _) = length_and_sign(described.columns()[*i].type_info());
        let c = &mut cols[*i];
        match probe {
            Probe::Scale => {
                let s = answer.split_once('.').map_or(0, |(_, f)| f.len()) as u32;
                // The length counts the digits, the point (when s > 0) and the sign.
                let p = len
                    .map(|l| l.saturating_sub(u32::from(s > 0) + u32::from(!c.unsigned)))
                    .filter(|p| (1..=65).contains(p) && *p >= s)
                    .unwrap_or(65);
                c.args = format!("{p},{s}");
            }
            Probe::Charset if answer.eq_ignore_ascii_case("binary") => {
                c.base = match c.base.as_str() {
                    "char" | "binary" => "binary",
                    "varchar" | "varbinary" => "varbinary",
                    _ => "longblob",
                }
                .into();
            }
            Probe::Charset => {
                let sized = matches!(c.base.as_str(), "char" | "binary" | "varchar" | "varbinary");
                c.base = if sized { "varchar" } else { "longtext" }.into();
                // The length is in bytes of the session's utf8mb4 (4 per character).
                if let Some(l) = len.filter(|_| sized) {
                    c.args = (l / 4).to_string();
                }
                c.charset = Some(answer);
            }
        }
    }
    Ok(cols)
}

/// The privileges a `SHOW GRANTS` line gives on every database (`ON *.*`) that are more than
/// reading, upper case; empty for grants of roles, of single databases or tables, or lines
/// that are not grants.
pub(crate) fn risky_global_grants(line: &str) -> Vec<String> {
    const RISKY: [&str; 11] = [
        "ALL",
        "ALL PRIVILEGES",
        "FILE",
        "SUPER",
        "INSERT",
        "UPDATE",
        "DELETE",
        "CREATE",
        "DROP",
        "ALTER",
        "CREATE USER",
    ];
    let line = line.trim();
    let Some(rest) = line
        .get(..6)
        .filter(|g| g.eq_ignore_ascii_case("GRANT "))
        .map(|_| &line[6..])
    else {
        return Vec::new();
    };
    let parts = split_top_level(rest, |w| w.eq_ignore_ascii_case("ON"));
    let [privileges, target] = parts.as_slice() else {
        return Vec::new();
    };
    let target = split_top_level(target, |w| w.eq_ignore_ascii_case("TO"));
    let target: String = target
        .first()
        .map(|t| {
            t.chars()
                .filter(|c| !c.is_whitespace() && *c != '`')
                .collect()
        })
        .unwrap_or_default();
    if target != "*.*" {
        return Vec::new();
    }
    let mut out: Vec<String> = Vec::new();
    for p in split_commas(privileges) {
        // `SELECT (a, b)`: the column list does not matter here.
        let name = p.split('(').next().unwrap_or("");
        let name = name
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        if RISKY.contains(&name.as_str()) && !out.contains(&name) {
            out.push(name);
        }
    }
    out
}

/// Splits `s` at whole words (outside quotes and parentheses) that `is_sep` accepts.
fn split_top_level(s: &str, is_sep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    let flush = |word: &mut String, parts: &mut Vec<String>| {
        if !word.is_empty() {
            if is_sep(word) {
                parts.push(String::new());
            } else if let Some(last) = parts.last_mut() {
                last.push_str(word);
            }
            word.clear();
        }
    };
    for c in s.chars() {
        match quote {
            Some(q) => {
                word.push(c);
                if c == q {
                    quote = None;
                }
            }
            None => match c {
                '\'' | '"' | '`' => {
                    quote = Some(c);
                    word.push(c);
                }
                '(' => {
                    depth += 1;
                    word.push(c);
                }
                ')' => {
                    depth = depth.saturating_sub(1);
                    word.push(c);
                }
                c if c.is_whitespace() && depth == 0 => {
                    flush(&mut word, &mut parts);
                    if let Some(last) = parts.last_mut() {
                        last.push(' ');
                    }
                }
                c => word.push(c),
            },
        }
    }
    flush(&mut word, &mut parts);
    parts.into_iter().map(|p| p.trim().to_string()).collect()
}

/// Splits a privilege list at commas outside parentheses.
fn split_commas(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s[start..].trim());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_grants_are_found() {
        assert_eq!(
            risky_global_grants(
                "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"
            ),
            vec!["ALL PRIVILEGES"]
        );
        assert_eq!(
            risky_global_grants("GRANT SELECT, INSERT, FILE ON *.* TO 'u'@'%'"),
            vec!["INSERT", "FILE"]
        );
        assert_eq!(
            risky_global_grants("grant select (a, b), super on `*`.`*` to u@'%'"),
            vec!["SUPER"]
        );
        // Not global, not risky, or not a privilege grant.
        assert!(risky_global_grants("GRANT USAGE ON *.* TO `ro`@`%`").is_empty());
        assert!(risky_global_grants("GRANT SELECT ON *.* TO `ro`@`%`").is_empty());
        assert!(risky_global_grants("GRANT ALL PRIVILEGES ON `db`.* TO `u`@`%`").is_empty());
        assert!(risky_global_grants("GRANT INSERT ON `db`.`t` TO `u`@`%`").is_empty());
        assert!(risky_global_grants(
            "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION"
        )
        .is_empty());
        assert!(risky_global_grants("GRANT `admin` TO `u`@`%`").is_empty());
        assert!(risky_global_grants("nonsense").is_empty());
        // A quoted name holding " ON " does not confuse the split.
        assert_eq!(
            risky_global_grants("GRANT DELETE ON *.* TO 'a on b'@'%'"),
            vec!["DELETE"]
        );
    }
}
