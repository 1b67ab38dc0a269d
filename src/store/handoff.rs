//! A bridge's whole state, read out of the store and written into another
//! (docs/scaling.md#the-state-document): its meta (seq, cursor, failure streak, fingerprint),
//! items (hashes and values), cached pages (validators and bodies), outbox (what was already
//! sent of each entry included), dead letters and the refresh token its login keeps. Values
//! stored apart (chunks, files) are read whole and stored apart again as this store would.
//! An import is one transaction, so a crash leaves the bridge as it was or imported whole;
//! the versioned, checksummed document around it is [`crate::handoff`]'s.

use super::*;
use crate::store::values::Prepared;

/// One item: its hash and missing count (`state`) and its canonical JSON (`items`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemState {
    pub key: String,
    /// The 16-byte hash later polls compare by, in hex.
    pub hash: String,
    pub missing: u32,
    /// The stored canonical JSON, as text (exactly the bytes stored); empty for a create
    /// still settling, which has no value stored yet.
    pub value: String,
    /// A change waiting to settle (`emit.settle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingState>,
}

/// A change waiting to settle, as the state document carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingState {
    /// `value`, `create` or `gone`.
    pub kind: String,
    /// The new value's hash, in hex.
    pub hash: String,
    pub count: u32,
    pub since_ms: i64,
}

impl PendingState {
    fn from_pending(p: &crate::diff::Pending) -> PendingState {
        use crate::diff::PendingKind;
        let kind = match p.kind {
            PendingKind::Value => "value",
            PendingKind::Create => "create",
            PendingKind::Gone => "gone",
        };
        PendingState {
            kind: kind.into(),
            hash: hex::encode(p.hash),
            count: p.count,
            since_ms: p.since_ms,
        }
    }

    fn to_pending(&self) -> Option<crate::diff::Pending> {
        use crate::diff::PendingKind;
        let kind = match self.kind.as_str() {
            "value" => PendingKind::Value,
            "create" => PendingKind::Create,
            "gone" => PendingKind::Gone,
            _ => return None,
        };
        Some(crate::diff::Pending {
            kind,
            hash: hex::decode(&self.hash).ok()?.try_into().ok()?,
            count: self.count,
            since_ms: self.since_ms,
        })
    }
}

/// One cached page: its validators and, when kept, its body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageState {
    /// `page_key` of its URL.
    pub key: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub link: Option<String>,
    pub digest: Option<String>,
    pub body: Option<String>,
}

/// One queued event for one sink, at its place in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuedState {
    pub sink: String,
    pub position: u64,
    pub entry: OutboxEntry,
}

/// One dead letter, at its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadState {
    pub sink: String,
    pub position: u64,
    pub letter: DeadLetter,
}

/// The refresh token a login keeps, with the hash of the configured token it descends from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthState {
    pub configured: String,
    pub latest: String,
}

