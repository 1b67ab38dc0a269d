//! Sinks that speak the receiver's language (docs/configuration.md#presets): each preset's body
//! checked field by field against the shape its receiver documents, templates signed over the bytes
//! sent, a render error that dead-letters one event and blocks nothing, and the rules that pick
//! what a sink receives.

use crate::support::*;
use pollhook::deliver::Outcome;
use serde_json::json;

/// A bridge `d` polled twice: baseline, then one item updated (`price` 10 -> 8).
async fn updated_once(sinks: &str) -> (Upstream, Harness, pollhook::config::Bridge) {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("d", &BridgeYaml::new(&up.url()).with_sinks(sinks));
    up.set_json(&json!({"items": [{"id": 1, "name": "Lamp", "price": 10}]}));
    h.poll(&b).await.unwrap();
    up.set_json(&json!({"items": [{"id": 1, "name": "Lamp", "price": 8}]}));
    h.poll(&b).await.unwrap();
    (up, h, b)
}

const SUMMARY: &str = "d: item.updated 1 \"Lamp\" (price: 10 → 8)";

#[tokio::test]
async fn chat_presets_send_the_documented_shapes_unsigned() {
    let names = [
        "slack",
        "mattermost",
        "google_chat",
        "discord",
        "teams",
        "ntfy",
    ];
    let mut rxs = Vec::new();
    let mut sinks = String::new();
    for n in names {
        let rx = Receiver::start().await;
        sinks.push_str(&format!("  - url: {}/{n}\n    format: {n}\n", rx.base));
        rxs.push(rx);
    }
    let (_up, h, b) = updated_once(&sinks).await;
    h.drain(&b).await;
    let got: Vec<Received> = rxs
        .iter()
        .map(|r| {
            let all = r.received();
            assert_eq!(all.len(), 1, "one request each");
            all[0].clone()
        })
        .collect();
    for r in &got {
        assert_eq!(r.header("webhook-signature"), "", "presets are unsigned");
        assert!(r.header("webhook-id").starts_with("evt_"));
    }
    // Slack, Mattermost, Google Chat: {"text": …}.
    for r in &got[..3] {
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.json(), json!({ "text": SUMMARY }));
    }
    // Discord: {"content": …}, pinging no one.
    assert_eq!(
        got[3].json(),
        json!({ "content": SUMMARY, "allowed_mentions": {"parse": []} })
    );
    // Teams workflow webhook: a message with one Adaptive Card 1.4.
    let teams = got[4].json();
    assert_eq!(teams["type"], "message");
    let att = teams["attachments"].as_array().unwrap();
    assert_eq!(att.len(), 1);
    assert_eq!(
        att[0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &att[0]["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    assert_eq!(
        card["body"],
        json!([{"type": "TextBlock", "text": SUMMARY, "wrap": true}])
    );
    // ntfy: the text as a text/plain body, the bridge name as `Title`.
    assert!(got[5].header("content-type").starts_with("text/plain"));
    assert_eq!(std::str::from_utf8(&got[5].body).unwrap(), SUMMARY);
    assert_eq!(got[5].header("title"), "d");
}

#[tokio::test]
async fn a_message_template_fills_the_preset_and_discord_is_cut_at_2000() {
    let slack = Receiver::start().await;
    let discord = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    format: slack\n    message: \"{{{{ event.data.name }}}}: {{{{ event.previous.price }}}} → {{{{ event.data.price }}}} ({{{{ bridge.name }}}})\"\n  - url: {}\n    format: discord\n    message: \"{{{{ 'x' * 3000 }}}}\"\n",
        slack.url(),
        discord.url()
    );
    let (_up, h, b) = updated_once(&sinks).await;
    h.drain(&b).await;
    assert_eq!(
        slack.received()[0].json(),
        json!({"text": "Lamp: 10 → 8 (d)"})
    );
    let content = discord.received()[0].json()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(content.chars().count(), 2000);
    assert!(content.ends_with('…') && content.starts_with("xxx"));
}

