//! The high-water mark: per bridge, the highest `seq` durably handed out, kept in two small
//! files beside the sled store (`DATA/highwater` and its copy `DATA/highwater.2`), so that a
//! store that lost flushed commits (a damaged or truncated log, an old copy put back) is
//! caught at start instead of handing out the same seqs, and the ids that derive from them, to
//! other events (docs/operations.md#rollback).
//!
//! The mark is never ahead of sled: [`crate::store::Store::commit`] notes the seq it wrote, and
//! a flush takes the notes made before it started, flushes sled, and only then appends them
//! here (and fsyncs) before it returns, which is before any event of those commits is sent.
//! A crash at any point therefore leaves sled at or past the mark, and a store below it lost
//! something it had on disk.
//!
//! Two files, because one is a single witness: deleted, emptied, overwritten or cut short, it
//! reads as "no history" or as an older mark, and a store that went back at the same time
//! would start unseen. Every record goes to both, `highwater` first, each fsync'd before the
//! next; a bridge's mark is the largest seq either gives it, so one file damaged in any way
//! leaves the other to tell, and it is rewritten from the other once the store opens. Both
//! gone is seen too: a file that exists holds at least one whole frame (it is created by
//! renaming a complete, fsync'd one into place), so an empty or unreadable one is damage, and
//! once the files hold a record the store notes in sled that it keeps them (see
//! `Store::open`), so their absence is not taken for a store that never had a mark. Then
//! whether the store went back cannot be told ([`Lost`]).
//!
//! Each file is append-only: one frame per write, `PHW1`, payload length (u32 BE), payload,
//! then the first 8 bytes of the payload's SHA-256. A payload is records of name length
//! (u32 BE), name, seq (u64 BE); a bridge's mark is the largest seq any record gives it. A
//! frame is written only when some seq grew, so idle bridges cost nothing. A crash mid-append
//! leaves a short or unverifiable last frame: it is dropped, since its write never returned
//! and so nothing was handed out on its word; a crash between the two appends leaves the copy
//! without the first file's last frame, for the same reason harmless. When a file grows past
//! 4x what it holds, it is rewritten as one frame (temp file, fsync, rename, fsync of the
//! directory).
//!
//! Rooms: this file keeps the marks and the notes of commits not yet flushed ([`HighWater`]),
//! and says what opening the files found; `frame` is the record format, `witness` the two
//! files written in step, `check` the start-up check and what it says when the store went
//! back or the mark is lost.

mod check;
mod frame;
mod witness;

pub use check::{Behind, Lost, Rollback, behind};
use frame::{Read, encode, live_len, merge, read};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use witness::{Files, MarkFile, append, lower};

/// The file's name in the data directory.
pub const FILE: &str = "highwater";
/// Its copy's, written after it with the same records.
pub const COPY: &str = "highwater.2";

/// Below this size the file is never rewritten: a few hundred small appends cost nothing.
const COMPACT_FLOOR: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("high-water mark {path}: {source}")]
pub struct HighWaterError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

/// What opening one of the files found besides the marks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// The file was there (else this is its first use, or it was deleted).
    pub existed: bool,
    /// Its length as found.
    pub len: u64,
    /// It held no readable frame at all: emptied or overwritten, since a file is only ever
    /// created whole. It gave no marks.
    pub unreadable: bool,
    /// Bytes of a torn last frame that were dropped (a crash mid-append).
    pub torn: u64,
    /// Bytes of unreadable frames between readable ones that were skipped (damage to the
    /// file itself: marks in them are lost unless the other file holds them).
    pub damaged: u64,
    /// It gives some bridge a lower mark than the other file, by more than a crash between
    /// the two appends explains: cut short, or an older copy put back.
    pub lower: bool,
}

impl Found {
    /// It gave marks (possibly none, for an empty frame).
    pub fn readable(&self) -> bool {
        self.existed && !self.unreadable
    }
}

/// Something an operator should hear about the files as found.
#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    /// Damage (else the trace of a crash, which is harmless).
    pub warning: bool,
    /// Starts with the file's path.
    pub text: String,
}

/// The mark: the notes of commits not yet flushed, and the two files.
pub struct HighWater {
    /// `highwater`, then its copy.
    paths: [PathBuf; 2],
    /// Per bridge, the largest seq committed since the last flush took the notes.
    noted: Mutex<HashMap<String, u64>>,
    files: Mutex<Files>,
    found: [Found; 2],
}

/// An I/O error on the file at `path`, naming it.
fn error(path: &Path) -> impl Fn(io::Error) -> HighWaterError + '_ {
    move |source| HighWaterError {
        path: path.display().to_string(),
        source,
    }
}

