//! A poll's decisions, without I/O: stored state + fetched listing + now -> events and the
//! commits that store them. What is read of the store comes in through [`State`]; what is
//! written goes out as [`Commit`]s handed to the caller, who stores them (`apply`). So every
//! rule of a poll (baselines, re-baselines, absences, the mass-delete guard, event ids, which
//! cached pages a commit keeps, how a large poll is cut into batches) can be run and tested
//! against a map in memory.
//!
//! A poll is usually one commit. A poll with many writes (a first poll of a large listing) is
//! cut into batches, each one commit with its events, so that it never holds all its writes
//! and events at once; see [`Batches`] for what an interrupted one leaves.

use super::{Emitted, Incomplete, PollError, PollReport, REPORTED_EVENTS};
use crate::config::Bridge;
use crate::config::raw::{FirstPoll, Method};
use crate::diff::{self, Absence, Baseline, ChangeKind};
use crate::event::{self, EventType, Side};
use crate::extract::{self, Hash};
use crate::store::{BridgeMeta, CachedPage, Commit, PageWrite, Put, Quiet, StoreError};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// What a poll reads of the stored item state, besides the bridge's meta and cached pages.
pub trait State {
    /// Every stored item's state, in key order.
    fn scan(&self) -> impl Iterator<Item = Result<(String, diff::Stored), StoreError>>;
    /// The stored value and hash of one item, for the `previous` side of its event.
    fn previous(&self, key: &str) -> Result<Option<(event::Json, Hash)>, StoreError>;
}

/// How a poll goes about it, decided from the stored meta before anything is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Approach {
    /// The definition changed since the baseline: take it again, silently.
    pub rebaselined: bool,
    /// Stored state compared with, reported silently, or reported as created.
    pub baseline: Baseline,
    /// A GET source asking for 304s (`conditional: true`).
    pub conditional: bool,
    /// The cached pages' validators may be sent: there is a baseline of this definition.
    pub trusted: bool,
    /// When every page answers 304 the poll ends there: nothing to compare, as no absence is
    /// being counted (an unchanged listing still counts those).
    pub stop_if_unchanged: bool,
    /// Page bodies are stored where a 304 may need one (a paginated source, or
    /// `after_missing` above 1).
    pub keep_bodies: bool,
}

impl Approach {
    pub fn new(bridge: &Bridge, meta: &BridgeMeta) -> Approach {
        let conditional = bridge.source.conditional && bridge.source.method == Method::GET;
        let rebaselined =
            meta.baselined && meta.fingerprint.as_deref() != Some(bridge.fingerprint.as_str());
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
        let trusted = conditional && meta.baselined && !rebaselined;
        Approach {
            rebaselined,
            baseline,
            conditional,
            trusted,
            stop_if_unchanged: trusted && meta.absent == 0 && meta.pending == 0,
            keep_bodies: bridge.source.paginate.is_some()
                || bridge.emit.after_missing > 1
                || bridge.emit.settle().is_some(),
        }
    }
}

impl Approach {
    /// The stored cursor of an incremental listing, unless the definition changed: a
    /// re-baseline asks from `initial` again (the cursor was found under the old `from`,
    /// `param` or `initial`).
    pub fn cursor<'a>(&self, meta: &'a BridgeMeta) -> Option<&'a serde_json::Value> {
        meta.cursor.as_ref().filter(|_| !self.rebaselined)
    }
}

/// A fetched listing, as the plan needs it.
pub struct Listed {
    pub documents: Vec<extract::Page>,
    /// The listing's pages as this poll would store them.
    pub pages: Vec<(String, PageWrite)>,
    /// The stored records of the bridge's pages.
    pub cached: HashMap<String, CachedPage>,
    /// False when a 304 failed and the listing was fetched again: no stored record counts as
    /// matching then.
    pub matchable: bool,
    pub incomplete: Option<Incomplete>,
    pub pause_until: Option<DateTime<Utc>>,
}

/// Where a commit falls in its poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Batch `n` (0 = the first) of a poll that goes on after it.
    Batch(usize),
    /// The poll's last commit, after `batches` earlier ones.
    Last { batches: usize },
}

