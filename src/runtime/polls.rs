//! How many polls run at once, and that a bridge has one in flight at most: a slot of the
//! poll's host and one of all polls, and one lock per bridge (docs/scaling.md#limits).

use super::lock::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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

/// The right to run one poll: a slot of its host and one of all polls. (A permit is missing
/// only if its semaphore was closed, which none ever is.)
pub struct PollSlot {
    host: Option<OwnedSemaphorePermit>,
    all: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for PollSlot {
    fn drop(&mut self) {
        // Given back before whoever waits for a free slot looks.
        drop(self.host.take());
        drop(self.all.take());
        self.freed.notify_waiters();
    }
}

/// The slots of one host, as [`Polls::try_slot`] names a host that has none free.
#[derive(Clone)]
pub struct HostSlots(Arc<Semaphore>);

impl HostSlots {
    /// How many of its slots are free now.
    pub fn free(&self) -> usize {
        self.0.available_permits()
    }

    /// The same host, the same key (the host's semaphore).
    pub fn key(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

/// Why a poll cannot have a slot at once.
pub enum Busy {
    /// Every slot of its host is taken.
    Host(HostSlots),
    /// Every slot of all polls is taken.
    All,
}

/// The poll slots and the bridges' poll locks.
pub struct Polls {
    /// Polls in flight at once, in all. Thousands of bridges due together (a start, a shared
    /// cron minute) queue here instead of opening thousands of connections.
    all: Arc<Semaphore>,
    /// Polls in flight at once against one host (and port), so that a hung host holds only its
    /// own share of `all` and the bridges on other hosts keep polling.
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    per_host: usize,
    /// One per bridge with a poll in flight or waiting: held for the whole of a poll,
    /// scheduled or asked for. An idle bridge has none (its [`Gate`] takes it out).
    gates: Arc<Gates>,
    /// Told each time a poll gives its slot back.
    freed: Arc<Notify>,
}

type Gates = Mutex<HashMap<Arc<str>, Arc<tokio::sync::Mutex<()>>>>;

/// A bridge's poll lock, to be locked: while any [`Gate`] of a bridge lives, every poll of it
/// locks the same lock; when the last is dropped, the entry goes.
pub struct Gate {
    lock: Arc<tokio::sync::Mutex<()>>,
    gates: Arc<Gates>,
    bridge: Arc<str>,
}

/// A bridge's poll lock, held (owned, so it may move into a task).
pub struct Held {
    // Released before the gate looks whether anyone else still needs the entry.
    _held: tokio::sync::OwnedMutexGuard<()>,
    _gate: Gate,
}

impl Gate {
    /// Waits for the lock.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// The lock, if no one holds it.
    pub fn try_lock_owned(self) -> Result<Held, Gate> {
        match self.lock.clone().try_lock_owned() {
            Ok(held) => Ok(Held {
                _held: held,
                _gate: self,
            }),
            Err(_) => Err(self),
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let mut gates = lock(&self.gates);
        // The map's and this one's: no other gate of the bridge is alive (another is made
        // only under this lock), so the entry goes.
        if Arc::strong_count(&self.lock) == 2 {
            gates.remove(&*self.bridge);
        }
    }
}

impl Default for Polls {
    fn default() -> Polls {
        Polls::new(PollLimits::default())
    }
}

/// The key polls are limited by: the URL's host and port.
fn host_of(url: &url::Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

impl Polls {
    pub fn new(limits: PollLimits) -> Polls {
        Polls {
            all: Arc::new(Semaphore::new(limits.total.max(1))),
            hosts: Mutex::new(HashMap::new()),
            per_host: limits.per_host.max(1),
            gates: Arc::default(),
            freed: Arc::default(),
        }
    }

    /// The slots of `url`'s host.
    fn host(&self, url: &url::Url) -> Arc<Semaphore> {
        lock(&self.hosts)
            .entry(host_of(url))
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }

    /// Waits for a slot to poll `url`: first one of its host, then one of all polls, so that
    /// bridges queued behind a hung host hold none of the slots others need.
    pub async fn slot(&self, url: &url::Url) -> PollSlot {
        let host = self.host(url).acquire_owned().await.ok();
        let all = self.all.clone().acquire_owned().await.ok();
        PollSlot {
            host,
            all,
            freed: self.freed.clone(),
        }
    }

    /// A slot to poll `url` if one is free now (of its host, then of all polls), else which
    /// of the two has none: for the timer, which starts a poll only once it has its slot.
    pub fn try_slot(&self, url: &url::Url) -> Result<PollSlot, Busy> {
        let host = self.host(url);
        let Ok(h) = host.clone().try_acquire_owned() else {
            return Err(Busy::Host(HostSlots(host)));
        };
        let Ok(all) = self.all.clone().try_acquire_owned() else {
            return Err(Busy::All);
        };
        Ok(PollSlot {
            host: Some(h),
            all: Some(all),
            freed: self.freed.clone(),
        })
    }

    /// Told each time a poll gives its slot back (to be enabled before looking for one, as
    /// `notify_waiters` tells only those waiting).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// The lock a poll of `bridge` holds, so that a bridge has one poll in flight at most,
    /// whoever asked for it.
    pub fn gate(&self, bridge: &str) -> Gate {
        let mut gates = lock(&self.gates);
        let (bridge, lock) = match gates.get_key_value(bridge) {
            Some((name, lock)) => (name.clone(), lock.clone()),
            None => {
                let (name, lock): (Arc<str>, Arc<tokio::sync::Mutex<()>>) =
                    (bridge.into(), Arc::default());
                gates.insert(name.clone(), lock.clone());
                (name, lock)
            }
        };
        drop(gates);
        Gate {
            lock,
            gates: self.gates.clone(),
            bridge,
        }
    }

    /// How many bridges have a poll lock now (in flight or waiting for one).
    pub fn gates(&self) -> usize {
        lock(&self.gates).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn a_bridges_poll_lock_is_shared_while_needed_and_forgotten_after() {
        let polls = Polls::default();
        let held = polls.gate("b").try_lock_owned().ok().unwrap();
        // Another poll of the bridge meets the same lock: taken, or waited for.
        assert!(polls.gate("b").try_lock_owned().is_err());
        let waiting = polls.gate("b");
        let early = tokio::time::timeout(Duration::from_millis(20), waiting.lock()).await;
        assert!(early.is_err(), "locked twice");
        drop(early);
        // Other bridges are not held back.
        assert!(polls.gate("other").try_lock_owned().is_ok());
        assert_eq!(polls.gates(), 1);
        drop(held);
        drop(waiting.lock().await);
        assert_eq!(polls.gates(), 1, "kept while a gate is alive");
        // An idle bridge holds no entry.
        drop(waiting);
        assert_eq!(polls.gates(), 0);
    }
}
