//! The LZ4 frame format (magic `04 22 4D 18`) as one state machine over its
//! units, shared by the two places LTX uses it: a legacy page frame (one LZ4
//! frame per page, v3 flags 0 and every v2 frame; [`crate::frame`]) and the
//! v1 page block (one LZ4 frame over the whole block;
//! [`crate::old::lz4stream`]).
//!
//! ```text
//! descriptor  magic u32 LE | FLG | BD | content size u64 LE (if FLG bit 3) | HC
//! blocks      { size u32 LE (bit 31: stored) | data | xxh32(data) (if FLG bit 4) }*
//! end mark    00 00 00 00
//! checksum    xxh32 of the content (if FLG bit 2)
//! ```
//!
//! The machine is fed one whole unit at a time ([`Lz4Frame::need`] says how
//! long the next one is) and checks every rule of the frame format: the
//! descriptor, the block size limits, the block and content checksums, the
//! content length. Decompressing a block is the caller's (into a page, with
//! the page's earlier blocks as dictionary; or into a block buffer with a
//! 64 KiB window), which reports the output with [`Lz4Frame::produced`].
//! Errors carry offsets relative to the start of the unit fed.

use crate::error::{Error, ErrorKind, Result};
use crate::types::{lz4_bound, PageSize};

/// LZ4 frame magic number (little-endian on disk).
pub const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;

/// The parsed frame descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lz4FrameInfo {
    /// The FLG byte.
    pub flg: u8,
    /// The BD byte.
    pub bd: u8,
    /// Block maximum size in bytes (64 KiB .. 4 MiB).
    pub block_max_size: usize,
    /// Blocks are independent (no references into earlier blocks).
    pub independent: bool,
    /// Each block is followed by an xxHash32 of its stored bytes.
    pub block_checksum: bool,
    /// The frame ends with an xxHash32 of the decompressed content.
    pub content_checksum: bool,
    /// The declared decompressed size, if present.
    pub content_size: Option<u64>,
    /// Descriptor length including magic and header checksum.
    pub desc_len: usize,
}

pub(crate) fn lz4_err(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::Lz4Corrupt(m.into()))
}

/// Parses the descriptor at the start of `buf`. `Ok(Err(n))`: it needs at
/// least `n` bytes (the magic is checked from 4 bytes on, FLG and BD from 7).
fn parse_descriptor(buf: &[u8]) -> Result<Result<Lz4FrameInfo, usize>> {
    if buf.len() < 4 {
        return Ok(Err(4));
    }
    let magic = u32::from_le_bytes(buf[0..4].try_into().unwrap());
    if magic != LZ4_FRAME_MAGIC {
        return Err(lz4_err(format!(
            "LZ4 frame magic is 0x{magic:08x}, expected 0x{LZ4_FRAME_MAGIC:08x}"
        ))
        .at(0));
    }
    if buf.len() < 7 {
        return Ok(Err(7));
    }
    let flg = buf[4];
    let bd = buf[5];
    if flg >> 6 != 0b01 {
        return Err(lz4_err(format!(
            "LZ4 frame version bits {:02b}, expected 01",
            flg >> 6
        ))
        .at(4));
    }
    if flg & 0b10 != 0 {
        return Err(lz4_err("LZ4 frame reserved FLG bit set").at(4));
    }
    if flg & 0b1 != 0 {
        return Err(lz4_err("LZ4 frame uses a dictionary ID, which LTX never writes").at(4));
    }
    if bd & 0b1000_1111 != 0 {
        return Err(lz4_err("LZ4 frame reserved BD bits set").at(5));
    }
    let code = bd >> 4;
    if !(4..=7).contains(&code) {
        return Err(lz4_err(format!(
            "LZ4 frame block max size code {code}, expected 4..=7"
        ))
        .at(5));
    }
    let has_size = flg & 0b1000 != 0;
    let desc_len = 7 + if has_size { 8 } else { 0 };
    if buf.len() < desc_len {
        return Ok(Err(desc_len));
    }
    let hc = ((xxhash_rust::xxh32::xxh32(&buf[4..desc_len - 1], 0) >> 8) & 0xff) as u8;
    if hc != buf[desc_len - 1] {
        return Err(lz4_err(format!(
            "LZ4 frame header checksum 0x{:02x}, computed 0x{hc:02x}",
            buf[desc_len - 1]
        ))
        .at(desc_len as u64 - 1));
    }
    Ok(Ok(Lz4FrameInfo {
        flg,
        bd,
        block_max_size: 1usize << (8 + 2 * code as usize),
        independent: flg & 0b10_0000 != 0,
        block_checksum: flg & 0b1_0000 != 0,
        content_checksum: flg & 0b100 != 0,
        content_size: has_size.then(|| u64::from_le_bytes(buf[6..14].try_into().unwrap())),
        desc_len,
    }))
}

