//! A delivery attempt as a span (docs/operations.md#traces): its bridge, sink (as shown: its
//! origin), event id, method, status and `http.request.resend_count`. Made only when spans
//! are exported; the attempt's ids are made for every attempt, for the `traceparent` header.

use super::step::Answer;
use crate::config::Sink;
use crate::store::OutboxEntry;
use crate::trace::{Ids, Span, Value};
use chrono::{DateTime, Utc};

/// The span of an attempt that went out at `start` and came back (or gave up) at `end`.
pub fn span(
    bridge: &str,
    sink: &Sink,
    entry: &OutboxEntry,
    ids: Ids,
    answer: &Answer,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Span {
    let mut attributes = vec![
        ("pollhook.bridge", Value::Str(bridge.to_string())),
        ("pollhook.sink", Value::Str(sink.shown.clone())),
        ("pollhook.event.id", Value::Str(entry.event_id.clone())),
        (
            "pollhook.event.type",
            Value::Str(entry.kind.as_str().into()),
        ),
        ("http.request.method", Value::Str("POST".into())),
    ];
    // Attempts made before this one: set on resends only, as the conventions ask.
    if entry.attempts > 0 {
        let resends = Value::Int(i64::from(entry.attempts));
        attributes.push(("http.request.resend_count", resends));
    }
    // Kinds of failure only: an error's text may name the sink's URL, which is a secret.
    let error = match answer {
        Answer::Status { code, .. } => {
            attributes.push(("http.response.status_code", Value::Int(i64::from(*code))));
            (!(200..300).contains(code)).then(|| format!("HTTP {code}"))
        }
        Answer::TimedOut(_) => Some("timed out".into()),
        Answer::Unreachable(_) => Some("unreachable".into()),
        Answer::Unrenderable(_) => Some("unrenderable".into()),
        Answer::Printed => None,
        Answer::NotPrinted(_) => Some("not printed".into()),
    };
    Span {
        name: "delivery",
        ids,
        start,
        end,
        attributes,
        error,
    }
}
