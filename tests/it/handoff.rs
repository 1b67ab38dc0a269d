//! The live handoff between running shards (docs/scaling.md#handoff), with the real binary: a
//! cluster of shards on loopback addresses 127.0.0.1{i} (one admin port for all, so that one
//! `--peers` template names them), a real upstream whose items change while bridges move, and
//! a real receiver whose webhooks are checked (signatures, seqs, ids).

use crate::support::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use pollhook::shard::owner;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

const TOKEN: &str = "handoff-test-token-7f3a";
const ITEM_SECRET: &str = "item-SECRET-5521";
const REFRESH_SECRET: &str = "rt-SECRET-8890";

/// Shards sharing one bridges directory, each with a state directory of its own.
struct Cluster {
    root: tempfile::TempDir,
    port: u16,
    up: Upstream,
    rx: Receiver,
    names: Vec<String>,
}

/// A port free on 127.0.0.10 to 127.0.0.13 and 127.0.0.20.
fn shared_port() -> u16 {
    loop {
        let p = free_port();
        let free = [10, 11, 12, 13, 20]
            .iter()
            .all(|i| std::net::TcpListener::bind(format!("127.0.0.{i}:{p}")).is_ok());
        if free {
            return p;
        }
    }
}

impl Cluster {
    async fn new(bridges: usize) -> Cluster {
        let up = Upstream::start().await;
        let rx = Receiver::start().await;
        let root = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..bridges).map(|i| format!("b{i}")).collect();
        for n in &names {
            BridgeYaml::standard(&format!("{}/{n}", up.base), &rx.url())
                .every("1s")
                .header("X-Shard", "\"${TEST_SHARD}\"")
                .write(root.path(), n);
        }
        let token = root.path().join("token");
        std::fs::write(&token, TOKEN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        Cluster {
            root,
            port: shared_port(),
            up,
            rx,
            names,
        }
    }

    fn set_items(&self, v: u64) {
        self.up.set_json(&json!({"items": [
            {"id": 1, "v": v, "secret": ITEM_SECRET},
            {"id": 2, "v": 0},
        ]}));
    }

    /// Shard `i`'s directory: `bridges` (the shared one) and `data`.
    fn dir(&self, i: u64) -> PathBuf {
        let d = self.root.path().join(format!("shard{i}"));
        if !d.exists() {
            std::fs::create_dir_all(&d).unwrap();
            std::os::unix::fs::symlink(self.root.path().join("bridges"), d.join("bridges"))
                .unwrap();
        }
        d
    }

    fn data(&self, i: u64) -> PathBuf {
        self.dir(i).join("data")
    }

    fn admin(&self, i: u64) -> String {
        format!("127.0.0.1{i}:{}", self.port)
    }

    /// Shard `i` of `n`, its admin API at `listen` (its own address unless given).
    fn start_at(&self, i: u64, n: u64, listen: &str) -> Daemon {
        self.start_with(i, n, listen, &[])
    }

    /// Shard `i` of `n` at `listen`, with `env` as well.
    fn start_with(&self, i: u64, n: u64, listen: &str, env: &[(&str, &str)]) -> Daemon {
        let template = format!("http://127.0.0.1{{i}}:{}", self.port);
        let shard = format!("{i}/{n}");
        let token = self.root.path().join("token");
        let index = i.to_string();
        let mut all = vec![
            ("TEST_SHARD", index.as_str()),
            ("POLLHOOK_HANDOFF_RETRY", "100ms"),
        ];
        all.extend_from_slice(env);
        Daemon::start_logging(
            &self.dir(i),
            &all,
            "json",
            &[
                "--admin",
                listen,
                "--admin-token-file",
                token.to_str().unwrap(),
                "--shard",
                &shard,
                "--peers",
                &template,
            ],
        )
    }

    fn start(&self, i: u64, n: u64) -> Daemon {
        self.start_at(i, n, &self.admin(i))
    }

    async fn layout(&self, i: u64) -> Value {
        let url = format!("http://{}/v1/layout", self.admin(i));
        eventually(PATIENCE, &format!("{url} answering"), || async {
            match get_json(&url).await {
                (200, v) => Some(v),
                _ => None,
            }
        })
        .await
    }

    /// Waits until shard `i` has no incoming bridge left and holds none of another's.
    async fn settled(&self, i: u64, d: &Daemon) {
        let url = format!("http://{}/v1/layout", self.admin(i));
        eventually(PATIENCE, &format!("shard {i} settled"), || async {
            match get_json(&url).await {
                (200, v) if v["incoming"] == json!([]) && v["drained"] == true => Ok(()),
                (code, v) => Err(format!("{code} {v}; logs:\n{}", d.logs())),
            }
        })
        .await
    }

    /// Every webhook, by bridge: (seq, type, webhook id, body), each id once (a retry sends
    /// the same id); panics on an id sent with two bodies or a signature that does not verify.
    fn delivered(&self) -> BTreeMap<String, Vec<(u64, String)>> {
        let mut bodies: BTreeMap<String, Bytes> = BTreeMap::new();
        let mut out: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
        for r in self.rx.received() {
            assert!(verify_standard(SECRET, &r), "a signature does not verify");
            let id = r.header("webhook-id").to_string();
            if let Some(before) = bodies.get(&id) {
                assert_eq!(before, &r.body, "webhook id {id} sent with two bodies");
                continue;
            }
            bodies.insert(id, r.body.clone());
            let e = r.json();
            out.entry(e["bridge"].as_str().unwrap().to_string())
                .or_default()
                .push((
                    e["seq"].as_u64().unwrap(),
                    e["type"].as_str().unwrap().to_string(),
                ));
        }
        out
    }

