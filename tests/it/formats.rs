//! Source formats (docs/configuration.md#formats): real RSS 2.0, Atom, JSON Feed, CSV, NDJSON and
//! sitemap bodies served on 127.0.0.1, polled through the real poll path into a real store, and the
//! events each poll emits; a body that does not parse in its format; a 304 for a feed; pages.

use crate::support::*;
use pollhook::config::Bridge;
use pollhook::poll::PollReport;

/// The events of one poll as `(type, key)`, sorted.
fn events(r: &PollReport) -> Vec<(&'static str, String)> {
    let mut out: Vec<_> = r
        .events
        .iter()
        .map(|e| {
            let kind = e.kind.as_str();
            (kind.strip_prefix("item.").unwrap_or(kind), e.key.clone())
        })
        .collect();
    out.sort();
    out
}

fn ev(list: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    let mut out: Vec<_> = list.iter().map(|(k, v)| (*k, v.to_string())).collect();
    out.sort();
    out
}

/// A bridge over `up` in `format`, every event emitted from the first poll on; `items` lines
/// as written, none for a feed's defaults.
fn bridge(h: &Harness, up: &Upstream, source: &[&str], items: &[&str]) -> Bridge {
    let mut y = BridgeYaml::new(&up.url())
        .timeout("5s")
        .max_fraction("1.0")
        .first_poll("emit")
        .sink("console")
        .without_items();
    for l in source {
        y = y.source(l);
    }
    for l in items {
        y = y.items(l);
    }
    h.bridge("fmt", &y.build())
}

/// Polls once for each body (served with `content_type`) and gives each poll's events.
async fn polls(
    h: &Harness,
    b: &Bridge,
    up: &Upstream,
    content_type: &'static str,
    bodies: &[String],
) -> Vec<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    for body in bodies {
        up.set(200, content_type, body);
        let r = h.poll(b).await.unwrap_or_else(|e| panic!("{e}\n{body}"));
        out.push(events(&r));
    }
    out
}

/// An RSS 2.0 channel as a blog's generator writes it: items are (guid, link, title).
fn rss(items: &[(Option<&str>, Option<&str>, &str)]) -> String {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="utf-8" standalone="yes"?>
<rss version="2.0" xmlns:atom="http://www.w3.org/2005/Atom" xmlns:content="http://purl.org/rss/1.0/modules/content/">
  <channel>
    <title>Example Engineering Blog</title>
    <link>https://blog.example.com/</link>
    <description>Recent content on Example Engineering Blog</description>
    <generator>Hugo</generator>
    <language>en-us</language>
    <lastBuildDate>Mon, 02 Jun 2025 10:00:00 +0000</lastBuildDate>
    <atom:link href="https://blog.example.com/index.xml" rel="self" type="application/rss+xml" />
"#,
    );
    for (guid, link, title) in items {
        x.push_str("    <item>\n");
        x.push_str(&format!("      <title>{title}</title>\n"));
        if let Some(l) = link {
            x.push_str(&format!("      <link>{l}</link>\n"));
        }
        x.push_str("      <pubDate>Mon, 02 Jun 2025 09:00:00 +0000</pubDate>\n");
        if let Some(g) = guid {
            x.push_str(&format!("      <guid isPermaLink=\"false\">{g}</guid>\n"));
        }
        x.push_str(&format!(
            "      <description>&lt;p&gt;About {title}&lt;/p&gt;</description>\n    </item>\n"
        ));
    }
    x.push_str("  </channel>\n</rss>\n");
    x
}

