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
    pub sinks: Vec<Sink>,
    /// The compiled templates of the sinks (`sinks[0].template`, `sinks[0].message`) and the
    /// environment the rules run in (docs/configuration.md#templates).
    pub render: crate::render::Engine,
    /// A hash of everything that gives stored state its meaning (name, source, items). When it
    /// changes, the next poll re-baselines instead of reporting a flood of false changes.
    pub fingerprint: String,
    /// Every value interpolation brought in: redacted wherever text reaches a log or an error.
    pub secrets: Vec<String>,
    /// A hash of the file's text and of every value interpolated into it: a reload restarts
    /// the bridge only when this changes.
    pub revision: String,
}

#[derive(Debug, Clone)]
pub struct Source {
    pub url: Url,
    pub method: Method,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Option<serde_json::Value>,
    pub timeout: Duration,
    pub max_body: u64,
    pub conditional: bool,
    pub paginate: Option<Paginate>,
    // The larger parts most bridges leave out are boxed: a bridge without them holds a
    // pointer each, not their size (docs/scaling.md#memory).
    /// An incremental listing: asks only for what is new since the last poll.
    pub cursor: Option<Box<Cursor>>,
    /// How the body is written; anything but JSON is converted to JSON first
    /// (docs/configuration.md#formats).
    pub format: Format,
    /// How to log in (docs/configuration.md#logging-in, `login.rs`), and the proxy for this
    /// source's requests.
    pub auth: Option<Box<Auth>>,
    pub proxy: Option<Url>,
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
    pub include: Vec<JsonPath>,
    pub exclude: Vec<JsonPath>,
}

#[derive(Debug, Clone)]
pub struct Emit {
    pub created: bool,
    pub updated: bool,
    pub deleted: bool,
    pub first_poll: FirstPoll,
    pub after_missing: u32,
    pub max_fraction: f64,
    /// A rule a change must pass to become an event (docs/configuration.md#rules); checked at
    /// load.
    pub when: Option<RuleRef>,
    /// `emit.failures.after`: `bridge.failing` after this many failed polls in a row.
    pub failures_after: Option<u32>,
    /// `emit.settle`: how long a change must hold before it is emitted.
    pub settle: Option<crate::diff::settle::Rule>,
    /// `emit.quiet`: `bridge.quiet` after this long without a change.
    pub quiet: Option<std::time::Duration>,
    /// `emit.shape`: what a drift of the items' shape does.
    pub shape: crate::config::raw::ShapeMode,
}

#[derive(Debug, Clone)]
pub struct Sink {
    /// Stable name of this sink inside its bridge (a hash of its URL as written): keys its
    /// outbox queue, so reordering sinks in the file keeps their queues.
    pub id: String,
    pub target: Target,
    /// How logs, status, errors and the admin API name this sink: its origin only (the path
    /// and query of a chat webhook are its credential), with any interpolated part masked.
    pub shown: String,
    /// Signing keys, newest first.
    pub secrets: Vec<Vec<u8>>,
    pub signature: SignatureKind,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    /// The default schedule is shared by every sink that does not give one.
    pub retry: std::borrow::Cow<'static, [Duration]>,
    pub format: SinkFormat,
    /// The `content-type` of a `template` body.
    pub content_type: String,
    /// The sink's `template` or `message` in [`Bridge::render`], when given.
    pub template: Option<TemplateRef>,
    /// A chat preset's `mentions: true`: the mentions its `message` writes notify.
    pub mentions: bool,
    /// The event types this sink receives; None: all.
    pub events: Option<Vec<SinkEvent>>,
    /// A rule an event must pass to go to this sink.
    pub when: Option<RuleRef>,
    pub batch: Option<Batch>,
    /// The bridge's templates and description, for rendering at delivery.
    pub render: crate::render::Engine,
    pub description: Option<String>,
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
