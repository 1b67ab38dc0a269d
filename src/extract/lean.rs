//! An item read from its text into a lean tree, for what a poll does with every item it keys
//! and every item it stores or sends: its hash, and its canonical JSON text. A serde_json
//! `Value` costs about 150 bytes a member (a map node's share, a key and a number or string
//! on the heap); this tree points into the text and costs 20 bytes a member (12 an array
//! element), so one item of a million keys stays within a poll's memory budget (README
//! "Memory"). Both results are byte for byte those of the `Value` (a property test holds them
//! together): stored hashes and event bodies do not change.

use super::Hash;
use crate::number;
use sha2::{Digest, Sha256};

mod patch;
pub use patch::patch;

/// A JSON value read by [`Tree::read`]: every container is a list of its own, an object's
/// members in key order with the last of a repeated key kept (as a serde_json map keeps
/// them). Strings and numbers are places in the text, or in `owned` when they are not
/// written there as serde_json holds them: a string with escapes (undone), a number whose
/// exponent serde_json rewrites (`1E5` is `1e+5`).
pub struct Tree<'a> {
    text: &'a str,
    owned: String,
    containers: Vec<Container>,
    root: Leaf,
}

enum Container {
    Object(Vec<Member>),
    Array(Vec<Leaf>),
}

struct Member {
    key: Span,
    value: Leaf,
}

#[derive(Clone, Copy)]
enum Leaf {
    Null,
    Bool(bool),
    Number(Span),
    String(Span),
    /// Index into `containers`.
    Array(u32),
    Object(u32),
}

/// `len` bytes from `start` of the text, or of `owned` if the top bit of `len` is set.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

const OWNED: u32 = 1 << 31;

/// What a path of names found: a value of the tree, strings and numbers as serde_json holds
/// them.
#[derive(Debug, PartialEq)]
pub enum Found<'t> {
    Null,
    Bool(bool),
    Number(&'t str),
    String(&'t str),
    Array,
    Object,
}

/// Why a text cannot be read: it is not the JSON a checked page holds.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct ReadError {
    what: &'static str,
    at: usize,
}

/// As deep as a checked page may be (`poll::fetch::MAX_DEPTH`, serde_json's own limit):
/// what keeps a hostile text from taking the stack.
const MAX_DEPTH: usize = 127;

