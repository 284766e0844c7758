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
//!    incrementally from one checksum per page (ltx_core's `PageChecksums`,
//!    8 bytes a page, computed once from the database): each written page
//!    replaces its page's checksum, truncated pages drop out, zero pages from
//!    an extension come in; no page is read back.
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
use ltx_core::checksum::{page_checksum, PageChecksums};
use ltx_core::file::FrameCheck;
use ltx_core::old::for_each_page;
use ltx_core::{Checksum, FormatVersion, Header, LtxFile, PageSize, Pgno, Summary, TxId};
use rayon::prelude::*;

use crate::db::{self, DbImage, TempFile};
use crate::input::Source;
use crate::version::VersionArg;
use crate::Failed;

/// The most pages a file may add to the database without holding them
/// (zero pages): 4 GiB of 4 KiB pages. Real files hold every page they add.
const MAX_ZERO_PAGES: u64 = 1 << 20;

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
    /// `--format-version`: read the inputs as this LTX format version.
    #[command(flatten)]
    pub version: VersionArg,
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
    let o = apply_with(&args.db, &files, args.version.forced(), out)?;
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

/// A file the database cannot take, though it decodes (exit code 1).
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

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
    apply_with(db_path, files, None, out)
}

/// One input: a v3 file (random access, parallel), or a v1/v2 file decoded
/// sequentially (already verified once by detection).
enum Parsed<'a> {
    V3(LtxFile<'a>),
    Old {
        version: FormatVersion,
        bytes: &'a [u8],
        summary: Summary,
    },
}

impl Parsed<'_> {
    fn header(&self) -> &Header {
        match self {
            Parsed::V3(f) => f.header(),
            Parsed::Old { summary, .. } => &summary.header,
        }
    }
    fn page_count(&self) -> u64 {
        match self {
            Parsed::V3(f) => f.index().len() as u64,
            Parsed::Old { summary, .. } => summary.page_count,
        }
    }
}

/// As [`apply`]; `forced` reads every file as that format version (else each
/// file's version is detected: v1 and v2 files are those their decoders
/// validate, anything else is read as v3).
///
/// # Errors
/// As [`apply`].
pub fn apply_with(
    db_path: &Path,
    files: &[PathBuf],
    forced: Option<FormatVersion>,
    out: &mut dyn Write,
) -> Result<Outcome> {
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
    let parsed = parse_all(db_path, files, &sources, forced)?;
    let headers: Vec<Header> = parsed.iter().map(|p| *p.header()).collect();
    check_sequence(db_path, files, &headers)?;
    let image = DbImage::open(db_path, true)?;
    let first = headers[0];
    let ps = first.page_size;
    check_fits(db_path, &files[0], &first, &image)?;

    // 2. Work on a copy beside the database.
    let (tmp, mut state) = start_copy(db_path, &first, image)?;
    let total: u64 = parsed.iter().map(|p| p.page_count()).sum();
    let pb = crate::progress::pages(total, "applying");
    for (f, file) in files.iter().zip(&parsed) {
        apply_one(db_path, f, file, &mut state, &tmp, &pb, out)?;
    }
    pb.finish_and_clear();

    // 3. Make it durable and atomic.
    tmp.commit(db_path)?;
    let last = *headers.last().expect("non-empty");
    Ok(Outcome {
        txid: last.max_txid,
        commit: state.pages(),
        page_size: ps,
        checksum: state.value(),
    })
}

/// Parses every input (detecting v1 and v2 files, verified whole by
/// detection; v3 files are only parsed here, their frames verified as they
/// are applied).
fn parse_all<'a>(
    db_path: &Path,
    files: &[PathBuf],
    sources: &'a [Source],
    forced: Option<FormatVersion>,
) -> Result<Vec<Parsed<'a>>> {
    let mut parsed: Vec<Parsed<'_>> = Vec::with_capacity(files.len());
    for (f, src) in files.iter().zip(sources) {
        if let Some((version, r)) = crate::version::old_version(src, forced) {
            match r {
                Ok(summary) => {
                    parsed.push(Parsed::Old {
                        version,
                        bytes: src,
                        summary,
                    });
                    continue;
                }
                Err(e) => {
                    return Err(fail(
                        db_path,
                        format!(
                            "{}: verification failed: {e} (read as format {version})",
                            f.display()
                        ),
                    ))
                }
            }
        }
        match LtxFile::parse(src) {
            Ok(p) => parsed.push(Parsed::V3(p)),
            Err(_) => {
                // Name what every layout found (the likeliest first).
                let msg = match crate::version::detect(src, forced) {
                    Ok(d) => d
                        .error_message()
                        .unwrap_or_else(|| "cannot parse".to_string()),
                    Err(e) => format!("{e:#}"),
                };
                return Err(fail(
                    db_path,
                    format!("{}: verification failed: {msg}", f.display()),
                ));
            }
        }
    }
    Ok(parsed)
}

