//! Who may act through the admin API (docs/operations.md#who-may-act). Reading is open on the TCP
//! address. Acting (a poll, reset, resync, dead-letter replay or drop) needs the admin unix
//! socket, whose file is mode 0600 and which serves only the daemon's own user and root, or,
//! over TCP, `Authorization: Bearer <token>` with the token from `--admin-token-file`.

use crate::throttle::Throttle;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{debug, warn};

type HmacSha256 = Hmac<sha2::Sha256>;

/// The admin socket's file name in its directory.
pub const SOCKET_NAME: &str = "admin.sock";

/// Where the admin socket is when `--admin-socket` is not given: `$RUNTIME_DIRECTORY/admin.sock`
/// under systemd (the first directory when there are several), else `DATA/admin.sock`.
pub fn default_socket(data: &Path) -> PathBuf {
    match std::env::var_os("RUNTIME_DIRECTORY") {
        Some(d) if !d.is_empty() => {
            PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default())
                .join(SOCKET_NAME)
        }
        _ => data.join(SOCKET_NAME),
    }
}

/// A TCP address other than loopback needs a token (docs/operations.md#who-may-act): exposed
/// without one, it would open the reads to the network while nobody could act over it, which is
/// never what was meant.
pub fn check_exposure(addr: SocketAddr, has_token: bool) -> Result<(), String> {
    if has_token || addr.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "--admin {addr} is not a loopback address, and no admin token is configured: refusing \
         to start. Either listen on loopback (e.g. --admin 127.0.0.1:9187; the admin socket \
         still acts locally), or give a token with --admin-token-file PATH, so that acting over \
         TCP needs `Authorization: Bearer <token>` (reads such as /healthz and /metrics stay open)"
    ))
}

/// A token file that cannot be used. It never quotes the file's contents.
#[derive(Debug, thiserror::Error)]
#[error("admin token file {}: {why}", path.display())]
pub struct TokenError {
    pub path: PathBuf,
    pub why: String,
}

/// Files longer than this are not token files (and are not read whole).
const TOKEN_FILE_LIMIT: u64 = 4096;

/// The token in `text`: surrounding white space (a trailing newline) removed; visible ASCII
/// only, as it travels in an HTTP header.
pub fn parse_token(text: &str) -> Result<String, &'static str> {
    let t = text.trim();
    if t.is_empty() {
        return Err("it is empty: write the token in it (e.g. `openssl rand -hex 32`)");
    }
    if !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the token may hold only visible ASCII characters, no spaces (it goes in an HTTP header)",
        );
    }
    Ok(t.to_string())
}

/// Reads the token in `path` (see [`parse_token`]).
pub fn read_token(path: &Path) -> Result<String, TokenError> {
    let fail = |why: String| TokenError {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if meta.len() > TOKEN_FILE_LIMIT {
        return Err(fail(format!(
            "{} bytes: a token file holds one token (at most {TOKEN_FILE_LIMIT} bytes)",
            meta.len()
        )));
    }
    let text = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8(text).map_err(|_| fail("it is not UTF-8 text".into()))?;
    parse_token(&text).map_err(|why| fail(why.into()))
}

/// The admin token. Only a keyed hash of it is kept, and a presented token is compared by its
/// own keyed hash in constant time, so the comparison tells nothing about the token, not even
/// its length.
#[derive(Clone)]
pub struct AdminToken {
    key: [u8; 32],
    mac: Vec<u8>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

impl AdminToken {
    pub fn new(token: &str) -> AdminToken {
        let key: [u8; 32] = rand::random();
        let mac = Self::keyed(&key, token.as_bytes())
            .finalize()
            .into_bytes()
            .to_vec();
        AdminToken { key, mac }
    }

    /// Reads `--admin-token-file`. A file others may read is worth a warning, not a refusal.
    pub fn read(path: &Path) -> Result<AdminToken, TokenError> {
        let token = read_token(path)?;
        let mode = std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777);
        if mode & 0o077 != 0 {
            warn!(
                file = %path.display(),
                "the admin token file may be read by other users (mode {mode:o}): chmod 600 it"
            );
        }
        Ok(AdminToken::new(&token))
    }

    #[expect(clippy::expect_used, reason = "HMAC takes keys of any size")]
    fn keyed(key: &[u8], data: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any size");
        mac.update(data);
        mac
    }

    pub fn matches(&self, presented: &[u8]) -> bool {
        Self::keyed(&self.key, presented)
            .verify_slice(&self.mac)
            .is_ok()
    }
}

/// How the requests of one listener may act.
#[derive(Clone, Debug)]
pub enum Access {
    /// The unix socket: who may connect was settled by its mode and when the connection was
    /// accepted ([`LocalListener`]).
    Socket,
    /// TCP: reading is open; acting needs the token, when there is one. `socket` is named in
    /// the refusal.
    Tcp {
        token: Option<AdminToken>,
        socket: PathBuf,
    },
}

/// Requests refused for a wrong token, so that a port open to a scanner does not flood the
/// log: one WARN a minute at most, with how many were refused since the last one.
static WRONG_TOKENS: Throttle = Throttle::new();

/// Connections to the admin socket from other users, logged as sparingly.
static OTHER_USERS: Throttle = Throttle::new();

/// The `Authorization: Bearer` credential of a request, if it has one.
fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(header::AUTHORIZATION)?.as_bytes();
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, credential) = text.split_once(' ').unwrap_or((text, ""));
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credential.trim().as_bytes())
}

