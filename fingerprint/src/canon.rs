//! Canonical values: one hash per logical value, whatever Arrow type a connector chose.
//!
//! A value is written as a family tag and canonical bytes, then hashed with XXH3:
//!
//! | family | Arrow types | canonical form |
//! |---|---|---|
//! | number | Int*, UInt*, Boolean (0/1), Decimal128/256, text tagged `ferry.type=numeric` | decimal text without leading or trailing zeros (`1.50` is `1.5`, `-0` is `0`) |
//! | float | Float16/32/64 | the exact value as a double (`-0` is `0`, one NaN) |
//! | text | Utf8, LargeUtf8, Utf8View | the bytes (`''` is not NULL, a trailing space counts) |
//! | JSON | text tagged `ferry.type=json`, or asked for | the document re-serialised with sorted keys |
//! | bytes | Binary, LargeBinary, FixedSizeBinary, BinaryView | the bytes |
//! | date | Date32, Date64 | days since 1970-01-01 |
//! | time of day | Time32, Time64 | nanoseconds since midnight |
//! | timestamp | Timestamp(any unit, any zone) | nanoseconds since the epoch: an instant in UTC, a wall clock as read |
//! | duration | Duration, Interval without months | nanoseconds |
//!
//! NULL has a hash of its own, distinct from every value. Text that the other side holds typed
//! (a SQLite target keeps `TIME` as text) is parsed into that family when the ask says so
//! ([`TextKind`]); text that does not parse keeps the text family, so it differs.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef};
use arrow_schema::{DataType, Field, IntervalUnit, TimeUnit};
use ferry_model::TextKind;
use twox_hash::XxHash3_64;

/// The hash of NULL.
pub const NULL_HASH: u64 = 0x6e75_6c6c_0000_0001;

const NUMBER: u8 = b'N';
const FLOAT: u8 = b'F';
const TEXT: u8 = b'S';
const JSON: u8 = b'J';
const BYTES: u8 = b'B';
const DATE: u8 = b'D';
const TIME: u8 = b'T';
const TIMESTAMP: u8 = b'P';
const DURATION: u8 = b'U';
const INTERVAL: u8 = b'I';
const OTHER: u8 = b'X';

/// How a column's text is read: as the field's metadata says, unless the ask says otherwise.
pub fn text_kind(field: &Field, asked: Option<TextKind>) -> Option<TextKind> {
    asked.or_else(
        || match field.metadata().get("ferry.type").map(String::as_str) {
            Some("json") => Some(TextKind::Json),
            Some("numeric") => Some(TextKind::Number),
            _ => None,
        },
    )
}

