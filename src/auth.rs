//! Logging in to sources (docs/configuration.md#logging-in): the tokens of `source.auth`, fetched
//! before the first request that needs one, kept in memory per bridge (a [`Session`] in
//! [`Sessions`], shared by the daemon, so a token outlives the poll that fetched it), renewed at
//! 90% of its lifetime on the daemon's clock, and once more when the source answers 401 anyway
//! (the caller, `poll::fetch`, then asks again once).
//!
//! The token endpoints are spoken to by hand, with the source's own client (its proxy, and
//! redirects within the token URL's origin only): the `oauth2` crate's HTTP side is built on
//! reqwest 0.12, and both grants used here (client credentials, refresh token; RFC 6749 §4.4,
//! §6) are one form POST and a JSON answer. A login endpoint (`login:`) is one request whose
//! answer holds the token at a JSONPath.
//!
//! Every token and refresh token met is told to [`crate::redact::learn`], so no log line,
//! status, error or panic shows it; errors name the token URL and the status, never a word of
//! the body but the RFC 6749 §5.2 error code.

use crate::config::bridge::{Auth, AuthKind, Login, OAuth2};
use crate::config::raw::{ClientAuth, Method};
use crate::http::error_chain;
use reqwest::header::{self, HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::HashMap;
use std::error::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A token answer larger than this is refused (they are a few KiB at most).
const MAX_ANSWER: usize = 1 << 20;

/// A lifetime longer than this is read as this (an absurd `expires_in` must not overflow).
const MAX_LIFETIME: Duration = Duration::from_secs(366 * 86400);

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("token request to {url}: answered HTTP {status}{code}")]
    Status {
        url: String,
        status: u16,
        /// ` (invalid_grant)`: the RFC 6749 §5.2 error code, when the answer had one.
        code: String,
    },
    #[error("token request to {url}: no complete answer within {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    #[error("token request to {url}: {reason}")]
    Failed { url: String, reason: String },
}

/// The login sessions of all bridges, by bridge name.
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Arc<Session>>>);

impl Sessions {
    /// The bridge's session: the one it had, unless its login changed (a reload), which starts
    /// a new one with no token.
    pub fn of(&self, bridge: &str, auth: &Auth) -> Arc<Session> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match all.get(bridge) {
            Some(s) if s.id == auth.id => s.clone(),
            _ => {
                let s = Arc::new(Session {
                    id: auth.id.clone(),
                    held: tokio::sync::Mutex::new(Held::default()),
                });
                all.insert(bridge.to_string(), s.clone());
                s
            }
        }
    }
}

/// One bridge's login: its current token and refresh token. A lock, so that a token is
/// fetched once however many requests want it.
pub struct Session {
    id: String,
    held: tokio::sync::Mutex<Held>,
}

#[derive(Default)]
struct Held {
    token: Option<Token>,
    /// The refresh token in use (the configured one, or the newest the server gave).
    refresh: Option<String>,
}

struct Token {
    header: (HeaderName, HeaderValue),
    /// When to fetch the next one (90% of its lifetime); None: when the source says 401.
    renew_at: Option<Instant>,
}

/// Where the newest refresh token of one bridge's login is kept across restarts: a server
/// that rotates refresh tokens retires the one before, so the configured one may be void. The
/// store, in a poll (`poll::load`). Called off the async workers.
pub trait TokenKeeper: Send + Sync {
    /// The newest refresh token kept for the configured one; None when none is kept for it
    /// (the operator changed the one in the file: it wins). Blocks.
    fn load(&self, configured: &str) -> Result<Option<String>, Box<dyn Error + Send + Sync>>;
    /// Keeps `latest`, the refresh token the server gave in place of (one descended from)
    /// `configured`, and waits for the disk: the old one may already be void. Blocks.
    fn save(&self, configured: &str, latest: &str) -> Result<(), Box<dyn Error + Send + Sync>>;
}

/// What a poll needs to log in: the bridge's session, its login, and where to ask.
pub struct LogIn<'a> {
    pub session: &'a Session,
    pub auth: &'a Auth,
    /// The source's client: its proxy, and redirects only within the first URL's origin.
    pub client: &'a crate::http::SourceClient,
    /// Where a rotated refresh token is kept.
    pub tokens: &'a Arc<dyn TokenKeeper>,
    /// For [`crate::redact::learn`]: the tokens met are the bridge's secrets.
    pub bridge: &'a str,
    /// For each token request, as for each page.
    pub timeout: Duration,
    /// When a token was asked for, and whether it is due for renewal.
    pub clock: &'a crate::clock::Clock,
}

/// When a token that lives `lifetime` is renewed, counted from when it was asked for.
pub fn renew_after(lifetime: Duration) -> Duration {
    lifetime.min(MAX_LIFETIME).mul_f64(0.9)
}

