//! The body a sink speaks (docs/configuration.md#presets): the event as stored, a chat preset built
//! from a `message` template or the default one-line summary, or a `template` of the sink's own.
//!
//! A preset's text is the receiver's markup: what came from the source is escaped for it
//! (the summary line whole, a `message`'s values as they are printed), and mentions are
//! defused unless the sink says `mentions: true` (see [`crate::chat`]).
//!
//! Rendered at the first attempt from the outbox entry as stored, with no clock or other
//! input; a failed attempt keeps what it sent in the entry, and every retry sends that again.
//! So a receiver that deduplicates by `webhook-id` never sees two bodies under one id, not
//! even after a reload changed the template (a crash during a first attempt renders it again,
//! from the same entry). A reloaded template applies to what has not been tried yet, and to
//! dead letters replayed, which is how a broken one is fixed.

use super::stored::Stored;
use crate::chat::{self, Receiver};
use crate::config::Sink;
use crate::config::raw::SinkFormat;
use crate::event::EventType;

use crate::render::{BridgeInfo, Context};
use crate::store::OutboxEntry;
use serde_json::{Value, json};

pub use crate::store::Rendered;

/// The body of one entry (an event or a stored batch) for `sink`; the error says why it
/// cannot be built, for the dead letter.
pub fn render(bridge: &str, sink: &Sink, entry: &Stored<'_>) -> Result<Rendered, String> {
    if sink.format == SinkFormat::Event {
        return Ok(Rendered {
            content_type: "application/json".into(),
            title: None,
            body: entry.body.clone(),
        });
    }
    let info = BridgeInfo {
        name: bridge,
        description: sink.description(),
    };
    let stored = entry
        .json()
        .map_err(|e| format!("the stored event is not JSON ({e})"))?;
    let events: Vec<Value> = if is_batch(entry) {
        stored["events"].as_array().cloned().unwrap_or_default()
    } else {
        vec![stored.clone()]
    };
    if sink.format == SinkFormat::Template {
        let template = sink
            .template()
            .ok_or("the sink has no template for `format: template`")?;
        let ctx = if is_batch(entry) {
            Context::batch(&events, info)
        } else {
            Context::event(stored, info)
        };
        let body = template.render(sink.render(), &ctx)?;
        if is_json(sink.content_type()) {
            serde_json::from_str::<serde::de::IgnoredAny>(&body).map_err(|e| {
                format!("the template's output is not JSON ({e}), as its content type says")
            })?;
        }
        return Ok(Rendered {
            content_type: sink.content_type().to_string(),
            title: None,
            body,
        });
    }
    let to = sink
        .format
        .receiver()
        .ok_or("the sink's format is not a chat preset")?;
    let mut lines = Vec::with_capacity(events.len());
    for e in &events {
        let line = match sink.template() {
            // Its values were escaped as they were printed.
            Some(message) => message.render(sink.render(), &Context::event(e, info))?,
            None => chat::escape(to, &summary(e)),
        };
        lines.push(if sink.mentions {
            line
        } else {
            chat::defuse(to, &line)
        });
    }
    Ok(preset(to, bridge, &lines, sink.mentions))
}

/// Whether an event of this type goes to this sink (its `events` list).
fn wants(sink: &Sink, kind: EventType) -> bool {
    use crate::config::raw::SinkEvent;
    let Some(list) = sink.events() else {
        return true;
    };
    let word = match kind {
        EventType::Created => SinkEvent::Created,
        EventType::Updated => SinkEvent::Updated,
        EventType::Deleted => SinkEvent::Deleted,
        EventType::Snapshot => SinkEvent::Snapshot,
        EventType::Failing => SinkEvent::Failing,
        EventType::Recovered => SinkEvent::Recovered,
        EventType::Quiet => SinkEvent::Quiet,
        EventType::Active => SinkEvent::Active,
        EventType::ShapeChanged => SinkEvent::ShapeChanged,
        // A test goes to every sink; a digest was filtered member by member.
        EventType::Test | EventType::Batch => return true,
    };
    list.contains(&word)
}

