//! Splits: the slices of a read, each run by one task, and what they know of their table,
//! their order and where they resume.

use serde::{Deserialize, Serialize};

use crate::position::Position;

/// Most order columns a split may name.
const MAX_ORDER_COLUMNS: usize = crate::position::MAX_POSITION_VALUES;

/// The table a split reads: which data source (as the job names it: an agent's data source,
/// or none for a job's own connection), which schema, which table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TableRef {
    /// The data source, as the job names it (`None`: the job's own connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The schema (PostgreSQL) or database (MySQL), when the job names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The table's name, unquoted.
    pub name: String,
}

impl TableRef {
    /// The table a job names (`orders`, `shop.orders`, `"a.b"."t"`, `` `d`.`t` ``), quotes
    /// removed; `None` for a name that is blank.
    pub fn parse(qualified: &str, source: Option<&str>) -> Option<Self> {
        let parts = split_qualified(qualified);
        let (schema, name) = match parts.as_slice() {
            [name] => (None, name.clone()),
            [schema, name] => (Some(schema.clone()), name.clone()),
            _ => return None,
        };
        (!name.is_empty()).then(|| Self {
            source: source.map(str::to_string),
            schema,
            name,
        })
    }

    /// `schema.name` (or `name`), unquoted, for messages and summaries.
    pub fn display_name(&self) -> String {
        match &self.schema {
            Some(s) => format!("{s}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// Splits `s` at dots outside `"…"` and `` `…` `` quotes, removing the quotes (a doubled
/// quote inside stands for itself).
fn split_qualified(s: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut quote: Option<char> = None;
    let mut chars = s.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '"' | '`') => quote = Some(c),
            (Some(q), c) if c == q => {
                if chars.peek() == Some(&q) {
                    chars.next();
                    if let Some(p) = parts.last_mut() {
                        p.push(q);
                    }
                } else {
                    quote = None;
                }
            }
            (None, '.') => parts.push(String::new()),
            (_, c) => {
                if let Some(p) = parts.last_mut() {
                    p.push(c)
                }
            }
        }
    }
    parts
}

/// The order a source reads a split in, so that the values of these columns at the last
/// row committed are a [`Position`] to resume after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitOrder {
    /// Columns of the table, most significant first (`ORDER BY` them).
    pub columns: Vec<String>,
    /// The source knows these columns are unique and never NULL (a primary key). When
    /// false, the engine resumes only while it sees every key greater than the one before
    /// (which it can tell for a single integer column only).
    pub unique: bool,
}

/// One slice of a read, run by one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// 0-based position among the job's splits.
    pub index: u32,
    /// Number of splits of the job.
    pub total: u32,
    /// The table this split reads (`None` for a query, and for file splits, which name
    /// their file in their bounds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableRef>,
    /// Which rows the split covers.
    pub bounds: SplitBounds,
    /// The order the source reads the split in, when positions within it mean something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<SplitOrder>,
    /// Where a resumed read starts: only rows after this position in the split's
    /// [`order`](Self::order) (everything up to it was committed before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume: Option<Position>,
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
        Self::whole(SplitBounds::All)
    }

    /// The single split of `bounds`.
    pub fn whole(bounds: SplitBounds) -> Self {
        Self {
            index: 0,
            total: 1,
            table: None,
            bounds,
            order: None,
            resume: None,
        }
    }

    /// This split read in `order`.
    pub fn ordered(self, order: Option<SplitOrder>) -> Self {
        Self { order, ..self }
    }

    /// This split read in whatever order the source finds cheapest, from its start: for a
    /// read that is never resumed and whose consumer does not care about order
    /// (`ferry verify`'s fingerprints). A PostgreSQL table nobody has analysed yet sorts
    /// a range on disk for an `ORDER BY`.
    pub fn unordered(self) -> Self {
        Self {
            order: None,
            resume: None,
            ..self
        }
    }

    /// This split, of table `table`.
    pub fn of_table(self, table: Option<TableRef>) -> Self {
        Self { table, ..self }
    }

    /// The columns the split is read in order of (empty when unordered).
    pub fn order_columns(&self) -> &[String] {
        self.order.as_ref().map_or(&[], |o| o.columns.as_slice())
    }

    /// The column its bounds are on, if any.
    pub fn bounds_column(&self) -> Option<&str> {
        match &self.bounds {
            SplitBounds::IntRange { column, .. } | SplitBounds::NullKey { column } => Some(column),
            _ => None,
        }
    }

    /// This split, read from after `position` (see [`Split::resume`]).
    pub fn resumed_after(&self, position: Position) -> Self {
        Self {
            resume: Some(position),
            ..self.clone()
        }
    }

    /// Checks what a peer could get wrong: an order within limits, and a resume position
    /// only with an order of as many columns.
    pub fn check(&self) -> Result<(), String> {
        let order = self.order_columns();
        if order.len() > MAX_ORDER_COLUMNS {
            return Err(format!(
                "a split ordered by {} columns (at most {MAX_ORDER_COLUMNS})",
                order.len()
            ));
        }
        if self.order.is_some() && order.is_empty() {
            return Err("a split ordered by no column".into());
        }
        if let Some(p) = &self.resume {
            if p.values().len() != order.len() {
                return Err(format!(
                    "a resume position of {} values for a split ordered by {} columns",
                    p.values().len(),
                    order.len()
                ));
            }
        }
        if self.index >= self.total {
            return Err(format!("split {} of {}", self.index, self.total));
        }
        Ok(())
    }
}

