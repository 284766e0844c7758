//! Committed WAL transactions as L0 LTX files, as Litestream writes them.

use std::collections::BTreeMap;
use std::fmt;

use super::reader::Transaction;
use super::WAL_FRAME_HEADER_SIZE;
use crate::checksum::{crc64, DbChecksum, ZerosOperator};
use crate::encoder::Encoder;
use crate::error::{Error, ErrorKind};
use crate::header::{Header, Trailer, HEADER_FLAG_NO_CHECKSUM};
use crate::types::{Checksum, PageSize, Pgno, TxId, CHECKSUM_FLAG};

/// The header fields of the LTX file that only the caller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LtxParams {
    /// The file's TXID (min = max). TXID 1 makes a snapshot: the
    /// transaction must then write every page of the database.
    pub txid: TxId,
    /// Milliseconds since the Unix epoch (the caller's clock).
    pub timestamp: i64,
    /// The database checksum before the transaction, to track checksums
    /// (pre-apply, and post-apply computed from it); `None` writes a
    /// NoChecksum file as Litestream 0.5 does (both zero).
    pub pre_apply: Option<Checksum>,
    /// The database size in pages before the transaction (the previous
    /// transaction's commit, or the database file's size).
    pub db_pages_before: u32,
}

/// Which page bytes [`encode_transaction`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageRef {
    /// The page bytes at this byte offset of the WAL (a frame's page).
    Wal(u64),
    /// Page `pgno` as it was before the transaction (from an earlier
    /// committed frame of the WAL, else the database file; zeros past its
    /// end or when truncated away since: see [`PageAt`]). Asked for only
    /// when tracking checksums, for pages the transaction replaces or
    /// truncates away.
    Before(Pgno),
}

/// What [`encode_transaction`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedTxn {
    /// The header written.
    pub header: Header,
    /// The trailer written.
    pub trailer: Trailer,
    /// Page frames written.
    pub pages: u32,
    /// The database checksum after the transaction when tracking checksums
    /// (0 for an empty database; the next transaction's pre-apply).
    pub db_checksum: Option<Checksum>,
}

/// A failure of [`encode_transaction`]: reading a page (the caller's
/// error) or the LTX rules.
#[derive(Debug)]
pub enum WalLtxError<E> {
    /// The page reader failed.
    Read(E),
    /// The LTX encoder refused (for example a snapshot missing pages, or a
    /// pre-apply checksum an incremental file cannot carry).
    Ltx(Error),
}

