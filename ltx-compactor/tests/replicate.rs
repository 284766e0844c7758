//! The `replicate` example against a live database: a writer process
//! (python3's `sqlite3`, WAL mode, automatic checkpoints at SQLite's
//! default of 1000 frames) runs a real workload (inserts, blob rewrites
//! spanning overflow pages, deletes, multi-statement transactions, bulk
//! growth, and shrinking under `auto_vacuum=FULL`) while the example ships
//! it to a bucket and is killed (SIGKILL) at seeded random moments and
//! restarted. Every writer commit bumps `meta.seq` and prints a
//! fingerprint of the table (row count, sums of keys, blob lengths and
//! blob CRC-32s, which every row also stores beside its blob).
//!
//! Checked afterwards:
//! - the L0 files are TXIDs 1..=N, one each, NoChecksum, carrying their
//!   header time where Litestream reads it;
//! - the chain: replayed file by file, every TXID is exactly a state the
//!   writer committed (fingerprint, and every blob against its CRC); a file
//!   that is not a full image continues the previous one's WAL range (same
//!   salts, next offset; or offset 32 of the WAL SQLite restarted next) and
//!   advances `seq` by exactly one: no transaction is lost or shipped
//!   twice; a full image (after a restart found the WAL replaced) never
//!   goes back;
//! - `ltx restore` (the library's) and `litestream restore` (0.5.17) give
//!   the writer's final database byte for byte (the source checkpointed),
//!   and the replayed state at sampled intermediate TXIDs;
//! - after compaction passes (`Compactor::pass` under a `Lease`), both
//!   restores still give it, and so does every TXID a compacted file ends at;
//! - the example resumes over the compacted bucket: a second writer run is
//!   shipped on top and restores again.
//!
//! On a `file://` bucket always; on S3 when `AWS_ENDPOINT` names a server
//! (required under `LTX_REQUIRE_S3=1`). Litestream is `$LTX_LITESTREAM`,
//! `litestream` on `PATH` or `.litestream-venv/bin/litestream`; without it
//! its checks are skipped with a message, unless `LTX_REQUIRE_LITESTREAM=1`.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{litestream_time_of, s3_test_url};
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::{check_contiguity, Config};
use ltx_compactor::restore::Target;
use ltx_compactor::store::{now_ms, Bucket};
use ltx_core::checksum::crc64;
use ltx_core::rng::SplitMix64;
use ltx_core::{LtxFile, TxId};
use rusqlite::{Connection, OpenFlags};

/// The writer: `python3 - DB SEED STOP_FILE`; runs transactions until
/// STOP_FILE exists, printing `seq count sum(k) sum(length(v)) sum(h)`
/// after each commit (and once for the state it starts from).
const WRITER: &str = r#"
import os, random, sqlite3, sys, time, zlib
db, seed, stop = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = random.Random(seed)
c = sqlite3.connect(db, isolation_level=None, timeout=60)
c.execute("PRAGMA synchronous=NORMAL")
seq = c.execute("SELECT seq FROM meta").fetchone()[0]

def blob():
    n = r.choice([16, 100, 300, 700]) if r.random() < 0.92 else r.randint(3000, 20000)
    return r.randbytes(n)

def insert(n):
    for _ in range(n):
        v = blob()
        c.execute("INSERT INTO t(k, h, v) VALUES (?, ?, ?)", (r.randint(0, 9999), zlib.crc32(v), v))

def rewrite(n):
    ids = [x[0] for x in c.execute("SELECT id FROM t WHERE id % 13 = ? LIMIT ?", (r.randint(0, 12), n))]
    for i in ids:
        v = blob()
        c.execute("UPDATE t SET v = ?, h = ? WHERE id = ?", (v, zlib.crc32(v), i))

def fingerprint():
    row = c.execute("SELECT count(*), coalesce(sum(k), 0), coalesce(sum(length(v)), 0), "
                    "coalesce(sum(h), 0) FROM t").fetchone()
    print(seq, *row, flush=True)

