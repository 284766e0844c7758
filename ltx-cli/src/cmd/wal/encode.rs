//! `ltx wal encode DB [--wal PATH] -o DIR`: a database file and its WAL as
//! LTX files with Litestream's names: a snapshot of the database file as it
//! is before the WAL (`0000000000000001-<N>.ltx`, N = `--start-txid`, 1 by
//! default), then one L0 file per committed transaction (TXIDs N+1, N+2,
//! …), each with Litestream's header fields (commit, `wal_offset`,
//! `wal_size`, `wal_salt1/2`) and, unless NoChecksum, pre- and post-apply
//! checksums kept up to date incrementally (`ltx_core::wal::LtxChain`).
//! `ltx apply --db OUT DIR` then gives the database as SQLite sees it
//! (main file plus WAL).
//!
//! What belongs together is checked before anything is written: the WAL's
//! page size must be the database's, and when the database's wal-index
//! (`DB-shm`) is readable its salts must be the WAL's (else the WAL is not
//! the one the database's connections use). Frames the wal-index says a
//! checkpoint already copied into the database file are in the snapshot,
//! so their transactions get no file of their own.
//!
//! Files are written into a staging directory inside DIR, then checked
//! against the inputs (a database or WAL that changed while being read is
//! refused: nothing is written), then renamed into DIR, which is fsynced.
//! Memory: one transaction's compressed file and its page list.

use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ltx_core::wal::{self, LtxChain, ShmHeader, WalEvent, WalReader};
use ltx_core::{format_filename, Checksum, Pgno, TxId};
use serde::Serialize;

use crate::db::{self, DbImage};
use crate::encode::{self, LtxOptions};
use crate::output;

/// Arguments of `ltx wal encode`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
The database file must be as it was before the WAL's first transaction (no
checkpoint since), which is what a copy of DB and DB-wal taken together is; when
DB-shm says a checkpoint already copied some frames into DB, their transactions
are part of the snapshot. Copy the files of a live database first (or stop its
writers): a database or WAL that changes while it is read is refused.

Examples:
  ltx wal encode app.db -o ltx/
  ltx wal encode copy.db --wal copy.db-wal -o ltx/ --start-txid 42 --no-checksum
  ltx apply --db restored.db ltx/")]
pub struct Args {
    /// The SQLite database file.
    pub db: PathBuf,
    /// Its WAL (default: DB-wal; a missing WAL means no transactions).
    #[arg(long, value_name = "PATH")]
    pub wal: Option<PathBuf>,
    /// The directory for the LTX files (created if missing).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// The snapshot's max TXID (its min is always 1); the WAL's
    /// transactions follow from N+1. Decimal, `0x…`, or 16 hex digits.
    #[arg(long, value_name = "N", default_value = "1", value_parser = crate::args::parse_txid)]
    pub start_txid: TxId,
    /// Header timestamp of every file, in milliseconds since the Unix
    /// epoch (default: now).
    #[arg(long, value_name = "MS", allow_negative_numbers = true)]
    pub timestamp: Option<i64>,
    /// The wal-index to check the WAL against (default: DB-shm when the
    /// WAL is DB-wal).
    #[arg(long, value_name = "PATH", conflicts_with = "no_shm")]
    pub shm: Option<PathBuf>,
    /// Do not read a wal-index: encode the WAL whatever it says.
    #[arg(long)]
    pub no_shm: bool,
    /// Replace LTX files already in DIR (otherwise a DIR holding any is refused).
    #[arg(long)]
    pub force: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// `--checksum` / `--no-checksum`: whether the files track checksums.
    #[command(flatten)]
    pub checksum: crate::convention::ChecksumArg,
}

/// One file written.
#[derive(Serialize)]
struct FileJson {
    commit: u32,
    max_txid: String,
    min_txid: String,
    name: String,
    pages: u64,
    size: u64,
    wal_offset: i64,
    wal_size: i64,
}

#[derive(Serialize)]
struct EncodeJson {
    backfilled_transactions: u64,
    dir: String,
    files: Vec<FileJson>,
    no_checksum: bool,
    wal_end: String,
    wal_end_reason: &'static str,
    wal_valid_end: u64,
}

/// Length, modification time: whether a file changed while read.
fn stamp(p: &Path) -> Option<(u64, Option<std::time::SystemTime>)> {
    std::fs::metadata(p)
        .ok()
        .map(|m| (m.len(), m.modified().ok()))
}

/// A staging directory removed on drop unless emptied into its parent.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// fsyncs `paths`, many at once: concurrent fsyncs share the file
/// system's journal commits (2,000 small files: 0.4 s instead of 2.5 s one
/// after the other on ext4).
fn sync_all(paths: &[PathBuf]) -> Result<()> {
    const THREADS: usize = 16;
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..THREADS.min(paths.len()))
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(p) = paths.get(i) else {
                            return Ok(());
                        };
                        std::fs::File::open(p)
                            .and_then(|f| f.sync_all())
                            .with_context(|| format!("{}: cannot fsync", p.display()))?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("an fsync worker panicked"))
    })
}

