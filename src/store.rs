//! The sled database: item state, per-bridge metadata, the outbox and the dead letters.
//!
//! `commit` writes a poll's new item state, the bridge's `seq` and its events into the outbox in
//! ONE transaction, so there is never state without its events or events without their state
//! (a poll with many writes commits in batches, each its state with its events).
//! sled calls block: callers run the big ones (`load_state`, `commit`) on `spawn_blocking`.
//!
//! `pages` holds, per bridge and page URL, the last 200 answer of that page (validators, `Link`
//! header and a digest of the body; the body itself is in `page_bodies`, read only when a 304
//! needs it), so that a 304 can stand for the page it confirms: its items and its next
//! link. It is written in the same transaction as the item state it produced. Were it written
//! first, a crash in between would leave a validator for a body whose changes were never
//! stored, and the next poll's 304 would hide those changes for good.
//!
//! `state` holds each item's hash and missing count, `items` its value, so that a poll reads
//! 20 bytes per item to compare and the values only of the items that changed.
//!
//! Keys: `items`, `state` and `meta` by `bridge \0 key`; `pages` and `page_bodies` by `bridge \0 page_key(url)`; `outbox` and `dead` by
//! `bridge \0 sink \0 position(8 bytes, big-endian)`, the position coming from a counter
//! that goes on after the largest position stored, so a prefix scan walks one queue in detection order and a replayed
//! dead letter joins the back of its queue. Bridge names cannot hold `\0` (validated), so
//! prefixes never collide.

use crate::diff::Stored;
use crate::event::EventType;
use crate::extract::Hash;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sled(#[from] sled::Error),
    #[error("state of bridge `{0}` changed during the poll; the poll will be retried")]
    Conflict(String),
    #[error("state database holds an unreadable record under `{0}`")]
    Corrupt(String),
}

/// What the store keeps per bridge.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BridgeMeta {
    /// The last `seq` given to an event of this bridge; never goes back, not even on reset.
    pub seq: u64,
    /// The definition the item state was taken under (see `Bridge::fingerprint`).
    pub fingerprint: Option<String>,
    /// False until the first complete poll stored a baseline (and again after a reset).
    pub baselined: bool,
    /// Items counting absences (missing in some polls, not yet deleted: `after_missing` > 1).
    /// While any are, an unchanged (304) listing still has to be compared, to count them on.
    #[serde(default)]
    pub absent: usize,
    /// Items stored, so that a poll answered 304 can report the count without loading them.
    #[serde(default)]
    pub items: usize,
}

/// What is kept of the last 200 answer of one page of a listing, besides its body (which is
/// stored apart, in `page_bodies`, and read only when a 304 needs it): what a 304 stands for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CachedPage {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// The `Link` header (for `paginate.next: link`).
    pub link: Option<String>,
    /// [`page_digest`] of the body when the body is stored: a 200 with the same validators
    /// and body needs no write.
    pub digest: Option<String>,
}

/// What a commit does with one cached page.
#[derive(Debug, Clone, PartialEq)]
pub enum PageWrite {
    /// Keep it as stored (a 304, or a 200 the same as the stored record).
    Keep,
    /// Store its validators only: no 304 of this listing will need the body (one page, no
    /// absences counted). Its `digest` is None.
    Head(CachedPage),
    /// Store its validators and its body.
    Full(CachedPage, Arc<String>),
}

impl PageWrite {
    /// The validators to be stored, if any are written.
    pub fn head(&self) -> Option<&CachedPage> {
        match self {
            PageWrite::Keep => None,
            PageWrite::Head(h) | PageWrite::Full(h, _) => Some(h),
        }
    }
}

/// A short content hash (the first 16 bytes of SHA-256, in hex): of a page body for its
/// digest, and of a page URL for its key.
pub fn page_digest(body: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(body.as_bytes())[..16])
}

/// A cached page's record in `pages`: a 4-byte length, then the validators as a JSON array.
/// Records written before bodies were stored apart carry the body after the array.
fn encode_page(p: &CachedPage) -> Vec<u8> {
    let head = serde_json::to_vec(&(&p.etag, &p.last_modified, &p.link, &p.digest))
        .expect("strings serialise");
    let mut out = Vec::with_capacity(4 + head.len());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out
}

/// The record's validators, and where its body starts (old records only).
fn decode_page(b: &[u8]) -> Option<(CachedPage, usize)> {
    let n = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let head = b.get(4..4 + n)?;
    let mut fields: Vec<Option<String>> = serde_json::from_slice(head).ok()?;
    fields.resize(4, None);
    let mut f = fields.into_iter();
    let page = CachedPage {
        etag: f.next()?,
        last_modified: f.next()?,
        link: f.next()?,
        digest: f.next()?,
    };
    Some((page, 4 + n))
}