#[tokio::test]
async fn a_template_sink_is_signed_over_the_rendered_bytes() {
    let rx = Receiver::start().await;
    let text = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    format: template\n    secret: {SECRET}\n    template: |\n      {{\"title\": {{{{ event.key | tojson }}}}, \"item\": {{{{ event.data | tojson }}}}}}\n  - url: {}\n    format: template\n    signature: none\n    content_type: text/plain\n    template: \"now {{{{ event.data.price }}}}, was {{{{ event.previous.price }}}}\"\n",
        rx.url(),
        text.url()
    );
    let (_up, h, b) = updated_once(&sinks).await;
    h.drain(&b).await;
    let t = &text.received()[0];
    assert_eq!(t.header("content-type"), "text/plain");
    assert_eq!(&t.body[..], b"now 8, was 10");
    let r = &rx.received()[0];
    assert_eq!(r.header("content-type"), "application/json");
    assert_eq!(
        r.json(),
        json!({"title": "1", "item": {"id": 1, "name": "Lamp", "price": 8}})
    );
    assert!(verify_standard(SECRET, r), "signature over the bytes sent");
}

#[tokio::test]
async fn a_template_that_renders_invalid_json_dead_letters_that_event_only() {
    let rx = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    format: template\n    signature: none\n    template: '{{\"key\": {{{{ event.key }}}}}}'\n",
        rx.url()
    );
    let up = Upstream::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .first_poll("emit")
        .with_sinks(&sinks);
    let b = h.bridge("d", &yaml);
    up.set_json(&json!({"items": [{"id": "a"}, {"id": 2}]}));
    h.poll(&b).await.unwrap();
    let o = h.drain(&b).await;
    assert!(matches!(o[0], Outcome::DeadLettered { .. }), "{o:?}");
    assert!(matches!(o[1], Outcome::Delivered { .. }), "{o:?}");
    let got = rx.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].json(), json!({"key": 2}));
    let dead = h.ctx.store().unwrap().dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    let why = dead[0].1.entry.last_error.clone().unwrap();
    assert!(why.contains("not JSON"), "{why}");
}

#[tokio::test]
async fn sink_rules_pick_what_each_receiver_gets() {
    let down = Receiver::start().await;
    let status = Receiver::start().await;
    let created = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    format: slack\n    when: \"event.data.price < event.previous.price\"\n  - url: {}\n    format: slack\n    when: \"changed('/status')\"\n  - url: {}\n    format: slack\n    events: [created]\n",
        down.url(),
        status.url(),
        created.url()
    );
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("d", &BridgeYaml::new(&up.url()).with_sinks(&sinks));
    let poll = |price: u32, status: &str| {
        up.set_json(&json!({"items": [{"id": 1, "price": price, "status": status}]}));
    };
    poll(10, "open");
    h.poll(&b).await.unwrap();
    for (price, st) in [(12, "open"), (9, "open"), (9, "closed"), (15, "open")] {
        poll(price, st);
        h.poll(&b).await.unwrap();
    }
    let o = h.drain(&b).await;
    let filtered = o
        .iter()
        .filter(|o| matches!(o, Outcome::Filtered { .. }))
        .count();
    // 4 updates to each of 3 sinks: 1 + 2 + 0 sent.
    assert_eq!(filtered, 12 - 3, "{o:?}");
    let texts = |r: &Receiver| -> Vec<String> {
        r.received()
            .iter()
            .map(|x| x.json()["text"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(texts(&down), ["d: item.updated 1 (price: 12 → 9)"]);
    assert_eq!(
        texts(&status),
        [
            "d: item.updated 1 (status: open → closed)",
            "d: item.updated 1 (price: 9 → 15, status: closed → open)"
        ]
    );
    assert!(created.received().is_empty());
    assert_eq!(h.ctx.store().unwrap().outbox_len("d"), 0);
}

#[tokio::test]
async fn rules_that_fail_at_run_time_send_the_event_warn_and_count() {
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1, "n": 1}]}));
    let sinks = format!(
        "  - url: {}\n    format: slack\n    when: \"event.data.n + 'x'\"\n",
        rx.url()
    );
    let yaml = BridgeYaml::new(&up.url())
        .first_poll("emit")
        .emit("when: \"event.data.n + 'y'\"")
        .with_sinks(&sinks);
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    std::fs::write(dir.path().join("bridges/r.yaml"), yaml).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(dir.path(), &[], &admin);
    until("the event is sent", || rx.received().len() == 1).await;
    let warned = |what: &str| {
        d.logs()
            .lines()
            .any(|l| l.contains(what) && l.contains("WARN") && l.contains("bridge=r"))
    };
    until("both rules' failures are logged at WARN", || {
        warned("poll r: emit.when failed for 1 change, emitted all the same: ")
            && warned("sink rule failed for r event evt_")
            && warned(&format!(" to {}/…, the event is sent: ", rx.base))
    })
    .await;
    let (_, metrics) = get_text(&format!("http://{admin}/metrics")).await;
    for rule in ["emit", "sink"] {
        let line = format!("pollhook_rule_errors_total{{bridge=\"r\",rule=\"{rule}\"}} 1");
        assert!(metrics.contains(&line), "{line}\n{metrics}");
    }
    d.terminate().await;
}

