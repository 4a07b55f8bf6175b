//! The agent's own check of every read the broker asks for.
//!
//! The agent is the trust boundary: a plan request or a task may have been
//! written by a hostile broker. Before anything reaches a database or a
//! disk, a read spec is held against its data source's policy (the agent's
//! config), here, whatever the broker's job parser already checked:
//!
//! - free-form SQL (`querySql`, present in any form, even blank) only where
//!   the source sets `allow_query_sql`, and then one read-only statement
//!   whose tables the policy allows ([`ferry_screen::screen_query`]);
//! - the table against `tables`, inside the source's own database, never a
//!   system catalog unless listed by name;
//! - a `where` parsed and rendered again from an allowed expression subset,
//!   against the table's own columns ([`ferry_screen::screen_where`]);
//! - numbers (rows per batch, splits) under this agent's [`ReadLimits`].

use ferry_connectors::ReadSpec;
use serde::{Deserialize, Serialize};

use crate::config::SourceConfig;

/// Caps on what one broker message may make the agent do (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReadLimits {
    /// Rows per batch (`fetchSize`) a read may ask for.
    pub max_fetch_size: usize,
    /// Splits one plan may cut a read into (a job's `channel` asks for them).
    pub max_splits: u32,
    /// Tasks running at once; more are refused until one ends.
    pub max_tasks: usize,
    /// Plan requests answered at once; more are refused.
    pub max_plans: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_fetch_size: ferry_engine::config::MAX_FETCH_SIZE,
            max_splits: 1024,
            max_tasks: 64,
            max_plans: 16,
        }
    }
}

/// A read the source's policy does not allow.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// `querySql` was given (in any form) to a source without `allow_query_sql`.
    #[error("data source `{source_name}` does not allow free-form SQL (querySql); set allow_query_sql = true for it in the agent's config to permit it")]
    QuerySql { source_name: String },
    /// The read names no table (and no query).
    #[error("data source `{source_name}`: a read needs `table`")]
    NoTable { source_name: String },
    /// The table is not one the source's `tables` lists.
    #[error(
        "data source `{source_name}` does not allow reading table `{table}` (allowed: {allowed})"
    )]
    Table {
        source_name: String,
        table: String,
        allowed: String,
    },
    /// A system catalog, readable only when listed by its exact name.
    #[error("data source `{source_name}`: `{table}` is a system catalog; list it by name in the source's `tables` to allow it")]
    SystemTable { source_name: String, table: String },
    /// A table of another database than the one the source connects to.
    #[error("data source `{source_name}`: table `{table}` is outside the source's database{}", database.as_deref().map(|d| format!(" `{d}`")).unwrap_or_default())]
    OtherDatabase {
        source_name: String,
        table: String,
        database: Option<String>,
    },
    /// A table name that does not parse as `[schema.]table`.
    #[error("data source `{source_name}`: `{table}` is not a table name")]
    BadTableName { source_name: String, table: String },
    /// SQL text refused by the screen (it names the construct).
    #[error("data source `{source_name}`: {source}")]
    Screen {
        source_name: String,
        source: ferry_screen::ScreenError,
    },
    /// A number over this agent's limit.
    #[error(
        "`{field}` = {value} is over this agent's limit of {limit} ([limits] {key} in its config)"
    )]
    Limit {
        field: &'static str,
        key: &'static str,
        value: u64,
        limit: u64,
    },
    /// A parameter this kind of source does not take.
    #[error("data source `{source_name}` is a {kind} source: it takes no `{field}`")]
    NotForKind {
        source_name: String,
        kind: String,
        field: &'static str,
    },
}

/// The SQL dialect of a source kind (`None`: not a SQL source).
pub fn dialect(kind: &str) -> Option<ferry_screen::Dialect> {
    ferry_connectors::Kind::from_name(kind).and_then(ferry_connectors::Kind::dialect)
}

