//! A table's keys, indexes, foreign keys, defaults and identity, from `information_schema`
//! (MySQL 8 and MariaDB 10.3+ write defaults differently; both are read).

use std::collections::BTreeMap;

use sqlx::MySqlConnection;

use super::meta::ColMeta;
use super::split_table;
use crate::error::ConnectorError;
use crate::spec::TableRef;
use ferry_model::{
    ColumnDef, ColumnDefault, FkAction, ForeignKey, Identity, Index, IndexColumn, TableSchema,
};

// Integer columns are cast to CHAR in these queries: the binary protocol would give their
// bytes, and `get_str` reads text.
use super::meta::get_str as s;

/// Describes `table` (`db.table` or the connection's database), whose columns are `cols`.
pub(crate) async fn table_schema(
    conn: &mut MySqlConnection,
    table: &str,
    cols: &[ColMeta],
) -> Result<TableSchema, ConnectorError> {
    let (db, t) = split_table(table);
    let q = |what: &'static str| {
        move |e: sqlx::Error| ConnectorError::query(format!("describing `{table}`: {what}"), e)
    };
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await
        .map_err(q("server version"))?;
    let mariadb = version.to_ascii_lowercase().contains("mariadb");

    let mut out = TableSchema::default();
    let trow = sqlx::query(
        "SELECT CAST(AUTO_INCREMENT AS CHAR), TABLE_COMMENT FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(db)
    .bind(t)
    .fetch_optional(&mut *conn)
    .await
    .map_err(q("table"))?;
    let counter: Option<i64> = trow
        .as_ref()
        .and_then(|r| s(r, 0))
        .and_then(|n| n.parse().ok());
    out.comment = trow
        .as_ref()
        .and_then(|r| s(r, 1))
        .filter(|c| !c.is_empty());

    let rows = sqlx::query(
        "SELECT COLUMN_NAME, COLUMN_DEFAULT, EXTRA, COLUMN_COMMENT, IS_NULLABLE, COLLATION_NAME \
         FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("columns"))?;
    for r in &rows {
        let name = s(r, 0).unwrap_or_default();
        let extra = s(r, 2).unwrap_or_default().to_ascii_lowercase();
        let meta = cols.iter().find(|c| c.name == name);
        let mut c = ColumnDef {
            name: name.clone(),
            not_null: s(r, 4).as_deref() == Some("NO"),
            comment: s(r, 3).filter(|c| !c.is_empty()),
            on_update_now: extra.contains("on update current_timestamp"),
            collation: s(r, 5).filter(|c| !c.ends_with("_bin")),
            ..ColumnDef::default()
        };
        if extra.contains("auto_increment") {
            c.identity = Some(Identity {
                next: counter,
                always: false,
            });
        }
        if extra.contains("generated") && !extra.contains("default_generated") {
            out.not_carried.push(format!(
                "column {name} is generated ({extra}): written as a plain column"
            ));
        }
        if let Some(m) = meta {
            if m.base == "enum" || m.base == "set" {
                c.members = Some(m.members());
                c.set = m.base == "set";
            }
        }
        c.default =
            s(r, 1).and_then(|d| parse_default(&d, mariadb, extra.contains("default_generated")));
        out.columns.push(c);
    }

    let rows = sqlx::query(
        "SELECT INDEX_NAME, CAST(NON_UNIQUE AS CHAR), COLUMN_NAME, CAST(SUB_PART AS CHAR), COLLATION, INDEX_TYPE \
         FROM information_schema.STATISTICS \
         WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ? \
         ORDER BY INDEX_NAME, SEQ_IN_INDEX",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("indexes"))?;
    let mut indexes: BTreeMap<String, (Index, Option<String>)> = BTreeMap::new();
    for r in &rows {
        let name = s(r, 0).unwrap_or_default();
        let unique = s(r, 1).as_deref() == Some("0");
        let kind = s(r, 5).unwrap_or_default();
        let entry = indexes.entry(name.clone()).or_insert_with(|| {
            (
                Index {
                    name: name.clone(),
                    columns: Vec::new(),
                    unique,
                },
                None,
            )
        });
        if !matches!(kind.as_str(), "BTREE" | "HASH" | "") {
            entry.1 = Some(format!("a {kind} index"));
        }
        match s(r, 2) {
            Some(col) => entry.0.columns.push(IndexColumn {
                name: col,
                descending: s(r, 4).as_deref() == Some("D"),
                prefix: s(r, 3).and_then(|p| p.parse().ok()),
            }),
            None => entry.1 = Some("an index on an expression".into()),
        }
    }
    for (name, (index, skip)) in indexes {
        if name == "PRIMARY" {
            out.primary_key = index.columns.into_iter().map(|c| c.name).collect();
        } else if let Some(why) = skip {
            out.not_carried.push(format!("index {name}: {why}"));
        } else {
            out.indexes.push(index);
        }
    }

    let rows = sqlx::query(
        "SELECT k.CONSTRAINT_NAME, k.COLUMN_NAME, k.REFERENCED_TABLE_SCHEMA, \
         k.REFERENCED_TABLE_NAME, k.REFERENCED_COLUMN_NAME, r.UPDATE_RULE, r.DELETE_RULE, \
         DATABASE() \
         FROM information_schema.KEY_COLUMN_USAGE k \
         JOIN information_schema.REFERENTIAL_CONSTRAINTS r \
           ON r.CONSTRAINT_SCHEMA = k.CONSTRAINT_SCHEMA AND r.CONSTRAINT_NAME = k.CONSTRAINT_NAME \
          AND r.TABLE_NAME = k.TABLE_NAME \
         WHERE k.TABLE_SCHEMA = COALESCE(?, DATABASE()) AND k.TABLE_NAME = ? \
           AND k.REFERENCED_TABLE_NAME IS NOT NULL \
         ORDER BY k.CONSTRAINT_NAME, k.ORDINAL_POSITION",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("foreign keys"))?;
    let own_db = db.map(str::to_string);
    for r in &rows {
        let name = s(r, 0).unwrap_or_default();
        let col = s(r, 1).unwrap_or_default();
        let ref_col = s(r, 4).unwrap_or_default();
        if let Some(f) = out.foreign_keys.iter_mut().find(|f| f.name == name) {
            f.columns.push(col);
            f.referenced_columns.push(ref_col);
            continue;
        }
        let ref_db = s(r, 2);
        let current = own_db.clone().or_else(|| s(r, 7));
        out.foreign_keys.push(ForeignKey {
            name,
            columns: vec![col],
            references: TableRef {
                source: None,
                // Same database as the table: the target maps it as it maps the table.
                schema: ref_db.filter(|d| Some(d) != current.as_ref()),
                name: s(r, 3).unwrap_or_default(),
            },
            referenced_columns: vec![ref_col],
            on_update: s(r, 5)
                .and_then(|a| FkAction::parse(&a))
                .unwrap_or_default(),
            on_delete: s(r, 6)
                .and_then(|a| FkAction::parse(&a))
                .unwrap_or_default(),
        });
    }

    // Check constraints other than MariaDB's json_valid() for JSON columns.
    let checks = sqlx::query(
        "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS \
         WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for r in &checks {
        let clause = s(r, 1).unwrap_or_default();
        if !clause
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("json_valid(")
        {
            out.not_carried.push(format!(
                "check constraint {}: CHECK ({clause})",
                s(r, 0).unwrap_or_default()
            ));
        }
    }
    let triggers = sqlx::query(
        "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS \
         WHERE EVENT_OBJECT_SCHEMA = COALESCE(?, DATABASE()) AND EVENT_OBJECT_TABLE = ?",
    )
    .bind(db)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for r in &triggers {
        out.not_carried.push(format!(
            "trigger {}: triggers are not migrated",
            s(r, 0).unwrap_or_default()
        ));
    }
    Ok(out)
}

/// The connection database's tables, views and routines.
pub(crate) async fn list_tables(
    conn: &mut MySqlConnection,
) -> Result<crate::traits::TableListing, ConnectorError> {
    let q = |e| ConnectorError::query("listing the database's tables", e);
    let rows = sqlx::query(
        "SELECT TABLE_NAME, TABLE_TYPE, CAST(COALESCE(TABLE_ROWS, 0) AS CHAR) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q)?;
    let mut out = crate::traits::TableListing::default();
    for r in &rows {
        let mut name = s(r, 0).unwrap_or_default();
        if name.contains(['.', '`']) {
            name = super::quote_ident(&name);
        }
        match s(r, 1).as_deref() {
            Some("BASE TABLE") => {
                out.tables.push(name);
                out.rows
                    .push(s(r, 2).and_then(|n| n.parse().ok()).unwrap_or(0));
            }
            Some("VIEW") => out.not_migrated.push(format!("view {name}")),
            Some(other) => out
                .not_migrated
                .push(format!("{} {name}", other.to_lowercase())),
            None => {}
        }
    }
    let rows = sqlx::query(
        "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES \
         WHERE ROUTINE_SCHEMA = DATABASE() ORDER BY ROUTINE_NAME",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q)?;
    for r in &rows {
        out.not_migrated.push(format!(
            "{} {}",
            s(r, 0).unwrap_or_default().to_lowercase(),
            s(r, 1).unwrap_or_default()
        ));
    }
    let rows = sqlx::query(
        "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE() ORDER BY EVENT_NAME",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap_or_default();
    for r in &rows {
        out.not_migrated
            .push(format!("event {}", s(r, 0).unwrap_or_default()));
    }
    Ok(out)
}

/// A default as `information_schema.COLUMNS.COLUMN_DEFAULT` gives it. MariaDB quotes string
/// literals and writes an explicit `DEFAULT NULL` as `NULL`; MySQL 8 gives literals bare and
/// marks expressions with `DEFAULT_GENERATED` in `EXTRA`.
fn parse_default(d: &str, mariadb: bool, generated: bool) -> Option<ColumnDefault> {
    let t = d.trim();
    let lower = t.to_ascii_lowercase();
    let now = |l: &str| {
        l.starts_with("current_timestamp") || l.starts_with("now(") || l.starts_with("localtime")
    };
    if now(&lower) {
        return Some(ColumnDefault::CurrentTimestamp);
    }
    if lower == "curdate()" || lower == "current_date" || lower == "current_date()" {
        return Some(ColumnDefault::CurrentDate);
    }
    if !mariadb {
        return Some(if generated {
            ColumnDefault::Expression(t.to_string())
        } else {
            ColumnDefault::Literal(d.to_string())
        });
    }
    if t == "NULL" {
        return Some(ColumnDefault::Null);
    }
    if let Some(inner) = t.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        return Some(ColumnDefault::Literal(unquote(inner)));
    }
    if let Some(bits) = lower.strip_prefix("b'").and_then(|r| r.strip_suffix('\'')) {
        if let Ok(n) = u64::from_str_radix(bits, 2) {
            return Some(ColumnDefault::Literal(n.to_string()));
        }
    }
    let numeric = !t.is_empty()
        && t.trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if numeric {
        return Some(ColumnDefault::Literal(t.to_string()));
    }
    Some(ColumnDefault::Expression(t.to_string()))
}

/// The value of a MariaDB-quoted literal's inside (`''` and backslash escapes).
fn unquote(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' if chars.peek() == Some(&'\'') => {
                chars.next();
                out.push('\'');
            }
            '\\' => match chars.next() {
                Some('0') => out.push('\0'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some('t') => out.push('\t'),
                Some('b') => out.push('\u{8}'),
                Some('Z') => out.push('\u{1a}'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            },
            o => out.push(o),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_defaults() {
        let p = |d: &str| parse_default(d, true, false);
        assert_eq!(p("'it''s'"), Some(ColumnDefault::Literal("it's".into())));
        assert_eq!(p(r"'a\\b'"), Some(ColumnDefault::Literal(r"a\b".into())));
        assert_eq!(p("NULL"), Some(ColumnDefault::Null));
        assert_eq!(p("-1.50"), Some(ColumnDefault::Literal("-1.50".into())));
        assert_eq!(p("b'101'"), Some(ColumnDefault::Literal("5".into())));
        assert_eq!(
            p("current_timestamp(3)"),
            Some(ColumnDefault::CurrentTimestamp)
        );
        assert_eq!(
            p("(1 + 2)"),
            Some(ColumnDefault::Expression("(1 + 2)".into()))
        );
    }

    #[test]
    fn mysql8_defaults() {
        assert_eq!(
            parse_default("x'y", false, false),
            Some(ColumnDefault::Literal("x'y".into()))
        );
        assert_eq!(
            parse_default("CURRENT_TIMESTAMP", false, true),
            Some(ColumnDefault::CurrentTimestamp)
        );
        assert_eq!(
            parse_default("(rand())", false, true),
            Some(ColumnDefault::Expression("(rand())".into()))
        );
    }
}
