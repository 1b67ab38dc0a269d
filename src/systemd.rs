//! sd_notify: READY=1, STOPPING=1, RELOADING=1 and WATCHDOG=1. Each is a no-op without
//! `NOTIFY_SOCKET`, so the daemon runs the same outside systemd. `dirs`: moving a shard's
//! state to where `pollhook@.service` keeps it now.

pub mod dirs;

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

/// Pings the watchdog at half its period while `alive` is not cancelled and `wedged` finds
/// nothing wrong; returns at once when `WatchdogSec=` is not set. That this task runs at all
/// shows the runtime is not blocked; `wedged` looks at the loops and the store.
pub async fn watchdog(alive: CancellationToken, wedged: impl Fn() -> Option<String>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (period / 2).max(Duration::from_millis(100));
    let mut silent = false;
    loop {
        match wedged() {
            None => {
                if silent {
                    tracing::info!("watchdog: pinging again");
                    silent = false;
                }
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
            Some(why) => {
                if !silent {
                    tracing::error!(
                        "watchdog: no longer pinging, so systemd restarts pollhook: {why}"
                    );
                    silent = true;
                }
            }
        }
        tokio::select! {
            _ = alive.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
