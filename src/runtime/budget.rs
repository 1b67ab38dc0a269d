//! The memory of all polls in flight, budgeted together (`--max-poll-memory`,
//! docs/scaling.md#the-memory-budget-of-polls): the bodies a poll reads and what its listing costs while it is
//! compared and stored. A poll reserves its share before it reads a body (from
//! `Content-Length` when the source sends one, growing as a body of unknown length arrives)
//! and holds it until the poll ends.
//!
//! Free of deadlocks because no poll ever waits while it holds a share: a poll that cannot
//! have more at once lets go of everything it read and reserved ([`Short::Wait`]), waits in
//! line for the whole of what it needs, and asks the source again. The line is first come,
//! first served, so a large poll is not starved by small ones. A poll that needs more than
//! the whole budget fails ([`Short::Exceeds`]) before it has stored anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// The default of `--max-poll-memory`: 512 MiB.
pub const DEFAULT_BYTES: u64 = 512 << 20;

/// The budget is counted in KiB (a semaphore takes at most `u32::MAX` permits at once, and
/// a budget may be 4 GiB).
const UNIT: u64 = 1024;

/// What a poll costs per byte of its listing's text, beyond the text itself, while it is
/// read, compared and stored (docs/scaling.md#the-memory-budget-of-polls; measured with `cargo bench --bench
/// memory -- need`): the text, about as much again while it is compared, and what reading
/// it takes. A listing of mid-sized items took 3.7 a byte beyond its objects, the most of the
/// shapes measured.
pub const PER_BYTE: u64 = 4;

/// What a poll costs per JSON object in its listing (an item's key, hash and place in the
/// text, its lean tree), measured as [`PER_BYTE`] is.
pub const PER_OBJECT: u64 = 200;

/// What a poll is to reserve for a page of `bytes` of JSON text holding `objects` objects
/// (0 while they are not counted yet).
pub fn need(bytes: u64, objects: u64) -> u64 {
    bytes
        .saturating_mul(PER_BYTE)
        .saturating_add(objects.saturating_mul(PER_OBJECT))
}

/// The budget shared by every poll of the process. Cloned, it is the same budget.
#[derive(Clone)]
pub struct MemoryBudget {
    inner: Arc<Inner>,
}

struct Inner {
    /// The budget, in bytes as given.
    bytes: u64,
    /// The budget in units.
    units: u32,
    /// The units no poll holds.
    free: Semaphore,
    /// Polls waiting in line for their share.
    waiting: AtomicUsize,
    /// The units reservations hold (not `units` less `free`: the poll first in line gathers
    /// units as they come back, holding no memory yet).
    held: AtomicU64,
}

impl Default for MemoryBudget {
    fn default() -> MemoryBudget {
        MemoryBudget::new(DEFAULT_BYTES)
    }
}

/// Units that hold `bytes`, rounded up; None past what a budget can be.
fn units(bytes: u64) -> Option<u32> {
    u32::try_from(bytes.div_ceil(UNIT)).ok()
}

impl MemoryBudget {
    /// A budget of `bytes` (at least one unit, at most 4 GiB).
    pub fn new(bytes: u64) -> MemoryBudget {
        let units = units(bytes).unwrap_or(u32::MAX).max(1);
        MemoryBudget {
            inner: Arc::new(Inner {
                bytes,
                units,
                free: Semaphore::new(units as usize),
                waiting: AtomicUsize::new(0),
                held: AtomicU64::new(0),
            }),
        }
    }

    /// A poll's reservation, empty.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            inner: self.inner.clone(),
            units: 0,
            settled: 0,
        }
    }

    /// The budget, in bytes.
    pub fn bytes(&self) -> u64 {
        self.inner.bytes
    }

    /// The bytes polls in flight hold now.
    pub fn in_use(&self) -> u64 {
        self.inner.held.load(Ordering::Relaxed) * UNIT
    }

    /// How many polls wait in line for their share now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Relaxed)
    }
}

