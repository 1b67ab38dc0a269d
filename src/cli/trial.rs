//! Bridge files tried out: `check` validates them, `poll` polls one bridge now (a dry run
//! unless `--commit`; `--render` shows the requests its events would make) and `send-test`
//! sends each sink a `bridge.test` event. `poll` and `send-test` go through the running
//! daemon when one answers, else work on the bridge files and the state directory themselves
//! (docs/operations.md#status-polls-on-demand-reset-resync,
//! docs/configuration.md#trying-a-sink).

use super::args::{AdminAddr, default_bridges, runtime};
use super::output::plural;
use anyhow::{Context, Result, bail};
use chrono::{DateTime, Utc};
use pollhook::admin::client::Client;
use pollhook::config::{self, Env};
use pollhook::deliver::trial::{Answer, Planned};
use pollhook::logging::{self, LogFormat};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing::Instrument as _;

#[derive(clap::Args)]
pub(super) struct CheckArgs {
    /// Files or directories [default: the bridges directory]
    paths: Vec<PathBuf>,
}

#[derive(clap::Args)]
pub(super) struct PollArgs {
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
}

#[derive(clap::Args)]
pub(super) struct SendTestArgs {
    name: String,
    /// Only the sink with this URL (as in the bridge file)
    #[arg(long)]
    sink: Option<String>,
    /// Bridges directory, when no daemon runs
    #[arg(long)]
    bridges: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminAddr,
}

/// `pollhook check`: "ok: N bridges", or every problem and exit 1.
pub(super) fn check(args: CheckArgs) -> Result<ExitCode> {
    let paths = if args.paths.is_empty() {
        vec![default_bridges()]
    } else {
        args.paths
    };
    match config::load_paths(&paths, &Env::process()) {
        Ok(b) => {
            println!("ok: {} bridge{}", b.len(), plural(b.len()));
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for p in &problems.0 {
                eprintln!("{p}");
            }
            eprintln!("{} problem{}", problems.len(), plural(problems.len()));
            Ok(ExitCode::from(1))
        }
    }
}

/// `pollhook poll`: through the daemon when one answers, else on the state directory.
pub(super) fn poll(args: PollArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let api = Client::connect(&args.admin.place()).await?;
        if api.alive().await {
            if args.render {
                let v = api
                    .render(&args.name)
                    .await
                    .with_context(|| format!("bridge {}", args.name))?;
                print_planned(&v.requests);
                return Ok(ExitCode::SUCCESS);
            }
            return poll_through_daemon(&api, &args.name, args.commit).await;
        }
        // No daemon: the poll is ours, at the time read here (not before a daemon was
        // looked for, which may have taken up to the admin client's time-out).
        let how = Poll {
            commit: args.commit,
            render: args.render,
            now: Utc::now(),
        };
        logging::init(LogFormat::Auto);
        let dir = args.bridges.unwrap_or_else(default_bridges);
        let data = args.admin.data();
        poll_here(&args.name, how, &dir, &data).await
    })
}

/// `pollhook send-test`: through the daemon when one answers, else from the bridge file.
pub(super) fn send_test(args: SendTestArgs) -> Result<ExitCode> {
    let SendTestArgs {
        name,
        sink,
        bridges,
        admin,
    } = args;
    runtime()?.block_on(async {
        let api = Client::connect(&admin.place()).await?;
        let answers = if api.alive().await {
            let v = api.send_test(&name, sink.as_deref()).await;
            v.with_context(|| format!("bridge {name}"))?.answers
        } else {
            // No daemon: the test is ours, sent at the time read here.
            let now = Utc::now();
            logging::init(LogFormat::Auto);
            let dir = bridges.unwrap_or_else(default_bridges);
            let bridge = load_bridge(&name, &dir)?;
            let client = pollhook::http::sender();
            pollhook::deliver::trial::send_test(&client, &bridge, sink.as_deref(), now)
                .await
                .map_err(anyhow::Error::msg)?
        };
        Ok(print_answers(&name, &answers))
    })
}

pub(super) fn load_bridge(name: &str, dir: &Path) -> Result<config::Bridge> {
    let bridges = config::load_dir(dir, &Env::process()).map_err(|p| anyhow::anyhow!("{p}"))?;
    match bridges.into_iter().find(|b| b.name == name) {
        Some(b) => Ok(b),
        None => bail!("no bridge named `{name}` in {}", dir.display()),
    }
}

/// `poll --render`: each request as it would go on the wire, or why none would.
fn print_planned(requests: &[Planned]) {
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
fn print_answers(name: &str, answers: &[Answer]) -> ExitCode {
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
        dry_run_note(commit)
    );
    Ok(ExitCode::SUCCESS)
}

/// How `poll` runs without a daemon: whether it stores, whether it prints requests instead
/// of events, and the time it polls at.
struct Poll {
    commit: bool,
    render: bool,
    now: DateTime<Utc>,
}

/// `pollhook poll` with no daemon answering: the bridge file read and the state directory
/// opened here.
async fn poll_here(name: &str, how: Poll, dir: &Path, data: &Path) -> Result<ExitCode> {
    let Poll {
        commit,
        render,
        now,
    } = how;
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
    let report = pollhook::poll::poll_once(&ctx, &bridge, commit, now)
        .instrument(pollhook::logging::bridge_span(&bridge.name))
        .await
        .map_err(|e| anyhow::anyhow!("bridge {name}: {}", redactor.clean(&e.to_string())))?;
    if render {
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
        dry_run_note(commit)
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

/// What a poll's summary line says when nothing was stored or sent.
fn dry_run_note(commit: bool) -> &'static str {
    if commit {
        ""
    } else {
        " (dry run: nothing stored or sent)"
    }
}
