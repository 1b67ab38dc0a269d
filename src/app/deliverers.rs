//! Deliverers that exist only while their queue has work (docs/scaling.md#memory): one is
//! started for each sink when its bridge starts (for what is persisted), and whenever a commit
//! wakes the bridge (new events, a resync, dead letters sent again); it drains its queue in
//! detection order, waits for the head's next attempt while there is one, and ends when the
//! queue is empty. One that panics is logged, shown and started again after a pause that
//! doubles from 1 s to 5 min (docs/operations.md#isolation).

use super::fleet::Running;
use super::supervise::{Task, crashed, restart_at};
use crate::deliver::window::Windows;
use crate::deliver::{Outcome, deliver_next};
use crate::logging::sink_span;
use crate::redact::Redactor;
use crate::runtime::{Ctx, caught};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;
use tokio::sync::Notify;
use tracing::{Instrument, error};

/// A sink's queue as the fleet sees it: whether its deliverer runs, and whether it was woken
/// since that one last looked at the queue.
#[derive(Default)]
pub(super) struct Queue {
    active: AtomicBool,
    woken: AtomicBool,
    /// Cuts short a deliverer's wait for its head's next attempt.
    nudge: Notify,
}

impl Queue {
    /// Whether its deliverer runs.
    #[cfg(test)]
    pub(super) fn is_active(&self) -> bool {
        self.active.load(SeqCst)
    }
}

/// Wakes every sink of the bridge: each one's deliverer looks at its queue again, started if
/// it is not running.
pub(super) fn wake(ctx: &Arc<Ctx>, windows: &Arc<Windows>, r: &Arc<Running>) {
    for sink in 0..r.queues.len() {
        wake_sink(ctx, windows, r, sink);
    }
}

fn wake_sink(ctx: &Arc<Ctx>, windows: &Arc<Windows>, r: &Arc<Running>, sink: usize) {
    let q = &r.queues[sink];
    q.woken.store(true, SeqCst);
    q.nudge.notify_one();
    if r.stop.is_cancelled() || q.active.swap(true, SeqCst) {
        return;
    }
    let span = sink_span(&r.bridge.name, &r.bridge.sinks[sink].shown);
    let run = deliverer(ctx.clone(), windows.clone(), r.clone(), sink);
    r.tasks.spawn(run.instrument(span));
}

/// Drains the queue until it is empty (or the bridge stops), starting over after a panic.
async fn deliverer(ctx: Arc<Ctx>, windows: Arc<Windows>, r: Arc<Running>, sink: usize) {
    let q = &r.queues[sink];
    let mut pause = super::supervise::FIRST_PAUSE;
    loop {
        let started = ctx.clock.instant();
        match caught(drain(&ctx, &windows, &r, sink)).await {
            Ok(()) if r.stop.is_cancelled() => return,
            Ok(()) => {
                q.active.store(false, SeqCst);
                // Woken after its last look, while it still counted as running: look again.
                if q.woken.load(SeqCst) && !q.active.swap(true, SeqCst) {
                    continue;
                }
                return;
            }
            Err(panic) => {
                let b = &r.bridge;
                let msg = crate::redact::panic_message(&*panic);
                let msg = Redactor::new(&b.secrets).clean(&msg);
                let why = format!("its delivery task panicked: {msg}");
                if r.stop.is_cancelled() {
                    error!("bridge {}: {why}", b.name);
                    return;
                }
                let (now, ran) = (ctx.clock.now(), ctx.clock.instant() - started);
                let at = restart_at(b, Task::Delivery, now, ran, &mut pause);
                let at = at.unwrap_or(now);
                crashed(&ctx.board, b, Task::Delivery, why, at);
                let wait = (at - now).to_std().unwrap_or(Duration::ZERO);
                tokio::select! {
                    _ = r.stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                ctx.board.task_restarted(&b.name, Task::Delivery.word());
            }
        }
    }
}

/// Delivers what is due, waits for the head's next attempt (or a wake), and returns when the
/// queue is empty or the bridge stops.
async fn drain(ctx: &Ctx, windows: &Windows, r: &Running, sink: usize) {
    let (b, q) = (&r.bridge, &r.queues[sink]);
    let s = &b.sinks[sink];
    let (store, clock) = (&ctx.store, &ctx.clock);
    // A step that takes far longer than its time-out is stuck (see `runtime::Beats`).
    let limit = s.timeout + Duration::from_secs(60);
    loop {
        if store.failure().is_some() {
            tokio::select! {
                _ = r.stop.cancelled() => return,
                _ = store.recovered() => {}
            }
        }
        q.woken.store(false, SeqCst);
        let outcome = {
            let _step = ctx.beats.step("a delivery", limit);
            let next = deliver_next(
                (store, &ctx.clients.sender),
                windows,
                &b.name,
                s,
                clock.now(),
            );
            Box::pin(next).await
        };
        let wait = match outcome {
            Ok(Outcome::Empty) => return,
            Ok(Outcome::NotDue(at)) => (at - clock.now()).to_std().unwrap_or_default(),
            Ok(_) if r.stop.is_cancelled() => return,
            Ok(_) => continue,
            // The store does not take writes: logged once where it was found; wait for it.
            Err(e) if e.is_failure() && store.failure().is_some() => continue,
            Err(e) => {
                error!("outbox of {} to {}: {e}", b.name, s.shown);
                Duration::from_secs(5)
            }
        };
        tokio::select! {
            _ = r.stop.cancelled() => return,
            _ = q.nudge.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
