//! The older layouts: format version 1 ([`v1`], LiteFS and Litestream
//! before v0.5) and version 2 ([`v2`], superfly/ltx v0.4.x), read only.
//!
//! They share the magic and the 100-byte header with v3, so nothing in a
//! file says which layout follows: [`detect()`] decodes a whole file under
//! each one and keeps the one that validates. [`AnyDecoder`] streams any
//! layout chosen up front, [`for_each_page`] decodes a whole file, and
//! [`merge_any`] merges files of any layout into one v3 file. The v3 path
//! ([`crate::decoder`], [`crate::file`], [`crate::merge`]) does not depend on
//! this module.
//!
//! ```
//! use ltx_core::old::{detect, for_each_page};
//! use ltx_core::FormatVersion;
//! let v1 = ltx_core::old::v1::tests_support::tiny_v1(true);
//! let version = detect(&v1).unwrap();
//! assert_eq!(version, FormatVersion::V1);
//! let mut pages = Vec::new();
//! let summary = for_each_page(&v1, version, |info, _data| {
//!     pages.push(info.pgno);
//!     Ok(())
//! })
//! .unwrap();
//! assert_eq!(pages, [1, 2]);
//! assert_eq!(summary.format_version, FormatVersion::V1);
//! ```

pub mod detect;
pub mod lz4stream;
mod merge;
pub mod v1;
pub mod v2;

pub use detect::{detect, detect_summary, likely_version, DetectError};
pub use merge::merge_any;
pub use v1::V1Decoder;
pub use v2::V2Decoder;

use crate::checksum::{page_checksum, Crc64};
use crate::decoder::{check_next_pgno, Decoded, Decoder, PageInfo, Summary};
use crate::encoder::next_snapshot_pgno;
use crate::error::{Error, ErrorKind, Result};
use crate::header::{Header, Trailer, TRAILER_SIZE};
use crate::index::IndexEntry;
use crate::types::{Checksum, FormatVersion, Pgno, CHECKSUM_FLAG};

/// v1/v2 page header length (the page number).
pub(crate) const OLD_PAGE_HEADER_SIZE: usize = 4;

/// Decodes and validates a v1 or v2 header: the v3 rules, except that the
/// flags allowed are `mask` (v1: 0x3, v2: 0x2).
///
/// # Errors
/// As [`Header::decode`], with `BadHeaderFlags` for bits outside `mask`.
pub fn decode_old_header(b: &[u8], mask: u32) -> Result<Header> {
    let h = Header::decode_unvalidated(b)?;
    if h.flags & !mask != 0 {
        return Err(Error::new(ErrorKind::BadHeaderFlags(h.flags)).at(4));
    }
    let mut plain = h;
    plain.flags &= !v1::V1_FLAG_LZ4;
    plain.validate()?;
    Ok(h)
}

/// Page rules shared by the v1 and v2 decoders (the same strict rules as v3:
/// ascending, unique, no lock page, at most `commit`, snapshots complete),
/// the rolling checksum and the frames seen.
#[derive(Debug, Default)]
pub(crate) struct Rules {
    pub(crate) last_pgno: Pgno,
    pub(crate) db_sum: Option<u64>,
    pub(crate) frames: Vec<IndexEntry>,
}

impl Rules {
    pub(crate) fn start(&mut self, h: &Header, compute: bool) {
        if h.is_snapshot() && !h.no_checksum() || compute {
            self.db_sum = Some(0);
        }
    }

    pub(crate) fn check_pgno(&self, h: &Header, pgno: Pgno, at: u64) -> Result<()> {
        check_next_pgno(h, self.last_pgno, pgno, at)
    }

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

    pub(crate) fn page(&mut self, pgno: Pgno, data: &[u8], offset: u64, size: u64) {
        if let Some(s) = self.db_sum.as_mut() {
            *s ^= page_checksum(pgno, data).0;
        }
        self.frames.push(IndexEntry { pgno, offset, size });
        self.last_pgno = pgno;
    }

    /// Checks the trailer (`b`, 16 bytes at `at`) after `hasher` covered
    /// everything before the post-apply checksum; returns the summary.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn trailer(
        &self,
        h: &Header,
        hasher: &mut Crc64,
        b: &[u8],
        at: u64,
        index_size: u64,
        version: FormatVersion,
    ) -> Result<Summary> {
        let t = Trailer::from_bytes(b.try_into().expect("16 bytes"));
        hasher.update(&b[..8]);
        let computed = Checksum(hasher.value() | CHECKSUM_FLAG);
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
            index_size,
            computed_post_apply: page_sum,
            format_version: version,
        })
    }
}

