//! The other shards, as `--peers TEMPLATE` names them (docs/scaling.md#handoff): `{i}` in the
//! template is a shard's index (`http://pollhook-{i}.pollhook:9187`). Requests carry the admin
//! token as a bearer token, as the peers' admin APIs want it to act. A peer's answer to
//! `POST /v1/handoff/{name}` is a state document, which holds secrets: it is never logged, and
//! no error here quotes it. A peer is not trusted further than the token: a document is read
//! up to `--handoff-max-document` bytes and no more, and what a peer says in a refusal is
//! shown with the token masked.

use super::Document;
use super::share::DocShare;
use std::time::Duration;

/// How long one request to a peer may take (a document of a big bridge included).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The most of a refusal's body read (its JSON `error` is shown).
const MAX_REFUSAL: u64 = 64 << 10;

/// The default of `--handoff-max-document`: the largest state document read from a peer.
pub const MAX_DOCUMENT: u64 = 1 << 30;

/// The peers and what reaches them.
#[derive(Clone)]
pub struct Peers {
    template: String,
    token: String,
    http: reqwest::Client,
    /// The largest document read, in bytes.
    max_document: u64,
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peers({})", self.template)
    }
}

/// What a peer said to `POST /v1/handoff/{name}`.
#[derive(Debug)]
pub enum Taken {
    /// 200: the bridge's state; the peer has stopped it for good.
    Given(Box<Document>),
    /// 404: it holds no state of the bridge.
    Nothing,
    /// 409: it owns the bridge under its own layout, and keeps polling it; when to ask again,
    /// if it said (`Retry-After`, in seconds).
    Owned(Option<Duration>),
    /// 200, but the document does not fit in the memory budget now: nothing more of it is
    /// read; ask again once this many bytes of the budget are held.
    Wait(u64),
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("shard {index} ({url}) does not answer: {why}")]
    Down {
        index: u64,
        url: String,
        why: String,
    },
    #[error("shard {index} ({url}) answered HTTP {status}: {message}")]
    Refused {
        index: u64,
        url: String,
        status: u16,
        message: String,
    },
    #[error("shard {index} ({url}) sent a document that cannot be taken: {why}")]
    BadDocument {
        index: u64,
        url: String,
        why: String,
    },
}

/// Checks `--peers TEMPLATE`: it names each shard by `{i}`, over http or https.
pub fn check_template(template: &str) -> Result<(), String> {
    if !template.contains("{i}") {
        return Err(format!(
            "--peers `{template}`: the template must contain `{{i}}`, which stands for a shard's \
             index (e.g. http://pollhook-{{i}}.pollhook:9187)"
        ));
    }
    let sample = template.replace("{i}", "0");
    match url::Url::parse(&sample) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        Ok(u) => Err(format!(
            "--peers `{template}`: an http or https URL with a host is expected, not {}:",
            u.scheme()
        )),
        Err(e) => Err(format!("--peers `{template}`: not a URL ({e})")),
    }
}

impl Peers {
    /// The peers of `template` (see [`check_template`]), reached with `token`; a document of
    /// more than `max_document` bytes is refused.
    pub fn new(template: &str, token: &str, max_document: u64) -> Result<Peers, String> {
        check_template(template)?;
        let http = crate::http::local()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the peers' HTTP client: {e}"))?;
        Ok(Peers {
            template: template.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
            max_document,
        })
    }

    /// The template, as given.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// `.../v1/handoff/{name}` at shard `index`, the name one path segment.
    pub fn url(&self, index: u64, bridge: &str) -> String {
        let base = self.template.replace("{i}", &index.to_string());
        match url::Url::parse(&base) {
            Ok(mut u) => {
                if let Ok(mut path) = u.path_segments_mut() {
                    path.pop_if_empty().extend(["v1", "handoff", bridge]);
                }
                u.to_string()
            }
            Err(_) => format!("{base}/v1/handoff/{bridge}"),
        }
    }