/// Extracts the items, compares them with the stored state and builds the events and the
/// commits that store them, handing each commit to `out` as it is complete (a poll's last
/// commit is left out when it would change nothing). Stops at the first error of `state` or
/// `out`.
pub fn plan(
    bridge: &Bridge,
    meta: BridgeMeta,
    state: &impl State,
    listed: Listed,
    now: DateTime<Utc>,
    out: &mut dyn FnMut(Commit, Cut) -> Result<(), StoreError>,
) -> Result<PollReport, PollError> {
    let approach = Approach::new(bridge, &meta);
    let keyed = extract::extract_keyed(&listed.documents, &bridge.items)?;
    let shape = super::shape::look(bridge, &meta, approach, &keyed.items, &listed, now)?;
    if shape.held() {
        return super::shape::hold(bridge, meta, shape, (&keyed, &listed), now, out);
    }
    let incremental = incremental(bridge, now);
    let opts = options(
        bridge,
        approach,
        listed.incomplete.is_none(),
        incremental,
        now,
    );
    let diff = diff::plan(state.scan(), &keyed.items, &keyed.by_key, opts)?;
    let items = keyed.items;
    let advanced = next_cursor(bridge, approach.cursor(&meta), &items)?;
    let report = PollReport {
        items: items.len(),
        created: diff.count(ChangeKind::Created),
        updated: diff.count(ChangeKind::Updated),
        deleted: diff.count(ChangeKind::Deleted),
        baseline: approach.baseline != Baseline::No,
        rebaselined: approach.rebaselined,
        held_back: diff.held_back,
        events: Vec::new(),
        emitted: Emitted::default(),
        pages: listed.documents.len(),
        not_modified: false,
        incomplete: listed.incomplete,
        pause_until: listed.pause_until,
        failing: meta.failing.is_some(),
        cursor_unlike: advanced.unlike,
        changed: approach.baseline != Baseline::No
            || diff.count(ChangeKind::Created) + diff.count(ChangeKind::Updated) > 0
            || diff.count(ChangeKind::Deleted) > 0
            || advanced.cursor.as_ref() != approach.cursor(&meta),
        ..Default::default()
    };
    let (failing, quiet) = (meta.failing.clone(), meta.quiet.clone());
    let mut b = Batches::new(state, bridge, meta, approach.rebaselined, now, report, out);
    b.seen = incremental.map_or(0, |i| i.today);
    b.announce(&shape);
    b.write(&diff, &items)?;
    // The last commit holds all it needs: free the response before it.
    drop(items);
    drop(listed.documents);
    let forgotten = b.batches > 0;
    let pages = final_pages(
        &diff,
        listed.pages,
        &listed.cached,
        listed.matchable,
        forgotten,
    );
    let quiet = b.quiet(quiet);
    let new_meta = BridgeMeta {
        seq: b.seq,
        fingerprint: Some(bridge.fingerprint.to_string()),
        baselined: true,
        absent: diff.absent_after,
        items: diff.stored_after,
        pending: diff.pending_after,
        cursor: advanced.cursor,
        // The failure streak is failure tracking's (`failures`), which runs after the poll.
        failing,
        quiet,
        shape: shape.learnt,
    };
    b.finish(new_meta, pages)?;
    Ok(b.report)
}

/// How the stored state and the listing are compared.
fn options(
    bridge: &Bridge,
    approach: Approach,
    complete: bool,
    incremental: Option<diff::Incremental>,
    now: DateTime<Utc>,
) -> diff::Options {
    diff::Options {
        baseline: approach.baseline,
        complete,
        after_missing: bridge.emit.after_missing,
        max_fraction: bridge.emit.max_fraction,
        document: bridge.items.key.is_none(),
        incremental,
        settle: bridge.emit.settle().map(|rule| diff::Settle {
            rule,
            now_ms: crate::clock::to_ms(now),
        }),
    }
}

/// The day numbers of an incremental listing, for `now`.
fn incremental(bridge: &Bridge, now: DateTime<Utc>) -> Option<diff::Incremental> {
    let c = bridge.source.cursor.as_ref()?;
    let day = |secs: i64| u32::try_from(secs.div_euclid(86_400)).unwrap_or(0);
    let today = day(now.timestamp()).max(1);
    let forget_before = c.keep.map_or(0, |k| {
        today.saturating_sub(k.as_secs().div_ceil(86_400).try_into().unwrap_or(u32::MAX))
    });
    Some(diff::Incremental {
        today,
        forget_before,
    })
}

