//! Isolation (docs/operations.md#isolation): a bridge whose task dies is logged, shown and
//! restarted; a hung host delays only its own bridges; a poll-now waits for nobody's pause and
//! never doubles a poll.

use crate::support::*;
use serde_json::{Value, json};
use std::time::Duration;

fn bridge_file(dir: &std::path::Path, name: &str, url: &str, every: &str, timeout: &str) {
    BridgeYaml::new(url)
        .every(every)
        .timeout(timeout)
        .signed_sink("http://127.0.0.1:9/hook")
        .write(dir, name);
}

/// An acting admin request, through the daemon's admin socket, as the CLI makes it.
async fn act(d: &Daemon, path: &str) -> (u16, Value) {
    over_socket(&d.socket, reqwest::Method::POST, path).await
}

/// An upstream that, once closed, holds every answer until it is opened again.
struct Gate {
    url: String,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    async fn start() -> Gate {
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open = tokio::sync::watch::channel(true).0;
        let (h, rx) = (hits.clone(), open.subscribe());
        let app = axum::Router::new().fallback(move || {
            let h = h.clone();
            let mut rx = rx.clone();
            async move {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = rx.wait_for(|o| *o).await;
                axum::Json(json!({"items": [{"id": 1}]}))
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/items", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Gate { url, hits, open }
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn close(&self) {
        self.open.send_replace(false);
    }

    fn open(&self) {
        self.open.send_replace(true);
    }
}

fn status_of(v: &Value, name: &str) -> Value {
    v["bridges"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == name))
        .map(|b| b["status"].clone())
        .unwrap_or(Value::Null)
}

async fn bridges(base: &str) -> Value {
    get_json(&format!("{base}/v1/bridges")).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bridge_whose_task_dies_is_logged_shown_restarted_and_counted() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    // `boom` panics on its first two polls, then works; `calm` polls on beside it, and its
    // deliverer (started by the event of an item added after its baseline) panics once.
    // Its source URL carries a secret, which the panic's text quotes (see `fault::inject`).
    let url = format!("{}?access=${{BOOM_TOKEN}}", up.url());
    bridge_file(dir.path(), "boom", &url, "1s", "5s");
    bridge_file(dir.path(), "calm", &format!("{}/calm", up.base), "1s", "5s");
    up.route("/calm", Answer::json(&json!({"items": [{"id": 7}]})));
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = Daemon::start_with(
        dir.path(),
        &[
            ("POLLHOOK_FAULT", "poll-panic:boom:2,deliver-panic:calm:1"),
            ("BOOM_TOKEN", "tok-boom-5512"),
        ],
        &admin,
    );

    eventually(PATIENCE, "calm's baseline", || async {
        status_of(&bridges(&base).await, "calm")["polls"].as_u64() >= Some(1)
    })
    .await;
    up.route(
        "/calm",
        Answer::json(&json!({"items": [{"id": 7}, {"id": 8}]})),
    );

    // While it waits for its next slot, /healthz and /v1/bridges say so.
    let why = eventually(PATIENCE, "/healthz to say 503", || async {
        let (code, v) = get_json(&format!("{base}/healthz")).await;
        (code == 503).then(|| v.to_string())
    })
    .await;
    assert!(
        why.contains("bridge `boom`") && why.contains("panicked") && why.contains("fault injected"),
        "{why}"
    );

    // Restarted on its next slots until the fault is gone; counted; then healthy again.
    let s = eventually(
        2 * PATIENCE,
        "boom restarted twice, then a baseline",
        || async {
            let v = bridges(&base).await;
            let s = status_of(&v, "boom");
            if s["restarts"] == 2 && s["last_result"] == "baseline" {
                Ok(s)
            } else {
                Err(v.to_string())
            }
        },
    )
    .await;
    assert!(
        s["last_crash"]
            .as_str()
            .is_some_and(|c| c.contains("panicked")),
        "{s}"
    );
    eventually(PATIENCE, "healthy again", || async {
        get_json(&format!("{base}/healthz")).await.0 == 200
    })
    .await;
    let calm = eventually(PATIENCE, "calm's deliverer restarted once", || async {
        let calm = status_of(&bridges(&base).await, "calm");
        (calm["restarts"] == 1)
            .then_some(calm.clone())
            .ok_or(calm.to_string())
    })
    .await;
    assert!(
        calm["last_crash"]
            .as_str()
            .is_some_and(|c| c.contains("delivery task panicked")),
        "{calm}"
    );
    assert!(calm["polls"].as_u64().unwrap() >= 2, "{calm}");
    let metrics = get_json(&format!("{base}/metrics")).await.1;
    let metrics = metrics.as_str().unwrap().to_string();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("pollhook_task_restarts_total{")
                && l.contains("bridge=\"boom\"")
                && l.ends_with(" 2")),
        "{metrics}"
    );

    let (code, out, _) = d.cli(&["status"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("    last crash: its poll task panicked: fault injected: poll-panic in bridge `boom` (http://127.0.0.1:")
            && out.contains("/items?access=***) (restarted 2 times)"),
        "{out}"
    );
    // A sink's URL is its credential: masked whole.
    assert!(
        out.contains("    last crash: its delivery task panicked: fault injected: deliver-panic in bridge `calm` (***) (restarted 1 times)"),
        "{out}"
    );

    assert!(!out.contains("tok-boom-5512"), "{out}");
    assert!(!why.contains("tok-boom-5512"), "{why}");

    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    // The panic's own lines (Rust's, and the supervisor's) show the secret masked.
    let all = err.join("\n");
    assert!(
        !all.contains("tok-boom-5512") && !all.contains("127.0.0.1:9/hook"),
        "{all}"
    );
    assert!(all.contains("items?access=***)"), "{all}");
    let errors: Vec<&String> = err
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("bridge=boom"))
        .collect();
    assert_eq!(errors.len(), 2, "{}", err.join("\n"));
    let calm_errors = err
        .iter()
        .filter(|l| l.contains("ERROR") && l.contains("bridge=calm"))
        .count();
    assert_eq!(calm_errors, 1, "{}", err.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_now_that_panics_answers_500_and_the_bridge_waits_for_its_slot() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    // Once a year: its next slot is never a moment away, whenever the test runs (but in the
    // last minute of a year).
    BridgeYaml::new(&up.url())
        .cron("0 0 1 1 *")
        .timeout("5s")
        .signed_sink("http://127.0.0.1:9/hook")
        .write(dir.path(), "yearly");
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = Daemon::start_with(
        dir.path(),
        &[("POLLHOOK_FAULT", "poll-panic:yearly")],
        &admin,
    );
    eventually(PATIENCE, "the first poll's crash shown", || async {
        status_of(&bridges(&base).await, "yearly")["restarts"] == 1
    })
    .await;
    let s = status_of(&bridges(&base).await, "yearly");
    // Not polled again at once: the restart waits for the next slot, which status shows.
    let next = s["next_poll_ms"].as_i64().unwrap_or_else(|| panic!("{s}"));
    assert!(next > chrono::Utc::now().timestamp_millis() + 60_000, "{s}");
    let (code, v) = get_json(&format!("{base}/healthz")).await;
    assert_eq!(code, 503, "{v}");
    assert!(v.to_string().contains("yearly"), "{v}");

    // A poll-now of it: an answer with the reason, not a dropped connection.
    let (code, v) = act(&d, "/v1/bridges/yearly/poll?commit=true").await;
    assert_eq!(code, 500, "{v}");
    assert!(v.to_string().contains("panicked"), "{v}");
    // The daemon is still there and still answers.
    assert_eq!(get_json(&format!("{base}/healthz")).await.0, 503);

    // Removed while it waits for its restart: no longer a reason to be unhealthy.
    std::fs::remove_file(dir.path().join("bridges/yearly.yaml")).unwrap();
    bridge_file(dir.path(), "other", &up.url(), "1h", "5s");
    d.signal("-HUP");
    eventually(
        PATIENCE,
        "healthy once the crashed bridge is removed",
        || async { get_json(&format!("{base}/healthz")).await.0 == 200 },
    )
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    assert!(
        err.iter().any(|l| l.contains("ERROR")
            && l.contains("poll yearly requested through the admin API panicked")),
        "{}",
        err.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_bridges_on_a_hung_host_do_not_starve_one_on_another() {
    let hung = Upstream::start().await;
    hung.hang();
    let healthy = Upstream::start().await;
    healthy.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    for i in 0..300 {
        bridge_file(
            dir.path(),
            &format!("stuck-{i:03}"),
            &hung.url(),
            "1s",
            "5m",
        );
    }
    bridge_file(dir.path(), "fine", &healthy.url(), "1s", "5s");
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = Daemon::start_with(dir.path(), &[], &admin);
    until("the stuck bridges fill their host's slots", || {
        hung.hits().len() >= 16
    })
    .await;
    let before = healthy.hits().len();
    until("the healthy bridge keeps polling once a second", || {
        healthy.hits().len() >= before + 3
    })
    .await;
    // The hung host holds only its own share of the slots.
    let stuck = hung.hits().len();
    assert!(stuck <= 16, "{stuck} polls in flight on the hung host");
    let v = bridges(&base).await;
    let fine = status_of(&v, "fine");
    assert_eq!(
        (fine["last_result"].as_str(), fine["items"].as_u64()),
        (Some("ok"), Some(1)),
        "{fine}"
    );
    let _ = d.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_now_respects_a_pause_and_one_poll_runs_at_a_time() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::start().await;
    bridge_file(dir.path(), "slow", &gate.url, "1h", "10s");
    bridge_file(
        dir.path(),
        "limited",
        &format!("{}/limited", up.base),
        "1h",
        "10s",
    );
    up.route(
        "/limited",
        Answer::new(429, "application/json", "{}").header("retry-after", "3600"),
    );
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = Daemon::start_with(dir.path(), &[], &admin);
    eventually(PATIENCE, "both first polls done", || async {
        let v = bridges(&base).await;
        status_of(&v, "slow")["polls"] == 1 && status_of(&v, "limited")["polls"] == 1
    })
    .await;
    let hits = |p: &str| up.hits().iter().filter(|h| h.uri == p).count();
    assert_eq!(hits("/limited"), 1);

    gate.close();
    // The source asked for an hour's pause: a poll-now is refused with when it ends.
    for path in [
        "/v1/bridges/limited/poll",
        "/v1/bridges/limited/poll?commit=true",
    ] {
        let (code, v) = act(&d, path).await;
        assert_eq!(code, 429, "{v}");
        assert!(v["error"].as_str().unwrap().contains("paused"), "{v}");
    }
    assert_eq!(
        hits("/limited"),
        1,
        "a poll-now reached a source that asked for a pause"
    );

    // Five poll-nows at once of a slow source: one runs, the others are told one is running.
    let slow_first = gate.hits();
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let socket = d.socket.clone();
            tokio::spawn(async move {
                over_socket(
                    &socket,
                    reqwest::Method::POST,
                    "/v1/bridges/slow/poll?commit=true",
                )
                .await
            })
        })
        .collect();
    // Let the one that got through wait at the source until the others have their answers.
    until("one poll-now reached the source", || {
        gate.hits() > slow_first
    })
    .await;
    let mut codes = Vec::new();
    let mut pending = Vec::new();
    for c in calls {
        pending.push(c);
    }
    until("four answered", || {
        pending.iter().filter(|c| c.is_finished()).count() == 4
    })
    .await;
    gate.open();
    for c in pending {
        let (code, v) = c.await.unwrap();
        if code == 409 {
            assert!(v["error"].as_str().unwrap().contains("in flight"), "{v}");
        }
        codes.push(code);
    }
    codes.sort();
    assert_eq!(codes, vec![200, 409, 409, 409, 409]);
    assert_eq!(gate.hits(), slow_first + 1);

    // A client that hangs up does not free the bridge for a second poll: the first one runs
    // on to its end, and is counted.
    let polls = status_of(&bridges(&base).await, "slow")["polls"]
        .as_u64()
        .unwrap();
    gate.close();
    let impatient = reqwest::Client::builder()
        .unix_socket(d.socket.clone())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gone = impatient
        .post("http://localhost/v1/bridges/slow/poll?commit=true")
        .send()
        .await;
    assert!(gone.is_err_and(|e| e.is_timeout()));
    assert_eq!(gate.hits(), slow_first + 2);
    let (code, v) = act(&d, "/v1/bridges/slow/poll?commit=true").await;
    assert_eq!(code, 409, "{v}");
    gate.open();
    eventually(PATIENCE, "the abandoned poll recorded", || async {
        status_of(&bridges(&base).await, "slow")["polls"].as_u64() == Some(polls + 1)
    })
    .await;
    assert_eq!(gate.hits(), slow_first + 2);
    let _ = d.terminate().await;
}

/// Random admin requests (methods, paths, queries, headers, bodies), over TCP and over the
/// admin socket: every one gets an answer (a panic in a handler would drop the connection),
/// none acts over TCP without the token, and the daemon is healthy after them all. (The
/// client resolves plain `.` and `..` segments before sending, as any HTTP client does;
/// their percent-encoded forms reach the daemon as they are.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_admin_requests_never_crash_or_act_without_rights() {
    use rand::{Rng, SeedableRng};
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    bridge_file(dir.path(), "b", &up.url(), "1h", "5s");
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = Daemon::start_with(dir.path(), &[], &admin);
    eventually(PATIENCE, "the first poll", || async {
        status_of(&bridges(&base).await, "b")["polls"] == 1
    })
    .await;
    let seed: u64 = rand::random();
    eprintln!("seed {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    const PIECES: [&str; 24] = [
        "v1",
        "bridges",
        "b",
        "poll",
        "reset",
        "resync",
        "dead-letters",
        "replay",
        "healthz",
        "metrics",
        "..",
        ".",
        "%2e%2e",
        "%00",
        "%ff",
        "évé",
        "evt_0",
        "a-very-long-name-of-a-bridge-that-is-not-there",
        "",
        "a%2Fb",
        "%",
        "{name}",
        "0",
        "-1",
    ];
    let tcp = reqwest::Client::new();
    let sock = reqwest::Client::builder()
        .unix_socket(d.socket.clone())
        .build()
        .unwrap();
    let mut acted_over_tcp = Vec::new();
    for i in 0..300 {
        let depth = rng.random_range(0..6);
        let mut path = String::new();
        for _ in 0..depth {
            path.push('/');
            path.push_str(PIECES[rng.random_range(0..PIECES.len())]);
        }
        if path.is_empty() {
            path.push('/');
        }
        if rng.random_bool(0.4) {
            let q = [
                "commit=true",
                "commit=maybe",
                "bridge=b",
                "bridge=",
                "commit",
                "%%",
                "a=b&a=c",
            ];
            path.push('?');
            path.push_str(q[rng.random_range(0..q.len())]);
        }
        let method = [
            reqwest::Method::GET,
            reqwest::Method::POST,
            reqwest::Method::DELETE,
            reqwest::Method::PUT,
            reqwest::Method::HEAD,
        ][rng.random_range(0..5)]
        .clone();
        let body: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        let auth: String = (0..rng.random_range(0..20))
            .map(|_| rng.random_range(b' '..=b'~') as char)
            .collect();
        let over_socket = i % 2 == 1;
        let client = if over_socket { &sock } else { &tcp };
        let host = if over_socket {
            "http://localhost"
        } else {
            base.as_str()
        };
        let Ok(url) = reqwest::Url::parse(&format!("{host}{path}")) else {
            continue;
        };
        let r = client
            .request(method.clone(), url)
            .header("authorization", format!("Bearer {auth}"))
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path} (socket: {over_socket}): {e}"));
        let code = r.status().as_u16();
        assert!(
            code != 500,
            "{method} {path} (socket: {over_socket}): {code} {}",
            r.text().await.unwrap_or_default()
        );
        if !over_socket
            && method != reqwest::Method::GET
            && method != reqwest::Method::HEAD
            && r.status().is_success()
        {
            acted_over_tcp.push(format!("{method} {path}"));
        }
    }
    assert!(acted_over_tcp.is_empty(), "{acted_over_tcp:?}");
    assert_eq!(get_json(&format!("{base}/healthz")).await.0, 200);
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    assert!(
        !err.iter().any(|l| l.contains("panicked")),
        "{}",
        err.join("\n")
    );
}

