//! Quiet events (`emit.quiet: 24h`, docs/events.md#quiet-events): `bridge.quiet` when a bridge's
//! data (and cursor) has not changed for that long although its polls succeed, and
//! `bridge.active` when it changes again, each once per quiet spell. A source that quietly
//! stopped changing (a frozen export, a feed nobody writes to) looks like a calm one; this says
//! which it is.
//!
//! When the data last changed, and whether the spell was announced, are kept in the bridge's
//! stored meta, so a restart neither repeats an announcement nor forgets one. [`decide`] is
//! pure; [`track`] stores what it decides after each successful poll, as failure tracking does.

use super::PollReport;
use super::failures::build;
use crate::clock::{Clock, from_ms, to_ms};
use crate::config::Bridge;
use crate::event::EventType;
use crate::runtime::{StoreHandle, Wakers};
use crate::store::{BridgeMeta, Commit, Quiet, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// The commit that records this successful poll in the bridge's quiet tracking (and carries
/// its event), or None when nothing changes: no `emit.quiet`, or a poll that changed nothing
/// before the spell is long enough.
pub fn decide(
    bridge: &Bridge,
    meta: &BridgeMeta,
    changed: bool,
    now: DateTime<Utc>,
) -> Option<Commit> {
    let after = i64::try_from(bridge.emit.quiet?.as_millis()).unwrap_or(i64::MAX);
    let now_ms = to_ms(now);
    let fresh = Quiet {
        since_ms: now_ms,
        announced: false,
    };
    let stamp = |ms: i64| {
        from_ms(ms)
            .unwrap_or(now)
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    };
    let (next, event) = match (&meta.quiet, changed) {
        // The first poll tracked starts the clock.
        (None, _) => (fresh, None),
        (Some(q), true) => {
            let event = q.announced.then(|| {
                let data = json!({
                    "since": stamp(q.since_ms),
                    "quiet_ms": now_ms.saturating_sub(q.since_ms),
                });
                (EventType::Active, data, q.since_ms)
            });
            (fresh, event)
        }
        (Some(q), false) if !q.announced && now_ms.saturating_sub(q.since_ms) >= after => {
            let data = json!({
                "since": stamp(q.since_ms),
                "quiet_ms": now_ms.saturating_sub(q.since_ms),
            });
            let next = Quiet {
                announced: true,
                ..q.clone()
            };
            (next, Some((EventType::Quiet, data, q.since_ms)))
        }
        (Some(_), false) => return None,
    };
    let mut c = Commit {
        bridge: bridge.name.clone(),
        expected_seq: meta.seq,
        base: Some(meta.clone()),
        meta: meta.clone(),
        ..Default::default()
    };
    c.meta.quiet = Some(next);
    if let Some((kind, data, since_ms)) = event {
        c.meta.seq += 1;
        let e = build(bridge, kind, data, since_ms, meta.seq, now);
        let sinks: Vec<String> = bridge.sinks.iter().map(|s| s.id.clone()).collect();
        c.queue(&sinks, &[e], now);
    }
    Some(c)
}

/// Records a successful poll in the bridge's quiet tracking, and stores the event it calls
/// for. A failed poll is no sign of quiet (failure events are for those).
pub async fn track(
    (store, wakers, clock): (&StoreHandle, &Wakers, &Clock),
    bridge: &Bridge,
    report: &PollReport,
) {
    if bridge.emit.quiet.is_none() {
        return;
    }
    let Ok(writable) = store.writable() else {
        return;
    };
    let changed = report.changed;
    let (b, st, clock) = (bridge.clone(), writable.clone(), clock.clone());
    let stored = crate::runtime::blocking(move || -> Result<bool, StoreError> {
        let meta = st.meta(&b.name)?;
        let Some(c) = decide(&b, &meta, changed, clock.now()) else {
            return Ok(false);
        };
        st.commit(&c)?;
        Ok(!c.outbox.is_empty())
    })
    .await;
    match stored {
        Ok(false) => {}
        Ok(true) => match writable.flush().await {
            Ok(()) => wakers.wake(&bridge.name),
            Err(e) => store.failed(&e),
        },
        Err(e) => {
            tracing::warn!("bridge {}: quiet tracking not stored: {e}", bridge.name);
            store.failed(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::testkit::BridgeYaml;

    fn bridge() -> Bridge {
        let yaml = BridgeYaml::new("http://127.0.0.1:1/x")
            .emit("quiet: 24h")
            .sink("console");
        crate::config::test_bridge("q", &yaml.build())
    }

    fn at(hours: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + hours * 3600, 0).unwrap()
    }

    /// Runs polls (hour, changed) through `decide`, applying each commit's meta.
    fn run(b: &Bridge, meta: &mut BridgeMeta, polls: &[(i64, bool)]) -> Vec<Event> {
        let mut events = Vec::new();
        for &(h, changed) in polls {
            if let Some(c) = decide(b, meta, changed, at(h)) {
                assert_eq!(c.expected_seq, meta.seq);
                events.extend(
                    c.outbox
                        .iter()
                        .map(|(_, e)| serde_json::from_str::<Event>(&e.body).unwrap()),
                );
                *meta = c.meta;
            }
        }
        events
    }

    #[test]
    fn quiet_after_the_spell_and_active_on_the_next_change_each_once() {
        let b = bridge();
        let mut meta = BridgeMeta {
            seq: 4,
            ..Default::default()
        };
        let polls = [
            (0, true),
            (10, false),
            (23, false),
            (24, false),
            (30, false),
        ];
        let events = run(&b, &mut meta, &polls);
        let kinds: Vec<(EventType, u64)> = events.iter().map(|e| (e.kind, e.seq)).collect();
        assert_eq!(kinds, [(EventType::Quiet, 5)]);
        let data = events[0].data.as_ref().unwrap().value().unwrap();
        assert_eq!(data["quiet_ms"], 24 * 3_600_000);
        assert_eq!(data["since"], "2027-01-15T08:00:00.000Z");
        assert_eq!(events[0].key, "");
        // What is stored is what a restart reads: no second announcement.
        let events = run(
            &b,
            &mut meta,
            &[(40, false), (50, true), (51, true), (60, false)],
        );
        let kinds: Vec<(EventType, u64)> = events.iter().map(|e| (e.kind, e.seq)).collect();
        assert_eq!(kinds, [(EventType::Active, 6)]);
        let data = events[0].data.as_ref().unwrap().value().unwrap();
        assert_eq!(data["quiet_ms"], 50 * 3_600_000);
        // A new spell is announced again, as another event.
        let again = run(&b, &mut meta, &[(75, false)]);
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].id, events[0].id);
    }

    #[test]
    fn without_emit_quiet_nothing_is_tracked_and_an_unchanged_poll_writes_nothing() {
        let mut b = bridge();
        let meta = decide(&b, &BridgeMeta::default(), false, at(0))
            .unwrap()
            .meta;
        assert!(decide(&b, &meta, false, at(1)).is_none());
        b.emit.quiet = None;
        assert!(decide(&b, &BridgeMeta::default(), true, at(0)).is_none());
    }
}
