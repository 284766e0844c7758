//! WAL → LTX throughput, in MB/s of WAL, single thread, on a WAL of 256 MiB
//! built in memory (transactions of 32 frames of 4 KiB pages over a
//! database of 16,384 pages): reading alone (`wal_scan`), and reading plus
//! one L0 LTX file per transaction as Litestream writes them
//! (`wal_to_ltx_nochecksum`) or with the rolling checksum tracked from the
//! replaced pages (`wal_to_ltx_checksum`).

use std::convert::Infallible;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ltx_core::checksum::database_checksum;
use ltx_core::rng::SplitMix64;
use ltx_core::wal::{self, ByteOrder, LtxChain, WalBuilder};
use ltx_core::{PageSize, TxId};

const WAL_BYTES: usize = 256 << 20;
const DB_PAGES: u32 = 16_384;
const TXN_FRAMES: u32 = 32;

/// A page like a half-full b-tree page (compresses about 2-3x).
fn fill(page: &mut [u8], seed: u64) {
    let mut x = SplitMix64::new(seed);
    page[..1800].fill(0);
    page[0] = 13;
    for (j, b) in page.iter_mut().enumerate().skip(1800) {
        *b = if j % 3 == 0 {
            b'a' + (x.next_u64() % 26) as u8
        } else {
            (seed as usize + j / 64) as u8
        };
    }
}

fn build() -> (Vec<u8>, Vec<u8>) {
    let ps = PageSize::new(4096).unwrap();
    let mut db = vec![0u8; DB_PAGES as usize * 4096];
    for (i, p) in db.chunks_mut(4096).enumerate() {
        fill(p, i as u64);
    }
    let mut w = Vec::with_capacity(WAL_BYTES + (1 << 20));
    let mut b = WalBuilder::new(ps, ByteOrder::Little, 0, 0x1234, 0x5678, &mut w);
    let mut page = vec![0u8; 4096];
    let mut x: u64 = 42;
    let mut n = 0u64;
    while w.len() < WAL_BYTES {
        for i in 0..TXN_FRAMES {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pgno = (x >> 33) as u32 % DB_PAGES + 1;
            n += 1;
            fill(&mut page, n);
            let commit = if i + 1 == TXN_FRAMES { DB_PAGES } else { 0 };
            b.frame(&mut w, pgno, commit, &page);
        }
    }
    (db, w)
}

fn copy_at(src: &[u8], off: u64, buf: &mut [u8]) -> Result<(), Infallible> {
    let off = off as usize;
    buf.copy_from_slice(&src[off..off + buf.len()]);
    Ok(())
}

fn to_ltx(db: &[u8], w: &[u8], checksums: bool) -> u64 {
    let ps = PageSize::new(4096).unwrap();
    let scan = wal::scan(w);
    let sum = checksums.then(|| database_checksum(ps, db));
    let mut chain = LtxChain::new(ps, DB_PAGES, sum, TxId(2));
    let mut out = Vec::new();
    let mut bytes = 0;
    for txn in &scan.transactions {
        out.clear();
        chain
            .encode(
                txn,
                0,
                |off, buf| copy_at(w, off, buf),
                |pgno, buf| copy_at(db, u64::from(pgno - 1) * 4096, buf),
                &mut out,
            )
            .unwrap();
        bytes += out.len() as u64;
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let (db, w) = build();
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Bytes(w.len() as u64));
    g.sample_size(10);
    g.bench_function("wal_scan", |b| b.iter(|| wal::scan(&w).end));
    g.bench_function("wal_to_ltx_nochecksum", |b| {
        b.iter(|| to_ltx(&db, &w, false))
    });
    g.bench_function("wal_to_ltx_checksum", |b| b.iter(|| to_ltx(&db, &w, true)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
