//! sd_notify: READY=1, STOPPING=1, RELOADING=1 and WATCHDOG=1. Each is a no-op without
//! `NOTIFY_SOCKET`, so the daemon runs the same outside systemd.

use sd_notify::NotifyState;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

/// Sent before a reload; `ready()` follows when it is done.
pub fn reloading() {
    let _ = sd_notify::notify(&[NotifyState::Reloading]);
}

pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Pings the watchdog at half its period while `alive` is not cancelled; returns at once when
/// `WatchdogSec=` is not set.
pub async fn watchdog(alive: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (period / 2).max(Duration::from_millis(100));
    loop {
        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
        tokio::select! {
            _ = alive.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
