//! What a bridge is once checked: the validated types the rest of pollhook reads. Every URL,
//! duration, schedule and JSONPath in them is already parsed and every `${…}` resolved, so
//! nothing downstream can fail on configuration.

use super::login::Auth;
use super::templates::{RuleRef, TemplateRef};
use crate::config::raw::{FirstPoll, Method, SignatureKind, SinkEvent, SinkFormat};
use crate::formats::Format;
use crate::jsonpath::Path as JsonPath;
use crate::schedule::Schedule;
use reqwest::header::{HeaderName, HeaderValue};
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub description: Option<String>,
    /// The file it came from, for messages.
    pub file: PathBuf,
    pub schedule: Schedule,
    pub jitter: Option<Duration>,
    pub source: Source,
    pub items: Items,
    pub emit: Emit,
    /// Shared with every other bridge that has the same sink, when it has no [`SinkMore`]
    /// (thousands of bridges may send to one receiver).
    pub sinks: Vec<std::sync::Arc<Sink>>,
    /// The compiled templates of the sinks (`sinks[0].template`, `sinks[0].message`) and the
    /// environment the rules run in (docs/configuration.md#templates).
    pub render: crate::render::Engine,
    /// A hash of everything that gives stored state its meaning (name, source, items), in hex
    /// as the store keeps it. When it changes, the next poll re-baselines instead of reporting
    /// a flood of false changes.
    pub fingerprint: Short<24>,
    /// Every value interpolation brought in: redacted wherever text reaches a log or an error.
    pub secrets: Vec<String>,
    /// A hash of the file's text and of every value interpolated into it: a reload restarts
    /// the bridge only when this changes. Compared, never shown.
    pub revision: [u8; 12],
}

#[derive(Debug, Clone)]
pub struct Source {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    // The larger parts most bridges leave out are boxed: a bridge without them holds a
    // pointer each, not their size (docs/scaling.md#memory).
    pub body: Option<Box<serde_json::Value>>,
    pub timeout: Duration,
    pub max_body: u64,
    pub conditional: bool,
    pub paginate: Option<Box<Paginate>>,
    /// An incremental listing: asks only for what is new since the last poll.
    pub cursor: Option<Box<Cursor>>,
    /// How the body is written; anything but JSON is converted to JSON first
    /// (docs/configuration.md#formats).
    pub format: Format,
    /// How to log in (docs/configuration.md#logging-in, `login.rs`), and the proxy for this
    /// source's requests.
    pub auth: Option<Box<Auth>>,
    pub proxy: Option<Box<Url>>,
}

#[derive(Debug, Clone)]
pub struct Paginate {
    pub next: Next,
    pub max_pages: u32,
    /// A boolean in each page's body: false ends the listing, whatever `next` says.
    pub has_more: Option<JsonPath>,
}

/// `source.cursor` (docs/configuration.md#cursor): the largest `from` value of the items seen is
/// sent with the next poll, which then lists only what is new or changed since.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub to: CursorTo,
    /// In each item: the value the next cursor is the largest of.
    pub from: JsonPath,
    /// Sent by the first poll; without, the first poll sends no cursor.
    pub initial: Option<serde_json::Value>,
    /// Items not returned for this long are forgotten (silently). None: kept for ever.
    pub keep: Option<Duration>,
}

/// Where a cursor (or a next-page value) goes in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CursorTo {
    /// A query parameter of the URL.
    Param(String),
    /// `variables.NAME` in the JSON body (GraphQL).
    Variable(String),
}

#[derive(Debug, Clone)]
pub enum Next {
    /// RFC 8288 `Link: <…>; rel="next"`.
    Link,
    /// The next page's URL, relative or absolute, at this path of the body.
    Url(JsonPath),
    /// A cursor at `from` in the body, sent as query parameter `param`.
    Param { param: String, from: JsonPath },
    /// A cursor at `from` in the body, sent as `variables.NAME` in the JSON body (GraphQL).
    Variable { name: String, from: JsonPath },
    /// Page numbers `start`, `start + 1`, … as query parameter `param`, until an empty page.
    Page { param: String, start: u64 },
    /// Offsets as query parameter `param`: `start`, then on by the items of each page, until
    /// an empty page.
    Offset { param: String, start: u64 },
}

