//! The loop over a listing's pages: each page asked for (`request`), a 304 standing for the
//! body of the page's last 200 (the cache), the next page found (`paging`) until there is
//! none, a loop, `max_pages`, or a shutdown between two pages. Gives every page in order, and
//! the cache records to store with the poll, or the first failure.

use super::body::scan_json;
use super::paging::{self, PageRequest};
use super::request::{Answer, Answered, Unreadable, fetch_page};
use super::{FetchError, PageBodies};
use crate::auth::LogIn;
use crate::config::Source;
use crate::extract::Page;
use crate::redact;
use crate::runtime::{Reservation, budget_need};
use crate::store::{CachedPage, PageWrite, page_digest, page_key};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

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

    /// The pages in order, cached bodies read now (within the poll's share of the memory
    /// budget, `memory`).
    pub async fn documents(
        &mut self,
        cache: Option<&Cache<'_>>,
        memory: &mut Reservation,
    ) -> Result<Vec<Page>, FetchError> {
        let mut out = Vec::with_capacity(self.pages.len());
        for p in std::mem::take(&mut self.pages) {
            out.push(match (p, cache) {
                (PageDoc::Loaded(p), _) => p,
                (PageDoc::Stored { key, url }, Some(cache)) => {
                    Page::new(cache.body(&key, &url, &mut *memory).await?)
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
/// before the poll, and the bodies, read back (from the store, in a poll) when a 304 needs one.
pub struct Cache<'a> {
    pub pages: &'a HashMap<String, CachedPage>,
    pub bodies: &'a Arc<dyn PageBodies>,
    /// Whether a 304 of this listing may need a page's body (more than one page, or
    /// absences being counted), so that 200 bodies are to be stored.
    pub keep_bodies: bool,
}

impl Cache<'_> {
    /// A page's cached body, counted in the poll's share of the memory budget once read.
    async fn body(
        &self,
        key: &str,
        url: &str,
        memory: &mut Reservation,
    ) -> Result<Arc<String>, FetchError> {
        let (bodies, k) = (self.bodies.clone(), key.to_string());
        let body = crate::runtime::blocking(move || bodies.body(&k)).await;
        let reason = match body {
            // Checked as a fresh body is: an older version may have stored it unchecked.
            Ok(Some(b)) => match scan_json(b.as_bytes()) {
                Ok(objects) => {
                    let need = budget_need(b.len() as u64, objects as u64);
                    return match memory.settle(need) {
                        Ok(()) => Ok(Arc::new(b)),
                        Err(short) => Err(FetchError::Memory {
                            url: url.to_string(),
                            short,
                        }),
                    };
                }
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
/// for and the listing fails with [`FetchError::Stopped`]. Bodies are read within the poll's
/// share of the memory budget, `memory`.
pub async fn fetch_listing(
    client: &crate::http::SourceClient,
    login: Option<&LogIn<'_>>,
    src: &Source,
    cache: Option<&Cache<'_>>,
    select: &crate::jsonpath::Path,
    (stop, clock, memory): (
        &tokio_util::sync::CancellationToken,
        &crate::clock::Clock,
        &mut Reservation,
    ),
) -> Result<Listing, FetchError> {
    let mut listing = Listing::default();
    let mut unreadable = Unreadable::default();
    let mut page = PageRequest::first(src);
    let mut seen = HashSet::new();
    // A 304 page stands for its cached body and the `Link` header that came with it. Only a
    // next page read from the body needs a 304 page parsed before the compare.
    let body_next = src.paginate.as_deref().is_some_and(paging::reads_body);
    // Only a listing of pages can repeat one.
    let paginated = src.paginate.is_some();
    loop {
        if paginated {
            seen.insert(page.identity());
        }
        let key = page_key(page.url.as_str());
        let cached = cache.and_then(|c| c.pages.get(&key));
        let shown = redact::url(&page.url);
        let answered = fetch_page(
            (client, login, clock),
            src,
            &page,
            (&shown, cached),
            (cache.is_some(), &mut *memory),
            &mut unreadable,
        )
        .await?;
        listing.pause_until = listing.pause_until.max(answered.pause_until);
        if matches!(answered.answer, Answer::NotModified) {
            listing.not_modified += 1;
        }
        let (doc, record, link) = page_doc(
            answered,
            (cached, cache),
            (&key, &shown),
            body_next,
            &mut *memory,
        )
        .await?;
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
    (cached, cache): (Option<&CachedPage>, Option<&Cache<'_>>),
    (key, shown): (&str, &str),
    body_next: bool,
    memory: &mut Reservation,
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
                PageDoc::Loaded(Page::new(cache.body(key, shown, memory).await?))
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
        Some(p) => paging::next_page(p, src, page, link, parsed, select).map_err(|reason| {
            FetchError::Next {
                url: shown.to_string(),
                reason,
            }
        })?,
    })
}
