//! `pollhook handoff`, through the running daemon (docs/scaling.md#while-waiting): `skip NAME`
//! gives up waiting for a bridge's state from another shard; it baselines here instead.

use super::args::{AdminAddr, runtime};
use anyhow::Result;
use clap::Subcommand;
use pollhook::admin::client::Client;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct HandoffArgs {
    #[command(subcommand)]
    action: HandoffAction,
    #[command(flatten)]
    admin: AdminAddr,
}

#[derive(Subcommand)]
enum HandoffAction {
    /// Stop waiting for the state of a bridge from another shard: the old state is given up,
    /// and the bridge baselines here (no events for what it holds now).
    Skip { name: String },
}

/// `pollhook handoff ...`.
pub(super) fn run(args: HandoffArgs) -> Result<ExitCode> {
    let HandoffArgs { action, admin } = args;
    runtime()?.block_on(async {
        let api = Client::connect(&admin.place()).await?;
        match action {
            HandoffAction::Skip { name } => {
                api.skip_handoff(&name).await?;
                println!("handoff of {name} skipped: its old state is given up; it baselines here");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
