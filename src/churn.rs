//! Churn: which JSON paths of a bridge's items change, how often and in how many items, counted
//! from the JSON Patches of the updates a poll already builds; and the YAML that would quiet the
//! noise, with its evidence (docs/testing-bridges.md#churn-and-suggest). Pure: a poll's plan
//! fills a [`Tally`], the poll's caller adds it to the bridge's [`Counters`].
//!
//! Small by construction: at most [`MAX_PATHS`] paths a bridge (array indexes generalised to
//! `[*]`, so `$.tags[0]` and `$.tags[7]` are one path), at most [`MAX_WATCHED`] items watched for
//! flapping.

use crate::extract::Hash;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// Paths counted per bridge; a path first seen when the table is full is counted in
/// [`Counters::other_paths`] only.
pub const MAX_PATHS: usize = 128;

/// Items whose value before their last update is remembered (to see one return to it).
pub const MAX_WATCHED: usize = 64;

/// Updates kept of one poll for the flapping check (the counts of paths are exact).
const MAX_UPDATES: usize = 4096;

/// One poll's updates: per path, the items whose update changed it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Tally {
    paths: BTreeMap<String, u64>,
    /// (key, hash before, hash after) of the first [`MAX_UPDATES`] updates.
    updates: Vec<(String, Hash, Hash)>,
}

impl Tally {
    /// Counts one item's update: its key, its hashes before and after, and its JSON Patch.
    pub fn updated(&mut self, key: &str, before: Hash, after: Hash, patch: &str) {
        let mut seen: Vec<String> = Vec::new();
        if let Ok(serde_json::Value::Array(ops)) = serde_json::from_str(patch) {
            for op in &ops {
                if let Some(p) = op.get("path").and_then(|p| p.as_str()) {
                    let g = general(p);
                    if !seen.contains(&g) {
                        seen.push(g);
                    }
                }
            }
        }
        for g in seen {
            *self.paths.entry(g).or_default() += 1;
        }
        if self.updates.len() < MAX_UPDATES {
            self.updates.push((key.to_string(), before, after));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.updates.is_empty()
    }
}

/// A JSON Pointer of a patch as a JSONPath, array indexes as `[*]`: `/tags/3/name` is
/// `$.tags[*].name`.
pub fn general(pointer: &str) -> String {
    let mut out = String::from("$");
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) || seg == "-" {
            out.push_str("[*]");
        } else if !seg.is_empty()
            && seg
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            out.push('.');
            out.push_str(&seg);
        } else {
            out.push_str(&format!("[{}]", serde_json::Value::from(seg)));
        }
    }
    out
}

/// How one path changed over the polls counted.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathChurn {
    pub path: String,
    /// Polls in which at least one item's update changed it.
    pub polls: u64,
    /// Item updates that changed it, over all those polls.
    pub items: u64,
    /// The mean share of the poll's items it changed in, over the polls it changed in (0..1).
    pub share: f64,
}

/// A bridge's churn since the process started.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    /// Polls compared (a baseline, a dry run or a 304 is not one).
    pub polls: u64,
    paths: BTreeMap<String, PathChurn>,
    /// Path updates not counted by path: the table was full.
    pub other_paths: u64,
    /// Updates that brought an item back to the value it had before its last update (A→B→A).
    pub flaps: u64,
    /// The last item seen flapping, as an example.
    pub flapped: Option<String>,
    /// Per watched item, the hash it had before its last update.
    before: HashMap<String, Hash>,
}

impl Counters {
    /// Adds one compared poll of `items` items.
    pub fn add(&mut self, tally: &Tally, items: usize) {
        self.polls += 1;
        let items = items.max(1) as f64;
        for (path, n) in &tally.paths {
            if !self.paths.contains_key(path) && self.paths.len() >= MAX_PATHS {
                self.other_paths += n;
                continue;
            }
            let c = self.paths.entry(path.clone()).or_default();
            c.path.clone_from(path);
            c.share =
                (c.share * c.polls as f64 + (*n as f64 / items).min(1.0)) / (c.polls + 1) as f64;
            c.polls += 1;
            c.items += n;
        }
        for (key, before, after) in &tally.updates {
            if self.before.get(key) == Some(after) {
                self.flaps += 1;
                self.flapped = Some(key.clone());
            }
            if self.before.len() < MAX_WATCHED || self.before.contains_key(key) {
                self.before.insert(key.clone(), *before);
            }
        }
    }

    /// The paths, most churning first: by polls, then share, then path.
    pub fn ranked(&self) -> Vec<PathChurn> {
        let mut v: Vec<PathChurn> = self.paths.values().cloned().collect();
        v.sort_by(|a, b| {
            b.polls
                .cmp(&a.polls)
                .then(b.share.total_cmp(&a.share))
                .then(a.path.cmp(&b.path))
        });
        v
    }

