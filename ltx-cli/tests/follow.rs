//! `ltx restore URL -o OUT --follow` with real parts: a writer runs SQLite
//! transactions on a WAL-mode database (automatic checkpoints off, its own
//! TRUNCATE checkpoints now and then) and ships each committed
//! transaction, read from its WAL, as an L0 file (`ltx_core::wal::LtxChain`,
//! checksums tracked) into a bucket in Litestream's layout; the library's
//! compactor compacts it on the wall clock with one-second levels and
//! deletes the compacted L0 files; the `ltx` binary follows it into OUT
//! and is SIGKILLed and restarted: once down until the L0 file after its
//! TXID is compacted away, then several times at random moments, mid-step
//! or not; reader threads (one holding transactions open across steps) and a python3
//! reader (another SQLite build, another process) query OUT in a loop the
//! whole time, checking invariants the writer keeps in every transaction
//! (a constant sum of balances spread over many pages, a counter equal to
//! a row count, a counter that never goes back) and `PRAGMA quick_check`;
//! at the end OUT equals the writer's database byte for byte. A second
//! test covers a gap (reported, retried, closed), a file whose pages do
//! not give its post-apply checksum (exit 1, OUT and its record left at
//! the last good state, nothing written) and the restart after it; a
//! third the usage errors. The first scenario also runs against the
//! S3-protocol server CI starts when `AWS_ENDPOINT` is set. Another test
//! kills the follower at each point of a step (`LTX_FOLLOW_CRASH`), and
//! the last one follows the real Litestream 0.5.17 with its own
//! compaction (skipped without the binary unless `LTX_REQUIRE_LITESTREAM=1`).

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ltx_compactor::catalog::{parse_key, Layout};
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::Config;
use ltx_compactor::store::{now_ms, Bucket};
use ltx_core::wal::{LtxChain, Transaction, WalEvent, WalReader};
use ltx_core::{Encoder, LtxFile, PageSize, TxId};
use rusqlite::{Connection, OpenFlags};

#[path = "../../ltx-compactor/tests/common/mod.rs"]
mod common;
use common::{encode_diff, put_l0, s3_test_url, PS};
mod support;

const ACCOUNTS: i64 = 400;
const BALANCE: i64 = 1000;

/// A WAL-mode database under a workload, shipping each committed
/// transaction as an L0 file read from its WAL.
struct Writer {
    path: PathBuf,
    wal: PathBuf,
    conn: Connection,
    chain: LtxChain,
    reader: WalReader,
    /// Bytes of the WAL fed to `reader`.
    pos: u64,
    rng: ltx_core::rng::SplitMix64,
}

