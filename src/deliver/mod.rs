//! Draining the outbox: one task per bridge and sink, strictly in detection order, each event
//! retried on the sink's schedule until a 2xx acknowledges it or it goes to the dead letters.

pub mod batch;
pub mod format;
pub mod retry;
pub mod trial;
pub mod webhook;

use crate::config::raw::SinkFormat;
use crate::config::{Bridge, Sink, Target};
use crate::runtime::Ctx;
use crate::store::{DeadLetter, StoreError};
use chrono::{DateTime, SubsecRound, Utc};
use rand::Rng;
use retry::RetryAction;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

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
/// store error marks the store failed (`Ctx::check`), and the queue waits for it to recover.
pub async fn try_deliver_next(
    ctx: &Ctx,
    bridge: &str,
    sink: &Sink,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let raw = match &sink.target {
        Target::Http(u) => u.as_str(),
        Target::Console => "console",
    };
    crate::fault::inject("deliver-panic", bridge, raw);
    let store = ctx.writable_store()?;
    let r = attempt(ctx, &store, bridge, sink, now).await;
    ctx.check(r)
}

async fn attempt(
    ctx: &Ctx,
    store: &crate::store::Store,
    bridge: &str,
    sink: &Sink,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    let Some((key, entry)) = store.outbox_head(bridge, &sink.id)? else {
        return Ok(Outcome::Empty);
    };
    // The store keeps times as Unix milliseconds.
    let next_at = DateTime::from_timestamp_millis(entry.next_at_ms).unwrap_or_default();
    if next_at > now {
        return Ok(Outcome::NotDue(next_at));
    }
    // Usually a no-op: commits with events are flushed before their deliverers are woken.
    store.flush_for(bridge).await?;
    let (key, mut entry) = match speak_to(ctx, store, bridge, sink, now, key, entry)? {
        Ok(head) => head,
        Err(outcome) => return Ok(outcome),
    };
    let action = match &sink.target {
        Target::Console => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{}", entry.body).and_then(|_| out.flush()) {
                Ok(()) => RetryAction::Successful,
                Err(e) => RetryAction::Retry {
                    reason: format!("cannot write to stdout: {e}"),
                    after: None,
                },
            }
        }
        Target::Http(_) => match entry
            .sent
            .clone()
            .map_or_else(|| format::render(bridge, sink, &entry), Ok)
        {
            Ok(r) => {
                let action = webhook::send(&ctx.sender, sink, &entry, &r, now).await;
                // Retries send these bytes again (an event sink's are the entry's own body).
                if sink.format != SinkFormat::Event {
                    entry.sent = Some(r);
                }
                action
            }
            Err(e) => RetryAction::DontRetry {
                reason: format!("cannot render the body: {e}"),
            },
        },
    };
    entry.attempts += 1;
    let event_id = entry.event_id.clone();
    match action {
        RetryAction::Successful => {
            store.ack(&key)?;
            crate::metrics::delivery(bridge, "delivered");
            let created = DateTime::from_timestamp_millis(entry.created_ms).unwrap_or_default();
            crate::metrics::delivery_latency((now - created).to_std().unwrap_or_default());
            Ok(Outcome::Delivered { event_id })
        }
        RetryAction::Retry { reason, after } => {
            let jitter = rand::rng().random_range(-1.0..=1.0);
            match retry::next_delay(&sink.retry, entry.attempts, after, jitter) {
                Some(delay) => {
                    let next_at = chrono::TimeDelta::from_std(delay)
                        .ok()
                        .and_then(|d| now.checked_add_signed(d))
                        .unwrap_or(DateTime::<Utc>::MAX_UTC);
                    // As stored (milliseconds), so `NotDue` names the same time later.
                    let next_at = next_at.trunc_subsecs(3);
                    let retry_in = humantime::format_duration(Duration::from_millis(
                        delay.as_millis().try_into().unwrap_or(u64::MAX),
                    ));
                    warn!(
                        event_id = %event_id, attempt = entry.attempts,
                        retry_in_ms = delay.as_millis() as u64,
                        "delivery failed: {bridge} event {event_id} to {} (attempt {}, retry in \
                         {retry_in}): {reason}",
                        sink.shown,
                        entry.attempts
                    );
                    entry.next_at_ms = next_at.timestamp_millis();
                    entry.last_error = Some(reason);
                    store.reschedule(&key, &entry)?;
                    crate::metrics::delivery(bridge, "retry");
                    Ok(Outcome::Retrying { event_id, next_at })
                }
                None => dead_letter(store, bridge, sink, &key, entry, reason, now),
            }
        }
        RetryAction::DontRetry { reason } => {
            dead_letter(store, bridge, sink, &key, entry, reason, now)
        }
    }
}

