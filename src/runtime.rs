//! What every task of the daemon shares: the store, the HTTP clients and the wake-ups from
//! commits to deliverers.

use crate::store::Store;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;

pub const USER_AGENT: &str = concat!("pollhook/", env!("CARGO_PKG_VERSION"));

pub struct Ctx {
    pub store: Store,
    /// Client for sources: follows redirects, as a browser or curl -L would.
    pub fetcher: reqwest::Client,
    /// Client for webhooks: never follows redirects (a 3xx is a failed delivery, SPEC §6).
    pub sender: reqwest::Client,
    /// One channel per bridge; a commit with events bumps it and the bridge's deliverers wake.
    wakers: Mutex<HashMap<String, watch::Sender<()>>>,
}

impl Ctx {
    pub fn new(store: Store) -> Ctx {
        // reqwest is built with rustls but no crypto provider of its own: use ring's.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let fetcher = reqwest::Client::builder()
            .user_agent(USER_AGENT)
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

    /// A receiver that sees every `wake` of this bridge from now on.
    pub fn subscribe(&self, bridge: &str) -> watch::Receiver<()> {
        self.waker(bridge).subscribe()
    }
}
