//! `emit` checked (docs/configuration.md#emit): which changes become events, the first poll, the
//! guard on deletes, the `when` rule, when failing polls become an event, and how long a
//! change must hold (`settle`).

use super::Validator;
use super::model::{Emit, EmitMore};
use crate::config::raw;
use crate::diff::settle::Rule;
use std::time::Duration;

impl Validator<'_> {
    pub(super) fn emit(&mut self, e: &raw::RawEmit) -> Emit {
        let events = e.events.clone().unwrap_or_else(|| {
            vec![
                raw::EventKind::Created,
                raw::EventKind::Updated,
                raw::EventKind::Deleted,
            ]
        });
        let after_missing = e.deletes.after_missing.unwrap_or(1);
        if after_missing == 0 {
            self.err(
                "emit.deletes.after_missing",
                "emit.deletes.after_missing: must be at least 1",
            );
        }
        let max_fraction = e.deletes.max_fraction.unwrap_or(0.5);
        if !(max_fraction > 0.0 && max_fraction <= 1.0) {
            self.err(
                "emit.deletes.max_fraction",
                "emit.deletes.max_fraction: must be above 0 and at most 1",
            );
        }
        let when = e.when.as_ref().and_then(|w| self.rule("emit.when", w));
        let failures_after = e.failures.as_ref().map(|f| f.after);
        if failures_after == Some(0) {
            self.err(
                "emit.failures.after",
                "emit.failures.after: must be at least 1",
            );
        }
        let settle = e.settle.as_ref().and_then(|s| self.settle(s));
        let quiet = e.quiet.as_ref().and_then(|q| {
            let (min, max) = (Duration::from_secs(60), Duration::from_secs(365 * 86_400));
            self.duration("emit.quiet", q, min, max)
        });
        let more = EmitMore {
            when,
            failures_after,
            settle,
            quiet,
        };
        let given = more.when.is_some()
            || more.failures_after.is_some()
            || more.settle.is_some()
            || more.quiet.is_some();
        Emit {
            shape: e.shape,
            more: given.then(|| Box::new(more)),
            created: events.contains(&raw::EventKind::Created),
            updated: events.contains(&raw::EventKind::Updated),
            deleted: events.contains(&raw::EventKind::Deleted),
            first_poll: e.first_poll,
            after_missing,
            max_fraction,
        }
    }

    /// `emit.settle`: polls (at least 1) or a duration (1s .. 30d).
    fn settle(&mut self, s: &raw::RawSettle) -> Option<Rule> {
        const PATH: &str = "emit.settle";
        match s {
            raw::RawSettle::Polls(0) => {
                self.err(PATH, "emit.settle: must be at least 1 poll");
                None
            }
            raw::RawSettle::Polls(n) => Some(Rule::Polls(*n)),
            raw::RawSettle::Duration(d) => {
                let (min, max) = (Duration::from_secs(1), Duration::from_secs(30 * 86_400));
                let d = self.duration(PATH, d, min, max)?;
                Some(Rule::Millis(
                    i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
                ))
            }
        }
    }
}
