//! What a table is beyond its column types: keys, indexes, foreign keys, defaults, identity
//! columns, comments. A source describes it in these dialect-free terms; a target renders it
//! as its own DDL. Column types travel as the Arrow schema (with `ferry.*` field metadata),
//! which every read already carries; this is the rest.
//!
//! A description crosses the tunnel from agent to broker, so it is checked
//! ([`TableSchema::check`]) before a target renders it, and it holds no SQL a target would
//! run: defaults are constants or one of a closed set of functions; an expression Ferry does
//! not translate is kept only as text to report.

use serde::{Deserialize, Serialize};

use crate::TableRef;

/// Most columns, indexes or foreign keys a described table may have.
pub const MAX_SCHEMA_ITEMS: usize = 4096;
/// Most columns in one key, index or foreign key.
pub const MAX_KEY_COLUMNS: usize = 64;
/// Longest identifier (PostgreSQL's is 63 bytes, MySQL's 64 characters).
pub const MAX_IDENT_LEN: usize = 256;
/// Longest comment, default literal or reported expression.
pub const MAX_TEXT_LEN: usize = 64 * 1024;

/// A table's keys, indexes, constraints and column attributes, as its source describes
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TableSchema {
    /// Every column, in table order, with what is not its type.
    #[serde(default)]
    pub columns: Vec<ColumnDef>,
    /// Primary key columns, in key order; empty when there is none.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// Unique and secondary indexes (not the primary key's).
    #[serde(default)]
    pub indexes: Vec<Index>,
    /// Foreign keys this table declares.
    #[serde(default)]
    pub foreign_keys: Vec<ForeignKey>,
    /// The table comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// What the source has that no target gets (a check constraint, a partitioning, an
    /// index kind), one sentence each, for the plan and the summary.
    #[serde(default)]
    pub not_carried: Vec<String>,
}

/// One column's attributes other than its type and nullability (which its Arrow field
/// holds).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ColumnDef {
    pub name: String,
    /// Declared `NOT NULL` in the source. The Arrow field may be nullable all the same
    /// (a zero date read as NULL); a target keeps the declaration.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_null: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<ColumnDefault>,
    /// Filled by the database (MySQL AUTO_INCREMENT, PostgreSQL identity or serial,
    /// SQLite INTEGER PRIMARY KEY AUTOINCREMENT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// MySQL `ON UPDATE CURRENT_TIMESTAMP`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_update_now: bool,
    /// ENUM members (or SET members, with `set`), in declared order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// The members are a SET's: a value is a comma-separated subset.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub set: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The source's collation where it compares other than byte by byte (MySQL's `_ci`
    /// and `_ai` collations): a target that compares otherwise flags it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
}

impl ColumnDef {
    /// Whether the source compares this column's text ignoring case or accents.
    pub fn loose_collation(&self) -> Option<&str> {
        self.collation
            .as_deref()
            .filter(|c| c.ends_with("_ci") || c.contains("_ai"))
    }
}

/// A column default, dialect-free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum ColumnDefault {
    /// `DEFAULT NULL`, said explicitly.
    Null,
    /// A constant in its canonical text form for the column's type: digits for a number,
    /// `YYYY-MM-DD[ hh:mm:ss[.f]]` for a date or time, `true`/`false`, the string itself
    /// for text, lower-case hex for binary. Targets quote it as their dialect requires.
    Literal(String),
    /// The current date and time (`CURRENT_TIMESTAMP`, `now()`), at the column's
    /// precision.
    CurrentTimestamp,
    /// The current date.
    CurrentDate,
    /// An expression Ferry does not translate, as the source wrote it: reported, never run.
    Expression(String),
}

/// A column the database fills itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// The next value the source would hand out, when it knows (MySQL's AUTO_INCREMENT
    /// counter, a sequence's next value). A target starts past both this and the largest
    /// value loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<i64>,
    /// PostgreSQL `GENERATED ALWAYS`: an insert may not give the value.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub always: bool,
}

