//! A poll's writes and how they reach the disk: one transaction per commit (state, meta,
//! pages and outbox together), and group commit so that concurrent flushes share one.

use super::*;
use sled::transaction::TransactionalTree;

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
    pub puts: Vec<Put>,
    pub missing: Vec<(String, u32)>,
    /// State records written whole, after the missing counts: changes waiting to settle
    /// (`emit.settle`), counted on or given up.
    pub pending: Vec<(String, crate::diff::Stored)>,
    pub removes: Vec<String>,
    pub outbox: Vec<(String, OutboxEntry)>,
    /// The bridge's cached pages after this poll, by `page_key`: they replace the stored set.
    pub pages: Vec<(String, PageWrite)>,
    /// The bridge's churn counters as a record (`crate::churn::Counters::to_record`, at most
    /// 4 KiB), when this commit stores them.
    pub churn: Option<Vec<u8>>,
}

/// One item's new value, with the hash that later polls compare it by.
#[derive(Debug, Clone, PartialEq)]
pub struct Put {
    pub key: String,
    pub hash: Hash,
    /// The canonical JSON of the item.
    pub value: Vec<u8>,
}

impl Put {
    pub fn new(key: impl Into<String>, hash: Hash, value: Vec<u8>) -> Put {
        Put {
            key: key.into(),
            hash,
            value,
        }
    }
}

impl Commit {
    /// A commit of `bridge` that stands on `meta` as read before the poll (refused if anything
    /// changed it meanwhile) and starts from it: the caller changes what it writes.
    pub fn on(bridge: impl Into<String>, meta: BridgeMeta) -> Commit {
        Commit {
            bridge: bridge.into(),
            expected_seq: meta.seq,
            base: Some(meta.clone()),
            meta,
            ..Default::default()
        }
    }

    /// Emits one event of the bridge's own, built as the one after the meta's `seq`: the `seq`
    /// moves on to it and it is queued for each sink.
    pub fn emit<'a>(
        &mut self,
        sinks: impl IntoIterator<Item = &'a str>,
        event: &crate::event::Event,
        created: chrono::DateTime<chrono::Utc>,
    ) {
        self.meta.seq += 1;
        debug_assert_eq!(event.seq, self.meta.seq, "an event out of its place");
        let sinks: Vec<String> = sinks.into_iter().map(str::to_string).collect();
        self.queue(&sinks, std::slice::from_ref(event), created);
    }

    /// Queues each event for each sink, in order.
    pub fn queue(
        &mut self,
        sinks: &[String],
        events: &[crate::event::Event],
        created: chrono::DateTime<chrono::Utc>,
    ) {
        let created_ms = created.timestamp_millis();
        for e in events {
            let mut body = e.body();
            for (i, sink) in sinks.iter().enumerate() {
                // The last sink takes the body itself: a large event is not held twice.
                let body = match i + 1 == sinks.len() {
                    true => std::mem::take(&mut body),
                    false => body.clone(),
                };
                self.outbox.push((
                    sink.clone(),
                    OutboxEntry {
                        event_id: e.id.clone(),
                        kind: e.kind,
                        seq: e.seq,
                        body,
                        attempts: 0,
                        next_at_ms: 0,
                        last_error: None,
                        created_ms,
                        sent: None,
                    },
                ));
            }
        }
    }
}

#[derive(Default)]
pub(super) struct Flushes {
    pub(super) committed: AtomicU64,
    pub(super) durable: AtomicU64,
    pub(super) lock: tokio::sync::Mutex<()>,
}

/// Flushes sled, then records in the high-water mark `seqs`, noted before the flush began and
/// so on disk once it is done. If either fails, the notes are given back for the next flush.
/// The first record to reach the mark's files is followed by the key in sled that says they
/// are kept, and a second flush.
pub(super) fn flush_and_mark(
    db: &sled::Db,
    (hw, marked): (&HighWater, &AtomicBool),
    seqs: HashMap<String, u64>,
) -> Result<(), StoreError> {
    let done = match db.flush() {
        Ok(_) => hw.record(&seqs).map_err(StoreError::from),
        Err(e) => Err(e.into()),
    };
    if done.is_err() {
        hw.renote(seqs);
        return done;
    }
    if super::note_marked(db, hw, marked)? {
        db.flush()?;
    }
    Ok(())
}