impl HighWater {
    /// Reads `dir/highwater` and its copy (absent: no marks yet). Nothing is written: a file
    /// found torn, damaged, missing or behind the other is rewritten by [`HighWater::repair`]
    /// or, failing that, by the next record.
    pub fn open(dir: &Path) -> Result<HighWater, HighWaterError> {
        let paths = [dir.join(FILE), dir.join(COPY)];
        let mut a = read(&paths[0]).map_err(error(&paths[0]))?;
        let mut b = read(&paths[1]).map_err(error(&paths[1]))?;
        let mut marks = a.marks.clone();
        merge(&mut marks, &b.marks);
        a.found.lower = lower(&a, &b);
        b.found.lower = lower(&b, &a);
        let kept = a.found.readable() || b.found.readable();
        let file = |path: &Path, r: &Read| -> Result<MarkFile, HighWaterError> {
            let f = &r.found;
            let current = f.readable() && f.torn == 0 && f.damaged == 0 && r.marks == marks;
            Ok(MarkFile {
                path: path.to_path_buf(),
                file: match current {
                    true => Some(append(path).map_err(error(path))?),
                    false => None,
                },
                len: r.good as u64,
                rewrite: !current,
            })
        };
        let files = [file(&paths[0], &a)?, file(&paths[1], &b)?];
        Ok(HighWater {
            paths,
            noted: Mutex::new(HashMap::new()),
            files: Mutex::new(Files { marks, files, kept }),
            found: [a.found, b.found],
        })
    }

    /// The first file's path (the one messages name).
    pub fn path(&self) -> &Path {
        &self.paths[0]
    }

    /// What opening each file found.
    pub fn found(&self) -> &[Found; 2] {
        &self.found
    }

    /// Some file holds the marks on disk (read at open, or written since). False for a new
    /// directory, and when both files are missing or unreadable.
    pub fn kept(&self) -> bool {
        self.lock().kept
    }

    /// What was wrong with the files as found, for the log and `pollhook store check`.
    /// `marked`: the store says it keeps two files (else a missing copy is that of a mark
    /// written before there were two, and is quietly written).
    pub fn notes(&self, marked: bool) -> Vec<Note> {
        let mut out = Vec::new();
        for (i, f) in self.found.iter().enumerate() {
            let (p, o) = (self.paths[i].display(), self.paths[1 - i].display());
            let other = &self.found[1 - i];
            let from = match other.readable() {
                true => format!("; its marks were read from {o}"),
                false => String::new(),
            };
            let mut warn = |text: String| {
                out.push(Note {
                    warning: true,
                    text,
                })
            };
            if !f.existed && other.existed && (i == 0 || marked) {
                warn(format!("{p} is missing{from}"));
            }
            if f.unreadable && f.existed {
                warn(format!(
                    "{p} holds no readable record ({} bytes: emptied or overwritten){from}",
                    f.len
                ));
            }
            if f.damaged > 0 {
                warn(format!(
                    "{p} was damaged: {} unreadable bytes skipped (marks only they held are lost)",
                    f.damaged
                ));
            }
            if f.lower {
                warn(format!(
                    "{p} holds lower marks than {o} (cut short, or an older copy put back); the \
                     higher ones count"
                ));
            }
            if f.torn > 0 {
                out.push(Note {
                    warning: false,
                    text: format!(
                        "{p}: a torn last record ({} bytes, a crash mid-write) was dropped",
                        f.torn
                    ),
                });
            }
        }
        out
    }

    /// What is wrong with each file when neither can be read, for [`Lost`].
    pub fn lost_files(&self) -> Vec<(PathBuf, String)> {
        self.paths
            .iter()
            .zip(&self.found)
            .map(|(p, f)| {
                let what = match f.existed {
                    false => "missing".to_string(),
                    true => format!("no readable record in {} bytes", f.len),
                };
                (p.clone(), what)
            })
            .collect()
    }

