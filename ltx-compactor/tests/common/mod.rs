//! Test support: a real SQLite workload that emits one L0 LTX file per
//! commit (the page diff against the previous state, as a replicator
//! would), and helpers to open the test buckets. `ltx-cli/tests/restore.rs`
//! includes this file too (`#[path]`), so both crates test on one workload.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use ltx_compactor::catalog::{format_key, Layout};
use ltx_compactor::store::Bucket;
use ltx_core::checksum::database_checksum;
use ltx_core::rng::SplitMix64;
use ltx_core::{Checksum, Encoder, Header, PageSize, TxId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use rusqlite::Connection;

/// A database under a workload, with every committed state kept.
pub struct Workload {
    pub path: PathBuf,
    conn: Connection,
    prev: Vec<u8>,
    pub txid: u64,
    rng: SplitMix64,
    /// Bytes of random payload per inserted row (updates write 3/4 of it).
    row: usize,
    /// (txid, timestamp ms, database bytes) after each commit.
    pub states: Vec<(u64, i64, Vec<u8>)>,
}

pub const PS: u32 = 4096;

impl Workload {
    /// A new database `app.db` in `dir`, rows of 40 random bytes.
    pub fn new(dir: &Path, seed: u64) -> Workload {
        Workload::with_row(dir, seed, 40)
    }

    /// A new database `app.db` in `dir`, rows of `row` random bytes.
    pub fn with_row(dir: &Path, seed: u64, row: usize) -> Workload {
        let path = dir.join("app.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE; PRAGMA auto_vacuum=NONE;
             CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, k INTEGER, v TEXT);
             CREATE INDEX t_k ON t(k);",
        )
        .unwrap();
        Workload {
            path,
            conn,
            prev: Vec::new(),
            txid: 0,
            rng: SplitMix64::new(seed),
            row,
            states: Vec::new(),
        }
    }

    fn rand(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// Runs one transaction; returns its L0 file (TXID, bytes).
    pub fn step(&mut self, ts_ms: i64) -> (u64, Vec<u8>) {
        let r = self.rand() % 100;
        let n = 1 + self.rand() % 40;
        let (row, upd) = (self.row, self.row * 3 / 4);
        let sql = match r {
            // The first transaction is the schema already created plus a row.
            _ if self.txid == 0 => "INSERT INTO t(k, v) VALUES (1, 'first');".to_string(),
            // Mostly appends (hot right-most leaf) and index pages.
            0..=69 => format!(
                "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {n})
                 INSERT INTO t(k, v) SELECT abs(random()) % 100000, hex(randomblob({row})) FROM n; COMMIT;"
            ),
            // Random updates.
            70..=89 => format!(
                "BEGIN; UPDATE t SET v = hex(randomblob({upd})) WHERE id IN
                 (SELECT id FROM t ORDER BY random() LIMIT {n}); COMMIT;"
            ),
            // Deletes.
            90..=97 => format!(
                "BEGIN; DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT {}); COMMIT;",
                n * 3
            ),
            // Shrink the file now and then.
            _ => "VACUUM;".to_string(),
        };
        self.step_sql(&sql, ts_ms)
    }

    /// Runs `sql` as one transaction; returns its L0 file (TXID, bytes).
    pub fn step_sql(&mut self, sql: &str, ts_ms: i64) -> (u64, Vec<u8>) {
        self.conn.execute_batch(sql).unwrap();
        let cur = std::fs::read(&self.path).unwrap();
        self.txid += 1;
        let ltx = encode_diff(&self.prev, &cur, self.txid, ts_ms);
        self.states.push((self.txid, ts_ms, cur.clone()));
        self.prev = cur;
        (self.txid, ltx)
    }
}

/// The LTX file taking `prev` to `cur` as transaction `txid`.
pub fn encode_diff(prev: &[u8], cur: &[u8], txid: u64, ts_ms: i64) -> Vec<u8> {
    let ps = PageSize::new(PS).unwrap();
    let n = (cur.len() / PS as usize) as u32;
    let mut h = Header::new(ps, TxId(txid), TxId(txid));
    h.commit = n;
    h.timestamp = ts_ms;
    if txid > 1 {
        h.pre_apply_checksum = database_checksum(ps, prev);
    }
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    let lock = ps.lock_pgno();
    for pgno in 1..=n {
        if pgno == lock {
            continue;
        }
        let a = (pgno as usize - 1) * PS as usize;
        let page = &cur[a..a + PS as usize];
        if txid == 1 || prev.get(a..a + PS as usize) != Some(page) {
            enc.write_page(&mut out, pgno, page).unwrap();
        }
    }
    let post = database_checksum(ps, cur);
    let post = if post == Checksum(0) {
        Checksum(ltx_core::types::CHECKSUM_FLAG)
    } else {
        post
    };
    enc.finish(&mut out, post).unwrap();
    out
}

/// Uploads an L0 file of `db` in `layout`.
pub async fn put_l0(bucket: &Bucket, db: &str, layout: Layout, txid: u64, bytes: Vec<u8>) {
    let key = format_key(db, layout, 0, TxId(txid), TxId(txid));
    bucket
        .store()
        .put(&ObjPath::from(key.as_str()), PutPayload::from(bytes))
        .await
        .unwrap();
}

/// How [`populate`] compacts: the policy, the policy time before the first
/// commit, and how many passes (a minute apart) drain the levels after the
/// last commit.
pub struct Schedule<'a> {
    pub cfg: &'a ltx_compactor::Config,
    pub start_ms: i64,
    pub drain: i64,
}

