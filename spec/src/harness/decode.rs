//! The decoding paths: the streaming decoder fed in pieces of several sizes,
//! and a second, independent path per version and file size (`LtxFile` over
//! a file in memory, ranged reads over one on disk, format detection for
//! v1/v2). Each gives a [`Decoding`]: the header, trailer, sizes and one
//! [`PageRec`] (with the SHA-256 of the page) per frame; page contents are
//! never kept.

use ltx_core::checksum::{page_checksum, Crc64};
use ltx_core::file::{parse_index, parse_tail, Tail, MIN_FILE_SIZE, TAIL_SIZE};
use ltx_core::frame::PAGE_HEADER_SIZE;
use ltx_core::header::{HEADER_SIZE, TRAILER_SIZE};
use ltx_core::old::{detect_summary, for_each_page, DetectError};
use ltx_core::types::CHECKSUM_FLAG;
use ltx_core::{
    decode_frame, AnyDecoder, Checksum, Decoded, Error, ErrorKind, FormatVersion, Header, LtxFile,
    PageHeader, PageIndex, PageInfo, Trailer,
};
use sha2::{Digest, Sha256};

use super::source::{Ltx, READ_SIZE};

/// Files up to this size are also streamed one byte at a time.
pub(crate) const ONE_BYTE_LIMIT: u64 = 64 * 1024;

/// Files up to this size are also streamed seven bytes at a time; larger
/// ones would take minutes (several million decoder calls per 7 MB).
pub(crate) const SEVEN_BYTE_LIMIT: u64 = 256 << 20;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PageRec {
    pub(crate) pgno: u32,
    pub(crate) flags: u16,
    pub(crate) offset: u64,
    pub(crate) size: u64,
    /// SHA-256 of the decompressed page (zero when not asked for).
    pub(crate) sha: [u8; 32],
}

/// What one decoding path found.
#[derive(Debug, Clone)]
pub(crate) struct Decoding {
    pub(crate) version: FormatVersion,
    pub(crate) header: Header,
    pub(crate) trailer: Trailer,
    pub(crate) index_size: u64,
    pub(crate) file_size: u64,
    pub(crate) pages: Vec<PageRec>,
}

/// Why a decoding path gave no [`Decoding`].
#[derive(Debug)]
pub(crate) enum StreamError {
    /// ltx-core rejected the input.
    Ltx(Error),
    /// ltx-core returned something inconsistent (a bug, not a rejection).
    Contract(String),
    /// Reading the file, or what a page callback reported.
    Io(String),
}

impl From<std::io::Error> for StreamError {
    fn from(e: std::io::Error) -> StreamError {
        StreamError::Io(format!("I/O error: {e}"))
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StreamError::Ltx(e) => {
                write!(f, "{} error: {e}", e.category().unwrap_or("uncategorised"))
            }
            StreamError::Contract(m) => write!(f, "API contract broken: {m}"),
            StreamError::Io(m) => write!(f, "{m}"),
        }
    }
}

/// Receives every page of a streamed file.
pub(crate) type PageSink<'a> = &'a mut dyn FnMut(&PageInfo, &[u8]) -> Result<(), String>;

pub(crate) fn sha(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Chunk sizes to stream a file of `len` bytes in (`usize::MAX` = whole).
/// The first entry is always `usize::MAX`; smaller sizes that would not
/// split the file are left out, and so are 7 bytes above
/// [`SEVEN_BYTE_LIMIT`] and 1 byte above [`ONE_BYTE_LIMIT`].
pub(crate) fn chunk_sizes(len: u64) -> Vec<usize> {
    let mut v = vec![usize::MAX];
    v.extend([4093, 256].into_iter().filter(|&c| (c as u64) < len));
    if 7 < len && len <= SEVEN_BYTE_LIMIT {
        v.push(7);
    }
    if 1 < len && len <= ONE_BYTE_LIMIT {
        v.push(1);
    }
    v
}

pub(crate) fn chunk_label(chunk: usize, src: &Ltx) -> String {
    if chunk as u64 >= src.len() && src.bytes().is_some() {
        "whole input".into()
    } else if chunk == usize::MAX {
        format!("{} MiB reads", READ_SIZE >> 20)
    } else {
        format!("{chunk}-byte chunks")
    }
}

/// The name of the second decoding path of `version` for `src`.
pub(crate) fn file_path_label(version: FormatVersion, src: &Ltx) -> &'static str {
    match (version == FormatVersion::V3, src.bytes().is_some()) {
        (true, true) => "LtxFile",
        (true, false) => "ranged reads",
        (false, true) => "detect",
        (false, false) => "detect (streamed)",
    }
}

