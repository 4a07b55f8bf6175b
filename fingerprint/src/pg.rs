//! PostgreSQL's own 64-bit seeded hash functions (those hash partitioning uses, stable since
//! PostgreSQL 11), computed here bit for bit, and the text PostgreSQL keeps of a JSON document
//! stored as `jsonb`.
//!
//! With them a verification can have a PostgreSQL side hash and sum its rows inside the
//! database (`hashint8extended(id, seed)`, `hashtextextended(name, seed)`, ... in a `GROUP BY`
//! of key-hash buckets), sending only bucket sums, while the other side hashes its rows the
//! same way as it reads them. Measured on `bench_orders` (1,000,000 rows), PostgreSQL spends
//! about as long computing and summing those hashes as it spends sending the rows through
//! `COPY ... TO (FORMAT binary)`, and the reader that decoded and hashed the rows has nothing
//! left to do.
//!
//! No crate offers these functions alone (a PostgreSQL reimplementation carries them among
//! thousands of others), so they are written here from the published algorithms: Bob Jenkins'
//! lookup3 (public domain) as `src/common/hashfn.c` adapts it, and the type-specific wrappers
//! of `hashfunc.c`, `numeric.c` and `float.c`. The tests compare them with a real server.
//!
//! Where PostgreSQL's function is weaker than a verification needs, this module says so and
//! the caller compensates: `hash_numeric_extended` ignores the sign.

/// lookup3's `mix`.
#[inline(always)]
fn mix(mut a: u32, mut b: u32, mut c: u32) -> (u32, u32, u32) {
    a = a.wrapping_sub(c);
    a ^= c.rotate_left(4);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a);
    b ^= a.rotate_left(6);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b);
    c ^= b.rotate_left(8);
    b = b.wrapping_add(a);
    a = a.wrapping_sub(c);
    a ^= c.rotate_left(16);
    c = c.wrapping_add(b);
    b = b.wrapping_sub(a);
    b ^= a.rotate_left(19);
    a = a.wrapping_add(c);
    c = c.wrapping_sub(b);
    c ^= b.rotate_left(4);
    b = b.wrapping_add(a);
    (a, b, c)
}

/// lookup3's `final`.
#[inline(always)]
fn fin(mut a: u32, mut b: u32, mut c: u32) -> (u32, u32) {
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(14));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(11));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(25));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(16));
    a ^= c;
    a = a.wrapping_sub(c.rotate_left(4));
    b ^= a;
    b = b.wrapping_sub(a.rotate_left(14));
    c ^= b;
    c = c.wrapping_sub(b.rotate_left(24));
    (b, c)
}

/// The state lookup3 starts from for a key of `len` bytes and `seed`.
#[inline(always)]
fn start(len: u32, seed: u64) -> (u32, u32, u32) {
    let init = 0x9e37_79b9_u32.wrapping_add(len).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        (a, b, c) = mix(a, b, c);
    }
    (a, b, c)
}

fn word(b: &[u8]) -> u32 {
    b.iter()
        .take(4)
        .enumerate()
        .fold(0, |w, (i, &x)| w | (u32::from(x) << (8 * i)))
}

/// `hash_bytes_extended`: the hash of text (under a deterministic collation), `bytea`, `uuid`
/// and a jsonb document's text. PostgreSQL's key length is an `int`: longer keys (over 2 GiB)
/// hash by their length modulo 2^32 here.
pub fn hash_bytes(k: &[u8], seed: u64) -> u64 {
    let (mut a, mut b, mut c) = start(k.len() as u32, seed);
    let mut chunks = k.chunks_exact(12);
    for ch in &mut chunks {
        a = a.wrapping_add(word(&ch[0..4]));
        b = b.wrapping_add(word(&ch[4..8]));
        c = c.wrapping_add(word(&ch[8..12]));
        (a, b, c) = mix(a, b, c);
    }
    let tail = chunks.remainder();
    // The last 11 bytes: the low byte of `c` is left out (lookup3 kept it for the length).
    a = a.wrapping_add(word(tail));
    if tail.len() > 4 {
        b = b.wrapping_add(word(&tail[4..]));
    }
    if tail.len() > 8 {
        c = c.wrapping_add(word(&tail[8..]) << 8);
    }
    let (b, c) = fin(a, b, c);
    (u64::from(b) << 32) | u64::from(c)
}

