//! `ltx wal`: SQLite write-ahead logs. `dump` shows one as SQLite reads it;
//! `encode` turns a database file and its WAL into LTX files, one per
//! committed transaction, as Litestream ships them.

use std::io::Write;

use anyhow::Result;

pub mod dump;
pub mod encode;

/// Arguments of `ltx wal`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The `ltx wal` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print a WAL's header, frames, transactions, and where its valid part ends and why.
    Dump(dump::Args),
    /// Write a database file and its WAL as LTX files: a snapshot, then one file per transaction.
    Encode(encode::Args),
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    match args.command {
        Command::Dump(a) => dump::run(a, out),
        Command::Encode(a) => encode::run(a, out),
    }
}
