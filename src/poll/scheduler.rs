//! One task per bridge: wait for the next slot of its schedule, poll, log, repeat. Polls of
//! one bridge never overlap: a poll that overruns its slot skips it. A source that asks for a
//! pause (rate limit) gets it: no poll before the pause ends.

use super::{PollError, PollReport, poll_once};
use crate::clock::Clock;
use crate::config::Bridge;
use crate::event::EventType;
use crate::logging::{bridge_span, count};
use crate::redact::Redactor;
use crate::runtime::{Board, Ctx, Warned};
use crate::schedule::Schedule;
use chrono::{DateTime, Utc};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

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

/// Until when the source asked us not to poll this bridge, if that is still ahead. Kept in
/// the shared status: it outlives a restart of the task (a reload), and a poll asked for
/// through the admin API that meets a rate limit pauses the schedule too.
pub(crate) fn paused_until(
    board: &Board,
    bridge: &str,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    board.paused_until(bridge).filter(|p| *p > now)
}

/// Runs a bridge's schedule until `cancel`, on a timer of its own (the daemon runs every
/// bridge on one, `app::turns`). A bridge that has never been polled (no baseline) polls at
/// once, so a new bridge shows its first result without waiting a whole interval; so does one
/// `restarted`.
pub async fn run_bridge(
    ctx: Arc<Ctx>,
    bridge: Arc<Bridge>,
    cancel: CancellationToken,
    restarted: bool,
) {
    crate::app::run_one(ctx, bridge, cancel, restarted).await
}

/// How long to wait for the bridge's next poll (its schedule's next slot, a pause the source
/// asked for, the jitter), shown in its status; None when the schedule has no future run.
pub(crate) fn until_next(board: &Board, clock: &Clock, bridge: &Bridge) -> Option<Duration> {
    let now = clock.now();
    let pause = paused_until(board, &bridge.name, now);
    let Some(next) = next_poll_at(&bridge.schedule, &bridge.name, now, pause) else {
        warn!(
            "bridge {}: schedule has no future run; the bridge stops polling",
            bridge.name
        );
        board.update(&bridge.name, |s| s.next_poll = None);
        return None;
    };
    board.update(&bridge.name, |s| s.next_poll = Some(next));
    let mut wait = (next - now).to_std().unwrap_or(Duration::ZERO);
    if let Some(j) = bridge.jitter.filter(|j| !j.is_zero()) {
        wait += rand::rng().random_range(Duration::ZERO..j);
    }
    Some(wait)
}

/// A scheduled poll with its log line: INFO with the counts (DEBUG for a 304), or WARN with
/// the reason. Waits for a poll of the bridge asked for through the admin API to end first
/// (and polls only if that one met no pause), then for a slot of its host and one of all
/// polls. A pause the source asks for is logged here, once, at WARN, and shown in the
/// bridge's status until it ends. None when it did not poll.
// Boxed where the schedule awaits it: a poll's future (fetch, pages, login, formats) is
// several kilobytes, and inline it would make every bridge's idle task that large (10,000
// bridges: tens of MiB held while they sleep).
pub async fn poll_and_log(
    ctx: &Ctx,
    bridge: &Bridge,
    redactor: &Redactor,
) -> Option<Result<PollReport, PollError>> {
    let gate = ctx.polls.gate(&bridge.name);
    let _one = gate.lock().await;
    if paused_until(&ctx.board, &bridge.name, ctx.clock.now()).is_some() {
        return None;
    }
    let slot = ctx.polls.slot(&bridge.source.url).await;
    Some(poll_in_slot(ctx, bridge, redactor, slot).await)
}

/// [`poll_and_log`] once its bridge's poll lock and `_slot` are held (the daemon's timer takes
/// them before it starts the poll's task) and no pause holds it back.
pub async fn poll_in_slot(
    ctx: &Ctx,
    bridge: &Bridge,
    redactor: &Redactor,
    _slot: crate::runtime::PollSlot,
) -> Result<PollReport, PollError> {
    let started = ctx.clock.instant();
    let step = ctx.beats.step("a poll", step_limit(bridge));
    let at = ctx.clock.now();
    let result = step.scope(poll_once(ctx, bridge, true, at)).await;
    drop(step);
    let elapsed = ctx.clock.instant() - started;
    let end = at + chrono::Duration::from_std(elapsed).unwrap_or_default();
    crate::trace::record(|| super::traced::span(bridge, redactor, &result, at, end));
    record(ctx, bridge, redactor, &result, elapsed).await;
    result
}

