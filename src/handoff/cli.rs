//! `pollhook state export|import` (docs/operations.md#moving-a-bridges-state): a bridge's
//! state out of a store and into another, by hand, while no daemon runs on either (the
//! store's lock refuses a second process). Export writes one document a line to stdout,
//! import reads them from a file; both say on stderr what they did, never what a document
//! holds (it carries secrets).

use super::Document;
use crate::store::Store;
use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum StateAction {
    /// Write the state of bridges (every bridge the store holds, or each --bridge) to stdout,
    /// one document a line. It holds secrets: redirect it to a file only you can read.
    Export {
        /// The state directory (the daemon stopped)
        #[arg(long)]
        data: PathBuf,
        /// A bridge to export (again for more); all by default
        #[arg(long = "bridge", value_name = "NAME")]
        bridges: Vec<String>,
        /// Only the bridges shard I of N owns (what moves there when N changes)
        #[arg(long, value_name = "I/N", conflicts_with = "bridges")]
        owned_by: Option<String>,
    },
    /// Import the documents of FILE (as export wrote them) into a store; a bridge that
    /// already has state there is refused unless --replace. Nothing is imported when any
    /// document is refused.
    Import {
        file: PathBuf,
        /// The state directory (the daemon stopped)
        #[arg(long)]
        data: PathBuf,
        /// Overwrite the state of bridges the store already holds
        #[arg(long)]
        replace: bool,
    },
}

pub fn run(action: StateAction) -> Result<ExitCode> {
    match action {
        StateAction::Export {
            data,
            bridges,
            owned_by,
        } => {
            let owner = owned_by
                .map(|s| crate::shard::Shard::parse(&s, &Default::default()))
                .transpose()
                .map_err(|e| {
                    anyhow::anyhow!("{}", e.to_string().replace("--shard", "--owned-by"))
                })?;
            export(&data, &bridges, owner)
        }
        StateAction::Import {
            file,
            data,
            replace,
        } => import(&file, &data, replace),
    }
}

fn open(data: &Path) -> Result<Store> {
    if !data.join("pollhook.sled").exists() {
        bail!("{} holds no pollhook state", data.display());
    }
    Store::open(data).with_context(|| format!("cannot open the state in {}", data.display()))
}

fn export(data: &Path, wanted: &[String], owner: Option<crate::shard::Shard>) -> Result<ExitCode> {
    let store = open(data)?;
    let names: Vec<String> = match wanted {
        [] => store
            .bridges_held()?
            .into_iter()
            .filter(|b| owner.is_none_or(|o| o.owns(b)))
            .collect(),
        some => some.to_vec(),
    };
    let mut out = std::io::stdout().lock();
    for bridge in &names {
        let state = store
            .export_bridge(bridge)?
            .with_context(|| format!("bridge `{bridge}` has no state in {}", data.display()))?;
        let doc = Document {
            bridge: bridge.clone(),
            state,
        };
        writeln!(out, "{}", doc.to_line()).context("writing to stdout")?;
        eprintln!("{}", summary("exported", &doc, doc.state.meta.seq));
    }
    out.flush().context("writing to stdout")?;
    eprintln!("exported {} from {}", count(names.len()), data.display());
    Ok(ExitCode::SUCCESS)
}

fn import(file: &Path, data: &Path, replace: bool) -> Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mut docs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let doc = Document::parse(line)
            .map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), i + 1))?;
        if docs.iter().any(|d: &Document| d.bridge == doc.bridge) {
            bail!(
                "{}:{}: bridge `{}` is in the file twice",
                file.display(),
                i + 1,
                doc.bridge
            );
        }
        docs.push(doc);
    }
    if docs.is_empty() {
        bail!("{} holds no state document", file.display());
    }
    std::fs::create_dir_all(data).with_context(|| format!("cannot create {}", data.display()))?;
    let store = Store::open(data)
        .with_context(|| format!("cannot open the state in {}", data.display()))?;
    if !replace {
        for d in &docs {
            if store.has_state(&d.bridge)? {
                bail!(
                    "bridge `{}` already has state in {}; nothing imported (--replace overwrites it)",
                    d.bridge,
                    data.display()
                );
            }
        }
    }
    for d in &docs {
        let seq = store
            .import_bridge(&d.bridge, &d.state, replace, None)
            .with_context(|| format!("importing bridge `{}` into {}", d.bridge, data.display()))?;
        eprintln!("{}", summary("imported", d, seq));
    }
    eprintln!("imported {} into {}", count(docs.len()), data.display());
    Ok(ExitCode::SUCCESS)
}

fn count(n: usize) -> String {
    crate::logging::count(n, "bridge", "bridges")
}

/// What a document held, in numbers (never its content).
fn summary(did: &str, d: &Document, seq: u64) -> String {
    let s = &d.state;
    format!(
        "{did} bridge `{}`: {} items, {} cached pages, {} events waiting, {} dead letters, seq {seq}",
        d.bridge,
        s.items.len(),
        s.pages.len(),
        s.outbox.len(),
        s.dead.len()
    )
}
