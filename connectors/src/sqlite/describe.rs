//! A table's keys, indexes, foreign keys, defaults and rowid identity, from SQLite's
//! `pragma_*` table functions.

use sqlx::{Row, SqlitePool};

use super::{q, quote_ident};
use crate::error::ConnectorError;
use crate::spec::TableRef;
use ferry_model::{
    ColumnDef, ColumnDefault, FkAction, ForeignKey, Identity, Index, IndexColumn, TableSchema,
};

/// Describes table `name` of schema `schema` (`main` when `None`).
pub(crate) async fn table_schema(
    pool: &SqlitePool,
    schema: &Option<String>,
    name: &str,
) -> Result<TableSchema, ConnectorError> {
    let db = schema.as_deref().unwrap_or("main");
    let mut out = TableSchema::default();
    let master = format!("{}.sqlite_master", quote_ident(db));
    let create: Option<String> = sqlx::query_scalar(&format!(
        "SELECT sql FROM {master} WHERE type = 'table' AND name = ?1"
    ))
    .bind(name)
    .fetch_optional(pool)
    .await
    .map_err(q("describing the table"))?
    .flatten();
    let Some(create) = create else {
        return Err(ConnectorError::NoSuchTable(name.to_string()));
    };
    let upper = create.to_ascii_uppercase();
    let autoincrement = upper.contains("AUTOINCREMENT");
    let without_rowid = upper.contains("WITHOUT ROWID");

    let rows = sqlx::query(
        "SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1, ?2) ORDER BY cid",
    )
    .bind(name)
    .bind(db)
    .fetch_all(pool)
    .await
    .map_err(q("describing the table: columns"))?;
    let mut pk: Vec<(i64, String)> = Vec::new();
    for r in &rows {
        let col: String = r.get(0);
        let p: i64 = r.get(4);
        if p > 0 {
            pk.push((p, col.clone()));
        }
        out.columns.push(ColumnDef {
            name: col,
            not_null: r.get::<i64, _>(2) != 0,
            default: r.get::<Option<String>, _>(3).map(|d| parse_default(&d)),
            ..ColumnDef::default()
        });
    }
    pk.sort();
    out.primary_key = pk.into_iter().map(|(_, c)| c).collect();
    // A rowid alias is filled by SQLite: an identity column everywhere else.
    if out.primary_key.len() == 1 && !without_rowid {
        let key = out.primary_key[0].clone();
        let integer = rows.iter().any(|r| {
            r.get::<String, _>(0) == key && r.get::<String, _>(1).eq_ignore_ascii_case("INTEGER")
        });
        if integer {
            let next = if autoincrement {
                sqlx::query_scalar::<_, i64>(&format!(
                    "SELECT seq + 1 FROM {}.sqlite_sequence WHERE name = ?1",
                    quote_ident(db)
                ))
                .bind(name)
                .fetch_optional(pool)
                .await
                .ok()
                .flatten()
            } else {
                None
            };
            if let Some(c) = out.columns.iter_mut().find(|c| c.name == key) {
                c.identity = Some(Identity {
                    next,
                    always: false,
                });
            }
        }
    }

    let rows = sqlx::query(
        "SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1, ?2) ORDER BY name",
    )
    .bind(name)
    .bind(db)
    .fetch_all(pool)
    .await
    .map_err(q("describing the table: indexes"))?;
    for r in &rows {
        let index: String = r.get(0);
        let origin: String = r.get(2);
        if origin == "pk" {
            continue;
        }
        if r.get::<i64, _>(3) != 0 {
            out.not_carried
                .push(format!("index {index}: a partial index (WHERE …)"));
            continue;
        }
        let cols = sqlx::query(
            "SELECT name, \"desc\" FROM pragma_index_xinfo(?1, ?2) WHERE key = 1 ORDER BY seqno",
        )
        .bind(&index)
        .bind(db)
        .fetch_all(pool)
        .await
        .map_err(q("describing the table: index columns"))?;
        let columns: Option<Vec<IndexColumn>> = cols
            .iter()
            .map(|c| {
                c.get::<Option<String>, _>(0).map(|name| IndexColumn {
                    name,
                    descending: c.get::<i64, _>(1) != 0,
                    prefix: None,
                })
            })
            .collect();
        match columns {
            Some(columns) => out.indexes.push(Index {
                // Indexes SQLite makes for UNIQUE constraints have internal names.
                name: if origin == "u" {
                    format!(
                        "{name}_{}_key",
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join("_")
                    )
                } else {
                    index
                },
                columns,
                unique: r.get::<i64, _>(1) != 0,
            }),
            None => out
                .not_carried
                .push(format!("index {index}: an index on an expression")),
        }
    }

    let rows = sqlx::query(
        "SELECT id, \"table\", \"from\", \"to\", on_update, on_delete \
         FROM pragma_foreign_key_list(?1, ?2) ORDER BY id, seq",
    )
    .bind(name)
    .bind(db)
    .fetch_all(pool)
    .await
    .map_err(q("describing the table: foreign keys"))?;
    let mut last: Option<i64> = None;
    for r in &rows {
        let id: i64 = r.get(0);
        let to: Option<String> = r.get(3);
        let from: String = r.get(2);
        let referenced: String = r.get(1);
        if last == Some(id) {
            if let Some(f) = out.foreign_keys.last_mut() {
                f.columns.push(from);
                f.referenced_columns.extend(to);
            }
            continue;
        }
        last = Some(id);
        out.foreign_keys.push(ForeignKey {
            name: format!("{name}_fk{id}"),
            columns: vec![from],
            references: TableRef {
                source: None,
                schema: None,
                name: referenced,
            },
            // `REFERENCES t` without columns means t's primary key; left for the target
            // to fill (it fails clearly if it cannot).
            referenced_columns: to.into_iter().collect(),
            on_update: FkAction::parse(r.get::<String, _>(4).as_str()).unwrap_or_default(),
            on_delete: FkAction::parse(r.get::<String, _>(5).as_str()).unwrap_or_default(),
        });
    }
    let triggers: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT name FROM {master} WHERE type = 'trigger' AND tbl_name = ?1 ORDER BY name"
    ))
    .bind(name)
    .fetch_all(pool)
    .await
    .map_err(q("describing the table: triggers"))?;
    for t in triggers {
        out.not_carried
            .push(format!("trigger {t}: triggers are not migrated"));
    }
    if upper.contains("CHECK") {
        out.not_carried
            .push("CHECK constraints: not migrated from SQLite".into());
    }
    Ok(out)
}

