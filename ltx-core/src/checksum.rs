//! CRC-64/GO-ISO, the file checksum and the rolling database checksum.
//!
//! LTX uses Go's `crc64.ISO` table: polynomial `0x1B` (reflected
//! `0xD800000000000000`), initial value and final XOR all ones. This is
//! *not* CRC-64/XZ (ECMA-182). The SIMD implementation comes from `crc-fast`.

use crc_fast::{CrcAlgorithm, Digest};

use crate::error::{Error, ErrorKind, Result};
use crate::types::{Checksum, PageSize, Pgno, CHECKSUM_FLAG};

const ALGO: CrcAlgorithm = CrcAlgorithm::Crc64GoIso;

/// CRC-64/GO-ISO of `data`.
///
/// ```
/// assert_eq!(ltx_core::checksum::crc64(b"123456789"), 0xb90956c775a41001);
/// ```
pub fn crc64(data: &[u8]) -> u64 {
    crc_fast::checksum(ALGO, data)
}

/// `crc64(a ‖ b)` from `crc64(a)`, `crc64(b)` and `b.len()`.
///
/// This lets frames be hashed independently (in parallel) and combined in
/// file order. Each call builds a [`ZerosOperator`]; to combine many
/// segments of the same length, build one and use [`ZerosOperator::combine`]
/// (as [`Crc64::combine`] does).
///
/// ```
/// use ltx_core::checksum::{crc64, crc64_combine};
/// assert_eq!(crc64_combine(crc64(b"1234"), crc64(b"56789"), 5), crc64(b"123456789"));
/// ```
pub fn crc64_combine(crc_a: u64, crc_b: u64, len_b: u64) -> u64 {
    ZerosOperator::new(len_b).combine(crc_a, crc_b)
}

/// Reflected CRC-64/GO-ISO polynomial.
const POLY_REFLECTED: u64 = 0xD800_0000_0000_0000;

/// The linear map "feed `len` zero bytes through the CRC register", as
/// eight 256-entry tables, so applying it costs eight lookups.
///
/// For CRC-64/GO-ISO (init = xorout = all ones),
/// `crc(a ‖ b) = Z_len(b)(crc(a)) ^ crc(b)`.
#[derive(Clone)]
pub struct ZerosOperator {
    len: u64,
    tables: Box<[[u64; 256]; 8]>,
}

impl std::fmt::Debug for ZerosOperator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZerosOperator")
            .field("len", &self.len)
            .finish()
    }
}

fn gf2_times(mat: &[u64; 64], mut v: u64) -> u64 {
    let mut sum = 0;
    let mut i = 0;
    while v != 0 {
        if v & 1 != 0 {
            sum ^= mat[i];
        }
        v >>= 1;
        i += 1;
    }
    sum
}

fn gf2_square(mat: &[u64; 64]) -> [u64; 64] {
    let mut sq = [0u64; 64];
    for (n, s) in sq.iter_mut().enumerate() {
        *s = gf2_times(mat, mat[n]);
    }
    sq
}

fn gf2_mul(a: &[u64; 64], b: &[u64; 64]) -> [u64; 64] {
    // (a ∘ b)(v) = a(b(v)); column n is a(b(e_n)).
    let mut m = [0u64; 64];
    for (n, c) in m.iter_mut().enumerate() {
        *c = gf2_times(a, b[n]);
    }
    m
}

impl ZerosOperator {
    /// The operator for `len` zero bytes.
    pub fn new(len: u64) -> ZerosOperator {
        // One zero bit.
        let mut bit = [0u64; 64];
        bit[0] = POLY_REFLECTED;
        for (n, c) in bit.iter_mut().enumerate().skip(1) {
            *c = 1u64 << (n - 1);
        }
        // One zero byte = 8 zero bits.
        let mut power = gf2_square(&gf2_square(&gf2_square(&bit)));
        let mut acc: Option<[u64; 64]> = None;
        let mut n = len;
        while n != 0 {
            if n & 1 != 0 {
                acc = Some(match acc {
                    None => power,
                    Some(a) => gf2_mul(&power, &a),
                });
            }
            n >>= 1;
            if n != 0 {
                power = gf2_square(&power);
            }
        }
        let mut identity = [0u64; 64];
        for (i, c) in identity.iter_mut().enumerate() {
            *c = 1u64 << i;
        }
        let m = acc.unwrap_or(identity);
        let mut tables = Box::new([[0u64; 256]; 8]);
        for (k, t) in tables.iter_mut().enumerate() {
            for (b, e) in t.iter_mut().enumerate() {
                *e = gf2_times(&m, (b as u64) << (8 * k));
            }
        }
        ZerosOperator { len, tables }
    }