#[tokio::test]
async fn emit_when_stores_every_change_and_seq_counts_only_the_events() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .max_fraction("1.0")
        .emit("when: \"event.type != 'item.updated' or changed('/price')\"")
        .with_sinks(&format!("  - url: {}\n    signature: none\n", rx.url()));
    let b = h.bridge("w", &yaml);
    let set = |v: serde_json::Value| up.set_json(&json!({ "items": v }));
    set(json!([{"id": 1, "name": "A", "price": 10}]));
    h.poll(&b).await.unwrap();
    set(json!([{"id": 1, "name": "B", "price": 10}]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(
        (r.updated, r.emitted.total()),
        (1, 0),
        "stored, not emitted"
    );
    set(json!([{"id": 1, "name": "B", "price": 8}]));
    h.poll(&b).await.unwrap();
    set(json!([{"id": 1, "name": "C", "price": 8}]));
    h.poll(&b).await.unwrap();
    set(json!([]));
    h.poll(&b).await.unwrap();
    h.drain(&b).await;
    let got: Vec<serde_json::Value> = rx.received().iter().map(|r| r.json()).collect();
    let seen: Vec<(&str, u64)> = got
        .iter()
        .map(|e| (e["type"].as_str().unwrap(), e["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(seen, [("item.updated", 1), ("item.deleted", 2)]);
    // The name changes were stored though not emitted: each event's `previous` has them.
    assert_eq!(got[0]["previous"]["name"], "B");
    assert_eq!(got[1]["previous"]["name"], "C");
    assert_eq!(h.snapshot("w").1.seq, 2);
}

#[test]
fn template_errors_are_placed_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.yaml");
    let yaml = BridgeYaml::new("http://127.0.0.1:1/x").with_sinks(
        "  - url: http://127.0.0.1:1/hook\n    format: template\n    signature: none\n    template: |\n      {\"a\": 1,\n       \"b\": {{ event.data. }}}\n  - url: http://127.0.0.1:1/chat\n    format: slack\n    when: \"event.type ==\"\n  - url: http://127.0.0.1:1/chat2\n    format: slack\n    message: |\n      {{ event.key }}\n      {{ event.key | upcase }}\n",
    );
    std::fs::write(&f, &yaml).unwrap();
    let (code, out, err) = cli(&["check", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    let line_of = |needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;
    let b = line_of("\"b\":");
    let col = yaml.lines().nth(b - 1).unwrap().find("}}}").unwrap() + 1;
    let want = format!("t.yaml:{b}:{col}: ");
    assert!(
        err.lines()
            .any(|l| l.contains(&want) && l.contains("sinks[0].template: syntax error")),
        "{err}"
    );
    let w = line_of("when:");
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("t.yaml:{w}:")) && l.contains("sinks[1].when")),
        "{err}"
    );
    // An unknown filter is found at load too (MiniJinja meets it only when it runs).
    let u = line_of("upcase");
    assert!(
        err.lines().any(|l| l.contains(&format!("t.yaml:{u}:"))
            && l.contains("sinks[2].message: unknown filter")),
        "{err}"
    );
}

#[test]
fn check_refuses_what_a_format_does_not_take() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("t.yaml");
    let yaml = BridgeYaml::new("http://127.0.0.1:1/x").with_sinks(
        "  - url: console\n    format: slack\n  - url: http://127.0.0.1:1/a\n    format: template\n    signature: none\n  - url: http://127.0.0.1:1/b\n    format: event\n    signature: none\n    message: hi\n  - url: http://127.0.0.1:1/c\n    format: slack\n    content_type: text/plain\n    batch: {max: 0, window: 1m}\n    events: [created, flooded]\n",
    );
    std::fs::write(&f, &yaml).unwrap();
    let (code, _out, err) = cli(&["check", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown variant `flooded`"), "{err}");
    let yaml = yaml.replace(", flooded", "");
    std::fs::write(&f, &yaml).unwrap();
    let (code, _out, err) = cli(&["check", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    for want in [
        "sinks[0].format: a console sink prints events",
        "sinks[1].format: `format: template` needs a `template`",
        "sinks[2].message: `message` is for the chat formats",
        "sinks[3].content_type: `content_type` needs `format: template`",
        "sinks[3].batch.max: must be 1 .. 1000",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[tokio::test]
async fn poll_render_prints_each_sinks_requests_and_sends_nothing() {
    let up = Upstream::start().await;
    let chat = Receiver::start().await;
    let intake = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1, "name": "Lamp"}]}));
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  - url: {}\n    format: slack\n  - url: {}\n    format: template\n    secret: {SECRET}\n    template: '{{\"k\": {{{{ event.key | tojson }}}}}}'\n  - url: {}/deleted-only\n    format: discord\n    events: [deleted]\n",
        chat.url(),
        intake.url(),
        chat.base
    );
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    let yaml = BridgeYaml::new(&up.url())
        .first_poll("emit")
        .with_sinks(&sinks);
    std::fs::write(dir.path().join("bridges/r.yaml"), yaml).unwrap();
    let (code, out, err) = output_apart(pollhook_in(
        dir.path(),
        &["poll", "r", "--render", "--admin", "127.0.0.1:1"],
    ))
    .await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("dry run"), "{err}");
    let blocks: Vec<&str> = out.split("### ").filter(|b| !b.is_empty()).collect();
    assert_eq!(blocks.len(), 3, "{out}");
    assert!(
        blocks[0].contains("content-type: application/json"),
        "{out}"
    );
    assert!(
        blocks[0].contains(r#"{"text":"r: item.created 1 \"Lamp\""}"#),
        "{out}"
    );
    assert!(!blocks[0].contains("webhook-signature"), "{out}");
    assert!(blocks[1].contains("webhook-signature: v1,"), "{out}");
    assert!(blocks[1].contains(r#"{"k": "1"}"#), "{out}");
    assert!(blocks[2].contains("not sent: not for this sink"), "{out}");
    // Sinks are named by origin only: their paths are credentials.
    assert!(
        !out.contains("/hook") && !out.contains("deleted-only"),
        "{out}"
    );
    assert!(chat.received().is_empty() && intake.received().is_empty());
    assert!(up.hits().len() == 1);
    assert!(
        !dir.path().join("data").exists(),
        "a dry run left a store behind"
    );
}

#[tokio::test]
async fn send_test_reports_each_sinks_answer_through_the_daemon() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": []}));
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  - url: {}\n    format: slack\n    events: [deleted]\n  - url: {}\n    secret: {SECRET}\n",
        good.url(),
        bad.url()
    );
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    let yaml = BridgeYaml::new(&up.url()).every("1h").with_sinks(&sinks);
    std::fs::write(dir.path().join("bridges/t.yaml"), yaml).unwrap();
    let d = Daemon::start(dir.path(), &[]);
    until("the daemon answers", || d.socket.exists()).await;
    let socket = d.socket.clone();
    // The CLI runs apart, so that this test's receivers go on answering meanwhile.
    let cli = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let socket = socket.clone();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cli_env(
                &args,
                &[("POLLHOOK_ADMIN_SOCKET", socket.to_str().unwrap())],
            )
        })
    };
    // `poll --render` through the daemon, once its first poll (a baseline) is done.
    eventually(PATIENCE, "the first poll", || async {
        let (_, out, _) = cli(&["status", "--json"]).await.unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        !v["bridges"][0]["status"]["last_result"].is_null()
    })
    .await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let (code, out, err) = cli(&["poll", "t", "--render"]).await.unwrap();
    assert_eq!(code, 0, "{out}{err}");
    let blocks: Vec<&str> = out.split("### ").filter(|b| !b.is_empty()).collect();
    assert_eq!(blocks.len(), 2, "{out}");
    assert!(blocks[0].contains("not sent: not for this sink"), "{out}");
    assert!(
        blocks[1].contains("x-pollhook-event: item.created"),
        "{out}"
    );
    assert!(blocks[1].contains("\"type\":\"item.created\""), "{out}");
    assert!(good.received().is_empty() && bad.received().is_empty());
    up.set_json(&json!({"items": []}));

    bad.answer(500, &[]);
    let (code, out, err) = cli(&["send-test", "t"]).await.unwrap();
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].ends_with(": ok (204)"), "{out}");
    assert!(lines[1].ends_with(": failed (500): HTTP 500"), "{out}");
    // A test goes to every sink, whatever its `events`; seq 0, never stored.
    let g = &good.received()[0];
    assert!(
        g.json()["text"]
            .as_str()
            .unwrap()
            .starts_with("t: bridge.test test")
    );
    let b = &bad.received()[0];
    assert_eq!(b.json()["type"], "bridge.test");
    assert_eq!(b.json()["seq"], 0);
    assert!(verify_standard(SECRET, b));
    // Only the sink named.
    let (code, out, err) = cli(&["send-test", "t", "--sink", &good.url()])
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1);
    assert_eq!((good.received().len(), bad.received().len()), (2, 1));
    let (code, _out, err) = cli(&["send-test", "t", "--sink", "http://127.0.0.1:1/nope"])
        .await
        .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("has no sink with that URL"), "{err}");
    let (_, out, _) = cli(&["status", "--json"]).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["bridges"][0]["outbox"], 0);
    assert_eq!(v["bridges"][0]["seq"], 0);
    d.terminate().await;
}

