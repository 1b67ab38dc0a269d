//! `sinks` checked (docs/configuration.md#sinks): where events go (a URL or the console), how
//! they are signed, retried and spoken (the event itself, a chat preset or a template), which
//! of them each sink takes (`events`, `when`) and whether they go in digests.

use super::Validator;
use super::fingerprint::short_hash;
use super::model::{Batch, JSON, Short, Sink, SinkMore, Target};
use super::templates::{RuleRef, TemplateRef};
use crate::config::raw::{self, RawSecret, SignatureKind, SinkFormat};
use reqwest::header::HeaderValue;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

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

impl Validator<'_> {
    /// Every sink, at least one, no URL twice.
    pub(super) fn sinks(&mut self, sinks_raw: &[raw::RawSink]) -> Vec<Sink> {
        // Exactly as many as written: a sink is a few hundred bytes, and a vector grown by
        // pushing holds four (an idle bridge costs its definition, docs/scaling.md#memory).
        let mut sinks = Vec::with_capacity(sinks_raw.len());
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

    /// A sink's signing keys (newest first), each also a secret of the bridge.
    fn signing_keys(&mut self, field: &str, secret: Option<&RawSecret>) -> Vec<Vec<u8>> {
        let raw_secrets: Vec<&String> = match secret {
            None => vec![],
            Some(RawSecret::One(x)) => vec![x],
            Some(RawSecret::Many(v)) => v.iter().collect(),
        };
        let mut secrets = Vec::with_capacity(raw_secrets.len());
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
        let more = (!headers.is_empty() || speech.given()).then(|| {
            Box::new(SinkMore {
                headers,
                content_type: speech.content_type,
                template: speech.template,
                events: s.events.clone(),
                when: speech.when,
                batch: speech.batch,
                // Set once every template of the bridge is compiled (`Validator::build`).
                render: crate::render::Engine::default(),
                description: None,
            })
        });
        Some(Sink {
            // `console` or 8 hex digits.
            id: Short::new(&if target == Some(Target::Console) {
                "console".into()
            } else {
                short_hash(&s.url)
            })
            .unwrap_or_default(),
            target: target?,
            // Set once every secret of the bridge is known (`Validator::bridge`).
            shown: String::new(),
            secrets,
            signature: s.signature,
            timeout: timeout?,
            retry: retry?,
            format: s.format,
            mentions: s.mentions.unwrap_or(false),
            more,
        })
    }

    /// A sink's retry schedule, each step checked; the default without one.
    /// The retry schedule: the default one is shared, not copied into every sink.
    fn retry(&mut self, path: &str, list: Option<&[String]>) -> Option<Cow<'static, [Duration]>> {
        let Some(list) = list else {
            return Some(Cow::Borrowed(&DEFAULT_RETRY));
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
        out.into_iter().collect::<Option<Vec<_>>>().map(Cow::Owned)
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
        let content_type = s.content_type.clone().unwrap_or_else(|| JSON.into());
        if HeaderValue::from_str(&content_type).is_err() || !content_type.contains('/') {
            self.err(
                &p("content_type"),
                format!(
                    "{}: `{content_type}` is not a media type (e.g. application/json, text/plain)",
                    p("content_type")
                ),
            );
        }
        let when = s.when.as_ref().and_then(|w| self.rule(&p("when"), w));
        if s.events.as_ref().is_some_and(|e| e.is_empty()) {
            self.err(
                &p("events"),
                format!("{}: name at least one event type", p("events")),
            );
        }
        let batch = s.batch.as_ref().and_then(|b| self.batch(i, b, console));
        Speech {
            content_type,
            template,
            events: s.events.is_some(),
            when,
            batch,
        }
    }

    /// `batch`, a digest (docs/configuration.md#digests): for http sinks only.
    fn batch(&mut self, i: usize, b: &raw::RawBatch, console: bool) -> Option<Batch> {
        let p = |f: &str| format!("sinks[{i}].{f}");
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
    }

    /// The sink's `template` (with `format: template`) or `message` (with a chat format),
    /// compiled; either given where the format does not take it is a problem, and so is
    /// `mentions` where no message can mention anyone.
    fn sink_template(&mut self, i: usize, s: &raw::RawSink) -> Option<TemplateRef> {
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
            (SinkFormat::Template, Some(t), None) => self.template(&p("template"), t),
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
                self.message(&p("message"), m, to)
            }
            (_, None, None) => None,
        }
    }
}

/// Every sink without a [`SinkMore`] made and still held by some bridge, by id.
static SHARED: LazyLock<Mutex<HashMap<Short<8>, Vec<Weak<Sink>>>>> = LazyLock::new(Mutex::default);

/// The sink another bridge holds already, if it is the same in every part and has no
/// [`SinkMore`] (which holds its bridge's templates and description); else this one.
pub(super) fn shared(s: Sink) -> Arc<Sink> {
    if s.more.is_some() {
        return Arc::new(s);
    }
    let mut all = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    let same = all.entry(s.id).or_default();
    // Those of bridges gone since are forgotten as they are met.
    same.retain(|w| w.strong_count() > 0);
    if let Some(held) = same.iter().filter_map(Weak::upgrade).find(|h| h.same(&s)) {
        return held;
    }
    let s = Arc::new(s);
    same.push(Arc::downgrade(&s));
    if all.len() >= 64 && all.len().is_power_of_two() {
        all.retain(|_, same| same.iter().any(|w| w.strong_count() > 0));
    }
    s
}

impl Sink {
    /// Whether two sinks are the same in every part. Each field is named, so that one added
    /// later must be compared here too (a sink shared by mistake would send one bridge's
    /// events with another's settings).
    fn same(&self, other: &Sink) -> bool {
        let Sink {
            id,
            target,
            shown,
            secrets,
            signature,
            format,
            mentions,
            timeout,
            retry,
            more,
        } = self;
        *id == other.id
            && *target == other.target
            && *shown == other.shown
            && *secrets == other.secrets
            && *signature == other.signature
            && *format == other.format
            && *mentions == other.mentions
            && *timeout == other.timeout
            && retry[..] == other.retry[..]
            && more.is_none()
            && other.more.is_none()
    }
}

/// What a sink speaks and which events it takes, checked (docs/configuration.md#sinks).
struct Speech {
    content_type: String,
    template: Option<TemplateRef>,
    /// Whether `events` is given.
    events: bool,
    when: Option<RuleRef>,
    batch: Option<Batch>,
}

impl Speech {
    /// Whether the sink says anything but the default, so needs a [`SinkMore`].
    fn given(&self) -> bool {
        self.content_type != JSON
            || self.template.is_some()
            || self.events
            || self.when.is_some()
            || self.batch.is_some()
    }
}
