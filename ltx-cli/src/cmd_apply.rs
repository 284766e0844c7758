//! `ltx apply --db PATH FILES…`: apply LTX files to a SQLite database, in
//! order, atomically.
//!
//! 1. Every file's structure (header, page index, trailer layout) and the
//!    list as a chain (same page size, `next.min_txid == prev.max_txid + 1`,
//!    a snapshot first when the database is empty) are checked before
//!    anything is written.
//! 2. The work happens on a copy beside the database
//!    (`.<name>.ltx-apply-<pid>.tmp`; a snapshot first in the list starts
//!    from an empty file instead). Per file: the database's rolling checksum
//!    must equal the pre-apply checksum (unless NoChecksum), pages are
//!    decoded, verified and written in parallel, the whole file is verified
//!    (file checksum, snapshot post-apply checksum: everything `ltx verify`
//!    checks) before the next one, the file is truncated or extended to
//!    `commit` pages, and the new checksum must equal the post-apply
//!    checksum (unless NoChecksum). The checksum is kept up to date
//!    incrementally: each written page XORs out its old content and XORs in
//!    the new, truncated pages are XORed out, zero pages from an extension
//!    XORed in.
//! 3. The copy is fsynced, renamed over the database, and the directory
//!    fsynced. On any error, or if the process dies at any point, the
//!    database is exactly as before.
//!
//! A database in use is refused: a `-wal` file that is not empty, or a hot
//! rollback journal.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ltx_core::checksum::page_checksum;
use ltx_core::file::FrameCheck;
use ltx_core::types::CHECKSUM_FLAG;
use ltx_core::{Checksum, Header, LtxFile, PageSize, Pgno, Summary, TxId};
use rayon::prelude::*;

use crate::db::{self, DbImage, TempFile};
use crate::input::Source;
use crate::Failed;

/// Frames per rayon task when applying.
const TASK_FRAMES: usize = 64;

/// Arguments of `ltx apply`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Every file is verified and the list checked as a chain (contiguous TXIDs, \
pre-/post-apply checksums unless NoChecksum). The work is done on a copy beside the database, \
which replaces it (fsync, rename) only when everything succeeded: on any error the database is \
unchanged. A database with a non-empty -wal file or a hot journal is refused.

Exit codes: 0 applied; 1 a file failed verification or does not fit the chain/database; 2 usage or I/O error.

Examples:
  ltx apply --db restored.db 0000000000000001-0000000000000001.ltx 0000000000000002-0000000000000002.ltx
  ltx apply --db restored.db replica/ltx/0/"
)]
pub struct Args {
    /// The SQLite database to update (created from a snapshot if missing).
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    /// LTX files to apply, in this order (a directory stands for its `*.ltx` files in TXID order).
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
}

/// The result of a successful apply.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Max TXID of the last file.
    pub txid: TxId,
    /// Database size in pages.
    pub commit: u32,
    /// Page size.
    pub page_size: PageSize,
    /// The rolling checksum of the new database.
    pub checksum: Checksum,
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let files = expand(&args.files)?;
    let o = apply(&args.db, &files, out)?;
    writeln!(
        out,
        "{}: TXID {}, commit {} pages ({} bytes), checksum {}",
        args.db.display(),
        o.txid,
        o.commit,
        u64::from(o.commit) * u64::from(o.page_size.get()),
        o.checksum
    )?;
    Ok(())
}

/// Command-line paths to files, in the order given; a directory becomes its
/// `*.ltx` files sorted by level and TXID.
fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut v = Vec::new();
    for p in paths {
        if p.is_dir() {
            v.extend(
                crate::input::expand(std::slice::from_ref(p))?
                    .into_iter()
                    .map(|l| l.path),
            );
        } else {
            v.push(p.clone());
        }
    }
    Ok(v)
}

