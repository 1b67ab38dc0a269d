//! What every task of the daemon shares, as the handles each part takes
//! (docs/design.md#shared-handles): the store and whether it takes writes ([`StoreHandle`]),
//! the HTTP clients ([`Clients`]), the sources' login sessions, the bridges' statuses and ended
//! tasks ([`Board`]), the steps the watchdog looks at ([`Beats`]), the poll slots and locks
//! ([`Polls`]), the memory polls may hold ([`MemoryBudget`]), the wake-ups from commits to
//! deliverers ([`Wakers`]), and the clock. [`Ctx`] owns one of each for the wiring (the
//! daemon's start, a CLI command, the tests); a part takes only the handles it uses.

mod beats;
mod blocking;
mod board;
mod budget;
pub mod heap;
pub(crate) mod lock;
mod polls;
mod store;
mod unwind;

pub use beats::{Beat, Beats};
pub use blocking::blocking;
pub use board::{Board, BridgeStatus};
pub use budget::{MemoryBudget, Reservation, Short, need as budget_need};
pub use polls::{Busy, Gate, Held, HostSlots, PollLimits, PollSlot, Polls};
pub use store::{StoreFailure, StoreHandle};
pub use unwind::{Caught, caught};

use crate::clock::Clock;
use crate::store::{Store, StoreError};
use lock::lock;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub use crate::http::USER_AGENT;

/// One of each handle, for the wiring. The parts of the daemon take the handles they use.
pub struct Ctx {
    pub clock: Clock,
    pub store: StoreHandle,
    pub clients: Clients,
    /// Per bridge, the tokens of its `source.auth`, kept across polls.
    pub sessions: crate::auth::Sessions,
    pub board: Arc<Board>,
    pub beats: Beats,
    pub polls: Polls,
    /// The memory all polls in flight may hold together (docs/scaling.md#the-memory-budget-of-polls).
    pub memory: MemoryBudget,
    pub wakers: Wakers,
    /// Cancelled when the daemon begins to shut down: a poll in flight ends before its next
    /// page (storing nothing) instead of holding the shutdown for up to `max_pages` pages.
    pub stopping: tokio_util::sync::CancellationToken,
    /// What has been warned of once already, in this process.
    pub warned: Warned,
    /// Each bridge's churn counters (docs/testing-bridges.md#churn-and-suggest).
    pub churn: Churn,
    /// The polls since the last summary line (`poll::summary`).
    pub polled: crate::poll::summary::Tally,
}

impl Ctx {
    /// The handles around `store`, on the system clock.
    pub fn new(store: Store) -> Ctx {
        Ctx::with_clock(store, Clock::system())
    }

    /// The handles around `store`, on `clock`.
    pub fn with_clock(store: Store, clock: Clock) -> Ctx {
        Ctx {
            store: StoreHandle::new(store, clock.clone()),
            clients: Clients::new(),
            sessions: Default::default(),
            board: Arc::default(),
            beats: Beats::new(clock.clone()),
            polls: Polls::default(),
            memory: MemoryBudget::default(),
            wakers: Wakers::default(),
            stopping: Default::default(),
            warned: Warned::default(),
            churn: Churn::default(),
            polled: Default::default(),
            clock,
        }
    }

    /// The same, with other limits on polls in flight (before the context is shared).
    pub fn with_poll_limits(mut self, limits: PollLimits) -> Ctx {
        self.polls = Polls::new(limits);
        self
    }

    /// The same, with another memory budget for polls (before the context is shared).
    pub fn with_memory_budget(mut self, bytes: u64) -> Ctx {
        self.memory = MemoryBudget::new(bytes);
        self
    }

    /// The store (see [`StoreHandle::get`]).
    pub fn store(&self) -> Result<Store, StoreError> {
        self.store.get()
    }

    /// A bridge's status (see [`Board::status`]).
    pub fn status(&self, bridge: &str) -> BridgeStatus {
        self.board.status(bridge)
    }

    /// Changes a bridge's status in place (see [`Board::update`]).
    pub fn update_status(&self, bridge: &str, f: impl FnOnce(&mut BridgeStatus)) {
        self.board.update(bridge, f)
    }

    /// A bridge's poll lock (see [`Polls::gate`]).
    pub fn poll_gate(&self, bridge: &str) -> polls::Gate {
        self.polls.gate(bridge)
    }

    /// A slot to poll `url` (see [`Polls::slot`]).
    pub async fn poll_slot(&self, url: &url::Url) -> PollSlot {
        self.polls.slot(url).await
    }

