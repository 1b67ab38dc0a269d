//! Failure events (`emit.failures.after: N`, docs/events.md#failure-events): the Nth failed poll in
//! a row emits `bridge.failing`, the next successful poll `bridge.recovered`, each once per streak.
//! They are events of the bridge like any other (ids, `seq`, outbox, signatures), so the receiver
//! that watches the items also learns that it cannot trust their silence.
//!
//! The streak is kept in the bridge's stored meta, so a restart neither forgets a failing
//! bridge nor announces it twice. [`decide`] is pure; [`track`] stores what it decides, after
//! each poll that would have committed, under the bridge's poll lock.

use super::{PollError, PollReport};
use crate::clock::{Clock, from_ms, to_ms};
use crate::config::Bridge;
use crate::event::{self, Event, EventType, Side};
use crate::redact::Redactor;
use crate::runtime::{StoreHandle, Wakers};
use crate::store::{BridgeMeta, Commit, Failing, PageWrite, Store, StoreError};
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::json;

/// How a poll ended, as failure tracking sees it.
pub enum Outcome<'a> {
    Succeeded,
    /// With the reason word and the (redacted) error.
    Failed {
        reason: &'a str,
        error: &'a str,
    },
}

/// The commit that records this poll's outcome in the streak (and carries its event), or
/// None when nothing changes: no `emit.failures`, or a success with no streak.
pub fn decide(
    bridge: &Bridge,
    meta: &BridgeMeta,
    outcome: Outcome<'_>,
    now: DateTime<Utc>,
) -> Option<Commit> {
    let after = bridge.emit.failures_after()?;
    let mut next = meta.clone();
    let event = match (outcome, &meta.failing) {
        (Outcome::Succeeded, None) => return None,
        (Outcome::Succeeded, Some(f)) => {
            next.failing = None;
            let since = from_ms(f.since_ms).unwrap_or(now);
            f.announced.then(|| {
                let data = json!({
                    "failures": f.failures,
                    "since": stamp(since),
                    "duration_ms": (now - since).num_milliseconds().max(0),
                });
                (EventType::Recovered, data, f.since_ms)
            })
        }
        (Outcome::Failed { reason, error }, f) => {
            let mut f = f.clone().unwrap_or(Failing {
                since_ms: to_ms(now),
                failures: 0,
                announced: false,
            });
            f.failures = f.failures.saturating_add(1);
            let announce = !f.announced && f.failures >= after;
            f.announced |= announce;
            let since = from_ms(f.since_ms).unwrap_or(now);
            let data = json!({
                "reason": reason,
                "error": error,
                "failures": f.failures,
                "since": stamp(since),
            });
            let since_ms = f.since_ms;
            next.failing = Some(f);
            announce.then_some((EventType::Failing, data, since_ms))
        }
    };
    let mut c = Commit::on(&bridge.name, meta.clone());
    c.meta = next;
    if let Some((kind, data, since_ms)) = event {
        let e = build(bridge, kind, data, since_ms, meta.seq, now);
        c.emit(bridge.sinks.iter().map(|s| s.id.as_str()), &e, now);
    }
    Some(c)
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A bridge event: no item, so an empty key. Its id stands for the streak (when it began) and
/// the place in the bridge's events (the `seq` before it): the same announcement made again
/// after a crash before it was stored gets the same id.
pub(super) fn build(
    bridge: &Bridge,
    kind: EventType,
    data: serde_json::Value,
    since_ms: i64,
    generation: u64,
    now: DateTime<Utc>,
) -> Event {
    let streak = crate::extract::hash(&json!({ "since_ms": since_ms }));
    event::build(event::Spec {
        bridge: &bridge.name,
        kind,
        key: "",
        seq: generation + 1,
        generation,
        detected: now,
        previous: None,
        data: Some(Side {
            value: &event::Json::from_value(&data),
            hash: &streak,
        }),
    })
}

/// Records a committing poll's outcome in the bridge's failure streak, and stores the event
/// it calls for. A store that does not take writes records nothing (its own failure is logged
/// where it was found).
pub async fn track(
    (store, wakers, clock): (&StoreHandle, &Wakers, &Clock),
    bridge: &Bridge,
    redactor: &Redactor,
    result: &Result<PollReport, PollError>,
) {
    // A success with no streak changes nothing: no read of the store on every good poll.
    let quiet = matches!(result, Ok(r) if !r.failing);
    if bridge.emit.failures_after().is_none() || quiet {
        return;
    }
    let error = match result {
        Ok(_) => None,
        Err(e) => Some((e.kind(), redactor.clean(&e.to_string()))),
    };
    let Ok(writable) = store.writable() else {
        return;
    };
    let (b, clock) = (bridge.clone(), clock.clone());
    let decide = move |meta: &BridgeMeta| {
        let outcome = match &error {
            None => Outcome::Succeeded,
            Some((reason, error)) => Outcome::Failed { reason, error },
        };
        decide(&b, meta, outcome, clock.now())
    };
    if let Err(e) = commit_tracking((&writable, wakers), &bridge.name, decide).await {
        tracing::warn!("bridge {}: failure streak not stored: {e}", bridge.name);
        store.failed(&e);
    }
}

/// Stores bookkeeping of a bridge that no poll's commit carried (a failure streak; quiet
/// tracking after a 304): the meta read on a blocking thread, `decide`'s commit for it stored
/// (none: nothing to store) with the cached pages kept, and, when that queued events, flushed
/// to disk and the bridge's deliverers woken.
pub(super) async fn commit_tracking(
    (st, wakers): (&Store, &Wakers),
    bridge: &str,
    decide: impl FnOnce(&BridgeMeta) -> Option<Commit> + Send + 'static,
) -> Result<(), StoreError> {
    let (name, store) = (bridge.to_string(), st.clone());
    let queued = crate::runtime::blocking(move || -> Result<bool, StoreError> {
        let meta = store.meta(&name)?;
        let Some(mut c) = decide(&meta) else {
            return Ok(false);
        };
        // Not a poll: the cached pages stay (a commit's pages replace the stored set, and
        // without them the next poll could not be answered 304).
        let pages = store.pages(&name)?.into_keys();
        c.pages = pages.map(|k| (k, PageWrite::Keep)).collect();
        store.commit(&c)?;
        Ok(!c.outbox.is_empty())
    })
    .await?;
    if queued {
        st.flush().await?;
        wakers.wake(bridge);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::BridgeYaml;

    fn bridge(after: u32) -> Bridge {
        let yaml = BridgeYaml::new("http://127.0.0.1:1/x")
            .select("$[*]")
            .failures_after(after)
            .sink("console");
        crate::config::test_bridge("f", &yaml.build())
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    fn failed() -> Outcome<'static> {
        Outcome::Failed {
            reason: "http_status",
            error: "http://127.0.0.1:1/x: answered HTTP 500",
        }
    }

    /// Runs outcomes through `decide`, applying each commit's meta; the events, in order.
    fn run(b: &Bridge, outcomes: Vec<Outcome<'_>>) -> (BridgeMeta, Vec<Event>) {
        let mut meta = BridgeMeta {
            seq: 7,
            ..Default::default()
        };
        let mut events = Vec::new();
        for (i, o) in outcomes.into_iter().enumerate() {
            if let Some(c) = decide(b, &meta, o, at(60 * i as i64)) {
                assert_eq!(c.expected_seq, meta.seq);
                events.extend(
                    c.outbox
                        .iter()
                        .map(|(_, e)| serde_json::from_str::<Event>(&e.body).unwrap()),
                );
                meta = c.meta;
            }
        }
        (meta, events)
    }

    #[test]
    fn the_nth_failure_in_a_row_and_the_recovery_each_emit_once() {
        let b = bridge(3);
        let ok = || Outcome::Succeeded;
        let (meta, events) = run(
            &b,
            vec![
                failed(),
                ok(),
                failed(),
                failed(),
                failed(),
                failed(),
                ok(),
                ok(),
            ],
        );
        let kinds: Vec<(EventType, u64)> = events.iter().map(|e| (e.kind, e.seq)).collect();
        assert_eq!(kinds, [(EventType::Failing, 8), (EventType::Recovered, 9)]);
        let failing = events[0].data.as_ref().unwrap().value().unwrap();
        assert_eq!(failing["failures"], 3);
        assert_eq!(failing["reason"], "http_status");
        assert_eq!(failing["since"], "2027-01-15T08:02:00.000Z");
        assert_eq!(events[0].key, "");
        let recovered = events[1].data.as_ref().unwrap().value().unwrap();
        assert_eq!(recovered["failures"], 4);
        assert_eq!(recovered["since"], failing["since"]);
        assert_eq!(recovered["duration_ms"], 4 * 60_000);
        assert_eq!((meta.seq, meta.failing), (9, None));
    }

    #[test]
    fn a_streak_shorter_than_n_emits_nothing_and_a_success_without_one_stores_nothing() {
        let b = bridge(3);
        let (meta, events) = run(&b, vec![failed(), failed(), Outcome::Succeeded]);
        assert!(events.is_empty());
        assert_eq!((meta.seq, &meta.failing), (7, &None));
        assert!(decide(&b, &meta, Outcome::Succeeded, at(0)).is_none());
    }

    #[test]
    fn the_same_announcement_made_again_has_the_same_id() {
        // A crash before the commit of the 2nd failure: the 3rd announces again, as the same
        // event.
        let b = bridge(2);
        let meta = decide(&b, &BridgeMeta::default(), failed(), at(0))
            .unwrap()
            .meta;
        let first = decide(&b, &meta, failed(), at(60)).unwrap();
        let again = decide(&b, &meta, failed(), at(120)).unwrap();
        assert_eq!(first.outbox.len(), 1);
        assert_eq!(first.outbox[0].1.event_id, again.outbox[0].1.event_id);
        // Another streak is another event.
        let mut later = first.meta.clone();
        later.failing = None;
        let later = decide(&b, &later, failed(), at(600)).unwrap().meta;
        let other = decide(&b, &later, failed(), at(660)).unwrap();
        assert_ne!(other.outbox[0].1.event_id, first.outbox[0].1.event_id);
    }

    #[test]
    fn without_emit_failures_nothing_is_tracked() {
        let mut b = bridge(1);
        b.emit.more = None;
        assert!(decide(&b, &BridgeMeta::default(), failed(), at(0)).is_none());
    }
}
