//! Test utilities for Ferry's end-to-end tests.
//!
//! - [`pki`]: a throwaway CA with broker and agent certificates in a temp dir;
//! - [`proc`]: the `ferry` binary and child processes that die with the test;
//! - [`netns`]: network namespaces, veth links and firewall rules that are
//!   removed again when the guard drops, also when a test fails, and an IDC
//!   behind a masquerading router ([`netns::NatSite`]);
//! - [`impair`]: a seeded UDP relay that delays, jitters, drops, reorders
//!   and duplicates datagrams (a long, lossy link without netem);
//! - [`relay`]: a UDP relay that can drop one direction (half-open handshakes);
//! - [`db`]: PostgreSQL schemas and MariaDB databases of a test's own;
//! - [`pgcluster`]: a PostgreSQL server of a test's own, to restart.
//!
//! Tests that need root or system tools fail with a message saying what is
//! missing when `CI=true`; on a developer machine they print why they skip.

pub mod db;
pub mod impair;
pub mod netns;
pub mod pgcluster;
pub mod pki;
pub mod proc;
pub mod relay;

/// Whether we run under CI, where nothing may skip silently.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| v == "true" || v == "1")
        .unwrap_or(false)
}

/// Call when a prerequisite is missing: panics under CI, returns `true`
/// (meaning "skip") elsewhere.
pub fn missing(what: &str) -> bool {
    if in_ci() {
        panic!("prerequisite missing under CI: {what}");
    }
    eprintln!("SKIPPED: {what}");
    true
}
