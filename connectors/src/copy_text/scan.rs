//! Splitting COPY text into records and fields, and undoing backslash escapes.

use super::values::hex_value;

/// One field of a record: `input[start..end]`, raw (still escaped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub start: usize,
    pub end: usize,
    /// The raw text holds at least one backslash, so it must go through [`unescape`].
    pub escaped: bool,
}

/// A complete record found by [`scan_record`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Record {
    /// Offset just past the record's terminating `\n`.
    pub next: usize,
    /// Raw newlines inside the record (a backslash followed by a real line feed, as MariaDB
    /// writes them), so that line numbers stay physical line numbers.
    pub escaped_newlines: u64,
}

/// Scans the record starting at `input[start..]`, pushing its fields into `spans` (cleared
/// first). Returns `None` if the record is not complete: no unescaped `\n` yet, or the input
/// ends right after a backslash.
///
/// A backslash protects the byte after it, whatever it is, so `\<TAB>` and `\<LF>` are field
/// data, not separators (PostgreSQL and MariaDB both read them that way).
#[inline]
pub(crate) fn scan_record(input: &[u8], start: usize, spans: &mut Vec<Span>) -> Option<Record> {
    spans.clear();
    let mut field_start = start;
    let mut escaped = false;
    let mut escaped_newlines = 0;
    let mut pos = start;
    loop {
        let rest = input.get(pos..)?;
        let at = pos + memchr::memchr3(b'\t', b'\n', b'\\', rest)?;
        match input.get(at).copied()? {
            b'\\' => {
                escaped = true;
                if input.get(at + 1).copied()? == b'\n' {
                    escaped_newlines += 1;
                }
                pos = at + 2;
            }
            separator => {
                spans.push(Span {
                    start: field_start,
                    end: at,
                    escaped,
                });
                if separator == b'\n' {
                    return Some(Record {
                        next: at + 1,
                        escaped_newlines,
                    });
                }
                field_start = at + 1;
                escaped = false;
                pos = at + 1;
            }
        }
    }
}

/// Undoes COPY text escapes of one raw field into `out` (cleared first): `\\ \t \n \r \b \f
/// \v`, `\NNN` (1 to 3 octal digits, low 8 bits kept), `\xHH` (1 or 2 hex digits; `\x`
/// without one is `x`), and `\c` = `c` for any other byte `c`.
pub(crate) fn unescape(raw: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let mut rest = raw;
    while let Some(at) = memchr::memchr(b'\\', rest) {
        let (plain, escape) = rest.split_at(at);
        out.extend_from_slice(plain);
        // `escape` starts with the backslash.
        let Some(&c) = escape.get(1) else {
            // A lone trailing backslash cannot come out of `scan_record`; keep it as is.
            out.push(b'\\');
            return;
        };
        let mut used = 2;
        let byte = match c {
            b'b' => 0x08,
            b'f' => 0x0c,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'v' => 0x0b,
            b'0'..=b'7' => {
                let mut value = u32::from(c - b'0');
                while used < 4 {
                    match escape.get(used) {
                        Some(&d @ b'0'..=b'7') => {
                            value = value * 8 + u32::from(d - b'0');
                            used += 1;
                        }
                        _ => break,
                    }
                }
                (value & 0xff) as u8
            }
            b'x' => match escape.get(2).copied().and_then(hex_value) {
                Some(high) => {
                    used = 3;
                    match escape.get(3).copied().and_then(hex_value) {
                        Some(low) => {
                            used = 4;
                            high << 4 | low
                        }
                        None => high,
                    }
                }
                None => b'x',
            },
            other => other,
        };
        out.push(byte);
        rest = escape.get(used..).unwrap_or_default();
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unescaped(raw: &[u8]) -> Vec<u8> {
        let mut out = vec![b'?'; 3];
        unescape(raw, &mut out);
        out
    }

    #[test]
    fn escapes() {
        assert_eq!(unescaped(b"plain"), b"plain");
        assert_eq!(unescaped(b""), b"");
        assert_eq!(
            unescaped(b"a\\\\b\\tc\\nd\\re\\bf\\fg\\vh"),
            b"a\\b\tc\nd\re\x08f\x0cg\x0bh"
        );
        // Octal: 1 to 3 digits, stops at a non-octal digit, keeps the low 8 bits.
        assert_eq!(unescaped(b"\\0"), b"\0");
        assert_eq!(unescaped(b"\\7x"), b"\x07x");
        assert_eq!(unescaped(b"\\101\\1012"), b"AA2");
        assert_eq!(unescaped(b"\\18"), b"\x018");
        assert_eq!(unescaped(b"\\377"), b"\xff");
        assert_eq!(unescaped(b"\\777"), b"\xff");
        assert_eq!(unescaped(b"\\303\\251"), "é".as_bytes());
        // Hex: 1 or 2 digits; `\x` without a digit is `x`.
        assert_eq!(unescaped(b"\\x41\\x4a\\x4Bz"), b"AJKz");
        assert_eq!(unescaped(b"\\x7g"), b"\x07g");
        assert_eq!(unescaped(b"\\x414"), b"A4");
        assert_eq!(unescaped(b"\\xg"), b"xg");
        assert_eq!(unescaped(b"\\x"), b"x");
        // Anything else stands for itself, real tab and line feed included.
        assert_eq!(unescaped(b"\\a\\N\\.\\\"\\\t\\\n"), b"aN.\"\t\n");
        assert_eq!(unescaped("\\é".as_bytes()), "é".as_bytes());
        assert_eq!(unescaped(b"end\\"), b"end\\");
    }

    fn fields(input: &[u8]) -> Option<(Vec<&[u8]>, Record)> {
        let mut spans = Vec::new();
        let record = scan_record(input, 0, &mut spans)?;
        Some((
            spans.iter().map(|s| &input[s.start..s.end]).collect(),
            record,
        ))
    }

    #[test]
    fn records() {
        let (f, r) = fields(b"a\tb\\tc\t\\N\nnext").unwrap();
        assert_eq!(f, [&b"a"[..], b"b\\tc", b"\\N"]);
        assert_eq!(
            r,
            Record {
                next: 10,
                escaped_newlines: 0
            }
        );
        // A backslash protects a real tab or line feed.
        let (f, r) = fields(b"a\\\tb\tc\\\nd\n").unwrap();
        assert_eq!(f, [&b"a\\\tb"[..], b"c\\\nd"]);
        assert_eq!(r.escaped_newlines, 1);
        let (f, _) = fields(b"\\\\\t\\\\\n").unwrap();
        assert_eq!(f, [&b"\\\\"[..], b"\\\\"]);
        let (f, _) = fields(b"\n").unwrap();
        assert_eq!(f, [&b""[..]]);
        let (f, _) = fields(b"\t\t\n").unwrap();
        assert_eq!(f, [&b""[..], b"", b""]);
        // Incomplete.
        assert!(fields(b"").is_none());
        assert!(fields(b"a\tb").is_none());
        assert!(fields(b"a\\").is_none());
        assert!(fields(b"a\\\n").is_none());
        assert!(fields(b"a\r").is_none());
        let (f, _) = fields(b"a\r\n").unwrap();
        assert_eq!(f, [&b"a\r"[..]], "a raw CR is data");
    }
}