impl<'a> Tree<'a> {
    /// Reads one JSON value (whitespace around it allowed).
    pub fn read(text: &'a str) -> Result<Tree<'a>, ReadError> {
        if text.len() >= OWNED as usize {
            return Err(ReadError {
                what: "an item of 2 GiB or more",
                at: 0,
            });
        }
        let mut r = Reader {
            tree: Tree {
                text,
                owned: String::new(),
                containers: Vec::new(),
                root: Leaf::Null,
            },
            bytes: text.as_bytes(),
            at: 0,
            depth: 0,
        };
        r.tree.root = r.value()?;
        r.skip_space();
        if r.at != r.bytes.len() {
            return Err(r.error("text after the value"));
        }
        Ok(r.tree)
    }

    fn str(&self, s: Span) -> &str {
        let (from, start) = match s.len & OWNED {
            0 => (self.text, s.start as usize),
            _ => (self.owned.as_str(), s.start as usize),
        };
        let end = start + (s.len & !OWNED) as usize;
        from.get(start..end).unwrap_or_default()
    }

    /// The hash of the value: the bytes `canonical::hash` feeds for the same value.
    pub fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        self.feed(&mut h, self.root);
        let d = h.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&d[..16]);
        out
    }

    fn feed(&self, h: &mut Sha256, leaf: Leaf) {
        match leaf {
            Leaf::Null => h.update(b"n"),
            Leaf::Bool(b) => h.update(if b { b"t" } else { b"f" }),
            Leaf::Number(n) => {
                h.update(b"#");
                h.update(number::canonical_text(self.str(n)).as_bytes());
                h.update(b";");
            }
            Leaf::String(s) => {
                let s = self.str(s);
                h.update(b"s");
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
            Leaf::Array(i) => {
                let Some(Container::Array(a)) = self.containers.get(i as usize) else {
                    return;
                };
                h.update(b"[");
                h.update((a.len() as u64).to_be_bytes());
                for &x in a {
                    self.feed(h, x);
                }
            }
            Leaf::Object(i) => {
                let Some(Container::Object(m)) = self.containers.get(i as usize) else {
                    return;
                };
                h.update(b"{");
                h.update((m.len() as u64).to_be_bytes());
                for member in m {
                    let k = self.str(member.key);
                    h.update((k.len() as u64).to_be_bytes());
                    h.update(k.as_bytes());
                    self.feed(h, member.value);
                }
            }
        }
    }

    /// The value as compact JSON text, exactly as serde_json writes the `Value` of the same
    /// text: keys in order, strings escaped as it escapes them, numbers as it holds them.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.write_leaf(self.root, out)
    }

    fn write_leaf(&self, leaf: Leaf, out: &mut Vec<u8>) {
        match leaf {
            Leaf::Null => out.extend_from_slice(b"null"),
            Leaf::Bool(b) => out.extend_from_slice(if b { b"true" } else { b"false" }),
            Leaf::Number(n) => out.extend_from_slice(self.str(n).as_bytes()),
            Leaf::String(s) => quote(self.str(s), out),
            Leaf::Array(i) => {
                out.push(b'[');
                if let Some(Container::Array(a)) = self.containers.get(i as usize) {
                    for (n, &x) in a.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        self.write_leaf(x, out);
                    }
                }
                out.push(b']');
            }
            Leaf::Object(i) => {
                out.push(b'{');
                if let Some(Container::Object(m)) = self.containers.get(i as usize) {
                    for (n, member) in m.iter().enumerate() {
                        if n > 0 {
                            out.push(b',');
                        }
                        quote(self.str(member.key), out);
                        out.push(b':');
                        self.write_leaf(member.value, out);
                    }
                }
                out.push(b'}');
            }
        }
    }

    /// The member at `names`, object by object (a JSONPath of names: `$.a.b`); None when
    /// something on the way is missing or not an object.
    pub fn at(&self, names: &[&str]) -> Option<Found<'_>> {
        let mut leaf = self.root;
        for name in names {
            let Leaf::Object(i) = leaf else {
                return None;
            };
            let Some(Container::Object(m)) = self.containers.get(i as usize) else {
                return None;
            };
            let at = m
                .binary_search_by(|member| self.str(member.key).cmp(name))
                .ok()?;
            leaf = m[at].value;
        }
        Some(match leaf {
            Leaf::Null => Found::Null,
            Leaf::Bool(b) => Found::Bool(b),
            Leaf::Number(n) => Found::Number(self.str(n)),
            Leaf::String(s) => Found::String(self.str(s)),
            Leaf::Array(_) => Found::Array,
            Leaf::Object(_) => Found::Object,
        })
    }
}

