//! The header of SQLite's wal-index (the `-shm` file): which WAL
//! generation the database's connections use, and how much of it a
//! checkpoint already copied into the database file.
//!
//! ```text
//! 0..48    WalIndexHdr, first copy      (fields in the writer's native byte order)
//!            iVersion u32 (3007000) | unused u32 | iChange u32 | isInit u8
//!            | bigEndCksum u8 | szPage u16 (1 = 65536) | mxFrame u32 | nPage u32
//!            | aFrameCksum u32[2] | aSalt u32[2] (the WAL header's bytes 16..24, copied)
//!            | aCksum u32[2] (SQLite's checksum of bytes 0..40, native order)
//! 48..96   WalIndexHdr, second copy (SQLite writes both; a reader trusts them when equal)
//! 96..136  WalCkptInfo: nBackfill u32 | aReadMark u32[5] | aLock u8[8]
//!            | nBackfillAttempted u32 | notUsed0 u32
//! ```
//!
//! `nBackfill` frames from the WAL's start are already in the database
//! file; SQLite's checkpoints only stop at a commit frame, so a
//! transaction is either wholly backfilled or not at all.
//!
//! ## The hash tables (which frame holds a page)
//!
//! After the header the file is a sequence of 32 KiB wal-index pages
//! ([`SHM_PAGE_SIZE`]); the first one starts with the 136 header bytes.
//! Each page holds, in the writer's native byte order, the page numbers of
//! 4096 consecutive frames (`aPgno`, 4062 in the first page, whose header
//! takes the room of 34) followed by a hash table of 8192 `u16` slots
//! (`aHash`, at byte 16384 of the page). Frame `F` is indexed by page
//! [`frame_page`]`(F)`; within it, `idx = F - zero` where `zero` is the
//! frame before the page's first (0, 4062, 8158, …). `aPgno[idx - 1]` is
//! the frame's database page `P`; the slot found by probing from
//! `(P * 383) % 8192` (then +1, wrapping) to the first empty one holds
//! `idx`. A reader looks a page up from the newest wal-index page down,
//! and within one takes the last match in the probe sequence whose frame
//! is within its snapshot ([`index_lookup`]). Writers append entries with
//! [`index_append`], which first zeroes a page on its first entry and
//! removes the leftovers of an interrupted writer past the committed
//! `mxFrame`, as SQLite's `walIndexAppend` does; a writer publishes the
//! new frames by writing the header (second copy first, then the first),
//! so a reader sees either the old header, two copies that differ (and
//! retries), or the new one.
//!
//! The functions work on any [`ShmMemory`]: a byte slice in tests, shared
//! memory with atomic loads and stores in a writer that other processes
//! read concurrently.

use std::fmt;

use super::{checksum, ByteOrder, WAL_VERSION};
use crate::types::PageSize;

/// Bytes of the wal-index header this module reads (two header copies and
/// the checkpoint information).
pub const SHM_HEADER_SIZE: usize = 136;

/// A wal-index header whose two copies agree and whose checksum holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmHeader {
    /// The byte order the writer used for the wal-index (its native one).
    pub native_order: ByteOrder,
    /// Incremented at each write transaction.
    pub change: u32,
    /// The database page size (`None` in a wal-index SQLite rebuilt from
    /// an empty WAL: no frame has said it yet).
    pub page_size: Option<PageSize>,
    /// The last valid frame of the WAL (a count of frames from the start).
    pub max_frame: u32,
    /// The database size in pages after the last committed transaction.
    pub db_pages: u32,
    /// The WAL header's salt 1 for the generation in use.
    pub salt1: u32,
    /// Salt 2.
    pub salt2: u32,
    /// Frames from the WAL's start already copied into the database file.
    pub backfilled: u32,
    /// The checksum of the last valid frame (where the next frame's
    /// checksum continues from).
    pub frame_checksum: [u32; 2],
    /// The byte order of the WAL's checksum words (`bigEndCksum`).
    pub wal_order: ByteOrder,
}

/// Why a wal-index header cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShmProblem {
    /// Fewer than [`SHM_HEADER_SIZE`] bytes.
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// The version is 3007000 in neither byte order.
    BadVersion,
    /// `isInit` is not 1 (no connection has built the index).
    NotInitialized,
    /// The two header copies differ (a writer was interrupted, or is
    /// writing now).
    CopiesDiffer,
    /// The header checksum does not hold.
    ChecksumMismatch,
    /// The page size field is not a valid page size.
    BadPageSize(u32),
}