#[derive(Debug, Clone)]
pub struct Items {
    pub select: JsonPath,
    /// None: document mode, the selection as a whole is one item with key `$`.
    pub key: Option<JsonPath>,
    pub include: Box<[JsonPath]>,
    pub exclude: Box<[JsonPath]>,
}

#[derive(Debug, Clone)]
pub struct Emit {
    pub created: bool,
    pub updated: bool,
    pub deleted: bool,
    pub first_poll: FirstPoll,
    pub after_missing: u32,
    pub max_fraction: f64,
    /// `emit.shape`: what a drift of the items' shape does.
    pub shape: crate::config::raw::ShapeMode,
    /// What most bridges leave out, boxed (docs/scaling.md#memory); read through the methods
    /// below.
    pub more: Option<Box<EmitMore>>,
}

/// The parts of `emit` most bridges leave out.
#[derive(Debug, Clone, Default)]
pub struct EmitMore {
    /// A rule a change must pass to become an event (docs/configuration.md#rules); checked at
    /// load.
    pub when: Option<RuleRef>,
    /// `emit.failures.after`: `bridge.failing` after this many failed polls in a row.
    pub failures_after: Option<u32>,
    /// `emit.settle`: how long a change must hold before it is emitted.
    pub settle: Option<crate::diff::settle::Rule>,
    /// `emit.quiet`: `bridge.quiet` after this long without a change.
    pub quiet: Option<std::time::Duration>,
}

impl Emit {
    /// A rule a change must pass to become an event (docs/configuration.md#rules).
    pub fn when(&self) -> Option<&RuleRef> {
        self.more.as_ref()?.when.as_ref()
    }
    /// `emit.failures.after`: `bridge.failing` after this many failed polls in a row.
    pub fn failures_after(&self) -> Option<u32> {
        self.more.as_ref()?.failures_after
    }
    /// `emit.settle`: how long a change must hold before it is emitted.
    pub fn settle(&self) -> Option<crate::diff::settle::Rule> {
        self.more.as_ref()?.settle
    }
    /// `emit.quiet`: `bridge.quiet` after this long without a change.
    pub fn quiet(&self) -> Option<Duration> {
        self.more.as_ref()?.quiet
    }
}

#[derive(Debug, Clone)]
pub struct Sink {
    /// Stable name of this sink inside its bridge (a hash of its URL as written): keys its
    /// outbox queue, so reordering sinks in the file keeps their queues.
    pub id: Short<8>,
    pub target: Target,
    /// How logs, status, errors and the admin API name this sink: its origin only (the path
    /// and query of a chat webhook are its credential), with any interpolated part masked.
    pub shown: String,
    /// Signing keys, newest first.
    pub secrets: Vec<Vec<u8>>,
    pub signature: SignatureKind,
    pub format: SinkFormat,
    /// A chat preset's `mentions: true`: the mentions its `message` writes notify.
    pub mentions: bool,
    pub timeout: Duration,
    /// The default schedule is shared by every sink that does not give one.
    pub retry: std::borrow::Cow<'static, [Duration]>,
    /// What most sinks leave out, boxed: a plain sink holds one pointer for it
    /// (docs/scaling.md#memory). Read through the methods below.
    pub more: Option<Box<SinkMore>>,
}

/// The parts of a sink most leave out: its headers, a template or rule, the events it takes
/// and its digests.
#[derive(Debug, Clone)]
pub struct SinkMore {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The `content-type` of a `template` body.
    pub content_type: String,
    /// The sink's `template` or `message` in [`Sink::render`], when given.
    pub template: Option<TemplateRef>,
    /// The event types this sink receives; None: all.
    pub events: Option<Vec<SinkEvent>>,
    /// A rule an event must pass to go to this sink.
    pub when: Option<RuleRef>,
    pub batch: Option<Batch>,
    /// The bridge's templates and description, for rendering at delivery.
    pub render: crate::render::Engine,
    pub description: Option<String>,
}

