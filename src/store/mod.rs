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
//! Item values, page bodies and queued events longer than 4 KiB are stored in chunks (in the
//! tree `parts`) or, from 64 KiB, in files of their own (`pollhook.values/`), never whole in a
//! sled record: sled keeps large records in `blobs/` and never deletes them. See [`values`].
//!
//! Keys: `items`, `state` and `meta` by `bridge \0 key`; `pages` and `page_bodies` by `bridge \0 page_key(url)`; `outbox` and `dead` by
//! `bridge \0 sink \0 position(8 bytes, big-endian)`, the position coming from a counter
//! that goes on after the largest position stored, so a prefix scan walks one queue in detection order and a replayed
//! dead letter joins the back of its queue. Bridge names cannot hold `\0` (validated), so
//! prefixes never collide.
//!
//! Every seq a flush puts on disk is recorded in the high-water mark, apart from sled
//! ([`crate::highwater`]); `open` refuses a store whose seqs are below it (a rollback). Once
//! the mark's files hold a record, the key `highwater` in sled's default tree says so, so
//! that both files gone is refused too ([`Lost`]) instead of being taken for a store written
//! before there was a mark.
//!
//! Rooms: this file holds the store's handles, its errors and per-bridge meta; `open` (sled
//! opened, its lock and damage turned into errors, then checked against the mark), `mark`
//! (the high-water side: rollback, lost mark, accept-rollback), [`commit`](Commit) (a poll's
//! writes, group commit), `items` (item state and values, reset), `pages` (the 304 cache),
//! `head` (the meta a poll reads before it fetches), `outbox` (queue keys, positions, counts), `dead` (dead letters), `migrate` (older formats),
//! [`values`] (large values apart), `compact`, `layout` (the shard's layout record),
//! [`handoff`] (a bridge's whole state, out and in).

use crate::diff::Stored;
use crate::event::EventType;
use crate::extract::Hash;
use crate::highwater::{HighWater, HighWaterError, Lost, Rollback};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use values::Kind;

mod auth;
mod commit;
pub(crate) mod compact;
mod dead;
mod forget;
pub mod handoff;
mod head;
mod items;
mod layout;
mod mark;
mod migrate;
mod open;
mod outbox;
mod pages;
pub mod values;

use commit::Flushes;
pub use commit::{Commit, Put};
pub use dead::DeadLetter;
pub use forget::Forgotten;
pub use head::MetaRead;
use items::state_record;
pub use mark::Accepted;
use mark::note_marked;
use migrate::migrate;
pub use open::CACHE_BYTES;
pub(crate) use open::open_sled;
#[cfg(test)]
pub(crate) use open::quiet_panics;
pub use outbox::{OutboxEntry, Rendered, queue_key};
use outbox::{Queued, position_of, split_queue_key};
pub use pages::{CachedPage, PageWrite, page_digest, page_key};
use pages::{decode_page, encode_page};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {}", sled_message(.0))]
    Sled(#[from] sled::Error),
    #[error("state of bridge `{0}` changed during the poll; the poll will be retried")]
    Conflict(String),
    #[error("state database holds an unreadable record under `{0}`")]
    Corrupt(String),
    /// The database failed a write (a full disk, an I/O error) and is closed until it can be
    /// opened again; see `runtime::Ctx::store`.
    #[error("state database unavailable: {0}")]
    Unavailable(String),
    /// The store is below the high-water mark: see [`crate::highwater`].
    #[error("{0}")]
    Rollback(Rollback),
    /// Both files of the high-water mark are gone: see [`crate::highwater`].
    #[error("{0}")]
    Lost(Lost),
    #[error("state database {0} is in use by another process (a running `pollhook run`?)")]
    Locked(String),
    #[error(
        "state database {path} is damaged and cannot be opened ({reason}); restore it from a \
         backup, or move it aside to start afresh (every bridge then re-baselines): the \
         high-water mark beside it shows what went back, and `pollhook store accept-rollback` \
         moves every seq past it"
    )]
    Damaged { path: String, reason: String },
    #[error(transparent)]
    HighWater(#[from] HighWaterError),
}

/// sled shows an I/O error with `{:?}` (`Os { code: 28, ... }`); an operator wants the
/// system's words: "No space left on device (os error 28)".
fn sled_message(e: &sled::Error) -> String {
    match e {
        sled::Error::Io(io) if io.raw_os_error().is_some() => io.to_string(),
        // sled hands out the error it keeps as a copy holding the original's `{:?}` text.
        sled::Error::Io(io) => {
            let text = io.to_string();
            text.split_once("message: \"")
                .and_then(|(_, m)| m.split_once('"'))
                .map(|(m, _)| m.to_string())
                .unwrap_or(text)
        }
        other => other.to_string(),
    }
}

