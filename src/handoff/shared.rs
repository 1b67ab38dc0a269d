//! What the parts of a shard share about the bridges moving (docs/scaling.md#handoff): its
//! layout record (written back to the store at every change), the bridges it still holds for
//! other shards (outgoing), and the bridges it waits for (incoming, or imported with the
//! acknowledgement still owed). The admin API reads and changes it; the new owner's side
//! ([`super::receive`]) changes it and, when a bridge may be polled, tells the daemon
//! through the channel [`Shared::new`] returns.

use crate::runtime::lock::lock;
use crate::shard::layout::{Outgoing, Placement, Record, View};
use crate::store::{Store, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A bridge that is not polled here yet.
#[derive(Debug, Clone)]
pub struct Waiting {
    /// The shard it waits on: the one that does not answer or answers that it still owns the
    /// bridge; None while the shards are still being asked.
    pub on: Option<u64>,
    /// Imported; the acknowledgement to `on` is still owed.
    pub acknowledging: bool,
    /// Cancelled by `pollhook handoff skip`.
    pub skip: CancellationToken,
}

impl Waiting {
    /// What `status` shows.
    pub fn line(&self) -> String {
        match (self.on, self.acknowledging) {
            (Some(k), true) => format!("waiting to acknowledge the handoff to shard {k}"),
            (Some(k), false) => format!("waiting for handoff from shard {k}"),
            (None, _) => "waiting for handoff (asking the other shards)".to_string(),
        }
    }
}

pub struct Shared {
    record: Mutex<Record>,
    /// Bridges with state here that other shards own, by name: the shard that owns each.
    outgoing: Mutex<BTreeMap<String, u64>>,
    waiting: Mutex<BTreeMap<String, Waiting>>,
    /// Per bridge, one give or forget at a time ([`Shared::turn`]), so that an export never
    /// reads a bridge being forgotten; other bridges' go on meanwhile. An entry lives while
    /// someone holds or waits for it.
    turns: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    ready: mpsc::UnboundedSender<String>,
}

impl Shared {
    /// The shard's handoffs as its start found them; the receiver gets the names of the
    /// bridges that may be polled from now on.
    pub fn new(
        record: Record,
        outgoing: &[Outgoing],
    ) -> (Arc<Shared>, mpsc::UnboundedReceiver<String>) {
        let (ready, rx) = mpsc::unbounded_channel();
        let outgoing = outgoing.iter().map(|o| (o.bridge.clone(), o.to)).collect();
        let shared = Shared {
            record: Mutex::new(record),
            outgoing: Mutex::new(outgoing),
            waiting: Mutex::default(),
            turns: Mutex::default(),
            ready,
        };
        (Arc::new(shared), rx)
    }

    /// The layout this shard runs under.
    pub fn placement(&self) -> Placement {
        lock(&self.record).now
    }

    /// Whether this shard owns `bridge` under its own layout.
    pub fn owns(&self, bridge: &str) -> bool {
        let now = self.placement();
        now.owner(bridge) == now.index
    }

    /// The record as it is now.
    pub fn record(&self) -> Record {
        lock(&self.record).clone()
    }

    /// What `GET /v1/layout` answers.
    pub fn view(&self) -> View {
        let outgoing: Vec<Outgoing> = lock(&self.outgoing)
            .iter()
            .map(|(bridge, to)| Outgoing {
                bridge: bridge.clone(),
                to: *to,
            })
            .collect();
        lock(&self.record).view(&outgoing)
    }

    /// Changes the record and writes it to the store (blocking: it waits for the disk). On an
    /// error the record stays as it was.
    pub fn save(&self, store: &Store, change: impl FnOnce(&mut Record)) -> Result<(), StoreError> {
        let mut r = lock(&self.record);
        let mut next = r.clone();
        change(&mut next);
        if next != *r {
            store.put_layout_record(&next.encode())?;
            *r = next;
        }
        Ok(())
    }

    /// Changes the record, and has `write` store it (its encoded bytes) along with whatever
    /// else belongs in the same transaction. On an error the record stays as it was.
    pub fn save_with<T, E>(
        &self,
        change: impl FnOnce(&mut Record),
        write: impl FnOnce(&[u8]) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut r = lock(&self.record);
        let mut next = r.clone();
        change(&mut next);
        let out = write(&next.encode())?;
        *r = next;
        Ok(out)
    }

    /// Waits until no other give or forget of `bridge` runs; this one's runs until the turn is
    /// dropped.
    pub async fn turn(self: &Arc<Self>, bridge: &str) -> Turn {
        let one = lock(&self.turns)
            .entry(bridge.to_string())
            .or_default()
            .clone();
        let guard = one.clone().lock_owned().await;
        Turn {
            shared: self.clone(),
            bridge: bridge.to_string(),
            one,
            guard: Some(guard),
        }
    }

    /// `bridge` has been forgotten here: no longer outgoing.
    pub fn forgotten(&self, bridge: &str) {
        lock(&self.outgoing).remove(bridge);
    }

    /// Marks `bridge` as waiting (on shard `on`, when known); its skip token.
    pub fn wait(&self, bridge: &str, on: Option<u64>, acknowledging: bool) -> CancellationToken {
        let mut all = lock(&self.waiting);
        let w = all.entry(bridge.to_string()).or_insert_with(|| Waiting {
            on,
            acknowledging,
            skip: CancellationToken::new(),
        });
        w.on = on;
        w.acknowledging = acknowledging;
        let skip = w.skip.clone();
        crate::metrics::handoff_waiting(all.len());
        skip
    }

    /// How `bridge` waits, if it does.
    pub fn waiting(&self, bridge: &str) -> Option<Waiting> {
        lock(&self.waiting).get(bridge).cloned()
    }

    /// The names of the bridges waiting.
    pub fn waiting_names(&self) -> Vec<String> {
        lock(&self.waiting).keys().cloned().collect()
    }

    /// Asks the bridge's handoff to give up; false when it does not wait.
    pub fn skip(&self, bridge: &str) -> bool {
        match lock(&self.waiting).get(bridge) {
            Some(w) => {
                w.skip.cancel();
                true
            }
            None => false,
        }
    }

    /// `bridge` waits no more: the daemon may poll it.
    pub fn done(&self, bridge: &str) {
        let mut all = lock(&self.waiting);
        all.remove(bridge);
        crate::metrics::handoff_waiting(all.len());
        // The daemon may be shutting down: then nothing is to be started.
        let _ = self.ready.send(bridge.to_string());
    }
}

/// A bridge's turn to be given or forgotten ([`Shared::turn`]).
pub struct Turn {
    shared: Arc<Shared>,
    bridge: String,
    one: Arc<tokio::sync::Mutex<()>>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.guard.take();
        let mut all = lock(&self.shared.turns);
        // Only the map and this turn hold it: no one waits (a waiter clones it under the
        // map's lock, held here), so the entry goes.
        if Arc::strong_count(&self.one) == 2 {
            all.remove(&self.bridge);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    // Paused time: the sleep below ends only once every task is idle, the second turn of a
    // waiting at its lock.
    #[tokio::test(start_paused = true)]
    async fn one_turn_at_a_time_per_bridge_and_other_bridges_meanwhile() {
        let record = Record {
            now: Placement {
                index: 0,
                shards: 1,
                scheme: crate::shard::layout::Scheme::Jump,
            },
            epoch: 1,
            previous: None,
            incoming: BTreeMap::new(),
            given: BTreeMap::new(),
            owed: BTreeMap::new(),
        };
        let (shared, _rx) = Shared::new(record, &[]);
        let a = shared.turn("a").await;
        // Another bridge's turn is not held up by a's.
        let b = tokio::time::timeout(Duration::from_secs(5), shared.turn("b"))
            .await
            .expect("b waited for a");
        drop(b);
        // a's next turn waits for the first to end.
        let next = tokio::spawn({
            let shared = shared.clone();
            async move { shared.turn("a").await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!next.is_finished());
        drop(a);
        let again = tokio::time::timeout(Duration::from_secs(5), next)
            .await
            .expect("a's second turn never came")
            .unwrap();
        assert_eq!(lock(&shared.turns).len(), 1);
        drop(again);
        assert!(lock(&shared.turns).is_empty());
    }
}
