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
use std::time::Instant;

use ltx_compactor::catalog::Layout;
use ltx_compactor::policy::Config;
use ltx_compactor::store::Bucket;
use serde_json::Value;

// The workload, L0 encoder and bucket helpers are ltx-compactor's test
// support, shared rather than copied.
#[path = "../../ltx-compactor/tests/common/mod.rs"]
mod common;
use common::{put_l0, s3_test_url, Workload};
mod support;
use support::kill::{kill_sweep, Subject};
use support::ltx;

const T0: i64 = 1_800_000_000_000;

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
    let s = common::Schedule {
        cfg: &small_config(),
        start_ms: T0 + w.txid as i64 * 3_000,
        drain: 3,
    };
    common::populate(url, db, layout, w, transactions, &s);
}

/// The time `ltx restore` prints, from chrono (an independent
/// implementation of the calendar the binary computes itself).
fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
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

/// A scratch directory holding `bucket/` (returned with its `file://` URL)
/// and `work/` (for the workload's database).
fn file_bucket() -> (tempfile::TempDir, PathBuf, String, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let bucket_dir = tmp.path().join("bucket");
    let wdir = tmp.path().join("work");
    std::fs::create_dir_all(&bucket_dir).unwrap();
    std::fs::create_dir_all(&wdir).unwrap();
    let url = format!("file://{}", bucket_dir.display());
    (tmp, bucket_dir, url, wdir)
}

/// The `(level, min, max, path)` of every LTX file under `ltx_dir/<level>/`.
fn level_files(ltx_dir: &Path) -> Vec<(u32, u64, u64, std::path::PathBuf)> {
    let mut out = Vec::new();
    for l in std::fs::read_dir(ltx_dir).unwrap() {
        let l = l.unwrap();
        let Ok(level) = l.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        for f in std::fs::read_dir(l.path()).unwrap() {
            let p = f.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if let Some((a, b)) = name.strip_suffix(".ltx").and_then(|n| n.split_once('-')) {
                let (a, b) = (
                    u64::from_str_radix(a, 16).unwrap(),
                    u64::from_str_radix(b, 16).unwrap(),
                );
                out.push((level, a, b, p));
            }
        }
    }
    out
}

/// A copy of the database whose only file bridging a level's gap or
/// overlap is removed: `ltx verify DIR` reports it (bridging is not a
/// blanket pass for gaps and overlaps).
fn check_local_verify_without_a_bridge(ltx_dir: &Path, scratch: &Path) {
    let files = level_files(ltx_dir);
    // A file of level k ≥ 1 that does not continue the file before it in
    // its level, and exactly one coarser file ending just before it.
    let mut found = None;
    for &(k, min, max, ref p) in &files {
        if k == 0 || k >= 9 || min == 1 {
            continue;
        }
        let prev = files
            .iter()
            .filter(|f| f.0 == k && (f.1, f.2) < (min, max))
            .max_by_key(|f| (f.1, f.2));
        if prev.is_none_or(|f| f.2 + 1 == min) {
            continue;
        }
        let bridges: Vec<_> = files.iter().filter(|f| f.0 > k && f.2 + 1 == min).collect();
        if let [b] = bridges[..] {
            found = Some((p.clone(), b.3.clone()));
            break;
        }
    }
    let (file, bridge) = found.expect("the compactor's layout has a bridged file");
    let copy = scratch.join("no-bridge");
    for (_, _, _, p) in &files {
        let rel = p.strip_prefix(ltx_dir).unwrap();
        let dst = copy.join(rel);
        std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
        if *p != bridge {
            std::fs::copy(p, &dst).unwrap();
        }
    }
    let o = ltx()
        .args(["verify", "--json"])
        .arg(&copy)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let v = json_of(&o.stdout);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    let problems = v["chain_problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| {
            (p["kind"] == "gap" || p["kind"] == "overlap")
                && p["next"].as_str().unwrap().ends_with(&name)
        }),
        "removing {} did not report {name}: {v}",
        bridge.display()
    );
}