/// Checks what can be checked of `spec` without the source's catalog:
/// numbers, free-form SQL, the table. `querySql` is replaced by the
/// screened statement. The `where` is screened later, against the table's
/// columns ([`screen_where`]).
pub fn check_spec(
    name: &str,
    config: &SourceConfig,
    spec: &mut ReadSpec,
    limits: &ReadLimits,
) -> Result<(), PolicyError> {
    if spec.fetch_size > limits.max_fetch_size {
        return Err(PolicyError::Limit {
            field: "fetchSize",
            key: "max_fetch_size",
            value: spec.fetch_size as u64,
            limit: limits.max_fetch_size as u64,
        });
    }
    spec.fetch_size = spec.fetch_size.max(1);
    let Some(dialect) = dialect(&config.kind) else {
        // Files: no SQL at all; their paths are checked by `files`.
        for (field, given) in [
            ("querySql", spec.query_sql.is_some()),
            ("where", spec.where_clause.is_some()),
            ("splitPk", spec.split_pk.is_some()),
        ] {
            if given {
                return Err(PolicyError::NotForKind {
                    source_name: name.into(),
                    kind: config.kind.clone(),
                    field,
                });
            }
        }
        return Ok(());
    };
    if let Some(query) = spec.query_sql.as_deref() {
        if !config.allow_query_sql {
            return Err(PolicyError::QuerySql {
                source_name: name.into(),
            });
        }
        let screened =
            ferry_screen::screen_query(query, dialect).map_err(|source| PolicyError::Screen {
                source_name: name.into(),
                source,
            })?;
        for table in &screened.tables {
            check_table(name, config, table)?;
        }
        spec.query_sql = Some(screened.sql);
        spec.table = None;
        return Ok(());
    }
    let table = spec
        .table
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| PolicyError::NoTable {
            source_name: name.into(),
        })?;
    check_table(name, config, table)
}

/// Screens the `where` of `spec` (if any) against `columns`, the table's
/// (or the query's) column names, and replaces it with the rendered filter.
pub fn screen_where(
    name: &str,
    config: &SourceConfig,
    spec: &mut ReadSpec,
    columns: &[String],
) -> Result<(), PolicyError> {
    let Some(dialect) = dialect(&config.kind) else {
        return Ok(());
    };
    let Some(w) = spec.where_clause.as_deref() else {
        return Ok(());
    };
    if w.trim().is_empty() {
        spec.where_clause = None;
        return Ok(());
    }
    let rendered = ferry_screen::screen_where(w, dialect, Some(columns)).map_err(|source| {
        PolicyError::Screen {
            source_name: name.into(),
            source,
        }
    })?;
    spec.where_clause = Some(rendered);
    Ok(())
}

/// `table` (as a job or a query names it) against the source's policy.
pub fn check_table(name: &str, config: &SourceConfig, table: &str) -> Result<(), PolicyError> {
    let parts = split_name(table).ok_or_else(|| PolicyError::BadTableName {
        source_name: name.into(),
        table: table.into(),
    })?;
    let clean = parts.join(".");
    let listed_exactly = config.tables.iter().any(|p| unquote(p) == clean);
    let (schema, relation) = match parts.as_slice() {
        [t] => (None, t.as_str()),
        [s, t] => (Some(s.as_str()), t.as_str()),
        _ => {
            // database.schema.table: always another database's name.
            return Err(PolicyError::OtherDatabase {
                source_name: name.into(),
                table: table.into(),
                database: database_of(&config.kind, &config.url),
            });
        }
    };
    match config.kind.as_str() {
        "mysql" => {
            // A MySQL "schema" is a database: only the source's own.
            let own = database_of("mysql", &config.url);
            if let Some(s) = schema {
                if own.as_deref() != Some(s) {
                    return Err(PolicyError::OtherDatabase {
                        source_name: name.into(),
                        table: table.into(),
                        database: own,
                    });
                }
            }
        }
        "sqlite" if schema.is_some_and(|s| s != "main") => {
            return Err(PolicyError::OtherDatabase {
                source_name: name.into(),
                table: table.into(),
                database: Some("main".into()),
            });
        }
        _ => {}
    }
    if is_system(&config.kind, schema, relation) && !listed_exactly {
        return Err(PolicyError::SystemTable {
            source_name: name.into(),
            table: table.into(),
        });
    }
    if !config.tables.is_empty() && !config.tables.iter().any(|p| table_matches(p, &clean)) {
        return Err(PolicyError::Table {
            source_name: name.into(),
            table: table.into(),
            allowed: config.tables.join(", "),
        });
    }
    Ok(())
}

