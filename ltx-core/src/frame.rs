//! Page frames: the 6-byte page header, LZ4 block frames and legacy LZ4-frame payloads.
//!
//! ```text
//! block frame  (flags 0x0001): pgno u32 | flags u16 | size u32 | LZ4 block (size bytes)
//! legacy frame (flags 0x0000): pgno u32 | flags u16 | one complete LZ4 frame (length found by parsing it)
//! end marker:                  0u32     | 0u16
//! ```
//!
//! Both decompress to exactly one page. The file checksum covers the page
//! header, the size prefix (block frames) and the *decompressed* page.

use crate::checksum::Crc64;
use crate::error::{Error, ErrorKind, Result};
use crate::lz4frame::{lz4_err, Lz4Content, Lz4Frame, Lz4Step, Lz4Unit};
use crate::types::{lz4_bound, PageSize, Pgno};

/// Page header length.
pub const PAGE_HEADER_SIZE: usize = 6;
/// Page header flag: the payload is a size-prefixed LZ4 block (the reference's `PageHeaderFlagSize`).
pub const PAGE_FLAG_BLOCK: u16 = 0x0001;
/// Length of the size prefix of a block frame.
pub const SIZE_PREFIX: usize = 4;
/// Extra bytes a legacy LZ4 frame may take beyond the LZ4 bound of its page.
pub const LEGACY_FRAME_OVERHEAD: usize = 64;

/// A page header: page number and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageHeader {
    /// Page number; 0 only in the end marker.
    pub pgno: Pgno,
    /// [`PAGE_FLAG_BLOCK`] or 0 (legacy frame / end marker).
    pub flags: u16,
}

impl PageHeader {
    /// Decodes 6 bytes.
    pub fn from_bytes(b: &[u8; PAGE_HEADER_SIZE]) -> PageHeader {
        PageHeader {
            pgno: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            flags: u16::from_be_bytes([b[4], b[5]]),
        }
    }
    /// Encodes 6 bytes.
    pub fn to_bytes(&self) -> [u8; PAGE_HEADER_SIZE] {
        let mut b = [0u8; PAGE_HEADER_SIZE];
        b[0..4].copy_from_slice(&self.pgno.to_be_bytes());
        b[4..6].copy_from_slice(&self.flags.to_be_bytes());
        b
    }
    /// Whether this is the end-of-pages marker (all zero).
    pub fn is_end(&self) -> bool {
        self.pgno == 0 && self.flags == 0
    }
    /// Whether the payload is a size-prefixed LZ4 block.
    pub fn is_block(&self) -> bool {
        self.flags & PAGE_FLAG_BLOCK != 0
    }
    /// Rejects unknown flag bits and pgno 0 with flags.
    ///
    /// # Errors
    /// [`ErrorKind::BadPageHeader`].
    pub fn validate(&self) -> Result<()> {
        if self.flags & !PAGE_FLAG_BLOCK != 0 || self.pgno == 0 {
            return Err(Error::new(ErrorKind::BadPageHeader {
                pgno: self.pgno,
                flags: self.flags,
            }));
        }
        Ok(())
    }
}

/// The largest frame (header included) a valid file can hold for `page_size`.
pub fn max_frame_size(page_size: PageSize) -> usize {
    PAGE_HEADER_SIZE + lz4_bound(page_size.bytes()) + LEGACY_FRAME_OVERHEAD
}

/// What decoding one frame found: the page header and the CRC-64/GO-ISO of
/// the bytes the file checksum covers for this frame (page header, size
/// prefix, decompressed page), to combine in file order with
/// [`Crc64::combine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDigest {
    /// The frame's page header.
    pub header: PageHeader,
    /// Bytes the frame occupies in the file.
    pub frame_len: u64,
    /// CRC of the hashed bytes of this frame.
    pub crc: u64,
    /// How many bytes were hashed.
    pub hashed_len: u64,
}

/// Decompresses an LZ4 block into `out`, requiring exactly `out.len()` bytes.
///
/// # Errors
/// [`ErrorKind::Lz4Corrupt`] on a corrupt block or a wrong decompressed size.
pub fn decompress_block(block: &[u8], out: &mut [u8]) -> Result<()> {
    match lz4_flex::block::decompress_into(block, out) {
        Ok(n) if n == out.len() => Ok(()),
        Ok(n) => Err(lz4_err(format!(
            "block decompresses to {n} bytes, expected {}",
            out.len()
        ))),
        Err(e) => Err(lz4_err(format!(
            "block: {e} (expected exactly {} bytes)",
            out.len()
        ))),
    }
}

