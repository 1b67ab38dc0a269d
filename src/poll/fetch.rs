//! One HTTP request to a bridge's source, with its method, headers, body, timeout and size
//! limit, giving a parsed JSON document or a reason an operator can act on.

use crate::config::Source;
use crate::config::raw::Method;
use crate::redact;
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: no complete answer within {}", humantime::format_duration(*.after))]
    Timeout { url: String, after: Duration },
    #[error("{url}: response body exceeds max_body ({limit} bytes)")]
    TooLarge { url: String, limit: u64 },
    #[error("{url}: response is not JSON{content_type}: {reason}")]
    NotJson {
        url: String,
        content_type: String,
        reason: String,
    },
    #[error("{url}: {reason}")]
    Http { url: String, reason: String },
}

/// A reqwest error as one line, its causes included, without the URL (which may hold a token;
/// callers print the redacted URL themselves).
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        let part = s.to_string();
        if !msg.contains(&part) {
            msg.push_str(": ");
            msg.push_str(&part);
        }
        src = s.source();
    }
    msg
}

/// Makes the request and reads at most `max_body` bytes of JSON, all within `timeout`.
pub async fn fetch(client: &reqwest::Client, src: &Source) -> Result<Value, FetchError> {
    let url = redact::url(&src.url);
    match tokio::time::timeout(src.timeout, fetch_inner(client, src, &url)).await {
        Ok(r) => r,
        Err(_) => Err(FetchError::Timeout {
            url,
            after: src.timeout,
        }),
    }
}

async fn fetch_inner(
    client: &reqwest::Client,
    src: &Source,
    url: &str,
) -> Result<Value, FetchError> {
    let mut req = match src.method {
        Method::GET => client.get(src.url.clone()),
        Method::POST => client.post(src.url.clone()),
    };
    for (k, v) in &src.headers {
        req = req.header(k, v);
    }
    if let Some(body) = &src.body {
        req = req.json(body);
    }
    let http = |e: reqwest::Error| FetchError::Http {
        url: url.to_string(),
        reason: error_chain(e),
    };
    let mut resp = req.send().await.map_err(http)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(FetchError::Status {
            url: url.to_string(),
            status: status.as_u16(),
        });
    }
    let too_large = || FetchError::TooLarge {
        url: url.to_string(),
        limit: src.max_body,
    };
    if resp.content_length().is_some_and(|n| n > src.max_body) {
        return Err(too_large());
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|s| format!(" (content-type {s})"))
        .unwrap_or_default();
    let mut body = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(http)? {
        if body.len() as u64 + chunk.len() as u64 > src.max_body {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|e| FetchError::NotJson {
        url: url.to_string(),
        content_type,
        reason: if e.is_eof() {
            format!("truncated after {} bytes ({e})", body.len())
        } else {
            e.to_string()
        },
    })
}
