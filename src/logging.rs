//! Log set-up. Logs go to stderr (or straight to journald); stdout belongs to `console` sinks
//! and `poll` output.
//!
//! Each bridge task and sink task runs in a span carrying `bridge` (and `sink`), so every line
//! it logs names them without writing them by hand. The formats here print those span fields
//! as if the event had them: right after the message in text (`INFO poll bridge=x status=ok`,
//! not tracing's `bridge{bridge=x}: poll status=ok`), at the top level in JSON; operators'
//! greps and queries keep working. journald gets them as native fields (`BRIDGE=`) from
//! tracing-journald itself.

use std::fmt;
use std::io::IsTerminal;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::VisitOutput;
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Under systemd (`JOURNAL_STREAM` set): straight to journald with native fields
    /// (`BRIDGE=`, `EVENT_ID=`, `SINK=`), or lines without a timestamp of our own if the
    /// journal socket cannot be reached; coloured text on a terminal; plain text otherwise.
    Auto,
    Pretty,
    Json,
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

pub fn init(format: LogFormat) {
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    if format == LogFormat::Auto && under_journald {
        // Field names become journal fields as they are, upper-cased: `bridge` -> `BRIDGE`,
        // so `journalctl -u pollhook BRIDGE=tokio-releases` shows one bridge. Span fields
        // too: the crate writes them unprefixed (with the field prefix off) before the
        // event's own.
        if let Ok(layer) = tracing_journald::layer() {
            // INFO is journald's "info" (6), not the crate's default "notice" (5).
            let priorities = tracing_journald::PriorityMappings {
                info: tracing_journald::Priority::Informational,
                debug: tracing_journald::Priority::Debug,
                ..tracing_journald::PriorityMappings::new()
            };
            let layer = layer
                .with_field_prefix(None)
                .with_priority_mappings(priorities)
                .with_syslog_identifier("pollhook".to_string());
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(layer)
                .try_init();
            return;
        }
    }
    let tty = std::io::stderr().is_terminal();
    let logs = tracing_subscriber::registry()
        .with(filter())
        .with(SpanFieldsLayer);
    let line = match format {
        LogFormat::Json => Line::Json,
        // journald adds its own timestamp.
        LogFormat::Auto if under_journald => Line::Text { time: false },
        LogFormat::Pretty | LogFormat::Auto => Line::Text { time: true },
    };
    let ansi = tty && !(format == LogFormat::Auto && under_journald);
    let _ = logs.with(layer(std::io::stderr, line, ansi)).try_init();
}

/// `1 item`, `12 items`: a count in a log message.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The span a bridge's polls log in: its poll task (and that task's supervisor), a poll
/// asked for through the admin API, and `pollhook poll`. At ERROR, so that no log filter
/// turns its field off.
pub fn bridge_span(bridge: &str) -> tracing::Span {
    tracing::error_span!("bridge", bridge = %bridge)
}

/// The span a deliverer logs in, as `deliver::run_sink` opens it: `sink` as shown (its
/// origin), never the URL, whose path may be its credential. A root span: a deliverer is
/// started from inside whatever woke it (a poll, in its bridge's span), and names its bridge
/// once.
pub fn sink_span(bridge: &str, sink: &str) -> tracing::Span {
    tracing::error_span!(parent: None, "sink", bridge = %bridge, sink = %sink)
}

/// The layer that writes `line`s to `writer` (in colour with `ansi`, for text).
fn layer<S, W>(writer: W, line: Line, ansi: bool) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi && matches!(line, Line::Text { .. }))
        .fmt_fields(Unwritten)
        .event_format(line)
}

/// How the fmt layer writes a span's fields when the span opens: not at all. [`Line`] prints
/// them from [`SpanFields`], so the text the fmt layer would keep for every span (one for
/// every poll) would be made for nothing.
struct Unwritten;

impl<'w> FormatFields<'w> for Unwritten {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _: Writer<'w>,
        _: R,
    ) -> fmt::Result {
        Ok(())
    }
}

/// Keeps each span's fields as recorded, for [`layer`] to print (it must be in the subscriber
/// below that layer).
struct SpanFieldsLayer;

/// Fields as recorded, in order.
type Fields = Vec<(Field, Value)>;

/// A span's fields.
struct SpanFields(Fields);

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for SpanFieldsLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Vec::new();
        attrs.record(&mut Capture(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut ext = span.extensions_mut();
        if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
            let mut new = Vec::new();
            values.record(&mut Capture(&mut new));
            for (f, v) in new {
                fields.retain(|(old, _)| old.name() != f.name());
                fields.push((f, v));
            }
        }
    }
}