/// A unique or secondary index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Index {
    pub name: String,
    pub columns: Vec<IndexColumn>,
    #[serde(default)]
    pub unique: bool,
}

/// One column of an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IndexColumn {
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub descending: bool,
    /// MySQL prefix length (`KEY (title(20))`), in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<u32>,
}

/// A foreign key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    /// The referenced table, in the source (a target maps it as it maps the table
    /// itself).
    pub references: TableRef,
    pub referenced_columns: Vec<String>,
    #[serde(default)]
    pub on_delete: FkAction,
    #[serde(default)]
    pub on_update: FkAction,
}

/// What a foreign key does when the referenced row goes or changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FkAction {
    #[default]
    NoAction,
    Restrict,
    Cascade,
    SetNull,
    SetDefault,
}

impl FkAction {
    /// The SQL words, the same in every dialect Ferry writes.
    pub fn sql(self) -> &'static str {
        match self {
            FkAction::NoAction => "NO ACTION",
            FkAction::Restrict => "RESTRICT",
            FkAction::Cascade => "CASCADE",
            FkAction::SetNull => "SET NULL",
            FkAction::SetDefault => "SET DEFAULT",
        }
    }

    /// The action SQL names (`CASCADE`, `SET NULL`, ...; any case), `None` for anything
    /// else.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "NO ACTION" => FkAction::NoAction,
            "RESTRICT" => FkAction::Restrict,
            "CASCADE" => FkAction::Cascade,
            "SET NULL" => FkAction::SetNull,
            "SET DEFAULT" => FkAction::SetDefault,
            _ => return None,
        })
    }
}

/// A described table that breaks a bound or names a column it does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// More items of one kind than [`MAX_SCHEMA_ITEMS`], or more columns in one key than
    /// [`MAX_KEY_COLUMNS`].
    #[error("a table description has {count} {what}, more than {max}")]
    TooMany {
        what: &'static str,
        count: usize,
        max: usize,
    },
    /// An identifier that is empty, longer than [`MAX_IDENT_LEN`] or holds a NUL.
    #[error("a table description names {what} `{name}`, which is empty, too long or holds a NUL")]
    BadName { what: &'static str, name: String },
    /// A comment, default or expression longer than [`MAX_TEXT_LEN`] or holding a NUL.
    #[error(
        "a table description has a {what} of {len} bytes or with a NUL (at most {MAX_TEXT_LEN})"
    )]
    BadText { what: &'static str, len: usize },
    /// A key, index or column entry names a column the table does not have.
    #[error("a table description's {what} names column `{column}`, which the table does not have")]
    NoSuchColumn { what: String, column: String },
}

fn check_name(what: &'static str, name: &str) -> Result<(), SchemaError> {
    if name.is_empty() || name.len() > MAX_IDENT_LEN || name.contains('\0') {
        let mut shown: String = name.chars().take(64).collect();
        if shown.len() < name.len() {
            shown.push('…');
        }
        return Err(SchemaError::BadName { what, name: shown });
    }
    Ok(())
}

fn check_text(what: &'static str, text: &str) -> Result<(), SchemaError> {
    if text.len() > MAX_TEXT_LEN || text.contains('\0') {
        return Err(SchemaError::BadText {
            what,
            len: text.len(),
        });
    }
    Ok(())
}

fn check_count(what: &'static str, count: usize, max: usize) -> Result<(), SchemaError> {
    if count > max {
        return Err(SchemaError::TooMany { what, count, max });
    }
    Ok(())
}

