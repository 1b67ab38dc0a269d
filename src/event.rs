//! Change -> Event: the webhook body of docs/events.md#the-event, with its id and JSON Patch. Pure:
//! the time of detection is an argument.

use crate::extract::Hash;
use crate::number;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "item.created")]
    Created,
    #[serde(rename = "item.updated")]
    Updated,
    #[serde(rename = "item.deleted")]
    Deleted,
    #[serde(rename = "item.snapshot")]
    Snapshot,
    /// `emit.failures`: the bridge's polls have failed N times in a row
    /// (docs/events.md#failure-events).
    #[serde(rename = "bridge.failing")]
    Failing,
    /// `emit.failures`: the first successful poll after a `bridge.failing`.
    #[serde(rename = "bridge.recovered")]
    Recovered,
    /// `pollhook send-test`: seq 0, never stored (docs/events.md#test-events).
    #[serde(rename = "bridge.test")]
    Test,
    /// An outbox entry that holds a digest of events (a `batch:` sink), not one event.
    #[serde(rename = "batch")]
    Batch,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "item.created",
            EventType::Updated => "item.updated",
            EventType::Deleted => "item.deleted",
            EventType::Snapshot => "item.snapshot",
            EventType::Failing => "bridge.failing",
            EventType::Recovered => "bridge.recovered",
            EventType::Test => "bridge.test",
            EventType::Batch => "batch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub bridge: String,
    pub key: String,
    pub seq: u64,
    pub timestamp: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub data: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub changes: Option<Value>,
}

/// One side of a change: the item's canonical value and its hash.
pub struct Side<'a> {
    pub value: &'a Value,
    pub hash: &'a Hash,
}

/// Everything an event is made of. `generation` is the bridge's `seq` before the commit that
/// carries this change: it is the same when a change is re-detected after a crash before it was
/// stored, and different for every commit, so an item that flips back and forth gets a new id
/// each time.
pub struct Spec<'a> {
    pub bridge: &'a str,
    pub kind: EventType,
    pub key: &'a str,
    pub seq: u64,
    pub generation: u64,
    pub detected: DateTime<Utc>,
    pub previous: Option<Side<'a>>,
    pub data: Option<Side<'a>>,
}

pub fn build(s: Spec<'_>) -> Event {
    let changes = match (s.kind, &s.previous, &s.data) {
        (EventType::Updated, Some(p), Some(d)) => Some(
            serde_json::to_value(json_patch::diff(&aligned(p.value, d.value), d.value))
                .unwrap_or(Value::Null),
        ),
        _ => None,
    };
    Event {
        id: event_id(&s),
        kind: s.kind,
        bridge: s.bridge.to_string(),
        key: s.key.to_string(),
        seq: s.seq,
        timestamp: s.detected.to_rfc3339_opts(SecondsFormat::Millis, true),
        data: s.data.map(|d| d.value.clone()),
        previous: s.previous.map(|p| p.value.clone()),
        changes,
    }
}

/// `previous` with every number that has the value of the number at the same place in `data`
/// written as `data` writes it. Numbers are kept as written, and `1` -> `1.0` is no change
/// (docs/events.md#the-event): the patch must not say it is.
fn aligned(previous: &Value, data: &Value) -> Value {
    fn align(p: &mut Value, d: &Value) {
        match (p, d) {
            (Value::Number(a), Value::Number(b)) if number::same(a, b) => *a = b.clone(),
            (Value::Array(a), Value::Array(b)) => {
                for (x, y) in a.iter_mut().zip(b) {
                    align(x, y);
                }
            }
            (Value::Object(a), Value::Object(b)) => {
                for (k, x) in a.iter_mut() {
                    if let Some(y) = b.get(k) {
                        align(x, y);
                    }
                }
            }
            _ => {}
        }
    }
    let mut p = previous.clone();
    align(&mut p, data);
    p
}

