//! Rollback is never silent (docs/operations.md#rollback): the real binary, a store whose log is
//! damaged or cut after a `kill -9`, the refusal on start, `pollhook store check` and
//! `accept-rollback`, and a receiver that never sees one seq or one id given to two different
//! events.

use crate::support::*;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

const ITEMS: usize = 10;
const ROUNDS: usize = 12;

/// Round `r` of the upstream's listing: every item changes each round.
fn listing(r: usize) -> Value {
    let items: Vec<Value> = (0..ITEMS)
        .map(|id| json!({"id": id, "round": r, "pad": "x".repeat(200)}))
        .collect();
    json!({ "items": items })
}

fn write_bridge(dir: &Path, up: &Upstream, rx: &Receiver) {
    BridgeYaml::new(&up.url())
        .every("500ms")
        .first_poll("emit")
        .signed_sink(&rx.url())
        .retry("[100ms, 200ms, 500ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s]")
        .write(dir, "b");
}

/// An upstream serving `listing(0)`, a receiver, and bridge `b` between them in a temporary
/// directory; its state directory (not made yet).
async fn serving_the_first_listing() -> (Upstream, Receiver, tempfile::TempDir, PathBuf) {
    let up = Upstream::start().await;
    let rx = Receiver::start().await;
    up.set_json(&listing(0));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_bridge(dir.path(), &up, &rx);
    (up, rx, dir, data)
}

/// Distinct seqs the receiver has.
fn seqs(rx: &Receiver) -> BTreeMap<u64, Value> {
    rx.received()
        .iter()
        .map(|r| {
            let e = r.json();
            (e["seq"].as_u64().unwrap(), e)
        })
        .collect()
}

/// Runs a `pollhook` command to its end (a generous deadline); exit code, stdout, stderr.
async fn pollhook(args: &[&str], data: &Path) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .arg("--data")
        .arg(data)
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "info")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("pollhook {args:?} did not finish"))
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An address where nothing listens: `poll` then works on the state directory itself.
fn no_daemon() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// Runs the bridge for `ROUNDS` rounds, each delivered in full, then `kill -9`: the highest
/// seq handed out, and what the receiver got.
async fn run_rounds_then_kill(
    dir: &Path,
    up: &Upstream,
    rx: &Receiver,
    data: &Path,
) -> (u64, BTreeMap<u64, Value>) {
    let mut d = Daemon::start(dir, &[]);
    for r in 0..ROUNDS {
        up.set_json(&listing(r));
        let want = ((r + 1) * ITEMS) as u64;
        until(&format!("round {r} delivered"), || {
            seqs(rx).keys().next_back() == Some(&want)
        })
        .await;
    }
    d.child.kill().await.unwrap(); // SIGKILL
    let handed_out = (ROUNDS * ITEMS) as u64;
    let before = seqs(rx);
    assert_eq!(before.len() as u64, handed_out);
    assert!(data.join("highwater").is_file());
    assert!(
        !std::fs::read_dir(data.join("pollhook.sled"))
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("snap.")),
        "sled wrote a snapshot: the damage below would not be in the log alone"
    );
    (handed_out, before)
}

/// 8 bytes flipped in the middle of sled's log: sled opens what came before.
fn flip_log(data: &Path) {
    let db = data.join("pollhook.sled/db");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes.len() / 2;
    for b in &mut bytes[at..at + 8] {
        *b ^= 0xff;
    }
    std::fs::write(db, bytes).unwrap();
}

