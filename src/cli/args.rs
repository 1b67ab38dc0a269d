//! What several command families share: where the running daemon's admin API is and what lets
//! the CLI act there (`--admin`, `--admin-socket`, `--admin-token-file`, `--data`), the default
//! bridges and state directories (systemd's, else the working directory's), and the async
//! runtime of the commands that talk to a daemon or poll.

use anyhow::Result;
use pollhook::access;
use pollhook::admin::client::Place;
use std::path::PathBuf;

/// Where the running daemon's admin API is, and what lets the CLI act there: its admin
/// socket when that answers, else TCP with the token.
#[derive(clap::Args)]
pub(super) struct AdminAddr {
    /// Admin API of the running daemon [default: 127.0.0.1:9187]. Given, it names the daemon:
    /// the default admin socket is then not tried (only one given with --admin-socket)
    #[arg(long = "admin", env = "POLLHOOK_ADMIN", global = true)]
    addr: Option<String>,
    /// The daemon's admin socket, used when it answers [default: $RUNTIME_DIRECTORY/admin.sock
    /// under systemd, else DATA/admin.sock]
    #[arg(
        long = "admin-socket",
        env = "POLLHOOK_ADMIN_SOCKET",
        value_name = "PATH",
        global = true
    )]
    socket: Option<PathBuf>,
    /// A file holding the daemon's admin token, to act over TCP when the socket cannot be
    /// used [default: the token itself from $POLLHOOK_ADMIN_TOKEN]
    #[arg(long = "admin-token-file", value_name = "PATH", global = true)]
    token_file: Option<PathBuf>,
    /// State directory: where the admin socket is by default, and for `poll` the state itself
    /// when no daemon answers [default: $STATE_DIRECTORY under systemd, else ./data]
    #[arg(long, global = true)]
    data: Option<PathBuf>,
}

impl AdminAddr {
    /// Where the daemon may be, for the admin client.
    pub(super) fn place(&self) -> Place {
        Place {
            addr: self.addr.clone(),
            socket: self.socket.clone(),
            default_socket: access::default_socket(&self.data()),
            token_file: self.token_file.clone(),
        }
    }

    /// The state directory: `--data`, else the default.
    pub(super) fn data(&self) -> PathBuf {
        self.data.clone().unwrap_or_else(default_data)
    }
}

/// The bridges directory when none is given: systemd's configuration directory, else
/// `./bridges`.
pub(super) fn default_bridges() -> PathBuf {
    match std::env::var_os("CONFIGURATION_DIRECTORY") {
        // systemd may pass several, colon-separated: the first is ours.
        Some(d) => {
            PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default()).join("bridges")
        }
        None => PathBuf::from("bridges"),
    }
}

/// The state directory when none is given: systemd's, else `./data`.
pub(super) fn default_data() -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        Some(d) => PathBuf::from(d.to_string_lossy().split(':').next().unwrap_or_default()),
        None => PathBuf::from("data"),
    }
}

/// The async runtime of a command (the daemon's too).
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        // sled work runs on blocking threads; a few are enough on a small server, and each
        // one costs memory (with 256 polls at once, the default would grow to hundreds).
        .max_blocking_threads(8)
        .enable_all()
        .build()?)
}
