//! Screening of SQL text that reaches the agent from the cloud side.
//!
//! The agent sits inside a private network and reads databases; the broker runs in the
//! cloud and only tells the agent what to read. Every message from the broker is treated
//! as hostile, and SQL text is the most dangerous part of it: a DataX-style `where` row
//! filter used to be pasted into the agent's `SELECT` as text, and so a filter could read
//! tables the job was never given, for instance
//!
//! * `false) UNION ALL (TABLE secret` (closes the agent's parenthesis and appends a query),
//! * `table_to_xml('secret', true, false, '')::text::int > 0` (a whole table through a
//!   function, leaked in the cast error),
//! * `pg_read_file('/etc/passwd') IS NOT NULL`, MySQL `load_file(...)` (server files),
//! * `id > 0 /*!50000 UNION SELECT ...*/` (MySQL executable comments: a comment to any
//!   parser but SQL to MySQL),
//! * `1) INTO OUTFILE '/tmp/x' #` (writes server files).
//!
//! This crate closes that door:
//!
//! * [`screen_where`] parses a row filter as one SQL expression with `sqlparser`, accepts
//!   only a small allow-list of constructs (the job table's own columns, literals,
//!   comparison/arithmetic/boolean operators, a few casts and pure scalar functions) and
//!   renders it again from the parsed tree with its own renderer: identifiers are always
//!   quoted in the catalog spelling, strings are always re-escaped, every operation is
//!   parenthesised. What reaches the database is text the agent wrote, never text the
//!   broker wrote.
//! * [`screen_query`] checks a free-form query (`querySql`, only for sources that allow it):
//!   exactly one read-only `SELECT`, and it lists the tables it reads so that the agent can
//!   check them against its table policy.
//!
//! What a filter may contain: plain (or quoted) names of the job table's columns; numbers
//! (`digits[.digits][e±digits]`), single-quoted strings (PostgreSQL `E'...'` too), TRUE,
//! FALSE, NULL, `DATE/TIMESTAMP/TIME '...'` (not SQLite); `= <> != < <= > >=`, AND, OR,
//! NOT, unary `-`/`+`, `+ - * / %`, `||` (not MySQL), IS [NOT] NULL/TRUE/FALSE, [NOT] IN
//! (list), [NOT] BETWEEN, [NOT] LIKE [ESCAPE], ILIKE (PostgreSQL), CASE, parentheses;
//! CAST and `::` (PostgreSQL) to a fixed list of types; INTERVAL (PostgreSQL: string and
//! optional unit, MySQL: value and unit); and the functions lower, upper, length,
//! char_length, coalesce, nullif, abs, round, floor, ceil, ceiling, concat, substr/substring,
//! trim, replace, left, right, date, now, current_date, current_timestamp, extract,
//! date_trunc, to_char, to_date (PostgreSQL), date_format, date_add, date_sub, str_to_date,
//! curdate (MySQL), strftime, datetime, julianday (SQLite), each where the dialect has it.
//! Comments, subqueries, other tables' columns, placeholders and session variables are
//! refused.
//!
//! Both refuse MySQL executable comments (`/*!`, `/*M!`) up front in every dialect, and every
//! error names the refused construct without echoing more than about 60 characters of the
//! input.
//!
//! The rendered text assumes a UTF-8 (or other ASCII-safe) connection character set; for
//! PostgreSQL free-form queries it also assumes `standard_conforming_strings = on` (the
//! default since 9.1), because those are rendered by `sqlparser`.

mod filter;
mod query;

pub use filter::screen_where;
pub use query::{screen_query, ScreenedQuery};

use sqlparser::dialect::{MySqlDialect, PostgreSqlDialect, SQLiteDialect};

/// The SQL dialect of the database the text is meant for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MySQL (and MariaDB).
    MySql,
    /// SQLite.
    Sqlite,
}