fingerprint()
while not os.path.exists(stop):
    seq += 1
    c.execute("BEGIN IMMEDIATE")
    x = r.random()
    rows = c.execute("SELECT count(*) FROM t").fetchone()[0]
    if rows > 2000 or x < 0.02:
        c.execute("DELETE FROM t WHERE id % 5 != ?", (r.randint(0, 4),))
    elif x < 0.04:
        insert(150)
    elif x < 0.55:
        insert(r.randint(1, 6))
    elif x < 0.75:
        rewrite(r.randint(1, 3))
        c.execute("UPDATE t SET k = k + 1 WHERE id % 17 = ?", (r.randint(0, 16),))
    elif x < 0.9:
        c.execute("DELETE FROM t WHERE id % 31 = ?", (r.randint(0, 30),))
    else:
        insert(2)
        rewrite(1)
        c.execute("DELETE FROM t WHERE id % 47 = ?", (r.randint(0, 46),))
    c.execute("UPDATE meta SET seq = ?", (seq,))
    c.execute("COMMIT")
    fingerprint()
    time.sleep(r.random() * 0.01)
c.close()
"#;

/// A writer state: row count, sums of `k`, `length(v)` and `h`.
type Fingerprint = [i64; 4];

/// The example's binary, built with the profile of these tests (once).
fn example_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        // target/<profile>/deps/replicate-…
        let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
        // The features of this build, so that cargo reuses the library.
        let features: Vec<&str> = [
            ("io", cfg!(feature = "io")),
            ("cli", cfg!(feature = "cli")),
            ("simulate", cfg!(feature = "simulate")),
            ("faults", cfg!(feature = "faults")),
        ]
        .iter()
        .filter_map(|&(f, on)| on.then_some(f))
        .collect();
        let mut c = Command::new(env!("CARGO"));
        c.args([
            "build",
            "-q",
            "-p",
            "ltx-compactor",
            "--example",
            "replicate",
        ])
        .args(["--no-default-features", "--features", &features.join(",")])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", profile_dir.parent().unwrap());
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            c.arg("--release");
        }
        let st = c.status().expect("running cargo build for the example");
        assert!(st.success(), "building the replicate example failed");
        profile_dir.join("examples/replicate")
    })
}

#[path = "common/litestream_bin.rs"]
mod litestream_bin;
use litestream_bin::litestream_binary as litestream_bin;

/// `seq` and the fingerprint of a database file (opened immutable: no
/// lock, no WAL); with `blobs`, also checks every blob against its CRC.
fn state_of(path: &Path, blobs: bool) -> (i64, Fingerprint) {
    let uri = format!("file:{}?immutable=1", path.display());
    let c = Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    let seq: i64 = c
        .query_row("SELECT seq FROM meta", [], |r| r.get(0))
        .unwrap();
    let fp = c
        .query_row(
            "SELECT count(*), coalesce(sum(k), 0), coalesce(sum(length(v)), 0), coalesce(sum(h), 0) FROM t",
            [],
            |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?]),
        )
        .unwrap();
    if blobs {
        let mut st = c.prepare("SELECT id, h, v FROM t").unwrap();
        let mut rows = st.query([]).unwrap();
        while let Some(r) = rows.next().unwrap() {
            let (id, h, v): (i64, i64, Vec<u8>) =
                (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap());
            assert_eq!(
                i64::from(crc32fast::hash(&v)), // Python's zlib.crc32
                h,
                "{}: row {id}: blob does not match its CRC",
                path.display()
            );
        }
        let ok: String = c
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "{}", path.display());
    }
    (seq, fp)
}

/// A live database, its bucket, the example and the writer.
struct Site {
    tmp: tempfile::TempDir,
    db: PathBuf,
    url: String,
    bucket: Bucket,
    rt: tokio::runtime::Runtime,
    /// The example's stderr, across restarts.
    log: PathBuf,
    replicator: Option<Child>,
    writer: Option<(Child, PathBuf)>,
    litestream_config: PathBuf,
    starts: usize,
}

const TIMEOUT: Duration = Duration::from_secs(60);

