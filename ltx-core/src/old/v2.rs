//! Format version 2 (superfly/ltx v0.4.x) as a streaming, sans-I/O decoder.
//!
//! ```text
//! header      100 B   as in v3 (flag 0x1 is invalid)
//! frames      { pgno u32 | one LZ4 frame decompressing to exactly one page }*
//! end marker  00 00 00 00
//! page index  uvarint (pgno, offset, size)* | uvarint 0 | u64 byte length of the varints
//! trailer     post_apply_checksum u64 | file_checksum u64
//! ```
//!
//! File checksum: CRC-64/GO-ISO over header | per frame: pgno + decompressed
//! page | end marker | index varints | index size field | post-apply
//! checksum, bit 63 set. Index entries: offset of the frame's page number,
//! size = 4 + LZ4 frame length. This decoder also requires the index to match
//! the frames (the old reference does not check it).

use super::{decode_old_header, Rules, OLD_PAGE_HEADER_SIZE};
use crate::checksum::Crc64;
use crate::decoder::{parse_entry, Decoded, PageInfo, Summary};
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{decode_legacy, scan_legacy, Scan};
use crate::header::{Header, HEADER_SIZE, TRAILER_SIZE};
use crate::index::{IndexEntry, INDEX_SIZE_FIELD};
use crate::types::FormatVersion;

/// Header flags defined in v2 (NoChecksum only).
pub const V2_FLAG_MASK: u32 = 0x2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Header,
    Pgno,
    Frame,
    Index,
    IndexSize,
    Trailer,
    Done,
    Failed,
}

enum Ev {
    NeedMore,
    Header,
    Page(PageInfo),
    Done,
}

/// Streaming decoder for format version 2. Same contract as
/// [`crate::Decoder`].
#[derive(Debug)]
pub struct V2Decoder {
    st: St,
    stage: Vec<u8>,
    offset: u64,
    header: Option<Header>,
    hasher: Crc64,
    rules: Rules,
    page: Vec<u8>,
    pgno: u32,
    cur_offset: u64,
    index_pos: usize,
    index_bytes: u64,
    summary: Option<Summary>,
    error: Option<Error>,
    compute_checksum: bool,
}

