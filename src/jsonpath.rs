//! A JSONPath as pollhook uses it: parsed once when a bridge is loaded (its error one line, with
//! the column), then selecting values or their normalized paths. A leaf, so that config (which
//! compiles paths) and extract (which runs them) need not import each other.

use jsonpath_rust::parser::model::{JpQuery, Segment, Selector};
use jsonpath_rust::parser::parse_json_path;
use jsonpath_rust::query::js_path_process;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Weak};

/// A JSONPath, parsed once at load. Bridges that write the same path (thousands may share
/// `$.items[*]` and `$.id`) share one parse of it: a bridge holds a pointer
/// (docs/scaling.md#memory).
#[derive(Clone)]
pub struct Path(Arc<Parsed>);

struct Parsed {
    text: Box<str>,
    query: JpQuery,
}

/// Every path parsed and still held somewhere, by its text.
static PARSED: LazyLock<Mutex<HashMap<Box<str>, Weak<Parsed>>>> = LazyLock::new(Mutex::default);

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.text)
    }
}

impl Path {
    /// The path `text` stands for: the parse another bridge holds already, or a new one.
    pub fn parse(text: &str) -> Result<Path, String> {
        let mut parsed = PARSED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = parsed.get(text).and_then(Weak::upgrade) {
            return Ok(Path(p));
        }
        let query = parse_json_path(text).map_err(|e| one_line(&e.to_string()))?;
        let p = Arc::new(Parsed {
            text: text.into(),
            query,
        });
        // The paths of bridges gone since are forgotten as the table doubles.
        if parsed.len() >= 64 && parsed.len().is_power_of_two() {
            parsed.retain(|_, p| p.strong_count() > 0);
        }
        parsed.insert(text.into(), Arc::downgrade(&p));
        Ok(Path(p))
    }

    pub fn as_str(&self) -> &str {
        &self.0.text
    }

    /// For a path of names ending in a wildcard (`$.data.items[*]`, `$[*]`), the names: such a
    /// selection can be read from the text without parsing what lies outside it.
    pub(crate) fn streamable(&self) -> Option<Vec<&str>> {
        let (last, names) = self.0.query.segments.split_last()?;
        let wildcard = match last {
            Segment::Selector(s) => s,
            Segment::Selectors(v) if v.len() == 1 => &v[0],
            _ => return None,
        };
        if !matches!(wildcard, Selector::Wildcard) {
            return None;
        }
        names_of(names)
    }

    /// For a path of names only (`$.id`, `$['a'].b`, `$`), the names: what it selects is the
    /// member found object by object, if there is one.
    pub(crate) fn names(&self) -> Option<Vec<&str>> {
        names_of(&self.0.query.segments)
    }

    /// The values this path selects in `v`, in document order.
    pub fn select<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        match js_path_process(&self.0.query, v) {
            Ok(refs) => refs.into_iter().map(|r| r.val()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The normalized paths (`$['a'][0]`) of the values this path selects.
    pub(crate) fn select_paths(&self, v: &Value) -> Vec<String> {
        match js_path_process(&self.0.query, v) {
            Ok(refs) => refs.into_iter().map(|r| r.path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// The names of segments that each select one name; None if one selects anything else.
fn names_of(segments: &[Segment]) -> Option<Vec<&str>> {
    segments
        .iter()
        .map(|s| match s {
            Segment::Selector(Selector::Name(n)) => Some(n.as_str()),
            Segment::Selectors(v) if v.len() == 1 => match &v[0] {
                Selector::Name(n) => Some(n.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_is_parsed_once_while_held() {
        let a = Path::parse("$.shared_by_tests[*]").unwrap();
        let b = Path::parse("$.shared_by_tests[*]").unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(b.as_str(), "$.shared_by_tests[*]");
        assert_eq!(b.streamable(), Some(vec!["shared_by_tests"]));
        let other = Path::parse("$.shared_by_tests").unwrap();
        assert!(!Arc::ptr_eq(&a.0, &other.0));
        assert!(Path::parse("$.[").is_err());
    }

    #[test]
    fn paths_no_longer_held_are_forgotten() {
        for i in 0..300 {
            Path::parse(&format!("$.gone_{i}")).unwrap();
        }
        let parsed = PARSED.lock().unwrap();
        let gone = parsed.keys().filter(|k| k.starts_with("$.gone_")).count();
        assert!(gone < 300, "{gone} dead entries kept");
    }
}
