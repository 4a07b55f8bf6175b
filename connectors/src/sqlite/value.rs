//! SQLite values to and from Arrow cells: dates, timestamps and exact decimals as text.

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::Array;
use arrow_schema::{DataType, TimeUnit};

/// A value bound into an `INSERT`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SqlVal {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

const US_PER_DAY: i64 = 86_400_000_000;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn num(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub(crate) fn parse_date(s: &str) -> Option<i32> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(&s[0..4])?, num(&s[5..7])?, num(&s[8..10])?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y as i64, m) {
        return None;
    }
    i32::try_from(days_from_civil(y as i64, m, d)).ok()
}

/// Parses `YYYY-MM-DD HH:MM:SS[.f{1,6}]` (also `T` and a trailing `Z`) into epoch microseconds.
pub(crate) fn parse_datetime(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z').unwrap_or(s);
    if s.len() < 19 || !s.is_char_boundary(10) || !s.is_char_boundary(19) {
        return None;
    }
    let days = parse_date(&s[..10])? as i64;
    let sep = s.as_bytes()[10];
    if sep != b' ' && sep != b'T' {
        return None;
    }
    let t = &s[11..19];
    let tb = t.as_bytes();
    if tb[2] != b':' || tb[5] != b':' {
        return None;
    }
    let (h, mi, se) = (num(&t[0..2])?, num(&t[3..5])?, num(&t[6..8])?);
    if h > 23 || mi > 59 || se > 59 {
        return None;
    }
    let frac = &s[19..];
    let micros = if frac.is_empty() {
        0
    } else {
        let f = frac.strip_prefix('.')?;
        if f.is_empty() || f.len() > 6 {
            return None;
        }
        num(f)? as i64 * 10i64.pow(6 - f.len() as u32)
    };
    Some(days * US_PER_DAY + (h as i64 * 3600 + mi as i64 * 60 + se as i64) * 1_000_000 + micros)
}

