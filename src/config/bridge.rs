//! The validated bridge: every URL, duration, schedule and JSONPath already parsed and every
//! `${…}` resolved, so nothing downstream can fail on configuration.

use super::interpolate::{Env, Interpolated, interpolate};
use super::locate::Locator;
use super::raw::{
    self, FirstPoll, Method, RawBridge, RawFormat, RawNext, RawSecret, SignatureKind, SinkEvent,
    SinkFormat,
};
use super::{Problem, Problems};
use crate::formats::{FEED_KEY, FEED_SELECT, Format};
use crate::jsonpath::Path as JsonPath;
use crate::schedule::Schedule;
use reqwest::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use url::Url;

mod login;
pub use login::{Auth, AuthKind, Login, OAuth2, Secret};

/// The most pages one poll may fetch (`source.paginate.max_pages`): a million pages of a
/// 30 s time-out each is a poll that never ends in practice, and would hold the shutdown and
/// the watchdog's idea of a stuck poll with it. Ten thousand pages of a hundred items is a
/// million items.
pub const MAX_PAGES: u32 = 10_000;

/// The sink retry schedule when a bridge does not give one (docs/configuration.md#sinks).
pub const DEFAULT_RETRY: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

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
    /// An incremental listing: asks only for what is new since the last poll.
    pub cursor: Option<Cursor>,
    /// How the body is written; anything but JSON is converted to JSON first
    /// (docs/configuration.md#formats).
    pub format: Format,
    /// How to log in (docs/configuration.md#logging-in, `login.rs`), and the proxy for this
    /// source's requests.
    pub auth: Option<Auth>,
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
    /// A rule a change must pass to become an event (docs/configuration.md#rules); compiled at
    /// load.
    pub when: Option<String>,
    /// `emit.failures.after`: `bridge.failing` after this many failed polls in a row.
    pub failures_after: Option<u32>,
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
    pub retry: Vec<Duration>,
    pub format: SinkFormat,
    /// The `content-type` of a `template` body.
    pub content_type: String,
    /// The name in [`Bridge::render`] of the sink's `template` or `message`, when given.
    pub template: Option<String>,
    /// A chat preset's `mentions: true`: the mentions its `message` writes notify.
    pub mentions: bool,
    /// The event types this sink receives; None: all.
    pub events: Option<Vec<SinkEvent>>,
    /// A rule an event must pass to go to this sink.
    pub when: Option<String>,
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

/// Checks one parsed file, collecting every problem with its position.
pub(super) struct Validator<'a> {
    file: &'a Path,
    loc: &'a Locator,
    env: &'a Env,
    pub problems: Problems,
    secrets: Vec<String>,
    /// Every secret met, kept after `secrets` goes into the bridge.
    secrets_seen: Vec<String>,
    templates: crate::render::Builder,
}

impl<'a> Validator<'a> {
    pub fn new(file: &'a Path, loc: &'a Locator, env: &'a Env) -> Self {
        Validator {
            file,
            loc,
            env,
            problems: Problems::default(),
            secrets: Vec::new(),
            secrets_seen: Vec::new(),
            templates: crate::render::Builder::new(),
        }
    }

    /// A template or rule as written (never interpolated: `${` means nothing to MiniJinja,
    /// and a secret in a body belongs in a header); a syntax error is placed inside the text.
    fn template(&mut self, path: &str, source: &str, rule: bool) -> Option<String> {
        let checked = if rule {
            self.templates.rule(source)
        } else {
            self.templates.template(path, source)
        };
        let kept = if rule { source } else { path };
        self.checked(path, checked, kept.to_string())
    }

    /// `kept` when a template or rule at `path` compiled, else None and the problem recorded
    /// at its place inside the text.
    fn checked(
        &mut self,
        path: &str,
        checked: Result<(), crate::render::Located>,
        kept: String,
    ) -> Option<String> {
        match checked {
            Ok(()) => Some(kept),
            Err(e) => {
                self.problems.push(Problem {
                    file: self.file.to_path_buf(),
                    pos: self.loc.inside(path, e.line, e.column),
                    message: format!("{path}: {}", e.message),
                });
                None
            }
        }
    }