/// The tables of `main` (not SQLite's own), and its views as not migrated.
pub(crate) async fn list_tables(
    pool: &SqlitePool,
) -> Result<crate::traits::TableListing, ConnectorError> {
    let rows = sqlx::query(
        "SELECT type, name FROM main.sqlite_master WHERE type IN ('table', 'view') \
         AND name NOT LIKE 'sqlite!_%' ESCAPE '!' ORDER BY name",
    )
    .fetch_all(pool)
    .await
    .map_err(q("listing the database's tables"))?;
    let mut out = crate::traits::TableListing::default();
    for r in &rows {
        let kind: String = r.get(0);
        let mut name: String = r.get(1);
        if name.contains(['.', '"']) {
            name = quote_ident(&name);
        }
        if kind == "table" {
            out.tables.push(name);
        } else {
            out.not_migrated.push(format!("view {name}"));
        }
    }
    Ok(out)
}

/// A default as `pragma_table_info` gives it: the SQL text of the `DEFAULT` clause.
fn parse_default(d: &str) -> ColumnDefault {
    let t = d.trim();
    let upper = t.to_ascii_uppercase();
    match upper.as_str() {
        "NULL" => return ColumnDefault::Null,
        "CURRENT_TIMESTAMP" => return ColumnDefault::CurrentTimestamp,
        "CURRENT_DATE" => return ColumnDefault::CurrentDate,
        "TRUE" => return ColumnDefault::Literal("true".into()),
        "FALSE" => return ColumnDefault::Literal("false".into()),
        _ => {}
    }
    if let Some(inner) = t.strip_prefix('\'').and_then(|b| b.strip_suffix('\'')) {
        if !inner.replace("''", "").contains('\'') {
            return ColumnDefault::Literal(inner.replace("''", "'"));
        }
    }
    let bare = t
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or(t);
    let numeric = !bare.is_empty()
        && bare
            .trim_start_matches(['-', '+'])
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if numeric {
        return ColumnDefault::Literal(bare.trim_start_matches('+').to_string());
    }
    ColumnDefault::Expression(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let lit = |s: &str| ColumnDefault::Literal(s.into());
        assert_eq!(parse_default("'it''s'"), lit("it's"));
        assert_eq!(parse_default("-3"), lit("-3"));
        assert_eq!(parse_default("(+2.5)"), lit("2.5"));
        assert_eq!(parse_default("NULL"), ColumnDefault::Null);
        assert_eq!(
            parse_default("CURRENT_TIMESTAMP"),
            ColumnDefault::CurrentTimestamp
        );
        assert_eq!(
            parse_default("(datetime('now'))"),
            ColumnDefault::Expression("(datetime('now'))".into())
        );
    }
}
