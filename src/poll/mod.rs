//! One poll of one bridge: load the stored meta (`load`), fetch the listing (`fetch`, which
//! reads the store only through `load`'s narrow side, and `ratelimit`), then decide (`plan`:
//! pure, extract -> diff -> events -> commits) and store (`apply`); and the scheduler that runs
//! polls on time.

pub mod apply;
pub mod cursor;
pub mod failures;
pub mod fetch;
pub mod load;
pub mod plan;
pub mod quiet;
pub mod ratelimit;
pub mod scheduler;
pub mod shape;
pub mod summary;
pub mod traced;

use crate::config::Bridge;
use crate::diff::{ChangeKind, HeldBack};
use crate::event::{Event, EventType};
use crate::extract::ExtractError;
use crate::runtime::{Churn, Ctx, Wakers};
use crate::store::{Store, StoreError};
use apply::apply;
use chrono::{DateTime, Utc};
pub use fetch::{FetchError, Incomplete};
use load::load;
use plan::{Approach, Listed};
use std::collections::HashMap;

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("{0}")]
    Extract(#[from] ExtractError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The poll panicked (a bug): caught, so that the daemon and the bridge go on.
    #[error("the poll panicked: {0}")]
    Panicked(String),
}

impl PollError {
    /// A short word for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            PollError::Fetch(FetchError::Status { .. }) => "http_status",
            PollError::Fetch(FetchError::Timeout { .. }) => "timeout",
            PollError::Fetch(FetchError::TooLarge { .. }) => "too_large",
            PollError::Fetch(FetchError::NotJson { .. }) => "not_json",
            PollError::Fetch(FetchError::BadBody { .. }) => "bad_body",
            PollError::Fetch(FetchError::Http { .. }) => "connection",
            PollError::Fetch(FetchError::Redirect { .. }) => "redirect",
            PollError::Fetch(FetchError::RateLimited { .. }) => "rate_limited",
            PollError::Fetch(FetchError::Next { .. }) => "next_page",
            PollError::Fetch(FetchError::Cache { .. }) => "store",
            PollError::Fetch(FetchError::Stopped { .. }) => "stopped",
            PollError::Fetch(FetchError::Auth(_)) => "auth",
            PollError::Fetch(FetchError::Memory { .. }) => "memory",
            PollError::Extract(ExtractError::NotJson(_)) => "not_json",
            PollError::Extract(_) => "bad_items",
            PollError::Store(_) => "store",
            PollError::Panicked(_) => "panic",
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
    /// The events emitted (after the `emit.events` filter), in `seq` order: the first
    /// [`REPORTED_EVENTS`] of them (a first poll with `first_poll: emit` may emit millions).
    pub events: Vec<Event>,
    /// How many events were emitted, of each type.
    pub emitted: Emitted,
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
    /// Changes whose `emit.when` failed at run time (and so were emitted), and the first
    /// error, for the poll's WARN line and the metrics.
    pub rule_errors: usize,
    pub rule_error: Option<String>,
    /// The bridge had a streak of failed polls when this one began (`emit.failures`): only
    /// then does a success change what is stored of it.
    pub failing: bool,
    /// `source.cursor` values unlike the cursor, which did not move it (a WARN, once per
    /// bridge and process).
    pub cursor_unlike: Option<cursor::Unlike>,
    /// The poll found the data (or the cursor) changed, or took a baseline: `emit.quiet`
    /// counts a quiet spell from the last such poll.
    pub changed: bool,
    /// The paths its updates changed (docs/testing-bridges.md#churn-and-suggest).
    pub churn: crate::churn::Tally,
    /// The items' shape drifted (`emit.shape`, docs/testing-bridges.md#shape-drift).
    pub shape: Option<shape::Note>,
}

/// Events emitted by a poll, by type.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Emitted {
    pub created: usize,
    pub updated: usize,
    pub deleted: usize,
}

impl Emitted {
    fn add(&mut self, kind: ChangeKind) {
        match kind {
            ChangeKind::Created => self.created += 1,
            ChangeKind::Updated => self.updated += 1,
            ChangeKind::Deleted => self.deleted += 1,
        }
    }

