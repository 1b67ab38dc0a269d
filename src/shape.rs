//! Shape drift (docs/testing-bridges.md#shape-drift): the shape a bridge's items have (the JSON
//! paths every item has, with their JSON types, and the usual number of items `select`
//! matches), learnt from its polls, and what tells a drift from it. Pure: items in, a [`Seen`]
//! out; a [`Learnt`] and a [`Seen`] in, the [`Change`]s out. The poll decides what a drift does
//! (`poll::shape`); the store keeps the [`Learnt`] with the bridge's meta.
//!
//! Small by construction: at most [`MAX_PATHS`] paths (array indexes generalised to `[*]`, as
//! churn counts them), at most [`MAX_DEPTH`] levels deep, and the counts of the last
//! [`COUNTS`] polls.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// Paths tracked per bridge; a path first met when the table is full is not tracked.
pub const MAX_PATHS: usize = 64;
/// Levels below the item that are walked (`$.a.b.c` is 3).
pub const MAX_DEPTH: usize = 6;
/// Item counts kept (of the last polls that changed the count); the usual count is their
/// median.
pub const COUNTS: usize = 5;
/// `select` drifts when it matches fewer than a tenth of the usual count...
pub const FRACTION: usize = 10;
/// ...and the usual count is at least this (a list of 2 that empties is not a drift).
pub const MIN_USUAL: usize = 3;

/// The JSON types, one bit each, in the order they are named.
const TYPES: [&str; 6] = ["null", "boolean", "number", "string", "array", "object"];

/// The shape a bridge has learnt, kept in its stored meta.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Learnt {
    /// The paths every item had, with their types (`"string"`, `"null|number"`).
    pub paths: BTreeMap<String, String>,
    /// The item counts of the last polls that changed it, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<usize>,
    /// A drift that was announced and not yet accepted (nor gone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift: Option<Drift>,
}

/// An announced drift: what changed, and the shape found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Drift {
    /// Unix ms of the poll that found it.
    pub since_ms: i64,
    pub changes: Vec<Change>,
    /// The shape the poll found: what `accept-shape` learns.
    pub after: Summary,
    /// `emit.shape: hold`: the bridge's polls are held.
    pub held: bool,
}

/// A shape as events and status show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub paths: BTreeMap<String, String>,
    pub items: usize,
}

/// One way a shape drifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "lowercase")]
pub enum Change {
    /// A path every item had is in none of them.
    Gone { path: String, before: String },
    /// A path's values are all of types it never had.
    Type {
        path: String,
        before: String,
        after: String,
    },
    /// `select` matched nothing, or fewer than a tenth of the usual count.
    Count { before: usize, after: usize },
}

impl Change {
    /// Two drifts are the same when the same paths changed the same way: how few items a
    /// count drift found does not make another drift.
    fn same(&self, other: &Change) -> bool {
        match (self, other) {
            (Change::Count { .. }, Change::Count { .. }) => true,
            (a, b) => a == b,
        }
    }

    /// One line: `$.name gone (was string)`.
    pub fn line(&self) -> String {
        match self {
            Change::Gone { path, before } => format!("{path} gone (was {before})"),
            Change::Type {
                path,
                before,
                after,
            } => format!("{path} is {after} (was {before})"),
            Change::Count { before, after } => {
                format!("select matched {after} items (usually {before})")
            }
        }
    }
}

/// The changes of a drift, on one line.
pub fn lines(changes: &[Change]) -> String {
    let all: Vec<String> = changes.iter().map(Change::line).collect();
    all.join(", ")
}

/// Whether two lists of changes are the same drift.
pub fn same(a: &[Change], b: &[Change]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same(y))
}

/// What one poll's items look like.
#[derive(Debug, Default, Clone)]
pub struct Seen {
    pub items: usize,
    /// Per path: in how many items, of which types (bits of [`TYPES`]), and the last item
    /// counted (so an array counts once per item).
    paths: HashMap<String, (usize, u8, usize)>,
}