/// Whether this sink takes this event (its `events` and `when`). A rule that fails at run
/// time counts as true, so nothing is lost to a mistake in it, and is logged at WARN and
/// counted. A batch was filtered member by member before it was formed.
pub fn wanted(bridge: &str, sink: &Sink, entry: &Stored<'_>) -> bool {
    if is_batch(entry) {
        return true;
    }
    if !wants(sink, entry.kind) {
        return false;
    }
    let Some(rule) = sink.when() else {
        return true;
    };
    let Ok(event) = entry.json() else {
        return true;
    };
    let info = BridgeInfo {
        name: bridge,
        description: sink.description(),
    };
    match rule.test(sink.render(), &Context::event(event, info)) {
        Ok(yes) => yes,
        Err(e) => {
            // The deliverer's span names the bridge and the sink.
            tracing::warn!(
                event_id = %entry.event_id,
                "sink rule failed for {bridge} event {} to {}, the event is sent: {e}",
                entry.event_id,
                sink.shown
            );
            crate::metrics::rule_errors(bridge, "sink", 1);
            true
        }
    }
}

/// Whether an entry is a stored digest of events rather than one event.
pub fn is_batch(entry: &OutboxEntry) -> bool {
    entry.kind == crate::event::EventType::Batch
}

/// Whether a media type is JSON (`application/json`, `application/vnd.x+json`, with
/// parameters or not).
pub fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The most a receiver takes in one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Chars(usize),
    /// ntfy counts bytes: past 4,096 a message becomes an attachment, or is refused.
    Bytes(usize),
}

impl Limit {
    fn size(self, s: &str) -> usize {
        match self {
            Limit::Chars(_) => s.chars().count(),
            Limit::Bytes(_) => s.len(),
        }
    }

    fn max(self) -> usize {
        match self {
            Limit::Chars(n) | Limit::Bytes(n) => n,
        }
    }
}

fn limit(to: Receiver) -> Limit {
    match to {
        Receiver::Discord => Limit::Chars(2000),
        Receiver::GoogleChat => Limit::Chars(4000),
        Receiver::Ntfy => Limit::Bytes(4096),
        Receiver::Mattermost => Limit::Chars(16_000),
        Receiver::Teams => Limit::Chars(20_000),
        Receiver::Slack => Limit::Chars(40_000),
    }
}

/// A chat body from its lines (one per event), ready for `to`.
fn preset(to: Receiver, bridge: &str, lines: &[String], mentions: bool) -> Rendered {
    let text = join(lines, limit(to));
    let (content_type, title, body) = match to {
        Receiver::Discord => (
            "application/json",
            None,
            json!({ "content": text, "allowed_mentions": chat::allowed_mentions(mentions) }),
        ),
        Receiver::Teams => ("application/json", None, teams(&text)),
        Receiver::Ntfy => (
            "text/plain; charset=utf-8",
            Some(bridge.to_string()),
            Value::String(text),
        ),
        Receiver::Slack | Receiver::Mattermost | Receiver::GoogleChat => {
            ("application/json", None, json!({ "text": text }))
        }
    };
    let body = match body {
        Value::String(s) => s,
        v => v.to_string(),
    };
    Rendered {
        content_type: content_type.into(),
        title,
        body,
    }
}

/// A Teams workflow-webhook message: one Adaptive Card 1.4 with the text, a block per line.
fn teams(text: &str) -> Value {
    let blocks: Vec<Value> = text
        .lines()
        .map(|l| json!({"type": "TextBlock", "text": l, "wrap": true}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": blocks,
            },
        }],
    })
}