/// The streaming decoder over one file, checking its API contract.
struct Stream<'s> {
    dec: AnyDecoder,
    version: FormatVersion,
    header: Option<Header>,
    pages: Vec<PageRec>,
    done: Option<ltx_core::Summary>,
    hash: bool,
    sink: Option<PageSink<'s>>,
}

impl Stream<'_> {
    fn push(&mut self, piece: &[u8]) -> Result<(), StreamError> {
        let contract = |m: String| Err(StreamError::Contract(m));
        let mut input = piece;
        let mut idle = 0u32;
        loop {
            let (n, ev) = self.dec.decode(input).map_err(StreamError::Ltx)?;
            if n > input.len() {
                return contract(format!("decode consumed {n} of {} bytes", input.len()));
            }
            input = &input[n..];
            idle = if n == 0 { idle + 1 } else { 0 };
            if idle > 1_000_000 {
                return contract("decode makes no progress".into());
            }
            match ev {
                Decoded::NeedMore => {
                    if !input.is_empty() {
                        return contract(format!(
                            "NeedMore with {} bytes of input left",
                            input.len()
                        ));
                    }
                    return Ok(());
                }
                Decoded::Header(h) => {
                    if self.header.is_some() || !self.pages.is_empty() {
                        return contract("second Header event".into());
                    }
                    self.header = Some(h);
                }
                Decoded::Page { info, data: page } => {
                    let Some(h) = &self.header else {
                        return contract("Page event before the Header event".into());
                    };
                    if page.len() != h.page_size.bytes() {
                        return contract(format!(
                            "page {} has {} bytes, page size is {}",
                            info.pgno,
                            page.len(),
                            h.page_size
                        ));
                    }
                    self.pages.push(PageRec {
                        pgno: info.pgno,
                        flags: info.flags,
                        offset: info.offset,
                        size: info.frame_len,
                        sha: if self.hash { sha(page) } else { [0; 32] },
                    });
                    if let Some(sink) = self.sink.as_mut() {
                        sink(&info, page).map_err(StreamError::Io)?;
                    }
                }
                Decoded::Done(s) => {
                    self.done = Some(s);
                    if input.is_empty() {
                        return Ok(());
                    }
                }
            }
        }
    }

    fn finish(self) -> Result<Decoding, StreamError> {
        let contract = |m: String| Err(StreamError::Contract(m));
        let summary = self.dec.finish().map_err(StreamError::Ltx)?;
        let Some(h) = self.header else {
            return contract("finished without a Header event".into());
        };
        if self.done != Some(summary) {
            return contract("finish() differs from the Done event (or Done never came)".into());
        }
        if summary.header != h {
            return contract("summary header differs from the Header event".into());
        }
        if summary.format_version != self.version {
            return contract(format!(
                "summary says format {}, decoded as {}",
                summary.format_version, self.version
            ));
        }
        if summary.page_count != self.pages.len() as u64 {
            return contract(format!(
                "summary counts {} pages, {} Page events",
                summary.page_count,
                self.pages.len()
            ));
        }
        let frames = self.dec.frames();
        if frames.len() != self.pages.len()
            || frames
                .iter()
                .zip(&self.pages)
                .any(|(e, p)| (e.pgno, e.offset, e.size) != (p.pgno, p.offset, p.size))
        {
            return contract("Decoder::frames() differs from the Page events".into());
        }
        Ok(Decoding {
            version: self.version,
            header: h,
            trailer: summary.trailer,
            index_size: summary.index_size,
            file_size: summary.file_size,
            pages: self.pages,
        })
    }
}

/// Streams `src` through the decoder of `version` in pieces of `chunk`
/// bytes, hashing every page (`hash`) and handing it to `sink`.
pub(crate) fn stream_decode(
    src: &Ltx,
    chunk: usize,
    version: FormatVersion,
    hash: bool,
    sink: Option<PageSink<'_>>,
) -> Result<Decoding, StreamError> {
    let mut s = Stream {
        dec: AnyDecoder::new(version),
        version,
        header: None,
        pages: Vec::new(),
        done: None,
        hash,
        sink,
    };
    src.pieces(chunk, |p| s.push(p))?;
    s.finish()
}

