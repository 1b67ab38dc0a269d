//! Draining the outbox: one task per bridge and sink, strictly in detection order, each event
//! retried on the sink's schedule until a 2xx acknowledges it or it goes to the dead letters.
//!
//! An attempt ([`try_deliver_next`]) is one step you can call: read the head of the queue
//! (forming a digest where the sink batches: `batch`, its windows in `window`), parse its body
//! once (`stored`) for the sink's rule and its rendering (`format`), make the one effect
//! (`console` prints, `webhook` POSTs), let the pure `step` decide from what came of it
//! (acknowledge, retry at a time, dead-letter; `retry` classifies and schedules), and write
//! that to the store. The clock is read by the caller, once per attempt.

pub mod batch;
pub mod console;
pub mod format;
pub mod retry;
pub mod step;
pub mod stored;
pub mod traced;
pub mod trial;
pub mod webhook;
pub mod window;

use crate::clock::{from_ms, ms, to_ms};
use crate::config::raw::SinkFormat;
use crate::config::{Bridge, Sink, Target};
use crate::runtime::{Ctx, StoreHandle};
use crate::store::{DeadLetter, OutboxEntry, Rendered, Store, StoreError};
use chrono::{DateTime, Utc};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use step::{Answer, Decision};
use stored::Stored;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};
use window::Windows;

/// What one step of a queue did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The queue is empty.
    Empty,
    /// The head waits for its next attempt until then.
    NotDue(DateTime<Utc>),
    Delivered {
        event_id: String,
    },
    Retrying {
        event_id: String,
        next_at: DateTime<Utc>,
    },
    DeadLettered {
        event_id: String,
    },
    /// The sink's `events` or `when` turned the event away: acknowledged unsent.
    Filtered {
        event_id: String,
    },
}

/// Looks at the head of one bridge+sink queue and, if it is due, makes one attempt.
///
/// Nothing is sent unless the store takes writes and the entry is on disk: an event sent
/// before its commit is durable could be lost with the commit and its `seq` handed out again,
/// and an acknowledgement that cannot be stored would make it re-send the event in a loop. A
/// store error marks the store failed (`StoreHandle::check`), and the queue waits for it to
/// recover.
pub async fn try_deliver_next(
    ctx: &Ctx,
    windows: &Windows,
    bridge: &str,
    sink: &Sink,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    deliver_next(
        (&ctx.store, &ctx.clients.sender),
        windows,
        bridge,
        sink,
        now,
    )
    .await
}

/// [`try_deliver_next`], with the handles it takes: the store, and the webhook client.
pub async fn deliver_next(
    (st, sender): (&StoreHandle, &reqwest::Client),
    windows: &Windows,
    bridge: &str,
    sink: &Sink,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let raw = match &sink.target {
        Target::Http(u) => u.as_str(),
        Target::Console => "console",
    };
    crate::fault::inject("deliver-panic", bridge, raw);
    let store = st.writable()?;
    let r = attempt(sender, windows, &store, bridge, sink, now).await;
    st.check(r)
}

/// One attempt: the head of the queue, its body parsed once for the sink's rule and its
/// rendering, the one effect (print or POST), the decision on what came of it, written.
async fn attempt(
    sender: &reqwest::Client,
    windows: &Windows,
    store: &Store,
    bridge: &str,
    sink: &Sink,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let (key, mut entry) = match head(windows, store, bridge, sink, now).await? {
        Head::Due(key, entry) => (key, entry),
        Head::Settled(outcome) => return Ok(outcome),
    };
    let ids = crate::trace::Ids::for_event(&entry.event_id);
    let (answer, sent) = {
        let stored = Stored::new(&entry);
        if !format::wanted(bridge, sink, &stored) {
            return filtered(store, bridge, &key, entry);
        }
        speak(sender, bridge, sink, &stored, ids, now).await
    };
    entry.attempts += 1;
    if sent.is_some() {
        entry.sent = sent;
    }
    let jitter = rand::rng().random_range(-1.0..=1.0);
    let decision = step::next(entry.attempts, answer, &sink.retry, now, jitter);
    // The attempt's lines name its event, and its trace and span, to find it among exported
    // spans (in that order, after the bridge and the sink).
    let _attempt = tracing::error_span!(
        "attempt",
        event_id = %entry.event_id,
        trace_id = %hex::encode(ids.trace),
        span_id = %hex::encode(ids.span)
    )
    .entered();
    apply(store, bridge, sink, &key, entry, decision, now)
}

/// What the head of a queue calls for in this step.
enum Head {
    /// This entry (an event, or a digest) is due: it is attempted now.
    Due(Vec<u8>, OutboxEntry),
    /// Nothing is attempted now: the queue is empty, its head waits for its next attempt, a
    /// digest waits for its window, or what the sink's rules turned away was acknowledged.
    Settled(Outcome),
}