#[tokio::test]
async fn an_rss_2_feed_reports_created_updated_and_deleted_entries() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(&h, &up, &["format: feed"], &[]);
    let p1 = "https://blog.example.com/posts/one/";
    let p2 = "https://blog.example.com/posts/two/";
    let got = polls(
        &h,
        &b,
        &up,
        "application/rss+xml",
        &[
            // A guid, and one without a guid (keyed by its link).
            rss(&[
                (Some("urn:post:1"), Some(p1), "One"),
                (None, Some(p2), "Two"),
            ]),
            // Both edited, nothing added or removed.
            rss(&[
                (Some("urn:post:1"), Some(p1), "One, edited"),
                (None, Some(p2), "Two, edited"),
            ]),
            // A new post on top; the first one gone.
            rss(&[
                (
                    Some("urn:post:3"),
                    Some("https://blog.example.com/posts/three/"),
                    "Three",
                ),
                (None, Some(p2), "Two, edited"),
            ]),
            // The same feed again: no change.
            rss(&[
                (
                    Some("urn:post:3"),
                    Some("https://blog.example.com/posts/three/"),
                    "Three",
                ),
                (None, Some(p2), "Two, edited"),
            ]),
        ],
    )
    .await;
    assert_eq!(
        got,
        [
            ev(&[("created", "urn:post:1"), ("created", p2)]),
            ev(&[("updated", "urn:post:1"), ("updated", p2)]),
            ev(&[("created", "urn:post:3"), ("deleted", "urn:post:1")]),
            vec![],
        ]
    );
    // What a sink receives is the entry shape.
    let (items, _, _) = h.snapshot("fmt");
    let three = &items.iter().find(|(k, ..)| k == "urn:post:3").unwrap().2;
    assert_eq!(three["title"], "Three");
    assert_eq!(three["link"], "https://blog.example.com/posts/three/");
    assert_eq!(three["published"], "2025-06-02T09:00:00Z");
    assert_eq!(three["summary"], "<p>About Three</p>");
}

/// An Atom feed as GitHub serves a repository's releases.
fn atom(entries: &[(&str, &str)]) -> String {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:media="http://search.yahoo.com/mrss/" xml:lang="en-US">
  <id>tag:github.com,2008:https://github.com/tokio-rs/tokio/releases</id>
  <link type="text/html" rel="alternate" href="https://github.com/tokio-rs/tokio/releases"/>
  <link type="application/atom+xml" rel="self" href="https://github.com/tokio-rs/tokio/releases.atom"/>
  <title>Release notes from tokio</title>
  <updated>2025-05-28T10:00:00Z</updated>
"#,
    );
    for (tag, body) in entries {
        x.push_str(&format!(
            r#"  <entry>
    <id>tag:github.com,2008:Repository/40209463/{tag}</id>
    <updated>2025-05-28T10:00:00Z</updated>
    <link rel="alternate" type="text/html" href="https://github.com/tokio-rs/tokio/releases/tag/{tag}"/>
    <title>Tokio {tag}</title>
    <content type="html">&lt;p&gt;{body}&lt;/p&gt;</content>
    <author><name>Darksonn</name></author>
    <media:thumbnail height="30" width="30" url="https://avatars.githubusercontent.com/u/928193?s=60&amp;v=4"/>
  </entry>
"#
        ));
    }
    x.push_str("</feed>\n");
    x
}

#[tokio::test]
async fn an_atom_feed_reports_created_updated_and_deleted_entries() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(
        &h,
        &up,
        &["format: feed"],
        &["include: [\"$.title\", \"$.content\"]"],
    );
    let id = |tag: &str| format!("tag:github.com,2008:Repository/40209463/{tag}");
    let got = polls(
        &h,
        &b,
        &up,
        "application/atom+xml; charset=utf-8",
        &[
            atom(&[("tokio-1.45.0", "Fixes"), ("tokio-1.44.2", "Security")]),
            atom(&[
                ("tokio-1.45.1", "Patch"),
                ("tokio-1.45.0", "Fixes, more"),
                ("tokio-1.44.2", "Security"),
            ]),
            atom(&[("tokio-1.45.1", "Patch")]),
        ],
    )
    .await;
    assert_eq!(
        got,
        [
            ev(&[
                ("created", &id("tokio-1.45.0")),
                ("created", &id("tokio-1.44.2"))
            ]),
            ev(&[
                ("created", &id("tokio-1.45.1")),
                ("updated", &id("tokio-1.45.0"))
            ]),
            ev(&[
                ("deleted", &id("tokio-1.45.0")),
                ("deleted", &id("tokio-1.44.2"))
            ]),
        ]
    );
}

/// A JSON Feed 1.1 document; items are (id, url, text).
fn json_feed(items: &[(Option<&str>, Option<&str>, &str)]) -> String {
    let items: Vec<serde_json::Value> = items
        .iter()
        .map(|(id, url, text)| {
            let mut v = serde_json::json!({
                "title": format!("Note {text}"),
                "content_text": text,
                "date_published": "2025-06-01T12:00:00-07:00",
            });
            if let Some(id) = id {
                v["id"] = (*id).into();
            }
            if let Some(url) = url {
                v["url"] = (*url).into();
            }
            v
        })
        .collect();
    serde_json::json!({
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Example notes",
        "home_page_url": "https://notes.example.com/",
        "feed_url": "https://notes.example.com/feed.json",
        "items": items,
    })
    .to_string()
}

