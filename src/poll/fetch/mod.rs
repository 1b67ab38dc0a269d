//! A bridge's listing, fetched: one HTTP request per page, with the source's method, headers,
//! body, timeout and size limit, conditional on the page's last 200, following the next-page
//! links up to `max_pages`. Gives the pages in order, or a reason an operator can act on. The
//! fetch side of a poll (load → fetch → apply), in four rooms:
//!
//! - `request`: one HTTP request → an answer (headers, validators, body limits, redirects,
//!   rate-limit headers)
//! - `body`: a body → the page's JSON text (the JSON check, other `format`s converted)
//! - `listing`: the loop over pages, the 304 cache, [`Listing`] and [`Incomplete`]
//! - `paging`: where the next page is (link, url, param, variable, page, offset, has_more)
//!
//! What it needs of the bridge's stored state while it fetches comes through two narrow
//! traits, which the store side implements (`poll::load`): [`PageBodies`], the bodies a 304
//! stands for, and [`TokenKeeper`], the newest refresh token of the source's login.

mod body;
mod listing;
pub mod paging;
mod request;

pub use crate::auth::TokenKeeper;
pub use body::{MAX_DEPTH, check_json};
pub use listing::{Cache, Incomplete, Listing, PageDoc, fetch_listing};

use super::plan::Approach;
use crate::auth::Sessions;
use crate::clock::Clock;
use crate::config::{Bridge, Source};
use crate::extract;
use crate::runtime::{Clients, MemoryBudget, Reservation, Short};
use crate::store::CachedPage;
use chrono::{DateTime, Utc};
use std::collections::HashMap;
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
    /// The poll's share of the memory budget: more than the whole budget
    /// ([`Short::Exceeds`]), or not at once ([`Short::Wait`], which the fetch answers by
    /// waiting for it and starting again: it never ends a poll).
    #[error("{url}: {short}")]
    Memory { url: String, short: Short },
    /// A 304 stands for a cached body that cannot be read back.
    #[error("{url}: answered 304 but its cached body cannot be read: {reason}")]
    Cache { url: String, reason: String },
}

/// Where a 304's body is read back: the body of the page's last 200, kept with the item state
/// it produced (by the store, in a poll: `poll::load`). Called off the async workers.
pub trait PageBodies: Send + Sync {
    /// The kept body of the page whose `page_key` is `key`; None when none is kept. Blocks.
    fn body(&self, key: &str) -> Result<Option<String>, Box<dyn std::error::Error + Send + Sync>>;
}

/// What a bridge's fetch reads and keeps of its stored state while it fetches.
#[derive(Clone)]
pub struct Kept {
    pub bodies: Arc<dyn PageBodies>,
    pub tokens: Arc<dyn TokenKeeper>,
}

/// What a fetch takes of the daemon's shared handles: the clients, the sources' login
/// sessions, the signal that the daemon is stopping, the clock (for the pauses a source
/// asks for, and when a token is to be renewed), and the memory budget of all polls.
#[derive(Clone, Copy)]
pub struct Sourcing<'a> {
    pub clients: &'a Clients,
    pub memory: &'a MemoryBudget,
    pub sessions: &'a Sessions,
    pub stopping: &'a tokio_util::sync::CancellationToken,
    pub clock: &'a Clock,
    /// The watchdog's steps: a poll waiting in line for memory is not overdue meanwhile.
    pub beats: &'a crate::runtime::Beats,
}

