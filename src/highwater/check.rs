//! The start-up check of the store against the mark, and what it says when the store went
//! back ([`Rollback`]) or the mark is lost ([`Lost`]): the text `pollhook run` prints, naming
//! the bridges behind and the commands that recover (docs/operations.md#rollback).

use super::{COPY, FILE};
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// A bridge whose stored `seq` is below the highest ever handed out.
#[derive(Debug, Clone, PartialEq)]
pub struct Behind {
    pub bridge: String,
    /// The seq in the store now (0 when its record is gone).
    pub stored: u64,
    /// The highest seq handed out, from the mark.
    pub handed_out: u64,
    /// The store has no record of the bridge at all.
    pub missing: bool,
}

/// What the start-up check found: the store went back. Its text is what `pollhook run` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    /// The data directory, as given (for the commands to run).
    pub data: PathBuf,
    /// Bridges known to the store or to the mark.
    pub bridges: usize,
    /// Every bridge below its mark, by name.
    pub behind: Vec<Behind>,
}

impl fmt::Display for Behind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.missing {
            write!(
                f,
                "`{}` has no record (seq 0), highest handed out {}",
                self.bridge, self.handed_out
            )
        } else {
            write!(
                f,
                "`{}` is at seq {}, highest handed out {}",
                self.bridge, self.stored, self.handed_out
            )
        }
    }
}

impl fmt::Display for Rollback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data.display();
        let n = self.behind.len();
        write!(
            f,
            "rollback: the state in {} went back (a damaged or truncated log, or an older \
             copy put back): {n} of {} bridge{} {} below the highest seq ever handed out ({}): ",
            self.data.join("pollhook.sled").display(),
            self.bridges,
            if self.bridges == 1 { "" } else { "s" },
            if n == 1 { "is" } else { "are" },
            self.data.join(FILE).display(),
        )?;
        const SHOWN: usize = 3;
        for (i, b) in self.behind.iter().take(SHOWN).enumerate() {
            write!(f, "{}{b}", if i > 0 { "; " } else { "" })?;
        }
        if n > SHOWN {
            write!(f, "; and {} more", n - SHOWN)?;
        }
        write!(
            f,
            ". Starting would give their next events seqs (and ids) already sent. \
             Run `pollhook store check --data {data}` to list them, then \
             `pollhook store accept-rollback --data {data}` to move every bridge's seq past \
             the highest handed out; the changes lost with the rollback are then detected \
             again and sent as new events"
        )
    }
}

/// What the start-up check found when neither mark file can be read though the directory kept
/// them: whether the store went back cannot be told. Its text is what `pollhook run` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Lost {
    /// The data directory, as given (for the commands to run).
    pub data: PathBuf,
    /// Each file, and what is wrong with it.
    pub files: Vec<(PathBuf, String)>,
}

impl Lost {
    /// The first sentence: what was found.
    pub fn headline(&self) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|(p, what)| format!("{}: {what}", p.display()))
            .collect();
        format!(
            "rollback: cannot tell whether the state in {} went back: its high-water mark is \
             lost ({}), though this directory kept one",
            self.data.join("pollhook.sled").display(),
            files.join("; ")
        )
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.data.display();
        write!(
            f,
            "{}. Starting could give new events seqs (and ids) already sent. Restore `{FILE}` \
             and `{COPY}` from a backup of {data}, or run `pollhook store check --data {data}` \
             to see the seqs stored, then `pollhook store accept-rollback --data {data}` to \
             start the mark again from them (a seq handed out above them before, if any, is \
             then handed out again)",
            self.headline()
        )
    }
}

/// Every bridge whose stored seq is below its mark, by name. A bridge the mark has never
/// seen is never behind.
pub fn behind(marks: &HashMap<String, u64>, stored: &HashMap<String, u64>) -> Vec<Behind> {
    let mut out: Vec<Behind> = marks
        .iter()
        .filter_map(|(bridge, &handed_out)| {
            let s = stored.get(bridge);
            let now = s.copied().unwrap_or(0);
            (now < handed_out).then(|| Behind {
                bridge: bridge.clone(),
                stored: now,
                handed_out,
                missing: s.is_none(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.bridge.cmp(&b.bridge));
    out
}
