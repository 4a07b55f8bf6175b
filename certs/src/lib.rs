//! Ferry's PKI: a private CA, certificate issuance, revocation, agent identity
//! and the rustls configurations of the tunnel.
//!
//! # The model
//!
//! Ferry runs its own certificate authority; no public CA and no system trust
//! store is ever involved. Both ends of the QUIC tunnel authenticate each other
//! with certificates from this CA (mutual TLS 1.3, ring provider):
//!
//! * **The CA** lives in a directory (default `./pki`), created by
//!   [`CertificateAuthority::init`]:
//!   * `ca.pem` — the CA certificate (what agents and the broker trust); its
//!     subject is `CN=<name>, OU=ferry-ca-<random>` so two Ferry CAs never
//!     share an issuer name;
//!   * `ca.key` — its private key, mode 0600 (keep it off the broker if you can);
//!   * `crl.pem` — a certificate revocation list signed by the CA, created
//!     empty at init so the broker can always load one;
//!   * `issued.json` — the ledger: one [`LedgerEntry`] per issued certificate
//!     (serial, kind, CN, agent id/group or DNS/IP names, validity, revocation
//!     time, where the certificate was written).
//! * **The broker** presents a server certificate ([`CertificateAuthority::issue_server`]):
//!   CN = a name, SANs = the DNS names and IP addresses agents dial, EKU
//!   serverAuth. Agents verify it against `ca.pem` only.
//! * **Each agent** presents a client certificate ([`CertificateAuthority::issue_agent`]):
//!   CN = agent id, OU = group, EKU clientAuth, and a URI SAN
//!   `ferry://agent/<group>/<agent_id>`. That URI is *the* identity: the broker
//!   reads it with [`agent_identity`], never the CN. Agent ids and groups are
//!   1..=64 characters of `[A-Za-z0-9._-]`, checked on issue and on parse.
//! * **Serial numbers** are 16 random bytes (positive). Everywhere — ledger,
//!   [`AgentIdentity::serial`], [`revoked_serials`] — they appear in one
//!   canonical form: lowercase hex of the magnitude without leading zero bytes
//!   (see [`canonical_serial`]).
//! * **Revocation**: [`CertificateAuthority::revoke`] marks ledger entries and
//!   rewrites `crl.pem` atomically with a higher CRL number. The broker
//!   verifies client certificates against the CRL ([`server_config`]); to pick
//!   up a new CRL without a restart it rebuilds its server config, and it
//!   closes live sessions whose serial is in [`revoked_serials`].
//!
//! # TLS
//!
//! [`server_config`] requires a client certificate chaining to the CA, not
//! revoked, with a ferry identity; the [`ClassifyingClientVerifier`] logs why
//! a certificate was refused. [`client_config`] trusts only the CA and checks
//! the agent's own certificate before connecting. [`Refusal`] names the cause
//! of a refused handshake from a rustls error or a QUIC close (alert + reason).
//!
//! Private keys are written with mode 0600 and never printed or logged.

mod ca;
mod error;
mod fsutil;
mod identity;
mod load;
mod names;
mod refusal;
mod tls;

pub use ca::{
    CertKind, CertificateAuthority, IssuedCert, LedgerEntry, RevokeSelector, CA_CERT_FILE,
    CA_KEY_FILE, CRL_FILE, CRL_LIFETIME, LEDGER_FILE,
};
pub use error::CertError;
pub use fsutil::{DIR_MODE, PRIVATE_MODE, PUBLIC_MODE};
pub use identity::{agent_identity, AgentIdentity};
pub use load::{load_certs, load_crls, load_private_key, revoked_serials};
pub use names::{
    agent_uri, canonical_serial, fingerprint_sha256, normalize_serial, validate_agent_id,
    validate_dns_name, validate_group, SubjectName, Validity, AGENT_URI_PREFIX, CLOCK_SKEW,
    MAX_NAME_LEN,
};
pub use refusal::{Refusal, WRONG_KEY_USAGE};
pub use tls::{
    client_config, client_config_from_pem, client_config_without_client_cert, crypto_provider,
    server_config, server_config_from_pem, ClassifyingClientVerifier, ClientTlsFiles,
    ServerTlsFiles,
};