#[tokio::test]
async fn send_test_without_a_daemon_reads_the_bridge_file_and_stores_nothing() {
    let good = Receiver::start().await;
    let bad = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  - url: {}\n    format: ntfy\n    events: [deleted]\n  - url: {}\n    format: template\n    secret: {SECRET}\n    template: '{{\"k\": {{{{ event.key | tojson }}}}, \"seq\": {{{{ event.seq }}}}}}'\n",
        good.url(),
        bad.url()
    );
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    let yaml = BridgeYaml::new("http://127.0.0.1:1/items").with_sinks(&sinks);
    std::fs::write(dir.path().join("bridges/t.yaml"), yaml).unwrap();
    let send = |extra: &[&str]| {
        let mut args = vec!["send-test", "t", "--admin", "127.0.0.1:1"];
        args.extend_from_slice(extra);
        output_apart(pollhook_in(dir.path(), &args))
    };
    bad.answer(500, &[]);
    let (code, out, err) = send(&[]).await;
    assert_eq!(code, 1, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].ends_with(": ok (204)"), "{out}");
    assert!(lines[1].ends_with(": failed (500): HTTP 500"), "{out}");
    // Sinks named by origin only: their paths are credentials.
    assert!(!out.contains("/hook"), "{out}");
    let g = &good.received()[0];
    assert_eq!(g.header("title"), "t");
    assert!(String::from_utf8_lossy(&g.body).starts_with("t: bridge.test test"));
    let b = &bad.received()[0];
    assert_eq!(b.json(), json!({"k": "test", "seq": 0}));
    assert!(verify_standard(SECRET, b));
    // Only the sink named: it answers 2xx, so the exit is 0.
    let (code, out, err) = send(&["--sink", &good.url()]).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!((good.received().len(), bad.received().len()), (2, 1));
    assert!(
        !dir.path().join("data").exists(),
        "send-test stored something"
    );
}