/// Plans integer ranges between `min` and `max` (inclusive) into at most
/// `n` contiguous, non-overlapping ranges covering every value, plus one
/// split for NULL keys. The first range is open below and the last open
/// above, so rows inserted outside [min, max] after planning are still read.
/// Range splits are read in `order`; the NULL-key split in none.
pub fn int_splits(
    column: &str,
    min: i128,
    max: i128,
    n: usize,
    order: Option<SplitOrder>,
) -> Vec<Split> {
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
            table: None,
            order: match bounds {
                SplitBounds::IntRange { .. } => order.clone(),
                _ => None,
            },
            bounds,
            resume: None,
        })
        .collect()
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

    fn by(c: &str) -> Option<SplitOrder> {
        Some(SplitOrder {
            columns: vec![c.into()],
            unique: false,
        })
    }

    #[test]
    fn splits_survive_json_with_full_u64_keys() {
        let mut s = int_splits("id", -5, i128::from(u64::MAX), 3, by("id"));
        s[1] = s[1]
            .resumed_after(Position::int(7))
            .of_table(TableRef::parse("shop.orders", Some("idc")));
        let json = serde_json::to_string(&s).unwrap();
        let back: Vec<Split> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        assert!(back.iter().all(|s| s.check().is_ok()));
    }

    #[test]
    fn ranges_cover_everything_once_and_nulls_separately() {
        let s = int_splits("id", 1, 100, 4, by("id"));
        assert_eq!(
            ranges(&s),
            vec![
                (None, Some(26)),
                (Some(26), Some(51)),
                (Some(51), Some(76)),
                (Some(76), None)
            ]
        );
        let last = s.last().unwrap();
        assert!(matches!(last.bounds, SplitBounds::NullKey { .. }));
        assert!(last.order.is_none() && s[0].order.is_some());
        assert!(s.iter().all(|x| x.total == 5));
    }

    #[test]
    fn extreme_keys_do_not_overflow() {
        let s = int_splits("id", 0, u64::MAX as i128, 3, None);
        assert_eq!(ranges(&s).len(), 3);
        let s = int_splits("id", i64::MIN as i128, i64::MAX as i128, 2, None);
        assert_eq!(ranges(&s).len(), 2);
    }

    #[test]
    fn one_value_and_more_splits_than_values() {
        assert_eq!(ranges(&int_splits("id", 5, 5, 8, None)), vec![(None, None)]);
        assert_eq!(ranges(&int_splits("id", 1, 3, 8, None)).len(), 3);
    }

    #[test]
    fn a_split_from_a_peer_is_checked() {
        let s = Split::all().ordered(by("id"));
        assert!(s.check().is_ok());
        let two = Position::new(vec![crate::KeyValue::Int(1), crate::KeyValue::Int(2)]).unwrap();
        assert!(s.resumed_after(two.clone()).check().is_err());
        assert!(Split::all()
            .resumed_after(Position::int(1))
            .check()
            .is_err());
        let mut bad = Split::all();
        bad.index = 3;
        assert!(bad.check().is_err());
        let mut wide = Split::all();
        wide.order = Some(SplitOrder {
            columns: vec!["c".into(); 33],
            unique: true,
        });
        assert!(wide.check().is_err());
        // A resumed, ordered split made unordered keeps its rows and starts from its start.
        let resumed = s.resumed_after(Position::int(7)).of_table(None);
        let free = resumed.clone().unordered();
        assert!(free.check().is_ok());
        assert_eq!((free.order, free.resume), (None, None));
        assert_eq!(free.bounds, resumed.bounds);
    }

    #[test]
    fn qualified_names_parse() {
        let t = TableRef::parse(r#""a.b"."t""x""#, None).unwrap();
        assert_eq!(
            (t.schema.as_deref(), t.name.as_str()),
            (Some("a.b"), "t\"x")
        );
        let t = TableRef::parse("`d`.`t`", Some("src")).unwrap();
        assert_eq!(t.display_name(), "d.t");
        assert_eq!(t.source.as_deref(), Some("src"));
        assert!(TableRef::parse("a.b.c", None).is_none());
        assert!(TableRef::parse("", None).is_none());
    }
}
