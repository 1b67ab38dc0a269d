//! `pollhook completions SHELL` and `pollhook man`: what a shell and `man` need, generated
//! from the command line's own definition (the [`super::Cli`] clap builds), so they cannot
//! drift from it (docs/operations.md#completions-and-the-man-page). The Debian package ships
//! both, generated at build time. And `pollhook schema`: the bridge files' JSON Schema, from
//! the types that parse them (docs/configuration.md#editors-and-the-json-schema).

use anyhow::Result;
use clap::CommandFactory;
use roff::{Roff, bold, roman};
use std::io::Write;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct CompletionsArgs {
    /// The shell to complete for
    shell: clap_complete::Shell,
}

/// `pollhook completions SHELL`: the completion script on stdout.
pub(super) fn completions(args: CompletionsArgs) -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "pollhook", &mut out);
    std::io::stdout().lock().write_all(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `pollhook man`: the manual page pollhook(1), as roff, on stdout.
pub(super) fn man() -> Result<ExitCode> {
    let mut cmd = super::Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        command_section(&mut roff, sub);
    }
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([bold("/etc/pollhook/bridges/")]);
    roff.text([roman(
        "Bridge files (*.yaml) as the systemd service reads them; see docs/configuration.md.",
    )]);
    roff.control("TP", []);
    roff.text([bold("/var/lib/pollhook/")]);
    roff.text([roman("The state directory of the systemd service.")]);
    roff.to_writer(&mut out)?;
    man.render_version_section(&mut out)?;
    std::io::stdout()
        .lock()
        .write_all(once_prelude(&out).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The page with roff's prelude (the two lines defining `\*(Aq`, which each part rendered
/// apart begins with) kept only where it first appears.
fn once_prelude(page: &[u8]) -> String {
    let page = String::from_utf8_lossy(page);
    let mut seen = std::collections::HashSet::new();
    let mut kept = String::with_capacity(page.len());
    for line in page.lines() {
        let prelude = line.starts_with(".ie \\n(.g .ds Aq") || line.starts_with(".el .ds Aq");
        if !prelude || seen.insert(line) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// One subcommand (and, after it, each of its own): its full name, usage, description and
/// arguments, as a subsection of COMMANDS (one page for all, rather than one page each that
/// the package would have to ship and keep in step).
fn command_section(roff: &mut Roff, cmd: &clap::Command) {
    let name = cmd.get_bin_name().unwrap_or_else(|| cmd.get_name());
    roff.control("SS", [name]);
    let usage = cmd.clone().render_usage().to_string();
    let usage = usage.trim_start_matches("Usage:").trim();
    roff.control("nf", []);
    roff.text([bold(usage)]);
    roff.control("fi", []);
    if let Some(about) = cmd.get_long_about().or_else(|| cmd.get_about()) {
        roff.control("PP", []);
        roff.text([roman(about.to_string())]);
    }
    for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" {
            continue;
        }
        roff.control("TP", []);
        roff.text([bold(arg_name(arg))]);
        let help = arg.get_long_help().or_else(|| arg.get_help());
        let mut text = help.map(|h| h.to_string()).unwrap_or_default();
        let defaults: Vec<_> = arg.get_default_values().iter().collect();
        if !defaults.is_empty() && !text.contains("[default") {
            let d: Vec<_> = defaults.iter().map(|d| d.to_string_lossy()).collect();
            text.push_str(&format!(" [default: {}]", d.join(", ")));
        }
        roff.text([roman(text.trim().to_string())]);
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        if sub.get_name() != "help" {
            command_section(roff, sub);
        }
    }
}

/// How an argument is written: `--admin <ADDR>`, `-v, --verbose`, `<NAME>`.
fn arg_name(arg: &clap::Arg) -> String {
    let value = arg
        .get_value_names()
        .map(|v| {
            v.iter()
                .map(|n| format!("<{n}>"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| format!("<{}>", arg.get_id().as_str().to_uppercase()));
    if arg.is_positional() {
        return value;
    }
    let mut names = Vec::new();
    if let Some(s) = arg.get_short() {
        names.push(format!("-{s}"));
    }
    if let Some(l) = arg.get_long() {
        names.push(format!("--{l}"));
    }
    let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
    match takes_value {
        true => format!("{} {value}", names.join(", ")),
        false => names.join(", "),
    }
}

/// `pollhook schema`: the JSON Schema of a bridge file on stdout.
pub(super) fn schema() -> Result<ExitCode> {
    let text = pollhook::config::raw::json_schema();
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