/// Decodes one whole frame (`frame` = page header through the end of the
/// payload, exactly) into `out` (one page).
///
/// # Errors
/// `BadPageHeader`, `FrameTooLarge`, `Lz4Corrupt`, `Truncated`, `BadPageLength`,
/// with offsets relative to the start of `frame`.
pub fn decode_frame(frame: &[u8], page_size: PageSize, out: &mut [u8]) -> Result<FrameDigest> {
    if out.len() != page_size.bytes() {
        return Err(Error::new(ErrorKind::BadPageLength {
            expected: page_size.bytes(),
            got: out.len(),
        }));
    }
    let Some(hb) = frame.first_chunk::<PAGE_HEADER_SIZE>() else {
        return Err(Error::new(ErrorKind::Truncated {
            expected: "6-byte page header",
        })
        .at(frame.len() as u64));
    };
    let header = PageHeader::from_bytes(hb);
    header.validate().map_err(|e| e.at(0))?;
    let mut crc = Crc64::new();
    crc.update(hb);
    let body = &frame[PAGE_HEADER_SIZE..];
    if header.is_block() {
        let Some(sb) = body.first_chunk::<SIZE_PREFIX>() else {
            return Err(Error::new(ErrorKind::Truncated {
                expected: "4-byte compressed size",
            })
            .at(frame.len() as u64)
            .page(header.pgno));
        };
        let size = u32::from_be_bytes(*sb) as u64;
        let max = lz4_bound(page_size.bytes()) as u64;
        if size > max {
            return Err(Error::new(ErrorKind::FrameTooLarge { size, max })
                .at(PAGE_HEADER_SIZE as u64)
                .page(header.pgno));
        }
        let payload = &body[SIZE_PREFIX..];
        if (payload.len() as u64) < size {
            return Err(Error::new(ErrorKind::Truncated {
                expected: "LZ4 block",
            })
            .at(frame.len() as u64)
            .page(header.pgno));
        }
        if (payload.len() as u64) > size {
            return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                "frame is {} bytes but its block needs {}",
                frame.len(),
                PAGE_HEADER_SIZE as u64 + SIZE_PREFIX as u64 + size
            )))
            .page(header.pgno));
        }
        crc.update(sb);
        decompress_block(payload, out).map_err(|e| {
            e.at((PAGE_HEADER_SIZE + SIZE_PREFIX) as u64)
                .page(header.pgno)
        })?;
    } else {
        let len = match scan_legacy(body, page_size)
            .map_err(|e| e.page(header.pgno).offset_by(PAGE_HEADER_SIZE as u64))?
        {
            Scan::NeedMore(_) => {
                return Err(Error::new(ErrorKind::Truncated {
                    expected: "LZ4 frame",
                })
                .at(frame.len() as u64)
                .page(header.pgno))
            }
            Scan::Complete(n) => n,
        };
        if len != body.len() {
            return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                "frame is {} bytes but its LZ4 frame needs {}",
                frame.len(),
                PAGE_HEADER_SIZE + len
            )))
            .page(header.pgno));
        }
        decode_legacy(body, out)
            .map_err(|e| e.page(header.pgno).offset_by(PAGE_HEADER_SIZE as u64))?;
    }
    crc.update(out);
    Ok(FrameDigest {
        header,
        frame_len: frame.len() as u64,
        crc: crc.value(),
        hashed_len: crc.len(),
    })
}

impl Error {
    /// Adds `base` to a relative offset (or sets it when absent): turns an
    /// error from [`decode_frame`] (offsets within the frame) into one with
    /// file offsets.
    pub fn offset_by(self, base: u64) -> Error {
        let mut e = self;
        let o = e.offset().map_or(base, |o| o.saturating_add(base));
        e.set_offset(o);
        e
    }
}

