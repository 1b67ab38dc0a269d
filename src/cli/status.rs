//! `pollhook status`: every bridge of the running daemon as a table (last poll, result, next
//! poll, items, outbox, dead letters), each bridge's last error and crash under its row, and
//! what makes the daemon unhealthy; or the admin API's JSON.

use super::args::{AdminAddr, runtime};
use super::output::{relative, table};
use anyhow::Result;
use chrono::{DateTime, Utc};
use pollhook::admin::body::Bridges;
use pollhook::admin::client::Client;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct StatusArgs {
    /// The admin API's JSON instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    admin: AdminAddr,
}

/// `pollhook status`.
pub(super) fn run(args: StatusArgs) -> Result<ExitCode> {
    runtime()?.block_on(async {
        let api = Client::connect(&args.admin.place()).await?;
        if args.json {
            let v = api.bridges_json().await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(ExitCode::SUCCESS);
        }
        let v = api.bridges().await?;
        // Times are shown relative to when the answer came.
        print_table(&v, Utc::now());
        Ok(ExitCode::SUCCESS)
    })
}

/// The table, with each bridge's last error and crash under its row, then the problems.
fn print_table(v: &Bridges, now: DateTime<Utc>) {
    let opt = |n: Option<usize>| n.map_or("-".to_string(), |n| n.to_string());
    let rows: Vec<Vec<String>> = v
        .bridges
        .iter()
        .map(|b| {
            let st = &b.status;
            let mut result = st.last_result.as_deref().unwrap_or("-").to_string();
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
    println!("{}", lines.head);
    for (line, b) in lines.rows.iter().zip(&v.bridges) {
        println!("{line}");
        if let Some(waiting) = &b.handoff {
            println!("    {waiting}");
        }
        if let Some(held) = &b.shape {
            println!("    shape {held} (`pollhook accept-shape {}`)", b.name);
        }
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
}
