//! How a source's listing spans pages and polls (docs/configuration.md#pagination,
//! docs/configuration.md#cursor): `source.paginate`, the next-page rule and its bounds, and
//! `source.cursor`, the incremental listing, each checked on its own; `source` checks them
//! together.

use super::Validator;
use super::model::{Cursor, CursorTo, Next, Paginate};
use crate::config::raw::{self, RawNext};
use std::time::Duration;

/// The most pages one poll may fetch (`source.paginate.max_pages`): a million pages of a
/// 30 s time-out each is a poll that never ends in practice, and would hold the shutdown and
/// the watchdog's idea of a stuck poll with it. Ten thousand pages of a hundred items is a
/// million items.
pub const MAX_PAGES: u32 = 10_000;

impl Validator<'_> {
    /// The next-page rule, if any: `Some(None)` for a single page, `None` for a problem.
    pub(super) fn paginate(&mut self, p: Option<&raw::RawPaginate>) -> Option<Option<Paginate>> {
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
    pub(super) fn cursor(
        &mut self,
        c: Option<&raw::RawCursor>,
        s: &raw::RawSource,
    ) -> Option<Option<Cursor>> {
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

    /// The cursor and the next page set different parameters: with one name, each page would
    /// overwrite the cursor (or the cursor the page).
    pub(super) fn one_name_each(&mut self, c: &Cursor, p: &Paginate) {
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
}
