//! The new owner's side of a handoff (docs/scaling.md#handoff). For a bridge this shard owns
//! and holds no state of, it asks the shard that owned it under the previous layout, and when
//! that one holds nothing (or there was none), every other shard below the larger of the two
//! layouts' sizes. A shard that does not answer, or answers that it still owns the bridge,
//! is asked again after a backoff; the bridge is not polled meanwhile. A document received
//! is imported in one transaction with the acknowledgement recorded as owed, which is then
//! sent and cleared, and only then is the bridge polled. When every shard asked holds nothing, the
//! bridge is new and baselines as usual.

use super::Document;
use super::peers::{Peers, Taken};
use super::shared::Shared;
use crate::runtime::{StoreHandle, blocking};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// The new owner's side, shared by the tasks of all its incoming bridges.
pub struct Receive {
    pub peers: Peers,
    pub shared: Arc<Shared>,
    pub store: StoreHandle,
    /// This shard's index.
    pub me: u64,
    /// Shards to ask: every index below this one (the larger of this layout's size and the
    /// previous one's).
    pub below: u64,
    /// The first wait before asking again; it doubles up to 30 times this.
    pub retry: Duration,
    /// The daemon stops.
    pub stop: CancellationToken,
}

/// What one round of asking found.
enum Round {
    Given(u64, Box<Document>),
    /// Every shard asked holds nothing.
    New,
    /// This shard did not answer, or still owns the bridge, or failed; why.
    Blocked(u64, String),
}

/// A step of the handoff that failed here (the store), to be tried again.
#[derive(Debug, thiserror::Error)]
enum Failed {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Import(#[from] crate::store::handoff::ImportError),
}

impl Receive {
    fn backoff(&self, delay: Duration) -> Duration {
        (delay * 2).min(self.retry * 30)
    }