/// Middleware in front of every acting route: lets the request through when it came over the
/// socket or carries the token, else answers 403 naming both ways.
pub async fn gate(State(access): State<Arc<Access>>, req: Request, next: Next) -> Response {
    let (token, socket) = match &*access {
        Access::Socket => return next.run(req).await,
        Access::Tcp { token, socket } => (token, socket),
    };
    let presented = bearer(req.headers());
    let why = match (token, presented) {
        (Some(t), Some(p)) if t.matches(p) => return next.run(req).await,
        (Some(_), Some(_)) => {
            if let Some(refused) = WRONG_TOKENS.note() {
                warn!(method = %req.method(), path = %req.uri().path(), refused, "admin request refused: wrong bearer token (logged at most once a minute; `refused` counts them since the last line)");
            }
            format!(
                "the bearer token is wrong: send this request over the admin unix socket {} (as \
                 the daemon's user or root), or with `Authorization: Bearer <token>` and the \
                 token in the daemon's --admin-token-file",
                socket.display()
            )
        }
        (Some(_), None) => format!(
            "this request acts on pollhook: send it over the admin unix socket {} (as the \
             daemon's user or root), or with `Authorization: Bearer <token>` and the token in \
             the daemon's --admin-token-file",
            socket.display()
        ),
        (None, _) => format!(
            "this request acts on pollhook: send it over the admin unix socket {} (as the \
             daemon's user or root); over TCP it needs `Authorization: Bearer <token>`, which \
             works only when the daemon runs with --admin-token-file",
            socket.display()
        ),
    };
    debug!(method = %req.method(), path = %req.uri().path(), "admin request refused: it acts, and came over TCP without the token");
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": why })),
    )
        .into_response()
}

/// The admin socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error(
        "admin socket {}: the file there is not a socket (left as it is): remove it or pass another --admin-socket",
        .0.display()
    )]
    NotASocket(PathBuf),
    #[error(
        "admin socket {}: something already answers on it (another pollhook?): stop it or pass another --admin-socket",
        .0.display()
    )]
    InUse(PathBuf),
    #[error(
        "admin socket {}: the path is {len} bytes long, and a unix socket's may have at most 107: pass a shorter --admin-socket",
        path.display()
    )]
    TooLong { path: PathBuf, len: usize },
    #[error("admin socket {}: {source} (pass another --admin-socket)", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The admin socket's file while the daemon runs; removed when this is dropped, unless
/// another file has taken its place meanwhile.
pub struct AdminSocket {
    path: PathBuf,
    /// Device and inode of the file we made.
    id: (u64, u64),
}

