//! An incremental, sans-I/O decoder for one LZ4 *frame* (the LZ4 frame format,
//! magic `04 22 4D 18`) of any length, as used by format version 1 for its
//! compressed page block.
//!
//! Memory is bounded by the frame's block maximum size (at most 4 MiB): the
//! decoder stages at most one compressed block, holds one decompressed block
//! and, for linked blocks, a 64 KiB window of earlier output. It never holds
//! the whole frame.
//!
//! ```
//! use ltx_core::old::lz4stream::{Lz4Event, Lz4FrameDecoder};
//! // A frame with one stored (uncompressed) block "hello" and no checksums.
//! let mut f = vec![0x04, 0x22, 0x4d, 0x18, 0x40, 0x40];
//! f.push(((xxhash_rust::xxh32::xxh32(&f[4..6], 0) >> 8) & 0xff) as u8);
//! f.extend_from_slice(&(5u32 | 0x8000_0000).to_le_bytes());
//! f.extend_from_slice(b"hello");
//! f.extend_from_slice(&[0, 0, 0, 0]);
//! let mut dec = Lz4FrameDecoder::new();
//! let mut input: &[u8] = &f;
//! let mut out = Vec::new();
//! loop {
//!     let (n, ev) = dec.decode(input).unwrap();
//!     input = &input[n..];
//!     match ev {
//!         Lz4Event::Block => out.extend_from_slice(dec.output()),
//!         Lz4Event::End => break,
//!         Lz4Event::NeedMore => unreachable!("the whole frame was given"),
//!     }
//! }
//! assert_eq!(out, b"hello");
//! ```

use crate::error::{Error, ErrorKind, Result};

/// LZ4 frame magic number (little-endian on disk).
pub const LZ4_FRAME_MAGIC: u32 = 0x184D_2204;
/// Window of earlier output that linked blocks may reference.
pub const LZ4_WINDOW: usize = 64 * 1024;

fn lz4_err(m: impl Into<String>) -> Error {
    Error::new(ErrorKind::Lz4Corrupt(m.into()))
}

/// What one call to [`Lz4FrameDecoder::decode`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lz4Event {
    /// All input was consumed; feed more.
    NeedMore,
    /// A block was decompressed; its bytes are in [`Lz4FrameDecoder::output`]
    /// until the next call.
    Block,
    /// The frame ended (end mark and content checksum verified). Bytes after
    /// the frame are not consumed.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Desc,
    BlockSize,
    Block { raw: bool, size: usize },
    ContentChecksum,
    Done,
    Failed,
}

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

/// Incremental LZ4 frame decoder: feed byte slices, get decompressed blocks.
/// Split-independent, bounded, poisoned after the first error. Offsets in
/// errors are relative to the frame's first byte.
pub struct Lz4FrameDecoder {
    st: St,
    stage: Vec<u8>,
    info: Option<Lz4FrameInfo>,
    out: Vec<u8>,
    window: Vec<u8>,
    hasher: xxhash_rust::xxh32::Xxh32,
    consumed: u64,
    total_out: u64,
    blocks: u64,
    stored_blocks: u64,
}

impl std::fmt::Debug for Lz4FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lz4FrameDecoder")
            .field("st", &self.st)
            .field("info", &self.info)
            .field("consumed", &self.consumed)
            .field("total_out", &self.total_out)
            .finish_non_exhaustive()
    }
}

impl Default for Lz4FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Lz4FrameDecoder {
    /// A decoder at the start of a frame.
    pub fn new() -> Lz4FrameDecoder {
        Lz4FrameDecoder {
            st: St::Desc,
            stage: Vec::new(),
            info: None,
            out: Vec::new(),
            window: Vec::new(),
            hasher: xxhash_rust::xxh32::Xxh32::new(0),
            consumed: 0,
            total_out: 0,
            blocks: 0,
            stored_blocks: 0,
        }
    }

    /// The frame descriptor, once read.
    pub fn info(&self) -> Option<&Lz4FrameInfo> {
        self.info.as_ref()
    }

