//! An outbox entry whose body is parsed at most once per attempt: the sink's `when` rule and
//! a rendering sink's body both read the stored event as JSON, and an attempt that needs
//! both parses it once. An event sink without a rule never parses it (it sends the bytes as
//! stored).

use crate::store::OutboxEntry;
use serde_json::Value;
use std::sync::OnceLock;

/// An entry, with its body as JSON once something asked for it.
#[derive(Debug)]
pub struct Stored<'a> {
    entry: &'a OutboxEntry,
    json: OnceLock<Result<Value, serde_json::Error>>,
}

impl<'a> Stored<'a> {
    pub fn new(entry: &'a OutboxEntry) -> Stored<'a> {
        Stored {
            entry,
            json: OnceLock::new(),
        }
    }

    /// The body as JSON (parsed at the first call), or why it is not JSON.
    pub fn json(&self) -> Result<&Value, &serde_json::Error> {
        self.json
            .get_or_init(|| serde_json::from_str(&self.entry.body))
            .as_ref()
    }

    /// Whether the body has been parsed.
    #[cfg(test)]
    pub fn parsed(&self) -> bool {
        self.json.get().is_some()
    }

    /// An entry taken as already parsed to `json` (which need not be its body): a test can
    /// then tell whether a reader used the shared parse or parsed the body again.
    #[cfg(test)]
    fn parsed_as(entry: &'a OutboxEntry, json: Value) -> Stored<'a> {
        Stored {
            entry,
            json: OnceLock::from(Ok(json)),
        }
    }
}

/// The entry itself: its id, kind, the bytes as stored, what a failed attempt sent.
impl std::ops::Deref for Stored<'_> {
    type Target = OutboxEntry;

    fn deref(&self) -> &OutboxEntry {
        self.entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Sink;
    use crate::deliver::format;
    use crate::event::EventType;
    use crate::testkit::BridgeYaml;

    /// A sink that does not sign, with these lines too (`format: slack`).
    fn sink(lines: &[&str]) -> Sink {
        let yaml = lines.iter().fold(
            BridgeYaml::new("http://127.0.0.1:1/x")
                .select("$[*]")
                .sink("http://127.0.0.1:1/hook")
                .sink_line("signature: none"),
            |y, l| y.sink_line(l),
        );
        Sink::clone(&crate::config::test_bridge("f", &yaml.build()).sinks[0])
    }

    fn entry(body: &str) -> OutboxEntry {
        OutboxEntry {
            event_id: "evt_1".into(),
            kind: EventType::Created,
            seq: 1,
            body: body.into(),
            attempts: 0,
            next_at_ms: 0,
            last_error: None,
            created_ms: 0,
            sent: None,
        }
    }

    const EVENT: &str = r#"{"id":"evt_1","type":"item.created","bridge":"b","key":"7","data":{"id":7,"name":"Lamp"}}"#;

    #[test]
    fn the_rule_and_the_body_of_one_attempt_share_one_parse() {
        let sink = sink(&["format: slack", "when: \"event.data.id > 5\""]);
        let e = entry(EVENT);
        let stored = Stored::new(&e);
        assert!(format::wanted("b", &sink, &stored));
        assert!(stored.parsed(), "the rule reads the event as JSON");
        let first: *const Value = stored.json().unwrap();
        let r = format::render("b", &sink, &stored).unwrap();
        assert_eq!(r.body, r#"{"text":"b: item.created 7 \"Lamp\""}"#);
        assert!(std::ptr::eq(first, stored.json().unwrap()));

        // Neither reads the body again: both see the parse they share, not the bytes.
        let other =
            r#"{"type":"item.created","bridge":"b","key":"1","data":{"id":1,"name":"Desk"}}"#;
        let e = entry(other);
        let stored = Stored::parsed_as(&e, serde_json::from_str(EVENT).unwrap());
        assert!(format::wanted("b", &sink, &stored), "the rule read id 1");
        let r = format::render("b", &sink, &stored).unwrap();
        assert_eq!(r.body, r#"{"text":"b: item.created 7 \"Lamp\""}"#);
    }

    #[test]
    fn an_event_sink_without_a_rule_never_parses_the_body() {
        let sink = sink(&[]);
        // Not even JSON: an event sink sends the stored bytes as they are.
        let e = entry("{not json");
        let stored = Stored::new(&e);
        assert!(format::wanted("b", &sink, &stored));
        assert_eq!(
            format::render("b", &sink, &stored).unwrap().body,
            "{not json"
        );
        assert!(!stored.parsed());
    }

    #[test]
    fn a_body_that_is_not_json_is_sent_past_a_rule_and_cannot_be_rendered() {
        let sink = sink(&["format: slack", "when: \"event.data.id > 5\""]);
        let e = entry("{not json");
        let stored = Stored::new(&e);
        // A rule that cannot be read counts as true: nothing is lost to it.
        assert!(format::wanted("b", &sink, &stored));
        let why = format::render("b", &sink, &stored).unwrap_err();
        assert!(why.starts_with("the stored event is not JSON ("), "{why}");
    }
}