impl Store {
    /// Waits until the bridge's queued events are on disk: at once when its commits were
    /// flushed already (the usual case), else through a flush.
    pub async fn flush_for(&self, bridge: &str) -> Result<(), StoreError> {
        let pending = {
            let all = self.counts();
            let durable = self.flushes.durable.load(Ordering::SeqCst);
            all.get(bridge)
                .is_some_and(|q| q.inflight > 0 || q.commit > durable)
        };
        if pending { self.flush().await } else { Ok(()) }
    }

    /// Waits until every commit made so far is on disk. Concurrent callers share one flush
    /// (group commit), and the flush runs on a blocking thread: sled 0.34's `flush_async`
    /// queues each call on sled's own small I/O pool, and many at once starve the pool of the
    /// thread that would write the log, a deadlock the delivery benchmark ran into.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let wanted = self.flushes.committed.load(Ordering::SeqCst);
        // Already on disk (what a deliverer usually finds): no need to queue for the lock.
        if self.flushes.durable.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        let _one = self.flushes.lock.lock().await;
        if self.flushes.durable.load(Ordering::SeqCst) >= wanted {
            return Ok(());
        }
        let target = self.flushes.committed.load(Ordering::SeqCst);
        let db = self.db.clone();
        let (hw, marked) = (self.highwater.clone(), self.marked.clone());
        // The notes are taken after `target` was read: every commit it counts is among them.
        tokio::task::spawn_blocking(move || flush_and_mark(&db, (&hw, &marked), hw.take_noted()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("the flush did not end: {e}")))??;
        self.flushes.durable.fetch_max(target, Ordering::SeqCst);
        Ok(())
    }

    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        // The notes stay for `flush` to take too: a flush that returns must have recorded
        // every commit it counts, even one whose notes a concurrent `flush_blocking` read.
        let hw = (&*self.highwater, &*self.marked);
        flush_and_mark(&self.db, hw, self.highwater.noted())
    }

    /// Applies a poll atomically: item state, meta (with the new `seq`) and outbox entries.
    pub fn commit(&self, c: &Commit) -> Result<(), StoreError> {
        let ip = prefix(&[&c.bridge]);
        let meta_bytes = super::record_bytes(&c.meta);
        let (fresh, mut garbage) = self.put_new_values(c, &ip)?;
        let prepared = self.prepare_puts(c, &fresh)?;
        let entries = event_records(c);
        let mut outbox = Vec::with_capacity(c.outbox.len());
        for ((sink, _), e) in c.outbox.iter().zip(&entries) {
            let key = queue_key(&c.bridge, sink, self.position());
            outbox.push((key, self.files.prepare(e)?));
        }
        let (gone, written) = self.page_writes(c, &ip)?;
        // A deliverer that reads the outbox from now on may find these events: until the
        // commit is counted, `flush_for` treats them as not on disk.
        let queues = !outbox.is_empty();
        if queues {
            self.count(&c.bridge, |q| q.inflight += 1);
        }
        let res: Result<Vec<values::FileName>, TransactionError<StoreError>> = (
            &self.items,
            &self.state,
            &self.meta,
            &self.outbox,
            &self.pages,
            &self.page_bodies,
            &self.parts,
            &self.churn,
        )
            .transaction(|(items, state, meta, ob, pg, bodies, parts, churn)| {
                check_base(meta, c)?;
                let mut garbage = write_items(items, state, parts, c, &ip, &prepared)?;
                meta.insert(c.bridge.as_bytes(), meta_bytes.as_slice())?;
                if let Some(record) = &c.churn {
                    churn.insert(c.bridge.as_bytes(), record.as_slice())?;
                }
                for (k, v) in &outbox {
                    garbage.extend(values::put_in_tx(ob, parts, Kind::Outbox, k, v)?);
                }
                garbage.extend(write_pages(pg, bodies, parts, &gone, &written)?);
                Ok(garbage)
            });
        let outcome = match res {
            Ok(replaced) => {
                garbage.extend(replaced);
                self.committed(c, queues.then_some(outbox.len()));
                Ok(())
            }
            Err(e) => {
                if queues {
                    self.count(&c.bridge, |q| q.inflight -= 1);
                }
                if let TransactionError::Abort(_) = e {
                    // Refused: the files made ready for it are no value's.
                    let new = prepared.iter().flatten();
                    let new = new.chain(outbox.iter().map(|(_, v)| v));
                    let new = new.chain(written.iter().filter_map(|w| w.2.as_ref()));
                    self.files.delete(new.filter_map(values::Prepared::file));
                }
                Err(tx_error(e))
            }
        };
        // After a write error, what reached the disk is unknown: the next open's sweep
        // deletes what no record points at.
        if !matches!(outcome, Err(StoreError::Sled(_))) {
            self.collect(garbage)?;
        }
        outcome
    }

    /// The bridge's churn counters as [`Commit::churn`] last stored them.
    pub fn churn_record(&self, bridge: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.churn.get(bridge.as_bytes())?)
    }

    /// Values are made ready (the large ones written to their files) before the transaction,
    /// which may run more than once; the files they replace are deleted once it is on disk
    /// (see `values`). None for the puts `put_new_values` wrote already (`fresh`).
    fn prepare_puts<'c>(
        &self,
        c: &'c Commit,
        fresh: &[bool],
    ) -> Result<Vec<Option<values::Prepared<'c>>>, StoreError> {
        let mut prepared = Vec::with_capacity(c.puts.len());
        for (Put { value, .. }, fresh) in c.puts.iter().zip(fresh) {
            prepared.push(match fresh {
                true => None,
                false => Some(self.files.prepare(value)?),
            });
        }
        Ok(prepared)
    }

    /// The values of items that have no state yet are written first, in batches: no state
    /// points at them until the commit's transaction, so a crash or a refused commit leaves
    /// only values nothing reads (and the next write of that key replaces). This keeps a
    /// first poll of a large listing from holding every value in one transaction. Values
    /// of known items are replaced inside it: the previous one must stay until then.
    /// Returns which puts were written so, and the files they replaced.
    fn put_new_values(
        &self,
        c: &Commit,
        ip: &[u8],
    ) -> Result<(Vec<bool>, Vec<values::FileName>), StoreError> {
        let mut fresh = vec![false; c.puts.len()];
        let mut garbage = Vec::new();
        let mut batch = Vec::new();
        let mut in_batch = 0;
        for (i, Put { key: k, value, .. }) in c.puts.iter().enumerate() {
            let key = [ip, k.as_bytes()].concat();
            if self.state.contains_key(&key)? {
                continue;
            }
            fresh[i] = true;
            in_batch += value.len().div_ceil(values::CHUNK);
            batch.push((key, value.as_slice()));
            if in_batch >= 10_000 {
                garbage.extend(self.put_ahead(&batch)?);
                batch.clear();
                in_batch = 0;
            }
        }
        if !batch.is_empty() {
            garbage.extend(self.put_ahead(&batch)?);
        }
        Ok((fresh, garbage))
    }

    /// The page records that go (no longer in the listing: the page set is replaced) and
    /// the ones written. Polls of one bridge never overlap, so the keys read here are still
    /// the stored ones at commit time.
    fn page_writes<'a>(
        &self,
        c: &'a Commit,
        ip: &[u8],
    ) -> Result<(Vec<Vec<u8>>, Vec<Written<'a>>), StoreError> {
        let mut gone: Vec<Vec<u8>> = Vec::new();
        for k in self.pages.scan_prefix(ip).keys() {
            let k = k?;
            let kept = c
                .pages
                .iter()
                .any(|(pk, ..)| k.len() == ip.len() + pk.len() && k.ends_with(pk.as_bytes()));
            if !kept {
                gone.push(k.to_vec());
            }
        }
        let mut written: Vec<Written> = Vec::with_capacity(c.pages.len());
        for (pk, w) in &c.pages {
            let body = match w {
                PageWrite::Full(_, body) => Some(self.files.prepare(body.as_bytes())?),
                _ => None,
            };
            if let Some(head) = w.head() {
                written.push(([ip, pk.as_bytes()].concat(), encode_page(head), body));
            }
        }
        Ok((gone, written))
    }

    /// Counts a commit that went through; `queued` is how many entries it added to the
    /// outbox, when it added any.
    fn committed(&self, c: &Commit, queued: Option<usize>) {
        // Noted before it is counted, so a flush that counts it also records its seq.
        self.highwater.note(&c.bridge, c.meta.seq);
        let number = self.flushes.committed.fetch_add(1, Ordering::SeqCst) + 1;
        if let Some(n) = queued {
            self.count(&c.bridge, |q| {
                q.inflight -= 1;
                q.outbox += n;
                q.commit = q.commit.max(number);
            });
        }
    }
}