/// Why a poll cannot have the share it asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Short {
    /// More than the whole budget: it would never have it.
    #[error(
        "the poll needs about {} MiB of memory, more than `--max-poll-memory` ({} MiB) allows all polls together; raise it, or lower `source.max_body` (docs/scaling.md#the-memory-budget-of-polls)",
        mib(*.need),
        mib(*.budget)
    )]
    Exceeds { need: u64, budget: u64 },
    /// Not at once: let go of everything read and reserved, [`Reservation::wait_for`] `need`
    /// bytes, and start again.
    #[error("the poll waits for {need} bytes of the memory budget")]
    Wait { need: u64 },
}

fn mib(bytes: u64) -> String {
    format!("{:.0}", bytes as f64 / f64::from(1 << 20))
}

/// A poll's share of the budget, given back when dropped. `settled` is the need of the pages
/// already read; a page being read asks for `settled` plus its own.
pub struct Reservation {
    inner: Arc<Inner>,
    units: u32,
    settled: u64,
}

impl std::fmt::Debug for Reservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reservation")
            .field("bytes", &(u64::from(self.units) * UNIT))
            .field("settled", &self.settled)
            .finish()
    }
}

impl Reservation {
    /// The bytes held.
    pub fn bytes(&self) -> u64 {
        u64::from(self.units) * UNIT
    }

    /// Holds enough for the pages read so far and `page` bytes more, without waiting.
    pub fn page(&mut self, page: u64) -> Result<(), Short> {
        self.try_hold(self.settled.saturating_add(page))
    }

    /// A page is read: its `need` is added to what the pages read so far need, and held
    /// (without waiting) if it is more than the reservation holds.
    pub fn settle(&mut self, need: u64) -> Result<(), Short> {
        self.page(need)?;
        self.settled = self.settled.saturating_add(need);
        Ok(())
    }

    /// The listing is read again from its first page: nothing is settled, what is held stays.
    pub fn restart(&mut self) {
        self.settled = 0;
    }

    /// Every page is read: what is held beyond their need goes back (a body of unknown
    /// length was reserved for generously).
    pub fn trim(&mut self) {
        let keep = units(self.settled).unwrap_or(u32::MAX);
        if keep < self.units {
            self.set(keep);
        }
    }

    /// Holds at least `bytes`, at once or not at all.
    fn try_hold(&mut self, bytes: u64) -> Result<(), Short> {
        let exceeds = Short::Exceeds {
            need: bytes,
            budget: self.inner.bytes,
        };
        let want = units(bytes).ok_or(exceeds)?;
        if want <= self.units {
            return Ok(());
        }
        if want > self.inner.units {
            return Err(exceeds);
        }
        let free = &self.inner.free;
        if free
            .try_acquire_many(want - self.units)
            .map(|p| p.forget())
            .is_err()
        {
            return Err(Short::Wait { need: bytes });
        }
        self.set(want);
        Ok(())
    }