/// Every decoding path at once: the stream at each of [`chunk_sizes`], and
/// the second path ([`file_decode`]), each on its own thread (they only
/// read `src`). Returns `(chunk, result)` per stream path in
/// [`chunk_sizes`] order, and the second path's result. A panic in a path
/// propagates to the caller.
pub(crate) type Outcomes = (
    Vec<(usize, Result<Decoding, StreamError>)>,
    Result<Decoding, StreamError>,
);

pub(crate) fn decode_every_way(src: &Ltx, version: FormatVersion, hash: bool) -> Outcomes {
    let join = |h: std::thread::ScopedJoinHandle<'_, _>| match h.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    };
    std::thread::scope(|scope| {
        let streams: Vec<_> = chunk_sizes(src.len())
            .into_iter()
            .map(|chunk| {
                let h = scope.spawn(move || stream_decode(src, chunk, version, hash, None));
                (chunk, h)
            })
            .collect();
        let file = file_decode(src, version);
        let streams = streams.into_iter().map(|(c, h)| (c, join(h))).collect();
        (streams, file)
    })
}

/// The second decoding path: for v3 [`LtxFile`] over a file in memory
/// ([`ltx_file_decode`]) or ranged reads over one on disk
/// ([`ranged_decode`]); for v1 and v2, version detection over the whole file
/// (the version must be the case's), then the pages.
pub(crate) fn file_decode(src: &Ltx, version: FormatVersion) -> Result<Decoding, StreamError> {
    match (version, src.bytes()) {
        (FormatVersion::V3, Some(b)) => ltx_file_decode(b),
        (FormatVersion::V3, None) => ranged_decode(src),
        (_, Some(b)) => detect_decode(b, version),
        (_, None) => detect_streamed(src, version),
    }
}

/// [`LtxFile::parse`] + [`LtxFile::verify`], then every frame with
/// `check_frame` and `read_page` (which must agree).
fn ltx_file_decode(bytes: &[u8]) -> Result<Decoding, StreamError> {
    let contract = |m: String| Err(StreamError::Contract(m));
    let f = LtxFile::parse(bytes).map_err(StreamError::Ltx)?;
    let summary = f.verify().map_err(StreamError::Ltx)?;
    let h = *f.header();
    if summary.header != h {
        return contract("verify() header differs from parse()".into());
    }
    if summary.page_count != f.index().len() as u64 {
        return contract(format!(
            "verify() counts {} pages, the index has {}",
            summary.page_count,
            f.index().len()
        ));
    }
    let mut page = vec![0u8; h.page_size.bytes()];
    let mut again = vec![0u8; h.page_size.bytes()];
    let mut pages = Vec::new();
    for (i, e) in f.index().entries().iter().enumerate() {
        let c = f.check_frame(i, &mut page).map_err(StreamError::Ltx)?;
        match f.read_page(e.pgno, &mut again) {
            Ok(true) if again == page => {}
            Ok(true) => return contract(format!("read_page({}) differs from check_frame", e.pgno)),
            Ok(false) => return contract(format!("read_page({}) finds no page", e.pgno)),
            Err(err) => {
                return contract(format!("read_page({}) fails after verify: {err}", e.pgno))
            }
        }
        if c.digest.frame_len != e.size {
            return contract(format!(
                "page {}: frame length {} but index size {}",
                e.pgno, c.digest.frame_len, e.size
            ));
        }
        pages.push(PageRec {
            pgno: e.pgno,
            flags: c.digest.header.flags,
            offset: e.offset,
            size: e.size,
            sha: sha(&page),
        });
    }
    Ok(Decoding {
        version: FormatVersion::V3,
        header: h,
        trailer: summary.trailer,
        index_size: summary.index_size,
        file_size: summary.file_size,
        pages,
    })
}

/// Header, tail and page index of a v3 file, read by ranges.
pub(crate) struct RangedFile {
    pub(crate) header: Header,
    pub(crate) tail: Tail,
    pub(crate) index: PageIndex,
}

