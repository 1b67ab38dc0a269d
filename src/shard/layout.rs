//! The layout a shard runs under, as its store records it (docs/scaling.md#layout-in-the-store),
//! and the bridges a change of layout moves: *incoming* ones (owned now, no state here) and
//! *outgoing* ones (state here, owned now by another shard). Outgoing bridges are never polled
//! here; incoming ones are recorded, with the shard that owned them under the previous layout,
//! for the handoff to fetch their state. [`plan`] is pure: the store's side is in `app`.

use super::Shard;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How owners were computed: [`super::owner`], or `sha256 mod N` ([`super::legacy_owner`]),
/// used by versions from before layouts were recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Jump,
    Legacy,
}

/// One layout: this shard's index, the number of shards, the scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub index: u64,
    pub shards: u64,
    pub scheme: Scheme,
}

impl Placement {
    /// The shard that owns `name` under this layout.
    pub fn owner(&self, name: &str) -> u64 {
        match self.scheme {
            Scheme::Jump => super::owner(name, self.shards),
            Scheme::Legacy => super::legacy_owner(name, self.shards),
        }
    }
}

/// A bridge this shard owns and holds no state for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Incoming {
    /// Its owner under the previous layout; None when there was none (a fresh shard), and
    /// any other shard may hold it.
    pub from: Option<u64>,
    /// Unix ms when it was first found incoming.
    pub since_ms: i64,
}

/// What the store records (under the key `layout`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    #[serde(flatten)]
    pub now: Placement,
    /// Grows by one with every change of this shard's layout; never compared across shards.
    pub epoch: u64,
    /// The layout this shard ran under before the last change; None for a fresh shard.
    #[serde(default)]
    pub previous: Option<Placement>,
    #[serde(default)]
    pub incoming: BTreeMap<String, Incoming>,
    /// Bridges whose state this shard gave away by handoff, to the shard that asked, and
    /// holds until that shard acknowledges (docs/scaling.md#handoff): never polled here
    /// again unless they come back by a handoff.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub given: BTreeMap<String, u64>,
    /// Bridges imported here whose acknowledgement the giving shard (the value) has not had
    /// yet: sent again after a crash, and not polled here until it is.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub owed: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the state database's layout record is unreadable ({0}); move the key aside with a backup, or restore one"
)]
pub struct Unreadable(String);

impl Record {
    pub fn decode(bytes: &[u8]) -> Result<Record, Unreadable> {
        serde_json::from_slice(bytes).map_err(|e| Unreadable(e.to_string()))
    }

    #[expect(
        clippy::expect_used,
        reason = "typed fields with string keys always serialise"
    )]
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a layout serialises")
    }
}

/// A bridge with state here that another shard owns now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outgoing {
    pub bridge: String,
    pub to: u64,
}

/// What a start under `shard` finds.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// To be written back (unchanged when nothing changed).
    pub record: Record,
    /// The layout changed with this start (or was recorded for the first time).
    pub changed: bool,
    pub outgoing: Vec<Outgoing>,
}

/// The layout a store without a record was written under: none for an empty store; else
/// `sha256 mod N` with this shard's I/N when every bridge it holds is its own under that
/// scheme (it was this shard under an earlier version), else a single unsharded process.
fn assumed_previous(shard: Shard, held: &BTreeSet<String>) -> Option<Placement> {
    if held.is_empty() {
        return None;
    }
    let legacy = Placement {
        index: shard.index,
        shards: shard.shards,
        scheme: Scheme::Legacy,
    };
    if held.iter().all(|b| legacy.owner(b) == shard.index) {
        Some(legacy)
    } else {
        Some(Placement {
            index: 0,
            shards: 1,
            scheme: Scheme::Jump,
        })
    }
}

