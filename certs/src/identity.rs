//! The agent identity carried by an agent certificate.

use rustls_pki_types::CertificateDer;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

use crate::error::CertError;
use crate::names::{
    canonical_serial, fingerprint_sha256, validate_agent_id, validate_group, AGENT_URI_PREFIX,
};

/// Identity of an agent, taken only from its certificate (the
/// `ferry://agent/<group>/<agent_id>` URI SAN; never the CN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentIdentity {
    /// The agent id (last path segment of the identity URI).
    pub agent_id: String,
    /// The agent's group (first path segment of the identity URI).
    pub group: String,
    /// Certificate serial in [canonical form](crate::canonical_serial).
    pub serial: String,
    /// SHA-256 of the certificate DER, lowercase hex.
    pub fingerprint_sha256: String,
    /// Start of the certificate's validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of the certificate's validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// The agent identity of a (peer) certificate.
///
/// Does not verify the certificate: call it on a certificate rustls has
/// already verified (e.g. `connection.peer_certificates()[0]`).
pub fn agent_identity(cert: &CertificateDer<'_>) -> Result<AgentIdentity, CertError> {
    identity_of(cert, "peer certificate")
}

pub(crate) fn identity_of(
    cert: &CertificateDer<'_>,
    location: &str,
) -> Result<AgentIdentity, CertError> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
        CertError::BadCertificate {
            location: location.to_string(),
            detail: e.to_string(),
        }
    })?;
    let (group, agent_id) = identity_uri(&x509).map_err(|reason| CertError::NoAgentIdentity {
        location: location.to_string(),
        reason,
    })?;
    Ok(AgentIdentity {
        agent_id,
        group,
        serial: canonical_serial(x509.raw_serial()),
        fingerprint_sha256: fingerprint_sha256(cert.as_ref()),
        not_before: x509.validity().not_before.to_datetime(),
        not_after: x509.validity().not_after.to_datetime(),
    })
}

/// `(group, agent_id)` from the single ferry URI SAN, or why there is none.
fn identity_uri(x509: &X509Certificate<'_>) -> Result<(String, String), String> {
    let san = x509
        .subject_alternative_name()
        .map_err(|e| format!("malformed subjectAltName extension: {e}"))?
        .ok_or_else(|| "no subjectAltName extension".to_string())?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) if u.starts_with(AGENT_URI_PREFIX) => Some(*u),
            _ => None,
        })
        .collect();
    let uri = match uris.as_slice() {
        [] => return Err(format!("no {AGENT_URI_PREFIX}<group>/<agent_id> URI SAN")),
        [one] => *one,
        _ => {
            return Err(format!(
                "{} ferry agent URIs (exactly one allowed)",
                uris.len()
            ))
        }
    };
    let rest = &uri[AGENT_URI_PREFIX.len()..];
    let (group, agent_id) = rest.split_once('/').ok_or_else(|| {
        format!("identity URI {uri:?} is not {AGENT_URI_PREFIX}<group>/<agent_id>")
    })?;
    validate_group(group).map_err(|e| format!("identity URI {uri:?}: {e}"))?;
    validate_agent_id(agent_id).map_err(|e| format!("identity URI {uri:?}: {e}"))?;
    Ok((group.to_string(), agent_id.to_string()))
}

/// What the verifier logs about a presented certificate (no key material).
#[derive(Debug, Default)]
pub(crate) struct CertSummary {
    pub subject_cn: String,
    pub serial: String,
    pub not_before: String,
    pub not_after: String,
    pub claimed_identity: String,
}

pub(crate) fn summarize(cert: &CertificateDer<'_>) -> CertSummary {
    let Ok((_, x509)) = x509_parser::parse_x509_certificate(cert.as_ref()) else {
        return CertSummary {
            subject_cn: "<unparsable certificate>".into(),
            ..CertSummary::default()
        };
    };
    let subject_cn = x509
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("<none>")
        .to_string();
    let claimed_identity = match identity_uri(&x509) {
        Ok((g, a)) => format!("{g}/{a}"),
        Err(_) => "<none>".into(),
    };
    CertSummary {
        subject_cn,
        serial: canonical_serial(x509.raw_serial()),
        not_before: crate::names::fmt_time(&x509.validity().not_before.to_datetime()),
        not_after: crate::names::fmt_time(&x509.validity().not_after.to_datetime()),
        claimed_identity,
    }
}
