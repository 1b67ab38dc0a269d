//! A poll's plan carried out against the store: the stored item state read for [`plan`], and
//! each commit it hands out written (a dry run writes nothing). Blocking: run it off the
//! async workers.

use super::plan::{self, Cut, Listed, State};
use super::{PollError, PollReport};
use crate::config::Bridge;
use crate::diff;
use crate::event::Json;
use crate::extract::Hash;
use crate::runtime::Churn;
use crate::store::{BridgeMeta, Commit, Store, StoreError};
use chrono::{DateTime, Utc};

/// One bridge's item state, as stored.
struct Stored<'a> {
    store: &'a Store,
    bridge: &'a str,
}

impl State for Stored<'_> {
    fn scan(&self) -> impl Iterator<Item = Result<(String, diff::Stored), StoreError>> {
        self.store.state_scan(self.bridge)
    }

    fn previous(&self, key: &str) -> Result<Option<(Json, Hash)>, StoreError> {
        let value = self.store.item_json(self.bridge, key)?;
        let state = self.store.item_state(self.bridge, key)?;
        Ok(value.zip(state.map(|s| s.hash)))
    }
}

/// What a poll did to the store.
pub struct Applied {
    pub result: Result<PollReport, PollError>,
    /// A commit with events went through (also when a later one failed): the caller flushes,
    /// so the events are on disk before their first attempt (docs/events.md#at-least-once).
    pub committed_events: bool,
}

/// Plans the poll and, with `commit`, stores each commit of it as it comes; without, stores
/// nothing (a dry run). A compared poll (not a baseline) counts for the bridge's `churn`; the
/// counters go with the poll's last commit when it counted an update, so they survive a
/// restart at no commit of their own (docs/testing-bridges.md#churn-and-suggest).
pub fn apply(
    (store, churn): (&Store, &Churn),
    bridge: &Bridge,
    meta: BridgeMeta,
    listed: Listed,
    commit: bool,
    now: DateTime<Utc>,
) -> Applied {
    let state = Stored {
        store,
        bridge: &bridge.name,
    };
    let mut committed_events = false;
    let mut last = None;
    let mut write = |c: Commit, cut: Cut| -> Result<(), StoreError> {
        #[cfg(test)]
        super::tests::refuse(&c, cut)?;
        match (commit, cut) {
            (false, _) => {}
            // Stored once the poll is planned whole, with the churn it counted.
            (true, Cut::Last { batches }) => last = Some((c, batches)),
            (true, Cut::Batch(n)) => committed_events |= store_batch(store, &c, n)?,
        }
        Ok(())
    };
    let planned = plan::plan(bridge, meta, &state, listed, now, &mut write);
    let result = planned.and_then(|report| {
        let counted = commit && !report.baseline && !report.rebaselined;
        let counters = counted.then(|| {
            let mut c = churn.counters(&bridge.name, Some(store));
            c.add(&report.churn, report.items);
            c
        });
        if let Some((mut c, batches)) = last {
            if !report.churn.is_empty() {
                c.churn = counters.as_ref().map(|c| c.to_record());
            }
            store.commit(&c)?;
            committed_events |= !c.outbox.is_empty();
            if batches > 0 {
                tracing::debug!(batches = batches + 1, seq = c.meta.seq, "poll stored");
            }
        }
        if let Some(counters) = counters {
            churn.set(&bridge.name, counters);
        }
        Ok(report)
    });
    Applied {
        result,
        committed_events,
    }
}

/// Stores batch `n` of a poll that goes on after it; true when it queued events.
fn store_batch(store: &Store, c: &Commit, n: usize) -> Result<bool, StoreError> {
    let events = !c.outbox.is_empty();
    store.commit(c)?;
    // Events on disk before any attempt (docs/events.md#at-least-once): a deliverer with a
    // backlog may reach them while the poll goes on. The last batch is flushed by the caller.
    if events {
        store.flush_blocking()?;
    }
    tracing::debug!(batch = n + 1, seq = c.meta.seq, "poll batch stored");
    Ok(events)
}
