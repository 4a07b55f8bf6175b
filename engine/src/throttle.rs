//! Job-wide flow control: bytes per second and records per second.
//!
//! One limiter is shared by all tasks of a job, so `channel` does not
//! multiply the limit. Each batch asks for its cost before it is written;
//! the caller sleeps until the budget allows it. Smooth enough at batch
//! granularity and free when unlimited.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A shared limiter; 0 means unlimited.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_s: u64,
    records_per_s: u64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    start: Instant,
    bytes: u64,
    records: u64,
}

impl Throttle {
    pub fn new(bytes_per_s: u64, records_per_s: u64) -> Self {
        Self {
            bytes_per_s,
            records_per_s,
            state: Mutex::new(State {
                start: Instant::now(),
                bytes: 0,
                records: 0,
            }),
        }
    }

    pub fn is_unlimited(&self) -> bool {
        self.bytes_per_s == 0 && self.records_per_s == 0
    }

    /// Accounts for a batch and returns how long to wait before writing it.
    pub fn admit(&self, bytes: u64, records: u64) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.bytes += bytes;
        s.records += records;
        let need = |done: u64, rate: u64| {
            if rate == 0 {
                0.0
            } else {
                done as f64 / rate as f64
            }
        };
        let due = need(s.bytes, self.bytes_per_s).max(need(s.records, self.records_per_s));
        Duration::from_secs_f64(due).saturating_sub(s.start.elapsed())
    }

    /// Waits as long as [`admit`](Self::admit) says.
    pub async fn wait(&self, bytes: u64, records: u64) {
        let d = self.admit(bytes, records);
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let t = Throttle::new(0, 0);
        assert_eq!(t.admit(u64::MAX / 2, 1 << 40), Duration::ZERO);
    }

    #[test]
    fn record_limit_spreads_batches() {
        let t = Throttle::new(0, 1000);
        assert!(t.admit(0, 500) <= Duration::from_millis(500));
        let w = t.admit(0, 1500); // 2000 records at 1000/s: due at 2 s
        assert!(
            w > Duration::from_millis(1900) && w <= Duration::from_secs(2),
            "{w:?}"
        );
    }

    #[test]
    fn the_tighter_limit_wins() {
        let t = Throttle::new(1_000_000, 1_000_000);
        let w = t.admit(3_000_000, 10);
        assert!(w > Duration::from_millis(2900), "{w:?}");
    }
}
