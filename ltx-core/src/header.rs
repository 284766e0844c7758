//! The 100-byte header and the 16-byte trailer.

use crate::error::{Error, ErrorKind, Result};
use crate::types::{Checksum, PageSize, Pgno, TxId, CHECKSUM_FLAG};

/// The magic number at the start of every LTX file.
pub const MAGIC: [u8; 4] = *b"LTX1";
/// Header length in bytes.
pub const HEADER_SIZE: usize = 100;
/// Trailer length in bytes.
pub const TRAILER_SIZE: usize = 16;
/// Header flag: checksums are not tracked (pre/post-apply checksums are zero).
pub const HEADER_FLAG_NO_CHECKSUM: u32 = 0x2;
/// Every header flag the format defines.
pub const HEADER_FLAG_MASK: u32 = HEADER_FLAG_NO_CHECKSUM;
/// Offset of the reserved bytes (80..100).
pub const RESERVED_OFFSET: usize = 80;

/// The LTX header (all 100 bytes).
///
/// | offset | size | field |
/// |---|---|---|
/// | 0 | 4 | magic `LTX1` |
/// | 4 | 4 | flags |
/// | 8 | 4 | page size |
/// | 12 | 4 | commit (database size in pages after applying) |
/// | 16 | 8 | min TXID |
/// | 24 | 8 | max TXID |
/// | 32 | 8 | timestamp (ms since Unix epoch, signed) |
/// | 40 | 8 | pre-apply checksum |
/// | 48 | 8 | WAL offset (signed) |
/// | 56 | 8 | WAL size (signed) |
/// | 64 | 4 | WAL salt 1 |
/// | 68 | 4 | WAL salt 2 |
/// | 72 | 8 | node ID |
/// | 80 | 20 | reserved, zero |
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Header flags ([`HEADER_FLAG_NO_CHECKSUM`]).
    pub flags: u32,
    /// Page size.
    pub page_size: PageSize,
    /// Database size in pages after this file is applied.
    pub commit: u32,
    /// First transaction in the file.
    pub min_txid: TxId,
    /// Last transaction in the file.
    pub max_txid: TxId,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// Rolling checksum of the database before applying.
    pub pre_apply_checksum: Checksum,
    /// Offset in the original WAL, 0 if from a journal or compaction.
    pub wal_offset: i64,
    /// Size of the original WAL segment.
    pub wal_size: i64,
    /// WAL salt 1.
    pub wal_salt1: u32,
    /// WAL salt 2.
    pub wal_salt2: u32,
    /// Node that wrote the file, 0 if unset.
    pub node_id: u64,
    /// Bytes 80..100. Must be zero (see SPEC.md).
    pub reserved: [u8; 20],
}

impl Header {
    /// A header with the given page size and TXID range, everything else zero.
    ///
    /// ```
    /// use ltx_core::{Header, PageSize, TxId};
    /// let h = Header::new(PageSize::new(4096).unwrap(), TxId(1), TxId(1));
    /// assert!(h.is_snapshot());
    /// ```
    pub fn new(page_size: PageSize, min_txid: TxId, max_txid: TxId) -> Header {
        Header {
            flags: 0,
            page_size,
            commit: 0,
            min_txid,
            max_txid,
            timestamp: 0,
            pre_apply_checksum: Checksum(0),
            wal_offset: 0,
            wal_size: 0,
            wal_salt1: 0,
            wal_salt2: 0,
            node_id: 0,
            reserved: [0; 20],
        }
    }

    /// Whether the file holds the whole database (min TXID 1).
    pub fn is_snapshot(&self) -> bool {
        self.min_txid.0 == 1
    }

    /// Whether checksums are not tracked.
    pub fn no_checksum(&self) -> bool {
        self.flags & HEADER_FLAG_NO_CHECKSUM != 0
    }

    /// The SQLite lock page number for this page size.
    pub fn lock_pgno(&self) -> Pgno {
        self.page_size.lock_pgno()
    }

