//! What a real API does to a poller: rate limits, secrets in URLs and headers, oversized,
//! broken and hung answers, mass deletes, and the change semantics (include/exclude,
//! after_missing, max_fraction). Real servers, real scheduler, real binary where logs matter.

use crate::support::*;
use pollhook::poll::scheduler;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// Tolerance for clock rounding when checking that a request did not come early.
const SLACK: Duration = Duration::from_millis(20);

fn listing(n: usize) -> Value {
    json!({"items": (0..n).map(|i| json!({"id": i, "v": "x"})).collect::<Vec<_>>()})
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn a_503_with_retry_after_pauses_the_real_scheduler_and_shows_in_status() {
    let up = Upstream::start().await;
    up.set_json(&listing(2));
    up.then(Answer::new(503, "text/plain", "busy").header("retry-after", "2"));
    let h = Harness::new();
    let b = Arc::new(
        h.bridge(
            "busy",
            &BridgeYaml::standard(&up.url(), "console")
                .every("500ms")
                .build(),
        ),
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(scheduler::run_bridge(
        h.ctx.clone(),
        b.clone(),
        cancel.clone(),
        false,
    ));

    // A fresh bridge polls at once and meets the 503: paused, visible in the status.
    until("the pause shows in the status", || {
        h.ctx.status("busy").paused_until.is_some()
    })
    .await;
    let first = up.hits()[0].clone();
    let paused_until = h
        .ctx
        .status("busy")
        .paused_until
        .unwrap()
        .timestamp_millis();
    let at_ms = first
        .wall
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (at_ms + 2000..at_ms + 3000).contains(&paused_until),
        "pause until {paused_until}, request at {at_ms}"
    );
    assert_eq!(h.ctx.status("busy").last_result.as_deref(), Some("failed"));
    until("the next poll planned after the pause", || {
        h.ctx
            .status("busy")
            .next_poll
            .is_some_and(|n| n.timestamp_millis() >= paused_until)
    })
    .await;
    // The 503 poll stored nothing.
    let (items, meta, outbox) = h.snapshot("busy");
    assert!(items.is_empty() && !meta.baselined && outbox == 0);

    until("the poll after the pause", || up.hits().len() >= 2).await;
    let second = up.hits()[1].clone();
    let gap = second.at - first.at;
    assert!(
        gap + SLACK >= Duration::from_secs(2),
        "polled {gap:?} after a Retry-After of 2s"
    );
    until("the pause cleared", || {
        h.ctx.status("busy").paused_until.is_none()
            && h.ctx.status("busy").last_result.as_deref() == Some("baseline")
    })
    .await;
    assert_eq!(h.ctx.store().unwrap().items("busy").unwrap().len(), 2);
    // And the schedule resumes (every 500ms).
    until("polls resume", || up.hits().len() >= 4).await;
    cancel.cancel();
    task.await.unwrap();
}

#[tokio::test]
async fn a_429_with_retry_after_and_a_rate_limit_reset_are_honoured_without_polling_early() {
    let up = Upstream::start().await;
    up.set_json(&listing(2));
    up.then(Answer::new(429, "application/json", "{}").header("retry-after", "2"));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("500ms")
        .sink("console")
        .write(dir.path(), "limited");
    let d = Daemon::start(dir.path(), &[]);

    until("the first poll", || !up.hits().is_empty()).await;
    // From now on every answer is a success that exhausts the quota until `reset`.
    let reset = unix(SystemTime::now()) + 4;
    up.set_answer(
        Answer::json(&listing(2))
            .header("x-ratelimit-remaining", "0")
            .header("x-ratelimit-reset", &reset.to_string()),
    );
    until("four polls", || up.hits().len() >= 4).await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    let hits = up.hits();
    assert_eq!(hits[0].status, 429);
    let gap = hits[1].at - hits[0].at;
    assert!(
        gap + SLACK >= Duration::from_secs(2),
        "polled {gap:?} after a Retry-After of 2s"
    );
    // hits[1] answered Remaining: 0; nothing before the reset.
    assert!(
        hits[2].wall >= SystemTime::UNIX_EPOCH + Duration::from_secs(reset),
        "polled at {:?}, before the reset at {reset}",
        hits[2].wall
    );
    let all = err.join("\n");
    let pauses: Vec<&String> = err
        .iter()
        .filter(|l| l.contains("the source asked for a pause"))
        .collect();
    assert!(
        pauses.len() == 2 && pauses.iter().all(|l| l.contains("WARN")),
        "one WARN line per pause:\n{all}"
    );
    assert!(
        all.contains("answered HTTP 429: rate limited, no poll before"),
        "{all}"
    );
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    let up = Upstream::start().await;
    up.set(500, "text/plain", "internal error");
    let limited = Upstream::start().await;
    limited.set_answer(Answer::new(429, "text/plain", "slow down").header("retry-after", "1"));
    let paged = Upstream::start().await;
    let elsewhere = format!(
        "{}/next?token=link-tok-7f7f7f",
        paged.base.replace("127.0.0.1", "localhost")
    );
    paged.set_answer(
        Answer::json(&json!({"items": []})).header("link", &format!("<{elsewhere}>; rel=\"next\"")),
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };

    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-tok-5e6f7a8b\n").unwrap();
    let creds = dir.path().join("creds");
    std::fs::create_dir_all(&creds).unwrap();
    std::fs::write(creds.join("apikey"), "cred-key-1a2b3c4d").unwrap();
    let secrets = [
        "file-tok-5e6f7a8b",
        "cred-key-1a2b3c4d",
        "pw-9z8y7x6w",
        "qs-tok-4d3c2b1a",
        "env-tok-0a0b0c0d",
        "link-tok-7f7f7f",
    ];
    // A password in the URL becomes Basic auth (and takes over the Authorization header), so
    // the bridge that checks what was sent has none.
    let bridge = |name: &str, base: &str, paginate: &str, userinfo: &str| {
        let host = format!("{userinfo}{}", base.trim_start_matches("http://"));
        std::fs::write(
            dir.path().join(format!("bridges/{name}.yaml")),
            format!(
                r#"schedule: {{every: 500ms}}
source:
  url: "http://{host}/x?access_token=qs-tok-4d3c2b1a&page=1"
  timeout: 1s
  headers:
    Authorization: "Bearer ${{file:{}}}"
    X-Api-Key: "${{credential:apikey}}"
    X-Other: "${{ENV_TOKEN}}"
{paginate}items: {{select: "$.items[*]", key: "$.id"}}
sinks: [{{url: console}}]
"#,
                token_file.display()
            ),
        )
        .unwrap();
    };
    let pw = "user:pw-9z8y7x6w@";
    bridge("failing", &up.base, "", "");
    bridge("refused", &format!("http://127.0.0.1:{closed}"), "", pw);
    bridge("limited", &limited.base, "", pw);
    bridge("paged", &paged.base, "  paginate: {next: link}\n", pw);
    let d = Daemon::start(
        dir.path(),
        &[
            ("CREDENTIALS_DIRECTORY", creds.to_str().unwrap()),
            ("ENV_TOKEN", "env-tok-0a0b0c0d"),
        ],
    );
    until("each bridge failed at least twice", || {
        let err = d.stderr.lock().unwrap();
        ["failing", "refused", "paged"].iter().all(|b| {
            err.iter()
                .filter(|l| {
                    l.contains(&format!("bridge={b}")) && l.contains(&format!("poll {b}: failed ("))
                })
                .count()
                >= 2
        }) && err
            .iter()
            .any(|l| l.contains("bridge=limited") && l.contains("rate limited"))
    })
    .await;
    let (_, out, err) = d.terminate().await;

    // The secrets were used...
    let hit = &up.hits()[0];
    assert_eq!(
        hit.header("authorization"),
        Some("Bearer file-tok-5e6f7a8b")
    );
    assert_eq!(hit.header("x-api-key"), Some("cred-key-1a2b3c4d"));
    assert_eq!(hit.header("x-other"), Some("env-tok-0a0b0c0d"));
    assert!(hit.uri.contains("access_token=qs-tok-4d3c2b1a"));
    let basic = limited.hits()[0]
        .header("authorization")
        .unwrap()
        .to_string();
    assert_eq!(basic, "Basic dXNlcjpwdy05ejh5N3g2dw==", "user:pw-9z8y7x6w");
    // ...and never shown: the operator sees masked URLs and the reasons.
    let all = err.join("\n") + &out.join("\n");
    for s in secrets {
        assert!(!all.contains(s), "`{s}` leaked:\n{all}");
    }
    let shown = |base: &str, userinfo: &str| {
        let host = base.trim_start_matches("http://");
        format!("http://{userinfo}{host}/x?access_token=***&page=1")
    };
    assert!(
        all.contains(&format!("{}: answered HTTP 500", shown(&up.base, ""))),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "{}: answered HTTP 429: rate limited",
            shown(&limited.base, "user:***@")
        )),
        "{all}"
    );
    let refused = shown(&format!("http://127.0.0.1:{closed}"), "user:***@");
    assert!(
        err.iter()
            .any(|l| l.contains(&refused) && l.contains("reason=connection")),
        "{all}"
    );
    assert!(
        all.contains("next/?token=***") || all.contains("next?token=***"),
        "{all}"
    );
}