    /// Why the daemon is not healthy, if it is not: the store does not take writes, a
    /// bridge's task ended, or a step is stuck well past its time-outs.
    pub fn health(&self) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(f) = self.store.failure() {
            why.push(f.describe(self.clock.instant()));
        }
        why.extend(self.board.ended());
        why.extend(self.beats.stuck());
        why
    }
}

/// Each bridge's churn counters (docs/testing-bridges.md#churn-and-suggest): kept in memory,
/// read from the store the first time a bridge's are asked for. A poll that counts an update
/// stores them with its own commit; a poll that counts none only here. A bridge the store
/// forgets (its state given away in a handoff, or given up by `pollhook handoff skip`) is
/// read from the store again: should it come back to this process, it counts afresh.
#[derive(Default, Clone)]
pub struct Churn(Arc<Mutex<HashMap<String, Kept>>>);

/// A bridge's counters as kept in memory, and [`Store::forgotten`] of it when they were read.
struct Kept {
    counters: crate::churn::Counters,
    forgotten: u64,
}

impl Churn {
    /// The bridge's counters: as kept here, else as `store` holds them, else none yet.
    pub fn counters(&self, bridge: &str, store: Option<&Store>) -> crate::churn::Counters {
        let forgotten = store.map(|s| s.forgotten(bridge));
        let kept = |all: &HashMap<String, Kept>| {
            let k = all.get(bridge)?;
            forgotten
                .is_none_or(|f| f == k.forgotten)
                .then(|| k.counters.clone())
        };
        if let Some(c) = kept(&lock(&self.0)) {
            return c;
        }
        let stored = store
            .and_then(|s| s.churn_record(bridge).ok().flatten())
            .and_then(|r| crate::churn::Counters::from_record(&r))
            .unwrap_or_default();
        let mut all = lock(&self.0);
        // Another caller may have read them (and a poll counted) meanwhile.
        if let Some(c) = kept(&all) {
            return c;
        }
        let read = Kept {
            counters: stored.clone(),
            forgotten: forgotten.unwrap_or_default(),
        };
        all.insert(bridge.to_string(), read);
        stored
    }

    /// The bridge's counters after a poll counted them, on those [`Churn::counters`] gave it.
    pub fn set(&self, bridge: &str, counters: crate::churn::Counters) {
        let mut all = lock(&self.0);
        let kept = all.entry(bridge.to_string()).or_insert_with(|| Kept {
            counters: Default::default(),
            forgotten: 0,
        });
        kept.counters = counters;
    }

    /// The bridge's churn, ranked, with its suggestions.
    pub fn report(&self, bridge: &str, store: Option<&Store>) -> crate::churn::Report {
        self.counters(bridge, store).report()
    }
}

/// The HTTP clients, each built once (connections are pooled per client).
pub struct Clients {
    /// Client for sources: follows redirects within the source's origin only, and sends no
    /// `Referer` (docs/configuration.md#redirects).
    pub fetcher: reqwest::Client,
    /// Source clients by `source.proxy`; `fetcher` serves the sources without one.
    proxied: Mutex<HashMap<String, reqwest::Client>>,
    /// Client for webhooks: never follows redirects (a 3xx is a failed delivery,
    /// docs/events.md#retries).
    pub sender: reqwest::Client,
    /// Where the sources' exchanges go while a cassette is recorded or replayed
    /// (docs/testing-bridges.md); None in the daemon.
    pub tape: Option<Arc<dyn crate::http::Tape>>,
}

impl Clients {
    pub fn new() -> Clients {
        Clients {
            fetcher: crate::http::fetcher(),
            proxied: Mutex::new(HashMap::new()),
            sender: crate::http::sender(),
            tape: None,
        }
    }

    /// The client for a source's requests (and its token requests): the one through its
    /// proxy, or the shared one.
    pub fn source(&self, proxy: Option<&url::Url>) -> crate::http::SourceClient {
        let client = match proxy {
            None => self.fetcher.clone(),
            Some(p) => lock(&self.proxied)
                .entry(p.to_string())
                .or_insert_with(|| crate::http::fetcher_via(Some(p)))
                .clone(),
        };
        crate::http::SourceClient::new(client, self.tape.clone())
    }
}

impl Default for Clients {
    fn default() -> Clients {
        Clients::new()
    }
}

/// What a commit with events wakes: the daemon's deliverers of that bridge (a hook each
/// running bridge sets, which starts them if they are not running), and the receivers of a
/// channel per bridge for whoever subscribed (a deliverer loop run on its own, `run_sink`).
#[derive(Default)]
pub struct Wakers {
    channels: Mutex<HashMap<String, watch::Sender<()>>>,
    hooks: Mutex<HashMap<String, Hook>>,
}

/// What waking a running bridge does.
pub type Hook = Arc<dyn Fn() + Send + Sync>;