impl TableSchema {
    /// The column entry for `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// Checks a description from the other side of the tunnel: bounded counts and
    /// lengths, sane names, and keys and indexes over the table's own columns.
    pub fn check(&self) -> Result<(), SchemaError> {
        check_count("columns", self.columns.len(), MAX_SCHEMA_ITEMS)?;
        check_count("indexes", self.indexes.len(), MAX_SCHEMA_ITEMS)?;
        check_count("foreign keys", self.foreign_keys.len(), MAX_SCHEMA_ITEMS)?;
        check_count("notes", self.not_carried.len(), MAX_SCHEMA_ITEMS)?;
        check_count(
            "primary key columns",
            self.primary_key.len(),
            MAX_KEY_COLUMNS,
        )?;
        if let Some(c) = &self.comment {
            check_text("table comment", c)?;
        }
        for n in &self.not_carried {
            check_text("note", n)?;
        }
        for c in &self.columns {
            check_name("column", &c.name)?;
            if let Some(comment) = &c.comment {
                check_text("column comment", comment)?;
            }
            if let Some(coll) = &c.collation {
                check_name("collation", coll)?;
            }
            match &c.default {
                Some(ColumnDefault::Literal(t)) => check_text("default", t)?,
                Some(ColumnDefault::Expression(t)) => check_text("default expression", t)?,
                _ => {}
            }
            if let Some(m) = &c.members {
                check_count("members", m.len(), MAX_SCHEMA_ITEMS)?;
                for v in m {
                    check_text("member", v)?;
                }
            }
        }
        let has = |what: &str, column: &str| -> Result<(), SchemaError> {
            if self.column(column).is_none() {
                return Err(SchemaError::NoSuchColumn {
                    what: what.to_string(),
                    column: column.to_string(),
                });
            }
            Ok(())
        };
        for k in &self.primary_key {
            has("primary key", k)?;
        }
        for i in &self.indexes {
            check_name("index", &i.name)?;
            check_count("index columns", i.columns.len(), MAX_KEY_COLUMNS)?;
            if i.columns.is_empty() {
                return Err(SchemaError::TooMany {
                    what: "columns in an index (none)",
                    count: 0,
                    max: 0,
                });
            }
            for c in &i.columns {
                has(&format!("index {}", i.name), &c.name)?;
            }
        }
        for f in &self.foreign_keys {
            check_name("foreign key", &f.name)?;
            check_name("referenced table", &f.references.name)?;
            if let Some(s) = &f.references.schema {
                check_name("referenced schema", s)?;
            }
            check_count("foreign key columns", f.columns.len(), MAX_KEY_COLUMNS)?;
            if f.columns.is_empty() || f.columns.len() != f.referenced_columns.len() {
                return Err(SchemaError::NoSuchColumn {
                    what: format!("foreign key {}", f.name),
                    column: "(as many columns as it references)".into(),
                });
            }
            for c in &f.columns {
                has(&format!("foreign key {}", f.name), c)?;
            }
            for c in &f.referenced_columns {
                check_name("referenced column", c)?;
            }
        }
        Ok(())
    }

