//! include/exclude: what part of an item pollhook keeps, compares and sends. Its own room
//! because it rebuilds values from JSONPath matches, which the rest of extract never does.

use super::{Hash, hash};
use crate::config::Items;
use jsonpath_rust::parser::model::{Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::queryable::Queryable;
use serde_json::{Map, Value};
use std::borrow::Cow;

pub(super) fn is_shaped(spec: &Items) -> bool {
    !(spec.include.is_empty() && spec.exclude.is_empty())
}

/// The item's value after include/exclude, and its hash.
pub(super) fn shaped<'a>(v: Cow<'a, Value>, spec: &Items) -> (Cow<'a, Value>, Hash) {
    let value = if is_shaped(spec) {
        Cow::Owned(shape(&v, spec))
    } else {
        v
    };
    let hash = hash(&value);
    (value, hash)
}

/// Applies `include` (only these parts) then `exclude` (never these parts).
fn shape(v: &Value, spec: &Items) -> Value {
    let mut out = if spec.include.is_empty() {
        v.clone()
    } else {
        let mut out = Value::Object(Map::new());
        for p in &spec.include {
            for normalized in p.select_paths(v) {
                let Some(segments) = segments(&normalized) else {
                    continue;
                };
                if let Some(part) = v.reference(normalized.as_str()) {
                    put(&mut out, &segments, part.clone());
                }
            }
        }
        out
    };
    for p in &spec.exclude {
        let _ = out.delete_by_path(p.as_str());
    }
    out
}

enum Seg {
    Name(String),
    Index(usize),
}

/// A normalized path (`$['a'][0]`) as names and indices.
fn segments(normalized: &str) -> Option<Vec<Seg>> {
    let q = parse_json_path(normalized).ok()?;
    q.segments
        .into_iter()
        .map(|s| match s {
            Segment::Selector(Selector::Name(n)) => Some(Seg::Name(n)),
            Segment::Selector(Selector::Index(i)) => usize::try_from(i).ok().map(Seg::Index),
            _ => None,
        })
        .collect()
}

/// Writes `part` at `path` inside `out`, creating objects and arrays on the way.
fn put(out: &mut Value, path: &[Seg], part: Value) {
    let Some((first, rest)) = path.split_first() else {
        *out = part;
        return;
    };
    match first {
        Seg::Name(n) => {
            if !out.is_object() {
                *out = Value::Object(Map::new());
            }
            let slot = out
                .as_object_mut()
                .map(|m| m.entry(n.clone()).or_insert(Value::Null));
            if let Some(slot) = slot {
                put(slot, rest, part);
            }
        }
        Seg::Index(i) => {
            if !out.is_array() {
                *out = Value::Array(Vec::new());
            }
            if let Some(a) = out.as_array_mut() {
                if a.len() <= *i {
                    a.resize(*i + 1, Value::Null);
                }
                put(&mut a[*i], rest, part);
            }
        }
    }
}
