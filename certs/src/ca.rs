//! The certificate authority: init/load, issuing, ledger, revocation.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevokedCertParams, SanType, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::error::CertError;
use crate::fsutil::{self, DIR_MODE, PRIVATE_MODE, PUBLIC_MODE};
use crate::load::{parse_certs, IN_MEMORY};
use crate::names::{
    agent_uri, canonical_serial, normalize_serial, random_serial, serial_bytes, validate_agent_id,
    validate_common_name, validate_group, SubjectName, Validity,
};

/// CA certificate file name inside the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// CA private key file name inside the CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// CRL file name inside the CA directory.
pub const CRL_FILE: &str = "crl.pem";
/// Ledger file name inside the CA directory.
pub const LEDGER_FILE: &str = "issued.json";

/// How long each CRL written by the CA stays valid (`next_update`).
pub const CRL_LIFETIME: Duration = Duration::days(3650);

/// What a ledger entry was issued as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertKind {
    /// Broker (server) certificate, EKU serverAuth.
    Server,
    /// Agent (client) certificate, EKU clientAuth.
    Agent,
}

impl fmt::Display for CertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CertKind::Server => "server",
            CertKind::Agent => "agent",
        })
    }
}

/// One certificate issued by the CA, as recorded in `issued.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Serial in [canonical form](crate::canonical_serial).
    pub serial: String,
    /// Server or agent.
    pub kind: CertKind,
    /// Subject CN.
    pub common_name: String,
    /// Agent id (agent certificates only).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Group (agent certificates only).
    #[serde(default)]
    pub group: Option<String>,
    /// DNS names (server certificates only).
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP addresses (server certificates only).
    #[serde(default)]
    pub ip_addresses: Vec<IpAddr>,
    /// Start of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// End of validity.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// When it was revoked, if it was.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    /// Where the certificate was written (if written through
    /// [`CertificateAuthority::write_issued`]).
    #[serde(default)]
    pub cert_path: Option<PathBuf>,
}

/// The on-disk ledger: the entries plus the number of the last CRL written.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ledger {
    /// Number of the most recent CRL (`crl.pem`).
    crl_number: u64,
    /// One entry per issued certificate, in issue order.
    certificates: Vec<LedgerEntry>,
}

/// What to revoke.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevokeSelector {
    /// One certificate by serial (any hex form: colons, upper case, leading zeros).
    Serial(String),
    /// Every unrevoked certificate of this agent id (in any group).
    AgentId(String),
    /// The certificate in this file.
    CertFile(PathBuf),
}

/// A freshly issued certificate and its private key.
///
/// The key is only reachable through [`IssuedCert::key_pem`] and
/// [`IssuedCert::write`]; `Debug` does not show it.
#[derive(Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    key_pem: String,
    /// Serial in [canonical form](crate::canonical_serial).
    pub serial: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_after: OffsetDateTime,
}

impl fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedCert")
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// Writes the certificate (mode 0644) and the key (mode 0600; an existing
    /// file gets its mode fixed before anything is written to it).
    pub fn write(&self, cert_path: &Path, key_path: &Path) -> Result<(), CertError> {
        fsutil::write_with_mode(key_path, self.key_pem.as_bytes(), PRIVATE_MODE)?;
        fsutil::write_with_mode(cert_path, self.cert_pem.as_bytes(), PUBLIC_MODE)?;
        Ok(())
    }

    /// The private key, PEM (PKCS#8). Do not log it.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, CertError> {
        let mut certs = parse_certs(self.cert_pem.as_bytes(), IN_MEMORY)?;
        Ok(certs.swap_remove(0))
    }
}

/// A CA living in a directory (`ca.pem`, `ca.key`, `crl.pem`, `issued.json`).
pub struct CertificateAuthority {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    subject_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
}

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn rcgen_err(context: &str) -> impl FnOnce(rcgen::Error) -> CertError + '_ {
    move |e| CertError::rcgen(context, e)
}

fn to_serial_number(canonical: &str) -> Result<SerialNumber, CertError> {
    Ok(SerialNumber::from_slice(&serial_bytes(canonical)?))
}

