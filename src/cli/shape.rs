//! `pollhook accept-shape NAME`, through the running daemon: the drifted shape of a bridge's
//! items becomes the learnt one, and a bridge held by `emit.shape: hold` goes on from its next
//! poll (docs/testing-bridges.md#shape-drift).

use super::args::{AdminAddr, runtime};
use anyhow::Result;
use pollhook::admin::client::Client;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct AcceptShapeArgs {
    name: String,
    #[command(flatten)]
    admin: AdminAddr,
}

/// `pollhook accept-shape NAME`.
pub(super) fn accept_shape(args: AcceptShapeArgs) -> Result<ExitCode> {
    let AcceptShapeArgs { name, admin } = args;
    runtime()?.block_on(async {
        let v = Client::connect(&admin.place())
            .await?
            .accept_shape(&name)
            .await?;
        println!(
            "accept-shape {name}: {}; the next poll goes on as usual",
            v.changes.join(", ")
        );
        Ok(ExitCode::SUCCESS)
    })
}
