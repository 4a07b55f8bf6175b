//! rustls client and server configurations for the tunnel (TLS 1.3, ring).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use time::OffsetDateTime;

use crate::error::CertError;
use crate::identity::{identity_of, summarize, AgentIdentity};
use crate::load;
use crate::load::{parse_certs, parse_crls, parse_private_key, IN_MEMORY};
use crate::refusal::Refusal;

/// Files the broker needs. All are mandatory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// CA certificate(s) that agent certificates must chain to (`ca.pem`).
    pub ca: PathBuf,
    /// Broker certificate chain.
    pub cert: PathBuf,
    /// Broker private key.
    pub key: PathBuf,
    /// CRL signed by the CA (`crl.pem`).
    pub crl: PathBuf,
}

/// Files an agent needs. All are mandatory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTlsFiles {
    /// CA certificate the broker certificate must chain to (`ca.pem`).
    pub ca: PathBuf,
    /// The agent's certificate.
    pub cert: PathBuf,
    /// The agent's private key.
    pub key: PathBuf,
}

/// The crypto provider used everywhere: ring, TLS 1.3 suites only.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn root_store(
    cas: Vec<CertificateDer<'static>>,
    location: &str,
) -> Result<RootCertStore, CertError> {
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots.add(ca).map_err(|e| CertError::BadCertificate {
            location: location.to_string(),
            detail: format!("not usable as a trust anchor: {e}"),
        })?;
    }
    Ok(roots)
}

fn map_key_error(e: rustls::Error, cert_loc: &str, key_loc: &str, what: &str) -> CertError {
    match e {
        rustls::Error::InconsistentKeys(_) => CertError::KeyMismatch {
            cert: cert_loc.to_string(),
            key: key_loc.to_string(),
        },
        other => CertError::rustls(
            format!("cannot use {what} certificate {cert_loc} with key {key_loc}"),
            other,
        ),
    }
}

fn alpn_list(alpn: &[&[u8]]) -> Vec<Vec<u8>> {
    alpn.iter().map(|p| p.to_vec()).collect()
}

/// Parsed CA, certificate chain and key, with where each came from.
struct Material {
    cas: Vec<CertificateDer<'static>>,
    ca_loc: String,
    chain: Vec<CertificateDer<'static>>,
    cert_loc: String,
    key: PrivateKeyDer<'static>,
    key_loc: String,
}

impl Material {
    fn from_files(ca: &Path, cert: &Path, key: &Path) -> Result<Self, CertError> {
        Ok(Material {
            cas: load::load_certs(ca)?,
            ca_loc: ca.display().to_string(),
            chain: load::load_certs(cert)?,
            cert_loc: cert.display().to_string(),
            key: load::load_private_key(key)?,
            key_loc: key.display().to_string(),
        })
    }

    fn from_pem(
        ca_pem: &str,
        cert_pem: &str,
        key_pem: &str,
        role: &str,
    ) -> Result<Self, CertError> {
        let ca_loc = "in-memory CA PEM".to_string();
        let cert_loc = format!("in-memory {role} certificate PEM");
        let key_loc = format!("in-memory {role} key PEM");
        Ok(Material {
            cas: parse_certs(ca_pem.as_bytes(), &ca_loc)?,
            chain: parse_certs(cert_pem.as_bytes(), &cert_loc)?,
            key: parse_private_key(key_pem.as_bytes(), &key_loc)?,
            ca_loc,
            cert_loc,
            key_loc,
        })
    }
}

