//! A bridge's listing: one HTTP request per page, with the source's method, headers, body,
//! timeout and size limit, conditional on the page's last 200, following the next-page links
//! up to `max_pages`. Gives the parsed pages in order, or a reason an operator can act on.
//! A body in another `format` (docs/configuration.md#formats) becomes its JSON form here, before
//! anything reads it, so next links, the 304 cache and the selection see JSON only.

use super::paginate::{self, PageRequest};
use super::ratelimit;
use crate::auth::LogIn;
use crate::config::Source;
use crate::config::raw::Method;
use crate::extract::Page;
use crate::formats::{self, Format};
use crate::redact;
use crate::store::{CachedPage, PageWrite, Store, page_digest, page_key};
use chrono::{DateTime, Utc};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: answered HTTP {status}: rate limited, no poll before {}", .until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    RateLimited {
        url: String,
        status: u16,
        until: DateTime<Utc>,
    },
    #[error("{url}: no complete answer within {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    #[error("{url}: response body exceeds max_body ({limit} bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: response is not JSON{content_type}: {reason}")]
    NotJson {
        url: String,
        content_type: String,
        reason: String,
    },
    /// A body that does not parse in the source's `format` (not `json`, whose failures stay
    /// [`FetchError::NotJson`], reason `not_json`, as they always were).
    #[error("{url}: response does not parse as `format: {format}`{content_type}: {reason}")]
    BadBody {
        url: String,
        format: &'static str,
        content_type: String,
        reason: String,
    },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    /// A redirect that is not followed: to another origin, or one too many
    /// (docs/configuration.md#redirects).
    #[error("{url}: {reason}")]
    Redirect { url: String, reason: String },
    /// The next-page link of this page cannot be followed.
    #[error("{url}: {reason}")]
    Next { url: String, reason: String },
    /// The source's token could not be had (docs/configuration.md#logging-in).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthError),
    /// The daemon began to shut down while pages were still to come: the poll ends there
    /// and stores nothing.
    #[error("{url}: the daemon is stopping; the poll ends before this page and stores nothing")]
    Stopped { url: String },
    /// A 304 stands for a cached body that cannot be read back.
    #[error("{url}: answered 304 but its cached body cannot be read: {reason}")]
    Cache { url: String, reason: String },
}

use crate::http::error_chain;

/// The deepest nesting of arrays and objects a page may have: as deep as serde_json reads a
/// document into a value (its recursion limit), so that every page accepted reads whole, and
/// every item in it.
pub const MAX_DEPTH: usize = 127;

/// Object keys serde_json gives a meaning of its own when it reads a value: an object whose
/// first key is one of these is read as an exact number, or as the JSON text in its string
/// (parsed again, with a fresh depth limit). A page may not hold them as keys anywhere: once
/// stored and read back (keys sorted, so first), they would change meaning or fail.
const RESERVED_KEYS: [&str; 2] = [
    "$serde_json::private::Number",
    "$serde_json::private::RawValue",
];

/// Checks that a body is a JSON document pollhook can read: valid JSON (numbers of any size
/// and precision are), nested at most [`MAX_DEPTH`] deep, no key of [`RESERVED_KEYS`]. The
/// reason otherwise.
pub fn check_json(body: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|e| {
        if e.is_eof() {
            format!("truncated after {} bytes ({e})", body.len())
        } else {
            e.to_string()
        }
    })?;
    // Skipping a value (above) has no depth limit and gives keys no meaning; reading one into
    // a tree does both. A walk over the bytes of valid JSON: strings, brackets, colons.
    let mut depth = 0usize;
    // Inside a string: where it started and whether it has an escape.
    let mut string: Option<(usize, bool)> = None;
    let mut escaped = false;
    // The last string closed could be a reserved key, if a colon follows.
    let mut reserved: Option<&str> = None;
    for (at, &b) in body.iter().enumerate() {
        if let Some((start, escapes)) = &mut string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => (escaped, *escapes) = (true, true),
                b'"' => {
                    reserved = reserved_key(&body[*start..=at], *escapes);
                    string = None;
                }
                _ => {}
            }
            continue;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => continue,
            b':' => {
                if let Some(key) = reserved {
                    return Err(format!("the key `{key}` is reserved (at byte {at})"));
                }
            }
            b'"' => string = Some((at, false)),
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(format!(
                        "nested deeper than {MAX_DEPTH} levels (at byte {at})"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        reserved = None;
    }
    Ok(())
}

