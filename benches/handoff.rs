//! Handoff benchmark (docs/benchmarks.md#handoff): growing from one shard to two with the real
//! binary, everything on 127.0.0.1.
//!
//!     cargo build --release && cargo bench --bench handoff [-- BRIDGES ITEMS]
//!
//! BRIDGES (default 1,000) bridges of ITEMS (default 1,000) items each, polled every 10 s from
//! an axum upstream (with ETags), posting signed webhooks to a local receiver. Shard 0 of 1
//! baselines them all; then the documented procedure to grow (docs/operations.md): shard 1 of
//! 2 starts first and waits (shard 0 still owns everything), shard 0 is restarted as 0 of 2 and
//! gives the bridges shard 1 now owns. Every bridge's item 0 changes upstream as shard 0 stops.
//!
//! Reported: the time from shard 0's restart to shard 1 holding every moved bridge (its
//! `/v1/layout` has no `incoming` left), and per moved bridge the poll gap, from its last poll
//! on shard 0 to its first poll on shard 1 (p50, p99, max). Checked, or the bench fails: every
//! moved bridge is imported with all its items (shard 1's `handed over` log line), none is new
//! there, no `item.created` event is ever sent (a bridge baselined again would miss the change,
//! so each bridge's change is one `item.updated`, exactly once, whichever shard sent it).

// A benchmark may panic where a test may: a failed set-up is a failed measurement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use support::listing::{Receiver, Upstream, now_ms, pollhook_bin};
use support::percentile;

const TOKEN: &str = "bench-handoff-token-0c1d";

/// The shard a bridge's name goes to among `n`, as pollhook decides it.
fn owner(name: &str, n: u64) -> u64 {
    pollhook::shard::owner(name, n)
}

struct Shard {
    child: Child,
    log: PathBuf,
}

fn start(root: &FsPath, port: u16, i: u64, n: u64) -> Shard {
    let dir = root.join(format!("shard{i}"));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("log-{i}-of-{n}.json"));
    let child = Command::new(pollhook_bin())
        .args(["run", "--log-format", "json"])
        .arg("--bridges")
        .arg(root.join("bridges"))
        .arg("--data")
        .arg(dir.join("data"))
        .arg("--admin")
        .arg(format!("127.0.0.{}:{port}", 10 + i))
        .arg("--admin-token-file")
        .arg(root.join("token"))
        .args(["--shard", &format!("{i}/{n}")])
        .args(["--peers", &format!("http://127.0.0.1{{i}}:{port}")])
        .env("BENCH_SHARD", i.to_string())
        .env(
            "RUST_LOG",
            std::env::var("BENCH_RUST_LOG").unwrap_or("info".into()),
        )
        .env_remove("JOURNAL_STREAM")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    Shard { child, log }
}

fn stop(mut s: Shard) -> PathBuf {
    unsafe { libc::kill(s.child.id() as i32, libc::SIGTERM) };
    let status = s.child.wait().unwrap();
    assert!(status.success(), "shard exited with {status}");
    s.log
}

/// `/v1/layout` of shard `i`, None while it does not answer.
async fn layout(http: &reqwest::Client, port: u16, i: u64) -> Option<serde_json::Value> {
    let url = format!("http://127.0.0.{}:{port}/v1/layout", 10 + i);
    http.get(url).send().await.ok()?.json().await.ok()
}

/// Whether `/v1/layout` of shard `i` answers with `want` under `key`.
async fn layout_says(
    http: &reqwest::Client,
    port: u16,
    i: u64,
    key: &str,
    want: serde_json::Value,
) -> bool {
    layout(http, port, i).await.is_some_and(|l| l[key] == want)
}

async fn until(what: &str, limit: Duration, mut probe: impl AsyncFnMut() -> bool) {
    let t = Instant::now();
    while !probe().await {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A port free on 127.0.0.10 and 127.0.0.11.
fn free_port() -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.10:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if std::net::TcpListener::bind(format!("127.0.0.11:{p}")).is_ok() {
            return p;
        }
    }
}

