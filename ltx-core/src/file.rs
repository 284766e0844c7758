//! Random access over a whole file in memory (`&[u8]`, e.g. a memory map),
//! and the pieces for ranged reads from object storage.
//!
//! Ranged-read recipe: read the first [`HEADER_SIZE`] bytes and the last
//! [`TAIL_SIZE`] bytes; [`parse_tail`] gives the page index range; read it and
//! call [`parse_index`]; then read only the frames you need and decode each
//! with [`crate::frame::decode_frame`].

use std::ops::Range;

use crate::checksum::{page_checksum, Crc64};
use crate::decoder::Summary;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{decode_frame, max_frame_size, FrameDigest, PageHeader, PAGE_HEADER_SIZE};
use crate::header::{Header, Trailer, HEADER_SIZE, TRAILER_SIZE};
use crate::index::{IndexEntry, PageIndex, INDEX_SIZE_FIELD};
use crate::types::{Checksum, Pgno, CHECKSUM_FLAG};

/// Bytes at the end of a file that locate the page index: the index size
/// field and the trailer.
pub const TAIL_SIZE: usize = INDEX_SIZE_FIELD + TRAILER_SIZE;
/// The smallest possible file: header, end marker, index terminator, size field, trailer.
pub const MIN_FILE_SIZE: u64 = (HEADER_SIZE + PAGE_HEADER_SIZE + 1 + TAIL_SIZE) as u64;

/// What the last [`TAIL_SIZE`] bytes say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The trailer.
    pub trailer: Trailer,
    /// The index size field.
    pub index_size: u64,
    /// Byte range of the page index varints *and* its size field
    /// (what [`parse_index`] takes).
    pub index_range: Range<u64>,
}

/// Parses the tail of a file of `file_len` bytes.
///
/// # Errors
/// `Truncated` for a file too short to be LTX; `PageIndexMismatch` when the
/// index size field points outside the file.
pub fn parse_tail(tail: &[u8; TAIL_SIZE], file_len: u64) -> Result<Tail> {
    if file_len < MIN_FILE_SIZE {
        return Err(Error::new(ErrorKind::Truncated {
            expected: "at least 131 bytes (header, end marker, index, trailer)",
        })
        .at(file_len));
    }
    let index_size = u64::from_be_bytes(tail[..8].try_into().unwrap());
    let trailer = Trailer::from_bytes(tail[8..].try_into().unwrap());
    let size_at = file_len - TAIL_SIZE as u64;
    let max = size_at - (HEADER_SIZE + PAGE_HEADER_SIZE) as u64;
    if index_size == 0 || index_size > max {
        return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
            "index size field {index_size} does not fit in the file (1..={max})"
        )))
        .at(size_at));
    }
    Ok(Tail {
        trailer,
        index_size,
        index_range: size_at - index_size..size_at + INDEX_SIZE_FIELD as u64,
    })
}

/// Parses the page index bytes (varints and size field) and checks that the
/// entries describe a well-formed page block: strictly ascending pages, none
/// above `commit` or on the lock page, a complete snapshot, and frames that
/// tile the bytes from offset 100 to the end marker exactly.
///
/// # Errors
/// `PageIndexMismatch`, `PageOrder`, `PageOutOfRange`, `LockPage`.
pub fn parse_index(header: &Header, bytes: &[u8], index_offset: u64) -> Result<PageIndex> {
    // Frames sit between the header and the end marker and take at least 7
    // bytes each: that bounds the entries before any is stored.
    let block = index_offset.saturating_sub((HEADER_SIZE + PAGE_HEADER_SIZE) as u64);
    let max_entries = usize::try_from(block / (PAGE_HEADER_SIZE as u64 + 1)).unwrap_or(usize::MAX);
    let mut check = LayoutCheck::new(header, index_offset);
    // Layout errors carry absolute offsets; only the decoder's are relative.
    let mut layout_err = None;
    let decoded = PageIndex::decode_checked(bytes, max_entries, &mut |e| {
        check.entry(e).map_err(|err| {
            layout_err = Some(err);
            Error::new(ErrorKind::Misuse("layout check failed"))
        })
    });
    let index = match (decoded, layout_err) {
        (_, Some(err)) => return Err(err),
        (r, None) => r.map_err(|e| e.offset_by(index_offset))?,
    };
    check.finish()?;
    Ok(index)
}

/// Checks page index entries one at a time against the file layout, so a
/// bad index is refused at its first impossible entry, before more are stored.
struct LayoutCheck<'h> {
    h: &'h Header,
    index_offset: u64,
    max_frame: u64,
    expect_off: u64,
    last: Pgno,
}

impl<'h> LayoutCheck<'h> {
    fn new(h: &'h Header, index_offset: u64) -> Self {
        let max_frame = max_frame_size(h.page_size) as u64;
        LayoutCheck {
            h,
            index_offset,
            max_frame,
            expect_off: HEADER_SIZE as u64,
            last: 0,
        }
    }

