//! One suite over every backend we claim, each on a real server where it is
//! an object store: a local directory, memory, S3 (moto), Google Cloud
//! Storage (fake-gcs-server) and Azure Blob (Azurite). `.ci/backends.sh
//! start` starts the three servers and prints their environment; a backend
//! whose environment is absent is skipped with a message, unless
//! `LTX_REQUIRE_BACKENDS` (e.g. `s3,gcs,azure`, as CI sets it) names it:
//! then its absence is a failure.
//!
//! Each backend is used in the layout Litestream 0.5.17 writes there:
//! `<db>/ltx/<level>/` for files, GCS and Azure, `<db>/<%04x level>/` for S3.
//! What is proven on each: the lease (one holder; three racing acquirers,
//! exactly one wins; takeover only after expiry; a lost lease stops
//! writes), a compaction pass with outputs over and under the multipart
//! threshold, listing a level with more keys than one listing page, ranged
//! and whole-object reads, the `litestream-timestamp` time written on every
//! output and read back, `ltx restore` by TXID and by time, `ltx verify
//! URL`, `ltx list URL`, and passes and restores through the
//! fault-injecting store wrapped around the backend.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use common::*;
use futures::StreamExt;
use ltx_compactor::catalog::{format_key, Layout};
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::faults::{FaultConfig, FaultStore};
use ltx_compactor::fetch::plan;
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::{check_contiguity, Config};
use ltx_compactor::restore::{plan_restore, Target};
use ltx_compactor::store::Bucket;
use ltx_core::TxId;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::Value;

/// One backend under test: a fresh prefix on it.
struct Backend {
    /// `file`, `memory`, `s3`, `gcs`, `azure`.
    name: &'static str,
    /// The bucket URL (a fresh prefix).
    url: String,
    /// The layout Litestream writes on this backend.
    layout: Layout,
    /// Keys per listing page of the service (0: no pages).
    list_page: usize,
    /// Whether another process can see it (not `memory://`).
    shared: bool,
    _dir: Option<tempfile::TempDir>,
}

impl Backend {
    fn bucket(&self) -> Bucket {
        Bucket::open(&self.url).unwrap()
    }
}

fn required() -> Vec<String> {
    std::env::var("LTX_REQUIRE_BACKENDS")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `Some(bucket)` when the environment names a server for `name`; `None`
/// after saying it is skipped; a failure when it is required.
fn server(name: &str, present: bool, bucket_var: &str) -> Option<String> {
    if !present {
        assert!(
            !required().iter().any(|r| r == name),
            "LTX_REQUIRE_BACKENDS names {name} but its environment is not set \
             (run `eval \"$(.ci/backends.sh start)\"`)"
        );
        eprintln!("{name}: no server in the environment, skipped (CI runs it)");
        return None;
    }
    Some(std::env::var(bucket_var).unwrap_or_else(|_| "ltx-test".into()))
}

fn env(k: &str) -> bool {
    std::env::var_os(k).is_some_and(|v| !v.is_empty())
}

/// Every backend whose environment is present, each with a fresh prefix.
fn backends(tag: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let mut v = vec![
        Backend {
            name: "file",
            url: dir.path().to_str().unwrap().to_string(),
            layout: Layout::LtxDir,
            list_page: 0,
            shared: true,
            _dir: Some(dir),
        },
        Backend {
            name: "memory",
            url: format!("memory://{}/", unique(tag)),
            layout: Layout::LtxDir,
            list_page: 0,
            shared: false,
            _dir: None,
        },
    ];
    let u = unique(tag);
    if let Some(b) = server("s3", env("AWS_ENDPOINT"), "LTX_TEST_S3_BUCKET") {
        v.push(Backend {
            name: "s3",
            url: format!("s3://{b}/{u}"),
            layout: Layout::HexLevel,
            list_page: 1000,
            shared: true,
            _dir: None,
        });
    }
    if let Some(b) = server("gcs", env("GOOGLE_SERVICE_ACCOUNT"), "LTX_TEST_GCS_BUCKET") {
        v.push(Backend {
            name: "gcs",
            url: format!("gs://{b}/{u}"),
            layout: Layout::LtxDir,
            list_page: 1000,
            shared: true,
            _dir: None,
        });
    }
    let azure = env("AZURE_STORAGE_USE_EMULATOR") || env("AZURE_STORAGE_ACCOUNT_NAME");
    if let Some(b) = server("azure", azure, "LTX_TEST_AZURE_BUCKET") {
        v.push(Backend {
            name: "azure",
            url: format!("az://{b}/{u}"),
            layout: Layout::LtxDir,
            list_page: 5000,
            shared: true,
            _dir: None,
        });
    }
    v
}

/// A database key under the bucket's prefix.
fn at(b: &Bucket, db: &str) -> String {
    ltx_compactor::store::join(b.prefix(), db)
}

/// The `ltx` binary of this workspace, built with the profile these tests
/// were built with (once per test process).
fn ltx_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/backends-…
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut c = Command::new(env!("CARGO"));
        c.args(["build", "-q", "-p", "ltx-cli", "--bin", "ltx"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env(
                "CARGO_TARGET_DIR",
                profile_dir.parent().unwrap().as_os_str(),
            );
        if release {
            c.arg("--release");
        }
        let st = c.status().expect("running cargo build for the ltx binary");
        assert!(st.success(), "building the ltx binary failed");
        profile_dir.join("ltx")
    })
}

