//! `source` checked (docs/configuration.md#source): the URL, method, headers and body of the
//! request, its time-out and size limit, and the format of the answer. Pagination and cursors
//! are `listing`'s, logging in and the proxy `login`'s.

use super::Validator;
use super::model::{Cursor, Paginate, Source};
use super::values::parse_size;
use crate::config::raw::{self, Method, RawFormat, RawNext};
use crate::formats::Format;
use std::time::Duration;

impl Validator<'_> {
    /// `source`: where and how to fetch, and how the body is written.
    pub(super) fn source(&mut self, s: &raw::RawSource) -> Option<Source> {
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
        let max_body = self.max_body(s.max_body.as_ref());
        let (paginate, cursor) = self.listing(s);
        let format = self.format(s);
        let (auth, proxy) = (
            self.auth(s.auth.as_ref(), &s.headers),
            self.proxy(s.proxy.as_ref()),
        );
        Some(Source {
            url: url?,
            method: s.method,
            headers,
            body: body.map(Box::new),
            timeout: timeout?,
            max_body: max_body?,
            conditional: s.conditional.unwrap_or(true),
            paginate: paginate?.map(Box::new),
            cursor: cursor?.map(Box::new),
            format: format?,
            auth: auth?.map(Box::new),
            proxy: proxy?.map(Box::new),
        })
    }

    /// `source.max_body`, a size; 16 MiB without one.
    fn max_body(&mut self, max_body: Option<&String>) -> Option<u64> {
        match max_body {
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
        }
    }

    /// `source.paginate` and `source.cursor`, checked together (`Some(None)` for none, `None`
    /// for a problem): a GraphQL variable needs an object body, and the two set different names.
    fn listing(
        &mut self,
        s: &raw::RawSource,
    ) -> (Option<Option<Paginate>>, Option<Option<Cursor>>) {
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
        (paginate, cursor)
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
}
