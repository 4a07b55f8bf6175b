//! What a job asks of a reader and a writer, in DataX's vocabulary, and how a split
//! becomes SQL conditions. The read side's types live in `ferry-model` (they cross the
//! tunnel); they are re-exported here.

use serde::{Deserialize, Serialize};

pub use ferry_model::{
    int_splits, Changes, ChangesError, ColumnDef, ColumnDefault, FkAction, ForeignKey, Identity,
    Index, IndexColumn, KeyValue, Position, ReadSpec, Split, SplitBounds, SplitOrder, TableRef,
    TableSchema, DEFAULT_FETCH_SIZE,
};

/// How a dialect writes identifiers and key values into a read's SQL: the only way a
/// split's bounds and resume position become SQL text.
pub trait KeySql {
    /// `name` as a quoted identifier.
    fn ident(&self, name: &str) -> String;
    /// Text (or a date or time written as text) as a literal the database
    /// compares with a key column in the column's own type and collation.
    /// Must be injection-proof whatever the text holds.
    fn text(&self, text: &str) -> String;
    /// Binary as a literal.
    fn bytes(&self, bytes: &[u8]) -> String {
        format!("X'{}'", hex::encode(bytes))
    }
    /// `value` as a literal (numbers are checked digits already).
    fn literal(&self, value: &KeyValue) -> String {
        match value {
            KeyValue::Int(n) => n.to_string(),
            KeyValue::Num(n) => n.clone(),
            KeyValue::Text(t) => self.text(t),
            KeyValue::Bytes(b) => self.bytes(b),
        }
    }
}

/// The SQL conditions of a read: the job's `where` (parenthesised), the
/// split's key range and, for a resumed split, "after the position" in the
/// split's order. Bounds are integers, written as literals; a position's
/// values go through the dialect's [`KeySql::literal`].
pub fn read_conditions(spec: &ReadSpec, split: Option<&Split>, sql: &dyn KeySql) -> Vec<String> {
    let mut conds = Vec::new();
    if let Some(w) = spec
        .where_clause
        .as_deref()
        .filter(|w| !w.trim().is_empty())
    {
        conds.push(format!("({w})"));
    }
    match split.map(|s| &s.bounds) {
        Some(SplitBounds::IntRange { column, lo, hi }) => {
            let c = sql.ident(column);
            if let Some(lo) = lo {
                conds.push(format!("{c} >= {lo}"));
            }
            if let Some(hi) = hi {
                conds.push(format!("{c} < {hi}"));
            }
            // One range covering everything still leaves NULL keys to their own split.
            if lo.is_none() && hi.is_none() {
                conds.push(format!("{c} IS NOT NULL"));
            }
        }
        Some(SplitBounds::NullKey { column }) => {
            conds.push(format!("{} IS NULL", sql.ident(column)))
        }
        Some(SplitBounds::All) | Some(SplitBounds::File { .. }) | None => {}
    }
    if let Some(split) = split {
        if let Some(after) = after_position(split, sql) {
            conds.push(after);
        }
    }
    conds
}

/// "After the split's resume position" in its order: for columns (a, b)
/// and position (x, y), `a >= x AND (a > x OR (a = x AND b > y))` (the
/// leading bound lets the database seek in the key's index).
fn after_position(split: &Split, sql: &dyn KeySql) -> Option<String> {
    let position = split.resume.as_ref()?;
    let columns = split.order_columns();
    let pairs: Vec<(String, String)> = columns
        .iter()
        .zip(position.values())
        .map(|(c, v)| (sql.ident(c), sql.literal(v)))
        .collect();
    let (first, rest) = pairs.split_first()?;
    let mut cond = String::new();
    for (i, (c, v)) in pairs.iter().enumerate().rev() {
        cond = if i + 1 == pairs.len() {
            format!("{c} > {v}")
        } else {
            format!("({c} > {v} OR ({c} = {v} AND {cond}))")
        };
    }
    Some(if rest.is_empty() {
        cond
    } else {
        format!("{} >= {} AND {cond}", first.0, first.1)
    })
}

