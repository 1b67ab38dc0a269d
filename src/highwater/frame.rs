//! The mark's record format. Each file is append-only: one frame per write, `PHW1`, payload
//! length (u32 BE), payload, then the first 8 bytes of the payload's SHA-256. A payload is
//! records of name length (u32 BE), name, seq (u64 BE); a bridge's mark is the largest seq
//! any record gives it. A crash mid-append leaves a short or unverifiable last frame: reading
//! drops it (torn), and skips an unreadable frame that good ones follow (damage).

use super::Found;
use sha2::Digest;
use std::collections::HashMap;
use std::io;
use std::path::Path;

const MAGIC: &[u8; 4] = b"PHW1";
/// Magic, length; and the checksum after the payload.
pub(super) const HEAD: usize = 8;
const CHECK: usize = 8;

/// One frame of these records.
pub(super) fn encode(records: &[(&str, u64)]) -> Vec<u8> {
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
    let Some(n) = rest[4..].first_chunk::<4>() else {
        return Frame::Short;
    };
    let n = u32::from_be_bytes(*n) as usize;
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
        let Some(len) = p.first_chunk::<4>() else {
            return Frame::Bad;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let seq = p.get(4 + len..).and_then(<[u8]>::first_chunk::<8>);
        let (Some(name), Some(seq)) = (p.get(4..4 + len), seq) else {
            return Frame::Bad;
        };
        let seq = u64::from_be_bytes(*seq);
        records.push((String::from_utf8_lossy(name).into_owned(), seq));
        p = &p[12 + len..];
    }
    Frame::Good(records, at + HEAD + n + CHECK)
}

/// What one file holds.
#[derive(Default)]
pub(super) struct Read {
    pub(super) marks: HashMap<String, u64>,
    /// The records of its last good frame.
    pub(super) last: HashMap<String, u64>,
    /// Where its last good frame starts, and where it ends.
    pub(super) last_start: usize,
    pub(super) good: usize,
    pub(super) found: Found,
}

/// Raises the marks in `into` to those in `from`.
pub(super) fn merge(into: &mut HashMap<String, u64>, from: &HashMap<String, u64>) {
    for (name, &seq) in from {
        let m = into.entry(name.clone()).or_default();
        *m = (*m).max(seq);
    }
}

/// What `bytes`, a file that exists, holds.
pub(super) fn parse(bytes: &[u8]) -> Read {
    let mut read = Read {
        found: Found {
            existed: true,
            len: bytes.len() as u64,
            unreadable: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut at = 0;
    while at < bytes.len() {
        match frame_at(bytes, at) {
            Frame::Good(records, next) => {
                read.last = records.into_iter().collect();
                merge(&mut read.marks, &read.last);
                read.found.unreadable = false;
                read.last_start = at;
                at = next;
                read.good = next;
            }
            Frame::Short | Frame::Bad => {
                // Torn if no good frame follows; damage in the middle if one does.
                let next = (at + 1..bytes.len())
                    .filter(|&i| bytes[i..].starts_with(MAGIC))
                    .find(|&i| matches!(frame_at(bytes, i), Frame::Good(..)));
                match next {
                    Some(i) => {
                        read.found.damaged += (i - at) as u64;
                        at = i;
                    }
                    None => {
                        read.found.torn = (bytes.len() - at) as u64;
                        break;
                    }
                }
            }
        }
    }
    if read.found.unreadable {
        // No frame at all: not a torn one, since a file is created whole.
        read.found.torn = 0;
    }
    read
}

/// What the file at `path` holds (nothing, when there is none).
pub(super) fn read(path: &Path) -> io::Result<Read> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Read::default()),
        Err(e) => Err(e),
    }
}

/// What a file holds when rewritten: one frame of every mark.
pub(super) fn live_len(marks: &HashMap<String, u64>) -> u64 {
    (HEAD + CHECK) as u64 + marks.keys().map(|b| 12 + b.len() as u64).sum::<u64>()
}