/// The lines, one per event, within `limit`: as many as fit, then "… and N more"; a single
/// line too long is cut with "…". Cut on a character's boundary, never inside one.
pub fn join(lines: &[String], limit: Limit) -> String {
    if lines.len() == 1 {
        return cut(&lines[0], limit);
    }
    let mut out = String::new();
    let mut used = 0;
    for (i, line) in lines.iter().enumerate() {
        let rest = lines.len() - i - 1;
        let tail = if rest > 0 {
            limit.size(&format!("\n… and {rest} more"))
        } else {
            0
        };
        let n = limit.size(line) + usize::from(i > 0);
        if used + n + tail > limit.max() {
            let more = lines.len() - i;
            let note = format!("… and {more} more");
            if i > 0 {
                out.push('\n');
            }
            out.push_str(&note);
            return cut(&out, limit);
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(line);
        used += n;
    }
    out
}

/// `s` within `limit`, its end replaced by "…" when it is longer.
fn cut(s: &str, limit: Limit) -> String {
    if limit.size(s) <= limit.max() {
        return s.to_string();
    }
    let keep = limit.max().saturating_sub(limit.size("…"));
    let end = match limit {
        Limit::Chars(_) => s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i),
        Limit::Bytes(_) => (0..=keep.min(s.len()))
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0),
    };
    let mut out = s[..end].to_string();
    out.push('…');
    out
}

/// Fields that name an item, in the order they are looked for.
const TITLES: [&str; 8] = [
    "title",
    "name",
    "summary",
    "subject",
    "tag_name",
    "display_name",
    "label",
    "headline",
];