    #[expect(
        clippy::expect_used,
        reason = "a lock is poisoned only by a panic while it is held, and nothing panics while this one is"
    )]
    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        self.files.lock().expect("high-water lock")
    }

    #[expect(
        clippy::expect_used,
        reason = "a lock is poisoned only by a panic while it is held, and nothing panics while this one is"
    )]
    fn noted_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.noted.lock().expect("high-water lock")
    }

    /// The marks, by bridge.
    pub fn marks(&self) -> HashMap<String, u64> {
        self.lock().marks.clone()
    }

    /// A commit wrote `seq` for `bridge` (not yet on disk).
    pub fn note(&self, bridge: &str, seq: u64) {
        let mut noted = self.noted_lock();
        match noted.get_mut(bridge) {
            Some(s) => *s = (*s).max(seq),
            None => {
                noted.insert(bridge.to_string(), seq);
            }
        }
    }

    /// The notes so far, for a flush about to start; they are the flush's to record.
    pub fn take_noted(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.noted_lock())
    }

    /// The notes so far, left in place for the next flush that takes them.
    pub fn noted(&self) -> HashMap<String, u64> {
        self.noted_lock().clone()
    }

    /// Gives back notes whose flush failed, so that a later flush records them.
    pub fn renote(&self, seqs: HashMap<String, u64>) {
        for (bridge, seq) in seqs {
            self.note(&bridge, seq);
        }
    }

    /// Rewrites each file found torn, damaged, missing or behind, from the marks read, so
    /// that both hold them all again. Nothing when no file could be read: there is nothing
    /// to rewrite them from (and writing empty files would hide that the mark is lost).
    pub fn repair(&self) -> Result<(), HighWaterError> {
        let mut f = self.lock();
        if f.kept && f.stale() {
            f.compact()?;
        }
        Ok(())
    }

    /// Starts a lost mark again from `seqs`: both files rewritten whole with them (and any
    /// marks recorded since opening), even with no bridge at all, so that the files exist.
    pub fn start_again(&self, seqs: &HashMap<String, u64>) -> Result<(), HighWaterError> {
        let mut f = self.lock();
        merge(&mut f.marks, seqs);
        f.compact()?;
        f.kept = true;
        Ok(())
    }

    /// Records seqs that are on disk in sled: appends those that grew to both files, and
    /// fsyncs. On error nothing is recorded (the caller keeps its notes).
    pub fn record(&self, seqs: &HashMap<String, u64>) -> Result<(), HighWaterError> {
        let mut f = self.lock();
        let mut grown: Vec<(&str, u64)> = seqs
            .iter()
            .filter(|(b, s)| f.marks.get(*b).is_none_or(|m| *s > m))
            .map(|(b, s)| (b.as_str(), *s))
            .collect();
        if grown.is_empty() {
            return Ok(());
        }
        grown.sort();
        let previous: Vec<(String, Option<u64>)> = grown
            .iter()
            .map(|(b, _)| (b.to_string(), f.marks.get(*b).copied()))
            .collect();
        for (b, s) in &grown {
            f.marks.insert(b.to_string(), *s);
        }
        let written = match f.stale() {
            true => f.compact(),
            false => f.append(&encode(&grown)),
        };
        if let Err(e) = written {
            for (b, s) in previous {
                match s {
                    Some(s) => f.marks.insert(b, s),
                    None => f.marks.remove(&b),
                };
            }
            return Err(e);
        }
        f.kept = true;
        let len = f.files.iter().map(|mf| mf.len).max().unwrap_or(0);
        if len > COMPACT_FLOOR.max(4 * live_len(&f.marks)) {
            // The append is on disk: a failed rewrite costs only space, and is tried again.
            if let Err(e) = f.compact() {
                tracing::warn!("cannot rewrite the high-water mark: {e}");
            }
        }
        Ok(())
    }

    /// The first file's length now.
    #[cfg(test)]
    pub fn file_len(&self) -> u64 {
        self.lock().files[0].len
    }
}

