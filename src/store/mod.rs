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
//! Rooms: this file opens the store and holds its errors, per-bridge meta and the high-water
//! side; [`commit`](Commit) (a poll's writes, group commit), `items` (item state and values,
//! reset), `pages` (the 304 cache), `outbox` (queue keys, positions, counts), `dead` (dead
//! letters), `migrate` (older formats), [`values`] (large values apart), `compact`, `layout`
//! (the shard's layout record), [`handoff`] (a bridge's whole state, out and in).

use crate::diff::Stored;
use crate::event::EventType;
use crate::extract::Hash;
use crate::highwater::{self, HighWater, HighWaterError, Lost, Rollback};
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use values::Kind;

mod auth;
mod commit;
pub(crate) mod compact;
mod dead;
pub mod handoff;
mod items;
mod layout;
mod migrate;
mod outbox;
mod pages;
pub mod values;

use commit::Flushes;
pub use commit::{Commit, Put};
pub use dead::DeadLetter;
use items::state_record;
use migrate::migrate;
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
    /// An incremental listing's cursor (`source.cursor`): the largest `from` value seen, sent
    /// with the next poll. Stored with the state and events of the poll that found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<serde_json::Value>,
    /// The failed polls in a row, with `emit.failures` (docs/events.md#failure-events): kept, so
    /// that a restart neither forgets a failing bridge nor announces it twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing: Option<Failing>,
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
    /// sled holds [`MARKED`]: the mark's files are kept (as far as this process knows).
    marked: Arc<AtomicBool>,
}

/// The key, in sled's default tree, that says the high-water mark's files hold a record:
/// written once they do, so that their absence is seen as their loss.
const MARKED: &[u8] = b"highwater";

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

/// sled's page cache. Its default (1 GiB) lets the store's memory grow with what it holds, up
/// to a gigabyte: a first poll of a million items kept most of them cached (the big-document
/// benchmark: 1M items peaked at 480 MiB with the default, 220 MiB with this). A poll reads
/// what it compares in one pass, so a small cache costs little.
pub const CACHE_BYTES: u64 = 16 << 20;

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

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|_| StoreError::Corrupt(what.to_string()))
}

