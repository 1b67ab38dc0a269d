//! Incremental listings (`source.cursor`, docs/configuration.md#cursor): the cursor a poll sends,
//! and the next one found in the items it got. Pure.
//!
//! The cursor is the largest `from` value seen, and the stored cursor takes part, so it never
//! moves backwards. "Largest" needs values that compare: the cursor has a [`Kind`] (a number,
//! a time, or other text), that of the value it starts from (the stored cursor, else
//! `initial`; with neither, the kind most of the first poll's values have). A value of another
//! kind does not move it: one `"zzzz-not-a-date"` among ISO times sorted last as text, became
//! the cursor, and every later poll asked from it. Such values are counted in [`Unlike`] for
//! the poll's WARN; their items are compared and sent as usual.

use super::fetch::paging::{with_param, with_variable};
use crate::config::{CursorTo, Source};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Number, Value};
use std::borrow::Cow;
use std::cmp::Ordering;

/// The source as this poll asks it: with the cursor it starts from (see [`start`]) as its
/// query parameter or body variable. As it is without a cursor.
pub fn source_with<'a>(src: &'a Source, stored: Option<&Value>) -> Cow<'a, Source> {
    let Some(c) = &src.cursor else {
        return Cow::Borrowed(src);
    };
    let Some(value) = start(stored, c.initial.as_ref()) else {
        return Cow::Borrowed(src);
    };
    let mut asked = src.clone();
    match &c.to {
        CursorTo::Param(name) => asked.url = with_param(&src.url, name, &text(value)),
        CursorTo::Variable(name) => {
            asked.body = Some(Box::new(with_variable(
                src.body.as_deref(),
                name,
                value.clone(),
            )))
        }
    }
    Cow::Owned(asked)
}

/// The cursor a poll starts from: the stored one, else `initial`. A stored cursor that is
/// text where `initial` is a number or a time was stored by an earlier version, which let any
/// value move the cursor (text sorts after digits): the poll starts from `initial` again.
pub fn start<'a>(stored: Option<&'a Value>, initial: Option<&'a Value>) -> Option<&'a Value> {
    match (stored, initial) {
        (Some(s), Some(i))
            if kind(s) == Some(Kind::Text)
                && matches!(kind(i), Some(Kind::Number | Kind::Time)) =>
        {
            Some(i)
        }
        (s, i) => s.or(i),
    }
}

/// A cursor value as a query parameter: a string as it is, a number as written.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What a cursor value is, for comparing it with others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A JSON number, or a string that is one (`"1700000000"`, as some APIs write ids):
    /// compared by value, exactly.
    Number,
    /// A string that reads as an RFC 3339 / ISO 8601 date or date and time (a `T` or a space
    /// between; an offset, `Z`, or none, taken as UTC): compared as instants, so offsets and
    /// fractions of a second compare right (`10:00:00.5Z` is after `10:00:00Z`).
    Time,
    /// Any other non-empty string: compared as text.
    Text,
    /// `true`, `false`, an array or an object: never a cursor.
    Other,
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Kind::Number => "a number",
            Kind::Time => "a time",
            Kind::Text => "text",
            Kind::Other => "neither a string nor a number",
        })
    }
}

/// The kind of a value; None for what is no value (`null`, an empty string).
pub fn kind(v: &Value) -> Option<Kind> {
    match v {
        Value::Null => None,
        Value::Number(_) => Some(Kind::Number),
        Value::String(s) if s.is_empty() => None,
        Value::String(s) if number(s).is_some() => Some(Kind::Number),
        Value::String(s) if instant(s).is_some() => Some(Kind::Time),
        Value::String(_) => Some(Kind::Text),
        Value::Bool(_) | Value::Array(_) | Value::Object(_) => Some(Kind::Other),
    }
}

/// A string that is a JSON number, as one.
fn number(s: &str) -> Option<Number> {
    s.parse().ok()
}