#[cfg(test)]
mod tests {
    use super::frame::HEAD;
    use super::*;
    use crate::store::compact::copy_dir;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn seqs(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(b, s)| (b.to_string(), *s)).collect()
    }

    /// Both files as found on a clean open: there, whole, in step.
    fn clean(hw: &HighWater, dir: &Path) -> bool {
        let lens = [FILE, COPY].map(|f| std::fs::metadata(dir.join(f)).unwrap().len());
        hw.found().iter().zip(lens).all(|(f, len)| {
            *f == Found {
                existed: true,
                len,
                ..Default::default()
            }
        }) && hw.notes(true).is_empty()
    }

    #[test]
    fn marks_survive_a_reopen_and_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        assert!(hw.found().iter().all(|f| !f.existed) && !hw.kept());
        assert!(!dir.path().join(FILE).exists(), "nothing written yet");
        hw.record(&seqs(&[("a", 3), ("b", 7)])).unwrap();
        assert!(hw.kept());
        hw.record(&seqs(&[("a", 5), ("b", 2)])).unwrap();
        let len = hw.file_len();
        // Nothing grew: nothing is written.
        hw.record(&seqs(&[("a", 5), ("b", 7)])).unwrap();
        assert_eq!(hw.file_len(), len);
        drop(hw);
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            std::fs::read(dir.path().join(COPY)).unwrap(),
            "the copy holds the same records"
        );
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.marks(), seqs(&[("a", 5), ("b", 7)]));
        assert!(clean(&hw, dir.path()) && hw.kept());
    }

    #[test]
    fn notes_are_taken_by_one_flush_and_given_back_when_it_fails() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        hw.note("a", 4);
        hw.note("a", 2);
        hw.note("b", 1);
        assert_eq!(hw.noted(), seqs(&[("a", 4), ("b", 1)]));
        let taken = hw.take_noted();
        assert!(hw.noted().is_empty());
        hw.note("a", 6);
        hw.renote(taken);
        assert_eq!(hw.take_noted(), seqs(&[("a", 6), ("b", 1)]));
    }

    fn cut(path: &Path, len: u64) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(len).unwrap();
    }

    /// A crash mid-append of the first file leaves part of its last frame, and the copy
    /// without it: those marks were never recorded (the write did not return), the rest reads
    /// as before, a note (no warning) says so, and the file is repaired.
    #[test]
    fn a_torn_last_frame_is_dropped_quietly_and_repaired() {
        for cut_by in [1, 4, 9, 15, 20] {
            let dir = tempfile::tempdir().unwrap();
            let hw = HighWater::open(dir.path()).unwrap();
            hw.record(&seqs(&[("a", 3), ("b", 7)])).unwrap();
            let good = hw.file_len();
            hw.record(&seqs(&[("a", 9)])).unwrap();
            drop(hw);
            let path = dir.path().join(FILE);
            let full = std::fs::metadata(&path).unwrap().len();
            cut(&path, full - cut_by);
            cut(&dir.path().join(COPY), good);
            let hw = HighWater::open(dir.path()).unwrap();
            assert_eq!(hw.marks(), seqs(&[("a", 3), ("b", 7)]), "cut {cut_by}");
            assert_eq!(hw.found()[0].torn, full - cut_by - good);
            assert_eq!(hw.found()[0].damaged, 0);
            assert!(!hw.found()[0].lower && !hw.found()[1].lower);
            let notes = hw.notes(true);
            assert_eq!(notes.len(), 1, "{notes:?}");
            assert!(!notes[0].warning);
            assert!(
                notes[0]
                    .text
                    .starts_with(&format!("{}: a torn last record", path.display()))
            );
            hw.repair().unwrap();
            drop(hw);
            let hw = HighWater::open(dir.path()).unwrap();
            assert!(clean(&hw, dir.path()));
            // Repaired: what comes next is read back.
            hw.record(&seqs(&[("a", 10)])).unwrap();
            drop(hw);
            let hw = HighWater::open(dir.path()).unwrap();
            assert_eq!(hw.marks(), seqs(&[("a", 10), ("b", 7)]));
            assert!(clean(&hw, dir.path()));
        }
        // A last frame of the right length whose bytes never reached the disk (zeros).
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        hw.record(&seqs(&[("a", 3)])).unwrap();
        drop(hw);
        let mut f = append(&dir.path().join(FILE)).unwrap();
        f.write_all(&[0; 29]).unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.marks(), seqs(&[("a", 3)]));
        assert_eq!(hw.found()[0].torn, 29);
    }

    /// A crash while the two appends run: either file may lack the other's last frame, which
    /// counts (it is on disk). Nothing to say; the file is brought up to date.
    #[test]
    fn a_file_one_frame_behind_is_a_crash_not_damage() {
        for name in [FILE, COPY] {
            let dir = tempfile::tempdir().unwrap();
            let hw = HighWater::open(dir.path()).unwrap();
            hw.record(&seqs(&[("a", 3), ("b", 7)])).unwrap();
            let good = hw.file_len();
            hw.record(&seqs(&[("a", 9)])).unwrap();
            drop(hw);
            cut(&dir.path().join(name), good + 5);
            let hw = HighWater::open(dir.path()).unwrap();
            assert_eq!(hw.marks(), seqs(&[("a", 9), ("b", 7)]));
            assert!(hw.found().iter().all(|f| !f.lower), "{name}");
            assert!(hw.notes(true).iter().all(|n| !n.warning), "{name}");
            hw.repair().unwrap();
            drop(hw);
            assert!(clean(&HighWater::open(dir.path()).unwrap(), dir.path()));
        }
    }

    /// What a test does to one file.
    #[derive(Debug, Clone, Copy)]
    enum Damage {
        Deleted,
        Emptied,
        Overwritten,
        /// Cut to its first frame and a bit.
        Truncated,
        /// One byte flipped in its second frame.
        Flipped,
    }

    fn damage(path: &Path, how: Damage, first: u64) {
        match how {
            Damage::Deleted => std::fs::remove_file(path).unwrap(),
            Damage::Emptied => std::fs::write(path, b"").unwrap(),
            Damage::Overwritten => {
                let len = std::fs::metadata(path).unwrap().len() as usize;
                let noise: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
                std::fs::write(path, noise).unwrap();
            }
            Damage::Truncated => cut(path, first + 7),
            Damage::Flipped => {
                let mut bytes = std::fs::read(path).unwrap();
                bytes[first as usize + HEAD] ^= 0xff;
                std::fs::write(path, bytes).unwrap();
            }
        }
    }

    /// The warning each damage gets, after the file's path.
    fn warning(how: Damage) -> &'static str {
        match how {
            Damage::Deleted => " is missing; its marks were read from ",
            Damage::Emptied | Damage::Overwritten => " holds no readable record (",
            Damage::Truncated => " holds lower marks than ",
            Damage::Flipped => " was damaged: ",
        }
    }

    /// Either file damaged in any way: the other holds every mark, a warning names the
    /// damaged one, and a repair rewrites it whole.
    #[test]
    fn one_file_damaged_in_any_way_leaves_the_other_to_tell() {
        let all = [
            Damage::Deleted,
            Damage::Emptied,
            Damage::Overwritten,
            Damage::Truncated,
            Damage::Flipped,
        ];
        for how in all {
            for (i, name) in [FILE, COPY].into_iter().enumerate() {
                let dir = tempfile::tempdir().unwrap();
                let hw = HighWater::open(dir.path()).unwrap();
                hw.record(&seqs(&[("a", 1), ("b", 1)])).unwrap();
                let first = hw.file_len();
                for s in 2..=9 {
                    hw.record(&seqs(&[("a", s * 10), ("b", s)])).unwrap();
                }
                let want = hw.marks();
                drop(hw);
                let path = dir.path().join(name);
                damage(&path, how, first);
                let hw = HighWater::open(dir.path()).unwrap();
                assert_eq!(hw.marks(), want, "{how:?} {name}");
                assert!(hw.kept());
                let text = format!("{}{}", path.display(), warning(how));
                let notes = hw.notes(true);
                assert!(
                    notes.iter().any(|n| n.warning && n.text.starts_with(&text)),
                    "{how:?} {name}: {notes:?}"
                );
                assert!(
                    notes
                        .iter()
                        .all(|n| n.text.starts_with(&path.display().to_string())),
                    "only the damaged file is named: {notes:?}"
                );
                assert!(hw.lost_files().len() == 2 && hw.found()[1 - i].readable());
                hw.repair().unwrap();
                drop(hw);
                let hw = HighWater::open(dir.path()).unwrap();
                assert!(clean(&hw, dir.path()), "{how:?} {name}: {:?}", hw.found());
                assert_eq!(hw.marks(), want);
            }
        }
    }

    /// Both files damaged: no marks, nothing kept, and a repair writes nothing (empty files
    /// would hide the loss).
    #[test]
    fn both_files_unreadable_is_a_lost_mark_left_as_found() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        hw.record(&seqs(&[("a", 4)])).unwrap();
        drop(hw);
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        std::fs::write(dir.path().join(COPY), b"garbage").unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        assert!(hw.marks().is_empty() && !hw.kept());
        assert_eq!(
            hw.lost_files(),
            vec![
                (dir.path().join(FILE), "missing".to_string()),
                (
                    dir.path().join(COPY),
                    "no readable record in 7 bytes".to_string()
                ),
            ]
        );
        hw.repair().unwrap();
        assert!(!dir.path().join(FILE).exists());
        assert_eq!(std::fs::read(dir.path().join(COPY)).unwrap(), b"garbage");
        // Started again, both are written, even with no bridge at all.
        hw.start_again(&HashMap::new()).unwrap();
        drop(hw);
        let hw = HighWater::open(dir.path()).unwrap();
        assert!(hw.kept() && hw.marks().is_empty() && clean(&hw, dir.path()));
    }

    /// The mark of the version before the copy: the first file alone. Quiet unless the store
    /// says it keeps two files; the copy is written by a repair.
    #[test]
    fn a_mark_without_its_copy_is_an_upgrade_unless_the_store_kept_two() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        hw.record(&seqs(&[("a", 4)])).unwrap();
        drop(hw);
        std::fs::remove_file(dir.path().join(COPY)).unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        assert!(hw.notes(false).is_empty());
        assert_eq!(hw.notes(true).len(), 1);
        hw.repair().unwrap();
        drop(hw);
        let hw = HighWater::open(dir.path()).unwrap();
        assert!(clean(&hw, dir.path()));
        assert_eq!(hw.marks(), seqs(&[("a", 4)]));
    }

    #[test]
    fn damage_between_frames_is_skipped_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        hw.record(&seqs(&[("a", 1)])).unwrap();
        let first = hw.file_len();
        hw.record(&seqs(&[("b", 2)])).unwrap();
        hw.record(&seqs(&[("c", 3)])).unwrap();
        drop(hw);
        // One flipped byte in the second frame's payload, in both files.
        for name in [FILE, COPY] {
            damage(&dir.path().join(name), Damage::Flipped, first);
        }
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.marks(), seqs(&[("a", 1), ("c", 3)]));
        assert!(hw.found().iter().all(|f| f.damaged > 0 && f.torn == 0));
        hw.repair().unwrap();
        drop(hw);
        // Rewritten whole: clean from now on.
        let hw = HighWater::open(dir.path()).unwrap();
        assert!(clean(&hw, dir.path()));
        assert_eq!(hw.marks(), seqs(&[("a", 1), ("c", 3)]));
    }

    #[test]
    fn the_file_is_rewritten_when_it_grows_past_a_few_times_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        let bridges: Vec<String> = (0..1000).map(|i| format!("bridge-{i:04}")).collect();
        let mut largest = 0;
        for round in 1..=200u64 {
            // A tenth of the bridges move on each round.
            let moved: HashMap<String, u64> = bridges
                .iter()
                .enumerate()
                .filter(|(i, _)| (*i as u64 + round) % 10 == 0)
                .map(|(_, b)| (b.clone(), round))
                .collect();
            hw.record(&moved).unwrap();
            largest = largest.max(hw.file_len());
        }
        let live = live_len(&hw.marks());
        assert!(
            largest <= COMPACT_FLOOR.max(4 * live) + 100 * 24 + 16,
            "{largest} vs live {live}"
        );
        let marks = hw.marks();
        drop(hw);
        assert_eq!(
            std::fs::read(dir.path().join(FILE)).unwrap(),
            std::fs::read(dir.path().join(COPY)).unwrap()
        );
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.marks(), marks);
        assert_eq!(hw.marks()["bridge-0000"], 200);
        assert_eq!(hw.marks()["bridge-0001"], 199);
        for tmp in ["highwater.tmp", "highwater.2.tmp"] {
            assert!(!dir.path().join(tmp).exists());
        }
    }

    use crate::store::{Accepted, BridgeMeta, Commit, Put, Store, StoreError};

    /// Commits `n` events to `bridge` (its seq moves on by `n`).
    fn commit(s: &Store, bridge: &str, n: u64) -> u64 {
        let m = s.meta(bridge).unwrap();
        s.commit(&Commit {
            bridge: bridge.into(),
            expected_seq: m.seq,
            base: Some(m.clone()),
            meta: BridgeMeta {
                seq: m.seq + n,
                baselined: true,
                ..m
            },
            puts: vec![Put::new(format!("k{}", m.seq), [1; 16], b"{}".to_vec())],
            ..Default::default()
        })
        .unwrap();
        m.seq + n
    }

    #[test]
    fn only_flushed_seqs_are_marked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        commit(&s, "a", 3);
        assert!(s.high_water().marks().is_empty(), "not on disk yet");
        s.flush_blocking().unwrap();
        assert_eq!(s.high_water().marks(), seqs(&[("a", 3)]));
        commit(&s, "a", 2);
        commit(&s, "b", 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(s.flush()).unwrap();
        assert_eq!(s.high_water().marks(), seqs(&[("a", 5), ("b", 1)]));
        // A flush with nothing new writes nothing.
        let len = s.high_water().file_len();
        rt.block_on(s.flush()).unwrap();
        s.flush_blocking().unwrap();
        assert_eq!(s.high_water().file_len(), len);
    }

    /// A store in `dir` that went back: `a` at 80 and `b` at 5 copied to `backup` and put back
    /// after `a` reached 180 and `c` 7. The length of the mark's first frame (`a` 80, `b` 5).
    fn went_back(dir: &Path, backup: &Path) -> u64 {
        let sled_dir = dir.join("pollhook.sled");
        let first = {
            let s = Store::open(dir).unwrap();
            commit(&s, "a", 80);
            commit(&s, "b", 5);
            s.flush_blocking().unwrap();
            s.high_water().file_len()
        };
        copy_dir(&sled_dir, backup);
        {
            let s = Store::open(dir).unwrap();
            commit(&s, "a", 100);
            commit(&s, "c", 7);
            s.flush_blocking().unwrap();
            assert_eq!(s.meta("a").unwrap().seq, 180);
        }
        std::fs::remove_dir_all(&sled_dir).unwrap();
        copy_dir(backup, &sled_dir);
        first
    }

    /// An older copy of the store put back (or a log cut short): refused with what was found,
    /// until `accept_rollback` moves every seq up to the mark.
    #[test]
    fn a_store_that_went_back_is_refused_until_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let backup = tempfile::tempdir().unwrap();
        went_back(dir.path(), backup.path());
        let Err(StoreError::Rollback(r)) = Store::open(dir.path()) else {
            panic!("a store that went back opened");
        };
        assert_eq!(r.bridges, 3);
        assert_eq!(r.data, dir.path());
        assert_eq!(r.behind, a_and_c_behind());
        {
            let s = Store::open_unchecked(dir.path()).unwrap();
            assert_eq!(s.find_rollback().unwrap(), Some(r.clone()));
            assert_eq!(
                s.accept_rollback().unwrap(),
                Accepted::Moved(r.behind.clone())
            );
            assert_eq!(s.find_rollback().unwrap(), None);
            assert_eq!(
                s.accept_rollback().unwrap(),
                Accepted::Moved(vec![]),
                "twice is a no-op"
            );
        }
        let s = Store::open(dir.path()).unwrap();
        let a = s.meta("a").unwrap();
        assert_eq!((a.seq, a.baselined), (180, true), "only the seq moves");
        let c = s.meta("c").unwrap();
        assert_eq!(
            (c.seq, c.baselined),
            (7, false),
            "a lost record re-baselines"
        );
        assert_eq!(s.meta("b").unwrap().seq, 5);
        assert_eq!(commit(&s, "a", 1), 181);
    }

    /// The store went back with one mark file damaged in each way: the other still tells, the
    /// same refusal, the same way out, and the damaged file is whole again after it.
    #[test]
    fn a_store_that_went_back_with_one_mark_file_damaged_is_refused() {
        for how in [
            Damage::Deleted,
            Damage::Emptied,
            Damage::Overwritten,
            Damage::Truncated,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let backup = tempfile::tempdir().unwrap();
            let first = went_back(dir.path(), backup.path());
            damage(&dir.path().join(FILE), how, first);
            let Err(StoreError::Rollback(r)) = Store::open(dir.path()) else {
                panic!("{how:?}: a store that went back opened");
            };
            assert_eq!(r.behind, a_and_c_behind(), "{how:?}");
            let s = Store::open_unchecked(dir.path()).unwrap();
            assert!(s.find_lost_mark().is_none());
            assert_eq!(s.accept_rollback().unwrap(), Accepted::Moved(r.behind));
            drop(s);
            let s = Store::open(dir.path()).unwrap();
            assert!(clean(s.high_water(), dir.path()), "{how:?}");
            assert_eq!(s.meta("a").unwrap().seq, 180);
        }
    }

    /// Both mark files gone from a store that kept them: refused as lost (whether it went back
    /// cannot be told), until `accept_rollback` starts the mark again from the store.
    #[test]
    fn a_store_whose_mark_files_are_both_gone_is_refused_until_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let backup = tempfile::tempdir().unwrap();
        went_back(dir.path(), backup.path());
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        std::fs::write(dir.path().join(COPY), b"").unwrap();
        let Err(StoreError::Lost(lost)) = Store::open(dir.path()) else {
            panic!("a store whose mark is lost opened");
        };
        assert_eq!(lost.data, dir.path());
        let text = lost.to_string();
        assert!(text.starts_with(&format!(
            "rollback: cannot tell whether the state in {} went back: its high-water mark is \
             lost ({}: missing; {}: no readable record in 0 bytes)",
            dir.path().join("pollhook.sled").display(),
            dir.path().join(FILE).display(),
            dir.path().join(COPY).display(),
        )));
        assert!(
            text.contains("`pollhook store accept-rollback --data"),
            "{text}"
        );
        {
            let s = Store::open_unchecked(dir.path()).unwrap();
            assert_eq!(s.find_lost_mark(), Some(lost));
            assert_eq!(
                s.accept_rollback().unwrap(),
                Accepted::Restarted(vec![("a".into(), 80), ("b".into(), 5)])
            );
            assert_eq!(s.find_lost_mark(), None);
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.high_water().marks(), seqs(&[("a", 80), ("b", 5)]));
        assert!(clean(s.high_water(), dir.path()));
    }

    /// Neither file and the key in sled gone too: a store written before there was a mark. It
    /// opens (one WARN), and the mark starts from it.
    #[test]
    fn a_store_from_before_the_mark_opens_and_starts_it() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            commit(&s, "a", 3);
            s.flush_blocking().unwrap();
        }
        {
            let db = crate::store::open_sled(&dir.path().join("pollhook.sled")).unwrap();
            assert!(db.remove(b"highwater").unwrap().is_some(), "no key in sled");
            db.flush().unwrap();
        }
        for f in [FILE, COPY] {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.high_water().marks(), seqs(&[("a", 3)]));
        drop(s);
        // From then on, it is guarded: both files gone is a lost mark.
        for f in [FILE, COPY] {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        assert!(matches!(Store::open(dir.path()), Err(StoreError::Lost(_))));
    }

    /// The first flush that writes the mark's files also puts the key in sled: deleting both
    /// files right after is seen.
    #[test]
    fn the_first_flush_that_writes_the_mark_notes_it_in_sled() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            commit(&s, "a", 3);
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(s.flush()).unwrap();
        }
        for f in [FILE, COPY] {
            std::fs::remove_file(dir.path().join(f)).unwrap();
        }
        assert!(matches!(Store::open(dir.path()), Err(StoreError::Lost(_))));
    }

    #[test]
    fn a_store_held_by_another_opener_is_locked_not_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let _held = Store::open(dir.path()).unwrap();
        match Store::open_unchecked(dir.path()) {
            Err(StoreError::Locked(path)) => assert!(path.ends_with("pollhook.sled"), "{path}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened twice"),
        }
    }

    #[test]
    fn a_store_sled_cannot_read_is_a_located_error() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            commit(&s, "a", 1);
            s.flush_blocking().unwrap();
        }
        let conf = dir.path().join("pollhook.sled/conf");
        let f = OpenOptions::new().write(true).open(&conf).unwrap();
        f.set_len(10).unwrap();
        drop(f);
        let e = Store::open(dir.path())
            .err()
            .expect("a damaged store opened");
        assert!(matches!(e, StoreError::Damaged { .. }), "{e}");
        let text = e.to_string();
        assert!(text.contains("pollhook.sled is damaged"), "{text}");
        assert!(text.contains("accept-rollback"), "{text}");
    }

    /// sled panics on some cut logs; the panic becomes its message and where it happened.
    #[test]
    fn a_panic_while_opening_becomes_a_message() {
        let r: Result<(), String> =
            crate::store::quiet_panics(|| panic!("index out of bounds: the len is 2"));
        let msg = r.unwrap_err();
        assert!(
            msg.starts_with("index out of bounds: the len is 2 ("),
            "{msg}"
        );
        assert!(msg.contains("highwater.rs:"), "{msg}");
        assert_eq!(crate::store::quiet_panics(|| 7), Ok(7));
    }

    const CHILD: &str = "POLLHOOK_KILL_9_CHILD";

    /// The child of `a_kill_9_at_any_moment_is_not_a_rollback`: bridges committing and
    /// flushing concurrently, printing each seq once its flush returned (when its events would
    /// be sent), until it is killed.
    fn kill_9_child(dir: &Path) -> ! {
        let s = Store::open(dir).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            for t in 0..4 {
                let s = s.clone();
                tokio::spawn(async move {
                    let bridge = format!("b{t}");
                    loop {
                        let (s2, b) = (s.clone(), bridge.clone());
                        let seq = tokio::task::spawn_blocking(move || commit(&s2, &b, 1 + t))
                            .await
                            .unwrap();
                        s.flush().await.unwrap();
                        println!("durable {bridge} {seq}");
                    }
                });
            }
            // The parent kills it; should it not, it ends here, and the parent sees no kill.
            tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        });
        std::process::exit(3)
    }

    /// This test runs itself as a child process (with `CHILD` set, it is that child, and
    /// never returns), kills it with SIGKILL at varying moments, and opens the store it left.
    #[test]
    fn a_kill_9_at_any_moment_is_not_a_rollback() {
        use std::io::BufRead;
        if let Ok(dir) = std::env::var(CHILD) {
            kill_9_child(Path::new(&dir));
        }
        let dir = tempfile::tempdir().unwrap();
        let err_dir = tempfile::tempdir().unwrap();
        let child_err = err_dir.path().join("stderr");
        for round in 0..8 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "highwater::tests::a_kill_9_at_any_moment_is_not_a_rollback",
                    "--nocapture",
                ])
                .env(CHILD, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::fs::File::create(&child_err).unwrap())
                .spawn()
                .unwrap();
            let mut durable: HashMap<String, u64> = HashMap::new();
            let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = 0;
            for line in lines {
                let line = line.unwrap();
                let Some(rest) = line.strip_prefix("durable ") else {
                    continue;
                };
                let (b, seq) = rest.split_once(' ').unwrap();
                durable.insert(b.to_string(), seq.parse().unwrap());
                seen += 1;
                // Killed after a varying number of flushes, at whatever it is doing then.
                if seen == 3 + round * 11 {
                    break;
                }
            }
            child.kill().unwrap(); // SIGKILL
            let status = child.wait().unwrap();
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(
                status.signal(),
                Some(9),
                "round {round}: the child {status}: {}",
                std::fs::read_to_string(&child_err).unwrap()
            );
            assert_eq!(
                seen,
                3 + round * 11,
                "round {round}: the child printed too little"
            );
            let s = match Store::open(dir.path()) {
                Ok(s) => s,
                Err(e) => panic!("round {round}: {e}"),
            };
            assert!(s.mark_notes().iter().all(|n| !n.warning), "round {round}");
            for (b, seq) in &durable {
                assert!(
                    s.meta(b).unwrap().seq >= *seq,
                    "round {round}: {b} lost {seq}"
                );
            }
            for (b, mark) in s.high_water().marks() {
                assert!(s.meta(&b).unwrap().seq >= mark, "round {round}: {b}");
            }
        }
    }

    /// What the tests' stores leave behind: `a` at 80 of 180 handed out, and `c`, whose
    /// record is gone, at 7.
    fn a_and_c_behind() -> Vec<Behind> {
        vec![
            Behind {
                bridge: "a".into(),
                stored: 80,
                handed_out: 180,
                missing: false,
            },
            Behind {
                bridge: "c".into(),
                stored: 0,
                handed_out: 7,
                missing: true,
            },
        ]
    }

    #[test]
    fn behind_lists_bridges_below_their_mark_including_lost_records() {
        let marks = seqs(&[("a", 180), ("b", 5), ("c", 7), ("d", 3)]);
        let stored = seqs(&[("a", 80), ("b", 9), ("d", 3), ("e", 1)]);
        let found = behind(&marks, &stored);
        assert_eq!(found, a_and_c_behind());
        let text = Rollback {
            data: "data".into(),
            bridges: 5,
            behind: found,
        }
        .to_string();
        assert!(text.starts_with("rollback: the state in data/pollhook.sled went back"));
        assert!(text.contains("2 of 5 bridges are below"));
        assert!(text.contains("`a` is at seq 80, highest handed out 180"));
        assert!(text.contains("`c` has no record (seq 0), highest handed out 7"));
        assert!(text.contains("`pollhook store check --data data`"));
        assert!(text.contains("`pollhook store accept-rollback --data data`"));
    }
}
