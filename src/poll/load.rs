//! What a poll reads of the store before it fetches (the bridge's meta and its cached pages'
//! validators), and the store's side of what the fetch reads and keeps while it fetches: the
//! body a 304 stands for ([`fetch::PageBodies`]) and the newest refresh token of the source's
//! login ([`fetch::TokenKeeper`]). So the fetch side never holds the store, only these two.

use super::fetch::{self, PageBodies, TokenKeeper};
use crate::store::{BridgeMeta, CachedPage, Store, StoreError};
use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;

/// The bridge's meta and cached pages, as stored. Read where the poll runs, not on a blocking
/// thread: two small reads (a few keys under the bridge's prefix, nearly always in the store's
/// cache), which every poll makes before it knows whether the listing changed, so that a poll
/// answered 304 touches no blocking thread (docs/scaling.md#cpu).
pub async fn load(
    st: &Store,
    bridge: &str,
) -> Result<(BridgeMeta, HashMap<String, CachedPage>), StoreError> {
    Ok((st.meta(bridge)?, st.pages(bridge)?))
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