impl Seen {
    /// Ready to look at a poll's items, tracking `learnt`'s paths first, so a full table
    /// never hides one of them.
    pub fn watching(learnt: Option<&Learnt>) -> Seen {
        let mut s = Seen::default();
        for p in learnt.into_iter().flat_map(|l| l.paths.keys()) {
            s.paths.insert(p.clone(), (0, 0, usize::MAX));
        }
        s
    }

    /// Counts one item.
    pub fn add(&mut self, item: &Value) {
        let n = self.items;
        self.items += 1;
        let mut path = String::from("$");
        self.walk(item, &mut path, 0, n);
    }

    fn walk(&mut self, v: &Value, path: &mut String, depth: usize, n: usize) {
        if depth > 0 {
            self.note(path, v, n);
        }
        if depth >= MAX_DEPTH {
            return;
        }
        let len = path.len();
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    push_name(path, k);
                    self.walk(child, path, depth + 1, n);
                    path.truncate(len);
                }
            }
            Value::Array(a) => {
                path.push_str("[*]");
                for child in a {
                    self.walk(child, path, depth + 1, n);
                }
                path.truncate(len);
            }
            _ => {}
        }
    }

    fn note(&mut self, path: &str, v: &Value, n: usize) {
        self.note_bit(path, 1u8 << type_index(v), n);
    }

    fn note_bit(&mut self, path: &str, bit: u8, n: usize) {
        if let Some(e) = self.paths.get_mut(path) {
            if e.2 != n {
                e.0 += 1;
                e.2 = n;
            }
            e.1 |= bit;
        } else if self.paths.len() < MAX_PATHS {
            self.paths.insert(path.to_string(), (1, bit, n));
        }
    }

    /// The paths every item had, with their types.
    pub fn summary(&self) -> Summary {
        let paths = self
            .paths
            .iter()
            .filter(|(_, e)| self.items > 0 && e.0 == self.items)
            .map(|(p, e)| (p.clone(), type_names(e.1)))
            .collect();
        Summary {
            paths,
            items: self.items,
        }
    }
}

impl Seen {
    /// Counts one item from its JSON text, read as it is walked: no tree is built, so an item
    /// of a million keys costs no more memory than its text.
    pub fn add_text(&mut self, text: &str) -> Result<(), serde_json::Error> {
        let n = self.items;
        self.items += 1;
        let mut path = String::from("$");
        let mut de = serde_json::Deserializer::from_str(text);
        let walk = Walk {
            seen: self,
            path: &mut path,
            depth: 0,
            n,
        };
        serde::de::DeserializeSeed::deserialize(walk, &mut de)?;
        de.end()
    }
}

/// serde_json's name for an exact number (`arbitrary_precision`): a map of this one key.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// One value of an item's text, at `path`, `depth` levels below the item.
struct Walk<'s> {
    seen: &'s mut Seen,
    path: &'s mut String,
    depth: usize,
    n: usize,
}

impl Walk<'_> {
    fn note(&mut self, type_index: usize) {
        if self.depth > 0 {
            let bit = 1u8 << type_index;
            self.seen.note_bit(self.path, bit, self.n);
        }
    }

    fn child(&mut self) -> Walk<'_> {
        Walk {
            seen: self.seen,
            path: self.path,
            depth: self.depth + 1,
            n: self.n,
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// An object's key, written onto the path.
struct Name<'s>(&'s mut String);

impl<'de> serde::de::DeserializeSeed<'de> for Name<'_> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for Name<'_> {
    /// False for serde_json's exact-number token.
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a key")
    }
    fn visit_str<E>(self, k: &str) -> Result<bool, E> {
        if k == NUMBER_TOKEN {
            return Ok(false);
        }
        push_name(self.0, k);
        Ok(true)
    }
}