#[test]
fn the_example_bridges_commented_slack_sink_is_valid() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/bridges/tokio-releases.yaml"
    ))
    .unwrap();
    let mut lines: Vec<String> = Vec::new();
    let mut uncomment = false;
    for l in text.lines() {
        if l.starts_with("  # - url:") {
            uncomment = true;
        }
        lines.push(if uncomment {
            l.replacen("  # ", "  ", 1)
        } else {
            l.to_string()
        });
    }
    assert!(uncomment, "the example has a commented sink");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("tokio-releases.yaml");
    std::fs::write(&f, lines.join("\n")).unwrap();
    let env = [(
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/T0/B0/X",
    )];
    let (code, out, err) = cli_env(&["check", f.to_str().unwrap()], &env);
    assert_eq!(code, 0, "{out}{err}");
}

#[tokio::test]
async fn a_sink_can_take_only_the_failure_events_each_once() {
    let rx = Receiver::start().await;
    let up = Upstream::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .failures_after(2)
        .with_sinks(&format!(
            "  - url: {}\n    format: ntfy\n    events: [failing, recovered]\n",
            rx.url()
        ));
    let b = h.bridge("f", &yaml);
    up.set_json(&json!({"items": [{"id": 1, "v": 1}]}));
    h.scheduled_poll(&b).await.unwrap();
    up.set(500, "text/plain", "down");
    for _ in 0..3 {
        h.scheduled_poll(&b).await.unwrap_err();
    }
    up.set_json(&json!({"items": [{"id": 1, "v": 2}]}));
    h.scheduled_poll(&b).await.unwrap();
    h.scheduled_poll(&b).await.unwrap();
    h.drain(&b).await;
    let texts: Vec<String> = rx
        .received()
        .iter()
        .map(|r| {
            assert_eq!(r.header("title"), "f");
            String::from_utf8(r.body.to_vec()).unwrap()
        })
        .collect();
    assert_eq!(
        texts,
        [
            "f: bridge.failing (http_status, 2 failed polls in a row)",
            "f: bridge.recovered (after 3 failed polls)"
        ]
    );
}

