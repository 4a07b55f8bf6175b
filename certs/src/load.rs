//! Loading certificates, private keys and CRLs from PEM (or DER) files.

use std::collections::HashSet;
use std::path::Path;

use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::error::CertError;
use crate::fsutil;
use crate::names::canonical_serial;

/// How in-memory PEM is named in error messages.
pub(crate) const IN_MEMORY: &str = "in-memory PEM";

pub(crate) fn describe_pem_error(e: &pem::Error) -> String {
    // Never include file content: a PEM error on a key file could echo key bytes.
    match e {
        pem::Error::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        pem::Error::IllegalSectionStart { .. } => "malformed PEM BEGIN line".into(),
        pem::Error::Base64Decode(_) => "invalid base64 inside a PEM section".into(),
        pem::Error::Io(e) => format!("read error: {e}"),
        pem::Error::NoItemsFound => "no PEM items found".into(),
        pem::Error::SectionTooLarge => "PEM section too large".into(),
        _ => "malformed PEM".into(),
    }
}

fn looks_like_der(data: &[u8]) -> bool {
    data.first() == Some(&0x30) && !data.starts_with(b"-----")
}

fn has_pem_markers(data: &[u8]) -> bool {
    data.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Parses every certificate in PEM `data` (or a single DER certificate).
pub(crate) fn parse_certs(
    data: &[u8],
    location: &str,
) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Vec<CertificateDer<'static>> = if !has_pem_markers(data) && looks_like_der(data) {
        vec![CertificateDer::from(data.to_vec())]
    } else {
        CertificateDer::pem_slice_iter(data)
            .collect::<Result<_, _>>()
            .map_err(|e| CertError::BadPem {
                location: location.to_string(),
                detail: describe_pem_error(&e),
            })?
    };
    if certs.is_empty() {
        return Err(CertError::NoCertificate {
            location: location.to_string(),
        });
    }
    for (i, c) in certs.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_certificate(c.as_ref()) {
            return Err(CertError::BadCertificate {
                location: location.to_string(),
                detail: format!("certificate #{}: {e}", i + 1),
            });
        }
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, SEC1 or PKCS#1) in PEM `data` (or DER).
pub(crate) fn parse_private_key(
    data: &[u8],
    location: &str,
) -> Result<PrivateKeyDer<'static>, CertError> {
    if !has_pem_markers(data) && looks_like_der(data) {
        return PrivateKeyDer::try_from(data.to_vec()).map_err(|e| CertError::BadPrivateKey {
            location: location.to_string(),
            detail: e.to_string(),
        });
    }
    match PrivateKeyDer::from_pem_slice(data) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(CertError::NoPrivateKey {
            location: location.to_string(),
        }),
        Err(e) => Err(CertError::BadPem {
            location: location.to_string(),
            detail: describe_pem_error(&e),
        }),
    }
}

/// Parses every CRL in PEM `data` (or a single DER CRL).
pub(crate) fn parse_crls(
    data: &[u8],
    location: &str,
) -> Result<Vec<CertificateRevocationListDer<'static>>, CertError> {
    let crls: Vec<CertificateRevocationListDer<'static>> =
        if !has_pem_markers(data) && looks_like_der(data) {
            vec![CertificateRevocationListDer::from(data.to_vec())]
        } else {
            CertificateRevocationListDer::pem_slice_iter(data)
                .collect::<Result<_, _>>()
                .map_err(|e| CertError::BadPem {
                    location: location.to_string(),
                    detail: describe_pem_error(&e),
                })?
        };
    if crls.is_empty() {
        return Err(CertError::NoCrl {
            location: location.to_string(),
        });
    }
    for (i, c) in crls.iter().enumerate() {
        if let Err(e) = x509_parser::parse_x509_crl(c.as_ref()) {
            return Err(CertError::BadCrl {
                location: location.to_string(),
                detail: format!("CRL #{}: {e}", i + 1),
            });
        }
    }
    Ok(crls)
}

/// Canonical serials listed in the given CRLs.
pub(crate) fn serials_in_crls(
    crls: &[CertificateRevocationListDer<'_>],
    location: &str,
) -> Result<HashSet<String>, CertError> {
    let mut out = HashSet::new();
    for crl in crls {
        let (_, parsed) =
            x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| CertError::BadCrl {
                location: location.to_string(),
                detail: e.to_string(),
            })?;
        for revoked in parsed.iter_revoked_certificates() {
            out.insert(canonical_serial(revoked.raw_serial()));
        }
    }
    Ok(out)
}

/// All certificates in a PEM file (a DER file with one certificate also works).
/// Errors if the file holds none.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let data = fsutil::read(path)?;
    parse_certs(&data, &path.display().to_string())
}

/// The first private key in a PEM (or DER) file. Errors if there is none.
///
/// Logs a warning if the file is readable or writable by group or others.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let data = fsutil::read(path)?;
    if let Some(mode) = fsutil::loose_mode(path) {
        tracing::warn!(
            path = %path.display(),
            mode = format_args!("{mode:04o}"),
            "private key file is accessible by group or others; it should be mode 0600"
        );
    }
    parse_private_key(&data, &path.display().to_string())
}

/// All CRLs in a PEM (or DER) file. Errors if there is none.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, CertError> {
    let data = fsutil::read(path)?;
    parse_crls(&data, &path.display().to_string())
}

/// Serials (in [canonical form](crate::canonical_serial)) listed in the CRL
/// file, for closing live sessions of revoked agents. Compare with
/// [`AgentIdentity::serial`](crate::AgentIdentity::serial).
pub fn revoked_serials(path: &Path) -> Result<HashSet<String>, CertError> {
    let crls = load_crls(path)?;
    serials_in_crls(&crls, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_garbage_files() {
        assert!(matches!(
            parse_certs(b"", "x"),
            Err(CertError::NoCertificate { .. })
        ));
        assert!(matches!(
            parse_private_key(b"hello", "x"),
            Err(CertError::NoPrivateKey { .. })
        ));
        assert!(matches!(parse_crls(b"", "x"), Err(CertError::NoCrl { .. })));
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_certs(broken, "x"),
            Err(CertError::BadPem { .. })
        ));
        let not_x509 = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_certs(not_x509, "x"),
            Err(CertError::BadCertificate { .. })
        ));
        let key_secret = b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0!!\n-----END PRIVATE KEY-----\n";
        let msg = parse_private_key(key_secret, "/k.pem")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/k.pem"), "{msg}");
        assert!(!msg.contains("c2VjcmV0"), "{msg}");
    }

    #[test]
    fn missing_file_names_the_path() {
        let msg = load_certs(Path::new("/nonexistent/ferry/a.pem"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("/nonexistent/ferry/a.pem"), "{msg}");
    }
}