impl Store {
    /// Opens the store and checks it against the high-water mark: a store below it is
    /// refused with [`StoreError::Rollback`], one whose mark is lost with [`StoreError::Lost`].
    /// Damage to one of the mark's files is logged, and the file rewritten from the other.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let store = Store::open_unchecked(dir)?;
        for note in store.mark_notes() {
            if note.warning {
                tracing::warn!("high-water mark: {}", note.text);
            }
        }
        if let Some(lost) = store.find_lost_mark() {
            return Err(StoreError::Lost(lost));
        }
        if let Some(r) = store.find_rollback()? {
            return Err(StoreError::Rollback(r));
        }
        store.mark_stored()?;
        Ok(store)
    }

    /// Opens the store without the rollback check (`pollhook store check|accept-rollback`).
    /// One written by an earlier version that left large records in sled's `blobs/` is first
    /// rewritten without them, once (see `compact`).
    pub fn open_unchecked(dir: &Path) -> Result<Store, StoreError> {
        compact::recover(dir)?;
        let store = Self::open_as_is(dir)?;
        if compact::format(&store.db)? >= compact::VALUES_APART {
            return Ok(store);
        }
        let blobs = compact::blobs(dir);
        if blobs == 0 {
            let format = compact::VALUES_APART.to_be_bytes();
            store.db.insert(b"format", &format)?;
            return Ok(store);
        }
        drop(store);
        tracing::info!(
            blobs,
            "store: rewriting the store without the blobs earlier versions left"
        );
        match compact::run(dir) {
            Ok(bytes) => tracing::info!(blob_bytes = bytes, "store: rewritten, blobs/ deleted"),
            Err(e) => {
                tracing::warn!("store: could not rewrite the store ({e}); going on as it is");
                compact::recover(dir)?;
            }
        }
        Self::open_as_is(dir)
    }

    fn open_as_is(dir: &Path) -> Result<Store, StoreError> {
        let db = open_sled(&dir.join("pollhook.sled"))?;
        let outbox = db.open_tree("outbox")?;
        let dead = db.open_tree("dead")?;
        // Positions only order entries that exist, so going on after the largest one is enough.
        let mut last = 0;
        let mut queued: HashMap<String, Queued> = HashMap::new();
        for (tree, is_dead) in [(&outbox, false), (&dead, true)] {
            for k in tree.iter().keys() {
                let k = k?;
                last = last.max(position_of(&k));
                let q = queued.entry(split_queue_key(&k).0).or_default();
                if is_dead {
                    q.dead += 1;
                } else {
                    q.outbox += 1;
                }
            }
        }
        let items = db.open_tree("items")?;
        let state = db.open_tree("state")?;
        let parts = db.open_tree("parts")?;
        let files = values::Files::open(dir.join("pollhook.values")).map_err(sled::Error::from)?;
        migrate(&db, &items, &state, (&parts, &files))?;
        let swept = files.sweep(&parts)?;
        if swept > 0 {
            tracing::info!(
                files = swept,
                "store: value files that no record points at deleted"
            );
        }
        let highwater = HighWater::open(dir)?;
        let marked = db.contains_key(MARKED)?;
        Ok(Store {
            items,
            state,
            meta: db.open_tree("meta")?,
            outbox,
            dead,
            pages: db.open_tree("pages")?,
            page_bodies: db.open_tree("page_bodies")?,
            parts,
            files: Arc::new(files),
            next_position: Arc::new(AtomicU64::new(last + 1)),
            flushes: Default::default(),
            queued: Arc::new(Mutex::new(queued)),
            highwater: Arc::new(highwater),
            marked: Arc::new(AtomicBool::new(marked)),
            db,
        })
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

/// The high-water mark's side of the store (docs/operations.md#rollback, [`crate::highwater`]).
impl Store {
    pub fn high_water(&self) -> &HighWater {
        &self.highwater
    }

    /// Every bridge's stored `seq`, by name.
    pub fn seqs(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut out = HashMap::new();
        for kv in self.meta.iter() {
            let (k, v) = kv?;
            let bridge = String::from_utf8_lossy(&k).into_owned();
            let m: BridgeMeta = json(&v, &bridge)?;
            out.insert(bridge, m.seq);
        }
        Ok(out)
    }

    /// What was wrong with the mark's files when the store was opened.
    pub fn mark_notes(&self) -> Vec<highwater::Note> {
        self.highwater.notes(self.marked.load(Ordering::SeqCst))
    }

    /// The mark is lost: neither file can be read, though sled says they were kept or one of
    /// them is there unreadable (a file is only ever created whole). A directory with neither
    /// file nor the key is new, or was written before there was a mark.
    pub fn find_lost_mark(&self) -> Option<Lost> {
        let hw = &self.highwater;
        let kept_once = self.marked.load(Ordering::SeqCst) || hw.found().iter().any(|f| f.existed);
        (!hw.kept() && kept_once).then(|| Lost {
            data: self.data_dir(),
            files: hw.lost_files(),
        })
    }

    fn data_dir(&self) -> std::path::PathBuf {
        let path = self.highwater.path();
        path.parent().unwrap_or(Path::new(".")).to_path_buf()
    }

    /// The bridges whose stored seq is below the highest ever handed out, if any.
    pub fn find_rollback(&self) -> Result<Option<Rollback>, StoreError> {
        let stored = self.seqs()?;
        let marks = self.highwater.marks();
        let behind = highwater::behind(&marks, &stored);
        if behind.is_empty() {
            return Ok(None);
        }
        let bridges = stored
            .keys()
            .chain(marks.keys())
            .collect::<std::collections::HashSet<_>>()
            .len();
        Ok(Some(Rollback {
            data: self.data_dir(),
            bridges,
            behind,
        }))
    }

    /// Rewrites a damaged file of the mark from the other, and raises the mark to the seqs
    /// stored now: read at open, they are on disk. This starts the mark of a store written
    /// before there was one.
    fn mark_stored(&self) -> Result<(), StoreError> {
        let stored = self.seqs()?;
        let hw = &self.highwater;
        if !hw.found().iter().any(|f| f.existed) && stored.values().any(|s| *s > 0) {
            tracing::warn!(
                path = %hw.path().display(), bridges = stored.len(),
                "no high-water mark yet: starting it from the store (expected once, on the \
                 first start of a version that keeps one)"
            );
        }
        // A full disk must not keep the store from opening: the mark stays lower meanwhile
        // (a rollback to between the two would go unseen), and the next flush raises it.
        if let Err(e) = hw.repair() {
            tracing::warn!("{e}: rewritten at the next flush that moves a seq");
        }
        if let Err(e) = hw.record(&stored) {
            tracing::warn!("{e}: raised at the next flush");
            hw.renote(stored);
        }
        self.note_marked()
    }

    /// Writes [`MARKED`] into sled once the mark's files hold a record, and waits for the
    /// disk.
    fn note_marked(&self) -> Result<(), StoreError> {
        if note_marked(&self.db, &self.highwater, &self.marked)? {
            self.db.flush()?;
        }
        Ok(())
    }

    /// Moves every bridge that is below its mark up to it, so that its next event gets a seq
    /// past the highest handed out (and, since ids derive from the seq, a fresh id). The rest
    /// of its meta stays: its item state is the older one the rollback left, and its next
    /// poll sends the differences as new events (a bridge whose record was lost re-baselines).
    /// A lost mark is started again from the seqs stored. Only while no daemon runs: the
    /// store's lock sees to that.
    pub fn accept_rollback(&self) -> Result<Accepted, StoreError> {
        if self.find_lost_mark().is_some() {
            let stored = self.seqs()?;
            self.highwater.start_again(&stored)?;
            self.note_marked()?;
            let mut seqs: Vec<(String, u64)> = stored.into_iter().collect();
            seqs.sort();
            return Ok(Accepted::Restarted(seqs));
        }
        self.highwater.repair()?;
        let behind = highwater::behind(&self.highwater.marks(), &self.seqs()?);
        let mut batch = sled::Batch::default();
        for b in &behind {
            let meta = BridgeMeta {
                seq: b.handed_out,
                ..self.meta(&b.bridge)?
            };
            batch.insert(
                b.bridge.as_bytes(),
                serde_json::to_vec(&meta).expect("meta serialises"),
            );
        }
        self.meta.apply_batch(batch)?;
        self.note_marked()?;
        Ok(Accepted::Moved(behind))
    }
}

/// What `accept_rollback` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Accepted {
    /// These bridges were below their mark and moved up to it (none: nothing to accept).
    Moved(Vec<highwater::Behind>),
    /// The mark was lost, and started again from these seqs, by bridge.
    Restarted(Vec<(String, u64)>),
}

