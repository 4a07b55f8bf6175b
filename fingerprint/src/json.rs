//! A JSON document's hash, without building it. Object members are combined
//! order-independently, so key order and spacing do not matter; arrays keep their order.
//! Numbers compare by value: an integral number is an integer whether written `1` or `1.0`.
//!
//! A verification hashes every JSON value of every row, so this walks the text itself
//! instead of going through serde's visitor (a fifth less time per document), and takes
//! serde_json's answer wherever the answer is subtle: escaped strings, and numbers other
//! than plain integers and plain decimals. Its hashes must equal those of the visitor it
//! replaced, which an agent or broker of an earlier release still computes; the tests keep
//! that visitor as the oracle.

use twox_hash::XxHash3_64;

/// serde_json's nesting limit: a document it refuses is not JSON here either.
const MAX_DEPTH: u32 = 127;

/// The hash of JSON text `s`, or `None` when it is not JSON.
pub fn hash(s: &str) -> Option<u64> {
    let mut p = Walk {
        b: s.as_bytes(),
        i: 0,
        depth: 0,
    };
    let h = p.value()?;
    p.ws();
    (p.i == p.b.len()).then_some(h)
}

/// The tag is the seed: no buffer per token.
fn tagged(tag: u8, bytes: &[u8]) -> u64 {
    XxHash3_64::oneshot_with_seed(u64::from(tag), bytes)
}

fn integer(v: i128) -> u64 {
    tagged(b'i', &v.to_le_bytes())
}

fn float(v: f64) -> u64 {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        return integer(v as i128);
    }
    tagged(b'f', &v.to_bits().to_le_bytes())
}

fn pair(a: u64, b: u64) -> u64 {
    let mut x = [0u8; 16];
    x[..8].copy_from_slice(&a.to_le_bytes());
    x[8..].copy_from_slice(&b.to_le_bytes());
    XxHash3_64::oneshot(&x)
}

fn object(sum: u64, n: u64) -> u64 {
    let mut b = [0u8; 17];
    b[0] = b'o';
    b[1..9].copy_from_slice(&sum.to_le_bytes());
    b[9..].copy_from_slice(&n.to_le_bytes());
    XxHash3_64::oneshot(&b)
}

/// `-?INT.FRAC` of at most 19 digits as serde_json reads it (without its
/// `float_roundtrip` feature): the digits as an integer, divided by a power of ten.
fn plain_decimal(token: &[u8]) -> Option<f64> {
    const POW10: [f64; 20] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
        1e17, 1e18, 1e19,
    ];
    let (neg, t) = match token.split_first()? {
        (b'-', rest) => (true, rest),
        _ => (false, token),
    };
    let point = t.iter().position(|&c| c == b'.')?;
    let (int, frac) = (&t[..point], &t[point + 1..]);
    let plain = !int.is_empty()
        && !frac.is_empty()
        && int.len() + frac.len() <= 19
        && (int[0] != b'0' || int.len() == 1)
        && int.iter().chain(frac).all(u8::is_ascii_digit);
    if !plain {
        return None;
    }
    let m = int
        .iter()
        .chain(frac)
        .fold(0u64, |m, &c| m * 10 + u64::from(c - b'0'));
    let f = m as f64 / POW10[frac.len()];
    Some(if neg { -f } else { f })
}

/// A cursor over the document's bytes.
struct Walk<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
}

impl Walk<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    fn value(&mut self) -> Option<u64> {
        match self.peek()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string(|s| tagged(b's', s)),
            b't' => self.literal(b"true").map(|_| tagged(b'b', &[1])),
            b'f' => self.literal(b"false").map(|_| tagged(b'b', &[0])),
            b'n' => self.literal(b"null").map(|_| tagged(b'n', &[])),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn enter(&mut self) -> Option<()> {
        self.depth += 1;
        self.i += 1;
        (self.depth <= MAX_DEPTH).then_some(())
    }