/// How long a poll may run before the watchdog counts it stuck: every page may take the whole
/// time-out, and anything far past that is stuck.
fn step_limit(bridge: &Bridge) -> Duration {
    let pages = bridge
        .source
        .paginate
        .as_ref()
        .map_or(1, |p| p.max_pages.max(1));
    bridge.source.timeout * pages + Duration::from_secs(60)
}

/// Why a poll asked for now does not run.
#[derive(Debug, thiserror::Error)]
pub enum NotNow {
    #[error("a poll of bridge `{0}` is in flight; try again when it ends")]
    InFlight(String),
    #[error("bridge `{bridge}` is paused until {}: its source asked for a pause (rate limit), and a poll now would ignore it", until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    Paused {
        bridge: String,
        until: DateTime<Utc>,
    },
}

/// A poll asked for through the admin API (with `commit`, it stores and sends like a
/// scheduled one, and its result shows in the status; without, a dry run). Refused while a
/// poll of the bridge is in flight or a pause the source asked for lasts. It runs in a task
/// of its own that holds the bridge's poll lock to the end, so a client that hangs up does
/// not free the bridge for a second poll while this one runs. A panic in it is logged at
/// ERROR and given back as the poll's error; the daemon and the bridge's schedule go on.
pub async fn poll_now(
    ctx: &Arc<Ctx>,
    bridge: &Arc<Bridge>,
    commit: bool,
) -> Result<Result<PollReport, PollError>, NotNow> {
    let Ok(one) = ctx.polls.gate(&bridge.name).try_lock_owned() else {
        return Err(NotNow::InFlight(bridge.name.clone()));
    };
    if let Some(until) = paused_until(&ctx.board, &bridge.name, ctx.clock.now()) {
        return Err(NotNow::Paused {
            bridge: bridge.name.clone(),
            until,
        });
    }
    let (ctx, bridge) = (ctx.clone(), bridge.clone());
    let span = bridge_span(&bridge.name);
    let bridge_name = bridge.name.clone();
    let task = async move {
        let _one = one;
        let redactor = Redactor::new(&bridge.secrets);
        let _slot = ctx.polls.slot(&bridge.source.url).await;
        let started = ctx.clock.instant();
        let step = ctx.beats.step("a poll", step_limit(&bridge));
        let (c, b) = (ctx.clone(), bridge.clone());
        let poll = async move { poll_once(&c, &b, commit, c.clock.now()).await };
        let joined = tokio::spawn(step.scope(poll.in_current_span())).await;
        drop(step);
        let result = joined.map_err(|e| panicked(&ctx.board, &bridge.name, &redactor, e));
        let result = result.and_then(|r| r);
        if commit {
            let elapsed = ctx.clock.instant() - started;
            record(&ctx, &bridge, &redactor, &result, elapsed).await;
        } else if let Some(until) = result.as_ref().err().and_then(|e| e.pause_until()) {
            // A dry run stores nothing, but the source's request for a pause holds all the same.
            ctx.board
                .update(&bridge.name, |s| s.paused_until = Some(until));
            log_pause(&bridge, until);
        }
        result
    };
    let run = tokio::spawn(task.instrument(span.clone()));
    Ok(run.await.unwrap_or_else(|e| {
        let why = e.to_string();
        let name = &bridge_name;
        span.in_scope(|| error!("poll {name} requested through the admin API ended: {why}"));
        Err(PollError::Panicked(why))
    }))
}