/// The `content-type` of a sink's body unless a template says otherwise.
pub const JSON: &str = "application/json";

impl Sink {
    /// The sink's own headers.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        self.more.as_ref().map_or(&[], |m| &m.headers)
    }
    /// The `content-type` of a `template` body.
    pub fn content_type(&self) -> &str {
        self.more.as_ref().map_or(JSON, |m| &m.content_type)
    }
    /// The sink's `template` or `message` in [`Sink::render`], when given.
    pub fn template(&self) -> Option<&TemplateRef> {
        self.more.as_ref()?.template.as_ref()
    }
    /// The event types this sink receives; None: all.
    pub fn events(&self) -> Option<&[SinkEvent]> {
        self.more.as_ref()?.events.as_deref()
    }
    /// A rule an event must pass to go to this sink.
    pub fn when(&self) -> Option<&RuleRef> {
        self.more.as_ref()?.when.as_ref()
    }
    pub fn batch(&self) -> Option<Batch> {
        self.more.as_ref()?.batch
    }
    /// The bridge's templates, for rendering at delivery (the shared empty set for a sink
    /// without a template or rule).
    pub fn render(&self) -> &crate::render::Engine {
        static NONE: std::sync::LazyLock<crate::render::Engine> =
            std::sync::LazyLock::new(crate::render::Engine::default);
        self.more.as_ref().map_or(&NONE, |m| &m.render)
    }
    /// The bridge's description, for rendering at delivery.
    pub fn description(&self) -> Option<&str> {
        self.more.as_ref()?.description.as_deref()
    }
}

/// A short ASCII text held inline (no allocation): a fingerprint in hex, a sink id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Short<const N: usize> {
    len: u8,
    text: [u8; N],
}

impl<const N: usize> Short<N> {
    /// The text, if it is ASCII and at most `N` bytes.
    pub fn new(s: &str) -> Option<Self> {
        let mut text = [0; N];
        text.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        let len = u8::try_from(s.len()).ok()?;
        s.is_ascii().then_some(Short { len, text })
    }
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.text[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl<const N: usize> Default for Short<N> {
    fn default() -> Self {
        Short {
            len: 0,
            text: [0; N],
        }
    }
}

impl<const N: usize> std::ops::Deref for Short<N> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> std::fmt::Display for Short<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> std::fmt::Debug for Short<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> PartialEq<str> for Short<N> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl<const N: usize> PartialEq<&str> for Short<N> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A digest: up to `max` events in one request, at most one request per `window`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Batch {
    pub max: usize,
    pub window: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Console,
    Http(Url),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Console => f.write_str("console"),
            Target::Http(u) => f.write_str(&crate::redact::origin(u)),
        }
    }
}

/// An idle bridge costs its definition (docs/scaling.md#memory): 100,000 of them must fit in a
/// few hundred MiB. These pin what a typical one holds, so a field added unboxed, or a part
/// most bridges leave out held inline again, fails here first.
#[cfg(test)]
mod lean {
    use super::*;

    const TYPICAL: &str = "schedule: {every: 60000ms}\nsource: {url: \"http://127.0.0.1:40629/e/0\"}\nitems: {select: \"$.items[*]\", key: \"$.id\"}\nsinks: [{url: \"http://127.0.0.1:39233/hook\", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}]\n";

    #[test]
    fn the_parts_of_a_definition_stay_small() {
        let sizes = [
            ("Bridge", size_of::<Bridge>(), 464),
            ("Source", size_of::<Source>(), 184),
            ("Items", size_of::<Items>(), 48),
            ("Emit", size_of::<Emit>(), 32),
            ("Sink", size_of::<Sink>(), 200),
            ("Schedule", size_of::<Schedule>(), 16),
        ];
        for (what, size, most) in sizes {
            assert!(size <= most, "{what} is {size} bytes, more than {most}");
        }
    }