#[tokio::test]
async fn a_json_feed_with_and_without_ids_reports_its_entries() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(&h, &up, &["format: feed"], &[]);
    let link = "https://notes.example.com/2";
    let got = polls(
        &h,
        &b,
        &up,
        "application/feed+json",
        &[
            json_feed(&[
                (Some("1"), None, "a"),
                (None, Some(link), "b"),
                (None, None, "c"),
            ]),
            // The one with an id and the one keyed by its link edited; the one keyed by the
            // hash of its title and content cannot be: edited, it is another entry.
            json_feed(&[
                (Some("1"), None, "a2"),
                (None, Some(link), "b2"),
                (None, None, "c2"),
            ]),
        ],
    )
    .await;
    assert_eq!(got[0].len(), 3, "{got:?}");
    let hashed: Vec<&String> = got[0]
        .iter()
        .map(|(_, k)| k)
        .filter(|k| k.starts_with("sha256:"))
        .collect();
    assert_eq!(hashed.len(), 1, "{got:?}");
    assert_eq!(got[0][0], ("created", "1".to_string()));
    assert!(got[0].contains(&("created", link.to_string())));
    let second = &got[1];
    assert!(second.contains(&("updated", "1".to_string())), "{second:?}");
    assert!(
        second.contains(&("updated", link.to_string())),
        "{second:?}"
    );
    assert!(
        second.contains(&("deleted", hashed[0].clone())),
        "{second:?}"
    );
    assert_eq!(second.len(), 4, "{second:?}");
}

/// A status page's RSS as some generators write it: no guid, no link, the same notice word for
/// word each time it happens. Items are (title, hour of `pubDate`), newest first.
fn status_feed(items: &[(&str, &str)]) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\"?>\n<rss version=\"2.0\"><channel><title>Status</title>\n",
    );
    for (title, hour) in items {
        x.push_str(&format!(
            "<item><title>{title}</title><pubDate>Mon, 02 Jun 2025 {hour}:00:00 +0000</pubDate><description>Notice: {title}</description></item>\n"
        ));
    }
    x.push_str("</channel></rss>\n");
    x
}

/// The key an entry without guid and link is given: the SHA-256 of its title and content.
fn hashed(title: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(format!("{title}\0Notice: {title}"));
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// Entries that share title and content and have no guid or link (the same notice posted
/// twice) once shared their key, and every poll failed for good. The oldest keeps the key;
/// each other one is told apart by its own time; new ones on top are created and nothing
/// else moves.
#[tokio::test]
async fn feed_entries_alike_without_guid_or_link_each_get_a_key() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(&h, &up, &["format: feed"], &[]);
    let (restored, deploy) = (hashed("Restored"), hashed("Deploy"));
    let at = |hour: &str| format!("{restored}#2025-06-02T{hour}:00:00Z");
    let three = [("Restored", "10"), ("Deploy", "09"), ("Restored", "08")];
    let four = [
        ("Restored", "11"),
        ("Restored", "10"),
        ("Deploy", "09"),
        ("Restored", "08"),
    ];
    let got = polls(
        &h,
        &b,
        &up,
        "application/rss+xml",
        &[
            status_feed(&three),
            // Another on top: created; the others keep their keys.
            status_feed(&four),
            status_feed(&four),
            // The oldest falls off the end: the next oldest takes the bare key.
            status_feed(&four[..3]),
        ],
    )
    .await;
    assert_eq!(
        got,
        [
            ev(&[
                ("created", &restored),
                ("created", &at("10")),
                ("created", &deploy)
            ]),
            ev(&[("created", &at("11"))]),
            vec![],
            ev(&[("updated", &restored), ("deleted", &at("10"))]),
        ]
    );
    let (items, _, _) = h.snapshot("fmt");
    let published = |key: &str| {
        let item = items.iter().find(|(k, ..)| k == key).unwrap();
        item.2["published"].as_str().unwrap().to_string()
    };
    assert_eq!(published(&restored), "2025-06-02T10:00:00Z");
    assert_eq!(published(&at("11")), "2025-06-02T11:00:00Z");

    // Twins to the second (the same time too) are numbered from the end of the feed up.
    up.set(
        200,
        "application/rss+xml",
        &status_feed(&[("Deploy", "09"), ("Deploy", "09"), ("Deploy", "09")]),
    );
    h.poll(&b).await.unwrap();
    let mut keys: Vec<String> = h.snapshot("fmt").0.into_iter().map(|(k, ..)| k).collect();
    keys.sort();
    let mut want = [deploy.clone(), format!("{deploy}#2"), format!("{deploy}#3")];
    want.sort();
    assert_eq!(keys, want);
}

