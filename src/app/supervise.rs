//! The supervisors: a bridge's task started again when it ends on its own (returned or
//! panicked), and the store watched and opened again after a write failure, each logged,
//! counted and shown by `/healthz` while it lasts.

use crate::config::Bridge;
use crate::runtime::Ctx;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// A bridge's tasks: its scheduler, and one deliverer per sink.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Task {
    Poll,
    Delivery,
}

impl Task {
    fn word(self) -> &'static str {
        match self {
            Task::Poll => "poll",
            Task::Delivery => "delivery",
        }
    }
}

/// Runs one of a bridge's tasks until `stop`, and starts it again when it ends on its own (it
/// returned, or panicked): logged at ERROR, counted in the bridge's status and in
/// `pollhook_task_restarts_total`, and shown by `/healthz` until it runs again. The poll task
/// is started again on the bridge's next slot (and polls at once then); a deliverer after a
/// pause that doubles from 1 s to 5 min while it keeps ending.
pub(super) async fn supervised<F, Fut>(
    ctx: Arc<Ctx>,
    b: Arc<Bridge>,
    task: Task,
    stop: CancellationToken,
    make: F,
) where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    const FIRST_PAUSE: Duration = Duration::from_secs(1);
    const LONGEST_PAUSE: Duration = Duration::from_secs(300);
    let mut pause = FIRST_PAUSE;
    let mut restarted = false;
    loop {
        let started = std::time::Instant::now();
        let ended = tokio::spawn(make(restarted)).await;
        if stop.is_cancelled() && ended.is_ok() {
            return;
        }
        let why = why_ended(ended, task, &b);
        if stop.is_cancelled() {
            error!("bridge {}: {why}", b.name);
            return;
        }
        if started.elapsed() > LONGEST_PAUSE {
            pause = FIRST_PAUSE;
        }
        let now = chrono::Utc::now();
        let restart_at = match task {
            Task::Poll => b.schedule.next_after(&b.name, now),
            Task::Delivery => {
                let at = now + pause;
                pause = (pause * 2).min(LONGEST_PAUSE);
                Some(at)
            }
        };
        let Some(restart_at) = restart_at else {
            error!(
                "bridge {}: {why}; its schedule has no future run, so it is not started again",
                b.name
            );
            ctx.task_ended(&b.name, task.word(), why);
            return;
        };
        let when = restart_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        error!(
            restart_at = %when,
            "bridge {}: {why}; it is started again at {when}",
            b.name
        );
        crate::metrics::task_restart(&b.name, task.word());
        ctx.task_ended(
            &b.name,
            task.word(),
            format!("{why} (it is started again at {when})"),
        );
        ctx.update_status(&b.name, |s| {
            s.restarts += 1;
            s.last_crash = Some(why.clone());
            if task == Task::Poll {
                s.next_poll = Some(restart_at);
            }
        });
        let wait = (restart_at - now).to_std().unwrap_or(Duration::ZERO);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        ctx.task_restarted(&b.name, task.word());
        restarted = true;
    }
}

/// How a bridge's task ended, for the log and the status: returned, panicked (the message
/// without the bridge's secrets) or cancelled.
fn why_ended(ended: Result<(), tokio::task::JoinError>, task: Task, b: &Bridge) -> String {
    match ended {
        Ok(()) => format!("its {} task ended", task.word()),
        Err(e) => match e.try_into_panic() {
            Ok(panic) => {
                let msg = crate::redact::panic_message(&*panic);
                let msg = crate::redact::Redactor::new(&b.secrets).clean(&msg);
                format!("its {} task panicked: {msg}", task.word())
            }
            Err(_) => format!("its {} task was cancelled", task.word()),
        },
    }
}

/// Watches the store: a probe now and then while it is healthy, and while it is not, tries
/// to open it again (with a growing pause between tries) until it takes writes.
pub(super) async fn supervise_store(ctx: Arc<Ctx>, dir: PathBuf, stop: CancellationToken) {
    const PROBE_EVERY: Duration = Duration::from_secs(30);
    const FIRST_RETRY: Duration = Duration::from_millis(500);
    const LONGEST_RETRY: Duration = Duration::from_secs(30);
    let mut retry = FIRST_RETRY;
    loop {
        if ctx.store_failure().is_none() {
            retry = FIRST_RETRY;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = ctx.store_failing() => {}
                _ = tokio::time::sleep(PROBE_EVERY) => {
                    let c = ctx.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let probed = c.store().and_then(|s| s.probe(chrono::Utc::now()));
                        c.check(probed)
                    })
                    .await;
                }
            }
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        crate::metrics::store_reopen();
        let (c, d) = (ctx.clone(), dir.clone());
        let reopened =
            tokio::task::spawn_blocking(move || c.reopen_store(&d, Duration::from_secs(30))).await;
        match reopened {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ctx.store_still_failing(&e);
                info!(
                    retry_in_ms = retry.as_millis() as u64,
                    "state database still does not take writes: {e}"
                );
                retry = (retry * 2).min(LONGEST_RETRY);
            }
            Err(e) => error!("re-opening the state database: {e}"),
        }
    }
}
