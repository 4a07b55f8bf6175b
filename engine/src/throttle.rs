//! Job-wide flow control: bytes per second and records per second.
//!
//! One limiter is shared by all tasks of a job, so `channel` does not
//! multiply the limit. Each batch asks for its cost before it is written;
//! the caller sleeps until the budget allows it. Smooth enough at batch
//! granularity and free when unlimited.
//!
//! Time the job spent stalled (a cut link, a restarting agent) is not owed
//! back: the budget saved while idle is capped at [`BURST`], so the source
//! never sees more than the limit plus one second's worth after an outage.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The most unused budget a job can save up: one second's worth.
pub const BURST: Duration = Duration::from_secs(1);

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
        self.admit_at(Instant::now(), bytes, records)
    }

    fn admit_at(&self, now: Instant, bytes: u64, records: u64) -> Duration {
        if self.is_unlimited() {
            return Duration::ZERO;
        }
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // Behind schedule by more than BURST (the job was stalled): move
        // the schedule's start so that only BURST of saved budget remains.
        let idle = now
            .saturating_duration_since(s.start)
            .saturating_sub(self.due(&s));
        if idle > BURST {
            s.start += idle - BURST;
        }
        s.bytes += bytes;
        s.records += records;
        self.due(&s)
            .saturating_sub(now.saturating_duration_since(s.start))
    }

    /// When the budget so far is used up, counted from the schedule's start.
    fn due(&self, s: &State) -> Duration {
        let need = |done: u64, rate: u64| {
            if rate == 0 {
                0.0
            } else {
                done as f64 / rate as f64
            }
        };
        let secs = need(s.bytes, self.bytes_per_s).max(need(s.records, self.records_per_s));
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
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
    fn a_stall_is_not_made_up_for_beyond_one_second() {
        let t = Throttle::new(0, 1000);
        let t0 = t.state.lock().unwrap().start;
        assert_eq!(t.admit_at(t0, 0, 1000), Duration::from_secs(1));
        // Idle for 10 s after the budget of 1 s: only BURST (1000 records)
        // may go at once; the next 1000 wait a second.
        let later = t0 + Duration::from_secs(11);
        assert_eq!(t.admit_at(later, 0, 1000), Duration::ZERO);
        assert_eq!(t.admit_at(later, 0, 1000), Duration::from_secs(1));
        // On schedule, nothing changes.
        assert_eq!(
            t.admit_at(later + Duration::from_secs(1), 0, 1000),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_tighter_limit_wins() {
        let t = Throttle::new(1_000_000, 1_000_000);
        let w = t.admit(3_000_000, 10);
        assert!(w > Duration::from_millis(2900), "{w:?}");
    }
}
