//! `pollhook reset` and `pollhook resync`, through the running daemon: a bridge started over
//! (its state forgotten, the next poll re-baselines), or its receivers brought up to date
//! (every item it holds queued as `item.snapshot`).

use super::args::{AdminAddr, runtime};
use anyhow::Result;
use pollhook::admin::client::Client;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct ResetArgs {
    name: String,
    #[command(flatten)]
    admin: AdminAddr,
}

#[derive(clap::Args)]
pub(super) struct ResyncArgs {
    name: String,
    #[command(flatten)]
    admin: AdminAddr,
}

/// `pollhook reset NAME`.
pub(super) fn reset(args: ResetArgs) -> Result<ExitCode> {
    let ResetArgs { name, admin } = args;
    runtime()?.block_on(async {
        let v = Client::connect(&admin.place()).await?.reset(&name).await?;
        println!(
            "reset {name}: {} items forgotten; the next poll re-baselines",
            v.items_forgotten
        );
        Ok(ExitCode::SUCCESS)
    })
}

/// `pollhook resync NAME`.
pub(super) fn resync(args: ResyncArgs) -> Result<ExitCode> {
    let ResyncArgs { name, admin } = args;
    runtime()?.block_on(async {
        let v = Client::connect(&admin.place()).await?.resync(&name).await?;
        println!("resync {name}: {} items queued as item.snapshot", v.queued);
        Ok(ExitCode::SUCCESS)
    })
}
