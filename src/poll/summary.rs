//! What an operator sees of the polls that found nothing new. A poll answered 304 logs at
//! DEBUG: at thousands of bridges nearly every poll is one, and a line each (formatted,
//! written, kept by the journal) would cost more than the poll. So that the journal still
//! shows the daemon polling, one INFO line every [`EVERY`] counts the polls since the last:
//! `polls in the last 10m: 60000 (59400 not modified, 590 compared, 10 failed)`.
//! A poll that compared, stored or failed still logs its own line (INFO or WARN).

use super::{PollError, PollReport};
use crate::runtime::Ctx;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the summary line is written (when any poll ran).
pub const EVERY: Duration = Duration::from_secs(600);

/// The polls since the last summary, by outcome: three counters, whatever the bridges.
#[derive(Debug, Default)]
pub struct Tally {
    not_modified: AtomicU64,
    compared: AtomicU64,
    failed: AtomicU64,
}

/// What a [`Tally`] counted over one period.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub not_modified: u64,
    pub compared: u64,
    pub failed: u64,
}

impl Tally {
    /// Counts a poll's result.
    pub fn count(&self, result: &Result<PollReport, PollError>) {
        let counter = match result {
            Ok(r) if r.not_modified => &self.not_modified,
            Ok(_) => &self.compared,
            Err(_) => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// What was counted since the last take; counting starts again from zero.
    pub fn take(&self) -> Counts {
        Counts {
            not_modified: self.not_modified.swap(0, Ordering::Relaxed),
            compared: self.compared.swap(0, Ordering::Relaxed),
            failed: self.failed.swap(0, Ordering::Relaxed),
        }
    }
}

impl Counts {
    pub fn polls(&self) -> u64 {
        self.not_modified + self.compared + self.failed
    }

    /// The summary line for `period`; None when no poll ran.
    pub fn line(&self, period: Duration) -> Option<String> {
        (self.polls() > 0).then(|| {
            format!(
                "polls in the last {}: {} ({} not modified, {} compared, {} failed)",
                humantime::format_duration(period),
                self.polls(),
                self.not_modified,
                self.compared,
                self.failed
            )
        })
    }
}

/// Writes the summary line every `period` until `stop`.
pub async fn every(ctx: Arc<Ctx>, period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = ctx.polled.take();
        if let Some(line) = c.line(period) {
            tracing::info!(
                polls = c.polls(),
                not_modified = c.not_modified,
                compared = c.compared,
                failed = c.failed,
                "{line}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poll::FetchError;

    #[test]
    fn the_summary_counts_each_outcome_once_per_period() {
        let t = Tally::default();
        for _ in 0..3 {
            t.count(&Ok(PollReport {
                not_modified: true,
                ..Default::default()
            }));
        }
        t.count(&Ok(PollReport::default()));
        t.count(&Err(PollError::Fetch(FetchError::Status {
            url: "http://127.0.0.1:1/".into(),
            status: 500,
        })));
        let c = t.take();
        assert_eq!(
            c,
            Counts {
                not_modified: 3,
                compared: 1,
                failed: 1
            }
        );
        assert_eq!(
            c.line(EVERY).as_deref(),
            Some("polls in the last 10m: 5 (3 not modified, 1 compared, 1 failed)")
        );
        // Counting starts again; a period without polls writes nothing.
        assert_eq!(t.take(), Counts::default());
        assert_eq!(Counts::default().line(EVERY), None);
    }
}
