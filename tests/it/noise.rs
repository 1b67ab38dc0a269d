//! Noise (docs/configuration.md#settle): `emit.settle` against a real upstream, the real
//! pipeline and store, a restart and a kill -9 of the real binary.

use crate::support::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;

fn listing(v: &str) -> serde_json::Value {
    json!({"items": [{"id": 1, "v": v}]})
}

fn kinds(rx: &Receiver) -> Vec<String> {
    rx.received()
        .iter()
        .map(|r| r.header("x-pollhook-event").to_string())
        .collect()
}

#[tokio::test]
async fn a_flip_back_emits_nothing_and_a_held_change_one_update_across_a_restart() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let mut h = Harness::new();
    let yaml = BridgeYaml::standard(&up.url(), &rx.url())
        .emit("settle: 3")
        .build();
    let b = h.bridge("flappy", &yaml);
    up.set_json(&listing("A"));
    h.poll(&b).await.unwrap();
    // A -> B -> B -> A: B never held for 3 polls.
    for v in ["B", "B", "A", "B", "A"] {
        up.set_json(&listing(v));
        h.poll(&b).await.unwrap();
    }
    h.drain(&b).await;
    assert!(rx.received().is_empty(), "{:?}", kinds(&rx));
    // B for two polls, a restart, then a third: the count was kept with the item.
    up.set_json(&listing("B"));
    h.poll(&b).await.unwrap();
    h.poll(&b).await.unwrap();
    h.drain(&b).await;
    assert!(rx.received().is_empty());
    h = h.restart();
    assert_eq!(h.poll(&b).await.unwrap().emitted.updated, 1);
    for _ in 0..3 {
        h.poll(&b).await.unwrap();
    }
    h.drain(&b).await;
    assert_eq!(kinds(&rx), ["item.updated"]);
    let e = rx.received()[0].json();
    assert_eq!(e["previous"]["v"], "A");
    assert_eq!(e["data"]["v"], "B");
    assert_eq!(
        e["changes"],
        json!([{"op": "replace", "path": "/v", "value": "B"}])
    );
    assert!(verify_standard(SECRET, &rx.received()[0]));
}

#[tokio::test]
async fn creates_and_deletes_settle_through_the_real_pipeline() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::standard(&up.url(), &rx.url())
        .emit("settle: 2")
        .build();
    let b = h.bridge("settling", &yaml);
    let both = json!({"items": [{"id": 1}, {"id": 2}]});
    let one = json!({"items": [{"id": 1}]});
    up.set_json(&one);
    h.poll(&b).await.unwrap();
    // 2 appears for one poll only: nothing. Then for two: created.
    for l in [&both, &one, &both] {
        up.set_json(l);
        assert_eq!(h.poll(&b).await.unwrap().emitted.total(), 0);
    }
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.emitted.created, 1);
    // Gone for one poll: nothing; for two: deleted.
    up.set_json(&one);
    assert_eq!(h.poll(&b).await.unwrap().emitted.total(), 0);
    assert_eq!(h.poll(&b).await.unwrap().emitted.deleted, 1);
    h.drain(&b).await;
    assert_eq!(kinds(&rx), ["item.created", "item.deleted"]);
    let (items, meta, _) = h.snapshot("settling");
    assert_eq!((items.len(), meta.items, meta.pending), (1, 1, 0));
}

/// The store as the daemon left it: what is pending for item 1.
fn pending_of(dir: &std::path::Path) -> Option<pollhook::diff::Pending> {
    let s = pollhook::store::Store::open(&dir.join("data")).unwrap();
    s.item_state("crashy", "1").unwrap().and_then(|s| s.pending)
}

