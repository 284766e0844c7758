//! SQLite database files: header fields, page images, liveness checks (WAL
//! frames, hot journals), the rolling checksum in parallel, atomic
//! replacement (temp file beside the target, fsync, rename, fsync directory),
//! SQLite's own checks of a restored file ([`IntegrityCheck`]) and the
//! temporary files a killed restore or follower leaves.
//!
//! ```text
//! SQLite header (first 100 bytes of page 1)
//!   0..16   "SQLite format 3\0"
//!   16..18  page size, u16 big-endian (1 means 65536)
//!   28..32  in-header database size in pages (valid when 24..28 == 92..96)
//! ```

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use ltx_core::checksum::DbChecksum;
use ltx_core::{Checksum, PageSize, Pgno};
use rayon::prelude::*;

use crate::input::Source;

/// The 16 bytes every SQLite database file starts with.
pub const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Size of the SQLite database header.
pub const SQLITE_HEADER_SIZE: usize = 100;
/// Size of a WAL file header; a `-wal` file longer than this holds frames.
pub const WAL_HEADER_SIZE: u64 = 32;
/// Pages per rayon task when hashing or comparing whole databases.
const PAGES_PER_TASK: usize = 256;

/// Whether `b` starts like a SQLite database file.
pub fn is_sqlite(b: &[u8]) -> bool {
    b.starts_with(SQLITE_MAGIC)
}

/// The page size stored in a SQLite header (bytes 16..18 big-endian, 1 = 65536).
///
/// # Errors
/// A header shorter than 100 bytes, a bad magic, or an invalid page size.
pub fn page_size_from_header(b: &[u8]) -> Result<PageSize> {
    if b.len() < SQLITE_HEADER_SIZE {
        bail!(
            "file is {} bytes, shorter than the 100-byte SQLite header",
            b.len()
        );
    }
    if !is_sqlite(b) {
        bail!("bytes 0..16 are not the SQLite magic \"SQLite format 3\\0\"");
    }
    let raw = u16::from_be_bytes([b[16], b[17]]);
    let v = if raw == 1 { 65536 } else { u32::from(raw) };
    PageSize::new(v).with_context(|| {
        format!("header bytes 16..18 give page size {v}, expected a power of two in 512..=65536")
    })
}

/// The in-header database size (bytes 28..32), when SQLite considers it
/// valid (non-zero, and the change counter at 24..28 equals the
/// version-valid-for number at 92..96).
pub fn header_page_count(b: &[u8]) -> Option<u32> {
    if b.len() < SQLITE_HEADER_SIZE {
        return None;
    }
    let n = u32::from_be_bytes(b[28..32].try_into().unwrap());
    (n != 0 && b[24..28] == b[92..96]).then_some(n)
}

/// A SQLite database file mapped read-only.
pub struct DbImage {
    /// Where it is.
    pub path: PathBuf,
    /// The bytes (empty for a missing or zero-length file).
    pub data: Source,
    /// The page size, `None` for an empty database.
    pub page_size: Option<PageSize>,
}

impl DbImage {
    /// Maps `path` and reads its header. A missing file is an error unless
    /// `missing_ok`, in which case it is an empty database.
    ///
    /// # Errors
    /// I/O errors; a file that is not SQLite, has a bad page size, or whose
    /// length is not a whole number of pages.
    pub fn open(path: &Path, missing_ok: bool) -> Result<DbImage> {
        if missing_ok && !path.exists() {
            return Ok(DbImage {
                path: path.to_path_buf(),
                data: Source::Bytes(Vec::new()),
                page_size: None,
            });
        }
        let data = crate::input::open(path)?;
        Self::from_source(path, data)
    }

    /// Wraps bytes already read from `path`.
    ///
    /// # Errors
    /// As [`DbImage::open`].
    pub fn from_source(path: &Path, data: Source) -> Result<DbImage> {
        if data.is_empty() {
            return Ok(DbImage {
                path: path.to_path_buf(),
                data,
                page_size: None,
            });
        }
        let ps = page_size_from_header(&data)
            .with_context(|| format!("{}: not a SQLite database", path.display()))?;
        if !data.len().is_multiple_of(ps.bytes()) {
            bail!(
                "{}: size {} bytes is not a whole number of {}-byte pages (a torn or foreign file)",
                path.display(),
                data.len(),
                ps
            );
        }
        let pages = data.len() / ps.bytes();
        if pages > u32::MAX as usize {
            bail!(
                "{}: {pages} pages exceed the 32-bit page number range",
                path.display()
            );
        }
        if let Some(n) = header_page_count(&data) {
            if n as usize != pages {
                eprintln!(
                    "ltx: warning: {}: the SQLite header says {n} pages but the file holds {pages}; using the file size",
                    path.display()
                );
            }
        }
        Ok(DbImage {
            path: path.to_path_buf(),
            data,
            page_size: Some(ps),
        })
    }

    /// Number of pages (0 for an empty database).
    pub fn page_count(&self) -> u32 {
        match self.page_size {
            Some(ps) => (self.data.len() / ps.bytes()) as u32,
            None => 0,
        }
    }