/// Runs the bridge, `kill -9`, damages the state directory with `damage`; then checks the
/// refusal, both store commands, and a restart whose seqs go on past the highest handed out,
/// with no seq or id reused. `mark_line`: what `pollhook run` logs and `store check` prints
/// about the high-water mark file `DATA/highwater` (the damage done to it), if anything.
async fn rolled_back_store_is_refused_then_accepted(
    damage: impl Fn(&Path),
    mark_line: Option<&str>,
) {
    let (up, rx, dir, data) = serving_the_first_listing().await;
    let (handed_out, before) = run_rounds_then_kill(dir.path(), &up, &rx, &data).await;

    damage(&data);

    // `run` refuses, saying what it found and what to run.
    let bridges = dir.path().join("bridges");
    let on_bridges = |args: &[&str]| {
        let args: Vec<String> = [args, &["--bridges", bridges.to_str().unwrap()]]
            .concat()
            .into_iter()
            .map(String::from)
            .collect();
        let data = data.clone();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            pollhook(&args, &data).await
        }
    };
    let (code, _, err) = on_bridges(&["run", "--admin", "off"]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rollback: the state in"), "{err}");
    assert!(
        err.contains(&format!(
            "1 of 1 bridge is below the highest seq ever handed out ({})",
            data.join("highwater").display()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("highest handed out {handed_out}")),
        "{err}"
    );
    assert!(
        err.contains(&format!("`pollhook store check --data {}`", data.display())),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "`pollhook store accept-rollback --data {}`",
            data.display()
        )),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // What it found wrong with the mark file, if anything: a WARN naming it.
    let hw = data.join("highwater");
    let names_it = |l: &str, text: &str| l.contains(&format!("{} {text}", hw.display()));
    if let Some(text) = mark_line {
        assert!(
            err.lines().any(|l| l.contains("WARN") && names_it(l, text)),
            "no WARN `{} {text}` in:\n{err}",
            hw.display()
        );
    }

    // So does a poll with --commit that works on the directory itself.
    let admin = no_daemon();
    let (code, _, err) = on_bridges(&["poll", "b", "--commit", "--admin", &admin]).await;
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("rollback: the state in"), "{err}");

    // `store check` lists it and exits 1.
    let (code, out, err) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("rollback: 1 of 1 bridge is below")),
        "{out}"
    );
    match mark_line {
        // It says what it found wrong with the mark file (nothing was repaired meanwhile).
        Some(text) => assert!(
            out.lines()
                .any(|l| l.starts_with("warning: ") && names_it(l, text)),
            "{out}"
        ),
        None => assert!(
            !out.lines()
                .any(|l| l.starts_with("warning:") || l.starts_with("note:")),
            "{out}"
        ),
    }
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("`b` is at seq "))
        .unwrap_or_else(|| panic!("no line for b in:\n{out}"));
    let stored: u64 = line
        .trim_start()
        .trim_start_matches("`b` is at seq ")
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(stored < handed_out, "{line}");
    assert!(
        line.ends_with(&format!("highest handed out {handed_out}")),
        "{line}"
    );
    assert!(
        out.contains("pollhook store accept-rollback --data"),
        "{out}"
    );

    // `accept-rollback` moves the seq up to the highest handed out.
    let (code, out, err) = pollhook(&["store", "accept-rollback"], &data).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("b: seq {stored} -> {handed_out}")),
        "{out}"
    );
    let (code, out, err) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("ok: 1 bridge, highest seq {handed_out}")),
        "{out}"
    );

    // `run` starts; the upstream moved on meanwhile.
    let last = listing(ROUNDS);
    up.set_json(&last);
    let want: BTreeMap<String, Value> = last["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["id"].to_string(), i.clone()))
        .collect();
    let d = Daemon::start(dir.path(), &[]);
    until("the receiver's view matches the upstream again", || {
        let mut view: BTreeMap<String, Value> = BTreeMap::new();
        for e in seqs(&rx).values() {
            view.insert(e["key"].as_str().unwrap().to_string(), e["data"].clone());
        }
        view == want
    })
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));

    // Every request: one seq is one id, one id is one body.
    let got = rx.received();
    let mut by_id: HashMap<String, Vec<u8>> = HashMap::new();
    let mut by_seq: HashMap<u64, String> = HashMap::new();
    for r in &got {
        assert!(verify_standard(SECRET, r));
        let e = r.json();
        let id = e["id"].as_str().unwrap().to_string();
        if let Some(body) = by_id.insert(id.clone(), r.body.to_vec()) {
            assert_eq!(body, r.body.to_vec(), "id {id} was given to two events");
        }
        let seq = e["seq"].as_u64().unwrap();
        if let Some(other) = by_seq.insert(seq, id.clone()) {
            assert_eq!(other, id, "seq {seq} was given to two events");
        }
    }
    // The new events go on right after the highest handed out, without gaps.
    let all = seqs(&rx);
    let fresh: Vec<u64> = all.keys().copied().filter(|s| *s > handed_out).collect();
    assert!(!fresh.is_empty());
    assert_eq!(
        fresh,
        (handed_out + 1..=*fresh.last().unwrap()).collect::<Vec<_>>()
    );
    assert_eq!(all.len() as u64, *fresh.last().unwrap());
    for s in 1..=handed_out {
        assert_eq!(all[&s], before[&s], "seq {s} changed");
    }
    eprintln!(
        "rolled back from seq {handed_out} to {stored}; {} requests; new seqs {}..={}",
        got.len(),
        fresh[0],
        fresh.last().unwrap()
    );
}

