//! Shared test parts: a real upstream API and a real webhook receiver on 127.0.0.1:0, bridge
//! files in a temp dir, a real sled store, and signature checks written independently of
//! pollhook's own signing code.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use pollhook::config::{self, Bridge, Env};
use pollhook::deliver::{self, Outcome};
use pollhook::poll::{self, PollError, PollReport};
use pollhook::runtime::Ctx;
use pollhook::store::Store;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

type Hits = Arc<Mutex<Vec<Hit>>>;

/// One request the upstream got.
#[derive(Debug, Clone)]
pub struct Hit {
    pub method: axum::http::Method,
    /// Path and query, as requested.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// When it arrived (monotonic, and wall clock).
    pub at: Instant,
    pub wall: SystemTime,
    /// The status it was answered with.
    pub status: u16,
}

impl Hit {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}
type Script = Arc<Mutex<VecDeque<(u16, Vec<(&'static str, String)>, Duration)>>>;
/// Items (key, hash, value), meta and outbox length of one bridge.
pub type Snapshot = (
    Vec<(String, [u8; 16], Value)>,
    pollhook::store::BridgeMeta,
    usize,
);

async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// What the upstream answers.
#[derive(Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Never answer (a hung server).
    pub hang: bool,
    /// More headers. With an `etag` or `last-modified` among them, a request carrying the same
    /// value in `If-None-Match` / `If-Modified-Since` is answered 304, as a real server does.
    pub headers: Vec<(String, String)>,
    /// Send the body in chunks without a Content-Length.
    pub chunked: bool,
}

impl Answer {
    pub fn json(v: &Value) -> Answer {
        Answer::new(200, "application/json", &v.to_string())
    }

    pub fn new(status: u16, content_type: &'static str, body: &str) -> Answer {
        Answer {
            status,
            content_type,
            body: body.as_bytes().to_vec(),
            hang: false,
            headers: Vec::new(),
            chunked: false,
        }
    }

    /// Sets a header (replacing one of the same name).
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        let name = name.to_ascii_lowercase();
        self.headers.retain(|(k, _)| *k != name);
        self.headers.push((name, value.to_string()));
        self
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Answers {
    /// The answer to any request no route or script answers.
    default: Option<Answer>,
    /// By path and query (`/items?page=2`).
    routes: HashMap<String, Answer>,
    /// One-shot answers, used before anything else, in order.
    script: VecDeque<Answer>,
}

/// A fake API: answers each request from its script, else by its path and query, else with
/// the current default `Answer`; honours `If-None-Match` / `If-Modified-Since`.
#[derive(Clone)]
pub struct Upstream {
    pub base: String,
    answers: Arc<Mutex<Answers>>,
    pub hits: Hits,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let answers = Arc::new(Mutex::new(Answers {
            default: Some(Answer::new(200, "application/json", "[]")),
            ..Default::default()
        }));
        let hits = Arc::new(Mutex::new(Vec::new()));
        let state = (answers.clone(), hits.clone());
        let app = Router::new()
            .fallback(
                |State((answers, hits)): State<(Arc<Mutex<Answers>>, Hits)>,
                 method: axum::http::Method,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let (at, wall) = (Instant::now(), SystemTime::now());
                    let uri = uri
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    let a = {
                        let mut all = answers.lock().unwrap();
                        match all.script.pop_front() {
                            Some(a) => a,
                            None => all
                                .routes
                                .get(&uri)
                                .or(all.default.as_ref())
                                .cloned()
                                .unwrap_or_else(|| Answer::new(404, "text/plain", "no route")),
                        }
                    };
                    let asked = |h: &str| headers.get(h).map(|v| v.to_str().unwrap().to_string());
                    let fresh = (a.get("etag").is_some()
                        && asked("if-none-match").as_deref() == a.get("etag"))
                        || (a.get("last-modified").is_some()
                            && asked("if-modified-since").as_deref() == a.get("last-modified"));
                    let status = if fresh && a.status == 200 {
                        304
                    } else {
                        a.status
                    };
                    hits.lock().unwrap().push(Hit {
                        method,
                        uri,
                        headers,
                        body,
                        at,
                        wall,
                        status,
                    });
                    if a.hang {
                        std::future::pending::<()>().await;
                    }
                    let mut r = Response::builder()
                        .status(status)
                        .header("content-type", a.content_type);
                    for (k, v) in &a.headers {
                        r = r.header(k.as_str(), v.as_str());
                    }
                    let body = if status == 304 {
                        axum::body::Body::empty()
                    } else if a.chunked {
                        // A stream of unknown length: chunked, no Content-Length.
                        axum::body::Body::from_stream(
                            axum::body::Body::from(a.body).into_data_stream(),
                        )
                    } else {
                        axum::body::Body::from(a.body)
                    };
                    r.body(body).unwrap()
                },
            )
            .with_state(state);
        Upstream {
            base: serve(app).await,
            answers,
            hits,
        }
    }

    /// Answers requests for this path and query (`/items?page=2`) with `a`.
    pub fn route(&self, path_and_query: &str, a: Answer) {
        self.answers
            .lock()
            .unwrap()
            .routes
            .insert(path_and_query.to_string(), a);
    }

    /// Answers the next request (whatever its path) with `a`, once; several queue up.
    pub fn then(&self, a: Answer) {
        self.answers.lock().unwrap().script.push_back(a);
    }

    /// Answers every request no script or route answers with `a`.
    pub fn set_answer(&self, a: Answer) {
        self.answers.lock().unwrap().default = Some(a);
    }

    /// The requests so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    pub fn url(&self) -> String {
        format!("{}/items", self.base)
    }

    pub fn set_json(&self, v: &Value) {
        self.set(200, "application/json", &v.to_string());
    }

    pub fn set(&self, status: u16, content_type: &'static str, body: &str) {
        self.set_answer(Answer::new(status, content_type, body));
    }

    pub fn hang(&self) {
        let mut all = self.answers.lock().unwrap();
        if let Some(a) = all.default.as_mut() {
            a.hang = true;
        }
    }
}

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// A webhook receiver: records every request and answers from a script (then 204).
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    got: Arc<Mutex<Vec<Received>>>,
    script: Script,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let got = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(VecDeque::new()));
        type St = (Arc<Mutex<Vec<Received>>>, Script);
        let app = Router::new()
            .fallback(
                |State((got, script)): State<St>, headers: HeaderMap, body: Bytes| async move {
                    got.lock().unwrap().push(Received { headers, body });
                    let next = script.lock().unwrap().pop_front();
                    let (status, extra, delay) = next.unwrap_or((204, vec![], Duration::ZERO));
                    tokio::time::sleep(delay).await;
                    let mut r = StatusCode::from_u16(status).unwrap().into_response();
                    for (k, v) in extra {
                        r.headers_mut().insert(k, v.parse().unwrap());
                    }
                    r
                },
            )
            .with_state((got.clone(), script.clone()));
        Receiver {
            base: serve(app).await,
            got,
            script,
        }
    }

    pub fn url(&self) -> String {
        format!("{}/hook", self.base)
    }

    /// The next answers, in order (after them: 204).
    pub fn answer(&self, status: u16, headers: &[(&'static str, &str)]) {
        self.script.lock().unwrap().push_back((
            status,
            headers.iter().map(|(k, v)| (*k, v.to_string())).collect(),
            Duration::ZERO,
        ));
    }

    /// The next answer comes only after `delay` (a slow receiver).
    pub fn answer_slowly(&self, status: u16, delay: Duration) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, vec![], delay));
    }

    /// Forgets the scripted answers not yet given: 204 from now on.
    pub fn clear_script(&self) {
        self.script.lock().unwrap().clear();
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

/// Standard Webhooks verification, as a receiver library does it: any `v1,` signature in the
/// header that matches HMAC-SHA256(key, "id.timestamp.body").
pub fn verify_standard(secret: &str, r: &Received) -> bool {
    let key = match secret.strip_prefix("whsec_") {
        Some(b) => base64::engine::general_purpose::STANDARD.decode(b).unwrap(),
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(
        format!(
            "{}.{}.",
            r.header("webhook-id"),
            r.header("webhook-timestamp")
        )
        .as_bytes(),
    );
    mac.update(&r.body);
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s.strip_prefix("v1,") == Some(expected.as_str()))
}

pub const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A temp dir with `bridges/` and `data/`, a real store, and the pieces to drive polls and
/// deliveries one step at a time.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub ctx: Arc<Ctx>,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
        let ctx = Arc::new(Ctx::new(Store::open(&dir.path().join("data")).unwrap()));
        Harness { dir, ctx }
    }

    pub fn bridges_dir(&self) -> PathBuf {
        self.dir.path().join("bridges")
    }

    /// Writes a bridge file and loads it.
    pub fn bridge(&self, name: &str, yaml: &str) -> Bridge {
        std::fs::write(self.bridges_dir().join(format!("{name}.yaml")), yaml).unwrap();
        load_one(&self.bridges_dir(), name)
    }

    /// Closes the store and opens it again, as a restart does.
    pub fn restart(self) -> Harness {
        let Harness { dir, ctx } = self;
        ctx.store().unwrap().flush_blocking().unwrap();
        drop(ctx);
        let ctx = Arc::new(Ctx::new(Store::open(&dir.path().join("data")).unwrap()));
        Harness { dir, ctx }
    }

    pub async fn poll(&self, b: &Bridge) -> Result<PollReport, PollError> {
        poll::poll_once(&self.ctx, b, true, chrono::Utc::now()).await
    }

    /// Delivers what is due now for every sink of `b`, until each queue is empty or waits.
    pub async fn drain(&self, b: &Bridge) -> Vec<Outcome> {
        self.drain_at(b, SystemTime::now()).await
    }

    pub async fn drain_at(&self, b: &Bridge, now: SystemTime) -> Vec<Outcome> {
        let mut out = Vec::new();
        for sink in &b.sinks {
            loop {
                let o = deliver::try_deliver_next(&self.ctx, &b.name, sink, now)
                    .await
                    .unwrap();
                let stop = matches!(
                    o,
                    Outcome::Empty | Outcome::NotDue(_) | Outcome::Retrying { .. }
                );
                out.push(o);
                if stop {
                    break;
                }
            }
        }
        out
    }

    /// Everything the store holds for a bridge: items, meta, outbox length.
    pub fn snapshot(&self, name: &str) -> Snapshot {
        (
            self.ctx.store().unwrap().items(name).unwrap(),
            self.ctx.store().unwrap().meta(name).unwrap(),
            self.ctx.store().unwrap().outbox_len(name),
        )
    }
}

