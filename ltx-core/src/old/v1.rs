//! Format version 1 (superfly/ltx up to v0.3.18, LiteFS, Litestream before
//! mid-2025) as a streaming, sans-I/O decoder.
//!
//! ```text
//! header      100 B   as in v3; flag 0x1 = the page block is one LZ4 frame
//! page block  { pgno u32 | page (page_size bytes) }* | 00 00 00 00
//!             stored as is, or (flag 0x1) as ONE LZ4 frame over all of it
//! trailer     post_apply_checksum u64 | file_checksum u64
//! ```
//!
//! File checksum: CRC-64/GO-ISO over header | page block *decompressed* |
//! post-apply checksum, bit 63 set. There is no page index. The LZ4 page
//! block is decompressed incrementally ([`super::lz4stream`]): memory stays
//! bounded by one LZ4 block, one page and a 64 KiB window, whatever the file
//! size.
//!
//! Pages come out as [`crate::Decoded::Page`] like v3 pages; `info.flags` is 0, and
//! `info.offset` is the file offset of the page number for uncompressed files
//! but the offset *inside the decompressed page block* for LZ4 files (the
//! header's flag 0x1 tells which), `info.frame_len` is `4 + page_size`.

use super::lz4stream::{Lz4Event, Lz4FrameDecoder};
use crate::checksum::Crc64;
use crate::decoder::PageInfo;
use crate::error::{Error, ErrorKind, Result};
use crate::header::{Header, HEADER_SIZE, TRAILER_SIZE};
use crate::index::IndexEntry;
use crate::stream::sealed::{Event, Step};
use crate::stream::{StreamDecoder, Verifier};
use crate::types::{Checksum, FormatVersion, Pgno, CHECKSUM_FLAG};

pub use super::header::{V1_FLAG_LZ4, V1_FLAG_MASK};

/// v1/v2 page header length (the page number).
pub(crate) const OLD_PAGE_HEADER_SIZE: usize = 4;

/// Parses the decompressed page block: page numbers and pages.
#[derive(Debug, Default)]
struct BlockParser {
    unit: Vec<u8>,
    /// Offset (file or stream) of the unit's first byte.
    pos: u64,
    pgno: Pgno,
}

enum BlockEv {
    More,
    Page(PageInfo),
    End,
}

impl BlockParser {
    /// Consumes from `data`; `at` is the file position used in errors.
    fn feed(
        &mut self,
        data: &[u8],
        h: &Header,
        verifier: &mut Verifier,
        at: u64,
    ) -> Result<(usize, BlockEv)> {
        let ps = h.page_size.bytes();
        let mut used = 0;
        loop {
            let need = if self.unit.len() < OLD_PAGE_HEADER_SIZE {
                OLD_PAGE_HEADER_SIZE
            } else {
                OLD_PAGE_HEADER_SIZE + ps
            };
            let k = (need - self.unit.len()).min(data.len() - used);
            self.unit.extend_from_slice(&data[used..used + k]);
            used += k;
            if self.unit.len() < need {
                return Ok((used, BlockEv::More));
            }
            if need == OLD_PAGE_HEADER_SIZE {
                let pgno = u32::from_be_bytes(self.unit[..4].try_into().unwrap());
                verifier.hash(&self.unit[..4]);
                if pgno == 0 {
                    verifier.check_end(h, at)?;
                    self.pos += 4;
                    return Ok((used, BlockEv::End));
                }
                verifier.check_pgno(h, pgno, at)?;
                self.pgno = pgno;
                continue;
            }
            let page = &self.unit[OLD_PAGE_HEADER_SIZE..];
            let size = (OLD_PAGE_HEADER_SIZE + ps) as u64;
            verifier.page(self.pgno, page, self.pos, size);
            let info = PageInfo {
                pgno: self.pgno,
                flags: 0,
                offset: self.pos,
                frame_len: size,
            };
            self.pos += size;
            return Ok((used, BlockEv::Page(info)));
        }
    }

