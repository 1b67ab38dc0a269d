//! Log set-up. Logs go to stderr (or straight to journald); stdout belongs to `console` sinks
//! and `poll` output.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Under systemd (`JOURNAL_STREAM` set): straight to journald with native fields
    /// (`BRIDGE=`, `EVENT_ID=`, `SINK=`), or lines without a timestamp of our own if the
    /// journal socket cannot be reached; coloured text on a terminal; plain text otherwise.
    Auto,
    Pretty,
    Json,
}

fn filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

pub fn init(format: LogFormat) {
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    if format == LogFormat::Auto && under_journald {
        // Field names become journal fields as they are, upper-cased: `bridge` -> `BRIDGE`,
        // so `journalctl -u pollhook BRIDGE=tokio-releases` shows one bridge.
        if let Ok(layer) = tracing_journald::layer() {
            // INFO is journald's "info" (6), not the crate's default "notice" (5).
            let priorities = tracing_journald::PriorityMappings {
                info: tracing_journald::Priority::Informational,
                debug: tracing_journald::Priority::Debug,
                ..tracing_journald::PriorityMappings::new()
            };
            let layer = layer
                .with_field_prefix(None)
                .with_priority_mappings(priorities)
                .with_syslog_identifier("pollhook".to_string());
            let _ = tracing_subscriber::registry()
                .with(filter())
                .with(layer)
                .try_init();
            return;
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_target(false);
    let tty = std::io::stderr().is_terminal();
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.with_ansi(tty).try_init(),
        // journald adds its own timestamp.
        LogFormat::Auto if under_journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Auto => builder.with_ansi(tty).try_init(),
    };
}
