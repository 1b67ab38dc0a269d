//! Traces (docs/operations.md#traces): the daemon with `--otlp` posts a span for each poll and
//! each delivery attempt to a collector on 127.0.0.1; the webhook's `traceparent` names the
//! exported delivery span; no secret reaches the collector or the logs.

use crate::support::{Daemon, Receiver, Upstream, verify_standard};
use crate::testkit::{BridgeYaml, SECRET, until};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// A collector: every OTLP/HTTP JSON body posted to /v1/traces, as JSON.
async fn collector() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = Router::new()
        .route(
            "/v1/traces",
            post(
                |State(got): State<Arc<Mutex<Vec<Value>>>>, body: Bytes| async move {
                    got.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    axum::Json(json!({}))
                },
            ),
        )
        .with_state(got.clone());
    (crate::support::serve(app).await, got)
}

/// Every span the collector got.
fn spans(got: &Mutex<Vec<Value>>) -> Vec<Value> {
    let mut out = Vec::new();
    for request in got.lock().unwrap().iter() {
        for rs in request["resourceSpans"].as_array().unwrap() {
            for ss in rs["scopeSpans"].as_array().unwrap() {
                out.extend(ss["spans"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

fn attr(span: &Value, key: &str) -> Option<Value> {
    let attrs = span["attributes"].as_array().unwrap();
    let a = attrs.iter().find(|a| a["key"] == key)?;
    let v = &a["value"];
    Some(v.get("stringValue").or(v.get("intValue")).unwrap().clone())
}

const TOKEN: &str = "tok-7f3a9c-otlp-secret";

#[tokio::test]
async fn spans_of_a_poll_and_its_deliveries_reach_the_collector() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1, "name": "one"}]}));
    let hook = Receiver::start().await;
    // The first attempt fails: the second is a resend.
    hook.answer(503, &[]);
    let (otlp, got) = collector().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::standard(
        &format!("{}?api_key=${{TRACE_TOKEN}}", up.url()),
        &hook.url(),
    )
    .header("Authorization", "\"Bearer ${TRACE_TOKEN}\"")
    .first_poll("emit")
    .write(dir.path(), "traced");
    let env = [("TRACE_TOKEN", TOKEN)];
    let d = Daemon::start_logging(
        dir.path(),
        &env,
        "json",
        &["--admin", "off", "--otlp", &otlp],
    );

    until("two attempts and their spans", || {
        let s = spans(&got);
        hook.received().len() == 2 && s.iter().filter(|s| s["name"] == "delivery").count() == 2
    })
    .await;
    let s = spans(&got);
    let poll = s.iter().find(|s| s["name"] == "poll").expect("a poll span");
    assert_eq!(attr(poll, "pollhook.bridge").unwrap(), "traced");
    assert_eq!(attr(poll, "http.request.method").unwrap(), "GET");
    assert_eq!(attr(poll, "http.response.status_code").unwrap(), "200");
    assert_eq!(attr(poll, "pollhook.poll.created").unwrap(), "1");
    let template = attr(poll, "url.template").unwrap();
    assert!(
        template.as_str().unwrap().ends_with("/items?api_key=***"),
        "{template}"
    );

    let deliveries: Vec<&Value> = s.iter().filter(|s| s["name"] == "delivery").collect();
    let received = hook.received();
    for (i, (span, webhook)) in deliveries.iter().zip(&received).enumerate() {
        // 00-<trace id>-<span id>-01: the exported span, sampled.
        let tp: Vec<&str> = webhook.header("traceparent").split('-').collect();
        assert_eq!(tp.len(), 4, "{tp:?}");
        assert_eq!((tp[0], tp[3]), ("00", "01"));
        assert_eq!(span["traceId"], tp[1]);
        assert_eq!(span["spanId"], tp[2]);
        assert_eq!(
            attr(span, "pollhook.event.id").unwrap(),
            webhook.header("webhook-id")
        );
        assert_eq!(attr(span, "pollhook.bridge").unwrap(), "traced");
        assert_eq!(attr(span, "http.request.method").unwrap(), "POST");
        assert_eq!(span["kind"], 3);
        // The headers are not signed: the signature still holds.
        assert!(verify_standard(SECRET, webhook), "attempt {i}");
    }
    assert_eq!(deliveries[0]["traceId"], deliveries[1]["traceId"]);
    assert_ne!(deliveries[0]["spanId"], deliveries[1]["spanId"]);
    assert_eq!(
        attr(deliveries[0], "http.response.status_code").unwrap(),
        "503"
    );
    assert_eq!(deliveries[0]["status"]["code"], 2);
    assert_eq!(attr(deliveries[0], "http.request.resend_count"), None);
    assert_eq!(
        attr(deliveries[1], "http.response.status_code").unwrap(),
        "204"
    );
    assert_eq!(
        attr(deliveries[1], "http.request.resend_count").unwrap(),
        "1"
    );
    assert_eq!(deliveries[1]["status"]["code"], 1);

    // The failed attempt's log line names its trace and span.
    let logs = d.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("delivery failed"))
        .expect("a delivery failed line");
    let line: Value = serde_json::from_str(line).unwrap();
    assert_eq!(line["trace_id"], deliveries[0]["traceId"], "{line}");
    assert_eq!(line["span_id"], deliveries[0]["spanId"], "{line}");

    let (_, out, err) = d.terminate().await;
    let everything = format!(
        "{:?}{}{}",
        got.lock().unwrap(),
        out.join("\n"),
        err.join("\n")
    );
    assert!(!everything.contains(TOKEN), "the token leaked");
}

/// Without `--otlp`, nothing is exported and the webhook's `traceparent` says so (not
/// sampled), still naming the event's trace.
#[tokio::test]
async fn without_otlp_the_traceparent_is_not_sampled() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let hook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::standard(&up.url(), &hook.url())
        .first_poll("emit")
        .write(dir.path(), "plain");
    let d = Daemon::start(dir.path(), &[]);
    until("a webhook", || hook.received().len() == 1).await;
    let w = &hook.received()[0];
    let tp: Vec<&str> = w.header("traceparent").split('-').collect();
    assert_eq!((tp[0], tp[3]), ("00", "00"), "{tp:?}");
    use sha2::Digest;
    let digest = sha2::Sha256::digest(w.header("webhook-id").as_bytes());
    assert_eq!(tp[1], hex::encode(&digest[..16]));
    assert_eq!(tp[2].len(), 16);
    d.terminate().await;
}

#[test]
fn a_bad_endpoint_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = crate::support::pollhook_in(dir.path(), &["run", "--otlp", "collector:4318"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--otlp `collector:4318`"), "{err}");
}
