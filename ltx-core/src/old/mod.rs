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
pub use v1::{V1Decoder, V1Layout};
pub use v2::{V2Decoder, V2Layout};

use crate::decoder::{Decoded, PageInfo, Summary, V3Layout};
use crate::error::{Error, ErrorKind, Result};
use crate::header::Header;
use crate::index::IndexEntry;
use crate::stream::sealed::{Event, Step};
use crate::stream::StreamDecoder;
use crate::types::FormatVersion;

/// v1/v2 page header length (the page number).
pub(crate) const OLD_PAGE_HEADER_SIZE: usize = 4;

impl Header {
    /// Decodes and validates a header of a file of `version` from the first
    /// 100 bytes of `bytes`: the rules of [`Header::decode`], except that the
    /// flags allowed are those the version defines (v1: LZ4 and NoChecksum,
    /// [`v1::V1_FLAG_MASK`]; v2 and v3: NoChecksum).
    ///
    /// ```
    /// use ltx_core::{FormatVersion, Header};
    /// let v1 = ltx_core::old::v1::tests_support::tiny_v1(true);
    /// let h = Header::decode_as(&v1, FormatVersion::V1).unwrap();
    /// assert_eq!(h.flags, ltx_core::old::v1::V1_FLAG_LZ4);
    /// assert!(Header::decode_as(&v1, FormatVersion::V2).is_err());
    /// assert!(Header::decode_as(&v1, FormatVersion::V3).is_err());
    /// ```
    ///
    /// # Errors
    /// As [`Header::decode`]: `BadHeaderFlags` for bits the version does not
    /// define.
    pub fn decode_as(bytes: &[u8], version: FormatVersion) -> Result<Header> {
        match version {
            FormatVersion::V1 => decode_old_header(bytes, v1::V1_FLAG_MASK),
            FormatVersion::V2 => decode_old_header(bytes, v2::V2_FLAG_MASK),
            FormatVersion::V3 => Header::decode(bytes),
        }
    }
}

/// Decodes and validates a v1 or v2 header: the v3 rules, except that the
/// flags allowed are `mask` (v1: 0x3, v2: 0x2).
fn decode_old_header(b: &[u8], mask: u32) -> Result<Header> {
    let h = Header::decode_unvalidated(b)?;
    if h.flags & !mask != 0 {
        return Err(Error::new(ErrorKind::BadHeaderFlags(h.flags)).at(4));
    }
    let mut plain = h;
    plain.flags &= !v1::V1_FLAG_LZ4;
    plain.validate()?;
    Ok(h)
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
/// version; the methods are those of every [`StreamDecoder`].
///
/// ```
/// use ltx_core::{AnyDecoder, Decoded, FormatVersion};
/// let v1 = ltx_core::old::v1::tests_support::tiny_v1(false);
/// let mut dec = AnyDecoder::new(FormatVersion::V1);
/// let (n, ev) = dec.decode(&v1).unwrap();
/// assert!(matches!(ev, Decoded::Header(_)));
/// assert_eq!(n, 100);
/// assert_eq!(dec.version(), FormatVersion::V1);
/// ```
pub type AnyDecoder = StreamDecoder<AnyLayout>;

impl AnyDecoder {
    /// A decoder for `version`.
    pub fn new(version: FormatVersion) -> AnyDecoder {
        StreamDecoder::with_layout(match version {
            FormatVersion::V1 => AnyLayout::V1(V1Layout::default()),
            FormatVersion::V2 => AnyLayout::V2(V2Layout::default()),
            FormatVersion::V3 => AnyLayout::V3(V3Layout::default()),
        })
    }
}

/// One of the three layouts, chosen at run time (see [`AnyDecoder`]).
#[derive(Debug)]
pub enum AnyLayout {
    /// Format version 1.
    V1(V1Layout),
    /// Format version 2.
    V2(V2Layout),
    /// Format version 3.
    V3(V3Layout),
}

impl AnyLayout {
    fn inner(&self) -> &dyn Step {
        match self {
            AnyLayout::V1(l) => l,
            AnyLayout::V2(l) => l,
            AnyLayout::V3(l) => l,
        }
    }

    fn inner_mut(&mut self) -> &mut dyn Step {
        match self {
            AnyLayout::V1(l) => l,
            AnyLayout::V2(l) => l,
            AnyLayout::V3(l) => l,
        }
    }
}

impl Step for AnyLayout {
    fn step(&mut self, input: &[u8]) -> Result<(usize, Event)> {
        self.inner_mut().step(input)
    }
    fn page(&self) -> &[u8] {
        self.inner().page()
    }
    fn position(&self) -> u64 {
        self.inner().position()
    }
    fn frames(&self) -> &[IndexEntry] {
        self.inner().frames()
    }
    fn expecting(&self) -> &'static str {
        self.inner().expecting()
    }
    fn compute_page_checksums(&mut self) {
        self.inner_mut().compute_page_checksums()
    }
    fn version(&self) -> FormatVersion {
        self.inner().version()
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
