//! Reconnect delays: exponential growth, full jitter, reset only after a
//! stable period.
//!
//! Full jitter (delay drawn uniformly from `0..=min(cap, base * 2^n)`) spreads
//! hundreds of agents that lost the same broker at the same instant over the
//! whole window, so a restarted broker sees a trickle of handshakes rather
//! than a wall. The attempt counter is reset only when a connection has stayed
//! up for `stable_after`: a broker that accepts and then drops at once keeps
//! the agents backing off instead of looping at the base delay.

use std::time::{Duration, Instant};

use rand::Rng;

/// Reconnect delay policy and state.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    stable_after: Duration,
    attempt: u32,
    connected_at: Option<Instant>,
}

impl Backoff {
    /// `base`: first window; `cap`: largest window; `stable_after`: how long
    /// a connection must last before the next failure starts from `base` again.
    pub fn new(base: Duration, cap: Duration, stable_after: Duration) -> Self {
        Self {
            base: base.max(Duration::from_millis(1)),
            cap: cap.max(base),
            stable_after,
            attempt: 0,
            connected_at: None,
        }
    }

    /// Call when a connection came up.
    pub fn connected(&mut self) {
        self.connected_at = Some(Instant::now());
    }

    /// Call when a connection went down or an attempt failed; returns how
    /// long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        self.next_delay_spread(Duration::ZERO)
    }

    /// Like [`next_delay`](Self::next_delay), with the delay drawn from a
    /// window of at least `spread` (which may exceed the cap). The broker
    /// names this window from the number of agents it serves, so that after
    /// it restarts its agents come back at a pace it can take, however many
    /// there are.
    pub fn next_delay_spread(&mut self, spread: Duration) -> Duration {
        if let Some(at) = self.connected_at.take() {
            if at.elapsed() >= self.stable_after {
                self.attempt = 0;
            }
        }
        let window = self.window(self.attempt).max(spread);
        self.attempt = self.attempt.saturating_add(1);
        let max_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=max_ms))
    }

    /// Jumps straight to the largest window: used after a refusal that an
    /// operator must fix (revoked or unknown certificate), which retrying
    /// quickly cannot cure.
    pub fn saturate(&mut self) {
        self.attempt = self.attempts_to_cap();
    }

    /// The upper bound of the delay for attempt `n`.
    pub fn window(&self, n: u32) -> Duration {
        let factor = 1u32.checked_shl(n.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    fn attempts_to_cap(&self) -> u32 {
        (0..32).find(|&n| self.window(n) >= self.cap).unwrap_or(31)
    }
}

impl Default for Backoff {
    /// 0.5 s doubling up to 30 s; reset after 60 s of a stable connection.
    fn default() -> Self {
        Self::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_up_to_the_cap() {
        let b = Backoff::new(
            Duration::from_millis(500),
            Duration::from_secs(30),
            Duration::from_secs(60),
        );
        assert_eq!(b.window(0), Duration::from_millis(500));
        assert_eq!(b.window(1), Duration::from_secs(1));
        assert_eq!(b.window(5), Duration::from_secs(16));
        assert_eq!(b.window(6), Duration::from_secs(30));
        assert_eq!(b.window(1000), Duration::from_secs(30));
    }

    #[test]
    fn delays_stay_inside_the_window_and_spread_out() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        for _ in 0..10 {
            b.next_delay();
        }
        let delays: Vec<_> = (0..200).map(|_| b.next_delay()).collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(10)));
        // Full jitter: both halves of the window are used.
        assert!(delays.iter().any(|d| *d < Duration::from_secs(5)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(5)));
    }

    #[test]
    fn short_connection_does_not_reset_the_attempts() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::from_secs(60),
        );
        for _ in 0..5 {
            b.next_delay();
        }
        b.connected();
        b.next_delay(); // connection lasted ~0 s: not stable
        assert_eq!(b.attempt, 6);
    }

    #[test]
    fn stable_connection_resets_the_attempts() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(10),
            Duration::from_millis(0),
        );
        for _ in 0..5 {
            b.next_delay();
        }
        b.connected();
        b.next_delay();
        assert_eq!(b.attempt, 1);
    }

    #[test]
    fn a_spread_widens_the_window_past_the_cap() {
        let mut b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_secs(1),
            Duration::from_secs(60),
        );
        let delays: Vec<_> = (0..200)
            .map(|_| b.next_delay_spread(Duration::from_secs(20)))
            .collect();
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(20)));
        assert!(delays.iter().any(|d| *d > Duration::from_secs(10)));
    }

    #[test]
    fn saturate_jumps_to_the_cap() {
        let mut b = Backoff::default();
        b.saturate();
        assert_eq!(b.window(b.attempt), Duration::from_secs(30));
    }
}
