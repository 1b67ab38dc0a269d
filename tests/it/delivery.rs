//! Delivery against a real receiver: Retry-After, 410, redirects, exhausted schedules, stored
//! retry times across a restart, and every signature scheme.

use crate::support::*;
use hmac::{Hmac, KeyInit, Mac};
use pollhook::deliver::Outcome;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn bridge_yaml(url: &str, sinks: &str) -> String {
    BridgeYaml::new(url).first_poll("emit").with_sinks(sinks)
}

fn ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

async fn setup(sinks: &str, items: usize) -> (Upstream, Harness, pollhook::config::Bridge) {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("d", &bridge_yaml(&up.url(), sinks));
    let list: Vec<_> = (1..=items).map(|i| json!({"id": i})).collect();
    up.set_json(&json!({ "items": list }));
    h.poll(&b).await.unwrap();
    (up, h, b)
}

#[tokio::test]
async fn retry_after_on_429_and_503_is_honoured_up_to_the_longest_step() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    secret: {SECRET}\n    retry: [1s, 1m, 2m]\n",
        rx.url()
    );
    let (_up, h, b) = setup(&sinks, 1).await;
    let t0 = SystemTime::now();
    rx.answer(429, &[("retry-after", "30")]);
    let o = h.drain_at(&b, t0).await;
    let Outcome::Retrying { next_at, .. } = o[0] else {
        panic!("{o:?}")
    };
    assert_eq!(next_at.timestamp_millis() - ms(t0), 30_000);
    // Far beyond the schedule: capped at its longest step (2m), which is above this step's
    // 1m ±10%.
    rx.answer(503, &[("retry-after", "86400")]);
    let t1 = t0 + Duration::from_secs(30);
    let o = h.drain_at(&b, t1).await;
    let Outcome::Retrying { next_at, .. } = o[0] else {
        panic!("{o:?}")
    };
    assert_eq!(next_at.timestamp_millis() - ms(t1), 120_000);
    let o = h.drain_at(&b, t1 + Duration::from_secs(120)).await;
    assert!(matches!(o[0], Outcome::Delivered { .. }), "{o:?}");
    assert_eq!(rx.received().len(), 3);
}

#[tokio::test]
async fn gone_dead_letters_at_once_and_the_next_event_goes_on() {
    let rx = Receiver::start().await;
    let sinks = format!("  - url: {}\n    secret: {SECRET}\n", rx.url());
    let (_up, h, b) = setup(&sinks, 2).await;
    rx.answer(410, &[]);
    let o = h.drain(&b).await;
    assert!(matches!(o[0], Outcome::DeadLettered { .. }), "{o:?}");
    assert!(matches!(o[1], Outcome::Delivered { .. }), "{o:?}");
    let dead = h.ctx.store().unwrap().dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].1.entry.last_error.as_deref(), Some("HTTP 410 Gone"));
    assert_eq!(dead[0].1.entry.attempts, 1);
    assert_eq!(dead[0].1.entry.seq, 1);
    assert_eq!(h.ctx.store().unwrap().outbox_len("d"), 0);
}

#[tokio::test]
async fn redirects_are_not_followed_and_an_exhausted_schedule_dead_letters() {
    let rx = Receiver::start().await;
    let elsewhere = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    secret: {SECRET}\n    retry: [1s]\n",
        rx.url()
    );
    let (_up, h, b) = setup(&sinks, 1).await;
    rx.answer(302, &[("location", &elsewhere.url())]);
    rx.answer(500, &[]);
    let t0 = SystemTime::now();
    let o = h.drain_at(&b, t0).await;
    assert!(matches!(o[0], Outcome::Retrying { .. }), "{o:?}");
    let o = h.drain_at(&b, t0 + Duration::from_secs(2)).await;
    assert!(matches!(o[0], Outcome::DeadLettered { .. }), "{o:?}");
    assert!(elsewhere.received().is_empty(), "the redirect was followed");
    let dead = h.ctx.store().unwrap().dead_letters().unwrap();
    assert_eq!(dead[0].1.entry.attempts, 2);
    assert_eq!(dead[0].1.entry.last_error.as_deref(), Some("HTTP 500"));
}

#[tokio::test]
async fn a_restart_resumes_the_stored_retry_time() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    secret: {SECRET}\n    retry: [1h]\n",
        rx.url()
    );
    let (_up, h, b) = setup(&sinks, 1).await;
    rx.answer(500, &[]);
    let t0 = SystemTime::now();
    let Outcome::Retrying { next_at, .. } = h.drain_at(&b, t0).await[0] else {
        panic!()
    };
    let h = h.restart();
    // Neither restarted from scratch nor lost: the same planned time.
    assert_eq!(
        h.drain_at(&b, t0 + Duration::from_secs(60)).await,
        [Outcome::NotDue(next_at)]
    );
    let due = SystemTime::from(next_at);
    assert!(matches!(
        h.drain_at(&b, due).await[0],
        Outcome::Delivered { .. }
    ));
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
}

