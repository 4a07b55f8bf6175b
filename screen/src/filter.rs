//! `screen_where`: a row filter parsed as one expression and rendered again by us.

use sqlparser::ast::{
    BinaryOperator, CastKind, CeilFloorKind, CharacterLength, DataType, DateTimeField,
    ExactNumberInfo, Expr, ExtractSyntax, Function, FunctionArg, FunctionArgExpr,
    FunctionArguments, Ident, InTarget, Interval, ObjectNamePart, TimezoneInfo, TrimWhereField,
    TypedString, UnaryOperator, Value,
};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::{excerpt, not_allowed, parser_error, precheck, variant_name, Dialect, ScreenError};

const CONTEXT: &str = "where";

/// The deepest expression nesting accepted (each operator, call, or parenthesis is a level).
pub(crate) const MAX_DEPTH: usize = 64;

/// The most items accepted in an `IN (...)` list or a function's argument list.
const MAX_LIST: usize = 1000;

/// Screens a row filter (DataX `where`) and renders it again from the parsed tree.
/// `columns`: the job table's column names (catalog spelling). `None` = names not known
/// yet (the broker's early check): any plain column name is accepted then, still rendered quoted.
///
/// The result is an expression the agent can put after `WHERE` as it is: every operation is
/// parenthesised, identifiers are quoted in the dialect, strings are re-escaped, and only the
/// constructs listed in the crate's documentation are accepted.
pub fn screen_where(
    text: &str,
    dialect: Dialect,
    columns: Option<&[String]>,
) -> Result<String, ScreenError> {
    precheck(CONTEXT, text)?;
    let sql_dialect = dialect.parser_dialect();

    // Comments are whitespace to sqlparser, but a filter has no use for them and they are
    // the usual tool for cutting off the rest of a statement (`1=1 --`, `... #`).
    if crate::has_comment(CONTEXT, sql_dialect, text)? {
        return Err(not_allowed(CONTEXT, "comments are not allowed"));
    }

    let mut parser = Parser::new(sql_dialect)
        .with_recursion_limit(crate::PARSER_RECURSION_LIMIT)
        .try_with_sql(text)
        .map_err(|e| parser_error(CONTEXT, e))?;
    let expr = parser.parse_expr().map_err(|e| parser_error(CONTEXT, e))?;
    match parser.next_token().token {
        Token::EOF => {}
        Token::SemiColon => {
            return Err(if parser.peek_token().token == Token::EOF {
                not_allowed(CONTEXT, "a trailing `;` is not allowed")
            } else {
                ScreenError::MultipleStatements { context: CONTEXT }
            });
        }
        Token::Word(w) if w.value.eq_ignore_ascii_case("into") => {
            return Err(not_allowed(CONTEXT, "`INTO` is not allowed"));
        }
        other => {
            return Err(ScreenError::TrailingInput {
                context: CONTEXT,
                found: excerpt(&other.to_string()),
            });
        }
    }

    Renderer { dialect, columns }.expr(&expr, 0)
}

/// A scalar function on the allow-list: its name (as rendered), where it exists, its arity.
struct AllowedFunction {
    name: &'static str,
    postgres: bool,
    mysql: bool,
    sqlite: bool,
    min_args: usize,
    max_args: usize,
}

const fn f(
    name: &'static str,
    (postgres, mysql, sqlite): (bool, bool, bool),
    min_args: usize,
    max_args: usize,
) -> AllowedFunction {
    AllowedFunction {
        name,
        postgres,
        mysql,
        sqlite,
        min_args,
        max_args,
    }
}

const ALL: (bool, bool, bool) = (true, true, true);
const PG: (bool, bool, bool) = (true, false, false);
const MY: (bool, bool, bool) = (false, true, false);
const LITE: (bool, bool, bool) = (false, false, true);
const PG_MY: (bool, bool, bool) = (true, true, false);
const MY_LITE: (bool, bool, bool) = (false, true, true);

/// Plain function calls `name(arg, ...)`. Functions that sqlparser parses as their own
/// expressions (`substring`/`substr`, `trim`, `extract`, `floor`/`ceil`, `CAST`) are
/// handled where those expressions are rendered and listed in [`SPECIAL_FORMS`].
const FUNCTIONS: &[AllowedFunction] = &[
    f("lower", ALL, 1, 1),
    f("upper", ALL, 1, 1),
    f("length", ALL, 1, 1),
    f("char_length", PG_MY, 1, 1),
    f("coalesce", ALL, 1, 32),
    f("nullif", ALL, 2, 2),
    f("abs", ALL, 1, 1),
    f("round", ALL, 1, 2),
    f("floor", ALL, 1, 1),
    f("ceil", ALL, 1, 1),
    f("ceiling", ALL, 1, 1),
    f("concat", ALL, 1, 32),
    f("substr", ALL, 2, 3),
    f("substring", PG_MY, 2, 3),
    f("replace", ALL, 3, 3),
    f("left", PG_MY, 2, 2),
    f("right", PG_MY, 2, 2),
    f("date", MY_LITE, 1, 8),
    f("now", PG_MY, 0, 0),
    f("current_date", ALL, 0, 0),
    f("current_timestamp", ALL, 0, 0),
    f("date_trunc", PG, 2, 2),
    f("to_char", PG, 2, 2),
    f("to_date", PG, 2, 2),
    f("date_format", MY, 2, 2),
    f("date_add", MY, 2, 2),
    f("date_sub", MY, 2, 2),
    f("str_to_date", MY, 2, 2),
    f("curdate", MY, 0, 0),
    f("strftime", LITE, 2, 8),
    f("datetime", LITE, 1, 8),
    f("julianday", LITE, 1, 8),
];

/// Calls with their own syntax, named in the allow-list message.
const SPECIAL_FORMS: &[(&str, (bool, bool, bool))] =
    &[("trim", ALL), ("extract", PG_MY), ("cast", ALL)];

/// Names that the keyword forms (`CURRENT_DATE`, no parentheses) may take.
const KEYWORD_FUNCTIONS: &[&str] = &["current_date", "current_timestamp"];

fn available(flags: (bool, bool, bool), dialect: Dialect) -> bool {
    match dialect {
        Dialect::Postgres => flags.0,
        Dialect::MySql => flags.1,
        Dialect::Sqlite => flags.2,
    }
}

fn allowed_function_names(dialect: Dialect) -> String {
    let mut names: Vec<&str> = FUNCTIONS
        .iter()
        .filter(|f| available((f.postgres, f.mysql, f.sqlite), dialect))
        .map(|f| f.name)
        .chain(
            SPECIAL_FORMS
                .iter()
                .filter(|(_, flags)| available(*flags, dialect))
                .map(|(name, _)| *name),
        )
        .collect();
    names.sort_unstable();
    names.join(", ")
}

struct Renderer<'a> {
    dialect: Dialect,
    columns: Option<&'a [String]>,
}

