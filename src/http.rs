//! Everything pollhook says and hears over HTTP that is not about one bridge: the two clients
//! (sources, webhooks) and how they treat redirects, the user agent, one-line reqwest errors,
//! and reading `Retry-After`. A leaf, so that polling and delivery share it without importing
//! each other. Both verify https servers against [`roots`]: the system's CA
//! certificates, or the bundled set when the system has none.

pub mod roots;

use chrono::{DateTime, Utc};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub const USER_AGENT: &str = concat!("pollhook/", env!("CARGO_PKG_VERSION"));

/// The client for sources: follows redirects within the source's origin only, and sends no
/// `Referer` (docs/configuration.md#redirects).
pub fn fetcher() -> reqwest::Client {
    fetcher_via(None)
}

/// The same, through `proxy` (a bridge's `source.proxy`, checked by the config to be one
/// reqwest takes). Without one, and for every client here, reqwest reads `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and the lower-case spellings).
#[expect(
    clippy::expect_used,
    reason = "the config checked the proxy with the same call, and a rustls client with its roots loaded has nothing left to fail on"
)]
pub fn fetcher_via(proxy: Option<&url::Url>) -> reqwest::Client {
    install_crypto();
    let mut builder = with_roots(reqwest::Client::builder());
    if let Some(p) = proxy {
        builder = builder.proxy(reqwest::Proxy::all(p.as_str()).expect("the config checked it"));
    }
    builder
        .user_agent(USER_AGENT)
        .redirect(redirect_policy())
        .referer(false)
        // Keep-alive for the next poll of the same host, but not hundreds of idle sockets
        // after a burst (a start, a shared cron minute).
        .pool_max_idle_per_host(16)
        .pool_idle_timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client with rustls builds")
}

/// A source's client (its pages and its login's token requests), and the tape its exchanges go
/// through while a cassette is recorded or replayed (docs/testing-bridges.md). It derefs to the
/// reqwest client, which builds the requests; [`SourceClient::send`] sends them.
#[derive(Clone)]
pub struct SourceClient {
    client: reqwest::Client,
    tape: Option<Arc<dyn Tape>>,
}

/// What a request to a source is for: a page of the listing, or a token (whose answer is a
/// credential: a recorder masks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    Page,
    Login,
}

/// A boxed future of a [`Tape`]'s answer.
pub type Answering<'a> =
    Pin<Box<dyn Future<Output = reqwest::Result<reqwest::Response>> + Send + 'a>>;

/// Where a source's exchanges go instead of straight to the source: a recorder (which sends
/// them and keeps the answers) or a player (which answers from a cassette).
pub trait Tape: Send + Sync {
    /// Sends `req` (built by `client`) and gives its answer.
    fn send<'a>(
        &'a self,
        client: &'a reqwest::Client,
        req: reqwest::Request,
        asked: Asked,
    ) -> Answering<'a>;
}

impl SourceClient {
    pub fn new(client: reqwest::Client, tape: Option<Arc<dyn Tape>>) -> SourceClient {
        SourceClient { client, tape }
    }

    /// Sends a request: to the source, or through the tape when there is one.
    pub async fn send(
        &self,
        req: reqwest::RequestBuilder,
        asked: Asked,
    ) -> reqwest::Result<reqwest::Response> {
        match &self.tape {
            None => req.send().await,
            Some(tape) => tape.send(&self.client, req.build()?, asked).await,
        }
    }
}

impl std::ops::Deref for SourceClient {
    type Target = reqwest::Client;

    fn deref(&self) -> &reqwest::Client {
        &self.client
    }
}

/// The client for webhooks: never follows redirects (a 3xx is a failed delivery,
/// docs/events.md#retries).
#[expect(
    clippy::expect_used,
    reason = "a rustls client with its roots loaded has nothing left to fail on"
)]
pub fn sender() -> reqwest::Client {
    install_crypto();
    with_roots(reqwest::Client::builder())
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client with rustls builds")
}

/// A client for the daemon's own admin API (plain HTTP, over TCP or its unix socket): it
/// verifies no server, so it needs no CA certificates (and builds on a host without any).
pub fn local() -> reqwest::ClientBuilder {
    install_crypto();
    reqwest::Client::builder().tls_certs_only(Vec::new())
}

/// reqwest is built with rustls but no crypto provider of its own: use ring's.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The process's roots as the only trust anchors. Not reqwest's own loading of the system
/// store, which fails the build of every client (and so panicked at start) when the store
/// is empty.
fn with_roots(builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    builder.tls_certs_only(roots::roots().certificates())
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

/// At most this many redirects are followed for one request (docs/configuration.md#redirects).
pub const MAX_REDIRECTS: usize = 10;

/// Why a redirect of a source request is not followed.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error(
        "redirected to another origin ({0}); not followed: the source's credentials go to its own origin only"
    )]
    OtherOrigin(String),
    #[error("more than {MAX_REDIRECTS} redirects")]
    TooMany,
}

/// How source requests follow redirects (docs/configuration.md#redirects): within the origin
/// (scheme, host, port) of the URL asked for, at most [`MAX_REDIRECTS`] in a row. Any other is
/// refused before a request goes there, so the source's headers, URL password and query never reach
/// another origin. (Clients built with it should also send no `Referer`, which carries the query.)
pub fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let origin = attempt.url().origin();
        // `previous` starts with the URL asked for.
        if attempt.previous().first().map(url::Url::origin) != Some(origin.clone()) {
            let shown = origin.ascii_serialization();
            return attempt.error(Refused::OtherOrigin(shown));
        }
        if attempt.previous().len() > MAX_REDIRECTS {
            return attempt.error(Refused::TooMany);
        }
        attempt.follow()
    })
}

/// What a `Retry-After` value (RFC 9110 §10.2.3) says, before a caller applies its own limits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryAfter {
    /// delay-seconds; any number of digits (too many for a u64 is just a long wait).
    Seconds(u64),
    /// An HTTP date.
    At(DateTime<Utc>),
}

/// Reads a `Retry-After` value: delay-seconds or an HTTP date. None when it is neither.
pub fn retry_after(v: &str) -> Option<RetryAfter> {
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(RetryAfter::Seconds(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.to_utc();
    Some(RetryAfter::At(at))
}
