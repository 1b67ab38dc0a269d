//! Sources as real APIs are: pages (Link header, URL in the body, cursor), `max_pages`,
//! conditional requests, against real servers on 127.0.0.1 and a real sled store.

use crate::support::*;
use pollhook::poll::Incomplete;
use serde_json::{Value, json};

/// The recorded GitHub pages (octokit/fixtures, MIT): path, headers and body of each.
fn github_pages() -> Vec<Value> {
    serde_json::from_str(include_str!("fixtures/github/paginate-issues.json")).unwrap()
}

const GITHUB_FIRST: &str = "/repos/octokit-fixture-org/paginate-issues/issues?per_page=3";

/// Serves the five GitHub pages at their recorded paths, with their real headers and the
/// `Link` targets rewritten from https://api.github.com to this server.
fn serve_github(up: &Upstream) {
    for page in github_pages() {
        up.route(page["path"].as_str().unwrap(), github_answer(up, &page));
    }
}

fn github_answer(up: &Upstream, page: &Value) -> Answer {
    let h = &page["headers"];
    let text = |k: &str| h[k].as_str().unwrap().to_string();
    Answer::new(
        200,
        "application/json; charset=utf-8",
        &page["response"].to_string(),
    )
    .header("etag", &text("etag"))
    .header(
        "link",
        &text("link").replace("https://api.github.com", &up.base),
    )
    .header("x-ratelimit-limit", &text("x-ratelimit-limit"))
    .header("x-ratelimit-remaining", &text("x-ratelimit-remaining"))
}

fn github_yaml(up: &Upstream, first_poll: &str) -> String {
    BridgeYaml::new(&format!("{}{GITHUB_FIRST}", up.base))
        .header("Accept", "application/vnd.github+json")
        .header("Authorization", "\"token ${TEST_TOKEN}\"")
        .next("link")
        .select("$[*]")
        .key("$.number")
        .items("exclude: [\"$.reactions\"]")
        .first_poll(first_poll)
        .sink("console")
        .build()
}

fn github_paths() -> Vec<String> {
    let mut p = vec![GITHUB_FIRST.to_string()];
    p.extend((2..=5).map(|n| format!("/repositories/1000/issues?per_page=3&page={n}")));
    p
}

fn uris(hits: &[Hit]) -> Vec<String> {
    hits.iter().map(|h| h.uri.clone()).collect()
}

#[tokio::test]
async fn github_fixture_is_replayed_through_its_link_headers() {
    let up = Upstream::start().await;
    serve_github(&up);
    let h = Harness::new();
    let b = h.bridge("gh", &github_yaml(&up, "emit"));

    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.pages, r.items, r.incomplete), (5, 13, None));
    let keys: Vec<&str> = r.events.iter().map(|e| e.key.as_str()).collect();
    let want: Vec<String> = (1..=13).rev().map(|n| n.to_string()).collect();
    assert_eq!(keys, want, "every page, in page order");
    assert_eq!(
        r.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=13).collect::<Vec<_>>()
    );
    let hits = up.hits();
    assert_eq!(
        uris(&hits),
        github_paths(),
        "rel=next followed, prev/last/first ignored"
    );
    for hit in &hits {
        assert_eq!(hit.header("authorization"), Some("token tok-abc-123"));
        assert_eq!(
            hit.header("if-none-match"),
            None,
            "no validator before a baseline"
        );
    }
    assert_eq!(h.ctx.store().unwrap().items("gh").unwrap().len(), 13);

    // Unchanged: every page is asked for with its ETag, every page answers 304.
    let before = h.snapshot("gh");
    let r = h.poll(&b).await.unwrap();
    assert!(r.not_modified && r.events.is_empty(), "{r:?}");
    assert_eq!((r.pages, r.items), (5, 13));
    let again = &up.hits()[5..];
    assert_eq!(uris(again), github_paths());
    for hit in again {
        assert_eq!(
            hit.header("if-none-match"),
            Some("\"00000000000000000000000000000000\"")
        );
        assert_eq!(hit.status, 304);
    }
    assert_eq!(h.snapshot("gh"), before);
}

