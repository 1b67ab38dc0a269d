//! The built `pollhook` binary as a child process: check, sign, and run end to end.

use crate::support::*;
use serde_json::json;
use std::process::Stdio;

#[tokio::test]
async fn run_polls_delivers_prints_and_stops_on_sigterm() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("500ms")
        .header("Authorization", "\"Bearer ${API_TOKEN}\"")
        .first_poll("emit")
        .signed_sink(&rx.url())
        .sink("console")
        .write(dir.path(), "live");
    up.set_json(&json!({"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}));
    let token = "tok-9f8e7d6c5b4a";
    let d = Daemon::start(dir.path(), &[("API_TOKEN", token)]);

    until("two created events delivered", || rx.received().len() >= 2).await;
    up.set_json(&json!({"items": [{"id": 1, "v": "a2"}, {"id": 2, "v": "b"}]}));
    until("the update delivered", || rx.received().len() >= 3).await;
    until("three lines on stdout", || {
        d.stdout.lock().unwrap().len() >= 3
    })
    .await;

    // The upstream saw the interpolated token; the logs never do.
    let auth = up.hits.lock().unwrap()[0]
        .headers
        .get("authorization")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(auth, format!("Bearer {token}"));

    let (code, out, err) = d.terminate().await;
    assert_eq!(code, 0, "exit code; stderr:\n{}", err.join("\n"));
    let got = rx.received();
    let types: Vec<_> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(types, ["item.created", "item.created", "item.updated"]);
    assert!(got.iter().all(|r| verify_standard(SECRET, r)));
    // Console sink: the same events, one JSON line each.
    let printed: Vec<serde_json::Value> = out
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(printed.len(), 3);
    assert_eq!(printed[2]["data"], json!({"id": 1, "v": "a2"}));
    assert_eq!(
        printed[2]["changes"],
        json!([{"op": "replace", "path": "/v", "value": "a2"}])
    );
    let all = err.join("\n");
    assert!(
        all.contains("bridge=live") && all.contains("created=2"),
        "{all}"
    );
    assert!(all.contains("updated=1"), "{all}");
    assert!(
        !all.contains(token),
        "the token leaked into the logs:\n{all}"
    );
}

#[tokio::test]
async fn run_refuses_invalid_bridges() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    std::fs::write(dir.path().join("bridges/x.yaml"), "schedule: {every: 5m}\nsource: {url: http://127.0.0.1:1/}\nitems: {select: \"$\"}\nsinks: [{url: console}]\nbogus: 1\n").unwrap();
    let out = std::process::Command::new(BIN)
        .args(["run", "--admin", "off"])
        .env_remove("JOURNAL_STREAM")
        .arg("--bridges")
        .arg(dir.path().join("bridges"))
        .arg("--data")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("x.yaml:5:1: unknown key `bogus`"), "{err}");
    assert!(err.contains("refusing to start"), "{err}");
    assert!(
        !dir.path().join("data").exists(),
        "nothing is created for an invalid set"
    );
}

