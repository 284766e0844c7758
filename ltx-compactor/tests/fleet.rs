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
use ltx_compactor::fleet::{read_state, Shard};
use ltx_compactor::policy::Config;
use ltx_compactor::restore::Target;
use ltx_compactor::store::{join, Bucket, StateLocation};
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

// ---------------------------------------------------------------------------
// `--state`: what a run knows, kept between runs (each run a new process,
// or a new `Compactor` in this one for `memory://`, which lives only in a
// process).

/// How a run is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Via {
    /// `ltx-compactor run ROOT --once --json …`, a new process.
    Binary,
    /// A new `Compactor` in this process, `Compactor::run` with `once`.
    Library,
}

/// One `--once` run: its round line, its pass lines (JSON, as `--json`
/// prints them), its logs (the binary's stderr) and whether it succeeded.
struct Once {
    round: serde_json::Value,
    passes: Vec<serde_json::Value>,
    stderr: String,
    ok: bool,
}

impl Once {
    fn requests(&self) -> RequestCounts {
        serde_json::from_value(self.round["requests"].clone()).unwrap()
    }
    fn listing(&self) -> RequestCounts {
        serde_json::from_value(self.round["listing"].clone()).unwrap()
    }
    fn n(&self, field: &str) -> u64 {
        self.round[field]
            .as_u64()
            .unwrap_or_else(|| panic!("{field}: {}", self.round))
    }
    fn state(&self) -> &str {
        self.round["state"].as_str().unwrap_or("")
    }
    /// The requests of the passes (every database that was not idle).
    fn pass_requests(&self) -> RequestCounts {
        let mut t = RequestCounts::default();
        for p in &self.passes {
            let n: RequestCounts = serde_json::from_value(p["requests"].clone()).unwrap();
            t = add(t, n);
        }
        t
    }
    fn passed(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .passes
            .iter()
            .map(|p| p["db"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }
}

fn add(a: RequestCounts, b: RequestCounts) -> RequestCounts {
    RequestCounts {
        list: a.list + b.list,
        get: a.get + b.get,
        get_range: a.get_range + b.get_range,
        head: a.head + b.head,
        put: a.put + b.put,
        multipart_part: a.multipart_part + b.multipart_part,
        copy: a.copy + b.copy,
        delete: a.delete + b.delete,
    }
}

/// A `--once` run over `root` at policy time `now`, with `--state state`.
async fn run_once(
    via: Via,
    root: &str,
    state: Option<&str>,
    shard: Option<Shard>,
    now: i64,
) -> Once {
    match via {
        Via::Binary => {
            let mut args = vec![
                "run".to_string(),
                root.to_string(),
                "--once".into(),
                "--json".into(),
                "--now-ms".into(),
                now.to_string(),
                "--concurrency".into(),
                "8".into(),
            ];
            if let Some(s) = state {
                args.extend(["--state".to_string(), s.to_string()]);
            }
            if let Some(s) = shard {
                args.extend(["--shard".to_string(), s.to_string()]);
            }
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
                    .args(&args)
                    .env("RUST_LOG", "warn,ltx_compactor::daemon=info")
                    .env_remove("JOB_COMPLETION_INDEX")
                    .output()
                    .unwrap()
            })
            .await
            .unwrap();
            let stdout = String::from_utf8(out.stdout).unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            let lines: Vec<serde_json::Value> = stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect();
            let (rounds, passes): (Vec<_>, Vec<_>) =
                lines.into_iter().partition(|v| v.get("round").is_some());
            assert_eq!(rounds.len(), 1, "{root}: {stdout}\n{stderr}");
            Once {
                round: rounds.into_iter().next().unwrap(),
                passes,
                stderr,
                ok: out.status.success(),
            }
        }
        Via::Library => {
            let bucket = Bucket::open(root).unwrap();
            let job = Job::new(&bucket, shard, "library");
            let rounds: Arc<Mutex<Vec<RoundReport>>> = Default::default();
            let r2 = rounds.clone();
            let opts = RunOptions {
                state: state.map(|s| StateLocation::open(s).unwrap()),
                now_ms: Some(now),
                on_round: Some(Arc::new(move |r: &RoundReport| {
                    r2.lock().unwrap().push(r.clone())
                })),
                ..job.opts.clone()
            };
            let ok = job.c.run(&opts, std::future::pending()).await;
            let round = rounds.lock().unwrap().pop().unwrap();
            let passes = std::mem::take(&mut *job.passes.lock().unwrap());
            Once {
                round: serde_json::to_value(&round).unwrap(),
                passes: passes
                    .iter()
                    .map(|p| serde_json::to_value(p).unwrap())
                    .collect(),
                stderr: String::new(),
                ok,
            }
        }
    }
}