/// A poll requested through the admin API that panicked: logged at ERROR and kept as the
/// bridge's last crash.
fn panicked(
    board: &Board,
    bridge: &str,
    redactor: &Redactor,
    e: tokio::task::JoinError,
) -> PollError {
    let why = match e.try_into_panic() {
        Ok(p) => redactor.clean(&crate::redact::panic_message(&*p)),
        Err(e) => e.to_string(),
    };
    error!("poll {bridge} requested through the admin API panicked: {why}");
    board.update(bridge, |s| {
        s.last_crash = Some(format!(
            "a poll requested through the admin API panicked: {why}"
        ))
    });
    PollError::Panicked(why)
}

fn log_pause(bridge: &Bridge, until: DateTime<Utc>) {
    crate::metrics::rate_limit_pause(&bridge.name);
    let until = until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    warn!(
        paused_until = %until,
        "poll {}: rate limited: the source asked for a pause; no poll before {until}",
        bridge.name
    );
}

/// A poll's result into the bridge's status, the metrics, the log and its failure streak.
async fn record(
    ctx: &Ctx,
    bridge: &Bridge,
    redactor: &Redactor,
    result: &Result<PollReport, PollError>,
    elapsed: Duration,
) {
    let duration_ms = crate::clock::ms(elapsed);
    if let Err(PollError::Fetch(super::fetch::FetchError::Stopped { .. })) = result {
        // Not a failure of the source: nothing to show, count or announce.
        info!(
            duration_ms,
            "poll stopped between pages: the daemon is stopping; nothing stored"
        );
        return;
    }
    let pause = match result {
        Ok(r) => r.pause_until,
        Err(e) => e.pause_until(),
    };
    let finished = ctx.clock.now();
    ctx.board.update(&bridge.name, |s| {
        s.last_poll = Some(finished);
        s.last_duration_ms = Some(duration_ms);
        s.polls += 1;
        match result {
            Ok(r) => {
                s.last_result = Some(result_word(r).into());
                s.last_error = None;
                s.items = Some(r.items);
            }
            Err(e) => {
                s.last_result = Some("failed".into());
                s.last_error = Some(redactor.clean(&e.to_string()));
                s.failures += 1;
            }
        }
        s.paused_until = pause;
    });
    let word = match result {
        Ok(r) => result_word(r),
        Err(e) => e.kind(),
    };
    crate::metrics::poll(&bridge.name, word, result.is_err(), elapsed);
    ctx.polled.count(result);
    if let Ok(r) = result {
        for kind in [EventType::Created, EventType::Updated, EventType::Deleted] {
            crate::metrics::events(&bridge.name, kind.as_str(), r.emitted.of(kind));
        }
        crate::metrics::rule_errors(&bridge.name, "emit", r.rule_errors);
    }
    log_result(bridge, redactor, result, duration_ms);
    if let Ok(PollReport {
        cursor_unlike: Some(u),
        ..
    }) = result
    {
        log_unlike(&ctx.warned, bridge, u);
    }
    if let Some(until) = pause {
        log_pause(bridge, until);
    }
    let (store, wakers, clock) = (&ctx.store, &ctx.wakers, &ctx.clock);
    super::failures::track((store, wakers, clock), bridge, redactor, result).await;
}

/// `source.cursor` values that did not move the cursor: a WARN once per bridge (and
/// definition) in this process. Said at every poll, it would drown the log when the source
/// lists the same odd item each time.
fn log_unlike(warned: &Warned, bridge: &Bridge, u: &super::cursor::Unlike) {
    if !warned.first_time(format!(
        "cursor unlike\0{}\0{}",
        bridge.name, bridge.fingerprint
    )) {
        return;
    }
    let cursor = u.cursor.map_or("none yet".to_string(), |k| k.to_string());
    match &u.key {
        Some(key) => warn!(
            values = u.values,
            first_key = ?key,
            first_value = %u.value,
            "cursor values of another kind than the cursor do not move the cursor (the first is {}, the cursor {cursor}); their items are compared and sent as usual; said once per bridge until pollhook restarts",
            u.kind
        ),
        None => warn!(
            values = u.values,
            stored_cursor = %u.value,
            "cursor: the stored cursor is text where `initial` is {cursor} (stored by an earlier version, which let any value move the cursor): this poll asked from `initial`, and values unlike it do not move the cursor; said once per bridge until pollhook restarts"
        ),
    }
}

