//! One HTTP request for one page of a listing, and what it answered: the source's method,
//! headers and body, the login's header, the validators of the page's last 200 (a 304 then
//! stands for it), the body read within `max_body` and the timeout, redirects refused beyond
//! the source's origin, and the pause a rate-limit header asks for. The body comes back as the
//! page's JSON text (`body`), or the reason it cannot.

use super::FetchError;
use super::body::{converted, json_text};
use super::paging::PageRequest;
use crate::auth::LogIn;
use crate::clock::Clock;
use crate::config::Source;
use crate::config::raw::Method;
use crate::formats::Format;
use crate::http::{Asked, SourceClient, error_chain};
use crate::poll::ratelimit;
use crate::runtime::{Reservation, budget_need};
use crate::store::CachedPage;
use chrono::{DateTime, Utc};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::sync::Arc;

/// Tells the operator, once per listing, of a rate-limit header that was ignored.
#[derive(Default)]
pub(super) struct Unreadable {
    told: bool,
}

impl Unreadable {
    fn tell(&mut self, (header, value): (&str, String)) {
        if std::mem::replace(&mut self.told, true) {
            return;
        }
        // Not a secret, but the source's to choose: short, and printable.
        let mut shown: String = value.chars().take(64).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        tracing::warn!(
            header = %header,
            value = ?shown,
            "ignored a rate-limit header that does not parse (seconds or an HTTP date expected)"
        );
    }
}

/// What one page answered.
pub(super) enum Answer {
    /// A 200 with its text (checked to be JSON) and, when it carried a validator and is to be
    /// recorded, the record that lets a later 304 stand for it.
    Fresh {
        text: Arc<String>,
        record: Option<CachedPage>,
    },
    NotModified,
}

pub(super) struct Answered {
    pub answer: Answer,
    /// The `Link` header (for a 304 the cached one counts).
    pub link: Option<String>,
    pub pause_until: Option<DateTime<Utc>>,
}

/// One request, with its whole exchange (body included) within `timeout`. With a login, the
/// token is had first; a 401 to a token gets a new one and one more try
/// (docs/configuration.md#logging-in). The body is read within the poll's share of the memory
/// budget (`memory`), which it grows as it needs.
pub(super) async fn fetch_page(
    (client, login, clock): (&SourceClient, Option<&LogIn<'_>>, &Clock),
    src: &Source,
    page: &PageRequest,
    (shown, cached): (&str, Option<&CachedPage>),
    (record, memory): (bool, &mut Reservation),
    unreadable: &mut Unreadable,
) -> Result<Answered, FetchError> {
    let mut renew = false;
    loop {
        let auth = match login {
            Some(l) => Some(l.header(renew).await?),
            None => None,
        };
        let inner = fetch_inner(
            (client, auth, clock),
            src,
            page,
            (shown, cached),
            (record, &mut *memory),
            unreadable,
        );
        let r = match tokio::time::timeout(src.timeout, inner).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout {
                url: shown.to_string(),
                after: src.timeout,
            }),
        };
        match r {
            Err(FetchError::Status { status: 401, .. })
                if !renew && login.is_some_and(LogIn::renewable) =>
            {
                // No URL: its path may hold an interpolated secret this line would not mask.
                tracing::info!("the source answered 401: asking for a new token, then once more");
                renew = true;
            }
            r => return r,
        }
    }
}

fn header_text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
}

/// The request for one page: the source's method, headers and body (or the page's, when it
/// sets a variable), and the validators of its last 200 when there is one.
fn request(
    client: &SourceClient,
    src: &Source,
    page: &PageRequest,
    cached: Option<&CachedPage>,
    auth: Option<(HeaderName, HeaderValue)>,
) -> reqwest::RequestBuilder {
    let mut req = match src.method {
        Method::GET => client.get(page.url.clone()),
        Method::POST => client.post(page.url.clone()),
    };
    for (k, v) in src.headers.iter().cloned().chain(auth) {
        req = req.header(k, v);
    }
    if let Some(body) = page.body.as_ref().or(src.body.as_deref()) {
        req = req.json(body);
    }
    if let Some(c) = cached {
        if let Some(etag) = &c.etag {
            req = req.header(header::IF_NONE_MATCH, etag);
        }
        if let Some(lm) = &c.last_modified {
            req = req.header(header::IF_MODIFIED_SINCE, lm);
        }
    }
    req
}

