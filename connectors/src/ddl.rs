//! A source table's description ([`TableSchema`]) as a target's DDL, in three stages so that
//! rows load fast (as pgloader does): the table with its primary key, NOT NULL and defaults
//! before the load; secondary indexes, identity counters and emulated `ON UPDATE` after it;
//! foreign keys last, once every table they refer to is loaded. Each dialect renders its own
//! (`postgres/ddl.rs`, `mysql/ddl.rs`, `sqlite/ddl.rs`); what it cannot carry exactly is a
//! [`Note`], printed by `ferry job plan` and logged when the job runs.
//!
//! Everything here comes from the other side of the tunnel: names are quoted, literals are
//! rendered by the dialect from the column's type, and an expression is never run.

use serde::{Deserialize, Serialize};

use arrow_schema::DataType;

use crate::spec::{ColumnDef, ColumnDefault, ForeignKey, TableSchema};

/// How an ENUM column is created where the target has no ENUM column type of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnumAs {
    /// PostgreSQL: an enum type per column (`<table>_<column>`); SQLite: a CHECK.
    #[default]
    Type,
    /// Text with a `CHECK (c IN (…))`.
    Check,
    /// Plain text.
    Text,
}

/// One statement, with the object it creates when that can exist already (an index or
/// foreign key is skipped when its name does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdlStep {
    pub sql: String,
    pub creates: Option<Object>,
}

/// A named object a step creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Index(String),
    ForeignKey(String),
}

/// A table's DDL, by stage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableDdl {
    /// Before the load: types, the table with its primary key, NOT NULL, defaults,
    /// comments.
    pub create: Vec<DdlStep>,
    /// After the load: unique and secondary indexes, identity counters, triggers.
    pub after_load: Vec<DdlStep>,
    /// After every table is loaded: foreign keys.
    pub constraints: Vec<DdlStep>,
    /// What is not carried exactly, one sentence each.
    pub notes: Vec<Note>,
}

impl TableDdl {
    pub(crate) fn step(sql: String) -> DdlStep {
        DdlStep { sql, creates: None }
    }

    pub(crate) fn note(&mut self, column: Option<&str>, what: impl Into<String>) {
        self.notes.push(Note {
            column: column.map(str::to_string),
            what: what.into(),
        });
    }
}

/// A conversion that loses or changes something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The column it is about (`None`: the table).
    pub column: Option<String>,
    pub what: String,
}

impl std::fmt::Display for Note {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column {c}: {}", self.what),
            None => f.write_str(&self.what),
        }
    }
}

/// The DDL a target of `kind` runs for `spec.table` from `spec.described`, for rows of
/// `schema`: what its sink's [`Sink::table_ddl`](crate::Sink::table_ddl) gives, without
/// opening the target (`ferry job plan`). `None` without a description or for files.
pub fn render(
    kind: crate::Kind,
    spec: &crate::WriteSpec,
    schema: &arrow_schema::Schema,
) -> Result<Option<TableDdl>, crate::ConnectorError> {
    let Some(desc) = spec.described.as_ref() else {
        return Ok(None);
    };
    let names = spec.target_names(schema)?;
    Ok(Some(match kind {
        crate::Kind::Postgres => crate::postgres::table_ddl(spec, schema, &names, desc)?,
        crate::Kind::MySql => {
            let names: Vec<String> = names
                .into_iter()
                .map(|c| c.trim_matches('`').to_string())
                .collect();
            crate::mysql::table_ddl(spec, schema, &names, desc)?
        }
        crate::Kind::Sqlite => crate::sqlite::table_ddl(spec, schema, &names, desc)?,
        _ => return Ok(None),
    }))
}

/// The name of an index or constraint of `table` in a target where such names share one
/// namespace per schema (PostgreSQL, SQLite) or per database (MySQL foreign keys): the
/// source's name when it already starts with the table's, else `<table>_<name>`; at most
/// `max` bytes.
pub(crate) fn object_name(table: &str, name: &str, max: usize) -> String {
    let full = if name.starts_with(table) {
        name.to_string()
    } else {
        format!("{table}_{name}")
    };
    if full.len() <= max {
        return full;
    }
    let mut cut = max;
    while !full.is_char_boundary(cut) {
        cut -= 1;
    }
    full[..cut].to_string()
}

/// A literal default that a numeric column can take as it is: digits, a sign, a point and
/// an exponent; nothing that could be more than a number.
pub(crate) fn numeric_literal(s: &str) -> Option<&str> {
    let t = s.trim();
    let body = t.strip_prefix('-').unwrap_or(t);
    let ok = !body.is_empty()
        && body.len() <= 80
        && body
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == '.')
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    ok.then_some(t)
}

/// Whether a date or time literal is a MySQL zero date (`0000-00-00…`), which no other
/// target can hold.
pub(crate) fn zero_date(s: &str) -> bool {
    s.starts_with("0000-00-00") || s.contains("-00-") || s.ends_with("-00")
}

