//! One task per bridge: wait for the next slot of its schedule, poll, log, repeat. Polls of
//! one bridge never overlap: a poll that overruns its slot skips it. A source that asks for a
//! pause (rate limit) gets it: no poll before the pause ends.

use super::{PollError, PollReport, poll_once};
use crate::config::Bridge;
use crate::event::EventType;
use crate::redact::Redactor;
use crate::runtime::Ctx;
use crate::schedule::Schedule;
use chrono::{DateTime, Utc};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// When the next poll may start: the schedule's next slot after `now`, but never before the
/// end of a pause the source asked for. None when the schedule has no future run.
pub fn next_poll_at(
    schedule: &Schedule,
    name: &str,
    now: DateTime<Utc>,
    paused_until: Option<DateTime<Utc>>,
) -> Option<DateTime<Utc>> {
    let slot = schedule.next_after(name, now)?;
    Some(match paused_until {
        Some(p) if p > slot => p,
        _ => slot,
    })
}

/// Runs a bridge's schedule until `cancel`. A bridge that has never been polled (no baseline)
/// polls at once, so a new bridge shows its first result without waiting a whole interval.
pub async fn run_bridge(ctx: Arc<Ctx>, bridge: Arc<Bridge>, cancel: CancellationToken) {
    let redactor = Redactor::new(&bridge.secrets);
    // A pause outlives a restart of this task (a reload): it is kept in the shared status.
    let mut paused_until = ctx
        .status(&bridge.name)
        .paused_until_ms
        .and_then(DateTime::from_timestamp_millis);
    let fresh = ctx
        .store()
        .and_then(|s| s.meta(&bridge.name))
        .map(|m| !m.baselined)
        .unwrap_or(false);
    if fresh && paused_until.is_none() {
        paused_until = poll_and_log(&ctx, &bridge, &redactor).await.1;
    }
    loop {
        let now = Utc::now();
        let Some(next) = next_poll_at(&bridge.schedule, &bridge.name, now, paused_until) else {
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
        if paused_until.take().is_some() {
            ctx.update_status(&bridge.name, |s| s.paused_until_ms = None);
        }
        // While the store does not take writes a poll could store nothing: skip the slots
        // until it does (the failure is logged once, and shown by `/healthz`).
        if ctx.store_failure().is_some() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ctx.store_recovered() => {}
            }
        }
        paused_until = poll_and_log(&ctx, &bridge, &redactor).await.1;
    }
}

/// One poll with its log line: INFO with the counts, or WARN with the reason. Also gives the
/// pause the source asked for, if any: it is logged here, once, at WARN, and shown in the
/// bridge's status until it ends.
pub async fn poll_and_log(
    ctx: &Ctx,
    bridge: &Bridge,
    redactor: &Redactor,
) -> (Result<PollReport, PollError>, Option<DateTime<Utc>>) {
    let _slot = ctx
        .poll_slots
        .acquire()
        .await
        .expect("the semaphore is never closed");
    let started = Instant::now();
    // Every page may take the whole time-out; anything far past that is stuck.
    let pages = bridge
        .source
        .paginate
        .as_ref()
        .map_or(1, |p| p.max_pages.max(1));
    let limit = bridge.source.timeout * pages + Duration::from_secs(60);
    let step = ctx.beats.step("a poll", limit);
    let result = poll_once(ctx, bridge, true, Utc::now()).await;
    drop(step);
    let elapsed = started.elapsed();
    let duration_ms = elapsed.as_millis() as u64;
    let pause = match &result {
        Ok(r) => r.pause_until,
        Err(e) => e.pause_until(),
    };
    ctx.update_status(&bridge.name, |s| {
        s.last_poll_ms = Some(Utc::now().timestamp_millis());
        s.last_duration_ms = Some(duration_ms);
        s.polls += 1;
        match &result {
            Ok(r) => {
                s.last_result = Some(result_word(r).to_string());
                s.last_error = None;
                s.items = Some(r.items);
            }
            Err(e) => {
                s.last_result = Some("failed".to_string());
                s.last_error = Some(redactor.clean(&e.to_string()));
                s.failures += 1;
            }
        }
        s.paused_until_ms = pause.map(|p| p.timestamp_millis());
    });
    let word = match &result {
        Ok(r) => result_word(r),
        Err(e) => e.kind(),
    };
    crate::metrics::poll(&bridge.name, word, result.is_err(), elapsed);
    if let Ok(r) = &result {
        crate::metrics::items(&bridge.name, r.items);
        for kind in [EventType::Created, EventType::Updated, EventType::Deleted] {
            crate::metrics::events(&bridge.name, kind.as_str(), r.emitted.of(kind));
        }
    }
    match &result {
        Ok(r) if r.not_modified => {
            info!(
                bridge = %bridge.name,
                status = %"not_modified",
                items = r.items,
                pages = r.pages,
                duration_ms,
                "poll"
            );
        }
        Ok(r) => {
            if let Some(why) = r.incomplete {
                warn!(
                    bridge = %bridge.name,
                    pages = r.pages,
                    "listing incomplete: {why}; no deletes this poll"
                );
            }
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
            info!(
                bridge = %bridge.name,
                status = %result_word(r),
                items = r.items,
                pages = r.pages,
                created = r.created,
                updated = r.updated,
                deleted = r.deleted,
                events = r.emitted.total(),
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
    if let Some(until) = pause {
        crate::metrics::rate_limit_pause(&bridge.name);
        warn!(
            bridge = %bridge.name,
            paused_until = %until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "rate limited: the source asked for a pause; no poll before it ends"
        );
    }
    (result, pause)
}

fn result_word(r: &PollReport) -> &'static str {
    if r.not_modified {
        "not_modified"
    } else if r.baseline {
        "baseline"
    } else {
        "ok"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_pause_pushes_the_next_poll_back_and_never_forward() {
        let every = Schedule::Every(Duration::from_secs(60));
        let now = at("2026-01-01T12:00:00.500Z");
        let slot = next_poll_at(&every, "b", now, None).unwrap();
        assert!(slot > now && slot <= now + chrono::TimeDelta::seconds(60));
        // A pause past the slot: poll when the pause ends, not at the slot.
        let long = now + chrono::TimeDelta::seconds(150);
        assert_eq!(next_poll_at(&every, "b", now, Some(long)), Some(long));
        // A pause that ends before the slot changes nothing.
        let short = now + chrono::TimeDelta::milliseconds(1);
        assert_eq!(next_poll_at(&every, "b", now, Some(short)), Some(slot));
        // A pause already over: the schedule as usual.
        let over = now - chrono::TimeDelta::seconds(5);
        assert_eq!(next_poll_at(&every, "b", now, Some(over)), Some(slot));
        // Cron too.
        let cron = Schedule::cron("0 9 * * 1").unwrap();
        let monday = next_poll_at(&cron, "b", now, None).unwrap();
        assert_eq!(monday, at("2026-01-05T09:00:00Z"));
        let later = at("2026-01-05T10:00:00Z");
        assert_eq!(next_poll_at(&cron, "b", now, Some(later)), Some(later));
    }
}
