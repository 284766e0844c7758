//! `ltx`: inspect, verify, diff, apply and compact LTX files.
//!
//! `main` parses arguments and calls one module per subcommand; each writes
//! to an `impl Write` so its output is testable. Exit codes: 0 ok, 1
//! verification failed or differences found, 2 usage or I/O error.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod args;
mod check;
mod cmd_apply;
mod cmd_checksum;
mod cmd_compact;
mod cmd_diff;
mod cmd_dump;
mod cmd_encode_db;
mod cmd_list;
mod cmd_page;
mod cmd_quickstart;
mod cmd_restore;
mod cmd_verify;
mod convention;
mod db;
mod encode;
mod input;
mod output;
mod progress;
mod remote;
mod version;

const EXIT_CODES: &str =
    "Exit codes: 0 ok; 1 verification failed or differences found; 2 usage or I/O error.";

#[derive(Parser)]
#[command(name = "ltx", version, about = "Inspect, verify, diff, apply and compact LTX files (Litestream / LiteFS)", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print a file's header, trailer, page index and pages.
    Dump(cmd_dump::Args),
    /// One row per file: level, TXIDs, commit, pages, checksums, timestamp, WAL fields, bytes.
    List(cmd_list::Args),
    /// Verify files completely (in parallel) and, for directories, their chains.
    Verify(cmd_verify::Args),
    /// Compare two LTX files or SQLite databases; write the delta with -o.
    Diff(cmd_diff::Args),
    /// Apply LTX files to a SQLite database, atomically.
    Apply(cmd_apply::Args),
    /// Encode a SQLite database as a snapshot LTX file.
    EncodeDb(cmd_encode_db::Args),
    /// Rolling checksum of a SQLite database.
    Checksum(cmd_checksum::Args),
    /// Extract one page via the page index.
    Page(cmd_page::Args),
    /// Merge LTX files into one, copying compressed frames.
    Compact(cmd_compact::Args),
    /// Restore a database from a bucket at a TXID, a time or the latest state.
    Restore(cmd_restore::Args),
    /// Build a small database, write LTX files, verify, dump and apply them in a temp folder.
    Quickstart(cmd_quickstart::Args),
}

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

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let r = match cli.command {
        Command::Dump(a) => cmd_dump::run(a, &mut out),
        Command::List(a) => cmd_list::run(a, &mut out),
        Command::Verify(a) => cmd_verify::run(a, &mut out),
        Command::Diff(a) => cmd_diff::run(a, &mut out),
        Command::Apply(a) => cmd_apply::run(a, &mut out),
        Command::EncodeDb(a) => cmd_encode_db::run(a, &mut out),
        Command::Checksum(a) => cmd_checksum::run(a, &mut out),
        Command::Page(a) => cmd_page::run(a, &mut out),
        Command::Compact(a) => cmd_compact::run(a, &mut out),
        Command::Quickstart(a) => cmd_quickstart::run(a, &mut out),
        Command::Restore(a) => cmd_restore::run(a, &mut out),
    };
    let flushed = out.flush();
    match r {
        Ok(()) if flushed.is_ok() => ExitCode::SUCCESS,
        Ok(()) => {
            eprintln!("ltx: error: writing output: {}", flushed.unwrap_err());
            ExitCode::from(2)
        }
        Err(e) if e.is::<Failed>() => ExitCode::from(1),
        Err(e) => {
            eprintln!("ltx: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
