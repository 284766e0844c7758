//! Point-in-time reads without a restore: `ltx sql URL` and `ltx page URL`.
//!
//! A rusqlite workload writes one L0 file per commit into a bucket while
//! the library's compactor runs passes (so plans span L0, compacted levels
//! and snapshots); for many TXIDs, `ltx sql --txid` answers several queries
//! exactly as SQLite answers them on `ltx restore --txid`'s result (text
//! and `--json`), and `ltx page --txid` returns the restored page's bytes.
//! A database in WAL mode (Litestream's always are), encoded by `ltx wal
//! encode`, is queried at each of its transactions. A point query on a
//! 64 MiB database reads under 1% of its bytes (`--stats`). Each runs on a
//! `file://` bucket and, when `AWS_ENDPOINT` is set, on the S3 server CI
//! starts (`LTX_REQUIRE_S3=1` makes its absence a failure).

use std::path::Path;

use ltx_compactor::catalog::Layout;
use ltx_compactor::policy::Config;
use ltx_compactor::store::Bucket;
use rusqlite::types::ValueRef;
use serde_json::Value;

#[path = "../../ltx-compactor/tests/common/mod.rs"]
mod common;
use common::{encode_diff, put_l0, s3_test_url, Workload};
mod support;
use support::{ltx, run, Run};

const T0: i64 = 1_800_000_000_000;

fn config() -> Config {
    Config::from_json(
        r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "30s"}],
            "snapshot_interval": "120s", "retention": "900s", "l0_retention": "45s", "settle": "1s"}"#,
    )
    .unwrap()
}

/// `transactions` commits of `w` into `db` of `url`, with a compaction pass
/// every third commit.
fn populate(url: &str, db: &str, layout: Layout, w: &mut Workload, transactions: usize) {
    let s = common::Schedule {
        cfg: &config(),
        start_ms: T0,
        drain: 0,
    };
    common::populate(url, db, layout, w, transactions, &s);
}

/// The rows of `sql` on the database file `path` as the sqlite3 shell
/// prints them in its default mode, computed here with rusqlite.
fn expected_text(path: &Path, sql: &str) -> String {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    let mut out = String::new();
    let mut rows = st.query([]).unwrap();
    while let Some(r) = rows.next().unwrap() {
        let cells: Vec<String> = (0..n)
            .map(|i| match r.get_ref(i).unwrap() {
                ValueRef::Null => String::new(),
                ValueRef::Integer(v) => v.to_string(),
                ValueRef::Real(v) => c
                    .query_row("SELECT CAST(?1 AS TEXT)", [v], |r| r.get(0))
                    .unwrap(),
                ValueRef::Text(b) => String::from_utf8(b.to_vec()).unwrap(),
                ValueRef::Blob(_) => panic!("no blobs in these queries"),
            })
            .collect();
        out.push_str(&cells.join("|"));
        out.push('\n');
    }
    out
}