impl Renderer<'_> {
    fn refuse<T>(&self, message: impl Into<String>) -> Result<T, ScreenError> {
        Err(not_allowed(CONTEXT, message))
    }

    fn expr(&self, expr: &Expr, depth: usize) -> Result<String, ScreenError> {
        if depth > MAX_DEPTH {
            return Err(ScreenError::TooDeep {
                context: CONTEXT,
                max: MAX_DEPTH,
            });
        }
        let d = depth + 1;
        match expr {
            Expr::Identifier(ident) => self.column(ident),
            Expr::CompoundIdentifier(parts) => Err(ScreenError::QualifiedName {
                context: CONTEXT,
                name: excerpt(
                    &parts
                        .iter()
                        .map(|p| p.value.as_str())
                        .collect::<Vec<_>>()
                        .join("."),
                ),
            }),
            Expr::Value(value) => self.value(&value.value),
            Expr::Nested(inner) => self.expr(inner, d),
            Expr::BinaryOp { left, op, right } => {
                let op = self.binary_operator(op)?;
                Ok(format!(
                    "({} {op} {})",
                    self.expr(left, d)?,
                    self.expr(right, d)?
                ))
            }
            Expr::UnaryOp { op, expr } => {
                let op = match op {
                    UnaryOperator::Not => "NOT ",
                    UnaryOperator::Minus => "-",
                    UnaryOperator::Plus => "+",
                    other => return self.refuse(format!("the operator `{other}` is not allowed")),
                };
                Ok(format!("({op}{})", self.expr(expr, d)?))
            }
            Expr::IsNull(x) => Ok(format!("({} IS NULL)", self.expr(x, d)?)),
            Expr::IsNotNull(x) => Ok(format!("({} IS NOT NULL)", self.expr(x, d)?)),
            Expr::IsTrue(x) => Ok(format!("({} IS TRUE)", self.expr(x, d)?)),
            Expr::IsNotTrue(x) => Ok(format!("({} IS NOT TRUE)", self.expr(x, d)?)),
            Expr::IsFalse(x) => Ok(format!("({} IS FALSE)", self.expr(x, d)?)),
            Expr::IsNotFalse(x) => Ok(format!("({} IS NOT FALSE)", self.expr(x, d)?)),
            Expr::In {
                expr,
                target,
                negated,
                global,
            } => {
                if *global {
                    return self.refuse("`GLOBAL IN` is not allowed");
                }
                let list = match target {
                    InTarget::List(list) => list,
                    InTarget::Subquery(_) => return self.refuse("subqueries are not allowed"),
                    InTarget::Unnest(_) => return self.refuse("`IN UNNEST` is not allowed"),
                    InTarget::Table { .. } => {
                        return self.refuse("`IN table` is not allowed (use a list of values)")
                    }
                };
                if list.is_empty() {
                    return self.refuse("an empty `IN ()` list is not allowed");
                }
                if list.len() > MAX_LIST {
                    return self.refuse(format!(
                        "`IN` lists longer than {MAX_LIST} items are not allowed"
                    ));
                }
                let items = list
                    .iter()
                    .map(|e| self.expr(e, d))
                    .collect::<Result<Vec<_>, _>>()?;
                let not = if *negated { "NOT " } else { "" };
                Ok(format!(
                    "({} {not}IN ({}))",
                    self.expr(expr, d)?,
                    items.join(", ")
                ))
            }
            Expr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let not = if *negated { "NOT " } else { "" };
                Ok(format!(
                    "({} {not}BETWEEN {} AND {})",
                    self.expr(expr, d)?,
                    self.expr(low, d)?,
                    self.expr(high, d)?
                ))
            }
            Expr::Like {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => self.like(
                "LIKE",
                *negated,
                *any,
                expr,
                pattern,
                escape_char.as_deref(),
                d,
            ),
            Expr::ILike {
                negated,
                any,
                expr,
                pattern,
                escape_char,
            } => {
                if self.dialect != Dialect::Postgres {
                    return self.refuse(format!(
                        "`ILIKE` is not allowed in {} (use lower(...) LIKE ...)",
                        self.dialect.name()
                    ));
                }
                self.like(
                    "ILIKE",
                    *negated,
                    *any,
                    expr,
                    pattern,
                    escape_char.as_deref(),
                    d,
                )
            }
            Expr::Cast {
                kind,
                expr,
                data_type,
                format,
            } => {
                match kind {
                    CastKind::Cast => {}
                    CastKind::DoubleColon if self.dialect == Dialect::Postgres => {}
                    CastKind::DoubleColon => {
                        return self.refuse("the `::` cast is not allowed outside PostgreSQL")
                    }
                    CastKind::TryCast | CastKind::SafeCast => {
                        return self.refuse("`TRY_CAST`/`SAFE_CAST` are not allowed")
                    }
                }
                if format.is_some() {
                    return self.refuse("`CAST ... FORMAT` is not allowed");
                }
                let ty = self.cast_type(data_type)?;
                Ok(format!("CAST({} AS {ty})", self.expr(expr, d)?))
            }
            Expr::TypedString(typed) => self.typed_string(typed),
            Expr::Interval(interval) => self.interval(interval, d),
            Expr::Function(function) => self.function(function, d),
            Expr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let Some(from) = substring_from else {
                    return self.refuse("`substring` without a start position is not allowed");
                };
                let mut out = format!("substr({}, {}", self.expr(expr, d)?, self.expr(from, d)?);
                if let Some(length) = substring_for {
                    out.push_str(", ");
                    out.push_str(&self.expr(length, d)?);
                }
                out.push(')');
                Ok(out)
            }
            Expr::Trim {
                trim_where,
                trim_what,
                expr,
                trim_characters,
            } => self.trim(
                trim_where.as_ref(),
                trim_what.as_deref(),
                expr,
                trim_characters.as_deref(),
                d,
            ),
            Expr::Extract {
                field,
                syntax,
                expr,
            } => {
                if self.dialect == Dialect::Sqlite {
                    return self.refuse("`extract` is not allowed in SQLite (use strftime)");
                }
                if !matches!(syntax, ExtractSyntax::From) {
                    return self.refuse("`extract` is only allowed as extract(FIELD FROM value)");
                }
                let field = self.datetime_field(field, "extract")?;
                Ok(format!("extract({field} FROM {})", self.expr(expr, d)?))
            }
            Expr::Ceil { expr, field } => self.ceil_floor("ceil", expr, field, d),
            Expr::Floor { expr, field } => self.ceil_floor("floor", expr, field, d),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let mut out = String::from("(CASE");
                if let Some(operand) = operand {
                    out.push(' ');
                    out.push_str(&self.expr(operand, d)?);
                }
                for when in conditions {
                    out.push_str(" WHEN ");
                    out.push_str(&self.expr(&when.condition, d)?);
                    out.push_str(" THEN ");
                    out.push_str(&self.expr(&when.result, d)?);
                }
                if let Some(otherwise) = else_result {
                    out.push_str(" ELSE ");
                    out.push_str(&self.expr(otherwise, d)?);
                }
                out.push_str(" END)");
                Ok(out)
            }
            Expr::Subquery(_) | Expr::Exists { .. } => self.refuse("subqueries are not allowed"),
            Expr::Collate { .. } => self.refuse("`COLLATE` is not allowed"),
            Expr::Wildcard(_) | Expr::QualifiedWildcard(..) => {
                self.refuse("the wildcard `*` is not allowed")
            }
            Expr::Tuple(_) => self.refuse("row values `(a, b)` are not allowed"),
            Expr::Array(_) | Expr::CompoundFieldAccess { .. } => {
                self.refuse("arrays and subscripts are not allowed")
            }
            Expr::JsonAccess { .. } => self.refuse("JSON access is not allowed"),
            Expr::AnyOp { .. } | Expr::AllOp { .. } => {
                self.refuse("`ANY`/`ALL` comparisons are not allowed")
            }
            Expr::Prefixed { .. } => {
                self.refuse("character set introducers (`_utf8'...'`) are not allowed")
            }
            Expr::Convert { .. } => self.refuse("`CONVERT` is not allowed (use CAST)"),
            Expr::AtTimeZone { .. } => self.refuse("`AT TIME ZONE` is not allowed"),
            Expr::SimilarTo { .. } => self.refuse("`SIMILAR TO` is not allowed"),
            Expr::RLike { .. } => self.refuse("`REGEXP`/`RLIKE` are not allowed"),
            Expr::IsDistinctFrom(..) | Expr::IsNotDistinctFrom(..) => {
                self.refuse("`IS [NOT] DISTINCT FROM` is not allowed")
            }
            Expr::MatchAgainst { .. } => self.refuse("`MATCH ... AGAINST` is not allowed"),
            other => self.refuse(format!(
                "the expression `{}` is not allowed",
                variant_name(other)
            )),
        }
    }

    /// A column reference: a name of the job's table, rendered quoted in its catalog spelling.
    fn column(&self, ident: &Ident) -> Result<String, ScreenError> {
        let name = &ident.value;
        if ident.quote_style.is_none() {
            if name.starts_with('@') {
                return self.refuse(format!(
                    "session variables (`{}`) are not allowed",
                    excerpt(name)
                ));
            }
            if name.starts_with('$') || name.starts_with(':') || name.starts_with('?') {
                return self.refuse(format!(
                    "placeholders (`{}`) are not allowed",
                    excerpt(name)
                ));
            }
        }
        if !matches!(ident.quote_style, None | Some('"') | Some('`') | Some('[')) {
            return self.refuse("this kind of quoted identifier is not allowed");
        }
        if name.is_empty() {
            return self.refuse("empty identifiers are not allowed");
        }
        if name.contains('\0') {
            return self.refuse("NUL characters in identifiers are not allowed");
        }
        let spelling: &str = match self.columns {
            None => name,
            Some(columns) => {
                if let Some(exact) = columns.iter().find(|c| *c == name) {
                    exact
                } else {
                    let mut matches = columns
                        .iter()
                        .filter(|c| c.to_lowercase() == name.to_lowercase());
                    match (matches.next(), matches.next()) {
                        (Some(only), None) => only,
                        (Some(_), Some(_)) => {
                            return Err(ScreenError::AmbiguousColumn {
                                context: CONTEXT,
                                name: excerpt(name),
                            })
                        }
                        (None, _) => {
                            return Err(ScreenError::UnknownColumn {
                                context: CONTEXT,
                                name: excerpt(name),
                            })
                        }
                    }
                }
            }
        };
        if spelling.contains('\0') {
            return self.refuse("NUL characters in identifiers are not allowed");
        }
        Ok(quote_identifier(self.dialect, spelling))
    }

    fn value(&self, value: &Value) -> Result<String, ScreenError> {
        match value {
            Value::Number(text, long) => {
                if *long || !is_plain_number(text) {
                    return self.refuse(format!(
                        "the number `{}` is not allowed (digits, optional .digits and exponent only)",
                        excerpt(text)
                    ));
                }
                Ok(text.clone())
            }
            Value::SingleQuotedString(s) => self.string(s),
            Value::EscapedStringLiteral(s) if self.dialect == Dialect::Postgres => self.string(s),
            Value::Boolean(true) => Ok("TRUE".to_owned()),
            Value::Boolean(false) => Ok("FALSE".to_owned()),
            Value::Null => Ok("NULL".to_owned()),
            Value::Placeholder(p) => {
                self.refuse(format!("placeholders (`{}`) are not allowed", excerpt(p)))
            }
            Value::DoubleQuotedString(_) => {
                self.refuse("double-quoted strings are not allowed (use single quotes)")
            }
            Value::DollarQuotedString(_) => self.refuse("dollar-quoted strings are not allowed"),
            Value::EscapedStringLiteral(_) => {
                self.refuse("escaped strings `E'...'` are only allowed in PostgreSQL")
            }
            Value::NationalStringLiteral(_) => {
                self.refuse("national strings `N'...'` are not allowed")
            }
            Value::HexStringLiteral(_) => self.refuse("hex strings `X'...'` are not allowed"),
            Value::UnicodeStringLiteral(_) => {
                self.refuse("unicode strings `U&'...'` are not allowed")
            }
            other => self.refuse(format!(
                "the literal kind `{}` is not allowed",
                variant_name(other)
            )),
        }
    }

    /// A string literal, escaped by us for the dialect.
    fn string(&self, s: &str) -> Result<String, ScreenError> {
        if s.contains('\0') {
            return self.refuse("NUL characters in strings are not allowed");
        }
        Ok(render_string(self.dialect, s))
    }

    fn binary_operator(&self, op: &BinaryOperator) -> Result<&'static str, ScreenError> {
        Ok(match op {
            BinaryOperator::Eq => "=",
            BinaryOperator::NotEq => "<>",
            BinaryOperator::Lt => "<",
            BinaryOperator::LtEq => "<=",
            BinaryOperator::Gt => ">",
            BinaryOperator::GtEq => ">=",
            BinaryOperator::And => "AND",
            BinaryOperator::Or => "OR",
            BinaryOperator::Plus => "+",
            BinaryOperator::Minus => "-",
            BinaryOperator::Multiply => "*",
            BinaryOperator::Divide => "/",
            BinaryOperator::Modulo => "%",
            BinaryOperator::StringConcat if self.dialect != Dialect::MySql => "||",
            BinaryOperator::StringConcat => {
                return self.refuse(
                    "the operator `||` is not allowed in MySQL (it means OR unless PIPES_AS_CONCAT; use concat)",
                )
            }
            other => {
                return self.refuse(format!(
                    "the operator `{}` is not allowed",
                    excerpt(&other.to_string())
                ))
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn like(
        &self,
        keyword: &str,
        negated: bool,
        any: bool,
        expr: &Expr,
        pattern: &Expr,
        escape: Option<&Expr>,
        d: usize,
    ) -> Result<String, ScreenError> {
        if any {
            return self.refuse(format!("`{keyword} ANY` is not allowed"));
        }
        let not = if negated { "NOT " } else { "" };
        let mut out = format!(
            "({} {not}{keyword} {}",
            self.expr(expr, d)?,
            self.expr(pattern, d)?
        );
        if let Some(escape) = escape {
            let s = match escape {
                Expr::Value(v) => match &v.value {
                    Value::SingleQuotedString(s) => Some(s),
                    Value::EscapedStringLiteral(s) if self.dialect == Dialect::Postgres => Some(s),
                    _ => None,
                },
                _ => None,
            };
            match s {
                Some(s) if s.chars().count() == 1 => {
                    out.push_str(" ESCAPE ");
                    out.push_str(&self.string(s)?);
                }
                _ => return self.refuse("`ESCAPE` takes a one-character string"),
            }
        }
        out.push(')');
        Ok(out)
    }

    /// The target type of a cast, spelled from our own table.
    fn cast_type(&self, ty: &DataType) -> Result<String, ScreenError> {
        let refused = || {
            self.refuse(format!(
                "casts to `{}` are not allowed in {}",
                excerpt(&ty.to_string()),
                self.dialect.name()
            ))
        };
        let char_length = |len: &Option<CharacterLength>| -> Option<Option<u64>> {
            match len {
                None => Some(None),
                Some(CharacterLength::IntegerLength { length, unit: None })
                    if (1..=65_535).contains(length) =>
                {
                    Some(Some(*length))
                }
                Some(_) => None,
            }
        };
        let numeric = |info: &ExactNumberInfo| -> Option<String> {
            match info {
                ExactNumberInfo::None => Some(String::new()),
                ExactNumberInfo::Precision(p) if (1..=65).contains(p) => Some(format!("({p})")),
                ExactNumberInfo::PrecisionAndScale(p, s)
                    if (1..=65).contains(p) && *s >= 0 && (*s as u64) <= *p =>
                {
                    Some(format!("({p},{s})"))
                }
                _ => None,
            }
        };
        if self.dialect == Dialect::MySql {
            return match ty {
                DataType::Signed | DataType::SignedInteger => Ok("SIGNED".to_owned()),
                DataType::Unsigned | DataType::UnsignedInteger => Ok("UNSIGNED".to_owned()),
                DataType::Char(len) | DataType::Character(len) => match char_length(len) {
                    Some(None) => Ok("CHAR".to_owned()),
                    Some(Some(n)) => Ok(format!("CHAR({n})")),
                    None => refused(),
                },
                DataType::Date => Ok("DATE".to_owned()),
                DataType::Datetime(None) => Ok("DATETIME".to_owned()),
                DataType::Time(None, TimezoneInfo::None) => Ok("TIME".to_owned()),
                DataType::Decimal(info) | DataType::Numeric(info) => match numeric(info) {
                    Some(suffix) => Ok(format!("DECIMAL{suffix}")),
                    None => refused(),
                },
                _ => refused(),
            };
        }
        let postgres = self.dialect == Dialect::Postgres;
        match ty {
            DataType::Int(None) | DataType::Integer(None) | DataType::Int4(None) => {
                Ok("integer".to_owned())
            }
            DataType::BigInt(None) | DataType::Int8(None) => Ok("bigint".to_owned()),
            DataType::SmallInt(None) | DataType::Int2(None) => Ok("smallint".to_owned()),
            DataType::Numeric(info) | DataType::Decimal(info) => match numeric(info) {
                Some(suffix) => Ok(format!("numeric{suffix}")),
                None => refused(),
            },
            DataType::Real | DataType::Float4 => Ok("real".to_owned()),
            DataType::DoublePrecision | DataType::Float8 => Ok("double precision".to_owned()),
            DataType::Text => Ok("text".to_owned()),
            DataType::Varchar(len)
            | DataType::CharacterVarying(len)
            | DataType::CharVarying(len) => match char_length(len) {
                Some(None) => Ok("varchar".to_owned()),
                Some(Some(n)) => Ok(format!("varchar({n})")),
                None => refused(),
            },
            DataType::Char(len) | DataType::Character(len) => match char_length(len) {
                Some(None) => Ok("char".to_owned()),
                Some(Some(n)) => Ok(format!("char({n})")),
                None => refused(),
            },
            DataType::Date => Ok("date".to_owned()),
            DataType::Timestamp(None, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                Ok("timestamp".to_owned())
            }
            DataType::Timestamp(None, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz)
                if postgres =>
            {
                Ok("timestamptz".to_owned())
            }
            DataType::Time(None, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
                Ok("time".to_owned())
            }
            DataType::Boolean | DataType::Bool => Ok("boolean".to_owned()),
            _ => refused(),
        }
    }

    /// `DATE '...'`, `TIMESTAMP '...'`, `TIME '...'`.
    fn typed_string(&self, typed: &TypedString) -> Result<String, ScreenError> {
        if self.dialect == Dialect::Sqlite {
            return self.refuse(
                "typed literals like `DATE '...'` are not allowed in SQLite (use date('...'))",
            );
        }
        if typed.uses_odbc_syntax {
            return self.refuse("ODBC literals `{d '...'}` are not allowed");
        }
        let keyword = match &typed.data_type {
            DataType::Date => "DATE",
            DataType::Timestamp(None, TimezoneInfo::None) => "TIMESTAMP",
            DataType::Timestamp(None, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz)
                if self.dialect == Dialect::Postgres =>
            {
                "TIMESTAMPTZ"
            }
            DataType::Time(None, TimezoneInfo::None) => "TIME",
            other => {
                return self.refuse(format!(
                    "typed literals of type `{}` are not allowed",
                    excerpt(&other.to_string())
                ))
            }
        };
        let value = match &typed.value.value {
            Value::SingleQuotedString(s) => s,
            Value::EscapedStringLiteral(s) if self.dialect == Dialect::Postgres => s,
            _ => return self.refuse("a typed literal takes a plain string"),
        };
        Ok(format!("{keyword} {}", self.string(value)?))
    }

    fn interval(&self, interval: &Interval, d: usize) -> Result<String, ScreenError> {
        if interval.leading_precision.is_some()
            || interval.last_field.is_some()
            || interval.fractional_seconds_precision.is_some()
        {
            return self.refuse("only `INTERVAL value [UNIT]` intervals are allowed");
        }
        let unit = match &interval.leading_field {
            None => None,
            Some(field) => Some(self.datetime_field(field, "INTERVAL")?),
        };
        match self.dialect {
            Dialect::Sqlite => {
                self.refuse("`INTERVAL` is not allowed in SQLite (use date modifiers)")
            }
            Dialect::Postgres => {
                let value = match interval.value.as_ref() {
                    Expr::Value(v) => match &v.value {
                        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => s,
                        _ => {
                            return self.refuse("`INTERVAL` takes a string, e.g. INTERVAL '1 day'")
                        }
                    },
                    _ => return self.refuse("`INTERVAL` takes a string, e.g. INTERVAL '1 day'"),
                };
                let mut out = format!("INTERVAL {}", self.string(value)?);
                if let Some(unit) = unit {
                    out.push(' ');
                    out.push_str(unit);
                }
                Ok(out)
            }
            Dialect::MySql => {
                let Some(unit) = unit else {
                    return self.refuse("`INTERVAL` needs a unit in MySQL, e.g. INTERVAL 1 DAY");
                };
                Ok(format!(
                    "INTERVAL {} {unit}",
                    self.expr(&interval.value, d)?
                ))
            }
        }
    }

    /// A field of `extract` or a unit of `INTERVAL`, from a fixed list.
    fn datetime_field(
        &self,
        field: &DateTimeField,
        what: &str,
    ) -> Result<&'static str, ScreenError> {
        let postgres = self.dialect == Dialect::Postgres;
        let mysql = self.dialect == Dialect::MySql;
        Ok(match field {
            DateTimeField::Year => "YEAR",
            DateTimeField::Month => "MONTH",
            DateTimeField::Week(None) => "WEEK",
            DateTimeField::Day => "DAY",
            DateTimeField::Hour => "HOUR",
            DateTimeField::Minute => "MINUTE",
            DateTimeField::Second => "SECOND",
            DateTimeField::Quarter => "QUARTER",
            DateTimeField::Microsecond if mysql => "MICROSECOND",
            DateTimeField::Dow if postgres => "DOW",
            DateTimeField::Doy if postgres => "DOY",
            DateTimeField::Epoch if postgres => "EPOCH",
            DateTimeField::Isodow if postgres => "ISODOW",
            DateTimeField::Isoyear if postgres => "ISOYEAR",
            other => {
                return self.refuse(format!(
                    "the field `{}` is not allowed in `{what}`",
                    excerpt(&other.to_string())
                ))
            }
        })
    }

    fn trim(
        &self,
        trim_where: Option<&TrimWhereField>,
        trim_what: Option<&Expr>,
        expr: &Expr,
        trim_characters: Option<&[Expr]>,
        d: usize,
    ) -> Result<String, ScreenError> {
        let value = self.expr(expr, d)?;
        if let Some(chars) = trim_characters {
            if self.dialect == Dialect::MySql || chars.len() != 1 || trim_where.is_some() {
                return self.refuse("this form of `trim` is not allowed");
            }
            return Ok(format!("trim({value}, {})", self.expr(&chars[0], d)?));
        }
        if trim_where.is_none() && trim_what.is_none() {
            return Ok(format!("trim({value})"));
        }
        if self.dialect == Dialect::Sqlite {
            return self
                .refuse("`trim(... FROM ...)` is not allowed in SQLite (use trim(x, chars))");
        }
        let mut out = String::from("trim(");
        if let Some(side) = trim_where {
            out.push_str(match side {
                TrimWhereField::Both => "BOTH ",
                TrimWhereField::Leading => "LEADING ",
                TrimWhereField::Trailing => "TRAILING ",
            });
        }
        if let Some(what) = trim_what {
            out.push_str(&self.expr(what, d)?);
            out.push(' ');
        }
        out.push_str("FROM ");
        out.push_str(&value);
        out.push(')');
        Ok(out)
    }

    fn ceil_floor(
        &self,
        name: &str,
        expr: &Expr,
        field: &CeilFloorKind,
        d: usize,
    ) -> Result<String, ScreenError> {
        match field {
            CeilFloorKind::DateTimeField(DateTimeField::NoDateTime) => {
                Ok(format!("{name}({})", self.expr(expr, d)?))
            }
            _ => self.refuse(format!("`{name}` takes one argument only")),
        }
    }

    fn function(&self, function: &Function, d: usize) -> Result<String, ScreenError> {
        let parts = &function.name.0;
        let written = function.name.to_string();
        let ident = match parts.as_slice() {
            [ObjectNamePart::Identifier(ident)] => ident,
            _ => {
                return self.refuse(format!(
                    "qualified function names (`{}`) are not allowed",
                    excerpt(&written)
                ))
            }
        };
        let lower = ident.value.to_lowercase();
        let Some(allowed) = FUNCTIONS
            .iter()
            .find(|f| f.name == lower && available((f.postgres, f.mysql, f.sqlite), self.dialect))
        else {
            return Err(ScreenError::FunctionNotAllowed {
                context: CONTEXT,
                name: excerpt(&ident.value),
                allowed: allowed_function_names(self.dialect),
            });
        };
        if function.uses_odbc_syntax {
            return self.refuse("ODBC function calls `{fn ...}` are not allowed");
        }
        if !matches!(function.parameters, FunctionArguments::None) {
            return self.refuse("parametric function calls are not allowed");
        }
        if !function.within_group.is_empty() {
            return self.refuse("`WITHIN GROUP` is not allowed");
        }
        if function.filter.is_some() {
            return self.refuse("`FILTER` is not allowed");
        }
        if function.null_treatment.is_some() {
            return self.refuse("`IGNORE/RESPECT NULLS` is not allowed");
        }
        if function.over.is_some() {
            return self.refuse("window functions (`OVER`) are not allowed");
        }
        let args: &[FunctionArg] = match &function.args {
            FunctionArguments::None if KEYWORD_FUNCTIONS.contains(&allowed.name) => &[],
            FunctionArguments::None => {
                return self.refuse(format!("`{}` needs parentheses", allowed.name))
            }
            FunctionArguments::Subquery(_) => return self.refuse("subqueries are not allowed"),
            FunctionArguments::List(list) => {
                if list.duplicate_treatment.is_some() {
                    return self.refuse("`DISTINCT`/`ALL` in function calls is not allowed");
                }
                if !list.clauses.is_empty() {
                    return self.refuse(
                        "clauses inside function calls (`ORDER BY`, `LIMIT`, `SEPARATOR`, ...) are not allowed",
                    );
                }
                &list.args
            }
        };
        if args.len() < allowed.min_args || args.len() > allowed.max_args {
            return self.refuse(if allowed.min_args == allowed.max_args {
                format!(
                    "`{}` takes {} argument(s), not {}",
                    allowed.name,
                    allowed.min_args,
                    args.len()
                )
            } else {
                format!(
                    "`{}` takes {} to {} arguments, not {}",
                    allowed.name,
                    allowed.min_args,
                    allowed.max_args,
                    args.len()
                )
            });
        }
        let mut rendered = Vec::with_capacity(args.len());
        for arg in args {
            match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => rendered.push(self.expr(e, d)?),
                FunctionArg::Unnamed(_) => {
                    return self.refuse("the wildcard `*` is not allowed");
                }
                FunctionArg::Named { .. } | FunctionArg::ExprNamed { .. } => {
                    return self.refuse("named function arguments are not allowed");
                }
            }
        }
        if KEYWORD_FUNCTIONS.contains(&allowed.name) {
            // The keyword form works in all three dialects; `current_date()` does not.
            return Ok(allowed.name.to_owned());
        }
        Ok(format!("{}({})", allowed.name, rendered.join(", ")))
    }
}