fn crl_number(n: u64) -> SerialNumber {
    SerialNumber::from_slice(&n.to_be_bytes())
}

impl CertificateAuthority {
    /// Creates a new CA in `dir`.
    ///
    /// Creates `dir` (mode 0700) if missing; refuses if `ca.pem` or `ca.key`
    /// already exists. Writes `ca.pem`, `ca.key` (0600), an empty `crl.pem`
    /// and an empty `issued.json`.
    pub fn init(dir: &Path, common_name: &str, validity: Validity) -> Result<Self, CertError> {
        validate_common_name(common_name)?;
        let validity = validity.normalized()?;
        for name in [CA_CERT_FILE, CA_KEY_FILE] {
            let existing = dir.join(name);
            if existing.exists() {
                return Err(CertError::CaExists {
                    dir: dir.to_path_buf(),
                    existing,
                });
            }
        }
        if !dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(DIR_MODE)
                .create(dir)
                .map_err(|e| CertError::io("create directory", dir, e))?;
        }

        let key = KeyPair::generate().map_err(rcgen_err("cannot generate CA key"))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = {
            // webpki finds an issuer by name only. A random OU keeps two Ferry
            // CAs with the same CN from sharing a name, so a certificate from
            // the other one is reported as "unknown issuer", not "bad signature".
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, common_name);
            dn.push(
                DnType::OrganizationalUnitName,
                format!("ferry-ca-{}", hex::encode(&random_serial()[..8])),
            );
            dn
        };
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(SerialNumber::from_slice(&random_serial()));
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        let cert = params
            .self_signed(&key)
            .map_err(rcgen_err("cannot create CA certificate"))?;
        let cert_pem = cert.pem();
        let key_pem = key.serialize_pem();

        // Key first, with O_EXCL: two concurrent inits cannot both succeed.
        let key_path = dir.join(CA_KEY_FILE);
        fsutil::write_new(&key_path, key_pem.as_bytes(), PRIVATE_MODE)?;
        fsutil::write_new(&dir.join(CA_CERT_FILE), cert_pem.as_bytes(), PUBLIC_MODE)?;

        let ca = Self::from_parts(dir, cert_pem, &key_pem, &key_path.display().to_string())?;
        let ledger = Ledger::default();
        ca.write_crl_and_ledger(ledger)?;
        tracing::info!(dir = %dir.display(), common_name, "created CA");
        Ok(ca)
    }

    /// Opens the CA in `dir` (needs `ca.pem` and `ca.key`; checks they match).
    pub fn load(dir: &Path) -> Result<Self, CertError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        for p in [&cert_path, &key_path] {
            if !p.exists() {
                return Err(CertError::CaMissing {
                    dir: dir.to_path_buf(),
                    missing: p.clone(),
                });
            }
        }
        let cert_pem = fsutil::read_string(&cert_path)?;
        if let Some(mode) = fsutil::loose_mode(&key_path) {
            tracing::warn!(
                path = %key_path.display(),
                mode = format_args!("{mode:04o}"),
                "CA key file is accessible by group or others; it should be mode 0600"
            );
        }
        let key_pem = fsutil::read_string(&key_path)?;
        let ca = Self::from_parts(dir, cert_pem, &key_pem, &key_path.display().to_string())?;
        if let Ok((_, x509)) = x509_parser::parse_x509_certificate(ca.cert_der.as_ref()) {
            if OffsetDateTime::now_utc() > x509.validity().not_after.to_datetime() {
                tracing::warn!(
                    path = %cert_path.display(),
                    "CA certificate has expired; certificates it issues will not verify"
                );
            }
        }
        Ok(ca)
    }

    fn from_parts(
        dir: &Path,
        cert_pem: String,
        key_pem: &str,
        key_loc: &str,
    ) -> Result<Self, CertError> {
        let cert_loc = dir.join(CA_CERT_FILE).display().to_string();
        let cert_der = parse_certs(cert_pem.as_bytes(), &cert_loc)?.swap_remove(0);
        let key = KeyPair::from_pem(key_pem).map_err(|e| CertError::BadPrivateKey {
            location: key_loc.to_string(),
            detail: e.to_string(),
        })?;
        let (_, x509) = x509_parser::parse_x509_certificate(cert_der.as_ref()).map_err(|e| {
            CertError::BadCertificate {
                location: cert_loc.clone(),
                detail: e.to_string(),
            }
        })?;
        // rcgen panics on an empty RDN set; refuse such a certificate first.
        if x509.subject().iter().any(|rdn| rdn.iter().next().is_none()) {
            return Err(CertError::BadCertificate {
                location: cert_loc,
                detail: "subject has an empty relative distinguished name".into(),
            });
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::KeyMismatch {
                cert: cert_loc,
                key: key_loc.to_string(),
            });
        }
        let subject_der = x509.subject().as_raw().to_vec();
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| CertError::Rcgen {
            context: format!("cannot use {cert_loc} as an issuer"),
            error: e,
        })?;
        Ok(CertificateAuthority {
            dir: dir.to_path_buf(),
            cert_pem,
            cert_der,
            subject_der,
            issuer,
        })
    }

    /// The CA directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CA certificate, PEM (what agents and the broker trust).
    pub fn ca_cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Path of `ca.pem`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// Path of `crl.pem`.
    pub fn crl_path(&self) -> PathBuf {
        self.dir.join(CRL_FILE)
    }

    /// Path of `issued.json`.
    pub fn ledger_path(&self) -> PathBuf {
        self.dir.join(LEDGER_FILE)
    }

    /// Issues a broker (server) certificate: CN = `common_name`, SANs =
    /// `names`, EKU serverAuth.
    pub fn issue_server(
        &self,
        common_name: &str,
        names: &[SubjectName],
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        validate_common_name(common_name)?;
        if names.is_empty() {
            return Err(CertError::NoServerNames {
                common_name: common_name.to_string(),
            });
        }
        let mut dns_names = Vec::new();
        let mut ip_addresses = Vec::new();
        let mut sans = Vec::new();
        for n in names {
            match n {
                SubjectName::Dns(d) => {
                    crate::names::validate_dns_name(d)?;
                    let ia5 = d
                        .clone()
                        .try_into()
                        .map_err(|e| CertError::InvalidDnsName {
                            value: d.clone(),
                            reason: format!("{e}"),
                        })?;
                    sans.push(SanType::DnsName(ia5));
                    dns_names.push(d.clone());
                }
                SubjectName::Ip(ip) => {
                    sans.push(SanType::IpAddress(*ip));
                    ip_addresses.push(*ip);
                }
            }
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, common_name);
            dn
        };
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let entry = LedgerEntry {
            serial: String::new(),
            kind: CertKind::Server,
            common_name: common_name.to_string(),
            agent_id: None,
            group: None,
            dns_names,
            ip_addresses,
            not_before: validity.not_before,
            not_after: validity.not_after,
            revoked_at: None,
            cert_path: None,
        };
        self.issue(params, validity, entry)
    }

    /// Issues an agent (client) certificate: CN = `agent_id`, OU = `group`,
    /// URI SAN `ferry://agent/<group>/<agent_id>` (the identity), EKU clientAuth.
    pub fn issue_agent(
        &self,
        agent_id: &str,
        group: &str,
        validity: Validity,
    ) -> Result<IssuedCert, CertError> {
        validate_agent_id(agent_id)?;
        validate_group(group)?;
        let uri = agent_uri(group, agent_id);
        let mut params = CertificateParams::default();
        params.distinguished_name = {
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, agent_id);
            dn.push(DnType::OrganizationalUnitName, group);
            dn
        };
        params.subject_alt_names = vec![SanType::URI(
            uri.clone()
                .try_into()
                .map_err(rcgen_err("cannot encode agent identity URI"))?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let entry = LedgerEntry {
            serial: String::new(),
            kind: CertKind::Agent,
            common_name: agent_id.to_string(),
            agent_id: Some(agent_id.to_string()),
            group: Some(group.to_string()),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            not_before: validity.not_before,
            not_after: validity.not_after,
            revoked_at: None,
            cert_path: None,
        };
        self.issue(params, validity, entry)
    }

    /// Signs `params` (end-entity defaults added) and records `entry`.
    fn issue(
        &self,
        mut params: CertificateParams,
        validity: Validity,
        mut entry: LedgerEntry,
    ) -> Result<IssuedCert, CertError> {
        let validity = validity.normalized()?;
        let serial = random_serial();
        let serial_hex = canonical_serial(&serial);
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.not_before = validity.not_before;
        params.not_after = validity.not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method = KeyIdMethod::Sha256;

        let key = KeyPair::generate().map_err(rcgen_err("cannot generate key"))?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| CertError::rcgen(format!("cannot sign {} certificate", entry.kind), e))?;

        // The issuer name is re-encoded by rcgen from ca.pem; make sure it is
        // byte-identical to the CA subject, or nothing would chain.
        let issued_ok = x509_parser::parse_x509_certificate(cert.der().as_ref())
            .map(|(_, c)| c.issuer().as_raw() == self.subject_der.as_slice())
            .unwrap_or(false);
        if !issued_ok {
            return Err(CertError::BadCertificate {
                location: self.ca_cert_path().display().to_string(),
                detail: "its subject name cannot be reproduced exactly as an issuer name".into(),
            });
        }

        entry.serial = serial_hex.clone();
        entry.not_before = validity.not_before;
        entry.not_after = validity.not_after;
        let mut ledger = self.read_ledger()?;
        ledger.certificates.push(entry.clone());
        self.write_ledger(&ledger)?;
        tracing::info!(
            kind = %entry.kind,
            common_name = %entry.common_name,
            serial = %serial_hex,
            not_after = %crate::names::fmt_time(&validity.not_after),
            "issued certificate"
        );
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial: serial_hex,
            not_before: validity.not_before,
            not_after: validity.not_after,
        })
    }

    /// Writes `issued` like [`IssuedCert::write`] and records the certificate
    /// path in its ledger entry.
    pub fn write_issued(
        &self,
        issued: &IssuedCert,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<(), CertError> {
        issued.write(cert_path, key_path)?;
        let mut ledger = self.read_ledger()?;
        let recorded = std::path::absolute(cert_path).unwrap_or_else(|_| cert_path.to_path_buf());
        if let Some(e) = ledger
            .certificates
            .iter_mut()
            .find(|e| e.serial == issued.serial)
        {
            e.cert_path = Some(recorded);
            self.write_ledger(&ledger)?;
        }
        Ok(())
    }

    /// All ledger entries, in issue order.
    pub fn ledger(&self) -> Result<Vec<LedgerEntry>, CertError> {
        Ok(self.read_ledger()?.certificates)
    }

    /// Revokes the selected certificates, rewrites `crl.pem` atomically (new
    /// CRL number) and marks the ledger. Returns the entries revoked; errors
    /// if nothing matched.
    pub fn revoke(&self, which: &RevokeSelector) -> Result<Vec<LedgerEntry>, CertError> {
        let mut ledger = self.read_ledger()?;
        let ledger_path = self.ledger_path();
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());

        let (serial_wanted, what) = match which {
            RevokeSelector::Serial(s) => {
                let s = normalize_serial(s)?;
                (Some(s.clone()), format!("certificate with serial {s}"))
            }
            RevokeSelector::CertFile(path) => {
                let certs = crate::load::load_certs(path)?;
                let first = certs.first().ok_or_else(|| CertError::NoCertificate {
                    location: path.display().to_string(),
                })?;
                let (_, x509) =
                    x509_parser::parse_x509_certificate(first.as_ref()).map_err(|e| {
                        CertError::BadCertificate {
                            location: path.display().to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                let s = canonical_serial(x509.raw_serial());
                (
                    Some(s.clone()),
                    format!("certificate {} (serial {s})", path.display()),
                )
            }
            RevokeSelector::AgentId(id) => {
                validate_agent_id(id)?;
                (None, format!("agent {id:?}"))
            }
        };

        let matches = |e: &LedgerEntry| match (which, &serial_wanted) {
            (RevokeSelector::AgentId(id), _) => {
                e.kind == CertKind::Agent && e.agent_id.as_deref() == Some(id.as_str())
            }
            (_, Some(s)) => &e.serial == s,
            _ => false,
        };
        let matched: Vec<&LedgerEntry> =
            ledger.certificates.iter().filter(|e| matches(e)).collect();
        if matched.is_empty() {
            return Err(CertError::NothingToRevoke {
                what: format!("no {what} in ledger {}", ledger_path.display()),
            });
        }
        if matched.iter().all(|e| e.revoked_at.is_some()) {
            let when = matched
                .iter()
                .filter_map(|e| e.revoked_at)
                .max()
                .map(|t| crate::names::fmt_time(&t))
                .unwrap_or_default();
            return Err(CertError::NothingToRevoke {
                what: format!("{what} is already revoked (on {when})"),
            });
        }

        let mut revoked = Vec::new();
        for e in ledger.certificates.iter_mut() {
            if matches(e) && e.revoked_at.is_none() {
                e.revoked_at = Some(now);
                revoked.push(e.clone());
            }
        }
        self.write_crl_and_ledger(ledger)?;
        for e in &revoked {
            tracing::info!(
                kind = %e.kind,
                common_name = %e.common_name,
                serial = %e.serial,
                "revoked certificate"
            );
        }
        Ok(revoked)
    }

    /// Writes a new CRL (number = ledger's + 1) listing every revoked ledger
    /// entry, then the ledger with the new number.
    fn write_crl_and_ledger(&self, mut ledger: Ledger) -> Result<(), CertError> {
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc());
        let number = ledger.crl_number.max(self.current_crl_number()) + 1;
        let mut revoked_certs = Vec::new();
        for e in &ledger.certificates {
            if let Some(at) = e.revoked_at {
                revoked_certs.push(RevokedCertParams {
                    serial_number: to_serial_number(&e.serial)?,
                    revocation_time: at,
                    reason_code: None,
                    invalidity_date: None,
                });
            }
        }
        let params = CertificateRevocationListParams {
            this_update: now,
            next_update: now + CRL_LIFETIME,
            crl_number: crl_number(number),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params
            .signed_by(&self.issuer)
            .map_err(rcgen_err("cannot sign CRL"))?;
        let pem = crl.pem().map_err(rcgen_err("cannot encode CRL"))?;
        fsutil::write_atomic(&self.crl_path(), pem.as_bytes(), PUBLIC_MODE)?;
        ledger.crl_number = number;
        self.write_ledger(&ledger)
    }

    /// Number of the CRL currently in `crl.pem` (0 if missing or unreadable).
    fn current_crl_number(&self) -> u64 {
        let Ok(crls) = crate::load::load_crls(&self.crl_path()) else {
            return 0;
        };
        crls.iter()
            .filter_map(|c| {
                let (_, parsed) = x509_parser::parse_x509_crl(c.as_ref()).ok()?;
                let bytes = parsed.crl_number()?.to_bytes_be();
                let bytes: [u8; 8] = {
                    let trimmed = &bytes[bytes.len().saturating_sub(8)..];
                    let mut b = [0u8; 8];
                    b[8 - trimmed.len()..].copy_from_slice(trimmed);
                    b
                };
                Some(u64::from_be_bytes(bytes))
            })
            .max()
            .unwrap_or(0)
    }

    fn read_ledger(&self) -> Result<Ledger, CertError> {
        let path = self.ledger_path();
        if !path.exists() {
            return Ok(Ledger::default());
        }
        let text = fsutil::read_string(&path)?;
        serde_json::from_str(&text).map_err(|error| CertError::Ledger { path, error })
    }

    fn write_ledger(&self, ledger: &Ledger) -> Result<(), CertError> {
        let path = self.ledger_path();
        let mut text = serde_json::to_string_pretty(ledger).map_err(|error| CertError::Ledger {
            path: path.clone(),
            error,
        })?;
        text.push('\n');
        fsutil::write_atomic(&path, text.as_bytes(), PUBLIC_MODE)
    }
}
