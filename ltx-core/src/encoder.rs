//! The sans-I/O encoder: header → frames in page order → finish(post-apply).

use crate::checksum::Crc64;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{FrameCompressor, FrameDigest, PageHeader, PAGE_HEADER_SIZE};
use crate::header::{Header, Trailer, HEADER_SIZE};
use crate::index::{IndexEntry, PageIndex};
use crate::types::{Checksum, Pgno, CHECKSUM_FLAG};

/// Writes an LTX file into buffers the caller owns.
///
/// Call sequence: [`Encoder::new`] (writes the header) → [`Encoder::write_page`]
/// or [`Encoder::write_frame`] once per page in ascending page order →
/// [`Encoder::finish`] (writes end marker, page index and trailer). Every
/// call *appends* to `out`; the caller may drain `out` to a file or upload
/// between calls, so memory stays bounded by one frame.
///
/// The encoder enforces the reference encoder's rules: pages strictly
/// ascending, `pgno <= commit`, never the lock page, exact page size,
/// snapshots contiguous from page 1 to `commit` (skipping the lock page),
/// and the trailer checksum rules. After an error it refuses further calls.
///
/// ```
/// use ltx_core::{Encoder, Header, PageSize, TxId, Checksum, checksum::DbChecksum, LtxFile};
/// let ps = PageSize::new(512).unwrap();
/// let mut h = Header::new(ps, TxId(1), TxId(1));
/// h.commit = 2;
/// let mut out = Vec::new();
/// let mut enc = Encoder::new(h, &mut out).unwrap();
/// let mut sum = DbChecksum::new(ps);
/// for pgno in 1..=2u32 {
///     let page = [pgno as u8; 512];
///     enc.write_page(&mut out, pgno, &page).unwrap();
///     sum.add(pgno, &page);
/// }
/// enc.finish(&mut out, sum.value()).unwrap();
/// let file = LtxFile::parse(&out).unwrap();
/// file.verify().unwrap();
/// ```
#[derive(Debug)]
pub struct Encoder {
    header: Header,
    hasher: Crc64,
    offset: u64,
    index: Vec<IndexEntry>,
    last_pgno: Pgno,
    failed: bool,
    scratch: Vec<u8>,
    compressor: FrameCompressor,
}

impl Encoder {
    /// Validates `header` and appends its 100 bytes to `out`.
    ///
    /// # Errors
    /// Any header rule ([`Header::validate`]).
    pub fn new(header: Header, out: &mut Vec<u8>) -> Result<Encoder> {
        header.validate()?;
        let b = header.to_bytes();
        let mut hasher = Crc64::new();
        hasher.update(&b);
        out.extend_from_slice(&b);
        Ok(Encoder {
            header,
            hasher,
            offset: HEADER_SIZE as u64,
            index: Vec::new(),
            last_pgno: 0,
            failed: false,
            scratch: Vec::new(),
            compressor: FrameCompressor::new(),
        })
    }

