//! The daemon: load bridges, open the store, run the fleet of bridges (one timer for every
//! bridge's polls, deliverers while their queues have work), serve the admin API, reload on
//! SIGHUP, and shut down cleanly.

mod deliverers;
mod fleet;
mod handoff;
mod supervise;
mod turns;

use crate::access::{Access, AdminSocket};
use crate::admin;
use crate::clock::Clock;
use crate::config::{self, Bridge, Env};
use crate::runtime::{Beats, Ctx, StoreHandle};
use crate::store::Store;
use crate::systemd;
use anyhow::{Context, Result};
use fleet::Fleet;
pub(crate) use fleet::run_one;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use supervise::supervise_store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub bridges: PathBuf,
    pub data: PathBuf,
    pub admin: Option<SocketAddr>,
    /// The admin unix socket, through which one may act without a token; served even with
    /// `--admin off` (docs/operations.md#who-may-act).
    pub admin_socket: PathBuf,
    /// The token that lets a request over TCP act; without it TCP is for reading only.
    pub admin_token: Option<crate::access::AdminToken>,
    /// Only the bridges this shard owns (docs/scaling.md#shards); None: every bridge.
    pub shard: Option<crate::shard::Shard>,
    /// How long the store may fail to take writes before the watchdog stops pinging (and
    /// systemd restarts the daemon); pollhook keeps trying to recover by itself meanwhile.
    pub store_failure_limit: Duration,
    /// Polls in flight at once, in all and per host.
    pub poll_limits: crate::runtime::PollLimits,
    /// The memory all polls in flight may hold together (docs/scaling.md#the-memory-budget-of-polls).
    pub max_poll_memory: u64,
    /// How long an admin client has to send a request head (see [`admin::serve`]).
    pub admin_timeout: Duration,
    /// The other shards, for handoffs (docs/scaling.md#handoff); None: no handoff.
    pub peers: Option<crate::handoff::peers::Peers>,
    /// The first wait before a shard that did not give a bridge's state is asked again.
    pub handoff_retry: Duration,
}

/// How long in-flight polls and deliveries get to finish on shutdown (and on a reload that
/// restarts a bridge).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn load(opts: &RunOptions, env: &Env) -> Result<Vec<Arc<Bridge>>, config::Problems> {
    load_all(opts, env).map(|(_, set)| set)
}

/// The names of every bridge in the directory (the same on every shard), and those of them
/// this shard runs.
fn load_all(
    opts: &RunOptions,
    env: &Env,
) -> Result<(Vec<String>, Vec<Arc<Bridge>>), config::Problems> {
    let all = config::load_dir(&opts.bridges, env)?;
    let names = all.iter().map(|b| b.name.clone()).collect();
    let set: Vec<Arc<Bridge>> = all
        .into_iter()
        .filter(|b| in_shard(&b.name, opts.shard))
        .map(Arc::new)
        .collect();
    crate::redact::set_process_secrets(set.iter().flat_map(|b| b.secrets.clone()).collect());
    Ok((names, set))
}

/// Records the layout this start runs under and finds the bridges it moves
/// (docs/scaling.md#layout-in-the-store). Outgoing bridges are not in the running set (this
/// shard does not own them): each is logged, once a start. Incoming ones are recorded, since
/// the time of `clock`, for the handoff to fetch ([`handoff::begin`]).
async fn settle_layout(
    store: &Store,
    shard: Option<crate::shard::Shard>,
    configured: Vec<String>,
    clock: &Clock,
) -> Result<crate::shard::layout::Plan> {
    use crate::shard::layout::{Record, plan};
    let shard = shard.unwrap_or(crate::shard::Shard {
        index: 0,
        shards: 1,
    });
    let (store, now_ms) = (store.clone(), crate::clock::to_ms(clock.now()));
    let planned = tokio::task::spawn_blocking(move || -> Result<_> {
        let stored = match store.layout_record()? {
            Some(bytes) => Some(Record::decode(&bytes)?),
            None => None,
        };
        let held = store.bridges_held()?;
        let p = plan(stored.clone(), shard, &held, &configured, now_ms);
        if stored.as_ref() != Some(&p.record) {
            store.put_layout_record(&p.record.encode())?;
        }
        Ok(p)
    })
    .await??;
    let r = &planned.record;
    if planned.changed {
        let was = match r.previous {
            Some(p) => format!("{}/{} ({:?})", p.index, p.shards, p.scheme).to_lowercase(),
            None => "none (a fresh shard)".to_string(),
        };
        info!(index = r.now.index, shards = r.now.shards, epoch = r.epoch, previous = %was,
            "layout changed: shard {shard}, epoch {}, previous layout {was}", r.epoch);
    }
    for o in &planned.outgoing {
        warn!(bridge = %o.bridge, to = o.to,
            "bridge {} belongs to shard {} now: not polled here; its state stays here until it is handed off",
            o.bridge, o.to);
    }
    if !r.incoming.is_empty() {
        info!(
            incoming = r.incoming.len(),
            "{} owned here without state here (GET /v1/layout lists them)",
            crate::logging::count(r.incoming.len(), "bridge is", "bridges are")
        );
    }
    Ok(planned)
}

