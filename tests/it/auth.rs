//! Logging in to sources (docs/configuration.md#logging-in): OAuth2 against a local token endpoint
//! that counts its requests and issues 2-second tokens, a login endpoint, basic auth, and proxies
//! (one per bridge, and the standard variables in a daemon's environment).

use crate::support::*;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long the issuer's tokens live, and what its answers say.
const TTL: Duration = Duration::from_secs(2);
/// How long past [`TTL`] the API still takes a token. The client counts a token's life from
/// when it asked for it, the issuer from when it answered, and a poll on a busy machine may
/// reach the API a while after the client judged its token fresh: without this room a token
/// renewed on time could meet a 401, and the renewal test would fail by chance. A client that
/// does not renew ahead of expiry still meets 401s (each token outlives its use), and the tests
/// count those.
const GRACE: Duration = Duration::from_secs(3);
const CLIENT_SECRET: &str = "cs-Vq81-lit";
const BASIC_PASSWORD: &str = "pw-basic-Q7x";
const LOGIN_PASSWORD: &str = "pw-login-4Kd";

/// One request to the token endpoint.
#[derive(Debug, Clone)]
struct TokenHit {
    form: HashMap<String, String>,
    authorization: Option<String>,
    at: Instant,
}

/// One request to the API: its path, the token it carried (None: none or not a known
/// token) and the status it got.
#[derive(Debug, Clone)]
struct ApiHit {
    path: String,
    token: Option<String>,
    status: u16,
}

#[derive(Default)]
struct Issued {
    /// The lifetime of the tokens issued from now on, when not [`TTL`].
    lifetime: Option<Duration>,
    /// Access tokens: when they were issued, and for how long.
    tokens: HashMap<String, (Instant, Duration)>,
    revoked: HashSet<String>,
    /// The API answers 401 to every token.
    refuse_all: bool,
    /// The token endpoint answers this status (with an error body quoting the secret).
    fail_with: Option<u16>,
    /// The one refresh token it takes now; each use rotates it.
    refresh: Option<String>,
    rejected_refresh: Vec<String>,
    token_hits: Vec<TokenHit>,
    api_hits: Vec<ApiHit>,
    serial: u64,
}

/// An authorization server and the API it guards, on one origin: `/token` (RFC 6749, client
/// credentials and refresh token), `/login` (JSON in, `{"data": {"jwt", "ttl"}}` out), and
/// the API: `/items` (a bearer token younger than [`TTL`] and [`GRACE`]), `/basic-items` (basic auth),
/// `/session-items` (`X-Session: Token <jwt>`).
#[derive(Clone)]
struct Issuer {
    base: String,
    state: Arc<Mutex<Issued>>,
}

type Shared = Arc<Mutex<Issued>>;

fn form_of(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

async fn token(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let form = form_of(&body);
    let mut st = s.lock().unwrap();
    st.token_hits.push(TokenHit {
        form: form.clone(),
        authorization: headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_string()),
        at: Instant::now(),
    });
    if let Some(status) = st.fail_with {
        let body = json!({"error": "server_error",
            "error_description": format!("client secret {CLIENT_SECRET} did not work")});
        return (StatusCode::from_u16(status).unwrap(), body.to_string()).into_response();
    }
    st.serial += 1;
    let n = st.serial;
    let mut answer = json!({"access_token": format!("at-{n}-Zx7p"), "token_type": "Bearer",
        "expires_in": st.lifetime.unwrap_or(TTL).as_secs()});
    if form.get("grant_type").map(String::as_str) == Some("refresh_token") {
        let given = form.get("refresh_token").cloned().unwrap_or_default();
        if st.refresh.as_deref() != Some(given.as_str()) {
            st.rejected_refresh.push(given);
            return (
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_grant"}).to_string(),
            )
                .into_response();
        }
        let next = format!("rt-{n}-Yw2q");
        st.refresh = Some(next.clone());
        answer["refresh_token"] = json!(next);
    }
    let lifetime = st.lifetime.unwrap_or(TTL);
    st.tokens.insert(
        answer["access_token"].as_str().unwrap().to_string(),
        (Instant::now(), lifetime),
    );
    ([("content-type", "application/json")], answer.to_string()).into_response()
}

