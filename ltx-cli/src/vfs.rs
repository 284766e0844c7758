//! A read-only SQLite VFS over a [`PageSource`]: SQLite opens "a database
//! file" whose reads are answered page by page by the source (for
//! `ltx sql`, pages of a database at a TXID read from a bucket).
//!
//! [`ReadOnlyVfs::register`] registers a VFS under a name of its own (one
//! per instance, so several can live in one process) with SQLite's C API
//! (through `rusqlite::ffi`); the connection is then opened with
//! [`ReadOnlyVfs::open`]: the file [`ReadOnlyVfs::FILE`] in that VFS, with
//! `SQLITE_OPEN_READONLY` and the URI parameter `immutable=1`, so SQLite
//! takes no locks, never looks for a journal, `-wal` or `-shm` file (a
//! database that was in WAL mode, as Litestream's always are, is read as
//! its pages say), and never writes. The file also reports
//! `SQLITE_IOCAP_IMMUTABLE`.
//!
//! What the VFS does with each call:
//!
//! - `xOpen` of the main database name: a file whose `xRead` maps the byte
//!   range to page numbers (`offset / page_size + 1`) and copies from the
//!   source's pages; size `pages × page_size`; writes, truncation and
//!   locks of any other kind than none are refused or no-ops. Temporary
//!   files (sorting, `ORDER BY` on large results; no name or
//!   `DELETEONCLOSE`) are handed to SQLite's default VFS, whose file object
//!   fits in ours (`szOsFile` is the larger of the two). Any other name
//!   (an `ATTACH`, a journal) cannot be opened.
//! - `xAccess` says no file exists (no journal, no WAL); `xFullPathname`
//!   keeps the name; randomness, sleep, time and the last error come from
//!   the default VFS; extensions cannot be loaded.
//!
//! A failed page read returns `SQLITE_IOERR_READ` to SQLite, which reports
//! "disk I/O error"; the source's own message is kept and
//! [`ReadOnlyVfs::take_error`] returns it, so the command can say which
//! file or request failed.
//!
//! This is the only unsafe code of the crate besides the memory map of
//! `input`: every callback is `extern "C"`, checks its pointers, runs its
//! Rust part inside `catch_unwind` (a panic never crosses into C) and
//! touches only memory SQLite hands it for the lengths SQLite gives.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use rusqlite::ffi;

/// Pages of one database, read synchronously (from SQLite's thread).
pub trait PageSource: Send + Sync {
    /// Page size in bytes.
    fn page_size(&self) -> usize;
    /// Database size in pages.
    fn pages(&self) -> u32;
    /// Page `pgno` (1-based, at most [`PageSource::pages`]), exactly
    /// [`PageSource::page_size`] bytes.
    ///
    /// # Errors
    /// A message saying what failed.
    fn read_page(&self, pgno: u32) -> std::result::Result<Arc<[u8]>, String>;
}

/// What the VFS's `pAppData` points at.
struct State {
    source: Arc<dyn PageSource>,
    /// SQLite's default VFS (temporary files and utilities go there).
    default: *mut ffi::sqlite3_vfs,
    /// The main database's name as `xOpen` receives it.
    main: CString,
    /// The first read error since the last [`ReadOnlyVfs::take_error`].
    error: Mutex<Option<String>>,
}

// SAFETY: `default` points at SQLite's default VFS, a static object SQLite
// never frees and whose methods are thread-safe; the rest is Send + Sync.
unsafe impl Send for State {}
// SAFETY: as above.
unsafe impl Sync for State {}

/// The file object of the main database: SQLite allocates `szOsFile`
/// bytes and `xOpen` fills them in. `base` must come first (SQLite reads
/// `pMethods` through a `sqlite3_file*`).
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    state: *const State,
}

/// A registered read-only VFS; unregistered when dropped (drop every
/// connection opened through it first).
pub struct ReadOnlyVfs {
    name: CString,
    vfs: Box<ffi::sqlite3_vfs>,
    state: Box<State>,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

impl ReadOnlyVfs {
    /// The database file's name inside the VFS.
    pub const FILE: &'static str = "ltx-pitr.db";

