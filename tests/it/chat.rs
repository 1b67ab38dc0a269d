//! Chat presets against a hostile source: whatever an item's title or body says, the body that
//! reaches each receiver (a real server on 127.0.0.1) holds no mention or link syntax that
//! receiver would act on, yet shows the text as written. The operator's own mentions go
//! through only with `mentions: true`. ntfy bodies stay within its 4,096 bytes.

use crate::support::*;
use serde_json::{Value, json};

/// Every preset, as `format` spells it.
const PRESETS: [&str; 6] = [
    "slack",
    "mattermost",
    "discord",
    "google_chat",
    "teams",
    "ntfy",
];

/// A title (under the summary line's 100 characters) with every receiver's mention and link
/// syntax.
const TITLE: &str =
    "<!channel> @here <@U123> <users/all> <https://evil.example|click> [x](https://evil.example)";

/// A body with what the title lacks: a backslash that would undo an escape, a code span.
const BODY: &str =
    "@everyone \\[y](https://evil.example) <#C1> `t` &amp; ![i](https://evil.example/p.png)";

const ZWSP: char = '\u{200B}';

/// The live mention and link syntax in `text` as `to` reads it, each as a short note. The
/// receivers' rules, restated apart from the code under test.
fn live(to: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let was_escaped = escaped;
        escaped = c == '\\' && !was_escaped && matches!(to, "mattermost" | "discord");
        let word = next.is_some_and(|n| n.is_alphanumeric() || "!&:._-".contains(n));
        let hit = match (to, c) {
            // Slack's control sequences all open with `<`; Mattermost turns Slack's
            // `<!channel>` and `<url|text>` into a mention and a link.
            ("slack" | "mattermost", '<') => true,
            // Mattermost splits words on anything but letters, digits and `:._-@`.
            ("mattermost" | "discord", '@') => word,
            ("mattermost" | "discord", '[') => !was_escaped,
            ("discord", '<') => !was_escaped,
            // Google Chat: `<users/…>`, `<url|text>`; Markdown links where it reads them.
            ("google_chat", '<') => next != Some(ZWSP),
            ("google_chat" | "teams", ']') => next == Some('('),
            _ => false,
        };
        if hit {
            let around: String = chars[i.saturating_sub(3)..(i + 12).min(chars.len())]
                .iter()
                .collect();
            found.push(format!("{c:?} at {i}: {around:?}"));
        }
    }
    found
}

/// What a person sees of `text` in `to`: escapes undone, zero-width spaces gone.
fn shown(to: &str, text: &str) -> String {
    let mut s = text.replace(ZWSP, "");
    if matches!(to, "mattermost" | "discord") {
        let mut out = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, chars.peek()) {
                ('\\', Some(n)) if n.is_ascii_punctuation() => out.push(chars.next().unwrap()),
                _ => out.push(c),
            }
        }
        s = out;
    }
    if matches!(to, "slack" | "mattermost") {
        s = s
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&");
    }
    s
}