/// The rows of `sql` as `ltx sql --json` prints them.
fn expected_json(path: &Path, sql: &str) -> Value {
    let c = rusqlite::Connection::open(path).unwrap();
    let mut st = c.prepare(sql).unwrap();
    let n = st.column_count();
    let rows: Vec<Value> = st
        .query_map([], |r| {
            Ok(Value::Array(
                (0..n)
                    .map(|i| match r.get_ref(i).unwrap() {
                        ValueRef::Null => Value::Null,
                        ValueRef::Integer(v) => v.into(),
                        ValueRef::Real(v) => v.into(),
                        ValueRef::Text(b) => String::from_utf8_lossy(b).into(),
                        ValueRef::Blob(b) => hex::encode(b).into(),
                    })
                    .collect(),
            ))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    Value::Array(rows)
}

fn ok(r: &Run, what: &str) {
    assert_eq!(r.code, 0, "{what}: {}{}", r.stdout, r.stderr);
}

const QUERIES: [&str; 6] = [
    "SELECT count(*), sum(k), max(id), min(length(v)) FROM t",
    "SELECT id, k, v FROM t WHERE id = 7",
    "SELECT id, k FROM t ORDER BY k DESC, id LIMIT 5",
    "SELECT k % 7, count(*), avg(k), total(k) / 3.0 FROM t GROUP BY k % 7",
    "SELECT name, type, sql FROM sqlite_schema ORDER BY name",
    "SELECT id, k * 1.5, NULL, 'x|y' FROM t WHERE id BETWEEN 20 AND 25",
];

/// Many TXIDs of `w` through `url`: `ltx sql` equals SQLite on the
/// restore, `ltx page` equals the restored page. Returns the TXIDs checked.
fn check_txids(url: &str, w: &Workload, dir: &Path) -> usize {
    let restored = dir.join("restored.db");
    let mut checked = 0;
    let n = w.states.len();
    let picks: Vec<usize> = (0..n).collect();
    for i in picks {
        let (txid, ts, _) = &w.states[i];
        let t = format!("{txid}");
        let r = run(&[
            "restore",
            url,
            "--txid",
            &t,
            "-o",
            restored.to_str().unwrap(),
            "--force",
        ]);
        if r.code == 1 && r.stderr.contains("cannot be reproduced") {
            continue; // compacted away
        }
        ok(&r, "restore");
        let bytes = std::fs::read(&restored).unwrap();
        assert_eq!(bytes, w.states[i].2, "restore at {t}");
        for q in QUERIES {
            let got = run(&["sql", url, "--txid", &t, q]);
            ok(&got, q);
            assert_eq!(got.stdout, expected_text(&restored, q), "TXID {t}: {q}");
        }
        let q = QUERIES[3];
        let got = run(&["sql", url, "--txid", &t, "--json", q]);
        ok(&got, q);
        // Compared as text: serde_json parses floats to within an ulp
        // only, and both sides print them with the same shortest form.
        assert_eq!(
            got.stdout.replace('\n', ""),
            expected_json(&restored, q).to_string(),
            "TXID {t}: --json {q}"
        );
        // By time: the transaction committed at exactly that time.
        let when = chrono::DateTime::from_timestamp_millis(*ts)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let got = run(&[
            "sql",
            url,
            "--timestamp",
            &when,
            "--stats",
            "--json",
            QUERIES[0],
        ]);
        ok(&got, "--timestamp");
        assert_eq!(
            got.stdout.replace('\n', ""),
            expected_json(&restored, QUERIES[0]).to_string(),
            "TXID {t} by time"
        );
        let st: Value = serde_json::from_str(got.stderr.trim()).unwrap();
        assert_eq!(st["txid"], format!("{:016x}", txid), "{}", got.stderr);
        // Pages: first, second, last and one in the middle.
        let commit = (bytes.len() / 4096) as u32;
        for p in [1, 2, commit / 2 + 1, commit] {
            let got = ltx()
                .args(["page", url, &p.to_string(), "--txid", &t, "--raw"])
                .output()
                .unwrap();
            assert!(
                got.status.success(),
                "{}",
                String::from_utf8_lossy(&got.stderr)
            );
            let a = (p as usize - 1) * 4096;
            assert!(got.stdout == bytes[a..a + 4096], "TXID {t} page {p}");
        }
        let beyond = run(&["page", url, &(commit + 1).to_string(), "--txid", &t]);
        assert_eq!(beyond.code, 2, "{}", beyond.stderr);
        assert!(
            beyond.stderr.contains("beyond the database size"),
            "{}",
            beyond.stderr
        );
        checked += 1;
    }
    checked
}

fn workload_scenario(url: &str, layout: Layout, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::new(dir.path(), 0x5eed);
    populate(url, "app.db", layout, &mut w, 45);
    let db_url = format!("{}/app.db", url.trim_end_matches('/'));
    // The plan spans compacted levels: the latest is not one L0 chain.
    let dry = run(&["restore", &db_url, "--dry-run", "--json"]);
    ok(&dry, "dry run");
    let plan: Value = serde_json::from_str(&dry.stdout).unwrap();
    let keys: Vec<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(
        keys.iter()
            .any(|k| !k.contains("/ltx/0/") && !k.contains("/0000/")),
        "{what}: no compacted file in the plan: {keys:?}"
    );
    let n = check_txids(&db_url, &w, dir.path());
    assert!(n >= 12, "{what}: only {n} TXIDs reproducible");
    eprintln!("{what}: {n} TXIDs checked");
}

#[test]
fn sql_and_page_equal_a_restore_at_many_txids() {
    let root = tempfile::tempdir().unwrap();
    let url = format!("file://{}", root.path().display());
    workload_scenario(&url, Layout::LtxDir, "file");
    if let Some(url) = s3_test_url("pitr") {
        workload_scenario(&url, Layout::HexLevel, "s3");
    }
}

#[test]
fn wal_mode_database_at_each_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("w.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');",
    )
    .unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    for i in 2..=6 {
        c.execute("INSERT INTO t VALUES (?1, 'row ' || ?1)", [i])
            .unwrap();
    }
    let replica = dir.path().join("replica");
    let l0 = replica.join("ltx/0");
    ok(
        &run(&[
            "wal",
            "encode",
            db.to_str().unwrap(),
            "-o",
            l0.to_str().unwrap(),
        ]),
        "wal encode",
    );
    drop(c);
    let url = replica.to_str().unwrap();
    // TXID 1 is the snapshot (one row); TXID k adds row k.
    for k in 1..=6u64 {
        let got = run(&[
            "sql",
            url,
            "--txid",
            &k.to_string(),
            "SELECT count(*), max(v) FROM t",
        ]);
        ok(&got, "sql");
        let want = if k == 1 {
            "1|one\n".to_string()
        } else {
            format!("{k}|row {k}\n")
        };
        assert_eq!(got.stdout, want, "TXID {k}");
    }
    // The header says WAL mode; the page is served as it is.
    let p1 = ltx().args(["page", url, "1", "--raw"]).output().unwrap();
    assert!(p1.status.success());
    assert_eq!((p1.stdout[18], p1.stdout[19]), (2, 2));
    // Usage errors: a write, two statements, a TXID not in the bucket,
    // --txid with an LTX file.
    let w = run(&["sql", url, "DELETE FROM t"]);
    assert_eq!(w.code, 2);
    assert!(w.stderr.contains("read-only"), "{}", w.stderr);
    let two = run(&["sql", url, "SELECT 1; SELECT 2"]);
    assert_eq!(two.code, 2, "{}", two.stderr);
    assert!(two.stderr.contains("one SQL statement"), "{}", two.stderr);
    let one = run(&["sql", url, "SELECT 1; -- done"]);
    assert_eq!(one.stdout, "1\n", "{}", one.stderr);
    let far = run(&["sql", url, "--txid", "99", "SELECT 1"]);
    assert_eq!(far.code, 1, "{}", far.stderr);
    assert!(
        far.stderr.contains("cannot be reproduced"),
        "{}",
        far.stderr
    );
    let snap = std::fs::read_dir(&l0)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("0000000000000001-"))
        .unwrap();
    let f = run(&["page", snap.to_str().unwrap(), "1", "--txid", "1"]);
    assert_eq!(f.code, 2);
    assert!(f.stderr.contains("need a bucket URL"), "{}", f.stderr);
    // The lock page and page 0 are no pages.
    let z = run(&["page", url, "0"]);
    assert_eq!(z.code, 2, "{}", z.stderr);
}

