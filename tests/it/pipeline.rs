//! The whole path, one step at a time: a real upstream, the real poll, a real sled store,
//! real deliveries to a real receiver that checks signatures.

use crate::support::*;
use pollhook::deliver::Outcome;
use serde_json::json;
use std::time::{Duration, SystemTime};

#[tokio::test]
async fn created_updated_deleted_are_delivered_signed_and_in_order() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let b = h.bridge("shop", &BridgeYaml::standard(&up.url(), &rx.url()).build());

    up.set_json(
        &json!({"items": [{"id": 1, "name": "a", "n": 1}, {"id": 2, "name": "b", "n": 2}]}),
    );
    let r = h.poll(&b).await.unwrap();
    assert!(
        r.baseline && r.events.is_empty(),
        "first poll is a silent baseline"
    );
    assert_eq!(h.drain(&b).await, [Outcome::Empty]);

    up.set_json(&json!({"items": [{"id": 2, "name": "b", "n": 3}, {"id": "x", "name": "c"}]}));
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.created, r.updated, r.deleted), (1, 1, 1));
    let outcomes = h.drain(&b).await;
    assert_eq!(outcomes.len(), 4, "{outcomes:?}");

    let got = rx.received();
    assert_eq!(got.len(), 3);
    let bodies: Vec<_> = got.iter().map(|r| r.json()).collect();
    // Detection order: items in listing order, then deletes.
    assert_eq!(bodies[0]["type"], "item.updated");
    assert_eq!(bodies[0]["key"], "2");
    assert_eq!(bodies[0]["previous"], json!({"id": 2, "name": "b", "n": 2}));
    assert_eq!(bodies[0]["data"], json!({"id": 2, "name": "b", "n": 3}));
    assert_eq!(
        bodies[0]["changes"],
        json!([{"op": "replace", "path": "/n", "value": 3}])
    );
    assert_eq!(bodies[1]["type"], "item.created");
    assert_eq!(bodies[1]["key"], "x");
    assert!(bodies[1].get("previous").is_none() && bodies[1].get("changes").is_none());
    assert_eq!(bodies[2]["type"], "item.deleted");
    assert_eq!(bodies[2]["key"], "1");
    assert!(bodies[2].get("data").is_none());
    assert_eq!(
        bodies
            .iter()
            .map(|b| b["seq"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [1, 2, 3]
    );
    for (r, body) in got.iter().zip(&bodies) {
        assert!(verify_standard(SECRET, r), "signature of {body}");
        assert!(!verify_standard(
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            r
        ));
        assert_eq!(r.header("webhook-id"), body["id"].as_str().unwrap());
        assert_eq!(r.header("x-pollhook-event"), body["type"].as_str().unwrap());
        assert_eq!(r.header("content-type"), "application/json");
        assert!(r.header("user-agent").starts_with("pollhook/"));
        let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
        assert!((ts - chrono::Utc::now().timestamp()).abs() < 300);
        assert_eq!(body["bridge"], "shop");
        assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));
    }
    // Acknowledged events leave the outbox.
    assert_eq!(h.ctx.store().unwrap().outbox_len("shop"), 0);
}

#[tokio::test]
async fn first_poll_emit_and_event_filter() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let b = h.bridge(
        "e",
        &BridgeYaml::standard(&up.url(), &rx.url())
            .first_poll("emit")
            .emit("events: [created, deleted]")
            .build(),
    );
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}]}));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.events.len(), 2);
    assert!(
        r.events
            .iter()
            .all(|e| e.kind == pollhook::event::EventType::Created)
    );
    // An update is stored but not emitted (events: [created, deleted]).
    up.set_json(&json!({"items": [{"id": 1, "v": 2}, {"id": 2}]}));
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.updated, r.events.len()), (1, 0));
    up.set_json(&json!({"items": [{"id": 1, "v": 2}]}));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].seq, 3, "seq counts emitted events without gaps");
    h.drain(&b).await;
    assert_eq!(rx.received().len(), 3);
}

