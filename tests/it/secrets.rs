//! No secret reaches an operator's screen (docs/configuration.md#secrets): not in logs at debug
//! level, `check`, `status`, the admin API, nor any error; and a file that is not a bridge is
//! refused without being quoted.

use crate::support::*;
use serde_json::json;

/// Runs the binary with extra environment; (exit code, stdout, stderr). Async, so that the
/// test's own servers go on answering meanwhile.
async fn cli_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::from(cli_command(args));
    cmd.env_remove("JOURNAL_STREAM")
        .env("RUST_LOG", "debug")
        .envs(env.iter().copied());
    output_of(cmd.output().await.unwrap())
}

async fn get(admin: &str, path: &str) -> String {
    get_text(&format!("http://{admin}{path}")).await.1
}

/// Each secret with the spellings it takes in a URL (percent- or form-encoded).
fn spellings(s: &str) -> Vec<String> {
    let form: String = url::form_urlencoded::byte_serialize(s.as_bytes()).collect();
    let mut u = url::Url::parse("http://h/").unwrap();
    u.set_path(s);
    let path = u.path()[1..].to_string();
    let mut v = vec![s.to_string(), form, path, s.replace('+', " ")];
    v.sort();
    v.dedup();
    v
}

/// Every (channel, secret) where a secret shows.
fn leaks(channels: &[(String, String)], secrets: &[(&str, String)]) -> Vec<String> {
    let mut found = Vec::new();
    for (channel, text) in channels {
        for (what, secret) in secrets {
            for spelling in spellings(secret) {
                if let Some(i) = text.find(&spelling) {
                    let line = text[..i].rsplit('\n').next().unwrap_or_default();
                    let end = text[i..].find('\n').map_or(text.len(), |e| i + e);
                    found.push(format!(
                        "{what} ({spelling}) in {channel}: {line}{}",
                        &text[i..end]
                    ));
                }
            }
        }
    }
    found
}

