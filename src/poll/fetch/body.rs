//! What a body must be to become a page: JSON that pollhook reads whole (valid, not nested too
//! deep, no key serde_json gives a meaning of its own), or a body in another `format`
//! (docs/configuration.md#formats) turned into such JSON first, so that next links, the 304
//! cache and the selection see JSON only. Apart from the request that brought the body: the
//! same check holds for a body read back from the 304 cache.

use super::FetchError;
use crate::formats::{self, Format};
use std::borrow::Cow;

/// The deepest nesting of arrays and objects a page may have: as deep as serde_json reads a
/// document into a value (its recursion limit), so that every page accepted reads whole, and
/// every item in it.
pub const MAX_DEPTH: usize = 127;

/// Object keys serde_json gives a meaning of its own when it reads a value: an object whose
/// first key is one of these is read as an exact number, or as the JSON text in its string
/// (parsed again, with a fresh depth limit). A page may not hold them as keys anywhere: once
/// stored and read back (keys sorted, so first), they would change meaning or fail.
const RESERVED_KEYS: [&str; 2] = [
    "$serde_json::private::Number",
    "$serde_json::private::RawValue",
];

/// Checks that a body is a JSON document pollhook can read: valid JSON (numbers of any size
/// and precision are), nested at most [`MAX_DEPTH`] deep, no key of [`RESERVED_KEYS`]. The
/// reason otherwise.
pub fn check_json(body: &[u8]) -> Result<(), String> {
    scan_json(body).map(|_| ())
}

/// [`check_json`], counting the objects in the body on the way (what the poll's share of the
/// memory budget grows with, docs/scaling.md#the-memory-budget-of-polls).
pub fn scan_json(body: &[u8]) -> Result<usize, String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| {
        if e.is_eof() {
            format!("truncated after {} bytes ({e})", body.len())
        } else {
            e.to_string()
        }
    })?;
    // Skipping a value (above) has no depth limit and gives keys no meaning; reading one into
    // a tree does both. A walk over the bytes of valid JSON: strings, brackets, colons.
    let mut depth = 0usize;
    // Inside a string: where it started and whether it has an escape.
    let mut string: Option<(usize, bool)> = None;
    let mut escaped = false;
    // The last string closed could be a reserved key, if a colon follows.
    let mut reserved: Option<&str> = None;
    let mut objects = 0usize;
    for (at, &b) in body.iter().enumerate() {
        if let Some((start, escapes)) = &mut string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => (escaped, *escapes) = (true, true),
                b'"' => {
                    reserved = reserved_key(&body[*start..=at], *escapes);
                    string = None;
                }
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b':' => {
                if let Some(key) = reserved {
                    return Err(format!("the key `{key}` is reserved (at byte {at})"));
                }
            }
            b'"' => string = Some((at, false)),
            b'[' | b'{' => {
                objects += usize::from(b == b'{');
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_DEPTH} levels (at byte {at})"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        reserved = None;
    }
    Ok(objects)
}

/// The reserved key a JSON string (quotes included) spells, escapes undone.
fn reserved_key(quoted: &[u8], escapes: bool) -> Option<&'static str> {
    let longest = RESERVED_KEYS.iter().map(|k| k.len()).max().unwrap_or(0);
    let text: Cow<'_, str> = if !escapes {
        Cow::Borrowed(std::str::from_utf8(quoted.get(1..quoted.len() - 1)?).ok()?)
    } else if quoted.len() <= 2 + 6 * longest {
        Cow::Owned(serde_json::from_slice::<String>(quoted).ok()?)
    } else {
        return None;
    };
    RESERVED_KEYS.iter().copied().find(|k| *k == text)
}

/// A JSON body as the page's text, and the objects in it: checked here, not parsed (the
/// selection reads what it needs from the text).
pub(super) fn json_text(
    body: Vec<u8>,
    url: &str,
    content_type: String,
) -> Result<(String, usize), FetchError> {
    let objects = scan_json(&body).map_err(|reason| FetchError::NotJson {
        url: url.to_string(),
        content_type: content_type.clone(),
        reason,
    })?;
    let text = String::from_utf8(body).map_err(|e| FetchError::NotJson {
        url: url.to_string(),
        content_type,
        reason: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })?;
    Ok((text, objects))
}

/// How many times `max_body` a body's JSON form may be (docs/configuration.md#formats): room for a
/// CSV's header names repeated in each row, and a bound on the memory a body of `max_body`
/// can take as text.
const CONVERTED_PER_BODY: u64 = 8;

