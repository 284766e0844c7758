//! The shell every streaming decoder shares, whatever the layout: feeding,
//! events, poisoning, the accessors and `finish`; and the checks every
//! layout makes across a file (page rules, rolling and file checksums, the
//! page index against the frames, the trailer).
//!
//! A [`StreamDecoder`] drives one [`Layout`]: the v3 layout
//! ([`crate::decoder::V3Layout`], as [`crate::Decoder`]) or an older one
//! ([`crate::old`]). The layout reads units of its format and reports what
//! it found; the shell turns that into [`Decoded`] events, keeps the header
//! and summary, refuses bytes after the trailer, and stays failed after the
//! first error.
//!
//! Call sequence, for every layout:
//!
//! 1. [`StreamDecoder::decode`] with the unconsumed rest of the input, until
//!    it returns [`Decoded::NeedMore`] (read more, call again) or
//!    [`Decoded::Done`]; each call says how many bytes it consumed and returns
//!    at most one event.
//! 2. [`StreamDecoder::finish`] at the end of the input: the summary, or why
//!    the file is incomplete.
//!
//! After an error every call returns [`ErrorKind::Poisoned`];
//! [`StreamDecoder::error`] and [`StreamDecoder::finish`] give the first
//! error.

use crate::checksum::{page_checksum, Crc64};
use crate::encoder::next_snapshot_pgno;
use crate::error::{Error, ErrorKind, Result};
use crate::header::{Header, Trailer, TRAILER_SIZE};
use crate::index::IndexEntry;
use crate::types::{Checksum, FormatVersion, Pgno, CHECKSUM_FLAG};

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
    /// The layout the file was decoded with (v3 for [`crate::Decoder`] and [`crate::LtxFile`]).
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

/// A layout a [`StreamDecoder`] decodes. Sealed: the layouts are
/// [`crate::decoder::V3Layout`], [`crate::old::v1::V1Layout`],
/// [`crate::old::v2::V2Layout`] and [`crate::old::AnyLayout`].
pub trait Layout: sealed::Step {}

impl<L: sealed::Step> Layout for L {}

pub(crate) mod sealed {
    use super::{PageInfo, Summary};
    use crate::error::Result;
    use crate::header::Header;
    use crate::index::IndexEntry;
    use crate::types::FormatVersion;

    /// What a layout found in one call.
    pub enum Event {
        /// All input was consumed.
        NeedMore,
        /// The header.
        Header(Header),
        /// A page, whose bytes are [`Step::page`] until the next call.
        Page(PageInfo),
        /// The trailer: the file is verified.
        Done(Summary),
    }

    /// The layout side of a [`super::StreamDecoder`]: the shell calls `step`
    /// until it reports `Done` or fails, and never again after that.
    pub trait Step: std::fmt::Debug {
        /// Reads from `input`; returns the bytes consumed and at most one event.
        fn step(&mut self, input: &[u8]) -> Result<(usize, Event)>;
        /// The page of the last `Event::Page`.
        fn page(&self) -> &[u8];
        /// Bytes consumed so far.
        fn position(&self) -> u64;
        /// The frames (pages) decoded so far.
        fn frames(&self) -> &[IndexEntry];
        /// What the layout waits for, for `Truncated`.
        fn expecting(&self) -> &'static str;
        /// Computes the rolling checksum of the pages of incremental files too.
        fn compute_page_checksums(&mut self);
        /// The layout's format version.
        fn version(&self) -> FormatVersion;
    }
}

use sealed::Event;

/// A streaming, sans-I/O decoder and verifier for one [`Layout`]: feed it
/// byte slices of any size (see the [module docs](self) for the call
/// sequence). [`crate::Decoder`] (v3), [`crate::V1Decoder`],
/// [`crate::V2Decoder`] and [`crate::AnyDecoder`] are this type.
#[derive(Debug)]
pub struct StreamDecoder<L> {
    layout: L,
    header: Option<Header>,
    summary: Option<Summary>,
    /// The first error: once set, the decoder is poisoned.
    error: Option<Error>,
}

impl<L: Layout + Default> Default for StreamDecoder<L> {
    fn default() -> Self {
        StreamDecoder::with_layout(L::default())
    }
}

