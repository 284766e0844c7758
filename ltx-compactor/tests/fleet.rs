//! A fleet under one root, on the in-memory store, a local directory and
//! S3 (moto, when `AWS_ENDPOINT` is set; required with `LTX_REQUIRE_S3=1`):
//! a round lists the root once and costs requests in proportion to what
//! changed. Counted by the bucket's counting wrapper:
//!
//! - the first round reads every header once and passes over every
//!   database (one listing of each under its lease);
//! - a round with nothing changed makes only the root listing's requests
//!   (`keys / 1000` pages): an idle database costs nothing more;
//! - a round after a few databases got a new L0 file reads only those
//!   files' headers (never a header read before), lists only those
//!   databases again, and stays within `2 × keys / 1000 + changed` list
//!   requests; the compacted databases restore exactly;
//! - the round after that finds every database idle again (what a pass
//!   leaves is what the next listing shows);
//! - both key layouts, nested foreign keys, shards that partition the
//!   root, overlapping compactors that never write an output twice, and a
//!   root listing resumed after a page fails part-way.

mod common;
#[path = "common/tiny.rs"]
mod tiny;

use std::sync::{Arc, Mutex};

use common::{s3_test_url, unique};
use futures::StreamExt;
use ltx_compactor::catalog::{format_key, Layout};
use ltx_compactor::compact::{Compactor, PassOptions, PassReport};
use ltx_compactor::counting::RequestCounts;
use ltx_compactor::daemon::{RoundReport, RunOptions};
use ltx_compactor::faults::{FaultConfig, FaultStore};
use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
use ltx_compactor::fleet::Shard;
use ltx_compactor::policy::Config;
use ltx_compactor::restore::Target;
use ltx_compactor::store::{join, Bucket};
use ltx_core::TxId;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tiny::{tiny_db, tiny_l0, tiny_snapshot};

/// Databases in the fleet.
const N: usize = 200;
/// Each starts as a snapshot of TXIDs 1..=SNAP and L0 files SNAP+1..=LAST.
const SNAP: u64 = 10;
const LAST: u64 = 13;
/// The policy clock (fixed: every window of the files below is closed).
const NOW: i64 = 1_800_000_000_000;
const HOUR: i64 = 3_600_000;
/// The databases that get one more L0 file before the third round.
const TOUCHED: [usize; 3] = [4, 77, 150];

fn db_of(bucket: &Bucket, i: usize) -> String {
    join(bucket.prefix(), &format!("t{i:03}/app.db"))
}

/// Even databases in Litestream's `ltx/<level>/` layout, odd ones in the
/// `%04x` one.
fn layout_of(i: usize) -> Layout {
    if i.is_multiple_of(2) {
        Layout::LtxDir
    } else {
        Layout::HexLevel
    }
}

async fn put(bucket: &Bucket, key: String, body: Vec<u8>) {
    bucket
        .store()
        .put(&ObjPath::from(key.as_str()), PutPayload::from(body))
        .await
        .unwrap();
}

/// Keys that are no LTX file: they stay, and are never read.
fn foreign_keys(bucket: &Bucket) -> Vec<String> {
    vec![
        join(bucket.prefix(), "README.md"),
        format!("{}/notes.txt", db_of(bucket, 0)),
        format!("{}/0001/upload.ltx.tmp", db_of(bucket, 1)),
    ]
}

async fn build(bucket: &Bucket) {
    let snap = tiny_snapshot(SNAP, NOW - 3 * HOUR);
    let mut puts = Vec::new();
    for i in 0..N {
        let (db, layout) = (db_of(bucket, i), layout_of(i));
        puts.push((
            format_key(&db, layout, 9, TxId(1), TxId(SNAP)),
            snap.clone(),
        ));
        for t in SNAP + 1..=LAST {
            let ts = NOW - 2 * HOUR + (t as i64) * 1000;
            puts.push((format_key(&db, layout, 0, TxId(t), TxId(t)), tiny_l0(t, ts)));
        }
    }
    for k in foreign_keys(bucket) {
        puts.push((k, b"not an LTX file".to_vec()));
    }
    futures::stream::iter(puts)
        .for_each_concurrent(32, |(k, b)| put(bucket, k, b))
        .await;
}

/// A compactor and the reports of its rounds.
struct Job {
    c: Compactor,
    opts: RunOptions,
    passes: Arc<Mutex<Vec<PassReport>>>,
}

