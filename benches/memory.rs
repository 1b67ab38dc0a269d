//! Memory benchmark: what polls cost the daemon, everything on 127.0.0.1.
//!
//!     cargo bench --bench memory [-- document|need|crowd] [--mb 2.3] [--polls 60] [--every 1s]
//!         [--shape rows|objects] [--budget 512MiB] [--bridges 20]
//!
//! - `document`: one document bridge (no `items.key`: the document is one item, and each
//!   change an `item.updated` carrying both sides and the patch) whose document (`--mb`,
//!   default 2.3) changes on every poll (`--every`, default 1 s), `--polls` times (default 60),
//!   delivered to a local receiver. The daemon's RSS after each tenth poll, its peak (VmHWM),
//!   and the goal: 10x the body + 64 MiB. `--shape rows` (default): strings in an array, a
//!   hundredth of them changed each poll; `objects`: objects of four fields, the same.
//! - `need`: the peak of one `pollhook poll --commit` (a whole process) over answers of
//!   several shapes and sizes, less that of a tiny answer: the memory a poll costs per byte of
//!   its answer and per object in it, which the memory budget reserves
//!   (`runtime::budget::PER_BYTE`, `PER_OBJECT`).
//! - `crowd`: `--bridges` (default 20) bridges answering 20 MB each at once under
//!   `--budget` (default 512MiB; `4GiB` is as good as none): time and peak RSS.
//!
//! pollhook runs as a child process (`target/release/pollhook`: `cargo build --release`
//! first) so that its memory is its own.

// A benchmark may panic where a test may: a failed set-up is a failed measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::Router;
use axum::extract::{Path, State};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use support::listing::pollhook_bin;
use support::serve;

const MIB: f64 = 1024.0 * 1024.0;

/// A field of `/proc/PID/status` in MiB, None once the process is gone.
fn status_mib(pid: u32, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// `--name value` from the arguments, or the default.
fn arg<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> T {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("{name}: cannot read `{v}`"))
        })
        .unwrap_or(default)
}