    #[test]
    fn a_typical_bridge_allocates_no_part_it_leaves_out() {
        let b = crate::config::test_bridge("e0", TYPICAL);
        let s = &b.sinks[0];
        assert!(s.more.is_none() && b.emit.more.is_none());
        assert!(b.source.paginate.is_none() && b.source.body.is_none());
        assert!(b.source.proxy.is_none() && b.source.auth.is_none() && b.source.cursor.is_none());
        // No spare room in what lives as long as the bridge.
        assert_eq!((b.secrets.len(), b.secrets.capacity()), (2, 2));
        assert_eq!((s.secrets.len(), s.secrets.capacity()), (1, 1));
        assert_eq!(b.sinks.capacity(), 1);
        // What the boxed parts read as when absent.
        assert_eq!(
            (
                s.content_type(),
                s.headers().len(),
                s.batch(),
                s.description()
            ),
            (JSON, 0, None, None)
        );
        assert!(s.template().is_none() && s.when().is_none() && s.events().is_none());
        assert!(b.emit.when().is_none() && b.emit.quiet().is_none());
        assert_eq!((b.emit.settle(), b.emit.failures_after()), (None, None));
        // Held inline, read as text.
        assert_eq!(b.fingerprint.len(), 24);
        assert_eq!(s.id, "c60b8a6d");
    }

    #[test]
    fn a_sink_that_gives_more_keeps_it() {
        let yaml = TYPICAL.replace(
            "secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}",
            "signature: none, format: template, template: \"{{ bridge.description }}\", content_type: text/plain, events: [created], batch: {max: 5, window: 1m}, headers: {x-a: b}}",
        ).replace("schedule:", "description: hello\nschedule:");
        let b = crate::config::test_bridge("e0", &yaml);
        let s = &b.sinks[0];
        assert_eq!((s.content_type(), s.headers().len()), ("text/plain", 1));
        assert_eq!(
            s.events(),
            Some(&[crate::config::raw::SinkEvent::Created][..])
        );
        assert_eq!(s.batch().map(|b| b.max), Some(5));
        assert_eq!(s.description(), Some("hello"));
        let ctx = crate::render::Context::event(
            &serde_json::json!({}),
            crate::render::BridgeInfo {
                name: "e0",
                description: s.description(),
            },
        );
        assert_eq!(
            s.template().unwrap().render(s.render(), &ctx).unwrap(),
            "hello"
        );
    }

    #[test]
    fn bridges_with_the_same_sink_share_it() {
        let bridge = |name: &str, yaml: &str| {
            crate::config::test_bridge(name, &yaml.replace("/e/0", &format!("/{name}")))
        };
        let a = bridge("a", TYPICAL);
        let same = bridge("b", TYPICAL);
        assert!(std::sync::Arc::ptr_eq(&a.sinks[0], &same.sinks[0]));
        let key = TYPICAL.replace("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "another-secret");
        let timeout = TYPICAL.replace("/hook\"", "/hook\", timeout: 5s");
        let events = TYPICAL.replace("/hook\"", "/hook\", events: [created]");
        let others = [
            bridge("c", &key),
            bridge("d", &timeout),
            bridge("e", &events),
            bridge("f", &events),
        ];
        for o in &others {
            assert!(!std::sync::Arc::ptr_eq(&a.sinks[0], &o.sinks[0]));
        }
        // One with parts of its own (its bridge's templates) is never shared.
        assert!(!std::sync::Arc::ptr_eq(
            &others[2].sinks[0],
            &others[3].sinks[0]
        ));
        assert_eq!(others[1].sinks[0].timeout, Duration::from_secs(5));
    }

    #[test]
    fn short_text_is_ascii_and_fits() {
        assert_eq!(Short::<8>::new("console").unwrap().as_str(), "console");
        assert_eq!(Short::<8>::new("12345678").unwrap(), "12345678");
        assert!(Short::<8>::new("123456789").is_none());
        assert!(Short::<8>::new("é").is_none());
        assert_eq!(format!("{:?}", Short::<8>::new("ab").unwrap()), "\"ab\"");
    }
}
