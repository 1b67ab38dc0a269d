//! The `pollhook` command: parses the command line and runs `run` (the daemon, `app`),
//! `check`, `poll`, `status` and the other admin commands (through `admin::client`), and
//! `sign`. Errors reach the operator here, as one line each.

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use pollhook::access;
use pollhook::admin::client::{Client, Place};
use pollhook::app::{self, RunOptions};
use pollhook::config::{self, Env};
use pollhook::logging::{self, LogFormat};
use pollhook::store::{Accepted, StoreError};
use std::io::Read;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

/// Turns pull into push: polls HTTP/JSON APIs and POSTs a signed webhook for every item
/// created, updated or deleted.
#[derive(Parser)]
#[command(name = "pollhook", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct RunArgs {
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
}

fn parse_admin_timeout(s: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => Err("it must be longer than 0s".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll every bridge on its schedule and deliver the events.
    Run(RunArgs),
    /// Validate bridge files: "ok: N bridges", or every problem as FILE:LINE:COLUMN: message.
    Check {
        /// Files or directories [default: the bridges directory]
        paths: Vec<PathBuf>,
    },
    /// Poll one bridge now and print its events as JSON lines. Without --commit nothing is
    /// stored or sent (a dry run). Goes through the running daemon when one answers (on its
    /// admin socket, or at --admin); otherwise works on the state directory (--data) itself.
    Poll {
        name: String,
        /// Store the new state and queue the events for delivery
        #[arg(long)]
        commit: bool,
        /// Print, for each sink, the requests the events would make (headers and body);
        /// a dry run
        #[arg(long, conflicts_with = "commit")]
        render: bool,
        /// Bridges directory, when no daemon runs
        #[arg(long)]
        bridges: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminAddr,
    },
    /// Send one `bridge.test` event (seq 0, not stored) to each sink of a bridge now and print
    /// each answer; exit 1 if any sink did not answer 2xx.
    SendTest {
        name: String,
        /// Only the sink with this URL (as in the bridge file)
        #[arg(long)]
        sink: Option<String>,
        /// Bridges directory, when no daemon runs
        #[arg(long)]
        bridges: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminAddr,
    },
    /// Show every bridge: last poll, result, next poll, items, outbox, dead letters.
    Status {
        /// The admin API's JSON instead of a table
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        admin: AdminAddr,
    },
    /// Forget a bridge's state (its seq goes on); the next poll re-baselines.
    Reset {
        name: String,
        #[command(flatten)]
        admin: AdminAddr,
    },
    /// Queue every item the bridge holds now as `item.snapshot` (to bring a new receiver up to date).
    Resync {
        name: String,
        #[command(flatten)]
        admin: AdminAddr,
    },
    /// List, replay (to the back of the queue) or drop dead letters, through the running daemon.
    DeadLetters {
        #[command(subcommand)]
        action: DeadLetterAction,
        #[command(flatten)]
        admin: AdminAddr,
    },
    /// Check the state directory for a rollback, or accept one. Works on the directory
    /// itself, so the daemon must be stopped.
    Store {
        #[command(subcommand)]
        action: StoreAction,
    },
    /// Print the signature headers for a body read from stdin.
    Sign {
        /// `whsec_<base64>` or any string; repeat for several
        #[arg(long, required = true)]
        secret: Vec<String>,
        #[arg(long, default_value = "msg_manual")]
        id: String,
        /// Unix seconds [default: now]
        #[arg(long)]
        timestamp: Option<i64>,
    },
    /// Move bridges' state between stores by hand, the daemon stopped: export to a file, import
    /// from it (docs/operations.md#moving-a-bridges-state)
    State {
        #[command(subcommand)]
        action: pollhook::handoff::cli::StateAction,
    },
}

#[derive(Subcommand)]
enum DeadLetterAction {
    /// Show the dead letters: id, bridge, type, seq, attempts, last error.
    List {
        #[arg(long)]
        bridge: Option<String>,
        /// The admin API's JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Queue dead letters again, behind what is already waiting.
    Replay(Selection),
    /// Forget dead letters.
    Drop(Selection),
}

#[derive(Subcommand)]
enum StoreAction {
    /// Compare every bridge's seq with the highest ever handed out: "ok: ...", or each bridge
    /// that went back (exit 1), or every bridge's seq when the mark is lost (exit 1).
    Check {
        /// State directory [default: $STATE_DIRECTORY under systemd, else ./data]
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Move every bridge's seq past the highest ever handed out, so that no seq or event id is
    /// reused for a different event (or, the mark lost, start it again from the seqs
    /// stored); `pollhook run` then starts.
    AcceptRollback {
        /// State directory [default: $STATE_DIRECTORY under systemd, else ./data]
        #[arg(long)]
        data: Option<PathBuf>,
    },
    /// Move every shard's state from where earlier versions of pollhook@.service kept it
    /// (ROOT/private/pollhook/shard-I) to its own directory (ROOT/private/pollhook-shard-I),
    /// and remove what that layout left in pollhook.service's way. pollhook-move-state.service
    /// runs it, as root, before each start of either unit; it does nothing when there is
    /// nothing to move.
    MoveShards {
        /// Where systemd keeps state directories
        #[arg(long, default_value = "/var/lib")]
        root: PathBuf,
    },
}

/// Where the running daemon's admin API is, and what lets the CLI act there: its admin
/// socket when that answers, else TCP with the token.
#[derive(clap::Args)]
struct AdminAddr {
    /// Admin API of the running daemon [default: 127.0.0.1:9187]. Given, it names the daemon:
    /// the default admin socket is then not tried (only one given with --admin-socket)
    #[arg(long = "admin", env = "POLLHOOK_ADMIN", global = true)]
    addr: Option<String>,
    /// The daemon's admin socket, used when it answers [default: $RUNTIME_DIRECTORY/admin.sock
    /// under systemd, else DATA/admin.sock]
    #[arg(
        long = "admin-socket",
        env = "POLLHOOK_ADMIN_SOCKET",
        value_name = "PATH",
        global = true
    )]
    socket: Option<PathBuf>,
    /// A file holding the daemon's admin token, to act over TCP when the socket cannot be
    /// used [default: the token itself from $POLLHOOK_ADMIN_TOKEN]
    #[arg(long = "admin-token-file", value_name = "PATH", global = true)]
    token_file: Option<PathBuf>,
    /// State directory: where the admin socket is by default, and for `poll` the state itself
    /// when no daemon answers [default: $STATE_DIRECTORY under systemd, else ./data]
    #[arg(long, global = true)]
    data: Option<PathBuf>,
}

impl AdminAddr {
    /// Where the daemon may be, for the admin client.
    fn place(&self) -> Place {
        Place {
            addr: self.addr.clone(),
            socket: self.socket.clone(),
            default_socket: access::default_socket(&self.data.clone().unwrap_or_else(default_data)),
            token_file: self.token_file.clone(),
        }
    }
}

/// Which dead letters a replay or drop acts on (clap requires an ID or --all).
#[derive(clap::Args)]
struct Selection {
    /// A dead letter id (`<event id>.<sink>`) or an event id
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    id: Option<String>,
    /// Every dead letter (of --bridge, if given)
    #[arg(long)]
    all: bool,
    #[arg(long)]
    bridge: Option<String>,
}

fn default_bridges() -> PathBuf {
    match std::env::var_os("CONFIGURATION_DIRECTORY") {
        // systemd may pass several, colon-separated: the first is ours.
        Some(d) => {
            PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default()).join("bridges")
        }
        None => PathBuf::from("bridges"),
    }
}

