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

use super::v1::OLD_PAGE_HEADER_SIZE;
use crate::decoder::PageInfo;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{decode_legacy, scan_legacy, Scan};
use crate::header::Header;
use crate::header::{HEADER_SIZE, TRAILER_SIZE};
use crate::index::{parse_entry, IndexEntry, INDEX_SIZE_FIELD};
use crate::stream::sealed::{Event, Step};
use crate::stream::{StreamDecoder, Verifier};
use crate::types::FormatVersion;

pub use super::header::V2_FLAG_MASK;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    Header,
    Pgno,
    Frame,
    Index,
    IndexSize,
    Trailer,
    Done,
}

/// Streaming decoder for format version 2: the [`StreamDecoder`] shell
/// around the [`V2Layout`], with the contract of every [`StreamDecoder`]
/// (and of [`crate::Decoder`]).
pub type V2Decoder = StreamDecoder<V2Layout>;

impl V2Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> V2Decoder {
        V2Decoder::default()
    }
}

/// The v2 layout (header, one LZ4 frame per page, end marker, page index,
/// trailer) as read by [`V2Decoder`].
#[derive(Debug)]
pub struct V2Layout {
    st: St,
    stage: Vec<u8>,
    offset: u64,
    header: Option<Header>,
    verifier: Verifier,
    page: Vec<u8>,
    pgno: u32,
    cur_offset: u64,
}

impl Default for V2Layout {
    fn default() -> Self {
        V2Layout {
            st: St::Header,
            stage: Vec::new(),
            offset: 0,
            header: None,
            verifier: Verifier::default(),
            page: Vec::new(),
            pgno: 0,
            cur_offset: 0,
        }
    }
}

impl V2Layout {
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
}

impl Step for V2Layout {
    fn page(&self) -> &[u8] {
        &self.page
    }

    fn position(&self) -> u64 {
        self.offset + self.stage.len() as u64
    }

    fn frames(&self) -> &[IndexEntry] {
        self.verifier.frames()
    }

    fn expecting(&self) -> &'static str {
        match self.st {
            St::Header => "100-byte header",
            St::Pgno => "page number or end marker",
            St::Frame => "LZ4 frame",
            St::Index => "page index entry",
            St::IndexSize => "8-byte page index size",
            St::Trailer => "16-byte trailer",
            St::Done => "nothing",
        }
    }

    fn compute_page_checksums(&mut self) {
        self.verifier.compute_page_checksums();
    }

    fn version(&self) -> FormatVersion {
        FormatVersion::V2
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Event)> {
        let mut used = 0usize;
        loop {
            match self.st {
                St::Done => return Err(Error::new(ErrorKind::Poisoned)),
                St::Header => {
                    if !self.take(input, &mut used, HEADER_SIZE) {
                        return Ok((used, Event::NeedMore));
                    }
                    let h = Header::decode_as(&self.stage[..HEADER_SIZE], FormatVersion::V2)?;
                    self.verifier.start(&h, &self.stage[..HEADER_SIZE]);
                    self.consume_stage(HEADER_SIZE);
                    self.page = vec![0u8; h.page_size.bytes()];
                    self.header = Some(h);
                    self.st = St::Pgno;
                    return Ok((used, Event::Header(h)));
                }
                St::Pgno => {
                    if !self.take(input, &mut used, OLD_PAGE_HEADER_SIZE) {
                        return Ok((used, Event::NeedMore));
                    }
                    let at = self.offset;
                    let h = self.header.expect("header decoded");
                    let b: [u8; 4] = self.stage[..4].try_into().unwrap();
                    let pgno = u32::from_be_bytes(b);
                    self.verifier.hash(&b);
                    if pgno == 0 {
                        self.verifier.check_end(&h, at)?;
                        self.consume_stage(4);
                        self.st = St::Index;
                        continue;
                    }
                    self.verifier.check_pgno(&h, pgno, at)?;
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
                                    return Ok((used, Event::NeedMore));
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
                    let size = (OLD_PAGE_HEADER_SIZE + len) as u64;
                    self.verifier.page(pgno, &self.page, self.cur_offset, size);
                    self.st = St::Pgno;
                    return Ok((
                        used,
                        Event::Page(PageInfo {
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
                                    return Ok((used, Event::NeedMore));
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
                    if self.verifier.index_entry(&bytes, entry, at)? {
                        self.st = St::IndexSize;
                    }
                }
                St::IndexSize => {
                    if !self.take(input, &mut used, INDEX_SIZE_FIELD) {
                        return Ok((used, Event::NeedMore));
                    }
                    let at = self.offset;
                    let b: [u8; 8] = self.stage[..8].try_into().unwrap();
                    self.verifier.index_size(&b, at)?;
                    self.consume_stage(8);
                    self.st = St::Trailer;
                }
                St::Trailer => {
                    if !self.take(input, &mut used, TRAILER_SIZE) {
                        return Ok((used, Event::NeedMore));
                    }
                    let at = self.offset;
                    let h = self.header.expect("header decoded");
                    let b: [u8; TRAILER_SIZE] = self.stage[..TRAILER_SIZE].try_into().unwrap();
                    let s = self.verifier.trailer(&h, &b, at, FormatVersion::V2)?;
                    self.consume_stage(TRAILER_SIZE);
                    self.st = St::Done;
                    return Ok((used, Event::Done(s)));
                }
            }
        }
    }
}