/// A JSON body of exactly `n` bytes holding one item.
fn body_of(n: usize, v: &str) -> String {
    let head = format!(r#"{{"items": [{{"id": 1, "v": "{v}"}}], "pad": ""#);
    let tail = r#""}"#;
    format!("{head}{}{tail}", "x".repeat(n - head.len() - tail.len()))
}

#[tokio::test]
async fn max_body_is_exact_with_and_without_content_length() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge(
        "mb",
        &BridgeYaml::standard(&up.url(), "console")
            .source("max_body: 1000")
            .build(),
    );
    let http = reqwest::Client::new();
    for (chunked, v) in [(false, "a"), (true, "b")] {
        let answer = |n: usize, v: &str| Answer {
            chunked,
            ..Answer::new(200, "application/json", &body_of(n, v))
        };
        // Exactly at the limit: a good poll.
        up.set_answer(answer(1000, v));
        let length = http.get(up.url()).send().await.unwrap().content_length();
        assert_eq!(length, if chunked { None } else { Some(1000) });
        h.poll(&b).await.unwrap();
        let before = h.snapshot("mb");
        // One byte over (with a change in it): the poll fails and nothing changes.
        up.set_answer(answer(1001, "changed"));
        let e = h.poll(&b).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{}: response body exceeds max_body (1000 bytes)", up.url()),
            "chunked: {chunked}"
        );
        assert_eq!(h.snapshot("mb"), before);
    }
    assert_eq!(h.ctx.store().unwrap().items("mb").unwrap()[0].2["v"], "b");
}