#[test]
fn check_and_sign_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "schedule: {every: 5m}\nsource: {url: \"https://x.example/\"}\nitems: {select: \"$[*]\"}\nsinks: [{url: console}]\n").unwrap();
    let ok = std::process::Command::new(BIN)
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "ok: 1 bridge\n");
    std::fs::write(dir.path().join("b.yaml"), "schedule: {every: 5m}\n").unwrap();
    let bad = std::process::Command::new(BIN)
        .arg("check")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("b.yaml:1:1: missing field `source`"), "{err}");
    let usage = std::process::Command::new(BIN)
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));

    let mut sign = std::process::Command::new(BIN)
        .args([
            "sign",
            "--secret",
            SECRET,
            "--id",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "--timestamp",
            "1614265330",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    sign.stdin
        .take()
        .unwrap()
        .write_all(br#"{"test": 2432232314}"#)
        .unwrap();
    let out = sign.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("webhook-signature: v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=\n"),
        "{text}"
    );
}

fn console_bridge(url: &str, include: &str) -> String {
    BridgeYaml::new(url)
        .every("500ms")
        .items(&format!("include: [\"{include}\"]"))
        .first_poll("emit")
        .sink("console")
        .build()
}

#[tokio::test]
async fn sighup_adds_changes_removes_and_refuses_a_broken_set() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1, "a": "x", "b": "y"}]}));
    let dir = tempfile::tempdir().unwrap();
    let bridges = dir.path().join("bridges");
    std::fs::create_dir_all(&bridges).unwrap();
    std::fs::write(bridges.join("one.yaml"), console_bridge(&up.url(), "$.a")).unwrap();
    std::fs::write(bridges.join("gone.yaml"), console_bridge(&up.url(), "$.a")).unwrap();
    let d = Daemon::start(dir.path(), &[]);
    let count = |d: &Daemon, bridge: &str| {
        d.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&format!("\"bridge\":\"{bridge}\"")))
            .count()
    };
    let logs = |d: &Daemon| d.stderr.lock().unwrap().join("\n");
    until("both bridges emitted", || {
        count(&d, "one") == 1 && count(&d, "gone") == 1
    })
    .await;

    std::fs::write(bridges.join("two.yaml"), console_bridge(&up.url(), "$.a")).unwrap();
    std::fs::write(bridges.join("one.yaml"), console_bridge(&up.url(), "$.b")).unwrap();
    std::fs::remove_file(bridges.join("gone.yaml")).unwrap();
    d.signal("-HUP");
    until("reload logged", || {
        logs(&d).contains(
            "bridges reloaded: 2 running, 1 added, 1 changed, 1 removed bridges=2 added=1 changed=1 removed=1"
        )
    })
    .await;
    for line in [
        "INFO bridge added two bridge=two",
        "INFO bridge changed one bridge=one",
        "INFO bridge removed gone bridge=gone",
    ] {
        assert!(logs(&d).contains(line), "no `{line}` in {}", logs(&d));
    }
    until("the new bridge emitted", || count(&d, "two") == 1).await;
    // The changed bridge kept its state: its definition changed meaning, so it re-baselined
    // (WARN) instead of emitting; the removed one polls no more.
    until("one re-baselined", || {
        logs(&d).contains("definition changed")
    })
    .await;
    assert_eq!(count(&d, "one"), 1);

    std::fs::write(bridges.join("broken.yaml"), "schedule: {every: never}\n").unwrap();
    d.signal("-HUP");
    until("reload refused", || logs(&d).contains("reload refused")).await;
    assert!(logs(&d).contains("broken.yaml:1:"), "{}", logs(&d));
    // The running set stays: `two` keeps polling.
    let polls_of_two = |d: &Daemon| logs(d).matches("bridge=two status=ok").count();
    let before = polls_of_two(&d);
    until("two still polls", || polls_of_two(&d) > before).await;

    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    let polls_after_removal = err
        .iter()
        .skip_while(|l| !l.contains("bridges reloaded"))
        .filter(|l| l.contains("bridge=gone") && l.contains("status="))
        .count();
    assert_eq!(polls_after_removal, 0, "{}", err.join("\n"));
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_dropped_through_the_cli() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    rx.answer(410, &[]);
    rx.answer(410, &[]);
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}]}));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .first_poll("emit")
        .signed_sink(&format!("\"{}\"", rx.url()))
        .write(dir.path(), "dl");
    let admin = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(dir.path(), &[], &admin);
    until("two events gone to the dead letters", || {
        rx.received().len() == 2
    })
    .await;

    let listed = eventually(PATIENCE, "two dead letters listed", || {
        let (code, out, _) = cli(&["dead-letters", "list", "--admin", &admin]);
        std::future::ready((code == 0 && out.matches("HTTP 410 Gone").count() == 2).then_some(out))
    })
    .await;
    assert!(
        listed.contains("item.created") && listed.contains(" dl "),
        "{listed}"
    );
    let first_event = rx.received()[0].header("webhook-id").to_string();
    let (code, out, err) = d.cli(&["dead-letters", "replay", &first_event, "--admin", &admin]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with(&format!("replayed {first_event}.")),
        "{out}"
    );
    until("the replayed event delivered", || rx.received().len() == 3).await;
    assert_eq!(rx.received()[2].header("webhook-id"), first_event);
    assert!(verify_standard(SECRET, &rx.received()[2]));

    let (code, out, _) = d.cli(&[
        "dead-letters",
        "drop",
        "--all",
        "--bridge",
        "dl",
        "--admin",
        &admin,
    ]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    let (_, out, _) = cli(&["dead-letters", "list", "--admin", &admin]);
    assert_eq!(out, "no dead letters\n");
    let (code, _, err) = d.cli(&["dead-letters", "drop", "evt_nope", "--admin", &admin]);
    assert_eq!(code, 1);
    assert!(err.contains("no dead letter `evt_nope`"), "{err}");
    let (code, _, _) = d.terminate().await;
    assert_eq!(code, 0);

    let closed = format!("127.0.0.1:{}", free_port());
    let (code, _, err) = cli(&["dead-letters", "list", "--admin", &closed]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!("no pollhook daemon answers at http://{closed}")),
        "{err}"
    );
}