/// The reserved key a JSON string (quotes included) spells, escapes undone.
fn reserved_key(quoted: &[u8], escapes: bool) -> Option<&'static str> {
    let longest = RESERVED_KEYS.iter().map(|k| k.len()).max().unwrap_or(0);
    let text: Cow<'_, str> = if !escapes {
        Cow::Borrowed(std::str::from_utf8(quoted.get(1..quoted.len() - 1)?).ok()?)
    } else if quoted.len() <= 2 + 6 * longest {
        Cow::Owned(serde_json::from_slice::<String>(quoted).ok()?)
    } else {
        return None;
    };
    RESERVED_KEYS.iter().copied().find(|k| *k == text)
}

/// Tells the operator, once per listing, of a rate-limit header that was ignored.
struct Unreadable {
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

/// Why a listing stopped before its last page: then absence means nothing (no deletes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incomplete {
    /// `max_pages` pages were fetched and another was pending.
    MaxPages(u32),
    /// A next link pointed at a page already fetched in this poll (a loop).
    Repeats,
}

impl std::fmt::Display for Incomplete {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incomplete::MaxPages(n) => write!(f, "max_pages ({n}) reached with more pages pending"),
            Incomplete::Repeats => f.write_str("a next-page link repeats a page already fetched"),
        }
    }
}

/// One page of a listing: its text, or (a 304 whose body nothing needed yet) where the cached
/// body is, read only if the poll goes on to compare, so an unchanged listing costs no reading.
#[derive(Debug)]
pub enum PageDoc {
    Loaded(Page),
    Stored { key: String, url: String },
}

/// Every page of a listing, fetched before anything is compared.
#[derive(Debug, Default)]
pub struct Listing {
    /// The pages in order (a 304 page stands for its cached body).
    pub pages: Vec<PageDoc>,
    /// Pages that answered 304 (the rest answered 200).
    pub not_modified: usize,
    pub incomplete: Option<Incomplete>,
    /// The cache records to store with this poll's state, by `page_key` (conditional GET
    /// sources only; pages that carried no validator have none).
    pub cache: Vec<(String, PageWrite)>,
    /// The latest time any answer asked us not to poll before (`X-RateLimit-*`).
    pub pause_until: Option<DateTime<Utc>>,
}

impl Listing {
    /// Every page answered 304: nothing changed upstream.
    pub fn unchanged(&self) -> bool {
        self.not_modified == self.pages.len()
    }

    /// The pages in order, cached bodies read now.
    pub async fn documents(&mut self, cache: Option<&Cache<'_>>) -> Result<Vec<Page>, FetchError> {
        let mut out = Vec::with_capacity(self.pages.len());
        for p in std::mem::take(&mut self.pages) {
            out.push(match (p, cache) {
                (PageDoc::Loaded(p), _) => p,
                (PageDoc::Stored { key, url }, Some(cache)) => {
                    Page::new(cache.body(&key, &url).await?)
                }
                (PageDoc::Stored { url, .. }, None) => {
                    return Err(FetchError::Cache {
                        url,
                        reason: "no cache given".into(),
                    });
                }
            });
        }
        Ok(out)
    }
}

/// Where a conditional listing finds its pages' last 200 answers: the validators, loaded
/// before the poll, and the bodies, read from the store when a 304 needs one.
pub struct Cache<'a> {
    pub pages: &'a HashMap<String, CachedPage>,
    pub store: &'a Store,
    pub bridge: &'a str,
    /// Whether a 304 of this listing may need a page's body (more than one page, or
    /// absences being counted), so that 200 bodies are to be stored.
    pub keep_bodies: bool,
}

impl Cache<'_> {
    async fn body(&self, key: &str, url: &str) -> Result<Arc<String>, FetchError> {
        let (store, bridge, k) = (self.store.clone(), self.bridge.to_string(), key.to_string());
        let body = tokio::task::spawn_blocking(move || store.page_body(&bridge, &k))
            .await
            .expect("page read does not panic");
        let reason = match body {
            // Checked as a fresh body is: an older version may have stored it unchecked.
            Ok(Some(b)) => match check_json(b.as_bytes()) {
                Ok(()) => return Ok(Arc::new(b)),
                Err(e) => format!("it is not JSON pollhook reads ({e})"),
            },
            Ok(None) => "it is not stored".to_string(),
            Err(e) => e.to_string(),
        };
        Err(FetchError::Cache {
            url: url.to_string(),
            reason,
        })
    }
}

