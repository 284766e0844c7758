//! SQLite's write-ahead log (the `-wal` file) and its committed
//! transactions as LTX files, without I/O.
//!
//! ## Byte layout (SQLite's, <https://www.sqlite.org/fileformat2.html#walformat>)
//!
//! ```text
//! header  32 B   magic u32 (0x377f0682: checksum words little-endian, 0x377f0683: big-endian)
//!                | version u32 (3007000) | page_size u32 (512..=65536) | checkpoint_seq u32
//!                | salt1 u32 | salt2 u32 | checksum1 u32 | checksum2 u32 (over bytes 0..24)
//! frame   24 B   pgno u32 | commit u32 (database size in pages on a commit frame, else 0)
//!                | salt1 u32 | salt2 u32 | checksum1 u32 | checksum2 u32
//!         + page_size bytes of page
//! ```
//!
//! Every field is stored big-endian; only the words the checksum adds up
//! are read in the byte order the magic names. A frame's checksum
//! continues from the previous valid frame's (the header's for the first)
//! over the frame header's first 8 bytes and the page ([`checksum`]).
//!
//! ## Which frames count (SQLite's rules; `spec/SPEC.md` section 19)
//!
//! 1. A header with a wrong magic, a page size that is not a power of two
//!    in 512..=65536, a wrong checksum or a version other than 3007000
//!    means the WAL has no valid frames.
//! 2. A frame is valid only if its salts equal the header's, its page
//!    number is not 0 and its checksum equals the running checksum.
//! 3. The first invalid (or incomplete) frame ends the WAL: nothing after
//!    it counts, whatever it holds. After a checkpoint SQLite *restarts*
//!    the WAL (new salts, frames written from offset 32 again); the older
//!    frames left behind carry the old salts and end it there.
//! 4. Only frames up to the last valid commit frame are part of the
//!    database; valid frames after it are an uncommitted tail.
//!
//! ## Pieces
//!
//! - [`WalReader`]: a streaming reader (bytes in, [`WalEvent`]s out) in the
//!   style of [`crate::Decoder`]; it keeps at most one frame and the page
//!   list of the transaction in progress.
//! - [`scan`]: the same over a WAL held in memory, collecting every
//!   committed [`Transaction`].
//! - [`encode_transaction`] and [`LtxChain`]: one committed transaction as
//!   an L0 LTX file, as Litestream writes it, with the rolling database
//!   checksum updated from the pages the transaction replaces.
//! - [`WalBuilder`]: writes WAL bytes, for tests and tools.
//! - [`ShmHeader`]: the wal-index (`-shm`) header: the WAL generation in
//!   use and how many frames a checkpoint already copied into the database;
//!   [`index_append`] and [`index_lookup`]: its hash tables (which frame
//!   holds a page), as SQLite writes and reads them.
//!
//! ## Example: a WAL of two transactions, as LTX files
//!
//! ```
//! use ltx_core::wal::{self, ByteOrder, LtxChain, WalBuilder};
//! use ltx_core::{checksum::database_checksum, LtxFile, PageSize, TxId};
//!
//! let ps = PageSize::new(512).unwrap();
//! // The database before the WAL: 2 pages.
//! let db = [[1u8; 512], [2u8; 512]].concat();
//!
//! let mut w = Vec::new();
//! let mut b = WalBuilder::new(ps, ByteOrder::Little, 0, 7, 9, &mut w);
//! b.frame(&mut w, 2, 0, &[3u8; 512]);
//! b.frame(&mut w, 3, 3, &[4u8; 512]); // commit: the database has 3 pages
//! b.frame(&mut w, 1, 3, &[5u8; 512]); // a second transaction
//! b.frame(&mut w, 2, 0, &[6u8; 512]); // not committed: ignored
//!
//! let scan = wal::scan(&w);
//! assert_eq!(scan.transactions.len(), 2);
//! assert_eq!(scan.end.uncommitted_frames, 1);
//!
//! let sum = database_checksum(ps, &db);
//! let mut chain = LtxChain::new(ps, 2, Some(sum), TxId(2));
//! fn page(bytes: &[u8], off: u64, buf: &mut [u8]) -> Result<(), std::convert::Infallible> {
//!     buf.copy_from_slice(&bytes[off as usize..off as usize + buf.len()]);
//!     Ok(())
//! }
//! for txn in &scan.transactions {
//!     let mut out = Vec::new();
//!     let done = chain
//!         .encode(
//!             txn,
//!             1_700_000_000_000,
//!             |off, buf| page(&w, off, buf),
//!             |pgno, buf| page(&db, u64::from(pgno - 1) * 512, buf),
//!             &mut out,
//!         )
//!         .unwrap();
//!     let file = LtxFile::parse(&out).unwrap();
//!     file.verify().unwrap();
//!     assert_eq!(file.header().wal_offset as u64, txn.offset);
//!     assert_eq!(done.header.min_txid, done.header.max_txid);
//! }
//! assert_eq!(chain.next_txid(), TxId(4));
//! ```