/// What an LZ4 frame holds, which decides its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lz4Content {
    /// Exactly one page (a legacy page frame): a content size, when present,
    /// is the page size; a stored block holds at most a page, a compressed
    /// one at most the LZ4 bound of a page; the content is exactly one page.
    Page(PageSize),
    /// A stream of any length (the v1 page block): blocks up to the
    /// descriptor's block maximum size; a content size, when present, equals
    /// the decompressed length.
    Stream,
}

/// The unit an LZ4 frame expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lz4Unit {
    /// The descriptor (4, 7 or 15 bytes: see [`Lz4Frame::need`]).
    Descriptor,
    /// A block's 4-byte size, or the end mark.
    BlockSize,
    /// A block's data, and its checksum when blocks carry one.
    Block {
        /// Stored uncompressed.
        stored: bool,
        /// Bytes of data.
        size: usize,
    },
    /// The 4-byte content checksum.
    ContentChecksum,
    /// Nothing: the frame ended.
    End,
}

/// What a unit held.
#[derive(Debug)]
pub(crate) enum Lz4Step<'a> {
    /// The descriptor, or the size of a block to come.
    Next,
    /// A block's data (its checksum verified): `stored` bytes to copy, or an
    /// LZ4 block to decompress. Report the output with [`Lz4Frame::produced`].
    Block { stored: bool, data: &'a [u8] },
    /// The end mark: the content is complete (and its length checked).
    EndMark,
    /// The content checksum matched: the frame ended.
    End,
}

/// The LZ4 frame state machine (see the [module docs](self)).
#[derive(Clone)]
pub(crate) struct Lz4Frame {
    content: Lz4Content,
    /// False when only scanning for the frame's length: checksums and the
    /// content length are not checked, and blocks may be skipped unread.
    verify: bool,
    unit: Lz4Unit,
    info: Option<Lz4FrameInfo>,
    hasher: xxhash_rust::xxh32::Xxh32,
    total_out: u64,
}

impl std::fmt::Debug for Lz4Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lz4Frame")
            .field("content", &self.content)
            .field("verify", &self.verify)
            .field("unit", &self.unit)
            .field("info", &self.info)
            .field("total_out", &self.total_out)
            .finish_non_exhaustive()
    }
}

impl Lz4Frame {
    /// A frame of `content`, verified as it is decoded.
    pub(crate) fn new(content: Lz4Content) -> Lz4Frame {
        Lz4Frame {
            content,
            verify: true,
            unit: Lz4Unit::Descriptor,
            info: None,
            hasher: xxhash_rust::xxh32::Xxh32::new(0),
            total_out: 0,
        }
    }

    /// A frame holding one page, read only to find its length: the structure
    /// and the limits are checked, the checksums and the content are not.
    pub(crate) fn scanner(page_size: PageSize) -> Lz4Frame {
        Lz4Frame {
            verify: false,
            ..Lz4Frame::new(Lz4Content::Page(page_size))
        }
    }

    /// The unit expected next.
    pub(crate) fn unit(&self) -> Lz4Unit {
        self.unit
    }

    /// The descriptor, once read.
    pub(crate) fn info(&self) -> Option<&Lz4FrameInfo> {
        self.info.as_ref()
    }

    /// Decompressed bytes reported so far.
    pub(crate) fn total_out(&self) -> u64 {
        self.total_out
    }

    /// The length of the next unit. Only the descriptor's depends on its
    /// bytes: `head` (what is available of it) is checked as far as it goes
    /// and the length is 4 (nothing known yet), 7 (before FLG), or the whole
    /// descriptor's (7 or 15).
    ///
    /// # Errors
    /// Descriptor errors found in `head`.
    pub(crate) fn need(&self, head: &[u8]) -> Result<usize> {
        Ok(match self.unit {
            Lz4Unit::Descriptor => match parse_descriptor(head)? {
                Ok(info) => info.desc_len,
                Err(n) => n,
            },
            Lz4Unit::BlockSize | Lz4Unit::ContentChecksum => 4,
            Lz4Unit::Block { size, .. } => size + self.block_checksum_len(),
            Lz4Unit::End => 0,
        })
    }

    fn block_checksum_len(&self) -> usize {
        if self.info.is_some_and(|i| i.block_checksum) {
            4
        } else {
            0
        }
    }

