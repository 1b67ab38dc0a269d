//! What every task of the daemon shares: the store (and whether it takes writes), the HTTP
//! clients, the wake-ups from commits to deliverers, and what the health check and the
//! watchdog look at.

use crate::store::{Store, StoreError};
use chrono::serde::ts_milliseconds_option;
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// What the daemon knows about a bridge's recent polls (in memory; for `status` and the
/// admin API).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BridgeStatus {
    /// When the last poll finished.
    #[serde(rename = "last_poll_ms", with = "ts_milliseconds_option", default)]
    pub last_poll: Option<DateTime<Utc>>,
    /// `ok`, `baseline`, `not_modified` or `failed`.
    pub last_result: Option<String>,
    /// The reason of the last failure (redacted).
    pub last_error: Option<String>,
    pub last_duration_ms: Option<u64>,
    /// The next planned poll.
    #[serde(rename = "next_poll_ms", with = "ts_milliseconds_option", default)]
    pub next_poll: Option<DateTime<Utc>>,
    /// Items in the last successful listing.
    pub items: Option<usize>,
    /// Until when the source asked us not to poll (rate limit).
    #[serde(rename = "paused_until_ms", with = "ts_milliseconds_option", default)]
    pub paused_until: Option<DateTime<Utc>>,
    pub polls: u64,
    pub failures: u64,
    /// How often one of the bridge's tasks ended on its own (a panic) and was started again.
    pub restarts: u64,
    /// Why it last did (redacted).
    pub last_crash: Option<String>,
}

pub use crate::http::USER_AGENT;

