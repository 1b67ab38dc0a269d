//! The steps in progress (a poll, a delivery attempt), each with the time it may take. The
//! watchdog pings only while none is far past its time: a step stuck for good (a deadlock, a
//! wedged disk) then gets the daemon restarted by systemd
//! (docs/operations.md#health-a-full-disk-and-the-watchdog).

use super::lock::lock;
use crate::clock::Clock;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// The steps in progress; see the module.
#[derive(Default)]
pub struct Beats {
    next: AtomicU64,
    pub(super) busy: Mutex<HashMap<u64, (&'static str, Instant, Duration)>>,
    clock: Clock,
}

impl Beats {
    pub fn new(clock: Clock) -> Beats {
        Beats {
            clock,
            ..Beats::default()
        }
    }

    /// Registers a step that should end within `limit`; it ends when the guard is dropped.
    pub fn step(&self, what: &'static str, limit: Duration) -> Beat<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        lock(&self.busy).insert(id, (what, self.clock.instant(), limit));
        Beat { beats: self, id }
    }

    /// The step furthest past its limit, and by how much.
    pub fn overdue(&self, now: Instant) -> Option<(&'static str, Duration)> {
        let busy = lock(&self.busy);
        busy.values()
            .filter_map(|(what, since, limit)| {
                let over = now.checked_duration_since(*since + *limit)?;
                Some((*what, over))
            })
            .max_by_key(|(_, over)| *over)
    }

    /// The step most overdue now, as `/healthz` and the watchdog name it.
    pub fn stuck(&self) -> Option<String> {
        let (what, over) = self.overdue(self.clock.instant())?;
        Some(format!(
            "{what} has been running {}s past its time-outs",
            over.as_secs()
        ))
    }
}

/// A step in progress; see [`Beats::step`].
pub struct Beat<'a> {
    beats: &'a Beats,
    id: u64,
}

impl Drop for Beat<'_> {
    fn drop(&mut self) {
        lock(&self.beats.busy).remove(&self.id);
    }
}
