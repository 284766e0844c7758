//! Tiny LTX chains, for fleets of many databases (`tests/fleet.rs`,
//! `examples/fleet.rs`): a database of two 512-byte pages whose second
//! page holds the TXID, a snapshot of it after any transaction, and the L0
//! file of each transaction (page 2 changed). Real LTX files (ltx-core's
//! encoder, real checksums): compaction merges them, restore rebuilds
//! [`tiny_db`] exactly. Every database of a fleet can share the same bytes.
#![allow(dead_code)]

use ltx_core::checksum::database_checksum;
use ltx_core::types::CHECKSUM_FLAG;
use ltx_core::{Checksum, Encoder, Header, PageSize, TxId};

/// The page size.
pub const TINY_PS: u32 = 512;

/// The database after transaction `txid`.
pub fn tiny_db(txid: u64) -> Vec<u8> {
    let ps = TINY_PS as usize;
    let mut db = vec![0u8; 2 * ps];
    db[..8].copy_from_slice(b"tinydb\0\0");
    db[ps..ps + 8].copy_from_slice(&txid.to_be_bytes());
    db
}

fn post(db: &[u8]) -> Checksum {
    let c = database_checksum(PageSize::new(TINY_PS).unwrap(), db);
    if c == Checksum(0) {
        Checksum(CHECKSUM_FLAG)
    } else {
        c
    }
}

fn encode(min: u64, max: u64, ts_ms: i64, pages: &[u32]) -> Vec<u8> {
    let ps = PageSize::new(TINY_PS).unwrap();
    let mut h = Header::new(ps, TxId(min), TxId(max));
    h.commit = 2;
    h.timestamp = ts_ms;
    if min > 1 {
        h.pre_apply_checksum = post(&tiny_db(min - 1));
    }
    let db = tiny_db(max);
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    for &pgno in pages {
        let a = (pgno as usize - 1) * TINY_PS as usize;
        enc.write_page(&mut out, pgno, &db[a..a + TINY_PS as usize])
            .unwrap();
    }
    enc.finish(&mut out, post(&db)).unwrap();
    out
}

/// A snapshot (TXIDs 1..=`txid`, both pages) of [`tiny_db`]`(txid)`.
pub fn tiny_snapshot(txid: u64, ts_ms: i64) -> Vec<u8> {
    encode(1, txid, ts_ms, &[1, 2])
}

/// The L0 file of transaction `txid` (> 1): page 2 rewritten.
pub fn tiny_l0(txid: u64, ts_ms: i64) -> Vec<u8> {
    assert!(txid > 1);
    encode(txid, txid, ts_ms, &[2])
}