/// The files' headers make one chain: sizes SQLite can hold, one page
/// size, each file starting right after the one before.
fn check_sequence(db_path: &Path, files: &[PathBuf], headers: &[Header]) -> Result<()> {
    // SQLite databases hold at most 4294967294 pages; a file claiming more
    // cannot describe a database (and would make us extend it to 16 TiB).
    const SQLITE_MAX_PAGES: u32 = 4_294_967_294;
    for (f, h) in files.iter().zip(headers) {
        if h.commit > SQLITE_MAX_PAGES {
            return Err(fail(
                db_path,
                format!(
                    "{}: commit of {} pages exceeds SQLite's maximum of {SQLITE_MAX_PAGES}",
                    f.display(),
                    h.commit
                ),
            ));
        }
    }
    for i in 1..files.len() {
        let (p, n) = (&headers[i - 1], &headers[i]);
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
    Ok(())
}

/// The first file (`first`, at `file`) can apply to the database `image`:
/// a snapshot always; an incremental file needs a database (unless it
/// tracks checksums: its pre-apply checksum is checked later) of its page
/// size.
fn check_fits(db_path: &Path, file: &Path, first: &Header, image: &DbImage) -> Result<()> {
    if first.is_snapshot() {
        return Ok(());
    }
    match image.page_size {
        None if first.no_checksum() => Err(fail(
            db_path,
            format!(
                "{}: the database is empty, so the first file must be a snapshot (min TXID 1), not TXID {}-{}",
                file.display(),
                first.min_txid,
                first.max_txid
            ),
        )),
        Some(dps) if dps != first.page_size => Err(fail(
            db_path,
            format!(
                "{}: page size {} but the database has {}-byte pages",
                file.display(),
                first.page_size,
                dps
            ),
        )),
        _ => Ok(()),
    }
}

/// The temporary copy beside the database to apply to (empty for a
/// snapshot), with its page checksums.
fn start_copy(db_path: &Path, first: &Header, image: DbImage) -> Result<(TempFile, State)> {
    let ps = first.page_size;
    let tmp = TempFile::beside(db_path, "apply")?;
    let (state, copy_from) = if first.is_snapshot() {
        (State::empty(ps), None)
    } else {
        let state = State::of_image(&image, ps);
        let pages = state.pages();
        (state, (pages > 0).then_some(&image))
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
    Ok((tmp, state))
}

/// Applies one file (`f`) to the copy: its pre-apply checksum against the
/// database, its pages, its post-apply checksum; then one line to `out`.
fn apply_one(
    db_path: &Path,
    f: &Path,
    file: &Parsed<'_>,
    state: &mut State,
    tmp: &TempFile,
    pb: &indicatif::ProgressBar,
    out: &mut dyn Write,
) -> Result<()> {
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
    let applied = match file {
        Parsed::V3(file) => state.apply_file(tmp.file(), file, pb),
        Parsed::Old { version, bytes, .. } => state.apply_old(tmp.file(), bytes, *version, pb),
    };
    let summary = match applied {
        Ok(s) => s,
        Err(e) => {
            if let Some(Refused(why)) = e.downcast_ref::<Refused>() {
                return Err(fail(db_path, format!("{}: refused: {why}", f.display())));
            }
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
            });
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
        file.page_count(),
        h.commit,
        cur,
        if h.no_checksum() {
            " (file has no checksums)"
        } else {
            ""
        }
    )?;
    Ok(())
}

/// The database copy being updated: its size and page checksums.
struct State {
    ps: PageSize,
    sums: PageChecksums,
}

impl State {
    fn empty(ps: PageSize) -> State {
        State {
            ps,
            sums: PageChecksums::new(ps),
        }
    }

    /// An existing database: every page's checksum, computed in parallel.
    fn of_image(image: &DbImage, ps: PageSize) -> State {
        let per_page: Vec<Checksum> = image
            .data
            .par_chunks(ps.bytes())
            .with_min_len(256)
            .enumerate()
            .map(|(i, page)| page_checksum(i as Pgno + 1, page))
            .collect();
        let mut sums = PageChecksums::new(ps);
        sums.resize(per_page.len() as u32);
        for (i, c) in per_page.into_iter().enumerate() {
            sums.set(i as Pgno + 1, c).expect("within the database");
        }
        State { ps, sums }
    }

    /// The database size in pages.
    fn pages(&self) -> u32 {
        self.sums.page_count()
    }

    fn value(&self) -> Checksum {
        self.sums.value()
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
            self.sums.clear();
        }
        let entries = file.index().entries();
        let psz = self.ps.bytes();
        let cur = self.pages();
        let ps64 = u64::from(self.ps.get());
        let off = move |p: Pgno| u64::from(p - 1) * ps64;
        let starts: Vec<usize> = (0..entries.len()).step_by(TASK_FRAMES).collect();
        type Part = (Vec<FrameCheck>, Vec<(Pgno, Checksum)>);
        let parts: Vec<Result<Part>> = starts
            .par_iter()
            .map(|&start| -> Result<Part> {
                let chunk = &entries[start..(start + TASK_FRAMES).min(entries.len())];
                let mut buf = vec![0u8; chunk.len() * psz];
                let mut checks = Vec::with_capacity(chunk.len());
                let mut sums = Vec::with_capacity(chunk.len());
                for (k, (e, page)) in chunk.iter().zip(buf.chunks_mut(psz)).enumerate() {
                    let c = file.check_frame(start + k, page)?;
                    let sum = c
                        .page_checksum
                        .unwrap_or_else(|| page_checksum(e.pgno, page));
                    sums.push((e.pgno, sum));
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
                Ok((checks, sums))
            })
            .collect();
        // Report the earliest failure, whichever thread found it first.
        let parts: Vec<Part> = parts.into_iter().collect::<Result<_>>()?;
        let mut written = Vec::with_capacity(entries.len());
        let summary = file.combine(parts.into_iter().flat_map(|(c, sums)| {
            written.extend(sums);
            c
        }))?;
        self.resize(db, h.commit, cur, &written)?;
        Ok(summary)
    }

    /// Verifies and writes every page of a v1 or v2 file (decoded in order),
    /// then truncates or extends to its commit, like [`State::apply_file`].
    fn apply_old(
        &mut self,
        db: &File,
        bytes: &[u8],
        version: FormatVersion,
        pb: &indicatif::ProgressBar,
    ) -> Result<Summary> {
        let h = Header::decode_as(bytes, version)?;
        if h.page_size != self.ps {
            bail!(
                "page size {} but the database has {}-byte pages",
                h.page_size,
                self.ps
            );
        }
        if h.is_snapshot() {
            db.set_len(0)?;
            self.sums.clear();
        }
        let cur = self.pages();
        let ps64 = u64::from(self.ps.get());
        let mut written: Vec<(Pgno, Checksum)> = Vec::new();
        let mut io_err: Option<anyhow::Error> = None;
        let r = for_each_page(bytes, version, |info, page| {
            let p = info.pgno;
            let off = u64::from(p - 1) * ps64;
            let step = db
                .write_all_at(page, off)
                .with_context(|| format!("writing page {p}"));
            written.push((p, page_checksum(p, page)));
            pb.inc(1);
            match step {
                Ok(()) => Ok(()),
                Err(e) => {
                    io_err = Some(e);
                    Err(ltx_core::Error::new(ltx_core::ErrorKind::Misuse(
                        "I/O error",
                    )))
                }
            }
        });
        if let Some(e) = io_err {
            return Err(e);
        }
        let summary = r?;
        self.resize(db, summary.header.commit, cur, &written)?;
        Ok(summary)
    }

    /// After a file's pages were written over a database of `cur` pages:
    /// truncates or extends it to `commit` pages, and gives the file's pages
    /// (`written`: page numbers, ascending, with their checksums) and the zero
    /// pages of an extension their checksums.
    fn resize(
        &mut self,
        db: &File,
        commit: u32,
        cur: u32,
        written: &[(Pgno, Checksum)],
    ) -> Result<()> {
        let psz = self.ps.bytes();
        // Bound what the header claims before allocating for it: a file
        // may grow the database with pages it does not hold (they are
        // zeros), but more than `MAX_ZERO_PAGES` of them is refused, so
        // the checksum state (8 bytes a page) stays bounded by the pages
        // files actually hold.
        if commit > cur {
            let held = written.iter().filter(|(p, _)| *p > cur).count() as u64;
            let zeros = u64::from(commit - cur).saturating_sub(held);
            if zeros > MAX_ZERO_PAGES {
                return Err(Refused(format!(
                    "it grows the database from {cur} to {commit} pages but holds only {held} of the new pages: {zeros} zero pages is more than the {MAX_ZERO_PAGES} accepted"
                ))
                .into());
            }
        }
        // Pages above the new end drop out (none was just written: pgno <= commit).
        self.sums.resize(commit);
        for &(p, c) in written {
            self.sums.set(p, c)?;
        }
        if commit > cur {
            // Extension: pages above the old end that the file did not write are zeros.
            let zeros = vec![0u8; psz];
            let sums = &self.sums;
            let added: Vec<(Pgno, Checksum)> = ((cur + 1)..=commit)
                .into_par_iter()
                .filter(|&p| p != self.ps.lock_pgno() && sums.get(p).is_none())
                .map(|p| (p, page_checksum(p, &zeros)))
                .collect();
            for (p, c) in added {
                self.sums.set(p, c)?;
            }
        }
        db.set_len(u64::from(commit) * psz as u64)?;
        Ok(())
    }
}