/// Runs a binary; returns stdout, asserting success.
fn run_ok(mut c: Command) -> String {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ltx(args: &[&str]) -> String {
    let mut c = Command::new(ltx_bin());
    c.args(args);
    run_ok(c)
}

/// The policy for these tests: every file of the workload is old enough to
/// be compacted; nothing is old enough to be deleted.
fn config_json() -> &'static str {
    r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "40s"}],
        "snapshot_interval": "120s", "retention": "24h", "l0_retention": "0s",
        "settle": "1s"}"#
}

/// The policy of the pass test: level 1 every 2 s (small files, single
/// PUTs), a snapshot of everything (large: a multipart upload).
fn pass_config_json() -> &'static str {
    r#"{"levels": [{"level": 1, "interval": "2s"}, {"level": 2, "interval": "20s"}],
        "snapshot_interval": "120s", "retention": "24h", "l0_retention": "0s",
        "settle": "1s"}"#
}

/// A real SQLite workload shipped as L0 files to `db` on `b`, timestamps
/// one per second ending a minute ago. Returns it.
async fn ship(b: &Bucket, db: &str, layout: Layout, dir: &Path, steps: usize) -> Workload {
    let mut w = Workload::with_row(dir, 7, 1200);
    let start = ltx_compactor::store::now_ms() - 60_000 - steps as i64 * 1_000;
    for i in 0..steps {
        let (txid, bytes) = w.step(start + i as i64 * 1_000);
        put_l0(b, db, layout, txid, bytes).await;
    }
    w
}

