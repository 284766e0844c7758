//! The header rules of the older layouts: the flags each version defines
//! ([`Header::decode_as`]).

use crate::error::{Error, ErrorKind, Result};
use crate::header::Header;
use crate::types::FormatVersion;

/// v1 header flag: the page block is one LZ4 frame.
pub const V1_FLAG_LZ4: u32 = 0x1;
/// Header flags defined in v1 (LZ4, NoChecksum).
pub const V1_FLAG_MASK: u32 = 0x3;
/// Header flags defined in v2 (NoChecksum only).
pub const V2_FLAG_MASK: u32 = 0x2;

impl Header {
    /// Decodes and validates a header of a file of `version` from the first
    /// 100 bytes of `bytes`: the rules of [`Header::decode`], except that the
    /// flags allowed are those the version defines (v1: LZ4 and NoChecksum,
    /// [`V1_FLAG_MASK`]; v2 and v3: NoChecksum).
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
            FormatVersion::V1 => decode_old_header(bytes, V1_FLAG_MASK),
            FormatVersion::V2 => decode_old_header(bytes, V2_FLAG_MASK),
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
    plain.flags &= !V1_FLAG_LZ4;
    plain.validate()?;
    Ok(h)
}