#[tokio::test]
async fn an_edit_on_page_3_is_found_while_page_1_answers_304() {
    let up = Upstream::start().await;
    serve_github(&up);
    let h = Harness::new();
    let b = h.bridge("gh", &github_yaml(&up, "baseline"));
    assert!(h.poll(&b).await.unwrap().baseline);
    assert!(h.poll(&b).await.unwrap().not_modified);
    let before = h.snapshot("gh");
    let pages_before = h.ctx.store().unwrap().pages("gh").unwrap();
    assert_eq!(pages_before.len(), 5);

    // Issue 6 (page 3) is edited upstream; page 3 gets a new ETag. Page 4 fails this time.
    let mut page3 = github_pages()[2].clone();
    page3["response"][1]["title"] = json!("Test issue 6, edited");
    let path3 = page3["path"].as_str().unwrap().to_string();
    up.route(
        &path3,
        github_answer(&up, &page3).header("etag", "\"edited\""),
    );
    let path4 = github_paths()[3].clone();
    up.route(&path4, Answer::new(500, "text/plain", "oops"));
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}{path4}: answered HTTP 500", up.base)
    );
    // A failed page fails the poll: no state, no event, and no validator is stored, so page
    // 3's change cannot be hidden by a 304 next time.
    assert_eq!(h.snapshot("gh"), before);
    assert_eq!(h.ctx.store().unwrap().pages("gh").unwrap(), pages_before);

    up.route(&path4, github_answer(&up, &github_pages()[3]));
    let n = up.hits().len();
    let r = h.poll(&b).await.unwrap();
    let statuses: Vec<u16> = up.hits()[n..].iter().map(|h| h.status).collect();
    assert_eq!(statuses, [304, 304, 200, 304, 304]);
    assert!(!r.not_modified);
    assert_eq!((r.created, r.updated, r.deleted), (0, 1, 0));
    assert_eq!(r.events.len(), 1);
    let e = &r.events[0];
    assert_eq!(e.key, "6");
    assert_eq!(
        serde_json::to_value(e).unwrap()["changes"],
        json!([{"op": "replace", "path": "/title", "value": "Test issue 6, edited"}])
    );
    assert_eq!(h.ctx.store().unwrap().outbox_len("gh"), 1);
    // And now the whole listing is unchanged again.
    assert!(h.poll(&b).await.unwrap().not_modified);
    assert_eq!(h.ctx.store().unwrap().outbox_len("gh"), 1);
}

#[tokio::test]
async fn no_validators_before_a_baseline_after_a_definition_change_or_a_reset() {
    let up = Upstream::start().await;
    let listing = json!({"items": [{"id": 1, "slug": "a"}, {"id": 2, "slug": "b"}]});
    up.set_answer(Answer::json(&listing).header("etag", "\"v1\""));
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .timeout("2s")
        .max_fraction("1.0")
        .sink("console")
        .retry("[1s, 2s]")
        .build();
    let b = h.bridge("c", &yaml);
    let inm = |i: usize| up.hits()[i].header("if-none-match").map(str::to_string);

    assert!(h.poll(&b).await.unwrap().baseline);
    assert_eq!(inm(0), None);
    assert!(h.poll(&b).await.unwrap().not_modified);
    assert_eq!(inm(1).as_deref(), Some("\"v1\""));

    // A changed key re-baselines from a full answer, not from a 304.
    let b2 = h.bridge("c", &yaml.replace("key: \"$.id\"", "key: \"$.slug\""));
    let r = h.poll(&b2).await.unwrap();
    assert!(r.rebaselined && !r.not_modified && r.events.is_empty());
    assert_eq!(inm(2), None);
    assert!(h.poll(&b2).await.unwrap().not_modified);
    assert_eq!(inm(3).as_deref(), Some("\"v1\""));

    // After a reset: a fresh baseline, without validators.
    h.ctx.store().unwrap().reset("c").unwrap();
    let r = h.poll(&b2).await.unwrap();
    assert!(r.baseline && !r.not_modified);
    assert_eq!(inm(4), None);
    assert_eq!(h.ctx.store().unwrap().items("c").unwrap().len(), 2);

    // `conditional: false`: never a validator, never a cached page.
    let b3 = h.bridge(
        "c",
        &yaml
            .replace("key: \"$.id\"", "key: \"$.slug\"")
            .replace("  timeout: 2s\n", "  timeout: 2s\n  conditional: false\n"),
    );
    for _ in 0..2 {
        let r = h.poll(&b3).await.unwrap();
        assert!(!r.not_modified);
    }
    assert_eq!((inm(5), inm(6)), (None, None));
    assert!(h.ctx.store().unwrap().pages("c").unwrap().is_empty());
}

