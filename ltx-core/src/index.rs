//! The page index: where each page's frame is.
//!
//! ```text
//! repeated per frame, in file order:  uvarint pgno | uvarint frame offset | uvarint frame size
//! terminator:                         uvarint 0
//! size field:                         u64 big-endian = bytes of the varints including the terminator
//! ```

use crate::error::{Error, ErrorKind, Result};
use crate::types::Pgno;

/// Length of the index size field.
pub const INDEX_SIZE_FIELD: usize = 8;

/// One page index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IndexEntry {
    /// Page number.
    pub pgno: Pgno,
    /// Absolute file offset of the frame's page header.
    pub offset: u64,
    /// Frame length (page header + size prefix + payload).
    pub size: u64,
}

/// The page index: entries in file order (ascending pgno in a valid file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageIndex {
    entries: Vec<IndexEntry>,
}

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a Go-style uvarint from `b` at `*pos`. `Ok(None)` = needs more bytes.
pub(crate) fn get_uvarint(b: &[u8], pos: &mut usize) -> Result<Option<u64>> {
    let mut v: u64 = 0;
    let start = *pos;
    for i in 0..10 {
        let Some(&byte) = b.get(start + i) else {
            return Ok(None);
        };
        if i == 9 && byte > 1 {
            return Err(Error::new(ErrorKind::PageIndexMismatch(
                "varint overflows 64 bits".into(),
            ))
            .at(start as u64));
        }
        v |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *pos = start + i + 1;
            return Ok(Some(v));
        }
    }
    Err(Error::new(ErrorKind::PageIndexMismatch(
        "varint longer than 10 bytes".into(),
    ))
    .at(start as u64))
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

impl PageIndex {
    /// An index from entries (kept in the given order).
    pub fn from_entries(entries: Vec<IndexEntry>) -> PageIndex {
        PageIndex { entries }
    }
    /// Entries in file order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Finds a page (binary search; entries are in ascending pgno order).
    pub fn get(&self, pgno: Pgno) -> Option<&IndexEntry> {
        self.entries
            .binary_search_by_key(&pgno, |e| e.pgno)
            .ok()
            .map(|i| &self.entries[i])
    }
    /// Appends the encoded index (varints, terminator, size field) to `out`.
    ///
    /// ```
    /// use ltx_core::index::{IndexEntry, PageIndex};
    /// let idx = PageIndex::from_entries(vec![IndexEntry { pgno: 1, offset: 100, size: 30 }]);
    /// let mut b = Vec::new();
    /// idx.encode(&mut b);
    /// assert_eq!(PageIndex::decode(&b).unwrap(), idx);
    /// ```
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        for e in &self.entries {
            put_uvarint(out, u64::from(e.pgno));
            put_uvarint(out, e.offset);
            put_uvarint(out, e.size);
        }
        put_uvarint(out, 0);
        let n = (out.len() - start) as u64;
        out.extend_from_slice(&n.to_be_bytes());
    }

    /// Decodes an index from exactly its bytes: the varints, the terminator
    /// and the 8-byte size field (which must equal the varint byte count).
    /// Allocates at most one entry per 3 input bytes.
    ///
    /// # Errors
    /// [`ErrorKind::PageIndexMismatch`] / [`ErrorKind::Truncated`], offsets relative to `b`.
    pub fn decode(b: &[u8]) -> Result<PageIndex> {
        Self::decode_limited(b, usize::MAX)
    }

    /// Like [`PageIndex::decode`], but fails as soon as the index holds more
    /// than `max_entries` entries, and never reserves room for more. A
    /// caller that knows the page block's length passes what it can hold
    /// (every frame is at least 7 bytes), so memory is bounded by the real
    /// frames, not by what the index claims.
    ///
    /// # Errors
    /// As [`PageIndex::decode`]; `PageIndexMismatch` past `max_entries`.
    pub fn decode_limited(b: &[u8], max_entries: usize) -> Result<PageIndex> {
        Self::decode_checked(b, max_entries, &mut |_| Ok(()))
    }

    /// Like [`PageIndex::decode_limited`], calling `check` on each entry as
    /// it is decoded; the first error stops decoding. Errors from `check`
    /// are returned unchanged (their offsets are the caller's).
    ///
    /// # Errors
    /// As [`PageIndex::decode_limited`], or `check`'s error.
    pub fn decode_checked(
        b: &[u8],
        max_entries: usize,
        check: &mut dyn FnMut(&IndexEntry) -> Result<()>,
    ) -> Result<PageIndex> {
        if b.len() < 1 + INDEX_SIZE_FIELD {
            return Err(Error::new(ErrorKind::Truncated {
                expected: "page index",
            })
            .at(b.len() as u64));
        }
        let body = &b[..b.len() - INDEX_SIZE_FIELD];
        let mut entries = Vec::with_capacity((body.len() / 3).min(max_entries).min(4096));
        let mut pos = 0usize;
        let trunc = |pos: usize| {
            Error::new(ErrorKind::PageIndexMismatch(
                "page index ends inside an entry (no terminator)".into(),
            ))
            .at(pos as u64)
        };
        loop {
            let at = pos;
            let pgno = get_uvarint(body, &mut pos)?.ok_or_else(|| trunc(at))?;
            if pgno == 0 {
                break;
            }
            let offset = get_uvarint(body, &mut pos)?.ok_or_else(|| trunc(at))?;
            let size = get_uvarint(body, &mut pos)?.ok_or_else(|| trunc(at))?;
            let pgno = Pgno::try_from(pgno).map_err(|_| {
                Error::new(ErrorKind::PageIndexMismatch(format!(
                    "page number {pgno} exceeds 32 bits"
                )))
                .at(at as u64)
            })?;
            if entries.len() == max_entries {
                return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                    "more than {max_entries} entries, more frames than the page block can hold"
                )))
                .at(at as u64));
            }
            let entry = IndexEntry { pgno, offset, size };
            check(&entry)?;
            entries.push(entry);
        }
        if pos != body.len() {
            return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                "{} bytes between the index terminator and its size field",
                body.len() - pos
            )))
            .at(pos as u64));
        }
        let stored = u64::from_be_bytes(b[body.len()..].try_into().unwrap());
        if stored != pos as u64 {
            return Err(Error::new(ErrorKind::PageIndexMismatch(format!(
                "size field says {stored}, the index is {pos} bytes"
            )))
            .at(body.len() as u64));
        }
        Ok(PageIndex { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_roundtrip() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut b = Vec::new();
            put_uvarint(&mut b, v);
            let mut pos = 0;
            assert_eq!(get_uvarint(&b, &mut pos).unwrap(), Some(v));
            assert_eq!(pos, b.len());
            let mut pos = 0;
            assert_eq!(get_uvarint(&b[..b.len() - 1], &mut pos).unwrap(), None);
        }
        let mut pos = 0;
        assert!(get_uvarint(&[0xff; 11], &mut pos).is_err());
    }

    #[test]
    fn decode_rejects_bad_size_and_garbage() {
        let idx = PageIndex::from_entries(vec![
            IndexEntry {
                pgno: 2,
                offset: 100,
                size: 20,
            },
            IndexEntry {
                pgno: 9,
                offset: 120,
                size: 4000,
            },
        ]);
        let mut b = Vec::new();
        idx.encode(&mut b);
        assert_eq!(PageIndex::decode(&b).unwrap(), idx);
        let n = b.len();
        let mut c = b.clone();
        c[n - 1] ^= 1;
        assert!(PageIndex::decode(&c).is_err());
        for k in 0..n {
            let _ = PageIndex::decode(&b[..k]);
        }
    }
}
