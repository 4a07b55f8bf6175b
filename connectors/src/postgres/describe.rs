//! A table's keys, indexes, foreign keys, defaults and identity, from `pg_catalog`.

use sqlx::{PgConnection, Row};

use super::q;
use crate::error::ConnectorError;
use crate::spec::TableRef;
use ferry_model::{
    ColumnDef, ColumnDefault, FkAction, ForeignKey, Identity, Index, IndexColumn, TableSchema,
};

/// Describes the relation `qualified` (already quoted).
pub(crate) async fn table_schema(
    conn: &mut PgConnection,
    qualified: &str,
) -> Result<TableSchema, ConnectorError> {
    let mut out = TableSchema {
        comment: sqlx::query_scalar("SELECT obj_description(to_regclass($1), 'pg_class')")
            .bind(qualified)
            .fetch_one(&mut *conn)
            .await
            .map_err(q("describing the table: comment"))?,
        ..TableSchema::default()
    };

    // Columns: default, identity or owned sequence (serial), enum labels, comment.
    let rows = sqlx::query(
        "SELECT a.attname::text, a.attnotnull, pg_get_expr(d.adbin, d.adrelid), \
         a.attidentity::text, a.attgenerated::text, col_description(a.attrelid, a.attnum), \
         pg_get_serial_sequence($1, a.attname)::text, \
         (SELECT CASE WHEN s.last_value IS NULL THEN s.start_value ELSE s.last_value + s.increment_by END \
            FROM pg_sequences s \
            WHERE format('%I.%I', s.schemaname, s.sequencename)::regclass \
                  = pg_get_serial_sequence($1, a.attname)::regclass), \
         (SELECT array_agg(e.enumlabel::text ORDER BY e.enumsortorder) FROM pg_enum e \
            WHERE e.enumtypid = a.atttypid) \
         FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum",
    )
    .bind(qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("describing the table: columns"))?;
    for r in &rows {
        let name: String = r.get(0);
        let default: Option<String> = r.get(2);
        let identity: String = r.get(3);
        let generated: String = r.get(4);
        let sequence: Option<String> = r.get(6);
        let next: Option<i64> = r.get(7);
        let mut c = ColumnDef {
            name: name.clone(),
            not_null: r.get(1),
            comment: r.get(5),
            members: r.get(8),
            ..ColumnDef::default()
        };
        let serial = sequence.is_some()
            && default
                .as_deref()
                .is_some_and(|d| d.starts_with("nextval("));
        if !identity.is_empty() || serial {
            c.identity = Some(Identity {
                next,
                always: identity == "a",
            });
        } else if !generated.is_empty() {
            out.not_carried.push(format!(
                "column {name} is generated ({}): written as a plain column",
                default.as_deref().unwrap_or_default()
            ));
        } else {
            c.default = default.as_deref().map(parse_default);
        }
        out.columns.push(c);
    }

    // Indexes (the primary key's apart), one row per key column.
    let rows = sqlx::query(
        "SELECT i.relname::text, ix.indisprimary, ix.indisunique, am.amname::text, \
         ix.indpred IS NOT NULL, a.attname::text, (ix.indoption[k.n - 1] & 1) = 1 \
         FROM pg_index ix JOIN pg_class i ON i.oid = ix.indexrelid \
         JOIN pg_am am ON am.oid = i.relam \
         CROSS JOIN LATERAL unnest(ix.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) \
         LEFT JOIN pg_attribute a ON a.attrelid = ix.indrelid AND a.attnum = k.attnum AND k.attnum > 0 \
         WHERE ix.indrelid = to_regclass($1) AND k.n <= ix.indnkeyatts \
         ORDER BY i.relname, k.n",
    )
    .bind(qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("describing the table: indexes"))?;
    let mut indexes: Vec<(Index, Option<String>)> = Vec::new();
    for r in &rows {
        let name: String = r.get(0);
        let primary: bool = r.get(1);
        let column: Option<String> = r.get(5);
        if primary {
            out.primary_key.extend(column);
            continue;
        }
        let method: String = r.get(3);
        let partial: bool = r.get(4);
        if indexes.last().is_none_or(|(i, _)| i.name != name) {
            let skip = if method != "btree" {
                Some(format!("a {method} index"))
            } else if partial {
                Some("a partial index (WHERE …)".into())
            } else {
                None
            };
            indexes.push((
                Index {
                    name: name.clone(),
                    columns: Vec::new(),
                    unique: r.get(2),
                },
                skip,
            ));
        }
        let Some((index, skip)) = indexes.last_mut() else {
            continue;
        };
        match column {
            Some(c) => index.columns.push(IndexColumn {
                name: c,
                descending: r.get(6),
                prefix: None,
            }),
            None => *skip = Some("an index on an expression".into()),
        }
    }
    for (index, skip) in indexes {
        match skip {
            Some(why) => out.not_carried.push(format!("index {}: {why}", index.name)),
            None => out.indexes.push(index),
        }
    }

    // Foreign keys, with their actions; a referenced table in the table's own schema is
    // named without it (the target maps it like the table).
    let rows = sqlx::query(
        "SELECT c.conname::text, c.confupdtype::text, c.confdeltype::text, \
         fn.nspname::text, fc.relname::text, \
         (SELECT array_agg(a.attname::text ORDER BY k.n) \
            FROM unnest(c.conkey) WITH ORDINALITY AS k(attnum, n) \
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum), \
         (SELECT array_agg(a.attname::text ORDER BY k.n) \
            FROM unnest(c.confkey) WITH ORDINALITY AS k(attnum, n) \
            JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.attnum), \
         tn.nspname::text \
         FROM pg_constraint c \
         JOIN pg_class fc ON fc.oid = c.confrelid JOIN pg_namespace fn ON fn.oid = fc.relnamespace \
         JOIN pg_class tc ON tc.oid = c.conrelid JOIN pg_namespace tn ON tn.oid = tc.relnamespace \
         WHERE c.conrelid = to_regclass($1) AND c.contype = 'f' ORDER BY c.conname",
    )
    .bind(qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("describing the table: foreign keys"))?;
    let action = |code: String| match code.as_str() {
        "r" => FkAction::Restrict,
        "c" => FkAction::Cascade,
        "n" => FkAction::SetNull,
        "d" => FkAction::SetDefault,
        _ => FkAction::NoAction,
    };
    for r in &rows {
        let ref_schema: String = r.get(3);
        let own_schema: String = r.get(7);
        out.foreign_keys.push(ForeignKey {
            name: r.get(0),
            on_update: action(r.get(1)),
            on_delete: action(r.get(2)),
            references: TableRef {
                source: None,
                schema: (ref_schema != own_schema).then_some(ref_schema),
                name: r.get(4),
            },
            columns: r.get::<Option<Vec<String>>, _>(5).unwrap_or_default(),
            referenced_columns: r.get::<Option<Vec<String>>, _>(6).unwrap_or_default(),
        });
    }

    let rows = sqlx::query(
        "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE conrelid = to_regclass($1) AND contype IN ('c', 'x') ORDER BY conname",
    )
    .bind(qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("describing the table: constraints"))?;
    for r in &rows {
        let name: String = r.get(0);
        let def: String = r.get(1);
        out.not_carried.push(format!("constraint {name}: {def}"));
    }
    let rows = sqlx::query(
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = to_regclass($1) AND NOT tgisinternal \
         ORDER BY tgname",
    )
    .bind(qualified)
    .fetch_all(&mut *conn)
    .await
    .map_err(q("describing the table: triggers"))?;
    for r in &rows {
        let name: String = r.get(0);
        out.not_carried
            .push(format!("trigger {name}: triggers are not migrated"));
    }
    Ok(out)
}

