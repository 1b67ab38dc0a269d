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
    format!(
        "name: noisy\nschedule: {{every: 24h}}\nsource: {{url: \"{url}\"}}\n\
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
