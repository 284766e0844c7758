//! The streaming, sans-I/O decoder for format version 3: [`Decoder`], the
//! [`StreamDecoder`] shell around the [`V3Layout`].

use crate::error::{Error, ErrorKind, Result};
use crate::frame::{
    decode_legacy, decompress_block, max_frame_size, scan_legacy, PageHeader, Scan,
    PAGE_HEADER_SIZE, SIZE_PREFIX,
};
use crate::header::{Header, HEADER_SIZE, TRAILER_SIZE};
use crate::index::{parse_entry, IndexEntry, INDEX_SIZE_FIELD};
use crate::stream::sealed::{Event, Step};
use crate::stream::{stage_take, Src, StreamDecoder, Verifier};
use crate::types::{lz4_bound, FormatVersion};

pub use crate::stream::{Decoded, PageInfo, Summary};

/// Streaming decoder and verifier: feed it byte slices of any size.
///
/// Call [`Decoder::decode`] with the unconsumed rest of your input until it
/// returns [`Decoded::NeedMore`] (read more and call again) or
/// [`Decoded::Done`]. Each call reports how many bytes it consumed and
/// returns at most one event. A unit split across calls (header, frame,
/// index entry, trailer) is staged internally, but the decoder never takes a
/// byte beyond the unit it is reading, so once all of your input is consumed
/// nothing is pending: read more, or stop. At end of input call
/// [`Decoder::finish`], which fails unless the whole file was read. Memory is bounded by the page size: a compressed size above
/// the LZ4 bound of one page is rejected before anything is buffered.
///
/// Everything is checked: header rules, page header flags, strictly
/// ascending pages, `pgno <= commit`, no lock page, snapshot completeness,
/// exact decompressed size, the page index against the frames and its size
/// field, the trailer checksum formats, the file checksum, the snapshot
/// post-apply checksum, and nothing after the trailer. After an error every
/// call returns [`ErrorKind::Poisoned`] (the first error is kept in
/// [`Decoder::error`]).
///
/// ```
/// use ltx_core::{Decoder, Decoded};
/// # let bytes = ltx_core::doc_example_file();
/// let mut dec = Decoder::new();
/// let mut input: &[u8] = &bytes;
/// let mut pages = 0;
/// loop {
///     let (n, ev) = dec.decode(input).unwrap();
///     input = &input[n..];
///     match ev {
///         Decoded::NeedMore => break, // a real caller reads more here
///         Decoded::Header(h) => assert!(h.is_snapshot()),
///         Decoded::Page { .. } => pages += 1,
///         Decoded::Done(summary) => { assert_eq!(summary.page_count, pages); break }
///     }
/// }
/// dec.finish().unwrap();
/// ```
pub type Decoder = StreamDecoder<V3Layout>;

impl Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> Decoder {
        Decoder::default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Header,
    PageHeader,
    BlockSize,
    BlockData(usize),
    Legacy,
    Index,
    IndexSize,
    Trailer,
    Done,
}

impl State {
    fn expecting(self) -> &'static str {
        match self {
            State::Header => "100-byte header",
            State::PageHeader => "page header or end marker",
            State::BlockSize => "4-byte compressed size",
            State::BlockData(_) => "LZ4 block",
            State::Legacy => "LZ4 frame",
            State::Index => "page index entry",
            State::IndexSize => "8-byte page index size",
            State::Trailer => "16-byte trailer",
            State::Done => "nothing",
        }
    }
}

/// The v3 layout (header, page frames, end marker, page index, trailer) as
/// read by [`Decoder`].
#[derive(Debug)]
pub struct V3Layout {
    state: State,
    stage: Vec<u8>,
    offset: u64,
    header: Option<Header>,
    page: Vec<u8>,
    cur: PageHeader,
    cur_offset: u64,
    verifier: Verifier,
}

impl Default for V3Layout {
    fn default() -> Self {
        V3Layout {
            state: State::Header,
            stage: Vec::new(),
            offset: 0,
            header: None,
            page: Vec::new(),
            cur: PageHeader::default(),
            cur_offset: 0,
            verifier: Verifier::default(),
        }
    }
}

