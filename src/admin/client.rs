//! The CLI's client of the running daemon's admin API: finds the daemon (its admin socket, or
//! TCP with the bearer token, docs/operations.md#who-may-act) and reads the answers as the typed
//! bodies the server writes ([`super::body`]).

use super::body;
use anyhow::{Result, bail};
use std::path::PathBuf;

/// The admin address when none is given.
pub const DEFAULT_ADDR: &str = "127.0.0.1:9187";

/// Where the daemon may be, as the command line gives it.
#[derive(Debug, Clone)]
pub struct Place {
    /// `--admin` / `$POLLHOOK_ADMIN`: given, it names the daemon.
    pub addr: Option<String>,
    /// `--admin-socket` / `$POLLHOOK_ADMIN_SOCKET`.
    pub socket: Option<PathBuf>,
    /// The socket as for `run` (`$RUNTIME_DIRECTORY` or the data directory).
    pub default_socket: PathBuf,
    /// `--admin-token-file`; else the token itself from `$POLLHOOK_ADMIN_TOKEN`.
    pub token_file: Option<PathBuf>,
}

/// A client for the running daemon's admin API: over its admin socket when the daemon
/// answers there, else over TCP, with the bearer token when one was given
/// (docs/operations.md#who-may-act).
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    socket: PathBuf,
    /// A client for the socket, when the daemon answered there.
    local: Option<reqwest::Client>,
    /// Why the socket is not used, for the messages.
    socket_problem: String,
}

/// Where requests go when they go over the admin socket (the host is not used).
const SOCKET_BASE: &str = "http://localhost";
const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Client {
    /// Finds the daemon: the socket first when it answers there (unless an address was given
    /// without a socket), else TCP with the token.
    pub async fn connect(place: &Place) -> Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let addr = place.addr.as_deref().unwrap_or(DEFAULT_ADDR);
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{addr}")
        };
        let token = match &place.token_file {
            Some(path) => Some(crate::access::read_token(path)?),
            None => match std::env::var("POLLHOOK_ADMIN_TOKEN") {
                Ok(t) if !t.trim().is_empty() => Some(
                    crate::access::parse_token(&t)
                        .map_err(|why| anyhow::anyhow!("$POLLHOOK_ADMIN_TOKEN: {why}"))?,
                ),
                _ => None,
            },
        };
        let socket = place
            .socket
            .clone()
            .unwrap_or_else(|| place.default_socket.clone());
        let mut api = Client {
            base,
            http: crate::http::local().timeout(ADMIN_TIMEOUT).build()?,
            token,
            socket,
            local: None,
            socket_problem: String::new(),
        };
        // An address given names the daemon; the default socket could be another one's (a
        // daemon started in this directory, another shard).
        if place.addr.is_some() && place.socket.is_none() {
            api.socket_problem = format!(
                "--admin (or $POLLHOOK_ADMIN) was given and --admin-socket was not, so {} was not tried",
                api.socket.display()
            );
            return Ok(api);
        }
        match api.try_socket().await {
            Ok(client) => api.local = Some(client),
            Err(why) => api.socket_problem = why,
        }
        Ok(api)
    }

    /// A client for the admin socket if the daemon answers `/healthz` there; else why not.
    async fn try_socket(&self) -> Result<reqwest::Client, String> {
        // A plain connect first: its error says best what is in the way.
        if let Err(e) = std::os::unix::net::UnixStream::connect(&self.socket) {
            return Err(match e.kind() {
                std::io::ErrorKind::NotFound => "no socket there".to_string(),
                std::io::ErrorKind::PermissionDenied => format!(
                    "{e}: it belongs to the daemon's user (run this as that user, or as root)"
                ),
                std::io::ErrorKind::ConnectionRefused => {
                    "nothing listens there (a socket left by a daemon that stopped)".to_string()
                }
                _ => e.to_string(),
            });
        }
        let client = crate::http::local()
            .unix_socket(self.socket.as_path())
            .timeout(ADMIN_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        match client.get(format!("{SOCKET_BASE}/healthz")).send().await {
            Ok(r)
                if r.status().is_success()
                    || r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE =>
            {
                Ok(client)
            }
            Ok(r) => Err(format!("it answered HTTP {}", r.status())),
            Err(e) => Err(format!(
                "it closed the connection (the daemon serves its own user and root only): {}",
                crate::http::error_chain(e)
            )),
        }
    }

    /// Where the requests go, for messages.
    pub fn place(&self) -> String {
        match self.local {
            Some(_) => self.socket.display().to_string(),
            None => self.base.clone(),
        }
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        match &self.local {
            Some(client) => client.request(method, format!("{SOCKET_BASE}{path}")),
            None => {
                let r = self.http.request(method, format!("{}{path}", self.base));
                match &self.token {
                    Some(t) => r.bearer_auth(t),
                    None => r,
                }
            }
        }
    }

    /// True when a daemon answers `/healthz`, healthy (200) or not (503).
    pub async fn alive(&self) -> bool {
        if self.local.is_some() {
            return true;
        }
        let url = format!("{}/healthz", self.base);
        matches!(self.http.get(url).send().await, Ok(r) if r.status().is_success() || r.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> Result<T> {
        let resp = self.request(method, path).send().await.map_err(|e| {
            if self.local.is_none() && (e.is_connect() || e.is_timeout()) {
                anyhow::anyhow!(
                    "no pollhook daemon answers at {} (is `pollhook run` running? pass --admin ADDR or set POLLHOOK_ADMIN), nor on the admin socket {} ({})",
                    self.base,
                    self.socket.display(),
                    self.socket_problem
                )
            } else {
                // Without the query: `send-test --sink` puts a sink URL (a credential) there.
                let path = path.split('?').next().unwrap_or_default();
                anyhow::anyhow!("{}{path}: {}", self.place(), crate::http::error_chain(e))
            }
        })?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = serde_json::from_str::<body::Failure>(&text)
                .map(|f| f.error)
                .unwrap_or_else(|_| format!("HTTP {status}"));
            if status == reqwest::StatusCode::FORBIDDEN {
                bail!(
                    "{msg} (HTTP 403 from {})\nthe admin socket {} could not be used: {}.\nto act, \
                     run this as the daemon's user or as root and point --admin-socket PATH (or \
                     POLLHOOK_ADMIN_SOCKET) at its socket, or give the daemon's token with \
                     --admin-token-file PATH (or POLLHOOK_ADMIN_TOKEN)",
                    self.base,
                    self.socket.display(),
                    self.socket_problem
                );
            }
            bail!("{msg}");
        }
        serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}{path}: an answer this version does not read ({e}): is the daemon another version?",
                self.place()
            )
        })
    }
}

