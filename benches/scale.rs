//! Scale benchmark: many bridges on one small server, everything on 127.0.0.1.
//!
//!     cargo bench --bench scale [-- all|scale|idle304|big|big-wide|big-many|one-wide|idle]
//!         [BRIDGES] [SECONDS] [--bridges N] [--every 10s] [--seconds 60] [--changing 0.01]
//!
//! - `scale`: a fast upstream serving BRIDGES (default 10,000) JSON endpoints with ETags and a
//!   fast receiver; the real `pollhook run` polls each `--every` (default 10 s: 1,000 polls/s)
//!   while a fraction (`--changing`, default 0.01) of the endpoints change per interval.
//!   Reported over SECONDS (default 60) after a warm-up:
//!   polls/s, schedule lag p50/p99 (request arrival minus planned slot), CPU seconds per 1,000
//!   polls, peak RSS, change-to-webhook latency p50/p99, events lost. Then a bare reqwest loop
//!   (this binary, `bare` mode) makes the same requests on the same schedule with the same
//!   ETags and no diffing, and pollhook's CPU per poll is given as a ratio to it.
//! - `big`: one bridge whose answer is a big document, 100,000 items of ~340 bytes (34 MB,
//!   `big-wide`) and 1,000,000 items of ~24 bytes (24 MB, `big-many`): time and peak RSS of
//!   `pollhook poll --commit` for the baseline, a poll that changes 1%, one that changes
//!   nothing (200, then 304), and a first poll with `first_poll: emit`, against the goal of
//!   10x the body plus 64 MiB.
//! - `one-wide`: one item of 1,000,000 keys (JSON), and one CSV row of 1,000,000 columns:
//!   time and peak RSS of a first poll with `first_poll: emit` (`pollhook poll --commit`),
//!   against the same goal. `one-wide KEYS` sets the keys.
//! - `idle304`: `scale` with 500 bridges every 5 s and nothing changing (every poll a 304),
//!   unless told otherwise: the CPU of the quiet path, per poll and against the bare loop.
//! - `idle`: RSS of the daemon with 1,000 bridges loaded and nothing changing.
//! - `serve DIR`: only the upstream and the receiver of `scale` (`--bridges`, `--every`),
//!   with the bridge files in `DIR/bridges`, until interrupted: for running the daemon by hand
//!   under a profiler (docs/benchmarks.md#profiling).
//!
//! pollhook runs as a child process so that its CPU and memory are its own; the upstream and
//! the receiver share the same 2 cores, as they would on one small server.

// A benchmark may panic where a test may: a failed set-up is a failed measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::listing::{Receiver, Upstream, now_ms, pollhook_bin};
use support::{percentile, serve};

fn bad<T>(name: &str, value: &str, e: impl std::fmt::Display) -> T {
    panic!("--{name}: cannot read `{value}`: {e}")
}

/// What a `scale` run is made of; the defaults are the `scale` mode's.
#[derive(Debug, Clone, Copy)]
struct Params {
    bridges: usize,
    /// Each bridge's `every`, in milliseconds.
    every_ms: u64,
    /// How long the window measured lasts, in seconds.
    seconds: u64,
    /// The fraction of the endpoints that change per interval.
    changing: f64,
}

impl Params {
    /// `[BRIDGES] [SECONDS]` as before, then `--bridges`, `--every`, `--seconds`, `--changing`
    /// (each may also be given as `--name=value`), over `defaults`.
    fn parse(args: &[String], defaults: Params) -> Params {
        let mut p = defaults;
        let mut positional = Vec::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(flag) = a.strip_prefix("--") else {
                positional.push(a.as_str());
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n, v.to_string()),
                None => (flag, it.next().cloned().unwrap_or_default()),
            };
            match name {
                "bridges" => p.bridges = value.parse().unwrap_or_else(|e| bad(name, &value, e)),
                "seconds" => p.seconds = value.parse().unwrap_or_else(|e| bad(name, &value, e)),
                "changing" => p.changing = value.parse().unwrap_or_else(|e| bad(name, &value, e)),
                "every" => {
                    let d = humantime::parse_duration(&value)
                        .or_else(|_| humantime::parse_duration(&format!("{value}s")))
                        .unwrap_or_else(|e| bad(name, &value, e));
                    p.every_ms = d.as_millis() as u64;
                }
                _ => panic!("unknown option --{name} (--bridges, --every, --seconds, --changing)"),
            }
        }
        if let Some(n) = positional.first() {
            p.bridges = n.parse().expect("BRIDGES: a number");
        }
        if let Some(s) = positional.get(1) {
            p.seconds = s.parse().expect("SECONDS: a number");
        }
        assert!(p.every_ms > 0 && p.bridges > 0, "{p:?}");
        p
    }

    /// How many endpoints change per interval.
    fn per_interval(&self) -> u64 {
        (self.bridges as f64 * self.changing).round() as u64
    }
}

