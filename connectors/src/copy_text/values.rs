//! Parsers for one unescaped field's text, one per Arrow type family.
//!
//! Every parser takes the whole field (`&[u8]`, already COPY-unescaped) and either returns the
//! value or a [`Expected`] message saying what the text should have looked like. None of them
//! allocates on success, and none can panic on any input.

use std::borrow::Cow;

/// What the field should have looked like; turned into
/// [`CopyTextError::InvalidValue`](super::CopyTextError::InvalidValue) by the caller, which
/// adds the line, the column and the offending text.
pub(crate) type Expected = Cow<'static, str>;

const MICROS_PER_SECOND: i64 = 1_000_000;
const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Why an integer did not parse; the caller words the message with the column's type.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IntError {
    /// Not `[-+]digits`.
    Syntax,
    /// Well-formed but outside the target type.
    Range,
}

/// Splits an optional leading sign off; returns (negative, rest).
#[inline]
fn split_sign(text: &[u8]) -> (bool, &[u8]) {
    match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    }
}

/// Parses one or more ASCII digits into a u64, checking for overflow.
#[inline]
fn parse_digits_u64(digits: &[u8]) -> Result<u64, IntError> {
    if digits.is_empty() {
        return Err(IntError::Syntax);
    }
    let mut value: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return Err(IntError::Syntax);
        }
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(d)))
            .ok_or(IntError::Range)?;
    }
    Ok(value)
}

/// `[-+]digits` as an i64 (`i64::MIN` included).
#[inline]
pub(crate) fn parse_i64(text: &[u8]) -> Result<i64, IntError> {
    let (negative, digits) = split_sign(text);
    let magnitude = parse_digits_u64(digits)?;
    if negative {
        // -(2^63) is the one value whose magnitude does not fit in i64.
        0i64.checked_sub_unsigned(magnitude).ok_or(IntError::Range)
    } else {
        i64::try_from(magnitude).map_err(|_| IntError::Range)
    }
}

/// `[+]digits` as a u64; a minus sign is a range error (`-0` included, for simplicity).
#[inline]
pub(crate) fn parse_u64(text: &[u8]) -> Result<u64, IntError> {
    let (negative, digits) = split_sign(text);
    let magnitude = parse_digits_u64(digits)?;
    if negative && magnitude != 0 {
        return Err(IntError::Range);
    }
    Ok(magnitude)
}

/// Floats: Rust's `str::parse` syntax, which already covers PostgreSQL's `NaN`, `Infinity`
/// and `-Infinity` (case-insensitively, plus `inf`).
#[inline]
pub(crate) fn parse_float<F: std::str::FromStr>(text: &[u8]) -> Result<F, Expected> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|s| s.parse::<F>().ok())
        .ok_or(Cow::Borrowed(
            "a floating-point number (e.g. 1.5, -2e-3, NaN, Infinity, -Infinity)",
        ))
}

/// `t/f/true/false/1/0/y/n/yes/no/on/off`, any case.
#[inline]
pub(crate) fn parse_bool(text: &[u8]) -> Result<bool, Expected> {
    const TRUE: [&[u8]; 5] = [b"t", b"true", b"1", b"y", b"yes"];
    const FALSE: [&[u8]; 5] = [b"f", b"false", b"0", b"n", b"no"];
    match text {
        b"1" | b"t" => return Ok(true),
        b"0" | b"f" => return Ok(false),
        _ => {}
    }
    if text.eq_ignore_ascii_case(b"on") || TRUE.iter().any(|t| text.eq_ignore_ascii_case(t)) {
        Ok(true)
    } else if text.eq_ignore_ascii_case(b"off")
        || FALSE.iter().any(|f| text.eq_ignore_ascii_case(f))
    {
        Ok(false)
    } else {
        Err(Cow::Borrowed(
            "a boolean (t, f, true, false, 1, 0, y, n, yes, no, on, off)",
        ))
    }
}

