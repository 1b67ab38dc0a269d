//! Churn and `suggest` (docs/testing-bridges.md#churn-and-suggest): the paths a bridge's
//! updates change, counted from their patches, ranked with their evidence, and the YAML that
//! would quiet the noise; from K dry polls, and from a running daemon.

use crate::support::*;
use serde_json::{Value, json};

/// Two items; `$.fetched_at` is `n` in both; item 1's `tags` change on even `n`.
fn listing(n: u64) -> Value {
    let tags = if n % 2 == 0 {
        json!(["a", "b"])
    } else {
        json!(["a"])
    };
    json!({"items": [
        {"id": 1, "title": "one", "fetched_at": n, "tags": tags},
        {"id": 2, "title": "two", "fetched_at": n, "tags": []}
    ]})
}

fn bridge_yaml(url: &str) -> String {
    named_yaml("noisy", url)
}

fn named_yaml(name: &str, url: &str) -> String {
    format!(
        "name: {name}\nschedule: {{every: 24h}}\nsource: {{url: \"{url}\"}}\n\
         items: {{select: \"$.items[*]\", key: \"$.id\"}}\nsinks: [{{url: console}}]\n"
    )
}

#[tokio::test]
async fn suggest_with_polls_finds_the_path_that_always_changes_and_proposes_excluding_it() {
    let up = Upstream::start().await;
    for n in 1..=4 {
        up.then(Answer::json(&listing(n)));
    }
    let dir = with_bridge("noisy", &bridge_yaml(&up.url()));
    let args = ["suggest", "noisy", "--polls", "4", "--every", "0s"];
    let (code, out, err) = output_apart(pollhook_in(dir.path(), &args)).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(up.hits().len(), 4);
    // Three compared polls (the first is the baseline); the real store was never made.
    assert!(out.starts_with("noisy: 3 compared polls\n"), "{out}");
    let first = out.lines().nth(1).unwrap();
    assert_eq!(
        first,
        "  `$.fetched_at` changed in 100 % of items on 3 of 3 polls (6 item updates)"
    );
    assert!(
        out.contains("  `$.tags[*]` changed in 50 % of items on 3 of 3 polls (3 item updates)"),
        "{out}"
    );
    assert!(
        out.contains("  items:\n    exclude: [\"$.fetched_at\"]\n"),
        "{out}"
    );
    assert!(!dir.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_counts_churn_and_answers_it_on_the_read_side() {
    let up = Upstream::start().await;
    up.set_json(&listing(1));
    let dir = with_bridge("noisy", &bridge_yaml(&up.url()));
    let d = Daemon::start(dir.path(), &[]);
    let path = "/v1/bridges/noisy/churn";
    d.answering(path).await;
    for n in 2..=4 {
        up.set_json(&listing(n));
        let (code, _, err) = d.cli(&["poll", "noisy", "--commit"]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, v) = over_socket(&d.socket, reqwest::Method::GET, path).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["paths"][0]["path"], "$.fetched_at", "{v}");
    assert!(v["paths"][0]["items"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(v["flaps"], 0, "{v}");
    let (code, out, err) = d.cli(&["suggest", "noisy"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("`$.fetched_at` changed in 100 % of items"),
        "{out}"
    );
    let (code, v) = over_socket(&d.socket, reqwest::Method::GET, "/v1/bridges/nope/churn").await;
    assert_eq!(code, 404, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counts_survive_a_kill_9_of_the_daemon() {
    let up = Upstream::start().await;
    up.set_json(&listing(1));
    let dir = with_bridge("noisy", &bridge_yaml(&up.url()));
    let path = "/v1/bridges/noisy/churn";
    let mut d = Daemon::start(dir.path(), &[]);
    d.answering(path).await;
    // The baseline poll began (it holds the bridge's poll lock): the polls below compare.
    until("the baseline", || !up.hits().is_empty()).await;
    for n in 2..=4 {
        up.set_json(&listing(n));
        let (code, _, err) = d.cli(&["poll", "noisy", "--commit"]);
        assert_eq!(code, 0, "{err}");
    }
    let (_, before) = over_socket(&d.socket, reqwest::Method::GET, path).await;
    assert_eq!(before["polls"], 3, "{before}");
    d.child.kill().await.unwrap(); // SIGKILL: only what the polls' commits stored is left
    d.child.wait().await.unwrap();
    let d = Daemon::start(dir.path(), &[]);
    d.answering(path).await;
    let (_, after) = over_socket(&d.socket, reqwest::Method::GET, path).await;
    assert_eq!(after, before);
    let (code, out, err) = d.cli(&["suggest", "noisy"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("noisy: 3 compared polls\n")
            && out.contains("`$.fetched_at` changed in 100 % of items on 3 of 3 polls"),
        "{out}"
    );
    // Counting goes on from there.
    up.set_json(&listing(5));
    let (code, _, err) = d.cli(&["poll", "noisy", "--commit"]);
    assert_eq!(code, 0, "{err}");
    let (_, v) = over_socket(&d.socket, reqwest::Method::GET, path).await;
    assert_eq!(
        (v["polls"].as_u64(), &v["paths"][0]["polls"]),
        (Some(4), &json!(4)),
        "{v}"
    );
}

const TOKEN: &str = "churn-test-token-5d1e";

/// Shard `i` of `n` in `dir`, its admin API on 127.0.0.1`i` at `port` (its peers' too).
fn shard(dir: &std::path::Path, i: u64, n: u64, port: u16) -> Daemon {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (listen, peers) = (
        format!("127.0.0.1{i}:{port}"),
        format!("http://127.0.0.1{{i}}:{port}"),
    );
    let shard = format!("{i}/{n}");
    let args = [
        "--admin",
        &listen,
        "--admin-token-file",
        token.to_str().unwrap(),
        "--shard",
        &shard,
        "--peers",
        &peers,
    ];
    Daemon::start_args(dir, &[("POLLHOOK_HANDOFF_RETRY", "100ms")], &args)
}

/// The bridge's churn as the daemon answers it, once it answers.
async fn churn_of(d: &Daemon, name: &str) -> Value {
    let path = format!("/v1/bridges/{name}/churn");
    d.answering(&path).await;
    let (code, v) = over_socket(&d.socket, reqwest::Method::GET, &path).await;
    assert_eq!(code, 200, "{v}");
    v
}

/// A bridge counted here, given to another shard in a handoff, then owned here again and its
/// old copy given up (`pollhook handoff skip`): the store forgets the copy with its counters,
/// and so does the running daemon, which had read them while the bridge waited. It counts
/// afresh from its new baseline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_whose_old_copy_is_given_up_counts_afresh_in_the_same_process() {
    let name = (0..)
        .map(|k| format!("noisy-{k}"))
        .find(|b| pollhook::shard::owner(b, 2) == 1)
        .unwrap();
    let port = loop {
        let p = free_port();
        let free = [10, 11]
            .iter()
            .all(|i| std::net::TcpListener::bind(format!("127.0.0.{i}:{p}")).is_ok());
        if free {
            break p;
        }
    };
    let up = Upstream::start().await;
    up.set_json(&listing(1));
    let dir = with_bridge(&name, &named_yaml(&name, &up.url()));
    // One shard: three polls counted.
    let d = shard(dir.path(), 0, 1, port);
    churn_of(&d, &name).await;
    until("the baseline", || !up.hits().is_empty()).await;
    for n in 2..=4 {
        up.set_json(&listing(n));
        let (code, _, err) = d.cli(&["poll", &name, "--commit"]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(churn_of(&d, &name).await["polls"], 3);
    let (code, _, _) = d.terminate().await;
    assert_eq!(code, 0);
    // Two shards: the bridge is shard 1's, which takes its state and never acknowledges.
    let d = shard(dir.path(), 0, 2, port);
    let base = format!("http://127.0.0.10:{port}");
    eventually(PATIENCE, "shard 0's admin API", || async {
        get_json(&format!("{base}/v1/layout")).await.0 == 200
    })
    .await;
    let give = format!("/v1/handoff/{name}?to=1");
    let (code, v) = over_tcp(&base, reqwest::Method::POST, &give, Some(TOKEN)).await;
    assert_eq!(code, 200, "{v}");
    let (code, _, _) = d.terminate().await;
    assert_eq!(code, 0);
    // One shard again: the bridge waits for shard 1 (down) and its old copy's counts show.
    let d = shard(dir.path(), 0, 1, port);
    eventually(PATIENCE, "the bridge waiting", || async {
        let (_, st, _) = d.cli(&["status"]);
        st.contains("waiting for handoff from shard 1")
            .then_some(())
            .ok_or(format!("{st}\n{}", d.logs()))
    })
    .await;
    assert_eq!(churn_of(&d, &name).await["polls"], 3);
    let seen = up.hits().len();
    let (code, _, err) = d.cli(&["handoff", "skip", &name]);
    assert_eq!(code, 0, "{err}");
    until("the new baseline", || up.hits().len() > seen).await;
    let v = churn_of(&d, &name).await;
    assert_eq!((&v["polls"], &v["paths"]), (&json!(0), &json!([])), "{v}");
    up.set_json(&listing(5));
    let (code, _, err) = d.cli(&["poll", &name, "--commit"]);
    assert_eq!(code, 0, "{err}");
    let v = churn_of(&d, &name).await;
    assert_eq!(
        (&v["polls"], &v["paths"][0]["polls"]),
        (&json!(1), &json!(1)),
        "{v}"
    );
    let (code, _, _) = d.terminate().await;
    assert_eq!(code, 0);
}