impl<L: Layout> StreamDecoder<L> {
    pub(crate) fn with_layout(layout: L) -> Self {
        StreamDecoder {
            layout,
            header: None,
            summary: None,
            error: None,
        }
    }

    pub(crate) fn layout(&self) -> &L {
        &self.layout
    }

    /// Also compute the rolling checksum of the pages for incremental files
    /// (it is always computed for snapshots that track checksums).
    pub fn with_page_checksums(mut self) -> Self {
        self.layout.compute_page_checksums();
        self
    }

    /// The layout this decoder reads.
    pub fn version(&self) -> FormatVersion {
        self.layout.version()
    }

    /// The header, once decoded.
    pub fn header(&self) -> Option<&Header> {
        self.header.as_ref()
    }

    /// Bytes consumed so far (the absolute offset of the next byte expected).
    pub fn position(&self) -> u64 {
        self.layout.position()
    }

    /// The frames decoded so far, which equal the page index once `Done`
    /// (v1 files have no index: their pages, see [`crate::old::v1`]).
    pub fn frames(&self) -> &[IndexEntry] {
        self.layout.frames()
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
    /// Any format violation, with its byte offset and page; bytes after the
    /// trailer ([`ErrorKind::TrailingBytes`]); then [`ErrorKind::Poisoned`].
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Decoded<'_>)> {
        if self.error.is_some() {
            return Err(Error::new(ErrorKind::Poisoned));
        }
        match self.advance(input) {
            Ok((n, ev)) => Ok((
                n,
                match ev {
                    Event::NeedMore => Decoded::NeedMore,
                    Event::Header(h) => Decoded::Header(h),
                    Event::Page(info) => Decoded::Page {
                        info,
                        data: self.layout.page(),
                    },
                    Event::Done(s) => Decoded::Done(s),
                },
            )),
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn advance(&mut self, input: &[u8]) -> Result<(usize, Event)> {
        let (used, ev) = match self.summary {
            Some(s) => (0, Event::Done(s)),
            None => self.layout.step(input)?,
        };
        match ev {
            Event::Header(h) => self.header = Some(h),
            Event::Done(s) => {
                self.summary = Some(s);
                let extra = (input.len() - used) as u64;
                if extra > 0 {
                    return Err(Error::new(ErrorKind::TrailingBytes { extra }).at(s.file_size));
                }
            }
            Event::NeedMore | Event::Page(_) => {}
        }
        Ok((used, ev))
    }

    /// Declares the end of input.
    ///
    /// # Errors
    /// [`ErrorKind::Truncated`] (with what was expected) unless the trailer was
    /// read; the earlier error if decoding failed.
    pub fn finish(&self) -> Result<Summary> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.summary {
            Some(s) => Ok(s),
            None => Err(Error::new(ErrorKind::Truncated {
                expected: self.layout.expecting(),
            })
            .at(self.layout.position())),
        }
    }
}

/// What every layout verifies across a file: the page rules (ascending,
/// unique, no lock page, at most `commit`, snapshots complete), the rolling
/// database checksum, the file checksum, the page index against the frames,
/// and the trailer.
#[derive(Debug, Default)]
pub(crate) struct Verifier {
    hasher: Crc64,
    last_pgno: Pgno,
    db_sum: Option<u64>,
    frames: Vec<IndexEntry>,
    index_pos: usize,
    index_bytes: u64,
    compute_checksum: bool,
}

impl Verifier {
    /// Computes the rolling checksum of incremental files too.
    pub(crate) fn compute_page_checksums(&mut self) {
        self.compute_checksum = true;
    }

    /// Starts a file: its decoded header and the header's bytes.
    pub(crate) fn start(&mut self, h: &Header, bytes: &[u8]) {
        self.hasher.update(bytes);
        if h.is_snapshot() && !h.no_checksum() || self.compute_checksum {
            self.db_sum = Some(0);
        }
    }

    /// Adds bytes the file checksum covers (page headers, size prefixes).
    pub(crate) fn hash(&mut self, b: &[u8]) {
        self.hasher.update(b);
    }

    /// The frames seen so far.
    pub(crate) fn frames(&self) -> &[IndexEntry] {
        &self.frames
    }

