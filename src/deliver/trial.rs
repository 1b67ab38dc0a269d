//! Trying sinks without the queue (docs/configuration.md#trying-a-sink): `poll --render` shows the
//! requests a poll's events would make, sink by sink, sending nothing; `send-test` sends one
//! `bridge.test` event (seq 0, never stored) to each sink now and reports each answer.

use super::format::{self, Rendered};
use super::stored::Stored;
use super::webhook;
use crate::config::{Bridge, Sink, Target};
use crate::event::Event;
use crate::store::OutboxEntry;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One request a sink would get, or why it would get none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    /// The sink, by origin only.
    pub sink: String,
    /// The event ids it carries (several for a digest).
    pub events: Vec<String>,
    /// Wire order; values of secret headers (the sink's own) shown as `***`.
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    /// Why nothing would be sent (filtered, a render error).
    pub skipped: Option<String>,
}

/// One sink's answer to a test event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub sink: String,
    /// The HTTP status; None when no answer came (or a console sink).
    pub status: Option<u16>,
    /// Why it failed: a non-2xx, a connection error, a render error.
    pub error: Option<String>,
    pub ok: bool,
}

/// The outbox entry an event would have.
fn entry_of(e: &Event, now: DateTime<Utc>) -> OutboxEntry {
    OutboxEntry {
        event_id: e.id.clone(),
        kind: e.kind,
        seq: e.seq,
        body: e.body(),
        attempts: 0,
        next_at_ms: 0,
        last_error: None,
        created_ms: crate::clock::to_ms(now),
        sent: None,
    }
}

/// The requests `events` would make to each sink of `bridge`, in order; digests formed as a
/// batching sink would form them with every event waiting.
pub fn plan(bridge: &Bridge, events: &[Event], now: DateTime<Utc>) -> Vec<Planned> {
    let entries: Vec<OutboxEntry> = events.iter().map(|e| entry_of(e, now)).collect();
    let mut out = Vec::new();
    for sink in &bridge.sinks {
        let mut wanted = Vec::new();
        for e in &entries {
            if format::wanted(&bridge.name, sink, &Stored::new(e)) {
                wanted.push(e.clone());
            } else {
                out.push(Planned {
                    sink: sink.shown.clone(),
                    events: vec![e.event_id.clone()],
                    headers: vec![],
                    body: None,
                    skipped: Some("not for this sink (its `events` or `when`)".into()),
                });
            }
        }
        let sent: Vec<OutboxEntry> = match sink.batch() {
            Some(b) => wanted
                .chunks(b.max)
                .map(|c| super::batch::compose(&bridge.name, c))
                .collect(),
            None => wanted,
        };
        for e in &sent {
            out.push(request(bridge, sink, e, now));
        }
    }
    out
}

fn members(e: &OutboxEntry) -> Vec<String> {
    if !format::is_batch(e) {
        return vec![e.event_id.clone()];
    }
    let v: serde_json::Value = serde_json::from_str(&e.body).unwrap_or_default();
    v["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn request(bridge: &Bridge, sink: &Sink, e: &OutboxEntry, now: DateTime<Utc>) -> Planned {
    let mut p = Planned {
        sink: sink.shown.clone(),
        events: members(e),
        headers: vec![],
        body: None,
        skipped: None,
    };
    if sink.target == Target::Console {
        p.body = Some(e.body.clone());
        return p;
    }
    match format::render(&bridge.name, sink, &Stored::new(e)) {
        Ok(r) => {
            let redactor = crate::redact::Redactor::new(&bridge.secrets);
            p.headers = wire_headers(&redactor, sink, e, &r, now);
            p.body = Some(r.body);
        }
        Err(why) => p.skipped = Some(format!("cannot render the body: {why}")),
    }
    p
}

/// The headers in wire order. A sink header's value is masked when its name says it is a
/// credential or when it holds any value that came from `${…}` (`x-custom: ${TOKEN}`).
fn wire_headers(
    redactor: &crate::redact::Redactor,
    sink: &Sink,
    e: &OutboxEntry,
    r: &Rendered,
    now: DateTime<Utc>,
) -> Vec<(String, String)> {
    let own = sink.headers().iter().map(|(k, v)| {
        let v = if v.is_sensitive() {
            "***".to_string()
        } else {
            redactor.clean(&String::from_utf8_lossy(v.as_bytes()))
        };
        (k.to_string(), v)
    });
    own.chain(
        webhook::headers(
            sink,
            e,
            r,
            now.timestamp(),
            crate::trace::Ids::for_event(&e.event_id),
        )
        .into_iter()
        .map(|(k, v)| (k.to_string(), v)),
    )
    .collect()
}

/// The `bridge.test` event: seq 0, an id of its own for each call (the time in ms).
pub fn test_event(bridge: &Bridge, now: DateTime<Utc>) -> Event {
    Event {
        id: format!("evt_test_{}", crate::clock::to_ms(now)),
        kind: crate::event::EventType::Test,
        bridge: bridge.name.clone(),
        key: "test".into(),
        seq: 0,
        timestamp: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        data: Some(crate::event::Json::from_value(&serde_json::json!({
            "message": "a test event from pollhook send-test",
            "description": bridge.description,
        }))),
        previous: None,
        changes: None,
    }
}

/// Sends the test event to each sink (or only the one whose URL is `only`) now.
pub async fn send_test(
    client: &reqwest::Client,
    bridge: &Bridge,
    only: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<Answer>, String> {
    let sinks: Vec<&Sink> = bridge
        .sinks
        .iter()
        .map(|s| &**s)
        .filter(|s| only.is_none_or(|u| same_url(&s.target, u)))
        .collect();
    if sinks.is_empty() {
        return Err(format!("bridge {} has no sink with that URL", bridge.name));
    }
    let e = entry_of(&test_event(bridge, now), now);
    let mut out = Vec::new();
    for sink in sinks {
        out.push(answer(client, &bridge.name, sink, &e, now).await);
    }
    Ok(out)
}

fn same_url(t: &Target, u: &str) -> bool {
    match t {
        Target::Console => u == "console",
        Target::Http(url) => url::Url::parse(u).is_ok_and(|u| &u == url),
    }
}

async fn answer(
    client: &reqwest::Client,
    bridge: &str,
    sink: &Sink,
    e: &OutboxEntry,
    now: DateTime<Utc>,
) -> Answer {
    let mut a = Answer {
        sink: sink.shown.clone(),
        status: None,
        error: None,
        ok: false,
    };
    if sink.target == Target::Console {
        println!("{}", e.body);
        a.ok = true;
        return a;
    }
    let r = match format::render(bridge, sink, &Stored::new(e)) {
        Ok(r) => r,
        Err(why) => {
            a.error = Some(format!("cannot render the body: {why}"));
            return a;
        }
    };
    let ids = crate::trace::Ids::for_event(&e.event_id);
    match webhook::post(client, sink, e, &r, ids, now).await {
        Ok(resp) => {
            let status = resp.status();
            a.status = Some(status.as_u16());
            a.ok = status.is_success();
            if !a.ok {
                a.error = Some(format!("HTTP {}", status.as_u16()));
            }
        }
        Err(err) => a.error = Some(crate::http::error_chain(err)),
    }
    a
}