    fn err(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            pos: self.loc.value(path),
            message: message.into(),
        });
    }

    /// Interpolates a string; on failure records the problem at `path` and gives None.
    fn text(&mut self, path: &str, s: &str) -> Option<String> {
        self.value(path, s).map(|i| i.value)
    }

    /// A query parameter's or a GraphQL variable's name: text, not empty.
    fn param_name(&mut self, path: &str, s: &str) -> Option<String> {
        let name = self.text(path, s)?;
        if name.is_empty() {
            self.err(path, format!("{path}: give a name, not an empty string"));
            return None;
        }
        Some(name)
    }

    /// Like [`Self::text`], also giving how the value may be quoted in a message. A value
    /// that came (even in part) from `${…}` is quoted with those parts as `***`, and a parser's
    /// own explanation is left out, since it may quote a piece of it
    /// (docs/configuration.md#secrets).
    fn value(&mut self, path: &str, s: &str) -> Option<Interpolated> {
        match interpolate(s, self.env) {
            Ok(i) => {
                self.secrets.extend(i.secrets.iter().cloned());
                Some(i)
            }
            Err(e) => {
                self.err(path, format!("{path}: {e}"));
                None
            }
        }
    }

    fn duration(&mut self, path: &str, s: &str, min: Duration, max: Duration) -> Option<Duration> {
        let i = self.value(path, s)?;
        let shown = &i.shown;
        match humantime::parse_duration(i.value.trim()) {
            Ok(d) if d < min || d > max => {
                self.err(
                    path,
                    format!(
                        "{path}: `{shown}` is out of range ({} .. {})",
                        humantime::format_duration(min),
                        humantime::format_duration(max)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                let why = detail(&i, e);
                self.err(
                    path,
                    format!(
                        "{path}: bad duration `{shown}`{why}; write e.g. 500ms, 30s, 5m, 2h, 7d"
                    ),
                );
                None
            }
        }
    }

    fn jsonpath(&mut self, path: &str, s: &str) -> Option<JsonPath> {
        let i = self.value(path, s)?;
        match JsonPath::parse(&i.value) {
            Ok(p) => Some(p),
            Err(e) => {
                let shown = &i.shown;
                let why = if i.interpolated() {
                    String::new()
                } else {
                    format!(": {e}")
                };
                self.err(
                    path,
                    format!("{path}: JSONPath `{shown}` does not parse{why}"),
                );
                None
            }
        }
    }

    fn headers(
        &mut self,
        path: &str,
        raw: &std::collections::BTreeMap<String, String>,
    ) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = Vec::new();
        for (k, v) in raw {
            let p = format!("{path}.{k}");
            let Some(v) = self.text(&p, v) else { continue };
            match (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) {
                (Ok(name), Ok(mut value)) => {
                    if crate::redact::is_secret_header(&name) {
                        value.set_sensitive(true);
                        self.secrets.push(v.clone());
                    }
                    out.push((name, value))
                }
                (Err(_), _) => self.err(&p, format!("{path}: `{k}` is not a valid header name")),
                (_, Err(_)) => {
                    self.err(&p, format!("{path}.{k}: value is not a valid header value"))
                }
            }
        }
        out
    }

    fn url(&mut self, path: &str, s: &str) -> Option<Url> {
        let i = self.value(path, s)?;
        match Url::parse(&i.value) {
            Ok(u) if u.scheme() == "http" || u.scheme() == "https" => Some(u),
            Ok(_) if i.interpolated() => {
                self.err(
                    path,
                    format!("{path}: `{}` is not an http or https URL", i.shown),
                );
                None
            }
            Ok(u) => {
                self.err(
                    path,
                    format!("{path}: scheme `{}` is not http or https", u.scheme()),
                );
                None
            }
            Err(_) if i.interpolated() => {
                self.err(path, format!("{path}: `{}` is not a URL", i.shown));
                None
            }
            Err(e) => {
                self.err(path, format!("{path}: not a URL ({e})"));
                None
            }
        }
    }

    /// The bridge, or every problem. Each message is also passed through a redactor of every
    /// value interpolation brought in (and of secret headers), whichever field it came from:
    /// the last guard, should a message quote one by some other way.
    pub fn bridge(mut self, raw: RawBridge) -> (Option<Bridge>, Problems) {
        let mut b = self.build(raw);
        let redactor = crate::redact::Redactor::new(&self.secrets_seen);
        for p in &mut self.problems.0 {
            p.message = redactor.clean(&p.message);
        }
        if let Some(b) = &mut b {
            for s in &mut b.sinks {
                s.shown = redactor.clean(&s.target.to_string());
            }
        }
        (b, self.problems)
    }

    fn build(&mut self, raw: RawBridge) -> Option<Bridge> {
        let name = self.name(&raw);
        let (schedule, jitter) = self.schedule(&raw.schedule);
        let source = self.source(&raw.source);
        let items = self.items(&raw.items, raw.source.format);
        let emit = self.emit(&raw.emit);
        let mut sinks = self.sinks(&raw.sinks);
        let render = std::mem::take(&mut self.templates).build();
        for s in &mut sinks {
            s.render = render.clone();
            s.description = raw.description.clone();
        }

        let fingerprint = fingerprint(&raw, name.as_deref().unwrap_or(""));
        let mut secrets = std::mem::take(&mut self.secrets);
        secrets.sort();
        secrets.dedup();
        self.secrets_seen = secrets.clone();
        if !self.problems.is_empty() {
            return None;
        }
        Some(Bridge {
            name: name?,
            description: raw.description.clone(),
            file: self.file.to_path_buf(),
            schedule: schedule?,
            jitter,
            source: source?,
            items: items?,
            emit,
            sinks,
            render,
            fingerprint,
            secrets,
            revision: String::new(),
        })
    }

    /// The bridge's name: given, or the file's stem; never from `${…}`.
    fn name(&mut self, raw: &RawBridge) -> Option<String> {
        let stem = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match &raw.name {
            // The name stands in every log line, status row and metric: it cannot be secret.
            Some(n) => self.value("name", n).and_then(|i| {
                if i.interpolated() {
                    self.err(
                        "name",
                        "name: a bridge name cannot come from `${…}` (it appears in every log line, status and metric)",
                    );
                    None
                } else {
                    Some(i.value)
                }
            }),
            None => Some(stem),
        };
        if let Some(n) = &name {
            if !valid_name(n) {
                let what = if raw.name.is_some() {
                    "name"
                } else {
                    "file name (the default bridge name)"
                };
                self.err(
                    "name",
                    format!("{what} `{n}` must match [a-z0-9][a-z0-9_-]{{0,63}}"),
                );
            }
        }
        name
    }

    /// `every` or `cron` (exactly one), and the jitter.
    fn schedule(&mut self, s: &raw::RawSchedule) -> (Option<Schedule>, Option<Duration>) {
        let schedule = match (&s.every, &s.cron) {
            (Some(e), None) => self
                .duration(
                    "schedule.every",
                    e,
                    Duration::from_millis(500),
                    Duration::from_secs(7 * 86400),
                )
                .map(Schedule::Every),
            (None, Some(c)) => {
                let c = self.value("schedule.cron", c);
                c.and_then(|c| match Schedule::cron(&c.value) {
                    Ok(s) => Some(s),
                    Err(_) if c.interpolated() => {
                        let shown = &c.shown;
                        self.err(
                            "schedule.cron",
                            format!("schedule.cron: `{shown}` is not a valid cron expression"),
                        );
                        None
                    }
                    Err(e) => {
                        self.err("schedule.cron", format!("schedule.cron: {e}"));
                        None
                    }
                })
            }
            _ => {
                self.err(
                    "schedule",
                    "schedule: give exactly one of `every` or `cron`",
                );
                None
            }
        };
        let jitter = match &s.jitter {
            Some(j) => self.duration(
                "schedule.jitter",
                j,
                Duration::ZERO,
                Duration::from_secs(86400),
            ),
            None => None,
        };
        (schedule, jitter)
    }

    /// Every sink, at least one, no URL twice.
    fn sinks(&mut self, sinks_raw: &[raw::RawSink]) -> Vec<Sink> {
        let mut sinks = Vec::new();
        if sinks_raw.is_empty() {
            self.err("sinks", "sinks: give at least one sink");
        }
        for (i, s) in sinks_raw.iter().enumerate() {
            if let Some(s) = self.sink(i, s) {
                if sinks.iter().any(|o: &Sink| o.id == s.id) {
                    self.err(
                        &format!("sinks[{i}].url"),
                        format!("sinks[{i}].url: the same URL appears twice"),
                    );
                }
                sinks.push(s);
            }
        }
        sinks
    }

    /// The next-page rule, if any: `Some(None)` for a single page, `None` for a problem.
    fn paginate(&mut self, p: Option<&raw::RawPaginate>) -> Option<Option<Paginate>> {
        let Some(p) = p else {
            return Some(None);
        };
        let next = match &p.next {
            RawNext::Word(w) if w == "link" => Some(Next::Link),
            RawNext::Word(w) => {
                self.err(
                    "source.paginate.next",
                    format!(
                        "source.paginate.next: `{w}` is not `link`; {}",
                        crate::config::NEXT_FORMS
                    ),
                );
                None
            }
            RawNext::Url { url } => self
                .jsonpath("source.paginate.next.url", url)
                .map(Next::Url),
            RawNext::Param { param, from } => {
                let param = self.param_name("source.paginate.next.param", param);
                let from = self.jsonpath("source.paginate.next.from", from);
                param
                    .zip(from)
                    .map(|(param, from)| Next::Param { param, from })
            }
            RawNext::Variable { variable, from } => {
                let name = self.param_name("source.paginate.next.variable", variable);
                let from = self.jsonpath("source.paginate.next.from", from);
                name.zip(from)
                    .map(|(name, from)| Next::Variable { name, from })
            }
            RawNext::Page { page, start } => self
                .param_name("source.paginate.next.page", page)
                .map(|param| Next::Page {
                    param,
                    start: start.unwrap_or(1),
                }),
            RawNext::Offset { offset, start } => self
                .param_name("source.paginate.next.offset", offset)
                .map(|param| Next::Offset {
                    param,
                    start: start.unwrap_or(0),
                }),
        };
        let max_pages = p.max_pages.unwrap_or(50);
        if !(1..=MAX_PAGES).contains(&max_pages) {
            self.err(
                "source.paginate.max_pages",
                format!("source.paginate.max_pages: must be 1 to {MAX_PAGES}, not {max_pages}"),
            );
        }
        let has_more = match &p.has_more {
            Some(h) => Some(self.jsonpath("source.paginate.has_more", h)?),
            None => None,
        };
        next.map(|next| {
            Some(Paginate {
                next,
                max_pages,
                has_more,
            })
        })
    }

    /// The incremental-listing rule, if any: `Some(None)` for none, `None` for a problem.
    fn cursor(&mut self, c: Option<&raw::RawCursor>, s: &raw::RawSource) -> Option<Option<Cursor>> {
        let Some(c) = c else {
            return Some(None);
        };
        let to = match (&c.param, &c.variable) {
            (Some(p), None) => self
                .param_name("source.cursor.param", p)
                .map(CursorTo::Param),
            (None, Some(v)) => self
                .param_name("source.cursor.variable", v)
                .map(CursorTo::Variable),
            _ => {
                self.err(
                    "source.cursor",
                    "source.cursor: give exactly one of `param` (a query parameter) or `variable` (in the JSON body)",
                );
                None
            }
        };
        let from = self.jsonpath("source.cursor.from", &c.from);
        let initial = match &c.initial {
            None => Some(None),
            Some(serde_yaml::Value::String(t)) => self
                .text("source.cursor.initial", t)
                .map(|t| Some(serde_json::Value::String(t))),
            Some(serde_yaml::Value::Number(n)) => serde_json::to_value(n).ok().map(Some),
            Some(_) => {
                self.err(
                    "source.cursor.initial",
                    "source.cursor.initial: give a string or a number",
                );
                None
            }
        };
        let keep = match &c.keep {
            Some(k) => Some(self.duration(
                "source.cursor.keep",
                k,
                Duration::from_secs(86400),
                Duration::from_secs(100 * 31_557_600),
            )?),
            None => None,
        };
        let variable = matches!(to, Some(CursorTo::Variable(_)));
        if variable && !matches!(s.body, Some(serde_yaml::Value::Mapping(_))) {
            self.err(
                "source.cursor.variable",
                "source.cursor.variable: needs `method: POST` and a `body` that is an object",
            );
        }
        Some(Some(Cursor {
            to: to?,
            from: from?,
            initial: initial?,
            keep,
        }))
    }

    fn source(&mut self, s: &raw::RawSource) -> Option<Source> {
        let url = self.url("source.url", &s.url);
        if let Some(u) = &url {
            if !u.password().unwrap_or_default().is_empty() {
                self.secrets
                    .push(u.password().unwrap_or_default().to_string());
            }
        }
        let headers = self.headers("source.headers", &s.headers);
        let body = s.body.as_ref().and_then(|b| self.body("source.body", b));
        if body.is_some() && s.method == Method::GET {
            self.err("source.body", "source.body: a body needs `method: POST`");
        }
        let timeout = match &s.timeout {
            Some(t) => self.duration(
                "source.timeout",
                t,
                Duration::from_millis(100),
                Duration::from_secs(600),
            ),
            None => Some(Duration::from_secs(30)),
        };
        let max_body = match &s.max_body {
            Some(m) => self
                .value("source.max_body", m)
                .and_then(|m| match parse_size(&m.value) {
                    Ok(n) => Some(n),
                    Err(_) if m.interpolated() => {
                        let shown = &m.shown;
                        self.err(
                            "source.max_body",
                            format!("source.max_body: bad size `{shown}`"),
                        );
                        None
                    }
                    Err(e) => {
                        self.err("source.max_body", format!("source.max_body: {e}"));
                        None
                    }
                }),
            None => Some(16 * 1024 * 1024),
        };
        let paginate = self.paginate(s.paginate.as_ref());
        if let Some(raw::RawPaginate {
            next: RawNext::Variable { .. },
            ..
        }) = &s.paginate
        {
            if !matches!(s.body, Some(serde_yaml::Value::Mapping(_))) {
                self.err(
                    "source.paginate.next.variable",
                    "source.paginate.next.variable: needs `method: POST` and a `body` that is an object",
                );
            }
        }
        let cursor = self.cursor(s.cursor.as_ref(), s);
        if let (Some(Some(c)), Some(Some(p))) = (&cursor, &paginate) {
            self.one_name_each(c, p);
        }
        let format = self.format(s);
        let (auth, proxy) = (
            self.auth(s.auth.as_ref(), &s.headers),
            self.proxy(s.proxy.as_ref()),
        );
        Some(Source {
            url: url?,
            method: s.method,
            headers,
            body,
            timeout: timeout?,
            max_body: max_body?,
            conditional: s.conditional.unwrap_or(true),
            paginate: paginate?,
            cursor: cursor?,
            format: format?,
            auth: auth?,
            proxy: proxy?,
        })
    }

    /// The cursor and the next page set different parameters: with one name, each page would
    /// overwrite the cursor (or the cursor the page).
    fn one_name_each(&mut self, c: &Cursor, p: &Paginate) {
        let clash = match (&c.to, &p.next) {
            (
                CursorTo::Param(a),
                Next::Param { param: b, .. }
                | Next::Page { param: b, .. }
                | Next::Offset { param: b, .. },
            ) => a == b,
            (CursorTo::Variable(a), Next::Variable { name: b, .. }) => a == b,
            _ => false,
        };
        if clash {
            let (key, name) = match &c.to {
                CursorTo::Param(n) => ("source.cursor.param", n),
                CursorTo::Variable(n) => ("source.cursor.variable", n),
            };
            self.err(
                key,
                format!(
                    "{key}: `{name}` is also what `source.paginate.next` sets; give each its own"
                ),
            );
        }
    }

    /// `format`, and `csv` with `format: csv` only (docs/configuration.md#formats).
    fn format(&mut self, s: &raw::RawSource) -> Option<Format> {
        let format = s.format.unwrap_or(RawFormat::Json);
        if s.csv.is_some() && format != RawFormat::Csv {
            self.err("source.csv", "source.csv: goes with `format: csv` only");
        }
        Some(match format {
            RawFormat::Json => Format::Json,
            RawFormat::Ndjson => Format::Ndjson,
            RawFormat::Feed => Format::Feed,
            RawFormat::Xml => Format::Xml,
            RawFormat::Csv => match s.csv.as_ref().and_then(|c| c.delimiter.as_deref()) {
                None => Format::Csv { delimiter: b',' },
                Some(d) => match d.as_bytes() {
                    [b] if b.is_ascii() && !matches!(b, b'"' | b'\n' | b'\r') => {
                        Format::Csv { delimiter: *b }
                    }
                    _ => {
                        self.err(
                            "source.csv.delimiter",
                            format!("source.csv.delimiter: {d:?} is not one ASCII character (a quote or a line break cannot be one)"),
                        );
                        return None;
                    }
                },
            },
        })
    }

    /// The POST body: YAML to JSON, with every string interpolated.
    fn body(&mut self, path: &str, v: &serde_yaml::Value) -> Option<serde_json::Value> {
        use serde_yaml::Value as Y;
        Some(match v {
            Y::Null => serde_json::Value::Null,
            Y::Bool(b) => serde_json::Value::Bool(*b),
            Y::Number(n) => serde_json::to_value(n).ok()?,
            Y::String(s) => serde_json::Value::String(self.text(path, s)?),
            Y::Sequence(seq) => {
                let mut out = Vec::new();
                for (i, x) in seq.iter().enumerate() {
                    out.push(self.body(&format!("{path}[{i}]"), x)?);
                }
                serde_json::Value::Array(out)
            }
            Y::Mapping(m) => {
                let mut out = serde_json::Map::new();
                for (k, x) in m {
                    let Some(k) = k.as_str() else {
                        self.err(path, format!("{path}: object keys must be strings"));
                        return None;
                    };
                    out.insert(k.to_string(), self.body(&format!("{path}.{k}"), x)?);
                }
                serde_json::Value::Object(out)
            }
            Y::Tagged(t) => self.body(path, &t.value)?,
        })
    }

    /// The selection; a feed's has defaults (`$.entries[*]` keyed by `$.id`).
    fn items(&mut self, i: &raw::RawItems, format: Option<RawFormat>) -> Option<Items> {
        let feed = format == Some(RawFormat::Feed);
        let select = match i.select.as_deref() {
            Some(s) => self.jsonpath("items.select", s),
            None if feed => self.jsonpath("items.select", FEED_SELECT),
            None => {
                // At the format that has no default, if one is written.
                let at = match format {
                    Some(_) => "source.format",
                    None => "items.select",
                };
                self.err(
                    at,
                    format!("items.select: missing (only `source.format: feed` has a default, `{FEED_SELECT}`)"),
                );
                None
            }
        };
        let key = match i.key.as_deref() {
            Some(k) => Some(self.jsonpath("items.key", k)),
            None if feed => Some(self.jsonpath("items.key", FEED_KEY)),
            None => None,
        };
        let mut include = Vec::new();
        for (n, p) in i.include.iter().flatten().enumerate() {
            include.extend(self.jsonpath(&format!("items.include[{n}]"), p));
        }
        let mut exclude = Vec::new();
        for (n, p) in i.exclude.iter().flatten().enumerate() {
            exclude.extend(self.jsonpath(&format!("items.exclude[{n}]"), p));
        }
        Some(Items {
            select: select?,
            key: match key {
                Some(k) => Some(k?),
                None => None,
            },
            include,
            exclude,
        })
    }

    fn emit(&mut self, e: &raw::RawEmit) -> Emit {
        let events = e.events.clone().unwrap_or_else(|| {
            vec![
                raw::EventKind::Created,
                raw::EventKind::Updated,
                raw::EventKind::Deleted,
            ]
        });
        let after_missing = e.deletes.after_missing.unwrap_or(1);
        if after_missing == 0 {
            self.err(
                "emit.deletes.after_missing",
                "emit.deletes.after_missing: must be at least 1",
            );
        }
        let max_fraction = e.deletes.max_fraction.unwrap_or(0.5);
        if !(max_fraction > 0.0 && max_fraction <= 1.0) {
            self.err(
                "emit.deletes.max_fraction",
                "emit.deletes.max_fraction: must be above 0 and at most 1",
            );
        }
        let when = e
            .when
            .as_ref()
            .and_then(|w| self.template("emit.when", w, true));
        let failures_after = e.failures.as_ref().map(|f| f.after);
        if failures_after == Some(0) {
            self.err(
                "emit.failures.after",
                "emit.failures.after: must be at least 1",
            );
        }
        Emit {
            when,
            failures_after,
            created: events.contains(&raw::EventKind::Created),
            updated: events.contains(&raw::EventKind::Updated),
            deleted: events.contains(&raw::EventKind::Deleted),
            first_poll: e.first_poll,
            after_missing,
            max_fraction,
        }
    }

    /// A sink's signing keys (newest first), each also a secret of the bridge.
    fn signing_keys(&mut self, field: &str, secret: Option<&RawSecret>) -> Vec<Vec<u8>> {
        let raw_secrets: Vec<&String> = match secret {
            None => vec![],
            Some(RawSecret::One(x)) => vec![x],
            Some(RawSecret::Many(v)) => v.iter().collect(),
        };
        let mut secrets = Vec::new();
        for (n, x) in raw_secrets.into_iter().enumerate() {
            let path = if matches!(secret, Some(RawSecret::Many(_))) {
                format!("{field}[{n}]")
            } else {
                field.to_string()
            };
            let Some(x) = self.text(&path, x) else {
                continue;
            };
            self.secrets.push(x.clone());
            match crate::sign::key_from_secret(&x) {
                Ok(k) if k.is_empty() => self.err(&path, format!("{path}: the secret is empty")),
                Ok(k) => secrets.push(k),
                Err(e) => self.err(&path, format!("{path}: {e}")),
            }
        }
        secrets
    }

    fn sink(&mut self, i: usize, s: &raw::RawSink) -> Option<Sink> {
        let p = |f: &str| format!("sinks[{i}].{f}");
        let target = if s.url == "console" {
            Some(Target::Console)
        } else {
            self.url(&p("url"), &s.url).map(Target::Http)
        };
        // The path and query of a chat webhook are its credential: the whole URL is masked
        // wherever a message would quote it (a panic's text, an error of a library).
        if let Some(Target::Http(u)) = &target {
            if u.path() != "/" || u.query().is_some() {
                self.secrets.push(u.as_str().to_string());
            }
        }
        let secrets = self.signing_keys(&p("secret"), s.secret.as_ref());
        let preset = !matches!(s.format, SinkFormat::Event | SinkFormat::Template);
        if matches!(target, Some(Target::Http(_)))
            && !preset
            && s.signature != SignatureKind::None
            && secrets.is_empty()
            && s.secret.is_none()
        {
            self.err(
                &p("url"),
                format!(
                    "{}: a signed sink needs a `secret` (or `signature: none`)",
                    p("url")
                ),
            );
        }
        let headers = self.headers(&p("headers"), &s.headers);
        let timeout = match &s.timeout {
            Some(t) => self.duration(
                &p("timeout"),
                t,
                Duration::from_millis(100),
                Duration::from_secs(600),
            ),
            None => Some(Duration::from_secs(10)),
        };
        let retry = self.retry(&p("retry"), s.retry.as_deref());
        let speech = self.speech(i, s, target.as_ref());
        Some(Sink {
            id: if target == Some(Target::Console) {
                "console".into()
            } else {
                short_hash(&s.url)
            },
            target: target?,
            // Set once every secret of the bridge is known (`Validator::bridge`).
            shown: String::new(),
            secrets,
            signature: s.signature,
            headers,
            timeout: timeout?,
            retry: retry?,
            format: s.format,
            content_type: speech.content_type,
            template: speech.template,
            mentions: s.mentions.unwrap_or(false),
            events: s.events.clone(),
            when: speech.when,
            batch: speech.batch,
            // Set once every template of the bridge is compiled (`Validator::build`).
            render: crate::render::Engine::default(),
            description: None,
        })
    }

    /// A sink's retry schedule, each step checked; the default without one.
    fn retry(&mut self, path: &str, list: Option<&[String]>) -> Option<Vec<Duration>> {
        let Some(list) = list else {
            return Some(DEFAULT_RETRY.to_vec());
        };
        let mut out = Vec::new();
        for (n, d) in list.iter().enumerate() {
            out.push(self.duration(
                &format!("{path}[{n}]"),
                d,
                Duration::ZERO,
                Duration::from_secs(7 * 86400),
            ));
        }
        out.into_iter().collect()
    }

    /// What a sink says and to which events (docs/configuration.md#sinks): its templates compiled,
    /// its keys checked against its format.
    fn speech(&mut self, i: usize, s: &raw::RawSink, target: Option<&Target>) -> Speech {
        let p = |f: &str| format!("sinks[{i}].{f}");
        let console = target == Some(&Target::Console);
        if console && s.format != SinkFormat::Event {
            self.err(
                &p("format"),
                format!(
                    "{}: a console sink prints events as JSON lines; `format` is for http sinks",
                    p("format")
                ),
            );
        }
        let template = self.sink_template(i, s);
        if s.content_type.is_some() && s.format != SinkFormat::Template {
            self.err(
                &p("content_type"),
                format!(
                    "{}: `content_type` needs `format: template`",
                    p("content_type")
                ),
            );
        }
        let content_type = s
            .content_type
            .clone()
            .unwrap_or_else(|| "application/json".into());
        if HeaderValue::from_str(&content_type).is_err() || !content_type.contains('/') {
            self.err(
                &p("content_type"),
                format!(
                    "{}: `{content_type}` is not a media type (e.g. application/json, text/plain)",
                    p("content_type")
                ),
            );
        }
        let when = s
            .when
            .as_ref()
            .and_then(|w| self.template(&p("when"), w, true));
        if s.events.as_ref().is_some_and(|e| e.is_empty()) {
            self.err(
                &p("events"),
                format!("{}: name at least one event type", p("events")),
            );
        }
        let batch = s.batch.as_ref().and_then(|b| {
            if console {
                self.err(
                    &p("batch"),
                    format!(
                        "{}: a console sink prints each event; `batch` is for http sinks",
                        p("batch")
                    ),
                );
            }
            if !(1..=1000).contains(&b.max) {
                self.err(
                    &p("batch.max"),
                    format!("{}: must be 1 .. 1000", p("batch.max")),
                );
            }
            let window = self.duration(
                &p("batch.window"),
                &b.window,
                Duration::ZERO,
                Duration::from_secs(86400),
            );
            Some(Batch {
                max: b.max as usize,
                window: window?,
            })
        });
        Speech {
            content_type,
            template,
            when,
            batch,
        }
    }

    /// The sink's `template` (with `format: template`) or `message` (with a chat format),
    /// compiled; either given where the format does not take it is a problem, and so is
    /// `mentions` where no message can mention anyone.
    fn sink_template(&mut self, i: usize, s: &raw::RawSink) -> Option<String> {
        let p = |f: &str| format!("sinks[{i}].{f}");
        if s.mentions.is_some() && !s.format.receiver().is_some_and(|r| r.mentions()) {
            self.err(
                &p("mentions"),
                format!(
                    "{}: `mentions` is for slack, mattermost, discord and google_chat (teams and ntfy messages mention no one)",
                    p("mentions")
                ),
            );
        }
        match (s.format, &s.template, &s.message) {
            (SinkFormat::Template, Some(t), None) => self.template(&p("template"), t, false),
            (SinkFormat::Template, None, _) => {
                self.err(
                    &p("format"),
                    format!("{}: `format: template` needs a `template`", p("format")),
                );
                None
            }
            (SinkFormat::Event | SinkFormat::Template, _, Some(_)) => {
                self.err(&p("message"), format!("{}: `message` is for the chat formats (slack, mattermost, discord, google_chat, teams, ntfy)", p("message")));
                None
            }
            (_, Some(_), _) => {
                self.err(
                    &p("template"),
                    format!("{}: `template` needs `format: template`", p("template")),
                );
                None
            }
            (format, None, Some(m)) => {
                let to = format.receiver()?;
                let checked = self.templates.message(&p("message"), m, to);
                self.checked(&p("message"), checked, p("message"))
            }
            (_, None, None) => None,
        }
    }
}