/// Commits `transactions` steps of `w` into database `db` of the bucket
/// at `url`, one L0 file every 3 s of policy time after `s.start_ms`, with
/// a compaction pass by `s.cfg` under one lease after every third commit
/// (each pass must find the levels contiguous), then `s.drain` more passes
/// a minute apart. Returns the policy time of the last commit.
pub fn populate(
    url: &str,
    db: &str,
    layout: Layout,
    w: &mut Workload,
    transactions: usize,
    s: &Schedule<'_>,
) -> i64 {
    use ltx_compactor::compact::{Compactor, PassOptions};
    use ltx_compactor::lease::Lease;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bucket = Bucket::open(url).unwrap();
        let db = ltx_compactor::store::join(bucket.prefix(), db);
        let c = Compactor::new(bucket.clone(), s.cfg.clone(), PassOptions::default());
        let lease = Lease::acquire(&bucket, &db, "test", 600_000)
            .await
            .unwrap()
            .expect("lease free");
        let mut now = s.start_ms;
        for i in 0..transactions {
            now += 3_000;
            let (txid, ltx) = w.step(now);
            put_l0(&bucket, &db, layout, txid, ltx).await;
            if i % 3 == 2 {
                let r = c.pass(&db, now + 1_500, &lease).await.unwrap();
                assert!(r.contiguity.is_empty(), "{:?}", r.contiguity);
            }
        }
        for k in 1..=s.drain {
            c.pass(&db, now + k * 60_000, &lease).await.unwrap();
        }
        lease.release().await.unwrap();
        now
    })
}

/// A fresh prefix `s3://BUCKET/TAG-…` on the S3 server of the environment
/// (`AWS_ENDPOINT`; the bucket from `LTX_TEST_S3_BUCKET`, default
/// `ltx-test`). Without a server: `None` after saying the S3 part is
/// skipped, or a failure when CI requires it (`LTX_REQUIRE_S3=1`).
pub fn s3_test_url(tag: &str) -> Option<String> {
    if std::env::var("AWS_ENDPOINT").is_err() {
        assert!(
            !std::env::var("LTX_REQUIRE_S3").is_ok_and(|v| v == "1"),
            "LTX_REQUIRE_S3=1 but AWS_ENDPOINT is not set"
        );
        eprintln!("AWS_ENDPOINT not set: the S3 part of {tag} is skipped (CI runs it)");
        return None;
    }
    let bucket = std::env::var("LTX_TEST_S3_BUCKET").unwrap_or_else(|_| "ltx-test".into());
    Some(format!("s3://{bucket}/{}", unique(tag)))
}

/// A unique name for this test run.
pub fn unique(tag: &str) -> String {
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// Restores `plan` over `out` (replacing it); returns the report and the
/// restored bytes.
pub async fn restore(
    bucket: &Bucket,
    db: &str,
    plan: &ltx_compactor::RestorePlan,
    out: &Path,
) -> (ltx_compactor::fetch::RestoreReport, Vec<u8>) {
    let opts = ltx_compactor::fetch::RestoreOptions {
        force: true,
        ..Default::default()
    };
    let rep = ltx_compactor::fetch::restore_to_file(bucket, db, plan, out, &opts)
        .await
        .unwrap();
    (rep, std::fs::read(out).unwrap())
}

/// An object's time as Litestream 0.5.17 reads it: the modification time of
/// a file in a local directory, the `litestream-timestamp` metadata on an
/// object store (`None` when absent).
pub async fn litestream_time_of(bucket: &Bucket, key: &str) -> Option<i64> {
    if let Some(root) = bucket.local_root() {
        let m = std::fs::metadata(root.join(key))
            .unwrap()
            .modified()
            .unwrap();
        let d = m.duration_since(std::time::UNIX_EPOCH).unwrap();
        return Some(d.as_millis() as i64);
    }
    bucket.read_range_attrs(key, 0..1).await.unwrap().1
}

/// Restores the latest state of `db` over `out` through `bucket` (a
/// faulty store, say): either the restore succeeds and `out` holds exactly
/// the workload's state at the restored TXID (`true`), or it fails and
/// `out` is as it was (`false`).
pub async fn restore_latest_exact_or_untouched(
    bucket: &Bucket,
    db: &str,
    w: &Workload,
    out: &Path,
    what: &str,
) -> bool {
    let before = std::fs::read(out).ok();
    let r = async {
        let (p, _) =
            ltx_compactor::fetch::plan(bucket, db, ltx_compactor::restore::Target::Latest).await?;
        ltx_compactor::fetch::restore_to_file(
            bucket,
            db,
            &p,
            out,
            &ltx_compactor::fetch::RestoreOptions {
                force: true,
                ..Default::default()
            },
        )
        .await
    }
    .await;
    match r {
        Ok(rep) => {
            let want = &w.states[rep.txid.0 as usize - 1].2;
            assert!(std::fs::read(out).unwrap() == *want, "{what}: restore");
            true
        }
        Err(_) => {
            assert_eq!(
                std::fs::read(out).ok(),
                before,
                "{what}: a failed restore changed its output"
            );
            false
        }
    }
}