/// Whether `schema.relation` is a system catalog of `kind`. PostgreSQL
/// finds an unqualified `pg_*` name in `pg_catalog` first, whatever the
/// search path.
fn is_system(kind: &str, schema: Option<&str>, relation: &str) -> bool {
    let lower = |s: &str| s.to_ascii_lowercase();
    match kind {
        "postgres" => {
            schema.is_some_and(|s| {
                let s = lower(s);
                s == "pg_catalog" || s == "information_schema" || s.starts_with("pg_")
            }) || (schema.is_none() && lower(relation).starts_with("pg_"))
        }
        "mysql" => schema.is_some_and(|s| {
            matches!(
                lower(s).as_str(),
                "mysql" | "information_schema" | "performance_schema" | "sys"
            )
        }),
        "sqlite" => lower(relation).starts_with("sqlite_"),
        _ => false,
    }
}

/// The parts of `[schema.]table`, quotes (`"` or `` ` ``) removed; `None`
/// for an empty part or an unterminated quote.
fn split_name(name: &str) -> Option<Vec<String>> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = name.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => {
                if chars.peek() == Some(&q) {
                    cur.push(q);
                    chars.next();
                } else {
                    quote = None;
                }
            }
            (Some(_), c) => cur.push(c),
            (None, '"' | '`') => quote = Some(c),
            (None, '.') => {
                let part = std::mem::take(&mut cur);
                if part.trim().is_empty() {
                    return None;
                }
                parts.push(part.trim().to_string());
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() || cur.trim().is_empty() {
        return None;
    }
    parts.push(cur.trim().to_string());
    Some(parts)
}

fn unquote(pattern: &str) -> String {
    pattern.replace(['"', '`'], "")
}

/// `pattern` is a table name, `schema.*`, or `*` (case-sensitive, quotes
/// and backticks ignored).
fn table_matches(pattern: &str, table: &str) -> bool {
    let pattern = unquote(pattern);
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => table.starts_with(prefix) && !table[prefix.len()..].contains('.'),
        None => pattern == table,
    }
}

