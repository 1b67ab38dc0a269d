//! `resync`: queue every item a bridge holds now as an `item.snapshot` event, to bring a new
//! receiver up to date. The events get the next `seq`s and go through the outbox like any other.

use crate::config::Bridge;
use crate::event::{self, EventType, Side};
use crate::runtime::Ctx;
use crate::store::{BridgeMeta, Commit, Store, StoreError};
use chrono::{DateTime, Utc};

/// Queues the snapshot; returns how many items it holds.
pub async fn resync(ctx: &Ctx, bridge: &Bridge, now: DateTime<Utc>) -> Result<usize, StoreError> {
    let st = ctx.writable_store()?;
    let r = queue_snapshot(ctx, &st, bridge, now).await;
    ctx.check(r)
}

async fn queue_snapshot(
    ctx: &Ctx,
    st: &Store,
    bridge: &Bridge,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let store = st.clone();
    let b = bridge.clone();
    let n = tokio::task::spawn_blocking(move || -> Result<usize, StoreError> {
        let meta = store.meta(&b.name)?;
        let items = store.items(&b.name)?;
        let events: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, (key, hash, value))| {
                event::build(event::Spec {
                    bridge: &b.name,
                    kind: EventType::Snapshot,
                    key,
                    seq: meta.seq + 1 + i as u64,
                    generation: meta.seq,
                    detected: now,
                    previous: None,
                    data: Some(Side { value, hash }),
                })
            })
            .collect();
        let mut c = Commit {
            bridge: b.name.clone(),
            expected_seq: meta.seq,
            base: Some(meta.clone()),
            meta: BridgeMeta {
                seq: meta.seq + events.len() as u64,
                ..meta
            },
            ..Default::default()
        };
        let sinks: Vec<String> = b.sinks.iter().map(|s| s.id.clone()).collect();
        c.queue(&sinks, &events, now.timestamp_millis());
        if !events.is_empty() {
            store.commit(&c)?;
        }
        Ok(events.len())
    })
    .await
    .expect("resync does not panic")?;
    if n > 0 {
        st.flush().await?;
        ctx.wake(&bridge.name);
    }
    Ok(n)
}
