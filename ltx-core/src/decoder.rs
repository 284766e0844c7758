//! The streaming, sans-I/O decoder.

use crate::checksum::{page_checksum, Crc64};
use crate::encoder::next_snapshot_pgno;
use crate::error::{Error, ErrorKind, Result};
use crate::frame::{
    decode_legacy, decompress_block, max_frame_size, scan_legacy, PageHeader, Scan,
    PAGE_HEADER_SIZE, SIZE_PREFIX,
};
use crate::header::{Header, Trailer, HEADER_SIZE, TRAILER_SIZE};
use crate::index::{get_uvarint, IndexEntry, INDEX_SIZE_FIELD};
use crate::types::{lz4_bound, Checksum, FormatVersion, Pgno, CHECKSUM_FLAG};

/// Where a page came from in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// Page number.
    pub pgno: Pgno,
    /// Page header flags as stored.
    pub flags: u16,
    /// Absolute offset of the frame's page header.
    pub offset: u64,
    /// Frame length in bytes.
    pub frame_len: u64,
}

/// What the decoder found at the end of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The header.
    pub header: Header,
    /// The trailer (file checksum verified).
    pub trailer: Trailer,
    /// Number of page frames.
    pub page_count: u64,
    /// Total file length.
    pub file_size: u64,
    /// The page index size field (bytes of varints incl. terminator).
    pub index_size: u64,
    /// Rolling checksum of the pages, when computed (snapshots that track checksums).
    pub computed_post_apply: Option<Checksum>,
    /// The layout the file was decoded with (v3 for [`Decoder`] and [`crate::LtxFile`]).
    pub format_version: FormatVersion,
}

/// One step of decoding.
#[derive(Debug)]
pub enum Decoded<'a> {
    /// All input was consumed; feed more.
    NeedMore,
    /// The header was read and validated.
    Header(Header),
    /// A page was decoded; `data` is exactly one page.
    Page {
        /// Where it was.
        info: PageInfo,
        /// The decompressed page.
        data: &'a [u8],
    },
    /// The trailer was read; the file is verified. Any further byte is an error.
    Done(Summary),
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
    Failed,
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
            State::Done | State::Failed => "nothing",
        }
    }
}

enum Ev {
    NeedMore,
    Header,
    Page(PageInfo),
    Done,
}

#[derive(Clone, Copy)]
enum Src {
    Input(usize),
    Stage,
}

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
#[derive(Debug)]
pub struct Decoder {
    state: State,
    stage: Vec<u8>,
    offset: u64,
    header: Option<Header>,
    hasher: Crc64,
    page: Vec<u8>,
    cur: PageHeader,
    cur_offset: u64,
    frames: Vec<IndexEntry>,
    last_pgno: Pgno,
    db_sum: Option<u64>,
    index_pos: usize,
    index_bytes: u64,
    summary: Option<Summary>,
    error: Option<Error>,
    compute_checksum: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder at the start of a file.
    pub fn new() -> Decoder {
        Decoder {
            state: State::Header,
            stage: Vec::new(),
            offset: 0,
            header: None,
            hasher: Crc64::new(),
            page: Vec::new(),
            cur: PageHeader::default(),
            cur_offset: 0,
            frames: Vec::new(),
            last_pgno: 0,
            db_sum: None,
            index_pos: 0,
            index_bytes: 0,
            summary: None,
            error: None,
            compute_checksum: false,
        }
    }

    /// Also compute the rolling checksum of the pages for incremental files
    /// (it is always computed for snapshots that track checksums).
    pub fn with_page_checksums(mut self) -> Decoder {
        self.compute_checksum = true;
        self
    }

    /// The header, once decoded.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Bytes consumed so far (the absolute offset of the next byte expected).
    pub fn position(&self) -> u64 {
        self.offset + self.stage.len() as u64
    }

