//! Source formats (docs/configuration.md#formats): a body written as NDJSON, CSV, a feed (RSS,
//! Atom, JSON Feed) or XML is turned into JSON text before anything reads it, so that selection,
//! keys, next links in the body, the 304 cache and every guard of a JSON source hold for every
//! format unchanged.
//!
//! Pure and a leaf: bytes in, JSON text or the reason it cannot be made out; no I/O, nothing
//! of the crate. The caller still checks the text it gets as it checks a JSON body (depth,
//! reserved keys), since a converted document is only as tame as the body it came from.

mod feed;
mod rows;
mod xml;

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

/// A body as JSON text, and what the operator should hear of its conversion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Converted {
    pub text: String,
    /// Feed entries whose derived id was the same as another entry's, told apart by a suffix
    /// (see `feed`); 0 for every other format.
    pub renamed: usize,
}

/// The body as JSON text, for every format but [`Format::Json`] (whose body is its own text:
/// given back unchanged, unchecked). The reason, lowercase, when it does not parse, or when
/// the JSON text would be longer than `max_text` bytes: a converted form can be far larger
/// than its body (a CSV repeats every header name in every row), so `max_body` alone does not
/// bound it. CSV stops as soon as it passes the bound; the others are checked once built.
pub fn to_json(format: Format, body: &[u8], max_text: usize) -> Result<String, String> {
    convert(format, body, max_text).map(|c| c.text)
}

/// As [`to_json`], with what the conversion has to report.
pub fn convert(format: Format, body: &[u8], max_text: usize) -> Result<Converted, String> {
    let plain = |text| Converted { text, renamed: 0 };
    let converted = match format {
        Format::Json => utf8(body).map(|t| plain(t.to_string())),
        Format::Ndjson => ndjson(body).map(plain),
        Format::Csv { delimiter } => csv(body, delimiter, max_text).map(plain),
        Format::Feed => feed::to_json(body),
        Format::Xml => xml::to_json(body).map(plain),
    }?;
    if converted.text.len() > max_text {
        return Err(too_long(max_text));
    }
    Ok(converted)
}

