//! Bridge definitions: YAML files in, validated [`Bridge`]s out, or every problem at once.
//!
//! Two stages, as ripgrep does with its flags: `raw` mirrors the YAML (serde rejects unknown
//! keys and wrong types with a position), `bridge` interpolates and checks the values and
//! compiles them (one file per section under `bridge/`), reporting each problem as
//! `FILE:LINE:COLUMN: message`. Before both, `screen` turns away what is not a bridge file at
//! all (without quoting it) and nesting that libyaml would take minutes over. No message
//! quotes a value that came from `${…}`.

pub mod bridge;
#[cfg(test)]
mod fuzz;
pub mod interpolate;
pub mod locate;
pub mod raw;
pub mod screen;

pub use bridge::{
    Batch, Bridge, Cursor, CursorTo, Emit, EmitMore, Items, Next, Paginate, Short, Sink, SinkMore,
    Source, Target,
};
pub use interpolate::Env;

use locate::{Locator, Pos};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(p) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                p.line,
                p.column,
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Every problem found, in file order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn push(&mut self, p: Problem) {
        self.0.push(p)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

/// Loads every `*.yaml`/`*.yml` of a directory. Any problem in any file refuses the whole set.
pub fn load_dir(dir: &Path, env: &Env) -> Result<Vec<Bridge>, Problems> {
    load_paths(&[dir.to_path_buf()], env)
}

/// Loads files and directories (each directory's `*.yaml`/`*.yml`, not recursive).
pub fn load_paths(paths: &[PathBuf], env: &Env) -> Result<Vec<Bridge>, Problems> {
    let mut problems = Problems::default();
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            match std::fs::read_dir(p) {
                Ok(rd) => {
                    let mut found: Vec<PathBuf> = rd
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|f| is_bridge_file(f))
                        .collect();
                    found.sort();
                    files.extend(found);
                }
                Err(e) => problems.push(problem(p, None, format!("cannot read directory: {e}"))),
            }
        } else if p.symlink_metadata().is_ok() {
            // A dangling link too: `screen::read` says what it is.
            files.push(p.clone());
        } else {
            problems.push(problem(p, None, "no such file or directory"));
        }
    }

    let mut bridges: Vec<(Bridge, Option<Pos>)> = Vec::new();
    // Where each name was first seen (100,000 files must not cost a comparison of each name
    // with each).
    let mut named: HashMap<String, usize> = HashMap::new();
    for file in &files {
        let text = match screen::read(file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem(file, None, e));
                continue;
            }
        };
        match parse_file(file, &text, env) {
            Ok(b) => {
                let name_pos = Locator::new(&text).value("name");
                if let Some((other, _)) = named.get(&b.name).map(|&i| &bridges[i]) {
                    problems.push(problem(
                        file,
                        name_pos,
                        format!(
                            "duplicate bridge name `{}` (also in {})",
                            b.name,
                            other.file.display()
                        ),
                    ));
                } else {
                    named.insert(b.name.clone(), bridges.len());
                    bridges.push((b, name_pos));
                }
            }
            Err(p) => problems.0.extend(p.0),
        }
    }
    if problems.is_empty() {
        Ok(bridges.into_iter().map(|(b, _)| b).collect())
    } else {
        Err(problems)
    }
}

/// A directory entry that should hold a bridge: any `*.yaml`/`*.yml` that is not hidden,
/// whatever it is (a dangling link or a directory so named is an error, not skipped).
fn is_bridge_file(p: &Path) -> bool {
    let hidden = p
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'));
    let ext = p.extension().and_then(|e| e.to_str());
    !hidden && matches!(ext, Some("yaml") | Some("yml"))
}

fn problem(file: &Path, pos: Option<Pos>, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_path_buf(),
        pos,
        message: message.into(),
    }
}

/// Parses and validates one file's text.
pub fn parse_file(file: &Path, text: &str, env: &Env) -> Result<Bridge, Problems> {
    if let Err((pos, message)) = screen::screen(text) {
        return Err(Problems(vec![problem(file, pos, message)]));
    }
    let raw: raw::RawBridge = match serde_yaml::from_str(text) {
        Ok(r) => r,
        Err(e) => {
            let pos = e.location().map(|l| Pos {
                line: l.line(),
                column: l.column(),
            });
            return Err(Problems(vec![problem(file, pos, yaml_message(&e))]));
        }
    };
    let loc = Locator::new(text);
    let (bridge, problems) = bridge::Validator::new(file, &loc, env).bridge(raw);
    match bridge {
        Some(mut b) if problems.is_empty() => {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(text.as_bytes());
            for s in &b.secrets {
                h.update([0]);
                h.update(s.as_bytes());
            }
            b.revision.copy_from_slice(&h.finalize()[..12]);
            Ok(b)
        }
        _ => Err(problems),
    }
}

/// A bridge for a unit test, from YAML (`testkit::BridgeYaml` builds it) as if read from
/// `NAME.yaml`, with no environment; panics with the problems if it does not load.
#[cfg(test)]
pub(crate) fn test_bridge(name: &str, yaml: &str) -> Bridge {
    let file = PathBuf::from(format!("{name}.yaml"));
    parse_file(&file, yaml, &Env::fixed(&[], None))
        .unwrap_or_else(|p| panic!("the test's bridge does not load:\n{p}"))
}

/// The forms of `source.paginate.next`, for messages about one that is none of them.
pub(crate) const NEXT_FORMS: &str = "give `link`, `{url: JSONPATH}`, `{param: NAME, from: JSONPATH}`, `{variable: NAME, from: JSONPATH}`, `{page: NAME, start: N}` or `{offset: NAME, start: N}` (one of them, no other keys)";

/// serde_yaml's message without its trailing position (we print our own), with a hint for
/// unknown keys and plain words for the untagged enums.
fn yaml_message(e: &serde_yaml::Error) -> String {
    let full = e.to_string();
    let mut msg = match full.find(" at line ") {
        Some(i) => full[..i].to_string(),
        None => full,
    };
    if let Some(start) = msg.find("unknown field `") {
        let rest = &msg[start + "unknown field `".len()..];
        if let Some(end) = rest.find('`') {
            let field = rest[..end].to_string();
            let expected: Vec<&str> = rest[end + 1..]
                .split('`')
                .enumerate()
                .filter(|(i, _)| i % 2 == 1)
                .map(|(_, s)| s)
                .collect();
            let best = expected
                .iter()
                .map(|k| (strsim::jaro_winkler(&field, k), *k))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let prefix = &msg[..start];
            msg = match best {
                Some((score, k)) if score > 0.7 => {
                    format!("{prefix}unknown key `{field}` (did you mean `{k}`?)")
                }
                _ => format!(
                    "{prefix}unknown key `{field}` (known keys: {})",
                    expected.join(", ")
                ),
            };
        }
    }
    // "expected struct RawSchedule" means nothing to an operator.
    if let Some(i) = msg.find("expected struct Raw") {
        msg.replace_range(i.., "expected a mapping");
    }
    if msg.contains("untagged enum RawSecret") {
        msg = msg.replace(
            "data did not match any variant of untagged enum RawSecret",
            "expected a string or a list of strings",
        );
    }
    if msg.contains("untagged enum RawNext") {
        msg = msg.replace(
            "data did not match any variant of untagged enum RawNext",
            NEXT_FORMS,
        );
    }
    msg
}
