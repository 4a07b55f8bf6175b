//! Columns hashed under the PostgreSQL scheme ([`Scheme::Postgres`](ferry_model::Scheme)):
//! for every value, the 64-bit hash PostgreSQL's own function gives the value of the
//! PostgreSQL side's column type ([`PgHash`]), so that side can hash and sum its rows inside
//! the database while this side hashes its Arrow values here.
//!
//! A value that cannot be the PostgreSQL column's value (a nanosecond PostgreSQL cannot hold,
//! text that is not a number under [`PgHash::Numeric`]) gets a hash no PostgreSQL value has,
//! so it shows as a difference instead of failing the verification.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, IntervalUnit, TimeUnit};
use ferry_model::PgHash;

use crate::pg::{hash_bytes, hash_f64, hash_i64, hash_numeric, hash_numeric_text, JsonbText};

/// Microseconds from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from 1970-01-01 to 2000-01-01.
const PG_EPOCH_DAYS: i64 = 10_957;
const MICROS_PER_DAY: i64 = 86_400_000_000;

/// The hash of a value PostgreSQL's column could not hold.
fn foreign(seed: u64) -> u64 {
    PgHash::null_hash(seed) ^ 0x0bad_0bad_0bad_0bad
}

/// Whether values of Arrow type `dt` can be hashed as `kind`.
pub fn accepts(kind: PgHash, dt: &DataType) -> bool {
    let text = matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    );
    match kind {
        PgHash::Int | PgHash::Bool => {
            dt.is_integer() || matches!(dt, DataType::Boolean | DataType::Decimal128(..))
        }
        PgHash::Numeric => {
            dt.is_integer()
                || text
                || matches!(
                    dt,
                    DataType::Boolean | DataType::Decimal128(..) | DataType::Decimal256(..)
                )
        }
        PgHash::Float => matches!(
            dt,
            DataType::Float16 | DataType::Float32 | DataType::Float64
        ),
        PgHash::Text | PgHash::Json => text,
        PgHash::Bytes => matches!(
            dt,
            DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::FixedSizeBinary(_)
        ),
        PgHash::Date => matches!(dt, DataType::Date32 | DataType::Date64),
        PgHash::Time => matches!(dt, DataType::Time32(_) | DataType::Time64(_)),
        PgHash::Timestamp => matches!(dt, DataType::Timestamp(..)),
        PgHash::Interval => matches!(
            dt,
            DataType::Duration(_) | DataType::Interval(_) | DataType::Time64(_)
        ),
    }
}

/// Microseconds of `v` in `unit`, when whole.
fn micros(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => (v % 1_000 == 0).then_some(v / 1_000),
    }
}

/// An interval's microseconds as PostgreSQL's `extract(epoch ...)` counts them: a year (12
/// months) is 365.25 days, the remaining months 30 days each.
fn interval_micros(months: i32, days: i32, micros: i64) -> Option<i64> {
    let (years, rest) = (i64::from(months / 12), i64::from(months % 12));
    years
        .checked_mul(31_557_600_000_000)?
        .checked_add(rest.checked_mul(2_592_000_000_000)?)?
        .checked_add(i64::from(days).checked_mul(MICROS_PER_DAY)?)?
        .checked_add(micros)
}