/// Fetches every page of the source's listing. With `cache` (a conditional GET source), pages
/// found there are asked for with `If-None-Match` / `If-Modified-Since`, a 304 stands for the
/// cached body, and the listing carries the records to store. Without, no validator is sent
/// and nothing is recorded. `select` is the items' path: page-number and offset listings end
/// at a page without items. Once `stop` is cancelled (a shutdown), no further page is asked
/// for and the listing fails with [`FetchError::Stopped`].
pub async fn fetch_listing(
    client: &reqwest::Client,
    login: Option<&LogIn<'_>>,
    src: &Source,
    cache: Option<&Cache<'_>>,
    select: &crate::jsonpath::Path,
    stop: &tokio_util::sync::CancellationToken,
) -> Result<Listing, FetchError> {
    let mut listing = Listing::default();
    let mut unreadable = Unreadable { told: false };
    let mut page = PageRequest::first(src);
    let mut seen = HashSet::new();
    // A 304 page stands for its cached body and the `Link` header that came with it. Only a
    // next page read from the body needs a 304 page parsed before the compare.
    let body_next = src.paginate.as_ref().is_some_and(paginate::reads_body);
    loop {
        seen.insert(page.identity());
        let key = page_key(page.url.as_str());
        let cached = cache.and_then(|c| c.pages.get(&key));
        let shown = redact::url(&page.url);
        let answered = fetch_page(
            (client, login),
            src,
            &page,
            &shown,
            cached,
            cache.is_some(),
            &mut unreadable,
        )
        .await?;
        listing.pause_until = listing.pause_until.max(answered.pause_until);
        if matches!(answered.answer, Answer::NotModified) {
            listing.not_modified += 1;
        }
        let (doc, record, link) =
            page_doc(answered, cached, cache, &key, &shown, body_next).await?;
        let next = next_page(src, &page, link.as_deref(), &doc, body_next, &shown, select)?;
        listing.pages.push(doc);
        listing.cache.extend(record.map(|w| (key, w)));
        let Some(next) = next else { break };
        let max_pages = src.paginate.as_ref().map_or(1, |p| p.max_pages);
        if seen.contains(&next.identity()) {
            listing.incomplete = Some(Incomplete::Repeats);
            break;
        }
        if listing.pages.len() >= max_pages as usize {
            listing.incomplete = Some(Incomplete::MaxPages(max_pages));
            break;
        }
        if stop.is_cancelled() {
            return Err(FetchError::Stopped {
                url: redact::url(&next.url),
            });
        }
        page = next;
    }
    Ok(listing)
}

/// A page's document and the record to store for it: the body that came, or the cached one a
/// 304 stands for (loaded only when its next link is in the body), with its `Link` header.
async fn page_doc(
    page: Answered,
    cached: Option<&CachedPage>,
    cache: Option<&Cache<'_>>,
    key: &str,
    shown: &str,
    body_next: bool,
) -> Result<(PageDoc, Option<PageWrite>, Option<String>), FetchError> {
    Ok(match (page.answer, cached, cache) {
        (Answer::Fresh { text, record }, ..) => {
            let keep = cache.is_some_and(|c| c.keep_bodies);
            let record = record.map(|mut r| {
                if keep {
                    r.digest = Some(page_digest(&text));
                    PageWrite::Full(r, text.clone())
                } else {
                    PageWrite::Head(r)
                }
            });
            (PageDoc::Loaded(Page::new(text)), record, page.link)
        }
        (Answer::NotModified, Some(c), Some(cache)) => {
            let doc = if body_next {
                PageDoc::Loaded(Page::new(cache.body(key, shown).await?))
            } else {
                PageDoc::Stored {
                    key: key.to_string(),
                    url: shown.to_string(),
                }
            };
            (doc, Some(PageWrite::Keep), c.link.clone())
        }
        (Answer::NotModified, ..) => {
            return Err(FetchError::Status {
                url: shown.to_string(),
                status: 304,
            });
        }
    })
}