    /// What would quiet the noise, each with its evidence.
    pub fn suggest(&self) -> Vec<Suggestion> {
        let mut out = Vec::new();
        let noisy: Vec<PathChurn> = self
            .ranked()
            .into_iter()
            .filter(|p| {
                self.polls >= 2 && p.polls as f64 >= 0.9 * self.polls as f64 && p.share >= 0.9
            })
            .collect();
        if !noisy.is_empty() {
            let evidence = noisy.iter().map(|p| evidence(p, self.polls)).collect();
            let list: Vec<String> = noisy.iter().map(|p| format!("\"{}\"", p.path)).collect();
            out.push(Suggestion {
                yaml: format!("items:\n  exclude: [{}]", list.join(", ")),
                evidence,
            });
        }
        if self.flaps > 0 {
            let example = self.flapped.as_deref().unwrap_or_default();
            out.push(Suggestion {
                yaml: "emit:\n  settle: 2".to_string(),
                evidence: vec![format!(
                    "{} update{} brought an item back to its value before its last update (A→B→A), the last `{example}`",
                    self.flaps,
                    if self.flaps == 1 { "" } else { "s" }
                )],
            });
        }
        out
    }
}

/// "`$.fetched_at` changed in 100 % of items on 48 of 48 polls".
pub fn evidence(p: &PathChurn, polls: u64) -> String {
    format!(
        "`{}` changed in {:.0} % of items on {} of {} polls",
        p.path,
        p.share * 100.0,
        p.polls,
        polls
    )
}

/// YAML to add to the bridge file, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub yaml: String,
    pub evidence: Vec<String>,
}

/// The churn as the admin API answers it and `pollhook suggest` prints it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub polls: u64,
    pub paths: Vec<PathChurn>,
    pub other_paths: u64,
    pub flaps: u64,
    pub suggestions: Vec<Suggestion>,
}

impl Counters {
    pub fn report(&self) -> Report {
        Report {
            polls: self.polls,
            paths: self.ranked(),
            other_paths: self.other_paths,
            flaps: self.flaps,
            suggestions: self.suggest(),
        }
    }
}

/// The largest record of a bridge's counters stored: one sled record of no more than a chunk
/// (`store::values::CHUNK`), so sled never writes it to `blobs/`, which it does not reclaim.
pub const RECORD_BYTES: usize = 4096;

/// Paths and item keys longer than this are not kept in the record (their counts go to
/// [`Counters::other_paths`]; a key, to no flap count).
const RECORD_TEXT: usize = 160;

/// The length of a value's JSON (with a comma: an entry of a list).
fn json_len<T: Serialize>(value: &T) -> usize {
    serde_json::to_vec(value).map_or(RECORD_BYTES, |v| v.len())
}

/// The counters as stored with the bridge: paths as `[path, polls, items, share]`, the
/// watched items as `[key, hash in hex]`.
#[derive(Serialize, Deserialize)]
struct Record {
    polls: u64,
    other: u64,
    flaps: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flapped: Option<String>,
    paths: Vec<(String, u64, u64, f64)>,
    before: Vec<(String, String)>,
}

impl Counters {
    /// The counters as one small record (at most [`RECORD_BYTES`]): the paths most churning
    /// first and the watched items while they fit; a path left out is counted in
    /// `other_paths`, a watched item left out is watched afresh.
    pub fn to_record(&self) -> Vec<u8> {
        let mut r = Record {
            polls: self.polls,
            other: self.other_paths,
            flaps: self.flaps,
            flapped: self.flapped.clone().filter(|k| k.len() <= RECORD_TEXT),
            paths: Vec::new(),
            before: Vec::new(),
        };
        // The fixed part, then each entry with its comma and quotes, counted as it goes in.
        let mut size = json_len(&r) + 2;
        for p in self.ranked() {
            let entry = (p.path, p.polls, p.items, p.share);
            let n = json_len(&entry) + 1;
            if entry.0.len() > RECORD_TEXT || size + n > RECORD_BYTES * 3 / 4 {
                r.other += entry.2;
                continue;
            }
            size += n;
            r.paths.push(entry);
        }
        for (key, hash) in &self.before {
            let entry = (key.clone(), hex::encode(hash));
            let n = json_len(&entry) + 1;
            if key.len() <= RECORD_TEXT && size + n <= RECORD_BYTES {
                size += n;
                r.before.push(entry);
            }
        }
        serde_json::to_vec(&r).unwrap_or_default()
    }