impl<E: fmt::Display> fmt::Display for WalLtxError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalLtxError::Read(e) => write!(f, "reading a page: {e}"),
            WalLtxError::Ltx(e) => write!(f, "encoding LTX: {e}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for WalLtxError<E> {}

impl<E> From<Error> for WalLtxError<E> {
    fn from(e: Error) -> Self {
        WalLtxError::Ltx(e)
    }
}

/// Encodes one committed transaction as an L0 LTX file appended to `out`,
/// with Litestream's header fields: `min_txid = max_txid = params.txid`,
/// `commit` = the commit frame's database size, `wal_offset` = the offset
/// of the transaction's first frame, `wal_size` = the bytes of its
/// frames, `wal_salt1/2` = the WAL header's salts.
///
/// Pages: every page the transaction wrote, with its last frame's bytes,
/// except pages above `commit` and the lock page. `read` supplies page
/// bytes ([`PageRef`]) into the buffer it is given (exactly one page).
///
/// Checksums, when `params.pre_apply` is set: the post-apply checksum is
/// the pre-apply one with each written page's old content replaced by the
/// new (pages above `db_pages_before` only added), pages the commit cuts
/// off removed (old content), and pages the database grows by without a
/// frame added as zeros (what applying the file leaves there; SQLite
/// writes every page it adds, so real WALs have no such pages; in constant
/// time, whatever the commit claims). Memory: two page buffers and the
/// output. On error `out` holds part of a file: discard it.
///
/// ```
/// use ltx_core::wal::{self, encode_transaction, ByteOrder, LtxParams, PageRef, WalBuilder};
/// use ltx_core::{checksum::database_checksum, LtxFile, PageSize, TxId};
/// let ps = PageSize::new(512).unwrap();
/// let db = [[1u8; 512], [2u8; 512], [3u8; 512]].concat(); // 3 pages
/// let mut w = Vec::new();
/// let mut b = WalBuilder::new(ps, ByteOrder::Little, 0, 5, 6, &mut w);
/// b.frame(&mut w, 1, 0, &[7u8; 512]);
/// b.frame(&mut w, 1, 2, &[8u8; 512]); // page 1 again, and the database shrinks to 2 pages
/// let txn = &wal::scan(&w).transactions[0];
///
/// let params = LtxParams {
///     txid: TxId(2),
///     timestamp: 0,
///     pre_apply: Some(database_checksum(ps, &db)),
///     db_pages_before: 3,
/// };
/// let mut out = Vec::new();
/// let done = encode_transaction(txn, ps, &params, |r, buf| {
///     let (src, off) = match r {
///         PageRef::Wal(off) => (&w, off as usize),
///         PageRef::Before(p) => (&db, (p as usize - 1) * 512),
///     };
///     buf.copy_from_slice(&src[off..off + buf.len()]);
///     Ok::<(), std::convert::Infallible>(())
/// }, &mut out).unwrap();
///
/// let after = [[8u8; 512], [2u8; 512]].concat();
/// assert_eq!(done.db_checksum, Some(database_checksum(ps, &after)));
/// assert_eq!((done.header.commit, done.header.wal_offset, done.header.wal_size), (2, 32, 2 * 536));
/// assert_eq!(LtxFile::parse(&out).unwrap().verify().unwrap().page_count, 1);
/// ```
///
/// # Errors
/// [`WalLtxError::Read`] from `read`; [`WalLtxError::Ltx`] when the file
/// cannot be encoded (a TXID 1 transaction that does not write every page,
/// an incremental tracking checksums from an empty database, a WAL offset
/// beyond `i64`).
pub fn encode_transaction<E>(
    txn: &Transaction,
    page_size: PageSize,
    params: &LtxParams,
    mut read: impl FnMut(PageRef, &mut [u8]) -> Result<(), E>,
    out: &mut Vec<u8>,
) -> Result<EncodedTxn, WalLtxError<E>> {
    let wal_field = |v: u64, what| {
        i64::try_from(v).map_err(|_| WalLtxError::Ltx(Error::new(ErrorKind::BadWalFields(what))))
    };
    let mut h = Header::new(page_size, params.txid, params.txid);
    h.commit = txn.commit;
    h.timestamp = params.timestamp;
    h.wal_offset = wal_field(txn.offset, "WAL offset beyond i64")?;
    h.wal_size = wal_field(txn.size, "WAL size beyond i64")?;
    h.wal_salt1 = txn.salt1;
    h.wal_salt2 = txn.salt2;
    match params.pre_apply {
        None => h.flags = HEADER_FLAG_NO_CHECKSUM,
        Some(pre) if !h.is_snapshot() => h.pre_apply_checksum = pre,
        Some(_) => {}
    }
    let mut enc = Encoder::new(h, out)?;
    let lock = page_size.lock_pgno();
    let before = params.db_pages_before;
    let commit = txn.commit;
    let mut sum = params
        .pre_apply
        .map(|pre| DbChecksum::from_value(page_size, pre));
    let mut new = vec![0u8; page_size.bytes()];
    let mut old = vec![0u8; page_size.bytes()];
    let mut written = 0u32;
    let mut zeros = None;
    // Pages the database grows by without a frame read as zeros.
    let mut add_holes = |sum: &mut DbChecksum, from: u64, to: u64| {
        add_zero_pages(sum, page_size, from, to, &mut zeros);
    };
    let mut next_hole = u64::from(before) + 1;
    for p in &txn.pages {
        let pgno = p.pgno;
        if pgno > commit || pgno == lock {
            continue;
        }
        read(PageRef::Wal(p.data_offset()), &mut new).map_err(WalLtxError::Read)?;
        enc.write_page(out, pgno, &new)?;
        written += 1;
        if let Some(sum) = sum.as_mut() {
            if pgno <= before {
                read(PageRef::Before(pgno), &mut old).map_err(WalLtxError::Read)?;
                sum.replace(pgno, &old, &new);
            } else {
                add_holes(sum, next_hole, u64::from(pgno));
                next_hole = u64::from(pgno) + 1;
                sum.add(pgno, &new);
            }
        }
    }
    let post = match sum.as_mut() {
        None => None,
        Some(sum) => {
            add_holes(sum, next_hole, u64::from(commit) + 1);
            for p in commit.saturating_add(1)..=before {
                if p == lock {
                    continue;
                }
                read(PageRef::Before(p), &mut old).map_err(WalLtxError::Read)?;
                sum.remove(p, &old);
            }
            Some(if commit == 0 {
                Checksum::ZERO
            } else {
                Checksum(sum.value().0 | CHECKSUM_FLAG)
            })
        }
    };
    let stored = match post {
        None => Checksum::ZERO,
        Some(c) if c.is_zero() => Checksum(CHECKSUM_FLAG),
        Some(c) => c,
    };
    let trailer = enc.finish(out, stored)?;
    Ok(EncodedTxn {
        header: h,
        trailer,
        pages: written,
        db_checksum: post,
    })
}

/// Operators for the checksums of zero pages: "append a page of zeros",
/// the CRC of a page of zeros, the CRC of 4 zero bytes.
type ZeroPage = (ZerosOperator, u64, u64);

/// Adds the checksum of a page of zeros for every page in `from..to`
/// (page numbers from 1), except the lock page, in constant time: however
/// large a commit a WAL claims, this costs nothing.
///
/// `page_checksum(p, zeros) = Z(crc(be32(p))) ^ crc(zeros)` where `Z`
/// appends a page of zero bytes to a CRC and is linear; a CRC over 4 bytes
/// is affine, `crc(be32(p)) = L(p) ^ crc(0000)` with `L` linear. So over a
/// set of pages `S` with XOR `X` (bits 0..62; bit 63 is set at the end):
/// `Z(crc(be32(X)) ^ k) ^ (|S| odd ? Z(k) ^ crc(zeros) : 0)`, `k =
/// crc(0000)`, and the XOR of a run of integers has a closed form.
fn add_zero_pages(
    sum: &mut DbChecksum,
    page_size: PageSize,
    from: u64,
    to: u64,
    ops: &mut Option<ZeroPage>,
) {
    if from >= to {
        return;
    }
    // XOR of 1..=n.
    let upto = |n: u64| match n % 4 {
        0 => n,
        1 => 1,
        2 => n + 1,
        _ => 0,
    };
    let lock = u64::from(page_size.lock_pgno());
    let mut x = upto(to - 1) ^ upto(from - 1);
    let mut count = to - from;
    if (from..to).contains(&lock) {
        x ^= lock;
        count -= 1;
    }
    if count == 0 {
        return;
    }
    let (z, zc, k) = ops.get_or_insert_with(|| {
        let n = page_size.bytes();
        (
            ZerosOperator::new(n as u64),
            crc64(&vec![0u8; n]),
            crc64(&[0u8; 4]),
        )
    });
    let mut acc = z.apply(crc64(&(x as u32).to_be_bytes()) ^ *k);
    if count % 2 == 1 {
        acc ^= z.apply(*k) ^ *zc;
    }
    sum.add_raw(acc, count);
}

/// Where page `pgno` is as of the transactions recorded in a [`WalIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAt {
    /// In the WAL, in the frame at this byte offset.
    Wal(u64),
    /// Nowhere: the page is past the database file's end, or was
    /// truncated away since and not written again: it reads as zeros (as
    /// after applying the LTX files, which truncate and extend).
    Zeros,
    /// In the database file.
    File,
}

