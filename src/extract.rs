//! From a response document to keyed items: JSONPath select, key, include/exclude, and the
//! canonical form that makes comparison by value (key order and `1` vs `1.0` do not count).
//! Pure: values in, values out.

use crate::config::Items;
use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use jsonpath_rust::query::queryable::Queryable;
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::fmt;

/// A JSONPath, parsed once at load.
#[derive(Clone)]
pub struct Path {
    text: String,
    query: JpQuery,
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, String> {
        let query = parse_json_path(text).map_err(|e| one_line(&e.to_string()))?;
        Ok(Path {
            text: text.to_string(),
            query,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The values this path selects in `v`, in document order.
    pub fn select<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        match js_path_process(&self.query, v) {
            Ok(refs) => refs.into_iter().map(|r| r.val()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The normalized paths (`$['a'][0]`) of the values this path selects.
    fn select_paths(&self, v: &Value) -> Vec<String> {
        match js_path_process(&self.query, v) {
            Ok(refs) => refs.into_iter().map(|r| r.path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// pest's multi-line error as one line: `at column N: expected …`.
fn one_line(msg: &str) -> String {
    let column = msg
        .lines()
        .find_map(|l| l.split_once("--> ").map(|(_, pos)| pos.trim()))
        .and_then(|pos| pos.split(':').nth(1))
        .map(|c| format!("at column {c}: "))
        .unwrap_or_default();
    let what = msg
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .unwrap_or_else(|| msg.lines().next().unwrap_or_default().trim());
    format!("{column}{what}")
}

/// A content hash of an item's canonical form: two items are the same iff their hashes are.
pub type Hash = [u8; 16];

/// One item of a listing. Its value is borrowed from the response where it can be (no
/// include/exclude), so an unchanged item costs a hash and no copy; [`Item::canonical`] gives
/// the canonical form for storing and sending, for the items that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    pub key: String,
    pub value: Cow<'a, Value>,
    /// The hash of the canonical form.
    pub hash: Hash,
}

impl Item<'_> {
    /// The canonical form: integral numbers as integers (`1.0` -> `1`).
    pub fn canonical(&self) -> Value {
        canonical(&self.value)
    }
}

/// Why a response cannot be turned into items; the poll then fails and changes nothing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExtractError {
    #[error("item {index} has no usable key at `{path}`: {reason}")]
    NoKey {
        index: usize,
        path: String,
        reason: String,
    },
    #[error("two items share the key `{key}` (items {first} and {second})")]
    DuplicateKey {
        key: String,
        first: usize,
        second: usize,
    },
}

/// The key of document mode.
pub const DOCUMENT_KEY: &str = "$";

/// Turns a response document into items, in selection order.
pub fn extract<'a>(doc: &'a Value, spec: &Items) -> Result<Vec<Item<'a>>, ExtractError> {
    extract_pages(std::slice::from_ref(doc), spec)
}

/// Turns the pages of a listing into items: the selection runs over every page and the
/// results are concatenated in page order, as if the pages were one document. Keys must be
/// unique across pages; item indices in errors count across pages.
pub fn extract_pages<'a>(pages: &'a [Value], spec: &Items) -> Result<Vec<Item<'a>>, ExtractError> {
    let selected: Vec<&Value> = pages.iter().flat_map(|p| spec.select.select(p)).collect();
    let Some(key_path) = &spec.key else {
        // Document mode: the selection as a whole is one item; nothing (or null) is no item.
        let whole = match selected.len() {
            0 => return Ok(Vec::new()),
            1 if selected[0].is_null() => return Ok(Vec::new()),
            1 => Cow::Borrowed(selected[0]),
            _ => Cow::Owned(Value::Array(selected.into_iter().cloned().collect())),
        };
        return Ok(vec![item(DOCUMENT_KEY.to_string(), whole, spec)]);
    };
    let mut out = Vec::with_capacity(selected.len());
    let mut seen = std::collections::HashMap::with_capacity(selected.len());
    for (index, v) in selected.into_iter().enumerate() {
        let key = key_of(v, key_path).map_err(|reason| ExtractError::NoKey {
            index,
            path: key_path.as_str().to_string(),
            reason,
        })?;
        if let Some(first) = seen.insert(key.clone(), index) {
            return Err(ExtractError::DuplicateKey {
                key,
                first,
                second: index,
            });
        }
        out.push(item(key, Cow::Borrowed(v), spec));
    }
    Ok(out)
}

fn item<'a>(key: String, v: Cow<'a, Value>, spec: &Items) -> Item<'a> {
    let value = if spec.include.is_empty() && spec.exclude.is_empty() {
        v
    } else {
        Cow::Owned(shape(&v, spec))
    };
    let hash = hash(&value);
    Item { key, value, hash }
}

