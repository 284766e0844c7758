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
use crate::lz4frame::{lz4_err, Lz4Content, Lz4Frame, Lz4Step, Lz4Unit};

pub use crate::lz4frame::{Lz4FrameInfo, LZ4_FRAME_MAGIC};

/// Window of earlier output that linked blocks may reference.
pub const LZ4_WINDOW: usize = 64 * 1024;

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

/// Incremental LZ4 frame decoder: feed byte slices, get decompressed blocks.
/// Split-independent, bounded, poisoned after the first error. Offsets in
/// errors are relative to the frame's first byte. The frame format's rules
/// are those of every LZ4 frame LTX reads (the crate's one LZ4 frame state
/// machine); this decoder stages its units and decompresses its blocks.
pub struct Lz4FrameDecoder {
    frame: Lz4Frame,
    failed: bool,
    stage: Vec<u8>,
    out: Vec<u8>,
    window: Vec<u8>,
    consumed: u64,
    blocks: u64,
    stored_blocks: u64,
}

impl std::fmt::Debug for Lz4FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lz4FrameDecoder")
            .field("unit", &self.frame.unit())
            .field("failed", &self.failed)
            .field("info", &self.frame.info())
            .field("consumed", &self.consumed)
            .field("total_out", &self.frame.total_out())
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
            frame: Lz4Frame::new(Lz4Content::Stream),
            failed: false,
            stage: Vec::new(),
            out: Vec::new(),
            window: Vec::new(),
            consumed: 0,
            blocks: 0,
            stored_blocks: 0,
        }
    }

    /// The frame descriptor, once read.
    pub fn info(&self) -> Option<&Lz4FrameInfo> {
        self.frame.info()
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
        self.frame.total_out()
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
        !self.failed && self.frame.unit() == Lz4Unit::End
    }

    /// What the decoder waits for (for truncation messages).
    pub fn expecting(&self) -> &'static str {
        if self.failed {
            return "nothing";
        }
        match self.frame.unit() {
            Lz4Unit::Descriptor => "LZ4 frame descriptor",
            Lz4Unit::BlockSize => "LZ4 block size or end mark",
            Lz4Unit::Block { .. } => "LZ4 block",
            Lz4Unit::ContentChecksum => "LZ4 content checksum",
            Lz4Unit::End => "nothing",
        }
    }

    /// Decodes from `input`; returns the bytes consumed and what was found.
    ///
    /// # Errors
    /// [`ErrorKind::Lz4Corrupt`] / [`ErrorKind::FrameTooLarge`] with the offset
    /// relative to the frame start; then [`ErrorKind::Poisoned`].
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Lz4Event)> {
        if self.failed {
            return Err(Error::new(ErrorKind::Poisoned));
        }
        match self.step(input) {
            Ok(r) => Ok(r),
            Err(e) => {
                self.failed = true;
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
            let n = match self.frame.unit() {
                Lz4Unit::End => return Ok((used, Lz4Event::End)),
                // The descriptor's length shows from its first 7 bytes.
                Lz4Unit::Descriptor if !self.fill(input, &mut used, 7) => {
                    return Ok((used, Lz4Event::NeedMore))
                }
                _ => self.frame.need(&self.stage).map_err(|e| e.offset_by(at))?,
            };
            if !self.fill(input, &mut used, n) {
                return Ok((used, Lz4Event::NeedMore));
            }
            let fix = |e: Error| e.offset_by(at);
            match self.frame.feed(&self.stage[..n]).map_err(fix)? {
                Lz4Step::Next | Lz4Step::EndMark => {}
                Lz4Step::End => {
                    self.stage.clear();
                    return Ok((used, Lz4Event::End));
                }
                Lz4Step::Block { stored, data } => {
                    let info = *self.frame.info().expect("descriptor read");
                    if stored {
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
                    self.frame.produced(&self.out).map_err(fix)?;
                    if !info.independent {
                        self.window.extend_from_slice(&self.out);
                        if self.window.len() > LZ4_WINDOW {
                            let cut = self.window.len() - LZ4_WINDOW;
                            self.window.drain(..cut);
                        }
                    }
                    return Ok((used, Lz4Event::Block));
                }
            }
            self.stage.clear();
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
