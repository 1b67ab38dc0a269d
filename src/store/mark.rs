//! The high-water mark's side of the store (docs/operations.md#rollback, [`crate::highwater`]):
//! every bridge's stored seq against its mark, what a rollback or a lost mark looks like, the
//! key in sled that says the mark's files are kept, and accepting a rollback.

use super::{BridgeMeta, Store, StoreError, json};
use crate::highwater::{self, HighWater, Lost, Rollback};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// The key, in sled's default tree, that says the high-water mark's files hold a record:
/// written once they do, so that their absence is seen as their loss.
pub(super) const MARKED: &[u8] = b"highwater";

impl Store {
    pub fn high_water(&self) -> &HighWater {
        &self.highwater
    }

    /// Every bridge's stored `seq`, by name; a bridge handed to another shard and forgotten
    /// here, by the seq it had then.
    pub fn seqs(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut out = self.handed_seqs()?;
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
    pub(super) fn mark_stored(&self) -> Result<(), StoreError> {
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
    pub(super) fn note_marked(&self) -> Result<(), StoreError> {
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
            batch.insert(b.bridge.as_bytes(), super::record_bytes(&meta));
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