/// The wal-index to check against, if any: `Ok(None)` when there is none
/// or it cannot be trusted (said on standard error).
fn read_shm(args: &Args, wal_path: &Path) -> Result<Option<ShmHeader>> {
    if args.no_shm {
        return Ok(None);
    }
    let path = match &args.shm {
        Some(p) => p.clone(),
        None if args.wal.is_none() || args.wal.as_deref() == Some(wal_path) => {
            db::side_file(&args.db, "-shm")
        }
        None => return Ok(None),
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.shm.is_none() => {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    match ShmHeader::parse(&bytes) {
        Ok(h) => Ok(Some(h)),
        Err(p) if args.shm.is_some() => bail!("{}: {p}", path.display()),
        Err(p) => {
            eprintln!("ltx: note: {} not used: {p}", path.display());
            Ok(None)
        }
    }
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let wal_path = args
        .wal
        .clone()
        .unwrap_or_else(|| db::side_file(&args.db, "-wal"));
    let (db_before, wal_before) = (stamp(&args.db), stamp(&wal_path));
    let image = DbImage::open(&args.db, false)?;
    // A missing default WAL means no transactions; a missing --wal is an error.
    let missing_ok = args.wal.is_none();
    let scan = super::scan_file(&wal_path, missing_ok)?;
    let wal_file = match std::fs::File::open(&wal_path) {
        Ok(f) => Some(f),
        Err(e) if missing_ok && e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("{}: cannot open", wal_path.display())),
    };
    let shm = read_shm(&args, &wal_path)?;

    // What belongs together.
    let page_size = match (image.page_size, scan.header) {
        (Some(d), Some(w)) if d != w.page_size => bail!(
            "{}: page size {} in the WAL header, but {} has page size {}: this WAL does not belong to this database",
            wal_path.display(),
            w.page_size,
            args.db.display(),
            d
        ),
        (Some(d), _) => d,
        (None, Some(w)) => w.page_size,
        (None, None) => bail!(
            "{}: the database is empty (0 bytes) and there is no valid WAL: nothing to encode",
            args.db.display()
        ),
    };
    let mut skip_until = 0u64;
    if let (Some(s), Some(h)) = (shm, scan.header) {
        if s.page_size.is_some_and(|p| p != page_size) {
            bail!(
                "{}: the wal-index says page size {}, the database and WAL {}: they do not belong together",
                args.db.display(),
                s.page_size.map_or(0, |p| p.get()),
                page_size
            );
        }
        if (s.salt1, s.salt2) != (h.salt1, h.salt2) && !scan.transactions.is_empty() {
            bail!(
                "{}: salts {:08x} {:08x}, but the database's wal-index (-shm) names the WAL with salts {:08x} {:08x}: \
                 this WAL is not the one the database's connections use (copied from elsewhere, or from another generation); \
                 --no-shm encodes it anyway",
                wal_path.display(),
                h.salt1,
                h.salt2,
                s.salt1,
                s.salt2
            );
        }
        if (s.salt1, s.salt2) == (h.salt1, h.salt2) && s.backfilled > 0 {
            skip_until =
                wal::WAL_HEADER_SIZE as u64 + u64::from(s.backfilled) * h.frame_size() as u64;
        }
    }
    let backfilled = scan
        .transactions
        .iter()
        .filter(|t| t.end() <= skip_until)
        .count() as u64;
    if backfilled > 0 {
        eprintln!(
            "ltx: note: the wal-index says a checkpoint copied the first {backfilled} transactions into {}: they are in the snapshot",
            args.db.display()
        );
    }
    let first_txn = scan.transactions.iter().find(|t| t.end() > skip_until);

    // Where the files go.
    let dir = &args.output;
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let existing: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".ltx"))
        .collect();
    if !existing.is_empty() && !args.force {
        bail!(
            "{}: already holds {} LTX files (e.g. {}); choose an empty directory, or --force to replace them",
            dir.display(),
            existing.len(),
            existing[0]
        );
    }
    let decision = args
        .checksum
        .decide(&dir.join(format_filename(TxId(1), args.start_txid)), false);
    if let Some(r) = &decision.reason {
        eprintln!("ltx: {r}");
    }
    let no_checksum = decision.no_checksum;
    let timestamp = args.timestamp.unwrap_or_else(encode::now_ms);
    let staging = Staging(dir.join(format!(".ltx-wal-encode-{}.tmp", std::process::id())));
    std::fs::create_dir_all(&staging.0)
        .with_context(|| format!("{}: cannot create", staging.0.display()))?;
    let mut files: Vec<FileJson> = Vec::new();
    let mut record = |name: String, h: &ltx_core::Header, pages: u64, size: u64| {
        files.push(FileJson {
            commit: h.commit,
            max_txid: output::hex16(h.max_txid.0),
            min_txid: output::hex16(h.min_txid.0),
            name,
            pages,
            size,
            wal_offset: h.wal_offset,
            wal_size: h.wal_size,
        });
    };

    // The snapshot: the database file as it is before the WAL (or, for an
    // empty database file, the WAL's first transaction, which writes
    // every page).
    let (db_pages, checksum, next) = if image.page_count() > 0 {
        let name = format_filename(TxId(1), args.start_txid);
        let dest = staging.0.join(&name);
        let opts = LtxOptions {
            txid: args.start_txid,
            timestamp,
            no_checksum,
        };
        let (tmp, w) = encode::snapshot_db(&image, &dest, &opts)?;
        std::fs::rename(tmp.path(), &dest)
            .with_context(|| format!("{}: cannot write", dest.display()))?;
        record(name, &w.header, w.pages, w.bytes);
        let sum = (!no_checksum).then_some(w.trailer.post_apply_checksum);
        (image.page_count(), sum, args.start_txid.0 + 1)
    } else {
        if first_txn.is_none() {
            bail!(
                "{}: the database is empty (0 bytes) and its WAL holds no committed transaction: nothing to encode",
                args.db.display()
            );
        }
        if args.start_txid != TxId(1) {
            bail!(
                "{}: the database file is empty, so the snapshot is the WAL's first transaction, which can only be TXID 1 (not {})",
                args.db.display(),
                args.start_txid
            );
        }
        (0, (!no_checksum).then_some(Checksum(0)), 1)
    };

    // One file per transaction after what is in the database file.
    let mut chain = LtxChain::new(page_size, db_pages, checksum, TxId(next));
    let psz = page_size.bytes();
    let db_bytes: &[u8] = &image.data;
    let mut buf = Vec::new();
    let pb = output::progress(true, Some(scan.end.valid_end), "encoding WAL");
    super::stream(&wal_path, missing_ok, WalReader::new(), |ev| {
        let WalEvent::Commit(txn) = ev else {
            return Ok(());
        };
        pb.set_position(txn.end());
        if txn.end() <= skip_until {
            return Ok(());
        }
        let wal_file = wal_file.as_ref().expect("a transaction was read from it");
        buf.clear();
        let done = chain
            .encode(
                txn,
                timestamp,
                |off, b: &mut [u8]| wal_file.read_exact_at(b, off),
                |pgno: Pgno, b: &mut [u8]| {
                    let off = (pgno as usize - 1) * psz;
                    b.copy_from_slice(&db_bytes[off..off + psz]);
                    Ok(())
                },
                &mut buf,
            )
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}: transaction {} at byte {}: {e}",
                    wal_path.display(),
                    txn.index,
                    txn.offset
                )
            })?;
        let name = format_filename(done.header.min_txid, done.header.max_txid);
        let dest = staging.0.join(&name);
        std::fs::write(&dest, &buf).with_context(|| format!("{}: cannot write", dest.display()))?;
        record(name, &done.header, u64::from(done.pages), buf.len() as u64);
        Ok(())
    })?;
    pb.finish_and_clear();

    // Nothing changed under us: then make the files durable and move them
    // into place.
    if stamp(&args.db) != db_before || stamp(&wal_path) != wal_before {
        bail!(
            "{} or {} changed while being encoded; nothing was written (copy both files first, or stop the writers)",
            args.db.display(),
            wal_path.display()
        );
    }
    let staged: Vec<PathBuf> = files.iter().map(|f| staging.0.join(&f.name)).collect();
    sync_all(&staged)?;
    for f in &files {
        std::fs::rename(staging.0.join(&f.name), dir.join(&f.name))
            .with_context(|| format!("{}: cannot move into place", dir.join(&f.name).display()))?;
    }
    ltx_compactor::atomic::sync_dir(dir)?;
    drop(staging);

    let end = &scan.end;
    if args.json {
        return output::write_json(
            out,
            &EncodeJson {
                backfilled_transactions: backfilled,
                dir: dir.display().to_string(),
                files,
                no_checksum,
                wal_end: end.reason.to_string(),
                wal_end_reason: end.reason.name(),
                wal_valid_end: end.valid_end,
            },
        );
    }
    let snapshot = &files[0];
    writeln!(
        out,
        "wrote {}: snapshot {} ({} pages of {} bytes, commit {}), {} transaction files{}{}",
        dir.display(),
        snapshot.name,
        snapshot.pages,
        page_size,
        snapshot.commit,
        files.len() - 1,
        match files.last() {
            Some(l) if files.len() > 1 => format!(" through {}", l.name),
            _ => String::new(),
        },
        if no_checksum { ", NoChecksum" } else { "" }
    )?;
    writeln!(out, "WAL {}: {end}", wal_path.display())?;
    Ok(())
}