impl Writer {
    /// A new database in `dir`; returns it and its snapshot (TXID 1).
    fn new(dir: &Path, seed: u64) -> (Writer, Vec<u8>) {
        let path = dir.join("writer.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA page_size={PS}; PRAGMA auto_vacuum=FULL; PRAGMA journal_mode=WAL;
             PRAGMA wal_autocheckpoint=0;
             CREATE TABLE acct(id INTEGER PRIMARY KEY, bal INTEGER NOT NULL, pad BLOB);
             CREATE TABLE meta(k TEXT PRIMARY KEY, n INTEGER NOT NULL);
             CREATE TABLE log(n INTEGER PRIMARY KEY, v BLOB);
             CREATE TABLE big(id INTEGER PRIMARY KEY, v BLOB);
             INSERT INTO meta VALUES ('n', 0);
             WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {ACCOUNTS})
             INSERT INTO acct SELECT i, {BALANCE}, randomblob(300) FROM s;
             PRAGMA wal_checkpoint(TRUNCATE);"
        ))
        .unwrap();
        let db = std::fs::read(&path).unwrap();
        let snapshot = encode_diff(&[], &db, 1, now_ms());
        let ps = PageSize::new(PS).unwrap();
        let sum = ltx_core::checksum::database_checksum(ps, &db);
        let pages = (db.len() / PS as usize) as u32;
        let wal = support_side(&path, "-wal");
        (
            Writer {
                path,
                wal,
                conn,
                chain: LtxChain::new(ps, pages, Some(sum), TxId(2)),
                reader: WalReader::new(),
                pos: 0,
                rng: ltx_core::rng::SplitMix64::new(seed),
            },
            snapshot,
        )
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.rng.next_u64() % n
    }

    /// The last TXID shipped.
    fn txid(&self) -> u64 {
        self.chain.next_txid().0 - 1
    }

    /// One transaction that keeps the invariants.
    fn transaction(&mut self) {
        let mut sql = String::from("BEGIN;");
        for _ in 0..1 + self.rand(12) {
            let (a, b, x) = (
                1 + self.rand(ACCOUNTS as u64),
                1 + self.rand(ACCOUNTS as u64),
                1 + self.rand(50),
            );
            sql += &format!(
                "UPDATE acct SET bal = bal - {x} WHERE id = {a}; UPDATE acct SET bal = bal + {x} WHERE id = {b};"
            );
        }
        sql += &format!(
            "UPDATE meta SET n = n + 1; INSERT INTO log VALUES ((SELECT n FROM meta), randomblob({}));",
            10 + self.rand(600)
        );
        match self.rand(10) {
            // The file grows (overflow pages) ...
            0 | 1 => {
                sql += &format!(
                    "INSERT INTO big(v) VALUES (randomblob({}));",
                    4000 + self.rand(60000)
                )
            }
            // ... and shrinks (auto_vacuum=FULL truncates it at commit).
            2 => {
                sql += "DELETE FROM big WHERE id IN (SELECT id FROM big ORDER BY random() LIMIT 3);"
            }
            _ => {}
        }
        sql += "COMMIT;";
        self.conn.execute_batch(&sql).unwrap();
    }

    /// Runs `n` transactions and returns their L0 files.
    fn batch(&mut self, n: usize) -> Vec<(u64, Vec<u8>)> {
        for _ in 0..n {
            self.transaction();
        }
        self.ship()
    }

    /// Encodes the committed transactions of the WAL not shipped yet.
    fn ship(&mut self) -> Vec<(u64, Vec<u8>)> {
        let wal = std::fs::File::open(&self.wal).unwrap();
        let len = wal.metadata().unwrap().len();
        let mut fresh = vec![0u8; (len - self.pos) as usize];
        wal.read_exact_at(&mut fresh, self.pos).unwrap();
        self.pos = len;
        let mut txns: Vec<Transaction> = Vec::new();
        let mut input = &fresh[..];
        loop {
            let (n, ev) = self.reader.read(input).unwrap();
            input = &input[n..];
            match ev {
                WalEvent::Commit(t) => txns.push(t.clone()),
                WalEvent::NeedMore => break,
                WalEvent::End(e) => panic!("the writer's WAL ended: {e}"),
                _ => {}
            }
        }
        let db = std::fs::File::open(&self.path).unwrap();
        let mut files = Vec::new();
        for t in &txns {
            let mut out = Vec::new();
            self.chain
                .encode(
                    t,
                    now_ms(),
                    |off, buf: &mut [u8]| wal.read_exact_at(buf, off),
                    |pgno, buf: &mut [u8]| db.read_exact_at(buf, u64::from(pgno - 1) * PS as u64),
                    &mut out,
                )
                .unwrap();
            files.push((self.txid(), out));
        }
        files
    }

    /// Checkpoints everything into the database file and truncates the WAL
    /// (every committed transaction must be shipped first).
    fn checkpoint(&mut self) {
        assert!(self.ship().is_empty(), "ship before a checkpoint");
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .unwrap();
        assert_eq!(busy, 0);
        self.reader = WalReader::new();
        self.pos = 0;
    }

    /// The database file after a full checkpoint.
    fn bytes(&mut self) -> Vec<u8> {
        self.checkpoint();
        std::fs::read(&self.path).unwrap()
    }
}

