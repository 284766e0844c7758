//! Restore benchmark: a large database's snapshot plus many L0 files after it.
//!
//! ```text
//! python3 ../shared/bench/make-db.py /tmp/b/bench.db --mb 256
//! cargo run --release -p ltx-compactor --example restore_bench -- build /tmp/b/bench.db /tmp/b/bucket 1000
//! /usr/bin/time -v cargo run --release -p ltx-compactor --example restore_bench -- restore /tmp/b/bucket /tmp/b/out.db
//! cmp /tmp/b/out.db /tmp/b/bucket.expected.db
//! ```
//!
//! `build` writes the database as a level-9 snapshot (TXID 1), then runs
//! `N` real SQLite transactions on a copy in WAL mode (no checkpoints) and
//! turns each commit's WAL frames into an L0 file (TXID 2..=N+1), with
//! chained database checksums, as Litestream does. The final state is kept
//! beside the bucket as `<bucket>.expected.db`. `restore` restores the
//! latest TXID with the library (what `ltx restore` runs) and prints the time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ltx_compactor::catalog::{format_key, Layout};
use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
use ltx_compactor::restore::Target;
use ltx_compactor::store::Bucket;
use ltx_core::checksum::page_checksum;
use ltx_core::rng::SplitMix64;
use ltx_core::{Checksum, Encoder, Header, PageSize, TxId};

const DB: &str = "bench/app.db";

fn main() {
    let a: Vec<String> = std::env::args().collect();
    match a.get(1).map(String::as_str) {
        Some("build") => build(Path::new(&a[2]), Path::new(&a[3]), a[4].parse().unwrap()),
        Some("restore") => restore(&a[2], Path::new(&a[3])),
        _ => eprintln!("usage: restore_bench build DB BUCKET N | restore BUCKET OUT"),
    }
}