/// The cursor the poll stores: the largest `from` value of the cursor it asked with and the
/// items, of the cursor's kind (`cursor::next`); and the values that were not.
/// None for a bridge without `source.cursor`.
fn next_cursor(
    bridge: &Bridge,
    stored: Option<&serde_json::Value>,
    items: &[extract::Item<'_>],
) -> Result<super::cursor::Advanced, PollError> {
    let Some(c) = &bridge.source.cursor else {
        return Ok(Default::default());
    };
    let mut found = Vec::new();
    for item in items {
        let value = item.value()?;
        let key = item.key.as_str();
        found.extend(c.from.select(&value).into_iter().map(|v| (key, v.clone())));
    }
    let found = found.iter().map(|(k, v)| (*k, v));
    Ok(super::cursor::next(stored, c.initial.as_ref(), found))
}

/// The pages the last commit stores. A held-back mass delete leaves the state behind the
/// listing: no page is cached then, so the next poll fetches and compares everything again
/// (and warns again) until it resolves. A 200 the same as its stored record (validators, and
/// digest if the body is kept) needs no write, unless an earlier batch of this poll forgot the
/// records.
fn final_pages(
    plan: &diff::Plan,
    pages: Vec<(String, PageWrite)>,
    cached: &HashMap<String, CachedPage>,
    matchable: bool,
    forgotten: bool,
) -> Pages {
    if plan.held_back.is_some() {
        let changed = !cached.is_empty();
        return Pages {
            pages: Vec::new(),
            changed,
        };
    }
    let pages: Vec<_> = pages
        .into_iter()
        .map(|(k, w)| match w.head() {
            Some(h) if matchable && !forgotten && cached.get(&k) == Some(h) => (k, PageWrite::Keep),
            _ => (k, w),
        })
        .collect();
    let changed = pages.iter().any(|(_, w)| *w != PageWrite::Keep)
        || cached.keys().any(|k| !pages.iter().any(|(n, _)| n == k));
    Pages { pages, changed }
}

/// The pages a commit stores, and whether that differs from what is stored.
struct Pages {
    pages: Vec<(String, PageWrite)>,
    changed: bool,
}

/// Writes per commit of a large poll (items stored or removed), and bytes of values and
/// event bodies: a first poll of a million items is stored this much at a time, so that it
/// never holds all its writes and events at once. sled keeps the old versions of the nodes
/// a transaction changes until it ends, so a large one costs far more than its writes (10,000
/// state records in one transaction: about 100 MiB).
pub(super) const BATCH_WRITES: usize = 1_000;
const BATCH_BYTES: usize = 8 << 20;

/// A poll's writes and events, a batch at a time. Each batch is one commit with its events,
/// numbered on from the last `seq`, its ids made with that batch's generation (the `seq`
/// before it). Only the last commit stores the cached pages and the meta that says the poll
/// is complete; the batches before it store, besides their items and events:
///
/// - a first poll: `baselined` stays false, so an interrupted first poll is taken again. A
///   baseline stores silently again; `first_poll: emit` compares with what the batches
///   stored (`Baseline::Emit`), so an item is never reported created twice. The items left
///   are batched as before, so their events get the ids they would have had.
/// - a re-baseline: the fingerprint is forgotten, so the next poll re-baselines (silently)
///   whatever the definition is then.
/// - any batch forgets the cached pages, so the next poll compares the whole listing: a 304
///   for a body older than the half-stored state would hide changes.
///
/// Absence counts (`after_missing`) are kept for the last commit: counted twice, an item
/// would be deleted an absence early.
struct Batches<'a, S> {
    state: &'a S,
    bridge: &'a Bridge,
    now: DateTime<Utc>,
    rebaselined: bool,
    sinks: Vec<String>,
    /// The batch being filled; its `base` is the meta as last read or written.
    c: Commit,
    bytes: usize,
    /// The last `seq` given, and the generation of this batch's ids.
    seq: u64,
    generation: u64,
    /// Batches handed out before the last.
    batches: usize,
    /// Missing counts, written by the last commit.
    later: Vec<(String, u32)>,
    /// State records written whole (changes settling), by the last commit too.
    pending: Vec<(String, diff::Stored)>,
    /// What an item's missing count becomes when it is listed: 0, or (an incremental listing)
    /// the day it was last listed.
    seen: u32,
    report: PollReport,
    out: &'a mut dyn FnMut(Commit, Cut) -> Result<(), StoreError>,
}