    /// Encodes the header into 100 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_SIZE] {
        let mut b = [0u8; HEADER_SIZE];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..8].copy_from_slice(&self.flags.to_be_bytes());
        b[8..12].copy_from_slice(&self.page_size.get().to_be_bytes());
        b[12..16].copy_from_slice(&self.commit.to_be_bytes());
        b[16..24].copy_from_slice(&self.min_txid.0.to_be_bytes());
        b[24..32].copy_from_slice(&self.max_txid.0.to_be_bytes());
        b[32..40].copy_from_slice(&self.timestamp.to_be_bytes());
        b[40..48].copy_from_slice(&self.pre_apply_checksum.0.to_be_bytes());
        b[48..56].copy_from_slice(&self.wal_offset.to_be_bytes());
        b[56..64].copy_from_slice(&self.wal_size.to_be_bytes());
        b[64..68].copy_from_slice(&self.wal_salt1.to_be_bytes());
        b[68..72].copy_from_slice(&self.wal_salt2.to_be_bytes());
        b[72..80].copy_from_slice(&self.node_id.to_be_bytes());
        b[80..100].copy_from_slice(&self.reserved);
        b
    }

    /// Decodes and validates a header from the first 100 bytes of `b`.
    ///
    /// # Errors
    /// [`ErrorKind::Truncated`] if `b` is shorter than 100 bytes; otherwise
    /// every rule of [`Header::validate`], and `BadMagic`.
    pub fn decode(b: &[u8]) -> Result<Header> {
        let h = Self::decode_unvalidated(b)?;
        h.validate()?;
        Ok(h)
    }

    /// Decodes a header, checking only the magic and page size (which the
    /// rest of the file's layout depends on). Use for inspection tools that
    /// want to show a damaged header.
    ///
    /// # Errors
    /// `Truncated`, `BadMagic`, `BadPageSize`.
    pub fn decode_unvalidated(b: &[u8]) -> Result<Header> {
        if b.len() < HEADER_SIZE {
            return Err(Error::new(ErrorKind::Truncated {
                expected: "100-byte header",
            })
            .at(b.len() as u64));
        }
        let u32_at = |o: usize| u32::from_be_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_be_bytes(b[o..o + 8].try_into().unwrap());
        let magic: [u8; 4] = b[0..4].try_into().unwrap();
        if magic != MAGIC {
            return Err(Error::new(ErrorKind::BadMagic(magic)).at(0));
        }
        let page_size = PageSize::try_new(u32_at(8)).map_err(|e| e.at(8))?;
        let mut reserved = [0u8; 20];
        reserved.copy_from_slice(&b[80..100]);
        Ok(Header {
            flags: u32_at(4),
            page_size,
            commit: u32_at(12),
            min_txid: TxId(u64_at(16)),
            max_txid: TxId(u64_at(24)),
            timestamp: u64_at(32) as i64,
            pre_apply_checksum: Checksum(u64_at(40)),
            wal_offset: u64_at(48) as i64,
            wal_size: u64_at(56) as i64,
            wal_salt1: u32_at(64),
            wal_salt2: u32_at(68),
            node_id: u64_at(72),
            reserved,
        })
    }

    /// Checks every header rule of the reference, plus zero reserved bytes.
    ///
    /// # Errors
    /// `BadHeaderFlags`, `BadTxId`, `BadWalFields`, `BadChecksumFormat`,
    /// `ReservedNonZero`, each with the byte offset of the field.
    pub fn validate(&self) -> Result<()> {
        if self.flags & !HEADER_FLAG_MASK != 0 {
            return Err(Error::new(ErrorKind::BadHeaderFlags(self.flags)).at(4));
        }
        if self.min_txid.0 == 0 || self.max_txid.0 == 0 || self.min_txid > self.max_txid {
            let at = if self.min_txid.0 == 0 { 16 } else { 24 };
            return Err(Error::new(ErrorKind::BadTxId {
                min: self.min_txid,
                max: self.max_txid,
            })
            .at(at));
        }
        if self.wal_offset < 0 {
            return Err(Error::new(ErrorKind::BadWalFields("WAL offset is negative")).at(48));
        }
        if self.wal_size < 0 {
            return Err(Error::new(ErrorKind::BadWalFields("WAL size is negative")).at(56));
        }
        if (self.wal_salt1 != 0 || self.wal_salt2 != 0) && self.wal_offset == 0 {
            return Err(Error::new(ErrorKind::BadWalFields(
                "WAL salts are set but the WAL offset is zero",
            ))
            .at(64));
        }
        if self.wal_offset == 0 && self.wal_size != 0 {
            return Err(Error::new(ErrorKind::BadWalFields(
                "WAL size is set but the WAL offset is zero",
            ))
            .at(56));
        }
        let pre = self.pre_apply_checksum;
        let bad = |rule| {
            Err(Error::new(ErrorKind::BadChecksumFormat {
                field: "pre-apply",
                value: pre,
                rule,
            })
            .at(40))
        };
        if self.is_snapshot() {
            if !pre.is_zero() {
                return bad("must be zero on a snapshot");
            }
        } else if self.no_checksum() {
            if !pre.is_zero() {
                return bad("must be zero when the NoChecksum flag is set");
            }
        } else if pre.is_zero() {
            return bad("required on an incremental file that tracks checksums");
        } else if pre.0 & CHECKSUM_FLAG == 0 {
            return bad("bit 63 must be set");
        }
        if let Some(i) = self.reserved.iter().position(|&b| b != 0) {
            return Err(Error::new(ErrorKind::ReservedNonZero {
                offset: (RESERVED_OFFSET + i) as u64,
            })
            .at((RESERVED_OFFSET + i) as u64));
        }
        Ok(())
    }
}

