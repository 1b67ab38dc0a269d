//! Templates and rules of sinks (docs/configuration.md#templates): MiniJinja, compiled when a
//! bridge is loaded, rendered from an event as stored. Pure: no clock, no files, no network reach a
//! template (the environment has no loader, and `now()` and friends are not defined), so the same
//! event renders to the same bytes on every attempt and after a restart.
//!
//! Missing values are lenient: `event.previous.price` on a created event is undefined, empty
//! when printed and false in a test, never an error.
//!
//! A chat `message` is auto-escaped for its receiver: every value it prints shows as written
//! there (see [`crate::chat`]), while the template's own text is markup the operator wrote.
//! `| safe` prints a value as it is; `| escape_chat('slack')` escapes one anywhere.

use crate::chat::Receiver;
use minijinja::value::{Kwargs, Value};
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use std::sync::Arc;

/// The work one render or rule may do. MiniJinja charges one fuel per instruction and one per
/// 64 bytes of the strings and lists it makes, so this bounds memory too: a render can make
/// at most ~30 MiB of data (a template doubling a string in a loop stops there) and run at
/// most 500,000 instructions. A digest template over 1,000 events uses a tenth of it.
const FUEL: u64 = 500_000;

/// The largest body a template may render: more is a render error (no receiver takes it).
pub const MAX_BODY: usize = 1 << 20;

/// Where in a template's text a problem is: 1-based line and column, and the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Located {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

/// The compiled templates of one bridge, by name (`sinks[0].template`), and the environment
/// its rules are evaluated in. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.templates().map(|(n, _)| n).collect();
        f.debug_struct("Engine").field("templates", &names).finish()
    }
}

impl Default for Engine {
    fn default() -> Self {
        Builder::new().build()
    }
}

/// Collects a bridge's templates at load, checking each.
pub struct Builder {
    /// Made at the first template or rule: most bridges have none, and an environment costs
    /// a few kilobytes (10,000 bridges: tens of MiB), so those share one.
    env: Option<Environment<'static>>,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder { env: None }
    }

    /// The environment templates and rules run in.
    fn environment() -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_debug(true);
        // Bounded work and memory per render: a runaway loop fails that render instead of
        // holding a deliverer (or a poll, for `emit.when`) for minutes or filling memory.
        env.set_fuel(Some(FUEL));
        env.add_function("changed", changed);
        env.add_filter("escape_chat", escape_chat);
        env.add_filter("tojson", tojson);
        env.set_formatter(format_value);
        env
    }

    fn env(&mut self) -> &mut Environment<'static> {
        self.env.get_or_insert_with(Builder::environment)
    }

    /// Compiles a template under `name`, then tries it on a sample event (see [`unknown`]).
    pub fn template(&mut self, name: &str, source: &str) -> Result<(), Located> {
        let env = self.env();
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| locate(&e, source))?;
        let t = env.get_template(name).map_err(|e| locate(&e, source))?;
        match t.render(sample()) {
            Err(e) if unknown(&e) => Err(locate(&e, source)),
            _ => Ok(()),
        }
    }

    /// Compiles a chat `message` under `name`, every value it prints escaped for `to`, then
    /// tries it like [`Self::template`].
    pub fn message(&mut self, name: &str, source: &str, to: Receiver) -> Result<(), Located> {
        let env = self.env();
        // The escaping is fixed when a template is compiled: set for this one, then back.
        env.set_auto_escape_callback(move |_| AutoEscape::Custom(to.name().into()));
        let added = self.template(name, source);
        self.env().set_auto_escape_callback(|_| AutoEscape::None);
        added
    }

    /// Checks that a rule (an expression) compiles and names nothing unknown; rules are kept
    /// as text and compiled again where they run, which costs microseconds.
    pub fn rule(&mut self, source: &str) -> Result<(), Located> {
        let expr = self
            .env()
            .compile_expression(source)
            .map_err(|e| locate(&e, source))?;
        match expr.eval(sample()) {
            Err(e) if unknown(&e) => Err(locate(&e, source)),
            _ => Ok(()),
        }
    }

    pub fn build(self) -> Engine {
        static SHARED: std::sync::OnceLock<Arc<Environment<'static>>> = std::sync::OnceLock::new();
        let env = match self.env {
            Some(env) => Arc::new(env),
            None => SHARED
                .get_or_init(|| Arc::new(Builder::environment()))
                .clone(),
        };
        Engine { env }
    }
}

