//! What the daemon knows of each bridge, in memory: its recent polls ([`BridgeStatus`], for
//! `status` and the admin API) and which of its tasks ended on their own (for `/healthz`).

use super::lock::lock;
use chrono::serde::ts_milliseconds_option;
use chrono::{DateTime, Utc};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Mutex;

/// What the daemon knows about a bridge's recent polls (in memory; for `status` and the
/// admin API).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct BridgeStatus {
    /// When the last poll finished.
    #[serde(rename = "last_poll_ms", with = "ts_milliseconds_option", default)]
    pub last_poll: Option<DateTime<Utc>>,
    /// `ok`, `baseline`, `not_modified` or `failed` (a word of the code's own, not copied per
    /// poll).
    pub last_result: Option<Cow<'static, str>>,
    /// The reason of the last failure (redacted).
    pub last_error: Option<String>,
    pub last_duration_ms: Option<u64>,
    /// The next planned poll.
    #[serde(rename = "next_poll_ms", with = "ts_milliseconds_option", default)]
    pub next_poll: Option<DateTime<Utc>>,
    /// Items in the last successful listing.
    pub items: Option<usize>,
    /// Until when the source asked us not to poll (rate limit).
    #[serde(rename = "paused_until_ms", with = "ts_milliseconds_option", default)]
    pub paused_until: Option<DateTime<Utc>>,
    pub polls: u64,
    pub failures: u64,
    /// How often one of the bridge's tasks ended on its own (a panic) and was started again.
    pub restarts: u64,
    /// Why it last did (redacted).
    pub last_crash: Option<String>,
}

/// Every bridge's status, and the tasks that ended on their own.
#[derive(Default)]
pub struct Board {
    /// Per bridge, what its last polls did.
    status: Mutex<HashMap<String, BridgeStatus>>,
    /// Bridges whose task ended on its own (not stopped): the bridge is not being polled or
    /// delivered, which `/healthz` reports.
    ended: Mutex<HashMap<(String, &'static str), String>>,
}

impl Board {
    /// Changes a bridge's status in place (its name is copied only the first time).
    pub fn update(&self, bridge: &str, f: impl FnOnce(&mut BridgeStatus)) {
        let mut all = lock(&self.status);
        match all.get_mut(bridge) {
            Some(s) => f(s),
            None => f(all.entry(bridge.to_string()).or_default()),
        }
    }

    /// Until when the source asked us not to poll the bridge, as last recorded (read in
    /// place: no copy of the status on every poll).
    pub fn paused_until(&self, bridge: &str) -> Option<DateTime<Utc>> {
        lock(&self.status).get(bridge).and_then(|s| s.paused_until)
    }

    /// The items of the bridge's last successful listing, if it has had one.
    pub fn items(&self, bridge: &str) -> Option<usize> {
        lock(&self.status).get(bridge).and_then(|s| s.items)
    }

    pub fn status(&self, bridge: &str) -> BridgeStatus {
        lock(&self.status).get(bridge).cloned().unwrap_or_default()
    }

    /// Records that one of a bridge's tasks ended on its own, and why (shown by `/healthz`
    /// until it runs again).
    pub fn task_ended(&self, bridge: &str, task: &'static str, why: String) {
        lock(&self.ended).insert((bridge.to_string(), task), why);
    }

    /// Forgets that one of a bridge's tasks ended (it was started again).
    pub fn task_restarted(&self, bridge: &str, task: &'static str) {
        lock(&self.ended).remove(&(bridge.to_string(), task));
    }

    /// Forgets that any of a bridge's tasks ended (the bridge is started anew, or stopped).
    pub fn forget_ended(&self, bridge: &str) {
        lock(&self.ended).retain(|(b, _), _| b != bridge);
    }

    /// The bridges whose task ended, as `/healthz` names them, in order.
    pub fn ended(&self) -> Vec<String> {
        let mut ended: Vec<String> = lock(&self.ended)
            .iter()
            .map(|((b, _), why)| format!("bridge `{b}`: {why}"))
            .collect();
        ended.sort();
        ended
    }
}