/// Writes [`MARKED`] into sled (not flushed) once the mark's files hold a record: only then,
/// since the key without the files is what a lost mark looks like. True when it wrote it.
pub(super) fn note_marked(
    db: &sled::Db,
    hw: &HighWater,
    marked: &AtomicBool,
) -> Result<bool, StoreError> {
    if marked.load(Ordering::SeqCst) || !hw.kept() {
        return Ok(false);
    }
    db.insert(MARKED, &[2])?;
    marked.store(true, Ordering::SeqCst);
    Ok(true)
}

/// Opens sled at `path`. sled 0.34 meets a damaged log in one of three ways: it opens what
/// came before the damage (a rollback, which the high-water mark catches), it fails with
/// `Corruption`, or it panics (a log cut at some offsets indexes out of bounds in
/// `segment.rs`). The last two become [`StoreError::Damaged`], naming the directory, and a
/// panic prints no trace. The lock held by a running daemon becomes [`StoreError::Locked`],
/// after a short wait: a store of this process that was just dropped (a test's restart, a
/// re-open after a write error) lets go of it only when sled's threads have ended.
pub(crate) fn open_sled(path: &Path) -> Result<sled::Db, StoreError> {
    let damaged = |reason: String| StoreError::Damaged {
        path: path.display().to_string(),
        reason,
    };
    let locked_until = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let opened = loop {
        match quiet_panics(|| {
            sled::Config::new()
                .path(path)
                .cache_capacity(CACHE_BYTES)
                .open()
        }) {
            Ok(Err(sled::Error::Io(e))) if e.to_string().starts_with("could not acquire lock") => {
                if std::time::Instant::now() >= locked_until {
                    return Err(StoreError::Locked(path.display().to_string()));
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => break r,
        }
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(e @ sled::Error::Io(_))) => Err(e.into()),
        Ok(Err(sled::Error::Corruption { at, .. })) => Err(damaged(match at {
            Some(at) => format!("sled found corrupt data at {at:?}"),
            None => "sled found corrupt data".to_string(),
        })),
        Ok(Err(e)) => Err(damaged(format!("sled: {e}"))),
        Err(panic) => Err(damaged(format!("sled panicked reading it: {panic}"))),
    }
}

thread_local! {
    /// Set while this thread runs `quiet_panics`: its panic message goes here, not to stderr.
    static QUIET: std::cell::RefCell<Option<Option<String>>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f`, turning a panic into its message (where it happened, within the crate that
/// panicked) without the panic hook's report. Other threads' panics are reported as before.
pub(crate) fn quiet_panics<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = QUIET.with(|q| {
                let mut q = q.borrow_mut();
                let Some(slot) = q.as_mut() else {
                    return false;
                };
                let payload = info.payload();
                let msg = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a panic".to_string());
                let at = info.location().map(|l| {
                    // From the crate's directory on: `sled-0.34.7/src/...`, not the home path.
                    let file = l.file();
                    let from = file.rfind("/sled-").map_or(0, |i| i + 1);
                    format!(" ({}:{})", &file[from..], l.line())
                });
                *slot = Some(format!("{msg}{}", at.unwrap_or_default()));
                true
            });
            if !quiet {
                previous(info);
            }
        }));
    });
    QUIET.with(|q| *q.borrow_mut() = Some(None));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let msg = QUIET.with(|q| q.borrow_mut().take()).flatten();
    r.map_err(|_| msg.unwrap_or_else(|| "a panic".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn entry(seq: u64) -> OutboxEntry {
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