    /// Waits `delay`; false when the daemon stops or the handoff is skipped first.
    async fn pause(&self, delay: Duration, skip: &CancellationToken) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = skip.cancelled() => false,
            _ = tokio::time::sleep(delay) => true,
        }
    }

    /// One round: the previous owner first, then (if it holds nothing) every other shard.
    async fn round(&self, bridge: &str, from: Option<u64>) -> Round {
        let mut blocked = None;
        let first = from.filter(|k| *k != self.me);
        let rest = (0..self.below).filter(|i| *i != self.me && Some(*i) != first);
        for i in first.into_iter().chain(rest) {
            let why = match self.peers.take(i, self.me, bridge).await {
                Ok(Taken::Given(doc)) => return Round::Given(i, doc),
                Ok(Taken::Nothing) => continue,
                Ok(Taken::Owned) => format!(
                    "shard {i} still owns it under its own layout (the change has not reached it yet)"
                ),
                Err(e) => e.to_string(),
            };
            // The previous owner that may hold it is waited for before anyone else is asked.
            if Some(i) == first {
                return Round::Blocked(i, why);
            }
            blocked.get_or_insert((i, why));
        }
        match blocked {
            Some((i, why)) => Round::Blocked(i, why),
            None => Round::New,
        }
    }

    /// Brings `bridge` here: asks until a shard gives its state or every one says it holds
    /// none, or the handoff is skipped.
    pub async fn incoming(self: Arc<Self>, bridge: String, from: Option<u64>) {
        let skip = self.shared.wait(&bridge, from, false);
        let mut delay = self.retry;
        let mut said = false;
        loop {
            match self.round(&bridge, from).await {
                Round::Given(k, doc) => match self.import(&bridge, k, *doc).await {
                    Ok(()) => return self.acknowledge(bridge, k).await,
                    Err(e) => error!(bridge = %bridge, from = k,
                        "bridge {bridge}: the state shard {k} gave cannot be stored here ({e}); asking again"),
                },
                Round::New => return self.new_bridge(&bridge).await,
                Round::Blocked(k, why) => {
                    self.shared.wait(&bridge, Some(k), false);
                    if !said {
                        info!(bridge = %bridge, from = k,
                            "bridge {bridge} waits for its handoff from shard {k}, not polled meanwhile: {why}");
                        said = true;
                    } else {
                        debug!(bridge = %bridge, from = k, "bridge {bridge} still waits for shard {k}: {why}");
                    }
                }
            }
            if !self.pause(delay, &skip).await {
                if skip.is_cancelled() {
                    self.skipped(&bridge).await;
                }
                return;
            }
            delay = self.backoff(delay);
        }
    }

    /// Imports the document of shard `k` and records the acknowledgement owed to it.
    async fn import(&self, bridge: &str, k: u64, doc: Document) -> Result<(), Failed> {
        let store = self.store.writable()?;
        let (shared, name) = (self.shared.clone(), bridge.to_string());
        let seq = blocking(move || -> Result<u64, Failed> {
            // A copy of ours, given away earlier and still here, is replaced.
            let replace = shared.record().given.contains_key(&name);
            // The acknowledgement owed is recorded in the import's transaction: a crash
            // right after it still leaves the debt, paid at the next start.
            let record = |r: &mut crate::shard::layout::Record| {
                r.incoming.remove(&name);
                r.given.remove(&name);
                r.owed.insert(name.clone(), k);
            };
            let seq = shared.save_with(record, |layout| {
                store.import_bridge(&name, &doc.state, replace, Some(layout))
            })?;
            let s = &doc.state;
            info!(bridge = %name, from = k, items = s.items.len(), outbox = s.outbox.len(), seq,
                "bridge {name} handed over from shard {k}: {} items, {} events waiting, {} dead letters, seq {seq}",
                s.items.len(), s.outbox.len(), s.dead.len());
            Ok(seq)
        })
        .await?;
        debug!(bridge = %bridge, seq, "imported");
        Ok(())
    }

    /// Sends the acknowledgement owed to shard `k` until it is taken, clears it, and lets
    /// the bridge be polled. `pollhook handoff skip` lets it be polled before then (its state
    /// is here already): the acknowledgement is still sent, and stays owed until taken.
    pub async fn acknowledge(self: Arc<Self>, bridge: String, k: u64) {
        let skip = self.shared.wait(&bridge, Some(k), true);
        let (mut delay, mut released) = (self.retry, false);
        loop {
            match self.peers.acknowledge(k, &bridge).await {
                Ok(()) => break,
                Err(e) => {
                    debug!(bridge = %bridge, to = k, "bridge {bridge}: acknowledgement not taken yet: {e}");
                }
            }
            if skip.is_cancelled() && !released {
                warn!(bridge = %bridge, to = k,
                    "bridge {bridge}: handoff skip while its acknowledgement to shard {k} is owed: polled here from now on with the state imported; the acknowledgement is still sent until shard {k} takes it");
                self.shared.done(&bridge);
                released = true;
            }
            let watch = if released {
                CancellationToken::new()
            } else {
                skip.clone()
            };
            if !self.pause(delay, &watch).await && self.stop.is_cancelled() {
                return;
            }
            delay = self.backoff(delay);
        }
        let (store, shared, name) = (self.store.clone(), self.shared.clone(), bridge.clone());
        let cleared = blocking(move || -> Result<(), crate::store::StoreError> {
            let store = store.writable()?;
            shared.save(&store, |r| {
                r.owed.remove(&name);
            })
        })
        .await;
        if let Err(e) = cleared {
            // Sent again after the next start: a repeated acknowledgement is a no-op.
            warn!(bridge = %bridge, "bridge {bridge}: the acknowledgement sent is not recorded: {e}");
        }
        info!(bridge = %bridge, from = k, "bridge {bridge}: handoff from shard {k} complete; polled here from now on");
        if !released {
            self.shared.done(&bridge);
        }
    }

    /// No shard holds it: a new bridge.
    async fn new_bridge(&self, bridge: &str) {
        if let Err(e) = self.forget_incoming(bridge, false).await {
            error!(bridge = %bridge, "bridge {bridge}: {e}");
        }
        info!(bridge = %bridge, "bridge {bridge}: no shard holds state of it, so it is new: it baselines as usual");
        self.shared.done(bridge);
    }

    /// `pollhook handoff skip`: the old state given up, the bridge baselines.
    async fn skipped(&self, bridge: &str) {
        if let Err(e) = self.forget_incoming(bridge, true).await {
            error!(bridge = %bridge, "bridge {bridge}: {e}");
        }
        warn!(bridge = %bridge, "bridge {bridge}: handoff skipped through the admin API: the state other shards hold of it is given up; it is polled here from an empty state (a new baseline)");
        self.shared.done(bridge);
    }

    /// Takes `bridge` off the incoming list. A copy of ours given away earlier that no other
    /// shard holds any more is its state again; with `stale`, it is forgotten instead.
    async fn forget_incoming(&self, bridge: &str, stale: bool) -> Result<(), Failed> {
        let store = self.store.writable()?;
        let (shared, name) = (self.shared.clone(), bridge.to_string());
        blocking(move || -> Result<(), Failed> {
            if stale && shared.record().given.contains_key(&name) {
                store.forget_bridge(&name)?;
            }
            shared.save(&store, |r| {
                r.incoming.remove(&name);
                r.given.remove(&name);
            })?;
            Ok(())
        })
        .await
    }
}
