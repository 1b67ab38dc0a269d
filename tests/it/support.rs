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
use pollhook::deliver::window::Windows;
use pollhook::deliver::{self, Outcome};
use pollhook::poll::{self, PollError, PollReport};
use pollhook::runtime::Ctx;
use pollhook::store::Store;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use crate::testkit::{BridgeYaml, PATIENCE, SECRET, eventually, until};

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

/// Serves `app` on 127.0.0.1:0; its base URL.
pub async fn serve(app: Router) -> String {
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

/// A temp dir with `bridges/` and `data/`, a real store, and the pieces to drive polls and
/// deliveries one step at a time.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub ctx: Arc<Ctx>,
    /// The digest windows the deliverers share (in memory: a restart forgets them).
    pub windows: Arc<Windows>,
}

impl Harness {
    pub fn new() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
        let ctx = Arc::new(Ctx::new(Store::open(&dir.path().join("data")).unwrap()));
        Harness {
            dir,
            ctx,
            windows: Arc::default(),
        }
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
        let Harness { dir, ctx, .. } = self;
        ctx.store().unwrap().flush_blocking().unwrap();
        drop(ctx);
        let ctx = Arc::new(Ctx::new(Store::open(&dir.path().join("data")).unwrap()));
        Harness {
            dir,
            ctx,
            windows: Arc::default(),
        }
    }

    /// One poll as the scheduler runs it (status, metrics, log lines, failure streak). A pause
    /// an earlier call met is taken as over, as the scheduler does when it ends.
    pub async fn scheduled_poll(&self, b: &Bridge) -> Result<PollReport, PollError> {
        self.ctx.update_status(&b.name, |s| s.paused_until = None);
        let redactor = pollhook::redact::Redactor::new(&b.secrets);
        pollhook::poll::scheduler::poll_and_log(&self.ctx, b, &redactor)
            .await
            .expect("no pause holds the poll back")
    }

    pub async fn poll(&self, b: &Bridge) -> Result<PollReport, PollError> {
        poll::poll_once(&self.ctx, b, true, chrono::Utc::now()).await
    }

    /// Delivers what is due now for every sink of `b`, until each queue is empty or waits.
    pub async fn drain(&self, b: &Bridge) -> Vec<Outcome> {
        self.drain_at(b, SystemTime::now()).await
    }

    pub async fn drain_at(&self, b: &Bridge, now: SystemTime) -> Vec<Outcome> {
        let now = now.into();
        let mut out = Vec::new();
        for sink in &b.sinks {
            loop {
                let o = deliver::try_deliver_next(&self.ctx, &self.windows, &b.name, sink, now)
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

/// A GET: the status and the body as text.
pub async fn get_text(url: &str) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = reqwest::Client::new().get(url).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A GET of the admin API; status 0 while nothing listens yet (the daemon is starting).
pub async fn get_json(url: &str) -> (u16, Value) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let r = match reqwest::Client::new().get(url).send().await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return (0, Value::Null),
        Err(e) => panic!("{url}: {e}"),
    };
    let code = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
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

// ---- the real binary: the CLI, and the daemon as a child process ----

pub const BIN: &str = env!("CARGO_BIN_EXE_pollhook");

pub fn collect<R: tokio::io::AsyncRead + Unpin + Send + 'static>(r: R) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let out = lines.clone();
    tokio::spawn(async move {
        let mut rd = BufReader::new(r).lines();
        while let Ok(Some(l)) = rd.next_line().await {
            out.lock().unwrap().push(l);
        }
    });
    lines
}

pub struct Daemon {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Its admin unix socket (the default: `DATA/admin.sock`).
    pub socket: std::path::PathBuf,
}

impl Daemon {
    pub fn start(dir: &std::path::Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(dir, env, "off")
    }

    pub fn start_with(dir: &std::path::Path, env: &[(&str, &str)], admin: &str) -> Daemon {
        Daemon::start_args(dir, env, &["--admin", admin])
    }

    /// `pollhook run` with `args` after the defaults (`--admin` among them).
    pub fn start_args(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Daemon {
        Daemon::start_logging(dir, env, "pretty", args)
    }

    /// `start_args` with logs in `format` (`--log-format`).
    pub fn start_logging(
        dir: &std::path::Path,
        env: &[(&str, &str)],
        format: &str,
        args: &[&str],
    ) -> Daemon {
        let run = [&["run", "--log-format", format], args].concat();
        let mut cmd = Command::from(pollhook_in(dir, &run));
        cmd.env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Daemon {
            child,
            stdout,
            stderr,
            socket: dir.join("data/admin.sock"),
        }
    }

    /// The CLI, reaching this daemon through its admin socket (`POLLHOOK_ADMIN_SOCKET`).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        cli_env(
            args,
            &[("POLLHOOK_ADMIN_SOCKET", self.socket.to_str().unwrap())],
        )
    }

    /// Sends a signal, spelt as kill(1) takes it (`-HUP`).
    pub fn signal(&self, sig: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {sig} {pid}: {status}");
    }

    /// Its stderr so far, one string.
    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Waits until the daemon answers `path` on its admin socket with a 200 (a socket left
    /// by a daemon killed before it exists, but refuses).
    pub async fn answering(&self, path: &str) {
        eventually(PATIENCE, "the daemon's admin socket", || async {
            tokio::net::UnixStream::connect(&self.socket).await.is_ok()
                && over_socket(&self.socket, reqwest::Method::GET, path)
                    .await
                    .0
                    == 200
        })
        .await;
    }

    pub async fn terminate(mut self) -> (i32, Vec<String>, Vec<String>) {
        self.signal("-TERM");
        let status = self.child.wait().await.unwrap();
        // Let the readers reach the end of the pipes.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let out = self.stdout.lock().unwrap().clone();
        let err = self.stderr.lock().unwrap().clone();
        (status.code().unwrap_or(-1), out, err)
    }
}

/// `pollhook ARGS --bridges DIR/bridges --data DIR/data`, with no stdin and none of the
/// caller's journal, notify socket or runtime directory.
pub fn pollhook_in(dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .arg("--bridges")
        .arg(dir.join("bridges"))
        .arg("--data")
        .arg(dir.join("data"))
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUNTIME_DIRECTORY")
        .stdin(std::process::Stdio::null());
    cmd
}

/// Runs a command to its end without holding the test's runtime thread, so the test's own
/// servers go on answering it (under the default single-thread runtime, a blocking wait
/// would leave them unpolled).
pub async fn output_apart(cmd: std::process::Command) -> (i32, String, String) {
    let out = tokio::process::Command::from(cmd).output().await.unwrap();
    output_of(out)
}

/// The CLI with these environment variables (as [`cli_env`]), run apart from the test's
/// runtime thread (as [`output_apart`]), so the test's own servers go on answering it.
pub async fn cli_apart(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = cli_command(args);
    cmd.env_remove("JOURNAL_STREAM").envs(env.iter().copied());
    output_apart(cmd).await
}

/// A temp dir holding one bridge file, `DIR/bridges/NAME.yaml`: the layout the daemon and the
/// CLI are pointed at ([`pollhook_in`], [`Daemon::start`]).
pub fn with_bridge(name: &str, yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("bridges")).unwrap();
    std::fs::write(dir.path().join(format!("bridges/{name}.yaml")), yaml).unwrap();
    dir
}

