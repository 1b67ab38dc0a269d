//! What a `source.format` costs (docs/configuration.md#formats): the time and peak memory to turn a
//! large body of each format into the JSON text the poll reads, against reading the same listing as
//! JSON. In-process and pure: no server, no store. `cargo bench --bench formats [-- ITEMS]`
//! (default 50,000 items, each about 200 bytes; a feed at most its 20,000 entries).

// A benchmark may panic where a test may: a failed set-up is a failed measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use pollhook::formats::{Format, to_json};
use std::fmt::Write as _;
use std::time::Instant;

fn json(n: usize) -> String {
    let items: Vec<String> = (0..n)
        .map(|i| format!(r#"{{"id":{i},"title":"Item number {i}","price":"{}.99","url":"https://example.org/items/{i}","tags":"a;b;c"}}"#, i % 100))
        .collect();
    format!(r#"{{"items":[{}]}}"#, items.join(","))
}

fn ndjson(n: usize) -> String {
    let mut s = String::new();
    for i in 0..n {
        let _ = writeln!(
            s,
            r#"{{"id":{i},"title":"Item number {i}","price":"{}.99","url":"https://example.org/items/{i}","tags":"a;b;c"}}"#,
            i % 100
        );
    }
    s
}

fn csv(n: usize) -> String {
    let mut s = String::from("id,title,price,url,tags\n");
    for i in 0..n {
        let _ = writeln!(
            s,
            "{i},Item number {i},{}.99,https://example.org/items/{i},\"a;b;c\"",
            i % 100
        );
    }
    s
}

fn rss(n: usize) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>Bench</title><link>https://example.org/</link><description>d</description>"#,
    );
    for i in 0..n {
        let _ = write!(
            s,
            "<item><title>Item number {i}</title><link>https://example.org/items/{i}</link><guid>urn:item:{i}</guid><pubDate>Sun, 29 Nov 2026 08:00:00 GMT</pubDate><description>Price {}.99</description></item>",
            i % 100
        );
    }
    s.push_str("</channel></rss>");
    s
}

fn sitemap(n: usize) -> String {
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">"#,
    );
    for i in 0..n {
        let _ = write!(
            s,
            "<url><loc>https://example.org/items/{i}</loc><lastmod>2026-11-29</lastmod><changefreq>daily</changefreq><priority>0.{}</priority></url>",
            i % 10
        );
    }
    s.push_str("</urlset>");
    s
}

/// Peak resident memory of this process so far, in MiB (VmHWM).
fn peak_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50_000);
    println!("{n} items per body; median of 5 runs each");
    println!(
        "{:<8} {:>9} {:>10} {:>9} {:>11} {:>14}",
        "format", "body MB", "JSON MB", "ms", "MB/s (body)", "peak RSS MiB"
    );
    let cases: [(&str, Format, String); 5] = [
        ("json", Format::Json, json(n)),
        ("ndjson", Format::Ndjson, ndjson(n)),
        ("csv", Format::Csv { delimiter: b',' }, csv(n)),
        // A feed holds at most `MAX_ENTRIES` entries (more is refused unread).
        ("feed", Format::Feed, rss(n.min(20_000))),
        ("xml", Format::Xml, sitemap(n)),
    ];
    for (name, format, body) in cases {
        let mut times = Vec::new();
        let mut out_len = 0;
        for _ in 0..5 {
            let t = Instant::now();
            let out =
                to_json(format, body.as_bytes(), usize::MAX).expect("the bench body converts");
            times.push(t.elapsed());
            out_len = out.len();
            // Read back as the poll would: the converted text must be JSON.
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(&out).is_ok());
        }
        times.sort();
        let median = times[2];
        let mb = body.len() as f64 / 1e6;
        println!(
            "{name:<8} {mb:>9.1} {:>10.1} {:>9.0} {:>11.0} {:>14.0}",
            out_len as f64 / 1e6,
            median.as_secs_f64() * 1e3,
            mb / median.as_secs_f64(),
            peak_mib()
        );
    }
}