impl LogIn<'_> {
    /// Whether a 401 may mean a stale token, worth a new one and a second try.
    pub fn renewable(&self) -> bool {
        !matches!(self.auth.kind, AuthKind::Basic(_))
    }

    /// The header to send: the token held while it is fresh, else (or with `renew`) a new one.
    pub async fn header(&self, renew: bool) -> Result<(HeaderName, HeaderValue), AuthError> {
        if let AuthKind::Basic(v) = &self.auth.kind {
            return Ok((header::AUTHORIZATION, v.clone()));
        }
        let mut held = self.session.held.lock().await;
        if let Some(t) = &held.token {
            if !renew && t.renew_at.is_none_or(|at| self.clock.instant() < at) {
                return Ok(t.header.clone());
            }
        }
        held.token = None;
        let token = match &self.auth.kind {
            AuthKind::OAuth2(o) => self.oauth2(o, &mut held).await?,
            AuthKind::Login(l) => self.login(l).await?,
            AuthKind::Basic(v) => return Ok((header::AUTHORIZATION, v.clone())),
        };
        let header = token.header.clone();
        held.token = Some(token);
        Ok(header)
    }

    /// The refresh token to use: the one in use, else the newest kept for the configured
    /// one, else the configured one.
    async fn refresh_token(&self, held: &Held, configured: &str) -> String {
        if let Some(r) = &held.refresh {
            return r.clone();
        }
        let (tokens, c) = (self.tokens.clone(), configured.to_string());
        match tokio::task::spawn_blocking(move || tokens.load(&c)).await {
            Ok(Ok(Some(kept))) => {
                crate::redact::learn(self.bridge, &kept);
                kept
            }
            Ok(Ok(None)) => configured.to_string(),
            Ok(Err(e)) => {
                tracing::warn!(
                    "bridge {}: could not read the kept refresh token ({e}); using the \
                     configured one",
                    self.bridge
                );
                configured.to_string()
            }
            Err(_) => configured.to_string(),
        }
    }

    /// RFC 6749 §4.4 (client credentials) or §6 (refresh token).
    async fn oauth2(&self, o: &OAuth2, held: &mut Held) -> Result<Token, AuthError> {
        let configured = o.refresh_token.as_ref().map(|s| s.0.as_str());
        let refresh = match configured {
            Some(c) => Some(self.refresh_token(held, c).await),
            None => None,
        };
        let mut form: Vec<(&str, &str)> = Vec::new();
        match &refresh {
            Some(r) => form.extend([("grant_type", "refresh_token"), ("refresh_token", r)]),
            None => form.push(("grant_type", "client_credentials")),
        }
        let scope = o.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        form.extend(o.params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let mut req = self.client.post(o.token_url.clone());
        match (o.client_auth, &o.client_secret) {
            // RFC 6749 §2.3.1: both form-encoded before they are joined.
            (ClientAuth::Basic, Some(s)) => {
                req = req.basic_auth(form_encoded(&o.client_id), Some(form_encoded(&s.0)))
            }
            (_, secret) => {
                form.push(("client_id", &o.client_id));
                form.extend(secret.as_ref().map(|s| ("client_secret", s.0.as_str())));
            }
        }
        let (sent, answer) = self.exchange(req.form(&form), &o.token_url).await?;
        let token = text_at(&answer, "access_token").ok_or_else(|| AuthError::Failed {
            url: crate::redact::url(&o.token_url),
            reason: "the answer has no `access_token`".into(),
        })?;
        crate::redact::learn(self.bridge, &token);
        let lifetime = answer.get("expires_in").and_then(seconds);
        if let (Some(configured), Some(new)) = (configured, text_at(&answer, "refresh_token")) {
            if refresh.as_deref() != Some(new.as_str()) {
                self.keep(configured, &new).await;
            }
            held.refresh = Some(new);
        } else {
            held.refresh = refresh;
        }
        let value = format!("Bearer {token}");
        self.token(header::AUTHORIZATION, &value, sent, lifetime, &o.token_url)
    }

    /// A refresh token the server rotated: in memory (the caller) and kept (the store), since
    /// the one before may now be void.
    async fn keep(&self, configured: &str, new: &str) {
        crate::redact::learn(self.bridge, new);
        let tokens = self.tokens.clone();
        let (c, n) = (configured.to_string(), new.to_string());
        let kept = tokio::task::spawn_blocking(move || tokens.save(&c, &n)).await;
        match kept {
            Ok(Ok(())) => {
                tracing::info!(
                    "bridge {}: kept the new refresh token the token endpoint gave",
                    self.bridge
                )
            }
            Ok(Err(e)) => {
                tracing::warn!(
                    "bridge {}: could not keep the new refresh token ({e}); it is used until a \
                     restart",
                    self.bridge
                )
            }
            Err(_) => {}
        }
    }

    /// `login:`: one request; the token (and its lifetime) at their JSONPaths.
    async fn login(&self, l: &Login) -> Result<Token, AuthError> {
        let mut req = match l.method {
            Method::GET => self.client.get(l.url.clone()),
            Method::POST => self.client.post(l.url.clone()),
        };
        for (k, v) in &l.headers {
            req = req.header(k, v);
        }
        if let Some(b) = &l.body {
            req = req.json(&b.0);
        }
        let (sent, answer) = self.exchange(req, &l.url).await?;
        let token = l.token.select(&answer).into_iter().find_map(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        });
        let token = token.ok_or_else(|| AuthError::Failed {
            url: crate::redact::url(&l.url),
            reason: format!(
                "`{}` finds no token (a non-empty string) in the answer",
                l.token.as_str()
            ),
        })?;
        crate::redact::learn(self.bridge, &token);
        let lifetime = l
            .expires_in
            .as_ref()
            .and_then(|p| p.select(&answer).into_iter().find_map(seconds));
        let value = format!("{}{token}", l.prefix);
        self.token(l.header.clone(), &value, sent, lifetime, &l.url)
    }

    fn token(
        &self,
        name: HeaderName,
        value: &str,
        sent: Instant,
        lifetime: Option<Duration>,
        url: &url::Url,
    ) -> Result<Token, AuthError> {
        let mut value = HeaderValue::from_str(value).map_err(|_| AuthError::Failed {
            url: crate::redact::url(url),
            reason: "the token is not valid in a header".into(),
        })?;
        value.set_sensitive(true);
        Ok(Token {
            header: (name, value),
            renew_at: lifetime.map(|l| sent + renew_after(l)),
        })
    }

    /// One request to a token endpoint, within the timeout: when it was sent, and its JSON.
    async fn exchange(
        &self,
        req: reqwest::RequestBuilder,
        url: &url::Url,
    ) -> Result<(Instant, Value), AuthError> {
        let shown = crate::redact::url(url);
        let failed = |reason: String| AuthError::Failed {
            url: shown.clone(),
            reason,
        };
        let sent = self.clock.instant();
        let ask = async {
            let req = req.header(header::ACCEPT, "application/json");
            let mut resp = (self.client)
                .send(req, crate::http::Asked::Login)
                .await
                .map_err(|e| failed(error_chain(e)))?;
            let status = resp.status();
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(|e| failed(error_chain(e)))? {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(failed(format!("the answer exceeds {MAX_ANSWER} bytes")));
                }
                body.extend_from_slice(&chunk);
            }
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            if !status.is_success() {
                let code = json
                    .as_ref()
                    .and_then(|j| text_at(j, "error"))
                    .filter(|c| error_code(c))
                    .map(|c| format!(" ({c})"))
                    .unwrap_or_default();
                return Err(AuthError::Status {
                    url: shown.clone(),
                    status: status.as_u16(),
                    code,
                });
            }
            json.ok_or_else(|| failed("the answer is not JSON".into()))
        };
        match tokio::time::timeout(self.timeout, ask).await {
            Ok(r) => r.map(|json| (sent, json)),
            Err(_) => Err(AuthError::Timeout {
                url: shown.clone(),
                after: self.timeout,
            }),
        }
    }
}

