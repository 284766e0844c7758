//! `ltx`: inspect, verify, diff, apply and compact LTX files.
//!
//! `main` parses arguments and calls one module of the `ltx_cli` library
//! per subcommand; each writes to an `impl Write`. Exit codes: 0 ok, 1
//! verification failed or differences found, 2 usage or I/O error; a
//! closed pipe (`ltx list | head`) ends quietly with 0.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ltx_cli::cmd::{
    apply, checksum, compact, diff, dump, encode_db, list, page, quickstart, restore, sql, verify,
    wal,
};
use ltx_cli::{is_broken_pipe, Failed};

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
    Dump(dump::Args),
    /// One row per file: level, TXIDs, commit, pages, checksums, timestamp, WAL fields, bytes.
    List(list::Args),
    /// Verify files completely (in parallel) and, for directories, their chains.
    Verify(verify::Args),
    /// Compare two LTX files or SQLite databases; write the delta with -o.
    Diff(diff::Args),
    /// Apply LTX files to a SQLite database, atomically.
    Apply(apply::Args),
    /// Encode a SQLite database as a snapshot LTX file.
    EncodeDb(encode_db::Args),
    /// Rolling checksum of a SQLite database.
    Checksum(checksum::Args),
    /// One page, from an LTX file or as of a TXID from a bucket.
    Page(page::Args),
    /// Merge LTX files into one, copying compressed frames.
    Compact(compact::Args),
    /// Restore a database from a bucket at a TXID, a time or the latest state.
    Restore(restore::Args),
    /// Run a read-only query against a bucket's database as of a TXID or time.
    Sql(sql::Args),
    /// SQLite WAL files: dump one, or encode a database and its WAL as LTX files.
    Wal(wal::Args),
    /// Build a small database, write LTX files, verify, dump and apply them in a temp folder.
    Quickstart(quickstart::Args),
}

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
        Command::Dump(a) => dump::run(a, &mut out),
        Command::List(a) => list::run(a, &mut out),
        Command::Verify(a) => verify::run(a, &mut out),
        Command::Diff(a) => diff::run(a, &mut out),
        Command::Apply(a) => apply::run(a, &mut out),
        Command::EncodeDb(a) => encode_db::run(a, &mut out),
        Command::Checksum(a) => checksum::run(a, &mut out),
        Command::Page(a) => page::run(a, &mut out),
        Command::Compact(a) => compact::run(a, &mut out),
        Command::Quickstart(a) => quickstart::run(a, &mut out),
        Command::Restore(a) => restore::run(a, &mut out),
        Command::Sql(a) => sql::run(a, &mut out),
        Command::Wal(a) => wal::run(a, &mut out),
    };
    let r = r.and_then(|()| out.flush().map_err(anyhow::Error::from));
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) if e.is::<Failed>() => ExitCode::from(1),
        Err(e) => {
            eprintln!("ltx: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
