//! Why a TLS handshake was refused, from either side's point of view.
//!
//! # Where the information comes from (rustls 0.23 / quinn-proto 0.11)
//!
//! webpki errors become `rustls::CertificateError`s (`rustls::webpki::pki_error`):
//! `CertExpired` → `ExpiredContext`, `CertNotValidYet` → `NotValidYetContext`
//! (`InvalidCertValidity` → plain `Expired`), `UnknownIssuer` → `UnknownIssuer`,
//! `CertRevoked` → `Revoked`, `CertNotValidForName` → `NotValidForNameContext`,
//! `RequiredEkuNotFoundContext` → `InvalidPurposeContext`.
//!
//! The alert sent for each (`impl From<CertificateError> for AlertDescription`):
//!
//! | cause | rustls error | alert |
//! |---|---|---|
//! | no client certificate | `Error::NoCertificatesPresented` | certificate_required (116) |
//! | other CA | `UnknownIssuer` | unknown_ca (48) |
//! | other CA with our CA's name | `BadSignature` | decrypt_error (51) |
//! | expired | `Expired`, `ExpiredContext` | certificate_expired (45) |
//! | not yet valid | `NotValidYet`, `NotValidYetContext` | certificate_expired (45) |
//! | revoked | `Revoked` | certificate_revoked (44) |
//! | no ferry identity | `ApplicationVerificationFailure` | access_denied (49) |
//! | server name mismatch | `NotValidForName`, `NotValidForNameContext` | bad_certificate (42) |
//! | wrong EKU | `InvalidPurpose`, `InvalidPurposeContext` | unsupported_certificate (43) |
//! | no common ALPN | `Error::NoApplicationProtocol` | no_application_protocol (120) |
//!
//! quinn-proto (`crypto::rustls`, `read_handshake`) turns a rustls error into a
//! `TransportError { code: 0x100 + alert, reason: error.to_string() }`, and
//! that code and reason travel in the CONNECTION_CLOSE to the peer. The reason
//! is the rustls `Display`, e.g. `invalid peer certificate: certificate not
//! valid yet: verification time … (UNIX), but certificate is not valid before …`
//! — which is how [`Refusal::from_alert`] tells `NotYetValid` from `Expired`.

use std::fmt;

use rustls::{AlertDescription, CertificateError};

/// Why the broker refused (or an agent was refused) — one distinct value per cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The client presented no certificate.
    NoClientCertificate,
    /// The certificate was not issued by the expected CA.
    UnknownCa,
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate is listed in the CRL.
    Revoked,
    /// The client certificate carries no valid ferry agent identity URI.
    NoAgentIdentity,
    /// The server certificate is not valid for the name the client dialled.
    BadServerName,
    /// Client and server share no ALPN protocol.
    NoCommonAlpn,
    /// Anything else (message describes it).
    Other(String),
}

/// Text used for `Refusal::Other` when a certificate has the wrong extended key usage.
pub const WRONG_KEY_USAGE: &str =
    "certificate not valid for this use (extended key usage: server vs client certificate)";

impl Refusal {
    /// Classifies a rustls error (as returned by `process_new_packets`, or by
    /// a certificate verifier).
    pub fn from_rustls(e: &rustls::Error) -> Refusal {
        match e {
            rustls::Error::NoCertificatesPresented => Refusal::NoClientCertificate,
            rustls::Error::NoApplicationProtocol => Refusal::NoCommonAlpn,
            rustls::Error::InvalidCertificate(ce) => Self::from_certificate_error(ce),
            rustls::Error::AlertReceived(alert) => Self::from_alert(u8::from(*alert), ""),
            other => Refusal::Other(other.to_string()),
        }
    }

