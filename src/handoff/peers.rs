//! The other shards, as `--peers TEMPLATE` names them (docs/scaling.md#handoff): `{i}` in the
//! template is a shard's index (`http://pollhook-{i}.pollhook:9187`). Requests carry the admin
//! token as a bearer token, as the peers' admin APIs want it to act. A peer's answer to
//! `POST /v1/handoff/{name}` is a state document, which holds secrets: it is never logged, and
//! no error here quotes it.

use super::Document;
use std::time::Duration;

/// How long one request to a peer may take (a document of a big bridge included).
const TIMEOUT: Duration = Duration::from_secs(120);

/// The peers and what reaches them.
#[derive(Clone)]
pub struct Peers {
    template: String,
    token: String,
    http: reqwest::Client,
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
    /// 409: it owns the bridge under its own layout, and keeps polling it.
    Owned,
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
    /// The peers of `template` (see [`check_template`]), reached with `token`.
    pub fn new(template: &str, token: &str) -> Result<Peers, String> {
        check_template(template)?;
        let http = crate::http::local()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| format!("cannot build the peers' HTTP client: {e}"))?;
        Ok(Peers {
            template: template.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http,
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

    /// Asks shard `index` for the state of `bridge`, saying that shard `me` asks.
    pub async fn take(&self, index: u64, me: u64, bridge: &str) -> Result<Taken, PeerError> {
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
            409 => return Ok(Taken::Owned),
            200 => {}
            _ => return Err(refused(index, &url, status, resp).await),
        }
        let text = resp.text().await.map_err(|e| down(index, &url, e))?;
        let bad = |why: String| PeerError::BadDocument {
            index,
            url: url.clone(),
            why,
        };
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
            status => Err(refused(index, &url, status, resp).await),
        }
    }
}

fn down(index: u64, url: &str, e: reqwest::Error) -> PeerError {
    PeerError::Down {
        index,
        url: url.to_string(),
        why: crate::http::error_chain(e),
    }
}

/// A refusal, with the `error` of its JSON body (an admin API's failure, never a document).
async fn refused(index: u64, url: &str, status: u16, resp: reqwest::Response) -> PeerError {
    let text = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<crate::admin::body::Failure>(&text)
        .map(|f| f.error)
        .unwrap_or_else(|_| "no message".to_string());
    PeerError::Refused {
        index,
        url: url.to_string(),
        status,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_names_each_shard() {
        let p = Peers::new("http://pollhook-{i}.pollhook:9187/", "t").unwrap();
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
