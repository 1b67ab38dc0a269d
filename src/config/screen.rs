//! What a file must be before serde reads it as a bridge: a regular file of at most
//! [`MAX_BYTES`] of text, whose YAML is a mapping with bridge keys, nested at most
//! [`MAX_DEPTH`] levels.
//!
//! A file that is not a bridge (a symlink to `/etc/shadow`, another program's config, a
//! dangling link, a FIFO) is refused with a message that quotes nothing from it: serde would
//! quote its first line as an "unknown key" (docs/configuration.md#bridge-files). The depth limit
//! is checked here, on a streaming parser that stops at the limit, because libyaml (under
//! serde_yaml) takes time quadratic in the nesting of flow collections (100k levels: minutes).

use super::locate::Pos;
use std::io::Read;
use std::path::Path;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::Marker;

/// Deepest nesting of mappings and lists in a bridge file (a POST body included). The
/// schema itself needs 4.
pub const MAX_DEPTH: usize = 64;

/// Largest bridge file.
pub const MAX_BYTES: u64 = 1 << 20;

/// The top-level keys of a bridge file (`raw::RawBridge`).
pub const BRIDGE_KEYS: [&str; 7] = [
    "name",
    "description",
    "schedule",
    "source",
    "items",
    "emit",
    "sinks",
];

/// Reads a bridge file, refusing anything that is not a regular file of text (following a
/// symlink, and saying so). Errors name what the path is, never what it holds.
pub fn read(path: &Path) -> Result<String, String> {
    let link = std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.file_type().is_symlink())
        .map(|_| {
            std::fs::read_link(path)
                .map(|t| format!("a symlink to {}", t.display()))
                .unwrap_or_else(|_| "a symlink".to_string())
        });
    let meta = match (std::fs::metadata(path), &link) {
        (Ok(m), _) => m,
        (Err(e), Some(l)) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{l}, which does not exist (a dangling link): not a bridge file"
            ));
        }
        (Err(e), Some(l)) => return Err(format!("{l} that cannot be followed: {e}")),
        (Err(e), None) => return Err(format!("cannot read: {e}")),
    };
    if !meta.is_file() {
        let kind = kind(&meta);
        return Err(match link {
            Some(l) => format!("{l}, which is {kind}: not a bridge file"),
            None => format!("{kind}, not a bridge file"),
        });
    }
    let too_big = || {
        format!(
            "larger than a bridge file may be ({} bytes): not a bridge file",
            MAX_BYTES
        )
    };
    if meta.len() > MAX_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(too_big());
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8 text: not a bridge file".to_string())
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Why a text cannot be read as a bridge, if it cannot; the message quotes nothing of it.
/// `Ok` also for a YAML syntax error in a file that looks like a bridge: serde_yaml reports it
/// with its own (better known) words.
pub fn screen(text: &str) -> Result<(), (Option<Pos>, String)> {
    let mut parser = Parser::new_from_str(text);
    let mut seen = Seen::default();
    loop {
        match parser.next_token() {
            Ok((Event::StreamEnd, _)) => return seen.verdict(),
            Ok((event, mark)) => seen.event(&event, mark)?,
            // yaml_rust2 counts flow levels in a u8, and its scanner may look that far ahead
            // before the parser gives the 65th level.
            Err(e) if e.info() == "recursion limit exceeded" => {
                return Err(too_deep(*e.marker()));
            }
            Err(e) => {
                // serde_yaml's message, unless the file does not look like a bridge (then
                // nothing of it is quoted, and libyaml's words quote nothing either, but it
                // could accept what yaml_rust2 refused and go on to quote a key) or libyaml
                // would take long to get there.
                if seen.bridge_like() && flow_depth_bound(text) <= 1000 {
                    return Ok(());
                }
                return Err((Some(pos(*e.marker())), format!("YAML syntax: {}", e.info())));
            }
        }
    }
}

fn too_deep(mark: Marker) -> (Option<Pos>, String) {
    (
        Some(pos(mark)),
        format!("nested deeper than {MAX_DEPTH} levels"),
    )
}

/// What the parser has shown of a text so far.
#[derive(Default)]
struct Seen {
    depth: usize,
    docs: usize,
    /// What the first document holds at its top.
    top: Option<&'static str>,
    /// Nodes met directly inside the first document's top-level mapping: keys are the even
    /// ones.
    nodes: usize,
    /// Top-level keys that are (or are a typo away from) bridge keys, and others.
    bridge_keys: usize,
    other_keys: usize,
    /// Every event so far, and how many times aliases have sent a reader back to an anchor
    /// (an alias inside an anchored node counts again each time that node is repeated).
    events: usize,
    jumps: u64,
    /// Per anchor, the jumps its node holds; and the open collections, with their anchor and
    /// the jumps when they began.
    anchors: std::collections::HashMap<usize, u64>,
    open: Vec<(usize, u64)>,
}

