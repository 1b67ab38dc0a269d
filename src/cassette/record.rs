//! `pollhook record`: a bridge's real polls (pages, login, formats: the fetch path as the daemon
//! runs it), each answer kept as it came. The polls commit to a scratch store, so that a later
//! poll asks as the daemon's would (validators of the last 200, the cursor); nothing is sent.
//! The answers are written once each poll has ended, when every token its login met is known
//! to the redactor, so that no credential reaches the files.

use super::{Cassette, CassetteError, Exchange, Index, Request, masked_body, masked_headers};
use crate::config::Bridge;
use crate::http::{Answering, Asked, Tape};
use crate::redact::Redactor;
use crate::runtime::Ctx;
use crate::runtime::lock::lock;
use chrono::SubsecRound as _;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One answer as it came, before it is masked.
struct Heard {
    asked: Asked,
    method: String,
    url: url::Url,
    request: reqwest::header::HeaderMap,
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Vec<u8>,
}

/// The tape of a recording: sends each request and keeps its answer.
#[derive(Default)]
pub struct Recorder {
    heard: Mutex<Vec<Heard>>,
}

impl Tape for Recorder {
    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        req: reqwest::Request,
        asked: Asked,
    ) -> Answering<'a> {
        Box::pin(async move {
            let (method, url) = (req.method().to_string(), req.url().clone());
            let request = req.headers().clone();
            let resp = client.execute(req).await?;
            let (status, headers) = (resp.status(), resp.headers().clone());
            let body = resp.bytes().await?;
            lock(&self.heard).push(Heard {
                asked,
                method,
                url,
                request,
                status: status.as_u16(),
                headers: headers.clone(),
                body: body.to_vec(),
            });
            // The same answer, for the poll to read as it would have.
            let mut again = axum::http::Response::new(body);
            *again.status_mut() = status;
            *again.headers_mut() = headers;
            Ok(reqwest::Response::from(again))
        })
    }
}

impl Recorder {
    /// The answers heard since the last call, masked for the files.
    fn take(&self, r: &Redactor) -> Vec<(Exchange, Vec<u8>)> {
        std::mem::take(&mut *lock(&self.heard))
            .into_iter()
            .map(|h| {
                let x = Exchange {
                    request: Request {
                        method: h.method,
                        url: r.url(&h.url),
                        headers: masked_headers(&h.request, r),
                    },
                    asked: match h.asked {
                        Asked::Page => "page",
                        Asked::Login => "login",
                    }
                    .to_string(),
                    status: h.status,
                    headers: masked_headers(&h.headers, r),
                };
                (x, masked_body(&h.body, h.asked, r))
            })
            .collect()
    }
}

/// What a recording asks for.
pub struct Recording<'a> {
    pub bridge: &'a Bridge,
    pub dir: &'a Path,
    pub polls: usize,
    pub every: Duration,
}

/// What each recorded poll came to, for the command's lines.
pub struct Recorded {
    pub answers: usize,
    /// The poll's error, masked; None when it succeeded.
    pub error: Option<String>,
    pub events: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: already holds a cassette", .0.display())]
    Exists(std::path::PathBuf),
    #[error(transparent)]
    Cassette(#[from] CassetteError),
    #[error("cannot make a scratch store: {0}")]
    Scratch(String),
}

/// Records `polls` polls of the bridge, `every` apart, to `dir`; each poll's outcome is given
/// to `told` as it ends.
pub async fn record(
    rec: Recording<'_>,
    mut told: impl FnMut(usize, &Recorded),
) -> Result<(), RecordError> {
    if rec.dir.join(super::INDEX).exists() {
        return Err(RecordError::Exists(rec.dir.to_path_buf()));
    }
    let scratch = tempfile::tempdir().map_err(|e| RecordError::Scratch(e.to_string()))?;
    let store = crate::store::Store::open(scratch.path())
        .map_err(|e| RecordError::Scratch(e.to_string()))?;
    let recorder = Arc::new(Recorder::default());
    let mut ctx = Ctx::new(store);
    ctx.clients.tape = Some(recorder.clone());
    let redactor = Redactor::new(&rec.bridge.secrets);
    let mut cassette = Cassette {
        index: Index {
            bridge: rec.bridge.name.clone(),
            polls: rec.polls,
            start: ctx.clock.now().trunc_subsecs(0),
            every: rec.every,
        },
        polls: Vec::new(),
    };
    for k in 1..=rec.polls {
        if k > 1 {
            tokio::time::sleep(rec.every).await;
        }
        let r = crate::poll::poll_once(&ctx, rec.bridge, true, ctx.clock.now()).await;
        let exchanges = recorder.take(&redactor);
        told(
            k,
            &Recorded {
                answers: exchanges.len(),
                events: r.as_ref().map_or(0, |r| r.emitted.total()),
                error: r.err().map(|e| redactor.clean(&e.to_string())),
            },
        );
        cassette.polls.push(exchanges);
    }
    cassette.write(rec.dir)?;
    Ok(())
}
