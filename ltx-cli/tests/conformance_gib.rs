//! The conformance runner over a database past 1 GiB (issue 12): a real
//! SQLite database of 64 KiB pages that spans the lock page (byte
//! 0x40000000, page 16385), a snapshot of it written by `ltx encode-db`, two
//! incremental files of real SQLite transactions written by `ltx diff`, and a
//! compaction of the two by `ltx compact`, described by a `manifest.json` in
//! the documented format (valid cases with `db_after` and `applies_to`, an
//! incremental checked against a `db` case, a chain, a compaction, `db`
//! cases). Every expected value is computed here without the runner: page
//! and database SHA-256 from the database files, rolling checksums from
//! `ltx checksum`, headers, frames and trailers from `ltx dump --json`. The
//! runner must pass every case (before the fix it refused every database over
//! 1 GiB), in its default mode and with every file read in bounded pieces,
//! must fail doctored copies of some of them (and only those), and
//! `ltx verify` must accept the files.
//!
//! Cost: about 3.4 GB of database files and up to about 2 GB of the runner's
//! temporary files in the temp directory; 1.5 to 2 minutes on a 2-core
//! machine (release build).
//!
//! The test lives here rather than in `spec/tests` because cargo builds the
//! `ltx` binary for this crate's integration tests (`CARGO_BIN_EXE_ltx`),
//! while `ltx-spec` cannot depend on a binary-only crate. Set
//! `LTX_KEEP_GIB_SET=DIR` to keep the generated set in DIR (e.g. to measure
//! `ltx-spec DIR`).

mod support;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ltx_spec::{run_with, Options, Report};
use rusqlite::Connection;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::{json_of, run, s};

const PS: u64 = 65536;
/// The SQLite lock page of 64 KiB pages: the page holding byte 0x40000000.
const LOCK_PGNO: u64 = 0x4000_0000 / PS + 1;
const MIB: usize = 1 << 20;

/// A compressible but non-zero 1 MiB blob, different per `seed`.
fn pattern(seed: u64) -> Vec<u8> {
    let period: Vec<u8> = (0..241u64).map(|i| (i * 7 + seed * 13 + 1) as u8).collect();
    period.iter().copied().cycle().take(MIB).collect()
}