/// A scheduled poll that waited for a poll-now of its bridge does not run when that poll met a
/// rate limit: it would hit the source that just asked for a pause.
#[tokio::test]
async fn a_scheduled_poll_behind_a_poll_now_honours_the_pause_it_met() {
    use pollhook::poll::scheduler;
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let h = Harness::new();
    let b = h.bridge("b", &BridgeYaml::standard(&up.url(), "console").build());
    // A poll-now of the bridge is in flight...
    let gate = h.ctx.poll_gate("b");
    let held = gate.lock().await;
    let (ctx, bridge) = (h.ctx.clone(), b.clone());
    let scheduled = tokio::spawn(async move {
        let r = pollhook::redact::Redactor::new(&bridge.secrets);
        scheduler::poll_and_log(&ctx, &bridge, &r).await.is_some()
    });
    tokio::task::yield_now().await;
    assert!(!scheduled.is_finished(), "it waits for the poll in flight");
    // ... and meets a 429 that asks for an hour.
    let until = chrono::Utc::now() + chrono::TimeDelta::hours(1);
    h.ctx.update_status("b", |s| s.paused_until = Some(until));
    drop(held);
    assert!(
        !scheduled.await.unwrap(),
        "the scheduled poll ran despite the pause"
    );
    assert!(up.hits().is_empty());
    // Without a pause it polls.
    h.ctx.update_status("b", |s| s.paused_until = None);
    let r = pollhook::redact::Redactor::new(&b.secrets);
    assert!(scheduler::poll_and_log(&h.ctx, &b, &r).await.is_some());
    assert_eq!(up.hits().len(), 1);
}
