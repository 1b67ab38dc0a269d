//! The store as the tasks share it: the open database, whether it takes writes (watched by the
//! tasks that pause while it does not), and opening it again after a failure
//! (docs/operations.md#health-a-full-disk-and-the-watchdog).

use super::lock::{read, write};
use crate::clock::Clock;
use crate::store::{Store, StoreError};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// A handle on the shared store; clones share it.
#[derive(Clone)]
pub struct StoreHandle(Arc<Shared>);

struct Shared {
    /// The open store. None while it is being opened again after a failure: sled keeps a
    /// write error (a full disk) for good, so recovering means closing and opening it.
    store: RwLock<Option<Store>>,
    /// Whether the store takes writes; watched by the tasks that pause while it does not.
    failure: watch::Sender<Option<StoreFailure>>,
    /// For when it failed, and the probes' times.
    clock: Clock,
}

/// Since when, and why, the store does not take writes.
#[derive(Debug, Clone)]
pub struct StoreFailure {
    pub reason: String,
    pub since: Instant,
}

impl StoreFailure {
    /// As `/healthz` and the watchdog name it, at `now`.
    pub fn describe(&self, now: Instant) -> String {
        format!(
            "state database does not take writes (for {}s): {}",
            now.saturating_duration_since(self.since).as_secs(),
            self.reason
        )
    }
}

impl StoreHandle {
    pub fn new(store: Store, clock: Clock) -> StoreHandle {
        StoreHandle(Arc::new(Shared {
            store: RwLock::new(Some(store)),
            failure: watch::channel(None).0,
            clock,
        }))
    }

    /// The store, for reading or for an operation that reports its own errors.
    pub fn get(&self) -> Result<Store, StoreError> {
        match &*read(&self.0.store) {
            Some(s) => Ok(s.clone()),
            None => Err(StoreError::Unavailable(self.failure_reason())),
        }
    }

    /// The store, for a write: refused at once while the store is known not to take writes.
    pub fn writable(&self) -> Result<Store, StoreError> {
        if self.0.failure.borrow().is_some() {
            return Err(StoreError::Unavailable(self.failure_reason()));
        }
        self.get()
    }

    fn failure_reason(&self) -> String {
        match &*self.0.failure.borrow() {
            Some(f) => f.reason.clone(),
            None => "it is being opened again".to_string(),
        }
    }

    /// Passes `r` through, marking the store failed when it says the database cannot take
    /// writes (the first such error is logged once, at ERROR).
    pub fn check<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(e) = &r {
            self.failed(e);
        }
        r
    }

    /// Marks the store failed, if `e` says so and it is not already.
    pub fn failed(&self, e: &StoreError) {
        if !e.is_failure() || matches!(e, StoreError::Unavailable(_)) {
            return;
        }
        let reason = e.to_string();
        let marked = self.0.failure.send_if_modified(|f| {
            if f.is_some() {
                return false;
            }
            *f = Some(StoreFailure {
                reason: reason.clone(),
                since: self.0.clock.instant(),
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
    pub fn still_failing(&self, e: &StoreError) {
        let reason = e.to_string();
        self.0.failure.send_if_modified(|f| match f {
            Some(f) if f.reason != reason => {
                f.reason = reason;
                true
            }
            _ => false,
        });
    }

    /// The store's failure, while it does not take writes.
    pub fn failure(&self) -> Option<StoreFailure> {
        self.0.failure.borrow().clone()
    }

    /// Waits until the store is found failing (at once if it is).
    pub async fn failing(&self) {
        let mut rx = self.0.failure.subscribe();
        let _ = rx.wait_for(|f| f.is_some()).await;
    }

    /// Waits until the store takes writes (at once if it does).
    pub async fn recovered(&self) {
        let mut rx = self.0.failure.subscribe();
        // The sender lives as long as `self`, so this only ends when the failure clears.
        let _ = rx.wait_for(|f| f.is_none()).await;
    }

    /// A probe of the store (a small write, synced), its error marking the store failed.
    /// Blocks: call it off the async workers.
    pub fn probe(&self) -> Result<(), StoreError> {
        let probed = self.get().and_then(|s| s.probe(self.0.clock.now()));
        self.check(probed)
    }

    /// Closes the failed store and opens it again (blocking: call it off the async workers).
    /// Waits up to `wait` for the other handles of the old store to be dropped (each is held
    /// only for one step, bounded by its timeouts). On success the store takes writes again.
    pub fn reopen(&self, dir: &std::path::Path, wait: Duration) -> Result<(), StoreError> {
        // A quick look at whether the disk takes a write at all, before reading the whole log.
        probe_dir(dir).map_err(|e| StoreError::Unavailable(format!("{}: {e}", dir.display())))?;
        let old = write(&self.0.store).take();
        if let Some(old) = old {
            let deadline = self.0.clock.instant() + wait;
            while old.other_handles() > 0 {
                // A thread stuck in a flush of the failed store holds a handle; a flush that
                // meets the error wakes it (see `Store::probe`).
                let _ = old.flush_blocking();
                if self.0.clock.instant() > deadline {
                    let n = old.other_handles();
                    *write(&self.0.store) = Some(old);
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
        let probed = store.probe(self.0.clock.now());
        *write(&self.0.store) = Some(store);
        probed?;
        let was = self.0.failure.send_replace(None);
        if let Some(f) = was {
            let after = self.0.clock.instant().saturating_duration_since(f.since);
            tracing::info!(
                after_ms = crate::clock::ms(after),
                "state database takes writes again (opened anew); polls and deliveries resume"
            );
        }
        Ok(())
    }

    /// Leaves a store that does not take writes open for good: closing it flushes, and sled
    /// can wait for ever in a flush that met a write error (the process is about to exit).
    pub fn abandon_if_failed(&self) {
        if self.failure().is_some() {
            if let Some(store) = write(&self.0.store).take() {
                std::mem::forget(store);
            }
        }
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
