//! What a job asks of a reader and a writer, in DataX's vocabulary.

use serde::{Deserialize, Serialize};

/// Rows per batch when a job does not say.
pub const DEFAULT_FETCH_SIZE: usize = 8192;

/// A reader's parameters, resolved (variables substituted, data source
/// looked up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadSpec {
    /// Table to read, optionally schema-qualified (`public.orders`).
    #[serde(default)]
    pub table: Option<String>,
    /// Columns to read, in order; empty means every column of the table
    /// (DataX calls it `column`).
    #[serde(default, alias = "column")]
    pub columns: Vec<String>,
    /// Extra SQL predicate (DataX `where`).
    #[serde(default, rename = "where")]
    pub where_clause: Option<String>,
    /// Column to split on (DataX `splitPk`).
    #[serde(default)]
    pub split_pk: Option<String>,
    /// A free-form query instead of `table` (DataX `querySql`); never split.
    #[serde(default)]
    pub query_sql: Option<String>,
    /// Rows per batch.
    #[serde(default = "default_fetch_size")]
    pub fetch_size: usize,
}

fn default_fetch_size() -> usize {
    DEFAULT_FETCH_SIZE
}

/// One slice of a read, run by one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// 0-based position among the job's splits.
    pub index: u32,
    /// Number of splits of the job.
    pub total: u32,
    pub bounds: SplitBounds,
    /// Where a resumed read starts: only rows whose split key is greater
    /// (an [`IntRange`](SplitBounds::IntRange) split is read in key order,
    /// so everything up to this key was committed before).
    #[serde(
        default,
        with = "opt_i128_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub after: Option<i128>,
}

/// Which rows a split covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitBounds {
    /// Every row (no split key, a query, or a single split).
    All,
    /// `column >= lo AND column < hi`; a missing bound is open. i128 holds
    /// every signed and unsigned 64-bit key.
    IntRange {
        column: String,
        // As strings: serde's internally tagged enums cannot carry i128 numbers.
        #[serde(with = "opt_i128_string")]
        lo: Option<i128>,
        #[serde(with = "opt_i128_string")]
        hi: Option<i128>,
    },
    /// Rows whose split key is NULL (no range contains them).
    NullKey { column: String },
    /// Every row of one file (file sources: one split per file); the path
    /// inside the source's location.
    File { path: String },
}

mod opt_i128_string {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<i128>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_some(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i128>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| t.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Split {
    /// The single split that reads everything.
    pub fn all() -> Self {
        Self {
            index: 0,
            total: 1,
            bounds: SplitBounds::All,
            after: None,
        }
    }

    /// The split key column, for splits read in key order.
    pub fn key_column(&self) -> Option<&str> {
        match &self.bounds {
            SplitBounds::IntRange { column, .. } => Some(column),
            _ => None,
        }
    }

    /// This split, read from after `key` (see [`Split::after`]).
    pub fn resumed_after(&self, key: i128) -> Self {
        Self {
            after: Some(key),
            ..self.clone()
        }
    }
}

/// Plans integer ranges between `min` and `max` (inclusive) into at most
/// `n` contiguous, non-overlapping ranges covering every value, plus one
/// split for NULL keys. The first range is open below and the last open
/// above, so rows inserted outside [min, max] after planning are still read.
pub fn int_splits(column: &str, min: i128, max: i128, n: usize) -> Vec<Split> {
    let n = n.max(1) as i128;
    let span = (max - min).max(0) + 1;
    let step = ((span + n - 1) / n).max(1);
    let mut bounds = Vec::new();
    let mut lo = min;
    while lo <= max {
        let hi = lo.saturating_add(step);
        bounds.push((lo, hi));
        lo = hi;
    }
    let count = bounds.len();
    let mut out: Vec<SplitBounds> = bounds
        .into_iter()
        .enumerate()
        .map(|(i, (lo, hi))| SplitBounds::IntRange {
            column: column.to_string(),
            lo: (i > 0).then_some(lo),
            hi: (i + 1 < count).then_some(hi),
        })
        .collect();
    if out.is_empty() {
        out.push(SplitBounds::IntRange {
            column: column.to_string(),
            lo: None,
            hi: None,
        });
    }
    out.push(SplitBounds::NullKey {
        column: column.to_string(),
    });
    let total = out.len() as u32;
    out.into_iter()
        .enumerate()
        .map(|(i, bounds)| Split {
            index: i as u32,
            total,
            bounds,
            after: None,
        })
        .collect()
}

/// The SQL conditions of a read: the job's `where` (parenthesised), the
/// split's key range and, for a resumed split, `key > after`. `quote`
/// quotes an identifier in the source's dialect. Bounds are integers, so
/// they are written as literals.
pub fn read_conditions(
    spec: &ReadSpec,
    split: Option<&Split>,
    quote: impl Fn(&str) -> String,
) -> Vec<String> {
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
            let c = quote(column);
            if let Some(lo) = lo {
                conds.push(format!("{c} >= {lo}"));
            }
            if let Some(hi) = hi {
                conds.push(format!("{c} < {hi}"));
            }
            // One range covering everything still leaves NULL keys to their own split.
            if lo.is_none() && hi.is_none() && split.and_then(|s| s.after).is_none() {
                conds.push(format!("{c} IS NOT NULL"));
            }
            if let Some(after) = split.and_then(|s| s.after) {
                conds.push(format!("{c} > {after}"));
            }
        }
        Some(SplitBounds::NullKey { column }) => conds.push(format!("{} IS NULL", quote(column))),
        Some(SplitBounds::All) | Some(SplitBounds::File { .. }) | None => {}
    }
    conds
}