/// What the sink takes from the head of its queue (docs/configuration.md#digests): the head itself,
/// or a digest formed from it; or, instead, what happened (a filtered event acknowledged unsent, a
/// digest waiting for its window).
type Head = (Vec<u8>, crate::store::OutboxEntry);
fn speak_to(
    ctx: &Ctx,
    store: &crate::store::Store,
    bridge: &str,
    sink: &Sink,
    now: DateTime<Utc>,
    key: Vec<u8>,
    entry: crate::store::OutboxEntry,
) -> Result<Result<Head, Outcome>, StoreError> {
    if let Some(b) = sink.batch.filter(|_| !format::is_batch(&entry)) {
        if let Some(o) = batch::form(ctx, store, bridge, sink, b, now)? {
            return Ok(Err(o));
        }
        return Ok(store.outbox_head(bridge, &sink.id)?.ok_or(Outcome::Empty));
    }
    if !format::wanted(bridge, sink, &entry) {
        store.ack(&key)?;
        crate::metrics::delivery(bridge, "filtered");
        return Ok(Err(Outcome::Filtered {
            event_id: entry.event_id,
        }));
    }
    Ok(Ok((key, entry)))
}

fn dead_letter(
    store: &crate::store::Store,
    bridge: &str,
    sink: &Sink,
    key: &[u8],
    mut entry: crate::store::OutboxEntry,
    reason: String,
    now: DateTime<Utc>,
) -> Result<Outcome, StoreError> {
    error!(
        event_id = %entry.event_id, attempts = entry.attempts,
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
            sink: sink.id.clone(),
            entry,
            dead_at_ms: now.timestamp_millis(),
        },
    )?;
    Ok(Outcome::DeadLettered { event_id })
}

/// Drains one bridge+sink queue until `cancel`: delivers what is due, sleeps until the next
/// attempt is, wakes on new commits. Its lines carry `bridge` and `sink` (as shown: a sink's
/// URL may be a secret) from its span.
#[tracing::instrument(name = "sink", level = "error", skip_all, fields(bridge = %bridge.name, sink = %bridge.sinks[sink].shown))]
pub async fn run_sink(ctx: Arc<Ctx>, bridge: Arc<Bridge>, sink: usize, cancel: CancellationToken) {
    let sink = &bridge.sinks[sink];
    let mut wake = ctx.subscribe(&bridge.name);
    // A step that takes far longer than its time-out is stuck (see `runtime::Beats`).
    let limit = sink.timeout + Duration::from_secs(60);
    loop {
        if ctx.store_failure().is_some() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ctx.store_recovered() => {}
            }
        }
        wake.borrow_and_update();
        let outcome = {
            let _step = ctx.beats.step("a delivery", limit);
            // Boxed: an attempt's future (render, send, digest) is large, and inline it would
            // make every deliverer's idle task that large.
            Box::pin(try_deliver_next(&ctx, &bridge.name, sink, Utc::now())).await
        };
        let wait = match outcome {
            Ok(Outcome::Empty) => None,
            Ok(Outcome::NotDue(at)) => Some((at - Utc::now()).to_std().unwrap_or_default()),
            Ok(_) => {
                if cancel.is_cancelled() {
                    return;
                }
                continue;
            }
            // The store does not take writes: logged once where it was found; wait for it.
            Err(e) if e.is_failure() && ctx.store_failure().is_some() => continue,
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
