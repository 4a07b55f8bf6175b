//! A described table as MySQL / MariaDB DDL (see [`crate::ddl`]).
//!
//! | Source                         | MySQL                                                        |
//! |--------------------------------|--------------------------------------------------------------|
//! | primary key                    | `PRIMARY KEY (…)` in `CREATE TABLE`                          |
//! | unique / secondary index       | `ALTER TABLE … ADD [UNIQUE] INDEX` after the load            |
//! | foreign key                    | `ALTER TABLE … ADD CONSTRAINT <table>_<name> FOREIGN KEY …` last |
//! | identity, serial, auto-increment | `AUTO_INCREMENT` (on a key column), counter set past the data |
//! | enum                           | `ENUM(…)`; SET members: `SET(…)`                             |
//! | `CURRENT_TIMESTAMP` default    | `CURRENT_TIMESTAMP(6)`; `ON UPDATE CURRENT_TIMESTAMP(6)` kept |
//! | text / bytes in a key or index | `VARCHAR(768)` / `VARBINARY(3072)` (InnoDB keys hold 3072 bytes) |
//! | comments                       | `COMMENT '…'`                                                |

use arrow_schema::{DataType, Schema};

use super::write::mysql_base_type;
use super::{quote_ident, split_table};
use crate::ddl::{self, common_notes, object_name, DdlStep, DefaultSyntax, Object, TableDdl};
use crate::error::ConnectorError;
use crate::spec::{ColumnDefault, TableSchema, WriteSpec};

/// MySQL's identifier limit.
const MAX_NAME: usize = 64;

/// `'text'` for MySQL with the default `sql_mode` (backslash escapes on).
pub(crate) fn string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''"))
}