/// What a sink speaks and which events it takes, checked (docs/configuration.md#sinks).
struct Speech {
    content_type: String,
    template: Option<String>,
    when: Option<String>,
    batch: Option<Batch>,
}

/// A parser's explanation of why a value is wrong, as ` (…)`; nothing for a value that came
/// from `${…}`, since the explanation may quote part of it.
fn detail(i: &Interpolated, e: impl std::fmt::Display) -> String {
    if i.interpolated() {
        String::new()
    } else {
        format!(" ({e})")
    }
}

pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// A sink's id (format 1): the first 4 bytes of the SHA-256 of its URL as written, in hex. It
/// keys the sink's outbox queue, so it must never change for the same URL (`pinned` tests).
fn short_hash(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..4])
}

/// What stored state means: name, source and items as written (before interpolation, so a
/// rotated token in a header or URL does not count as a new meaning).
///
/// Format 1, written out field by field so that renaming a field or a variant in `raw.rs`
/// changes nothing (a changed fingerprint re-baselines the bridge, swallowing the changes
/// since its last poll): the name, then one line each for the URL, the method, the body as
/// YAML, the next-page rule, the select and key paths, and the include and exclude lists,
/// strings in Rust's `{:?}` quoting, absent values as `None`, present optional ones as
/// `Some(…)`; the first 12 bytes of its SHA-256, in hex. `pinned` tests hold its values.
/// Keys added since add a line each, only when present, so that a bridge without them keeps
/// its value: `has_more`, `cursor` (not its `keep`), then a `format` other than JSON (its
/// word, and the CSV delimiter; spelling out `format: json` changes nothing). A feed's select
/// and key count as their defaults when not written.
fn fingerprint(raw: &RawBridge, name: &str) -> String {
    let list = |l: &Option<Vec<String>>| {
        some(l.as_ref().map(|l| {
            let items: Vec<String> = l.iter().map(|s| q(s)).collect();
            format!("[{}]", items.join(", "))
        }))
    };
    let s = &raw.source;
    let i = &raw.items;
    let feed = s.format == Some(RawFormat::Feed);
    let select = i.select.as_deref().or(feed.then_some(FEED_SELECT));
    let key = i.key.as_deref().or(feed.then_some(FEED_KEY));
    let method = match s.method {
        Method::GET => "GET",
        Method::POST => "POST",
    };
    let body = s
        .body
        .as_ref()
        .map(|b| q(&serde_yaml::to_string(b).unwrap_or_default()));
    let next = s.paginate.as_ref().map(|p| q(&next_text(&p.next)));
    let mut text = vec![
        name.to_string(),
        q(&s.url),
        method.to_string(),
        some(body),
        some(next),
        q(select.unwrap_or_default()),
        some(key.map(q)),
        list(&i.include),
        list(&i.exclude),
    ];
    text.extend(added_lines(s));
    let text = text.join("\n");
    hex::encode(&Sha256::digest(text.as_bytes())[..12])
}