    /// Of one type (snapshots are not emitted by polls).
    pub fn of(&self, kind: EventType) -> usize {
        match kind {
            EventType::Created => self.created,
            EventType::Updated => self.updated,
            EventType::Deleted => self.deleted,
            EventType::Snapshot
            | EventType::Failing
            | EventType::Recovered
            | EventType::Quiet
            | EventType::Active
            | EventType::ShapeChanged
            | EventType::Test
            | EventType::Batch => 0,
        }
    }

    pub fn total(&self) -> usize {
        self.created + self.updated + self.deleted
    }
}

/// Polls once. With `commit`, stores the new state and queues the events in one transaction
/// (a large poll: one per batch, see [`Batches`]) and waits for it to reach the disk; without,
/// changes nothing (a dry run).
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
/// A poll with many writes (a first poll of a large listing) is stored in batches, each one
/// transaction with its events; see [`Batches`] for what an interrupted one leaves.
///
/// While the store does not take writes, a poll that would commit fails at once; a store
/// error met on the way marks the store failed (see `StoreHandle::check`).
pub async fn poll_once(
    ctx: &Ctx,
    bridge: &Bridge,
    commit: bool,
    now: DateTime<Utc>,
) -> Result<PollReport, PollError> {
    crate::fault::inject("poll-panic", &bridge.name, bridge.source.url.as_str());
    let store = if commit {
        ctx.store.writable()?
    } else {
        ctx.store.get()?
    };
    let sourcing = fetch::Sourcing {
        clients: &ctx.clients,
        memory: &ctx.memory,
        sessions: &ctx.sessions,
        stopping: &ctx.stopping,
        clock: &ctx.clock,
        beats: &ctx.beats,
    };
    let handles = (&store, &ctx.wakers, &ctx.churn);
    let r = poll_with(handles, sourcing, bridge, commit, now).await;
    if let Err(PollError::Store(e)) = &r {
        ctx.store.failed(e);
    }
    r
}

/// Load, fetch, then plan and store: see [`poll_once`].
async fn poll_with(
    (st, wakers, churn): (&Store, &Wakers, &Churn),
    sourcing: fetch::Sourcing<'_>,
    bridge: &Bridge,
    commit: bool,
    now: DateTime<Utc>,
) -> Result<PollReport, PollError> {
    let read = load(st, &bridge.name).await?;
    let meta = read.head();
    let approach = Approach::new(bridge, meta);
    // An incremental listing asks for what is new since the stored cursor.
    let source = cursor::source_with(&bridge.source, approach.cursor(meta));
    let sent = load::validators(st, &bridge.name, &source, approach)?;
    let kept = load::kept(st, &bridge.name);
    // `_memory`: the poll's share of the memory budget, held until its documents are let go.
    let (listing, documents, matchable, _memory) =
        fetch::fetch_conditional((sourcing, &kept), bridge, &source, &sent, approach).await?;
    let Some(documents) = documents else {
        if commit {
            quiet::not_modified((st, wakers), bridge, meta, now).await?;
        }
        return Ok(PollReport {
            items: meta.items,
            pages: listing.pages.len(),
            not_modified: true,
            pause_until: listing.pause_until,
            failing: meta.failing.is_some(),
            ..Default::default()
        });
    };
    let listed = Listed {
        documents,
        pages: listing.cache,
        cached: HashMap::new(),
        matchable,
        incomplete: listing.incomplete,
        pause_until: listing.pause_until,
    };
    // Extracting, comparing and storing a big listing takes a while and blocks: off the
    // async workers, in one go (the items borrow from the documents it owns). The whole meta
    // and every cached page are read there too: a poll answered 304 needs neither.
    let (store, churn) = (st.clone(), churn.clone());
    let b = bridge.clone();
    // The bridge's span goes along: its log lines name the bridge.
    let span = tracing::Span::current();
    let applied = crate::runtime::blocking(move || {
        span.in_scope(|| match load::compared(&store, &b.name, read) {
            Ok((meta, cached)) => {
                let listed = Listed { cached, ..listed };
                apply((&store, &churn), &b, meta, listed, commit, now)
            }
            Err(e) => apply::Applied {
                result: Err(e.into()),
                committed_events: false,
            },
        })
    })
    .await;
    if applied.committed_events {
        // On disk before the first attempt (docs/events.md#at-least-once), also when a later batch
        // failed.
        let flushed = st.flush().await;
        wakers.wake(&bridge.name);
        let report = applied.result?;
        flushed?;
        return Ok(report);
    }
    applied.result
}