/// Decodes a whole file under `version` (streaming decoder, all input at
/// once) and returns the summary.
///
/// # Errors
/// The decoder's first error, or `Truncated`.
pub fn verify_as(bytes: &[u8], version: FormatVersion) -> Result<Summary> {
    let mut dec = AnyDecoder::new(version);
    let mut input = bytes;
    loop {
        let (n, ev) = dec.decode(input)?;
        input = &input[n..];
        match ev {
            Decoded::NeedMore | Decoded::Done(_) => break,
            Decoded::Header(_) | Decoded::Page { .. } => {}
        }
    }
    dec.finish()
}

/// A streaming decoder for any layout, chosen up front (detected with
/// [`detect()`] or forced). Events are the same [`Decoded`] values for every
/// version.
#[derive(Debug)]
pub enum AnyDecoder {
    /// Format version 1.
    V1(V1Decoder),
    /// Format version 2.
    V2(V2Decoder),
    /// Format version 3.
    V3(Decoder),
}

impl AnyDecoder {
    /// A decoder for `version`.
    pub fn new(version: FormatVersion) -> AnyDecoder {
        match version {
            FormatVersion::V1 => AnyDecoder::V1(V1Decoder::new()),
            FormatVersion::V2 => AnyDecoder::V2(V2Decoder::new()),
            FormatVersion::V3 => AnyDecoder::V3(Decoder::new()),
        }
    }

    /// Also compute the rolling checksum of the pages for incremental files.
    pub fn with_page_checksums(self) -> AnyDecoder {
        match self {
            AnyDecoder::V1(d) => AnyDecoder::V1(d.with_page_checksums()),
            AnyDecoder::V2(d) => AnyDecoder::V2(d.with_page_checksums()),
            AnyDecoder::V3(d) => AnyDecoder::V3(d.with_page_checksums()),
        }
    }

    /// The layout this decoder reads.
    pub fn version(&self) -> FormatVersion {
        match self {
            AnyDecoder::V1(_) => FormatVersion::V1,
            AnyDecoder::V2(_) => FormatVersion::V2,
            AnyDecoder::V3(_) => FormatVersion::V3,
        }
    }

    /// Decodes from `input`; returns the bytes consumed and what was found.
    ///
    /// # Errors
    /// Any format violation; then `Poisoned`.
    pub fn decode(&mut self, input: &[u8]) -> Result<(usize, Decoded<'_>)> {
        match self {
            AnyDecoder::V1(d) => d.decode(input),
            AnyDecoder::V2(d) => d.decode(input),
            AnyDecoder::V3(d) => d.decode(input),
        }
    }

    /// Declares the end of input.
    ///
    /// # Errors
    /// `Truncated` unless the trailer was read; the earlier error.
    pub fn finish(&self) -> Result<Summary> {
        match self {
            AnyDecoder::V1(d) => d.finish(),
            AnyDecoder::V2(d) => d.finish(),
            AnyDecoder::V3(d) => d.finish(),
        }
    }

    /// The header, once decoded.
    pub fn header(&self) -> Option<&Header> {
        match self {
            AnyDecoder::V1(d) => d.header(),
            AnyDecoder::V2(d) => d.header(),
            AnyDecoder::V3(d) => d.header(),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        match self {
            AnyDecoder::V1(d) => d.position(),
            AnyDecoder::V2(d) => d.position(),
            AnyDecoder::V3(d) => d.position(),
        }
    }

    /// The frames decoded so far.
    pub fn frames(&self) -> &[IndexEntry] {
        match self {
            AnyDecoder::V1(d) => d.frames(),
            AnyDecoder::V2(d) => d.frames(),
            AnyDecoder::V3(d) => d.frames(),
        }
    }

    /// The summary, once done.
    pub fn summary(&self) -> Option<&Summary> {
        match self {
            AnyDecoder::V1(d) => d.summary(),
            AnyDecoder::V2(d) => d.summary(),
            AnyDecoder::V3(d) => d.summary(),
        }
    }

    /// The first error, if decoding failed.
    pub fn error(&self) -> Option<&Error> {
        match self {
            AnyDecoder::V1(d) => d.error(),
            AnyDecoder::V2(d) => d.error(),
            AnyDecoder::V3(d) => d.error(),
        }
    }
}

/// Decodes a whole file under `version`, calling `f` for every page.
///
/// # Errors
/// The decoder's error, or `f`'s.
pub fn for_each_page(
    bytes: &[u8],
    version: FormatVersion,
    mut f: impl FnMut(PageInfo, &[u8]) -> Result<()>,
) -> Result<Summary> {
    let mut dec = AnyDecoder::new(version);
    let mut input = bytes;
    loop {
        let (n, ev) = dec.decode(input)?;
        input = &input[n..];
        match ev {
            Decoded::NeedMore | Decoded::Done(_) => break,
            Decoded::Header(_) => {}
            Decoded::Page { info, data } => f(info, data)?,
        }
    }
    dec.finish()
}
