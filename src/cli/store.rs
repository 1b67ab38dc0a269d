//! `pollhook store check|accept-rollback|move-shards`: the state directory itself, with the
//! daemon stopped. `check` finds a rollback (a bridge's seq below the highest ever handed out)
//! or a lost high-water mark, `accept-rollback` is the way out of either
//! (docs/operations.md#rollback), and `move-shards` moves shards' state to where the systemd
//! units keep it now (docs/operations.md#upgrading).

use super::args::default_data;
use super::output::plural;
use anyhow::{Context, Result, bail};
use clap::Subcommand;
use pollhook::highwater;
use pollhook::logging;
use pollhook::store::{Accepted, Store, StoreError};
use pollhook::systemd::dirs::{self, Moved};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct StoreArgs {
    #[command(subcommand)]
    action: StoreAction,
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

/// `pollhook store ...`.
pub(super) fn run(args: StoreArgs) -> Result<ExitCode> {
    match args.action {
        StoreAction::Check { data } => check(&data.unwrap_or_else(default_data)),
        StoreAction::AcceptRollback { data } => accept_rollback(&data.unwrap_or_else(default_data)),
        StoreAction::MoveShards { root } => move_shards(&root),
    }
}

/// Opens the store for `pollhook store ...`, without the rollback check (they are the way out
/// of one), and never creating one.
fn open_store(data: &Path, what: &str) -> Result<Store> {
    if !data.join("pollhook.sled").is_dir() {
        bail!(
            "no state in {} (no pollhook.sled there): nothing to {what}",
            data.display()
        );
    }
    match Store::open_unchecked(data) {
        Err(StoreError::Locked(_)) => bail!(
            "cannot {what} the state in {}: a running pollhook (`pollhook run`) holds it; stop \
             the daemon first (e.g. `systemctl stop pollhook`), then run this again",
            data.display()
        ),
        r => r.with_context(|| format!("cannot {what} the state in {}", data.display())),
    }
}

/// `pollhook store move-shards`: a line for each shard it moved or found in both places,
/// none when there was nothing to do (it runs before every start).
fn move_shards(root: &Path) -> Result<ExitCode> {
    let done = dirs::move_shards(root).context("moving shards' state to their own directories")?;
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
fn check(data: &Path) -> Result<ExitCode> {
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
fn print_lost(store: &Store, lost: &highwater::Lost, data: &Path) -> Result<ExitCode> {
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
        highwater::FILE,
        highwater::COPY,
        data.display(),
        data.display()
    );
    Ok(ExitCode::from(1))
}

/// `pollhook store accept-rollback`.
fn accept_rollback(data: &Path) -> Result<ExitCode> {
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
