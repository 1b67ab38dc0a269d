//! A first poll of a large listing is stored in batches. Killed between two of them, the
//! real binary leaves state and events that agree, and the next poll finishes the job: each
//! item reported created once, `seq` without gaps, no id twice.

use crate::support::*;
use pollhook::store::{OutboxEntry, Store};
use serde_json::json;
use std::collections::HashSet;
use std::io::BufRead;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Twenty batches.
const N: usize = 20_000;

fn poll(dir: &std::path::Path) -> Command {
    let mut c = pollhook_in(dir, &["poll", "big", "--commit", "--admin", "127.0.0.1:1"]);
    c.env("RUST_LOG", "pollhook=debug").stdout(Stdio::null());
    c
}

/// The bridge's queue, in order; each event once, seq 1, 2, 3, …, no id twice.
fn gap_free_queue(store: &Store) -> Vec<OutboxEntry> {
    let q: Vec<OutboxEntry> = store
        .outbox_all()
        .unwrap()
        .into_iter()
        .map(|(_, _, e)| e)
        .collect();
    let seqs: Vec<u64> = q.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=q.len() as u64).collect::<Vec<_>>());
    let ids: HashSet<&str> = q.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), q.len(), "an id was given twice");
    q
}

// The upstream answers on this runtime while the test waits on the child: two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_poll_killed_between_batches_is_finished_by_the_next_each_item_once() {
    let up = Upstream::start().await;
    let items: Vec<_> = (0..N).map(|k| json!({"id": k, "v": 0})).collect();
    up.set_json(&json!({ "items": items }));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1h")
        .first_poll("emit")
        .sink("console")
        .write(dir.path(), "big");

    // kill -9 once two batches are stored (each is flushed before the next begins).
    let mut child = poll(dir.path()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("poll batch stored") && tx.send(()).is_err() {
                break;
            }
        }
    });
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(120))
            .expect("the first poll stored no batch");
    }
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();

    {
        let store = Store::open(&dir.path().join("data")).unwrap();
        let meta = store.meta("big").unwrap();
        assert!(!meta.baselined, "a cut-short first poll is not a baseline");
        let stored = store.load_state("big").unwrap().len();
        assert!((2_000..N).contains(&stored), "{stored} items stored");
        // Each stored item came with its event, and nothing else did.
        let q = gap_free_queue(&store);
        assert_eq!(q.len(), stored);
        assert_eq!(meta.seq, stored as u64);
    }

    // The next poll reports the rest, each once.
    let out = poll(dir.path()).stderr(Stdio::piped()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&dir.path().join("data")).unwrap();
    let meta = store.meta("big").unwrap();
    assert!(meta.baselined);
    assert_eq!((meta.seq, meta.items), (N as u64, N));
    let q = gap_free_queue(&store);
    let keys: HashSet<String> = q
        .iter()
        .map(|e| {
            assert_eq!(e.kind, pollhook::event::EventType::Created);
            serde_json::from_str::<serde_json::Value>(&e.body).unwrap()["key"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(keys.len(), N);
}