/// Each change made upstream: (endpoint, version) and when.
type Changes = Arc<Mutex<Vec<((u32, u64), u64)>>>;
const ITEMS: usize = 10;

/// utime + stime of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A `/proc/PID/status` field in MiB (VmRSS, VmHWM).
fn status_mib(pid: u32, field: &str) -> f64 {
    try_status_mib(pid, field).unwrap_or_else(|| panic!("no {field} for pid {pid}"))
}

/// The same, or None once the process is gone (sampling a child that may exit any moment).
fn try_status_mib(pid: u32, field: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn write_bridges(dir: &std::path::Path, n: usize, every_ms: u64, up: &str, rx: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let sinks = support::sinks(rx);
    for i in 0..n {
        let yaml = format!(
            "schedule: {{every: {every_ms}ms}}\nsource: {{url: \"{up}/e/{i}\"}}\nitems: {{select: \"$.items[*]\", key: \"$.id\"}}\n{sinks}\n"
        );
        std::fs::write(dir.join(format!("e{i}.yaml")), yaml).unwrap();
    }
}

/// `pollhook run` on `bridges` and `data`, no admin API, JSON logs at INFO, stdout dropped.
fn daemon_command(bridges: &std::path::Path, data: &std::path::Path) -> Command {
    let mut c = Command::new(pollhook_bin());
    c.args(["run", "--admin", "off", "--log-format", "json"])
        .arg("--bridges")
        .arg(bridges)
        .arg("--data")
        .arg(data)
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or("info".into()),
        )
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null());
    c
}

