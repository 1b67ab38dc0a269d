//! Incremental listings (`source.cursor`, docs/configuration.md#cursor): the cursor a poll sends,
//! and the next one found in the items it got. Pure.
//!
//! The cursor is the largest `from` value seen: compared as numbers (exactly) when every
//! value is a number, else as strings (ISO 8601 times in one format sort as text). The stored
//! cursor takes part, so it never moves backwards.

use super::paginate::{with_param, with_variable};
use crate::config::{CursorTo, Source};
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;

/// The source as this poll asks it: with the cursor (the stored one, else `initial`) as its
/// query parameter or body variable. As it is without a cursor.
pub fn source_with<'a>(src: &'a Source, stored: Option<&Value>) -> Cow<'a, Source> {
    let Some(c) = &src.cursor else {
        return Cow::Borrowed(src);
    };
    let Some(value) = stored.or(c.initial.as_ref()) else {
        return Cow::Borrowed(src);
    };
    let mut asked = src.clone();
    match &c.to {
        CursorTo::Param(name) => asked.url = with_param(&src.url, name, &text(value)),
        CursorTo::Variable(name) => {
            asked.body = Some(with_variable(src.body.as_ref(), name, value.clone()))
        }
    }
    Cow::Owned(asked)
}

/// A cursor value as a query parameter: a string as it is, a number as written.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The next cursor: the largest of the stored one and `found` (strings and numbers; other
/// values, and empty strings, do not count). None when there is none.
pub fn advance<'a>(
    stored: Option<&'a Value>,
    found: impl IntoIterator<Item = &'a Value>,
) -> Option<Value> {
    let values: Vec<&Value> = stored
        .into_iter()
        .chain(found)
        .filter(|v| match v {
            Value::Number(_) => true,
            Value::String(s) => !s.is_empty(),
            _ => false,
        })
        .collect();
    let numbers = values.iter().all(|v| v.is_number());
    let order = |a: &&Value, b: &&Value| -> Ordering {
        match (a, b) {
            (Value::Number(x), Value::Number(y)) if numbers => {
                crate::number::compare(x, y).unwrap_or_else(|| x.as_str().cmp(y.as_str()))
            }
            _ => text(a).cmp(&text(b)),
        }
    };
    values.into_iter().max_by(order).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_cursor_is_the_largest_value_and_never_goes_back() {
        let v = |j: Value| j;
        // Numbers by value, not as text ("9" > "10" as text).
        let found = [v(json!(9)), v(json!(10)), v(json!(2.5))];
        assert_eq!(advance(None, &found), Some(json!(10)));
        assert_eq!(advance(Some(&json!(11)), &found), Some(json!(11)));
        // Times as text.
        let t = [
            v(json!("2026-11-01T10:00:00Z")),
            v(json!("2026-11-02T09:00:00Z")),
        ];
        assert_eq!(advance(None, &t), Some(json!("2026-11-02T09:00:00Z")));
        assert_eq!(
            advance(Some(&json!("2026-11-03T00:00:00Z")), &t),
            Some(json!("2026-11-03T00:00:00Z"))
        );
        // A mix compares as strings; nulls, objects and empty strings do not count.
        let mixed = [
            v(json!("b")),
            v(json!(7)),
            v(json!(null)),
            v(json!("")),
            v(json!({})),
        ];
        assert_eq!(advance(None, &mixed), Some(json!("b")));
        assert_eq!(advance(None, &[v(json!(null))]), None);
        assert_eq!(advance(Some(&json!(3)), []), Some(json!(3)));
    }
}
