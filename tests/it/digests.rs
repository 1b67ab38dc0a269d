//! Digests (`batch: {max, window}`, docs/configuration.md#digests): formed from the head of the
//! queue in order, their composition stored before the first attempt, so a retry and a kill -9 send
//! the same bytes under the same `webhook-id`.

use crate::support::*;
use pollhook::deliver::Outcome;
use pollhook::deliver::batch::batch_id;
use serde_json::{Value, json};
use std::time::{Duration, SystemTime};

/// A bridge `g` whose first poll emits `n` created events (keys 1..=n) to `sinks`.
async fn created(sinks: &str, n: usize) -> (Upstream, Harness, pollhook::config::Bridge) {
    let up = Upstream::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .first_poll("emit")
        .with_sinks(sinks);
    let b = h.bridge("g", &yaml);
    let list: Vec<Value> = (1..=n)
        .map(|i| json!({"id": i, "title": format!("item {i}")}))
        .collect();
    up.set_json(&json!({ "items": list }));
    h.poll(&b).await.unwrap();
    (up, h, b)
}

fn keys(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap().to_string())
        .collect()
}

fn ids(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn seven_changes_with_max_3_go_as_3_then_3_then_1_in_order() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    secret: {SECRET}\n    batch: {{max: 3, window: 1h}}\n",
        rx.url()
    );
    let (_up, h, b) = created(&sinks, 7).await;
    let t0 = SystemTime::now();
    let o = h.drain_at(&b, t0).await;
    assert!(matches!(o.last(), Some(Outcome::NotDue(_))), "{o:?}");
    assert_eq!(rx.received().len(), 2, "the seventh waits for the window");
    let o = h.drain_at(&b, t0 + Duration::from_secs(3601)).await;
    assert!(matches!(o[0], Outcome::Delivered { .. }), "{o:?}");
    let got = rx.received();
    assert_eq!(got.len(), 3);
    let bodies: Vec<Value> = got.iter().map(|r| r.json()).collect();
    for (r, body) in got.iter().zip(&bodies) {
        assert_eq!(body["type"], "batch");
        assert_eq!(body["bridge"], "g");
        assert!(verify_standard(SECRET, r));
        let ids = ids(body);
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(r.header("webhook-id"), batch_id(&ids));
    }
    let k: Vec<Vec<String>> = bodies.iter().map(keys).collect();
    assert_eq!(k, [vec!["1", "2", "3"], vec!["4", "5", "6"], vec!["7"]]);
    let seqs: Vec<u64> = bodies
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().clone())
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=7).collect::<Vec<_>>());
    assert_eq!(h.ctx.store().unwrap().outbox_len("g"), 0);
}

#[tokio::test]
async fn a_500_then_200_resends_the_same_bytes_under_the_same_id() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    secret: {SECRET}\n    retry: [1s]\n    batch: {{max: 5, window: 1m}}\n",
        rx.url()
    );
    let (up, h, b) = created(&sinks, 4).await;
    rx.answer(500, &[]);
    let t0 = SystemTime::now();
    let o = h.drain_at(&b, t0).await;
    assert!(matches!(o[0], Outcome::Retrying { .. }), "{o:?}");
    // An event that comes meanwhile does not join the stored digest.
    let list: Vec<Value> = (1..=5)
        .map(|i| json!({"id": i, "title": format!("item {i}")}))
        .collect();
    up.set_json(&json!({ "items": list }));
    h.poll(&b).await.unwrap();
    let o = h.drain_at(&b, t0 + Duration::from_secs(2)).await;
    assert!(matches!(o[0], Outcome::Delivered { .. }), "{o:?}");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert!(got[0].header("webhook-id").starts_with("bat_"));
    assert_eq!(keys(&got[0].json()), ["1", "2", "3", "4"]);
    assert!(verify_standard(SECRET, &got[1]));
    assert!(matches!(o.last(), Some(Outcome::NotDue(_))), "{o:?}");
}

#[tokio::test]
async fn a_failed_digest_is_dead_lettered_whole_and_replayed_whole() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    secret: {SECRET}\n    batch: {{max: 2, window: 1m}}\n",
        rx.url()
    );
    let (up, h, b) = created(&sinks, 2).await;
    rx.answer(410, &[]);
    let o = h.drain(&b).await;
    assert!(matches!(o[0], Outcome::DeadLettered { .. }), "{o:?}");
    let dead = h.ctx.store().unwrap().dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].1.entry.event_id.starts_with("bat_"));
    let body: Value = serde_json::from_str(&dead[0].1.entry.body).unwrap();
    assert_eq!(keys(&body), ["1", "2"]);
    // Replayed behind a new change, it goes whole, as it was, and is not merged with it.
    let list: Vec<Value> = (1..=3)
        .map(|i| json!({"id": i, "title": format!("item {i}")}))
        .collect();
    up.set_json(&json!({ "items": list }));
    h.poll(&b).await.unwrap();
    let store = h.ctx.store().unwrap();
    store.replay(&dead[0].0).unwrap().unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    let o = h.drain_at(&b, later).await;
    assert!(
        o.iter()
            .filter(|o| matches!(o, Outcome::Delivered { .. }))
            .count()
            == 2,
        "{o:?}"
    );
    let got = rx.received();
    assert_eq!(got.len(), 3);
    assert_eq!(keys(&got[1].json()), ["3"]);
    assert_eq!(got[2].body, got[0].body);
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
    assert_eq!(store.outbox_len("g"), 0);
}