impl AdminSocket {
    /// Listens on `path` with mode 0600. A socket file nothing answers on (left by a daemon
    /// that was killed) is replaced; a live one, or a file that is not a socket, is an error.
    /// Call it only once the store is open: its lock is what stops a second daemon on the
    /// same state directory, before it could touch the first one's socket.
    pub fn bind(path: &Path) -> Result<(AdminSocket, LocalListener), SocketError> {
        let io = |source| SocketError::Io {
            path: path.to_path_buf(),
            source,
        };
        let len = path.as_os_str().len();
        if len > 107 {
            return Err(SocketError::TooLong {
                path: path.to_path_buf(),
                len,
            });
        }
        match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
            Ok(m) if !m.file_type().is_socket() => {
                return Err(SocketError::NotASocket(path.to_path_buf()));
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => return Err(SocketError::InUse(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    debug!(path = %path.display(), "removing a stale admin socket");
                    std::fs::remove_file(path).map_err(io)?;
                }
                Err(e) => return Err(io(e)),
            },
        }
        let listener = std::os::unix::net::UnixListener::bind(path).map_err(io)?;
        // Connections in the moment before this are checked when accepted (LocalListener).
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        let meta = std::fs::symlink_metadata(path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let listener = tokio::net::UnixListener::from_std(listener).map_err(io)?;
        Ok((
            AdminSocket {
                path: path.to_path_buf(),
                id: (meta.dev(), meta.ino()),
            },
            LocalListener {
                inner: listener,
                uid: meta.uid(),
            },
        ))
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == self.id => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    warn!(path = %self.path.display(), "cannot remove the admin socket: {e}");
                }
            }
            _ => {}
        }
    }
}

/// The admin socket's listener: serves connections from the daemon's own user and root only,
/// whatever the file's mode has become.
pub struct LocalListener {
    inner: tokio::net::UnixListener,
    /// The daemon's user (the socket file's owner).
    uid: u32,
}

impl LocalListener {
    /// The next connection; `Ok(None)` when it came from another user and was closed.
    pub async fn accept(&mut self) -> std::io::Result<Option<tokio::net::UnixStream>> {
        let (stream, _) = self.inner.accept().await?;
        let who = match stream.peer_cred() {
            Ok(c) if c.uid() == self.uid || c.uid() == 0 => return Ok(Some(stream)),
            Ok(c) => format!("from uid {}", c.uid()),
            Err(e) => format!("from an unknown user ({e})"),
        };
        crate::metrics::admin_closed("socket", "uid");
        if let Some(refused) = OTHER_USERS.note() {
            warn!(
                refused,
                "refused a connection to the admin socket {who}: only the daemon's user and root may use it (logged at most once a minute; `refused` counts them since the last line)"
            );
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_itself_only() {
        let t = AdminToken::new("s3cret-Token");
        assert!(t.matches(b"s3cret-Token"));
        for other in [&b"s3cret-token"[..], b"s3cret-Token ", b"", b"s3cret-Toke"] {
            assert!(!t.matches(other));
        }
        assert_eq!(format!("{t:?}"), "AdminToken(***)");
    }

    #[test]
    fn token_text_is_trimmed_and_checked() {
        assert_eq!(parse_token("abc\n").as_deref(), Ok("abc"));
        assert_eq!(parse_token("  abc\r\n").as_deref(), Ok("abc"));
        assert!(parse_token("\n").is_err());
        assert!(parse_token("two words").is_err());
        assert!(parse_token("tést").is_err());
    }

    #[test]
    fn bearer_credentials() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert_eq!(bearer(&h("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&h("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&h("Basic abc")), None);
        assert_eq!(bearer(&h("Bearer")), Some(&b""[..]));
        assert_eq!(bearer(&HeaderMap::new()), None);
    }

    #[test]
    fn only_loopback_goes_without_a_token() {
        for ok in [
            "127.0.0.1:1",
            "127.1.2.3:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(check_exposure(ok.parse().unwrap(), false).is_ok(), "{ok}");
        }
        for bad in ["0.0.0.0:1", "[::]:1", "10.0.0.1:1", "[::ffff:10.0.0.1]:1"] {
            let e = check_exposure(bad.parse().unwrap(), false).unwrap_err();
            assert!(e.contains(bad) && e.contains("--admin-token-file"), "{e}");
            assert!(check_exposure(bad.parse().unwrap(), true).is_ok());
        }
    }
}
