//! `emit.settle` (docs/configuration.md#settle): a change becomes an event only once it has
//! held, for N polls in a row or for a while. What is waiting to settle is stored in the
//! item's state record with the stored (settled) hash, so the settled value stays what later
//! polls compare with and what an event's `previous` is, until the new one settles. Pure.

use crate::extract::Hash;

/// What an item is waiting to become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingKind {
    /// A stored item's new value (hash `hash`): an update once it settles.
    Value,
    /// An item not stored yet (its record holds no settled value): a create once it settles.
    Create,
    /// A stored item absent from the listing: a delete once it settles (and `after_missing`
    /// is reached).
    Gone,
}

/// A change waiting to settle: what it is, since when (Unix ms) and on how many polls in a
/// row it has been seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pending {
    pub kind: PendingKind,
    /// The new value's hash (zero for `Gone`).
    pub hash: Hash,
    pub count: u32,
    pub since_ms: i64,
}

/// The rule: `emit.settle: N` or a duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Polls(u32),
    Millis(i64),
}

/// The rule at the time of one poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settle {
    pub rule: Rule,
    pub now_ms: i64,
}

impl Settle {
    /// What is pending once this poll has seen `kind` (with `hash`): the same change seen
    /// once more, or a new one from now.
    pub fn next(&self, before: Option<Pending>, kind: PendingKind, hash: Hash) -> Pending {
        match before {
            Some(p) if p.kind == kind && p.hash == hash => Pending {
                count: p.count.saturating_add(1),
                ..p
            },
            _ => Pending {
                kind,
                hash,
                count: 1,
                since_ms: self.now_ms,
            },
        }
    }

    /// Whether the change has held long enough to be reported.
    pub fn settled(&self, p: &Pending) -> bool {
        match self.rule {
            Rule::Polls(n) => p.count >= n,
            Rule::Millis(ms) => self.now_ms.saturating_sub(p.since_ms) >= ms,
        }
    }
}

/// The 29 bytes after an item's hash and missing count in its state record, when it has a
/// change pending: kind (`v`, `c`, `g`), hash, count, since (big-endian).
pub const TAIL: usize = 29;

pub fn encode(p: &Pending) -> [u8; TAIL] {
    let mut r = [0; TAIL];
    r[0] = match p.kind {
        PendingKind::Value => b'v',
        PendingKind::Create => b'c',
        PendingKind::Gone => b'g',
    };
    r[1..17].copy_from_slice(&p.hash);
    r[17..21].copy_from_slice(&p.count.to_be_bytes());
    r[21..29].copy_from_slice(&p.since_ms.to_be_bytes());
    r
}

/// The pending change in a state record's tail; None when the tail is not one.
pub fn decode(tail: &[u8]) -> Option<Pending> {
    if tail.len() != TAIL {
        return None;
    }
    let kind = match tail[0] {
        b'v' => PendingKind::Value,
        b'c' => PendingKind::Create,
        b'g' => PendingKind::Gone,
        _ => return None,
    };
    Some(Pending {
        kind,
        hash: tail[1..17].try_into().ok()?,
        count: u32::from_be_bytes(tail[17..21].try_into().ok()?),
        since_ms: i64::from_be_bytes(tail[21..29].try_into().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_settles_after_n_polls_or_a_while_and_a_new_one_starts_again() {
        let at = |now_ms| Settle {
            rule: Rule::Polls(3),
            now_ms,
        };
        let p = at(0).next(None, PendingKind::Value, [1; 16]);
        let p = at(10).next(Some(p), PendingKind::Value, [1; 16]);
        assert!(!at(10).settled(&p));
        let p = at(20).next(Some(p), PendingKind::Value, [1; 16]);
        assert!(at(20).settled(&p));
        assert_eq!((p.count, p.since_ms), (3, 0));
        // Another value starts afresh.
        let q = at(30).next(Some(p), PendingKind::Value, [2; 16]);
        assert_eq!((q.count, q.since_ms), (1, 30));
        let d = Settle {
            rule: Rule::Millis(600_000),
            now_ms: 599_999,
        };
        assert!(!d.settled(&p));
        assert!(
            Settle {
                now_ms: 600_000,
                ..d
            }
            .settled(&p)
        );
        assert_eq!(decode(&encode(&q)), Some(q));
        assert_eq!(decode(&[0; 3]), None);
    }
}
