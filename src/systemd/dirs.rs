//! Where the systemd units keep a shard's state, and moving it there from where earlier
//! versions kept it.
//!
//! `pollhook@I.service` used to have `StateDirectory=pollhook/shard-I`, inside
//! `pollhook.service`'s `StateDirectory=pollhook`. With `DynamicUser=yes` systemd keeps state
//! under `/var/lib/private` and makes `/var/lib/pollhook` a symlink to it, so whichever of the
//! two units ran first left `/var/lib/pollhook` in a shape the other could not start on
//! (`status=238/STATE_DIRECTORY`, "File exists"). Each shard now has a directory of its own
//! beside the service's, `pollhook-shard-I`. Before either unit starts,
//! `pollhook-move-state.service` runs `pollhook store move-shards` as root, which moves what
//! the old layout holds (once; afterwards it finds nothing to do) and removes what it left in
//! the way. Not an `ExecStartPre=+` of the units: with `DynamicUser=` even that command sees
//! an empty `/var/lib/private` but for the unit's own directory.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What [`move_shards`] did with one shard's old directory.
#[derive(Debug, PartialEq, Eq)]
pub enum Moved {
    /// This many entries moved from `from` to `to`.
    Moved {
        from: PathBuf,
        to: PathBuf,
        entries: usize,
    },
    /// It was empty (left by a start that failed): removed.
    Empty { old: PathBuf },
    /// Both places hold state: the new one is used, the old one is left for the operator.
    Kept { old: PathBuf, new: PathBuf },
}

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> DirError + '_ {
    move |source| DirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Shard `index`'s state directory under `root` (`/var/lib`), where `DynamicUser=` keeps it.
pub fn shard_dir(root: &Path, index: &str) -> PathBuf {
    root.join(format!("private/pollhook-shard-{index}"))
}

/// Moves every shard's state (`shard-I` with I a number) from the old layout under `root`
/// into its own directory, if that is absent or empty; removes an old one that is empty;
/// then removes what the old layout left that would keep `pollhook.service` from starting.
/// What it moves belongs to the new directory's owner, or, when it makes the directory, to
/// root until systemd gives it to the shard's dynamic user at the shard's start. Run it again
/// and it does nothing.
pub fn move_shards(root: &Path) -> Result<Vec<(String, Moved)>, DirError> {
    let old_parent = root.join("private/pollhook");
    let mut done = Vec::new();
    for index in shard_indexes(&old_parent)? {
        let old = old_parent.join(format!("shard-{index}"));
        let moved = move_one(&old, &shard_dir(root, &index))?;
        done.push((index, moved));
    }
    tidy(root)?;
    Ok(done)
}

/// The indexes of the `shard-I` directories in `dir`, in order (none if it is absent).
fn shard_indexes(dir: &Path) -> Result<Vec<String>, DirError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(at(dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(index) = name.strip_prefix("shard-") else {
            continue;
        };
        if !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && is_real_dir(&entry.path())
        {
            found.push(index.to_string());
        }
    }
    found.sort_by_key(|i| (i.len(), i.clone()));
    Ok(found)
}

fn move_one(old: &Path, new: &Path) -> Result<Moved, DirError> {
    if is_empty_or_absent(old)? {
        std::fs::remove_dir(old).map_err(at(old))?;
        return Ok(Moved::Empty {
            old: old.to_path_buf(),
        });
    }
    if !is_empty_or_absent(new)? {
        return Ok(Moved::Kept {
            old: old.to_path_buf(),
            new: new.to_path_buf(),
        });
    }
    let entries = move_entries(old, new)?;
    std::fs::remove_dir(old).map_err(at(old))?;
    Ok(Moved::Moved {
        from: old.to_path_buf(),
        to: new.to_path_buf(),
        entries,
    })
}

fn is_empty_or_absent(dir: &Path) -> Result<bool, DirError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(at(dir)(e)),
    }
}

/// Renames every entry of `from` into `to` (made, mode 0700, if absent) and gives them, all
/// the way down, to `to`'s owner. Both are on the same file system, so nothing is copied.
fn move_entries(from: &Path, to: &Path) -> Result<usize, DirError> {
    use std::os::unix::fs::DirBuilderExt;
    if !to.exists() {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(to)
            .map_err(at(to))?;
    }
    let owner = std::fs::metadata(to).map_err(at(to))?;
    let mut n = 0;
    for entry in std::fs::read_dir(from).map_err(at(from))? {
        let entry = entry.map_err(at(from))?;
        let dest = to.join(entry.file_name());
        std::fs::rename(entry.path(), &dest).map_err(at(&dest))?;
        chown_all(&dest, owner.uid(), owner.gid())?;
        n += 1;
    }
    Ok(n)
}