/// Serves the admin API on its unix socket and, unless it is off, on its TCP address, until
/// `stop`, each within `limits`. The socket file is removed when the returned guard is dropped.
async fn serve_admin(
    opts: &RunOptions,
    state: admin::AdminState,
    limits: admin::serve::Limits,
    stop: &CancellationToken,
) -> Result<(TaskTracker, AdminSocket)> {
    let admin_done = TaskTracker::new();
    let clock = state.ctx.clock.clone();
    let (socket, local) = AdminSocket::bind(&opts.admin_socket)?;
    let app = admin::router(state.clone(), Access::Socket);
    let path = opts.admin_socket.display();
    info!(path = %path, connections = limits.connections, "admin socket listening on {path}");
    admin_done.spawn(admin::serve::serve(
        local,
        app,
        limits,
        clock.clone(),
        stop.clone(),
    ));
    if let Some(addr) = opts.admin {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} for the admin API (use --admin off to disable)")
        })?;
        let token = opts.admin_token.is_some();
        let app = admin::router(
            state,
            Access::Tcp {
                token: opts.admin_token.clone(),
                socket: opts.admin_socket.clone(),
            },
        );
        let connections = limits.connections;
        if addr.ip().to_canonical().is_loopback() {
            let acting = if token {
                "acting with the token too"
            } else {
                "reading only; acting through the admin socket"
            };
            info!(%addr, acting_with_token = token, connections, "admin API listening on {addr}, {acting}");
        } else {
            warn!(%addr, acting_with_token = token, connections, "admin API listening on {addr}, beyond loopback: reads are open to the network, and the bearer token travels unencrypted");
        }
        admin_done.spawn(admin::serve::serve(
            listener,
            app,
            limits,
            clock,
            stop.clone(),
        ));
    }
    admin_done.close();
    Ok((admin_done, socket))
}

/// Takes all the file descriptors allowed: each bridge and sink may hold a connection
/// (systemd's default soft limit is 1024, the hard one far higher). Returns the limit, which
/// the admin API's connection cap is a part of.
fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft);
            warn!("cannot raise the open-files limit above {soft}: {e}");
            soft
        }
    }
}

/// SIGHUP: the bridges directory read again and applied, or refused whole (the running set
/// stays) with every problem logged.
async fn reload(opts: &RunOptions, env: &Env, fleet: &mut Fleet) {
    systemd::reloading();
    let dir = opts.bridges.display();
    info!(dir = %dir, "SIGHUP: reloading the bridges in {dir}");
    match load(opts, env) {
        Ok(set) => fleet.apply(set).await,
        Err(problems) => {
            for p in &problems.0 {
                error!("{p}");
            }
            error!(
                problems = problems.len(),
                "reload refused ({}): the running bridges stay as they were",
                crate::logging::count(problems.len(), "problem", "problems")
            );
        }
    }
    systemd::ready();
}