/// The requests of the state itself in a run (each run is a new process,
/// whose first round reads it): one GET and one PUT on an object store,
/// none for a local file.
fn state_requests(state: &str) -> RequestCounts {
    let object = ["s3://", "memory://", "gs://", "az://"]
        .iter()
        .any(|s| state.starts_with(s));
    RequestCounts {
        get: u64::from(object),
        put: u64::from(object),
        ..Default::default()
    }
}

/// Run 1 is a first round (every header read), run 2 over unchanged
/// databases costs the root listing and the state's own GET and PUT,
/// run 3 after one database got a transaction reads that file's header
/// only and passes that database, run 4 is idle again.
async fn state_keeps_runs_cheap(via: Via, root: &str, state: &str) {
    let bucket = Bucket::open(root).unwrap();
    build(&bucket).await;
    let own = state_requests(state);
    let what = format!("{root} --state {state}");

    let r1 = run_once(via, root, Some(state), None, NOW).await;
    assert!(r1.ok, "{what}: {}\n{}", r1.round, r1.stderr);
    assert_eq!(r1.state(), "none", "{what}: {}", r1.round);
    assert!(r1.round["state_loaded_databases"].is_null(), "{what}");
    assert_eq!(r1.round["state_written"], true, "{what}: {}", r1.stderr);
    assert_eq!(
        (r1.n("changed"), r1.n("due")),
        (N as u64, N as u64),
        "{what}"
    );
    assert_eq!(r1.requests().get_range, r1.n("ltx_files"), "{what}");
    assert_eq!(
        r1.requests(),
        add(add(r1.listing(), r1.pass_requests()), own),
        "{what}: the state's requests are the round's"
    );
    if via == Via::Binary {
        assert!(r1.stderr.contains("no state yet"), "{what}: {}", r1.stderr);
    }

    // Nothing changed: the root listing and the state, nothing else.
    let r2 = run_once(via, root, Some(state), None, NOW).await;
    assert!(r2.ok, "{what}: {}", r2.stderr);
    assert_eq!(r2.state(), format!("loaded {N} databases"), "{what}");
    assert_eq!(r2.n("state_loaded_databases"), N as u64, "{what}");
    assert_eq!(
        (r2.n("idle"), r2.n("changed"), r2.n("due")),
        (N as u64, 0, 0),
        "{what}: {}",
        r2.round
    );
    assert!(r2.passes.is_empty(), "{what}: {:?}", r2.passes);
    let pages = pages(r2.n("keys"));
    assert_eq!(
        r2.requests(),
        RequestCounts { list: pages, ..own },
        "{what}: {}",
        r2.round
    );
    assert_eq!(r2.round["state_written"], true, "{what}");

    // One database gets a transaction: its new file's header is read, it
    // is passed over; nothing else.
    let i = TOUCHED[1];
    let db = db_of(&bucket, i);
    let key = format_key(&db, layout_of(i), 0, TxId(LAST + 1), TxId(LAST + 1));
    put(&bucket, key, tiny_l0(LAST + 1, NOW - HOUR)).await;
    let r3 = run_once(via, root, Some(state), None, NOW).await;
    assert!(r3.ok, "{what}: {}", r3.stderr);
    assert_eq!(
        (r3.n("idle"), r3.n("changed"), r3.n("due")),
        (N as u64 - 1, 1, 1),
        "{what}: {}",
        r3.round
    );
    assert_eq!(r3.passed(), vec![db.clone()], "{what}");
    let p = r3.pass_requests();
    // The new file's header (the others are in the state), the listing
    // under the lease.
    assert_eq!((p.get_range, p.list), (1, 1), "{what}: {p:?}");
    assert_eq!(
        r3.requests(),
        add(add(r3.listing(), p), own),
        "{what}: {}",
        r3.round
    );
    restores_to(&bucket, &db, LAST + 1).await;

    // What the pass left is in the state: idle again.
    let r4 = run_once(via, root, Some(state), None, NOW).await;
    assert_eq!(
        (r4.n("idle"), r4.n("changed"), r4.n("due")),
        (N as u64, 0, 0),
        "{what}: {}",
        r4.round
    );
    assert_eq!(r4.requests().since(&own), r4.listing(), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_makes_the_next_run_cost_what_changed() {
    // memory:// lives in this process: runs are new compactors.
    let name = unique("state-mem");
    state_keeps_runs_cheap(
        Via::Library,
        &format!("memory://{name}/fleet"),
        &format!("memory://{name}/states/shard.json"),
    )
    .await;
    // A directory, runs of the binary, the state in a local file and at a
    // file:// URL.
    for url_form in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let path = dir.path().join("state.json");
        let state = if url_form {
            format!("file://{}", path.display())
        } else {
            path.display().to_string()
        };
        state_keeps_runs_cheap(Via::Binary, root.to_str().unwrap(), &state).await;
        // Written atomically: the state and nothing else beside it.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let mut names = names;
        names.sort();
        assert_eq!(names, vec!["root", "state.json"]);
        let st = read_state(
            &std::fs::read(&path).unwrap(),
            &format!("file://{}", root.canonicalize().unwrap().display()),
            None,
        )
        .unwrap();
        assert_eq!(st.dbs.len(), N);
    }
    if let Some(url) = s3_test_url("state") {
        let state = format!("{}-states/shard-0.json", url);
        state_keeps_runs_cheap(Via::Binary, &url, &state).await;
    }
}

/// A state that cannot be used: a warning naming the location and why, a
/// first round (every header read), exit 0, and a good state written.
/// `only`: the cases to try (all when empty).
async fn bad_state_is_ignored(
    root: &str,
    state: &str,
    only: &[&str],
    write: impl AsyncFn(&[u8]),
    read: impl AsyncFn() -> Vec<u8>,
) {
    let bucket = Bucket::open(root).unwrap();
    build(&bucket).await;
    let r = run_once(Via::Binary, root, Some(state), None, NOW).await;
    assert!(r.ok, "{root}: {}", r.stderr);
    let good = read().await;
    let text = String::from_utf8(good.clone()).unwrap();
    let root_id = serde_json::from_slice::<serde_json::Value>(&good).unwrap()["root"]
        .as_str()
        .unwrap()
        .to_string();
    let edit = |from: &str, to: &str| {
        assert!(text.contains(from), "{from} not in the state");
        text.replacen(from, to, 1).into_bytes()
    };
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("corrupt", b"\x00\x01 not json".to_vec(), "not valid JSON"),
        ("truncated", good[..good.len() / 2].to_vec(), "truncated"),
        ("empty", Vec::new(), "truncated"),
        (
            "other root",
            edit(
                &format!("\"root\":{}", serde_json::to_string(&root_id).unwrap()),
                "\"root\":\"s3://elsewhere/replicas\"",
            ),
            "written for root \"s3://elsewhere/replicas\"",
        ),
        (
            "other shard",
            edit("\"shard\":null", "\"shard\":\"1/4\""),
            "written for shard 1/4",
        ),
        (
            "future version",
            edit("\"version\":1,", "\"version\":7,"),
            "format version 7",
        ),
        ("impossible file", edit("[9,", "[12,"), "level 12"),
    ];
    for (case, bytes, why) in cases {
        if !only.is_empty() && !only.contains(&case) {
            continue;
        }
        write(&bytes).await;
        let r = run_once(Via::Binary, root, Some(state), None, NOW).await;
        let what = format!("{root} --state {state}: {case}");
        assert!(r.ok, "{what}: {}\n{}", r.round, r.stderr);
        let warning = r
            .stderr
            .lines()
            .find(|l| l.contains("WARN") && l.contains("ignoring the state"))
            .unwrap_or_else(|| panic!("{what}: no warning in {}", r.stderr));
        assert!(
            warning.contains(state) && warning.contains(why),
            "{what}: {warning}"
        );
        assert!(r.state().starts_with("ignored: "), "{what}: {}", r.round);
        assert!(r.state().contains(why), "{what}: {}", r.round);
        assert!(r.round["state_loaded_databases"].is_null(), "{what}");
        // A first round: every header read (nothing left to compact).
        assert_eq!(
            (r.n("changed"), r.n("due")),
            (N as u64, 0),
            "{what}: {}",
            r.round
        );
        assert_eq!(r.requests().get_range, r.n("ltx_files"), "{what}");
        // … and a good state written.
        assert_eq!(r.round["state_written"], true, "{what}");
        let st = read_state(&read().await, &root_id, None).unwrap();
        assert_eq!(st.dbs.len(), N, "{what}");
    }
    // The last state written is used.
    let r = run_once(Via::Binary, root, Some(state), None, NOW).await;
    assert_eq!(r.n("idle"), N as u64, "{root}: {}", r.round);
    // Another shard's run ignores it too (it is no state of its shard),
    // and its own is used by the next run of that shard.
    let shard = Some(Shard { index: 1, count: 4 });
    let r = run_once(Via::Binary, root, Some(state), shard, NOW).await;
    assert!(
        r.state().contains("written for every database"),
        "{}",
        r.round
    );
    let r = run_once(Via::Binary, root, Some(state), shard, NOW).await;
    assert_eq!(
        r.round["state_loaded_databases"].as_u64(),
        Some(r.n("databases")),
        "{}",
        r.round
    );
    assert_eq!(r.n("idle"), r.n("databases"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_state_is_a_warning_and_a_first_round() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let path = dir.path().join("state.json");
    bad_state_is_ignored(
        root.to_str().unwrap(),
        path.to_str().unwrap(),
        &[],
        async |b: &[u8]| std::fs::write(&path, b).unwrap(),
        async || std::fs::read(&path).unwrap(),
    )
    .await;
    if let Some(url) = s3_test_url("state-bad") {
        let state = format!("{url}-states/state.json");
        let StateLocation::Object { bucket: sb, key } = StateLocation::open(&state).unwrap() else {
            panic!("{state}: not an object");
        };
        let key = ObjPath::from(key.as_str());
        // (A few cases: each is a first round over moto.)
        bad_state_is_ignored(
            &url,
            &state,
            &["truncated", "other root", "future version"],
            async |b: &[u8]| {
                sb.store()
                    .put(&key, PutPayload::from(b.to_vec()))
                    .await
                    .unwrap();
            },
            async || {
                sb.store()
                    .get(&key)
                    .await
                    .unwrap()
                    .bytes()
                    .await
                    .unwrap()
                    .to_vec()
            },
        )
        .await;
    }
}

/// A state that cannot be written (its directory does not exist) is a
/// warning: the round passes, exit 0. A state larger than the limit is
/// refused before its body is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_state_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let bucket = Bucket::open(root.to_str().unwrap()).unwrap();
    build(&bucket).await;
    let state = dir.path().join("no-such-dir/state.json");
    let state = state.to_str().unwrap();
    let r = run_once(Via::Binary, root.to_str().unwrap(), Some(state), None, NOW).await;
    assert!(r.ok, "{}\n{}", r.round, r.stderr);
    assert_eq!((r.n("due"), r.n("failed")), (N as u64, 0), "{}", r.round);
    assert_eq!(r.round["ok"], true);
    assert_eq!(r.round["state_written"], false, "{}", r.round);
    let warning = r
        .stderr
        .lines()
        .find(|l| l.contains("WARN") && l.contains("the state was not written"))
        .unwrap_or_else(|| panic!("no warning in {}", r.stderr));
    assert!(warning.contains(state), "{warning}");
    assert!(!dir.path().join("no-such-dir").exists());
    // Nothing was left behind in the root either.
    assert!(!std::fs::read_dir(&root).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .ends_with(".tmp")));

    // A bucket, not an object; an unknown scheme: refused at the start.
    for bad in ["memory://x", "ftp://host/state.json"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
            .args(["run", root.to_str().unwrap(), "--once", "--state", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad}");
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains(bad), "{bad}: {e}");
    }

    // Reads are bounded: a state above the limit is refused by its size,
    // locally and on a store (before its body is read).
    let counter = bucket.counter();
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; 1000]).unwrap();
    let local = StateLocation::open(big.to_str().unwrap()).unwrap();
    let e = local.read(&counter, 999).await.unwrap_err().to_string();
    assert!(e.contains("1000 bytes, more than the 999"), "{e}");
    assert_eq!(
        local.read(&counter, 1000).await.unwrap().unwrap().len(),
        1000
    );
    let obj = StateLocation::open(&format!("memory://{}/big.json", unique("big"))).unwrap();
    assert!(obj.read(&counter, 10).await.unwrap().is_none());
    obj.write(&counter, |w| w.write_all(&[b' '; 1000]))
        .await
        .unwrap();
    let e = obj.read(&counter, 999).await.unwrap_err().to_string();
    assert!(e.contains("1000 bytes, more than the 999"), "{e}");
}

