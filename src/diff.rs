//! Stored state + new items -> the plan of a poll: the items to store (each with the change
//! it is), those found again, and what becomes of the absent ones. Pure: no I/O, no clock.

use crate::extract::{Hash, Item};
pub use settle::{Pending, PendingKind, Settle};

pub mod settle;

/// What the store remembers of one item (its value is loaded only when a change needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub hash: Hash,
    /// Complete polls in a row the item has been absent from.
    pub missing: u32,
    /// A change waiting to settle (`emit.settle`). A record pending `Create` is no item yet:
    /// its `hash` means nothing and it has no value.
    pub pending: Option<Pending>,
}

impl Stored {
    pub fn new(hash: Hash, missing: u32) -> Stored {
        Stored {
            hash,
            missing,
            pending: None,
        }
    }

    /// Whether the record stands for a stored item (not a create still settling).
    pub fn is_item(&self) -> bool {
        !matches!(self.pending, Some(p) if p.kind == PendingKind::Create)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Compare against the stored state.
    No,
    /// First poll (or a changed definition): remember everything, report nothing.
    Silent,
    /// First poll with `first_poll: emit`: report each item as created. Each item is compared
    /// with what is stored, as in a normal poll: before a first poll nothing is, so every item
    /// is created; what is there is what an interrupted first poll stored together with its
    /// events, so no item is reported twice (and one that changed or went since is updated or
    /// deleted, as the receiver already has it).
    Emit,
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub baseline: Baseline,
    /// False when the listing may be partial (pagination stopped at `max_pages`): absence then
    /// means nothing.
    pub complete: bool,
    pub after_missing: u32,
    pub max_fraction: f64,
    /// Document mode: one item, the mass-delete guard does not apply.
    pub document: bool,
    /// An incremental listing (`source.cursor`): see [`Incremental`].
    pub incremental: Option<Incremental>,
    /// `emit.settle`, at this poll's time: changes wait in the state records until they
    /// settle (see [`settle`]). Not with an incremental listing.
    pub settle: Option<Settle>,
}

/// An incremental listing returns only what is new or changed, so absence never means
/// deletion, and no absence is counted: a stored item's `missing` field holds instead the day
/// (since 1970, UTC) it was last listed. Items last listed before `forget_before` are
/// forgotten, silently (`source.cursor.keep`; 0 keeps every item).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incremental {
    pub today: u32,
    pub forget_before: u32,
}

/// A mass delete that was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    pub vanishing: usize,
    pub stored: usize,
}

/// What becomes of a stored item that is absent from the listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Absence {
    /// Still remembered, absent this many complete polls in a row.
    Missing(u32),
    /// Gone: removed, and reported deleted.
    Deleted,
    /// Removed without a report (a baseline forgets what the listing no longer holds).
    Removed,
}

/// What a poll does to the stored state, in the compact form a poll applies: new items by
/// index (a first poll of a million items plans a million writes, and copies no key for
/// them), stored ones by key.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Plan {
    /// Items to store (hash, value, missing count 0), by index into the new items, in
    /// listing order, each with the change it is (None: stored without one, a baseline).
    pub puts: Vec<(u32, Option<ChangeKind>)>,
    /// Unchanged items whose missing count goes back to 0, by index, in listing order.
    pub found: Vec<u32>,
    /// Stored items absent from the listing that something happens to, in key order.
    pub absent: Vec<(String, Absence)>,
    /// State records written whole (`emit.settle`): a change pending, counted on, or given
    /// up (the record as it was settled, missing count 0), in key order. Written by the last
    /// commit of a poll, like missing counts.
    pub pending: Vec<(String, Stored)>,
    /// Records of creates that flipped back before they settled: removed, no item, no event.
    pub dropped: Vec<String>,
    /// Records with a change pending once the plan is applied.
    pub pending_after: usize,
    pub held_back: Option<HeldBack>,
    /// Items stored before, and once the plan is applied; items counting absences after.
    pub stored_before: usize,
    pub stored_after: usize,
    pub absent_after: usize,
}

