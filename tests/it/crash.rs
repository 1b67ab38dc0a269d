//! kill -9 at varied points (while polling, right after detection, mid-delivery), many times:
//! the receiver gets every change at least once, duplicates only with the same id, nothing
//! invented, and `seq` has no gaps.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::process::Stdio;
use std::time::Duration;

fn start(dir: &std::path::Path) -> std::process::Child {
    pollhook_in(dir, &["run", "--admin", "off", "--log-format", "json"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The upstream listing of round `r`: items come, change and go.
fn listing(r: usize) -> BTreeMap<String, Value> {
    let mut m = BTreeMap::new();
    for id in 0..6usize {
        // Item `id` exists in rounds where (r + id) % 5 != 0, and changes every other round.
        if (r + id) % 5 != 0 {
            m.insert(id.to_string(), json!({"id": id, "v": (r + id) / 2}));
        }
    }
    m
}

#[tokio::test]
async fn kill_9_loses_nothing_and_invents_nothing() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("500ms")
        .first_poll("emit")
        .max_fraction("1.0")
        .signed_sink(&rx.url())
        .retry("[100ms, 100ms, 200ms, 300ms, 500ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s]")
        .write(dir.path(), "crashy");

    // Every value the upstream ever served, per key: an event's data must be one of them.
    let mut served: HashMap<String, HashSet<String>> = HashMap::new();
    let serve = |r: usize, served: &mut HashMap<String, HashSet<String>>| {
        let l = listing(r);
        for (k, v) in &l {
            served.entry(k.clone()).or_default().insert(v.to_string());
        }
        up.set_json(&json!({"items": l.values().collect::<Vec<_>>()}));
    };

    let rounds = 14;
    for r in 0..rounds {
        serve(r, &mut served);
        if r % 4 == 1 {
            // Some failures on the way, so retries are in flight when the kill comes.
            rx.answer(500, &[]);
        }
        let mut child = start(dir.path());
        let before = rx.received().len();
        match r % 3 {
            // Mid-delivery: as soon as a webhook of this run arrives.
            0 => {
                // Looked at every 2 ms, to kill it in the middle; none within 10 s (nothing
                // left to send): the kill comes anyway.
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    while rx.received().len() == before {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
                .await;
            }
            // Early: while starting or in the first poll.
            1 => tokio::time::sleep(Duration::from_millis(15 * (r as u64 % 7))).await,
            // Later: after a poll or two, between detection and delivery or after it.
            _ => tokio::time::sleep(Duration::from_millis(300 + 60 * (r as u64 % 5))).await,
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }

    // A last run that is left alone until the receiver has caught up with the final listing.
    let final_listing = listing(rounds - 1);
    let mut child = start(dir.path());
    let reconstruct = |got: &[Received]| {
        let mut by_seq: BTreeMap<u64, Value> = BTreeMap::new();
        for r in got.iter().filter(|r| !r.body.is_empty()) {
            let e = r.json();
            by_seq.insert(e["seq"].as_u64().unwrap(), e);
        }
        let mut state: BTreeMap<String, Value> = BTreeMap::new();
        for e in by_seq.values() {
            let key = e["key"].as_str().unwrap().to_string();
            match e["type"].as_str().unwrap() {
                "item.deleted" => {
                    state.remove(&key);
                }
                _ => {
                    state.insert(key, e["data"].clone());
                }
            }
        }
        (by_seq, state)
    };
    until("the receiver's view matches the final listing", || {
        reconstruct(&rx.received()).1 == final_listing
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();

    let got = rx.received();
    let (by_seq, _) = reconstruct(&got);
    // No gaps: every seq from 1 to the last arrived.
    let max = *by_seq.keys().last().unwrap();
    assert_eq!(
        by_seq.len() as u64,
        max,
        "missing seqs: {:?}",
        (1..=max)
            .filter(|s| !by_seq.contains_key(s))
            .collect::<Vec<_>>()
    );
    // Duplicates only with the same id, and one id is one event.
    let mut by_id: HashMap<String, Vec<u8>> = HashMap::new();
    let mut seq_ids: HashMap<u64, String> = HashMap::new();
    for r in &got {
        assert!(verify_standard(SECRET, r));
        let e = r.json();
        let id = e["id"].as_str().unwrap().to_string();
        assert_eq!(r.header("webhook-id"), id);
        if let Some(body) = by_id.insert(id.clone(), r.body.to_vec()) {
            assert_eq!(body, r.body.to_vec(), "two different events share id {id}");
        }
        let seq = e["seq"].as_u64().unwrap();
        if let Some(other) = seq_ids.insert(seq, id.clone()) {
            assert_eq!(other, id, "seq {seq} was given to two events");
        }
        // Nothing invented: data is a value the upstream served for that key.
        if let Some(data) = e.get("data") {
            let key = e["key"].as_str().unwrap();
            assert!(
                served[key].contains(&data.to_string()),
                "invented {data} for {key}"
            );
        }
    }
    assert!(
        got.len() > by_seq.len(),
        "no event was ever sent twice: neither retries nor kills exercised re-delivery"
    );
    eprintln!(
        "{} requests, {} events, {} rounds",
        got.len(),
        by_seq.len(),
        rounds
    );
}
