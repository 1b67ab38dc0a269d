//! The JSON Patch of an `item.updated` event, made from two lean trees: a wide item updated
//! is never two `Value`s. Byte for byte what `json_patch::diff` gives for the two values once
//! the numbers of `previous` that equal those of `data` at the same place are written as
//! `data` writes them (`1` -> `1.0` is no change); a property test holds the two together.

use super::{Container, Leaf, ReadError, Tree, quote};
use crate::number;

/// The JSON Patch from `previous` to `data` (JSON texts), as compact JSON text.
pub fn patch(previous: &str, data: &str) -> Result<String, ReadError> {
    let (left, right) = (Tree::read(previous)?, Tree::read(data)?);
    let mut d = Diff {
        left: &left,
        right: &right,
        pointer: String::new(),
        out: b"[".to_vec(),
    };
    d.diff(left.root, right.root);
    d.out.push(b']');
    // Made of UTF-8 pieces: the texts' own and serde_json's.
    Ok(String::from_utf8(d.out).unwrap_or_default())
}

struct Diff<'t> {
    left: &'t Tree<'t>,
    right: &'t Tree<'t>,
    /// The JSON Pointer of the place compared.
    pointer: String,
    out: Vec<u8>,
}

impl Diff<'_> {
    fn diff(&mut self, l: Leaf, r: Leaf) {
        match (l, r) {
            (Leaf::Object(a), Leaf::Object(b)) => self.object(a, b),
            (Leaf::Array(a), Leaf::Array(b)) => self.array(a, b),
            _ if self.same(l, r) => {}
            _ => self.op("replace", Some(r)),
        }
    }

    /// Whether two values, not both objects nor both arrays, are equal.
    fn same(&self, l: Leaf, r: Leaf) -> bool {
        match (l, r) {
            (Leaf::Null, Leaf::Null) => true,
            (Leaf::Bool(a), Leaf::Bool(b)) => a == b,
            (Leaf::Number(a), Leaf::Number(b)) => {
                let (a, b) = (self.left.str(a), self.right.str(b));
                a == b || number::canonical_text(a) == number::canonical_text(b)
            }
            (Leaf::String(a), Leaf::String(b)) => self.left.str(a) == self.right.str(b),
            _ => false,
        }
    }

    /// Each member of `data` in key order (changed or added), then each of `previous` that
    /// is gone.
    fn object(&mut self, a: u32, b: u32) {
        let (Some(Container::Object(l)), Some(Container::Object(r))) = (
            self.left.containers.get(a as usize),
            self.right.containers.get(b as usize),
        ) else {
            return;
        };
        let find = |name: &str| l.binary_search_by(|m| self.left.str(m.key).cmp(name)).ok();
        for m in r {
            let name = self.right.str(m.key);
            let at = self.push(name);
            match find(name) {
                Some(i) => self.diff(l[i].value, m.value),
                None => self.op("add", Some(m.value)),
            }
            self.pointer.truncate(at);
        }
        for m in l {
            let name = self.left.str(m.key);
            let kept = r
                .binary_search_by(|n| self.right.str(n.key).cmp(name))
                .is_ok();
            if !kept {
                let at = self.push(name);
                self.op("remove", None);
                self.pointer.truncate(at);
            }
        }
    }

    /// Place by place; an element removed shifts the places after it.
    fn array(&mut self, a: u32, b: u32) {
        let (Some(Container::Array(l)), Some(Container::Array(r))) = (
            self.left.containers.get(a as usize),
            self.right.containers.get(b as usize),
        ) else {
            return;
        };
        let mut shift = 0;
        for i in 0..l.len().max(r.len()) {
            let at = self.push(&(i - shift).to_string());
            match (l.get(i), r.get(i)) {
                (Some(&x), Some(&y)) => self.diff(x, y),
                (Some(_), None) => {
                    shift += 1;
                    self.op("remove", None);
                }
                (None, Some(&y)) => self.op("add", Some(y)),
                (None, None) => {}
            }
            self.pointer.truncate(at);
        }
    }

    /// Appends a token to the pointer (`~` as `~0`, `/` as `~1`); the length before it.
    fn push(&mut self, token: &str) -> usize {
        let at = self.pointer.len();
        self.pointer.push('/');
        self.pointer
            .push_str(&token.replace('~', "~0").replace('/', "~1"));
        at
    }

    /// One operation at the pointer, with a value of `data`.
    fn op(&mut self, op: &str, value: Option<Leaf>) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.extend_from_slice(br#"{"op":""#);
        self.out.extend_from_slice(op.as_bytes());
        self.out.extend_from_slice(br#"","path":"#);
        quote(&self.pointer, &mut self.out);
        if let Some(v) = value {
            self.out.extend_from_slice(br#","value":"#);
            self.right.write_leaf(v, &mut self.out);
        }
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// The patch as made before: both values parsed, `previous` aligned, `json_patch::diff`.
    fn by_values(previous: &str, data: &str) -> String {
        fn align(p: &mut Value, d: &Value) {
            match (p, d) {
                (Value::Number(a), Value::Number(b)) if number::same(a, b) => *a = b.clone(),
                (Value::Array(a), Value::Array(b)) => {
                    for (x, y) in a.iter_mut().zip(b) {
                        align(x, y);
                    }
                }
                (Value::Object(a), Value::Object(b)) => {
                    for (k, x) in a.iter_mut() {
                        if let Some(y) = b.get(k) {
                            align(x, y);
                        }
                    }
                }
                _ => {}
            }
        }
        let mut p: Value = serde_json::from_str(previous).unwrap();
        let d: Value = serde_json::from_str(data).unwrap();
        align(&mut p, &d);
        serde_json::to_value(json_patch::diff(&p, &d))
            .unwrap()
            .to_string()
    }

    #[test]
    fn the_patch_of_the_values() {
        for (p, d) in [
            (
                r#"{"name": "a", "draft": true}"#,
                r#"{"draft": false, "name": "a"}"#,
            ),
            (
                r#"{"a": 1, "b": [1.0, 2, 1e2], "z": -0}"#,
                r#"{"a": 1.0, "b": [1, 2.0, 100], "z": 0}"#,
            ),
            (
                r#"{"a/b": {"c~d": [1, 2, 3]}, "x": 1}"#,
                r#"{"a/b": {"c~d": [1]}, "y": {"k": 2}}"#,
            ),
            (
                r#"[1, [2], {"a": null}]"#,
                r#"[[2], 1, {"a": null}, "\u00e9"]"#,
            ),
            (r#"{"a": 1}"#, r#"null"#),
            (r#"{"a": 1, "a": 2}"#, r#"{"a": 2}"#),
        ] {
            assert_eq!(patch(p, d).unwrap(), by_values(p, d), "{p} -> {d}");
        }
    }

    /// Values of few shapes, so that two of them share some.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop::sample::select(vec![
            "null", "true", "false", "1", "1.0", "1e0", "2", "-0", "0", "\"x\"", "\"y\"", "\"\"",
        ])
        .prop_map(str::to_string);
        leaf.prop_recursive(4, 40, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec(
                    (prop::sample::select(vec!["a", "b", "~", "/", "a~1"]), inner),
                    0..4
                )
                .prop_map(|m| {
                    let m: Vec<String> =
                        m.into_iter().map(|(k, v)| format!("{:?}:{v}", k)).collect();
                    format!("{{{}}}", m.join(","))
                }),
            ]
        })
    }

    proptest! {
        #[test]
        fn any_two_values_patch_as_their_values_do(p in value(), d in value()) {
            prop_assert_eq!(patch(&p, &d).unwrap(), by_values(&p, &d));
        }
    }
}
