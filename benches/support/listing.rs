//! The upstream and the receiver of the benches that run the daemon (scale, handoff): endpoint
//! `i` (`/e/{i}`) serves a listing of `items` items with an ETag, item 0 carrying the
//! endpoint's version; the receiver (`/hook`) notes each event.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock Unix milliseconds.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The release binary next to the bench's own (target/release/deps/NAME-… →
/// target/release/pollhook), or the one `POLLHOOK_BENCH_BIN` names.
pub fn pollhook_bin() -> PathBuf {
    // Another build of pollhook for paired runs (A B A B): `POLLHOOK_BENCH_BIN=/path/pollhook`.
    if let Some(bin) = std::env::var_os("POLLHOOK_BENCH_BIN") {
        return PathBuf::from(bin);
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("pollhook");
    assert!(
        bin.exists(),
        "build it first: cargo build --release ({})",
        bin.display()
    );
    bin
}

/// The upstream: endpoint i serves `items` items; item 0 carries the endpoint's version.
pub struct Upstream {
    pub items: usize,
    pub versions: Vec<AtomicU64>,
    /// (endpoint, the endpoint's previous arrival, this arrival; unix ms) of every request while
    /// `recording`: the previous arrival tells which slot this request was planned for.
    pub arrivals: Mutex<Vec<(u32, u64, u64)>>,
    /// The last arrival per endpoint (0: none yet), kept while not recording too.
    pub last: Vec<AtomicU64>,
    pub recording: AtomicBool,
    pub requests: AtomicU64,
    /// With `by_shard`: (endpoint, the `X-Shard` header, unix ms) of every request.
    pub by_shard: Option<Mutex<Vec<(u32, u8, u64)>>>,
}

impl Upstream {
    /// `n` endpoints of `items` items each, at version 0.
    pub fn new(n: usize, items: usize, by_shard: bool) -> Arc<Upstream> {
        Arc::new(Upstream {
            items,
            versions: (0..n).map(|_| AtomicU64::new(0)).collect(),
            arrivals: Mutex::default(),
            last: (0..n).map(|_| AtomicU64::new(0)).collect(),
            recording: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            by_shard: by_shard.then(Mutex::default),
        })
    }

    /// Serves it on 127.0.0.1; its base URL.
    pub async fn serve(self: &Arc<Upstream>) -> String {
        super::serve(
            Router::new()
                .route("/e/{i}", axum::routing::get(upstream_get))
                .with_state(self.clone()),
        )
        .await
    }
}

/// Endpoint `i`'s listing at `version`.
pub fn endpoint_body(i: usize, items: usize, version: u64) -> String {
    let items: Vec<_> = (0..items)
        .map(|k| {
            serde_json::json!({
                "id": k,
                "title": format!("endpoint {i} item {k}"),
                "v": if k == 0 { version } else { 0 },
                "tags": ["alpha", "beta"],
                "score": 1.5,
            })
        })
        .collect();
    serde_json::json!({ "items": items }).to_string()
}

async fn upstream_get(
    State(u): State<Arc<Upstream>>,
    Path(i): Path<usize>,
    h: HeaderMap,
) -> Response {
    u.requests.fetch_add(1, Ordering::Relaxed);
    let now = now_ms();
    let prev = u.last[i].swap(now, Ordering::Relaxed);
    if u.recording.load(Ordering::Relaxed) && prev != 0 {
        u.arrivals.lock().unwrap().push((i as u32, prev, now));
    }
    if let Some(log) = &u.by_shard {
        let shard = h
            .get("x-shard")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(u8::MAX);
        log.lock().unwrap().push((i as u32, shard, now));
    }
    let v = u.versions[i].load(Ordering::Relaxed);
    let etag = format!("\"{i}-{v}\"");
    if h.get("if-none-match").and_then(|x| x.to_str().ok()) == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response();
    }
    (
        [
            ("content-type", "application/json".to_string()),
            ("etag", etag),
        ],
        endpoint_body(i, u.items, v),
    )
        .into_response()
}

/// An event as the receiver keeps it: (bridge, type, item 0's version).
pub type Kept = (String, String, Option<u64>);

/// The receiver: arrival time of each (endpoint, version) seen in an event, how many events,
/// and with `kept` every event's (bridge, type, item 0's version).
#[derive(Default)]
pub struct Receiver {
    pub seen: Mutex<HashMap<(u32, u64), u64>>,
    pub events: AtomicU64,
    pub kept: Option<Mutex<Vec<Kept>>>,
}

impl Receiver {
    /// A receiver that keeps every event too (`kept`).
    pub fn keeping() -> Receiver {
        Receiver {
            kept: Some(Mutex::default()),
            ..Default::default()
        }
    }

    /// Serves it on 127.0.0.1; its base URL.
    pub async fn serve(self: &Arc<Receiver>) -> String {
        super::serve(
            Router::new()
                .route("/hook", axum::routing::post(receive))
                .with_state(self.clone()),
        )
        .await
    }
}

async fn receive(State(r): State<Arc<Receiver>>, body: axum::body::Bytes) -> StatusCode {
    let at = now_ms();
    r.events.fetch_add(1, Ordering::Relaxed);
    if let Ok(e) = serde_json::from_slice::<serde_json::Value>(&body) {
        let bridge = e["bridge"].as_str().unwrap_or_default();
        let endpoint = bridge.get(1..).and_then(|b| b.parse::<u32>().ok());
        let version = e["data"]["v"].as_u64();
        if let (Some(i), Some(v)) = (endpoint, version) {
            r.seen.lock().unwrap().entry((i, v)).or_insert(at);
        }
        if let Some(kept) = &r.kept {
            let ty = e["type"].as_str().unwrap_or_default().to_string();
            kept.lock().unwrap().push((bridge.to_string(), ty, version));
        }
    }
    StatusCode::NO_CONTENT
}