/// `read_conditions` as a ` WHERE …` suffix (empty when there are none).
pub fn where_suffix(conds: &[String]) -> String {
    if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    }
}

/// ` ORDER BY key` for a split read in key order (integer ranges), so a
/// batch's last key says which rows were sent before it; empty otherwise.
pub fn order_suffix(split: Option<&Split>, quote: impl Fn(&str) -> String) -> String {
    match split.and_then(Split::key_column) {
        Some(c) => format!(" ORDER BY {}", quote(c)),
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
    /// Target table, optionally schema-qualified.
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
    /// Where a database target keeps each split's checkpoint, committed in
    /// the transaction of every batch (default: `ferry_checkpoints` in the
    /// target table's schema).
    #[serde(default)]
    pub checkpoint_table: Option<String>,
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

    fn ranges(s: &[Split]) -> Vec<(Option<i128>, Option<i128>)> {
        s.iter()
            .filter_map(|s| match &s.bounds {
                SplitBounds::IntRange { lo, hi, .. } => Some((*lo, *hi)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn splits_survive_json_with_full_u64_keys() {
        let s = int_splits("id", -5, i128::from(u64::MAX), 3);
        let json = serde_json::to_string(&s).unwrap();
        let back: Vec<Split> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn ranges_cover_everything_once_and_nulls_separately() {
        let s = int_splits("id", 1, 100, 4);
        assert_eq!(
            ranges(&s),
            vec![
                (None, Some(26)),
                (Some(26), Some(51)),
                (Some(51), Some(76)),
                (Some(76), None)
            ]
        );
        assert!(matches!(
            s.last().unwrap().bounds,
            SplitBounds::NullKey { .. }
        ));
        assert!(s.iter().all(|x| x.total == 5));
    }

    #[test]
    fn extreme_keys_do_not_overflow() {
        let s = int_splits("id", 0, u64::MAX as i128, 3);
        assert_eq!(ranges(&s).len(), 3);
        let s = int_splits("id", i64::MIN as i128, i64::MAX as i128, 2);
        assert_eq!(ranges(&s).len(), 2);
    }

    #[test]
    fn one_value_and_more_splits_than_values() {
        assert_eq!(ranges(&int_splits("id", 5, 5, 8)), vec![(None, None)]);
        assert_eq!(ranges(&int_splits("id", 1, 3, 8)).len(), 3);
    }

    #[test]
    fn read_conditions_combine_where_and_split() {
        let spec = ReadSpec {
            where_clause: Some("a = 1 OR b = 2".into()),
            ..Default::default()
        };
        let q = |c: &str| format!("\"{c}\"");
        let s = int_splits("id", 1, 100, 2);
        assert_eq!(
            read_conditions(&spec, Some(&s[0]), q),
            vec!["(a = 1 OR b = 2)", "\"id\" < 51"]
        );
        assert_eq!(read_conditions(&spec, Some(&s[1]), q)[1], "\"id\" >= 51");
        assert_eq!(read_conditions(&spec, Some(&s[2]), q)[1], "\"id\" IS NULL");
        let one = int_splits("id", 5, 5, 1);
        assert_eq!(
            read_conditions(&ReadSpec::default(), Some(&one[0]), q),
            vec!["\"id\" IS NOT NULL"]
        );
        let resumed = s[0].resumed_after(20);
        assert_eq!(
            read_conditions(&spec, Some(&resumed), q)[1..],
            ["\"id\" < 51", "\"id\" > 20"]
        );
        assert_eq!(order_suffix(Some(&resumed), q), " ORDER BY \"id\"");
        assert_eq!(order_suffix(Some(&s[2]), q), "");
        assert_eq!(
            read_conditions(&ReadSpec::default(), Some(&one[0].resumed_after(-3)), q),
            vec!["\"id\" > -3"]
        );
        let json = serde_json::to_string(&resumed).unwrap();
        assert!(json.contains(r#""after":"20""#), "{json}");
        assert_eq!(serde_json::from_str::<Split>(&json).unwrap(), resumed);
        assert_eq!(where_suffix(&[]), "");
        assert_eq!(where_suffix(&["x".into(), "y".into()]), " WHERE x AND y");
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