/// Lease: one holder at a time; three racing acquirers, exactly one wins;
/// takeover only after expiry; the old holder's writes then stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_on_every_backend() {
    for be in backends("lease") {
        let b = be.bucket();
        let n = be.name;
        let a = Lease::acquire(&b, &at(&b, "db1"), "a", 60_000)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{n}: a free lease was not taken"));
        assert!(
            Lease::acquire(&b, &at(&b, "db1"), "b", 60_000)
                .await
                .unwrap()
                .is_none(),
            "{n}: a second holder got a held lease"
        );
        a.check().await.unwrap();
        a.release().await.unwrap();
        assert!(
            Lease::acquire(&b, &at(&b, "db1"), "b", 60_000)
                .await
                .unwrap()
                .is_some(),
            "{n}: a released lease is not free"
        );

        // Three acquirers at once on a free lease: exactly one wins.
        for round in 0..3 {
            let db = at(&b, &format!("race{round}"));
            let (x, y, z) = tokio::join!(
                Lease::acquire(&b, &db, "x", 60_000),
                Lease::acquire(&b, &db, "y", 60_000),
                Lease::acquire(&b, &db, "z", 60_000),
            );
            let won = [x, y, z]
                .into_iter()
                .map(|r| r.unwrap_or_else(|e| panic!("{n}: racing acquire failed: {e:#}")))
                .filter(Option::is_some)
                .count();
            assert_eq!(won, 1, "{n}: round {round}: {won} racing acquirers won");
        }

        if be.name == "file" {
            // A local directory's lease is a kernel lock (flock): it has no
            // expiry, it ends when its holder closes it or dies
            // (tests/lease.rs: local_lock_released_when_dropped).
            continue;
        }
        let a = Lease::acquire(&b, &at(&b, "exp"), "a", 1_500)
            .await
            .unwrap()
            .unwrap();
        assert!(
            Lease::acquire(&b, &at(&b, "exp"), "b", 1_500)
                .await
                .unwrap()
                .is_none(),
            "{n}: taken over before expiry"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1_800)).await;
        let b2 = Lease::acquire(&b, &at(&b, "exp"), "b", 60_000)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{n}: an expired lease was not taken over"));
        // The old holder has lost it: its check fails, so a pass under it
        // writes and deletes nothing.
        let e = a.check().await.expect_err("lost lease still checks");
        assert!(e.is_lease_lost(), "{n}: not a lost lease: {e:#}");
        let c = Compactor::new(
            b.clone(),
            Config::from_json(config_json()).unwrap(),
            PassOptions::default(),
        );
        let tmp = tempfile::tempdir().unwrap();
        ship(&b, &at(&b, "exp"), be.layout, tmp.path(), 5).await;
        let before = list_keys(&b, &at(&b, "exp")).await;
        let r = c
            .pass(&at(&b, "exp"), ltx_compactor::store::now_ms(), &a)
            .await;
        assert!(r.is_err(), "{n}: a pass under a lost lease succeeded");
        assert_eq!(
            list_keys(&b, &at(&b, "exp")).await,
            before,
            "{n}: a pass under a lost lease changed the bucket"
        );
        b2.check().await.unwrap();
        b2.release().await.unwrap();
    }
}

/// Every key under `prefix`, sorted.
async fn list_keys(b: &Bucket, prefix: &str) -> Vec<String> {
    let p = ObjPath::from(prefix);
    let mut keys: Vec<String> = b
        .store()
        .list(Some(&p))
        .map(|m| m.unwrap().location.to_string())
        .collect()
        .await;
    keys.sort();
    keys
}