impl<'de> serde::de::Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(mut self) -> Result<(), E> {
        self.note(0);
        Ok(())
    }
    fn visit_bool<E>(mut self, _: bool) -> Result<(), E> {
        self.note(1);
        Ok(())
    }
    fn visit_i64<E>(mut self, _: i64) -> Result<(), E> {
        self.note(2);
        Ok(())
    }
    fn visit_u64<E>(mut self, _: u64) -> Result<(), E> {
        self.note(2);
        Ok(())
    }
    fn visit_f64<E>(mut self, _: f64) -> Result<(), E> {
        self.note(2);
        Ok(())
    }
    fn visit_str<E>(mut self, _: &str) -> Result<(), E> {
        self.note(3);
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut a: A) -> Result<(), A::Error> {
        use serde::de::IgnoredAny;
        self.note(4);
        if self.depth >= MAX_DEPTH {
            while a.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(());
        }
        let len = self.path.len();
        self.path.push_str("[*]");
        while a.next_element_seed(self.child())?.is_some() {}
        self.path.truncate(len);
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(mut self, mut m: A) -> Result<(), A::Error> {
        use serde::de::IgnoredAny;
        let len = self.path.len();
        let mut first = true;
        while let Some(named) = m.next_key_seed(Name(self.path))? {
            if !named {
                // An exact number: `{TOKEN: "1.50"}`.
                self.note(2);
                return m.next_value::<IgnoredAny>().map(|_| ());
            }
            if std::mem::take(&mut first) {
                // Noted at its own path, before the key was written onto it.
                let key = self.path.split_off(len);
                self.note(5);
                self.path.push_str(&key);
            }
            if self.depth >= MAX_DEPTH {
                m.next_value::<IgnoredAny>()?;
            } else {
                m.next_value_seed(self.child())?;
            }
            self.path.truncate(len);
        }
        if first {
            self.note(5);
        }
        Ok(())
    }
}

fn type_index(v: &Value) -> usize {
    match v {
        Value::Null => 0,
        Value::Bool(_) => 1,
        Value::Number(_) => 2,
        Value::String(_) => 3,
        Value::Array(_) => 4,
        Value::Object(_) => 5,
    }
}

fn type_names(bits: u8) -> String {
    let names: Vec<&str> = (0..TYPES.len())
        .filter(|i| bits & (1 << i) != 0)
        .map(|i| TYPES[i])
        .collect();
    names.join("|")
}

fn type_bits(names: &str) -> u8 {
    names
        .split('|')
        .filter_map(|n| TYPES.iter().position(|t| *t == n))
        .fold(0, |b, i| b | (1 << i))
}

/// `.name` for a plain name, `["a b"]` for any other, as churn writes paths.
fn push_name(path: &mut String, name: &str) {
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        path.push('.');
        path.push_str(name);
    } else {
        path.push_str(&format!("[{}]", Value::from(name)));
    }
}

/// The usual number of items: the median of the counts kept (the larger middle one of an
/// even number), None before any.
pub fn usual(counts: &[usize]) -> Option<usize> {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied()
}

/// How `seen` drifted from `learnt`. `counted`: this poll's count means something (a complete
/// listing that is not incremental).
pub fn compare(learnt: &Learnt, seen: &Seen, counted: bool) -> Vec<Change> {
    let mut changes = Vec::new();
    if seen.items > 0 {
        for (path, before) in &learnt.paths {
            let (n, bits, _) = seen.paths.get(path).copied().unwrap_or_default();
            if n == 0 {
                changes.push(Change::Gone {
                    path: path.clone(),
                    before: before.clone(),
                });
            } else if bits & type_bits(before) == 0 {
                changes.push(Change::Type {
                    path: path.clone(),
                    before: before.clone(),
                    after: type_names(bits),
                });
            }
        }
    }
    if let Some(usual) = usual(&learnt.counts).filter(|_| counted) {
        if usual >= MIN_USUAL && seen.items * FRACTION < usual {
            changes.push(Change::Count {
                before: usual,
                after: seen.items,
            });
        }
    }
    changes
}