/// A field's value as recorded; replayed into another visitor, it is recorded the same way.
#[derive(Debug, Clone)]
enum Value {
    Str(String),
    /// `Debug` (and `%`, `Display`) values, as text.
    Shown(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

impl Value {
    fn replay(&self, field: &Field, to: &mut dyn Visit) {
        match self {
            Value::Str(s) => to.record_str(field, s),
            Value::Shown(s) => to.record_debug(field, &format_args!("{s}")),
            Value::I64(n) => to.record_i64(field, *n),
            Value::U64(n) => to.record_u64(field, *n),
            Value::F64(n) => to.record_f64(field, *n),
            Value::Bool(b) => to.record_bool(field, *b),
        }
    }
}

impl serde::Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Str(v) | Value::Shown(v) => s.serialize_str(v),
            Value::I64(n) => s.serialize_i64(*n),
            Value::U64(n) => s.serialize_u64(*n),
            Value::F64(n) => s.serialize_f64(*n),
            Value::Bool(b) => s.serialize_bool(*b),
        }
    }
}

struct Capture<'a>(&'a mut Fields);

impl Visit for Capture<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .push((field.clone(), Value::Shown(format!("{value:?}"))));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.clone(), Value::Str(value.to_string())));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.clone(), Value::I64(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.clone(), Value::U64(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.clone(), Value::F64(value)));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.clone(), Value::Bool(value)));
    }
}

/// An event's fields with those of the spans it is in placed as if the event had them: after
/// its message (first, if it has none), outermost span first, each name once (an event field
/// a span already gave is left out).
fn fields<S, N>(event: &Event<'_>, ctx: &FmtContext<'_, S, N>) -> Fields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    let mut spans: Fields = Vec::new();
    for span in ctx.event_scope().into_iter().flat_map(|s| s.from_root()) {
        if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
            for (f, v) in fields {
                if !spans.iter().any(|(seen, _)| seen.name() == f.name()) {
                    spans.push((f.clone(), v.clone()));
                }
            }
        }
    }
    let mut own = Vec::new();
    event.record(&mut Capture(&mut own));
    own.retain(|(f, _)| !spans.iter().any(|(s, _)| s.name() == f.name()));
    let at = usize::from(own.first().is_some_and(|(f, _)| f.name() == "message"));
    own.splice(at..at, spans);
    own
}

/// How a line is written.
#[derive(Debug, Clone, Copy)]
enum Line {
    /// `[time] LEVEL message span-fields event-fields`: tracing-subscriber's full format
    /// (same time, level and field rendering, colours on a terminal) with span fields among
    /// the event's rather than as `name{fields}:` in front.
    Text { time: bool },
    /// One JSON object a line, `timestamp`, `level`, `message`, then span and event fields:
    /// tracing-subscriber's JSON with `flatten_event(true)` and no target, span fields at the
    /// top level too rather than under `span`/`spans`.
    Json,
}

impl<S, N> FormatEvent<S, N> for Line
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        let fields = fields(event, ctx);
        match self {
            Line::Text { time } => write_text(&mut w, *time, level, fields)?,
            Line::Json => write_json(&mut w, level, fields)?,
        }
        writeln!(w)
    }
}

fn write_text(w: &mut Writer<'_>, time: bool, level: Level, fields: Fields) -> fmt::Result {
    const DIM: &str = "\x1b[2m";
    const RESET: &str = "\x1b[0m";
    let ansi = w.has_ansi_escapes();
    if time {
        w.write_str(if ansi { DIM } else { "" })?;
        if SystemTime.format_time(w).is_err() {
            w.write_str("<unknown time>")?;
        }
        write!(w, "{} ", if ansi { RESET } else { "" })?;
    }
    let (name, colour) = match level {
        Level::TRACE => ("TRACE", "35"),
        Level::DEBUG => ("DEBUG", "34"),
        Level::INFO => (" INFO", "32"),
        Level::WARN => (" WARN", "33"),
        Level::ERROR => ("ERROR", "31"),
    };
    if ansi {
        write!(w, "\x1b[{colour}m{name}{RESET} ")?;
    } else {
        write!(w, "{name} ")?;
    }
    let mut out = DefaultVisitor::new(w.by_ref(), true);
    for (f, v) in fields {
        v.replay(&f, &mut out);
    }
    out.finish()
}

