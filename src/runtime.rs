//! What every task of the daemon shares: the store, the HTTP clients and the wake-ups from
//! commits to deliverers.

use crate::store::Store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

/// What the daemon knows about a bridge's recent polls (in memory; for `status` and the
/// admin API).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct BridgeStatus {
    /// Unix ms when the last poll finished.
    pub last_poll_ms: Option<i64>,
    /// `ok`, `baseline`, `not_modified` or `failed`.
    pub last_result: Option<String>,
    /// The reason of the last failure (redacted).
    pub last_error: Option<String>,
    pub last_duration_ms: Option<u64>,
    /// Unix ms of the next planned poll.
    pub next_poll_ms: Option<i64>,
    /// Items in the last successful listing.
    pub items: Option<usize>,
    /// Unix ms until which the source asked us not to poll (rate limit).
    pub paused_until_ms: Option<i64>,
    pub polls: u64,
    pub failures: u64,
}

pub const USER_AGENT: &str = concat!("pollhook/", env!("CARGO_PKG_VERSION"));

pub struct Ctx {
    pub store: Store,
    /// Client for sources: follows redirects, as a browser or curl -L would.
    pub fetcher: reqwest::Client,
    /// Client for webhooks: never follows redirects (a 3xx is a failed delivery, SPEC §6).
    pub sender: reqwest::Client,
    /// One channel per bridge; a commit with events bumps it and the bridge's deliverers wake.
    wakers: Mutex<HashMap<String, watch::Sender<()>>>,
    /// Per bridge, what its last polls did.
    status: Mutex<HashMap<String, BridgeStatus>>,
    /// Scheduled polls in flight at once. Thousands of bridges due together (a start, a shared
    /// cron minute) queue here instead of opening thousands of connections.
    pub poll_slots: tokio::sync::Semaphore,
}

/// At most this many scheduled polls run at once.
pub const MAX_CONCURRENT_POLLS: usize = 256;

impl Ctx {
    pub fn new(store: Store) -> Ctx {
        // reqwest is built with rustls but no crypto provider of its own: use ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fetcher = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // Keep-alive for the next poll of the same host, but not hundreds of idle sockets
            // after a burst (a start, a shared cron minute).
            .pool_max_idle_per_host(16)
            .pool_idle_timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client with rustls builds");
        let sender = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("HTTP client with rustls builds");
        Ctx {
            store,
            fetcher,
            sender,
            wakers: Mutex::new(HashMap::new()),
            status: Mutex::new(HashMap::new()),
            poll_slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_POLLS),
        }
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
