//! Listings (docs/configuration.md#pagination, docs/configuration.md#cursor): GraphQL pages through
//! `variables`, page numbers, offsets, `has_more`, and incremental listings (`source.cursor`)
//! across failures and restarts, against a real server on 127.0.0.1 and a real store.

use crate::support::*;
use pollhook::poll::Incomplete;
use serde_json::{Value, json};

fn uris(hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| h.uri.clone()).collect()
}

fn keys(r: &pollhook::poll::PollReport) -> Vec<String> {
    r.events.iter().map(|e| e.key.clone()).collect()
}

/// The JSON bodies the upstream got.
fn bodies(up: &Upstream) -> Vec<Value> {
    up.hits()
        .iter()
        .map(|h| serde_json::from_slice(&h.body).unwrap())
        .collect()
}

fn graphql_page(ids: &[u32], end: &str, more: bool) -> Answer {
    let nodes: Vec<Value> = ids.iter().map(|i| json!({"id": i, "title": "t"})).collect();
    Answer::json(&json!({"data": {"search": {
        "nodes": nodes,
        "pageInfo": {"endCursor": end, "hasNextPage": more}
    }}}))
}

#[tokio::test]
async fn graphql_pages_follow_variables_after_until_has_next_page_is_false() {
    let up = Upstream::start().await;
    up.then(graphql_page(&[1, 2], "c1", true));
    up.then(graphql_page(&[3, 4], "c2", true));
    // The last page still names a cursor: `hasNextPage: false` ends the listing.
    up.then(graphql_page(&[5], "c3", false));
    let h = Harness::new();
    let yaml = BridgeYaml::new(&format!("{}/graphql", up.base))
        .source("method: POST")
        .source("body: {query: \"query($first: Int, $after: String) { search }\", variables: {first: 2}}")
        .next("{variable: after, from: \"$.data.search.pageInfo.endCursor\"}")
        .paginate("has_more: \"$.data.search.pageInfo.hasNextPage\"")
        .select("$.data.search.nodes[*]")
        .first_poll("emit")
        .sink("console")
        .build();
    let b = h.bridge("gql", &yaml);
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["1", "2", "3", "4", "5"]);
    assert_eq!((r.pages, r.incomplete), (3, None));
    let sent = bodies(&up);
    assert_eq!(sent.len(), 3, "{sent:?}");
    // The query stays; `after` is set from the page before, `first` kept.
    assert_eq!(sent[0]["variables"], json!({"first": 2}));
    assert_eq!(sent[1]["variables"], json!({"first": 2, "after": "c1"}));
    assert_eq!(sent[2]["variables"], json!({"first": 2, "after": "c2"}));
    assert!(
        sent.iter()
            .all(|b| b["query"].as_str().unwrap().contains("search"))
    );

    // `has_more` that is not a boolean fails the poll, naming the path.
    up.then(Answer::json(&json!({"data": {"search": {
        "nodes": [], "pageInfo": {"endCursor": "x", "hasNextPage": "yes"}
    }}})));
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "next_page", "{e}");
    assert!(
        e.to_string()
            .contains("has_more at `$.data.search.pageInfo.hasNextPage` is not true or false"),
        "{e}"
    );
}

fn numbered_page(ids: std::ops::Range<u32>) -> Answer {
    let items: Vec<Value> = ids.map(|i| json!({"id": i})).collect();
    Answer::json(&json!({ "items": items }))
}