    /// The frames decoded so far, which equal the page index once `Done`.
    pub fn frames(&self) -> &[IndexEntry] {
        &self.frames
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
    /// Any format violation, with its byte offset and page; then `Poisoned`.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Decoded<'_>)> {
        if self.state == State::Failed {
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
                self.state = State::Failed;
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Declares the end of input.
    ///
    /// # Errors
    /// [`ErrorKind::Truncated`] (with what was expected) unless the trailer was
    /// read; the earlier error if decoding failed.
    pub fn finish(&self) -> Result<Summary> {
        match self.state {
            State::Done => Ok(self.summary.expect("summary set")),
            State::Failed => Err(self
                .error
                .clone()
                .unwrap_or_else(|| Error::new(ErrorKind::Poisoned))),
            s => Err(Error::new(ErrorKind::Truncated {
                expected: s.expecting(),
            })
            .at(self.position())),
        }
    }

    /// Makes `n` bytes of the current unit available (stage first, then input).
    fn take(&mut self, input: &[u8], used: &mut usize, n: usize) -> Option<Src> {
        if self.stage.is_empty() && input.len() - *used >= n {
            let s = *used;
            *used += n;
            return Some(Src::Input(s));
        }
        if self.stage.len() < n {
            let k = (n - self.stage.len()).min(input.len() - *used);
            self.stage.extend_from_slice(&input[*used..*used + k]);
            *used += k;
            if self.stage.len() < n {
                return None;
            }
        }
        Some(Src::Stage)
    }

    /// Pulls up to `cap` bytes into the stage for scanning units.
    fn fill_stage(&mut self, input: &[u8], used: &mut usize, cap: usize) {
        if self.stage.len() < cap {
            let k = (cap - self.stage.len()).min(input.len() - *used);
            self.stage.extend_from_slice(&input[*used..*used + k]);
            *used += k;
        }
    }

    fn step(&mut self, input: &[u8]) -> Result<(usize, Ev)> {
        let mut used = 0usize;
        loop {
            match self.state {
                State::Failed => return Err(Error::new(ErrorKind::Poisoned)),
                State::Done => {
                    let extra = (input.len() - used + self.stage.len()) as u64;
                    if extra > 0 {
                        return Err(Error::new(ErrorKind::TrailingBytes { extra }).at(self.offset));
                    }
                    return Ok((used, Ev::Done));
                }
                State::Legacy => {
                    // Never take bytes beyond the frame: when the input stops
                    // inside it, everything left belongs to it; otherwise grow
                    // the stage only to what the scanner says it needs.
                    let ps = self.header.expect("header").page_size;
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
                                return Ok((used, Ev::NeedMore));
                            }
                        }
                    } else {
                        loop {
                            match scan_legacy(&self.stage, ps).map_err(fix)? {
                                Scan::Complete(len) => break (Src::Stage, len),
                                Scan::NeedMore(need) => {
                                    if used == input.len() {
                                        return Ok((used, Ev::NeedMore));
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
                                return Ok((used, Ev::NeedMore));
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
                                        return Ok((used, Ev::NeedMore));
                                    }
                                    let n = self.stage.len() + 1;
                                    self.fill_stage(input, &mut used, n);
                                }
                            }
                        }
                    };
                    self.with_unit(input, src, len, |d, unit| d.index_entry(unit, entry))?;
                    continue;
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
                        return Ok((used, Ev::NeedMore));
                    };
                    let ev = self.with_unit(input, src, n, |d, unit| d.unit(s, unit))?;
                    match ev {
                        Ev::NeedMore => continue,
                        Ev::Done => {
                            let extra = (input.len() - used + self.stage.len()) as u64;
                            if extra > 0 {
                                return Err(
                                    Error::new(ErrorKind::TrailingBytes { extra }).at(self.offset)
                                );
                            }
                            return Ok((used, Ev::Done));
                        }
                        ev => return Ok((used, ev)),
                    }
                }
            }
        }
    }

    /// Runs `f` on the unit's bytes, then advances the offset past them.
    fn with_unit(
        &mut self,
        input: &[u8],
        src: Src,
        len: usize,
        f: impl FnOnce(&mut Self, &[u8]) -> Result<Ev>,
    ) -> Result<Ev> {
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
    fn unit(&mut self, s: State, b: &[u8]) -> Result<Ev> {
        let at = self.offset;
        match s {
            State::Header => {
                let h = Header::decode(b).map_err(|e| e.offset_by(at))?;
                self.hasher.update(b);
                self.page = vec![0u8; h.page_size.bytes()];
                if h.is_snapshot() && !h.no_checksum() || self.compute_checksum {
                    self.db_sum = Some(0);
                }
                self.header = Some(h);
                self.state = State::PageHeader;
                Ok(Ev::Header)
            }
            State::PageHeader => {
                let ph = PageHeader::from_bytes(b.try_into().unwrap());
                self.hasher.update(b);
                if ph.is_end() {
                    let h = *self.header_ref();
                    if h.is_snapshot() {
                        let next = next_snapshot_pgno(self.last_pgno, h.lock_pgno());
                        if next <= h.commit {
                            return Err(Error::new(ErrorKind::PageOrder(format!(
                                "snapshot ends after page {} but commit is {}: pages {next}..={} are missing",
                                self.last_pgno, h.commit, h.commit
                            )))
                            .at(at));
                        }
                    }
                    self.state = State::Index;
                    return Ok(Ev::NeedMore);
                }
                ph.validate().map_err(|e| e.at(at))?;
                self.check_pgno(ph.pgno, at)?;
                self.cur = ph;
                self.cur_offset = at;
                self.state = if ph.is_block() {
                    State::BlockSize
                } else {
                    State::Legacy
                };
                Ok(Ev::NeedMore)
            }
            State::BlockSize => {
                let size = u32::from_be_bytes(b.try_into().unwrap()) as u64;
                let max = lz4_bound(self.header_ref().page_size.bytes()) as u64;
                if size > max {
                    return Err(Error::new(ErrorKind::FrameTooLarge { size, max })
                        .at(at)
                        .page(self.cur.pgno));
                }
                self.hasher.update(b);
                self.state = State::BlockData(size as usize);
                Ok(Ev::NeedMore)
            }
            State::BlockData(_) => {
                let mut page = std::mem::take(&mut self.page);
                let r =
                    decompress_block(b, &mut page).map_err(|e| e.offset_by(at).page(self.cur.pgno));
                self.page = page;
                r?;
                let frame_len = at + b.len() as u64 - self.cur_offset;
                Ok(self.page_done(frame_len))
            }
            State::IndexSize => {
                let stored = u64::from_be_bytes(b.try_into().unwrap());
                if stored != self.index_bytes {
                    return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                        "size field says {stored}, the index is {} bytes",
                        self.index_bytes
                    )))
                    .at(at));
                }
                self.hasher.update(b);
                self.state = State::Trailer;
                Ok(Ev::NeedMore)
            }
            State::Trailer => {
                let t = Trailer::from_bytes(b.try_into().unwrap());
                self.hasher.update(&b[..8]);
                let computed = Checksum(self.hasher.value() | CHECKSUM_FLAG);
                if computed != t.file_checksum {
                    return Err(Error::new(ErrorKind::FileChecksumMismatch {
                        stored: t.file_checksum,
                        computed,
                    })
                    .at(at + 8));
                }
                let h = *self.header_ref();
                t.validate(&h, at)?;
                let page_sum = self.db_sum.map(|s| Checksum(s | CHECKSUM_FLAG));
                if h.is_snapshot() && !h.no_checksum() {
                    let c = page_sum.expect("computed for snapshots");
                    if c != t.post_apply_checksum {
                        return Err(Error::new(ErrorKind::PostApplyMismatch {
                            stored: t.post_apply_checksum,
                            computed: c,
                        })
                        .at(at));
                    }
                }
                self.summary = Some(Summary {
                    header: h,
                    trailer: t,
                    page_count: self.frames.len() as u64,
                    file_size: at + TRAILER_SIZE as u64,
                    index_size: self.index_bytes,
                    computed_post_apply: page_sum,
                    format_version: FormatVersion::V3,
                });
                self.state = State::Done;
                Ok(Ev::Done)
            }
            _ => unreachable!(),
        }
    }

    fn check_pgno(&self, pgno: Pgno, at: u64) -> Result<()> {
        check_next_pgno(self.header_ref(), self.last_pgno, pgno, at)
    }

    fn legacy_frame(&mut self, b: &[u8]) -> Result<Ev> {
        let at = self.offset;
        let mut page = std::mem::take(&mut self.page);
        let r = decode_legacy(b, &mut page).map_err(|e| e.offset_by(at).page(self.cur.pgno));
        self.page = page;
        r?;
        let frame_len = at + b.len() as u64 - self.cur_offset;
        Ok(self.page_done(frame_len))
    }

    fn page_done(&mut self, frame_len: u64) -> Ev {
        let pgno = self.cur.pgno;
        self.hasher.update(&self.page);
        if let Some(s) = self.db_sum.as_mut() {
            *s ^= page_checksum(pgno, &self.page).0;
        }
        self.frames.push(IndexEntry {
            pgno,
            offset: self.cur_offset,
            size: frame_len,
        });
        self.last_pgno = pgno;
        self.state = State::PageHeader;
        Ev::Page(PageInfo {
            pgno,
            flags: self.cur.flags,
            offset: self.cur_offset,
            frame_len,
        })
    }

    fn index_entry(&mut self, b: &[u8], entry: Option<IndexEntry>) -> Result<Ev> {
        let at = self.offset;
        self.hasher.update(b);
        self.index_bytes += b.len() as u64;
        match entry {
            None => {
                if self.index_pos != self.frames.len() {
                    return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                        "index lists {} pages, the file has {} frames",
                        self.index_pos,
                        self.frames.len()
                    )))
                    .at(at));
                }
                self.state = State::IndexSize;
            }
            Some(e) => {
                let Some(f) = self.frames.get(self.index_pos) else {
                    return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                        "index lists more entries than the {} frames (extra page {})",
                        self.frames.len(),
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
        Ok(Ev::NeedMore)
    }
}