fn default_data() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        Some(d) => PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default()),
        None => PathBuf::from("data"),
    }
}

fn parse_shard(s: &str) -> Result<pollhook::shard::Shard> {
    Ok(pollhook::shard::Shard::from_arg(s)?)
}

fn main() -> ExitCode {
    // glibc gives every thread that allocates an arena of its own; a daemon that is mostly
    // idle sockets does not need them, and they are most of its memory (the idle benchmark:
    // 1,000 bridges in 48 MiB with the default, 38 MiB with two arenas). Before any thread.
    //
    // Blocks of 1 MiB and more (a page's text, a wide item's tree, an event body) are mapped
    // on their own and given back when freed. Left to itself, glibc raises this threshold to
    // the largest block freed so far (up to 32 MiB), and later blocks under it stay in the
    // arenas once freed: a poll of one wide item peaked about 10 MiB higher, and less
    // predictably. (Not lower: sled takes and frees blocks of 512 KiB for every commit.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    pollhook::redact::install_panic_hook();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        // sled work runs on blocking threads; a few are enough on a small server, and each
        // one costs memory (with 256 polls at once, the default would grow to hundreds).
        .max_blocking_threads(8)
        .enable_all()
        .build()?)
}

/// `pollhook run`: the options checked (a usage error exits 2 before anything starts), then
/// the daemon until SIGTERM.
fn run_daemon(args: RunArgs) -> Result<ExitCode> {
    let RunArgs {
        bridges,
        data,
        admin,
        admin_socket,
        admin_token_file,
        log_format,
        shard,
        store_failure_limit,
        max_polls,
        max_polls_per_host,
        admin_header_timeout,
    } = args;
    logging::init(log_format);
    let admin: Option<SocketAddr> = match admin.as_str() {
        "off" => None,
        a => Some(a.parse().with_context(|| {
            format!("--admin `{a}` is not an address like 127.0.0.1:9187 or `off`")
        })?),
    };
    // A usage error, found before anything starts (exit 2, docs/operations.md#the-command-line).
    if let Some(addr) = admin {
        if let Err(e) = access::check_exposure(addr, admin_token_file.is_some()) {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    }
    let admin_token = admin_token_file
        .as_deref()
        .map(access::AdminToken::read)
        .transpose()?;
    // A usage error too: exit 2 (docs/scaling.md#shards).
    let shard = match shard.as_deref().map(parse_shard).transpose() {
        Ok(shard) => shard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(ExitCode::from(2));
        }
    };
    let data = data.unwrap_or_else(default_data);
    let opts = RunOptions {
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
        admin_timeout: admin_header_timeout,
    };
    let rt = runtime()?;
    let ran = rt.block_on(async {
        let shutdown = CancellationToken::new();
        tokio::spawn(signals(shutdown.clone()));
        app::run(opts, Env::process(), shutdown).await
    });
    // A blocking call stuck in a failed store must not keep the process from exiting.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    ran?;
    Ok(ExitCode::SUCCESS)
}

