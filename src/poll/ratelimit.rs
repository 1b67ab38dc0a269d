//! When a source asks us to stop polling for a while (docs/configuration.md#rate-limits):
//! `Retry-After` on a 429 or 503, or `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset` on any
//! answer. Pure: the clock is an argument.

use crate::http::{RetryAfter, retry_after};
use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::HeaderMap;

/// The longest pause a source can impose. A reset far in the future is more likely a unit
/// mix-up (milliseconds for seconds) than a real quota; the bridge then tries again a day later.
pub const MAX_PAUSE: TimeDelta = TimeDelta::days(1);

/// What an answer says about pausing.
#[derive(Debug, Default, PartialEq)]
pub struct Pause {
    /// Until when the bridge must not poll, if the answer says so (at most [`MAX_PAUSE`]
    /// away).
    pub until: Option<DateTime<Utc>>,
    /// A rate-limit header that counted here but could not be read, and its value: it was
    /// ignored (the caller says so).
    pub unreadable: Option<(&'static str, String)>,
}

/// Until when the bridge must not poll after this answer, if the answer says so. Any value
/// that parses is honoured up to [`MAX_PAUSE`], however far it points; one that does not is
/// ignored and reported in [`Pause::unreadable`].
pub fn pause_until(status: u16, headers: &HeaderMap, now: DateTime<Utc>) -> Pause {
    let mut unreadable = None;
    let mut text = |name: &'static str| {
        let v = headers.get(name)?;
        match v.to_str() {
            Ok(s) => Some((name, s.trim())),
            Err(_) => {
                unreadable.get_or_insert((name, String::from_utf8_lossy(v.as_bytes()).into()));
                None
            }
        }
    };
    let retry_after = match status {
        429 | 503 => text("retry-after"),
        _ => None,
    };
    let reset = match text("x-ratelimit-remaining") {
        Some((_, "0")) => text("x-ratelimit-reset"),
        _ => None,
    };
    let latest = i128::from(now.timestamp()) + i128::from(MAX_PAUSE.num_seconds());
    let mut candidates = Vec::new();
    if let Some((name, v)) = retry_after {
        match retry_after_at(v, now) {
            Some(t) => candidates.push(t),
            None => {
                unreadable.get_or_insert((name, v.to_string()));
            }
        }
    }
    if let Some((name, v)) = reset {
        match unix_seconds(v) {
            // Seconds since the epoch, compared before any date is made of them: a value
            // beyond what a date can hold is simply later than a day from now.
            Some(secs) if secs >= latest => candidates.push(now + MAX_PAUSE),
            Some(secs) => candidates.extend(
                i64::try_from(secs)
                    .ok()
                    .and_then(|s| DateTime::from_timestamp(s, 0)),
            ),
            None => {
                unreadable.get_or_insert((name, v.to_string()));
            }
        }
    }
    let until = candidates
        .into_iter()
        .max()
        .filter(|t| *t > now)
        .map(|t| t.min(now + MAX_PAUSE));
    Pause { until, unreadable }
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP date, as a time, at most
/// [`MAX_PAUSE`] from now. None when it is neither.
fn retry_after_at(v: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    Some(match retry_after(v)? {
        RetryAfter::Seconds(secs) => {
            let secs = secs.min(MAX_PAUSE.num_seconds() as u64) as i64;
            now + TimeDelta::seconds(secs)
        }
        RetryAfter::At(at) => at.min(now + MAX_PAUSE),
    })
}

/// `X-RateLimit-Reset`: Unix seconds, maybe with a fraction (dropped) or a sign. Any number of
/// digits (saturating).
fn unix_seconds(v: &str) -> Option<i128> {
    let (negative, rest) = match v.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = int.parse::<i128>().unwrap_or(i128::MAX);
    Some(if negative { -secs } else { secs })
}

#[cfg(test)]
mod tests {
    use super::{HeaderMap, MAX_PAUSE, Pause};
    use chrono::{DateTime, Utc};

    fn h(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, v.parse().unwrap());
        }
        m
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    /// The pause alone.
    fn until(status: u16, headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        super::pause_until(status, headers, now).until
    }