#[test]
fn file_bucket_restores_by_txid_time_and_latest() {
    let started = Instant::now();
    let (tmp, bucket_dir, url, wdir) = file_bucket();
    let mut w = Workload::with_row(&wdir, 11, 40);
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
    // The directory itself, as local files: the chain check follows the
    // cumulative windows (a level's file starting just after a coarser
    // file is bridged by it), so the compactor's layout verifies clean.
    let o = ltx()
        .args(["verify", "--json"])
        .arg(&bucket_dir)
        .output()
        .unwrap();
    let v = json_of(&o.stdout);
    assert!(o.status.success(), "{v}");
    assert_eq!(v["summary"]["chain_problems"], 0, "{v}");
    assert!(
        v["summary"]["chains_replayed"].as_u64().unwrap() >= 1,
        "{v}"
    );
    check_local_verify_without_a_bridge(&bucket_dir.join("tenant-1/app.db/ltx"), tmp.path());

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
    let Some(root) = s3_test_url("cli") else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let mut w = Workload::with_row(tmp.path(), 21, 40);
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

/// `ltx restore --json` reports its requests by kind; N small files cost
/// the listing and one GET each (no header read for a timestamp, no second
/// read for the frames).
fn check_requests(url: &str, db: &str, dir: &Path) {
    let n = 40u64;
    let mut w = Workload::with_row(dir, 17, 40);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bucket = Bucket::open(url).unwrap();
        let db = ltx_compactor::store::join(bucket.prefix(), db);
        for i in 0..n {
            let (txid, ltx) = w.step(T0 + i as i64 * 1000);
            put_l0(&bucket, &db, Layout::HexLevel, txid, ltx).await;
        }
    });
    let out = dir.join("req.db");
    let rep = restore(url, &out, &[]);
    assert!(std::fs::read(&out).unwrap() == w.states.last().unwrap().2);
    let r = rep["requests"].as_object().expect("a requests object");
    let names: Vec<&str> = r.keys().map(String::as_str).collect();
    let mut want = vec![
        "list",
        "get",
        "get_range",
        "head",
        "put",
        "multipart_part",
        "copy",
        "delete",
    ];
    want.sort_unstable();
    let mut got = names.clone();
    got.sort_unstable();
    assert_eq!(got, want, "{rep}");
    let c = |k: &str| r[k].as_u64().unwrap();
    assert_eq!(c("get"), n, "{rep}");
    assert_eq!(
        (c("get_range"), c("head"), c("put"), c("delete")),
        (0, 0, 0, 0)
    );
    assert!((1..=5).contains(&c("list")), "{rep}");
    // A dry run: the listing and the last file's header (for its time).
    let o = ltx()
        .args(["restore", url, "--dry-run", "--json"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let dry = json_of(&o.stdout);
    assert_eq!(dry["requests"]["get_range"], 1, "{dry}");
    assert_eq!(dry["requests"]["get"], 0, "{dry}");
    assert_eq!(dry["timestamp_ms"], T0 + (n as i64 - 1) * 1000);
    // The text report says it too.
    let o = ltx()
        .args(["restore", url, "--force", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains(&format!("\nrequests: {} (list ", n + c("list"))),
        "{text}"
    );
}

#[test]
fn restore_reports_requests_by_kind() {
    let (_tmp, _, url, wdir) = file_bucket();
    check_requests(&url, "app.db", &wdir);
    if let Some(root) = s3_test_url("cli-req") {
        let tmp = tempfile::tempdir().unwrap();
        check_requests(&format!("{root}/app.db"), "", tmp.path());
    }
}

#[test]
fn several_databases_must_be_named() {
    let (tmp, _, url, _) = file_bucket();
    for db in ["a.db", "b.db"] {
        let wdir = tmp.path().join(db);
        std::fs::create_dir_all(&wdir).unwrap();
        let mut w = Workload::with_row(&wdir, 3, 20);
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
    let (tmp, bucket_dir, url, wdir) = file_bucket();
    let mut w = Workload::with_row(&wdir, 5, 40);
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

/// `ltx restore --force` SIGKILLed after a random delay: the output is the
/// old database or the restored one, never anything else.
#[test]
fn restore_killed_at_random_moments_leaves_old_or_new() {
    let runs: usize = std::env::var("LTX_KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let started = Instant::now();
    let (tmp, _, url, wdir) = file_bucket();
    // A few MB: 5000 rows of ~1.2 KB, then updates over a third of them.
    let mut w = Workload::with_row(&wdir, 9, 600);
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
    let read = || std::fs::read(&out).unwrap();
    // The next restore removes what a killed one left, and succeeds.
    let after_kill = |run: usize, _old: bool, left: bool| {
        if left || run.is_multiple_of(10) {
            let o = spawn().wait_with_output().unwrap();
            assert!(o.status.success(), "run {run}: restore after a kill failed");
            assert!(read() == new, "run {run}: restore after a kill");
            assert!(others().is_empty(), "run {run}: left {:?}", others());
        }
        left
    };
    let subject = Subject {
        spawn: &spawn,
        reset: &reset,
        read: &read,
        leftovers: &others,
        after_kill: &after_kill,
    };
    let o = kill_sweep(&subject, &old, &new, runs, 0x5E57_0E00);
    println!(
        "restore kill test: {runs} runs, output {} -> {} bytes from {} L0 files, full restore ~{:?}, kill delay 0..{:?}",
        old.len(),
        new.len(),
        w.states.len(),
        o.typical,
        o.max_delay
    );
    println!(
        "{}; {:.1}s",
        o.summary(
            "output",
            ("old", "new"),
            "restore",
            "removed by the next restore"
        ),
        started.elapsed().as_secs_f64()
    );
    o.assert_held();
}
