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

mod any;
pub mod detect;
mod header;
pub mod lz4stream;
mod merge;
pub mod v1;
pub mod v2;

pub use any::{for_each_page, verify_as, AnyDecoder, AnyLayout};
pub use detect::{detect, detect_summary, likely_version, DetectError};
pub use merge::merge_any;
pub use v1::{V1Decoder, V1Layout};
pub use v2::{V2Decoder, V2Layout};