mod builder;
mod ltx;
mod reader;
mod shm;

pub use builder::WalBuilder;
pub use ltx::{
    encode_transaction, EncodedTxn, LtxChain, LtxParams, PageAt, PageRef, WalIndex, WalLtxError,
};
pub use reader::{
    scan, Transaction, TxnPage, WalEnd, WalEndReason, WalEvent, WalFrame, WalReader, WalScan,
};
pub use shm::{
    frame_page, index_append, index_frame_pgno, index_lookup, shm_size_for, IndexProblem,
    ShmHeader, ShmMemory, ShmProblem, FIRST_PAGE_FRAMES, SHM_BACKFILL_OFFSET, SHM_COPY_SIZE,
    SHM_HEADER_SIZE, SHM_PAGE_SIZE,
};

use std::fmt;

use crate::types::{PageSize, Pgno};

/// Size of the WAL header.
pub const WAL_HEADER_SIZE: usize = 32;
/// Size of a frame header.
pub const WAL_FRAME_HEADER_SIZE: usize = 24;
/// The magic of a WAL whose checksum words are little-endian.
pub const WAL_MAGIC_LE: u32 = 0x377f_0682;
/// The magic of a WAL whose checksum words are big-endian.
pub const WAL_MAGIC_BE: u32 = 0x377f_0683;
/// The only WAL format version (SQLite 3.7.0).
pub const WAL_VERSION: u32 = 3_007_000;

/// The byte order of the 32-bit words the WAL checksum adds up (the low bit
/// of the magic). Stored fields are big-endian either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    /// Magic `0x377f0682` (what SQLite writes on little-endian machines).
    Little,
    /// Magic `0x377f0683`.
    Big,
}

impl ByteOrder {
    /// The magic that selects this order.
    pub const fn magic(self) -> u32 {
        match self {
            ByteOrder::Little => WAL_MAGIC_LE,
            ByteOrder::Big => WAL_MAGIC_BE,
        }
    }
}

impl fmt::Display for ByteOrder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ByteOrder::Little => "little-endian",
            ByteOrder::Big => "big-endian",
        })
    }
}