/// Reports a verification failure (exit code 1): prints it to standard
/// error and says the database was left alone.
fn fail(db: &Path, msg: String) -> anyhow::Error {
    eprintln!("ltx: apply: {msg}");
    eprintln!("ltx: apply: {} left unchanged", db.display());
    Failed.into()
}

/// Applies `files` to the database at `db_path`, atomically. Prints one line
/// per applied file to `out`.
///
/// # Errors
/// [`Failed`] when a file fails verification, the chain is broken or a
/// checksum does not match; other errors for I/O problems and a database
/// that is in use (WAL frames, hot journal). The database is unchanged
/// after any error.
pub fn apply(db_path: &Path, files: &[PathBuf], out: &mut dyn Write) -> Result<Outcome> {
    if files.is_empty() {
        bail!("no LTX files to apply");
    }
    // Apply to the real file behind a symlink, not over the link.
    let db_path = match std::fs::canonicalize(db_path) {
        Ok(p) => p,
        Err(_) => db_path.to_path_buf(),
    };
    let db_path = db_path.as_path();
    db::check_replaceable(db_path)?;

    // 1. Read every file and check its structure (header, page index,
    //    trailer layout) and the chain before touching anything. The frames
    //    are verified as they are decoded in step 2, and each file's checksum
    //    before the next file is applied: every byte is checked before the
    //    result replaces the database.
    let mut sources: Vec<Source> = Vec::with_capacity(files.len());
    for f in files {
        sources.push(if f.as_os_str() == "-" {
            crate::input::read_stdin()?
        } else {
            crate::input::open(f)?
        });
    }
    let mut parsed: Vec<LtxFile<'_>> = Vec::with_capacity(files.len());
    for (f, src) in files.iter().zip(&sources) {
        match LtxFile::parse(src) {
            Ok(p) => parsed.push(p),
            Err(_) => {
                // The streaming decoder names the first bad byte.
                let e = crate::check::verify_bytes(src)
                    .err()
                    .map_or_else(|| "cannot parse".to_string(), |e| e.to_string());
                return Err(fail(
                    db_path,
                    format!("{}: verification failed: {e}", f.display()),
                ));
            }
        }
    }
    let summaries: Vec<Header> = parsed.iter().map(|p| *p.header()).collect();
    for i in 1..files.len() {
        let (p, n) = (&summaries[i - 1], &summaries[i]);
        if n.page_size != p.page_size {
            return Err(fail(
                db_path,
                format!(
                    "{}: page size {} differs from {} in {}",
                    files[i].display(),
                    n.page_size,
                    p.page_size,
                    files[i - 1].display()
                ),
            ));
        }
        if n.min_txid.0 != p.max_txid.0.wrapping_add(1) {
            return Err(fail(
                db_path,
                format!(
                    "{} (TXID {}-{}) does not follow {} (TXID {}-{}): expected min TXID {}",
                    files[i].display(),
                    n.min_txid,
                    n.max_txid,
                    files[i - 1].display(),
                    p.min_txid,
                    p.max_txid,
                    TxId(p.max_txid.0.wrapping_add(1))
                ),
            ));
        }
    }

    let image = DbImage::open(db_path, true)?;
    let first = summaries[0];
    let ps = first.page_size;
    if !first.is_snapshot() {
        match image.page_size {
            None if first.no_checksum() => {
                return Err(fail(
                    db_path,
                    format!(
                        "{}: the database is empty, so the first file must be a snapshot (min TXID 1), not TXID {}-{}",
                        files[0].display(),
                        first.min_txid,
                        first.max_txid
                    ),
                ))
            }
            Some(dps) if dps != ps => {
                return Err(fail(
                    db_path,
                    format!(
                        "{}: page size {} but the database has {}-byte pages",
                        files[0].display(),
                        ps,
                        dps
                    ),
                ))
            }
            _ => {}
        }
    }

    // 2. Work on a copy beside the database.
    let tmp = TempFile::beside(db_path, "apply")?;
    let (mut state, copy_from) = if first.is_snapshot() {
        (State::empty(ps), None)
    } else {
        let pages = image.page_count();
        let acc = image.checksum().0;
        (State { ps, pages, acc }, (pages > 0).then_some(&image))
    };
    if let Some(img) = copy_from {
        let mut src =
            File::open(db_path).with_context(|| format!("{}: cannot open", db_path.display()))?;
        std::io::copy(&mut src, &mut tmp.file())
            .with_context(|| format!("{}: cannot copy the database", tmp.path().display()))?;
        debug_assert_eq!(tmp.file().metadata()?.len(), img.data.len() as u64);
    }
    if let Ok(m) = std::fs::metadata(db_path) {
        let _ = std::fs::set_permissions(tmp.path(), m.permissions());
    }
    drop(image);

    let total: u64 = parsed.iter().map(|p| p.index().len() as u64).sum();
    let pb = crate::progress::pages(total, "applying");
    for (f, file) in files.iter().zip(&parsed) {
        let h = *file.header();
        if !h.no_checksum() && !h.is_snapshot() {
            let cur = state.value();
            if !db::same_checksum(cur, h.pre_apply_checksum) {
                return Err(fail(
                    db_path,
                    format!(
                        "{}: pre-apply checksum mismatch: the file expects the database at {}, it is at {}",
                        f.display(),
                        h.pre_apply_checksum,
                        cur
                    ),
                ));
            }
        }
        let summary = match state.apply_file(tmp.file(), file, &pb) {
            Ok(s) => s,
            Err(e) => {
                return Err(match e.downcast::<ltx_core::Error>() {
                    Ok(bad) => fail(
                        db_path,
                        format!("{}: verification failed: {bad}", f.display()),
                    ),
                    Err(io) => io.context(format!(
                        "{}: applying to {}",
                        f.display(),
                        tmp.path().display()
                    )),
                })
            }
        };
        let cur = state.value();
        if !h.no_checksum() && !db::same_checksum(cur, summary.trailer.post_apply_checksum) {
            return Err(fail(
                db_path,
                format!(
                    "{}: post-apply checksum mismatch: the file says the database ends at {}, it is at {}",
                    f.display(),
                    summary.trailer.post_apply_checksum,
                    cur
                ),
            ));
        }
        writeln!(
            out,
            "applied {}: TXID {}-{}, {} pages, commit {}, checksum {}{}",
            f.display(),
            h.min_txid,
            h.max_txid,
            file.index().len(),
            h.commit,
            cur,
            if h.no_checksum() {
                " (file has no checksums)"
            } else {
                ""
            }
        )?;
    }
    pb.finish_and_clear();

    // 3. Make it durable and atomic.
    tmp.commit(db_path)?;
    let last = *summaries.last().expect("non-empty");
    Ok(Outcome {
        txid: last.max_txid,
        commit: state.pages,
        page_size: ps,
        checksum: state.value(),
    })
}