/// A poll's log lines: INFO with the counts (and a WARN for what it held back), DEBUG when
/// every page answered 304 (`summary` counts those at INFO), or WARN with the reason it
/// failed.
fn log_result(
    bridge: &Bridge,
    redactor: &Redactor,
    result: &Result<PollReport, PollError>,
    duration_ms: u64,
) {
    match result {
        // Nearly every poll of a quiet fleet: DEBUG, summed up at INFO (`summary`).
        Ok(r) if r.not_modified => {
            debug!(
                status = %"not_modified",
                items = r.items,
                pages = r.pages,
                duration_ms,
                "{}",
                story(&bridge.name, r, duration_ms)
            );
        }
        Ok(r) => {
            log_held_back(bridge, r);
            info!(
                status = %result_word(r),
                items = r.items,
                pages = r.pages,
                created = r.created,
                updated = r.updated,
                deleted = r.deleted,
                events = r.emitted.total(),
                duration_ms,
                "{}",
                story(&bridge.name, r, duration_ms)
            );
        }
        Err(e) => {
            warn!(
                status = %"failed",
                reason = %e.kind(),
                duration_ms,
                "poll {}: failed ({}) after {duration_ms} ms: {}",
                bridge.name,
                e.kind(),
                redactor.clean(&e.to_string())
            );
        }
    }
}

/// The WARNs of a poll that held something back: an incomplete listing (no deletes), events
/// emitted despite a failed rule, a re-baseline, a mass delete.
fn log_held_back(bridge: &Bridge, r: &PollReport) {
    super::shape::log(bridge, r);
    if let Some(why) = r.incomplete {
        warn!(
            pages = r.pages,
            "poll {}: listing incomplete after {}: {why}; no deletes this poll",
            bridge.name,
            count(r.pages, "page", "pages")
        );
    }
    if let Some(why) = &r.rule_error {
        warn!(
            changes = r.rule_errors,
            "poll {}: emit.when failed for {}, emitted all the same: {why}",
            bridge.name,
            count(r.rule_errors, "change", "changes")
        );
    }
    if r.rebaselined {
        warn!(
            items = r.items,
            "poll {}: definition changed: stored state re-baselined ({}), no events for \
             this poll",
            bridge.name,
            count(r.items, "item", "items")
        );
    }
    if let Some(h) = r.held_back {
        warn!(
            vanishing = h.vanishing,
            stored = h.stored,
            max_fraction = bridge.emit.max_fraction,
            "poll {}: mass delete held back: {} of {} stored items vanished at once, more \
             than max_fraction ({})",
            bridge.name,
            h.vanishing,
            h.stored,
            bridge.emit.max_fraction
        );
    }
}

