//! `screen_query`: a free-form query must be one read-only SELECT; its tables are listed.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, Ident, ObjectName, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::parser::Parser;

use crate::{excerpt, not_allowed, parser_error, precheck, variant_name, Dialect, ScreenError};

const CONTEXT: &str = "querySql";

/// A free-form query that passed [`screen_query`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenedQuery {
    /// The SQL to run: rendered from the parsed tree for PostgreSQL and SQLite, the original
    /// text (trimmed, without a trailing `;`) for MySQL.
    pub sql: String,
    /// The tables the query reads, as written (schema-qualified where given, quoted where
    /// quoted), each once, in order of appearance. CTE names are not listed.
    pub tables: Vec<String>,
}

/// Functions refused in free-form queries even inside a SELECT: they read server files, sleep,
/// change server state, or reach other servers. Compared with the last part of the name,
/// case-insensitively. This is a second line of defence: the reader's database role should
/// not be able to call them either.
const DENIED_FUNCTIONS: &[&str] = &[
    // PostgreSQL
    "pg_read_file",
    "pg_read_binary_file",
    "pg_ls_dir",
    "pg_stat_file",
    "pg_sleep",
    "pg_sleep_for",
    "pg_sleep_until",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_notify",
    "pg_switch_wal",
    "pg_create_restore_point",
    "set_config",
    "setval",
    "nextval",
    "lo_import",
    "lo_export",
    "lo_from_bytea",
    "lo_put",
    "lo_create",
    "lo_creat",
    "lo_unlink",
    "lo_get",
    "dblink",
    "dblink_exec",
    "dblink_connect",
    "dblink_send_query",
    "table_to_xml",
    "table_to_xmlschema",
    "table_to_xml_and_xmlschema",
    "query_to_xml",
    "query_to_xmlschema",
    "query_to_xml_and_xmlschema",
    "cursor_to_xml",
    "schema_to_xml",
    "schema_to_xml_and_xmlschema",
    "database_to_xml",
    "database_to_xml_and_xmlschema",
    // MySQL
    "load_file",
    "sleep",
    "benchmark",
    "get_lock",
    "release_lock",
    "release_all_locks",
    "sys_exec",
    "sys_eval",
    // SQLite (extensions)
    "load_extension",
    "readfile",
    "writefile",
    "edit",
    "fts3_tokenizer",
];

/// Name prefixes refused the same way (families of administration functions).
const DENIED_PREFIXES: &[&str] = &[
    "pg_ls_",
    "pg_read_",
    "pg_advisory",
    "pg_sleep",
    "lo_",
    "dblink",
];

/// A free-form query (`querySql`, only for sources that allow it): exactly one read-only
/// SELECT statement. Returns the SQL to run (rendered from the tree for Postgres and SQLite,
/// see below) and the tables it reads (as written, schema-qualified where given), so the
/// agent can check them against its table policy.
///
/// For PostgreSQL and SQLite `sql` is the statement rendered by `sqlparser` (comments and
/// anything the server could tokenize differently are gone; the rendering is parsed again
/// and must give the same tree). For MySQL it is the original text, trimmed, without a
/// trailing `;`: `sqlparser` does not re-escape backslashes in MySQL strings, so rendering
/// could change the query. MySQL queries are therefore refused when they hold a backslash
/// (whose meaning depends on `NO_BACKSLASH_ESCAPES`) or a comment (`--`, `#` and `/*` rules
/// differ between servers and versions, and `/*+ SET_VAR(...) */` hints change settings).
pub fn screen_query(text: &str, dialect: Dialect) -> Result<ScreenedQuery, ScreenError> {
    precheck(CONTEXT, text)?;
    let sql_dialect = dialect.parser_dialect();
    if dialect == Dialect::MySql {
        if text.contains('\\') {
            return Err(not_allowed(
                CONTEXT,
                "backslashes are not allowed in MySQL queries (their meaning depends on the server's sql_mode)",
            ));
        }
        if crate::has_comment(CONTEXT, sql_dialect, text)? {
            return Err(not_allowed(
                CONTEXT,
                "comments are not allowed in MySQL queries (they are sent to the server as written)",
            ));
        }
    }

    let statements = parse_statements(text, dialect)?;
    let statement = match statements.as_slice() {
        [] => return Err(ScreenError::Empty { context: CONTEXT }),
        [one] => one,
        _ => return Err(ScreenError::MultipleStatements { context: CONTEXT }),
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err(not_allowed(
            CONTEXT,
            format!(
                "only a SELECT query is allowed, not a `{}` statement",
                variant_name(statement)
            ),
        ));
    }

    let mut screen = QueryScreen {
        dialect,
        frames: Vec::new(),
        tables: Vec::new(),
    };
    if let ControlFlow::Break(err) = statement.visit(&mut screen) {
        return Err(err);
    }

    let sql = match dialect {
        Dialect::MySql => {
            let mut sql = text.trim();
            while let Some(rest) = sql.strip_suffix(';') {
                sql = rest.trim_end();
            }
            sql.to_owned()
        }
        Dialect::Postgres | Dialect::Sqlite => {
            let rendered = statement.to_string();
            let again = parse_statements(&rendered, dialect)?;
            if again.as_slice() != std::slice::from_ref(statement) {
                return Err(not_allowed(
                    CONTEXT,
                    "the query cannot be rendered again faithfully (please simplify it)",
                ));
            }
            rendered
        }
    };
    Ok(ScreenedQuery {
        sql,
        tables: screen.tables,
    })
}