/// docs/events.md#same-bytes-same-id for a rendering sink: a retry sends the bytes of the first
/// attempt under the same id, also after a reload changed the template; a replayed dead letter is
/// rendered anew.
#[tokio::test]
async fn a_retry_sends_the_first_attempts_bytes_whatever_a_reload_did_to_the_template() {
    let rx = Receiver::start().await;
    let sink = |word: &str| {
        format!(
            "  - url: {}\n    format: template\n    secret: {SECRET}\n    retry: [1s]\n    template: '{{\"{word}\": {{{{ event.data.price }}}}}}'\n",
            rx.url()
        )
    };
    let (up, h, b) = updated_once(&sink("first")).await;
    rx.answer(500, &[]);
    let t0 = std::time::SystemTime::now();
    let o = h.drain_at(&b, t0).await;
    assert!(matches!(o[0], Outcome::Retrying { .. }), "{o:?}");
    // The template changes (a reload); the same sink (same URL, same queue) retries.
    let reloaded = h.bridge("d", &BridgeYaml::new(&up.url()).with_sinks(&sink("second")));
    let o = h
        .drain_at(&reloaded, t0 + std::time::Duration::from_secs(5))
        .await;
    assert!(matches!(o[0], Outcome::Delivered { .. }), "{o:?}");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, got[1].body, "the same bytes");
    assert_eq!(&got[1].body[..], br#"{"first": 8}"#);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert!(verify_standard(SECRET, &got[1]));
    // What was never tried takes the new template.
    up.set_json(&json!({"items": [{"id": 1, "name": "Lamp", "price": 7}]}));
    h.poll(&reloaded).await.unwrap();
    h.drain(&reloaded).await;
    assert_eq!(&rx.received()[2].body[..], br#"{"second": 7}"#);
}

/// A `message` that doubles a string in a loop: fuel charges the bytes it makes, so the
/// render fails (one dead letter) with the daemon's peak memory a few tens of MiB above its
/// start, not hundreds.
#[tokio::test]
async fn a_template_that_doubles_a_string_is_stopped_within_bounded_memory() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "  - url: {}\n    format: slack\n    message: \"{{% set ns = namespace(s='x') %}}{{% for i in range(64) %}}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{{{ ns.s | length }}}}\"\n",
        rx.url()
    );
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    let yaml = BridgeYaml::new(&up.url())
        .every("1h")
        .first_poll("emit")
        .with_sinks(&sinks);
    std::fs::write(dir.path().join("bridges/m.yaml"), yaml).unwrap();
    let d = Daemon::start(dir.path(), &[]);
    until("the event is dead-lettered", || {
        d.logs().contains("event dead-lettered")
    })
    .await;
    let logs = d.logs();
    assert!(logs.contains("ran out of fuel"), "{logs}");
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", d.child.id().unwrap())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("peak RSS of the daemon: {} MiB", peak_kib / 1024);
    assert!(peak_kib < 160 * 1024, "peak {} MiB", peak_kib / 1024);
    assert!(rx.received().is_empty());
    d.terminate().await;
}