/// `hash_bytes_uint32_extended`: the hash of a 32-bit value (`hashint4extended`, dates).
pub fn hash_u32(k: u32, seed: u64) -> u64 {
    let (a, b, c) = start(4, seed);
    let (b, c) = fin(a.wrapping_add(k), b, c);
    (u64::from(b) << 32) | u64::from(c)
}

/// `hashint8extended` (and so `hashint2extended`, `hashint4extended`: a value in the 32-bit
/// range hashes alike whatever its integer type; also `timestamp_hash_extended` and
/// `time_hash_extended` of their microseconds).
pub fn hash_i64(v: i64, seed: u64) -> u64 {
    let lo = v as u32;
    let hi = (v >> 32) as u32;
    hash_u32(lo ^ if v >= 0 { hi } else { !hi }, seed)
}

/// `hashfloat8extended` (and `hashfloat4extended` of the value widened): zeros of either sign
/// hash as the seed, every NaN as one NaN.
pub fn hash_f64(v: f64, seed: u64) -> u64 {
    if v == 0.0 {
        return seed;
    }
    let v = if v.is_nan() { f64::NAN } else { v };
    hash_bytes(&v.to_bits().to_le_bytes(), seed)
}

/// `hash_numeric_extended` of the decimal `mantissa` × 10^-`scale`: trailing and leading zeros
/// and the display scale do not count (1.50 hashes as 1.5). **The sign does not count either**
/// (PostgreSQL's equality rechecks it); a caller that compares values must add it.
pub fn hash_numeric(mantissa: i128, scale: i8, seed: u64) -> u64 {
    if mantissa == 0 {
        return seed.wrapping_sub(1);
    }
    let mut digits = itoa::Buffer::new();
    let text = digits.format(mantissa.unsigned_abs()).as_bytes();
    numeric_digits(text, i32::from(scale), seed)
}

/// `hash_numeric_extended` of a number as `numeric` prints it (`-12.3400`, `NaN`,
/// `Infinity`; any count of digits), XORed with 1 when it is negative: the sign-aware hash the
/// PostgreSQL verification scheme uses. `None` when `text` is not such a number.
pub fn hash_numeric_text(text: &str, seed: u64) -> Option<u64> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    if body == "NaN" && !negative {
        return Some(seed);
    }
    if body == "Infinity" {
        return Some(seed ^ u64::from(negative));
    }
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digit = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digit(int) || !digit(frac) || (body.contains('.') && frac.is_empty()) {
        return None;
    }
    let all: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let Some(first) = all.iter().position(|&d| d != b'0') else {
        return Some(seed.wrapping_sub(1));
    };
    let digits = &all[first..];
    let h = numeric_digits(digits, frac.len() as i32, seed);
    Some(h ^ u64::from(negative))
}

/// PostgreSQL keeps a numeric as base-10000 digits and the weight (power of 10000) of the
/// first; the hash covers the digits from the first to the last non-zero one, and the weight.
/// `text` is the decimal digits of the absolute value (no leading zero), `scale` the count of
/// them after the point (negative: zeros to append).
fn numeric_digits(text: &[u8], scale: i32, seed: u64) -> u64 {
    // An i128 has at most 39 digits: with the padding, 11 groups, kept on the stack (this
    // runs once per value); longer numbers (a `numeric` printed as text) take the heap.
    if text.len() <= 40 {
        numeric_groups(text, scale, seed, &mut [0u16; 12], &mut [0u8; 24])
    } else {
        let n = text.len() / 4 + 2;
        numeric_groups(text, scale, seed, &mut vec![0u16; n], &mut vec![0u8; 2 * n])
    }
}

/// [`numeric_digits`] with room for the groups given: `groups` holds at least
/// `text.len() / 4 + 2` and `bytes` twice that.
fn numeric_groups(text: &[u8], scale: i32, seed: u64, groups: &mut [u16], bytes: &mut [u8]) -> u64 {
    let int_len = text.len() as i32 - scale;
    // Group boundaries fall every 4 digits from the point: the first digit of `text` is at
    // position `int_len - 1` above it; pad on the left to a whole group.
    let lead = (4 - int_len.rem_euclid(4)) % 4;
    let weight_of_first = (int_len + lead) / 4 - 1;
    let mut len = 0;
    let mut acc: u16 = 0;
    let mut n = lead;
    for &d in text {
        acc = acc * 10 + u16::from(d - b'0');
        n += 1;
        if n == 4 {
            groups[len] = acc;
            len += 1;
            acc = 0;
            n = 0;
        }
    }
    if n > 0 {
        groups[len] = acc * 10u16.pow((4 - n) as u32);
        len += 1;
    }
    let groups = &groups[..len];
    let first = groups.iter().position(|&g| g != 0).unwrap_or(len);
    let last = groups
        .iter()
        .rposition(|&g| g != 0)
        .map_or(first, |i| i + 1);
    let weight = weight_of_first - first as i32;
    for (i, g) in groups[first..last].iter().enumerate() {
        bytes[2 * i..2 * i + 2].copy_from_slice(&g.to_le_bytes());
    }
    let bytes = &bytes[..2 * (last - first)];
    hash_bytes(bytes, seed) ^ (i64::from(weight) as u64)
}

