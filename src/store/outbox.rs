//! The outbox: one queue per bridge and sink, in detection order, and the counts of what
//! waits (kept up to date by every write, so status and metrics never scan).

use super::*;

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
    /// What the first attempt of a rendering sink (a preset or a template) sent, kept when it
    /// failed: every retry sends these bytes again, whatever a reload did to the template
    /// meanwhile (docs/events.md#same-bytes-same-id: a duplicate carries the same id and the same
    /// bytes). None for an event sink, which sends `body` itself, and before the first failed
    /// attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Rendered>,
}

/// What an attempt sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rendered {
    pub content_type: String,
    /// ntfy's `Title` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub body: String,
}

/// How many entries one bridge has waiting and dead.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(super) struct Queued {
    pub(super) outbox: usize,
    pub(super) dead: usize,
    /// Commits of this bridge with events under way, and the number (`Flushes::committed`)
    /// of its last one: its outbox is on disk once `Flushes::durable` reaches that number
    /// and none is under way, which spares a deliverer a flush of everyone's commits.
    pub(super) inflight: u32,
    pub(super) commit: u64,
}

pub fn queue_key(bridge: &str, sink: &str, position: u64) -> Vec<u8> {
    let mut k = prefix(&[bridge, sink]);
    k.extend_from_slice(&position.to_be_bytes());
    k
}

/// The position part of a queue key (its last 8 bytes).
pub(super) fn position_of(key: &[u8]) -> u64 {
    key.len()
        .checked_sub(8)
        .and_then(|i| key[i..].try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

pub(super) fn split_queue_key(k: &[u8]) -> (String, String) {
    let mut parts = k.splitn(3, |b| *b == 0);
    let bridge = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let sink = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    (bridge, sink)
}

impl Store {
    pub(super) fn count(&self, bridge: &str, f: impl FnOnce(&mut Queued)) {
        let mut all = self.counts();
        let q = all.entry(bridge.to_string()).or_default();
        f(q);
        if q.outbox == 0 && q.dead == 0 && q.inflight == 0 {
            all.remove(bridge);
        }
    }

    pub(super) fn position(&self) -> u64 {
        self.next_position.fetch_add(1, Ordering::Relaxed)
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
                let v = self.value_of(Kind::Outbox, &k, v, || bridge.to_string())?;
                Ok(Some((k.to_vec(), json(&v, bridge)?)))
            }
            None => Ok(None),
        }
    }

    /// Up to `n` first entries of one bridge+sink queue, in order.
    pub fn outbox_first(
        &self,
        bridge: &str,
        sink: &str,
        n: usize,
    ) -> Result<Vec<(Vec<u8>, OutboxEntry)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.outbox.scan_prefix(prefix(&[bridge, sink])).take(n) {
            let (k, v) = kv?;
            let v = self.value_of(Kind::Outbox, &k, v, || bridge.to_string())?;
            out.push((k.to_vec(), json(&v, bridge)?));
        }
        Ok(out)
    }

    /// A digest's composition, fixed: the `members` (the head of one queue, in order) leave
    /// and `batch` takes the first one's place, in one transaction, so a retry or a restart
    /// sends the same digest. The entry's format is the one of every entry (old stores open
    /// unchanged); what marks it a digest is its `bat_` id.
    pub fn form_batch(
        &self,
        bridge: &str,
        members: &[Vec<u8>],
        batch: &OutboxEntry,
    ) -> Result<(), StoreError> {
        let Some(first) = members.first() else {
            return Ok(());
        };
        let v = super::record_bytes(batch);
        let v = self.files.prepare(&v)?;
        type Formed = (Vec<values::FileName>, usize);
        let res: Result<Formed, TransactionError<StoreError>> = (&self.outbox, &self.parts)
            .transaction(|(ob, parts)| {
                let mut garbage = Vec::new();
                let mut gone = 0;
                for k in members {
                    if ob.get(k)?.is_some() {
                        gone += 1;
                    }
                    garbage.extend(values::remove_in_tx(ob, parts, Kind::Outbox, k)?);
                }
                garbage.extend(values::put_in_tx(ob, parts, Kind::Outbox, first, &v)?);
                Ok((garbage, gone))
            });
        let (garbage, gone) = res.map_err(tx_error)?;
        self.count(bridge, |q| {
            q.outbox = (q.outbox + 1).saturating_sub(gone);
        });
        self.collect(garbage)
    }

    /// Entries waiting for one bridge (all sinks); from a counter, never a scan.
    pub fn outbox_len(&self, bridge: &str) -> usize {
        let all = self.counts();
        all.get(bridge).map_or(0, |q| q.outbox)
    }

    /// All entries of the outbox, with their bridge and sink.
    pub fn outbox_all(&self) -> Result<Vec<(String, String, OutboxEntry)>, StoreError> {
        let mut out = Vec::new();
        for kv in self.outbox.iter() {
            let (k, v) = kv?;
            let (bridge, sink) = split_queue_key(&k);
            let v = self.value_of(Kind::Outbox, &k, v, || "outbox".into())?;
            out.push((bridge, sink, json(&v, "outbox")?));
        }
        Ok(out)
    }

    /// Acknowledged: the entry leaves the outbox.
    pub fn ack(&self, key: &[u8]) -> Result<(), StoreError> {
        let Some(file) = values::remove(&self.outbox, &self.parts, Kind::Outbox, key)? else {
            return Ok(());
        };
        self.count(&split_queue_key(key).0, |q| {
            q.outbox = q.outbox.saturating_sub(1)
        });
        self.collect(file.into_iter().collect())
    }

    /// Records a failed attempt and when the next one is due.
    pub fn reschedule(&self, key: &[u8], entry: &OutboxEntry) -> Result<(), StoreError> {
        let v = super::record_bytes(entry);
        let old = values::put(
            &self.outbox,
            &self.parts,
            &self.files,
            Kind::Outbox,
            key,
            &v,
        )?;
        self.collect(old.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::entry;

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
    fn a_formed_batch_takes_its_members_place_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let c = Commit {
            bridge: "b".into(),
            meta: BridgeMeta {
                seq: 5,
                ..Default::default()
            },
            outbox: (1..=5).map(|i| ("s".to_string(), entry(i))).collect(),
            ..Default::default()
        };
        s.commit(&c).unwrap();
        let first = s.outbox_first("b", "s", 3).unwrap();
        assert_eq!(
            first.iter().map(|(_, e)| e.seq).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        let keys: Vec<Vec<u8>> = first.iter().map(|(k, _)| k.clone()).collect();
        let mut batch = entry(1);
        batch.event_id = "bat_x".into();
        s.form_batch("b", &keys, &batch).unwrap();
        assert_eq!(s.outbox_len("b"), 3);
        s.flush_blocking().unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let ids: Vec<String> = s
            .outbox_first("b", "s", 10)
            .unwrap()
            .into_iter()
            .map(|(_, e)| e.event_id)
            .collect();
        assert_eq!(ids[0], "bat_x");
        assert_eq!(ids.len(), 3);
        assert_eq!(s.outbox_len("b"), 3);
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
                            puts: vec![Put::new(format!("k{round}"), [1; 16], b"{}".to_vec())],
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
        let seqs = |s: &Store| -> Vec<u64> {
            let all = s.outbox_all().unwrap().into_iter();
            all.filter(|(b, _, _)| b == "b7")
                .map(|(_, _, e)| e.seq)
                .collect()
        };
        assert_eq!(seqs(&s), (1..=40).collect::<Vec<_>>());
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
        assert_eq!(seqs(&s), (1..=41).collect::<Vec<_>>());
    }
}