/// At most this many events are kept in a [`PollReport`] (the counts are exact).
pub const REPORTED_EVENTS: usize = 1_000;

#[cfg(test)]
mod tests {
    //! A poll stored in batches, cut short between two of them: what the next poll makes of
    //! what is there. A refused commit stands for a crash there (nothing after it is written;
    //! sled recovers a prefix of its log, so a crash leaves the batches before some point).

    use super::plan::{BATCH_WRITES, Cut};
    use super::*;
    use crate::config::raw::FirstPoll;
    use crate::extract;
    use crate::store::{CachedPage, Commit, OutboxEntry, PageWrite};
    use crate::testkit::BridgeYaml;
    use std::cell::Cell;
    use std::collections::HashSet;

    thread_local! {
        /// The commit of batch N (0 = the first) is refused, as if the process died there.
        static REFUSE_AFTER: Cell<Option<usize>> = const { Cell::new(None) };
    }

    /// Refuses the commit `REFUSE_AFTER` names (called by `apply` before it stores one).
    pub(super) fn refuse(c: &Commit, cut: Cut) -> Result<(), StoreError> {
        let n = match cut {
            Cut::Batch(n) | Cut::Last { batches: n } => n,
        };
        REFUSE_AFTER.with(|r| match r.get() {
            Some(refused) if refused == n => Err(StoreError::Conflict(c.bridge.clone())),
            _ => Ok(()),
        })
    }

    /// More items than one batch holds: three batches (1,000, 1,000, 500).
    const N: usize = BATCH_WRITES * 5 / 2;

    /// `items` lines beyond `select` and `key` (`exclude: ["$.v"]`).
    fn bridge(items: &[&str]) -> Bridge {
        let yaml = items
            .iter()
            .fold(BridgeYaml::new("http://127.0.0.1:1/items"), |y, l| {
                y.items(l)
            })
            .first_poll("emit")
            .max_fraction("1.0")
            .sink("console");
        crate::config::test_bridge("big", &yaml.build())
    }

    fn baseline_bridge() -> Bridge {
        let mut b = bridge(&[]);
        b.emit.first_poll = FirstPoll::Baseline;
        b
    }

    /// Items 0..n, item k with value `v(k)`.
    fn listing(n: usize, v: impl Fn(usize) -> usize) -> Vec<extract::Page> {
        let items: Vec<String> = (0..n)
            .map(|k| format!(r#"{{"id":{k},"v":{}}}"#, v(k)))
            .collect();
        let text = format!(r#"{{"items":[{}]}}"#, items.join(","));
        vec![extract::Page::new(std::sync::Arc::new(text))]
    }

    fn at() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    /// One poll of `pages`, stored unless the commit of batch `refuse` is refused; the page
    /// record `etag` is what the listing's 200 carried.
    fn poll(
        store: &Store,
        b: &Bridge,
        pages: Vec<extract::Page>,
        refuse: Option<usize>,
    ) -> Result<PollReport, PollError> {
        let record = CachedPage {
            etag: Some("\"e\"".into()),
            ..Default::default()
        };
        let f = Listed {
            documents: pages,
            pages: vec![("p".into(), PageWrite::Head(record))],
            cached: store.pages(&b.name).unwrap(),
            matchable: true,
            incomplete: None,
            pause_until: None,
        };
        REFUSE_AFTER.with(|r| r.set(refuse));
        let meta = store.meta(&b.name).unwrap();
        let r = apply((store, &Churn::default()), b, meta, f, true, at()).result;
        REFUSE_AFTER.with(|r| r.set(None));
        r
    }

    fn outbox(store: &Store) -> Vec<OutboxEntry> {
        store
            .outbox_all()
            .unwrap()
            .into_iter()
            .map(|(_, _, e)| e)
            .collect()
    }

    /// Each event once, seq 1, 2, 3, … in queue order, no id twice.
    fn assert_gap_free(events: &[OutboxEntry]) {
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as u64).collect::<Vec<_>>());
        let ids: HashSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len(), "an id was given twice");
    }

