//! Free memory given back to the system (docs/scaling.md#memory). glibc keeps the pages of
//! freed blocks for the next allocation; after a burst (every bridge's first poll at start,
//! thousands of polls due at once) most of them stay free for good, and the daemon's RSS
//! stays at that peak: 10,000 idle bridges held 234 MiB where what they use is 145 MiB. So,
//! once a minute, the free pages go back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often [`give_back_every`] gives the free pages back.
pub const EVERY: Duration = Duration::from_secs(60);

/// How many times this process gave its free pages back (for the tests).
static GIVEN_BACK: AtomicU64 = AtomicU64::new(0);

/// Gives the pages glibc holds free back to the system (`malloc_trim`): a walk of its free
/// lists, a few milliseconds for a heap of hundreds of MiB.
pub fn give_back() {
    GIVEN_BACK.fetch_add(1, Ordering::Relaxed);
    trim();
}

/// [`give_back`], not counted: for a poll that held much of the memory budget
/// (docs/scaling.md#the-memory-budget-of-polls).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How many times this process gave its free pages back.
pub fn given_back() -> u64 {
    GIVEN_BACK.load(Ordering::Relaxed)
}

/// Gives the free pages back every [`EVERY`], until `stop`.
pub async fn give_back_every(stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(EVERY) => give_back(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn free_pages_go_back_every_minute_until_stopped() {
        let stop = CancellationToken::new();
        let task = tokio::spawn(give_back_every(stop.clone()));
        let before = given_back();
        tokio::time::sleep(EVERY * 3 + Duration::from_secs(1)).await;
        // Other tests may give back too: at least three here.
        assert!(
            given_back() >= before + 3,
            "{} then {}",
            before,
            given_back()
        );
        stop.cancel();
        task.await.unwrap();
    }
}