impl Engine {
    /// Renders the template `name`; the error is one line, fit for a dead letter.
    pub fn render(&self, name: &str, ctx: &Context) -> Result<String, String> {
        let t = self.env.get_template(name).map_err(|e| one_line(&e))?;
        // Written through a bound, so a loop printing a large string fails at 1 MiB instead
        // of filling memory before the size is looked at.
        let mut out = Bounded(Vec::new());
        match t.render_captured_to(ctx.0.clone(), &mut out) {
            Ok(_) => {}
            Err(_) if out.0.len() > MAX_BODY => {
                return Err("the output is more than the 1 MiB a body may have".into());
            }
            Err(e) => return Err(one_line(&e)),
        }
        String::from_utf8(out.0).map_err(|_| "the output is not UTF-8".to_string())
    }

    /// Whether a rule holds; an error is the rule failing at run time (the caller decides
    /// what that means: it counts as true, docs/configuration.md#rules).
    pub fn test(&self, rule: &str, ctx: &Context) -> Result<bool, String> {
        let expr = self
            .env
            .compile_expression(rule)
            .map_err(|e| one_line(&e))?;
        let v = expr.eval(ctx.0.clone()).map_err(|e| one_line(&e))?;
        Ok(v.is_true())
    }
}

/// MiniJinja finds an unknown filter, test or function (`now()`, `| upcase`) only when it
/// runs it: tried at load on a sample event, what it meets is a config error instead of every
/// event dead-lettered (a template) or sent with a WARN (a rule). Only these errors count: the
/// sample's empty fields may fail a sum or a comparison that real events pass. A name used
/// only in a branch the sample does not take is found at run time, as before.
fn unknown(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
            | ErrorKind::TemplateNotFound
    ) || e.detail().is_some_and(|d| d.starts_with(NOT_A_RECEIVER))
}

/// How `escape_chat` with a name that is no receiver fails (found at load like an unknown
/// filter).
const NOT_A_RECEIVER: &str = "escape_chat: not a receiver:";

/// Prints a value. In a chat `message` (auto-escape set to the receiver's name) a value is
/// escaped for that receiver unless marked safe, written piece by piece into the bounded
/// output; elsewhere as MiniJinja prints it.
fn format_value(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    let AutoEscape::Custom(name) = state.auto_escape() else {
        return minijinja::escape_formatter(out, state, value);
    };
    let to = receiver(name)?;
    let owned;
    let text = match value.as_str() {
        Some(s) => s,
        None => {
            owned = value.to_string();
            &owned
        }
    };
    if value.is_safe() {
        return out.write_str(text).map_err(Error::from);
    }
    // An escape takes up to 5 bytes a character: a value past the body's bound is refused
    // before it is copied (a concatenation escapes into memory, not into the output).
    too_long(text)?;
    crate::chat::escape_to(to, text, out).map_err(Error::from)
}

/// `| escape_chat('slack')`: the text shown as written by that receiver (no mention, no link
/// syntax), for a `format: template` body or a value of another sink's `message`.
fn escape_chat(value: &Value, to: &str) -> Result<Value, Error> {
    let to = receiver(to)?;
    let owned;
    let text = match value.as_str() {
        Some(s) => s,
        None => {
            owned = value.to_string();
            &owned
        }
    };
    too_long(text)?;
    Ok(Value::from_safe_string(crate::chat::escape(to, text)))
}

fn receiver(name: &str) -> Result<Receiver, Error> {
    Receiver::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Receiver::ALL.iter().map(|r| r.name()).collect();
        Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "{NOT_A_RECEIVER} `{name}` (say one of {})",
                names.join(", ")
            ),
        )
    })
}

fn too_long(text: &str) -> Result<(), Error> {
    if text.len() > MAX_BODY {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "a value of more than the 1 MiB a body may have",
        ));
    }
    Ok(())
}

/// MiniJinja's `tojson`, except that in a chat `message` its output is escaped like any other
/// value when printed: JSON keeps `@everyone` and `[x](y)` as they are. Charged as the
/// built-in one is (16 units of 64 a fuel, per byte).
fn tojson(
    state: &State,
    value: &Value,
    indent: Option<Value>,
    args: Kwargs,
) -> Result<Value, Error> {
    let json = minijinja::filters::tojson(value, indent, args)?;
    let text = json.as_str().unwrap_or_default();
    state.consume_fuel((text.len() as u64).div_ceil(4))?;
    Ok(match state.auto_escape() {
        AutoEscape::Custom(_) => Value::from(text),
        _ => json,
    })
}

