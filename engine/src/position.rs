//! Positions within a split: which row of a key-ordered split was committed last, so a
//! resumed split reads only what follows it.
//!
//! The source says how a split is ordered ([`SplitOrder`]); this module only reads the
//! order columns' values off the batches. It compares keys itself only where the source
//! could not vouch for them (a single integer split key that is not a primary key).

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType as D, Schema, TimeUnit};
use ferry_connectors::spec::{KeyValue, Position, Split};
use tracing::warn;

/// Follows a split's order columns through its batches.
pub(crate) struct Follow {
    /// The order columns in the reader's batches; empty when the split has no order or a
    /// column is not read.
    columns: Vec<usize>,
    /// The source vouches that the columns are unique and never NULL.
    unique: bool,
    /// Still ordered: every position so far is one to resume after.
    ok: bool,
    last: Option<Position>,
}

impl Follow {
    pub(crate) fn new(schema: &Schema, split: &Split) -> Self {
        let fields = schema.fields();
        let find = |k: &str| {
            fields
                .iter()
                .position(|f| f.name() == k)
                .or_else(|| fields.iter().position(|f| f.name().eq_ignore_ascii_case(k)))
        };
        let wanted = split.order_columns();
        let columns: Vec<usize> = wanted.iter().filter_map(|k| find(k)).collect();
        let unique = split.order.as_ref().is_some_and(|o| o.unique);
        // Without the source's word, keys are checked for order here, which only works
        // for a single integer column.
        let checkable =
            unique || (columns.len() == 1 && fields[columns[0]].data_type().is_integer());
        Self {
            ok: !wanted.is_empty() && columns.len() == wanted.len() && checkable,
            columns,
            unique,
            last: split.resume.clone(),
        }
    }

    /// Follows `batch` (the rows just written); the position to resume after them, or
    /// `None` once the split can no longer be resumed by position.
    pub(crate) fn follow(&mut self, batch: &RecordBatch) -> Option<Position> {
        if !self.ok {
            return None;
        }
        if batch.num_rows() == 0 {
            return self.last.clone();
        }
        let next = if self.unique {
            self.last_row(batch)
        } else {
            self.checked_int(batch)
        };
        match next {
            Some(p) => {
                self.last = Some(p);
                self.last.clone()
            }
            None => {
                self.ok = false;
                warn!("the split's order key is not unique, ascending and readable in this split: its checkpoints carry no position");
                None
            }
        }
    }

    /// The order columns' values in the batch's last row.
    fn last_row(&self, batch: &RecordBatch) -> Option<Position> {
        let row = batch.num_rows() - 1;
        let values = self
            .columns
            .iter()
            .map(|&c| key_value(batch.column(c).as_ref(), row))
            .collect::<Option<Vec<_>>>()?;
        Position::new(values).ok()
    }

    /// The last key of a single integer column, if every key of the batch is greater
    /// than the one before it.
    fn checked_int(&self, batch: &RecordBatch) -> Option<Position> {
        let a = batch.column(self.columns[0]);
        let mut last = match self.last.as_ref().map(Position::values) {
            Some([KeyValue::Int(n)]) => Some(*n),
            Some(_) => return None,
            None => None,
        };
        for row in 0..a.len() {
            let Some(KeyValue::Int(k)) = key_value(a.as_ref(), row) else {
                return None;
            };
            if last.is_some_and(|l| k <= l) {
                return None;
            }
            last = Some(k);
        }
        last.map(Position::int)
    }
}

