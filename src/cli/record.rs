//! `record` and `replay`: a bridge's answers kept as a cassette, and the whole pipeline run
//! over one offline, its events compared with the expected ones
//! (docs/testing-bridges.md).

use super::args::{default_bridges, runtime};
use super::trial::load_bridge;
use anyhow::{Context, Result};
use pollhook::cassette::{record, replay};
use pollhook::logging::{self, LogFormat};
use std::path::PathBuf;
use std::process::ExitCode;
use tracing::Instrument as _;

#[derive(clap::Args)]
pub(super) struct RecordArgs {
    name: String,
    /// The cassette directory to write (it must not hold one)
    #[arg(long, value_name = "DIR")]
    to: PathBuf,
    /// How many polls to record
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    polls: u16,
    /// How long to wait between two polls
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    every: std::time::Duration,
    /// Bridges directory
    #[arg(long)]
    bridges: Option<PathBuf>,
}

#[derive(clap::Args)]
pub(super) struct ReplayArgs {
    name: String,
    /// The cassette directory to replay
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// Compare the output with this file: exit 0 when they are the same, else print where
    /// they differ and exit 1
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// Bridges directory
    #[arg(long)]
    bridges: Option<PathBuf>,
}

/// `pollhook record`: one line per poll on stderr, the cassette in `--to`.
pub(super) fn record(args: RecordArgs) -> Result<ExitCode> {
    logging::init(LogFormat::Auto);
    let dir = args.bridges.unwrap_or_else(default_bridges);
    let bridge = load_bridge(&args.name, &dir)?;
    runtime()?.block_on(async {
        let rec = record::Recording {
            bridge: &bridge,
            dir: &args.to,
            polls: usize::from(args.polls),
            every: args.every,
        };
        record::record(rec, |k, r| match &r.error {
            None => eprintln!("poll {k}: {} answers, {} events", r.answers, r.events),
            Some(e) => eprintln!("poll {k}: {} answers, failed: {e}", r.answers),
        })
        .instrument(logging::bridge_span(&bridge.name))
        .await
        .with_context(|| format!("bridge {}", bridge.name))?;
        eprintln!("recorded {} polls to {}", args.polls, args.to.display());
        Ok(ExitCode::SUCCESS)
    })
}

/// `pollhook replay`: the lines on stdout, or compared with `--expect`.
pub(super) fn replay(args: ReplayArgs) -> Result<ExitCode> {
    logging::init(LogFormat::Auto);
    let dir = args.bridges.unwrap_or_else(default_bridges);
    let bridge = load_bridge(&args.name, &dir)?;
    let lines = runtime()?.block_on(
        replay::replay(&bridge, &args.from).instrument(logging::bridge_span(&bridge.name)),
    );
    let lines = lines.with_context(|| format!("bridge {}", bridge.name))?;
    let mut out = String::new();
    for l in &lines {
        out.push_str(l);
        out.push('\n');
    }
    let Some(expect) = args.expect else {
        print!("{out}");
        return Ok(ExitCode::SUCCESS);
    };
    let expected = std::fs::read_to_string(&expect)
        .with_context(|| format!("cannot read {}", expect.display()))?;
    match first_difference(&expected, &out) {
        None => {
            eprintln!("{}: as expected ({} lines)", bridge.name, lines.len());
            Ok(ExitCode::SUCCESS)
        }
        Some(d) => {
            println!("{}: differs from {}\n{d}", bridge.name, expect.display());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Where `got` first differs from `expected`, line by line: the line number, the expected
/// line and the one got (`-`/`+`, as a unified diff marks them), and how many lines each has.
pub(super) fn first_difference(expected: &str, got: &str) -> Option<String> {
    if expected == got {
        return None;
    }
    let (e, g): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), got.lines().collect());
    let at = e.iter().zip(&g).take_while(|(a, b)| a == b).count();
    let side = |v: &[&str]| v.get(at).map_or("(no line)".to_string(), |l| l.to_string());
    Some(format!(
        "first difference at line {}:\n- {}\n+ {}\n({} lines expected, {} got)",
        at + 1,
        side(&e),
        side(&g),
        e.len(),
        g.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::first_difference;

    #[test]
    fn the_first_differing_line_is_shown_with_both_sides() {
        assert_eq!(first_difference("a\nb\n", "a\nb\n"), None);
        let d = first_difference("a\nb\nc\n", "a\nx\nc\n").unwrap();
        assert!(
            d.starts_with("first difference at line 2:\n- b\n+ x\n"),
            "{d}"
        );
        let d = first_difference("a\n", "a\nb\n").unwrap();
        assert!(
            d.contains("- (no line)\n+ b") && d.contains("(1 lines expected, 2 got)"),
            "{d}"
        );
    }
}