pub fn cli(args: &[&str]) -> (i32, String, String) {
    cli_env(args, &[])
}

/// The CLI with these environment variables, and none of the caller's that point it somewhere.
pub fn cli_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    output_of(
        cli_command(args)
            .envs(env.iter().copied())
            .output()
            .unwrap(),
    )
}

/// The CLI as a command, with none of the caller's environment that points it somewhere.
pub fn cli_command(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(args)
        .env_remove("POLLHOOK_ADMIN")
        .env_remove("POLLHOOK_ADMIN_SOCKET")
        .env_remove("POLLHOOK_ADMIN_TOKEN")
        .env_remove("RUNTIME_DIRECTORY")
        .env_remove("STATE_DIRECTORY");
    cmd
}

/// (exit code, stdout, stderr) of a finished command.
pub fn output_of(out: std::process::Output) -> (i32, String, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A daemon's stderr so far, one string.
pub fn logs(d: &Daemon) -> String {
    d.logs()
}

/// One request a [`ForwardProxy`] forwarded: the absolute-form target and the
/// `Proxy-Authorization` it came with.
#[derive(Debug, Clone)]
pub struct Proxied {
    pub target: String,
    pub proxy_authorization: Option<String>,
}

/// A plain-HTTP forward proxy (RFC 9112 §3.2.2 absolute-form requests), counting what it
/// forwards: enough to see that a bridge's requests went through it.
#[derive(Clone)]
pub struct ForwardProxy {
    pub url: String,
    pub seen: Arc<Mutex<Vec<Proxied>>>,
}

impl ForwardProxy {
    pub async fn start() -> ForwardProxy {
        let seen: Arc<Mutex<Vec<Proxied>>> = Arc::default();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let app = Router::new()
            .fallback(
                |State((seen, client)): State<(Arc<Mutex<Vec<Proxied>>>, reqwest::Client)>,
                 method: axum::http::Method,
                 uri: axum::http::Uri,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let auth = headers
                        .get("proxy-authorization")
                        .map(|v| v.to_str().unwrap().to_string());
                    seen.lock().unwrap().push(Proxied {
                        target: uri.to_string(),
                        proxy_authorization: auth,
                    });
                    if uri.scheme().is_none() {
                        return (StatusCode::BAD_REQUEST, "not absolute-form").into_response();
                    }
                    let mut req = client.request(method, uri.to_string()).body(body);
                    for (k, v) in &headers {
                        if ![
                            "host",
                            "proxy-authorization",
                            "proxy-connection",
                            "connection",
                        ]
                        .contains(&k.as_str())
                        {
                            req = req.header(k, v);
                        }
                    }
                    match req.send().await {
                        Ok(r) => {
                            let status = r.status();
                            let ct = r.headers().get("content-type").cloned();
                            let body = r.bytes().await.unwrap_or_default();
                            let mut out = Response::builder().status(status.as_u16());
                            if let Some(ct) = ct {
                                out = out.header("content-type", ct);
                            }
                            out.body(axum::body::Body::from(body)).unwrap()
                        }
                        Err(_) => (StatusCode::BAD_GATEWAY, "upstream unreachable").into_response(),
                    }
                },
            )
            .with_state((seen.clone(), client));
        ForwardProxy {
            url: serve(app).await,
            seen,
        }
    }

    pub fn seen(&self) -> Vec<Proxied> {
        self.seen.lock().unwrap().clone()
    }
}