/// The head of one queue, if it is due: on disk first, and where the sink batches, the
/// digest formed from it when it is time (docs/configuration.md#digests).
async fn head(
    windows: &Windows,
    store: &Store,
    bridge: &str,
    sink: &Sink,
    now: DateTime<Utc>,
) -> Result<Head, StoreError> {
    let Some((key, entry)) = store.outbox_head(bridge, &sink.id)? else {
        return Ok(Head::Settled(Outcome::Empty));
    };
    // The store keeps times as Unix milliseconds.
    let next_at = from_ms(entry.next_at_ms).unwrap_or_default();
    if next_at > now {
        return Ok(Head::Settled(Outcome::NotDue(next_at)));
    }
    // Usually a no-op: commits with events are flushed before their deliverers are woken.
    store.flush_for(bridge).await?;
    let Some(b) = sink.batch().filter(|_| !format::is_batch(&entry)) else {
        return Ok(Head::Due(key, entry));
    };
    if let Some(o) = batch::form(windows, store, bridge, sink, b, now)? {
        return Ok(Head::Settled(o));
    }
    Ok(match store.outbox_head(bridge, &sink.id)? {
        Some((key, digest)) => Head::Due(key, digest),
        None => Head::Settled(Outcome::Empty),
    })
}

/// The attempt's one effect: the console prints the event; an HTTP sink gets the body
/// rendered (at the first attempt: a retry sends what that one did) and POSTed. What came
/// of it, and the body to keep for retries (an event sink's is the entry's own).
async fn speak(
    client: &reqwest::Client,
    bridge: &str,
    sink: &Sink,
    entry: &Stored<'_>,
    ids: crate::trace::Ids,
    now: DateTime<Utc>,
) -> (Answer, Option<Rendered>) {
    if sink.target == Target::Console {
        return (console::print_stdout(&entry.body), None);
    }
    let rendered = match &entry.sent {
        Some(r) => r.clone(),
        None => match format::render(bridge, sink, entry) {
            Ok(r) => r,
            Err(why) => return (Answer::Unrenderable(why), None),
        },
    };
    let started = tokio::time::Instant::now();
    let answer = webhook::send(client, sink, entry, &rendered, ids, now).await;
    crate::trace::record(|| {
        let end = now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
        traced::span(bridge, sink, entry, ids, &answer, now, end)
    });
    let keep = (sink.format != SinkFormat::Event).then_some(rendered);
    (answer, keep)
}

/// The sink's `events` or `when` turned the head away: acknowledged unsent.
fn filtered(
    store: &Store,
    bridge: &str,
    key: &[u8],
    entry: OutboxEntry,
) -> Result<Outcome, StoreError> {
    store.ack(key)?;
    crate::metrics::delivery(bridge, "filtered");
    Ok(Outcome::Filtered {
        event_id: entry.event_id,
    })
}

/// Writes the decision: the entry leaves the queue, waits for its next attempt with what
/// went wrong, or goes to the dead letters. Called in the attempt's span, which gives its
/// lines their `event_id`.
fn apply(
    store: &Store,
    bridge: &str,
    sink: &Sink,
    key: &[u8],
    mut entry: OutboxEntry,
    decision: Decision,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let event_id = entry.event_id.clone();
    match decision {
        Decision::Ack => {
            store.ack(key)?;
            crate::metrics::delivery(bridge, "delivered");
            let created = from_ms(entry.created_ms).unwrap_or_default();
            crate::metrics::delivery_latency((now - created).to_std().unwrap_or_default());
            Ok(Outcome::Delivered { event_id })
        }
        Decision::Retry { at, wait, reason } => {
            let retry_in = humantime::format_duration(Duration::from_millis(ms(wait)));
            warn!(
                attempt = entry.attempts,
                retry_in_ms = ms(wait),
                "delivery failed: {bridge} event {event_id} to {} (attempt {}, retry in \
                 {retry_in}): {reason}",
                sink.shown,
                entry.attempts
            );
            entry.next_at_ms = to_ms(at);
            entry.last_error = Some(reason);
            store.reschedule(key, &entry)?;
            crate::metrics::delivery(bridge, "retry");
            Ok(Outcome::Retrying {
                event_id,
                next_at: at,
            })
        }
        Decision::Dead { reason } => dead_letter(store, bridge, sink, key, entry, reason, now),
    }
}

fn dead_letter(
    store: &Store,
    bridge: &str,
    sink: &Sink,
    key: &[u8],
    mut entry: OutboxEntry,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    error!(
        attempts = entry.attempts,
        "event dead-lettered: {bridge} event {} to {} after {}: {reason}",
        entry.event_id,
        sink.shown,
        crate::logging::count(entry.attempts as usize, "attempt", "attempts")
    );
    entry.last_error = Some(reason);
    let event_id = entry.event_id.clone();
    crate::metrics::delivery(bridge, "dead_letter");
    store.dead_letter(
        key,
        &DeadLetter {
            bridge: bridge.to_string(),
            sink: sink.id.to_string(),
            entry,
            dead_at_ms: to_ms(now),
        },
    )?;
    Ok(Outcome::DeadLettered { event_id })
}