/// The case: 8 bytes flipped in the middle of the log (sled opens what came before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_log_is_refused_until_the_rollback_is_accepted() {
    rolled_back_store_is_refused_then_accepted(flip_log, None).await;
}

/// The log cut short (a lost tail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_log_is_refused_until_the_rollback_is_accepted() {
    rolled_back_store_is_refused_then_accepted(
        |data| {
            let db = data.join("pollhook.sled/db");
            let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len / 2).unwrap();
        },
        None,
    )
    .await;
}

/// The log went back and the mark file `DATA/highwater` is gone: the second copy still tells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_with_the_mark_file_deleted_is_refused_until_accepted() {
    rolled_back_store_is_refused_then_accepted(
        |data| {
            flip_log(data);
            std::fs::remove_file(data.join("highwater")).unwrap();
        },
        Some("is missing"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_with_the_mark_file_emptied_is_refused_until_accepted() {
    rolled_back_store_is_refused_then_accepted(
        |data| {
            flip_log(data);
            std::fs::write(data.join("highwater"), b"").unwrap();
        },
        Some("holds no readable record"),
    )
    .await;
}

/// Its bytes replaced by as many random ones (a stray write, a bad block).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_with_the_mark_file_overwritten_is_refused_until_accepted() {
    rolled_back_store_is_refused_then_accepted(
        |data| {
            flip_log(data);
            let path = data.join("highwater");
            let len = std::fs::metadata(&path).unwrap().len() as usize;
            let noise: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
            std::fs::write(path, noise).unwrap();
        },
        Some("holds no readable record"),
    )
    .await;
}

/// Cut to a quarter: what is left reads as an older mark, no higher than the log went back to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_with_the_mark_file_truncated_is_refused_until_accepted() {
    rolled_back_store_is_refused_then_accepted(
        |data| {
            flip_log(data);
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(data.join("highwater"))
                .unwrap();
            let len = f.metadata().unwrap().len();
            f.set_len(len / 4).unwrap();
        },
        Some("holds lower marks than"),
    )
    .await;
}

/// Both mark files gone from a store that kept them: whether it went back cannot be told, so
/// it is refused all the same; `accept-rollback` starts the mark again from the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_whose_mark_files_are_both_gone_is_refused_until_accepted() {
    let (up, rx, dir, data) = serving_the_first_listing().await;
    let (handed_out, _) = run_rounds_then_kill(dir.path(), &up, &rx, &data).await;
    flip_log(&data);
    for f in ["highwater", "highwater.2"] {
        std::fs::remove_file(data.join(f)).unwrap();
    }
    let bridges = dir.path().join("bridges");
    let run = [
        "run",
        "--admin",
        "off",
        "--bridges",
        bridges.to_str().unwrap(),
    ];
    let (code, _, err) = pollhook(&run, &data).await;
    assert_eq!(code, 1, "{err}");
    let lost = format!(
        "rollback: cannot tell whether the state in {} went back: its high-water mark is lost",
        data.join("pollhook.sled").display()
    );
    assert!(err.contains(&lost), "{err}");
    assert!(
        err.contains(&format!(
            "`pollhook store accept-rollback --data {}`",
            data.display()
        )),
        "{err}"
    );
    assert!(!err.contains("no high-water mark yet"), "{err}");

    let (code, out, err) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(&lost), "{out}");
    let stored: u64 = out
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("`b` is at seq "))
        .unwrap_or_else(|| panic!("no line for b in:\n{out}"))
        .parse()
        .unwrap();
    assert!(stored < handed_out);
    // Nothing was repaired or started meanwhile: it still refuses.
    let (code, out, _) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 1, "{out}");

    let (code, out, err) = pollhook(&["store", "accept-rollback"], &data).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("b: seq {stored} (the mark starts here)")),
        "{out}"
    );
    assert!(
        out.contains("accepted: the high-water mark started again from the store (1 bridge)"),
        "{out}"
    );
    let (code, out, err) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!("ok: 1 bridge, highest seq {stored}")),
        "{out}"
    );
}

/// Runs the daemon until `want` seqs were delivered, then stops it: its stderr.
async fn run_until_delivered(dir: &Path, rx: &Receiver, want: usize) -> Vec<String> {
    let d = Daemon::start(dir, &[]);
    until(&format!("{want} events delivered"), || {
        seqs(rx).len() >= want
    })
    .await;
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    err
}

fn no_warn(err: &[String]) {
    let warns: Vec<&String> = err.iter().filter(|l| l.contains("WARN")).collect();
    assert!(warns.is_empty(), "{warns:#?}");
}

