//! Delivery benchmark: events per second to a fast local receiver over 100 bridges,
//! and the time from commit to 2xx (p50/p99). Everything on 127.0.0.1, one process.
//!
//!     cargo bench --bench delivery [-- BRIDGES ITEMS ROUNDS]
//!
//! Each round changes every item of every bridge upstream, polls all bridges at once through
//! the real `poll_once` (fetch, extract, diff, one sled commit + flush) and lets the real
//! deliverer loops (`run_sink`, one per bridge) POST the signed events. "Commit" is when
//! `poll_once` returned, i.e. after the transaction was flushed to disk.

// A benchmark may panic where a test may: a failed set-up is a failed measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use pollhook::runtime::Ctx;
use pollhook::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{percentile, serve};
use tokio_util::sync::CancellationToken;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;
type Bodies = Arc<Mutex<Vec<String>>>;

fn listing(items: usize, round: usize) -> String {
    let list: Vec<_> = (0..items)
        .map(|i| serde_json::json!({"id": i, "title": format!("item {i}"), "version": round, "tags": ["a", "b"]}))
        .collect();
    serde_json::json!({ "items": list }).to_string()
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let (bridges, items, rounds) = (
        *args.first().unwrap_or(&100),
        *args.get(1).unwrap_or(&20),
        *args.get(2).unwrap_or(&5),
    );

    let arrivals: Arrivals = Arc::default();
    let rx = serve(
        Router::new()
            .fallback(|State(a): State<Arrivals>, h: HeaderMap| async move {
                let id = h
                    .get("webhook-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                a.lock().unwrap().insert(id, Instant::now());
                axum::http::StatusCode::NO_CONTENT
            })
            .with_state(arrivals.clone()),
    )
    .await;
    let bodies: Bodies = Arc::new(Mutex::new(vec![listing(items, 0); bridges]));
    let up = serve(
        Router::new()
            .route(
                "/b/{i}",
                axum::routing::get(|State(b): State<Bodies>, Path(i): Path<usize>| async move {
                    (
                        [("content-type", "application/json")],
                        b.lock().unwrap()[i].clone(),
                    )
                }),
            )
            .with_state(bodies.clone()),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let ctx = Arc::new(Ctx::new(Store::open(dir.path()).unwrap()));
    let sinks = support::sinks(&rx);
    let defs: Vec<Arc<pollhook::config::Bridge>> = (0..bridges)
        .map(|i| {
            support::bridge(&format!(
                "name: b{i}\nschedule: {{every: 1h}}\nsource: {{url: \"{up}/b/{i}\"}}\nitems: {{select: \"$.items[*]\", key: \"$.id\"}}\n{sinks}\n"
            ))
        })
        .collect();
    let stop = CancellationToken::new();
    support::spawn_deliverers(&ctx, &defs, &stop);
    // Baseline: no events.
    poll_all(&ctx, &defs).await;

    let mut latencies = Vec::new();
    let mut total_events = 0usize;
    let mut busy = Duration::ZERO;
    for round in 1..=rounds {
        *bodies.lock().unwrap() = vec![listing(items, round); bridges];
        let start = Instant::now();
        let committed = poll_all(&ctx, &defs).await;
        let expected = committed.len();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let got = {
                let a = arrivals.lock().unwrap();
                committed.keys().filter(|id| a.contains_key(*id)).count()
            };
            if got == expected {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: only {got} of {expected} delivered"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let a = arrivals.lock().unwrap();
        let last = committed.keys().map(|id| a[id]).max().unwrap();
        busy += last - start;
        for (id, at) in &committed {
            latencies.push(a[id].saturating_duration_since(*at));
        }
        total_events += expected;
    }
    stop.cancel();
    latencies.sort();
    println!("delivery benchmark: {bridges} bridges x {items} items, {rounds} rounds");
    println!("| events | events/s | commit->2xx p50 | p99 | max |");
    println!("| --- | --- | --- | --- | --- |");
    println!(
        "| {} | {:.0} | {:.1} ms | {:.1} ms | {:.1} ms |",
        total_events,
        total_events as f64 / busy.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// Polls every bridge at once; returns each emitted event id with the instant its commit was
/// on disk.
async fn poll_all(
    ctx: &Arc<Ctx>,
    defs: &[Arc<pollhook::config::Bridge>],
) -> HashMap<String, Instant> {
    let mut set = tokio::task::JoinSet::new();
    for b in defs {
        let (ctx, b) = (ctx.clone(), b.clone());
        set.spawn(async move {
            let r = pollhook::poll::poll_once(&ctx, &b, true, chrono::Utc::now())
                .await
                .unwrap();
            let at = Instant::now();
            r.events.into_iter().map(|e| (e.id, at)).collect::<Vec<_>>()
        });
    }
    let mut out = HashMap::new();
    while let Some(r) = set.join_next().await {
        out.extend(r.unwrap());
    }
    out
}
