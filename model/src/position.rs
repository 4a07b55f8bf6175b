//! Positions: where a split (and, next, a change stream) stands, in the source's own order.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Most values in one position (columns of a composite key).
pub const MAX_POSITION_VALUES: usize = 32;
/// Longest text or binary key value, in bytes. Longer than any index key PostgreSQL
/// (about 2,700 bytes) or InnoDB (3,072 bytes) can hold.
pub const MAX_TEXT_KEY_LEN: usize = 8 * 1024;

/// A point in a source's read order: the values of the split's order columns
/// ([`SplitOrder`](crate::SplitOrder)) at the last row committed. A resumed split reads only
/// rows after it, compared by the source database in its own collation, so the engine never
/// compares two positions itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<KeyValue>", into = "Vec<KeyValue>")]
pub struct Position(Vec<KeyValue>);

/// One value of a key, as a source orders it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WireValue", into = "WireValue")]
pub enum KeyValue {
    /// Any signed or unsigned integer up to 64 bits (and then some).
    Int(i128),
    /// An exact decimal number: `-?[0-9]+(\.[0-9]+)?`, written as a numeric literal.
    Num(String),
    /// Text, and dates and times written as text the database casts back
    /// (`2024-06-20 10:00:00.000001`).
    Text(String),
    /// Binary.
    Bytes(Vec<u8>),
}

/// A position or key value that is not well formed (it came from a peer or a stored
/// checkpoint).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// A position without values.
    #[error("a position needs at least one value")]
    Empty,
    /// More values than [`MAX_POSITION_VALUES`].
    #[error("a position has {0} values, more than {MAX_POSITION_VALUES}")]
    TooManyValues(usize),
    /// A text or binary value longer than [`MAX_TEXT_KEY_LEN`].
    #[error("a key value of {0} bytes is longer than {MAX_TEXT_KEY_LEN}")]
    TooLong(usize),
    /// An integer that does not parse.
    #[error("`{0}` is not an integer")]
    BadInt(String),
    /// A decimal that is not `-?digits[.digits]`.
    #[error("`{0}` is not a decimal number")]
    BadNum(String),
    /// Binary that is not hex.
    #[error("binary key value is not hex")]
    BadBytes,
    /// A text value holding a NUL character, which no database key holds.
    #[error("a text key value holds a NUL character")]
    Nul,
    /// A stored position that is neither an integer nor a position's JSON.
    #[error("`{0}` is not a stored position")]
    BadStored(String),
}

impl Position {
    /// A position of `values` (one per order column).
    pub fn new(values: Vec<KeyValue>) -> Result<Self, PositionError> {
        Self::try_from(values)
    }

    /// The position of a single integer key.
    pub fn int(v: i128) -> Self {
        Self(vec![KeyValue::Int(v)])
    }

    /// The values, one per order column.
    pub fn values(&self) -> &[KeyValue] {
        &self.0
    }

    /// The form a checkpoint table stores: a single integer as its digits (as checkpoints
    /// always stored them), anything else as JSON.
    pub fn to_stored(&self) -> String {
        match self.0.as_slice() {
            [KeyValue::Int(v)] => v.to_string(),
            _ => serde_json::to_string(self).unwrap_or_default(),
        }
    }

    /// Reads [`to_stored`](Self::to_stored)'s form back.
    pub fn from_stored(s: &str) -> Result<Self, PositionError> {
        if let Ok(v) = s.trim().parse::<i128>() {
            return Ok(Self::int(v));
        }
        serde_json::from_str(s).map_err(|_| PositionError::BadStored(shorten(s)))
    }
}

impl TryFrom<Vec<KeyValue>> for Position {
    type Error = PositionError;
    fn try_from(values: Vec<KeyValue>) -> Result<Self, PositionError> {
        match values.len() {
            0 => Err(PositionError::Empty),
            n if n > MAX_POSITION_VALUES => Err(PositionError::TooManyValues(n)),
            _ => Ok(Self(values)),
        }
    }
}

impl From<Position> for Vec<KeyValue> {
    fn from(p: Position) -> Self {
        p.0
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match v {
                KeyValue::Int(n) => write!(f, "{n}")?,
                KeyValue::Num(n) => f.write_str(n)?,
                KeyValue::Text(t) => write!(f, "{t:?}")?,
                KeyValue::Bytes(b) => write!(f, "0x{}", hex::encode(b))?,
            }
        }
        f.write_str(")")
    }
}