    /// Waits until every bridge has delivered the updates of seqs 1 to `n`, and no other
    /// event: seq gap-free, no baseline again.
    async fn delivered_up_to(&self, n: u64, daemons: &[&Daemon]) {
        let want: Vec<(u64, String)> = (1..=n).map(|s| (s, "item.updated".into())).collect();
        eventually(
            PATIENCE,
            &format!("seqs 1..={n} of every bridge"),
            || async {
                let got = self.delivered();
                for b in &self.names {
                    let seen = got.get(b).cloned().unwrap_or_default();
                    assert!(
                        want.starts_with(&seen),
                        "{b}: {seen:?} is not the updates 1..={n}"
                    );
                    if seen != want {
                        let logs: Vec<String> = daemons.iter().map(|d| d.logs()).collect();
                        return Err(format!("{b}: {seen:?}; logs:\n{}", logs.join("\n---\n")));
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// The requests for `bridge` by shard, in order: the `X-Shard` header of each.
    fn polled_by(&self, bridge: &str) -> Vec<String> {
        self.up
            .hits()
            .iter()
            .filter(|h| h.uri == format!("/{bridge}"))
            .map(|h| h.header("x-shard").unwrap_or("?").to_string())
            .collect()
    }

    async fn admin_call(&self, i: u64, method: Method, path: &str) -> (u16, Value) {
        over_tcp(
            &format!("http://{}", self.admin(i)),
            method,
            path,
            Some(TOKEN),
        )
        .await
    }
}

impl Cluster {
    /// The bridges shard `i` of `n` owns.
    fn owned_by(&self, i: u64, n: u64) -> Vec<String> {
        let names = self.names.iter().filter(|b| owner(b, n) == i);
        names.cloned().collect()
    }

    /// Every bridge polled since now, then the items set to `v` and every bridge's updates up
    /// to seq `n` delivered (and nothing else).
    async fn change_and_deliver(&self, v: u64, n: u64, daemons: &[&Daemon]) {
        let seen = self.up.hits().len();
        self.set_items(v);
        all_polled_since(self, seen, &self.names).await;
        self.delivered_up_to(n, daemons).await;
    }

    /// Every bridge polled once (its baseline), then the items set to `v` and the updates up to
    /// seq `n` delivered.
    async fn baselined_then_changed(&self, v: u64, n: u64, daemons: &[&Daemon]) {
        all_polled_since(self, 0, &self.names).await;
        self.set_items(v);
        self.delivered_up_to(n, daemons).await;
    }

    /// Shard 0 alone (one shard, its admin API at `listen`) baselines every bridge and
    /// delivers its update 1, then stops cleanly: the state that a layout of two shards moves.
    async fn one_shard_delivered_once(&self, listen: &str) {
        self.set_items(1);
        let s0 = self.start_at(0, 1, listen);
        self.baselined_then_changed(2, 1, &[&s0]).await;
        let (code, _, _) = s0.terminate().await;
        assert_eq!(code, 0);
    }
}

/// Waits until `pollhook status` of `d` shows `line` under `n` bridges.
async fn status_says(d: &Daemon, line: &str, n: usize) {
    eventually(PATIENCE, &format!("{n} bridges: {line}"), || async {
        let (_, st, _) = d.cli(&["status"]);
        (st.matches(line).count() == n)
            .then_some(())
            .ok_or(format!("{st}\n{}", d.logs()))
    })
    .await;
}

/// Every bridge polled since the `seen`th request, at least once.
async fn all_polled_since(c: &Cluster, seen: usize, names: &[String]) {
    until("every bridge polled again", || {
        let hits = c.up.hits();
        let paths: BTreeSet<String> = hits.iter().skip(seen).map(|h| h.uri.clone()).collect();
        names.iter().all(|b| paths.contains(&format!("/{b}")))
    })
    .await;
}

fn no_secret_in(logs: &[String]) {
    let all = logs.join("\n");
    for s in [ITEM_SECRET, REFRESH_SECRET, TOKEN] {
        assert!(!all.contains(s), "`{s}` in the logs");
    }
}

/// The metric line's value.
async fn waiting_metric(c: &Cluster, i: u64) -> Option<u64> {
    let (_, text) = get_text(&format!("http://{}/metrics", c.admin(i))).await;
    text.lines()
        .find(|l| l.starts_with("pollhook_handoff_waiting "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

/// Going from one shard to two while the upstream keeps changing: the new shard starts first
/// and waits (shard 0, on its old layout, answers 409 and keeps polling); once shard 0 runs
/// the new layout it hands the moved bridges over. Every change is delivered once, each
/// bridge's seqs go on without a gap across shards, no bridge baselines again, no two shards
/// poll a bridge in the same period, and no document's secret reaches a log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_moves_each_bridge_with_its_state_while_the_source_changes() {
    let c = Cluster::new(8).await;
    let moved = c.owned_by(1, 2);
    assert!(
        !moved.is_empty() && moved.len() < c.names.len(),
        "{moved:?}"
    );
    c.set_items(1);
    // A login's refresh token, as a daemon keeps it, for a bridge that moves.
    {
        let store = pollhook::store::Store::open(&c.data(0)).unwrap();
        store
            .keep_refresh_token(&moved[0], "rt-configured", REFRESH_SECRET)
            .unwrap();
    }
    let s0 = c.start(0, 1);
    c.baselined_then_changed(2, 1, &[&s0]).await;

    // Shard 1 first: shard 0 still owns everything and says so; the moved bridges wait.
    let s1 = c.start(1, 2);
    let l = c.layout(1).await;
    let incoming: BTreeSet<&str> = l["incoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["bridge"].as_str().unwrap())
        .collect();
    assert_eq!(incoming, moved.iter().map(|s| s.as_str()).collect(), "{l}");
    eventually(PATIENCE, "the status line", || async {
        let (_, st, _) = s1.cli(&["status"]);
        st.contains("waiting for handoff from shard 0")
            .then_some(())
            .ok_or(format!("{st}\n{}", s1.logs()))
    })
    .await;
    assert_eq!(waiting_metric(&c, 1).await, Some(moved.len() as u64));
    assert_eq!(
        get_text(&format!("http://{}/healthz", c.admin(1))).await.0,
        200
    );
    let (code, v) = c
        .admin_call(1, Method::POST, &format!("/v1/bridges/{}/poll", moved[0]))
        .await;
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("waiting for handoff"),
        "{v}"
    );
    // Asked directly, shard 0 refuses: it owns the bridge under its layout; ask again in 1 s.
    let r = reqwest::Client::new()
        .post(format!("http://{}/v1/handoff/{}", c.admin(0), moved[0]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let after = r.headers().get("retry-after").map(|v| v.to_str().unwrap());
    assert_eq!((r.status().as_u16(), after), (409, Some("1")));
    c.change_and_deliver(3, 2, &[&s0, &s1]).await;
    for b in &moved {
        assert!(c.polled_by(b).iter().all(|s| s == "0"), "{b}");
    }

    // Shard 0 on the new layout: it hands the moved bridges over.
    let (code, _, err0) = s0.terminate().await;
    assert_eq!(code, 0);
    let s0 = c.start(0, 2);
    c.settled(1, &s1).await;
    c.settled(0, &s0).await;
    assert_eq!(waiting_metric(&c, 1).await, Some(0));
    c.change_and_deliver(4, 3, &[&s0, &s1]).await;

    // Each moved bridge: shard 0's polls, then shard 1's, never mixed; the others only 0.
    for b in &c.names {
        let by = c.polled_by(b);
        if moved.contains(b) {
            let first1 = by.iter().position(|s| s == "1").unwrap();
            assert!(by[..first1].iter().all(|s| s == "0"), "{b}: {by:?}");
            assert!(by[first1..].iter().all(|s| s == "1"), "{b}: {by:?}");
        } else {
            assert!(by.iter().all(|s| s == "0"), "{b}: {by:?}");
        }
    }
    let (_, _, err1) = s1.terminate().await;
    let (_, _, err0b) = s0.terminate().await;
    for logs in [&err0, &err1, &err0b] {
        no_secret_in(logs);
    }
    let handed: Vec<&String> = err1
        .iter()
        .filter(|l| l.contains("handed over from shard 0"))
        .collect();
    assert_eq!(handed.len(), moved.len(), "{}", err1.join("\n"));
    // The refresh token moved with its bridge, and shard 0 forgot it.
    let export = |i: u64| {
        let out = cli_command(&["state", "export", "--data"])
            .arg(c.data(i))
            .output()
            .unwrap();
        output_of(out).1
    };
    let on1 = export(1);
    assert!(on1.contains(REFRESH_SECRET));
    assert!(!export(0).contains(&format!("\"bridge\":\"{}\"", moved[0])));
}

/// A gate between shards: forwards the admin requests for shard 0 to where it listens, and
/// can fail the acknowledgements (`DELETE`) or swallow the documents (`POST`, answered 503
/// after shard 0 answered it). It records the documents it saw.
#[derive(Clone, Default)]
struct Gate {
    fail_delete: Arc<Mutex<bool>>,
    swallow_post: Arc<Mutex<bool>>,
    documents: Arc<Mutex<Vec<String>>>,
    deletes: Arc<Mutex<Vec<u16>>>,
}

impl Gate {
    async fn start(listen: &str, target: String) -> Gate {
        let gate = Gate::default();
        let state = (gate.clone(), target);
        let app = Router::new()
            .fallback(
                |State((g, target)): State<(Gate, String)>,
                 method: Method,
                 uri: Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    if method == Method::DELETE && *g.fail_delete.lock().unwrap() {
                        g.deletes.lock().unwrap().push(503);
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    let mut req = reqwest::Client::new()
                        .request(method.clone(), format!("http://{target}{uri}"))
                        .body(body);
                    if let Some(a) = headers.get("authorization") {
                        req = req.header("authorization", a.to_str().unwrap());
                    }
                    let r = match req.send().await {
                        Ok(r) => r,
                        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
                    };
                    let status = r.status().as_u16();
                    let text = r.text().await.unwrap();
                    if method == Method::DELETE {
                        g.deletes.lock().unwrap().push(status);
                    }
                    if method == Method::POST && status == 200 {
                        g.documents.lock().unwrap().push(text.clone());
                        if *g.swallow_post.lock().unwrap() {
                            return StatusCode::SERVICE_UNAVAILABLE.into_response();
                        }
                    }
                    Response::builder()
                        .status(status)
                        .body(axum::body::Body::from(text))
                        .unwrap()
                },
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        gate
    }
}

fn kill9(d: &mut Daemon) {
    d.signal("-KILL");
}

/// Crashes mid-handoff. The new shard starts while the old one is down: it waits (status,
/// layout, metric, healthy), and is not polled. Shard 0 comes up on the new layout; its
/// document reaches shard 1 only on the second try, shard 0 having been killed (-9) after
/// answering the first: the second is the same document. Then shard 1 is killed (-9) after
/// its import, while its acknowledgement cannot get through: restarted, it sends it again, and
/// the bridges go on from the imported state. Nothing lost, nothing doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_survives_either_side_killed_midway() {
    let c = Cluster::new(6).await;
    let moved = c.owned_by(1, 2);
    assert!(!moved.is_empty());
    // Shard 0 really listens on 127.0.0.20; its peers reach it through the gate.
    let real0 = format!("127.0.0.20:{}", c.port);
    c.one_shard_delivered_once(&real0).await;

    // Shard 1 alone: shard 0 does not answer.
    let s1 = c.start(1, 2);
    status_says(&s1, "waiting for handoff from shard 0", moved.len()).await;
    assert_eq!(waiting_metric(&c, 1).await, Some(moved.len() as u64));
    assert_eq!(
        c.layout(1).await["incoming"].as_array().unwrap().len(),
        moved.len()
    );
    assert_eq!(
        get_text(&format!("http://{}/healthz", c.admin(1))).await.0,
        200
    );
    let gate = Gate::start(&c.admin(0), real0.clone()).await;
    *gate.swallow_post.lock().unwrap() = true;
    *gate.fail_delete.lock().unwrap() = true;
    c.set_items(3);
    let mut s0 = c.start_at(0, 2, &real0);
    until("shard 0 answered with the documents", || {
        gate.documents.lock().unwrap().len() >= moved.len()
    })
    .await;
    kill9(&mut s0);
    let _ = s0.child.wait().await;
    let first: Vec<String> = gate.documents.lock().unwrap().clone();
    // Nothing was polled by shard 1 meanwhile.
    for b in &moved {
        assert!(c.polled_by(b).iter().all(|s| s == "0"), "{b}");
    }
    *gate.swallow_post.lock().unwrap() = false;
    let s0 = c.start_at(0, 2, &real0);
    until("the documents through on the second try", || {
        gate.documents.lock().unwrap().len() >= first.len() + moved.len()
    })
    .await;
    let docs = gate.documents.lock().unwrap().clone();
    let again: BTreeSet<&String> = docs[first.len()..].iter().collect();
    for d in &first {
        assert!(again.contains(d), "a repeated request got another document");
    }
    // Imported; the acknowledgements fail: the bridges wait, shard 0 keeps its copies.
    status_says(
        &s1,
        "waiting to acknowledge the handoff to shard 0",
        moved.len(),
    )
    .await;
    assert!(!gate.deletes.lock().unwrap().is_empty());
    let l0 = c.layout(0).await;
    assert_eq!(l0["drained"], false, "{l0}");
    let mut s1 = s1;
    kill9(&mut s1);
    let _ = s1.child.wait().await;
    for b in &moved {
        assert!(c.polled_by(b).iter().all(|s| s == "0"), "{b}");
    }

    // Restarted, shard 1 sends the acknowledgements it owes, then polls.
    *gate.fail_delete.lock().unwrap() = false;
    let s1 = c.start(1, 2);
    c.settled(1, &s1).await;
    c.settled(0, &s0).await;
    c.delivered_up_to(2, &[&s0, &s1]).await;
    c.change_and_deliver(4, 3, &[&s0, &s1]).await;
    // A repeated acknowledgement is a no-op.
    let (code, _) = c
        .admin_call(0, Method::DELETE, &format!("/v1/handoff/{}", moved[0]))
        .await;
    assert_eq!(code, 204);
    let (code, _) = c
        .admin_call(0, Method::POST, &format!("/v1/handoff/{}", moved[0]))
        .await;
    assert_eq!(code, 404);
    let (_, _, err1) = s1.terminate().await;
    let (_, _, err0) = s0.terminate().await;
    no_secret_in(&err1);
    no_secret_in(&err0);
}

/// An acknowledgement whose asker hangs up at once (the receiver killed right after sending
/// it), then sent again: the giver forgets its copy, says so once, and no longer lists the
/// bridge as outgoing, so it ends `drained`. Cut off midway, the bridge stayed listed for
/// ever while the repeated acknowledgement found nothing left to forget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_whose_asker_hangs_up_is_carried_through() {
    use tokio::io::AsyncWriteExt;
    let c = Cluster::new(4).await;
    let moved = c.owned_by(1, 2);
    assert!(!moved.is_empty());
    c.one_shard_delivered_once(&c.admin(0)).await;
    let s0 = c.start(0, 2);
    assert_eq!(c.layout(0).await["drained"], false);
    for b in &moved {
        let (code, _) = c
            .admin_call(0, Method::POST, &format!("/v1/handoff/{b}?to=1"))
            .await;
        assert_eq!(code, 200, "{b}");
        // The DELETE, then the connection closed without waiting for the answer.
        let mut tcp = tokio::net::TcpStream::connect(c.admin(0)).await.unwrap();
        let req = format!(
            "DELETE /v1/handoff/{b} HTTP/1.1\r\nhost: shard0\r\nauthorization: Bearer {TOKEN}\r\ncontent-length: 0\r\n\r\n"
        );
        tcp.write_all(req.as_bytes()).await.unwrap();
        tcp.shutdown().await.unwrap();
        drop(tcp);
    }
    // Sent again, as a restarted receiver does: a no-op where the first was carried through.
    for b in &moved {
        let path = format!("/v1/handoff/{b}");
        assert_eq!(c.admin_call(0, Method::DELETE, &path).await.0, 204, "{b}");
    }
    let url = format!("http://{}/v1/layout", c.admin(0));
    eventually(PATIENCE, "shard 0 drained", || async {
        match get_json(&url).await {
            (200, v) if v["drained"] == true && v["outgoing"] == json!([]) => Ok(()),
            (code, v) => Err(format!("{code} {v}; logs:\n{}", s0.logs())),
        }
    })
    .await;
    let (_, _, err0) = s0.terminate().await;
    let logs0 = err0.join("\n");
    for b in &moved {
        let line = format!("bridge {b}: handoff acknowledged");
        assert_eq!(logs0.matches(&line).count(), 1, "{b}: {logs0}");
    }
    no_secret_in(&err0);
}

/// Removing the last shard, the giver restarted first: shard 2 of 3 started as 2/2 owns
/// nothing, polls nothing, and hands its bridges to shards 0 and 1 once they run 2 shards;
/// then it says `drained: true`. Its bridges go on with their seqs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shrinking_drains_the_last_shard() {
    let c = Cluster::new(9).await;
    let leaving = c.owned_by(2, 3);
    assert!(!leaving.is_empty());
    c.set_items(1);
    let d: Vec<Daemon> = (0..3).map(|i| c.start(i, 3)).collect();
    c.baselined_then_changed(2, 1, &d.iter().collect::<Vec<_>>())
        .await;
    let mut old = d.into_iter();
    let (s0, s1, s2) = (
        old.next().unwrap(),
        old.next().unwrap(),
        old.next().unwrap(),
    );
    s2.terminate().await;
    let stopped = c.up.hits().len();
    let s2 = c.start(2, 2);
    let l = c.layout(2).await;
    assert_eq!(
        l["outgoing"].as_array().unwrap().len(),
        leaving.len(),
        "{l}"
    );
    assert_eq!(l["drained"], false);
    s0.terminate().await;
    s1.terminate().await;
    let s0 = c.start(0, 2);
    let s1 = c.start(1, 2);
    for (i, d) in [(0, &s0), (1, &s1), (2, &s2)] {
        c.settled(i, d).await;
    }
    let (code, v) = get_json(&format!("http://{}/v1/bridges", c.admin(2))).await;
    assert_eq!(
        (code, v["bridges"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    c.change_and_deliver(3, 2, &[&s0, &s1, &s2]).await;
    // Since shard 2 stopped on the old layout, it has polled nothing.
    let after: Vec<String> = c.up.hits()[stopped..]
        .iter()
        .map(|h| h.header("x-shard").unwrap_or("?").to_string())
        .collect();
    assert!(after.iter().all(|s| s != "2"), "{after:?}");
    for d in [s0, s1, s2] {
        let (code, _, err) = d.terminate().await;
        assert_eq!(code, 0);
        no_secret_in(&err);
    }
}

/// A fresh cluster, one shard at first: it asks the other, which is down, so its bridges
/// wait; `pollhook handoff skip` lets one baseline at once (a WARN says so). Once shard 0 is
/// up and holds nothing of them, the rest are new and baseline too (an INFO says so).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_cluster_baselines_and_a_wait_can_be_skipped() {
    let c = Cluster::new(6).await;
    let mine = c.owned_by(1, 2);
    assert!(mine.len() >= 2, "{mine:?}");
    c.set_items(1);
    let s1 = c.start(1, 2);
    status_says(&s1, "waiting for handoff from shard 0", mine.len()).await;
    let (code, out, err) = s1.cli(&["handoff", "skip", &mine[0]]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("handoff of {} skipped", mine[0])),
        "{out}"
    );
    until("the skipped bridge polled", || {
        !c.polled_by(&mine[0]).is_empty()
    })
    .await;
    assert!(c.polled_by(&mine[1]).is_empty());
    let (code, _, err) = s1.cli(&["handoff", "skip", &mine[0]]);
    assert_eq!(code, 1);
    assert!(err.contains("does not wait for a handoff"), "{err}");

    let s0 = c.start(0, 2);
    c.settled(1, &s1).await;
    c.settled(0, &s0).await;
    c.baselined_then_changed(2, 1, &[&s0, &s1]).await;
    let (_, _, err1) = s1.terminate().await;
    let (_, _, _) = s0.terminate().await;
    let logs = err1.join("\n");
    let skipped = err1
        .iter()
        .find(|l| l.contains("handoff skipped"))
        .unwrap_or_else(|| panic!("{logs}"));
    assert_eq!(
        serde_json::from_str::<Value>(skipped).unwrap()["level"],
        "WARN"
    );
    let new = err1
        .iter()
        .filter(|l| l.contains("no shard holds state of it"))
        .count();
    assert_eq!(new, mine.len() - 1, "{logs}");
}

/// `handoff skip` while the acknowledgement is owed: the bridge polls from the state it
/// imported (no new baseline: a change made meanwhile is one event with the next seq), and
/// the acknowledgement still goes once the giver takes it, so the giver drops its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_while_the_acknowledgement_is_owed_still_acknowledges() {
    let c = Cluster::new(4).await;
    let moved = c.owned_by(1, 2);
    assert!(!moved.is_empty());
    c.set_items(1);
    let real0 = format!("127.0.0.20:{}", c.port);
    let s0 = c.start_at(0, 1, &real0);
    all_polled_since(&c, 0, &c.names).await;
    let (code, _, _) = s0.terminate().await;
    assert_eq!(code, 0);
    let gate = Gate::start(&c.admin(0), real0.clone()).await;
    *gate.fail_delete.lock().unwrap() = true;
    let s0 = c.start_at(0, 2, &real0);
    let s1 = c.start(1, 2);
    status_says(
        &s1,
        "waiting to acknowledge the handoff to shard 0",
        moved.len(),
    )
    .await;
    for b in &moved {
        let (code, _, err) = s1.cli(&["handoff", "skip", b]);
        assert_eq!(code, 0, "{err}");
    }
    c.change_and_deliver(2, 1, &[&s0, &s1]).await;
    for b in &moved {
        assert!(c.polled_by(b).contains(&"1".to_string()), "{b}");
    }
    // The giver still holds its copies; once the acknowledgements get through, it drops them.
    assert_eq!(c.layout(0).await["drained"], false);
    let refused = gate.deletes.lock().unwrap().len();
    *gate.fail_delete.lock().unwrap() = false;
    c.settled(0, &s0).await;
    assert!(gate.deletes.lock().unwrap()[refused..].contains(&204));
    let (_, _, err1) = s1.terminate().await;
    let (_, _, _) = s0.terminate().await;
    let logs = err1.join("\n");
    assert!(
        logs.contains("the acknowledgement is still sent until shard 0 takes it"),
        "{logs}"
    );
    assert!(
        !logs.contains("it is polled here from an empty state"),
        "{logs}"
    );
}

/// A bridge added by a reload (SIGHUP) that another shard holds: it waits for its handoff as
/// at start, and goes on from the state handed over, instead of starting new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_added_by_a_reload_comes_by_handoff() {
    let c = Cluster::new(6).await;
    let moved = c.owned_by(1, 2);
    assert!(moved.len() >= 2, "{moved:?}");
    let late = &moved[0];
    // Shard 1's bridges directory lacks `late` at first.
    let own = c.root.path().join("shard1").join("bridges");
    std::fs::create_dir_all(&own).unwrap();
    let shared_dir = c.root.path().join("bridges");
    for n in c.names.iter().filter(|n| *n != late) {
        let f = format!("{n}.yaml");
        std::fs::copy(shared_dir.join(&f), own.join(&f)).unwrap();
    }
    c.set_items(1);
    let s0 = c.start(0, 1);
    all_polled_since(&c, 0, &c.names).await;
    let (code, _, _) = s0.terminate().await;
    assert_eq!(code, 0);
    let s1 = c.start(1, 2);
    let s0 = c.start(0, 2);
    c.settled(1, &s1).await;
    // Shard 0 forgets each bridge once its acknowledgement comes, which may be a moment after
    // shard 1 has no incoming left: then only `late` is outgoing, for ever.
    let want = json!([{"bridge": late, "to": 1}]);
    eventually(
        PATIENCE,
        "shard 0's outgoing only the late bridge",
        || async {
            let l0 = c.layout(0).await;
            match l0["outgoing"] == want {
                true => Ok(()),
                false => Err(format!("{l0}")),
            }
        },
    )
    .await;

    let f = format!("{late}.yaml");
    std::fs::copy(shared_dir.join(&f), own.join(&f)).unwrap();
    s1.signal("-HUP");
    c.settled(0, &s0).await;
    c.settled(1, &s1).await;
    c.change_and_deliver(2, 1, &[&s0, &s1]).await;
    let (_, _, err1) = s1.terminate().await;
    let (_, _, _) = s0.terminate().await;
    let logs = err1.join("\n");
    assert!(
        logs.contains(&format!("bridge {late} handed over from shard 0")),
        "{logs}"
    );
}

/// Which side of a change of layout is restarted first.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Order {
    /// The shards that take bridges, then the ones that give them.
    ReceiverFirst,
    GiverFirst,
    /// Every shard that changes stopped, then all started together.
    AtOnce,
}

/// Sets the items to a new version every 700 ms until `stop`; the last version set.
async fn keep_changing(c: &Cluster, from: u64, stop: &std::sync::atomic::AtomicBool) -> u64 {
    let mut v = from;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        v += 1;
        c.set_items(v);
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    }
    v
}

impl Cluster {
    /// Each bridge's events so far, checked: only `item.updated`, seqs 1, 2, 3… without a
    /// gap, versions rising (no change twice, none out of order) and each one set upstream
    /// (up to `last`); no webhook id with two bodies. The last version delivered, by bridge.
    fn versions_delivered(&self, last: u64) -> BTreeMap<String, u64> {
        let _ = self.delivered();
        let mut seen = BTreeSet::new();
        let mut per: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        for r in self.rx.received() {
            if !seen.insert(r.header("webhook-id").to_string()) {
                continue;
            }
            let e = r.json();
            assert_eq!(e["type"], "item.updated", "{e}");
            let (seq, v) = (e["seq"].as_u64().unwrap(), e["data"]["v"].as_u64().unwrap());
            let b = e["bridge"].as_str().unwrap().to_string();
            per.entry(b).or_default().push((seq, v));
        }
        let mut out = BTreeMap::new();
        for (b, mut events) in per {
            events.sort();
            let seqs: Vec<u64> = events.iter().map(|e| e.0).collect();
            assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{b}");
            let vs: Vec<u64> = events.iter().map(|e| e.1).collect();
            assert!(vs.windows(2).all(|w| w[0] < w[1]), "{b}: {vs:?}");
            assert!(vs.iter().all(|v| (2..=last).contains(v)), "{b}: {vs:?}");
            out.insert(b, *vs.last().unwrap());
        }
        out
    }

    /// Waits until every bridge has delivered version `v`, the last one set.
    async fn reached(&self, v: u64, d: &[Option<Daemon>]) {
        eventually(
            PATIENCE,
            &format!("version {v} of every bridge"),
            || async {
                let got = self.versions_delivered(v);
                let behind: Vec<_> = self
                    .names
                    .iter()
                    .filter(|b| got.get(*b) != Some(&v))
                    .collect();
                let logs: Vec<String> = d.iter().flatten().map(|s| s.logs()).collect();
                match behind.is_empty() {
                    true => Ok(()),
                    false => Err(format!(
                        "{behind:?}: {got:?}; logs:\n{}",
                        logs.join("\n---\n")
                    )),
                }
            },
        )
        .await;
    }
}

/// Goes from `from` shards to `to` (2 → 3 or 3 → 2) while the upstream keeps changing, the
/// shards restarted in `order`. Every change of every bridge is delivered (its last version,
/// and every version delivered in the order set), nothing invented, seqs gap-free across
/// shards, no webhook id with two bodies, no bridge new or baselined again, and each bridge
/// polled by its old owner and then by its new one, never by both in turn.
async fn resize(from: u64, to: u64, order: Order) {
    let c = Cluster::new(6).await;
    let moving: BTreeSet<String> = c
        .names
        .iter()
        .filter(|b| owner(b, from) != owner(b, to))
        .cloned()
        .collect();
    assert!(!moving.is_empty());
    c.set_items(1);
    let mut d: Vec<Option<Daemon>> = (0..from).map(|i| Some(c.start(i, from))).collect();
    d.resize_with(from.max(to) as usize, || None);
    {
        let running: Vec<&Daemon> = d.iter().flatten().collect();
        c.baselined_then_changed(2, 1, &running).await;
    }
    // The shards that take bridges and the ones that give them.
    let (takers, givers): (Vec<u64>, Vec<u64>) = match from < to {
        true => ((from..to).collect(), (0..from).collect()),
        false => ((0..to).collect(), (to..from).collect()),
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    let steps = async {
        let groups = match order {
            Order::ReceiverFirst => vec![takers.clone(), givers.clone()],
            Order::GiverFirst => vec![givers.clone(), takers.clone()],
            Order::AtOnce => vec![[takers.clone(), givers.clone()].concat()],
        };
        for group in groups {
            let old: Vec<_> = group
                .iter()
                .filter_map(|i| d[*i as usize].take())
                .map(|s| tokio::spawn(s.terminate()))
                .collect();
            for stopped in old {
                let (code, _, err) = stopped.await.unwrap();
                assert_eq!(code, 0, "{}", err.join("\n"));
                no_secret_in(&err);
            }
            for i in &group {
                d[*i as usize] = Some(c.start(*i, to));
            }
            for i in &group {
                c.layout(*i).await;
            }
        }
        for (i, s) in d.iter().enumerate() {
            c.settled(i as u64, s.as_ref().unwrap()).await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
    };
    let ((), last) = tokio::join!(steps, keep_changing(&c, 2, &stop));
    let settled_at = c.up.hits().len();
    c.reached(last, &d).await;
    let seen = c.up.hits().len();
    c.set_items(last + 1);
    all_polled_since(&c, seen, &c.names).await;
    c.reached(last + 1, &d).await;
    for b in &c.names {
        let (old, new) = (owner(b, from).to_string(), owner(b, to).to_string());
        let by = c.polled_by(b);
        let first_new = by.iter().position(|s| *s != old).unwrap_or(by.len());
        assert!(by[first_new..].iter().all(|s| *s == new), "{b}: {by:?}");
        let after: Vec<String> = c.up.hits()[settled_at..]
            .iter()
            .filter(|h| h.uri == format!("/{b}"))
            .map(|h| h.header("x-shard").unwrap_or("?").to_string())
            .collect();
        assert!(
            after.iter().all(|s| *s == new),
            "{b} after settling: {after:?}"
        );
    }
    let mut logs = Vec::new();
    for s in d.into_iter().flatten() {
        let (code, _, err) = s.terminate().await;
        assert_eq!(code, 0);
        no_secret_in(&err);
        logs.extend(err);
    }
    let all = logs.join("\n");
    for b in &moving {
        assert!(
            all.contains(&format!("bridge {b} handed over from shard")),
            "{b}: {all}"
        );
    }
    assert!(!all.contains("so it is new"), "{all}");
    assert!(!all.contains("handoff skipped"), "{all}");
}

/// One test for each change of size and order of restarts: [`resize`] `from` shards `to`.
macro_rules! resize_tests {
    ($($name:ident: $from:literal to $to:literal, $order:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            resize($from, $to, Order::$order).await;
        }
    )*};
}

resize_tests! {
    growing_2_to_3_receiver_first: 2 to 3, ReceiverFirst;
    growing_2_to_3_giver_first: 2 to 3, GiverFirst;
    growing_2_to_3_at_once: 2 to 3, AtOnce;
    shrinking_3_to_2_receiver_first: 3 to 2, ReceiverFirst;
    shrinking_3_to_2_giver_first: 3 to 2, GiverFirst;
    shrinking_3_to_2_at_once: 3 to 2, AtOnce;
}

/// The receiving shard killed (SIGKILL, by the fault point `handoff-after-import`) once a
/// bridge's import is durable and before its acknowledgement is sent. Restarted, it sends the
/// acknowledgement it owes without importing again, the giver forgets the bridge, and the
/// bridge goes on from the imported state: no change lost or doubled, and only one shard
/// polls it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_between_the_import_and_the_acknowledgement_the_receiver_acknowledges_on_restart() {
    let c = Cluster::new(4).await;
    let moved = c.owned_by(1, 2);
    assert!(!moved.is_empty());
    let victim = &moved[0];
    c.one_shard_delivered_once(&c.admin(0)).await;
    c.set_items(3);
    let s0 = c.start(0, 2);
    let fault = format!("handoff-after-import:{victim}");
    let mut s1 = c.start_with(1, 2, &c.admin(1), &[("POLLHOOK_FAULT", &fault)]);
    let status = tokio::time::timeout(PATIENCE, s1.child.wait())
        .await
        .unwrap_or_else(|_| panic!("shard 1 not killed; logs:\n{}", s1.logs()))
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{}", s1.logs());
    assert!(
        s1.logs()
            .contains(&format!("bridge {victim} handed over from shard 0")),
        "{}",
        s1.logs()
    );
    // The giver still holds its copy: nothing acknowledged it.
    let l0 = c.layout(0).await;
    assert_eq!(l0["drained"], false, "{l0}");
    assert!(c.polled_by(victim).iter().all(|s| s == "0"));

    let s1 = c.start(1, 2);
    c.settled(1, &s1).await;
    c.settled(0, &s0).await;
    c.delivered_up_to(2, &[&s0, &s1]).await;
    c.change_and_deliver(4, 3, &[&s0, &s1]).await;
    let by = c.polled_by(victim);
    let first1 = by.iter().position(|s| s == "1").unwrap();
    assert!(by[..first1].iter().all(|s| s == "0"), "{by:?}");
    assert!(by[first1..].iter().all(|s| s == "1"), "{by:?}");
    let (_, _, err1) = s1.terminate().await;
    let (_, _, err0) = s0.terminate().await;
    let (logs1, logs0) = (err1.join("\n"), err0.join("\n"));
    assert!(
        !logs1.contains(&format!("bridge {victim} handed over")),
        "imported again: {logs1}"
    );
    assert!(
        logs1.contains(&format!("bridge {victim}: handoff from shard 0 complete")),
        "{logs1}"
    );
    assert!(
        logs0.contains(&format!("bridge {victim}: handoff acknowledged")),
        "{logs0}"
    );
    no_secret_in(&err1);
    no_secret_in(&err0);
}

/// What the hostile peer answers for a bridge.
#[derive(Clone, Copy, Debug)]
enum Hostile {
    /// A body that never ends.
    Endless,
    /// A Content-Length above the cap.
    Huge,
    BadChecksum,
    WrongVersion,
    /// A good document of another bridge.
    OtherBridge,
    Truncated,
    /// A refusal that quotes the token it was sent.
    EchoesToken,
}

/// A body that never ends (or, with a length, says it is that long): spaces, 64 KiB at a
/// time, counted as they are made.
struct Endless(Arc<Mutex<u64>>, Option<u64>);

impl hyper::body::Body for Endless {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, std::io::Error>>> {
        *self.0.lock().unwrap() += 64 << 10;
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.1.map_or_else(
            hyper::body::SizeHint::default,
            hyper::body::SizeHint::with_exact,
        )
    }
}

/// A good document of `bridge`, as a shard would give it.
fn document_of(bridge: &str) -> String {
    use pollhook::store::handoff::{BridgeState, ItemState};
    let state = BridgeState {
        meta: pollhook::store::BridgeMeta {
            seq: 7,
            baselined: true,
            items: 1,
            ..Default::default()
        },
        items: vec![ItemState {
            key: "1".into(),
            hash: "00".repeat(16),
            missing: 0,
            value: format!("{{\"id\":1,\"secret\":\"{ITEM_SECRET}\"}}"),
            pending: None,
        }],
        pages: vec![],
        outbox: vec![],
        dead: vec![],
        auth: None,
    };
    let doc = pollhook::handoff::Document {
        bridge: bridge.to_string(),
        state,
    };
    doc.to_line()
}

/// The bytes made of each endless body served.
type Streamed = Arc<Mutex<Vec<Arc<Mutex<u64>>>>>;

/// A peer that answers every handoff with something hostile, and every acknowledgement 204;
/// it counts the bytes of each endless body taken from it.
async fn hostile_peer(listen: &str, plan: BTreeMap<String, Hostile>) -> Streamed {
    let streamed = Streamed::default();
    let (plan, counted) = (Arc::new(plan), streamed.clone());
    recording_peer(listen, move |name, _, headers| {
        let token = headers["authorization"].to_str().unwrap().to_string();
        let good = document_of(name);
        let body = |b: String| {
            Response::builder()
                .status(200)
                .body(axum::body::Body::from(b))
                .unwrap()
        };
        match plan.get(name).copied() {
            None => StatusCode::NOT_FOUND.into_response(),
            Some(Hostile::Endless) => Response::builder()
                .status(200)
                .body(axum::body::Body::new(Endless(
                    {
                        let n = Arc::new(Mutex::new(0));
                        counted.lock().unwrap().push(n.clone());
                        n
                    },
                    None,
                )))
                .unwrap(),
            Some(Hostile::Huge) => Response::builder()
                .status(200)
                .body(axum::body::Body::new(Endless(
                    Arc::default(),
                    Some(3 << 30),
                )))
                .unwrap(),
            Some(Hostile::BadChecksum) => body(good.replace("\"seq\":7", "\"seq\":8")),
            Some(Hostile::WrongVersion) => body(good.replace("\"version\":1", "\"version\":2")),
            Some(Hostile::OtherBridge) => body(document_of("someone-else")),
            Some(Hostile::Truncated) => body(good[..good.len() / 2].to_string()),
            Some(Hostile::EchoesToken) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                axum::Json(json!({"error": format!("bad token {token}")})),
            )
                .into_response(),
        }
    })
    .await;
    streamed
}

/// A hostile peer posing as shard 0: an endless body, a huge one, a bad checksum, a version
/// not read, another bridge's document, truncated JSON, a refusal quoting the token. Each
/// bridge stays waiting (not baselined, not polled), nothing is imported, each failure is
/// an error line naming the peer's URL and the bridge, the endless body is read no further
/// than the cap, the token is never logged, and nothing panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_peer_gets_nothing_imported() {
    let c = Cluster::new(20).await;
    let mine = c.owned_by(1, 2);
    let cases = [
        Hostile::Endless,
        Hostile::Huge,
        Hostile::BadChecksum,
        Hostile::WrongVersion,
        Hostile::OtherBridge,
        Hostile::Truncated,
        Hostile::EchoesToken,
    ];
    assert!(mine.len() >= cases.len(), "{mine:?}");
    let plan: BTreeMap<String, Hostile> = mine.iter().cloned().zip(cases).collect();
    let streamed = hostile_peer(&c.admin(0), plan.clone()).await;
    c.set_items(1);
    let cap = 1u64 << 20;
    let s1 = c.start_with(
        1,
        2,
        &c.admin(1),
        &[("POLLHOOK_HANDOFF_MAX_DOCUMENT", "1MiB")],
    );
    let url = |b: &str| format!("http://{}/v1/handoff/{b}", c.admin(0));
    eventually(PATIENCE, "an error line for each case", || async {
        let logs = s1.logs();
        let lines: Vec<&str> = logs.lines().collect();
        for (b, case) in &plan {
            let says = match case {
                Hostile::Endless | Hostile::Huge => "larger than 1048576 bytes".to_string(),
                Hostile::BadChecksum => "the checksum does not match".to_string(),
                Hostile::WrongVersion => "version 2 is not supported".to_string(),
                Hostile::OtherBridge => "it is the state of bridge `someone-else`".to_string(),
                Hostile::Truncated => "not a state document".to_string(),
                Hostile::EchoesToken => "answered HTTP 500: bad token Bearer ***".to_string(),
            };
            let found = lines.iter().any(|l| {
                l.contains(&format!("bridge {b}")) && l.contains(&url(b)) && l.contains(&says)
            });
            if !found {
                return Err(format!("{b} ({case:?}): no line with `{says}`:\n{logs}"));
            }
        }
        Ok(())
    })
    .await;
    status_says(&s1, "waiting for handoff from shard 0", plan.len()).await;
    let l = c.layout(1).await;
    let incoming: BTreeSet<&str> = l["incoming"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["bridge"].as_str().unwrap())
        .collect();
    assert_eq!(incoming, plan.keys().map(|b| b.as_str()).collect(), "{l}");
    // Each endless body was read no further than the cap (and what the socket buffers held).
    let made: Vec<u64> = streamed
        .lock()
        .unwrap()
        .iter()
        .map(|n| *n.lock().unwrap())
        .collect();
    assert!(
        !made.is_empty() && made.iter().all(|n| *n < cap + (8 << 20)),
        "{made:?}"
    );
    // Each hostile one is neither polled nor baselined (the others, which no shard holds,
    // are new).
    for b in plan.keys() {
        assert!(c.polled_by(b).is_empty(), "{b} polled");
    }
    let (code, _, err) = s1.terminate().await;
    assert_eq!(code, 0);
    let logs = err.join("\n");
    assert!(!logs.contains("handed over"), "{logs}");
    assert!(!logs.contains("panic"), "{logs}");
    for b in plan.keys() {
        assert!(
            !logs.contains(&format!("bridge {b}: no shard holds")),
            "{logs}"
        );
    }
    no_secret_in(&err);
    for line in err.iter().filter(|l| l.contains("nothing imported")) {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["level"], "ERROR", "{line}");
        let msg = v["message"].as_str().unwrap();
        assert!(msg.starts_with("bridge b"), "{msg}");
    }
}

/// Asks for each bridge, when, as a peer posing as shard 0 saw them; and the
/// acknowledgements it took.
#[derive(Clone, Default)]
struct Asked {
    posts: Arc<Mutex<BTreeMap<String, Vec<std::time::Instant>>>>,
    deletes: Arc<Mutex<BTreeMap<String, u32>>>,
}

impl Asked {
    fn posts(&self, bridge: &str) -> Vec<std::time::Instant> {
        self.posts
            .lock()
            .unwrap()
            .get(bridge)
            .cloned()
            .unwrap_or_default()
    }
}

/// A peer posing as shard 0 at `listen`: `answer(bridge, times asked before, the request's
/// headers)` answers each handoff; every acknowledgement is taken (204). Every request is
/// recorded.
async fn recording_peer(
    listen: &str,
    answer: impl Fn(&str, usize, &HeaderMap) -> Response + Clone + Send + Sync + 'static,
) -> Asked {
    use axum::extract::Path;
    let asked = Asked::default();
    let (a, b) = (asked.clone(), asked.clone());
    let app = Router::new().route(
        "/v1/handoff/{name}",
        axum::routing::post(move |Path(name): Path<String>, headers: HeaderMap| {
            let before = {
                let mut all = a.posts.lock().unwrap();
                let times = all.entry(name.clone()).or_default();
                times.push(std::time::Instant::now());
                times.len() - 1
            };
            let r = answer(&name, before, &headers);
            async move { r }
        })
        .delete(move |Path(name): Path<String>| {
            *b.deletes.lock().unwrap().entry(name).or_default() += 1;
            async { StatusCode::NO_CONTENT }
        }),
    );
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    asked
}

/// A peer that answers 409 with `Retry-After: 3` is asked again after those 3 s, not after
/// the shard's own delay (100 ms here); the second time it holds nothing, and each bridge is
/// new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_is_asked_again_after_its_retry_after() {
    let c = Cluster::new(4).await;
    let mine = c.owned_by(1, 2);
    assert!(!mine.is_empty());
    let asked = recording_peer(&c.admin(0), |_, before, _| match before {
        0 => (
            StatusCode::CONFLICT,
            [("retry-after", "3")],
            axum::Json(json!({"error": "shard 0/1 owns it"})),
        )
            .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    })
    .await;
    c.set_items(1);
    let s1 = c.start(1, 2);
    eventually(PATIENCE, "each bridge new after its second ask", || async {
        let logs = s1.logs();
        let new = |b: &String| logs.contains(&format!("bridge {b}: no shard holds state"));
        match mine.iter().all(new) {
            true => Ok(()),
            false => Err(logs),
        }
    })
    .await;
    for b in &mine {
        let times = asked.posts(b);
        assert_eq!(times.len(), 2, "{b}: {times:?}");
        // Lower bound only: the shard waits at least what the peer said.
        let gap = times[1] - times[0];
        assert!(
            gap >= std::time::Duration::from_millis(2900),
            "{b}: {gap:?}"
        );
    }
    let (code, _, _) = s1.terminate().await;
    assert_eq!(code, 0);
}

