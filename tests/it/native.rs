//! What the operating system's tools get from the binary (docs/operations.md#completions-and-the-man-page):
//! completion scripts, the man page, the bridge files' JSON Schema.

use crate::support::BIN;
use std::process::{Command, Stdio};

fn stdout_of(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "pollhook {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands as `pollhook --help` lists them (`help` aside): what completions and the
/// man page must name, read from the binary rather than written out here again.
fn subcommands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    let list = help
        .split("Commands:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("a Commands: list in --help");
    let names: Vec<String> = list
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
        .map(str::to_string)
        .collect();
    for expected in [
        "run",
        "check",
        "store",
        "dead-letters",
        "completions",
        "man",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    names
}

#[test]
fn completions_for_every_shell_name_every_subcommand() {
    let names = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = stdout_of(&["completions", shell]);
        assert!(script.len() > 500, "{shell}: {} bytes", script.len());
        for name in &names {
            assert!(
                script.contains(name.as_str()),
                "{shell} completion lacks {name}"
            );
        }
    }
    // Nested subcommands complete too.
    let bash = stdout_of(&["completions", "bash"]);
    for nested in ["accept-rollback", "move-shards", "replay"] {
        assert!(bash.contains(nested), "bash completion lacks {nested}");
    }
}

#[test]
fn the_bash_completion_is_valid_bash() {
    let script = stdout_of(&["completions", "bash"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pollhook.bash");
    std::fs::write(&path, &script).unwrap();
    let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Sourced, it registers a completion for `pollhook`.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("source {} && complete -p pollhook", path.display()))
        .output()
        .unwrap();
    let registered = String::from_utf8_lossy(&out.stdout);
    assert!(registered.contains("pollhook"), "complete -p: {registered}");
}

#[test]
fn completions_refuse_an_unknown_shell() {
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

#[test]
fn the_man_page_is_roff_naming_every_subcommand() {
    let page = stdout_of(&["man"]);
    assert!(
        page.lines().any(|l| l.starts_with(".TH pollhook 1")),
        "no .TH line"
    );
    for section in ["NAME", "SYNOPSIS", "COMMANDS"] {
        assert!(page.contains(&format!(".SH {section}")), "no {section}");
    }
    for name in subcommands() {
        assert!(
            page.contains(&format!(".SS \"pollhook {name}\"")),
            "the man page has no section for {name}"
        );
    }
    for nested in [
        "store check",
        "store accept-rollback",
        "dead-letters replay",
    ] {
        assert!(
            page.contains(&format!(".SS \"pollhook {nested}\"")),
            "{nested}"
        );
    }
    // The options of a subcommand are there, with their help.
    assert!(page.contains("\\-\\-bridges") && page.contains("Directory of bridge files"));
    // Rendered by man(1) when it is installed (not required).
    let Ok(mut child) = Command::new("man")
        .args(["-l", "-"])
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        return;
    };
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "man -l: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("pollhook store accept-rollback"), "{text}");
    assert!(!text.contains(".SS"), "unrendered roff in {text}");
}
