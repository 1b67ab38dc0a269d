//! The admin API against a crowd: connections that send half a request and hold it, more of
//! them than the daemon has file descriptors; connections that trickle or go quiet; running
//! out of file descriptors; another user knocking on the admin socket again and again. The
//! daemon runs as a child process with a low open-files limit (soft and hard, so it cannot
//! raise it).

use crate::support::*;
use reqwest::Method;
use serde_json::{Value, json};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// The children's open-files limit: the admin API may hold 256 / 16 = 16 connections on
/// each of its two listeners.
const NOFILE: u64 = 256;
const CAP: usize = 16;

/// Half a request: the head never ends.
const HALF: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: pollhook\r\nAccept: */*\r\n";

/// `pollhook run ARGS` with at most `nofile` open files.
fn start_limited(dir: &Path, env: &[(&str, &str)], args: &[&str], nofile: u64) -> Daemon {
    use std::os::unix::process::CommandExt;
    let run = [&["run", "--log-format", "pretty"], args].concat();
    let mut cmd = pollhook_in(dir, &run);
    cmd.env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    // SAFETY: setrlimit is async-signal-safe, and nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut cmd = tokio::process::Command::from(cmd);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn().unwrap();
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    Daemon {
        child,
        stdout,
        stderr,
        socket: dir.join("data/admin.sock"),
    }
}

/// A running daemon's (soft) open-files limit, changed from outside (prlimit(2)); the hard
/// one stays [`NOFILE`], so that it can be raised again without privileges.
fn set_nofile(d: &Daemon, nofile: u64) {
    let l = libc::rlimit {
        rlim_cur: nofile,
        rlim_max: NOFILE,
    };
    let pid = d.child.id().unwrap() as libc::pid_t;
    // SAFETY: plain syscall with valid pointers.
    let r = unsafe { libc::prlimit(pid, libc::RLIMIT_NOFILE, &l, std::ptr::null_mut()) };
    assert_eq!(r, 0, "prlimit: {}", std::io::Error::last_os_error());
}

/// How many files the daemon has open.
fn open_files(d: &Daemon) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", d.child.id().unwrap()))
        .unwrap()
        .count()
}

/// `n` TCP connections to `addr`, each holding half a request.
async fn hold_tcp(addr: &str, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(HALF).await.unwrap();
        held.push(s);
    }
    held
}

/// `n` connections to the admin socket, each holding half a request.
async fn hold_socket(path: &Path, n: usize) -> Vec<UnixStream> {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = UnixStream::connect(path).await.unwrap();
        s.write_all(HALF).await.unwrap();
        held.push(s);
    }
    held
}

/// A GET that must answer within 30 s: status and body.
async fn get_soon(url: &str) -> (u16, String) {
    tokio::time::timeout(Duration::from_secs(30), get_text(url))
        .await
        .unwrap_or_else(|_| panic!("{url} did not answer within 30 s"))
}

/// Waits (at most 30 s) for the daemon's `/healthz` to answer 200.
async fn healthy(d: &Daemon, base: &str) {
    eventually(PATIENCE, "/healthz to answer 200", || async {
        match get_json(&format!("{base}/healthz")).await {
            (200, _) => Ok(()),
            (code, _) => Err(format!("{code}; logs:\n{}", logs(d))),
        }
    })
    .await;
}

/// The value of the metric `name` on the line that has every one of `labels` (0 without one).
async fn metric(base: &str, name: &str, labels: &[&str]) -> f64 {
    let (_, text) = get_soon(&format!("{base}/metrics")).await;
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// How long until the peer closes `s` (end of file or a reset), at most 30 s.
async fn closed_after<S: AsyncReadExt + Unpin>(s: &mut S, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    let deadline = Duration::from_secs(30);
    loop {
        match tokio::time::timeout(deadline, s.read(&mut buf)).await {
            Err(_) => panic!("the connection was still open after 30 s"),
            Ok(Ok(0)) | Ok(Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// SIGTERM, and the exit within 30 s (held connections do not hold up the shutdown).
async fn stop(d: Daemon) -> (i32, Vec<String>, Vec<String>) {
    tokio::time::timeout(Duration::from_secs(30), d.terminate())
        .await
        .expect("the daemon did not stop within 30 s")
}

fn status_of(v: &Value, name: &str) -> Value {
    v["bridges"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["name"] == name))
        .map(|b| b["status"].clone())
        .unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_half_requests_leave_healthz_polls_and_the_socket_working() {
    let up = Upstream::start().await;
    up.set_json(&json!({"items": [{"id": 1}]}));
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1s")
        .signed_sink("http://127.0.0.1:9/hook")
        .write(dir.path(), "steady");
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    // A header timeout longer than the test: what keeps the API answering here is the cap.
    let timeout = [("POLLHOOK_ADMIN_HEADER_TIMEOUT", "10m")];
    let d = start_limited(dir.path(), &timeout, &["--admin", &admin], NOFILE);
    healthy(&d, &base).await;
    let idle = open_files(&d);

    // Over twice the daemon's file descriptors, held by connections that never end their
    // request (an unprivileged user can open these on the loopback port).
    let _tcp = hold_tcp(&admin, 600).await;
    let _local = hold_socket(&d.socket, 100).await;

    let asked = Instant::now();
    let (code, body) = get_soon(&format!("{base}/healthz")).await;
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let answered_in = asked.elapsed();
    // The bridge polls every second on its own, and a poll asked for while one is in flight
    // is answered 409 "try again": asked again until it runs, each answer within the time.
    let v = eventually(PATIENCE, "a poll over the admin socket", || async {
        let (code, v) = tokio::time::timeout(
            Duration::from_secs(30),
            over_socket(&d.socket, Method::POST, "/v1/bridges/steady/poll"),
        )
        .await
        .expect("a poll over the admin socket did not answer within 30 s");
        match code {
            200 => Ok(v),
            409 => Err(format!("409 {v}")),
            _ => panic!("a poll over the admin socket answered {code}: {v}"),
        }
    })
    .await;
    assert_eq!(v["items"], json!(1), "{v}");
    // A bridge added now polls a new upstream: it needs a new connection, so a file
    // descriptor.
    let fresh = Upstream::start().await;
    fresh.set_json(&json!({"items": [{"id": 1}, {"id": 2}]}));
    BridgeYaml::new(&fresh.url())
        .every("1s")
        .signed_sink("http://127.0.0.1:9/hook")
        .write(dir.path(), "fresh");
    d.signal("-HUP");
    eventually(PATIENCE, "the new bridge polled its upstream", || async {
        let (_, text) = get_soon(&format!("{base}/v1/bridges")).await;
        let v: Value = serde_json::from_str(&text).unwrap();
        status_of(&v, "fresh")["items"] == json!(2)
    })
    .await;
    let (_, text) = get_soon(&format!("{base}/v1/bridges")).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    for b in ["steady", "fresh"] {
        assert_eq!(status_of(&v, b)["failures"], json!(0), "{b}: {v}");
    }

    // The admin API holds at most its cap on each listener.
    let held = open_files(&d);
    eprintln!("files open: {idle} idle, {held} with the crowd; /healthz in {answered_in:?}");
    assert!(
        held <= idle + 2 * CAP + 8,
        "{held} files open, {idle} before the crowd"
    );
    let closed = metric(
        &base,
        "pollhook_admin_connections_closed_total",
        &["listener=\"tcp\"", "reason=\"cap\""],
    )
    .await;
    assert!(closed >= (600 - CAP) as f64, "closed at the cap: {closed}");
    // Nor can a connection fill the daemon's memory with a long head (raw, as the daemon
    // answers before the whole head is sent, and the client must read what it says).
    let mut long = TcpStream::connect(&admin).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nHost: pollhook\r\nx-long: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = long.write_all(head.as_bytes()).await;
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(30), long.read(&mut answer))
        .await
        .expect("no answer to a long head")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    let logs = logs(&d);
    assert!(!logs.contains("Too many open files"), "{logs}");
    // One line for each listener, not one per connection.
    for listener in ["admin API (TCP)", "admin socket"] {
        let lines = logs
            .lines()
            .filter(|l| l.contains(listener) && l.contains("connections at once"))
            .count();
        assert_eq!(lines, 1, "{listener}:\n{logs}");
    }
    let (code, _, err) = stop(d).await;
    assert_eq!(code, 0, "{}", err.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_or_quiet_connections_are_closed_after_the_header_timeout() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1h")
        .signed_sink("http://127.0.0.1:9/hook")
        .write(dir.path(), "quiet");
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let timeout = [("POLLHOOK_ADMIN_HEADER_TIMEOUT", "2s")];
    let d = start_limited(dir.path(), &timeout, &["--admin", &admin], NOFILE);
    healthy(&d, &base).await;

    let since = Instant::now();
    let mut half = hold_tcp(&admin, 3).await;
    let mut local = hold_socket(&d.socket, 1).await;
    let mut silent = TcpStream::connect(&admin).await.unwrap();
    // One that has been answered, and then says nothing more (keep-alive).
    let mut answered = TcpStream::connect(&admin).await.unwrap();
    answered
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: pollhook\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    while !got.ends_with(b"ok\n") {
        let mut buf = [0u8; 256];
        let n = answered.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
    // One that trickles its head a byte every 200 ms: it makes progress, yet never finishes in
    // time.
    let trickle = tokio::spawn({
        let admin = admin.clone();
        async move {
            let mut s = TcpStream::connect(&admin).await.unwrap();
            let start = Instant::now();
            for b in HALF.iter().cycle() {
                if s.write_all(&[*b]).await.is_err() {
                    return start.elapsed();
                }
                let mut buf = [0u8; 64];
                match tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
                    _ => {}
                }
                assert!(start.elapsed() < Duration::from_secs(30), "still open");
            }
            unreachable!()
        }
    });

    let mut times = Vec::new();
    for s in &mut half {
        times.push(closed_after(s, since).await);
    }
    times.push(closed_after(&mut local[0], since).await);
    times.push(closed_after(&mut silent, since).await);
    times.push(closed_after(&mut answered, since).await);
    times.push(trickle.await.unwrap());
    // None closed before its time (2 s), every one soon after.
    for t in &times {
        assert!(*t >= Duration::from_millis(1900), "{times:?}");
    }
    let timed_out = metric(
        &base,
        "pollhook_admin_connections_closed_total",
        &["reason=\"timeout\""],
    )
    .await;
    assert!(timed_out >= 7.0, "{timed_out}");
    let (code, _, err) = stop(d).await;
    assert_eq!(code, 0, "{}", err.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_logged_once_and_the_api_comes_back() {
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1h")
        .signed_sink("http://127.0.0.1:9/hook")
        .write(dir.path(), "dark");
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let timeout = [("POLLHOOK_ADMIN_HEADER_TIMEOUT", "10m")];
    let d = start_limited(dir.path(), &timeout, &["--admin", &admin], NOFILE);
    healthy(&d, &base).await;

    // Two descriptors left: two connections are accepted, the others wait in the backlog.
    set_nofile(&d, open_files(&d) as u64 + 2);
    let _held = hold_tcp(&admin, 10).await;
    until("the accept failure logged", || {
        logs(&d).contains("cannot accept")
    })
    .await;
    // The API is dark meanwhile (and the daemon keeps trying).
    let dark = tokio::time::timeout(
        Duration::from_secs(2),
        reqwest::get(format!("{base}/healthz")),
    )
    .await;
    assert!(
        dark.is_err(),
        "answered without a file descriptor: {dark:?}"
    );

    set_nofile(&d, NOFILE);
    healthy(&d, &base).await;
    let logs = logs(&d);
    let lines: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("cannot accept"))
        .collect();
    assert_eq!(lines.len(), 1, "{logs}");
    assert!(lines[0].contains("Too many open files"), "{logs}");
    let failures = metric(
        &base,
        "pollhook_admin_accept_errors_total",
        &["listener=\"tcp\""],
    )
    .await;
    assert!(failures >= 2.0, "{failures}");
    let (code, _, err) = stop(d).await;
    assert_eq!(code, 0, "{}", err.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_knocking_on_the_socket_is_logged_once_a_minute() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let up = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    BridgeYaml::new(&up.url())
        .every("1h")
        .signed_sink("http://127.0.0.1:9/hook")
        .write(dir.path(), "knock");
    let admin = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{admin}");
    let d = start_limited(dir.path(), &[], &["--admin", &admin], NOFILE);
    healthy(&d, &base).await;
    let data = dir.path().join("data");
    for p in [dir.path(), data.as_path()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    const KNOCKS: usize = 10;
    for _ in 0..KNOCKS {
        use std::os::unix::process::CommandExt;
        let socket = d.socket.to_str().unwrap();
        let cmd = cli_command(&["status", "--admin", "127.0.0.1:1", "--admin-socket", socket])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert_eq!(output_of(cmd).0, 1);
    }
    let logs = logs(&d);
    let lines = logs
        .lines()
        .filter(|l| l.contains("refused a connection to the admin socket from uid 65534"))
        .count();
    assert_eq!(lines, 1, "{logs}");
    let refused = metric(
        &base,
        "pollhook_admin_connections_closed_total",
        &["listener=\"socket\"", "reason=\"uid\""],
    )
    .await;
    assert!(refused >= KNOCKS as f64, "{refused}");
    let (code, _, err) = stop(d).await;
    assert_eq!(code, 0, "{}", err.join("\n"));
}