/// The records of the commit's events, each held until the commit is done with its room
/// fitted (a large event's spare capacity given back).
fn event_records(c: &Commit) -> Vec<Vec<u8>> {
    c.outbox
        .iter()
        .map(|(_, e)| {
            let mut v = super::record_bytes(e);
            v.shrink_to_fit();
            v
        })
        .collect()
}

/// A page record to write: key, validators record, and the body when it is stored.
type Written<'a> = (Vec<u8>, Vec<u8>, Option<values::Prepared<'a>>);

type TxResult<T> = Result<T, ConflictableTransactionError<StoreError>>;

/// Refuses the commit when the bridge's meta moved since the poll read it (a reset,
/// another poll).
fn check_base(meta: &TransactionalTree, c: &Commit) -> TxResult<()> {
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
    Ok(())
}

/// The item writes of a commit inside its transaction: new state, values of known items,
/// missing counts, removals. Returns the value files replaced.
fn write_items(
    items: &TransactionalTree,
    state: &TransactionalTree,
    parts: &TransactionalTree,
    c: &Commit,
    ip: &[u8],
    prepared: &[Option<values::Prepared>],
) -> TxResult<Vec<values::FileName>> {
    let item_key = |k: &str| [ip, k.as_bytes()].concat();
    let mut garbage = Vec::new();
    for (Put { key: k, hash, .. }, value) in c.puts.iter().zip(prepared) {
        let key = item_key(k);
        state.insert(key.as_slice(), &state_record(hash, 0))?;
        if let Some(value) = value {
            garbage.extend(values::put_in_tx(items, parts, Kind::Item, &key, value)?);
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
    for (k, s) in &c.pending {
        state.insert(item_key(k), super::items::full_record(s))?;
    }
    for k in &c.removes {
        let key = item_key(k);
        state.remove(key.as_slice())?;
        garbage.extend(values::remove_in_tx(items, parts, Kind::Item, &key)?);
    }
    Ok(garbage)
}

/// The page writes of a commit inside its transaction: records that go, records (and
/// bodies) written. Returns the value files replaced.
fn write_pages(
    pg: &TransactionalTree,
    bodies: &TransactionalTree,
    parts: &TransactionalTree,
    gone: &[Vec<u8>],
    written: &[Written],
) -> TxResult<Vec<values::FileName>> {
    let mut garbage = Vec::new();
    for k in gone {
        pg.remove(k.as_slice())?;
        garbage.extend(values::remove_in_tx(bodies, parts, Kind::PageBody, k)?);
    }
    for (k, head, body) in written {
        pg.insert(k.as_slice(), head.as_slice())?;
        garbage.extend(match body {
            Some(body) => values::put_in_tx(bodies, parts, Kind::PageBody, k, body)?,
            None => values::remove_in_tx(bodies, parts, Kind::PageBody, k)?,
        });
    }
    Ok(garbage)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::entry;

    #[test]
    fn commit_is_atomic_and_checks_seq() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = Commit {
            bridge: "b".into(),
            expected_seq: 0,
            meta: BridgeMeta {
                cursor: None,
                failing: None,
                seq: 2,
                fingerprint: Some("f".into()),
                baselined: true,
                absent: 0,
                items: 1,
                ..Default::default()
            },
            puts: vec![Put::new("k1", [1; 16], b"{\"a\":1}".to_vec())],
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
            puts: vec![Put::new("k9", [9; 16], b"9".to_vec())],
            ..Default::default()
        };
        assert!(matches!(s.commit(&fresh), Err(StoreError::Conflict(_))));
        assert!(!s.load_state("b").unwrap().contains_key("k9"));
        assert!(s.items("b").unwrap().iter().all(|(k, ..)| k != "k9"));
        assert_eq!(s.load_state("b").unwrap()["k1"], Stored::new([1; 16], 0));
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
            puts: vec![Put::new("k", [1; 16], b"1".to_vec())],
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
            puts: vec![Put::new("k", [2; 16], b"2".to_vec())],
            ..Default::default()
        };
        assert!(matches!(s.commit(&late), Err(StoreError::Conflict(_))));
        assert!(s.items("b").unwrap().is_empty());
        assert!(!s.meta("b").unwrap().baselined);
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
