//! A described table as SQLite DDL (see [`crate::ddl`]).
//!
//! SQLite cannot add a foreign key to a table that exists, so foreign keys are part of
//! `CREATE TABLE` (the writer's connections do not enforce them while loading). An
//! auto-increment key is `INTEGER PRIMARY KEY AUTOINCREMENT`, with `sqlite_sequence` set
//! past the source's counter after the load; an ENUM is a `CHECK (c IN (…))`. Comments,
//! SET members and `ON UPDATE CURRENT_TIMESTAMP` have no SQLite form and are reported.

use arrow_schema::{DataType, Schema};

use super::{quote_ident, split_name, sqlite_type_for};
use crate::ddl::{
    self, common_notes, object_name, DdlStep, DefaultSyntax, EnumAs, Object, TableDdl,
};
use crate::error::ConnectorError;
use crate::spec::{ColumnDefault, TableSchema, WriteSpec};

fn string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `desc` (already projected onto `names`) as DDL for `spec.table`.
pub(crate) fn table_ddl(
    spec: &WriteSpec,
    schema: &Schema,
    names: &[String],
    desc: &TableSchema,
) -> Result<TableDdl, ConnectorError> {
    let (sch, tname) = split_name(&spec.table)?;
    let in_schema = |name: &str| match &sch {
        Some(s) => format!("{}.{}", quote_ident(s), quote_ident(name)),
        None => quote_ident(name),
    };
    let table = in_schema(&tname);
    let mut ddl = TableDdl::default();
    common_notes(&mut ddl, desc);
    let mut defs = Vec::with_capacity(names.len());
    let mut rowid_key = false;
    for (name, field) in names.iter().zip(schema.fields()) {
        let col = desc.column(name);
        let ty = sqlite_type_for(field)?;
        let qname = quote_ident(name);
        let mut def = format!("{qname} {ty}");
        let identity = col.and_then(|c| c.identity.as_ref());
        if let Some(id) = identity {
            if ty == "INTEGER" && desc.primary_key.len() == 1 && &desc.primary_key[0] == name {
                def.push_str(" PRIMARY KEY AUTOINCREMENT");
                rowid_key = true;
                let n = id.next.unwrap_or(1).max(1) - 1;
                let quoted = string(&tname);
                let seq = in_schema("sqlite_sequence");
                ddl.after_load.push(TableDdl::step(format!(
                    "INSERT INTO {seq} (name, seq) SELECT {quoted}, {n} \
                     WHERE NOT EXISTS (SELECT 1 FROM {seq} WHERE name = {quoted})"
                )));
                ddl.after_load.push(TableDdl::step(format!(
                    "UPDATE {seq} SET seq = max(seq, {n}) WHERE name = {quoted}"
                )));
            } else {
                ddl.note(
                    Some(name),
                    "auto-increment not carried: SQLite has it only on an INTEGER PRIMARY KEY",
                );
            }
        }
        if !field.is_nullable() || col.is_some_and(|c| c.not_null) {
            def.push_str(" NOT NULL");
        }
        if let Some(d) = col.and_then(|c| c.default.as_ref()) {
            if let Some(sql) = default_sql(&mut ddl, name, field.data_type(), d) {
                def.push_str(" DEFAULT ");
                def.push_str(&sql);
            }
        }
        if let Some(m) = col.and_then(|c| c.members.as_ref()) {
            if col.is_some_and(|c| c.set) {
                ddl.note(
                    Some(name),
                    "SET is text holding comma-separated members, unchecked",
                );
            } else if spec.enum_as != EnumAs::Text {
                def.push_str(&format!(
                    " CHECK ({qname} IN ({}))",
                    m.iter().map(|v| string(v)).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        ddl::note_collation(&mut ddl, col, name, "SQLite");
        if col.is_some_and(|c| c.on_update_now) {
            ddl.note(
                Some(name),
                "ON UPDATE CURRENT_TIMESTAMP not carried (SQLite has no such clause)",
            );
        }
        if col.is_some_and(|c| c.comment.is_some()) {
            ddl.note(Some(name), "comment not carried (SQLite has no comments)");
        }
        if field.metadata().get("ferry.type").map(String::as_str) == Some("geometry") {
            ddl.note(Some(name), "geometry is a BLOB (4-byte SRID, then WKB)");
        }
        defs.push(def);
    }
    if desc.comment.is_some() {
        ddl.note(None, "table comment not carried (SQLite has no comments)");
    }
    if !rowid_key {
        defs.extend(ddl::primary_key(desc, quote_ident));
    }
    for f in &desc.foreign_keys {
        if f.references.schema.is_some() {
            ddl.note(
                None,
                format!(
                    "foreign key {} references another database: not carried",
                    f.name
                ),
            );
            continue;
        }
        defs.push(format!(
            "CONSTRAINT {} {}",
            quote_ident(&f.name),
            ddl::foreign_key(f, &quote_ident(&f.references.name), quote_ident)
        ));
    }
    ddl.create.push(TableDdl::step(format!(
        "CREATE TABLE IF NOT EXISTS {table} ({})",
        defs.join(", ")
    )));
    for i in &desc.indexes {
        let name = object_name(&tname, &i.name, 256);
        let cols = i
            .columns
            .iter()
            .map(|c| {
                format!(
                    "{}{}",
                    quote_ident(&c.name),
                    if c.descending { " DESC" } else { "" }
                )
            })
            .collect::<Vec<_>>();
        ddl.after_load.push(DdlStep {
            sql: format!(
                "CREATE {}INDEX IF NOT EXISTS {} ON {} ({})",
                if i.unique { "UNIQUE " } else { "" },
                in_schema(&name),
                quote_ident(&tname),
                cols.join(", ")
            ),
            creates: Some(Object::Index(name)),
        });
    }
    Ok(ddl)
}

/// How SQLite writes a default (Ferry writes timestamps as UTC text, as
/// `CURRENT_TIMESTAMP` is, and decimals as text).
fn default_sql(
    ddl: &mut TableDdl,
    column: &str,
    dt: &DataType,
    d: &ColumnDefault,
) -> Option<String> {
    let syntax = DefaultSyntax {
        now: |dt| match dt {
            DataType::Timestamp(_, _) => Some("CURRENT_TIMESTAMP"),
            DataType::Date32 | DataType::Date64 => Some("CURRENT_DATE"),
            _ => None,
        },
        today: |_| Some("CURRENT_DATE"),
        boolean: |b| u8::from(b).to_string(),
        text: &|v| string(v),
    };
    ddl::default_sql(ddl, column, dt, d, &syntax)
}
