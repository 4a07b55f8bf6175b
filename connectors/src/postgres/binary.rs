//! PostgreSQL `COPY ... (FORMAT binary)`: decoding into Arrow arrays and encoding Arrow
//! values into tuples.
//!
//! The decoder treats its input as untrusted: every length is checked against the bytes
//! that remain, malformed input is an error, never a panic.

use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Decimal256Builder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder,
    IntervalMonthDayNanoBuilder, StringBuilder, Time64MicrosecondBuilder,
    TimestampMicrosecondBuilder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_buffer::{i256, IntervalMonthDayNano};
use arrow_schema::{DataType, SchemaRef, TimeUnit};

use super::{PgCol, PgKind};
use crate::error::ConnectorError;

/// The 11-byte signature that starts binary COPY data.
pub(crate) const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Microseconds between 1970-01-01 and 2000-01-01 (PostgreSQL's epoch).
pub(crate) const EPOCH_SHIFT_US: i64 = 946_684_800_000_000;
/// Days between 1970-01-01 and 2000-01-01.
pub(crate) const EPOCH_SHIFT_DAYS: i32 = 10_957;
/// PostgreSQL's smallest timestamp (4714-11-24 BC), microseconds since 2000-01-01.
const PG_MIN_TS: i64 = -211_813_488_000_000_000;
/// PostgreSQL's end of timestamps (294277-01-01, exclusive), microseconds since 2000-01-01.
const PG_END_TS: i64 = 9_223_371_331_200_000_000;
/// PostgreSQL's smallest date (4714-11-24 BC), days since 2000-01-01.
const PG_MIN_DATE: i64 = -2_451_545;
/// PostgreSQL's end of dates (5874898-01-01, exclusive), days since 2000-01-01.
const PG_END_DATE: i64 = 2_147_483_494 - 2_451_545;
const USECS_PER_DAY: i64 = 86_400_000_000;

// ---------------------------------------------------------------------------------------
// numeric

/// Renders a binary `numeric` value as exact decimal text (`NaN`, `Infinity`, `-Infinity`
/// for the special values).
pub(crate) fn numeric_to_text(b: &[u8]) -> Result<String, String> {
    if b.len() < 8 {
        return Err("numeric value shorter than its header".into());
    }
    let ndigits = i16::from_be_bytes([b[0], b[1]]);
    let weight = i16::from_be_bytes([b[2], b[3]]) as i64;
    let sign = u16::from_be_bytes([b[4], b[5]]);
    let dscale = i16::from_be_bytes([b[6], b[7]]);
    if ndigits < 0 || dscale < 0 {
        return Err("numeric value with a negative digit count or scale".into());
    }
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        s => return Err(format!("numeric value with unknown sign word {s:#06x}")),
    }
    let n = ndigits as usize;
    if b.len() != 8 + 2 * n {
        return Err("numeric value length does not match its digit count".into());
    }
    let mut digits = Vec::with_capacity(n);
    for i in 0..n {
        let d = u16::from_be_bytes([b[8 + 2 * i], b[9 + 2 * i]]);
        if d > 9999 {
            return Err(format!("numeric digit {d} out of range"));
        }
        digits.push(d);
    }
    let digit = |k: i64| -> u16 {
        if k < 0 || k >= n as i64 {
            0
        } else {
            digits[k as usize]
        }
    };
    let mut s = String::with_capacity(4 * n + 4);
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        if weight > 10_000 {
            return Err("numeric weight out of range".into());
        }
        for k in 0..=weight {
            if k == 0 {
                s.push_str(&digit(k).to_string());
            } else {
                s.push_str(&format!("{:04}", digit(k)));
            }
        }
    }
    if dscale > 0 {
        s.push('.');
        let mut frac = String::with_capacity(dscale as usize + 4);
        let mut k = weight + 1;
        while frac.len() < dscale as usize {
            frac.push_str(&format!("{:04}", digit(k)));
            k += 1;
        }
        frac.truncate(dscale as usize);
        s.push_str(&frac);
    }
    // "-0" can only come from a malformed value; keep it canonical.
    if s.starts_with('-') && s[1..].bytes().all(|c| c == b'0' || c == b'.') {
        s.remove(0);
    }
    Ok(s)
}

/// A decimal number parsed from text: sign, integer digits (no leading zeros) and
/// fractional digits (as written).
#[derive(Debug, PartialEq)]
pub(crate) enum ParsedNumeric {
    Finite {
        neg: bool,
        int: String,
        frac: String,
    },
    NaN,
    PosInf,
    NegInf,
}

/// Parses `[+-]digits[.digits]` (or NaN / Infinity / -Infinity).
pub(crate) fn parse_numeric(text: &str) -> Result<ParsedNumeric, String> {
    let t = text.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" => return Ok(ParsedNumeric::NaN),
        "infinity" | "+infinity" | "inf" | "+inf" => return Ok(ParsedNumeric::PosInf),
        "-infinity" | "-inf" => return Ok(ParsedNumeric::NegInf),
        _ => {}
    }
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (int, frac) = match rest.split_once('.') {
        Some((i, f)) => (i, f),
        None => (rest, ""),
    };
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().all(|c| c.is_ascii_digit())
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return Err(format!("`{text}` is not a decimal number"));
    }
    let int = int.trim_start_matches('0').to_string();
    let neg = neg && !(int.is_empty() && frac.bytes().all(|c| c == b'0'));
    Ok(ParsedNumeric::Finite {
        neg,
        int,
        frac: frac.to_string(),
    })
}

