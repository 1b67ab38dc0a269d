//! What the store keeps for sharding (docs/scaling.md#shards): the layout record the shard
//! wrote last (its bytes are [`crate::shard::layout`]'s to read), and which bridges hold state
//! here, the ones a layout change may move.

use super::*;

/// The key, in sled's default tree, of the layout record.
pub(super) const LAYOUT: &[u8] = b"layout";

impl Store {
    /// The layout record, as written by [`Store::put_layout_record`]; None in a store that has
    /// never had one (new, or written by a version from before layouts).
    pub fn layout_record(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get(LAYOUT)?.map(|v| v.to_vec()))
    }

    /// Writes the layout record and waits for the disk.
    pub fn put_layout_record(&self, record: &[u8]) -> Result<(), StoreError> {
        self.db.insert(LAYOUT, record)?;
        self.db.flush()?;
        Ok(())
    }

    /// Writes the layout record without waiting for the disk. It counts as a commit: the next
    /// [`Store::flush`] (one flush for all who wait for one at the same time) makes it durable.
    pub fn put_layout_record_unflushed(&self, record: &[u8]) -> Result<(), StoreError> {
        self.db.insert(LAYOUT, record)?;
        self.flushes.committed.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Every bridge with state here: a meta record (every commit and reset writes one), or
    /// events waiting or dead.
    pub fn bridges_held(&self) -> Result<std::collections::BTreeSet<String>, StoreError> {
        let mut out = std::collections::BTreeSet::new();
        for k in self.meta.iter().keys() {
            out.insert(String::from_utf8_lossy(&k?).into_owned());
        }
        let queued = self.counts();
        out.extend(
            queued
                .iter()
                .filter(|(_, q)| q.outbox > 0 || q.dead > 0)
                .map(|(b, _)| b.clone()),
        );
        Ok(out)
    }
}
