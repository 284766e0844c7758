//! `ltx encode-db DB -o OUT.ltx`: a snapshot of a SQLite database file.
//!
//! TXID range 1..=`--txid` (default 1), commit = page count, every page
//! except the lock page, compressed in parallel; post-apply = the rolling
//! checksum (or the NoChecksum flag). The output is written to a temporary
//! file and renamed into place. A database whose state is not entirely in
//! its main file (WAL frames, hot journal) is refused, and so is one that
//! changes while it is read.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ltx_core::TxId;

use crate::db::{self, DbImage};
use crate::encode::{self, LtxOptions};

/// Arguments of `ltx encode-db`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "The database must be at rest: a -wal file holding frames or a hot journal is \
refused (checkpoint first), and so is a database that changes while it is read.

Examples:
  ltx encode-db app.db -o 0000000000000001-0000000000000001.ltx
  ltx encode-db app.db -o snap.ltx --txid 42 --no-checksum"
)]
pub struct Args {
    /// The SQLite database file.
    pub db: PathBuf,
    /// Where to write the LTX file (written to a temporary file, then renamed).
    #[arg(short, long, value_name = "OUT.ltx")]
    pub output: PathBuf,
    /// Max TXID of the snapshot (min TXID is always 1): decimal, `0x…`, or 16 hex digits.
    #[arg(long, default_value = "1", value_parser = crate::args::parse_txid)]
    pub txid: TxId,
    /// Header timestamp in milliseconds since the Unix epoch (default: now).
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub timestamp: Option<i64>,
    /// `--checksum` / `--no-checksum`: whether the output tracks checksums.
    #[command(flatten)]
    pub checksum: crate::convention::ChecksumArg,
}

/// A cheap fingerprint of a database file's state: length, modification
/// time and the SQLite file change counter (header bytes 24..28).
fn fingerprint(path: &Path) -> Result<(u64, Option<std::time::SystemTime>, [u8; 4])> {
    use std::os::unix::fs::FileExt;
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let m = f.metadata()?;
    let mut counter = [0u8; 4];
    if m.len() >= 28 {
        f.read_exact_at(&mut counter, 24)
            .with_context(|| format!("{}: cannot read header", path.display()))?;
    }
    Ok((m.len(), m.modified().ok(), counter))
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    db::check_not_input(&args.output, &[&args.db])?;
    db::check_quiescent(&args.db)?;
    let before = fingerprint(&args.db)?;
    let image = DbImage::open(&args.db, false)?;
    let opts = LtxOptions {
        txid: args.txid,
        timestamp: args.timestamp.unwrap_or_else(encode::now_ms),
        no_checksum: {
            let d = args.checksum.decide(&args.output, false);
            if let Some(r) = d.reason {
                eprintln!("ltx: {r}");
            }
            d.no_checksum
        },
    };
    let started = std::time::Instant::now();
    let (tmp, w) = encode::snapshot_db(&image, &args.output, &opts)?;
    drop(image);
    if fingerprint(&args.db)? != before || db::check_quiescent(&args.db).is_err() {
        bail!(
            "{}: the database changed while it was being encoded; nothing was written, try again when it is idle",
            args.db.display()
        );
    }
    tmp.commit(&args.output)?;
    let raw = w.pages * u64::from(w.header.page_size.get());
    writeln!(
        out,
        "wrote {}: snapshot TXID {}-{}, {} pages of {} bytes (commit {}), {} bytes ({:.1}% of {} bytes of pages), post-apply checksum {}, file checksum {}, {:.2}s",
        args.output.display(),
        w.header.min_txid,
        w.header.max_txid,
        w.pages,
        w.header.page_size,
        w.header.commit,
        w.bytes,
        if raw == 0 { 100.0 } else { w.bytes as f64 * 100.0 / raw as f64 },
        raw,
        w.trailer.post_apply_checksum,
        w.trailer.file_checksum,
        started.elapsed().as_secs_f64()
    )?;
    Ok(())
}
