//! Failure events (`emit.failures`, docs/events.md#failure-events): `bridge.failing` after N failed
//! polls in a row and `bridge.recovered` on the next success, each once, signed and queued like any
//! event, the streak kept across a restart.

use crate::support::*;
use serde_json::json;

#[tokio::test]
async fn failing_after_n_failed_polls_and_recovered_after_each_once_across_a_restart() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let mut h = Harness::new();
    let yaml = BridgeYaml::standard(
        &format!("{}/items?api_key=${{TEST_TOKEN}}", up.base),
        &rx.url(),
    )
    .failures_after(3)
    .build();
    let b = h.bridge("flaky", &yaml);
    up.set_json(&json!({"items": [{"id": 1}]}));
    h.scheduled_poll(&b).await.unwrap();

    up.set(500, "text/plain", "down");
    for _ in 0..2 {
        h.scheduled_poll(&b).await.unwrap_err();
    }
    assert_eq!(
        h.drain(&b).await.len(),
        1,
        "nothing queued before the 3rd failure"
    );
    // The streak is stored: after a restart the next failure is the 3rd.
    h = h.restart();
    h.scheduled_poll(&b).await.unwrap_err();
    h.scheduled_poll(&b).await.unwrap_err();
    h.drain(&b).await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    h.scheduled_poll(&b).await.unwrap();
    h.scheduled_poll(&b).await.unwrap();
    h.drain(&b).await;

    let got = rx.received();
    let kinds: Vec<&str> = got.iter().map(|r| r.header("x-pollhook-event")).collect();
    assert_eq!(kinds, ["bridge.failing", "bridge.recovered"]);
    for r in &got {
        assert!(verify_standard(SECRET, r), "signed as any event");
        assert_eq!(r.header("webhook-id"), r.json()["id"].as_str().unwrap());
    }
    let failing = got[0].json();
    assert_eq!(
        (failing["seq"].as_u64(), failing["key"].as_str()),
        (Some(1), Some(""))
    );
    let data = &failing["data"];
    assert_eq!(
        (data["failures"].as_u64(), data["reason"].as_str()),
        (Some(3), Some("http_status"))
    );
    let error = data["error"].as_str().unwrap();
    assert!(error.contains("answered HTTP 500"), "{error}");
    assert!(
        !error.contains("tok-abc-123"),
        "the error is redacted: {error}"
    );
    let recovered = got[1].json();
    assert_eq!(recovered["seq"], 2);
    assert_eq!(recovered["data"]["failures"], 4);
    assert_eq!(recovered["data"]["since"], data["since"]);
    assert!(recovered["data"]["duration_ms"].as_i64().unwrap() >= 0);
    let (_, meta, outbox) = h.snapshot("flaky");
    assert_eq!((meta.seq, meta.failing, outbox), (2, None, 0));
}
