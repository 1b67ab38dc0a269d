//! `pollhook replay`: the whole pipeline (fetch with its formats, pages and login, extract,
//! diff, rules, templates, digests) over a cassette, offline and the same every time.
//!
//! The answers are served over real HTTP by a server on 127.0.0.1 of this process: each
//! request of the bridge keeps its URL as the bridge asks for it, and the tape sends it to
//! that server instead (the original URL, masked, in a header). The server answers the
//! recorded exchanges of the current poll in order, each one to the request that matches it:
//! same method, same masked URL. A request that does not match, one more than the poll
//! recorded, or a recorded one never asked for, fails the replay with what differed.
//!
//! The polls commit to a scratch store in a temp dir, at a fixed clock: `start` for poll 1,
//! `every` later for each next one; no sink is sent anything. Each poll gives what it came to
//! (`{"poll":1,"items":3,"created":3,…}`), its events, then what each sink would be sent for
//! them, as JSON lines (`{"poll":1,"event":{…}}`,
//! `{"poll":1,"sink":"…","events":[…],"body":…}`), or its error (`{"poll":2,"error":"…"}`).

use super::{Cassette, CassetteError};
use crate::clock::Clock;
use crate::config::Bridge;
use crate::http::{Answering, Asked, Tape};
use crate::redact::Redactor;
use crate::runtime::Ctx;
use crate::runtime::lock::lock;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The header that carries a request's masked URL to the replay server.
const ASKED_FOR: &str = "x-pollhook-replay-url";

/// The recorded answers and where the replay is in them.
struct Reel {
    cassette: Cassette,
    /// The poll being replayed (from 1) and how many of its exchanges were answered.
    at: Mutex<(usize, usize)>,
    /// What differed between the requests and the cassette.
    mismatches: Mutex<Vec<String>>,
}

impl Reel {
    /// The answer to a request: the next recorded exchange of this poll if it matches.
    fn answer(&self, method: &Method, url: &str) -> Response<axum::body::Body> {
        let mut at = lock(&self.at);
        let (poll, n) = *at;
        let next = (self.cassette.polls)
            .get(poll.wrapping_sub(1))
            .and_then(|p| p.get(n));
        let refuse = |why: String| {
            lock(&self.mismatches).push(why);
            let mut r = Response::new(axum::body::Body::from("not in the cassette"));
            *r.status_mut() = StatusCode::NOT_IMPLEMENTED;
            r
        };
        let Some((x, body)) = next else {
            return refuse(format!(
                "poll {poll}: request {} ({method} {url}) is not in the cassette, which holds {n} for this poll",
                n + 1
            ));
        };
        if x.request.method != method.as_str() || x.request.url != url {
            return refuse(format!(
                "poll {poll}: request {} is {method} {url}, the cassette has {} {}",
                n + 1,
                x.request.method,
                x.request.url
            ));
        }
        at.1 += 1;
        let mut r = Response::new(axum::body::Body::from(body.clone()));
        *r.status_mut() = StatusCode::from_u16(x.status).unwrap_or(StatusCode::BAD_GATEWAY);
        for (k, v) in &x.headers {
            if let (Ok(k), Ok(v)) = (
                axum::http::HeaderName::from_bytes(k.as_bytes()),
                axum::http::HeaderValue::from_str(v),
            ) {
                r.headers_mut().append(k, v);
            }
        }
        r
    }

    /// Starts poll `poll`; the exchanges of the one before that were never asked for are a
    /// mismatch.
    fn begin(&self, poll: usize) {
        self.end();
        *lock(&self.at) = (poll, 0);
    }

    fn end(&self) {
        let (poll, n) = *lock(&self.at);
        let recorded = self
            .cassette
            .polls
            .get(poll.wrapping_sub(1))
            .map_or(0, Vec::len);
        if poll > 0 && n < recorded {
            lock(&self.mismatches).push(format!(
                "poll {poll}: asked for {n} of the {recorded} recorded answers"
            ));
        }
    }
}

/// The tape of a replay: sends each request to the replay server.
struct Player {
    server: SocketAddr,
    client: reqwest::Client,
    redactor: Redactor,
}