#[tokio::test]
async fn key_order_and_number_format_are_no_change_and_restart_re_emits_nothing() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let b = h.bridge("same", &BridgeYaml::standard(&up.url(), &rx.url()).build());
    up.set(
        200,
        "application/json",
        r#"{"items": [{"id": 1, "a": 1, "b": {"x": 2.5, "y": [1, 2]}}]}"#,
    );
    h.poll(&b).await.unwrap();
    up.set(
        200,
        "application/json",
        r#"{"items": [{"b": {"y": [1.0, 2.00], "x": 2.5}, "a": 1.0, "id": 1.0}]}"#,
    );
    let r = h.poll(&b).await.unwrap();
    assert!(r.events.is_empty(), "{:?}", r.events);
    let before = h.snapshot("same");

    let h = h.restart();
    let r = h.poll(&b).await.unwrap();
    assert!(!r.baseline && r.events.is_empty());
    assert_eq!(h.snapshot("same"), before);
    h.drain(&b).await;
    assert!(rx.received().is_empty());

    // After the restart a real change is still seen, and seq goes on.
    up.set_json(&json!({"items": [{"id": 1, "a": 2, "b": {"x": 2.5, "y": [1, 2]}}]}));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.events.len(), 1);
    assert_eq!(r.events[0].seq, 1);
}

/// Each broken answer fails the poll with a clear reason, and leaves state and outbox alone.
#[tokio::test]
async fn failed_polls_change_nothing_and_emit_nothing() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let mut b = h.bridge("f", &BridgeYaml::standard(&up.url(), &rx.url()).build());
    b.source.max_body = 1000;
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}]}));
    h.poll(&b).await.unwrap();
    up.set_json(&json!({"items": [{"id": 1, "v": 1}, {"id": 2}]}));
    h.poll(&b).await.unwrap();
    let before = h.snapshot("f");
    assert_eq!(before.2, 1);

    let url = up.url();
    let cases: Vec<(Box<dyn Fn()>, String)> = vec![
        (
            Box::new(|| up.set(500, "text/plain", "oops")),
            format!("{url}: answered HTTP 500"),
        ),
        (
            Box::new(|| up.set(200, "text/html", "<!DOCTYPE html><html>maintenance</html>")),
            format!(
                "{url}: response is not JSON (content-type text/html): expected value at line 1 column 1"
            ),
        ),
        (
            Box::new(|| up.set(200, "application/json", r#"{"items": [{"id": 1}, {"id""#)),
            format!(
                "{url}: response is not JSON (content-type application/json): truncated after 27 bytes"
            ),
        ),
        (
            // Bytes that are not UTF-8, inside a string where the JSON syntax still holds.
            Box::new(|| {
                up.set_answer(Answer {
                    body: b"{\"items\": [{\"id\": \"\xff\"}]}".to_vec(),
                    ..Answer::new(200, "application/json", "")
                })
            }),
            format!(
                "{url}: response is not JSON (content-type application/json): invalid UTF-8 at byte 19"
            ),
        ),
        (
            Box::new(|| {
                up.set(
                    200,
                    "application/json",
                    &format!(r#"{{"items": [], "pad": "{}"}}"#, "x".repeat(1000)),
                )
            }),
            format!("{url}: response body exceeds max_body (1000 bytes)"),
        ),
        (
            Box::new(|| up.set_json(&json!({"items": [{"id": 1}, {"name": "no id"}]}))),
            "item 1 has no usable key at `$.id`: nothing there".to_string(),
        ),
        (
            Box::new(|| up.set_json(&json!({"items": [{"id": 1}, {"id": 1.0, "other": true}]}))),
            "two items share the key `1` (items 0 and 1)".to_string(),
        ),
        (
            Box::new(|| up.hang()),
            format!("{url}: no complete answer within 2s"),
        ),
    ];
    for (setup, expected) in cases {
        setup();
        let err = h.poll(&b).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&expected), "got `{msg}`, want `{expected}`");
        assert_eq!(h.snapshot("f"), before, "state changed after `{msg}`");
    }
    // The receiver being down does not lose the queued event either.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", gone.local_addr().unwrap());
    drop(gone);
    let mut down = b.clone();
    std::sync::Arc::make_mut(&mut down.sinks[0]).target =
        pollhook::config::Target::Http(dead_url.parse().unwrap());
    let o = h.drain(&down).await;
    assert!(matches!(o[0], Outcome::Retrying { .. }), "{o:?}");
    assert_eq!(h.ctx.store().unwrap().outbox_len("f"), 1);
    // And once it is back, the retry (when due) delivers it.
    let o = h
        .drain_at(&b, SystemTime::now() + Duration::from_secs(5))
        .await;
    assert!(matches!(o[0], Outcome::Delivered { .. }), "{o:?}");
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn retries_follow_the_schedule_until_a_2xx() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let b = h.bridge(
        "r",
        &BridgeYaml::standard(&up.url(), &rx.url())
            .first_poll("emit")
            .build(),
    );
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}]}));
    h.poll(&b).await.unwrap();
    rx.answer(500, &[]);
    rx.answer(502, &[]);
    let t0 = SystemTime::now();
    let o = h.drain_at(&b, t0).await;
    let Outcome::Retrying { next_at, .. } = o[0] else {
        panic!("{o:?}")
    };
    let next_at_ms = next_at.timestamp_millis();
    let t0_ms = t0
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // First step 1s ±10%.
    assert!(
        (900..=1100).contains(&(next_at_ms - t0_ms)),
        "{}",
        next_at_ms - t0_ms
    );
    // Not due yet: nothing is sent, the second event waits behind the first.
    assert_eq!(h.drain_at(&b, t0).await, [Outcome::NotDue(next_at)]);
    assert_eq!(rx.received().len(), 1);
    let o = h.drain_at(&b, t0 + Duration::from_millis(1100)).await;
    assert!(matches!(o[0], Outcome::Retrying { .. }));
    let o = h.drain_at(&b, t0 + Duration::from_secs(10)).await;
    assert!(
        matches!(o[0], Outcome::Delivered { .. }) && matches!(o[1], Outcome::Delivered { .. }),
        "{o:?}"
    );
    let got = rx.received();
    assert_eq!(got.len(), 4);
    let ids: Vec<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[0], ids[2]);
    assert_ne!(ids[2], ids[3]);
    // Same id on every attempt, but a fresh timestamp and signature each time.
    assert_ne!(
        got[0].header("webhook-timestamp"),
        got[2].header("webhook-timestamp")
    );
    assert_ne!(
        got[0].header("webhook-signature"),
        got[2].header("webhook-signature")
    );
    assert_eq!(got[3].json()["seq"], 2);
    assert!(got.iter().all(|r| verify_standard(SECRET, r)));
}

