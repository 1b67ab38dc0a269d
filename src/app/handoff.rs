//! The daemon's side of the handoff at start (docs/scaling.md#handoff): with `--peers`, each
//! incoming bridge waits for its state from the other shards (a task of its own), and each
//! acknowledgement still owed after a crash is sent again before its bridge polls. Without
//! `--peers` nothing can be asked: incoming bridges start from an empty state, as new. A
//! bridge added by a reload goes the same way when a layout put it on another shard.

use crate::handoff::receive::Receive;
use crate::handoff::shared::Shared;
use crate::runtime::Ctx;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Starts the handoffs the layout record asks for; the bridges they hold back from polling,
/// and the new owner's side, for the bridges a reload adds (None without `--peers`).
pub(super) fn begin(
    peers: Option<&crate::handoff::peers::Peers>,
    retry: Duration,
    shared: &Arc<Shared>,
    ctx: &Ctx,
    stop: &CancellationToken,
) -> (HashSet<String>, Option<Arc<Receive>>) {
    let record = shared.record();
    crate::metrics::handoff_waiting(0);
    let now = record.now;
    if now.index >= now.shards {
        info!(
            index = now.index,
            shards = now.shards,
            "shard index {} is not below the number of shards, {}: this shard owns no bridge; it serves handoffs until it holds none (GET /v1/layout says `drained`)",
            now.index,
            now.shards
        );
    }
    let Some(peers) = peers else {
        if !record.incoming.is_empty() || !record.owed.is_empty() {
            warn!(
                incoming = record.incoming.len(),
                "no --peers: the state of the {} this shard now owns cannot be asked for; they are polled from an empty state, as new",
                crate::logging::count(record.incoming.len(), "bridge", "bridges")
            );
        }
        return (HashSet::new(), None);
    };
    let below = now
        .shards
        .max(record.previous.map_or(0, |p| p.shards))
        .max(now.index + 1);
    let receive = Arc::new(Receive {
        peers: peers.clone(),
        shared: shared.clone(),
        store: ctx.store.clone(),
        me: now.index,
        below,
        retry,
        stop: stop.clone(),
        importer: crate::handoff::import::Importer::spawn(
            ctx.store.clone(),
            shared.clone(),
            stop.clone(),
        ),
        memory: ctx.memory.clone(),
    });
    let mut held = HashSet::new();
    for (bridge, k) in &record.owed {
        held.insert(bridge.clone());
        shared.wait(bridge, Some(*k), true);
        tokio::spawn(receive.clone().acknowledge(bridge.clone(), *k));
    }
    for (bridge, i) in &record.incoming {
        held.insert(bridge.clone());
        shared.wait(bridge, i.from, false);
        tokio::spawn(receive.clone().incoming(bridge.clone(), i.from));
    }
    if !held.is_empty() {
        info!(
            waiting = held.len(),
            "{} for a handoff from other shards through {} (GET /v1/layout lists them)",
            crate::logging::count(held.len(), "bridge waits", "bridges wait"),
            peers.template()
        );
    }
    (held, Some(receive))
}

/// For the bridges a reload adds (`added`, owned here): each that holds no state here (or only
/// a copy given away) and that a handoff or the previous layout put on another shard waits
/// for its handoff as at start, as does each on a shard with no previous layout among others
/// (any of them may hold it). Returns them; the others start as new bridges.
pub(super) async fn reloaded(
    receive: Option<&Arc<Receive>>,
    added: Vec<String>,
    now_ms: i64,
) -> Result<HashSet<String>, crate::store::StoreError> {
    let Some(receive) = receive else {
        return Ok(HashSet::new());
    };
    let (shared, store) = (receive.shared.clone(), receive.store.writable()?);
    let found = crate::runtime::blocking(move || -> Result<_, crate::store::StoreError> {
        let r = shared.record();
        let mut found = Vec::new();
        for name in added {
            let from = match (r.given.get(&name), r.previous) {
                (Some(to), _) => Some(*to),
                (None, Some(p)) if p.owner(&name) != r.now.index => Some(p.owner(&name)),
                (None, None) if r.now.shards > 1 => None,
                _ => continue,
            };
            if r.given.contains_key(&name) || !store.has_state(&name)? {
                found.push((name, from));
            }
        }
        shared.save(&store, |r| {
            for (name, from) in &found {
                let i = crate::shard::layout::Incoming {
                    from: *from,
                    since_ms: now_ms,
                };
                r.incoming.insert(name.clone(), i);
            }
        })?;
        Ok(found)
    })
    .await?;
    let mut held = HashSet::new();
    for (name, from) in found {
        let by = from.map_or("another shard".to_string(), |k| format!("shard {k}"));
        info!(bridge = %name, from, "bridge {name} added by the reload may be held by {by}: it waits for its handoff");
        receive.shared.wait(&name, from, false);
        tokio::spawn(receive.clone().incoming(name.clone(), from));
        held.insert(name);
    }
    Ok(held)
}