impl Tape for Player {
    fn send<'a>(
        &'a self,
        _source: &'a reqwest::Client,
        mut req: reqwest::Request,
        _asked: Asked,
    ) -> Answering<'a> {
        Box::pin(async move {
            let shown = self.redactor.url(req.url());
            let mut to = url::Url::parse(&format!("http://{}/", self.server))
                .unwrap_or_else(|_| req.url().clone());
            to.set_path(req.url().path());
            to.set_query(req.url().query());
            *req.url_mut() = to;
            if let Ok(v) = reqwest::header::HeaderValue::from_str(&shown) {
                req.headers_mut().insert(ASKED_FOR, v);
            }
            self.client.execute(req).await
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    #[error("{}: the cassette is of bridge `{cassette}`, not `{bridge}`", .dir.display())]
    OtherBridge {
        dir: std::path::PathBuf,
        cassette: String,
        bridge: String,
    },
    #[error("the requests differ from the cassette:\n{}", .0.join("\n"))]
    Mismatch(Vec<String>),
    #[error("cannot set up the replay: {0}")]
    SetUp(String),
}

/// Replays the cassette in `dir` through `bridge`: the output lines.
pub async fn replay(bridge: &Bridge, dir: &Path) -> Result<Vec<String>, ReplayError> {
    let cassette = Cassette::read(dir)?;
    if cassette.index.bridge != bridge.name {
        return Err(ReplayError::OtherBridge {
            dir: dir.to_path_buf(),
            cassette: cassette.index.bridge,
            bridge: bridge.name.clone(),
        });
    }
    let (start, every, polls) = (
        cassette.index.start,
        cassette.index.every,
        cassette.index.polls,
    );
    let reel = Arc::new(Reel {
        cassette,
        at: Mutex::new((0, 0)),
        mismatches: Mutex::default(),
    });
    let set_up = |e: &dyn std::fmt::Display| ReplayError::SetUp(e.to_string());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| set_up(&e))?;
    let server = listener.local_addr().map_err(|e| set_up(&e))?;
    let shared = reel.clone();
    let app = axum::Router::new().fallback(move |m: Method, _: Uri, h: HeaderMap, _: Bytes| {
        let asked = h
            .get(ASKED_FOR)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let r = shared.answer(&m, &asked);
        async move { r }
    });
    let serving = tokio::spawn(async move { axum::serve(listener, app).await });
    let scratch = tempfile::tempdir().map_err(|e| set_up(&e))?;
    let store = crate::store::Store::open(scratch.path()).map_err(|e| set_up(&e))?;
    let clock = Clock::fixed(start);
    let mut ctx = Ctx::with_clock(store, clock.clone());
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| set_up(&e))?;
    ctx.clients.tape = Some(Arc::new(Player {
        server,
        client,
        redactor: Redactor::new(&bridge.secrets),
    }));
    let mut lines = Vec::new();
    for k in 1..=polls {
        reel.begin(k);
        let now = clock.now();
        let r = crate::poll::poll_once(&ctx, bridge, true, now).await;
        lines.extend(poll_lines(bridge, k, r, now));
        clock.advance(every);
    }
    reel.end();
    serving.abort();
    let mismatches = std::mem::take(&mut *lock(&reel.mismatches));
    if !mismatches.is_empty() {
        return Err(ReplayError::Mismatch(mismatches));
    }
    Ok(lines)
}

/// One poll's lines: what it came to, its events, then each sink's requests; or its error.
fn poll_lines(
    bridge: &Bridge,
    k: usize,
    r: Result<crate::poll::PollReport, crate::poll::PollError>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let report = match r {
        Ok(r) => r,
        Err(e) => {
            let shown = Redactor::new(&bridge.secrets).clean(&e.to_string());
            return vec![format!("{{\"poll\":{k},\"error\":{}}}", quoted(&shown))];
        }
    };
    let mut lines = vec![format!(
        "{{\"poll\":{k},\"items\":{},\"created\":{},\"updated\":{},\"deleted\":{},\"not_modified\":{}}}",
        report.items, report.created, report.updated, report.deleted, report.not_modified
    )];
    lines.extend(
        report
            .events
            .iter()
            .map(|e| format!("{{\"poll\":{k},\"event\":{}}}", e.body())),
    );
    for p in crate::deliver::trial::plan(bridge, &report.events, now) {
        let mut line = format!(
            "{{\"poll\":{k},\"sink\":{},\"events\":{}",
            quoted(&p.sink),
            serde_json::Value::from(p.events)
        );
        match (p.body, p.skipped) {
            (_, Some(why)) => line.push_str(&format!(",\"skipped\":{}", quoted(&why))),
            (Some(b), None) => {
                // A JSON body as JSON, anything else as a string.
                let b = match serde_json::from_str::<serde_json::Value>(&b) {
                    Ok(v) => v.to_string(),
                    Err(_) => quoted(&b),
                };
                line.push_str(&format!(",\"body\":{b}"));
            }
            (None, None) => {}
        }
        line.push('}');
        lines.push(line);
    }
    lines
}

/// A string as a JSON string.
fn quoted(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}