    /// The length this operator appends.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether this is the operator for zero bytes (the identity).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Applies the operator to a CRC register value.
    #[inline]
    pub fn apply(&self, v: u64) -> u64 {
        let t = &self.tables;
        t[0][(v & 0xff) as usize]
            ^ t[1][(v >> 8 & 0xff) as usize]
            ^ t[2][(v >> 16 & 0xff) as usize]
            ^ t[3][(v >> 24 & 0xff) as usize]
            ^ t[4][(v >> 32 & 0xff) as usize]
            ^ t[5][(v >> 40 & 0xff) as usize]
            ^ t[6][(v >> 48 & 0xff) as usize]
            ^ t[7][(v >> 56) as usize]
    }

    /// `crc(a ‖ b)` from `crc(a)` and `crc(b)`, where `b` is `self.len()` bytes.
    #[inline]
    pub fn combine(&self, crc_a: u64, crc_b: u64) -> u64 {
        self.apply(crc_a) ^ crc_b
    }
}

/// A streaming CRC-64/GO-ISO hasher.
#[derive(Clone)]
pub struct Crc64 {
    digest: Digest,
    len: u64,
    /// Operators for the segment lengths seen by `combine` (frames of one
    /// file have one or two distinct hashed lengths).
    ops: Vec<ZerosOperator>,
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Crc64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crc64")
            .field("len", &self.len)
            .field("crc", &self.value())
            .finish()
    }
}

impl Crc64 {
    /// A hasher over no bytes.
    pub fn new() -> Self {
        Crc64 {
            digest: Digest::new(ALGO),
            len: 0,
            ops: Vec::new(),
        }
    }
    /// Hashes `data`.
    pub fn update(&mut self, data: &[u8]) {
        self.digest.update(data);
        self.len += data.len() as u64;
    }
    /// Appends a segment hashed elsewhere: `crc` over `len` bytes.
    pub fn combine(&mut self, crc: u64, len: u64) {
        if len == 0 {
            return;
        }
        let i = match self.ops.iter().position(|o| o.len() == len) {
            Some(i) => i,
            None => {
                if self.ops.len() == 4 {
                    self.ops.remove(0);
                }
                self.ops.push(ZerosOperator::new(len));
                self.ops.len() - 1
            }
        };
        let v = self.ops[i].combine(self.value(), crc);
        // Rebuild the digest state at the combined value.
        self.digest = Digest::new_with_init_state(ALGO, v ^ u64::MAX);
        self.len += len;
        debug_assert_eq!(self.digest.finalize(), v);
    }
    /// The CRC of everything hashed so far.
    pub fn value(&self) -> u64 {
        self.digest.finalize()
    }
    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether nothing was hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// One page's contribution to the rolling database checksum:
/// `CRC-64/GO-ISO(pgno as u32 big-endian ‖ data) | 1<<63`.
///
/// ```
/// use ltx_core::checksum::page_checksum;
/// let c = page_checksum(1, &[0u8; 4096]);
/// assert!(c.has_flag());
/// ```
pub fn page_checksum(pgno: Pgno, data: &[u8]) -> Checksum {
    let mut d = Digest::new(ALGO);
    d.update(&pgno.to_be_bytes());
    d.update(data);
    Checksum(d.finalize() | CHECKSUM_FLAG)
}

/// The rolling database checksum: XOR of [`page_checksum`] over every page
/// except the lock page, with bit 63 set. An empty database has checksum 0.
///
/// It can be updated incrementally: [`DbChecksum::replace`] XORs out a page's
/// old content and XORs in the new one, without rereading the database.
///
/// ```
/// use ltx_core::checksum::DbChecksum;
/// use ltx_core::PageSize;
/// let ps = PageSize::new(512).unwrap();
/// let (a, b, c) = ([1u8; 512], [2u8; 512], [3u8; 512]);
/// let mut full = DbChecksum::new(ps);
/// full.add(1, &a);
/// full.add(2, &b);
/// let mut inc = full;
/// inc.replace(2, &b, &c);
/// let mut fresh = DbChecksum::new(ps);
/// fresh.add(1, &a);
/// fresh.add(2, &c);
/// assert_eq!(inc.value(), fresh.value());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbChecksum {
    acc: u64,
    pages: u64,
    lock_pgno: Pgno,
}