#[tokio::test]
async fn page_bodies_are_kept_only_where_a_304_may_stand_for_one() {
    let up = Upstream::start().await;
    let ab = json!({"items": [{"id": "a"}, {"id": "b"}]});
    up.set_answer(Answer::json(&ab).header("etag", "\"1\""));
    let h = Harness::new();
    let inm = |i: usize| up.hits()[i].header("if-none-match").map(str::to_string);

    // One page and no absences counted: a 304 always ends the poll, so only validators are
    // stored.
    let one = h.bridge("one", &BridgeYaml::standard(&up.url(), "console").build());
    h.poll(&one).await.unwrap();
    let pages = h.ctx.store().unwrap().pages("one").unwrap();
    let (key, head) = pages.iter().next().unwrap();
    assert_eq!(
        (head.etag.as_deref(), head.digest.as_deref()),
        (Some("\"1\""), None)
    );
    assert_eq!(h.ctx.store().unwrap().page_body("one", key).unwrap(), None);
    assert!(h.poll(&one).await.unwrap().not_modified);

    // Counting absences: a 304 may have to stand for the page, so its body is kept.
    let am = h.bridge(
        "am",
        &BridgeYaml::standard(&up.url(), "console")
            .after_missing(3)
            .build(),
    );
    h.poll(&am).await.unwrap();
    up.set_answer(Answer::json(&json!({"items": [{"id": "a"}]})).header("etag", "\"2\""));
    h.poll(&am).await.unwrap();
    assert_eq!(h.ctx.store().unwrap().meta("am").unwrap().absent, 1);
    let pages = h.ctx.store().unwrap().pages("am").unwrap();
    let (key, head) = pages.iter().next().unwrap();
    let body = h
        .ctx
        .store()
        .unwrap()
        .page_body("am", key)
        .unwrap()
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["items"][0]["id"],
        "a"
    );
    assert_eq!(head.digest, Some(pollhook::store::page_digest(&body)));

    // A body that is gone: the 304 cannot stand for it, so the listing is fetched again
    // without validators, and the absence still counts once.
    assert_eq!(h.ctx.store().unwrap().forget_page_bodies("am").unwrap(), 1);
    let n = up.hits().len();
    let r = h.poll(&am).await.unwrap();
    let statuses: Vec<u16> = up.hits()[n..].iter().map(|h| h.status).collect();
    assert_eq!(statuses, [304, 200]);
    assert_eq!((inm(n).as_deref(), inm(n + 1)), (Some("\"2\""), None));
    assert!(!r.not_modified && r.events.is_empty());
    assert_eq!(h.ctx.store().unwrap().meta("am").unwrap().absent, 1);
    assert_eq!(h.ctx.store().unwrap().items("am").unwrap().len(), 2);
    let missing = h.ctx.store().unwrap().load_state("am").unwrap()["b"].missing;
    assert_eq!(missing, 2);
    // The body is back, and the third absence is a delete, from a 304.
    assert!(
        h.ctx
            .store()
            .unwrap()
            .page_body("am", key)
            .unwrap()
            .is_some()
    );
    let r = h.poll(&am).await.unwrap();
    assert_eq!(up.hits().last().unwrap().status, 304);
    assert_eq!((r.deleted, r.events[0].key.as_str()), (1, "b"));
}

fn paged_yaml(url: &str, next: &str) -> BridgeYaml {
    BridgeYaml::new(url)
        .timeout("1s")
        .next(next)
        .first_poll("emit")
        .max_fraction("1.0")
        .sink("console")
}

