//! `page_index`: [`PageIndex::decode`], [`parse_tail`] and [`parse_index`].
//!
//! 1. `PageIndex::decode(data)` on the whole input. On success: re-encoding
//!    gives the input back byte for byte when the varints were minimal; in
//!    any case it is never longer than the input and decodes to the same
//!    index (Go's `binary.Uvarint`, like `decode`, accepts over-long varints).
//! 2. The input as a structured case:
//!
//!    ```text
//!    byte 0      bit 0: index_offset derived from the decoded entries (else bytes 13..21)
//!                bits 1-3: page size 512 << n;  bit 4: NoChecksum;  bit 5: snapshot (min TXID 1)
//!    bytes 1..5   commit (u32 BE)
//!    bytes 5..13  file_len for parse_tail (u64 BE)
//!    bytes 13..21 index_offset (u64 BE)
//!    bytes 21..45 the 24-byte tail for parse_tail
//!    rest         page index bytes (varints, terminator, size field)
//!    ```
//!
//!    `parse_tail` results are checked for a consistent range inside the
//!    file; `parse_index` results for the layout rules it promises (pages
//!    ascending, ≤ commit, no lock page, complete snapshots, frames tiling
//!    100..index_offset-6 with sane sizes) and for agreeing with
//!    `PageIndex::decode`.

use ltx_core::file::{parse_index, parse_tail, TAIL_SIZE};
use ltx_core::frame::{max_frame_size, PAGE_HEADER_SIZE};
use ltx_core::header::HEADER_SIZE;
use ltx_core::index::PageIndex;
use ltx_core::{Header, PageSize, TxId};

use crate::Bytes;

/// Decodes and checks the round-trip of one index encoding.
pub fn check_decode(b: &[u8]) -> Option<PageIndex> {
    let idx = PageIndex::decode(b).ok()?;
    let mut enc = Vec::new();
    idx.encode(&mut enc);
    assert!(
        enc.len() <= b.len(),
        "re-encoding is longer ({} bytes) than the input ({} bytes)",
        enc.len(),
        b.len()
    );
    if enc.len() == b.len() {
        assert_eq!(enc, b, "decode/encode round-trip changed the bytes");
    }
    assert_eq!(
        PageIndex::decode(&enc).as_ref(),
        Ok(&idx),
        "re-encoded index decodes differently"
    );
    for e in idx.entries() {
        assert!(e.pgno != 0, "entry with page 0 (the terminator)");
        if let Some(g) = idx.get(e.pgno) {
            assert_eq!(g.pgno, e.pgno, "get() found another page");
        }
    }
    Some(idx)
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    check_decode(data);

    let mut r = Bytes::new(data);
    let mode = r.u8();
    let commit = r.u32();
    let file_len = r.u64();
    let raw_offset = r.u64();
    let tail: [u8; TAIL_SIZE] = r.array();
    let index_bytes = r.rest();

    // parse_tail on an arbitrary tail and length.
    if let Ok(t) = parse_tail(&tail, file_len) {
        let size_at = file_len - TAIL_SIZE as u64;
        assert!(t.index_size >= 1);
        assert_eq!(t.index_range.end, size_at + 8, "index range end");
        assert_eq!(
            t.index_range.end - t.index_range.start,
            t.index_size + 8,
            "index range length"
        );
        assert!(
            t.index_range.start >= (HEADER_SIZE + PAGE_HEADER_SIZE) as u64,
            "index range {:?} overlaps the header",
            t.index_range
        );
    }

    let ps = PageSize::new(512 << ((mode >> 1) & 7)).expect("valid page size");
    let min = if mode & 0x20 != 0 { 1 } else { 2 };
    let mut h = Header::new(ps, TxId(min), TxId(min + 1));
    h.commit = commit;
    h.flags = if mode & 0x10 != 0 { 2 } else { 0 };
    let decoded = check_decode(index_bytes);
    let index_offset = match (&decoded, mode & 1) {
        (Some(idx), 1) => idx
            .entries()
            .iter()
            .fold(HEADER_SIZE as u64, |a, e| a.saturating_add(e.size))
            .saturating_add(PAGE_HEADER_SIZE as u64),
        _ => raw_offset,
    };
    let Ok(idx) = parse_index(&h, index_bytes, index_offset) else {
        return;
    };
    assert_eq!(
        Some(&idx),
        decoded.as_ref(),
        "parse_index accepts what PageIndex::decode does not, or differs"
    );
    let lock = h.lock_pgno();
    let max_frame = max_frame_size(ps) as u64;
    let mut expect = HEADER_SIZE as u64;
    let mut last = 0u32;
    for e in idx.entries() {
        assert!(e.pgno > last, "pages not ascending");
        assert!(e.pgno <= h.commit, "page above commit");
        assert!(e.pgno != lock, "lock page");
        if h.is_snapshot() {
            let want = if last + 1 == lock { last + 2 } else { last + 1 };
            assert_eq!(e.pgno, want, "snapshot skips a page");
        }
        assert_eq!(e.offset, expect, "frames do not tile");
        assert!(
            e.size > PAGE_HEADER_SIZE as u64 && e.size <= max_frame,
            "frame size {}",
            e.size
        );
        expect += e.size;
        last = e.pgno;
    }
    assert_eq!(
        expect + PAGE_HEADER_SIZE as u64,
        index_offset,
        "end marker position"
    );
    if h.is_snapshot() {
        let pages = h.commit as u64 - u64::from(lock <= h.commit);
        assert_eq!(idx.len() as u64, pages, "incomplete snapshot accepted");
    }
}
