//! Digest windows (`batch.window`, docs/configuration.md#digests): when each bridge+sink queue last formed a digest, so the
//! next one waits out the window unless `max` events are ready. In memory only: after a
//! restart the first digest goes without waiting.
//!
//! One set for the whole daemon, made where the deliverers are started and handed to each:
//! a deliverer started again (a reload, a restart after a panic) keeps its queue's window.

use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// When each queue (bridge, sink id) formed its last digest.
#[derive(Debug, Default)]
pub struct Windows {
    formed: Mutex<HashMap<(String, String), DateTime<Utc>>>,
}

impl Windows {
    /// When the window that began at this queue's last digest closes, if it is open at `now`.
    pub fn open_until(
        &self,
        bridge: &str,
        sink: &str,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let last = {
            let all = self.formed.lock().unwrap_or_else(|e| e.into_inner());
            all.get(&(bridge.to_string(), sink.to_string())).copied()
        };
        let end = closes(last?, window);
        (end > now).then_some(end)
    }

    /// Notes that this queue formed a digest at `at`: its window begins.
    pub fn formed(&self, bridge: &str, sink: &str, at: DateTime<Utc>) {
        let mut all = self.formed.lock().unwrap_or_else(|e| e.into_inner());
        all.insert((bridge.to_string(), sink.to_string()), at);
    }
}

/// The end of a window begun at `start` (the end of time for one too long to add).
fn closes(start: DateTime<Utc>, window: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(window)
        .ok()
        .and_then(|w| start.checked_add_signed(w))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_window_is_open_from_its_digest_until_its_end_for_its_own_queue_only() {
        let w = Windows::default();
        let hour = Duration::from_secs(3600);
        // No digest yet: nothing to wait for.
        assert_eq!(
            w.open_until("b", "s", hour, at("2030-01-01T10:00:00Z")),
            None
        );
        w.formed("b", "s", at("2030-01-01T10:00:00Z"));
        let end = Some(at("2030-01-01T11:00:00Z"));
        assert_eq!(
            w.open_until("b", "s", hour, at("2030-01-01T10:00:00Z")),
            end
        );
        assert_eq!(
            w.open_until("b", "s", hour, at("2030-01-01T10:59:59Z")),
            end
        );
        assert_eq!(
            w.open_until("b", "s", hour, at("2030-01-01T11:00:00Z")),
            None
        );
        // Another sink of the bridge, or the same sink id of another bridge: its own window.
        assert_eq!(
            w.open_until("b", "t", hour, at("2030-01-01T10:30:00Z")),
            None
        );
        assert_eq!(
            w.open_until("c", "s", hour, at("2030-01-01T10:30:00Z")),
            None
        );
        // A later digest starts the window again.
        w.formed("b", "s", at("2030-01-01T12:00:00Z"));
        assert_eq!(
            w.open_until("b", "s", hour, at("2030-01-01T12:30:00Z")),
            Some(at("2030-01-01T13:00:00Z"))
        );
    }

    #[test]
    fn a_window_past_the_end_of_time_stays_open_without_a_panic() {
        let w = Windows::default();
        w.formed("b", "s", at("2030-01-01T10:00:00Z"));
        let forever = Duration::from_secs(u64::MAX);
        assert_eq!(
            w.open_until("b", "s", forever, at("2030-01-01T10:00:00Z")),
            Some(DateTime::<Utc>::MAX_UTC)
        );
    }
}