impl DbChecksum {
    /// The checksum of an empty database with pages of `page_size`.
    pub fn new(page_size: PageSize) -> Self {
        DbChecksum {
            acc: 0,
            pages: 0,
            lock_pgno: page_size.lock_pgno(),
        }
    }
    /// Starts from a known value (e.g. a file's pre-apply checksum) of a
    /// non-empty database.
    pub fn from_value(page_size: PageSize, value: Checksum) -> Self {
        DbChecksum {
            acc: value.0,
            pages: u64::from(!value.is_zero()),
            lock_pgno: page_size.lock_pgno(),
        }
    }
    /// Adds a page (ignored for the lock page).
    pub fn add(&mut self, pgno: Pgno, data: &[u8]) {
        if pgno != self.lock_pgno {
            self.add_checksum(page_checksum(pgno, data));
        }
    }
    /// Adds a page's precomputed [`page_checksum`].
    pub fn add_checksum(&mut self, c: Checksum) {
        self.acc ^= c.0;
        self.pages += 1;
    }
    /// Adds `pages` pages whose [`page_checksum`]s XOR to `acc` (bit 63
    /// ignored).
    pub(crate) fn add_raw(&mut self, acc: u64, pages: u64) {
        self.acc ^= acc;
        self.pages += pages;
    }
    /// Removes a page previously added (e.g. on truncation).
    pub fn remove(&mut self, pgno: Pgno, data: &[u8]) {
        if pgno != self.lock_pgno {
            self.acc ^= page_checksum(pgno, data).0;
            self.pages = self.pages.saturating_sub(1);
        }
    }
    /// Replaces page `pgno`'s contribution: XOR out `old`, XOR in `new`.
    pub fn replace(&mut self, pgno: Pgno, old: &[u8], new: &[u8]) {
        if pgno != self.lock_pgno {
            self.acc ^= page_checksum(pgno, old).0 ^ page_checksum(pgno, new).0;
        }
    }
    /// Merges a checksum accumulated over a disjoint set of pages (for
    /// parallel computation).
    pub fn merge(&mut self, other: &DbChecksum) {
        self.acc ^= other.acc;
        self.pages += other.pages;
    }
    /// The checksum: 0 for a database with no pages, otherwise the XOR with bit 63 set.
    pub fn value(&self) -> Checksum {
        if self.pages == 0 && self.acc & !CHECKSUM_FLAG == 0 {
            Checksum(0)
        } else {
            Checksum(self.acc | CHECKSUM_FLAG)
        }
    }
}

/// A database as one [`page_checksum`] per page (8 bytes a page, never the
/// pages themselves) and their rolling checksum: what following a database
/// through a chain of LTX files needs when its pages are not kept (`ltx
/// verify`'s chain replay) or not worth rereading (`ltx apply`).
///
/// Apply a file as SQLite would: [`PageChecksums::clear`] for a snapshot,
/// [`PageChecksums::resize`] to its commit, then [`PageChecksums::set`] each
/// page it holds; [`PageChecksums::value`] is then the database checksum to
/// compare with its post-apply checksum. The lock page never has a checksum
/// (it is not part of the database checksum); pages added by growing the
/// database have none until they are set, and count as nothing until then.
///
/// ```
/// use ltx_core::checksum::{page_checksum, DbChecksum, PageChecksums};
/// use ltx_core::PageSize;
/// let ps = PageSize::new(512).unwrap();
/// let page = |v: u8| [v; 512];
/// let mut db = PageChecksums::new(ps);
/// // A snapshot of 3 pages.
/// db.resize(3);
/// for p in 1..=3 {
///     db.set(p, page_checksum(p, &page(1))).unwrap();
/// }
/// // A file that rewrites page 2 and truncates the database to 2 pages.
/// db.resize(2);
/// db.set(2, page_checksum(2, &page(2))).unwrap();
/// assert!(db.set(3, page_checksum(3, &page(2))).is_err()); // above the database
///
/// let mut want = DbChecksum::new(ps);
/// want.add(1, &page(1));
/// want.add(2, &page(2));
/// assert_eq!(db.value(), want.value());
/// assert_eq!(db.page_count(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageChecksums {
    lock_pgno: Pgno,
    /// The checksum of page `p` at `[p - 1]`; 0 (never a page checksum,
    /// which has bit 63 set) for the lock page and pages without one.
    sums: Vec<u64>,
    /// XOR of `sums`.
    acc: u64,
}