impl Dialect {
    fn parser_dialect(self) -> &'static dyn sqlparser::dialect::Dialect {
        static POSTGRES: PostgreSqlDialect = PostgreSqlDialect {};
        static MYSQL: MySqlDialect = MySqlDialect {};
        static SQLITE: SQLiteDialect = SQLiteDialect {};
        match self {
            Dialect::Postgres => &POSTGRES,
            Dialect::MySql => &MYSQL,
            Dialect::Sqlite => &SQLITE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL",
            Dialect::Sqlite => "SQLite",
        }
    }
}

/// Why a piece of SQL text was refused. `context` is the job setting it came from
/// (`where` or `querySql`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScreenError {
    /// The text is longer than [`MAX_TEXT_BYTES`].
    #[error("`{context}`: the text is {len} bytes long, more than the {max} allowed")]
    TooLong {
        /// The setting the text came from.
        context: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The text is empty (or only whitespace).
    #[error("`{context}`: the text is empty")]
    Empty {
        /// The setting the text came from.
        context: &'static str,
    },
    /// The text contains a MySQL executable comment (`/*!` or `/*M!`).
    #[error("`{context}`: MySQL executable comments (`/*!`, `/*M!`) are not allowed")]
    ExecutableComment {
        /// The setting the text came from.
        context: &'static str,
    },
    /// The expression is nested more deeply than the screen accepts.
    #[error("`{context}`: the expression is nested more than {max} levels deep")]
    TooDeep {
        /// The setting the text came from.
        context: &'static str,
        /// The deepest nesting accepted.
        max: usize,
    },
    /// `sqlparser` could not parse the text (the message is shortened).
    #[error("`{context}`: not valid SQL: {message}")]
    Syntax {
        /// The setting the text came from.
        context: &'static str,
        /// The parser's message, at most about 80 characters.
        message: String,
    },
    /// The text holds more than one statement (or an expression followed by `;` and more).
    #[error("`{context}`: more than one statement")]
    MultipleStatements {
        /// The setting the text came from.
        context: &'static str,
    },
    /// Something follows the expression that is not part of it.
    #[error("`{context}`: unexpected `{found}` after the expression")]
    TrailingInput {
        /// The setting the text came from.
        context: &'static str,
        /// The first token left over (shortened).
        found: String,
    },
    /// A construct the screen does not accept; the message names it.
    #[error("`{context}`: {message}")]
    NotAllowed {
        /// The setting the text came from.
        context: &'static str,
        /// What was refused, e.g. "subqueries are not allowed".
        message: String,
    },
    /// A function call that is not on the allow-list for the dialect.
    #[error("`{context}`: function `{name}` is not on the allow-list (allowed: {allowed})")]
    FunctionNotAllowed {
        /// The setting the text came from.
        context: &'static str,
        /// The function's name as written (shortened).
        name: String,
        /// The functions allowed in this dialect.
        allowed: String,
    },
    /// A free-form query calls a function that reads files, sleeps, changes state or
    /// reaches other servers.
    #[error("`{context}`: function `{name}` is not allowed in a read-only query")]
    FunctionDenied {
        /// The setting the text came from.
        context: &'static str,
        /// The function's name as written (shortened).
        name: String,
    },
    /// A plain identifier that names no column of the job's table.
    #[error("`{context}`: column `{name}` is not a column of the table")]
    UnknownColumn {
        /// The setting the text came from.
        context: &'static str,
        /// The identifier as written (shortened).
        name: String,
    },
    /// A plain identifier that matches several columns case-insensitively and none exactly.
    #[error("`{context}`: column `{name}` matches several columns of the table; quote it in the catalog spelling")]
    AmbiguousColumn {
        /// The setting the text came from.
        context: &'static str,
        /// The identifier as written (shortened).
        name: String,
    },
    /// A qualified name (`t.col`, `schema.t.col`): filters may only name the table's own columns.
    #[error(
        "`{context}`: `{name}` is a qualified name; only the table's own column names are allowed"
    )]
    QualifiedName {
        /// The setting the text came from.
        context: &'static str,
        /// The name as written (shortened).
        name: String,
    },
}