/// The text PostgreSQL keeps of JSON document `s` stored as `jsonb` (what `doc::jsonb::text`
/// prints): object keys deduplicated (the last one wins) and ordered shorter first then by
/// bytes, numbers as `numeric` prints them, strings with PostgreSQL's escapes, `", "` and
/// `": "` between items. `None` when `s` is not JSON or `jsonb` would refuse it (`\u0000`, an
/// unpaired surrogate, a number `numeric` cannot hold).
pub fn jsonb_text(s: &str) -> Option<String> {
    let mut w = JsonbText::default();
    let text = w.render(s)?.to_vec();
    // Built from a `&str` by copying whole UTF-8 sequences and ASCII.
    String::from_utf8(text).ok()
}

/// [`jsonb_text`] with its buffers kept between documents, for a caller that renders many.
#[derive(Default)]
pub struct JsonbText {
    out: Vec<u8>,
    members: Vec<Member>,
    order: Vec<usize>,
    scratch: Vec<u8>,
}

impl JsonbText {
    /// The jsonb text of `s` (UTF-8), or `None` as [`jsonb_text`].
    pub fn render(&mut self, s: &str) -> Option<&[u8]> {
        let mut p = Parser {
            b: s.as_bytes(),
            i: 0,
            depth: 0,
            members: std::mem::take(&mut self.members),
            order: std::mem::take(&mut self.order),
            scratch: std::mem::take(&mut self.scratch),
        };
        self.out.clear();
        let done = p.value(&mut self.out).and_then(|()| {
            p.ws();
            (p.i == p.b.len()).then_some(())
        });
        p.members.clear();
        (self.members, self.order, self.scratch) = (p.members, p.order, p.scratch);
        done.map(|()| &self.out[..])
    }
}

/// PostgreSQL's limit on nesting (`max_stack_depth` stops it well before; this keeps the
/// parser's own recursion bounded).
const MAX_DEPTH: u32 = 6400;

/// An object member written to the output: where its key's text and the whole member lie,
/// and its key unescaped when that differs from the text written.
struct Member {
    key: (usize, usize),
    end: usize,
    decoded: Option<Vec<u8>>,
}

/// jsonb's key order: shorter first, then by bytes.
fn rank(k: &[u8]) -> (usize, &[u8]) {
    (k.len(), k)
}

