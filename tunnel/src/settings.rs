//! Transport settings shared by agent and broker.
//!
//! Defaults, and why:
//! - keep-alive every 10 s: many NATs and stateful firewalls drop a UDP
//!   mapping after 30 s without traffic; a PING every 10 s keeps it open
//!   with margin for one lost keep-alive.
//! - idle timeout 30 s: a peer that has not answered three keep-alives is
//!   gone; the agent then reconnects (and the broker frees the session).
//! - stream window 16 MiB, connection window 64 MiB, send window 64 MiB:
//!   one data stream can fill a 1 Gbit/s path with 100 ms RTT (BDP 12.5 MB)
//!   and several streams share the connection window. These are ceilings,
//!   not allocations: quinn buffers only what is in flight.
//! - MTU discovery on, from QUIC's 1200-byte minimum up to `max_mtu`
//!   (default 1452, what fits an Ethernet path with IPv6 headers).
//! - GSO (segmentation offload) on: the kernel splits one large send into
//!   MTU-sized datagrams, which saves most of the per-packet syscall cost.
//! - BBR congestion control: agents sit behind long, lossy links, and
//!   loss-based controllers read random loss as congestion. Measured with
//!   `bench/wan.sh` (20 Mbit/s tbf, seeded loss both ways, 1,000,000 rows,
//!   zstd:1): at 150 ms RTT CUBIC fell below 5 % of its loss-free
//!   throughput at 1 % loss and below 3 % at 3 %, where BBR kept 99 % and
//!   98 %; on a clean link BBR was 1.6-2.4 % slower than CUBIC. `cubic` and
//!   `new_reno` stay selectable for paths known to be clean.

use std::sync::Arc;
use std::time::Duration;

use quinn::congestion::{BbrConfig, CubicConfig, NewRenoConfig};
use quinn::{IdleTimeout, MtuDiscoveryConfig, TransportConfig, VarInt};
use serde::{Deserialize, Serialize};

/// Congestion controller used on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Congestion {
    /// CUBIC (RFC 8312): the common default of TCP stacks; collapses
    /// under random loss.
    Cubic,
    /// NewReno (RFC 6582): conservative.
    NewReno,
    /// BBR: model-based; keeps its rate under random loss (the default;
    /// quinn marks it experimental).
    #[default]
    Bbr,
}

/// Tunable transport parameters. Every field has a default; a config file
/// sets only what it wants to change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransportSettings {
    /// Seconds between keep-alive PINGs.
    pub keep_alive_secs: u64,
    /// Seconds without any packet from the peer before the connection is dead.
    pub idle_timeout_secs: u64,
    /// Per-stream receive window, bytes.
    pub stream_window: u64,
    /// Per-connection receive window, bytes.
    pub connection_window: u64,
    /// Bytes the sender may have unacknowledged across all streams.
    pub send_window: u64,
    /// Congestion controller.
    pub congestion: Congestion,
    /// Upper bound of path MTU discovery (UDP payload bytes).
    pub max_mtu: u16,
    /// Use UDP segmentation offload when the kernel supports it.
    pub gso: bool,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            keep_alive_secs: 10,
            idle_timeout_secs: 30,
            stream_window: 16 << 20,
            connection_window: 64 << 20,
            send_window: 64 << 20,
            congestion: Congestion::Bbr,
            max_mtu: 1452,
            gso: true,
        }
    }
}

/// A setting that cannot be turned into a transport configuration.
#[derive(Debug, thiserror::Error)]
#[error("invalid transport setting `{field}`: {reason}")]
pub struct SettingsError {
    pub field: &'static str,
    pub reason: String,
}

impl TransportSettings {
    /// Checks the values and builds quinn's transport configuration.
    pub fn to_quinn(&self) -> Result<Arc<TransportConfig>, SettingsError> {
        let err = |field, reason: &str| SettingsError {
            field,
            reason: reason.to_string(),
        };
        if self.keep_alive_secs == 0 {
            return Err(err("keep_alive_secs", "must be at least 1"));
        }
        if self.idle_timeout_secs <= self.keep_alive_secs {
            return Err(err(
                "idle_timeout_secs",
                "must be larger than keep_alive_secs, or keep-alives cannot keep the connection alive",
            ));
        }
        if self.max_mtu < 1200 {
            return Err(err("max_mtu", "QUIC needs at least 1200 bytes"));
        }
        let window = |field, v: u64| {
            if !(64 * 1024..=(1 << 30)).contains(&v) {
                return Err(err(field, "must be between 64 KiB and 1 GiB"));
            }
            VarInt::from_u64(v).map_err(|_| err(field, "too large"))
        };
        let mut t = TransportConfig::default();
        t.keep_alive_interval(Some(Duration::from_secs(self.keep_alive_secs)));
        let idle = IdleTimeout::try_from(Duration::from_secs(self.idle_timeout_secs))
            .map_err(|_| err("idle_timeout_secs", "too large"))?;
        t.max_idle_timeout(Some(idle));
        t.stream_receive_window(window("stream_window", self.stream_window)?);
        t.receive_window(window("connection_window", self.connection_window)?);
        window("send_window", self.send_window)?;
        t.send_window(self.send_window);
        let mut mtu = MtuDiscoveryConfig::default();
        mtu.upper_bound(self.max_mtu);
        t.mtu_discovery_config(Some(mtu));
        t.enable_segmentation_offload(self.gso);
        // Data streams are opened by the agent only; the broker answers on them.
        t.max_concurrent_bidi_streams(VarInt::from_u32(256));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        // Datagrams are not used.
        t.datagram_receive_buffer_size(None);
        match self.congestion {
            Congestion::Cubic => t.congestion_controller_factory(Arc::new(CubicConfig::default())),
            Congestion::NewReno => {
                t.congestion_controller_factory(Arc::new(NewRenoConfig::default()))
            }
            Congestion::Bbr => t.congestion_controller_factory(Arc::new(BbrConfig::default())),
        };
        Ok(Arc::new(t))
    }

    /// Idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        TransportSettings::default()
            .to_quinn()
            .expect("defaults are valid");
    }

    #[test]
    fn keep_alive_must_be_below_idle_timeout() {
        let s = TransportSettings {
            keep_alive_secs: 30,
            idle_timeout_secs: 30,
            ..Default::default()
        };
        let e = s.to_quinn().unwrap_err();
        assert_eq!(e.field, "idle_timeout_secs");
    }

    #[test]
    fn tiny_window_is_refused() {
        let s = TransportSettings {
            stream_window: 10,
            ..Default::default()
        };
        assert_eq!(s.to_quinn().unwrap_err().field, "stream_window");
    }

    #[test]
    fn unknown_field_is_a_config_error() {
        let e = toml::from_str::<TransportSettings>("keepalive_secs = 3").unwrap_err();
        assert!(e.to_string().contains("keepalive_secs"), "{e}");
    }
}