/// The database copy being updated: its size and rolling checksum.
struct State {
    ps: PageSize,
    pages: u32,
    /// XOR of the page checksums (bit 63 meaningless until `value`).
    acc: u64,
}

impl State {
    fn empty(ps: PageSize) -> State {
        State {
            ps,
            pages: 0,
            acc: 0,
        }
    }

    fn value(&self) -> Checksum {
        if self.pages == 0 {
            Checksum(0)
        } else {
            Checksum(self.acc | CHECKSUM_FLAG)
        }
    }

    /// Verifies and writes every page of `file`, then truncates or extends
    /// to its commit, keeping the checksum up to date. Returns the file's
    /// verification summary.
    ///
    /// # Errors
    /// A bare [`ltx_core::Error`] when the file fails verification; other
    /// errors for I/O.
    fn apply_file(
        &mut self,
        db: &File,
        file: &LtxFile<'_>,
        pb: &indicatif::ProgressBar,
    ) -> Result<Summary> {
        let h = file.header();
        if h.page_size != self.ps {
            bail!(
                "page size {} but the database has {}-byte pages",
                h.page_size,
                self.ps
            );
        }
        if h.is_snapshot() {
            // A snapshot replaces everything: start from an empty file.
            db.set_len(0)?;
            self.pages = 0;
            self.acc = 0;
        }
        let entries = file.index().entries();
        let psz = self.ps.bytes();
        let cur = self.pages;
        let ps64 = u64::from(self.ps.get());
        let off = move |p: Pgno| u64::from(p - 1) * ps64;
        let starts: Vec<usize> = (0..entries.len()).step_by(TASK_FRAMES).collect();
        let parts: Vec<Result<(Vec<FrameCheck>, u64)>> = starts
            .par_iter()
            .map(|&start| -> Result<(Vec<FrameCheck>, u64)> {
                let chunk = &entries[start..(start + TASK_FRAMES).min(entries.len())];
                let mut buf = vec![0u8; chunk.len() * psz];
                let mut old = vec![0u8; psz];
                let mut checks = Vec::with_capacity(chunk.len());
                let mut x = 0u64;
                for (k, (e, page)) in chunk.iter().zip(buf.chunks_mut(psz)).enumerate() {
                    let c = file.check_frame(start + k, page)?;
                    x ^= c
                        .page_checksum
                        .unwrap_or_else(|| page_checksum(e.pgno, page))
                        .0;
                    if e.pgno <= cur {
                        db.read_exact_at(&mut old, off(e.pgno))
                            .with_context(|| format!("reading page {}", e.pgno))?;
                        x ^= page_checksum(e.pgno, &old).0;
                    }
                    checks.push(c);
                }
                // Write runs of consecutive pages with one call each.
                let mut i = 0;
                while i < chunk.len() {
                    let mut j = i + 1;
                    while j < chunk.len() && chunk[j].pgno == chunk[j - 1].pgno + 1 {
                        j += 1;
                    }
                    db.write_all_at(&buf[i * psz..j * psz], off(chunk[i].pgno))
                        .with_context(|| {
                            format!("writing pages {}-{}", chunk[i].pgno, chunk[j - 1].pgno)
                        })?;
                    i = j;
                }
                pb.inc(chunk.len() as u64);
                Ok((checks, x))
            })
            .collect();
        // Report the earliest failure, whichever thread found it first.
        let parts: Vec<(Vec<FrameCheck>, u64)> = parts.into_iter().collect::<Result<_>>()?;
        let mut delta = 0u64;
        let summary = file.combine(parts.into_iter().flat_map(|(c, x)| {
            delta ^= x;
            c
        }))?;
        self.acc ^= delta;

        let commit = h.commit;
        let lock = self.ps.lock_pgno();
        if commit < cur {
            // Truncation: XOR out the pages that go (none was just written: pgno <= commit).
            let gone = ((commit + 1)..=cur)
                .into_par_iter()
                .filter(|&p| p != lock)
                .map_init(
                    || vec![0u8; psz],
                    |old, p| -> Result<u64> {
                        db.read_exact_at(old, off(p))
                            .with_context(|| format!("reading page {p}"))?;
                        Ok(page_checksum(p, old).0)
                    },
                )
                .try_reduce(|| 0, |a, b| Ok(a ^ b))?;
            self.acc ^= gone;
        } else if commit > cur {
            // Extension: pages above the old end that the file did not write are zeros.
            let first_new = entries.partition_point(|e| e.pgno <= cur);
            let written = &entries[first_new..];
            let zeros = vec![0u8; psz];
            let added = ((cur + 1)..=commit)
                .into_par_iter()
                .filter(|&p| p != lock && written.binary_search_by_key(&p, |e| e.pgno).is_err())
                .map(|p| page_checksum(p, &zeros).0)
                .reduce(|| 0, |a, b| a ^ b);
            self.acc ^= added;
        }
        db.set_len(u64::from(commit) * psz as u64)?;
        self.pages = commit;
        Ok(summary)
    }
}
