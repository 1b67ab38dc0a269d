//! `pollhook new RECIPE [ARGS] [--to FILE]`: a ready bridge file for a common source, on
//! stdout or in a new file; `pollhook new --list`: the recipes and their arguments
//! (docs/operations.md#recipes). The recipes themselves are the library's `recipes`.

use anyhow::{Context, Result};
use pollhook::recipes::{self, RECIPES};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct NewArgs {
    /// The recipe (`pollhook new --list` shows them all)
    #[arg(required_unless_present = "list")]
    recipe: Option<String>,
    /// The recipe's arguments: OWNER/REPO, a package name, a URL…
    args: Vec<String>,
    /// Write the bridge file here rather than on stdout; an existing file is never
    /// overwritten. Its name without `.yaml` names the bridge, when it is a valid name
    #[arg(long, value_name = "FILE")]
    to: Option<PathBuf>,
    /// List the recipes, each with its arguments
    #[arg(long, conflicts_with_all = ["recipe", "args", "to"])]
    list: bool,
}

/// `pollhook new`: exit 2 when the recipe or its arguments are wrong, 1 when the file cannot
/// be written (or exists).
pub(super) fn run(args: NewArgs) -> Result<ExitCode> {
    if args.list {
        print!("{}", list());
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.recipe.unwrap_or_default();
    let stem = args.to.as_deref().and_then(named_by);
    let written = match recipes::find(&name).and_then(|r| recipes::write(r, &args.args, stem)) {
        Ok(written) => written,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    match args.to {
        None => std::io::stdout()
            .lock()
            .write_all(written.text.as_bytes())?,
        Some(path) => {
            create_new(&path, &written.text)?;
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.unwrap_or(Path::new(".")).display();
            eprintln!(
                "wrote {} (bridge {}): `pollhook check {0}` checks it, `pollhook poll {1} --bridges {dir}` tries it",
                path.display(),
                written.name,
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The bridge name a file's name gives, when it is a valid one (`tokio.yaml` -> `tokio`).
fn named_by(path: &Path) -> Option<&str> {
    let stem = path.file_stem()?.to_str()?;
    recipes::is_bridge_name(stem).then_some(stem)
}

/// Writes `text` to a file that must not exist yet.
fn create_new(path: &Path, text: &str) -> Result<()> {
    let open = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path);
    let mut file = match open {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            anyhow::bail!("{} exists; not overwritten", path.display())
        }
        opened => opened.with_context(|| format!("cannot create {}", path.display()))?,
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Each recipe's usage and what it watches, then its arguments, one a line.
fn list() -> String {
    let width = RECIPES.iter().map(|r| r.usage().len()).max().unwrap_or(0);
    let mut out = String::new();
    for r in RECIPES {
        out.push_str(&format!("{:width$}  {}\n", r.usage(), r.about));
        for p in r.params {
            out.push_str(&format!("    {}: {}\n", p.name, p.help));
        }
    }
    out
}