/// Drains one bridge+sink queue until `cancel`: delivers what is due, sleeps until the next
/// attempt is, wakes on new commits. Its lines carry `bridge` and `sink` (as shown: a sink's
/// URL may be a secret) from its span.
#[tracing::instrument(name = "sink", level = "error", skip_all, fields(bridge = %bridge.name, sink = %bridge.sinks[sink].shown))]
pub async fn run_sink(
    ctx: Arc<Ctx>,
    windows: Arc<Windows>,
    bridge: Arc<Bridge>,
    sink: usize,
    cancel: CancellationToken,
) {
    let sink = &bridge.sinks[sink];
    let (store, clock) = (&ctx.store, &ctx.clock);
    let handles = (store, &ctx.clients.sender);
    let mut wake = ctx.wakers.subscribe(&bridge.name);
    // A step that takes far longer than its time-out is stuck (see `runtime::Beats`).
    let limit = sink.timeout + Duration::from_secs(60);
    loop {
        if store.failure().is_some() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = store.recovered() => {}
            }
        }
        wake.borrow_and_update();
        let outcome = {
            let _step = ctx.beats.step("a delivery", limit);
            // Boxed: an attempt's future (render, send, digest) is large, and inline it would
            // make every deliverer's idle task that large.
            let next = deliver_next(handles, &windows, &bridge.name, sink, clock.now());
            Box::pin(next).await
        };
        let wait = match outcome {
            Ok(Outcome::Empty) => None,
            Ok(Outcome::NotDue(at)) => Some((at - clock.now()).to_std().unwrap_or_default()),
            Ok(_) => {
                if cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            // The store does not take writes: logged once where it was found; wait for it.
            Err(e) if e.is_failure() && store.failure().is_some() => continue,
            Err(e) => {
                error!("outbox of {} to {}: {e}", bridge.name, sink.shown);
                Some(Duration::from_secs(5))
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = wake.changed() => {}
            _ = async {
                match wait {
                    Some(w) => tokio::time::sleep(w).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::testkit::without_time_passing;
    use std::sync::Mutex;

    /// A source with one item, and a receiver that answers 500 once, then 200, noting when
    /// each attempt came by `clock`. Their URLs.
    async fn servers(clock: Clock, hits: Arc<Mutex<Vec<DateTime<Utc>>>>) -> (String, String) {
        use axum::routing::{get, post};
        let app = axum::Router::new()
            .route(
                "/items",
                get(|| async { axum::Json(serde_json::json!([{"id": 1}])) }),
            )
            .route(
                "/hook",
                post(move || async move {
                    let mut hits = hits.lock().unwrap();
                    hits.push(clock.now());
                    match hits.len() {
                        1 => axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        _ => axum::http::StatusCode::NO_CONTENT,
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("{at}/items"), format!("{at}/hook"))
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_delivery_is_tried_again_when_the_clock_reaches_its_retry_time() {
        let t0 = DateTime::parse_from_rfc3339("2031-05-04T10:20:30Z")
            .unwrap()
            .to_utc();
        let clock = Clock::following_tokio(t0);
        let hits = Arc::new(Mutex::new(Vec::new()));
        let (source, hook) = servers(clock.clone(), hits.clone()).await;
        let yaml = format!(
            "schedule: {{every: 1h}}\nsource: {{url: \"{source}\"}}\nitems: {{select: \"$[*]\", key: \"$.id\"}}\nemit: {{first_poll: emit}}\nsinks:\n  - url: {hook}\n    signature: none\n    retry: [30s]\n"
        );
        let env = crate::config::Env::fixed(&[], None);
        let bridge = crate::config::parse_file(std::path::Path::new("r.yaml"), &yaml, &env);
        let bridge = Arc::new(bridge.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let ctx = Arc::new(Ctx::with_clock(store.clone(), clock.clone()));
        let polled = crate::poll::poll_once(&ctx, &bridge, true, clock.now()).await;
        assert_eq!(polled.unwrap().emitted.total(), 1);
        let cancel = CancellationToken::new();
        let windows = Arc::new(Windows::default());
        let sink = run_sink(ctx.clone(), windows, bridge.clone(), 0, cancel.clone());
        let task = tokio::spawn(sink);
        // The first attempt, at once, fails: the event waits for 30 s ± 10% on the clock.
        let head = || store.outbox_head("r", &bridge.sinks[0].id).unwrap();
        without_time_passing("the retry", || head().is_some_and(|(_, e)| e.attempts == 1)).await;
        assert_eq!(*hits.lock().unwrap(), [t0]);
        let retry_at = from_ms(head().unwrap().1.next_at_ms).unwrap();
        let wait = (retry_at - t0).to_std().unwrap();
        assert!((27..=33).contains(&wait.as_secs()), "{wait:?}");
        // A millisecond before it, nothing more; at it, the second attempt, acknowledged.
        tokio::time::sleep(wait - Duration::from_millis(1)).await;
        assert_eq!(hits.lock().unwrap().len(), 1);
        tokio::time::sleep(Duration::from_millis(1)).await;
        without_time_passing("the second attempt", || head().is_none()).await;
        assert_eq!(*hits.lock().unwrap(), [t0, retry_at]);
        cancel.cancel();
        task.await.unwrap();
    }
}
