//! `pollhook check` and every load: each bad input named with its file, line and column.

use pollhook::config::{Env, load_paths};
use std::path::PathBuf;

fn check(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let env = Env::fixed(&[("SET_VAR", "v")], None);
    let out = match load_paths(&[dir.path().to_path_buf()], &env) {
        Ok(b) => vec![format!("ok: {}", b.len())],
        Err(p) => {
            p.0.iter()
                .map(|p| {
                    p.to_string()
                        .replace(&format!("{}/", dir.path().display()), "")
                })
                .collect()
        }
    };
    (dir, out)
}

const GOOD: &str = "schedule:\n  every: 5m\nsource:\n  url: https://api.example.com/x\nitems:\n  select: \"$[*]\"\n  key: \"$.id\"\nsinks:\n  - url: console\n";

/// GOOD with one edit; an edit that finds nothing to replace fails, so no case tests GOOD
/// itself by mistake.
fn good_with(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "`{from}` is not in GOOD");
    GOOD.replace(from, to)
}

#[test]
fn each_bad_input_has_its_message_and_place() {
    let cases: &[(&str, &str)] = &[
        (
            "name: \"x\nschedule: 1\n",
            "a.yaml:3:1: found unexpected end of stream",
        ),
        (
            "name: x\nschedule: 5m\n",
            "a.yaml:2:11: schedule: invalid type: string \"5m\", expected a mapping",
        ),
        (
            "shedule:\n  every: 5m\n",
            "a.yaml:1:1: unknown key `shedule` (did you mean `schedule`?)",
        ),
        (
            &good_with("  every: 5m", "  every: 5m\n  evry: 1m"),
            "a.yaml:3:3: schedule: unknown key `evry` (did you mean `every`?)",
        ),
        (
            &good_with("every: 5m", "every: [5m]"),
            "a.yaml:2:10: schedule.every: invalid type: sequence, expected a string",
        ),
        (
            &good_with("every: 5m", "every: 5 fortnights"),
            "a.yaml:2:10: schedule.every: bad duration `5 fortnights`",
        ),
        (
            &good_with("every: 5m", "every: 100ms"),
            "a.yaml:2:10: schedule.every: `100ms` is out of range (500ms .. 7days)",
        ),
        (
            &good_with("every: 5m", "cron: \"0 9 * *\""),
            "a.yaml:2:9: schedule.cron: cron `0 9 * *` has 4 fields",
        ),
        (
            &good_with("every: 5m", "cron: \"0 9 * * 9\""),
            "a.yaml:2:9: schedule.cron: bad day-of-week `9`",
        ),
        (
            &good_with("\"$[*]\"", "\"$[?(@.a ==\""),
            "a.yaml:6:11: items.select: JSONPath `$[?(@.a ==` does not parse",
        ),
        (
            &good_with("url: console", "url: ftp://x"),
            "a.yaml:9:10: sinks[0].url: scheme `ftp` is not http or https",
        ),
        (
            &good_with("url: console", "url: https://h.example/x"),
            "a.yaml:9:10: sinks[0].url: a signed sink needs a `secret`",
        ),
        (
            &good_with("/x", "/${MISSING_VAR}"),
            "a.yaml:4:8: source.url: environment variable `MISSING_VAR` is not set",
        ),
        (
            &good_with("  url: https", "  method: PUT\n  url: https"),
            "a.yaml:4:11: source.method: unknown variant `PUT`",
        ),
        (
            &format!("name: Bad Name\n{GOOD}"),
            "a.yaml:1:7: name `Bad Name` must match [a-z0-9][a-z0-9_-]{0,63}",
        ),
        (
            &good_with("  key: \"$.id\"\n", "  key: \"$.id\"\nemit:\n  settle: 0\n"),
            "a.yaml:9:11: emit.settle: must be at least 1 poll",
        ),
        (
            &good_with(
                "  key: \"$.id\"\n",
                "  key: \"$.id\"\nemit:\n  settle: 5 fortnights\n",
            ),
            "a.yaml:9:11: emit.settle: bad duration",
        ),
        (
            &good_with("\n  - url: console\n", " []\n"),
            "a.yaml:8:8: sinks: give at least one sink",
        ),
    ];
    for (text, want) in cases {
        let (_d, got) = check(&[("a.yaml", text)]);
        assert_eq!(got.len(), 1, "{text}\n{got:?}");
        assert!(
            got[0].starts_with(want),
            "got  `{}`\nwant `{want}`\nfor\n{text}",
            got[0]
        );
    }
}