impl PageChecksums {
    /// An empty database with pages of `page_size`.
    pub fn new(page_size: PageSize) -> Self {
        PageChecksums {
            lock_pgno: page_size.lock_pgno(),
            sums: Vec::new(),
            acc: 0,
        }
    }

    /// The database size in pages.
    pub fn page_count(&self) -> u32 {
        self.sums.len() as u32
    }

    /// Whether the database has no pages.
    pub fn is_empty(&self) -> bool {
        self.sums.is_empty()
    }

    /// Page `pgno`'s checksum; `None` outside the database, for the lock
    /// page and for a page that has none yet.
    pub fn get(&self, pgno: Pgno) -> Option<Checksum> {
        let i = (pgno as usize).checked_sub(1)?;
        self.sums.get(i).filter(|&&s| s != 0).map(|&s| Checksum(s))
    }

    /// Sets (or replaces) page `pgno`'s checksum. The lock page's is
    /// ignored.
    ///
    /// # Errors
    /// [`ErrorKind::PageOutOfRange`] when `pgno` is 0 or above
    /// [`PageChecksums::page_count`] (resize first).
    pub fn set(&mut self, pgno: Pgno, sum: Checksum) -> Result<()> {
        let commit = self.page_count();
        let slot = (pgno as usize)
            .checked_sub(1)
            .and_then(|i| self.sums.get_mut(i))
            .ok_or_else(|| Error::new(ErrorKind::PageOutOfRange { pgno, commit }).page(pgno))?;
        if pgno != self.lock_pgno {
            self.acc ^= *slot ^ sum.0;
            *slot = sum.0;
        }
        Ok(())
    }

    /// Truncates the database to `pages` (the pages above no longer count)
    /// or grows it (the new pages have no checksum until set). Growing
    /// allocates 8 bytes a page: bound `pages` first (an LTX commit may
    /// claim up to 2^32 - 1 pages).
    pub fn resize(&mut self, pages: u32) {
        let pages = pages as usize;
        if pages < self.sums.len() {
            for s in self.sums.drain(pages..) {
                self.acc ^= s;
            }
        } else {
            self.sums.resize(pages, 0);
        }
    }

    /// Empties the database (as a snapshot's start does).
    pub fn clear(&mut self) {
        self.sums.clear();
        self.acc = 0;
    }

    /// The rolling database checksum: 0 for a database with no pages,
    /// otherwise the XOR of the page checksums with bit 63 set.
    pub fn value(&self) -> Checksum {
        if self.sums.is_empty() {
            Checksum::ZERO
        } else {
            Checksum(self.acc | CHECKSUM_FLAG)
        }
    }
}