/// Where the latest committed version of each page lives: the WAL (what
/// SQLite's wal-index, `-shm`, gives readers) or the database file.
/// Memory: about 16 bytes per distinct page in the WAL.
///
/// ```
/// use ltx_core::wal::{self, ByteOrder, PageAt, WalBuilder, WalIndex};
/// use ltx_core::PageSize;
/// let mut w = Vec::new();
/// let mut b = WalBuilder::new(PageSize::new(512).unwrap(), ByteOrder::Little, 0, 1, 2, &mut w);
/// b.frame(&mut w, 1, 4, &[1u8; 512]);
/// let second = b.frame(&mut w, 2, 4, &[2u8; 512]);
/// let mut idx = WalIndex::with_db_pages(3); // the database file has 3 pages
/// for t in &wal::scan(&w).transactions {
///     idx.apply(t);
/// }
/// assert_eq!(idx.lookup(2), PageAt::Wal(second));
/// assert_eq!(idx.lookup(3), PageAt::File);
/// assert_eq!(idx.lookup(4), PageAt::Zeros);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalIndex {
    pages: BTreeMap<Pgno, u64>,
    /// Pages above this, if not in `pages`, read as zeros: the database
    /// file's size, lowered by every commit that shrank the database.
    cut: Option<u32>,
}