impl Wakers {
    /// Tells the bridge's deliverers that new events are in the outbox.
    pub fn wake(&self, bridge: &str) {
        let hook = lock(&self.hooks).get(bridge).cloned();
        if let Some(h) = hook {
            h();
        }
        if let Some(tx) = lock(&self.channels).get(bridge) {
            tx.send_replace(());
        }
    }

    /// A receiver that sees every `wake` of this bridge from now on.
    pub fn subscribe(&self, bridge: &str) -> watch::Receiver<()> {
        lock(&self.channels)
            .entry(bridge.to_string())
            .or_insert_with(|| watch::channel(()).0)
            .subscribe()
    }

    /// What waking `bridge` does from now on (until [`Wakers::unhook`]).
    pub fn hook(&self, bridge: &str, hook: Hook) {
        lock(&self.hooks).insert(bridge.to_string(), hook);
    }

    /// Waking `bridge` calls no hook any more.
    pub fn unhook(&self, bridge: &str) {
        lock(&self.hooks).remove(bridge);
    }
}

/// What has been warned of once already, in this process: for a WARN said once per process,
/// not at every poll.
#[derive(Default)]
pub struct Warned(Mutex<HashSet<String>>);

impl Warned {
    /// Whether this is the first time this process is to warn of `what`.
    pub fn first_time(&self, what: String) -> bool {
        lock(&self.0).insert(what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::time::Instant;

    #[tokio::test]
    async fn a_full_host_holds_only_its_own_slots() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(Store::open(dir.path()).unwrap()).with_poll_limits(PollLimits {
            total: 3,
            per_host: 2,
        });
        let hung: url::Url = "http://127.0.0.1:8001/items".parse().unwrap();
        let other: url::Url = "http://127.0.0.1:8002/items".parse().unwrap();
        let held = [ctx.poll_slot(&hung).await, ctx.poll_slot(&hung).await];
        // A third poll of the hung host waits for one of its own...
        let waiting = tokio::time::timeout(Duration::from_millis(50), ctx.poll_slot(&hung));
        assert!(waiting.await.is_err());
        // ... and takes none of the slots the other host needs.
        let fine = tokio::time::timeout(Duration::from_secs(5), ctx.poll_slot(&other)).await;
        assert!(fine.is_ok());
        drop(fine);
        drop(held);
        // Once they are free, the hung host's bridges poll again.
        let again = tokio::time::timeout(Duration::from_secs(5), ctx.poll_slot(&hung)).await;
        assert!(again.is_ok());
    }

    #[test]
    fn a_bridge_the_store_forgets_counts_afresh_and_the_others_keep_their_counts() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut one = crate::churn::Counters::default();
        let mut tally = crate::churn::Tally::default();
        tally.updated(
            "a",
            [1; 16],
            [2; 16],
            r#"[{"op":"replace","path":"/v","value":2}]"#,
        );
        one.add(&tally, 1);
        for bridge in ["gone", "kept"] {
            let c = crate::store::Commit {
                bridge: bridge.into(),
                meta: crate::store::BridgeMeta {
                    seq: 1,
                    baselined: true,
                    ..Default::default()
                },
                churn: Some(one.to_record()),
                ..Default::default()
            };
            store.commit(&c).unwrap();
        }
        let churn = Churn::default();
        let polls = |bridge| churn.counters(bridge, Some(&store)).polls;
        assert_eq!((polls("gone"), polls("kept")), (1, 1));
        // A poll of `kept` that updated nothing: counted in memory only.
        let mut two = churn.counters("kept", Some(&store));
        two.add(&crate::churn::Tally::default(), 1);
        churn.set("kept", two);
        assert!(store.forget_bridge("gone", None).unwrap());
        assert_eq!((polls("gone"), polls("kept")), (0, 2));
        // Counting goes on from there.
        let mut again = churn.counters("gone", Some(&store));
        again.add(&tally, 1);
        churn.set("gone", again);
        assert_eq!(polls("gone"), 1);
    }

    #[test]
    fn a_step_past_its_limit_is_overdue_until_it_ends() {
        let beats = Beats::default();
        let start = Instant::now();
        let quick = beats.step("a delivery", Duration::from_secs(3600));
        assert_eq!(beats.overdue(start + Duration::from_secs(10)), None);
        let stuck = beats.step("a poll", Duration::from_secs(5));
        let (what, over) = beats.overdue(start + Duration::from_secs(65)).unwrap();
        assert_eq!(what, "a poll");
        assert!(over >= Duration::from_secs(59) && over <= Duration::from_secs(60));
        drop(stuck);
        assert_eq!(beats.overdue(start + Duration::from_secs(65)), None);
        drop(quick);
        assert!(beats.busy.lock().unwrap().is_empty());
    }
}