/// The database a connection URL names (`mysql://u@h:3306/shop?x` → `shop`).
pub fn database_of(kind: &str, url: &str) -> Option<String> {
    if kind == "sqlite" {
        return Some("main".into());
    }
    let rest = url.split_once("://")?.1;
    let path = rest.split_once('/')?.1;
    let db = path.split(['?', '#']).next()?;
    (!db.is_empty()).then(|| percent_decode(db))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(kind: &str, url: &str, tables: &[&str], allow: bool) -> SourceConfig {
        SourceConfig {
            kind: kind.into(),
            url: url.into(),
            options: Default::default(),
            tables: tables.iter().map(|t| t.to_string()).collect(),
            allow_query_sql: allow,
            changes: None,
            secrets: Default::default(),
        }
    }

    fn spec(table: &str) -> ReadSpec {
        ReadSpec {
            table: Some(table.into()),
            ..Default::default()
        }
    }

    #[test]
    fn tables_are_held_against_the_policy() {
        let pg = source(
            "postgres",
            "postgres://u@h/db",
            &["orders", "audit.*"],
            false,
        );
        let limits = ReadLimits::default();
        for ok in ["orders", "audit.log", "\"audit\".\"log\""] {
            check_spec("db", &pg, &mut spec(ok), &limits).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = check_spec("db", &pg, &mut spec("users"), &limits).unwrap_err();
        assert!(
            e.to_string().contains("table `users`") && e.to_string().contains("orders, audit.*"),
            "{e}"
        );
        for bad in ["audit.x.y", "other.orders", "orders\"", ".orders", ""] {
            assert!(
                check_spec("db", &pg, &mut spec(bad), &limits).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn system_catalogs_and_other_databases_are_refused() {
        let limits = ReadLimits::default();
        let pg = source("postgres", "postgres://u@h/db", &[], false);
        for bad in [
            "pg_authid",
            "pg_catalog.pg_authid",
            "information_schema.tables",
            "PG_CATALOG.pg_class",
            "pg_toast.x",
        ] {
            let e = check_spec("db", &pg, &mut spec(bad), &limits).unwrap_err();
            assert!(e.to_string().contains("system catalog"), "{bad}: {e}");
        }
        check_spec("db", &pg, &mut spec("public.orders"), &limits).unwrap();
        // Listed by name, a catalog is the owner's choice.
        let listed = source(
            "postgres",
            "postgres://u@h/db",
            &["pg_catalog.pg_class"],
            false,
        );
        check_spec("db", &listed, &mut spec("pg_catalog.pg_class"), &limits).unwrap();
        let star = source("postgres", "postgres://u@h/db", &["pg_catalog.*"], false);
        assert!(check_spec("db", &star, &mut spec("pg_catalog.pg_authid"), &limits).is_err());

        let my = source(
            "mysql",
            "mysql://r@h:3306/shop?ssl-mode=disabled",
            &[],
            false,
        );
        check_spec("db", &my, &mut spec("orders"), &limits).unwrap();
        check_spec("db", &my, &mut spec("shop.orders"), &limits).unwrap();
        check_spec("db", &my, &mut spec("`shop`.`orders`"), &limits).unwrap();
        for bad in [
            "mysql.user",
            "other.orders",
            "`mysql`.`user`",
            "information_schema.user_privileges",
        ] {
            let e = check_spec("db", &my, &mut spec(bad), &limits).unwrap_err();
            assert!(
                e.to_string()
                    .contains("outside the source's database `shop`"),
                "{bad}: {e}"
            );
        }

        let lite = source("sqlite", "sqlite:///tmp/x.db", &[], false);
        for bad in ["sqlite_master", "SQLITE_schema", "other.t", "temp.t"] {
            assert!(
                check_spec("db", &lite, &mut spec(bad), &limits).is_err(),
                "{bad}"
            );
        }
        check_spec("db", &lite, &mut spec("main.t"), &limits).unwrap();
    }

    #[test]
    fn query_sql_in_any_form_needs_the_permission() {
        let limits = ReadLimits::default();
        let pg = source("postgres", "postgres://u@h/db", &["orders"], false);
        for q in ["select * from secret", " ", ""] {
            let mut s = ReadSpec {
                table: Some("orders".into()),
                query_sql: Some(q.into()),
                ..Default::default()
            };
            let e = check_spec("db", &pg, &mut s, &limits).unwrap_err();
            assert!(matches!(e, PolicyError::QuerySql { .. }), "{q:?}: {e}");
        }
        // Allowed: one read-only statement over listed tables only.
        let free = source("postgres", "postgres://u@h/db", &["orders"], true);
        let mut s = ReadSpec {
            query_sql: Some("select id from orders where id > 1".into()),
            ..Default::default()
        };
        check_spec("db", &free, &mut s, &limits).unwrap();
        for q in [
            "select * from secret",
            "select * from orders; drop table orders",
            "select * from pg_authid",
            "delete from orders",
        ] {
            let mut s = ReadSpec {
                query_sql: Some(q.into()),
                ..Default::default()
            };
            assert!(check_spec("db", &free, &mut s, &limits).is_err(), "{q}");
        }
    }

    #[test]
    fn numbers_are_capped_and_files_take_no_sql() {
        let limits = ReadLimits::default();
        let pg = source("postgres", "postgres://u@h/db", &[], false);
        let mut s = spec("orders");
        s.fetch_size = 100_000_000_000;
        let e = check_spec("db", &pg, &mut s, &limits).unwrap_err();
        assert!(
            e.to_string().contains("fetchSize") && e.to_string().contains("100000"),
            "{e}"
        );
        let files = source("file", "/var/log", &[], false);
        let mut s = ReadSpec {
            where_clause: Some("1=1".into()),
            ..Default::default()
        };
        assert!(check_spec("logs", &files, &mut s, &limits).is_err());
    }

    #[test]
    fn where_is_rendered_against_the_columns() {
        let pg = source("postgres", "postgres://u@h/db", &[], false);
        let cols = vec!["id".to_string(), "name".to_string()];
        let mut s = spec("orders");
        s.where_clause = Some("id > 5 and name like 'a%'".into());
        screen_where("db", &pg, &mut s, &cols).unwrap();
        let w = s.where_clause.unwrap();
        assert!(w.contains("\"id\"") && w.contains("\"name\""), "{w}");
        for bad in [
            "false) UNION ALL (TABLE secret",
            "pg_read_file('/etc/passwd') is not null",
            "secret > 0",
            "id > 0; drop table orders",
        ] {
            let mut s = spec("orders");
            s.where_clause = Some(bad.into());
            assert!(screen_where("db", &pg, &mut s, &cols).is_err(), "{bad}");
        }
    }

    #[test]
    fn database_names_come_from_the_url() {
        assert_eq!(
            database_of("mysql", "mysql://u:p@h:3306/shop").as_deref(),
            Some("shop")
        );
        assert_eq!(
            database_of("mysql", "mysql://u@h/my%20db?x=1").as_deref(),
            Some("my db")
        );
        assert_eq!(database_of("mysql", "mysql://u@h:3306"), None);
    }
}