/// The 16-byte trailer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Rolling checksum of the database after applying the file.
    pub post_apply_checksum: Checksum,
    /// CRC-64/GO-ISO of the file (see the crate docs) with bit 63 set.
    pub file_checksum: Checksum,
}

impl Trailer {
    /// Decodes the trailer from exactly 16 bytes.
    pub fn from_bytes(b: &[u8; TRAILER_SIZE]) -> Trailer {
        Trailer {
            post_apply_checksum: Checksum(u64::from_be_bytes(b[0..8].try_into().unwrap())),
            file_checksum: Checksum(u64::from_be_bytes(b[8..16].try_into().unwrap())),
        }
    }
    /// Encodes the trailer.
    pub fn to_bytes(&self) -> [u8; TRAILER_SIZE] {
        let mut b = [0u8; TRAILER_SIZE];
        b[0..8].copy_from_slice(&self.post_apply_checksum.0.to_be_bytes());
        b[8..16].copy_from_slice(&self.file_checksum.0.to_be_bytes());
        b
    }

    /// Checks the post-apply checksum format against the header's flags.
    ///
    /// # Errors
    /// `BadChecksumFormat`, positioned relative to the trailer start
    /// (`trailer_offset`).
    pub fn validate_post_apply(post: Checksum, header: &Header, trailer_offset: u64) -> Result<()> {
        let bad = |rule| {
            Err(Error::new(ErrorKind::BadChecksumFormat {
                field: "post-apply",
                value: post,
                rule,
            })
            .at(trailer_offset))
        };
        if header.no_checksum() {
            if !post.is_zero() {
                return bad("must be zero when the NoChecksum flag is set");
            }
        } else if post.is_zero() {
            return bad("required when checksums are tracked");
        } else if !post.has_flag() {
            return bad("bit 63 must be set");
        }
        Ok(())
    }

    /// Checks both checksum formats.
    ///
    /// # Errors
    /// `BadChecksumFormat`.
    pub fn validate(&self, header: &Header, trailer_offset: u64) -> Result<()> {
        Self::validate_post_apply(self.post_apply_checksum, header, trailer_offset)?;
        if !self.file_checksum.has_flag() {
            return Err(Error::new(ErrorKind::BadChecksumFormat {
                field: "file",
                value: self.file_checksum,
                rule: "bit 63 must be set",
            })
            .at(trailer_offset + 8));
        }
        Ok(())
    }
}