/// The first state: 1,060 rows of 1 MiB (a repeating pattern per row, every
/// 8th row a zeroblob) and 3,000 rows of random bytes; `auto_vacuum=FULL`,
/// so deleting rows later truncates the file. (Mostly patterns rather than
/// zeros: LZ4 blocks of zeros are a run with match offset 1, which lz4_flex
/// decompresses at about 0.5 GB/s, patterns at about 4 GB/s, and the checks
/// decode the snapshot's 1.1 GB of pages a few dozen times.)
fn build_db(path: &Path) {
    let mut c = Connection::open(path).unwrap();
    c.execute_batch(
        "PRAGMA page_size=65536; PRAGMA auto_vacuum=FULL; PRAGMA journal_mode=DELETE;
         PRAGMA synchronous=OFF;
         CREATE TABLE small(id INTEGER PRIMARY KEY, v BLOB);
         CREATE TABLE big(id INTEGER PRIMARY KEY, b BLOB);",
    )
    .unwrap();
    let tx = c.transaction().unwrap();
    tx.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO small(v) SELECT randomblob(100 + i % 200) FROM n;",
    )
    .unwrap();
    for i in 0..1060u64 {
        if i % 8 == 0 {
            tx.execute("INSERT INTO big(b) VALUES (zeroblob(1048576))", [])
                .unwrap();
        } else {
            tx.execute("INSERT INTO big(b) VALUES (?1)", [pattern(i)])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn exec(path: &Path, sql: &str, params: &[(&str, Vec<u8>)]) {
    let c = Connection::open(path).unwrap();
    c.execute_batch("PRAGMA synchronous=OFF; BEGIN;").unwrap();
    for (stmt, blob) in params {
        c.execute(stmt, [blob]).unwrap();
    }
    c.execute_batch(sql).unwrap();
    c.execute_batch("COMMIT;").unwrap();
}

/// SHA-256 of a whole file, read in pieces.
fn file_sha(path: &Path) -> String {
    let mut f = File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 4 * MIB];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// SHA-256 of page `pgno` of a database file.
fn page_sha(f: &File, pgno: u64) -> String {
    use std::os::unix::fs::FileExt;
    let mut page = vec![0u8; PS as usize];
    f.read_exact_at(&mut page, (pgno - 1) * PS).unwrap();
    hex::encode(Sha256::digest(&page))
}

/// `pages`, `sha256`, `checksum` of a database file (checksum by `ltx checksum`).
fn db_values(path: &Path) -> (u64, String, String) {
    let len = std::fs::metadata(path).unwrap().len();
    assert_eq!(len % PS, 0);
    let r = run(&["checksum", s(path)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    (len / PS, file_sha(path), r.stdout.trim().to_string())
}

/// The documented description of an LTX file (encoding, header, pages,
/// trailer, page_index_size, file_size): frames and fields from
/// `ltx dump --json`, each page's SHA-256 from `db`, the database the file
/// turns its base into.
fn describe(ltx: &Path, db: &Path) -> Value {
    let r = run(&["dump", "--json", s(ltx)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let d = json_of(&r);
    assert_eq!(d["ok"], true, "{}", r.stdout);
    let db = File::open(db).unwrap();
    let pages: Vec<Value> = d["pages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["encoding"], "block");
            json!({
                "pgno": p["pgno"],
                "sha256": page_sha(&db, p["pgno"].as_u64().unwrap()),
                "flags": p["flags"],
                "frame_offset": p["frame_offset"],
                "frame_size": p["frame_size"],
            })
        })
        .collect();
    assert_eq!(d["page_count"], pages.len());
    let h = &d["header"];
    let mut header = json!({});
    for k in support::HEADER_FIELDS {
        assert!(!h[k].is_null(), "dump lacks header.{k}");
        header[k] = h[k].clone();
    }
    json!({
        "encoding": "block",
        "header": header,
        "pages": pages,
        "trailer": {
            "post_apply_checksum": d["trailer"]["post_apply_checksum"],
            "file_checksum": d["trailer"]["file_checksum"],
        },
        "page_index_size": d["page_index_size"],
        "file_size": d["file_size"],
    })
}

fn merge(mut a: Value, b: Value) -> Value {
    for (k, v) in b.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

fn db_after(v: &(u64, String, String)) -> Value {
    json!({"pages": v.0, "sha256": v.1, "checksum": v.2})
}

fn commit_of(desc: &Value) -> u64 {
    desc["header"]["commit"].as_u64().unwrap()
}

fn check(r: &Report, what: &str) {
    assert_eq!(r.fatal, None, "{what}");
    for l in r.lines() {
        eprintln!("{what}: {l}");
    }
    assert_eq!(r.failed(), 0, "{what}: {:?}", r.failed_names());
    assert_eq!(
        r.summary(),
        format!("{} passed, 0 failed", r.cases.len()),
        "{what}"
    );
}

#[test]
fn runner_checks_databases_past_one_gib() {
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let root: PathBuf = match std::env::var_os("LTX_KEEP_GIB_SET") {
        Some(d) => PathBuf::from(d),
        None => tmp.path().to_path_buf(),
    };
    for d in ["db", "chains/gib", "compacted/gib"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let db1 = root.join("db/state1.db");
    let db2 = root.join("db/state2.db");
    let db3 = root.join("db/state3.db");
    let f1 = "chains/gib/0000000000000001-0000000000000001.ltx";
    let f2 = "chains/gib/0000000000000002-0000000000000002.ltx";
    let f3 = "chains/gib/0000000000000003-0000000000000003.ltx";
    let fc = "compacted/gib/0000000000000002-0000000000000003.ltx";

    // State 1 and its snapshot.
    build_db(&db1);
    let r = run(&["encode-db", s(&db1), "-o", s(&root.join(f1)), "--txid", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // State 2: random rows rewritten near the start of the file, a pattern
    // row rewritten and 22 rows appended past the lock page (the file grows).
    std::fs::copy(&db1, &db2).unwrap();
    exec(
        &db2,
        "UPDATE small SET v = randomblob(150) WHERE id % 7 = 0;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
         INSERT INTO big(b) SELECT zeroblob(1048576) FROM n;",
        &[
            ("UPDATE big SET b = ?1 WHERE id = 998", pattern(7001)),
            ("INSERT INTO big(b) VALUES (?1)", pattern(7002)),
            ("INSERT INTO big(b) VALUES (?1)", pattern(7003)),
        ],
    );
    let r = run(&[
        "diff",
        s(&db1),
        s(&db2),
        "-o",
        s(&root.join(f2)),
        "--txid",
        "2",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // State 3: 12 rows deleted near the start; auto-vacuum moves pages from
    // the end into the holes and truncates the file (still past the lock page).
    std::fs::copy(&db2, &db3).unwrap();
    exec(
        &db3,
        "DELETE FROM big WHERE id BETWEEN 10 AND 21;
         UPDATE small SET v = randomblob(120) WHERE id % 11 = 0;",
        &[],
    );
    let r = run(&[
        "diff",
        s(&db2),
        s(&db3),
        "-o",
        s(&root.join(f3)),
        "--txid",
        "3",
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&[
        "compact",
        "-o",
        s(&root.join(fc)),
        s(&root.join(f2)),
        s(&root.join(f3)),
    ]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Expected values, without the runner.
    let (v1, v2, v3) = (db_values(&db1), db_values(&db2), db_values(&db3));
    let d1 = describe(&root.join(f1), &db1);
    let d2 = describe(&root.join(f2), &db2);
    let d3 = describe(&root.join(f3), &db3);
    let dc = describe(&root.join(fc), &db3);
    // Every state spans the lock page; state 3 is smaller than state 2.
    assert!(v1.0 > LOCK_PGNO + 100, "{} pages", v1.0);
    assert!(
        v2.0 > v1.0 && v3.0 < v2.0 && v3.0 > LOCK_PGNO,
        "{v1:?} {v2:?} {v3:?}"
    );
    assert_eq!(
        (commit_of(&d1), commit_of(&d2), commit_of(&d3)),
        (v1.0, v2.0, v3.0)
    );
    // The snapshot holds every page but the lock page; the incrementals
    // change pages on both sides of it.
    let pgnos = |d: &Value| -> Vec<u64> {
        d["pages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["pgno"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(pgnos(&d1).len() as u64, v1.0 - 1);
    assert!(!pgnos(&d1).contains(&LOCK_PGNO));
    for d in [&d2, &d3] {
        let p = pgnos(d);
        assert!(
            p.iter().any(|&p| p < LOCK_PGNO) && p.iter().any(|&p| p > LOCK_PGNO),
            "{p:?}"
        );
    }
    eprintln!(
        "set built in {:.1}s: states of {}, {}, {} pages; files of {}, {}, {}, {} bytes",
        started.elapsed().as_secs_f64(),
        v1.0,
        v2.0,
        v3.0,
        d1["file_size"],
        d2["file_size"],
        d3["file_size"],
        dc["file_size"]
    );

    let step = |file: &str, d: &Value, v: &(u64, String, String), txn: &str| {
        merge(
            d.clone(),
            json!({"file": file, "db_pages": v.0, "db_sha256": v.1, "db_checksum": v.2, "sqlite_txn": txn}),
        )
    };
    let cases = vec![
        merge(
            json!({"name": "gib-snapshot", "kind": "valid", "file": f1, "db_after": db_after(&v1)}),
            d1.clone(),
        ),
        merge(
            json!({"name": "gib-incremental-2", "kind": "valid", "file": f2,
                   "applies_to": "gib-snapshot", "db_after": db_after(&v2)}),
            d2.clone(),
        ),
        merge(
            json!({"name": "gib-incremental-3", "kind": "valid", "file": f3,
                   "applies_to": "gib-incremental-2", "db_after": db_after(&v3)}),
            d3.clone(),
        ),
        // No applies_to: checked against the db case holding state 3.
        merge(
            json!({"name": "gib-incremental-3-unanchored", "kind": "valid", "file": f3,
                   "db_after": db_after(&v3)}),
            d3.clone(),
        ),
        json!({"name": "gib-chain", "kind": "chain", "page_size": PS, "header_flags": 0,
               "files": [f1, f2, f3],
               "steps": [step(f1, &d1, &v1, "init"), step(f2, &d2, &v2, "grow"),
                         step(f3, &d3, &v3, "delete")],
               "final_db": "db/state3.db"}),
        merge(
            json!({"name": "gib-compact-2-3", "kind": "compaction", "inputs": [f2, f3],
                   "header_flags": 0, "compactor": "current", "output": fc,
                   "chain": "gib-chain", "base_txid": 1, "db_after": db_after(&v3)}),
            dc.clone(),
        ),
        merge(
            json!({"name": "gib-compact-2-3-applies-to", "kind": "compaction", "inputs": [f2, f3],
                   "header_flags": 0, "compactor": "current", "output": fc,
                   "applies_to": "gib-snapshot", "db_after": db_after(&v3)}),
            dc,
        ),
        json!({"name": "gib-db-1", "kind": "db", "file": "db/state1.db", "page_size": PS,
               "pages": v1.0, "sha256": v1.1, "checksum": v1.2}),
        json!({"name": "gib-db-3", "kind": "db", "file": "db/state3.db", "page_size": PS,
               "pages": v3.0, "sha256": v3.1, "checksum": v3.2}),
    ];
    std::fs::write(
        root.join("manifest.json"),
        serde_json::to_vec_pretty(&json!({"format_version": 3, "cases": cases})).unwrap(),
    )
    .unwrap();

    // The runner: every case passes.
    let t = Instant::now();
    check(&run_with(&root, &Options::default()), "default");
    eprintln!("runner (default): {:.1}s", t.elapsed().as_secs_f64());

    // The reference's view of the files: every file and chain verifies.
    let r = run(&["verify", s(&root)]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);

    let write_manifest = |cases: Vec<Value>| {
        let m = json!({"generator": "ltx-cli/tests/conformance_gib.rs", "format_version": 3,
                       "cases": cases});
        std::fs::write(
            root.join("manifest.json"),
            serde_json::to_vec_pretty(&m).unwrap(),
        )
        .unwrap();
    };
    let case = |name: &str| -> Value { cases.iter().find(|c| c["name"] == name).unwrap().clone() };

    // With every file read in bounded pieces (ranged reads instead of
    // LtxFile, 1 MiB reads, a spooled re-encode, a merge from ranged reads),
    // over the cases that reach every such path (the valid cases only add
    // applies_to, which does not depend on how files are read); and doctored
    // copies of some, to see that the runner notices differences past 1 GiB:
    // the state built from the chain's snapshot, the last page file 3 holds
    // (past the lock page), the checksum of a database file. Exactly the
    // copies fail.
    let last = *pgnos(&d3).iter().max().unwrap();
    let doctored = |name: &str, edit: &dyn Fn(&mut Value)| {
        let mut c = case(name);
        c["name"] = json!(format!("{name}-doctored"));
        edit(&mut c);
        c
    };
    let mut set: Vec<Value> = [
        "gib-chain",
        "gib-compact-2-3",
        "gib-incremental-3-unanchored",
        "gib-db-3",
    ]
    .map(case)
    .to_vec();
    set.push(doctored("gib-compact-2-3", &|c| {
        c["db_after"]["sha256"] = json!("11".repeat(32))
    }));
    set.push(doctored("gib-incremental-3-unanchored", &|c| {
        let pages = c["pages"].as_array_mut().unwrap();
        pages.iter_mut().find(|p| p["pgno"] == last).unwrap()["sha256"] = json!("00".repeat(32));
    }));
    set.push(doctored("gib-db-3", &|c| {
        c["checksum"] = json!("8000000000000001")
    }));
    write_manifest(set);
    let t = Instant::now();
    let pieces = Options {
        verbose: false,
        in_memory_limit: 0,
    };
    let r = run_with(&root, &pieces);
    eprintln!(
        "runner (files in pieces): {:.1}s",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(r.fatal, None);
    let mut failed = r.failed_names();
    failed.sort_unstable();
    assert_eq!(
        failed,
        [
            "gib-compact-2-3-doctored",
            "gib-db-3-doctored",
            "gib-incremental-3-unanchored-doctored"
        ],
        "{:#?}",
        r.lines()
    );
    let f = |n: &str| {
        r.cases
            .iter()
            .find(|c| c.name == n)
            .unwrap()
            .failures
            .clone()
    };
    // Both outputs (ours, the reference's) applied to the state after TXID 1.
    let compact = f("gib-compact-2-3-doctored");
    assert_eq!(compact.len(), 2, "{compact:?}");
    for (f, who) in compact.iter().zip(["our output", "expected output"]) {
        assert!(
            f.starts_with(&format!("{who} applied to the base: sha256: expected 1111")),
            "{f}"
        );
    }
    let page = f("gib-incremental-3-unanchored-doctored").join("; ");
    assert!(
        page.contains(&format!("(pgno {last}): sha256 expected 0000")),
        "{page}"
    );
    let db = f("gib-db-3-doctored");
    assert_eq!(db.len(), 1, "{db:?}");
    assert!(
        db[0].starts_with("checksum: expected 8000000000000001"),
        "{db:?}"
    );
    write_manifest(cases.clone());
    eprintln!("total {:.1}s", started.elapsed().as_secs_f64());
}