/// The `Link` header; several `Link` lines are one list (RFC 9110 §5.3).
fn link_header(headers: &HeaderMap) -> Option<String> {
    let link = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    (!link.is_empty()).then_some(link)
}

/// A page answered with a status that is not a success: rate limited when it said until when.
fn refused(url: &str, status: u16, pause_until: Option<DateTime<Utc>>) -> FetchError {
    match pause_until {
        Some(until) => FetchError::RateLimited {
            url: url.to_string(),
            status,
            until,
        },
        None => FetchError::Status {
            url: url.to_string(),
            status,
        },
    }
}

/// What a body of unknown length is first reserved for; the reservation doubles as it comes.
const FIRST_SHARE: u64 = 64 << 10;

/// The body, refused as soon as it is known to exceed `max_body` (declared or as it arrives),
/// read within the poll's share of the memory budget: reserved for whole when its length is
/// declared, else grown (doubling) as it arrives. A share not to be had at once ends the read
/// ([`crate::runtime::Short::Wait`]: the listing starts again once it is free).
async fn read_body(
    resp: &mut reqwest::Response,
    (max_body, memory): (u64, &mut Reservation),
    url: &str,
    http: impl Fn(reqwest::Error) -> FetchError,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: max_body,
    };
    let short = |short| FetchError::Memory {
        url: url.to_string(),
        short,
    };
    if resp.content_length().is_some_and(|n| n > max_body) {
        return Err(too_large());
    }
    let mut share = resp.content_length().unwrap_or(FIRST_SHARE).min(max_body);
    memory.page(budget_need(share, 0)).map_err(short)?;
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(&http)? {
        let len = body.len() as u64 + chunk.len() as u64;
        if len > max_body {
            return Err(too_large());
        }
        if len > share {
            // Twice what came so far, or (should that not fit the budget) just that.
            share = len.saturating_mul(2).min(max_body);
            memory
                .page(budget_need(share, 0))
                .or_else(|_| memory.page(budget_need(len, 0)))
                .map_err(short)?;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One page's exchange; `auth` is the login's header, when the source has one.
async fn fetch_inner(
    (client, auth, clock): (&SourceClient, Option<(HeaderName, HeaderValue)>, &Clock),
    src: &Source,
    page: &PageRequest,
    (url, cached): (&str, Option<&CachedPage>),
    (record, memory): (bool, &mut Reservation),
    unreadable: &mut Unreadable,
) -> Result<Answered, FetchError> {
    let req = request(client, src, page, cached, auth);
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        reason: error_chain(e),
    };
    let mut resp = client.send(req, Asked::Page).await.map_err(|e| {
        if e.is_redirect() {
            FetchError::Redirect {
                url: url.to_string(),
                reason: error_chain(e),
            }
        } else {
            http(e)
        }
    })?;
    let status = resp.status();
    let headers = resp.headers();
    let pause = ratelimit::pause_until(status.as_u16(), headers, clock.now());
    if let Some(u) = pause.unreadable {
        unreadable.tell(u);
    }
    let pause_until = pause.until;
    let link = link_header(headers);
    if status == reqwest::StatusCode::NOT_MODIFIED && cached.is_some() {
        return Ok(Answered {
            answer: Answer::NotModified,
            link,
            pause_until,
        });
    }
    if !status.is_success() {
        return Err(refused(url, status.as_u16(), pause_until));
    }
    let etag = header_text(headers, header::ETAG);
    let last_modified = header_text(headers, header::LAST_MODIFIED);
    let content_type = header_text(headers, header::CONTENT_TYPE)
        .map(|s| format!(" (content-type {s})"))
        .unwrap_or_default();
    let body = read_body(&mut resp, (src.max_body, &mut *memory), url, http).await?;
    let (text, objects) = match src.format {
        Format::Json => json_text(body, url, content_type)?,
        format => converted(format, body, src.max_body, url, content_type).await?,
    };
    // What the page costs until the poll ends: its text, and what comparing it takes.
    memory
        .settle(budget_need(text.len() as u64, objects as u64))
        .map_err(|short| FetchError::Memory {
            url: url.to_string(),
            short,
        })?;
    let record = (record && (etag.is_some() || last_modified.is_some())).then(|| CachedPage {
        etag,
        last_modified,
        link: link.clone(),
        digest: None,
    });
    Ok(Answered {
        answer: Answer::Fresh {
            text: Arc::new(text),
            record,
        },
        link,
        pause_until,
    })
}