impl Plan {
    /// How many changes of this kind were found (reported or not).
    pub fn count(&self, kind: ChangeKind) -> usize {
        match kind {
            ChangeKind::Deleted => self
                .absent
                .iter()
                .filter(|(_, a)| *a == Absence::Deleted)
                .count(),
            _ => self.puts.iter().filter(|(_, k)| *k == Some(kind)).count(),
        }
    }
}

/// Compares the stored state with the new items. `stored` must come in key order (as the
/// store scans it) and `by_key` holds the items' indices in key order
/// ([`crate::extract::key_order`]): the two are walked side by side, so the stored state is
/// never held in memory as a whole. Fails only with an error of `stored`.
pub fn plan<E>(
    stored: impl IntoIterator<Item = Result<(String, Stored), E>>,
    items: &[Item],
    by_key: &[u32],
    opts: Options,
) -> Result<Plan, E> {
    let mut p = Plan::default();
    // Items counting absences before, and how the plan changes that count.
    let mut absent_now: isize = 0;
    let mut created = 0usize;
    let mut absent: Vec<(String, Stored)> = Vec::new();
    let mut next = by_key.iter().map(|&i| i as usize).peekable();
    let change = |kind| (opts.baseline != Baseline::Silent).then_some(kind);
    // A baseline stores what it finds: nothing settles then.
    let settle = opts.settle.filter(|_| opts.baseline != Baseline::Silent);
    for entry in stored {
        let (key, s) = entry?;
        // New items that sort before this stored key.
        while let Some(i) = next.next_if(|&i| items[i].key.as_str() < key.as_str()) {
            created += new_item(&mut p, items, i, None, settle, change);
        }
        let listed = next.next_if(|&i| items[i].key == *key);
        if !s.is_item() {
            match listed {
                Some(i) => created += new_item(&mut p, items, i, s.pending, settle, change),
                None if opts.complete || opts.baseline == Baseline::Silent => p.dropped.push(key),
                None => p.pending_after += 1,
            }
            continue;
        }
        p.stored_before += 1;
        absent_now += isize::from(s.missing > 0);
        // Found again: its absence count goes back to 0, or (incremental) today is noted.
        let note = match opts.incremental {
            Some(inc) => s.missing != inc.today,
            None => s.missing > 0,
        };
        match listed {
            Some(i) if items[i].hash != s.hash => {
                absent_now -= isize::from(s.missing > 0);
                changed(&mut p, (key, s), i, items[i].hash, settle, change);
            }
            // Back to the settled value (or listed again) before a change settled.
            Some(_) if s.pending.is_some() => {
                absent_now -= isize::from(s.missing > 0);
                p.pending.push((key, Stored::new(s.hash, 0)));
            }
            Some(i) if note => {
                p.found.push(i as u32);
                absent_now -= 1;
            }
            Some(_) => {}
            None => absent.push((key, s)),
        }
    }
    for i in next {
        created += new_item(&mut p, items, i, None, settle, change);
    }
    // Changes are reported in listing order.
    p.puts.sort_unstable_by_key(|&(i, _)| i);
    p.found.sort_unstable();
    let removed = settle_absent(&mut p, absent, opts, &mut absent_now);
    p.pending.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    p.stored_after = p.stored_before + created - removed;
    p.absent_after = match opts.incremental {
        Some(_) => 0,
        None => usize::try_from(absent_now).unwrap_or(0),
    };
    Ok(p)
}

/// A stored item listed with another value: updated, or (with `emit.settle`) its new value
/// waits to settle.
fn changed(
    p: &mut Plan,
    (key, s): (String, Stored),
    i: usize,
    hash: Hash,
    settle: Option<Settle>,
    change: impl Fn(ChangeKind) -> Option<ChangeKind>,
) {
    let waits = settle.map(|st| st.next(s.pending, PendingKind::Value, hash));
    match waits.filter(|w| !settle.is_some_and(|st| st.settled(w))) {
        Some(w) => {
            let record = Stored {
                missing: 0,
                pending: Some(w),
                ..s
            };
            p.pending.push((key, record));
            p.pending_after += 1;
        }
        None => p.puts.push((i as u32, change(ChangeKind::Updated))),
    }
}

