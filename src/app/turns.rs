//! One timer for every bridge's next poll (docs/scaling.md#memory): a heap of due times, and
//! one task that sleeps until the earliest and starts the polls that are due, each in a task
//! that lives for that poll only. An idle bridge is an entry in the heap, not a sleeping task
//! with its own timer and span. Polls of one bridge never overlap: the next is planned when
//! one ends. A poll that panics is logged, shown and started again on the bridge's next slot
//! (as a supervised task would be, docs/operations.md#isolation).

use super::fleet::Running;
use super::supervise::{Task, crashed};
use crate::logging::bridge_span;
use crate::poll::scheduler::{paused_until, poll_and_log, poll_in_slot, until_next};
use crate::redact::Redactor;
use crate::runtime::lock::lock;
use crate::runtime::{Busy, Ctx, Held, HostSlots, PollSlot, caught};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
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
    /// The turns' tasks, counted for the tests.
    #[cfg(test)]
    pub(super) tasks: Arc<tests::Tasks>,
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

    /// Starts each turn as it comes due, until `stop`: a turn that does not poll is done here,
    /// one that polls is started (a task, in its bridge's span) only once it has its poll's
    /// slot, and waits for one as an entry in [`Waiting`].
    pub(super) async fn drive(self: Arc<Self>, ctx: Arc<Ctx>, stop: CancellationToken) {
        let mut waiting = Waiting::default();
        loop {
            // Enabled before looking for slots: one given back meanwhile wakes this loop.
            let freed = ctx.polls.freed();
            tokio::pin!(freed);
            freed.as_mut().enable();
            self.take_due(&ctx, &mut waiting).await;
            waiting.unpark();
            self.start_waiting(&ctx, &mut waiting);
            let next = lock(&self.heap).peek().map(|Reverse(d)| d.at);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let blocked = waiting.len() > 0;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.earlier.notified() => {}
                _ = freed, if blocked => {}
                _ = sleep => {}
            }
        }
    }

    /// Takes every turn due from the heap: a turn that does not poll plans the bridge's next
    /// slot here (a restart's turn of a bridge with a baseline: a read of its meta, no task),
    /// one that polls goes to `waiting`.
    async fn take_due(self: &Arc<Self>, ctx: &Arc<Ctx>, waiting: &mut Waiting) {
        let now = ctx.clock.instant();
        loop {
            let d = {
                let mut heap = lock(&self.heap);
                match heap.peek() {
                    Some(Reverse(d)) if d.at <= now => heap.pop().map(|Reverse(d)| d),
                    _ => None,
                }
            };
            let Some(d) = d else { return };
            // Thousands due at once (a start) yield the worker now and then.
            tokio::task::consume_budget().await;
            if d.running.stop.is_cancelled() {
                continue;
            }
            match next_step(ctx, &d) {
                Step::Plan => plan(ctx, self, &d.running),
                Step::Poll => {
                    waiting.ready.insert((d.at, d.order), d);
                }
                Step::AfterRecovery => self.start(ctx, d, None),
            }
        }
    }

    /// Starts the polls waiting, first due first, each with its bridge's poll lock and a slot
    /// taken here; one whose host has no free slot waits apart (holding back no other host's),
    /// and when no slot of all polls is free the rest wait for one.
    fn start_waiting(self: &Arc<Self>, ctx: &Arc<Ctx>, waiting: &mut Waiting) {
        while let Some((key, d)) = waiting.ready.pop_first() {
            let r = &d.running;
            if r.stop.is_cancelled() {
                continue;
            }
            let Ok(held) = ctx.polls.gate(&r.bridge.name).try_lock_owned() else {
                // A poll asked for through the admin API is in flight: this one waits for its
                // end, then for a slot, as that one did.
                self.start(ctx, d, None);
                continue;
            };
            match ctx.polls.try_slot(&r.bridge.source.url) {
                Ok(slot) => self.start(ctx, d, Some((held, slot))),
                Err(Busy::Host(host)) => waiting.park(host, key, d),
                Err(Busy::All) => {
                    waiting.ready.insert(key, d);
                    return;
                }
            }
        }
    }

    /// Starts a turn's task, in its bridge's span.
    fn start(self: &Arc<Self>, ctx: &Arc<Ctx>, d: Due, held: Option<(Held, PollSlot)>) {
        let r = d.running;
        let span = bridge_span(&r.bridge.name);
        let run = turn(ctx.clone(), self.clone(), r.clone(), d.turn, held);
        #[cfg(test)]
        let run = self.tasks.count(run);
        r.tasks.spawn(run.instrument(span));
    }
}

/// What a due turn does.
enum Step {
    /// Plans the bridge's next slot (no poll now).
    Plan,
    /// Polls, once it has its slot.
    Poll,
    /// Waits for the store to take writes again, then polls.
    AfterRecovery,
}