fn key_of(v: &Value, path: &Path) -> Result<String, String> {
    let found = path.select(v);
    match found.as_slice() {
        [] => Err("nothing there".into()),
        [Value::String(s)] if s.is_empty() => Err("an empty string".into()),
        [Value::String(s)] => Ok(s.clone()),
        [Value::Number(n)] => Ok(canonical_number(n).to_string()),
        [other] => Err(format!("{}, not a string or number", type_name(other))),
        many => Err(format!("{} values, not one", many.len())),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
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

/// The canonical form: numbers with an integral value become integers (`1.0` -> `1`).
/// Object key order never matters: serde_json's map is ordered by key.
pub fn canonical(v: &Value) -> Value {
    match v {
        Value::Number(n) => Value::Number(canonical_number(n)),
        Value::Array(a) => Value::Array(a.iter().map(canonical).collect()),
        Value::Object(m) => {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect())
        }
        other => other.clone(),
    }
}

fn canonical_number(n: &Number) -> Number {
    if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
        if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            return Number::from(f as i64);
        }
    }
    n.clone()
}

/// Hash of a value's canonical form (numbers canonical, keys in sorted order, whatever map
/// type serde_json is built with), computed without building that form.
pub fn hash(v: &Value) -> Hash {
    let mut h = Sha256::new();
    feed(&mut h, v);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn feed(h: &mut Sha256, v: &Value) {
    match v {
        Value::Null => h.update(b"n"),
        Value::Bool(b) => h.update(if *b { b"t" } else { b"f" }),
        Value::Number(n) => {
            // Canonical, so that a value and its canonical form hash alike.
            h.update(b"#");
            h.update(canonical_number(n).to_string().as_bytes());
            h.update(b";");
        }
        Value::String(s) => {
            h.update(b"s");
            h.update((s.len() as u64).to_be_bytes());
            h.update(s.as_bytes());
        }
        Value::Array(a) => {
            h.update(b"[");
            h.update((a.len() as u64).to_be_bytes());
            for x in a {
                feed(h, x);
            }
        }
        Value::Object(m) => {
            h.update(b"{");
            h.update((m.len() as u64).to_be_bytes());
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            for k in keys {
                h.update((k.len() as u64).to_be_bytes());
                h.update(k.as_bytes());
                feed(h, &m[k]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(select: &str, key: Option<&str>, include: &[&str], exclude: &[&str]) -> Items {
        Items {
            select: Path::parse(select).unwrap(),
            key: key.map(|k| Path::parse(k).unwrap()),
            include: include.iter().map(|p| Path::parse(p).unwrap()).collect(),
            exclude: exclude.iter().map(|p| Path::parse(p).unwrap()).collect(),
        }
    }

    #[test]
    fn keys_are_strings_and_numbers_canonical() {
        let doc = json!({"data": [{"id": 1.0, "a": 1}, {"id": "x", "a": 2}, {"id": 7, "a": 3.0}]});
        let items = extract(&doc, &spec("$.data[*]", Some("$.id"), &[], &[])).unwrap();
        let keys: Vec<_> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["1", "x", "7"]);
        assert_eq!(items[2].canonical(), json!({"id": 7, "a": 3}));
    }

    #[test]
    fn same_value_same_hash_whatever_the_order_or_number_form() {
        let a: Value = serde_json::from_str(r#"{"b": [1, 2.0], "a": {"y": 1, "x": 1.0}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": 1, "y": 1.00}, "b": [1.0, 2]}"#).unwrap();
        assert_eq!(hash(&canonical(&a)), hash(&canonical(&b)));
        // A value hashes as its canonical form does (items are hashed without building it).
        assert_eq!(hash(&a), hash(&canonical(&a)));
        assert_eq!(hash(&a), hash(&b));
        assert_eq!(canonical(&a), canonical(&b));
        let c: Value = serde_json::from_str(r#"{"a": {"x": 1, "y": 1.5}, "b": [1, 2]}"#).unwrap();
        assert_ne!(hash(&canonical(&a)), hash(&canonical(&c)));
        // A string "1" is not the number 1.
        assert_ne!(hash(&json!("1")), hash(&json!(1)));
    }

    #[test]
    fn bad_keys_are_errors() {
        let s = spec("$[*]", Some("$.id"), &[], &[]);
        let e = extract(&json!([{"id": 1}, {"name": "x"}]), &s).unwrap_err();
        assert_eq!(
            e,
            ExtractError::NoKey {
                index: 1,
                path: "$.id".into(),
                reason: "nothing there".into()
            }
        );
        let e = extract(&json!([{"id": {"a": 1}}]), &s).unwrap_err();
        assert!(
            e.to_string().contains("an object, not a string or number"),
            "{e}"
        );
        let e = extract(&json!([{"id": 1}, {"id": 2}, {"id": 1.0}]), &s).unwrap_err();
        assert_eq!(
            e,
            ExtractError::DuplicateKey {
                key: "1".into(),
                first: 0,
                second: 2
            }
        );
        assert_eq!(e.to_string(), "two items share the key `1` (items 0 and 2)");
    }

    #[test]
    fn include_and_exclude_shape_the_item() {
        let doc = json!([{"id": 1, "name": "n", "body": "b", "reactions": {"+1": 3}, "user": {"login": "u", "id": 9}}]);
        let inc = extract(
            &doc,
            &spec("$[*]", Some("$.id"), &["$.name", "$.user.login"], &[]),
        )
        .unwrap();
        assert_eq!(
            inc[0].canonical(),
            json!({"name": "n", "user": {"login": "u"}})
        );
        let exc = extract(
            &doc,
            &spec("$[*]", Some("$.id"), &[], &["$.reactions", "$.user.id"]),
        )
        .unwrap();
        assert_eq!(
            exc[0].canonical(),
            json!({"id": 1, "name": "n", "body": "b", "user": {"login": "u"}})
        );
    }

    #[test]
    fn document_mode() {
        let s = spec("$.info", None, &[], &[]);
        let doc = json!({"info": {"v": "1.0"}});
        let items = extract(&doc, &s).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].key, "$");
        assert!(extract(&json!({"other": 1}), &s).unwrap().is_empty());
        assert!(extract(&json!({"info": null}), &s).unwrap().is_empty());
        let pair = json!([1, 2]);
        let many = extract(&pair, &spec("$[*]", None, &[], &[])).unwrap();
        assert_eq!(many[0].canonical(), json!([1, 2]));
    }

    #[test]
    fn pages_concatenate_in_order_and_keys_stay_unique_across_them() {
        let s = spec("$.items[*]", Some("$.id"), &[], &[]);
        let pages = [
            json!({"items": [{"id": 1}, {"id": 2}]}),
            json!({"items": []}),
            json!({"items": [{"id": 3}]}),
        ];
        let keys: Vec<String> = extract_pages(&pages, &s)
            .unwrap()
            .into_iter()
            .map(|i| i.key)
            .collect();
        assert_eq!(keys, ["1", "2", "3"]);
        let dup = [json!({"items": [{"id": 1}]}), json!({"items": [{"id": 1}]})];
        assert_eq!(
            extract_pages(&dup, &s).unwrap_err().to_string(),
            "two items share the key `1` (items 0 and 1)"
        );
        // Document mode over pages: the selections together are the document.
        let d = spec("$.v", None, &[], &[]);
        let pages = [json!({"v": 1}), json!({"v": 2})];
        let items = extract_pages(&pages, &d).unwrap();
        assert_eq!(items[0].canonical(), json!([1, 2]));
    }

    #[test]
    fn filters_select() {
        let doc = json!({"data": [{"id": 1, "status": "paid"}, {"id": 2, "status": "open"}]});
        let items = extract(
            &doc,
            &spec("$.data[?(@.status == 'paid')]", Some("$.id"), &[], &[]),
        )
        .unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].key, "1");
    }
}
