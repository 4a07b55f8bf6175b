//! Why a connection ended, told the same way on both sides.
//!
//! The broker closes sessions with an application [`CloseCode`]; TLS
//! refusals arrive as QUIC CRYPTO_ERROR closes carrying the TLS alert
//! (`0x100 + alert`). [`CloseCause::classify`] turns either into one value
//! that names the cause, so logs say "certificate revoked" rather than
//! "aborted by peer: the cryptographic handshake failed: error 44".

use std::fmt;

use ferry_certs::Refusal;
use quinn::{ConnectionError, VarInt};

/// Application close codes used by Ferry on the tunnel connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum CloseCode {
    /// Orderly shutdown by either side.
    Normal = 0,
    /// A newer connection of the same agent took over this session.
    Superseded = 1,
    /// The agent's certificate was revoked while connected.
    Revoked = 2,
    /// The handshake on the control stream was rejected (see the reason).
    Rejected = 3,
    /// The broker is shutting down; reconnect later.
    ShuttingDown = 4,
    /// The peer broke the protocol (bad frame, wrong message order).
    ProtocolViolation = 5,
}

impl CloseCode {
    const ALL: [CloseCode; 6] = [
        CloseCode::Normal,
        CloseCode::Superseded,
        CloseCode::Revoked,
        CloseCode::Rejected,
        CloseCode::ShuttingDown,
        CloseCode::ProtocolViolation,
    ];

    /// The code as a QUIC variable-length integer.
    pub fn varint(self) -> VarInt {
        VarInt::from_u32(self as u32)
    }

    /// The code a peer sent, if it is one of ours.
    pub fn from_u64(v: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| *c as u64 == v)
    }

    /// Closes `conn` with this code and a human-readable reason.
    pub fn close(self, conn: &crate::Connection, reason: &str) {
        conn.close(self, reason);
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseCode::Normal => "closed normally",
            CloseCode::Superseded => "superseded by a newer session of the same agent",
            CloseCode::Revoked => "certificate revoked",
            CloseCode::Rejected => "handshake rejected",
            CloseCode::ShuttingDown => "broker shutting down",
            CloseCode::ProtocolViolation => "protocol violation",
        })
    }
}

/// The classified reason a connection or connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseCause {
    /// Refused during the TLS handshake (ours or the peer's verdict).
    Refused(Refusal),
    /// The peer closed with one of our application codes.
    Closed { code: CloseCode, reason: String },
    /// The peer closed with an application code we do not know.
    ClosedUnknown { code: u64, reason: String },
    /// No packet from the peer within the idle timeout.
    TimedOut,
    /// The peer has forgotten the connection (it restarted).
    Reset,
    /// We closed it ourselves.
    LocallyClosed,
    /// No common QUIC version.
    VersionMismatch,
    /// Any other transport-level failure.
    Transport(String),
}

impl CloseCause {
    /// Classifies a quinn connection error.
    pub fn classify(e: &ConnectionError) -> Self {
        match e {
            ConnectionError::TransportError(te) => {
                let code = u64::from(te.code);
                match crypto_alert(code) {
                    Some(alert) => CloseCause::Refused(Refusal::from_alert(alert, &te.reason)),
                    None => CloseCause::Transport(te.to_string()),
                }
            }
            ConnectionError::ConnectionClosed(cc) => {
                let code = u64::from(cc.error_code);
                let reason = String::from_utf8_lossy(&cc.reason).into_owned();
                match crypto_alert(code) {
                    Some(alert) => CloseCause::Refused(Refusal::from_alert(alert, &reason)),
                    None => CloseCause::Transport(cc.to_string()),
                }
            }
            ConnectionError::ApplicationClosed(ac) => {
                let raw = ac.error_code.into_inner();
                let reason = String::from_utf8_lossy(&ac.reason).into_owned();
                match CloseCode::from_u64(raw) {
                    Some(code) => CloseCause::Closed { code, reason },
                    None => CloseCause::ClosedUnknown { code: raw, reason },
                }
            }
            ConnectionError::TimedOut => CloseCause::TimedOut,
            ConnectionError::Reset => CloseCause::Reset,
            ConnectionError::LocallyClosed => CloseCause::LocallyClosed,
            ConnectionError::VersionMismatch => CloseCause::VersionMismatch,
            ConnectionError::CidsExhausted => CloseCause::Transport(e.to_string()),
        }
    }

    /// A refusal that only an operator can fix (retrying soon will not help).
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            CloseCause::Refused(_)
                | CloseCause::Closed {
                    code: CloseCode::Revoked | CloseCode::Rejected,
                    ..
                }
        )
    }
}

/// TLS alert carried by a QUIC CRYPTO_ERROR code (0x100..=0x1ff).
fn crypto_alert(code: u64) -> Option<u8> {
    if (0x100..=0x1ff).contains(&code) {
        u8::try_from(code - 0x100).ok()
    } else {
        None
    }
}

impl std::error::Error for CloseCause {}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Refused(r) => write!(f, "refused: {r}"),
            CloseCause::Closed { code, reason }
                if reason.is_empty() || *reason == code.to_string() =>
            {
                write!(f, "{code}")
            }
            CloseCause::Closed { code, reason } => write!(f, "{code}: {reason}"),
            CloseCause::ClosedUnknown { code, reason } => {
                write!(f, "closed by peer with code {code}: {reason}")
            }
            CloseCause::TimedOut => f.write_str("timed out (no packet from the peer)"),
            CloseCause::Reset => f.write_str("reset by peer (it restarted)"),
            CloseCause::LocallyClosed => f.write_str("closed locally"),
            CloseCause::VersionMismatch => f.write_str("no common QUIC version"),
            CloseCause::Transport(s) => write!(f, "transport error: {s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_round_trip() {
        for c in CloseCode::ALL {
            assert_eq!(CloseCode::from_u64(c.varint().into_inner()), Some(c));
        }
        assert_eq!(CloseCode::from_u64(999), None);
    }

    #[test]
    fn crypto_codes_map_to_alerts() {
        assert_eq!(crypto_alert(0x100 + 44), Some(44));
        assert_eq!(crypto_alert(0x0a), None);
        assert_eq!(crypto_alert(0x200), None);
    }
}