    fn mismatch(&self, m: String, pgno: Pgno) -> Error {
        Error::new(ErrorKind::PageIndexMismatch(m))
            .at(self.index_offset)
            .page(pgno)
    }

    fn entry(&mut self, e: &IndexEntry) -> Result<()> {
        let (h, last) = (self.h, self.last);
        if e.pgno == h.lock_pgno() {
            return Err(Error::new(ErrorKind::LockPage(e.pgno))
                .at(e.offset)
                .page(e.pgno));
        }
        if e.pgno > h.commit {
            let k = ErrorKind::PageOutOfRange {
                pgno: e.pgno,
                commit: h.commit,
            };
            return Err(Error::new(k).at(e.offset).page(e.pgno));
        }
        if e.pgno <= last {
            let k = ErrorKind::PageOrder(format!(
                "page index lists page {} after page {last}",
                e.pgno
            ));
            return Err(Error::new(k).at(self.index_offset).page(e.pgno));
        }
        if h.is_snapshot() {
            let expected = crate::encoder::next_snapshot_pgno(last, h.lock_pgno());
            if e.pgno != expected {
                let k = ErrorKind::PageOrder(format!("snapshot is missing page {expected}"));
                return Err(Error::new(k).at(self.index_offset).page(e.pgno));
            }
        }
        if e.offset != self.expect_off {
            let m = format!(
                "page {} at offset {}, expected the next frame at {}",
                e.pgno, e.offset, self.expect_off
            );
            return Err(self.mismatch(m, e.pgno));
        }
        if e.size <= PAGE_HEADER_SIZE as u64 || e.size > self.max_frame {
            let m = format!(
                "page {} frame size {} outside 7..={}",
                e.pgno, e.size, self.max_frame
            );
            return Err(self.mismatch(m, e.pgno));
        }
        self.expect_off += e.size;
        self.last = e.pgno;
        Ok(())
    }

    fn finish(&self) -> Result<()> {
        let (h, last) = (self.h, self.last);
        if h.is_snapshot() {
            let next = crate::encoder::next_snapshot_pgno(last, h.lock_pgno());
            if next <= h.commit {
                let k = ErrorKind::PageOrder(format!(
                    "snapshot ends at page {last} but commit is {}",
                    h.commit
                ));
                return Err(Error::new(k).at(self.index_offset));
            }
        }
        if self.expect_off + PAGE_HEADER_SIZE as u64 != self.index_offset {
            let m = format!(
                "frames end at {}, but the end marker must sit right before the index at {}",
                self.expect_off, self.index_offset
            );
            return Err(self.mismatch(m, last));
        }
        Ok(())
    }
}

/// The result of checking one frame: its digest and, when wanted, its page's
/// rolling-checksum contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCheck {
    /// What [`decode_frame`] found.
    pub digest: FrameDigest,
    /// [`page_checksum`] of the page, for snapshots that track checksums.
    pub page_checksum: Option<Checksum>,
}

/// A whole LTX file in memory, with its header, trailer and page index parsed.
///
/// Parsing reads only the header, the tail and the index; single pages are
/// decoded on demand. [`LtxFile::verify`] checks everything;
/// [`LtxFile::check_frame`] and [`LtxFile::combine`] split verification so
/// frames can be checked in parallel.
///
/// ```
/// use ltx_core::LtxFile;
/// # let bytes = ltx_core::doc_example_file();
/// let file = LtxFile::parse(&bytes).unwrap();
/// let mut page = vec![0u8; file.header().page_size.bytes()];
/// assert!(file.read_page(1, &mut page).unwrap());
/// assert!(!file.read_page(99, &mut page).unwrap());
/// file.verify().unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct LtxFile<'a> {
    data: &'a [u8],
    header: Header,
    tail: Tail,
    index: PageIndex,
}

