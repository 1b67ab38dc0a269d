//! When a source asks us to stop polling for a while (SPEC §7): `Retry-After` on a 429 or 503,
//! or `X-RateLimit-Remaining: 0` with `X-RateLimit-Reset` on any answer. Pure: the clock is an
//! argument.

use chrono::{DateTime, TimeDelta, Utc};
use reqwest::header::HeaderMap;

/// The longest pause a source can impose. A reset far in the future is more likely a unit
/// mix-up (milliseconds for seconds) than a real quota; the bridge then tries again a day later.
pub const MAX_PAUSE: TimeDelta = TimeDelta::days(1);

/// Until when the bridge must not poll after this answer, if the answer says so.
pub fn pause_until(status: u16, headers: &HeaderMap, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let retry_after = match status {
        429 | 503 => text("retry-after")
            .and_then(|v| crate::deliver::retry::parse_retry_after(v, now.into()))
            .and_then(|d| TimeDelta::from_std(d).ok())
            .map(|d| now + d),
        _ => None,
    };
    let reset = match text("x-ratelimit-remaining") {
        Some("0") => text("x-ratelimit-reset")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|secs| DateTime::from_timestamp(secs, 0)),
        _ => None,
    };
    retry_after
        .into_iter()
        .chain(reset)
        .max()
        .filter(|t| *t > now)
        .map(|t| t.min(now + MAX_PAUSE))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn retry_after_in_seconds_or_as_a_date_on_429_and_503() {
        let now = at("2026-01-01T12:00:00Z");
        let secs = h(&[("retry-after", "120")]);
        assert_eq!(
            pause_until(429, &secs, now),
            Some(at("2026-01-01T12:02:00Z"))
        );
        assert_eq!(
            pause_until(503, &secs, now),
            Some(at("2026-01-01T12:02:00Z"))
        );
        // Other statuses do not pause on Retry-After (a 500 is just a failed poll).
        assert_eq!(pause_until(500, &secs, now), None);
        let date = h(&[("retry-after", "Thu, 01 Jan 2026 12:05:00 GMT")]);
        assert_eq!(
            pause_until(429, &date, now),
            Some(at("2026-01-01T12:05:00Z"))
        );
        // In the past, zero, or nonsense: no pause.
        for v in ["Thu, 01 Jan 2026 11:00:00 GMT", "0", "soon"] {
            assert_eq!(
                pause_until(429, &h(&[("retry-after", v)]), now),
                None,
                "{v}"
            );
        }
        assert_eq!(pause_until(429, &HeaderMap::new(), now), None);
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
                pause_until(status, &gone, now),
                Some(at("2026-01-01T12:01:30Z")),
                "{status}"
            );
        }
        let left = h(&[
            ("x-ratelimit-remaining", "1"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(pause_until(200, &left, now), None);
        // The later of the two wins.
        let both = h(&[
            ("retry-after", "30"),
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset),
        ]);
        assert_eq!(
            pause_until(429, &both, now),
            Some(at("2026-01-01T12:01:30Z"))
        );
        // A reset in milliseconds (a unit mix-up) is capped at a day.
        let ms = (now.timestamp_millis() + 5000).to_string();
        let odd = h(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", &ms)]);
        assert_eq!(pause_until(200, &odd, now), Some(now + MAX_PAUSE));
    }
}
