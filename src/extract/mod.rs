//! From a response document to keyed items: JSONPath select, key, include/exclude, and the
//! hash that makes comparison by value (key order and `1` vs `1.0` do not count; numbers are
//! compared exactly, see [`crate::number`]). Values are kept as the source wrote them.
//! Pure: values in, values out.

use crate::config::Items;
pub use crate::jsonpath::Path;
use crate::number;

mod canonical;
mod lean;
mod shape;
mod walker;

pub use canonical::hash;
pub use lean::patch;
use serde_json::Value;
use serde_json::value::RawValue;
use shape::{is_shaped, shaped};
use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, OnceLock};
use walker::{select_one, select_text};

/// A content hash of an item's value by value (key order and number notation do not count):
/// two items are the same iff their hashes are.
pub type Hash = [u8; 16];

/// One item of a listing. Its value is borrowed from the response where it can be (no
/// include/exclude), so an unchanged item costs a hash and no copy; [`Item::value`] gives it
/// for storing and sending, for the items that changed. 56 bytes, and no
/// allocation of its own for a key of up to 22 bytes and a value kept as text: a listing of
/// a million items is held whole while it is compared.
#[derive(Debug, Clone, PartialEq)]
pub struct Item<'a> {
    pub key: Key,
    pub value: ItemValue<'a>,
    /// The hash of the value ([`hash`]).
    pub hash: Hash,
}

/// Where an item's value is: in a parsed document, or (a selection read from the text) still
/// as text, parsed again only if the item is stored or sent. (Boxed when parsed, the rarer
/// case: the text variant sets the size.)
#[derive(Debug, Clone)]
pub enum ItemValue<'a> {
    Parsed(Box<Cow<'a, Value>>),
    Text(&'a RawValue),
}

/// An item's key: up to 22 bytes (numeric ids, most string ids) in place, longer ones on the
/// heap. Ordered bytewise, as the store orders keys.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key(KeyRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum KeyRepr {
    Inline { len: u8, bytes: [u8; 22] },
    Heap(Box<str>),
}

impl Key {
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied from a str at a char boundary: always UTF-8.
            KeyRepr::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            KeyRepr::Heap(s) => s,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            KeyRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            KeyRepr::Heap(s) => s.as_bytes(),
        }
    }
}

impl From<&str> for Key {
    fn from(s: &str) -> Key {
        let mut bytes = [0; 22];
        match bytes.get_mut(..s.len()) {
            Some(b) => {
                b.copy_from_slice(s.as_bytes());
                Key(KeyRepr::Inline {
                    len: s.len() as u8,
                    bytes,
                })
            }
            None => Key(KeyRepr::Heap(s.into())),
        }
    }
}

impl From<String> for Key {
    fn from(s: String) -> Key {
        if s.len() <= 22 {
            Key::from(s.as_str())
        } else {
            Key(KeyRepr::Heap(s.into_boxed_str()))
        }
    }
}

