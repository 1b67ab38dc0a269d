//! Gives back the disk space that earlier versions left in sled's `blobs/`.
//!
//! Before values were stored apart (see [`super::values`]), every large record went to a file
//! of its own in `blobs/`, and sled deletes almost none of them: not when the record is
//! replaced, not at start-up (its start-up clean-up only removes blobs written after the last
//! complete log record, i.e. torn writes). Nothing but sled knows which of them a record
//! still points at. So a store that has blobs and was last written by an earlier version is
//! copied, once, into a fresh database next to it, its large values stored apart on the way;
//! the fresh one then takes the old one's place and the old one, blobs and all, is deleted.
//!
//! The swap is two renames: `pollhook.sled` -> `pollhook.sled.old`, then
//! `pollhook.sled.compact` -> `pollhook.sled`. [`recover`] finishes or undoes a copy cut short
//! by a crash. Value files written for a copy that never took over are deleted by the next
//! open's sweep, as nothing points at them.

use super::values::{self, Files, Kind};
use super::{StoreError, decode_page, encode_page};
use std::path::{Path, PathBuf};

/// The `format` from which large values are stored apart, so `blobs/` holds nothing of
/// this version's making.
pub(super) const VALUES_APART: u32 = 3;

/// Records to a transaction, and bytes, when values are copied.
const GROUP: (usize, usize) = (10_000, 64 << 20);

struct Paths {
    live: PathBuf,
    copy: PathBuf,
    old: PathBuf,
}

fn paths(dir: &Path) -> Paths {
    Paths {
        live: dir.join("pollhook.sled"),
        copy: dir.join("pollhook.sled.compact"),
        old: dir.join("pollhook.sled.old"),
    }
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Sled(e.into())
}

/// Finishes a swap cut short between its renames, and removes what a copy cut short left.
pub(super) fn recover(dir: &Path) -> Result<(), StoreError> {
    let p = paths(dir);
    if !p.live.exists() && p.copy.exists() && p.old.exists() {
        std::fs::rename(&p.copy, &p.live).map_err(io)?;
    }
    for leftover in [&p.copy, &p.old] {
        if leftover.exists() {
            std::fs::remove_dir_all(leftover).map_err(io)?;
        }
    }
    Ok(())
}

/// Files in sled's `blobs/`.
pub(super) fn blobs(dir: &Path) -> usize {
    std::fs::read_dir(paths(dir).live.join("blobs"))
        .map(|r| r.count())
        .unwrap_or(0)
}

pub(super) fn format(db: &sled::Db) -> Result<u32, StoreError> {
    Ok(db
        .get(b"format")?
        .and_then(|v| Some(u32::from_be_bytes(v.as_ref().try_into().ok()?)))
        .unwrap_or(1))
}

/// Copies the store in `dir` (closed) into a fresh database with its large values stored
/// apart, and puts the copy in its place. Returns the bytes `blobs/` held.
pub(super) fn run(dir: &Path) -> Result<u64, StoreError> {
    let p = paths(dir);
    let blob_bytes = std::fs::read_dir(p.live.join("blobs"))
        .map_err(io)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    if p.copy.exists() {
        std::fs::remove_dir_all(&p.copy).map_err(io)?;
    }
    {
        // The store was just closed: its threads may hold sled's lock a moment longer.
        let src = super::open_sled(&p.live)?;
        let dst = super::open_sled(&p.copy)?;
        let files = Files::open(dir.join("pollhook.values")).map_err(io)?;
        copy(&src, &dst, &files)?;
        dst.insert(b"format", &VALUES_APART.to_be_bytes())?;
        dst.flush()?;
    }
    std::fs::rename(&p.live, &p.old).map_err(io)?;
    std::fs::rename(&p.copy, &p.live).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    std::fs::remove_dir_all(&p.old).map_err(io)?;
    Ok(blob_bytes)
}

fn copy(src: &sled::Db, dst: &sled::Db, files: &Files) -> Result<(), StoreError> {
    let parts = dst.open_tree("parts")?;
    let src_bodies = src.open_tree("page_bodies")?;
    for name in src.tree_names() {
        let (from, to) = (src.open_tree(&name)?, dst.open_tree(&name)?);
        let kind = match &name[..] {
            b"items" => Some(Kind::Item),
            b"page_bodies" => Some(Kind::PageBody),
            b"outbox" => Some(Kind::Outbox),
            b"dead" => Some(Kind::Dead),
            _ => None,
        };
        let mut group: Vec<(Vec<u8>, sled::IVec)> = Vec::new();
        let mut bytes = 0;
        let flush = |group: &mut Vec<(Vec<u8>, sled::IVec)>| -> Result<(), StoreError> {
            let mut batch = sled::Batch::default();
            let mut apart = Vec::new();
            for (k, v) in group.iter() {
                match kind {
                    Some(_) if !values::is_stored_apart(v) => apart.push((k.clone(), &v[..])),
                    _ => batch.insert(&k[..], v),
                }
            }
            to.apply_batch(batch)?;
            if let Some(kind) = kind {
                // Nothing to collect: the copy replaces no value.
                values::put_all(&to, &parts, files, kind, &apart)?;
            }
            group.clear();
            Ok(())
        };
        for kv in from.iter() {
            let (k, mut v) = kv?;
            if &name[..] == b"pages" {
                // A record from before bodies were stored apart carries its body: the body
                // goes to `page_bodies`, unless a newer one is there.
                if let Some((head, at)) = decode_page(&v) {
                    if at < v.len() && !src_bodies.contains_key(&k)? {
                        let bodies = dst.open_tree("page_bodies")?;
                        values::put_all(
                            &bodies,
                            &parts,
                            files,
                            Kind::PageBody,
                            &[(k.to_vec(), &v[at..])],
                        )?;
                    }
                    v = encode_page(&head).into();
                }
            }
            bytes += v.len();
            group.push((k.to_vec(), v));
            if group.len() >= GROUP.0 || bytes >= GROUP.1 {
                flush(&mut group)?;
                bytes = 0;
            }
        }
        flush(&mut group)?;
    }
    Ok(())
}