/// `evt_` + 26 base32 characters of a hash of what makes this change this change.
fn event_id(s: &Spec<'_>) -> String {
    let mut h = Sha256::new();
    for part in [
        s.bridge.as_bytes(),
        s.kind.as_str().as_bytes(),
        s.key.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(s.generation.to_be_bytes());
    h.update(s.previous.as_ref().map_or([0; 16], |p| *p.hash));
    h.update(s.data.as_ref().map_or([0; 16], |d| *d.hash));
    let digest = h.finalize();
    format!("evt_{}", base32(&digest[..16]))
}

/// Crockford base32, lowercase, of 128 bits: 26 characters.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let n = u128::from_be_bytes(bytes.try_into().expect("16 bytes"));
    (0..26)
        .rev()
        .map(|i| ALPHABET[((n >> (i * 5)) & 31) as usize] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::hash;
    use serde_json::json;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn updated(prev: &Value, data: &Value, generation: u64) -> Event {
        let (ph, dh) = (hash(prev), hash(data));
        build(Spec {
            bridge: "b",
            kind: EventType::Updated,
            key: "1",
            seq: 42,
            generation,
            detected: at(),
            previous: Some(Side {
                value: prev,
                hash: &ph,
            }),
            data: Some(Side {
                value: data,
                hash: &dh,
            }),
        })
    }

    /// An event id is what a receiver deduplicates on: the same change must keep its id
    /// across versions (a changed id is a duplicate delivery after an upgrade).
    #[test]
    fn event_ids_are_pinned() {
        let prev = json!({"name": "Tokio v1.48.1", "draft": true});
        let data = json!({"name": "Tokio v1.48.1", "draft": false});
        assert_eq!(
            updated(&prev, &data, 41).id,
            "evt_056yynmhmt5m84ztxqh69ej4ej"
        );
        assert_eq!(
            updated(&prev, &data, 42).id,
            "evt_7rf336exzjpqxn0vw8m4mdgsvk"
        );
        let dh = hash(&data);
        let created = build(Spec {
            bridge: "tokio-releases",
            kind: EventType::Created,
            key: "100000000000000000001",
            seq: 1,
            generation: 0,
            detected: at(),
            previous: None,
            data: Some(Side {
                value: &data,
                hash: &dh,
            }),
        });
        assert_eq!(created.id, "evt_5xs4kd404xkxww7pk1pqtx8z8m");
    }

    #[test]
    fn updated_event_has_patch_and_wire_shape() {
        let prev = json!({"name": "Tokio v1.48.1", "draft": true});
        let data = json!({"name": "Tokio v1.48.1", "draft": false});
        let e = updated(&prev, &data, 41);
        assert_eq!(
            e.changes,
            Some(json!([{"op": "replace", "path": "/draft", "value": false}]))
        );
        let wire = serde_json::to_value(&e).unwrap();
        assert_eq!(wire["type"], "item.updated");
        assert_eq!(wire["timestamp"], "2026-11-26T12:00:00.123Z");
        assert_eq!(wire["seq"], 42);
        assert!(e.id.starts_with("evt_") && e.id.len() == 30, "{}", e.id);
    }

    #[test]
    fn the_patch_holds_real_changes_only_with_numbers_as_written() {
        let num = |t: &str| serde_json::from_str::<Value>(t).unwrap();
        let prev = num(r#"{"a": 1, "b": [1.0, 2, 1e2], "n": 100000000000000000001, "z": -0}"#);
        let data = num(r#"{"a": 1.0, "b": [1, 2.0, 100], "n": 100000000000000000002, "z": 0}"#);
        let e = updated(&prev, &data, 1);
        assert_eq!(
            serde_json::to_string(&e.changes).unwrap(),
            r#"[{"op":"replace","path":"/n","value":100000000000000000002}]"#
        );
        // Each side as written.
        assert_eq!(e.previous.unwrap()["b"].to_string(), "[1.0,2,1e+2]");
        assert_eq!(e.data.unwrap()["z"].to_string(), "0");
    }

    #[test]
    fn created_and_deleted_omit_fields() {
        let v = json!({"a": 1});
        let h = hash(&v);
        let side = || {
            Some(Side {
                value: &v,
                hash: &h,
            })
        };
        let mk = |kind, previous, data| {
            build(Spec {
                bridge: "b",
                kind,
                key: "k",
                seq: 1,
                generation: 0,
                detected: at(),
                previous,
                data,
            })
        };
        let c = serde_json::to_value(mk(EventType::Created, None, side())).unwrap();
        assert!(c.get("previous").is_none() && c.get("changes").is_none() && c["data"] == v);
        let d = serde_json::to_value(mk(EventType::Deleted, side(), None)).unwrap();
        assert!(d.get("data").is_none() && d.get("changes").is_none() && d["previous"] == v);
    }

    #[test]
    fn ids_are_stable_for_a_change_and_distinct_across_changes() {
        let (a, b) = (json!({"v": "A"}), json!({"v": "B"}));
        // Re-detected after a crash (same generation): same id.
        assert_eq!(updated(&a, &b, 7).id, updated(&a, &b, 7).id);
        // A -> B -> A -> B: each change in a later commit, all ids distinct.
        let ids = [
            updated(&a, &b, 7).id,
            updated(&b, &a, 8).id,
            updated(&a, &b, 9).id,
        ];
        assert_ne!(ids[0], ids[1]);
        assert_ne!(ids[0], ids[2]);
        assert_ne!(ids[1], ids[2]);
    }

    #[test]
    fn base32_is_crockford() {
        assert_eq!(base32(&[0; 16]), "0".repeat(26));
        assert_eq!(base32(&[0xff; 16]), format!("7{}", "z".repeat(25)));
    }
}