/// The longest text accepted, in bytes (16 KiB).
pub const MAX_TEXT_BYTES: usize = 16 * 1024;

/// The recursion limit handed to `sqlparser` (its default is 50).
const PARSER_RECURSION_LIMIT: usize = 160;

/// How many characters of the input an error message may repeat.
const EXCERPT_CHARS: usize = 60;

/// At most [`EXCERPT_CHARS`] characters of `text`, control characters replaced, for messages.
fn excerpt(text: &str) -> String {
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// The checks every text gets before it is parsed: size, emptiness, executable comments.
/// Whether `text` holds a comment (`--`, `#` in MySQL, `/* */`), as the
/// dialect's tokenizer sees it.
fn has_comment(
    context: &'static str,
    dialect: &dyn sqlparser::dialect::Dialect,
    text: &str,
) -> Result<bool, ScreenError> {
    use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
    let tokens = Tokenizer::new(dialect, text)
        .tokenize()
        .map_err(|e| ScreenError::Syntax {
            context,
            message: excerpt(&e.message),
        })?;
    Ok(tokens.iter().any(|t| {
        matches!(
            t,
            Token::Whitespace(Whitespace::SingleLineComment { .. })
                | Token::Whitespace(Whitespace::MultiLineComment(_))
        )
    }))
}

fn precheck(context: &'static str, text: &str) -> Result<(), ScreenError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(ScreenError::TooLong {
            context,
            len: text.len(),
            max: MAX_TEXT_BYTES,
        });
    }
    if text.trim().is_empty() {
        return Err(ScreenError::Empty { context });
    }
    if text.contains("/*!") || text.contains("/*M!") || text.contains("/*m!") {
        return Err(ScreenError::ExecutableComment { context });
    }
    if text.contains('\0') {
        return Err(not_allowed(context, "NUL characters are not allowed"));
    }
    Ok(())
}

fn not_allowed(context: &'static str, message: impl Into<String>) -> ScreenError {
    ScreenError::NotAllowed {
        context,
        message: message.into(),
    }
}

/// Maps a `sqlparser` error, keeping at most about 80 characters of its message.
fn parser_error(context: &'static str, err: sqlparser::parser::ParserError) -> ScreenError {
    use sqlparser::parser::ParserError;
    match err {
        ParserError::RecursionLimitExceeded => ScreenError::TooDeep {
            context,
            max: filter::MAX_DEPTH,
        },
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => {
            let mut message: String = m
                .chars()
                .take(80)
                .map(|c| if c.is_control() { '?' } else { c })
                .collect();
            if m.chars().nth(80).is_some() {
                message.push('…');
            }
            ScreenError::Syntax { context, message }
        }
    }
}

/// The name of an enum variant from its `Debug` text (no input text: the name ends at the
/// first character that cannot be part of an identifier).
fn variant_name<T: std::fmt::Debug>(value: &T) -> String {
    let debug = format!("{value:?}");
    debug
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_is_short() {
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 1);
        assert_eq!(excerpt("a\nb"), "a?b");
    }

    #[test]
    fn precheck_refuses_size_empty_and_executable_comments() {
        let big = "1".repeat(MAX_TEXT_BYTES + 1);
        assert!(matches!(
            precheck("where", &big),
            Err(ScreenError::TooLong { .. })
        ));
        assert!(matches!(
            precheck("where", "  \n"),
            Err(ScreenError::Empty { .. })
        ));
        for text in ["id > 0 /*!50000 UNION SELECT 1*/", "/*M!100000 x */ 1"] {
            let err = precheck("where", text).unwrap_err();
            assert!(err.to_string().contains("executable comments"), "{err}");
        }
    }
}