/// A boolean literal: `true`/`false`, or MySQL's 1/0.
pub(crate) fn bool_literal(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "t" => Some(true),
        "false" | "0" | "f" => Some(false),
        _ => None,
    }
}

/// How a dialect writes a column default.
pub(crate) struct DefaultSyntax<'a> {
    /// The current date and time for a column of this type (`None`: the type takes none).
    pub now: fn(&DataType) -> Option<&'static str>,
    /// The current date for a column of this type.
    pub today: fn(&DataType) -> Option<&'static str>,
    pub boolean: fn(bool) -> String,
    /// A text, date or time literal for the column.
    pub text: &'a dyn Fn(&str) -> String,
}

/// The default `d` of `column` (Arrow type `dt`) as `syntax` writes it, or `None` with a
/// note saying why it is not carried.
pub(crate) fn default_sql(
    ddl: &mut TableDdl,
    column: &str,
    dt: &DataType,
    d: &ColumnDefault,
    syntax: &DefaultSyntax<'_>,
) -> Option<String> {
    let why = match d {
        ColumnDefault::Null => return Some("NULL".into()),
        ColumnDefault::CurrentTimestamp => match (syntax.now)(dt) {
            Some(s) => return Some(s.into()),
            None => "the column is not a date or time",
        },
        ColumnDefault::CurrentDate => match (syntax.today)(dt) {
            Some(s) => return Some(s.into()),
            None => "the column is not a date",
        },
        ColumnDefault::Expression(_) => "an expression is not translated",
        ColumnDefault::Literal(v) => match dt {
            DataType::Boolean => match bool_literal(v) {
                Some(b) => return Some((syntax.boolean)(b)),
                None => "not a boolean",
            },
            t if t.is_numeric() => match numeric_literal(v) {
                Some(n) => return Some(n.to_string()),
                None => "not a number",
            },
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(_, _) if zero_date(v) => {
                "a zero date is not a date"
            }
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                "binary defaults are not carried"
            }
            _ => return Some((syntax.text)(v)),
        },
    };
    let shown = match d {
        ColumnDefault::Expression(e) | ColumnDefault::Literal(e) => e.clone(),
        other => format!("{other:?}"),
    };
    ddl.note(Some(column), format!("default {shown} not carried: {why}"));
    None
}

/// Notes a column whose source collation ignores case or accents, for a `target` that
/// compares text exactly.
pub(crate) fn note_collation(
    ddl: &mut TableDdl,
    col: Option<&ColumnDef>,
    name: &str,
    target: &str,
) {
    if let Some(coll) = col.and_then(|c| c.loose_collation()) {
        ddl.note(
            Some(name),
            format!(
                "collation {coll} ignores case or accents; {target} compares exactly, so a \
                 unique index on it may hold values that differ only in case"
            ),
        );
    }
}

/// `PRIMARY KEY (a, b)`, `None` without a key.
pub(crate) fn primary_key(desc: &TableSchema, quote: fn(&str) -> String) -> Option<String> {
    (!desc.primary_key.is_empty())
        .then(|| format!("PRIMARY KEY ({})", list(&desc.primary_key, quote)))
}

/// `a, b`, each name quoted.
pub(crate) fn list(names: &[String], quote: fn(&str) -> String) -> String {
    names
        .iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `FOREIGN KEY (a) REFERENCES <references> (b) ON DELETE … ON UPDATE …`.
pub(crate) fn foreign_key(f: &ForeignKey, references: &str, quote: fn(&str) -> String) -> String {
    format!(
        "FOREIGN KEY ({}) REFERENCES {references} ({}) ON DELETE {} ON UPDATE {}",
        list(&f.columns, quote),
        list(&f.referenced_columns, quote),
        f.on_delete.sql(),
        f.on_update.sql()
    )
}

/// Notes every dialect makes from the description alone.
pub(crate) fn common_notes(ddl: &mut TableDdl, desc: &TableSchema) {
    for n in &desc.not_carried {
        ddl.note(None, format!("not carried: {n}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_literals() {
        assert_eq!(object_name("orders", "idx_shop", 63), "orders_idx_shop");
        assert_eq!(object_name("orders", "orders_pkey", 63), "orders_pkey");
        assert_eq!(object_name("t", &"x".repeat(100), 10).len(), 10);
        assert_eq!(numeric_literal("-1.50"), Some("-1.50"));
        assert_eq!(numeric_literal("1e3"), Some("1e3"));
        assert_eq!(numeric_literal("1); drop table x"), None);
        assert_eq!(numeric_literal("-"), None);
        assert!(zero_date("0000-00-00 00:00:00"));
        assert!(zero_date("2020-00-10"));
        assert!(!zero_date("2020-01-10 00:00:00"));
    }
}
