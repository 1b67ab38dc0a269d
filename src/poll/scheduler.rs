//! One task per bridge: wait for the next slot of its schedule, poll, log, repeat. Polls of
//! one bridge never overlap: a poll that overruns its slot skips it.

use super::{PollError, PollReport, poll_once};
use crate::config::Bridge;
use crate::event::EventType;
use crate::redact::Redactor;
use crate::runtime::Ctx;
use chrono::Utc;
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Runs a bridge's schedule until `cancel`. A bridge that has never been polled (no baseline)
/// polls at once, so a new bridge shows its first result without waiting a whole interval.
pub async fn run_bridge(ctx: Arc<Ctx>, bridge: Arc<Bridge>, cancel: CancellationToken) {
    let redactor = Redactor::new(&bridge.secrets);
    let fresh = ctx
        .store
        .meta(&bridge.name)
        .map(|m| !m.baselined)
        .unwrap_or(false);
    if fresh {
        let _ = poll_and_log(&ctx, &bridge, &redactor).await;
    }
    loop {
        let now = Utc::now();
        let Some(next) = bridge.schedule.next_after(&bridge.name, now) else {
            warn!(bridge = %bridge.name, "schedule has no future run; the bridge stops");
            return;
        };
        ctx.update_status(&bridge.name, |s| {
            s.next_poll_ms = Some(next.timestamp_millis())
        });
        let mut wait = (next - now).to_std().unwrap_or(Duration::ZERO);
        if let Some(j) = bridge.jitter.filter(|j| !j.is_zero()) {
            wait += rand::rng().random_range(Duration::ZERO..j);
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let _ = poll_and_log(&ctx, &bridge, &redactor).await;
    }
}

/// One poll with its log line: INFO with the counts, or WARN with the reason.
pub async fn poll_and_log(
    ctx: &Ctx,
    bridge: &Bridge,
    redactor: &Redactor,
) -> Result<PollReport, PollError> {
    let started = Instant::now();
    let result = poll_once(ctx, bridge, true, Utc::now()).await;
    let duration_ms = started.elapsed().as_millis() as u64;
    ctx.update_status(&bridge.name, |s| {
        s.last_poll_ms = Some(Utc::now().timestamp_millis());
        s.last_duration_ms = Some(duration_ms);
        s.polls += 1;
        match &result {
            Ok(r) => {
                s.last_result = Some(if r.baseline { "baseline" } else { "ok" }.to_string());
                s.last_error = None;
                s.items = Some(r.items);
            }
            Err(e) => {
                s.last_result = Some("failed".to_string());
                s.last_error = Some(redactor.clean(&e.to_string()));
                s.failures += 1;
            }
        }
    });
    match &result {
        Ok(r) => crate::metrics::poll(
            &bridge.name,
            if r.baseline { "baseline" } else { "ok" },
            started.elapsed(),
        ),
        Err(e) => crate::metrics::poll(&bridge.name, e.kind(), started.elapsed()),
    }
    if let Ok(r) = &result {
        crate::metrics::items(&bridge.name, r.items);
        for kind in [EventType::Created, EventType::Updated, EventType::Deleted] {
            crate::metrics::events(
                &bridge.name,
                kind.as_str(),
                r.events.iter().filter(|e| e.kind == kind).count(),
            );
        }
    }
    match &result {
        Ok(r) => {
            if r.rebaselined {
                warn!(bridge = %bridge.name, items = r.items, "definition changed: stored state re-baselined, no events for this poll");
            }
            if let Some(h) = r.held_back {
                warn!(
                    bridge = %bridge.name,
                    vanishing = h.vanishing,
                    stored = h.stored,
                    max_fraction = bridge.emit.max_fraction,
                    "mass delete held back: more than max_fraction of the items vanished at once"
                );
            }
            let status = if r.baseline { "baseline" } else { "ok" };
            info!(
                bridge = %bridge.name,
                status = %status,
                items = r.items,
                created = r.created,
                updated = r.updated,
                deleted = r.deleted,
                events = r.events.len(),
                duration_ms,
                "poll"
            );
        }
        Err(e) => {
            warn!(
                bridge = %bridge.name,
                status = %"failed",
                reason = %e.kind(),
                duration_ms,
                "poll failed: {}",
                redactor.clean(&e.to_string())
            );
        }
    }
    result
}