#[test]
fn all_problems_at_once_across_files_and_duplicate_names() {
    let bad = GOOD
        .replace("every: 5m", "every: soon")
        .replace("\"$.id\"", "\"$.[\"")
        .replace("url: console", "url: notaurl");
    let (_d, got) = check(&[
        ("a.yaml", GOOD),
        ("b.yml", &format!("name: a\n{GOOD}")),
        ("c.yaml", &bad),
        ("notes.txt", "ignored"),
    ]);
    assert_eq!(got.len(), 4, "{got:#?}");
    assert!(
        got[0].starts_with("b.yml:1:7: duplicate bridge name `a` (also in "),
        "{}",
        got[0]
    );
    assert!(
        got[1].starts_with("c.yaml:2:10: schedule.every: bad duration `soon`"),
        "{}",
        got[1]
    );
    assert!(
        got[2].starts_with("c.yaml:7:8: items.key: JSONPath"),
        "{}",
        got[2]
    );
    assert!(
        got[3].starts_with("c.yaml:9:10: sinks[0].url: not a URL"),
        "{}",
        got[3]
    );
}

#[test]
fn a_good_file_loads_with_its_defaults() {
    let (d, got) = check(&[("tokio-releases.yaml", GOOD)]);
    assert_eq!(got, ["ok: 1"]);
    let b = load_paths(
        &[d.path().join("tokio-releases.yaml")],
        &Env::fixed(&[], None),
    )
    .unwrap();
    assert_eq!(b[0].name, "tokio-releases");
    assert_eq!(b[0].source.timeout, std::time::Duration::from_secs(30));
    assert_eq!(b[0].source.max_body, 16 << 20);
    assert_eq!(b[0].emit.after_missing, 1);
    assert_eq!(b[0].sinks[0].retry.len(), 7);
    assert!(b[0].emit.created && b[0].emit.updated && b[0].emit.deleted);
}

#[test]
fn the_example_bridges_pass() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bridges");
    let b = load_paths(&[dir], &Env::fixed(&[], None)).unwrap_or_else(|p| panic!("{p}"));
    assert!(b.len() >= 3);
}

/// A YAML alias bomb (each anchor a list of nine aliases of the one before) is refused at the
/// alias where its repetitions pass the limit, with that alias's place; serde_yaml's own
/// refusal ("repetition limit exceeded") named no place. An alias or two in a real bridge is
/// still fine.
#[test]
fn an_alias_bomb_is_refused_at_its_place_and_a_plain_alias_is_not() {
    let mut body = String::from("{a: &a [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]");
    for (i, l) in ('b'..='h').enumerate() {
        let prev = (b'a' + i as u8) as char;
        body.push_str(&format!(
            ", {l}: &{l} [{}]",
            vec![format!("*{prev}"); 9].join(",")
        ));
    }
    body.push('}');
    let bomb = good_with(
        "  url: https://api.example.com/x\n",
        &format!("  url: https://api.example.com/x\n  method: POST\n  body: {body}\n"),
    );
    let (_d, got) = check(&[("a.yaml", &bomb)]);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0].starts_with("a.yaml:6:191: YAML aliases repeat their anchors"),
        "{}",
        got[0]
    );

    let plain = good_with(
        "  url: https://api.example.com/x\n",
        "  url: https://api.example.com/x\n  headers: &h {X-A: \"1\"}\nsinks_note: &n 1\n",
    );
    let (_d, got) = check(&[("a.yaml", &plain)]);
    assert!(got[0].contains("unknown key `sinks_note`"), "{got:?}");
    let plain = good_with(
        "  url: https://api.example.com/x\n",
        "  url: https://api.example.com/x\n  headers: {X-A: &v \"1\", X-B: *v}\n",
    );
    let (_d, got) = check(&[("a.yaml", &plain)]);
    assert_eq!(got, ["ok: 1"], "an alias in a bridge");
}

/// `max_pages` is capped: a million pages is a poll that never ends.
#[test]
fn max_pages_past_the_cap_is_refused_at_its_place() {
    for (n, ok) in [("1000000", false), ("0", false), ("10000", true)] {
        let text = good_with(
            "  url: https://api.example.com/x\n",
            &format!(
                "  url: https://api.example.com/x\n  paginate:\n    next: link\n    max_pages: {n}\n"
            ),
        );
        let (_d, got) = check(&[("a.yaml", &text)]);
        if ok {
            assert_eq!(got, ["ok: 1"], "{n}");
        } else {
            assert_eq!(
                got,
                [format!(
                    "a.yaml:7:16: source.paginate.max_pages: must be 1 to 10000, not {n}"
                )]
            );
        }
    }
}
