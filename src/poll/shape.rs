//! What a drift of the items' shape does to a poll (`emit.shape`, docs/testing-bridges.md#shape-drift):
//! [`look`] compares the poll's items with the shape the bridge learnt ([`crate::shape`]) and
//! decides: learn on, announce a drift (`bridge.shape_changed`, once per drift), and with
//! `hold` hold the poll ([`hold`]: nothing stored of the items, nothing emitted for them)
//! until the operator accepts the new shape ([`accept`]) or the shape returns. Pure but for
//! [`accept`], which stores.
//!
//! What is learnt is kept in the bridge's meta and written with the poll's own commit, so a
//! restart keeps a hold and never announces a drift twice.

use super::plan::{Approach, Cut, Listed};
use super::{PollError, PollReport};
use crate::config::Bridge;
use crate::config::raw::ShapeMode;
use crate::diff::Baseline;
use crate::event::{self, Event, EventType, Side};
use crate::extract::{Item, ItemValue, Keyed};
use crate::shape::{self, Change, Drift, Learnt, Seen};
use crate::store::{BridgeMeta, Commit, PageWrite, Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::json;

/// What a poll found of its items' shape, for its report and log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub changes: Vec<Change>,
    /// This poll announced the drift (`bridge.shape_changed`): the poll's WARN.
    pub announced: bool,
    /// The poll was held (`emit.shape: hold`).
    pub held: bool,
}

/// What [`look`] decided.
#[derive(Debug, Default)]
pub struct Look {
    /// The shape the poll stores in the bridge's meta.
    pub learnt: Option<Learnt>,
    /// The data of the `bridge.shape_changed` to emit, and when the drift began.
    announce: Option<(serde_json::Value, i64)>,
    pub note: Option<Note>,
}

impl Look {
    pub fn held(&self) -> bool {
        self.note.as_ref().is_some_and(|n| n.held)
    }

    /// The `bridge.shape_changed` this poll emits, with the `seq` after `seq`. Its id stands
    /// for the drift (when it was found, what changed) and its place: the same announcement
    /// made again after a crash before it was stored gets the same id.
    pub fn event(&self, bridge: &Bridge, seq: u64, now: DateTime<Utc>) -> Option<Event> {
        let (data, since_ms) = self.announce.as_ref()?;
        let drift =
            crate::extract::hash(&json!({"since_ms": since_ms, "changes": data["changes"]}));
        Some(event::build(event::Spec {
            bridge: &bridge.name,
            kind: EventType::ShapeChanged,
            key: "",
            seq: seq + 1,
            generation: seq,
            detected: now,
            previous: None,
            data: Some(Side {
                value: &event::Json::from_value(data),
                hash: &drift,
            }),
        }))
    }
}