/// The layout after a start as `shard`, given the stored record, the bridges with state here
/// (`held`) and every configured bridge (`configured`, the same set on every shard).
pub fn plan(
    stored: Option<Record>,
    shard: Shard,
    held: &BTreeSet<String>,
    configured: &[String],
    now_ms: i64,
) -> Plan {
    let now = Placement {
        index: shard.index,
        shards: shard.shards,
        scheme: Scheme::Jump,
    };
    let (given, owed) = stored
        .as_ref()
        .map(|r| (r.given.clone(), r.owed.clone()))
        .unwrap_or_default();
    let (epoch, previous, kept, changed) = match stored {
        Some(r) if r.now == now => (r.epoch, r.previous, r.incoming, false),
        Some(r) => (r.epoch + 1, Some(r.now), r.incoming, true),
        None => (1, assumed_previous(shard, held), BTreeMap::new(), true),
    };
    let mut incoming = BTreeMap::new();
    // A single process, and no layout before it: no other shard can hold a bridge.
    let alone = shard.shards == 1 && previous.is_none_or(|p| p.shards == 1);
    for name in configured.iter().filter(|_| !alone) {
        // A bridge given away is held only until acknowledged: it comes back by handoff.
        if now.owner(name) != shard.index || (held.contains(name) && !given.contains_key(name)) {
            continue;
        }
        let from = match given.get(name) {
            Some(to) => Some(*to),
            None => previous.map(|p| p.owner(name)),
        };
        // Ours under the previous layout too, and never polled: a new bridge.
        if from == Some(shard.index) {
            continue;
        }
        let since_ms = kept
            .get(name)
            .filter(|k| k.from == from)
            .map_or(now_ms, |k| k.since_ms);
        incoming.insert(name.clone(), Incoming { from, since_ms });
    }
    let outgoing = held
        .iter()
        .filter(|b| now.owner(b) != shard.index)
        .map(|b| Outgoing {
            bridge: b.clone(),
            to: now.owner(b),
        })
        .collect();
    let record = Record {
        now,
        epoch,
        previous,
        incoming,
        given,
        owed,
    };
    Plan {
        record,
        changed,
        outgoing,
    }
}

/// What `GET /v1/layout` answers (docs/operations.md#admin-api).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct View {
    pub index: u64,
    pub shards: u64,
    pub epoch: u64,
    pub incoming: Vec<IncomingView>,
    pub outgoing: Vec<Outgoing>,
    /// This shard holds no state of a bridge it does not own.
    pub drained: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IncomingView {
    pub bridge: String,
    pub from: Option<u64>,
    /// RFC 3339.
    pub since: String,
}

impl Plan {
    pub fn view(&self) -> View {
        self.record.view(&self.outgoing)
    }
}

impl Record {
    /// What `GET /v1/layout` shows of this record, with the bridges still held here that
    /// other shards own.
    pub fn view(&self, outgoing: &[Outgoing]) -> View {
        let since = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        View {
            index: self.now.index,
            shards: self.now.shards,
            epoch: self.epoch,
            incoming: self
                .incoming
                .iter()
                .map(|(b, i)| IncomingView {
                    bridge: b.clone(),
                    from: i.from,
                    since: since(i.since_ms),
                })
                .collect(),
            outgoing: outgoing.to_vec(),
            drained: outgoing.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: u64, shards: u64) -> Shard {
        Shard { index, shards }
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("b{i}")).collect()
    }

    fn held_by(owner: impl Fn(&str) -> bool, all: &[String]) -> BTreeSet<String> {
        all.iter().filter(|b| owner(b)).cloned().collect()
    }

    #[test]
    fn a_fresh_shard_expects_every_bridge_it_owns_from_anyone() {
        let all = names(40);
        let p = plan(None, shard(1, 3), &BTreeSet::new(), &all, 7);
        assert!(p.changed && p.outgoing.is_empty());
        assert_eq!((p.record.epoch, p.record.previous), (1, None));
        let mine: BTreeSet<&String> = all
            .iter()
            .filter(|b| super::super::owner(b, 3) == 1)
            .collect();
        assert!(!mine.is_empty());
        assert_eq!(p.record.incoming.keys().collect::<BTreeSet<_>>(), mine);
        assert!(
            p.record
                .incoming
                .values()
                .all(|i| i.from.is_none() && i.since_ms == 7)
        );
        // A single unsharded process has no one to expect anything from.
        let p = plan(None, shard(0, 1), &BTreeSet::new(), &all, 7);
        assert!(p.record.incoming.is_empty());
    }