async fn login(State(s): State<Shared>, body: Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or_default();
    if v != json!({"user": "ada", "password": LOGIN_PASSWORD}) {
        return StatusCode::FORBIDDEN.into_response();
    }
    let mut st = s.lock().unwrap();
    st.serial += 1;
    let jwt = format!("jwt-{}-Pq4m", st.serial);
    st.tokens
        .insert(jwt.clone(), (Instant::now(), Duration::from_secs(3600)));
    let body = json!({"data": {"jwt": jwt, "ttl": "3600"}});
    ([("content-type", "application/json")], body.to_string()).into_response()
}

/// The API: which token a path wants, and whether the one given is good.
async fn api(State(s): State<Shared>, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path().to_string();
    let header = |h: &str| headers.get(h).map(|v| v.to_str().unwrap().to_string());
    let mut st = s.lock().unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("ada:{BASIC_PASSWORD}"));
    let given = match path.as_str() {
        "/items" => {
            header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
        }
        "/session-items" => {
            header("x-session").and_then(|a| a.strip_prefix("Token ").map(str::to_string))
        }
        "/basic-items" => header("authorization").filter(|a| *a == format!("Basic {basic}")),
        _ => None,
    };
    let good = match (&given, path.as_str()) {
        (Some(_), "/basic-items") => true,
        (Some(t), _) => {
            st.tokens
                .get(t)
                .is_some_and(|(at, life)| at.elapsed() < *life + GRACE)
                && !st.revoked.contains(t)
        }
        _ => false,
    };
    let status = if good && !st.refuse_all { 200 } else { 401 };
    st.api_hits.push(ApiHit {
        path,
        token: given,
        status,
    });
    if status == 401 {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body = json!({"items": [{"id": 1, "v": "a"}]});
    ([("content-type", "application/json")], body.to_string()).into_response()
}

impl Issuer {
    async fn start() -> Issuer {
        let state: Shared = Arc::default();
        let app = Router::new()
            .route("/token", axum::routing::post(token))
            .route("/login", axum::routing::post(login))
            .fallback(api)
            .with_state(state.clone());
        Issuer {
            base: serve(app).await,
            state,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Issued) -> T) -> T {
        f(&mut self.state.lock().unwrap())
    }

    fn token_hits(&self) -> Vec<TokenHit> {
        self.with(|s| s.token_hits.clone())
    }

    fn api_hits(&self) -> Vec<ApiHit> {
        self.with(|s| s.api_hits.clone())
    }

    fn unauthorized(&self) -> usize {
        self.api_hits().iter().filter(|h| h.status == 401).count()
    }

    /// A bridge on `/items` logging in with the client-credentials grant.
    fn oauth2_bridge(&self, extra: &str) -> BridgeYaml {
        BridgeYaml::new(&format!("{}/items", self.base))
            .source(&format!(
                "auth: {{oauth2: {{token_url: \"{}/token\", client_id: app-1, client_secret: \"{CLIENT_SECRET}\", scopes: [read, write]{extra}}}}}",
                self.base
            ))
            .timeout("5s")
            .sink("console")
    }
}

