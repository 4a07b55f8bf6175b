//! Refused connection attempts: counted in `/metrics` one by one, logged
//! at most once per reason per interval.
//!
//! Anyone who can reach the broker's ports can make it refuse something,
//! so a log line per refusal would let a stranger grow the log at will.
//! Each refusal bumps `ferry_connections_refused_total{reason}`; the log
//! gets the first refusal of a reason in each [`LOG_INTERVAL`], with the
//! number left unlogged since the last line. The detail of every refusal
//! still goes to the debug log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

use crate::metrics::Metrics;

/// Least time between two log lines of one reason.
pub(crate) const LOG_INTERVAL: Duration = Duration::from_secs(60);

/// Why a connection attempt did not become a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Reason {
    /// No handshake slot was free.
    Busy,
    /// The source address had its share of slots.
    SourceBusy,
    /// The source address started handshakes too fast.
    SourceRate,
    /// TLS refused the peer (unknown CA, revoked or expired certificate…).
    Tls,
    /// TLS and Hello were not done within the handshake timeout.
    Timeout,
    /// After TLS, the Hello was refused (wrong id, version, full broker).
    Rejected,
    /// The peer went away or spoke something else before TLS was done.
    Transport,
    /// Accepting a TCP connection failed (out of file descriptors…).
    Accept,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::Busy => "busy",
            Reason::SourceBusy => "source_busy",
            Reason::SourceRate => "source_rate",
            Reason::Tls => "tls",
            Reason::Timeout => "timeout",
            Reason::Rejected => "rejected",
            Reason::Transport => "transport",
            Reason::Accept => "accept",
        }
    }
}

impl From<crate::admission::Refused> for Reason {
    fn from(r: crate::admission::Refused) -> Self {
        match r {
            crate::admission::Refused::Busy => Reason::Busy,
            crate::admission::Refused::SourceBusy => Reason::SourceBusy,
            crate::admission::Refused::SourceRate => Reason::SourceRate,
        }
    }
}

/// When each reason was last logged, and how many were not since.
#[derive(Default)]
pub(crate) struct RefusalLog {
    last: Mutex<HashMap<Reason, (Instant, u64)>>,
}

impl RefusalLog {
    /// Counts one refusal and logs it if its reason was not logged within
    /// [`LOG_INTERVAL`]. `detail` is only formatted when it is logged.
    pub(crate) fn refused(
        &self,
        metrics: &Metrics,
        reason: Reason,
        remote: SocketAddr,
        detail: impl FnOnce() -> String,
    ) {
        metrics.refused(reason.label());
        let now = Instant::now();
        let unlogged = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match last.get_mut(&reason) {
                Some((at, skipped)) if now.duration_since(*at) < LOG_INTERVAL => {
                    *skipped += 1;
                    None
                }
                Some((at, skipped)) => {
                    let n = *skipped;
                    *at = now;
                    *skipped = 0;
                    Some(n)
                }
                None => {
                    last.insert(reason, (now, 0));
                    Some(0)
                }
            }
        };
        match unlogged {
            Some(skipped) => warn!(
                %remote,
                reason = reason.label(),
                unlogged_since_last = skipped,
                "connection refused: {} (one line per reason each {}s; every refusal counts in ferry_connections_refused_total)",
                detail(),
                LOG_INTERVAL.as_secs()
            ),
            None if tracing::enabled!(tracing::Level::DEBUG) => {
                debug!(%remote, reason = reason.label(), "connection refused: {}", detail())
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log output captured for one test.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn each_reason_is_logged_once_per_interval_and_always_counted() {
        let metrics = Metrics::default();
        let log = RefusalLog::default();
        let remote: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        let mut formatted = 0;
        tracing::subscriber::with_default(subscriber, || {
            for _ in 0..1000 {
                log.refused(&metrics, Reason::Tls, remote, || {
                    formatted += 1;
                    "junk".into()
                });
            }
            log.refused(&metrics, Reason::Timeout, remote, || "slow".into());
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(text.contains("junk") && text.contains("slow"), "{text}");
        assert_eq!(
            formatted, 1,
            "the detail of unlogged refusals is not even built"
        );
        assert_eq!(metrics.refused_count("tls"), 1000);
        assert_eq!(metrics.refused_count("timeout"), 1);
        let last = log.last.lock().unwrap();
        assert_eq!(last[&Reason::Tls].1, 999);
        assert_eq!(last[&Reason::Timeout].1, 0);
    }
}