/// SQLite's WAL checksum of `data` (a multiple of 8 bytes), continuing from
/// `seed` (`[0, 0]` for the header; the previous frame's checksum, or the
/// header's, for a frame).
///
/// `data` is read as 32-bit words `x[0..n]` in `order`, and for each pair
/// `s0 += x[i] + s1; s1 += x[i+1] + s0` (wrapping). Trailing bytes short of
/// 8 are ignored (SQLite never passes any).
///
/// ```
/// use ltx_core::wal::{checksum, ByteOrder};
/// let words = [1u32.to_le_bytes(), 2u32.to_le_bytes()].concat();
/// assert_eq!(checksum(ByteOrder::Little, &words, [0, 0]), [1, 3]);
/// // Continuing is the same as one pass over both parts.
/// let twice = [words.clone(), words.clone()].concat();
/// let first = checksum(ByteOrder::Little, &words, [0, 0]);
/// assert_eq!(checksum(ByteOrder::Little, &words, first), checksum(ByteOrder::Little, &twice, [0, 0]));
/// ```
pub fn checksum(order: ByteOrder, data: &[u8], seed: [u32; 2]) -> [u32; 2] {
    let [mut s0, mut s1] = seed;
    let chunks = data.chunks_exact(8);
    match order {
        ByteOrder::Little => {
            for c in chunks {
                let a = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                let b = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
                s0 = s0.wrapping_add(a).wrapping_add(s1);
                s1 = s1.wrapping_add(b).wrapping_add(s0);
            }
        }
        ByteOrder::Big => {
            for c in chunks {
                let a = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
                let b = u32::from_be_bytes([c[4], c[5], c[6], c[7]]);
                s0 = s0.wrapping_add(a).wrapping_add(s1);
                s1 = s1.wrapping_add(b).wrapping_add(s0);
            }
        }
    }
    [s0, s1]
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A WAL header that passed SQLite's checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WalHeader {
    /// Byte order of the checksum words (from the magic).
    pub byte_order: ByteOrder,
    /// The page size.
    pub page_size: PageSize,
    /// Checkpoint sequence number (SQLite adds 1 at each WAL restart).
    pub checkpoint_seq: u32,
    /// Salt 1 (SQLite adds 1 at each WAL restart).
    pub salt1: u32,
    /// Salt 2 (random at each WAL restart).
    pub salt2: u32,
    /// The stored header checksum, which is also where frame checksums start.
    pub checksum: [u32; 2],
}

/// Why a WAL header is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderProblem {
    /// Fewer than 32 bytes.
    Truncated {
        /// Bytes present.
        len: u64,
    },
    /// The magic is neither `0x377f0682` nor `0x377f0683`.
    BadMagic(u32),
    /// Not a power of two in 512..=65536.
    BadPageSize(u32),
    /// The checksum over bytes 0..24 does not match bytes 24..32.
    ChecksumMismatch {
        /// Stored.
        stored: [u32; 2],
        /// Computed.
        computed: [u32; 2],
    },
    /// The version is not 3007000 (SQLite refuses to open such a WAL).
    BadVersion(u32),
}

impl fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderProblem::Truncated { len } => {
                write!(f, "{len} bytes, expected a 32-byte WAL header")
            }
            HeaderProblem::BadMagic(m) => write!(
                f,
                "bad WAL magic 0x{m:08x}, expected 0x377f0682 or 0x377f0683"
            ),
            HeaderProblem::BadPageSize(p) => write!(
                f,
                "bad WAL page size {p}, expected a power of two in 512..=65536"
            ),
            HeaderProblem::ChecksumMismatch { stored, computed } => write!(
                f,
                "WAL header checksum is {:08x}{:08x}, bytes 0..24 give {:08x}{:08x}",
                stored[0], stored[1], computed[0], computed[1]
            ),
            HeaderProblem::BadVersion(v) => {
                write!(f, "WAL format version {v}, expected 3007000")
            }
        }
    }
}