/// The context a template or rule is tried on at load: an updated event with nothing in it,
/// as `event` and as the one member of `events`.
fn sample() -> Value {
    let e = serde_json::json!({
        "id": "evt_sample", "type": "item.updated", "bridge": "", "key": "", "seq": 1,
        "timestamp": "1970-01-01T00:00:00.000Z", "data": {}, "previous": {}, "changes": [],
    });
    minijinja::context! {
        event => to_value(&e),
        events => vec![to_value(&e)],
        bridge => minijinja::context! { name => "", description => () },
    }
}

/// A render's output, refused past [`MAX_BODY`] bytes.
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_BODY {
            // Marks the overflow for `render`, which names it.
            self.0.resize(MAX_BODY + 1, 0);
            return Err(std::io::Error::other("more than 1 MiB"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What a template sees: `event` (or `events` in a batch) and `bridge`.
#[derive(Debug, Clone)]
pub struct Context(Value);

/// The bridge as templates see it.
#[derive(Debug, Clone, Copy)]
pub struct BridgeInfo<'a> {
    pub name: &'a str,
    pub description: Option<&'a str>,
}

impl BridgeInfo<'_> {
    fn value(&self) -> Value {
        minijinja::context! { name => self.name, description => self.description }
    }
}

impl Context {
    pub fn event(event: &serde_json::Value, bridge: BridgeInfo<'_>) -> Context {
        Context(minijinja::context! {
            event => to_value(event),
            bridge => bridge.value(),
        })
    }

    pub fn batch(events: &[serde_json::Value], bridge: BridgeInfo<'_>) -> Context {
        let events: Vec<Value> = events.iter().map(to_value).collect();
        Context(minijinja::context! { events => events, bridge => bridge.value() })
    }
}

/// `changed(path)`: true when the event's `changes` touch the JSON Pointer `path`, anything
/// below it, or a parent that holds it (a replaced object replaces its fields).
fn changed(state: &State, path: &str) -> Result<bool, Error> {
    if !(path.is_empty() || path.starts_with('/')) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("changed(): `{path}` is not a JSON Pointer (write e.g. '/price')"),
        ));
    }
    let Some(changes) = state
        .lookup("event")
        .and_then(|e| e.get_attr("changes").ok())
    else {
        return Ok(false);
    };
    let Ok(iter) = changes.try_iter() else {
        return Ok(false);
    };
    for c in iter {
        let Some(p) = c
            .get_attr("path")
            .ok()
            .and_then(|p| p.as_str().map(str::to_string))
        else {
            continue;
        };
        if touches(&p, path) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a change at pointer `at` touches pointer `path`.
pub fn touches(at: &str, path: &str) -> bool {
    let below = |a: &str, b: &str| a == b || b.is_empty() || a.starts_with(&format!("{b}/"));
    below(at, path) || below(path, at)
}

/// A MiniJinja error on one line: its reason, and where in the template when known.
fn one_line(e: &Error) -> String {
    let mut s = e.kind().to_string();
    if let Some(d) = e.detail() {
        s.push_str(": ");
        s.push_str(d);
    }
    if let Some(line) = e.line() {
        s.push_str(&format!(" (line {line})"));
    }
    s
}

/// A compile error's place in the template text.
fn locate(e: &Error, source: &str) -> Located {
    let message = {
        let mut s = e.kind().to_string();
        if let Some(d) = e.detail() {
            s.push_str(": ");
            s.push_str(d);
        }
        s
    };
    let (line, column) = match e.range() {
        Some(r) => {
            let start = r.start.min(source.len());
            let before = &source[..floor_char(source, start)];
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            (line, col)
        }
        None => (e.line().unwrap_or(1), 1),
    };
    Located {
        line,
        column,
        message,
    }
}

fn floor_char(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A JSON value as a template value: numbers as integers or floats (kept exact up to 128-bit
/// integers; beyond that and beyond f64 they become their text), object keys in their order.
pub fn to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Ok(i) = n.to_string().parse::<i128>() {
                Value::from(i)
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() => Value::from(f),
                    _ => Value::from(n.to_string()),
                }
            }
        }
        J::String(x) => Value::from(x.as_str()),
        J::Array(a) => a.iter().map(to_value).collect(),
        J::Object(o) => Value::from_pairs(o.iter().map(|(k, x)| (k.as_str(), to_value(x)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const B: BridgeInfo = BridgeInfo {
        name: "shop",
        description: Some("prices"),
    };

    fn updated() -> serde_json::Value {
        serde_json::from_str(
            r#"{"id":"evt_1","type":"item.updated","bridge":"shop","key":"7","seq":3,
            "data":{"name":"Lamp","price":8,"big":100000000000000000001,"f":1.50},
            "previous":{"name":"Lamp","price":10},
            "changes":[{"op":"replace","path":"/price","value":8}]}"#,
        )
        .unwrap()
    }

    fn engine(templates: &[(&str, &str)]) -> Engine {
        let mut b = Builder::new();
        for (n, s) in templates {
            b.template(n, s).unwrap();
        }
        b.build()
    }

    #[test]
    fn renders_event_and_bridge_with_exact_numbers() {
        let e = engine(&[(
            "t",
            "{{ bridge.name }}/{{ bridge.description }}: {{ event.data.name }} {{ event.previous.price }} → {{ event.data.price }} {{ event.data.big }} {{ event.data | tojson }}",
        )]);
        let out = e.render("t", &Context::event(&updated(), B)).unwrap();
        assert_eq!(
            out,
            r#"shop/prices: Lamp 10 → 8 100000000000000000001 {"big": 100000000000000000001, "f": 1.5, "name": "Lamp", "price": 8}"#
        );
    }

    #[test]
    fn missing_values_are_lenient() {
        let e = engine(&[("t", "[{{ event.previous.price }}]")]);
        let created = json!({"type": "item.created", "data": {"price": 1}});
        let ctx = Context::event(&created, B);
        assert_eq!(e.render("t", &ctx).unwrap(), "[]");
        assert!(!e.test("event.previous.price", &ctx).unwrap());
        // The price-drop rule of docs/configuration.md#presets, on a created event: false, not an
        // error (no WARN).
        assert_eq!(
            e.test("event.data.price < event.previous.price", &ctx),
            Ok(false)
        );
        assert_eq!(e.test("'x' in event.previous.name", &ctx), Ok(false));
        assert!(e.test("event.previous.price is undefined", &ctx).unwrap());
    }

    #[test]
    fn rules_and_changed() {
        let e = Engine::default();
        let ctx = Context::event(&updated(), B);
        assert!(
            e.test("event.data.price < event.previous.price", &ctx)
                .unwrap()
        );
        assert!(e.test("changed('/price')", &ctx).unwrap());
        assert!(e.test("changed('')", &ctx).unwrap());
        assert!(!e.test("changed('/name')", &ctx).unwrap());
        assert!(!e.test("changed('/pri')", &ctx).unwrap());
        assert!(e.test("changed('price')", &ctx).is_err());
        assert!(touches("/a", "/a/b") && touches("/a/b", "/a") && !touches("/ab", "/a"));
    }

    #[test]
    fn compile_errors_are_located_in_the_template() {
        let mut b = Builder::new();
        let err = b
            .template("t", "line one\n  {{ event.data. }}")
            .unwrap_err();
        assert_eq!(err.line, 2, "{err:?}");
        assert!(err.message.contains("syntax error"), "{err:?}");
        let err = b.rule("event.type ==").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(
            b.rule("event.type == 'item.updated' and changed('/a')")
                .is_ok()
        );
    }

    #[test]
    fn unknown_filters_tests_and_functions_are_found_at_load() {
        let mut b = Builder::new();
        let err = b
            .template("t", "a\n{{ event.data.name | upcase }}")
            .unwrap_err();
        assert_eq!(err.line, 2, "{err:?}");
        assert!(err.message.contains("unknown filter"), "{err:?}");
        assert!(
            b.rule("now() > 3")
                .unwrap_err()
                .message
                .contains("unknown function")
        );
        assert!(b.rule("event.data is shiny").is_err());
        // What only a real event can answer is left to run time.
        assert!(
            b.rule("event.data.price - event.previous.price > 0")
                .is_ok()
        );
        assert!(b.template("u", "{{ event.data.price + 1 }}").is_ok());
        assert!(b.template("v", "{{ events[0].key }}").is_ok());
    }

    #[test]
    fn no_clock_no_files() {
        let e = Engine::default();
        let ctx = Context::event(&updated(), B);
        assert!(e.test("now()", &ctx).is_err());
        let mut b = Builder::new();
        let include = b.template("t", "{% include '/etc/passwd' %}");
        assert!(include.is_err() || b.build().render("t", &ctx).is_err());
    }

    #[test]
    fn runaway_templates_fail_instead_of_running_on() {
        let e = engine(&[
            (
                "loop",
                "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            ),
            ("big", "{{ 'x' * 2000000 }}"),
            // Each string within MiniJinja's own bound (100 MB); printed 10000 times, 100 GB.
            (
                "many",
                "{% set x = 'x' * 10000000 %}{% for i in range(10000) %}{{ x }}{% endfor %}",
            ),
        ]);
        let ctx = Context::event(&updated(), B);
        assert!(e.render("loop", &ctx).unwrap_err().contains("fuel"));
        assert!(e.render("big", &ctx).unwrap_err().contains("1 MiB"));
        assert!(e.render("many", &ctx).unwrap_err().contains("1 MiB"));
    }

    #[test]
    fn a_message_escapes_what_it_prints_for_its_receiver() {
        let mut b = Builder::new();
        let src = "<!here> {{ event.data.t }} {{ event.data.t | safe }} {{ event.data.n }} {{ ('<' ~ event.data.t) }} {% set c %}{{ event.data.t }}{% endset %}{{ c }} {{ event.data | tojson }}{{ event.data.none }}";
        b.message("m", src, Receiver::Slack).unwrap();
        let src = "{{ event.data.t }} {{ event.data.t | escape_chat('slack') }}";
        b.message("d", src, Receiver::Discord).unwrap();
        // A `format: template` body escapes nothing unless asked.
        let src = "{{ event.data.t }} {{ event.data.t | escape_chat('mattermost') }} {{ event.data | tojson }}";
        b.template("t", src).unwrap();
        let e = b.build();
        let event = json!({"data": {"t": "<@U1> & [x](y)", "n": 3}});
        let ctx = Context::event(&event, B);
        assert_eq!(
            e.render("m", &ctx).unwrap(),
            r#"<!here> &lt;@U1&gt; &amp; [x](y) <@U1> & [x](y) 3 &lt;&lt;@U1&gt; &amp; [x](y) &lt;@U1&gt; &amp; [x](y) {"n": 3, "t": "\u003c@U1\u003e \u0026 [x](y)"}"#
        );
        assert_eq!(
            e.render("d", &ctx).unwrap(),
            "\\<@\u{200B}U1> & \\[x\\](y) &lt;@U1&gt; &amp; [x](y)"
        );
        assert_eq!(
            e.render("t", &ctx).unwrap(),
            "<@U1> & [x](y) &lt;@\u{200B}U1&gt; &amp; \\[x\\](y) {\"n\": 3, \"t\": \"\\u003c@U1\\u003e \\u0026 [x](y)\"}"
        );
    }

    #[test]
    fn escape_chat_names_a_receiver_or_fails_at_load() {
        let mut b = Builder::new();
        let err = b
            .template("t", "a\n{{ event.key | escape_chat('slak') }}")
            .unwrap_err();
        assert_eq!(err.line, 2, "{err:?}");
        let want = "escape_chat: not a receiver: `slak` (say one of slack, mattermost, discord, google_chat, teams, ntfy)";
        assert!(err.message.contains(want), "{err:?}");
        let big = json!({"data": {"t": "&".repeat(MAX_BODY + 1)}});
        let e = engine(&[("t", "{{ event.data.t | escape_chat('slack') | length }}")]);
        let err = e.render("t", &Context::event(&big, B)).unwrap_err();
        assert!(err.contains("more than the 1 MiB"), "{err}");
        let mut b = Builder::new();
        b.message("m", "{{ event.data.t }}", Receiver::Slack)
            .unwrap();
        let err = b.build().render("m", &Context::event(&big, B)).unwrap_err();
        assert!(err.contains("more than the 1 MiB"), "{err}");
    }

    #[test]
    fn doubling_a_string_runs_out_of_fuel_within_tens_of_mib() {
        // Fuel pays for ~30 MiB of data made in all, and each doubling makes as much as all
        // before it: an 8 MiB string is made, the next doubling is refused before it is
        // allocated (figures in docs/scaling.md#memory).
        let double = |n: u32| {
            format!(
                "{{% set ns = namespace(s='x') %}}{{% for i in range({n}) %}}{{% set ns.s = ns.s ~ ns.s %}}{{% endfor %}}{{{{ ns.s | length }}}}"
            )
        };
        let e = engine(&[("t64", &double(64)), ("t23", &double(23))]);
        let ctx = Context::event(&updated(), B);
        assert!(e.render("t64", &ctx).unwrap_err().contains("fuel"));
        assert_eq!(e.render("t23", &ctx).unwrap(), (1 << 23).to_string());
    }

    #[test]
    fn a_digest_template_over_1000_events_fits_the_fuel() {
        let e = engine(&[(
            "t",
            r#"{"blocks": [{% for e in events %}{"type": "section", "text": {{ (e.data.name ~ ": " ~ e.previous.price ~ " → " ~ e.data.price ~ (" (" ~ e.key ~ ")" if changed('/price') else "")) | tojson }}, "item": {{ e.data | tojson }}}{% if not loop.last %},{% endif %}{% endfor %}]}"#,
        )]);
        let events: Vec<serde_json::Value> = (0..1000).map(|_| updated()).collect();
        let out = e.render("t", &Context::batch(&events, B)).unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["blocks"].as_array().unwrap().len(), 1000);
    }

    #[test]
    fn batches_see_events() {
        let e = engine(&[("t", "{{ events | length }} {{ events[1].key }}")]);
        let ctx = Context::batch(&[updated(), json!({"key": "9"})], B);
        assert_eq!(e.render("t", &ctx).unwrap(), "2 9");
    }
}

/// Hostile templates and events: whatever the text of a template or the shape of an event,
/// compiling, rendering, testing and the chat summary give a value or an error, never a panic.
#[cfg(test)]
mod hostile {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value as J;

    fn json() -> impl Strategy<Value = J> {
        let leaf = prop_oneof![
            Just(J::Null),
            any::<bool>().prop_map(J::Bool),
            any::<i64>().prop_map(J::from),
            any::<u64>().prop_map(J::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(J::Null, J::Number)),
            "[a-z/~0-9 ]{0,8}".prop_map(J::String),
            Just(J::String("/price".into())),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(J::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("path".to_string()),
                        Just("data".to_string()),
                        Just("previous".to_string()),
                        Just("changes".to_string()),
                        Just("type".to_string()),
                        "[a-z]{1,4}"
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| J::Object(m.into_iter().collect())),
            ]
        })
    }

    const PIECES: [&str; 27] = [
        "{{",
        "}}",
        "{%",
        "%}",
        "event",
        ".data",
        ".previous",
        "[0]",
        "|tojson",
        "|escape_chat('discord')",
        "|safe",
        "'<!here> [x](y) @all'",
        "|length",
        " * ",
        "99999999",
        "range(",
        ")",
        "for x in ",
        "endfor",
        "if ",
        "endif",
        "changed(",
        "'/a'",
        " ~ ",
        "events",
        "macro m()",
        "m()",
    ];

    fn template() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(PIECES.to_vec()), 0..14)
            .prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
        #[test]
        fn nothing_panics(src in template(), event in json(), data in json()) {
            let b = BridgeInfo { name: "b", description: None };
            let event = match event {
                J::Object(mut m) => {
                    m.insert("data".into(), data);
                    J::Object(m)
                }
                other => other,
            };
            let mut builder = Builder::new();
            let compiled = builder.template("t", &src).is_ok();
            let to = Receiver::ALL[src.len() % Receiver::ALL.len()];
            let message = builder.message("m", &src, to).is_ok();
            let _ = builder.rule(&src);
            let engine = builder.build();
            let ctx = Context::event(&event, b);
            if compiled {
                let _ = engine.render("t", &ctx);
                let _ = engine.render("t", &Context::batch(std::slice::from_ref(&event), b));
            }
            if message {
                let _ = engine.render("m", &ctx);
            }
            let _ = engine.test(&src, &ctx);
            let _ = engine.test("changed('/a') and event.data.price < event.previous.price", &ctx);
            let line = crate::deliver::format::summary(&event);
            let limit = crate::deliver::format::Limit::Bytes(10);
            let _ = crate::deliver::format::join(&[line.clone(), line], limit);
        }
    }
}
