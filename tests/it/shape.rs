//! Shape drift (docs/testing-bridges.md#shape-drift): `emit.shape` against a real upstream, the
//! real pipeline and store, a real receiver checking signatures; a restart, and the real
//! binary with `pollhook accept-shape` and `pollhook status` through its admin socket.

use crate::support::*;
use serde_json::{Value, json};

/// `n` items, item i made by `f`.
fn listing(n: usize, f: impl Fn(usize) -> Value) -> Value {
    json!({"items": (0..n).map(f).collect::<Vec<_>>()})
}

fn named(i: usize) -> Value {
    json!({"id": i, "name": format!("n{i}")})
}

fn titled(i: usize) -> Value {
    json!({"id": i, "title": format!("n{i}")})
}

fn kinds(rx: &Receiver) -> Vec<String> {
    rx.received()
        .iter()
        .map(|r| r.header("x-pollhook-event").to_string())
        .collect()
}

fn count(rx: &Receiver, kind: &str) -> usize {
    kinds(rx).iter().filter(|k| *k == kind).count()
}

#[tokio::test]
async fn a_renamed_field_is_one_signed_event_and_one_warn_not_repeated() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::standard(&up.url(), &rx.url())
        .every("500ms")
        .write(dir.path(), "renamed");
    up.set_json(&listing(10, named));
    let d = Daemon::start(dir.path(), &[]);
    until("a baseline", || up.hits().len() >= 2).await;
    up.set_json(&listing(10, titled));
    until("the shape event", || {
        count(&rx, "bridge.shape_changed") == 1
    })
    .await;
    let from = up.hits().len();
    until("three more polls", || up.hits().len() >= from + 3).await;
    let (_, _, err) = d.terminate().await;
    // `warn`: the drift is announced once; the items' changes go out as usual.
    assert_eq!(count(&rx, "bridge.shape_changed"), 1, "{:?}", kinds(&rx));
    assert_eq!(count(&rx, "item.updated"), 10);
    let got = rx.received();
    assert!(got.iter().all(|r| verify_standard(SECRET, r)));
    let e = got
        .iter()
        .map(Received::json)
        .find(|e| e["type"] == "bridge.shape_changed")
        .unwrap();
    assert_eq!((e["key"].as_str(), e["seq"].as_u64()), (Some(""), Some(1)));
    assert_eq!(
        e["data"]["changes"],
        json!([{"change": "gone", "path": "$.name", "before": "string"}])
    );
    assert_eq!(
        e["data"]["before"],
        json!({"paths": {"$.id": "number", "$.name": "string"}, "items": 10})
    );
    assert_eq!(
        e["data"]["after"],
        json!({"paths": {"$.id": "number", "$.title": "string"}, "items": 10})
    );
    let warns: Vec<&String> = err.iter().filter(|l| l.contains("shape changed")).collect();
    assert_eq!(warns.len(), 1, "{err:#?}");
    assert!(
        warns[0].contains("WARN")
            && warns[0].contains("poll renamed: shape changed: $.name gone (was string)"),
        "{}",
        warns[0]
    );
}

#[tokio::test]
async fn a_type_change_is_announced_once() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let b = h.bridge("typed", &BridgeYaml::standard(&up.url(), &rx.url()).build());
    up.set_json(&listing(5, |i| json!({"id": i, "price": 10})));
    h.poll(&b).await.unwrap();
    up.set_json(&listing(5, |i| json!({"id": i, "price": "10"})));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.emitted.updated, 5);
    // The same drifted shape again, and an item changing within it: nothing new of the shape.
    up.set_json(&listing(
        5,
        |i| json!({"id": i, "price": if i == 0 { "11" } else { "10" }}),
    ));
    h.poll(&b).await.unwrap();
    h.drain(&b).await;
    assert_eq!(count(&rx, "bridge.shape_changed"), 1, "{:?}", kinds(&rx));
    assert_eq!(count(&rx, "item.updated"), 6);
    let e = rx.received()[0].json();
    assert_eq!(e["type"], "bridge.shape_changed");
    assert_eq!(
        e["data"]["changes"],
        json!([{"change": "type", "path": "$.price", "before": "number", "after": "string"}])
    );
    assert!(verify_standard(SECRET, &rx.received()[0]));
}

