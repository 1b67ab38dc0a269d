//! The decision after one delivery attempt, apart from its effects: what came of sending (a
//! status, a time-out, no connection, a body that cannot be built, a line the console did or
//! did not print), the attempt's number, the sink's retry schedule and the time the attempt
//! started go in; whether the entry is acknowledged, tried again at a time, or dead-lettered
//! comes out. No clock, no randomness (the jitter is an argument), no store, no network: the
//! deliverer reads the clock once per attempt and writes what this says.

use super::retry::{RetryAction, classify_status, next_delay};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use std::time::Duration;

/// What came of one attempt's effect, as the effect saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The receiver answered: its status, and its `Retry-After` as sent.
    Status {
        code: u16,
        retry_after: Option<String>,
    },
    /// No answer within the sink's time-out (the time-out).
    TimedOut(Duration),
    /// No answer at all (connection refused, DNS, TLS): the error chain.
    Unreachable(String),
    /// Nothing was sent: the body cannot be built (a template's error), and never will be.
    Unrenderable(String),
    /// The console sink printed the event.
    Printed,
    /// The console sink could not print it (stdout closed or full).
    NotPrinted(String),
}

/// What to do with the entry after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Delivered: it leaves the queue.
    Ack,
    /// Failed: the next attempt is due at `at` (whole milliseconds, as the store keeps it),
    /// `wait` after the attempt (as the schedule gave it, for the log).
    Retry {
        at: DateTime<Utc>,
        wait: Duration,
        reason: String,
    },
    /// Failed for good (a 410, a body that cannot be built, the schedule used up).
    Dead { reason: String },
}

/// The decision after attempt number `attempt` (1 for the first) made at `now`. `schedule`
/// is the sink's `retry`: the wait after each failed attempt, in order; `jitter` in [-1, 1]
/// spreads a wait by up to ±10%. A `Retry-After` on a 429 or 503 is a floor, up to the
/// schedule's longest step.
pub fn next(
    attempt: u32,
    answer: Answer,
    schedule: &[Duration],
    now: DateTime<Utc>,
    jitter: f64,
) -> Decision {
    match classify(answer, now) {
        RetryAction::Successful => Decision::Ack,
        RetryAction::DontRetry { reason } => Decision::Dead { reason },
        RetryAction::Retry { reason, after } => {
            match next_delay(schedule, attempt, after, jitter) {
                Some(wait) => Decision::Retry {
                    at: retry_at(now, wait),
                    wait,
                    reason,
                },
                None => Decision::Dead { reason },
            }
        }
    }
}

/// The verdict on an answer, with the reason a failure is logged and stored under.
pub fn classify(answer: Answer, now: DateTime<Utc>) -> RetryAction {
    let retry = |reason: String| RetryAction::Retry {
        reason,
        after: None,
    };
    match answer {
        Answer::Status { code, retry_after } => classify_status(code, retry_after.as_deref(), now),
        Answer::TimedOut(limit) => retry(format!(
            "no answer within {}",
            humantime::format_duration(limit)
        )),
        Answer::Unreachable(why) => retry(why),
        Answer::Unrenderable(why) => RetryAction::DontRetry {
            reason: format!("cannot render the body: {why}"),
        },
        Answer::Printed => RetryAction::Successful,
        Answer::NotPrinted(why) => retry(format!("cannot write to stdout: {why}")),
    }
}