    #[test]
    fn retry_after_in_seconds_or_as_a_date_on_429_and_503() {
        let now = at("2026-01-01T12:00:00Z");
        let secs = h(&[("retry-after", "120")]);
        assert_eq!(until(429, &secs, now), Some(at("2026-01-01T12:02:00Z")));
        assert_eq!(until(503, &secs, now), Some(at("2026-01-01T12:02:00Z")));
        // Other statuses do not pause on Retry-After (a 500 is just a failed poll).
        assert_eq!(until(500, &secs, now), None);
        let date = h(&[("retry-after", "Thu, 01 Jan 2026 12:05:00 GMT")]);
        assert_eq!(until(429, &date, now), Some(at("2026-01-01T12:05:00Z")));
        // In the past, zero, or nonsense: no pause.
        for v in ["Thu, 01 Jan 2026 11:00:00 GMT", "0", "soon"] {
            assert_eq!(until(429, &h(&[("retry-after", v)]), now), None, "{v}");
        }
        assert_eq!(until(429, &HeaderMap::new(), now), None);
    }

    #[test]
    fn exhausted_rate_limit_pauses_until_its_reset_on_any_answer() {
        let now = at("2026-01-01T12:00:00Z");
        let reset = (now.timestamp() + 90).to_string();
        let gone = h(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        for status in [200, 403, 429] {
            assert_eq!(
                until(status, &gone, now),
                Some(at("2026-01-01T12:01:30Z")),
                "{status}"
            );
        }
        let left = h(&[
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(until(200, &left, now), None);
        // The later of the two wins.
        let both = h(&[
            ("retry-after", "30"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(until(429, &both, now), Some(at("2026-01-01T12:01:30Z")));
        // A reset in milliseconds (a unit mix-up) is capped at a day.
        let ms = (now.timestamp_millis() + 5000).to_string();
        let odd = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &ms)]);
        assert_eq!(until(200, &odd, now), Some(now + MAX_PAUSE));
    }

    #[test]
    fn absurd_values_are_capped_at_a_day_and_unreadable_ones_reported() {
        let now = at("2026-01-01T12:00:00Z");
        let capped = Pause {
            until: Some(now + MAX_PAUSE),
            unreadable: None,
        };
        for v in [
            "9000000000000000",
            "18446744073709551615",
            "99999999999999999999999999999999999999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            let p = super::pause_until(429, &h(&[("retry-after", v)]), now);
            assert_eq!(p, capped, "{v}");
        }
        for v in [
            "9223372036854775807",
            "9223372036854775808",
            "99999999999999999999999999999999999999999999999",
            "1700000000000.5",
        ] {
            let m = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", v)]);
            assert_eq!(super::pause_until(200, &m, now), capped, "{v}");
        }
        for v in [
            "-9223372036854775808",
            "-99999999999999999999999",
            "0",
            "1.5",
        ] {
            let m = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", v)]);
            assert_eq!(super::pause_until(200, &m, now), Pause::default(), "{v}");
        }
        for (name, v) in [
            ("retry-after", "soon"),
            ("retry-after", "-5"),
            ("retry-after", "1.5"),
            ("retry-after", "+5"),
            ("x-ratelimit-reset", "tomorrow"),
            ("x-ratelimit-reset", "1e9"),
            ("x-ratelimit-reset", ""),
        ] {
            let m = h(&[(name, v), ("x-ratelimit-remaining", "0")]);
            let p = super::pause_until(429, &m, now);
            assert_eq!(p.until, None, "{name}: {v}");
            assert_eq!(p.unreadable, Some((name, v.to_string())), "{name}: {v}");
        }
        // Not text at all.
        let mut m = HeaderMap::new();
        m.insert(
            "retry-after",
            reqwest::header::HeaderValue::from_bytes(b"\xff5").unwrap(),
        );
        let p = super::pause_until(503, &m, now);
        assert_eq!(p.until, None);
        assert_eq!(p.unreadable.unwrap().0, "retry-after");
        // Headers that do not count for this answer are not read at all.
        let m = h(&[("retry-after", "soon"), ("x-ratelimit-reset", "never")]);
        assert_eq!(super::pause_until(200, &m, now), Pause::default());
    }
}
