//! Random YAML into the loader: it never panics, and no message quotes an interpolated value.

use super::screen::BRIDGE_KEYS;
use super::{Env, load_paths, parse_file};
use proptest::prelude::*;
use serde_yaml::Value;
use std::path::Path;

const VAR: &str = "zq-ENV-SECRET-7731";
const CRED: &str = "zq-CRED-SECRET-5521";
const FILE: &str = "zq-FILE-SECRET-9917";

/// The same bounded budget for each property: quick in CI, no regression files in `src/`.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// A credentials directory and a file to interpolate, made once for the whole run.
fn secrets_dir() -> Result<&'static Path, String> {
    static DIR: std::sync::OnceLock<Result<tempfile::TempDir, String>> = std::sync::OnceLock::new();
    DIR.get_or_init(make_secrets_dir)
        .as_ref()
        .map(|d| d.path())
        .map_err(Clone::clone)
}

fn make_secrets_dir() -> Result<tempfile::TempDir, String> {
    let d = tempfile::tempdir().map_err(|e| format!("temp dir: {e}"))?;
    std::fs::write(d.path().join("tok"), format!("{CRED}\n"))
        .map_err(|e| format!("credential: {e}"))?;
    std::fs::write(d.path().join("file"), FILE).map_err(|e| format!("secret file: {e}"))?;
    Ok(d)
}

fn env() -> Result<Env, TestCaseError> {
    let dir = secrets_dir().map_err(TestCaseError::fail)?;
    Ok(Env::fixed(&[("SECRET_VAR", VAR)], Some(dir)))
}

/// Loads `text` as one file and checks that nothing quotes a secret.
fn load(text: &str) -> Result<(), TestCaseError> {
    let problems = match parse_file(Path::new("fuzz.yaml"), text, &env()?) {
        Ok(_) => return Ok(()),
        Err(p) => p.to_string(),
    };
    for s in [VAR, CRED, FILE] {
        assert!(
            !problems.contains(s),
            "`{s}` quoted in:\n{problems}\nfor:\n{text}"
        );
    }
    Ok(())
}

/// Values a field may take, as written: durations, secrets from each place they come from,
/// URLs, JSONPaths and words with them in, references broken or escaped, and words the
/// loader knows.
const SCALARS: [&str; 17] = [
    "5m",
    "100ms",
    "${SECRET_VAR}",
    "5${SECRET_VAR}",
    "${credential:tok}",
    "https://u:${SECRET_VAR}@h.example/",
    "${SECRET_VAR}://x",
    "$[?(@.a == '${SECRET_VAR}')]",
    "${MISSING}",
    "$${SECRET_VAR}",
    "${",
    "$[*]",
    "$.id",
    "console",
    "link",
    "0 9 * * 1",
    "whsec_${SECRET_VAR}",
];

/// `${file:…}` of the secret file, alone and in a URL.
fn file_scalars() -> Vec<String> {
    // Without the directory every load fails (`env`), so this is never read then.
    let path = secrets_dir().map(|d| d.join("file")).unwrap_or_default();
    let file = format!("${{file:{}}}", path.display());
    let url = format!("https://h.example/{file}/x?access=${{SECRET_VAR}}");
    vec![file, url]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        17 => proptest::sample::select(SCALARS.to_vec()).prop_map(String::from),
        2 => proptest::sample::select(file_scalars()),
        1 => "[ -~]{0,12}",
        1 => "\\PC{0,8}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn key() -> impl Strategy<Value = String> {
    let known = [
        "every",
        "cron",
        "jitter",
        "url",
        "method",
        "headers",
        "body",
        "timeout",
        "max_body",
        "paginate",
        "next",
        "max_pages",
        "select",
        "key",
        "include",
        "exclude",
        "events",
        "first_poll",
        "deletes",
        "secret",
        "signature",
        "retry",
        "Authorization",
    ];
    prop_oneof![
        proptest::sample::select(BRIDGE_KEYS.to_vec()).prop_map(String::from),
        proptest::sample::select(known.to_vec()).prop_map(String::from),
        "[a-z_]{1,8}",
    ]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        4 => scalar().prop_map(Value::String),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => any::<i32>().prop_map(|n| Value::Number(n.into())),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Sequence),
            prop::collection::vec((key(), inner), 0..6).prop_map(|kv| {
                Value::Mapping(kv.into_iter().map(|(k, v)| (Value::String(k), v)).collect())
            }),
        ]
    })
}