#[tokio::test]
async fn kill_9_while_a_change_settles_neither_loses_nor_doubles_it() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("500ms")
        .emit("settle: 3")
        .signed_sink(&rx.url())
        .retry("[100ms, 200ms, 500ms, 1s, 1s, 1s, 1s, 1s]")
        .write(dir.path(), "crashy");
    up.set_json(&listing("A"));
    let d = Daemon::start(dir.path(), &[]);
    // A second poll began: the baseline is stored; a clean stop puts it on disk (a baseline
    // has no events to flush, and a kill -9 now could take it back).
    until("a baseline", || up.hits().len() >= 2).await;
    d.terminate().await;
    let mut d;
    // Killed at several points while B settles (3 polls in a row).
    up.set_json(&listing("B"));
    for round in 0..4u64 {
        d = Daemon::start(dir.path(), &[]);
        let from = up.hits().len();
        until("a poll of B", || up.hits().len() > from).await;
        tokio::time::sleep(Duration::from_millis(100 * round)).await;
        d.child.kill().await.unwrap(); // SIGKILL
        d.child.wait().await.unwrap();
        if !rx.received().is_empty() {
            break;
        }
    }
    // Left alone: the change settles (if it did not already) and is delivered, once.
    let mut d = Daemon::start(dir.path(), &[]);
    until("the update", || !rx.received().is_empty()).await;
    let from = up.hits().len();
    until("five more polls", || up.hits().len() >= from + 5).await;
    d.child.kill().await.unwrap();
    d.child.wait().await.unwrap();
    let got = rx.received();
    let ids: HashSet<String> = got
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one change, one event id: {got:?}");
    let e = got[0].json();
    assert_eq!(
        (e["type"].as_str(), e["seq"].as_u64()),
        (Some("item.updated"), Some(1))
    );
    assert_eq!(
        (e["previous"]["v"].as_str(), e["data"]["v"].as_str()),
        (Some("A"), Some("B"))
    );
    assert_eq!(pending_of(dir.path()), None);
}

/// A harness on a clock the test moves, kept across a restart.
fn on_clock(dir: tempfile::TempDir, clock: &pollhook::clock::Clock) -> Harness {
    let store = pollhook::store::Store::open(&dir.path().join("data")).unwrap();
    let ctx = pollhook::runtime::Ctx::with_clock(store, clock.clone());
    Harness {
        dir,
        ctx: std::sync::Arc::new(ctx),
        windows: Default::default(),
    }
}

/// The harness reopened on the same store and clock, as a restart does.
fn restarted(h: Harness, clock: &pollhook::clock::Clock) -> Harness {
    let Harness { dir, ctx, .. } = h;
    ctx.store().unwrap().flush_blocking().unwrap();
    drop(ctx);
    on_clock(dir, clock)
}

/// What a test of quiet spells starts from: an upstream, a receiver, a fixed clock, and a
/// harness on that clock in a fresh directory.
async fn quiet_harness() -> (Upstream, Receiver, pollhook::clock::Clock, Harness) {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let clock =
        pollhook::clock::Clock::fixed(chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap());
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    let h = on_clock(dir, &clock);
    (up, rx, clock, h)
}

#[tokio::test]
async fn quiet_once_after_the_spell_and_active_once_when_it_changes_across_a_restart() {
    let (up, rx, clock, mut h) = quiet_harness().await;
    let yaml = BridgeYaml::standard(&up.url(), &rx.url())
        .emit("quiet: 1h")
        .build();
    let b = h.bridge("calm", &yaml);
    up.set_json(&listing("A"));
    h.scheduled_poll(&b).await.unwrap();
    for _ in 0..7 {
        clock.advance(Duration::from_secs(11 * 60));
        h.scheduled_poll(&b).await.unwrap();
    }
    h.drain(&b).await;
    assert_eq!(kinds(&rx), ["bridge.quiet"]);
    // Stored: a restart does not announce it again.
    h = restarted(h, &clock);
    clock.advance(Duration::from_secs(3600));
    h.scheduled_poll(&b).await.unwrap();
    up.set_json(&listing("B"));
    h.scheduled_poll(&b).await.unwrap();
    h.scheduled_poll(&b).await.unwrap();
    h.drain(&b).await;
    assert_eq!(
        kinds(&rx),
        ["bridge.quiet", "item.updated", "bridge.active"]
    );
    let got = rx.received();
    assert!(got.iter().all(|r| verify_standard(SECRET, r)));
    let (quiet, active) = (got[0].json(), got[2].json());
    assert_eq!(
        (quiet["seq"].as_u64(), quiet["key"].as_str()),
        (Some(1), Some(""))
    );
    assert_eq!(quiet["data"]["quiet_ms"], 66 * 60_000);
    // The update itself, then `bridge.active`.
    assert_eq!(active["seq"], 3);
    assert_eq!(active["data"]["since"], quiet["data"]["since"]);
    assert_eq!(active["data"]["quiet_ms"], (77 + 60) * 60_000);
}