impl Ord for Key {
    fn cmp(&self, other: &Key) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Key) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq<str> for Key {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Key {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for ItemValue<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (ItemValue::Parsed(a), ItemValue::Parsed(b)) => a == b,
            (ItemValue::Text(a), ItemValue::Text(b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Item<'_> {
    /// The value as compact JSON text, keys in order (what serde_json writes for its
    /// `Value`): what is stored and sent. An item kept as text is written from its lean tree,
    /// never parsed into a `Value`.
    pub fn canonical_text(&self) -> Result<String, ExtractError> {
        match &self.value {
            ItemValue::Parsed(v) => Ok(v.to_string()),
            ItemValue::Text(raw) => lean::canonical_text(raw.get())
                .map_err(|e| ExtractError::NotJson(format!("an item cannot be read: {e}"))),
        }
    }

    /// The value, as the source wrote it (after include/exclude). An item kept as text is
    /// parsed again: it was parsed once when it was keyed, so this fails only if that did.
    pub fn value(&self) -> Result<Cow<'_, Value>, ExtractError> {
        match &self.value {
            ItemValue::Parsed(v) => Ok(Cow::Borrowed(&***v)),
            ItemValue::Text(raw) => parse_text(raw)
                .map(Cow::Owned)
                .map_err(|e| ExtractError::NotJson(format!("an item cannot be read: {e}"))),
        }
    }
}

/// One page of a listing as the selection sees it: its text (valid JSON), and its parsed form
/// once something needed it (a next link in the body, a selection that cannot run over text).
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub text: Arc<String>,
    parsed: OnceLock<Value>,
}

impl Page {
    pub fn new(text: Arc<String>) -> Page {
        Page {
            text,
            parsed: OnceLock::new(),
        }
    }

    /// A page from a parsed document (its text made from it).
    #[cfg(test)]
    fn from_value(v: Value) -> Page {
        Page {
            text: Arc::new(v.to_string()),
            parsed: OnceLock::from(v),
        }
    }

    /// The parsed form, parsing the text the first time.
    pub fn parsed(&self) -> Result<&Value, serde_json::Error> {
        if let Some(v) = self.parsed.get() {
            return Ok(v);
        }
        let v = serde_json::from_str(&self.text)?;
        Ok(self.parsed.get_or_init(|| v))
    }
}

/// Why a response cannot be turned into items; the poll then fails and changes nothing.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExtractError {
    /// A page or an item that cannot be read as JSON. Pages are checked to be JSON (and not
    /// nested too deep) when they arrive, so this is not expected.
    #[error("{0}")]
    NotJson(String),
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
    #[error("{0} items in one listing; at most 4,294,967,295 are compared")]
    TooMany(usize),
}

/// The key of document mode.
pub const DOCUMENT_KEY: &str = "$";

/// A selected value: in a parsed page, or as text.
enum Selected<'a> {
    Parsed(&'a Value),
    Text(&'a RawValue),
}

/// Items, and their order by key.
#[derive(Debug, Default)]
pub struct Keyed<'a> {
    /// In selection order.
    pub items: Vec<Item<'a>>,
    /// Indices into `items`, in key order (bytewise, as the store keeps them): what a
    /// comparison with the stored state walks along, and how duplicates are found without a
    /// second copy of every key.
    pub by_key: Vec<u32>,
}

/// Turns the pages of a listing into items, with their order by key: the selection runs over
/// every page and the results are concatenated in page order, as if the pages were one
/// document. Keys must be unique across pages; item indices in errors count across pages.
///
/// A selection of names ending in a wildcard over an array (`$.items[*]`, the usual case)
/// is read from the page's text: each item is read on its own (into a lean tree, see
/// `lean`) to be keyed and hashed and then let go, so a large response never exists as one
/// parsed tree. So is a selection of names alone (`$`, `$.data`): one value. Any other
/// selection needs the page parsed; a page whose text does not hold an array at the path is
/// parsed here, so both ways select the same items.
pub fn extract_keyed<'a>(pages: &'a [Page], spec: &Items) -> Result<Keyed<'a>, ExtractError> {
    let selected = select_pages(pages, spec)?;
    match &spec.key {
        Some(key_path) => keyed(selected, key_path, spec),
        None => document(selected, spec),
    }
}

/// What the selection picks on every page, in page order: from the text where it can.
fn select_pages<'a>(pages: &'a [Page], spec: &Items) -> Result<Vec<Selected<'a>>, ExtractError> {
    let mut selected: Vec<Selected<'a>> = Vec::new();
    for p in pages {
        let text = match p.parsed.get() {
            Some(_) => None,
            None => select_text(&p.text, &spec.select)
                .or_else(|| select_one(&p.text, &spec.select).map(|one| one.into_iter().collect())),
        };
        match text {
            Some(raws) => selected.extend(raws.into_iter().map(Selected::Text)),
            None => {
                let v = p
                    .parsed()
                    .map_err(|e| ExtractError::NotJson(format!("a page is not JSON: {e}")))?;
                selected.extend(spec.select.select(v).into_iter().map(Selected::Parsed));
            }
        }
    }
    Ok(selected)
}

