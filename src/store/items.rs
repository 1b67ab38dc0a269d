//! Item state and values: what a poll compares against, read per bridge, and reset.

use super::*;

/// An item's record in `state`: its hash and its missing count. Its value is in `items`.
pub(super) fn state_record(hash: &Hash, missing: u32) -> [u8; 20] {
    let mut r = [0; 20];
    r[..16].copy_from_slice(hash);
    r[16..].copy_from_slice(&missing.to_be_bytes());
    r
}

/// A state record whole: hash and missing count, then the change pending, if any
/// (`emit.settle`: [`crate::diff::settle::encode`]). Records without one are 20 bytes, as
/// they always were.
pub(super) fn full_record(s: &Stored) -> Vec<u8> {
    let mut r = state_record(&s.hash, s.missing).to_vec();
    if let Some(p) = &s.pending {
        r.extend_from_slice(&crate::diff::settle::encode(p));
    }
    r
}

pub(super) fn decode_stored(rec: &[u8]) -> Option<Stored> {
    if rec.len() < 20 {
        return None;
    }
    let pending = match &rec[20..] {
        [] => None,
        tail => Some(crate::diff::settle::decode(tail)?),
    };
    Some(Stored {
        hash: rec[..16].try_into().ok()?,
        missing: u32::from_be_bytes(rec[16..20].try_into().ok()?),
        pending,
    })
}

impl Store {
    /// Stores item values that no state points at yet, outside the commit's transaction
    /// (see `commit`); returns the files they replace, to be collected.
    pub fn put_ahead(
        &self,
        batch: &[(Vec<u8>, &[u8])],
    ) -> Result<Vec<values::FileName>, StoreError> {
        Ok(values::put_all(
            &self.items,
            &self.parts,
            &self.files,
            Kind::Item,
            batch,
        )?)
    }

    /// Hash and missing count of every stored item of a bridge.
    pub fn load_state(&self, bridge: &str) -> Result<HashMap<String, Stored>, StoreError> {
        self.state_scan(bridge).collect()
    }

    /// Hash and missing count of every stored item of a bridge, in key order (bytewise), read
    /// as the scan goes: a poll compares a million items without holding their state.
    pub fn state_scan(
        &self,
        bridge: &str,
    ) -> impl Iterator<Item = Result<(String, Stored), StoreError>> + use<> {
        let p = prefix(&[bridge]);
        let (n, bridge) = (p.len(), bridge.to_string());
        self.state.scan_prefix(&p).map(move |kv| {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k[n..]).into_owned();
            let s = decode_stored(&v)
                .ok_or_else(|| StoreError::Corrupt(format!("{bridge}/item {key}")))?;
            Ok((key, s))
        })
    }

    /// Hash and missing count of one stored item.
    pub fn item_state(&self, bridge: &str, key: &str) -> Result<Option<Stored>, StoreError> {
        let mut k = prefix(&[bridge]);
        k.extend_from_slice(key.as_bytes());
        match self.state.get(k)? {
            Some(v) => decode_stored(&v)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt(format!("{bridge}/item {key}"))),
            None => Ok(None),
        }
    }

    /// The stored value of one item.
    #[cfg(test)]
    pub fn item_value(
        &self,
        bridge: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let mut k = prefix(&[bridge]);
        k.extend_from_slice(key.as_bytes());
        let what = || format!("{bridge}/{key}");
        match self.value(&self.items, Kind::Item, &k, what)? {
            Some(rec) => json(&rec, &what()).map(Some),
            None => Ok(None),
        }
    }

    /// The stored value of one item as its text (the canonical JSON it was stored as), not
    /// parsed: what an event carries as `previous`.
    pub fn item_json(
        &self,
        bridge: &str,
        key: &str,
    ) -> Result<Option<crate::event::Json>, StoreError> {
        let mut k = prefix(&[bridge]);
        k.extend_from_slice(key.as_bytes());
        let what = || format!("{bridge}/{key}");
        let Some(rec) = self.value(&self.items, Kind::Item, &k, what)? else {
            return Ok(None);
        };
        String::from_utf8(rec)
            .ok()
            .and_then(|text| crate::event::Json::from_text(text).ok())
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(what()))
    }

    /// Every stored item of a bridge, with its hash, in key order.
    pub fn items(
        &self,
        bridge: &str,
    ) -> Result<Vec<(String, Hash, serde_json::Value)>, StoreError> {
        let p = prefix(&[bridge]);
        let mut state = self.load_state(bridge)?;
        let mut out = Vec::new();
        for kv in self.items.scan_prefix(&p) {
            let (k, rec) = kv?;
            let key = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            // A value without state is what an interrupted reset leaves: not an item.
            let Some(s) = state.remove(&key) else {
                continue;
            };
            let what = || format!("{bridge}/item {key}");
            let v = self.value_of(Kind::Item, &k, rec, what)?;
            out.push((key.clone(), s.hash, json(&v, &what())?));
        }
        Ok(out)
    }

    /// Forgets a bridge's items, cached pages and incremental cursor (its `seq` stays, so ids
    /// and seqs are never reused); the next poll re-baselines, without validators, and an
    /// incremental listing asks from its `initial` again. A refresh token kept for its login
    /// stays: it is a credential, not state, and the configured one may be void.
    pub fn reset(&self, bridge: &str) -> Result<usize, StoreError> {
        let p = prefix(&[bridge]);
        remove_bridge(&self.pages, bridge)?;
        let (_, mut garbage) =
            values::remove_prefix(&self.page_bodies, &self.parts, Kind::PageBody, &p)?;
        let n = remove_bridge(&self.state, bridge)?;
        garbage.extend(values::remove_prefix(&self.items, &self.parts, Kind::Item, &p)?.1);
        let mut m = self.meta(bridge)?;
        m.baselined = false;
        m.absent = 0;
        m.items = 0;
        // An incremental listing starts again from its `initial` cursor.
        m.cursor = None;
        self.meta
            .insert(bridge.as_bytes(), super::record_bytes(&m))?;
        self.collect(garbage)?;
        Ok(n)
    }
}
