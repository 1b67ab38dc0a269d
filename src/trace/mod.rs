//! Traces (docs/operations.md#traces): each poll and each delivery attempt is a span, and a
//! webhook carries a W3C `traceparent` naming its attempt's span. With `--otlp ENDPOINT` the
//! spans are exported over OTLP/HTTP (`otlp`); without, [`record`] is one atomic load and
//! nothing is kept.
//!
//! A delivery's trace id is derived from its event id (the first 16 bytes of its SHA-256), so
//! every attempt of one event, across retries and restarts, is one trace, and a receiver can
//! find it from the `webhook-id` alone. Span ids are random. A poll is a trace of its own.
//!
//! - `otlp`: the OTLP/HTTP JSON encoding and the exporter task that posts batches of spans

pub mod otlp;

use chrono::{DateTime, Utc};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use tokio::sync::mpsc;

/// Where finished spans go when exporting: the exporter task's queue.
static EXPORT: OnceLock<mpsc::Sender<Span>> = OnceLock::new();

/// How many finished spans may wait for the exporter; beyond, new ones are dropped (a slow
/// collector must not hold up polls and deliveries, nor grow memory).
pub const QUEUE: usize = 8192;

/// Ids of one span: its trace and itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub trace: [u8; 16],
    pub span: [u8; 8],
}

impl Ids {
    /// An attempt to deliver `event_id`: the event's trace, a new span.
    pub fn for_event(event_id: &str) -> Ids {
        let digest = Sha256::digest(event_id.as_bytes());
        let mut trace = [0u8; 16];
        trace.copy_from_slice(&digest[..16]);
        if trace == [0; 16] {
            // All zeros is "no trace" in W3C Trace Context; a digest that is so is not one.
            trace[15] = 1;
        }
        Ids {
            trace,
            span: span_id(),
        }
    }

    /// A trace of its own (a poll).
    pub fn root() -> Ids {
        let mut trace = [0u8; 16];
        rand::rng().fill(&mut trace);
        trace[0] |= 1;
        Ids {
            trace,
            span: span_id(),
        }
    }

    /// The W3C `traceparent` header: version 00, the ids, and the sampled flag when spans are
    /// exported (the receiver's spans may then join the trace pollhook records).
    pub fn traceparent(&self) -> String {
        let flags = if exporting() { "01" } else { "00" };
        format!(
            "00-{}-{}-{flags}",
            hex::encode(self.trace),
            hex::encode(self.span)
        )
    }
}

/// A random span id, never all zeros.
fn span_id() -> [u8; 8] {
    let mut span = [0u8; 8];
    rand::rng().fill(&mut span);
    span[7] |= 1;
    span
}

/// An attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
}

/// A finished span, as exported.
#[derive(Debug, Clone)]
pub struct Span {
    /// `poll` or `delivery`.
    pub name: &'static str,
    pub ids: Ids,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The OpenTelemetry semantic conventions' names where there is one (`http.request.method`,
    /// `http.response.status_code`, `http.request.resend_count`), `pollhook.*` for ours.
    /// Never a secret: URLs as shown, with each secret as `***`.
    pub attributes: Vec<(&'static str, Value)>,
    /// The error the span ended with, if any (the span's status is then ERROR).
    pub error: Option<String>,
}

/// Whether spans are exported (`--otlp`).
pub fn exporting() -> bool {
    EXPORT.get().is_some()
}

/// Hands a finished span to the exporter, if there is one; made only when there is
/// (`make` is not called otherwise).
pub fn record(make: impl FnOnce() -> Span) {
    if let Some(queue) = EXPORT.get() {
        // A full queue drops the span: tracing never holds up the work it describes.
        let _ = queue.try_send(make());
    }
}

/// Starts recording spans into a queue; its receiving end, for the exporter. Once per
/// process: a second call gives None.
pub fn install() -> Option<mpsc::Receiver<Span>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    EXPORT.set(tx).ok().map(|()| rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_events_attempts_share_its_trace() {
        let a = Ids::for_event("evt_01");
        let b = Ids::for_event("evt_01");
        assert_eq!(a.trace, b.trace);
        assert_ne!(a.span, b.span);
        assert_ne!(a.trace, Ids::for_event("evt_02").trace);
        let digest = Sha256::digest(b"evt_01");
        assert_eq!(a.trace[..], digest[..16]);
    }

    #[test]
    fn a_traceparent_is_w3c() {
        let ids = Ids {
            trace: [0xab; 16],
            span: [0x01; 8],
        };
        let tp = ids.traceparent();
        assert_eq!(tp, format!("00-{}-0101010101010101-00", "ab".repeat(16)));
        let root = Ids::root();
        assert_ne!(root.trace, [0; 16]);
        assert_ne!(root.span, [0; 8]);
    }
}
