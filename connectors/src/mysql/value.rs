//! Exact conversions: decimal text, civil dates, MySQL binary-protocol temporal values.

use arrow_buffer::i256;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (year, month, day) of days since 1970-01-01.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A decoded binary-protocol DATE / DATETIME / TIMESTAMP.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Temporal {
    /// `0000-00-00` or a date with a zero month or day.
    Zero,
    /// Microseconds since the epoch of the wall-clock value (read as UTC).
    Micros(i64),
}

/// Decodes a binary-protocol date/datetime value (length byte first).
pub(crate) fn decode_datetime(b: &[u8]) -> Result<Temporal, String> {
    let len = *b.first().ok_or("empty temporal value")? as usize;
    if b.len() < len + 1 {
        return Err("truncated temporal value".into());
    }
    let b = &b[1..];
    if len == 0 {
        return Ok(Temporal::Zero);
    }
    if len < 4 {
        return Err(format!("bad temporal length {len}"));
    }
    let y = u16::from_le_bytes([b[0], b[1]]) as i64;
    let (m, d) = (b[2] as u32, b[3] as u32);
    if m == 0 || d == 0 {
        return Ok(Temporal::Zero);
    }
    let (mut hh, mut mi, mut ss, mut us) = (0i64, 0i64, 0i64, 0i64);
    if len >= 7 {
        hh = b[4] as i64;
        mi = b[5] as i64;
        ss = b[6] as i64;
    }
    if len >= 11 {
        us = u32::from_le_bytes([b[7], b[8], b[9], b[10]]) as i64;
    }
    let days = days_from_civil(y, m, d);
    Ok(Temporal::Micros(
        days * 86_400_000_000 + ((hh * 60 + mi) * 60 + ss) * 1_000_000 + us,
    ))
}

/// Decodes a binary-protocol TIME value into signed microseconds.
pub(crate) fn decode_time(b: &[u8]) -> Result<i64, String> {
    let len = *b.first().ok_or("empty time value")? as usize;
    if b.len() < len + 1 {
        return Err("truncated time value".into());
    }
    let b = &b[1..];
    if len == 0 {
        return Ok(0);
    }
    if len < 8 {
        return Err(format!("bad time length {len}"));
    }
    let neg = b[0] != 0;
    let days = u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as i64;
    let (hh, mi, ss) = (b[5] as i64, b[6] as i64, b[7] as i64);
    let us = if len >= 12 {
        u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as i64
    } else {
        0
    };
    let v = (((days * 24 + hh) * 60 + mi) * 60 + ss) * 1_000_000 + us;
    Ok(if neg { -v } else { v })
}

/// `-12.3400` → the digits scaled to `scale` (`-123400` for scale 4), as a decimal string
/// without a point. Extra fraction digits must be zero.
fn scaled_digits(text: &str, scale: i8) -> Result<String, String> {
    let t = text.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(format!("`{text}` is not a decimal number"));
    }
    let scale = scale.max(0) as usize;
    let mut digits = String::with_capacity(int.len() + scale + 1);
    if neg {
        digits.push('-');
    }
    digits.push_str(if int.is_empty() { "0" } else { int });
    if frac.len() <= scale {
        digits.push_str(frac);
        digits.extend(std::iter::repeat_n('0', scale - frac.len()));
    } else {
        let (keep, drop) = frac.split_at(scale);
        if drop.bytes().any(|c| c != b'0') {
            return Err(format!("`{text}` has more than {scale} fraction digits"));
        }
        digits.push_str(keep);
    }
    Ok(digits)
}

/// A decimal's text as the server sends it (`-12.34`) scaled to an integer at `scale`
/// (`-123400` at 4). Reads the bytes in place: every DECIMAL of every row passes here, and
/// a text with anything but ASCII digits, a sign and a point is refused anyway.
pub(crate) fn parse_decimal128(raw: &[u8], scale: i8) -> Result<i128, String> {
    let bad = |why: &str| format!("`{}` {why}", String::from_utf8_lossy(raw));
    let t = raw.trim_ascii();
    let (neg, t) = match t.split_first() {
        Some((b'-', r)) => (true, r),
        Some((b'+', r)) => (false, r),
        _ => (false, t),
    };
    let (int, frac) = match t.iter().position(|&c| c == b'.') {
        Some(p) => (&t[..p], &t[p + 1..]),
        None => (t, &[][..]),
    };
    if int.is_empty() && frac.is_empty()
        || !int.iter().all(u8::is_ascii_digit)
        || !frac.iter().all(u8::is_ascii_digit)
    {
        return Err(bad("is not a decimal number"));
    }
    let scale = scale.max(0) as usize;
    let (keep, drop) = frac.split_at(frac.len().min(scale));
    if drop.iter().any(|&c| c != b'0') {
        return Err(bad(&format!("has more than {scale} fraction digits")));
    }
    let overflow = || bad("does not fit 38 digits");
    let mut m: u128 = 0;
    for &c in int.iter().chain(keep) {
        m = m
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(c - b'0')))
            .ok_or_else(overflow)?;
    }
    for _ in keep.len()..scale {
        m = m.checked_mul(10).ok_or_else(overflow)?;
    }
    match neg {
        false => i128::try_from(m).map_err(|_| overflow()),
        true if m <= i128::MIN.unsigned_abs() => Ok((m as i128).wrapping_neg()),
        true => Err(overflow()),
    }
}