/// Powers of ten that fit in an i128 (10^0 ..= 10^38).
const fn pow10_table() -> [u128; 39] {
    let mut table = [1u128; 39];
    let mut i = 1;
    while i < 39 {
        table[i] = table[i - 1] * 10;
        i += 1;
    }
    table
}
const POW10: [u128; 39] = pow10_table();

/// `[-+]digits[.digits]` (also `.5` and `5.`) as an unscaled Decimal128 value with `scale`
/// fractional digits, in exact integer arithmetic.
///
/// More fractional digits than `scale` are accepted only when the extra ones are zeros
/// (`1.50000` for scale 4): anything else would need rounding, and is an error. More than
/// `precision - scale` integer digits (leading zeros aside) is an error too. Requires
/// `0 <= scale <= precision <= 38` (checked when the decoder is built).
pub(crate) fn parse_decimal(text: &[u8], precision: u8, scale: i8) -> Result<i128, Expected> {
    let scale_digits = usize::try_from(scale).unwrap_or(0);
    let max_int_digits = usize::from(precision).saturating_sub(scale_digits);
    let syntax = || -> Expected {
        Cow::Owned(format!(
            "a decimal number [-+]digits[.digits] for Decimal128({precision}, {scale})"
        ))
    };
    let (negative, body) = split_sign(text);
    // One pass. `value` never holds more than `precision` <= 38 digits, so it cannot overflow.
    let mut value: u128 = 0;
    let mut int_digits = 0; // significant ones: leading zeros are skipped
    let mut frac_digits = 0;
    let mut any_digit = false;
    let mut seen_dot = false;
    for &c in body {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            if c == b'.' && !seen_dot {
                seen_dot = true;
                continue;
            }
            return Err(syntax());
        }
        any_digit = true;
        if !seen_dot {
            if value == 0 && d == 0 {
                continue;
            }
            int_digits += 1;
            if int_digits > max_int_digits {
                return Err(Cow::Owned(format!(
                    "at most {max_int_digits} integer digits for Decimal128({precision}, \
                     {scale}) (value too large)"
                )));
            }
        } else if frac_digits < scale_digits {
            frac_digits += 1;
        } else if d == 0 {
            // Trailing zeros beyond the scale change nothing.
            continue;
        } else {
            return Err(Cow::Owned(format!(
                "at most {scale} fractional digits for Decimal128({precision}, {scale}) \
                 (refusing to round)"
            )));
        }
        value = value * 10 + u128::from(d);
    }
    if !any_digit {
        return Err(syntax());
    }
    let value = POW10
        .get(scale_digits - frac_digits)
        .and_then(|p| value.checked_mul(*p))
        .and_then(|v| i128::try_from(v).ok())
        .ok_or_else(syntax)?;
    Ok(if negative { -value } else { value })
}

/// Decodes PostgreSQL bytea hex form: `\x` followed by pairs of hex digits (either case;
/// whitespace between pairs is skipped, as PostgreSQL does). Appends to `out`.
pub(crate) fn parse_bytea_hex(text: &[u8], out: &mut Vec<u8>) -> Result<(), Expected> {
    const EXPECTED: &str = "bytea hex form: \\x followed by pairs of hex digits";
    let hex = text.strip_prefix(b"\\x").ok_or(Cow::Borrowed(EXPECTED))?;
    out.clear();
    out.reserve(hex.len() / 2);
    let mut iter = hex.iter().copied();
    while let Some(hi) = iter.next() {
        if matches!(hi, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        let lo = iter.next().ok_or(Cow::Borrowed(EXPECTED))?;
        match (hex_value(hi), hex_value(lo)) {
            (Some(h), Some(l)) => out.push(h << 4 | l),
            _ => return Err(Cow::Borrowed(EXPECTED)),
        }
    }
    Ok(())
}

#[inline]
pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A cursor over an ASCII date/time text.
struct Cursor<'a> {
    text: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a [u8]) -> Self {
        Self { text, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn rest(&self) -> &'a [u8] {
        self.text.get(self.pos..).unwrap_or_default()
    }

    /// Consumes `c` if it is next.
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Exactly `n` digits.
    fn fixed(&mut self, n: usize) -> Option<u32> {
        let digits = self.text.get(self.pos..self.pos + n)?;
        let mut value = 0u32;
        for &c in digits {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            value = value * 10 + u32::from(d);
        }
        self.pos += n;
        Some(value)
    }

    /// Between `min` and `max` digits (as many as present); returns (value, count).
    fn digits(&mut self, min: usize, max: usize) -> Option<(u32, usize)> {
        let mut value = 0u32;
        let mut count = 0;
        while count < max {
            match self.peek() {
                Some(c @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(c - b'0');
                    count += 1;
                    self.pos += 1;
                }
                _ => break,
            }
        }
        (count >= min).then_some((value, count))
    }
}