/// `now` plus `wait`, in whole milliseconds (as stored, so a later `NotDue` names the same
/// time); the end of time when that is past it.
fn retry_at(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(wait)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .trunc_subsecs(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: [Duration; 3] = [
        Duration::from_secs(5),
        Duration::from_secs(60),
        Duration::from_secs(600),
    ];

    /// A time with sub-millisecond digits, far from today: nothing here reads the clock.
    fn now() -> DateTime<Utc> {
        "2001-02-03T04:05:06.789654Z".parse().unwrap()
    }

    fn status(code: u16, retry_after: Option<&str>) -> Answer {
        Answer::Status {
            code,
            retry_after: retry_after.map(str::to_string),
        }
    }

    fn retry_in(secs: u64, reason: &str) -> Decision {
        let wait = Duration::from_secs(secs);
        Decision::Retry {
            at: (now() + wait).trunc_subsecs(3),
            wait,
            reason: reason.into(),
        }
    }

    #[test]
    fn every_2xx_is_acknowledged() {
        for code in [200, 201, 202, 204, 299] {
            assert_eq!(
                next(1, status(code, None), &STEPS, now(), 0.0),
                Decision::Ack
            );
        }
        // Even on the last step, and with a Retry-After nobody asked for.
        assert_eq!(
            next(3, status(200, Some("60")), &STEPS, now(), 1.0),
            Decision::Ack
        );
    }

    #[test]
    fn a_410_is_dead_at_once_whatever_the_schedule_has_left() {
        assert_eq!(
            next(1, status(410, None), &STEPS, now(), 0.0),
            Decision::Dead {
                reason: "HTTP 410 Gone".into()
            }
        );
    }

    #[test]
    fn retry_after_on_429_and_503_is_a_floor_capped_at_the_longest_step() {
        for code in [429, 503] {
            let reason = format!("HTTP {code}");
            // Seconds, above the first step: honoured.
            assert_eq!(
                next(1, status(code, Some("30")), &STEPS, now(), 0.0),
                retry_in(30, &reason)
            );
            // Below the step: the step (with its jitter) wins.
            assert_eq!(
                next(2, status(code, Some("1")), &STEPS, now(), 1.0),
                retry_in(66, &reason)
            );
            // A day: capped at the longest step.
            assert_eq!(
                next(1, status(code, Some("86400")), &STEPS, now(), 0.0),
                retry_in(600, &reason)
            );
            // An HTTP date (whole seconds), read against the `now` passed in.
            let date = "Sat, 03 Feb 2001 04:05:51 GMT";
            assert_eq!(
                next(1, status(code, Some(date)), &STEPS, now(), 0.0),
                Decision::Retry {
                    at: "2001-02-03T04:05:51Z".parse().unwrap(),
                    wait: Duration::from_micros(44_210_346),
                    reason: reason.clone()
                }
            );
        }
        // On other statuses it is no promise: the schedule holds.
        assert_eq!(
            next(1, status(500, Some("300")), &STEPS, now(), 0.0),
            retry_in(5, "HTTP 500")
        );
    }

    #[test]
    fn a_redirect_is_a_failure_retried_on_the_schedule() {
        assert_eq!(
            next(1, status(302, None), &STEPS, now(), 0.0),
            retry_in(5, "HTTP 302 (redirects are not followed)")
        );
    }

    #[test]
    fn no_connection_is_retried_with_its_error() {
        let why = "error sending request: connection refused";
        assert_eq!(
            next(2, Answer::Unreachable(why.into()), &STEPS, now(), -1.0),
            retry_in(54, why)
        );
    }

    #[test]
    fn a_timeout_is_retried_naming_the_time_out() {
        assert_eq!(
            next(
                1,
                Answer::TimedOut(Duration::from_secs(10)),
                &STEPS,
                now(),
                0.0
            ),
            retry_in(5, "no answer within 10s")
        );
    }

    #[test]
    fn the_last_step_used_up_is_dead_with_the_last_reason() {
        assert_eq!(
            next(3, status(500, None), &STEPS, now(), 0.0),
            retry_in(600, "HTTP 500")
        );
        assert_eq!(
            next(4, status(500, None), &STEPS, now(), 0.0),
            Decision::Dead {
                reason: "HTTP 500".into()
            }
        );
        // A sink with no retries: the first failure is the last.
        assert_eq!(
            next(1, Answer::TimedOut(Duration::from_secs(1)), &[], now(), 0.0),
            Decision::Dead {
                reason: "no answer within 1s".into()
            }
        );
    }

    #[test]
    fn a_body_that_cannot_be_built_is_dead_at_once() {
        assert_eq!(
            next(
                1,
                Answer::Unrenderable("x is undefined".into()),
                &STEPS,
                now(),
                0.0
            ),
            Decision::Dead {
                reason: "cannot render the body: x is undefined".into()
            }
        );
    }

    #[test]
    fn the_console_acks_what_it_printed_and_retries_what_it_could_not() {
        assert_eq!(next(1, Answer::Printed, &STEPS, now(), 0.0), Decision::Ack);
        assert_eq!(
            next(
                1,
                Answer::NotPrinted("broken pipe".into()),
                &STEPS,
                now(),
                0.0
            ),
            retry_in(5, "cannot write to stdout: broken pipe")
        );
    }

    #[test]
    fn retry_times_are_whole_milliseconds_and_never_overflow() {
        let Decision::Retry { at, .. } = next(1, status(500, None), &STEPS, now(), 0.0) else {
            panic!("a 500 on the first step is retried");
        };
        assert_eq!(at.timestamp_subsec_nanos() % 1_000_000, 0);
        assert_eq!(at.timestamp_millis(), now().timestamp_millis() + 5_000);
        // A step past the end of time waits until then, without a panic.
        let forever = [Duration::from_secs(1 << 62)];
        assert_eq!(
            next(1, status(500, None), &forever, now(), 0.0),
            Decision::Retry {
                at: DateTime::<Utc>::MAX_UTC.trunc_subsecs(3),
                wait: forever[0],
                reason: "HTTP 500".into()
            }
        );
    }
}