impl Default for V2Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl V2Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> V2Decoder {
        V2Decoder {
            st: St::Header,
            stage: Vec::new(),
            offset: 0,
            header: None,
            hasher: Crc64::new(),
            rules: Rules::default(),
            page: Vec::new(),
            pgno: 0,
            cur_offset: 0,
            index_pos: 0,
            index_bytes: 0,
            summary: None,
            error: None,
            compute_checksum: false,
        }
    }

    /// Also compute the rolling checksum of the pages for incremental files.
    pub fn with_page_checksums(mut self) -> V2Decoder {
        self.compute_checksum = true;
        self
    }

    /// The header, once decoded.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// File bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.offset + self.stage.len() as u64
    }

    /// The frames decoded so far (equal to the page index once `Done`).
    pub fn frames(&self) -> &[IndexEntry] {
        &self.rules.frames
    }

    /// The summary, once `Done`.
    pub fn summary(&self) -> Option<&Summary> {
        self.summary.as_ref()
    }

    /// The first error, if decoding failed.
    pub fn error(&self) -> Option<&Error> {
        self.error.as_ref()
    }

    /// Decodes from `input`; returns the bytes consumed and what was found.
    ///
    /// # Errors
    /// Any format violation, with its byte offset; then `Poisoned`.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Decoded<'_>)> {
        if self.st == St::Failed {
            return Err(Error::new(ErrorKind::Poisoned));
        }
        match self.step(input) {
            Ok((n, ev)) => Ok((
                n,
                match ev {
                    Ev::NeedMore => Decoded::NeedMore,
                    Ev::Header => Decoded::Header(self.header.expect("header decoded")),
                    Ev::Page(info) => Decoded::Page {
                        info,
                        data: &self.page,
                    },
                    Ev::Done => Decoded::Done(self.summary.expect("summary set")),
                },
            )),
            Err(e) => {
                self.st = St::Failed;
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Declares the end of input.
    ///
    /// # Errors
    /// `Truncated` unless the trailer was read; the earlier error if decoding failed.
    pub fn finish(&self) -> Result<Summary> {
        let expected = match self.st {
            St::Done => return Ok(self.summary.expect("summary set")),
            St::Failed => {
                return Err(self
                    .error
                    .clone()
                    .unwrap_or_else(|| Error::new(ErrorKind::Poisoned)))
            }
            St::Header => "100-byte header",
            St::Pgno => "page number or end marker",
            St::Frame => "LZ4 frame",
            St::Index => "page index entry",
            St::IndexSize => "8-byte page index size",
            St::Trailer => "16-byte trailer",
        };
        Err(Error::new(ErrorKind::Truncated { expected }).at(self.position()))
    }

    /// Stages bytes until it holds `n`; true when it does.
    fn take(&mut self, input: &[u8], used: &mut usize, n: usize) -> bool {
        if self.stage.len() < n {
            let k = (n - self.stage.len()).min(input.len() - *used);
            self.stage.extend_from_slice(&input[*used..*used + k]);
            *used += k;
        }
        self.stage.len() >= n
    }

    /// Drops the staged unit of `len` bytes.
    fn consume_stage(&mut self, len: usize) {
        self.stage.drain(..len);
        self.offset += len as u64;
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Ev)> {
        let mut used = 0usize;
        loop {
            match self.st {
                St::Failed => return Err(Error::new(ErrorKind::Poisoned)),
                St::Done => {
                    let extra = (input.len() - used + self.stage.len()) as u64;
                    if extra > 0 {
                        return Err(Error::new(ErrorKind::TrailingBytes { extra }).at(self.offset));
                    }
                    return Ok((used, Ev::Done));
                }
                St::Header => {
                    if !self.take(input, &mut used, HEADER_SIZE) {
                        return Ok((used, Ev::NeedMore));
                    }
                    let h = decode_old_header(&self.stage[..HEADER_SIZE], V2_FLAG_MASK)?;
                    self.hasher.update(&self.stage[..HEADER_SIZE]);
                    self.consume_stage(HEADER_SIZE);
                    self.rules.start(&h, self.compute_checksum);
                    self.page = vec![0u8; h.page_size.bytes()];
                    self.header = Some(h);
                    self.st = St::Pgno;
                    return Ok((used, Ev::Header));
                }
                St::Pgno => {
                    if !self.take(input, &mut used, OLD_PAGE_HEADER_SIZE) {
                        return Ok((used, Ev::NeedMore));
                    }
                    let at = self.offset;
                    let h = self.header.expect("header decoded");
                    let b: [u8; 4] = self.stage[..4].try_into().unwrap();
                    let pgno = u32::from_be_bytes(b);
                    self.hasher.update(&b);
                    if pgno == 0 {
                        self.rules.check_end(&h, at)?;
                        self.consume_stage(4);
                        self.st = St::Index;
                        continue;
                    }
                    self.rules.check_pgno(&h, pgno, at)?;
                    self.consume_stage(4);
                    self.pgno = pgno;
                    self.cur_offset = at;
                    self.st = St::Frame;
                }
                St::Frame => {
                    // Stage only as many bytes as the LZ4 frame is known to
                    // need, so nothing beyond it is ever taken.
                    let ps = self.header.expect("header decoded").page_size;
                    let at = self.offset;
                    let pgno = self.pgno;
                    let fix = |e: Error| e.offset_by(at).page(pgno);
                    let len = loop {
                        let scan = if self.stage.is_empty() {
                            scan_legacy(&input[used..], ps).map_err(fix)?
                        } else {
                            scan_legacy(&self.stage, ps).map_err(fix)?
                        };
                        match scan {
                            Scan::Complete(n) => break n,
                            Scan::NeedMore(need) => {
                                if used == input.len() {
                                    return Ok((used, Ev::NeedMore));
                                }
                                if need <= self.stage.len() {
                                    return Err(fix(Error::new(ErrorKind::Lz4Corrupt(
                                        "LZ4 frame scan made no progress".into(),
                                    ))));
                                }
                                self.take(input, &mut used, need);
                            }
                        }
                    };
                    let r = if self.stage.is_empty() {
                        let r = decode_legacy(&input[used..used + len], &mut self.page);
                        used += len;
                        self.offset += len as u64;
                        r
                    } else {
                        let r = decode_legacy(&self.stage[..len], &mut self.page);
                        self.consume_stage(len);
                        r
                    };
                    r.map_err(fix)?;
                    self.hasher.update(&self.page);
                    let size = (OLD_PAGE_HEADER_SIZE + len) as u64;
                    self.rules.page(pgno, &self.page, self.cur_offset, size);
                    self.st = St::Pgno;
                    return Ok((
                        used,
                        Ev::Page(PageInfo {
                            pgno,
                            flags: 0,
                            offset: self.cur_offset,
                            frame_len: size,
                        }),
                    ));
                }
                St::Index => {
                    const CAP: usize = 30;
                    let at = self.offset;
                    let (len, entry) = loop {
                        let (buf, more_possible) = if self.stage.is_empty() {
                            let avail = &input[used..];
                            (&avail[..avail.len().min(CAP)], avail.len() < CAP)
                        } else {
                            (&self.stage[..], self.stage.len() < CAP)
                        };
                        match parse_entry(buf, more_possible).map_err(|e| e.offset_by(at))? {
                            Some(r) => break r,
                            None => {
                                if used == input.len() {
                                    // All of it belongs to this entry.
                                    let n = self.stage.len() + (input.len() - used);
                                    self.take(input, &mut used, n);
                                    return Ok((used, Ev::NeedMore));
                                }
                                let n = self.stage.len() + 1;
                                self.take(input, &mut used, n);
                            }
                        }
                    };
                    let bytes: Vec<u8> = if self.stage.is_empty() {
                        let b = input[used..used + len].to_vec();
                        used += len;
                        self.offset += len as u64;
                        b
                    } else {
                        let b = self.stage[..len].to_vec();
                        self.consume_stage(len);
                        b
                    };
                    self.index_entry(&bytes, entry, at)?;
                }
                St::IndexSize => {
                    if !self.take(input, &mut used, INDEX_SIZE_FIELD) {
                        return Ok((used, Ev::NeedMore));
                    }
                    let at = self.offset;
                    let stored = u64::from_be_bytes(self.stage[..8].try_into().unwrap());
                    if stored != self.index_bytes {
                        return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                            "size field says {stored}, the index is {} bytes",
                            self.index_bytes
                        )))
                        .at(at));
                    }
                    let b: [u8; 8] = self.stage[..8].try_into().unwrap();
                    self.hasher.update(&b);
                    self.consume_stage(8);
                    self.st = St::Trailer;
                }
                St::Trailer => {
                    if !self.take(input, &mut used, TRAILER_SIZE) {
                        return Ok((used, Ev::NeedMore));
                    }
                    let at = self.offset;
                    let h = self.header.expect("header decoded");
                    let b: [u8; TRAILER_SIZE] = self.stage[..TRAILER_SIZE].try_into().unwrap();
                    let s = self.rules.trailer(
                        &h,
                        &mut self.hasher,
                        &b,
                        at,
                        self.index_bytes,
                        FormatVersion::V2,
                    )?;
                    self.consume_stage(TRAILER_SIZE);
                    self.summary = Some(s);
                    self.st = St::Done;
                }
            }
        }
    }

    fn index_entry(&mut self, b: &[u8], entry: Option<IndexEntry>, at: u64) -> Result<()> {
        self.hasher.update(b);
        self.index_bytes += b.len() as u64;
        let frames = &self.rules.frames;
        match entry {
            None => {
                if self.index_pos != frames.len() {
                    return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                        "index lists {} pages, the file has {} frames",
                        self.index_pos,
                        frames.len()
                    )))
                    .at(at));
                }
                self.st = St::IndexSize;
            }
            Some(e) => {
                let Some(f) = frames.get(self.index_pos) else {
                    return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                        "index lists more entries than the {} frames (extra page {})",
                        frames.len(),
                        e.pgno
                    )))
                    .at(at)
                    .page(e.pgno));
                };
                if *f != e {
                    return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                        "entry {} is page {} at offset {} size {}, but the frame is page {} at offset {} size {}",
                        self.index_pos, e.pgno, e.offset, e.size, f.pgno, f.offset, f.size
                    )))
                    .at(at)
                    .page(f.pgno));
                }
                self.index_pos += 1;
            }
        }
        Ok(())
    }
}