#[tokio::test]
async fn github_signatures_and_secret_rotation() {
    let gh = Receiver::start().await;
    let rot = Receiver::start().await;
    let old = "whsec_dGhlIG9sZCBzZWNyZXQgb2YgdGhpcyBzaW5r";
    let sinks = format!(
        "  - url: {}\n    secret: plain-gh-secret\n    signature: github\n  - url: {}\n    secret: [{SECRET}, {old}]\n",
        gh.url(),
        rot.url()
    );
    let (_up, h, b) = setup(&sinks, 1).await;
    h.drain(&b).await;
    let g = &gh.received()[0];
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"plain-gh-secret").unwrap();
    mac.update(&g.body);
    assert_eq!(
        g.header("x-hub-signature-256"),
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    );
    assert!(g.header("webhook-signature").is_empty());
    let r = &rot.received()[0];
    assert_eq!(r.header("webhook-signature").split(' ').count(), 2);
    // A receiver that knows only the new secret, or only the old one, accepts it.
    assert!(verify_standard(SECRET, r));
    assert!(verify_standard(old, r));
    assert!(!verify_standard("whsec_c29tZSBvdGhlciBzZWNyZXQ=", r));
}

/// The real deliverer loops: a sink that never answers holds up neither the bridge's other
/// sink nor another bridge.
#[tokio::test]
async fn a_hung_sink_holds_up_no_other_sink_or_bridge() {
    let hung = Upstream::start().await;
    hung.hang();
    let fast = Receiver::start().await;
    let up = Upstream::start().await;
    let h = Harness::new();
    let sinks = format!(
        "  - url: {}\n    secret: {SECRET}\n  - url: {}\n    secret: {SECRET}\n",
        hung.url(),
        fast.url()
    );
    let d = std::sync::Arc::new(h.bridge("d", &bridge_yaml(&up.url(), &sinks)));
    let other = format!("  - url: {}/other\n    secret: {SECRET}\n", fast.base);
    let e = std::sync::Arc::new(h.bridge("e", &bridge_yaml(&up.url(), &other)));
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}, {"id": 3}]}));
    h.poll(&d).await.unwrap();
    h.poll(&e).await.unwrap();

    let stop = tokio_util::sync::CancellationToken::new();
    for (b, n) in [(&d, 2), (&e, 1)] {
        for i in 0..n {
            tokio::spawn(pollhook::deliver::run_sink(
                h.ctx.clone(),
                h.windows.clone(),
                b.clone(),
                i,
                stop.clone(),
            ));
        }
    }
    // Received, then acknowledged: the receiver sees a request before its deliverer stores
    // the ack.
    let outbox = |b: &str| h.ctx.store().unwrap().outbox_len(b);
    until("both fast queues delivered and acknowledged", || {
        fast.received().len() == 6 && outbox("d") == 3 && outbox("e") == 0
    })
    .await;
    stop.cancel();
    // The hung sink still holds all three of bridge d's events, in order, nothing acknowledged.
    let (_, head) = h
        .ctx
        .store()
        .unwrap()
        .outbox_head("d", &d.sinks[0].id)
        .unwrap()
        .unwrap();
    assert_eq!(head.seq, 1);
    assert_eq!(outbox("d"), 3);
    assert_eq!(outbox("e"), 0);
    assert_eq!(
        hung.hits.lock().unwrap().len(),
        1,
        "one attempt at a time per sink"
    );
}

/// `seq` never goes back: not across a restart, not across a reset (which re-baselines).
#[tokio::test]
async fn seq_survives_restarts_and_resets() {
    let rx = Receiver::start().await;
    let sinks = format!("  - url: {}\n    secret: {SECRET}\n", rx.url());
    let (up, h, b) = setup(&sinks, 2).await;
    assert_eq!(h.ctx.store().unwrap().meta("d").unwrap().seq, 2);
    let h = h.restart();
    h.ctx.store().unwrap().reset("d").unwrap();
    assert!(h.ctx.store().unwrap().items("d").unwrap().is_empty());
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2, "v": 1}]}));
    let r = h.poll(&b).await.unwrap();
    // first_poll: emit applies to the baseline after a reset too.
    assert!(r.baseline);
    assert_eq!(r.events.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2, "v": 2}]}));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.events[0].seq, 5);
    h.drain(&b).await;
    let ids: std::collections::HashSet<String> = rx
        .received()
        .iter()
        .map(|r| r.header("webhook-id").to_string())
        .collect();
    assert_eq!(
        ids.len(),
        5,
        "every event has its own id, before and after the reset"
    );
}
