//! Every running bridge, started, stopped and moved to a new set one by one. A running bridge
//! is its definition, an entry in the one [`Timer`] for its next poll, and a flag per sink:
//! its poll and its deliverers are tasks only while they have work (`turns`, `deliverers`).

use super::SHUTDOWN_GRACE;
use super::deliverers::{self, Queue};
use super::turns::{Timer, Turn};
use crate::config::Bridge;
use crate::deliver;
use crate::runtime::Ctx;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// One running bridge: what its turns and deliverers share.
pub(super) struct Running {
    pub(super) bridge: Arc<Bridge>,
    pub(super) stop: CancellationToken,
    /// Its poll and deliverers in flight, which a stop waits for.
    pub(super) tasks: TaskTracker,
    /// One per sink, in the order of `bridge.sinks`.
    pub(super) queues: Box<[Queue]>,
}

/// Every running bridge, by name.
pub(super) struct Fleet {
    pub(super) ctx: Arc<Ctx>,
    /// The digest windows of every queue, kept across a bridge's restarts and reloads.
    windows: Arc<deliver::window::Windows>,
    pub(super) root: CancellationToken,
    pub(super) running: HashMap<String, Arc<Running>>,
    /// What the admin API shows.
    pub(super) shown: Arc<RwLock<Vec<Arc<Bridge>>>>,
    /// Bridges waiting for a handoff are shown, not started.
    handoff: Arc<crate::handoff::shared::Shared>,
    /// Asks the peers for the state of bridges a reload adds (None without `--peers`).
    pub(super) receive: Option<Arc<crate::handoff::receive::Receive>>,
    pub(super) timer: Arc<Timer>,
}

impl Fleet {
    /// No bridge yet; the timer (and the giving back of free memory) runs until `root` is
    /// cancelled.
    pub(super) fn new(
        ctx: Arc<Ctx>,
        root: CancellationToken,
        shown: Vec<Arc<Bridge>>,
        handoff: Arc<crate::handoff::shared::Shared>,
    ) -> Fleet {
        let timer = Arc::new(Timer::default());
        tokio::spawn(timer.clone().drive(ctx.clone(), root.clone()));
        // What the bursts of polls freed goes back to the system (docs/scaling.md#memory).
        tokio::spawn(crate::runtime::heap::give_back_every(root.clone()));
        Fleet {
            ctx,
            windows: Arc::default(),
            root,
            running: HashMap::new(),
            shown: Arc::new(RwLock::new(shown)),
            handoff,
            receive: None,
            timer,
        }
    }

    /// Starts a bridge: its first turn at once (a poll if it has no baseline yet), and a look
    /// at each of its queues (for events persisted before).
    pub(super) fn start(&mut self, b: Arc<Bridge>) {
        self.ctx.board.forget_ended(&b.name);
        let r = Arc::new(Running {
            stop: self.root.child_token(),
            tasks: TaskTracker::new(),
            queues: b.sinks.iter().map(|_| Queue::default()).collect(),
            bridge: b,
        });
        let (ctx, windows) = (Arc::downgrade(&self.ctx), self.windows.clone());
        let woken = Arc::downgrade(&r);
        self.ctx.wakers.hook(
            &r.bridge.name,
            Arc::new(move || {
                if let (Some(ctx), Some(r)) = (ctx.upgrade(), woken.upgrade()) {
                    deliverers::wake(&ctx, &windows, &r);
                }
            }),
        );
        self.timer
            .at(self.ctx.clock.instant(), r.clone(), Turn::Start);
        // Deliverers for what was persisted, only if something was (a commit with events
        // wakes them): thousands of bridges starting with empty outboxes start no task and no
        // span for them (docs/scaling.md#memory).
        let name = &r.bridge.name;
        let empty = (self.ctx.store()).is_ok_and(|s| s.outbox_len(name) == 0);
        if !empty {
            deliverers::wake(&self.ctx, &self.windows, &r);
        }
        if let Some(old) = self.running.insert(r.bridge.name.clone(), r) {
            old.stop.cancel();
        }
    }

