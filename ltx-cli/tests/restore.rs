//! `ltx restore`, `ltx list URL` and `ltx verify URL` with real parts: a
//! rusqlite workload writes one L0 LTX file per commit into a `file://`
//! bucket, the library's compactor runs passes on a simulated clock, then
//! the binary restores by TXID (hex and decimal), by time and the latest
//! state, each compared byte for byte with the saved state; a corrupted
//! compacted object is reported by `ltx verify URL` and refused by
//! `ltx restore`, which leaves an existing output byte-identical; and
//! `ltx restore --force` SIGKILLed at random moments leaves its output as
//! the old or the new database, never a mix (`LTX_KILL_RUNS=N`, default 30).
//! The same scenario runs against the S3-protocol server CI starts (S3 key
//! layout) when `AWS_ENDPOINT` is set; `LTX_REQUIRE_S3=1` makes its absence
//! a failure.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use ltx_compactor::catalog::{format_key, Layout};
use ltx_compactor::compact::{Compactor, PassOptions};
use ltx_compactor::lease::Lease;
use ltx_compactor::policy::Config;
use ltx_compactor::store::Bucket;
use ltx_core::checksum::database_checksum;
use ltx_core::{Checksum, Encoder, Header, PageSize, TxId};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStoreExt, PutPayload};
use rusqlite::Connection;
use serde_json::Value;
use sha2::{Digest, Sha256};

fn ltx() -> Command {
    Command::cargo_bin("ltx").unwrap()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

const PS: u32 = 4096;
const T0: i64 = 1_800_000_000_000;

/// A database under a workload, with every committed state kept.
struct Workload {
    path: PathBuf,
    conn: Connection,
    prev: Vec<u8>,
    txid: u64,
    rng: u64,
    /// Bytes of random payload per inserted row.
    row: usize,
    /// (txid, timestamp ms, database bytes) after each commit.
    states: Vec<(u64, i64, Vec<u8>)>,
}

impl Workload {
    fn new(dir: &Path, seed: u64, row: usize) -> Workload {
        let path = dir.join("app.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE; PRAGMA auto_vacuum=NONE;
             CREATE TABLE t(id INTEGER PRIMARY KEY AUTOINCREMENT, k INTEGER, v TEXT);
             CREATE INDEX t_k ON t(k);",
        )
        .unwrap();
        Workload {
            path,
            conn,
            prev: Vec::new(),
            txid: 0,
            rng: seed | 1,
            row,
            states: Vec::new(),
        }
    }

    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// Runs one transaction (or `sql`); returns its L0 file (TXID, bytes).
    fn step_sql(&mut self, sql: &str, ts_ms: i64) -> (u64, Vec<u8>) {
        self.conn.execute_batch(sql).unwrap();
        let cur = std::fs::read(&self.path).unwrap();
        self.txid += 1;
        let ltx = encode_diff(&self.prev, &cur, self.txid, ts_ms);
        self.states.push((self.txid, ts_ms, cur.clone()));
        self.prev = cur;
        (self.txid, ltx)
    }

    /// Runs one random transaction; returns its L0 file (TXID, bytes).
    fn step(&mut self, ts_ms: i64) -> (u64, Vec<u8>) {
        let r = self.rand() % 100;
        let n = 1 + self.rand() % 40;
        let row = self.row;
        let sql = match r {
            _ if self.txid == 0 => "INSERT INTO t(k, v) VALUES (1, 'first');".to_string(),
            0..=69 => format!(
                "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < {n})
                 INSERT INTO t(k, v) SELECT abs(random()) % 100000, hex(randomblob({row})) FROM n; COMMIT;"
            ),
            70..=89 => format!(
                "BEGIN; UPDATE t SET v = hex(randomblob({row})) WHERE id IN
                 (SELECT id FROM t ORDER BY random() LIMIT {n}); COMMIT;"
            ),
            90..=97 => format!(
                "DELETE FROM t WHERE id IN (SELECT id FROM t ORDER BY random() LIMIT {});",
                n * 3
            ),
            _ => "VACUUM;".to_string(),
        };
        self.step_sql(&sql, ts_ms)
    }
}

/// The LTX file taking `prev` to `cur` as transaction `txid`.
fn encode_diff(prev: &[u8], cur: &[u8], txid: u64, ts_ms: i64) -> Vec<u8> {
    let ps = PageSize::new(PS).unwrap();
    let n = (cur.len() / PS as usize) as u32;
    let mut h = Header::new(ps, TxId(txid), TxId(txid));
    h.commit = n;
    h.timestamp = ts_ms;
    if txid > 1 {
        h.pre_apply_checksum = database_checksum(ps, prev);
    }
    let mut out = Vec::new();
    let mut enc = Encoder::new(h, &mut out).unwrap();
    let lock = ps.lock_pgno();
    for pgno in 1..=n {
        if pgno == lock {
            continue;
        }
        let a = (pgno as usize - 1) * PS as usize;
        let page = &cur[a..a + PS as usize];
        if txid == 1 || prev.get(a..a + PS as usize) != Some(page) {
            enc.write_page(&mut out, pgno, page).unwrap();
        }
    }
    let post = database_checksum(ps, cur);
    let post = if post == Checksum(0) {
        Checksum(ltx_core::types::CHECKSUM_FLAG)
    } else {
        post
    };
    enc.finish(&mut out, post).unwrap();
    out
}

async fn put_l0(bucket: &Bucket, db: &str, layout: Layout, txid: u64, bytes: Vec<u8>) {
    let key = format_key(db, layout, 0, TxId(txid), TxId(txid));
    bucket
        .store()
        .put(&ObjPath::from(key.as_str()), PutPayload::from(bytes))
        .await
        .unwrap();
}

/// A small ladder so that minutes of simulated time cross every level.
fn small_config() -> Config {
    Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "20s"},
                      {"level": 3, "interval": "40s"}, {"level": 4, "interval": "80s"}],
            "snapshot_interval": "320s", "retention": "900s", "l0_retention": "0s", "settle": "1s"}"#,
    )
    .unwrap()
}