/// A string in the fingerprint: Rust's `{:?}` quoting.
fn q(s: &str) -> String {
    format!("{s:?}")
}

/// An optional part of the fingerprint: `None`, or `Some(…)`.
fn some(s: Option<String>) -> String {
    s.map_or("None".to_string(), |s| format!("Some({s})"))
}

/// The next-page rule as the fingerprint spells it (format 1's spelling for the forms it had).
fn next_text(next: &RawNext) -> String {
    match next {
        RawNext::Word(w) => format!("Word({})", q(w)),
        RawNext::Url { url } => format!("Url {{ url: {} }}", q(url)),
        RawNext::Param { param, from } => {
            format!("Param {{ param: {}, from: {} }}", q(param), q(from))
        }
        RawNext::Variable { variable, from } => {
            format!(
                "Variable {{ variable: {}, from: {} }}",
                q(variable),
                q(from)
            )
        }
        // The start as it counts: written out or left to its default is the same.
        RawNext::Page { page, start } => {
            format!(
                "Page {{ page: {}, start: {} }}",
                q(page),
                start.unwrap_or(1)
            )
        }
        RawNext::Offset { offset, start } => {
            format!(
                "Offset {{ offset: {}, start: {} }}",
                q(offset),
                start.unwrap_or(0)
            )
        }
    }
}