/// The key of a page in the `pages` tree: a hash of its URL, so that tokens in a URL's query
/// are not written to disk as keys.
pub fn page_key(url: &str) -> String {
    page_digest(url)
}

/// One event waiting for one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxEntry {
    pub event_id: String,
    pub kind: EventType,
    pub seq: u64,
    /// The event's JSON, exactly the bytes that are POSTed (and signed).
    pub body: String,
    /// Attempts made so far.
    pub attempts: u32,
    /// Unix milliseconds before which no attempt is made (stored, so retries resume after a
    /// restart at their planned time).
    pub next_at_ms: i64,
    pub last_error: Option<String>,
    /// Unix milliseconds when the event was committed.
    pub created_ms: i64,
}

/// An event that ran out of retries (or met a 410) for one sink.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub bridge: String,
    pub sink: String,
    pub entry: OutboxEntry,
    pub dead_at_ms: i64,
}

/// A poll's writes, applied atomically by [`Store::commit`].
#[derive(Debug, Default)]
pub struct Commit {
    pub bridge: String,
    /// The `seq` read before the poll: if another writer moved it, the commit is refused.
    pub expected_seq: u64,
    /// The whole meta read before the poll, when the commit stands on it: if anything changed
    /// it meanwhile (a reset, another poll), the commit is refused.
    pub base: Option<BridgeMeta>,
    pub meta: BridgeMeta,
    pub puts: Vec<(String, Hash, Vec<u8>)>,
    pub missing: Vec<(String, u32)>,
    pub removes: Vec<String>,
    pub outbox: Vec<(String, OutboxEntry)>,
    /// The bridge's cached pages after this poll, by `page_key`: they replace the stored set.
    pub pages: Vec<(String, PageWrite)>,
}

impl Commit {
    /// Queues each event for each sink, in order.
    pub fn queue(&mut self, sinks: &[String], events: &[crate::event::Event], created_ms: i64) {
        for e in events {
            let body = serde_json::to_string(e).expect("event serialises");
            for sink in sinks {
                self.outbox.push((
                    sink.clone(),
                    OutboxEntry {
                        event_id: e.id.clone(),
                        kind: e.kind,
                        seq: e.seq,
                        body: body.clone(),
                        attempts: 0,
                        next_at_ms: 0,
                        last_error: None,
                        created_ms,
                    },
                ));
            }
        }
    }
}

#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    items: sled::Tree,
    state: sled::Tree,
    meta: sled::Tree,
    outbox: sled::Tree,
    dead: sled::Tree,
    pages: sled::Tree,
    page_bodies: sled::Tree,
    /// The next queue position. Not sled's `generate_id`: called next to transactions on
    /// other threads, it deadlocks sled 0.34 (found by the delivery benchmark).
    next_position: Arc<AtomicU64>,
    /// Group commit: commits done, commits known to be on disk, and one flush at a time.
    flushes: Arc<Flushes>,
}

#[derive(Default)]
struct Flushes {
    committed: AtomicU64,
    durable: AtomicU64,
    lock: tokio::sync::Mutex<()>,
}

fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::new();
    for p in parts {
        k.extend_from_slice(p.as_bytes());
        k.push(0);
    }
    k
}

