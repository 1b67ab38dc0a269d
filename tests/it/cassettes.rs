//! Record and replay (docs/testing-bridges.md): a bridge's answers kept as a cassette with no
//! credential in it, and the pipeline replayed over it offline, the same bytes every time.

use crate::support::*;
use serde_json::json;
use std::path::Path;

/// Every file under `dir`, as text (lossy), with its name.
fn every_file(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let text = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
        out.push((p.display().to_string(), text));
    }
    out.sort();
    out
}

const API_KEY: &str = "rc-apikey-5f1d";
const TRACE: &str = "rc-trace-9a2c";
const CLIENT_SECRET: &str = "rc-client-secret-77e";
const ACCESS: &str = "rc-issued-access-3b8";
const REFRESH: &str = "rc-issued-refresh-6d4";

/// A source behind an OAuth2 login, two pages, with secrets in its query and a header: two
/// polls, between which item 2 changes. The answers come in this order, once each.
fn script(up: &Upstream) {
    let token = json!({"access_token": ACCESS, "refresh_token": REFRESH, "expires_in": 3600,
        "token_type": "Bearer"});
    let page2 = format!("{}/items?api_key={API_KEY}&page=2", up.base);
    let p1 = |v: &str| json!({"items": [{"id": 1, "v": "a"}, {"id": 2, "v": v}], "next": page2});
    for a in [
        Answer::json(&token).header("set-cookie", &format!("sid={ACCESS}")),
        Answer::json(&p1("b")),
        Answer::json(&json!({"items": [{"id": 3, "v": "c"}]})),
        Answer::json(&p1("B")),
        Answer::json(&json!({"items": [{"id": 3, "v": "c"}]})),
    ] {
        up.then(a);
    }
}

fn bridge_yaml(base: &str) -> String {
    format!(
        r#"name: rc
schedule: {{every: 1h}}
source:
  url: "{base}/items?api_key=${{API_KEY}}&page=1"
  headers: {{X-Trace: "${{TRACE}}"}}
  auth:
    oauth2: {{token_url: "{base}/token", client_id: rc-app, client_secret: "${{CLIENT_SECRET}}"}}
  paginate: {{next: {{url: "$.next"}}}}
items: {{select: "$.items[*]", key: "$.id"}}
emit: {{first_poll: emit}}
sinks:
  - url: console
  - url: "http://127.0.0.1:9/hook"
    signature: none
    format: template
    template: '{{"text": "{{{{ event.type }}}} {{{{ event.key }}}}"}}'
"#
    )
}

