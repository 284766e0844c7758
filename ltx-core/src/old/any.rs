//! Decoding a file of a layout chosen at run time: [`AnyDecoder`],
//! [`verify_as`], [`for_each_page`].

use super::v1::V1Layout;
use super::v2::V2Layout;
use crate::decoder::{Decoded, PageInfo, Summary, V3Layout};
use crate::error::Result;
use crate::index::IndexEntry;
use crate::stream::sealed::{Event, Step};
use crate::stream::StreamDecoder;
use crate::types::FormatVersion;

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
/// [`super::detect()`] or forced). Events are the same [`Decoded`] values for every
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