/// An item not stored yet (`before`: what was pending of it): stored as created, or (with
/// `emit.settle`) waiting to settle. Returns 1 when it is stored.
fn new_item(
    p: &mut Plan,
    items: &[Item],
    i: usize,
    before: Option<Pending>,
    settle: Option<Settle>,
    change: impl Fn(ChangeKind) -> Option<ChangeKind>,
) -> usize {
    if let Some(st) = settle {
        let w = st.next(before, PendingKind::Create, items[i].hash);
        if !st.settled(&w) {
            let record = Stored {
                hash: [0; 16],
                missing: 0,
                pending: Some(w),
            };
            p.pending.push((items[i].key.to_string(), record));
            p.pending_after += 1;
            return 0;
        }
    }
    p.puts.push((i as u32, change(ChangeKind::Created)));
    1
}

/// Decides what becomes of the stored items absent from the listing (unless a mass delete is
/// held back, or the listing is incomplete), keeping `absent_now` (items counting absences)
/// up to date. Returns how many are removed.
fn settle_absent(
    p: &mut Plan,
    absent: Vec<(String, Stored)>,
    opts: Options,
    absent_now: &mut isize,
) -> usize {
    if let Some(inc) = opts.incremental {
        p.absent = absent
            .into_iter()
            .filter(|(_, s)| s.missing < inc.forget_before)
            .map(|(k, _)| (k, Absence::Removed))
            .collect();
        return p.absent.len();
    }
    if opts.baseline == Baseline::Silent {
        *absent_now -= absent.iter().filter(|(_, s)| s.missing > 0).count() as isize;
        p.absent = absent
            .into_iter()
            .map(|(k, _)| (k, Absence::Removed))
            .collect();
        return p.absent.len();
    }
    // A change pending on an item nothing happens to this poll stays as it is.
    let still =
        |absent: &[(String, Stored)]| absent.iter().filter(|(_, s)| s.pending.is_some()).count();
    if !opts.complete {
        p.pending_after += still(&absent);
        return 0;
    }
    // With `emit.settle` an absence settles like any change: deleted once it is settled
    // and `after_missing` is reached.
    let settle = opts.settle;
    let gone = |s: &Stored| settle.map(|st| st.next(s.pending, PendingKind::Gone, [0; 16]));
    let deletes = |s: &Stored| {
        s.missing + 1 >= opts.after_missing
            && gone(s).is_none_or(|w| settle.is_some_and(|st| st.settled(&w)))
    };
    let vanishing = absent.iter().filter(|(_, s)| deletes(s)).count();
    let guard = !opts.document
        && vanishing > 0
        && vanishing as f64 > opts.max_fraction * p.stored_before as f64;
    if guard {
        p.held_back = Some(HeldBack {
            vanishing,
            stored: p.stored_before,
        });
        p.pending_after += still(&absent);
        return 0;
    }
    let mut removed = 0;
    for (key, s) in absent {
        if deletes(&s) {
            removed += 1;
            *absent_now -= isize::from(s.missing > 0);
            p.absent.push((key, Absence::Deleted));
            continue;
        }
        *absent_now += isize::from(s.missing == 0);
        match gone(&s) {
            Some(w) => {
                let record = Stored {
                    missing: s.missing + 1,
                    pending: Some(w),
                    ..s
                };
                p.pending.push((key, record));
                p.pending_after += 1;
            }
            None => {
                p.pending_after += usize::from(s.pending.is_some());
                p.absent.push((key, Absence::Missing(s.missing + 1)));
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::hash;
    use serde_json::json;
    use std::collections::HashMap;

    // The plan in the long form the tests read (and check its counts against): changes and
    // writes by key, over a stored state held in a map.

    /// One detected change. `item` indexes the new items (None for deleted).
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Change {
        kind: ChangeKind,
        key: String,
        item: Option<usize>,
    }

    /// One write to the item state.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Write {
        /// Store new item `item` (hash and value) with a zero missing count.
        Put {
            key: String,
            item: usize,
        },
        /// The item is still remembered but was absent `missing` complete polls in a row.
        Missing {
            key: String,
            missing: u32,
        },
        Remove {
            key: String,
        },
    }

    #[derive(Debug, Default, Clone, PartialEq)]
    struct Diff {
        changes: Vec<Change>,
        writes: Vec<Write>,
        held_back: Option<HeldBack>,
    }

    impl Diff {
        fn count(&self, kind: ChangeKind) -> usize {
            self.changes.iter().filter(|c| c.kind == kind).count()
        }
    }

    /// [`plan`] over a stored state held in a map, as changes and writes by key.
    fn diff(stored: &HashMap<String, Stored>, items: &[Item], opts: Options) -> Diff {
        let mut sorted: Vec<(&String, &Stored)> = stored.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let entries = sorted
            .into_iter()
            .map(|(k, s)| Ok::<_, std::convert::Infallible>((k.clone(), *s)));
        let p = match plan(entries, items, &crate::extract::key_order(items), opts) {
            Ok(p) => p,
            Err(never) => match never {},
        };
        let mut d = Diff {
            held_back: p.held_back,
            ..Diff::default()
        };
        let key = |i: u32| items[i as usize].key.to_string();
        for &(i, kind) in &p.puts {
            if let Some(kind) = kind {
                d.changes.push(Change {
                    kind,
                    key: key(i),
                    item: Some(i as usize),
                });
            }
        }
        // Writes in listing order, then the absent ones in key order.
        let mut found = p.found.iter().peekable();
        for &(i, _) in &p.puts {
            while let Some(&f) = found.next_if(|&&f| f < i) {
                d.writes.push(Write::Missing {
                    key: key(f),
                    missing: 0,
                });
            }
            d.writes.push(Write::Put {
                key: key(i),
                item: i as usize,
            });
        }
        for &f in found {
            d.writes.push(Write::Missing {
                key: key(f),
                missing: 0,
            });
        }
        for (k, a) in p.absent {
            match a {
                Absence::Missing(missing) => d.writes.push(Write::Missing { key: k, missing }),
                Absence::Deleted => {
                    d.changes.push(Change {
                        kind: ChangeKind::Deleted,
                        key: k.clone(),
                        item: None,
                    });
                    d.writes.push(Write::Remove { key: k });
                }
                Absence::Removed => d.writes.push(Write::Remove { key: k }),
            }
        }
        d
    }

    /// How many items are stored once `writes` are applied.
    fn stored_after(stored: &HashMap<String, Stored>, writes: &[Write]) -> usize {
        let mut n = stored.len();
        for w in writes {
            match w {
                Write::Put { key, .. } if !stored.contains_key(key) => n += 1,
                Write::Remove { key } if stored.contains_key(key) => n -= 1,
                _ => {}
            }
        }
        n
    }

    /// How many items count absences (missing, not yet deleted) once `writes` are applied.
    fn absent_after(stored: &HashMap<String, Stored>, writes: &[Write]) -> usize {
        let was = |k: &str| stored.get(k).is_some_and(|s| s.missing > 0);
        let mut n = stored.values().filter(|s| s.missing > 0).count();
        for w in writes {
            match w {
                Write::Put { key, .. } | Write::Remove { key } => n -= usize::from(was(key)),
                Write::Missing { key, missing } => match (was(key), *missing > 0) {
                    (false, true) => n += 1,
                    (true, false) => n -= 1,
                    _ => {}
                },
            }
        }
        n
    }

    fn item(key: &str, value: serde_json::Value) -> Item<'static> {
        Item {
            key: key.into(),
            hash: hash(&value),
            value: crate::extract::ItemValue::Parsed(Box::new(std::borrow::Cow::Owned(value))),
        }
    }

    fn state(items: &[Item]) -> HashMap<String, Stored> {
        items
            .iter()
            .map(|i| (i.key.to_string(), Stored::new(i.hash, 0)))
            .collect()
    }

    fn opts() -> Options {
        Options {
            baseline: Baseline::No,
            complete: true,
            after_missing: 1,
            max_fraction: 0.5,
            document: false,
            incremental: None,
            settle: None,
        }
    }

    fn kinds(d: &Diff) -> Vec<(ChangeKind, &str)> {
        d.changes.iter().map(|c| (c.kind, c.key.as_str())).collect()
    }

    #[test]
    fn created_updated_deleted() {
        let old = [
            item("a", json!(1)),
            item("b", json!(2)),
            item("c", json!(3)),
        ];
        let new = [
            item("a", json!(1)),
            item("b", json!(20)),
            item("d", json!(4)),
        ];
        let d = diff(
            &state(&old),
            &new,
            Options {
                max_fraction: 1.0,
                ..opts()
            },
        );
        assert_eq!(
            kinds(&d),
            [
                (ChangeKind::Updated, "b"),
                (ChangeKind::Created, "d"),
                (ChangeKind::Deleted, "c")
            ]
        );
        assert_eq!(
            d.writes,
            [
                Write::Put {
                    key: "b".into(),
                    item: 1
                },
                Write::Put {
                    key: "d".into(),
                    item: 2
                },
                Write::Remove { key: "c".into() }
            ]
        );
    }

    #[test]
    fn unchanged_writes_nothing() {
        let old = [item("a", json!({"x": 1.0, "y": 2}))];
        let new = [item("a", json!({"y": 2, "x": 1}))];
        assert_eq!(diff(&state(&old), &new, opts()), Diff::default());
    }

    #[test]
    fn baselines() {
        let new = [item("a", json!(1)), item("b", json!(2))];
        let stale = state(&[item("z", json!(0))]);
        let silent = diff(
            &stale,
            &new,
            Options {
                baseline: Baseline::Silent,
                ..opts()
            },
        );
        assert!(silent.changes.is_empty());
        assert_eq!(silent.writes.len(), 3);
        assert_eq!(silent.writes[2], Write::Remove { key: "z".into() });
        let emit = diff(
            &HashMap::new(),
            &new,
            Options {
                baseline: Baseline::Emit,
                ..opts()
            },
        );
        assert_eq!(
            kinds(&emit),
            [(ChangeKind::Created, "a"), (ChangeKind::Created, "b")]
        );
    }

    #[test]
    fn an_emit_baseline_compares_with_what_is_stored() {
        let new = [
            item("a", json!(1)),
            item("b", json!(2)),
            item("c", json!(3)),
        ];
        let emit = Options {
            baseline: Baseline::Emit,
            max_fraction: 1.0,
            ..opts()
        };
        // Nothing stored (a first poll): every item is created, as before.
        assert_eq!(
            kinds(&diff(&HashMap::new(), &new, emit)),
            [
                (ChangeKind::Created, "a"),
                (ChangeKind::Created, "b"),
                (ChangeKind::Created, "c")
            ]
        );
        // What an interrupted first poll stored with its events: the same value is no event
        // and no write; a changed one is updated, a vanished one deleted (the receiver has
        // them); the rest are created.
        let stored = state(&[
            item("a", json!(1)),
            item("b", json!(20)),
            item("z", json!(0)),
        ]);
        let d = diff(&stored, &new, emit);
        assert_eq!(
            kinds(&d),
            [
                (ChangeKind::Updated, "b"),
                (ChangeKind::Created, "c"),
                (ChangeKind::Deleted, "z")
            ]
        );
        assert!(
            !d.writes
                .iter()
                .any(|w| matches!(w, Write::Put { key, .. } if key == "a"))
        );
        // A silent baseline forgets what is gone, reports nothing, and rewrites no item it
        // already holds as it is.
        let silent = diff(
            &stored,
            &new,
            Options {
                baseline: Baseline::Silent,
                ..opts()
            },
        );
        assert!(silent.changes.is_empty());
        assert_eq!(
            silent.writes,
            [
                Write::Put {
                    key: "b".into(),
                    item: 1
                },
                Write::Put {
                    key: "c".into(),
                    item: 2
                },
                Write::Remove { key: "z".into() }
            ]
        );
    }

    #[test]
    fn the_plan_counts_what_the_writes_leave() {
        let mut st = state(&[
            item("a", json!(1)),
            item("b", json!(2)),
            item("c", json!(3)),
            item("d", json!(4)),
        ]);
        st.get_mut("a").unwrap().missing = 1;
        st.get_mut("b").unwrap().missing = 1;
        // a comes back changed, b unchanged, c goes missing, d vanishes for good, e is new.
        st.get_mut("d").unwrap().missing = 1;
        let new = [
            item("e", json!(5)),
            item("b", json!(2)),
            item("a", json!(10)),
        ];
        let o = Options {
            after_missing: 2,
            max_fraction: 1.0,
            ..opts()
        };
        let mut stored: Vec<(String, Stored)> = st.clone().into_iter().collect();
        stored.sort_by(|x, y| x.0.cmp(&y.0));
        let by_key = crate::extract::key_order(&new);
        let p = plan(stored.into_iter().map(Ok::<_, ()>), &new, &by_key, o).unwrap();
        let d = diff(&st, &new, o);
        assert_eq!(p.stored_before, 4);
        assert_eq!(p.stored_after, stored_after(&st, &d.writes));
        assert_eq!(p.absent_after, absent_after(&st, &d.writes));
        assert_eq!((p.stored_after, p.absent_after), (4, 1));
        // Listing order for puts and found items, key order for the absent ones.
        assert_eq!(
            p.puts,
            [
                (0, Some(ChangeKind::Created)),
                (2, Some(ChangeKind::Updated))
            ]
        );
        assert_eq!(p.found, [1]);
        assert_eq!(
            p.absent,
            [
                ("c".to_string(), Absence::Missing(1)),
                ("d".to_string(), Absence::Deleted)
            ]
        );
        // A stored state that fails to read fails the plan.
        let failing = [Err::<(String, Stored), &str>("disk")];
        assert_eq!(plan(failing, &new, &by_key, o), Err("disk"));
    }

    #[test]
    fn deletes_wait_for_after_missing_and_reappearing_resets() {
        let old = [
            item("a", json!(1)),
            item("b", json!(2)),
            item("c", json!(3)),
            item("d", json!(4)),
        ];
        let mut st = state(&old);
        let now = [
            item("a", json!(1)),
            item("b", json!(2)),
            item("c", json!(3)),
        ];
        let o = Options {
            after_missing: 2,
            ..opts()
        };
        let d1 = diff(&st, &now, o);
        assert!(d1.changes.is_empty());
        assert_eq!(
            d1.writes,
            [Write::Missing {
                key: "d".into(),
                missing: 1
            }]
        );
        assert_eq!(absent_after(&st, &d1.writes), 1);
        st.get_mut("d").unwrap().missing = 1;
        let d2 = diff(&st, &now, o);
        assert_eq!(absent_after(&st, &d2.writes), 0);
        assert_eq!(stored_after(&st, &d2.writes), 3);
        assert_eq!(stored_after(&st, &d1.writes), 4);
        assert_eq!(kinds(&d2), [(ChangeKind::Deleted, "d")]);
        // Back before the second absence: the counter resets, no event.
        let d3 = diff(&st, &old, o);
        assert_eq!(absent_after(&st, &d3.writes), 0);
        assert!(d3.changes.is_empty());
        assert_eq!(
            d3.writes,
            [Write::Missing {
                key: "d".into(),
                missing: 0
            }]
        );
    }

    #[test]
    fn incomplete_listing_deletes_nothing() {
        let old = [item("a", json!(1)), item("b", json!(2))];
        let d = diff(
            &state(&old),
            &old[..1],
            Options {
                complete: false,
                ..opts()
            },
        );
        assert_eq!(d, Diff::default());
    }

    #[test]
    fn mass_delete_is_held_back() {
        let old: Vec<Item<'static>> = (0..10).map(|i| item(&i.to_string(), json!(i))).collect();
        let d = diff(&state(&old), &[], opts());
        assert!(d.changes.is_empty() && d.writes.is_empty());
        assert_eq!(
            d.held_back,
            Some(HeldBack {
                vanishing: 10,
                stored: 10
            })
        );
        // Exactly half may go.
        let d = diff(&state(&old), &old[..5], opts());
        assert_eq!(d.count(ChangeKind::Deleted), 5);
        assert_eq!(d.held_back, None);
        // A document becoming empty is a delete, not a mass delete.
        let doc = [item("$", json!({"v": 1}))];
        let d = diff(
            &state(&doc),
            &[],
            Options {
                document: true,
                ..opts()
            },
        );
        assert_eq!(kinds(&d), [(ChangeKind::Deleted, "$")]);
    }
}