/// A body in another format as the page's JSON text (and the objects in it), checked as a
/// JSON body is. Converted off
/// the async workers (a large feed or XML document takes a while); a converter that panicked
/// (a bug in a parser) fails this page, not the poll task.
pub(super) async fn converted(
    format: Format,
    body: Vec<u8>,
    max_body: u64,
    url: &str,
    content_type: String,
) -> Result<(String, usize), FetchError> {
    let max_text = max_body
        .saturating_mul(CONVERTED_PER_BODY)
        .try_into()
        .unwrap_or(usize::MAX);
    let text = tokio::task::spawn_blocking(move || formats::convert(format, &body, max_text))
        .await
        .unwrap_or_else(|_| Err(format!("the {} reader failed on it", format.name())))
        .and_then(|c| {
            scan_json(c.text.as_bytes())
                .map(|objects| (c, objects))
                .map_err(|e| format!("its JSON form cannot be read ({e})"))
        });
    if let Ok((c, _)) = &text
        && c.renamed > 0
    {
        // Once per page (a feed is one page, as a rule); the bridge's span names the bridge.
        tracing::warn!(
            entries = c.renamed,
            "feed entries without an id of their own read alike (the same link, or the same title and content): the oldest keeps the derived id, each other one gets `#` and its time, or `#2`, `#3`…"
        );
    }
    text.map(|(c, objects)| (c.text, objects))
        .map_err(|reason| FetchError::BadBody {
            url: url.to_string(),
            format: format.name(),
            content_type,
            reason,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_read_whole_or_refused_with_a_reason() {
        let nested = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        // As deep as a value can be read, and no deeper.
        let deepest = nested(MAX_DEPTH);
        assert_eq!(check_json(deepest.as_bytes()), Ok(()));
        serde_json::from_str::<serde_json::Value>(&deepest).unwrap();
        let deeper = nested(MAX_DEPTH + 1);
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err());
        let e = check_json(deeper.as_bytes()).unwrap_err();
        assert_eq!(e, "nested deeper than 127 levels (at byte 127)");
        // Brackets in strings do not count; escaped quotes do not end them.
        let text = format!(
            r#"{{"a": "{}\"{}", "b": [1e400, -0, 100000000000000000001]}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert_eq!(check_json(text.as_bytes()), Ok(()));
        assert!(
            check_json(b"{\"a\": 1")
                .unwrap_err()
                .starts_with("truncated after 7 bytes")
        );
        assert!(check_json(b"[1, 2,]").is_err());
    }

    #[tokio::test]
    async fn a_converted_body_is_checked_as_a_json_body_is() {
        let csv = Format::Csv { delimiter: b',' };
        let text = converted(csv, b"id\n1\n".to_vec(), 1 << 20, "u", String::new()).await;
        assert_eq!(text.unwrap(), (r#"[{"id":"1"}]"#.to_string(), 1));
        // A header that is one of serde_json's markers, and an NDJSON line as deep as a page
        // may be (the array round the lines is one more).
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for (format, body, want) in [
            (
                csv,
                "$serde_json::private::Number\n1\n".to_string(),
                "is reserved",
            ),
            (Format::Ndjson, deep, "nested deeper than 127"),
        ] {
            let e = converted(
                format,
                body.into_bytes(),
                1 << 20,
                "u",
                " (content-type x)".into(),
            )
            .await
            .unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!(
                    "u: response does not parse as `format: {}` (content-type x): its JSON form cannot be read (",
                    format.name()
                )) && shown.contains(want),
                "{shown}"
            );
        }
    }

    #[test]
    fn the_keys_serde_json_reserves_are_refused_wherever_they_are() {
        for body in [
            r#"{"$serde_json::private::Number": "1"}"#,
            r#"{"id": 1, "$serde_json::private::Number": null}"#,
            r#"[{"a": {"$serde_json::private::RawValue" : "[1]"}}]"#,
            r#"{"\u0024serde_json::private::Number": "1"}"#,
            r#"{"$serde_json::private::Raw\u0056alue": "1"}"#,
        ] {
            let e = check_json(body.as_bytes()).unwrap_err();
            assert!(e.contains("is reserved"), "{body}: {e}");
        }
        // As a value, or close to one, it is just a string.
        for body in [
            r#"{"note": "$serde_json::private::Number"}"#,
            r#"["$serde_json::private::Number", 1]"#,
            r#"{"$serde_json::private::Numbers": 1, "\u0024": 2}"#,
        ] {
            assert_eq!(check_json(body.as_bytes()), Ok(()), "{body}");
        }
    }
}
