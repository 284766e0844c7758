//! Helpers shared by the WAL tests: an in-memory database image that LTX
//! files are applied to with the streaming decoder, and a chain encoder
//! over a WAL and a database file held in memory.
#![allow(dead_code)]

use std::convert::Infallible;

use ltx_core::checksum::database_checksum;
use ltx_core::wal::{self, LtxChain, WalScan};
use ltx_core::{Checksum, Decoded, Decoder, Encoder, Header, PageSize, TxId, CHECKSUM_FLAG};

/// Applies an LTX file to `db` (SPEC section 8) with the streaming
/// decoder, checking the pre- and post-apply checksums when tracked.
pub fn apply(db: &mut Vec<u8>, ltx: &[u8]) -> Header {
    let mut dec = Decoder::new();
    let mut input = ltx;
    let mut header = None;
    loop {
        let (n, ev) = dec.decode(input).expect("decodes");
        input = &input[n..];
        match ev {
            Decoded::Header(h) => {
                if h.is_snapshot() {
                    db.clear();
                } else if !h.no_checksum() {
                    let ps = h.page_size;
                    assert_eq!(
                        database_checksum(ps, db),
                        h.pre_apply_checksum,
                        "pre-apply checksum of TXID {}",
                        h.min_txid
                    );
                }
                header = Some(h);
            }
            Decoded::Page { info, data } => {
                let ps = data.len();
                let off = (info.pgno as usize - 1) * ps;
                if db.len() < off + ps {
                    db.resize(off + ps, 0);
                }
                db[off..off + ps].copy_from_slice(data);
            }
            Decoded::Done(s) => {
                let h = header.expect("header first");
                db.resize(h.commit as usize * h.page_size.bytes(), 0);
                if !h.no_checksum() {
                    let now = database_checksum(h.page_size, db);
                    let post = s.trailer.post_apply_checksum;
                    let ok = now == post || (now.0 == 0 && post.0 == CHECKSUM_FLAG);
                    assert!(ok, "post-apply {post} but the database gives {now}");
                }
                assert!(input.is_empty());
                return h;
            }
            Decoded::NeedMore => panic!("file ends early"),
        }
    }
}

/// A snapshot (TXID 1) of a database image.
pub fn snapshot(ps: PageSize, db: &[u8], checksums: bool) -> Vec<u8> {
    let mut h = Header::new(ps, TxId(1), TxId(1));
    h.commit = (db.len() / ps.bytes()) as u32;
    if !checksums {
        h.flags = ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
    }
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    let lock = ps.lock_pgno();
    for (i, page) in db.chunks(ps.bytes()).enumerate() {
        let pgno = i as u32 + 1;
        if pgno != lock {
            enc.write_page(&mut out, pgno, page).unwrap();
        }
    }
    let post = if !checksums {
        Checksum::ZERO
    } else if db.is_empty() {
        Checksum(CHECKSUM_FLAG)
    } else {
        database_checksum(ps, db)
    };
    enc.finish(&mut out, post).unwrap();
    out
}

pub fn copy_at(src: &[u8], off: u64, buf: &mut [u8]) -> Result<(), Infallible> {
    let off = off as usize;
    if off >= src.len() {
        buf.fill(0);
    } else {
        let n = buf.len().min(src.len() - off);
        buf[..n].copy_from_slice(&src[off..off + n]);
        buf[n..].fill(0);
    }
    Ok(())
}

/// Encodes every committed transaction of `wal` on top of `db` as L0
/// files from TXID 2.
pub fn encode_chain(
    ps: PageSize,
    db: &[u8],
    wal_bytes: &[u8],
    scan: &WalScan,
    checksums: bool,
) -> Vec<Vec<u8>> {
    let sum = checksums.then(|| database_checksum(ps, db));
    let mut chain = LtxChain::new(ps, (db.len() / ps.bytes()) as u32, sum, TxId(2));
    let mut files = Vec::new();
    for (i, txn) in scan.transactions.iter().enumerate() {
        let mut out = Vec::new();
        let done = chain
            .encode(
                txn,
                1_700_000_000_000 + i as i64,
                |off, buf| copy_at(wal_bytes, off, buf),
                |pgno, buf| copy_at(db, u64::from(pgno - 1) * ps.bytes() as u64, buf),
                &mut out,
            )
            .expect("encodes");
        assert_eq!(done.header.wal_offset as u64, txn.offset);
        assert_eq!(done.header.wal_size as u64, txn.size);
        assert_eq!(
            (done.header.wal_salt1, done.header.wal_salt2),
            (txn.salt1, txn.salt2)
        );
        assert_eq!(done.header.commit, txn.commit);
        files.push(out);
    }
    files
}

/// Snapshot of `db` as TXID 1, then the WAL's transactions; applied in
/// order; returns the image.
pub fn replay(ps: PageSize, db: &[u8], wal_bytes: &[u8], checksums: bool) -> Vec<u8> {
    let scan = wal::scan(wal_bytes);
    let mut image = Vec::new();
    apply(&mut image, &snapshot(ps, db, checksums));
    assert_eq!(image, db);
    for f in encode_chain(ps, db, wal_bytes, &scan, checksums) {
        apply(&mut image, &f);
    }
    image
}
