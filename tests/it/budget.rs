//! The memory budget of all polls together (`--max-poll-memory`, docs/scaling.md#memory): the
//! real daemon as a child process polls big answers from a local upstream, half of them with a
//! `Content-Length` and half streamed in chunks without one. Its peak RSS (VmHWM) is read once
//! every event has arrived.

use crate::support::*;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use serde_json::Value;
use std::sync::{Arc, Mutex};

const MIB: u64 = 1 << 20;

/// The bytes of each answer of the crowd.
const BODY: usize = 20_000_000;

/// Items in each answer: their events say every poll completed.
const ITEMS: usize = 3;

/// Bridges polling at once.
const BRIDGES: usize = 20;

/// The budget the crowd runs under: room for one of its polls at a time (each needs about
/// four times its body, 76 MiB), where without it the first polls of all twenty would hold
/// their bodies together (sixteen at once: the per-host limit; a peak of 275 MiB here).
const BUDGET: u64 = 96 * MIB;

/// The daemon beyond its polls: the slack over the budget the peak may take.
const SLACK: u64 = 96 * MIB;

/// A field of `/proc/PID/status` in bytes (`VmHWM`: the peak resident memory so far).
pub(crate) fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    kb * 1024
}

/// Bridge `n`'s answer: ITEMS items (`n-0`, `n-1`, …) and padding to `bytes`.
fn answer(n: usize, bytes: usize, rev: u32) -> Bytes {
    let items: Vec<String> = (0..ITEMS)
        .map(|k| format!(r#"{{"id":"{n}-{k}","rev":{rev}}}"#))
        .collect();
    let head = format!(r#"{{"items":[{}],"pad":""#, items.join(","));
    let mut body = String::with_capacity(bytes + 16);
    body.push_str(&head);
    body.extend(std::iter::repeat_n(
        'x',
        bytes.saturating_sub(head.len() + 2),
    ));
    body.push_str("\"}");
    Bytes::from(body)
}

/// The upstream: `/doc/N` answers bridge N's body; odd N in chunks of 1 MiB without a
/// `Content-Length`.
async fn upstream(bodies: Arc<Vec<Bytes>>) -> String {
    let app = Router::new()
        .route(
            "/doc/{n}",
            axum::routing::get(
                |State(bodies): State<Arc<Vec<Bytes>>>, Path(n): Path<usize>| async move {
                    let body = bodies[n].clone();
                    let r =
                        axum::http::Response::builder().header("content-type", "application/json");
                    if n % 2 == 0 {
                        return r.body(Body::from(body)).unwrap();
                    }
                    let chunks = (0..body.len())
                        .step_by(MIB as usize)
                        .map(|at| body.slice(at..body.len().min(at + MIB as usize)))
                        .collect();
                    r.body(Body::new(Chunks(chunks))).unwrap()
                },
            ),
        )
        .with_state(bodies);
    serve(app).await
}

/// A body of chunks whose length is not told: sent with `Transfer-Encoding: chunked`.
pub(crate) struct Chunks(pub(crate) std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}

/// The gauge `name` in a `/metrics` text.
fn gauge(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

// The upstream and receiver answer on this runtime while the test waits: two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_big_answers_at_once_complete_within_the_memory_budget() {
    let bodies: Vec<Bytes> = (0..BRIDGES).map(|n| answer(n, BODY, 0)).collect();
    let up = upstream(Arc::new(bodies)).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    for n in 0..BRIDGES {
        BridgeYaml::new(&format!("{up}/doc/{n}"))
            .every("1h")
            .source("max_body: 32MiB")
            .source("timeout: 300s")
            .first_poll("emit")
            .sink(&rx.url())
            .sink_line("signature: none")
            .write(dir.path(), &format!("crowd-{n}"));
    }
    let port = free_port();
    let admin = format!("127.0.0.1:{port}");
    let budget = BUDGET.to_string();
    let daemon = Daemon::start_args(
        dir.path(),
        &[],
        &["--admin", &admin, "--max-poll-memory", &budget],
    );
    let pid = daemon.child.id().unwrap();
    // Polls wait in line for their share, and the share held never passes the budget.
    let held = Arc::new(Mutex::new(0f64));
    let _ = rustls::crypto::ring::default_provider().install_default();
    eventually(20 * PATIENCE, "a poll waiting for its share", || async {
        let text = match reqwest::get(format!("http://{admin}/metrics")).await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => return Err(format!("no metrics yet ({e})")),
        };
        let bytes = gauge(&text, "pollhook_poll_memory_bytes").unwrap_or(0.0);
        let mut most = held.lock().unwrap();
        *most = most.max(bytes);
        match gauge(&text, "pollhook_poll_memory_waiting") {
            Some(w) if w >= 1.0 => Ok(()),
            w => Err(format!("waiting {w:?}; logs:\n{}", daemon.logs())),
        }
    })
    .await;
    // Generous: a debug build checks and reads 400 MB on a busy machine.
    let events = eventually(20 * PATIENCE, "every bridge's events", || async {
        let got = rx.received();
        if got.len() >= BRIDGES * ITEMS {
            Ok(got)
        } else {
            Err(format!("{} events; logs:\n{}", got.len(), daemon.logs()))
        }
    })
    .await;
    let peak = status_bytes(pid, "VmHWM");
    let logs = daemon.logs();
    let (code, _, _) = daemon.terminate().await;
    assert_eq!(code, 0, "{logs}");
    let mut keys: Vec<String> = events
        .iter()
        .map(|r| {
            let e: Value = r.json();
            assert_eq!(e["type"], "item.created");
            format!(
                "{} {}",
                e["bridge"].as_str().unwrap(),
                e["key"].as_str().unwrap()
            )
        })
        .collect();
    keys.sort();
    let mut want: Vec<String> = (0..BRIDGES)
        .flat_map(|n| (0..ITEMS).map(move |k| format!("crowd-{n} {n}-{k}")))
        .collect();
    want.sort();
    assert_eq!(keys, want, "each item's event once");
    assert!(!logs.contains("failed"), "{logs}");
    let most = *held.lock().unwrap();
    assert!(most <= BUDGET as f64, "polls held {most} bytes");
    assert!(
        peak <= BUDGET + SLACK,
        "peak RSS {} MiB, over the budget of {} MiB + {} MiB",
        peak / MIB,
        BUDGET / MIB,
        SLACK / MIB
    );
}

/// An answer that needs more than the whole budget fails with a reason that names the bridge,
/// the URL and the flag, and stores nothing: with a budget raised, the next poll emits what
/// changed, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_beyond_the_whole_budget_fails_clearly_and_loses_nothing() {
    let body = Arc::new(Mutex::new(answer(0, 100_000, 0)));
    let served = body.clone();
    let app = Router::new().route(
        "/doc",
        axum::routing::get(move || {
            let b = served.lock().unwrap().clone();
            async move { ([("content-type", "application/json")], b) }
        }),
    );
    let up = serve(app).await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&format!("{up}/doc"))
        .every("1s")
        .source("max_body: 32MiB")
        .first_poll("emit")
        .sink(&rx.url())
        .sink_line("signature: none")
        .write(dir.path(), "big");
    let small = ["--max-poll-memory", "1MiB"];
    let daemon = Daemon::start_args(dir.path(), &[], &[&["--admin", "off"][..], &small].concat());
    eventually(PATIENCE, "the first poll's events", || async {
        match rx.received().len() {
            ITEMS => Ok(()),
            n => Err(format!("{n} events; logs:\n{}", daemon.logs())),
        }
    })
    .await;
    // The answer grows past what the whole budget holds, and its items change.
    *body.lock().unwrap() = answer(0, 2_000_000, 1);
    let line = eventually(PATIENCE, "the poll's failure", || async {
        let logs = daemon.logs();
        logs.lines()
            .find(|l| l.contains("failed (memory)"))
            .map(str::to_string)
            .ok_or(logs)
    })
    .await;
    let (code, _, _) = daemon.terminate().await;
    assert_eq!(code, 0);
    for part in [
        "poll big: failed (memory)",
        // 4 bytes a byte of its 2 MB: 7.6 MiB.
        &format!("{up}/doc: the poll needs about 8 MiB of memory"),
        "more than `--max-poll-memory` (1 MiB) allows all polls together",
    ] {
        assert!(line.contains(part), "{part:?} not in {line}");
    }
    assert_eq!(
        rx.received().len(),
        ITEMS,
        "nothing emitted by the failed polls"
    );
    // With room, the next poll finds every change, once.
    let daemon = Daemon::start_args(dir.path(), &[], &["--admin", "off"]);
    let got = eventually(PATIENCE, "the updates", || async {
        let got = rx.received();
        if got.len() >= 2 * ITEMS {
            Ok(got)
        } else {
            Err(format!("{} events; logs:\n{}", got.len(), daemon.logs()))
        }
    })
    .await;
    let (code, _, _) = daemon.terminate().await;
    assert_eq!(code, 0);
    let updated: Vec<Value> = got[ITEMS..].iter().map(|r| r.json()).collect();
    assert_eq!(updated.len(), ITEMS, "{updated:?}");
    for e in updated {
        assert_eq!(e["type"], "item.updated");
        assert_eq!(e["data"]["rev"], 1);
    }
}
