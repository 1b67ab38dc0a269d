//! Opening the store: sled, with its lock held by another process and a damaged log turned
//! into errors that say so ([`StoreError::Locked`], [`StoreError::Damaged`]), older formats
//! brought up to date, the outbox counted, and the store checked against the high-water mark.

use super::mark::MARKED;
use super::outbox::{Queued, position_of, split_queue_key};
use super::{Store, StoreError, compact, migrate, values};
use crate::highwater::HighWater;
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};

/// sled's page cache. Its default (1 GiB) lets the store's memory grow with what it holds, up
/// to a gigabyte: a first poll of a million items kept most of them cached (the big-document
/// benchmark: 1M items peaked at 480 MiB with the default). A poll reads what it compares in
/// one pass, so a small cache costs little: against 16 MiB, 4 MiB cost no CPU that could be
/// seen at 1,000 polls a second and lowered every big-document peak (docs/scaling.md#memory).
pub const CACHE_BYTES: u64 = 4 << 20;

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
            churn: db.open_tree("churn")?,
            files: Arc::new(files),
            next_position: Arc::new(AtomicU64::new(last + 1)),
            flushes: Default::default(),
            queued: Arc::new(Mutex::new(queued)),
            highwater: Arc::new(highwater),
            marked: Arc::new(AtomicBool::new(marked)),
            forgotten: Default::default(),
            db,
        })
    }
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