/// A poll's line as a person reads it, in the journal too, where the fields are out of sight:
/// `poll widgets: ok, 1 created, 2 updated, 0 deleted, 12 items in 41 ms`. Pages when more
/// than one, events when they are not one per change (`emit.when`, a baseline, held back).
fn story(name: &str, r: &PollReport, duration_ms: u64) -> String {
    let mut items = count(r.items, "item", "items");
    if r.pages > 1 {
        items = format!("{items} on {} pages", r.pages);
    }
    if r.not_modified {
        return format!("poll {name}: not modified, {items} in {duration_ms} ms");
    }
    let events = r.emitted.total();
    let shown = if events == r.created + r.updated + r.deleted {
        String::new()
    } else {
        format!(" ({})", count(events, "event", "events"))
    };
    format!(
        "poll {name}: {}, {} created, {} updated, {} deleted{shown}, {items} in {duration_ms} ms",
        result_word(r),
        r.created,
        r.updated,
        r.deleted
    )
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
    use crate::testkit::without_time_passing;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_polls_line_tells_what_it_found() {
        let ok = PollReport {
            items: 12,
            pages: 1,
            created: 1,
            updated: 2,
            emitted: crate::poll::Emitted {
                created: 1,
                updated: 2,
                deleted: 0,
            },
            ..Default::default()
        };
        assert_eq!(
            story("widgets", &ok, 41),
            "poll widgets: ok, 1 created, 2 updated, 0 deleted, 12 items in 41 ms"
        );
        // A baseline emits nothing; several pages are said.
        let baseline = PollReport {
            items: 1,
            pages: 3,
            created: 1,
            baseline: true,
            ..Default::default()
        };
        assert_eq!(
            story("w", &baseline, 7),
            "poll w: baseline, 1 created, 0 updated, 0 deleted (0 events), 1 item on 3 pages in 7 ms"
        );
        let unchanged = PollReport {
            items: 12,
            pages: 1,
            not_modified: true,
            ..Default::default()
        };
        assert_eq!(
            story("widgets", &unchanged, 3),
            "poll widgets: not modified, 12 items in 3 ms"
        );
    }

    /// What an INFO subscriber writes of `log`.
    fn at_info(log: impl FnOnce()) -> String {
        #[derive(Clone, Default)]
        struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let w = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_poll_answered_304_is_not_an_info_line_and_one_that_compared_is() {
        let yaml = crate::testkit::BridgeYaml::new("http://127.0.0.1:1/items").sink("console");
        let b = crate::config::test_bridge("widgets", &yaml.build());
        let r = Redactor::new(&b.secrets);
        let unchanged = PollReport {
            items: 12,
            pages: 1,
            not_modified: true,
            ..Default::default()
        };
        let compared = PollReport {
            items: 12,
            pages: 1,
            ..Default::default()
        };
        let text = at_info(|| {
            log_result(&b, &r, &Ok(unchanged), 3);
            log_result(&b, &r, &Ok(compared), 4);
        });
        assert!(!text.contains("not modified"), "{text}");
        assert!(text.contains("poll widgets: ok, 0 created"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_bridge_polls_on_its_slots_as_the_clock_reaches_them() {
        use std::sync::atomic::Ordering;
        // A source on 127.0.0.1 that counts the polls it answers.
        let (url, hits) = crate::testkit::counting_source().await;
        let yaml = format!(
            "schedule: {{every: 1h}}\nsource: {{url: \"{url}\"}}\nitems: {{select: \"$[*]\", key: \"$.id\"}}\nsinks: [{{url: console}}]\n"
        );
        let env = crate::config::Env::fixed(&[], None);
        let bridge = crate::config::parse_file(std::path::Path::new("slots.yaml"), &yaml, &env);
        let bridge = Arc::new(bridge.unwrap());
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        // Far from the real time: a poll timed by the real clock would not fall on these slots.
        let t0 = at("2031-05-04T10:20:30.400Z");
        let ctx = Arc::new(Ctx::with_clock(store, Clock::following_tokio(t0)));
        let slot = bridge.schedule.next_after(&bridge.name, t0).unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_bridge(
            ctx.clone(),
            bridge.clone(),
            cancel.clone(),
            false,
        ));
        // A new bridge polls at once, at t0, and plans the schedule's next slot.
        without_time_passing("the first poll", || ctx.status("slots").polls == 1).await;
        without_time_passing("the plan", || ctx.status("slots").next_poll == Some(slot)).await;
        let status = ctx.status("slots");
        assert_eq!(status.last_poll, Some(t0));
        assert_eq!(status.last_result.as_deref(), Some("baseline"));
        // Nothing until the slot: a millisecond before it, still one poll.
        let before = (slot - t0 - chrono::TimeDelta::milliseconds(1))
            .to_std()
            .unwrap();
        tokio::time::sleep(before).await;
        assert_eq!(ctx.status("slots").polls, 1);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        // At the slot, the second poll, and the next slot an hour on.
        tokio::time::sleep(Duration::from_millis(1)).await;
        without_time_passing("the second poll", || ctx.status("slots").polls == 2).await;
        let status = ctx.status("slots");
        assert_eq!(status.last_poll, Some(slot));
        assert_eq!(status.last_result.as_deref(), Some("ok"));
        assert_eq!(hits.load(Ordering::SeqCst), 2);
        let next = slot + chrono::TimeDelta::hours(1);
        without_time_passing("the next plan", || {
            ctx.status("slots").next_poll == Some(next)
        })
        .await;
        cancel.cancel();
        task.await.unwrap();
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
