//! The new owner's side of a handoff (docs/scaling.md#handoff). For a bridge this shard owns
//! and holds no state of, it asks the shard that owned it under the previous layout, and when
//! that one holds nothing (or there was none), every other shard below the larger of the two
//! layouts' sizes. A shard that does not answer, or answers that it still owns the bridge,
//! is asked again: after a short fixed delay when it answered that it still owns the bridge
//! (it is up, and will give the bridge as soon as it runs the new layout), after a backoff
//! when it did not answer; the bridge is not polled meanwhile. A document is read within its
//! share of the memory budget of polls ([`super::share`]; one that does not fit yet waits in
//! line and is asked for again), and imported in one transaction with the acknowledgement recorded as owed (several imports to
//! a flush, [`super::import`]), which is then sent, and only then is the bridge polled. When
//! every shard asked holds nothing, the bridge is new and baselines as usual.

use super::Document;
use super::import::{Failed, Importer};
use super::peers::{PeerError, Peers, Taken};
use super::share::DocShare;
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
    /// The wait before asking a shard that answered 409 again (unless it said how long), and
    /// the first wait before asking one that did not answer; that one doubles up to 30 times
    /// this.
    pub retry: Duration,
    /// The daemon stops.
    pub stop: CancellationToken,
    pub importer: Importer,
    /// The memory budget of polls, which documents read take their share of.
    pub memory: crate::runtime::MemoryBudget,
}

/// What one round of asking found.
enum Round {
    Given(u64, Box<Document>),
    /// Every shard asked holds nothing.
    New,
    /// This shard did not answer, or still owns the bridge, or failed; why, and when it is
    /// up (it answered 409), how long to wait before asking again.
    Blocked(u64, String, Option<Duration>),
    /// This shard's document waits for this many bytes of the memory budget.
    Wait(u64, u64),
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

    /// Lets go of `share` and waits in line for `need` bytes of the memory budget; false
    /// when the daemon stops or the handoff is skipped first.
    async fn queue(&self, share: &mut DocShare, need: u64, skip: &CancellationToken) -> bool {
        tokio::select! {
            held = share.wait(need, &self.stop) => held,
            _ = skip.cancelled() => false,
        }
    }

    /// One round: the previous owner first, then (if it holds nothing) every other shard.
    async fn round(&self, bridge: &str, from: Option<u64>, share: &mut DocShare) -> Round {
        let mut blocked = None;
        let first = from.filter(|k| *k != self.me);
        let rest = (0..self.below).filter(|i| *i != self.me && Some(*i) != first);
        for i in first.into_iter().chain(rest) {
            let (why, up) = match self.peers.take(i, self.me, bridge, share).await {
                Ok(Taken::Given(doc)) => return Round::Given(i, doc),
                Ok(Taken::Wait(need)) => return Round::Wait(i, need),
                Ok(Taken::Nothing) => continue,
                Ok(Taken::Owned(after)) => (
                    format!(
                        "shard {i} still owns it under its own layout (the change has not reached it yet)"
                    ),
                    Some(after.unwrap_or(self.retry).min(self.retry * 30)),
                ),
                Err(e @ PeerError::BadDocument { .. }) => {
                    // Nothing of it is taken; the bridge goes on waiting for a good one.
                    error!(bridge = %bridge, from = i, "bridge {bridge}: {e}; nothing imported, the bridge keeps waiting");
                    (e.to_string(), None)
                }
                Err(e) => (e.to_string(), None),
            };
            // The previous owner that may hold it is waited for before anyone else is asked.
            if Some(i) == first {
                return Round::Blocked(i, why, up);
            }
            blocked.get_or_insert((i, why, up));
        }
        match blocked {
            Some((i, why, up)) => Round::Blocked(i, why, up),
            None => Round::New,
        }
    }

    /// Brings `bridge` here: asks until a shard gives its state or every one says it holds
    /// none, or the handoff is skipped.
    pub async fn incoming(self: Arc<Self>, bridge: String, from: Option<u64>) {
        let skip = self.shared.wait(&bridge, from, false);
        let mut delay = self.retry;
        let mut said = false;
        // Held from before a document is read until it is imported.
        let mut share = DocShare::new(&self.memory);
        loop {
            let mut up = None;
            match self.round(&bridge, from, &mut share).await {
                Round::Given(k, doc) => match self.importer.import(&bridge, k, *doc).await {
                    Ok(seq) => {
                        drop(share);
                        debug!(bridge = %bridge, seq, "imported");
                        // Tests only: the process killed between the import and the ack.
                        crate::fault::kill("handoff-after-import", &bridge);
                        return self.acknowledge(bridge, k).await;
                    }
                    Err(Failed::Stopping) => return,
                    Err(e) => error!(bridge = %bridge, from = k,
                        "bridge {bridge}: the state shard {k} gave cannot be stored here ({e}); asking again"),
                },
                Round::New => return self.new_bridge(&bridge).await,
                Round::Wait(k, need) => {
                    debug!(bridge = %bridge, from = k, need, "bridge {bridge}: its document waits for its share of the memory budget");
                    if self.queue(&mut share, need, &skip).await {
                        continue;
                    }
                    if skip.is_cancelled() {
                        self.skipped(&bridge).await;
                    }
                    return;
                }
                Round::Blocked(k, why, after) => {
                    up = after;
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
            share.release();
            // A shard that answered is asked again soon; one that did not, ever later.
            if !self.pause(up.unwrap_or(delay), &skip).await {
                if skip.is_cancelled() {
                    self.skipped(&bridge).await;
                }
                return;
            }
            delay = match up {
                Some(_) => self.retry,
                None => self.backoff(delay),
            };
        }
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
        info!(bridge = %bridge, from = k, "bridge {bridge}: handoff from shard {k} complete; polled here from now on");
        if !released {
            self.shared.done(&bridge);
        }
        // Cleared after the bridge is let go: a debt still recorded after a crash is only an
        // acknowledgement sent again, a no-op.
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
                store.forget_bridge(&name, None)?;
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