fn start_daemon(bridges: &std::path::Path, data: &std::path::Path) -> Child {
    daemon_command(bridges, data)
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn stop(mut child: Child) {
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// Lag of a request: how long after its planned slot it arrived, in full (a poll 12 s late on
/// a 10 s interval reads 12 s, not 2 s). The scheduler plans the first slot after the previous
/// poll, so the slot a request was for is the first one after the endpoint's previous arrival.
fn lag_ms(name: &str, every_ms: u64, previous: u64, arrival: u64) -> u64 {
    let every = pollhook::schedule::Schedule::Every(Duration::from_millis(every_ms));
    let after = chrono::DateTime::from_timestamp_millis(previous as i64).unwrap();
    let slot = every.next_after(name, after).unwrap().timestamp_millis() as u64;
    arrival.saturating_sub(slot)
}

struct Window {
    polls: u64,
    seconds: f64,
    cpu: f64,
    lags: Vec<u64>,
}

/// Waits until every endpoint has been asked at least once, then one more interval, then
/// measures `seconds`.
async fn measure(up: &Arc<Upstream>, pid: u32, n: usize, every_ms: u64, seconds: u64) -> Window {
    let deadline = Instant::now() + Duration::from_secs(600);
    while (up.requests.load(Ordering::Relaxed) as usize) < n {
        assert!(
            Instant::now() < deadline,
            "warm-up: only {} requests",
            up.requests.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(every_ms + 2_000)).await;
    up.arrivals.lock().unwrap().clear();
    up.recording.store(true, Ordering::Relaxed);
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (cpu1, elapsed) = (cpu_seconds(pid), t0.elapsed());
    up.recording.store(false, Ordering::Relaxed);
    let arrivals = std::mem::take(&mut *up.arrivals.lock().unwrap());
    let mut lags: Vec<u64> = arrivals
        .iter()
        .map(|(i, prev, t)| lag_ms(&format!("e{i}"), every_ms, *prev, *t))
        .collect();
    lags.sort_unstable();
    Window {
        polls: arrivals.len() as u64,
        seconds: elapsed.as_secs_f64(),
        cpu: cpu1 - cpu0,
        lags,
    }
}

/// An upstream of `n` endpoints, a receiver, and a directory with one bridge file per endpoint.
async fn fixture(
    n: usize,
    every_ms: u64,
) -> (Arc<Upstream>, Arc<Receiver>, String, tempfile::TempDir) {
    let up = Upstream::new(n, ITEMS, false);
    let rx = Arc::new(Receiver::default());
    let (up_url, rx_url) = (up.serve().await, rx.serve().await);
    let dir = tempfile::tempdir().unwrap();
    write_bridges(&dir.path().join("bridges"), n, every_ms, &up_url, &rx_url);
    (up, rx, up_url, dir)
}

async fn scale(p: Params, title: &str) {
    let (n, seconds, every_ms) = (p.bridges, p.seconds, p.every_ms);
    let (up, rx, up_url, dir) = fixture(n, every_ms).await;

    // A fraction of the endpoints change per interval, spread evenly.
    let changes: Changes = Arc::default();
    let changing = Arc::new(AtomicBool::new(true));
    let per_interval = p.per_interval();
    if per_interval > 0 {
        let (up, changes, changing) = (up.clone(), changes.clone(), changing.clone());
        tokio::spawn(async move {
            // Wait for the baselines (first poll of every bridge) before changing anything.
            while (up.requests.load(Ordering::Relaxed) as usize) < n {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let step = Duration::from_micros(every_ms * 1000 / per_interval);
            let mut next = 0usize;
            while changing.load(Ordering::Relaxed) {
                let i = (next * 7919) % n;
                next += 1;
                let v = up.versions[i].fetch_add(1, Ordering::Relaxed) + 1;
                changes.lock().unwrap().push(((i as u32, v), now_ms()));
                tokio::time::sleep(step).await;
            }
        });
    }

    let daemon = start_daemon(&dir.path().join("bridges"), &dir.path().join("data"));
    let pid = daemon.id();
    let w = measure(&up, pid, n, every_ms, seconds).await;
    let rss_peak = status_mib(pid, "VmHWM");
    let rss_now = status_mib(pid, "VmRSS");
    changing.store(false, Ordering::Relaxed);
    // Every change made must arrive: wait up to two intervals and a margin.
    let made = changes.lock().unwrap().clone();
    let deadline = Instant::now() + Duration::from_millis(2 * every_ms + 10_000);
    loop {
        let all_seen = {
            let seen = rx.seen.lock().unwrap();
            made.iter().all(|(k, _)| seen.contains_key(k))
        };
        if all_seen || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop(daemon);
    let seen = rx.seen.lock().unwrap().clone();
    let lost = made.iter().filter(|(k, _)| !seen.contains_key(k)).count();
    let mut latencies: Vec<u64> = made
        .iter()
        .filter_map(|(k, at)| seen.get(k).map(|got| got.saturating_sub(*at)))
        .collect();
    latencies.sort_unstable();

    // The limit: the same requests from a bare reqwest loop, measured the same way.
    up.requests.store(0, Ordering::Relaxed);
    let bare = Command::new(std::env::current_exe().unwrap())
        .args(["bare", &up_url, &n.to_string(), &every_ms.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let b = measure(&up, bare.id(), n, every_ms, seconds).await;
    stop(bare);

    let per_k = |cpu: f64, polls: u64| cpu / polls.max(1) as f64 * 1000.0;
    println!(
        "\n## {title}: {n} bridges, every {}, {}% changing per interval ({per_interval}), {seconds}s measured\n",
        humantime::format_duration(Duration::from_millis(every_ms)),
        p.changing * 100.0
    );
    println!("| figure | pollhook | bare reqwest loop |");
    println!("| --- | --- | --- |");
    println!(
        "| polls/s | {:.0} | {:.0} |",
        w.polls as f64 / w.seconds,
        b.polls as f64 / b.seconds
    );
    println!(
        "| schedule lag p50 / p99 | {} ms / {} ms | {} ms / {} ms |",
        percentile(&w.lags, 0.5),
        percentile(&w.lags, 0.99),
        percentile(&b.lags, 0.5),
        percentile(&b.lags, 0.99)
    );
    println!(
        "| CPU (share of one core) | {:.2} | {:.2} |",
        w.cpu / w.seconds,
        b.cpu / b.seconds
    );
    println!(
        "| CPU s per 1,000 polls | {:.3} | {:.3} |",
        per_k(w.cpu, w.polls),
        per_k(b.cpu, b.polls)
    );
    println!(
        "| CPU ms per poll | {:.3} | {:.3} |",
        per_k(w.cpu, w.polls),
        per_k(b.cpu, b.polls)
    );
    println!(
        "| pollhook / bare CPU per poll | {:.2}x | |",
        per_k(w.cpu, w.polls) / per_k(b.cpu, b.polls)
    );
    println!("| RSS peak / at the end | {rss_peak:.0} MiB / {rss_now:.0} MiB | |");
    println!(
        "| change -> webhook p50 / p99 | {} ms / {} ms | |",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!("| changes made / events lost | {} / {lost} | |", made.len());
    println!(
        "| webhooks received | {} | |",
        rx.events.load(Ordering::Relaxed)
    );
}

/// `serve DIR`: the fixture of `scale`, its bridge files in `DIR/bridges`, until interrupted.
async fn serve_only(p: Params, dir: PathBuf) {
    let (up, _rx, up_url, tmp) = fixture(p.bridges, p.every_ms).await;
    std::fs::create_dir_all(&dir).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("bridges"));
    std::fs::rename(tmp.path().join("bridges"), dir.join("bridges")).unwrap();
    println!(
        "upstream {up_url}: {} bridges every {} ms in {}",
        p.bridges,
        p.every_ms,
        dir.join("bridges").display()
    );
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        println!("requests so far: {}", up.requests.load(Ordering::Relaxed));
    }
}

/// The bare loop: per endpoint, a task that GETs it on the same schedule as pollhook, with
/// If-None-Match, reads the body and does nothing else; at most 16 requests at once, as
/// pollhook's default `--max-polls-per-host`.
async fn bare(base: String, n: usize, every_ms: u64) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().build().unwrap();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    // At most as many requests at once as pollhook makes to one host by default: else the
    // first requests of 100,000 endpoints open 100,000 connections at once.
    let per_host = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (client, url) = (client.clone(), format!("{base}/e/{i}"));
        let per_host = per_host.clone();
        let schedule = pollhook::schedule::Schedule::Every(Duration::from_millis(every_ms));
        let name = format!("e{i}");
        tasks.push(tokio::spawn(async move {
            let mut etag: Option<String> = None;
            let mut first = true;
            loop {
                if !first {
                    let now = chrono::Utc::now();
                    let next = schedule.next_after(&name, now).unwrap();
                    tokio::time::sleep((next - now).to_std().unwrap_or_default()).await;
                }
                first = false;
                let mut req = client.get(&url);
                if let Some(e) = &etag {
                    req = req.header("if-none-match", e);
                }
                let _turn = per_host.acquire().await.unwrap();
                if let Ok(r) = req.send().await {
                    if let Some(e) = r.headers().get("etag").and_then(|v| v.to_str().ok()) {
                        etag = Some(e.to_string());
                    }
                    let _ = r.bytes().await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// The peak RSS (VmHWM) of `pid`, sampled until `done` (which may wait a moment itself)
/// gives an answer; and the answer.
fn peak_until<R>(pid: u32, mut done: impl FnMut() -> Option<R>) -> (f64, R) {
    let mut peak: f64 = 0.0;
    loop {
        if let Some(mib) = try_status_mib(pid, "VmHWM") {
            peak = peak.max(mib);
        }
        if let Some(r) = done() {
            return (peak, r);
        }
    }
}

/// How a run of `pollhook` ended: its wall time and its own peak RSS, or how it failed.
struct Run {
    time: Duration,
    peak_mib: f64,
    failed: Option<String>,
}

/// Runs a command, returning its wall time and its own peak RSS. The peak is the child's
/// VmHWM, sampled until it exits: wait4's ru_maxrss would also count this (big) process's
/// memory at the time of the fork.
fn timed(cmd: &mut Command) -> Run {
    let t0 = Instant::now();
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained aside, so a chatty child never blocks on a full pipe.
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let (peak, status) = peak_until(child.id(), || {
        let status = child.try_wait().unwrap();
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(2));
        }
        status
    });
    let errors = errors.join().unwrap_or_default();
    Run {
        time: t0.elapsed(),
        peak_mib: peak,
        failed: (!status.success()).then(|| {
            let lines: Vec<&str> = errors.lines().collect();
            let why = lines
                .iter()
                .find(|l| l.contains("memory allocation") || l.starts_with("error"))
                .or(lines.last())
                .copied()
                .unwrap_or_default();
            format!("{status}: {why}")
        }),
    }
}

/// The big document's server: the current body and its ETag, and whether an
/// `If-None-Match` that matches is answered 304 (or ignored, as many APIs do).
#[derive(Default)]
struct BigDoc {
    body: String,
    etag: String,
    honour_validators: bool,
}

/// A big document: `n` items, each `item(k, rev)` as JSON text.
struct Shape {
    name: &'static str,
    n: usize,
    item: fn(usize, usize) -> String,
}

/// 100,000 items of about 340 bytes (33.9 MB).
fn wide_item(k: usize, rev: usize) -> String {
    format!(
        r#"{{"body":"lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat.","id":{k},"rev":{rev},"tags":["x","y","z"],"title":"a fairly ordinary title for item number {k}"}}"#
    )
}

/// 1,000,000 items of about 24 bytes (24 MB).
fn small_item(k: usize, rev: usize) -> String {
    format!(r#"{{"id":{k},"r":[{rev},1]}}"#)
}

/// The body with the first `changed` items at revision `round`, and its ETag.
fn big_body(shape: &Shape, changed: usize, round: usize) -> (String, String) {
    let mut body = String::from(r#"{"items":["#);
    for k in 0..shape.n {
        if k > 0 {
            body.push(',');
        }
        body.push_str(&(shape.item)(k, if k < changed { round } else { 0 }));
    }
    body.push_str("]}");
    (body, format!("\"r{round}\""))
}

/// `pollhook poll --commit` of one big document, each poll as a whole process: a baseline,
/// a poll that changes 1%, the same answer again (200, then 304), and a first poll with
/// `first_poll: emit` into a fresh state directory.
async fn big(shape: &Shape) {
    let n = shape.n;
    let doc = Arc::new(Mutex::new(BigDoc::default()));
    let set = |doc: &Mutex<BigDoc>, (body, etag): (String, String), honour: bool| {
        let mut d = doc.lock().unwrap();
        (d.body, d.etag, d.honour_validators) = (body, etag, honour);
    };
    set(&doc, big_body(shape, 0, 0), true);
    let size_mb = doc.lock().unwrap().body.len() as f64 / 1e6;
    let up = serve(
        Router::new()
            .route(
                "/big",
                axum::routing::get(
                    |State(d): State<Arc<Mutex<BigDoc>>>, h: HeaderMap| async move {
                        let d = d.lock().unwrap();
                        let inm = h.get("if-none-match").and_then(|v| v.to_str().ok());
                        if d.honour_validators && inm == Some(d.etag.as_str()) {
                            return (
                                StatusCode::NOT_MODIFIED,
                                [("etag", d.etag.clone())],
                                String::new(),
                            );
                        }
                        (StatusCode::OK, [("etag", d.etag.clone())], d.body.clone())
                    },
                ),
            )
            .with_state(doc.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bridges = dir.path().join("bridges");
    std::fs::create_dir_all(&bridges).unwrap();
    for (name, first_poll) in [("big", "baseline"), ("big-emit", "emit")] {
        std::fs::write(
            bridges.join(format!("{name}.yaml")),
            format!("schedule: {{every: 1h}}\nsource: {{url: \"{up}/big\", max_body: 64MiB}}\nitems: {{select: \"$.items[*]\", key: \"$.id\"}}\nemit: {{first_poll: {first_poll}}}\nsinks: [{{url: console}}]\n"),
        )
        .unwrap();
    }
    let run = |name: &'static str, data: &'static str| {
        let mut c = Command::new(pollhook_bin());
        c.args(["poll", name, "--commit", "--admin", "127.0.0.1:1"])
            .arg("--bridges")
            .arg(&bridges)
            .arg("--data")
            .arg(dir.path().join(data));
        tokio::task::spawn_blocking(move || timed(&mut c))
    };
    let mut rows = Vec::new();
    rows.push(("first poll, baseline", run("big", "data").await.unwrap()));
    // The answer changes (a new ETag); then the same answer comes again, first from a server
    // that ignores `If-None-Match` (a full compare), then from one that answers 304.
    set(&doc, big_body(shape, n / 100, 1), false);
    rows.push(("1% changed", run("big", "data").await.unwrap()));
    rows.push((
        "nothing changed (200, compared)",
        run("big", "data").await.unwrap(),
    ));
    doc.lock().unwrap().honour_validators = true;
    rows.push(("nothing changed (304)", run("big", "data").await.unwrap()));
    rows.push((
        "first poll, `first_poll: emit`",
        run("big-emit", "data-emit").await.unwrap(),
    ));
    // The daemon with both bridges fresh: each polls at start, the two at once.
    let daemon = {
        let bridges = bridges.clone();
        let data = dir.path().join("data-daemon");
        tokio::task::spawn_blocking(move || first_polls_at_start(&bridges, &data, 2))
            .await
            .unwrap()
    };
    let body_mib = size_mb / 1.048576;
    let goal = 10.0 * body_mib + 64.0;
    println!(
        "\n## big document ({}): {n} items, {size_mb:.1} MB, `pollhook poll --commit` as a whole process; goal: peak RSS <= 10x body + 64 MiB = {goal:.0} MiB\n",
        shape.name
    );
    println!("| poll | time | peak RSS | peak RSS / body | within goal |");
    println!("| --- | --- | --- | --- | --- |");
    let mut rows: Vec<_> = rows.into_iter().map(|(what, r)| (what, r, 1.0)).collect();
    // Two polls at once: the goal twice over (and the daemon's 64 MiB once).
    rows.push((
        "`pollhook run`, both bridges fresh: two first polls at once (goal 2x)",
        daemon,
        2.0,
    ));
    for (what, r, polls) in rows {
        let goal = polls * 10.0 * body_mib + 64.0;
        let outcome = match &r.failed {
            Some(why) => format!("FAILED ({why})"),
            None if r.peak_mib <= goal => "yes".to_string(),
            None => "no".to_string(),
        };
        println!(
            "| {what} | {:.2} s | {:.0} MiB | {:.1}x | {outcome} |",
            r.time.as_secs_f64(),
            r.peak_mib,
            r.peak_mib / body_mib
        );
    }
}

/// Starts the daemon on fresh state and waits until `n` bridges have logged their first
/// poll; its peak RSS until then.
fn first_polls_at_start(bridges: &std::path::Path, data: &std::path::Path, n: usize) -> Run {
    let t0 = Instant::now();
    let mut child = daemon_command(bridges, data)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
            let Ok(line) = line else { break };
            // Each poll's line reads `poll NAME: …`; a failed one has `"status":"failed"`.
            let done = line.contains(r#""message":"poll "#);
            if done && tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let (peak, failed) = peak_until(pid, || match rx.recv_timeout(Duration::from_millis(5)) {
        Ok(line) => {
            seen.push(line);
            let failed = seen
                .iter()
                .find(|l| l.contains(r#""status":"failed""#))
                .cloned();
            (seen.len() == n).then_some(failed)
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => None,
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            Some(Some(format!("{:?}", child.wait().unwrap())))
        }
    });
    let time = t0.elapsed();
    stop(child);
    Run {
        time,
        peak_mib: peak,
        failed,
    }
}

/// A first poll with `first_poll: emit` of one wide item, as JSON and as a CSV row: each
/// `pollhook poll --commit` as a whole process, its peak RSS against 10x the body + 64 MiB.
async fn one_wide(keys: usize) {
    let mut json = String::from(r#"{"items":[{"id":1"#);
    let (mut header, mut row) = (String::from("id"), String::from("1"));
    for i in 0..keys {
        json.push_str(&format!(r#","k{i}":{i}"#));
        header.push_str(&format!(",k{i}"));
        row.push_str(&format!(",{}", i % 10));
    }
    json.push_str("}]}");
    let csv = format!("{header}\n{row}\n");
    let bodies = Arc::new([json, csv]);
    let up = serve(
        Router::new()
            .route(
                "/json",
                axum::routing::get(|State(b): State<Arc<[String; 2]>>| async move { b[0].clone() }),
            )
            .route(
                "/csv",
                axum::routing::get(|State(b): State<Arc<[String; 2]>>| async move { b[1].clone() }),
            )
            .with_state(bodies.clone()),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bridges = dir.path().join("bridges");
    std::fs::create_dir_all(&bridges).unwrap();
    for (name, format, select) in [("json", "json", "$.items[*]"), ("csv", "csv", "$[*]")] {
        std::fs::write(
            bridges.join(format!("{name}.yaml")),
            format!("schedule: {{every: 1h}}\nsource: {{url: \"{up}/{name}\", format: {format}, max_body: 64MiB}}\nitems: {{select: \"{select}\", key: \"$.id\"}}\nemit: {{first_poll: emit}}\nsinks: [{{url: console}}]\n"),
        )
        .unwrap();
    }
    println!(
        "\n## one wide item: {keys} keys, `first_poll: emit`, `pollhook poll --commit` as a whole process; goal: peak RSS <= 10x body + 64 MiB\n"
    );
    println!("| item | body | time | peak RSS | goal | within goal |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (i, name) in ["json", "csv"].into_iter().enumerate() {
        let mut c = Command::new(pollhook_bin());
        c.args(["poll", name, "--commit", "--admin", "127.0.0.1:1"])
            .arg("--bridges")
            .arg(&bridges)
            .arg("--data")
            .arg(dir.path().join(format!("data-{name}")));
        let r = tokio::task::spawn_blocking(move || timed(&mut c))
            .await
            .unwrap();
        let body_mib = bodies[i].len() as f64 / 1_048_576.0;
        let goal = 10.0 * body_mib + 64.0;
        let outcome = match &r.failed {
            Some(why) => format!("FAILED ({why})"),
            None if r.peak_mib <= goal => "yes".to_string(),
            None => "no".to_string(),
        };
        println!(
            "| {name} | {:.1} MB | {:.2} s | {:.0} MiB ({:.1}x) | {goal:.0} MiB | {outcome} |",
            bodies[i].len() as f64 / 1e6,
            r.time.as_secs_f64(),
            r.peak_mib,
            r.peak_mib / body_mib
        );
    }
}

async fn idle() {
    const N: usize = 1000;
    let (up, _rx, _, dir) = fixture(N, 10_000).await;
    let daemon = start_daemon(&dir.path().join("bridges"), &dir.path().join("data"));
    let pid = daemon.id();
    let w = measure(&up, pid, N, 10_000, 20).await;
    let rss = status_mib(pid, "VmRSS");
    stop(daemon);
    println!("\n## idle: {N} bridges every 10s, nothing changing (304s)\n");
    println!("| RSS | CPU (share of one core) | polls/s |");
    println!("| --- | --- | --- |");
    println!(
        "| {rss:.1} MiB | {:.3} | {:.0} |",
        w.cpu / w.seconds,
        w.polls as f64 / w.seconds
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let mode = args.first().map(String::as_str).unwrap_or("all");
    if mode == "serve" {
        let dir = PathBuf::from(args.get(1).expect("serve DIR"));
        let defaults = Params {
            bridges: 10_000,
            every_ms: 60_000,
            seconds: 0,
            changing: 0.0,
        };
        let p = Params::parse(args.get(2..).unwrap_or_default(), defaults);
        rt.block_on(serve_only(p, dir));
        return;
    }
    if mode == "bare" {
        rt.block_on(bare(
            args[1].clone(),
            args[2].parse().unwrap(),
            args[3].parse().unwrap(),
        ));
        return;
    }
    let rest = args.get(1..).unwrap_or_default();
    let params = match mode {
        "idle304" => Params::parse(
            rest,
            Params {
                bridges: 500,
                every_ms: 5_000,
                seconds: 60,
                changing: 0.0,
            },
        ),
        _ => Params::parse(
            rest,
            Params {
                bridges: 10_000,
                every_ms: 10_000,
                seconds: 60,
                changing: 0.01,
            },
        ),
    };
    println!(
        "pollhook scale benchmark, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    rt.block_on(async {
        if matches!(mode, "all" | "idle") {
            idle().await;
        }
        if matches!(mode, "all" | "big" | "big-wide") {
            big(&Shape {
                name: "100k wide items",
                n: 100_000,
                item: wide_item,
            })
            .await;
        }
        if matches!(mode, "all" | "big" | "big-many") {
            big(&Shape {
                name: "1M small items",
                n: 1_000_000,
                item: small_item,
            })
            .await;
        }
        if matches!(mode, "all" | "big" | "one-wide") {
            // `one-wide [KEYS]`: 1,000,000 keys unless told.
            let keys = match mode {
                "one-wide" => args.get(1).and_then(|a| a.parse().ok()),
                _ => None,
            };
            one_wide(keys.unwrap_or(1_000_000)).await;
        }
        if matches!(mode, "all" | "scale") {
            scale(params, "scale").await;
        }
        if mode == "idle304" {
            scale(params, "idle304").await;
        }
    });
}
