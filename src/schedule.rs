//! When a bridge polls: `every` at a stable offset inside its interval, or `cron`
//! (docs/configuration.md#schedule). Pure: the clock is an argument.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone)]
pub enum Schedule {
    /// Fixed interval; each bridge fires at `offset` past each multiple of the interval (Unix
    /// epoch based), the offset coming from a hash of its name, so thousands of bridges with the
    /// same interval spread out over it instead of firing together.
    Every(Duration),
    /// A cron expression, as written, and the cron crate schedules it stands for. A crontab(5)
    /// line that restricts both day-of-month and day-of-week fires when either matches, which
    /// takes two schedules. Boxed: most bridges poll `every`, and hold a pointer, not this.
    Cron(Box<Cron>),
}

/// A `cron` schedule: the expression as written and what it stands for.
#[derive(Debug, Clone)]
pub struct Cron {
    pub expr: String,
    pub schedules: Vec<cron::Schedule>,
}

impl Schedule {
    /// The first fire time strictly after `now`.
    pub fn next_after(&self, name: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(interval) => {
                let iv = interval.as_millis().max(1) as i64;
                let off = (stable_hash(name) % iv as u64) as i64;
                let t = crate::clock::to_ms(now);
                let k = (t - off).div_euclid(iv) + 1;
                crate::clock::from_ms(k * iv + off)
            }
            Schedule::Cron(c) => c
                .schedules
                .iter()
                .filter_map(|s| s.after(&now).next())
                .min(),
        }
    }

    /// [`Schedule::cron_at`] at the real time, for tests.
    #[cfg(test)]
    pub fn cron(expr: &str) -> Result<Schedule, String> {
        Schedule::cron_at(expr, crate::clock::Clock::system().now())
    }

    /// Parses a cron expression: 5 fields as in crontab(5), or the cron crate's 6/7 fields
    /// (seconds first, optional year). All in UTC. One that never fires after `now` (only
    /// past years, February 30th) is refused: the bridge would load and never poll. Loading
    /// passes the time its environment was captured at (`config::Env`).
    pub fn cron_at(expr: &str, now: DateTime<Utc>) -> Result<Schedule, String> {
        let expr = expr.trim();
        let fields: Vec<&str> = expr.split_whitespace().collect();
        let translated: Vec<String> = match fields.len() {
            1 if expr.starts_with('@') => vec![expr.to_string()],
            5 => translate_crontab(&fields)?,
            6 | 7 => vec![expr.to_string()],
            n => {
                return Err(format!(
                    "cron `{expr}` has {n} fields; write 5 (crontab: minute hour day-of-month month day-of-week) or 6/7 (seconds first)"
                ));
            }
        };
        let schedules = translated
            .iter()
            .map(|e| cron::Schedule::from_str(e).map_err(|err| format!("cron `{expr}`: {err}")))
            .collect::<Result<Vec<_>, _>>()?;
        let s = Schedule::Cron(Box::new(Cron {
            expr: expr.to_string(),
            schedules,
        }));
        if s.next_after("", now).is_none() {
            return Err(format!(
                "cron `{expr}` never runs again after {} (its years are past, or its date never comes)",
                now.format("%Y-%m-%d")
            ));
        }
        Ok(s)
    }
}

/// A hash of a name that is the same on every machine and every version.
pub fn stable_hash(name: &str) -> u64 {
    let d: [u8; 32] = Sha256::digest(name.as_bytes()).into();
    let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = d;
    u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
}

fn is_any(field: &str) -> bool {
    field == "*" || field == "?"
}

/// crontab(5) -> cron crate: seconds field added, weekdays renumbered (crontab 0-7 with 0 and 7
/// Sunday; the crate 1-7 from Sunday), and the day-of-month OR day-of-week rule kept.
fn translate_crontab(f: &[&str]) -> Result<Vec<String>, String> {
    let (min, hour, dom, month, dow) = (f[0], f[1], f[2], f[3], f[4]);
    let dow_t = if is_any(dow) {
        "*".to_string()
    } else {
        let days = expand_weekdays(dow)?;
        days.iter()
            .map(|d| (d + 1).to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if !is_any(dom) && !is_any(dow) {
        Ok(vec![
            format!("0 {min} {hour} {dom} {month} *"),
            format!("0 {min} {hour} * {month} {dow_t}"),
        ])
    } else {
        Ok(vec![format!("0 {min} {hour} {dom} {month} {dow_t}")])
    }
}

/// The set of weekdays (0 = Sunday .. 6) a crontab day-of-week field names.
fn expand_weekdays(field: &str) -> Result<Vec<u32>, String> {
    let mut set = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("bad step `{s}` in day-of-week `{field}`"))?,
            ),
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 7)
        } else if let Some((a, b)) = range.split_once('-') {
            (weekday(a, field)?, weekday(b, field)?)
        } else {
            let d = weekday(range, field)?;
            (d, if item.contains('/') { 7 } else { d })
        };
        if lo > hi {
            return Err(format!("day-of-week range `{range}` runs backwards"));
        }
        let mut d = lo;
        while d <= hi {
            set[(d % 7) as usize] = true;
            d += step;
        }
    }
    Ok((0..7).filter(|d| set[*d as usize]).collect())
}

