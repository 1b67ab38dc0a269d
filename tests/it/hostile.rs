//! Hostile or broken upstream input (docs/configuration.md#hostile-or-broken-answers): numbers past
//! f64, deep nesting, absurd rate-limit headers, redirects to another origin, a cron that never
//! runs again. Each one fails that bridge's poll (or is ignored) with a reason the operator sees,
//! and leaves the other bridges and the stored state alone. Nothing panics.

use crate::support::*;
use serde_json::Value;

/// Items at `$.items[*]` keyed by `$.id`, every event emitted from the first poll on.
fn emitting(url: &str, sink: &str) -> BridgeYaml {
    BridgeYaml::standard(url, sink).first_poll("emit")
}

fn items(inner: &str) -> String {
    format!(r#"{{"items":[{inner}]}}"#)
}

#[tokio::test]
async fn nesting_past_the_limit_fails_the_poll_and_touches_nothing() {
    let (up, calm_up, rx) = (
        Upstream::start().await,
        Upstream::start().await,
        Receiver::start().await,
    );
    let h = Harness::new();
    let deep = h.bridge("deep", &BridgeYaml::standard(&up.url(), &rx.url()).build());
    let calm = h.bridge(
        "calm",
        &BridgeYaml::standard(&calm_up.url(), &rx.url()).build(),
    );
    up.set(200, "application/json", &items(r#"{"id":1,"v":"a"}"#));
    calm_up.set(200, "application/json", &items(r#"{"id":1,"v":"a"}"#));
    h.scheduled_poll(&deep).await.unwrap();
    h.scheduled_poll(&calm).await.unwrap();
    let before = h.snapshot("deep");

    // Inside an item, or around the listing itself; a little past the limit and far past it.
    for depth in [130, 5_000, 200_000] {
        let nested = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        for body in [
            items(&format!(r#"{{"id":1,"v":{nested}}}"#)),
            format!(r#"{{"items":[{{"id":1}}],"x":{nested}}}"#),
        ] {
            up.set(200, "application/json", &body);
            let e = h.scheduled_poll(&deep).await.unwrap_err();
            assert_eq!(e.kind(), "not_json", "{e}");
            assert!(e.to_string().contains("nested deeper than"), "{e}");
            let st = h.ctx.status("deep");
            assert_eq!(st.last_result.as_deref(), Some("failed"));
            let shown = st.last_error.unwrap();
            assert!(
                shown.contains("/items: response is not JSON") && shown.contains("nested"),
                "{shown}"
            );
            assert_eq!(h.snapshot("deep"), before, "a failed poll stored something");
        }
    }
    // The other bridge goes on; so does this one once the nesting is back within bounds.
    calm_up.set(200, "application/json", &items(r#"{"id":1,"v":"b"}"#));
    assert_eq!(h.scheduled_poll(&calm).await.unwrap().updated, 1);
    let within = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    up.set(
        200,
        "application/json",
        &items(&format!(r#"{{"id":1,"v":{within}}}"#)),
    );
    assert_eq!(h.scheduled_poll(&deep).await.unwrap().updated, 1);
    assert_eq!(h.ctx.status("deep").last_error, None);
}

/// Keys serde_json reads with a meaning of its own (an exact number; JSON text parsed again)
/// would change an item once stored, or nest parses without limit: refused.
#[tokio::test]
async fn keys_reserved_by_the_json_reader_fail_the_poll() {
    let (up, rx) = (Upstream::start().await, Receiver::start().await);
    let h = Harness::new();
    let b = h.bridge("odd", &BridgeYaml::standard(&up.url(), &rx.url()).build());
    up.set(200, "application/json", &items(r#"{"id":1,"v":"a"}"#));
    h.scheduled_poll(&b).await.unwrap();
    let before = h.snapshot("odd");
    let inner = format!("{}{}", "[".repeat(120), "]".repeat(120));
    for v in [
        format!(r#"{{"$serde_json::private::RawValue":"{inner}"}}"#),
        r#"{"a":1,"$serde_json::private::Number":null}"#.to_string(),
        r#"{"\u0024serde_json::private::Number":"1"}"#.to_string(),
    ] {
        up.set(
            200,
            "application/json",
            &items(&format!(r#"{{"id":1,"v":{v}}}"#)),
        );
        let e = h.scheduled_poll(&b).await.unwrap_err();
        assert_eq!(e.kind(), "not_json", "{e}");
        assert!(e.to_string().contains("is reserved"), "{e}");
        assert_eq!(h.snapshot("odd"), before);
    }
}

#[tokio::test]
async fn numbers_are_compared_by_value_and_forwarded_as_written() {
    let (up, rx) = (Upstream::start().await, Receiver::start().await);
    let h = Harness::new();
    let b = h.bridge("nums", &emitting(&up.url(), &rx.url()).build());
    let first = items(concat!(
        r#"{"id":100000000000000000001,"n":100000000000000000001,"big":1e400,"neg":-1e309,"#,
        r#""z":-0,"f":1.0,"h":1e2,"small":4.35},"#,
        r#"{"id":100000000000000000002,"n":1}"#
    ));
    up.set(200, "application/json", &first);
    let r = h.scheduled_poll(&b).await.unwrap();
    // Keys past u64 are their digits, not one rounded float shared by both.
    let keys: Vec<&str> = r.events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["100000000000000000001", "100000000000000000002"]);
    h.drain(&b).await;
    let got = rx.received();
    assert_eq!(got.len(), 2);
    let wire = String::from_utf8(got[0].body.to_vec()).unwrap();
    // The digits as written; an exponent in serde_json's form (`e+400`).
    for exact in [
        r#""n":100000000000000000001"#,
        r#""big":1e+400"#,
        r#""neg":-1e+309"#,
        r#""z":-0"#,
        r#""f":1.0"#,
        r#""h":1e+2"#,
        r#""small":4.35"#,
    ] {
        assert!(wire.contains(exact), "{exact} not in {wire}");
    }
    assert!(got.iter().all(|r| verify_standard(SECRET, r)));
    // Stored as written, too.
    let (stored, ..) = h.snapshot("nums");
    assert_eq!(stored[0].2["big"].to_string(), "1e+400");

    // One digit past u64 changes: an update carrying the exact digits, and only that change
    // (`1.0` -> `1`, `1e2` -> `100`, `-0` -> `0` are the same numbers).
    let second = items(concat!(
        r#"{"id":100000000000000000001,"n":100000000000000000002,"big":1e400,"neg":-1e309,"#,
        r#""z":0,"f":1,"h":100,"small":4.350},"#,
        r#"{"id":100000000000000000002,"n":1.00}"#
    ));
    up.set(200, "application/json", &second);
    let r = h.scheduled_poll(&b).await.unwrap();
    assert_eq!((r.created, r.updated, r.deleted), (0, 1, 0));
    h.drain(&b).await;
    let got = rx.received();
    assert_eq!(got.len(), 3);
    let wire = String::from_utf8(got[2].body.to_vec()).unwrap();
    assert!(
        wire.contains(r#""changes":[{"op":"replace","path":"/n","value":100000000000000000002}]"#),
        "{wire}"
    );
    assert!(wire.contains(r#""previous":{"#) && wire.contains(r#""n":100000000000000000001"#));
    let e: Value = got[2].json();
    assert_eq!(e["key"], "100000000000000000001");

    // Only the way the numbers are written changes: nothing.
    let third = items(concat!(
        r#"{"id":1.00000000000000000001e20,"n":1.00000000000000000002e20,"big":10e399,"#,
        r#""neg":-0.1e310,"z":-0.0,"f":1e0,"h":1.000e2,"small":435e-2},"#,
        r#"{"id":100000000000000000002,"n":1}"#
    ));
    up.set(200, "application/json", &third);
    let r = h.scheduled_poll(&b).await.unwrap();
    assert_eq!(
        (r.created, r.updated, r.deleted),
        (0, 0, 0),
        "{:?}",
        r.events
    );
}

#[tokio::test]
async fn filters_compare_numbers_by_value() {
    let (up, rx) = (Upstream::start().await, Receiver::start().await);
    let h = Harness::new();
    let text = emitting(&up.url(), &rx.url())
        .select("$.items[?@.n > 5]")
        .build();
    let b = h.bridge("filtered", &text);
    up.set(
        200,
        "application/json",
        &items(r#"{"id":1,"n":5},{"id":2,"n":5.5},{"id":3,"n":1e400},{"id":4,"n":6.0},{"id":5,"n":-1e400}"#),
    );
    let r = h.scheduled_poll(&b).await.unwrap();
    let keys: Vec<&str> = r.events.iter().map(|e| e.key.as_str()).collect();
    // A number past f64 is not compared (as no float can say where it lies).
    assert_eq!(keys, ["2", "4"]);
}

#[tokio::test]
async fn absurd_rate_limit_headers_are_capped_or_ignored() {
    let (up, rx) = (Upstream::start().await, Receiver::start().await);
    let h = Harness::new();
    let b = h.bridge(
        "limited",
        &BridgeYaml::standard(&up.url(), &rx.url()).build(),
    );
    let day = chrono::TimeDelta::days(1);
    for value in ["9000000000000000", "99999999999999999999999999"] {
        up.set_answer(Answer::new(429, "application/json", "{}").header("retry-after", value));
        let before = chrono::Utc::now();
        let e = h.scheduled_poll(&b).await.unwrap_err();
        assert_eq!(e.kind(), "rate_limited", "{e}");
        let until = e.pause_until().unwrap();
        assert!(
            until > before + day - chrono::TimeDelta::minutes(1)
                && until <= chrono::Utc::now() + day
        );
        let st = h.ctx.status("limited");
        assert_eq!(st.paused_until, Some(until));
    }
    for reset in [
        "9000000000000000000",
        "-9000000000000000000",
        "1e999",
        "never",
    ] {
        up.set_answer(
            Answer::new(200, "application/json", &items(r#"{"id":1}"#))
                .header("x-ratelimit-remaining", "0")
                .header("x-ratelimit-reset", reset),
        );
        let r = h.scheduled_poll(&b).await.unwrap();
        let until = r.pause_until;
        if !reset.starts_with('9') {
            assert_eq!(
                until, None,
                "a reset in the past, or unreadable, is no pause"
            );
        } else {
            assert!(until.unwrap() <= chrono::Utc::now() + day, "{reset}");
        }
    }
    // Not a number or a date: ignored (a plain failed poll for a 429, no pause).
    for value in ["soon", "-5", "12.5 seconds"] {
        up.set_answer(Answer::new(429, "application/json", "{}").header("retry-after", value));
        let e = h.scheduled_poll(&b).await.unwrap_err();
        assert_eq!(e.kind(), "http_status", "{value}: {e}");
        assert_eq!(e.pause_until(), None);
    }
}

/// A bridge whose source carries credentials in a header, a second header and the query.
fn credentialed(url: &str, sink: &str) -> BridgeYaml {
    BridgeYaml::new(&format!("{url}?api_token=${{TEST_TOKEN}}"))
        .timeout("2s")
        .header("x-api-key", "\"${TEST_TOKEN}\"")
        .header("private-token", "\"pt-secret-55\"")
        .sink(sink)
        .sink_line("signature: none")
}

#[tokio::test]
async fn a_redirect_to_another_origin_fails_the_poll_and_sends_nothing_there() {
    let (up, evil, rx) = (
        Upstream::start().await,
        Upstream::start().await,
        Receiver::start().await,
    );
    let h = Harness::new();
    let b = h.bridge("moved", &credentialed(&up.url(), &rx.url()).build());
    up.set(200, "application/json", &items(r#"{"id":1}"#));
    h.scheduled_poll(&b).await.unwrap();
    let before = h.snapshot("moved");
    let evil_port = evil.base.rsplit(':').next().unwrap().to_string();
    for location in [
        format!("{}/steal?x=1", evil.base),
        format!("//127.0.0.1:{evil_port}/steal"),
        format!("http://localhost:{evil_port}/steal"),
    ] {
        for status in [301, 302, 303, 307, 308] {
            up.set_answer(Answer::new(status, "text/plain", "").header("location", &location));
            let e = h.scheduled_poll(&b).await.unwrap_err();
            assert_eq!(e.kind(), "redirect", "{location}: {e}");
            let shown = h.ctx.status("moved").last_error.unwrap();
            assert!(shown.contains("another origin"), "{shown}");
            assert!(!shown.contains("tok-abc-123"), "{shown}");
            assert_eq!(h.snapshot("moved"), before);
        }
    }
    assert!(evil.hits().is_empty(), "{:?}", evil.hits());

    // Within the origin: followed, the credentials go along, no Referer.
    up.set_answer(Answer::new(302, "text/plain", "").header("location", "/v2/items"));
    up.route(
        "/v2/items",
        Answer::new(200, "application/json", &items(r#"{"id":1},{"id":2}"#)),
    );
    let r = h.scheduled_poll(&b).await.unwrap();
    assert_eq!(r.created, 1);
    let last = up.hits().pop().unwrap();
    assert_eq!(last.uri, "/v2/items");
    assert_eq!(last.header("x-api-key"), Some("tok-abc-123"));
    assert_eq!(last.header("referer"), None);

    // At most 10 redirects.
    up.set_answer(Answer::new(302, "text/plain", "").header("location", "/items?again"));
    let hits = up.hits().len();
    let e = h.scheduled_poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "redirect", "{e}");
    assert!(e.to_string().contains("more than 10 redirects"), "{e}");
    assert_eq!(up.hits().len() - hits, 11);
    assert!(evil.hits().is_empty());
}

#[tokio::test]
async fn a_next_page_on_another_origin_gets_no_request() {
    let (up, evil, rx) = (
        Upstream::start().await,
        Upstream::start().await,
        Receiver::start().await,
    );
    let h = Harness::new();
    let paged = credentialed(&up.url(), &rx.url()).next("{url: \"$.next\"}");
    let b = h.bridge("paged", &paged.build());
    let next = format!("{}/items?page=2", evil.base);
    up.set(
        200,
        "application/json",
        &format!(r#"{{"items":[{{"id":1}}],"next":"{next}"}}"#),
    );
    let e = h.scheduled_poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "next_page", "{e}");
    assert!(e.to_string().contains("not on the source's origin"), "{e}");
    assert!(evil.hits().is_empty());
    assert_eq!(h.snapshot("paged").0.len(), 0);
}

#[test]
fn a_cron_with_only_past_years_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let text = "schedule:\n  cron: \"0 0 0 1 1 * 2020\"\nsource:\n  url: https://api.example.com/x\nitems:\n  select: \"$[*]\"\n  key: \"$.id\"\nsinks:\n  - url: console\n";
    let file = dir.path().join("past.yaml");
    std::fs::write(&file, text).unwrap();
    let (code, out, err) = cli(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("past.yaml:2:") && all.contains("never runs again"),
        "{all}"
    );
    // A date that never comes (February 30th) too; a future year is fine.
    std::fs::write(&file, text.replace("0 0 0 1 1 * 2020", "0 0 30 2 *")).unwrap();
    let (code, out, err) = cli(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    std::fs::write(&file, text.replace("2020", "2099")).unwrap();
    let (code, out, err) = cli(&["check", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
}

/// The real daemon with one bridge per kind of hostile answer and a healthy one: each hostile
/// bridge logs its reason and keeps its schedule, the healthy one never notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_logs_each_hostile_answer_and_keeps_every_bridge_alive() {
    let (healthy, hostile, evil) = (
        Upstream::start().await,
        Upstream::start().await,
        Upstream::start().await,
    );
    healthy.set(200, "application/json", &items(r#"{"id":1}"#));
    let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
    hostile.route(
        "/deep",
        Answer::new(
            200,
            "application/json",
            &items(&format!(r#"{{"id":1,"v":{deep}}}"#)),
        ),
    );
    hostile.route(
        "/huge",
        Answer::new(
            200,
            "application/json",
            &items(r#"{"id":1e400},{"id":-1e309},{"id":100000000000000000001}"#),
        ),
    );
    hostile.route(
        "/forever",
        Answer::new(429, "application/json", "{}").header("retry-after", "9000000000000000"),
    );
    hostile.route(
        "/soon",
        Answer::new(429, "application/json", "{}").header("retry-after", "soon-ish"),
    );
    hostile.route(
        "/reset",
        Answer::new(200, "application/json", &items(r#"{"id":1}"#))
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &"z".repeat(300)),
    );
    hostile.route(
        "/moved",
        Answer::new(302, "text/plain", "").header("location", &format!("{}/x", evil.base)),
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    let every = |url: String| {
        BridgeYaml::new(&url)
            .every("500ms")
            .timeout("5s")
            .sink("console")
            .build()
    };
    for (name, url) in [
        ("healthy", healthy.url()),
        ("deep", format!("{}/deep", hostile.base)),
        ("huge", format!("{}/huge", hostile.base)),
        ("forever", format!("{}/forever", hostile.base)),
        ("soon", format!("{}/soon", hostile.base)),
        ("reset", format!("{}/reset", hostile.base)),
        ("moved", format!("{}/moved", hostile.base)),
    ] {
        std::fs::write(dir.path().join(format!("bridges/{name}.yaml")), every(url)).unwrap();
    }
    let admin = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(dir.path(), &[], &admin);
    let status = || async {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let r = reqwest::get(format!("http://{admin}/v1/bridges")).await;
        let Ok(r) = r else { return None };
        let v: Value = r.json().await.ok()?;
        let mut by_name = std::collections::HashMap::new();
        for b in v["bridges"].as_array()? {
            by_name.insert(b["name"].as_str()?.to_string(), b["status"].clone());
        }
        Some(by_name)
    };
    let all = eventually(2 * PATIENCE, "every bridge to poll 3 times", || async {
        let last = status().await;
        if let Some(s) = &last {
            let polled = |n: &str| s.get(n).and_then(|b| b["polls"].as_u64()).unwrap_or(0);
            if ["healthy", "deep", "huge", "soon", "reset", "moved"]
                .iter()
                .all(|n| polled(n) >= 3)
                && polled("forever") >= 1
            {
                return Ok(s.clone());
            }
        }
        Err(format!("{last:#?}\n{}", logs(&d)))
    })
    .await;
    let err = |n: &str| all[n]["last_error"].as_str().unwrap_or("").to_string();
    assert_eq!(all["healthy"]["last_error"], Value::Null);
    assert_eq!(all["healthy"]["failures"], 0);
    assert!(
        err("deep").contains("nested deeper than"),
        "{}",
        err("deep")
    );
    assert_eq!(all["huge"]["last_error"], Value::Null);
    assert_eq!(all["huge"]["items"], 3);
    assert!(
        err("forever").contains("rate limited"),
        "{}",
        err("forever")
    );
    assert_eq!(all["forever"]["polls"], 1, "a pause of a day is a pause");
    let paused = all["forever"]["paused_until_ms"].as_i64().unwrap();
    let day = 24 * 3600 * 1000;
    assert!(paused <= chrono::Utc::now().timestamp_millis() + day);
    assert!(err("soon").contains("answered HTTP 429"), "{}", err("soon"));
    assert_eq!(all["reset"]["last_error"], Value::Null);
    assert!(err("moved").contains("another origin"), "{}", err("moved"));
    assert!(evil.hits().is_empty());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let health = reqwest::get(format!("http://{admin}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);

    // A poll asked for through the admin API meets the same answers: a reason each time,
    // never a dropped connection. (409 when it meets a scheduled poll of the bridge: again.)
    let poll_now = |name: &'static str| {
        let socket = d.socket.clone();
        async move {
            let path = format!("/v1/bridges/{name}/poll");
            eventually(
                PATIENCE,
                &format!("{path} not to meet a scheduled poll"),
                || async {
                    let (code, v) = over_socket(&socket, reqwest::Method::POST, &path).await;
                    (code != 409).then(|| (code, v.to_string()))
                },
            )
            .await
        }
    };
    let (code, v) = poll_now("deep").await;
    assert!(
        code == 502 && v.contains("nested deeper than"),
        "{code} {v}"
    );
    let (code, v) = poll_now("moved").await;
    assert!(code == 502 && v.contains("another origin"), "{code} {v}");
    let (code, v) = poll_now("forever").await;
    assert!(code == 429 && v.contains("paused until"), "{code} {v}");
    let (code, v) = poll_now("huge").await;
    assert!(code == 200 && v.contains("\"items\":3"), "{code} {v}");
    assert!(evil.hits().is_empty());

    let (code, out, logs) = d.terminate().await;
    assert_eq!(code, 0, "{}", logs.join("\n"));
    let logs = [out, logs].concat();
    let text = logs.join("\n");
    assert!(!text.contains("panicked"), "{text}");
    let lines = |needle: &str| logs.iter().filter(|l| l.contains(needle)).count();
    assert!(
        lines("bridge=deep status=failed reason=not_json") >= 3,
        "{text}"
    );
    assert!(
        lines("bridge=moved status=failed reason=redirect") >= 3,
        "{text}"
    );
    // An unreadable header: one WARN per poll, naming the bridge and the header, cut short.
    // Counted against the poll lines of the same log, not a poll count read earlier: the
    // bridge goes on polling while the rest of the test runs (more so on a busy machine).
    let soon = lines("bridge=soon header=retry-after");
    assert!(soon >= 3, "{text}");
    let polled = lines("bridge=soon status=");
    assert!(soon <= polled, "{soon} WARNs for {polled} polls: {text}");
    let reset: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("bridge=reset header=x-ratelimit-reset"))
        .collect();
    assert!(reset.len() >= 3, "{text}");
    assert!(
        reset
            .iter()
            .all(|l| l.len() < 400 && !l.contains(&"z".repeat(100))),
        "{reset:?}"
    );
}

/// Random input where upstream input goes, bounded so that a run stays quick: no panic, and
/// what must hold of the result holds.
mod props {
    use chrono::{DateTime, Utc};
    use pollhook::config::Items;
    use pollhook::event::{self, EventType, Json, Side};
    use pollhook::extract::{self, Page, Path};
    use pollhook::poll::{fetch, ratelimit};
    use proptest::prelude::*;
    use std::sync::Arc;

    fn config() -> ProptestConfig {
        ProptestConfig {
            cases: 256,
            // No regression files in the source tree; a failure prints its input.
            failure_persistence: None,
            ..ProptestConfig::default()
        }
    }

    /// JSON number texts: ordinary, past u64, past f64, long fractions and exponents.
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            "-?(0|[1-9][0-9]{0,40})(\\.[0-9]{1,30})?([eE][+-]?[0-9]{1,25})?",
        ]
    }

    fn string() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{0,6}".prop_map(|s| format!("\"{s}\"")),
            any::<String>().prop_map(|s| serde_json::Value::String(s).to_string()),
            Just(r#""\ud800""#.to_string()),
            Just(r#""a\"b\\c\u00e9""#.to_string()),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"id\"".to_string()),
            Just("\"items\"".to_string()),
            Just("\"n\"".to_string()),
            Just("\"$serde_json::private::Number\"".to_string()),
            Just("\"$serde_json::private::RawValue\"".to_string()),
            string(),
        ]
    }

    /// A JSON text, nested a little (and, wrapped, sometimes far too deep).
    fn json() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            Just("true".to_string()),
            Just("false".to_string()),
            number(),
            string(),
        ];
        leaf.prop_recursive(5, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((key(), inner), 0..5).prop_map(|kv| {
                    let members: Vec<String> =
                        kv.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                    format!("{{{}}}", members.join(","))
                }),
            ]
        })
    }

    /// A response body: a listing of keyed items, any JSON, either nested deep, or broken.
    fn body() -> impl Strategy<Value = Vec<u8>> {
        let item = (prop_oneof![number(), string(), json()], json())
            .prop_map(|(id, v)| format!(r#"{{"id":{id},"n":{v}}}"#));
        let listing = prop::collection::vec(item, 0..6)
            .prop_map(|items| format!(r#"{{"items":[{}]}}"#, items.join(",")));
        let text = prop_oneof![listing, json()];
        let deep = (text.clone(), 0usize..200)
            .prop_map(|(t, d)| format!("{}{t}{}", "[".repeat(d), "]".repeat(d)));
        let broken = (
            text.clone(),
            prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        )
            .prop_map(|(t, edits)| {
                let mut b = t.into_bytes();
                for (at, byte) in edits {
                    let at = at % (b.len() + 1);
                    b.insert(at, byte);
                }
                b
            });
        prop_oneof![
            3 => text.prop_map(String::into_bytes),
            1 => deep.prop_map(String::into_bytes),
            1 => broken,
            1 => prop::collection::vec(any::<u8>(), 0..64),
        ]
    }

    /// JSONPath texts: the usual shapes, filters on numbers, extreme indices, and noise.
    fn path() -> impl Strategy<Value = String> {
        let segment = prop_oneof![
            Just(".items".to_string()),
            Just(".id".to_string()),
            Just(".n".to_string()),
            Just("[*]".to_string()),
            Just(".*".to_string()),
            Just("..id".to_string()),
            Just("..*".to_string()),
            Just("[0]".to_string()),
            Just("[-1]".to_string()),
            Just("[1:3]".to_string()),
            Just("[::-1]".to_string()),
            Just("[-9223372036854775808]".to_string()),
            Just("[0:9223372036854775807:-9223372036854775808]".to_string()),
            Just("[?@.id > 5]".to_string()),
            Just("[?@.n == 1e400]".to_string()),
            Just("[?@ < 100000000000000000001]".to_string()),
            Just("[?@.id]".to_string()),
            Just("[?length(@) > 1]".to_string()),
            Just("[?match(@.n, 'a.*')]".to_string()),
            Just("['a','id']".to_string()),
            "[^\\x00]{0,4}",
        ];
        prop::collection::vec(segment, 0..4).prop_map(|s| format!("${}", s.concat()))
    }

    /// Items from random paths: None when one of them does not parse (as `check` refuses).
    fn items() -> impl Strategy<Value = Option<Items>> {
        (
            path(),
            prop::option::of(path()),
            prop::collection::vec(path(), 0..2),
            prop::collection::vec(path(), 0..2),
        )
            .prop_map(|(select, key, include, exclude)| {
                Some(Items {
                    select: Path::parse(&select).ok()?,
                    key: match key {
                        Some(k) => Some(Path::parse(&k).ok()?),
                        None => None,
                    },
                    include: include
                        .iter()
                        .map(|p| Path::parse(p).ok())
                        .collect::<Option<_>>()?,
                    exclude: exclude
                        .iter()
                        .map(|p| Path::parse(p).ok())
                        .collect::<Option<_>>()?,
                })
            })
    }

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    proptest! {
        #![proptest_config(config())]

        /// A body as a poll meets it: checked, selected, keyed, hashed, and turned into the
        /// events a change would send.
        #[test]
        fn any_body_and_any_paths_go_through_the_extract_path(body in body(), spec in items()) {
            let Some(spec) = spec else { return Ok(()) };
            if fetch::check_json(&body).is_err() {
                return Ok(());
            }
            let Ok(text) = String::from_utf8(body) else { return Ok(()) };
            let pages = [Page::new(Arc::new(text))];
            let Ok(keyed) = extract::extract_keyed(&pages, &spec) else { return Ok(()) };
            prop_assert_eq!(keyed.by_key.len(), keyed.items.len());
            let mut before: Option<serde_json::Value> = None;
            for item in &keyed.items {
                let value = item.value().unwrap().into_owned();
                let hash = extract::hash(&value);
                prop_assert_eq!(hash, item.hash);
                // It reads back as it is sent and stored.
                let wire = serde_json::to_string(&value).unwrap();
                // What is stored and sent, written without the value, is that text.
                prop_assert_eq!(&item.canonical_text().unwrap(), &wire);
                let back: serde_json::Value = serde_json::from_str(&wire).unwrap();
                prop_assert_eq!(extract::hash(&back), hash);
                if let Some(prev) = &before {
                    let ph = extract::hash(prev);
                    let (prev, value) = (&Json::from_value(prev), &Json::from_value(&value));
                    let e = event::build(event::Spec {
                        bridge: "p",
                        kind: EventType::Updated,
                        key: item.key.as_str(),
                        seq: 1,
                        generation: 0,
                        detected: at(),
                        previous: Some(Side { value: prev, hash: &ph }),
                        data: Some(Side { value, hash: &hash }),
                    });
                    serde_json::to_string(&e).unwrap();
                }
                before = Some(value);
            }
        }

        /// Any JSONPath text parses or is refused; never a panic.
        #[test]
        fn any_path_text_parses_or_is_refused(text in "\\PC{0,24}", tail in path()) {
            let _ = Path::parse(&text);
            let _ = Path::parse(&format!("${text}"));
            let _ = Path::parse(&tail);
        }

        /// Any rate-limit header values on any answer: a pause of at most a day, or none.
        #[test]
        fn any_rate_limit_header_is_capped_or_ignored(
            status in prop::sample::select(vec![200u16, 304, 403, 429, 500, 503]),
            retry_after in header_value(),
            remaining in prop::sample::select(vec!["0", "1", "", "-0", "00"]),
            reset in header_value(),
            offset in -4_000_000_000i64..4_000_000_000,
        ) {
            let now = at() + chrono::TimeDelta::seconds(offset);
            let mut headers = reqwest::header::HeaderMap::new();
            let mut add = |name: &'static str, v: &[u8]| {
                if let Ok(v) = reqwest::header::HeaderValue::from_bytes(v) {
                    headers.insert(name, v);
                }
            };
            add("retry-after", &retry_after);
            add("x-ratelimit-remaining", remaining.as_bytes());
            add("x-ratelimit-reset", &reset);
            let p = ratelimit::pause_until(status, &headers, now);
            if let Some(until) = p.until {
                prop_assert!(until > now && until <= now + ratelimit::MAX_PAUSE);
            }
            // The delivery side reads `Retry-After` from receivers, too.
            if let Ok(v) = std::str::from_utf8(&retry_after) {
                let _ = pollhook::deliver::retry::parse_retry_after(v, now);
            }
        }
    }

    fn header_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            "[0-9]{0,45}".prop_map(String::into_bytes),
            "[-+]?[0-9]{0,25}(\\.[0-9]{0,5})?".prop_map(String::into_bytes),
            "(Mon|Sun|Xyz), [0-9]{1,2} (Jan|Dec|Foo) [0-9]{1,6} [0-9]{1,2}:[0-9]{2}:[0-9]{2} (GMT|UTC|\\+0000|-9999)"
                .prop_map(String::into_bytes),
            "[ -~]{0,80}".prop_map(String::into_bytes),
            prop::collection::vec(any::<u8>(), 0..40),
        ]
    }
}