#[tokio::test]
async fn chat_digests_join_one_line_per_event_cut_with_and_n_more() {
    let slack = Receiver::start().await;
    let discord = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    format: slack\n    batch: {{max: 3, window: 1h}}\n  - url: {}\n    format: discord\n    message: \"{{{{ event.key }}}} {{{{ 'y' * 300 }}}}\"\n    batch: {{max: 20, window: 1h}}\n",
        slack.url(),
        discord.url()
    );
    let (_up, h, b) = created(&sinks, 20).await;
    h.drain(&b).await;
    assert_eq!(
        slack.received()[0].json(),
        json!({"text": "g: item.created 1 \"item 1\"\ng: item.created 2 \"item 2\"\ng: item.created 3 \"item 3\""})
    );
    let content = discord.received()[0].json()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.chars().count() <= 2000, "{}", content.len());
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.last().copied(), Some("… and 14 more"));
    assert_eq!(lines.len(), 7);
    assert!(lines[0].starts_with("1 yyy") && lines[5].starts_with("6 yyy"));
}

#[tokio::test]
async fn kill_9_between_the_first_attempt_and_the_ack_resends_the_same_digest() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}, {"id": 3}]}));
    BridgeYaml::new(&up.url())
        .every("1s")
        .first_poll("emit")
        .signed_sink(&rx.url())
        .sink_line("batch: {max: 10, window: 1s}")
        .write(dir.path(), "k");
    // The first attempt gets no answer before the kill.
    rx.answer_slowly(200, Duration::from_secs(60));
    let mut d = Daemon::start(dir.path(), &[]);
    until("the first attempt", || rx.received().len() == 1).await;
    d.child.start_kill().unwrap(); // SIGKILL
    d.child.wait().await.unwrap();
    // A change found after the restart does not join the digest already formed.
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}]}));
    let d = Daemon::start(dir.path(), &[]);
    until("the digest is sent again", || rx.received().len() >= 2).await;
    let got = rx.received();
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(keys(&got[1].json()), ["1", "2", "3"]);
    assert!(verify_standard(SECRET, &got[1]));
    until("the new change follows", || rx.received().len() == 3).await;
    assert_eq!(keys(&rx.received()[2].json()), ["4"]);
    d.terminate().await;
}

#[tokio::test]
async fn a_digest_holds_only_what_the_sinks_rule_lets_through() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    signature: none\n    when: \"event.data.id is even\"\n    batch: {{max: 3, window: 1h}}\n",
        rx.url()
    );
    let (_up, h, b) = created(&sinks, 9).await;
    let t0 = SystemTime::now();
    let o = h.drain_at(&b, t0).await;
    assert!(matches!(o.last(), Some(Outcome::NotDue(_))), "{o:?}");
    // `max` counts the events the sink takes: the odd ones leave the queue unsent as they
    // are met, and do not make a digest of one.
    let k: Vec<Vec<String>> = rx.received().iter().map(|r| keys(&r.json())).collect();
    assert_eq!(k, [vec!["2", "4", "6"]]);
    // The eighth waits for the window (the seventh and ninth are gone), then goes alone.
    assert_eq!(h.ctx.store().unwrap().outbox_len("g"), 1);
    let o = h.drain_at(&b, t0 + Duration::from_secs(3601)).await;
    assert!(matches!(o[0], Outcome::Delivered { .. }), "{o:?}");
    let k: Vec<Vec<String>> = rx.received().iter().map(|r| keys(&r.json())).collect();
    assert_eq!(k, [vec!["2", "4", "6"], vec!["8"]]);
    assert_eq!(h.ctx.store().unwrap().outbox_len("g"), 0);
}

#[tokio::test]
async fn an_ntfy_digest_stays_within_4096_bytes_and_whole_characters() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    format: ntfy\n    message: \"{{{{ event.key }}}} {{{{ '€' * 200 }}}}\"\n    batch: {{max: 20, window: 1h}}\n",
        rx.url()
    );
    let (_up, h, b) = created(&sinks, 20).await;
    h.drain(&b).await;
    let got = &rx.received()[0].body;
    assert!(got.len() <= 4096, "{} bytes", got.len());
    let text = std::str::from_utf8(got).expect("valid UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    // Each line is 603 or 604 bytes: six fit with the note.
    assert_eq!(lines.last().copied(), Some("… and 14 more"));
    assert_eq!(lines.len(), 7);
    for (i, l) in lines[..6].iter().enumerate() {
        assert_eq!(*l, format!("{} {}", i + 1, "€".repeat(200)));
    }
}