fn weekday(s: &str, field: &str) -> Result<u32, String> {
    const NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    if let Ok(n) = s.parse::<u32>() {
        if n <= 7 {
            return Ok(n);
        }
    } else if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(i as u32);
    }
    Err(format!(
        "bad day-of-week `{s}` in `{field}` (0-7 with 0 and 7 Sunday, or sun..sat)"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn crontab_monday_is_monday() {
        // 2026-11-28 is a Saturday.
        let s = Schedule::cron("0 9 * * 1").unwrap();
        let next = s.next_after("x", at("2026-11-28T10:00:00Z")).unwrap();
        assert_eq!(next, at("2026-11-30T09:00:00Z"));
        assert_eq!(next.weekday(), Weekday::Mon);
    }

    #[test]
    fn sunday_is_0_and_7_and_ranges_translate() {
        for e in ["0 9 * * 0", "0 9 * * 7", "0 9 * * sun"] {
            let next = Schedule::cron(e)
                .unwrap()
                .next_after("x", at("2026-11-28T10:00:00Z"))
                .unwrap();
            assert_eq!(next, at("2026-11-29T09:00:00Z"), "{e}");
        }
        // Friday to Sunday: from Saturday noon the next is Sunday.
        let fri_sun = Schedule::cron("0 12 * * 5-7").unwrap();
        assert_eq!(
            fri_sun.next_after("x", at("2026-11-28T13:00:00Z")).unwrap(),
            at("2026-11-29T12:00:00Z")
        );
        // Weekdays only: Saturday -> Monday.
        let wd = Schedule::cron("30 8 * * 1-5").unwrap();
        assert_eq!(
            wd.next_after("x", at("2026-11-28T00:00:00Z")).unwrap(),
            at("2026-11-30T08:30:00Z")
        );
        assert_eq!(expand_weekdays("*/2").unwrap(), vec![0, 2, 4, 6]);
        assert_eq!(expand_weekdays("1-5/2").unwrap(), vec![1, 3, 5]);
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // crontab: the 1st of the month OR any Monday.
        let s = Schedule::cron("0 0 1 * 1").unwrap();
        // From Saturday 2026-11-28: Monday 30th comes before December 1st.
        assert_eq!(
            s.next_after("x", at("2026-11-28T00:00:00Z")).unwrap(),
            at("2026-11-30T00:00:00Z")
        );
        assert_eq!(
            s.next_after("x", at("2026-11-30T00:00:00Z")).unwrap(),
            at("2026-12-01T00:00:00Z")
        );
    }

    #[test]
    fn six_and_seven_fields_pass_through() {
        let s = Schedule::cron("*/10 * * * * *").unwrap();
        let next = s.next_after("x", at("2026-11-28T10:00:01Z")).unwrap();
        assert_eq!(next, at("2026-11-28T10:00:10Z"));
        assert!(Schedule::cron("0 0 * * *  * 2099").is_ok());
    }

    #[test]
    fn bad_cron_says_why() {
        assert!(Schedule::cron("0 9 * *").unwrap_err().contains("4 fields"));
        assert!(
            Schedule::cron("0 9 * * 8")
                .unwrap_err()
                .contains("day-of-week")
        );
        assert!(
            Schedule::cron("0 25 * * *")
                .unwrap_err()
                .contains("cron `0 25 * * *`")
        );
    }

    #[test]
    fn a_cron_that_never_runs_again_is_refused() {
        let now = at("2026-11-28T10:00:00Z");
        for e in [
            "0 0 0 1 1 * 2020",
            "0 0 0 * * * 2000-2025",
            "0 0 30 2 *",
            "0 0 31 4 *",
        ] {
            let err = Schedule::cron_at(e, now).unwrap_err();
            assert!(
                err.contains("never runs again after 2026-11-28"),
                "{e}: {err}"
            );
        }
        for e in [
            "0 0 0 1 1 * 2020-2030",
            "0 0 0 1 1 * 2027",
            "0 0 29 2 *",
            "@yearly",
        ] {
            assert!(Schedule::cron_at(e, now).is_ok(), "{e}");
        }
        // The last run of a schedule is still ahead a moment before it.
        let last = at("2099-12-31T23:59:59Z");
        assert!(Schedule::cron_at("0 0 0 31 12 * 2099", last).is_err());
        assert!(Schedule::cron_at("0 0 0 31 12 * 2099", at("2099-12-30T00:00:00Z")).is_ok());
    }

    #[test]
    fn every_is_offset_by_name_and_stable() {
        let s = Schedule::Every(Duration::from_secs(60));
        let now = at("2026-11-28T10:00:00Z");
        let a = s.next_after("alpha", now).unwrap();
        let b = s.next_after("beta", now).unwrap();
        assert_ne!(
            a.second() * 1000 + a.timestamp_subsec_millis(),
            b.second() * 1000 + b.timestamp_subsec_millis()
        );
        for name in ["alpha", "beta"] {
            let n1 = s.next_after(name, now).unwrap();
            assert!(n1 > now && n1 <= now + chrono::Duration::seconds(60));
            // The one after is exactly one interval later, and asking just before gives the same.
            let n2 = s.next_after(name, n1).unwrap();
            assert_eq!(n2 - n1, chrono::Duration::seconds(60));
            assert_eq!(
                s.next_after(name, n1 - chrono::Duration::milliseconds(1))
                    .unwrap(),
                n1
            );
        }
    }
}
