//! Spans exported over OTLP/HTTP with the JSON encoding (`POST ENDPOINT/v1/traces`,
//! `application/json`, an `ExportTraceServiceRequest`), on the reqwest client pollhook has
//! anyway: no second HTTP stack, no gRPC. Batches of up to [`BATCH`] spans, each posted once:
//! a collector that is down loses them (a WARN says so, at most once a minute), and the
//! polls and deliveries go on.

use super::{Span, Value};
use serde_json::{Value as Json, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use url::Url;

/// Spans per request, at most.
pub const BATCH: usize = 512;

/// Where spans are posted: `ENDPOINT/v1/traces` for an endpoint without a path (as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is read), the URL itself when it has one (as
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is).
pub fn traces_url(endpoint: &str) -> Result<Url, String> {
    let mut url = Url::parse(endpoint)
        .map_err(|e| format!("--otlp `{endpoint}` is not a URL like http://127.0.0.1:4318: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("--otlp `{endpoint}` is not an http or https URL"));
    }
    if url.path() == "/" {
        url.set_path("/v1/traces");
    }
    Ok(url)
}

/// The OTLP JSON request for `spans`.
pub fn encode(spans: &[Span]) -> Json {
    let spans: Vec<Json> = spans.iter().map(span).collect();
    json!({"resourceSpans": [{
        "resource": {"attributes": [
            attribute("service.name", &Value::Str("pollhook".into())),
            attribute("service.version", &Value::Str(env!("CARGO_PKG_VERSION").into())),
        ]},
        "scopeSpans": [{
            "scope": {"name": "pollhook", "version": env!("CARGO_PKG_VERSION")},
            "spans": spans,
        }],
    }]})
}

fn span(s: &Span) -> Json {
    let nanos = |t: chrono::DateTime<chrono::Utc>| {
        t.timestamp_nanos_opt()
            .unwrap_or_default()
            .max(0)
            .to_string()
    };
    // Status codes: 1 OK, 2 ERROR.
    let status = match &s.error {
        None => json!({"code": 1}),
        Some(message) => json!({"code": 2, "message": message}),
    };
    json!({
        "traceId": hex::encode(s.ids.trace),
        "spanId": hex::encode(s.ids.span),
        "name": s.name,
        // SPAN_KIND_CLIENT: a poll and a delivery are both requests pollhook makes.
        "kind": 3,
        "startTimeUnixNano": nanos(s.start),
        "endTimeUnixNano": nanos(s.end),
        "attributes": s.attributes.iter().map(|(k, v)| attribute(k, v)).collect::<Vec<_>>(),
        "status": status,
    })
}

fn attribute(key: &str, value: &Value) -> Json {
    // int64 values are strings in OTLP's JSON (the protobuf JSON mapping).
    let value = match value {
        Value::Str(s) => json!({"stringValue": s}),
        Value::Int(i) => json!({"intValue": i.to_string()}),
    };
    json!({"key": key, "value": value})
}

/// Posts the spans `queue` receives to `url` in batches, until `stop`; then posts what is
/// left and ends.
pub async fn export(
    mut queue: mpsc::Receiver<Span>,
    url: Url,
    client: reqwest::Client,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let got = tokio::select! {
            n = queue.recv_many(&mut batch, BATCH) => n,
            () = stop.cancelled() => {
                while batch.len() < BATCH * 4 {
                    match queue.try_recv() {
                        Ok(s) => batch.push(s),
                        Err(_) => break,
                    }
                }
                for chunk in batch.chunks(BATCH) {
                    post(&client, &url, chunk).await;
                }
                return;
            }
        };
        if got == 0 {
            return;
        }
        post(&client, &url, &batch).await;
        batch.clear();
    }
}

async fn post(client: &reqwest::Client, url: &Url, spans: &[Span]) {
    if spans.is_empty() {
        return;
    }
    let sent = client
        .post(url.clone())
        .timeout(std::time::Duration::from_secs(10))
        .json(&encode(spans))
        .send()
        .await;
    let failed = match sent {
        Ok(r) if r.status().is_success() => return,
        Ok(r) => format!("answered HTTP {}", r.status().as_u16()),
        Err(e) => crate::http::error_chain(e),
    };
    tracing::warn!(
        spans = spans.len(),
        "could not export spans to {}: {failed}; they are dropped",
        crate::redact::origin(url)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::Ids;

    #[test]
    fn the_endpoint_gets_the_traces_path() {
        let u = traces_url("http://127.0.0.1:4318").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:4318/v1/traces");
        let u = traces_url("https://otel.example/custom/traces").unwrap();
        assert_eq!(u.as_str(), "https://otel.example/custom/traces");
        assert!(traces_url("otel:4318").is_err());
        assert!(traces_url("not a url").is_err());
    }

    #[test]
    fn spans_are_otlp_json() {
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 5).unwrap();
        let s = Span {
            name: "delivery",
            ids: Ids {
                trace: [1; 16],
                span: [2; 8],
            },
            start: t,
            end: t,
            attributes: vec![
                ("http.response.status_code", Value::Int(503)),
                ("pollhook.bridge", Value::Str("b".into())),
            ],
            error: Some("HTTP 503".into()),
        };
        let j = encode(&[s]);
        let span = &j["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
        assert_eq!(span["traceId"], "01".repeat(16));
        assert_eq!(span["spanId"], "02".repeat(8));
        assert_eq!(span["startTimeUnixNano"], "1700000000000000005");
        assert_eq!(span["attributes"][0]["value"]["intValue"], "503");
        assert_eq!(span["attributes"][1]["value"]["stringValue"], "b");
        assert_eq!(span["status"]["code"], 2);
        let service = &j["resourceSpans"][0]["resource"]["attributes"][0];
        assert_eq!(service["value"]["stringValue"], "pollhook");
    }
}
