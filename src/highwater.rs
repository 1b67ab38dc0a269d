//! The high-water mark: per bridge, the highest `seq` durably handed out, kept in a small file
//! beside the sled store (`DATA/highwater`), so that a store that lost flushed commits (a
//! damaged or truncated log, an old copy put back) is caught at start instead of handing out
//! the same seqs, and the ids that derive from them, to other events (docs/operations.md#rollback).
//!
//! The mark is never ahead of sled: [`crate::store::Store::commit`] notes the seq it wrote, and
//! a flush takes the notes made before it started, flushes sled, and only then appends them
//! here (and fsyncs) before it returns, which is before any event of those commits is sent.
//! A crash at any point therefore leaves sled at or past the mark, and a store below it lost
//! something it had on disk.
//!
//! The file is append-only: one frame per write, `PHW1`, payload length (u32 BE), payload,
//! then the first 8 bytes of the payload's SHA-256. A payload is records of name length
//! (u32 BE), name, seq (u64 BE); a bridge's mark is the largest seq any record gives it. A
//! frame is written only when some seq grew, so idle bridges cost nothing. A crash mid-append
//! leaves a short or unverifiable last frame: it is dropped, since its write never returned
//! and so nothing was handed out on its word. When the file grows past 4x what it holds, it is
//! rewritten as one frame (temp file, fsync, rename, fsync of the directory).

use sha2::Digest;
use std::collections::HashMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name in the data directory.
pub const FILE: &str = "highwater";

const MAGIC: &[u8; 4] = b"PHW1";
/// Magic, length; and the checksum after the payload.
const HEAD: usize = 8;
const CHECK: usize = 8;
/// Below this size the file is never rewritten: a few hundred small appends cost nothing.
const COMPACT_FLOOR: u64 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
#[error("high-water mark {path}: {source}")]
pub struct HighWaterError {
    pub path: String,
    #[source]
    pub source: io::Error,
}

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

/// What opening the file found besides the marks.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// The file was there (else this is its first use).
    pub existed: bool,
    /// Bytes of a torn last frame that were dropped (a crash mid-append).
    pub torn: u64,
    /// Bytes of unreadable frames between readable ones that were skipped (damage to the
    /// file itself: marks in them are lost, so a rollback to below them goes unseen).
    pub damaged: u64,
}

/// The mark: the notes of commits not yet flushed, and the file.
pub struct HighWater {
    path: PathBuf,
    /// Per bridge, the largest seq committed since the last flush took the notes.
    noted: Mutex<HashMap<String, u64>>,
    file: Mutex<MarkFile>,
    found: Found,
}

struct MarkFile {
    /// Open for appending once the file exists.
    file: Option<File>,
    marks: HashMap<String, u64>,
    /// The file's length (up to the end of its last good frame).
    len: u64,
    /// The file must be rewritten whole before the next append (an append failed half-way and
    /// could not be cut back, or damage was found).
    rewrite: bool,
}

fn encode(records: &[(&str, u64)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (name, seq) in records {
        payload.extend_from_slice(&(name.len() as u32).to_be_bytes());
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(&seq.to_be_bytes());
    }
    let mut frame = Vec::with_capacity(HEAD + payload.len() + CHECK);
    frame.extend_from_slice(MAGIC);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(&payload);
    frame.extend_from_slice(&sha2::Sha256::digest(&payload)[..CHECK]);
    frame
}

enum Frame {
    /// Records, and where the next frame starts.
    Good(Vec<(String, u64)>, usize),
    /// The frame claims more bytes than the file holds.
    Short,
    Bad,
}

fn frame_at(bytes: &[u8], at: usize) -> Frame {
    let rest = &bytes[at..];
    if rest.len() < HEAD {
        return Frame::Short;
    }
    if &rest[..4] != MAGIC {
        return Frame::Bad;
    }
    let n = u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) as usize;
    let Some(payload) = rest.get(HEAD..HEAD + n) else {
        return Frame::Short;
    };
    let Some(check) = rest.get(HEAD + n..HEAD + n + CHECK) else {
        return Frame::Short;
    };
    if sha2::Sha256::digest(payload)[..CHECK] != *check {
        return Frame::Bad;
    }
    let mut records = Vec::new();
    let mut p = payload;
    while !p.is_empty() {
        let Some(len) = p.get(..4) else {
            return Frame::Bad;
        };
        let len = u32::from_be_bytes(len.try_into().expect("4 bytes")) as usize;
        let (Some(name), Some(seq)) = (p.get(4..4 + len), p.get(4 + len..12 + len)) else {
            return Frame::Bad;
        };
        let seq = u64::from_be_bytes(seq.try_into().expect("8 bytes"));
        records.push((String::from_utf8_lossy(name).into_owned(), seq));
        p = &p[12 + len..];
    }
    Frame::Good(records, at + HEAD + n + CHECK)
}

