//! `schedule` checked (docs/configuration.md#schedule): `every` or `cron`, exactly one, and the
//! jitter.

use super::Validator;
use crate::config::raw;
use crate::schedule::Schedule;
use std::time::Duration;

impl Validator<'_> {
    /// `every` or `cron` (exactly one), and the jitter.
    pub(super) fn schedule(
        &mut self,
        s: &raw::RawSchedule,
    ) -> (Option<Schedule>, Option<Duration>) {
        let schedule = match (&s.every, &s.cron) {
            (Some(e), None) => self
                .duration(
                    "schedule.every",
                    e,
                    Duration::from_millis(500),
                    Duration::from_secs(7 * 86400),
                )
                .map(Schedule::Every),
            (None, Some(c)) => {
                let c = self.value("schedule.cron", c);
                c.and_then(|c| match Schedule::cron(&c.value) {
                    Ok(s) => Some(s),
                    Err(_) if c.interpolated() => {
                        let shown = &c.shown;
                        self.err(
                            "schedule.cron",
                            format!("schedule.cron: `{shown}` is not a valid cron expression"),
                        );
                        None
                    }
                    Err(e) => {
                        self.err("schedule.cron", format!("schedule.cron: {e}"));
                        None
                    }
                })
            }
            _ => {
                self.err(
                    "schedule",
                    "schedule: give exactly one of `every` or `cron`",
                );
                None
            }
        };
        let jitter = match &s.jitter {
            Some(j) => self.duration(
                "schedule.jitter",
                j,
                Duration::ZERO,
                Duration::from_secs(86400),
            ),
            None => None,
        };
        (schedule, jitter)
    }
}