impl Job {
    fn new(bucket: &Bucket, shard: Option<Shard>, holder: &str) -> Job {
        let passes: Arc<Mutex<Vec<PassReport>>> = Default::default();
        let p = passes.clone();
        let opts = RunOptions {
            once: true,
            concurrency: 8,
            holder: holder.into(),
            now_ms: Some(NOW),
            shard,
            on_pass: Some(Arc::new(move |r: &PassReport| {
                p.lock().unwrap().push(r.clone())
            })),
            ..Default::default()
        };
        let c = Compactor::new(bucket.clone(), Config::default(), PassOptions::default());
        Job { c, opts, passes }
    }

    /// One round: its report and the pass reports it made.
    async fn round(&self) -> (RoundReport, Vec<PassReport>) {
        let r = self.c.round(&self.opts).await;
        let passes = std::mem::take(&mut *self.passes.lock().unwrap());
        assert!(r.ok, "{}: {r:?}\n{passes:#?}", r.url);
        (r, passes)
    }
}

/// Pages of a listing of `keys` keys.
fn pages(keys: u64) -> u64 {
    keys.div_ceil(1000).max(1)
}

fn sum(reports: &[PassReport]) -> RequestCounts {
    let mut t = RequestCounts::default();
    for r in reports {
        let n = r.requests;
        t.list += n.list;
        t.get += n.get;
        t.get_range += n.get_range;
        t.head += n.head;
        t.put += n.put;
        t.multipart_part += n.multipart_part;
        t.copy += n.copy;
        t.delete += n.delete;
    }
    t
}

async fn restores_to(bucket: &Bucket, db: &str, txid: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("r.db");
    let (p, _) = plan(bucket, db, Target::Latest).await.unwrap();
    let opts = RestoreOptions::default();
    let r = restore_to_file(bucket, db, &p, &out, &opts).await.unwrap();
    assert_eq!(r.txid, TxId(txid), "{db}");
    assert!(std::fs::read(&out).unwrap() == tiny_db(txid), "{db}");
}

/// A round that found nothing changed and nothing due: every request is
/// the root listing's, one per page.
fn all_idle(r: &RoundReport, passes: &[PassReport], what: &str) {
    let u = &r.url;
    assert_eq!(
        (r.databases, r.idle, r.changed, r.due),
        (N as u64, N as u64, 0, 0),
        "{u}: {what}: {r:?}"
    );
    assert!(passes.is_empty(), "{u}: {what}: {passes:#?}");
    assert_eq!(
        r.requests, r.listing,
        "{u}: {what}: idle databases made requests"
    );
    assert_eq!(r.listing.total(), r.listing.list, "{u}: {what}");
    assert_eq!(r.listing.list, pages(r.keys), "{u}: {what}: {r:?}");
}

