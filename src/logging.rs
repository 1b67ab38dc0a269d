//! Log set-up. Logs go to stderr; stdout belongs to `console` sinks and `poll` output.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// journald-friendly under systemd (no timestamp of our own), pretty on a terminal,
    /// plain text otherwise.
    Auto,
    Pretty,
    Json,
}

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let journal = std::env::var_os("JOURNAL_STREAM").is_some();
    let tty = std::io::stderr().is_terminal();
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.with_ansi(tty).try_init(),
        LogFormat::Auto if journal => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Auto => builder.with_ansi(tty).try_init(),
    };
}