/// Writes the document as it parses it: a value's jsonb text is its own text, except that an
/// object's members are reordered once written, numbers with an exponent or a negative zero
/// are rewritten, and strings with escapes are re-escaped.
struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    depth: u32,
    /// The members of the objects being written, innermost last.
    members: Vec<Member>,
    /// An object's members in jsonb order, and its text while it is rewritten in that order.
    order: Vec<usize>,
    scratch: Vec<u8>,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn literal(&mut self, word: &[u8], out: &mut Vec<u8>) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| {
            self.i = end;
            out.extend_from_slice(word);
        })
    }

    fn value(&mut self, out: &mut Vec<u8>) -> Option<()> {
        match self.peek()? {
            b'{' => self.nested(out, Self::object),
            b'[' => self.nested(out, Self::array),
            b'"' => self.string(out).map(|_| ()),
            b't' => self.literal(b"true", out),
            b'f' => self.literal(b"false", out),
            b'n' => self.literal(b"null", out),
            b'-' | b'0'..=b'9' => self.number(out),
            _ => None,
        }
    }

    fn nested(
        &mut self,
        out: &mut Vec<u8>,
        f: fn(&mut Self, &mut Vec<u8>) -> Option<()>,
    ) -> Option<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        self.i += 1;
        f(self, out)?;
        self.depth -= 1;
        Some(())
    }

    fn object(&mut self, out: &mut Vec<u8>) -> Option<()> {
        out.push(b'{');
        let body = out.len();
        let base = self.members.len();
        if self.peek()? == b'}' {
            self.i += 1;
            out.push(b'}');
            return Some(());
        }
        loop {
            if self.peek()? != b'"' {
                return None;
            }
            let start = out.len();
            let decoded = self.string(out)?;
            let key = (start, out.len());
            if self.peek()? != b':' {
                return None;
            }
            self.i += 1;
            out.extend_from_slice(b": ");
            self.value(out)?;
            self.members.push(Member {
                key,
                end: out.len(),
                decoded,
            });
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    out.extend_from_slice(b", ");
                }
                b'}' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        self.order(out, body, base);
        out.push(b'}');
        Some(())
    }

    /// Reorders the members written from `body` on (those from `base` on in `members`): keys
    /// shorter first, then by bytes; of equal keys the last written wins.
    fn order(&mut self, out: &mut Vec<u8>, body: usize, base: usize) {
        let members = &self.members[base..];
        let key = |i: usize| -> &[u8] {
            let m = &members[i];
            m.decoded
                .as_deref()
                .unwrap_or(&out[m.key.0 + 1..m.key.1 - 1])
        };
        if (1..members.len()).all(|i| rank(key(i - 1)) < rank(key(i))) {
            self.members.truncate(base);
            return;
        }
        // A stable sort keeps equal keys in the order written; of each run of equal keys the
        // last is kept.
        let order = &mut self.order;
        order.clear();
        order.extend(0..members.len());
        order.sort_by(|&x, &y| rank(key(x)).cmp(&rank(key(y))));
        order.dedup_by(|later, earlier| {
            let same = key(*later) == key(*earlier);
            if same {
                *earlier = *later;
            }
            same
        });
        self.scratch.clear();
        self.scratch.extend_from_slice(&out[body..]);
        out.truncate(body);
        for (n, &i) in self.order.iter().enumerate() {
            if n > 0 {
                out.extend_from_slice(b", ");
            }
            let m = &self.members[base + i];
            out.extend_from_slice(&self.scratch[m.key.0 - body..m.end - body]);
        }
        self.members.truncate(base);
    }

    fn array(&mut self, out: &mut Vec<u8>) -> Option<()> {
        out.push(b'[');
        if self.peek()? == b']' {
            self.i += 1;
            out.push(b']');
            return Some(());
        }
        loop {
            self.value(out)?;
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    out.extend_from_slice(b", ");
                }
                b']' => {
                    self.i += 1;
                    out.push(b']');
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    fn hex4(&mut self) -> Option<u32> {
        let h = self.b.get(self.i..self.i + 4)?;
        if !h.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        let v = h.iter().fold(0u32, |v, &c| {
            (v << 4) | (c as char).to_digit(16).unwrap_or(0)
        });
        self.i += 4;
        Some(v)
    }

    /// Writes the string at the cursor (its opening quote) as PostgreSQL prints it, and
    /// returns its unescaped bytes when they differ from what was written between the quotes.
    fn string(&mut self, out: &mut Vec<u8>) -> Option<Option<Vec<u8>>> {
        let start = self.i + 1;
        let mut j = start;
        // Without escapes the text is printed as written (a `&str` holds no control
        // characters PostgreSQL would escape unless JSON forbids them anyway).
        loop {
            match *self.b.get(j)? {
                b'"' => {
                    out.extend_from_slice(&self.b[self.i..=j]);
                    self.i = j + 1;
                    return Some(None);
                }
                b'\\' => break,
                c if c < 0x20 => return None,
                _ => j += 1,
            }
        }
        let mut text: Vec<u8> = self.b[start..j].to_vec();
        self.i = j;
        loop {
            let c = *self.b.get(self.i)?;
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *self.b.get(self.i)?;
                    self.i += 1;
                    match e {
                        b'"' => text.push(b'"'),
                        b'\\' => text.push(b'\\'),
                        b'/' => text.push(b'/'),
                        b'b' => text.push(8),
                        b'f' => text.push(12),
                        b'n' => text.push(b'\n'),
                        b'r' => text.push(b'\r'),
                        b't' => text.push(b'\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = match hi {
                                0xD800..=0xDBFF => {
                                    if self.b.get(self.i..self.i + 2)? != b"\\u" {
                                        return None;
                                    }
                                    self.i += 2;
                                    let lo = self.hex4()?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return None;
                                    }
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                }
                                0xDC00..=0xDFFF | 0 => return None,
                                v => v,
                            };
                            let ch = char::from_u32(cp)?;
                            let mut buf = [0u8; 4];
                            text.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return None,
                    }
                }
                c if c < 0x20 => return None,
                c => text.push(c),
            }
        }
        escape(&text, out);
        Some(Some(text))
    }

    /// Writes the JSON number at the cursor as PostgreSQL's `numeric` prints it.
    fn number(&mut self, out: &mut Vec<u8>) -> Option<()> {
        let b = self.b;
        let start = self.i;
        let mut i = start;
        let neg = b.get(i) == Some(&b'-');
        if neg {
            i += 1;
        }
        let int_start = i;
        match b.get(i)? {
            b'0' => i += 1,
            b'1'..=b'9' => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return None,
        }
        let int = &b[int_start..i];
        let mut frac: &[u8] = &[];
        if b.get(i) == Some(&b'.') {
            let f = i + 1;
            i = f;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == f {
                return None;
            }
            frac = &b[f..i];
        }
        let plain = !matches!(b.get(i), Some(b'e' | b'E'));
        if plain {
            self.i = i;
            // Written as `numeric` prints it, unless it is a negative zero.
            let zero = int == b"0" && frac.iter().all(|&d| d == b'0');
            out.extend_from_slice(&b[if neg && zero { start + 1 } else { start }..i]);
            return Some(());
        }
        i += 1;
        let eneg = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let e = i;
        let mut exp: i64 = 0;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            // Saturates: anything past the limit is refused.
            exp = (exp * 10 + i64::from(b[i] - b'0')).min(1 << 31);
            i += 1;
        }
        if i == e {
            return None;
        }
        self.i = i;
        let text = numeric_text(neg, int, frac, if eneg { -exp } else { exp })?;
        out.extend_from_slice(text.as_bytes());
        Some(())
    }
}

