//! A poll as a span (docs/operations.md#traces): its bridge, the source's URL with every
//! secret as `***`, the method, the status it ended with and what it found. Made only when
//! spans are exported.

use super::PollError;
use super::PollReport;
use super::fetch::FetchError;
use crate::config::Bridge;
use crate::redact::Redactor;
use crate::trace::{Ids, Span, Value};
use chrono::{DateTime, Utc};

/// The span of one poll that started at `start` and ended at `end`.
pub fn span(
    bridge: &Bridge,
    redactor: &Redactor,
    result: &Result<PollReport, PollError>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Span {
    let method = format!("{:?}", bridge.source.method).to_uppercase();
    let mut attributes = vec![
        ("pollhook.bridge", Value::Str(bridge.name.clone())),
        ("url.template", Value::Str(redactor.url(&bridge.source.url))),
        ("http.request.method", Value::Str(method)),
    ];
    let status = match result {
        Ok(r) if r.not_modified => Some(304),
        Ok(_) => Some(200),
        Err(PollError::Fetch(FetchError::Status { status, .. }))
        | Err(PollError::Fetch(FetchError::RateLimited { status, .. })) => Some(*status),
        Err(_) => None,
    };
    if let Some(s) = status {
        attributes.push(("http.response.status_code", Value::Int(i64::from(s))));
    }
    if let Ok(r) = result {
        for (k, n) in [
            ("pollhook.poll.pages", r.pages),
            ("pollhook.poll.items", r.items),
            ("pollhook.poll.created", r.created),
            ("pollhook.poll.updated", r.updated),
            ("pollhook.poll.deleted", r.deleted),
        ] {
            attributes.push((k, Value::Int(i64::try_from(n).unwrap_or(i64::MAX))));
        }
    }
    Span {
        name: "poll",
        ids: Ids::root(),
        start,
        end,
        attributes,
        // The reason word, not the message: a message may quote what a source sent.
        error: result.as_ref().err().map(|e| e.kind().to_string()),
    }
}