#[tokio::test]
async fn oauth2_tokens_are_fetched_once_and_renewed_ahead_of_expiry() {
    let iss = Issuer::start().await;
    let h = Harness::new();
    let b = h.bridge("graph", &iss.oauth2_bridge("").build());

    h.poll(&b).await.unwrap();
    h.poll(&b).await.unwrap();
    let hits = iss.token_hits();
    assert_eq!(hits.len(), 1, "one token for both polls");
    let t = &hits[0];
    assert_eq!(t.form["grant_type"], "client_credentials");
    assert_eq!(t.form["scope"], "read write");
    assert!(
        !t.form.contains_key("client_secret"),
        "basic client auth by default"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("app-1:{CLIENT_SECRET}"));
    assert_eq!(
        t.authorization.as_deref(),
        Some(format!("Basic {basic}").as_str())
    );

    // Poll on and on until two renewals, made unasked: the API never answers 401 (a client
    // renewing only on a 401 meets one once a token is past TTL + GRACE).
    eventually(2 * PATIENCE, "two renewals of the token", || async {
        if iss.token_hits().len() >= 3 {
            return Ok(());
        }
        h.poll(&b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        Err(format!("token requests: {:?}", iss.token_hits()))
    })
    .await;
    assert_eq!(iss.unauthorized(), 0, "{:?}", iss.api_hits());
    let at: Vec<Instant> = iss.token_hits().iter().map(|t| t.at).collect();
    for w in at.windows(2) {
        // Renewed at 90% of 2 s (1.8 s after it was asked for; `renew_after` holds the
        // fraction), not once per poll (every 50 ms here). The issuer notes a request when
        // it arrives, so a slow first answer on a busy machine shortens the gap it sees:
        // hence only 1 s is asked for.
        assert!(w[1] - w[0] >= Duration::from_secs(1), "{:?}", w[1] - w[0]);
    }
    assert!(iss.api_hits().len() > 3);
}

#[tokio::test]
async fn a_401_gets_one_new_token_and_one_retry_and_a_second_401_fails_the_poll() {
    let iss = Issuer::start().await;
    let h = Harness::new();
    // Tokens for an hour: none is renewed ahead of its time here, however slow the machine.
    iss.with(|s| s.lifetime = Some(Duration::from_secs(3600)));
    let b = h.bridge("graph", &iss.oauth2_bridge(", client_auth: post").build());
    h.poll(&b).await.unwrap();
    assert_eq!(iss.token_hits()[0].form["client_secret"], CLIENT_SECRET);
    assert_eq!(iss.token_hits()[0].authorization, None);

    // The token is revoked before its time: one renewal, one retry, the poll succeeds.
    iss.with(|s| s.revoked = s.tokens.keys().cloned().collect());
    h.poll(&b).await.unwrap();
    assert_eq!(iss.token_hits().len(), 2);
    let statuses: Vec<u16> = iss.api_hits().iter().map(|h| h.status).collect();
    assert_eq!(statuses, [200, 401, 200]);

    // Refused whatever the token: one renewal, one retry, then the poll fails as a 401.
    iss.with(|s| s.refuse_all = true);
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "http_status", "{e}");
    assert!(e.to_string().contains("401"), "{e}");
    assert_eq!(iss.token_hits().len(), 3);
    assert_eq!(iss.api_hits().len(), 5);
}

#[tokio::test]
async fn a_failed_token_request_fails_the_poll_with_reason_auth_and_no_secret() {
    let iss = Issuer::start().await;
    iss.with(|s| s.fail_with = Some(500));
    let h = Harness::new();
    let b = h.bridge("graph", &iss.oauth2_bridge("").build());
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "auth", "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("/token") && msg.contains("answered HTTP 500 (server_error)"),
        "{msg}"
    );
    assert!(
        !msg.contains(CLIENT_SECRET) && !msg.contains("did not work"),
        "{msg}"
    );
    assert!(iss.api_hits().is_empty(), "no request without a token");

    // The endpoint recovers: so does the bridge.
    iss.with(|s| s.fail_with = None);
    h.poll(&b).await.unwrap();
}

