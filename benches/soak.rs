//! Disk-use soak (docs/operations.md#disk-use): a multi-megabyte document and 10,000 small
//! items, every one of them changed on every poll, through the real poll path (`poll_once`:
//! fetch, extract, diff, commit) and the real deliverer loops POSTing every event to a local
//! receiver. Prints the state directory's size over time against the live data (the bytes the
//! store holds: `Store::live_bytes`), then goes quiet and prints whether it shrinks back.
//!
//!     cargo bench --bench soak
//!
//! Settings (environment): `SOAK_SECS` (churn, default 180), `SOAK_QUIET_SECS` (default 60),
//! `SOAK_DOC_MB` (default 5.6), `SOAK_ITEMS` (default 10000), `SOAK_PERIOD_MS` (one poll of
//! both bridges at most this often, default 1000).
//!
//! The document bridge is in document mode (no `items.key`): one item, whose every change is
//! an `item.updated` event carrying the old and the new document (a hundredth of its rows
//! change each poll). The items bridge stores every change but emits no `item.updated`: one
//! queue delivers a few thousand events a second here, fewer than 10,000 a poll, and a queue
//! that only grows is live data, not garbage (`SOAK_ITEM_EVENTS=1` emits them anyway). It
//! counts absences (`after_missing: 2`), so the body of its listing is kept for 304s too.

// A benchmark may panic where a test may: a failed set-up is a failed measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use pollhook::runtime::Ctx;
use pollhook::store::Store;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::serve;
use tokio_util::sync::CancellationToken;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The upstream's two bodies for one round, with their ETag.
struct Bodies {
    round: u64,
    doc: Arc<String>,
    items: Arc<String>,
}

fn document(round: u64, bytes: usize) -> String {
    let mut rows = Vec::new();
    let mut len = 0;
    let mut i = 0;
    while len < bytes {
        // A hundredth of the rows change each round, and the round number.
        let changed = if i % 100 == round % 100 { round } else { 0 };
        let row = format!("row {i}, changed in round {changed}: lorem ipsum dolor sit amet");
        len += row.len() + 3;
        rows.push(row);
        i += 1;
    }
    serde_json::json!({"info": {"round": round, "rows": rows}}).to_string()
}

fn listing(round: u64, items: usize) -> String {
    let list: Vec<_> = (0..items)
        .map(|i| serde_json::json!({"id": i, "title": format!("item {i}"), "round": round}))
        .collect();
    serde_json::json!({ "items": list }).to_string()
}

/// Bytes the files under `dir` take on disk (allocated blocks, directories included).
fn dir_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(md) = e.metadata() else { continue };
        bytes += md.blocks() * 512;
        if md.is_dir() {
            bytes += dir_bytes(&e.path());
        }
    }
    bytes
}