fn write(bucket: &Path, level: u8, min: u64, max: u64, bytes: &[u8]) {
    let p = bucket.join(format_key(DB, Layout::LtxDir, level, TxId(min), TxId(max)));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// Per-page checksums, so each transaction's checksums are incremental.
struct Sums {
    ps: PageSize,
    pages: Vec<u64>,
    acc: u64,
}

impl Sums {
    fn set(&mut self, pgno: u32, data: &[u8]) {
        if pgno == self.ps.lock_pgno() {
            return;
        }
        let i = pgno as usize - 1;
        if self.pages.len() <= i {
            self.pages.resize(i + 1, 0);
        }
        self.acc ^= self.pages[i];
        self.pages[i] = page_checksum(pgno, data).0;
        self.acc ^= self.pages[i];
    }
    fn truncate(&mut self, commit: u32) {
        while self.pages.len() > commit as usize {
            self.acc ^= self.pages.pop().unwrap();
        }
    }
    fn value(&self) -> Checksum {
        Checksum(self.acc | ltx_core::types::CHECKSUM_FLAG)
    }
}

fn build(db: &Path, bucket: &Path, n: u64) {
    let t = Instant::now();
    let data = std::fs::read(db).unwrap();
    let ps = PageSize::new(u32::from(u16::from_be_bytes([data[16], data[17]]))).unwrap();
    let pages = (data.len() / ps.bytes()) as u32;
    let mut sums = Sums {
        ps,
        pages: Vec::new(),
        acc: 0,
    };
    let mut h = Header::new(ps, TxId(1), TxId(1));
    h.commit = pages;
    h.timestamp = 1_800_000_000_000;
    let mut out = Vec::with_capacity(data.len() / 2);
    let mut enc = Encoder::new(h, &mut out).unwrap();
    for pgno in 1..=pages {
        if pgno == ps.lock_pgno() {
            continue;
        }
        let page = &data[(pgno as usize - 1) * ps.bytes()..pgno as usize * ps.bytes()];
        enc.write_page(&mut out, pgno, page).unwrap();
        sums.set(pgno, page);
    }
    enc.finish(&mut out, sums.value()).unwrap();
    write(bucket, 9, 1, 1, &out);
    eprintln!(
        "snapshot: {} pages, {} bytes ({:?})",
        pages,
        out.len(),
        t.elapsed()
    );

    let work = PathBuf::from(format!("{}.work.db", bucket.display()));
    let wal = PathBuf::from(format!("{}-wal", work.display()));
    std::fs::copy(db, &work).unwrap();
    let _ = std::fs::remove_file(&wal);
    let conn = rusqlite::Connection::open(&work).unwrap();
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; PRAGMA synchronous=OFF;",
    )
    .unwrap();
    let mut wal_off = 32u64;
    let mut rng = SplitMix64::new(0x9e3779b97f4a7c15);
    let mut txid = 1u64;
    let mut i = 0u64;
    while txid < n + 1 {
        i += 1;
        let r = rng.next_u64();
        let k = 1 + r % 20;
        let sql = match r % 10 {
            0..=6 => format!(
                "INSERT INTO orders(customer_id, total, status, note, created)
                 SELECT abs(random()) % 1000 + 1, abs(random()) % 10000 / 100.0, 'new', hex(randomblob(30)), {i}
                 FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {k}) SELECT x FROM c)"
            ),
            7..=8 => format!(
                "UPDATE orders SET status = 'paid', total = total + 1 WHERE id IN
                 (SELECT abs(random()) % (SELECT max(id) FROM orders) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {k}) SELECT x FROM c))"
            ),
            _ => format!("DELETE FROM orders WHERE id IN (SELECT abs(random()) % (SELECT max(id) FROM orders) LIMIT {k})"),
        };
        conn.execute_batch(&format!("BEGIN; {sql}; COMMIT;"))
            .unwrap();
        // The transaction's frames: the newest copy of each page; the
        // commit frame gives the database size.
        let w = std::fs::read(&wal).unwrap();
        let mut frames: BTreeMap<u32, &[u8]> = BTreeMap::new();
        let mut commit = 0;
        let fsz = 24 + ps.bytes() as u64;
        while wal_off + fsz <= w.len() as u64 {
            let f = &w[wal_off as usize..(wal_off + fsz) as usize];
            let pgno = u32::from_be_bytes(f[0..4].try_into().unwrap());
            let c = u32::from_be_bytes(f[4..8].try_into().unwrap());
            frames.insert(pgno, &f[24..]);
            wal_off += fsz;
            if c != 0 {
                commit = c;
                break;
            }
        }
        if commit == 0 {
            assert!(
                frames.is_empty(),
                "transaction {i}: frames without a commit frame"
            );
            continue; // changed nothing (a delete that matched no row)
        }
        txid += 1;
        let pre = sums.value();
        sums.truncate(commit);
        for (&pgno, page) in &frames {
            if pgno <= commit {
                sums.set(pgno, page);
            }
        }
        let mut h = Header::new(ps, TxId(txid), TxId(txid));
        h.commit = commit;
        h.timestamp = 1_800_000_000_000 + txid as i64 * 1000;
        h.pre_apply_checksum = pre;
        let mut out = Vec::new();
        let mut enc = Encoder::new(h, &mut out).unwrap();
        for (&pgno, page) in &frames {
            if pgno <= commit && pgno != ps.lock_pgno() {
                enc.write_page(&mut out, pgno, page).unwrap();
            }
        }
        enc.finish(&mut out, sums.value()).unwrap();
        write(bucket, 0, txid, txid, &out);
    }
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
        .unwrap();
    drop(conn);
    std::fs::rename(&work, format!("{}.expected.db", bucket.display())).unwrap();
    let _ = std::fs::remove_file(&wal);
    let _ = std::fs::remove_file(format!("{}-shm", work.display()));
    eprintln!("{n} L0 files written ({:?} in all)", t.elapsed());
}

fn env(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn restore(url: &str, out: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let bucket = Bucket::open(url).unwrap();
        let (p, _) = plan(&bucket, DB, Target::Latest).await.unwrap();
        let planned = t.elapsed();
        let r = restore_to_file(
            &bucket,
            DB,
            &p,
            out,
            &RestoreOptions {
                force: true,
                concurrency: env("LTX_CONCURRENCY", 4) as usize,
                fetch_batch: env("LTX_BATCH", 1 << 20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        println!(
            "restored TXID {} from {} files ({} bytes read of {}) in {:?} (planning {:?})",
            r.txid,
            r.files.len(),
            r.bytes_read,
            r.files_bytes,
            t.elapsed(),
            planned
        );
    });
}