impl StoreError {
    /// True when the error says the database itself cannot be trusted to take writes (sled
    /// keeps such an error until the database is opened again), not that one record or one
    /// commit was refused.
    pub fn is_failure(&self) -> bool {
        match self {
            StoreError::Sled(e) => matches!(
                e,
                sled::Error::Io(_) | sled::Error::Corruption { .. } | sled::Error::ReportableBug(_)
            ),
            StoreError::Unavailable(_)
            | StoreError::Locked(_)
            | StoreError::Damaged { .. }
            | StoreError::HighWater(_) => true,
            StoreError::Conflict(_)
            | StoreError::Corrupt(_)
            | StoreError::Rollback(_)
            | StoreError::Lost(_) => false,
        }
    }
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
    /// State records with a change waiting to settle (`emit.settle`): while any are, an
    /// unchanged (304) listing still has to be compared, to count them on.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub pending: usize,
    /// An incremental listing's cursor (`source.cursor`): the largest `from` value seen, sent
    /// with the next poll. Stored with the state and events of the poll that found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<serde_json::Value>,
    /// The failed polls in a row, with `emit.failures` (docs/events.md#failure-events): kept, so
    /// that a restart neither forgets a failing bridge nor announces it twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<Failing>,
    /// `emit.quiet`: the last change and whether the quiet since was announced
    /// (docs/events.md#quiet-events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiet: Option<Quiet>,
    /// `emit.shape`: the shape the items have, and a drift announced or held
    /// (docs/testing-bridges.md#shape-drift). Not handed off: a bridge received relearns it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<crate::shape::Learnt>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// When a bridge's data last changed (`emit.quiet`), and whether the quiet spell since was
/// announced (so `bridge.active` will be).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quiet {
    /// Unix ms of the last poll that found a change.
    pub since_ms: i64,
    pub announced: bool,
}

/// A streak of failed polls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Failing {
    /// Unix ms of the first failure.
    pub since_ms: i64,
    pub failures: u32,
    /// `bridge.failing` was emitted (so `bridge.recovered` will be).
    pub announced: bool,
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
    /// The chunks of values longer than 4 KiB, and which value files records point at.
    parts: sled::Tree,
    /// Per bridge, its churn counters (`crate::churn`), one small record by name.
    churn: sled::Tree,
    /// Values of 64 KiB and more, a file each.
    files: Arc<values::Files>,
    /// The next queue position. Not sled's `generate_id`: called next to transactions on
    /// other threads, it deadlocks sled 0.34 (found by the delivery benchmark).
    next_position: Arc<AtomicU64>,
    /// Group commit: commits done, commits known to be on disk, and one flush at a time.
    flushes: Arc<Flushes>,
    /// Entries per bridge in the outbox and the dead letters, counted at open and kept up to
    /// date by every write that adds or removes one, so status and metrics never scan.
    queued: Arc<Mutex<HashMap<String, Queued>>>,
    /// Per bridge, the highest seq handed out, kept apart from sled (docs/operations.md#rollback).
    highwater: Arc<HighWater>,
    /// sled holds `mark::MARKED`: the mark's files are kept (as far as this process knows).
    marked: Arc<AtomicBool>,
    /// Per bridge, how many times this process forgot its state ([`Store::forgotten`]).
    forgotten: Arc<Mutex<HashMap<String, u64>>>,
}

fn prefix(parts: &[&str]) -> Vec<u8> {
    let mut k = Vec::new();
    for p in parts {
        k.extend_from_slice(p.as_bytes());
        k.push(0);
    }
    k
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

fn tx_error(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => e.into(),
    }
}

fn read_error(e: values::ReadError, what: impl FnOnce() -> String) -> StoreError {
    match e {
        values::ReadError::Sled(e) => e.into(),
        values::ReadError::Corrupt => StoreError::Corrupt(what()),
    }
}

/// A record as the store writes it: JSON.
#[expect(
    clippy::expect_used,
    reason = "serde_json fails only on a map whose keys are not strings, or a Serialize impl that fails: the store's records (derived, with string keys) have neither"
)]
fn record_bytes<T: Serialize + ?Sized>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("a store record serialises")
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt(what.to_string()))
}

