//! Fault injection for the tests, in debug builds only: `POLLHOOK_FAULT` names the faults to
//! inject, comma-separated, each `POINT:BRIDGE` or `POINT:BRIDGE:TIMES` (the first TIMES
//! passes only). The points are `poll-panic` (a poll of that bridge panics),
//! `deliver-panic` (a delivery attempt of that bridge panics) and `handoff-after-import` (the
//! process kills itself with SIGKILL, as `kill -9` would, once that bridge's handoff is
//! imported and durable and before its acknowledgement is sent). A release build ignores the
//! variable: nothing here is compiled into it.

/// Panics if `POLLHOOK_FAULT` asks for a fault at `point` in `bridge` (debug builds only).
/// The panic's text holds `detail` as it is (a URL with its credentials, as a real panic's
/// text might), so the tests can check that no log line shows it unmasked.
pub fn inject(point: &str, bridge: &str, detail: &str) {
    #[cfg(debug_assertions)]
    if should_fail(point, bridge) {
        panic!("fault injected: {point} in bridge `{bridge}` ({detail})");
    }
    #[cfg(not(debug_assertions))]
    let _ = (point, bridge, detail);
}

/// Kills the process at once with SIGKILL (no unwinding, no flush, nothing logged) if
/// `POLLHOOK_FAULT` asks for a fault at `point` in `bridge` (debug builds only).
pub fn kill(point: &str, bridge: &str) {
    #[cfg(debug_assertions)]
    if should_fail(point, bridge) {
        // SAFETY: kill(2) on this process' own id; it takes no pointer.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::process::abort();
    }
    #[cfg(not(debug_assertions))]
    let _ = (point, bridge);
}

#[cfg(debug_assertions)]
fn should_fail(point: &str, bridge: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static USED: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    let Ok(spec) = std::env::var("POLLHOOK_FAULT") else {
        return false;
    };
    for f in spec.split(',') {
        let mut parts = f.trim().splitn(3, ':');
        if parts.next() != Some(point) || parts.next() != Some(bridge) {
            continue;
        }
        let times: Option<u64> = parts.next().and_then(|t| t.parse().ok());
        let mut used = USED.lock().unwrap_or_else(|p| p.into_inner());
        let n = used
            .get_or_insert_with(HashMap::new)
            .entry(f.trim().to_string())
            .or_insert(0);
        *n += 1;
        return times.is_none_or(|t| *n <= t);
    }
    false
}