pub fn queue_key(bridge: &str, sink: &str, position: u64) -> Vec<u8> {
    let mut k = prefix(&[bridge, sink]);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

/// The position part of a queue key (its last 8 bytes).
fn position_of(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|i| key[i..].try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Item record: 16-byte hash, 4-byte missing count, then the canonical JSON value.
/// An item's record in `state`: its hash and its missing count. Its value is in `items`.
fn state_record(hash: &Hash, missing: u32) -> [u8; 20] {
    let mut r = [0; 20];
    r[..16].copy_from_slice(hash);
    r[16..].copy_from_slice(&missing.to_be_bytes());
    r
}

/// Removes every record of a bridge from `tree` in one batch; returns how many there were.
fn remove_bridge(tree: &sled::Tree, bridge: &str) -> Result<usize, StoreError> {
    let mut batch = sled::Batch::default();
    let mut n = 0;
    for k in tree.scan_prefix(prefix(&[bridge])).keys() {
        batch.remove(k?);
        n += 1;
    }
    tree.apply_batch(batch)?;
    Ok(n)
}

/// sled's page cache. Its default (1 GiB) lets the store's memory grow with what it holds, up
/// to a gigabyte: a first poll of a million items kept most of them cached (the big-document
/// benchmark: 1M items peaked at 480 MiB with the default, 220 MiB with this). A poll reads
/// what it compares in one pass, so a small cache costs little.
pub const CACHE_BYTES: u64 = 16 << 20;

/// The on-disk layout this version writes: 2 keeps item state apart from item values.
const FORMAT: u32 = 2;

/// Format 1 kept `[hash][missing][value]` in `items`: moves hash and missing to `state`, a
/// batch of items at a time, each batch in one transaction. An item already in `state` has
/// been moved, so a migration cut short by a crash goes on where it stopped.
fn migrate(db: &sled::Db, items: &sled::Tree, state: &sled::Tree) -> Result<(), StoreError> {
    let format = db
        .get(b"format")?
        .and_then(|v| Some(u32::from_be_bytes(v.as_ref().try_into().ok()?)))
        .unwrap_or(1);
    if format >= FORMAT {
        return Ok(());
    }
    let split = |batch: &[(sled::IVec, sled::IVec)]| -> Result<(), StoreError> {
        let res: Result<(), TransactionError<StoreError>> =
            (items, state).transaction(|(items, state)| {
                for (k, rec) in batch {
                    state.insert(k, &rec[..20])?;
                    items.insert(k, &rec[20..])?;
                }
                Ok(())
            });
        res.map_err(tx_error)
    };
    let mut batch = Vec::new();
    let mut moved = 0usize;
    for kv in items.iter() {
        let (k, rec) = kv?;
        if rec.len() >= 20 && !state.contains_key(&k)? {
            batch.push((k, rec));
        }
        if batch.len() == 10_000 {
            split(&batch)?;
            moved += batch.len();
            batch.clear();
        }
    }
    split(&batch)?;
    moved += batch.len();
    db.insert(b"format", &FORMAT.to_be_bytes())?;
    db.flush()?;
    if moved > 0 {
        tracing::info!(
            items = moved,
            "store: item state moved apart from item values"
        );
    }
    Ok(())
}

fn decode_stored(rec: &[u8]) -> Option<Stored> {
    if rec.len() < 20 {
        return None;
    }
    Some(Stored {
        hash: rec[..16].try_into().ok()?,
        missing: u32::from_be_bytes(rec[16..20].try_into().ok()?),
    })
}

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt(what.to_string()))
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir.join("pollhook.sled"))
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let outbox = db.open_tree("outbox")?;
        let dead = db.open_tree("dead")?;
        // Positions only order entries that exist, so going on after the largest one is enough.
        let mut last = 0;
        for k in outbox.iter().keys().chain(dead.iter().keys()) {
            last = last.max(position_of(&k?));
        }
        let items = db.open_tree("items")?;
        let state = db.open_tree("state")?;
        migrate(&db, &items, &state)?;
        Ok(Store {
            items,
            state,
            meta: db.open_tree("meta")?,
            outbox,
            dead,
            pages: db.open_tree("pages")?,
            page_bodies: db.open_tree("page_bodies")?,
            next_position: Arc::new(AtomicU64::new(last + 1)),
            flushes: Default::default(),
            db,
        })
    }

    fn position(&self) -> u64 {
        self.next_position.fetch_add(1, Ordering::Relaxed)
    }

    /// Waits until everything committed so far is on disk.
    /// Waits until every commit made so far is on disk. Concurrent callers share one flush
    /// (group commit), and the flush runs on a blocking thread: sled 0.34's `flush_async`
    /// queues each call on sled's own small I/O pool, and many at once starve the pool of the
    /// thread that would write the log, a deadlock the delivery benchmark ran into.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let wanted = self.flushes.committed.load(Ordering::SeqCst);
        let _one = self.flushes.lock.lock().await;
        if self.flushes.durable.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        let target = self.flushes.committed.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .expect("flush does not panic")?;
        self.flushes.durable.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }

    pub fn meta(&self, bridge: &str) -> Result<BridgeMeta, StoreError> {
        match self.meta.get(bridge.as_bytes())? {
            Some(v) => json(&v, bridge),
            None => Ok(BridgeMeta::default()),
        }
    }

    /// Every record of a bridge in `tree`, by key (the part after the bridge's prefix), each
    /// decoded by `decode`; one that does not decode is a corrupt record named after `what`.
    fn scan<T>(
        tree: &sled::Tree,
        bridge: &str,
        what: &str,
        decode: impl Fn(&[u8]) -> Option<T>,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let p = prefix(&[bridge]);
        let mut out = Vec::new();
        for kv in tree.scan_prefix(&p) {
            let (k, v) = kv?;
            let key = String::from_utf8_lossy(&k[p.len()..]).into_owned();
            let record =
                decode(&v).ok_or_else(|| StoreError::Corrupt(format!("{bridge}/{what} {key}")))?;
            out.push((key, record));
        }
        Ok(out)
    }

    /// The cached pages of a bridge (their validators), by `page_key`.
    pub fn pages(&self, bridge: &str) -> Result<HashMap<String, CachedPage>, StoreError> {
        Ok(
            Self::scan(&self.pages, bridge, "page", |b| decode_page(b).map(|p| p.0))?
                .into_iter()
                .collect(),
        )
    }

    /// Forgets the stored bodies of a bridge's cached pages, keeping their validators: what a
    /// lost body looks like (tests use it; a poll then fetches the listing again in full).
    pub fn forget_page_bodies(&self, bridge: &str) -> Result<usize, StoreError> {
        remove_bridge(&self.page_bodies, bridge)
    }

    /// The stored body of one cached page.
    pub fn page_body(&self, bridge: &str, key: &str) -> Result<Option<String>, StoreError> {
        let mut k = prefix(&[bridge]);
        k.extend_from_slice(key.as_bytes());
        let corrupt = || StoreError::Corrupt(format!("{bridge}/page {key}"));
        let body = match self.page_bodies.get(&k)? {
            Some(b) => b,
            // A record from before bodies were stored apart carries its own.
            None => match self.pages.get(&k)? {
                Some(rec) => {
                    let (_, at) = decode_page(&rec).ok_or_else(corrupt)?;
                    if at == rec.len() {
                        return Ok(None);
                    }
                    rec.subslice(at, rec.len() - at)
                }
                None => return Ok(None),
            },
        };
        String::from_utf8(body.to_vec())
            .map(Some)
            .map_err(|_| corrupt())
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
    pub fn item_value(
        &self,
        bridge: &str,
        key: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let mut k = prefix(&[bridge]);
        k.extend_from_slice(key.as_bytes());
        match self.items.get(k)? {
            Some(rec) => json(&rec, &format!("{bridge}/{key}")).map(Some),
            None => Ok(None),
        }
    }

    /// Every stored item of a bridge, with its hash, in key order.
    pub fn items(
        &self,
        bridge: &str,
    ) -> Result<Vec<(String, Hash, serde_json::Value)>, StoreError> {
        let values = Self::scan(&self.items, bridge, "item", |rec| {
            serde_json::from_slice(rec).ok()
        })?;
        let mut state = self.load_state(bridge)?;
        // A value without state is what an interrupted reset leaves: not an item.
        Ok(values
            .into_iter()
            .filter_map(|(k, v)| Some((k.clone(), state.remove(&k)?.hash, v)))
            .collect())
    }

    /// Applies a poll atomically: item state, meta (with the new `seq`) and outbox entries.
    pub fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let ip = prefix(&[&c.bridge]);
        let item_key = |k: &str| {
            let mut key = ip.clone();
            key.extend_from_slice(k.as_bytes());
            key
        };
        let meta_bytes = serde_json::to_vec(&c.meta).expect("meta serialises");
        // The values of items that have no state yet are written first, in batches: no state
        // points at them until the transaction below, so a crash or a refused commit leaves
        // only values nothing reads (and the next write of that key replaces). This keeps a
        // first poll of a large listing from holding every value in one transaction. Values
        // of known items are replaced inside it: the previous one must stay until then.
        let mut fresh = vec![false; c.puts.len()];
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for (i, (k, _, value)) in c.puts.iter().enumerate() {
            let key = item_key(k);
            if self.state.contains_key(&key)? {
                continue;
            }
            fresh[i] = true;
            batch.insert(key, value.as_slice());
            in_batch += 1;
            if in_batch == 10_000 {
                self.items.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        if in_batch > 0 {
            self.items.apply_batch(batch)?;
        }
        let mut outbox: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(c.outbox.len());
        for (sink, e) in &c.outbox {
            outbox.push((
                queue_key(&c.bridge, sink, self.position()),
                serde_json::to_vec(e).expect("entry serialises"),
            ));
        }
        // The page set is replaced: pages no longer in the listing go. Polls of one bridge
        // never overlap, so the keys read here are still the stored ones at commit time.
        let mut gone: Vec<Vec<u8>> = Vec::new();
        for k in self.pages.scan_prefix(&ip).keys() {
            let k = k?;
            let kept = c
                .pages
                .iter()
                .any(|(pk, ..)| k.len() == ip.len() + pk.len() && k.ends_with(pk.as_bytes()));
            if !kept {
                gone.push(k.to_vec());
            }
        }
        // Key, validators record, and the body when it is stored.
        type Written<'a> = (Vec<u8>, Vec<u8>, Option<&'a [u8]>);
        let written: Vec<Written> = c
            .pages
            .iter()
            .filter_map(|(pk, w)| {
                let body = match w {
                    PageWrite::Full(_, body) => Some(body.as_bytes()),
                    _ => None,
                };
                Some((item_key(pk), encode_page(w.head()?), body))
            })
            .collect();
        let res: Result<(), TransactionError<StoreError>> = (
            &self.items,
            &self.state,
            &self.meta,
            &self.outbox,
            &self.pages,
            &self.page_bodies,
        )
            .transaction(|(items, state, meta, ob, pg, bodies)| {
                let current = match meta.get(c.bridge.as_bytes())? {
                    Some(v) => serde_json::from_slice::<BridgeMeta>(&v).map_err(|_| {
                        ConflictableTransactionError::Abort(StoreError::Corrupt(c.bridge.clone()))
                    })?,
                    None => BridgeMeta::default(),
                };
                let moved = c.base.as_ref().is_some_and(|b| *b != current);
                if current.seq != c.expected_seq || moved {
                    return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                        c.bridge.clone(),
                    )));
                }
                for ((k, hash, value), fresh) in c.puts.iter().zip(&fresh) {
                    let key = item_key(k);
                    state.insert(key.as_slice(), &state_record(hash, 0))?;
                    if !fresh {
                        items.insert(key, value.as_slice())?;
                    }
                }
                for (k, missing) in &c.missing {
                    let key = item_key(k);
                    if let Some(rec) = state.get(&key)? {
                        let mut rec = rec.to_vec();
                        if rec.len() >= 20 {
                            rec[16..20].copy_from_slice(&missing.to_be_bytes());
                            state.insert(key, rec)?;
                        }
                    }
                }
                for k in &c.removes {
                    let key = item_key(k);
                    state.remove(key.as_slice())?;
                    items.remove(key)?;
                }
                meta.insert(c.bridge.as_bytes(), meta_bytes.as_slice())?;
                for (k, v) in &outbox {
                    ob.insert(k.as_slice(), v.as_slice())?;
                }
                for k in &gone {
                    pg.remove(k.as_slice())?;
                    bodies.remove(k.as_slice())?;
                }
                for (k, head, body) in &written {
                    pg.insert(k.as_slice(), head.as_slice())?;
                    match body {
                        Some(body) => bodies.insert(k.as_slice(), *body)?,
                        None => bodies.remove(k.as_slice())?,
                    };
                }
                Ok(())
            });
        res.map_err(tx_error)?;
        self.flushes.committed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Forgets a bridge's items and cached pages (its `seq` stays, so ids and seqs are never
    /// reused); the next poll re-baselines, without validators.
    pub fn reset(&self, bridge: &str) -> Result<usize, StoreError> {
        remove_bridge(&self.pages, bridge)?;
        remove_bridge(&self.page_bodies, bridge)?;
        let n = remove_bridge(&self.state, bridge)?;
        remove_bridge(&self.items, bridge)?;
        let mut m = self.meta(bridge)?;
        m.baselined = false;
        m.absent = 0;
        m.items = 0;
        self.meta.insert(
            bridge.as_bytes(),
            serde_json::to_vec(&m).expect("meta serialises"),
        )?;
        Ok(n)
    }

    /// The first entry of one bridge+sink queue.
    pub fn outbox_head(
        &self,
        bridge: &str,
        sink: &str,
    ) -> Result<Option<(Vec<u8>, OutboxEntry)>, StoreError> {
        match self.outbox.scan_prefix(prefix(&[bridge, sink])).next() {
            Some(kv) => {
                let (k, v) = kv?;
                Ok(Some((k.to_vec(), json(&v, bridge)?)))
            }
            None => Ok(None),
        }
    }

    /// Entries waiting for one bridge (all sinks).
    pub fn outbox_len(&self, bridge: &str) -> usize {
        self.outbox.scan_prefix(prefix(&[bridge])).count()
    }

    /// All entries of the outbox, with their bridge and sink.
    pub fn outbox_all(&self) -> Result<Vec<(String, String, OutboxEntry)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.outbox.iter() {
            let (k, v) = kv?;
            let (bridge, sink) = split_queue_key(&k);
            out.push((bridge, sink, json(&v, "outbox")?));
        }
        Ok(out)
    }

    /// Acknowledged: the entry leaves the outbox.
    pub fn ack(&self, key: &[u8]) -> Result<(), StoreError> {
        self.outbox.remove(key)?;
        Ok(())
    }

    /// Records a failed attempt and when the next one is due.
    pub fn reschedule(&self, key: &[u8], entry: &OutboxEntry) -> Result<(), StoreError> {
        self.outbox
            .insert(key, serde_json::to_vec(entry).expect("entry serialises"))?;
        Ok(())
    }

    /// Moves an entry from the outbox to the dead letters, atomically.
    pub fn dead_letter(&self, key: &[u8], letter: &DeadLetter) -> Result<(), StoreError> {
        let v = serde_json::to_vec(letter).expect("letter serialises");
        let res: Result<(), TransactionError<StoreError>> =
            (&self.outbox, &self.dead).transaction(|(ob, dead)| {
                ob.remove(key)?;
                dead.insert(key, v.as_slice())?;
                Ok(())
            });
        res.map_err(tx_error)
    }

    pub fn dead_letters(&self) -> Result<Vec<(Vec<u8>, DeadLetter)>, StoreError> {
        self.dead
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((k.to_vec(), json(&v, "dead letter")?))
            })
            .collect()
    }

    /// Puts a dead letter back at the end of its queue, with a fresh schedule.
    pub fn replay(&self, key: &[u8]) -> Result<Option<DeadLetter>, StoreError> {
        let Some(v) = self.dead.get(key)? else {
            return Ok(None);
        };
        let letter: DeadLetter = json(&v, "dead letter")?;
        let mut entry = letter.entry.clone();
        entry.attempts = 0;
        entry.next_at_ms = 0;
        let new_key = queue_key(&letter.bridge, &letter.sink, self.position());
        let bytes = serde_json::to_vec(&entry).expect("entry serialises");
        let res: Result<(), TransactionError<StoreError>> =
            (&self.outbox, &self.dead).transaction(|(ob, dead)| {
                dead.remove(key)?;
                ob.insert(new_key.as_slice(), bytes.as_slice())?;
                Ok(())
            });
        res.map_err(tx_error)?;
        Ok(Some(letter))
    }

    /// Forgets a dead letter.
    pub fn drop_dead(&self, key: &[u8]) -> Result<bool, StoreError> {
        Ok(self.dead.remove(key)?.is_some())
    }

    pub fn dead_len(&self, bridge: &str) -> usize {
        self.dead.scan_prefix(prefix(&[bridge])).count()
    }
}