    /// Page `pgno` (1-based); `None` beyond the end.
    pub fn page(&self, pgno: Pgno) -> Option<&[u8]> {
        let ps = self.page_size?.bytes();
        let start = (pgno as usize).checked_sub(1)? * ps;
        self.data.get(start..start + ps)
    }

    /// The rolling checksum of the whole database (0 when empty), in parallel.
    pub fn checksum(&self) -> Checksum {
        match self.page_size {
            Some(ps) => checksum(&self.data, ps),
            None => Checksum(0),
        }
    }
}

/// The rolling checksum of a database image (`data.len()` a multiple of the
/// page size), computed in parallel. Same value as
/// `ltx_core::checksum::database_checksum`.
pub fn checksum(data: &[u8], ps: PageSize) -> Checksum {
    let chunk = ps.bytes() * PAGES_PER_TASK;
    data.par_chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut sum = DbChecksum::new(ps);
            let first = (i * PAGES_PER_TASK) as Pgno + 1;
            for (j, page) in c.chunks(ps.bytes()).enumerate() {
                sum.add(first + j as Pgno, page);
            }
            sum
        })
        .reduce(
            || DbChecksum::new(ps),
            |mut a, b| {
                a.merge(&b);
                a
            },
        )
        .value()
}

/// Whether checksums `a` and `b` describe the same database, treating the
/// empty database's 0 and the `8000000000000000` that files store for it as
/// equal.
pub fn same_checksum(a: Checksum, b: Checksum) -> bool {
    let norm = |c: Checksum| {
        if c.0 == 0 {
            ltx_core::types::CHECKSUM_FLAG
        } else {
            c.0
        }
    };
    norm(a) == norm(b)
}

/// The path of a SQLite side file (`-wal`, `-journal`, `-shm`).
pub fn side_file(db: &Path, suffix: &str) -> PathBuf {
    let mut s = db.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Refuses a database whose current state is not entirely in its main file:
/// a `-wal` file holding frames (longer than its 32-byte header), or a hot
/// rollback journal (a non-empty `-journal` whose header is not zeroed).
///
/// # Errors
/// A message naming the side file and what to do about it.
pub fn check_quiescent(db: &Path) -> Result<()> {
    let wal = side_file(db, "-wal");
    if let Ok(m) = std::fs::metadata(&wal) {
        if m.len() > WAL_HEADER_SIZE {
            bail!(
                "{}: the write-ahead log {} holds {} bytes of frames that may not be in the database file yet; \
                 checkpoint it first (e.g. `sqlite3 {} 'PRAGMA wal_checkpoint(TRUNCATE)'`) or close every connection",
                db.display(),
                wal.display(),
                m.len() - WAL_HEADER_SIZE,
                db.display()
            );
        }
    }
    let journal = side_file(db, "-journal");
    if let Ok(m) = std::fs::metadata(&journal) {
        if m.len() > 0 {
            let mut head = [0u8; 28];
            let n = File::open(&journal)
                .and_then(|mut f| read_up_to(&mut f, &mut head))
                .with_context(|| format!("{}: cannot read", journal.display()))?;
            if head[..n].iter().any(|&b| b != 0) {
                bail!(
                    "{}: hot journal {} ({} bytes): a transaction is in progress or was interrupted, so the \
                     database file may be torn; let it finish, or open the database with sqlite3 once to roll it back",
                    db.display(),
                    journal.display(),
                    m.len()
                );
            }
        }
    }
    Ok(())
}

/// Stricter than [`check_quiescent`], for replacing a database: any
/// non-empty `-wal` file is refused. SQLite removes the `-wal` when the last
/// connection closes, so one that is present means the database is (or was
/// left) open in WAL mode; a connection writing frames against the old file
/// after it is replaced would corrupt the new one at its next checkpoint.
///
/// # Errors
/// A message naming the side file and what to do about it.
pub fn check_replaceable(db: &Path) -> Result<()> {
    check_quiescent(db)?;
    let wal = side_file(db, "-wal");
    if let Ok(m) = std::fs::metadata(&wal) {
        if m.len() > 0 {
            bail!(
                "{}: {} exists ({} bytes): the database is open in WAL mode; close every connection                  (SQLite then checkpoints and removes it) before replacing the database",
                db.display(),
                wal.display(),
                m.len()
            );
        }
    }
    Ok(())
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

pub use ltx_compactor::atomic::{parent_dir, TempFile};

/// Whether `a` and `b` name the same existing file (same device and inode).
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Refuses to write `output` over one of the `inputs`.
///
/// # Errors
/// When `output` is the same file as an input.
pub fn check_not_input(output: &Path, inputs: &[&Path]) -> Result<()> {
    for i in inputs {
        if same_file(output, i) {
            bail!(
                "{}: the output is the input {}; choose another path",
                output.display(),
                i.display()
            );
        }
    }
    Ok(())
}

/// Compact page ranges: `1-4, 7, 9-12`.
pub fn ranges(pgnos: &[Pgno]) -> String {
    let mut s = String::new();
    let mut i = 0;
    while i < pgnos.len() {
        let start = pgnos[i];
        let mut end = start;
        while i + 1 < pgnos.len() && pgnos[i + 1] == end + 1 {
            i += 1;
            end = pgnos[i];
        }
        if !s.is_empty() {
            s.push_str(", ");
        }
        if start == end {
            s.push_str(&start.to_string());
        } else {
            s.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    s
}

/// How the restored database is checked with SQLite before it replaces OUT.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// No SQLite check (the database checksum is still checked when the
    /// files track it).
    None,
    /// `PRAGMA quick_check`.
    Quick,
    /// `PRAGMA integrity_check`.
    Full,
}

impl IntegrityCheck {
    /// The level's name in reports: `none`, `quick` or `full`.
    pub fn name(self) -> &'static str {
        match self {
            IntegrityCheck::None => "none",
            IntegrityCheck::Quick => "quick",
            IntegrityCheck::Full => "full",
        }
    }
}

/// Removes `.NAME.ltx-TAG-PID.tmp` files beside `out` whose process is gone
/// (left by a killed restore, TAG `restore`, or follower, TAG `follow`).
/// Files of live processes are left alone.
pub fn remove_stale_temps(out: &Path, tag: &str) -> Vec<PathBuf> {
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return Vec::new();
    };
    let dir = crate::db::parent_dir(out);
    let prefix = format!(".{name}.ltx-{tag}-");
    let Ok(rd) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for e in rd.flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = n
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix(".tmp"))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id()
            && !process_alive(pid)
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed.push(e.path());
        }
    }
    removed
}