    /// Checks the next frame's page number (at file offset `at`).
    pub(crate) fn check_pgno(&self, h: &Header, pgno: Pgno, at: u64) -> Result<()> {
        check_next_pgno(h, self.last_pgno, pgno, at)
    }

    /// Checks that a snapshot has every page when its pages end (at `at`).
    pub(crate) fn check_end(&self, h: &Header, at: u64) -> Result<()> {
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
        Ok(())
    }

    /// A decoded page (`data`) of the frame at `offset`, `size` bytes long.
    pub(crate) fn page(&mut self, pgno: Pgno, data: &[u8], offset: u64, size: u64) {
        self.hasher.update(data);
        if let Some(s) = self.db_sum.as_mut() {
            *s ^= page_checksum(pgno, data).0;
        }
        self.frames.push(IndexEntry { pgno, offset, size });
        self.last_pgno = pgno;
    }

    /// One page index entry (`b`, its bytes at `at`; `None` for the
    /// terminator), checked against the frames in order. Returns whether it
    /// was the terminator.
    pub(crate) fn index_entry(
        &mut self,
        b: &[u8],
        entry: Option<IndexEntry>,
        at: u64,
    ) -> Result<bool> {
        self.hasher.update(b);
        self.index_bytes += b.len() as u64;
        let frames = &self.frames;
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
                Ok(true)
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
                Ok(false)
            }
        }
    }

    /// The page index size field (`b` at `at`).
    pub(crate) fn index_size(&mut self, b: &[u8; 8], at: u64) -> Result<()> {
        let stored = u64::from_be_bytes(*b);
        if stored != self.index_bytes {
            return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                "size field says {stored}, the index is {} bytes",
                self.index_bytes
            )))
            .at(at));
        }
        self.hasher.update(b);
        Ok(())
    }

    /// Checks the trailer (`b`, 16 bytes at `at`) after everything before the
    /// post-apply checksum was hashed; returns the summary.
    pub(crate) fn trailer(
        &mut self,
        h: &Header,
        b: &[u8; TRAILER_SIZE],
        at: u64,
        version: FormatVersion,
    ) -> Result<Summary> {
        let t = Trailer::from_bytes(b);
        self.hasher.update(&b[..8]);
        let computed = Checksum(self.hasher.value() | CHECKSUM_FLAG);
        if computed != t.file_checksum {
            return Err(Error::new(ErrorKind::FileChecksumMismatch {
                stored: t.file_checksum,
                computed,
            })
            .at(at + 8));
        }
        t.validate(h, at)?;
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
        Ok(Summary {
            header: *h,
            trailer: t,
            page_count: self.frames.len() as u64,
            file_size: at + TRAILER_SIZE as u64,
            index_size: self.index_bytes,
            computed_post_apply: page_sum,
            format_version: version,
        })
    }
}

/// The page rules every layout's decoder applies to the next frame: not the
/// lock page, `pgno <= commit`, strictly after `last`, and for snapshots
/// exactly the next page.
fn check_next_pgno(h: &Header, last: Pgno, pgno: Pgno, at: u64) -> Result<()> {
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

/// Where a unit of `n` bytes a streaming reader needs now lies.
#[derive(Clone, Copy)]
pub(crate) enum Src {
    /// Whole in the caller's input, from this offset.
    Input(usize),
    /// In the reader's stage (it straddled two inputs).
    Stage,
}

/// Makes `n` bytes available to a streaming reader: straight from `input`
/// at `*used` when nothing is staged and they are all there, else gathered
/// in `stage` (at most `n` bytes; `None` until they are). Advances `*used`
/// past what it took. Shared by the LTX decoders and the WAL reader.
pub(crate) fn stage_take(
    stage: &mut Vec<u8>,
    input: &[u8],
    used: &mut usize,
    n: usize,
) -> Option<Src> {
    if stage.is_empty() && input.len() - *used >= n {
        let s = *used;
        *used += n;
        return Some(Src::Input(s));
    }
    if stage.len() < n {
        let k = (n - stage.len()).min(input.len() - *used);
        stage.extend_from_slice(&input[*used..*used + k]);
        *used += k;
        if stage.len() < n {
            return None;
        }
    }
    Some(Src::Stage)
}
