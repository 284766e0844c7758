//! End to end: a real SQLite workload writes L0 files into a bucket (the
//! in-memory store, a local directory and, when `AWS_ENDPOINT` is set, the
//! S3-protocol server CI starts); the compactor runs many passes on a
//! simulated clock; restores by TXID and by time reproduce the saved
//! database states byte for byte.

mod common;

use common::*;
use ltx_compactor::catalog::Layout;
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::fetch::plan;
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::{check_contiguity, check_ladder, Config, Shape};
use ltx_compactor::restore::Target;
use ltx_compactor::store::Bucket;
use ltx_core::TxId;
use object_store::ObjectStoreExt;

/// A small ladder so that a test of minutes of simulated time crosses every level.
pub fn small_config() -> Config {
    Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "20s"},
                      {"level": 3, "interval": "40s"}, {"level": 4, "interval": "80s"},
                      {"level": 5, "interval": "160s"}],
            "snapshot_interval": "640s", "retention": "900s", "l0_retention": "0s", "settle": "1s"}"#,
    )
    .unwrap()
}

const T0: i64 = 1_800_000_000_000;

struct Outcome {
    restored_txids: usize,
    restored_times: usize,
    max_files: usize,
}

async fn scenario(
    url: &str,
    layout: Layout,
    transactions: usize,
    every: usize,
    opts: PassOptions,
) -> Outcome {
    scenario_with(small_config(), url, layout, transactions, every, opts).await
}

async fn scenario_with(
    cfg: Config,
    url: &str,
    layout: Layout,
    transactions: usize,
    every: usize,
    opts: PassOptions,
) -> Outcome {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = Bucket::open(url).unwrap();
    let db = ltx_compactor::store::join(bucket.prefix(), "tenant-1/app.db");
    let mut w = Workload::new(tmp.path(), 7);
    let shape_check = match cfg.shape {
        Shape::Cumulative => check_contiguity,
        Shape::Ladder => check_ladder,
    };
    let c = Compactor::new(bucket.clone(), cfg.clone(), opts);
    let lease = Lease::acquire(&bucket, &db, "e2e", 600_000)
        .await
        .unwrap()
        .expect("lease free");
    let mut now = T0;
    let mut passes = 0;
    for i in 0..transactions {
        now += 3_000;
        let (txid, ltx) = w.step(now);
        put_l0(&bucket, &db, layout, txid, ltx).await;
        if i % 3 == 2 {
            let r = c.pass(&db, now + 1_500, &lease).await.unwrap();
            passes += 1;
            assert!(r.contiguity.is_empty(), "pass {passes}: {:?}", r.contiguity);
            assert!(!r.abandoned);
            // The newest transaction stays restorable after every pass.
            let (cat, _) = bucket.catalog(&db).await.unwrap();
            let p = ltx_compactor::plan_restore(&cat, Target::Latest).unwrap();
            assert_eq!(p.txid, TxId(txid), "pass {passes}");
            assert!(shape_check(&cat).is_empty(), "{:?}", shape_check(&cat));
            // Writes land in the database's own layout.
            assert!(cat
                .iter()
                .all(|o| ltx_compactor::catalog::parse_key(&o.key).unwrap().layout == layout));
        }
    }
    // Drain: more passes with no traffic close every window (all within
    // the retention window, so the ladder's files are still there).
    for k in 1..=3 {
        c.pass(&db, now + k * 60_000, &lease).await.unwrap();
    }
    let (cat, _) = bucket.catalog(&db).await.unwrap();
    let mut per_level = [0usize; 10];
    for o in &cat {
        per_level[o.level as usize] += 1;
    }
    eprintln!("{url}: {passes} passes; files per level {per_level:?}");
    assert!(cat.iter().any(|o| o.level == 9), "a snapshot was made");
    assert!(cat.iter().any(|o| (1..=5).contains(&o.level)));
    // Every output carries its header time where Litestream reads an
    // object's time: the file's modification time in a directory, the
    // `litestream-timestamp` metadata on object stores.
    for o in cat.iter().filter(|o| o.level >= 1) {
        let h = bucket.read_header(&o.key).await.unwrap();
        assert_eq!(
            litestream_time_of(&bucket, &o.key).await,
            Some(h.timestamp),
            "{url}: {}",
            o.key
        );
    }

    let out = tmp.path().join("restored.db");
    let mut restored_txids = 0;
    let mut max_files = 0;
    for (txid, _, bytes) in w.states.iter().step_by(every) {
        let Ok((p, _)) = plan(&bucket, &db, Target::Txid(TxId(*txid))).await else {
            continue;
        };
        max_files = max_files.max(p.files.len());
        let rep = restore(&bucket, &db, &p, &out).await.0;
        assert_eq!(rep.txid, TxId(*txid));
        let got = std::fs::read(&out).unwrap();
        assert!(got == *bytes, "TXID {txid}: restored database differs");
        restored_txids += 1;
    }
    // The latest state always.
    let (last_txid, _, last) = w.states.last().unwrap();
    let (p, _) = plan(&bucket, &db, Target::Latest).await.unwrap();
    assert_eq!(p.txid, TxId(*last_txid));
    restore(&bucket, &db, &p, &out).await;
    assert!(std::fs::read(&out).unwrap() == *last);
    // By time: lands on the latest reproducible transaction at or before it.
    let mut restored_times = 0;
    for (txid, ts, _) in w.states.iter().step_by(every * 2) {
        let at = ts + 1_000;
        let (p, _) = match plan(&bucket, &db, Target::Time(at)).await {
            Ok(v) => v,
            Err(_) => continue,
        };
        assert!(
            p.timestamp_ms <= at,
            "restore for {at} landed at {}",
            p.timestamp_ms
        );
        assert!(p.txid.0 <= *txid || w.states[p.txid.0 as usize - 1].1 <= at);
        let rep = restore(&bucket, &db, &p, &out).await.0;
        let (_, ts_got, want) = &w.states[rep.txid.0 as usize - 1];
        assert_eq!(*ts_got, rep.timestamp_ms);
        assert!(
            std::fs::read(&out).unwrap() == *want,
            "time {at}: TXID {}",
            rep.txid
        );
        restored_times += 1;
    }
    lease.release().await.unwrap();
    Outcome {
        restored_txids,
        restored_times,
        max_files,
    }
}