pub struct Ctx {
    /// The open store. None while it is being opened again after a failure: sled keeps a
    /// write error (a full disk) for good, so recovering means closing and opening it.
    store: RwLock<Option<Store>>,
    /// Whether the store takes writes; watched by the tasks that pause while it does not.
    store_failure: watch::Sender<Option<StoreFailure>>,
    /// Steps (a poll, a delivery attempt) in progress, for the watchdog.
    pub beats: Beats,
    /// Bridges whose task ended on its own (not stopped): the bridge is not being polled or
    /// delivered, which `/healthz` reports.
    ended: Mutex<HashMap<(String, &'static str), String>>,
    /// Client for sources: follows redirects within the source's origin only, and sends no
    /// `Referer` (docs/configuration.md#redirects).
    pub fetcher: reqwest::Client,
    /// Source clients by `source.proxy`, each built once (connections are pooled per client);
    /// `fetcher` serves the sources without one.
    proxied: Mutex<HashMap<String, reqwest::Client>>,
    /// Per bridge, the tokens of its `source.auth`, kept across polls.
    pub sessions: crate::auth::Sessions,
    /// Client for webhooks: never follows redirects (a 3xx is a failed delivery,
    /// docs/events.md#retries).
    pub sender: reqwest::Client,
    /// One channel per bridge; a commit with events bumps it and the bridge's deliverers wake.
    wakers: Mutex<HashMap<String, watch::Sender<()>>>,
    /// Per bridge, what its last polls did.
    status: Mutex<HashMap<String, BridgeStatus>>,
    /// Polls in flight at once, in all. Thousands of bridges due together (a start, a shared
    /// cron minute) queue here instead of opening thousands of connections.
    poll_slots: Arc<Semaphore>,
    /// Polls in flight at once against one host (and port), so that a hung host holds only its
    /// own share of `poll_slots` and the bridges on other hosts keep polling.
    host_slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_host: usize,
    /// One per bridge: held for the whole of a poll, scheduled or asked for.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Cancelled when the daemon begins to shut down: a poll in flight ends before its next
    /// page (storing nothing) instead of holding the shutdown for up to `max_pages` pages.
    pub stopping: tokio_util::sync::CancellationToken,
    /// What has been warned of once already, in this process (`Ctx::first_time`).
    warned: Mutex<HashSet<String>>,
}

/// How many polls may be in flight at once.
#[derive(Debug, Clone, Copy)]
pub struct PollLimits {
    pub total: usize,
    pub per_host: usize,
}

impl Default for PollLimits {
    fn default() -> PollLimits {
        PollLimits {
            total: 256,
            per_host: 16,
        }
    }
}

/// The right to run one poll: a slot of its host and one of all polls.
pub struct PollSlot {
    _host: OwnedSemaphorePermit,
    _all: OwnedSemaphorePermit,
}

/// The key polls are limited by: the URL's host and port.
fn host_of(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

impl Ctx {
    pub fn new(store: Store) -> Ctx {
        let (fetcher, sender) = (crate::http::fetcher(), crate::http::sender());
        Ctx {
            store: RwLock::new(Some(store)),
            store_failure: watch::channel(None).0,
            beats: Beats::default(),
            ended: Mutex::new(HashMap::new()),
            fetcher,
            proxied: Mutex::new(HashMap::new()),
            sessions: Default::default(),
            sender,
            wakers: Mutex::new(HashMap::new()),
            status: Mutex::new(HashMap::new()),
            poll_slots: Arc::new(Semaphore::new(PollLimits::default().total)),
            host_slots: Mutex::new(HashMap::new()),
            per_host: PollLimits::default().per_host,
            gates: Mutex::new(HashMap::new()),
            stopping: Default::default(),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Whether this is the first time this process is to warn of `what`: for a WARN said once
    /// per process, not at every poll.
    pub fn first_time(&self, what: String) -> bool {
        let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        warned.insert(what)
    }

    /// The client for a source's requests (and its token requests): the one through its
    /// proxy, or the shared one.
    pub fn source_client(&self, proxy: Option<&url::Url>) -> reqwest::Client {
        let Some(p) = proxy else {
            return self.fetcher.clone();
        };
        let mut all = self.proxied.lock().unwrap_or_else(|e| e.into_inner());
        all.entry(p.to_string())
            .or_insert_with(|| crate::http::fetcher_via(Some(p)))
            .clone()
    }

    /// The same, with other limits on polls in flight (before the context is shared).
    pub fn with_poll_limits(mut self, limits: PollLimits) -> Ctx {
        self.poll_slots = Arc::new(Semaphore::new(limits.total.max(1)));
        self.per_host = limits.per_host.max(1);
        self
    }

    /// Waits for a slot to poll `url`: first one of its host, then one of all polls, so that
    /// bridges queued behind a hung host hold none of the slots others need.
    pub async fn poll_slot(&self, url: &url::Url) -> PollSlot {
        let host = {
            let mut all = self.host_slots.lock().expect("host slots lock");
            all.entry(host_of(url))
                .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
                .clone()
        };
        // Neither semaphore is ever closed.
        let host = host.acquire_owned().await.expect("host slots stay open");
        let all = (self.poll_slots.clone().acquire_owned().await).expect("poll slots stay open");
        PollSlot {
            _host: host,
            _all: all,
        }
    }

    /// The lock a poll of `bridge` holds, so that a bridge has one poll in flight at most,
    /// whoever asked for it.
    pub fn poll_gate(&self, bridge: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut all = self.gates.lock().expect("poll gates lock");
        all.entry(bridge.to_string()).or_default().clone()
    }

    /// The store, for reading or for an operation that reports its own errors.
    pub fn store(&self) -> Result<Store, StoreError> {
        match &*self.store.read().expect("store lock") {
            Some(s) => Ok(s.clone()),
            None => Err(StoreError::Unavailable(self.failure_reason())),
        }
    }

    /// The store, for a write: refused at once while the store is known not to take writes.
    pub fn writable_store(&self) -> Result<Store, StoreError> {
        if self.store_failure.borrow().is_some() {
            return Err(StoreError::Unavailable(self.failure_reason()));
        }
        self.store()
    }

    fn failure_reason(&self) -> String {
        match &*self.store_failure.borrow() {
            Some(f) => f.reason.clone(),
            None => "it is being opened again".to_string(),
        }
    }

    /// Passes `r` through, marking the store failed when it says the database cannot take
    /// writes (the first such error is logged once, at ERROR).
    pub fn check<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            self.store_failed(e);
        }
        r
    }

    /// Marks the store failed, if `e` says so and it is not already.
    pub fn store_failed(&self, e: &StoreError) {
        if !e.is_failure() || matches!(e, StoreError::Unavailable(_)) {
            return;
        }
        let reason = e.to_string();
        let marked = self.store_failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            *f = Some(StoreFailure {
                reason: reason.clone(),
                since: Instant::now(),
            });
            true
        });
        if marked {
            tracing::error!(
                "{reason}: polls and acknowledgements pause until the state database takes writes again"
            );
        }
    }

