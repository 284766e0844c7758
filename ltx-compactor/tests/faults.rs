//! A failing store loses nothing: compaction passes and restores run through
//! a fault-injecting store (transient and permanent errors, truncated
//! bodies, shuffled and duplicated listings, writes that succeed but report
//! failure, delays) while a real SQLite workload keeps adding L0 files.
//! Every pass and restore either succeeds with correct results or stops
//! with an error; after every pass the bucket (seen without faults) is
//! intact; once faults stop, the next passes converge.

mod common;

use std::sync::Arc;

use common::*;
use ltx_compactor::catalog::Layout;
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::faults::{FaultConfig, FaultStore};
use ltx_compactor::fetch::plan;
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::{check_contiguity, Config};
use ltx_compactor::restore::{plan_restore, Target};
use ltx_compactor::store::Bucket;
use ltx_core::TxId;
use object_store::memory::InMemory;
use object_store::ObjectStore;

#[derive(Debug, Default)]
struct Figures {
    passes_ok: usize,
    passes_failed: usize,
    restores_ok: usize,
    restores_failed: usize,
    restores_checked_clean: usize,
    convergence_passes: usize,
}

fn cfg() -> Config {
    Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "20s"},
                      {"level": 3, "interval": "40s"}], "snapshot_interval": "160s",
            "retention": "600s", "l0_retention": "0s", "settle": "1s"}"#,
    )
    .unwrap()
}

/// Checks the bucket through the fault-free store: contiguous levels, the
/// newest transaction restorable, every LTX object readable, and a sample
/// of restores exact.
async fn check_clean(
    clean: &Bucket,
    db: &str,
    w: &Workload,
    out: &std::path::Path,
    f: &mut Figures,
) {
    let (cat, _) = clean.catalog(db).await.unwrap();
    assert!(
        check_contiguity(&cat).is_empty(),
        "{:?}",
        check_contiguity(&cat)
    );
    let last = w.states.last().unwrap().0;
    assert_eq!(plan_restore(&cat, Target::Latest).unwrap().txid, TxId(last));
    for o in &cat {
        clean
            .read_meta(&o.key, o.size)
            .await
            .unwrap_or_else(|e| panic!("{} is not a valid LTX object: {e:#}", o.key));
    }
    for (txid, _, bytes) in w.states.iter().rev().step_by(7).take(2) {
        let Ok((p, _)) = plan(clean, db, Target::Txid(TxId(*txid))).await else {
            continue;
        };
        restore(clean, db, &p, out).await;
        assert!(std::fs::read(out).unwrap() == *bytes, "TXID {txid}");
        f.restores_checked_clean += 1;
    }
}

async fn run_mix(name: &str, fc: FaultConfig) -> Figures {
    let tmp = tempfile::tempdir().unwrap();
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let faulty = Arc::new(FaultStore::new(inner.clone(), fc));
    let clean = Bucket::from_store(inner, "memory://clean", "");
    let bucket = Bucket::from_store(faulty.clone(), &format!("faulty://{name}"), "");
    let db = "t/app.db";
    let mut w = Workload::new(tmp.path(), 5);
    let c = Compactor::new(bucket.clone(), cfg(), PassOptions::default());
    let mut f = Figures::default();
    let out = tmp.path().join("r.db");
    let mut now = 1_800_000_000_000i64;
    for step in 0..60 {
        for _ in 0..2 {
            now += 3_000;
            let (txid, ltx) = w.step(now);
            put_l0(&clean, db, Layout::LtxDir, txid, ltx).await;
        }
        let res = match Lease::acquire(&bucket, db, "faulty", 60_000).await {
            Ok(Some(lease)) => {
                let r = c.pass(db, now + 1_500, &lease).await;
                let _ = lease.release().await;
                r.map(|r| {
                    assert!(r.contiguity.is_empty(), "{:?}", r.contiguity);
                })
                .map_err(anyhow::Error::from)
            }
            Ok(None) => Err(anyhow::anyhow!("lease busy")),
            Err(e) => Err(e.into()),
        };
        match res {
            Ok(()) => f.passes_ok += 1,
            Err(e) => {
                // A clear error, never a panic.
                assert!(!format!("{e:#}").is_empty());
                f.passes_failed += 1;
            }
        }
        check_clean(&clean, db, &w, &out, &mut f).await;
        // A restore through the faulty store: exact, or an error that
        // leaves the previous output untouched.
        if step % 5 == 4 {
            if restore_latest_exact_or_untouched(&bucket, db, &w, &out, name).await {
                f.restores_ok += 1;
            } else {
                f.restores_failed += 1;
            }
        }
    }
    // Faults stop: the next passes converge (a clean pass, then one that
    // has nothing left to write).
    faulty.set_enabled(false);
    let mut converged = false;
    for _ in 0..5 {
        f.convergence_passes += 1;
        let lease = Lease::acquire(&bucket, db, "faulty", 60_000)
            .await
            .unwrap()
            .expect("lease");
        let r = c.pass(db, now + 1_500, &lease).await.unwrap();
        lease.release().await.unwrap();
        if r.written.iter().all(|w| w.existed) && r.deleted.is_empty() {
            converged = true;
            break;
        }
    }
    assert!(
        converged,
        "{name}: passes did not converge after faults stopped"
    );
    check_clean(&clean, db, &w, &out, &mut f).await;
    let s = faulty.stats();
    eprintln!(
        "fault mix {name}: requests {} transient {} permanent {} truncated {} duplicated {} fail_after_write {} | passes ok {} failed {} | restores ok {} refused {} | clean restores checked {} | converged in {} passes",
        s.requests, s.transient, s.permanent, s.truncated, s.duplicated, s.fail_after_write,
        f.passes_ok, f.passes_failed, f.restores_ok, f.restores_failed, f.restores_checked_clean, f.convergence_passes
    );
    f
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_and_permanent_errors() {
    let f = run_mix(
        "errors",
        FaultConfig {
            seed: 1,
            fail_pct: 4.0,
            permanent_pct: 30.0,
            ..Default::default()
        },
    )
    .await;
    assert!(f.passes_failed > 0 && f.passes_ok > 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_bodies() {
    let f = run_mix(
        "truncated",
        FaultConfig {
            seed: 2,
            truncate_pct: 3.0,
            ..Default::default()
        },
    )
    .await;
    assert!(f.passes_failed > 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_shuffled_and_duplicated() {
    let f = run_mix(
        "listings",
        FaultConfig {
            seed: 3,
            shuffle_listings: true,
            duplicate_pct: 20.0,
            ..Default::default()
        },
    )
    .await;
    // Listing order and duplicates must not matter at all.
    assert_eq!(f.passes_failed, 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_that_report_failure() {
    let f = run_mix(
        "after-write",
        FaultConfig {
            seed: 4,
            fail_after_write_pct: 15.0,
            ..Default::default()
        },
    )
    .await;
    assert!(f.passes_failed > 0, "{f:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_at_once() {
    run_mix(
        "all",
        FaultConfig {
            seed: 5,
            fail_pct: 2.0,
            permanent_pct: 20.0,
            truncate_pct: 2.0,
            max_delay_ms: 2,
            shuffle_listings: true,
            duplicate_pct: 10.0,
            fail_after_write_pct: 5.0,
            // Only listings longer than a page (1,000 keys) can fail
            // part-way; tests/fleet.rs has those.
            page_fail_pct: 5.0,
        },
    )
    .await;
}
