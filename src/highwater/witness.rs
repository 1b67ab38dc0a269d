//! The two witnesses: `highwater` and its copy `highwater.2`, each appended to (and fsync'd)
//! in turn with the same frames, and rewritten together when they grew fourfold or one was
//! found damaged, missing or behind. One file alone could be deleted, emptied or cut short
//! and read as an older mark; with two, a bridge's mark is the largest either gives it.

use super::frame::{Read, encode, merge};
use super::{HighWaterError, error};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub(super) struct Files {
    pub(super) marks: HashMap<String, u64>,
    /// `highwater`, then its copy.
    pub(super) files: [MarkFile; 2],
    /// Some file holds the marks on disk: read at open, or written since.
    pub(super) kept: bool,
}

pub(super) struct MarkFile {
    pub(super) path: PathBuf,
    /// Open for appending once the file exists and holds exactly the marks.
    pub(super) file: Option<File>,
    /// The file's length (up to the end of its last good frame).
    pub(super) len: u64,
    /// The file must be rewritten whole before the next append (an append failed half-way and
    /// could not be cut back, or it was found damaged, missing or behind the other).
    pub(super) rewrite: bool,
}

/// Some bridge has a higher seq in `than` than in `marks`.
pub(super) fn below(marks: &HashMap<String, u64>, than: &HashMap<String, u64>) -> bool {
    than.iter().any(|(b, s)| marks.get(b).is_none_or(|m| m < s))
}

/// `r` gives some bridge a lower mark than `other`, by more than a crash explains. The two
/// files get the same frames at the same time (and are rewritten together), so a crash leaves
/// one without at most the other's last frame, its bytes ending where that frame starts.
pub(super) fn lower(r: &Read, other: &Read) -> bool {
    if !r.found.readable() || !below(&r.marks, &other.marks) {
        return false;
    }
    let mut with_last = r.marks.clone();
    merge(&mut with_last, &other.last);
    r.good < other.last_start || below(&with_last, &other.marks)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The file at `path`, opened to append to.
pub(super) fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).open(path)
}

impl Files {
    /// Some file must be rewritten before the next append.
    pub(super) fn stale(&self) -> bool {
        self.files.iter().any(|mf| mf.file.is_none() || mf.rewrite)
    }

    /// Rewrites both files whole, one after the other, so that they hold the same frames again
    /// (rare: when they grew fourfold, and to repair one).
    pub(super) fn compact(&mut self) -> Result<(), HighWaterError> {
        for mf in &mut self.files {
            mf.compact(&self.marks).map_err(error(&mf.path))?;
        }
        Ok(())
    }

    /// Appends `frame` to both files at once, each on a thread of its own: their fsyncs overlap
    /// (two at once cost about what one does on ext4, one after the other twice as much).
    pub(super) fn append(&mut self, frame: &[u8]) -> Result<(), HighWaterError> {
        let [a, b] = &mut self.files;
        let (ra, rb) = std::thread::scope(|sc| {
            let a2 = &mut *a;
            let other = std::thread::Builder::new()
                .name("highwater".into())
                .spawn_scoped(sc, move || a2.append(frame));
            let rb = b.append(frame);
            let ra = other.ok().map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("append panicked")))
            });
            (ra, rb)
        });
        // No thread to be had: one after the other.
        let ra = ra.unwrap_or_else(|| a.append(frame));
        if ra.is_err() || rb.is_err() {
            // They no longer hold the same frames: rewritten together before the next append.
            a.rewrite = true;
            b.rewrite = true;
        }
        ra.map_err(error(&a.path))?;
        rb.map_err(error(&b.path))
    }
}

impl MarkFile {
    fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        // `Files::stale` sees that both are open before an append is tried.
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("not open for appending"));
        };
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
    fn compact(&mut self, marks: &HashMap<String, u64>) -> io::Result<()> {
        self.rewrite = true;
        let mut all: Vec<(&str, u64)> = marks.iter().map(|(b, s)| (b.as_str(), *s)).collect();
        all.sort();
        let frame = encode(&all);
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = File::create(&tmp)?;
        f.write_all(&frame)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &self.path)?;
        self.file = None;
        if let Some(dir) = self.path.parent() {
            sync_dir(dir)?;
        }
        self.file = Some(append(&self.path)?);
        self.len = frame.len() as u64;
        self.rewrite = false;
        Ok(())
    }
}
