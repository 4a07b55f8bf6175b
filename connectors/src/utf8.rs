//! UTF-8 validation of text read from a database: every text value of every row passes here,
//! so it uses SIMD (simdutf8) and falls back to std only to describe an error.

/// `v` as text, or where it stops being UTF-8.
pub(crate) fn text(v: &[u8]) -> Result<&str, String> {
    simdutf8::basic::from_utf8(v).map_err(|_| match std::str::from_utf8(v) {
        Err(e) => format!("invalid UTF-8: {e}"),
        Ok(_) => "invalid UTF-8".to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::text;

    #[test]
    fn valid_text_passes_and_invalid_text_says_where() {
        assert_eq!(text("été 急".as_bytes()), Ok("été 急"));
        let e = text(b"ab\xffcd").unwrap_err();
        assert!(e.contains("invalid UTF-8") && e.contains("index 2"), "{e}");
    }
}
