//! `source.auth` and `source.proxy` checked and compiled (docs/configuration.md#logging-in): how a
//! bridge logs in to its source and which proxy its requests take. A child of `bridge` so that it
//! uses the same validator (positions, interpolation, secrets); the tokens themselves live in
//! `crate::auth`.
//!
//! Every credential met here (client secret, refresh token, password, a login body's
//! secret-looking values, a proxy's password) becomes a secret of the bridge, whether it came
//! from `${…}` or was written out, so that no log line, status or error ever shows it.

use super::Validator;
use crate::config::raw::{ClientAuth, Method, RawAuth, RawBasic, RawLogin, RawOAuth2};
use crate::jsonpath::Path as JsonPath;
use base64::Engine;
use reqwest::header::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use url::Url;

/// A credential: `Debug` (of a bridge, in a test's panic or a trace) shows `***`.
#[derive(Clone, PartialEq)]
pub struct Secret<T>(pub T);

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(crate::redact::MASK)
    }
}

/// How a bridge logs in.
#[derive(Debug, Clone)]
pub struct Auth {
    /// A hash of everything the login is made of, after interpolation: tokens fetched belong to
    /// one login, so a reload that changes it starts over.
    pub id: String,
    pub kind: AuthKind,
}

#[derive(Debug, Clone)]
pub enum AuthKind {
    OAuth2(OAuth2),
    Login(Login),
    /// The whole `Authorization` value, `Basic …` (marked sensitive).
    Basic(HeaderValue),
}

/// An RFC 6749 token endpoint: the client-credentials grant, or the refresh-token grant when
/// a refresh token is configured.
#[derive(Debug, Clone)]
pub struct OAuth2 {
    pub token_url: Url,
    pub client_id: String,
    pub client_secret: Option<Secret<String>>,
    pub scopes: Vec<String>,
    pub params: Vec<(String, String)>,
    pub refresh_token: Option<Secret<String>>,
    pub client_auth: ClientAuth,
}

/// Any token endpoint: one request, the token (and its lifetime) picked out of the answer.
#[derive(Debug, Clone)]
pub struct Login {
    pub url: Url,
    pub method: Method,
    pub body: Option<Secret<serde_json::Value>>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub token: JsonPath,
    /// Seconds, a number or a numeric string. None: the token lasts until a 401.
    pub expires_in: Option<JsonPath>,
    pub header: HeaderName,
    pub prefix: String,
}

/// The schemes `source.proxy` takes (reqwest's `socks` feature; `socks5h` resolves names at
/// the proxy).
const PROXY_SCHEMES: [&str; 4] = ["http", "https", "socks5", "socks5h"];