/// The `handed over` lines of a shard's log: bridge → items imported.
fn handed_over(log: &FsPath) -> HashMap<String, u64> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| l.contains("handed over from shard"))
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let f = if v["fields"].is_object() {
            &v["fields"]
        } else {
            &v
        };
        let bridge = f["bridge"].as_str().or(v["bridge"].as_str()).unwrap();
        out.insert(bridge.to_string(), f["items"].as_u64().unwrap());
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let bridges: u32 = args.first().map_or(1000, |a| a.parse().unwrap());
    let items: usize = args.get(1).map_or(1000, |a| a.parse().unwrap());
    let up = Upstream::new(bridges as usize, items, true);
    let set_version = |v: u64| {
        up.versions
            .iter()
            .for_each(|x| x.store(v, Ordering::SeqCst))
    };
    set_version(1);
    let rx = Arc::new(Receiver::keeping());
    let (up_url, rx_url) = (up.serve().await, rx.serve().await);
    let polls = || up.by_shard.as_ref().unwrap().lock().unwrap();
    let events = || rx.kept.as_ref().unwrap().lock().unwrap();

    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("bridges");
    std::fs::create_dir_all(&dir).unwrap();
    let sinks = support::sinks(&rx_url);
    for i in 0..bridges {
        let yaml = format!(
            "schedule: {{every: 10s}}\nsource: {{url: \"{up_url}/e/{i}\", headers: {{X-Shard: \"${{BENCH_SHARD}}\"}}}}\nitems: {{select: \"$.items[*]\", key: \"$.id\"}}\n{sinks}\n"
        );
        std::fs::write(dir.join(format!("b{i}.yaml")), yaml).unwrap();
    }
    let token = root.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let port = free_port();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let names: Vec<String> = (0..bridges).map(|i| format!("b{i}")).collect();
    let moved: Vec<&String> = names.iter().filter(|b| owner(b, 2) == 1).collect();
    println!(
        "handoff: {bridges} bridges of {items} items, growing 1 → 2 shards: {} move",
        moved.len()
    );

    // Shard 0 alone baselines every bridge.
    let t = Instant::now();
    let s0 = start(root.path(), port, 0, 1);
    until(
        "shard 0's baselines",
        Duration::from_secs(600),
        async || {
            let polls = polls();
            let mut seen = vec![false; bridges as usize];
            polls.iter().for_each(|(i, _, _)| seen[*i as usize] = true);
            seen.iter().all(|s| *s)
        },
    )
    .await;
    // A second round: every baseline is committed.
    let round = polls().len();
    until(
        "shard 0's second round",
        Duration::from_secs(600),
        async || polls().len() >= round + bridges as usize,
    )
    .await;
    println!("  shard 0 of 1 baselined them all in {}", ms(t.elapsed()));

    // Shard 1 of 2 first: it waits, shard 0 still owns everything.
    let s1 = start(root.path(), port, 1, 2);
    until("shard 1 waiting", Duration::from_secs(120), async || {
        layout(&http, port, 1).await.is_some_and(|l| {
            l["incoming"]
                .as_array()
                .is_some_and(|a| a.len() == moved.len())
        })
    })
    .await;

    // Shard 0 restarted as 0 of 2; every item 0 changes as it stops.
    let t = Instant::now();
    let old0 = stop(s0);
    set_version(2);
    let (stopped, stopped_ms) = (t.elapsed(), now_ms());
    let s0 = start(root.path(), port, 0, 2);
    until(
        "shard 0 of 2 answering",
        Duration::from_secs(120),
        async || layout(&http, port, 0).await.is_some(),
    )
    .await;
    let answering = t.elapsed();
    until(
        "every moved bridge on shard 1",
        Duration::from_secs(600),
        async || layout_says(&http, port, 1, "incoming", serde_json::json!([])).await,
    )
    .await;
    let moved_all = t.elapsed();
    until(
        "shard 0 drained (every acknowledgement taken)",
        Duration::from_secs(120),
        async || layout_says(&http, port, 0, "drained", serde_json::json!(true)).await,
    )
    .await;
    let acknowledged = t.elapsed();

    // Every bridge's change delivered once.
    until(
        "every change delivered",
        Duration::from_secs(120),
        async || events().len() >= bridges as usize,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let log1 = stop(s1);
    let _ = stop(s0);
    let _ = old0;

    let imported = handed_over(&log1);
    let short: Vec<_> = moved
        .iter()
        .filter(|b| imported.get(b.as_str()) != Some(&(items as u64)))
        .collect();
    assert!(
        short.is_empty(),
        "moved bridges not imported with {items} items: {short:?}"
    );
    assert_eq!(
        imported.len(),
        moved.len(),
        "bridges imported that do not move"
    );
    let log = std::fs::read_to_string(&log1).unwrap();
    assert!(
        !log.contains("so it is new"),
        "a moved bridge was new on shard 1"
    );
    let events = events().clone();
    let mut per: HashMap<&str, u32> = HashMap::new();
    for (b, ty, v) in &events {
        assert_eq!((ty.as_str(), *v), ("item.updated", Some(2)), "bridge {b}");
        *per.entry(b.as_str()).or_default() += 1;
    }
    assert!(
        names.iter().all(|b| per.get(b.as_str()) == Some(&1)),
        "each change is one event: {} events for {} bridges",
        events.len(),
        bridges
    );

    // The poll gap of each moved bridge.
    let polls = polls();
    let mut gaps: Vec<Duration> = moved
        .iter()
        .map(|b| {
            let i: u32 = b[1..].parse().unwrap();
            let last0 = polls
                .iter()
                .filter(|(j, s, _)| *j == i && *s == 0)
                .map(|(_, _, at)| *at)
                .filter(|at| *at < stopped_ms)
                .max()
                .unwrap();
            let first1 = polls
                .iter()
                .filter(|(j, s, _)| *j == i && *s == 1)
                .map(|(_, _, at)| *at)
                .min()
                .unwrap_or_else(|| panic!("{b} never polled on shard 1"));
            assert!(
                !polls
                    .iter()
                    .any(|(j, s, at)| *j == i && *s == 0 && *at > stopped_ms),
                "{b} polled on shard 0 after the handoff"
            );
            Duration::from_millis(first1 - last0)
        })
        .collect();
    gaps.sort();
    println!(
        "  shard 0 stopped in {}, answering as 0 of 2 after {}",
        ms(stopped),
        ms(answering)
    );
    println!(
        "  every moved bridge on shard 1 {} after shard 0's restart began ({} after it answered); every acknowledgement taken after {}",
        ms(moved_all),
        ms(moved_all - answering),
        ms(acknowledged)
    );
    println!(
        "  poll gap per moved bridge (last poll on shard 0 → first on shard 1): p50 {}, p99 {}, max {}",
        ms(percentile(&gaps, 0.5)),
        ms(percentile(&gaps, 0.99)),
        ms(*gaps.last().unwrap())
    );
    println!(
        "  checked: {} moved bridges imported with {items} items each, none new; {} events, each bridge's change once as item.updated, no item.created",
        imported.len(),
        events.len()
    );
}
