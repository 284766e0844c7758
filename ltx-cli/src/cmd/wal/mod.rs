//! `ltx wal`: SQLite write-ahead logs. `dump` shows one as SQLite reads it;
//! `encode` turns a database file and its WAL into LTX files, one per
//! committed transaction, as Litestream ships them.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result};
use ltx_core::wal::{WalEnd, WalEvent, WalReader, WalScan};

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

/// Bytes read from the WAL file at a time.
const CHUNK: usize = 1 << 20;

/// Streams the WAL at `path` (a missing file reads as empty when
/// `missing_ok`) through `reader` in 1 MiB reads, calling `f` with every
/// event but [`WalEvent::NeedMore`]; returns where the valid part ends.
/// Memory: the chunk, one staged frame and the reader's page list of the
/// transaction in progress, whatever the WAL's size (no memory map, so the
/// WAL's pages do not count against the process).
///
/// # Errors
/// I/O errors naming the file; the reader's limit errors; `f`'s errors.
pub fn stream(
    path: &Path,
    missing_ok: bool,
    mut reader: WalReader,
    mut f: impl FnMut(WalEvent<'_>) -> Result<()>,
) -> Result<WalEnd> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => Some(file),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("{}: cannot open", path.display())),
    };
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    // The reader reports the end once in tail mode, and again at every
    // call otherwise: a second report means there is nothing more to read.
    let mut ended = false;
    'chunks: while let Some(file_ref) = file.as_mut() {
        let n = file_ref
            .read(&mut buf)
            .with_context(|| format!("{}: cannot read at byte {offset}", path.display()))?;
        if n == 0 {
            break;
        }
        offset += n as u64;
        let mut input = &buf[..n];
        loop {
            let (used, ev) = reader
                .read(input)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            input = &input[used..];
            match ev {
                WalEvent::NeedMore => break,
                WalEvent::End(_) if ended => break 'chunks,
                WalEvent::End(e) => {
                    ended = true;
                    f(WalEvent::End(e))?
                }
                ev => f(ev)?,
            }
        }
    }
    Ok(reader.finish())
}

/// [`ltx_core::wal::scan`] of a file, streamed: the header, every committed
/// transaction (16 bytes per page) and the end.
///
/// # Errors
/// As [`stream`].
pub fn scan_file(path: &Path, missing_ok: bool) -> Result<WalScan> {
    let mut header = None;
    let mut transactions = Vec::new();
    let end = stream(path, missing_ok, WalReader::new(), |ev| {
        match ev {
            WalEvent::Header(h) => header = Some(h),
            WalEvent::Commit(t) => transactions.push(t.clone()),
            _ => {}
        }
        Ok(())
    })?;
    Ok(WalScan {
        header,
        transactions,
        end,
    })
}
