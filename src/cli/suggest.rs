//! `suggest`: which paths of a bridge's items change, ranked with their evidence, and the YAML
//! that would quiet the noise; from the running daemon's counters, or from K dry polls made
//! here (docs/testing-bridges.md#churn-and-suggest).

use super::args::{AdminAddr, default_bridges, runtime};
use super::trial::load_bridge;
use anyhow::{Context, Result, bail};
use pollhook::admin::client::Client;
use pollhook::churn::{Report, evidence};
use pollhook::logging::{self, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::Instrument as _;

#[derive(clap::Args)]
pub(super) struct SuggestArgs {
    name: String,
    /// Poll the bridge this many times here instead of asking the daemon (into a scratch
    /// store: the first poll is the baseline, the others are compared; nothing is sent)
    #[arg(long, value_parser = clap::value_parser!(u16).range(2..))]
    polls: Option<u16>,
    /// With --polls, how long to wait between two polls
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    every: std::time::Duration,
    /// Bridges directory, with --polls
    #[arg(long)]
    bridges: Option<PathBuf>,
    #[command(flatten)]
    admin: AdminAddr,
}

/// `pollhook suggest`.
pub(super) fn run(args: SuggestArgs) -> Result<ExitCode> {
    let report = runtime()?.block_on(async {
        match args.polls {
            Some(k) => {
                logging::init(LogFormat::Auto);
                let dir = args.bridges.clone().unwrap_or_else(default_bridges);
                let bridge = load_bridge(&args.name, &dir)?;
                dry_polls(&bridge, k, args.every)
                    .instrument(logging::bridge_span(&bridge.name))
                    .await
            }
            None => {
                let api = Client::connect(&args.admin.place()).await?;
                if !api.alive().await {
                    bail!(
                        "no daemon answers at {}; give --polls K to poll the bridge here",
                        api.place()
                    );
                }
                api.churn(&args.name)
                    .await
                    .with_context(|| format!("bridge {}", args.name))
            }
        }
    })?;
    print!("{}", shown(&args.name, &report));
    Ok(ExitCode::SUCCESS)
}

/// K polls into a scratch store, nothing sent: the churn they found.
async fn dry_polls(
    bridge: &pollhook::config::Bridge,
    k: u16,
    every: std::time::Duration,
) -> Result<Report> {
    let scratch = tempfile::tempdir().context("cannot make a scratch store")?;
    let store =
        pollhook::store::Store::open(scratch.path()).context("cannot open the scratch store")?;
    let ctx = pollhook::runtime::Ctx::new(store);
    let redactor = pollhook::redact::Redactor::new(&bridge.secrets);
    for i in 1..=k {
        if i > 1 {
            tokio::time::sleep(every).await;
        }
        let r = pollhook::poll::poll_once(&ctx, bridge, true, ctx.clock.now()).await;
        match r {
            Ok(r) => eprintln!("poll {i}: {} items, {} updated", r.items, r.updated),
            Err(e) => eprintln!("poll {i}: failed: {}", redactor.clean(&e.to_string())),
        }
    }
    Ok(ctx.churn.report(&bridge.name, ctx.store().ok().as_ref()))
}

/// The report as printed: the paths ranked with their evidence, then the suggestions.
fn shown(name: &str, r: &Report) -> String {
    let mut out = format!(
        "{name}: {} compared poll{}\n",
        r.polls,
        super::output::plural(r.polls as usize)
    );
    if r.paths.is_empty() {
        out.push_str("  no update changed anything\n");
    }
    for p in &r.paths {
        out.push_str(&format!(
            "  {} ({} item updates)\n",
            evidence(p, r.polls),
            p.items
        ));
    }
    if r.other_paths > 0 {
        out.push_str(&format!(
            "  and {} updates of paths beyond the {} counted\n",
            r.other_paths,
            r.paths.len()
        ));
    }
    if r.flaps > 0 {
        out.push_str(&format!(
            "  {} updates brought an item back to its value before (A→B→A)\n",
            r.flaps
        ));
    }
    if r.suggestions.is_empty() {
        out.push_str("\nnothing to suggest\n");
    }
    for s in &r.suggestions {
        out.push_str("\nsuggested, to add to the bridge file:\n");
        for e in &s.evidence {
            out.push_str(&format!("  # {e}\n"));
        }
        for l in s.yaml.lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out
}