#[tokio::test]
async fn a_broken_or_hung_page_fails_the_whole_poll() {
    let up = Upstream::start().await;
    let next = |a: Answer| a.header("link", "</items?page=2>; rel=\"next\"");
    up.route("/items", next(Answer::json(&json!({"items": [{"id": 1}]}))));
    up.route(
        "/items?page=2",
        Answer::json(&json!({"items": [{"id": 2}]})),
    );
    let h = Harness::new();
    // A 1s timeout stands in for the issue's "30 s hang": the server never answers either way.
    let b = h.bridge(
        "broken",
        &BridgeYaml::standard(&up.url(), "console")
            .timeout("1s")
            .next("link")
            .build(),
    );
    h.poll(&b).await.unwrap();
    let before = h.snapshot("broken");
    // Page 1 changes each time; page 2 breaks: neither is stored.
    let page2 = format!("{}/items?page=2", up.base);
    let cases = [
        (
            Answer::new(200, "text/html", "<!DOCTYPE html><html>login</html>"),
            format!(
                "{page2}: response is not JSON (content-type text/html): expected value at line 1 column 1"
            ),
        ),
        (
            Answer::new(200, "application/json", r#"{"items": [{"id": 2}, {"#),
            format!(
                "{page2}: response is not JSON (content-type application/json): truncated after 23 bytes"
            ),
        ),
        (
            Answer {
                hang: true,
                ..Answer::json(&json!({}))
            },
            format!("{page2}: no complete answer within 1s"),
        ),
        (
            Answer::new(502, "text/plain", "bad gateway"),
            format!("{page2}: answered HTTP 502"),
        ),
    ];
    for (n, (broken, want)) in cases.into_iter().enumerate() {
        up.route(
            "/items",
            next(Answer::json(&json!({"items": [{"id": 1, "n": n}]}))),
        );
        up.route("/items?page=2", broken);
        let e = h.poll(&b).await.unwrap_err().to_string();
        assert!(e.starts_with(&want), "got `{e}`, want `{want}`");
        assert_eq!(h.snapshot("broken"), before, "after `{e}`");
    }
}

#[tokio::test]
async fn an_empty_listing_where_100_items_stood_is_held_back_and_logged() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&listing(100));
    let dir = tempfile::tempdir().unwrap();
    // The guard alone: an emptied listing is also a shape drift (tests/it/shape.rs).
    BridgeYaml::new(&up.url())
        .every("500ms")
        .emit("shape: off")
        .sink(&format!("\"{}\"", rx.url()))
        .sink_line("signature: none")
        .write(dir.path(), "mass");
    let d = Daemon::start(dir.path(), &[]);
    until("the baseline", || {
        d.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("status=baseline") && l.contains("items=100"))
    })
    .await;
    up.set_json(&json!({"items": []}));
    until("the held-back WARN", || {
        d.stderr
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("mass delete held back"))
    })
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    let line = err
        .iter()
        .find(|l| l.contains("mass delete held back"))
        .unwrap();
    assert!(
        line.contains("WARN") && line.contains("vanishing=100") && line.contains("stored=100"),
        "{line}"
    );
    // The state is kept, nothing was sent or queued.
    let store = pollhook::store::Store::open(&dir.path().join("data")).unwrap();
    assert_eq!(store.items("mass").unwrap().len(), 100);
    assert_eq!(store.outbox_len("mass"), 0);
    assert!(rx.received().is_empty());
}