    /// Lets go of everything held, then waits in line until `bytes` are free and holds them,
    /// for a poll starting again (nothing read yet). False if `stop` was cancelled first.
    pub async fn wait_for(
        &mut self,
        bytes: u64,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<bool, Short> {
        self.release();
        let want = units(bytes)
            .filter(|w| *w <= self.inner.units)
            .ok_or(Short::Exceeds {
                need: bytes,
                budget: self.inner.bytes,
            })?;
        let inner = self.inner.clone();
        inner.waiting.fetch_add(1, Ordering::Relaxed);
        let got = tokio::select! {
            p = inner.free.acquire_many(want) => p.map(|p| p.forget()).ok(),
            _ = stop.cancelled() => None,
        };
        inner.waiting.fetch_sub(1, Ordering::Relaxed);
        // The semaphore is never closed: `None` is the stop.
        if got.is_none() {
            return Ok(false);
        }
        self.set(want);
        Ok(true)
    }

    fn release(&mut self) {
        self.set(0);
        self.settled = 0;
    }

    /// Holds `units` from now on: those it had less are acquired already (and forgotten),
    /// those it had more go back.
    fn set(&mut self, units: u32) {
        let inner = &self.inner;
        if units < self.units {
            inner.free.add_permits((self.units - units) as usize);
            inner
                .held
                .fetch_sub(u64::from(self.units - units), Ordering::Relaxed);
        } else {
            inner
                .held
                .fetch_add(u64::from(units - self.units), Ordering::Relaxed);
        }
        self.units = units;
    }
}

/// A poll that held at least this much gives the free memory of the allocator back to the
/// system when it ends (`malloc_trim`).
const TRIM_AFTER: u64 = 1 << 20;

impl Drop for Reservation {
    fn drop(&mut self) {
        let big = self.bytes() >= TRIM_AFTER;
        self.release();
        // A poll of a big listing frees many small blocks (its items' trees and keys), and
        // glibc's arenas would otherwise keep those pages.
        if big {
            super::heap::trim();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    const MIB: u64 = 1 << 20;

    /// What `cargo bench --bench memory -- need` measured (docs/benchmarks.md#memory): each
    /// shape's bytes of JSON text, its objects, and its peak RSS over a tiny answer's.
    #[test]
    fn the_need_covers_every_shape_measured() {
        for (what, bytes, objects, peak) in [
            ("one item and a 20 MB string", 20_000_000, 2, 20 * MIB),
            ("50,000 items of ~400 bytes", 20_500_000, 50_001, 82 * MIB),
            ("500,000 items of ~50 bytes", 25_800_000, 500_001, 132 * MIB),
            ("a 10 MB document", 10_000_000, 124_663, 35 * MIB),
        ] {
            let need = need(bytes, objects);
            assert!(need >= peak, "{what}: {need} bytes reserved, {peak} taken");
        }
    }

    #[test]
    fn shares_are_held_at_once_or_not_and_given_back() {
        let budget = MemoryBudget::new(10 * MIB);
        let mut a = budget.reservation();
        a.page(6 * MIB).unwrap();
        a.settle(4 * MIB).unwrap();
        assert_eq!(budget.in_use(), 6 * MIB);
        let mut b = budget.reservation();
        // 4 MiB are free: a page of 5 must wait, one of 4 fits.
        assert_eq!(b.page(5 * MIB), Err(Short::Wait { need: 5 * MIB }));
        b.page(4 * MIB).unwrap();
        assert_eq!(budget.in_use(), 10 * MIB);
        // The generous share of a body of unknown length goes back once it is read.
        a.trim();
        assert_eq!(a.bytes(), 4 * MIB);
        drop(b);
        assert_eq!(budget.in_use(), 4 * MIB);
        // More than the whole budget never fits, whatever is free.
        let e = a.page(7 * MIB).unwrap_err();
        assert_eq!(
            e,
            Short::Exceeds {
                need: 11 * MIB,
                budget: 10 * MIB
            }
        );
        assert!(
            e.to_string()
                .contains("11 MiB of memory, more than `--max-poll-memory` (10 MiB)"),
            "{e}"
        );
        drop(a);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn polls_that_each_hold_part_never_wait_for_each_other() {
        // Two polls hold half each and both want more: neither waits holding its half, so
        // the one first in line gets all it needs once the other lets go.
        let budget = MemoryBudget::new(10 * MIB);
        let stop = CancellationToken::new();
        let (mut a, mut b) = (budget.reservation(), budget.reservation());
        a.settle(5 * MIB).unwrap();
        b.settle(5 * MIB).unwrap();
        let Err(Short::Wait { need }) = a.page(3 * MIB) else {
            panic!("a had more than the budget")
        };
        let waits = tokio::spawn(async move {
            assert!(a.wait_for(need, &stop).await.unwrap());
            a
        });
        crate::testkit::until("a in line, holding nothing", || {
            budget.waiting() == 1 && budget.in_use() == 5 * MIB
        })
        .await;
        // b cannot have more either: it lets go too.
        assert!(matches!(b.page(3 * MIB), Err(Short::Wait { .. })));
        drop(b);
        let a = tokio::time::timeout(Duration::from_secs(5), waits)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((a.bytes(), budget.waiting()), (8 * MIB, 0));
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_daemon_stops() {
        let budget = MemoryBudget::new(MIB);
        let mut held = budget.reservation();
        held.page(MIB).unwrap();
        let stop = CancellationToken::new();
        stop.cancel();
        let mut r = budget.reservation();
        assert!(!r.wait_for(MIB, &stop).await.unwrap());
        assert_eq!((budget.waiting(), budget.in_use()), (0, MIB));
    }
}