/// `pollhook check`: "ok: N bridges", or every problem and exit 1.
fn check_command(paths: Vec<PathBuf>) -> Result<ExitCode> {
    let paths = if paths.is_empty() {
        vec![default_bridges()]
    } else {
        paths
    };
    match config::load_paths(&paths, &Env::process()) {
        Ok(b) => {
            println!(
                "ok: {} bridge{}",
                b.len(),
                if b.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!(
                "{} problem{}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `pollhook sign`: the signature headers of the body on stdin.
fn sign_command(secret: &[String], id: &str, timestamp: Option<i64>) -> Result<ExitCode> {
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let keys = secret
        .iter()
        .map(|s| pollhook::sign::key_from_secret(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    let ts = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
    println!("webhook-id: {id}");
    println!("webhook-timestamp: {ts}");
    println!(
        "webhook-signature: {}",
        pollhook::sign::standard(&keys, id, ts, &body)
    );
    println!(
        "x-hub-signature-256: {}",
        pollhook::sign::github(&keys[0], &body)
    );
    Ok(ExitCode::SUCCESS)
}

fn real_main(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_daemon(args),
        Command::Check { paths } => check_command(paths),
        Command::Poll {
            name,
            commit,
            render,
            bridges,
            admin,
        } => runtime()?.block_on(async {
            let api = Client::connect(&admin.place()).await?;
            if api.alive().await {
                if render {
                    let v = api
                        .render(&name)
                        .await
                        .with_context(|| format!("bridge {name}"))?;
                    print_planned(&v.requests);
                    return Ok(ExitCode::SUCCESS);
                }
                return poll_through_daemon(&api, &name, commit).await;
            }
            logging::init(LogFormat::Auto);
            let dir = bridges.unwrap_or_else(default_bridges);
            let data = admin.data.unwrap_or_else(default_data);
            poll_command(&name, commit, render, &dir, &data).await
        }),
        Command::SendTest {
            name,
            sink,
            bridges,
            admin,
        } => runtime()?.block_on(async {
            let api = Client::connect(&admin.place()).await?;
            let answers = if api.alive().await {
                let v = api.send_test(&name, sink.as_deref()).await;
                v.with_context(|| format!("bridge {name}"))?.answers
            } else {
                logging::init(LogFormat::Auto);
                let dir = bridges.unwrap_or_else(default_bridges);
                let bridge = load_bridge(&name, &dir)?;
                let client = pollhook::http::sender();
                let now = chrono::Utc::now();
                pollhook::deliver::trial::send_test(&client, &bridge, sink.as_deref(), now)
                    .await
                    .map_err(anyhow::Error::msg)?
            };
            Ok(print_answers(&name, &answers))
        }),
        Command::Status { json, admin } => runtime()?.block_on(status(json, &admin)),
        Command::Reset { name, admin } => runtime()?.block_on(async {
            let v = Client::connect(&admin.place()).await?.reset(&name).await?;
            println!(
                "reset {name}: {} items forgotten; the next poll re-baselines",
                v.items_forgotten
            );
            Ok(ExitCode::SUCCESS)
        }),
        Command::Resync { name, admin } => runtime()?.block_on(async {
            let v = Client::connect(&admin.place()).await?.resync(&name).await?;
            println!("resync {name}: {} items queued as item.snapshot", v.queued);
            Ok(ExitCode::SUCCESS)
        }),
        Command::DeadLetters { action, admin } => runtime()?.block_on(dead_letters(action, &admin)),
        Command::Store { action } => match action {
            StoreAction::Check { data } => store_check(&data.unwrap_or_else(default_data)),
            StoreAction::AcceptRollback { data } => {
                store_accept_rollback(&data.unwrap_or_else(default_data))
            }
            StoreAction::MoveShards { root } => move_shards_command(&root),
        },
        Command::State { action } => pollhook::handoff::cli::run(action),
        Command::Sign {
            secret,
            id,
            timestamp,
        } => sign_command(&secret, &id, timestamp),
    }
}

fn load_bridge(name: &str, dir: &std::path::Path) -> Result<config::Bridge> {
    let bridges = config::load_dir(dir, &Env::process()).map_err(|p| anyhow::anyhow!("{p}"))?;
    match bridges.into_iter().find(|b| b.name == name) {
        Some(b) => Ok(b),
        None => bail!("no bridge named `{name}` in {}", dir.display()),
    }
}

/// `poll --render`: each request as it would go on the wire, or why none would.
fn print_planned(requests: &[pollhook::deliver::trial::Planned]) {
    if requests.is_empty() {
        eprintln!("no events: no requests would be made");
    }
    for r in requests {
        println!("### {} ({})", r.sink, r.events.join(", "));
        if let Some(why) = &r.skipped {
            println!("not sent: {why}\n");
            continue;
        }
        for (k, v) in &r.headers {
            println!("{k}: {v}");
        }
        println!("\n{}\n", r.body.as_deref().unwrap_or_default());
    }
}

/// `send-test`: one line per sink; exit 1 unless every sink answered 2xx.
fn print_answers(name: &str, answers: &[pollhook::deliver::trial::Answer]) -> ExitCode {
    for a in answers {
        let status = a.status.map_or("-".to_string(), |s| s.to_string());
        match &a.error {
            None => println!("{name} -> {}: ok ({status})", a.sink),
            Some(e) => println!("{name} -> {}: failed ({status}): {e}", a.sink),
        }
    }
    if answers.iter().all(|a| a.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn poll_command(
    name: &str,
    commit: bool,
    render: bool,
    dir: &std::path::Path,
    data: &std::path::Path,
) -> Result<ExitCode> {
    let bridge = load_bridge(name, dir)?;
    if commit {
        std::fs::create_dir_all(data)
            .with_context(|| format!("cannot create {}", data.display()))?;
    }
    // A dry run where no state is kept yet compares with an empty store of its own, so it
    // leaves nothing behind (a store made in the data directory would be its first trace).
    let scratch;
    let data = if !commit && !data.join("pollhook.sled").is_dir() {
        scratch = tempfile::tempdir().context("cannot make a scratch store for the dry run")?;
        scratch.path()
    } else {
        data
    };
    let store = pollhook::store::Store::open(data)
        .with_context(|| format!("cannot open state in {}", data.display()))?;
    let ctx = pollhook::runtime::Ctx::new(store);
    let redactor = pollhook::redact::Redactor::new(&bridge.secrets);
    let report = pollhook::poll::poll_once(&ctx, &bridge, commit, chrono::Utc::now())
        .instrument(pollhook::logging::bridge_span(&bridge.name))
        .await
        .map_err(|e| anyhow::anyhow!("bridge {name}: {}", redactor.clean(&e.to_string())))?;
    if render {
        let now = chrono::Utc::now();
        print_planned(&pollhook::deliver::trial::plan(
            &bridge,
            &report.events,
            now,
        ));
    } else {
        for e in &report.events {
            println!("{}", e.body());
        }
    }
    eprintln!(
        "{}: {} items, {} created, {} updated, {} deleted{}{}",
        name,
        report.items,
        report.created,
        report.updated,
        report.deleted,
        baseline_note(report.baseline, report.emitted.total()),
        if commit {
            ""
        } else {
            " (dry run: nothing stored or sent)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// Opens the store for `pollhook store ...`, without the rollback check (they are the way out
/// of one), and never creating one.
fn open_store(data: &std::path::Path, what: &str) -> Result<pollhook::store::Store> {
    if !data.join("pollhook.sled").is_dir() {
        bail!(
            "no state in {} (no pollhook.sled there): nothing to {what}",
            data.display()
        );
    }
    match pollhook::store::Store::open_unchecked(data) {
        Err(StoreError::Locked(_)) => bail!(
            "cannot {what} the state in {}: a running pollhook (`pollhook run`) holds it; stop \
             the daemon first (e.g. `systemctl stop pollhook`), then run this again",
            data.display()
        ),
        r => r.with_context(|| format!("cannot {what} the state in {}", data.display())),
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `pollhook store move-shards`: a line for each shard it moved or found in both places,
/// none when there was nothing to do (it runs before every start).
fn move_shards_command(root: &std::path::Path) -> Result<ExitCode> {
    use pollhook::systemd::dirs::{Moved, move_shards};
    let done = move_shards(root).context("moving shards' state to their own directories")?;
    for (index, moved) in done {
        match moved {
            Moved::Moved { from, to, entries } => println!(
                "shard {index}: state moved from {} to {} ({})",
                from.display(),
                to.display(),
                logging::count(entries, "entry", "entries")
            ),
            Moved::Empty { old } => println!(
                "shard {index}: removed the empty {} (left by a start that failed)",
                old.display()
            ),
            Moved::Kept { old, new } => println!(
                "warning: shard {index}: {} holds state and so does {}; {} is used, the other \
                 is left as it was (remove it when it is no longer needed)",
                old.display(),
                new.display(),
                new.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `pollhook store check`: exit 0 when no bridge is below its high-water mark, else 1 (and
/// 1 when the mark is lost).
fn store_check(data: &std::path::Path) -> Result<ExitCode> {
    let store = open_store(data, "check")?;
    let hw = store.high_water();
    for note in store.mark_notes() {
        let level = if note.warning { "warning" } else { "note" };
        println!("{level}: {}", note.text);
    }
    if let Some(lost) = store.find_lost_mark() {
        return print_lost(&store, &lost, data);
    }
    match store.find_rollback()? {
        None => {
            let seqs = store.seqs()?;
            let marks = hw.marks();
            let highest = seqs.values().chain(marks.values()).max().copied();
            println!(
                "ok: {} bridge{}, highest seq {}; none below the high-water mark in {}",
                seqs.len(),
                plural(seqs.len()),
                highest.unwrap_or(0),
                hw.path().display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(r) => {
            println!(
                "rollback: {} of {} bridge{} {} below the highest seq ever handed out ({}):",
                r.behind.len(),
                r.bridges,
                plural(r.bridges),
                if r.behind.len() == 1 { "is" } else { "are" },
                hw.path().display()
            );
            for b in &r.behind {
                println!("  {b}");
            }
            println!(
                "the state in {} went back (a damaged or truncated log, or an older copy put \
                 back); `pollhook run` refuses to start so that no seq or event id is reused.",
                data.join("pollhook.sled").display()
            );
            println!(
                "run `pollhook store accept-rollback --data {}` to move every bridge's seq past \
                 the highest handed out; the changes lost with the rollback are then detected \
                 again and sent as new events",
                data.display()
            );
            Ok(ExitCode::from(1))
        }
    }
}

/// `pollhook store check` on a store whose high-water mark is lost: every bridge's seq, and
/// the ways out.
fn print_lost(
    store: &pollhook::store::Store,
    lost: &pollhook::highwater::Lost,
    data: &std::path::Path,
) -> Result<ExitCode> {
    println!("{}; the seqs stored:", lost.headline());
    let mut seqs: Vec<(String, u64)> = store.seqs()?.into_iter().collect();
    seqs.sort();
    for (bridge, seq) in &seqs {
        println!("  `{bridge}` is at seq {seq}");
    }
    println!(
        "`pollhook run` refuses to start, since it could reuse a seq or event id. Restore `{}` \
         and `{}` from a backup of {}, or run `pollhook store accept-rollback --data {}` to \
         start the mark again from these seqs (a seq handed out above them before, if any, is \
         then handed out again)",
        pollhook::highwater::FILE,
        pollhook::highwater::COPY,
        data.display(),
        data.display()
    );
    Ok(ExitCode::from(1))
}

/// `pollhook store accept-rollback`.
fn store_accept_rollback(data: &std::path::Path) -> Result<ExitCode> {
    let store = open_store(data, "accept a rollback of")?;
    let moved = match store.accept_rollback()? {
        Accepted::Moved(moved) => moved,
        Accepted::Restarted(seqs) => {
            for (bridge, seq) in &seqs {
                println!("{bridge}: seq {seq} (the mark starts here)");
            }
            println!(
                "accepted: the high-water mark started again from the store ({} bridge{}); \
                 `pollhook run` starts now",
                seqs.len(),
                plural(seqs.len())
            );
            return Ok(ExitCode::SUCCESS);
        }
    };
    if moved.is_empty() {
        println!(
            "nothing to accept: no bridge in {} is below its high-water mark",
            data.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for b in &moved {
        println!(
            "{}: seq {} -> {}{}",
            b.bridge,
            b.stored,
            b.handed_out,
            if b.missing {
                " (its record was lost: its next poll re-baselines)"
            } else {
                ""
            }
        );
    }
    println!(
        "accepted: {} bridge{} moved to the highest seq handed out; their next events get seqs \
         and ids never used; `pollhook run` starts now",
        moved.len(),
        plural(moved.len())
    );
    Ok(ExitCode::SUCCESS)
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

async fn dead_letters(action: DeadLetterAction, admin: &AdminAddr) -> Result<ExitCode> {
    let api = Client::connect(&admin.place()).await?;
    match action {
        DeadLetterAction::List { bridge, json } => {
            if json {
                let v = api.dead_letters_json(bridge.as_deref()).await?;
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(ExitCode::SUCCESS);
            }
            let rows = api.dead_letters(bridge.as_deref()).await?.dead_letters;
            if rows.is_empty() {
                println!("no dead letters");
                return Ok(ExitCode::SUCCESS);
            }
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|l| {
                    vec![
                        l.id.clone(),
                        l.bridge.clone(),
                        l.kind.as_str().to_string(),
                        l.seq.to_string(),
                        l.attempts.to_string(),
                        l.last_error.clone().unwrap_or_else(|| "-".to_string()),
                    ]
                })
                .collect();
            let head = [
                ("ID", false),
                ("BRIDGE", false),
                ("TYPE", false),
                ("SEQ", true),
                ("ATTEMPTS", true),
                ("LAST ERROR", false),
            ];
            for line in table(&head, &cells) {
                println!("{line}");
            }
        }
        DeadLetterAction::Replay(Selection { id, bridge, .. }) => {
            for id in &letter_ids(&api, id, bridge).await? {
                for letter in api.replay(id).await?.replayed {
                    println!("replayed {letter}");
                }
            }
        }
        DeadLetterAction::Drop(Selection { id, bridge, .. }) => {
            for id in &letter_ids(&api, id, bridge).await? {
                for letter in api.drop_letter(id).await?.dropped {
                    println!("dropped {letter}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The dead letters a replay or drop acts on: the one named, or all (of `bridge`).
async fn letter_ids(
    api: &Client,
    id: Option<String>,
    bridge: Option<String>,
) -> Result<Vec<String>> {
    let ids = match id {
        Some(id) => vec![id],
        None => api
            .dead_letters(bridge.as_deref())
            .await?
            .dead_letters
            .into_iter()
            .map(|l| l.id)
            .collect(),
    };
    if ids.is_empty() {
        println!("no dead letters");
    }
    Ok(ids)
}

async fn poll_through_daemon(api: &Client, name: &str, commit: bool) -> Result<ExitCode> {
    let v = api
        .poll(name, commit)
        .await
        .with_context(|| format!("bridge {name}"))?;
    for e in &v.events {
        println!("{}", serde_json::to_string(e)?);
    }
    eprintln!(
        "{name}: {} items, {} created, {} updated, {} deleted{} (through the daemon at {}){}",
        v.items,
        v.created,
        v.updated,
        v.deleted,
        baseline_note(v.baseline, v.events_total),
        api.place(),
        if commit {
            ""
        } else {
            " (dry run: nothing stored or sent)"
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// What a poll's summary line says of a baseline: whether its items went out as `created`
/// events (`first_poll: emit`) or were only remembered (the default, and every re-baseline).
fn baseline_note(baseline: bool, emitted: usize) -> &'static str {
    match (baseline, emitted) {
        (false, _) => "",
        (true, 0) => {
            " (baseline: remembered, nothing emitted; first_poll: emit sends each item as created)"
        }
        (true, _) => " (first poll: each item emitted as created)",
    }
}

/// `12s ago` / `in 3m 4s`.
fn relative(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    let Some(t) = t else {
        return "-".to_string();
    };
    let d = std::time::Duration::from_secs((t - now).num_seconds().unsigned_abs());
    let text = humantime::format_duration(d).to_string();
    if t <= now {
        format!("{text} ago")
    } else {
        format!("in {text}")
    }
}

/// The heading and the rows as lines, each column as wide as its widest cell and two spaces
/// apart; the columns marked `true` (numbers) aligned right.
fn table(head: &[(&str, bool)], rows: &[Vec<String>]) -> Vec<String> {
    let widths: Vec<usize> = head
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .chain([h.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<&str>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(head.iter().zip(&widths))
            .map(|(c, ((_, right), w))| {
                if *right {
                    format!("{c:>w$}")
                } else {
                    format!("{c:<w$}")
                }
            })
            .collect();
        parts.join("  ").trim_end().to_string()
    };
    std::iter::once(line(head.iter().map(|(h, _)| *h).collect()))
        .chain(
            rows.iter()
                .map(|r| line(r.iter().map(String::as_str).collect())),
        )
        .collect()
}

async fn status(json: bool, admin: &AdminAddr) -> Result<ExitCode> {
    let api = Client::connect(&admin.place()).await?;
    if json {
        let v = api.bridges_json().await?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let v = api.bridges().await?;
    let now = Utc::now();
    let opt = |n: Option<usize>| n.map_or("-".to_string(), |n| n.to_string());
    let rows: Vec<Vec<String>> = v
        .bridges
        .iter()
        .map(|b| {
            let st = &b.status;
            let mut result = st.last_result.clone().unwrap_or_else(|| "-".to_string());
            if let Some(t) = st.paused_until.filter(|t| *t > now) {
                result = format!("paused {}", relative(Some(t), now));
            }
            vec![
                b.name.clone(),
                relative(st.last_poll, now),
                result,
                relative(st.next_poll, now),
                opt(st.items),
                opt(b.outbox),
                opt(b.dead_letters),
            ]
        })
        .collect();
    let head = [
        ("BRIDGE", false),
        ("LAST POLL", false),
        ("RESULT", false),
        ("NEXT POLL", false),
        ("ITEMS", true),
        ("OUTBOX", true),
        ("DEAD", true),
    ];
    let lines = table(&head, &rows);
    println!("{}", lines[0]);
    for (line, b) in lines[1..].iter().zip(&v.bridges) {
        println!("{line}");
        if let Some(err) = &b.status.last_error {
            println!("    last error: {err}");
        }
        if let Some(crash) = &b.status.last_crash {
            let n = b.status.restarts;
            println!("    last crash: {crash} (restarted {n} times)");
        }
    }
    for p in &v.problems {
        println!("unhealthy: {p}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_are_as_wide_as_their_contents() {
        let rows = vec![
            vec!["a-rather-long-name".to_string(), "7".into(), "12".into()],
            vec!["b".to_string(), "1234567".into(), "-".into()],
        ];
        let lines = table(&[("NAME", false), ("OUTBOX", true), ("DEAD", true)], &rows);
        assert_eq!(
            lines,
            [
                "NAME                 OUTBOX  DEAD",
                "a-rather-long-name        7    12",
                "b                   1234567     -",
            ]
        );
    }
}