fn parse_statements(text: &str, dialect: Dialect) -> Result<Vec<Statement>, ScreenError> {
    Parser::new(dialect.parser_dialect())
        .with_recursion_limit(crate::PARSER_RECURSION_LIMIT)
        .try_with_sql(text)
        .and_then(|mut p| p.parse_statements())
        .map_err(|e| parser_error(CONTEXT, e))
}

/// One query level: the CTE names its relations may refer to.
struct Frame {
    /// CTE names visible from outer levels (for this query's own CTE bodies too).
    inherited: Vec<String>,
    /// This query's CTEs: the address of each body and its normalised name.
    ctes: Vec<(*const Query, String)>,
    /// `WITH RECURSIVE`: a CTE body may refer to itself.
    recursive: bool,
}

impl Frame {
    fn visible(&self) -> impl Iterator<Item = &String> {
        self.inherited
            .iter()
            .chain(self.ctes.iter().map(|(_, n)| n))
    }
}

struct QueryScreen {
    dialect: Dialect,
    frames: Vec<Frame>,
    tables: Vec<String>,
}

impl QueryScreen {
    /// A name as the server compares it: PostgreSQL folds unquoted names to lower case; the
    /// others are compared as written (a mismatch only lists a CTE as a table, never hides one).
    fn normalise(&self, ident: &Ident) -> String {
        match (self.dialect, ident.quote_style) {
            (Dialect::Postgres, None) => ident.value.to_ascii_lowercase(),
            _ => ident.value.clone(),
        }
    }

    fn refuse(message: impl Into<String>) -> ControlFlow<ScreenError> {
        ControlFlow::Break(not_allowed(CONTEXT, message))
    }

    fn check_body(body: &SetExpr) -> ControlFlow<ScreenError> {
        match body {
            SetExpr::Select(select) => {
                if select.into.is_some() {
                    return Self::refuse("`SELECT ... INTO` is not allowed");
                }
                ControlFlow::Continue(())
            }
            SetExpr::Query(_) | SetExpr::Values(_) => ControlFlow::Continue(()),
            SetExpr::SetOperation { left, right, .. } => {
                Self::check_body(left)?;
                Self::check_body(right)
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Self::refuse("data-modifying statements (INSERT/UPDATE/DELETE/MERGE) inside a query are not allowed")
            }
            SetExpr::Table(_) => {
                Self::refuse("`TABLE name` queries are not allowed (write SELECT * FROM name)")
            }
        }
    }
}