/// The default line: `bridge: type key "title" (field: old → new, …)` with up to three
/// changed fields; a failure event says its reason and streak.
pub fn summary(e: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out = format!("{}: {} {}", s(&e["bridge"]), s(&e["type"]), s(&e["key"]));
    out = out.trim_end().to_string();
    let item = if e["data"].is_object() {
        &e["data"]
    } else {
        &e["previous"]
    };
    if let Some(t) = TITLES
        .iter()
        .find_map(|k| item.get(*k).and_then(Value::as_str))
    {
        out.push_str(&format!(" \"{}\"", cut(t, Limit::Chars(100))));
    }
    let mut parts: Vec<String> = Vec::new();
    let changes = e["changes"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let mut fields: Vec<&str> = Vec::new();
    for c in changes {
        let Some(path) = c["path"].as_str() else {
            continue;
        };
        if !fields.contains(&path) {
            fields.push(path);
        }
    }
    for path in fields.iter().take(3) {
        let old = e["previous"].pointer(path);
        let new = e["data"].pointer(path);
        let name = path.trim_start_matches('/').replace('/', ".");
        parts.push(format!("{name}: {} → {}", shown(old), shown(new)));
    }
    if fields.len() > 3 {
        parts.push(format!("+{} more", fields.len() - 3));
    }
    let failures = e["data"]["failures"].as_u64().unwrap_or(0);
    match e["type"].as_str().unwrap_or_default() {
        "bridge.failing" => {
            parts.push(e["data"]["reason"].as_str().unwrap_or("failed").to_string());
            parts.push(format!("{failures} failed polls in a row"));
        }
        "bridge.recovered" => parts.push(format!("after {failures} failed polls")),
        _ => {}
    }
    if !parts.is_empty() {
        out.push_str(&format!(" ({})", parts.join(", ")));
    }
    out
}

/// A value in a summary: strings bare, others as JSON, absent as "—", long ones cut.
fn shown(v: Option<&Value>) -> String {
    match v {
        None => "—".into(),
        Some(Value::String(s)) => cut(s, Limit::Chars(60)),
        Some(v) => cut(&v.to_string(), Limit::Chars(60)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_bridge_type_key_title_and_three_changes() {
        let e: Value = serde_json::from_str(
            r#"{"bridge":"shop","type":"item.updated","key":"7",
            "data":{"name":"Lamp","price":8,"a":{"b":"x"},"c":1,"d":true},
            "previous":{"name":"Lamp","price":10.5,"a":{"b":"y"},"c":2},
            "changes":[{"op":"replace","path":"/price","value":8},
                       {"op":"replace","path":"/a/b","value":"x"},
                       {"op":"add","path":"/d","value":true},
                       {"op":"replace","path":"/c","value":1}]}"#,
        )
        .unwrap();
        assert_eq!(
            summary(&e),
            "shop: item.updated 7 \"Lamp\" (price: 10.5 → 8, a.b: y → x, d: — → true, +1 more)"
        );
        let created = json!({"bridge": "b", "type": "item.created", "key": "1", "data": {"id": 1}});
        assert_eq!(summary(&created), "b: item.created 1");
        let failing = json!({"bridge": "b", "type": "bridge.failing", "key": "",
            "data": {"reason": "timeout", "error": "…", "failures": 3}});
        assert_eq!(
            summary(&failing),
            "b: bridge.failing (timeout, 3 failed polls in a row)"
        );
        let recovered = json!({"bridge": "b", "type": "bridge.recovered", "key": "",
            "data": {"failures": 5, "duration_ms": 1}});
        assert_eq!(
            summary(&recovered),
            "b: bridge.recovered (after 5 failed polls)"
        );
    }

    #[test]
    fn joins_lines_within_the_limit() {
        let chars = Limit::Chars;
        let lines: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
        assert_eq!(join(&lines[..2], chars(100)), "line 0\nline 1");
        let j = join(&lines, chars(40));
        assert_eq!(j, "line 0\nline 1\nline 2\nline 3\n… and 6 more");
        assert_eq!(j.chars().count(), 40);
        assert_eq!(
            join(&lines, chars(39)),
            "line 0\nline 1\nline 2\n… and 7 more"
        );
        assert!(j.chars().count() <= 40);
        assert_eq!(join(&["x".repeat(10)], chars(5)), "xxxx…");
        assert_eq!(join(&["€".repeat(10)], chars(5)), "€€€€…");
    }

    #[test]
    fn a_byte_limit_cuts_on_a_character_boundary() {
        // "€" is 3 bytes, "…" too: 4 bytes leave room for "…" alone, 6 for "€…".
        let euros = "€".repeat(10);
        assert_eq!(join(std::slice::from_ref(&euros), Limit::Bytes(30)), euros);
        assert_eq!(
            join(std::slice::from_ref(&euros), Limit::Bytes(29)),
            "€€€€€€€€…"
        );
        assert_eq!(join(&["€€".into()], Limit::Bytes(5)), "…");
        assert_eq!(join(&["a€".into()], Limit::Bytes(4)), "a€");
        assert_eq!(join(&["a€b".into()], Limit::Bytes(4)), "a…");
        for n in 0..40 {
            let lines: Vec<String> = (0..5).map(|i| format!("{i} {}", "€".repeat(i))).collect();
            let j = join(&lines, Limit::Bytes(n.max(20)));
            assert!(j.len() <= n.max(20), "{n}: {j}");
            let one = join(std::slice::from_ref(&euros), Limit::Bytes(n));
            assert!(one.len() <= n.max(3), "{n}: {one}");
        }
        let lines: Vec<String> = (0..9).map(|_| "€".repeat(1000)).collect();
        let j = join(&lines, Limit::Bytes(4096));
        assert_eq!(j.len(), 3000 + 1 + "… and 8 more".len());
        assert!(j.ends_with("\n… and 8 more"));
    }

    #[test]
    fn presets_escape_the_summary_and_defuse_mentions() {
        let e = json!({"bridge": "b", "type": "item.created", "key": "1",
            "data": {"title": "<!channel> @everyone [x](https://evil.example)"}});
        let line = chat::escape(Receiver::Slack, &summary(&e));
        let r = preset(Receiver::Slack, "b", std::slice::from_ref(&line), false);
        assert_eq!(
            r.body,
            r#"{"text":"b: item.created 1 \"&lt;!channel&gt; @everyone [x](https://evil.example)\""}"#
        );
        let d = preset(Receiver::Discord, "b", &["hi".into()], false);
        assert_eq!(
            d.body,
            r#"{"allowed_mentions":{"parse":[]},"content":"hi"}"#
        );
        let d = preset(Receiver::Discord, "b", &["hi".into()], true);
        assert!(d.body.contains(r#""parse":["users","roles","everyone"]"#));
    }

    #[test]
    fn json_media_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/vnd.api+json"));
        assert!(!is_json("text/plain"));
    }
}