/// A token endpoint that redirects elsewhere: not followed, the credentials stay home.
#[tokio::test]
async fn a_token_request_is_not_redirected_to_another_origin() {
    let iss = Issuer::start().await;
    let elsewhere = Upstream::start().await;
    let token = Upstream::start().await;
    token.set_answer(
        Answer::new(307, "text/plain", "").header("location", &format!("{}/steal", elsewhere.base)),
    );
    let h = Harness::new();
    let yaml = BridgeYaml::new(&format!("{}/items", iss.base))
        .source(&format!(
            "auth: {{oauth2: {{token_url: \"{}/token\", client_id: app-1, client_secret: \"{CLIENT_SECRET}\"}}}}",
            token.base
        ))
        .sink("console");
    let b = h.bridge("moved", &yaml.build());
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "auth", "{e}");
    assert!(e.to_string().contains("another origin"), "{e}");
    assert_eq!(token.hits().len(), 1);
    assert!(elsewhere.hits().is_empty() && iss.api_hits().is_empty());
}

#[tokio::test]
async fn a_login_endpoint_gives_the_token_for_a_header_of_its_own() {
    let iss = Issuer::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&format!("{}/session-items", iss.base))
        .source(&format!(
            "auth: {{login: {{url: \"{}/login\", body: {{user: ada, password: \"{LOGIN_PASSWORD}\"}}, token: \"$.data.jwt\", expires_in: \"$.data.ttl\", header: X-Session, prefix: \"Token \"}}}}",
            iss.base
        ))
        .sink("console");
    let b = h.bridge("session", &yaml.build());
    h.poll(&b).await.unwrap();
    h.poll(&b).await.unwrap();
    let api = iss.api_hits();
    assert_eq!(api.len(), 2);
    assert!(
        api.iter().all(|h| h.path == "/session-items"
            && h.status == 200
            && h.token.as_deref() == Some("jwt-1-Pq4m")),
        "{api:?}"
    );
    // A wrong password: the login fails the poll, with reason `auth`.
    let bad = yaml.build().replace(LOGIN_PASSWORD, "nope");
    let b = h.bridge("session2", &bad);
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "auth");
    assert!(e.to_string().contains("answered HTTP 403"), "{e}");
}

#[tokio::test]
async fn basic_auth_sends_the_credentials_and_a_wrong_password_is_a_401() {
    let iss = Issuer::start().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&format!("{}/basic-items", iss.base))
        .source(&format!(
            "auth: {{basic: {{username: ada, password: \"{BASIC_PASSWORD}\"}}}}"
        ))
        .sink("console");
    let b = h.bridge("basic", &yaml.build());
    h.poll(&b).await.unwrap();
    assert_eq!(iss.api_hits()[0].status, 200);
    let b = h.bridge("basic2", &yaml.build().replace(BASIC_PASSWORD, "wrong"));
    let e = h.poll(&b).await.unwrap_err();
    assert_eq!(e.kind(), "http_status");
    // Nothing to renew: no second try.
    assert_eq!(iss.api_hits().len(), 2);
}

/// The real binary, twice over one store: the refresh token the server rotated is the one
/// the second run uses (the configured one is void by then).
#[tokio::test]
async fn a_rotated_refresh_token_survives_a_restart() {
    let iss = Issuer::start().await;
    iss.with(|s| s.refresh = Some("rt-0-conf".into()));
    let dir = tempfile::tempdir().unwrap();
    iss.oauth2_bridge(", refresh_token: rt-0-conf")
        .every("500ms")
        .write(dir.path(), "rot");
    let ok_with_new_token = |after: u64| {
        let api = iss.api_hits();
        let used = iss.with(|s| s.serial);
        api.iter()
            .any(|h| h.status == 200 && h.token.as_deref() == Some(&format!("at-{used}-Zx7p")))
            && used > after
    };

    let d = Daemon::start(dir.path(), &[]);
    until("a poll with a token from the refresh grant", || {
        ok_with_new_token(0)
    })
    .await;
    let first_run = iss.with(|s| s.serial);
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    let logs1 = err.join("\n");
    assert!(logs1.contains("kept the new refresh token"), "{logs1}");

    let d = Daemon::start(dir.path(), &[]);
    until("a poll of the second run with a new token", || {
        ok_with_new_token(first_run)
    })
    .await;
    let (_, _, err) = d.terminate().await;
    let logs2 = err.join("\n");
    assert_eq!(
        iss.with(|s| s.rejected_refresh.clone()),
        Vec::<String>::new(),
        "{logs2}"
    );
    let used: Vec<String> = iss
        .token_hits()
        .iter()
        .map(|t| t.form["refresh_token"].clone())
        .collect();
    assert_eq!(used[0], "rt-0-conf");
    assert!(
        used[1..]
            .iter()
            .all(|r| r.starts_with("rt-") && r != "rt-0-conf"),
        "{used:?}"
    );
    for l in [&logs1, &logs2] {
        for secret in ["rt-0-conf", "-Yw2q", "-Zx7p", CLIENT_SECRET] {
            assert!(!l.contains(secret), "`{secret}` in the logs:\n{l}");
        }
    }
}