impl<'a, S: State> Batches<'a, S> {
    fn new(
        state: &'a S,
        bridge: &'a Bridge,
        meta: BridgeMeta,
        rebaselined: bool,
        now: DateTime<Utc>,
        report: PollReport,
        out: &'a mut dyn FnMut(Commit, Cut) -> Result<(), StoreError>,
    ) -> Batches<'a, S> {
        Batches {
            state,
            bridge,
            now,
            rebaselined,
            sinks: bridge.sinks.iter().map(|s| s.id.to_string()).collect(),
            seq: meta.seq,
            generation: meta.seq,
            c: Commit::on(&bridge.name, meta),
            bytes: 0,
            batches: 0,
            later: Vec::new(),
            pending: Vec::new(),
            seen: 0,
            report,
            out,
        }
    }

    /// Queues the plan's writes and events, handing out each batch as it fills; the missing
    /// counts wait for the last commit.
    fn write(&mut self, plan: &diff::Plan, items: &[extract::Item<'_>]) -> Result<(), PollError> {
        for &(i, change) in &plan.puts {
            let item = &items[i as usize];
            // Written once, from the item's text where it has one: the stored value and the
            // event's data are this text (a wide item is never a `Value` here).
            let value = event::Json::from_text(item.canonical_text()?).map_err(|e| {
                extract::ExtractError::NotJson(format!("an item cannot be read: {e}"))
            })?;
            if let Some(kind) = change {
                let data = Side {
                    value: &value,
                    hash: &item.hash,
                };
                self.event(kind, item.key.as_str(), Some(data))?;
            }
            self.put(item.key.as_str(), item.hash, value.into_text().into_bytes());
            if self.seen > 0 {
                self.later.push((item.key.to_string(), self.seen));
            }
            self.cut_if_full()?;
        }
        for (key, absence) in &plan.absent {
            match absence {
                Absence::Missing(missing) => self.later.push((key.clone(), *missing)),
                Absence::Deleted => {
                    self.event(ChangeKind::Deleted, key, None)?;
                    self.remove(key);
                }
                Absence::Removed => self.remove(key),
            }
            self.cut_if_full()?;
        }
        for key in &plan.dropped {
            self.remove(key);
            self.cut_if_full()?;
        }
        self.pending.extend(plan.pending.iter().cloned());
        let seen = self.seen;
        let found = plan
            .found
            .iter()
            .map(|&i| (items[i as usize].key.to_string(), seen));
        self.later.extend(found);
        Ok(())
    }

    /// Queues the poll's `bridge.shape_changed`, if it has one, before its changes.
    fn announce(&mut self, shape: &super::shape::Look) {
        if let Some(e) = shape.event(self.bridge, self.seq, self.now) {
            self.seq += 1;
            self.c
                .queue(&self.sinks, std::slice::from_ref(&e), self.now);
            self.report.events.push(e);
        }
        self.report.shape.clone_from(&shape.note);
    }

    fn put(&mut self, key: &str, hash: Hash, value: Vec<u8>) {
        self.bytes += key.len() + value.len();
        self.c.puts.push(Put::new(key, hash, value));
    }

    fn remove(&mut self, key: &str) {
        self.bytes += key.len();
        self.c.removes.push(key.to_string());
    }

    /// Builds the event of one change, if the bridge emits its type, and queues it.
    fn event(
        &mut self,
        kind: ChangeKind,
        key: &str,
        data: Option<Side<'_>>,
    ) -> Result<(), StoreError> {
        let emit = &self.bridge.emit;
        let (ty, wanted) = match kind {
            ChangeKind::Created => (EventType::Created, emit.created),
            ChangeKind::Updated => (EventType::Updated, emit.updated),
            ChangeKind::Deleted => (EventType::Deleted, emit.deleted),
        };
        if !wanted {
            return Ok(());
        }
        let previous = match kind {
            ChangeKind::Created => None,
            _ => self.state.previous(key)?,
        };
        let after = data.as_ref().map(|d| *d.hash);
        let e = event::build(event::Spec {
            bridge: &self.bridge.name,
            kind: ty,
            key,
            seq: self.seq + 1,
            generation: self.generation,
            detected: self.now,
            previous: previous.as_ref().map(|(value, hash)| Side { value, hash }),
            data,
        });
        if let (Some((_, before)), Some(after), Some(patch)) = (&previous, after, &e.changes) {
            self.report.churn.updated(key, *before, after, patch.get());
        }
        // Stored either way; only an emitted change takes a `seq`, so it stays gap-free.
        if !self.passes(&e) {
            return Ok(());
        }
        self.seq += 1;
        let before = self.c.outbox.len();
        self.c
            .queue(&self.sinks, std::slice::from_ref(&e), self.now);
        self.bytes += self.c.outbox[before..]
            .iter()
            .map(|(_, o)| o.body.len())
            .sum::<usize>();
        self.report.emitted.add(kind);
        if self.report.events.len() < REPORTED_EVENTS {
            self.report.events.push(e);
        }
        Ok(())
    }

    /// Quiet tracking (`emit.quiet`) in the poll's last commit: the bridge's record after this
    /// poll, its event (if it calls for one) queued after the poll's own.
    fn quiet(&mut self, stored: Option<Quiet>) -> Option<Quiet> {
        let changed = self.report.changed;
        let step = super::quiet::step(self.bridge, stored.as_ref(), changed, self.seq, self.now);
        let Some((next, event)) = step else {
            return stored;
        };
        if let Some(e) = event {
            self.seq += 1;
            self.c.queue(&self.sinks, &[e], self.now);
        }
        Some(next)
    }

    /// Whether `emit.when` lets the change become an event. A rule that fails at run time
    /// counts as true (nothing is lost to a mistake in it); the report counts it.
    fn passes(&mut self, e: &event::Event) -> bool {
        let Some(rule) = self.bridge.emit.when() else {
            return true;
        };
        let info = crate::render::BridgeInfo {
            name: &self.bridge.name,
            description: self.bridge.description.as_deref(),
        };
        let v = serde_json::to_value(e).unwrap_or_default();
        match rule.test(
            &self.bridge.render,
            &crate::render::Context::event(&v, info),
        ) {
            Ok(yes) => yes,
            Err(why) => {
                self.report.rule_errors += 1;
                self.report.rule_error.get_or_insert(why);
                true
            }
        }
    }

    /// Hands out the batch when it is full.
    fn cut_if_full(&mut self) -> Result<(), StoreError> {
        let writes = self.c.puts.len() + self.c.removes.len();
        if writes < BATCH_WRITES && self.bytes < BATCH_BYTES {
            return Ok(());
        }
        let mut meta = self.c.base.clone().unwrap_or_default();
        meta.seq = self.seq;
        if self.rebaselined {
            meta.fingerprint = None;
        }
        // No page: every cached page is forgotten.
        self.hand_out(meta, Vec::new(), Cut::Batch(self.batches))
    }

    /// Hands out the last commit: the missing counts, the pages and the meta of a complete
    /// poll. None when nothing would change.
    fn finish(&mut self, meta: BridgeMeta, pages: Pages) -> Result<(), StoreError> {
        self.c.missing = std::mem::take(&mut self.later);
        self.c.pending = std::mem::take(&mut self.pending);
        let unchanged = self.batches == 0
            && self.c.puts.is_empty()
            && self.c.removes.is_empty()
            && self.c.missing.is_empty()
            && self.c.pending.is_empty()
            && self.c.outbox.is_empty()
            && Some(&meta) == self.c.base.as_ref()
            && !pages.changed;
        if unchanged {
            return Ok(());
        }
        let cut = Cut::Last {
            batches: self.batches,
        };
        self.hand_out(meta, pages.pages, cut)
    }

    /// Hands the batch being filled, with `meta` and `pages`, to `out`, and starts the next.
    fn hand_out(
        &mut self,
        meta: BridgeMeta,
        pages: Vec<(String, PageWrite)>,
        cut: Cut,
    ) -> Result<(), StoreError> {
        let next = Commit::on(&self.c.bridge, meta.clone());
        let mut c = std::mem::replace(&mut self.c, next);
        c.meta = meta;
        c.pages = pages;
        (self.out)(c, cut)?;
        self.batches += 1;
        self.bytes = 0;
        self.generation = self.seq;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The plan against a stored state held in a map: no store, no clock, no network.

    use super::*;
    use crate::testkit::BridgeYaml;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// A bridge's stored state in memory: what the commits handed out so far made of it.
    #[derive(Default)]
    struct Memory {
        /// Seconds after the tests' epoch that the next poll happens at.
        at: i64,
        meta: BridgeMeta,
        items: BTreeMap<String, (serde_json::Value, diff::Stored)>,
        pages: HashMap<String, CachedPage>,
    }

    impl State for Memory {
        fn scan(&self) -> impl Iterator<Item = Result<(String, diff::Stored), StoreError>> {
            self.items.iter().map(|(k, (_, s))| Ok((k.clone(), *s)))
        }

        fn previous(&self, key: &str) -> Result<Option<(event::Json, Hash)>, StoreError> {
            Ok(self
                .items
                .get(key)
                .map(|(v, s)| (event::Json::from_value(v), s.hash)))
        }
    }

    impl Memory {
        fn apply(&mut self, c: &Commit) {
            for p in &c.puts {
                let value = serde_json::from_slice(&p.value).unwrap();
                let stored = diff::Stored::new(p.hash, 0);
                self.items.insert(p.key.clone(), (value, stored));
            }
            for k in &c.removes {
                self.items.remove(k);
            }
            for (k, missing) in &c.missing {
                self.items.get_mut(k).unwrap().1.missing = *missing;
            }
            for (k, s) in &c.pending {
                let v = self
                    .items
                    .get(k)
                    .map_or(serde_json::Value::Null, |i| i.0.clone());
                self.items.insert(k.clone(), (v, *s));
            }
            for (k, w) in &c.pages {
                if let Some(h) = w.head() {
                    self.pages.insert(k.clone(), h.clone());
                }
            }
            self.pages
                .retain(|k, _| c.pages.iter().any(|(n, _)| n == k));
            self.meta = c.meta.clone();
        }

        /// One poll of `items` (JSON text of the listing), its commits applied here.
        fn poll(&mut self, bridge: &Bridge, items: &str) -> (PollReport, Vec<(Commit, Cut)>) {
            let listed = Listed {
                documents: vec![extract::Page::new(std::sync::Arc::new(format!(
                    r#"{{"items":{items}}}"#
                )))],
                pages: vec![("p".into(), PageWrite::Head(CachedPage::default()))],
                cached: self.pages.clone(),
                matchable: true,
                incomplete: None,
                pause_until: None,
            };
            let commits = RefCell::new(Vec::new());
            let now = DateTime::from_timestamp(1_800_000_000 + self.at, 0).unwrap();
            let report = plan(
                bridge,
                self.meta.clone(),
                self,
                listed,
                now,
                &mut |c, cut| {
                    commits.borrow_mut().push((c, cut));
                    Ok(())
                },
            )
            .unwrap();
            let commits = commits.into_inner();
            for (c, _) in &commits {
                self.apply(c);
            }
            (report, commits)
        }
    }

    /// Two sinks, and `emit` as `how` makes it.
    fn bridge(how: impl FnOnce(BridgeYaml) -> BridgeYaml) -> Bridge {
        let yaml = how(BridgeYaml::new("http://127.0.0.1:1/items"))
            .sink("console")
            .sink("http://127.0.0.1:1/hook")
            .sink_line("signature: none");
        crate::config::test_bridge("p", &yaml.build())
    }

    fn kinds(r: &PollReport) -> Vec<(EventType, String, u64)> {
        r.events
            .iter()
            .map(|e| (e.kind, e.key.clone(), e.seq))
            .collect()
    }

    #[test]
    fn a_baseline_then_each_kind_of_change_in_one_commit_per_poll() {
        let b = bridge(|y| y);
        let mut m = Memory::default();
        let (r, commits) = m.poll(&b, r#"[{"id":1,"v":1},{"id":2,"v":1},{"id":3,"v":1}]"#);
        assert!(r.baseline && r.events.is_empty());
        assert_eq!(commits.len(), 1);
        assert_eq!(commits[0].1, Cut::Last { batches: 0 });
        assert!(commits[0].0.outbox.is_empty());
        assert_eq!((m.meta.seq, m.meta.items, m.meta.baselined), (0, 3, true));

        let (r, commits) = m.poll(&b, r#"[{"id":2,"v":2},{"id":3,"v":1},{"id":4,"v":1}]"#);
        use EventType::*;
        assert_eq!(
            kinds(&r),
            [
                (Updated, "2".into(), 1),
                (Created, "4".into(), 2),
                (Deleted, "1".into(), 3)
            ]
        );
        let updated = &r.events[0];
        let value = |j: &Option<event::Json>| j.as_ref().map(|j| j.value().unwrap());
        assert_eq!(
            value(&updated.previous),
            Some(serde_json::json!({"id": 2, "v": 1}))
        );
        assert_eq!(
            value(&updated.data),
            Some(serde_json::json!({"id": 2, "v": 2}))
        );
        // One commit: three events for each of the two sinks, in seq order, the state with them.
        let c = &commits[0].0;
        assert_eq!(commits.len(), 1);
        let queued: Vec<u64> = c.outbox.iter().map(|(_, e)| e.seq).collect();
        assert_eq!(queued, [1, 1, 2, 2, 3, 3]);
        assert_eq!((c.expected_seq, c.meta.seq), (0, 3));
        assert_eq!(c.puts.len(), 2);
        assert_eq!(c.removes, ["1"]);
        assert_eq!(m.items.keys().collect::<Vec<_>>(), ["2", "3", "4"]);
    }

    #[test]
    fn an_unchanged_listing_hands_out_no_commit() {
        let b = bridge(|y| y);
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1}]"#);
        let (r, commits) = m.poll(&b, r#"[{"id":1}]"#);
        assert!(commits.is_empty(), "{commits:?}");
        assert_eq!((r.items, r.created, r.updated, r.deleted), (1, 0, 0, 0));
    }

    #[test]
    fn the_same_change_planned_twice_gets_the_same_event_id() {
        // A crash before the commit: the change is found again, under the same id.
        let b = bridge(|y| y);
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1,"v":1}]"#);
        let before = (m.meta.clone(), m.items.clone());
        let (first, _) = m.poll(&b, r#"[{"id":1,"v":2}]"#);
        (m.meta, m.items) = before;
        let (again, _) = m.poll(&b, r#"[{"id":1,"v":2}]"#);
        assert_eq!(first.events[0].id, again.events[0].id);
        // Flipping back is a new change with a new id.
        let (back, _) = m.poll(&b, r#"[{"id":1,"v":1}]"#);
        assert_ne!(back.events[0].id, first.events[0].id);
    }

    #[test]
    fn absences_count_until_after_missing_and_a_mass_delete_is_held_back() {
        let b = bridge(|y| y.after_missing(2).max_fraction("0.5"));
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1},{"id":2},{"id":3},{"id":4}]"#);
        let (r, commits) = m.poll(&b, r#"[{"id":1},{"id":2},{"id":3}]"#);
        assert_eq!(r.deleted, 0);
        assert_eq!(commits[0].0.missing, [("4".to_string(), 1)]);
        let (r, _) = m.poll(&b, r#"[{"id":1},{"id":2},{"id":3}]"#);
        assert_eq!(kinds(&r), [(EventType::Deleted, "4".into(), 1)]);
        // Three of three vanishing at once: more than half, held back, no page kept.
        let b = bridge(|y| y.max_fraction("0.5"));
        let (r, commits) = m.poll(&b, "[]");
        assert!(r.held_back.is_some() && r.emitted.total() == 0);
        // All gone at once is a drift of the shape too (`emit.shape`): announced, once.
        let shape = [(EventType::ShapeChanged, String::new(), 2)];
        assert_eq!(kinds(&r), shape);
        assert!(commits.iter().all(|(c, _)| c.pages.is_empty()));
        assert!(m.pages.is_empty());
        assert_eq!(m.items.len(), 3);
    }

    #[test]
    fn a_large_first_poll_is_cut_into_batches_and_only_the_last_completes_it() {
        let b = bridge(|y| y.first_poll("emit"));
        let mut m = Memory::default();
        let n = BATCH_WRITES * 2 + 10;
        let items: Vec<String> = (0..n).map(|k| format!(r#"{{"id":{k}}}"#)).collect();
        let (r, commits) = m.poll(&b, &format!("[{}]", items.join(",")));
        let cuts: Vec<Cut> = commits.iter().map(|(_, c)| *c).collect();
        assert_eq!(
            cuts,
            [Cut::Batch(0), Cut::Batch(1), Cut::Last { batches: 2 }]
        );
        // The batches leave the poll unfinished, and forget the cached pages.
        for (c, _) in &commits[..2] {
            assert!(!c.meta.baselined && c.pages.is_empty());
        }
        let last = &commits[2].0;
        assert!(last.meta.baselined && !last.pages.is_empty());
        assert_eq!((r.emitted.created, m.meta.seq), (n, n as u64));
        // Each batch's ids are made with its own generation: the seq before it.
        assert_eq!(commits[1].0.expected_seq, BATCH_WRITES as u64);
    }

    fn updates(r: &PollReport) -> Vec<(EventType, String)> {
        r.events.iter().map(|e| (e.kind, e.key.clone())).collect()
    }

    #[test]
    fn a_change_that_flips_back_before_it_settles_emits_nothing() {
        let b = bridge(|y| y.emit("settle: 3"));
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1,"v":"A"}]"#);
        for v in ["B", "B", "A", "B", "B", "A"] {
            let (r, _) = m.poll(&b, &format!(r#"[{{"id":1,"v":"{v}"}}]"#));
            assert!(r.events.is_empty(), "{v}: {:?}", r.events);
        }
        // Back where it settled: nothing pending, nothing to count on.
        assert_eq!(m.meta.pending, 0);
        assert_eq!(m.items["1"].1, diff::Stored::new(m.items["1"].1.hash, 0));
        assert_eq!(m.items["1"].0, serde_json::json!({"id": 1, "v": "A"}));
    }

    #[test]
    fn a_change_held_for_n_polls_emits_one_update_from_the_settled_value() {
        let b = bridge(|y| y.emit("settle: 3"));
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1,"v":"A"}]"#);
        // C for a poll, then B for three: B settles on its third.
        for v in ["C", "B", "B"] {
            let (r, _) = m.poll(&b, &format!(r#"[{{"id":1,"v":"{v}"}}]"#));
            assert!(r.events.is_empty(), "{v}");
            assert_eq!(m.meta.pending, 1);
        }
        // The stored value stays the settled one until then.
        assert_eq!(m.items["1"].0, serde_json::json!({"id": 1, "v": "A"}));
        let (r, _) = m.poll(&b, r#"[{"id":1,"v":"B"}]"#);
        assert_eq!(updates(&r), [(EventType::Updated, "1".into())]);
        let e = &r.events[0];
        let value = |j: &Option<event::Json>| j.as_ref().map(|j| j.value().unwrap());
        assert_eq!(
            value(&e.previous),
            Some(serde_json::json!({"id": 1, "v": "A"}))
        );
        assert_eq!(value(&e.data), Some(serde_json::json!({"id": 1, "v": "B"})));
        assert_eq!(m.meta.pending, 0);
        let (r, commits) = m.poll(&b, r#"[{"id":1,"v":"B"}]"#);
        assert!(r.events.is_empty() && commits.is_empty());
    }

    #[test]
    fn creates_and_deletes_settle_too_and_deletes_keep_after_missing() {
        let b = bridge(|y| y.emit("settle: 2").after_missing(3).max_fraction("1.0"));
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1}]"#);
        // A create that vanishes before it settles: nothing, and no record left.
        let (r, _) = m.poll(&b, r#"[{"id":1},{"id":2}]"#);
        assert!(r.events.is_empty());
        assert_eq!((m.meta.items, m.meta.pending), (1, 1));
        m.poll(&b, r#"[{"id":1}]"#);
        assert!(!m.items.contains_key("2"));
        assert_eq!(m.meta.pending, 0);
        m.poll(&b, r#"[{"id":1},{"id":2}]"#);
        let (r, _) = m.poll(&b, r#"[{"id":1},{"id":2}]"#);
        assert_eq!(updates(&r), [(EventType::Created, "2".into())]);
        assert_eq!(m.meta.items, 2);
        // A delete settles after 2 polls, but after_missing asks for 3.
        for _ in 0..2 {
            let (r, _) = m.poll(&b, r#"[{"id":1}]"#);
            assert!(r.events.is_empty());
        }
        let (r, _) = m.poll(&b, r#"[{"id":1}]"#);
        assert_eq!(updates(&r), [(EventType::Deleted, "2".into())]);
        assert_eq!((m.meta.items, m.meta.pending, m.meta.absent), (1, 0, 0));
    }

    #[test]
    fn quiet_tracking_rides_in_the_poll_s_own_commit() {
        let b = bridge(|y| y.emit("quiet: 1h"));
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1,"v":1}]"#);
        let started = m.meta.quiet.clone().unwrap();
        // Unchanged before the spell is over: nothing to write, no commit.
        m.at = 3599;
        let (_, commits) = m.poll(&b, r#"[{"id":1,"v":1}]"#);
        assert!(commits.is_empty(), "{commits:?}");
        // The spell reached: one commit, which stores the announcement with its event.
        m.at = 3600;
        let (r, commits) = m.poll(&b, r#"[{"id":1,"v":1}]"#);
        assert!(r.events.is_empty());
        assert_eq!(commits.len(), 1);
        let c = &commits[0].0;
        let kinds: Vec<(EventType, u64)> = c.outbox.iter().map(|(_, e)| (e.kind, e.seq)).collect();
        assert_eq!(kinds, [(EventType::Quiet, 1), (EventType::Quiet, 1)]);
        assert!(c.meta.quiet.as_ref().unwrap().announced);
        assert_eq!(c.meta.quiet.as_ref().unwrap().since_ms, started.since_ms);
        // A change: the update and `bridge.active` after it, in one commit with the item.
        m.at = 7200;
        let (r, commits) = m.poll(&b, r#"[{"id":1,"v":2}]"#);
        assert_eq!(commits.len(), 1);
        let c = &commits[0].0;
        let kinds: Vec<(EventType, u64)> = c.outbox.iter().map(|(_, e)| (e.kind, e.seq)).collect();
        use EventType::{Active, Updated};
        assert_eq!(
            kinds,
            [(Updated, 2), (Updated, 2), (Active, 3), (Active, 3)]
        );
        assert_eq!((c.puts.len(), c.meta.seq, r.emitted.updated), (1, 3, 1));
        assert!(!c.meta.quiet.as_ref().unwrap().announced);
    }

    #[test]
    fn a_duration_settles_by_the_clock_not_by_polls() {
        let b = bridge(|y| y.emit("settle: 10m"));
        let mut m = Memory::default();
        m.poll(&b, r#"[{"id":1,"v":1}]"#);
        m.at = 60;
        for _ in 0..5 {
            let (r, _) = m.poll(&b, r#"[{"id":1,"v":2}]"#);
            assert!(r.events.is_empty());
        }
        m.at = 60 + 599;
        let (r, _) = m.poll(&b, r#"[{"id":1,"v":2}]"#);
        assert!(r.events.is_empty());
        m.at = 60 + 600;
        let (r, _) = m.poll(&b, r#"[{"id":1,"v":2}]"#);
        assert_eq!(updates(&r), [(EventType::Updated, "1".into())]);
    }
}
