//! A full disk, for real: the daemon's data directory is a small tmpfs that the test fills.
//! While it is full the admin API answers, `/healthz` says why it is unhealthy, memory stays
//! flat and nothing is re-sent in a loop; when space returns pollhook recovers without a
//! restart and delivers every change, in order, with gap-free seqs and no id reused. SIGTERM
//! exits 0 whether or not the disk has room.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted at `at` for the life of the value (unmounted on every path, a
/// panicking test included). None when this process may not mount (not root).
pub struct SmallFs {
    at: PathBuf,
}

impl SmallFs {
    pub fn mount(at: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallFs {
            at: at.to_path_buf(),
        })
    }

    /// Writes a file until the file system is full; returns its path.
    pub fn fill(&self) -> PathBuf {
        let path = self.at.join("fill");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        // The last partial chunk may have fitted in part: fill what is left byte by byte-ish.
        while f.write_all(&chunk[..512]).is_ok() {}
        let _ = f.sync_all();
        path
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: succeeds even while the daemon (killed on drop) still holds files there.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.at)
            .status();
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn get(url: &str) -> (u16, String, Duration) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started = Instant::now();
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{url} did not answer: {e}"));
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (code, text, started.elapsed())
}

fn listing(round: u64) -> Value {
    json!({"items": (1..=5).map(|id| json!({"id": id, "round": round})).collect::<Vec<_>>()})
}