/// The lines of the keys added since format 1, each only when present, so that a bridge
/// without them keeps its fingerprint.
fn added_lines(s: &raw::RawSource) -> Vec<String> {
    let mut text = Vec::new();
    if let Some(h) = s.paginate.as_ref().and_then(|p| p.has_more.as_ref()) {
        text.push(format!("has_more: {}", q(h)));
    }
    if let Some(c) = &s.cursor {
        let initial = c
            .initial
            .as_ref()
            .map(|v| q(&serde_yaml::to_string(v).unwrap_or_default()));
        text.push(format!(
            "cursor: {} {} {} {}",
            some(c.param.as_deref().map(q)),
            some(c.variable.as_deref().map(q)),
            q(&c.from),
            some(initial),
        ));
    }
    if let Some(f) = s.format.filter(|f| *f != RawFormat::Json) {
        let delimiter = (f == RawFormat::Csv).then(|| {
            let d = s.csv.as_ref().and_then(|c| c.delimiter.as_deref());
            q(d.unwrap_or(","))
        });
        let word = match f {
            RawFormat::Json => "json",
            RawFormat::Ndjson => "ndjson",
            RawFormat::Csv => "csv",
            RawFormat::Feed => "feed",
            RawFormat::Xml => "xml",
        };
        text.push(format!("format {} {}", q(word), some(delimiter)));
    }
    text
}