fn check(o: &Outcome, min: usize) {
    assert!(
        o.restored_txids >= min,
        "only {} TXIDs restorable",
        o.restored_txids
    );
    assert!(
        o.restored_times >= min / 2,
        "only {} times restorable",
        o.restored_times
    );
    // Snapshot + one file per level + uncompacted L0 tail.
    assert!(o.max_files <= 12, "a restore needed {} files", o.max_files);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bucket_ltx_layout() {
    let url = format!("memory://{}/replicas", unique("e2e"));
    let o = scenario(&url, Layout::LtxDir, 450, 1, PassOptions::default()).await;
    check(&o, 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bucket_hex_layout_multipart_outputs() {
    // A tiny single-PUT limit sends every output through multipart upload.
    let url = format!("memory://{}/", unique("e2e-hex"));
    let opts = PassOptions {
        single_put_limit: 1,
        part_size: 64 << 10,
        fetch_batch: 16 << 10,
        ..Default::default()
    };
    let o = scenario(&url, Layout::HexLevel, 300, 1, opts).await;
    check(&o, 30);
}

/// The ladder shape through the I/O layer: every level one chain after
/// every pass (`check_ladder`), restores byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ladder_shape_local_directory_and_memory() {
    let cfg = Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "20s"},
                      {"level": 3, "interval": "40s"}],
            "snapshot_interval": "320s", "retention": "900s", "l0_retention": "0s",
            "settle": "1s", "shape": "ladder"}"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let o = scenario_with(
        cfg.clone(),
        &url,
        Layout::LtxDir,
        250,
        1,
        PassOptions::default(),
    )
    .await;
    assert!(
        o.restored_txids >= 25 && o.restored_times >= 10,
        "{}/{}",
        o.restored_txids,
        o.restored_times
    );
    let url = format!("memory://{}/", unique("e2e-ladder"));
    let o = scenario_with(cfg, &url, Layout::HexLevel, 250, 1, PassOptions::default()).await;
    assert!(o.restored_txids >= 25, "{}", o.restored_txids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_directory_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let o = scenario(&url, Layout::LtxDir, 300, 1, PassOptions::default()).await;
    check(&o, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bucket_both_layouts() {
    let Some(url) = s3_test_url("e2e") else {
        return;
    };
    let o = scenario(
        &format!("{url}/ltxdir"),
        Layout::LtxDir,
        240,
        3,
        PassOptions::default(),
    )
    .await;
    check(&o, 8);
    let opts = PassOptions {
        single_put_limit: 1,
        part_size: 5 << 20,
        ..Default::default()
    };
    let o = scenario(&format!("{url}/hex"), Layout::HexLevel, 230, 3, opts).await;
    check(&o, 5);
}

/// Another compactor's level files (Litestream with its own compaction on)
/// make a pass refuse, writing and deleting nothing, until `adopt`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_compactor_is_refused_until_adopted() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = Bucket::open("memory://refuse/root").unwrap();
    let db = "root/app.db".to_string();
    let mut w = Workload::new(tmp.path(), 11);
    let mut c = Compactor::new(bucket.clone(), small_config(), PassOptions::default());
    let lease = Lease::acquire(&bucket, &db, "t", 600_000)
        .await
        .unwrap()
        .unwrap();
    let mut now = T0;
    for _ in 0..30 {
        now += 3_000;
        let (txid, ltx) = w.step(now);
        put_l0(&bucket, &db, Layout::LtxDir, txid, ltx).await;
    }
    let r = c.pass(&db, now + 100_000, &lease).await.unwrap();
    assert!(r.refused.is_none() && !r.written.is_empty(), "{r:?}");
    assert!(bucket
        .store()
        .head(&object_store::path::Path::from(
            "root/app.db/ltx-compactor.json"
        ))
        .await
        .is_ok());
    // Someone else writes a level-2 file (a copy of one of our files under
    // another name stands in for Litestream's output).
    let (cat, _) = bucket.catalog(&db).await.unwrap();
    let ours = cat.iter().find(|o| o.level >= 1 && o.level < 9).unwrap();
    let theirs =
        ltx_compactor::catalog::format_key(&db, Layout::LtxDir, 2, ours.min_txid, ours.max_txid);
    let body = bucket
        .store()
        .get(&ours.key.as_str().into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    bucket
        .store()
        .put(&theirs.as_str().into(), body.into())
        .await
        .unwrap();
    for _ in 0..5 {
        now += 3_000;
        let (txid, ltx) = w.step(now);
        put_l0(&bucket, &db, Layout::LtxDir, txid, ltx).await;
    }
    let before = bucket.catalog(&db).await.unwrap().0;
    let r = c.pass(&db, now + 100_000, &lease).await.unwrap();
    let why = r.refused.clone().expect("refused");
    assert!(why.contains(&theirs) && why.contains("--adopt"), "{why}");
    assert!(r.written.is_empty() && r.deleted.is_empty());
    assert_eq!(bucket.catalog(&db).await.unwrap().0, before);
    // Adopted once: passes run again, and the next one needs no --adopt.
    c.opts.adopt = true;
    let r = c.pass(&db, now + 100_000, &lease).await.unwrap();
    assert!(r.refused.is_none(), "{r:?}");
    c.opts.adopt = false;
    let r = c.pass(&db, now + 200_000, &lease).await.unwrap();
    assert!(r.refused.is_none(), "{r:?}");
    lease.release().await.unwrap();
}