#[tokio::test]
async fn page_numbers_run_until_an_empty_page() {
    let up = Upstream::start().await;
    up.route("/items?per_page=2&page=1", numbered_page(1..3));
    up.route("/items?per_page=2&page=2", numbered_page(3..5));
    up.route("/items?per_page=2&page=3", numbered_page(5..6));
    up.route("/items?per_page=2&page=4", numbered_page(0..0));
    let h = Harness::new();
    let yaml = BridgeYaml::new(&format!("{}/items?per_page=2", up.base))
        .next("{page: page}")
        .first_poll("emit")
        .max_fraction("1.0")
        .sink("console");
    let b = h.bridge("pages", &yaml.build());
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["1", "2", "3", "4", "5"]);
    assert_eq!((r.pages, r.incomplete), (4, None));
    assert_eq!(
        uris(&up.hits()),
        [
            "/items?per_page=2&page=1",
            "/items?per_page=2&page=2",
            "/items?per_page=2&page=3",
            "/items?per_page=2&page=4"
        ]
    );

    // `max_pages` still stops it: incomplete, so nothing missing is deleted.
    let b = h.bridge("pages", &yaml.paginate("max_pages: 2").build());
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.incomplete, Some(Incomplete::MaxPages(2)));
    assert_eq!((r.items, r.deleted), (4, 0));
}

#[tokio::test]
async fn offsets_advance_by_the_items_on_each_page_from_their_start() {
    let up = Upstream::start().await;
    up.route("/items?offset=10", numbered_page(1..4));
    up.route("/items?offset=13", numbered_page(4..6));
    up.route("/items?offset=15", numbered_page(0..0));
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .next("{offset: offset, start: 10}")
        .first_poll("emit")
        .sink("console")
        .build();
    let b = h.bridge("offsets", &yaml);
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["1", "2", "3", "4", "5"]);
    assert_eq!(
        uris(&up.hits()),
        ["/items?offset=10", "/items?offset=13", "/items?offset=15"]
    );
}

#[tokio::test]
async fn has_more_false_ends_a_page_number_listing_before_its_empty_page() {
    let up = Upstream::start().await;
    let page = |ids: &[u32], more: bool| {
        let items: Vec<Value> = ids.iter().map(|i| json!({"id": i})).collect();
        Answer::json(&json!({ "items": items, "more": more }))
    };
    up.route("/items?p=0", page(&[1, 2], true));
    up.route("/items?p=1", page(&[3], false));
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .next("{page: p, start: 0}")
        .paginate("has_more: \"$.more\"")
        .first_poll("emit")
        .sink("console")
        .build();
    let r = h.poll(&h.bridge("more", &yaml)).await.unwrap();
    assert_eq!(keys(&r), ["1", "2", "3"]);
    assert_eq!(uris(&up.hits()), ["/items?p=0", "/items?p=1"]);
}

/// An audit log: items with `at`, newest last, listed from `since` (inclusive).
fn audit(entries: &[(&str, &str, u32)]) -> Answer {
    let items: Vec<Value> = entries
        .iter()
        .map(|(id, at, v)| json!({"id": id, "at": at, "v": v}))
        .collect();
    Answer::json(&json!({ "items": items }))
}