/// The flush at exit, within the grace period.
async fn final_flush(store: &StoreHandle) -> Result<Result<(), crate::store::StoreError>> {
    // Everything, acknowledgements and retry times included, not only the commits. A store
    // that does not take writes is not flushed (sled could wait for it for ever), and nothing
    // is lost by stopping: what is not on disk is detected again (same ids) or sent again after
    // the next start.
    let flushed = match (store.get(), store.failure()) {
        (Ok(store), None) => {
            let flush = tokio::task::spawn_blocking(move || store.flush_blocking());
            match tokio::time::timeout(SHUTDOWN_GRACE, flush).await {
                Ok(joined) => joined?,
                Err(_) => Err(crate::store::StoreError::Unavailable(format!(
                    "the flush did not end within {}s",
                    SHUTDOWN_GRACE.as_secs()
                ))),
            }
        }
        (Err(e), _) => Err(e),
        (Ok(_), Some(f)) => Err(crate::store::StoreError::Unavailable(f.reason)),
    };
    Ok(flushed)
}

/// The state directory, created if need be, and the store in it (off the async workers: it
/// reads the whole log).
async fn open_store(data: &std::path::Path) -> Result<Store> {
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create data directory {}", data.display()))?;
    let dir = data.to_path_buf();
    tokio::task::spawn_blocking(move || Store::open(&dir))
        .await?
        .with_context(|| format!("cannot open state in {}", data.display()))
}

/// Runs until `shutdown` is cancelled. SIGHUP re-reads the bridges directory.
pub async fn run(opts: RunOptions, env: Env, shutdown: CancellationToken) -> Result<()> {
    let open_files = raise_open_files_limit();
    let admin_limits = admin::serve::Limits::for_open_files(open_files, opts.admin_timeout);
    if let Some(addr) = opts.admin {
        crate::access::check_exposure(addr, opts.admin_token.is_some())
            .map_err(anyhow::Error::msg)?;
    }
    // First of all, so that an early SIGHUP does not kill the process.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot listen for SIGHUP")?;
    let (configured, bridges) = load_all(&opts, &env).map_err(|p| {
        anyhow::anyhow!(
            "{p}\nrefusing to start: {} problem(s) in {}",
            p.len(),
            opts.bridges.display()
        )
    })?;

    // The daemon's one clock, handed down from here (docs/design.md#the-clock).
    let clock = Clock::system();
    let store = open_store(&opts.data).await?;
    let layout = settle_layout(&store, opts.shard, configured, &clock)
        .await
        .with_context(|| format!("cannot record the layout in {}", opts.data.display()))?;
    let ctx = Ctx::with_clock(store, clock)
        .with_poll_limits(opts.poll_limits)
        .with_memory_budget(opts.max_poll_memory);
    let ctx = Arc::new(ctx);
    let store_dir = opts.data.clone();
    crate::metrics::handle();
    let root = shutdown.child_token();
    let (shared, mut ready) = crate::handoff::shared::Shared::new(layout.record, &layout.outgoing);
    let mut fleet = Fleet::new(ctx.clone(), root.clone(), bridges.clone(), shared.clone());
    let state = admin::AdminState {
        ctx: ctx.clone(),
        bridges: fleet.shown.clone(),
        handoff: shared.clone(),
    };
    // The socket after the store is open: its lock has already turned away a second daemon
    // on this state directory, which must not replace the running one's socket.
    let (admin_done, _socket) = serve_admin(&opts, state, admin_limits, &root).await?;
    // Only once the admin listeners are bound: a daemon that cannot serve them exits before
    // any bridge polls or commits. A bridge waiting for its handoff starts when it ends.
    let (held, receive) = handoff::begin(
        opts.peers.as_ref(),
        opts.handoff_retry,
        &shared,
        &ctx,
        &root,
    );
    fleet.receive = receive;
    for b in bridges.into_iter().filter(|b| !held.contains(&b.name)) {
        fleet.start(b);
    }
    tokio::spawn(supervise_store(ctx.store.clone(), store_dir, root.clone()));
    let (watched, limit) = (ctx.clone(), opts.store_failure_limit);
    tokio::spawn(systemd::watchdog(root.clone(), move || {
        let (beats, store, clock) = (&watched.beats, &watched.store, &watched.clock);
        wedged((beats, store, clock), limit)
    }));
    tokio::spawn(crate::metrics::upkeep(root.clone()));
    tokio::spawn(crate::poll::summary::every(
        ctx.clone(),
        crate::poll::summary::EVERY,
        root.clone(),
    ));

    log_started(&opts, fleet.running.len(), open_files);
    systemd::ready();

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = hup.recv() => reload(&opts, &env, &mut fleet).await,
            Some(name) = ready.recv() => fleet.start_named(&name),
        }
    }

    shut_down(fleet, admin_done).await
}

