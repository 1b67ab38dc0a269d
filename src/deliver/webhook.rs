//! One delivery attempt: the POST of docs/events.md#the-wire-format with its signature headers.

use super::format::Rendered;
use super::step::Answer;
use crate::config::raw::SignatureKind;
use crate::config::{Sink, Target};
use crate::http::{USER_AGENT, error_chain};
use crate::sign;
use crate::store::OutboxEntry;
use crate::trace::Ids;
use chrono::{DateTime, Utc};

/// The headers of one attempt (besides the sink's own), in wire order; signatures cover the
/// body actually sent. `traceparent` names the attempt's span (docs/operations.md#traces),
/// unless the sink sets one of its own.
pub fn headers(
    sink: &Sink,
    e: &OutboxEntry,
    r: &Rendered,
    timestamp: i64,
    ids: Ids,
) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("content-type", r.content_type.clone()),
        ("user-agent", USER_AGENT.to_string()),
        ("webhook-id", e.event_id.clone()),
        ("webhook-timestamp", timestamp.to_string()),
    ];
    match sink.signature {
        SignatureKind::Standard if !sink.secrets.is_empty() => h.push((
            "webhook-signature",
            sign::standard(&sink.secrets, &e.event_id, timestamp, r.body.as_bytes()),
        )),
        SignatureKind::Github if !sink.secrets.is_empty() => h.push((
            "x-hub-signature-256",
            sign::github(&sink.secrets[0], r.body.as_bytes()),
        )),
        _ => {}
    }
    if !sink.headers().iter().any(|(k, _)| k == "traceparent") {
        h.push(("traceparent", ids.traceparent()));
    }
    h.push(("x-pollhook-event", e.kind.as_str().to_string()));
    if let Some(title) = &r.title {
        h.push(("title", title.clone()));
    }
    h
}

/// POSTs one event (or batch), rendered, to an HTTP sink: the receiver's answer, or why
/// there was none (what to do next is [`super::step::next`]'s to say).
pub async fn send(
    client: &reqwest::Client,
    sink: &Sink,
    e: &OutboxEntry,
    r: &Rendered,
    ids: Ids,
    now: DateTime<Utc>,
) -> Answer {
    match post(client, sink, e, r, ids, now).await {
        Ok(resp) => Answer::Status {
            code: resp.status().as_u16(),
            retry_after: resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        },
        Err(err) if err.is_timeout() => Answer::TimedOut(sink.timeout),
        Err(err) => Answer::Unreachable(error_chain(err)),
    }
}

/// The request itself, with the sink's headers and ours; its answer as it came.
pub async fn post(
    client: &reqwest::Client,
    sink: &Sink,
    e: &OutboxEntry,
    r: &Rendered,
    ids: Ids,
    now: DateTime<Utc>,
) -> Result<reqwest::Response, reqwest::Error> {
    let mut req = match &sink.target {
        Target::Http(url) => client.post(url.clone()).timeout(sink.timeout),
        // Never called for the console; a request to nowhere fails cleanly.
        Target::Console => client.post("http://0.0.0.0:0/").timeout(sink.timeout),
    };
    for (k, v) in sink.headers() {
        req = req.header(k, v);
    }
    for (k, v) in headers(sink, e, r, now.timestamp(), ids) {
        req = req.header(k, v);
    }
    req.body(r.body.clone()).send().await
}