    /// This description for a read of columns `read`, written to target columns `target`
    /// (positionally; same length): columns renamed, and keys, indexes and foreign keys kept
    /// only when every column they use is read. What is dropped is said in `not_carried`.
    pub fn project(&self, read: &[String], target: &[String]) -> TableSchema {
        let rename = |c: &str| -> Option<String> {
            read.iter()
                .position(|r| r == c)
                .and_then(|i| target.get(i).cloned())
        };
        let mut out = TableSchema {
            comment: self.comment.clone(),
            not_carried: self.not_carried.clone(),
            ..TableSchema::default()
        };
        for (r, t) in read.iter().zip(target) {
            let mut c = self.column(r).cloned().unwrap_or_else(|| ColumnDef {
                name: r.clone(),
                ..ColumnDef::default()
            });
            c.name = t.clone();
            out.columns.push(c);
        }
        let all = |cols: &mut dyn Iterator<Item = &String>| -> Option<Vec<String>> {
            cols.map(|c| rename(c)).collect()
        };
        match all(&mut self.primary_key.iter()) {
            Some(pk) => out.primary_key = pk,
            None => out.not_carried.push(format!(
                "primary key ({}): not every column is read",
                self.primary_key.join(", ")
            )),
        }
        for i in &self.indexes {
            let cols: Option<Vec<IndexColumn>> = i
                .columns
                .iter()
                .map(|c| rename(&c.name).map(|name| IndexColumn { name, ..c.clone() }))
                .collect();
            match cols {
                Some(columns) => out.indexes.push(Index {
                    columns,
                    ..i.clone()
                }),
                None => out
                    .not_carried
                    .push(format!("index {}: not every column is read", i.name)),
            }
        }
        for f in &self.foreign_keys {
            match all(&mut f.columns.iter()) {
                Some(columns) => out.foreign_keys.push(ForeignKey {
                    columns,
                    ..f.clone()
                }),
                None => out
                    .not_carried
                    .push(format!("foreign key {}: not every column is read", f.name)),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TableSchema {
        TableSchema {
            columns: vec![
                ColumnDef {
                    name: "id".into(),
                    identity: Some(Identity {
                        next: Some(42),
                        always: false,
                    }),
                    ..ColumnDef::default()
                },
                ColumnDef {
                    name: "shop".into(),
                    ..ColumnDef::default()
                },
                ColumnDef {
                    name: "at".into(),
                    default: Some(ColumnDefault::CurrentTimestamp),
                    on_update_now: true,
                    ..ColumnDef::default()
                },
            ],
            primary_key: vec!["id".into()],
            indexes: vec![Index {
                name: "by_shop".into(),
                columns: vec![IndexColumn {
                    name: "shop".into(),
                    descending: false,
                    prefix: None,
                }],
                unique: false,
            }],
            foreign_keys: vec![ForeignKey {
                name: "fk_shop".into(),
                columns: vec!["shop".into()],
                references: TableRef {
                    source: None,
                    schema: None,
                    name: "shops".into(),
                },
                referenced_columns: vec!["id".into()],
                on_delete: FkAction::Cascade,
                on_update: FkAction::SetNull,
            }],
            comment: Some("orders".into()),
            not_carried: vec![],
        }
    }

    #[test]
    fn round_trips_and_checks() {
        let s = sample();
        let json = serde_json::to_string(&s).unwrap();
        let back: TableSchema = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(json.contains(r#""onDelete":"cascade""#), "{json}");
        s.check().unwrap();
    }

    #[test]
    fn check_refuses_unknown_columns_and_oversize() {
        let mut s = sample();
        s.primary_key = vec!["nope".into()];
        assert!(matches!(s.check(), Err(SchemaError::NoSuchColumn { .. })));
        let mut s = sample();
        s.indexes[0].name = "x".repeat(MAX_IDENT_LEN + 1);
        assert!(matches!(s.check(), Err(SchemaError::BadName { .. })));
        let mut s = sample();
        s.columns[1].comment = Some("\0".into());
        assert!(matches!(s.check(), Err(SchemaError::BadText { .. })));
        let mut s = sample();
        s.foreign_keys[0].referenced_columns.clear();
        assert!(s.check().is_err());
        let bad = r#"{"columns":[{"name":"a","default":{"sql":"drop table x"}}]}"#;
        assert!(serde_json::from_str::<TableSchema>(bad).is_err());
    }

    #[test]
    fn project_renames_and_drops_what_is_not_read() {
        let s = sample();
        let p = s.project(
            &["id".into(), "at".into()],
            &["order_id".into(), "created".into()],
        );
        assert_eq!(p.primary_key, vec!["order_id".to_string()]);
        assert!(p.indexes.is_empty() && p.foreign_keys.is_empty());
        assert_eq!(p.columns[1].name, "created");
        assert!(p.columns[1].on_update_now);
        assert_eq!(p.not_carried.len(), 2, "{:?}", p.not_carried);
        p.check().unwrap();
    }
}