/// A column name quoted for the dialect.
fn quote_identifier(dialect: Dialect, name: &str) -> String {
    match dialect {
        Dialect::MySql => format!("`{}`", name.replace('`', "``")),
        Dialect::Postgres | Dialect::Sqlite => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A string literal for the dialect. PostgreSQL gets an `E'...'` string (its meaning does
/// not depend on `standard_conforming_strings`); MySQL doubles backslashes and quotes (under
/// `NO_BACKSLASH_ESCAPES` that changes the value, never where the string ends); SQLite has
/// no escapes but the doubled quote.
fn render_string(dialect: Dialect, s: &str) -> String {
    match dialect {
        Dialect::Postgres => format!("E'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        Dialect::MySql => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "''")),
        Dialect::Sqlite => format!("'{}'", s.replace('\'', "''")),
    }
}

/// `digits [. digits] [(e|E) [+|-] digits]`.
fn is_plain_number(text: &str) -> bool {
    fn digits(b: &[u8], mut i: usize) -> usize {
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        i
    }
    let b = text.as_bytes();
    let mut i = digits(b, 0);
    if i == 0 {
        return false;
    }
    if i < b.len() && b[i] == b'.' {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return false;
        }
        i = j;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return false;
        }
        i = j;
    }
    i == b.len() && text.len() <= 100
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        [
            "id",
            "name",
            "Created_At",
            "a\"b",
            "x`y",
            "Dup",
            "dup2",
            "DUP2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    fn ok(text: &str, dialect: Dialect) -> String {
        let columns = cols();
        match screen_where(text, dialect, Some(&columns)) {
            Ok(sql) => {
                // Rendering is stable.
                assert_eq!(
                    screen_where(&sql, dialect, Some(&columns)).as_deref(),
                    Ok(sql.as_str()),
                    "{dialect:?}: {text}"
                );
                sql
            }
            Err(e) => panic!("{dialect:?}: {text:?} refused: {e}"),
        }
    }

    fn refused(text: &str, dialect: Dialect) -> String {
        let columns = cols();
        match screen_where(text, dialect, Some(&columns)) {
            Ok(sql) => panic!("{dialect:?}: {text:?} accepted as {sql}"),
            Err(e) => {
                let message = e.to_string();
                assert!(message.starts_with("`where`: "), "{message}");
                message
            }
        }
    }

    fn has(text: &str, dialect: Dialect, needle: &str) {
        let message = refused(text, dialect);
        assert!(
            message.contains(needle),
            "{dialect:?}: {text:?}: {message:?} does not mention {needle:?}"
        );
    }

    fn refused_all(text: &str, needle: &str) {
        for dialect in [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite] {
            let message = refused(text, dialect);
            assert!(
                message.contains(needle),
                "{dialect:?}: {text:?}: {message:?} does not mention {needle:?}"
            );
        }
    }

    use Dialect::{MySql, Postgres, Sqlite};

    #[test]
    fn columns_are_quoted_in_catalog_spelling() {
        assert_eq!(ok("id = 1", Postgres), r#"("id" = 1)"#);
        assert_eq!(ok("id = 1", MySql), "(`id` = 1)");
        assert_eq!(ok("id = 1", Sqlite), r#"("id" = 1)"#);
        // Case-insensitive unique match takes the catalog spelling.
        assert_eq!(
            ok("created_at IS NULL", Postgres),
            r#"("Created_At" IS NULL)"#
        );
        assert_eq!(
            ok("CREATED_AT IS NOT NULL", MySql),
            "(`Created_At` IS NOT NULL)"
        );
        // Quotes inside names are doubled.
        assert_eq!(ok(r#""a""b" = 1"#, Postgres), r#"("a""b" = 1)"#);
        assert_eq!(ok("`x``y` = 1", MySql), "(`x``y` = 1)");
        assert_eq!(ok("`x``y` = 1", Sqlite), r#"("x`y" = 1)"#);
        // Exact match wins over case-insensitive ones; several inexact matches are ambiguous.
        assert_eq!(ok(r#""DUP2" = 1"#, Postgres), r#"("DUP2" = 1)"#);
        has(r#""Dup2" = 1"#, Postgres, "matches several columns");
    }

    #[test]
    fn unknown_and_qualified_columns_are_refused() {
        refused_all(
            "secret_col = 1",
            "column `secret_col` is not a column of the table",
        );
        refused_all("t.id = 1", "`t.id` is a qualified name");
        refused_all("public.t.id = 1", "`public.t.id` is a qualified name");
        has(
            r#""other".col = 1"#,
            Postgres,
            "`other.col` is a qualified name",
        );
        has(
            r#""other".col = 1"#,
            Sqlite,
            "`other.col` is a qualified name",
        );
        has("`other`.col = 1", MySql, "`other.col` is a qualified name");
    }

    #[test]
    fn without_columns_any_plain_name_is_accepted_and_quoted() {
        assert_eq!(
            screen_where("whatever = 1 AND \"Odd\"\"Name\" > 2", Postgres, None).as_deref(),
            Ok(r#"(("whatever" = 1) AND ("Odd""Name" > 2))"#)
        );
        assert_eq!(
            screen_where("whatever = 1", MySql, None).as_deref(),
            Ok("(`whatever` = 1)")
        );
        assert!(screen_where("t.c = 1", Postgres, None).is_err());
        assert!(screen_where("@x = 1", MySql, None).is_err());
    }

    #[test]
    fn literals() {
        for d in [Postgres, MySql, Sqlite] {
            assert_eq!(ok("id = 42", d), r#"("id" = 42)"#.replace('"', q(d)));
            assert_eq!(
                ok("id = 1.5e-3", d),
                r#"("id" = 1.5e-3)"#.replace('"', q(d))
            );
            assert_eq!(ok("id = 1.25", d), r#"("id" = 1.25)"#.replace('"', q(d)));
            assert_eq!(
                ok("id IS NULL OR id = TRUE OR id = false", d),
                r#"((("id" IS NULL) OR ("id" = TRUE)) OR ("id" = FALSE))"#.replace('"', q(d))
            );
            assert_eq!(
                ok("name = NULL", d),
                r#"("name" = NULL)"#.replace('"', q(d))
            );
        }
        has("id = .5", Postgres, "the number `.5`");
    }

    fn q(d: Dialect) -> &'static str {
        if d == MySql {
            "`"
        } else {
            "\""
        }
    }

    #[test]
    fn strings_are_escaped_per_dialect() {
        // Postgres: standard string with a backslash (standard_conforming_strings).
        assert_eq!(ok(r"name = 'a\b'", Postgres), r#"("name" = E'a\\b')"#);
        assert_eq!(ok("name = 'it''s'", Postgres), r#"("name" = E'it''s')"#);
        assert_eq!(
            ok(r"name = E'a\\b\'c'", Postgres),
            r#"("name" = E'a\\b''c')"#
        );
        assert_eq!(ok(r"name = E'\x41\n'", Postgres), "(\"name\" = E'A\n')");
        assert_eq!(ok("name = 'żółć ✓'", Postgres), "(\"name\" = E'żółć ✓')");
        assert_eq!(ok("name = ''", Postgres), "(\"name\" = E'')");
        // MySQL: the tokenizer unescapes `\'`, we double backslashes and quotes.
        assert_eq!(ok(r"name = 'a\'b'", MySql), "(`name` = 'a''b')");
        assert_eq!(ok(r"name = 'a\\b'", MySql), r"(`name` = 'a\\b')");
        assert_eq!(ok("name = 'it''s'", MySql), "(`name` = 'it''s')");
        assert_eq!(ok(r"name LIKE 'a\%'", MySql), r"(`name` LIKE 'a\\%')");
        assert_eq!(ok("name = 'żółć ✓'", MySql), "(`name` = 'żółć ✓')");
        // SQLite: no backslash escapes at all.
        assert_eq!(ok(r"name = 'a\'", Sqlite), r#"("name" = 'a\')"#);
        assert_eq!(ok("name = 'it''s'", Sqlite), r#"("name" = 'it''s')"#);
        assert_eq!(ok("name = 'żółć ✓'", Sqlite), "(\"name\" = 'żółć ✓')");
        // An attacker's `\'` can't close a MySQL string in the output.
        assert_eq!(
            ok(r"name = '\' OR 1=1 -- '", MySql),
            r"(`name` = ''' OR 1=1 -- ')"
        );
    }

    #[test]
    fn refused_strings() {
        has(r"name = E'a\x00b'", Postgres, "not valid SQL");
        has("name = 'a\u{0}b'", Sqlite, "NUL");
        has("name = N'x'", MySql, "national strings");
        has("name = X'41'", MySql, "hex strings");
        has("name = $$x$$", Postgres, "dollar-quoted");
        has("name = \"x\"", MySql, "double-quoted strings");
        has("name = U&'x'", Postgres, "unicode strings");
        has("name = _utf8'x'", MySql, "introducers");
    }

    #[test]
    fn operators() {
        assert_eq!(
            ok(
                "id + 1 * 2 - 3 / 4 % 5 >= 0 AND NOT id <> 2 OR id != 3",
                Postgres
            ),
            r#"((((("id" + (1 * 2)) - ((3 / 4) % 5)) >= 0) AND (NOT ("id" <> 2))) OR ("id" <> 3))"#
        );
        assert_eq!(ok("-id < +1", MySql), "((-`id`) < (+1))");
        assert_eq!(
            ok("id IN (1, 2) AND id NOT IN (3)", Sqlite),
            r#"(("id" IN (1, 2)) AND ("id" NOT IN (3)))"#
        );
        assert_eq!(
            ok("id BETWEEN 1 AND 2 OR id NOT BETWEEN 3 AND 4", Postgres),
            r#"(("id" BETWEEN 1 AND 2) OR ("id" NOT BETWEEN 3 AND 4))"#
        );
        assert_eq!(
            ok("name LIKE 'a!%%' ESCAPE '!' AND name NOT LIKE 'b%'", MySql),
            "((`name` LIKE 'a!%%' ESCAPE '!') AND (`name` NOT LIKE 'b%'))"
        );
        assert_eq!(ok("name ILIKE 'a%'", Postgres), r#"("name" ILIKE E'a%')"#);
        assert_eq!(
            ok("name NOT ILIKE 'a%'", Postgres),
            r#"("name" NOT ILIKE E'a%')"#
        );
        assert_eq!(
            ok("name || 'x' = 'y'", Sqlite),
            r#"(("name" || 'x') = 'y')"#
        );
        assert_eq!(
            ok("(id = 1) IS TRUE AND (id = 2) IS NOT FALSE", Postgres),
            r#"((("id" = 1) IS TRUE) AND (("id" = 2) IS NOT FALSE))"#
        );
        assert_eq!(
            ok("CASE WHEN id > 1 THEN 'a' ELSE 'b' END = 'a'", Sqlite),
            r#"((CASE WHEN ("id" > 1) THEN 'a' ELSE 'b' END) = 'a')"#
        );
        has("name || 'x' = 'y'", MySql, "`||` is not allowed in MySQL");
        has("name ILIKE 'a'", MySql, "`ILIKE`");
        has("id IN ()", Postgres, "not valid SQL");
    }

    #[test]
    fn casts_and_typed_literals() {
        assert_eq!(
            ok("id::int = 1", Postgres),
            r#"(CAST("id" AS integer) = 1)"#
        );
        assert_eq!(
            ok(
                "CAST(name AS numeric(10,2)) > 1 AND name::varchar(5) = 'x'",
                Postgres
            ),
            r#"((CAST("name" AS numeric(10,2)) > 1) AND (CAST("name" AS varchar(5)) = E'x'))"#
        );
        assert_eq!(
            ok(
                "CAST(created_at AS timestamp with time zone) > now()",
                Postgres
            ),
            r#"(CAST("Created_At" AS timestamptz) > now())"#
        );
        assert_eq!(
            ok("CAST(id AS double precision) > CAST(id AS boolean)", Sqlite),
            r#"(CAST("id" AS double precision) > CAST("id" AS boolean))"#
        );
        assert_eq!(
            ok("CAST(id AS UNSIGNED) = CAST(name AS DECIMAL(10,2))", MySql),
            "(CAST(`id` AS UNSIGNED) = CAST(`name` AS DECIMAL(10,2)))"
        );
        assert_eq!(
            ok("CAST(name AS CHAR(3)) = CAST(name AS DATETIME)", MySql),
            "(CAST(`name` AS CHAR(3)) = CAST(`name` AS DATETIME))"
        );
        assert_eq!(
            ok("created_at >= DATE '2024-01-01'", Postgres),
            r#"("Created_At" >= DATE E'2024-01-01')"#
        );
        assert_eq!(
            ok("created_at >= TIMESTAMP '2024-01-01 10:00:00'", MySql),
            "(`Created_At` >= TIMESTAMP '2024-01-01 10:00:00')"
        );
        has("id::regclass = 1", Postgres, "casts to `REGCLASS`");
        has("CAST(id AS json) = 1", Postgres, "casts to `JSON`");
        has("id::int = 1", MySql, "`::`");
        has("created_at > DATE '2024-01-01'", Sqlite, "typed literals");
    }

    #[test]
    fn intervals() {
        assert_eq!(
            ok("created_at > now() - INTERVAL '1 day'", Postgres),
            r#"("Created_At" > (now() - INTERVAL E'1 day'))"#
        );
        assert_eq!(
            ok("created_at > now() - INTERVAL 1 DAY", MySql),
            "(`Created_At` > (now() - INTERVAL 1 DAY))"
        );
        assert_eq!(
            ok("created_at > date_sub(curdate(), INTERVAL 7 DAY)", MySql),
            "(`Created_At` > date_sub(curdate(), INTERVAL 7 DAY))"
        );
        has("created_at > INTERVAL '1 day'", Sqlite, "INTERVAL");
    }

    #[test]
    fn functions() {
        assert_eq!(
            ok("LOWER(name) = upper('x') AND length(name) > 1", Postgres),
            r#"((lower("name") = upper(E'x')) AND (length("name") > 1))"#
        );
        assert_eq!(
            ok(
                "coalesce(name, 'a') = nullif(name, '') AND abs(id) > round(id, 2)",
                MySql
            ),
            "((coalesce(`name`, 'a') = nullif(`name`, '')) AND (abs(`id`) > round(`id`, 2)))"
        );
        assert_eq!(
            ok("floor(id) < ceil(id) AND ceiling(id) > 0", Sqlite),
            r#"((floor("id") < ceil("id")) AND (ceiling("id") > 0))"#
        );
        assert_eq!(
            ok("concat(name, 'x') = replace(name, 'a', 'b')", MySql),
            "(concat(`name`, 'x') = replace(`name`, 'a', 'b'))"
        );
        assert_eq!(
            ok("substring(name from 2 for 3) = substr(name, 1)", Postgres),
            r#"(substr("name", 2, 3) = substr("name", 1))"#
        );
        assert_eq!(
            ok("trim(name) = trim(LEADING 'x' FROM name)", MySql),
            "(trim(`name`) = trim(LEADING 'x' FROM `name`))"
        );
        assert_eq!(
            ok("left(name, 2) = right(name, 2)", Postgres),
            r#"(left("name", 2) = right("name", 2))"#
        );
        assert_eq!(
            ok("extract(YEAR FROM created_at) = 2024", Postgres),
            r#"(extract(YEAR FROM "Created_At") = 2024)"#
        );
        assert_eq!(
            ok(
                "created_at < CURRENT_TIMESTAMP AND created_at < current_date",
                Sqlite
            ),
            r#"(("Created_At" < current_timestamp) AND ("Created_At" < current_date))"#
        );
        assert_eq!(
            ok(
                "date_trunc('day', created_at) = to_date('2024', 'YYYY')",
                Postgres
            ),
            r#"(date_trunc(E'day', "Created_At") = to_date(E'2024', E'YYYY'))"#
        );
        assert_eq!(
            ok(
                "date_format(created_at, '%Y') = '2024' AND str_to_date(name, '%Y') < now()",
                MySql
            ),
            "((date_format(`Created_At`, '%Y') = '2024') AND (str_to_date(`name`, '%Y') < now()))"
        );
        assert_eq!(
            ok("strftime('%Y', created_at) = '2024' AND julianday(created_at) > datetime('now', '-1 day')", Sqlite),
            r#"((strftime('%Y', "Created_At") = '2024') AND (julianday("Created_At") > datetime('now', '-1 day')))"#
        );
    }

    #[test]
    fn refused_functions_are_named() {
        for (text, name) in [
            ("pg_read_file('/etc/passwd') IS NOT NULL", "pg_read_file"),
            ("load_file('/etc/passwd') IS NOT NULL", "load_file"),
            ("sleep(5) = 0", "sleep"),
            ("benchmark(1000000, md5('a')) = 0", "benchmark"),
            ("set_config('a', 'b', false) = 'b'", "set_config"),
            ("setval('s', 1) = 1", "setval"),
            ("nextval('s') = 1", "nextval"),
            ("lo_from_bytea(0, 'x') = 1", "lo_from_bytea"),
            ("dblink('x', 'y') IS NULL", "dblink"),
            ("count(id) > 0", "count"),
        ] {
            refused_all(
                text,
                &format!("function `{name}` is not on the allow-list (allowed: abs, "),
            );
        }
        has(
            "table_to_xml('secret', true, false, '')::text::int > 0",
            Postgres,
            "function `table_to_xml` is not on the allow-list",
        );
        has(
            r"query_to_xml(E'\\x73elect 1', true, false, '') IS NOT NULL",
            Postgres,
            "function `query_to_xml` is not on the allow-list",
        );
        has(
            "pg_catalog.lower(name) = 'a'",
            Postgres,
            "qualified function names (`pg_catalog.lower`)",
        );
        has("now() > 1", Sqlite, "function `now`");
        has("lower(DISTINCT name) = 'a'", Postgres, "DISTINCT");
        has("lower(name) OVER () = 'a'", Postgres, "OVER");
        has("lower(name ORDER BY id) = 'a'", Postgres, "ORDER BY");
        has(
            "lower(x => name) = 'a'",
            Postgres,
            "named function arguments",
        );
        has("lower(name, name) = 'a'", Postgres, "takes 1 argument");
        has("extract(year from created_at) = 1", Sqlite, "extract");
    }

    #[test]
    fn attacks_are_refused() {
        refused_all("false) UNION ALL (TABLE secret", "unexpected `)`");
        refused_all("id = 1; DROP TABLE t", "more than one statement");
        refused_all("id = 1;", "trailing `;`");
        refused_all("1=1 -- x", "comments are not allowed");
        refused_all("1=1 #", "");
        has("1=1 --", Postgres, "comments are not allowed");
        // MySQL needs a space after `--`: this is `1 = 1 - -`, not a comment.
        has("1=1 --", MySql, "not valid SQL");
        refused_all("1=1 /* x */", "comments are not allowed");
        refused_all(
            "id > 0 /*!50000 UNION SELECT 1*/",
            "MySQL executable comments",
        );
        refused_all(
            "id > 0 /*M!100000 UNION SELECT 1*/",
            "MySQL executable comments",
        );
        refused_all("/*!50000SELECT*/ 1", "MySQL executable comments");
        has(
            "1) INTO OUTFILE '/tmp/x' #",
            MySql,
            "comments are not allowed",
        );
        refused_all("1) INTO OUTFILE '/tmp/x'", "unexpected `)`");
        refused_all("id = 1 INTO OUTFILE '/tmp/x'", "`INTO` is not allowed");
        refused_all("(SELECT 1) = 1", "subqueries are not allowed");
        refused_all(
            "id IN (SELECT id FROM secret)",
            "subqueries are not allowed",
        );
        refused_all(
            "EXISTS (SELECT 1 FROM secret)",
            "subqueries are not allowed",
        );
        has("id = $1", Postgres, "placeholders (`$1`)");
        has("id = ?", MySql, "placeholders (`?`)");
        has("@@version = 1", MySql, "session variables (`@@version`)");
        has("@x = 1", MySql, "session variables (`@x`)");
        has("@x = 1", Postgres, "operator");
        has("name COLLATE \"C\" = 'a'", Postgres, "COLLATE");
        has("name @> 'a'", Postgres, "operator `@>`");
        has("name -> 'a' = '1'", Postgres, "operator `->`");
        has("id[1] = 1", Postgres, "arrays");
        assert!(refused("* = 1", Postgres).starts_with("`where`: "));
        has("(id, name) = (1, 'a')", Postgres, "row values");
        has("id = 1 UNION SELECT 1", Postgres, "UNION");
    }

    #[test]
    fn limits() {
        let deep = format!("{}id = 1{}", "(".repeat(40), ")".repeat(40));
        assert_eq!(ok(&deep, Postgres), r#"("id" = 1)"#);
        let too_deep = format!("{}id = 1{}", "(".repeat(200), ")".repeat(200));
        has(&too_deep, Postgres, "nested more than");
        let chain = (0..100).map(|_| "id = 1").collect::<Vec<_>>().join(" OR ");
        has(&chain, MySql, "nested more than");
        let long = format!("name = '{}'", "x".repeat(20_000));
        has(&long, Sqlite, "more than the 16384 allowed");
        // Messages never repeat much of the input.
        let long_name = format!("{} = 1", "y".repeat(1000));
        let message = refused(&long_name, Postgres);
        assert!(message.len() < 200, "{message}");
    }
}