/// Whether a process exists (Linux: `/proc/PID`; elsewhere assumed alive,
/// so nothing is removed).
fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new(&format!("/proc/{pid}")).exists()
    } else {
        true
    }
}

/// SQLite's `PRAGMA quick_check` or `PRAGMA integrity_check` on `path`
/// (`none` does nothing), opened immutable and read-only (no journal, WAL
/// or shared-memory files are created).
///
/// # Errors
/// The database cannot be opened, or the check reports problems (the first
/// ones are quoted).
pub fn sqlite_check(path: &Path, level: IntegrityCheck) -> Result<()> {
    let pragma = match level {
        IntegrityCheck::None => return Ok(()),
        IntegrityCheck::Quick => "quick_check",
        IntegrityCheck::Full => "integrity_check",
    };
    use rusqlite::OpenFlags;
    let uri = format!("file:{}?immutable=1", uri_path(path));
    let conn = rusqlite::Connection::open_with_flags(
        &uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .with_context(|| format!("{}: opening with SQLite", path.display()))?;
    let mut st = conn
        .prepare(&format!("PRAGMA {pragma}(20)"))
        .with_context(|| format!("{}: {pragma}", path.display()))?;
    let rows: Vec<String> = st
        .query_map([], |r| r.get::<_, String>(0))
        .and_then(|it| it.collect())
        .with_context(|| format!("{}: {pragma}", path.display()))?;
    if rows.len() == 1 && rows[0] == "ok" {
        return Ok(());
    }
    bail!(
        "{pragma} failed on the restored database: {}",
        rows.join("; ")
    )
}

/// `path` percent-encoded for an SQLite URI.
fn uri_path(path: &Path) -> String {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut s = String::new();
    for b in abs.to_string_lossy().bytes() {
        match b {
            b'?' | b'#' | b'%' | 0x80.. => s.push_str(&format!("%{b:02X}")),
            _ => s.push(b as char),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_from_header() {
        let mut h = [0u8; 100];
        h[..16].copy_from_slice(SQLITE_MAGIC);
        h[16..18].copy_from_slice(&4096u16.to_be_bytes());
        assert_eq!(page_size_from_header(&h).unwrap().get(), 4096);
        h[16..18].copy_from_slice(&1u16.to_be_bytes());
        assert_eq!(page_size_from_header(&h).unwrap().get(), 65536);
        h[16..18].copy_from_slice(&1000u16.to_be_bytes());
        assert!(page_size_from_header(&h).is_err());
        assert!(page_size_from_header(&h[..50]).is_err());
        h[0] = b'X';
        assert!(page_size_from_header(&h).is_err());
    }

    #[test]
    fn compact_ranges() {
        assert_eq!(ranges(&[]), "");
        assert_eq!(ranges(&[5]), "5");
        assert_eq!(ranges(&[5, 6, 7, 8, 9, 12]), "5-9, 12");
        assert_eq!(ranges(&[1, 3, 4]), "1, 3-4");
    }

    #[test]
    fn parallel_checksum_matches_core() {
        let ps = PageSize::new(512).unwrap();
        let data: Vec<u8> = (0..512 * 1000u32).map(|i| (i * 7 % 251) as u8).collect();
        assert_eq!(
            checksum(&data, ps),
            ltx_core::checksum::database_checksum(ps, &data)
        );
        assert_eq!(checksum(&[], ps), Checksum(0));
    }

    #[test]
    fn empty_checksums_are_equal() {
        assert!(same_checksum(Checksum(0), Checksum(1 << 63)));
        assert!(!same_checksum(Checksum(0), Checksum((1 << 63) | 1)));
    }
}
