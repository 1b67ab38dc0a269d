//! What a poll reads of the store: before it fetches, the bridge's meta and the validators it
//! may send; after, when it compares, the whole meta and every cached page (`compared`). And
//! the store's side of what the fetch reads and keeps while it fetches: the body a 304 stands
//! for ([`fetch::PageBodies`]) and the newest refresh token of the source's login
//! ([`fetch::TokenKeeper`]). So the fetch side never holds the store, only these two.

use super::fetch::{self, PageBodies, TokenKeeper};
use super::plan::Approach;
use crate::config::Source;
use crate::store::{BridgeMeta, CachedPage, MetaRead, Store, StoreError, page_key};
use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;

/// The bridge's meta as stored, its learned shape left to decode until the poll compares
/// ([`MetaRead`]). Read where the poll runs, not on a blocking thread: one small read (nearly
/// always in the store's cache), which every poll makes before it knows whether the listing
/// changed, so that a poll answered 304 touches no blocking thread (docs/scaling.md#cpu).
pub async fn load(st: &Store, bridge: &str) -> Result<MetaRead, StoreError> {
    st.meta_read(bridge)
}

/// The validators the fetch of `source` may send, by `page_key`: none unless the cache is to
/// be trusted ([`Approach`]); for a listing of one page, that page's record alone (one read);
/// else every cached page's. Read where the poll runs, as [`load`] is.
pub fn validators(
    st: &Store,
    bridge: &str,
    source: &Source,
    approach: Approach,
) -> Result<HashMap<String, CachedPage>, StoreError> {
    if !(approach.conditional && approach.trusted) {
        return Ok(HashMap::new());
    }
    if source.paginate.is_some() {
        return st.pages(bridge);
    }
    // Without pagination the one page asked for is the source's URL
    // (`paging::PageRequest::first`).
    let key = page_key(source.url.as_str());
    Ok(st
        .page(bridge, &key)?
        .map(|p| (key, p))
        .into_iter()
        .collect())
}

/// What a poll that goes on to compare reads of the store besides its items: the whole meta
/// (of the record [`load`] read) and every cached page's validators. Blocks.
pub fn compared(
    st: &Store,
    bridge: &str,
    read: MetaRead,
) -> Result<(BridgeMeta, HashMap<String, CachedPage>), StoreError> {
    Ok((read.whole(bridge)?, st.pages(bridge)?))
}

/// What the fetch of `bridge` reads and keeps of the store.
pub fn kept(st: &Store, bridge: &str) -> fetch::Kept {
    let one = Arc::new(BridgeStore {
        store: st.clone(),
        bridge: bridge.to_string(),
    });
    fetch::Kept {
        bodies: one.clone(),
        tokens: one,
    }
}

/// One bridge's part of the store: its cached page bodies (tree `page_bodies`) and its kept
/// refresh token (tree `auth`).
struct BridgeStore {
    store: Store,
    bridge: String,
}

impl PageBodies for BridgeStore {
    fn body(&self, key: &str) -> Result<Option<String>, Box<dyn Error + Send + Sync>> {
        Ok(self.store.page_body(&self.bridge, key)?)
    }
}

impl TokenKeeper for BridgeStore {
    fn load(&self, configured: &str) -> Result<Option<String>, Box<dyn Error + Send + Sync>> {
        Ok(self.store.refresh_token(&self.bridge, configured)?)
    }

    fn save(&self, configured: &str, latest: &str) -> Result<(), Box<dyn Error + Send + Sync>> {
        Ok(self
            .store
            .keep_refresh_token(&self.bridge, configured, latest)?)
    }
}

#[cfg(test)]
mod tests {
    use crate::poll::scheduler::poll_and_log;
    use crate::redact::Redactor;
    use crate::runtime::Ctx;
    use crate::testkit::{BridgeYaml, PATIENCE};
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::IntoResponse;

    /// A listing of one item, with an ETag: a request that sends it is answered 304.
    async fn upstream() -> String {
        let app = axum::Router::new().route(
            "/items",
            axum::routing::get(|h: HeaderMap| async move {
                if h.get(header::IF_NONE_MATCH).is_some_and(|v| v == "\"v1\"") {
                    return StatusCode::NOT_MODIFIED.into_response();
                }
                let json = [(header::CONTENT_TYPE, "application/json")];
                (json, [(header::ETAG, "\"v1\"")], r#"{"items":[{"id":1}]}"#).into_response()
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/items", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        url
    }

    #[test]
    fn a_poll_answered_304_touches_no_blocking_thread_and_writes_nothing() {
        // One blocking thread, held while the 304 is polled: a poll that needed one would wait.
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let url = upstream().await;
            let yaml = BridgeYaml::new(&url).sink("console");
            let b = crate::config::test_bridge("quiet304", &yaml.build());
            let dir = tempfile::tempdir().unwrap();
            let store = crate::store::Store::open(dir.path()).unwrap();
            let ctx = Ctx::new(store.clone());
            let redactor = Redactor::new(&b.secrets);
            let first = poll_and_log(&ctx, &b, &redactor).await.unwrap().unwrap();
            assert!(first.baseline, "{first:?}");
            store.flush_blocking().unwrap();
            let before = store.checksum();

            let (started, release) = (std::sync::mpsc::channel(), std::sync::mpsc::channel());
            let (tx_started, rx_started) = started;
            let (tx_release, rx_release) = release;
            let held = tokio::task::spawn_blocking(move || {
                tx_started.send(()).unwrap();
                rx_release.recv().unwrap();
            });
            rx_started.recv().unwrap();
            let polled = tokio::time::timeout(PATIENCE, poll_and_log(&ctx, &b, &redactor)).await;
            tx_release.send(()).unwrap();
            held.await.unwrap();
            let r = polled.expect("the 304 waited for a blocking thread");
            let r = r.unwrap().unwrap();
            assert!(r.not_modified && r.items == 1, "{r:?}");
            store.flush_blocking().unwrap();
            assert_eq!(store.checksum(), before, "the 304 wrote to the store");
        });
    }
}
