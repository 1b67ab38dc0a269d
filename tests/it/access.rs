//! Who may act through the admin API (docs/operations.md#who-may-act): reads are open on TCP;
//! polls, reset, resync and dead-letter replay/drop need the unix socket or the bearer token;
//! a non-loopback address without a token is refused at start; the CLI finds the socket or
//! the token. Also: the socket's life (mode, a stale file, a live one kept) and the `status`
//! table's columns.

use crate::support::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

const ADMIN_TOKEN: &str = "adm-7Qx2Lr9Vw4Kp8Ts1";

/// Every acting request, with a bridge named `acc`.
const ACTING: [(&str, &str); 8] = [
    ("POST", "/v1/bridges/acc/poll"),
    ("POST", "/v1/bridges/acc/poll?commit=true"),
    ("POST", "/v1/bridges/acc/poll?render=true"),
    ("POST", "/v1/bridges/acc/send-test"),
    ("POST", "/v1/bridges/acc/reset"),
    ("POST", "/v1/bridges/acc/resync"),
    ("POST", "/v1/dead-letters/evt_x/replay"),
    ("DELETE", "/v1/dead-letters/evt_x"),
];

fn method(m: &str) -> Method {
    Method::from_bytes(m.as_bytes()).unwrap()
}

fn write_bridge(dir: &Path, name: &str, up: &Upstream, rx: &Receiver) {
    BridgeYaml::new(&up.url())
        .every("1h")
        .first_poll("emit")
        .signed_sink(&format!("\"{}\"", rx.url()))
        .write(dir, name);
}

/// `seq` and `items` of the bridge `acc`, read over TCP.
async fn state(base: &str) -> (Value, Value) {
    let (code, v) = over_tcp(base, Method::GET, "/v1/bridges", None).await;
    assert_eq!(code, 200, "{v}");
    let b = &v["bridges"][0];
    (b["seq"].clone(), b["status"]["items"].clone())
}