/// The listing, and its pages' documents unless `stop_if_unchanged` and every page answered
/// 304, read within the poll's share of the memory budget (`memory`). When a page needs more
/// than can be had at once, everything read is let go, the poll waits in line for the whole
/// of its need, and the listing is asked for again from its first page.
async fn fetch_documents(
    (ctx, kept): (Sourcing<'_>, &Kept),
    bridge: &Bridge,
    source: &Source,
    (cache, stop_if_unchanged): (Option<&Cache<'_>>, bool),
    memory: &mut Reservation,
) -> Result<(Listing, Option<Vec<extract::Page>>), FetchError> {
    loop {
        memory.restart();
        let fetched = fetch_pages(
            (ctx, kept),
            bridge,
            source,
            cache,
            stop_if_unchanged,
            memory,
        );
        let (url, need) = match fetched.await {
            Err(FetchError::Memory {
                url,
                short: Short::Wait { need },
            }) => (url, need),
            r => return r,
        };
        tracing::debug!(need, "waiting for the poll's share of the memory budget");
        let waiting = ctx.beats.waiting();
        let waited = memory.wait_for(need, ctx.stopping).await;
        drop(waiting);
        match waited {
            Ok(true) => {}
            Ok(false) => return Err(FetchError::Stopped { url }),
            Err(short) => return Err(FetchError::Memory { url, short }),
        }
    }
}

/// Every page of the listing, and their documents (see [`fetch_documents`]).
async fn fetch_pages(
    (ctx, kept): (Sourcing<'_>, &Kept),
    bridge: &Bridge,
    source: &Source,
    cache: Option<&Cache<'_>>,
    stop_if_unchanged: bool,
    memory: &mut Reservation,
) -> Result<(Listing, Option<Vec<extract::Page>>), FetchError> {
    let client = ctx.clients.source(source.proxy.as_deref());
    let session = source
        .auth
        .as_ref()
        .map(|a| (ctx.sessions.of(&bridge.name, a), a));
    let login = session.as_ref().map(|(session, auth)| crate::auth::LogIn {
        session,
        auth,
        client: &client,
        tokens: &kept.tokens,
        bridge: &bridge.name,
        timeout: source.timeout,
        clock: ctx.clock,
    });
    let mut listing = fetch_listing(
        &client,
        login.as_ref(),
        source,
        cache,
        &bridge.items.select,
        (ctx.stopping, ctx.clock, &mut *memory),
    )
    .await?;
    if stop_if_unchanged && listing.unchanged() {
        return Ok((listing, None));
    }
    let documents = listing.documents(cache, &mut *memory).await?;
    memory.trim();
    Ok((listing, Some(documents)))
}

/// The listing (with `conditional`, a GET source asking for 304s), asked for with the
/// validators of the kept pages where they can be trusted;
/// a 304 that stands for a body not kept is asked for again without them. Also whether stored
/// records may match the new ones without a write (not those that failed a 304), and the
/// poll's share of the memory budget, to hold until the documents are let go.
pub async fn fetch_conditional(
    (ctx, kept): (Sourcing<'_>, &Kept),
    bridge: &Bridge,
    source: &Source,
    cached: &HashMap<String, CachedPage>,
    approach: Approach,
) -> Result<Fetched, FetchError> {
    let mut memory = ctx.memory.reservation();
    let empty = HashMap::new();
    let cache = Cache {
        pages: if approach.trusted { cached } else { &empty },
        bodies: &kept.bodies,
        keep_bodies: approach.keep_bodies,
    };
    let cache = approach.conditional.then_some(&cache);
    let stop_if_unchanged = approach.stop_if_unchanged;
    let first = (cache, stop_if_unchanged);
    match fetch_documents((ctx, kept), bridge, source, first, &mut memory).await {
        // A 304 stands for a body that is not stored (it was not needed when stored, or was
        // lost): ask again, without validators.
        Err(FetchError::Cache { url, reason }) => {
            // `url` is redacted by rule (passwords, token-like parameters); a `${…}` value
            // elsewhere in it is masked by the bridge's own secrets.
            let r = crate::redact::Redactor::new(&bridge.secrets);
            tracing::warn!(url = %r.clean(&url), "poll {}: {}: fetching the listing again without validators", bridge.name, r.clean(&reason));
            let again = cache.map(|c| Cache {
                pages: &empty,
                ..*c
            });
            let again = (again.as_ref(), false);
            let (listing, documents) =
                fetch_documents((ctx, kept), bridge, source, again, &mut memory).await?;
            Ok((listing, documents, false, memory))
        }
        r => {
            let (listing, documents) = r?;
            Ok((listing, documents, true, memory))
        }
    }
}

/// A listing fetched: the listing, its documents (none when unchanged), whether stored
/// records may match the new ones without a write, and the poll's share of the memory
/// budget.
pub type Fetched = (Listing, Option<Vec<extract::Page>>, bool, Reservation);