/// Builds the broker's server config from already-parsed parts.
fn build_server_config(
    m: Material,
    crls: Vec<CertificateRevocationListDer<'static>>,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, CertError> {
    let Material {
        cas,
        ca_loc,
        chain,
        cert_loc,
        key,
        key_loc,
    } = m;
    let (ca_loc, cert_loc, key_loc) = (ca_loc.as_str(), cert_loc.as_str(), key_loc.as_str());
    warn_if_outside_validity(&chain, cert_loc, "broker");
    let provider = crypto_provider();
    let roots = Arc::new(root_store(cas, ca_loc)?);
    let inner = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .with_crls(crls)
        .build()
        .map_err(|error| CertError::Verifier {
            context: format!(
                "cannot build client certificate verifier from CA {ca_loc} and its CRL"
            ),
            error,
        })?;
    let verifier = Arc::new(ClassifyingClientVerifier::new(inner));
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| CertError::rustls("cannot select TLS 1.3", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| map_key_error(e, cert_loc, key_loc, "broker"))?;
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// Broker config: TLS 1.3 only (QUIC), ring provider, ALPN set to `alpn`,
/// client certificate REQUIRED and verified against `ca` only, with the CRL,
/// through a [`ClassifyingClientVerifier`]. There is no way to build a config
/// that skips verification.
///
/// To pick up a new `crl.pem`, build a new config and hand it to the endpoint
/// (`quinn::Endpoint::set_server_config`); existing connections are unaffected
/// (close them using [`revoked_serials`](crate::revoked_serials)).
pub fn server_config(
    files: &ServerTlsFiles,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, CertError> {
    let m = Material::from_files(&files.ca, &files.cert, &files.key)?;
    let crls = load::load_crls(&files.crl)?;
    build_server_config(m, crls, alpn)
}

/// [`server_config`] from in-memory PEM. Each string of `crl_pems` may hold
/// one or more CRLs; an empty slice means "nothing revoked".
pub fn server_config_from_pem(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    crl_pems: &[String],
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, CertError> {
    let m = Material::from_pem(ca_pem, cert_pem, key_pem, "broker")?;
    let mut crls = Vec::new();
    for pem in crl_pems {
        crls.extend(parse_crls(pem.as_bytes(), "in-memory CRL PEM")?);
    }
    build_server_config(m, crls, alpn)
}

/// Checks the agent's own certificate: validity period and ferry identity.
fn check_own_certificate(
    chain: &[CertificateDer<'static>],
    cert_loc: &str,
) -> Result<AgentIdentity, CertError> {
    let leaf = chain.first().ok_or_else(|| CertError::NoCertificate {
        location: cert_loc.to_string(),
    })?;
    let identity = identity_of(leaf, cert_loc)?;
    let now = OffsetDateTime::now_utc();
    if now > identity.not_after {
        return Err(CertError::OwnCertificateExpired {
            location: cert_loc.to_string(),
            not_after: identity.not_after,
        });
    }
    if now < identity.not_before {
        return Err(CertError::OwnCertificateNotYetValid {
            location: cert_loc.to_string(),
            not_before: identity.not_before,
        });
    }
    Ok(identity)
}

fn warn_if_outside_validity(chain: &[CertificateDer<'static>], cert_loc: &str, what: &str) {
    let Some(leaf) = chain.first() else { return };
    let Ok((_, x509)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return;
    };
    let now = OffsetDateTime::now_utc();
    let nb = x509.validity().not_before.to_datetime();
    let na = x509.validity().not_after.to_datetime();
    if now > na {
        tracing::warn!(cert = cert_loc, not_after = %crate::names::fmt_time(&na), "{what} certificate has expired; peers will refuse it");
    } else if now < nb {
        tracing::warn!(cert = cert_loc, not_before = %crate::names::fmt_time(&nb), "{what} certificate is not valid yet; peers will refuse it");
    }
}

fn client_builder(
    cas: Vec<CertificateDer<'static>>,
    ca_loc: &str,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, CertError>
{
    let roots = root_store(cas, ca_loc)?;
    Ok(
        rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| CertError::rustls("cannot select TLS 1.3", e))?
            .with_root_certificates(roots),
    )
}

fn build_client_config(
    m: Material,
    alpn: &[&[u8]],
) -> Result<(rustls::ClientConfig, AgentIdentity), CertError> {
    let identity = check_own_certificate(&m.chain, &m.cert_loc)?;
    let mut config = client_builder(m.cas, &m.ca_loc)?
        .with_client_auth_cert(m.chain, m.key)
        .map_err(|e| map_key_error(e, &m.cert_loc, &m.key_loc, "agent"))?;
    config.alpn_protocols = alpn_list(alpn);
    Ok((config, identity))
}

/// Agent config: TLS 1.3 only, root store = only our CA (no system roots),
/// client auth with the agent certificate and key, ALPN set.
///
/// Checks the agent's own certificate first: expired, not yet valid, or no
/// ferry identity each give a distinct [`CertError`], so an agent refuses to
/// start with a clear message rather than being refused by the broker.
pub fn client_config(
    files: &ClientTlsFiles,
    alpn: &[&[u8]],
) -> Result<(rustls::ClientConfig, AgentIdentity), CertError> {
    let m = Material::from_files(&files.ca, &files.cert, &files.key)?;
    build_client_config(m, alpn)
}

/// [`client_config`] from in-memory PEM.
pub fn client_config_from_pem(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> Result<(rustls::ClientConfig, AgentIdentity), CertError> {
    let m = Material::from_pem(ca_pem, cert_pem, key_pem, "agent")?;
    build_client_config(m, alpn)
}

/// A client config without a client certificate, for tests that need to
/// misbehave. It still verifies the server against `ca_pem`.
pub fn client_config_without_client_cert(
    ca_pem: &str,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, CertError> {
    let cas = parse_certs(ca_pem.as_bytes(), IN_MEMORY)?;
    let mut config = client_builder(cas, IN_MEMORY)?.with_no_client_auth();
    config.alpn_protocols = alpn_list(alpn);
    Ok(config)
}

/// Wraps the webpki client verifier.
///
/// On failure it logs a warning with the classified [`Refusal`], the subject
/// CN, serial, validity and claimed identity of the presented certificate
/// (never key material), then returns the original rustls error so the right
/// TLS alert goes out. On success it additionally requires a valid ferry agent
/// identity (URI SAN); without one it returns
/// `InvalidCertificate(ApplicationVerificationFailure)` (alert access_denied)
/// and logs "no ferry agent identity".
///
/// Client authentication is always mandatory, whatever the inner verifier says.
#[derive(Debug)]
pub struct ClassifyingClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClassifyingClientVerifier {
    /// Wraps `inner` (normally a `WebPkiClientVerifier` with CRLs).
    pub fn new(inner: Arc<dyn ClientCertVerifier>) -> Self {
        ClassifyingClientVerifier { inner }
    }
}

impl ClientCertVerifier for ClassifyingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(verified) => match identity_of(end_entity, "client certificate") {
                Ok(identity) => {
                    tracing::debug!(
                        agent_id = %identity.agent_id,
                        group = %identity.group,
                        serial = %identity.serial,
                        "client certificate accepted"
                    );
                    Ok(verified)
                }
                Err(e) => {
                    let s = summarize(end_entity);
                    tracing::warn!(
                        reason = %Refusal::NoAgentIdentity,
                        detail = %e,
                        subject_cn = %s.subject_cn,
                        serial = %s.serial,
                        not_before = %s.not_before,
                        not_after = %s.not_after,
                        "refused client certificate: no ferry agent identity"
                    );
                    Err(CertificateError::ApplicationVerificationFailure.into())
                }
            },
            Err(err) => {
                let s = summarize(end_entity);
                tracing::warn!(
                    reason = %Refusal::from_rustls(&err),
                    error = %err,
                    subject_cn = %s.subject_cn,
                    claimed_identity = %s.claimed_identity,
                    serial = %s.serial,
                    not_before = %s.not_before,
                    not_after = %s.not_after,
                    "refused client certificate"
                );
                Err(err)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
