//! The persisted derivations of a definition (docs/configuration.md#changed-definitions): the
//! bridge's fingerprint, which gives stored state its meaning, and a sink's id, which keys its
//! outbox queue. Both are pinned by the tests below: changing either needs a migration.

use crate::config::raw::{self, Method, RawBridge, RawFormat, RawNext};
use crate::formats::{FEED_KEY, FEED_SELECT};
use sha2::{Digest, Sha256};

/// A sink's id (format 1): the first 4 bytes of the SHA-256 of its URL as written, in hex. It
/// keys the sink's outbox queue, so it must never change for the same URL (`pinned` tests).
pub(super) fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
}

/// What stored state means: name, source and items as written (before interpolation, so a
/// rotated token in a header or URL does not count as a new meaning).
///
/// Format 1, written out field by field so that renaming a field or a variant in `raw.rs`
/// changes nothing (a changed fingerprint re-baselines the bridge, swallowing the changes
/// since its last poll): the name, then one line each for the URL, the method, the body as
/// YAML, the next-page rule, the select and key paths, and the include and exclude lists,
/// strings in Rust's `{:?}` quoting, absent values as `None`, present optional ones as
/// `Some(…)`; the first 12 bytes of its SHA-256, in hex. `pinned` tests hold its values.
/// Keys added since add a line each, only when present, so that a bridge without them keeps
/// its value: `has_more`, `cursor` (not its `keep`), then a `format` other than JSON (its
/// word, and the CSV delimiter; spelling out `format: json` changes nothing). A feed's select
/// and key count as their defaults when not written.
pub(super) fn fingerprint(raw: &RawBridge, name: &str) -> String {
    let list = |l: &Option<Vec<String>>| {
        some(l.as_ref().map(|l| {
            let items: Vec<String> = l.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        }))
    };
    let s = &raw.source;
    let i = &raw.items;
    let feed = s.format == Some(RawFormat::Feed);
    let select = i.select.as_deref().or(feed.then_some(FEED_SELECT));
    let key = i.key.as_deref().or(feed.then_some(FEED_KEY));
    let method = match s.method {
        Method::GET => "GET",
        Method::POST => "POST",
    };
    let body = s
        .body
        .as_ref()
        .map(|b| q(&serde_yaml::to_string(b).unwrap_or_default()));
    let next = s.paginate.as_ref().map(|p| q(&next_text(&p.next)));
    let mut text = vec![
        name.to_string(),
        q(&s.url),
        method.to_string(),
        some(body),
        some(next),
        q(select.unwrap_or_default()),
        some(key.map(q)),
        list(&i.include),
        list(&i.exclude),
    ];
    text.extend(added_lines(s));
    let text = text.join("\n");
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

/// A string in the fingerprint: Rust's `{:?}` quoting.
fn q(s: &str) -> String {
    format!("{s:?}")
}

/// An optional part of the fingerprint: `None`, or `Some(…)`.
fn some(s: Option<String>) -> String {
    s.map_or("None".to_string(), |s| format!("Some({s})"))
}

/// The next-page rule as the fingerprint spells it (format 1's spelling for the forms it had).
fn next_text(next: &RawNext) -> String {
    match next {
        RawNext::Word(w) => format!("Word({})", q(w)),
        RawNext::Url { url } => format!("Url {{ url: {} }}", q(url)),
        RawNext::Param { param, from } => {
            format!("Param {{ param: {}, from: {} }}", q(param), q(from))
        }
        RawNext::Variable { variable, from } => {
            format!(
                "Variable {{ variable: {}, from: {} }}",
                q(variable),
                q(from)
            )
        }
        // The start as it counts: written out or left to its default is the same.
        RawNext::Page { page, start } => {
            format!(
                "Page {{ page: {}, start: {} }}",
                q(page),
                start.unwrap_or(1)
            )
        }
        RawNext::Offset { offset, start } => {
            format!(
                "Offset {{ offset: {}, start: {} }}",
                q(offset),
                start.unwrap_or(0)
            )
        }
    }
}

/// The lines of the keys added since format 1, each only when present, so that a bridge
/// without them keeps its fingerprint.
fn added_lines(s: &raw::RawSource) -> Vec<String> {
    let mut text = Vec::new();
    if let Some(h) = s.paginate.as_ref().and_then(|p| p.has_more.as_ref()) {
        text.push(format!("has_more: {}", q(h)));
    }
    if let Some(c) = &s.cursor {
        let initial = c
            .initial
            .as_ref()
            .map(|v| q(&serde_yaml::to_string(v).unwrap_or_default()));
        text.push(format!(
            "cursor: {} {} {} {}",
            some(c.param.as_deref().map(q)),
            some(c.variable.as_deref().map(q)),
            q(&c.from),
            some(initial),
        ));
    }
    if let Some(f) = s.format.filter(|f| *f != RawFormat::Json) {
        let delimiter = (f == RawFormat::Csv).then(|| {
            let d = s.csv.as_ref().and_then(|c| c.delimiter.as_deref());
            q(d.unwrap_or(","))
        });
        let word = match f {
            RawFormat::Json => "json",
            RawFormat::Ndjson => "ndjson",
            RawFormat::Csv => "csv",
            RawFormat::Feed => "feed",
            RawFormat::Xml => "xml",
        };
        text.push(format!("format {} {}", q(word), some(delimiter)));
    }
    text
}

/// The persisted derivations of a definition, pinned: a change to any of these values
/// re-baselines every user's bridges (the fingerprint) or orphans their queues (the sink id),
/// so it must fail here first, never pass unnoticed.
#[cfg(test)]
mod pinned {
    use super::*;

    fn raw(yaml: &str) -> RawBridge {
        serde_yaml::from_str(yaml).unwrap()
    }

    const PLAIN: &str = "schedule: {every: 5m}\nsource: {url: \"https://api.example.com/items?token=${T}\"}\nitems: {select: \"$.items[*]\", key: \"$.id\"}\nsinks: [{url: console}]\n";
    const FULL: &str = r#"schedule: {every: 5m}
source:
  url: "https://api.example.com/search"
  method: POST
  body: {query: "état \"x\"", page: 1, tags: [a, b]}
  paginate: {next: {param: cursor, from: "$.next"}, max_pages: 3}
items:
  select: "$.data[*]"
  key: "$.node.id"
  include: ["$.title", "$.state"]
  exclude: ["$.updated_at"]
sinks: [{url: console}]
"#;

    #[test]
    fn fingerprints_are_pinned() {
        let cases = [
            (
                fingerprint(&raw(PLAIN), "plain"),
                "0225ba6a41594810ea3b9fcf",
            ),
            (fingerprint(&raw(FULL), "full"), "616b8fcb2547d73841825512"),
            (
                fingerprint(
                    &raw(&PLAIN.replace("key: \"$.id\"}", "key: \"$.id\", include: [\"$.a\"]}")),
                    "plain",
                ),
                "72b84c2e8038f10fa0d9fbf7",
            ),
            (
                fingerprint(
                    &raw(&FULL.replace("{param: cursor, from: \"$.next\"}", "link")),
                    "full",
                ),
                "2094770301e49fbedf57555d",
            ),
            (
                fingerprint(
                    &raw(&FULL.replace(
                        "{param: cursor, from: \"$.next\"}",
                        "{url: \"$.links.next\"}",
                    )),
                    "full",
                ),
                "9b95e7fffd6ba35b84d31f96",
            ),
        ];
        let got: Vec<&str> = cases.iter().map(|(g, _)| g.as_str()).collect();
        let want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
        assert_eq!(got, want);
    }

    /// Pagination forms and cursors (docs/configuration.md#changed-definitions): each changes the
    /// meaning, and has a value of its own; `keep` and a bridge without these keys change nothing.
    #[test]
    fn listing_fingerprints_are_pinned() {
        let next = |n: &str| {
            fingerprint(
                &raw(&FULL.replace("{param: cursor, from: \"$.next\"}", n)),
                "full",
            )
        };
        let cursor = |c: &str| {
            fingerprint(
                &raw(&PLAIN.replace("items?token=${T}\"}", &format!("items\", cursor: {c}}}"))),
                "plain",
            )
        };
        let got = [
            next("{variable: after, from: \"$.end\"}"),
            next("{page: page, start: 1}"),
            next("{page: page}"),
            next("{offset: offset, start: 0}"),
            fingerprint(
                &raw(&FULL.replace("max_pages: 3}", "max_pages: 3, has_more: \"$.more\"}")),
                "full",
            ),
            cursor("{param: since, from: \"$.updated_at\"}"),
            cursor("{param: since, from: \"$.updated_at\", initial: \"2026-01-01\"}"),
            cursor("{param: since, from: \"$.updated_at\", initial: 0}"),
            cursor("{variable: since, from: \"$.updated_at\"}"),
        ];
        let want = [
            "ce07c26352f9c6b4fc792b3c",
            "95385e74fea224b8dc57a4af",
            "95385e74fea224b8dc57a4af",
            "5eda162c3fbce237e88628ae",
            "52b56fbff89401f8e441d20a",
            "491512b8b23f2f97acdb9b47",
            "75de82ff500714e8418ce8b1",
            "fb335b9b3806c7cc2e502f97",
            "a427d99ffb162bc6b41f4003",
        ];
        assert_eq!(got, want);
        // Retention is not meaning.
        assert_eq!(
            cursor("{param: since, from: \"$.updated_at\", keep: 30d}"),
            got[5]
        );
    }

    /// A `format` other than JSON is a new meaning; a feed's defaults count as written.
    #[test]
    fn format_fingerprints_are_pinned() {
        let with = |extra: &str| {
            raw(&PLAIN.replace("token=${T}\"}", &format!("token=${{T}}\", {extra}}}")))
        };
        let plain = fingerprint(&raw(PLAIN), "plain");
        assert_eq!(fingerprint(&with("format: json"), "plain"), plain);
        let got = [
            fingerprint(&with("format: ndjson"), "plain"),
            fingerprint(&with("format: csv"), "plain"),
            fingerprint(&with("format: csv, csv: {delimiter: \";\"}"), "plain"),
            fingerprint(&with("format: xml"), "plain"),
            fingerprint(&with("format: feed"), "plain"),
        ];
        assert_eq!(
            got,
            [
                "00d5fbdf2eeb1466f5754526",
                "e6c786ef2d02b356dab5a75b",
                "b090fc8ff8100f2b196325a4",
                "7caab6774a6bbfe61c058736",
                "c7a68a250c8ef072a37f0c33"
            ]
        );
        assert_eq!(
            fingerprint(&with("format: csv, csv: {delimiter: \",\"}"), "plain"),
            got[1]
        );
        let feed = "schedule: {every: 5m}\nsource: {url: \"https://blog.example/feed\", format: feed}\nsinks: [{url: console}]\n";
        let spelled = feed.replace(
            "sinks:",
            "items: {select: \"$.entries[*]\", key: \"$.id\"}\nsinks:",
        );
        assert_eq!(
            fingerprint(&raw(feed), "blog"),
            fingerprint(&raw(&spelled), "blog")
        );
        assert_eq!(fingerprint(&raw(feed), "blog"), "7425adacf86612e6a747b42b");
    }

    #[test]
    fn sink_ids_are_pinned() {
        assert_eq!(
            [
                short_hash("https://hooks.example.com/T000/B000/XXXX"),
                short_hash("http://127.0.0.1:8080/hook?k=${KEY}")
            ],
            ["69e74ef2", "6ee5c53b"]
        );
    }
}