/// The real binary says so, at WARN, once in each poll, with the count: the operator learns
/// where the `#…` keys come from.
#[tokio::test]
async fn the_daemon_warns_once_a_poll_of_entries_told_apart() {
    let up = Upstream::start().await;
    let feed = [("Restored", "10"), ("Restored", "09"), ("Restored", "08")];
    up.set(200, "application/rss+xml", &status_feed(&feed));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1s")
        .source("format: feed")
        .without_items()
        .first_poll("emit")
        .sink("console")
        .write(dir.path(), "status");
    let d = Daemon::start(dir.path(), &[]);
    let polls = |d: &Daemon| d.logs().matches(" INFO poll ").count();
    until("three polls", || polls(&d) >= 3).await;
    let (_, out, logs) = d.terminate().await;
    let created = out
        .iter()
        .filter(|l| l.contains("\"item.created\""))
        .count();
    assert_eq!(created, 3, "{out:?}");
    // Each poll's INFO line has exactly one WARN before it (since the poll before).
    let mut warned = 0;
    for l in &logs {
        if l.contains("WARN") && l.contains("read alike") {
            assert!(
                l.contains("entries=2") && l.contains("bridge=status"),
                "{l}"
            );
            warned += 1;
        } else if l.contains(" INFO poll ") {
            assert_eq!(warned, 1, "{}", logs.join("\n"));
            warned = 0;
        }
    }
}

#[tokio::test]
async fn a_csv_with_a_semicolon_reports_its_rows() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(
        &h,
        &up,
        &["format: csv", "csv: {delimiter: \";\"}"],
        &["select: \"$[*]\"", "key: \"$.sku\""],
    );
    let got = polls(
        &h,
        &b,
        &up,
        "text/csv; charset=utf-8",
        &[
            "sku;name;price\r\nA-1;Kettle;24,90\r\nB-2;\"Mug; blue\";7,50\r\n".into(),
            "sku;name;price\r\nA-1;Kettle;19,90\r\nC-3;Teapot;31,00\r\n".into(),
        ],
    )
    .await;
    assert_eq!(
        got,
        [
            ev(&[("created", "A-1"), ("created", "B-2")]),
            ev(&[("created", "C-3"), ("updated", "A-1"), ("deleted", "B-2")]),
        ]
    );
    let (items, _, _) = h.snapshot("fmt");
    assert_eq!(
        items[0].2,
        serde_json::json!({"sku": "A-1", "name": "Kettle", "price": "19,90"})
    );
}

#[tokio::test]
async fn an_ndjson_export_reports_its_lines() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(
        &h,
        &up,
        &["format: ndjson"],
        &["select: \"$[*]\"", "key: \"$.id\""],
    );
    let got = polls(
        &h,
        &b,
        &up,
        "application/x-ndjson",
        &[
            "{\"id\": 1, \"state\": \"open\"}\n{\"id\": 2, \"state\": \"open\"}\n".into(),
            "{\"id\": 1, \"state\": \"closed\"}\n\n{\"id\": 3, \"state\": \"open\"}".into(),
        ],
    )
    .await;
    assert_eq!(
        got,
        [
            ev(&[("created", "1"), ("created", "2")]),
            ev(&[("created", "3"), ("updated", "1"), ("deleted", "2")]),
        ]
    );
}

fn sitemap(urls: &[(&str, &str)]) -> String {
    let mut x = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\" xmlns:xhtml=\"http://www.w3.org/1999/xhtml\">\n",
    );
    for (loc, lastmod) in urls {
        x.push_str(&format!(
            "  <url>\n    <loc>{loc}</loc>\n    <lastmod>{lastmod}</lastmod>\n    <changefreq>weekly</changefreq>\n  </url>\n"
        ));
    }
    x.push_str("</urlset>\n");
    x
}