/// What a poll that did not drift learns: the paths every item had now, each with the types
/// learnt before as well (a field that was a number and is now sometimes null is
/// `null|number`), and its count. A poll of no items keeps the paths.
pub fn learn(before: Option<&Learnt>, seen: &Seen, counted: bool) -> Learnt {
    let mut paths = seen.summary().paths;
    if seen.items == 0 {
        paths = before.map(|l| l.paths.clone()).unwrap_or_default();
    }
    for (p, types) in paths.iter_mut() {
        if let Some(old) = before.and_then(|l| l.paths.get(p)) {
            *types = type_names(type_bits(types) | type_bits(old));
        }
    }
    let mut counts = before.map(|l| l.counts.clone()).unwrap_or_default();
    // A count like the last is not kept again: an unchanged listing writes nothing.
    if counted && counts.last() != Some(&seen.items) {
        counts.push(seen.items);
        let extra = counts.len().saturating_sub(COUNTS);
        counts.drain(..extra);
    }
    Learnt {
        paths,
        counts,
        drift: None,
    }
}

impl Learnt {
    /// The shape as events and status show it.
    pub fn summary(&self) -> Summary {
        Summary {
            paths: self.paths.clone(),
            items: usual(&self.counts).unwrap_or(0),
        }
    }

    /// `accept-shape`: the drifted shape becomes the learnt one. None without a drift.
    pub fn accept(&self) -> Option<Learnt> {
        let d = self.drift.as_ref()?;
        Some(Learnt {
            paths: d.after.paths.clone(),
            counts: vec![d.after.items],
            drift: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn seen(items: &[Value], learnt: Option<&Learnt>) -> Seen {
        let mut s = Seen::watching(learnt);
        for i in items {
            s.add(i);
        }
        s
    }

    fn learnt_from(items: &[Value]) -> Learnt {
        learn(None, &seen(items, None), true)
    }

    fn many(n: usize, f: impl Fn(usize) -> Value) -> Vec<Value> {
        (0..n).map(f).collect()
    }

    #[test]
    fn paths_every_item_has_with_types_array_indexes_generalised() {
        let l = learnt_from(&[
            json!({"id": 1, "name": "a", "tags": [{"t": "x"}, {"t": "y"}], "opt": 1}),
            json!({"id": 2, "name": null, "tags": [{"t": "z"}]}),
        ]);
        let paths: Vec<(&str, &str)> = l
            .paths
            .iter()
            .map(|(p, t)| (p.as_str(), t.as_str()))
            .collect();
        assert_eq!(
            paths,
            [
                ("$.id", "number"),
                ("$.name", "null|string"),
                ("$.tags", "array"),
                ("$.tags[*]", "object"),
                ("$.tags[*].t", "string"),
            ]
        );
        assert_eq!(l.counts, [2]);
    }

    #[test]
    fn a_path_every_item_had_gone_from_all_is_a_drift_from_some_is_not() {
        let l = learnt_from(&many(10, |i| json!({"id": i, "name": "n"})));
        let renamed = many(10, |i| json!({"id": i, "title": "n"}));
        let c = compare(&l, &seen(&renamed, Some(&l)), true);
        assert_eq!(
            c,
            [Change::Gone {
                path: "$.name".into(),
                before: "string".into()
            }]
        );
        // Only some items without it: an optional field now, learnt so, no drift.
        let some = many(10, |i| match i {
            0 => json!({"id": i}),
            _ => json!({"id": i, "name": "n"}),
        });
        let s = seen(&some, Some(&l));
        assert!(compare(&l, &s, true).is_empty());
        assert!(!learn(Some(&l), &s, true).paths.contains_key("$.name"));
    }

    #[test]
    fn a_type_never_seen_is_a_drift_a_type_beside_the_old_one_is_learnt() {
        let l = learnt_from(&many(5, |i| json!({"id": i, "price": 10})));
        let strings = many(5, |i| json!({"id": i, "price": "10"}));
        let c = compare(&l, &seen(&strings, Some(&l)), true);
        assert_eq!(
            c,
            [Change::Type {
                path: "$.price".into(),
                before: "number".into(),
                after: "string".into()
            }]
        );
        let some_null = many(
            5,
            |i| json!({"id": i, "price": if i == 0 { Value::Null } else { 10.into() }}),
        );
        let s = seen(&some_null, Some(&l));
        assert!(compare(&l, &s, true).is_empty());
        assert_eq!(learn(Some(&l), &s, true).paths["$.price"], "null|number");
    }

    #[test]
    fn matching_nothing_or_under_a_tenth_of_the_usual_count_is_a_drift_one_deleted_is_not() {
        let item = |i: usize| json!({"id": i});
        let l = learnt_from(&many(100, item));
        let count = |n: usize| compare(&l, &seen(&many(n, item), Some(&l)), true);
        assert_eq!(
            count(0),
            [Change::Count {
                before: 100,
                after: 0
            }]
        );
        assert_eq!(count(9).len(), 1);
        assert!(count(10).is_empty());
        assert!(count(99).is_empty());
        // Not counted (incremental or incomplete): no count drift.
        assert!(compare(&l, &seen(&[], Some(&l)), false).is_empty());
        // A list of 2 that empties is not one.
        let small = learnt_from(&many(2, item));
        assert!(compare(&small, &seen(&[], Some(&small)), true).is_empty());
    }

    #[test]
    fn the_usual_count_is_the_median_of_the_last_polls() {
        let mut l = learnt_from(&many(100, |i| json!({"id": i})));
        for n in [90, 100, 40, 100, 100, 95] {
            l = learn(
                Some(&l),
                &seen(&many(n, |i| json!({"id": i})), Some(&l)),
                true,
            );
        }
        assert_eq!(l.counts, [90, 100, 40, 100, 95]);
        assert_eq!(usual(&l.counts), Some(95));
        // Slowly shrinking: never a drift.
        let mut n = 100;
        while n > 5 {
            n = n * 7 / 10;
            let s = seen(&many(n, |i| json!({"id": i})), Some(&l));
            assert!(compare(&l, &s, true).is_empty(), "{n}");
            l = learn(Some(&l), &s, true);
        }
    }

    #[test]
    fn the_table_is_bounded_and_learnt_paths_are_always_tracked() {
        let wide: serde_json::Map<String, Value> =
            (0..200).map(|i| (format!("k{i:03}"), json!(i))).collect();
        let l = learnt_from(&[Value::Object(wide.clone())]);
        assert_eq!(l.paths.len(), MAX_PATHS);
        let deep = json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}});
        let d = learnt_from(&[deep]);
        assert_eq!(d.paths.keys().last().unwrap(), "$.a.b.c.d.e.f");
        // A learnt path past the others is still seen gone.
        let mut l2 = l.clone();
        l2.paths.insert("$.z".into(), "number".into());
        let c = compare(&l2, &seen(&[Value::Object(wide)], Some(&l2)), true);
        assert_eq!(c.len(), 1, "{c:?}");
    }