const DATE_SYNTAX: &str = "a date YYYY-MM-DD";
const TIME_SYNTAX: &str = "a time HH:MM:SS[.ffffff] (1 to 6 fractional digits)";
const TIMESTAMP_SYNTAX: &str = "a timestamp YYYY-MM-DD HH:MM:SS[.ffffff] (or a T separator)";
const TIMESTAMPTZ_SYNTAX: &str = "a timestamp YYYY-MM-DD HH:MM:SS[.ffffff] with an optional \
     offset (Z, +HH, +HH:MM, -HH:MM, +HH:MM:SS)";

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
/// `month` is 1..=12 and `day` 1..=31 (validated by the caller).
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = i64::from((month + 9) % 12); // March = 0
    let day_of_year = (153 * month_index + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `YYYY-MM-DD` (4 to 6 year digits) at the cursor; returns days since the epoch.
fn date_at(cur: &mut Cursor<'_>, syntax: &'static str) -> Result<i64, Expected> {
    let (year, _) = cur.digits(4, 6).ok_or(Cow::Borrowed(syntax))?;
    if cur.peek().is_some_and(|c| c.is_ascii_digit()) {
        return Err(Cow::Borrowed("a year of at most 6 digits"));
    }
    let year = i64::from(year);
    let (month, day) = (|| {
        if !cur.eat(b'-') {
            return None;
        }
        let month = cur.fixed(2)?;
        if !cur.eat(b'-') {
            return None;
        }
        Some((month, cur.fixed(2)?))
    })()
    .ok_or(Cow::Borrowed(syntax))?;
    if !(1..=12).contains(&month) {
        return Err(Cow::Owned(format!(
            "a valid date (month {month:02} is not 01-12)"
        )));
    }
    let last_day = days_in_month(year, month);
    if day == 0 || day > last_day {
        return Err(Cow::Owned(format!(
            "a valid date (day {day:02} is not 01-{last_day} for {year:04}-{month:02})"
        )));
    }
    Ok(days_from_civil(year, month, day))
}

/// `HH:MM:SS[.f{1,6}]` at the cursor; returns microseconds since midnight.
fn time_at(cur: &mut Cursor<'_>, syntax: &'static str) -> Result<i64, Expected> {
    let (hour, minute, second) = (|| {
        let hour = cur.fixed(2)?;
        if !cur.eat(b':') {
            return None;
        }
        let minute = cur.fixed(2)?;
        if !cur.eat(b':') {
            return None;
        }
        Some((hour, minute, cur.fixed(2)?))
    })()
    .ok_or(Cow::Borrowed(syntax))?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err(Cow::Owned(format!(
            "a valid time of day (00:00:00 to 23:59:59.999999), not {hour:02}:{minute:02}:{second:02}"
        )));
    }
    let mut micros = 0i64;
    if cur.eat(b'.') {
        let (fraction, count) = cur.digits(1, 6).ok_or(Cow::Borrowed(syntax))?;
        if cur.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(Cow::Borrowed(
                "at most 6 fractional second digits (microseconds)",
            ));
        }
        let scale = POW10.get(6 - count).copied().unwrap_or(1) as i64;
        micros = i64::from(fraction) * scale;
    }
    let seconds = i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
    Ok(seconds * MICROS_PER_SECOND + micros)
}

