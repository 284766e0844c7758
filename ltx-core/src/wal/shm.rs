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
    /// The database page size.
    pub page_size: PageSize,
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
        let page_size = PageSize::new(ps).ok_or(ShmProblem::BadPageSize(ps))?;
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
        })
    }
}
