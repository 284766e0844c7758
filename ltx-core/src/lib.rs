//! # ltx-core
//!
//! The LTX file format (format version 3, as written by the reference Go
//! implementation superfly/ltx, Litestream v0.5+ and LiteFS) as a sans-I/O
//! library: no files, sockets, threads, clocks or async. Bytes come in as
//! slices; bytes go out into `Vec<u8>` buffers the caller owns.
//!
//! Older files are read too, by [`old`]: format version 1 ([`old::v1`],
//! LiteFS and Litestream before v0.5) and version 2 ([`old::v2`]); they share
//! the magic and header with v3, so [`detect()`] finds the layout by
//! validating the file under each one, and [`AnyDecoder`] streams any of them.
//! Writing is v3 only.
//!
//! ## Byte layout (all integers big-endian)
//!
//! ```text
//! header      100 B   magic "LTX1" | flags u32 | page_size u32 | commit u32 | min_txid u64 | max_txid u64
//!                     | timestamp i64 | pre_apply u64 | wal_offset i64 | wal_size i64 | salt1 u32 | salt2 u32
//!                     | node_id u64 | 20 reserved zero bytes
//! frames      per page, ascending: pgno u32 | flags u16 (0x0001) | size u32 | LZ4 block
//!                     (legacy, flags 0: pgno u32 | flags u16 | one complete LZ4 frame)
//! end marker  6 zero bytes
//! page index  uvarint (pgno, frame offset, frame size)* | uvarint 0 | u64 byte length of the varints
//! trailer     post_apply_checksum u64 | file_checksum u64
//! ```
//!
//! The file checksum is CRC-64/GO-ISO over the header, each page header and
//! size prefix, the *decompressed* pages, the end marker, the index and its
//! size field, and the post-apply checksum, stored with bit 63 set. The
//! database checksum XORs CRC-64/GO-ISO(pgno ‖ page) over every page except
//! the lock page, with bit 63 set. See `spec/SPEC.md` for every rule.
//!
//! ## Example: write a snapshot, then read it back three ways
//!
//! ```
//! use ltx_core::{checksum::DbChecksum, Decoded, Decoder, Encoder, Header, LtxFile, PageSize, TxId};
//!
//! let ps = PageSize::new(4096).unwrap();
//! let mut header = Header::new(ps, TxId(1), TxId(1));
//! header.commit = 3;
//! header.timestamp = 1_700_000_000_000;
//!
//! let mut out = Vec::new();
//! let mut enc = Encoder::new(header, &mut out).unwrap();
//! let mut sum = DbChecksum::new(ps);
//! for pgno in 1..=3u32 {
//!     let page = vec![pgno as u8; 4096];
//!     enc.write_page(&mut out, pgno, &page).unwrap();
//!     sum.add(pgno, &page);
//! }
//! let trailer = enc.finish(&mut out, sum.value()).unwrap();
//!
//! // Random access: one page without decoding the others.
//! let file = LtxFile::parse(&out).unwrap();
//! let mut page = vec![0u8; 4096];
//! file.read_page(2, &mut page).unwrap();
//! assert_eq!(page, vec![2u8; 4096]);
//!
//! // Full verification.
//! assert_eq!(file.verify().unwrap().trailer, trailer);
//!
//! // Streaming, fed one byte at a time.
//! let mut dec = Decoder::new();
//! let mut pages = 0;
//! for b in out.chunks(1) {
//!     let mut input = b;
//!     while !input.is_empty() {
//!         let (n, ev) = dec.decode(input).unwrap();
//!         input = &input[n..];
//!         if let Decoded::Page { .. } = ev { pages += 1 }
//!     }
//! }
//! assert_eq!(dec.finish().unwrap().page_count, pages);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checksum;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod file;
pub mod frame;
pub mod header;
pub mod index;
mod lz4frame;
pub mod merge;
pub mod old;
pub mod parse;
pub mod rng;
pub mod stream;
pub mod types;
pub mod wal;

pub use checksum::{DbChecksum, PageChecksums};
pub use decoder::{Decoded, Decoder, PageInfo, Summary};
pub use encoder::Encoder;
pub use error::{Error, ErrorKind, MergeError, Result};
pub use file::LtxFile;
pub use frame::{compress_frame, decode_frame, FrameCompressor, FrameDigest, PageHeader};
pub use header::{Header, Trailer};
pub use index::{IndexEntry, PageIndex};
pub use merge::{plan_merge, MergeInput, MergeOptions, MergePlan};
pub use old::detect::detect;
pub use old::{AnyDecoder, DetectError, V1Decoder, V2Decoder};
pub use parse::{format_filename, parse_filename};
pub use types::{lock_pgno, Checksum, FormatVersion, PageSize, Pgno, TxId, CHECKSUM_FLAG};

/// A small valid snapshot (2 pages of 512 bytes) for documentation examples.
#[doc(hidden)]
pub use encoder::doc_example_file;
