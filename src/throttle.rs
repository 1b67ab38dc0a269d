//! At most one log line a minute for an event that someone else can repeat at will (a wrong
//! admin token, a connection to the admin socket from another user, the admin API at its
//! connection cap or out of file descriptors), with how many happened since the last line: the
//! log shows that it happens without being flooded by it.

use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// How often a throttled line may be written.
pub const EVERY: Duration = Duration::from_secs(60);

/// Counts one kind of event; says when a line is due.
pub struct Throttle {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    /// One line a minute.
    pub const fn new() -> Throttle {
        Throttle::every(EVERY)
    }

    pub const fn every(every: Duration) -> Throttle {
        Throttle {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one; gives the count to log when a line is due (and starts counting anew). For
    /// the throttles kept in statics, which no clock reaches: the real clock, read here.
    pub fn note(&self) -> Option<u64> {
        self.note_at(Instant::now())
    }

    /// [`Throttle::note`] at `now`, from the caller's clock.
    pub fn note_at(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.1 += 1;
        if s.0
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return None;
        }
        let n = s.1;
        *s = (Some(now), 0);
        Some(n)
    }
}

impl Default for Throttle {
    fn default() -> Throttle {
        Throttle::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_a_minute_with_the_count_since_the_last() {
        let t = Throttle::every(Duration::from_secs(3600));
        assert_eq!(t.note(), Some(1));
        assert_eq!((t.note(), t.note()), (None, None));
        let t = Throttle::every(Duration::ZERO);
        assert_eq!((t.note(), t.note()), (Some(1), Some(1)));
        let (t, start) = (Throttle::new(), Instant::now());
        assert_eq!(t.note_at(start), Some(1));
        for s in [1, 30, 59] {
            assert_eq!(t.note_at(start + Duration::from_secs(s)), None);
        }
        let later = start + Duration::from_secs(60);
        assert_eq!(
            t.note_at(later),
            Some(4),
            "the three held back, and this one"
        );
        assert_eq!(t.note_at(later + Duration::from_secs(1)), None);
    }
}