/// Checks that a parsed value fits `numeric(p, s)` without losing digits.
pub(crate) fn check_numeric_fits(
    v: &ParsedNumeric,
    typmod: Option<(i32, i32)>,
) -> Result<(), String> {
    match (v, typmod) {
        (_, None) => Ok(()),
        (ParsedNumeric::NaN, _) => Ok(()),
        (ParsedNumeric::PosInf | ParsedNumeric::NegInf, Some((p, s))) => {
            Err(format!("infinity does not fit numeric({p},{s})"))
        }
        (ParsedNumeric::Finite { int, frac, .. }, Some((p, s))) => {
            let frac_sig = frac.trim_end_matches('0').len() as i32;
            if frac_sig > s {
                return Err(format!(
                    "value has {frac_sig} fractional digits, numeric({p},{s}) holds {s}"
                ));
            }
            if int.len() as i32 > p - s {
                return Err(format!(
                    "value has {} integer digits, numeric({p},{s}) holds {}",
                    int.len(),
                    p - s
                ));
            }
            Ok(())
        }
    }
}

/// Encodes a parsed value as binary `numeric` (appended to `out`).
pub(crate) fn encode_numeric(v: &ParsedNumeric, out: &mut Vec<u8>) -> Result<(), String> {
    let (neg, int, frac) = match v {
        ParsedNumeric::NaN => return put_numeric_header(out, 0, 0, 0xC000, 0, &[]),
        ParsedNumeric::PosInf => return put_numeric_header(out, 0, 0, 0xD000, 0, &[]),
        ParsedNumeric::NegInf => return put_numeric_header(out, 0, 0, 0xF000, 0, &[]),
        ParsedNumeric::Finite { neg, int, frac } => (*neg, int.as_str(), frac.as_str()),
    };
    if frac.len() > 16383 || int.len() > 131_000 {
        return Err("numeric value too long".into());
    }
    let dscale = frac.len() as i16;
    // Align the integer part left-padded and the fraction right-padded to groups of four.
    let ipad = (4 - int.len() % 4) % 4;
    let fpad = (4 - frac.len() % 4) % 4;
    let mut all = Vec::with_capacity(ipad + int.len() + frac.len() + fpad);
    all.extend(std::iter::repeat_n(b'0', ipad));
    all.extend_from_slice(int.as_bytes());
    all.extend_from_slice(frac.as_bytes());
    all.extend(std::iter::repeat_n(b'0', fpad));
    let mut groups: Vec<u16> = all
        .chunks(4)
        .map(|c| c.iter().fold(0u16, |a, d| a * 10 + (d - b'0') as u16))
        .collect();
    let mut weight = ((ipad + int.len()) / 4) as i64 - 1;
    // Strip leading and trailing zero groups.
    let lead = groups.iter().take_while(|g| **g == 0).count();
    if lead == groups.len() {
        return put_numeric_header(out, 0, 0, 0, dscale, &[]);
    }
    groups.drain(..lead);
    weight -= lead as i64;
    while groups.last() == Some(&0) {
        groups.pop();
    }
    let weight = i16::try_from(weight).map_err(|_| "numeric value out of range".to_string())?;
    put_numeric_header(
        out,
        groups.len() as i16,
        weight,
        if neg { 0x4000 } else { 0 },
        dscale,
        &groups,
    )
}

fn put_numeric_header(
    out: &mut Vec<u8>,
    ndigits: i16,
    weight: i16,
    sign: u16,
    dscale: i16,
    digits: &[u16],
) -> Result<(), String> {
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(())
}

/// A binary numeric as the unscaled integer at `scale`, straight from its base-10000 digits;
/// `None` for anything but a finite value that fits exactly (NaN, infinities, digits beyond
/// `scale`, overflow, a malformed value), which the text path then reports.
pub(crate) fn numeric_to_i128(b: &[u8], scale: i8) -> Option<i128> {
    let head = |i: usize| Some(i16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]));
    let (ndigits, weight, sign) = (
        head(0)?,
        head(2)?,
        u16::from_be_bytes([*b.get(4)?, *b.get(5)?]),
    );
    let neg = match sign {
        0x0000 => false,
        0x4000 => true,
        _ => return None,
    };
    let n = usize::try_from(ndigits).ok()?;
    if b.len() != 8 + 2 * n {
        return None;
    }
    let mut acc: i128 = 0;
    for k in 0..n {
        let d = u16::from_be_bytes([b[8 + 2 * k], b[9 + 2 * k]]);
        if d > 9999 {
            return None;
        }
        // Decimal exponent of this digit group's last digit, once scaled.
        let exp = 4 * (i32::from(weight) - k as i32) + i32::from(scale);
        let term = if exp >= 0 {
            i128::from(d).checked_mul(10i128.checked_pow(u32::try_from(exp).ok()?)?)?
        } else if exp > -4 {
            let div = 10u16.pow(exp.unsigned_abs());
            if !d.is_multiple_of(div) {
                return None;
            }
            i128::from(d / div)
        } else if d == 0 {
            0
        } else {
            return None;
        };
        acc = acc.checked_add(term)?;
    }
    Some(if neg { -acc } else { acc })
}

/// The unscaled integer text of decimal text at `scale` (exact; an error if digits would
/// be lost).
pub(crate) fn scaled_integer_text(text: &str, scale: i8) -> Result<String, String> {
    let (neg, int, frac) = match parse_numeric(text)? {
        ParsedNumeric::Finite { neg, int, frac } => (neg, int, frac),
        _ => return Err(format!("`{text}` cannot be held by a decimal")),
    };
    let mut digits = int;
    if scale >= 0 {
        let s = scale as usize;
        let sig = frac.trim_end_matches('0');
        if sig.len() > s {
            return Err(format!("`{text}` has more than {s} fractional digits"));
        }
        digits.push_str(sig);
        digits.extend(std::iter::repeat_n('0', s - sig.len()));
    } else {
        let s = (-(scale as i32)) as usize;
        if frac.bytes().any(|c| c != b'0')
            || digits.len() < s && !digits.is_empty()
            || digits[digits.len().saturating_sub(s)..]
                .bytes()
                .any(|c| c != b'0')
        {
            return Err(format!("`{text}` does not fit scale {scale}"));
        }
        digits.truncate(digits.len().saturating_sub(s));
    }
    let digits = match digits.trim_start_matches('0') {
        "" => "0".to_string(),
        d => d.to_string(),
    };
    Ok(if neg && digits != "0" {
        format!("-{digits}")
    } else {
        digits
    })
}