/// The message text a preset's request carries.
fn text_of(to: &str, r: &Received) -> String {
    match to {
        "ntfy" => String::from_utf8(r.body.to_vec()).unwrap(),
        "discord" => r.json()["content"].as_str().unwrap().to_string(),
        "teams" => r.json()["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["text"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => r.json()["text"].as_str().unwrap().to_string(),
    }
}

/// A bridge `c` whose first poll emits one created item to `sinks`; its requests, drained.
async fn one_item(item: Value, sinks: &str) -> Harness {
    let up = Upstream::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .first_poll("emit")
        .with_sinks(sinks);
    let b = h.bridge("c", &yaml);
    up.set_json(&json!({ "items": [item] }));
    h.poll(&b).await.unwrap();
    h.drain(&b).await;
    h
}

#[tokio::test]
async fn a_hostile_title_and_body_reach_every_receiver_as_text() {
    assert!(TITLE.chars().count() < 100);
    let mut sinks = String::new();
    let mut rxs = Vec::new();
    for to in PRESETS {
        let summary = Receiver::start().await;
        let message = Receiver::start().await;
        sinks.push_str(&format!(
            "  - url: {}\n    format: {to}\n  - url: {}\n    format: {to}\n    message: \"{{{{ event.data.title }}}} / {{{{ event.data.body }}}} / {{{{ event.data | tojson }}}}\"\n",
            summary.url(),
            message.url()
        ));
        rxs.push((to, summary, message));
    }
    let _h = one_item(json!({"id": 1, "title": TITLE, "body": BODY}), &sinks).await;
    for (to, summary, message) in &rxs {
        let got = summary.received();
        assert_eq!(got.len(), 1, "{to}");
        let text = text_of(to, &got[0]);
        assert_eq!(live(to, &text), Vec::<String>::new(), "{to}: {text}");
        assert_eq!(
            shown(to, &text),
            format!("c: item.created 1 \"{TITLE}\""),
            "{to} shows the title as written"
        );
        let got = message.received();
        let text = text_of(to, &got[0]);
        assert_eq!(live(to, &text), Vec::<String>::new(), "{to}: {text}");
        let shown = shown(to, &text);
        let (words, json) = shown.split_once(" / {").unwrap();
        assert_eq!(words, format!("{TITLE} / {BODY}"), "{to}");
        // `tojson` is escaped too (JSON keeps `@everyone` and `[x](y)` as they are), and
        // shows as the JSON of the item.
        let item: Value = serde_json::from_str(&format!("{{{json}")).unwrap();
        assert_eq!(item, json!({"id": 1, "title": TITLE, "body": BODY}), "{to}");
        if *to == "discord" {
            for r in summary.received().iter().chain(&got) {
                assert_eq!(r.json()["allowed_mentions"], json!({"parse": []}));
            }
        }
        if *to == "ntfy" {
            assert_eq!(got[0].header("markdown"), "", "ntfy reads it as plain text");
        }
    }
}

#[tokio::test]
async fn mentions_true_lets_the_operators_own_mentions_through_never_the_sources() {
    let own = [
        ("slack", "<!channel>"),
        ("mattermost", "@channel"),
        ("discord", "@everyone"),
        ("google_chat", "<users/all>"),
    ];
    let mut sinks = String::new();
    let mut rxs = Vec::new();
    for (to, mention) in own {
        for opt_in in [true, false] {
            let rx = Receiver::start().await;
            let mentions = if opt_in { "    mentions: true\n" } else { "" };
            sinks.push_str(&format!(
                "  - url: {}\n    format: {to}\n{mentions}    message: \"{mention} new: {{{{ event.data.title }}}}\"\n",
                rx.url()
            ));
            rxs.push((to, mention, opt_in, rx));
        }
    }
    let _h = one_item(json!({"id": 1, "title": TITLE}), &sinks).await;
    for (to, mention, opt_in, rx) in &rxs {
        let r = &rx.received()[0];
        let text = text_of(to, r);
        let (head, title) = text.split_once(" new: ").unwrap();
        assert_eq!(live(to, title), Vec::<String>::new(), "{to}: {text}");
        assert_eq!(shown(to, title), TITLE, "{to}");
        if *opt_in {
            assert_eq!(head, *mention, "{to}: the operator's mention as written");
        } else {
            assert_eq!(live(to, head), Vec::<String>::new(), "{to}: {text}");
            assert_eq!(shown(to, head), *mention, "{to}: shown, not live");
        }
        if *to == "discord" {
            let parse = if *opt_in {
                json!(["users", "roles", "everyone"])
            } else {
                json!([])
            };
            assert_eq!(r.json()["allowed_mentions"], json!({ "parse": parse }));
        }
    }
}

#[test]
fn mentions_is_refused_where_nothing_can_mention() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("m.yaml");
    let yaml = BridgeYaml::new("http://127.0.0.1:1/x").with_sinks(
        "  - url: http://127.0.0.1:1/a\n    format: teams\n    mentions: true\n  - url: http://127.0.0.1:1/b\n    format: ntfy\n    mentions: false\n  - url: http://127.0.0.1:1/c\n    signature: none\n    mentions: true\n  - url: http://127.0.0.1:1/d\n    format: slack\n    mentions: true\n",
    );
    std::fs::write(&f, &yaml).unwrap();
    let (code, out, err) = cli(&["check", f.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}{err}");
    for i in 0..3 {
        let want = format!(
            "sinks[{i}].mentions: `mentions` is for slack, mattermost, discord and google_chat"
        );
        assert!(err.contains(&want), "{want}\n{err}");
    }
    assert!(!err.contains("sinks[3]"), "{err}");
    // Unknown keys stay refused.
    std::fs::write(
        &f,
        yaml.replace(
            "mentions: true\n  - url: http://127.0.0.1:1/d",
            "mention: true\n  - url: http://127.0.0.1:1/d",
        ),
    )
    .unwrap();
    let (code, _, err) = cli(&["check", f.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        err.contains("sinks[2]: unknown key `mention` (did you mean `mentions`?)"),
        "{err}"
    );
}

#[tokio::test]
async fn an_ntfy_message_is_cut_at_4096_bytes_on_a_character_boundary() {
    let rx = Receiver::start().await;
    let summary = Receiver::start().await;
    let sinks = format!(
        "  - url: {}\n    format: ntfy\n    message: \"{{{{ event.data.body }}}}\"\n  - url: {}\n    format: ntfy\n",
        rx.url(),
        summary.url()
    );
    let body = "€".repeat(3000);
    let _h = one_item(
        json!({"id": 1, "title": "€".repeat(200), "body": body}),
        &sinks,
    )
    .await;
    let got = &rx.received()[0].body;
    assert!(got.len() <= 4096, "{} bytes", got.len());
    let text = std::str::from_utf8(got).expect("valid UTF-8");
    // As much as fits: 1364 "€" (4,092 bytes) and "…" would be 4,095.
    assert_eq!(text, format!("{}…", "€".repeat(1364)));
    let line = String::from_utf8(summary.received()[0].body.to_vec()).unwrap();
    assert_eq!(line, format!("c: item.created 1 \"{}…\"", "€".repeat(99)));
}