#[tokio::test]
async fn a_recording_keeps_no_secret_and_its_replay_is_the_same_every_time() {
    let up = Upstream::start().await;
    script(&up);
    let dir = with_bridge("rc", &bridge_yaml(&up.base));
    let bridges = dir.path().join("bridges");
    let cassette = dir.path().join("cassette");
    let env = [
        ("API_KEY", API_KEY),
        ("TRACE", TRACE),
        ("CLIENT_SECRET", CLIENT_SECRET),
    ];
    let (b, c) = (bridges.to_str().unwrap(), cassette.to_str().unwrap());
    let args = [
        "record",
        "rc",
        "--to",
        c,
        "--polls",
        "2",
        "--every",
        "0s",
        "--bridges",
        b,
    ];
    let (code, _, err) = cli_apart(&args, &env).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("poll 1: 3 answers") && err.contains("poll 2: 2 answers"),
        "{err}"
    );
    assert_eq!(up.hits().len(), 5);

    // Nothing of a credential in any file, in any spelling.
    let files = every_file(&cassette);
    assert_eq!(files.len(), 1 + 2 * 5, "{files:?}");
    for (name, text) in &files {
        for s in [API_KEY, TRACE, CLIENT_SECRET, ACCESS, REFRESH, "rc-app:"] {
            assert!(!text.contains(s), "{s} in {name}:\n{text}");
        }
    }
    let login = std::fs::read_to_string(cassette.join("001-001.json")).unwrap();
    assert!(
        login.contains("\"login\"") && login.contains("/token"),
        "{login}"
    );
    let page = std::fs::read_to_string(cassette.join("001-002.json")).unwrap();
    assert!(
        page.contains("api_key=***") && page.contains("\"x-trace\""),
        "{page}"
    );

    // Replayed twice: the same bytes, and no request reached the source.
    let args = ["replay", "rc", "--from", c, "--bridges", b];
    let (code, first, err) = cli_apart(&args, &env).await;
    assert_eq!(code, 0, "{err}");
    let (_, second, _) = cli_apart(&args, &env).await;
    assert_eq!(first, second);
    assert_eq!(up.hits().len(), 5);
    let lines: Vec<serde_json::Value> = first
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let events: Vec<(u64, String, String)> = lines
        .iter()
        .filter(|l| l.get("event").is_some())
        .map(|l| {
            let e = &l["event"];
            let kind = e["type"].as_str().unwrap().to_string();
            (
                l["poll"].as_u64().unwrap(),
                kind,
                e["key"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = |p: u64, t: &str, k: &str| (p, t.to_string(), k.to_string());
    assert_eq!(
        events,
        [
            want(1, "item.created", "1"),
            want(1, "item.created", "2"),
            want(1, "item.created", "3"),
            want(2, "item.updated", "2"),
        ]
    );
    // The template sink's requests, rendered.
    assert!(
        lines
            .iter()
            .any(|l| l["poll"] == 2 && l["body"] == json!({"text": "item.updated 2"})),
        "{first}"
    );

    // --expect: equal exits 0; a changed line exits 1 and says where.
    let expect = dir.path().join("expect.jsonl");
    std::fs::write(&expect, &first).unwrap();
    let e = expect.to_str().unwrap();
    let (code, _, err) = cli_apart(
        &["replay", "rc", "--from", c, "--bridges", b, "--expect", e],
        &env,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    std::fs::write(&expect, first.replacen("item.updated", "item.deleted", 1)).unwrap();
    let (code, out, _) = cli_apart(
        &["replay", "rc", "--from", c, "--bridges", b, "--expect", e],
        &env,
    )
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("first difference at line 12:\n- {\"poll\":2,\"event\""),
        "{out}"
    );
}

#[tokio::test]
async fn a_replay_whose_requests_differ_from_the_cassette_says_which() {
    let up = Upstream::start().await;
    script(&up);
    let dir = with_bridge("rc", &bridge_yaml(&up.base));
    let bridges = dir.path().join("bridges");
    let cassette = dir.path().join("cassette");
    let env = [("API_KEY", "k"), ("TRACE", "t"), ("CLIENT_SECRET", "s")];
    let (b, c) = (bridges.to_str().unwrap(), cassette.to_str().unwrap());
    let args = ["record", "rc", "--to", c, "--polls", "1", "--bridges", b];
    let (code, _, err) = cli_apart(&args, &env).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = cli_apart(&args, &env).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already holds a cassette"), "{err}");
    // The bridge now asks for another page size.
    let yaml = bridge_yaml(&up.base).replace("&page=1", "&page=1&per_page=5");
    std::fs::write(bridges.join("rc.yaml"), yaml).unwrap();
    let (code, _, err) = cli_apart(&["replay", "rc", "--from", c, "--bridges", b], &env).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the requests differ from the cassette")
            && err.contains("poll 1: request 2 is GET")
            && err.contains("per_page=5"),
        "{err}"
    );
}

/// Each example in `bridges/` has a cassette in `bridges/cassettes/NAME/`, and replays to the
/// `expect.jsonl` beside it.
#[tokio::test]
async fn every_example_bridge_replays_to_its_expected_output() {
    let bridges = Path::new(env!("CARGO_MANIFEST_DIR")).join("bridges");
    let env = pollhook::config::Env::process();
    let examples = pollhook::config::load_dir(&bridges, &env).unwrap();
    assert!(examples.len() >= 6, "{}", examples.len());
    let b = bridges.to_str().unwrap();
    for bridge in &examples {
        let dir = bridges.join("cassettes").join(&bridge.name);
        let expect = dir.join("expect.jsonl");
        assert!(expect.is_file(), "no {}", expect.display());
        let (d, e) = (dir.to_str().unwrap(), expect.to_str().unwrap());
        let args = [
            "replay",
            &bridge.name,
            "--from",
            d,
            "--bridges",
            b,
            "--expect",
            e,
        ];
        let (code, out, err) = cli_apart(&args, &[]).await;
        assert_eq!(code, 0, "{}: {out}{err}", bridge.name);
        // Each example's cassette shows it doing something after its first poll.
        let expected = std::fs::read_to_string(&expect).unwrap();
        assert!(
            expected
                .lines()
                .any(|l| l.starts_with("{\"poll\":3,\"event\"")),
            "{}: nothing emitted on poll 3",
            bridge.name
        );
    }
}

/// The loader reads the `*.yaml` files directly in a bridges directory: a folder beside them
/// (`cassettes/`), whatever it holds, is not taken for bridges.
#[test]
fn the_loader_skips_the_cassettes_folder() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "name: one\nschedule: {every: 1h}\nsource: {url: \"http://127.0.0.1:9/x\"}\n\
                items: {select: \"$[*]\", key: \"$.id\"}\nsinks: [{url: console}]\n";
    std::fs::write(dir.path().join("one.yaml"), yaml).unwrap();
    let inner = dir.path().join("cassettes").join("one");
    std::fs::create_dir_all(&inner).unwrap();
    std::fs::write(inner.join("cassette.json"), "{}").unwrap();
    std::fs::write(inner.join("two.yaml"), yaml.replace("one", "two")).unwrap();
    let env = pollhook::config::Env::process();
    let loaded = pollhook::config::load_dir(dir.path(), &env).unwrap();
    let names: Vec<&str> = loaded.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["one"]);
}
