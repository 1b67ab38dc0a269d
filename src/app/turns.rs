//! One timer for every bridge's next poll (docs/scaling.md#memory): a heap of due times, and
//! one task that sleeps until the earliest and starts the polls that are due, each in a task
//! that lives for that poll only. An idle bridge is an entry in the heap, not a sleeping task
//! with its own timer and span. Polls of one bridge never overlap: the next is planned when
//! one ends. A poll that panics is logged, shown and started again on the bridge's next slot
//! (as a supervised task would be, docs/operations.md#isolation).

use super::fleet::Running;
use super::supervise::{Task, crashed};
use crate::logging::bridge_span;
use crate::poll::scheduler::{paused_until, poll_and_log, until_next};
use crate::redact::Redactor;
use crate::runtime::lock::lock;
use crate::runtime::{Ctx, caught};
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{self, AtomicU64};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error};

/// Why a bridge is due.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Turn {
    /// Just started: a bridge without a baseline polls at once, any other plans its slot.
    Start,
    /// Started at once as if restarted (`scheduler::run_bridge(.., restarted: true)`).
    Restarted,
    /// Its poll panicked, and this is the slot it is started again on: it polls.
    AfterCrash,
    /// Its schedule's slot.
    Slot,
}

struct Due {
    at: Instant,
    order: u64,
    turn: Turn,
    running: Arc<Running>,
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Every running bridge's next turn, earliest first. A stopped bridge's entry is dropped when
/// it comes due.
#[derive(Default)]
pub(super) struct Timer {
    heap: Mutex<BinaryHeap<Reverse<Due>>>,
    /// An entry earlier than the one the driver sleeps for came in.
    earlier: Notify,
    order: AtomicU64,
}

impl Timer {
    /// Plans `running`'s `turn` at `at`.
    pub(super) fn at(&self, at: Instant, running: Arc<Running>, turn: Turn) {
        let order = self.order.fetch_add(1, atomic::Ordering::Relaxed);
        let mut heap = lock(&self.heap);
        let first = heap.peek().is_none_or(|Reverse(d)| at < d.at);
        heap.push(Reverse(Due {
            at,
            order,
            turn,
            running,
        }));
        drop(heap);
        if first {
            self.earlier.notify_one();
        }
    }

    /// Starts each turn as it comes due, until `stop`.
    pub(super) async fn drive(self: Arc<Self>, ctx: Arc<Ctx>, stop: CancellationToken) {
        loop {
            let next = lock(&self.heap).peek().map(|Reverse(d)| d.at);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.earlier.notified() => continue,
                _ = sleep => {}
            }
            let now = ctx.clock.instant();
            let mut due = Vec::new();
            {
                let mut heap = lock(&self.heap);
                while heap.peek().is_some_and(|Reverse(d)| d.at <= now) {
                    if let Some(Reverse(d)) = heap.pop() {
                        due.push(d);
                    }
                }
            }
            for d in due {
                if d.running.stop.is_cancelled() {
                    continue;
                }
                let (ctx, timer, r) = (ctx.clone(), self.clone(), d.running.clone());
                let span = bridge_span(&r.bridge.name);
                d.running
                    .tasks
                    .spawn(turn(ctx, timer, r, d.turn).instrument(span));
            }
        }
    }
}

/// One turn of a bridge: its poll (unless a pause or its state says otherwise), then the plan
/// of the next.
async fn turn(ctx: Arc<Ctx>, timer: Arc<Timer>, r: Arc<Running>, turn: Turn) {
    let (b, board, clock) = (&r.bridge, &ctx.board, &ctx.clock);
    if turn == Turn::AfterCrash {
        board.task_restarted(&b.name, Task::Poll.word());
    }
    let paused = paused_until(board, &b.name, clock.now()).is_some();
    let polls = match turn {
        Turn::Start => {
            let fresh = ctx.store.get().and_then(|s| s.meta(&b.name));
            fresh.map(|m| !m.baselined).unwrap_or(false) && !paused
        }
        Turn::Restarted | Turn::AfterCrash => !paused,
        Turn::Slot => !paused,
    };
    if polls {
        if turn == Turn::Slot {
            board.update(&b.name, |s| s.paused_until = None);
            // While the store does not take writes a poll could store nothing: skip the slots
            // until it does (the failure is logged once, and shown by `/healthz`).
            if ctx.store.failure().is_some() {
                tokio::select! {
                    _ = r.stop.cancelled() => return,
                    _ = ctx.store.recovered() => {}
                }
            }
        }
        let redactor = Redactor::new(&b.secrets);
        if let Err(panic) = caught(poll_and_log(&ctx, b, &redactor)).await {
            let msg = redactor.clean(&crate::redact::panic_message(&*panic));
            return after_panic(&ctx, &timer, &r, format!("its poll task panicked: {msg}"));
        }
    }
    if r.stop.is_cancelled() {
        return;
    }
    plan(&ctx, &timer, &r);
}

/// Plans the bridge's next slot (a pause the source asked for and the jitter included); a
/// schedule with no future run plans nothing (the bridge stops polling, saying so).
pub(super) fn plan(ctx: &Ctx, timer: &Timer, r: &Arc<Running>) {
    if let Some(wait) = until_next(&ctx.board, &ctx.clock, &r.bridge) {
        timer.at(ctx.clock.instant() + wait, r.clone(), Turn::Slot);
    }
}

/// A poll that panicked: logged at ERROR, counted, shown by `/healthz`, and started again on
/// the bridge's next slot (not at all when its schedule has none).
fn after_panic(ctx: &Ctx, timer: &Timer, r: &Arc<Running>, why: String) {
    let b = &r.bridge;
    if r.stop.is_cancelled() {
        error!("bridge {}: {why}", b.name);
        return;
    }
    let now = ctx.clock.now();
    let Some(restart_at) = b.schedule.next_after(&b.name, now) else {
        error!(
            "bridge {}: {why}; its schedule has no future run, so it is not started again",
            b.name
        );
        ctx.board.task_ended(&b.name, Task::Poll.word(), why);
        return;
    };
    crashed(&ctx.board, b, Task::Poll, why, restart_at);
    let wait = (restart_at - now).to_std().unwrap_or_default();
    timer.at(ctx.clock.instant() + wait, r.clone(), Turn::AfterCrash);
}
