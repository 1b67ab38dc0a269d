//! `pollhook run`: the daemon's options checked (a usage error exits 2 before anything
//! starts, docs/operations.md#the-command-line), then `app::run` until SIGTERM or SIGINT.

use super::args::{default_bridges, default_data, runtime};
use anyhow::{Context, Result};
use pollhook::access;
use pollhook::app::{self, RunOptions};
use pollhook::config::Env;
use pollhook::logging::{self, LogFormat};
use pollhook::shard::Shard;
use pollhook::shard::spec::SpecError;
use pollhook::trace;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

#[derive(clap::Args)]
pub(super) struct RunArgs {
    /// Directory of bridge files (*.yaml, *.yml) [default: $CONFIGURATION_DIRECTORY/bridges under systemd, else ./bridges]
    #[arg(long)]
    bridges: Option<PathBuf>,
    /// State directory [default: $STATE_DIRECTORY under systemd, else ./data]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Admin API address, or `off`. Reading is open there; acting needs the token
    /// (--admin-token-file) or the admin socket. An address other than loopback needs a token.
    #[arg(long, default_value = "127.0.0.1:9187")]
    admin: String,
    /// The admin unix socket (mode 0600), the way to act without a token; kept with
    /// `--admin off` [default: $RUNTIME_DIRECTORY/admin.sock under systemd, else DATA/admin.sock]
    #[arg(long, value_name = "PATH")]
    admin_socket: Option<PathBuf>,
    /// A file holding the token that lets requests over TCP act
    /// (`Authorization: Bearer <token>`); white space around it is ignored
    #[arg(long, value_name = "PATH")]
    admin_token_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "auto")]
    log_format: LogFormat,
    /// Run only the bridges shard I of N owns; `auto/N` takes I from POLLHOOK_SHARD_INDEX or
    /// the host name's trailing -<n>, `auto` N from POLLHOOK_SHARDS too
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// The other shards' admin API, `{i}` standing for a shard's index
    /// (http://pollhook-{i}.pollhook:9187): the state of a bridge that moves between shards
    /// is handed over through it, with the admin token (--admin-token-file)
    #[arg(
        long,
        env = "POLLHOOK_PEERS",
        value_name = "TEMPLATE",
        requires = "shard"
    )]
    peers: Option<String>,
    /// The first wait before a shard that did not hand a bridge over is asked again (it
    /// doubles, up to 30 times this). Hidden: for the tests.
    #[arg(long, env = "POLLHOOK_HANDOFF_RETRY", value_name = "DURATION", default_value = "1s",
        value_parser = parse_admin_timeout, hide = true)]
    handoff_retry: std::time::Duration,
    /// The largest state document read from another shard in a handoff (1GiB, 256MiB…): a
    /// larger one is refused and its bridge keeps waiting (docs/scaling.md#handoff)
    #[arg(long, env = "POLLHOOK_HANDOFF_MAX_DOCUMENT", value_name = "SIZE", default_value = "1GiB",
        value_parser = pollhook::config::bridge::parse_size)]
    handoff_max_document: u64,
    /// How long the state database may refuse writes (a full disk) before the systemd
    /// watchdog stops being pinged, so that systemd restarts pollhook. pollhook keeps
    /// trying to recover by itself before that.
    #[arg(long, env = "POLLHOOK_STORE_FAILURE_LIMIT", value_name = "DURATION", default_value = "15m", value_parser = humantime::parse_duration)]
    store_failure_limit: std::time::Duration,
    /// Polls in flight at once, in all
    #[arg(
        long,
        env = "POLLHOOK_MAX_POLLS",
        value_name = "N",
        default_value_t = 256
    )]
    max_polls: usize,
    /// Polls in flight at once against one host (and port): a hung host delays only its
    /// own bridges
    #[arg(
        long,
        env = "POLLHOOK_MAX_POLLS_PER_HOST",
        value_name = "N",
        default_value_t = 16
    )]
    max_polls_per_host: usize,
    /// Memory the bodies and parsed documents of all polls in flight may hold together
    /// (16MiB, 512MiB, 2GiB): a poll waits for its share, and one that needs more than all of
    /// it fails
    #[arg(
        long,
        env = "POLLHOOK_MAX_POLL_MEMORY",
        value_name = "SIZE",
        default_value = "512MiB",
        value_parser = pollhook::config::bridge::parse_size
    )]
    max_poll_memory: u64,
    /// How long an admin client has to send a request head, of its connection's opening or of
    /// the previous answer (and how long a connection may stay quiet). Hidden: for the tests.
    #[arg(
        long,
        env = "POLLHOOK_ADMIN_HEADER_TIMEOUT",
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_admin_timeout,
        hide = true
    )]
    admin_header_timeout: std::time::Duration,
    /// Export a span for each poll and each delivery attempt over OTLP/HTTP (JSON) to this
    /// collector, like http://127.0.0.1:4318 (`/v1/traces` is added to a URL without a path)
    #[arg(long, env = "POLLHOOK_OTLP", value_name = "ENDPOINT")]
    otlp: Option<String>,
}