/// Reads a v3 file's header, tail and index by ranges, with the checks (and
/// in the order) of [`LtxFile::parse`]: ltx-core's ranged-read recipe
/// (`ltx_core::file`).
pub(crate) fn ranged_parse(src: &Ltx) -> Result<RangedFile, StreamError> {
    let len = src.len();
    let first = src.read_range(0..len.min(HEADER_SIZE as u64))?;
    let header = Header::decode(&first).map_err(StreamError::Ltx)?;
    if len < MIN_FILE_SIZE {
        return Err(StreamError::Ltx(
            Error::new(ErrorKind::Truncated {
                expected: "page block, index and trailer",
            })
            .at(len),
        ));
    }
    let mut tail = [0u8; TAIL_SIZE];
    src.read_at(&mut tail, len - TAIL_SIZE as u64)?;
    let tail = parse_tail(&tail, len).map_err(StreamError::Ltx)?;
    let r = tail.index_range.clone();
    let index_bytes = src.read_range(r.clone())?;
    let index = parse_index(&header, &index_bytes, r.start).map_err(StreamError::Ltx)?;
    Ok(RangedFile {
        header,
        tail,
        index,
    })
}

/// Verifies a v3 file on disk by ranges: [`ranged_parse`], then every frame
/// read on its own and decoded with [`decode_frame`], the file checksum
/// combined from the frames' digests, the end marker, the trailer rules and
/// a snapshot's post-apply checksum: what [`LtxFile::verify`] checks, with
/// memory bounded by one frame and one page (plus the index).
fn ranged_decode(src: &Ltx) -> Result<Decoding, StreamError> {
    let ltx = |e: Error| StreamError::Ltx(e);
    let f = ranged_parse(src)?;
    let h = f.header;
    let len = src.len();
    let mut crc = Crc64::new();
    crc.update(&src.read_range(0..HEADER_SIZE as u64)?);
    let needs_sum = h.is_snapshot() && !h.no_checksum();
    let mut sum = 0u64;
    let mut frame = Vec::new();
    let mut page = vec![0u8; h.page_size.bytes()];
    let mut pages = Vec::with_capacity(f.index.len());
    for e in f.index.entries() {
        // parse_index bounds every frame size by the page size's largest frame.
        frame.resize(e.size as usize, 0);
        src.read_at(&mut frame, e.offset)?;
        let d = decode_frame(&frame, h.page_size, &mut page)
            .map_err(|x| ltx(x.offset_by(e.offset).page(e.pgno)))?;
        if d.header.pgno != e.pgno {
            return Err(ltx(Error::new(ErrorKind::PageIndexMismatch(format!(
                "index says page {}, the frame holds page {}",
                e.pgno, d.header.pgno
            )))
            .at(e.offset)
            .page(e.pgno)));
        }
        if d.frame_len != e.size {
            return Err(StreamError::Contract(format!(
                "page {}: frame length {} but index size {}",
                e.pgno, d.frame_len, e.size
            )));
        }
        crc.combine(d.crc, d.hashed_len);
        if needs_sum {
            sum ^= page_checksum(e.pgno, &page).0;
        }
        pages.push(PageRec {
            pgno: e.pgno,
            flags: d.header.flags,
            offset: e.offset,
            size: e.size,
            sha: sha(&page),
        });
    }
    let idx_start = f.tail.index_range.start;
    let end_at = idx_start - PAGE_HEADER_SIZE as u64;
    let mut end = [0u8; PAGE_HEADER_SIZE];
    src.read_at(&mut end, end_at)?;
    if !PageHeader::from_bytes(&end).is_end() {
        return Err(ltx(Error::new(ErrorKind::PageIndexMismatch(
            "expected the zero end marker before the page index".into(),
        ))
        .at(end_at)));
    }
    let trailer_at = len - TRAILER_SIZE as u64;
    crc.update(&src.read_range(end_at..trailer_at + 8)?);
    let computed = Checksum(crc.value() | CHECKSUM_FLAG);
    let t = f.tail.trailer;
    if computed != t.file_checksum {
        return Err(ltx(Error::new(ErrorKind::FileChecksumMismatch {
            stored: t.file_checksum,
            computed,
        })
        .at(trailer_at + 8)));
    }
    t.validate(&h, trailer_at).map_err(ltx)?;
    if needs_sum {
        let c = Checksum(sum | CHECKSUM_FLAG);
        if c != t.post_apply_checksum {
            return Err(ltx(Error::new(ErrorKind::PostApplyMismatch {
                stored: t.post_apply_checksum,
                computed: c,
            })
            .at(trailer_at)));
        }
    }
    Ok(Decoding {
        version: FormatVersion::V3,
        header: h,
        trailer: t,
        index_size: f.tail.index_size,
        file_size: len,
        pages,
    })
}