#[tokio::test]
async fn a_sitemap_selects_alike_with_one_url_or_many() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(
        &h,
        &up,
        &["format: xml"],
        &["select: \"$.urlset.url[*]\"", "key: \"$.loc\""],
    );
    let (home, about, blog) = (
        "https://www.example.com/",
        "https://www.example.com/about",
        "https://www.example.com/blog?page=2&amp;tag=rust",
    );
    let got = polls(
        &h,
        &b,
        &up,
        "application/xml",
        &[
            sitemap(&[(home, "2025-01-01")]),
            sitemap(&[
                (home, "2025-01-01"),
                (about, "2025-01-01"),
                (blog, "2025-01-02"),
            ]),
            sitemap(&[(home, "2025-02-01"), (blog, "2025-01-02")]),
            sitemap(&[(blog, "2025-01-02")]),
        ],
    )
    .await;
    let blog = "https://www.example.com/blog?page=2&tag=rust";
    assert_eq!(
        got,
        [
            ev(&[("created", home)]),
            ev(&[("created", about), ("created", blog)]),
            ev(&[("updated", home), ("deleted", about)]),
            ev(&[("deleted", home)]),
        ]
    );
}

#[tokio::test]
async fn a_body_that_does_not_parse_in_its_format_fails_the_poll_and_loses_nothing() {
    let up = Upstream::start().await;
    let cases: [(&[&str], &[&str], String, &str); 5] = [
        (
            &["format: feed"],
            &[],
            rss(&[(Some("g"), None, "x")]),
            "<html><body>maintenance</body></html>",
        ),
        (
            &["format: csv"],
            &["select: \"$[*]\"", "key: \"$.id\""],
            "id,v\n1,a\n".into(),
            "id,v\n1,a,extra\n",
        ),
        (
            &["format: ndjson"],
            &["select: \"$[*]\"", "key: \"$.id\""],
            "{\"id\":1}\n".into(),
            "{\"id\":1}\n{\"id\":2\n",
        ),
        (
            &["format: xml"],
            &["select: \"$.urlset.url[*]\"", "key: \"$.loc\""],
            sitemap(&[("https://x.example/", "2025-01-01")]),
            "<urlset><url><loc>https://x.example/</loc></url>",
        ),
        (
            &[],
            &["select: \"$[*]\"", "key: \"$.id\""],
            "[{\"id\":1}]".into(),
            "[{\"id\":1}",
        ),
    ];
    for (source, items, good, bad) in cases {
        let h = Harness::new();
        let b = bridge(&h, &up, source, items);
        let format = source
            .first()
            .map_or("json", |s| s.trim_start_matches("format: "));
        up.set(200, "text/plain", &good);
        let first = h.scheduled_poll(&b).await.unwrap();
        assert_eq!(first.events.len(), 1, "{format}");
        let before = h.snapshot("fmt");

        up.set(200, "text/plain", bad);
        let e = h.scheduled_poll(&b).await.unwrap_err();
        let shown = h.ctx.status("fmt").last_error.unwrap();
        if format == "json" {
            // JSON keeps the reason it always had (tests, metrics and alerts rely on it).
            assert_eq!(e.kind(), "not_json", "{e}");
        } else {
            assert_eq!(e.kind(), "bad_body", "{format}: {e}");
            let want = format!(
                "/items: response does not parse as `format: {format}` (content-type text/plain): "
            );
            assert!(shown.contains(&want), "{format}: {shown}");
            if format == "feed" {
                assert!(shown.ends_with("no feed in it: neither an <rss>, <rdf:RDF> or <feed> root element nor a JSON Feed object"), "{shown}");
            }
        }
        assert_eq!(
            h.snapshot("fmt"),
            before,
            "{format}: a failed poll stored something"
        );

        // The good body again: nothing changed meanwhile, so nothing to report.
        up.set(200, "text/plain", &good);
        let again = h.scheduled_poll(&b).await.unwrap();
        assert!(again.events.is_empty(), "{format}: {:?}", again.events);
    }
}

