//! One text form per Arrow type, shared by every text format (CSV fields,
//! JSON strings, log-pattern groups).
//!
//! Why one module: a value written to CSV must read back as the same value,
//! and the same rules then hold for JSON values that JSON has no type for
//! and for fields cut out of log lines. The rules (also in
//! `docs/type-mapping.md`):
//!
//! * integers, booleans (`true`/`false`), decimals (exact, every digit of
//!   the scale, e.g. `-12.3400000000`), `Date32` (`2024-06-20`),
//!   `Time64` (`23:59:59.999999`), timestamps (`2024-06-20T10:00:00.123456`,
//!   with a zone suffix, `Z` for UTC, when the column has a zone): Arrow's own
//!   display and parsing (`arrow-cast`);
//! * floats: Rust's shortest round-trip form, so `NaN`, `inf`, `-inf` survive;
//! * binary: lowercase hex (`00ff10`), no prefix;
//! * `Duration(µs)` (MySQL `TIME`, which may exceed 24 h): `[-]H:MM:SS.ffffff`
//!   with unbounded hours, e.g. `838:59:59.000000`;
//! * reading a non-string column, an empty field is NULL (an empty string is
//!   no number); string columns keep `""` apart from NULL.

use std::sync::Arc;

use arrow_array::builder::{BinaryBuilder, DurationMicrosecondBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{DurationMicrosecondType, Float32Type, Float64Type};
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_cast::CastOptions;
use arrow_schema::{ArrowError, DataType, TimeUnit};

/// A value that does not parse: its row within the array and why.
#[derive(Debug, Clone, PartialEq)]
pub struct BadValue {
    pub row: usize,
    pub message: String,
}

/// Renders every value of `array` in its text form (NULL stays NULL).
pub fn to_text(array: &dyn Array) -> Result<StringArray, ArrowError> {
    let n = array.len();
    let mut out = StringBuilder::with_capacity(n, n * 8);
    match array.data_type() {
        DataType::Utf8 => return Ok(array.as_string::<i32>().clone()),
        DataType::LargeUtf8 => {
            for v in array.as_string::<i64>().iter() {
                out.append_option(v);
            }
        }
        DataType::Utf8View => {
            for v in array.as_string_view().iter() {
                out.append_option(v);
            }
        }
        DataType::Binary => {
            for v in array.as_binary::<i32>().iter() {
                out.append_option(v.map(hex::encode));
            }
        }
        DataType::LargeBinary => {
            for v in array.as_binary::<i64>().iter() {
                out.append_option(v.map(hex::encode));
            }
        }
        DataType::FixedSizeBinary(_) => {
            for v in array.as_fixed_size_binary().iter() {
                out.append_option(v.map(hex::encode));
            }
        }
        DataType::Float32 => {
            for v in array.as_primitive::<Float32Type>().iter() {
                out.append_option(v.map(|f| f.to_string()));
            }
        }
        DataType::Float64 => {
            for v in array.as_primitive::<Float64Type>().iter() {
                out.append_option(v.map(|f| f.to_string()));
            }
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            for v in array.as_primitive::<DurationMicrosecondType>().iter() {
                out.append_option(v.map(format_duration_us));
            }
        }
        // An instant is written in UTC whatever zone name it carries (the
        // values are UTC either way); arrow's formatter only knows offsets
        // without the chrono-tz database, so `UTC` becomes `+00:00` here.
        DataType::Timestamp(unit, Some(tz)) if tz.as_ref() != "+00:00" => {
            let utc = array
                .to_data()
                .into_builder()
                .data_type(DataType::Timestamp(*unit, Some("+00:00".into())))
                .build()?;
            return to_text(arrow_array::make_array(utc).as_ref());
        }
        _ => {
            let opts = FormatOptions::default();
            let f = ArrayFormatter::try_new(array, &opts)?;
            for i in 0..n {
                if array.is_null(i) {
                    out.append_null();
                } else {
                    out.append_value(f.value(i).to_string());
                }
            }
        }
    }
    Ok(out.finish())
}

/// `[-]H:MM:SS.ffffff`, hours unbounded.
pub fn format_duration_us(us: i64) -> String {
    let neg = us < 0;
    let a = us.unsigned_abs();
    let (secs, frac) = (a / 1_000_000, a % 1_000_000);
    format!(
        "{}{}:{:02}:{:02}.{:06}",
        if neg { "-" } else { "" },
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        frac
    )
}

/// Parses `[-]H:MM:SS[.f{1,6}]`.
pub fn parse_duration_us(s: &str) -> Option<i64> {
    let (neg, rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut parts = rest.split(':');
    let h: i64 = parts.next()?.parse().ok()?;
    let m: i64 = parts.next()?.parse().ok()?;
    let sec_part = parts.next()?;
    if parts.next().is_some() || !(0..60).contains(&m) {
        return None;
    }
    let (s_int, s_frac) = sec_part.split_once('.').unwrap_or((sec_part, ""));
    let sec: i64 = s_int.parse().ok()?;
    if !(0..60).contains(&sec) || s_frac.len() > 6 || !s_frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac: i64 = if s_frac.is_empty() {
        0
    } else {
        format!("{s_frac:0<6}").parse().ok()?
    };
    let total = h
        .checked_mul(3600)?
        .checked_add(m * 60 + sec)?
        .checked_mul(1_000_000)?
        .checked_add(frac)?;
    Some(if neg { -total } else { total })
}

/// Parses every value of `text` (trimmed; "" is NULL) as `T`'s native type.
fn parse_each<T>(text: &StringArray, what: &str) -> Result<ArrayRef, BadValue>
where
    T: arrow_array::ArrowPrimitiveType,
    T::Native: std::str::FromStr,
{
    let mut v = Vec::with_capacity(text.len());
    for i in 0..text.len() {
        if text.is_null(i) || text.value(i).is_empty() {
            v.push(None);
            continue;
        }
        let parsed = text.value(i).trim().parse::<T::Native>();
        v.push(Some(parsed.map_err(|_| BadValue {
            row: i,
            message: format!("`{}` is not a valid {what}", text.value(i)),
        })?));
    }
    Ok(Arc::new(
        v.into_iter().collect::<arrow_array::PrimitiveArray<T>>(),
    ))
}

/// Converts text to `target` by the rules above; the first value that does
/// not parse is reported with its row.
pub fn from_text(text: &StringArray, target: &DataType) -> Result<ArrayRef, BadValue> {
    let n = text.len();
    let bad = |row: usize, what: &str| BadValue {
        row,
        message: format!("`{}` is not a valid {what}", text.value(row)),
    };
    // Non-string columns: "" is NULL.
    let is_null = |i: usize| text.is_null(i) || text.value(i).is_empty();
    match target {
        DataType::Utf8 => Ok(Arc::new(text.clone())),
        DataType::Binary => {
            let mut b = BinaryBuilder::with_capacity(n, n * 8);
            for i in 0..n {
                if text.is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(hex::decode(text.value(i)).map_err(|_| bad(i, "hex binary"))?);
                }
            }
            Ok(Arc::new(b.finish()))
        }
        DataType::Float32 => parse_each::<Float32Type>(text, "float"),
        DataType::Float64 => parse_each::<Float64Type>(text, "double"),
        DataType::Duration(TimeUnit::Microsecond) => {
            let mut b = DurationMicrosecondBuilder::with_capacity(n);
            for i in 0..n {
                if is_null(i) {
                    b.append_null();
                } else {
                    b.append_value(
                        parse_duration_us(text.value(i).trim())
                            .ok_or_else(|| bad(i, "duration ([-]H:MM:SS.ffffff)"))?,
                    );
                }
            }
            Ok(Arc::new(b.finish()))
        }
        other => {
            // Empty fields become NULL, then arrow-cast parses the rest strictly.
            let cleaned: StringArray = (0..n)
                .map(|i| (!is_null(i)).then(|| text.value(i).trim()))
                .collect();
            let strict = CastOptions {
                safe: false,
                ..Default::default()
            };
            match arrow_cast::cast_with_options(&cleaned, other, &strict) {
                Ok(a) => Ok(a),
                Err(e) => {
                    // Find the row: the lenient cast turns it into NULL.
                    let lenient = arrow_cast::cast_with_options(
                        &cleaned,
                        other,
                        &CastOptions {
                            safe: true,
                            ..Default::default()
                        },
                    );
                    let row = lenient
                        .ok()
                        .and_then(|l| (0..n).find(|&i| cleaned.is_valid(i) && l.is_null(i)))
                        .unwrap_or(0);
                    Err(BadValue {
                        row,
                        message: format!("cannot read as {other}: {e}"),
                    })
                }
            }
        }
    }
}

/// Whether `from_text` can produce `dt` (what a text format can carry).
pub fn text_can_carry(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8
            | DataType::Binary
            | DataType::Boolean
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
            | DataType::Date32
            | DataType::Timestamp(_, _)
            | DataType::Time64(_)
            | DataType::Time32(_)
            | DataType::Duration(TimeUnit::Microsecond)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_trip() {
        for us in [
            0,
            1,
            -1,
            3_020_399_000_000,
            -3_020_399_999_999,
            86_400_000_001,
        ] {
            let s = format_duration_us(us);
            assert_eq!(parse_duration_us(&s), Some(us), "{s}");
        }
        assert_eq!(format_duration_us(3_020_399_000_000), "838:59:59.000000");
        assert_eq!(parse_duration_us("1:02:03.5"), Some(3_723_500_000));
        assert_eq!(parse_duration_us("1:60:03"), None);
        assert_eq!(parse_duration_us("x"), None);
    }

    #[test]
    fn bad_value_names_the_row() {
        let t = StringArray::from(vec![Some("1"), None, Some(""), Some("x")]);
        let e = from_text(&t, &DataType::Int64).unwrap_err();
        assert_eq!(e.row, 3);
        let ok = from_text(&StringArray::from(vec!["1", ""]), &DataType::Int64).unwrap();
        assert_eq!(ok.null_count(), 1);
    }
}