impl Client {
    pub async fn bridges(&self) -> Result<body::Bridges> {
        self.call(reqwest::Method::GET, "/v1/bridges").await
    }

    /// The same, as the server wrote it (for `status --json`).
    pub async fn bridges_json(&self) -> Result<serde_json::Value> {
        self.call(reqwest::Method::GET, "/v1/bridges").await
    }

    pub async fn poll(&self, name: &str, commit: bool) -> Result<body::Polled> {
        let path = format!("/v1/bridges/{name}/poll?commit={commit}");
        self.call(reqwest::Method::POST, &path).await
    }

    /// A dry-run poll with the requests each sink would get.
    pub async fn render(&self, name: &str) -> Result<body::Polled> {
        let path = format!("/v1/bridges/{name}/poll?render=true");
        self.call(reqwest::Method::POST, &path).await
    }

    pub async fn send_test(&self, name: &str, sink: Option<&str>) -> Result<body::TestSent> {
        let mut path = format!("/v1/bridges/{name}/send-test");
        if let Some(url) = sink {
            let q: String = url::form_urlencoded::Serializer::new(String::new())
                .append_pair("sink", url)
                .finish();
            path.push('?');
            path.push_str(&q);
        }
        self.call(reqwest::Method::POST, &path).await
    }

    /// The bridge's churn (docs/testing-bridges.md#churn-and-suggest).
    pub async fn churn(&self, name: &str) -> Result<crate::churn::Report> {
        let path = format!("/v1/bridges/{name}/churn");
        self.call(reqwest::Method::GET, &path).await
    }

    pub async fn reset(&self, name: &str) -> Result<body::Reset> {
        let path = format!("/v1/bridges/{name}/reset");
        self.call(reqwest::Method::POST, &path).await
    }

    pub async fn resync(&self, name: &str) -> Result<body::Resynced> {
        let path = format!("/v1/bridges/{name}/resync");
        self.call(reqwest::Method::POST, &path).await
    }

    /// Makes a bridge's drifted shape the learnt one (docs/testing-bridges.md#shape-drift).
    pub async fn accept_shape(&self, name: &str) -> Result<body::ShapeAccepted> {
        let path = format!("/v1/bridges/{name}/accept-shape");
        self.call(reqwest::Method::POST, &path).await
    }

    /// Gives up waiting for a bridge's state from another shard (docs/scaling.md#while-waiting).
    pub async fn skip_handoff(&self, name: &str) -> Result<body::Skipped> {
        let path = format!("/v1/handoff/{name}/skip");
        self.call(reqwest::Method::POST, &path).await
    }

    pub async fn dead_letters(&self, bridge: Option<&str>) -> Result<body::DeadLetters> {
        self.call(reqwest::Method::GET, &letters_path(bridge)).await
    }

    /// The same, as the server wrote it (for `dead-letters list --json`).
    pub async fn dead_letters_json(&self, bridge: Option<&str>) -> Result<serde_json::Value> {
        self.call(reqwest::Method::GET, &letters_path(bridge)).await
    }

    pub async fn replay(&self, id: &str) -> Result<body::Replayed> {
        let path = format!("/v1/dead-letters/{id}/replay");
        self.call(reqwest::Method::POST, &path).await
    }

    pub async fn drop_letter(&self, id: &str) -> Result<body::Dropped> {
        let path = format!("/v1/dead-letters/{id}");
        self.call(reqwest::Method::DELETE, &path).await
    }
}

/// `GET /v1/dead-letters`, of one bridge or all.
fn letters_path(bridge: Option<&str>) -> String {
    let q = bridge.map(|b| format!("?bridge={b}")).unwrap_or_default();
    format!("/v1/dead-letters{q}")
}
