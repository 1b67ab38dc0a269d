//! What the daemon does when its work fails: a bridge's poll or deliverer that panics is
//! reported and started again (docs/operations.md#isolation; `turns` and `deliverers` call
//! these), and a store that stops taking writes is opened again until it does
//! (docs/operations.md#health-a-full-disk-and-the-watchdog). Each takes the handles it uses,
//! and the clock.

use crate::config::Bridge;
use crate::runtime::{Board, StoreHandle};
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A bridge's tasks: its scheduler, and one deliverer per sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Task {
    Poll,
    Delivery,
}

impl Task {
    pub(super) fn word(self) -> &'static str {
        match self {
            Task::Poll => "poll",
            Task::Delivery => "delivery",
        }
    }
}

/// The pause before a deliverer that keeps ending is started again: it doubles from the first
/// to the longest, and starts over once the task ran longer than the longest.
pub(super) const FIRST_PAUSE: Duration = Duration::from_secs(1);
const LONGEST_PAUSE: Duration = Duration::from_secs(300);

/// When a task that ended after running `ran` is started again: the poll task on the bridge's
/// next slot (None when its schedule has none), a deliverer after `pause`, which doubles.
pub(super) fn restart_at(
    b: &Bridge,
    task: Task,
    now: chrono::DateTime<chrono::Utc>,
    ran: Duration,
    pause: &mut Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    if ran > LONGEST_PAUSE {
        *pause = FIRST_PAUSE;
    }
    match task {
        Task::Poll => b.schedule.next_after(&b.name, now),
        Task::Delivery => {
            let at = now + *pause;
            *pause = (*pause * 2).min(LONGEST_PAUSE);
            Some(at)
        }
    }
}

/// A task that ended on its own and is started again at `restart_at`: logged at ERROR,
/// counted, and shown in the bridge's status and by `/healthz` until then.
pub(super) fn crashed(
    board: &Board,
    b: &Bridge,
    task: Task,
    why: String,
    restart_at: chrono::DateTime<chrono::Utc>,
) {
    let when = restart_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    error!(
        restart_at = %when,
        "bridge {}: {why}; it is started again at {when}",
        b.name
    );
    crate::metrics::task_restart(&b.name, task.word());
    board.task_ended(
        &b.name,
        task.word(),
        format!("{why} (it is started again at {when})"),
    );
    board.update(&b.name, |s| {
        s.restarts += 1;
        s.last_crash = Some(why);
        if task == Task::Poll {
            s.next_poll = Some(restart_at);
        }
    });
}

/// Watches the store: a probe now and then while it is healthy, and while it is not, tries
/// to open it again (with a growing pause between tries) until it takes writes.
pub(super) async fn supervise_store(store: StoreHandle, dir: PathBuf, stop: CancellationToken) {
    const PROBE_EVERY: Duration = Duration::from_secs(30);
    const FIRST_RETRY: Duration = Duration::from_millis(500);
    const LONGEST_RETRY: Duration = Duration::from_secs(30);
    let mut retry = FIRST_RETRY;
    loop {
        if store.failure().is_none() {
            retry = FIRST_RETRY;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = store.failing() => {}
                _ = tokio::time::sleep(PROBE_EVERY) => {
                    let s = store.clone();
                    let _ = tokio::task::spawn_blocking(move || s.probe()).await;
                }
            }
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        crate::metrics::store_reopen();
        let (s, d) = (store.clone(), dir.clone());
        let reopened =
            tokio::task::spawn_blocking(move || s.reopen(&d, Duration::from_secs(30))).await;
        match reopened {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                store.still_failing(&e);
                info!(
                    retry_in_ms = crate::clock::ms(retry),
                    "state database still does not take writes: {e}"
                );
                retry = (retry * 2).min(LONGEST_RETRY);
            }
            Err(e) => error!("re-opening the state database: {e}"),
        }
    }
}