/// A database whose listing did not change can be due because time
/// passed: with a state loaded, it is not re-read, and still gets its
/// pass.
async fn due_by_time_alone(via: Via, root: &str, state: &str) {
    let bucket = Bucket::open(root).unwrap();
    build(&bucket).await;
    let what = format!("{root} --state {state}");
    let r1 = run_once(via, root, Some(state), None, NOW).await;
    assert_eq!(r1.n("due"), N as u64, "{what}");
    // A transaction in the current 30-s window (NOW is a boundary): not
    // due until that window closes.
    let i = TOUCHED[0];
    let db = db_of(&bucket, i);
    let key = format_key(&db, layout_of(i), 0, TxId(LAST + 1), TxId(LAST + 1));
    put(&bucket, key, tiny_l0(LAST + 1, NOW + 5_000)).await;
    let r2 = run_once(via, root, Some(state), None, NOW + 10_000).await;
    assert_eq!(
        (r2.n("changed"), r2.n("failed")),
        (1, 0),
        "{what}: {}",
        r2.round
    );
    assert_eq!(r2.requests().get_range, 1, "{what}: {}", r2.round);
    // (Its previous L0 file may be deleted now, but the new one is not
    // compacted: its window is open.)
    let covers_new = |p: &serde_json::Value| {
        p["written"].as_array().unwrap().iter().any(|w| {
            let k = ltx_compactor::catalog::parse_key(w["key"].as_str().unwrap()).unwrap();
            k.level >= 1 && k.max_txid == TxId(LAST + 1)
        })
    };
    assert!(!r2.passes.iter().any(covers_new), "{what}: {:?}", r2.passes);
    // An hour later: the listing is the same, the state knows every
    // header, and the window is closed: the database is passed over.
    let r3 = run_once(via, root, Some(state), None, NOW + HOUR).await;
    assert!(r3.ok, "{what}: {}", r3.stderr);
    assert_eq!(r3.state(), format!("loaded {N} databases"), "{what}");
    assert_eq!(r3.n("changed"), 0, "{what}: {}", r3.round);
    assert!(r3.passed().contains(&db), "{what}: {:?}", r3.passed());
    let pass = r3.passes.iter().find(|p| p["db"] == db.as_str()).unwrap();
    assert!(covers_new(pass), "{what}: {pass}");
    // No header was read again (inputs this small are read whole).
    assert_eq!(r3.requests().get_range, 0, "{what}: {}", r3.round);
    restores_to(&bucket, &db, LAST + 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loaded_state_still_passes_what_time_made_due() {
    let name = unique("state-time");
    due_by_time_alone(
        Via::Library,
        &format!("memory://{name}/fleet"),
        &format!("memory://{name}-state/s.json"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let state = dir.path().join("state.json");
    due_by_time_alone(Via::Binary, root.to_str().unwrap(), state.to_str().unwrap()).await;
}

/// A daemon (several rounds of one compactor) writes the state after each
/// round and reads it only in its first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_writes_the_state_every_round() {
    let name = unique("state-daemon");
    let bucket = Bucket::open(&format!("memory://{name}/fleet")).unwrap();
    build(&bucket).await;
    let state = format!("memory://{name}-state/s.json");
    let mut job = Job::new(&bucket, None, "daemon");
    job.opts.state = Some(StateLocation::open(&state).unwrap());
    let (r1, passes) = job.round().await;
    assert_eq!(
        (r1.state.as_deref(), r1.state_written),
        (Some("none"), Some(true))
    );
    // The state's GET (none there yet) and PUT are the round's.
    let own = RequestCounts {
        get: 1,
        put: 1,
        ..Default::default()
    };
    assert_eq!(
        r1.requests,
        add(add(r1.listing, sum(&passes)), own),
        "{r1:?}"
    );
    let (r2, passes) = job.round().await;
    assert_eq!(
        (
            r2.state.as_deref(),
            r2.state_loaded_databases,
            r2.state_written
        ),
        (Some("in memory"), None, Some(true))
    );
    assert!(passes.is_empty());
    // Only the listing and the state's PUT: no GET after the first round.
    assert_eq!(
        r2.requests,
        RequestCounts {
            list: pages(r2.keys),
            put: 1,
            ..Default::default()
        }
    );
    // A dry run writes nothing, the state included.
    let mut dry = Job::new(&bucket, None, "dry");
    dry.c = Compactor::new(
        bucket.clone(),
        Config::default(),
        PassOptions {
            dry_run: true,
            ..Default::default()
        },
    );
    dry.opts.state = job.opts.state.clone();
    let (r, _) = dry.round().await;
    assert_eq!(
        (r.state_loaded_databases, r.state_written, r.idle),
        (Some(N as u64), Some(false), N as u64)
    );
    assert_eq!(r.requests.put, 0);
}