/// The line that says the daemon runs: its bridges, where its state is, the CA roots https
/// is verified against.
fn log_started(opts: &RunOptions, bridges: usize, open_files: u64) {
    let roots = crate::http::roots::roots();
    let tls_roots = match roots.origin {
        crate::http::roots::Origin::System => "system",
        crate::http::roots::Origin::Bundled => "bundled",
    };
    info!(
        bridges,
        dir = %opts.bridges.display(),
        data = %opts.data.display(),
        open_files,
        tls_roots = %tls_roots,
        "pollhook started: {} from {}, state in {}; https verified against {roots}",
        crate::logging::count(bridges, "bridge", "bridges"),
        opts.bridges.display(),
        opts.data.display(),
    );
}

/// Stops the bridges, then the admin API, then flushes the store (within the grace period).
async fn shut_down(mut fleet: Fleet, admin_done: TaskTracker) -> Result<()> {
    systemd::stopping();
    info!("shutting down");
    let names: Vec<String> = fleet.running.keys().cloned().collect();
    fleet.ctx.stopping.cancel();
    fleet.root.cancel();
    fleet.stop(&names).await;
    admin_done.wait().await;
    let flushed = final_flush(&fleet.ctx.store).await?;
    fleet.ctx.store.abandon_if_failed();
    match flushed {
        Ok(()) => info!("stopped"),
        Err(e) => error!(
            "stopped without flushing the state database ({e}); what is not on disk is found or sent again after the next start"
        ),
    }
    Ok(())
}

/// Why the watchdog should stop pinging, if it should: a step stuck well past its time-outs,
/// or a store that has not taken writes for longer than `store_limit`.
fn wedged(
    (beats, store, clock): (&Beats, &StoreHandle, &Clock),
    store_limit: Duration,
) -> Option<String> {
    if let Some(stuck) = beats.stuck() {
        return Some(stuck);
    }
    let now = clock.instant();
    store
        .failure()
        .filter(|f| now.saturating_duration_since(f.since) > store_limit)
        .map(|f| f.describe(now))
}

/// Whether this process runs the bridge `name`: with `--shard`, when its shard owns it under
/// the jump consistent hash (docs/scaling.md#shards).
pub fn in_shard(name: &str, shard: Option<crate::shard::Shard>) -> bool {
    shard.is_none_or(|s| s.owns(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_gives_up_on_a_failed_store_once_its_limit_has_passed_on_the_clock() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = chrono::DateTime::parse_from_rfc3339("2031-05-04T10:00:00Z").unwrap();
        let clock = Clock::fixed(t0.to_utc());
        let ctx = Ctx::with_clock(Store::open(dir.path()).unwrap(), clock.clone());
        let handles = (&ctx.beats, &ctx.store, &ctx.clock);
        let limit = Duration::from_secs(600);
        assert_eq!(wedged(handles, limit), None);
        let full = std::io::Error::other("No space left on device");
        ctx.store
            .failed(&crate::store::StoreError::Sled(sled::Error::Io(full)));
        // Failing, but not yet for longer than the limit: the watchdog keeps pinging.
        clock.advance(limit);
        assert_eq!(wedged(handles, limit), None);
        clock.advance(Duration::from_secs(1));
        let why = wedged(handles, limit).unwrap();
        assert!(
            why.starts_with("state database does not take writes (for 601s): "),
            "{why}"
        );
        // A step stuck past its time-outs is named first.
        let _step = ctx.beats.step("a poll", Duration::from_secs(5));
        clock.advance(Duration::from_secs(65));
        let why = wedged(handles, limit).unwrap();
        assert_eq!(why, "a poll has been running 60s past its time-outs");
    }
}