/// Parses one index entry or the terminator from `b`. `Ok(None)`: need more bytes
/// (only when `more_possible`).
pub(crate) fn parse_entry(
    b: &[u8],
    more_possible: bool,
) -> Result<Option<(usize, Option<IndexEntry>)>> {
    let mut pos = 0;
    let r = (|| -> Result<Option<(usize, Option<IndexEntry>)>> {
        let Some(pgno) = get_uvarint(b, &mut pos)? else {
            return Ok(None);
        };
        if pgno == 0 {
            return Ok(Some((pos, None)));
        }
        let Some(offset) = get_uvarint(b, &mut pos)? else {
            return Ok(None);
        };
        let Some(size) = get_uvarint(b, &mut pos)? else {
            return Ok(None);
        };
        let pgno = Pgno::try_from(pgno).map_err(|_| {
            Error::new(ErrorKind::PageIndexMismatch(format!(
                "page number {pgno} exceeds 32 bits"
            )))
        })?;
        Ok(Some((pos, Some(IndexEntry { pgno, offset, size }))))
    })()?;
    match r {
        None if !more_possible => Err(Error::new(ErrorKind::PageIndexMismatch(
            "unparseable page index entry".into(),
        ))),
        r => Ok(r),
    }
}

/// The page rules every layout's decoder applies to the next frame: not the
/// lock page, `pgno <= commit`, strictly after `last`, and for snapshots
/// exactly the next page.
pub(crate) fn check_next_pgno(h: &Header, last: Pgno, pgno: Pgno, at: u64) -> Result<()> {
    let err = |k| Err(Error::new(k).at(at).page(pgno));
    if pgno == h.lock_pgno() {
        return err(ErrorKind::LockPage(pgno));
    }
    if pgno > h.commit {
        return err(ErrorKind::PageOutOfRange {
            pgno,
            commit: h.commit,
        });
    }
    if pgno <= last {
        let what = if pgno == last {
            "duplicate page"
        } else {
            "out of order"
        };
        return err(ErrorKind::PageOrder(format!(
            "{what}: page {pgno} after page {last}"
        )));
    }
    if h.is_snapshot() {
        let expected = next_snapshot_pgno(last, h.lock_pgno());
        if pgno != expected {
            return err(ErrorKind::PageOrder(format!(
                "snapshot is missing page {expected} (next frame is page {pgno})"
            )));
        }
    }
    Ok(())
}