/// The hash of every value of `array` as `kind` under `seed`, NULLs included, appended to
/// `out`. `array` must be of a type [`accepts`] takes for `kind`; any other hashes as values
/// PostgreSQL could not hold.
pub fn column_hashes(array: &ArrayRef, kind: PgHash, seed: u64, out: &mut Vec<u64>) {
    let null = PgHash::null_hash(seed);
    let bad = foreign(seed);
    let n = array.len();
    out.reserve(n);
    // Each value through `$f` (which gives `Option<u64>`: `None` for a value PostgreSQL could
    // not hold).
    macro_rules! each {
        ($a:expr, $f:expr) => {{
            let a = $a;
            for i in 0..n {
                out.push(if a.is_null(i) {
                    null
                } else {
                    let f = $f;
                    f(a.value(i)).unwrap_or(bad)
                });
            }
        }};
    }
    let int = |v: i64| Some(hash_i64(v, seed));
    let numeric = |m: i128, s: i8| Some(hash_numeric(m, s, seed) ^ u64::from(m < 0));
    match (kind, array.data_type()) {
        (PgHash::Int | PgHash::Bool, dt) => match dt {
            DataType::Int8 => each!(array.as_primitive::<Int8Type>(), |v| int(i64::from(v))),
            DataType::Int16 => each!(array.as_primitive::<Int16Type>(), |v| int(i64::from(v))),
            DataType::Int32 => each!(array.as_primitive::<Int32Type>(), |v| int(i64::from(v))),
            DataType::Int64 => each!(array.as_primitive::<Int64Type>(), int),
            DataType::UInt8 => each!(array.as_primitive::<UInt8Type>(), |v| int(i64::from(v))),
            DataType::UInt16 => each!(array.as_primitive::<UInt16Type>(), |v| int(i64::from(v))),
            DataType::UInt32 => each!(array.as_primitive::<UInt32Type>(), |v| int(i64::from(v))),
            DataType::UInt64 => each!(array.as_primitive::<UInt64Type>(), |v: u64| {
                i64::try_from(v).ok().and_then(int)
            }),
            DataType::Boolean => each!(array.as_boolean(), |v: bool| int(i64::from(v))),
            DataType::Decimal128(_, s) => {
                let div = 10i128.checked_pow(u32::try_from(*s).unwrap_or(u32::MAX));
                each!(array.as_primitive::<Decimal128Type>(), |v: i128| {
                    let d = div?;
                    (v % d == 0)
                        .then(|| i64::try_from(v / d).ok())
                        .flatten()
                        .and_then(int)
                })
            }
            _ => out.extend(std::iter::repeat_n(bad, n)),
        },
        (PgHash::Numeric, dt) => match dt {
            DataType::Int8 => each!(array.as_primitive::<Int8Type>(), |v| numeric(
                i128::from(v),
                0
            )),
            DataType::Int16 => each!(array.as_primitive::<Int16Type>(), |v| numeric(
                i128::from(v),
                0
            )),
            DataType::Int32 => each!(array.as_primitive::<Int32Type>(), |v| numeric(
                i128::from(v),
                0
            )),
            DataType::Int64 => each!(array.as_primitive::<Int64Type>(), |v| numeric(
                i128::from(v),
                0
            )),
            DataType::UInt8 => each!(array.as_primitive::<UInt8Type>(), |v| numeric(
                i128::from(v),
                0
            )),
            DataType::UInt16 => {
                each!(array.as_primitive::<UInt16Type>(), |v| numeric(
                    i128::from(v),
                    0
                ))
            }
            DataType::UInt32 => {
                each!(array.as_primitive::<UInt32Type>(), |v| numeric(
                    i128::from(v),
                    0
                ))
            }
            DataType::UInt64 => {
                each!(array.as_primitive::<UInt64Type>(), |v| numeric(
                    i128::from(v),
                    0
                ))
            }
            DataType::Boolean => each!(array.as_boolean(), |v: bool| numeric(i128::from(v), 0)),
            DataType::Decimal128(_, s) => {
                let s = *s;
                each!(array.as_primitive::<Decimal128Type>(), |v| numeric(v, s))
            }
            DataType::Decimal256(_, s) => {
                let s = i32::from(*s);
                each!(
                    array.as_primitive::<Decimal256Type>(),
                    |v: arrow_buffer::i256| {
                        hash_numeric_text(&decimal_text(&v.to_string(), s), seed)
                    }
                )
            }
            DataType::Utf8 => each!(array.as_string::<i32>(), |v| hash_numeric_text(v, seed)),
            DataType::LargeUtf8 => {
                each!(array.as_string::<i64>(), |v| hash_numeric_text(v, seed))
            }
            DataType::Utf8View => each!(array.as_string_view(), |v| hash_numeric_text(v, seed)),
            _ => out.extend(std::iter::repeat_n(bad, n)),
        },
        (PgHash::Float, dt) => match dt {
            DataType::Float16 => each!(array.as_primitive::<Float16Type>(), |v| {
                Some(hash_f64(f64::from(v), seed))
            }),
            DataType::Float32 => each!(array.as_primitive::<Float32Type>(), |v: f32| {
                Some(hash_f64(f64::from(v), seed))
            }),
            DataType::Float64 => {
                each!(array.as_primitive::<Float64Type>(), |v| Some(hash_f64(
                    v, seed
                )))
            }
            _ => out.extend(std::iter::repeat_n(bad, n)),
        },
        (PgHash::Text, dt) => {
            let h = |v: &str| Some(hash_bytes(v.as_bytes(), seed));
            match dt {
                DataType::Utf8 => each!(array.as_string::<i32>(), h),
                DataType::LargeUtf8 => each!(array.as_string::<i64>(), h),
                DataType::Utf8View => each!(array.as_string_view(), h),
                _ => out.extend(std::iter::repeat_n(bad, n)),
            }
        }
        (PgHash::Json, dt) => {
            let mut w = JsonbText::default();
            let mut h = |v: &str| w.render(v).map(|t| hash_bytes(t, seed));
            match dt {
                DataType::Utf8 => each!(array.as_string::<i32>(), &mut h),
                DataType::LargeUtf8 => each!(array.as_string::<i64>(), &mut h),
                DataType::Utf8View => each!(array.as_string_view(), &mut h),
                _ => out.extend(std::iter::repeat_n(bad, n)),
            }
        }
        (PgHash::Bytes, dt) => {
            let mut hex = Vec::new();
            let mut h = |v: &[u8]| {
                hex.clear();
                for b in v {
                    hex.push(HEX[usize::from(b >> 4)]);
                    hex.push(HEX[usize::from(b & 15)]);
                }
                Some(hash_bytes(&hex, seed))
            };
            match dt {
                DataType::Binary => each!(array.as_binary::<i32>(), &mut h),
                DataType::LargeBinary => each!(array.as_binary::<i64>(), &mut h),
                DataType::BinaryView => each!(array.as_binary_view(), &mut h),
                DataType::FixedSizeBinary(_) => each!(array.as_fixed_size_binary(), &mut h),
                _ => out.extend(std::iter::repeat_n(bad, n)),
            }
        }
        (PgHash::Date, DataType::Date32) => {
            each!(array.as_primitive::<Date32Type>(), |d: i32| int(i64::from(
                d
            )
                - PG_EPOCH_DAYS))
        }
        (PgHash::Date, DataType::Date64) => {
            each!(array.as_primitive::<Date64Type>(), |ms: i64| {
                (ms % 86_400_000 == 0)
                    .then(|| ms / 86_400_000 - PG_EPOCH_DAYS)
                    .and_then(int)
            })
        }
        (PgHash::Time | PgHash::Interval, DataType::Time32(u)) => {
            let u = *u;
            match u {
                TimeUnit::Second => each!(array.as_primitive::<Time32SecondType>(), |v: i32| {
                    micros(i64::from(v), u).and_then(int)
                }),
                _ => each!(array.as_primitive::<Time32MillisecondType>(), |v: i32| {
                    micros(i64::from(v), u).and_then(int)
                }),
            }
        }
        (PgHash::Time | PgHash::Interval, DataType::Time64(u)) => {
            let u = *u;
            match u {
                TimeUnit::Nanosecond => {
                    each!(array.as_primitive::<Time64NanosecondType>(), |v| {
                        micros(v, u).and_then(int)
                    })
                }
                _ => each!(array.as_primitive::<Time64MicrosecondType>(), |v| {
                    micros(v, u).and_then(int)
                }),
            }
        }
        (PgHash::Timestamp, DataType::Timestamp(u, _)) => {
            let u = *u;
            let since_2000 = |v: i64| {
                micros(v, u)
                    .and_then(|m| m.checked_sub(PG_EPOCH_MICROS))
                    .and_then(int)
            };
            match u {
                TimeUnit::Second => each!(array.as_primitive::<TimestampSecondType>(), since_2000),
                TimeUnit::Millisecond => {
                    each!(array.as_primitive::<TimestampMillisecondType>(), since_2000)
                }
                TimeUnit::Microsecond => {
                    each!(array.as_primitive::<TimestampMicrosecondType>(), since_2000)
                }
                TimeUnit::Nanosecond => {
                    each!(array.as_primitive::<TimestampNanosecondType>(), since_2000)
                }
            }
        }
        (PgHash::Interval, DataType::Duration(u)) => {
            let u = *u;
            let us = |v: i64| micros(v, u).and_then(int);
            match u {
                TimeUnit::Second => each!(array.as_primitive::<DurationSecondType>(), us),
                TimeUnit::Millisecond => {
                    each!(array.as_primitive::<DurationMillisecondType>(), us)
                }
                TimeUnit::Microsecond => {
                    each!(array.as_primitive::<DurationMicrosecondType>(), us)
                }
                TimeUnit::Nanosecond => each!(array.as_primitive::<DurationNanosecondType>(), us),
            }
        }
        (PgHash::Interval, DataType::Interval(IntervalUnit::MonthDayNano)) => {
            each!(
                array.as_primitive::<IntervalMonthDayNanoType>(),
                |v: IntervalMonthDayNano| {
                    let us = micros(v.nanoseconds, TimeUnit::Nanosecond)?;
                    interval_micros(v.months, v.days, us).and_then(int)
                }
            )
        }
        (PgHash::Interval, DataType::Interval(IntervalUnit::DayTime)) => {
            each!(
                array.as_primitive::<IntervalDayTimeType>(),
                |v: IntervalDayTime| {
                    interval_micros(0, v.days, i64::from(v.milliseconds) * 1_000).and_then(int)
                }
            )
        }
        (PgHash::Interval, DataType::Interval(IntervalUnit::YearMonth)) => {
            each!(array.as_primitive::<IntervalYearMonthType>(), |m: i32| {
                interval_micros(m, 0, 0).and_then(int)
            })
        }
        _ => out.extend(std::iter::repeat_n(bad, n)),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `digits` (an integer, maybe negative) with `scale` digits after the point.
fn decimal_text(digits: &str, scale: i32) -> String {
    let (sign, d) = match digits.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", digits),
    };
    if scale <= 0 {
        return format!("{sign}{d}{}", "0".repeat(scale.unsigned_abs() as usize));
    }
    let s = scale as usize;
    let d = format!("{d:0>width$}", width = s + 1);
    let (i, f) = d.split_at(d.len() - s);
    format!("{sign}{i}.{f}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn one(array: ArrayRef, kind: PgHash) -> u64 {
        let mut out = Vec::new();
        column_hashes(&array, kind, 5, &mut out);
        assert_eq!(out.len(), 1);
        out[0]
    }

    #[test]
    fn values_hash_as_their_postgresql_type() {
        use arrow_array::*;
        // An integer, whatever its width, and a decimal with a whole value.
        let int = one(Arc::new(Int64Array::from(vec![42])), PgHash::Int);
        assert_eq!(int, hash_i64(42, 5));
        assert_eq!(one(Arc::new(UInt8Array::from(vec![42])), PgHash::Int), int);
        let dec = Decimal128Array::from(vec![4200]).with_precision_and_scale(10, 2);
        assert_eq!(one(Arc::new(dec.unwrap()), PgHash::Int), int);
        // Numeric: scale-free, sign-aware, text or decimal.
        let d = Decimal128Array::from(vec![-150]).with_precision_and_scale(10, 2);
        let d = one(Arc::new(d.unwrap()), PgHash::Numeric);
        assert_eq!(
            d,
            one(Arc::new(StringArray::from(vec!["-1.5"])), PgHash::Numeric)
        );
        assert_ne!(
            d,
            one(Arc::new(StringArray::from(vec!["1.5"])), PgHash::Numeric)
        );
        // A timestamp: microseconds since 2000, whatever the unit.
        let ts = TimestampMicrosecondArray::from(vec![PG_EPOCH_MICROS + 7]);
        assert_eq!(one(Arc::new(ts), PgHash::Timestamp), hash_i64(7, 5));
        let ns = TimestampNanosecondArray::from(vec![(PG_EPOCH_MICROS + 7) * 1000]);
        assert_eq!(one(Arc::new(ns), PgHash::Timestamp), hash_i64(7, 5));
        // A nanosecond PostgreSQL cannot hold differs.
        let ns = TimestampNanosecondArray::from(vec![(PG_EPOCH_MICROS + 7) * 1000 + 1]);
        assert_ne!(one(Arc::new(ns), PgHash::Timestamp), hash_i64(7, 5));
        // Bytes as lowercase hex.
        let b = BinaryArray::from(vec![&[0x0a_u8, 0xff][..]]);
        assert_eq!(one(Arc::new(b), PgHash::Bytes), hash_bytes(b"0aff", 5));
        // A year of months is 365.25 days.
        let iv = IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(13, 1, 1000)]);
        let expect = 31_557_600_000_000 + 2_592_000_000_000 + MICROS_PER_DAY + 1;
        assert_eq!(one(Arc::new(iv), PgHash::Interval), hash_i64(expect, 5));
        // NULL is neither '' nor a value.
        let s = StringArray::from(vec![None, Some("")]);
        let mut out = Vec::new();
        column_hashes(&(Arc::new(s) as ArrayRef), PgHash::Text, 5, &mut out);
        assert_eq!(out, vec![PgHash::null_hash(5), hash_bytes(b"", 5)]);
    }

    #[test]
    fn decimal_text_places_the_point() {
        assert_eq!(decimal_text("-5", 3), "-0.005");
        assert_eq!(decimal_text("12345", 2), "123.45");
        assert_eq!(decimal_text("7", -2), "700");
    }
}
