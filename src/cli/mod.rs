//! The command line: clap's definition of `pollhook` and its subcommands, and the dispatch of
//! each to the file of its family (docs/operations.md#the-command-line). A family is one file
//! here that owns its arguments (a `clap::Args` struct, or a `Subcommand` enum for a family of
//! several) and the function that runs them; adding one is that file (and its `mod` line), a
//! variant of [`Command`] and an arm of [`dispatch`].
//!
//! - `args`: what several families share: where the running daemon is, the default
//!   directories, the async runtime of the commands that need one
//! - `daemon`: `run`, the daemon itself
//! - `trial`: `check`, `poll` and `send-test`, bridge files tried out
//! - `status`: `status`, every bridge as a table
//! - `resync`: `reset` and `resync`, a bridge's state started over through the daemon
//! - `shape`: `accept-shape`, a bridge's drifted shape made the learnt one through the daemon
//! - `dead_letters`: `dead-letters list|replay|drop`
//! - `store`: `store check|accept-rollback|move-shards`, on the state directory itself
//! - `handoff`: `handoff skip`, a bridge's wait for its state from another shard given up,
//!   through the daemon (`state export|import`, the same state moved by hand, is
//!   `pollhook::handoff::cli`'s)
//! - `sign`: `sign`, the signature headers of a body
//! - `generate`: `completions` and `man`, generated from this definition, and `schema`
//! - `new`: `new`, a bridge file written from a recipe
//! - `record`: `record` and `replay`, a bridge's answers kept as a cassette and replayed offline
//! - `suggest`: `suggest`, the paths that churn and the YAML that would quiet them
//! - `output`: tables, relative times and plurals as the commands print them

mod args;
mod daemon;
mod dead_letters;
mod generate;
mod handoff;
mod new;
mod output;
mod record;
mod resync;
mod shape;
mod sign;
mod status;
mod store;
mod suggest;
mod trial;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Turns pull into push: polls HTTP/JSON APIs and POSTs a signed webhook for every item
/// created, updated or deleted.
#[derive(Parser)]
#[command(name = "pollhook", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The subcommands, in the order `pollhook --help` lists them; each variant's doc comment is
/// its line there.
#[derive(Subcommand)]
enum Command {
    /// Run the daemon: poll every bridge on its schedule and deliver the events.
    Run(daemon::RunArgs),
    /// Validate bridge files: "ok: N bridges", or every problem as FILE:LINE:COLUMN: message.
    Check(trial::CheckArgs),
    /// Poll one bridge now and print its events as JSON lines. Without --commit nothing is
    /// stored or sent (a dry run). Goes through the running daemon when one answers (on its
    /// admin socket, or at --admin); otherwise works on the state directory (--data) itself.
    Poll(trial::PollArgs),
    /// Send one `bridge.test` event (seq 0, not stored) to each sink of a bridge now and print
    /// each answer; exit 1 if any sink did not answer 2xx.
    SendTest(trial::SendTestArgs),
    /// Show every bridge: last poll, result, next poll, items, outbox, dead letters.
    Status(status::StatusArgs),
    /// Forget a bridge's state (its seq goes on); the next poll re-baselines.
    Reset(resync::ResetArgs),
    /// Queue every item the bridge holds now as `item.snapshot` (to bring a new receiver up to date).
    Resync(resync::ResyncArgs),
    /// Make the drifted shape of a bridge's items the learnt one; a bridge held by
    /// `emit.shape: hold` goes on from its next poll (docs/testing-bridges.md#shape-drift).
    AcceptShape(shape::AcceptShapeArgs),
    /// List, replay (to the back of the queue) or drop dead letters, through the running daemon.
    DeadLetters(dead_letters::DeadLettersArgs),
    /// Check the state directory for a rollback, or accept one. Works on the directory
    /// itself, so the daemon must be stopped.
    Store(store::StoreArgs),
    /// Print the signature headers for a body read from stdin.
    Sign(sign::SignArgs),
    /// Move bridges' state between stores by hand, the daemon stopped: export to a file, import
    /// from it (docs/operations.md#moving-a-bridges-state)
    State {
        #[command(subcommand)]
        action: pollhook::handoff::cli::StateAction,
    },
    /// Print the completion script for a shell (bash, zsh, fish, elvish, powershell).
    Completions(generate::CompletionsArgs),
    /// Print the manual page pollhook(1), as roff (`pollhook man | man -l -`).
    Man,
    /// Print the JSON Schema of a bridge file (schema/bridge.schema.json in the repository).
    Schema,
    /// Write a ready bridge file for a common source (GitHub, GitLab, a feed, PyPI, crates.io,
    /// npm, Docker Hub, Jira, Linear, any JSON API): `pollhook new --list` shows the recipes.
    New(new::NewArgs),
    /// Live handoffs between shards, through the running daemon: give up waiting for a
    /// bridge's state (docs/scaling.md#while-waiting).
    Handoff(handoff::HandoffArgs),
    /// Record K real polls of a bridge as a cassette: each answer's status, headers and body,
    /// no credential kept (docs/testing-bridges.md). Stores and sends nothing.
    Record(record::RecordArgs),
    /// Run the whole pipeline over a cassette, offline (a scratch store, a fixed clock, nothing
    /// sent), and print the events and sink requests as JSON lines; with --expect, compare.
    Replay(record::ReplayArgs),
    /// Show which paths of a bridge's items change, how often and in how many items, and
    /// propose the `exclude` or `settle` to add; from the running daemon, or --polls K here.
    Suggest(suggest::SuggestArgs),
}

/// Runs the command given: its exit code, or the error `main` prints as one line.
pub fn dispatch(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run(args) => daemon::run(args),
        Command::Check(args) => trial::check(args),
        Command::Poll(args) => trial::poll(args),
        Command::SendTest(args) => trial::send_test(args),
        Command::Status(args) => status::run(args),
        Command::Reset(args) => resync::reset(args),
        Command::Resync(args) => resync::resync(args),
        Command::AcceptShape(args) => shape::accept_shape(args),
        Command::DeadLetters(args) => dead_letters::run(args),
        Command::Store(args) => store::run(args),
        Command::Sign(args) => sign::run(args),
        Command::State { action } => pollhook::handoff::cli::run(action),
        Command::Completions(args) => generate::completions(args),
        Command::Man => generate::man(),
        Command::Schema => generate::schema(),
        Command::New(args) => new::run(args),
        Command::Handoff(args) => handoff::run(args),
        Command::Record(args) => record::record(args),
        Command::Replay(args) => record::replay(args),
        Command::Suggest(args) => suggest::run(args),
    }
}