impl Store {
    /// The queue counts, by bridge.
    #[expect(
        clippy::expect_used,
        reason = "a lock is poisoned only by a panic while it is held, and those who hold this one only count"
    )]
    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Queued>> {
        self.queued.lock().expect("queue counts lock")
    }

    /// Handles to this store's database besides this one: it is closed (and its files
    /// unlocked) only once every clone is dropped.
    pub fn other_handles(&self) -> usize {
        Arc::strong_count(&self.flushes) - 1
    }

    /// Writes a small record and waits for the disk: the way to learn that the database takes
    /// writes again (or still does) when nothing else is writing. It flushes first: after a
    /// write error sled wakes the threads waiting in a flush only when another flush meets
    /// the error, so this also frees them.
    pub fn probe(&self, now: chrono::DateTime<chrono::Utc>) -> Result<(), StoreError> {
        self.db.flush()?;
        self.db
            .insert(b"probe", &now.timestamp_millis().to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Deletes the value files that the writes just made left without a record, once those
    /// writes are on disk: were a file deleted first, a crash would bring back a record
    /// without its file.
    fn collect(&self, garbage: Vec<values::FileName>) -> Result<(), StoreError> {
        if !garbage.is_empty() {
            self.db.flush()?;
            self.files.delete(garbage);
        }
        Ok(())
    }

    /// The value under `key` in `tree` (of `kind`); `what` names it in an error.
    fn value(
        &self,
        tree: &sled::Tree,
        kind: Kind,
        key: &[u8],
        what: impl FnOnce() -> String,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        values::read(tree, &self.parts, &self.files, kind, key).map_err(|e| read_error(e, what))
    }

    /// The value whose own record `rec` a scan of `tree` found under `key`.
    fn value_of(
        &self,
        kind: Kind,
        key: &[u8],
        rec: sled::IVec,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>, StoreError> {
        values::value_of(&self.parts, &self.files, kind, key, rec).map_err(|e| read_error(e, what))
    }

    /// The bytes the store holds: every key and record of every tree, and every value file.
    /// The state directory's size over this is what sled and the file system add. A full
    /// scan, for tests and benchmarks.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let mut n = self.files.bytes().map_err(sled::Error::from)?;
        for name in self.db.tree_names() {
            for kv in self.db.open_tree(name)?.iter() {
                let (k, v) = kv?;
                n += (k.len() + v.len()) as u64;
            }
        }
        Ok(n)
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::outbox::position_of;
    use super::*;

    pub(crate) fn entry(seq: u64) -> OutboxEntry {
        OutboxEntry {
            event_id: format!("evt_{seq}"),
            kind: EventType::Created,
            seq,
            body: "{}".into(),
            attempts: 0,
            next_at_ms: 0,
            last_error: None,
            created_ms: 0,
            sent: None,
        }
    }

    /// Keys and records on disk are derived from names and URLs: a change to any derivation
    /// orphans what is stored (a lost 304 cache, items seen as new, stuck queues), so each is
    /// pinned to its exact bytes here. Changing one needs a migration, not a new expected value.
    #[test]
    fn persisted_derivations_are_pinned() {
        let url = "https://api.example.com/items?page=2&token=s3cret";
        assert_eq!(page_key(url), "d6a67c9d8597cfc86bbbb463c42e97b3");
        assert_eq!(page_digest("[]"), "4f53cda18c2baa0c0354bb5f9a3ecbe5");
        assert_eq!(prefix(&["br", "s1"]), b"br\0s1\0".to_vec());
        assert_eq!(
            queue_key("br", "s1", 258),
            b"br\0s1\0\0\0\0\0\0\0\x01\x02".to_vec()
        );
        assert_eq!(position_of(&queue_key("br", "s1", 258)), 258);
        let mut r = vec![7; 16];
        r.extend_from_slice(&[0, 0, 0, 3]);
        assert_eq!(state_record(&[7; 16], 3).to_vec(), r);
        let head = CachedPage {
            etag: Some("\"e\"".into()),
            digest: Some("d".into()),
            ..Default::default()
        };
        let json = br#"["\"e\"",null,null,"d"]"#;
        let mut rec = (json.len() as u32).to_be_bytes().to_vec();
        rec.extend_from_slice(json);
        assert_eq!(encode_page(&head), rec);
        assert_eq!(decode_page(&rec), Some((head.clone(), rec.len())));

        // The trees' keys as a commit writes them.
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut c = Commit {
            bridge: "br".into(),
            meta: BridgeMeta {
                seq: 1,
                ..Default::default()
            },
            puts: vec![Put::new("k1", [1; 16], b"1".to_vec())],
            pages: vec![(
                page_key(url),
                PageWrite::Full(head, Arc::new("[]".to_string())),
            )],
            ..Default::default()
        };
        c.outbox.push(("s1".into(), entry(1)));
        s.commit(&c).unwrap();
        let keys = |t: &sled::Tree| -> Vec<Vec<u8>> {
            t.iter().keys().map(|k| k.unwrap().to_vec()).collect()
        };
        assert_eq!(keys(&s.items), vec![b"br\0k1".to_vec()]);
        assert_eq!(keys(&s.state), vec![b"br\0k1".to_vec()]);
        assert_eq!(keys(&s.meta), vec![b"br".to_vec()]);
        let pk = [b"br\0".as_slice(), page_key(url).as_bytes()].concat();
        assert_eq!(keys(&s.pages), vec![pk.clone()]);
        assert_eq!(keys(&s.page_bodies), vec![pk]);
        let ob = keys(&s.outbox);
        assert_eq!(ob.len(), 1);
        assert!(ob[0].starts_with(b"br\0s1\0") && ob[0].len() == 14);
    }
}