fn write_json(w: &mut Writer<'_>, level: Level, fields: Fields) -> fmt::Result {
    use serde::ser::{SerializeMap, Serializer};
    let mut timestamp = String::new();
    SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
    let mut line = Vec::new();
    let mut ser = serde_json::Serializer::new(&mut line);
    let mut map = ser.serialize_map(None).map_err(|_| fmt::Error)?;
    let mut entries = vec![
        ("timestamp", Value::Str(timestamp)),
        ("level", Value::Str(level.to_string())),
    ];
    entries.extend(fields.into_iter().map(|(f, v)| (f.name(), v)));
    for (k, v) in &entries {
        map.serialize_entry(k, v).map_err(|_| fmt::Error)?;
    }
    map.end().map_err(|_| fmt::Error)?;
    w.write_str(std::str::from_utf8(&line).map_err(|_| fmt::Error)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// What a format writes, line by line.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    /// The lines `log` writes through `layer`.
    fn logged<L>(layer: impl FnOnce(Lines) -> L, log: impl FnOnce()) -> Vec<String>
    where
        L: Layer<tracing_subscriber::layer::Layered<SpanFieldsLayer, tracing_subscriber::Registry>>
            + Send
            + Sync
            + 'static,
    {
        let lines = Lines::default();
        let subscriber = tracing_subscriber::registry()
            .with(SpanFieldsLayer)
            .with(layer(lines.clone()));
        tracing::subscriber::with_default(subscriber, log);
        lines.text().lines().map(str::to_string).collect()
    }

    fn in_a_bridge_task() {
        let name = "deep".to_string();
        let span =
            tracing::error_span!("bridge", bridge = %name, sink = %"https://hook.example/***");
        let _in = span.enter();
        tracing::warn!(status = %"failed", reason = %"not_json", duration_ms = 12u64, "poll failed: {}", "no");
        // A field written by hand as well is printed once.
        tracing::warn!(bridge = %name, header = %"retry-after", "ignored a header");
    }

    #[test]
    fn text_prints_span_fields_after_the_message_once() {
        let lines = logged(
            |w| layer(move || w.clone(), Line::Text { time: false }, false),
            in_a_bridge_task,
        );
        assert_eq!(
            lines,
            [
                " WARN poll failed: no bridge=deep sink=https://hook.example/*** status=failed reason=not_json duration_ms=12",
                " WARN ignored a header bridge=deep sink=https://hook.example/*** header=retry-after",
            ]
        );
        let timed = logged(
            |w| layer(move || w.clone(), Line::Text { time: true }, false),
            in_a_bridge_task,
        );
        // `2026-11-29T07:30:09.123456Z  WARN poll failed: no bridge=deep …`
        let (time, rest) = timed[0].split_once(' ').unwrap();
        assert!(time.ends_with('Z') && time.contains('T'), "{time}");
        assert!(
            rest.starts_with(" WARN poll failed: no bridge=deep sink="),
            "{rest}"
        );
        assert_eq!(timed[1].matches("bridge=").count(), 1, "{}", timed[1]);
    }

    #[test]
    fn text_outside_spans_and_nested_spans() {
        let lines = logged(
            |w| layer(move || w.clone(), Line::Text { time: false }, false),
            || {
                tracing::info!(bridges = 2, "pollhook started");
                let outer = tracing::error_span!("bridge", bridge = "a b");
                let _o = outer.enter();
                let inner = tracing::error_span!("sink", bridge = "x", sink = 3u64);
                let _i = inner.enter();
                tracing::error!(flag = true, "x");
            },
        );
        assert_eq!(
            lines,
            [
                " INFO pollhook started bridges=2",
                "ERROR x bridge=\"a b\" sink=3 flag=true",
            ]
        );
    }

    fn outside_spans() {
        tracing::info!(bridges = 2, dir = %"/etc/pollhook", "pollhook started");
        tracing::warn!(
            name = "quoted",
            n = -3i64,
            x = 1.5f64,
            ok = false,
            "a \x1b[31m b"
        );
        tracing::error!("stopped");
        tracing::debug!(only = 1u64);
    }

    #[test]
    fn outside_spans_the_formats_are_tracing_subscribers() {
        for ansi in [false, true] {
            let ours = logged(
                |w| layer(move || w.clone(), Line::Text { time: false }, ansi),
                outside_spans,
            );
            let theirs = logged(
                |w| {
                    tracing_subscriber::fmt::layer()
                        .with_writer(move || w.clone())
                        .with_ansi(ansi)
                        .with_target(false)
                        .without_time()
                },
                outside_spans,
            );
            assert_eq!(ours, theirs);
            assert_eq!(ours.len(), 4);
        }
        let untimed = |lines: Vec<String>| -> Vec<serde_json::Value> {
            let mut v: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            for line in &mut v {
                assert!(line["timestamp"].as_str().unwrap().ends_with('Z'));
                line.as_object_mut().unwrap().remove("timestamp");
            }
            v
        };
        let ours = untimed(logged(
            |w| layer(move || w.clone(), Line::Json, false),
            outside_spans,
        ));
        let theirs = untimed(logged(
            |w| {
                tracing_subscriber::fmt::layer()
                    .with_writer(move || w.clone())
                    .with_target(false)
                    .json()
                    .flatten_event(true)
            },
            outside_spans,
        ));
        assert_eq!(ours, theirs);
        assert_eq!(ours.len(), 4);
    }

    #[test]
    fn json_puts_span_fields_at_the_top_level() {
        let lines = logged(
            |w| layer(move || w.clone(), Line::Json, false),
            in_a_bridge_task,
        );
        let v: Vec<serde_json::Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["level"], "WARN");
        assert!(v[0]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(v[0]["message"], "poll failed: no");
        assert_eq!(v[0]["bridge"], "deep");
        assert_eq!(v[0]["sink"], "https://hook.example/***");
        assert_eq!(v[0]["status"], "failed");
        assert_eq!(v[0]["duration_ms"], 12);
        assert!(
            v[0].get("span").is_none()
                && v[0].get("spans").is_none()
                && v[0].get("fields").is_none()
        );
        // Once, not twice, when the event names the bridge too.
        assert_eq!(lines[1].matches("\"bridge\"").count(), 1, "{}", lines[1]);
        assert_eq!(v[1]["header"], "retry-after");
    }
}