fn split_queue_key(k: &[u8]) -> (String, String) {
    let mut parts = k.splitn(3, |b| *b == 0);
    let bridge = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let sink = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    (bridge, sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64) -> OutboxEntry {
        OutboxEntry {
            event_id: format!("evt_{seq}"),
            kind: EventType::Created,
            seq,
            body: "{}".into(),
            attempts: 0,
            next_at_ms: 0,
            last_error: None,
            created_ms: 0,
        }
    }

    #[test]
    fn a_format_1_store_is_migrated_on_open_even_after_an_interrupted_migration() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path().join("pollhook.sled")).unwrap();
            let items = db.open_tree("items").unwrap();
            let old = |hash: u8, missing: u32, v: &str| {
                let mut r = vec![hash; 16];
                r.extend_from_slice(&missing.to_be_bytes());
                r.extend_from_slice(v.as_bytes());
                r
            };
            items.insert(b"b\0k1", old(1, 0, r#"{"a":1}"#)).unwrap();
            items.insert(b"b\0k2", old(2, 3, r#"{"a":2}"#)).unwrap();
            // k3 was moved before a crash: its state is apart and its value alone.
            items.insert(b"b\0k3", &br#"{"a":3}"#[..]).unwrap();
            db.open_tree("state")
                .unwrap()
                .insert(b"b\0k3", &state_record(&[3; 16], 1))
                .unwrap();
            db.flush().unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let state = s.load_state("b").unwrap();
        assert_eq!(state.len(), 3);
        assert_eq!(
            state["k2"],
            Stored {
                hash: [2; 16],
                missing: 3
            }
        );
        assert_eq!(
            state["k3"],
            Stored {
                hash: [3; 16],
                missing: 1
            }
        );
        assert_eq!(
            s.item_value("b", "k1").unwrap(),
            Some(serde_json::json!({"a": 1}))
        );
        let items = s.items("b").unwrap();
        assert_eq!(
            items[2],
            ("k3".into(), [3; 16], serde_json::json!({"a": 3}))
        );
        drop(s);
        // Opened again: nothing moves twice.
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.load_state("b").unwrap(), state);
        assert_eq!(s.items("b").unwrap(), items);
    }

    #[test]
    fn commit_is_atomic_and_checks_seq() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = Commit {
            bridge: "b".into(),
            expected_seq: 0,
            meta: BridgeMeta {
                seq: 2,
                fingerprint: Some("f".into()),
                baselined: true,
                absent: 0,
                items: 1,
            },
            puts: vec![("k1".into(), [1; 16], b"{\"a\":1}".to_vec())],
            outbox: vec![("s".into(), entry(1)), ("s".into(), entry(2))],
            ..Default::default()
        };
        s.commit(&c).unwrap();
        // The same commit again: seq moved on, refused, nothing written twice.
        assert!(matches!(s.commit(&c), Err(StoreError::Conflict(_))));
        assert_eq!(s.meta("b").unwrap().seq, 2);
        // A refused commit of a new item: its value may be written ahead, but no state
        // points at it, so it is no item.
        let fresh = Commit {
            bridge: "b".into(),
            expected_seq: 0,
            puts: vec![("k9".into(), [9; 16], b"9".to_vec())],
            ..Default::default()
        };
        assert!(matches!(s.commit(&fresh), Err(StoreError::Conflict(_))));
        assert!(!s.load_state("b").unwrap().contains_key("k9"));
        assert!(s.items("b").unwrap().iter().all(|(k, ..)| k != "k9"));
        assert_eq!(
            s.load_state("b").unwrap()["k1"],
            Stored {
                hash: [1; 16],
                missing: 0
            }
        );
        assert_eq!(
            s.item_value("b", "k1").unwrap(),
            Some(serde_json::json!({"a": 1}))
        );
        let (k, head) = s.outbox_head("b", "s").unwrap().unwrap();
        assert_eq!(head.seq, 1);
        s.ack(&k).unwrap();
        assert_eq!(s.outbox_head("b", "s").unwrap().unwrap().1.seq, 2);
        // A bridge whose name is a prefix of another's does not see its items.
        assert!(s.load_state("").unwrap().is_empty());
    }

    fn pg(url: &str, etag: &str) -> (String, PageWrite) {
        let head = CachedPage {
            etag: Some(etag.into()),
            digest: Some(page_digest("[]")),
            ..Default::default()
        };
        (
            page_key(url),
            PageWrite::Full(head, Arc::new("[]".to_string())),
        )
    }

    #[test]
    fn pages_are_replaced_with_the_state_and_forgotten_on_reset() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut c = Commit {
            bridge: "b".into(),
            meta: BridgeMeta {
                seq: 0,
                baselined: true,
                ..Default::default()
            },
            pages: vec![pg("u1", "e1"), pg("u2", "e2")],
            ..Default::default()
        };
        s.commit(&c).unwrap();
        // Another bridge whose name starts the same keeps its own pages.
        let other = Commit {
            bridge: "bb".into(),
            pages: vec![pg("u9", "e9")],
            ..Default::default()
        };
        s.commit(&other).unwrap();
        assert_eq!(s.pages("b").unwrap().len(), 2);
        // The next poll's set replaces the old one: u2 goes, u1 changes, u3 comes.
        c.pages = vec![pg("u1", "e1b"), pg("u3", "e3")];
        s.commit(&c).unwrap();
        let p = s.pages("b").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[&page_key("u1")].etag.as_deref(), Some("e1b"));
        assert!(p.contains_key(&page_key("u3")));
        assert_eq!(
            s.page_body("b", &page_key("u3")).unwrap().as_deref(),
            Some("[]")
        );
        assert_eq!(s.page_body("b", &page_key("u2")).unwrap(), None);
        // A kept page stays as stored; one not listed goes, body and all.
        c.pages = vec![(page_key("u3"), PageWrite::Keep)];
        s.commit(&c).unwrap();
        let p = s.pages("b").unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(
            s.page_body("b", &page_key("u3")).unwrap().as_deref(),
            Some("[]")
        );
        assert_eq!(s.page_body("b", &page_key("u1")).unwrap(), None);
        // Validators alone: the stored body goes.
        let head = CachedPage {
            etag: Some("e3b".into()),
            ..Default::default()
        };
        c.pages = vec![(page_key("u3"), PageWrite::Head(head.clone()))];
        s.commit(&c).unwrap();
        assert_eq!(s.pages("b").unwrap()[&page_key("u3")], head);
        assert_eq!(s.page_body("b", &page_key("u3")).unwrap(), None);
        c.pages = vec![pg("u3", "e3")];
        s.commit(&c).unwrap();
        // A refused commit writes no page either.
        c.expected_seq = 7;
        c.pages = vec![];
        assert!(matches!(s.commit(&c), Err(StoreError::Conflict(_))));
        assert_eq!(s.pages("b").unwrap().len(), 1);
        assert!(s.page_body("b", &page_key("u3")).unwrap().is_some());
        s.reset("b").unwrap();
        assert_eq!(s.page_body("b", &page_key("u3")).unwrap(), None);
        assert!(s.pages("b").unwrap().is_empty());
        assert_eq!(s.pages("bb").unwrap().len(), 1);
    }

    #[test]
    fn a_reset_during_a_poll_refuses_the_poll_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let first = Commit {
            bridge: "b".into(),
            meta: BridgeMeta {
                seq: 1,
                baselined: true,
                ..Default::default()
            },
            puts: vec![("k".into(), [1; 16], b"1".to_vec())],
            ..Default::default()
        };
        s.commit(&first).unwrap();
        let read_before = s.meta("b").unwrap();
        s.reset("b").unwrap();
        let late = Commit {
            bridge: "b".into(),
            expected_seq: 1,
            base: Some(read_before),
            meta: BridgeMeta {
                seq: 1,
                baselined: true,
                ..Default::default()
            },
            puts: vec![("k".into(), [2; 16], b"2".to_vec())],
            ..Default::default()
        };
        assert!(matches!(s.commit(&late), Err(StoreError::Conflict(_))));
        assert!(s.items("b").unwrap().is_empty());
        assert!(!s.meta("b").unwrap().baselined);
    }

    #[test]
    fn queues_keep_commit_order_and_replays_join_the_back() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = Commit {
            bridge: "b".into(),
            meta: BridgeMeta {
                seq: 300,
                ..Default::default()
            },
            outbox: (1..=300).map(|i| ("s".to_string(), entry(i))).collect(),
            ..Default::default()
        };
        s.commit(&c).unwrap();
        let (k, first) = s.outbox_head("b", "s").unwrap().unwrap();
        assert_eq!(first.seq, 1);
        let letter = DeadLetter {
            bridge: "b".into(),
            sink: "s".into(),
            entry: first,
            dead_at_ms: 1,
        };
        s.dead_letter(&k, &letter).unwrap();
        assert_eq!(s.outbox_head("b", "s").unwrap().unwrap().1.seq, 2);
        let (dk, _) = s.dead_letters().unwrap().pop().unwrap();
        assert!(s.replay(&dk).unwrap().is_some());
        assert!(s.dead_letters().unwrap().is_empty());
        let seqs: Vec<u64> = s
            .outbox_all()
            .unwrap()
            .into_iter()
            .map(|(_, _, e)| e.seq)
            .collect();
        assert_eq!(seqs.len(), 300);
        assert_eq!((seqs[0], seqs[298], seqs[299]), (2, 300, 1));
    }

    #[test]
    fn queue_positions_keep_order_under_concurrent_commits_and_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let threads: Vec<_> = (0..32)
            .map(|t| {
                let (s, done) = (s.clone(), done_tx.clone());
                std::thread::spawn(move || {
                    for round in 0..20u64 {
                        let c = Commit {
                            bridge: format!("b{t}"),
                            expected_seq: round * 2,
                            meta: BridgeMeta {
                                seq: round * 2 + 2,
                                ..Default::default()
                            },
                            puts: vec![(format!("k{round}"), [1; 16], b"{}".to_vec())],
                            outbox: vec![
                                ("s".into(), entry(round * 2 + 1)),
                                ("s".into(), entry(round * 2 + 2)),
                            ],
                            ..Default::default()
                        };
                        s.commit(&c).unwrap();
                        if round % 5 == 0 {
                            s.flush_blocking().unwrap();
                        }
                    }
                    done.send(()).unwrap();
                })
            })
            .collect();
        for _ in 0..threads.len() {
            done_rx
                .recv_timeout(std::time::Duration::from_secs(120))
                .expect("concurrent commits did not finish");
        }
        for t in threads {
            t.join().unwrap();
        }
        // Each queue in seq order.
        let seqs: Vec<u64> = s
            .outbox_all()
            .unwrap()
            .into_iter()
            .filter(|(b, _, _)| b == "b7")
            .map(|(_, _, e)| e.seq)
            .collect();
        assert_eq!(seqs, (1..=40).collect::<Vec<_>>());
        // After a restart, new entries go behind the old ones.
        s.flush_blocking().unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let c = Commit {
            bridge: "b7".into(),
            expected_seq: 40,
            meta: BridgeMeta {
                seq: 41,
                ..Default::default()
            },
            outbox: vec![("s".into(), entry(41))],
            ..Default::default()
        };
        s.commit(&c).unwrap();
        let seqs: Vec<u64> = s
            .outbox_all()
            .unwrap()
            .into_iter()
            .filter(|(b, _, _)| b == "b7")
            .map(|(_, _, e)| e.seq)
            .collect();
        assert_eq!(seqs, (1..=41).collect::<Vec<_>>());
    }

    /// Many polls committing and waiting for the disk at once, as 100 bridges do. The work runs
    /// on a runtime of its own thread, so a deadlock fails the test instead of hanging it.
    #[test]
    fn a_hundred_concurrent_flushes_complete() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let store = s.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                for round in 0..5u64 {
                    let mut set = tokio::task::JoinSet::new();
                    for t in 0..100 {
                        let s = store.clone();
                        set.spawn(async move {
                            let c = Commit {
                                bridge: format!("b{t}"),
                                expected_seq: round,
                                meta: BridgeMeta {
                                    seq: round + 1,
                                    ..Default::default()
                                },
                                outbox: vec![("s".into(), entry(round + 1))],
                                ..Default::default()
                            };
                            let s2 = s.clone();
                            tokio::task::spawn_blocking(move || s2.commit(&c))
                                .await
                                .unwrap()
                                .unwrap();
                            s.flush().await.unwrap();
                        });
                    }
                    while let Some(r) = set.join_next().await {
                        r.unwrap();
                    }
                }
            });
            let _ = done_tx.send(());
        });
        done_rx
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("commits and flushes deadlocked");
        assert_eq!(s.outbox_all().unwrap().len(), 500);
    }
}
