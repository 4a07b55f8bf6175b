//! The one error type of this crate.

use std::path::PathBuf;

use time::OffsetDateTime;

use crate::names::fmt_time;

/// Everything that can go wrong while issuing, loading or using certificates.
///
/// Messages name the file (or "in-memory PEM") and what is wrong with it. They
/// never contain key material. Underlying errors are part of the message
/// (not chained as `source()`), so printing an error with `{}` is enough.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// Reading, writing or creating a file or directory failed.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        error: std::io::Error,
    },

    /// A file that should hold certificates holds none.
    #[error("no certificate found in {location}")]
    NoCertificate {
        /// File path or "in-memory PEM".
        location: String,
    },

    /// A file that should hold a private key holds none.
    #[error("no private key found in {location}")]
    NoPrivateKey {
        /// File path or "in-memory PEM".
        location: String,
    },

    /// A file that should hold a certificate revocation list holds none.
    #[error("no certificate revocation list found in {location}")]
    NoCrl {
        /// File path or "in-memory PEM".
        location: String,
    },

    /// PEM framing or base64 is broken.
    #[error("invalid PEM in {location}: {detail}")]
    BadPem {
        /// File path or "in-memory PEM".
        location: String,
        /// What is wrong (never includes file content).
        detail: String,
    },

    /// A certificate does not parse as X.509.
    #[error("invalid certificate in {location}: {detail}")]
    BadCertificate {
        /// File path or "in-memory PEM".
        location: String,
        /// What is wrong.
        detail: String,
    },

    /// A CRL does not parse.
    #[error("invalid certificate revocation list in {location}: {detail}")]
    BadCrl {
        /// File path or "in-memory PEM".
        location: String,
        /// What is wrong.
        detail: String,
    },

    /// A private key does not parse or is of an unsupported type.
    #[error("invalid private key in {location}: {detail}")]
    BadPrivateKey {
        /// File path or "in-memory PEM".
        location: String,
        /// What is wrong (never includes key material).
        detail: String,
    },

    /// A certificate and the private key given with it do not belong together.
    #[error("certificate {cert} does not match private key {key}")]
    KeyMismatch {
        /// Where the certificate came from.
        cert: String,
        /// Where the key came from.
        key: String,
    },

    /// `init` was pointed at a directory that already holds a CA.
    #[error("CA directory {} already holds a CA ({} exists); refusing to overwrite", dir.display(), existing.display())]
    CaExists {
        /// The CA directory.
        dir: PathBuf,
        /// The file that is already there.
        existing: PathBuf,
    },

    /// `load` was pointed at a directory without a CA.
    #[error("no CA in {}: {} does not exist (initialise the CA first)", dir.display(), missing.display())]
    CaMissing {
        /// The CA directory.
        dir: PathBuf,
        /// The file that is missing.
        missing: PathBuf,
    },

    /// An agent id does not follow the rules.
    #[error("invalid agent id {value:?}: {reason}")]
    InvalidAgentId {
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },

    /// A group name does not follow the rules.
    #[error("invalid group {value:?}: {reason}")]
    InvalidGroup {
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },

    /// A DNS name given for a server certificate is not a valid host name.
    #[error("invalid DNS name {value:?}: {reason}")]
    InvalidDnsName {
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },

    /// A common name is empty, too long or contains control characters.
    #[error("invalid common name {value:?}: {reason}")]
    InvalidCommonName {
        /// The rejected value.
        value: String,
        /// Why.
        reason: String,
    },

    /// A serial number given by the user is not hexadecimal.
    #[error("invalid serial number {value:?}: expected hexadecimal digits (colons allowed)")]
    InvalidSerial {
        /// The rejected value.
        value: String,
    },

    /// A validity period that ends before it starts.
    #[error("invalid validity: not_after {} is not after not_before {}", fmt_time(.not_after), fmt_time(.not_before))]
    InvalidValidity {
        /// Start.
        not_before: OffsetDateTime,
        /// End.
        not_after: OffsetDateTime,
    },

    /// A server certificate was requested without any DNS name or IP address.
    #[error("server certificate {common_name:?} needs at least one DNS name or IP address")]
    NoServerNames {
        /// CN of the requested certificate.
        common_name: String,
    },

    /// The agent's own certificate has expired.
    #[error("agent certificate {location} expired on {}", fmt_time(.not_after))]
    OwnCertificateExpired {
        /// File path or "in-memory PEM".
        location: String,
        /// When it expired.
        not_after: OffsetDateTime,
    },

    /// The agent's own certificate is not valid yet.
    #[error("agent certificate {location} is not valid before {} (check the clock)", fmt_time(.not_before))]
    OwnCertificateNotYetValid {
        /// File path or "in-memory PEM".
        location: String,
        /// When it becomes valid.
        not_before: OffsetDateTime,
    },

    /// A certificate carries no (valid) ferry agent identity URI.
    #[error("certificate in {location} carries no ferry agent identity: {reason}")]
    NoAgentIdentity {
        /// File path, "in-memory PEM" or "peer certificate".
        location: String,
        /// What is missing or malformed.
        reason: String,
    },

    /// `revoke` found nothing to revoke.
    #[error("nothing to revoke: {what}")]
    NothingToRevoke {
        /// What was looked for and why it did not match.
        what: String,
    },

    /// rcgen refused to build a certificate, key or CRL.
    #[error("{context}: {error}")]
    Rcgen {
        /// What was being built.
        context: String,
        /// The underlying error.
        error: rcgen::Error,
    },

    /// rustls refused a configuration.
    #[error("{context}: {error}")]
    Rustls {
        /// What was being built.
        context: String,
        /// The underlying error.
        error: rustls::Error,
    },

    /// The client certificate verifier could not be built (bad CA or CRL).
    #[error("{context}: {error}")]
    Verifier {
        /// What was being built.
        context: String,
        /// The underlying error.
        error: rustls::server::VerifierBuilderError,
    },

    /// The ledger (`issued.json`) could not be parsed or serialised.
    #[error("ledger {} is not valid: {error}", path.display())]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// The underlying error.
        error: serde_json::Error,
    },
}

impl CertError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        error: std::io::Error,
    ) -> Self {
        CertError::Io {
            action,
            path: path.into(),
            error,
        }
    }

    pub(crate) fn rcgen(context: impl Into<String>, error: rcgen::Error) -> Self {
        CertError::Rcgen {
            context: context.into(),
            error,
        }
    }

    pub(crate) fn rustls(context: impl Into<String>, error: rustls::Error) -> Self {
        CertError::Rustls {
            context: context.into(),
            error,
        }
    }
}