/// A string as serde_json writes it.
fn quote(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, nor can serialising a str.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// The canonical JSON text of a JSON text: what `serde_json::to_string` gives for the
/// `Value` it parses to, without that `Value`.
pub fn canonical_text(text: &str) -> Result<String, ReadError> {
    let tree = Tree::read(text)?;
    let mut out = Vec::with_capacity(text.len());
    tree.write(&mut out);
    // Made of UTF-8 pieces: the text's own and serde_json's.
    Ok(String::from_utf8(out).unwrap_or_default())
}

struct Reader<'a> {
    tree: Tree<'a>,
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &'static str) -> ReadError {
        ReadError { what, at: self.at }
    }

    fn skip_space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.at) {
            self.at += 1;
        }
    }

    /// Skips space, then takes `b` if it comes next.
    fn take(&mut self, b: u8) -> bool {
        self.skip_space();
        let found = self.bytes.get(self.at) == Some(&b);
        self.at += usize::from(found);
        found
    }

    fn value(&mut self) -> Result<Leaf, ReadError> {
        self.skip_space();
        match self.bytes.get(self.at) {
            Some(b'{') => self.nested(Self::object),
            Some(b'[') => self.nested(Self::array),
            Some(b'"') => self.string().map(Leaf::String),
            Some(b't') => self.literal("true", Leaf::Bool(true)),
            Some(b'f') => self.literal("false", Leaf::Bool(false)),
            Some(b'n') => self.literal("null", Leaf::Null),
            Some(b'-' | b'0'..=b'9') => self.number().map(Leaf::Number),
            Some(_) => Err(self.error("not a JSON value")),
            None => Err(self.error("a value missing")),
        }
    }

    fn nested(
        &mut self,
        read: fn(&mut Self) -> Result<Leaf, ReadError>,
    ) -> Result<Leaf, ReadError> {
        if self.depth == MAX_DEPTH {
            return Err(self.error("nested too deep"));
        }
        self.depth += 1;
        self.at += 1;
        let leaf = read(self);
        self.depth -= 1;
        leaf
    }

    fn literal(&mut self, word: &'static str, leaf: Leaf) -> Result<Leaf, ReadError> {
        if !self.bytes[self.at..].starts_with(word.as_bytes()) {
            return Err(self.error("not a JSON value"));
        }
        self.at += word.len();
        Ok(leaf)
    }

    /// A span of the text (`start..end`, both under 2 GiB: the text is).
    fn in_text(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            len: (end - start) as u32,
        }
    }

    /// Keeps `s` in `owned` (an error once that would reach 2 GiB).
    fn own(&mut self, s: &str) -> Result<Span, ReadError> {
        let start = self.tree.owned.len();
        if start + s.len() >= OWNED as usize {
            return Err(self.error("an item of 2 GiB or more"));
        }
        self.tree.owned.push_str(s);
        Ok(Span {
            start: start as u32,
            len: s.len() as u32 | OWNED,
        })
    }

    /// A number's text as serde_json keeps it: the exponent written `e` and signed. (The text
    /// is valid JSON: a number ends where these characters do.)
    fn number(&mut self) -> Result<Span, ReadError> {
        let start = self.at;
        while let Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E') = self.bytes.get(self.at) {
            self.at += 1;
        }
        let text = &self.tree.text[start..self.at];
        let plain = Self::in_text(start, self.at);
        let Some(e) = text.find(['e', 'E']) else {
            return Ok(plain);
        };
        let (mantissa, exponent) = (&text[..e], &text[e + 1..]);
        let signed = exponent.starts_with(['+', '-']);
        if text.as_bytes()[e] == b'e' && signed {
            return Ok(plain);
        }
        let sign = if signed { "" } else { "+" };
        self.own(&format!("{mantissa}e{sign}{exponent}"))
    }

    /// A string at its opening quote, escapes undone (by serde_json, so exactly as it does).
    fn string(&mut self) -> Result<Span, ReadError> {
        let start = self.at;
        let mut escapes = false;
        self.at += 1;
        loop {
            match self.bytes.get(self.at) {
                Some(b'"') => break,
                Some(b'\\') => (escapes, self.at) = (true, self.at + 2),
                Some(0..0x20) => return Err(self.error("a control character in a string")),
                Some(_) => self.at += 1,
                None => return Err(self.error("a string not closed")),
            }
        }
        self.at += 1;
        if !escapes {
            return Ok(Self::in_text(start + 1, self.at - 1));
        }
        // Quotes are ASCII: both ends are character boundaries.
        let undone: String =
            serde_json::from_str(&self.tree.text[start..self.at]).map_err(|_| ReadError {
                what: "a bad escape in a string",
                at: start,
            })?;
        self.own(&undone)
    }

    fn array(&mut self) -> Result<Leaf, ReadError> {
        let mut items = Vec::new();
        if !self.take(b']') {
            loop {
                items.push(self.value()?);
                if self.take(b']') {
                    break;
                }
                if !self.take(b',') {
                    return Err(self.error("`,` or `]` expected"));
                }
            }
        }
        items.shrink_to_fit();
        Ok(Leaf::Array(self.contain(Container::Array(items))?))
    }

    fn object(&mut self) -> Result<Leaf, ReadError> {
        let mut members = Vec::new();
        if !self.take(b'}') {
            loop {
                self.skip_space();
                if self.bytes.get(self.at) != Some(&b'"') {
                    return Err(self.error("a key expected"));
                }
                let key = self.string()?;
                if !self.take(b':') {
                    return Err(self.error("`:` expected"));
                }
                let value = self.value()?;
                members.push(Member { key, value });
                if self.take(b'}') {
                    break;
                }
                if !self.take(b',') {
                    return Err(self.error("`,` or `}` expected"));
                }
            }
        }
        // As a serde_json map: in key order (bytewise, as `String` orders), and of a key
        // given twice the last value. The sort is stable, so the last comes last in its run;
        // dedup keeps the first of a run, so the later value is moved into it.
        let tree = &self.tree;
        members.sort_by(|a, b| tree.str(a.key).cmp(tree.str(b.key)));
        members.dedup_by(|later, kept| {
            let same = tree.str(later.key) == tree.str(kept.key);
            if same {
                kept.value = later.value;
            }
            same
        });
        members.shrink_to_fit();
        Ok(Leaf::Object(self.contain(Container::Object(members))?))
    }

    /// Keeps a container; its index.
    fn contain(&mut self, c: Container) -> Result<u32, ReadError> {
        let i = u32::try_from(self.tree.containers.len())
            .map_err(|_| self.error("too many arrays and objects"))?;
        self.tree.containers.push(c);
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// What the `Value` of `text` hashes and writes to.
    fn by_value(text: &str) -> (Hash, String) {
        let v: Value = serde_json::from_str(text).unwrap();
        (super::super::canonical::hash(&v), v.to_string())
    }

    fn by_tree(text: &str) -> (Hash, String) {
        (
            Tree::read(text).unwrap().hash(),
            canonical_text(text).unwrap(),
        )
    }

    #[test]
    fn the_same_hash_and_text_as_the_value() {
        for text in [
            r#"{"b": [1, 2.0, -0, 1e400, 100000000000000000001, 1E+2, 0.5e-3], "a": {"y": null}}"#,
            // An exponent too long to normalise is hashed as serde_json writes it.
            "[1E1000000000000000000, 2e-30000000000000000000, 1e+1000000000000000000]",
            r#" {"k": 1, "k": 2, "a": true, "k": {"z": false}} "#,
            r#"["\u00e9\/\"\\\n\u0001\ud83d\ude00", "é😀", "", {}, []]"#,
            r#"{"\u0061": 1, "a": 2, "b\u0000": 3, "b": 4}"#,
            "\"x\"",
            "-12.5e-7",
            "[[[[]]], {\"\": {\"\": \"\"}}]",
        ] {
            assert_eq!(by_tree(text), by_value(text), "{text}");
        }
    }

    #[test]
    fn members_are_found_by_name_the_last_of_a_repeated_key() {
        let text = r#"{"id": 1, "a": {"b": "x", "b": "y"}, "c": [1]}"#;
        let t = Tree::read(text).unwrap();
        assert_eq!(t.at(&["id"]), Some(Found::Number("1")));
        assert_eq!(t.at(&["a", "b"]), Some(Found::String("y")));
        assert_eq!(t.at(&["a"]), Some(Found::Object));
        assert_eq!(t.at(&["c"]), Some(Found::Array));
        assert_eq!(t.at(&["c", "0"]), None);
        assert_eq!(t.at(&["nothing"]), None);
        let t = Tree::read(r#"{"\u0061": 1E5, "b": "\n"}"#).unwrap();
        assert_eq!(t.at(&["a"]), Some(Found::Number("1e+5")));
        assert_eq!(t.at(&["b"]), Some(Found::String("\n")));
    }

    #[test]
    fn what_is_not_json_is_an_error_never_a_panic() {
        for text in [
            "",
            "{",
            "[1,",
            "[1 2]",
            "{\"a\" 1}",
            "{1: 2}",
            "tru",
            "\"abc",
            "\"\\x\"",
            "\"\\",
            "\"a\u{1}\"",
            "1 2",
            "@",
            "{\"a\":1,}",
        ] {
            assert!(Tree::read(text).is_err(), "{text:?}");
        }
        // As deep as serde_json reads a value, and no deeper.
        let nested = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        assert_eq!(by_tree(&nested(MAX_DEPTH)), by_value(&nested(MAX_DEPTH)));
        assert!(serde_json::from_str::<Value>(&nested(MAX_DEPTH + 1)).is_err());
        let e = Tree::read(&nested(MAX_DEPTH + 1)).err().unwrap();
        assert_eq!(e.what, "nested too deep");
        assert!(Tree::read(&nested(100_000)).is_err());
    }

    /// Any JSON value, with repeated keys, escapes and numbers in every notation.
    fn json_text() -> impl Strategy<Value = String> {
        let number = prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            "-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,25})?",
        ];
        let string = prop_oneof![
            "[a-c]{0,3}".prop_map(|s| format!("\"{s}\"")),
            any::<String>().prop_map(|s| Value::String(s).to_string()),
            Just(r#""\u0061\/\ud83d\ude00\t""#.to_string()),
        ];
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            number,
            string.clone(),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[ {} ]", v.join(" , "))),
                prop::collection::vec((string.clone(), inner), 0..6).prop_map(|m| {
                    let m: Vec<String> = m.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{\n{}}}", m.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_json_hashes_and_writes_as_its_value(text in json_text()) {
            prop_assert_eq!(by_tree(&text), by_value(&text));
        }
    }
}
