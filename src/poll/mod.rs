//! One poll of one bridge: fetch -> extract -> diff -> events -> one commit, and the
//! scheduler that runs polls on time.

pub mod fetch;
pub mod paginate;
pub mod ratelimit;
pub mod scheduler;

use crate::config::Bridge;
use crate::config::raw::{FirstPoll, Method};
use crate::diff::{self, Baseline, ChangeKind, HeldBack, Write};
use crate::event::{self, Event, EventType, Side};
use crate::extract::{self, ExtractError};
use crate::runtime::Ctx;
use crate::store::{BridgeMeta, Commit, PageWrite, Store, StoreError};
use chrono::{DateTime, Utc};
pub use fetch::{FetchError, Incomplete};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PollError {
    /// A short word for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Fetch(FetchError::Status { .. }) => "http_status",
            PollError::Fetch(FetchError::Timeout { .. }) => "timeout",
            PollError::Fetch(FetchError::TooLarge { .. }) => "too_large",
            PollError::Fetch(FetchError::NotJson { .. }) => "not_json",
            PollError::Fetch(FetchError::Http { .. }) => "connection",
            PollError::Fetch(FetchError::RateLimited { .. }) => "rate_limited",
            PollError::Fetch(FetchError::Next { .. }) => "next_page",
            PollError::Fetch(FetchError::Cache { .. }) => "store",
            PollError::Extract(_) => "bad_items",
            PollError::Store(_) => "store",
        }
    }

    /// Until when the source asked us not to poll again (a 429/503 `Retry-After` or an
    /// exhausted `X-RateLimit-Remaining`).
    pub fn pause_until(&self) -> Option<DateTime<Utc>> {
        match self {
            PollError::Fetch(FetchError::RateLimited { until, .. }) => Some(*until),
            _ => None,
        }
    }
}

/// What a poll found.
#[derive(Debug, Default)]
pub struct PollReport {
    pub items: usize,
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
    /// The events emitted (after the `emit.events` filter), in `seq` order.
    pub events: Vec<Event>,
    /// True when this poll stored a baseline instead of comparing.
    pub baseline: bool,
    /// True when the baseline was taken because the definition changed.
    pub rebaselined: bool,
    pub held_back: Option<HeldBack>,
    /// Pages fetched (or confirmed by a 304).
    pub pages: usize,
    /// Every page answered 304: nothing was compared, stored or emitted (and `items` is the
    /// number of items stored).
    pub not_modified: bool,
    /// The listing stopped early, so absent items were not counted as missing this poll.
    pub incomplete: Option<Incomplete>,
    /// The source asked us not to poll again before this (`X-RateLimit-Remaining: 0`).
    pub pause_until: Option<DateTime<Utc>>,
}

/// The listing, and its pages' documents unless `stop_if_unchanged` and every page answered
/// 304.
async fn fetch_documents(
    ctx: &Ctx,
    bridge: &Bridge,
    cache: Option<&fetch::Cache<'_>>,
    stop_if_unchanged: bool,
) -> Result<(fetch::Listing, Option<Vec<extract::Page>>), FetchError> {
    let mut listing = fetch::fetch_listing(&ctx.fetcher, &bridge.source, cache).await?;
    if stop_if_unchanged && listing.unchanged() {
        return Ok((listing, None));
    }
    let documents = listing.documents(cache).await?;
    Ok((listing, Some(documents)))
}

/// Polls once. With `commit`, stores the new state and queues the events in one transaction
/// and waits for it to reach the disk; without, changes nothing (a dry run).
///
/// Conditional requests (GET sources with `conditional: true`): each page is asked for with
/// the validators of its last 200, whose body is stored with the item state it produced. A
/// 304 page stands for that body, so a 304 on page 1 never hides a change on page 3. When
/// every page answers 304 the poll ends there, without loading the item state, unless some
/// items are counting absences (`after_missing`), which an unchanged listing still counts on.
/// No validator is sent before a baseline, or when the definition changed (re-baseline).
/// Bodies are stored only where a 304 may need one (a paginated source, or `after_missing`
/// above 1); should a 304 stand for a body that is not there, the listing is fetched again
/// without validators.
///
/// While the store does not take writes, a poll that would commit fails at once; a store
/// error met on the way marks the store failed (see `Ctx::check`).
pub async fn poll_once(
    ctx: &Ctx,
    bridge: &Bridge,
    commit: bool,
    now: DateTime<Utc>,
) -> Result<PollReport, PollError> {
    let store = if commit {
        ctx.writable_store()?
    } else {
        ctx.store()?
    };
    let r = poll_with(ctx, &store, bridge, commit, now).await;
    if let Err(PollError::Store(e)) = &r {
        ctx.store_failed(e);
    }
    r
}