    #[test]
    fn a_store_from_before_layouts_was_sharded_mod_n() {
        let all = names(60);
        let legacy = |b: &str| super::super::legacy_owner(b, 4) == 2;
        let held = held_by(legacy, &all);
        let p = plan(None, shard(2, 4), &held, &all, 5);
        let prev = Placement {
            index: 2,
            shards: 4,
            scheme: Scheme::Legacy,
        };
        assert_eq!((p.record.epoch, p.record.previous), (1, Some(prev)));
        for o in &p.outgoing {
            assert!(held.contains(&o.bridge));
            assert_eq!(o.to, super::super::owner(&o.bridge, 4));
            assert_ne!(o.to, 2);
        }
        let moved_out = held
            .iter()
            .filter(|b| super::super::owner(b, 4) != 2)
            .count();
        assert_eq!(p.outgoing.len(), moved_out);
        assert!(moved_out > 0);
        for (b, i) in &p.record.incoming {
            assert!(!held.contains(b) && super::super::owner(b, 4) == 2);
            assert_eq!(i.from, Some(super::super::legacy_owner(b, 4)));
        }
        // An unsharded store (bridges of every legacy shard) ran as 0/1.
        let held: BTreeSet<String> = all.iter().cloned().collect();
        let p = plan(None, shard(2, 4), &held, &all, 5);
        let single = Placement {
            index: 0,
            shards: 1,
            scheme: Scheme::Jump,
        };
        assert_eq!(p.record.previous, Some(single));
        assert!(p.record.incoming.is_empty(), "it held them all");
    }

    #[test]
    fn the_epoch_grows_with_each_change_only() {
        let all = names(50);
        let first = plan(None, shard(0, 2), &BTreeSet::new(), &all, 1).record;
        let same = plan(Some(first.clone()), shard(0, 2), &BTreeSet::new(), &all, 9);
        assert!(!same.changed);
        assert_eq!(same.record, first, "kept, `since` included");
        let grown = plan(Some(first.clone()), shard(0, 3), &BTreeSet::new(), &all, 9);
        assert!(grown.changed);
        assert_eq!(grown.record.epoch, 2);
        assert_eq!(grown.record.previous, Some(first.now));
        // Under a previous layout, a bridge owned then and now is new, not incoming; one owned
        // by another shard then comes from it.
        for (b, i) in &grown.record.incoming {
            let before = super::super::owner(b, 2);
            assert_ne!(before, 0, "{b}");
            assert_eq!(i.from, Some(before));
            assert_eq!(i.since_ms, 9);
        }
        let again = plan(
            Some(grown.record.clone()),
            shard(1, 3),
            &BTreeSet::new(),
            &all,
            10,
        );
        assert_eq!(again.record.epoch, 3);
        let back = Record::decode(&again.record.encode()).unwrap();
        assert_eq!(back, again.record);
        assert!(
            Record::decode(b"{")
                .unwrap_err()
                .to_string()
                .contains("layout record")
        );
    }

    #[test]
    fn a_bridge_given_away_comes_back_only_by_handoff() {
        let all = names(40);
        // Shard 0 of 2 held everything of a single process and gave one bridge to shard 1.
        let held: BTreeSet<String> = all.iter().cloned().collect();
        let mut r = plan(None, shard(0, 2), &held, &all, 1).record;
        let away = all.iter().find(|b| super::super::owner(b, 2) == 1).unwrap();
        r.given.insert(away.clone(), 1);
        r.owed.insert("x".into(), 3);
        // Back to one shard, the copy still here (not acknowledged): it is incoming from the
        // shard it was given to, not polled from the copy.
        let p = plan(Some(r.clone()), shard(0, 1), &held, &all, 2);
        assert_eq!(
            p.record.incoming.get(away),
            Some(&Incoming {
                from: Some(1),
                since_ms: 2
            })
        );
        assert_eq!(p.record.incoming.len(), 1, "{:?}", p.record.incoming);
        assert_eq!((p.record.given.len(), p.record.owed.len()), (1, 1), "kept");
        // Under the layout it was given under, it is still held for shard 1 until acknowledged.
        let p = plan(Some(r), shard(0, 2), &held, &all, 2);
        assert!(p.outgoing.iter().any(|o| &o.bridge == away && o.to == 1));
        assert!(!p.record.incoming.contains_key(away));
        let back = Record::decode(&p.record.encode()).unwrap();
        assert_eq!(back, p.record);
    }
}