    fn keys_of(events: &[OutboxEntry], kind: EventType) -> Vec<String> {
        let mut keys: Vec<String> = events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| serde_json::from_str::<Event>(&e.body).unwrap().key)
            .collect();
        keys.sort();
        keys
    }

    fn all_keys(n: usize) -> Vec<String> {
        let mut keys: Vec<String> = (0..n).map(|k| k.to_string()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn an_interrupted_first_poll_with_emit_emits_each_item_once_with_the_same_ids() {
        let (dir, whole) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (store, reference) = (
            Store::open(dir.path()).unwrap(),
            Store::open(whole.path()).unwrap(),
        );
        let b = bridge(&[]);
        // The same first poll, whole, on another store: the ids to expect.
        let r = poll(&reference, &b, listing(N, |_| 0), None).unwrap();
        assert_eq!(
            (r.created, r.emitted.created, r.events.len()),
            (N, N, REPORTED_EVENTS)
        );
        let expected = outbox(&reference);
        assert_gap_free(&expected);

        // Cut short after the first batch: its items and events are stored together, and the
        // bridge is not baselined yet.
        let e = poll(&store, &b, listing(N, |_| 0), Some(1)).unwrap_err();
        assert!(
            matches!(e, PollError::Store(StoreError::Conflict(_))),
            "{e}"
        );
        let meta = store.meta(&b.name).unwrap();
        assert!(!meta.baselined);
        assert_eq!(meta.seq, BATCH_WRITES as u64);
        assert_eq!(store.load_state(&b.name).unwrap().len(), BATCH_WRITES);
        assert_eq!(outbox(&store).len(), BATCH_WRITES);

        // The next poll emits the rest, each once, with the ids the whole poll gave them.
        let r = poll(&store, &b, listing(N, |_| 0), None).unwrap();
        assert!(r.baseline);
        assert_eq!((r.created, r.updated, r.deleted), (N - BATCH_WRITES, 0, 0));
        let events = outbox(&store);
        assert_gap_free(&events);
        assert_eq!(keys_of(&events, EventType::Created), all_keys(N));
        let ids = |v: &[OutboxEntry]| v.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&events), ids(&expected));
        let meta = store.meta(&b.name).unwrap();
        assert!(meta.baselined);
        assert_eq!((meta.seq, meta.items), (N as u64, N));
        // And then nothing is new.
        let r = poll(&store, &b, listing(N, |_| 0), None).unwrap();
        assert_eq!((r.baseline, r.emitted.total()), (false, 0));
    }

    #[test]
    fn after_an_interrupted_emit_what_changed_meanwhile_is_updated_or_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = bridge(&[]);
        poll(&store, &b, listing(N, |_| 0), Some(2)).unwrap_err();
        assert_eq!(outbox(&store).len(), 2 * BATCH_WRITES);
        // Meanwhile item 0 (already emitted) changed, the last one emitted went, and one not
        // emitted yet changed.
        let gone = 2 * BATCH_WRITES - 1;
        let mut pages = listing(N, |k| usize::from(k == 0 || k == N - 1));
        let text = pages[0]
            .text
            .replace(&format!(r#"{{"id":{gone},"v":0}},"#), "");
        pages[0] = extract::Page::new(std::sync::Arc::new(text));
        let r = poll(&store, &b, pages, None).unwrap();
        assert_eq!(
            (r.created, r.updated, r.deleted),
            (N - 2 * BATCH_WRITES, 1, 1)
        );
        let events = outbox(&store);
        assert_gap_free(&events);
        assert_eq!(keys_of(&events, EventType::Created), all_keys(N));
        assert_eq!(keys_of(&events, EventType::Updated), ["0"]);
        assert_eq!(keys_of(&events, EventType::Deleted), [gone.to_string()]);
        let last: Event = serde_json::from_str(&events.last().unwrap().body).unwrap();
        assert_eq!(last.kind, EventType::Deleted);
        let created_late = events
            .iter()
            .map(|e| serde_json::from_str::<Event>(&e.body).unwrap())
            .find(|e| e.key == (N - 1).to_string())
            .unwrap();
        assert_eq!(created_late.data.unwrap().value().unwrap()["v"], 1);
    }

    #[test]
    fn an_interrupted_baseline_is_taken_again_silently() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = baseline_bridge();
        poll(&store, &b, listing(N, |_| 0), Some(1)).unwrap_err();
        assert!(!store.meta(&b.name).unwrap().baselined);
        assert_eq!(store.load_state(&b.name).unwrap().len(), BATCH_WRITES);
        // The next poll finishes the baseline: no event, all items.
        let r = poll(&store, &b, listing(N, |k| usize::from(k == 5)), None).unwrap();
        assert!(r.baseline && r.events.is_empty() && r.emitted.total() == 0);
        let meta = store.meta(&b.name).unwrap();
        assert!(meta.baselined);
        assert_eq!((meta.seq, meta.items), (0, N));
        assert!(outbox(&store).is_empty());
        // Item 5 was stored with its later value; a change after the baseline is one event.
        let r = poll(
            &store,
            &b,
            listing(N, |k| usize::from(k == 5 || k == 7)),
            None,
        )
        .unwrap();
        assert_eq!((r.baseline, r.updated), (false, 1));
        assert_eq!(r.events[0].key, "7");
        assert_eq!(r.events[0].seq, 1);
    }

    #[test]
    fn an_interrupted_rebaseline_stays_silent_whatever_the_definition() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = bridge(&[]);
        poll(&store, &old, listing(N, |_| 0), None).unwrap();
        let emitted = outbox(&store).len();
        // A new definition (the value without `v`) is being re-baselined when it stops.
        let new = bridge(&["exclude: [\"$.v\"]"]);
        assert_ne!(new.fingerprint, old.fingerprint);
        let e = poll(&store, &new, listing(N, |_| 0), Some(1));
        assert!(e.is_err());
        let meta = store.meta(&old.name).unwrap();
        assert!(meta.baselined && meta.fingerprint.is_none());
        // Back to the old definition: half the items are stored the new way, and a compare
        // would report them all updated. It re-baselines instead, silently.
        let r = poll(&store, &old, listing(N, |_| 0), None).unwrap();
        assert!(r.rebaselined && r.emitted.total() == 0);
        assert_eq!(outbox(&store).len(), emitted);
        let meta = store.meta(&old.name).unwrap();
        assert_eq!(meta.fingerprint.as_deref(), Some(old.fingerprint.as_str()));
        let r = poll(&store, &old, listing(N, |_| 0), None).unwrap();
        assert_eq!((r.rebaselined, r.emitted.total()), (false, 0));
    }

    #[test]
    fn an_interrupted_poll_of_many_changes_emits_the_rest_once_and_forgets_cached_pages() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = baseline_bridge();
        poll(&store, &b, listing(N, |_| 0), None).unwrap();
        assert_eq!(store.pages(&b.name).unwrap().len(), 1);
        // Every item changes; the poll stops after the first batch. Its page record goes
        // with that batch: a 304 for the old body must not stand for a half-stored state.
        poll(&store, &b, listing(N, |_| 1), Some(1)).unwrap_err();
        assert!(store.pages(&b.name).unwrap().is_empty());
        let meta = store.meta(&b.name).unwrap();
        assert!(meta.baselined);
        assert_eq!(meta.seq, BATCH_WRITES as u64);
        let r = poll(&store, &b, listing(N, |_| 1), None).unwrap();
        assert_eq!(r.updated, N - BATCH_WRITES);
        let events = outbox(&store);
        assert_gap_free(&events);
        assert_eq!(keys_of(&events, EventType::Updated), all_keys(N));
        // Complete now: the page is cached again, and an updated event says what it was.
        assert_eq!(store.pages(&b.name).unwrap().len(), 1);
        let e: Event = serde_json::from_str(&events[N - 1].body).unwrap();
        assert_eq!(
            (
                e.previous.unwrap().value().unwrap()["v"].clone(),
                e.data.unwrap().value().unwrap()["v"].clone()
            ),
            (0.into(), 1.into())
        );
    }
}