impl WalIndex {
    /// An index over a database file of any size.
    pub fn new() -> WalIndex {
        WalIndex::default()
    }
    /// An index over a database file of `db_pages` pages.
    pub fn with_db_pages(db_pages: u32) -> WalIndex {
        WalIndex {
            pages: BTreeMap::new(),
            cut: Some(db_pages),
        }
    }
    /// Where page `pgno`'s latest committed version is.
    pub fn lookup(&self, pgno: Pgno) -> PageAt {
        match self.pages.get(&pgno) {
            Some(&off) => PageAt::Wal(off),
            None if self.cut.is_some_and(|c| pgno > c) => PageAt::Zeros,
            None => PageAt::File,
        }
    }
    /// Records a committed transaction: its pages, and its commit (pages
    /// above it are gone).
    pub fn apply(&mut self, txn: &Transaction) {
        for p in &txn.pages {
            self.pages.insert(p.pgno, p.offset);
        }
        if let Some(cut) = txn.commit.checked_add(1) {
            drop(self.pages.split_off(&cut));
        }
        self.cut = Some(self.cut.map_or(txn.commit, |c| c.min(txn.commit)));
    }
    /// Starts again over a database file of `db_pages` pages (after a
    /// checkpoint moved the pages into it).
    pub fn reset(&mut self, db_pages: u32) {
        *self = WalIndex::with_db_pages(db_pages);
    }
    /// Number of pages in the WAL.
    pub fn len(&self) -> usize {
        self.pages.len()
    }
    /// Whether no page is in the WAL.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }
}

/// Encodes a WAL's committed transactions one after another as L0 files
/// with consecutive TXIDs, following the database through them: its size,
/// its checksum (when tracking) and a [`WalIndex`] to find each page's
/// content before a transaction (the WAL's latest committed frame, else
/// the database file).
///
/// This is `ltx wal encode DB --wal WAL -o DIR` without the files: scan the
/// WAL ([`super::scan`]), start from the database file's page count and
/// checksum (or `None` for NoChecksum files), and for each transaction call
/// [`LtxChain::encode`] with readers over the WAL and the database file,
/// then write `out` as `format_filename(txid, txid)`.
///
/// The database file must be as it was when the WAL's first transaction
/// began (no checkpoint since). A transaction with other salts than the
/// previous one means SQLite restarted the WAL after a checkpoint: the
/// index starts again, and `read_db` must from then on read the
/// checkpointed database. Pages past the database file's end, or
/// truncated away by a transaction and not written since, read as zeros
/// without asking `read_db` (what applying the LTX files gives).
#[derive(Debug, Clone)]
pub struct LtxChain {
    page_size: PageSize,
    checksum: Option<Checksum>,
    db_pages: u32,
    next_txid: TxId,
    index: WalIndex,
    salts: Option<(u32, u32)>,
}