#[tokio::test]
async fn excluded_parts_neither_count_nor_are_sent() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let with = |items: &str| {
        BridgeYaml::standard(&up.url(), &rx.url())
            .items(items)
            .build()
    };
    let exc = h.bridge("exc", &with("exclude: [\"$.reactions\", \"$.user.id\"]"));
    let inc = h.bridge("inc", &with("include: [\"$.title\", \"$.user.login\"]"));
    let issue = |title: &str, plus: u32, user_id: u32, body: &str| json!({"items": [{"id": 7, "title": title, "body": body, "reactions": {"+1": plus}, "user": {"login": "ann", "id": user_id}}]});
    up.set_json(&issue("t", 1, 9, "b"));
    h.poll(&exc).await.unwrap();
    h.poll(&inc).await.unwrap();
    assert_eq!(
        h.ctx.store().unwrap().items("exc").unwrap()[0].2,
        json!({"id": 7, "title": "t", "body": "b", "user": {"login": "ann"}})
    );
    assert_eq!(
        h.ctx.store().unwrap().items("inc").unwrap()[0].2,
        json!({"title": "t", "user": {"login": "ann"}})
    );

    // Only excluded (or not included) parts change: no change for either bridge.
    up.set_json(&issue("t", 5, 10, "b"));
    assert!(h.poll(&exc).await.unwrap().events.is_empty());
    up.set_json(&issue("t", 5, 10, "b2"));
    let r = h.poll(&exc).await.unwrap();
    assert_eq!(r.updated, 1, "body counts for exc");
    assert!(
        h.poll(&inc).await.unwrap().events.is_empty(),
        "body does not count for inc"
    );

    // A counted change: sent without the excluded parts.
    up.set_json(&issue("t2", 8, 11, "b2"));
    assert_eq!(h.poll(&exc).await.unwrap().updated, 1);
    assert_eq!(h.poll(&inc).await.unwrap().updated, 1);
    h.drain(&exc).await;
    h.drain(&inc).await;
    let got: Vec<Value> = rx.received().iter().map(|r| r.json()).collect();
    assert_eq!(got.len(), 3);
    let text = serde_json::to_string(&got).unwrap();
    assert!(
        !text.contains("reactions") && !text.contains("\"+1\""),
        "{text}"
    );
    let last_inc = got.iter().rfind(|e| e["bridge"] == "inc").unwrap();
    assert_eq!(
        last_inc["data"],
        json!({"title": "t2", "user": {"login": "ann"}})
    );
    assert_eq!(
        last_inc["changes"],
        json!([{"op": "replace", "path": "/title", "value": "t2"}])
    );
}