    fn page(&self) -> &[u8] {
        &self.unit[OLD_PAGE_HEADER_SIZE..]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Header,
    Block,
    Lz4End,
    Trailer,
    Done,
}

/// Streaming decoder for format version 1: the [`StreamDecoder`] shell
/// around the [`V1Layout`], with the contract of every [`StreamDecoder`]
/// (and of [`crate::Decoder`]): feed slices, get `(consumed, event)`;
/// split-independent; poisoned after an error; bytes after the trailer are
/// an error.
///
/// ```
/// use ltx_core::old::v1::V1Decoder;
/// use ltx_core::Decoded;
/// # let bytes = ltx_core::old::v1::tests_support::tiny_v1(false);
/// let mut dec = V1Decoder::new();
/// let mut input: &[u8] = &bytes;
/// let mut pages = 0;
/// loop {
///     let (n, ev) = dec.decode(input).unwrap();
///     input = &input[n..];
///     match ev {
///         Decoded::Page { .. } => pages += 1,
///         Decoded::Done(s) => { assert_eq!(s.page_count, pages); break }
///         Decoded::NeedMore => unreachable!(),
///         Decoded::Header(_) => {}
///     }
/// }
/// ```
pub type V1Decoder = StreamDecoder<V1Layout>;

impl V1Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> V1Decoder {
        V1Decoder::default()
    }

    /// The LZ4 frame decoder of an LZ4 file, once the header was read.
    pub fn lz4(&self) -> Option<&Lz4FrameDecoder> {
        self.layout().lz4.as_deref()
    }

    /// Bytes of buffer capacity held besides the list of frames: the LZ4
    /// buffers ([`Lz4FrameDecoder::buffered_bytes`]), one page and the
    /// header/trailer stage. Independent of the file size.
    pub fn buffered_bytes(&self) -> usize {
        let l = self.layout();
        l.lz4.as_deref().map_or(0, Lz4FrameDecoder::buffered_bytes)
            + l.parser.unit.capacity()
            + l.stage.capacity()
    }
}

/// The v1 layout (header, page block raw or as one LZ4 frame, trailer) as
/// read by [`V1Decoder`]. Its frames are the pages, with offsets as in
/// [`PageInfo`] (see the [module docs](self)).
#[derive(Debug)]
pub struct V1Layout {
    st: St,
    stage: Vec<u8>,
    offset: u64,
    header: Option<Header>,
    verifier: Verifier,
    parser: BlockParser,
    /// Boxed: the LZ4 state is large and most v1 files have none.
    lz4: Option<Box<Lz4FrameDecoder>>,
    out_pos: usize,
    reset_unit: bool,
}

impl Default for V1Layout {
    fn default() -> Self {
        V1Layout {
            st: St::Header,
            stage: Vec::new(),
            offset: 0,
            header: None,
            verifier: Verifier::default(),
            parser: BlockParser::default(),
            lz4: None,
            out_pos: 0,
            reset_unit: false,
        }
    }
}

impl V1Layout {
    fn take(&mut self, input: &[u8], used: &mut usize, n: usize) -> bool {
        let k = (n - self.stage.len()).min(input.len() - *used);
        self.stage.extend_from_slice(&input[*used..*used + k]);
        *used += k;
        self.offset += k as u64;
        self.stage.len() == n
    }
}

impl Step for V1Layout {
    fn page(&self) -> &[u8] {
        self.parser.page()
    }

    fn position(&self) -> u64 {
        self.offset
    }

    fn frames(&self) -> &[IndexEntry] {
        self.verifier.frames()
    }