/// The CLI as another local user (uid 65534), for the tests that run as root.
fn cli_as_nobody(args: &[&str]) -> (i32, String, String) {
    use std::os::unix::process::CommandExt;
    output_of(cli_command(args).uid(65534).gid(65534).output().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acting_needs_the_socket_or_a_token_and_reading_stays_open() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}]}));
    let dir = tempfile::tempdir().unwrap();
    write_bridge(dir.path(), "acc", &up, &rx);
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = Daemon::start_with(dir.path(), &[], &admin);
    until("the first poll's events delivered", || {
        rx.received().len() == 2
    })
    .await;
    let polls = up.hits().len();
    let before = state(&base).await;
    assert_eq!(before, (json!(2), json!(2)));

    // Over TCP without a token: 403 and a message naming both ways, for every acting request.
    for (m, path) in ACTING {
        let (code, v) = over_tcp(&base, method(m), path, None).await;
        assert_eq!(code, 403, "{m} {path}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(
            msg.contains(d.socket.to_str().unwrap())
                && msg.contains("Authorization: Bearer")
                && msg.contains("--admin-token-file"),
            "{m} {path}: {msg}"
        );
    }
    // A made-up token is no better when none is configured.
    let (code, _) = over_tcp(&base, Method::POST, ACTING[4].1, Some("guess")).await;
    assert_eq!(code, 403);
    // Reads stay open.
    for path in ["/healthz", "/metrics", "/v1/bridges", "/v1/dead-letters"] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    // Nothing happened: no poll reached the upstream, the state is as it was.
    assert_eq!(up.hits().len(), polls);
    assert_eq!(state(&base).await, before);
    let (code, out, err) = cli(&[
        "status",
        "--admin",
        &admin,
        "--admin-socket",
        "/nonexistent/a.sock",
    ]);
    assert_eq!(code, 0, "status is a read: {err}");
    assert!(out.contains("acc "), "{out}");

    // The CLI with no socket it can reach and no token: the daemon's message and what to do.
    let (code, _, err) = cli(&[
        "reset",
        "acc",
        "--admin",
        &admin,
        "--admin-socket",
        "/nonexistent/a.sock",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("403")
            && err.contains("/nonexistent/a.sock")
            && err.contains("--admin-token-file")
            && err.contains("POLLHOOK_ADMIN_TOKEN"),
        "{err}"
    );

    // The socket: a socket file of mode 0600.
    let meta = std::fs::metadata(&d.socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // Another local user can neither connect to it (its mode) nor act over TCP; nor, with the
    // mode loosened, act through it (the daemon checks who connects).
    let data = dir.path().join("data");
    if unsafe { libc::geteuid() } == 0 {
        for p in [dir.path(), data.as_path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let args = [
            "reset",
            "acc",
            "--admin",
            &admin,
            "--admin-socket",
            d.socket.to_str().unwrap(),
        ];
        let (code, _, err) = cli_as_nobody(&args);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("403") && err.contains("ermission denied"),
            "{err}"
        );
        std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let (code, _, err) = cli_as_nobody(&args);
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("403"), "{err}");
        std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(state(&base).await, before, "another user reset the bridge");
        assert!(
            logs(&d).contains("refused a connection to the admin socket from uid 65534"),
            "{}",
            logs(&d)
        );
    }

    // Over the socket everything acts (404 for a dead letter that is not there: it got past
    // the gate).
    let (code, v) = over_socket(&d.socket, Method::POST, "/v1/bridges/acc/poll").await;
    assert_eq!((code, &v["commit"]), (200, &json!(false)), "{v}");
    let (code, v) = over_socket(&d.socket, Method::DELETE, "/v1/dead-letters/evt_x").await;
    assert_eq!(code, 404, "{v}");
    let (code, v) = over_socket(&d.socket, Method::GET, "/v1/bridges").await;
    assert_eq!((code, &v["bridges"][0]["name"]), (200, &json!("acc")));

    // An address given names the daemon: the default socket is not tried (it could be another
    // daemon's), so acting over TCP without the token is refused, and says why.
    let data_arg = data.to_str().unwrap();
    let (code, _, err) = cli(&["reset", "acc", "--admin", &admin, "--data", data_arg]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("403") && err.contains("was not tried"),
        "{err}"
    );

    // The CLI finds the socket from --data (the default as for `run`).
    up.set_json(&json!({"items": [{"id": 1}, {"id": 2}, {"id": 3}]}));
    let (code, out, err) = cli(&["poll", "acc", "--commit", "--data", data_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("item.created"), "{out}");
    assert!(err.contains(d.socket.to_str().unwrap()), "{err}");
    until("the committed poll's event delivered", || {
        rx.received().len() == 3
    })
    .await;
    let (code, out, err) = cli(&["reset", "acc", "--data", data_arg]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "reset acc: 3 items forgotten; the next poll re-baselines\n"
    );
    let (code, _, err) = cli(&["dead-letters", "drop", "evt_x", "--data", data_arg]);
    assert_eq!(code, 1);
    assert!(err.contains("no dead letter `evt_x`"), "{err}");

    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_lets_tcp_act_and_never_shows() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    write_bridge(dir.path(), "acc", &up, &rx);
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, format!("{ADMIN_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = Daemon::start_args(
        dir.path(),
        &[],
        &[
            "--admin",
            &admin,
            "--admin-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    until("the first poll's event delivered", || {
        rx.received().len() == 1
    })
    .await;

    let (code, v) = over_tcp(
        &base,
        Method::POST,
        "/v1/bridges/acc/poll",
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    for token in [None, Some("adm-7Qx2Lr9Vw4Kp8Ts2"), Some(""), Some("adm")] {
        for (m, path) in ACTING {
            let (code, v) = over_tcp(&base, method(m), path, token).await;
            assert_eq!(code, 403, "{token:?} {m} {path}: {v}");
            let msg = v["error"].as_str().unwrap_or_default();
            assert!(msg.contains("Authorization: Bearer"), "{msg}");
            assert!(!msg.contains(ADMIN_TOKEN), "{msg}");
        }
    }

    // The CLI, with no socket it can reach: the token from a file, or from the environment.
    let no_socket = [
        "--admin",
        admin.as_str(),
        "--admin-socket",
        "/nonexistent/a.sock",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        ["reset", "acc"]
            .iter()
            .chain(&no_socket)
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let run = |args: Vec<String>, env: &[(&str, &str)]| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cli_env(&args, env)
    };
    let (code, out, err) = run(
        with(&["--admin-token-file", token_file.to_str().unwrap()]),
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("reset acc: 1 items forgotten"), "{out}");
    let (code, _, err) = run(with(&[]), &[("POLLHOOK_ADMIN_TOKEN", ADMIN_TOKEN)]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(with(&[]), &[("POLLHOOK_ADMIN_TOKEN", "nope")]);
    assert_eq!(code, 1);
    assert!(err.contains("403") && err.contains("wrong"), "{err}");
    let (code, _, err) = run(
        vec![
            "dead-letters".into(),
            "replay".into(),
            "evt_x".into(),
            "--admin".into(),
            admin.clone(),
            "--admin-socket".into(),
            "/nonexistent/a.sock".into(),
        ],
        &[("POLLHOOK_ADMIN_TOKEN", ADMIN_TOKEN)],
    );
    assert_eq!(code, 1);
    assert!(err.contains("no dead letter `evt_x`"), "{err}");

    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0);
    let all = err.join("\n");
    assert!(!all.contains(ADMIN_TOKEN), "the admin token leaked:\n{all}");
    assert!(all.contains("admin API listening"), "{all}");
}

/// Runs `pollhook run ARGS` that is expected to exit at once; its exit code and stderr.
async fn run_to_exit(dir: &Path, args: &[&str]) -> (i32, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(["run", "--log-format", "pretty"])
        .args(args)
        .arg("--bridges")
        .arg(dir.join("bridges"))
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUNTIME_DIRECTORY")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("pollhook run {args:?} did not exit"))
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An admin address that cannot be bound stops the start before any bridge polls: nothing
/// is fetched, stored or sent by a daemon that then exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_address_in_use_stops_the_start_before_any_poll() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    write_bridge(dir.path(), "acc", &up, &rx);
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let data = dir.path().join("data");
    let (code, err) = run_to_exit(
        dir.path(),
        &["--admin", &addr, "--data", data.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(up.hits().is_empty(), "a bridge polled: {err}");
    assert!(rx.received().is_empty());
    assert!(
        !data.join("admin.sock").exists(),
        "the socket was left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_address_without_a_token_is_refused_at_start() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    write_bridge(dir.path(), "acc", &up, &rx);
    let data = dir.path().join("data");
    let port = free_port();
    for addr in [
        format!("0.0.0.0:{port}"),
        format!("[::]:{port}"),
        format!("192.0.2.1:{port}"),
    ] {
        let (code, err) = run_to_exit(
            dir.path(),
            &["--admin", &addr, "--data", data.to_str().unwrap()],
        )
        .await;
        assert_eq!(code, 2, "{addr}: {err}");
        assert!(
            err.contains(&addr) && err.contains("--admin-token-file") && err.contains("loopback"),
            "{err}"
        );
        assert!(!data.exists(), "{addr}: something was started");
    }
    assert!(up.hits().is_empty(), "a bridge was polled");

    // A token file that holds no token, or is missing: refused too, without quoting it.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "two words\n").unwrap();
    let run_with_token = |file: String| {
        let (dir, data) = (dir.path().to_path_buf(), data.clone());
        async move {
            let args = [
                "--admin-token-file",
                &file,
                "--data",
                data.to_str().unwrap(),
            ];
            run_to_exit(&dir, &args).await
        }
    };
    let (code, err) = run_with_token(empty.display().to_string()).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(&format!("{}: ", empty.display())) && err.contains("empty"),
        "{err}"
    );
    let (code, err) = run_with_token(bad.display().to_string()).await;
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("two words"), "{err}");
    let (code, err) = run_with_token("/nonexistent/token".to_string()).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("/nonexistent/token"), "{err}");
    assert!(!data.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_replaces_a_stale_file_keeps_a_live_one_and_goes_at_exit() {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&json!({"items": []}));
    let dir = tempfile::tempdir().unwrap();
    write_bridge(dir.path(), "acc", &up, &rx);
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // A socket file left behind by a daemon that was killed.
    drop(std::os::unix::net::UnixListener::bind(data.join("admin.sock")).unwrap());
    // `--admin off`: the socket stays, as the way to act.
    let d = Daemon::start(dir.path(), &[]);
    until("the admin socket listening", || {
        logs(&d).contains("admin socket listening")
    })
    .await;
    let (code, _) = over_socket(&d.socket, Method::POST, "/v1/bridges/acc/resync").await;
    assert_eq!(code, 200);
    let (code, out, err) = d.cli(&["reset", "acc"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("reset acc:"), "{out}");
    // Reads work over the socket too (here there is no TCP address at all).
    let (code, out, err) = d.cli(&["status", "--admin", "127.0.0.1:1"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\nacc "), "{out}");

    // A second daemon on the same state directory is refused by the store's lock, and the
    // first one's socket is untouched.
    let (code, err) = run_to_exit(
        dir.path(),
        &["--admin", "off", "--data", data.to_str().unwrap()],
    )
    .await;
    assert_eq!(code, 1, "{err}");
    let (code, _) = over_socket(&d.socket, Method::GET, "/healthz").await;
    assert_eq!(code, 200, "the running daemon's socket was clobbered");
    // One on another state directory but the same socket: refused, naming the socket.
    let other = dir.path().join("other");
    let on_socket = |socket: &Path| {
        let args = ["--admin", "off", "--data", other.to_str().unwrap()];
        let args: Vec<String> = [&args[..], &["--admin-socket", socket.to_str().unwrap()]]
            .concat()
            .into_iter()
            .map(String::from)
            .collect();
        let dir = dir.path().to_path_buf();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run_to_exit(&dir, &args).await
        }
    };
    let (code, err) = on_socket(&d.socket).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains(d.socket.to_str().unwrap()) && err.contains("answers"),
        "{err}"
    );
    let (code, _) = over_socket(&d.socket, Method::GET, "/healthz").await;
    assert_eq!(code, 200, "the running daemon's socket was clobbered");
    // A path that is not a socket is never removed.
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, "keep me").unwrap();
    let (code, err) = on_socket(&file).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");

    let socket = d.socket.clone();
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    assert!(!socket.exists(), "the socket outlived the daemon");
}

/// The end (in chars) of `word` in `line`.
fn end_of(line: &str, word: &str) -> usize {
    let at = line
        .find(word)
        .unwrap_or_else(|| panic!("no {word} in {line}"));
    line[..at].chars().count() + word.chars().count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_columns_line_up_whatever_their_contents() {
    let up = Upstream::start().await;
    let ok = Receiver::start().await;
    let gone = Receiver::start().await;
    for _ in 0..12 {
        gone.answer(410, &[]);
    }
    up.set_json(&json!({"items": (0..12).map(|i| json!({"id": i})).collect::<Vec<_>>()}));
    let dir = tempfile::tempdir().unwrap();
    let long = "a-bridge-whose-name-is-longer-than-the-column";
    write_bridge(dir.path(), long, &up, &gone);
    write_bridge(dir.path(), "b", &up, &ok);
    let admin = format!("127.0.0.1:{}", free_port());
    let d = Daemon::start_with(dir.path(), &[], &admin);
    let table = eventually(PATIENCE, "a status table with 12 dead letters", || {
        let (code, out, _) = cli(&["status", "--admin", &admin]);
        let done = code == 0 && out.contains(long) && out.contains(" 12\n");
        std::future::ready(done.then_some(out))
    })
    .await;
    let lines: Vec<&str> = table.lines().filter(|l| !l.starts_with("    ")).collect();
    let header = lines[0];
    assert!(header.starts_with("BRIDGE "), "{table}");
    let rows = &lines[1..];
    assert_eq!(rows.len(), 2, "{table}");
    for col in ["ITEMS", "OUTBOX", "DEAD"] {
        let end = end_of(header, col);
        for row in rows {
            let chars: Vec<char> = row.chars().collect();
            assert!(
                chars[end - 1].is_ascii_digit() || chars[end - 1] == '-',
                "{col} ends at {end}:\n{table}"
            );
            assert!(
                chars.get(end).is_none_or(|c| *c == ' '),
                "{col} ends at {end}:\n{table}"
            );
        }
    }
    for col in ["LAST POLL", "RESULT", "NEXT POLL"] {
        let start = end_of(header, col) - col.len();
        for row in rows {
            let chars: Vec<char> = row.chars().collect();
            assert!(
                chars[start - 1] == ' ' && chars[start] != ' ',
                "{col} starts at {start}:\n{table}"
            );
        }
    }
    let (code, out, _) = cli(&["dead-letters", "list", "--admin", &admin]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    let (seq, attempts) = (end_of(lines[0], "SEQ"), end_of(lines[0], "ATTEMPTS"));
    for row in &lines[1..] {
        let chars: Vec<char> = row.chars().collect();
        assert!(
            chars[seq - 1].is_ascii_digit() && chars[seq] == ' ',
            "{out}"
        );
        assert!(
            chars[attempts - 1].is_ascii_digit() && chars[attempts] == ' ',
            "{out}"
        );
    }
    let (code, _, _) = d.terminate().await;
    assert_eq!(code, 0);
}