impl Validator<'_> {
    /// `source.auth`: `Some(None)` when there is none, None on a problem.
    pub(super) fn auth(
        &mut self,
        raw: Option<&RawAuth>,
        headers: &BTreeMap<String, String>,
    ) -> Option<Option<Auth>> {
        let Some(a) = raw else { return Some(None) };
        let given = [a.oauth2.is_some(), a.login.is_some(), a.basic.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            self.err(
                "source.auth",
                "source.auth: give exactly one of `oauth2`, `login` or `basic`",
            );
            return None;
        }
        let mut parts = Vec::new();
        let kind = if let Some(o) = &a.oauth2 {
            AuthKind::OAuth2(self.oauth2(o, &mut parts)?)
        } else if let Some(l) = &a.login {
            AuthKind::Login(self.login(l, &mut parts)?)
        } else {
            AuthKind::Basic(self.basic(a.basic.as_ref()?, &mut parts)?)
        };
        let sets = match &kind {
            AuthKind::Login(l) => l.header.clone(),
            _ => reqwest::header::AUTHORIZATION,
        };
        if let Some(h) = headers
            .keys()
            .find(|h| h.eq_ignore_ascii_case(sets.as_str()))
        {
            let path = format!("source.headers.{h}");
            self.err(
                &path,
                format!("{path}: `source.auth` sets this header; give one or the other"),
            );
            return None;
        }
        let id = hex::encode(&Sha256::digest(parts.join("\0").as_bytes())[..12]);
        Some(Some(Auth { id, kind }))
    }

    /// A credential: interpolated, and a secret of the bridge however it was written.
    fn credential(&mut self, path: &str, s: &str, parts: &mut Vec<String>) -> Option<String> {
        let v = self.text(path, s)?;
        if v.is_empty() {
            self.err(path, format!("{path}: is empty"));
            return None;
        }
        self.secrets.push(v.clone());
        parts.push(v.clone());
        Some(v)
    }

    fn oauth2(&mut self, o: &RawOAuth2, parts: &mut Vec<String>) -> Option<OAuth2> {
        let p = "source.auth.oauth2";
        let token_url = self.url(&format!("{p}.token_url"), &o.token_url);
        let client_id = self.text(&format!("{p}.client_id"), &o.client_id);
        let client_secret = o
            .client_secret
            .as_ref()
            .map(|s| self.credential(&format!("{p}.client_secret"), s, parts));
        let refresh_token = o
            .refresh_token
            .as_ref()
            .map(|s| self.credential(&format!("{p}.refresh_token"), s, parts));
        let mut scopes = Vec::new();
        for (n, s) in o.scopes.iter().enumerate() {
            scopes.extend(self.text(&format!("{p}.scopes[{n}]"), s));
        }
        let mut params = Vec::new();
        for (k, v) in &o.params {
            let path = format!("{p}.params.{k}");
            if [
                "grant_type",
                "client_id",
                "client_secret",
                "refresh_token",
                "scope",
            ]
            .contains(&k.as_str())
            {
                self.err(
                    &path,
                    format!("{path}: `{k}` is set by pollhook; use the key of its own"),
                );
                continue;
            }
            let Some(v) = self.text(&path, v) else {
                continue;
            };
            if crate::redact::is_secret_param(k) {
                self.secrets.push(v.clone());
            }
            params.push((k.clone(), v));
        }
        if o.client_auth == ClientAuth::Basic && o.client_secret.is_none() {
            // RFC 6749 §2.3.1 Basic needs a password; a public client sends its id in the form.
            self.err(
                p,
                format!(
                    "{p}: `client_auth: basic` needs a `client_secret` (or use `client_auth: post`)"
                ),
            );
        }
        let token_url = token_url?;
        let client_id = client_id?;
        parts.extend([
            "oauth2".to_string(),
            token_url.to_string(),
            client_id.clone(),
            format!("{:?}{:?}{:?}", scopes, params, o.client_auth),
        ]);
        Some(OAuth2 {
            token_url,
            client_id,
            client_secret: client_secret.map(|s| s.map(Secret)).transpose_none()?,
            scopes,
            params,
            refresh_token: refresh_token.map(|s| s.map(Secret)).transpose_none()?,
            client_auth: o.client_auth,
        })
    }

    fn login(&mut self, l: &RawLogin, parts: &mut Vec<String>) -> Option<Login> {
        let p = "source.auth.login";
        let url = self.url(&format!("{p}.url"), &l.url);
        let method = l.method.unwrap_or(Method::POST);
        let body = l.body.as_ref().map(|b| self.body(&format!("{p}.body"), b));
        if matches!(body, Some(Some(_))) && method == Method::GET {
            self.err(
                &format!("{p}.body"),
                format!("{p}.body: a body needs `method: POST`"),
            );
        }
        if let Some(Some(b)) = &body {
            secret_values(b, false, &mut self.secrets);
            parts.push(b.to_string());
        }
        let headers = self.headers(&format!("{p}.headers"), &l.headers);
        let token = self.jsonpath(&format!("{p}.token"), &l.token);
        let expires_in = l
            .expires_in
            .as_ref()
            .map(|e| self.jsonpath(&format!("{p}.expires_in"), e));
        let (header, prefix) = self.login_header(l);
        let url = url?;
        parts.extend([
            "login".to_string(),
            url.to_string(),
            format!(
                "{method:?}{:?}{:?}{:?}{:?}",
                l.token, l.expires_in, header, prefix
            ),
        ]);
        parts.extend(
            headers
                .iter()
                .map(|(k, v)| format!("{k}:{}", v.to_str().unwrap_or(""))),
        );
        Some(Login {
            url,
            method,
            body: match body {
                Some(b) => Some(Secret(b?)),
                None => None,
            },
            headers,
            token: token?,
            expires_in: match expires_in {
                Some(e) => Some(e?),
                None => None,
            },
            header: header?,
            prefix: prefix?,
        })
    }

    /// The header a login's token goes in, and what precedes the token there.
    fn login_header(&mut self, l: &RawLogin) -> (Option<HeaderName>, Option<String>) {
        let p = "source.auth.login";
        let header = match &l.header {
            None => Some(reqwest::header::AUTHORIZATION),
            Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(h) => Some(h),
                Err(_) => {
                    self.err(
                        &format!("{p}.header"),
                        format!("{p}.header: `{h}` is not a valid header name"),
                    );
                    None
                }
            },
        };
        let prefix = match &l.prefix {
            None => Some("Bearer ".to_string()),
            Some(x) => self.text(&format!("{p}.prefix"), x),
        };
        if let Some(x) = &prefix {
            if HeaderValue::from_str(x).is_err() {
                self.err(
                    &format!("{p}.prefix"),
                    format!("{p}.prefix: not valid in a header value"),
                );
            }
        }
        (header, prefix)
    }

    fn basic(&mut self, b: &RawBasic, parts: &mut Vec<String>) -> Option<HeaderValue> {
        let p = "source.auth.basic";
        let user = self.text(&format!("{p}.username"), &b.username);
        let password = if b.password.is_empty() {
            Some(String::new())
        } else {
            self.credential(&format!("{p}.password"), &b.password, parts)
        };
        let (user, password) = (user?, password?);
        if user.contains(':') {
            self.err(
                &format!("{p}.username"),
                format!("{p}.username: may not hold `:` (RFC 7617)"),
            );
            return None;
        }
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let value = format!("Basic {encoded}");
        self.secrets.push(encoded);
        parts.extend(["basic".to_string(), user]);
        match HeaderValue::from_str(&value) {
            Ok(mut v) => {
                v.set_sensitive(true);
                Some(v)
            }
            Err(_) => {
                self.err(p, format!("{p}: the username is not valid in a header"));
                None
            }
        }
    }

    /// `source.proxy`: `Some(None)` when there is none, None on a problem. Its password is a
    /// secret.
    pub(super) fn proxy(&mut self, raw: Option<&String>) -> Option<Option<Url>> {
        let Some(raw) = raw else { return Some(None) };
        let path = "source.proxy";
        let i = self.value(path, raw)?;
        let url = match Url::parse(i.value.trim()) {
            Ok(u) => u,
            Err(e) => {
                let why = super::values::detail(&i, e);
                self.err(path, format!("{path}: `{}` is not a URL{why}", i.shown));
                return None;
            }
        };
        if let Some(pw) = url.password() {
            self.secrets.push(pw.to_string());
            self.secrets.push(percent_decoded(pw));
        }
        if !PROXY_SCHEMES.contains(&url.scheme()) || url.host_str().is_none() {
            self.err(
                path,
                format!(
                    "{path}: `{}` is not a proxy URL (http://, https://, socks5:// or socks5h://HOST:PORT)",
                    crate::redact::url(&url)
                ),
            );
            return None;
        }
        if reqwest::Proxy::all(url.as_str()).is_err() {
            self.err(
                path,
                format!(
                    "{path}: `{}` is not a proxy URL reqwest takes",
                    crate::redact::url(&url)
                ),
            );
            return None;
        }
        Some(Some(url))
    }
}