/// A top-level mapping with bridge keys (so it passes the screen and reaches validation).
fn bridge_like() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            proptest::sample::select(BRIDGE_KEYS.to_vec()).prop_map(String::from),
            value(),
        ),
        1..8,
    )
    .prop_map(|kv| {
        let m: serde_yaml::Mapping = kv.into_iter().map(|(k, v)| (Value::String(k), v)).collect();
        serde_yaml::to_string(&Value::Mapping(m)).unwrap_or_default()
    })
}

const GOOD: &str = "name: fuzz\nschedule:\n  every: 5m\nsource:\n  url: https://api.example.com/x\n  headers:\n    Authorization: Bearer ${SECRET_VAR}\n  timeout: 10s\nitems:\n  select: \"$[*]\"\n  key: \"$.id\"\nsinks:\n  - url: https://hooks.example.com/x\n    secret: ${credential:tok}\n    timeout: 3s\n    retry: [1s, 2s]\n";

/// What the text edits put in besides a scalar: the marks YAML reads as structure.
const PIECES: [&str; 10] = [
    "\n", ": ", "- ", "[", "{", "\"", "&a ", "*a", "!!int ", "\t",
];

/// Text edits: (where, as a fraction of the length; what to put there; how much to cut).
fn edits() -> impl Strategy<Value = Vec<(f64, String, usize)>> {
    let piece = prop_oneof![
        10 => proptest::sample::select(PIECES.to_vec()).prop_map(String::from),
        1 => scalar(),
    ];
    prop::collection::vec((0.0..1.0f64, piece, 0usize..4), 0..6)
}

fn edit(text: &str, edits: &[(f64, String, usize)]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for (at, put, cut) in edits {
        let i = ((chars.len() as f64) * at) as usize;
        let end = (i + cut).min(chars.len());
        chars.splice(i..end, put.chars());
    }
    chars.into_iter().collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        load(&String::from_utf8_lossy(&bytes))?;
        // And as a file, not UTF-8 included.
        let d = tempfile::tempdir().map_err(|e| TestCaseError::fail(format!("temp dir: {e}")))?;
        let f = d.path().join("b.yaml");
        std::fs::write(&f, &bytes).map_err(|e| TestCaseError::fail(format!("write: {e}")))?;
        let _ = load_paths(&[f], &env()?);
    }

    #[test]
    fn random_yaml_text_never_panics(text in "[a-z{}\\[\\]:,\\-#&*!|>'\" \n\t$]{0,300}") {
        load(&text)?;
    }

    #[test]
    fn random_yaml_documents_never_panic_nor_leak(text in bridge_like(), e in edits()) {
        load(&text)?;
        load(&edit(&text, &e))?;
    }

    #[test]
    fn a_bridge_with_random_values_and_edits_never_panics_nor_leaks(
        fields in prop::collection::vec((0usize..12, scalar()), 1..4),
        e in edits(),
    ) {
        // Each chosen field's value replaced by a random one.
        let mut text = GOOD.to_string();
        let slots = ["fuzz", "5m", "https://api.example.com/x", "Bearer ${SECRET_VAR}", "10s",
            "\"$[*]\"", "\"$.id\"", "https://hooks.example.com/x", "${credential:tok}", "3s",
            "1s", "2s"];
        for (slot, v) in &fields {
            let quoted = serde_yaml::to_string(v).unwrap_or_default();
            text = text.replacen(slots[*slot], quoted.trim_end(), 1);
        }
        load(&text)?;
        load(&edit(&text, &e))?;
    }
}
