//! What to do after an attempt, and when to try again. Pure.

use crate::http::{RetryAfter, retry_after};
use chrono::{DateTime, Utc};
use std::time::Duration;

/// The verdict on one delivery attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAction {
    Successful,
    /// Try again on the schedule; `after` is a floor the receiver asked for (Retry-After).
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Never again: straight to the dead letters.
    DontRetry {
        reason: String,
    },
}

/// Classifies an HTTP answer.
pub fn classify_status(status: u16, retry_after: Option<&str>, now: DateTime<Utc>) -> RetryAction {
    match status {
        200..=299 => RetryAction::Successful,
        410 => RetryAction::DontRetry {
            reason: "HTTP 410 Gone".into(),
        },
        300..=399 => RetryAction::Retry {
            reason: format!("HTTP {status} (redirects are not followed)"),
            after: None,
        },
        429 | 503 => RetryAction::Retry {
            reason: format!("HTTP {status}"),
            after: retry_after.and_then(|v| parse_retry_after(v, now)),
        },
        _ => RetryAction::Retry {
            reason: format!("HTTP {status}"),
            after: None,
        },
    }
}

/// `Retry-After`: delay-seconds or an HTTP date, as a wait from `now`.
pub fn parse_retry_after(v: &str, now: DateTime<Utc>) -> Option<Duration> {
    match retry_after(v.trim())? {
        RetryAfter::Seconds(secs) => Some(Duration::from_secs(secs)),
        RetryAfter::At(at) => Some((at - now).to_std().unwrap_or(Duration::ZERO)),
    }
}

/// The wait before the next attempt, after `attempts` failed ones; None when the schedule is
/// used up. `jitter` in [-1, 1] spreads the step by ±10%; `after` (Retry-After) is honoured up
/// to the schedule's longest step.
pub fn next_delay(
    schedule: &[Duration],
    attempts: u32,
    after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let step = *schedule.get(attempts.checked_sub(1)? as usize)?;
    let spread = step.mul_f64(1.0 + 0.1 * jitter.clamp(-1.0, 1.0));
    let longest = schedule.iter().max().copied().unwrap_or_default();
    Some(match after {
        Some(a) => spread.max(a.min(longest)),
        None => spread,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn httpdate_parse(v: &str) -> Option<DateTime<Utc>> {
        Some(DateTime::parse_from_rfc2822(v).ok()?.to_utc())
    }

    const S: [Duration; 3] = [
        Duration::from_secs(5),
        Duration::from_secs(60),
        Duration::from_secs(600),
    ];

    #[test]
    fn statuses() {
        let now = Utc::now();
        assert_eq!(classify_status(204, None, now), RetryAction::Successful);
        assert!(matches!(
            classify_status(410, None, now),
            RetryAction::DontRetry { .. }
        ));
        assert!(matches!(
            classify_status(302, None, now),
            RetryAction::Retry { after: None, .. }
        ));
        assert_eq!(
            classify_status(429, Some("30"), now),
            RetryAction::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(30))
            }
        );
        let date = httpdate_parse("Sat, 28 Nov 2026 10:00:40 GMT").unwrap();
        let now = date - Duration::from_secs(40);
        assert_eq!(
            parse_retry_after("Sat, 28 Nov 2026 10:00:40 GMT", now),
            Some(Duration::from_secs(40))
        );
        // Retry-After on a 500 is not a promise the receiver makes.
        assert!(matches!(
            classify_status(500, Some("30"), now),
            RetryAction::Retry { after: None, .. }
        ));
    }

    #[test]
    fn schedule_with_jitter_and_retry_after() {
        assert_eq!(next_delay(&S, 1, None, 0.0), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(&S, 2, None, 1.0), Some(Duration::from_secs(66)));
        assert_eq!(next_delay(&S, 2, None, -1.0), Some(Duration::from_secs(54)));
        assert_eq!(next_delay(&S, 4, None, 0.0), None);
        assert_eq!(next_delay(&S, 0, None, 0.0), None);
        assert_eq!(
            next_delay(&S, 1, Some(Duration::from_secs(30)), 0.0),
            Some(Duration::from_secs(30))
        );
        // Retry-After is capped at the longest step.
        assert_eq!(
            next_delay(&S, 1, Some(Duration::from_secs(86400)), 0.0),
            Some(Duration::from_secs(600))
        );
    }
}
