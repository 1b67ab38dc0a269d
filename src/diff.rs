//! Stored state + new items -> changes and state writes. Pure: no I/O, no clock.

use crate::extract::{Hash, Item};
use std::collections::{HashMap, HashSet};

/// What the store remembers of one item (its value is loaded only when a change needs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub hash: Hash,
    /// Complete polls in a row the item has been absent from.
    pub missing: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
}

/// One detected change. `item` indexes the new items (None for deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub key: String,
    pub item: Option<usize>,
}

/// One write to the item state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// Compare against the stored state.
    No,
    /// First poll (or a changed definition): remember everything, report nothing.
    Silent,
    /// First poll with `first_poll: emit`: remember everything, report each item as created.
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
}

/// A mass delete that was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldBack {
    pub vanishing: usize,
    pub stored: usize,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Diff {
    pub changes: Vec<Change>,
    pub writes: Vec<Write>,
    pub held_back: Option<HeldBack>,
}

impl Diff {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }
}

pub fn diff(stored: &HashMap<String, Stored>, items: &[Item], opts: Options) -> Diff {
    let mut d = Diff::default();
    if opts.baseline != Baseline::No {
        let present: HashSet<&str> = items.iter().map(|i| i.key.as_str()).collect();
        for (i, item) in items.iter().enumerate() {
            if opts.baseline == Baseline::Emit {
                d.changes.push(Change {
                    kind: ChangeKind::Created,
                    key: item.key.clone(),
                    item: Some(i),
                });
            }
            d.writes.push(Write::Put {
                key: item.key.clone(),
                item: i,
            });
        }
        let mut stale: Vec<&String> = stored
            .keys()
            .filter(|k| !present.contains(k.as_str()))
            .collect();
        stale.sort();
        d.writes
            .extend(stale.into_iter().map(|k| Write::Remove { key: k.clone() }));
        return d;
    }

    let mut present = HashSet::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        present.insert(item.key.as_str());
        match stored.get(&item.key) {
            None => {
                d.changes.push(Change {
                    kind: ChangeKind::Created,
                    key: item.key.clone(),
                    item: Some(i),
                });
                d.writes.push(Write::Put {
                    key: item.key.clone(),
                    item: i,
                });
            }
            Some(s) if s.hash != item.hash => {
                d.changes.push(Change {
                    kind: ChangeKind::Updated,
                    key: item.key.clone(),
                    item: Some(i),
                });
                d.writes.push(Write::Put {
                    key: item.key.clone(),
                    item: i,
                });
            }
            Some(s) if s.missing > 0 => d.writes.push(Write::Missing {
                key: item.key.clone(),
                missing: 0,
            }),
            Some(_) => {}
        }
    }
    if !opts.complete {
        return d;
    }

    let mut absent: Vec<(&String, &Stored)> = stored
        .iter()
        .filter(|(k, _)| !present.contains(k.as_str()))
        .collect();
    absent.sort_by(|a, b| a.0.cmp(b.0));
    let vanishing = absent
        .iter()
        .filter(|(_, s)| s.missing + 1 >= opts.after_missing)
        .count();
    let guard = !opts.document
        && vanishing > 0
        && vanishing as f64 > opts.max_fraction * stored.len() as f64;
    if guard {
        d.held_back = Some(HeldBack {
            vanishing,
            stored: stored.len(),
        });
        return d;
    }
    for (key, s) in absent {
        if s.missing + 1 >= opts.after_missing {
            d.changes.push(Change {
                kind: ChangeKind::Deleted,
                key: key.clone(),
                item: None,
            });
            d.writes.push(Write::Remove { key: key.clone() });
        } else {
            d.writes.push(Write::Missing {
                key: key.clone(),
                missing: s.missing + 1,
            });
        }
    }
    d
}

/// How many items are stored once `writes` are applied.
pub fn stored_after(stored: &HashMap<String, Stored>, writes: &[Write]) -> usize {
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
pub fn absent_after(stored: &HashMap<String, Stored>, writes: &[Write]) -> usize {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::{canonical, hash};
    use serde_json::json;

    fn item(key: &str, v: serde_json::Value) -> Item<'static> {
        let value = canonical(&v);
        Item {
            key: key.into(),
            hash: hash(&value),
            value: crate::extract::ItemValue::Parsed(std::borrow::Cow::Owned(value)),
        }
    }

    fn state(items: &[Item]) -> HashMap<String, Stored> {
        items
            .iter()
            .map(|i| {
                (
                    i.key.clone(),
                    Stored {
                        hash: i.hash,
                        missing: 0,
                    },
                )
            })
            .collect()
    }

    fn opts() -> Options {
        Options {
            baseline: Baseline::No,
            complete: true,
            after_missing: 1,
            max_fraction: 0.5,
            document: false,
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