/// The state directory's bytes on disk, the files in sled's `blobs/` and pollhook's value
/// files.
fn disk_use(dir: &Path) -> (u64, usize, usize) {
    let count = |d: &Path| std::fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
    (
        dir_bytes(dir),
        count(&dir.join("pollhook.sled").join("blobs")),
        count(&dir.join("pollhook.values")),
    )
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

#[tokio::main]
async fn main() {
    let churn = Duration::from_secs(env("SOAK_SECS", 180));
    let quiet = Duration::from_secs(env("SOAK_QUIET_SECS", 60));
    let doc_bytes = (env("SOAK_DOC_MB", 5.6) * 1e6) as usize;
    let items: usize = env("SOAK_ITEMS", 10_000);
    let period = Duration::from_millis(env("SOAK_PERIOD_MS", 1000));
    let item_events = env("SOAK_ITEM_EVENTS", 0) == 1;

    let delivered = Arc::new(AtomicU64::new(0));
    let rx = serve(
        Router::new()
            .fallback(
                |State(n): State<Arc<AtomicU64>>, _body: axum::body::Bytes| async move {
                    n.fetch_add(1, Ordering::Relaxed);
                    axum::http::StatusCode::NO_CONTENT
                },
            )
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(delivered.clone()),
    )
    .await;
    let bodies = Arc::new(Mutex::new(Bodies {
        round: 0,
        doc: Arc::new(document(0, doc_bytes)),
        items: Arc::new(listing(0, items)),
    }));
    let answer = |doc: bool| {
        move |State(b): State<Arc<Mutex<Bodies>>>, h: HeaderMap| async move {
            let (etag, body) = {
                let b = b.lock().unwrap();
                let body = if doc { &b.doc } else { &b.items };
                (format!("\"r{}\"", b.round), body.clone())
            };
            if h.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
                return axum::http::StatusCode::NOT_MODIFIED.into_response();
            }
            let headers = [
                ("content-type", "application/json".to_string()),
                ("etag", etag),
            ];
            (headers, body.as_str().to_owned()).into_response()
        }
    };
    use axum::response::IntoResponse;
    let up = serve(
        Router::new()
            .route("/doc", axum::routing::get(answer(true)))
            .route("/items", axum::routing::get(answer(false)))
            .with_state(bodies.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let ctx = Arc::new(Ctx::new(store.clone()));
    let sink = support::sinks(&rx);
    let defs = [
        format!(
            "name: doc\nschedule: {{every: 1h}}\nsource: {{url: \"{up}/doc\"}}\nitems: {{select: \"$.info\"}}\n{sink}\n"
        ),
        format!(
            "name: items\nschedule: {{every: 1h}}\nsource: {{url: \"{up}/items\"}}\nitems: {{select: \"$.items[*]\", key: \"$.id\"}}\nemit: {{events: {events}, deletes: {{after_missing: 2}}}}\n{sink}\n",
            events = if item_events { "[created, updated, deleted]" } else { "[created, deleted]" },
        ),
    ]
    .map(|yaml| support::bridge(&yaml));
    let stop = CancellationToken::new();
    support::spawn_deliverers(&ctx, &defs, &stop);

    println!(
        "disk soak: a {:.1} MB document and {items} items, all changed every poll, {}s churn then {}s quiet",
        mb(doc_bytes as u64),
        churn.as_secs(),
        quiet.as_secs()
    );
    println!(
        "| t (s) | phase | polls | events delivered | outbox | live MB | state dir MB | dir / live | blobs | value files |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let start = Instant::now();
    let mut polls = 0u64;
    let mut next_report = Duration::ZERO;
    let mut worst: f64 = 0.0;
    let mut baseline = None;
    let report = |phase: &str, polls: u64, worst: &mut f64| {
        let (bytes, blobs, files) = disk_use(dir.path());
        let live = store.live_bytes().unwrap();
        let outbox = store.outbox_all().map(|o| o.len()).unwrap_or(0);
        let ratio = bytes as f64 / live as f64;
        *worst = worst.max(ratio);
        println!(
            "| {:.0} | {phase} | {polls} | {} | {outbox} | {:.1} | {:.1} | {ratio:.2} | {blobs} | {files} |",
            start.elapsed().as_secs_f64(),
            delivered.load(Ordering::Relaxed),
            mb(live),
            mb(bytes),
        );
        (bytes, live)
    };
    while start.elapsed() < churn {
        let began = Instant::now();
        if polls > 0 {
            let round = polls;
            let (doc, list) = tokio::task::spawn_blocking(move || {
                (document(round, doc_bytes), listing(round, items))
            })
            .await
            .unwrap();
            *bodies.lock().unwrap() = Bodies {
                round,
                doc: Arc::new(doc),
                items: Arc::new(list),
            };
        }
        for b in &defs {
            pollhook::poll::poll_once(&ctx, b, true, chrono::Utc::now())
                .await
                .unwrap();
        }
        polls += 1;
        if baseline.is_none() {
            baseline = Some(report("first poll", polls, &mut worst));
        }
        if start.elapsed() >= next_report {
            report("churn", polls, &mut worst);
            next_report += Duration::from_secs(10);
        }
        if let Some(rest) = period.checked_sub(began.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    let churned = report("churn ends", polls, &mut worst);
    let quiet_start = Instant::now();
    while quiet_start.elapsed() < quiet {
        tokio::time::sleep(Duration::from_secs(10)).await;
        report("quiet", polls, &mut worst);
    }
    stop.cancel();
    let (bytes, live) = report("quiet ends", polls, &mut worst);
    drop(ctx);
    drop(store);
    // Let the deliverer tasks drop their clones of the store, then open it again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (closed, _, _) = disk_use(dir.path());
    let reopened = Store::open(dir.path());
    let (after_open, blobs, files) = disk_use(dir.path());
    if let Err(e) = reopened {
        println!("could not open the store again: {e}");
    }
    let (first, first_live) = baseline.unwrap();
    println!();
    println!(
        "after the first poll: {:.1} MB for {:.1} MB live ({:.2}x); end of churn: {:.1} MB ({:.2}x); end of quiet: {:.1} MB for {:.1} MB live ({:.2}x)",
        mb(first),
        mb(first_live),
        first as f64 / first_live as f64,
        mb(churned.0),
        churned.0 as f64 / churned.1 as f64,
        mb(bytes),
        mb(live),
        bytes as f64 / live as f64
    );
    println!(
        "closed: {:.1} MB; opened again: {:.1} MB, {blobs} blobs, {files} value files; worst ratio {worst:.2}x over {polls} polls",
        mb(closed),
        mb(after_open)
    );
}