/// The marks in `bytes`, where its last good frame ends, and what was dropped.
fn parse(bytes: &[u8]) -> (HashMap<String, u64>, usize, Found) {
    let mut marks: HashMap<String, u64> = HashMap::new();
    let mut found = Found {
        existed: true,
        ..Default::default()
    };
    let (mut at, mut good) = (0, 0);
    while at < bytes.len() {
        match frame_at(bytes, at) {
            Frame::Good(records, next) => {
                for (name, seq) in records {
                    let m = marks.entry(name).or_default();
                    *m = (*m).max(seq);
                }
                at = next;
                good = next;
            }
            Frame::Short | Frame::Bad => {
                // Torn if no good frame follows; damage in the middle if one does.
                let next = (at + 1..bytes.len())
                    .filter(|&i| bytes[i..].starts_with(MAGIC))
                    .find(|&i| matches!(frame_at(bytes, i), Frame::Good(..)));
                match next {
                    Some(i) => {
                        found.damaged += (i - at) as u64;
                        at = i;
                    }
                    None => {
                        found.torn = (bytes.len() - at) as u64;
                        break;
                    }
                }
            }
        }
    }
    (marks, good, found)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl HighWater {
    /// Reads `dir/highwater` (absent: no marks yet). A torn last frame or damage is repaired
    /// at once by rewriting the file from what was read.
    pub fn open(dir: &Path) -> Result<HighWater, HighWaterError> {
        let path = dir.join(FILE);
        let err = |source| HighWaterError {
            path: path.display().to_string(),
            source,
        };
        let (marks, len, found) = match std::fs::read(&path) {
            Ok(bytes) => parse(&bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => (HashMap::new(), 0, Found::default()),
            Err(e) => return Err(err(e)),
        };
        let mut mf = MarkFile {
            file: None,
            marks,
            len: len as u64,
            rewrite: found.torn > 0 || found.damaged > 0,
        };
        if mf.rewrite {
            // Until this succeeds, the next record rewrites the file instead of appending.
            if let Err(e) = mf.compact(&path) {
                tracing::warn!(path = %path.display(), "cannot repair the high-water mark: {e}");
            }
        } else if found.existed {
            mf.file = Some(append(&path).map_err(err)?);
        }
        Ok(HighWater {
            path,
            noted: Mutex::new(HashMap::new()),
            file: Mutex::new(mf),
            found,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What opening the file found.
    pub fn found(&self) -> &Found {
        &self.found
    }

    /// The marks, by bridge.
    pub fn marks(&self) -> HashMap<String, u64> {
        self.file.lock().expect("high-water lock").marks.clone()
    }

    /// A commit wrote `seq` for `bridge` (not yet on disk).
    pub fn note(&self, bridge: &str, seq: u64) {
        let mut noted = self.noted.lock().expect("high-water lock");
        match noted.get_mut(bridge) {
            Some(s) => *s = (*s).max(seq),
            None => {
                noted.insert(bridge.to_string(), seq);
            }
        }
    }

    /// The notes so far, for a flush about to start; they are the flush's to record.
    pub fn take_noted(&self) -> HashMap<String, u64> {
        std::mem::take(&mut *self.noted.lock().expect("high-water lock"))
    }

    /// The notes so far, left in place for the next flush that takes them.
    pub fn noted(&self) -> HashMap<String, u64> {
        self.noted.lock().expect("high-water lock").clone()
    }

    /// Gives back notes whose flush failed, so that a later flush records them.
    pub fn renote(&self, seqs: HashMap<String, u64>) {
        for (bridge, seq) in seqs {
            self.note(&bridge, seq);
        }
    }

    /// Records seqs that are on disk in sled: appends those that grew, and fsyncs. On error
    /// nothing is recorded (the caller keeps its notes).
    pub fn record(&self, seqs: &HashMap<String, u64>) -> Result<(), HighWaterError> {
        let err = |source| HighWaterError {
            path: self.path.display().to_string(),
            source,
        };
        let mut mf = self.file.lock().expect("high-water lock");
        let mut grown: Vec<(&str, u64)> = seqs
            .iter()
            .filter(|(b, s)| mf.marks.get(*b).is_none_or(|m| *s > m))
            .map(|(b, s)| (b.as_str(), *s))
            .collect();
        if grown.is_empty() {
            return Ok(());
        }
        grown.sort();
        let previous: Vec<(String, Option<u64>)> = grown
            .iter()
            .map(|(b, _)| (b.to_string(), mf.marks.get(*b).copied()))
            .collect();
        for (b, s) in &grown {
            mf.marks.insert(b.to_string(), *s);
        }
        let written = if mf.file.is_none() || mf.rewrite {
            mf.compact(&self.path)
        } else {
            mf.append(&encode(&grown))
        };
        if let Err(e) = written {
            for (b, s) in previous {
                match s {
                    Some(s) => mf.marks.insert(b, s),
                    None => mf.marks.remove(&b),
                };
            }
            return Err(err(e));
        }
        if mf.len > COMPACT_FLOOR.max(4 * mf.live_len()) {
            // The append is on disk: a failed rewrite costs only space, and is tried again.
            if let Err(e) = mf.compact(&self.path) {
                tracing::warn!(path = %self.path.display(), "cannot rewrite the high-water mark: {e}");
            }
        }
        Ok(())
    }

    /// The file's length now (for tests and benchmarks).
    pub fn file_len(&self) -> u64 {
        self.file.lock().expect("high-water lock").len
    }
}

fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

impl MarkFile {
    /// What the file holds when rewritten: one frame of every mark.
    fn live_len(&self) -> u64 {
        (HEAD + CHECK) as u64 + self.marks.keys().map(|b| 12 + b.len() as u64).sum::<u64>()
    }

    fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        let file = self.file.as_mut().expect("append after open");
        let written = file.write_all(frame).and_then(|_| file.sync_data());
        if let Err(e) = written {
            // Cut back a partial frame, so that the next append does not follow garbage.
            if file
                .set_len(self.len)
                .and_then(|_| file.sync_data())
                .is_err()
            {
                self.rewrite = true;
            }
            return Err(e);
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Rewrites the file as one frame of every mark, atomically. Until it succeeds, every
    /// record rewrites instead of appending (an open handle may be to the replaced file).
    fn compact(&mut self, path: &Path) -> io::Result<()> {
        self.rewrite = true;
        let mut all: Vec<(&str, u64)> = self.marks.iter().map(|(b, s)| (b.as_str(), *s)).collect();
        all.sort();
        let frame = encode(&all);
        let tmp = path.with_extension("tmp");
        let mut f = File::create(&tmp)?;
        f.write_all(&frame)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        self.file = None;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        self.file = Some(append(path)?);
        self.len = frame.len() as u64;
        self.rewrite = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::compact::copy_dir;

    fn seqs(pairs: &[(&str, u64)]) -> HashMap<String, u64> {
        pairs.iter().map(|(b, s)| (b.to_string(), *s)).collect()
    }

    #[test]
    fn marks_survive_a_reopen_and_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        assert!(!hw.found().existed);
        assert!(!dir.path().join(FILE).exists(), "nothing written yet");
        hw.record(&seqs(&[("a", 3), ("b", 7)])).unwrap();
        hw.record(&seqs(&[("a", 5), ("b", 2)])).unwrap();
        let len = hw.file_len();
        // Nothing grew: nothing is written.
        hw.record(&seqs(&[("a", 5), ("b", 7)])).unwrap();
        assert_eq!(hw.file_len(), len);
        drop(hw);
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.marks(), seqs(&[("a", 5), ("b", 7)]));
        assert_eq!(
            *hw.found(),
            Found {
                existed: true,
                ..Default::default()
            }
        );
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

    /// A crash mid-append leaves part of the last frame: those marks were never recorded (the
    /// write did not return), the rest reads as before, and the file is repaired.
    #[test]
    fn a_torn_last_frame_is_dropped_quietly_and_repaired() {
        for cut in [1, 4, 9, 15, 20] {
            let dir = tempfile::tempdir().unwrap();
            let hw = HighWater::open(dir.path()).unwrap();
            hw.record(&seqs(&[("a", 3), ("b", 7)])).unwrap();
            let good = hw.file_len();
            hw.record(&seqs(&[("a", 9)])).unwrap();
            drop(hw);
            let path = dir.path().join(FILE);
            let full = std::fs::metadata(&path).unwrap().len();
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(full - cut).unwrap();
            drop(f);
            let hw = HighWater::open(dir.path()).unwrap();
            assert_eq!(hw.marks(), seqs(&[("a", 3), ("b", 7)]), "cut {cut}");
            assert_eq!(hw.found().torn, full - cut - good);
            assert_eq!(hw.found().damaged, 0);
            // Repaired: what comes next is read back.
            hw.record(&seqs(&[("a", 10)])).unwrap();
            drop(hw);
            let hw = HighWater::open(dir.path()).unwrap();
            assert_eq!(hw.marks(), seqs(&[("a", 10), ("b", 7)]));
            assert_eq!(hw.found().torn, 0);
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
        assert_eq!(hw.found().torn, 29);
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
        let path = dir.path().join(FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        // One flipped byte in the second frame's payload.
        bytes[first as usize + HEAD] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.marks(), seqs(&[("a", 1), ("c", 3)]));
        assert!(hw.found().damaged > 0);
        assert_eq!(hw.found().torn, 0);
        drop(hw);
        // Rewritten whole: clean from now on.
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.found().damaged, 0);
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
        let live = hw.file.lock().unwrap().live_len();
        assert!(
            largest <= COMPACT_FLOOR.max(4 * live) + 100 * 24 + 16,
            "{largest} vs live {live}"
        );
        let marks = hw.marks();
        drop(hw);
        let hw = HighWater::open(dir.path()).unwrap();
        assert_eq!(hw.marks(), marks);
        assert_eq!(hw.marks()["bridge-0000"], 200);
        assert_eq!(hw.marks()["bridge-0001"], 199);
        assert!(!dir.path().join("highwater.tmp").exists());
    }

    use crate::store::{BridgeMeta, Commit, Put, Store, StoreError};

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

    /// An older copy of the store put back (or a log cut short): refused with what was found,
    /// until `accept_rollback` moves every seq up to the mark.
    #[test]
    fn a_store_that_went_back_is_refused_until_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let sled_dir = dir.path().join("pollhook.sled");
        let backup = tempfile::tempdir().unwrap();
        {
            let s = Store::open(dir.path()).unwrap();
            commit(&s, "a", 80);
            commit(&s, "b", 5);
            s.flush_blocking().unwrap();
        }
        copy_dir(&sled_dir, backup.path());
        {
            let s = Store::open(dir.path()).unwrap();
            commit(&s, "a", 100);
            commit(&s, "c", 7);
            s.flush_blocking().unwrap();
            assert_eq!(s.meta("a").unwrap().seq, 180);
        }
        std::fs::remove_dir_all(&sled_dir).unwrap();
        copy_dir(backup.path(), &sled_dir);

        let Err(StoreError::Rollback(r)) = Store::open(dir.path()) else {
            panic!("a store that went back opened");
        };
        assert_eq!(r.bridges, 3);
        assert_eq!(r.data, dir.path());
        assert_eq!(r.behind, a_and_c_behind());
        {
            let s = Store::open_unchecked(dir.path()).unwrap();
            assert_eq!(s.find_rollback().unwrap(), Some(r.clone()));
            assert_eq!(s.accept_rollback().unwrap(), r.behind);
            assert_eq!(s.find_rollback().unwrap(), None);
            assert!(s.accept_rollback().unwrap().is_empty(), "twice is a no-op");
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

    /// The child of `a_kill_9_at_any_moment_is_not_a_rollback` (does nothing otherwise):
    /// bridges committing and flushing concurrently, printing each seq once its flush returned
    /// (when its events would be sent), until it is killed.
    #[test]
    fn kill_9_child() {
        let Ok(dir) = std::env::var(CHILD) else {
            return;
        };
        let s = Store::open(Path::new(&dir)).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..4 {
                let s = s.clone();
                tasks.push(tokio::spawn(async move {
                    let bridge = format!("b{t}");
                    // Far more than the parent waits for: it kills the child long before.
                    for _ in 0..100_000 {
                        let (s2, b) = (s.clone(), bridge.clone());
                        let seq = tokio::task::spawn_blocking(move || commit(&s2, &b, 1 + t))
                            .await
                            .unwrap();
                        s.flush().await.unwrap();
                        println!("durable {bridge} {seq}");
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
    }

    #[test]
    fn a_kill_9_at_any_moment_is_not_a_rollback() {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        for round in 0..8 {
            let mut child = std::process::Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "highwater::tests::kill_9_child", "--nocapture"])
                .env(CHILD, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
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
            child.wait().unwrap();
            assert!(!durable.is_empty(), "the child printed nothing");
            let s = match Store::open(dir.path()) {
                Ok(s) => s,
                Err(e) => panic!("round {round}: {e}"),
            };
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