/// `read_conditions` as a ` WHERE …` suffix (empty when there are none).
pub fn where_suffix(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// The order a table's splits are read in, from what the source knows:
/// its primary key `pk` (each column with whether the source can compare
/// its values as it orders them: integers, decimals, strings, binary,
/// dates and times, not floats or enums), and the integer split key the
/// job named, if any. The primary key when every column of it is
/// comparable and it leads with the split key; else the split key alone,
/// which the engine checks row by row; else none.
/// The column a read splits on: its `splitPk`, else with `splitOnKey` the first column of
/// the primary key `pk` (whether it is an integer the source decides).
pub fn split_column<'a>(spec: &'a ReadSpec, pk: &'a [(String, bool)]) -> Option<&'a str> {
    match spec.split_pk.as_deref().filter(|k| !k.trim().is_empty()) {
        Some(k) => Some(k),
        None if spec.split_on_key => pk.first().map(|(c, _)| c.as_str()),
        None => None,
    }
}

pub fn key_order(pk: &[(String, bool)], int_split_pk: Option<&str>) -> Option<SplitOrder> {
    let leads = |c: &str| int_split_pk.is_none_or(|k| k.eq_ignore_ascii_case(c));
    match pk.first() {
        Some((first, _)) if pk.iter().all(|(_, ok)| *ok) && leads(first) => Some(SplitOrder {
            columns: pk.iter().map(|(c, _)| c.clone()).collect(),
            unique: true,
        }),
        _ => int_split_pk.map(|k| SplitOrder {
            columns: vec![k.to_string()],
            unique: false,
        }),
    }
}

/// ` ORDER BY …` the split's order columns, so a batch's last row says
/// which rows were sent before it; empty for an unordered split.
pub fn order_suffix(split: Option<&Split>, sql: &dyn KeySql) -> String {
    match split.map(Split::order_columns).filter(|c| !c.is_empty()) {
        Some(columns) => {
            let list: Vec<String> = columns.iter().map(|c| sql.ident(c)).collect();
            format!(" ORDER BY {}", list.join(", "))
        }
        None => String::new(),
    }
}

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Plain insert; a key conflict is an error.
    #[default]
    Insert,
    /// Replace the row with the same key.
    Replace,
    /// Insert, or update the row with the same key (upsert).
    Update,
}

/// A writer's parameters, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WriteSpec {
    /// Target table, optionally schema-qualified (empty in a whole-database job's file:
    /// each table gets its own).
    #[serde(default)]
    pub table: String,
    /// Target column names, positionally matching the reader's columns;
    /// empty means the reader's names (DataX: `column`).
    #[serde(default, alias = "column")]
    pub columns: Vec<String>,
    #[serde(default)]
    pub write_mode: WriteMode,
    /// Key columns for `replace` / `update` (default: the table's primary key).
    #[serde(default)]
    pub keys: Vec<String>,
    /// Statements run once before any row is written.
    #[serde(default)]
    pub pre_sql: Vec<String>,
    /// Statements run once after every task succeeded.
    #[serde(default)]
    pub post_sql: Vec<String>,
    /// Rows per write and transaction at most (0: each batch as the reader
    /// sends it; a larger batch is written in several). To write larger
    /// transactions, raise the reader's `fetchSize`.
    #[serde(default)]
    pub batch_size: usize,
    /// Create the table from the source schema if it does not exist.
    #[serde(default)]
    pub create_table: bool,
    /// What to do when the table exists already. Unset: write only into
    /// a table without rows, unless `pre_sql` or a replacing `write_mode`
    /// says how to treat the rows it holds.
    #[serde(default)]
    pub existing: Option<crate::existing::Existing>,
    /// Where a database target keeps each split's checkpoint, committed in
    /// the transaction of every batch (default: `ferry_checkpoints` in the
    /// target table's schema).
    #[serde(default)]
    pub checkpoint_table: Option<String>,
    /// How a created table holds an ENUM column where the target has no ENUM type.
    #[serde(default)]
    pub enum_as: crate::ddl::EnumAs,
    /// The source table's keys, indexes, defaults and identity, projected onto the
    /// written columns: with `create_table`, the target gets them too. Filled by the
    /// engine from the source, never from a job file.
    #[serde(skip)]
    pub described: Option<TableSchema>,
    /// A row whose key is already in the target fails the write (a sharded job's key
    /// collision) instead of becoming a dirty record where a target refuses rows one by
    /// one (MySQL). Set by the engine, never from a job file.
    #[serde(skip)]
    pub collisions_fail: bool,
    /// A created table gets its primary key after the load (PostgreSQL; a table the job
    /// creates and fills with plain inserts, whose rows nothing else writes meanwhile).
    /// Set by the engine, never from a job file.
    #[serde(skip)]
    pub key_after_load: bool,
}