/// Runs `transactions` commits into `db` of the bucket at `url`, with a
/// compaction pass every third commit and a drain at the end.
fn populate(url: &str, db: &str, layout: Layout, w: &mut Workload, transactions: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bucket = Bucket::open(url).unwrap();
        let db = ltx_compactor::store::join(bucket.prefix(), db);
        let mut c = Compactor::new(bucket.clone(), small_config(), PassOptions::default());
        let lease = Lease::acquire(&bucket, &db, "test", 600_000)
            .await
            .unwrap()
            .expect("lease free");
        let mut now = T0 + w.txid as i64 * 3_000;
        for i in 0..transactions {
            now += 3_000;
            let (txid, ltx) = w.step(now);
            put_l0(&bucket, &db, layout, txid, ltx).await;
            if i % 3 == 2 {
                let r = c.pass(&db, now + 1_500, &lease).await.unwrap();
                assert!(r.contiguity.is_empty(), "{:?}", r.contiguity);
            }
        }
        for k in 1..=3 {
            c.pass(&db, now + k * 60_000, &lease).await.unwrap();
        }
        lease.release().await.unwrap();
    });
}

fn rfc3339(ms: i64) -> String {
    // Howard Hinnant's days-to-civil, as the reference prints times.
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

fn json_of(out: &[u8]) -> Value {
    serde_json::from_slice(out).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(out));
    })
}

