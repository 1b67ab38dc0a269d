//! Forgetting a bridge whose state was handed to another shard (docs/scaling.md#handoff):
//! every record of it (items, cached pages, meta, outbox, dead letters, the refresh token its
//! login keeps) removed in one transaction, once the shard that took it has acknowledged. The
//! seq it had stays known here (the tree `handed`), so that the high-water mark's rollback
//! check does not take the missing record for a lost one, and a seq handed out here is never
//! handed out again should the bridge come back.

use super::*;
use sled::transaction::{TransactionalTree, UnabortableTransactionError};

/// The tree of bridges given away: name → their seq when they were forgotten.
const HANDED: &str = "handed";

/// Removes, inside a transaction, the records `old` lists (as [`Store::old_keys`] found them)
/// from the trees that hold a bridge's state: items, state, meta, pages, page bodies, outbox,
/// dead letters and auth, in that order, with `parts` the tree of values' chunks. Returns the
/// value files no record points at any more. Forgetting a bridge and importing one over its
/// old state both use it.
pub(super) fn remove_bridge_in_tx(
    [it, st, me, pg, bo, ob, de, au]: [&TransactionalTree; 8],
    parts: &TransactionalTree,
    old: &[Vec<sled::IVec>; handoff::TREES],
) -> Result<Vec<values::FileName>, UnabortableTransactionError> {
    let mut garbage = Vec::new();
    for (tx, kind, i) in [
        (it, Some(Kind::Item), 0),
        (st, None, 1),
        (me, None, 2),
        (pg, None, 3),
        (bo, Some(Kind::PageBody), 4),
        (ob, Some(Kind::Outbox), 5),
        (de, Some(Kind::Dead), 6),
        (au, None, 8),
    ] {
        for k in &old[i] {
            match kind {
                Some(kind) => garbage.extend(values::remove_in_tx(tx, parts, kind, k)?),
                None => {
                    tx.remove(k)?;
                }
            }
        }
    }
    Ok(garbage)
}

/// A bridge forgotten in memory, not yet on disk: [`Store::forgotten_durable`] waits for the
/// disk, then deletes the value files its records pointed at.
#[must_use]
pub struct Forgotten {
    /// Whether the store held anything of the bridge.
    pub found: bool,
    garbage: Vec<values::FileName>,
}

impl Store {
    /// Removes every record of `bridge` in one transaction, and waits for the disk; false
    /// when the store held none. `layout`, when given, is written as the layout record in the
    /// same transaction (the giver drops the bridge from its `given` list there).
    pub fn forget_bridge(&self, bridge: &str, layout: Option<&[u8]>) -> Result<bool, StoreError> {
        let f = self.forget_unflushed(bridge, layout)?;
        self.db.flush()?;
        self.files.delete(f.garbage);
        Ok(f.found)
    }

    /// Waits until the forgetting `f` is on disk (one flush shared with whoever waits for
    /// one at the same time, [`Store::flush`]), then deletes the value files it left without
    /// a record; whether the store held anything of the bridge.
    pub async fn forgotten_durable(&self, f: Forgotten) -> Result<bool, StoreError> {
        self.flush().await?;
        let files = self.files.clone();
        // Deleting is a few unlinks; were it to fail, the files are only left over.
        let _ = tokio::task::spawn_blocking(move || files.delete(f.garbage)).await;
        Ok(f.found)
    }

