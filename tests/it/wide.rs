//! One wide item (hundreds of thousands of keys, or of CSV columns) keeps a poll within its
//! memory budget (README "Memory": 10× the body + 64 MiB), and its created event arrives
//! whole. The real daemon as a child process polls a local upstream and delivers to a local
//! receiver; its peak RSS (VmHWM) is read once the event has arrived.

use crate::support::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Keys of the wide item besides `id`: enough that a parsed tree of the item (about 150 bytes
/// a key) is well past the budget, few enough for a debug build on a busy machine.
const KEYS: usize = 300_000;

const MIB: f64 = 1024.0 * 1024.0;

/// A receiver for bodies of any size (axum's default stops at 2 MB): every body it got.
async fn big_receiver() -> (String, Arc<Mutex<Vec<Bytes>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .fallback(
            |State(got): State<Arc<Mutex<Vec<Bytes>>>>, body: Bytes| async move {
                got.lock().unwrap().push(body);
                axum::http::StatusCode::NO_CONTENT
            },
        )
        .layer(DefaultBodyLimit::disable())
        .with_state(got.clone());
    (format!("{}/hook", serve(app).await), got)
}

/// A field of `/proc/PID/status` in MiB (`VmHWM`: the peak resident memory so far).
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb / 1024.0
}

/// Runs the daemon over one bridge answering `body`, with `first_poll: emit`, until the
/// receiver has the created event: that event, and the daemon's peak RSS in MiB.
async fn first_poll(body: String, content_type: &'static str, format: &str) -> (Value, f64) {
    let up = Upstream::start().await;
    up.set(200, content_type, &body);
    let (hook, got) = big_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let yaml = BridgeYaml::new(&up.url())
        .every("1h")
        .source(&format!("format: {format}"))
        .source("max_body: 64MiB")
        .source("timeout: 300s")
        .select(if format == "csv" {
            "$[*]"
        } else {
            "$.items[*]"
        })
        .first_poll("emit")
        .sink(&hook)
        .sink_line("signature: none");
    yaml.write(dir.path(), "wide");
    let daemon = Daemon::start(dir.path(), &[]);
    let pid = daemon.child.id().unwrap();
    // Generous: a debug build reads and writes the item several times over on a busy machine.
    eventually(20 * PATIENCE, "the wide item's event", || async {
        if got.lock().unwrap().is_empty() {
            Err(format!("none; logs:\n{}", daemon.logs()))
        } else {
            Ok(())
        }
    })
    .await;
    let peak = status_mib(pid, "VmHWM");
    let logs = daemon.logs();
    let (code, _, _) = daemon.terminate().await;
    assert_eq!(code, 0, "{logs}");
    let got = got.lock().unwrap();
    assert_eq!(got.len(), 1, "one item, one event");
    (serde_json::from_slice(&got[0]).unwrap(), peak)
}

/// The budget of a poll of `body`: 10× its size + 64 MiB.
fn budget(body: &str) -> f64 {
    10.0 * body.len() as f64 / MIB + 64.0
}

/// The created event's data holds every key with its value.
fn assert_whole(event: &Value, value_of: impl Fn(usize) -> Value) {
    assert_eq!(event["type"], "item.created");
    let data = event["data"].as_object().expect("the item as data");
    assert_eq!(data.len(), KEYS + 1, "every key and the id");
    for i in 0..KEYS {
        assert_eq!(data[&format!("k{i}")], value_of(i), "key k{i}");
    }
}

// The upstream and receiver answer on this runtime while the test waits: two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_item_with_many_keys_stays_within_the_poll_budget_and_arrives_whole() {
    let mut body = String::from(r#"{"items":[{"id":1"#);
    for i in 0..KEYS {
        body.push_str(&format!(r#","k{i}":{i}"#));
    }
    body.push_str("}]}");
    let budget = budget(&body);
    let (event, peak) = first_poll(body, "application/json", "json").await;
    assert_whole(&event, Value::from);
    assert!(
        peak <= budget,
        "peak RSS {peak:.0} MiB, over the budget of {budget:.0} MiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_csv_row_with_many_columns_stays_within_the_poll_budget_and_arrives_whole() {
    let mut header = String::from("id");
    let mut row = String::from("1");
    for i in 0..KEYS {
        header.push_str(&format!(",k{i}"));
        row.push_str(&format!(",{}", i % 10));
    }
    let body = format!("{header}\n{row}\n");
    let budget = budget(&body);
    let (event, peak) = first_poll(body, "text/csv", "csv").await;
    assert_whole(&event, |i| Value::from((i % 10).to_string()));
    assert!(
        peak <= budget,
        "peak RSS {peak:.0} MiB, over the budget of {budget:.0} MiB"
    );
}
