//! Writing a step into a live WAL-mode database the way SQLite's own
//! writer does, so that connections of other processes reading it never
//! see a torn state: the pages go into the database's `-wal` file as one
//! transaction (frames with SQLite's checksums, the last one a commit
//! frame), fsynced, and then the wal-index (`-shm`) is updated under
//! SQLite's write lock: the hash tables first, then the header, second
//! copy first. A reader's snapshot is the header it read when its
//! transaction began, so it sees the transaction wholly or not at all; a
//! checkpoint (SQLite's own, [`checkpoint`]) later copies the frames into
//! the database file.
//!
//! The locks are SQLite's, on the same bytes (POSIX advisory locks, as
//! SQLite's unix VFS takes them):
//!
//! - a SHARED lock on the database file (a read lock on its shared range,
//!   taken through the pending byte), as every WAL-mode connection holds:
//!   no connection closing meanwhile can think it is the last one and
//!   checkpoint and delete the WAL under us;
//! - the wal-index's DMS byte (`-shm` offset 128): shared while other
//!   connections have the wal-index open (they keep it so while open), or
//!   exclusive when no connection has it open (then no one may use the
//!   wal-index, which the next connection rebuilds from the WAL file:
//!   SQLite's recovery, which finds the new transaction there);
//! - the WAL write lock (`-shm` offset 120), exclusive: no other writer,
//!   no recovery, no WAL restart while the frames go in.
//!
//! Every lock is tried without waiting; a busy one ends the attempt
//! ([`Opened::Busy`]) and the caller retries a moment later, so a reader
//! is never kept waiting on us for longer than a step's local writes.
//! A process's POSIX locks on a file are dropped when it closes any
//! descriptor of that file, so the follower never has an SQLite
//! connection of its own open on the database while a [`Session`] is.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU16, AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use ltx_core::checksum::DbChecksum;
use ltx_core::wal::{
    self, ByteOrder, FrameHeader, ShmHeader, ShmMemory, WalHeader, SHM_BACKFILL_OFFSET,
    SHM_COPY_SIZE, SHM_HEADER_SIZE, SHM_PAGE_SIZE, WAL_FRAME_HEADER_SIZE, WAL_HEADER_SIZE,
};
use ltx_core::{Checksum, PageSize, Pgno};

use crate::db::side_file;

/// SQLite's lock bytes (`os.h`, `os_unix.c`, `wal.c`).
const PENDING_BYTE: u64 = 0x4000_0000;
const SHARED_FIRST: u64 = PENDING_BYTE + 2;
const SHARED_SIZE: u64 = 510;
const SHM_WRITE_LOCK: u64 = 120;
const SHM_DMS: u64 = 128;