#[tokio::test]
async fn a_bridge_proxy_carries_its_source_and_token_requests() {
    let iss = Issuer::start().await;
    let proxy = ForwardProxy::start().await;
    let h = Harness::new();
    let with_creds = proxy.url.replace("http://", "http://px:px-pw-9Lm@");
    let yaml = iss
        .oauth2_bridge("")
        .source(&format!("proxy: \"{with_creds}\""));
    let b = h.bridge("proxied", &yaml.build());
    h.poll(&b).await.unwrap();
    let seen = proxy.seen();
    let targets: Vec<&str> = seen.iter().map(|p| p.target.as_str()).collect();
    assert_eq!(
        targets,
        [format!("{}/token", iss.base), format!("{}/items", iss.base)],
    );
    let creds = base64::engine::general_purpose::STANDARD.encode("px:px-pw-9Lm");
    assert!(
        seen.iter()
            .all(|p| p.proxy_authorization.as_deref() == Some(format!("Basic {creds}").as_str()))
    );
    assert!(b.secrets.iter().any(|s| s == "px-pw-9Lm"));
    // A bridge without `proxy` goes straight there.
    let b = h.bridge("direct", &iss.oauth2_bridge("").build());
    h.poll(&b).await.unwrap();
    assert_eq!(proxy.seen().len(), 2);
}

#[tokio::test]
async fn a_bridge_proxy_may_be_socks5() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let (socks, targets) = socks5_proxy().await;
    let h = Harness::new();
    let yaml = BridgeYaml::new(&up.url())
        .source(&format!("proxy: \"{socks}\""))
        .sink("console");
    let b = h.bridge("socks", &yaml.build());
    h.poll(&b).await.unwrap();
    assert_eq!(up.hits().len(), 1);
    let authority = up.base.trim_start_matches("http://").to_string();
    assert_eq!(*targets.lock().unwrap(), [authority]);
}