    /// Keeps the store failed, with the reason of the latest try to recover (a re-open may
    /// fail for another reason than the first error, e.g. a rollback it found).
    pub fn store_still_failing(&self, e: &StoreError) {
        let reason = e.to_string();
        self.store_failure.send_if_modified(|f| match f {
            Some(f) if f.reason != reason => {
                f.reason = reason;
                true
            }
            _ => false,
        });
    }

    /// The store's failure, while it does not take writes.
    pub fn store_failure(&self) -> Option<StoreFailure> {
        self.store_failure.borrow().clone()
    }

    /// Waits until the store is found failing (at once if it is).
    pub async fn store_failing(&self) {
        let mut rx = self.store_failure.subscribe();
        let _ = rx.wait_for(|f| f.is_some()).await;
    }

    /// Waits until the store takes writes (at once if it does).
    pub async fn store_recovered(&self) {
        let mut rx = self.store_failure.subscribe();
        // The sender lives as long as `self`, so this only ends when the failure clears.
        let _ = rx.wait_for(|f| f.is_none()).await;
    }

    /// Closes the failed store and opens it again (blocking: call it off the async workers).
    /// Waits up to `wait` for the other handles of the old store to be dropped (each is held
    /// only for one step, bounded by its timeouts). On success the store takes writes again.
    pub fn reopen_store(&self, dir: &std::path::Path, wait: Duration) -> Result<(), StoreError> {
        // A quick look at whether the disk takes a write at all, before reading the whole log.
        probe_dir(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let old = self.store.write().expect("store lock").take();
        if let Some(old) = old {
            let deadline = Instant::now() + wait;
            while old.other_handles() > 0 {
                // A thread stuck in a flush of the failed store holds a handle; a flush that
                // meets the error wakes it (see `Store::probe`).
                let _ = old.flush_blocking();
                if Instant::now() > deadline {
                    let n = old.other_handles();
                    *self.store.write().expect("store lock") = Some(old);
                    return Err(StoreError::Unavailable(format!(
                        "{n} tasks still hold the failed state database"
                    )));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            // Closing flushes; a flush after the error returns at once (and wakes any waiter).
            let _ = old.flush_blocking();
            drop(old);
        }
        let store = Store::open(dir)?;
        let probed = store.probe(Utc::now());
        *self.store.write().expect("store lock") = Some(store);
        probed?;
        let was = self.store_failure.send_replace(None);
        if let Some(f) = was {
            tracing::info!(
                after_ms = f.since.elapsed().as_millis() as u64,
                "state database takes writes again (opened anew); polls and deliveries resume"
            );
        }
        Ok(())
    }

    /// Leaves a store that does not take writes open for good: closing it flushes, and sled
    /// can wait for ever in a flush that met a write error (the process is about to exit).
    pub fn abandon_failed_store(&self) {
        if self.store_failure().is_some() {
            if let Some(store) = self.store.write().expect("store lock").take() {
                std::mem::forget(store);
            }
        }
    }

    /// Records that one of a bridge's tasks ended on its own, and why (shown by `/healthz`
    /// until it runs again).
    pub fn task_ended(&self, bridge: &str, task: &'static str, why: String) {
        let mut all = self.ended.lock().expect("ended lock");
        all.insert((bridge.to_string(), task), why);
    }

    /// Forgets that one of a bridge's tasks ended (it was started again).
    pub fn task_restarted(&self, bridge: &str, task: &'static str) {
        let mut all = self.ended.lock().expect("ended lock");
        all.remove(&(bridge.to_string(), task));
    }

    /// Forgets that any of a bridge's tasks ended (the bridge is started anew, or stopped).
    pub fn forget_ended(&self, bridge: &str) {
        self.ended
            .lock()
            .expect("ended lock")
            .retain(|(b, _), _| b != bridge);
    }

    /// Why the daemon is not healthy, if it is not: the store does not take writes, a
    /// bridge's task ended, or a step is stuck well past its time-outs.
    pub fn health(&self) -> Vec<String> {
        let mut why = Vec::new();
        if let Some(f) = self.store_failure() {
            why.push(f.to_string());
        }
        let mut ended: Vec<String> = self
            .ended
            .lock()
            .expect("ended lock")
            .iter()
            .map(|((b, _), why)| format!("bridge `{b}`: {why}"))
            .collect();
        ended.sort();
        why.extend(ended);
        why.extend(self.beats.stuck());
        why
    }

    fn waker(&self, bridge: &str) -> watch::Sender<()> {
        let mut w = self.wakers.lock().expect("wakers lock");
        w.entry(bridge.to_string())
            .or_insert_with(|| watch::channel(()).0)
            .clone()
    }

    /// Tells the bridge's deliverers that new events are in the outbox.
    pub fn wake(&self, bridge: &str) {
        self.waker(bridge).send_replace(());
    }

    /// Changes a bridge's status in place.
    pub fn update_status(&self, bridge: &str, f: impl FnOnce(&mut BridgeStatus)) {
        let mut all = self.status.lock().expect("status lock");
        f(all.entry(bridge.to_string()).or_default());
    }

    pub fn status(&self, bridge: &str) -> BridgeStatus {
        let all = self.status.lock().expect("status lock");
        all.get(bridge).cloned().unwrap_or_default()
    }

    /// A receiver that sees every `wake` of this bridge from now on.
    pub fn subscribe(&self, bridge: &str) -> watch::Receiver<()> {
        self.waker(bridge).subscribe()
    }
}

/// Since when, and why, the store does not take writes.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    pub reason: String,
    pub since: Instant,
}

/// As `/healthz` and the watchdog name it.
impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "state database does not take writes (for {}s): {}",
            self.since.elapsed().as_secs(),
            self.reason
        )
    }
}

