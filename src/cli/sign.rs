//! `pollhook sign`: the signature headers pollhook would send with the body on stdin, for
//! checking a receiver's verification by hand (docs/events.md#verifying-a-signature).

use anyhow::{Result, bail};
use std::io::Read;
use std::process::ExitCode;

#[derive(clap::Args)]
pub(super) struct SignArgs {
    /// `whsec_<base64>` or any string; repeat for several
    #[arg(long, required = true)]
    secret: Vec<String>,
    #[arg(long, default_value = "msg_manual")]
    id: String,
    /// Unix seconds [default: now]
    #[arg(long)]
    timestamp: Option<i64>,
}

/// `pollhook sign`: the signature headers of the body on stdin.
pub(super) fn run(args: SignArgs) -> Result<ExitCode> {
    let SignArgs {
        secret,
        id,
        timestamp,
    } = args;
    let mut body = Vec::new();
    std::io::stdin().read_to_end(&mut body)?;
    let keys = secret
        .iter()
        .map(|s| pollhook::sign::key_from_secret(s).map_err(anyhow::Error::msg))
        .collect::<Result<Vec<_>>>()?;
    // GitHub's header takes one key: the first.
    let Some(first) = keys.first() else {
        bail!("sign needs a --secret");
    };
    // Now is when the body has been read (stdin may be a person typing).
    let ts = timestamp.unwrap_or_else(|| chrono::Utc::now().timestamp());
    println!("webhook-id: {id}");
    println!("webhook-timestamp: {ts}");
    println!(
        "webhook-signature: {}",
        pollhook::sign::standard(&keys, &id, ts, &body)
    );
    println!(
        "x-hub-signature-256: {}",
        pollhook::sign::github(first, &body)
    );
    Ok(ExitCode::SUCCESS)
}