pub(crate) fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS.ffffff`.
pub(crate) fn format_datetime(us: i64) -> String {
    let days = us.div_euclid(US_PER_DAY);
    let rem = us.rem_euclid(US_PER_DAY);
    let secs = rem / 1_000_000;
    format!(
        "{} {:02}:{:02}:{:02}.{:06}",
        format_date(days),
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        rem % 1_000_000
    )
}

/// Parses decimal text (`-12.30`, `5`, `1e3` is refused) into an unscaled i128 at `scale`,
/// checked against `precision`. `Err` explains.
pub(crate) fn parse_decimal(s: &str, precision: u8, scale: i8) -> Result<i128, String> {
    let t = s.trim();
    let (neg, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!("`{s}` is not a decimal number"));
    }
    let scale = scale.max(0) as usize;
    let frac_trim = frac.trim_end_matches('0');
    if frac_trim.len() > scale {
        return Err(format!("`{s}` has more than {scale} decimal places"));
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > precision as usize {
        return Err(format!("`{s}` does not fit DECIMAL({precision},{scale})"));
    }
    let mut digits = String::with_capacity(int.len() + scale + 1);
    digits.push_str(int);
    digits.push_str(frac_trim);
    for _ in frac_trim.len()..scale {
        digits.push('0');
    }
    let v: i128 = if digits.is_empty() {
        0
    } else {
        digits
            .parse()
            .map_err(|_| format!("`{s}` does not fit DECIMAL({precision},{scale})"))?
    };
    Ok(if neg { -v } else { v })
}

/// The exact text of an unscaled integer (as decimal digits, maybe with `-`) at `scale`.
pub(crate) fn scaled_text(unscaled: &str, scale: i8) -> String {
    let (neg, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    let sign = if neg { "-" } else { "" };
    if scale <= 0 {
        let zeros = "0".repeat((-scale) as usize);
        return if digits == "0" {
            "0".into()
        } else {
            format!("{sign}{digits}{zeros}")
        };
    }
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (i, f) = padded.split_at(padded.len() - scale);
    format!("{sign}{i}.{f}")
}

/// The integer value of an integer cell.
fn int_cell(a: &dyn Array, row: usize) -> Option<i128> {
    Some(match a.data_type() {
        DataType::Int8 => a.as_primitive::<Int8Type>().value(row) as i128,
        DataType::Int16 => a.as_primitive::<Int16Type>().value(row) as i128,
        DataType::Int32 => a.as_primitive::<Int32Type>().value(row) as i128,
        DataType::Int64 => a.as_primitive::<Int64Type>().value(row) as i128,
        DataType::UInt8 => a.as_primitive::<UInt8Type>().value(row) as i128,
        DataType::UInt16 => a.as_primitive::<UInt16Type>().value(row) as i128,
        DataType::UInt32 => a.as_primitive::<UInt32Type>().value(row) as i128,
        DataType::UInt64 => a.as_primitive::<UInt64Type>().value(row) as i128,
        _ => return None,
    })
}

fn to_micros(v: i64, unit: &TimeUnit) -> Result<i64, String> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000).ok_or("out of range".into()),
        TimeUnit::Millisecond => v.checked_mul(1_000).ok_or("out of range".into()),
        TimeUnit::Microsecond => Ok(v),
        TimeUnit::Nanosecond if v % 1_000 == 0 => Ok(v / 1_000),
        TimeUnit::Nanosecond => Err("has nanoseconds, SQLite text keeps microseconds".into()),
    }
}

fn time_text(us: i64) -> String {
    let s = us / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        us % 1_000_000
    )
}

/// Whether the writer can encode this Arrow type.
pub(crate) fn can_encode(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Float32
            | DataType::Float64
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
            | DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::Boolean
            | DataType::Date32
            | DataType::Timestamp(..)
            | DataType::Time32(_)
            | DataType::Time64(_)
            | DataType::Duration(_)
    )
}

/// Encodes one non-null cell; `decimal_target` says the column is `DECIMAL` (NaN/±inf refused).
pub(crate) fn encode(a: &dyn Array, row: usize, decimal_target: bool) -> Result<SqlVal, String> {
    if a.is_null(row) {
        return Ok(SqlVal::Null);
    }
    if let Some(v) = int_cell(a, row) {
        return i64::try_from(v)
            .map(SqlVal::Int)
            .map_err(|_| format!("{v} exceeds SQLite's 64-bit signed INTEGER"));
    }
    let float = |f: f64| {
        if decimal_target && !f.is_finite() {
            Err(format!("{f} cannot be stored as a DECIMAL"))
        } else if f.is_nan() {
            // SQLite stores a NaN parameter as NULL: refuse rather than lose it.
            Err("NaN cannot be stored in SQLite (it would become NULL)".to_string())
        } else {
            Ok(SqlVal::Real(f))
        }
    };
    Ok(match a.data_type() {
        DataType::Float32 => float(a.as_primitive::<Float32Type>().value(row) as f64)?,
        DataType::Float64 => float(a.as_primitive::<Float64Type>().value(row))?,
        DataType::Decimal128(_, s) => SqlVal::Text(scaled_text(
            &a.as_primitive::<Decimal128Type>().value(row).to_string(),
            *s,
        )),
        DataType::Decimal256(_, s) => SqlVal::Text(scaled_text(
            &a.as_primitive::<Decimal256Type>().value(row).to_string(),
            *s,
        )),
        DataType::Utf8 => SqlVal::Text(a.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => SqlVal::Text(a.as_string::<i64>().value(row).to_string()),
        DataType::Binary => SqlVal::Blob(a.as_binary::<i32>().value(row).to_vec()),
        DataType::LargeBinary => SqlVal::Blob(a.as_binary::<i64>().value(row).to_vec()),
        DataType::Boolean => SqlVal::Int(a.as_boolean().value(row) as i64),
        DataType::Date32 => {
            SqlVal::Text(format_date(a.as_primitive::<Date32Type>().value(row) as i64))
        }
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(row),
            };
            SqlVal::Text(format_datetime(to_micros(v, unit)?))
        }
        DataType::Time32(unit) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<Time32SecondType>().value(row),
                _ => a.as_primitive::<Time32MillisecondType>().value(row),
            } as i64;
            SqlVal::Text(time_text(to_micros(v, unit)?))
        }
        DataType::Time64(unit) => {
            let v = match unit {
                TimeUnit::Nanosecond => a.as_primitive::<Time64NanosecondType>().value(row),
                _ => a.as_primitive::<Time64MicrosecondType>().value(row),
            };
            SqlVal::Text(time_text(to_micros(v, unit)?))
        }
        DataType::Duration(unit) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<DurationSecondType>().value(row),
                TimeUnit::Millisecond => a.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => a.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => a.as_primitive::<DurationNanosecondType>().value(row),
            };
            let scale = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            // Seconds, exactly.
            SqlVal::Text(scaled_text(&v.to_string(), scale))
        }
        other => return Err(format!("cannot write {other}")),
    })
}

/// A cell as JSON, for dirty records.
pub(crate) fn cell_json(a: &dyn Array, row: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if let Some(v) = (!a.is_null(row)).then(|| int_cell(a, row)).flatten() {
        return match i64::try_from(v) {
            Ok(v) => J::from(v),
            Err(_) => J::from(v as u64),
        };
    }
    match encode(a, row, false) {
        Ok(SqlVal::Null) => J::Null,
        Ok(SqlVal::Int(v)) => J::from(v),
        Ok(SqlVal::Real(f)) => serde_json::Number::from_f64(f)
            .map(J::Number)
            .unwrap_or_else(|| J::from(f.to_string())),
        Ok(SqlVal::Text(s)) => J::from(s),
        Ok(SqlVal::Blob(b)) => J::from(
            b.iter()
                .fold(String::from("\\x"), |s, x| s + &format!("{x:02x}")),
        ),
        Err(e) => J::from(format!("<{e}>")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        for d in [-719_528i64, -1, 0, 1, 11_016, 2_932_896] {
            let s = format_date(d);
            assert_eq!(parse_date(&s), Some(d as i32), "{s}");
        }
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(
            parse_datetime("1969-12-31 23:59:59.999999"),
            Some(-1),
            "before epoch"
        );
        assert_eq!(format_datetime(-1), "1969-12-31 23:59:59.999999");
        assert_eq!(
            parse_datetime("2024-01-02T03:04:05Z"),
            parse_datetime("2024-01-02 03:04:05.0")
        );
        assert_eq!(parse_datetime("2024-01-02 03:04:05.1234567"), None);
    }

    #[test]
    fn decimals_exact() {
        assert_eq!(parse_decimal("-12.30", 5, 2), Ok(-1230));
        assert!(parse_decimal("0.001", 5, 2).is_err());
        assert!(parse_decimal("1234", 5, 2).is_err());
        assert!(parse_decimal("abc", 5, 2).is_err());
        assert_eq!(scaled_text("-5", 3), "-0.005");
        assert_eq!(scaled_text("12345", 2), "123.45");
        assert_eq!(scaled_text("0", 0), "0");
    }
}