/// The next page's request, from the `Link` header or the body as the source paginates.
fn next_page(
    src: &Source,
    page: &PageRequest,
    link: Option<&str>,
    doc: &PageDoc,
    body_next: bool,
    shown: &str,
    select: &crate::jsonpath::Path,
) -> Result<Option<PageRequest>, FetchError> {
    let null = serde_json::Value::Null;
    let parsed = match doc {
        // Parsed only for a next link in the body.
        PageDoc::Loaded(p) if body_next => p.parsed().map_err(|e| FetchError::NotJson {
            url: shown.to_string(),
            content_type: String::new(),
            reason: e.to_string(),
        })?,
        // Not needed: no pagination, or `next: link`, which reads only the header.
        _ => &null,
    };
    Ok(match &src.paginate {
        None => None,
        Some(p) => paginate::next_page(p, src, page, link, parsed, select).map_err(|reason| {
            FetchError::Next {
                url: shown.to_string(),
                reason,
            }
        })?,
    })
}

enum Answer {
    /// A 200 with its text (checked to be JSON) and, when it carried a validator and is to be
    /// recorded, the record that lets a later 304 stand for it.
    Fresh {
        text: Arc<String>,
        record: Option<CachedPage>,
    },
    NotModified,
}

struct Answered {
    answer: Answer,
    /// The `Link` header (for a 304 the cached one counts).
    link: Option<String>,
    pause_until: Option<DateTime<Utc>>,
}

