//! The `ltx` command as a library: one module per subcommand in [`cmd`],
//! each an `Args` (clap) and a `run(args, out)` that writes its report to
//! any [`std::io::Write`], so that output is testable and the binary's
//! `main` only parses, dispatches and maps errors to exit codes.
//!
//! Around them: [`input`] (memory-mapped files, standard input, replica
//! directories), [`output`] (text forms, tables, progress), [`db`] (SQLite
//! database images), [`remote`] (bucket URLs through `ltx-compactor`),
//! [`check`] (streaming verification), [`chain`] (the chain rules of
//! `ltx verify` for directories and buckets), [`encode`], [`convention`]
//! (checksums for Litestream buckets), [`args`] (value parsers), [`pitr`]
//! (pages at a TXID without a restore) and [`vfs`] (a read-only SQLite VFS
//! over those pages).
//!
//! ```no_run
//! use clap::Parser;
//! // `ltx list DIR --json`, into a buffer instead of standard output.
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     args: ltx_cli::cmd::list::Args,
//! }
//! let cli = Cli::parse_from(["ltx", "--json", "/backups/app.db"]);
//! let mut out = Vec::new();
//! ltx_cli::cmd::list::run(cli.args, &mut out).unwrap();
//! ```

#![warn(missing_docs)]

pub mod args;
pub mod chain;
pub mod check;
pub mod cmd;
pub mod convention;
pub mod db;
pub mod encode;
#[cfg(unix)]
pub mod follow;
pub mod input;
pub mod output;
pub mod pitr;
pub mod progress;
pub mod remote;
pub mod version;
pub mod vfs;

/// An outcome that is not an I/O or usage error: verification failed or
/// differences were found (exit code 1). The message was already printed.
#[derive(Debug)]
pub struct Failed;

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failed")
    }
}
impl std::error::Error for Failed {}

/// Whether `e` comes from writing to a closed pipe (`ltx list | head`):
/// the reader has what it wanted, so the command ends quietly with 0, as
/// ripgrep does.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