fn parse_admin_timeout(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("it must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

/// `pollhook run`: the options checked (a usage error exits 2 before anything starts), then
/// the daemon until SIGTERM.
pub(super) fn run(args: RunArgs) -> Result<ExitCode> {
    logging::init(args.log_format);
    let admin: Option<SocketAddr> = match args.admin.as_str() {
        "off" => None,
        a => Some(a.parse().with_context(|| {
            format!("--admin `{a}` is not an address like 127.0.0.1:9187 or `off`")
        })?),
    };
    // A usage error, found before anything starts (exit 2, docs/operations.md#the-command-line).
    if let Some(addr) = admin {
        if let Err(e) = access::check_exposure(addr, args.admin_token_file.is_some()) {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    // A usage error too (exit 2, docs/scaling.md#shards). An index not below N is a shard
    // being removed (docs/scaling.md#shrinking): it owns nothing and serves handoffs until
    // drained, which only a shard with state can do.
    let data = args.data.clone().unwrap_or_else(default_data);
    let shard = match args.shard.as_deref().map(Shard::from_arg).transpose() {
        Ok(shard) => shard,
        Err(SpecError::TooHigh { index, shards, .. }) if data.join("pollhook.sled").exists() => {
            Some(Shard { index, shards })
        }
        Err(e @ SpecError::TooHigh { .. }) => {
            eprintln!(
                "error: {e}; only a shard with state to hand over runs with such an index (it owns nothing), and {} holds none",
                data.display()
            );
            return Ok(ExitCode::from(2));
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Some(template) = &args.peers {
        let problem = match pollhook::handoff::peers::check_template(template) {
            Err(e) => Some(e),
            Ok(()) if args.admin_token_file.is_none() => Some(
                "--peers needs --admin-token-file: the shards act on each other's admin API with the admin token".to_string(),
            ),
            Ok(()) => None,
        };
        if let Some(e) = problem {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    // A usage error too: an endpoint that is no http(s) URL.
    let otlp = match args
        .otlp
        .as_deref()
        .map(trace::otlp::traces_url)
        .transpose()
    {
        Ok(url) => url,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = options(args, admin, shard)?;
    let rt = runtime()?;
    let ran = rt.block_on(daemon(opts, otlp));
    // A blocking call stuck in a failed store must not keep the process from exiting.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    ran?;
    Ok(ExitCode::SUCCESS)
}

/// The daemon's options from the command line's (the shard parsed already): the token read, the
/// directories defaulted.
/// The daemon until SIGTERM or SIGINT, its spans exported to `otlp` when given.
async fn daemon(opts: RunOptions, otlp: Option<url::Url>) -> Result<()> {
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));
    let exporter = otlp.and_then(|url| {
        let queue = trace::install()?;
        let client = pollhook::http::sender();
        let export = trace::otlp::export(queue, url, client, shutdown.clone());
        Some(tokio::spawn(export))
    });
    let ran = app::run(opts, Env::process(), shutdown.clone()).await;
    if let Some(exporter) = exporter {
        // The last spans (the deliveries of the shutdown) go out, briefly.
        shutdown.cancel();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), exporter).await;
    }
    ran
}

fn options(args: RunArgs, admin: Option<SocketAddr>, shard: Option<Shard>) -> Result<RunOptions> {
    let RunArgs {
        bridges,
        data,
        admin: _,
        admin_socket,
        admin_token_file,
        log_format: _,
        shard: _,
        peers,
        handoff_retry,
        handoff_max_document,
        store_failure_limit,
        max_polls,
        max_polls_per_host,
        max_poll_memory,
        admin_header_timeout,
        otlp: _,
    } = args;
    let admin_token = admin_token_file
        .as_deref()
        .map(access::AdminToken::read)
        .transpose()?;
    let peers = match (peers, admin_token_file.as_deref()) {
        (Some(template), Some(file)) => Some(
            pollhook::handoff::peers::Peers::new(
                &template,
                &access::read_token(file)?,
                handoff_max_document,
            )
            .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    let data = data.unwrap_or_else(default_data);
    Ok(RunOptions {
        bridges: bridges.unwrap_or_else(default_bridges),
        // Absolute, as it is named in messages to clients, who may be elsewhere.
        admin_socket: {
            let p = admin_socket.unwrap_or_else(|| access::default_socket(&data));
            std::path::absolute(&p).unwrap_or(p)
        },
        admin_token,
        data,
        admin,
        shard,
        store_failure_limit,
        poll_limits: pollhook::runtime::PollLimits {
            total: max_polls,
            per_host: max_polls_per_host,
        },
        max_poll_memory,
        admin_timeout: admin_header_timeout,
        peers,
        handoff_retry,
    })
}

/// SIGTERM and SIGINT stop the daemon.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    shutdown.cancel();
}