/// The secrets of the sweep, by where they live.
struct Planted {
    dir: tempfile::TempDir,
    env: Vec<(&'static str, String)>,
    secrets: Vec<(&'static str, String)>,
}

impl Planted {
    fn env(&self) -> Vec<(&str, &str)> {
        self.env.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
}

/// Writes the secrets where `${file:…}` and `${credential:…}` find them, and the bridges:
/// `sweep` (secrets in every part of its source and sinks), `down` (a source that refuses
/// connections, secrets in its URL) and, in `bad/`, files whose invalid fields come from
/// secrets and a symlink to a shadow-like file; `authed` logs in with OAuth2 at `tokens`
/// (its refresh token rotated, its first token request refused with the secret in the body),
/// and `down` with basic auth through a proxy that is not there; `session` logs in at
/// `logins` with a password in the body, for a token in a header of its own.
fn plant(up: &Upstream, rx: &Receiver, tokens: &Upstream, logins: &Upstream) -> Planted {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    for d in ["bridges", "bad", "creds", "data"] {
        std::fs::create_dir_all(p(d)).unwrap();
    }
    let secrets: Vec<(&'static str, String)> = vec![
        ("source path from ${ENV}", "swPath-env-81c2".into()),
        ("source userinfo password", "lit-pw-sw93a".into()),
        ("source query on the mask list", "lit-tok-sw7d1".into()),
        (
            "source query off the list from ${file:}",
            "sw file/Acc+9Q=".into(),
        ),
        ("header from ${credential:}", "cred-key-sw55e".into()),
        ("Authorization header", "lit-auth-sw2b0".into()),
        ("plain header from ${ENV}", "env-hdr-sw6f4".into()),
        ("body from ${ENV}", "env-body-sw0c9".into()),
        ("sink path", "lit-sinkpath-sw4e7".into()),
        ("sink query off the list", "lit-room-sw8a2".into()),
        ("sink token from ${ENV}", "env-sinktok-sw1d3".into()),
        ("sink plain header from ${ENV}", "env-sinkhdr-sw2j5".into()),
        (
            "sink signing secret from ${credential:}",
            "cred-sign-sw3c8".into(),
        ),
        ("dead sink path from ${ENV}", "env-deadsink-sw9b1".into()),
        ("down source path from ${ENV}", "env-downpath-sw7a4".into()),
        ("down source key", "lit-downkey-sw2e6".into()),
        ("down source access from ${ENV}", "env-downacc-sw5c2".into()),
        (
            "invalid field from ${file:}",
            "root:$6$swShadow$Hh8e:19000:0:99999:7:::".into(),
        ),
        ("invalid field from ${ENV}", "inv-env-sw4d8".into()),
        ("invalid field from ${credential:}", "inv-cred-sw6a1".into()),
        ("reload field from ${ENV}", "rld-env-sw8c5".into()),
        ("oauth2 client secret, written out", "lit-cs-sw6q2".into()),
        ("oauth2 refresh token from ${ENV}", "env-rt-sw8m4".into()),
        ("access token the endpoint issued", "iss-at-sw2v7".into()),
        ("refresh token the endpoint rotated", "iss-rt-sw5n3".into()),
        ("basic password, written out", "lit-basicpw-sw1x9".into()),
        ("proxy password, written out", "lit-pxpw-sw4t6".into()),
        ("login password, written out", "lit-loginpw-sw3k8".into()),
        (
            "session token the login endpoint issued",
            "iss-jwt-sw7r2".into(),
        ),
        // Any part of the shadow-like file (serde once quoted its first line as a key).
        ("a piece of the file behind a symlink", "$swShadow$".into()),
    ];
    let s = |what: &str| secrets.iter().find(|(w, _)| *w == what).unwrap().1.clone();
    std::fs::write(
        p("access"),
        format!("{}\n", s("source query off the list from ${file:}")),
    )
    .unwrap();
    std::fs::write(
        p("shadow"),
        format!(
            "{}\nbin:*:19000:0:99999:7:::\n",
            s("invalid field from ${file:}")
        ),
    )
    .unwrap();
    std::fs::write(p("creds/apikey"), s("header from ${credential:}")).unwrap();
    std::fs::write(
        p("creds/sign"),
        s("sink signing secret from ${credential:}"),
    )
    .unwrap();
    std::fs::write(p("creds/badsize"), s("invalid field from ${credential:}")).unwrap();
    let env: Vec<(&'static str, String)> = vec![
        ("PATH_SECRET", s("source path from ${ENV}")),
        ("TRACE_SECRET", s("plain header from ${ENV}")),
        ("BODY_SECRET", s("body from ${ENV}")),
        ("SINK_TOKEN", s("sink token from ${ENV}")),
        ("SINK_TRACE", s("sink plain header from ${ENV}")),
        ("SINK2_PATH", s("dead sink path from ${ENV}")),
        ("DOWN_PATH", s("down source path from ${ENV}")),
        ("DOWN_ACCESS", s("down source access from ${ENV}")),
        ("INVALID_ENV", s("invalid field from ${ENV}")),
        ("RELOAD_ENV", s("reload field from ${ENV}")),
        ("REFRESH_TOKEN", s("oauth2 refresh token from ${ENV}")),
        (
            "CREDENTIALS_DIRECTORY",
            p("creds").to_string_lossy().into_owned(),
        ),
    ];
    let authority = up.base.trim_start_matches("http://");
    let sweep = format!(
        r#"schedule:
  every: 500ms
source:
  url: "http://user:{pw}@{authority}/items/${{PATH_SECRET}}?api_token={tok}&access=${{file:{access}}}&page=1"
  method: POST
  headers:
    Authorization: "Bearer {auth}"
    X-Api-Key: "${{credential:apikey}}"
    X-Trace: "${{TRACE_SECRET}}"
  body: {{query: "${{BODY_SECRET}}"}}
  timeout: 5s
items:
  select: "$.items[*]"
  key: "$.id"
emit:
  first_poll: emit
sinks:
  - url: "{rx}/hook/{sinkpath}?token=${{SINK_TOKEN}}&room={room}"
    secret: "${{credential:sign}}"
    headers: {{X-Sink-Trace: "${{SINK_TRACE}}"}}
    retry: [100ms, 100ms]
  - url: "http://127.0.0.1:{dead}/x/${{SINK2_PATH}}"
    signature: none
    timeout: 1s
    retry: [100ms]
"#,
        pw = s("source userinfo password"),
        tok = s("source query on the mask list"),
        access = p("access").display(),
        auth = s("Authorization header"),
        rx = rx.base,
        sinkpath = s("sink path"),
        room = s("sink query off the list"),
        dead = free_port(),
    );
    std::fs::write(p("bridges/sweep.yaml"), sweep).unwrap();
    let down = format!(
        r#"schedule: {{every: 500ms}}
source:
  url: "http://127.0.0.1:{closed}/feed/${{DOWN_PATH}}?key={key}&access=${{DOWN_ACCESS}}"
  auth: {{basic: {{username: ops, password: "{basic}"}}}}
  proxy: "http://px:{pxpw}@127.0.0.1:{closed}"
  timeout: 2s
items: {{select: "$.items[*]", key: "$.id"}}
sinks: [{{url: console}}]
"#,
        closed = free_port(),
        key = s("down source key"),
        basic = s("basic password, written out"),
        pxpw = s("proxy password, written out"),
    );
    std::fs::write(p("bridges/down.yaml"), down).unwrap();
    tokens.then(Answer::new(
        401,
        "application/json",
        &json!({"error": "invalid_client",
            "error_description": format!("{} is not it", s("oauth2 client secret, written out"))})
        .to_string(),
    ));
    tokens.route(
        "/token",
        Answer::json(
            &json!({"access_token": s("access token the endpoint issued"),
            "refresh_token": s("refresh token the endpoint rotated"), "expires_in": 1}),
        ),
    );
    tokens.set_json(&json!({"items": [{"id": 1}]}));
    let authed = format!(
        r#"schedule: {{every: 500ms}}
source:
  url: "{base}/items"
  auth:
    oauth2:
      token_url: "{base}/token"
      client_id: sweep-app
      client_secret: {cs}
      refresh_token: "${{REFRESH_TOKEN}}"
items: {{select: "$.items[*]", key: "$.id"}}
sinks: [{{url: console}}]
"#,
        base = tokens.base,
        cs = s("oauth2 client secret, written out"),
    );
    std::fs::write(p("bridges/authed.yaml"), authed).unwrap();
    logins.route(
        "/login",
        Answer::json(&json!({"jwt": s("session token the login endpoint issued")})),
    );
    logins.set_json(&json!({"items": [{"id": 1}]}));
    let session = format!(
        r#"schedule: {{every: 500ms}}
source:
  url: "{base}/items"
  auth:
    login:
      url: "{base}/login"
      body: {{user: ops, password: "{pw}"}}
      token: "$.jwt"
      header: X-Session
      prefix: "Token "
items: {{select: "$.items[*]", key: "$.id"}}
sinks: [{{url: console}}]
"#,
        base = logins.base,
        pw = s("login password, written out"),
    );
    std::fs::write(p("bridges/session.yaml"), session).unwrap();

    // Invalid fields fed from each kind of secret, whole and embedded; and a file that is not
    // a bridge at all.
    let bad = format!(
        r#"schedule:
  every: "${{file:{shadow}}}"
  jitter: "5${{INVALID_ENV}}"
source:
  url: "http://127.0.0.1:1/x"
  timeout: "${{INVALID_ENV}}"
  max_body: "${{credential:badsize}}"
items: {{select: "$[${{INVALID_ENV}}", key: "$.id"}}
sinks: [{{url: "${{INVALID_ENV}}", signature: none}}]
"#,
        shadow = p("shadow").display()
    );
    std::fs::write(p("bad/bad.yaml"), bad).unwrap();
    std::os::unix::fs::symlink(p("shadow"), p("bad/shadow.yaml")).unwrap();
    Planted { dir, env, secrets }
}

/// The sweep: everything that can fail fails (an upstream 500 and a body that is not JSON, a
/// source that refuses connections, a receiver that answers 500 until an event is
/// dead-lettered, a sink nobody listens on, a reload refused for a field fed from a secret),
/// everything that can succeed succeeds; every output channel is gathered and searched for
/// every secret in every spelling a URL gives it.
#[tokio::test]
async fn no_secret_reaches_any_output_channel() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.then(Answer::new(500, "text/plain", "upstream broke"));
    up.then(Answer::new(200, "text/html", "<html>not json</html>"));
    up.set_json(&json!({"items": [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]}));
    for _ in 0..3 {
        rx.answer(500, &[]);
    }
    let tokens = Upstream::start().await;
    let logins = Upstream::start().await;
    let planted = plant(&up, &rx, &tokens, &logins);
    let root = planted.dir.path().to_path_buf();
    let admin = format!("127.0.0.1:{}", free_port());
    let mut env = planted.env();
    env.push(("RUST_LOG", "debug"));
    let d = Daemon::start_with(&root, &env, &admin);

    until(
        "three events dead-lettered (one on the 500s, two on the dead sink)",
        || logs(&d).matches("event dead-lettered").count() >= 3,
    )
    .await;
    until("a delivery and failed polls of both bridges", || {
        let l = logs(&d);
        rx.received().len() >= 4
            && l.contains(": failed (")
            && l.lines()
                .any(|x| x.contains("bridge=down") && x.contains("poll down: failed ("))
            && l.lines()
                .any(|x| x.contains("bridge=sweep") && x.contains("not JSON"))
            && l.lines().any(|x| x.contains("bridge=authed") && x.contains("reason=auth"))
            && tokens.hits().iter().filter(|h| h.uri == "/items").count() >= 2
            // The rotated refresh token used: a 401, the configured one, the rotated one.
            && tokens.hits().iter().filter(|h| h.uri == "/token").count() >= 3
            && logins.hits().iter().filter(|h| h.uri == "/items").count() >= 2
    })
    .await;

    // A reload refused for a field fed from a secret: the running set stays.
    std::fs::write(
        root.join("bridges/reload.yaml"),
        "schedule: {every: \"${RELOAD_ENV}\"}\nsource: {url: \"http://127.0.0.1:1/\"}\nitems: {select: \"$\"}\nsinks: [{url: console}]\n",
    )
    .unwrap();
    d.signal("-HUP");
    until("the reload refused", || logs(&d).contains("reload refused")).await;
    std::fs::remove_file(root.join("bridges/reload.yaml")).unwrap();

    let mut channels: Vec<(String, String)> = Vec::new();
    for path in ["/healthz", "/metrics", "/v1/bridges", "/v1/dead-letters"] {
        channels.push((format!("GET {path}"), get(&admin, path).await));
    }
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["dead-letters", "list"],
        vec!["dead-letters", "list", "--json"],
    ] {
        let mut a = args.clone();
        a.extend(["--admin", &admin]);
        let (code, out, err) = cli(&a);
        assert_eq!(code, 0, "{args:?}: {err}");
        channels.push((format!("pollhook {}", args.join(" ")), out + &err));
    }
    let (code, stdout, stderr) = d.terminate().await;
    assert_eq!(code, 0);
    channels.push(("daemon logs".into(), stderr.join("\n")));
    channels.push(("daemon stdout".into(), stdout.join("\n")));

    // One-shot commands, without the daemon: errors of a poll, of `check` and of `run`.
    let closed = format!("127.0.0.1:{}", free_port());
    let bridges = root.join("bridges");
    let bad = root.join("bad");
    let scratch = root.join("scratch");
    up.set(500, "text/plain", "broken again");
    for args in [vec!["poll", "down"], vec!["poll", "sweep"]] {
        let mut a = args.clone();
        a.extend(["--bridges", bridges.to_str().unwrap(), "--data"]);
        a.extend([scratch.to_str().unwrap(), "--admin", &closed]);
        let (code, out, err) = cli_env(&a, &env).await;
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        channels.push((format!("pollhook {}", args.join(" ")), out + &err));
    }
    // What each sink would get, headers and bodies, names every sink by its origin only.
    up.set_json(&json!({"items": [{"id": 1, "v": "a"}]}));
    let mut a = vec![
        "poll",
        "sweep",
        "--render",
        "--bridges",
        bridges.to_str().unwrap(),
    ];
    a.extend(["--data", scratch.to_str().unwrap(), "--admin", &closed]);
    let (code, out, err) = cli_env(&a, &env).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("webhook-signature: v1,"), "{out}");
    // A sink header whose name says nothing, its value from `${…}`: masked all the same.
    assert!(out.contains("x-sink-trace: ***"), "{out}");
    channels.push(("pollhook poll sweep --render".into(), out + &err));
    // A test event to each sink, without the daemon: the dead one fails, named by origin.
    let a = [
        "send-test",
        "sweep",
        "--bridges",
        bridges.to_str().unwrap(),
        "--admin",
        &closed,
    ];
    let (code, out, err) = cli_env(&a, &env).await;
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.lines().count(), 2, "{out}{err}");
    channels.push(("pollhook send-test sweep".into(), out + &err));
    let (code, out, err) = cli_env(&["check", bridges.to_str().unwrap()], &env).await;
    assert_eq!((code, out.as_str()), (0, "ok: 4 bridges\n"), "{err}");
    let (code, out, err) = cli_env(&["check", bad.to_str().unwrap()], &env).await;
    assert_eq!(code, 1);
    let check = out + &err;
    channels.push(("pollhook check bad/".into(), check.clone()));
    let mut run_args = vec!["run", "--admin", "off", "--bridges", bad.to_str().unwrap()];
    run_args.extend(["--data", scratch.to_str().unwrap()]);
    let (code, out, err) = cli_env(&run_args, &env).await;
    assert_eq!(code, 1);
    let run = out + &err;
    channels.push(("pollhook run bad/".into(), run.clone()));

    // The secrets were live: the upstream and the receiver got them.
    let hit = up.hits().into_iter().next().unwrap();
    let secret = |what: &str| {
        planted
            .secrets
            .iter()
            .find(|(w, _)| *w == what)
            .unwrap()
            .1
            .clone()
    };
    assert!(
        hit.uri.contains(&secret("source path from ${ENV}")),
        "{}",
        hit.uri
    );
    assert_eq!(
        hit.header("x-api-key"),
        Some(secret("header from ${credential:}").as_str())
    );
    assert_eq!(
        hit.header("x-trace"),
        Some(secret("plain header from ${ENV}").as_str())
    );
    assert!(String::from_utf8_lossy(&hit.body).contains(&secret("body from ${ENV}")));
    assert!(
        rx.received()
            .iter()
            .any(|r| verify_standard(&secret("sink signing secret from ${credential:}"), r))
    );
    let bearer = format!("Bearer {}", secret("access token the endpoint issued"));
    assert!(
        tokens
            .hits()
            .iter()
            .any(|h| h.header("authorization") == Some(&bearer))
    );
    let session = format!(
        "Token {}",
        secret("session token the login endpoint issued")
    );
    assert!(
        logins
            .hits()
            .iter()
            .any(|h| h.header("x-session") == Some(&session))
    );
    let forms: Vec<String> = tokens
        .hits()
        .iter()
        .filter(|h| h.uri == "/token")
        .map(|h| String::from_utf8_lossy(&h.body).into_owned())
        .collect();
    assert!(
        forms
            .iter()
            .any(|f| f.contains("refresh_token=iss-rt-sw5n3")),
        "{forms:?}"
    );

    // Each channel was exercised, so that the search below means something.
    let text = |name: &str| {
        channels
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, t)| t.clone())
            .unwrap()
    };
    let l = text("daemon logs");
    for want in [
        " DEBUG ",
        "poll down: failed (",
        "answered HTTP 500",
        "not JSON",
        "delivery failed",
        "event dead-lettered",
        "created=2",
        "reload refused",
        "sink=http://127.0.0.1:",
        "answered HTTP 401 (invalid_client)",
        "kept the new refresh token",
    ] {
        assert!(l.contains(want), "no `{want}` in the logs:\n{l}");
    }
    assert!(l.contains("/…"), "{l}");
    assert!(
        l.lines().any(|x| x.contains("bridge=down")
            && x.contains("poll down: failed (")
            && x.contains("***")),
        "{l}"
    );
    let b = text("GET /v1/bridges");
    assert!(
        b.contains("\"sweep\"") && b.contains("/items/***") && b.contains("access=***"),
        "{b}"
    );
    assert!(b.contains(&format!("{}/…", rx.base)), "{b}");
    for (channel, want) in [
        ("GET /v1/dead-letters", "\"last_error\":\"HTTP 500\""),
        ("GET /metrics", "pollhook_"),
        ("pollhook status", "last error"),
        ("pollhook status --json", "\"bridges\""),
        ("pollhook dead-letters list", "HTTP 500"),
        ("pollhook poll down", "127.0.0.1"),
        ("pollhook poll sweep", "HTTP 500"),
    ] {
        let t = text(channel);
        assert!(t.contains(want), "no `{want}` in {channel}:\n{t}");
    }
    assert!(text("GET /v1/dead-letters").matches("\"event_id\"").count() >= 3);
    assert!(check.matches("bad duration `***`").count() >= 2, "{check}");
    assert!(check.contains("bad duration `5***`"), "{check}");
    assert!(check.contains("bad size `***`"), "{check}");
    assert!(check.contains("shadow.yaml: not a bridge file"), "{check}");
    assert!(run.contains("refusing to start"), "{run}");

    let found = leaks(&channels, &planted.secrets);
    assert!(found.is_empty(), "secrets shown:\n{}", found.join("\n"));
}