impl Step for V3Layout {
    fn step(&mut self, input: &[u8]) -> Result<(usize, Event)> {
        let mut used = 0usize;
        loop {
            match self.state {
                State::Done => return Err(Error::new(ErrorKind::Poisoned)),
                State::Legacy => {
                    // Never take bytes beyond the frame: when the input stops
                    // inside it, everything left belongs to it; otherwise grow
                    // the stage only to what the scanner says it needs.
                    let ps = self.header_ref().page_size;
                    let cap = max_frame_size(ps);
                    let at = self.offset;
                    let pgno = self.cur.pgno;
                    let fix = |e: Error| e.offset_by(at).page(pgno);
                    let (src, len) = if self.stage.is_empty() {
                        let avail = &input[used..];
                        match scan_legacy(&avail[..avail.len().min(cap)], ps).map_err(fix)? {
                            Scan::Complete(len) => {
                                let s = used;
                                used += len;
                                (Src::Input(s), len)
                            }
                            Scan::NeedMore(_) => {
                                self.fill_stage(input, &mut used, cap);
                                return Ok((used, Event::NeedMore));
                            }
                        }
                    } else {
                        loop {
                            match scan_legacy(&self.stage, ps).map_err(fix)? {
                                Scan::Complete(len) => break (Src::Stage, len),
                                Scan::NeedMore(need) => {
                                    if used == input.len() {
                                        return Ok((used, Event::NeedMore));
                                    }
                                    if self.stage.len() >= cap {
                                        let e = ErrorKind::FrameTooLarge {
                                            size: need as u64,
                                            max: cap as u64,
                                        };
                                        return Err(fix(Error::new(e)));
                                    }
                                    self.fill_stage(input, &mut used, need.min(cap));
                                }
                            }
                        }
                    };
                    let ev = self.with_unit(input, src, len, |d, unit| d.legacy_frame(unit))?;
                    return Ok((used, ev));
                }
                State::Index => {
                    // One entry: up to three 10-byte varints. As for legacy
                    // frames, never stage bytes beyond the entry.
                    const CAP: usize = 30;
                    let at = self.offset;
                    let (src, len, entry) = if self.stage.is_empty() {
                        let avail = &input[used..];
                        match parse_entry(&avail[..avail.len().min(CAP)], avail.len() < CAP)
                            .map_err(|e| e.offset_by(at))?
                        {
                            Some((len, entry)) => {
                                let s = used;
                                used += len;
                                (Src::Input(s), len, entry)
                            }
                            None => {
                                self.fill_stage(input, &mut used, CAP);
                                return Ok((used, Event::NeedMore));
                            }
                        }
                    } else {
                        loop {
                            let more_possible = self.stage.len() < CAP;
                            match parse_entry(&self.stage, more_possible)
                                .map_err(|e| e.offset_by(at))?
                            {
                                Some((len, entry)) => break (Src::Stage, len, entry),
                                None => {
                                    if used == input.len() {
                                        return Ok((used, Event::NeedMore));
                                    }
                                    let n = self.stage.len() + 1;
                                    self.fill_stage(input, &mut used, n);
                                }
                            }
                        }
                    };
                    self.with_unit(input, src, len, |d, unit| {
                        if d.verifier.index_entry(unit, entry, d.offset)? {
                            d.state = State::IndexSize;
                        }
                        Ok(Event::NeedMore)
                    })?;
                }
                s => {
                    let n = match s {
                        State::Header => HEADER_SIZE,
                        State::PageHeader => PAGE_HEADER_SIZE,
                        State::BlockSize => SIZE_PREFIX,
                        State::BlockData(n) => n,
                        State::IndexSize => INDEX_SIZE_FIELD,
                        State::Trailer => TRAILER_SIZE,
                        _ => unreachable!(),
                    };
                    let Some(src) = self.take(input, &mut used, n) else {
                        return Ok((used, Event::NeedMore));
                    };
                    match self.with_unit(input, src, n, |d, unit| d.unit(s, unit))? {
                        Event::NeedMore => continue,
                        ev => return Ok((used, ev)),
                    }
                }
            }
        }
    }

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
        self.state.expecting()
    }

    fn compute_page_checksums(&mut self) {
        self.verifier.compute_page_checksums();
    }

    fn version(&self) -> FormatVersion {
        FormatVersion::V3
    }
}

impl V3Layout {
    /// Makes `n` bytes of the current unit available (stage first, then input).
    fn take(&mut self, input: &[u8], used: &mut usize, n: usize) -> Option<Src> {
        stage_take(&mut self.stage, input, used, n)
    }