    /// Consumes the next unit: exactly [`Lz4Frame::need`] bytes.
    ///
    /// # Errors
    /// [`ErrorKind::Lz4Corrupt`], [`ErrorKind::FrameTooLarge`] (a block
    /// above the limit), relative to the unit's start;
    /// [`ErrorKind::Misuse`] after the end.
    pub(crate) fn feed<'a>(&mut self, unit: &'a [u8]) -> Result<Lz4Step<'a>> {
        match self.unit {
            Lz4Unit::Descriptor => {
                let info = parse_descriptor(unit)?
                    .map_err(|_| lz4_err("incomplete LZ4 frame descriptor"))?;
                if let (Lz4Content::Page(ps), Some(cs)) = (self.content, info.content_size) {
                    if cs != u64::from(ps.get()) {
                        return Err(lz4_err(format!(
                            "LZ4 frame content size {cs}, expected the page size {ps}"
                        ))
                        .at(6));
                    }
                }
                self.info = Some(info);
                self.unit = Lz4Unit::BlockSize;
                Ok(Lz4Step::Next)
            }
            Lz4Unit::BlockSize => {
                let info = self.info.expect("descriptor read");
                let raw = u32::from_le_bytes(unit[..4].try_into().unwrap());
                if raw == 0 {
                    if self.verify {
                        self.check_length()?;
                    }
                    self.unit = if info.content_checksum {
                        Lz4Unit::ContentChecksum
                    } else {
                        Lz4Unit::End
                    };
                    return Ok(Lz4Step::EndMark);
                }
                let size = (raw & 0x7fff_ffff) as usize;
                let stored = raw & 0x8000_0000 != 0;
                let max = match self.content {
                    Lz4Content::Page(ps) if stored => ps.bytes(),
                    Lz4Content::Page(ps) => lz4_bound(ps.bytes()),
                    Lz4Content::Stream => info.block_max_size,
                };
                if size > max {
                    return Err(Error::new(ErrorKind::FrameTooLarge {
                        size: size as u64,
                        max: max as u64,
                    })
                    .at(0));
                }
                self.unit = Lz4Unit::Block { stored, size };
                Ok(Lz4Step::Next)
            }
            Lz4Unit::Block { stored, size } => {
                let data = &unit[..size];
                if self.verify && self.block_checksum_len() != 0 {
                    let stored = u32::from_le_bytes(unit[size..size + 4].try_into().unwrap());
                    let computed = xxhash_rust::xxh32::xxh32(data, 0);
                    if stored != computed {
                        return Err(lz4_err(format!(
                            "LZ4 block checksum 0x{stored:08x}, computed 0x{computed:08x}"
                        ))
                        .at(size as u64));
                    }
                }
                self.unit = Lz4Unit::BlockSize;
                Ok(Lz4Step::Block { stored, data })
            }
            Lz4Unit::ContentChecksum => {
                if self.verify {
                    let stored = u32::from_le_bytes(unit[..4].try_into().unwrap());
                    let computed = self.hasher.digest();
                    if stored != computed {
                        let what = match self.content {
                            Lz4Content::Page(_) => "LZ4 frame content checksum",
                            Lz4Content::Stream => "LZ4 content checksum",
                        };
                        return Err(lz4_err(format!(
                            "{what} 0x{stored:08x}, computed 0x{computed:08x}"
                        ))
                        .at(0));
                    }
                }
                self.unit = Lz4Unit::End;
                Ok(Lz4Step::End)
            }
            Lz4Unit::End => Err(Error::new(ErrorKind::Misuse("LZ4 frame already ended"))),
        }
    }

    /// Passes over a block without reading it (scanning only).
    pub(crate) fn skip_block(&mut self) {
        debug_assert!(!self.verify && matches!(self.unit, Lz4Unit::Block { .. }));
        self.unit = Lz4Unit::BlockSize;
    }

    /// Reports the decompressed bytes of the block just fed (for the content
    /// checksum and length).
    ///
    /// # Errors
    /// [`ErrorKind::Lz4Corrupt`] when the content grows past its declared
    /// size (offset 0: the block's start).
    pub(crate) fn produced(&mut self, out: &[u8]) -> Result<()> {
        self.hasher.update(out);
        self.total_out += out.len() as u64;
        if let Some(cs) = self.info.and_then(|i| i.content_size) {
            if self.total_out > cs {
                return Err(lz4_err(format!(
                    "LZ4 frame decompresses to more than its declared content size {cs}"
                ))
                .at(0));
            }
        }
        Ok(())
    }

    /// At the end mark: the content has its exact length (relative to the
    /// end mark's start).
    fn check_length(&self) -> Result<()> {
        match self.content {
            Lz4Content::Page(ps) => {
                if self.total_out != u64::from(ps.get()) {
                    return Err(lz4_err(format!(
                        "LZ4 frame decompresses to {} bytes, expected {ps}",
                        self.total_out
                    ))
                    .at(4));
                }
            }
            Lz4Content::Stream => {
                if let Some(cs) = self.info.and_then(|i| i.content_size) {
                    if cs != self.total_out {
                        return Err(lz4_err(format!(
                            "LZ4 frame declares content size {cs}, decompressed {}",
                            self.total_out
                        ))
                        .at(0));
                    }
                }
            }
        }
        Ok(())
    }
}
