//! Who may start a handshake now.
//!
//! A handshake (TLS and the Hello) costs the broker CPU and memory until it
//! ends; a session after it costs little. So only handshakes are bounded
//! here, three ways:
//! - `max_handshakes` at once over both transports: the CPU bound;
//! - `max_handshakes_per_source` at once from one source address: one slow
//!   client (or one NAT full of them) cannot hold every slot;
//! - `handshake_rate_per_source` new ones a second from one address (a
//!   token bucket holding two seconds' worth): a flood from one address is
//!   cut to that pace.
//!
//! A slot is held by a [`Permit`] and given back when the handshake ends,
//! whether the session goes on or not; sessions are bounded by
//! `max_agents` alone. The table of sources is bounded too: entries that
//! hold nothing and have a full bucket are forgotten when it is full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;

/// Source addresses tracked at most; beyond it (after forgetting the idle
/// ones) a new source is refused as if the broker were busy.
const MAX_SOURCES: usize = 65_536;

/// Why an attempt was not given a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_handshakes` are in progress.
    Busy,
    /// `max_handshakes_per_source` from this address are in progress.
    SourceBusy,
    /// This address started more than `handshake_rate_per_source` a second.
    SourceRate,
}

#[derive(Debug)]
struct Source {
    in_flight: usize,
    tokens: f64,
    refilled: Instant,
}

/// The handshake slots of one broker, shared by both transports.
pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
    max_per_source: usize,
    rate: f64,
    burst: f64,
    sources: Mutex<HashMap<IpAddr, Source>>,
}

/// One handshake's slot; dropping it gives the slot back.
pub(crate) struct Permit {
    admission: Arc<Admission>,
    source: IpAddr,
    _slot: OwnedSemaphorePermit,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut sources = self.admission.lock();
        if let Some(s) = sources.get_mut(&self.source) {
            s.in_flight = s.in_flight.saturating_sub(1);
        }
    }
}

impl Admission {
    pub(crate) fn new(limits: &Limits) -> Arc<Self> {
        let rate = limits.handshake_rate_per_source as f64;
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(limits.max_handshakes)),
            max: limits.max_handshakes,
            max_per_source: limits.max_handshakes_per_source,
            rate,
            burst: (rate * 2.0).max(1.0),
            sources: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a handshake from `source`, or why there is none.
    pub(crate) fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Permit, Refused> {
        self.admit_at(source, Instant::now())
    }

    fn admit_at(self: &Arc<Self>, source: IpAddr, now: Instant) -> Result<Permit, Refused> {
        let mut sources = self.lock();
        if !sources.contains_key(&source) && sources.len() >= MAX_SOURCES {
            let (rate, burst) = (self.rate, self.burst);
            sources.retain(|_, s| s.in_flight > 0 || refill(s, now, rate, burst) < burst);
            if sources.len() >= MAX_SOURCES {
                return Err(Refused::Busy);
            }
        }
        let s = sources.entry(source).or_insert(Source {
            in_flight: 0,
            tokens: self.burst,
            refilled: now,
        });
        if s.in_flight >= self.max_per_source {
            return Err(Refused::SourceBusy);
        }
        if refill(s, now, self.rate, self.burst) < 1.0 {
            return Err(Refused::SourceRate);
        }
        let slot = self
            .slots
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::Busy)?;
        s.tokens -= 1.0;
        s.in_flight += 1;
        Ok(Permit {
            admission: self.clone(),
            source,
            _slot: slot,
        })
    }

    /// Handshakes in progress now.
    pub(crate) fn in_progress(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, Source>> {
        // Every change under the lock is a few field updates; a panic
        // cannot leave an entry half-written in a way that matters.
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Tops up `s`'s bucket for the time since its last refill; its tokens.
fn refill(s: &mut Source, now: Instant, rate: f64, burst: f64) -> f64 {
    let elapsed = now.saturating_duration_since(s.refilled).as_secs_f64();
    s.tokens = (s.tokens + elapsed * rate).min(burst);
    s.refilled = now;
    s.tokens
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(max: usize, per_source: usize, rate: u32) -> Limits {
        Limits {
            max_handshakes: max,
            max_handshakes_per_source: per_source,
            handshake_rate_per_source: rate,
            ..Limits::default()
        }
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn a_slot_comes_back_when_the_permit_is_dropped() {
        let a = Admission::new(&limits(2, 2, 100));
        let p1 = a.admit(ip(1)).unwrap();
        let _p2 = a.admit(ip(2)).unwrap();
        assert_eq!(a.admit(ip(3)).err(), Some(Refused::Busy));
        assert_eq!(a.in_progress(), 2);
        drop(p1);
        assert!(a.admit(ip(3)).is_ok());
    }

    #[test]
    fn one_source_cannot_hold_every_slot() {
        let a = Admission::new(&limits(10, 3, 100));
        let held: Vec<_> = (0..3).map(|_| a.admit(ip(1)).unwrap()).collect();
        assert_eq!(a.admit(ip(1)).err(), Some(Refused::SourceBusy));
        assert!(a.admit(ip(2)).is_ok(), "another source still gets in");
        drop(held);
        assert!(a.admit(ip(1)).is_ok());
    }

    #[test]
    fn a_source_is_held_to_its_rate_after_a_burst() {
        let a = Admission::new(&limits(1000, 1000, 10));
        let t0 = Instant::now();
        // A burst of twice the rate, then nothing until tokens come back.
        for i in 0..20 {
            drop(
                a.admit_at(ip(1), t0)
                    .unwrap_or_else(|e| panic!("{i}: {e:?}")),
            );
        }
        assert_eq!(a.admit_at(ip(1), t0).err(), Some(Refused::SourceRate));
        assert!(
            a.admit_at(ip(2), t0).is_ok(),
            "other sources are not slowed"
        );
        let later = t0 + Duration::from_millis(250);
        let passed = (0..10).filter(|_| a.admit_at(ip(1), later).is_ok()).count();
        assert_eq!(passed, 2, "a quarter second at 10/s");
    }

    #[test]
    fn idle_sources_are_forgotten_when_the_table_is_full() {
        let a = Admission::new(&limits(10, 10, 1000));
        let t0 = Instant::now();
        {
            let mut sources = a.lock();
            for n in 0..MAX_SOURCES as u32 {
                sources.insert(
                    IpAddr::from(n.to_be_bytes()),
                    Source {
                        in_flight: 0,
                        tokens: 0.0,
                        refilled: t0,
                    },
                );
            }
        }
        // Their buckets are empty at t0: nothing can be forgotten yet.
        assert_eq!(a.admit_at(ip(200), t0).err(), Some(Refused::Busy));
        // Two seconds later every bucket is full again: they go.
        let later = t0 + Duration::from_secs(3);
        assert!(a.admit_at(ip(200), later).is_ok());
        assert_eq!(a.lock().len(), 1);
    }
}
