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

fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_committed_schema_is_what_pollhook_schema_prints() {
    let printed = stdout_of(&["schema"]);
    let committed = std::fs::read_to_string(root().join("schema/bridge.schema.json")).unwrap();
    assert!(
        printed == committed,
        "schema/bridge.schema.json is out of date with the types in src/config/raw.rs; \
         regenerate it with `cargo run -- schema > schema/bridge.schema.json` and commit it"
    );
}

/// The bridge files of bridges/, each with its text.
fn examples() -> Vec<(std::path::PathBuf, String)> {
    let mut files: Vec<_> = std::fs::read_dir(root().join("bridges"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p, text)
        })
        .collect()
}

#[test]
fn every_example_names_the_schema_for_editors() {
    for (path, text) in examples() {
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=../schema/bridge.schema.json"),
            "{} must begin with the schema line (docs/configuration.md#editors-and-the-json-schema)",
            path.display()
        );
    }
}

/// A validator of the committed schema (a standard one, not pollhook's own code).
fn validator() -> (boon::Schemas, boon::SchemaIndex) {
    let path = root().join("schema/bridge.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut schemas = boon::Schemas::new();
    let mut compiler = boon::Compiler::new();
    let url = "file:///bridge.schema.json";
    compiler.add_resource(url, schema).unwrap();
    let index = compiler.compile(url, &mut schemas).unwrap();
    (schemas, index)
}

fn yaml_as_json(text: &str) -> serde_json::Value {
    serde_yaml::from_str(text).unwrap()
}

#[test]
fn the_schema_accepts_every_example_and_refuses_what_check_refuses_for_shape() {
    let (schemas, index) = validator();
    for (path, text) in examples() {
        if let Err(e) = schemas.validate(&yaml_as_json(&text), index) {
            panic!("{}: {e}", path.display());
        }
    }
    let fixtures = root().join("tests/it/fixtures/schema");
    for (file, offending) in [
        ("unknown-key.yaml", "retries"),
        ("wrong-type.yaml", "max_pages"),
    ] {
        let path = fixtures.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        let value = yaml_as_json(&text);
        let err = schemas.validate(&value, index).expect_err(file);
        assert!(format!("{err:#}").contains(offending), "{file}: {err:#}");
        let check = Command::new(BIN).arg("check").arg(&path).output().unwrap();
        let says = String::from_utf8_lossy(&check.stdout).to_string()
            + &String::from_utf8_lossy(&check.stderr);
        assert!(!check.status.success(), "check accepted {file}: {says}");
        assert!(says.contains(offending), "{file}: {says}");
    }
}
