//! Source formats (SPEC §13): a body written as NDJSON, CSV, a feed (RSS, Atom, JSON Feed) or
//! XML is turned into JSON text before anything reads it, so that selection, keys, next links
//! in the body, the 304 cache and every guard of a JSON source hold for every format unchanged.
//!
//! Pure and a leaf: bytes in, JSON text or the reason it cannot be made out; no I/O, nothing
//! of the crate. The caller still checks the text it gets as it checks a JSON body (depth,
//! reserved keys), since a converted document is only as tame as the body it came from.

mod feed;
mod xml;

use serde_json::{Map, Value};

/// How a source writes its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// JSON as it comes: not converted.
    #[default]
    Json,
    /// One JSON value per line -> an array of them, in order.
    Ndjson,
    /// A header row, then records -> an array of objects of strings.
    Csv { delimiter: u8 },
    /// RSS 0.9x/1.0/2.0, Atom or JSON Feed -> `{"title", "entries": [...]}` (see `feed`).
    Feed,
    /// Any XML document -> the element/attribute mapping of `xml`.
    Xml,
}

impl Format {
    /// The word a bridge file uses for it, and messages name it by.
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Ndjson => "ndjson",
            Format::Csv { .. } => "csv",
            Format::Feed => "feed",
            Format::Xml => "xml",
        }
    }
}

/// What `select` sees when a feed bridge gives none, and the key inside each entry.
pub const FEED_SELECT: &str = "$.entries[*]";
pub const FEED_KEY: &str = "$.id";

/// The body as JSON text, for every format but [`Format::Json`] (whose body is its own text:
/// given back unchanged, unchecked). The reason, lowercase, when it does not parse.
pub fn to_json(format: Format, body: &[u8]) -> Result<String, String> {
    match format {
        Format::Json => utf8(body).map(str::to_string),
        Format::Ndjson => ndjson(body),
        Format::Csv { delimiter } => csv(body, delimiter),
        Format::Feed => feed::to_json(body),
        Format::Xml => xml::to_json(body),
    }
}

/// The body as UTF-8 text, a leading byte-order mark left out.
fn utf8(body: &[u8]) -> Result<&str, String> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    std::str::from_utf8(body).map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))
}

/// Each non-blank line must be one JSON value; they are copied as written (numbers exact),
/// joined into one array.
fn ndjson(body: &[u8]) -> Result<String, String> {
    let text = utf8(body)?;
    let mut out = String::with_capacity(text.len() + 2);
    out.push('[');
    for (n, line) in text.split('\n').enumerate() {
        let line = line.trim_matches([' ', '\t', '\r']);
        if line.is_empty() {
            continue;
        }
        serde_json::from_str::<serde::de::IgnoredAny>(line)
            .map_err(|e| format!("line {}: {e}", n + 1))?;
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(line);
    }
    out.push(']');
    Ok(out)
}

/// RFC 4180 with the bridge's delimiter: the header row names the fields, every record has as
/// many as it does, each value a string as written.
fn csv(body: &[u8], delimiter: u8) -> Result<String, String> {
    let text = utf8(body)?;
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| e.to_string())?.clone();
    if headers.is_empty() {
        return Err("empty: a header row is needed".into());
    }
    let mut names: Vec<&str> = headers.iter().collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("the header row names `{}` twice", w[0]));
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| e.to_string())?;
        let row: Map<String, Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        rows.push(Value::Object(row));
    }
    Ok(Value::Array(rows).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn parsed(format: Format, body: &str) -> Value {
        serde_json::from_str(&to_json(format, body.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn ndjson_lines_become_an_array_as_written() {
        let body = "{\"id\": 1, \"n\": 100000000000000000001}\r\n\n  \n[2]\n\"x\"";
        let text = to_json(Format::Ndjson, body.as_bytes()).unwrap();
        assert_eq!(
            text,
            "[{\"id\": 1, \"n\": 100000000000000000001},[2],\"x\"]"
        );
        assert_eq!(to_json(Format::Ndjson, b"").unwrap(), "[]");
        assert_eq!(to_json(Format::Ndjson, b"\xEF\xBB\xBF1\n").unwrap(), "[1]");
        let e = to_json(Format::Ndjson, b"{\"a\":1}\n{\"a\":\n").unwrap_err();
        assert!(e.starts_with("line 2: "), "{e}");
        let e = to_json(Format::Ndjson, b"1 2\n").unwrap_err();
        assert!(e.starts_with("line 1: "), "{e}");
        assert!(
            to_json(Format::Ndjson, b"\xff")
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn csv_rows_become_objects_of_strings() {
        let csv = Format::Csv { delimiter: b',' };
        let body = "id,name,note\n1,Ada,\"says \"\"hi\"\", twice\"\n2,Grace,\n";
        assert_eq!(
            parsed(csv, body),
            json!([
                {"id": "1", "name": "Ada", "note": "says \"hi\", twice"},
                {"id": "2", "name": "Grace", "note": ""}
            ])
        );
        let semi = Format::Csv { delimiter: b';' };
        assert_eq!(
            parsed(semi, "\u{feff}sku;price\r\nA-1;9,95\r\n"),
            json!([{"sku": "A-1", "price": "9,95"}])
        );
        assert_eq!(parsed(csv, "id,name\n"), json!([]));
        let e = to_json(csv, b"id,name\n1,Ada\n2\n").unwrap_err();
        assert!(e.contains("found record with 1 field"), "{e}");
        assert!(to_json(csv, b"").unwrap_err().contains("header row"));
        let e = to_json(csv, b"id,id\n1,2\n").unwrap_err();
        assert_eq!(e, "the header row names `id` twice");
    }

    proptest! {
        #[test]
        fn no_body_makes_a_converter_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            for format in [Format::Ndjson, Format::Csv { delimiter: b';' }, Format::Feed, Format::Xml] {
                if let Ok(text) = to_json(format, &body) {
                    prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
                }
            }
        }

        #[test]
        fn no_text_of_markup_makes_a_converter_panic(
            body in proptest::string::string_regex(
                "(<[a-z:]{0,3}( [a-z]{1,2}=\"[^\"<]{0,3}\")?/?>|</[a-z]{0,3}>|<!\\[CDATA\\[|]]>|&[a-z#0-9]{0,4};|[a-z ,;\"\n{}\\[\\]:0-9]){0,60}"
            ).unwrap()
        ) {
            for format in [Format::Ndjson, Format::Csv { delimiter: b',' }, Format::Feed, Format::Xml] {
                if let Ok(text) = to_json(format, body.as_bytes()) {
                    prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
                }
            }
        }
    }
}