/// `HTTP_PROXY` in the daemon's environment (not this test process's: tests share it) takes
/// the sources there; `NO_PROXY` naming the host keeps them away.
#[tokio::test]
async fn the_proxy_variables_apply_without_a_bridge_proxy_and_no_proxy_bypasses() {
    let proxy = ForwardProxy::start().await;
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("500ms")
        .sink("console")
        .write(dir.path(), "env");
    let d = Daemon::start(dir.path(), &[("HTTP_PROXY", &proxy.url), ("NO_PROXY", "")]);
    until("a poll through the proxy", || !up.hits().is_empty()).await;
    d.terminate().await;
    assert!(
        proxy.seen().iter().any(|p| p.target == up.url()),
        "{:?}",
        proxy.seen()
    );

    let direct = Upstream::start().await;
    direct.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&direct.url())
        .every("500ms")
        .sink("console")
        .write(dir.path(), "env");
    let env = [
        ("http_proxy", proxy.url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let d = Daemon::start(dir.path(), &env);
    until("two polls straight to the source", || {
        direct.hits().len() >= 2
    })
    .await;
    d.terminate().await;
    assert!(
        !proxy.seen().iter().any(|p| p.target == direct.url()),
        "{:?}",
        proxy.seen()
    );
}

#[test]
fn check_names_each_bad_auth_and_proxy_key_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    let base = "schedule: {every: 5m}\nsource:\n  url: https://api.example.com/x\n";
    let tail = "items: {select: \"$[*]\", key: \"$.id\"}\nsinks: [{url: console}]\n";
    let cases = [
        (
            "  auth: {basic: {username: a, password: b}, login: {url: \"https://x.example/\", token: \"$.t\"}}\n",
            "a.yaml:4:9: source.auth: give exactly one of `oauth2`, `login` or `basic`",
        ),
        (
            "  auth: {oauth2: {token_url: \"https://x.example/t\", client_id: a, client_secret: b, client_auth: header}}\n",
            "a.yaml:4:98: source.auth.oauth2.client_auth: unknown variant `header`, expected `basic` or `post`",
        ),
        (
            "  auth: {login: {url: \"https://x.example/\", token: \"$[\"}}\n",
            "a.yaml:4:52: source.auth.login.token: JSONPath `$[` does not parse",
        ),
        (
            "  auth: {oauth2: {token_url: \"ftp://x.example/t\", client_id: a, client_secret: b}}\n",
            "a.yaml:4:30: source.auth.oauth2.token_url: scheme `ftp` is not http or https",
        ),
        (
            "  auth: {oauth2: {token_url: \"https://x.example/t\", client_id: a}}\n",
            "a.yaml:4:18: source.auth.oauth2: `client_auth: basic` needs a `client_secret`",
        ),
        (
            "  headers: {Authorization: \"Bearer x\"}\n  auth: {basic: {username: a, password: bcd}}\n",
            "a.yaml:4:28: source.headers.Authorization: `source.auth` sets this header",
        ),
        (
            "  auth: {login: {url: \"https://x.example/\", token: \"$.t\", header: \"bad header\"}}\n",
            "a.yaml:4:67: source.auth.login.header: `bad header` is not a valid header name",
        ),
        (
            "  proxy: \"ftp://user:pxsecret@proxy.example:21\"\n",
            "a.yaml:4:10: source.proxy: `ftp://user:***@proxy.example/` is not a proxy URL",
        ),
        (
            "  proxy: \"not a url\"\n",
            "a.yaml:4:10: source.proxy: `not a url` is not a URL",
        ),
        (
            "  auth: {oauth2: {token_url: \"https://x.example/t\", client_id: a, secret: b}}\n",
            "a.yaml:4:67: source.auth.oauth2: unknown key `secret`",
        ),
    ];
    let env = pollhook::config::Env::fixed(&[], None);
    let mut wrong = Vec::new();
    for (source, want) in cases {
        std::fs::write(dir.path().join("a.yaml"), format!("{base}{source}{tail}")).unwrap();
        let problems = pollhook::config::load_dir(dir.path(), &env).unwrap_err();
        let got: Vec<String> = problems
            .0
            .iter()
            .map(|p| {
                p.to_string()
                    .replace(&format!("{}/", dir.path().display()), "")
            })
            .collect();
        if !got.iter().any(|g| g.starts_with(want)) {
            wrong.push(format!("want {want}\ngot  {}", got.join("\n     ")));
        }
        assert!(!got.concat().contains("pxsecret"), "{got:?}");
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Changing how a bridge logs in, or its proxy, is not a new meaning: no re-baseline.
#[test]
fn auth_and_proxy_are_not_part_of_the_fingerprint() {
    let h = Harness::new();
    let plain = BridgeYaml::new("https://api.example.com/x").sink("console");
    let a = h.bridge("b", &plain.build());
    let with = plain
        .clone()
        .source("auth: {basic: {username: a, password: pw-123}}")
        .source("proxy: \"socks5://127.0.0.1:1080\"");
    let b = h.bridge("b", &with.build());
    assert_eq!(a.fingerprint, b.fingerprint);
    assert!(b.source.auth.is_some() && b.source.proxy.is_some());
}