impl<'a> LtxFile<'a> {
    /// Parses the header, tail and page index of `data`.
    ///
    /// # Errors
    /// Header rules, [`parse_tail`], [`parse_index`].
    pub fn parse(data: &'a [u8]) -> Result<LtxFile<'a>> {
        let header = Header::decode(data)?;
        let len = data.len() as u64;
        if len < MIN_FILE_SIZE {
            return Err(Error::new(ErrorKind::Truncated {
                expected: "page block, index and trailer",
            })
            .at(len));
        }
        let tail = parse_tail(data[data.len() - TAIL_SIZE..].try_into().unwrap(), len)?;
        let r = tail.index_range.clone();
        let index = parse_index(&header, &data[r.start as usize..r.end as usize], r.start)?;
        Ok(LtxFile {
            data,
            header,
            tail,
            index,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }
    /// The trailer (not verified until [`LtxFile::verify`]).
    pub fn trailer(&self) -> &Trailer {
        &self.tail.trailer
    }
    /// The tail (index location).
    pub fn tail(&self) -> &Tail {
        &self.tail
    }
    /// The page index.
    pub fn index(&self) -> &PageIndex {
        &self.index
    }
    /// The whole file.
    pub fn bytes(&self) -> &'a [u8] {
        self.data
    }
    /// The bytes of the frame an index entry points at.
    pub fn frame(&self, e: &IndexEntry) -> &'a [u8] {
        &self.data[e.offset as usize..(e.offset + e.size) as usize]
    }

    /// Decodes page `pgno` into `out` without touching other frames.
    /// Returns `false` when the file has no such page.
    ///
    /// # Errors
    /// Frame errors (corrupt LZ4, header mismatch), with absolute offsets.
    pub fn read_page(&self, pgno: Pgno, out: &mut [u8]) -> Result<bool> {
        let Some(e) = self.index.get(pgno) else {
            return Ok(false);
        };
        let d = decode_frame(self.frame(e), self.header.page_size, out)
            .map_err(|x| x.offset_by(e.offset).page(pgno))?;
        if d.header.pgno != pgno {
            return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                "index says page {pgno}, the frame holds page {}",
                d.header.pgno
            )))
            .at(e.offset)
            .page(pgno));
        }
        Ok(true)
    }

    /// Whether [`LtxFile::check_frame`] computes page checksums (snapshots
    /// tracking checksums).
    pub fn needs_page_checksums(&self) -> bool {
        self.header.is_snapshot() && !self.header.no_checksum()
    }

    /// Decodes and checks frame `i` of the index into `page` (a page-sized
    /// scratch buffer). Independent of other frames: safe to run in parallel.
    ///
    /// # Errors
    /// Frame errors; `PageIndexMismatch` when the frame holds another page.
    pub fn check_frame(&self, i: usize, page: &mut [u8]) -> Result<FrameCheck> {
        let e = &self.index.entries()[i];
        let digest = decode_frame(self.frame(e), self.header.page_size, page)
            .map_err(|x| x.offset_by(e.offset).page(e.pgno))?;
        if digest.header.pgno != e.pgno {
            return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                "index says page {}, the frame holds page {}",
                e.pgno, digest.header.pgno
            )))
            .at(e.offset)
            .page(e.pgno));
        }
        let page_checksum = self
            .needs_page_checksums()
            .then(|| page_checksum(e.pgno, page));
        Ok(FrameCheck {
            digest,
            page_checksum,
        })
    }

    /// Finishes verification from every frame's [`FrameCheck`], in index order.
    ///
    /// # Errors
    /// `FileChecksumMismatch`, `BadChecksumFormat`, `PostApplyMismatch`,
    /// `PageIndexMismatch` (wrong number of checks, non-zero end marker).
    pub fn combine(&self, checks: impl IntoIterator<Item = FrameCheck>) -> Result<Summary> {
        let mut crc = Crc64::new();
        crc.update(&self.data[..HEADER_SIZE]);
        let mut sum = 0u64;
        let mut n = 0usize;
        for c in checks {
            crc.combine(c.digest.crc, c.digest.hashed_len);
            if let Some(p) = c.page_checksum {
                sum ^= p.0;
            }
            n += 1;
        }
        if n != self.index.len() {
            return Err(Error::new(ErrorKind::Misuse(
                "combine needs one check per index entry",
            )));
        }
        let idx_start = self.tail.index_range.start;
        let end_at = idx_start as usize - PAGE_HEADER_SIZE;
        let end = PageHeader::from_bytes(self.data[end_at..idx_start as usize].try_into().unwrap());
        if !end.is_end() {
            return Err(Error::new(ErrorKind::PageIndexMismatch(
                "expected the zero end marker before the page index".into(),
            ))
            .at(end_at as u64));
        }
        let trailer_at = self.data.len() - TRAILER_SIZE;
        crc.update(&self.data[end_at..trailer_at + 8]);
        let computed = Checksum(crc.value() | CHECKSUM_FLAG);
        let t = self.tail.trailer;
        if computed != t.file_checksum {
            return Err(Error::new(ErrorKind::FileChecksumMismatch {
                stored: t.file_checksum,
                computed,
            })
            .at(trailer_at as u64 + 8));
        }
        t.validate(&self.header, trailer_at as u64)?;
        let page_sum = self
            .needs_page_checksums()
            .then_some(Checksum(sum | CHECKSUM_FLAG));
        if let Some(c) = page_sum {
            if c != t.post_apply_checksum {
                return Err(Error::new(ErrorKind::PostApplyMismatch {
                    stored: t.post_apply_checksum,
                    computed: c,
                })
                .at(trailer_at as u64));
            }
        }
        Ok(Summary {
            header: self.header,
            trailer: t,
            page_count: n as u64,
            file_size: self.data.len() as u64,
            index_size: self.tail.index_size,
            computed_post_apply: page_sum,
            format_version: crate::types::FormatVersion::V3,
        })
    }

    /// Verifies the whole file (sequentially).
    ///
    /// # Errors
    /// Every rule the streaming [`crate::Decoder`] enforces.
    pub fn verify(&self) -> Result<Summary> {
        let mut page = vec![0u8; self.header.page_size.bytes()];
        let mut checks = Vec::with_capacity(self.index.len());
        for i in 0..self.index.len() {
            checks.push(self.check_frame(i, &mut page)?);
        }
        self.combine(checks)
    }
}