impl Site {
    fn new(url: Option<String>) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("app.db");
        let c = Connection::open(&db).unwrap();
        c.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA auto_vacuum = FULL;
             CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, h INTEGER, v BLOB);
             CREATE INDEX t_k ON t(k);
             CREATE TABLE meta(seq INTEGER);
             INSERT INTO meta VALUES (0);",
        )
        .unwrap();
        let mode: String = c
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(c);
        let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
        let (url, replica) = match url {
            Some(u) => {
                let (bucket, prefix) = u["s3://".len()..].split_once('/').unwrap();
                let r = format!(
                    "      type: s3\n      bucket: {bucket}\n      path: {prefix}\n      endpoint: {}\n      region: {}\n      force-path-style: true\n      access-key-id: {}\n      secret-access-key: {}\n",
                    env("AWS_ENDPOINT", ""),
                    env("AWS_REGION", "us-east-1"),
                    env("AWS_ACCESS_KEY_ID", "test"),
                    env("AWS_SECRET_ACCESS_KEY", "test"),
                );
                (u, r)
            }
            None => {
                let dir = tmp.path().join("bucket");
                std::fs::create_dir(&dir).unwrap();
                let r = format!("      type: file\n      path: {}\n", dir.display());
                (format!("file://{}", dir.display()), r)
            }
        };
        let litestream_config = tmp.path().join("litestream.yml");
        std::fs::write(
            &litestream_config,
            format!("dbs:\n  - path: {}\n    replica:\n{replica}", db.display()),
        )
        .unwrap();
        let bucket = Bucket::open(&url).unwrap();
        Site {
            log: tmp.path().join("replicate.log"),
            tmp,
            db,
            url,
            bucket,
            rt: tokio::runtime::Runtime::new().unwrap(),
            replicator: None,
            writer: None,
            litestream_config,
            starts: 0,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn start(&mut self) {
        assert!(self.replicator.is_none());
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(example_bin())
            .arg(&self.db)
            .arg(&self.url)
            .args(["--interval-ms", "50", "--checkpoint-frames", "300"])
            .args(["--holder", "replicate-test", "--lease-ttl-ms", "10000"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.replicator = Some(child);
        self.starts += 1;
    }

    fn kill(&mut self) {
        let mut c = self.replicator.take().unwrap();
        if let Some(st) = c.try_wait().unwrap() {
            panic!("the example exited on its own ({st}); log:\n{}", self.log());
        }
        c.kill().unwrap(); // SIGKILL
        c.wait().unwrap();
    }

    /// SIGTERM: the example ships what is committed and exits 0.
    fn stop(&mut self) {
        let mut c = self.replicator.take().unwrap();
        let st = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(st.success());
        let t = Instant::now();
        let st = loop {
            if let Some(st) = c.try_wait().unwrap() {
                break st;
            }
            if t.elapsed() > TIMEOUT {
                let _ = c.kill();
                panic!(
                    "the example did not stop within {TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            st.success(),
            "the example failed to stop ({st}); log:\n{}",
            self.log()
        );
    }

    fn start_writer(&mut self, seed: u64) {
        let stop = self.tmp.path().join("stop");
        let _ = std::fs::remove_file(&stop);
        let out = self.tmp.path().join(format!("writer-{seed}.out"));
        let mut c = Command::new("python3")
            .arg("-")
            .arg(&self.db)
            .arg(seed.to_string())
            .arg(&stop)
            .stdin(Stdio::piped())
            .stdout(File::create(&out).unwrap())
            .stderr(File::create(self.tmp.path().join("writer.err")).unwrap())
            .spawn()
            .expect("python3 runs the writer");
        use std::io::Write;
        c.stdin
            .take()
            .unwrap()
            .write_all(WRITER.as_bytes())
            .unwrap();
        self.writer = Some((c, out));
    }

    fn writer_alive(&mut self) -> bool {
        let (c, _) = self.writer.as_mut().unwrap();
        match c.try_wait().unwrap() {
            None => true,
            Some(st) => panic!(
                "the writer exited early ({st}): {}",
                std::fs::read_to_string(self.tmp.path().join("writer.err")).unwrap_or_default()
            ),
        }
    }

    /// Stops the writer; returns every state it printed.
    fn stop_writer(&mut self) -> BTreeMap<i64, Fingerprint> {
        std::fs::write(self.tmp.path().join("stop"), b"").unwrap();
        let (mut c, out) = self.writer.take().unwrap();
        let t = Instant::now();
        let st = loop {
            if let Some(st) = c.try_wait().unwrap() {
                break st;
            }
            assert!(t.elapsed() < TIMEOUT, "the writer did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = std::fs::read_to_string(self.tmp.path().join("writer.err")).unwrap_or_default();
        assert!(st.success(), "writer failed: {err}");
        std::fs::read_to_string(out)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Vec<i64> = l.split(' ').map(|x| x.parse().unwrap()).collect();
                (v[0], [v[1], v[2], v[3], v[4]])
            })
            .collect()
    }

    fn db_key(&self) -> String {
        self.bucket.prefix().to_string()
    }

    fn catalog(&self) -> Vec<ltx_compactor::LtxObject> {
        self.rt
            .block_on(self.bucket.catalog(&self.db_key()))
            .unwrap()
            .0
    }

    fn wait_for_first_file(&mut self) {
        let t = Instant::now();
        while !self.catalog().iter().any(|o| o.level == 0) {
            assert!(
                t.elapsed() < TIMEOUT,
                "no L0 file after {TIMEOUT:?}; log:\n{}",
                self.log()
            );
            if let Some(st) = self.replicator.as_mut().unwrap().try_wait().unwrap() {
                panic!("the example exited ({st}); log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the newest TXID has not moved for half a second.
    fn wait_until_quiet(&self) {
        let t = Instant::now();
        let max = || self.catalog().iter().map(|o| o.max_txid).max();
        let mut last = max();
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = max();
            if now == last {
                return;
            }
            assert!(
                t.elapsed() < TIMEOUT,
                "the example never caught up; log:\n{}",
                self.log()
            );
            last = now;
        }
    }

    /// The source database, checkpointed into its file.
    fn source_bytes(&self) -> Vec<u8> {
        let c = Connection::open(&self.db).unwrap();
        let (busy, _, _): (i64, i64, i64) = c
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0, "the checkpoint of the source was blocked");
        drop(c);
        std::fs::read(&self.db).unwrap()
    }

    /// The library's restore (what `ltx restore` runs) at `target`.
    fn restore(&self, target: Target, out: &Path) -> Vec<u8> {
        self.rt.block_on(async {
            let (p, _) = plan(&self.bucket, &self.db_key(), target).await.unwrap();
            let opts = RestoreOptions {
                force: true,
                ..Default::default()
            };
            restore_to_file(&self.bucket, &self.db_key(), &p, out, &opts)
                .await
                .unwrap();
        });
        std::fs::read(out).unwrap()
    }

    /// `litestream restore -o OUT [-txid T]` of the bucket.
    fn ls_restore(&self, bin: &Path, txid: Option<u64>, out: &Path) -> Vec<u8> {
        let _ = std::fs::remove_file(out);
        let mut c = Command::new(bin);
        c.env_remove("AWS_CA_BUNDLE")
            .args(["restore", "-config"])
            .arg(&self.litestream_config)
            .arg("-o")
            .arg(out);
        if let Some(t) = txid {
            c.args(["-txid", &TxId(t).to_string()]);
        }
        let o = c.arg(&self.db).output().unwrap();
        assert!(
            o.status.success(),
            "litestream restore {txid:?}: {}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read(out).unwrap()
    }
}

/// What replaying the L0 chain found.
struct Replay {
    /// Hash (CRC-64) of the database after each TXID.
    hashes: BTreeMap<u64, u64>,
    /// `seq` after each TXID.
    seqs: BTreeMap<u64, i64>,
    /// TXIDs > 1 that are full images (snapshots after a restart, or
    /// transactions that wrote every page).
    images: Vec<u64>,
    /// Those of them not exactly one transaction after the previous file:
    /// snapshots.
    snapshots: Vec<u64>,
    last: Vec<u8>,
}

/// Replays every L0 file in TXID order into a file and checks each state
/// and how each file follows the previous one (see the module docs).
fn replay(site: &Site, states: &BTreeMap<i64, Fingerprint>) -> Replay {
    let mut l0: Vec<_> = site
        .catalog()
        .into_iter()
        .filter(|o| o.level == 0)
        .collect();
    l0.sort_by_key(|o| o.min_txid);
    for (i, o) in l0.iter().enumerate() {
        assert_eq!(
            (o.min_txid.0, o.max_txid.0),
            (i as u64 + 1, i as u64 + 1),
            "L0 files are TXIDs 1..=N, one each: {}",
            o.key
        );
    }
    let img_path = site.tmp.path().join("replay.db");
    let img = File::create(&img_path).unwrap();
    let mut r = Replay {
        hashes: BTreeMap::new(),
        seqs: BTreeMap::new(),
        images: Vec::new(),
        snapshots: Vec::new(),
        last: Vec::new(),
    };
    let mut prev: Option<ltx_core::Header> = None;
    let mut prev_seq = -1;
    let mut late_stamps = 0;
    for o in &l0 {
        let bytes = site
            .rt
            .block_on(site.bucket.read_range(&o.key, 0..o.size))
            .unwrap();
        let f = LtxFile::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", o.key));
        f.verify().unwrap_or_else(|e| panic!("{}: {e}", o.key));
        let h = *f.header();
        assert!(
            h.no_checksum() && f.trailer().post_apply_checksum.is_zero(),
            "{}: NoChecksum, as Litestream writes",
            o.key
        );
        let ps = h.page_size.bytes();
        let lock = h.page_size.lock_pgno();
        let full = f.index().len() as u32 == h.commit - u32::from(h.commit >= lock);
        let t = o.min_txid.0;
        let time = site
            .rt
            .block_on(litestream_time_of(&site.bucket, &o.key))
            .expect("a Litestream time");
        // A kill between the upload and setting a file's time leaves its upload time.
        assert!(
            (time - h.timestamp).abs() < 5_000,
            "{}: time {time} vs header {}",
            o.key,
            h.timestamp
        );
        late_stamps += usize::from(time != h.timestamp);
        let mut page = vec![0u8; ps];
        for e in f.index().entries() {
            assert!(f.read_page(e.pgno, &mut page).unwrap());
            img.write_all_at(&page, u64::from(e.pgno - 1) * ps as u64)
                .unwrap();
        }
        img.set_len(u64::from(h.commit) * ps as u64).unwrap();
        let (seq, fp) = state_of(&img_path, t % 50 == 0 || full);
        assert_eq!(
            states.get(&seq),
            Some(&fp),
            "TXID {t}: seq {seq} is not the writer's state"
        );
        match prev {
            None => assert!(full, "TXID 1 is a snapshot"),
            Some(p) => {
                let end = p.wal_offset + p.wal_size;
                let follows = ((h.wal_salt1, h.wal_salt2) == (p.wal_salt1, p.wal_salt2)
                    && h.wal_offset == end)
                    || (h.wal_offset == 32
                        && (p.wal_offset == 0 || h.wal_salt1 == p.wal_salt1.wrapping_add(1)));
                if full {
                    // A full image: any later state (none lost), never an earlier one.
                    assert!(
                        seq >= prev_seq,
                        "TXID {t}: full image of seq {seq} after seq {prev_seq}"
                    );
                    r.images.push(t);
                    if seq != prev_seq + 1 {
                        r.snapshots.push(t);
                    }
                } else {
                    assert!(follows, "TXID {t}: WAL range {}+{} salts {:08x}/{:08x} does not follow {}+{} {:08x}/{:08x}",
                        h.wal_offset, h.wal_size, h.wal_salt1, h.wal_salt2, p.wal_offset, p.wal_size, p.wal_salt1, p.wal_salt2);
                    assert_eq!(
                        seq,
                        prev_seq + 1,
                        "TXID {t}: one transaction after seq {prev_seq}"
                    );
                }
            }
        }
        let bytes = std::fs::read(&img_path).unwrap();
        r.hashes.insert(t, crc64(&bytes));
        r.seqs.insert(t, seq);
        r.last = bytes;
        prev = Some(h);
        prev_seq = seq;
    }
    eprintln!(
        "{}: replayed {} L0 files; full images after TXID 1: {} ({} snapshots at {:?}, the others one transaction each); {} files with their upload time",
        site.url,
        l0.len(),
        r.images.len(),
        r.snapshots.len(),
        r.snapshots,
        late_stamps
    );
    // Snapshots come only from a start that found its position gone.
    assert!(
        r.snapshots.len() < site.starts,
        "{} snapshots in {} starts",
        r.snapshots.len(),
        site.starts
    );
    for l in site.log().lines().filter(|l| l.contains(" snapshot ")) {
        let t = l.split(['=', ' ']).nth(2).unwrap();
        let t = u64::from_str_radix(t, 16).unwrap();
        assert!(t == 1 || r.images.contains(&t), "{l}: not a full image");
    }
    r
}

fn scenario(url: Option<String>, seed: u64, kills: usize) {
    let t0 = Instant::now();
    let ls = litestream_bin();
    let mut s = Site::new(url);
    let mut rng = SplitMix64::new(seed);
    s.start();
    s.wait_for_first_file();
    s.start_writer(seed);
    for _ in 0..kills {
        // Mostly while shipping; one kill in four during start-up.
        let alive = match rng.below(4) {
            0 => rng.below(150),
            _ => 300 + rng.below(1200),
        };
        std::thread::sleep(Duration::from_millis(alive));
        assert!(s.writer_alive());
        s.kill();
        // Down briefly (the WAL still holds the position: resume) or long
        // enough for the writer's own checkpoints to restart the WAL (a
        // full image).
        let down = match rng.below(2) {
            0 => rng.below(100),
            _ => rng.below(1500),
        };
        std::thread::sleep(Duration::from_millis(down));
        s.start();
    }
    std::thread::sleep(Duration::from_millis(500));
    let states = s.stop_writer();
    s.stop();
    let log = s.log();
    if let Ok(d) = std::env::var("LTX_REPLICATE_LOG") {
        std::fs::write(d, &log).unwrap();
    }
    let final_seq = *states.keys().last().unwrap();
    eprintln!(
        "{}: {} writer transactions, {} kills, {} checkpoints, {} WAL restarts followed, {} resumes, {} s",
        s.url,
        final_seq,
        kills,
        log.matches("checkpoint busy=").count(),
        log.matches("WAL restarted").count(),
        log.matches("resuming at").count(),
        t0.elapsed().as_secs_f32()
    );
    assert!(!log.contains("error:"), "the example logged errors:\n{log}");

    let r = replay(&s, &states);
    assert_eq!(
        r.seqs.values().last(),
        Some(&final_seq),
        "the last TXID is the writer's last commit"
    );
    let source = s.source_bytes();
    assert!(
        source == r.last,
        "the replayed chain is the source database byte for byte"
    );
    let out = s.tmp.path().join("restored.db");
    assert!(
        s.restore(Target::Latest, &out) == source,
        "ltx restore of the latest TXID"
    );
    let n = *r.seqs.keys().last().unwrap();
    let mut samples: Vec<u64> = (0..3).map(|_| 1 + rng.below(n)).collect();
    samples.extend(r.snapshots.iter().flat_map(|&t| [t - 1, t]).take(4));
    for &t in &samples {
        let b = s.restore(Target::Txid(TxId(t)), &out);
        assert_eq!(crc64(&b), r.hashes[&t], "ltx restore at TXID {t}");
    }
    if let Some(bin) = &ls {
        assert!(
            s.ls_restore(bin, None, &out) == source,
            "litestream restore of the latest TXID"
        );
        for &t in &samples {
            let b = s.ls_restore(bin, Some(t), &out);
            assert_eq!(crc64(&b), r.hashes[&t], "litestream restore at TXID {t}");
        }
    }

    // Compaction, as the compactor runs beside a replicator.
    let cfg = Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "1s"}, {"level": 2, "interval": "4s"}],
            "snapshot_interval": "8s", "retention": "24h", "l0_retention": "0s", "settle": "0s"}"#,
    )
    .unwrap();
    let db = s.db_key();
    let written = s.rt.block_on(async {
        let lease = Lease::acquire(&s.bucket, &db, "test", 60_000)
            .await
            .unwrap()
            .expect("lease free");
        let c = Compactor::new(s.bucket.clone(), cfg, PassOptions::default());
        let mut written = 0;
        for later in [10_000, 60_000] {
            let p = c.pass(&db, now_ms() + later, &lease).await.unwrap();
            assert!(p.contiguity.is_empty(), "{:?}", p.contiguity);
            written += p.written.len();
        }
        lease.release().await.unwrap();
        written
    });
    let cat = s.catalog();
    assert!(
        written > 0 && cat.iter().any(|o| o.level == 9),
        "the passes compacted: {written} outputs"
    );
    assert!(
        s.restore(Target::Latest, &out) == source,
        "ltx restore after compaction"
    );
    let ends: Vec<u64> = cat
        .iter()
        .filter(|o| o.level > 0)
        .map(|o| o.max_txid.0)
        .collect();
    for &t in &ends {
        let b = s.restore(Target::Txid(TxId(t)), &out);
        assert_eq!(
            crc64(&b),
            r.hashes[&t],
            "ltx restore at TXID {t} after compaction"
        );
    }
    if let Some(bin) = &ls {
        assert!(
            s.ls_restore(bin, None, &out) == source,
            "litestream restore after compaction"
        );
    }
    eprintln!(
        "{}: compaction wrote {written} files; {} restorable ends checked",
        s.url,
        ends.len()
    );

    // The example resumes over the compacted bucket (a full image: the
    // source was checkpointed above), and is killed once more.
    s.start();
    s.start_writer(seed + 1);
    std::thread::sleep(Duration::from_millis(800));
    assert!(s.writer_alive());
    s.kill();
    s.start();
    std::thread::sleep(Duration::from_millis(800));
    s.stop_writer();
    // Killed once caught up with a writer that stopped, it must resume
    // from its position in the WAL (no full image), then ship new writes.
    s.wait_until_quiet();
    let resumes = s.log().matches("resuming at").count();
    s.kill();
    s.start();
    s.start_writer(seed + 2);
    std::thread::sleep(Duration::from_millis(300));
    let states = s.stop_writer();
    s.stop();
    assert_eq!(
        s.log().matches("resuming at").count(),
        resumes + 1,
        "{}",
        s.log()
    );
    let source = s.source_bytes();
    let b = s.restore(Target::Latest, &out);
    assert_eq!(
        state_of(&out, true),
        (
            *states.keys().last().unwrap(),
            *states.values().last().unwrap()
        )
    );
    assert!(
        b == source,
        "ltx restore after resuming over the compacted bucket"
    );
    if let Some(bin) = &ls {
        assert!(
            s.ls_restore(bin, None, &out) == source,
            "litestream restore after resuming"
        );
    }
    let cat = s.catalog();
    assert!(
        check_contiguity(&cat).is_empty(),
        "{:?}",
        check_contiguity(&cat)
    );
    eprintln!(
        "{}: done in {:.1} s ({} starts)",
        s.url,
        t0.elapsed().as_secs_f32(),
        s.starts
    );
}

#[test]
fn replicate_to_a_directory_with_kills() {
    scenario(None, 0x5eed_0013, 8);
}

#[test]
fn replicate_to_s3_with_kills() {
    if let Some(url) = s3_test_url("replicate") {
        scenario(Some(url), 0x5eed_0031, 3);
    }
}