/// Compresses one page into a block frame appended to `out` and returns its
/// digest. Pure and thread-safe: callers may compress pages in parallel and
/// hand the frames to [`crate::Encoder::write_frame`] in order. To compress
/// many pages, reuse a [`FrameCompressor`] (it keeps its LZ4 hash table).
///
/// ```
/// use ltx_core::frame::{compress_frame, decode_frame};
/// use ltx_core::PageSize;
/// let ps = PageSize::new(512).unwrap();
/// let mut frame = Vec::new();
/// let d = compress_frame(7, &[42u8; 512], &mut frame);
/// let mut page = [0u8; 512];
/// assert_eq!(decode_frame(&frame, ps, &mut page).unwrap(), d);
/// assert_eq!(page, [42u8; 512]);
/// ```
pub fn compress_frame(pgno: Pgno, page: &[u8], out: &mut Vec<u8>) -> FrameDigest {
    FrameCompressor::new().compress(pgno, page, out)
}

/// Compresses pages into block frames, reusing one LZ4 hash table. One per
/// thread.
///
/// ```
/// use ltx_core::frame::FrameCompressor;
/// let mut c = FrameCompressor::new();
/// let mut out = Vec::new();
/// for pgno in 1..=3 {
///     c.compress(pgno, &[pgno as u8; 4096], &mut out);
/// }
/// ```
pub struct FrameCompressor {
    table: lz4_flex::block::CompressTable,
}

impl Default for FrameCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for FrameCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCompressor")
    }
}

impl FrameCompressor {
    /// A compressor with a fresh hash table.
    pub fn new() -> FrameCompressor {
        FrameCompressor {
            table: lz4_flex::block::CompressTable::large(),
        }
    }

    /// Appends the block frame of `page` (page number `pgno`) to `out`;
    /// returns its digest (see [`compress_frame`]).
    pub fn compress(&mut self, pgno: Pgno, page: &[u8], out: &mut Vec<u8>) -> FrameDigest {
        let start = out.len();
        let header = PageHeader {
            pgno,
            flags: PAGE_FLAG_BLOCK,
        };
        out.extend_from_slice(&header.to_bytes());
        out.extend_from_slice(&[0u8; SIZE_PREFIX]);
        let payload_at = out.len();
        // lz4_flex wants more room than the LZ4 bound; its output never exceeds the bound.
        out.resize(
            payload_at + lz4_flex::block::get_maximum_output_size(page.len()),
            0,
        );
        let n = lz4_flex::block::compress_into_with_table(
            page,
            &mut out[payload_at..],
            &mut self.table,
        )
        .expect("output sized by get_maximum_output_size");
        out.truncate(payload_at + n);
        out[payload_at - SIZE_PREFIX..payload_at].copy_from_slice(&(n as u32).to_be_bytes());
        let mut crc = Crc64::new();
        crc.update(&out[start..payload_at]);
        crc.update(page);
        FrameDigest {
            header,
            frame_len: (out.len() - start) as u64,
            crc: crc.value(),
            hashed_len: crc.len(),
        }
    }
}

/// Result of scanning a buffer for a complete LZ4 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// The frame continues past the end of the buffer, which must grow to
    /// at least this many bytes before scanning can make progress.
    NeedMore(usize),
    /// The frame is complete and this many bytes long.
    Complete(usize),
}

/// Finds the length of the LZ4 frame at the start of `buf` without
/// decompressing it. Bounded: a frame longer than the LZ4 bound of one page
/// plus [`LEGACY_FRAME_OVERHEAD`] is an error.
///
/// # Errors
/// [`ErrorKind::Lz4Corrupt`] / [`ErrorKind::FrameTooLarge`], offsets relative to `buf`.
pub fn scan_legacy(buf: &[u8], page_size: PageSize) -> Result<Scan> {
    let max = lz4_bound(page_size.bytes()) + LEGACY_FRAME_OVERHEAD;
    let mut lz4 = Lz4Frame::scanner(page_size);
    let mut pos = 0;
    loop {
        let n = lz4.need(&buf[pos.min(buf.len())..])?;
        let too_large = || {
            Err(Error::new(ErrorKind::FrameTooLarge {
                size: (pos + n) as u64,
                max: max as u64,
            })
            .at(0))
        };
        match lz4.unit() {
            Lz4Unit::End => return Ok(Scan::Complete(pos)),
            // A block's bytes are not needed to find the frame's end.
            Lz4Unit::Block { .. } => {
                if pos + n > max {
                    return too_large();
                }
                lz4.skip_block();
            }
            unit => {
                if unit != Lz4Unit::Descriptor && pos + n > max {
                    return too_large();
                }
                if pos + n > buf.len() {
                    return Ok(Scan::NeedMore(pos + n));
                }
                lz4.feed(&buf[pos..pos + n])
                    .map_err(|e| e.offset_by(pos as u64))?;
            }
        }
        pos += n;
    }
}

