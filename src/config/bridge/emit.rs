//! `emit` checked (docs/configuration.md#emit): which changes become events, the first poll, the
//! guard on deletes, the `when` rule, and when failing polls become an event.

use super::Validator;
use super::model::Emit;
use crate::config::raw;

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
        Emit {
            when,
            failures_after,
            created: events.contains(&raw::EventKind::Created),
            updated: events.contains(&raw::EventKind::Updated),
            deleted: events.contains(&raw::EventKind::Deleted),
            first_poll: e.first_poll,
            after_missing,
            max_fraction,
        }
    }
}