#[tokio::test]
async fn a_feed_answering_304_is_unchanged_and_a_change_after_it_is_found() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(&h, &up, &["format: feed"], &[]);
    let body = atom(&[("v1", "first")]);
    up.set_answer(Answer::new(200, "application/atom+xml", &body).header("etag", "\"a1\""));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.events.len(), 1);

    let r = h.poll(&b).await.unwrap();
    assert!(r.not_modified, "{r:?}");
    assert!(r.events.is_empty());
    let hits = up.hits();
    assert_eq!(hits.last().unwrap().header("if-none-match"), Some("\"a1\""));
    assert_eq!(hits.last().unwrap().status, 304);
    assert_eq!(h.snapshot("fmt").0.len(), 1, "the 304 kept the entry");

    let body = atom(&[("v2", "second"), ("v1", "first")]);
    up.set_answer(Answer::new(200, "application/atom+xml", &body).header("etag", "\"a2\""));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(
        events(&r),
        ev(&[("created", "tag:github.com,2008:Repository/40209463/v2")])
    );
}

#[tokio::test]
async fn a_feed_over_max_body_fails_the_poll_as_any_body_does() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(&h, &up, &["format: feed", "max_body: 1KiB"], &[]);
    up.set(
        200,
        "application/rss+xml",
        &rss(&[(Some("g"), None, &"x".repeat(2000))]),
    );
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "too_large", "{e}");
}

/// Every format keeps the guards of a JSON body: a 304 stands for the last body, a body over
/// `max_body` fails the poll as `too_large`, and a body whose JSON form would be more than
/// eight times `max_body` (a CSV repeating long header names in empty rows) fails it as
/// `bad_body` before it is all built.
#[tokio::test]
async fn every_format_answers_304s_and_keeps_to_max_body() {
    let up = Upstream::start().await;
    let csv_items: &[&str] = &["select: \"$[*]\"", "key: \"$.id\""];
    let cases: [(&str, &[&str], String); 4] = [
        ("feed", &[], atom(&[("v1", "first")])),
        ("csv", csv_items, "id,v\n1,a\n".into()),
        ("ndjson", csv_items, "{\"id\":1}\n".into()),
        (
            "xml",
            &["select: \"$.urlset.url[*]\"", "key: \"$.loc\""],
            sitemap(&[("https://x.example/", "2025-01-01")]),
        ),
    ];
    for (format, items, body) in cases {
        let h = Harness::new();
        let f = format!("format: {format}");
        let b = bridge(&h, &up, &[&f, "max_body: 4KiB"], items);
        up.set_answer(Answer::new(200, "text/plain", &body).header("etag", "\"e1\""));
        let r = h.poll(&b).await.unwrap();
        assert_eq!(r.events.len(), 1, "{format}");
        let r = h.poll(&b).await.unwrap();
        assert!(r.not_modified && r.events.is_empty(), "{format}: {r:?}");
        assert_eq!(up.hits().last().unwrap().status, 304, "{format}");

        let padded = match format {
            "csv" => format!("{body}{}", "2,b\n".repeat(2000)),
            _ => format!("{body}{}", " ".repeat(5000)),
        };
        up.set(200, "text/plain", &padded);
        let e = h.poll(&b).await.unwrap_err();
        assert_eq!(e.kind(), "too_large", "{format}: {e}");
        assert_eq!(h.snapshot("fmt").0.len(), 1, "{format}");
    }

    let h = Harness::new();
    let b = bridge(&h, &up, &["format: csv", "max_body: 4KiB"], csv_items);
    let header: Vec<String> = (0..20).map(|i| format!("{i:0>100}")).collect();
    let bomb = format!(
        "id,{}\n{}",
        header.join(","),
        format!("{}\n", ",".repeat(20)).repeat(90)
    );
    assert!(bomb.len() < 4096);
    up.set(200, "text/csv", &bomb);
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "bad_body", "{e}");
    assert!(
        e.to_string()
            .ends_with("its JSON form would exceed 32768 bytes"),
        "{e}"
    );
}