    fn from_certificate_error(ce: &CertificateError) -> Refusal {
        match ce {
            // BadSignature: a CA with the same name but another key signed it.
            CertificateError::UnknownIssuer | CertificateError::BadSignature => Refusal::UnknownCa,
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => Refusal::Expired,
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                Refusal::NotYetValid
            }
            CertificateError::Revoked => Refusal::Revoked,
            CertificateError::ApplicationVerificationFailure => Refusal::NoAgentIdentity,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                Refusal::BadServerName
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                Refusal::Other(WRONG_KEY_USAGE.to_string())
            }
            other => Refusal::Other(format!("invalid certificate: {other}")),
        }
    }

    /// Classifies a TLS alert number as seen in a QUIC CONNECTION_CLOSE
    /// (crypto error code = 0x100 + alert) plus the close reason text.
    ///
    /// The reason separates `Expired` from `NotYetValid` (both are alert 45);
    /// with an empty reason alert 45 is reported as `Expired`. Alert 42
    /// (bad_certificate) is `BadServerName` only when the reason says so, and
    /// alert 51 (decrypt_error) is `UnknownCa` when the reason is a bad
    /// certificate signature (a foreign CA with the same name as ours).
    pub fn from_alert(alert: u8, reason: &str) -> Refusal {
        let r = reason.to_ascii_lowercase();
        match AlertDescription::from(alert) {
            AlertDescription::CertificateRequired => Refusal::NoClientCertificate,
            AlertDescription::UnknownCA => {
                if r.contains("revocation") {
                    Refusal::Other(format!("revocation status could not be checked: {reason}"))
                } else {
                    Refusal::UnknownCa
                }
            }
            AlertDescription::CertificateExpired => {
                if r.contains("not valid yet")
                    || r.contains("notvalidyet")
                    || r.contains("not yet valid")
                {
                    Refusal::NotYetValid
                } else {
                    Refusal::Expired
                }
            }
            AlertDescription::CertificateRevoked => Refusal::Revoked,
            AlertDescription::AccessDenied => Refusal::NoAgentIdentity,
            AlertDescription::BadCertificate
                if r.contains("not valid for name") || r.contains("notvalidforname") =>
            {
                Refusal::BadServerName
            }
            AlertDescription::DecryptError if r.contains("badsignature") => Refusal::UnknownCa,
            AlertDescription::NoApplicationProtocol => Refusal::NoCommonAlpn,
            AlertDescription::UnsupportedCertificate => Refusal::Other(WRONG_KEY_USAGE.to_string()),
            other => {
                if reason.is_empty() {
                    Refusal::Other(format!("TLS alert {alert} ({other:?})"))
                } else {
                    Refusal::Other(format!("TLS alert {alert} ({other:?}): {reason}"))
                }
            }
        }
    }

    /// Classifies a QUIC transport error code and reason: `Some` for crypto
    /// errors (0x100..=0x1ff), `None` for anything else.
    pub fn from_quic_error_code(code: u64, reason: &str) -> Option<Refusal> {
        if (0x100..=0x1ff).contains(&code) {
            u8::try_from(code - 0x100)
                .ok()
                .map(|alert| Self::from_alert(alert, reason))
        } else {
            None
        }
    }

    /// The TLS alert rustls sends for this cause (`None` for `Other`).
    pub fn alert(&self) -> Option<u8> {
        let a = match self {
            Refusal::NoClientCertificate => AlertDescription::CertificateRequired,
            Refusal::UnknownCa => AlertDescription::UnknownCA,
            Refusal::Expired | Refusal::NotYetValid => AlertDescription::CertificateExpired,
            Refusal::Revoked => AlertDescription::CertificateRevoked,
            Refusal::NoAgentIdentity => AlertDescription::AccessDenied,
            Refusal::BadServerName => AlertDescription::BadCertificate,
            Refusal::NoCommonAlpn => AlertDescription::NoApplicationProtocol,
            Refusal::Other(_) => return None,
        };
        Some(u8::from(a))
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NoClientCertificate => f.write_str("no client certificate presented"),
            Refusal::UnknownCa => f.write_str("certificate issued by another CA"),
            Refusal::Expired => f.write_str("certificate expired"),
            Refusal::NotYetValid => f.write_str("certificate not yet valid"),
            Refusal::Revoked => f.write_str("certificate revoked"),
            Refusal::NoAgentIdentity => f.write_str("certificate carries no ferry agent identity"),
            Refusal::BadServerName => {
                f.write_str("server certificate not valid for the name dialled")
            }
            Refusal::NoCommonAlpn => f.write_str("no common application protocol (ALPN)"),
            Refusal::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::UnixTime;
    use std::time::Duration;

    fn both(e: rustls::Error) -> (Refusal, Refusal) {
        // What quinn does: alert from the error, reason = Display of the error.
        let alert = match &e {
            rustls::Error::InvalidCertificate(ce) => AlertDescription::from(ce.clone()),
            rustls::Error::NoCertificatesPresented => AlertDescription::CertificateRequired,
            rustls::Error::NoApplicationProtocol => AlertDescription::NoApplicationProtocol,
            _ => AlertDescription::InternalError,
        };
        (
            Refusal::from_rustls(&e),
            Refusal::from_alert(u8::from(alert), &e.to_string()),
        )
    }

    #[test]
    fn rustls_errors_and_alerts_agree() {
        let t = UnixTime::since_unix_epoch(Duration::from_secs(2_000_000_000));
        let t0 = UnixTime::since_unix_epoch(Duration::from_secs(1_000_000_000));
        let cases = [
            (
                rustls::Error::NoCertificatesPresented,
                Refusal::NoClientCertificate,
            ),
            (CertificateError::UnknownIssuer.into(), Refusal::UnknownCa),
            (CertificateError::BadSignature.into(), Refusal::UnknownCa),
            (CertificateError::Expired.into(), Refusal::Expired),
            (
                CertificateError::ExpiredContext {
                    time: t,
                    not_after: t0,
                }
                .into(),
                Refusal::Expired,
            ),
            (CertificateError::NotValidYet.into(), Refusal::NotYetValid),
            (
                CertificateError::NotValidYetContext {
                    time: t0,
                    not_before: t,
                }
                .into(),
                Refusal::NotYetValid,
            ),
            (CertificateError::Revoked.into(), Refusal::Revoked),
            (
                CertificateError::ApplicationVerificationFailure.into(),
                Refusal::NoAgentIdentity,
            ),
            (
                CertificateError::NotValidForName.into(),
                Refusal::BadServerName,
            ),
            (rustls::Error::NoApplicationProtocol, Refusal::NoCommonAlpn),
            (
                CertificateError::InvalidPurpose.into(),
                Refusal::Other(WRONG_KEY_USAGE.into()),
            ),
        ];
        for (err, want) in cases {
            let text = err.to_string();
            let (a, b) = both(err);
            assert_eq!(a, want, "from_rustls({text})");
            assert_eq!(b, want, "from_alert(.., {text:?})");
            if let Some(alert) = want.alert() {
                assert_eq!(
                    Refusal::from_quic_error_code(0x100 + u64::from(alert), &text),
                    Some(want)
                );
            }
        }
    }

    #[test]
    fn alert_numbers() {
        assert_eq!(Refusal::from_alert(116, ""), Refusal::NoClientCertificate);
        assert_eq!(Refusal::from_alert(48, ""), Refusal::UnknownCa);
        assert_eq!(Refusal::from_alert(45, ""), Refusal::Expired);
        assert_eq!(Refusal::from_alert(44, ""), Refusal::Revoked);
        assert_eq!(Refusal::from_alert(49, ""), Refusal::NoAgentIdentity);
        assert_eq!(Refusal::from_alert(120, ""), Refusal::NoCommonAlpn);
        assert!(matches!(Refusal::from_alert(42, ""), Refusal::Other(_)));
        assert!(matches!(Refusal::from_alert(80, "boom"), Refusal::Other(s) if s.contains("boom")));
        assert_eq!(Refusal::from_quic_error_code(0x0a, "x"), None);
        assert_eq!(
            Refusal::from_rustls(&rustls::Error::AlertReceived(
                AlertDescription::CertificateRevoked
            )),
            Refusal::Revoked
        );
        assert_eq!(Refusal::Revoked.to_string(), "certificate revoked");
        assert_eq!(
            Refusal::UnknownCa.to_string(),
            "certificate issued by another CA"
        );
    }
}