impl LtxChain {
    /// Starts from a database of `db_pages` pages with checksum `checksum`
    /// (`None`: write NoChecksum files); the first file gets `next_txid`.
    pub fn new(
        page_size: PageSize,
        db_pages: u32,
        checksum: Option<Checksum>,
        next_txid: TxId,
    ) -> LtxChain {
        LtxChain {
            page_size,
            checksum,
            db_pages,
            next_txid,
            index: WalIndex::with_db_pages(db_pages),
            salts: None,
        }
    }

    /// The TXID the next file gets.
    pub fn next_txid(&self) -> TxId {
        self.next_txid
    }
    /// The database size in pages after the transactions so far.
    pub fn db_pages(&self) -> u32 {
        self.db_pages
    }
    /// The database checksum after the transactions so far (`None` for
    /// NoChecksum).
    pub fn checksum(&self) -> Option<Checksum> {
        self.checksum
    }
    /// The index of committed pages so far.
    pub fn index(&self) -> &WalIndex {
        &self.index
    }

    /// Encodes `txn` into `out` (see [`encode_transaction`]) with the next
    /// TXID and `timestamp`; `read_wal(offset, buf)` reads WAL bytes at a
    /// byte offset, `read_db(pgno, buf)` a page of the database file (only
    /// pages within its size at the start). On success the chain moves past `txn`; on failure it
    /// is unchanged.
    ///
    /// # Errors
    /// As [`encode_transaction`].
    pub fn encode<E>(
        &mut self,
        txn: &Transaction,
        timestamp: i64,
        mut read_wal: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
        mut read_db: impl FnMut(Pgno, &mut [u8]) -> Result<(), E>,
        out: &mut Vec<u8>,
    ) -> Result<EncodedTxn, WalLtxError<E>> {
        let restarted = self.salts.is_some_and(|s| s != (txn.salt1, txn.salt2));
        let fresh = WalIndex::with_db_pages(self.db_pages);
        let index = if restarted { &fresh } else { &self.index };
        let params = LtxParams {
            txid: self.next_txid,
            timestamp,
            pre_apply: self.checksum,
            db_pages_before: self.db_pages,
        };
        let done = encode_transaction(
            txn,
            self.page_size,
            &params,
            |r, buf| match r {
                PageRef::Wal(off) => read_wal(off, buf),
                PageRef::Before(p) => match index.lookup(p) {
                    PageAt::Wal(off) => read_wal(off + WAL_FRAME_HEADER_SIZE as u64, buf),
                    PageAt::File => read_db(p, buf),
                    PageAt::Zeros => {
                        buf.fill(0);
                        Ok(())
                    }
                },
            },
            out,
        )?;
        if restarted {
            self.index.reset(self.db_pages);
        }
        self.index.apply(txn);
        self.salts = Some((txn.salt1, txn.salt2));
        self.db_pages = txn.commit;
        self.checksum = done.db_checksum;
        self.next_txid = TxId(self.next_txid.0.saturating_add(1));
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::page_checksum;

    #[test]
    fn zero_pages_in_constant_time_equal_one_by_one() {
        for size in [512u32, 4096, 65536] {
            let ps = PageSize::new(size).unwrap();
            let lock = u64::from(ps.lock_pgno());
            let zeros = vec![0u8; ps.bytes()];
            let mut ops = None;
            for (from, to) in [
                (1, 2),
                (1, 9),
                (3, 4),
                (5, 12),
                (7, 7),
                (lock - 2, lock + 3),
                (lock, lock + 1),
                (lock + 1, lock + 6),
            ] {
                let mut fast = DbChecksum::from_value(ps, Checksum(CHECKSUM_FLAG | 0x1234));
                let mut slow = fast;
                add_zero_pages(&mut fast, ps, from, to, &mut ops);
                for p in from..to {
                    if p != lock {
                        slow.add_checksum(page_checksum(p as Pgno, &zeros));
                    }
                }
                assert_eq!(fast.value(), slow.value(), "{size} {from}..{to}");
            }
        }
    }
}