/// The held bridge's stored items: their `name`s.
fn names(h: &Harness, bridge: &str) -> Vec<Value> {
    let (items, _, _) = h.snapshot(bridge);
    items
        .into_iter()
        .map(|(_, _, v)| v["name"].clone())
        .collect()
}

#[tokio::test]
async fn a_held_poll_stores_nothing_keeps_its_hold_across_a_restart_and_goes_on_when_the_shape_returns()
 {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let mut h = Harness::new();
    let yaml = BridgeYaml::standard(&up.url(), &rx.url())
        .emit("shape: hold")
        .build();
    let b = h.bridge("held", &yaml);
    up.set_json(&listing(4, named));
    h.poll(&b).await.unwrap();
    up.set_json(&listing(4, titled));
    let r = h.poll(&b).await.unwrap();
    assert!(r.shape.as_ref().is_some_and(|n| n.held && n.announced));
    assert_eq!((r.emitted.total(), r.events.len()), (0, 1));
    // Held: the items as they were, no item event, the hold in the meta.
    assert_eq!(names(&h, "held"), ["n0", "n1", "n2", "n3"]);
    let (_, meta, _) = h.snapshot("held");
    assert!(meta.shape.unwrap().drift.unwrap().held);
    h = h.restart();
    for _ in 0..2 {
        let r = h.poll(&b).await.unwrap();
        assert!(r.shape.as_ref().is_some_and(|n| n.held && !n.announced));
        assert!(r.events.is_empty());
    }
    assert_eq!(names(&h, "held"), ["n0", "n1", "n2", "n3"]);
    // The shape returns by itself, one item changed meanwhile: the poll goes on.
    up.set_json(&listing(4, |i| match i {
        3 => json!({"id": 3, "name": "changed"}),
        _ => named(i),
    }));
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.shape, r.emitted.updated), (None, 1));
    let (_, meta, _) = h.snapshot("held");
    assert_eq!(meta.shape.unwrap().drift, None);
    h.drain(&b).await;
    assert_eq!(kinds(&rx), ["bridge.shape_changed", "item.updated"]);
}

#[tokio::test]
async fn an_emptied_listing_held_sends_no_deletes_until_accept_shape_then_each_once() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::standard(&up.url(), &rx.url())
        .every("500ms")
        .emit("shape: hold")
        .write(dir.path(), "emptied");
    up.set_json(&listing(20, named));
    let d = Daemon::start(dir.path(), &[]);
    until("a baseline", || up.hits().len() >= 2).await;
    up.set_json(&json!({"items": []}));
    until("the shape event", || {
        count(&rx, "bridge.shape_changed") == 1
    })
    .await;
    let from = up.hits().len();
    until("three more polls", || up.hits().len() >= from + 3).await;
    assert_eq!(kinds(&rx), ["bridge.shape_changed"]);
    let e = rx.received()[0].json();
    assert_eq!(
        e["data"]["changes"],
        json!([{"change": "count", "before": 20, "after": 0}])
    );
    let (code, out, err) = d.cli(&["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(
            "    shape held: select matched 0 items (usually 20) (`pollhook accept-shape emptied`)"
        ),
        "{out}"
    );
    let (code, out, err) = d.cli(&["accept-shape", "emptied"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "accept-shape emptied: select matched 0 items (usually 20); the next poll goes on as usual\n"
    );
    until("the deletes", || count(&rx, "item.deleted") == 20).await;
    let from = up.hits().len();
    until("three more polls", || up.hits().len() >= from + 3).await;
    // Nothing left to accept.
    let (code, _, err) = d.cli(&["accept-shape", "emptied"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("bridge `emptied` has no shape drift to accept"),
        "{err}"
    );
    let (_, out, _) = d.cli(&["status"]);
    assert!(!out.contains("shape held"), "{out}");
    d.terminate().await;
    assert_eq!(count(&rx, "item.deleted"), 20, "{:?}", kinds(&rx));
    assert_eq!(rx.received().len(), 21);
    let s = pollhook::store::Store::open(&dir.path().join("data")).unwrap();
    assert!(s.items("emptied").unwrap().is_empty());
}