async fn fleet_rounds(bucket: Bucket) {
    let u = bucket.url().to_string();
    build(&bucket).await;
    let job = Job::new(&bucket, None, "fleet");

    // 1. First round: every database is new, every header read once, every
    //    database has L0 files to compact.
    let (r1, passes) = job.round().await;
    assert_eq!(
        (r1.databases, r1.changed, r1.due, r1.idle),
        (N as u64, N as u64, N as u64, 0),
        "{u}: {r1:?}"
    );
    assert_eq!(r1.ltx_files, N as u64 * (1 + LAST - SNAP), "{u}");
    assert!(r1.foreign_keys >= 3, "{u}: {r1:?}");
    assert_eq!(passes.len(), N, "{u}");
    assert_eq!(r1.requests.get_range, r1.ltx_files, "{u}: {r1:?}");
    // The root listing, then one listing per database under its lease.
    assert_eq!(r1.listing.list, pages(r1.keys), "{u}: {r1:?}");
    assert_eq!(r1.requests.list, r1.listing.list + N as u64, "{u}: {r1:?}");
    // Every request is the listing's or a database's.
    let per_db = sum(&passes);
    assert_eq!(r1.requests.since(&r1.listing), per_db, "{u}");
    for p in &passes {
        assert!(!p.written.is_empty(), "{u}: {p:?}");
        let i: usize = p.db[p.db.len() - 10..p.db.len() - 7].parse().unwrap();
        for w in &p.written {
            let layout = ltx_compactor::catalog::parse_key(&w.key).unwrap().layout;
            assert_eq!(layout, layout_of(i), "{u}: {}", w.key);
        }
    }

    // 2. Nothing changed: nothing but the root listing.
    let (r2, passes) = job.round().await;
    all_idle(&r2, &passes, "second round");

    // 3. A few databases get a new transaction.
    for &i in &TOUCHED {
        let key = format_key(
            &db_of(&bucket, i),
            layout_of(i),
            0,
            TxId(LAST + 1),
            TxId(LAST + 1),
        );
        put(&bucket, key, tiny_l0(LAST + 1, NOW - HOUR)).await;
    }
    let (r3, passes) = job.round().await;
    let k = TOUCHED.len() as u64;
    assert_eq!(
        (r3.changed, r3.due, r3.idle),
        (k, k, N as u64 - k),
        "{u}: {r3:?}"
    );
    assert!(
        r3.requests.list as f64 <= 2.0 * r3.keys as f64 / 1000.0 + k as f64,
        "{u}: {r3:?}"
    );
    assert_eq!(r3.requests.list, r3.listing.list + k, "{u}: {r3:?}");
    // Idle databases cost nothing: all but the listing is the changed ones'.
    assert_eq!(r3.requests.since(&r3.listing), sum(&passes), "{u}: {r3:?}");
    let mut dbs: Vec<&str> = passes.iter().map(|p| p.db.as_str()).collect();
    dbs.sort();
    let want: Vec<String> = TOUCHED.iter().map(|&i| db_of(&bucket, i)).collect();
    assert_eq!(dbs, want, "{u}");
    for p in &passes {
        let n = p.requests;
        // One header read (the new file's: the others are remembered), one
        // listing under the lease, a few reads and writes.
        assert_eq!((n.get_range, n.list), (1, 1), "{u}: {}: {n:?}", p.db);
        assert!(n.total() <= 16, "{u}: {}: {n:?}", p.db);
        assert!(
            !p.written.is_empty() && p.contiguity.is_empty(),
            "{u}: {p:?}"
        );
        restores_to(&bucket, &p.db, LAST + 1).await;
    }
    restores_to(&bucket, &db_of(&bucket, 0), LAST).await;
    restores_to(&bucket, &db_of(&bucket, 1), LAST).await;

    // 4. What the passes left is what the listing shows: idle again.
    let (r4, passes) = job.round().await;
    all_idle(&r4, &passes, "round after the changes");

    // Foreign keys were left alone.
    for k in foreign_keys(&bucket) {
        assert!(bucket.size_of(&k).await.unwrap().is_some(), "{u}: {k} gone");
    }
    // A new process knows nothing: every database is "changed" (headers
    // read again), none has anything due, none is leased.
    let fresh = Job::new(&bucket, None, "fresh");
    let (r, passes) = fresh.round().await;
    assert_eq!((r.changed, r.due), (N as u64, 0), "{u}: {r:?}");
    assert_eq!(passes.len(), N);
    assert_eq!(r.requests.list, r.listing.list, "{u}: {r:?}");
    assert_eq!(r.requests.put + r.requests.delete, 0, "{u}: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_round_costs_the_listing_and_what_changed() {
    fleet_rounds(Bucket::open(&format!("memory://{}/fleet", unique("fleet"))).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    fleet_rounds(Bucket::open(dir.path().to_str().unwrap()).unwrap()).await;
    if let Some(url) = s3_test_url("fleet") {
        fleet_rounds(Bucket::open(&url).unwrap()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_partition_the_root() {
    let bucket = Bucket::open(&format!("memory://{}/fleet", unique("shards"))).unwrap();
    build(&bucket).await;
    let n = 4;
    let jobs: Vec<Job> = (0..n)
        .map(|k| {
            Job::new(
                &bucket,
                Some(Shard { index: k, count: n }),
                &format!("w{k}"),
            )
        })
        .collect();
    let mut seen = Vec::new();
    let mut total = 0;
    for j in &jobs {
        let (r, passes) = j.round().await;
        assert_eq!(
            r.shard.as_deref(),
            Some(&*j.opts.shard.unwrap().to_string())
        );
        // Each worker lists the whole root, keeps its shard's files.
        assert_eq!(r.ltx_files + r.other_shard_keys + r.foreign_keys, r.keys);
        assert_eq!(r.databases as usize, passes.len());
        assert!(r.databases > 0 && r.databases < N as u64, "{r:?}");
        total += r.databases;
        seen.extend(passes.into_iter().map(|p| p.db));
    }
    assert_eq!(total, N as u64);
    seen.sort();
    let all: Vec<String> = {
        let mut v: Vec<String> = (0..N).map(|i| db_of(&bucket, i)).collect();
        v.sort();
        v
    };
    assert_eq!(seen, all, "every database in exactly one shard");
    for j in &jobs {
        let (r, passes) = j.round().await;
        assert_eq!((r.idle, r.due, passes.len()), (r.databases, 0, 0), "{r:?}");
    }
}

/// Two compactors over the same databases at once (shards overlapping
/// while N changes, or two workers given the same shard): the leases let
/// one write each database at a time, and the one that comes second lists
/// under the lease and finds nothing left to do: no output is written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_workers_write_each_output_once() {
    let mut urls = vec![format!("memory://{}/fleet", unique("overlap"))];
    urls.extend(s3_test_url("overlap"));
    for url in urls {
        let bucket = Bucket::open(&url).unwrap();
        build(&bucket).await;
        let a = Job::new(&bucket, Some(Shard { index: 0, count: 2 }), "a");
        let b = Job::new(&bucket, None, "b");
        let ((ra, pa), (rb, pb)) = tokio::join!(a.round(), b.round());
        let mut written: Vec<String> = pa
            .iter()
            .chain(&pb)
            .flat_map(|p| {
                p.written
                    .iter()
                    .filter(|w| !w.existed)
                    .map(|w| w.key.clone())
            })
            .collect();
        let n = written.len();
        written.sort();
        written.dedup();
        assert_eq!(written.len(), n, "{url}: an output was written twice");
        assert_eq!(rb.databases, N as u64);
        assert!(ra.databases < N as u64);
        // Whoever did it, everything is compacted: a third worker finds
        // nothing due.
        let c = Job::new(&bucket, None, "c");
        let (r, _) = c.round().await;
        assert_eq!((r.due, r.failed), (0, 0), "{url}: {r:?}");
        for i in [0, 1, N - 1] {
            restores_to(&bucket, &db_of(&bucket, i), LAST).await;
        }
    }
}

/// A root listing whose pages fail part-way is resumed after the last key
/// seen (never from the start, never by a TXID prefix) and sees every key;
/// a listing in no order starts again instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_listing_page_is_resumed_after_the_last_key() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let clean = Bucket::from_store(inner.clone(), "memory://clean", "root");
    let dbs = 1500;
    futures::stream::iter(0..dbs)
        .for_each_concurrent(32, |i| {
            let clean = clean.clone();
            async move {
                let db = format!("root/t{i:04}");
                for (level, min, max) in [(9u8, 1u64, 5u64), (0, 6, 6)] {
                    let layout = layout_of(i);
                    put(
                        &clean,
                        format_key(&db, layout, level, TxId(min), TxId(max)),
                        vec![1],
                    )
                    .await;
                }
            }
        })
        .await;
    let want = clean.scan(None).await.unwrap();
    assert_eq!((want.keys, want.dbs.len()), (3000, dbs));
    // Every page after the first of each listing fails: each resumed
    // listing (after the last key seen) gets one page further.
    let pages_failing = |shuffle| {
        Arc::new(FaultStore::new(
            inner.clone(),
            FaultConfig {
                seed: 3,
                page_fail_pct: 100.0,
                shuffle_listings: shuffle,
                ..Default::default()
            },
        ))
    };
    let faulty = pages_failing(false);
    let b = Bucket::from_store(faulty.clone(), "faulty://pages", "root");
    let got = b.scan(None).await.unwrap();
    assert_eq!(got.keys, want.keys);
    assert_eq!(got.dbs, want.dbs);
    // Three listings of one page each: the first, two resumed.
    assert_eq!(faulty.stats().transient, 2, "{:?}", faulty.stats());
    assert_eq!(b.requests().list, 3, "{:?}", b.requests());
    // The same in no key order (a local directory's listing): a resume
    // could skip keys, so the listing starts again, and gives up after
    // SCAN_RESUMES failures without progress.
    let faulty = pages_failing(true);
    let b = Bucket::from_store(faulty.clone(), "faulty://shuffled", "root");
    let e = b.scan(None).await.unwrap_err();
    assert!(format!("{e:#}").contains("listing"), "{e:#}");
    let n = ltx_compactor::store::SCAN_RESUMES as u64 + 1;
    assert_eq!(faulty.stats().transient, n, "{:?}", faulty.stats());
    assert_eq!(faulty.stats().requests, n, "every attempt a new listing");
    // Every request failing: an error naming the listing, after the
    // resumes.
    let faulty = Arc::new(FaultStore::new(
        inner,
        FaultConfig {
            seed: 1,
            fail_pct: 100.0,
            ..Default::default()
        },
    ));
    let b = Bucket::from_store(faulty, "faulty://all", "root");
    let e = b.scan(None).await.unwrap_err();
    assert!(format!("{e:#}").contains("listing"), "{e:#}");
}