/// Decodes one complete LZ4 frame (as found by [`scan_legacy`]) into `out`,
/// verifying header, block and content checksums and the exact page size.
///
/// # Errors
/// [`ErrorKind::Lz4Corrupt`], offsets relative to `frame`.
pub fn decode_legacy(frame: &[u8], out: &mut [u8]) -> Result<()> {
    let page_size = PageSize::try_new(out.len() as u32)?;
    let mut lz4 = Lz4Frame::new(Lz4Content::Page(page_size));
    let n = lz4.need(frame)?;
    let Some(desc) = frame.get(..n) else {
        return Err(lz4_err("incomplete LZ4 frame descriptor"));
    };
    lz4.feed(desc)?;
    let mut pos = n;
    let mut filled = 0usize;
    loop {
        let n = lz4.need(&[])?;
        if lz4.unit() == Lz4Unit::End {
            break;
        }
        let Some(unit) = frame.get(pos..pos + n) else {
            return Err(Error::new(ErrorKind::Truncated {
                expected: "LZ4 frame",
            })
            .at(frame.len() as u64));
        };
        let at = pos as u64;
        if let Lz4Step::Block { stored, data } = lz4.feed(unit).map_err(|e| e.offset_by(at))? {
            let start = filled;
            if stored {
                if filled + data.len() > out.len() {
                    return Err(lz4_err(format!(
                        "LZ4 frame decompresses to more than {} bytes",
                        out.len()
                    ))
                    // At the block's size field.
                    .at(at - 4));
                }
                out[filled..filled + data.len()].copy_from_slice(data);
                filled += data.len();
            } else {
                let (dict, rest) = out.split_at_mut(filled);
                let dict: &[u8] = if lz4.info().expect("descriptor read").independent {
                    &[]
                } else {
                    dict
                };
                filled +=
                    lz4_flex::block::decompress_into_with_dict(data, rest, dict).map_err(|e| {
                        lz4_err(format!(
                            "LZ4 frame block: {e} (page is {} bytes)",
                            page_size.bytes()
                        ))
                        .at(at)
                    })?;
            }
            lz4.produced(&out[start..filled])
                .map_err(|e| e.offset_by(at))?;
        }
        pos += n;
    }
    if pos != frame.len() {
        return Err(lz4_err(format!(
            "{} bytes after the LZ4 frame end",
            frame.len() - pos
        ))
        .at(pos as u64));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_roundtrip_and_bounds() {
        let ps = PageSize::new(4096).unwrap();
        let page: Vec<u8> = (0..4096u32).map(|i| (i % 13) as u8).collect();
        let mut f = Vec::new();
        let d = compress_frame(3, &page, &mut f);
        let mut out = vec![0u8; 4096];
        assert_eq!(decode_frame(&f, ps, &mut out).unwrap(), d);
        assert_eq!(out, page);
        // Truncated anywhere: an error, never a panic.
        for n in 0..f.len() {
            assert!(decode_frame(&f[..n], ps, &mut out).is_err());
        }
        // A huge claimed size is refused before anything else.
        let mut g = f.clone();
        g[6..10].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            decode_frame(&g, ps, &mut out).unwrap_err().kind(),
            ErrorKind::FrameTooLarge { .. }
        ));
    }

    #[test]
    fn bad_page_headers() {
        for (pgno, flags) in [(0u32, 1u16), (1, 2), (1, 3), (5, 0x8000)] {
            assert!(PageHeader { pgno, flags }.validate().is_err());
        }
        assert!(PageHeader { pgno: 1, flags: 0 }.validate().is_ok());
        assert!(PageHeader { pgno: 0, flags: 0 }.is_end());
    }
}