/// Everything the store holds of one bridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeState {
    pub meta: BridgeMeta,
    pub items: Vec<ItemState>,
    pub pages: Vec<PageState>,
    pub outbox: Vec<QueuedState>,
    pub dead: Vec<DeadState>,
    pub auth: Option<AuthState>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "bridge `{0}` already has state in this store; import it with --replace to overwrite it"
    )]
    Exists(String),
    #[error("bridge `{bridge}`: {what}")]
    Invalid { bridge: String, what: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where each tree of a bridge's state sits in the import's transaction.
pub(super) const TREES: usize = 9;

impl Store {
    /// Whether the store holds anything of `bridge`.
    pub fn has_state(&self, bridge: &str) -> Result<bool, StoreError> {
        let p = prefix(&[bridge]);
        if self.meta.contains_key(bridge.as_bytes())?
            || self.db.open_tree("auth")?.contains_key(bridge.as_bytes())?
        {
            return Ok(true);
        }
        for t in [
            &self.state,
            &self.items,
            &self.pages,
            &self.outbox,
            &self.dead,
        ] {
            if t.scan_prefix(&p).next().transpose()?.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The whole state of `bridge`; None when the store holds nothing of it.
    pub fn export_bridge(&self, bridge: &str) -> Result<Option<BridgeState>, StoreError> {
        if !self.has_state(bridge)? {
            return Ok(None);
        }
        let p = prefix(&[bridge]);
        let corrupt = |what: String| StoreError::Corrupt(format!("{bridge}/{what}"));
        let mut items = Vec::new();
        for kv in self.state_scan(bridge) {
            let (key, s) = kv?;
            let k = [p.as_slice(), key.as_bytes()].concat();
            let value = match s.is_item() {
                true => self
                    .value(&self.items, Kind::Item, &k, || format!("{bridge}/{key}"))?
                    .ok_or_else(|| corrupt(format!("item {key} (no value)")))?,
                false => Vec::new(),
            };
            let value = String::from_utf8(value).map_err(|_| corrupt(format!("item {key}")))?;
            let (hash, missing) = (hex::encode(s.hash), s.missing);
            items.push(ItemState {
                key,
                hash,
                missing,
                value,
                pending: s.pending.as_ref().map(PendingState::from_pending),
            });
        }
        let mut pages = Vec::new();
        for (key, head) in Self::scan(&self.pages, bridge, "page", |b| decode_page(b).map(|p| p.0))?
        {
            let body = self.page_body(bridge, &key)?;
            let CachedPage {
                etag,
                last_modified,
                link,
                digest,
            } = head;
            pages.push(PageState {
                key,
                etag,
                last_modified,
                link,
                digest,
                body,
            });
        }
        let mut outbox = Vec::new();
        for (sink, position, v) in self.queue_records(&self.outbox, Kind::Outbox, bridge)? {
            let entry = json(&v, &format!("{bridge}/outbox"))?;
            outbox.push(QueuedState {
                sink,
                position,
                entry,
            });
        }
        let mut dead = Vec::new();
        for (sink, position, v) in self.queue_records(&self.dead, Kind::Dead, bridge)? {
            let letter = json(&v, &format!("{bridge}/dead letter"))?;
            dead.push(DeadState {
                sink,
                position,
                letter,
            });
        }
        let auth = match self.db.open_tree("auth")?.get(bridge.as_bytes())? {
            Some(v) => Some(json(&v, &format!("{bridge}/auth"))?),
            None => None,
        };
        let mut meta = self.meta(bridge)?;
        meta.shape = None; // relearnt by the receiver (docs/testing-bridges.md#shape-drift)
        Ok(Some(BridgeState {
            meta,
            items,
            pages,
            outbox,
            dead,
            auth,
        }))
    }

    /// Every record of `bridge` in a queue tree: sink, position, value read whole.
    fn queue_records(
        &self,
        tree: &sled::Tree,
        kind: Kind,
        bridge: &str,
    ) -> Result<Vec<(String, u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        for kv in tree.scan_prefix(prefix(&[bridge])) {
            let (k, rec) = kv?;
            let (_, sink) = split_queue_key(&k);
            let v = self.value_of(kind, &k, rec, || format!("{bridge}/queue"))?;
            out.push((sink, position_of(&k), v));
        }
        Ok(out)
    }
}

/// A bridge's records, encoded as the store keeps them, ready for the transaction.
struct Encoded {
    meta: Vec<u8>,
    state: Vec<(Vec<u8>, Vec<u8>)>,
    items: Vec<(Vec<u8>, Vec<u8>)>,
    pages: Vec<(Vec<u8>, Vec<u8>)>,
    bodies: Vec<(Vec<u8>, Vec<u8>)>,
    outbox: Vec<(Vec<u8>, Vec<u8>)>,
    dead: Vec<(Vec<u8>, Vec<u8>)>,
    auth: Option<Vec<u8>>,
    last_position: u64,
}

fn encode(bridge: &str, s: &BridgeState, seq: u64) -> Result<Encoded, ImportError> {
    let invalid = |what: String| ImportError::Invalid {
        bridge: bridge.to_string(),
        what,
    };
    if bridge.is_empty() || bridge.contains('\0') {
        return Err(invalid("not a bridge name".into()));
    }
    let p = prefix(&[bridge]);
    let key = |k: &str| [p.as_slice(), k.as_bytes()].concat();
    let to_json = |v: &dyn erased::Ser| v.bytes();
    let mut e = Encoded {
        meta: to_json(&BridgeMeta {
            seq,
            ..s.meta.clone()
        }),
        state: Vec::new(),
        items: Vec::new(),
        pages: Vec::new(),
        bodies: Vec::new(),
        outbox: Vec::new(),
        dead: Vec::new(),
        auth: s.auth.as_ref().map(|a| to_json(a)),
        last_position: 0,
    };
    for i in &s.items {
        let (state, value) = encode_item(i).map_err(invalid)?;
        e.state.push((key(&i.key), state));
        if let Some(v) = value {
            e.items.push((key(&i.key), v));
        }
    }
    for pg in &s.pages {
        let head = CachedPage {
            etag: pg.etag.clone(),
            last_modified: pg.last_modified.clone(),
            link: pg.link.clone(),
            digest: pg.digest.clone(),
        };
        e.pages.push((key(&pg.key), encode_page(&head)));
        if let Some(b) = &pg.body {
            e.bodies.push((key(&pg.key), b.clone().into_bytes()));
        }
    }
    let sink_ok = |sink: &str| !sink.contains('\0');
    for q in &s.outbox {
        if !sink_ok(&q.sink) {
            return Err(invalid(format!("outbox sink `{}`", q.sink.escape_debug())));
        }
        e.last_position = e.last_position.max(q.position);
        e.outbox
            .push((queue_key(bridge, &q.sink, q.position), to_json(&q.entry)));
    }
    for d in &s.dead {
        if !sink_ok(&d.sink) || d.letter.bridge != bridge || d.letter.sink != d.sink {
            return Err(invalid(format!(
                "a dead letter of sink `{}` names bridge `{}` and sink `{}`",
                d.sink, d.letter.bridge, d.letter.sink
            )));
        }
        e.last_position = e.last_position.max(d.position);
        e.dead
            .push((queue_key(bridge, &d.sink, d.position), to_json(&d.letter)));
    }
    Ok(e)
}

/// One item's state record, and its value unless it is a create still settling (no value
/// stored yet).
fn encode_item(i: &ItemState) -> Result<(Vec<u8>, Option<Vec<u8>>), String> {
    let hash: Hash = hex::decode(&i.hash)
        .ok()
        .and_then(|h| h.try_into().ok())
        .ok_or_else(|| format!("item `{}`: hash `{}` is not 16 bytes in hex", i.key, i.hash))?;
    let pending = match &i.pending {
        Some(p) => Some(
            p.to_pending()
                .ok_or_else(|| format!("item `{}`: pending change `{}`", i.key, p.kind))?,
        ),
        None => None,
    };
    let stored = crate::diff::Stored {
        hash,
        missing: i.missing,
        pending,
    };
    let value = stored.is_item().then(|| i.value.clone().into_bytes());
    Ok((items::full_record(&stored), value))
}

/// `serde_json::to_vec` behind a trait object, so one closure serves every record type.
mod erased {
    pub trait Ser {
        fn bytes(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn bytes(&self) -> Vec<u8> {
            super::super::record_bytes(self)
        }
    }
}

impl Store {
    /// Writes the whole state of `bridge` in one transaction, replacing what the store held
    /// of it (only with `replace`: else a bridge with state is refused), waits for the disk,
    /// then raises the high-water mark to its seq. The seq imported is the document's, or
    /// this store's mark for the bridge when that is higher: a seq handed out here is never
    /// handed out again. Returns the seq stored. `layout`, when given, is written as the
    /// layout record in the same transaction (the new owner records there the
    /// acknowledgement it owes).
    pub fn import_bridge(
        &self,
        bridge: &str,
        s: &BridgeState,
        replace: bool,
        layout: Option<&[u8]>,
    ) -> Result<u64, ImportError> {
        let seq = self.import_unflushed(bridge, s, replace, layout)?;
        self.imports_durable(&HashMap::from([(bridge.to_string(), seq)]))?;
        Ok(seq)
    }

    /// [`Store::import_bridge`]'s transaction alone: nothing waits for the disk, and the
    /// high-water mark is not raised yet. [`Store::imports_durable`] does both, once for
    /// several imports; until it has, a crash may undo the import (never part of it).
    pub fn import_unflushed(
        &self,
        bridge: &str,
        s: &BridgeState,
        replace: bool,
        layout: Option<&[u8]>,
    ) -> Result<u64, ImportError> {
        if !replace && self.has_state(bridge)? {
            return Err(ImportError::Exists(bridge.to_string()));
        }
        let mark = self.highwater.marks().get(bridge).copied().unwrap_or(0);
        let seq = s.meta.seq.max(mark);
        let e = encode(bridge, s, seq)?;
        let old = self.old_keys(bridge)?;
        let (items, bodies) = (self.prepare(&e.items)?, self.prepare(&e.bodies)?);
        let (outbox, dead) = (self.prepare(&e.outbox)?, self.prepare(&e.dead)?);
        let prepared = [&items, &bodies, &outbox, &dead];
        let written = self.import_tx(bridge, &e, &old, prepared, layout);
        let garbage = match written {
            Ok(g) => g,
            Err(err) => {
                let files = [&items, &bodies, &outbox, &dead].into_iter().flatten();
                self.files
                    .delete(files.filter_map(|p| p.file()).collect::<Vec<_>>());
                return Err(err.into());
            }
        };
        self.next_position
            .fetch_max(e.last_position + 1, Ordering::SeqCst);
        // What is kept of the bridge in memory beside the store is read again.
        *self.forgets().entry(bridge.to_string()).or_default() += 1;
        self.count(bridge, |q| {
            q.outbox = e.outbox.len();
            q.dead = e.dead.len();
        });
        self.collect(garbage)?;
        Ok(seq)
    }

    /// Makes the imports made since the last flush durable (one wait for the disk), then
    /// raises the high-water mark of each bridge to the seq it was imported with (`seqs`).
    pub fn imports_durable(&self, seqs: &HashMap<String, u64>) -> Result<(), StoreError> {
        self.db.flush().map_err(StoreError::from)?;
        self.highwater.record(seqs).map_err(StoreError::from)?;
        self.note_marked()
    }

    /// Values made ready for a transaction (a large one written to its file).
    fn prepare<'a>(&self, v: &'a [(Vec<u8>, Vec<u8>)]) -> Result<Vec<Prepared<'a>>, StoreError> {
        let r: Result<Vec<_>, _> = v.iter().map(|(_, b)| self.files.prepare(b)).collect();
        Ok(r?)
    }

    /// The keys `bridge` has in each tree an import writes, to be removed by it.
    pub(super) fn old_keys(&self, bridge: &str) -> Result<[Vec<sled::IVec>; TREES], StoreError> {
        let p = prefix(&[bridge]);
        let scan = |t: &sled::Tree| -> Result<Vec<sled::IVec>, StoreError> {
            Ok(t.scan_prefix(&p).keys().collect::<Result<_, _>>()?)
        };
        let one = |t: &sled::Tree| -> Result<Vec<sled::IVec>, StoreError> {
            Ok(t.get(bridge.as_bytes())?
                .map(|_| sled::IVec::from(bridge.as_bytes()))
                .into_iter()
                .collect())
        };
        let auth = self.db.open_tree("auth")?;
        Ok([
            scan(&self.items)?,
            scan(&self.state)?,
            one(&self.meta)?,
            scan(&self.pages)?,
            scan(&self.page_bodies)?,
            scan(&self.outbox)?,
            scan(&self.dead)?,
            Vec::new(),
            one(&auth)?,
        ])
    }

    /// The import's transaction: the old records out, the new ones in. Returns the value
    /// files no record points at any more.
    fn import_tx(
        &self,
        bridge: &str,
        e: &Encoded,
        old: &[Vec<sled::IVec>; TREES],
        [items, bodies, outbox, dead]: [&Vec<Prepared>; 4],
        layout: Option<&[u8]>,
    ) -> Result<Vec<values::FileName>, StoreError> {
        let auth = self.db.open_tree("auth")?;
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
            &self.churn,
            default,
        );
        let res: Result<_, TransactionError<StoreError>> =
            trees.transaction(|(it, st, me, pg, bo, ob, de, parts, au, ch, db)| {
                let mut garbage =
                    forget::remove_bridge_in_tx([it, st, me, pg, bo, ob, de, au], parts, old)?;
                // Churn does not travel: what an old copy here counted is gone with it.
                ch.remove(bridge.as_bytes())?;
                for (tx, kind, records, prepared) in [
                    (it, Kind::Item, &e.items, items),
                    (bo, Kind::PageBody, &e.bodies, bodies),
                    (ob, Kind::Outbox, &e.outbox, outbox),
                    (de, Kind::Dead, &e.dead, dead),
                ] {
                    for ((k, _), v) in records.iter().zip(prepared) {
                        garbage.extend(values::put_in_tx(tx, parts, kind, k, v)?);
                    }
                }
                for (k, v) in &e.state {
                    st.insert(k.as_slice(), &v[..])?;
                }
                for (k, v) in &e.pages {
                    pg.insert(k.as_slice(), v.as_slice())?;
                }
                me.insert(bridge.as_bytes(), e.meta.as_slice())?;
                if let Some(a) = &e.auth {
                    au.insert(bridge.as_bytes(), a.as_slice())?;
                }
                if let Some(l) = layout {
                    db.insert(super::layout::LAYOUT, l)?;
                }
                Ok(garbage)
            });
        res.map_err(tx_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record of `bridge` in every tree that holds bridge state, values read whole: what
    /// "the same state" means, whatever chunks or files a value is stored in.
    fn dump(s: &Store, bridge: &str) -> Vec<(String, Vec<u8>, Vec<u8>)> {
        let p = prefix(&[bridge]);
        let auth = s.db.open_tree("auth").unwrap();
        let mut out = Vec::new();
        for (name, tree, kind) in [
            ("items", &s.items, Some(Kind::Item)),
            ("state", &s.state, None),
            ("pages", &s.pages, None),
            ("page_bodies", &s.page_bodies, Some(Kind::PageBody)),
            ("outbox", &s.outbox, Some(Kind::Outbox)),
            ("dead", &s.dead, Some(Kind::Dead)),
        ] {
            for kv in tree.scan_prefix(&p) {
                let (k, v) = kv.unwrap();
                let v = match kind {
                    Some(kind) => s.value_of(kind, &k, v, String::new).unwrap(),
                    None => v.to_vec(),
                };
                out.push((name.to_string(), k.to_vec(), v));
            }
        }
        for (name, tree) in [("meta", &s.meta), ("auth", &auth)] {
            let v = tree.get(bridge.as_bytes()).unwrap().unwrap();
            out.push((name.to_string(), bridge.as_bytes().to_vec(), v.to_vec()));
        }
        out
    }

    fn entry(seq: u64, body: String) -> OutboxEntry {
        OutboxEntry {
            body,
            ..crate::store::tests::entry(seq)
        }
    }

    /// A bridge with every kind of state: items small, chunked and in a file of their own, a
    /// cursor and a failure streak, cached pages with and without a body, a refresh token,
    /// events waiting for two sinks (one retried, with the bytes it sent) and a dead letter.
    fn full_bridge(s: &Store, bridge: &str) {
        let big = format!("{{\"text\":\"{}\"}}", "x".repeat(100_000));
        let mid = format!("{{\"text\":\"{}\"}}", "y".repeat(9_000));
        let mut c = Commit {
            bridge: bridge.into(),
            meta: BridgeMeta {
                seq: 5,
                fingerprint: Some("fp1".into()),
                baselined: true,
                items: 3,
                cursor: Some(serde_json::json!({"after": 12345678901234567890u64, "z": [1.50]})),
                failing: Some(Failing {
                    since_ms: 7,
                    failures: 2,
                    announced: true,
                }),
                ..Default::default()
            },
            puts: vec![
                Put::new("a", [1; 16], br#"{"id":"a"}"#.to_vec()),
                Put::new("big", [2; 16], big.clone().into_bytes()),
                Put::new("mid", [3; 16], mid.into_bytes()),
            ],
            pages: vec![
                (
                    page_key("u1"),
                    PageWrite::Full(
                        CachedPage {
                            etag: Some("\"e1\"".into()),
                            digest: Some(page_digest(&big)),
                            ..Default::default()
                        },
                        Arc::new(big.clone()),
                    ),
                ),
                (
                    page_key("u2"),
                    PageWrite::Head(CachedPage {
                        last_modified: Some("Mon, 07 Dec 2026 10:00:00 GMT".into()),
                        link: Some("<u3>; rel=next".into()),
                        ..Default::default()
                    }),
                ),
            ],
            ..Default::default()
        };
        c.outbox.push(("s1".into(), entry(4, big)));
        c.outbox.push(("s1".into(), entry(5, "{\"n\":5}".into())));
        c.outbox.push(("s2".into(), entry(4, "{\"n\":4}".into())));
        c.outbox.push(("s2".into(), entry(5, "{\"n\":5}".into())));
        s.commit(&c).unwrap();
        // s2's first event ran out of retries; s1's first was tried and failed once.
        let (k, e) = s.outbox_first(bridge, "s2", 1).unwrap().remove(0);
        let letter = DeadLetter {
            bridge: bridge.into(),
            sink: "s2".into(),
            entry: e,
            dead_at_ms: 9,
        };
        s.dead_letter(&k, &letter).unwrap();
        let (k, mut e) = s.outbox_first(bridge, "s1", 1).unwrap().remove(0);
        e.attempts = 1;
        e.next_at_ms = 99;
        e.last_error = Some("503".into());
        e.sent = Some(Rendered {
            content_type: "text/plain".into(),
            title: None,
            body: "sent".into(),
        });
        s.reschedule(&k, &e).unwrap();
        s.keep_refresh_token(bridge, "rt-conf", "rt-latest")
            .unwrap();
    }

    #[test]
    fn a_round_trip_leaves_the_bridge_state_identical() {
        let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let a = Store::open(a_dir.path()).unwrap();
        full_bridge(&a, "br");
        full_bridge(&a, "other");
        let doc = a.export_bridge("br").unwrap().unwrap();
        assert_eq!(
            (
                doc.items.len(),
                doc.pages.len(),
                doc.outbox.len(),
                doc.dead.len()
            ),
            (3, 2, 3, 1)
        );
        assert_eq!(
            doc.auth.as_ref().map(|x| x.latest.as_str()),
            Some("rt-latest")
        );
        // Through JSON, as a file carries it.
        let doc: BridgeState = serde_json::from_slice(&serde_json::to_vec(&doc).unwrap()).unwrap();

        let b = Store::open(b_dir.path()).unwrap();
        assert_eq!(b.export_bridge("br").unwrap(), None);
        // The layout record (the acknowledgement owed) goes in the import's transaction.
        assert_eq!(
            b.import_bridge("br", &doc, false, Some(b"owed br"))
                .unwrap(),
            5
        );
        assert_eq!(dump(&b, "br"), dump(&a, "br"));
        assert_eq!(b.outbox_len("br"), 3);
        assert_eq!(b.high_water().marks()["br"], 5);
        assert_eq!(
            b.refresh_token("br", "rt-conf").unwrap().as_deref(),
            Some("rt-latest")
        );
        // A new event queues behind the imported ones.
        let next = b.position();
        assert!(doc.outbox.iter().all(|q| q.position < next));
        drop(b);
        let b = Store::open(b_dir.path()).unwrap();
        assert_eq!(dump(&b, "br"), dump(&a, "br"), "on disk");
        assert_eq!(b.outbox_len("br"), 3);
        assert_eq!(b.layout_record().unwrap().as_deref(), Some(&b"owed br"[..]));

        // Once there, it is refused unless replaced (the layout record untouched); a replace
        // leaves no record of before.
        let e = b.import_bridge("br", &doc, false, Some(b"x")).unwrap_err();
        assert_eq!(b.layout_record().unwrap().as_deref(), Some(&b"owed br"[..]));
        assert_eq!(
            e.to_string(),
            "bridge `br` already has state in this store; import it with --replace to overwrite it"
        );
        let mut smaller = a.export_bridge("other").unwrap().unwrap();
        smaller.items.truncate(1);
        smaller.outbox.clear();
        smaller.dead.clear();
        smaller.meta.seq = 3;
        // The mark here is 5: the seq stays above every one handed out here. The churn an
        // old copy counted goes with it.
        let counted = crate::store::Commit {
            churn: Some(br#"{"polls":1}"#.to_vec()),
            ..crate::store::Commit::on("br", b.meta("br").unwrap())
        };
        b.commit(&counted).unwrap();
        assert!(b.churn_record("br").unwrap().is_some());
        let forgotten = b.forgotten("br");
        assert_eq!(b.import_bridge("br", &smaller, true, None).unwrap(), 5);
        assert!(b.churn_record("br").unwrap().is_none());
        assert_eq!(b.forgotten("br"), forgotten + 1);
        let now = b.export_bridge("br").unwrap().unwrap();
        assert_eq!(now.items, smaller.items);
        assert!(now.outbox.is_empty());
        assert_eq!(now.meta.seq, 5);
        assert_eq!(b.outbox_len("br"), 0);
        drop(b);
        let b = Store::open(b_dir.path()).unwrap();
        assert_eq!(b.export_bridge("br").unwrap().unwrap().items, smaller.items);
    }

    #[test]
    fn a_bad_state_is_refused_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        full_bridge(&s, "br");
        let mut doc = s.export_bridge("br").unwrap().unwrap();
        doc.items[0].hash = "abc".into();
        let e = s
            .import_bridge("fresh", &doc, false, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "bridge `fresh`: item `a`: hash `abc` is not 16 bytes in hex"
        );
        assert!(!s.has_state("fresh").unwrap());
        let doc = s.export_bridge("br").unwrap().unwrap();
        let e = s
            .import_bridge("fresh", &doc, false, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("names bridge `br`"), "{e}");
        assert!(!s.has_state("fresh").unwrap());
    }
}