/// `desc` (already projected onto `names`) as DDL for `spec.table`.
pub(crate) fn table_ddl(
    spec: &WriteSpec,
    schema: &Schema,
    names: &[String],
    desc: &TableSchema,
) -> Result<TableDdl, ConnectorError> {
    let (db, tname) = split_table(&spec.table);
    let in_db = |name: &str| match db {
        Some(d) => format!("{}.{}", quote_ident(d), quote_ident(name)),
        None => quote_ident(name),
    };
    let table = in_db(tname);
    let mut ddl = TableDdl::default();
    common_notes(&mut ddl, desc);
    let keyed = |c: &str| {
        desc.primary_key.iter().any(|k| k == c)
            || desc.indexes.iter().any(|i| {
                i.columns
                    .iter()
                    .any(|ic| ic.name == c && ic.prefix.is_none())
            })
    };
    let mut defs = Vec::with_capacity(names.len());
    for (name, field) in names.iter().zip(schema.fields()) {
        let col = desc.column(name);
        let mut ty = mysql_base_type(field)?;
        if let Some(m) = col.and_then(|c| c.members.as_ref()) {
            let kind = if col.is_some_and(|c| c.set) {
                "SET"
            } else {
                "ENUM"
            };
            ty = format!(
                "{kind}({})",
                m.iter().map(|v| string(v)).collect::<Vec<_>>().join(",")
            );
        }
        if keyed(name) {
            let wide = match ty.as_str() {
                "LONGTEXT" => Some("VARCHAR(768)"),
                "LONGBLOB" => Some("VARBINARY(3072)"),
                _ => None,
            };
            if let Some(w) = wide {
                ddl.note(
                    Some(name),
                    format!("{ty} cannot be a key: created as {w} (longer values are refused)"),
                );
                ty = w.to_string();
            }
        }
        let mut def = format!("{} {ty}", quote_ident(name));
        let declared_not_null = col.is_some_and(|c| c.not_null);
        let identity = col.and_then(|c| c.identity.as_ref());
        let not_null = !field.is_nullable() || declared_not_null || identity.is_some();
        def.push_str(if not_null { " NOT NULL" } else { " NULL" });
        let integer = field.data_type().is_integer();
        let first_of_key = desc.primary_key.first() == Some(name)
            || desc
                .indexes
                .iter()
                .any(|i| i.columns.first().is_some_and(|c| &c.name == name));
        match identity {
            Some(id) if integer && first_of_key => {
                def.push_str(" AUTO_INCREMENT");
                let n = id.next.unwrap_or(1).max(1);
                // MySQL moves the counter past the largest value on its own.
                ddl.after_load.push(TableDdl::step(format!(
                    "ALTER TABLE {table} AUTO_INCREMENT = {n}"
                )));
            }
            Some(_) => ddl.note(
                Some(name),
                "auto-increment not carried: MySQL needs an integer column leading a key",
            ),
            None => {}
        }
        let timestamp = matches!(field.data_type(), DataType::Timestamp(_, _));
        let default = col.and_then(|c| c.default.as_ref());
        if identity.is_none() {
            match default {
                Some(d) => {
                    if let Some(sql) = default_sql(&mut ddl, name, field.data_type(), &ty, d) {
                        def.push_str(" DEFAULT ");
                        def.push_str(&sql);
                    }
                }
                // No implicit default or ON UPDATE from the server for a TIMESTAMP.
                None if timestamp && !not_null => def.push_str(" DEFAULT NULL"),
                None if ty.starts_with("TIMESTAMP") => {
                    def.push_str(" DEFAULT CURRENT_TIMESTAMP(6)");
                    ddl.note(
                        Some(name),
                        "a NOT NULL TIMESTAMP without a default gets DEFAULT CURRENT_TIMESTAMP(6)",
                    );
                }
                None => {}
            }
        }
        if col.is_some_and(|c| c.on_update_now) {
            if timestamp {
                def.push_str(" ON UPDATE CURRENT_TIMESTAMP(6)");
            } else {
                ddl.note(
                    Some(name),
                    "ON UPDATE CURRENT_TIMESTAMP on a column that is not a timestamp: not carried",
                );
            }
        }
        if let Some(c) = col.and_then(|c| c.comment.as_ref()) {
            def.push_str(" COMMENT ");
            def.push_str(&string(c));
        }
        if matches!(field.data_type(), DataType::Interval(_)) {
            ddl.note(
                Some(name),
                "interval is TIME(6): months and days are refused",
            );
        }
        defs.push(def);
    }
    defs.extend(ddl::primary_key(desc, quote_ident));
    let comment = desc
        .comment
        .as_ref()
        .map(|c| format!(" COMMENT={}", string(c)))
        .unwrap_or_default();
    ddl.create.insert(
        0,
        TableDdl::step(format!(
            "CREATE TABLE IF NOT EXISTS {table} ({}) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin{comment}",
            defs.join(", ")
        )),
    );
    for i in &desc.indexes {
        let name: String = i.name.chars().take(MAX_NAME).collect();
        let cols = i
            .columns
            .iter()
            .map(|c| {
                let mut s = quote_ident(&c.name);
                if let Some(p) = c.prefix {
                    s.push_str(&format!("({p})"));
                }
                if c.descending {
                    s.push_str(" DESC");
                }
                s
            })
            .collect::<Vec<_>>();
        ddl.after_load.push(DdlStep {
            sql: format!(
                "ALTER TABLE {table} ADD {}INDEX {} ({})",
                if i.unique { "UNIQUE " } else { "" },
                quote_ident(&name),
                cols.join(", ")
            ),
            creates: Some(Object::Index(name)),
        });
    }
    for f in &desc.foreign_keys {
        // Foreign key names are per database in InnoDB.
        let name = object_name(tname, &f.name, MAX_NAME);
        let references = match &f.references.schema {
            Some(s) => format!("{}.{}", quote_ident(s), quote_ident(&f.references.name)),
            None => in_db(&f.references.name),
        };
        ddl.constraints.push(DdlStep {
            sql: format!(
                "ALTER TABLE {table} ADD CONSTRAINT {} {}",
                quote_ident(&name),
                ddl::foreign_key(f, &references, quote_ident)
            ),
            creates: Some(Object::ForeignKey(name)),
        });
    }
    Ok(ddl)
}

/// How MySQL writes a default for a column created as `ty`.
fn default_sql(
    ddl: &mut TableDdl,
    column: &str,
    dt: &DataType,
    ty: &str,
    d: &ColumnDefault,
) -> Option<String> {
    // TEXT, BLOB and JSON take a default only as an expression (MySQL 8.0.13+, MariaDB).
    let expression_only = matches!(ty, "LONGTEXT" | "LONGBLOB" | "JSON");
    let text = |v: &str| {
        if expression_only {
            format!("({})", string(v))
        } else {
            string(v)
        }
    };
    let syntax = DefaultSyntax {
        now: |dt| match dt {
            DataType::Timestamp(_, _) => Some("CURRENT_TIMESTAMP(6)"),
            DataType::Date32 | DataType::Date64 => Some("(CURRENT_DATE)"),
            _ => None,
        },
        today: |dt| matches!(dt, DataType::Date32 | DataType::Date64).then_some("(CURRENT_DATE)"),
        boolean: |b| u8::from(b).to_string(),
        text: &text,
    };
    ddl::default_sql(ddl, column, dt, d, &syntax)
}
