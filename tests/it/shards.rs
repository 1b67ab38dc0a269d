//! Shards and their layouts (docs/scaling.md#shards): the layout each shard records in its
//! store, the bridges a change of layout moves, and `GET /v1/layout`, against the real binary.

use crate::support::*;
use pollhook::shard::{legacy_owner, owner};
use pollhook::store::{BridgeMeta, Commit, Put, Store};
use serde_json::{Value, json};
use std::collections::BTreeSet;

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
    eventually(PATIENCE, &format!("an answer from {url}"), || async {
        match get_json(&url).await {
            (200, v) => Ok(v),
            (0, _) => Err(format!("nothing listens yet; logs:\n{}", d.logs())),
            (code, v) => panic!("{url}: {code} {v}"),
        }
    })
    .await
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
    until("every owned bridge polled", || {
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

/// The webhook requests that were answered 204, by seq: (event id, type).
fn delivered_after(rx: &Receiver, skip: usize) -> Vec<(u64, String, String)> {
    rx.received()
        .iter()
        .skip(skip)
        .map(|r| {
            let e = r.json();
            let id = r.header("webhook-id").to_string();
            (
                e["seq"].as_u64().unwrap(),
                id,
                e["type"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A bridge's state moved by hand (`pollhook state export`, then `import` into an empty store)
/// goes on there as if it had never moved: the event waiting for its sink is delivered with
/// its id, and a change made meanwhile is one ordinary update with the next seq, not a new
/// baseline. The document's secrets never reach stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_exported_and_imported_goes_on_where_it_was() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1, "v": 1}, {"id": 2, "v": 1}]}));
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let yaml = BridgeYaml::new(&up.url())
        .timeout("2s")
        .every("1s")
        .signed_sink(&rx.url())
        .retry("[3s, 3s, 3s, 3s, 3s, 3s, 3s, 3s]");
    yaml.write(a.path(), "moving");
    yaml.write(b.path(), "moving");

    // On A: a baseline, then a change whose event the sink refuses for now.
    for _ in 0..8 {
        rx.answer(503, &[]);
    }
    let d = Daemon::start(a.path(), &[]);
    eventually(PATIENCE, "two polls on A", || async {
        match up.hits().len() {
            n if n >= 2 => Ok(()),
            n => Err(format!("{n} polls; logs:\n{}", d.logs())),
        }
    })
    .await;
    up.set_json(&json!({"items": [{"id": 1, "v": 2}, {"id": 2, "v": 1}]}));
    until("an attempt at the first event", || {
        !rx.received().is_empty()
    })
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    let tried = delivered_after(&rx, 0);
    assert_eq!(
        (tried[0].0, tried[0].2.as_str()),
        (1, "item.updated"),
        "{tried:?}"
    );
    // A login's refresh token, kept by the store as a daemon would.
    let store = Store::open(&a.path().join("data")).unwrap();
    store
        .keep_refresh_token("moving", "rt-configured", "rt-SECRET-42")
        .unwrap();
    drop(store);

    // What a shard of a new layout would take: this bridge, or nothing.
    let by = |shard: String| {
        output_of(
            cli_command(&["state", "export", "--owned-by", &shard, "--data"])
                .arg(a.path().join("data"))
                .output()
                .unwrap(),
        )
    };
    let mine = owner("moving", 2);
    let (code, doc, _) = by(format!("{mine}/2"));
    assert_eq!((code, doc.lines().count()), (0, 1));
    let (code, doc, _) = by(format!("{}/2", 1 - mine));
    assert_eq!((code, doc.as_str()), (0, ""));
    let (code, _, err) = by("2/2".into());
    assert_eq!(code, 1);
    assert!(err.contains("--owned-by `2/2`: shard index 2"), "{err}");

    // Export from A, import into the empty B.
    let file = a.path().join("moving.state");
    let out = cli_command(&["state", "export", "--bridge", "moving", "--data"])
        .arg(a.path().join("data"))
        .output()
        .unwrap();
    let (code, doc, export_err) = output_of(out);
    assert_eq!(code, 0, "{export_err}");
    assert!(doc.contains("rt-SECRET-42") && doc.contains("\"version\":1"));
    assert_eq!(doc.lines().count(), 1);
    std::fs::write(&file, &doc).unwrap();
    let import = |replace: bool| {
        let mut c = cli_command(&["state", "import"]);
        c.arg(&file).arg("--data").arg(b.path().join("data"));
        if replace {
            c.arg("--replace");
        }
        output_of(c.output().unwrap())
    };
    let (code, _, import_err) = import(false);
    assert_eq!(code, 0, "{import_err}");
    assert!(
        import_err.contains("imported bridge `moving`: 2 items, 0 cached pages, 1 events waiting, 0 dead letters, seq 1"),
        "{import_err}"
    );
    for said in [&export_err, &import_err] {
        assert!(
            !said.contains("rt-SECRET-42") && !said.contains("\"v\""),
            "{said}"
        );
    }
    // Once there, a second import is refused whole.
    let (code, _, again) = import(false);
    assert_eq!(code, 1);
    assert!(
        again.contains("bridge `moving` already has state in"),
        "{again}"
    );
    assert!(
        again.contains("nothing imported (--replace overwrites it)"),
        "{again}"
    );

    // On B: the waiting event goes out under its id, and the change made while the bridge
    // moved is the next seq.
    up.set_json(&json!({"items": [{"id": 1, "v": 2}, {"id": 2, "v": 2}]}));
    rx.clear_script();
    let seen = rx.received().len();
    let d = Daemon::start(b.path(), &[]);
    until("two events delivered from B", || {
        delivered_after(&rx, seen).len() >= 2
    })
    .await;
    // The store is the daemon's while it runs.
    let (code, _, locked) = output_of(
        cli_command(&["state", "export", "--data"])
            .arg(b.path().join("data"))
            .output()
            .unwrap(),
    );
    assert_eq!(code, 1);
    assert!(locked.contains("in use by another process"), "{locked}");
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    let got = delivered_after(&rx, seen);
    let seqs: Vec<(u64, &str)> = got.iter().map(|(s, _, t)| (*s, t.as_str())).collect();
    assert_eq!(seqs, [(1, "item.updated"), (2, "item.updated")], "{got:?}");
    assert_eq!(got[0].1, tried[0].1, "the same event id as tried on A");
    let last = rx.received().last().unwrap().json();
    assert_eq!(last["data"], json!({"id": 2, "v": 2}), "{last}");

    // B's store holds the token and the seq where the bridge left it.
    let (code, doc, _) = output_of(
        cli_command(&["state", "export", "--data"])
            .arg(b.path().join("data"))
            .output()
            .unwrap(),
    );
    assert_eq!(code, 0);
    let doc = pollhook::handoff::Document::parse(doc.trim()).unwrap();
    assert_eq!(doc.state.meta.seq, 2);
    assert_eq!(doc.state.auth.unwrap().latest, "rt-SECRET-42");
}
