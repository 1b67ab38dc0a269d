//! Shards and their layouts (docs/scaling.md#shards): the layout each shard records in its
//! store, the bridges a change of layout moves, and `GET /v1/layout`, against the real binary.

use crate::support::*;
use pollhook::shard::{legacy_owner, owner};
use pollhook::store::{BridgeMeta, Commit, Put, Store};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

/// A store as versions from before layouts left it: the bridges of shard `index` of `shards`
/// under `sha256 mod N`, each with one item, and no layout record.
fn legacy_store(
    data: &std::path::Path,
    bridges: &[String],
    index: u64,
    shards: u64,
) -> Vec<String> {
    let store = Store::open(data).unwrap();
    let mut held = Vec::new();
    for b in bridges.iter().filter(|b| legacy_owner(b, shards) == index) {
        let c = Commit {
            bridge: b.clone(),
            meta: BridgeMeta {
                seq: 1,
                baselined: true,
                items: 1,
                ..Default::default()
            },
            puts: vec![Put::new("1", [1; 16], br#"{"id":1}"#.to_vec())],
            ..Default::default()
        };
        store.commit(&c).unwrap();
        held.push(b.clone());
    }
    store.flush_blocking().unwrap();
    held
}

async fn layout_of(d: &Daemon, admin: &str) -> Value {
    let url = format!("http://{admin}/v1/layout");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match get_json(&url).await {
            (200, v) => return v,
            (0, _) => {}
            (code, v) => panic!("{url}: {code} {v}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{url} never answered: {}",
            d.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_store_gives_up_the_bridges_jump_hash_moves_and_records_its_layout() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..16).map(|i| format!("b{i}")).collect();
    for n in &names {
        BridgeYaml::new(&format!("{}/{n}", up.base))
            .every("1s")
            .signed_sink(&rx.url())
            .write(dir.path(), n);
    }
    let held = legacy_store(&dir.path().join("data"), &names, 0, 2);
    let outgoing: Vec<&String> = held.iter().filter(|b| owner(b, 2) != 0).collect();
    let incoming: Vec<&String> = names
        .iter()
        .filter(|b| owner(b, 2) == 0 && !held.contains(b))
        .collect();
    assert!(!outgoing.is_empty() && !incoming.is_empty(), "{held:?}");

    let admin = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_logging(
        dir.path(),
        &[],
        "json",
        &["--admin", &admin, "--shard", "0/2"],
    );
    let l = layout_of(&d, &admin).await;
    assert_eq!(
        (l["index"].as_u64(), l["shards"].as_u64()),
        (Some(0), Some(2)),
        "{l}"
    );
    assert_eq!(l["epoch"], 1, "{l}");
    assert_eq!(l["drained"], false, "{l}");
    let out: BTreeSet<(String, u64)> = l["outgoing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["bridge"].as_str().unwrap().to_string(),
                o["to"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: BTreeSet<(String, u64)> = outgoing
        .iter()
        .map(|b| (b.to_string(), owner(b, 2)))
        .collect();
    assert_eq!(out, want);
    let inc = l["incoming"].as_array().unwrap();
    let got: BTreeSet<&str> = inc.iter().map(|i| i["bridge"].as_str().unwrap()).collect();
    assert_eq!(got, incoming.iter().map(|b| b.as_str()).collect());
    for i in inc {
        let b = i["bridge"].as_str().unwrap();
        assert_eq!(i["from"].as_u64(), Some(legacy_owner(b, 2)), "{i}");
        assert!(i["since"].as_str().unwrap().ends_with('Z'), "{i}");
    }
    // Every bridge the shard owns is polled (incoming ones from an empty state, for now);
    // an outgoing one never.
    eventually("every owned bridge polled", || {
        let paths: BTreeSet<String> = up.hits().iter().map(|h| h.uri.clone()).collect();
        names
            .iter()
            .filter(|b| owner(b, 2) == 0)
            .all(|b| paths.contains(&format!("/{b}")))
    })
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    let polled: BTreeSet<String> = up.hits().iter().map(|h| h.uri.clone()).collect();
    let logs = err.join("\n");
    for b in &outgoing {
        assert!(!polled.contains(&format!("/{b}")), "{b} polled");
        let line = err
            .iter()
            .find(|l| l.contains(&format!("\"bridge\":\"{b}\"")) && l.contains("belongs to shard"))
            .unwrap_or_else(|| panic!("no line for {b}: {logs}"));
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["to"], owner(b, 2), "{v}");
        assert_eq!(v["level"], "WARN", "{v}");
    }

    // Same layout again: same epoch. Grown to 3 shards: the epoch grows, and the previous
    // layout is this one.
    let d = Daemon::start_logging(
        dir.path(),
        &[],
        "json",
        &["--admin", &admin, "--shard", "0/2"],
    );
    assert_eq!(layout_of(&d, &admin).await["epoch"], 1);
    d.terminate().await;
    let d = Daemon::start_logging(
        dir.path(),
        &[],
        "json",
        &["--admin", &admin, "--shard", "0/3"],
    );
    let l = layout_of(&d, &admin).await;
    assert_eq!(l["epoch"], 2, "{l}");
    let out: Vec<&str> = l["outgoing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["bridge"].as_str().unwrap())
        .collect();
    // Under jump hash, going from 2 to 3 moves bridges only to the new shard 2.
    for o in l["outgoing"].as_array().unwrap() {
        let b = o["bridge"].as_str().unwrap();
        assert!(owner(b, 3) != 0, "{o}");
    }
    assert!(out.iter().all(|b| names.iter().any(|n| n == b)));
    let (code, _, _) = d.terminate().await;
    assert_eq!(code, 0);
}