impl WalHeader {
    /// Parses and checks the first 32 bytes of a WAL in SQLite's order:
    /// magic and page size, then the checksum, then the version.
    ///
    /// ```
    /// use ltx_core::wal::{ByteOrder, WalBuilder, WalHeader, HeaderProblem};
    /// use ltx_core::PageSize;
    /// let mut w = Vec::new();
    /// WalBuilder::new(PageSize::new(4096).unwrap(), ByteOrder::Big, 3, 10, 20, &mut w);
    /// let h = WalHeader::parse(&w).unwrap();
    /// assert_eq!((h.byte_order, h.checkpoint_seq, h.salt1, h.salt2), (ByteOrder::Big, 3, 10, 20));
    /// w[20] ^= 1;
    /// assert!(matches!(WalHeader::parse(&w), Err(HeaderProblem::ChecksumMismatch { .. })));
    /// ```
    ///
    /// # Errors
    /// The first [`HeaderProblem`] found.
    pub fn parse(b: &[u8]) -> Result<WalHeader, HeaderProblem> {
        if b.len() < WAL_HEADER_SIZE {
            return Err(HeaderProblem::Truncated {
                len: b.len() as u64,
            });
        }
        let b = &b[..WAL_HEADER_SIZE];
        let magic = be32(b, 0);
        let byte_order = match magic {
            WAL_MAGIC_LE => ByteOrder::Little,
            WAL_MAGIC_BE => ByteOrder::Big,
            m => return Err(HeaderProblem::BadMagic(m)),
        };
        let ps = be32(b, 8);
        let page_size = PageSize::new(ps).ok_or(HeaderProblem::BadPageSize(ps))?;
        let computed = checksum(byte_order, &b[..24], [0, 0]);
        let stored = [be32(b, 24), be32(b, 28)];
        if computed != stored {
            return Err(HeaderProblem::ChecksumMismatch { stored, computed });
        }
        let version = be32(b, 4);
        if version != WAL_VERSION {
            return Err(HeaderProblem::BadVersion(version));
        }
        Ok(WalHeader {
            byte_order,
            page_size,
            checkpoint_seq: be32(b, 12),
            salt1: be32(b, 16),
            salt2: be32(b, 20),
            checksum: stored,
        })
    }

    /// The 32 bytes of a header with these fields, its checksum computed.
    pub fn to_bytes(
        byte_order: ByteOrder,
        page_size: PageSize,
        checkpoint_seq: u32,
        salt1: u32,
        salt2: u32,
    ) -> [u8; WAL_HEADER_SIZE] {
        let mut b = [0u8; WAL_HEADER_SIZE];
        for (i, v) in [
            byte_order.magic(),
            WAL_VERSION,
            page_size.get(),
            checkpoint_seq,
            salt1,
            salt2,
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        let c = checksum(byte_order, &b[..24], [0, 0]);
        b[24..28].copy_from_slice(&c[0].to_be_bytes());
        b[28..32].copy_from_slice(&c[1].to_be_bytes());
        b
    }

    /// Bytes of one frame (frame header and page).
    pub fn frame_size(&self) -> usize {
        WAL_FRAME_HEADER_SIZE + self.page_size.bytes()
    }
}

/// A frame header as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Page number (0 is never valid).
    pub pgno: Pgno,
    /// Database size in pages after the transaction on a commit frame, else 0.
    pub commit: u32,
    /// Salt 1 (must equal the header's).
    pub salt1: u32,
    /// Salt 2 (must equal the header's).
    pub salt2: u32,
    /// The stored cumulative checksum.
    pub checksum: [u32; 2],
}

impl FrameHeader {
    /// Reads the 24 bytes of a frame header.
    pub fn from_bytes(b: &[u8; WAL_FRAME_HEADER_SIZE]) -> FrameHeader {
        FrameHeader {
            pgno: be32(b, 0),
            commit: be32(b, 4),
            salt1: be32(b, 8),
            salt2: be32(b, 12),
            checksum: [be32(b, 16), be32(b, 20)],
        }
    }

    /// The 24 bytes.
    pub fn to_bytes(&self) -> [u8; WAL_FRAME_HEADER_SIZE] {
        let mut b = [0u8; WAL_FRAME_HEADER_SIZE];
        for (i, v) in [
            self.pgno,
            self.commit,
            self.salt1,
            self.salt2,
            self.checksum[0],
            self.checksum[1],
        ]
        .into_iter()
        .enumerate()
        {
            b[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
        }
        b
    }
}