/// `store check` finds nothing to say about the mark: exit 0, one `ok:` line.
async fn checks_ok(data: &Path, seq: u64) {
    let (code, out, err) = pollhook(&["store", "check"], data).await;
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with(&format!("ok: 1 bridge, highest seq {seq}")),
        "{out}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A new data directory (no store, no mark) starts without a word, and so does every start
/// after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_data_directory_starts_quietly() {
    let (up, rx, dir, data) = serving_the_first_listing().await;
    no_warn(&run_until_delivered(dir.path(), &rx, ITEMS).await);
    assert!(data.join("highwater").is_file() && data.join("highwater.2").is_file());
    checks_ok(&data, ITEMS as u64).await;
    up.set_json(&listing(1));
    no_warn(&run_until_delivered(dir.path(), &rx, 2 * ITEMS).await);
    checks_ok(&data, 2 * ITEMS as u64).await;
}

/// A store left by the version before the second copy: `DATA/highwater` alone, and nothing
/// in sled saying a copy is kept. It starts without a word, and from then on is guarded like
/// any other: its mark deleted and its log damaged, it is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_from_before_the_second_mark_file_starts_quietly_and_is_guarded() {
    let (up, rx, dir, data) = serving_the_first_listing().await;
    run_until_delivered(dir.path(), &rx, ITEMS).await;
    std::fs::remove_file(data.join("highwater.2")).unwrap();
    {
        let db = sled::open(data.join("pollhook.sled")).unwrap();
        assert!(
            db.remove(b"highwater").unwrap().is_some(),
            "no marker in sled"
        );
        db.flush().unwrap();
    }
    up.set_json(&listing(1));
    no_warn(&run_until_delivered(dir.path(), &rx, 2 * ITEMS).await);
    assert!(data.join("highwater.2").is_file());
    checks_ok(&data, 2 * ITEMS as u64).await;

    // Guarded now: the first mark file deleted, and the store back at its first poll.
    let back = tempfile::tempdir().unwrap();
    copy_dir(&data.join("pollhook.sled"), back.path());
    up.set_json(&listing(2));
    run_until_delivered(dir.path(), &rx, 3 * ITEMS).await;
    std::fs::remove_dir_all(data.join("pollhook.sled")).unwrap();
    copy_dir(back.path(), &data.join("pollhook.sled"));
    std::fs::remove_file(data.join("highwater")).unwrap();
    let (code, out, err) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(&format!(
            "`b` is at seq {}, highest handed out {}",
            2 * ITEMS,
            3 * ITEMS
        )),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_commands_refuse_while_the_daemon_holds_the_store() {
    let (_up, rx, dir, data) = serving_the_first_listing().await;
    let d = Daemon::start(dir.path(), &[]);
    until("the first poll delivered", || seqs(&rx).len() == ITEMS).await;
    for cmd in ["check", "accept-rollback"] {
        let (code, out, err) = pollhook(&["store", cmd], &data).await;
        assert_eq!(code, 1, "{out}{err}");
        assert!(
            err.contains("a running pollhook (`pollhook run`) holds it; stop the daemon first"),
            "{err}"
        );
    }
    let (code, _, err) = d.terminate().await;
    assert_eq!(code, 0, "{}", err.join("\n"));
    let (code, out, err) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: 1 bridge, highest seq 10"), "{out}");
    // Nothing to accept on a store that did not go back.
    let (code, out, _) = pollhook(&["store", "accept-rollback"], &data).await;
    assert_eq!(code, 0);
    assert!(out.starts_with("nothing to accept"), "{out}");
}

/// A store sled cannot open at all is a located error, not a panic trace; `store check` on a
/// directory without one says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_sled_cannot_open_is_a_clear_error() {
    let (_up, _rx, dir, data) = serving_the_first_listing().await;
    let (code, out, err) = pollhook(&["store", "check"], &data).await;
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("no state in"), "{err}");
    assert!(!data.exists(), "check created a store");

    let bridges = dir.path().join("bridges");
    let poll = [
        "poll",
        "b",
        "--commit",
        "--admin",
        &no_daemon(),
        "--bridges",
        bridges.to_str().unwrap(),
    ];
    let (code, _, err) = pollhook(&poll, &data).await;
    assert_eq!(code, 0, "{err}");
    let conf = data.join("pollhook.sled/conf");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&conf)
        .unwrap()
        .set_len(10)
        .unwrap();
    for args in [&poll[..], &["store", "check"]] {
        let (code, _, err) = pollhook(args, &data).await;
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains(&format!(
                "state database {} is damaged and cannot be opened",
                data.join("pollhook.sled").display()
            )),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
