//! Feeds (RSS 0.9x/1.0/2.0, Atom, JSON Feed), read by `feed-rs`, as one shape whatever the
//! dialect (docs/configuration.md#the-feed-entry-shape), so one bridge works for any blog:
//!
//! `{"title", "entries": [{"id", "title", "link", "published", "updated", "summary", "content",
//! "authors", "categories"}]}`: texts as strings, times as RFC 3339 in UTC, absent ones `null`;
//! `authors` the names (else e-mail addresses) and `categories` the terms, as arrays of strings.
//!
//! Every entry has an id to key it by: the feed's own (Atom `id`, RSS `guid`, JSON Feed `id`),
//! else its link, else `sha256:` and the hex of the SHA-256 of its title and content (the
//! summary when it has no content). Never a random one, as feed-rs would make by default: a key
//! that changed each poll would report every entry deleted and created again.
//!
//! A derived id is the same for entries that read alike (a status notice posted twice, with
//! no guid or link), and a key two items share fails the poll, every poll: the operator cannot
//! choose another. So derived ids are made unique within the feed (see [`unique`]), in a way
//! that keeps each entry's key as it was when entries come and go at the top of the feed.

use chrono::{DateTime, SecondsFormat, Utc};
use feed_rs::model::{Entry, Link};
use feed_rs::parser::{ParseErrorKind, ParseFeedError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

/// How deep the XML of a feed may nest before it is refused unread: far deeper than any feed,
/// and shallow enough that no reader can run out of stack on it.
const MAX_DEPTH: usize = 256;

/// The most entries a feed may have. Each entry costs feed-rs a few KiB however little it
/// says, so 16 MiB of `<item/>` took gigabytes; real feeds list tens to a few thousand.
pub const MAX_ENTRIES: usize = 20_000;

/// The feed as JSON text, and how many entries took a derived id told apart from another's.
pub fn to_json(body: &[u8]) -> Result<super::Converted, String> {
    screen(body)?;
    let parser = feed_rs::parser::Builder::new()
        // Empty: an entry without an id gets the one this module derives.
        .id_generator(|_, _, _| String::new())
        .sanitize_content(false)
        .build();
    let feed = parser.parse(body).map_err(|e| match e {
        ParseFeedError::ParseError(ParseErrorKind::NoFeedRoot) => {
            "no feed in it: neither an <rss>, <rdf:RDF> or <feed> root element nor a JSON Feed object"
                .to_string()
        }
        e => e.to_string(),
    })?;
    let (ids, renamed) = unique(feed.entries.iter().map(id).collect());
    let entries: Vec<Value> = feed.entries.iter().zip(ids).map(entry).collect();
    let doc = json!({
        "title": feed.title.map(|t| t.content),
        "entries": entries,
    });
    Ok(super::Converted {
        text: doc.to_string(),
        renamed,
    })
}

/// An entry's id before [`unique`]: the feed's own, or derived (with the entry's time, which
/// tells apart entries whose derived ids are the same).
#[derive(Debug)]
enum Id {
    Own(String),
    Derived(String, Time),
}

/// An entry's `published` time, else its `updated` one.
type Time = Option<DateTime<Utc>>;

fn id(e: &Entry) -> Id {
    if !e.id.is_empty() {
        return Id::Own(e.id.clone());
    }
    let time = e.published.or(e.updated);
    if let Some(link) = link(&e.links) {
        return Id::Derived(link.to_string(), time);
    }
    let title = e.title.as_ref().map(|t| t.content.as_str());
    let summary = e.summary.as_ref().map(|t| t.content.as_str());
    let content = e.content.as_ref().and_then(|c| c.body.as_deref());
    let mut h = Sha256::new();
    h.update(title.unwrap_or_default());
    h.update([0]);
    h.update(content.or(summary).unwrap_or_default());
    Id::Derived(format!("sha256:{}", hex::encode(h.finalize())), time)
}

/// The entries' ids, no two the same unless the feed gave them so, and how many derived ids
/// were told apart. The feed's own ids are kept as they are (two the same fail the poll: the
/// feed says they are one entry). Of the entries whose derived id is the same, or is another
/// entry's own id, the oldest keeps it as it is (by `published`, else `updated`; an entry
/// without a time counts as older; among equals, the one nearer the end of the feed, as feeds
/// list the newest first); each other one gets `#` and its time (`sha256:…#2025-06-02T10:00:00Z`)
/// when no other of them has that time, else `#2`, `#3`… from the end of the feed up. So a
/// new entry on top takes a key of its own and the others keep theirs; when the oldest one
/// leaves the feed, the next oldest takes its key.
fn unique(ids: Vec<Id>) -> (Vec<String>, usize) {
    let own: HashSet<&str> = ids
        .iter()
        .filter_map(|i| match i {
            Id::Own(s) => Some(s.as_str()),
            Id::Derived(..) => None,
        })
        .collect();
    // Derived ids by value, their entries in the order they keep or lose the id in.
    let mut groups: BTreeMap<&str, Vec<(usize, Time)>> = BTreeMap::new();
    for (n, i) in ids.iter().enumerate() {
        if let Id::Derived(s, time) = i {
            groups.entry(s).or_default().push((n, *time));
        }
    }
    let mut taken: HashSet<String> = ids.iter().map(|i| i.text().to_string()).collect();
    let mut renamed: Vec<(usize, String)> = Vec::new();
    for (base, mut members) in groups {
        let first_keeps = !own.contains(base);
        if members.len() == 1 && first_keeps {
            continue;
        }
        members.sort_by_key(|&(n, time)| (time, std::cmp::Reverse(n)));
        let mut times: HashMap<Time, usize> = HashMap::new();
        for (_, t) in &members {
            *times.entry(*t).or_default() += 1;
        }
        let mut next = 2usize;
        for &(n, time) in &members[usize::from(first_keeps)..] {
            let by_time = time
                .filter(|t| times.get(&Some(*t)) == Some(&1))
                .map(|t| format!("{base}#{}", self::time(t)))
                .filter(|id| !taken.contains(id));
            let id = by_time.unwrap_or_else(|| {
                loop {
                    let id = format!("{base}#{next}");
                    next += 1;
                    if !taken.contains(&id) {
                        break id;
                    }
                }
            });
            taken.insert(id.clone());
            renamed.push((n, id));
        }
    }
    let count = renamed.len();
    let mut out: Vec<String> = ids.into_iter().map(Id::into_text).collect();
    for (n, id) in renamed {
        out[n] = id;
    }
    (out, count)
}

impl Id {
    fn text(&self) -> &str {
        match self {
            Id::Own(s) | Id::Derived(s, _) => s,
        }
    }

    fn into_text(self) -> String {
        match self {
            Id::Own(s) | Id::Derived(s, _) => s,
        }
    }
}

fn entry((e, id): (&Entry, String)) -> Value {
    let title = e.title.as_ref().map(|t| t.content.as_str());
    let summary = e.summary.as_ref().map(|t| t.content.as_str());
    let content = e.content.as_ref().and_then(|c| c.body.as_deref());
    let link = link(&e.links);
    let authors: Vec<&str> = e
        .authors
        .iter()
        .filter_map(|p| p.name.as_deref().map(unwrap_parens).or(p.email.as_deref()))
        .collect();
    let categories: Vec<&str> = e.categories.iter().map(|c| c.term.as_str()).collect();
    json!({
        "id": id,
        "title": title,
        "link": link,
        "published": e.published.map(time),
        "updated": e.updated.map(time),
        "summary": summary,
        "content": content,
        "authors": authors,
        "categories": categories,
    })
}

/// The entry's page: its `alternate` link (Atom's default relation), else its first.
fn link(links: &[Link]) -> Option<&str> {
    links
        .iter()
        .find(|l| l.rel.as_deref().is_none_or(|r| r == "alternate"))
        .or(links.first())
        .map(|l| l.href.as_str())
}

/// RSS writes an author as `e-mail (Name)`; feed-rs keeps the parentheses round the name.
fn unwrap_parens(name: &str) -> &str {
    name.strip_prefix('(')
        .and_then(|n| n.strip_suffix(')'))
        .unwrap_or(name)
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Refuses markup nested deeper than [`MAX_DEPTH`], counted over the bytes (`<name` opens,
/// `</` and `/>` close; comments, declarations and CDATA sections skipped), and a feed of
/// more than [`MAX_ENTRIES`] (`item` and `entry` elements, any prefix; a JSON Feed's
/// `items`), before any reader builds anything from it.
fn screen(body: &[u8]) -> Result<(), String> {
    // A JSON Feed (feed-rs reads JSON when a `{` comes before any `<`) may hold unclosed HTML
    // in its strings, and serde_json limits its own depth.
    if body.iter().find(|b| matches!(b, b'<' | b'{')) == Some(&b'{') {
        return json_entries(body);
    }
    let too_many = || format!("more than {MAX_ENTRIES} entries");
    let mut entries = 0usize;
    let mut depth = 0usize;
    let mut i = 0;
    while i < body.len() {
        if body[i] != b'<' {
            i += 1;
            continue;
        }
        let rest = &body[i..];
        let skip_to = |end: &[u8]| {
            rest.windows(end.len())
                .position(|w| w == end)
                .map_or(body.len(), |p| i + p + end.len())
        };
        i = match rest.get(1) {
            Some(b'!') if rest.starts_with(b"<![CDATA[") => skip_to(b"]]>"),
            Some(b'!') if rest.starts_with(b"<!--") => skip_to(b"-->"),
            Some(b'!' | b'?') => i + 2,
            Some(b'/') => {
                depth = depth.saturating_sub(1);
                i + 2
            }
            Some(_) => {
                if is_entry(&rest[1..]) {
                    entries += 1;
                    if entries > MAX_ENTRIES {
                        return Err(too_many());
                    }
                }
                let end = skip_to(b">");
                if body.get(end.wrapping_sub(2)) != Some(&b'/') {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(format!("elements nested deeper than {MAX_DEPTH}"));
                    }
                }
                end
            }
            None => i + 1,
        };
    }
    Ok(())
}

/// Whether the element whose name starts `tag` is an entry: `item` or `entry`, any prefix.
fn is_entry(tag: &[u8]) -> bool {
    let end = tag
        .iter()
        .position(|b| b.is_ascii_whitespace() || matches!(b, b'/' | b'>'))
        .unwrap_or(tag.len());
    let name = &tag[..end];
    let local = name.rsplit(|&b| b == b':').next().unwrap_or(name);
    local == b"item" || local == b"entry"
}

/// A JSON Feed's `items`, counted without building them (text that is no JSON Feed is left
/// to feed-rs to refuse).
fn json_entries(body: &[u8]) -> Result<(), String> {
    #[derive(serde::Deserialize)]
    struct Counted {
        #[serde(default)]
        items: Vec<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Counted>(body) {
        Ok(c) if c.items.len() > MAX_ENTRIES => Err(format!("more than {MAX_ENTRIES} entries")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn doc(body: &str) -> Value {
        serde_json::from_str(&to_json(body.as_bytes()).unwrap().text).unwrap()
    }

    #[test]
    fn rss_2_items_take_the_entry_shape() {
        let body = r#"<?xml version="1.0"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel><title>A blog</title><link>https://blog.example/</link><description>d</description>
<item><title>First</title><link>https://blog.example/1</link><guid>urn:post:1</guid>
<pubDate>Tue, 03 Jun 2025 09:39:21 GMT</pubDate><description>Short &amp; sweet</description>
<content:encoded><![CDATA[<p>Long</p>]]></content:encoded>
<author>ada@blog.example (Ada)</author><category>rust</category><category>web</category></item>
<item><title>No guid</title><link>https://blog.example/2</link></item>
<item><title>Neither</title><description>only text</description></item>
</channel></rss>"#;
        let v = doc(body);
        assert_eq!(v["title"], "A blog");
        let e = &v["entries"];
        assert_eq!(
            e[0],
            json!({
                "id": "urn:post:1", "title": "First", "link": "https://blog.example/1",
                "published": "2025-06-03T09:39:21Z", "updated": "2025-06-03T09:39:21Z",
                "summary": "Short & sweet", "content": "<p>Long</p>",
                "authors": ["Ada"], "categories": ["rust", "web"]
            })
        );
        assert_eq!(e[1]["id"], "https://blog.example/2");
        let mut h = Sha256::new();
        h.update(b"Neither\0only text");
        assert_eq!(e[2]["id"], format!("sha256:{}", hex::encode(h.finalize())));
        assert_eq!(e[2]["link"], Value::Null);
        // The same body gives the same ids: nothing random.
        assert_eq!(to_json(body.as_bytes()), to_json(body.as_bytes()));
    }

    /// The ids of an RSS channel's items, and how many were told apart.
    fn ids(items: &str) -> (Vec<String>, usize) {
        let body = format!("<rss version=\"2.0\"><channel><title>t</title>{items}</channel></rss>");
        let c = to_json(body.as_bytes()).unwrap();
        let v: Value = serde_json::from_str(&c.text).unwrap();
        let ids = v["entries"].as_array().unwrap().iter();
        (
            ids.map(|e| e["id"].as_str().unwrap().to_string()).collect(),
            c.renamed,
        )
    }

    #[test]
    fn derived_ids_that_are_the_same_are_told_apart() {
        let hash = |title: &str| {
            let mut h = Sha256::new();
            h.update(format!("{title}\0"));
            format!("sha256:{}", hex::encode(h.finalize()))
        };
        let at = |hour: u32| format!("<pubDate>Mon, 02 Jun 2025 {hour:02}:00:00 +0000</pubDate>");
        // One link, three posts: the oldest keeps it, the others take their times.
        let l = "<link>https://s.example/</link>";
        let (got, renamed) = ids(&format!(
            "<item><title>c</title>{l}{}</item><item><title>a</title>{l}{}</item><item><title>b</title>{l}{}</item>",
            at(12),
            at(8),
            at(10)
        ));
        let want = [
            "https://s.example/#2025-06-02T12:00:00Z",
            "https://s.example/",
            "https://s.example/#2025-06-02T10:00:00Z",
        ];
        assert_eq!((got, renamed), (want.map(String::from).to_vec(), 2));
        // A derived id that is another entry's own: the own one keeps it.
        let (got, renamed) = ids(&format!(
            "<item><title>a</title><link>https://s.example/1</link>{}</item><item><guid>https://s.example/1</guid></item>",
            at(9)
        ));
        assert_eq!(
            got,
            [
                "https://s.example/1#2025-06-02T09:00:00Z",
                "https://s.example/1"
            ]
        );
        assert_eq!(renamed, 1);
        // No times (or the same): numbered from the end of the feed up, past an id taken.
        let x = hash("x");
        let (got, renamed) = ids(&format!(
            "<item><title>x</title></item><item><title>x</title></item><item><guid>{x}#2</guid></item><item><title>x</title></item>"
        ));
        assert_eq!(
            got,
            [
                format!("{x}#4"),
                format!("{x}#3"),
                format!("{x}#2"),
                x.clone()
            ]
        );
        assert_eq!(renamed, 2);
        let (got, _) = ids(&format!(
            "<item><title>x</title>{}</item><item><title>x</title>{}</item><item><title>x</title>{}</item>",
            at(9),
            at(9),
            at(7)
        ));
        assert_eq!(got, [format!("{x}#3"), format!("{x}#2"), x.clone()]);
        // An untimed one counts as the oldest.
        let (got, _) = ids(&format!(
            "<item><title>x</title>{}</item><item><title>x</title></item>",
            at(9)
        ));
        assert_eq!(got, [format!("{x}#2025-06-02T09:00:00Z"), x.clone()]);
        // The feed's own ids are its own: two the same stay so (the poll names the key).
        let (got, renamed) = ids("<item><guid>g</guid></item><item><guid>g</guid></item>");
        assert_eq!((got, renamed), (vec!["g".to_string(), "g".to_string()], 0));
        // As many entries as a feed may hold, all alike: each its own, at once.
        let (got, renamed) = ids(&"<item/>".repeat(MAX_ENTRIES));
        assert_eq!(renamed, MAX_ENTRIES - 1);
        let unique: HashSet<&String> = got.iter().collect();
        assert_eq!(unique.len(), MAX_ENTRIES);
    }

    #[test]
    fn atom_rss_1_and_json_feed_take_the_same_shape() {
        let atom = doc(
            r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><id>urn:f</id>
<updated>2025-01-02T03:04:05Z</updated>
<entry><id>tag:x,2025:1</id><title type="html">A &amp;lt;b&amp;gt;</title>
<link rel="edit" href="https://x.example/edit/1"/><link href="https://x.example/1"/>
<updated>2025-01-02T03:04:05.5+01:00</updated><summary>S</summary>
<content type="html">&lt;p&gt;C&lt;/p&gt;</content><author><name>Ada</name></author>
<category term="news"/></entry></feed>"#,
        );
        let e = &atom["entries"][0];
        assert_eq!(e["id"], "tag:x,2025:1");
        assert_eq!(e["link"], "https://x.example/1");
        assert_eq!(e["updated"], "2025-01-02T02:04:05.500Z");
        assert_eq!(
            (&e["authors"], &e["categories"]),
            (&json!(["Ada"]), &json!(["news"]))
        );
        assert_eq!(e["content"], "<p>C</p>");

        let rss1 = doc(
            r#"<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">
<channel rdf:about="https://r.example/"><title>R</title><link>https://r.example/</link></channel>
<item rdf:about="https://r.example/a"><title>A</title><link>https://r.example/a</link></item>
</rdf:RDF>"#,
        );
        assert_eq!(rss1["entries"][0]["id"], "https://r.example/a");

        let jf = doc(
            r#"{"version": "https://jsonfeed.org/version/1.1", "title": "J",
            "items": [{"id": "1", "content_html": "<p>x</p>", "url": "https://j.example/1",
                       "tags": ["a"], "date_published": "2025-02-03T04:05:06Z"},
                      {"url": "https://j.example/2", "content_text": "y"}]}"#,
        );
        assert_eq!(jf["title"], "J");
        assert_eq!(jf["entries"][0]["id"], "1");
        assert_eq!(jf["entries"][0]["published"], "2025-02-03T04:05:06Z");
        assert_eq!(jf["entries"][1]["id"], "https://j.example/2");
    }

    #[test]
    fn what_is_no_feed_is_refused_with_a_reason() {
        for body in [
            "",
            "{}",
            "[]",
            "<html><body>hi</body></html>",
            "<rss version=\"2.0\">",
            "<<<",
        ] {
            assert!(to_json(body.as_bytes()).is_err(), "{body}");
        }
        let deep = format!(
            "<rss version=\"2.0\"><channel><item><description>{}</description></item></channel></rss>",
            "<b>".repeat(100_000)
        );
        assert!(
            to_json(deep.as_bytes())
                .unwrap_err()
                .contains("nested deeper than 256")
        );
        // Self-closed, commented and CDATA markup does not count.
        let flat = format!(
            "<rss version=\"2.0\"><channel><title>t</title>{}<!-- <a><a> -->{}<item><title>x</title><description><![CDATA[{}]]></description></item></channel></rss>",
            "<x/>".repeat(1000),
            "<br />".repeat(300),
            "<a>".repeat(1000)
        );
        assert_eq!(doc(&flat)["entries"][0]["title"], "x");
    }

    #[test]
    fn a_feed_of_too_many_entries_is_refused_unread() {
        let many = |n: usize, item: &str| {
            format!(
                "<rss version=\"2.0\"><channel><title>t</title>{}</channel></rss>",
                item.repeat(n)
            )
        };
        let want = Err(format!("more than {MAX_ENTRIES} entries"));
        assert_eq!(to_json(many(MAX_ENTRIES + 1, "<item/>").as_bytes()), want);
        let atom = format!(
            "<a:feed xmlns:a=\"http://www.w3.org/2005/Atom\">{}</a:feed>",
            "<a:entry ></a:entry>".repeat(MAX_ENTRIES + 1)
        );
        assert_eq!(to_json(atom.as_bytes()), want);
        let json = format!(
            "{{\"version\": \"https://jsonfeed.org/version/1.1\", \"title\": \"t\", \"items\": [{}{{}}]}}",
            "{},".repeat(MAX_ENTRIES)
        );
        assert_eq!(to_json(json.as_bytes()), want);
        // As many as allowed, and elements that only start like one (`<items>`), are read.
        let ok = many(MAX_ENTRIES, "<item><guid>g</guid></item>")
            .replace("<title>t</title>", "<title>t</title><items/><itemx/>");
        let doc: Value = serde_json::from_str(&to_json(ok.as_bytes()).unwrap().text).unwrap();
        assert_eq!(doc["entries"].as_array().unwrap().len(), MAX_ENTRIES);
    }

    proptest! {
        #[test]
        fn no_feed_like_text_makes_the_reader_panic(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "<rss version=\"2.0\">", "<channel>", "</channel>", "<item>", "</item>",
                "<title>", "</title>", "<guid>", "</guid>", "<link>", "</link>", "<pubDate>",
                "</pubDate>", "<feed xmlns=\"http://www.w3.org/2005/Atom\">", "<entry>",
                "</entry>", "<link href=\"x\"/>", "<updated>2025-01-01T00:00:00Z</updated>",
                "<content type=\"xhtml\">", "</content>", "<div>", "</div>", "&amp;", "&#0;",
                "<![CDATA[", "]]>", "x", " ", "Mon, 99 Jan 2025 25:00:00 GMT", "{\"items\":[",
                "{\"id\":1}", "\"version\"", ":", ",", "]", "}", "\u{ff}",
            ]), 0..40)
        ) {
            let body = parts.concat();
            if let Ok(c) = to_json(body.as_bytes()) {
                prop_assert!(serde_json::from_str::<Value>(&c.text).is_ok(), "{}", c.text);
            }
        }
    }
}