impl fmt::Display for ShmProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ShmProblem::Truncated { len } => write!(
                f,
                "{len} bytes, expected at least {SHM_HEADER_SIZE} of wal-index header"
            ),
            ShmProblem::BadVersion => write!(f, "wal-index version is not 3007000"),
            ShmProblem::NotInitialized => write!(f, "wal-index header is not initialized"),
            ShmProblem::CopiesDiffer => write!(
                f,
                "the two copies of the wal-index header differ (a write in progress or interrupted)"
            ),
            ShmProblem::ChecksumMismatch => write!(f, "wal-index header checksum mismatch"),
            ShmProblem::BadPageSize(p) => write!(f, "wal-index page size {p} is not valid"),
        }
    }
}

impl ShmHeader {
    /// Parses the first [`SHM_HEADER_SIZE`] bytes of a `-shm` file.
    ///
    /// ```
    /// use ltx_core::wal::{ShmHeader, ShmProblem};
    /// assert_eq!(ShmHeader::parse(&[0u8; 10]), Err(ShmProblem::Truncated { len: 10 }));
    /// assert_eq!(ShmHeader::parse(&[0u8; 136]), Err(ShmProblem::BadVersion));
    /// ```
    ///
    /// # Errors
    /// The first [`ShmProblem`] found.
    pub fn parse(b: &[u8]) -> Result<ShmHeader, ShmProblem> {
        if b.len() < SHM_HEADER_SIZE {
            return Err(ShmProblem::Truncated { len: b.len() });
        }
        let raw = [b[0], b[1], b[2], b[3]];
        let order = if u32::from_le_bytes(raw) == WAL_VERSION {
            ByteOrder::Little
        } else if u32::from_be_bytes(raw) == WAL_VERSION {
            ByteOrder::Big
        } else {
            return Err(ShmProblem::BadVersion);
        };
        let u32_at = |at: usize| {
            let w = [b[at], b[at + 1], b[at + 2], b[at + 3]];
            match order {
                ByteOrder::Little => u32::from_le_bytes(w),
                ByteOrder::Big => u32::from_be_bytes(w),
            }
        };
        if b[12] != 1 {
            return Err(ShmProblem::NotInitialized);
        }
        if b[..48] != b[48..96] {
            return Err(ShmProblem::CopiesDiffer);
        }
        if checksum(order, &b[..40], [0, 0]) != [u32_at(40), u32_at(44)] {
            return Err(ShmProblem::ChecksumMismatch);
        }
        let sz = match order {
            ByteOrder::Little => u16::from_le_bytes([b[14], b[15]]),
            ByteOrder::Big => u16::from_be_bytes([b[14], b[15]]),
        };
        // SQLite stores 65536 as (65536 & 0xff00) | (65536 >> 16) = 1.
        let ps = if sz == 1 { 65536 } else { u32::from(sz) };
        let page_size = match ps {
            0 => None,
            _ => Some(PageSize::new(ps).ok_or(ShmProblem::BadPageSize(ps))?),
        };
        let be = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Ok(ShmHeader {
            native_order: order,
            change: u32_at(8),
            page_size,
            max_frame: u32_at(16),
            db_pages: u32_at(20),
            // Copied byte for byte from the WAL header, so big-endian.
            salt1: be(32),
            salt2: be(36),
            backfilled: u32_at(96),
            frame_checksum: [u32_at(24), u32_at(28)],
            wal_order: if b[13] != 0 {
                ByteOrder::Big
            } else {
                ByteOrder::Little
            },
        })
    }

