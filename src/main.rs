//! The `pollhook` binary: the allocator set up for a daemon of idle sockets, the panic hook
//! that keeps secrets out of panics, then the command line parsed and run (`cli`). Errors
//! reach the operator here, as one line each, and exit 1.

mod cli;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // glibc gives every thread that allocates an arena of its own; a daemon that is mostly
    // idle sockets does not need them, and they are most of its memory (the idle benchmark:
    // 1,000 bridges in 48 MiB with the default, 38 MiB with two arenas). Before any thread.
    //
    // Blocks of 1 MiB and more (a page's text, a wide item's tree, an event body) are mapped
    // on their own and given back when freed. Left to itself, glibc raises this threshold to
    // the largest block freed so far (up to 32 MiB), and later blocks under it stay in the
    // arenas once freed: a poll of one wide item peaked about 10 MiB higher, and less
    // predictably. (Not lower: sled takes and frees blocks of 512 KiB for every commit.)
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    pollhook::redact::install_panic_hook();
    let args = cli::Cli::parse();
    match cli::dispatch(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