/// Restores `args` into `out` (replacing it), returns the JSON report.
fn restore(url: &str, out: &Path, args: &[&str]) -> Value {
    let o = ltx()
        .arg("restore")
        .arg(url)
        .arg("-o")
        .arg(out)
        .args(["--force", "--json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "ltx restore {url} {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    json_of(&o.stdout)
}

/// Restores many TXIDs and times from `url` with the binary; every result
/// equals the saved state. Shared with `tests/remote.rs` in spirit.
fn check_restores(url: &str, w: &Workload, out_dir: &Path, every: usize) -> usize {
    let out = out_dir.join("restored.db");
    // Which TXIDs the bucket can still reproduce: the dry-run of each.
    let mut restored = 0;
    for (i, (txid, _, bytes)) in w.states.iter().enumerate().step_by(every) {
        let dry = ltx()
            .args(["restore", url, "--dry-run", "--json", "--txid"])
            .arg(txid.to_string())
            .output()
            .unwrap();
        if !dry.status.success() {
            // Not reproducible any more (compacted away): the message says so.
            assert_eq!(dry.status.code(), Some(1));
            let e = String::from_utf8_lossy(&dry.stderr);
            assert!(e.contains("cannot be reproduced"), "{e}");
            continue;
        }
        // Alternate the TXID forms: decimal, 16 hex digits, 0x hex.
        let form = match i % 3 {
            0 => txid.to_string(),
            1 => format!("{txid:016x}"),
            _ => format!("{txid:#x}"),
        };
        let rep = restore(url, &out, &["--txid", &form]);
        assert_eq!(rep["txid"], format!("{txid:016x}"), "{form}");
        assert!(
            std::fs::read(&out).unwrap() == *bytes,
            "TXID {txid}: restored database differs"
        );
        restored += 1;
    }
    // By time: the latest reproducible transaction at or before it.
    for (_, ts, _) in w.states.iter().step_by(every * 2) {
        let at = ts + 1_000;
        let o = ltx()
            .args(["restore", url, "--dry-run", "--json", "--timestamp"])
            .arg(rfc3339(at))
            .output()
            .unwrap();
        if !o.status.success() {
            continue;
        }
        let rep = restore(url, &out, &["--timestamp", &rfc3339(at)]);
        let txid = u64::from_str_radix(rep["txid"].as_str().unwrap(), 16).unwrap();
        let (_, ts_got, want) = &w.states[txid as usize - 1];
        assert!(*ts_got <= at, "landed after the requested time");
        assert_eq!(rep["timestamp_ms"].as_i64().unwrap(), *ts_got);
        assert_eq!(rep["timestamp"], rfc3339(*ts_got));
        // Nothing reproducible between the landing and the requested time
        // was skipped: the next state is after the requested time or not
        // reproducible.
        assert!(std::fs::read(&out).unwrap() == *want, "time {at}");
    }
    // Latest, with the integrity check, human output.
    let (last_txid, last_ts, last) = w.states.last().unwrap();
    let o = ltx()
        .args(["restore", url, "--force", "--integrity-check", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        text.starts_with(&format!(
            "restored TXID {last_txid:016x} at {} from ",
            rfc3339(*last_ts)
        )),
        "{text}"
    );
    assert!(text.contains(&format!(" to {}\n", out.display())), "{text}");
    assert!(text.contains("\nchecksum: "), "{text}");
    assert!(text.contains("\nintegrity_check: ok\n"), "{text}");
    assert!(std::fs::read(&out).unwrap() == *last);
    restored
}

#[test]
fn file_bucket_restores_by_txid_time_and_latest() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let url = format!("file://{}", bucket_dir.display());
    let wdir = tmp.path().join("work");
    std::fs::create_dir_all(&wdir).unwrap();
    let mut w = Workload::new(&wdir, 11, 40);
    populate(&url, "tenant-1/app.db", Layout::LtxDir, &mut w, 180);
    let db_url = format!("{url}/tenant-1/app.db");

    // The JSON report of a real restore and of a dry run.
    let out = tmp.path().join("out.db");
    let rep = restore(&db_url, &out, &[]);
    for k in [
        "db",
        "txid",
        "timestamp_ms",
        "timestamp",
        "timestamp_exact",
        "files",
        "files_bytes",
        "bytes_read",
        "page_size",
        "commit",
        "pages",
        "checksum",
        "output",
    ] {
        assert!(rep.get(k).is_some(), "{k} missing in {rep}");
    }
    assert_eq!(rep["db"], db_url.as_str());
    assert_eq!(rep["page_size"], 4096);
    let nfiles = rep["files"].as_array().unwrap().len();
    assert!((1..=12).contains(&nfiles), "{nfiles} files");
    let dry_out = tmp.path().join("dry.db");
    let o = ltx()
        .args(["restore", &db_url, "--dry-run", "-o"])
        .arg(&dry_out)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(!dry_out.exists(), "--dry-run wrote the output");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("would restore TXID "), "{text}");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 3);

    // The root holds exactly one database: its URL works too.
    let rep = restore(&url, &out, &["--txid", "1"]);
    assert_eq!(rep["txid"], "0000000000000001");
    assert_eq!(rep["db"], "tenant-1/app.db");
    assert!(std::fs::read(&out).unwrap() == w.states[0].2);

    let n = check_restores(&db_url, &w, tmp.path(), 2);
    assert!(n >= 15, "only {n} TXIDs restorable");
    eprintln!(
        "file bucket: {} transactions, {n} TXIDs restored by the binary, {:.1}s",
        w.states.len(),
        started.elapsed().as_secs_f64()
    );

    // list and verify on the URL.
    let o = ltx().args(["list", &url]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.starts_with("LEVEL"), "{text}");
    let o = ltx().args(["list", "--json", &url]).output().unwrap();
    let rows = json_of(&o.stdout);
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["error"].is_null()));
    assert!(rows.iter().any(|r| r["level"] == 9), "a snapshot exists");
    assert!(rows.iter().all(|r| r["pages"].as_u64().is_some()));
    let o = ltx().args(["verify", &url]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(" 0 failed, 0 chain problems"), "{text}");
    let o = ltx().args(["verify", "--json", &db_url]).output().unwrap();
    assert!(o.status.success());
    let v = json_of(&o.stdout);
    assert_eq!(v["ok"], true);
    assert_eq!(
        v["databases"][0]["latest_restorable_txid"],
        format!("{:016x}", w.txid)
    );
    // Local paths keep working as before (files only: the directory chain
    // check of `ltx verify DIR` predates cumulative windows and reports
    // their bridged gaps and overlaps; the URL form above accounts for them).
    let o = ltx()
        .args(["verify", "--no-chain"])
        .arg(&bucket_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));

    // Usage errors: exit 2, output untouched.
    let before = std::fs::read(&out).unwrap();
    let o = ltx()
        .args(["restore", &db_url, "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("exists (use --force"));
    let o = ltx()
        .args(["restore", &db_url, "--force", "--txid", "2a", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // A TXID beyond the end: exit 1, naming it.
    let o = ltx()
        .args(["restore", &db_url, "--force", "--txid", "999999", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("TXID 00000000000f423f cannot be reproduced"),
        "{e}"
    );
    assert!(std::fs::read(&out).unwrap() == before);
}

#[test]
fn s3_bucket_restores_lists_and_verifies() {
    let Ok(_) = std::env::var("AWS_ENDPOINT") else {
        assert!(
            !std::env::var("LTX_REQUIRE_S3").is_ok_and(|v| v == "1"),
            "LTX_REQUIRE_S3=1 but AWS_ENDPOINT is not set"
        );
        eprintln!("AWS_ENDPOINT not set: S3 scenario skipped (CI runs it)");
        return;
    };
    let started = Instant::now();
    let bucket = std::env::var("LTX_TEST_S3_BUCKET").unwrap_or_else(|_| "ltx-test".into());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let root = format!("s3://{bucket}/cli-{}-{nanos}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Workload::new(tmp.path(), 21, 40);
    populate(&root, "tenant-9/app.db", Layout::HexLevel, &mut w, 120);
    let db_url = format!("{root}/tenant-9/app.db");
    let n = check_restores(&db_url, &w, tmp.path(), 3);
    assert!(n >= 8, "only {n} TXIDs restorable");
    // The root holds one database: restore by time through it.
    let out = tmp.path().join("root.db");
    let rep = restore(&root, &out, &["--txid", "1"]);
    assert_eq!(rep["txid"], "0000000000000001");
    assert!(std::fs::read(&out).unwrap() == w.states[0].2);

    let o = ltx().args(["list", "--json", &root]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = json_of(&o.stdout);
    let rows = rows.as_array().unwrap();
    assert!(rows.iter().all(|r| r["error"].is_null()));
    assert!(rows
        .iter()
        .all(|r| r["key"].as_str().unwrap().contains("/tenant-9/app.db/000")));
    let o = ltx().args(["verify", &root]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains(" 0 failed, 0 chain problems"), "{text}");
    eprintln!(
        "s3 bucket: {} transactions, {n} TXIDs restored by the binary, {} objects verified, {:.1}s",
        w.states.len(),
        rows.len(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn several_databases_must_be_named() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let url = format!("file://{}", bucket_dir.display());
    for db in ["a.db", "b.db"] {
        let wdir = tmp.path().join(db);
        std::fs::create_dir_all(&wdir).unwrap();
        let mut w = Workload::new(&wdir, 3, 20);
        populate(&url, db, Layout::HexLevel, &mut w, 6);
    }
    let o = ltx()
        .args(["restore", &url, "-o"])
        .arg(tmp.path().join("x.db"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("2 databases found, name one: a.db, b.db"), "{e}");
    // list and verify cover both.
    let o = ltx().args(["verify", &url]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("database a.db:") && text.contains("database b.db:"));
    let o = ltx().args(["list", "--json", &url]).output().unwrap();
    let rows = json_of(&o.stdout);
    let dbs: std::collections::BTreeSet<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["db"].as_str().unwrap())
        .collect();
    assert_eq!(dbs.into_iter().collect::<Vec<_>>(), ["a.db", "b.db"]);
}

#[test]
fn corrupted_compacted_object_is_reported_and_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let url = format!("file://{}", bucket_dir.display());
    let wdir = tmp.path().join("work");
    std::fs::create_dir_all(&wdir).unwrap();
    let mut w = Workload::new(&wdir, 5, 40);
    populate(&url, "app.db", Layout::LtxDir, &mut w, 60);

    // An existing output holding some other state.
    let out = tmp.path().join("out.db");
    std::fs::write(&out, &w.states[0].2).unwrap();
    let before = std::fs::read(&out).unwrap();

    // The newest file of the latest plan: every one of its pages is fetched.
    let o = ltx()
        .args(["restore", &url, "--dry-run", "--json"])
        .output()
        .unwrap();
    let plan = json_of(&o.stdout);
    let key = plan["files"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    assert!(!key.contains("/ltx/0/"), "{key} is not a compacted file");
    let path = bucket_dir.join(&key);
    let mut b = std::fs::read(&path).unwrap();
    let at = 100 + 6 + 4 + 24; // inside the first frame's compressed data
    b[at] ^= 0x20;
    std::fs::write(&path, &b).unwrap();

    let o = ltx().args(["verify", &url]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains(&format!("FAIL {key}: ")), "{text}");
    let o = ltx().args(["verify", "--json", &url]).output().unwrap();
    let v = json_of(&o.stdout);
    let bad: Vec<&Value> = v["databases"][0]["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["ok"] == false)
        .collect();
    assert_eq!(bad.len(), 1);
    assert_eq!(bad[0]["key"], key.as_str());
    assert!(bad[0]["offset"].as_u64().is_some(), "{}", bad[0]);

    for extra in [&[][..], &["--integrity-check"][..]] {
        let o = ltx()
            .args(["restore", &url, "--force", "-o"])
            .arg(&out)
            .args(extra)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1));
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains(&key), "{e}");
        assert!(std::fs::read(&out).unwrap() == before, "output changed");
        let left: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 3, "temp files left: {left:?}");
    }
}

/// SplitMix64.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `ltx restore --force` SIGKILLed after a random delay: the output is the
/// old database or the restored one, never anything else.
#[test]
fn restore_killed_at_random_moments_leaves_old_or_new() {
    let runs: usize = std::env::var("LTX_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    let url = format!("file://{}", bucket_dir.display());
    let wdir = tmp.path().join("work");
    std::fs::create_dir_all(&wdir).unwrap();
    // A few MB: 5000 rows of ~1.2 KB, then updates over a third of them.
    let mut w = Workload::new(&wdir, 9, 600);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = Bucket::open(&url).unwrap();
    let mut steps = vec![
        "INSERT INTO t(k, v) VALUES (1, 'first');".to_string(),
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 5000)
         INSERT INTO t(k, v) SELECT i, hex(randomblob(600)) FROM n;"
            .to_string(),
    ];
    for k in 0..3 {
        steps.push(format!(
            "UPDATE t SET v = hex(randomblob(600)) WHERE id % 9 = {k};"
        ));
    }
    for (i, sql) in steps.iter().enumerate() {
        let (txid, ltx) = w.step_sql(sql, T0 + i as i64 * 1000);
        rt.block_on(put_l0(&bucket, "app.db", Layout::LtxDir, txid, ltx));
    }
    drop(rt);
    let old = w.states[1].2.clone();
    let new = w.states.last().unwrap().2.clone();
    let (h_old, h_new) = (sha256(&old), sha256(&new));
    assert_ne!(h_old, h_new);

    let tdir = tmp.path().join("target");
    std::fs::create_dir_all(&tdir).unwrap();
    let out = tdir.join("out.db");
    let bin = assert_cmd::cargo::cargo_bin("ltx");
    let spawn = || {
        std::process::Command::new(&bin)
            .arg("restore")
            .arg(&url)
            .arg("--force")
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let others = || -> Vec<String> {
        std::fs::read_dir(&tdir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "out.db")
            .collect()
    };
    let reset = || {
        let _ = std::fs::remove_file(&out);
        std::fs::write(&out, &old).unwrap();
    };
    let mut full = Vec::new();
    for _ in 0..3 {
        reset();
        let t = Instant::now();
        assert!(spawn().wait().unwrap().success());
        full.push(t.elapsed());
        assert_eq!(sha256(&std::fs::read(&out).unwrap()), h_new);
    }
    full.sort();
    let typical = full[1];
    let max_delay = typical.as_micros() as u64 * 13 / 10;

    let mut rng = Rng(0x5E57_0E00);
    let (mut saw_old, mut saw_new, mut exited_first, mut leftovers, mut cleaned) =
        (0u32, 0u32, 0u32, 0u32, 0u32);
    let mut bad = Vec::new();
    for run in 0..runs {
        reset();
        let delay = Duration::from_micros(rng.next() % max_delay.max(1));
        let mut child = spawn();
        std::thread::sleep(delay);
        if let Ok(Some(_)) = child.try_wait() {
            exited_first += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let got = std::fs::read(&out).unwrap();
        let h = sha256(&got);
        let left = others();
        if !left.is_empty() {
            leftovers += 1;
        }
        if h == h_old {
            saw_old += 1;
        } else if h == h_new {
            saw_new += 1;
        } else {
            bad.push(format!(
                "run {run}: delay {delay:?}: output is neither old nor new ({} bytes)",
                got.len()
            ));
        }
        // The next restore removes what a killed one left, and succeeds.
        if !left.is_empty() || run % 10 == 0 {
            let o = spawn().wait_with_output().unwrap();
            assert!(o.status.success(), "run {run}: restore after a kill failed");
            assert_eq!(sha256(&std::fs::read(&out).unwrap()), h_new);
            assert!(others().is_empty(), "run {run}: left {:?}", others());
            if !left.is_empty() {
                cleaned += 1;
            }
        }
    }
    println!(
        "restore kill test: {runs} runs, output {} -> {} bytes from {} L0 files, full restore ~{typical:?}, kill delay 0..{:?}",
        old.len(),
        new.len(),
        w.states.len(),
        Duration::from_micros(max_delay)
    );
    println!(
        "  output after the kill: old {saw_old}, new {saw_new} (in {exited_first} runs restore had already exited), neither {}; runs leaving temp files: {leftovers}, removed by the next restore: {cleaned}; {:.1}s",
        bad.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(
        saw_old > 0 && saw_new > 0,
        "the delays must cover both outcomes"
    );
}
