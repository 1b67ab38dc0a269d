//! The validated bridge: one parsed file checked section by section, every problem kept with
//! its place. The validator is one type whose methods live beside the section they check:
//!
//! - `model`: the validated types ([`Bridge`], [`Source`], [`Sink`], …) the rest reads
//! - `values`: one value of any section interpolated, parsed and placed (durations, sizes,
//!   JSONPaths, URLs, headers, a JSON body)
//! - `schedule`: `schedule`
//! - `source`: `source`, the request and its format; `listing`: `source.paginate` and
//!   `source.cursor`; `login`: `source.auth` and `source.proxy`
//! - `items`: `items`
//! - `emit`: `emit`
//! - `sinks`: `sinks`
//! - `templates`: templates and rules compiled, as typed handles ([`TemplateRef`], [`RuleRef`])
//! - `fingerprint`: the derivations stored state is keyed by (the fingerprint, sink ids)
//!
//! This file holds the validator itself and the bridge-level checks (its name); nothing
//! downstream can fail on configuration.

use super::Problems;
use super::interpolate::Env;
use super::locate::Locator;
use super::raw::RawBridge;
use std::path::Path;

mod emit;
mod fingerprint;
mod items;
mod listing;
mod login;
mod model;
mod schedule;
mod sinks;
mod source;
mod templates;
mod values;

pub use listing::MAX_PAGES;
pub use login::{Auth, AuthKind, Login, OAuth2, Secret};
pub use model::{
    Batch, Bridge, Cursor, CursorTo, Emit, EmitMore, Items, JSON, Next, Paginate, Short, Sink,
    SinkMore, Source, Target,
};
pub use sinks::DEFAULT_RETRY;
pub use templates::{RuleRef, TemplateRef};
pub use values::parse_size;

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

    /// The bridge, or every problem. Each message is also passed through a redactor of every
    /// value interpolation brought in (and of secret headers), whichever field it came from:
    /// the last guard, should a message quote one by some other way.
    pub fn bridge(mut self, raw: RawBridge) -> (Option<Bridge>, Problems) {
        let b = self.build(raw);
        let redactor = crate::redact::Redactor::new(&self.secrets_seen);
        for p in &mut self.problems.0 {
            p.message = redactor.clean(&p.message);
        }
        (b, self.problems)
    }

    fn build(&mut self, raw: RawBridge) -> Option<Bridge> {
        let name = self.name(&raw);
        let (schedule, jitter) = self.schedule(&raw.schedule);
        let source = self.source(&raw.source);
        let items = self.items(&raw.items, raw.source.format);
        let emit = self.emit(&raw.emit);
        if emit.settle().is_some() && raw.source.cursor.is_some() {
            self.err(
                "emit.settle",
                "emit.settle: not with source.cursor (an incremental listing shows an item only \
                 when it changes, so a change is never seen again to settle)",
            );
        }
        let mut sinks = self.sinks(&raw.sinks);
        let render = std::mem::take(&mut self.templates).build();
        for m in sinks.iter_mut().filter_map(|s| s.more.as_mut()) {
            m.render = render.clone();
            m.description = raw.description.clone();
        }

        let fingerprint = fingerprint::fingerprint(&raw, name.as_deref().unwrap_or(""));
        let mut secrets = std::mem::take(&mut self.secrets);
        secrets.sort();
        secrets.dedup();
        // Held as long as the bridge runs: no spare room (docs/scaling.md#memory).
        secrets.shrink_to_fit();
        self.secrets_seen = secrets.clone();
        if !self.problems.is_empty() {
            return None;
        }
        let redactor = crate::redact::Redactor::new(&secrets);
        let mut shared = Vec::with_capacity(sinks.len());
        for mut s in sinks {
            s.shown = redactor.clean(&s.target.to_string());
            shared.push(sinks::shared(s));
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
            sinks: shared,
            render,
            // Always 24 hex digits.
            fingerprint: model::Short::new(&fingerprint).unwrap_or_default(),
            secrets,
            revision: [0; 12],
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
}

pub fn valid_name(n: &str) -> bool {
    let b = n.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name("tokio-releases"));
        assert!(valid_name("a_1"));
        assert!(!valid_name("Tokio"));
        assert!(!valid_name("-x"));
        assert!(!valid_name(&"a".repeat(65)));
    }
}