    /// One copy of the header (48 bytes) as SQLite writes it: version
    /// 3007000, `isInit` 1, the fields of `self` in `native_order` (the
    /// salts as the WAL header's bytes), and the checksum of bytes 0..40.
    /// `backfilled` is not part of it (it lives in the checkpoint
    /// information after the two copies).
    ///
    /// ```
    /// use ltx_core::wal::{ByteOrder, ShmHeader};
    /// use ltx_core::PageSize;
    /// let h = ShmHeader {
    ///     native_order: ByteOrder::Little, change: 7, page_size: PageSize::new(65536),
    ///     max_frame: 3, db_pages: 9, salt1: 1, salt2: 2, backfilled: 0,
    ///     frame_checksum: [5, 6], wal_order: ByteOrder::Little,
    /// };
    /// let one = h.to_bytes();
    /// let mut shm = [0u8; 136];
    /// shm[..48].copy_from_slice(&one);
    /// shm[48..96].copy_from_slice(&one);
    /// assert_eq!(ShmHeader::parse(&shm), Ok(h));
    /// ```
    pub fn to_bytes(&self) -> [u8; SHM_COPY_SIZE] {
        let mut b = [0u8; SHM_COPY_SIZE];
        let put = |b: &mut [u8; SHM_COPY_SIZE], at: usize, v: u32| {
            let w = match self.native_order {
                ByteOrder::Little => v.to_le_bytes(),
                ByteOrder::Big => v.to_be_bytes(),
            };
            b[at..at + 4].copy_from_slice(&w);
        };
        put(&mut b, 0, WAL_VERSION);
        put(&mut b, 8, self.change);
        b[12] = 1;
        b[13] = u8::from(self.wal_order == ByteOrder::Big);
        let ps = self.page_size.map_or(0, PageSize::get);
        let sz = ((ps & 0xff00) | (ps >> 16)) as u16;
        let szb = match self.native_order {
            ByteOrder::Little => sz.to_le_bytes(),
            ByteOrder::Big => sz.to_be_bytes(),
        };
        b[14..16].copy_from_slice(&szb);
        put(&mut b, 16, self.max_frame);
        put(&mut b, 20, self.db_pages);
        put(&mut b, 24, self.frame_checksum[0]);
        put(&mut b, 28, self.frame_checksum[1]);
        b[32..36].copy_from_slice(&self.salt1.to_be_bytes());
        b[36..40].copy_from_slice(&self.salt2.to_be_bytes());
        let c = checksum(self.native_order, &b[..40], [0, 0]);
        put(&mut b, 40, c[0]);
        put(&mut b, 44, c[1]);
        b
    }
}

/// Bytes of one copy of the wal-index header.
pub const SHM_COPY_SIZE: usize = 48;
/// Offset of `nBackfill` (frames already copied into the database file).
pub const SHM_BACKFILL_OFFSET: usize = 96;
/// Bytes of one wal-index page: 4096 page numbers and 8192 hash slots.
pub const SHM_PAGE_SIZE: usize = 32768;
/// Frames indexed by one wal-index page (but the first).
const NPAGE: u32 = 4096;
/// Hash slots per wal-index page.
const NSLOT: usize = 8192;
/// Frames indexed by the first wal-index page (the header takes the room
/// of 34 page numbers).
pub const FIRST_PAGE_FRAMES: u32 = NPAGE - (SHM_HEADER_SIZE / 4) as u32;

/// The wal-index page indexing frame `frame` (1-based), as SQLite's
/// `walFramePage`.
///
/// ```
/// use ltx_core::wal::frame_page;
/// assert_eq!((frame_page(1), frame_page(4062), frame_page(4063)), (0, 0, 1));
/// assert_eq!((frame_page(4062 + 4096), frame_page(4062 + 4097)), (1, 2));
/// ```
pub fn frame_page(frame: u32) -> usize {
    ((u64::from(frame) + u64::from(NPAGE) - u64::from(FIRST_PAGE_FRAMES) - 1) / u64::from(NPAGE))
        as usize
}

/// The frame before the first one that wal-index page `page` indexes.
fn page_zero(page: usize) -> u32 {
    if page == 0 {
        0
    } else {
        FIRST_PAGE_FRAMES + (page as u32 - 1) * NPAGE
    }
}

/// Byte offset of `aPgno[0]` of wal-index page `page`.
fn pgno_base(page: usize) -> usize {
    page * SHM_PAGE_SIZE + if page == 0 { SHM_HEADER_SIZE } else { 0 }
}

/// Byte offset of `aHash[0]` of wal-index page `page`.
fn hash_base(page: usize) -> usize {
    page * SHM_PAGE_SIZE + NPAGE as usize * 4
}

/// The first hash slot probed for database page `pgno`.
fn hash_of(pgno: u32) -> usize {
    (pgno.wrapping_mul(383) as usize) & (NSLOT - 1)
}

