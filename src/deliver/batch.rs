//! Digests (`batch: {max, window}`, docs/configuration.md#digests): the head of a sink's queue
//! becomes one request when `max` events wait or `window` has passed since the last digest. The
//! composition is stored (one outbox entry in the members' place) before the first attempt, so
//! every retry and a restart send the same members, in the same bytes, under the same `webhook-id`.

use super::Outcome;
use super::format::{is_batch, wanted};
use super::stored::Stored;
use super::window::Windows;
use crate::config::{Batch, Sink};
use crate::store::{OutboxEntry, Store, StoreError};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// A digest's id (format 1): `bat_` and the hex of the first 16 bytes of the SHA-256 of its
/// member ids, each followed by a newline. Stored digests are sent under it: it must never
/// change for the same members (`pinned` test).
pub fn batch_id(ids: &[&str]) -> String {
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.as_bytes());
        h.update(b"\n");
    }
    format!("bat_{}", hex::encode(&h.finalize()[..16]))
}

/// The digest entry of `members` (in queue order): the `format: event` body
/// `{"type": "batch", "bridge": …, "events": [ … ]}` with each event's stored bytes as they
/// are, and the first member's seq and time.
pub fn compose(bridge: &str, members: &[OutboxEntry]) -> OutboxEntry {
    let ids: Vec<&str> = members.iter().map(|m| m.event_id.as_str()).collect();
    let events: Vec<&str> = members.iter().map(|m| m.body.as_str()).collect();
    let body = format!(
        "{{\"type\":\"batch\",\"bridge\":{},\"events\":[{}]}}",
        serde_json::Value::String(bridge.to_string()),
        events.join(",")
    );
    let first = &members[0];
    OutboxEntry {
        event_id: batch_id(&ids),
        kind: crate::event::EventType::Batch,
        seq: first.seq,
        body,
        attempts: 0,
        next_at_ms: 0,
        last_error: None,
        created_ms: first.created_ms,
        sent: None,
    }
}

/// Entries a digest's forming looks at in one step at most: a long run of events the sink's
/// rules turn away is acknowledged a step at a time, so a step stays short.
const SCAN: usize = 1000;

/// Before the head of a batching sink's queue is sent: forms a digest when it is time, or
/// says why not. `Ok(None)`: the head (now a digest) is ready to send.
///
/// "`max` events wait" counts the events this sink takes: its rules run once per event as
/// the queue is looked at (what they turn away leaves the queue then), so a strict rule does
/// not turn every few arrivals into a digest of one before its window.
pub fn form(
    windows: &Windows,
    store: &Store,
    bridge: &str,
    sink: &Sink,
    batch: Batch,
    now: DateTime<Utc>,
) -> Result<Option<Outcome>, StoreError> {
    let (keys, members, filtered, scanned_all) = wanted_head(store, bridge, sink, batch.max)?;
    if members.is_empty() {
        let o = filtered.map_or(Outcome::Empty, |event_id| Outcome::Filtered { event_id });
        return Ok(Some(o));
    }
    if let Some(next) = windows.open_until(bridge, &sink.id, batch.window, now) {
        if members.len() < batch.max {
            // Come back at once when the scan stopped short, else at the window's end.
            return Ok(Some(match (scanned_all, filtered) {
                (false, Some(event_id)) => Outcome::Filtered { event_id },
                _ => Outcome::NotDue(next),
            }));
        }
    }
    store.form_batch(bridge, &keys, &compose(bridge, &members))?;
    windows.formed(bridge, &sink.id, now);
    Ok(None)
}

/// What the head of the queue holds for this sink: up to `max` wanted events in order (their
/// keys and entries), the last event turned away (acknowledged unsent), and whether the look
/// reached the end of what the digest may take (the queue's end, `max`, or a stored digest).
type WantedHead = (Vec<Vec<u8>>, Vec<OutboxEntry>, Option<String>, bool);
fn wanted_head(
    store: &Store,
    bridge: &str,
    sink: &Sink,
    max: usize,
) -> Result<WantedHead, StoreError> {
    let mut keys = Vec::new();
    let mut members = Vec::new();
    let mut filtered = None;
    let mut scanned = 0;
    while members.len() < max {
        if scanned >= SCAN {
            return Ok((keys, members, filtered, false));
        }
        // The members stay at the head (nothing else takes from this queue): look past them.
        let waiting = store.outbox_first(bridge, &sink.id, max)?;
        let fresh: Vec<_> = waiting.into_iter().skip(members.len()).collect();
        if fresh.is_empty() {
            break;
        }
        for (k, e) in fresh {
            scanned += 1;
            // A digest already formed (a replayed dead letter) is never merged into another.
            if is_batch(&e) {
                return Ok((keys, members, filtered, true));
            }
            // Each rule runs once per event: what it turns away leaves the queue now.
            if wanted(bridge, sink, &Stored::new(&e)) {
                keys.push(k);
                members.push(e);
            } else {
                store.ack(&k)?;
                crate::metrics::delivery(bridge, "filtered");
                filtered = Some(e.event_id);
            }
        }
    }
    Ok((keys, members, filtered, true))
}

#[cfg(test)]
mod pinned {
    use super::*;

    #[test]
    fn batch_ids_are_pinned() {
        assert_eq!(
            [
                batch_id(&["evt_a", "evt_b", "evt_c"]),
                batch_id(&["evt_01hx7aaaaaaaaaaaaaaaaaaaaa"])
            ],
            [
                "bat_f4ae6b2a6c1c8edf490a818ac8d6e33a",
                "bat_8f3c61ca1709a4dc2f847a6ba216a5a3"
            ]
        );
    }
}