/// Tables of every schema but the system's (`schema.table` outside the current schema),
/// and views, materialized views, foreign tables and routines as not migrated.
pub(crate) async fn list_tables(
    conn: &mut PgConnection,
) -> Result<crate::traits::TableListing, ConnectorError> {
    let rows = sqlx::query(
        "SELECT n.nspname::text, c.relname::text, c.relkind::text, n.nspname = current_schema(), \
         greatest(c.reltuples, 0)::bigint \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition \
           AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' \
         ORDER BY n.nspname <> current_schema(), n.nspname, c.relname",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("listing the database's tables"))?;
    let mut out = crate::traits::TableListing::default();
    for r in &rows {
        let schema: String = r.get(0);
        let name: String = r.get(1);
        let kind: String = r.get(2);
        let current: bool = r.get(3);
        // Quoted only where a name would not read back as itself.
        let part = |p: String| {
            if p.contains(['.', '"']) {
                super::quote_ident(&p)
            } else {
                p
            }
        };
        let shown = if current {
            part(name)
        } else {
            format!("{}.{}", part(schema), part(name))
        };
        match kind.as_str() {
            "r" | "p" => {
                out.tables.push(shown);
                let rows: i64 = r.get(4);
                out.rows.push(u64::try_from(rows).unwrap_or(0));
            }
            "v" => out.not_migrated.push(format!("view {shown}")),
            "m" => out.not_migrated.push(format!("materialized view {shown}")),
            _ => out.not_migrated.push(format!("foreign table {shown}")),
        }
    }
    let rows = sqlx::query(
        "SELECT CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate' ELSE 'function' END, \
         n.nspname::text || '.' || p.proname::text \
         FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
         LEFT JOIN pg_depend d ON d.objid = p.oid AND d.deptype = 'e' \
         WHERE d.objid IS NULL AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg\\_%' ORDER BY 2",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(q("listing the database's routines"))?;
    for r in &rows {
        let kind: String = r.get(0);
        let name: String = r.get(1);
        out.not_migrated.push(format!("{kind} {name}"));
    }
    Ok(out)
}

/// A default as `pg_get_expr` prints it: `'text'::character varying`, `42`,
/// `'-1.5'::numeric`, `(-1)`, `true`, `now()`, `CURRENT_TIMESTAMP`, `NULL::text`, ...
fn parse_default(expr: &str) -> ColumnDefault {
    let t = expr.trim();
    let lower = t.to_ascii_lowercase();
    if matches!(
        lower.as_str(),
        "now()"
            | "current_timestamp"
            | "transaction_timestamp()"
            | "localtimestamp"
            | "statement_timestamp()"
    ) || lower.starts_with("current_timestamp(")
        || lower.starts_with("localtimestamp(")
    {
        return ColumnDefault::CurrentTimestamp;
    }
    if lower == "current_date" {
        return ColumnDefault::CurrentDate;
    }
    let bare = strip_cast(t);
    let bare = bare
        .strip_prefix('(')
        .and_then(|b| b.strip_suffix(')'))
        .unwrap_or(bare);
    if bare.eq_ignore_ascii_case("null") {
        return ColumnDefault::Null;
    }
    if bare == "true" || bare == "false" {
        return ColumnDefault::Literal(bare.to_string());
    }
    if let Some(inner) = bare.strip_prefix('\'').and_then(|b| b.strip_suffix('\'')) {
        if !inner.replace("''", "").contains('\'') {
            return ColumnDefault::Literal(inner.replace("''", "'"));
        }
    }
    let numeric = !bare.is_empty()
        && bare
            .trim_start_matches('-')
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'));
    if numeric {
        return ColumnDefault::Literal(bare.to_string());
    }
    ColumnDefault::Expression(t.to_string())
}

/// `x::type` (any number of casts, type names with spaces, brackets and parentheses) to `x`,
/// when the casts are the last thing outside quotes.
fn strip_cast(s: &str) -> &str {
    let mut in_quote = false;
    let mut depth = 0i32;
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => in_quote = !in_quote,
            b'(' if !in_quote => depth += 1,
            b')' if !in_quote => depth -= 1,
            b':' if !in_quote && depth == 0 && bytes.get(i + 1) == Some(&b':') => {
                return &s[..i];
            }
            _ => {}
        }
        i += 1;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let lit = |s: &str| ColumnDefault::Literal(s.into());
        assert_eq!(parse_default("'it''s'::character varying"), lit("it's"));
        assert_eq!(parse_default("42"), lit("42"));
        assert_eq!(parse_default("'-1.50'::numeric"), lit("-1.50"));
        assert_eq!(parse_default("(-1)"), lit("-1"));
        assert_eq!(parse_default("true"), lit("true"));
        assert_eq!(parse_default("'2020-01-02'::date"), lit("2020-01-02"));
        assert_eq!(parse_default("NULL::text"), ColumnDefault::Null);
        assert_eq!(parse_default("now()"), ColumnDefault::CurrentTimestamp);
        assert_eq!(
            parse_default("CURRENT_TIMESTAMP"),
            ColumnDefault::CurrentTimestamp
        );
        assert_eq!(parse_default("CURRENT_DATE"), ColumnDefault::CurrentDate);
        assert_eq!(
            parse_default("gen_random_uuid()"),
            ColumnDefault::Expression("gen_random_uuid()".into())
        );
        assert_eq!(
            parse_default("('a'::text || 'b'::text)"),
            ColumnDefault::Expression("('a'::text || 'b'::text)".into())
        );
    }
}
