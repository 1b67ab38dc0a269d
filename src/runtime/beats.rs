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
    pub(super) busy: Mutex<HashMap<u64, Step>>,
    clock: Clock,
}

/// A step in progress: what it is, since when, its limit, and whether it waits in line now.
pub(super) struct Step {
    what: &'static str,
    since: Instant,
    limit: Duration,
    waiting: bool,
}

tokio::task_local! {
    /// The step the running task does (see [`Beat::scope`]).
    static CURRENT: u64;
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
        let step = Step {
            what,
            since: self.clock.instant(),
            limit,
            waiting: false,
        };
        lock(&self.busy).insert(id, step);
        Beat { beats: self, id }
    }

    /// Marks the step the current task does (see [`Beat::scope`]) as waiting in line (for its
    /// share of the memory budget of polls): until the guard is dropped it is not overdue, and
    /// the time it waited is added to its limit. Outside a step it marks nothing.
    pub fn waiting(&self) -> Waiting<'_> {
        let id = CURRENT.try_with(|id| *id).ok();
        if let Some(id) = id
            && let Some(step) = lock(&self.busy).get_mut(&id)
        {
            step.waiting = true;
        }
        Waiting {
            beats: self,
            id,
            since: self.clock.instant(),
        }
    }

    /// The step furthest past its limit, and by how much.
    pub fn overdue(&self, now: Instant) -> Option<(&'static str, Duration)> {
        let busy = lock(&self.busy);
        busy.values()
            .filter(|s| !s.waiting)
            .filter_map(|s| {
                let over = now.checked_duration_since(s.since + s.limit)?;
                Some((s.what, over))
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

impl Beat<'_> {
    /// `fut` as this step's work, so that [`Beats::waiting`] inside it finds the step (also
    /// when it is spawned as a task of its own).
    pub fn scope<F: std::future::Future>(
        &self,
        fut: F,
    ) -> tokio::task::futures::TaskLocalFuture<u64, F> {
        CURRENT.scope(self.id, fut)
    }
}

/// A step waiting in line; see [`Beats::waiting`].
pub struct Waiting<'a> {
    beats: &'a Beats,
    id: Option<u64>,
    since: Instant,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let waited = self.beats.clock.instant() - self.since;
        if let Some(id) = self.id
            && let Some(step) = lock(&self.beats.busy).get_mut(&id)
        {
            step.waiting = false;
            step.limit += waited;
        }
    }
}

impl Drop for Beat<'_> {
    fn drop(&mut self) {
        lock(&self.beats.busy).remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_step_waiting_in_line_is_not_overdue_and_its_wait_extends_its_limit() {
        let start = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let beats = Beats::new(Clock::following_tokio(start));
        let waiter = beats.step("a poll", Duration::from_secs(10));
        let other = beats.step("a delivery", Duration::from_secs(50));
        let sleep = |s| tokio::time::sleep(Duration::from_secs(s));
        waiter
            .scope(async {
                let line = beats.waiting();
                sleep(40).await;
                assert_eq!(beats.stuck(), None);
                // A step that is not waiting is still judged meanwhile.
                sleep(20).await;
                assert!(beats.stuck().unwrap().starts_with("a delivery"));
                drop(other);
                sleep(40).await;
                assert_eq!(beats.stuck(), None, "waited 100 s of a 10 s limit");
                drop(line);
                sleep(9).await;
                assert_eq!(beats.stuck(), None, "the wait was added to the limit");
                sleep(3).await;
                assert!(beats.stuck().unwrap().starts_with("a poll"));
            })
            .await;
        drop(waiter);
        // Outside a step, waiting marks nothing.
        let stuck = beats.step("a poll", Duration::from_secs(1));
        let line = beats.waiting();
        sleep(5).await;
        assert!(beats.stuck().is_some());
        drop((line, stuck));
    }
}