/// Rejects anything left after a value, with a hint for PostgreSQL's ` BC` suffix.
fn at_end(cur: &Cursor<'_>, syntax: &'static str) -> Result<(), Expected> {
    let rest = cur.rest();
    if rest.is_empty() {
        Ok(())
    } else if rest.eq_ignore_ascii_case(b" BC") {
        Err(Cow::Borrowed(
            "a date in the common era (BC dates are not supported)",
        ))
    } else {
        Err(Cow::Borrowed(syntax))
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub(crate) fn parse_date32(text: &[u8]) -> Result<i32, Expected> {
    let mut cur = Cursor::new(text);
    let days = date_at(&mut cur, DATE_SYNTAX)?;
    at_end(&cur, DATE_SYNTAX)?;
    // 6-digit years stay far inside i32 days.
    i32::try_from(days).map_err(|_| Cow::Borrowed(DATE_SYNTAX))
}

/// `HH:MM:SS[.ffffff]` as microseconds since midnight.
pub(crate) fn parse_time64_micros(text: &[u8]) -> Result<i64, Expected> {
    let mut cur = Cursor::new(text);
    let micros = time_at(&mut cur, TIME_SYNTAX)?;
    at_end(&cur, TIME_SYNTAX)?;
    Ok(micros)
}

/// A timestamp as microseconds since the epoch. With `with_zone`, an optional UTC offset
/// may follow (no offset = UTC) and the result is UTC; without, an offset is an error.
pub(crate) fn parse_timestamp_micros(text: &[u8], with_zone: bool) -> Result<i64, Expected> {
    let syntax = if with_zone {
        TIMESTAMPTZ_SYNTAX
    } else {
        TIMESTAMP_SYNTAX
    };
    let mut cur = Cursor::new(text);
    let days = date_at(&mut cur, syntax)?;
    if !(cur.eat(b' ') || cur.eat(b'T')) {
        return Err(Cow::Borrowed(syntax));
    }
    let time = time_at(&mut cur, syntax)?;
    let offset_seconds =
        match cur.peek() {
            None => 0,
            Some(b'Z' | b'+' | b'-') if !with_zone => return Err(Cow::Borrowed(
                "a timestamp without a UTC offset (the column is Timestamp without a time zone)",
            )),
            Some(b'Z') => {
                cur.pos += 1;
                0
            }
            Some(sign @ (b'+' | b'-')) => {
                cur.pos += 1;
                let seconds = offset_at(&mut cur).ok_or(Cow::Borrowed(syntax))?;
                if sign == b'-' {
                    -seconds
                } else {
                    seconds
                }
            }
            Some(_) => return Err(Cow::Borrowed(syntax)),
        };
    at_end(&cur, syntax)?;
    days.checked_mul(MICROS_PER_DAY)
        .and_then(|d| d.checked_add(time))
        .and_then(|t| t.checked_sub(offset_seconds * MICROS_PER_SECOND))
        .ok_or(Cow::Borrowed(
            "a timestamp within the Timestamp(Microsecond) range",
        ))
}

/// The offset after its sign: `HH`, `HHMM`, `HH:MM` or `HH:MM:SS`; returns seconds.
fn offset_at(cur: &mut Cursor<'_>) -> Option<i64> {
    let hours = cur.fixed(2)?;
    let mut minutes = 0;
    let mut seconds = 0;
    if cur.eat(b':') {
        minutes = cur.fixed(2)?;
        if cur.eat(b':') {
            seconds = cur.fixed(2)?;
        }
    } else if cur.peek().is_some_and(|c| c.is_ascii_digit()) {
        minutes = cur.fixed(2)?;
    }
    if hours > 23 || minutes > 59 || seconds > 59 {
        return None;
    }
    Some(i64::from(hours) * 3600 + i64::from(minutes) * 60 + i64::from(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_i64(b"0"), Ok(0));
        assert_eq!(parse_i64(b"+17"), Ok(17));
        assert_eq!(parse_i64(b"-17"), Ok(-17));
        assert_eq!(parse_i64(b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), Err(IntError::Range));
        assert_eq!(parse_i64(b"-9223372036854775809"), Err(IntError::Range));
        assert_eq!(parse_i64(b"99999999999999999999999"), Err(IntError::Range));
        for bad in [
            &b""[..],
            b"-",
            b"+",
            b"1 ",
            b" 1",
            b"1.0",
            b"1e3",
            b"--1",
            b"0x10",
        ] {
            assert_eq!(parse_i64(bad), Err(IntError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_u64(b"18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_u64(b"+5"), Ok(5));
        assert_eq!(parse_u64(b"18446744073709551616"), Err(IntError::Range));
        assert_eq!(parse_u64(b"-1"), Err(IntError::Range));
    }

    #[test]
    fn floats() {
        assert_eq!(parse_float::<f64>(b"523.1234567"), Ok(523.1234567));
        assert_eq!(parse_float::<f64>(b"-2e-3"), Ok(-0.002));
        assert!(parse_float::<f64>(b"NaN").is_ok_and(f64::is_nan));
        assert_eq!(parse_float::<f64>(b"Infinity"), Ok(f64::INFINITY));
        assert_eq!(parse_float::<f64>(b"-Infinity"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_float::<f64>(b"inf"), Ok(f64::INFINITY));
        assert!(parse_float::<f64>(b"").is_err());
        assert!(parse_float::<f64>(b"1,5").is_err());
        assert!(parse_float::<f64>(b"\xff").is_err());
        assert_eq!(parse_float::<f32>(b"1.5"), Ok(1.5f32));
    }

    #[test]
    fn booleans() {
        for t in [
            "t", "T", "true", "TRUE", "True", "1", "y", "Y", "yes", "YES", "on", "ON",
        ] {
            assert_eq!(parse_bool(t.as_bytes()), Ok(true), "{t}");
        }
        for f in [
            "f", "F", "false", "False", "0", "n", "N", "no", "No", "off", "OFF",
        ] {
            assert_eq!(parse_bool(f.as_bytes()), Ok(false), "{f}");
        }
        for bad in ["", "2", "tru", "yess", "o", " t", "t "] {
            assert!(parse_bool(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn decimals() {
        let d = |s: &str, p, sc| parse_decimal(s.as_bytes(), p, sc);
        assert_eq!(d("12345.6789", 18, 4), Ok(123_456_789));
        assert_eq!(d("-12345.6789", 18, 4), Ok(-123_456_789));
        assert_eq!(d("-0.5", 18, 4), Ok(-5000));
        assert_eq!(d("+0.5", 18, 4), Ok(5000));
        assert_eq!(d(".5", 18, 4), Ok(5000));
        assert_eq!(d("5.", 18, 4), Ok(50000));
        assert_eq!(d("7", 18, 4), Ok(70000));
        assert_eq!(d("-0", 18, 4), Ok(0));
        assert_eq!(d("0000012.3", 5, 2), Ok(1230));
        assert_eq!(
            d("1.50000", 18, 4),
            Ok(15000),
            "extra zeros need no rounding"
        );
        assert_eq!(d("42", 10, 0), Ok(42));
        assert_eq!(d("42.000", 10, 0), Ok(42));
        // Largest magnitudes for precision 18 and 38.
        assert_eq!(d("99999999999999.9999", 18, 4), Ok(999_999_999_999_999_999));
        assert_eq!(
            d("-99999999999999.9999", 18, 4),
            Ok(-999_999_999_999_999_999)
        );
        let max38 = "9".repeat(38);
        assert_eq!(d(&max38, 38, 0), Ok(10i128.pow(38) - 1));
        assert_eq!(d(&format!("-{max38}"), 38, 0), Ok(-(10i128.pow(38) - 1)));
        let max38_s10 = format!("{}.{}", "9".repeat(28), "9".repeat(10));
        assert_eq!(d(&max38_s10, 38, 10), Ok(10i128.pow(38) - 1));
        // Errors.
        let err = d("1.23456", 18, 4).unwrap_err();
        assert!(err.contains("at most 4 fractional digits"), "{err}");
        let err = d("100000000000000", 18, 4).unwrap_err();
        assert!(err.contains("at most 14 integer digits"), "{err}");
        assert!(d(&format!("1{max38}"), 38, 0).is_err());
        for bad in [
            "", ".", "-", "+", "1.2.3", "1e5", "NaN", "Infinity", " 1", "1 ", "1,5", "--1",
        ] {
            assert!(d(bad, 18, 4).is_err(), "{bad}");
        }
    }

    #[test]
    fn bytea() {
        let mut out = Vec::new();
        assert_eq!(parse_bytea_hex(b"\\x", &mut out), Ok(()));
        assert!(out.is_empty());
        assert_eq!(parse_bytea_hex(b"\\x0aFFb0", &mut out), Ok(()));
        assert_eq!(out, [0x0a, 0xff, 0xb0]);
        assert_eq!(parse_bytea_hex(b"\\x0a ff", &mut out), Ok(()));
        assert_eq!(out, [0x0a, 0xff]);
        for bad in [&b""[..], b"0a0b", b"\\x0", b"\\x0g", b"\\X0a", b"x0a"] {
            assert!(parse_bytea_hex(bad, &mut out).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date32(b"1970-01-01"), Ok(0));
        assert_eq!(parse_date32(b"2021-03-06"), Ok(18692));
        assert_eq!(parse_date32(b"1969-12-31"), Ok(-1));
        assert_eq!(parse_date32(b"1900-03-01"), Ok(-25508));
        assert_eq!(parse_date32(b"0001-01-01"), Ok(-719_162));
        assert_eq!(parse_date32(b"2024-02-29"), Ok(19782));
        assert_eq!(parse_date32(b"2000-02-29"), Ok(11016));
        assert_eq!(parse_date32(b"9999-12-31"), Ok(2_932_896));
        assert_eq!(parse_date32(b"10000-01-01"), Ok(2_932_897));
        let err = parse_date32(b"2021-13-01").unwrap_err();
        assert!(err.contains("month 13"), "{err}");
        let err = parse_date32(b"2021-02-30").unwrap_err();
        assert!(err.contains("day 30"), "{err}");
        assert!(parse_date32(b"2023-02-29").is_err());
        assert!(
            parse_date32(b"1900-02-29").is_err(),
            "1900 is not a leap year"
        );
        assert!(parse_date32(b"2021-04-31").is_err());
        assert!(parse_date32(b"2021-01-00").is_err());
        assert!(parse_date32(b"2021-00-10").is_err());
        let err = parse_date32(b"0044-03-15 BC").unwrap_err();
        assert!(err.contains("BC"), "{err}");
        for bad in [
            "",
            "2021",
            "21-03-06",
            "2021-3-06",
            "2021-03-6",
            "2021/03/06",
            "2021-03-06 ",
            "2021-03-06x",
            "1234567-01-01",
            "+2021-03-06",
        ] {
            assert!(parse_date32(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time64_micros(b"00:00:00"), Ok(0));
        assert_eq!(
            parse_time64_micros(b"23:59:59.999999"),
            Ok(MICROS_PER_DAY - 1)
        );
        assert_eq!(parse_time64_micros(b"01:02:03.5"), Ok(3_723_500_000));
        assert_eq!(parse_time64_micros(b"01:02:03.000007"), Ok(3_723_000_007));
        let err = parse_time64_micros(b"25:00:00").unwrap_err();
        assert!(err.contains("25:00:00"), "{err}");
        for bad in [
            "24:00:00",
            "12:60:00",
            "12:00:60",
            "1:02:03",
            "01:02",
            "01:02:03.",
            "01:02:03.1234567",
            "01:02:03Z",
        ] {
            assert!(parse_time64_micros(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        let ts = |s: &str| parse_timestamp_micros(s.as_bytes(), false);
        let tz = |s: &str| parse_timestamp_micros(s.as_bytes(), true);
        assert_eq!(ts("1970-01-01 00:00:00"), Ok(0));
        assert_eq!(ts("1970-01-01T00:00:01"), Ok(1_000_000));
        assert_eq!(ts("1969-12-31 23:59:59.999999"), Ok(-1));
        // 2021-03-04 05:06:07 UTC = 1614834367 s.
        let base = 1_614_834_367 * MICROS_PER_SECOND;
        assert_eq!(ts("2021-03-04 05:06:07"), Ok(base));
        for (frac, micros) in [
            (".1", 100_000),
            (".12", 120_000),
            (".123", 123_000),
            (".1234", 123_400),
            (".12345", 123_450),
            (".123456", 123_456),
            (".000001", 1),
        ] {
            assert_eq!(ts(&format!("2021-03-04 05:06:07{frac}")), Ok(base + micros));
            assert_eq!(tz(&format!("2021-03-04 05:06:07{frac}")), Ok(base + micros));
        }
        assert!(ts("2021-03-04 05:06:07.1234567").is_err());
        assert!(
            ts("2021-03-04 05:06:07+00").is_err(),
            "offset on a naive column"
        );
        assert!(ts("2021-03-04 05:06:07Z").is_err());
        assert!(ts("2021-03-04  05:06:07").is_err());
        assert!(ts("2021-03-04").is_err());
        assert!(ts("2021-02-29 00:00:00").is_err());
        assert!(ts("2021-03-04 24:00:00").is_err());
        // Offsets: the stored value is UTC.
        let hour = 3600 * MICROS_PER_SECOND;
        assert_eq!(tz("2021-03-04 05:06:07Z"), Ok(base));
        assert_eq!(tz("2021-03-04 05:06:07+00"), Ok(base));
        assert_eq!(tz("2021-03-04 05:06:07+02"), Ok(base - 2 * hour));
        assert_eq!(tz("2021-03-04 05:06:07-02"), Ok(base + 2 * hour));
        assert_eq!(
            tz("2021-03-04 05:06:07+05:30"),
            Ok(base - 5 * hour - hour / 2)
        );
        assert_eq!(
            tz("2021-03-04 05:06:07-09:30"),
            Ok(base + 9 * hour + hour / 2)
        );
        assert_eq!(
            tz("2021-03-04 05:06:07+0530"),
            Ok(base - 5 * hour - hour / 2)
        );
        assert_eq!(
            tz("1900-01-01 00:00:00+05:53:28"),
            Ok(-2_208_988_800 * MICROS_PER_SECOND - (5 * 3600 + 53 * 60 + 28) * MICROS_PER_SECOND)
        );
        assert_eq!(tz("2021-03-04T05:06:07.5+01:00"), Ok(base - hour + 500_000));
        for bad in [
            "2021-03-04 05:06:07+",
            "2021-03-04 05:06:07+5",
            "2021-03-04 05:06:07+05:3",
            "2021-03-04 05:06:07+24:00",
            "2021-03-04 05:06:07 +02",
            "2021-03-04 05:06:07 UTC",
            "2021-03-04 05:06:07z",
        ] {
            assert!(tz(bad).is_err(), "{bad}");
        }
        // Far years: in range up to 6 digits (year 294246 would overflow i64 micros).
        assert!(ts("999999-12-31 23:59:59").is_err());
        assert!(ts("200000-01-01 00:00:00").is_ok());
    }
}