/// Copies a directory tree (tests copy a store to damage or replay it).
#[cfg(test)]
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{BridgeMeta, CachedPage, OutboxEntry, Store};

    fn big(n: u8, len: usize) -> String {
        let mut s = format!("{{\"n\":{n},\"pad\":\"");
        while s.len() < len {
            s.push_str("abcdefghij");
        }
        s + "\"}"
    }

    /// What the previous version wrote: large records whole, so in `blobs/`, and a cached page
    /// from before page bodies were stored apart.
    fn old_store(dir: &Path) {
        let db = sled::open(dir.join("pollhook.sled")).unwrap();
        db.insert(b"format", &2u32.to_be_bytes()).unwrap();
        let items = db.open_tree("items").unwrap();
        for n in 0..5 {
            items.insert(b"b\0k", big(n, 300_000).as_bytes()).unwrap();
            db.flush().unwrap();
        }
        items.insert(b"b\0s", &b"{\"small\":1}"[..]).unwrap();
        let state = db.open_tree("state").unwrap();
        for k in [&b"b\0k"[..], b"b\0s"] {
            state.insert(k, &[0; 20][..]).unwrap();
        }
        let meta = BridgeMeta {
            seq: 5,
            baselined: true,
            items: 2,
            ..Default::default()
        };
        let meta = serde_json::to_vec(&meta).unwrap();
        db.open_tree("meta").unwrap().insert(b"b", meta).unwrap();
        let entry = OutboxEntry {
            kind: crate::event::EventType::Updated,
            body: big(9, 200_000),
            ..crate::store::tests::entry(5)
        };
        let key = crate::store::queue_key("b", "s", 1);
        let entry = serde_json::to_vec(&entry).unwrap();
        db.open_tree("outbox").unwrap().insert(key, entry).unwrap();
        let head = CachedPage {
            etag: Some("\"e\"".into()),
            ..Default::default()
        };
        let mut page = encode_page(&head);
        page.extend_from_slice(big(7, 200_000).as_bytes());
        db.open_tree("pages")
            .unwrap()
            .insert(b"b\0p", page)
            .unwrap();
        db.flush().unwrap();
    }

    fn check(s: &Store) {
        assert_eq!(s.item_value("b", "k").unwrap().unwrap()["n"], 4);
        assert_eq!(s.item_value("b", "s").unwrap().unwrap()["small"], 1);
        assert_eq!(s.items("b").unwrap().len(), 2);
        assert_eq!(s.meta("b").unwrap().seq, 5);
        let (_, e) = s.outbox_head("b", "s").unwrap().unwrap();
        assert!(e.body == big(9, 200_000));
        assert!(s.page_body("b", "p").unwrap().unwrap() == big(7, 200_000));
        assert_eq!(s.pages("b").unwrap()["p"].etag.as_deref(), Some("\"e\""));
    }

    #[test]
    fn a_store_with_blobs_from_an_earlier_version_is_rewritten_once_without_them() {
        let dir = tempfile::tempdir().unwrap();
        old_store(dir.path());
        assert!(blobs(dir.path()) >= 5);
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(blobs(dir.path()), 0);
        check(&s);
        assert_eq!(format(&s.db).unwrap(), VALUES_APART);
        let files = std::fs::read_dir(dir.path().join("pollhook.values")).unwrap();
        assert_eq!(files.count(), 3);
        drop(s);
        // A crash between the two renames of a swap: the copy takes over.
        let p = paths(dir.path());
        copy_dir(&p.live, &p.copy);
        std::fs::rename(&p.live, &p.old).unwrap();
        let s = Store::open(dir.path()).unwrap();
        check(&s);
        assert!(!p.old.exists() && !p.copy.exists());
        drop(s);
        // A crash during a copy: the copy goes.
        copy_dir(&p.live, &p.copy);
        check(&Store::open(dir.path()).unwrap());
        assert!(!p.copy.exists());
    }
}