    /// Registers a VFS over `source` under a name unique to this process
    /// and instance (not the default VFS).
    ///
    /// # Errors
    /// SQLite has no default VFS, or registration fails.
    pub fn register(source: Arc<dyn PageSource>) -> Result<ReadOnlyVfs> {
        // Makes sure SQLite is initialised before its VFS list is used.
        // SAFETY: plain C calls without arguments that may be invalid.
        let default = unsafe {
            ffi::sqlite3_initialize();
            ffi::sqlite3_vfs_find(std::ptr::null())
        };
        if default.is_null() {
            bail!("SQLite has no default VFS");
        }
        let name = CString::new(format!(
            "ltx-pitr-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ))
        .expect("no NUL");
        let state = Box::new(State {
            source,
            default,
            main: CString::new(Self::FILE).expect("no NUL"),
            error: Mutex::new(None),
        });
        // SAFETY: `default` is a valid VFS (checked non-null above).
        let (default_size, mx_path) = unsafe { ((*default).szOsFile, (*default).mxPathname) };
        let size = c_int::try_from(std::mem::size_of::<File>())
            .expect("small")
            .max(default_size);
        let mut vfs = Box::new(ffi::sqlite3_vfs {
            iVersion: 2,
            szOsFile: size,
            mxPathname: mx_path.max(512),
            pNext: std::ptr::null_mut(),
            zName: name.as_ptr(),
            pAppData: &*state as *const State as *mut c_void,
            xOpen: Some(x_open),
            xDelete: Some(x_delete),
            xAccess: Some(x_access),
            xFullPathname: Some(x_full_pathname),
            xDlOpen: Some(x_dl_open),
            xDlError: Some(x_dl_error),
            xDlSym: Some(x_dl_sym),
            xDlClose: Some(x_dl_close),
            xRandomness: Some(x_randomness),
            xSleep: Some(x_sleep),
            xCurrentTime: Some(x_current_time),
            xGetLastError: Some(x_get_last_error),
            xCurrentTimeInt64: Some(x_current_time_int64),
            xSetSystemCall: None,
            xGetSystemCall: None,
            xNextSystemCall: None,
        });
        // SAFETY: `vfs` and the name and state it points at are boxed and
        // owned by the returned value, which unregisters the VFS before
        // freeing them (Drop).
        let rc = unsafe { ffi::sqlite3_vfs_register(&mut *vfs, 0) };
        if rc != ffi::SQLITE_OK {
            bail!("registering the SQLite VFS failed (code {rc})");
        }
        Ok(ReadOnlyVfs { name, vfs, state })
    }

    /// The VFS's name.
    pub fn name(&self) -> &str {
        self.name.to_str().expect("ASCII")
    }

    /// Opens the database read-only and immutable (see the module docs).
    ///
    /// # Errors
    /// SQLite cannot open it (e.g. page 1 cannot be read: see
    /// [`ReadOnlyVfs::take_error`]).
    pub fn open(&self) -> Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        rusqlite::Connection::open_with_flags_and_vfs(
            format!("file:{}?immutable=1", Self::FILE),
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            self.name(),
        )
        .context("opening the database with SQLite")
    }

    /// The message of the first page read that failed since the last call.
    pub fn take_error(&self) -> Option<String> {
        self.state
            .error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

impl Drop for ReadOnlyVfs {
    fn drop(&mut self) {
        // SAFETY: registered in `register`; SQLite removes it from its list
        // and keeps no pointer to it afterwards.
        unsafe {
            ffi::sqlite3_vfs_unregister(&mut *self.vfs);
        }
    }
}

/// The state of a VFS (its `pAppData`).
///
/// # Safety
/// `vfs` is a VFS registered by [`ReadOnlyVfs::register`], still alive.
unsafe fn state_of<'a>(vfs: *mut ffi::sqlite3_vfs) -> &'a State {
    &*((*vfs).pAppData as *const State)
}

/// Runs `f`, turning a panic into `err`.
fn guard<T>(err: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(err)
}

static IO_METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xClose: Some(f_close),
    xRead: Some(f_read),
    xWrite: Some(f_write),
    xTruncate: Some(f_truncate),
    xSync: Some(f_sync),
    xFileSize: Some(f_file_size),
    xLock: Some(f_lock),
    xUnlock: Some(f_lock),
    xCheckReservedLock: Some(f_check_reserved_lock),
    xFileControl: Some(f_file_control),
    xSectorSize: Some(f_sector_size),
    xDeviceCharacteristics: Some(f_device_characteristics),
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
};

unsafe extern "C" fn x_open(
    vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        // SAFETY: SQLite calls xOpen with its VFS, a file object of
        // `szOsFile` bytes and a name that is null or NUL-terminated.
        unsafe {
            let st = state_of(vfs);
            let temp = name.is_null() || flags & ffi::SQLITE_OPEN_DELETEONCLOSE != 0;
            if temp {
                // SQLite's default VFS writes its own (smaller or equal)
                // file object into `file` and sets its methods.
                let open = (*st.default).xOpen.expect("xOpen");
                return open(st.default, name, file, flags, out_flags);
            }
            let is_main = flags & ffi::SQLITE_OPEN_MAIN_DB != 0
                && CStr::from_ptr(name).to_bytes() == st.main.as_bytes();
            if !is_main {
                (*file).pMethods = std::ptr::null();
                return ffi::SQLITE_CANTOPEN;
            }
            let f = file as *mut File;
            std::ptr::write(
                f,
                File {
                    base: ffi::sqlite3_file {
                        pMethods: &IO_METHODS,
                    },
                    state: st,
                },
            );
            if !out_flags.is_null() {
                *out_flags = ffi::SQLITE_OPEN_READONLY | ffi::SQLITE_OPEN_MAIN_DB;
            }
            ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn x_delete(_: *mut ffi::sqlite3_vfs, _: *const c_char, _: c_int) -> c_int {
    ffi::SQLITE_IOERR_DELETE
}

unsafe extern "C" fn x_access(
    _: *mut ffi::sqlite3_vfs,
    _: *const c_char,
    _: c_int,
    out: *mut c_int,
) -> c_int {
    if !out.is_null() {
        // SAFETY: SQLite passes a valid int pointer.
        unsafe { *out = 0 };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn x_full_pathname(
    _: *mut ffi::sqlite3_vfs,
    name: *const c_char,
    n_out: c_int,
    out: *mut c_char,
) -> c_int {
    guard(ffi::SQLITE_CANTOPEN, || {
        // SAFETY: `name` is NUL-terminated; `out` holds `n_out` bytes.
        unsafe {
            let b = CStr::from_ptr(name).to_bytes_with_nul();
            if b.len() > usize::try_from(n_out).unwrap_or(0) {
                return ffi::SQLITE_CANTOPEN;
            }
            std::ptr::copy_nonoverlapping(b.as_ptr(), out as *mut u8, b.len());
            ffi::SQLITE_OK
        }
    })
}

unsafe extern "C" fn x_dl_open(_: *mut ffi::sqlite3_vfs, _: *const c_char) -> *mut c_void {
    std::ptr::null_mut()
}

unsafe extern "C" fn x_dl_error(_: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) {
    let msg = b"ltx sql loads no extensions\0";
    let n = usize::try_from(n).unwrap_or(0).min(msg.len());
    if n > 0 && !out.is_null() {
        // SAFETY: `out` holds `n` bytes; the copy ends with a NUL.
        unsafe {
            std::ptr::copy_nonoverlapping(msg.as_ptr(), out as *mut u8, n);
            *out.add(n - 1) = 0;
        }
    }
}

type DlSym = unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char);

unsafe extern "C" fn x_dl_sym(
    _: *mut ffi::sqlite3_vfs,
    _: *mut c_void,
    _: *const c_char,
) -> Option<DlSym> {
    None
}

unsafe extern "C" fn x_dl_close(_: *mut ffi::sqlite3_vfs, _: *mut c_void) {}

unsafe extern "C" fn x_randomness(vfs: *mut ffi::sqlite3_vfs, n: c_int, out: *mut c_char) -> c_int {
    // SAFETY: forwarded as given to the default VFS.
    unsafe {
        let d = state_of(vfs).default;
        match (*d).xRandomness {
            Some(f) => f(d, n, out),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_sleep(vfs: *mut ffi::sqlite3_vfs, us: c_int) -> c_int {
    // SAFETY: forwarded as given to the default VFS.
    unsafe {
        let d = state_of(vfs).default;
        match (*d).xSleep {
            Some(f) => f(d, us),
            None => 0,
        }
    }
}

unsafe extern "C" fn x_current_time(vfs: *mut ffi::sqlite3_vfs, out: *mut f64) -> c_int {
    // SAFETY: forwarded as given to the default VFS.
    unsafe {
        let d = state_of(vfs).default;
        match (*d).xCurrentTime {
            Some(f) => f(d, out),
            None => ffi::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn x_current_time_int64(vfs: *mut ffi::sqlite3_vfs, out: *mut i64) -> c_int {
    // SAFETY: forwarded as given to the default VFS (version 2 or more
    // has xCurrentTimeInt64).
    unsafe {
        let d = state_of(vfs).default;
        match ((*d).iVersion >= 2)
            .then_some((*d).xCurrentTimeInt64)
            .flatten()
        {
            Some(f) => f(d, out),
            None => ffi::SQLITE_ERROR,
        }
    }
}

unsafe extern "C" fn x_get_last_error(
    vfs: *mut ffi::sqlite3_vfs,
    n: c_int,
    out: *mut c_char,
) -> c_int {
    // SAFETY: forwarded as given to the default VFS.
    unsafe {
        let d = state_of(vfs).default;
        match (*d).xGetLastError {
            Some(f) => f(d, n, out),
            None => 0,
        }
    }
}

/// The state of a main-database file.
///
/// # Safety
/// `f` was opened by [`x_open`] as the main database.
unsafe fn file_state<'a>(f: *mut ffi::sqlite3_file) -> &'a State {
    &*(*(f as *mut File)).state
}

unsafe extern "C" fn f_close(_: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn f_read(
    f: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    guard(ffi::SQLITE_IOERR_READ, || {
        // SAFETY: SQLite passes our file and a buffer of `amt` bytes.
        let (st, out) = unsafe {
            let n = usize::try_from(amt).unwrap_or(0);
            (
                file_state(f),
                std::slice::from_raw_parts_mut(buf as *mut u8, n),
            )
        };
        match read_at(st.source.as_ref(), out, offset) {
            Ok(true) => ffi::SQLITE_OK,
            Ok(false) => ffi::SQLITE_IOERR_SHORT_READ,
            Err(e) => {
                let mut slot = st.error.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(e);
                ffi::SQLITE_IOERR_READ
            }
        }
    })
}

/// Fills `out` from byte `offset` of the database; `Ok(false)` when the
/// database ends first (the rest is zeroed, as SQLite requires).
fn read_at(src: &dyn PageSource, out: &mut [u8], offset: i64) -> std::result::Result<bool, String> {
    let ps = src.page_size() as u64;
    let size = u64::from(src.pages()) * ps;
    let Ok(offset) = u64::try_from(offset) else {
        return Err(format!("read at negative offset {offset}"));
    };
    let mut done = 0usize;
    while done < out.len() {
        let pos = offset + done as u64;
        if pos >= size {
            out[done..].fill(0);
            return Ok(false);
        }
        let pgno = u32::try_from(pos / ps + 1).map_err(|_| format!("offset {pos} out of range"))?;
        let within = (pos % ps) as usize;
        let n = (ps as usize - within).min(out.len() - done);
        let page = src.read_page(pgno)?;
        if page.len() != ps as usize {
            return Err(format!("page {pgno}: {} bytes, not {ps}", page.len()));
        }
        out[done..done + n].copy_from_slice(&page[within..within + n]);
        done += n;
    }
    Ok(true)
}

unsafe extern "C" fn f_write(
    _: *mut ffi::sqlite3_file,
    _: *const c_void,
    _: c_int,
    _: i64,
) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn f_truncate(_: *mut ffi::sqlite3_file, _: i64) -> c_int {
    ffi::SQLITE_READONLY
}

unsafe extern "C" fn f_sync(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn f_file_size(f: *mut ffi::sqlite3_file, out: *mut i64) -> c_int {
    guard(ffi::SQLITE_IOERR_FSTAT, || {
        // SAFETY: our file; `out` is a valid pointer.
        unsafe {
            let s = &file_state(f).source;
            *out = i64::from(s.pages()) * s.page_size() as i64;
        }
        ffi::SQLITE_OK
    })
}

unsafe extern "C" fn f_lock(_: *mut ffi::sqlite3_file, _: c_int) -> c_int {
    ffi::SQLITE_OK
}

unsafe extern "C" fn f_check_reserved_lock(_: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    if !out.is_null() {
        // SAFETY: a valid int pointer.
        unsafe { *out = 0 };
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn f_file_control(_: *mut ffi::sqlite3_file, _: c_int, _: *mut c_void) -> c_int {
    ffi::SQLITE_NOTFOUND
}

unsafe extern "C" fn f_sector_size(_: *mut ffi::sqlite3_file) -> c_int {
    512
}

unsafe extern "C" fn f_device_characteristics(_: *mut ffi::sqlite3_file) -> c_int {
    ffi::SQLITE_IOCAP_IMMUTABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database image in memory.
    struct Image {
        ps: usize,
        bytes: Vec<u8>,
        fail: Option<u32>,
    }

    impl PageSource for Image {
        fn page_size(&self) -> usize {
            self.ps
        }
        fn pages(&self) -> u32 {
            (self.bytes.len() / self.ps) as u32
        }
        fn read_page(&self, pgno: u32) -> std::result::Result<Arc<[u8]>, String> {
            if Some(pgno) == self.fail {
                return Err(format!("page {pgno}: injected failure"));
            }
            let a = (pgno as usize - 1) * self.ps;
            Ok(self.bytes[a..a + self.ps].into())
        }
    }

    fn image(wal: bool) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.db");
        let c = rusqlite::Connection::open(&p).unwrap();
        c.execute_batch(
            "PRAGMA page_size=1024; CREATE TABLE t(a INTEGER PRIMARY KEY, b TEXT, c REAL, d BLOB);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
             INSERT INTO t SELECT i, 'row ' || i, i / 4.0, randomblob(50) FROM n;",
        )
        .unwrap();
        if wal {
            c.execute_batch("PRAGMA journal_mode=WAL; PRAGMA wal_checkpoint(TRUNCATE);")
                .unwrap();
        }
        drop(c);
        std::fs::read(&p).unwrap()
    }

    #[test]
    fn queries_a_wal_mode_image_read_only() {
        for wal in [false, true] {
            let bytes = image(wal);
            assert_eq!(bytes[18] == 2, wal);
            let vfs = ReadOnlyVfs::register(Arc::new(Image {
                ps: 1024,
                bytes,
                fail: None,
            }))
            .unwrap();
            let c = vfs.open().unwrap();
            let (n, s): (i64, String) = c
                .query_row("SELECT count(*), max(b) FROM t WHERE c > 10", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .unwrap();
            assert_eq!((n, s.as_str()), (460, "row 99"));
            // Sorting a large result spills to temporary files, which the
            // default VFS serves.
            c.execute_batch("PRAGMA cache_size=4; PRAGMA temp_store=FILE")
                .unwrap();
            let v: Vec<i64> = c
                .prepare("SELECT a FROM t ORDER BY d")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            assert_eq!(v.len(), 500);
            c.execute_batch("CREATE TEMP TABLE x AS SELECT * FROM t")
                .unwrap();
            let n: i64 = c
                .query_row("SELECT count(*) FROM temp.x", [], |r| r.get(0))
                .unwrap();
            assert_eq!(n, 500);
            let e = c.execute("DELETE FROM t", []).unwrap_err().to_string();
            assert!(e.contains("readonly"), "{e}");
            assert!(c.execute_batch("ATTACH 'other.db' AS o").is_err());
        }
    }

    #[test]
    fn read_errors_are_kept() {
        let bytes = image(false);
        let n = (bytes.len() / 1024) as u32;
        let vfs = ReadOnlyVfs::register(Arc::new(Image {
            ps: 1024,
            bytes,
            fail: Some(n),
        }))
        .unwrap();
        let c = vfs.open().unwrap();
        let e = c
            .query_row("SELECT sum(length(d)) FROM t", [], |r| r.get::<_, i64>(0))
            .unwrap_err();
        assert!(e.to_string().contains("disk I/O error"), "{e}");
        assert_eq!(
            vfs.take_error().as_deref(),
            Some(format!("page {n}: injected failure").as_str())
        );
    }
}
