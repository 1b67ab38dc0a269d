//! What the admin API answers, typed: the server builds these and the CLI's client reads them,
//! so a field renamed on one side fails to build instead of printing `null` on the other.

use crate::event::EventType;
use crate::runtime::BridgeStatus;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `GET /v1/bridges`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Bridges {
    pub bridges: Vec<BridgeView>,
    /// What `/healthz` says: healthy, or the reasons it is not.
    pub healthy: bool,
    pub problems: Vec<String>,
}

/// One bridge, as an operator may see it: URLs redacted, sinks by origin only. The store's
/// figures are `None` while the store cannot be read.
#[derive(Debug, Serialize, Deserialize)]
pub struct BridgeView {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub schedule: String,
    pub url: String,
    pub sinks: Vec<SinkView>,
    pub seq: Option<u64>,
    pub baselined: Option<bool>,
    pub status: BridgeStatus,
    pub outbox: Option<usize>,
    pub dead_letters: Option<usize>,
    /// While the bridge waits for its state from another shard (docs/scaling.md#while-waiting):
    /// `waiting for handoff from shard K`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handoff: Option<String>,
    /// While its polls are held by `emit.shape: hold` (docs/testing-bridges.md#shape-drift):
    /// `held: $.name gone (was string)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SinkView {
    pub id: String,
    pub url: String,
}

/// `POST /v1/bridges/{name}/poll`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Polled {
    pub bridge: String,
    pub commit: bool,
    pub baseline: bool,
    pub items: usize,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// All the events; `events` holds the first ones only (a first poll may emit a million).
    pub events_total: usize,
    pub events: Vec<serde_json::Value>,
    /// With `?render=true`: the requests the events would make, sink by sink
    /// (docs/configuration.md#trying-a-sink).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<crate::deliver::trial::Planned>,
}

/// `POST /v1/bridges/{name}/send-test[?sink=URL]`: each sink's answer to a `bridge.test`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TestSent {
    pub bridge: String,
    pub answers: Vec<crate::deliver::trial::Answer>,
}

/// `POST /v1/handoff/{name}/skip`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Skipped {
    pub bridge: String,
}

/// `POST /v1/bridges/{name}/reset`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Reset {
    pub bridge: String,
    pub items_forgotten: usize,
}

/// `POST /v1/bridges/{name}/resync`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Resynced {
    pub bridge: String,
    pub queued: usize,
}

/// `POST /v1/bridges/{name}/accept-shape`: the changes accepted, one line each.
#[derive(Debug, Serialize, Deserialize)]
pub struct ShapeAccepted {
    pub bridge: String,
    pub changes: Vec<String>,
}

/// `GET /v1/dead-letters`.
#[derive(Debug, Serialize, Deserialize)]
pub struct DeadLetters {
    pub dead_letters: Vec<LetterView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LetterView {
    /// `<event id>.<sink id>`: what replay and drop take.
    pub id: String,
    pub bridge: String,
    pub sink: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub seq: u64,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub dead_at_ms: i64,
}

/// `POST /v1/dead-letters/{id}/replay`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Replayed {
    pub replayed: Vec<String>,
}

/// `DELETE /v1/dead-letters/{id}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Dropped {
    pub dropped: Vec<String>,
}

/// Every error: a status code and this.
#[derive(Debug, Serialize, Deserialize)]
pub struct Failure {
    pub error: String,
}