pub fn load_one(dir: &Path, name: &str) -> Bridge {
    let env = Env::fixed(&[("TEST_TOKEN", "tok-abc-123")], None);
    config::load_dir(dir, &env)
        .unwrap_or_else(|p| panic!("bridges do not load:\n{p}"))
        .into_iter()
        .find(|b| b.name == name)
        .unwrap()
}

/// A bridge file: GET `url`, items at `$.items[*]` keyed by `$.id`, one signed sink.
pub fn yaml(url: &str, sink: &str, extra_emit: &str) -> String {
    format!(
        r#"schedule:
  every: 1m
source:
  url: {url}
  timeout: 2s
items:
  select: "$.items[*]"
  key: "$.id"
emit:
  deletes:
    max_fraction: 1.0
{extra_emit}
sinks:
  - url: {sink}
    secret: {SECRET}
    retry: [1s, 2s]
"#
    )
}

/// Polls `cond` until it holds, for at most 30 s (a generous deadline for a busy machine).
pub async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An admin request over the daemon's unix socket: the status and the JSON body (null when
/// there is none).
pub async fn over_socket(socket: &Path, method: reqwest::Method, path: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .unix_socket(socket)
        .build()
        .unwrap();
    let r = client
        .request(method, format!("http://localhost{path}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// An admin request over TCP (`base` is `http://ADDR`), with a bearer token when given.
pub async fn over_tcp(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut req = reqwest::Client::new().request(method, format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}