#[tokio::test]
async fn quiet_over_polls_answered_304_is_announced_once_and_active_once_across_restarts() {
    let (up, rx, clock, mut h) = quiet_harness().await;
    let yaml = BridgeYaml::standard(&up.url(), &rx.url())
        .source("conditional: true")
        .emit("quiet: 1h")
        .build();
    let b = h.bridge("still", &yaml);
    let answer = |v: &str, etag: &str| Answer::json(&listing(v)).header("etag", etag);
    up.set_answer(answer("A", "\"a\""));
    assert!(h.scheduled_poll(&b).await.unwrap().baseline);
    // Every poll after the baseline is a 304; restarts in the spell, after its announcement,
    // and after the change.
    for i in 1..=12 {
        clock.advance(Duration::from_secs(11 * 60));
        let r = h.scheduled_poll(&b).await.unwrap();
        assert!(r.not_modified, "poll {i} was not a 304");
        if i % 3 == 0 {
            h = restarted(h, &clock);
        }
    }
    h.drain(&b).await;
    assert_eq!(kinds(&rx), ["bridge.quiet"]);
    up.set_answer(answer("B", "\"b\""));
    clock.advance(Duration::from_secs(60));
    assert_eq!(h.scheduled_poll(&b).await.unwrap().emitted.updated, 1);
    h = restarted(h, &clock);
    for _ in 0..3 {
        clock.advance(Duration::from_secs(11 * 60));
        assert!(h.scheduled_poll(&b).await.unwrap().not_modified);
        h = restarted(h, &clock);
    }
    h.drain(&b).await;
    assert_eq!(
        kinds(&rx),
        ["bridge.quiet", "item.updated", "bridge.active"]
    );
    let got = rx.received();
    let (quiet, active) = (got[0].json(), got[2].json());
    // Announced at the first poll 1h after the baseline (the 6th, 66 min), not later.
    assert_eq!(quiet["data"]["quiet_ms"], 66 * 60_000);
    assert_eq!(
        (quiet["seq"].as_u64(), active["seq"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(active["data"]["quiet_ms"], (12 * 11 + 1) * 60_000);
}

#[tokio::test]
async fn a_change_settling_moves_with_the_state_document_and_is_emitted_once_on_the_new_store() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let yaml = BridgeYaml::standard(&up.url(), &rx.url())
        .emit("settle: 3")
        .build();
    let a = Harness::new();
    let b = a.bridge("moving", &yaml);
    up.set_json(&listing("A"));
    a.poll(&b).await.unwrap();
    // B seen on two polls of three: pending, counted 2.
    up.set_json(&listing("B"));
    for _ in 0..2 {
        assert_eq!(a.poll(&b).await.unwrap().emitted.total(), 0);
    }
    let Harness { dir: from, ctx, .. } = a;
    ctx.store().unwrap().flush_blocking().unwrap();
    drop(ctx);
    let out = cli_command(&["state", "export", "--bridge", "moving", "--data"])
        .arg(from.path().join("data"))
        .output()
        .unwrap();
    let (code, doc, err) = output_of(out);
    assert_eq!(code, 0, "{err}");
    assert!(doc.contains("\"pending\""), "{doc}");
    let file = from.path().join("moving.state");
    std::fs::write(&file, &doc).unwrap();
    let to = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(to.path().join("bridges")).unwrap();
    let out = cli_command(&["state", "import"])
        .arg(&file)
        .arg("--data")
        .arg(to.path().join("data"))
        .output()
        .unwrap();
    let (code, _, err) = output_of(out);
    assert_eq!(code, 0, "{err}");
    // On the new store the count goes on: the third poll of B settles it, once.
    let h = on_clock(to, &pollhook::clock::Clock::system());
    let b = h.bridge("moving", &yaml);
    assert_eq!(h.poll(&b).await.unwrap().emitted.updated, 1);
    for _ in 0..3 {
        assert_eq!(h.poll(&b).await.unwrap().emitted.total(), 0);
    }
    h.drain(&b).await;
    assert_eq!(kinds(&rx), ["item.updated"]);
    let e = rx.received()[0].json();
    assert_eq!(
        (e["previous"]["v"].as_str(), e["data"]["v"].as_str()),
        (Some("A"), Some("B"))
    );
    assert_eq!(e["seq"], 1);
    let (items, meta, _) = h.snapshot("moving");
    assert_eq!((items.len(), meta.pending), (1, 0));
}
