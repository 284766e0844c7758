//! Requests, counted by the bucket's counting wrapper: a restore reads a
//! small file with one GET (no header read for a timestamp, no second read
//! for its frames), a large one with its header, its index and a few spans;
//! a time target reads a header only where the listing cannot decide; a
//! compaction reads small inputs with one GET each; the counting wrapper
//! and the fault wrapper compose.

mod common;

use std::sync::Arc;

use common::*;
use ltx_compactor::catalog::{format_key, Layout};
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::counting::RequestCounts;
use ltx_compactor::faults::{FaultConfig, FaultStore};
use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::Config;
use ltx_compactor::reader::ReadOptions;
use ltx_compactor::restore::Target;
use ltx_compactor::store::Bucket;
use ltx_core::checksum::database_checksum;
use ltx_core::{Encoder, Header, PageSize, TxId};
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const DB: &str = "r/app.db";

/// A level-9 snapshot of `db` (every page) as TXIDs 1..=`max`.
fn snapshot(db: &[u8], max: u64, ts_ms: i64) -> Vec<u8> {
    let ps = PageSize::new(PS).unwrap();
    let mut h = Header::new(ps, TxId(1), TxId(max));
    h.commit = (db.len() / PS as usize) as u32;
    h.timestamp = ts_ms;
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    for pgno in 1..=h.commit {
        if pgno == ps.lock_pgno() {
            continue;
        }
        let a = (pgno as usize - 1) * PS as usize;
        enc.write_page(&mut out, pgno, &db[a..a + PS as usize])
            .unwrap();
    }
    enc.finish(&mut out, database_checksum(ps, db)).unwrap();
    out
}

async fn put(bucket: &Bucket, key: &str, bytes: Vec<u8>) {
    bucket
        .store()
        .put(&ObjPath::from(key), PutPayload::from(bytes))
        .await
        .unwrap();
}

/// Restores the latest state; checks the bytes; returns the requests the
/// planning and the restore made.
async fn restore_latest(
    bucket: &Bucket,
    db: &str,
    want: &[u8],
    opts: &RestoreOptions,
) -> (RequestCounts, RequestCounts) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.db");
    let before = bucket.requests();
    let (p, _) = plan(bucket, db, Target::Latest).await.unwrap();
    let planned = bucket.requests().since(&before);
    let rep = restore_to_file(bucket, db, &p, &out, opts).await.unwrap();
    assert!(
        std::fs::read(&out).unwrap() == want,
        "restored bytes differ"
    );
    assert_eq!(rep.requests, bucket.requests());
    (planned, bucket.requests().since(&before))
}

/// `n` small L0 files of a real workload in `bucket`.
async fn small_files(bucket: &Bucket, n: usize, seed: u64) -> Workload {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Workload::new(tmp.path(), seed);
    for i in 0..n {
        let (txid, ltx) = w.step(1_800_000_000_000 + i as i64 * 1000);
        assert!(ltx.len() < 1 << 20);
        put_l0(bucket, db_of(bucket), Layout::HexLevel, txid, ltx).await;
    }
    w
}

fn db_of(bucket: &Bucket) -> &str {
    if bucket.prefix().is_empty() {
        DB
    } else {
        bucket.prefix()
    }
}