/// The byte order SQLite writes WAL checksums and the wal-index in here.
const NATIVE: ByteOrder = if cfg!(target_endian = "big") {
    ByteOrder::Big
} else {
    ByteOrder::Little
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Lock {
    Read,
    Write,
    Unlock,
}

/// `fcntl(F_SETLK)`: `Ok(false)` when another process holds a conflicting
/// lock.
fn set_lock(f: &File, kind: Lock, start: u64, len: u64) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` is plain data; every field SQLite sets is set.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = match kind {
        Lock::Read => libc::F_RDLCK,
        Lock::Write => libc::F_WRLCK,
        Lock::Unlock => libc::F_UNLCK,
    } as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = start as _;
    fl.l_len = len as _;
    // SAFETY: a valid descriptor and a valid `flock` that outlives the call.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &fl) };
    if r == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(e),
    }
}

/// `fcntl(F_GETLK)` for a write lock: the lock another process holds on
/// the range (`Unlock` if none).
fn get_lock(f: &File, start: u64, len: u64) -> std::io::Result<Lock> {
    use std::os::fd::AsRawFd;
    // SAFETY: as in `set_lock`.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as _;
    fl.l_whence = libc::SEEK_SET as _;
    fl.l_start = start as _;
    fl.l_len = len as _;
    // SAFETY: a valid descriptor and a valid `flock` the call writes into.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETLK, &mut fl) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let t = fl.l_type as i32;
    // `F_RDLCK` and `F_WRLCK` are `c_int` on Linux, `c_short` elsewhere.
    #[allow(clippy::unnecessary_cast)]
    let (rd, wr) = (libc::F_RDLCK as i32, libc::F_WRLCK as i32);
    Ok(if t == rd {
        Lock::Read
    } else if t == wr {
        Lock::Write
    } else {
        Lock::Unlock
    })
}

/// The wal-index mapped into memory, shared with the other processes'
/// SQLite connections: words are loaded and stored atomically, as SQLite
/// does (`AtomicLoad`/`AtomicStore`, and the header under a barrier).
struct SharedShm {
    _map: memmap2::MmapMut,
    ptr: *mut u8,
    len: usize,
}

impl SharedShm {
    fn map(file: &File, len: usize) -> Result<SharedShm> {
        // SAFETY: the -shm file is shared memory by design: other
        // processes change it while it is mapped, which is why every
        // access below goes through atomics. It is never truncated while
        // we hold the DMS lock (only a process holding it exclusively
        // truncates it), so the mapping stays backed.
        let mut map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file) }
            .context("mapping the wal-index")?;
        let ptr = map.as_mut_ptr();
        Ok(SharedShm {
            _map: map,
            ptr,
            len,
        })
    }

    fn u32_at(&self, at: usize) -> &AtomicU32 {
        assert!(
            at.is_multiple_of(4) && at + 4 <= self.len,
            "wal-index offset {at}"
        );
        // SAFETY: in bounds and 4-aligned (the map is page-aligned); the
        // mapping lives as long as `self`; concurrent access by other
        // processes is atomic too.
        unsafe { AtomicU32::from_ptr(self.ptr.add(at).cast::<u32>()) }
    }

    fn u16_at(&self, at: usize) -> &AtomicU16 {
        assert!(
            at.is_multiple_of(2) && at + 2 <= self.len,
            "wal-index offset {at}"
        );
        // SAFETY: as in `u32_at`, 2-aligned.
        unsafe { AtomicU16::from_ptr(self.ptr.add(at).cast::<u16>()) }
    }

    /// Bytes `0..n` (a multiple of 4), word by word.
    fn read(&self, n: usize) -> Vec<u8> {
        (0..n)
            .step_by(4)
            .flat_map(|at| self.u32_at(at).load(Ordering::Acquire).to_ne_bytes())
            .collect()
    }

    /// Stores `bytes` (a multiple of 4) at `at`, word by word.
    fn write(&self, at: usize, bytes: &[u8]) {
        for (i, w) in bytes.chunks_exact(4).enumerate() {
            let v = u32::from_ne_bytes([w[0], w[1], w[2], w[3]]);
            self.u32_at(at + 4 * i).store(v, Ordering::Release);
        }
    }
}

impl ShmMemory for SharedShm {
    fn shm_len(&self) -> usize {
        self.len
    }
    fn load_u32(&self, at: usize) -> u32 {
        self.u32_at(at).load(Ordering::Acquire)
    }
    fn store_u32(&mut self, at: usize, v: u32) {
        self.u32_at(at).store(v, Ordering::Release)
    }
    fn load_u16(&self, at: usize) -> u16 {
        self.u16_at(at).load(Ordering::Acquire)
    }
    fn store_u16(&mut self, at: usize, v: u16) {
        self.u16_at(at).store(v, Ordering::Release)
    }
}

/// Where the WAL stands.
struct WalEnd {
    /// Frames in use (the committed last frame).
    max_frame: u32,
    /// The generation's checksum byte order and salts when frames are in
    /// use.
    generation: Option<(ByteOrder, u32, u32)>,
    /// The last frame's checksum (where the next continues).
    checksum: [u32; 2],
}

/// How the database is shared right now.
enum Mode {
    /// Other connections have the wal-index open: we hold the DMS byte
    /// shared and the write lock, and publish through the wal-index.
    Online { shm: SharedShm, header: ShmHeader },
    /// No connection has the wal-index open: we hold the DMS byte
    /// exclusively; the next connection rebuilds the wal-index from the
    /// WAL file (which is empty when we start).
    Offline,
    /// Was offline, and let go of the wal-index locks to read
    /// ([`Session::read_only`]): cannot write.
    Released,
}

/// Why a session could not be opened right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// Another process holds (or is taking) the database exclusively.
    Database,
    /// A connection is initializing the wal-index.
    Dms,
    /// Another writer, or a recovery, holds the WAL write lock.
    Writer,
    /// The wal-index header is not valid right now (being written or
    /// rebuilt).
    Header,
}

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Busy::Database => "the database is locked exclusively by another process",
            Busy::Dms => "another connection is initializing the wal-index",
            Busy::Writer => "another process holds the WAL write lock",
            Busy::Header => "the wal-index header is being written or rebuilt",
        })
    }
}

/// What [`Session::open`] found.
pub enum Opened {
    /// Locked and ready.
    Ready(Box<Session>),
    /// A lock is busy or the wal-index is in flux: try again shortly.
    Busy(Busy),
    /// No connection is open but the WAL holds frames: let SQLite
    /// checkpoint them ([`checkpoint`]) and try again.
    NeedsCheckpoint,
}

/// The database locked for one step (see the module docs). Dropping it
/// releases the locks.
pub struct Session {
    path: PathBuf,
    page_size: PageSize,
    db: File,
    wal: File,
    wal_path: PathBuf,
    // Declared after `mode` so that the mapping goes before the file.
    mode: Mode,
    shm_file: File,
    end: WalEnd,
    /// Pages whose newest version is in the WAL, past what a checkpoint
    /// already copied: page → frame.
    in_wal: std::collections::HashMap<Pgno, u32>,
    /// Database size in pages.
    db_pages: u32,
}

impl Session {
    /// Locks `path` (a WAL-mode database with pages of `page_size`) for a
    /// step.
    ///
    /// # Errors
    /// I/O errors; a wal-index or WAL that does not belong to the database
    /// (another page size, other salts).
    pub fn open(path: &Path, page_size: PageSize) -> Result<Opened> {
        let db = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let lock_err = |what: &str| format!("{}: locking {what}", path.display());
        // SHARED, as SQLite takes it: through the pending byte.
        if !set_lock(&db, Lock::Read, PENDING_BYTE, 1).with_context(|| lock_err("the database"))? {
            return Ok(Opened::Busy(Busy::Database));
        }
        let shared = set_lock(&db, Lock::Read, SHARED_FIRST, SHARED_SIZE)
            .with_context(|| lock_err("the database"))?;
        set_lock(&db, Lock::Unlock, PENDING_BYTE, 1).with_context(|| lock_err("the database"))?;
        if !shared {
            return Ok(Opened::Busy(Busy::Database));
        }
        let shm_path = side_file(path, "-shm");
        let shm_file = open_side(&shm_path, &db)?;
        let online = match get_lock(&shm_file, SHM_DMS, 1).with_context(|| lock_err("-shm"))? {
            Lock::Write => return Ok(Opened::Busy(Busy::Dms)),
            Lock::Read => {
                if !set_lock(&shm_file, Lock::Read, SHM_DMS, 1).with_context(|| lock_err("-shm"))? {
                    return Ok(Opened::Busy(Busy::Dms));
                }
                true
            }
            Lock::Unlock => {
                if !set_lock(&shm_file, Lock::Write, SHM_DMS, 1)
                    .with_context(|| lock_err("-shm"))?
                {
                    return Ok(Opened::Busy(Busy::Dms));
                }
                false
            }
        };
        if !set_lock(&shm_file, Lock::Write, SHM_WRITE_LOCK, 1).with_context(|| lock_err("-shm"))? {
            return Ok(Opened::Busy(Busy::Writer));
        }
        let wal_path = side_file(path, "-wal");
        let wal = open_side(&wal_path, &db)?;
        let wal_len = wal
            .metadata()
            .with_context(|| format!("{}: cannot stat", wal_path.display()))?
            .len();
        let db_len = db
            .metadata()
            .with_context(|| format!("{}: cannot stat", path.display()))?
            .len();
        let file_pages = (db_len / page_size.bytes() as u64) as u32;
        let mut in_wal = std::collections::HashMap::new();
        let (mode, end, db_pages) = if online {
            let shm_len = shm_file
                .metadata()
                .with_context(|| format!("{}: cannot stat", shm_path.display()))?
                .len() as usize;
            if shm_len < SHM_PAGE_SIZE {
                return Ok(Opened::Busy(Busy::Header));
            }
            let shm = SharedShm::map(&shm_file, shm_len - shm_len % SHM_PAGE_SIZE)?;
            // The two copies as a reader reads them: first, barrier, second.
            let raw = shm.read(SHM_HEADER_SIZE);
            let header = match ShmHeader::parse(&raw) {
                Ok(h) => h,
                Err(_) => return Ok(Opened::Busy(Busy::Header)),
            };
            if header.page_size.is_some_and(|p| p != page_size) {
                bail!(
                    "{}: the wal-index says page size {}, the followed database has {}",
                    shm_path.display(),
                    header.page_size.map_or(0, |p| p.get()),
                    page_size
                );
            }
            if header.max_frame > 0 && wal::shm_size_for(header.max_frame) > shm.len {
                return Ok(Opened::Busy(Busy::Header));
            }
            let end = if header.max_frame == 0 {
                WalEnd {
                    max_frame: 0,
                    generation: None,
                    checksum: [0, 0],
                }
            } else {
                let mut hb = [0u8; WAL_HEADER_SIZE];
                wal.read_exact_at(&mut hb, 0)
                    .with_context(|| format!("{}: reading the header", wal_path.display()))?;
                let wh = WalHeader::parse(&hb)
                    .map_err(|p| anyhow::anyhow!("{}: {p}", wal_path.display()))?;
                if (wh.salt1, wh.salt2) != (header.salt1, header.salt2)
                    || wh.page_size != page_size
                    || wh.byte_order != header.wal_order
                {
                    bail!(
                        "{}: its header (salts {:08x} {:08x}, page size {}) is not the WAL the wal-index names (salts {:08x} {:08x}, page size {})",
                        wal_path.display(),
                        wh.salt1,
                        wh.salt2,
                        wh.page_size,
                        header.salt1,
                        header.salt2,
                        header.page_size.map_or(0, |p| p.get())
                    );
                }
                let need =
                    WAL_HEADER_SIZE as u64 + u64::from(header.max_frame) * wh.frame_size() as u64;
                if wal_len < need {
                    bail!(
                        "{}: {wal_len} bytes, but the wal-index says {} frames ({need} bytes)",
                        wal_path.display(),
                        header.max_frame
                    );
                }
                let backfilled = shm.load_u32(SHM_BACKFILL_OFFSET);
                for f in backfilled.saturating_add(1)..=header.max_frame {
                    let p = wal::index_frame_pgno(&shm, f)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", shm_path.display()))?;
                    in_wal.insert(p, f);
                }
                WalEnd {
                    max_frame: header.max_frame,
                    generation: Some((wh.byte_order, wh.salt1, wh.salt2)),
                    checksum: header.frame_checksum,
                }
            };
            let db_pages = if header.max_frame > 0 {
                header.db_pages
            } else {
                file_pages
            };
            (Mode::Online { shm, header }, end, db_pages)
        } else {
            if wal_len > 0 {
                return Ok(Opened::NeedsCheckpoint);
            }
            let end = WalEnd {
                max_frame: 0,
                generation: None,
                checksum: [0, 0],
            };
            (Mode::Offline, end, file_pages)
        };
        Ok(Opened::Ready(Box::new(Session {
            path: path.to_path_buf(),
            page_size,
            db,
            wal,
            wal_path,
            mode,
            shm_file,
            end,
            in_wal,
            db_pages,
        })))
    }

    /// The database size in pages (what a reader sees now).
    pub fn db_pages(&self) -> u32 {
        self.db_pages
    }

    /// Whether other connections have the database open (the step is
    /// published through the wal-index).
    pub fn online(&self) -> bool {
        matches!(self.mode, Mode::Online { .. })
    }

    /// Reads page `pgno` as a reader sees it now: its newest frame in the
    /// WAL, else the database file.
    ///
    /// # Errors
    /// I/O errors; a page past the database's end.
    pub fn read_page(&self, pgno: Pgno, buf: &mut [u8]) -> Result<()> {
        if pgno == 0 || pgno > self.db_pages {
            bail!(
                "{}: page {pgno} is past the database's {} pages",
                self.path.display(),
                self.db_pages
            );
        }
        let psz = self.page_size.bytes() as u64;
        match self.in_wal.get(&pgno) {
            Some(&f) => {
                let at = WAL_HEADER_SIZE as u64
                    + u64::from(f - 1) * (WAL_FRAME_HEADER_SIZE as u64 + psz)
                    + WAL_FRAME_HEADER_SIZE as u64;
                self.wal
                    .read_exact_at(buf, at)
                    .with_context(|| format!("{}: reading frame {f}", self.wal_path.display()))
            }
            None => self
                .db
                .read_exact_at(buf, u64::from(pgno - 1) * psz)
                .with_context(|| format!("{}: reading page {pgno}", self.path.display())),
        }
    }

    /// Lets connections open the database while a long read goes on
    /// (reading every page for [`Session::checksum`]): without other
    /// connections, drops the wal-index locks, keeping the SHARED lock on
    /// the database file. The WAL is empty then (nothing to checkpoint), so
    /// the database file stays what it is: no writer but us, and a
    /// connection that opens it only rebuilds an empty wal-index. The
    /// session can then only read.
    ///
    /// # Errors
    /// I/O errors unlocking.
    pub fn read_only(&mut self) -> Result<()> {
        if matches!(self.mode, Mode::Offline) {
            set_lock(&self.shm_file, Lock::Unlock, SHM_WRITE_LOCK, 1)
                .and_then(|_| set_lock(&self.shm_file, Lock::Unlock, SHM_DMS, 1))
                .with_context(|| format!("{}-shm: unlocking", self.path.display()))?;
            self.mode = Mode::Released;
        }
        Ok(())
    }

    /// The database checksum of what a reader sees now (reads every page).
    ///
    /// # Errors
    /// As [`Session::read_page`].
    pub fn checksum(&self) -> Result<Checksum> {
        let mut sum = DbChecksum::new(self.page_size);
        let mut buf = vec![0u8; self.page_size.bytes()];
        for pgno in 1..=self.db_pages {
            if pgno != self.page_size.lock_pgno() {
                self.read_page(pgno, &mut buf)?;
                sum.add(pgno, &buf);
            }
        }
        Ok(sum.value())
    }

    /// Writes one transaction: `pages` (page number, content; ascending,
    /// each once, none past `commit`) then a database of `commit` pages.
    /// `read(i, buf)` fills page `pages[i]`. The frames go after the
    /// committed ones (or start a new WAL generation when there are none),
    /// are fsynced, then published (see the module docs). Returns the
    /// frames written.
    ///
    /// # Errors
    /// I/O errors; an empty transaction. On error nothing is published
    /// (frames past the committed end are ignored by every reader and by
    /// SQLite's recovery, as an interrupted writer's are).
    pub fn append(
        &mut self,
        pages: &[Pgno],
        commit: u32,
        mut read: impl FnMut(usize, &mut [u8]) -> Result<()>,
    ) -> Result<u32> {
        if pages.is_empty() {
            bail!("an empty transaction cannot be written");
        }
        if matches!(self.mode, Mode::Released) {
            bail!("a session that let go of its wal-index locks cannot write");
        }
        let ps = self.page_size;
        let psz = ps.bytes();
        let fsz = WAL_FRAME_HEADER_SIZE + psz;
        let start = self.end.max_frame;
        // The generation: the current one, or a new header.
        let (order, salt1, salt2, mut sum) = match self.end.generation {
            Some((o, s1, s2)) if start > 0 => (o, s1, s2, self.end.checksum),
            _ => {
                let (seq, old1) = match &self.mode {
                    Mode::Online { header, .. } => (1, header.salt1),
                    Mode::Offline | Mode::Released => (0, random_u32()),
                };
                let (s1, s2) = (old1.wrapping_add(1), random_u32());
                let hb = WalHeader::to_bytes(NATIVE, ps, seq, s1, s2);
                self.wal
                    .write_all_at(&hb, 0)
                    .with_context(|| format!("{}: writing the header", self.wal_path.display()))?;
                self.wal
                    .sync_data()
                    .with_context(|| format!("{}: fsync", self.wal_path.display()))?;
                let h = WalHeader::parse(&hb).expect("a header we built");
                (NATIVE, s1, s2, h.checksum)
            }
        };
        let mut buf: Vec<u8> = Vec::with_capacity(fsz * 64);
        let mut at = WAL_HEADER_SIZE as u64 + u64::from(start) * fsz as u64;
        let mut page = vec![0u8; psz];
        for (i, &pgno) in pages.iter().enumerate() {
            read(i, &mut page)?;
            let last = i + 1 == pages.len();
            let mut fh = FrameHeader {
                pgno,
                commit: if last { commit } else { 0 },
                salt1,
                salt2,
                checksum: [0, 0],
            };
            let head = fh.to_bytes();
            sum = wal::checksum(order, &page, wal::checksum(order, &head[..8], sum));
            fh.checksum = sum;
            buf.extend_from_slice(&fh.to_bytes());
            buf.extend_from_slice(&page);
            if buf.len() >= fsz * 64 || last {
                self.wal
                    .write_all_at(&buf, at)
                    .with_context(|| format!("{}: writing frames", self.wal_path.display()))?;
                at += buf.len() as u64;
                buf.clear();
            }
        }
        self.wal
            .sync_data()
            .with_context(|| format!("{}: fsync", self.wal_path.display()))?;
        super::crash_point("wal");
        let n = pages.len() as u32;
        let max_frame = start + n;
        if let Mode::Online { shm, header } = &mut self.mode {
            let need = wal::shm_size_for(max_frame);
            if shm.len < need {
                grow_shm(&self.shm_file, shm.len, need)?;
                *shm = SharedShm::map(&self.shm_file, need)?;
            }
            for (i, &pgno) in pages.iter().enumerate() {
                wal::index_append(shm, start, start + 1 + i as u32, pgno)
                    .map_err(|e| anyhow::anyhow!("{}-shm: {e}", self.path.display()))?;
            }
            let h = ShmHeader {
                change: header.change.wrapping_add(1),
                page_size: Some(ps),
                max_frame,
                db_pages: commit,
                salt1,
                salt2,
                frame_checksum: sum,
                wal_order: order,
                ..*header
            };
            let bytes = h.to_bytes();
            // Second copy, barrier, first copy: a reader compares them.
            shm.write(SHM_COPY_SIZE, &bytes);
            fence(Ordering::SeqCst);
            shm.write(0, &bytes);
            fence(Ordering::SeqCst);
            *header = h;
        }
        self.end = WalEnd {
            max_frame,
            generation: Some((order, salt1, salt2)),
            checksum: sum,
        };
        self.db_pages = commit;
        Ok(n)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the descriptors releases the locks; say so explicitly
        // for the write lock first (the order SQLite releases them in).
        let _ = set_lock(&self.shm_file, Lock::Unlock, SHM_WRITE_LOCK, 1);
    }
}

/// Opens (creating) a file beside the database with the database file's
/// permissions, as SQLite creates its `-wal` and `-shm` files.
fn open_side(p: &Path, db: &File) -> Result<File> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mode = db
        .metadata()
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0o644);
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(mode)
        .open(p)
        .with_context(|| format!("{}: cannot open", p.display()))
}

/// Extends the wal-index file from `from` to `to` bytes with zeros written
/// (not a sparse hole: a page that cannot be allocated later would be a
/// fault in every process mapping it), as SQLite does.
fn grow_shm(f: &File, from: usize, to: usize) -> Result<()> {
    let zeros = vec![0u8; SHM_PAGE_SIZE];
    let mut at = from - from % SHM_PAGE_SIZE;
    while at < to {
        f.write_all_at(&zeros, at as u64)
            .context("extending the wal-index")?;
        at += SHM_PAGE_SIZE;
    }
    Ok(())
}

/// A salt: different from the last generation's with overwhelming
/// probability (the time and process mixed through SplitMix64).
fn random_u32() -> u32 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut r = ltx_core::rng::SplitMix64::new(t ^ (u64::from(std::process::id()) << 32));
    r.next_u64() as u32
}

/// SQLite's checkpoint of `path`'s WAL into the database file, through a
/// connection of its own (`PRAGMA wal_checkpoint(TRUNCATE)`: copy every
/// frame, then truncate the WAL when no reader still uses it), waiting up
/// to `busy` for locks. A connection that is the last one to close also
/// removes the WAL and wal-index, as SQLite always does. Returns
/// (frames in the WAL, frames copied) as SQLite reports them (-1, -1 when
/// it could not run).
///
/// # Errors
/// The database cannot be opened.
pub fn checkpoint(path: &Path, busy: std::time::Duration) -> Result<(i64, i64)> {
    use rusqlite::OpenFlags;
    let c = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("{}: opening with SQLite to checkpoint", path.display()))?;
    c.busy_timeout(busy)
        .with_context(|| format!("{}: busy timeout", path.display()))?;
    let r = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    drop(c);
    Ok(r.unwrap_or((-1, -1)))
}