    #[test]
    fn an_item_read_from_its_text_has_the_shape_of_its_value() {
        let items = [
            r#"{"id": 1, "price": 1.50, "big": 123456789012345678901234567890, "n": null,
                "tags": [{"t": "x"}, {"t": true}], "e": {}, "a": [], "s": "q\"uote",
                "odd key": {"deep": {"er": {"still": {"more": {"and": {"past": 1}}}}}}}"#,
            r#"{"id": 2, "price": -3, "big": 1e400, "n": 1, "tags": [], "e": {"x": 1},
                "a": [[1]], "s": "", "odd key": {}}"#,
        ];
        let mut text = Seen::default();
        let mut value = Seen::default();
        for i in items {
            text.add_text(i).unwrap();
            value.add(&serde_json::from_str(i).unwrap());
        }
        assert_eq!(text.summary(), value.summary());
        let mut a: Vec<_> = text.paths.iter().collect();
        let mut b: Vec<_> = value.paths.iter().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
        assert_eq!(text.summary().paths["$.price"], "number");
        assert_eq!(text.summary().paths["$[\"odd key\"]"], "object");
    }

    #[test]
    fn a_count_drift_is_the_same_drift_whatever_the_count() {
        let a = [Change::Count {
            before: 100,
            after: 0,
        }];
        let b = [Change::Count {
            before: 100,
            after: 3,
        }];
        assert!(same(&a, &b));
        let gone = Change::Gone {
            path: "$.a".into(),
            before: "string".into(),
        };
        assert!(!same(&a, &[gone]));
    }
}