    fn object(&mut self) -> Option<u64> {
        self.enter()?;
        let (mut sum, mut n) = (0u64, 0u64);
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                if self.peek()? != b'"' {
                    return None;
                }
                let k = self.string(|s| tagged(b'k', s))?;
                if self.peek()? != b':' {
                    return None;
                }
                self.i += 1;
                let v = self.value()?;
                sum = sum.wrapping_add(pair(k, v));
                n += 1;
                match self.peek()? {
                    b',' => self.i += 1,
                    b'}' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(object(sum, n))
    }

    fn array(&mut self) -> Option<u64> {
        // Chained, so order counts: each element's hash folded into the ones before.
        self.enter()?;
        let mut acc = tagged(b'a', &[]);
        if self.peek()? == b']' {
            self.i += 1;
        } else {
            loop {
                acc = pair(acc, self.value()?);
                match self.peek()? {
                    b',' => self.i += 1,
                    b']' => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(acc)
    }

    /// The string at the cursor (its opening quote), unescaped, handed to `f` (as bytes of
    /// UTF-8: the document is a `&str` and a quote is ASCII).
    fn string(&mut self, f: impl FnOnce(&[u8]) -> u64) -> Option<u64> {
        let start = self.i + 1;
        let mut j = start;
        loop {
            match *self.b.get(j)? {
                b'"' => {
                    self.i = j + 1;
                    return Some(f(&self.b[start..j]));
                }
                b'\\' => break,
                c if c < 0x20 => return None,
                _ => j += 1,
            }
        }
        // Escapes: find the closing quote, and let serde_json unescape (surrogate pairs,
        // bad escapes) exactly as it always has.
        while j < self.b.len() {
            match self.b[j] {
                b'\\' => j += 2,
                b'"' => break,
                _ => j += 1,
            }
        }
        let token = std::str::from_utf8(self.b.get(self.i..=j)?).ok()?;
        let s: String = serde_json::from_str(token).ok()?;
        self.i = j + 1;
        Some(f(s.as_bytes()))
    }

    fn number(&mut self) -> Option<u64> {
        let start = self.i;
        let mut j = start;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.b.get(j) {
            j += 1;
        }
        let token = &self.b[start..j];
        self.i = j;
        let digits = token.strip_prefix(b"-").unwrap_or(token);
        // A plain integer of up to 18 digits, without a leading zero: exactly an integer
        // to serde_json as well.
        if !digits.is_empty()
            && digits.len() <= 18
            && digits.iter().all(u8::is_ascii_digit)
            && (digits[0] != b'0' || digits.len() == 1)
        {
            let v = digits
                .iter()
                .fold(0i128, |v, &c| v * 10 + i128::from(c - b'0'));
            return Some(integer(if digits.len() < token.len() { -v } else { v }));
        }
        if let Some(f) = plain_decimal(token) {
            return Some(float(f));
        }
        let token = std::str::from_utf8(token).ok()?;
        let n: serde_json::Number = serde_json::from_str(token).ok()?;
        if let Some(v) = n.as_u64() {
            return Some(integer(i128::from(v)));
        }
        if let Some(v) = n.as_i64() {
            return Some(integer(i128::from(v)));
        }
        n.as_f64().map(float)
    }
}

/// The serde visitor this replaced, as the oracle the walk must agree with.
#[cfg(test)]
mod oracle {
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
    use twox_hash::XxHash3_64;

    pub fn hash(s: &str) -> Option<u64> {
        let mut de = serde_json::Deserializer::from_str(s);
        let h = Node.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(h)
    }

    fn tagged(tag: u8, bytes: &[u8]) -> u64 {
        XxHash3_64::oneshot_with_seed(u64::from(tag), bytes)
    }

    fn integer(v: i128) -> u64 {
        tagged(b'i', &v.to_le_bytes())
    }

    /// One JSON value.
    struct Node;

    impl<'de> DeserializeSeed<'de> for Node {
        type Value = u64;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
            d.deserialize_any(Node)
        }
    }

    impl<'de> Visitor<'de> for Node {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON value")
        }

        fn visit_unit<E>(self) -> Result<u64, E> {
            Ok(tagged(b'n', &[]))
        }

        fn visit_bool<E>(self, v: bool) -> Result<u64, E> {
            Ok(tagged(b'b', &[u8::from(v)]))
        }

        fn visit_i64<E>(self, v: i64) -> Result<u64, E> {
            Ok(integer(i128::from(v)))
        }

        fn visit_u64<E>(self, v: u64) -> Result<u64, E> {
            Ok(integer(i128::from(v)))
        }

        fn visit_f64<E>(self, v: f64) -> Result<u64, E> {
            if v.fract() == 0.0 && v.abs() < 9.0e15 {
                return Ok(integer(v as i128));
            }
            Ok(tagged(b'f', &v.to_bits().to_le_bytes()))
        }

        fn visit_str<E>(self, v: &str) -> Result<u64, E> {
            Ok(tagged(b's', v.as_bytes()))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<u64, A::Error> {
            // Chained, so order counts: each element's hash folded into the ones before.
            let mut acc = tagged(b'a', &[]);
            while let Some(h) = seq.next_element_seed(Node)? {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&acc.to_le_bytes());
                b[8..].copy_from_slice(&h.to_le_bytes());
                acc = XxHash3_64::oneshot(&b);
            }
            Ok(acc)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
            let (mut sum, mut n) = (0u64, 0u64);
            while let Some(k) = map.next_key_seed(Key)? {
                let v = map.next_value_seed(Node)?;
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&k.to_le_bytes());
                b[8..].copy_from_slice(&v.to_le_bytes());
                sum = sum.wrapping_add(XxHash3_64::oneshot(&b));
                n += 1;
            }
            let mut b = [0u8; 17];
            b[0] = b'o';
            b[1..9].copy_from_slice(&sum.to_le_bytes());
            b[9..].copy_from_slice(&n.to_le_bytes());
            Ok(XxHash3_64::oneshot(&b))
        }
    }

    /// An object member's name.
    struct Key;

    impl<'de> DeserializeSeed<'de> for Key {
        type Value = u64;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<u64, D::Error> {
            d.deserialize_str(Key)
        }
    }

    impl<'de> Visitor<'de> for Key {
        type Value = u64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a member name")
        }

        fn visit_str<E>(self, v: &str) -> Result<u64, E> {
            Ok(tagged(b'k', v.as_bytes()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{hash, oracle};

    /// Both, and that they agree.
    fn same(doc: &str) -> Option<u64> {
        let (a, b) = (hash(doc), oracle::hash(doc));
        assert_eq!(a, b, "walk and serde visitor disagree on {doc:?}");
        a
    }

    /// Appends a random JSON value to `out`, now and then with a flaw.
    fn generate(seed: &mut u64, depth: usize, out: &mut String) {
        fn next(seed: &mut u64, m: u64) -> u64 {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed % m
        }
        let ws = [" ", "", "", "\n", "\t "];
        let atoms = [
            "0",
            "-7",
            "3.25",
            "1e2",
            "-0.5E-3",
            "true",
            "false",
            "null",
            "\"x\"",
            "\"\\n\"",
            "\"é 急\"",
            "12345678901234567890",
            "\"\\ud83d\\ude00\"",
            "-0",
            "1.0",
            "\"\"",
            "0.1",
            "99.9",
            "-12345678901234567",
        ];
        let flaws = ["01", "\"\\q\"", "tru", ",", "1.", "\"a\tb\""];
        out.push_str(ws[next(seed, ws.len() as u64) as usize]);
        match next(seed, if depth > 4 { 2 } else { 4 }) {
            0 | 1 if next(seed, 200) == 0 => {
                out.push_str(flaws[next(seed, flaws.len() as u64) as usize])
            }
            0 | 1 => out.push_str(atoms[next(seed, atoms.len() as u64) as usize]),
            2 => {
                out.push('[');
                for i in 0..next(seed, 4) {
                    if i > 0 {
                        out.push(',');
                    }
                    generate(seed, depth + 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..next(seed, 4) {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&format!("\"k{}\":", next(seed, 3)));
                    generate(seed, depth + 1, out);
                }
                out.push('}');
            }
        }
    }

    #[test]
    fn the_walk_hashes_as_the_serde_visitor_did() {
        let nested = |n: usize, open: &str, close: &str| open.repeat(n) + &close.repeat(n);
        let mut docs: Vec<String> = [
            "", " ", "{}", "[]", " {} ", "{ }", "[ ]", "{,}", "[,]", "[1,]", "{\"a\":1,}",
            "{\"a\" : 1 , \"b\":[true,false,null]}", "{\"a\"}", "{\"a\":}", "{1:2}",
            "[1 2]", "[1,,2]", "tru", "truex", "nul", "null ", "\tnull\r\n", "x", "\u{feff}1",
            "0", "-0", "00", "01", "-01", "-", "+1", "1.", ".5", "1.5", "-1.5", "1e3", "1E+3",
            "1e-3", "1.0", "2.50", "-0.0", "0.000", "00.5", "-.5", "1.2.3", "1..2", "82.8",
            "1234567890.123456789", "12345678901.123456789", "0.1234567890123456789",
            "9999999999999999999.0", "-9999999999.999999999", "4.35", "0.3", "1.7976931348623157", "1e400", "-1e400", "9007199254740993", "1.5e15",
            "8999999999999999", "9000000000000000.0", "123456789012345678",
            "1234567890123456789", "12345678901234567890", "123456789012345678901",
            "-9223372036854775808", "-9223372036854775809", "18446744073709551615",
            "18446744073709551616", "0.1", "0.30000000000000004", "1-2", "[1-2]", "1e", "1e+",
            "\"\"", "\"a\"", "\"ü 急 😀\"", "\"a\\nb\"", "\"\\u00fc\"", "\"\\ud83d\\ude00\"",
            "\"\\ud83d\"", "\"\\ude00\"", "\"\\x\"", "\"\\\"", "\"a\\\"b\"", "\"a\\\\\"",
            "\"tab\there\"", "\"nl\nhere\"", "\"unterminated", "\"\\u12\"", "\"\\/\"",
            "{\"k\\u00fc\":1,\"k\u{fc}\":2}", "{\"a\":1,\"a\":1}", "[[],{},[{}]]",
            "{\"sku\":\"SKU-25109\",\"qty\":9,\"channel\":\"web\",\"gift\":false,\"tags\":[\"intl\",\"急\"],\"score\":82.8}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for n in [1, 2, 126, 127, 128, 129, 200] {
            docs.push(nested(n, "[", "]"));
            docs.push(nested(n, "{\"a\":", "}"));
            docs.push("[".repeat(n) + "1" + &"]".repeat(n));
            docs.push("{\"a\":".repeat(n) + "1" + &"}".repeat(n));
            docs.push("[".repeat(n));
        }
        for d in &docs {
            same(d);
        }
        // Generated documents, and every prefix of some: truncation anywhere is refused alike.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut valid = 0;
        for round in 0..3000 {
            let mut doc = String::new();
            generate(&mut seed, 0, &mut doc);
            valid += usize::from(same(&doc).is_some());
            if round % 50 == 0 {
                for end in (0..doc.len()).filter(|e| doc.is_char_boundary(*e)) {
                    same(&doc[..end]);
                }
            }
        }
        assert!(
            valid > 2000,
            "only {valid} of 3000 generated documents are JSON"
        );
    }

    #[test]
    fn documents_compare_by_content() {
        let a = hash(r#"{"b": 1, "a": [1, 2.0, "x", null, true]}"#).unwrap();
        assert_eq!(a, hash(r#"{"a":[1,2,"x",null,true],"b":1.0}"#).unwrap());
        assert_ne!(a, hash(r#"{"a":[2,1,"x",null,true],"b":1}"#).unwrap());
        assert_ne!(a, hash(r#"{"a":[1,2,"x",null,false],"b":1}"#).unwrap());
        assert_ne!(a, hash(r#"{"a":[1,2,"x",null,true],"b":"1"}"#).unwrap());
        assert_ne!(hash("{}").unwrap(), hash("[]").unwrap());
        assert_ne!(hash(r#"{"a":{}}"#).unwrap(), hash(r#"{"a":[]}"#).unwrap());
        assert_eq!(hash(r#""\u00fc""#).unwrap(), hash(r#""ü""#).unwrap());
        assert_ne!(hash("0.1").unwrap(), hash("0.10000000000000002").unwrap());
        assert!(hash("{").is_none());
        assert!(hash("1 2").is_none());
    }
}