    /// Pulls up to `cap` bytes into the stage for scanning units.
    fn fill_stage(&mut self, input: &[u8], used: &mut usize, cap: usize) {
        if self.stage.len() < cap {
            let k = (cap - self.stage.len()).min(input.len() - *used);
            self.stage.extend_from_slice(&input[*used..*used + k]);
            *used += k;
        }
    }

    /// Runs `f` on the unit's bytes, then advances the offset past them.
    fn with_unit(
        &mut self,
        input: &[u8],
        src: Src,
        len: usize,
        f: impl FnOnce(&mut Self, &[u8]) -> Result<Event>,
    ) -> Result<Event> {
        let r = match src {
            Src::Input(s) => f(self, &input[s..s + len]),
            Src::Stage => {
                let stage = std::mem::take(&mut self.stage);
                let r = f(self, &stage[..len]);
                self.stage = stage;
                self.stage.drain(..len);
                r
            }
        };
        self.offset += len as u64;
        r
    }

    fn header_ref(&self) -> &Header {
        self.header.as_ref().expect("header decoded")
    }

    /// Handles a fixed-size unit. `self.offset` is the unit's start.
    fn unit(&mut self, s: State, b: &[u8]) -> Result<Event> {
        let at = self.offset;
        match s {
            State::Header => {
                let h = Header::decode(b).map_err(|e| e.offset_by(at))?;
                self.verifier.start(&h, b);
                self.page = vec![0u8; h.page_size.bytes()];
                self.header = Some(h);
                self.state = State::PageHeader;
                Ok(Event::Header(h))
            }
            State::PageHeader => {
                let ph = PageHeader::from_bytes(b.try_into().unwrap());
                self.verifier.hash(b);
                let h = *self.header_ref();
                if ph.is_end() {
                    self.verifier.check_end(&h, at)?;
                    self.state = State::Index;
                    return Ok(Event::NeedMore);
                }
                ph.validate().map_err(|e| e.at(at))?;
                self.verifier.check_pgno(&h, ph.pgno, at)?;
                self.cur = ph;
                self.cur_offset = at;
                self.state = if ph.is_block() {
                    State::BlockSize
                } else {
                    State::Legacy
                };
                Ok(Event::NeedMore)
            }
            State::BlockSize => {
                let size = u32::from_be_bytes(b.try_into().unwrap()) as u64;
                let max = lz4_bound(self.header_ref().page_size.bytes()) as u64;
                if size > max {
                    return Err(Error::new(ErrorKind::FrameTooLarge { size, max })
                        .at(at)
                        .page(self.cur.pgno));
                }
                self.verifier.hash(b);
                self.state = State::BlockData(size as usize);
                Ok(Event::NeedMore)
            }
            State::BlockData(_) => {
                decompress_block(b, &mut self.page)
                    .map_err(|e| e.offset_by(at).page(self.cur.pgno))?;
                let frame_len = at + b.len() as u64 - self.cur_offset;
                Ok(self.page_done(frame_len))
            }
            State::IndexSize => {
                self.verifier.index_size(b.try_into().unwrap(), at)?;
                self.state = State::Trailer;
                Ok(Event::NeedMore)
            }
            State::Trailer => {
                let h = *self.header_ref();
                let s = self
                    .verifier
                    .trailer(&h, b.try_into().unwrap(), at, FormatVersion::V3)?;
                self.state = State::Done;
                Ok(Event::Done(s))
            }
            _ => unreachable!(),
        }
    }

    fn legacy_frame(&mut self, b: &[u8]) -> Result<Event> {
        let at = self.offset;
        decode_legacy(b, &mut self.page).map_err(|e| e.offset_by(at).page(self.cur.pgno))?;
        let frame_len = at + b.len() as u64 - self.cur_offset;
        Ok(self.page_done(frame_len))
    }

    fn page_done(&mut self, frame_len: u64) -> Event {
        let pgno = self.cur.pgno;
        self.verifier
            .page(pgno, &self.page, self.cur_offset, frame_len);
        self.state = State::PageHeader;
        Event::Page(PageInfo {
            pgno,
            flags: self.cur.flags,
            offset: self.cur_offset,
            frame_len,
        })
    }
}