/// One request, with its whole exchange (body included) within `timeout`. With a login, the
/// token is had first; a 401 to a token gets a new one and one more try
/// (docs/configuration.md#logging-in).
async fn fetch_page(
    (client, login): (&reqwest::Client, Option<&LogIn<'_>>),
    src: &Source,
    page: &PageRequest,
    shown: &str,
    cached: Option<&CachedPage>,
    record: bool,
    unreadable: &mut Unreadable,
) -> Result<Answered, FetchError> {
    let mut renew = false;
    loop {
        let auth = match login {
            Some(l) => Some(l.header(renew).await?),
            None => None,
        };
        let inner = fetch_inner((client, auth), src, page, shown, cached, record, unreadable);
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
    client: &reqwest::Client,
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
    if let Some(body) = page.body.as_ref().or(src.body.as_ref()) {
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

/// The body, refused as soon as it is known to exceed `max_body` (declared or as it arrives).
async fn read_body(
    resp: &mut reqwest::Response,
    max_body: u64,
    url: &str,
    http: impl Fn(reqwest::Error) -> FetchError,
) -> Result<Vec<u8>, FetchError> {
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: max_body,
    };
    if resp.content_length().is_some_and(|n| n > max_body) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(&http)? {
        if body.len() as u64 + chunk.len() as u64 > max_body {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// One page's exchange; `auth` is the login's header, when the source has one.
async fn fetch_inner(
    (client, auth): (&reqwest::Client, Option<(HeaderName, HeaderValue)>),
    src: &Source,
    page: &PageRequest,
    url: &str,
    cached: Option<&CachedPage>,
    record: bool,
    unreadable: &mut Unreadable,
) -> Result<Answered, FetchError> {
    let req = request(client, src, page, cached, auth);
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        reason: error_chain(e),
    };
    let mut resp = req.send().await.map_err(|e| {
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
    let pause = ratelimit::pause_until(status.as_u16(), headers, Utc::now());
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
    let body = read_body(&mut resp, src.max_body, url, http).await?;
    let text = match src.format {
        Format::Json => json_text(body, url, content_type)?,
        format => converted(format, body, src.max_body, url, content_type).await?,
    };
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

/// A JSON body as the page's text: checked here, not parsed (the selection reads what it
/// needs from the text).
fn json_text(body: Vec<u8>, url: &str, content_type: String) -> Result<String, FetchError> {
    check_json(&body).map_err(|reason| FetchError::NotJson {
        url: url.to_string(),
        content_type: content_type.clone(),
        reason,
    })?;
    String::from_utf8(body).map_err(|e| FetchError::NotJson {
        url: url.to_string(),
        content_type,
        reason: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
    })
}

/// How many times `max_body` a body's JSON form may be (docs/configuration.md#formats): room for a
/// CSV's header names repeated in each row, and a bound on the memory a body of `max_body`
/// can take as text.
const CONVERTED_PER_BODY: u64 = 8;

/// A body in another format as the page's JSON text, checked as a JSON body is. Converted off
/// the async workers (a large feed or XML document takes a while); a converter that panicked
/// (a bug in a parser) fails this page, not the poll task.
async fn converted(
    format: Format,
    body: Vec<u8>,
    max_body: u64,
    url: &str,
    content_type: String,
) -> Result<String, FetchError> {
    let max_text = max_body
        .saturating_mul(CONVERTED_PER_BODY)
        .try_into()
        .unwrap_or(usize::MAX);
    let text = tokio::task::spawn_blocking(move || formats::convert(format, &body, max_text))
        .await
        .unwrap_or_else(|_| Err(format!("the {} reader failed on it", format.name())))
        .and_then(|c| {
            check_json(c.text.as_bytes())
                .map(|()| c)
                .map_err(|e| format!("its JSON form cannot be read ({e})"))
        });
    if let Ok(c) = &text
        && c.renamed > 0
    {
        // Once per page (a feed is one page, as a rule); the bridge's span names the bridge.
        tracing::warn!(
            entries = c.renamed,
            "feed entries without an id of their own read alike (the same link, or the same title and content): the oldest keeps the derived id, each other one gets `#` and its time, or `#2`, `#3`…"
        );
    }
    text.map(|c| c.text).map_err(|reason| FetchError::BadBody {
        url: url.to_string(),
        format: format.name(),
        content_type,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_read_whole_or_refused_with_a_reason() {
        let nested = |d: usize| format!("{}{}", "[".repeat(d), "]".repeat(d));
        // As deep as a value can be read, and no deeper.
        let deepest = nested(MAX_DEPTH);
        assert_eq!(check_json(deepest.as_bytes()), Ok(()));
        serde_json::from_str::<serde_json::Value>(&deepest).unwrap();
        let deeper = nested(MAX_DEPTH + 1);
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err());
        let e = check_json(deeper.as_bytes()).unwrap_err();
        assert_eq!(e, "nested deeper than 127 levels (at byte 127)");
        // Brackets in strings do not count; escaped quotes do not end them.
        let text = format!(
            r#"{{"a": "{}\"{}", "b": [1e400, -0, 100000000000000000001]}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert_eq!(check_json(text.as_bytes()), Ok(()));
        assert!(
            check_json(b"{\"a\": 1")
                .unwrap_err()
                .starts_with("truncated after 7 bytes")
        );
        assert!(check_json(b"[1, 2,]").is_err());
    }

    #[tokio::test]
    async fn a_converted_body_is_checked_as_a_json_body_is() {
        let csv = Format::Csv { delimiter: b',' };
        let text = converted(csv, b"id\n1\n".to_vec(), 1 << 20, "u", String::new()).await;
        assert_eq!(text.unwrap(), r#"[{"id":"1"}]"#);
        // A header that is one of serde_json's markers, and an NDJSON line as deep as a page
        // may be (the array round the lines is one more).
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        for (format, body, want) in [
            (
                csv,
                "$serde_json::private::Number\n1\n".to_string(),
                "is reserved",
            ),
            (Format::Ndjson, deep, "nested deeper than 127"),
        ] {
            let e = converted(
                format,
                body.into_bytes(),
                1 << 20,
                "u",
                " (content-type x)".into(),
            )
            .await
            .unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.starts_with(&format!(
                    "u: response does not parse as `format: {}` (content-type x): its JSON form cannot be read (",
                    format.name()
                )) && shown.contains(want),
                "{shown}"
            );
        }
    }

    #[test]
    fn the_keys_serde_json_reserves_are_refused_wherever_they_are() {
        for body in [
            r#"{"$serde_json::private::Number": "1"}"#,
            r#"{"id": 1, "$serde_json::private::Number": null}"#,
            r#"[{"a": {"$serde_json::private::RawValue" : "[1]"}}]"#,
            r#"{"\u0024serde_json::private::Number": "1"}"#,
            r#"{"$serde_json::private::Raw\u0056alue": "1"}"#,
        ] {
            let e = check_json(body.as_bytes()).unwrap_err();
            assert!(e.contains("is reserved"), "{body}: {e}");
        }
        // As a value, or close to one, it is just a string.
        for body in [
            r#"{"note": "$serde_json::private::Number"}"#,
            r#"["$serde_json::private::Number", 1]"#,
            r#"{"$serde_json::private::Numbers": 1, "\u0024": 2}"#,
        ] {
            assert_eq!(check_json(body.as_bytes()), Ok(()), "{body}");
        }
    }
}