    /// The last decompressed block (valid after [`Lz4Event::Block`]).
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// Frame bytes consumed so far (including staged ones).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Decompressed bytes produced so far.
    pub fn total_out(&self) -> u64 {
        self.total_out
    }

    /// Number of data blocks so far, and how many of them were stored uncompressed.
    pub fn blocks(&self) -> (u64, u64) {
        (self.blocks, self.stored_blocks)
    }

    /// Bytes of buffer capacity held (stage, output, window): bounded by
    /// about twice the block maximum size plus the 64 KiB window.
    pub fn buffered_bytes(&self) -> usize {
        self.stage.capacity() + self.out.capacity() + self.window.capacity()
    }

    /// Whether the frame ended.
    pub fn is_done(&self) -> bool {
        self.st == St::Done
    }

    /// What the decoder waits for (for truncation messages).
    pub fn expecting(&self) -> &'static str {
        match self.st {
            St::Desc => "LZ4 frame descriptor",
            St::BlockSize => "LZ4 block size or end mark",
            St::Block { .. } => "LZ4 block",
            St::ContentChecksum => "LZ4 content checksum",
            St::Done | St::Failed => "nothing",
        }
    }

    /// Decodes from `input`; returns the bytes consumed and what was found.
    ///
    /// # Errors
    /// [`ErrorKind::Lz4Corrupt`] / [`ErrorKind::FrameTooLarge`] with the offset
    /// relative to the frame start; then [`ErrorKind::Poisoned`].
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Lz4Event)> {
        if self.st == St::Failed {
            return Err(Error::new(ErrorKind::Poisoned));
        }
        match self.step(input) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.st = St::Failed;
                Err(e)
            }
        }
    }

    /// Takes up to `n` bytes into the stage; true when it holds `n`.
    fn fill(&mut self, input: &[u8], used: &mut usize, n: usize) -> bool {
        if self.stage.len() < n {
            let k = (n - self.stage.len()).min(input.len() - *used);
            self.stage.extend_from_slice(&input[*used..*used + k]);
            *used += k;
            self.consumed += k as u64;
        }
        self.stage.len() >= n
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Lz4Event)> {
        let mut used = 0usize;
        self.out.clear();
        loop {
            let at = self.consumed - self.stage.len() as u64;
            match self.st {
                St::Failed => return Err(Error::new(ErrorKind::Poisoned)),
                St::Done => return Ok((used, Lz4Event::End)),
                St::Desc => {
                    // magic (4) + FLG + BD, then optional content size (8), then HC.
                    if !self.fill(input, &mut used, 7) {
                        return Ok((used, Lz4Event::NeedMore));
                    }
                    let magic = u32::from_le_bytes(self.stage[0..4].try_into().unwrap());
                    if magic != LZ4_FRAME_MAGIC {
                        return Err(lz4_err(format!(
                            "LZ4 frame magic is 0x{magic:08x}, expected 0x{LZ4_FRAME_MAGIC:08x}"
                        ))
                        .at(at));
                    }
                    let flg = self.stage[4];
                    let bd = self.stage[5];
                    if flg >> 6 != 0b01 {
                        return Err(lz4_err(format!(
                            "LZ4 frame version bits {:02b}, expected 01",
                            flg >> 6
                        ))
                        .at(at + 4));
                    }
                    if flg & 0b10 != 0 {
                        return Err(lz4_err("LZ4 frame reserved FLG bit set").at(at + 4));
                    }
                    if flg & 0b1 != 0 {
                        return Err(lz4_err(
                            "LZ4 frame uses a dictionary ID, which LTX never writes",
                        )
                        .at(at + 4));
                    }
                    if bd & 0b1000_1111 != 0 {
                        return Err(lz4_err("LZ4 frame reserved BD bits set").at(at + 5));
                    }
                    let code = bd >> 4;
                    if !(4..=7).contains(&code) {
                        return Err(lz4_err(format!(
                            "LZ4 frame block max size code {code}, expected 4..=7"
                        ))
                        .at(at + 5));
                    }
                    let has_size = flg & 0b1000 != 0;
                    let desc_len = 7 + if has_size { 8 } else { 0 };
                    if !self.fill(input, &mut used, desc_len) {
                        return Ok((used, Lz4Event::NeedMore));
                    }
                    let hc = ((xxhash_rust::xxh32::xxh32(&self.stage[4..desc_len - 1], 0) >> 8)
                        & 0xff) as u8;
                    if hc != self.stage[desc_len - 1] {
                        return Err(lz4_err(format!(
                            "LZ4 frame header checksum 0x{:02x}, computed 0x{hc:02x}",
                            self.stage[desc_len - 1]
                        ))
                        .at(at + desc_len as u64 - 1));
                    }
                    let content_size =
                        has_size.then(|| u64::from_le_bytes(self.stage[6..14].try_into().unwrap()));
                    self.info = Some(Lz4FrameInfo {
                        flg,
                        bd,
                        block_max_size: 1usize << (8 + 2 * code as usize),
                        independent: flg & 0b10_0000 != 0,
                        block_checksum: flg & 0b1_0000 != 0,
                        content_checksum: flg & 0b100 != 0,
                        content_size,
                        desc_len,
                    });
                    self.stage.clear();
                    self.st = St::BlockSize;
                }
                St::BlockSize => {
                    if !self.fill(input, &mut used, 4) {
                        return Ok((used, Lz4Event::NeedMore));
                    }
                    let raw = u32::from_le_bytes(self.stage[0..4].try_into().unwrap());
                    self.stage.clear();
                    let info = self.info.expect("descriptor read");
                    if raw == 0 {
                        if let Some(cs) = info.content_size {
                            if cs != self.total_out {
                                return Err(lz4_err(format!(
                                    "LZ4 frame declares content size {cs}, decompressed {}",
                                    self.total_out
                                ))
                                .at(at));
                            }
                        }
                        if info.content_checksum {
                            self.st = St::ContentChecksum;
                        } else {
                            self.st = St::Done;
                            return Ok((used, Lz4Event::End));
                        }
                        continue;
                    }
                    let size = (raw & 0x7fff_ffff) as usize;
                    if size > info.block_max_size {
                        return Err(Error::new(ErrorKind::FrameTooLarge {
                            size: size as u64,
                            max: info.block_max_size as u64,
                        })
                        .at(at));
                    }
                    self.st = St::Block {
                        raw: raw & 0x8000_0000 != 0,
                        size,
                    };
                }
                St::Block { raw, size } => {
                    let info = self.info.expect("descriptor read");
                    let n = size + if info.block_checksum { 4 } else { 0 };
                    if !self.fill(input, &mut used, n) {
                        return Ok((used, Lz4Event::NeedMore));
                    }
                    let data = &self.stage[..size];
                    if info.block_checksum {
                        let stored =
                            u32::from_le_bytes(self.stage[size..size + 4].try_into().unwrap());
                        let computed = xxhash_rust::xxh32::xxh32(data, 0);
                        if stored != computed {
                            return Err(lz4_err(format!(
                                "LZ4 block checksum 0x{stored:08x}, computed 0x{computed:08x}"
                            ))
                            .at(at + size as u64));
                        }
                    }
                    self.out.clear();
                    if raw {
                        self.out.extend_from_slice(data);
                        self.stored_blocks += 1;
                    } else {
                        self.out.resize(info.block_max_size, 0);
                        let dict: &[u8] = if info.independent { &[] } else { &self.window };
                        let got =
                            lz4_flex::block::decompress_into_with_dict(data, &mut self.out, dict)
                                .map_err(|e| {
                                lz4_err(format!(
                                    "LZ4 block: {e} (block maximum size {})",
                                    info.block_max_size
                                ))
                                .at(at)
                            })?;
                        self.out.truncate(got);
                    }
                    self.blocks += 1;
                    self.stage.clear();
                    self.hasher.update(&self.out);
                    self.total_out += self.out.len() as u64;
                    if let Some(cs) = info.content_size {
                        if self.total_out > cs {
                            return Err(lz4_err(format!(
                                "LZ4 frame decompresses to more than its declared content size {cs}"
                            ))
                            .at(at));
                        }
                    }
                    if !info.independent {
                        self.window.extend_from_slice(&self.out);
                        if self.window.len() > LZ4_WINDOW {
                            let cut = self.window.len() - LZ4_WINDOW;
                            self.window.drain(..cut);
                        }
                    }
                    self.st = St::BlockSize;
                    return Ok((used, Lz4Event::Block));
                }
                St::ContentChecksum => {
                    if !self.fill(input, &mut used, 4) {
                        return Ok((used, Lz4Event::NeedMore));
                    }
                    let stored = u32::from_le_bytes(self.stage[0..4].try_into().unwrap());
                    self.stage.clear();
                    let computed = self.hasher.digest();
                    if stored != computed {
                        return Err(lz4_err(format!(
                            "LZ4 content checksum 0x{stored:08x}, computed 0x{computed:08x}"
                        ))
                        .at(at));
                    }
                    self.st = St::Done;
                    return Ok((used, Lz4Event::End));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(blocks: &[(&[u8], bool)], content_checksum: bool, independent: bool) -> Vec<u8> {
        let mut flg = 0x40u8;
        if independent {
            flg |= 0x20;
        }
        if content_checksum {
            flg |= 0x04;
        }
        let mut f = vec![0x04, 0x22, 0x4d, 0x18, flg, 0x40];
        f.push(((xxhash_rust::xxh32::xxh32(&f[4..6], 0) >> 8) & 0xff) as u8);
        let mut all = Vec::new();
        for (b, stored) in blocks {
            all.extend_from_slice(b);
            if *stored {
                f.extend_from_slice(&(b.len() as u32 | 0x8000_0000).to_le_bytes());
                f.extend_from_slice(b);
            } else {
                let c = lz4_flex::block::compress(b);
                f.extend_from_slice(&(c.len() as u32).to_le_bytes());
                f.extend_from_slice(&c);
            }
        }
        f.extend_from_slice(&[0; 4]);
        if content_checksum {
            f.extend_from_slice(&xxhash_rust::xxh32::xxh32(&all, 0).to_le_bytes());
        }
        f
    }

    fn run(f: &[u8], chunk: usize) -> Result<Vec<u8>> {
        let mut d = Lz4FrameDecoder::new();
        let mut out = Vec::new();
        for piece in f.chunks(chunk) {
            let mut input = piece;
            loop {
                let (n, ev) = d.decode(input)?;
                input = &input[n..];
                match ev {
                    Lz4Event::Block => out.extend_from_slice(d.output()),
                    Lz4Event::End => return Ok(out),
                    Lz4Event::NeedMore => break,
                }
            }
        }
        Err(Error::new(ErrorKind::Truncated {
            expected: "LZ4 frame",
        }))
    }

    #[test]
    fn every_chunking_gives_the_same_output() {
        let a: Vec<u8> = (0..5000u32).map(|i| (i % 7) as u8).collect();
        let f = frame(&[(&a, false), (b"stored", true), (&a, false)], true, true);
        let want = [a.clone(), b"stored".to_vec(), a.clone()].concat();
        for chunk in [1, 2, 3, 7, 64, f.len()] {
            assert_eq!(run(&f, chunk).unwrap(), want);
        }
        // Any damage is detected, any truncation is not accepted.
        for n in 0..f.len() {
            assert!(run(&f[..n], 1).is_err());
        }
        let mut g = f.clone();
        let last = g.len() - 1;
        g[last] ^= 1;
        assert!(run(&g, 5).is_err());
    }

    #[test]
    fn oversized_blocks_are_refused() {
        let mut f = frame(&[(b"x", true)], false, true);
        f[7..11].copy_from_slice(&(0x7fff_fff0u32).to_le_bytes());
        assert!(matches!(
            run(&f, 1).unwrap_err().kind(),
            ErrorKind::FrameTooLarge { .. }
        ));
    }
}