    /// The header being written.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.offset
    }

    /// Checks that `pgno` may come next.
    fn check_next(&self, pgno: Pgno) -> Result<()> {
        let h = &self.header;
        let at = |k| Err(Error::new(k).at(self.offset).page(pgno));
        if self.failed {
            return Err(Error::new(ErrorKind::Poisoned));
        }
        if pgno == 0 {
            return at(ErrorKind::BadPageHeader { pgno, flags: 0 });
        }
        if pgno == h.lock_pgno() {
            return at(ErrorKind::LockPage(pgno));
        }
        if pgno > h.commit {
            return at(ErrorKind::PageOutOfRange {
                pgno,
                commit: h.commit,
            });
        }
        if pgno <= self.last_pgno {
            return at(ErrorKind::PageOrder(format!(
                "page {pgno} after page {}",
                self.last_pgno
            )));
        }
        if h.is_snapshot() {
            let expected = next_snapshot_pgno(self.last_pgno, h.lock_pgno());
            if pgno != expected {
                return at(ErrorKind::PageOrder(format!(
                    "snapshot must hold every page: expected page {expected}, got {pgno}"
                )));
            }
        }
        Ok(())
    }

    /// Compresses `data` (exactly one page) and appends its frame.
    ///
    /// # Errors
    /// `BadPageLength`, `LockPage`, `PageOutOfRange`, `PageOrder`, `Poisoned`.
    pub fn write_page(&mut self, out: &mut Vec<u8>, pgno: Pgno, data: &[u8]) -> Result<()> {
        if data.len() != self.header.page_size.bytes() {
            return Err(Error::new(ErrorKind::BadPageLength {
                expected: self.header.page_size.bytes(),
                got: data.len(),
            })
            .page(pgno));
        }
        self.check_next(pgno)?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let digest = self.compressor.compress(pgno, data, &mut scratch);
        let r = self.write_frame(out, &scratch, &digest);
        self.scratch = scratch;
        r
    }

    /// Appends an already encoded frame (from [`crate::frame::compress_frame`], or copied
    /// from another LTX file) with its digest (from `compress_frame` or
    /// [`crate::frame::decode_frame`]). The frame bytes are copied unchanged;
    /// the digest supplies the checksum of its decompressed content, so the
    /// caller can decompress and hash frames in parallel.
    ///
    /// # Errors
    /// `Misuse` if `frame` and `digest` disagree; the ordering rules of
    /// [`Encoder::write_page`].
    pub fn write_frame(
        &mut self,
        out: &mut Vec<u8>,
        frame: &[u8],
        digest: &FrameDigest,
    ) -> Result<()> {
        let pgno = digest.header.pgno;
        self.check_next(pgno)?;
        let ok = frame.len() as u64 == digest.frame_len
            && frame.len() > PAGE_HEADER_SIZE
            && frame[..PAGE_HEADER_SIZE] == digest.header.to_bytes()
            && digest.hashed_len >= PAGE_HEADER_SIZE as u64 + self.header.page_size.get() as u64;
        if !ok {
            self.failed = true;
            return Err(
                Error::new(ErrorKind::Misuse("frame bytes do not match their digest")).page(pgno),
            );
        }
        out.extend_from_slice(frame);
        self.hasher.combine(digest.crc, digest.hashed_len);
        self.index.push(IndexEntry {
            pgno,
            offset: self.offset,
            size: frame.len() as u64,
        });
        self.offset += frame.len() as u64;
        self.last_pgno = pgno;
        Ok(())
    }

    /// Writes the end marker, the page index and the trailer; returns the trailer.
    ///
    /// # Errors
    /// `PageOrder` for an incomplete snapshot; `BadChecksumFormat` when
    /// `post_apply` breaks the rules (zero iff NoChecksum; bit 63 set; exactly
    /// `8000000000000000` for an empty database, as the reference requires).
    pub fn finish(mut self, out: &mut Vec<u8>, post_apply: Checksum) -> Result<Trailer> {
        if self.failed {
            return Err(Error::new(ErrorKind::Poisoned));
        }
        let h = self.header;
        if h.is_snapshot() {
            let next = next_snapshot_pgno(self.last_pgno, h.lock_pgno());
            if next <= h.commit {
                return Err(Error::new(ErrorKind::PageOrder(format!(
                    "snapshot ends at page {} but commit is {}",
                    self.last_pgno, h.commit
                )))
                .at(self.offset));
            }
        }
        Trailer::validate_post_apply(post_apply, &h, self.offset)?;
        if h.commit == 0 && !h.no_checksum() && post_apply.0 != CHECKSUM_FLAG {
            return Err(Error::new(ErrorKind::BadChecksumFormat {
                field: "post-apply",
                value: post_apply,
                rule: "must be 8000000000000000 for an empty database",
            }));
        }
        let start = out.len();
        out.extend_from_slice(&PageHeader::default().to_bytes());
        PageIndex::from_entries(std::mem::take(&mut self.index)).encode(out);
        out.extend_from_slice(&post_apply.0.to_be_bytes());
        self.hasher.update(&out[start..]);
        let trailer = Trailer {
            post_apply_checksum: post_apply,
            file_checksum: Checksum(self.hasher.value() | CHECKSUM_FLAG),
        };
        out.extend_from_slice(&trailer.file_checksum.0.to_be_bytes());
        Ok(trailer)
    }
}

/// The page a snapshot must hold after `last` (skipping the lock page).
pub(crate) fn next_snapshot_pgno(last: Pgno, lock: Pgno) -> Pgno {
    let n = last.saturating_add(1);
    if n == lock {
        n.saturating_add(1)
    } else {
        n
    }
}

/// A small valid snapshot (2 pages of 512 bytes) for documentation examples.
#[doc(hidden)]
pub fn doc_example_file() -> Vec<u8> {
    let ps = crate::types::PageSize::new(512).unwrap();
    let mut h = Header::new(ps, crate::types::TxId(1), crate::types::TxId(1));
    h.commit = 2;
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    let mut sum = crate::checksum::DbChecksum::new(ps);
    for pgno in 1..=2u32 {
        let page = [pgno as u8; 512];
        enc.write_page(&mut out, pgno, &page).unwrap();
        sum.add(pgno, &page);
    }
    enc.finish(&mut out, sum.value()).unwrap();
    out
}