    /// Asks shard `index` for the state of `bridge`, saying that shard `me` asks; the
    /// document is read within `share` of the memory budget, which it grows as it needs.
    pub async fn take(
        &self,
        index: u64,
        me: u64,
        bridge: &str,
        share: &mut DocShare,
    ) -> Result<Taken, PeerError> {
        let url = self.url(index, bridge);
        let resp = self
            .http
            .post(format!("{url}?to={me}"))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| down(index, &url, e))?;
        let status = resp.status().as_u16();
        match status {
            404 => return Ok(Taken::Nothing),
            409 => return Ok(Taken::Owned(retry_after(&resp))),
            200 => {}
            _ => return Err(self.refused(index, &url, status, resp).await),
        }
        let bad = |why: String| PeerError::BadDocument {
            index,
            url: url.clone(),
            why,
        };
        let max = self.max_document;
        let bytes = match read_document(resp, max, share).await {
            Ok(Read::Body(b)) => b,
            Ok(Read::Wait(need)) => return Ok(Taken::Wait(need)),
            Ok(Read::TooLarge) => {
                return Err(bad(format!(
                    "it is larger than {max} bytes, the most a handoff reads \
                     (--handoff-max-document): not read further"
                )));
            }
            Err(e) => return Err(down(index, &url, e)),
        };
        let text = String::from_utf8(bytes).map_err(|_| bad("it is not UTF-8".into()))?;
        let doc = Document::parse(&text).map_err(|e| bad(e.to_string()))?;
        if doc.bridge != bridge {
            return Err(bad(format!("it is the state of bridge `{}`", doc.bridge)));
        }
        Ok(Taken::Given(Box::new(doc)))
    }

    /// Acknowledges to shard `index` that the state of `bridge` is here: it may forget it.
    pub async fn acknowledge(&self, index: u64, bridge: &str) -> Result<(), PeerError> {
        let url = self.url(index, bridge);
        let resp = self
            .http
            .delete(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| down(index, &url, e))?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            status => Err(self.refused(index, &url, status, resp).await),
        }
    }

    /// A refusal, with the `error` of its JSON body (an admin API's failure, never a
    /// document), the token masked should the peer quote it.
    async fn refused(
        &self,
        index: u64,
        url: &str,
        status: u16,
        resp: reqwest::Response,
    ) -> PeerError {
        let text = match read_at_most(resp, MAX_REFUSAL).await {
            Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        let message = serde_json::from_str::<crate::admin::body::Failure>(&text)
            .map(|f| f.error.replace(&self.token, "***"))
            .unwrap_or_else(|_| "no message".to_string());
        PeerError::Refused {
            index,
            url: url.to_string(),
            status,
            message,
        }
    }
}

/// The body of `resp`, or None when it is longer than `max` bytes (said by its
/// Content-Length, or found while reading: nothing past `max` is read).
async fn read_at_most(
    mut resp: reqwest::Response,
    max: u64,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if resp.content_length().is_some_and(|n| n > max) {
        return Ok(None);
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if (out.len() + chunk.len()) as u64 > max {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}

/// A document's body as [`read_document`] found it.
enum Read {
    Body(Vec<u8>),
    /// Longer than the most read.
    TooLarge,
    /// It does not fit in the memory budget now: wait in line for this many bytes.
    Wait(u64),
}

/// The body of a document, read within `share` (see [`read_at_most`] for `max`): held for
/// the length its Content-Length tells before reading, else for twice what has come so far.
async fn read_document(
    mut resp: reqwest::Response,
    max: u64,
    share: &mut DocShare,
) -> Result<Read, reqwest::Error> {
    let told = resp.content_length();
    if told.is_some_and(|n| n > max) {
        return Ok(Read::TooLarge);
    }
    let mut room = told.unwrap_or(0);
    if let Err(need) = share.hold(room) {
        return Ok(Read::Wait(need));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        let len = (out.len() + chunk.len()) as u64;
        if len > max {
            return Ok(Read::TooLarge);
        }
        if len > room {
            room = len.saturating_mul(2).min(max);
            if let Err(need) = share.hold(room) {
                return Ok(Read::Wait(need));
            }
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Read::Body(out))
}

/// A `Retry-After` in seconds (a date is not taken: the receiver's own delay applies).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    let v = resp.headers().get(reqwest::header::RETRY_AFTER)?;
    v.to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

fn down(index: u64, url: &str, e: reqwest::Error) -> PeerError {
    PeerError::Down {
        index,
        url: url.to_string(),
        why: crate::http::error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_names_each_shard() {
        let p = Peers::new("http://pollhook-{i}.pollhook:9187/", "t", MAX_DOCUMENT).unwrap();
        assert_eq!(
            p.url(3, "orders/eu 1"),
            "http://pollhook-3.pollhook:9187/v1/handoff/orders%2Feu%201"
        );
        for (bad, says) in [
            ("http://pollhook-0:9187", "must contain `{i}`"),
            ("ftp://h-{i}:1", "not ftp:"),
            ("pollhook-{i}:9187", "an http or https URL"),
            ("http//x{i}", "not a URL"),
        ] {
            let e = check_template(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(check_template("https://10.0.0.{i}:9187").is_ok());
    }
}