/// Bytes a wal-index must have to index `frames` frames (whole pages).
pub fn shm_size_for(frames: u32) -> usize {
    (frame_page(frames.max(1)) + 1) * SHM_PAGE_SIZE
}

/// Memory holding a wal-index: loads and stores of `u32` and `u16` words
/// in the writer's native byte order at byte offsets (4- and 2-aligned).
/// A byte slice implements it for tests; a writer sharing the memory with
/// other processes implements it with atomic loads and stores.
pub trait ShmMemory {
    /// Bytes available.
    fn shm_len(&self) -> usize;
    /// The `u32` at byte `at`.
    fn load_u32(&self, at: usize) -> u32;
    /// Stores a `u32` at byte `at`.
    fn store_u32(&mut self, at: usize, v: u32);
    /// The `u16` at byte `at`.
    fn load_u16(&self, at: usize) -> u16;
    /// Stores a `u16` at byte `at`.
    fn store_u16(&mut self, at: usize, v: u16);
}

impl ShmMemory for [u8] {
    fn shm_len(&self) -> usize {
        self.len()
    }
    fn load_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes([self[at], self[at + 1], self[at + 2], self[at + 3]])
    }
    fn store_u32(&mut self, at: usize, v: u32) {
        self[at..at + 4].copy_from_slice(&v.to_ne_bytes());
    }
    fn load_u16(&self, at: usize) -> u16 {
        u16::from_ne_bytes([self[at], self[at + 1]])
    }
    fn store_u16(&mut self, at: usize, v: u16) {
        self[at..at + 2].copy_from_slice(&v.to_ne_bytes());
    }
}

/// Why a wal-index entry cannot be written or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexProblem {
    /// The memory is shorter than the wal-index page the frame needs.
    TooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes there.
        len: usize,
    },
    /// Frame 0, or a frame at or before the committed last frame.
    BadFrame {
        /// The frame.
        frame: u32,
        /// The committed last frame.
        max_frame: u32,
    },
    /// A probe sequence longer than the entries of its page (SQLite's
    /// `SQLITE_CORRUPT` in `walIndexAppend` / `walFindFrame`).
    Corrupt {
        /// The wal-index page.
        page: usize,
    },
}

impl fmt::Display for IndexProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexProblem::TooSmall { need, len } => {
                write!(f, "wal-index of {len} bytes, {need} needed")
            }
            IndexProblem::BadFrame { frame, max_frame } => write!(
                f,
                "frame {frame} cannot be appended after committed frame {max_frame}"
            ),
            IndexProblem::Corrupt { page } => {
                write!(f, "wal-index page {page}: hash table probe does not end")
            }
        }
    }
}

impl std::error::Error for IndexProblem {}

/// The database page of frame `frame` as the wal-index records it (0 if
/// none).
///
/// # Errors
/// [`IndexProblem::TooSmall`].
pub fn index_frame_pgno<M: ShmMemory + ?Sized>(m: &M, frame: u32) -> Result<u32, IndexProblem> {
    let page = frame_page(frame);
    let at = pgno_base(page) + 4 * (frame - page_zero(page) - 1) as usize;
    if at + 4 > m.shm_len() {
        return Err(IndexProblem::TooSmall {
            need: at + 4,
            len: m.shm_len(),
        });
    }
    Ok(m.load_u32(at))
}