    /// The counters a record holds; None for one that cannot be read (counting starts afresh).
    pub fn from_record(bytes: &[u8]) -> Option<Counters> {
        let r: Record = serde_json::from_slice(bytes).ok()?;
        let mut c = Counters {
            polls: r.polls,
            other_paths: r.other,
            flaps: r.flaps,
            flapped: r.flapped,
            ..Default::default()
        };
        for (path, polls, items, share) in r.paths.into_iter().take(MAX_PATHS) {
            let p = PathChurn {
                path: path.clone(),
                polls,
                items,
                share,
            };
            c.paths.insert(path, p);
        }
        for (key, hash) in r.before.into_iter().take(MAX_WATCHED) {
            let hash = hex::decode(hash).ok().and_then(|h| h.try_into().ok());
            c.before.extend(hash.map(|h| (key, h)));
        }
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> Hash {
        [n; 16]
    }

    #[test]
    fn pointers_become_general_paths() {
        assert_eq!(general("/fetched_at"), "$.fetched_at");
        assert_eq!(general("/tags/3/name"), "$.tags[*].name");
        assert_eq!(general("/a~1b/c d"), "$[\"a/b\"][\"c d\"]");
        assert_eq!(general(""), "$");
    }

    #[test]
    fn a_path_that_changes_in_every_item_on_every_poll_is_excluded_with_its_evidence() {
        let mut c = Counters::default();
        for poll in 0..4u8 {
            let mut t = Tally::default();
            for item in 0..10u8 {
                let patch = r#"[{"op":"replace","path":"/fetched_at","value":1}]"#;
                t.updated(&item.to_string(), h(poll), h(poll + 1), patch);
            }
            if poll % 2 == 0 {
                t.updated(
                    "3",
                    h(poll),
                    h(poll + 1),
                    r#"[{"op":"add","path":"/tags/2","value":1}]"#,
                );
            }
            c.add(&t, 10);
        }
        let r = c.report();
        assert_eq!(r.paths[0].path, "$.fetched_at");
        assert_eq!((r.paths[0].polls, r.paths[0].items), (4, 40));
        assert_eq!(r.paths[1].path, "$.tags[*]");
        assert_eq!(
            r.suggestions[0].evidence,
            ["`$.fetched_at` changed in 100 % of items on 4 of 4 polls"]
        );
        assert_eq!(
            r.suggestions[0].yaml,
            "items:\n  exclude: [\"$.fetched_at\"]"
        );
        assert_eq!(r.flaps, 0);
        assert_eq!(r.suggestions.len(), 1);
    }

    #[test]
    fn an_item_that_returns_to_its_value_is_a_flap_and_suggests_settle() {
        let mut c = Counters::default();
        let p = r#"[{"op":"replace","path":"/v","value":1}]"#;
        for (before, after) in [(1, 2), (2, 1), (1, 3)] {
            let mut t = Tally::default();
            t.updated("k", h(before), h(after), p);
            c.add(&t, 50);
        }
        assert_eq!(c.flaps, 1);
        let s = c.suggest();
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(
            s[0].yaml.contains("settle") && s[0].evidence[0].contains("`k`"),
            "{s:?}"
        );
    }

    #[test]
    fn the_record_round_trips_and_stays_within_its_bytes_however_full() {
        let mut c = Counters::default();
        let p = r#"[{"op":"replace","path":"/v","value":1}]"#;
        for (before, after) in [(1, 2), (2, 1)] {
            let mut t = Tally::default();
            t.updated("k", h(before), h(after), p);
            c.add(&t, 4);
        }
        let back = Counters::from_record(&c.to_record()).unwrap();
        assert_eq!(back.report(), c.report());
        assert_eq!(back.before, c.before);
        // Full tables of long paths and keys: the record keeps what fits, the rest counted.
        let mut t = Tally::default();
        for i in 0..MAX_PATHS + 5 {
            let patch = format!(
                r#"[{{"op":"add","path":"/{}{i}","value":1}}]"#,
                "p".repeat(60)
            );
            t.updated(&format!("{}{i}", "k".repeat(100)), h(0), h(1), &patch);
        }
        c.add(&t, 1);
        let record = c.to_record();
        assert!(record.len() <= RECORD_BYTES, "{}", record.len());
        let back = Counters::from_record(&record).unwrap();
        let kept = back.ranked().len();
        assert!(kept > 10 && kept < MAX_PATHS, "{kept}");
        let all = |c: &Counters| c.ranked().iter().map(|p| p.items).sum::<u64>() + c.other_paths;
        assert_eq!(all(&back), all(&c));
        assert_eq!((back.polls, back.flaps), (c.polls, c.flaps));
        assert!(Counters::from_record(b"not json").is_none());
    }

    #[test]
    fn the_table_of_paths_is_capped() {
        let mut c = Counters::default();
        let mut t = Tally::default();
        for i in 0..MAX_PATHS + 5 {
            let patch = format!(r#"[{{"op":"add","path":"/f{i}","value":1}}]"#);
            t.updated("k", h(0), h(1), &patch);
        }
        c.add(&t, 1);
        assert_eq!((c.ranked().len(), c.other_paths), (MAX_PATHS, 5));
    }
}