/// The value at `row` as a key value; `None` for NULL and for types that are not keys.
fn key_value(a: &dyn Array, row: usize) -> Option<KeyValue> {
    if a.is_null(row) {
        return None;
    }
    macro_rules! int {
        ($t:ty) => {
            KeyValue::Int(i128::from(a.as_primitive::<$t>().value(row)))
        };
    }
    Some(match a.data_type() {
        D::Int8 => int!(Int8Type),
        D::Int16 => int!(Int16Type),
        D::Int32 => int!(Int32Type),
        D::Int64 => int!(Int64Type),
        D::UInt8 => int!(UInt8Type),
        D::UInt16 => int!(UInt16Type),
        D::UInt32 => int!(UInt32Type),
        D::UInt64 => int!(UInt64Type),
        D::Decimal128(..) => {
            KeyValue::num(a.as_primitive::<Decimal128Type>().value_as_string(row)).ok()?
        }
        D::Decimal256(..) => {
            KeyValue::num(a.as_primitive::<Decimal256Type>().value_as_string(row)).ok()?
        }
        D::Utf8 => KeyValue::text(a.as_string::<i32>().value(row)).ok()?,
        D::LargeUtf8 => KeyValue::text(a.as_string::<i64>().value(row)).ok()?,
        D::Utf8View => KeyValue::text(a.as_string_view().value(row)).ok()?,
        D::Binary => KeyValue::bytes(a.as_binary::<i32>().value(row).to_vec()).ok()?,
        D::LargeBinary => KeyValue::bytes(a.as_binary::<i64>().value(row).to_vec()).ok()?,
        D::Date32 => {
            let d = a.as_primitive::<Date32Type>().value_as_date(row)?;
            KeyValue::text(d.format("%Y-%m-%d").to_string()).ok()?
        }
        // Wall clock (a zoned timestamp is a UTC instant; sources pin their sessions to
        // UTC, so the database reads the literal back as the same instant).
        D::Timestamp(unit, _) => {
            let t = match unit {
                TimeUnit::Second => a
                    .as_primitive::<TimestampSecondType>()
                    .value_as_datetime(row),
                TimeUnit::Millisecond => a
                    .as_primitive::<TimestampMillisecondType>()
                    .value_as_datetime(row),
                TimeUnit::Microsecond => a
                    .as_primitive::<TimestampMicrosecondType>()
                    .value_as_datetime(row),
                TimeUnit::Nanosecond => a
                    .as_primitive::<TimestampNanosecondType>()
                    .value_as_datetime(row),
            }?;
            KeyValue::text(t.format("%Y-%m-%d %H:%M:%S%.f").to_string()).ok()?
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::Field;
    use ferry_connectors::spec::SplitOrder;
    use std::sync::Arc;

    fn batch(ids: Vec<Option<i64>>, names: Vec<&str>) -> RecordBatch {
        let n = ids.len();
        let ts: Vec<i64> = (0..n as i64).map(|i| 1_700_000_000_000_001 + i).collect();
        RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", D::Int64, true),
                Field::new("name", D::Utf8, false),
                Field::new(
                    "at",
                    D::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
                    false,
                ),
            ])),
            vec![
                Arc::new(Int64Array::from(ids)) as ArrayRef,
                Arc::new(StringArray::from(names)),
                Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("+00:00")),
            ],
        )
        .unwrap()
    }

    fn split(columns: &[&str], unique: bool) -> Split {
        Split::all().ordered(Some(SplitOrder {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            unique,
        }))
    }

    #[test]
    fn a_unique_composite_key_gives_the_last_rows_values() {
        let b = batch(vec![Some(1), Some(1)], vec!["a", "b"]);
        let mut f = Follow::new(&b.schema(), &split(&["id", "name", "at"], true));
        let p = f.follow(&b).unwrap();
        assert_eq!(
            p.values(),
            [
                KeyValue::Int(1),
                KeyValue::Text("b".into()),
                KeyValue::Text("2023-11-14 22:13:20.000002".into())
            ]
        );
    }

    #[test]
    fn an_unvouched_integer_key_is_checked_row_by_row() {
        let s = split(&["id"], false);
        let b = batch(vec![Some(1), Some(5)], vec!["a", "b"]);
        let mut f = Follow::new(&b.schema(), &s);
        assert_eq!(f.follow(&b), Some(Position::int(5)));
        // Equal to the last key: not unique, no positions from here on.
        assert_eq!(f.follow(&batch(vec![Some(5)], vec!["c"])), None);
        assert_eq!(f.follow(&batch(vec![Some(9)], vec!["d"])), None);
        // A NULL key ends it too.
        let mut f = Follow::new(&b.schema(), &s);
        assert_eq!(f.follow(&batch(vec![Some(2), None], vec!["a", "b"])), None);
        // A text key the source does not vouch for is never followed.
        let mut f = Follow::new(&b.schema(), &split(&["name"], false));
        assert_eq!(f.follow(&b), None);
        // Resumed after 7: the next key must be greater.
        let mut f = Follow::new(&b.schema(), &s.resumed_after(Position::int(7)));
        assert_eq!(f.follow(&batch(vec![Some(3)], vec!["a"])), None);
    }

    #[test]
    fn order_columns_that_are_not_read_give_no_position() {
        let b = batch(vec![Some(1)], vec!["a"]);
        let mut f = Follow::new(&b.schema(), &split(&["id", "missing"], true));
        assert_eq!(f.follow(&b), None);
        let mut f = Follow::new(&b.schema(), &Split::all());
        assert_eq!(f.follow(&b), None);
    }
}