/// Records that frame `frame` holds database page `pgno`, as SQLite's
/// `walIndexAppend`: `max_frame` is the committed last frame (the
/// header's `mxFrame`, before the transaction being written); frames are
/// appended in order from `max_frame + 1`. The page number is stored
/// before the hash slot, so a reader that finds the slot finds the page
/// number.
///
/// ```
/// use ltx_core::wal::{index_append, index_lookup, shm_size_for};
/// let mut shm = vec![0u8; shm_size_for(3)];
/// index_append(&mut shm[..], 0, 1, 7).unwrap();
/// index_append(&mut shm[..], 0, 2, 8).unwrap();
/// index_append(&mut shm[..], 0, 3, 7).unwrap();
/// assert_eq!(index_lookup(&shm[..], 7, 1, 3).unwrap(), Some(3));
/// assert_eq!(index_lookup(&shm[..], 7, 1, 2).unwrap(), Some(1)); // an older snapshot
/// assert_eq!(index_lookup(&shm[..], 9, 1, 3).unwrap(), None);
/// ```
///
/// # Errors
/// [`IndexProblem`]: memory too small for the frame's wal-index page, a
/// frame not after `max_frame`, a corrupt hash table.
pub fn index_append<M: ShmMemory + ?Sized>(
    m: &mut M,
    max_frame: u32,
    frame: u32,
    pgno: u32,
) -> Result<(), IndexProblem> {
    if frame == 0 || frame <= max_frame {
        return Err(IndexProblem::BadFrame { frame, max_frame });
    }
    let page = frame_page(frame);
    let need = (page + 1) * SHM_PAGE_SIZE;
    if m.shm_len() < need {
        return Err(IndexProblem::TooSmall {
            need,
            len: m.shm_len(),
        });
    }
    let idx = frame - page_zero(page);
    let (pg, hs) = (pgno_base(page), hash_base(page));
    if idx == 1 {
        // The page's first entry: clear what an older generation left.
        for at in (pg..hs).step_by(4) {
            m.store_u32(at, 0);
        }
        for at in (hs..hs + 2 * NSLOT).step_by(2) {
            m.store_u16(at, 0);
        }
    }
    if m.load_u32(pg + 4 * (idx as usize - 1)) != 0 {
        cleanup(m, max_frame);
    }
    let mut key = hash_of(pgno);
    let mut collide = idx;
    while m.load_u16(hs + 2 * key) != 0 {
        if collide == 0 {
            return Err(IndexProblem::Corrupt { page });
        }
        collide -= 1;
        key = (key + 1) & (NSLOT - 1);
    }
    m.store_u32(pg + 4 * (idx as usize - 1), pgno);
    m.store_u16(hs + 2 * key, idx as u16);
    Ok(())
}

/// SQLite's `walCleanupHash`: removes the entries past `max_frame` from
/// the wal-index page holding it (left by a writer that did not commit).
fn cleanup<M: ShmMemory + ?Sized>(m: &mut M, max_frame: u32) {
    if max_frame == 0 {
        return;
    }
    let page = frame_page(max_frame);
    let limit = max_frame - page_zero(page);
    let (pg, hs) = (pgno_base(page), hash_base(page));
    for i in 0..NSLOT {
        if u32::from(m.load_u16(hs + 2 * i)) > limit {
            m.store_u16(hs + 2 * i, 0);
        }
    }
    for at in (pg + 4 * limit as usize..hs).step_by(4) {
        m.store_u32(at, 0);
    }
}

/// The newest frame in `min_frame..=max_frame` that holds database page
/// `pgno`, as SQLite's `walFindFrame` (a reader's snapshot is `max_frame`;
/// frames before `min_frame` are already in the database file).
///
/// # Errors
/// [`IndexProblem::TooSmall`] for a snapshot past the memory,
/// [`IndexProblem::Corrupt`] for a probe sequence that does not end.
pub fn index_lookup<M: ShmMemory + ?Sized>(
    m: &M,
    pgno: u32,
    min_frame: u32,
    max_frame: u32,
) -> Result<Option<u32>, IndexProblem> {
    if max_frame == 0 || min_frame > max_frame {
        return Ok(None);
    }
    let need = (frame_page(max_frame) + 1) * SHM_PAGE_SIZE;
    if m.shm_len() < need {
        return Err(IndexProblem::TooSmall {
            need,
            len: m.shm_len(),
        });
    }
    for page in (frame_page(min_frame.max(1))..=frame_page(max_frame)).rev() {
        let (zero, pg, hs) = (page_zero(page), pgno_base(page), hash_base(page));
        let mut found = None;
        let mut key = hash_of(pgno);
        let mut collide = NSLOT;
        loop {
            let h = u32::from(m.load_u16(hs + 2 * key));
            if h == 0 {
                break;
            }
            let f = zero + h;
            if f <= max_frame && f >= min_frame && m.load_u32(pg + 4 * (h as usize - 1)) == pgno {
                found = Some(f);
            }
            if collide == 0 {
                return Err(IndexProblem::Corrupt { page });
            }
            collide -= 1;
            key = (key + 1) & (NSLOT - 1);
        }
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}
