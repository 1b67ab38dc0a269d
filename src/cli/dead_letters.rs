//! `pollhook dead-letters list|replay|drop`, through the running daemon: the dead letters as a
//! table (or the admin API's JSON), or queued again or forgotten, one by id or all of them.

use super::args::{AdminAddr, runtime};
use super::output::table;
use anyhow::Result;
use clap::Subcommand;
use pollhook::admin::client::Client;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct DeadLettersArgs {
    #[command(subcommand)]
    action: DeadLetterAction,
    #[command(flatten)]
    admin: AdminAddr,
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

/// `pollhook dead-letters ...`.
pub(super) fn run(args: DeadLettersArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let api = Client::connect(&args.admin.place()).await?;
        match args.action {
            DeadLetterAction::List { bridge, json } => list(&api, bridge, json).await?,
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
    })
}

/// `dead-letters list`: a table, `no dead letters`, or the JSON.
async fn list(api: &Client, bridge: Option<String>, json: bool) -> Result<()> {
    if json {
        let v = api.dead_letters_json(bridge.as_deref()).await?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let rows = api.dead_letters(bridge.as_deref()).await?.dead_letters;
    if rows.is_empty() {
        println!("no dead letters");
        return Ok(());
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
    table(&head, &cells).print();
    Ok(())
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
