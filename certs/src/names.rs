//! Names, serial numbers and validity periods: validation and canonical forms.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use time::{Duration, OffsetDateTime};

use crate::error::CertError;

/// Longest agent id or group name.
pub const MAX_NAME_LEN: usize = 64;

/// Scheme and authority prefix of the agent identity URI SAN:
/// `ferry://agent/<group>/<agent_id>`.
pub const AGENT_URI_PREFIX: &str = "ferry://agent/";

/// Allowance for clock skew applied to the start of [`Validity::days`].
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Validity period of a certificate to issue.
///
/// Times are truncated to whole seconds when a certificate is issued
/// (X.509 has no sub-second precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// First instant the certificate is valid.
    pub not_before: OffsetDateTime,
    /// Last instant the certificate is valid.
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// `now - 5 minutes` (clock skew) until `now + days`.
    pub fn days(days: u32) -> Self {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - CLOCK_SKEW,
            not_after: now + Duration::days(i64::from(days)),
        }
    }

    /// An explicit period (for tests: a period entirely in the past or the future).
    pub fn between(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        Validity {
            not_before,
            not_after,
        }
    }

    /// Truncated to whole seconds and checked (`not_after` must be after `not_before`).
    pub(crate) fn normalized(self) -> Result<Self, CertError> {
        let not_before = truncate_secs(self.not_before);
        let not_after = truncate_secs(self.not_after);
        if not_after <= not_before {
            return Err(CertError::InvalidValidity {
                not_before,
                not_after,
            });
        }
        Ok(Validity {
            not_before,
            not_after,
        })
    }
}

fn truncate_secs(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0).unwrap_or(t)
}

/// A name a server certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubjectName {
    /// A DNS host name (lower-cased; `*.` allowed as the whole first label).
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl FromStr for SubjectName {
    type Err = CertError;

    /// An IP literal (`10.0.0.1`, `::1`, `[::1]`) becomes [`SubjectName::Ip`];
    /// anything else must be a valid DNS name and becomes [`SubjectName::Dns`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let trimmed = s.trim();
        if let Ok(ip) = IpAddr::from_str(trimmed) {
            return Ok(SubjectName::Ip(ip));
        }
        if let Some(inner) = trimmed.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            if let Ok(ip) = IpAddr::from_str(inner) {
                return Ok(SubjectName::Ip(ip));
            }
        }
        validate_dns_name(trimmed)?;
        Ok(SubjectName::Dns(trimmed.to_ascii_lowercase()))
    }
}

impl fmt::Display for SubjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SubjectName::Dns(d) => f.write_str(d),
            SubjectName::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// Checks a DNS host name: 1..=253 characters, dot-separated labels of 1..=63
/// characters of `[A-Za-z0-9-]` not starting or ending with `-`; the first
/// label may be exactly `*`; the last label may not be all digits.
pub fn validate_dns_name(name: &str) -> Result<(), CertError> {
    let bad = |reason: &str| CertError::InvalidDnsName {
        value: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(bad("empty"));
    }
    if name.len() > 253 {
        return Err(bad("longer than 253 characters"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    for (i, label) in labels.iter().enumerate() {
        if label.is_empty() {
            return Err(bad("empty label (leading, trailing or double dot)"));
        }
        if *label == "*" {
            if i == 0 && labels.len() > 2 {
                continue;
            }
            return Err(bad(
                "a wildcard is only allowed as the whole first label of a name with at least three labels",
            ));
        }
        if label.len() > 63 {
            return Err(bad("a label is longer than 63 characters"));
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(bad("only letters, digits, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a label may not start or end with '-'"));
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(bad(
            "looks like a malformed IP address (all-numeric last label)",
        ));
    }
    Ok(())
}

fn name_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return Some("must not be empty".into());
    }
    if value.len() > MAX_NAME_LEN {
        return Some(format!(
            "must be at most {MAX_NAME_LEN} characters (is {})",
            value.len()
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Some(format!(
            "character {c:?} not allowed (use A-Z a-z 0-9 . _ -)"
        ));
    }
    if value == "." || value == ".." {
        return Some("must not be \".\" or \"..\"".into());
    }
    None
}

/// Checks an agent id: 1..=64 characters of `[A-Za-z0-9._-]` (and not `.`/`..`).
pub fn validate_agent_id(value: &str) -> Result<(), CertError> {
    match name_problem(value) {
        None => Ok(()),
        Some(reason) => Err(CertError::InvalidAgentId {
            value: value.to_string(),
            reason,
        }),
    }
}

/// Checks a group name: same rules as [`validate_agent_id`].
pub fn validate_group(value: &str) -> Result<(), CertError> {
    match name_problem(value) {
        None => Ok(()),
        Some(reason) => Err(CertError::InvalidGroup {
            value: value.to_string(),
            reason,
        }),
    }
}

/// Checks a certificate common name: 1..=64 characters, no control characters.
pub(crate) fn validate_common_name(value: &str) -> Result<(), CertError> {
    let reason = if value.trim().is_empty() {
        "must not be empty"
    } else if value.chars().count() > 64 {
        "must be at most 64 characters"
    } else if value.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(CertError::InvalidCommonName {
        value: value.to_string(),
        reason: reason.to_string(),
    })
}

/// The identity URI SAN of an agent: `ferry://agent/<group>/<agent_id>`.
pub fn agent_uri(group: &str, agent_id: &str) -> String {
    format!("{AGENT_URI_PREFIX}{group}/{agent_id}")
}

/// Canonical form of a serial number, used in the ledger, in
/// [`AgentIdentity::serial`](crate::AgentIdentity::serial) and by
/// [`revoked_serials`](crate::revoked_serials): the unsigned big-endian
/// magnitude with leading zero bytes removed, as lowercase hex, two digits
/// per byte, no separators (e.g. `"5a0f…"`; zero is `"00"`).
///
/// `bytes` may be the DER INTEGER content (with a leading `0x00` sign byte).
pub fn canonical_serial(bytes: &[u8]) -> String {
    let first = bytes.iter().position(|b| *b != 0);
    match first {
        Some(i) => hex::encode(&bytes[i..]),
        None => "00".to_string(),
    }
}

/// Normalises a serial typed by a user (`5A:0F:…`, `0x5a0f…`, with or without
/// leading zeros) into the [canonical form](canonical_serial).
pub fn normalize_serial(input: &str) -> Result<String, CertError> {
    let invalid = || CertError::InvalidSerial {
        value: input.to_string(),
    };
    let trimmed = input.trim();
    let trimmed = trimmed
        .strip_prefix("0x")
        .or_else(|| trimmed.strip_prefix("0X"))
        .unwrap_or(trimmed);
    let mut digits: String = trimmed.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid());
    }
    if digits.len() % 2 == 1 {
        digits.insert(0, '0');
    }
    let bytes = hex::decode(&digits).map_err(|_| invalid())?;
    Ok(canonical_serial(&bytes))
}

/// Bytes of a canonical serial (for rcgen).
pub(crate) fn serial_bytes(canonical: &str) -> Result<Vec<u8>, CertError> {
    hex::decode(canonical).map_err(|_| CertError::InvalidSerial {
        value: canonical.to_string(),
    })
}

/// A fresh random serial number: 16 bytes, top bit cleared (positive) and the
/// next bit set (so it never shrinks below 16 bytes).
pub(crate) fn random_serial() -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    bytes.to_vec()
}

/// SHA-256 of DER bytes, lowercase hex.
pub fn fingerprint_sha256(der: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, der).as_ref())
}