/// Document mode: the selection as a whole is one item; nothing (or null) is no item.
fn document<'a>(selected: Vec<Selected<'a>>, spec: &Items) -> Result<Keyed<'a>, ExtractError> {
    // One value read from the text, unshaped: hashed from its lean tree and kept as text, so
    // a document of one wide object is never a `Value`.
    if let [Selected::Text(raw)] = selected.as_slice() {
        if !is_shaped(spec) {
            return text_document(raw);
        }
    }
    let values: Vec<Cow<'a, Value>> = selected
        .into_iter()
        .enumerate()
        .map(|(index, s)| parsed(s, index))
        .collect::<Result<_, _>>()?;
    let whole = match <[_; 1]>::try_from(values) {
        Ok([one]) if one.is_null() => return Ok(Keyed::default()),
        Ok([one]) => one,
        Err(values) if values.is_empty() => return Ok(Keyed::default()),
        Err(values) => Cow::Owned(Value::Array(
            values.into_iter().map(Cow::into_owned).collect(),
        )),
    };
    let (value, hash) = shaped(whole, spec);
    Ok(Keyed {
        items: vec![Item {
            key: Key::from(DOCUMENT_KEY),
            value: ItemValue::Parsed(Box::new(value)),
            hash,
        }],
        by_key: vec![0],
    })
}

/// [`document`] of one unshaped value read from the text.
fn text_document(raw: &RawValue) -> Result<Keyed<'_>, ExtractError> {
    let tree = lean::Tree::read(raw.get())
        .map_err(|e| ExtractError::NotJson(format!("the document cannot be read: {e}")))?;
    if tree.at(&[]) == Some(lean::Found::Null) {
        return Ok(Keyed::default());
    }
    Ok(Keyed {
        items: vec![Item {
            key: Key::from(DOCUMENT_KEY),
            value: ItemValue::Text(raw),
            hash: tree.hash(),
        }],
        by_key: vec![0],
    })
}

/// Keyed mode: one item per selected value, keyed by `key_path`, keys unique.
fn keyed<'a>(
    selected: Vec<Selected<'a>>,
    key_path: &Path,
    spec: &Items,
) -> Result<Keyed<'a>, ExtractError> {
    // Indices are u32 (half the size of the order): more items than that cannot come from a
    // body sled could store either.
    if u32::try_from(selected.len()).is_err() {
        return Err(ExtractError::TooMany(selected.len()));
    }
    let mut out = Vec::with_capacity(selected.len());
    let mut no_key = None;
    let names = key_path.names();
    for (index, s) in selected.into_iter().enumerate() {
        let (key, value, hash) = match s {
            // An unshaped text item keeps its text: keyed and hashed from its lean tree, then
            // let go.
            Selected::Text(raw) if !is_shaped(spec) => {
                let (key, hash) = text_key_and_hash(raw, index, key_path, names.as_deref())?;
                (key, ItemValue::Text(raw), hash)
            }
            s => {
                let v = parsed(s, index)?;
                let key = key_of(&v, key_path);
                let (value, hash) = shaped(v, spec);
                (key, ItemValue::Parsed(Box::new(value)), hash)
            }
        };
        let key = match key {
            Ok(key) => key,
            Err(reason) => {
                no_key = Some(ExtractError::NoKey {
                    index,
                    path: key_path.as_str().to_string(),
                    reason,
                });
                break;
            }
        };
        out.push(Item {
            key: Key::from(key),
            value,
            hash,
        });
    }
    // The error is the one met first in selection order: a duplicate before the item that has
    // no key, else that item.
    let by_key = key_order(&out);
    if let Some(e) = first_duplicate(&out, &by_key) {
        return Err(e);
    }
    if let Some(e) = no_key {
        return Err(e);
    }
    out.shrink_to_fit();
    Ok(Keyed { items: out, by_key })
}

