//! Quiet events (`emit.quiet: 24h`, docs/events.md#quiet-events): `bridge.quiet` when a bridge's
//! data (and cursor) has not changed for that long although its polls succeed, and
//! `bridge.active` when it changes again, each once per quiet spell. A source that quietly
//! stopped changing (a frozen export, a feed nobody writes to) looks like a calm one; this says
//! which it is.
//!
//! When the data last changed, and whether the spell was announced, are kept in the bridge's
//! stored meta, so a restart neither repeats an announcement nor forgets one. [`step`] is pure,
//! and a poll's plan takes what it decides into the poll's own commit (the same transaction as
//! the items and events it stores), so tracking costs a quiet bridge no second read or commit.
//! A poll answered 304 makes no commit: [`not_modified`] stores the tracking then, and only
//! when it changes (the first poll tracked, or the spell reaching `emit.quiet`).

use super::failures::{build, commit_tracking};
use crate::config::Bridge;
use crate::event::{Event, EventType};
use crate::runtime::Wakers;
use crate::store::{BridgeMeta, Commit, Quiet, Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// What quiet tracking makes of one successful poll: the bridge's quiet record after it, and
/// the event it calls for, numbered after `seq` (which is also its generation). None when
/// nothing changes: no `emit.quiet`, or a poll that changed nothing before the spell is long
/// enough.
pub fn step(
    bridge: &Bridge,
    quiet: Option<&Quiet>,
    changed: bool,
    seq: u64,
    now: DateTime<Utc>,
) -> Option<(Quiet, Option<Event>)> {
    let after = i64::try_from(bridge.emit.quiet()?.as_millis()).unwrap_or(i64::MAX);
    let now_ms = crate::clock::to_ms(now);
    let fresh = Quiet {
        since_ms: now_ms,
        announced: false,
    };
    let data = |q: &Quiet| {
        let since = crate::clock::from_ms(q.since_ms).unwrap_or(now);
        json!({
            "since": since.to_rfc3339_opts(SecondsFormat::Millis, true),
            "quiet_ms": now_ms.saturating_sub(q.since_ms),
        })
    };
    let (next, event) = match (quiet, changed) {
        // The first poll tracked starts the clock.
        (None, _) => (fresh, None),
        (Some(q), true) => {
            let event = q
                .announced
                .then(|| (EventType::Active, data(q), q.since_ms));
            (fresh, event)
        }
        (Some(q), false) if !q.announced && now_ms.saturating_sub(q.since_ms) >= after => {
            let next = Quiet {
                announced: true,
                ..q.clone()
            };
            (next, Some((EventType::Quiet, data(q), q.since_ms)))
        }
        (Some(_), false) => return None,
    };
    let event = event.map(|(kind, data, since_ms)| build(bridge, kind, data, since_ms, seq, now));
    Some((next, event))
}

/// The commit that records this successful poll in the bridge's quiet tracking on its own
/// (and carries its event), or None when nothing changes.
pub fn decide(
    bridge: &Bridge,
    meta: &BridgeMeta,
    changed: bool,
    now: DateTime<Utc>,
) -> Option<Commit> {
    let (next, event) = step(bridge, meta.quiet.as_ref(), changed, meta.seq, now)?;
    let mut c = Commit::on(&bridge.name, meta.clone());
    c.meta.quiet = Some(next);
    if let Some(e) = event {
        c.emit(bridge.sinks.iter().map(|s| s.id.as_str()), &e, now);
    }
    Some(c)
}

/// Quiet tracking after a poll answered 304 (nothing changed, no commit made): decided on the
/// meta the poll loaded, so that the usual case (nothing to record) touches no blocking
/// thread; stored when it changes something.
pub async fn not_modified(
    (st, wakers): (&Store, &Wakers),
    bridge: &Bridge,
    meta: &BridgeMeta,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if decide(bridge, meta, false, now).is_none() {
        return Ok(());
    }
    let b = bridge.clone();
    let decide = move |meta: &BridgeMeta| decide(&b, meta, false, now);
    commit_tracking((st, wakers), &bridge.name, decide).await
}

#[cfg(test)]
mod tests {
    use super::*;
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
        b.emit.more = None;
        assert!(decide(&b, &BridgeMeta::default(), true, at(0)).is_none());
    }
}
