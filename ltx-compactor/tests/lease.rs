//! Single writer: the per-database lease on the in-memory store, a local
//! directory (flock) and the S3-protocol server; several compactors started
//! together on one bucket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use ltx_compactor::catalog::Layout;
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::{check_contiguity, Config};
use ltx_compactor::restore::Target;
use ltx_compactor::store::Bucket;
use ltx_core::TxId;

/// A database key under the bucket's prefix.
fn at(b: &Bucket, db: &str) -> String {
    ltx_compactor::store::join(b.prefix(), db)
}

fn buckets(tag: &str) -> Vec<(Bucket, Option<tempfile::TempDir>)> {
    let mut v = vec![(
        Bucket::open(&format!("memory://{}/", unique(tag))).unwrap(),
        None,
    )];
    let dir = tempfile::tempdir().unwrap();
    v.push((
        Bucket::open(dir.path().to_str().unwrap()).unwrap(),
        Some(dir),
    ));
    if let Some(u) = s3_test_url(tag) {
        v.push((Bucket::open(&u).unwrap(), None));
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_holder_at_a_time() {
    for (b, _dir) in buckets("lease") {
        let a = Lease::acquire(&b, &at(&b, "db1"), "a", 60_000)
            .await
            .unwrap();
        let a = a.unwrap_or_else(|| panic!("{}: free lease not taken", b.url()));
        assert!(
            Lease::acquire(&b, &at(&b, "db1"), "b", 60_000)
                .await
                .unwrap()
                .is_none(),
            "{}: second holder got the lease",
            b.url()
        );
        // Another database is independent.
        let other = Lease::acquire(&b, &at(&b, "db2"), "b", 60_000)
            .await
            .unwrap();
        assert!(other.is_some());
        a.check().await.unwrap();
        a.release().await.unwrap();
        let b2 = Lease::acquire(&b, &at(&b, "db1"), "b", 60_000)
            .await
            .unwrap();
        assert!(b2.is_some(), "{}: released lease not free", b.url());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_only_after_expiry_and_the_old_holder_stops() {
    for (b, dir) in buckets("expiry") {
        if dir.is_some() {
            // flock: the kernel releases it when the holder dies; tested in
            // local_lock_released_when_dropped.
            continue;
        }
        let a = Lease::acquire(&b, &at(&b, "db"), "a", 1_500)
            .await
            .unwrap()
            .unwrap();
        let g1 = a.generation().await;
        // "Killed": never renewed, never released.
        assert!(Lease::acquire(&b, &at(&b, "db"), "b", 1_500)
            .await
            .unwrap()
            .is_none());
        tokio::time::sleep(Duration::from_millis(1_700)).await;
        let bl = Lease::acquire(&b, &at(&b, "db"), "b", 60_000)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{}: expired lease not taken over", b.url()));
        assert_eq!(bl.generation().await, g1 + 1);
        // The old holder must notice before writing.
        let e = a.check().await.unwrap_err();
        assert!(e.to_string().contains("lost"), "{e}");
        assert!(matches!(e, ltx_compactor::Error::LeaseLost { .. }), "{e:?}");
        bl.check().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_after_takeover_fails() {
    for (b, dir) in buckets("renew") {
        if dir.is_some() {
            continue;
        }
        // TTL 3 s: renewal is due after 1 s, the local deadline is at 2.7 s.
        let a = Lease::acquire(&b, &at(&b, "db"), "a", 3_000)
            .await
            .unwrap()
            .unwrap();
        // Someone overwrites the lease object behind our back (as a
        // compactor with a badly skewed clock could).
        let key =
            object_store::path::Path::from(ltx_compactor::lease::lease_key(&at(&b, "db")).as_str());
        object_store::ObjectStoreExt::put(
            b.store().as_ref(),
            &key,
            object_store::PutPayload::from(
                r#"{"holder":"z","generation":9,"expires_ms":99999999999999}"#
                    .as_bytes()
                    .to_vec(),
            ),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let e = a.check().await.unwrap_err();
        assert!(e.to_string().contains("lost"), "{}: {e}", b.url());
        assert!(e.is_lease_lost(), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_lock_released_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let b = Bucket::open(dir.path().to_str().unwrap()).unwrap();
    let a = Lease::acquire(&b, &at(&b, "x/db"), "a", 1_000)
        .await
        .unwrap()
        .unwrap();
    assert!(Lease::acquire(&b, &at(&b, "x/db"), "b", 1_000)
        .await
        .unwrap()
        .is_none());
    drop(a);
    assert!(Lease::acquire(&b, &at(&b, "x/db"), "b", 1_000)
        .await
        .unwrap()
        .is_some());
}

/// Many racers for one free lease: exactly one wins, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_acquirers_exactly_one_wins() {
    for (b, _dir) in buckets("race") {
        for round in 0..10 {
            let db = at(&b, &format!("db{round}"));
            let tasks: Vec<_> = (0..3)
                .map(|i| {
                    let (b, db) = (b.clone(), db.clone());
                    tokio::spawn(async move {
                        Lease::acquire(&b, &db, &format!("c{i}"), 60_000)
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut held = Vec::new();
            for t in tasks {
                held.push(t.await.unwrap());
            }
            let winners = held.iter().filter(|l| l.is_some()).count();
            assert_eq!(winners, 1, "{} round {round}: {winners} holders", b.url());
        }
    }
}

/// Two and three compactors started together on one bucket, while L0
/// files keep arriving: one pass at a time holds the lease, no output is
/// written twice, every level stays contiguous and restores are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_compactors_never_both_write() {
    for (b, _dir) in buckets("multi") {
        for n in [2usize, 3] {
            let tmp = tempfile::tempdir().unwrap();
            let db = at(&b, &format!("n{n}/app.db"));
            let mut w = Workload::new(tmp.path(), 11 + n as u64);
            let cfg = Config::from_json(
                r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "20s"},
                              {"level": 3, "interval": "40s"}], "snapshot_interval": "160s",
                    "retention": "600s", "l0_retention": "0s", "settle": "1s"}"#,
            )
            .unwrap();
            let written = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
            let mut now = 1_800_000_000_000i64;
            for step in 0..40 {
                for _ in 0..2 {
                    now += 3_000;
                    let (txid, ltx) = w.step(now);
                    put_l0(&b, &db, Layout::LtxDir, txid, ltx).await;
                }
                // n compactors race for this round.
                let tasks: Vec<_> = (0..n)
                    .map(|i| {
                        let (b, db, cfg, written) =
                            (b.clone(), db.clone(), cfg.clone(), written.clone());
                        tokio::spawn(async move {
                            let Some(lease) = Lease::acquire(&b, &db, &format!("c{i}"), 60_000)
                                .await
                                .unwrap()
                            else {
                                return false;
                            };
                            let c = Compactor::new(b.clone(), cfg, PassOptions::default());
                            let r = c.pass(&db, now + 1_500, &lease).await.unwrap();
                            written.lock().unwrap().extend(
                                r.written
                                    .iter()
                                    .filter(|w| !w.existed)
                                    .map(|w| w.key.clone()),
                            );
                            lease.release().await.unwrap();
                            assert!(r.contiguity.is_empty(), "{:?}", r.contiguity);
                            true
                        })
                    })
                    .collect();
                let mut worked = 0;
                for t in tasks {
                    worked += usize::from(t.await.unwrap());
                }
                assert!(worked >= 1, "{} step {step}: nobody compacted", b.url());
            }
            let mut keys = written.lock().unwrap().clone();
            let total = keys.len();
            keys.sort();
            keys.dedup();
            assert_eq!(
                keys.len(),
                total,
                "{}: an output was written twice",
                b.url()
            );
            assert!(total > 10, "{}: only {total} outputs", b.url());
            let (cat, _) = b.catalog(&db).await.unwrap();
            assert!(check_contiguity(&cat).is_empty());
            let out = tmp.path().join("r.db");
            for (txid, _, bytes) in w.states.iter().rev().step_by(5).take(6) {
                let Ok((p, _)) = plan(&b, &db, Target::Txid(TxId(*txid))).await else {
                    continue;
                };
                restore(&b, &db, &p, &out).await;
                assert!(std::fs::read(&out).unwrap() == *bytes, "TXID {txid}");
            }
        }
    }
}

/// Passes and restores can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn futures_are_send(b: Bucket, lease: Lease, p: ltx_compactor::RestorePlan) {
    fn is_send<T: Send>(_: T) {}
    is_send(async move {
        let c = Compactor::new(b.clone(), Config::default(), PassOptions::default());
        let _ = c.pass("db", 0, &lease).await;
        let _ = restore_to_file(
            &b,
            "db",
            &p,
            std::path::Path::new("x"),
            &RestoreOptions::default(),
        )
        .await;
        let _ = plan(&b, "db", Target::Latest).await;
    });
}