/// Indices of `items` in key order; equal keys in selection order.
pub fn key_order(items: &[Item<'_>]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| {
        items[a as usize]
            .key
            .cmp(&items[b as usize].key)
            .then(a.cmp(&b))
    });
    order
}

/// Of the keys that occur twice, the one whose second occurrence comes first in selection
/// order (what a pass in that order would meet first).
fn first_duplicate(items: &[Item<'_>], by_key: &[u32]) -> Option<ExtractError> {
    let (first, second) = by_key
        .windows(2)
        .filter(|w| items[w[0] as usize].key == items[w[1] as usize].key)
        .map(|w| (w[0] as usize, w[1] as usize))
        .min_by_key(|&(_, second)| second)?;
    Some(ExtractError::DuplicateKey {
        key: items[first].key.to_string(),
        first,
        second,
    })
}

/// The selected value `index`, parsed if it is text. Text selected from a page that was
/// checked to be JSON parses, unless something in it is beyond what a parsed value may hold
/// (nesting deeper than the page check allows): then the poll fails, as for a page that is
/// not JSON.
fn parsed(s: Selected<'_>, index: usize) -> Result<Cow<'_, Value>, ExtractError> {
    match s {
        Selected::Parsed(v) => Ok(Cow::Borrowed(v)),
        Selected::Text(raw) => parse_text(raw)
            .map(Cow::Owned)
            .map_err(|e| ExtractError::NotJson(format!("item {index} cannot be read: {e}"))),
    }
}

/// The key (or why there is none) and the hash of an unshaped item read from its text. A key
/// path of names is read from the item's lean tree, with no `Value` of the item (a wide item
/// costs a third as much); any other path needs the `Value`.
fn text_key_and_hash(
    raw: &RawValue,
    index: usize,
    key_path: &Path,
    names: Option<&[&str]>,
) -> Result<(Result<String, String>, Hash), ExtractError> {
    let unreadable =
        |e: &dyn fmt::Display| ExtractError::NotJson(format!("item {index} cannot be read: {e}"));
    let Some(names) = names else {
        let v = parse_text(raw).map_err(|e| unreadable(&e))?;
        return Ok((key_of(&v, key_path), hash(&v)));
    };
    let tree = lean::Tree::read(raw.get()).map_err(|e| unreadable(&e))?;
    Ok((key_of_found(tree.at(names)), tree.hash()))
}

fn parse_text(raw: &RawValue) -> Result<Value, serde_json::Error> {
    serde_json::from_str(raw.get())
}

fn key_of(v: &Value, path: &Path) -> Result<String, String> {
    let found = path.select(v);
    match found.as_slice() {
        [] => Err("nothing there".into()),
        [Value::String(s)] if s.is_empty() => Err("an empty string".into()),
        [Value::String(s)] => Ok(s.clone()),
        // The canonical text: `1.0` and `1` are one key, `100000000000000000001` and
        // `100000000000000000002` two.
        [Value::Number(n)] => Ok(number::canonical(n).into_owned()),
        [other] => Err(format!("{}, not a string or number", type_name(other))),
        many => Err(format!("{} values, not one", many.len())),
    }
}

/// [`key_of`] for the member a path of names found in a lean tree (one or none).
fn key_of_found(found: Option<lean::Found<'_>>) -> Result<String, String> {
    use lean::Found;
    let what = match found {
        None => return Err("nothing there".into()),
        Some(Found::String("")) => return Err("an empty string".into()),
        Some(Found::String(s)) => return Ok(s.to_string()),
        Some(Found::Number(n)) => return Ok(number::canonical_text(n).into_owned()),
        Some(Found::Null) => "null",
        Some(Found::Bool(_)) => "a boolean",
        Some(Found::Array) => "an array",
        Some(Found::Object) => "an object",
    };
    Err(format!("{what}, not a string or number"))
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

    /// An item's value, owned.
    fn value(i: &Item<'_>) -> Value {
        i.value().unwrap().into_owned()
    }

    /// The items of one parsed document, in selection order.
    fn extract(doc: &Value, spec: &Items) -> Result<Vec<Item<'static>>, ExtractError> {
        let pages = [Page::from_value(doc.clone())];
        let items = extract_pages(&pages, spec)?;
        items
            .into_iter()
            .map(|i| {
                let value = Cow::Owned(i.value()?.into_owned());
                Ok(Item {
                    key: i.key,
                    value: ItemValue::Parsed(Box::new(value)),
                    hash: i.hash,
                })
            })
            .collect()
    }

    /// The items of a listing's pages, in selection order.
    fn extract_pages<'a>(pages: &'a [Page], spec: &Items) -> Result<Vec<Item<'a>>, ExtractError> {
        extract_keyed(pages, spec).map(|k| k.items)
    }

    #[test]
    fn keys_are_canonical_strings_and_values_as_written() {
        let doc: Value = serde_json::from_str(
            r#"{"data": [{"id": 1.0, "a": 1}, {"id": "x", "a": 2}, {"id": 7, "a": 3.0},
                {"id": 100000000000000000001}, {"id": 100000000000000000002}, {"id": 1e400}]}"#,
        )
        .unwrap();
        let items = extract(&doc, &spec("$.data[*]", Some("$.id"), &[], &[])).unwrap();
        let keys: Vec<_> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "1",
                "x",
                "7",
                "100000000000000000001",
                "100000000000000000002",
                "1e+400"
            ]
        );
        assert_eq!(value(&items[2]).to_string(), r#"{"a":3.0,"id":7}"#);
    }

    #[test]
    fn same_value_same_hash_whatever_the_order_or_number_form() {
        let a: Value = serde_json::from_str(r#"{"b": [1, 2.0], "a": {"y": 1, "x": 1.0}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": 1e0, "y": 1.00}, "b": [10e-1, 2]}"#).unwrap();
        assert_eq!(hash(&a), hash(&b));
        let c: Value = serde_json::from_str(r#"{"a": {"x": 1, "y": 1.5}, "b": [1, 2]}"#).unwrap();
        assert_ne!(hash(&a), hash(&c));
        // A string "1" is not the number 1.
        assert_ne!(hash(&json!("1")), hash(&json!(1)));
        // Exact: past u64 and past f64.
        let n = |t: &str| hash(&serde_json::from_str::<Value>(t).unwrap());
        assert_ne!(n("100000000000000000001"), n("100000000000000000002"));
        assert_eq!(n("1e400"), n("10e399"));
        assert_ne!(n("1e400"), n("1e401"));
    }

    /// The hashes the versions before exact numbers stored (printed by that version from the
    /// same input): a value they held exactly hashes as it did, so an upgrade reports no
    /// false update.
    #[test]
    fn hashes_stored_before_exact_numbers_still_match() {
        for (text, old) in [
            ("1", "2c182da2f25988f4244fa5ec2f3abbb3"),
            ("-5", "a3265e78bafe3acb9b447dc5defbbdb9"),
            ("0", "f2ccb9a6a7ef3979c0b8abc4f3cf9109"),
            ("-0", "f2ccb9a6a7ef3979c0b8abc4f3cf9109"),
            ("-0.0", "f2ccb9a6a7ef3979c0b8abc4f3cf9109"),
            ("1.0", "2c182da2f25988f4244fa5ec2f3abbb3"),
            ("1.5", "dd4aba6dce7de61c52d580b15418a176"),
            ("0.1", "92887bfdf77fa9b0ef8563d129817d63"),
            ("1E2", "85a9bbcd041639c5bc0ffcfe51f5ee54"),
            ("1e20", "1b28dff618c7e3d88f31d36f3438f5d3"),
            ("100000000000000000000", "1b28dff618c7e3d88f31d36f3438f5d3"),
            ("12345678901234567890", "b52823625c9ac55de885af1924e98a27"),
            ("18446744073709551615", "98d68a45b6d4f9bfbb1186c589e6b94b"),
            ("-9223372036854775808", "75d849af19267579153e1c0917068916"),
            ("9007199254740993", "e5af052e10c7afc6c16b5ee1b40a3f7f"),
            ("1e-7", "01f14671f06048c95319199b78135686"),
            ("3.14159", "23edaf83d05477204ebbcdcbf474bcda"),
            ("2.5e300", "8784b65dec674794ebef28c1307b04b9"),
            ("123456.789", "e0eb9224de388bdf850d9df99417fd69"),
            ("1.7976931348623157e308", "c560f79879b3871edc1e084270dab604"),
            ("5e-324", "37594c1fed4fb2e975ecd62693818788"),
            ("0.30000000000000004", "4dad365d468769d525c99fdab07af0f6"),
            ("1e15", "cfa0308182c5941273c2d0c6257927d0"),
            ("-1.5e-10", "1668881b2b6272367043ec8e4009942e"),
            ("4.35", "c42f0eee643cece9d7f82aaf1a253d2d"),
            ("0.1e1", "2c182da2f25988f4244fa5ec2f3abbb3"),
            ("1e21", "44c6f485b67940515d959a4cbc426952"),
            ("99.99", "b68fd990c30569b732a571223c8aed19"),
            ("1700000000.123", "f551d5533d6e93c798d39238a246298a"),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(hex::encode(hash(&v)), old, "{text}");
        }
        // What they rounded now differs from the rounded value (one update after upgrading).
        for (text, old) in [
            ("100000000000000000001", "1b28dff618c7e3d88f31d36f3438f5d3"),
            ("1.23456789012345678901", "056dad3a9e2854ba5e80b4adf0fee85f"),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_ne!(hex::encode(hash(&v)), old, "{text}");
        }
        // And an item with strings, arrays and objects around them, as stored.
        let item: Value =
            serde_json::from_str(r#"{"id": 7, "tags": ["a", 1.5], "user": {"id": 1.0}}"#).unwrap();
        assert_eq!(hex::encode(hash(&item)), "7dd20efd09341a5f5fe03c7b4e5eb2fc");
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
    fn the_error_met_first_in_listing_order_is_given() {
        let s = spec("$[*]", Some("$.id"), &[], &[]);
        let e = extract(&json!([{"id": 1}, {"id": 1}, {"x": 1}, {"id": 2}]), &s).unwrap_err();
        assert_eq!(e.to_string(), "two items share the key `1` (items 0 and 1)");
        let e = extract(&json!([{"id": 1}, {"x": 1}, {"id": 1}]), &s).unwrap_err();
        assert!(matches!(e, ExtractError::NoKey { index: 1, .. }), "{e}");
        // Of several duplicates, the one whose second occurrence comes first.
        let e = extract(
            &json!([{"id": "b"}, {"id": "a"}, {"id": "a"}, {"id": "b"}, {"id": "a"}]),
            &s,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "two items share the key `a` (items 1 and 2)");
    }

    #[test]
    fn keys_short_and_long_order_as_their_text() {
        let texts = [
            "",
            "a",
            "ab",
            "abcdefghijklmnopqrstuv",  // 22 bytes: in place
            "abcdefghijklmnopqrstuvw", // 23: on the heap
            "abd",
            "é",
            "z\u{0}",
            "zz",
        ];
        let keys: Vec<Key> = texts.iter().map(|t| Key::from(*t)).collect();
        for (k, t) in keys.iter().zip(texts) {
            assert_eq!(k.as_str(), t);
            assert_eq!(*k, Key::from(t.to_string()));
        }
        let mut sorted = keys.clone();
        sorted.sort();
        let mut by_text = texts.to_vec();
        by_text.sort();
        let sorted: Vec<&str> = sorted.iter().map(Key::as_str).collect();
        assert_eq!(sorted, by_text);
        assert_eq!(std::mem::size_of::<Key>(), 24);
    }

    #[test]
    fn include_and_exclude_shape_the_item() {
        let doc = json!([{"id": 1, "name": "n", "body": "b", "reactions": {"+1": 3}, "user": {"login": "u", "id": 9}}]);
        let inc = extract(
            &doc,
            &spec("$[*]", Some("$.id"), &["$.name", "$.user.login"], &[]),
        )
        .unwrap();
        assert_eq!(value(&inc[0]), json!({"name": "n", "user": {"login": "u"}}));
        let exc = extract(
            &doc,
            &spec("$[*]", Some("$.id"), &[], &["$.reactions", "$.user.id"]),
        )
        .unwrap();
        assert_eq!(
            value(&exc[0]),
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
        assert_eq!(value(&many[0]), json!([1, 2]));
    }

    #[test]
    fn pages_concatenate_in_order_and_keys_stay_unique_across_them() {
        let s = spec("$.items[*]", Some("$.id"), &[], &[]);
        let pages = [
            json!({"items": [{"id": 1}, {"id": 2}]}),
            json!({"items": []}),
            json!({"items": [{"id": 3}]}),
        ];
        let pages = text_pages(&pages);
        let keys: Vec<String> = extract_pages(&pages, &s)
            .unwrap()
            .into_iter()
            .map(|i| i.key.to_string())
            .collect();
        assert_eq!(keys, ["1", "2", "3"]);
        let dup = [json!({"items": [{"id": 1}]}), json!({"items": [{"id": 1}]})];
        assert_eq!(
            extract_pages(&text_pages(&dup), &s)
                .unwrap_err()
                .to_string(),
            "two items share the key `1` (items 0 and 1)"
        );
        // Document mode over pages: the selections together are the document.
        let d = spec("$.v", None, &[], &[]);
        let pages = [json!({"v": 1}), json!({"v": 2})];
        let pages = text_pages(&pages);
        let items = extract_pages(&pages, &d).unwrap();
        assert_eq!(value(&items[0]), json!([1, 2]));
    }

    fn text_pages(docs: &[Value]) -> Vec<Page> {
        docs.iter()
            .map(|d| Page::new(Arc::new(d.to_string())))
            .collect()
    }

    /// Items as comparable tuples: key, hash, value.
    fn seen(items: &[Item<'_>]) -> Vec<(String, Hash, Value)> {
        items
            .iter()
            .map(|i| (i.key.to_string(), i.hash, value(i)))
            .collect()
    }

    #[test]
    fn reading_the_selection_from_text_selects_what_parsing_does() {
        let docs = [
            r#"{"items": [{"id": 1, "v": 1.0}, {"id": "b", "v": [1, {"z": 2, "a": 1}]}]}"#,
            r#"{"meta": {"items": [1]}, "items": [{"id": 3}], "after": {"x": [1, 2]}}"#,
            r#"{"items": [{"id": 1}], "items": [{"id": 2}]}"#,
            r#"{"items": [{"id": 1}], "items": {"a": {"id": 2}, "b": {"id": 3}}}"#,
            r#"{"items": {"b": {"id": 2}, "a": {"id": 3}}}"#,
            r#"{"items": "none"}"#,
            r#"{"other": []}"#,
            r#"[{"id": 5}, {"id": 4}]"#,
            r#"{"d": {"it\"ems": [{"id": "\u00e9"}]}, "items": []}"#,
            r#"{"data": {"items": [{"id": 1, "s": "a\nb"}, {"id": 2.0}]}}"#,
            r#"3"#,
            r#"null"#,
        ];
        let specs = [
            spec("$.items[*]", Some("$.id"), &[], &[]),
            spec("$['items'][*]", Some("$.id"), &[], &[]),
            spec("$.items.*", Some("$.id"), &[], &[]),
            spec("$[*]", Some("$.id"), &[], &[]),
            spec("$.data.items[*]", Some("$.id"), &[], &[]),
            spec("$.d['it\"ems'][*]", Some("$.id"), &[], &[]),
            spec("$.items[*]", Some("$.id"), &[], &["$.v"]),
            spec("$.items[0]", Some("$.id"), &[], &[]),
            spec("$", None, &[], &[]),
            spec("$.items", None, &[], &[]),
            spec("$['d']", None, &[], &[]),
            spec("$.items", None, &[], &["$.v"]),
            spec("$.items", Some("$.id"), &[], &[]),
        ];
        let mut streamed = 0;
        for text in docs {
            let value: Value = serde_json::from_str(text).unwrap();
            for s in &specs {
                let from_value = [Page::from_value(value.clone())];
                let from_text = [Page::new(Arc::new(text.to_string()))];
                let a = extract_pages(&from_value, s).map(|i| seen(&i));
                let b = extract_pages(&from_text, s).map(|i| seen(&i));
                assert_eq!(a, b, "{text} with {:?}", s.select);
                // Which pages were read as text, and which had to be parsed.
                if from_text[0].parsed.get().is_none() {
                    streamed += 1;
                }
            }
        }
        // The text path is taken for arrays under plain names (and must not be dead code).
        assert!(streamed >= 8, "{streamed}");
        // A selection that is not names and a wildcard parses the page.
        let p = [Page::new(Arc::new(docs[0].to_string()))];
        extract_pages(&p, &spec("$.items[?(@.id == 1)]", Some("$.id"), &[], &[])).unwrap();
        assert!(p[0].parsed.get().is_some());
        let p = [Page::new(Arc::new(docs[0].to_string()))];
        let items = extract_pages(&p, &specs[0]).unwrap();
        assert!(p[0].parsed.get().is_none());
        assert!(matches!(items[0].value, ItemValue::Text(_)));
        // So is a document: the whole page, or the object at a path of names.
        for select in ["$", "$.items"] {
            let p = [Page::new(Arc::new(docs[0].to_string()))];
            let items = extract_pages(&p, &spec(select, None, &[], &[])).unwrap();
            assert!(p[0].parsed.get().is_none());
            assert!(matches!(items[0].value, ItemValue::Text(_)));
        }
    }

    /// An unshaped item read from the text is keyed and hashed from its lean tree (a path of
    /// names) or its parsed value (any other path): either way as the parsed page keys,
    /// hashes and writes it, key errors included.
    #[test]
    fn items_read_from_text_key_hash_and_write_as_parsed_ones() {
        let items = [
            r#"{"id": 1, "v": [1.0, 1E2, {"z": "\u00e9", "a": null}], "a": {"b": "x"}}"#,
            r#"{"id": "x", "id": "y", "a": {"b": 7, "b": 1e1000000000000000000}}"#,
            r#"{"id": 100000000000000000001, "a": {"b": [1]}}"#,
            r#"{"id": ""}"#,
            r#"{"id": null, "a": {"b": {}}}"#,
            r#"{"id": true, "a": {"b": true}}"#,
            r#"{"id": [1], "a": {"b": null}}"#,
            r#"{"id": {"x": 1}, "a": 3}"#,
            r#"{"x": 1}"#,
            r#"7"#,
            r#"{"id": 1.0, "a": {"b": ""}} , {"id": 1, "a": {"b": "1"}}"#,
        ];
        let keys = ["$.id", "$['id']", "$.a.b", "$", "$..id", "$.a[0]"];
        let written = |items: &[Item<'_>]| -> Vec<(String, Hash, String)> {
            items
                .iter()
                .map(|i| (i.key.to_string(), i.hash, i.canonical_text().unwrap()))
                .collect()
        };
        for item in items {
            let text = format!(r#"{{"items": [{item}]}}"#);
            let value: Value = serde_json::from_str(&text).unwrap();
            for key in keys {
                let s = spec("$.items[*]", Some(key), &[], &[]);
                let from_value = [Page::from_value(value.clone())];
                let from_text = [Page::new(Arc::new(text.clone()))];
                let a = extract_pages(&from_value, &s).map(|i| written(&i));
                let b = extract_pages(&from_text, &s).map(|i| written(&i));
                assert_eq!(a, b, "{text} keyed by {key}");
                assert!(from_text[0].parsed.get().is_none());
            }
        }
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