    /// Stops the named bridges and waits (at most the grace period) for their work to end.
    pub(super) async fn stop(&mut self, names: &[String]) {
        let mut gone = Vec::new();
        for n in names {
            if let Some(r) = self.running.remove(n) {
                self.ctx.wakers.unhook(n);
                r.stop.cancel();
                r.tasks.close();
                gone.push(r);
            }
        }
        let all = async {
            for r in &gone {
                r.tasks.wait().await;
            }
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, all).await.is_err() {
            warn!(
                "in-flight work did not finish within {}s",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        // A stopped bridge whose task had crashed is no longer a reason to be unhealthy (a
        // stopped bridge records no new crash).
        for r in &gone {
            self.ctx.board.forget_ended(&r.bridge.name);
        }
    }

    /// Bridges of `set` new here that wait for their handoff (docs/scaling.md#handoff).
    async fn wait_for_handoffs(&mut self, set: &[Arc<Bridge>]) {
        let waiting = self.handoff.waiting_names();
        let new: Vec<String> = (set.iter().map(|b| b.name.clone()))
            .filter(|n| !self.running.contains_key(n) && !waiting.contains(n))
            .collect();
        let now_ms = crate::clock::to_ms(self.ctx.clock.now());
        if let Err(e) = super::handoff::reloaded(self.receive.as_ref(), new, now_ms).await {
            error!("the bridges added cannot be checked for a handoff ({e}): they start as new");
        }
    }

    /// Starts the bridge of the shown set named `name` (its handoff has ended), unless it
    /// runs already or is no longer in the set.
    pub(super) fn start_named(&mut self, name: &str) {
        if self.running.contains_key(name) {
            return;
        }
        let found = crate::runtime::lock::read(&self.shown)
            .iter()
            .find(|b| b.name == name)
            .cloned();
        if let Some(b) = found {
            self.start(b);
        }
    }

    /// Moves to a new set: new bridges start, changed ones restart, removed ones stop. State
    /// is kept throughout.
    pub(super) async fn apply(&mut self, set: Vec<Arc<Bridge>>) {
        let wanted: HashMap<&str, &Arc<Bridge>> =
            set.iter().map(|b| (b.name.as_str(), b)).collect();
        let mut removed = Vec::new();
        let mut changed = Vec::new();
        for (name, r) in &self.running {
            match wanted.get(name.as_str()) {
                None => removed.push(name.clone()),
                Some(b) if b.revision != r.bridge.revision => changed.push(name.clone()),
                Some(_) => {}
            }
        }
        self.wait_for_handoffs(&set).await;
        let stopping: Vec<String> = removed.iter().chain(&changed).cloned().collect();
        self.stop(&stopping).await;
        let mut added = Vec::new();
        let waiting = self.handoff.waiting_names();
        for b in &set {
            if waiting.contains(&b.name) {
                continue;
            }
            if !self.running.contains_key(&b.name) {
                if !changed.contains(&b.name) {
                    added.push(b.name.clone());
                }
                self.start(b.clone());
            }
        }
        *crate::runtime::lock::write(&self.shown) = set;
        info!(
            bridges = self.running.len(),
            added = added.len(),
            changed = changed.len(),
            removed = removed.len(),
            "bridges reloaded: {} running, {} added, {} changed, {} removed",
            self.running.len(),
            added.len(),
            changed.len(),
            removed.len()
        );
        for (what, names) in [
            ("added", &added),
            ("changed", &changed),
            ("removed", &removed),
        ] {
            for n in names {
                info!(bridge = %n, "bridge {what} {n}");
            }
        }
    }
}

/// One bridge's polls on a timer of its own until `cancel` (`scheduler::run_bridge`): its
/// first turn at once, as the fleet's, or a poll at once when `restarted`.
pub(crate) async fn run_one(
    ctx: Arc<Ctx>,
    bridge: Arc<Bridge>,
    cancel: CancellationToken,
    restarted: bool,
) {
    let timer = Arc::new(Timer::default());
    let r = Arc::new(Running {
        bridge,
        stop: cancel.clone(),
        tasks: TaskTracker::new(),
        queues: Box::new([]),
    });
    let first = if restarted {
        Turn::Restarted
    } else {
        Turn::Start
    };
    timer.at(ctx.clock.instant(), r.clone(), first);
    timer.drive(ctx, cancel).await;
    r.tasks.close();
    r.tasks.wait().await;
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::testkit::{BridgeYaml, PATIENCE, eventually};
    use std::sync::atomic::Ordering;

    /// A fleet of the only shard, with no handoff going on.
    pub(in crate::app) fn alone(ctx: &Arc<Ctx>, root: &CancellationToken) -> Fleet {
        let one = crate::shard::Shard {
            index: 0,
            shards: 1,
        };
        let layout = crate::shard::layout::plan(None, one, &Default::default(), &[], 0);
        let (handoff, _ready) =
            crate::handoff::shared::Shared::new(layout.record, &layout.outgoing);
        Fleet::new(ctx.clone(), root.clone(), Vec::new(), handoff)
    }

    /// An idle bridge is no task: once the bridges have polled (and their deliverers found
    /// their queues empty), the runtime holds about as many tasks as before they started (the
    /// timer, the connections of the source and of its client), not a few per bridge.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_bridges_hold_no_task() {
        const N: usize = 100;
        let (url, hits) = crate::testkit::counting_source().await;
        let dir = tempfile::tempdir().unwrap();
        let ctx = Arc::new(Ctx::new(crate::store::Store::open(dir.path()).unwrap()));
        let tasks = || {
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks()
        };
        let before = tasks();
        let root = CancellationToken::new();
        let mut fleet = alone(&ctx, &root);
        let yaml = BridgeYaml::new(&url)
            .select("$[*]")
            .every("1h")
            .sink("console")
            .build();
        for i in 0..N {
            let b = crate::config::test_bridge(&format!("b{i}"), &yaml);
            fleet.start(Arc::new(b));
        }
        eventually(PATIENCE, "every bridge's baseline", || async {
            (0..N).all(|i| ctx.status(&format!("b{i}")).polls == 1)
        })
        .await;
        assert_eq!(hits.load(Ordering::SeqCst), N);
        eventually(PATIENCE, "the polls and deliverers to end", || async {
            let n = tasks();
            (n < before + 40)
                .then_some(n)
                .ok_or(format!("{n} tasks, {before} before"))
        })
        .await;
        let names: Vec<String> = fleet.running.keys().cloned().collect();
        fleet.stop(&names).await;
        root.cancel();
    }

    /// Deliverers start with their bridge only when its outbox holds something: a bridge
    /// with an event persisted delivers it, one without starts no deliverer (no task, no
    /// span, docs/scaling.md#memory).
    #[tokio::test]
    async fn deliverers_start_only_for_events_waiting() {
        use crate::store::{BridgeMeta, Commit, Store};
        let (url, _hits) = crate::testkit::counting_source().await;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let meta = BridgeMeta {
            seq: 1,
            baselined: true,
            ..Default::default()
        };
        let event = crate::store::tests::entry(1);
        for (bridge, outbox) in [("full", vec![("console".into(), event)]), ("idle", vec![])] {
            let meta = meta.clone();
            let c = Commit {
                bridge: bridge.into(),
                meta,
                outbox,
                ..Default::default()
            };
            store.commit(&c).unwrap();
        }
        let ctx = Arc::new(Ctx::new(store));
        let root = CancellationToken::new();
        let mut fleet = alone(&ctx, &root);
        let yaml = BridgeYaml::new(&url).every("1h").sink("console").build();
        for name in ["full", "idle"] {
            fleet.start(Arc::new(crate::config::test_bridge(name, &yaml)));
        }
        assert!(!fleet.running["idle"].queues[0].is_active());
        eventually(PATIENCE, "the event waiting delivered", || async {
            let left = ctx.store().unwrap().outbox_len("full");
            (left == 0).then_some(()).ok_or(format!("{left} waiting"))
        })
        .await;
        root.cancel();
    }
}
