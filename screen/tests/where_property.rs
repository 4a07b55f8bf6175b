//! Property test: whatever `screen_where` accepts renders to SQL that, parsed again, names only
//! the job's columns and allowed functions, holds no subquery, renders to itself, and stays
//! one statement reading only `t` when embedded in the agent's SELECT.

use std::ops::ControlFlow;

use ferry_screen::{screen_where, Dialect};
use proptest::prelude::*;
use sqlparser::ast::{visit_expressions, visit_relations, Expr, InTarget, ObjectNamePart, Value};
use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

const COLUMNS: &[&str] = &["id", "name", "Created_At", "we\"ird`col"];

/// Written independently of the crate's table: every function name that may appear.
const ALLOWED_FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "length",
    "char_length",
    "coalesce",
    "nullif",
    "abs",
    "round",
    "floor",
    "ceil",
    "ceiling",
    "concat",
    "substr",
    "substring",
    "replace",
    "left",
    "right",
    "date",
    "now",
    "current_date",
    "current_timestamp",
    "date_trunc",
    "to_char",
    "to_date",
    "date_format",
    "date_add",
    "date_sub",
    "str_to_date",
    "curdate",
    "strftime",
    "datetime",
    "julianday",
];

const FRAGMENTS: &[&str] = &[
    // the job's columns, in several spellings
    "id",
    "name",
    "created_at",
    "Created_At",
    "\"id\"",
    "`name`",
    "\"we\"\"ird`col\"",
    "`we\"ird``col`",
    // other names
    "secret",
    "pg_authid",
    "mysql.user",
    "t.id",
    "\"other\".col",
    "information_schema.tables",
    // functions
    "lower(",
    "upper(",
    "coalesce(",
    "length(",
    "now()",
    "current_date",
    "CURRENT_TIMESTAMP",
    "substring(",
    "trim(",
    "extract(year from ",
    "pg_read_file(",
    "load_file(",
    "table_to_xml(",
    "query_to_xml(",
    "sleep(",
    "benchmark(",
    "set_config(",
    "pg_catalog.lower(",
    "CAST(",
    " AS int)",
    " AS text)",
    "::int",
    "::regclass",
    "INTERVAL '1 day'",
    "INTERVAL 1 DAY",
    "DATE '2024-01-01'",
    // keywords
    "SELECT",
    "UNION",
    "ALL",
    "FROM",
    "INTO",
    "TABLE",
    "OUTFILE",
    "EXISTS",
    "AND",
    "OR",
    "NOT",
    "IS NULL",
    "IS NOT NULL",
    "IN",
    "BETWEEN",
    "LIKE",
    "ILIKE",
    "ESCAPE",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "NULL",
    "TRUE",
    "COLLATE",
    // operators
    "=",
    "<>",
    "!=",
    "<",
    ">=",
    "+",
    "-",
    "*",
    "/",
    "%",
    "||",
    "@>",
    "->",
    "@",
    "@@",
    "?",
    "$1",
    ":",
    "::",
    "&&",
    "!",
    "^",
    // punctuation
    "(",
    ")",
    ",",
    ";",
    ".",
    "[",
    "]",
    // comments
    "--",
    "-- ",
    "#",
    "/*",
    "*/",
    "/*!",
    "/*!50000",
    "\n",
    // strings and numbers
    "'a'",
    "'it''s'",
    "'\\'",
    "'\\''",
    "'a\\'b'",
    "'\\\\'",
    "E'\\\\x'",
    "E'\\''",
    "'",
    "\"",
    "`",
    "'żółć'",
    "N'x'",
    "X'41'",
    "$$x$$",
    "0",
    "1",
    "42",
    "1.5",
    "1e3",
    ".5",
    "0x41",
    // whitespace
    " ",
    " ",
    "\t",
];

fn columns() -> Vec<String> {
    COLUMNS.iter().map(|s| s.to_string()).collect()
}

fn fragment_soup() -> impl Strategy<Value = String> {
    prop::collection::vec((prop::sample::select(FRAGMENTS), prop::bool::ANY), 1..24).prop_map(
        |parts| {
            let mut s = String::new();
            for (part, space) in parts {
                s.push_str(part);
                if space {
                    s.push(' ');
                }
            }
            s
        },
    )
}

/// Mostly well-formed expressions, some of whose leaves are hostile, so that the screen
/// accepts a good share of them.
fn expression() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(
        &[
            "id",
            "name",
            "CREATED_AT",
            "\"we\"\"ird`col\"",
            "secret",
            "t.id",
            "1",
            "2.5",
            "'x'",
            "'a\\'b'",
            "'\\\\'",
            "'it''s'",
            "NULL",
            "TRUE",
            "now()",
            "current_date",
            "DATE '2024-01-01'",
            "(SELECT 1)",
            "pg_read_file('/etc/passwd')",
            "$1",
            "@@version",
            "'/*!50000 x*/'",
            "'-- x'",
            "'#'",
        ][..],
    )
    .prop_map(str::to_owned);
    leaf.prop_recursive(4, 32, 3, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(
                    &["=", "<>", "<", ">=", "+", "-", "*", "||", "AND", "OR", "%", "LIKE"][..]
                ),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("({a})")),
            inner.clone().prop_map(|a| format!("NOT {a}")),
            inner.clone().prop_map(|a| format!("-{a}")),
            inner.clone().prop_map(|a| format!("{a} IS NULL")),
            (
                inner.clone(),
                prop::sample::select(
                    &[
                        "lower",
                        "upper",
                        "length",
                        "abs",
                        "sleep",
                        "load_file",
                        "table_to_xml",
                        "pg_catalog.upper"
                    ][..]
                )
            )
                .prop_map(|(a, f)| format!("{f}({a})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("coalesce({a}, {b})")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("{a} BETWEEN {b} AND {c}")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} IN ({b}, 1)")),
            inner.clone().prop_map(|a| format!("CAST({a} AS int)")),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| format!("CASE WHEN {a} THEN {b} ELSE NULL END")),
            (inner.clone(), prop::sample::select(FRAGMENTS)).prop_map(|(a, f)| format!("{a} {f}")),
        ]
    })
}