impl KeyValue {
    /// A decimal value, checked.
    pub fn num(text: impl Into<String>) -> Result<Self, PositionError> {
        let text = text.into();
        check_num(&text)?;
        Ok(Self::Num(text))
    }

    /// A text value, checked.
    pub fn text(text: impl Into<String>) -> Result<Self, PositionError> {
        let text = text.into();
        check_text(&text)?;
        Ok(Self::Text(text))
    }

    /// A binary value, checked.
    pub fn bytes(b: Vec<u8>) -> Result<Self, PositionError> {
        if b.len() > MAX_TEXT_KEY_LEN {
            return Err(PositionError::TooLong(b.len()));
        }
        Ok(Self::Bytes(b))
    }
}

fn check_num(s: &str) -> Result<(), PositionError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if s.len() > 200 || !all_digits(int) || !frac.is_none_or(all_digits) {
        return Err(PositionError::BadNum(shorten(s)));
    }
    Ok(())
}

fn check_text(s: &str) -> Result<(), PositionError> {
    if s.len() > MAX_TEXT_KEY_LEN {
        return Err(PositionError::TooLong(s.len()));
    }
    if s.contains('\0') {
        return Err(PositionError::Nul);
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A key value on the wire: `{"int": "-5"}` (integers as strings: JSON numbers lose
/// 64-bit precision in many readers), `{"num": "1.50"}`, `{"text": "a"}`,
/// `{"bytes": "00ff"}`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
enum WireValue {
    Int(String),
    Num(String),
    Text(String),
    Bytes(String),
}

impl TryFrom<WireValue> for KeyValue {
    type Error = PositionError;
    fn try_from(w: WireValue) -> Result<Self, PositionError> {
        match w {
            WireValue::Int(s) => s
                .parse()
                .map(KeyValue::Int)
                .map_err(|_| PositionError::BadInt(shorten(&s))),
            WireValue::Num(s) => KeyValue::num(s),
            WireValue::Text(s) => KeyValue::text(s),
            WireValue::Bytes(s) => {
                if s.len() > 2 * MAX_TEXT_KEY_LEN {
                    return Err(PositionError::TooLong(s.len() / 2));
                }
                KeyValue::bytes(hex::decode(s).map_err(|_| PositionError::BadBytes)?)
            }
        }
    }
}

impl From<KeyValue> for WireValue {
    fn from(v: KeyValue) -> Self {
        match v {
            KeyValue::Int(n) => WireValue::Int(n.to_string()),
            KeyValue::Num(s) => WireValue::Num(s),
            KeyValue::Text(s) => WireValue::Text(s),
            KeyValue::Bytes(b) => WireValue::Bytes(hex::encode(b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_store_integers_as_before() {
        let p = Position::new(vec![
            KeyValue::Int(i128::from(u64::MAX)),
            KeyValue::num("-12.50").unwrap(),
            KeyValue::text("O'Brien \\ 北京").unwrap(),
            KeyValue::bytes(vec![0, 255]).unwrap(),
        ])
        .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(
            json,
            r#"[{"int":"18446744073709551615"},{"num":"-12.50"},{"text":"O'Brien \\ 北京"},{"bytes":"00ff"}]"#
        );
        assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        assert_eq!(Position::from_stored(&p.to_stored()).unwrap(), p);
        assert_eq!(Position::int(-3).to_stored(), "-3");
        assert_eq!(Position::from_stored("42").unwrap(), Position::int(42));
        assert!(Position::from_stored("x").is_err());
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            r#"[]"#,
            r#"[{"int":"1e3"}]"#,
            r#"[{"num":"1; drop"}]"#,
            r#"[{"num":"1."}]"#,
            r#"[{"num":".5"}]"#,
            r#"[{"num":"--1"}]"#,
            r#"[{"bytes":"zz"}]"#,
            r#"[{"text":"a\u0000b"}]"#,
            r#"[{"date":"2024-01-01"}]"#,
            r#"[{"int":"1","text":"a"}]"#,
        ] {
            assert!(serde_json::from_str::<Position>(bad).is_err(), "{bad}");
        }
        let many = format!("[{}]", vec![r#"{"int":"1"}"#; 33].join(","));
        assert!(serde_json::from_str::<Position>(&many).is_err());
        let long = format!(r#"[{{"text":"{}"}}]"#, "a".repeat(MAX_TEXT_KEY_LEN + 1));
        assert!(serde_json::from_str::<Position>(&long).is_err());
        assert!(KeyValue::num("0.000").is_ok() && KeyValue::num("-7").is_ok());
    }
}