impl WriteSpec {
    /// The checkpoint table, qualified like the target table.
    pub fn checkpoint_table(&self) -> String {
        if let Some(t) = self
            .checkpoint_table
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            return t.to_string();
        }
        match schema_prefix(&self.table) {
            Some(schema) => format!("{schema}.ferry_checkpoints"),
            None => "ferry_checkpoints".to_string(),
        }
    }

    /// Target column names: `columns` positionally (empty or `["*"]`: the
    /// schema's own names).
    pub fn target_names(
        &self,
        schema: &arrow_schema::Schema,
    ) -> Result<Vec<String>, crate::ConnectorError> {
        if self.columns.is_empty() || (self.columns.len() == 1 && self.columns[0].trim() == "*") {
            return Ok(schema.fields().iter().map(|f| f.name().clone()).collect());
        }
        if self.columns.len() != schema.fields().len() {
            return Err(crate::ConnectorError::config(
                "columns",
                format!(
                    "{} target columns for {} source columns",
                    self.columns.len(),
                    schema.fields().len()
                ),
            ));
        }
        Ok(self.columns.iter().map(|c| c.trim().to_string()).collect())
    }
}

/// `s` of a qualified name `s.t` (quotes and backticks respected).
fn schema_prefix(table: &str) -> Option<&str> {
    let mut quote = None;
    let mut last_dot = None;
    for (i, c) in table.char_indices() {
        match (quote, c) {
            (None, '"' | '`') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => last_dot = Some(i),
            _ => {}
        }
    }
    last_dot.map(|i| &table[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Double-quoted identifiers, literals as debug strings: enough to see the shape.
    struct Plain;
    impl KeySql for Plain {
        fn ident(&self, name: &str) -> String {
            format!("\"{name}\"")
        }
        fn text(&self, t: &str) -> String {
            format!("'{t}'")
        }
    }

    fn by(columns: &[&str]) -> Option<SplitOrder> {
        Some(SplitOrder {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            unique: true,
        })
    }

    #[test]
    fn read_conditions_combine_where_and_split() {
        let spec = ReadSpec {
            where_clause: Some("a = 1 OR b = 2".into()),
            ..Default::default()
        };
        let q = &Plain;
        let s = int_splits("id", 1, 100, 2, by(&["id"]));
        assert_eq!(
            read_conditions(&spec, Some(&s[0]), q),
            vec!["(a = 1 OR b = 2)", "\"id\" < 51"]
        );
        assert_eq!(read_conditions(&spec, Some(&s[1]), q)[1], "\"id\" >= 51");
        assert_eq!(read_conditions(&spec, Some(&s[2]), q)[1], "\"id\" IS NULL");
        let one = int_splits("id", 5, 5, 1, by(&["id"]));
        assert_eq!(
            read_conditions(&ReadSpec::default(), Some(&one[0]), q),
            vec!["\"id\" IS NOT NULL"]
        );
        let resumed = s[0].resumed_after(Position::int(20));
        assert_eq!(
            read_conditions(&spec, Some(&resumed), q)[1..],
            ["\"id\" < 51", "\"id\" > 20"]
        );
        assert_eq!(order_suffix(Some(&resumed), q), " ORDER BY \"id\"");
        assert_eq!(order_suffix(Some(&s[2]), q), "");
        assert_eq!(
            read_conditions(
                &ReadSpec::default(),
                Some(&one[0].resumed_after(Position::int(-3))),
                q
            ),
            vec!["\"id\" IS NOT NULL", "\"id\" > -3"]
        );
        assert_eq!(where_suffix(&[]), "");
        assert_eq!(where_suffix(&["x".into(), "y".into()]), " WHERE x AND y");
    }

    #[test]
    fn each_dialect_writes_key_values_as_literals_no_value_can_end() {
        let text = KeyValue::text("a'b\\c").unwrap();
        let bytes = KeyValue::bytes(vec![0, 0x27, 0xff]).unwrap();
        let pg = crate::postgres::PgKeys;
        assert_eq!(pg.literal(&text), "E'a''b\\\\c'");
        assert_eq!(pg.literal(&bytes), "decode('0027ff', 'hex')");
        let my = crate::mysql::MySqlKeys;
        assert_eq!(my.literal(&text), "_utf8mb4 X'6127625c63'");
        assert_eq!(my.literal(&KeyValue::text("").unwrap()), "''");
        assert_eq!(my.literal(&bytes), "X'0027ff'");
        let lite = crate::sqlite::SqliteKeys;
        assert_eq!(lite.literal(&text), "'a''b\\c'");
        assert_eq!(lite.literal(&bytes), "X'0027ff'");
        for sql in [&pg as &dyn KeySql, &my, &lite] {
            assert_eq!(
                sql.literal(&KeyValue::Int(-170141183460469231731687303715884105728)),
                "-170141183460469231731687303715884105728"
            );
            assert_eq!(sql.literal(&KeyValue::num("-0.50").unwrap()), "-0.50");
        }
    }

    #[test]
    fn a_composite_position_resumes_in_key_order() {
        let split = Split::all().ordered(by(&["a", "b", "c"]));
        let at = Position::new(vec![
            KeyValue::Int(1),
            KeyValue::text("x").unwrap(),
            KeyValue::num("2.5").unwrap(),
        ])
        .unwrap();
        assert_eq!(
            read_conditions(&ReadSpec::default(), Some(&split.resumed_after(at)), &Plain),
            vec![
                "\"a\" >= 1 AND (\"a\" > 1 OR (\"a\" = 1 AND (\"b\" > 'x' OR (\"b\" = 'x' AND \"c\" > 2.5))))"
            ]
        );
        assert_eq!(
            order_suffix(Some(&split), &Plain),
            " ORDER BY \"a\", \"b\", \"c\""
        );
        assert!(read_conditions(&ReadSpec::default(), Some(&split), &Plain).is_empty());
    }

    #[test]
    fn checkpoint_table_sits_beside_the_target() {
        let w = |t: &str| WriteSpec {
            table: t.into(),
            ..Default::default()
        };
        assert_eq!(w("orders").checkpoint_table(), "ferry_checkpoints");
        assert_eq!(w("ods.orders").checkpoint_table(), "ods.ferry_checkpoints");
        assert_eq!(
            w(r#""a.b"."t.x""#).checkpoint_table(),
            r#""a.b".ferry_checkpoints"#
        );
        assert_eq!(w("`d`.`t`").checkpoint_table(), "`d`.ferry_checkpoints");
        let mut own = w("ods.orders");
        own.checkpoint_table = Some(" meta.cp ".into());
        assert_eq!(own.checkpoint_table(), "meta.cp");
    }

    #[test]
    fn datax_shaped_parameters_parse() {
        let r: ReadSpec = serde_json::from_str(
            r#"{"table":"orders","columns":["id","amount"],"where":"id > 5","splitPk":"id","fetchSize":1000}"#,
        )
        .unwrap();
        assert_eq!(r.split_pk.as_deref(), Some("id"));
        assert_eq!(r.where_clause.as_deref(), Some("id > 5"));
        let e = serde_json::from_str::<ReadSpec>(r#"{"tabel":"x"}"#).unwrap_err();
        assert!(e.to_string().contains("tabel"), "{e}");
        let w: WriteSpec = serde_json::from_str(
            r#"{"table":"t","writeMode":"update","preSql":["truncate t"],"createTable":true}"#,
        )
        .unwrap();
        assert_eq!(w.write_mode, WriteMode::Update);
    }
}