/// `Option<Option<T>>` as the validator builds it: absent is fine, present must have passed.
trait TransposeNone<T> {
    fn transpose_none(self) -> Option<Option<T>>;
}

impl<T> TransposeNone<T> for Option<Option<T>> {
    fn transpose_none(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(Some(v)) => Some(Some(v)),
            Some(None) => None,
        }
    }
}

/// A URL's password as the proxy gets it (`url` keeps it percent-encoded).
fn percent_decoded(s: &str) -> String {
    let pair = format!("x={}", s.replace('+', "%2B"));
    url::form_urlencoded::parse(pair.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The string values of a login body under secret-looking keys (`password`, `api_key`,
/// `client_secret`…), and everything under such a key.
fn secret_values(v: &serde_json::Value, under_secret: bool, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) if under_secret => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| secret_values(x, under_secret, out)),
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                secret_values(x, under_secret || crate::redact::is_secret_param(k), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_body_gives_up_its_secret_looking_values_only() {
        let body = serde_json::json!({"user": "ada", "password": "hunter22",
            "auth": {"otp": "123456"}, "list": [{"api_key": "k-1"}]});
        let mut out = Vec::new();
        secret_values(&body, false, &mut out);
        out.sort();
        assert_eq!(out, ["123456", "hunter22", "k-1"]);
    }

    #[test]
    fn secrets_debug_as_a_mask() {
        let s = Secret("hunter22".to_string());
        assert_eq!(format!("{s:?}"), "***");
    }
}