    /// [`Store::forget_bridge`]'s transaction alone: nothing waits for the disk, and no file
    /// is deleted yet. It counts as a commit, so that [`Store::flush`] makes it durable.
    pub fn forget_unflushed(
        &self,
        bridge: &str,
        layout: Option<&[u8]>,
    ) -> Result<Forgotten, StoreError> {
        if !self.has_state(bridge)? {
            if let Some(l) = layout {
                self.put_layout_record_unflushed(l)?;
            }
            let garbage = Vec::new();
            return Ok(Forgotten {
                found: false,
                garbage,
            });
        }
        let seq = self.meta(bridge)?.seq;
        let old = self.old_keys(bridge)?;
        let auth = self.db.open_tree("auth")?;
        let handed = self.db.open_tree(HANDED)?;
        let default: &sled::Tree = &self.db;
        let trees = (
            &self.items,
            &self.state,
            &self.meta,
            &self.pages,
            &self.page_bodies,
            &self.outbox,
            &self.dead,
            &self.parts,
            &auth,
            &handed,
            &self.churn,
            default,
        );
        let res: Result<_, TransactionError<StoreError>> =
            trees.transaction(|(it, st, me, pg, bo, ob, de, parts, au, ha, ch, db)| {
                let garbage = remove_bridge_in_tx([it, st, me, pg, bo, ob, de, au], parts, &old)?;
                ha.insert(bridge.as_bytes(), &seq.to_be_bytes())?;
                // Its churn counters too: should it come back, counting starts afresh.
                ch.remove(bridge.as_bytes())?;
                if let Some(l) = layout {
                    db.insert(super::layout::LAYOUT, l)?;
                }
                Ok(garbage)
            });
        let garbage = res.map_err(tx_error)?;
        *self.forgets().entry(bridge.to_string()).or_default() += 1;
        self.count(bridge, |q| {
            q.outbox = 0;
            q.dead = 0;
        });
        self.flushes.committed.fetch_add(1, Ordering::SeqCst);
        Ok(Forgotten {
            found: true,
            garbage,
        })
    }

    /// How many times this process forgot `bridge`'s state ([`Store::forget_bridge`]) or
    /// replaced it by an import: what is kept of a bridge in memory beside the store (its
    /// churn counters) is stale once this moved past what it was when that was read.
    pub fn forgotten(&self, bridge: &str) -> u64 {
        self.forgets().get(bridge).copied().unwrap_or_default()
    }

    pub(super) fn forgets(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        // Each step under the lock leaves the map whole: a panic elsewhere does not spoil it.
        self.forgotten.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The seqs of the bridges this store gave away and forgot, by name.
    pub(super) fn handed_seqs(&self) -> Result<HashMap<String, u64>, StoreError> {
        let mut out = HashMap::new();
        for kv in self.db.open_tree(HANDED)?.iter() {
            let (k, v) = kv?;
            let seq = v.as_ref().try_into().map(u64::from_be_bytes).map_err(|_| {
                StoreError::Corrupt(format!("handed/{}", String::from_utf8_lossy(&k)))
            })?;
            out.insert(String::from_utf8_lossy(&k).into_owned(), seq);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forgotten_bridge_leaves_no_record_and_no_rollback() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let mut c = Commit {
            bridge: "gone".into(),
            meta: BridgeMeta {
                seq: 4,
                baselined: true,
                items: 1,
                ..Default::default()
            },
            puts: vec![Put::new("a", [1; 16], br#"{"id":"a"}"#.to_vec())],
            churn: Some(br#"{"polls":1}"#.to_vec()),
            ..Default::default()
        };
        c.outbox.push(("s1".into(), crate::store::tests::entry(4)));
        s.commit(&c).unwrap();
        s.keep_refresh_token("gone", "conf", "latest").unwrap();
        c.bridge = "kept".into();
        s.commit(&c).unwrap();
        s.flush_blocking().unwrap();
        assert_eq!(s.outbox_len("gone"), 1);

        assert!(s.churn_record("gone").unwrap().is_some());
        assert!(s.forget_bridge("gone", Some(b"given none")).unwrap());
        assert_eq!(
            s.layout_record().unwrap().as_deref(),
            Some(&b"given none"[..])
        );
        assert!(!s.has_state("gone").unwrap());
        assert!(s.churn_record("gone").unwrap().is_none());
        assert!(s.churn_record("kept").unwrap().is_some());
        assert_eq!(s.outbox_len("gone"), 0);
        assert!(!s.bridges_held().unwrap().contains("gone"));
        assert!(s.has_state("kept").unwrap());
        // Again: nothing to forget.
        assert!(!s.forget_bridge("gone", None).unwrap());
        assert_eq!(s.find_rollback().unwrap(), None);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        assert!(!s.has_state("gone").unwrap());
        assert_eq!(s.find_rollback().unwrap(), None);
        // Back by a handoff with a lower seq: the seq stays above the one handed out here.
        let state = s.export_bridge("kept").unwrap().unwrap();
        let low = handoff::BridgeState {
            meta: BridgeMeta {
                seq: 2,
                ..state.meta.clone()
            },
            ..state
        };
        assert_eq!(s.import_bridge("gone", &low, false, None).unwrap(), 4);
    }
}