/// A document of `bridge` of about `bytes`: `items` items whose values are padded.
fn big_document_of(bridge: &str, items: usize, bytes: usize) -> String {
    use pollhook::store::handoff::{BridgeState, ItemState};
    let pad = "x".repeat(bytes / items);
    let items = (0..items)
        .map(|k| ItemState {
            key: k.to_string(),
            hash: "00".repeat(16),
            missing: 0,
            value: format!("{{\"id\":{k},\"pad\":\"{pad}\"}}"),
            pending: None,
        })
        .collect();
    let state = BridgeState {
        meta: pollhook::store::BridgeMeta {
            seq: 7,
            baselined: true,
            items: 1,
            ..Default::default()
        },
        items,
        pages: vec![],
        outbox: vec![],
        dead: vec![],
        auth: None,
    };
    let bridge = bridge.to_string();
    pollhook::handoff::Document { bridge, state }.to_line()
}

const MIB: u64 = 1 << 20;

/// The documents of fifteen bridges arriving at once are read within the memory budget of
/// polls: under `--max-poll-memory 32MiB`, each 8 MB document (half with a Content-Length,
/// half in chunks without one) needs 32 MB (4 × its size), so they are taken one at a time, the others
/// asked again once their share is free. Each is imported once and whole, and the receiving
/// daemon's peak RSS stays within the budget and the daemon's own slack (89 MiB here, where
/// without the budget it reached 179 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_documents_at_once_are_read_within_the_memory_budget() {
    const BYTES: usize = 8_000_000;
    const BUDGET: u64 = 32 * MIB;
    const SLACK: u64 = 96 * MIB;
    let c = Cluster::new(24).await;
    let mine = c.owned_by(1, 2);
    assert!(mine.len() >= 8, "{mine:?}");
    let docs: Arc<BTreeMap<String, Bytes>> = Arc::new(
        mine.iter()
            .map(|b| (b.clone(), Bytes::from(big_document_of(b, 8, BYTES))))
            .collect(),
    );
    let served = docs.clone();
    let asked = recording_peer(&c.admin(0), move |name, _, _| {
        let Some(doc) = served.get(name).cloned() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let body = match name.trim_start_matches('b').parse::<u32>().unwrap() % 2 {
            0 => axum::body::Body::from(doc),
            _ => {
                let mib = MIB as usize;
                let chunks = (0..doc.len())
                    .step_by(mib)
                    .map(|at| doc.slice(at..doc.len().min(at + mib)))
                    .collect();
                axum::body::Body::new(crate::budget::Chunks(chunks))
            }
        };
        Response::builder().status(200).body(body).unwrap()
    })
    .await;
    c.set_items(1);
    let budget = format!("{BUDGET}");
    let s1 = c.start_with(1, 2, &c.admin(1), &[("POLLHOOK_MAX_POLL_MEMORY", &budget)]);
    let pid = s1.child.id().unwrap();
    // Generous: a debug build checks a hundred megabytes of documents on a busy machine.
    eventually(10 * PATIENCE, "every document imported", || async {
        let logs = s1.logs();
        let left: Vec<&String> = mine
            .iter()
            .filter(|b| !logs.contains(&format!("bridge {b} handed over from shard 0")))
            .collect();
        match left.is_empty() {
            true => Ok(()),
            false => Err(format!("{left:?} not imported; logs:\n{logs}")),
        }
    })
    .await;
    c.settled(1, &s1).await;
    let peak = crate::budget::status_bytes(pid, "VmHWM");
    let (code, _, err) = s1.terminate().await;
    assert_eq!(code, 0);
    let logs = err.join("\n");
    for b in &mine {
        let imports = logs
            .matches(&format!("bridge {b} handed over from shard 0: 8 items"))
            .count();
        assert_eq!(imports, 1, "{b}: {logs}");
        assert_eq!(asked.deletes.lock().unwrap().get(b), Some(&1), "{b}");
    }
    // Some waited in line, and were asked again.
    let asks: usize = mine.iter().map(|b| asked.posts(b).len()).sum();
    eprintln!(
        "{} documents, {asks} asks; peak RSS {} MiB",
        mine.len(),
        peak / MIB
    );
    assert!(asks > mine.len(), "{asks} asks for {} bridges", mine.len());
    assert!(
        peak <= BUDGET + SLACK,
        "peak RSS {} MiB, over the budget of {} MiB + {} MiB",
        peak / MIB,
        BUDGET / MIB,
        SLACK / MIB
    );
}