/// A document of about `bytes`: rows, a hundredth of them changed in `round`.
fn document(round: u64, bytes: usize, objects: bool) -> String {
    let mut out = String::with_capacity(bytes + 256);
    out.push_str(&format!(r#"{{"info":{{"round":{round},"rows":["#));
    let mut i = 0u64;
    while out.len() < bytes {
        let changed = if i % 100 == round % 100 { round } else { 0 };
        if i > 0 {
            out.push(',');
        }
        if objects {
            out.push_str(&format!(
                r#"{{"i":{i},"changed":{changed},"title":"row {i}","text":"lorem ipsum dolor sit amet"}}"#
            ));
        } else {
            out.push_str(&format!(
                r#""row {i}, changed in round {changed}: lorem ipsum dolor sit amet""#
            ));
        }
        i += 1;
    }
    out.push_str("]}}");
    out
}

/// A receiver that counts what it is sent.
async fn receiver(count: Arc<AtomicU64>) -> String {
    let app = Router::new()
        .fallback(
            |State(n): State<Arc<AtomicU64>>, _body: axum::body::Bytes| async move {
                n.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::NO_CONTENT
            },
        )
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(count);
    format!("{}/hook", serve(app).await)
}

/// `pollhook run` over `dir`; under `MEMORY_BENCH_WRAP` (say `heaptrack`) when it is set
/// (the RSS printed is then the wrapper's).
fn daemon(dir: &std::path::Path, extra: &[&str]) -> Child {
    let mut cmd = match std::env::var("MEMORY_BENCH_WRAP") {
        Ok(wrap) => {
            let mut c = Command::new(wrap);
            c.arg(pollhook_bin());
            c
        }
        Err(_) => Command::new(pollhook_bin()),
    };
    cmd.args(["run", "--admin", "off", "--log-format", "json"])
        .arg("--bridges")
        .arg(dir.join("bridges"))
        .arg("--data")
        .arg(dir.join("data"))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

fn write_bridge(dir: &std::path::Path, name: &str, yaml: &str) {
    std::fs::create_dir_all(dir.join("bridges")).unwrap();
    std::fs::write(dir.join("bridges").join(format!("{name}.yaml")), yaml).unwrap();
}

/// One document bridge whose document changes on every poll.
async fn document_mode(args: &[String]) {
    let mb: f64 = arg(args, "--mb", 2.3);
    let polls: u64 = arg(args, "--polls", 60);
    let every: String = arg(args, "--every", "1s".to_string());
    let objects = arg(args, "--shape", "rows".to_string()) == "objects";
    let bytes = (mb * 1e6) as usize;
    let requests = Arc::new(AtomicU64::new(0));
    let up = serve(
        Router::new()
            .route(
                "/doc",
                axum::routing::get(move |State(n): State<Arc<AtomicU64>>| async move {
                    let round = n.fetch_add(1, Ordering::Relaxed);
                    let body = tokio::task::spawn_blocking(move || document(round, bytes, objects))
                        .await
                        .unwrap();
                    ([("content-type", "application/json")], body)
                }),
            )
            .with_state(requests.clone()),
    )
    .await;
    let delivered = Arc::new(AtomicU64::new(0));
    let rx = receiver(delivered.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    write_bridge(
        dir.path(),
        "doc",
        &format!(
            "schedule: {{every: {every}}}\nsource: {{url: \"{up}/doc\"}}\nitems: {{select: \"$.info\"}}\nsinks: [{{url: \"{rx}\", signature: none}}]\n"
        ),
    );
    let body_mib = document(0, bytes, objects).len() as f64 / MIB;
    let goal = 10.0 * body_mib + 64.0;
    println!(
        "\n## document: one bridge, {:.2} MiB ({}), changed on every poll (every {every}), {polls} polls; goal: peak RSS <= 10x body + 64 MiB = {goal:.0} MiB\n",
        body_mib,
        if objects { "objects" } else { "rows" }
    );
    println!("| polls | events delivered | RSS (MiB) | peak so far (MiB) |");
    println!("| --- | --- | --- | --- |");
    let mut child = daemon(dir.path(), &[]);
    let pid = child.id();
    let t0 = Instant::now();
    let mut next = 1;
    let mut rss_seen: Vec<f64> = Vec::new();
    loop {
        let done = requests.load(Ordering::Relaxed);
        if let Some(rss) = status_mib(pid, "VmRSS") {
            rss_seen.push(rss);
        }
        if done >= next {
            println!(
                "| {done} | {} | {:.0} | {:.0} |",
                delivered.load(Ordering::Relaxed),
                status_mib(pid, "VmRSS").unwrap_or(0.0),
                status_mib(pid, "VmHWM").unwrap_or(0.0)
            );
            next = if next == 1 { 10 } else { next + 10 };
        }
        if done > polls {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = status_mib(pid, "VmHWM").unwrap_or(0.0);
    let rss = status_mib(pid, "VmRSS").unwrap_or(0.0);
    child.kill().unwrap();
    child.wait().unwrap();
    rss_seen.sort_by(f64::total_cmp);
    let p50 = rss_seen[rss_seen.len() / 2];
    println!(
        "\ndocument: {polls} polls in {:.0} s, {} events delivered; RSS at the end {rss:.0} MiB (median {p50:.0}), peak {peak:.0} MiB ({:.1}x the body), goal {goal:.0} MiB: {}",
        t0.elapsed().as_secs_f64(),
        delivered.load(Ordering::Relaxed),
        peak / body_mib,
        if peak <= goal { "met" } else { "NOT met" }
    );
}

/// The peak RSS of `pollhook poll NAME --commit` (a whole process), in MiB.
fn one_poll(dir: &std::path::Path, name: &str) -> f64 {
    let mut child = Command::new(pollhook_bin())
        .args(["poll", name, "--commit", "--admin", "127.0.0.1:1"])
        .arg("--bridges")
        .arg(dir.join("bridges"))
        .arg("--data")
        .arg(dir.join("data"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak: f64 = 0.0;
    loop {
        if let Some(mib) = status_mib(pid, "VmHWM") {
            peak = peak.max(mib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "pollhook poll {name}: {status}");
            return peak;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// What a poll costs per byte and per object of its answer.
async fn need_mode() {
    let bodies: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>> = Arc::default();
    let up = serve(
        Router::new()
            .route(
                "/{name}",
                axum::routing::get(
                    |State(b): State<
                        Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
                    >,
                     Path(name): Path<String>| async move {
                        let body = b.lock().unwrap().get(&name).cloned().unwrap_or_default();
                        ([("content-type", "application/json")], body)
                    },
                ),
            )
            .with_state(bodies.clone()),
    )
    .await;
    // (name, body, objects, the YAML's items and emit lines)
    let pad = |mb: usize| {
        let p = "x".repeat(mb * 1_000_000);
        format!(r#"{{"items":[{{"id":1}}],"pad":"{p}"}}"#)
    };
    let many = |n: usize, width: usize| {
        let f = "y".repeat(width);
        let items: Vec<String> = (0..n)
            .map(|k| format!(r#"{{"id":{k},"f":"{f}","n":{k}}}"#))
            .collect();
        format!(r#"{{"items":[{}]}}"#, items.join(","))
    };
    let cases: Vec<(&str, String, usize, &str)> = vec![
        ("tiny", pad(0), 2, "first_poll: emit"),
        ("pad20", pad(20), 2, "first_poll: emit"),
        ("wide20", many(50_000, 380), 50_001, "first_poll: emit"),
        ("many20", many(500_000, 20), 500_001, "first_poll: emit"),
        ("doc10", document(1, 10_000_000, true), 0, "document"),
    ];
    println!(
        "\n## need: one `pollhook poll --commit` (first poll, `first_poll: emit`), peak RSS less that of a tiny answer\n"
    );
    println!(
        "| answer | bytes | objects | peak (MiB) | over tiny (MiB) | per byte | per byte, less 200 B an object |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut base = 0.0;
    for (name, body, objects, emit) in cases {
        let len = body.len();
        let objects = if objects == 0 {
            body.matches('{').count()
        } else {
            objects
        };
        bodies.lock().unwrap().insert(name.to_string(), body);
        let dir = tempfile::tempdir().unwrap();
        let items = if emit == "document" {
            "items: {select: \"$.info\"}\n".to_string()
        } else {
            format!("items: {{select: \"$.items[*]\", key: \"$.id\"}}\nemit: {{{emit}}}\n")
        };
        write_bridge(
            dir.path(),
            name,
            &format!(
                "schedule: {{every: 1h}}\nsource: {{url: \"{up}/{name}\", max_body: 64MiB}}\n{items}sinks: [{{url: console}}]\n"
            ),
        );
        let peak = one_poll(dir.path(), name);
        if name == "tiny" {
            base = peak;
        }
        let over = (peak - base) * MIB;
        println!(
            "| {name} | {len} | {objects} | {peak:.0} | {:.0} | {:.2} | {:.2} |",
            over / MIB,
            over / len.max(1) as f64,
            (over - 200.0 * objects as f64) / len.max(1) as f64
        );
    }
}

/// Many bridges answering 20 MB at once, under a budget.
async fn crowd_mode(args: &[String]) {
    let n: usize = arg(args, "--bridges", 20);
    let budget: String = arg(args, "--budget", "512MiB".to_string());
    let body: Arc<String> = Arc::new({
        let p = "x".repeat(20_000_000);
        format!(r#"{{"items":[{{"id":1}}],"pad":"{p}"}}"#)
    });
    let up = serve(
        Router::new()
            .route(
                "/doc/{n}",
                axum::routing::get(|State(b): State<Arc<String>>| async move {
                    (
                        [("content-type", "application/json")],
                        b.as_str().to_owned(),
                    )
                }),
            )
            .with_state(body),
    )
    .await;
    let delivered = Arc::new(AtomicU64::new(0));
    let rx = receiver(delivered.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    for i in 0..n {
        write_bridge(
            dir.path(),
            &format!("crowd-{i}"),
            &format!(
                "schedule: {{every: 1h}}\nsource: {{url: \"{up}/doc/{i}\", max_body: 32MiB, timeout: 300s}}\nitems: {{select: \"$.items[*]\", key: \"$.id\"}}\nemit: {{first_poll: emit}}\nsinks: [{{url: \"{rx}\", signature: none}}]\n"
            ),
        );
    }
    let t0 = Instant::now();
    let mut child = daemon(dir.path(), &["--max-poll-memory", &budget]);
    while delivered.load(Ordering::Relaxed) < n as u64 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = status_mib(child.id(), "VmHWM").unwrap_or(0.0);
    child.kill().unwrap();
    child.wait().unwrap();
    println!(
        "\ncrowd: {n} bridges of 20 MB at once, --max-poll-memory {budget}: all delivered in {:.1} s, peak RSS {peak:.0} MiB",
        t0.elapsed().as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("need") => need_mode().await,
        Some("crowd") => crowd_mode(&args).await,
        Some("document") | None => document_mode(&args).await,
        Some(other) => panic!("no mode `{other}`: document, need or crowd"),
    }
}
