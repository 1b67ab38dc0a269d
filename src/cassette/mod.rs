//! Cassettes: a bridge's source answers, recorded once and replayed offline
//! (docs/testing-bridges.md). `record` sends a bridge's real polls through a recorder that
//! keeps every answer; `replay` runs the whole pipeline over a cassette, served from a loopback
//! server, in a scratch store with a fixed clock, and gives its events as JSON lines.
//!
//! The layout of a cassette directory, one file per exchange so that a change diffs as itself:
//!
//! - `cassette.json`: the bridge, the number of polls, when the first one was and how far apart
//!   they are (`{"bridge": "…", "polls": 3, "start": "…", "every": "10m"}`)
//! - `PPP-NNN.json`: poll PPP's NNNth exchange: the request (method, URL, headers; secrets
//!   masked), what it was for (`page` or `login`), and the answer's status and headers
//! - `PPP-NNN.body`: that answer's body, byte for byte (a login answer's tokens masked)

pub mod record;
pub mod replay;

use crate::redact::{self, MASK, Redactor};
use chrono::{DateTime, Utc};
use reqwest::header::HeaderName;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The file that names a cassette's bridge and its polls.
pub const INDEX: &str = "cassette.json";

#[derive(Debug, thiserror::Error)]
pub enum CassetteError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {reason}", .path.display())]
    Bad { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CassetteError + '_ {
    move |source| CassetteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `cassette.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Index {
    pub bridge: String,
    pub polls: usize,
    /// When the first poll was: a replay's clock stands there for poll 1.
    pub start: DateTime<Utc>,
    /// How far apart the polls are: a replay's clock steps this much after each.
    #[serde(with = "humantime_serde_str")]
    pub every: std::time::Duration,
}

/// `PPP-NNN.json`: one request and its answer (the body beside it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exchange {
    pub request: Request,
    /// `page` (a page of the listing) or `login` (a token request).
    pub asked: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub method: String,
    /// Secret query values, the password and every secret of the bridge masked: a replay
    /// matches on this.
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A whole cassette: its index, and each poll's exchanges with their bodies, in order.
#[derive(Debug, Clone)]
pub struct Cassette {
    pub index: Index,
    pub polls: Vec<Vec<(Exchange, Vec<u8>)>>,
}

/// The name of poll `poll`'s `n`th exchange (both from 1), without the extension.
pub fn stem(poll: usize, n: usize) -> String {
    format!("{poll:03}-{n:03}")
}

impl Cassette {
    /// Reads a cassette directory.
    pub fn read(dir: &Path) -> Result<Cassette, CassetteError> {
        let path = dir.join(INDEX);
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let index: Index = serde_json::from_str(&text).map_err(|e| CassetteError::Bad {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let mut polls = Vec::with_capacity(index.polls);
        for p in 1..=index.polls {
            let mut exchanges = Vec::new();
            for n in 1.. {
                let meta = dir.join(format!("{}.json", stem(p, n)));
                if !meta.is_file() {
                    break;
                }
                let text = std::fs::read_to_string(&meta).map_err(io(&meta))?;
                let x: Exchange = serde_json::from_str(&text).map_err(|e| CassetteError::Bad {
                    path: meta.clone(),
                    reason: e.to_string(),
                })?;
                let body = dir.join(format!("{}.body", stem(p, n)));
                let bytes = std::fs::read(&body).map_err(io(&body))?;
                exchanges.push((x, bytes));
            }
            polls.push(exchanges);
        }
        Ok(Cassette { index, polls })
    }

    /// Writes the index and every exchange to `dir` (which is created).
    pub fn write(&self, dir: &Path) -> Result<(), CassetteError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        for (p, exchanges) in self.polls.iter().enumerate() {
            for (n, (x, body)) in exchanges.iter().enumerate() {
                write_exchange(dir, (p + 1, n + 1), x, body)?;
            }
        }
        write_json(&dir.join(INDEX), &self.index)
    }
}

/// Writes one exchange's two files.
pub fn write_exchange(
    dir: &Path,
    (poll, n): (usize, usize),
    x: &Exchange,
    body: &[u8],
) -> Result<(), CassetteError> {
    write_json(&dir.join(format!("{}.json", stem(poll, n))), x)?;
    let path = dir.join(format!("{}.body", stem(poll, n)));
    std::fs::write(&path, body).map_err(io(&path))
}

fn write_json(path: &Path, v: &impl Serialize) -> Result<(), CassetteError> {
    let mut text = serde_json::to_string_pretty(v).map_err(|e| CassetteError::Bad {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(io(path))
}

/// Answer headers a cassette does not keep: how the body travelled (the replay server sets its
/// own), and cookies (credentials).
fn dropped(name: &str) -> bool {
    matches!(
        name,
        "content-length" | "transfer-encoding" | "connection" | "keep-alive" | "content-encoding"
    )
}

/// Headers as a cassette keeps them: credentials masked (request and answer alike, `Set-Cookie`
/// too), every secret of the bridge (and token learnt) masked in the others.
pub fn masked_headers(headers: &reqwest::header::HeaderMap, r: &Redactor) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !dropped(k.as_str()))
        .map(|(k, v)| {
            let v = if secret_header(k) {
                MASK.to_string()
            } else {
                r.clean(&String::from_utf8_lossy(v.as_bytes()))
            };
            (k.as_str().to_string(), v)
        })
        .collect()
}

fn secret_header(k: &HeaderName) -> bool {
    redact::is_secret_header(k) || k.as_str().contains("cookie")
}

/// A body as a cassette keeps it: as it came, unless it holds a credential. A login answer's
/// token-like fields (`access_token`, `refresh_token`, …) are masked, and any secret of the
/// bridge or token learnt is masked wherever it stands.
pub fn masked_body(body: &[u8], asked: crate::http::Asked, r: &Redactor) -> Vec<u8> {
    let body = if asked == crate::http::Asked::Login {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(mut v) => {
                mask_tokens(&mut v);
                serde_json::to_vec_pretty(&v).unwrap_or_default()
            }
            // Not JSON: nothing of it is kept.
            Err(_) => MASK.as_bytes().to_vec(),
        }
    } else {
        body.to_vec()
    };
    match std::str::from_utf8(&body) {
        Ok(text) => r.clean(text).into_bytes(),
        Err(_) => body,
    }
}

/// Masks the value of every key that names a credential, at any depth.
fn mask_tokens(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m.iter_mut() {
                if redact::is_secret_param(k) && !v.is_object() && !v.is_array() {
                    *v = MASK.into();
                } else {
                    mask_tokens(v);
                }
            }
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(mask_tokens),
        _ => {}
    }
}

/// `every` as humantime writes it (`10m`, `1h 30m`).
mod humantime_serde_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Asked;

    #[test]
    fn a_login_answer_keeps_no_token_and_secrets_go_everywhere() {
        let r = Redactor::new(&["hunter22-secret".to_string()]);
        let body = br#"{"access_token":"tok-123","expires_in":3600,"data":{"refresh_token":"r-9"},"note":"hunter22-secret"}"#;
        let kept = String::from_utf8(masked_body(body, Asked::Login, &r)).unwrap();
        for gone in ["tok-123", "r-9", "hunter22-secret"] {
            assert!(!kept.contains(gone), "{gone} in {kept}");
        }
        assert!(kept.contains("3600"), "{kept}");
        // A page is kept as it came, but for the bridge's secrets.
        let page = br#"{"items":[{"id":1}]}"#;
        assert_eq!(masked_body(page, Asked::Page, &r), page.to_vec());
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("set-cookie", "session=abc".parse().unwrap());
        h.insert("authorization", "Bearer x".parse().unwrap());
        h.insert("content-length", "12".parse().unwrap());
        h.insert("x-note", "hunter22-secret here".parse().unwrap());
        let kept = masked_headers(&h, &r);
        assert_eq!(
            kept,
            [
                ("set-cookie".to_string(), MASK.to_string()),
                ("authorization".to_string(), MASK.to_string()),
                ("x-note".to_string(), format!("{MASK} here")),
            ]
        );
    }
}