/// The loader itself: each kind of validation message, for a value fed from `${…}`, whole or
/// in part, quotes `***` where the value stood and keeps its place.
#[test]
fn validation_messages_mask_interpolated_values() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cred"), "cred-5Xq\n").unwrap();
    let env = pollhook::config::Env::fixed(
        &[("S", "s3cr-Et7"), ("N", "ab"), ("Z", "00")],
        Some(dir.path()),
    );
    let good = "schedule:\n  every: 5m\nsource:\n  url: https://api.example.com/x\nitems:\n  select: \"$[*]\"\n  key: \"$.id\"\nsinks:\n  - url: console\n";
    let cases: &[(&str, &str, &str)] = &[
        (
            "every: 5m",
            "every: \"${S}\"",
            "2:10: schedule.every: bad duration `***`; write e.g.",
        ),
        (
            "every: 5m",
            "every: \"1${N}\"",
            "2:10: schedule.every: bad duration `1***`; write e.g.",
        ),
        (
            "every: 5m",
            "every: \"${credential:cred}\"",
            "2:10: schedule.every: bad duration `***`;",
        ),
        (
            "every: 5m",
            "every: \"1${Z}ms\"",
            "2:10: schedule.every: `1***ms` is out of range",
        ),
        (
            "every: 5m",
            "cron: \"0 ${S} * * *\"",
            "2:9: schedule.cron: `0 *** * * *` is not a valid cron expression",
        ),
        (
            "\"$[*]\"",
            "\"$[${S}\"",
            "6:11: items.select: JSONPath `$[***` does not parse",
        ),
        (
            "https://api.example.com/x",
            "\"${S}\"",
            "4:8: source.url: `***` is not a URL",
        ),
        (
            "https://api.example.com/x",
            "\"${S}://h/x\"",
            "4:8: source.url: `***://h/x` is not an http or https URL",
        ),
        (
            "url: console",
            "url: \"ftp${N}://h\"",
            "9:10: sinks[0].url: `ftp***://h` is not an http or https URL",
        ),
        (
            "url: https://api.example.com/x",
            "url: https://x\n  max_body: \"${S}\"",
            "5:13: source.max_body: bad size `***`",
        ),
        (
            "schedule:",
            "name: \"${N}\"\nschedule:",
            "1:7: name: a bridge name cannot come from `${…}`",
        ),
    ];
    for (from, to, want) in cases {
        let text = good.replacen(from, to, 1);
        std::fs::write(dir.path().join("a.yaml"), &text).unwrap();
        let got = pollhook::config::load_paths(&[dir.path().join("a.yaml")], &env)
            .map(|_| String::from("ok"))
            .unwrap_or_else(|p| p.to_string());
        let got = got.replace(&format!("{}/a.yaml:", dir.path().display()), "");
        assert!(
            got.starts_with(want),
            "got  {got}\nwant {want}\nfor\n{text}"
        );
        for secret in ["s3cr-Et7", "cred-5Xq", "Et7", "5Xq"] {
            assert!(!got.contains(secret), "{got}");
        }
    }
}