fn ids(r: &pollhook::poll::PollReport) -> Vec<String> {
    r.events.iter().map(|e| e.key.clone()).collect()
}

#[tokio::test]
async fn a_cursor_api_is_followed_until_the_cursor_runs_out() {
    let up = Upstream::start().await;
    let page = |ids: &[u32], next: Value| {
        let items: Vec<Value> = ids.iter().map(|i| json!({"id": i, "v": 0})).collect();
        Answer::json(&json!({"items": items, "meta": {"next_cursor": next}}))
    };
    up.route("/items?limit=2", page(&[1, 2], json!("c2")));
    up.route("/items?limit=2&cursor=c2", page(&[3, 4], json!("c3")));
    up.route("/items?limit=2&cursor=c3", page(&[5], Value::Null));
    let h = Harness::new();
    let b = h.bridge(
        "cur",
        &paged_yaml(
            &format!("{}/items?limit=2", up.base),
            "{param: cursor, from: \"$.meta.next_cursor\"}",
        )
        .build(),
    );
    let r = h.poll(&b).await.unwrap();
    assert_eq!(ids(&r), ["1", "2", "3", "4", "5"]);
    assert_eq!((r.pages, r.incomplete), (3, None));
    assert_eq!(
        uris(&up.hits()),
        [
            "/items?limit=2",
            "/items?limit=2&cursor=c2",
            "/items?limit=2&cursor=c3"
        ]
    );

    // Item 1 changes on page 1, but the last page fails: nothing is stored or emitted.
    let before = h.snapshot("cur");
    let mut first =
        json!({"items": [{"id": 1, "v": 1}, {"id": 2, "v": 0}], "meta": {"next_cursor": "c2"}});
    up.route("/items?limit=2", Answer::json(&first));
    up.route(
        "/items?limit=2&cursor=c3",
        Answer::new(200, "text/html", "<html>rate limit page</html>"),
    );
    let e = h.poll(&b).await.unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}/items?limit=2&cursor=c3: response is not JSON (content-type text/html)",
            up.base
        )),
        "{e}"
    );
    assert_eq!(h.snapshot("cur"), before);

    // Back to normal: the change is found, and a cursor of "" ends the listing too.
    up.route("/items?limit=2&cursor=c3", page(&[5], json!("")));
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.updated, r.created, r.deleted), (1, 0, 0));
    // The cursor may also be a number, and a page may be empty.
    first["meta"]["next_cursor"] = json!(7);
    up.route("/items?limit=2", Answer::json(&first));
    up.route("/items?limit=2&cursor=7", page(&[], Value::Null));
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.pages, r.items, r.deleted), (2, 2, 3));
}

#[tokio::test]
async fn a_body_url_api_with_relative_and_absolute_next_links() {
    let up = Upstream::start().await;
    up.route(
        "/b",
        Answer::json(&json!({"items": [{"id": "a"}], "next": "/b?page=2"})),
    );
    up.route(
        "/b?page=2",
        Answer::json(&json!({"items": [{"id": "b"}], "next": format!("{}/b?page=3", up.base)})),
    );
    up.route(
        "/b?page=3",
        Answer::json(&json!({"items": [{"id": "c"}], "next": null})),
    );
    let h = Harness::new();
    let b = h.bridge(
        "body",
        &paged_yaml(&format!("{}/b", up.base), "{url: \"$.next\"}").build(),
    );
    let r = h.poll(&b).await.unwrap();
    assert_eq!(ids(&r), ["a", "b", "c"]);
    assert_eq!(uris(&up.hits()), ["/b", "/b?page=2", "/b?page=3"]);

    // A next link to another origin would carry the source's headers there: refused.
    let other = format!(
        "{}/b?page=3&token=t-9911",
        up.base.replace("127.0.0.1", "localhost")
    );
    up.route(
        "/b?page=2",
        Answer::json(&json!({"items": [{"id": "b2"}], "next": other})),
    );
    let before = h.snapshot("body");
    let n = up.hits().len();
    let e = h.poll(&b).await.unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}/b?page=2: next page {} is not on the source's origin; refusing to send the source's headers there",
            up.base,
            other.replace("t-9911", "***")
        )
    );
    assert_eq!(up.hits().len(), n + 2, "the other origin was never asked");
    assert_eq!(h.snapshot("body"), before);
}