/// Decimal text of an unscaled integer (its string) at `scale`.
pub(crate) fn decimal_text(unscaled: &str, scale: i8) -> String {
    let (neg, digits) = match unscaled.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, unscaled),
    };
    let mut s = String::with_capacity(digits.len() + 3);
    if neg {
        s.push('-');
    }
    if scale <= 0 {
        s.push_str(digits);
        if digits != "0" {
            s.extend(std::iter::repeat_n('0', (-(scale as i32)) as usize));
        }
    } else {
        let sc = scale as usize;
        if digits.len() <= sc {
            s.push_str("0.");
            s.extend(std::iter::repeat_n('0', sc - digits.len()));
            s.push_str(digits);
        } else {
            s.push_str(&digits[..digits.len() - sc]);
            s.push('.');
            s.push_str(&digits[digits.len() - sc..]);
        }
    }
    s
}

// ---------------------------------------------------------------------------------------
// decoding

/// One column's Arrow builder, fed the type's binary send format (a binary COPY field, or a
/// binary `pgoutput` tuple value).
pub(crate) enum ColBuilder {
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    F32(Float32Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Text(StringBuilder),
    Jsonb(StringBuilder),
    Uuid(StringBuilder),
    NumText(StringBuilder),
    Bytea(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    Dec128(Decimal128Builder, i8),
    Dec256(Decimal256Builder, i8),
}

impl ColBuilder {
    pub(crate) fn new(kind: &PgKind, dt: &DataType) -> Result<Self, ConnectorError> {
        let dt = dt.clone();
        Ok(match kind {
            PgKind::Int2 => Self::I16(Int16Builder::new()),
            PgKind::Int4 => Self::I32(Int32Builder::new()),
            PgKind::Int8 => Self::I64(Int64Builder::new()),
            PgKind::Float4 => Self::F32(Float32Builder::new()),
            PgKind::Float8 => Self::F64(Float64Builder::new()),
            PgKind::Bool => Self::Bool(BooleanBuilder::new()),
            PgKind::Text { .. } | PgKind::Json => Self::Text(StringBuilder::new()),
            PgKind::Jsonb => Self::Jsonb(StringBuilder::new()),
            PgKind::Uuid => Self::Uuid(StringBuilder::new()),
            PgKind::Bytea => Self::Bytea(BinaryBuilder::new()),
            PgKind::Date => Self::Date(Date32Builder::new()),
            PgKind::Timestamp | PgKind::Timestamptz => {
                Self::Ts(TimestampMicrosecondBuilder::new().with_data_type(dt))
            }
            PgKind::Time => Self::Time(Time64MicrosecondBuilder::new()),
            PgKind::Interval => Self::Interval(IntervalMonthDayNanoBuilder::new()),
            PgKind::Numeric(_) => match dt {
                DataType::Decimal128(_, s) => {
                    Self::Dec128(Decimal128Builder::new().with_data_type(dt), s)
                }
                DataType::Decimal256(_, s) => {
                    Self::Dec256(Decimal256Builder::new().with_data_type(dt), s)
                }
                _ => Self::NumText(StringBuilder::new()),
            },
        })
    }

    pub(crate) fn append_null(&mut self) {
        match self {
            Self::I16(b) => b.append_null(),
            Self::I32(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::F32(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) | Self::NumText(b) => b.append_null(),
            Self::Bytea(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Ts(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Interval(b) => b.append_null(),
            Self::Dec128(b, _) => b.append_null(),
            Self::Dec256(b, _) => b.append_null(),
        }
    }

    pub(crate) fn append(&mut self, v: &[u8]) -> Result<(), String> {
        fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
            v.try_into()
                .map_err(|_| format!("expected {N} bytes, got {}", v.len()))
        }
        use crate::utf8::text as utf8;
        match self {
            Self::I16(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Self::I32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Self::I64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Self::F32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Self::F64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Self::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Self::Text(b) => b.append_value(utf8(v)?),
            Self::Jsonb(b) => match v.split_first() {
                Some((1, rest)) => b.append_value(utf8(rest)?),
                _ => return Err("unknown jsonb binary version".into()),
            },
            Self::Uuid(b) => b.append_value(uuid_text(&fixed::<16>(v)?)),
            Self::NumText(b) => b.append_value(numeric_to_text(v)?),
            Self::Bytea(b) => b.append_value(v),
            Self::Date(b) => {
                let d = i32::from_be_bytes(fixed(v)?);
                if d == i32::MAX || d == i32::MIN {
                    return Err("date is infinity, which Arrow cannot hold".into());
                }
                let d = d
                    .checked_add(EPOCH_SHIFT_DAYS)
                    .ok_or("date out of Date32 range")?;
                b.append_value(d)
            }
            Self::Ts(b) => {
                let t = i64::from_be_bytes(fixed(v)?);
                if t == i64::MAX || t == i64::MIN {
                    return Err("timestamp is infinity, which Arrow cannot hold".into());
                }
                let t = t
                    .checked_add(EPOCH_SHIFT_US)
                    .ok_or("timestamp out of range")?;
                b.append_value(t)
            }
            Self::Time(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Self::Interval(b) => {
                let v: [u8; 16] = fixed(v)?;
                let us = i64::from_be_bytes(v[..8].try_into().expect("8 bytes"));
                let days = i32::from_be_bytes(v[8..12].try_into().expect("4 bytes"));
                let months = i32::from_be_bytes(v[12..].try_into().expect("4 bytes"));
                let ns = us
                    .checked_mul(1000)
                    .ok_or("interval microseconds overflow nanoseconds")?;
                b.append_value(IntervalMonthDayNano::new(months, days, ns))
            }
            Self::Dec128(b, s) => {
                if let Some(i) = numeric_to_i128(v, *s) {
                    b.append_value(i);
                    return Ok(());
                }
                // Not a plain fitting value: the text path says exactly what is wrong.
                let t = numeric_to_text(v)?;
                let i = scaled_integer_text(&t, *s)?;
                b.append_value(
                    i.parse::<i128>()
                        .map_err(|_| format!("{t} does not fit Decimal128"))?,
                )
            }
            Self::Dec256(b, s) => {
                let t = numeric_to_text(v)?;
                let i = scaled_integer_text(&t, *s)?;
                b.append_value(
                    i.parse::<i256>()
                        .map_err(|_| format!("{t} does not fit Decimal256"))?,
                )
            }
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Self::I16(b) => Arc::new(b.finish()),
            Self::I32(b) => Arc::new(b.finish()),
            Self::I64(b) => Arc::new(b.finish()),
            Self::F32(b) => Arc::new(b.finish()),
            Self::F64(b) => Arc::new(b.finish()),
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Text(b) | Self::Jsonb(b) | Self::Uuid(b) | Self::NumText(b) => {
                Arc::new(b.finish())
            }
            Self::Bytea(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Ts(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Interval(b) => Arc::new(b.finish()),
            Self::Dec128(b, _) => Arc::new(b.finish()),
            Self::Dec256(b, _) => Arc::new(b.finish()),
        }
    }
}

fn uuid_text(b: &[u8; 16]) -> String {
    let mut s = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn parse_uuid(t: &str) -> Result<[u8; 16], String> {
    let hex: Vec<u8> = t
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .bytes()
        .filter(|c| *c != b'-')
        .collect();
    if hex.len() != 32 {
        return Err(format!("`{t}` is not a UUID"));
    }
    let mut out = [0u8; 16];
    for i in 0..16 {
        let s = std::str::from_utf8(&hex[2 * i..2 * i + 2])
            .map_err(|_| format!("`{t}` is not a UUID"))?;
        out[i] = u8::from_str_radix(s, 16).map_err(|_| format!("`{t}` is not a UUID"))?;
    }
    Ok(out)
}

/// Incremental decoder of binary COPY output into record batches.
pub(crate) struct CopyDecoder {
    schema: SchemaRef,
    names: Vec<String>,
    cols: Vec<ColBuilder>,
    buf: Vec<u8>,
    header_done: bool,
    done: bool,
    rows: usize,
    fetch_size: usize,
    total: u64,
}

impl CopyDecoder {
    pub(crate) fn new(
        schema: SchemaRef,
        cols: &[PgCol],
        fetch_size: usize,
    ) -> Result<Self, ConnectorError> {
        if schema.fields().len() != cols.len() {
            return Err(ConnectorError::Schema(format!(
                "schema has {} fields but the read has {} columns",
                schema.fields().len(),
                cols.len()
            )));
        }
        let builders = cols
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| ColBuilder::new(&c.kind, f.data_type()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            names: cols.iter().map(|c| c.name.clone()).collect(),
            schema,
            cols: builders,
            buf: Vec::new(),
            header_done: false,
            done: false,
            rows: 0,
            fetch_size: fetch_size.max(1),
            total: 0,
        })
    }

    fn err(&self, column: Option<usize>, message: impl Into<String>) -> ConnectorError {
        ConnectorError::Value {
            column: column
                .and_then(|i| self.names.get(i).cloned())
                .unwrap_or_else(|| "(copy stream)".into()),
            message: format!("row {}: {}", self.total + 1, message.into()),
        }
    }

    /// Rows decoded so far.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// Feeds a chunk of COPY data, appending every full batch to `out`.
    pub(crate) fn feed(
        &mut self,
        chunk: &[u8],
        out: &mut Vec<RecordBatch>,
    ) -> Result<(), ConnectorError> {
        self.buf.extend_from_slice(chunk);
        let mut pos = 0usize;
        if !self.header_done {
            if self.buf.len() < 19 {
                return Ok(());
            }
            if &self.buf[..11] != SIGNATURE {
                return Err(self.err(None, "not binary COPY data (bad signature)"));
            }
            let ext = u32::from_be_bytes(self.buf[15..19].try_into().expect("4 bytes")) as usize;
            if self.buf.len() < 19 + ext {
                return Ok(());
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        let ncols = self.cols.len();
        while !self.done {
            let b = &self.buf[pos..];
            if b.len() < 2 {
                break;
            }
            let n = i16::from_be_bytes([b[0], b[1]]);
            if n == -1 {
                self.done = true;
                pos += 2;
                break;
            }
            if n as usize != ncols || n < 0 {
                return Err(self.err(None, format!("tuple has {n} fields, expected {ncols}")));
            }
            // Check that the whole tuple is there before decoding any of it.
            let mut p = 2usize;
            let mut complete = true;
            for _ in 0..ncols {
                if b.len() < p + 4 {
                    complete = false;
                    break;
                }
                let len = i32::from_be_bytes(b[p..p + 4].try_into().expect("4 bytes"));
                p += 4;
                if len == -1 {
                    continue;
                }
                if len < 0 {
                    return Err(self.err(None, format!("negative field length {len}")));
                }
                if b.len() < p + len as usize {
                    complete = false;
                    break;
                }
                p += len as usize;
            }
            if !complete {
                break;
            }
            let mut q = pos + 2;
            for i in 0..ncols {
                let len = i32::from_be_bytes(self.buf[q..q + 4].try_into().expect("4 bytes"));
                q += 4;
                if len == -1 {
                    self.cols[i].append_null();
                } else {
                    let v = &self.buf[q..q + len as usize];
                    q += len as usize;
                    if let Err(m) = self.cols[i].append(v) {
                        return Err(self.err(Some(i), m));
                    }
                }
            }
            pos = q;
            self.rows += 1;
            self.total += 1;
            if self.rows >= self.fetch_size {
                out.push(self.flush()?);
            }
        }
        self.buf.drain(..pos);
        if self.done && !self.buf.is_empty() {
            return Err(self.err(None, "data after the COPY trailer"));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<RecordBatch, ConnectorError> {
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(|c| c.finish()).collect();
        self.rows = 0;
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }

    /// Ends the stream: checks the trailer and returns the last partial batch, if any.
    pub(crate) fn finish(mut self) -> Result<Option<RecordBatch>, ConnectorError> {
        if !self.done {
            return Err(self.err(None, "COPY data ended without its trailer"));
        }
        if self.rows == 0 {
            return Ok(None);
        }
        Ok(Some(self.flush()?))
    }
}

// ---------------------------------------------------------------------------------------
// encoding

/// The binary COPY header.
pub(crate) fn put_header(out: &mut Vec<u8>) {
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// The binary COPY trailer.
pub(crate) fn put_trailer(out: &mut Vec<u8>) {
    out.extend_from_slice(&(-1i16).to_be_bytes());
}

/// Whether values of Arrow type `dt` can be written into a column of kind `kind`.
pub(crate) fn can_encode(dt: &DataType, kind: &PgKind) -> bool {
    use DataType as D;
    let int = matches!(
        dt,
        D::Int8 | D::Int16 | D::Int32 | D::Int64 | D::UInt8 | D::UInt16 | D::UInt32 | D::UInt64
    );
    match kind {
        PgKind::Int2 | PgKind::Int4 | PgKind::Int8 => int,
        PgKind::Numeric(_) => {
            int || matches!(
                dt,
                D::Decimal128(..)
                    | D::Decimal256(..)
                    | D::Float32
                    | D::Float64
                    | D::Utf8
                    | D::LargeUtf8
            )
        }
        PgKind::Float4 | PgKind::Float8 => int || matches!(dt, D::Float32 | D::Float64),
        PgKind::Text { .. } => {
            int || matches!(
                dt,
                D::Utf8
                    | D::LargeUtf8
                    | D::Decimal128(..)
                    | D::Decimal256(..)
                    | D::Float32
                    | D::Float64
                    | D::Boolean
            )
        }
        PgKind::Json | PgKind::Jsonb | PgKind::Uuid => matches!(dt, D::Utf8 | D::LargeUtf8),
        PgKind::Bytea => matches!(dt, D::Binary | D::LargeBinary),
        // MySQL's BOOLEAN is TINYINT(1): 0 and 1 go into boolean.
        PgKind::Bool => int || matches!(dt, D::Boolean),
        PgKind::Date => matches!(dt, D::Date32),
        PgKind::Timestamp | PgKind::Timestamptz => matches!(dt, D::Timestamp(..)),
        PgKind::Time => matches!(dt, D::Time64(_) | D::Time32(_)),
        PgKind::Interval => matches!(
            dt,
            D::Duration(_) | D::Interval(arrow_schema::IntervalUnit::MonthDayNano)
        ),
    }
}

fn int_value(a: &dyn Array, row: usize) -> Option<i128> {
    use DataType as D;
    Some(match a.data_type() {
        D::Int8 => a.as_primitive::<Int8Type>().value(row) as i128,
        D::Int16 => a.as_primitive::<Int16Type>().value(row) as i128,
        D::Int32 => a.as_primitive::<Int32Type>().value(row) as i128,
        D::Int64 => a.as_primitive::<Int64Type>().value(row) as i128,
        D::UInt8 => a.as_primitive::<UInt8Type>().value(row) as i128,
        D::UInt16 => a.as_primitive::<UInt16Type>().value(row) as i128,
        D::UInt32 => a.as_primitive::<UInt32Type>().value(row) as i128,
        D::UInt64 => a.as_primitive::<UInt64Type>().value(row) as i128,
        _ => return None,
    })
}

fn str_value(a: &dyn Array, row: usize) -> Option<&str> {
    match a.data_type() {
        DataType::Utf8 => Some(a.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => Some(a.as_string::<i64>().value(row)),
        _ => None,
    }
}

/// Decimal text of a numeric-ish Arrow value (integers, decimals, floats, strings).
fn numeric_text(a: &dyn Array, row: usize) -> Result<String, String> {
    if let Some(i) = int_value(a, row) {
        return Ok(i.to_string());
    }
    match a.data_type() {
        DataType::Decimal128(_, s) => Ok(decimal_text(
            &a.as_primitive::<Decimal128Type>().value(row).to_string(),
            *s,
        )),
        DataType::Decimal256(_, s) => Ok(decimal_text(
            &a.as_primitive::<Decimal256Type>().value(row).to_string(),
            *s,
        )),
        DataType::Float32 => {
            let v = a.as_primitive::<Float32Type>().value(row);
            if v.is_finite() {
                Ok(format!("{v}"))
            } else {
                Err(format!("{v} cannot be stored in numeric"))
            }
        }
        DataType::Float64 => {
            let v = a.as_primitive::<Float64Type>().value(row);
            if v.is_finite() {
                Ok(format!("{v}"))
            } else {
                Err(format!("{v} cannot be stored in numeric"))
            }
        }
        _ => str_value(a, row)
            .map(str::to_string)
            .ok_or_else(|| format!("cannot write {} as numeric", a.data_type())),
    }
}

fn check_text(s: &str, max_len: Option<usize>) -> Result<(), String> {
    if memchr::memchr(0, s.as_bytes()).is_some() {
        return Err("text contains a NUL byte, which PostgreSQL text cannot hold".into());
    }
    if let Some(n) = max_len {
        // Fast path: byte length bounds character count.
        if s.len() > n {
            let chars = s.chars().count();
            if chars > n {
                return Err(format!("{chars} characters do not fit length {n}"));
            }
        }
    }
    Ok(())
}

/// Appends the field (length word + bytes) for `a[row]` into `out`, or explains why the
/// target column cannot hold it. `out` is left with garbage on error (the caller
/// truncates to the row start).
pub(crate) fn encode_cell(
    a: &dyn Array,
    row: usize,
    col: &PgCol,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if a.is_null(row) {
        if col.not_null {
            return Err("NULL into a NOT NULL column".into());
        }
        out.extend_from_slice(&(-1i32).to_be_bytes());
        return Ok(());
    }
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    encode_value(a, row, col, out)?;
    let len = i32::try_from(out.len() - start - 4).map_err(|_| "value longer than 1 GiB")?;
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn encode_value(a: &dyn Array, row: usize, col: &PgCol, out: &mut Vec<u8>) -> Result<(), String> {
    use DataType as D;
    let dt = a.data_type();
    match &col.kind {
        PgKind::Int2 | PgKind::Int4 | PgKind::Int8 => {
            let v = int_value(a, row).ok_or_else(|| format!("cannot write {dt} as integer"))?;
            let overflow = || format!("{v} overflows {}", col.type_name);
            match col.kind {
                PgKind::Int2 => {
                    out.extend_from_slice(&i16::try_from(v).map_err(|_| overflow())?.to_be_bytes())
                }
                PgKind::Int4 => {
                    out.extend_from_slice(&i32::try_from(v).map_err(|_| overflow())?.to_be_bytes())
                }
                _ => {
                    out.extend_from_slice(&i64::try_from(v).map_err(|_| overflow())?.to_be_bytes())
                }
            }
        }
        PgKind::Float4 | PgKind::Float8 => {
            let v: f64 = match dt {
                D::Float32 => {
                    let v = a.as_primitive::<Float32Type>().value(row);
                    if matches!(col.kind, PgKind::Float4) {
                        out.extend_from_slice(&v.to_be_bytes());
                        return Ok(());
                    }
                    v as f64
                }
                D::Float64 => a.as_primitive::<Float64Type>().value(row),
                _ => int_value(a, row).ok_or_else(|| format!("cannot write {dt} as float"))? as f64,
            };
            if matches!(col.kind, PgKind::Float4) {
                out.extend_from_slice(&(v as f32).to_be_bytes());
            } else {
                out.extend_from_slice(&v.to_be_bytes());
            }
        }
        PgKind::Numeric(typmod) => {
            let t = numeric_text(a, row)?;
            let p = parse_numeric(&t)?;
            check_numeric_fits(&p, *typmod)?;
            encode_numeric(&p, out)?;
        }
        PgKind::Text { max_len } => {
            let owned;
            let s = match str_value(a, row) {
                Some(s) => s,
                None => {
                    owned = match dt {
                        D::Boolean => a.as_boolean().value(row).to_string(),
                        _ => numeric_text(a, row)?,
                    };
                    &owned
                }
            };
            check_text(s, *max_len)?;
            out.extend_from_slice(s.as_bytes());
        }
        PgKind::Json | PgKind::Jsonb => {
            let s = str_value(a, row).ok_or_else(|| format!("cannot write {dt} as json"))?;
            check_text(s, None)?;
            serde_json::from_str::<serde::de::IgnoredAny>(s)
                .map_err(|e| format!("not valid JSON: {e}"))?;
            if matches!(col.kind, PgKind::Jsonb) {
                if s.contains("\\u0000") && json_has_nul(s) {
                    return Err("jsonb cannot hold \\u0000 in a string".into());
                }
                out.push(1);
            }
            out.extend_from_slice(s.as_bytes());
        }
        PgKind::Uuid => {
            let s = str_value(a, row).ok_or_else(|| format!("cannot write {dt} as uuid"))?;
            out.extend_from_slice(&parse_uuid(s)?);
        }
        PgKind::Bytea => match dt {
            D::Binary => out.extend_from_slice(a.as_binary::<i32>().value(row)),
            D::LargeBinary => out.extend_from_slice(a.as_binary::<i64>().value(row)),
            _ => return Err(format!("cannot write {dt} as bytea")),
        },
        PgKind::Bool => match dt {
            D::Boolean => out.push(a.as_boolean().value(row) as u8),
            _ => match int_value(a, row) {
                Some(v @ (0 | 1)) => out.push(v as u8),
                Some(v) => return Err(format!("{v} is not a boolean (only 0 and 1 are)")),
                None => return Err(format!("cannot write {dt} as boolean")),
            },
        },
        PgKind::Date => match dt {
            D::Date32 => {
                let d = a.as_primitive::<Date32Type>().value(row) as i64 - EPOCH_SHIFT_DAYS as i64;
                if !(PG_MIN_DATE..PG_END_DATE).contains(&d) {
                    return Err("date outside PostgreSQL's range".into());
                }
                out.extend_from_slice(&(d as i32).to_be_bytes());
            }
            _ => return Err(format!("cannot write {dt} as date")),
        },
        PgKind::Timestamp | PgKind::Timestamptz => {
            let us: Option<i64> = match dt {
                D::Timestamp(TimeUnit::Second, _) => a
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .checked_mul(1_000_000),
                D::Timestamp(TimeUnit::Millisecond, _) => a
                    .as_primitive::<TimestampMillisecondType>()
                    .value(row)
                    .checked_mul(1000),
                D::Timestamp(TimeUnit::Microsecond, _) => {
                    Some(a.as_primitive::<TimestampMicrosecondType>().value(row))
                }
                D::Timestamp(TimeUnit::Nanosecond, _) => Some(
                    a.as_primitive::<TimestampNanosecondType>()
                        .value(row)
                        .div_euclid(1000),
                ),
                _ => return Err(format!("cannot write {dt} as timestamp")),
            };
            let pg = us
                .map(|u| u as i128 - EPOCH_SHIFT_US as i128)
                .filter(|u| (PG_MIN_TS as i128..PG_END_TS as i128).contains(u))
                .ok_or("timestamp outside PostgreSQL's range")?;
            out.extend_from_slice(&(pg as i64).to_be_bytes());
        }
        PgKind::Time => {
            let us: i64 = match dt {
                D::Time64(TimeUnit::Microsecond) => {
                    a.as_primitive::<Time64MicrosecondType>().value(row)
                }
                D::Time64(_) => a
                    .as_primitive::<Time64NanosecondType>()
                    .value(row)
                    .div_euclid(1000),
                D::Time32(TimeUnit::Second) => {
                    a.as_primitive::<Time32SecondType>().value(row) as i64 * 1_000_000
                }
                D::Time32(_) => a.as_primitive::<Time32MillisecondType>().value(row) as i64 * 1000,
                _ => return Err(format!("cannot write {dt} as time")),
            };
            if !(0..=USECS_PER_DAY).contains(&us) {
                return Err(format!("{us} microseconds is outside a day"));
            }
            out.extend_from_slice(&us.to_be_bytes());
        }
        PgKind::Interval => {
            let (us, days, months): (i64, i32, i32) = match dt {
                D::Duration(u) => {
                    let v = match u {
                        TimeUnit::Second => a
                            .as_primitive::<DurationSecondType>()
                            .value(row)
                            .checked_mul(1_000_000),
                        TimeUnit::Millisecond => a
                            .as_primitive::<DurationMillisecondType>()
                            .value(row)
                            .checked_mul(1000),
                        TimeUnit::Microsecond => {
                            Some(a.as_primitive::<DurationMicrosecondType>().value(row))
                        }
                        TimeUnit::Nanosecond => {
                            let n = a.as_primitive::<DurationNanosecondType>().value(row);
                            if n % 1000 != 0 {
                                return Err("sub-microsecond duration".into());
                            }
                            Some(n / 1000)
                        }
                    };
                    (v.ok_or("duration overflows interval")?, 0, 0)
                }
                D::Interval(arrow_schema::IntervalUnit::MonthDayNano) => {
                    let v = a.as_primitive::<IntervalMonthDayNanoType>().value(row);
                    if v.nanoseconds % 1000 != 0 {
                        return Err("sub-microsecond interval".into());
                    }
                    (v.nanoseconds / 1000, v.days, v.months)
                }
                _ => return Err(format!("cannot write {dt} as interval")),
            };
            out.extend_from_slice(&us.to_be_bytes());
            out.extend_from_slice(&days.to_be_bytes());
            out.extend_from_slice(&months.to_be_bytes());
        }
    }
    Ok(())
}

/// Whether a JSON text holds a NUL character in a string or key (jsonb rejects it).
fn json_has_nul(s: &str) -> bool {
    fn walk(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(a) => a.iter().any(walk),
            serde_json::Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || walk(v)),
            _ => false,
        }
    }
    serde_json::from_str::<serde_json::Value>(s).is_ok_and(|v| walk(&v))
}

/// One cell as JSON, for dirty records.
pub(crate) fn cell_json(a: &dyn Array, row: usize) -> serde_json::Value {
    use serde_json::Value as J;
    if a.is_null(row) {
        return J::Null;
    }
    if let Some(i) = int_value(a, row) {
        return match i64::try_from(i) {
            Ok(v) => J::from(v),
            Err(_) => J::from(i as u64),
        };
    }
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 => J::from(str_value(a, row).unwrap_or_default()),
        DataType::Boolean => J::from(a.as_boolean().value(row)),
        DataType::Float32 => J::from(a.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => J::from(a.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            numeric_text(a, row).map(J::from).unwrap_or(J::Null)
        }
        DataType::Binary => J::from(hex(a.as_binary::<i32>().value(row))),
        DataType::LargeBinary => J::from(hex(a.as_binary::<i64>().value(row))),
        DataType::Date32 => J::from(a.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            J::from(a.as_primitive::<TimestampMicrosecondType>().value(row))
        }
        DataType::Time64(TimeUnit::Microsecond) => {
            J::from(a.as_primitive::<Time64MicrosecondType>().value(row))
        }
        DataType::Duration(TimeUnit::Microsecond) => {
            J::from(a.as_primitive::<DurationMicrosecondType>().value(row))
        }
        other => J::from(format!("<{other}>")),
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(2 + 2 * b.len());
    s.push_str("\\x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(t: &str) -> String {
        let mut b = Vec::new();
        encode_numeric(&parse_numeric(t).unwrap(), &mut b).unwrap();
        numeric_to_text(&b).unwrap()
    }

    #[test]
    fn numeric_text_round_trips() {
        for t in [
            "0",
            "1",
            "-1",
            "10000",
            "12345.6789",
            "0.0000000001",
            "-0.5",
            "99999999999999999999999999.9999999999",
            "123456789012345678901234567890123456789012345678901234567890",
            "NaN",
            "Infinity",
            "-Infinity",
            "0.00",
            "100.10",
            "1e",
        ] {
            if t == "1e" {
                assert!(parse_numeric(t).is_err());
                continue;
            }
            assert_eq!(rt(t), t, "{t}");
        }
        assert_eq!(rt("-0.00"), "0.00");
        assert_eq!(rt("007.50"), "7.50");
    }

    #[test]
    fn numeric_to_i128_agrees_with_the_text_path() {
        let values = [
            "0",
            "1",
            "-1",
            "10000",
            "12345.6789",
            "0.0000000001",
            "-0.5",
            "100.10",
            "0.00",
            "99999999999999999999999999.9999999999",
            "170141183460469231731687303715884105727",
            "170141183460469231731687303715884105728",
            "-170141183460469231731687303715884105727",
            "123456789012345678901234567890123456789012345678901234567890",
            "NaN",
            "Infinity",
            "-Infinity",
            "1.23456",
            "98765432.1",
            "5000",
            "-0.0001",
            "42.4200",
        ];
        for t in values {
            let mut b = Vec::new();
            encode_numeric(&parse_numeric(t).unwrap(), &mut b).unwrap();
            for scale in [-4i8, -2, 0, 1, 2, 4, 6, 10, 20, 38] {
                let slow = numeric_to_text(&b)
                    .and_then(|t| scaled_integer_text(&t, scale))
                    .ok()
                    .and_then(|i| i.parse::<i128>().ok());
                assert_eq!(numeric_to_i128(&b, scale), slow, "{t} at scale {scale}");
            }
        }
        // Malformed: short, unknown sign, a digit beyond 9999.
        assert_eq!(numeric_to_i128(&[0, 1, 0, 0], 0), None);
        assert_eq!(numeric_to_i128(&[0, 0, 0, 0, 0x12, 0x34, 0, 0], 0), None);
        assert_eq!(
            numeric_to_i128(&[0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10], 0),
            None
        );
    }

    #[test]
    fn scaled_and_fits() {
        assert_eq!(scaled_integer_text("1.5", 3).unwrap(), "1500");
        assert_eq!(scaled_integer_text("-0.001", 3).unwrap(), "-1");
        assert!(scaled_integer_text("0.0001", 3).is_err());
        assert_eq!(decimal_text("-1", 3), "-0.001");
        assert_eq!(decimal_text("12345", 2), "123.45");
        assert_eq!(decimal_text("5", 0), "5");
        let f = |t| check_numeric_fits(&parse_numeric(t).unwrap(), Some((5, 2)));
        assert!(f("999.99").is_ok());
        assert!(f("1000").is_err());
        assert!(f("1.234").is_err());
        assert!(f("1.230").is_ok());
    }

    #[test]
    fn malformed_numeric_is_an_error() {
        assert!(numeric_to_text(&[0, 1, 0, 0]).is_err());
        assert!(numeric_to_text(&[0, 2, 0, 0, 0, 0, 0, 0, 0, 1]).is_err());
        assert!(numeric_to_text(&[0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff]).is_err());
        assert!(numeric_to_text(&[0, 0, 0, 0, 0x12, 0x34, 0, 0]).is_err());
    }

    fn sample() -> (SchemaRef, Vec<PgCol>, RecordBatch) {
        use arrow_array::{
            BinaryArray, Decimal128Array, Int32Array, IntervalMonthDayNanoArray, StringArray,
            TimestampMicrosecondArray,
        };
        let kinds = [
            PgKind::Int4,
            PgKind::Text { max_len: None },
            PgKind::Numeric(Some((10, 2))),
            PgKind::Timestamptz,
            PgKind::Bytea,
            PgKind::Interval,
            PgKind::Uuid,
            PgKind::Jsonb,
        ];
        let cols: Vec<PgCol> = kinds
            .into_iter()
            .enumerate()
            .map(|(i, kind)| PgCol {
                name: format!("c{i}"),
                kind,
                not_null: false,
                type_name: "t".into(),
                type_id: None,
            })
            .collect();
        let schema: SchemaRef = Arc::new(arrow_schema::Schema::new(
            cols.iter().map(PgCol::field).collect::<Vec<_>>(),
        ));
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![Some(1), None, Some(i32::MIN)])),
            Arc::new(StringArray::from(vec![Some("a\tb"), Some(""), None])),
            Arc::new(
                Decimal128Array::from(vec![Some(-12345), Some(0), None])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(0), Some(-1), None]).with_timezone("UTC"),
            ),
            Arc::new(BinaryArray::from(vec![
                Some(&[0u8, 255][..]),
                None,
                Some(&[][..]),
            ])),
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(1, -2, 3000)),
                None,
                None,
            ])),
            Arc::new(StringArray::from(vec![
                Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
                None,
                None,
            ])),
            Arc::new(StringArray::from(vec![Some("{\"a\":1}"), Some("[]"), None])),
        ];
        let batch = RecordBatch::try_new(schema.clone(), arrays).unwrap();
        (schema, cols, batch)
    }

    fn encode(cols: &[PgCol], batch: &RecordBatch) -> Vec<u8> {
        let mut buf = Vec::new();
        put_header(&mut buf);
        for row in 0..batch.num_rows() {
            buf.extend_from_slice(&(cols.len() as i16).to_be_bytes());
            for (i, c) in cols.iter().enumerate() {
                encode_cell(batch.column(i).as_ref(), row, c, &mut buf).unwrap();
            }
        }
        put_trailer(&mut buf);
        buf
    }

    fn decode(
        schema: &SchemaRef,
        cols: &[PgCol],
        bytes: &[u8],
        chunk: usize,
    ) -> Result<Vec<RecordBatch>, ConnectorError> {
        let mut d = CopyDecoder::new(schema.clone(), cols, 2)?;
        let mut out = Vec::new();
        for c in bytes.chunks(chunk.max(1)) {
            d.feed(c, &mut out)?;
        }
        out.extend(d.finish()?);
        Ok(out)
    }

    #[test]
    fn encoded_tuples_decode_back_in_any_chunking() {
        let (schema, cols, batch) = sample();
        let bytes = encode(&cols, &batch);
        for chunk in [1, 3, 7, 19, bytes.len()] {
            let got = decode(&schema, &cols, &bytes, chunk).unwrap();
            assert_eq!(got.len(), 2, "fetch size 2 over 3 rows");
            assert_eq!(got[0], batch.slice(0, 2));
            assert_eq!(got[1], batch.slice(2, 1));
        }
    }

    #[test]
    fn truncated_or_corrupted_input_is_an_error_not_a_panic() {
        let (schema, cols, batch) = sample();
        let bytes = encode(&cols, &batch);
        for n in 0..bytes.len() {
            assert!(
                decode(&schema, &cols, &bytes[..n], 5).is_err(),
                "prefix {n}"
            );
        }
        for i in 0..bytes.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = decode(&schema, &cols, &b, 4);
            }
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode(&schema, &cols, &extra, 64).is_err());
    }
}