/// By seq, every delivered event: each seq must always come with the same id and body.
fn by_seq(rx: &Receiver) -> BTreeMap<u64, Vec<Value>> {
    let mut out: BTreeMap<u64, Vec<Value>> = BTreeMap::new();
    for r in rx.received() {
        let e = r.json();
        out.entry(e["seq"].as_u64().unwrap()).or_default().push(e);
    }
    out
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_pauses_answers_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = SmallFs::mount(&dir.path().join("data"), "8m") else {
        eprintln!(
            "SKIPPED a_full_disk_pauses_answers_and_recovers_without_a_restart: mounting a tmpfs needs root (CI runs as root)"
        );
        return;
    };
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    BridgeYaml::new(&up.url())
        .every("500ms")
        .first_poll("emit")
        .signed_sink(&rx.url())
        .retry(&format!(
            "[100ms, 200ms, 300ms, 500ms{}]",
            ", 1s".repeat(36)
        ))
        .write(dir.path(), "full");
    up.set_json(&listing(1));
    // The receiver fails at first, so the outbox is not empty when the disk fills.
    for _ in 0..1000 {
        rx.answer(500, &[]);
    }
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    // The watchdog: pinged every 100 ms, and no longer once the store has failed for 1 s.
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    // Read at once, always: a full datagram queue would block the daemon's sender.
    let pinged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (count, stop) = (pinged.clone(), done.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok(len) = sock.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..len]).contains("WATCHDOG=1") {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    });
    let seen = std::cell::Cell::new(0);
    // Pings since the last call.
    let pings = || {
        let now = pinged.load(std::sync::atomic::Ordering::SeqCst);
        now - seen.replace(now)
    };
    let d = Daemon::start_with(
        dir.path(),
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
            ("POLLHOOK_STORE_FAILURE_LIMIT", "1s"),
        ],
        &admin,
    );
    let pid = d.child.id().unwrap();
    let logs = || d.stderr.lock().unwrap().join("\n");
    eventually(PATIENCE, "a delivery attempt", || async {
        if rx.received().is_empty() {
            Err(format!("none; logs:\n{}", logs()))
        } else {
            Ok(())
        }
    })
    .await;
    up.set_json(&listing(2));
    let seq_is = |want: u64| {
        let base = base.clone();
        async move {
            let (_, text, _) = get(&format!("{base}/v1/bridges")).await;
            let v: Value = serde_json::from_str(&text).unwrap();
            v["bridges"][0]["seq"].as_u64() == Some(want)
        }
    };
    eventually(PATIENCE, "round 2 stored (seq 10)", || seq_is(10)).await;

    // The disk fills; round 3 is out there and cannot be stored.
    let fill = fs.fill();
    up.set_json(&listing(3));
    let reasons = eventually(PATIENCE, "/healthz to say 503", || async {
        let (code, text, _) = get(&format!("{base}/healthz")).await;
        if code == 503 {
            return Some(text);
        }
        assert_eq!(code, 200, "{text}");
        None
    })
    .await;
    let v: Value = serde_json::from_str(&reasons).unwrap();
    assert_eq!(v["status"], "unhealthy");
    assert!(
        v["reasons"][0]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{reasons}"
    );

    // Every endpoint answers promptly (an error where it needs the store), and so does the CLI.
    for path in ["/v1/bridges", "/metrics", "/v1/dead-letters", "/healthz"] {
        let (code, text, took) = get(&format!("{base}{path}")).await;
        assert!(took < Duration::from_secs(3), "{path} took {took:?}");
        assert!(matches!(code, 200 | 503), "{path}: {code} {text}");
    }
    let started = Instant::now();
    let (code, out, err) = cli(&["status", "--admin", &admin]);
    assert_eq!(code, 0, "{err} after {:?}\n{}", started.elapsed(), logs());
    assert!(
        out.contains("unhealthy: state database does not take writes"),
        "{out}"
    );
    let (code, _, err) = d.cli(&["poll", "full", "--commit", "--admin", &admin]);
    assert_eq!(code, 1);
    assert!(err.contains("state database unavailable"), "{err}");

    assert!(pings() > 0, "no watchdog pings while healthy");
    // Past the limit the watchdog goes quiet (so systemd would restart the daemon).
    until("the watchdog goes quiet", || {
        logs().contains("watchdog: no longer pinging")
    })
    .await;
    pings(); // those sent before it went quiet

    // The receiver is back, but nothing is sent while no acknowledgement can be stored: the
    // count stays put while pollhook tries (and fails) to open the store again, three times.
    rx.clear_script();
    let sent_before = rx.received().len();
    let rss_before = rss_kib(pid);
    let text = eventually(
        2 * PATIENCE,
        "three attempts to reopen the store",
        || async {
            let (_, text, _) = get(&format!("{base}/metrics")).await;
            (metric(&text, "pollhook_store_reopen_attempts_total") >= 3.0).then_some(text)
        },
    )
    .await;
    assert_eq!(metric(&text, "pollhook_store_writable"), 0.0, "{text}");
    // The queue is known without the store scanning: counters kept since the open.
    let waiting = metric(&text, "pollhook_outbox_depth{bridge=\"full\"}");
    assert!(waiting > 0.0, "{text}");
    assert_eq!(
        metric(&text, "pollhook_outbox_depth_all"),
        waiting,
        "{text}"
    );
    assert!(
        rx.received().len() <= sent_before + 1,
        "events were sent while the disk was full: {} -> {}",
        sent_before,
        rx.received().len()
    );
    let grown = rss_kib(pid).saturating_sub(rss_before);
    assert!(
        grown < 32 * 1024,
        "RSS grew {grown} KiB while the disk was full"
    );

    // Space returns: recovery without a restart, and every change arrives.
    std::fs::remove_file(&fill).unwrap();
    eventually(2 * PATIENCE, "/healthz to say 200 again", || async {
        get(&format!("{base}/healthz")).await.0 == 200
    })
    .await;
    until("the watchdog pinged again", || pings() > 0).await;
    until("rounds 1 to 3 delivered: seqs 1..=15", || {
        let got = by_seq(&rx);
        (1..=15).all(|s| got.contains_key(&s))
    })
    .await;
    let got = by_seq(&rx);
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        (1..=15).collect::<Vec<_>>(),
        "seqs are gap-free and none is invented"
    );
    let mut seq_of_id: HashMap<String, u64> = HashMap::new();
    for (seq, events) in &got {
        for e in events {
            assert_eq!(e, &events[0], "seq {seq} was sent as two different events");
            let id = e["id"].as_str().unwrap().to_string();
            assert_eq!(
                *seq_of_id.entry(id).or_insert(*seq),
                *seq,
                "an id was reused"
            );
        }
    }
    let last: Vec<_> = (11..=15)
        .map(|s| got[&s][0]["data"]["round"].clone())
        .collect();
    assert_eq!(
        last,
        vec![json!(3); 5],
        "round 3 was detected after the disk had room"
    );

    // Full again, then SIGTERM: the final flush fails, and the exit is still 0. sled reuses
    // the room its files already have, so large changes keep coming until it needs more.
    let fill = fs.fill();
    let round = std::cell::Cell::new(4);
    eventually(2 * PATIENCE, "/healthz to say 503 the second time", || async {
        if get(&format!("{base}/healthz")).await.0 == 503 {
            return true;
        }
        // A new round each time pollhook has had time to poll the last (every 500 ms).
        let big = "x".repeat(200_000);
        up.set_json(&json!({"items": (1..=5).map(|id| json!({"id": id, "round": round.get(), "big": big})).collect::<Vec<_>>()}));
        round.set(round.get() + 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        false
    })
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    std::fs::remove_file(fill).unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    drop(fs);
}