/// A database of at least 64 MiB (incompressible rows) as a snapshot and
/// three L0 files that each update one row.
async fn big_bucket(bucket: &Bucket, dir: &Path) -> (Vec<u8>, u64) {
    let path = dir.join("big.db");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(
        "PRAGMA page_size=4096; PRAGMA journal_mode=DELETE;
         CREATE TABLE t(id INTEGER PRIMARY KEY, k INTEGER, v BLOB);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200000)
         INSERT INTO t SELECT i, i * 7, randomblob(320) FROM n;",
    )
    .unwrap();
    let mut prev = std::fs::read(&path).unwrap();
    assert!(prev.len() >= 64 << 20, "{} bytes", prev.len());
    let snap = encode_diff(&[], &prev, 1, T0);
    let db = bucket.prefix();
    put_l0(bucket, db, Layout::LtxDir, 1, snap).await;
    for txid in 2..=4u64 {
        c.execute(
            "UPDATE t SET k = ?1 WHERE id = ?2",
            [txid as i64, 1000 * txid as i64],
        )
        .unwrap();
        let cur = std::fs::read(&path).unwrap();
        let l0 = encode_diff(&prev, &cur, txid, T0 + txid as i64);
        put_l0(bucket, db, Layout::LtxDir, txid, l0).await;
        prev = cur;
    }
    (prev, 4)
}

fn point_query_share(url: &str, db_bytes: u64, what: &str) {
    for (id, k) in [(77, 539), (2000, 2), (4000, 4), (150_000, 1_050_000)] {
        let q = format!("SELECT id, k, length(v) FROM t WHERE id = {id}");
        let r = run(&["sql", url, "--stats", "--json", &q]);
        ok(&r, &q);
        let rows: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(rows, serde_json::json!([[id, k, 320]]), "{what}: {q}");
        let st: Value = serde_json::from_str(r.stderr.trim()).unwrap();
        let read = st["bytes_read"].as_u64().unwrap();
        assert_eq!(st["database_bytes"].as_u64(), Some(db_bytes));
        assert!(
            read * 100 < db_bytes,
            "{what}: a point query read {read} of {db_bytes} bytes"
        );
        assert!(st["pages_fetched"].as_u64().unwrap() <= 8, "{st}");
        eprintln!("{what}: {q}: {st}");
    }
}

#[test]
fn point_query_reads_under_one_percent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    std::fs::create_dir(&root).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bucket = Bucket::open(root.to_str().unwrap()).unwrap();
    let (db, _) = rt.block_on(big_bucket(&bucket, dir.path()));
    point_query_share(root.to_str().unwrap(), db.len() as u64, "file");
    if let Some(url) = s3_test_url("pitr-big") {
        let b = Bucket::open(&url).unwrap();
        let sub = dir.path().join("s3");
        std::fs::create_dir(&sub).unwrap();
        let (db, _) = rt.block_on(big_bucket(&b, &sub));
        point_query_share(&url, db.len() as u64, "s3");
    }
}