/// `path` and, if a directory, everything under it, to `uid:gid`; symlinks themselves, not
/// what they point at.
fn chown_all(path: &Path, uid: u32, gid: u32) -> Result<(), DirError> {
    let m = std::fs::symlink_metadata(path).map_err(at(path))?;
    if m.uid() != uid || m.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(at(path))?;
    }
    if m.is_dir() {
        for entry in std::fs::read_dir(path).map_err(at(path))? {
            chown_all(&entry.map_err(at(path))?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// With `root/pollhook` a real directory (the old shards' layout; as `pollhook.service`'s
/// state it is a symlink, and is left alone): removes its `shard-I` symlinks that lead nowhere
/// now, then it and `root/private/pollhook` if they are left empty. Another run at the same
/// time may have removed them first.
fn tidy(root: &Path) -> Result<(), DirError> {
    let links = root.join("pollhook");
    if std::fs::symlink_metadata(&links).is_ok_and(|m| m.file_type().is_symlink()) {
        return Ok(());
    }
    if is_real_dir(&links) {
        for entry in std::fs::read_dir(&links).map_err(at(&links))? {
            let path = entry.map_err(at(&links))?.path();
            let dangling = std::fs::symlink_metadata(&path)
                .is_ok_and(|m| m.file_type().is_symlink())
                && !path.exists();
            let named = path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("shard-"));
            if dangling && named {
                gone(std::fs::remove_file(&path)).map_err(at(&path))?;
            }
        }
    }
    for dir in [links, root.join("private/pollhook")] {
        if is_real_dir(&dir) && is_empty_or_absent(&dir)? {
            gone(std::fs::remove_dir(&dir)).map_err(at(&dir))?;
        }
    }
    Ok(())
}

/// A removal that another run did first, or that found the directory filled again, is not
/// an error.
fn gone(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Ok(())
        }
        r => r,
    }
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// `/var/lib` after the old shard units ran: `pollhook/` a real directory of symlinks into
    /// `private/pollhook/shard-I`, where the state is.
    fn old_shards(root: &Path, indexes: &[&str]) {
        for i in indexes {
            write(
                &root.join(format!("private/pollhook/shard-{i}/pollhook.sled/db")),
                &format!("db of {i}"),
            );
            std::fs::create_dir_all(root.join("pollhook")).unwrap();
            symlink(
                format!("../private/pollhook/shard-{i}"),
                root.join(format!("pollhook/shard-{i}")),
            )
            .unwrap();
        }
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    fn exists(path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    #[test]
    fn old_shard_state_moves_once_and_the_old_layout_goes() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        old_shards(root, &["0", "1", "10"]);
        // Shard 1's directory exists, empty (systemd made it at a start that came first).
        std::fs::create_dir_all(root.join("private/pollhook-shard-1")).unwrap();
        let done = move_shards(root).unwrap();
        let moved = |i: &str| {
            (
                i.to_string(),
                Moved::Moved {
                    from: root.join(format!("private/pollhook/shard-{i}")),
                    to: root.join(format!("private/pollhook-shard-{i}")),
                    entries: 1,
                },
            )
        };
        assert_eq!(done, [moved("0"), moved("1"), moved("10")]);
        for i in ["0", "1", "10"] {
            assert_eq!(
                read(&shard_dir(root, i).join("pollhook.sled/db")),
                format!("db of {i}")
            );
        }
        // Nothing of the old layout is left in pollhook.service's way.
        assert!(!exists(&root.join("pollhook")));
        assert!(!exists(&root.join("private/pollhook")));
        assert!(root.join("private").is_dir());
        // Again: nothing to do, nothing changed.
        assert_eq!(move_shards(root).unwrap(), []);
        assert_eq!(
            read(&shard_dir(root, "0").join("pollhook.sled/db")),
            "db of 0"
        );
    }

    #[test]
    fn what_moves_belongs_to_the_new_directorys_owner() {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: what_moves_belongs_to_the_new_directorys_owner: not root");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        old_shards(root, &["4"]);
        symlink(
            "db",
            root.join("private/pollhook/shard-4/pollhook.sled/link"),
        )
        .unwrap();
        let new = shard_dir(root, "4");
        std::fs::create_dir_all(&new).unwrap();
        // The shard's dynamic user (another uid than the one the old files have).
        std::os::unix::fs::chown(&new, Some(61234), Some(61235)).unwrap();
        move_shards(root).unwrap();
        for p in ["pollhook.sled", "pollhook.sled/db", "pollhook.sled/link"] {
            let m = std::fs::symlink_metadata(new.join(p)).unwrap();
            assert_eq!((m.uid(), m.gid()), (61234, 61235), "{p}");
        }
    }

    #[test]
    fn the_single_services_state_is_left_alone() {
        // `pollhook.service` ran first; an old shard unit then failed, leaving an empty
        // directory inside its state.
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        write(&root.join("private/pollhook/pollhook.sled/db"), "single");
        std::fs::create_dir_all(root.join("private/pollhook/shard-0")).unwrap();
        std::fs::create_dir_all(root.join("private/pollhook/shard-x")).unwrap();
        symlink("private/pollhook", root.join("pollhook")).unwrap();
        let done = move_shards(root).unwrap();
        let old = root.join("private/pollhook/shard-0");
        assert_eq!(done, [("0".to_string(), Moved::Empty { old: old.clone() })]);
        assert!(!exists(&old));
        assert!(
            !exists(&shard_dir(root, "0")),
            "no directory made for nothing"
        );
        assert!(
            root.join("private/pollhook/shard-x").is_dir(),
            "not a shard's"
        );
        assert_eq!(read(&root.join("pollhook/pollhook.sled/db")), "single");
        assert!(
            std::fs::symlink_metadata(root.join("pollhook"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(move_shards(root).unwrap(), []);
        assert_eq!(read(&root.join("pollhook/pollhook.sled/db")), "single");
    }

    #[test]
    fn state_in_both_places_is_kept_in_both() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        old_shards(root, &["2"]);
        write(&shard_dir(root, "2").join("pollhook.sled/db"), "new");
        let done = move_shards(root).unwrap();
        let kept = Moved::Kept {
            old: root.join("private/pollhook/shard-2"),
            new: shard_dir(root, "2"),
        };
        assert_eq!(done, [("2".to_string(), kept)]);
        assert_eq!(read(&shard_dir(root, "2").join("pollhook.sled/db")), "new");
        assert_eq!(
            read(&root.join("pollhook/shard-2/pollhook.sled/db")),
            "db of 2"
        );
    }

    #[test]
    fn a_fresh_host_has_nothing_to_move() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(move_shards(root.path()).unwrap(), []);
        assert_eq!(std::fs::read_dir(root.path()).unwrap().count(), 0);
    }
}
