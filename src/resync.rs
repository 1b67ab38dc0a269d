//! `resync`: queue every item a bridge holds now as an `item.snapshot` event, to bring a new
//! receiver up to date. The events get the next `seq`s and go through the outbox like any other.

use crate::config::Bridge;
use crate::event::{self, EventType, Side};
use crate::runtime::{Ctx, StoreHandle, Wakers};
use crate::store::{Commit, PageWrite, Store, StoreError};
use chrono::{DateTime, Utc};

/// Queues the snapshot; returns how many items it holds.
pub async fn resync(ctx: &Ctx, bridge: &Bridge, now: DateTime<Utc>) -> Result<usize, StoreError> {
    resync_with((&ctx.store, &ctx.wakers), bridge, now).await
}

/// [`resync`], with the handles it takes: the store, and the deliverers' wake-ups.
pub async fn resync_with(
    (store, wakers): (&StoreHandle, &Wakers),
    bridge: &Bridge,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let st = store.writable()?;
    let r = queue_snapshot(wakers, &st, bridge, now).await;
    store.check(r)
}

async fn queue_snapshot(
    wakers: &Wakers,
    st: &Store,
    bridge: &Bridge,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let store = st.clone();
    let b = bridge.clone();
    let n = crate::runtime::blocking(move || -> Result<usize, StoreError> {
        let meta = store.meta(&b.name)?;
        let items = store.items(&b.name)?;
        // A commit replaces the bridge's page set; a resync fetched nothing, so it keeps
        // every stored page as it is (dropping them would throw away the 304 cache).
        let pages = store
            .pages(&b.name)?
            .into_keys()
            .map(|k| (k, PageWrite::Keep))
            .collect();
        let events: Vec<_> = items
            .iter()
            .enumerate()
            .map(|(i, (key, hash, value))| {
                let value = &event::Json::from_value(value);
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
        let mut c = Commit::on(&b.name, meta);
        c.meta.seq += events.len() as u64;
        c.pages = pages;
        let sinks: Vec<String> = b.sinks.iter().map(|s| s.id.to_string()).collect();
        c.queue(&sinks, &events, now);
        if !events.is_empty() {
            store.commit(&c)?;
        }
        Ok(events.len())
    })
    .await?;
    if n > 0 {
        st.flush().await?;
        wakers.wake(&bridge.name);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BridgeMeta, CachedPage, Put, page_digest, page_key};
    use crate::testkit::BridgeYaml;
    use std::sync::Arc;

    fn bridge() -> Bridge {
        let yaml = BridgeYaml::new("http://127.0.0.1:1/items").sink("console");
        crate::config::test_bridge("rs", &yaml.build())
    }

    /// A resync queues events but polls nothing: the bridge's 304 cache (validators and body)
    /// must come through it, or the next poll sends no If-None-Match and refetches everything.
    #[tokio::test]
    async fn a_resync_keeps_the_cached_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = bridge();
        let url = "http://127.0.0.1:1/items";
        let body = r#"{"items":[{"id":1}]}"#;
        let head = CachedPage {
            etag: Some("\"e1\"".into()),
            digest: Some(page_digest(body)),
            ..Default::default()
        };
        store
            .commit(&Commit {
                bridge: b.name.clone(),
                meta: BridgeMeta {
                    seq: 1,
                    baselined: true,
                    ..Default::default()
                },
                puts: vec![Put::new("1", [1; 16], br#"{"id":1}"#.to_vec())],
                pages: vec![(
                    page_key(url),
                    PageWrite::Full(head.clone(), Arc::new(body.to_string())),
                )],
                ..Default::default()
            })
            .unwrap();
        let ctx = Ctx::new(store.clone());
        let n = resync(&ctx, &b, chrono::Utc::now()).await.unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            store.pages(&b.name).unwrap().get(&page_key(url)),
            Some(&head)
        );
        assert_eq!(
            store.page_body(&b.name, &page_key(url)).unwrap().as_deref(),
            Some(body)
        );
    }
}