/// The instant a time string stands for (a date alone: its midnight, UTC).
fn instant(s: &str) -> Option<DateTime<Utc>> {
    // `YYYY-`: no other string is parsed as a time.
    if s.as_bytes().get(4) != Some(&b'-') {
        return None;
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.to_utc());
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%d %H:%M:%S%.f%z"] {
        if let Ok(t) = DateTime::parse_from_str(s, format) {
            return Some(t.to_utc());
        }
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc());
        }
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(date.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// The order of two values of one kind; ties of value by their text, so that the larger of
/// two is always the same one.
fn order(kind: Kind, a: &Value, b: &Value) -> Ordering {
    let by_value = match kind {
        Kind::Number => as_number(a)
            .zip(as_number(b))
            .and_then(|(x, y)| crate::number::compare(&x, &y)),
        Kind::Time => instant(&text(a))
            .zip(instant(&text(b)))
            .map(|(x, y)| x.cmp(&y)),
        Kind::Text | Kind::Other => None,
    };
    by_value
        .unwrap_or(Ordering::Equal)
        .then_with(|| text(a).cmp(&text(b)))
}

fn as_number(v: &Value) -> Option<Cow<'_, Number>> {
    match v {
        Value::Number(n) => Some(Cow::Borrowed(n)),
        Value::String(s) => number(s).map(Cow::Owned),
        _ => None,
    }
}

/// Values found unlike the cursor: how many, and the first of them (for the poll's WARN).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unlike {
    pub values: usize,
    /// The key of the item the first one is in (at most [`SHOWN`] characters of it); None for
    /// a stored cursor that [`start`] set aside.
    pub key: Option<String>,
    /// The first one, as JSON text, at most [`SHOWN`] characters of it.
    pub value: String,
    pub kind: Kind,
    /// The cursor's kind; None when there is no cursor yet.
    pub cursor: Option<Kind>,
}

/// How much of an unlike value or key a log line shows: it comes from the source.
pub const SHOWN: usize = 64;

/// The next cursor, and what did not move it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Advanced {
    pub cursor: Option<Value>,
    pub unlike: Option<Unlike>,
}

/// The cursor a poll stores: the largest of where it started (see [`start`]) and the `found`
/// values (with the keys of their items) of the cursor's kind.
pub fn next<'a>(
    stored: Option<&'a Value>,
    initial: Option<&'a Value>,
    found: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Advanced {
    let from = start(stored, initial);
    let mut advanced = advance(from, found);
    if let Some(set_aside) = stored.filter(|&s| from != Some(s)) {
        let found = advanced.unlike.as_ref().map_or(0, |u| u.values);
        advanced.unlike = Some(Unlike {
            values: 1 + found,
            key: None,
            value: shown(set_aside),
            kind: Kind::Text,
            cursor: from.and_then(kind),
        });
    }
    advanced
}

/// The largest of `from` and the `found` values of the cursor's kind: that of `from`, else
/// the kind most found values have. None when there is none.
pub fn advance<'a>(
    from: Option<&'a Value>,
    found: impl IntoIterator<Item = (&'a str, &'a Value)>,
) -> Advanced {
    let found: Vec<(&str, &Value, Kind)> = found
        .into_iter()
        .filter_map(|(key, v)| kind(v).map(|k| (key, v, k)))
        .collect();
    let cursor = from.and_then(kind).or_else(|| most(&found));
    let mut best = from.filter(|v| kind(v).is_some());
    for &(_, v, k) in &found {
        if Some(k) == cursor && best.is_none_or(|b| order(k, v, b) == Ordering::Greater) {
            best = Some(v);
        }
    }
    Advanced {
        cursor: best.cloned(),
        unlike: unlike(&found, cursor),
    }
}

/// The kind most values have (ties: a number, then a time, then text); never [`Kind::Other`].
fn most(found: &[(&str, &Value, Kind)]) -> Option<Kind> {
    [Kind::Number, Kind::Time, Kind::Text]
        .into_iter()
        .map(|k| (found.iter().filter(|f| f.2 == k).count(), k))
        .filter(|&(n, _)| n > 0)
        .max_by_key(|&(n, k)| (n, std::cmp::Reverse(k)))
        .map(|(_, k)| k)
}