/// RFC 6749 §5.2 error codes are short words of printable ASCII; anything else (a body that
/// is not an OAuth answer) is not quoted.
fn error_code(c: &str) -> bool {
    !c.is_empty() && c.len() <= 40 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

fn text_at(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// A lifetime in seconds, written as a number or a numeric string.
fn seconds(v: &Value) -> Option<Duration> {
    let n = match v {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (n.is_finite() && n >= 0.0).then(|| Duration::from_secs_f64(n.min(MAX_LIFETIME.as_secs_f64())))
}

fn form_encoded(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_at_nine_tenths_of_their_lifetime() {
        assert_eq!(
            renew_after(Duration::from_secs(3600)),
            Duration::from_secs(3240)
        );
        assert_eq!(
            renew_after(Duration::from_secs(2)),
            Duration::from_millis(1800)
        );
        assert_eq!(renew_after(Duration::MAX), MAX_LIFETIME.mul_f64(0.9));
    }

    #[test]
    fn lifetimes_read_as_numbers_or_numeric_strings() {
        assert_eq!(
            seconds(&serde_json::json!(3599)),
            Some(Duration::from_secs(3599))
        );
        assert_eq!(
            seconds(&serde_json::json!("60")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(seconds(&serde_json::json!(-5)), None);
        assert_eq!(seconds(&serde_json::json!(null)), None);
        let huge: Value = serde_json::from_str("1e400").unwrap();
        assert_eq!(seconds(&huge), None);
    }

    #[test]
    fn only_oauth_error_codes_are_quoted() {
        assert!(error_code("invalid_grant"));
        assert!(!error_code("Invalid client secret hunter22"));
        assert!(!error_code(""));
    }
}