#[tokio::test]
async fn document_mode() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .document("$.info")
        .first_poll("emit")
        .sink(&format!("\"{}\"", rx.url()))
        .sink_line("signature: none")
        .build();
    let b = h.bridge("doc", &yaml);
    up.set_json(&json!({"info": {"version": "1.0"}}));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.events[0].key, "$");
    up.set_json(&json!({"info": {"version": "1.1"}}));
    assert_eq!(h.poll(&b).await.unwrap().updated, 1);
    up.set_json(&json!({"other": 1}));
    assert_eq!(h.poll(&b).await.unwrap().deleted, 1);
    h.drain(&b).await;
    let types: Vec<_> = rx
        .received()
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["item.created", "item.updated", "item.deleted"]);
    assert!(
        rx.received()
            .iter()
            .all(|r| r.header("webhook-signature").is_empty())
    );
}

#[tokio::test]
async fn a_changed_key_definition_re_baselines_without_events() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let b = h.bridge("k", &BridgeYaml::standard(&up.url(), &rx.url()).build());
    up.set_json(&json!({"items": [{"id": 1, "slug": "a"}, {"id": 2, "slug": "b"}]}));
    h.poll(&b).await.unwrap();
    let b2 = h.bridge(
        "k",
        &BridgeYaml::standard(&up.url(), &rx.url())
            .key("$.slug")
            .build(),
    );
    let r = h.poll(&b2).await.unwrap();
    assert!(r.rebaselined && r.events.is_empty());
    let keys: Vec<String> = h
        .ctx
        .store()
        .unwrap()
        .items("k")
        .unwrap()
        .into_iter()
        .map(|i| i.0)
        .collect();
    assert_eq!(keys, ["a", "b"]);
}

#[tokio::test]
async fn post_sources_send_their_json_body_and_headers() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .source("method: POST")
        .source("body: {query: \"{ items { id } }\", vars: {first: 10, token: \"${TEST_TOKEN}\"}}")
        .header("X-Api-Key", "\"${TEST_TOKEN}\"")
        .select("$.data.items[*]")
        .sink("console")
        .build();
    let b = h.bridge("gql", &yaml);
    up.set_json(&json!({"data": {"items": [{"id": "a"}]}}));
    assert_eq!(h.poll(&b).await.unwrap().items, 1);
    let hit = up.hits.lock().unwrap()[0].clone();
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.headers["x-api-key"], "tok-abc-123");
    assert_eq!(hit.headers["content-type"], "application/json");
    let sent: serde_json::Value = serde_json::from_slice(&hit.body).unwrap();
    assert_eq!(
        sent,
        json!({"query": "{ items { id } }", "vars": {"first": 10, "token": "tok-abc-123"}})
    );
}