/// `check` on a directory holding things that are not bridges: each is named with what it
/// is, nothing of its content quoted, and nesting past the limit is refused at once.
#[test]
fn files_that_are_not_bridges_are_named_and_never_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::create_dir_all(p("bridges")).unwrap();
    std::fs::create_dir_all(p("elsewhere")).unwrap();
    std::fs::write(
        p("shadow"),
        "root:$6$qQshadow$Zz9:19000:0:99999:7:::\nbin:*:19000::::::\n",
    )
    .unwrap();
    std::fs::write(p("passwd.yml"), "rootpw: hunter2-qQ\nuser: qQadmin\n").unwrap();
    std::fs::write(p("list.yml"), "- qQitem\n").unwrap();
    let link = |target: &str, name: &str| {
        std::os::unix::fs::symlink(p(target), p(&format!("bridges/{name}"))).unwrap()
    };
    link("shadow", "a-shadow.yaml");
    link("passwd.yml", "b-passwd.yaml");
    link("list.yml", "c-list.yaml");
    link("nowhere", "d-dangling.yaml");
    link("elsewhere", "e-dir.yaml");
    let fifo = std::ffi::CString::new(p("bridges/f-fifo.yaml").to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let n = 100_000;
    std::fs::write(
        p("bridges/g-deep.yaml"),
        format!("name: deep\nsinks: {}{}\n", "[".repeat(n), "]".repeat(n)),
    )
    .unwrap();

    let started = std::time::Instant::now();
    let (code, out, err) = cli(&["check", p("bridges").to_str().unwrap()]);
    let took = started.elapsed();
    assert_eq!(code, 1, "{out}{err}");
    let root = format!("{}/", p("bridges").display());
    let lines: Vec<String> = err.lines().map(|l| l.replace(&root, "")).collect();
    let target = |n: &str| p(n).display().to_string();
    assert_eq!(
        lines,
        [
            "a-shadow.yaml: not a bridge file: most of its top-level keys are not bridge keys (name, description, schedule, source, items, emit, sinks)".to_string(),
            "b-passwd.yaml: not a bridge file: most of its top-level keys are not bridge keys (name, description, schedule, source, items, emit, sinks)".to_string(),
            "c-list.yaml: not a bridge file: it holds a list, not a mapping of bridge keys".to_string(),
            format!("d-dangling.yaml: a symlink to {}, which does not exist (a dangling link): not a bridge file", target("nowhere")),
            format!("e-dir.yaml: a symlink to {}, which is a directory: not a bridge file", target("elsewhere")),
            "f-fifo.yaml: a FIFO, not a bridge file".to_string(),
            "g-deep.yaml:2:263: nested deeper than 64 levels".to_string(),
            "7 problems".to_string(),
        ]
    );
    for piece in ["qQ", "hunter2", "root", "bin:"] {
        assert!(!err.contains(piece), "{err}");
    }
    // 100k levels took minutes in libyaml; the limit is met before it is called (the
    // `g-deep.yaml` line above). How long it takes is measured, not asserted: see
    // docs/design.md#nesting-is-limited.
    eprintln!("check of the 100k-level file took {took:?}");
}

/// A dangling link appearing in the bridges directory refuses the reload like any invalid
/// file (docs/operations.md#reload-and-stop): the running bridge goes on polling, nothing is
/// removed.
#[tokio::test]
async fn a_dangling_link_refuses_the_reload_and_the_running_set_stays() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("500ms")
        .sink("console")
        .write(dir.path(), "live");
    let d = Daemon::start(dir.path(), &[]);
    until("the bridge polls", || !up.hits().is_empty()).await;
    let link = dir.path().join("bridges/gone.yaml");
    std::os::unix::fs::symlink(dir.path().join("nowhere"), &link).unwrap();
    d.signal("-HUP");
    until("the reload refused", || logs(&d).contains("reload refused")).await;
    let before = up.hits().len();
    until("the bridge still polls after the refused reload", || {
        up.hits().len() >= before + 2
    })
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    let err = err.join("\n");
    assert!(
        err.contains("gone.yaml: a symlink to")
            && err.contains("(a dangling link): not a bridge file"),
        "{err}"
    );
    assert!(
        !err.contains("bridges reloaded") && !err.contains("bridge removed"),
        "{err}"
    );
}