    fn expecting(&self) -> &'static str {
        match self.st {
            St::Header => "100-byte header",
            St::Block if self.lz4.is_some() => "LZ4-compressed page block",
            St::Block => "page number, page or page block terminator",
            St::Lz4End => "end of the LZ4 frame",
            St::Trailer => "16-byte trailer",
            St::Done => "nothing",
        }
    }

    fn compute_page_checksums(&mut self) {
        self.verifier.compute_page_checksums();
    }

    fn version(&self) -> FormatVersion {
        FormatVersion::V1
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Event)> {
        let mut used = 0usize;
        if self.reset_unit {
            self.parser.unit.clear();
            self.reset_unit = false;
        }
        loop {
            match self.st {
                St::Done => return Err(Error::new(ErrorKind::Poisoned)),
                St::Header => {
                    if !self.take(input, &mut used, HEADER_SIZE) {
                        return Ok((used, Event::NeedMore));
                    }
                    let h = Header::decode_as(&self.stage, FormatVersion::V1)?;
                    self.verifier.start(&h, &self.stage);
                    self.stage.clear();
                    self.parser
                        .unit
                        .reserve_exact(OLD_PAGE_HEADER_SIZE + h.page_size.bytes());
                    if h.flags & V1_FLAG_LZ4 != 0 {
                        self.lz4 = Some(Box::default());
                        self.parser.pos = 0;
                    } else {
                        self.parser.pos = HEADER_SIZE as u64;
                    }
                    self.header = Some(h);
                    self.st = St::Block;
                    return Ok((used, Event::Header(h)));
                }
                St::Block => {
                    let h = self.header.expect("header decoded");
                    // Error positions: the current unit's start (raw), or the
                    // end of the LZ4 block being parsed; both independent of
                    // how the input was split.
                    let at = if self.lz4.is_none() {
                        self.parser.pos
                    } else {
                        self.offset
                    };
                    let ev = match self.lz4.as_mut() {
                        None => {
                            let (n, ev) =
                                self.parser
                                    .feed(&input[used..], &h, &mut self.verifier, at)?;
                            used += n;
                            self.offset += n as u64;
                            ev
                        }
                        Some(lz4) => {
                            let out = lz4.output();
                            if self.out_pos < out.len() {
                                let (n, ev) = self.parser.feed(
                                    &out[self.out_pos..],
                                    &h,
                                    &mut self.verifier,
                                    at,
                                )?;
                                self.out_pos += n;
                                if let BlockEv::End = ev {
                                    let left = out.len() - self.out_pos;
                                    if left > 0 {
                                        return Err(Error::new(ErrorKind::Lz4Corrupt(format!(
                                            "{left} decompressed bytes after the page block terminator"
                                        )))
                                        .at(at));
                                    }
                                }
                                ev
                            } else {
                                let (n, lev) = lz4
                                    .decode(&input[used..])
                                    .map_err(|e| e.offset_by(HEADER_SIZE as u64))?;
                                used += n;
                                self.offset += n as u64;
                                match lev {
                                    Lz4Event::NeedMore => return Ok((used, Event::NeedMore)),
                                    Lz4Event::Block => {
                                        self.out_pos = 0;
                                        continue;
                                    }
                                    Lz4Event::End => {
                                        return Err(Error::new(ErrorKind::Lz4Corrupt(
                                            "the LZ4 frame ends before the page block terminator"
                                                .into(),
                                        ))
                                        .at(self.offset))
                                    }
                                }
                            }
                        }
                    };
                    match ev {
                        BlockEv::More if self.lz4.is_none() => return Ok((used, Event::NeedMore)),
                        BlockEv::More => continue,
                        BlockEv::Page(info) => {
                            self.reset_unit = true;
                            return Ok((used, Event::Page(info)));
                        }
                        BlockEv::End => {
                            self.parser.unit.clear();
                            self.st = if self.lz4.is_some() {
                                St::Lz4End
                            } else {
                                St::Trailer
                            };
                        }
                    }
                }
                St::Lz4End => {
                    let lz4 = self.lz4.as_mut().expect("LZ4 file");
                    let (n, lev) = lz4
                        .decode(&input[used..])
                        .map_err(|e| e.offset_by(HEADER_SIZE as u64))?;
                    used += n;
                    self.offset += n as u64;
                    match lev {
                        Lz4Event::NeedMore => return Ok((used, Event::NeedMore)),
                        Lz4Event::Block if lz4.output().is_empty() => continue,
                        Lz4Event::Block => {
                            return Err(Error::new(ErrorKind::Lz4Corrupt(format!(
                                "{} decompressed bytes after the page block terminator",
                                lz4.output().len()
                            )))
                            .at(self.offset))
                        }
                        Lz4Event::End => self.st = St::Trailer,
                    }
                }
                St::Trailer => {
                    if !self.take(input, &mut used, TRAILER_SIZE) {
                        return Ok((used, Event::NeedMore));
                    }
                    let h = self.header.expect("header decoded");
                    let at = self.offset - TRAILER_SIZE as u64;
                    let b: [u8; TRAILER_SIZE] = self.stage[..].try_into().expect("16 bytes");
                    // Nothing more to stage: release it.
                    self.stage = Vec::new();
                    let s = self.verifier.trailer(&h, &b, at, FormatVersion::V1)?;
                    self.st = St::Done;
                    return Ok((used, Event::Done(s)));
                }
            }
        }
    }
}
/// Helpers for documentation examples and tests.
#[doc(hidden)]
pub mod tests_support {
    use super::*;