/// A SOCKS5 proxy (RFC 1928, no authentication, CONNECT only): the targets it connected to.
pub async fn socks5_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("socks5://{}", listener.local_addr().unwrap());
    let targets: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = targets.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut c, _)) = listener.accept().await else {
                return;
            };
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut head = [0u8; 2];
                c.read_exact(&mut head).await?;
                let mut methods = vec![0u8; head[1] as usize];
                c.read_exact(&mut methods).await?;
                c.write_all(&[5, 0]).await?;
                let mut req = [0u8; 4];
                c.read_exact(&mut req).await?;
                let host = match req[3] {
                    1 => {
                        let mut a = [0u8; 4];
                        c.read_exact(&mut a).await?;
                        std::net::Ipv4Addr::from(a).to_string()
                    }
                    3 => {
                        let len = c.read_u8().await? as usize;
                        let mut name = vec![0u8; len];
                        c.read_exact(&mut name).await?;
                        String::from_utf8_lossy(&name).into_owned()
                    }
                    _ => return Ok::<(), std::io::Error>(()),
                };
                let port = c.read_u16().await?;
                let target = format!("{host}:{port}");
                seen.lock().unwrap().push(target.clone());
                let mut up = tokio::net::TcpStream::connect(&target).await?;
                c.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
                tokio::io::copy_bidirectional(&mut c, &mut up).await?;
                Ok(())
            });
        }
    });
    (url, targets)
}