/// v1/v2 in memory: [`detect_summary`] must name `version`; then the pages
/// with [`for_each_page`] (which must give the same summary).
fn detect_decode(bytes: &[u8], version: FormatVersion) -> Result<Decoding, StreamError> {
    let summary = match detect_summary(bytes) {
        Ok(s) if s.format_version == version => s,
        Ok(s) => {
            return Err(StreamError::Contract(format!(
                "detect() says the file is {}, expected {version}",
                s.format_version
            )))
        }
        Err(DetectError::Ambiguous(vs)) => {
            return Err(StreamError::Contract(format!(
                "detect() finds the file ambiguous ({vs:?})"
            )))
        }
        Err(e @ DetectError::None(_)) => {
            let err = e
                .error_for(version)
                .cloned()
                .unwrap_or_else(|| Error::new(ErrorKind::Poisoned));
            return Err(StreamError::Ltx(err));
        }
    };
    let mut pages = Vec::new();
    let again = for_each_page(bytes, version, |info, page| {
        pages.push(PageRec {
            pgno: info.pgno,
            flags: info.flags,
            offset: info.offset,
            size: info.frame_len,
            sha: sha(page),
        });
        Ok(())
    })
    .map_err(StreamError::Ltx)?;
    if again != summary {
        return Err(StreamError::Contract(
            "detect_summary() differs from a second decoding".into(),
        ));
    }
    Ok(Decoding {
        version,
        header: summary.header,
        trailer: summary.trailer,
        index_size: summary.index_size,
        file_size: summary.file_size,
        pages,
    })
}

/// v1/v2 on disk: what [`detect_summary`] does, streamed: the file is
/// decoded under every layout; exactly `version`'s must validate.
fn detect_streamed(src: &Ltx, version: FormatVersion) -> Result<Decoding, StreamError> {
    let mut valid = Vec::new();
    let mut mine = None;
    let mut my_err = None;
    for v in FormatVersion::ALL {
        match stream_decode(src, usize::MAX, v, v == version, None) {
            Ok(d) => {
                valid.push(v);
                if v == version {
                    mine = Some(d);
                }
            }
            Err(StreamError::Ltx(e)) if v == version => my_err = Some(e),
            Err(StreamError::Ltx(_)) => {}
            Err(other) => return Err(other),
        }
    }
    match (valid.as_slice(), mine, my_err) {
        ([_], Some(d), _) => Ok(d),
        ([], _, Some(e)) => Err(StreamError::Ltx(e)),
        ([v], None, _) => Err(StreamError::Contract(format!(
            "detection says the file is {v}, expected {version}"
        ))),
        (vs, _, _) => Err(StreamError::Contract(format!(
            "detection finds the file ambiguous ({vs:?})"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_split_the_file() {
        assert_eq!(chunk_sizes(131), [usize::MAX, 7, 1]);
        assert_eq!(chunk_sizes(1), [usize::MAX]);
        assert_eq!(chunk_sizes(70_000), [usize::MAX, 4093, 256, 7]);
        assert_eq!(chunk_sizes(SEVEN_BYTE_LIMIT + 1), [usize::MAX, 4093, 256]);
    }

    /// The ranged path reports what `LtxFile` reports, on every byte flip of
    /// a small file (the first error of each).
    #[test]
    fn ranged_reads_agree_with_ltx_file() {
        let good = ltx_core::doc_example_file();
        let dir = tempfile::tempdir().unwrap();
        let mut files = vec![
            good.clone(),
            good[..good.len() - 1].to_vec(),
            good[..50].to_vec(),
        ];
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x41;
            files.push(b);
        }
        for (n, bytes) in files.iter().enumerate() {
            std::fs::write(dir.path().join("f"), bytes).unwrap();
            let disk = Ltx::open(dir.path(), "f", 0).unwrap();
            let ranged = ranged_decode(&disk);
            let whole = ltx_file_decode(bytes);
            match (ranged, whole) {
                (Ok(a), Ok(b)) => {
                    assert_eq!(a.pages, b.pages, "file {n}");
                    assert_eq!((a.header, a.trailer), (b.header, b.trailer), "file {n}");
                    assert_eq!((a.index_size, a.file_size), (b.index_size, b.file_size));
                }
                (Err(StreamError::Ltx(a)), Err(StreamError::Ltx(b))) => {
                    assert_eq!(a, b, "file {n}")
                }
                (a, b) => panic!("file {n}: ranged {a:?}, LtxFile {b:?}"),
            }
        }
    }
}
