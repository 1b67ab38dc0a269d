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
                c.and_then(|c| match Schedule::cron_at(&c.value, self.env.now) {
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

#[cfg(test)]
mod tests {
    use crate::config::{Env, parse_file};
    use chrono::{TimeZone, Utc};
    use std::path::Path;

    /// A cron whose only runs are in 2031 loads while loading happens before then, and is
    /// refused after: the time is the one the environment was captured at, not the clock's.
    #[test]
    fn a_cron_is_checked_against_the_time_of_loading() {
        let yaml = "schedule: {cron: \"0 0 0 1 1 * 2031\"}\nsource: {url: \"http://127.0.0.1:9/x\"}\nitems: {select: \"$[*]\", key: \"$.id\"}\nsinks: [{url: console}]\n";
        let file = Path::new("once.yaml");
        let before = Env::fixed(&[], None).at(Utc.with_ymd_and_hms(2030, 6, 1, 0, 0, 0).unwrap());
        assert!(parse_file(file, yaml, &before).is_ok());
        let after = Env::fixed(&[], None).at(Utc.with_ymd_and_hms(2032, 1, 1, 0, 0, 0).unwrap());
        let Err(problems) = parse_file(file, yaml, &after) else {
            panic!("a cron with no run after loading was accepted");
        };
        assert!(problems.to_string().contains("schedule.cron"), "{problems}");
    }
}