#[tokio::test]
async fn deletes_wait_for_after_missing_complete_polls_even_when_the_listing_answers_304() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge(
        "am",
        &BridgeYaml::standard(&up.url(), "console")
            .after_missing(3)
            .build(),
    );
    let abc = json!({"items": [{"id": "a"}, {"id": "b"}, {"id": "c"}]});
    up.set_answer(Answer::json(&abc).header("etag", "\"1\""));
    h.poll(&b).await.unwrap();
    up.set_answer(
        Answer::json(&json!({"items": [{"id": "a"}, {"id": "b"}]})).header("etag", "\"2\""),
    );

    // First absence: counted, no event.
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.deleted, r.events.len()), (0, 0));
    assert_eq!(h.ctx.store().unwrap().meta("am").unwrap().absent, 1);
    // Second: the listing answers 304, and the absence still counts.
    let r = h.poll(&b).await.unwrap();
    assert_eq!(up.hits().last().unwrap().status, 304);
    assert!(!r.not_modified && r.events.is_empty());
    assert_eq!(h.ctx.store().unwrap().items("am").unwrap().len(), 3);
    // Third: deleted.
    let r = h.poll(&b).await.unwrap();
    assert_eq!(up.hits().last().unwrap().status, 304);
    assert_eq!(r.deleted, 1);
    assert_eq!(r.events[0].key, "c");
    assert_eq!(h.ctx.store().unwrap().meta("am").unwrap().absent, 0);
    // Nothing left to count: a 304 is now simply "not modified".
    assert!(h.poll(&b).await.unwrap().not_modified);
    assert_eq!(h.ctx.store().unwrap().outbox_len("am"), 1);
}

#[tokio::test]
async fn max_fraction_holds_back_a_mass_delete_and_keeps_the_state() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge(
        "mf",
        &BridgeYaml::standard(&up.url(), "console")
            .max_fraction("0.5")
            .emit("shape: off")
            .build(),
    );
    up.set_answer(Answer::json(&listing(10)).header("etag", "\"10\""));
    h.poll(&b).await.unwrap();
    let before = h.snapshot("mf");

    // 6 of 10 vanish: more than half, held back, state and outbox unchanged.
    up.set_answer(Answer::json(&listing(4)).header("etag", "\"4\""));
    for _ in 0..2 {
        let r = h.poll(&b).await.unwrap();
        let held = r.held_back.expect("held back");
        assert_eq!((held.vanishing, held.stored), (6, 10));
        assert!(r.events.is_empty() && !r.not_modified);
        assert_eq!(h.snapshot("mf"), before);
    }
    // The second poll was asked for in full (no validator): a held-back delete is re-checked
    // every poll until the operator acts or the listing recovers.
    assert_eq!(up.hits().last().unwrap().status, 200);

    // 5 of 10: exactly half may go.
    up.set_answer(Answer::json(&listing(5)).header("etag", "\"5\""));
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.deleted, r.held_back), (5, None));
    assert_eq!(h.ctx.store().unwrap().items("mf").unwrap().len(), 5);
}