/// `2026-01-01 00:00:00 UTC`.
pub(crate) fn fmt_time(t: &OffsetDateTime) -> String {
    let fmt = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let utc = t.to_offset(time::UtcOffset::UTC);
    match utc.format(&fmt) {
        Ok(s) => format!("{s} UTC"),
        Err(_) => format!("{utc}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agent_ids() {
        for ok in ["a", "agent-1", "A.b_c-9", &"x".repeat(64)] {
            validate_agent_id(ok).unwrap();
            validate_group(ok).unwrap();
        }
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65), "..", "."] {
            assert!(validate_agent_id(bad).is_err(), "{bad:?}");
            assert!(matches!(
                validate_group(bad),
                Err(CertError::InvalidGroup { .. })
            ));
        }
        let msg = validate_agent_id("a/b").unwrap_err().to_string();
        assert!(msg.contains("invalid agent id \"a/b\""), "{msg}");
    }

    #[test]
    fn subject_names() {
        assert_eq!(
            "10.1.2.3".parse::<SubjectName>().unwrap(),
            SubjectName::Ip("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            "[::1]".parse::<SubjectName>().unwrap(),
            SubjectName::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            "Broker.Example.com".parse::<SubjectName>().unwrap(),
            SubjectName::Dns("broker.example.com".into())
        );
        assert!("*.example.com".parse::<SubjectName>().is_ok());
        assert!("localhost".parse::<SubjectName>().is_ok());
        for bad in [
            "", "a..b", "-a.com", "a_b.com", "*.com", "a.*.com", "1.2.3", "a.com.",
        ] {
            assert!(
                matches!(
                    bad.parse::<SubjectName>(),
                    Err(CertError::InvalidDnsName { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn serial_forms() {
        assert_eq!(canonical_serial(&[0, 0x7f, 0x01]), "7f01");
        assert_eq!(canonical_serial(&[0, 0x80]), "80");
        assert_eq!(canonical_serial(&[0x00]), "00");
        assert_eq!(canonical_serial(&[]), "00");
        assert_eq!(normalize_serial("00:7F:01").unwrap(), "7f01");
        assert_eq!(normalize_serial("0x7f01").unwrap(), "7f01");
        assert_eq!(normalize_serial("f01").unwrap(), "0f01");
        assert!(normalize_serial("xyz").is_err());
        assert!(normalize_serial("").is_err());
        let s = random_serial();
        assert_eq!(s.len(), 16);
        assert_eq!(canonical_serial(&s).len(), 32);
    }

    #[test]
    fn validity() {
        let v = Validity::days(1).normalized().unwrap();
        assert_eq!(v.not_before.nanosecond(), 0);
        assert!(v.not_after - v.not_before > Duration::hours(24));
        let now = OffsetDateTime::now_utc();
        assert!(matches!(
            Validity::between(now, now).normalized(),
            Err(CertError::InvalidValidity { .. })
        ));
    }

    #[test]
    fn time_format() {
        let t = time::macros::datetime!(2026-01-01 00:00:00 UTC);
        assert_eq!(fmt_time(&t), "2026-01-01 00:00:00 UTC");
    }
}
