//! A bridge's listing: one HTTP request per page, with the source's method, headers, body,
//! timeout and size limit, conditional on the page's last 200, following the next-page links
//! up to `max_pages`. Gives the parsed pages in order, or a reason an operator can act on.

use super::{paginate, ratelimit};
use crate::config::Source;
use crate::config::raw::Method;
use crate::extract::Page;
use crate::redact;
use crate::store::{CachedPage, PageWrite, Store, page_digest, page_key};
use chrono::{DateTime, Utc};
use reqwest::header::{self, HeaderMap};
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
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
    /// The next-page link of this page cannot be followed.
    #[error("{url}: {reason}")]
    Next { url: String, reason: String },
    /// A 304 stands for a cached body that cannot be read back.
    #[error("{url}: answered 304 but its cached body cannot be read: {reason}")]
    Cache { url: String, reason: String },
}

/// A reqwest error as one line, its causes included, without the URL (which may hold a token;
/// callers print the redacted URL themselves).
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        src = s.source();
    }
    msg
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
            Ok(Some(b)) => return Ok(Arc::new(b)),
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
/// and nothing is recorded.
pub async fn fetch_listing(
    client: &reqwest::Client,
    src: &Source,
    cache: Option<&Cache<'_>>,
) -> Result<Listing, FetchError> {
    let mut listing = Listing::default();
    let mut url = src.url.clone();
    let mut seen = HashSet::new();
    loop {
        seen.insert(url.to_string());
        let key = page_key(url.as_str());
        let cached = cache.and_then(|c| c.pages.get(&key));
        let shown = redact::url(&url);
        let page = fetch_page(client, src, &url, &shown, cached, cache.is_some()).await?;
        listing.pause_until = listing.pause_until.max(page.pause_until);
        // A 304 page stands for its cached body and the `Link` header that came with it.
        // Only a next link in the body needs a 304 page parsed before the compare.
        let body_next = matches!(
            src.paginate.as_ref().map(|p| &p.next),
            Some(crate::config::Next::Url(_) | crate::config::Next::Param { .. })
        );
        let (doc, record, link) = match (page.answer, cached, cache) {
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
                listing.not_modified += 1;
                let doc = if body_next {
                    PageDoc::Loaded(Page::new(cache.body(&key, &shown).await?))
                } else {
                    PageDoc::Stored {
                        key: key.clone(),
                        url: shown.clone(),
                    }
                };
                (doc, Some(PageWrite::Keep), c.link.clone())
            }
            (Answer::NotModified, ..) => {
                return Err(FetchError::Status {
                    url: shown,
                    status: 304,
                });
            }
        };
        let null = serde_json::Value::Null;
        let parsed = match &doc {
            // Parsed only for a next link in the body.
            PageDoc::Loaded(p) if body_next => p.parsed().map_err(|e| FetchError::NotJson {
                url: shown.clone(),
                content_type: String::new(),
                reason: e.to_string(),
            })?,
            // Not needed: no pagination, or `next: link`, which reads only the header.
            _ => &null,
        };
        let next = match &src.paginate {
            None => None,
            Some(p) => paginate::next_url(&p.next, src, &url, link.as_deref(), parsed).map_err(
                |reason| FetchError::Next {
                    url: shown.clone(),
                    reason,
                },
            )?,
        };
        listing.pages.push(doc);
        listing.cache.extend(record.map(|w| (key, w)));
        let Some(next) = next else { break };
        let max_pages = src.paginate.as_ref().map_or(1, |p| p.max_pages);
        if seen.contains(next.as_str()) {
            listing.incomplete = Some(Incomplete::Repeats);
            break;
        }
        if listing.pages.len() >= max_pages as usize {
            listing.incomplete = Some(Incomplete::MaxPages(max_pages));
            break;
        }
        url = next;
    }
    Ok(listing)
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

/// One request, with its whole exchange (body included) within `timeout`.
async fn fetch_page(
    client: &reqwest::Client,
    src: &Source,
    url: &url::Url,
    shown: &str,
    cached: Option<&CachedPage>,
    record: bool,
) -> Result<Answered, FetchError> {
    match tokio::time::timeout(
        src.timeout,
        fetch_inner(client, src, url, shown, cached, record),
    )
    .await
    {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            url: shown.to_string(),
            after: src.timeout,
        }),
    }
}

fn header_text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.to_string())
}

async fn fetch_inner(
    client: &reqwest::Client,
    src: &Source,
    page_url: &url::Url,
    url: &str,
    cached: Option<&CachedPage>,
    record: bool,
) -> Result<Answered, FetchError> {
    let mut req = match src.method {
        Method::GET => client.get(page_url.clone()),
        Method::POST => client.post(page_url.clone()),
    };
    for (k, v) in &src.headers {
        req = req.header(k, v);
    }
    if let Some(body) = &src.body {
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
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        reason: error_chain(e),
    };
    let mut resp = req.send().await.map_err(http)?;
    let status = resp.status();
    let headers = resp.headers();
    let pause_until = ratelimit::pause_until(status.as_u16(), headers, Utc::now());
    // Several `Link` lines are one list (RFC 9110 §5.3).
    let link = headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(", ");
    let link = (!link.is_empty()).then_some(link);
    if status == reqwest::StatusCode::NOT_MODIFIED && cached.is_some() {
        return Ok(Answered {
            answer: Answer::NotModified,
            link,
            pause_until,
        });
    }
    if !status.is_success() {
        return Err(match pause_until {
            Some(until) => FetchError::RateLimited {
                url: url.to_string(),
                status: status.as_u16(),
                until,
            },
            None => FetchError::Status {
                url: url.to_string(),
                status: status.as_u16(),
            },
        });
    }
    let etag = header_text(headers, header::ETAG);
    let last_modified = header_text(headers, header::LAST_MODIFIED);
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: src.max_body,
    };
    if resp.content_length().is_some_and(|n| n > src.max_body) {
        return Err(too_large());
    }
    let content_type = header_text(headers, header::CONTENT_TYPE)
        .map(|s| format!(" (content-type {s})"))
        .unwrap_or_default();
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        if body.len() as u64 + chunk.len() as u64 > src.max_body {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    // Checked here, not parsed: the selection reads what it needs from the text.
    serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| FetchError::NotJson {
        url: url.to_string(),
        content_type: content_type.clone(),
        reason: if e.is_eof() {
            format!("truncated after {} bytes ({e})", body.len())
        } else {
            e.to_string()
        },
    })?;
    let text = String::from_utf8(body).map_err(|e| FetchError::NotJson {
        url: url.to_string(),
        content_type,
        reason: format!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
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