/// What a due turn does: a bridge starting polls only without a baseline, none polls while
/// its source asked for a pause, and a slot's poll waits while the store takes no writes (a
/// poll could store nothing).
fn next_step(ctx: &Ctx, d: &Due) -> Step {
    let (b, board) = (&d.running.bridge, &ctx.board);
    if d.turn == Turn::AfterCrash {
        board.task_restarted(&b.name, Task::Poll.word());
    }
    if paused_until(board, &b.name, ctx.clock.now()).is_some() {
        return Step::Plan;
    }
    match d.turn {
        // A cheap read (sled's `get`), done here for every bridge of a restart: the meta
        // without its learned shape, as a poll reads it first.
        Turn::Start => {
            let fresh = ctx.store.get().and_then(|s| s.meta_read(&b.name));
            match fresh {
                Ok(m) if !m.head().baselined => Step::Poll,
                _ => Step::Plan,
            }
        }
        Turn::Restarted | Turn::AfterCrash => Step::Poll,
        Turn::Slot => {
            board.update(&b.name, |s| s.paused_until = None);
            match ctx.store.failure() {
                Some(_) => Step::AfterRecovery,
                None => Step::Poll,
            }
        }
    }
}

type Key = (Instant, u64);

/// The due turns that poll and wait for a slot: those that may have one, first due first,
/// and apart, per host, those whose host had none free (until it has).
#[derive(Default)]
struct Waiting {
    ready: BTreeMap<Key, Due>,
    parked: HashMap<usize, (HostSlots, BTreeMap<Key, Due>)>,
}

impl Waiting {
    fn len(&self) -> usize {
        self.ready.len() + self.parked.values().map(|(_, q)| q.len()).sum::<usize>()
    }

    fn park(&mut self, host: HostSlots, key: Key, d: Due) {
        let (_, queue) = self
            .parked
            .entry(host.key())
            .or_insert((host, BTreeMap::new()));
        queue.insert(key, d);
    }

    /// As many of each host's turns as it has free slots become ready again.
    fn unpark(&mut self) {
        let Waiting { ready, parked } = self;
        parked.retain(|_, (host, queue)| {
            for _ in 0..host.free() {
                let Some((key, d)) = queue.pop_first() else {
                    break;
                };
                ready.insert(key, d);
            }
            !queue.is_empty()
        });
    }
}

