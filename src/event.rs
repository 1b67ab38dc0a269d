//! Change -> Event: the webhook body of docs/events.md#the-event, with its id and JSON Patch. Pure:
//! the time of detection is an argument.

use crate::extract::Hash;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
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
    /// `emit.quiet`: the bridge's data has not changed for that long although its polls
    /// succeed (docs/events.md#quiet-events).
    #[serde(rename = "bridge.quiet")]
    Quiet,
    /// `emit.quiet`: the first change after a `bridge.quiet`.
    #[serde(rename = "bridge.active")]
    Active,
    /// `emit.shape`: the items' shape drifted from the one learnt
    /// (docs/events.md#shape-events).
    #[serde(rename = "bridge.shape_changed")]
    ShapeChanged,
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
            EventType::Quiet => "bridge.quiet",
            EventType::Active => "bridge.active",
            EventType::ShapeChanged => "bridge.shape_changed",
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
    pub data: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub previous: Option<Json>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub changes: Option<Json>,
}

impl Event {
    /// The event as JSON text (the webhook body), written into room for about its size: a
    /// wide item's body is not grown by doubling.
    pub fn body(&self) -> String {
        let sides: usize = [&self.data, &self.previous, &self.changes]
            .into_iter()
            .flatten()
            .map(|j| j.get().len())
            .sum();
        let mut out = Vec::with_capacity(sides + 2 * (self.bridge.len() + self.key.len()) + 256);
        // Writing into a Vec cannot fail, nor can serialising an event (its JSON is text).
        let _ = serde_json::to_writer(&mut out, self);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A JSON value in an event, kept as its compact text (an item's is its canonical text: keys
/// in order, as serde_json writes a `Value`) and written into the body as it is. An item is
/// written once and never held as a tree here: a wide item's tree is several times its text.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json(Box<RawValue>);

impl Json {
    /// JSON text, kept as it is; the error if it is not JSON.
    pub fn from_text(text: String) -> Result<Json, serde_json::Error> {
        RawValue::from_string(text).map(Json)
    }

    /// A value's compact text.
    pub fn from_value(v: &Value) -> Json {
        // A Value always serialises; null would stand for one that did not.
        Json(serde_json::value::to_raw_value(v).unwrap_or_else(|_| RawValue::NULL.to_owned()))
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The value parsed (for a patch, a test).
    pub fn value(&self) -> Result<Value, serde_json::Error> {
        serde_json::from_str(self.get())
    }

    /// The text, without a copy.
    pub fn into_text(self) -> String {
        String::from(Box::<str>::from(self.0))
    }
}

impl PartialEq for Json {
    fn eq(&self, other: &Json) -> bool {
        self.get() == other.get()
    }
}

/// One side of a change: the item's canonical value and its hash.
pub struct Side<'a> {
    pub value: &'a Json,
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
        (EventType::Updated, Some(p), Some(d)) => Some(patch(p.value, d.value)),
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

/// The JSON Patch from `previous` to `data`, numbers compared by value (`1` -> `1.0` is no
/// change), made from their texts (see `extract::patch`); null if either cannot be
/// read, which text made by pollhook always can.
fn patch(previous: &Json, data: &Json) -> Json {
    crate::extract::patch(previous.get(), data.get())
        .ok()
        .and_then(|text| Json::from_text(text).ok())
        .unwrap_or_else(|| Json::from_value(&Value::Null))
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
    let digest: [u8; 32] = h.finalize().into();
    let mut first = [0; 16];
    first.copy_from_slice(&digest[..16]);
    format!("evt_{}", base32(&first))
}

/// Crockford base32, lowercase, of 128 bits: 26 characters.
fn base32(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let n = u128::from_be_bytes(*bytes);
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
        let (prev, data) = (&Json::from_value(prev), &Json::from_value(data));
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
        let data = Json::from_value(&data);
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
            e.changes.as_ref().unwrap().value().unwrap(),
            json!([{"op": "replace", "path": "/draft", "value": false}])
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
        assert_eq!(
            e.previous.unwrap().value().unwrap()["b"].to_string(),
            "[1.0,2,1e+2]"
        );
        assert_eq!(e.data.unwrap().value().unwrap()["z"].to_string(), "0");
    }

    #[test]
    fn created_and_deleted_omit_fields() {
        let v = json!({"a": 1});
        let h = hash(&v);
        let j = Json::from_value(&v);
        let side = || {
            Some(Side {
                value: &j,
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