/// `numeric`'s limits: the exponent a number may be written with (PostgreSQL refuses
/// `INT_MAX / 2` and beyond), the display scale, and the digits before the point (32,768
/// base-10000 digits).
const MAX_EXPONENT: i64 = 1_073_741_822;
const MAX_DSCALE: i64 = 16_383;
const MAX_INT_DIGITS: i64 = 131_072;

/// `numeric_out(numeric_in(text))` for a number of sign `neg`, integer digits `int`, fraction
/// digits `frac` and exponent `exp`: the point moves, the display scale is the fraction's
/// length less the exponent (at least 0), and a zero has no sign. `None` where `numeric`
/// overflows.
fn numeric_text(neg: bool, int: &[u8], frac: &[u8], exp: i64) -> Option<String> {
    if exp.abs() > MAX_EXPONENT {
        return None;
    }
    let dscale = (frac.len() as i64 - exp).max(0);
    if dscale > MAX_DSCALE {
        return None;
    }
    let dscale = dscale as usize;
    // All digits, and where the point falls among them after the exponent.
    let digits: Vec<u8> = int.iter().chain(frac).copied().collect();
    let point = int.len() as i64 + exp;
    if let Some(first) = digits.iter().position(|&d| d != b'0') {
        if point - first as i64 > MAX_INT_DIGITS {
            return None;
        }
    } else {
        let mut out = String::from("0");
        if dscale > 0 {
            out.push('.');
            out.extend(std::iter::repeat_n('0', dscale));
        }
        return Some(out);
    }
    let mut int_part: Vec<u8> = Vec::new();
    let mut frac_part: Vec<u8> = Vec::new();
    if point <= 0 {
        frac_part.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        frac_part.extend_from_slice(&digits);
    } else if point as usize >= digits.len() {
        int_part.extend_from_slice(&digits);
        int_part.extend(std::iter::repeat_n(b'0', point as usize - digits.len()));
    } else {
        int_part.extend_from_slice(&digits[..point as usize]);
        frac_part.extend_from_slice(&digits[point as usize..]);
    }
    let lead = int_part.iter().take_while(|&&d| d == b'0').count();
    let int_part = &int_part[lead..];
    frac_part.resize(dscale, b'0');
    let mut out = String::with_capacity(int_part.len() + dscale + 3);
    if neg {
        out.push('-');
    }
    if int_part.is_empty() {
        out.push('0');
    } else {
        out.extend(int_part.iter().map(|&d| d as char));
    }
    if dscale > 0 {
        out.push('.');
        out.extend(frac_part.iter().map(|&d| d as char));
    }
    Some(out)
}