async fn check_small_files(bucket: &Bucket) {
    let n = 60;
    let w = small_files(bucket, n, 3).await;
    let db = db_of(bucket).to_string();
    let (planned, all) = restore_latest(
        bucket,
        &db,
        &w.states.last().unwrap().2,
        &RestoreOptions::default(),
    )
    .await;
    // Planning a latest restore lists and reads nothing else: the database
    // prefix, then its level prefix.
    assert_eq!(planned.total(), planned.list, "{planned:?}");
    assert!(planned.list <= 3, "{planned:?}");
    // One whole GET per file, nothing else.
    assert_eq!(all.get, n as u64, "{all:?}");
    assert_eq!((all.get_range, all.head), (0, 0), "{all:?}");
    assert!(all.total() <= n as u64 + 3, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_small_files_costs_one_get_each() {
    check_small_files(&Bucket::open(&format!("memory://{}/{DB}", unique("req"))).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    check_small_files(&Bucket::open(dir.path().to_str().unwrap()).unwrap()).await;
    if let Some(url) = s3_test_url("req-small") {
        check_small_files(&Bucket::open(&url).unwrap()).await;
    }
}

/// A snapshot of several MiB and small files after it.
async fn snapshot_and_tail(bucket: &Bucket, tail: usize) -> Vec<u8> {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Workload::with_row(tmp.path(), 9, 3000);
    for i in 0..12 {
        w.step_sql(
            "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 60)
             INSERT INTO t(k, v) SELECT abs(random()) % 1000, hex(randomblob(3000)) FROM n; COMMIT;",
            1_800_000_000_000 + i,
        );
    }
    let (base, _, db) = w.states.last().unwrap().clone();
    let snap = snapshot(&db, base, 1_800_000_000_100);
    assert!(snap.len() > 4 << 20, "{}", snap.len());
    let key = format_key(db_of(bucket), Layout::HexLevel, 9, TxId(1), TxId(base));
    put(bucket, &key, snap).await;
    for i in 0..tail {
        let (txid, ltx) = w.step(1_800_000_001_000 + i as i64 * 1000);
        put_l0(bucket, db_of(bucket), Layout::HexLevel, txid, ltx).await;
    }
    w.states.last().unwrap().2.clone()
}

async fn check_snapshot(bucket: &Bucket) {
    let tail = 30;
    let want = snapshot_and_tail(bucket, tail).await;
    let db = db_of(bucket).to_string();
    let opts = RestoreOptions::default();
    let (_, all) = restore_latest(bucket, &db, &want, &opts).await;
    let local = bucket.local_root().is_some();
    if local {
        // A directory: one GET opens each file, the snapshot's reads go
        // through that handle.
        assert_eq!((all.get, all.get_range), (tail as u64 + 1, 0), "{all:?}");
    } else {
        // Small files: one GET each. The snapshot: header, suffix (tail
        // and index), and its winning frames as one span per 32 MiB at most.
        assert_eq!(all.get, tail as u64, "{all:?}");
        assert!(all.get_range <= 3, "{all:?}");
    }
    assert_eq!(all.head, 0, "{all:?}");
    // Many small spans and tiny batches: the same bytes.
    let b2 = bucket.with_own_counter();
    let opts = RestoreOptions {
        fetch_batch: 4 << 10,
        read: ReadOptions {
            span_max: 256 << 10,
            span_gap: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, all) = restore_latest(&b2, &db, &want, &opts).await;
    assert!(local || all.get_range > 8, "{all:?}");
    // No memory for bodies: small files are opened with one GET, their
    // winning frames read again by one ranged GET each (at most).
    let b3 = bucket.with_own_counter();
    let opts = RestoreOptions {
        read: ReadOptions {
            hold_budget: 0,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, all) = restore_latest(&b3, &db, &want, &opts).await;
    assert_eq!(all.get, tail as u64 + u64::from(local), "{all:?}");
    assert!(all.get_range <= tail as u64 + 3, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_read_by_header_index_and_spans() {
    check_snapshot(&Bucket::open(&format!("memory://{}/{DB}", unique("req-snap"))).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    check_snapshot(&Bucket::open(dir.path().to_str().unwrap()).unwrap()).await;
    if let Some(url) = s3_test_url("req-snap") {
        check_snapshot(&Bucket::open(&url).unwrap()).await;
    }
}

/// `n` L0 files whose header times are `t0 + i s` (TXID i + 1), each
/// uploaded `upload_ms` later when the bucket keeps modification times (a
/// directory), else whenever the test runs.
async fn timed_files(bucket: &Bucket, n: usize, t0: i64, upload_ms: i64) -> Workload {
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Workload::new(tmp.path(), 21);
    for i in 0..n {
        let ts = t0 + i as i64 * 1000;
        let (txid, ltx) = w.step(ts);
        put_l0(bucket, DB, Layout::LtxDir, txid, ltx).await;
        let key = format_key(DB, Layout::LtxDir, 0, TxId(txid), TxId(txid));
        bucket.stamp(&key, ts + upload_ms).unwrap();
    }
    w
}

async fn restore_at(bucket: &Bucket, w: &Workload, k: usize) -> RequestCounts {
    let (txid, ts, want) = &w.states[k];
    let at = ts + 500;
    let before = bucket.requests();
    let (p, _) = plan(bucket, DB, Target::Time(at)).await.unwrap();
    let planned = bucket.requests().since(&before);
    assert_eq!(p.txid, TxId(*txid), "time {at}");
    assert_eq!((p.timestamp_ms, p.timestamp_exact), (*ts, true));
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("t.db");
    let rep = restore_to_file(bucket, DB, &p, &out, &RestoreOptions::default())
        .await
        .unwrap();
    assert_eq!(rep.timestamp_ms, *ts);
    assert!(std::fs::read(&out).unwrap() == *want);
    planned
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_time_target_reads_headers_only_where_the_listing_cannot_decide() {
    let now = ltx_compactor::store::now_ms();
    let n = 120;
    // Files uploaded 200 ms after their transaction (a directory keeps the
    // modification time): the listing decides all but the file or two
    // around the target.
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::open(dir.path().to_str().unwrap()).unwrap();
    let w = timed_files(&b, n, now - 3_600_000, 200).await;
    for k in [0, 1, 57, n - 2, n - 1] {
        let planned = restore_at(&b, &w, k).await;
        assert!(planned.get_range <= 2, "k={k}: {planned:?}");
        assert_eq!(planned.get, 0);
    }
    // Every object modified long after its transaction (a bucket copied
    // at once): a search over TXIDs, far fewer reads than files.
    let b = Bucket::open(&format!("memory://{}/x", unique("req-time"))).unwrap();
    let w = timed_files(&b, n, now - 3_600_000, 0).await;
    for k in [0, 64, n - 1] {
        let planned = restore_at(&b, &w, k).await;
        assert!(planned.get_range <= 40, "k={k}: {planned:?}");
    }
    // Header times after the objects' modification times (a clock ahead of
    // the store's): the listing cannot bound them; still exact.
    let b = Bucket::open(&format!("memory://{}/x", unique("req-ahead"))).unwrap();
    let w = timed_files(&b, 40, now + 3_600_000, 0).await;
    for k in [0, 17, 39] {
        restore_at(&b, &w, k).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counting_and_faults_compose() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clean = Bucket::from_store(inner.clone(), "memory://clean", "");
    let w = small_files(&clean, 20, 5).await;
    let want = w.states.last().unwrap().2.clone();
    // Faults on, none drawn: the fault store sees exactly what is counted.
    let faulty = Arc::new(FaultStore::new(inner.clone(), FaultConfig::default()));
    let b = Bucket::from_store(faulty.clone(), "faulty://none", "");
    let (_, all) = restore_latest(&b, DB, &want, &RestoreOptions::default()).await;
    assert_eq!(faulty.stats().requests, all.total());
    assert_eq!(all.get, 20);
    // Every request failing: the restore fails, and what was tried is counted.
    let failing = Arc::new(FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 1,
            fail_pct: 100.0,
            ..Default::default()
        },
    ));
    let b = Bucket::from_store(failing.clone(), "faulty://all", "");
    assert!(plan(&b, DB, Target::Latest).await.is_err());
    assert!(b.requests().total() >= 1);
    assert_eq!(failing.stats().transient, b.requests().total());
    // Truncated bodies are caught through the counting wrapper: a restore
    // either fails or is exact.
    let cut = Arc::new(FaultStore::new(
        inner,
        FaultConfig {
            seed: 2,
            truncate_pct: 50.0,
            ..Default::default()
        },
    ));
    let b = Bucket::from_store(cut.clone(), "faulty://cut", "");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("o.db");
    let (p, _) = plan(&b, DB, Target::Latest).await.unwrap();
    let r = restore_to_file(&b, DB, &p, &out, &RestoreOptions::default()).await;
    assert!(cut.stats().truncated > 0);
    match r {
        Ok(_) => assert!(std::fs::read(&out).unwrap() == want),
        Err(e) => {
            assert!(format!("{e:#}").contains("short read"), "{e:#}");
            assert!(!out.exists());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_reads_small_inputs_with_one_get_each() {
    let cfg = Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "10s"}], "snapshot_interval": "1000s",
            "retention": "6000s", "l0_retention": "600s", "settle": "1s"}"#,
    )
    .unwrap();
    let bucket = Bucket::open(&format!("memory://{}/c", unique("req-compact"))).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Workload::new(tmp.path(), 8);
    let mut now = 1_800_000_000_000i64;
    for _ in 0..20 {
        now += 400;
        let (txid, ltx) = w.step(now);
        put_l0(&bucket, "c/app.db", Layout::LtxDir, txid, ltx).await;
    }
    let pass_bucket = bucket.with_own_counter();
    let c = Compactor::new(pass_bucket.clone(), cfg, PassOptions::default());
    let lease = Lease::acquire(&pass_bucket, "c/app.db", "t", 60_000)
        .await
        .unwrap()
        .unwrap();
    let r = c.pass("c/app.db", now + 30_000, &lease).await.unwrap();
    let merged: usize = r
        .written
        .iter()
        .filter(|w| w.kind == ltx_compactor::CompactionKind::Merge)
        .map(|w| w.inputs)
        .sum();
    assert!(merged >= 10, "{:?}", r.written);
    let n = r.requests;
    assert_eq!(n, pass_bucket.requests());
    // GETs: the lease, the owner record, one per merge input (small: the
    // whole object, frames included) and each output's read-back. Ranged
    // GETs: only the headers the policy reads for timestamps, one per file.
    let outputs = r.written.len() as u64;
    assert_eq!(n.get, 2 + merged as u64 + outputs, "{n:?}: {:?}", r.written);
    assert_eq!(n.get_range, r.catalog_files as u64, "{n:?}");
}