/// The hash of every value of `array`, NULLs included. `text` says how to read a text column.
pub fn column_hashes(array: &ArrayRef, text: Option<TextKind>) -> Vec<u64> {
    let mut out = Vec::with_capacity(array.len());
    let mut buf = Vec::with_capacity(64);
    // Text and bytes hash straight from the array (the tag as the seed), without a copy.
    macro_rules! direct {
        ($a:expr, $tag:expr, $bytes:expr) => {{
            let a = $a;
            for i in 0..array.len() {
                out.push(if array.is_null(i) {
                    NULL_HASH
                } else {
                    XxHash3_64::oneshot_with_seed(u64::from($tag), $bytes(a.value(i)))
                });
            }
        }};
    }
    macro_rules! int {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            let mut digits = itoa::Buffer::new();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                b.push(NUMBER);
                b.extend_from_slice(digits.format(a.value(i)).as_bytes());
            })
        }};
    }
    macro_rules! i64s {
        ($t:ty, $tag:expr, $per:expr) => {{
            let a = array.as_primitive::<$t>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                tagged($tag, i128::from(a.value(i)) * $per, b)
            })
        }};
    }
    match array.data_type() {
        DataType::Int8 => int!(Int8Type),
        DataType::Int16 => int!(Int16Type),
        DataType::Int32 => int!(Int32Type),
        DataType::Int64 => int!(Int64Type),
        DataType::UInt8 => int!(UInt8Type),
        DataType::UInt16 => int!(UInt16Type),
        DataType::UInt32 => int!(UInt32Type),
        DataType::UInt64 => int!(UInt64Type),
        DataType::Boolean => {
            let a = array.as_boolean();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                b.push(NUMBER);
                b.push(if a.value(i) { b'1' } else { b'0' });
            })
        }
        DataType::Decimal128(_, scale) => {
            let (a, scale) = (array.as_primitive::<Decimal128Type>(), *scale);
            let mut digits = itoa::Buffer::new();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                b.push(NUMBER);
                decimal_into(a.value(i), scale, &mut digits, b);
            })
        }
        DataType::Decimal256(_, scale) => {
            let (a, scale) = (array.as_primitive::<Decimal256Type>(), *scale);
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                b.push(NUMBER);
                let digits = a.value(i).to_string();
                b.extend_from_slice(decimal_text(&digits, scale).as_bytes());
            })
        }
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                float(f64::from(a.value(i).to_f32()), b)
            })
        }
        DataType::Float32 => {
            let a = array.as_primitive::<Float32Type>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                float(f64::from(a.value(i)), b)
            })
        }
        DataType::Float64 => {
            let a = array.as_primitive::<Float64Type>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                float(a.value(i), b)
            })
        }
        DataType::Utf8 if text.is_none() => direct!(array.as_string::<i32>(), TEXT, str::as_bytes),
        DataType::LargeUtf8 if text.is_none() => {
            direct!(array.as_string::<i64>(), TEXT, str::as_bytes)
        }
        DataType::Utf8View if text.is_none() => {
            direct!(array.as_string_view(), TEXT, str::as_bytes)
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                text_value(a.value(i), text, b)
            })
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                text_value(a.value(i), text, b)
            })
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                text_value(a.value(i), text, b)
            })
        }
        DataType::Binary => direct!(array.as_binary::<i32>(), BYTES, raw),
        DataType::LargeBinary => direct!(array.as_binary::<i64>(), BYTES, raw),
        DataType::BinaryView => direct!(array.as_binary_view(), BYTES, raw),
        DataType::FixedSizeBinary(_) => {
            direct!(array.as_fixed_size_binary(), BYTES, raw)
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                tagged(DATE, i128::from(a.value(i)), b)
            })
        }
        DataType::Date64 => {
            let a = array.as_primitive::<Date64Type>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                tagged(DATE, i128::from(a.value(i).div_euclid(86_400_000)), b)
            })
        }
        DataType::Time32(unit) => {
            let per = nanos_per(unit);
            match unit {
                TimeUnit::Second => {
                    let a = array.as_primitive::<Time32SecondType>();
                    each(array.as_ref(), &mut out, &mut buf, |i, b| {
                        tagged(TIME, i128::from(a.value(i)) * per, b)
                    })
                }
                _ => {
                    let a = array.as_primitive::<Time32MillisecondType>();
                    each(array.as_ref(), &mut out, &mut buf, |i, b| {
                        tagged(TIME, i128::from(a.value(i)) * per, b)
                    })
                }
            }
        }
        DataType::Time64(unit) => {
            let per = nanos_per(unit);
            match unit {
                TimeUnit::Nanosecond => {
                    let a = array.as_primitive::<Time64NanosecondType>();
                    each(array.as_ref(), &mut out, &mut buf, |i, b| {
                        tagged(TIME, i128::from(a.value(i)) * per, b)
                    })
                }
                _ => {
                    let a = array.as_primitive::<Time64MicrosecondType>();
                    each(array.as_ref(), &mut out, &mut buf, |i, b| {
                        tagged(TIME, i128::from(a.value(i)) * per, b)
                    })
                }
            }
        }
        DataType::Timestamp(unit, _) => {
            let per = nanos_per(unit);
            match unit {
                TimeUnit::Second => i64s!(TimestampSecondType, TIMESTAMP, per),
                TimeUnit::Millisecond => i64s!(TimestampMillisecondType, TIMESTAMP, per),
                TimeUnit::Microsecond => i64s!(TimestampMicrosecondType, TIMESTAMP, per),
                TimeUnit::Nanosecond => i64s!(TimestampNanosecondType, TIMESTAMP, per),
            }
        }
        DataType::Duration(unit) => {
            let per = nanos_per(unit);
            match unit {
                TimeUnit::Second => i64s!(DurationSecondType, DURATION, per),
                TimeUnit::Millisecond => i64s!(DurationMillisecondType, DURATION, per),
                TimeUnit::Microsecond => i64s!(DurationMicrosecondType, DURATION, per),
                TimeUnit::Nanosecond => i64s!(DurationNanosecondType, DURATION, per),
            }
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let a = array.as_primitive::<IntervalMonthDayNanoType>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                let v = a.value(i);
                interval(v.months, v.days, i128::from(v.nanoseconds), b)
            })
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let a = array.as_primitive::<IntervalDayTimeType>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                let v = a.value(i);
                interval(0, v.days, i128::from(v.milliseconds) * 1_000_000, b)
            })
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let a = array.as_primitive::<IntervalYearMonthType>();
            each(array.as_ref(), &mut out, &mut buf, |i, b| {
                interval(a.value(i), 0, 0, b)
            })
        }
        _ => {
            // Nested and rare types: their display text, the same on both sides when the
            // types are.
            let options = arrow_cast::display::FormatOptions::default();
            match arrow_cast::display::ArrayFormatter::try_new(array.as_ref(), &options) {
                Ok(f) => each(array.as_ref(), &mut out, &mut buf, |i, b| {
                    b.push(OTHER);
                    b.extend_from_slice(f.value(i).to_string().as_bytes());
                }),
                Err(_) => each(array.as_ref(), &mut out, &mut buf, |_, b| b.push(OTHER)),
            }
        }
    }
    out
}