fn support_side(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The TXID `OUT.ltx-follow` records (0 when there is none yet).
fn followed(out: &Path) -> (u64, serde_json::Value) {
    match std::fs::read(support_side(out, ".ltx-follow")) {
        Ok(b) => {
            let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
            let t = u64::from_str_radix(v["txid"].as_str().unwrap(), 16).unwrap();
            (t, v)
        }
        Err(_) => (0, serde_json::Value::Null),
    }
}

/// A follower process writing its stdout and stderr to files in `dir`.
struct Follower {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Follower {
    fn start(url: &str, out: &Path, dir: &Path, tag: &str, interval: &str) -> Follower {
        Follower::start_env(url, out, dir, tag, interval, None)
    }

    /// With `LTX_FOLLOW_CRASH=crash`.
    fn start_env(
        url: &str,
        out: &Path,
        dir: &Path,
        tag: &str,
        interval: &str,
        crash: Option<&str>,
    ) -> Follower {
        let stdout = dir.join(format!("follower-{tag}.out"));
        let stderr = dir.join(format!("follower-{tag}.err"));
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("ltx"));
        if let Some(c) = crash {
            cmd.env("LTX_FOLLOW_CRASH", c);
        }
        let child = cmd
            .args(["restore", url, "-o"])
            .arg(out)
            .args(["--follow", "--interval", interval, "--json"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        Follower {
            child,
            stdout,
            stderr,
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn output(&self) -> (String, String) {
        (
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default(),
        )
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh `file://` bucket in `dir/bucket`: its URL.
fn file_bucket(dir: &Path) -> String {
    let root = dir.join("bucket");
    std::fs::create_dir_all(&root).unwrap();
    format!("file://{}", root.display())
}

/// Ships a writer's transactions as L0 files of `app.db` in a bucket.
struct Shipper {
    rt: tokio::runtime::Runtime,
    bucket: Bucket,
    /// The database prefix.
    db: String,
}

impl Shipper {
    fn new(url: &str) -> Shipper {
        let bucket = Bucket::open(url).unwrap();
        let db = ltx_compactor::store::join(bucket.prefix(), "app.db");
        Shipper {
            rt: tokio::runtime::Runtime::new().unwrap(),
            bucket,
            db,
        }
    }

    /// Uploads L0 files `(TXID, bytes)` in the `ltx/0/` layout.
    fn upload(&self, files: Vec<(u64, Vec<u8>)>) {
        self.rt.block_on(async {
            for (txid, bytes) in files {
                put_l0(&self.bucket, &self.db, Layout::LtxDir, txid, bytes).await;
            }
        })
    }
}

/// Waits until `OUT.ltx-follow` records `txid`, or panics naming what the
/// follower said.
fn wait_for(out: &Path, txid: u64, f: &Follower, within: Duration) {
    let t0 = Instant::now();
    while followed(out).0 < txid {
        if t0.elapsed() > within {
            let (o, e) = f.output();
            panic!(
                "the follower did not reach TXID {txid:x} in {within:?} (at {:x})\nstdout: {o}\nstderr: {e}",
                followed(out).0
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What a reader saw.
#[derive(Debug, Default)]
struct Seen {
    reads: u64,
    errors: Vec<String>,
    states: std::collections::BTreeSet<i64>,
    checks: u64,
}

/// Queries OUT in a loop until `stop`: the invariants in one read
/// transaction, the counter never going back, `quick_check` every 50
/// reads; reopens the connection every 500 reads.
fn reader(out: PathBuf, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    let open = || {
        let c = Connection::open_with_flags(
            &out,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(Duration::from_secs(10))?;
        Ok::<_, rusqlite::Error>(c)
    };
    let mut conn = open().unwrap();
    let mut last = 0i64;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let r = (|| {
            let tx = conn.transaction()?;
            let (sum, count): (i64, i64) =
                tx.query_row("SELECT sum(bal), count(*) FROM acct", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            let (n, logs): (i64, i64) = tx.query_row(
                "SELECT (SELECT n FROM meta), (SELECT count(*) FROM log)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let qc: Option<String> = if i.is_multiple_of(50) {
                Some(tx.query_row("PRAGMA quick_check", [], |r| r.get(0))?)
            } else {
                None
            };
            tx.commit()?;
            Ok::<_, rusqlite::Error>((sum, count, n, logs, qc))
        })();
        let mut s = seen.lock().unwrap();
        match r {
            Ok((sum, count, n, logs, qc)) => {
                s.reads += 1;
                if (sum, count) != (ACCOUNTS * BALANCE, ACCOUNTS) {
                    s.errors.push(format!("torn: sum {sum}, {count} accounts"));
                }
                if n != logs {
                    s.errors
                        .push(format!("mixed: counter {n} but {logs} log rows"));
                }
                if n < last {
                    s.errors
                        .push(format!("went back: counter {n} after {last}"));
                }
                if let Some(q) = qc {
                    s.checks += 1;
                    if q != "ok" {
                        s.errors.push(format!("quick_check: {q}"));
                    }
                }
                last = n;
                s.states.insert(n);
            }
            Err(e) => s.errors.push(format!("query: {e}")),
        }
        drop(s);
        if i.is_multiple_of(500) {
            drop(conn);
            conn = open().unwrap();
        }
    }
}

/// Holds read transactions open across steps: what a transaction reads
/// twice, 700 ms apart while steps are written, must be the same (its
/// snapshot stays whole). Returns (transactions, of which saw OUT move
/// on meanwhile, errors).
fn long_reader(out: PathBuf, stop: Arc<AtomicBool>) -> (u64, u64, Vec<String>) {
    let mut c = Connection::open_with_flags(&out, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let other = Connection::open_with_flags(&out, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    other.busy_timeout(Duration::from_secs(10)).unwrap();
    let look = |c: &Connection| -> rusqlite::Result<(i64, i64, i64, String)> {
        c.query_row(
            "SELECT (SELECT n FROM meta), (SELECT count(*) FROM log), (SELECT sum(length(v)) FROM big),
                    (SELECT group_concat(bal) FROM acct)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, Option<i64>>(2)?.unwrap_or(0), r.get(3)?)),
        )
    };
    let (mut txns, mut moved, mut errors) = (0, 0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let r = (|| {
            let tx = c.transaction()?;
            let a = look(&tx)?;
            std::thread::sleep(Duration::from_millis(700));
            let b = look(&tx)?;
            let now = look(&other)?;
            tx.commit()?;
            Ok::<_, rusqlite::Error>((a, b, now))
        })();
        match r {
            Ok((a, b, now)) => {
                txns += 1;
                moved += u64::from(now.0 != a.0);
                if a != b {
                    errors.push(format!("snapshot changed: counter {} then {}", a.0, b.0));
                }
            }
            Err(e) => errors.push(format!("query: {e}")),
        }
    }
    (txns, moved, errors)
}

/// The python3 reader: the same invariants through another SQLite build,
/// in another process, until `stop_file` exists. Prints `reads N states S
/// errors E` and the errors.
const PY_READER: &str = r#"
import os, sqlite3, sys
out, stop, want = sys.argv[1], sys.argv[2], int(sys.argv[3])
c = sqlite3.connect(out, timeout=10, isolation_level=None)
reads, errors, states, last = 0, [], set(), 0
while not os.path.exists(stop):
    try:
        c.execute("BEGIN")
        s, k = c.execute("SELECT sum(bal), count(*) FROM acct").fetchone()
        n, logs = c.execute("SELECT (SELECT n FROM meta), (SELECT count(*) FROM log)").fetchone()
        q = c.execute("PRAGMA quick_check").fetchone()[0] if reads % 40 == 0 else "ok"
        c.execute("COMMIT")
        reads += 1
        if s != want or n != logs or n < last or q != "ok":
            errors.append((s, k, n, logs, last, q))
        last = n
        states.add(n)
    except Exception as e:
        errors.append(str(e))
        try:
            c.execute("ROLLBACK")
        except Exception:
            pass
print("reads", reads, "states", len(states), "errors", len(errors))
for e in errors[:10]:
    print(e)
"#;

/// Compaction on the wall clock: one-second levels, L0 files deleted once
/// compacted.
fn config() -> Config {
    Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "1s"}, {"level": 2, "interval": "2s"},
                      {"level": 3, "interval": "4s"}],
            "snapshot_interval": "8s", "retention": "30s", "l0_retention": "0s", "settle": "200ms"}"#,
    )
    .unwrap()
}

/// The whole scenario against the bucket at `url`.
fn scenario(url: &str, tag: &str, secs: u64) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.db");
    let ship = Shipper::new(url);
    let (rt, bucket, db) = (&ship.rt, &ship.bucket, &ship.db);
    let (mut w, snapshot) = Writer::new(dir.path(), 0x5eed ^ secs);
    let upload = |files| ship.upload(files);
    upload(vec![(1, snapshot)]);
    let first = w.batch(5);
    upload(first);

    // The compactor, on its own thread and runtime.
    let stop = Arc::new(AtomicBool::new(false));
    let compacted = Arc::new(Mutex::new((0usize, 0usize, 0usize)));
    let compactor = {
        let (stop, compacted, url, db) =
            (stop.clone(), compacted.clone(), url.to_string(), db.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let bucket = Bucket::open(&url).unwrap();
                let c = Compactor::new(bucket.clone(), config(), PassOptions::default());
                let lease = Lease::acquire(&bucket, &db, "follow-test", 600_000)
                    .await
                    .unwrap()
                    .expect("lease free");
                while !stop.load(Ordering::Relaxed) {
                    let r = c.pass(&db, now_ms(), &lease).await.unwrap();
                    assert!(r.contiguity.is_empty(), "{:?}", r.contiguity);
                    {
                        let mut k = compacted.lock().unwrap();
                        k.0 += 1;
                        k.1 += r.written.len();
                        k.2 += r.deleted.len();
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                lease.release().await.unwrap();
            })
        })
    };

    let mut followers = vec![Follower::start(url, &out, dir.path(), "1", "200ms")];
    wait_for(&out, 6, &followers[0], Duration::from_secs(60));

    // Readers: two threads here, one python3 process.
    let seen: Vec<Arc<Mutex<Seen>>> = (0..2).map(|_| Arc::default()).collect();
    let readers: Vec<_> = seen
        .iter()
        .map(|s| {
            let (out, stop, s) = (out.clone(), stop.clone(), s.clone());
            std::thread::spawn(move || reader(out, stop, s))
        })
        .collect();
    let long = {
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::spawn(move || long_reader(out, stop))
    };
    let stop_file = dir.path().join("stop-readers");
    let python = Command::new("python3")
        .args(["-c", PY_READER])
        .arg(&out)
        .arg(&stop_file)
        .arg((ACCOUNTS * BALANCE).to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok();
    if python.is_none() {
        eprintln!("python3 not found: the python3 reader is skipped");
    }

    // The workload, with the follower killed: once until the L0 file it
    // needs is compacted away, then at random moments.
    let t0 = Instant::now();
    let total = Duration::from_secs(secs);
    let (mut kills, mut last_ckpt) = (0, Instant::now());
    let mut shipped = 6u64;
    // While the first follower is down: the TXID it stopped at.
    let mut down: Option<((u64, u64), Instant)> = None;
    let (out_wal, mut max_wal) = (support_side(&out, "-wal"), 0u64);
    let mut next_kill = Instant::now();
    while t0.elapsed() < total || kills < 3 {
        let n = 1 + w.rand(6) as usize;
        let files = w.batch(n);
        shipped += files.len() as u64;
        upload(files);
        if last_ckpt.elapsed() > Duration::from_secs(2) {
            w.checkpoint();
            last_ckpt = Instant::now();
        }
        let at = t0.elapsed().as_secs_f64() / secs as f64;
        if kills == 0 && at > 0.3 {
            followers.last_mut().unwrap().kill();
            kills += 1;
            // Killed at any moment: OUT holds the recorded TXID or the
            // pending step's.
            let (t, v) = followed(&out);
            let p = v["pending"]["txid"]
                .as_str()
                .map_or(t, |p| u64::from_str_radix(p, 16).unwrap());
            down = Some(((t, p), Instant::now()));
        } else if let Some(((t, p), since)) = down {
            // Down until the L0 files after those TXIDs are compacted
            // away: the restarted follower must continue from the levels.
            let l0_next = rt
                .block_on(bucket.catalog(db))
                .unwrap()
                .0
                .iter()
                .any(|o| o.level == 0 && (o.min_txid.0 == t + 1 || o.min_txid.0 == p + 1));
            if !l0_next {
                followers.push(Follower::start(url, &out, dir.path(), "2", "200ms"));
                down = None;
            } else {
                assert!(
                    since.elapsed() < Duration::from_secs(30),
                    "the compactor did not compact L0 {:x} away in 30 s",
                    t + 1
                );
            }
        } else if kills >= 1 && at > 0.55 && at < 0.95 && Instant::now() >= next_kill {
            // Then at random moments, mid-step or not.
            followers.last_mut().unwrap().kill();
            kills += 1;
            let tag = (kills + 1).to_string();
            followers.push(Follower::start(url, &out, dir.path(), &tag, "200ms"));
            next_kill = Instant::now() + Duration::from_millis(300 + w.rand(1200));
        }
        max_wal = max_wal.max(std::fs::metadata(&out_wal).map_or(0, |m| m.len()));
        std::thread::sleep(Duration::from_millis(20 + w.rand(40)));
    }
    let final_txid = w.txid();
    assert_eq!(final_txid, shipped);
    let want = w.bytes();
    wait_for(
        &out,
        final_txid,
        followers.last().unwrap(),
        Duration::from_secs(60),
    );
    // Let the readers see the final state for a moment.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    std::fs::write(&stop_file, b"").unwrap();
    for r in readers {
        r.join().unwrap();
    }
    let (long_txns, long_moved, long_errors) = long.join().unwrap();
    compactor.join().unwrap();
    let py = python.map(|p| {
        let o = p.wait_with_output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    });
    for f in followers.iter_mut() {
        f.kill();
    }

    // What the followers did.
    let mut steps = 0;
    let (mut resumes, mut interrupted, mut written_before_kill) = (0, 0, 0);
    let (mut locked, mut step_ms, mut online) = (Vec::new(), Vec::new(), 0);
    let mut retried = 0;
    let mut level_files = 0;
    let mut by_level: BTreeMap<u8, usize> = BTreeMap::new();
    for (i, f) in followers.iter().enumerate() {
        let (o, e) = f.output();
        assert!(!e.contains("ltx: error"), "follower stderr: {e}");
        // The first restores; every other one resumes (or was killed
        // before it said anything).
        if let Some(first) = o.lines().next() {
            let v: serde_json::Value = serde_json::from_str(first).unwrap();
            let want = if i == 0 { "restore" } else { "resume" };
            assert_eq!(v["event"], want, "follower {i}: {o}");
        }
        retried += e.lines().filter(|l| l.contains("retrying in")).count();
        for line in o.lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|_| panic!("{line}"));
            if v["event"] == "resume" {
                resumes += 1;
                interrupted += usize::from(!v["interrupted"].is_null());
                written_before_kill += usize::from(v["txid"] != v["recorded"]);
            }
            if v["event"] == "step" {
                steps += 1;
                locked.push(v["locked_us"].as_u64().unwrap());
                step_ms.push(v["elapsed_ms"].as_u64().unwrap());
                online += usize::from(v["online"] == true);
                let mut lv = false;
                for k in v["files"].as_array().unwrap() {
                    let level = parse_key(k.as_str().unwrap()).unwrap().level;
                    *by_level.entry(level).or_default() += 1;
                    lv |= level > 0;
                }
                level_files += usize::from(lv);
            }
        }
    }
    let (passes, written, deleted) = *compacted.lock().unwrap();
    eprintln!(
        "{tag}: {final_txid} transactions in {secs} s; compactor: {passes} passes, {written} files written, {deleted} deleted; \
         followers: {steps} steps, {level_files} with compacted files, files by level {by_level:?}, {retried} retried steps"
    );
    locked.sort_unstable();
    step_ms.sort_unstable();
    let pct = |v: &[u64], p: usize| v[(v.len() - 1) * p / 100];
    eprintln!(
        "{tag}: steps: {online} of {steps} published to connected readers; locks held p50 {} µs, p99 {} µs, max {} µs;          step (list excluded: fetch, check, write) p50 {} ms, max {} ms",
        pct(&locked, 50),
        pct(&locked, 99),
        locked.last().unwrap(),
        pct(&step_ms, 50),
        step_ms.last().unwrap()
    );
    eprintln!(
        "{tag}: OUT-wal at most {max_wal} bytes; the follower was SIGKILLed {kills} times: \
         {resumes} resumes, {interrupted} with a step interrupted, {written_before_kill} of which had been written"
    );
    assert!(resumes > 1, "{resumes} resumes");
    assert!(online > 0, "no step was published to connected readers");
    assert!(deleted > 0, "the compactor deleted nothing");
    assert!(
        level_files > 0,
        "no step continued from a compacted level: {by_level:?}"
    );

    // What the readers saw.
    for (i, s) in seen.iter().enumerate() {
        let s = s.lock().unwrap();
        eprintln!(
            "{tag}: reader {i}: {} reads, {} quick_checks, {} distinct states, {} errors",
            s.reads,
            s.checks,
            s.states.len(),
            s.errors.len()
        );
        assert!(
            s.errors.is_empty(),
            "reader {i}: {:?}",
            &s.errors[..s.errors.len().min(10)]
        );
        assert!(
            s.reads > 100 && s.checks > 0,
            "reader {i}: {} reads",
            s.reads
        );
        assert!(
            s.states.len() > 10,
            "reader {i} saw {} states",
            s.states.len()
        );
        assert_eq!(
            s.states.last(),
            Some(&(final_txid as i64 - 1)),
            "reader {i}: the final state"
        );
    }
    eprintln!(
        "{tag}: long reader: {long_txns} transactions held 700 ms, {long_moved} while OUT moved on, {} errors",
        long_errors.len()
    );
    assert!(long_errors.is_empty(), "long reader: {long_errors:?}");
    assert!(
        long_moved > 0,
        "no long transaction saw a step written meanwhile"
    );
    if let Some((ok, stdout, stderr)) = py {
        eprintln!(
            "{tag}: python3 reader: {}",
            stdout.lines().next().unwrap_or("")
        );
        assert!(ok, "python3 reader failed: {stderr}");
        assert!(stdout.contains(" errors 0"), "python3 reader: {stdout}");
    }

    // OUT is the writer's database, byte for byte.
    let c = Connection::open_with_flags(&out, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    let busy: i64 = c
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0);
    drop(c);
    let got = std::fs::read(&out).unwrap();
    assert_eq!(got.len(), want.len(), "{tag}: database size");
    assert!(got == want, "{tag}: OUT differs from the writer's database");
    let (t, v) = followed(&out);
    assert_eq!(t, final_txid);
    assert!(v["pending"].is_null());
}

/// The scenario on a local bucket, then on S3 when a server is configured
/// (`LTX_FOLLOW_SECS`, default 16).
#[test]
fn follows_a_compacted_bucket_while_readers_read() {
    let secs: u64 = std::env::var("LTX_FOLLOW_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    scenario(&url, "file", secs);
    if let Some(url) = s3_test_url("follow") {
        scenario(&url, "s3", secs);
    }
}

/// An L0 file whose pages were changed after it was written: its header,
/// index and trailer are consistent (a valid LTX file), but its pages do
/// not give the post-apply checksum it claims.
fn tamper(ltx: &[u8]) -> Vec<u8> {
    let f = LtxFile::parse(ltx).unwrap();
    let h = *f.header();
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    let mut page = vec![0u8; PS as usize];
    for (i, e) in f.index().entries().iter().enumerate() {
        assert!(f.read_page(e.pgno, &mut page).unwrap());
        if i == 0 {
            page[PS as usize - 1] ^= 0x5a;
        }
        enc.write_page(&mut out, e.pgno, &page).unwrap();
    }
    enc.finish(&mut out, f.trailer().post_apply_checksum)
        .unwrap();
    LtxFile::parse(&out).unwrap().verify().unwrap();
    out
}

/// A gap is reported and retried until the missing file arrives; a file
/// whose pages do not give its post-apply checksum stops the follower
/// (exit 1) with OUT, its WAL and its record at the last good state; a
/// restart after the file is replaced continues from there.
#[test]
fn gap_then_checksum_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_bucket(dir.path());
    let out = dir.path().join("out.db");
    let ship = Shipper::new(&url);
    let (mut w, snapshot) = Writer::new(dir.path(), 7);
    let upload = |files| ship.upload(files);
    upload(vec![(1, snapshot)]);
    let first = w.batch(5);
    upload(first);
    let f = Follower::start(&url, &out, dir.path(), "a", "100ms");
    wait_for(&out, 6, &f, Duration::from_secs(30));
    // One follower per OUT.
    let r = support::run(&["restore", &url, "-o", support::s(&out), "--follow"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("another ltx restore --follow is following it"),
        "{}",
        r.stderr
    );

    // 7 missing: 8 and 9 cannot be reached.
    let mut next = w.batch(3);
    let seventh = next.remove(0);
    upload(next);
    std::thread::sleep(Duration::from_millis(1500));
    let (t, _) = followed(&out);
    assert_eq!(t, 6, "went past a gap");
    let (_, e) = f.output();
    assert!(
        e.contains("ltx: gap: TXIDs 0000000000000007 to 0000000000000007 are in no file"),
        "{e}"
    );
    assert_eq!(
        e.matches("ltx: gap:").count(),
        1,
        "reported once a minute: {e}"
    );
    upload(vec![seventh]);
    wait_for(&out, 9, &f, Duration::from_secs(30));
    // Said right after the step is recorded.
    let t0 = Instant::now();
    while !f
        .output()
        .1
        .contains("gap after TXID 0000000000000006 closed")
    {
        assert!(t0.elapsed() < Duration::from_secs(5), "{}", f.output().1);
        std::thread::sleep(Duration::from_millis(20));
    }
    let good = w.bytes();

    // TXID 10 with a page changed: refused before anything is written.
    let mut tenth = w.batch(1);
    let (txid, real) = tenth.remove(0);
    assert_eq!(txid, 10);
    upload(vec![(10, tamper(&real))]);
    let mut f = f;
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = f.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "the follower did not stop"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let (_, e) = f.output();
    assert_eq!(status.code(), Some(1), "{e}");
    assert!(e.contains("checksum mismatch"), "{e}");
    assert!(e.contains("left at TXID 0000000000000009"), "{e}");
    let (t, v) = followed(&out);
    assert_eq!(t, 9);
    assert!(v["pending"].is_null(), "{v}");
    let wal = support_side(&out, "-wal");
    let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_len, 0, "frames were written for a refused step");
    let mut buf = Vec::new();
    std::fs::File::open(&out)
        .unwrap()
        .read_to_end(&mut buf)
        .unwrap();
    assert!(buf == good, "OUT is not the state at TXID 9");

    // The real file: a restart continues from 9.
    upload(vec![(10, real)]);
    let f = Follower::start(&url, &out, dir.path(), "b", "100ms");
    wait_for(&out, 10, &f, Duration::from_secs(30));
    let (o, _) = f.output();
    assert!(
        !o.contains("\"event\":\"restore\""),
        "restored again instead of resuming: {o}"
    );
    drop(f);
    let want = w.bytes();
    let c = Connection::open(&out).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
    drop(c);
    assert!(std::fs::read(&out).unwrap() == want);
}

/// Usage errors: an OUT that is not a followed database (without
/// --force), flags that contradict following, a bad interval.
#[test]
fn usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.db");
    std::fs::write(&out, b"not followed").unwrap();
    let root = dir.path().join("bucket");
    let bucket_dir = root.join("app.db/ltx/0");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let (_w, snapshot) = Writer::new(dir.path(), 1);
    std::fs::write(
        bucket_dir.join(ltx_core::format_filename(TxId(1), TxId(1))),
        snapshot,
    )
    .unwrap();
    let r = support::run(&[
        "restore",
        support::s(&root),
        "-o",
        support::s(&out),
        "--follow",
    ]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("is not a database this command follows"),
        "{}",
        r.stderr
    );
    for extra in [&["--txid", "5"][..], &["--dry-run"], &["--interval", "0s"]] {
        let mut a = vec![
            "restore",
            support::s(&root),
            "-o",
            support::s(&out),
            "--follow",
        ];
        a.extend_from_slice(extra);
        let r = support::run(&a);
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stderr);
    }
    let r = support::run(&["restore", support::s(&root), "--follow"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
}

/// The invariants and `quick_check` through a fresh connection: the
/// counter (TXID - 1) OUT holds.
fn check_out(out: &Path) -> i64 {
    let c = Connection::open_with_flags(out, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
    c.busy_timeout(Duration::from_secs(10)).unwrap();
    let (sum, n, logs, qc): (i64, i64, i64, String) = c
        .query_row(
            "SELECT (SELECT sum(bal) FROM acct), (SELECT n FROM meta), (SELECT count(*) FROM log),
                    (SELECT quick_check FROM pragma_quick_check)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((sum, logs, qc.as_str()), (ACCOUNTS * BALANCE, n, "ok"));
    n
}

/// A follower that dies at each point of a step (`LTX_FOLLOW_CRASH`:
/// after the record names the step, after the WAL holds it, after it is
/// published), with a reader connected (the step goes through the
/// wal-index) and without (the next connection recovers it from the WAL):
/// OUT is consistent at the old or the new TXID at once (unpublished
/// frames are invisible to a connected reader), and a restart resumes at
/// the right one, telling them apart by the checksum, and ends equal to
/// the writer's database.
#[test]
fn crash_at_each_point_of_a_step() {
    for point in ["pending", "wal", "published"] {
        for connected in [true, false] {
            let what = format!("{point}, reader connected: {connected}");
            let dir = tempfile::tempdir().unwrap();
            let url = file_bucket(dir.path());
            let out = dir.path().join("out.db");
            let ship = Shipper::new(&url);
            let (mut w, snapshot) = Writer::new(dir.path(), 11);
            let upload = |files| ship.upload(files);
            upload(vec![(1, snapshot)]);
            let first = w.batch(3);
            upload(first);
            let mut f = Follower::start(&url, &out, dir.path(), "a", "100ms");
            wait_for(&out, 4, &f, Duration::from_secs(30));
            f.kill();
            // A reader holding the wal-index open (and a snapshot between
            // its transactions).
            let reader = connected.then(|| {
                let c =
                    Connection::open_with_flags(&out, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
                let n: i64 = c.query_row("SELECT n FROM meta", [], |r| r.get(0)).unwrap();
                assert_eq!(n, 3);
                c
            });
            let next = w.batch(2);
            upload(next);
            let mut f = Follower::start_env(&url, &out, dir.path(), "b", "100ms", Some(point));
            let status = f.child.wait().unwrap();
            assert_eq!(status.code(), Some(99), "{what}: {:?}", f.output());
            let (t, v) = followed(&out);
            assert_eq!(t, 4, "{what}");
            assert_eq!(v["pending"]["txid"], "0000000000000006", "{what}");
            if let Some(c) = &reader {
                let n: i64 = c.query_row("SELECT n FROM meta", [], |r| r.get(0)).unwrap();
                let want = if point == "published" { 5 } else { 3 };
                assert_eq!(n, want, "{what}: what a connected reader sees");
            }
            let n = check_out(&out);
            let want = match (point, connected) {
                ("pending", _) => 3,
                // Unpublished: recovery finds the commit frame only when
                // the wal-index is rebuilt (no connection was open).
                ("wal", true) => 3,
                _ => 5,
            };
            assert_eq!(n, want, "{what}: what a new connection sees");
            let f = Follower::start(&url, &out, dir.path(), "c", "100ms");
            wait_for(&out, 6, &f, Duration::from_secs(30));
            // The record is written just before the resume line is printed.
            let t0 = Instant::now();
            while f.output().0.is_empty() && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let (o, _) = f.output();
            let resume: serde_json::Value =
                serde_json::from_str(o.lines().next().unwrap()).unwrap();
            assert_eq!(resume["event"], "resume", "{what}: {o}");
            assert_eq!(resume["interrupted"], "0000000000000006", "{what}");
            let at = if want == 5 {
                "0000000000000006"
            } else {
                "0000000000000004"
            };
            assert_eq!(resume["txid"], at, "{what}: {o}");
            drop(f);
            drop(reader);
            let want = w.bytes();
            let c = Connection::open(&out).unwrap();
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap();
            drop(c);
            assert!(std::fs::read(&out).unwrap() == want, "{what}: OUT differs");
        }
    }
}

/// The real Litestream 0.5.17 replicating a live database, with its own
/// compaction on (levels of 2, 4 and 8 s, L0 files deleted 3 s after they
/// are compacted, snapshots every 12 s): the follower follows its bucket
/// through Litestream's own files (NoChecksum L0 files, its layout), is
/// killed and restarted once after the L0 files it needs were compacted
/// away (it continues from Litestream's levels), while a reader thread
/// runs `quick_check` and a query in a loop without an error; at the end
/// OUT is the database at the last TXID, byte for byte.
#[test]
fn follows_litestream() {
    use support::litestream::{binary, Kind, Mode, Site};
    let Some(bin) = binary() else { return };
    let mut site = Site::new(&bin, Kind::File, Mode::Compacting, "follow");
    site.start();
    site.workload(4, 3);
    let out = site.path("out.db");
    let dir = site.path("followers");
    std::fs::create_dir_all(&dir).unwrap();
    let url = site.url.clone();
    let mut f = Follower::start(&url, &out, &dir, "1", "100ms");
    wait_for(&out, site.position, &f, Duration::from_secs(30));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (out, stop) = (out.clone(), stop.clone());
        std::thread::spawn(move || {
            let c = Connection::open_with_flags(&out, OpenFlags::SQLITE_OPEN_READ_WRITE).unwrap();
            c.busy_timeout(Duration::from_secs(10)).unwrap();
            let (mut reads, mut errors) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                let r = c.query_row(
                    "SELECT (SELECT count(*) FROM t), (SELECT quick_check FROM pragma_quick_check)",
                    [],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                );
                match r {
                    Ok((_, q)) if q == "ok" => reads += 1,
                    Ok((_, q)) => errors.push(q),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (reads, errors)
        })
    };
    site.workload(8, 5);
    f.kill();
    // Down until Litestream compacted the L0 file after its TXID away.
    let t = followed(&out).0;
    let t0 = Instant::now();
    loop {
        let cat = site.catalog();
        let l0 = cat.iter().any(|o| o.level == 0 && o.min_txid.0 == t + 1);
        let covered = cat
            .iter()
            .any(|o| o.level > 0 && o.min_txid.0 <= t + 1 && o.max_txid.0 > t);
        if covered && !l0 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "L0 {:x} never compacted away",
            t + 1
        );
        site.workload(1, 7);
    }
    let f = Follower::start(&url, &out, &dir, "2", "100ms");
    site.workload(6, 9);
    wait_for(&out, site.position, &f, Duration::from_secs(30));
    stop.store(true, Ordering::Relaxed);
    let (reads, errors) = reader.join().unwrap();
    let (o, e) = f.output();
    assert!(!e.contains("ltx: error"), "{e}");
    let mut landed = Vec::new();
    let mut from_levels = 0;
    for line in o.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event"] == "step" {
            landed.push(u64::from_str_radix(v["to"].as_str().unwrap(), 16).unwrap());
            from_levels += usize::from(
                v["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| parse_key(k.as_str().unwrap()).unwrap().level > 0),
            );
        }
    }
    eprintln!(
        "litestream: {} TXIDs, the restarted follower took {} steps ({from_levels} from compacted levels); reader: {reads} reads, {} errors",
        site.position,
        landed.len(),
        errors.len()
    );
    assert!(errors.is_empty(), "reader: {errors:?}");
    assert!(reads > 10);
    assert!(
        from_levels > 0,
        "no step from Litestream's levels (down at {t:x}): {o}"
    );
    drop(f);
    let c = Connection::open(&out).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap();
    drop(c);
    let want = &site.states[&site.position];
    assert!(
        std::fs::read(&out).unwrap() == *want,
        "OUT is not the database at the last TXID"
    );
}