impl Visitor for QueryScreen {
    type Break = ScreenError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<ScreenError> {
        if !query.locks.is_empty() {
            return Self::refuse(
                "locking clauses (`FOR UPDATE`, `FOR SHARE`, ...) are not allowed",
            );
        }
        if query.for_clause.is_some() {
            return Self::refuse("`FOR XML/JSON/BROWSE` is not allowed");
        }
        if query.settings.is_some() || query.format_clause.is_some() {
            return Self::refuse("`SETTINGS`/`FORMAT` clauses are not allowed");
        }
        if !query.pipe_operators.is_empty() {
            return Self::refuse("pipe operators are not allowed");
        }
        Self::check_body(&query.body)?;

        let inherited = match self.frames.last() {
            None => Vec::new(),
            Some(parent) => {
                let mut names = parent.inherited.clone();
                match parent
                    .ctes
                    .iter()
                    .position(|(body, _)| std::ptr::eq(*body, query))
                {
                    // The body of the parent's CTE number `i` sees the CTEs before it (and
                    // itself under RECURSIVE), not the later ones.
                    Some(i) => {
                        let upto = if parent.recursive { i + 1 } else { i };
                        names.extend(parent.ctes[..upto].iter().map(|(_, n)| n.clone()));
                    }
                    None => names.extend(parent.ctes.iter().map(|(_, n)| n.clone())),
                }
                names
            }
        };
        let (ctes, recursive) = match &query.with {
            None => (Vec::new(), false),
            Some(with) => (
                with.cte_tables
                    .iter()
                    .map(|cte| (&*cte.query as *const Query, self.normalise(&cte.alias.name)))
                    .collect(),
                with.recursive,
            ),
        };
        self.frames.push(Frame {
            inherited,
            ctes,
            recursive,
        });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<ScreenError> {
        self.frames.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<ScreenError> {
        match factor {
            TableFactor::Table { args: Some(_), .. } => {
                Self::refuse("table functions in FROM are not allowed")
            }
            TableFactor::Table { .. }
            | TableFactor::Derived { .. }
            | TableFactor::NestedJoin { .. } => ControlFlow::Continue(()),
            other => Self::refuse(format!(
                "`{}` in FROM is not allowed (only tables, subqueries and joins)",
                variant_name(other)
            )),
        }
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<ScreenError> {
        if let [ObjectNamePart::Identifier(ident)] = relation.0.as_slice() {
            let name = self.normalise(ident);
            if let Some(frame) = self.frames.last() {
                if frame.visible().any(|cte| *cte == name) {
                    return ControlFlow::Continue(());
                }
            }
        }
        if relation
            .0
            .iter()
            .any(|part| !matches!(part, ObjectNamePart::Identifier(_)))
        {
            return Self::refuse("computed table names are not allowed");
        }
        let written = relation.to_string();
        if !self.tables.contains(&written) {
            self.tables.push(written);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<ScreenError> {
        if let Expr::Function(function) = expr {
            let last = match function.name.0.last() {
                Some(ObjectNamePart::Identifier(ident)) => ident.value.to_lowercase(),
                Some(_) => return Self::refuse("computed function names are not allowed"),
                None => return ControlFlow::Continue(()),
            };
            if DENIED_FUNCTIONS.contains(&last.as_str())
                || DENIED_PREFIXES.iter().any(|p| last.starts_with(p))
            {
                return ControlFlow::Break(ScreenError::FunctionDenied {
                    context: CONTEXT,
                    name: excerpt(&last),
                });
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dialect::{MySql, Postgres, Sqlite};

    fn ok(text: &str, dialect: Dialect) -> ScreenedQuery {
        screen_query(text, dialect).unwrap_or_else(|e| panic!("{dialect:?}: {text:?} refused: {e}"))
    }

    fn has(text: &str, dialect: Dialect, needle: &str) {
        match screen_query(text, dialect) {
            Ok(q) => panic!("{dialect:?}: {text:?} accepted: {q:?}"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("`querySql`: "), "{message}");
                assert!(
                    message.contains(needle),
                    "{dialect:?}: {text:?}: {message:?} does not mention {needle:?}"
                );
            }
        }
    }

    fn all(text: &str, needle: &str) {
        for d in [Postgres, MySql, Sqlite] {
            has(text, d, needle);
        }
    }

    #[test]
    fn tables_are_listed() {
        for d in [Postgres, MySql, Sqlite] {
            let q = ok(
                "SELECT a.id, b.x FROM public.a JOIN b ON a.id = b.id LEFT JOIN c ON c.id = a.id \
                 WHERE a.id IN (SELECT id FROM d) AND EXISTS (SELECT 1 FROM e WHERE e.id = a.id)",
                d,
            );
            assert_eq!(q.tables, ["public.a", "b", "c", "d", "e"], "{d:?}");
            let q = ok("SELECT * FROM (SELECT * FROM inner_t) AS x, y", d);
            assert_eq!(q.tables, ["inner_t", "y"], "{d:?}");
            let q = ok("SELECT 1 UNION ALL SELECT id FROM u", d);
            assert_eq!(q.tables, ["u"], "{d:?}");
        }
        let q = ok(r#"SELECT * FROM "Sch"."Tab""#, Postgres);
        assert_eq!(q.tables, [r#""Sch"."Tab""#]);
        let q = ok("SELECT * FROM `db`.`t`", MySql);
        assert_eq!(q.tables, ["`db`.`t`"]);
    }

    #[test]
    fn cte_names_are_not_tables_but_their_bodies_are_read() {
        let q = ok(
            "WITH x AS (SELECT * FROM base), y AS (SELECT * FROM x JOIN other ON true) \
             SELECT * FROM y JOIN x ON true",
            Postgres,
        );
        assert_eq!(q.tables, ["base", "other"]);
        // A non-recursive CTE does not see itself: the inner `secret` is the real table.
        let q = ok(
            "WITH secret AS (SELECT * FROM secret) SELECT * FROM secret",
            Postgres,
        );
        assert_eq!(q.tables, ["secret"]);
        // A later CTE is not visible in an earlier one's body.
        let q = ok(
            "WITH a AS (SELECT * FROM b), b AS (SELECT 1) SELECT * FROM a",
            Postgres,
        );
        assert_eq!(q.tables, ["b"]);
        // A CTE in a subquery does not hide a table of the same name outside it.
        let q = ok(
            "SELECT * FROM (WITH secret AS (SELECT 1) SELECT * FROM secret) s, secret",
            Postgres,
        );
        assert_eq!(q.tables, ["secret"]);
        // Postgres folds unquoted names: CTE `s` does not hide the table "S".
        let q = ok(r#"WITH s AS (SELECT 1) SELECT * FROM "S", S"#, Postgres);
        assert_eq!(q.tables, [r#""S""#]);
        // Recursive CTEs may refer to themselves.
        let q = ok(
            "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             SELECT * FROM r",
            Postgres,
        );
        assert!(q.tables.is_empty(), "{:?}", q.tables);
    }

    #[test]
    fn sql_is_rendered_for_postgres_and_sqlite_and_kept_for_mysql() {
        let q = ok(
            "select id -- comment\nfrom t /* c */ where x = 'a';",
            Postgres,
        );
        assert_eq!(q.sql, "SELECT id FROM t WHERE x = 'a'");
        // E-strings and quoted identifiers survive the round trip.
        let q = ok(
            r#"SELECT "we""ird" FROM t WHERE x = E'a\\b\'c\n'"#,
            Postgres,
        );
        assert_eq!(q.sql, r#"SELECT "we""ird" FROM t WHERE x = E'a\\b\'c\n'"#);
        let again = ok(&q.sql, Postgres);
        assert_eq!(again.sql, q.sql);
        let q = ok("SELECT x FROM t WHERE y = 'it''s' ;", Sqlite);
        assert_eq!(q.sql, "SELECT x FROM t WHERE y = 'it''s'");
        let q = ok("  SELECT `x` FROM t WHERE y = 'it''s' ; ; \n", MySql);
        assert_eq!(q.sql, "SELECT `x` FROM t WHERE y = 'it''s'");
    }

    #[test]
    fn non_reads_are_refused() {
        all("SELECT 1; SELECT 2", "more than one statement");
        all("SELECT 1; DROP TABLE t", "more than one statement");
        all(
            "INSERT INTO t VALUES (1)",
            "only a SELECT query is allowed, not a `Insert`",
        );
        all("UPDATE t SET a = 1", "not a `Update`");
        all("DELETE FROM t", "not a `Delete`");
        all("DROP TABLE t", "only a SELECT query is allowed");
        all("CREATE TABLE x (a int)", "only a SELECT query is allowed");
        has("SELECT * INTO newt FROM t", Postgres, "`SELECT ... INTO`");
        has("SELECT * FROM t FOR UPDATE", Postgres, "locking clauses");
        has("SELECT * FROM t FOR SHARE", Postgres, "locking clauses");
        has("SELECT * FROM t FOR UPDATE", MySql, "locking clauses");
        has(
            "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x",
            Postgres,
            "data-modifying",
        );
        has(
            "WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x",
            Postgres,
            "data-modifying",
        );
        has("TABLE secret", Postgres, "not valid SQL");
        has(
            "SELECT 1 UNION ALL (TABLE secret)",
            Postgres,
            "`TABLE name`",
        );
        all(
            "SELECT 1 /*!50000 UNION SELECT * FROM secret*/",
            "executable comments",
        );
        has("SELECT 1 INTO OUTFILE '/tmp/x'", MySql, "not valid SQL");
        has("SELECT * FROM t -- hi", MySql, "comments are not allowed");
        has(
            "SELECT * FROM t WHERE a = 'x\\' UNION SELECT 1",
            MySql,
            "backslashes",
        );
        has(
            "SELECT * FROM generate_series(1, 3)",
            Postgres,
            "table functions",
        );
        has(
            "SELECT pg_read_file('/etc/passwd')",
            Postgres,
            "function `pg_read_file`",
        );
        has(
            "SELECT * FROM t WHERE query_to_xml('select 1', true, false, '') IS NOT NULL",
            Postgres,
            "function `query_to_xml`",
        );
        has(
            "SELECT pg_catalog.pg_sleep(10)",
            Postgres,
            "function `pg_sleep`",
        );
        has(
            "SELECT load_file('/etc/passwd')",
            MySql,
            "function `load_file`",
        );
        has("SELECT sleep(5)", MySql, "function `sleep`");
        has(
            "SELECT load_extension('x')",
            Sqlite,
            "function `load_extension`",
        );
        all("", "empty");
    }
}