#[tokio::test]
async fn a_next_link_that_repeats_ends_the_listing_as_incomplete() {
    let up = Upstream::start().await;
    let link = |to: &str| format!("<{to}>; rel=\"next\"");
    up.route(
        "/l",
        Answer::json(&json!({"items": [{"id": 1}, {"id": 2}]})).header("link", &link("/l?p=2")),
    );
    // Page 2 points back at page 1: a loop.
    up.route(
        "/l?p=2",
        Answer::json(&json!({"items": [{"id": 3}, {"id": 4}]})).header("link", &link("/l")),
    );
    let h = Harness::new();
    let b = h.bridge(
        "loop",
        &paged_yaml(&format!("{}/l", up.base), "link").build(),
    );
    let r = h.poll(&b).await.unwrap();
    assert_eq!(ids(&r), ["1", "2", "3", "4"]);
    assert_eq!(r.incomplete, Some(Incomplete::Repeats));
    assert_eq!(up.hits().len(), 2, "page 1 is not fetched twice");

    // Item 4 goes, but an incomplete listing deletes nothing.
    up.route(
        "/l?p=2",
        Answer::json(&json!({"items": [{"id": 3}]})).header("link", &link("/l")),
    );
    let r = h.poll(&b).await.unwrap();
    assert_eq!((r.deleted, r.events.len()), (0, 0));
    assert_eq!(h.ctx.store().unwrap().items("loop").unwrap().len(), 4);
}

#[tokio::test]
async fn max_pages_reached_means_an_incomplete_listing_and_no_deletes() {
    let up = Upstream::start().await;
    let link = |to: &str| format!("<{to}>; rel=\"next\"");
    let page = |ids: &[u32], next: Option<&str>| {
        let items: Vec<Value> = ids.iter().map(|i| json!({"id": i})).collect();
        let a = Answer::json(&json!({ "items": items }));
        match next {
            Some(n) => a.header("link", &link(n)),
            None => a,
        }
    };
    up.route("/m", page(&[1, 2], Some("/m?page=2")));
    up.route("/m?page=2", page(&[3, 4], Some("/m?page=3")));
    up.route("/m?page=3", page(&[5], None));
    let h = Harness::new();
    let paged = paged_yaml(&format!("{}/m", up.base), "link");
    let two = paged.clone().paginate("max_pages: 2").build();
    let b = h.bridge("mp", &two);
    let r = h.poll(&b).await.unwrap();
    assert_eq!(ids(&r), ["1", "2", "3", "4"]);
    assert_eq!(r.incomplete, Some(Incomplete::MaxPages(2)));
    assert_eq!(
        uris(&up.hits()),
        ["/m", "/m?page=2"],
        "page 3 is never asked for"
    );

    // Item 1 vanishes: with the listing cut short, that means nothing.
    up.route("/m", page(&[2], Some("/m?page=2")));
    let r = h.poll(&b).await.unwrap();
    assert_eq!(
        (r.deleted, r.incomplete),
        (0, Some(Incomplete::MaxPages(2)))
    );
    let keys = |h: &Harness| -> Vec<String> {
        h.ctx
            .store()
            .unwrap()
            .items("mp")
            .unwrap()
            .into_iter()
            .map(|i| i.0)
            .collect()
    };
    assert_eq!(keys(&h), ["1", "2", "3", "4"]);

    // With room for every page the listing is complete: 5 is new, 1 is gone.
    let b = h.bridge("mp", &paged.paginate("max_pages: 3").build());
    let r = h.poll(&b).await.unwrap();
    assert_eq!(r.incomplete, None);
    assert_eq!((r.created, r.deleted), (1, 1));
    assert_eq!(keys(&h), ["2", "3", "4", "5"]);
}