fn parser_dialect(d: Dialect) -> &'static dyn sqlparser::dialect::Dialect {
    static PG: PostgreSqlDialect = PostgreSqlDialect {};
    static MY: MySqlDialect = MySqlDialect {};
    static LITE: SQLiteDialect = SQLiteDialect {};
    match d {
        Dialect::Postgres => &PG,
        Dialect::MySql => &MY,
        Dialect::Sqlite => &LITE,
    }
}

/// Checks a rendered filter. Returns a description of the first problem.
fn check_rendered(rendered: &str, d: Dialect) -> Result<(), String> {
    let cols = columns();
    let sql_dialect = parser_dialect(d);
    let mut parser = Parser::new(sql_dialect)
        .try_with_sql(rendered)
        .map_err(|e| format!("rendered text does not tokenize: {e}"))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| format!("rendered text does not parse: {e}"))?;
    if parser.peek_token().token != sqlparser::tokenizer::Token::EOF {
        return Err("rendered text has tokens after the expression".into());
    }
    let walk = visit_expressions(&expr, |e| {
        let problem = match e {
            Expr::Identifier(ident) => (!cols.contains(&ident.value))
                .then(|| format!("identifier {:?} is not a column", ident.value)),
            Expr::CompoundIdentifier(_) => Some("compound identifier".into()),
            Expr::Subquery(_) | Expr::Exists { .. } => Some("subquery".into()),
            Expr::In {
                target: InTarget::Subquery(_) | InTarget::Table { .. },
                ..
            } => Some("IN subquery".into()),
            Expr::Value(v) if matches!(v.value, Value::Placeholder(_)) => {
                Some("placeholder".into())
            }
            Expr::Function(f) => match f.name.0.as_slice() {
                [ObjectNamePart::Identifier(i)]
                    if ALLOWED_FUNCTIONS.contains(&i.value.to_lowercase().as_str()) =>
                {
                    None
                }
                _ => Some(format!("function {}", f.name)),
            },
            _ => None,
        };
        match problem {
            Some(p) => ControlFlow::Break(p),
            None => ControlFlow::Continue(()),
        }
    });
    if let ControlFlow::Break(problem) = walk {
        return Err(problem);
    }

    let again = screen_where(rendered, d, Some(&cols))
        .map_err(|e| format!("rendered text is refused: {e}"))?;
    if again != rendered {
        return Err(format!("rendering is not stable: {again}"));
    }

    let select = format!("SELECT * FROM t WHERE {rendered}");
    let statements = Parser::parse_sql(sql_dialect, &select)
        .map_err(|e| format!("embedded filter does not parse: {e}"))?;
    if statements.len() != 1 {
        return Err(format!("{} statements", statements.len()));
    }
    let mut relations = Vec::new();
    let _ = visit_relations(&statements, |r| {
        relations.push(r.to_string());
        ControlFlow::<()>::Continue(())
    });
    if relations != ["t"] {
        return Err(format!("relations {relations:?}"));
    }
    Ok(())
}

fn check(text: &str) -> Result<(), TestCaseError> {
    let cols = columns();
    for d in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
        for columns in [Some(cols.as_slice()), None] {
            match screen_where(text, d, columns) {
                Ok(rendered) => {
                    if columns.is_some() {
                        if let Err(problem) = check_rendered(&rendered, d) {
                            return Err(TestCaseError::fail(format!(
                                "{d:?}: {text:?} -> {rendered:?}: {problem}"
                            )));
                        }
                    } else {
                        // Without names, the same rendering checks minus the column set:
                        // stable, no compound names, one statement reading `t`.
                        let again = screen_where(&rendered, d, None);
                        prop_assert_eq!(again.as_deref(), Ok(rendered.as_str()), "{:?}", d);
                    }
                }
                Err(e) => {
                    let message = e.to_string();
                    prop_assert!(message.chars().count() < 400, "{}", message);
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn fragment_soup_is_screened(text in fragment_soup()) {
        check(&text)?;
    }

    #[test]
    fn expressions_are_screened(text in expression()) {
        check(&text)?;
    }

    #[test]
    fn random_text_is_screened(text in "\\PC{0,60}") {
        check(&text)?;
    }
}

/// The generators must produce accepted filters too, or the property says little.
#[test]
fn generators_reach_accepted_filters() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let cols = columns();
    let mut runner = TestRunner::deterministic();
    let strategy = expression();
    let mut accepted = 0;
    for _ in 0..500 {
        let text = strategy.new_tree(&mut runner).expect("generate").current();
        if screen_where(&text, Dialect::Postgres, Some(&cols)).is_ok() {
            accepted += 1;
        }
    }
    assert!(accepted > 50, "only {accepted} of 500 accepted");
}