    /// Encodes a v1 file without LZ4 (for tests; ltx-core writes only v3):
    /// `header` as given, `pages` in order, the trailer with `post_apply`.
    pub fn v1_raw(header: &Header, pages: &[(u32, Vec<u8>)], post_apply: Checksum) -> Vec<u8> {
        let mut out = header.to_bytes().to_vec();
        for (pgno, data) in pages {
            out.extend_from_slice(&pgno.to_be_bytes());
            out.extend_from_slice(data);
        }
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&post_apply.0.to_be_bytes());
        let crc = crate::checksum::crc64(&out);
        out.extend_from_slice(&(crc | CHECKSUM_FLAG).to_be_bytes());
        out
    }

    /// Encodes a v1 file with an LZ4 page block (for tests): one LZ4 frame,
    /// independent 64 KiB blocks, content checksum, as the reference writes.
    pub fn v1_lz4(header: &Header, pages: &[(u32, Vec<u8>)], post_apply: Checksum) -> Vec<u8> {
        let mut h = *header;
        h.flags |= V1_FLAG_LZ4;
        let mut block = Vec::new();
        for (pgno, data) in pages {
            block.extend_from_slice(&pgno.to_be_bytes());
            block.extend_from_slice(data);
        }
        block.extend_from_slice(&[0; 4]);
        let mut out = h.to_bytes().to_vec();
        let mut crc = Crc64::new();
        crc.update(&out);
        crc.update(&block);
        crc.update(&post_apply.0.to_be_bytes());
        let mut f = vec![0x04, 0x22, 0x4d, 0x18, 0x64, 0x40];
        f.push(((xxhash_rust::xxh32::xxh32(&f[4..6], 0) >> 8) & 0xff) as u8);
        for chunk in block.chunks(64 * 1024) {
            let c = lz4_flex::block::compress(chunk);
            if c.len() < chunk.len() {
                f.extend_from_slice(&(c.len() as u32).to_le_bytes());
                f.extend_from_slice(&c);
            } else {
                f.extend_from_slice(&(chunk.len() as u32 | 0x8000_0000).to_le_bytes());
                f.extend_from_slice(chunk);
            }
        }
        f.extend_from_slice(&[0; 4]);
        f.extend_from_slice(&xxhash_rust::xxh32::xxh32(&block, 0).to_le_bytes());
        out.extend_from_slice(&f);
        out.extend_from_slice(&post_apply.0.to_be_bytes());
        out.extend_from_slice(&(crc.value() | CHECKSUM_FLAG).to_be_bytes());
        out
    }

    /// A small valid v1 snapshot (2 pages of 512 bytes), optionally with an
    /// LZ4 page block (one stored block).
    pub fn tiny_v1(lz4: bool) -> Vec<u8> {
        let ps = crate::types::PageSize::new(512).unwrap();
        let mut h = Header::new(ps, crate::types::TxId(1), crate::types::TxId(1));
        h.commit = 2;
        if lz4 {
            h.flags = V1_FLAG_LZ4;
        }
        let mut block = Vec::new();
        let mut sum = crate::checksum::DbChecksum::new(ps);
        for pgno in 1..=2u32 {
            let page = [pgno as u8; 512];
            block.extend_from_slice(&pgno.to_be_bytes());
            block.extend_from_slice(&page);
            sum.add(pgno, &page);
        }
        block.extend_from_slice(&[0; 4]);
        let post = sum.value();
        let mut crc = Crc64::new();
        crc.update(&h.to_bytes());
        crc.update(&block);
        crc.update(&post.0.to_be_bytes());
        let mut out = h.to_bytes().to_vec();
        if lz4 {
            let mut f = vec![0x04, 0x22, 0x4d, 0x18, 0x64, 0x40];
            f.push(((xxhash_rust::xxh32::xxh32(&f[4..6], 0) >> 8) & 0xff) as u8);
            f.extend_from_slice(&(block.len() as u32 | 0x8000_0000).to_le_bytes());
            f.extend_from_slice(&block);
            f.extend_from_slice(&[0; 4]);
            f.extend_from_slice(&xxhash_rust::xxh32::xxh32(&block, 0).to_le_bytes());
            out.extend_from_slice(&f);
        } else {
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&post.0.to_be_bytes());
        out.extend_from_slice(&(crc.value() | CHECKSUM_FLAG).to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::{tiny_v1, v1_lz4, v1_raw};
    use super::*;
    use crate::checksum::DbChecksum;
    use crate::decoder::{Decoded, Summary};
    use crate::types::{PageSize, TxId};

    fn run(bytes: &[u8], chunk: usize) -> Result<(u64, Summary)> {
        let mut d = V1Decoder::new();
        let mut pages = 0;
        for piece in bytes.chunks(chunk) {
            let mut input = piece;
            loop {
                let (n, ev) = d.decode(input)?;
                input = &input[n..];
                match ev {
                    Decoded::Page { .. } => pages += 1,
                    Decoded::NeedMore => break,
                    Decoded::Done(_) if input.is_empty() => break,
                    _ => {}
                }
            }
        }
        Ok((pages, d.finish()?))
    }

    #[test]
    fn tiny_files_at_every_split() {
        for lz4 in [false, true] {
            let f = tiny_v1(lz4);
            let (n, s) = run(&f, f.len()).unwrap();
            assert_eq!(n, 2);
            assert_eq!(s.format_version, FormatVersion::V1);
            for at in 0..=f.len() {
                let mut d = V1Decoder::new();
                let mut pages = 0;
                for part in [&f[..at], &f[at..]] {
                    let mut input = part;
                    loop {
                        let (k, ev) = d.decode(input).unwrap();
                        input = &input[k..];
                        match ev {
                            Decoded::Page { .. } => pages += 1,
                            Decoded::NeedMore => break,
                            Decoded::Done(_) if input.is_empty() => break,
                            _ => {}
                        }
                    }
                }
                assert_eq!(pages, 2);
                assert_eq!(d.finish().unwrap(), s);
            }
            // Truncation: an error, never a panic; any flipped byte: an error.
            for n in 0..f.len() {
                assert!(run(&f[..n], 1).is_err());
                let mut g = f.clone();
                g[n] ^= 0x10;
                assert!(run(&g, 7).is_err(), "flip at {n} accepted (lz4 {lz4})");
            }
        }
    }

    #[test]
    fn lz4_page_block_is_decoded_in_bounded_memory() {
        // 2000 pages of 4 KiB: an 8 MiB page block in one LZ4 frame.
        let ps = PageSize::new(4096).unwrap();
        let mut h = Header::new(ps, TxId(1), TxId(1));
        h.commit = 2000;
        let mut sum = DbChecksum::new(ps);
        let pages: Vec<(u32, Vec<u8>)> = (1..=2000u32)
            .map(|p| {
                let data: Vec<u8> = (0..4096u32).map(|i| ((i * p) % 251) as u8).collect();
                sum.add(p, &data);
                (p, data)
            })
            .collect();
        let f = v1_lz4(&h, &pages, sum.value());
        let mut d = V1Decoder::new();
        let mut max = 0;
        let mut n = 0;
        for piece in f.chunks(64 * 1024) {
            let mut input = piece;
            loop {
                max = max.max(d.buffered_bytes());
                let (k, ev) = d.decode(input).unwrap();
                input = &input[k..];
                match ev {
                    Decoded::Page { info, data } => {
                        assert_eq!(data, &pages[n].1[..]);
                        assert_eq!(info.offset, n as u64 * 4100);
                        n += 1;
                    }
                    Decoded::NeedMore => break,
                    Decoded::Done(_) if input.is_empty() => break,
                    _ => {}
                }
            }
        }
        assert_eq!(n, 2000);
        assert!(d.finish().is_ok());
        assert!(
            max < 300 * 1024,
            "held {max} bytes for a {} byte file",
            f.len()
        );
        // The same pages uncompressed give the same file checksum.
        let mut raw_h = h;
        raw_h.flags = 0;
        let raw = v1_raw(&raw_h, &pages, sum.value());
        assert!(run(&raw, 4093).is_ok());
    }
}
