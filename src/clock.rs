//! The one clock of the daemon (docs/design.md#the-clock). It is made once at an edge (the
//! daemon's start, a CLI command) and handed down; what decides from the time takes `now` as
//! an argument, so a test can set the time instead of waiting for it. [`Clock::system`] reads
//! the real clocks; [`Clock::fixed`] and [`Clock::following_tokio`] are the clocks of tests.
//!
//! Also the one conversion between times and the Unix milliseconds the store keeps
//! ([`to_ms`], [`from_ms`]) and the whole milliseconds logs and statuses show ([`ms`]).

use chrono::{DateTime, Utc};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The wall clock (`now`, for what is stored and shown) and the monotonic one (`instant`, for
/// how long something took or waits). Cheap to clone: clones share the same time.
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Set>>);

/// A clock a test sets: the wall time `wall` at the monotonic `base`, moved on by `stepped`,
/// and with `follows_tokio` by tokio's clock as well (under paused time: by its sleeps and
/// `tokio::time::advance`).
struct Set {
    wall: DateTime<Utc>,
    base: Instant,
    follows_tokio: bool,
    stepped: Mutex<Duration>,
}

impl Clock {
    /// The real clocks. The monotonic one is tokio's, which is the system's unless a test
    /// paused it.
    pub fn system() -> Clock {
        Clock(None)
    }

    /// A clock that stands at `at` and moves only when [`Clock::advance`]d.
    pub fn fixed(at: DateTime<Utc>) -> Clock {
        Clock::set(at, false)
    }

    /// A clock that starts at `at` and moves with tokio's clock: in a test with paused time
    /// (`#[tokio::test(start_paused = true)]`) the wall time moves as the sleeps end.
    pub fn following_tokio(at: DateTime<Utc>) -> Clock {
        Clock::set(at, true)
    }

    fn set(at: DateTime<Utc>, follows_tokio: bool) -> Clock {
        Clock(Some(Arc::new(Set {
            wall: at,
            base: Instant::now(),
            follows_tokio,
            stepped: Mutex::new(Duration::ZERO),
        })))
    }

    /// Moves a test's clock on by `by` (both times). The system clock cannot be moved: no effect.
    pub fn advance(&self, by: Duration) {
        if let Some(s) = &self.0 {
            // A panic while the lock was held left a plain Duration: still a valid value.
            let mut stepped = s.stepped.lock().unwrap_or_else(|p| p.into_inner());
            *stepped += by;
        }
    }

    /// The wall clock, as stored and shown.
    pub fn now(&self) -> DateTime<Utc> {
        match &self.0 {
            None => Utc::now(),
            Some(s) => s.wall + (s.moved() + s.stepped()),
        }
    }

    /// The monotonic clock, for how long something took or is to wait.
    pub fn instant(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(s) => s.base + s.moved() + s.stepped(),
        }
    }
}

impl Set {
    /// How far tokio's clock moved since the clock was made, when it follows it.
    fn moved(&self) -> Duration {
        if self.follows_tokio {
            Instant::now().saturating_duration_since(self.base)
        } else {
            Duration::ZERO
        }
    }

    fn stepped(&self) -> Duration {
        *self.stepped.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A time as the Unix milliseconds the store keeps (whole milliseconds, as always stored).
pub fn to_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The time of stored Unix milliseconds; None when they are out of chrono's range.
pub fn from_ms(ms: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
}

/// A duration in whole milliseconds, for log fields and statuses (`duration_ms`, `retry_in_ms`).
pub fn ms(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_fixed_clock_moves_only_when_stepped_and_both_times_together() {
        let t = at("2026-01-01T12:00:00.250Z");
        let c = Clock::fixed(t);
        let (i, copy) = (c.instant(), c.clone());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!((c.now(), c.instant()), (t, i));
        copy.advance(Duration::from_secs(90));
        assert_eq!(c.now(), at("2026-01-01T12:01:30.250Z"));
        assert_eq!(c.instant() - i, Duration::from_secs(90));
    }

    #[tokio::test(start_paused = true)]
    async fn a_clock_following_tokio_moves_with_paused_time() {
        let t = at("2026-01-01T12:00:00Z");
        let c = Clock::following_tokio(t);
        let i = c.instant();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.now(), at("2026-01-01T13:00:00Z"));
        assert_eq!(c.instant() - i, Duration::from_secs(3600));
        c.advance(Duration::from_millis(1));
        assert_eq!(c.now(), at("2026-01-01T13:00:00.001Z"));
    }

    #[test]
    fn stored_milliseconds_are_unix_milliseconds_both_ways() {
        let t = at("2026-11-28T10:00:00.123Z");
        assert_eq!(to_ms(t), 1_795_860_000_123);
        assert_eq!(from_ms(1_795_860_000_123), Some(t));
        assert_eq!(from_ms(0), Some(DateTime::UNIX_EPOCH));
        assert_eq!(from_ms(i64::MAX), None);
        assert_eq!(ms(Duration::from_micros(41_999)), 41);
        assert_eq!(ms(Duration::MAX), u64::MAX);
    }
}