/// A pass with outputs over and under the multipart threshold, its outputs'
/// times as Litestream reads them, then `ltx verify`, `ltx list` and `ltx
/// restore` (by TXID and by time) of the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_restore_verify_list_on_every_backend() {
    for be in backends("pass") {
        let n = be.name;
        let b = be.bucket();
        let db = at(&b, "app.db");
        let tmp = tempfile::tempdir().unwrap();
        let w = ship(&b, &db, be.layout, tmp.path(), 40).await;
        // The snapshot (the whole database, about 1 MB compressed) is a
        // multipart upload, level-1 files of two transactions single PUTs.
        let limit = 256 * 1024;
        let reports: Vec<Value> = if be.shared {
            let cfg = tmp.path().join("cfg.json");
            std::fs::write(&cfg, pass_config_json()).unwrap();
            let mut c = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"));
            c.args(["run", &format!("{}/app.db", be.url), "--once", "--json"])
                .arg("--config")
                .arg(&cfg)
                .args(["--single-put-limit", &limit.to_string()]);
            let lines: Vec<Value> = run_ok(c)
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            // One report for the database, then the round's (with `round`).
            let (rounds, reports): (Vec<Value>, Vec<Value>) =
                lines.into_iter().partition(|r| r.get("round").is_some());
            assert_eq!((rounds.len(), reports.len()), (1, 1), "{n}: {rounds:?}");
            let round = &rounds[0];
            assert_eq!(round["ok"], true, "{n}: {round}");
            assert_eq!(
                (round["databases"].as_u64(), round["due"].as_u64()),
                (Some(1), Some(1))
            );
            // Every request of the round is the root listing's or the
            // database's (its lease, listing under the lease, reads, writes).
            for k in [
                "list",
                "get",
                "get_range",
                "head",
                "put",
                "multipart_part",
                "copy",
                "delete",
            ] {
                let (all, listing, db) = (
                    &round["requests"][k],
                    &round["listing"][k],
                    &reports[0]["requests"][k],
                );
                assert_eq!(
                    all.as_u64(),
                    Some(listing.as_u64().unwrap() + db.as_u64().unwrap()),
                    "{n}: {k}: {round}"
                );
            }
            assert_eq!(round["listing"]["list"], 1, "{n}: {round}");
            assert_eq!(reports[0]["requests"]["list"], 1, "{n}: {round}");
            reports
        } else {
            let lease = Lease::acquire(&b, &db, "t", 60_000).await.unwrap().unwrap();
            let c = Compactor::new(
                b.clone(),
                Config::from_json(pass_config_json()).unwrap(),
                PassOptions {
                    single_put_limit: limit,
                    ..Default::default()
                },
            );
            let r = c
                .pass(&db, ltx_compactor::store::now_ms(), &lease)
                .await
                .unwrap();
            lease.release().await.unwrap();
            vec![serde_json::to_value(r).unwrap()]
        };
        let written: Vec<&Value> = reports
            .iter()
            .flat_map(|r| r["written"].as_array().into_iter().flatten())
            .collect();
        let over = |w: &&&Value| w["size"].as_u64().unwrap() > limit as u64;
        assert!(
            written.iter().any(|w| over(&w)) && written.iter().any(|w| !over(&w)),
            "{n}: want outputs over and under the threshold: {written:?}"
        );
        for w in &written {
            assert_eq!(w["multipart"], over(&w), "{n}: {w}");
        }
        for r in &reports {
            assert_eq!(
                r["contiguity"].as_array().map(Vec::len),
                Some(0),
                "{n}: {r}"
            );
        }

        // Every output carries its header time the way Litestream reads it.
        let (cat, _) = b.catalog(&db).await.unwrap();
        assert!(
            check_contiguity(&cat).is_empty(),
            "{n}: {:?}",
            check_contiguity(&cat)
        );
        assert!(
            cat.iter().any(|o| o.level > 0),
            "{n}: no level file written"
        );
        for o in cat.iter().filter(|o| o.level > 0) {
            let header = b.read_header(&o.key).await.unwrap();
            assert_eq!(
                litestream_time_of(&b, &o.key).await,
                Some(header.timestamp),
                "{n}: {} carries no or the wrong litestream time",
                o.key
            );
            // Ranged and whole reads agree.
            let whole = b
                .store()
                .get(&ObjPath::from(o.key.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(whole.len() as u64, o.size, "{n}: {}", o.key);
            let mid = o.size / 2;
            let part = b.read_range(&o.key, 7..mid).await.unwrap();
            assert_eq!(
                &part[..],
                &whole[7..mid as usize],
                "{n}: ranged read of {}",
                o.key
            );
        }

        // Restores by TXID and by time, exact.
        // TXIDs the bucket can still reproduce (L0 files are deleted once
        // compacted): the ends of level-1 files, one early, the last.
        let mut ends: Vec<u64> = cat
            .iter()
            .filter(|o| o.level == 1)
            .map(|o| o.max_txid.0)
            .collect();
        ends.sort_unstable();
        assert!(ends.len() >= 2, "{n}: {ends:?}");
        for t in [ends[ends.len() / 3], *ends.last().unwrap()] {
            let (txid, ts, bytes) = &w.states[t as usize - 1];
            let out = tmp.path().join(format!("r{txid}.db"));
            if be.shared {
                let url = format!("{}/app.db", be.url);
                ltx(&[
                    "restore",
                    &url,
                    "-o",
                    out.to_str().unwrap(),
                    "--txid",
                    &txid.to_string(),
                ]);
                assert!(
                    std::fs::read(&out).unwrap() == *bytes,
                    "{n}: restore --txid {txid}"
                );
                let t = chrono::DateTime::from_timestamp_millis(*ts)
                    .unwrap()
                    .to_rfc3339();
                let rep = ltx(&[
                    "restore",
                    &url,
                    "-o",
                    out.to_str().unwrap(),
                    "--force",
                    "--json",
                    "--timestamp",
                    &t,
                ]);
                let rep: Value = serde_json::from_str(&rep).unwrap();
                assert_eq!(
                    rep["txid"]
                        .as_str()
                        .map(|s| u64::from_str_radix(s, 16).unwrap()),
                    Some(*txid),
                    "{n}: {rep}"
                );
                assert!(
                    std::fs::read(&out).unwrap() == *bytes,
                    "{n}: restore --timestamp {t}"
                );
            } else {
                for target in [Target::Txid(TxId(*txid)), Target::Time(*ts)] {
                    let (p, _) = plan(&b, &db, target).await.unwrap();
                    assert_eq!(p.txid, TxId(*txid), "{n}: {target:?}");
                    let (_, got) = restore(&b, &db, &p, &out).await;
                    assert!(got == *bytes, "{n}: restore {target:?}");
                }
            }
        }

        if be.shared {
            let url = format!("{}/app.db", be.url);
            let v: Value = serde_json::from_str(&ltx(&["verify", &url, "--json"])).unwrap();
            assert_eq!(v["summary"]["failed"], 0, "{n}: {v}");
            // A directory is verified as files and chains, a URL as
            // databases (`ltx verify --help`).
            let problems = match v["chain_problems"].as_array() {
                Some(p) => p.len() as u64,
                None => v["summary"]["problems"].as_u64().unwrap(),
            };
            assert_eq!(problems, 0, "{n}: {v}");
            let l: Value = serde_json::from_str(&ltx(&["list", &url, "--json"])).unwrap();
            let files = l
                .as_array()
                .unwrap_or_else(|| l["files"].as_array().unwrap());
            assert_eq!(files.len(), cat.len(), "{n}: {l}");
            // (A local directory is listed as files: their time is the
            // modification time checked above.)
            let stores = be.name != "file";
            for f in files
                .iter()
                .filter(|f| stores && f["level"].as_u64() > Some(0))
            {
                assert_eq!(
                    f["litestream_timestamp"], f["timestamp"],
                    "{n}: ltx list shows no or the wrong litestream_timestamp: {f}"
                );
            }
        }
    }
}

/// A level holding more keys than one listing page of the service is
/// listed whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_longer_than_one_page_on_every_backend() {
    for be in backends("pages") {
        let b = be.bucket();
        let db = at(&b, "many.db");
        let count = be.list_page.max(1000) + 7;
        let store = b.store().clone();
        futures::stream::iter(1..=count as u64)
            .map(|t| {
                let store = store.clone();
                let key = format_key(&db, be.layout, 0, TxId(t), TxId(t));
                async move {
                    store
                        .put(&ObjPath::from(key.as_str()), PutPayload::from_static(b"x"))
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(32)
            .collect::<Vec<_>>()
            .await;
        let (cat, _) = b.catalog(&db).await.unwrap();
        assert_eq!(
            cat.len(),
            count,
            "{}: listed {} of {count}",
            be.name,
            cat.len()
        );
        let mut txids: Vec<u64> = cat.iter().map(|o| o.min_txid.0).collect();
        txids.sort_unstable();
        txids.dedup();
        assert_eq!(txids.len(), count, "{}: duplicates in the listing", be.name);
    }
}

/// Passes and restores through the fault-injecting store wrapped around
/// each backend: every pass and restore succeeds exactly or fails cleanly;
/// the bucket seen without faults is always intact; once faults stop, the
/// next passes converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_around_every_backend() {
    for be in backends("faults") {
        let n = be.name;
        let clean = be.bucket();
        let faulty = Arc::new(FaultStore::new(
            clean.store().clone(),
            FaultConfig {
                seed: 11,
                fail_pct: 4.0,
                permanent_pct: 30.0,
                truncate_pct: 2.0,
                duplicate_pct: 5.0,
                shuffle_listings: true,
                fail_after_write_pct: 3.0,
                ..Default::default()
            },
        ));
        let bucket = clean.wrapped(&format!("faulty+{}", be.url), |_| {
            faulty.clone() as Arc<dyn ObjectStore>
        });
        let db = at(&clean, "app.db");
        let tmp = tempfile::tempdir().unwrap();
        let mut w = Workload::new(tmp.path(), 3);
        let c = Compactor::new(
            bucket.clone(),
            Config::from_json(config_json()).unwrap(),
            PassOptions::default(),
        );
        let out = tmp.path().join("r.db");
        let mut now = ltx_compactor::store::now_ms() - 3_600_000;
        let (mut ok, mut failed) = (0, 0);
        for step in 0..16 {
            for _ in 0..3 {
                now += 4_000;
                let (txid, bytes) = w.step(now);
                put_l0(&clean, &db, be.layout, txid, bytes).await;
            }
            let r = match Lease::acquire(&bucket, &db, "faulty", 60_000).await {
                Ok(Some(lease)) => {
                    let r = c.pass(&db, now + 2_000, &lease).await;
                    let _ = lease.release().await;
                    r.map(|r| assert!(r.contiguity.is_empty(), "{n}: {:?}", r.contiguity))
                        .map_err(|e| format!("{e:#}"))
                }
                Ok(None) => Err("lease busy".to_string()),
                Err(e) => Err(format!("{e:#}")),
            };
            match r {
                Ok(()) => ok += 1,
                Err(_) => failed += 1,
            }
            // Seen without faults, the bucket is intact after every pass.
            let (cat, _) = clean.catalog(&db).await.unwrap();
            assert!(
                check_contiguity(&cat).is_empty(),
                "{n}: {:?}",
                check_contiguity(&cat)
            );
            let last = w.states.last().unwrap().0;
            assert_eq!(
                plan_restore(&cat, Target::Latest).unwrap().txid,
                TxId(last),
                "{n}"
            );
            if step % 4 == 3 {
                restore_latest_exact_or_untouched(&bucket, &db, &w, &out, n).await;
            }
        }
        faulty.set_enabled(false);
        let mut converged = false;
        for _ in 0..5 {
            let lease = Lease::acquire(&bucket, &db, "faulty", 60_000)
                .await
                .unwrap()
                .expect("lease");
            let r = c.pass(&db, now + 2_000, &lease).await.unwrap();
            lease.release().await.unwrap();
            if r.written.iter().all(|w| w.existed) && r.deleted.is_empty() {
                converged = true;
                break;
            }
        }
        assert!(
            converged,
            "{n}: passes did not converge after the faults stopped"
        );
        let s = faulty.stats();
        eprintln!(
            "{n}: faults: {} requests, {} transient, {} permanent, {} truncated; passes ok {ok} failed {failed}",
            s.requests, s.transient, s.permanent, s.truncated
        );
        assert!(s.transient + s.permanent > 0, "{n}: no fault was injected");
    }
}