/// Hashes every value of `array`: `f` writes value `i`'s canonical bytes. Generic, so `f` is
/// inlined into the loop (this is the hot path of a verification).
fn each(
    array: &dyn Array,
    out: &mut Vec<u64>,
    buf: &mut Vec<u8>,
    mut f: impl FnMut(usize, &mut Vec<u8>),
) {
    let nulls = array.nulls();
    for i in 0..array.len() {
        if nulls.is_some_and(|n| n.is_null(i)) {
            out.push(NULL_HASH);
            continue;
        }
        buf.clear();
        f(i, buf);
        out.push(finish(buf));
    }
}

fn raw(v: &[u8]) -> &[u8] {
    v
}

fn nanos_per(unit: &TimeUnit) -> i128 {
    match unit {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

fn tagged(tag: u8, v: i128, b: &mut Vec<u8>) {
    b.push(tag);
    b.extend_from_slice(&v.to_le_bytes());
}

fn float(v: f64, b: &mut Vec<u8>) {
    let v = if v == 0.0 {
        0.0
    } else if v.is_nan() {
        f64::NAN
    } else {
        v
    };
    b.push(FLOAT);
    b.extend_from_slice(&v.to_bits().to_le_bytes());
}

/// An interval without months is a duration (MySQL `TIME` crosses as a Duration and comes
/// back from PostgreSQL's `interval` as an Interval).
fn interval(months: i32, days: i32, nanos: i128, b: &mut Vec<u8>) {
    if months == 0 {
        tagged(DURATION, i128::from(days) * 86_400_000_000_000 + nanos, b);
    } else {
        b.push(INTERVAL);
        b.extend_from_slice(&months.to_le_bytes());
        b.extend_from_slice(&days.to_le_bytes());
        b.extend_from_slice(&nanos.to_le_bytes());
    }
}

fn text_value(s: &str, kind: Option<TextKind>, b: &mut Vec<u8>) {
    let parsed = match kind {
        None => false,
        Some(TextKind::Json) => match crate::json::hash(s) {
            Some(h) => {
                b.push(JSON);
                b.extend_from_slice(&h.to_le_bytes());
                true
            }
            None => false,
        },
        Some(TextKind::Number) => match normal_number(s) {
            Some(n) => {
                b.push(NUMBER);
                b.extend_from_slice(n.as_bytes());
                true
            }
            None => false,
        },
        Some(TextKind::Date) => parse_date(s)
            .map(|d| tagged(DATE, i128::from(d), b))
            .is_some(),
        Some(TextKind::Time) => parse_time(s).map(|t| tagged(TIME, t, b)).is_some(),
        Some(TextKind::Timestamp) => parse_timestamp(s)
            .map(|t| tagged(TIMESTAMP, t, b))
            .is_some(),
        Some(TextKind::Duration) => parse_duration(s).map(|d| tagged(DURATION, d, b)).is_some(),
    };
    if !parsed {
        b.clear();
        b.push(TEXT);
        b.extend_from_slice(s.as_bytes());
    }
}

/// The hash of canonical bytes `buf`: text and bytes hash their value with their tag as the
/// seed (see `direct!`), everything else its whole canonical form.
fn finish(buf: &[u8]) -> u64 {
    match buf.split_first() {
        Some((&tag, rest)) if tag == TEXT || tag == BYTES => {
            XxHash3_64::oneshot_with_seed(u64::from(tag), rest)
        }
        _ => XxHash3_64::oneshot(buf),
    }
}

/// `v` × 10^-`scale` as canonical decimal text.
pub fn decimal_i128(v: i128, scale: i8) -> String {
    let mut b = Vec::new();
    decimal_into(v, scale, &mut itoa::Buffer::new(), &mut b);
    String::from_utf8(b).unwrap_or_default()
}

/// `v` × 10^-`scale` as canonical decimal text, appended to `out` (no allocation: the hot
/// path of every decimal column).
fn decimal_into(v: i128, scale: i8, digits: &mut itoa::Buffer, out: &mut Vec<u8>) {
    if v == 0 {
        out.push(b'0');
        return;
    }
    if scale < 0 {
        out.extend_from_slice(digits.format(v).as_bytes());
        out.extend(std::iter::repeat_n(b'0', usize::from(scale.unsigned_abs())));
        return;
    }
    // Most decimals fit 64 bits, where division is several times cheaper than in 128.
    if let Ok(v) = i64::try_from(v) {
        let (mut m, mut scale) = (v.unsigned_abs(), scale as u32);
        while scale > 0 && m % 10 == 0 {
            m /= 10;
            scale -= 1;
        }
        if v < 0 {
            out.push(b'-');
        }
        return place_point(digits.format(m).as_bytes(), scale as usize, out);
    }
    // Trailing zeros of the fraction go first: they do not change the value.
    let (mut v, mut scale) = (v, scale as u32);
    while scale > 0 && v % 10 == 0 {
        v /= 10;
        scale -= 1;
    }
    if v < 0 {
        out.push(b'-');
    }
    place_point(
        digits.format(v.unsigned_abs()).as_bytes(),
        scale as usize,
        out,
    );
}

/// Digits `text` × 10^-`scale`, appended to `out`.
fn place_point(text: &[u8], scale: usize, out: &mut Vec<u8>) {
    if scale == 0 {
        out.extend_from_slice(text);
    } else if text.len() > scale {
        let (int, frac) = text.split_at(text.len() - scale);
        out.extend_from_slice(int);
        out.push(b'.');
        out.extend_from_slice(frac);
    } else {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', scale - text.len()));
        out.extend_from_slice(text);
    }
}

/// Integer digits `digits` (with an optional `-`) × 10^-`scale`, canonical.
fn decimal_text(digits: &str, scale: i8) -> String {
    let (neg, abs) = match digits.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, digits),
    };
    let text = if scale <= 0 {
        let mut s = abs.to_string();
        if abs.trim_start_matches('0').is_empty() {
            s = "0".into();
        } else {
            s.extend(std::iter::repeat_n('0', usize::from(scale.unsigned_abs())));
        }
        s
    } else {
        let scale = usize::from(scale.unsigned_abs());
        let padded = format!("{abs:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        format!("{int}.{frac}")
    };
    let n = normal_number(&text).unwrap_or(text);
    if neg && n != "0" {
        format!("-{n}")
    } else {
        n
    }
}

/// Decimal text (`-0012.3400`) in canonical form (`-12.34`); `None` when it is not a plain
/// decimal number.
pub fn normal_number(s: &str) -> Option<String> {
    let s = s.trim();
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, f),
        None => (rest, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let frac = frac.trim_end_matches('0');
    let mut out = String::with_capacity(int.len() + frac.len() + 3);
    if int.is_empty() && frac.is_empty() {
        return Some("0".into());
    }
    if neg {
        out.push('-');
    }
    out.push_str(if int.is_empty() { "0" } else { int });
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    Some(out)
}

/// Days since 1970-01-01 of `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: i64 = s.get(5..7)?.parse().ok()?;
    let d: i64 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Nanoseconds of `H:MM:SS[.fffffffff]` (hours unbounded).
fn parse_hms(s: &str) -> Option<i128> {
    let mut parts = s.splitn(3, ':');
    let h: i128 = parts.next()?.parse().ok()?;
    let m: i128 = parts.next()?.parse().ok()?;
    let sec = parts.next()?;
    let (whole, frac) = match sec.split_once('.') {
        Some((w, f)) => (w, f),
        None => (sec, ""),
    };
    let whole: i128 = whole.parse().ok()?;
    if h < 0 || !(0..60).contains(&m) || !(0..=60).contains(&whole) {
        return None;
    }
    Some((h * 3600 + m * 60 + whole) * 1_000_000_000 + frac_nanos(frac)?)
}

fn frac_nanos(frac: &str) -> Option<i128> {
    if frac.len() > 9 || !frac.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if frac.is_empty() {
        return Some(0);
    }
    let n: i128 = frac.parse().ok()?;
    Some(n * 10i128.pow(9 - frac.len() as u32))
}

fn parse_time(s: &str) -> Option<i128> {
    parse_hms(s.trim())
}

/// Nanoseconds since the epoch of `YYYY-MM-DD[ T]HH:MM:SS[.f][Z|+00:00]`.
fn parse_timestamp(s: &str) -> Option<i128> {
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .or_else(|| s.strip_suffix("+00"))
        .unwrap_or(s);
    let (date, time) = (s.get(0..10)?, s.get(11..)?);
    if !matches!(s.as_bytes().get(10), Some(b' ' | b'T')) {
        return None;
    }
    let days = i128::from(parse_date(date)?);
    Some(days * 86_400_000_000_000 + parse_hms(time)?)
}

/// Nanoseconds of `[-]S[.f]` seconds or `[-]H:MM:SS[.f]`.
fn parse_duration(s: &str) -> Option<i128> {
    let s = s.trim();
    let (neg, abs) = match s.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, s),
    };
    let n = if abs.contains(':') {
        parse_hms(abs)?
    } else {
        let (whole, frac) = match abs.split_once('.') {
            Some((w, f)) => (w, f),
            None => (abs, ""),
        };
        if whole.is_empty() || !whole.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        whole.parse::<i128>().ok()? * 1_000_000_000 + frac_nanos(frac)?
    };
    Some(if neg { -n } else { n })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::*;
    use std::sync::Arc;

    fn one(a: ArrayRef, kind: Option<TextKind>) -> u64 {
        column_hashes(&a, kind)[0]
    }

    #[test]
    fn integers_decimals_and_booleans_compare_by_value() {
        let five = one(Arc::new(Int32Array::from(vec![5])), None);
        assert_eq!(five, one(Arc::new(Int64Array::from(vec![5])), None));
        assert_eq!(five, one(Arc::new(UInt8Array::from(vec![5])), None));
        let d = Decimal128Array::from(vec![500])
            .with_precision_and_scale(10, 2)
            .unwrap();
        assert_eq!(five, one(Arc::new(d), None));
        let text = StringArray::from(vec!["5.000"]);
        assert_eq!(five, one(Arc::new(text), Some(TextKind::Number)));
        assert_eq!(
            one(Arc::new(BooleanArray::from(vec![true])), None),
            one(Arc::new(Int8Array::from(vec![1])), None)
        );
        assert_ne!(five, one(Arc::new(Int32Array::from(vec![6])), None));
        assert_ne!(five, one(Arc::new(Float64Array::from(vec![5.0])), None));
    }

    #[test]
    fn decimal_text_is_canonical() {
        assert_eq!(decimal_i128(12340, 3), "12.34");
        assert_eq!(decimal_i128(-5, 2), "-0.05");
        assert_eq!(decimal_i128(0, 2), "0");
        assert_eq!(decimal_i128(-0, 4), "0");
        assert_eq!(decimal_i128(12, -2), "1200");
        assert_eq!(normal_number("-0012.3400").as_deref(), Some("-12.34"));
        assert_eq!(normal_number("-0.000").as_deref(), Some("0"));
        assert_eq!(normal_number(".5").as_deref(), Some("0.5"));
        assert_eq!(normal_number("1e5"), None);
        assert_eq!(normal_number("-"), None);
    }

    #[test]
    fn null_empty_text_and_trailing_space_differ() {
        let a: ArrayRef = Arc::new(StringArray::from(vec![
            None,
            Some(""),
            Some("a"),
            Some("a "),
        ]));
        let h = column_hashes(&a, None);
        assert_eq!(h[0], NULL_HASH);
        assert_ne!(h[1], NULL_HASH);
        assert_ne!(h[2], h[3]);
    }

    #[test]
    fn floats_by_exact_value() {
        let f32s = one(Arc::new(Float32Array::from(vec![0.1f32])), None);
        let f64s = one(Arc::new(Float64Array::from(vec![f64::from(0.1f32)])), None);
        assert_eq!(f32s, f64s);
        assert_ne!(f64s, one(Arc::new(Float64Array::from(vec![0.1])), None));
        assert_eq!(
            one(Arc::new(Float64Array::from(vec![-0.0])), None),
            one(Arc::new(Float64Array::from(vec![0.0])), None)
        );
    }

    #[test]
    fn json_by_document() {
        let a = one(
            Arc::new(StringArray::from(vec![r#"{"b": 1, "a": [1, 2]}"#])),
            Some(TextKind::Json),
        );
        let b = one(
            Arc::new(StringArray::from(vec![r#"{"a":[1,2],"b":1}"#])),
            Some(TextKind::Json),
        );
        assert_eq!(a, b);
        let c = one(
            Arc::new(StringArray::from(vec![r#"{"a":[2,1],"b":1}"#])),
            Some(TextKind::Json),
        );
        assert_ne!(a, c);
    }

    #[test]
    fn times_and_durations_from_text_and_types() {
        let t = one(
            Arc::new(Time64MicrosecondArray::from(vec![3_723_500_000])),
            None,
        );
        assert_eq!(
            t,
            one(
                Arc::new(StringArray::from(vec!["01:02:03.5"])),
                Some(TextKind::Time)
            )
        );
        let d = one(
            Arc::new(DurationMicrosecondArray::from(vec![-1_500_000])),
            None,
        );
        assert_eq!(
            d,
            one(
                Arc::new(StringArray::from(vec!["-1.500000"])),
                Some(TextKind::Duration)
            )
        );
        let iv =
            IntervalMonthDayNanoArray::from(vec![IntervalMonthDayNano::new(0, 0, -1_500_000_000)]);
        assert_eq!(d, one(Arc::new(iv), None));
        let big = one(
            Arc::new(DurationMicrosecondArray::from(vec![
                838 * 3_600_000_000 + 59 * 60_000_000 + 59_000_000,
            ])),
            None,
        );
        assert_eq!(
            big,
            one(
                Arc::new(StringArray::from(vec!["838:59:59.000000"])),
                Some(TextKind::Duration)
            )
        );
    }

    #[test]
    fn timestamps_and_dates() {
        let micros = 1_718_877_600_123_456i64; // 2024-06-20 10:00:00.123456
        let utc = TimestampMicrosecondArray::from(vec![micros]).with_timezone("UTC");
        let naive = TimestampMicrosecondArray::from(vec![micros]);
        assert_eq!(one(Arc::new(utc), None), one(Arc::new(naive), None));
        let text = one(
            Arc::new(StringArray::from(vec!["2024-06-20 10:00:00.123456"])),
            Some(TextKind::Timestamp),
        );
        assert_eq!(
            text,
            one(
                Arc::new(TimestampNanosecondArray::from(vec![micros * 1000])),
                None
            )
        );
        let shifted = TimestampMicrosecondArray::from(vec![micros + 8 * 3_600_000_000]);
        assert_ne!(text, one(Arc::new(shifted), None));
        let day = one(Arc::new(Date32Array::from(vec![19_894])), None);
        assert_eq!(
            day,
            one(
                Arc::new(StringArray::from(vec!["2024-06-20"])),
                Some(TextKind::Date)
            )
        );
        // Text that does not parse stays text, so it differs.
        assert_ne!(
            day,
            one(
                Arc::new(StringArray::from(vec!["2024-13-20"])),
                Some(TextKind::Date)
            )
        );
    }
}

/// Hashes are compared between an agent and a broker that may run different releases: any
/// change to a canonical form or to how it is hashed makes equal rows differ. These pinned
/// values catch one; a deliberate change needs a new fingerprint scheme that both sides
/// negotiate.
#[cfg(test)]
mod pinned {
    use std::sync::Arc;

    use arrow_array::*;
    use arrow_schema::{DataType, Field};

    use super::*;

    fn fold(hashes: &[u64]) -> u64 {
        hashes.iter().enumerate().fold(0u64, |a, (i, h)| {
            a.wrapping_mul(31).wrapping_add(*h ^ i as u64)
        })
    }

    #[test]
    fn canonical_hashes_do_not_change_between_releases() {
        let json = Field::new("j", DataType::Utf8, true);
        let columns: Vec<(ArrayRef, Option<TextKind>)> = vec![
            (
                Arc::new(Int64Array::from(vec![
                    Some(0),
                    Some(-7),
                    None,
                    Some(i64::MAX),
                ])),
                None,
            ),
            (Arc::new(UInt8Array::from(vec![0u8, 1, 255, 9])), None),
            (
                Arc::new(BooleanArray::from(vec![
                    Some(true),
                    None,
                    Some(false),
                    Some(true),
                ])),
                None,
            ),
            (
                Arc::new(
                    Decimal128Array::from(vec![
                        Some(0),
                        Some(-12_3400),
                        Some(170_141_183_460_469_231_731_687_303_715_884_105_727),
                        None,
                    ])
                    .with_precision_and_scale(38, 4)
                    .unwrap(),
                ),
                None,
            ),
            (
                Arc::new(
                    Decimal128Array::from(vec![5, -5, 120, 1_000_000])
                        .with_precision_and_scale(10, -2)
                        .unwrap(),
                ),
                None,
            ),
            (
                Arc::new(Float64Array::from(vec![
                    Some(-0.0),
                    Some(0.1),
                    Some(f64::NAN),
                    None,
                ])),
                None,
            ),
            (
                Arc::new(StringArray::from(vec![
                    Some(""),
                    Some("a "),
                    None,
                    Some("ü"),
                ])),
                None,
            ),
            (
                Arc::new(StringArray::from(vec![
                    Some(r#"{"b": 1, "a": [1, 2.0, "x\n", null, true], "c": {"d": -0.5e3}}"#),
                    Some("[]"),
                    Some("not json"),
                    None,
                ])),
                text_kind(&json, Some(TextKind::Json)),
            ),
            (
                Arc::new(StringArray::from(vec!["007.50", "-0", "1e3", "x"])),
                Some(TextKind::Number),
            ),
            (
                Arc::new(BinaryArray::from(vec![&b""[..], b"\x00", b"ab", b"\xff"])),
                None,
            ),
            (Arc::new(Date32Array::from(vec![0, -1, 19_000, 1])), None),
            (
                Arc::new(
                    TimestampMicrosecondArray::from(vec![0, -1, 1_600_000_000_123_456, 7])
                        .with_timezone("UTC"),
                ),
                None,
            ),
            (
                Arc::new(Time64MicrosecondArray::from(vec![0, 1, 86_399_999_999, 5])),
                None,
            ),
        ];
        let got: Vec<u64> = columns
            .iter()
            .map(|(a, t)| fold(&column_hashes(a, *t)))
            .collect();
        assert_eq!(
            got,
            [
                7848436784976939010,
                12555888100027974178,
                6444729617186056533,
                17456167163798202757,
                14172777898004342802,
                980552722320373530,
                10573331655211603808,
                5202494219877078335,
                6605200366505178913,
                6323829029209015284,
                7627695848801215061,
                18172756455328423676,
                12219986195195442174,
            ],
            "pinned canonical hashes"
        );
    }
}