/// One turn of a bridge that polls (with its poll lock and slot when the timer took them),
/// then the plan of its next.
async fn turn(
    ctx: Arc<Ctx>,
    timer: Arc<Timer>,
    r: Arc<Running>,
    turn: Turn,
    held: Option<(Held, PollSlot)>,
) {
    let (b, clock) = (&r.bridge, &ctx.clock);
    let redactor = Redactor::new(&b.secrets);
    let polled = match held {
        Some((lock, slot)) => {
            let poll = async {
                let _lock = lock;
                if paused_until(&ctx.board, &b.name, clock.now()).is_none() {
                    let _report = poll_in_slot(&ctx, b, &redactor, slot).await;
                }
            };
            caught(poll).await
        }
        None => {
            // While the store does not take writes a poll could store nothing: skip the slots
            // until it does (the failure is logged once, and shown by `/healthz`).
            if turn == Turn::Slot && ctx.store.failure().is_some() {
                tokio::select! {
                    _ = r.stop.cancelled() => return,
                    _ = ctx.store.recovered() => {}
                }
            }
            caught(async {
                let _report = poll_and_log(&ctx, b, &redactor).await;
            })
            .await
        }
    };
    if let Err(panic) = polled {
        let msg = redactor.clean(&crate::redact::panic_message(&*panic));
        return after_panic(&ctx, &timer, &r, format!("its poll task panicked: {msg}"));
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

#[cfg(test)]
mod tests {
    use super::super::fleet::tests::alone;
    use crate::runtime::{Ctx, PollLimits};
    use crate::store::{BridgeMeta, Commit, Store};
    use crate::testkit::{BridgeYaml, PATIENCE, eventually};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    use tokio::sync::watch;
    use tokio_util::sync::CancellationToken;

    /// The tasks a timer started for its turns: alive now, the most alive at once, and in
    /// all. (Each has its bridge's span: as many spans.)
    #[derive(Default)]
    pub(in crate::app) struct Tasks {
        alive: AtomicUsize,
        pub(in crate::app) most: AtomicUsize,
        pub(in crate::app) made: AtomicUsize,
    }

    /// Counts a task alive until it is dropped.
    struct Alive(Arc<Tasks>);

    impl Drop for Alive {
        fn drop(&mut self) {
            self.0.alive.fetch_sub(1, SeqCst);
        }
    }

    impl Tasks {
        pub(super) fn count<F: Future>(
            self: &Arc<Self>,
            task: F,
        ) -> impl Future<Output = F::Output> + use<F> {
            self.made.fetch_add(1, SeqCst);
            let alive = self.alive.fetch_add(1, SeqCst) + 1;
            self.most.fetch_max(alive, SeqCst);
            let counted = Alive(self.clone());
            async move {
                let _counted = counted;
                task.await
            }
        }
    }

    /// A source on 127.0.0.1 that holds every request until `release` says true: its URL,
    /// how many requests it holds or held, and the release.
    async fn held_source() -> (String, Arc<AtomicUsize>, watch::Sender<bool>) {
        let (release, released) = watch::channel(false);
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let app = axum::Router::new().route(
            "/items",
            axum::routing::get(move || {
                let (counted, mut released) = (counted.clone(), released.clone());
                async move {
                    counted.fetch_add(1, SeqCst);
                    let _ = released.wait_for(|r| *r).await;
                    axum::Json(serde_json::json!([{"id": 1}]))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/items", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (url, hits, release)
    }

    fn bridge(name: &str, url: &str) -> Arc<crate::config::Bridge> {
        let yaml = BridgeYaml::new(url)
            .select("$[*]")
            .every("1h")
            .timeout("120s")
            .sink("console")
            .build();
        Arc::new(crate::config::test_bridge(name, &yaml))
    }

    /// A hundred bridges due at once against a host that does not answer: it holds its own
    /// slots only, the bridges of another host poll meanwhile, and a poll is a task (and a
    /// span) only once it has its slot: the others wait as entries of the timer. Once the
    /// host answers, every one of them polls.
    #[tokio::test]
    async fn bridges_due_at_once_wait_for_a_slot_without_a_task_and_a_hung_host_holds_back_only_its_own()
     {
        const HUNG: usize = 100;
        let (hung_url, held, release) = held_source().await;
        let (fine_url, fine_hits) = crate::testkit::counting_source().await;
        let dir = tempfile::tempdir().unwrap();
        let limits = PollLimits {
            total: 8,
            per_host: 3,
        };
        let store = Store::open(dir.path()).unwrap();
        let ctx = Arc::new(Ctx::new(store).with_poll_limits(limits));
        let root = CancellationToken::new();
        let mut fleet = alone(&ctx, &root);
        for i in 0..HUNG {
            fleet.start(bridge(&format!("hung{i}"), &hung_url));
        }
        for i in 0..5 {
            fleet.start(bridge(&format!("fine{i}"), &fine_url));
        }
        eventually(PATIENCE, "the other host's bridges to poll", || async {
            let polled = (0..5).all(|i| ctx.status(&format!("fine{i}")).polls == 1);
            let seen = (held.load(SeqCst), fine_hits.load(SeqCst));
            polled
                .then_some(())
                .ok_or(format!("(hung, fine) requests {seen:?}"))
        })
        .await;
        assert_eq!(held.load(SeqCst), 3, "the hung host has its own slots only");
        let most = fleet.timer.tasks.most.load(SeqCst);
        assert!(most <= 8, "{most} tasks (and spans) at once, 8 slots");
        release.send_replace(true);
        eventually(PATIENCE, "every bridge of the host to poll", || async {
            let n = (0..HUNG)
                .filter(|i| ctx.status(&format!("hung{i}")).polls == 1)
                .count();
            (n == HUNG).then_some(()).ok_or(format!("{n} polled"))
        })
        .await;
        let most = fleet.timer.tasks.most.load(SeqCst);
        assert!(most <= 8, "{most} tasks (and spans) at once, 8 slots");
        root.cancel();
    }

    /// A restart of bridges that have their baselines plans each one's next slot in the timer:
    /// no poll, no task, no span.
    #[tokio::test]
    async fn a_restart_plans_bridges_with_a_baseline_without_a_task() {
        const N: usize = 200;
        let (url, hits) = crate::testkit::counting_source().await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for i in 0..N {
            let meta = BridgeMeta {
                seq: 1,
                baselined: true,
                ..Default::default()
            };
            let c = Commit {
                bridge: format!("b{i}"),
                meta,
                ..Default::default()
            };
            store.commit(&c).unwrap();
        }
        let ctx = Arc::new(Ctx::new(store));
        let root = CancellationToken::new();
        let mut fleet = alone(&ctx, &root);
        for i in 0..N {
            fleet.start(bridge(&format!("b{i}"), &url));
        }
        // A bridge without a baseline, started last, polls at once: the timer has looked at
        // every bridge before it by then.
        fleet.start(bridge("new", &url));
        eventually(PATIENCE, "every bridge's next slot planned", || async {
            let n = (0..N)
                .filter(|i| ctx.status(&format!("b{i}")).next_poll.is_some())
                .count();
            let new = ctx.status("new").polls;
            (n == N && new == 1)
                .then_some(())
                .ok_or(format!("{n} planned, new {new}"))
        })
        .await;
        assert_eq!(hits.load(SeqCst), 1, "only the new bridge polled");
        let made = fleet.timer.tasks.made.load(SeqCst);
        assert_eq!(made, 1, "one task (and span): the new bridge's poll");
        root.cancel();
    }
}
