//! How many polls run at once, and that a bridge has one in flight at most: a slot of the
//! poll's host and one of all polls, and one lock per bridge (docs/scaling.md#limits).

use super::lock::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    _host: Option<OwnedSemaphorePermit>,
    _all: Option<OwnedSemaphorePermit>,
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
    /// One per bridge: held for the whole of a poll, scheduled or asked for.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
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
            gates: Mutex::new(HashMap::new()),
        }
    }

    /// Waits for a slot to poll `url`: first one of its host, then one of all polls, so that
    /// bridges queued behind a hung host hold none of the slots others need.
    pub async fn slot(&self, url: &url::Url) -> PollSlot {
        let host = lock(&self.hosts)
            .entry(host_of(url))
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone();
        let host = host.acquire_owned().await.ok();
        let all = self.all.clone().acquire_owned().await.ok();
        PollSlot {
            _host: host,
            _all: all,
        }
    }

    /// The lock a poll of `bridge` holds, so that a bridge has one poll in flight at most,
    /// whoever asked for it.
    pub fn gate(&self, bridge: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.gates)
            .entry(bridge.to_string())
            .or_default()
            .clone()
    }
}