/// `16MiB`, `512KiB`, `1MB`, `1000` (bytes).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("bad size `{s}`; write e.g. 16MiB, 512KiB, 1GB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" | "k" => 1000,
        "kib" => 1 << 10,
        "mb" | "m" => 1_000_000,
        "mib" => 1 << 20,
        "gb" | "g" => 1_000_000_000,
        "gib" => 1 << 30,
        u => {
            return Err(format!(
                "bad size unit `{u}` in `{s}` (B, KB, KiB, MB, MiB, GB, GiB)"
            ));
        }
    };
    let bytes = n * mult as f64;
    if !(1.0..=(4u64 << 30) as f64).contains(&bytes) {
        return Err(format!("size `{s}` is out of range (1B .. 4GiB)"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB").unwrap(), 16 << 20);
        assert_eq!(parse_size("1.5 KB").unwrap(), 1500);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("5 parsecs").unwrap_err().contains("unit"));
        assert!(parse_size("").is_err());
    }

    #[test]
    fn names() {
        assert!(valid_name("tokio-releases"));
        assert!(valid_name("a_1"));
        assert!(!valid_name("Tokio"));
        assert!(!valid_name("-x"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}

/// The persisted derivations of a definition, pinned: a change to any of these values
/// re-baselines every user's bridges (the fingerprint) or orphans their queues (the sink id),
/// so it must fail here first, never pass unnoticed.
#[cfg(test)]
mod pinned {
    use super::*;

    fn raw(yaml: &str) -> RawBridge {
        serde_yaml::from_str(yaml).unwrap()
    }

    const PLAIN: &str = "schedule: {every: 5m}\nsource: {url: \"https://api.example.com/items?token=${T}\"}\nitems: {select: \"$.items[*]\", key: \"$.id\"}\nsinks: [{url: console}]\n";
    const FULL: &str = r#"schedule: {every: 5m}
source:
  url: "https://api.example.com/search"
  method: POST
  body: {query: "état \"x\"", page: 1, tags: [a, b]}
  paginate: {next: {param: cursor, from: "$.next"}, max_pages: 3}
items:
  select: "$.data[*]"
  key: "$.node.id"
  include: ["$.title", "$.state"]
  exclude: ["$.updated_at"]
sinks: [{url: console}]
"#;

    #[test]
    fn fingerprints_are_pinned() {
        let cases = [
            (
                fingerprint(&raw(PLAIN), "plain"),
                "0225ba6a41594810ea3b9fcf",
            ),
            (fingerprint(&raw(FULL), "full"), "616b8fcb2547d73841825512"),
            (
                fingerprint(
                    &raw(&PLAIN.replace("key: \"$.id\"}", "key: \"$.id\", include: [\"$.a\"]}")),
                    "plain",
                ),
                "72b84c2e8038f10fa0d9fbf7",
            ),
            (
                fingerprint(
                    &raw(&FULL.replace("{param: cursor, from: \"$.next\"}", "link")),
                    "full",
                ),
                "2094770301e49fbedf57555d",
            ),
            (
                fingerprint(
                    &raw(&FULL.replace(
                        "{param: cursor, from: \"$.next\"}",
                        "{url: \"$.links.next\"}",
                    )),
                    "full",
                ),
                "9b95e7fffd6ba35b84d31f96",
            ),
        ];
        let got: Vec<&str> = cases.iter().map(|(g, _)| g.as_str()).collect();
        let want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
        assert_eq!(got, want);
    }

    /// Pagination forms and cursors (docs/configuration.md#changed-definitions): each changes the
    /// meaning, and has a value of its own; `keep` and a bridge without these keys change nothing.
    #[test]
    fn listing_fingerprints_are_pinned() {
        let next = |n: &str| {
            fingerprint(
                &raw(&FULL.replace("{param: cursor, from: \"$.next\"}", n)),
                "full",
            )
        };
        let cursor = |c: &str| {
            fingerprint(
                &raw(&PLAIN.replace("items?token=${T}\"}", &format!("items\", cursor: {c}}}"))),
                "plain",
            )
        };
        let got = [
            next("{variable: after, from: \"$.end\"}"),
            next("{page: page, start: 1}"),
            next("{page: page}"),
            next("{offset: offset, start: 0}"),
            fingerprint(
                &raw(&FULL.replace("max_pages: 3}", "max_pages: 3, has_more: \"$.more\"}")),
                "full",
            ),
            cursor("{param: since, from: \"$.updated_at\"}"),
            cursor("{param: since, from: \"$.updated_at\", initial: \"2026-01-01\"}"),
            cursor("{param: since, from: \"$.updated_at\", initial: 0}"),
            cursor("{variable: since, from: \"$.updated_at\"}"),
        ];
        let want = [
            "ce07c26352f9c6b4fc792b3c",
            "95385e74fea224b8dc57a4af",
            "95385e74fea224b8dc57a4af",
            "5eda162c3fbce237e88628ae",
            "52b56fbff89401f8e441d20a",
            "491512b8b23f2f97acdb9b47",
            "75de82ff500714e8418ce8b1",
            "fb335b9b3806c7cc2e502f97",
            "a427d99ffb162bc6b41f4003",
        ];
        assert_eq!(got, want);
        // Retention is not meaning.
        assert_eq!(
            cursor("{param: since, from: \"$.updated_at\", keep: 30d}"),
            got[5]
        );
    }

    /// A `format` other than JSON is a new meaning; a feed's defaults count as written.
    #[test]
    fn format_fingerprints_are_pinned() {
        let with = |extra: &str| {
            raw(&PLAIN.replace("token=${T}\"}", &format!("token=${{T}}\", {extra}}}")))
        };
        let plain = fingerprint(&raw(PLAIN), "plain");
        assert_eq!(fingerprint(&with("format: json"), "plain"), plain);
        let got = [
            fingerprint(&with("format: ndjson"), "plain"),
            fingerprint(&with("format: csv"), "plain"),
            fingerprint(&with("format: csv, csv: {delimiter: \";\"}"), "plain"),
            fingerprint(&with("format: xml"), "plain"),
            fingerprint(&with("format: feed"), "plain"),
        ];
        assert_eq!(
            got,
            [
                "00d5fbdf2eeb1466f5754526",
                "e6c786ef2d02b356dab5a75b",
                "b090fc8ff8100f2b196325a4",
                "7caab6774a6bbfe61c058736",
                "c7a68a250c8ef072a37f0c33"
            ]
        );
        assert_eq!(
            fingerprint(&with("format: csv, csv: {delimiter: \",\"}"), "plain"),
            got[1]
        );
        let feed = "schedule: {every: 5m}\nsource: {url: \"https://blog.example/feed\", format: feed}\nsinks: [{url: console}]\n";
        let spelled = feed.replace(
            "sinks:",
            "items: {select: \"$.entries[*]\", key: \"$.id\"}\nsinks:",
        );
        assert_eq!(
            fingerprint(&raw(feed), "blog"),
            fingerprint(&raw(&spelled), "blog")
        );
        assert_eq!(fingerprint(&raw(feed), "blog"), "7425adacf86612e6a747b42b");
    }

    #[test]
    fn sink_ids_are_pinned() {
        assert_eq!(
            [
                short_hash("https://hooks.example.com/T000/B000/XXXX"),
                short_hash("http://127.0.0.1:8080/hook?k=${KEY}")
            ],
            ["69e74ef2", "6ee5c53b"]
        );
    }
}