/// The values not of the cursor's kind, counted, the first one shown.
fn unlike(found: &[(&str, &Value, Kind)], cursor: Option<Kind>) -> Option<Unlike> {
    let mut other = found.iter().filter(|f| Some(f.2) != cursor);
    let &(key, value, kind) = other.next()?;
    Some(Unlike {
        values: 1 + other.count(),
        key: Some(cut(key.to_string())),
        value: shown(value),
        kind,
        cursor,
    })
}

/// A value as JSON text, cut to [`SHOWN`] characters.
pub fn shown(v: &Value) -> String {
    cut(v.to_string())
}

fn cut(mut s: String) -> String {
    if let Some((at, _)) = s.char_indices().nth(SHOWN) {
        s.truncate(at);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Values as found in items keyed `0`, `1`, …
    fn found(values: &[Value]) -> Vec<(&'static str, &Value)> {
        const KEYS: [&str; 8] = ["0", "1", "2", "3", "4", "5", "6", "7"];
        KEYS.into_iter().zip(values).collect()
    }

    fn largest(from: Option<&Value>, values: &[Value]) -> Option<Value> {
        advance(from, found(values)).cursor
    }

    #[test]
    fn the_cursor_is_the_largest_value_and_never_goes_back() {
        // Numbers by value, not as text ("9" > "10" as text); strings that are numbers too.
        let n = [json!(9), json!(10), json!(2.5)];
        assert_eq!(largest(None, &n), Some(json!(10)));
        assert_eq!(largest(Some(&json!(11)), &n), Some(json!(11)));
        assert_eq!(
            largest(Some(&json!(0)), &[json!("999"), json!("1000")]),
            Some(json!("1000"))
        );
        // Times in one format.
        let t = [json!("2026-11-01T10:00:00Z"), json!("2026-11-02T09:00:00Z")];
        assert_eq!(largest(None, &t), Some(json!("2026-11-02T09:00:00Z")));
        let later = json!("2026-11-03T00:00:00Z");
        assert_eq!(largest(Some(&later), &t), Some(later.clone()));
        // Nulls and empty strings are no values; the cursor stays without any.
        assert_eq!(largest(None, &[json!(null), json!("")]), None);
        assert_eq!(largest(Some(&json!(3)), &[]), Some(json!(3)));
        // Opaque text (sortable ids) as text.
        let ids = [json!("01HZX"), json!("01HZY")];
        assert_eq!(largest(Some(&json!("01HZA")), &ids), Some(json!("01HZY")));
    }

    /// Times compare as instants: text order goes wrong across offsets and fractions.
    #[test]
    fn times_compare_as_the_instants_they_name() {
        let cases = [
            // As text "…00.5Z" < "…00Z".
            ("2026-11-01T10:00:00Z", "2026-11-01T10:00:00.5Z"),
            // As text "…T11:00:00+02:00" > "…T10:00:00Z".
            ("2026-11-01T11:00:00+02:00", "2026-11-01T10:00:00Z"),
            ("2026-11-01", "2026-11-01T00:00:01"),
            ("2026-11-01 09:00:00", "2026-11-01T09:30:00+0000"),
            ("2026-11-01T09:00", "2026-11-01T09:00:01Z"),
        ];
        for (earlier, later) in cases {
            let (e, l) = (json!(earlier), json!(later));
            assert_eq!(kind(&e), Some(Kind::Time), "{earlier}");
            assert_eq!(kind(&l), Some(Kind::Time), "{later}");
            assert_eq!(largest(Some(&e), std::slice::from_ref(&l)), Some(l.clone()));
            assert_eq!(largest(Some(&l), std::slice::from_ref(&e)), Some(l.clone()));
        }
        // The same instant written twice: one of them, always the same one.
        let (a, b) = (
            json!("2026-11-01T10:00:00Z"),
            json!("2026-11-01T10:00:00.000Z"),
        );
        let one = largest(Some(&a), std::slice::from_ref(&b));
        assert_eq!(largest(Some(&b), std::slice::from_ref(&a)), one);
        for text in [
            "zzzz-not-a-date",
            "2026-13-01",
            "2026-11-01T25:00:00Z",
            "v2026-11-01",
        ] {
            assert_eq!(kind(&json!(text)), Some(Kind::Text), "{text}");
        }
        assert_eq!(kind(&json!("20261101")), Some(Kind::Number));
    }

    /// A value of another kind than the cursor's does not move it, and is counted.
    #[test]
    fn a_value_unlike_the_cursor_does_not_move_it() {
        let from = json!("2026-01-01T00:00:00Z");
        let values = [
            json!("2026-01-02T00:00:00Z"),
            json!("zzzz-not-a-date"),
            json!(99999999999u64),
            json!(null),
            json!(true),
            json!({"at": "2027-01-01T00:00:00Z"}),
            json!("2026-01-03T00:00:00Z"),
        ];
        let a = advance(Some(&from), found(&values));
        assert_eq!(a.cursor, Some(json!("2026-01-03T00:00:00Z")));
        let want = Unlike {
            values: 4,
            key: Some("1".into()),
            value: "\"zzzz-not-a-date\"".into(),
            kind: Kind::Text,
            cursor: Some(Kind::Time),
        };
        assert_eq!(a.unlike, Some(want));
        // Numbers: a string that is no number, and a time, do not move it.
        let a = advance(
            Some(&json!(5)),
            found(&[json!("abc"), json!("2026-01-01"), json!(7)]),
        );
        assert_eq!(
            (a.cursor, a.unlike.map(|u| u.values)),
            (Some(json!(7)), Some(2))
        );
        // No cursor yet: the kind most values have (ties: number, time, text).
        let first = [json!("2026-01-02"), json!("zzzz"), json!("2026-01-03")];
        assert_eq!(largest(None, &first), Some(json!("2026-01-03")));
        assert_eq!(largest(None, &[json!("b"), json!(7)]), Some(json!(7)));
        assert_eq!(
            largest(None, &[json!("zzzz"), json!("2026-01-01")]),
            Some(json!("2026-01-01"))
        );
        let a = advance(None, found(&[json!(false)]));
        assert_eq!(a.cursor, None);
        assert_eq!(
            a.unlike.map(|u| (u.kind, u.cursor)),
            Some((Kind::Other, None))
        );
        // An unlike value is shown short.
        let long = json!("x".repeat(1000));
        let u = advance(Some(&json!(1)), found(std::slice::from_ref(&long)))
            .unlike
            .unwrap();
        assert_eq!(u.value.chars().count(), SHOWN + 1);
        assert!(u.value.ends_with('…'));
    }

    /// A cursor an earlier version stored from a value unlike `initial` (text where `initial`
    /// is a time or a number) is set aside: the poll starts from `initial` again. Other
    /// stored cursors are kept.
    #[test]
    fn a_stored_cursor_unlike_initial_is_set_aside() {
        let initial = json!("2026-01-01T00:00:00Z");
        let poisoned = json!("zzzz-not-a-date");
        assert_eq!(start(Some(&poisoned), Some(&initial)), Some(&initial));
        let good = json!("2026-02-01T00:00:00Z");
        assert_eq!(start(Some(&good), Some(&initial)), Some(&good));
        assert_eq!(start(Some(&poisoned), None), Some(&poisoned));
        // A time stored where `initial` is 0 compared right as text before: kept.
        assert_eq!(start(Some(&good), Some(&json!(0))), Some(&good));
        assert_eq!(start(None, Some(&initial)), Some(&initial));

        let values = [json!("2026-01-05T00:00:00Z")];
        let a = next(Some(&poisoned), Some(&initial), found(&values));
        assert_eq!(a.cursor, Some(values[0].clone()));
        let u = a.unlike.unwrap();
        assert_eq!(
            (u.key, u.value.as_str(), u.values),
            (None, "\"zzzz-not-a-date\"", 1)
        );
        let a = next(Some(&good), Some(&initial), found(&values));
        assert_eq!((a.cursor, a.unlike), (Some(good), None));
    }
}