#[tokio::test]
async fn pages_follow_link_headers_and_next_links_read_from_the_converted_body() {
    // NDJSON pages chained by `Link` headers.
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(
        &h,
        &up,
        &["format: ndjson", "paginate: {next: link}"],
        &["select: \"$[*]\"", "key: \"$.id\""],
    );
    up.route(
        "/items",
        Answer::new(200, "application/x-ndjson", "{\"id\":1}\n{\"id\":2}\n")
            .header("link", &format!("<{}/items?page=2>; rel=\"next\"", up.base)),
    );
    up.route(
        "/items?page=2",
        Answer::new(200, "application/x-ndjson", "{\"id\":3}\n"),
    );
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.pages, events(&r).len()), (2, 3));

    // XML pages whose next link is an element of the body.
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = bridge(
        &h,
        &up,
        &["format: xml", "paginate: {next: {url: \"$.listing.next\"}}"],
        &["select: \"$.listing.entry[*]\"", "key: \"$.id\""],
    );
    up.route(
        "/items",
        Answer::new(200, "application/xml", "<listing><next>/items?after=b</next><entry><id>a</id></entry><entry><id>b</id></entry></listing>"),
    );
    up.route(
        "/items?after=b",
        Answer::new(
            200,
            "application/xml",
            "<listing><entry><id>c</id></entry></listing>",
        ),
    );
    let r = h.poll(&b).await.unwrap();
    assert_eq!(
        events(&r),
        ev(&[("created", "a"), ("created", "b"), ("created", "c")])
    );
    assert_eq!(r.pages, 2);
}

#[tokio::test]
async fn the_daemon_prints_a_feeds_entries_to_the_console() {
    let up = Upstream::start().await;
    up.set(
        200,
        "application/rss+xml",
        &rss(&[(Some("urn:p:1"), None, "Hello")]),
    );
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1s")
        .source("format: feed")
        .without_items()
        .first_poll("emit")
        .sink("console")
        .write(dir.path(), "blog");
    let d = Daemon::start(dir.path(), &[]);
    let line = |want: &str| {
        let out = d.stdout.lock().unwrap().clone();
        out.into_iter().find(|l| l.contains(want))
    };
    until("the created entry on stdout", || {
        line("\"item.created\"").is_some()
    })
    .await;
    let created: serde_json::Value =
        serde_json::from_str(&line("\"item.created\"").unwrap()).unwrap();
    assert_eq!(created["key"], "urn:p:1");
    assert_eq!(created["data"]["title"], "Hello");

    up.set(
        200,
        "application/rss+xml",
        &rss(&[(Some("urn:p:1"), None, "Hello, edited")]),
    );
    until("the updated entry on stdout", || {
        line("\"item.updated\"").is_some()
    })
    .await;
    let updated: serde_json::Value =
        serde_json::from_str(&line("\"item.updated\"").unwrap()).unwrap();
    assert_eq!(updated["data"]["title"], "Hello, edited");
    d.terminate().await;
}

#[test]
fn check_names_each_bad_format_key_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, source: &str, items: &str| {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            format!("schedule:\n  every: 5m\nsource:\n  url: https://x.example/\n{source}{items}sinks:\n  - url: console\n"),
        )
        .unwrap();
    };
    file("a", "  format: rss\n", "");
    file(
        "b",
        "  format: csv\n  csv:\n    delimiter: \";;\"\n",
        "items:\n  select: \"$[*]\"\n",
    );
    file(
        "c",
        "  format: xml\n  csv: {delimiter: \";\"}\n",
        "items:\n  select: \"$[*]\"\n",
    );
    file("d", "  format: ndjson\n", "");
    file(
        "e",
        "  format: csv\n  csv: {delimter: \";\"}\n",
        "items:\n  select: \"$[*]\"\n",
    );
    let (code, _, err) = cli(&["check", dir.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let err = err.replace(&format!("{}/", dir.path().display()), "");
    for want in [
        "a.yaml:5:11: source.format: unknown variant `rss`, expected one of `json`, `ndjson`, `csv`, `feed`, `xml`",
        "b.yaml:7:16: source.csv.delimiter: \";;\" is not one ASCII character",
        "c.yaml:6:8: source.csv: goes with `format: csv` only",
        "d.yaml:5:11: items.select: missing (only `source.format: feed` has a default, `$.entries[*]`)",
        "e.yaml:6:9: source.csv: unknown key `delimter` (did you mean `delimiter`?)",
    ] {
        assert!(err.contains(want), "want `{want}` in\n{err}");
    }

    // A feed needs no `items` at all; the example bridges pass as CI checks them.
    let ok = tempfile::tempdir().unwrap();
    std::fs::write(
        ok.path().join("blog.yaml"),
        "schedule: {every: 15m}\nsource: {url: \"https://blog.example/index.xml\", format: feed}\nsinks: [{url: console}]\n",
    )
    .unwrap();
    let (code, out, err) = cli(&["check", ok.path().to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "ok: 1 bridge\n"), "{err}");
}