/// Rolling checksum of a whole database image (`len` a multiple of the page size).
///
/// ```
/// use ltx_core::{checksum::database_checksum, PageSize, Checksum};
/// assert_eq!(database_checksum(PageSize::new(4096).unwrap(), &[]), Checksum(0));
/// ```
pub fn database_checksum(page_size: PageSize, db: &[u8]) -> Checksum {
    let mut c = DbChecksum::new(page_size);
    for (i, page) in db.chunks(page_size.bytes()).enumerate() {
        c.add(i as Pgno + 1, page);
    }
    c.value()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bit-by-bit CRC-64/GO-ISO, to check the SIMD implementation against.
    fn slow_crc(data: &[u8]) -> u64 {
        let mut c = u64::MAX;
        for &b in data {
            c ^= u64::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    (c >> 1) ^ 0xD800_0000_0000_0000
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn go_iso_not_xz() {
        assert_eq!(crc64(b"123456789"), 0xb90956c775a41001);
        for (a, b) in [
            (&b""[..], &b"x"[..]),
            (b"abc", b""),
            (b"a", b"bcdefghijklmnopqrstuvwxyz0123456789"),
        ] {
            let mut ab = a.to_vec();
            ab.extend_from_slice(b);
            assert_eq!(
                crc64_combine(crc64(a), crc64(b), b.len() as u64),
                crc64(&ab)
            );
        }
        // CRC-64/XZ of the same input is 0x995dc9bbdf1939fa; make sure we are not it.
        assert_ne!(crc64(b"123456789"), 0x995dc9bbdf1939fa);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 31 % 251) as u8).collect();
        for n in [0, 1, 7, 8, 15, 16, 63, 64, 255, 256, 4096, 10_000] {
            assert_eq!(crc64(&data[..n]), slow_crc(&data[..n]), "len {n}");
        }
    }

    #[test]
    fn streaming_and_combine() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        for split in [0, 1, 100, 2500, 4999, 5000] {
            let mut h = Crc64::new();
            h.update(&data[..split]);
            h.combine(crc64(&data[split..]), (data.len() - split) as u64);
            assert_eq!(h.value(), crc64(&data));
            h.update(b"xyz");
            let mut all = data.clone();
            all.extend_from_slice(b"xyz");
            assert_eq!(h.value(), crc64(&all));
            assert_eq!(h.len(), all.len() as u64);
        }
    }

    #[test]
    fn page_checksums_follow_the_pages() {
        let ps = PageSize::new(512).unwrap();
        let lock = ps.lock_pgno();
        let mut db = PageChecksums::new(ps);
        assert_eq!(db.value(), Checksum(0));
        assert!(db.set(1, page_checksum(1, &[1; 512])).is_err());
        db.resize(3);
        // Pages without a checksum count as nothing.
        assert_eq!(db.value(), Checksum(CHECKSUM_FLAG));
        assert_eq!(db.get(2), None);
        for p in 1..=3 {
            db.set(p, page_checksum(p, &[p as u8; 512])).unwrap();
        }
        assert_eq!(db.get(2), Some(page_checksum(2, &[2; 512])));
        let mut want = DbChecksum::new(ps);
        for p in 1..=3 {
            want.add(p, &[p as u8; 512]);
        }
        assert_eq!(db.value(), want.value());
        // Replacing, truncating, growing back, the lock page.
        db.set(2, page_checksum(2, &[9; 512])).unwrap();
        want.replace(2, &[2; 512], &[9; 512]);
        assert_eq!(db.value(), want.value());
        db.resize(1);
        want.remove(2, &[9; 512]);
        want.remove(3, &[3; 512]);
        assert_eq!(db.value(), want.value());
        assert_eq!(db.page_count(), 1);
        assert!(db.set(0, Checksum(CHECKSUM_FLAG)).is_err());
        db.resize(lock);
        let v = db.value();
        db.set(lock, page_checksum(lock, &[7; 512])).unwrap();
        assert_eq!((db.value(), db.get(lock)), (v, None));
        db.clear();
        assert_eq!((db.value(), db.page_count()), (Checksum(0), 0));
    }

    #[test]
    fn rolling_skips_lock_page_and_empty_is_zero() {
        let ps = PageSize::new(512).unwrap();
        let mut c = DbChecksum::new(ps);
        assert_eq!(c.value(), Checksum(0));
        c.add(ps.lock_pgno(), &[9u8; 512]);
        assert_eq!(c.value(), Checksum(0));
        c.add(1, &[1u8; 512]);
        let v = c.value();
        assert!(v.has_flag());
        c.remove(1, &[1u8; 512]);
        assert_eq!(c.value(), Checksum(0));
        assert_eq!(database_checksum(ps, &[1u8; 512]), v);
    }
}
