//! XML as JSON, by one mapping an operator can write JSONPath against without seeing the
//! converter (docs/configuration.md#the-xml-mapping):
//!
//! - the document is `{"ROOT": value}`, ROOT the root element's name as written (prefix kept);
//! - an element with no attributes and no child elements is its text: a string, trimmed;
//! - any other element is an object: `"@NAME"` for each attribute, one key per child element
//!   name, and `"#text"` for its own text when that is not blank;
//! - a child element that appears once and is text only is that string; every other child
//!   (one with attributes or children of its own, or a name that repeats) is an array of its
//!   occurrences in document order, so that records are an array whether there is one or many:
//!   a sitemap selects as `$.urlset.url[*]` and keys each URL by `$.loc`.
//!
//! Namespace declarations (`xmlns`, `xmlns:p`), comments, processing instructions and the
//! doctype are left out; CDATA is text; the five predefined entities and character references
//! are resolved, any other entity is an error (no DTD is read, so none can expand). The body
//! must be UTF-8. Built without recursion, and no deeper than [`MAX_ELEMENTS`].

use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// The deepest nesting of elements read: each level becomes at most two levels of JSON (an
/// array of objects), and a page may nest 127 deep.
pub const MAX_ELEMENTS: usize = 60;

/// An element being read: what it has so far.
struct Open {
    name: String,
    attributes: Vec<(String, String)>,
    /// Child elements by name, in the order each name first appeared.
    children: Vec<(String, Vec<Value>)>,
    /// Where each name is in `children`: an element with a great many different child names
    /// costs no more per child than one with a few.
    index: HashMap<String, usize>,
    text: String,
}

impl Open {
    fn new(e: &BytesStart<'_>) -> Result<Open, String> {
        let name = e.name().as_ref().to_string();
        let mut attributes = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(|e| format!("in <{name}>: {e}"))?;
            let key = a.key.as_ref().to_string();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let value = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| format!("in <{name}>, attribute `{key}`: {e}"))?;
            attributes.push((format!("@{key}"), value.into_owned()));
        }
        Ok(Open {
            name,
            attributes,
            children: Vec::new(),
            index: HashMap::new(),
            text: String::new(),
        })
    }

    fn add(&mut self, name: String, value: Value) {
        match self.index.get(&name) {
            Some(&at) => self.children[at].1.push(value),
            None => {
                self.index.insert(name.clone(), self.children.len());
                self.children.push((name, vec![value]));
            }
        }
    }

    /// The element as JSON, by the mapping above.
    fn close(self) -> (String, Value) {
        let text = self.text.trim();
        if self.attributes.is_empty() && self.children.is_empty() {
            return (self.name, Value::String(text.to_string()));
        }
        let mut out = Map::new();
        for (k, v) in self.attributes {
            out.insert(k, Value::String(v));
        }
        for (name, mut all) in self.children {
            let one_text = all.len() == 1 && all[0].is_string();
            let v = if one_text {
                all.pop().unwrap_or_default()
            } else {
                Value::Array(all)
            };
            out.insert(name, v);
        }
        if !text.is_empty() {
            out.insert("#text".into(), Value::String(text.to_string()));
        }
        (self.name, Value::Object(out))
    }
}

/// The text an entity reference stands for.
fn entity(name: &str, r: &quick_xml::events::BytesRef<'_>) -> Result<String, String> {
    if let Some(c) = r.resolve_char_ref().map_err(|e| format!("&{name};: {e}"))? {
        return Ok(c.to_string());
    }
    quick_xml::escape::resolve_predefined_entity(name)
        .map(str::to_string)
        .ok_or_else(|| format!("unknown entity `&{name};` (only the five of XML are read)"))
}

pub fn to_json(body: &[u8]) -> Result<String, String> {
    let text = super::utf8(body)?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<(String, Value)> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("at byte {}: {e}", reader.error_position()))?;
        let closed = match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(format!(
                    "a second root element at byte {}",
                    reader.buffer_position()
                ));
            }
            Event::Start(e) => {
                if stack.len() >= MAX_ELEMENTS {
                    return Err(format!(
                        "elements nested deeper than {MAX_ELEMENTS} (at byte {})",
                        reader.buffer_position()
                    ));
                }
                stack.push(Open::new(&e)?);
                None
            }
            Event::Empty(e) => Some(Open::new(&e)?.close()),
            Event::End(_) => stack.pop().map(Open::close),
            Event::Text(t) => {
                let t = t.xml10_content();
                text_into(&mut stack, &t, reader.buffer_position())?;
                None
            }
            Event::CData(t) => {
                let t = t.xml10_content();
                text_into(&mut stack, &t, reader.buffer_position())?;
                None
            }
            Event::GeneralRef(r) => {
                let name = r.as_ref().to_string();
                let t = entity(&name, &r)?;
                text_into(&mut stack, &t, reader.buffer_position())?;
                None
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::DocType(_) | Event::Comment(_) => None,
        };
        if let Some((name, value)) = closed {
            match stack.last_mut() {
                Some(parent) => parent.add(name, value),
                None => root = Some((name, value)),
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("the document ends inside <{}>", open.name));
    }
    let (name, value) = root.ok_or("no root element")?;
    let mut doc = Map::new();
    doc.insert(name, value);
    Ok(Value::Object(doc).to_string())
}

