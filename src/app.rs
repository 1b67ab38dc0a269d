//! The daemon: load bridges, open the store, spawn one scheduler per bridge and one deliverer
//! per bridge and sink, serve the admin API, and shut down cleanly.

use crate::admin;
use crate::config::{self, Bridge, Env};
use crate::deliver;
use crate::poll::scheduler;
use crate::runtime::Ctx;
use crate::store::Store;
use crate::systemd;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub bridges: PathBuf,
    pub data: PathBuf,
    pub admin: Option<SocketAddr>,
    /// `(i, n)`: only bridges whose name hashes to `i` mod `n`.
    pub shard: Option<(u64, u64)>,
}

/// How long in-flight polls and deliveries get to finish on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs until `shutdown` is cancelled.
pub async fn run(opts: RunOptions, env: Env, shutdown: CancellationToken) -> Result<()> {
    let bridges = config::load_dir(&opts.bridges, &env).map_err(|p| {
        anyhow::anyhow!(
            "{p}\nrefusing to start: {} problem(s) in {}",
            p.len(),
            opts.bridges.display()
        )
    })?;
    let bridges: Vec<Arc<Bridge>> = bridges
        .into_iter()
        .filter(|b| in_shard(&b.name, opts.shard))
        .map(Arc::new)
        .collect();

    std::fs::create_dir_all(&opts.data)
        .with_context(|| format!("cannot create data directory {}", opts.data.display()))?;
    let data = opts.data.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data))
        .await?
        .with_context(|| format!("cannot open state in {}", opts.data.display()))?;
    let ctx = Arc::new(Ctx::new(store));

    let tasks = TaskTracker::new();
    let stop = shutdown.child_token();
    for b in &bridges {
        tasks.spawn(scheduler::run_bridge(ctx.clone(), b.clone(), stop.clone()));
        for i in 0..b.sinks.len() {
            tasks.spawn(deliver::run_sink(ctx.clone(), b.clone(), i, stop.clone()));
        }
    }

    if let Some(addr) = opts.admin {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for the admin API (use --admin off to disable)")
        })?;
        let app = admin::router(admin::AdminState {
            ctx: ctx.clone(),
            bridges: Arc::new(bridges.clone()),
        });
        let stop_admin = stop.clone();
        info!(%addr, "admin API listening");
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop_admin.cancelled_owned())
                .await;
            if let Err(e) = served {
                error!("admin API: {e}");
            }
        });
    }
    tokio::spawn(systemd::watchdog(stop.clone()));

    info!(
        bridges = bridges.len(),
        dir = %opts.bridges.display(),
        data = %opts.data.display(),
        "pollhook started"
    );
    systemd::ready();

    shutdown.cancelled().await;
    systemd::stopping();
    info!("shutting down");
    stop.cancel();
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            "in-flight work did not finish within {}s; stopping anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    ctx.store
        .flush()
        .await
        .context("cannot flush state to disk")?;
    info!("stopped");
    Ok(())
}

pub fn in_shard(name: &str, shard: Option<(u64, u64)>) -> bool {
    match shard {
        Some((i, n)) => crate::schedule::stable_hash(name) % n == i,
        None => true,
    }
}