async fn poll_with(
    ctx: &Ctx,
    st: &Store,
    bridge: &Bridge,
    commit: bool,
    now: DateTime<Utc>,
) -> Result<PollReport, PollError> {
    let conditional = bridge.source.conditional && bridge.source.method == Method::GET;
    let store = st.clone();
    let name = bridge.name.clone();
    let (meta, cached) = tokio::task::spawn_blocking(move || -> Result<_, StoreError> {
        Ok((store.meta(&name)?, store.pages(&name)?))
    })
    .await
    .expect("meta load does not panic")?;
    let rebaselined =
        meta.baselined && meta.fingerprint.as_deref() != Some(bridge.fingerprint.as_str());
    let trusted = conditional && meta.baselined && !rebaselined;
    let empty = HashMap::new();
    let cache = fetch::Cache {
        pages: if trusted { &cached } else { &empty },
        store: st,
        bridge: &bridge.name,
        keep_bodies: bridge.source.paginate.is_some() || bridge.emit.after_missing > 1,
    };
    let cache = conditional.then_some(&cache);
    // Every page answered 304 and no absence is being counted: nothing to compare.
    let stop_if_unchanged = trusted && meta.absent == 0;
    // Stored records a 200 may match (then it needs no write): not those that failed a 304.
    let mut matchable = &cached;
    let (listing, documents) = match fetch_documents(ctx, bridge, cache, stop_if_unchanged).await {
        // A 304 stands for a body that is not stored (it was not needed when stored, or was
        // lost): ask again, without validators.
        Err(FetchError::Cache { url, reason }) => {
            tracing::warn!(bridge = %bridge.name, url, "{reason}: fetching the listing again without validators");
            let again = cache.map(|c| fetch::Cache {
                pages: &empty,
                ..*c
            });
            matchable = &empty;
            fetch_documents(ctx, bridge, again.as_ref(), false).await?
        }
        r => r?,
    };
    let Some(documents) = documents else {
        return Ok(PollReport {
            items: meta.items,
            pages: listing.pages.len(),
            not_modified: true,
            pause_until: listing.pause_until,
            ..Default::default()
        });
    };
    let pages = documents.len();
    // Items borrow from the documents: unchanged ones are hashed, never copied.
    let items = extract::extract_pages(&documents, &bridge.items)?;
    let fetch::Listing {
        incomplete,
        cache: new_pages,
        pause_until,
        ..
    } = listing;

    let store = st.clone();
    let name = bridge.name.clone();
    let stored = tokio::task::spawn_blocking(move || store.load_state(&name))
        .await
        .expect("state load does not panic")?;
    let baseline = if !meta.baselined {
        match bridge.emit.first_poll {
            FirstPoll::Baseline => Baseline::Silent,
            FirstPoll::Emit => Baseline::Emit,
        }
    } else if rebaselined {
        Baseline::Silent
    } else {
        Baseline::No
    };
    let d = diff::diff(
        &stored,
        &items,
        diff::Options {
            baseline,
            complete: incomplete.is_none(),
            after_missing: bridge.emit.after_missing,
            max_fraction: bridge.emit.max_fraction,
            document: bridge.items.key.is_none(),
        },
    );

    let mut report = PollReport {
        items: items.len(),
        created: d.count(ChangeKind::Created),
        updated: d.count(ChangeKind::Updated),
        deleted: d.count(ChangeKind::Deleted),
        baseline: baseline != Baseline::No,
        rebaselined,
        held_back: d.held_back,
        events: Vec::new(),
        pages,
        not_modified: false,
        incomplete,
        pause_until,
    };

    // The canonical form of each item an event carries; items only stored are put into
    // canonical form one at a time, below (a first poll of a large listing stores them all).
    let mut canon: HashMap<usize, serde_json::Value> = HashMap::new();

    // Events, numbered after the bridge's last seq; the generation is that last seq.
    let mut seq = meta.seq;
    for c in &d.changes {
        let (kind, wanted) = match c.kind {
            ChangeKind::Created => (EventType::Created, bridge.emit.created),
            ChangeKind::Updated => (EventType::Updated, bridge.emit.updated),
            ChangeKind::Deleted => (EventType::Deleted, bridge.emit.deleted),
        };
        if !wanted {
            continue;
        }
        let previous_value = match c.kind {
            ChangeKind::Created => None,
            _ => st.item_value(&bridge.name, &c.key)?,
        };
        let previous_hash = stored.get(&c.key).map(|s| s.hash);
        let previous = match (&previous_value, &previous_hash) {
            (Some(value), Some(hash)) => Some(Side { value, hash }),
            _ => None,
        };
        if let Some(i) = c.item {
            canon.entry(i).or_insert_with(|| items[i].canonical());
        }
        let data = c.item.map(|i| Side {
            value: &canon[&i],
            hash: &items[i].hash,
        });
        seq += 1;
        report.events.push(event::build(event::Spec {
            bridge: &bridge.name,
            kind,
            key: &c.key,
            seq,
            generation: meta.seq,
            detected: now,
            previous,
            data,
        }));
    }

    let new_meta = BridgeMeta {
        seq,
        fingerprint: Some(bridge.fingerprint.clone()),
        baselined: true,
        absent: diff::absent_after(&stored, &d.writes),
        items: diff::stored_after(&stored, &d.writes),
    };
    // A held-back mass delete leaves the state behind the listing: no page is cached then, so
    // the next poll fetches and compares everything again (and warns again) until it resolves.
    // A 200 the same as its stored record (validators, and digest if the body is kept)
    // needs no write either.
    let new_pages: Vec<_> = if d.held_back.is_some() {
        Vec::new()
    } else {
        new_pages
            .into_iter()
            .map(|(k, w)| match w.head() {
                Some(h) if matchable.get(&k) == Some(h) => (k, PageWrite::Keep),
                _ => (k, w),
            })
            .collect()
    };
    let pages_changed = new_pages.iter().any(|(_, w)| *w != PageWrite::Keep)
        || cached
            .keys()
            .any(|k| !new_pages.iter().any(|(n, _)| n == k));
    if !commit || (d.writes.is_empty() && new_meta == meta && !pages_changed) {
        return Ok(report);
    }

    let mut c = Commit {
        bridge: bridge.name.clone(),
        expected_seq: meta.seq,
        base: Some(meta.clone()),
        meta: new_meta,
        pages: new_pages,
        ..Default::default()
    };
    for w in d.writes {
        match w {
            Write::Put { key, item } => {
                let bytes = match canon.get(&item) {
                    Some(v) => serde_json::to_vec(v),
                    None => serde_json::to_vec(&items[item].canonical()),
                }
                .expect("JSON value serialises");
                c.puts.push((key, items[item].hash, bytes));
            }
            Write::Missing { key, missing } => c.missing.push((key, missing)),
            Write::Remove { key } => c.removes.push(key),
        }
    }
    let sinks: Vec<String> = bridge.sinks.iter().map(|s| s.id.clone()).collect();
    c.queue(&sinks, &report.events, now.timestamp_millis());
    // The commit holds all it needs: free the response before writing (a big document's
    // parsed form is the largest thing in memory).
    drop(canon);
    drop(items);
    drop(documents);
    let store = st.clone();
    tokio::task::spawn_blocking(move || store.commit(&c))
        .await
        .expect("commit does not panic")?;
    if !report.events.is_empty() {
        // On disk before the first attempt (SPEC §6).
        st.flush().await?;
        ctx.wake(&bridge.name);
    }
    Ok(report)
}