fn too_long(max_text: usize) -> String {
    format!("its JSON form would exceed {max_text} bytes")
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
/// many as it does, each value a string as written. Written out as JSON text record by
/// record (fields in name order, as a JSON object prints), refused once longer than
/// `max_text`.
fn csv(body: &[u8], delimiter: u8, max_text: usize) -> Result<String, String> {
    let text = utf8(body)?;
    let mut rows = rows::Rows::new(text.as_bytes(), delimiter);
    if !rows.next()? || rows.record().len() == 0 {
        return Err("empty: a header row is needed".into());
    }
    let names = rows.take();
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_unstable_by_key(|&i| names.field(i));
    if let Some(w) = order
        .windows(2)
        .find(|w| names.field(w[0]) == names.field(w[1]))
    {
        return Err(format!(
            "the header row names `{}` twice",
            names.field(w[0])
        ));
    }
    // Names and values are quoted straight into the text, one at a time: a row of a million
    // columns holds no second copy of its names.
    let quote = |s: &str, out: &mut Vec<u8>| {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    };
    let mut out = b"[".to_vec();
    while rows.next()? {
        let record = rows.record();
        if out.len() > 1 {
            out.push(b',');
        }
        out.push(b'{');
        for (n, &i) in order.iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            quote(names.field(i), &mut out);
            out.push(b':');
            quote(record.field(i), &mut out);
            if out.len() > max_text {
                return Err(too_long(max_text));
            }
        }
        out.push(b'}');
    }
    out.push(b']');
    out.shrink_to_fit();
    // Made of UTF-8 pieces: the body's text and serde_json's quoting.
    String::from_utf8(out)
        .map_err(|e| format!("not UTF-8 at byte {}", e.utf8_error().valid_up_to()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn parsed(format: Format, body: &str) -> Value {
        serde_json::from_str(&to_json(format, body.as_bytes(), usize::MAX).unwrap()).unwrap()
    }

    #[test]
    fn ndjson_lines_become_an_array_as_written() {
        let body = "{\"id\": 1, \"n\": 100000000000000000001}\r\n\n  \n[2]\n\"x\"";
        let text = to_json(Format::Ndjson, body.as_bytes(), usize::MAX).unwrap();
        assert_eq!(
            text,
            "[{\"id\": 1, \"n\": 100000000000000000001},[2],\"x\"]"
        );
        assert_eq!(to_json(Format::Ndjson, b"", usize::MAX).unwrap(), "[]");
        assert_eq!(
            to_json(Format::Ndjson, b"\xEF\xBB\xBF1\n", usize::MAX).unwrap(),
            "[1]"
        );
        let e = to_json(Format::Ndjson, b"{\"a\":1}\n{\"a\":\n", usize::MAX).unwrap_err();
        assert!(e.starts_with("line 2: "), "{e}");
        let e = to_json(Format::Ndjson, b"1 2\n", usize::MAX).unwrap_err();
        assert!(e.starts_with("line 1: "), "{e}");
        assert!(
            to_json(Format::Ndjson, b"\xff", usize::MAX)
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
        let e = to_json(csv, b"id,name\n1,Ada\n2\n", usize::MAX).unwrap_err();
        assert!(e.contains("found record with 1 field"), "{e}");
        assert!(
            to_json(csv, b"", usize::MAX)
                .unwrap_err()
                .contains("header row")
        );
        let e = to_json(csv, b"id,id\n1,2\n", usize::MAX).unwrap_err();
        assert_eq!(e, "the header row names `id` twice");
    }

    /// A CSV that repeats long header names in many empty rows would be hundreds of times
    /// its size as JSON: refused once past the bound, before it is all built.
    #[test]
    fn a_converted_form_longer_than_its_bound_is_refused() {
        let csv = Format::Csv { delimiter: b',' };
        let header: Vec<String> = (0..100).map(|i| format!("{i:0>200}")).collect();
        let mut body = header.join(",") + "\n";
        body.push_str(&format!("{}\n", ",".repeat(99)).repeat(1000));
        // 20 KB of header and 100 KB of commas: 20 MB as JSON.
        let e = to_json(csv, body.as_bytes(), 1 << 20).unwrap_err();
        assert_eq!(e, "its JSON form would exceed 1048576 bytes");
        let fits = to_json(csv, b"id,name\n1,Ada\n", 30).unwrap();
        assert_eq!(fits, r#"[{"id":"1","name":"Ada"}]"#);
        assert!(to_json(csv, b"id,name\n1,Ada\n", 20).is_err());
        for (format, body) in [
            (Format::Ndjson, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n"),
            (Format::Xml, "<a><b>1</b><b>2</b><b>3</b><b>4</b></a>"),
        ] {
            let e = to_json(format, body.as_bytes(), 10).unwrap_err();
            assert_eq!(e, "its JSON form would exceed 10 bytes");
        }
    }

    /// Entities declared in a DTD are never expanded (quick-xml reads no DTD): the billion
    /// laughs are an error or nothing, never gigabytes.
    #[test]
    fn entities_of_a_doctype_are_not_expanded() {
        let mut dtd = String::from("<!ENTITY lol0 \"lollollollollollollollollollol\">");
        for i in 1..10 {
            let refs = format!("&lol{};", i - 1).repeat(10);
            dtd.push_str(&format!("<!ENTITY lol{i} \"{refs}\">"));
        }
        for (format, doc) in [
            (Format::Xml, format!("<!DOCTYPE l [{dtd}]><l>&lol9;</l>")),
            (
                Format::Feed,
                format!(
                    "<?xml version=\"1.0\"?><!DOCTYPE rss [{dtd}]><rss version=\"2.0\"><channel><title>&lol9;</title><item><title>&lol9;</title><guid>a</guid></item></channel></rss>"
                ),
            ),
        ] {
            if let Ok(text) = to_json(format, doc.as_bytes(), usize::MAX) {
                assert!(text.len() < 1000 && !text.contains("lollol"), "{text}");
            }
        }
    }

    proptest! {
        #[test]
        fn no_body_makes_a_converter_panic(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            for format in [Format::Ndjson, Format::Csv { delimiter: b';' }, Format::Feed, Format::Xml] {
                if let Ok(text) = to_json(format, &body, usize::MAX) {
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
                if let Ok(text) = to_json(format, body.as_bytes(), usize::MAX) {
                    prop_assert!(serde_json::from_str::<Value>(&text).is_ok(), "{text}");
                }
            }
        }
    }
}