/// Writes, syncs and removes a small file in `dir`: does the file system take writes?
fn probe_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let path = dir.join(".pollhook-probe");
    let res = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(&[0; 64 * 1024])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    res
}

/// The steps in progress (a poll, a delivery attempt), each with the time it may take. The
/// watchdog pings only while none is far past its time: a step stuck for good (a deadlock, a
/// wedged disk) then gets the daemon restarted by systemd.
#[derive(Default)]
pub struct Beats {
    next: AtomicU64,
    busy: Mutex<HashMap<u64, (&'static str, Instant, Duration)>>,
}

impl Beats {
    /// Registers a step that should end within `limit`; it ends when the guard is dropped.
    pub fn step(&self, what: &'static str, limit: Duration) -> Beat<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut busy = self.busy.lock().expect("beats lock");
        busy.insert(id, (what, Instant::now(), limit));
        Beat { beats: self, id }
    }

    /// The step furthest past its limit, and by how much.
    pub fn overdue(&self, now: Instant) -> Option<(&'static str, Duration)> {
        let busy = self.busy.lock().expect("beats lock");
        busy.values()
            .filter_map(|(what, since, limit)| {
                let over = now.checked_duration_since(*since + *limit)?;
                Some((*what, over))
            })
            .max_by_key(|(_, over)| *over)
    }

    /// The step most overdue now, as `/healthz` and the watchdog name it.
    pub fn stuck(&self) -> Option<String> {
        let (what, over) = self.overdue(Instant::now())?;
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
        let mut busy = self.beats.busy.lock().expect("beats lock");
        busy.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