impl Seen {
    /// A file is taken for a bridge when at least half its keys are bridge keys: one `name:`
    /// or `description:` does not make a GitHub workflow or a Helm chart a bridge (whose
    /// other keys serde's "unknown field" message would quote).
    fn bridge_like(&self) -> bool {
        self.bridge_keys > 0 && self.bridge_keys >= self.other_keys
    }

    /// Takes in one event; refuses nesting past [`MAX_DEPTH`] and an alias bomb as soon as
    /// they are met.
    fn event(&mut self, event: &Event, mark: Marker) -> Result<(), (Option<Pos>, String)> {
        self.events += 1;
        self.repeats(event, mark)?;
        let node = match event {
            Event::DocumentStart => {
                self.docs += 1;
                None
            }
            Event::Scalar(s, ..) => Some(("a single value", Some(s.as_str()))),
            Event::Alias(_) => Some(("an alias", None)),
            Event::SequenceStart(..) => Some(("a list", None)),
            Event::MappingStart(..) => Some(("a mapping", None)),
            _ => None,
        };
        if let Some((what, scalar)) = node {
            self.node(what, scalar);
        }
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                self.depth += 1;
                if self.depth > MAX_DEPTH {
                    return Err(too_deep(mark));
                }
            }
            Event::MappingEnd | Event::SequenceEnd => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Ok(())
    }

    /// Counts what aliases repeat, as serde_yaml does when it reads the file (each alias a
    /// jump back to its anchor, and the aliases inside that node again), and refuses at the
    /// alias where the count passes 100 times the events read so far. serde_yaml refuses past
    /// 100 times the whole file's events with "repetition limit exceeded" and no place; this
    /// is at least as strict and names the alias. No bridge repeats anything near that often.
    fn repeats(&mut self, event: &Event, mark: Marker) -> Result<(), (Option<Pos>, String)> {
        match event {
            Event::Alias(id) => {
                let inside = self.anchors.get(id).copied().unwrap_or(0);
                self.jumps = self.jumps.saturating_add(1).saturating_add(inside);
                if self.jumps > 100 * self.events as u64 {
                    return Err((
                        Some(pos(mark)),
                        format!(
                            "YAML aliases repeat their anchors {} times in {} nodes (an alias bomb?): at most 100 times the nodes",
                            self.jumps, self.events
                        ),
                    ));
                }
            }
            Event::Scalar(_, _, anchor, _) if *anchor > 0 => {
                self.anchors.insert(*anchor, 0);
            }
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                self.open.push((*anchor, self.jumps));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some((anchor, at)) = self.open.pop().filter(|(a, _)| *a > 0) {
                    self.anchors.insert(anchor, self.jumps - at);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn node(&mut self, what: &'static str, scalar: Option<&str>) {
        if self.depth == 0 && self.top.is_none() {
            self.top = Some(what);
        } else if self.depth == 1 && self.docs == 1 && self.top == Some("a mapping") {
            if self.nodes % 2 == 0 {
                if scalar.is_some_and(is_bridge_key) {
                    self.bridge_keys += 1;
                } else {
                    self.other_keys += 1;
                }
            }
            self.nodes += 1;
        }
    }

    /// At the end of the text: whether it holds a mapping of bridge keys.
    fn verdict(&self) -> Result<(), (Option<Pos>, String)> {
        let not = |holds: &str| {
            Err((
                None,
                format!("not a bridge file: it holds {holds}, not a mapping of bridge keys"),
            ))
        };
        match self.top {
            None => not("no YAML document"),
            Some("a mapping") if !self.bridge_like() => Err((
                None,
                format!(
                    "not a bridge file: most of its top-level keys are not bridge keys ({})",
                    BRIDGE_KEYS.join(", ")
                ),
            )),
            Some("a mapping") => Ok(()),
            Some(other) => not(other),
        }
    }
}

/// A bridge key, or a key a typo away from one (`shedule`, `nmae`; two for the longer keys),
/// so that a bridge with a misspelt key still gets serde's "did you mean" message.
fn is_bridge_key(k: &str) -> bool {
    let k = k.to_ascii_lowercase();
    BRIDGE_KEYS.iter().any(|b| {
        let typos = if b.len() <= 5 { 1 } else { 2 };
        strsim::osa_distance(&k, b) <= typos
    })
}

/// An upper bound of the flow nesting (`[`, `{`) of a text, counting brackets inside quotes
/// and comments too.
fn flow_depth_bound(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

fn pos(mark: Marker) -> Pos {
    Pos {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_keys_are_the_schema_keys() {
        let e = serde_yaml::from_str::<crate::config::raw::RawBridge>("zzz: 1\n")
            .err()
            .unwrap()
            .to_string();
        for k in BRIDGE_KEYS {
            assert!(e.contains(&format!("`{k}`")), "{k} in {e}");
        }
        assert_eq!(e.matches('`').count(), 2 * (BRIDGE_KEYS.len() + 1), "{e}");
    }

    #[test]
    fn what_is_not_a_bridge_is_refused_without_quoting_it() {
        for (text, want) in [
            ("", "no YAML document"),
            ("# only a comment\n", "no YAML document"),
            (
                "root:$6$abc$def:19000:0:99999:7:::\nbin:*:1::\n",
                "most of its top-level keys are not bridge keys",
            ),
            (
                "password: hunter2\nuser: root\n",
                "most of its top-level keys are not bridge keys",
            ),
            ("just some text\n", "a single value"),
            ("- a\n- b\n", "a list"),
            ("{}\n", "most of its top-level keys are not bridge keys"),
            // A GitHub workflow, a Helm chart: a `name:` among keys of their own.
            (
                "name: ci\non: [push]\njobs:\n  build: {}\npermissions: {}\n",
                "most of its top-level keys are not bridge keys",
            ),
            (
                "apiVersion: v2\nname: chart\ndescription: d\nversion: 1\ntype: application\nappVersion: 2\n",
                "most of its top-level keys are not bridge keys",
            ),
        ] {
            let (pos, msg) = screen(text).unwrap_err();
            assert_eq!(pos, None);
            assert!(msg.contains(want), "{text:?}: {msg}");
            for word in [
                "root",
                "hunter2",
                "password",
                "text",
                "abc",
                "jobs",
                "apiVersion",
            ] {
                assert!(!msg.contains(word), "{text:?} quoted: {msg}");
            }
        }
        // Bridges, even with typos, go on to serde for its messages.
        for text in [
            "shedule:\n  every: 5m\n",
            "name: a\nfoo: 1\n",
            "Sinks: []\n",
            "name: \"x\nschedule: 1\n",
        ] {
            assert_eq!(screen(text), Ok(()), "{text:?}");
        }
        // A syntax error in something that is not a bridge: yaml_rust2's words, no quote.
        let (pos, msg) = screen("root: x: y\n").unwrap_err();
        assert!(pos.is_some() && msg.starts_with("YAML syntax: "), "{msg}");
    }

    #[test]
    fn deep_nesting_stops_at_the_limit_quickly() {
        let n = 200_000;
        for text in [
            format!("sinks: {}{}\n", "[".repeat(n), "]".repeat(n)),
            format!("sinks: {}1{}\n", "{a: ".repeat(n), "}".repeat(n)),
            format!("sinks:\n{}", "- ".repeat(n)),
        ] {
            let t = std::time::Instant::now();
            let (pos, msg) = screen(&text).unwrap_err();
            assert!(msg.contains("nested deeper than 64 levels"), "{msg}");
            assert!(pos.is_some());
            assert!(
                t.elapsed() < std::time::Duration::from_secs(2),
                "{:?}",
                t.elapsed()
            );
        }
        let ok = format!(
            "sinks: {}{}\n",
            "[".repeat(MAX_DEPTH - 1),
            "]".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(screen(&ok), Ok(()));
    }

    #[test]
    fn files_that_are_not_regular_are_named_for_what_they_are() {
        let d = tempfile::tempdir().unwrap();
        let p = |n: &str| d.path().join(n);
        std::os::unix::fs::symlink(p("nowhere"), p("dangling.yaml")).unwrap();
        std::os::unix::fs::symlink(d.path(), p("dir.yaml")).unwrap();
        std::fs::write(p("big.yaml"), vec![b'#'; MAX_BYTES as usize + 1]).unwrap();
        std::fs::write(p("bin.yaml"), [0xff, 0xfe, 0x00]).unwrap();
        let err = |n: &str| read(&p(n)).unwrap_err();
        assert!(err("dangling.yaml").contains("dangling link"));
        assert!(err("dir.yaml").contains("which is a directory"));
        assert!(err("big.yaml").contains("larger than a bridge file"));
        assert!(err("bin.yaml").contains("not UTF-8"));
    }
}