fn since_of(hit: &Hit) -> String {
    let url = url::Url::parse(&format!("http://x{}", hit.uri)).unwrap();
    url.query_pairs()
        .find(|(k, _)| k == "since")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn incremental_yaml(up: &Upstream, cursor_extra: &str) -> String {
    BridgeYaml::new(&up.url())
        .source(&format!(
            "cursor: {{param: since, from: \"$.at\", initial: \"2026-01-01T00:00:00Z\"{cursor_extra}}}"
        ))
        .first_poll("emit")
        .sink("console")
        .build()
}

#[tokio::test]
async fn an_incremental_listing_loses_and_repeats_nothing_across_failures_and_restarts() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("audit", &incremental_yaml(&up, ""));
    let mut all_events = Vec::new();

    up.then(audit(&[
        ("a", "2026-01-02T00:00:00Z", 1),
        ("b", "2026-01-03T00:00:00Z", 1),
    ]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["a", "b"]);
    all_events.extend(r.events);
    let cursor = |h: &Harness| h.snapshot("audit").1.cursor;
    assert_eq!(cursor(&h), Some(json!("2026-01-03T00:00:00Z")));

    // `since` is inclusive: b comes again, unchanged: no change. a is not listed: not deleted.
    up.then(audit(&[
        ("b", "2026-01-03T00:00:00Z", 1),
        ("c", "2026-01-04T00:00:00Z", 1),
    ]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["c"]);
    assert_eq!((r.deleted, r.items), (0, 2));
    all_events.extend(r.events);

    // A failed poll stores nothing and keeps the cursor.
    let before = h.snapshot("audit");
    up.then(Answer::new(500, "text/plain", "down"));
    h.poll(&b).await.unwrap_err();
    assert_eq!(h.snapshot("audit"), before);

    // The next asks from the same cursor; a changes (an update, with its previous value).
    up.then(audit(&[("a", "2026-01-05T00:00:00Z", 2)]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["a"]);
    assert_eq!(
        r.events[0].previous.as_ref().unwrap().value().unwrap()["v"],
        1
    );
    all_events.extend(r.events);

    // After a restart the stored cursor is sent; an item older than it (a late write) is
    // still reported, and the cursor does not move back; an empty answer keeps it.
    let h = h.restart();
    up.then(audit(&[("d", "2026-01-04T12:00:00Z", 1)]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["d"]);
    all_events.extend(r.events);
    up.then(audit(&[]));
    let r = h.poll(&b).await.unwrap();
    assert!(r.events.is_empty());
    assert_eq!(cursor(&h), Some(json!("2026-01-05T00:00:00Z")));

    let sent: Vec<String> = up.hits().iter().map(since_of).collect();
    assert_eq!(
        sent,
        [
            "2026-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-04T00:00:00Z",
            "2026-01-05T00:00:00Z",
            "2026-01-05T00:00:00Z",
        ]
    );
    // Every change once, seq gap-free, in the outbox as in the reports.
    let seqs: Vec<u64> = all_events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    let (items, meta, outbox) = h.snapshot("audit");
    assert_eq!((items.len(), meta.seq, outbox), (4, 5, 5));
}

/// Items as the audit log lists them, `at` any JSON value.
fn audit_values(entries: &[(&str, Value)]) -> Answer {
    let items: Vec<Value> = entries
        .iter()
        .map(|(id, at)| json!({"id": id, "at": at, "v": 1}))
        .collect();
    Answer::json(&json!({ "items": items }))
}

/// One item whose `at` is no time among times sorted last as text and became the cursor: every
/// later poll asked `since=zzzz-not-a-date`, for good. A value unlike the cursor's (no time,
/// another type) is compared and sent as usual but does not move the cursor; later good
/// values still do.
#[tokio::test]
async fn a_cursor_value_unlike_the_others_does_not_move_the_cursor() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("audit", &incremental_yaml(&up, ""));
    up.then(audit_values(&[
        ("a", json!("2026-01-02T00:00:00Z")),
        ("bad", json!("zzzz-not-a-date")),
        ("b", json!("2026-01-03T00:00:00Z")),
        ("num", json!(99999999999_u64)),
        ("flag", json!(true)),
    ]));
    let r = h.poll(&b).await.unwrap();
    let mut created = keys(&r);
    created.sort();
    assert_eq!(
        created,
        ["a", "b", "bad", "flag", "num"],
        "all sent as usual"
    );
    let cursor = |h: &Harness| h.snapshot("audit").1.cursor;
    assert_eq!(cursor(&h), Some(json!("2026-01-03T00:00:00Z")));
    let unlike = r.cursor_unlike.unwrap();
    assert_eq!(unlike.values, 3);
    assert_eq!(unlike.key.as_deref(), Some("bad"));
    assert_eq!(unlike.value, "\"zzzz-not-a-date\"");

    // Listed again, with a later good one: the cursor moves to it, not past it.
    up.then(audit_values(&[
        ("bad", json!("zzzz-not-a-date")),
        ("c", json!("2026-01-04T00:00:00.5+01:00")),
    ]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["c"]);
    assert_eq!(cursor(&h), Some(json!("2026-01-04T00:00:00.5+01:00")));
    // Compared as times, not as text: 23:30Z is later than 00:00:00.5+01:00 (23:00:00.5Z).
    up.then(audit_values(&[("d", json!("2026-01-03T23:30:00Z"))]));
    h.poll(&b).await.unwrap();
    assert_eq!(cursor(&h), Some(json!("2026-01-03T23:30:00Z")));
    let sent: Vec<String> = up.hits().iter().map(since_of).collect();
    assert_eq!(
        sent,
        [
            "2026-01-01T00:00:00Z",
            "2026-01-03T00:00:00Z",
            "2026-01-04T00:00:00.5+01:00",
        ]
    );

    // A store an earlier version poisoned (its cursor the text that sorted last): the next
    // poll asks from `initial` again, says so, and stores a good cursor.
    let store = h.ctx.store().unwrap();
    let base = store.meta("audit").unwrap();
    let mut meta = base.clone();
    meta.cursor = Some(json!("zzzz-not-a-date"));
    store
        .commit(&pollhook::store::Commit {
            bridge: "audit".into(),
            expected_seq: base.seq,
            base: Some(base),
            meta,
            ..Default::default()
        })
        .unwrap();
    up.then(audit_values(&[("e", json!("2026-01-05T00:00:00Z"))]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["e"]);
    let unlike = r.cursor_unlike.unwrap();
    assert_eq!(
        (unlike.key, unlike.value.as_str()),
        (None, "\"zzzz-not-a-date\"")
    );
    assert_eq!(cursor(&h), Some(json!("2026-01-05T00:00:00Z")));
    let sent = up.hits().iter().map(since_of).last();
    assert_eq!(sent.as_deref(), Some("2026-01-01T00:00:00Z"));
}

/// The real binary, polling every second an audit log that lists a hostile value each time:
/// every poll after the first asks from the last good cursor, one WARN says so (once per
/// process: again once after a restart), and a later good value still moves the cursor on.
#[tokio::test]
async fn the_daemon_warns_once_of_a_value_unlike_the_cursor_and_asks_from_the_good_one() {
    let up = Upstream::start().await;
    up.set_answer(audit_values(&[
        ("a", json!("2026-01-02T00:00:00Z")),
        ("bad", json!("zzzz-not-a-date")),
        ("b", json!("2026-01-03T00:00:00Z")),
    ]));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1s")
        .source("cursor: {param: since, from: \"$.at\", initial: \"2026-01-01T00:00:00Z\"}")
        .first_poll("emit")
        .sink("console")
        .write(dir.path(), "audit");
    let warned = |logs: &[String]| {
        logs.iter()
            .filter(|l| l.contains("WARN") && l.contains("do not move the cursor"))
            .count()
    };
    let sent = |up: &Upstream| -> Vec<String> { up.hits().iter().map(since_of).collect() };
    for run in 0..2 {
        let d = Daemon::start(dir.path(), &[]);
        let before = up.hits().len();
        until("three polls", || up.hits().len() >= before + 3).await;
        let (_, _, logs) = d.terminate().await;
        assert_eq!(warned(&logs), 1, "once in run {run}:\n{}", logs.join("\n"));
        let asked = sent(&up);
        assert_eq!(asked[0], "2026-01-01T00:00:00Z");
        assert!(
            asked[1..].iter().all(|s| s == "2026-01-03T00:00:00Z"),
            "{asked:?}"
        );
    }
    up.set_answer(audit_values(&[
        ("bad", json!("zzzz-not-a-date")),
        ("c", json!("2026-01-04T00:00:00Z")),
    ]));
    let d = Daemon::start(dir.path(), &[]);
    until("a poll asking from the next good cursor", || {
        sent(&up).last().map(String::as_str) == Some("2026-01-04T00:00:00Z")
    })
    .await;
    d.terminate().await;
}

/// `pollhook reset` forgets the cursor with the items: the next poll asks from `initial`
/// and takes the whole answer as its baseline again.
#[tokio::test]
async fn a_reset_forgets_the_cursor_with_the_items() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("audit", &incremental_yaml(&up, ""));
    let listed = [
        ("a", "2026-01-02T00:00:00Z", 1),
        ("b", "2026-01-03T00:00:00Z", 1),
    ];
    up.then(audit(&listed));
    h.poll(&b).await.unwrap();
    assert_eq!(
        h.snapshot("audit").1.cursor,
        Some(json!("2026-01-03T00:00:00Z"))
    );
    h.ctx.store().unwrap().reset("audit").unwrap();
    let (items, meta, _) = h.snapshot("audit");
    assert!(items.is_empty());
    assert_eq!(meta.cursor, None);
    up.then(audit(&listed));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["a", "b"], "first_poll: emit, again");
    let sent: Vec<String> = up.hits().iter().map(since_of).collect();
    assert_eq!(sent, ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z"]);
    assert_eq!(
        h.snapshot("audit").1.cursor,
        Some(json!("2026-01-03T00:00:00Z"))
    );
}

/// A new `initial` (a backfill) is a new meaning: the re-baseline asks from it, silently,
/// not from the cursor found under the old definition.
#[tokio::test]
async fn a_changed_cursor_definition_asks_from_its_initial_again() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("audit", &incremental_yaml(&up, ""));
    up.then(audit(&[("b", "2026-01-03T00:00:00Z", 1)]));
    h.poll(&b).await.unwrap();
    let earlier = incremental_yaml(&up, "").replace("2026-01-01T00:00:00Z", "2025-06-01T00:00:00Z");
    let b = h.bridge("audit", &earlier);
    up.then(audit(&[
        ("a", "2025-07-01T00:00:00Z", 1),
        ("b", "2026-01-03T00:00:00Z", 1),
    ]));
    let r = h.poll(&b).await.unwrap();
    assert!(r.rebaselined && r.events.is_empty(), "{r:?}");
    assert_eq!(r.items, 2);
    up.then(audit(&[("c", "2026-01-04T00:00:00Z", 1)]));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["c"]);
    let sent: Vec<String> = up.hits().iter().map(since_of).collect();
    assert_eq!(
        sent,
        [
            "2026-01-01T00:00:00Z",
            "2025-06-01T00:00:00Z",
            "2026-01-03T00:00:00Z"
        ]
    );
}

#[tokio::test]
async fn keep_forgets_items_not_listed_for_that_long() {
    let up = Upstream::start().await;
    let h = Harness::new();
    let b = h.bridge("kept", &incremental_yaml(&up, ", keep: 30d"));
    let now = chrono::Utc::now();
    let poll_at = |days: i64| {
        let at = now + chrono::TimeDelta::days(days);
        pollhook::poll::poll_once(&h.ctx, &b, true, at)
    };
    up.then(audit(&[
        ("a", "2026-01-02T00:00:00Z", 1),
        ("b", "2026-01-02T00:00:00Z", 1),
    ]));
    poll_at(0).await.unwrap();
    // b is listed again (unchanged) 20 days on: seen then.
    up.then(audit(&[("b", "2026-01-02T00:00:00Z", 1)]));
    let r = poll_at(20).await.unwrap();
    assert!(r.events.is_empty());
    // 31 days on, a was last listed 31 days ago: forgotten, silently; b stays.
    up.then(audit(&[]));
    let r = poll_at(31).await.unwrap();
    assert!(r.events.is_empty(), "{:?}", r.events);
    assert_eq!(r.deleted, 0);
    let names: Vec<String> = h.snapshot("kept").0.into_iter().map(|(k, ..)| k).collect();
    assert_eq!(names, ["b"]);
    // Listed again, a is new to us.
    up.then(audit(&[("a", "2026-01-02T00:00:00Z", 1)]));
    let r = poll_at(32).await.unwrap();
    assert_eq!(r.created, 1);
}

#[tokio::test]
async fn a_graphql_cursor_goes_in_the_variables_and_pages_keep_it() {
    let up = Upstream::start().await;
    let page = |ids: &[u32], at: u32, end: Value| {
        let nodes: Vec<Value> = ids.iter().map(|i| json!({"id": i, "at": at})).collect();
        Answer::json(&json!({"data": {"nodes": nodes, "next": end}}))
    };
    up.then(page(&[1], 5, json!("p2")));
    up.then(page(&[2], 9, Value::Null));
    up.then(page(&[], 0, Value::Null));
    let h = Harness::new();
    let yaml = BridgeYaml::new(&format!("{}/graphql", up.base))
        .source("method: POST")
        .source("body: {query: \"{ nodes }\"}")
        .source("cursor: {variable: since, from: \"$.at\"}")
        .next("{variable: after, from: \"$.data.next\"}")
        .select("$.data.nodes[*]")
        .first_poll("emit")
        .sink("console")
        .build();
    let b = h.bridge("gqlc", &yaml);
    let r = h.poll(&b).await.unwrap();
    assert_eq!(keys(&r), ["1", "2"]);
    // Numbers compare as numbers, and go out as numbers.
    assert_eq!(h.snapshot("gqlc").1.cursor, Some(json!(9)));
    h.poll(&b).await.unwrap();
    let sent = bodies(&up);
    assert_eq!(sent[0].get("variables"), None, "no initial: no cursor");
    assert_eq!(sent[1]["variables"], json!({"after": "p2"}));
    assert_eq!(sent[2]["variables"], json!({"since": 9}));
}

#[test]
fn check_names_each_bad_listing_key_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let base = "schedule: {every: 5m}\nsource:\n  url: http://127.0.0.1:1/x\n";
    let tail = "items: {select: \"$[*]\", key: \"$.id\"}\nsinks: [{url: console}]\n";
    let cases = [
        (
            "  cursor: {param: since, variable: since, from: \"$.at\"}\n",
            "a.yaml:4:11: source.cursor: give exactly one of `param`",
        ),
        (
            "  cursor: {variable: since, from: \"$.at\"}\n",
            "a.yaml:4:22: source.cursor.variable: needs `method: POST` and a `body` that is an object",
        ),
        (
            "  cursor: {param: since, from: \"$.[\"}\n",
            "a.yaml:4:32: source.cursor.from: JSONPath `$.[` does not parse",
        ),
        (
            "  cursor: {param: since, from: \"$.at\", keep: 1h}\n",
            "a.yaml:4:46: source.cursor.keep: `1h` is out of range (1day .. 100years)",
        ),
        (
            "  cursor: {param: since, from: \"$.at\", initial: [1]}\n",
            "a.yaml:4:49: source.cursor.initial: give a string or a number",
        ),
        (
            "  paginate: {next: {page: page}, has_more: \"$.[\"}\n",
            "a.yaml:4:44: source.paginate.has_more: JSONPath `$.[` does not parse",
        ),
        (
            "  paginate: {next: {variable: after, from: \"$.end\"}}\n",
            "a.yaml:4:31: source.paginate.next.variable: needs `method: POST`",
        ),
        (
            "  paginate: {next: {page: \"\"}}\n",
            "a.yaml:4:27: source.paginate.next.page: give a name, not an empty string",
        ),
        (
            "  cursor: {param: \"\", from: \"$.at\"}\n",
            "a.yaml:4:19: source.cursor.param: give a name, not an empty string",
        ),
        // Two forms in one mapping, or a start that is no whole number: none of the forms.
        (
            "  paginate: {next: {page: p, offset: o}}\n",
            "a.yaml:4:13: source.paginate: give `link`, `{url: JSONPATH}`, `{param: NAME, from: JSONPATH}`, `{variable: NAME, from: JSONPATH}`, `{page: NAME, start: N}` or `{offset: NAME, start: N}`",
        ),
        (
            "  paginate: {next: {offset: o, start: -1}}\n",
            "a.yaml:4:13: source.paginate: give `link`",
        ),
        (
            "  paginate: {next: {page: since}}\n  cursor: {param: since, from: \"$.at\"}\n",
            "a.yaml:5:19: source.cursor.param: `since` is also what `source.paginate.next` sets; give each its own",
        ),
    ];
    for (line, want) in cases {
        std::fs::write(dir.path().join("a.yaml"), format!("{base}{line}{tail}")).unwrap();
        let (code, out, err) = cli(&["check", dir.path().to_str().unwrap()]);
        let shown = err.replace(&format!("{}/", dir.path().display()), "");
        assert_eq!(code, 1, "{line}: {out}{err}");
        assert!(shown.contains(want), "{line}\nwant `{want}`\ngot  {shown}");
    }
}