/// PostgreSQL's `escape_json` of UTF-8 `text`, quoted.
fn escape(text: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in text {
        match c {
            8 => out.extend_from_slice(b"\\b"),
            12 => out.extend_from_slice(b"\\f"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            c if c < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(c >> 4)]);
                out.push(HEX[usize::from(c & 15)]);
            }
            c => out.push(c),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values PostgreSQL 15 computed (`SELECT hashtextextended('', 0), ...`), so a change here
    /// shows without a server; `tests/tests/pg_hash.rs` compares thousands with a live one.
    #[test]
    fn known_values_from_postgresql() {
        let h = |v: u64| v as i64;
        assert_eq!(h(hash_bytes(b"", 0)), -6939563903564495251);
        assert_eq!(h(hash_bytes(b"hello, world!", 1)), -1647879329156805600);
        assert_eq!(h(hash_i64(-5, 0)), -9082176226831438310);
        assert_eq!(h(hash_i64(4_294_967_296, 42)), 2207685931686633351);
        assert_eq!(h(hash_f64(1.5, 0)), 6158159405676898674);
        assert_eq!(h(hash_numeric(-123_400, 4, 7)), -8828951590762685693);
        assert_eq!(h(hash_u32(7, u64::MAX)), 5874088688735560945);
    }

    #[test]
    fn numeric_text_hashes_as_its_value_with_the_sign() {
        let t = |s: &str| hash_numeric_text(s, 7);
        assert_eq!(t("-12.3400"), Some(hash_numeric(-123_400, 4, 7) ^ 1));
        assert_eq!(t("12.34"), Some(hash_numeric(1234, 2, 7)));
        assert_eq!(t("0012.340"), t("12.34"));
        assert_eq!(t("0.000"), Some(hash_numeric(0, 0, 7)));
        assert_eq!(
            t("170141183460469231731687303715884105727"),
            Some(hash_numeric(i128::MAX, 0, 7))
        );
        // Longer than an i128: the same grouping, on the heap.
        let long = format!("1{}", "0".repeat(60));
        assert_eq!(t(&long), t(&format!("{long}.000")));
        assert_ne!(t(&long), t(&format!("1{}", "0".repeat(59))));
        assert_eq!(t("NaN"), Some(7));
        assert_eq!(t("-Infinity"), Some(6));
        for bad in ["", "-", "1.", ".5", "1e5", "1.2.3", "x"] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn numbers_print_as_numeric_does() {
        let t = |s: &str| jsonb_text(s).unwrap();
        assert_eq!(t("1.50e1"), "15.0");
        assert_eq!(t("1e-2"), "0.01");
        assert_eq!(t("-0"), "0");
        assert_eq!(t("-0.00"), "0.00");
        assert_eq!(t("123e2"), "12300");
        assert_eq!(t("0.000"), "0.000");
        assert_eq!(t("-12.5E-3"), "-0.0125");
        assert_eq!(t("0e2000000"), "0");
        assert_eq!(t("1e-16383").len(), 16385);
        assert_eq!(jsonb_text("1.5e-16383"), None);
        assert_eq!(jsonb_text("1e131072"), None);
        assert_eq!(jsonb_text("0e1073741823"), None);
        assert_eq!(jsonb_text("01"), None);
    }

    #[test]
    fn objects_sort_keys_and_keep_the_last_duplicate() {
        assert_eq!(
            jsonb_text(r#"{"bb":1,"a":[true,null],"a":{"z":"\u00e9\n"},"c":2}"#).unwrap(),
            r#"{"a": {"z": "é\n"}, "c": 2, "bb": 1}"#
        );
        assert_eq!(jsonb_text("[ ]").unwrap(), "[]");
        assert_eq!(jsonb_text(r#""\u0000""#), None);
        assert_eq!(jsonb_text(r#""\ud800""#), None);
    }

    #[test]
    fn numeric_hash_ignores_scale_and_zeros() {
        assert_eq!(hash_numeric(150, 2, 7), hash_numeric(15, 1, 7));
        assert_eq!(hash_numeric(-15, 1, 7), hash_numeric(15, 1, 7));
        assert_ne!(hash_numeric(15, 1, 7), hash_numeric(15, 2, 7));
        assert_eq!(hash_numeric(0, 3, 7), 6);
    }
}