/// Compares the poll's items with the learnt shape. A first poll, a re-baseline or a bridge
/// without a learnt shape (one just received from another shard) learns it afresh.
pub fn look(
    bridge: &Bridge,
    meta: &BridgeMeta,
    approach: Approach,
    items: &[Item<'_>],
    listed: &Listed,
    now: DateTime<Utc>,
) -> Result<Look, PollError> {
    if bridge.emit.shape == ShapeMode::Off {
        return Ok(Look::default());
    }
    let before = meta
        .shape
        .as_ref()
        .filter(|_| approach.baseline == Baseline::No);
    // A count means something for a whole listing, not for what an incremental one brings.
    let counted = listed.incomplete.is_none() && bridge.source.cursor.is_none();
    let seen = observe(before, items)?;
    let Some(before) = before else {
        return Ok(Look {
            learnt: Some(shape::learn(None, &seen, counted)),
            ..Default::default()
        });
    };
    let changes = shape::compare(before, &seen, counted);
    if changes.is_empty() {
        // No drift, or the shape returned by itself.
        return Ok(Look {
            learnt: Some(shape::learn(Some(before), &seen, counted)),
            ..Default::default()
        });
    }
    let known = before
        .drift
        .as_ref()
        .filter(|d| shape::same(&d.changes, &changes));
    let since_ms = known.map_or(crate::clock::to_ms(now), |d| d.since_ms);
    let held = bridge.emit.shape == ShapeMode::Hold;
    let announce = known.is_none().then(|| {
        let data = json!({
            "changes": changes,
            "before": before.summary(),
            "after": seen.summary(),
        });
        (data, since_ms)
    });
    let learnt = if held {
        Learnt {
            drift: Some(Drift {
                since_ms,
                changes: changes.clone(),
                after: seen.summary(),
                held,
            }),
            ..before.clone()
        }
    } else {
        // `warn`: announced, the new shape is the one learnt.
        let fresh = Learnt {
            counts: Vec::new(),
            ..before.clone()
        };
        shape::learn(Some(&fresh), &seen, counted)
    };
    Ok(Look {
        learnt: Some(learnt),
        note: Some(Note {
            changes,
            announced: announce.is_some(),
            held,
        }),
        announce,
    })
}

/// The shape of the poll's items, `before`'s paths tracked first. An item kept as text is
/// walked from its text, never parsed into a tree.
fn observe(before: Option<&Learnt>, items: &[Item<'_>]) -> Result<Seen, PollError> {
    let mut seen = Seen::watching(before);
    for item in items {
        match &item.value {
            ItemValue::Parsed(v) => seen.add(v),
            ItemValue::Text(raw) => seen.add_text(raw.get()).map_err(|e| {
                crate::extract::ExtractError::NotJson(format!("an item cannot be read: {e}"))
            })?,
        }
    }
    Ok(seen)
}

/// A held poll: nothing stored of its items, nothing emitted for them. Its commit stores the
/// drift (and carries its event, the first time) and forgets the cached pages, so that the
/// next poll compares the listing again; none when that changes nothing.
pub fn hold(
    bridge: &Bridge,
    meta: BridgeMeta,
    look: Look,
    (keyed, listed): (&Keyed<'_>, &Listed),
    now: DateTime<Utc>,
    out: &mut dyn FnMut(Commit, Cut) -> Result<(), StoreError>,
) -> Result<PollReport, PollError> {
    let mut report = PollReport {
        items: keyed.items.len(),
        pages: listed.documents.len(),
        incomplete: listed.incomplete,
        pause_until: listed.pause_until,
        failing: meta.failing.is_some(),
        ..Default::default()
    };
    let mut c = Commit::on(&bridge.name, meta.clone());
    c.meta.shape.clone_from(&look.learnt);
    if let Some(e) = look.event(bridge, meta.seq, now) {
        c.emit(bridge.sinks.iter().map(|s| s.id.as_str()), &e, now);
        report.events.push(e);
    }
    report.shape = look.note;
    if c.meta != meta || !listed.cached.is_empty() {
        out(c, Cut::Last { batches: 0 })?;
    }
    Ok(report)
}

/// The WARN of a poll that announced a drift, naming the bridge and what changed.
pub fn log(bridge: &Bridge, r: &PollReport) {
    let Some(n) = r.shape.as_ref().filter(|n| n.announced) else {
        return;
    };
    let then = if n.held {
        "; its polls are held until `pollhook accept-shape` or the shape returns"
    } else {
        ""
    };
    tracing::warn!(
        changes = n.changes.len(),
        held = n.held,
        "poll {}: shape changed: {}{then}",
        bridge.name,
        shape::lines(&n.changes)
    );
}

/// Why a held bridge is held, as status shows it: `held: $.name gone (was string)`.
pub fn status(meta: &BridgeMeta) -> Option<String> {
    let d = meta.shape.as_ref()?.drift.as_ref().filter(|d| d.held)?;
    Some(format!("held: {}", shape::lines(&d.changes)))
}

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("bridge `{0}` has no shape drift to accept")]
    NoDrift(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `pollhook accept-shape`: the drifted shape becomes the learnt one, so the next poll goes on
/// as usual (its changes emitted then). Refused (a conflict) if a poll stored meanwhile.
/// Blocking. The changes accepted.
pub fn accept(store: &Store, bridge: &str) -> Result<Vec<Change>, AcceptError> {
    let meta = store.meta(bridge)?;
    let learnt = meta.shape.as_ref();
    let (Some(drift), Some(accepted)) = (
        learnt.and_then(|l| l.drift.clone()),
        learnt.and_then(Learnt::accept),
    ) else {
        return Err(AcceptError::NoDrift(bridge.to_string()));
    };
    // Nothing was fetched: the stored pages stay as they are.
    let pages = store
        .pages(bridge)?
        .into_keys()
        .map(|k| (k, PageWrite::Keep))
        .collect();
    let mut c = Commit::on(bridge, meta);
    c.meta.shape = Some(accepted);
    c.pages = pages;
    store.commit(&c)?;
    Ok(drift.changes)
}