/// Text goes to the element it is in; outside the root only blanks may stand.
fn text_into(stack: &mut [Open], t: &str, at: u64) -> Result<(), String> {
    match stack.last_mut() {
        Some(open) => open.text.push_str(t),
        None if t.trim().is_empty() => {}
        None => return Err(format!("text outside the root element (at byte {at})")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc(xml: &str) -> Value {
        serde_json::from_str(&to_json(xml.as_bytes()).unwrap()).unwrap()
    }

    const SITEMAP_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#;

    #[test]
    fn a_sitemap_selects_the_same_way_with_one_url_or_many() {
        let one = doc(&format!(
            "{SITEMAP_HEAD}<url><loc>https://example.com/</loc><lastmod>2026-01-01</lastmod></url></urlset>"
        ));
        assert_eq!(
            one,
            json!({"urlset": {"url": [{"loc": "https://example.com/", "lastmod": "2026-01-01"}]}})
        );
        let many = doc(&format!(
            "{SITEMAP_HEAD}\n  <url>\n    <loc>https://example.com/a</loc>\n  </url>\n  <url><loc>https://example.com/b?x=1&amp;y=2</loc></url>\n</urlset>\n"
        ));
        assert_eq!(
            many,
            json!({"urlset": {"url": [
                {"loc": "https://example.com/a"},
                {"loc": "https://example.com/b?x=1&y=2"}
            ]}})
        );
    }

    #[test]
    fn attributes_text_and_repeats_follow_the_mapping() {
        let v = doc(r#"<!DOCTYPE shop><!-- c --><shop id="7" xmlns:x="urn:x">
            <name>Shop &#x26; co</name>
            <tag>a</tag><tag>b</tag>
            <price currency="EUR">9.95</price>
            <x:note><![CDATA[<b>bold</b>]]></x:note>
            <empty/>
            mixed
        </shop>"#);
        assert_eq!(
            v,
            json!({"shop": {
                "@id": "7",
                "name": "Shop & co",
                "tag": ["a", "b"],
                "price": [{"@currency": "EUR", "#text": "9.95"}],
                "x:note": "<b>bold</b>",
                "empty": "",
                "#text": "mixed"
            }})
        );
        assert_eq!(doc("<a/>"), json!({"a": ""}));
        assert_eq!(doc("<a k='1 &lt; 2'/>"), json!({"a": {"@k": "1 < 2"}}));
    }

    #[test]
    fn what_is_not_one_xml_document_is_refused_with_a_reason() {
        for (body, want) in [
            ("", "no root element"),
            ("<a><b></a>", "at byte"),
            ("<a>", "ends inside <a>"),
            ("<a/><b/>", "a second root element"),
            ("x<a/>", "text outside the root"),
            ("<a>&nbsp;</a>", "unknown entity `&nbsp;`"),
            ("<a k=1/>", "in <a>"),
            ("<a>\u{0}</a>", ""),
        ] {
            match to_json(body.as_bytes()) {
                Err(e) => assert!(e.contains(want), "{body}: {e}"),
                Ok(v) if body.contains('\u{0}') => {
                    serde_json::from_str::<Value>(&v).unwrap();
                }
                Ok(v) => panic!("{body}: {v}"),
            }
        }
        let deep = format!(
            "{}{}",
            "<a>".repeat(MAX_ELEMENTS),
            "</a>".repeat(MAX_ELEMENTS)
        );
        to_json(deep.as_bytes()).unwrap();
        let deeper = format!("<r>{deep}</r>");
        let e = to_json(deeper.as_bytes()).unwrap_err();
        assert!(e.contains("nested deeper than 60"), "{e}");
        assert!(to_json(b"<a>\xff</a>").unwrap_err().contains("UTF-8"));
    }

    #[test]
    fn many_children_of_many_names_convert_in_one_pass() {
        let n = 50_000;
        let body: String = std::iter::once("<r>".to_string())
            .chain((0..n).map(|i| format!("<e{i}>{i}</e{i}><e0>x</e0>")))
            .chain(std::iter::once("</r>".to_string()))
            .collect();
        let v = doc(&body);
        assert_eq!(v["r"].as_object().unwrap().len(), n);
        assert_eq!(v["r"]["e0"].as_array().unwrap().len(), n + 1);
        assert_eq!(v["r"]["e49999"], "49999");
    }
}