pub(crate) fn parse_decimal256(text: &str, scale: i8) -> Result<i256, String> {
    let d = scaled_digits(text, scale)?;
    i256::from_string(&d).ok_or_else(|| format!("`{text}` does not fit 76 digits"))
}

/// Formats an unscaled integer's decimal text at `scale` (`-123400`, 4 → `-12.3400`).
pub(crate) fn format_decimal(unscaled: &str, scale: i8) -> String {
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
    let s = scale as usize;
    let padded = if digits.len() <= s {
        format!("{}{}", "0".repeat(s + 1 - digits.len()), digits)
    } else {
        digits.to_string()
    };
    let (i, f) = padded.split_at(padded.len() - s);
    format!("{sign}{i}.{f}")
}

/// Digits left of the point of a formatted decimal (`-0012.5` → 2, `0.1` → 0).
pub(crate) fn integer_digits(formatted: &str) -> usize {
    let t = formatted.trim_start_matches('-');
    let int = t.split('.').next().unwrap_or("");
    int.trim_start_matches('0').len()
}

/// `YYYY-MM-DD` of days since the epoch.
pub(crate) fn format_date(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` of microseconds since the epoch.
pub(crate) fn format_datetime(us: i64) -> String {
    let days = us.div_euclid(86_400_000_000);
    let rem = us.rem_euclid(86_400_000_000);
    let (h, mi, s, f) = (
        rem / 3_600_000_000,
        rem / 60_000_000 % 60,
        rem / 1_000_000 % 60,
        rem % 1_000_000,
    );
    format!("{} {h:02}:{mi:02}:{s:02}.{f:06}", format_date(days))
}

/// `[-]HHH:MM:SS.ffffff` of signed microseconds.
pub(crate) fn format_time(us: i64) -> String {
    let sign = if us < 0 { "-" } else { "" };
    let a = us.unsigned_abs();
    format!(
        "{sign}{:02}:{:02}:{:02}.{:06}",
        a / 3_600_000_000,
        a / 60_000_000 % 60,
        a / 1_000_000 % 60,
        a % 1_000_000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip() {
        for (y, m, d) in [
            (1970, 1, 1),
            (1000, 1, 1),
            (9999, 12, 31),
            (2000, 2, 29),
            (1, 1, 1),
        ] {
            let days = days_from_civil(y, m, d);
            assert_eq!(civil_from_days(days), (y, m, d));
        }
        assert_eq!(days_from_civil(1970, 1, 2), 1);
    }

    #[test]
    fn decimals_are_exact() {
        let max = format!("{}.{}", "9".repeat(35), "9".repeat(30));
        let v = parse_decimal256(&max, 30).unwrap();
        assert_eq!(format_decimal(&v.to_string(), 30), max);
        assert_eq!(parse_decimal128(b"-12.34", 4).unwrap(), -123400);
        assert_eq!(format_decimal("-123400", 4), "-12.3400");
        assert_eq!(format_decimal("5", 3), "0.005");
        assert_eq!(format_decimal("-5", 3), "-0.005");
        assert_eq!(integer_digits("-0012.5"), 2);
        assert_eq!(integer_digits("0.5"), 0);
        assert!(parse_decimal128(b"1.2.3", 2).is_err());
        for (text, scale, v) in [
            (" 12.5 ", 3, 12_500),
            ("+0.0100", 2, 1),
            ("-0", 2, 0),
            (".5", 1, 5),
            ("7.", 0, 7),
            ("-0.001", 3, -1),
            ("12", -2, 12),
        ] {
            assert_eq!(parse_decimal128(text.as_bytes(), scale), Ok(v), "{text}");
        }
        let max = i128::MAX.to_string();
        assert_eq!(parse_decimal128(max.as_bytes(), 0), Ok(i128::MAX));
        let min = i128::MIN.to_string();
        assert_eq!(parse_decimal128(min.as_bytes(), 0), Ok(i128::MIN));
        for (text, scale, why) in [
            (
                "170141183460469231731687303715884105728",
                0,
                "does not fit 38 digits",
            ),
            (
                "99999999999999999999999999999999999999",
                2,
                "does not fit 38 digits",
            ),
            ("1.25", 1, "has more than 1 fraction digits"),
            ("", 2, "is not a decimal number"),
            (".", 2, "is not a decimal number"),
            ("1e3", 2, "is not a decimal number"),
            ("--1", 2, "is not a decimal number"),
            ("١٢", 2, "is not a decimal number"),
        ] {
            let e = parse_decimal128(text.as_bytes(), scale).unwrap_err();
            assert_eq!(e, format!("`{text}` {why}"));
        }
    }

    #[test]
    fn formats() {
        assert_eq!(format_datetime(-1), "1969-12-31 23:59:59.999999");
        assert_eq!(
            format_time(-(838 * 3600 + 59 * 60 + 59) * 1_000_000),
            "-838:59:59.000000"
        );
    }
}
