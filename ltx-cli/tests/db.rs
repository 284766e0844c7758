//! End-to-end tests of the database commands (`encode-db`, `apply`, `diff`,
//! `compact`, `quickstart`) on real SQLite databases and the reference
//! vectors in `testdata/conformance`, through the `ltx` binary.

use std::path::{Path, PathBuf};

use ltx_core::checksum::database_checksum;
use ltx_core::{Checksum, LtxFile, PageSize};
use rusqlite::Connection;
use serde_json::Value;

mod support;
use support::{ltx, read, sha256};

fn conformance() -> PathBuf {
    support::vectors("conformance")
}

fn cases(kind: &str) -> Vec<Value> {
    support::cases(&conformance(), kind)
}

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Files left in `dir` whose names look like our temporary files.
fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

fn integrity_ok(p: &Path) {
    let c = Connection::open(p).unwrap();
    let r: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(r, "ok", "{}", p.display());
}

/// A database with a few tables, indexes, overflow pages and a freelist.
fn make_db(path: &Path, page_size: u32, rows: u32) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA page_size = {page_size}; PRAGMA journal_mode = DELETE;
         CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, body BLOB);
         CREATE INDEX t_name ON t(name);
         CREATE TABLE kv(k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID;"
    ))
    .unwrap();
    c.execute_batch(&format!(
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO t SELECT i, 'name ' || (i * 7919 % 1000), randomblob(i % 700) FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
         INSERT INTO kv SELECT 'key' || i, hex(randomblob(20)) FROM n;
         INSERT INTO t(name, body) VALUES ('big', randomblob(20000));
         DELETE FROM t WHERE id % 5 = 0;
         COMMIT;"
    ))
    .unwrap();
}

fn exec(path: &Path, sql: &str) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(sql).unwrap();
}

fn checksum_of(db: &[u8]) -> Checksum {
    if db.is_empty() {
        return Checksum(0);
    }
    let raw = u16::from_be_bytes([db[16], db[17]]);
    let ps = PageSize::new(if raw == 1 { 65536 } else { u32::from(raw) }).unwrap();
    database_checksum(ps, db)
}

#[test]
fn encode_db_then_apply_reproduces_the_database() {
    let dir = tempfile::tempdir().unwrap();
    for (ps, extra) in [
        (4096u32, vec![]),
        (512, vec!["--no-checksum", "--txid", "0x2a"]),
        (65536, vec!["--timestamp", "-5"]),
    ] {
        let db = dir.path().join(format!("src-{ps}.db"));
        make_db(&db, ps, 2000);
        let original = read(&db);
        let snap = dir.path().join(format!("snap-{ps}.ltx"));
        let a = ltx()
            .arg("encode-db")
            .arg(&db)
            .arg("-o")
            .arg(&snap)
            .args(&extra)
            .assert()
            .success();
        assert!(stdout(&a).contains("wrote"), "{}", stdout(&a));

        let bytes = read(&snap);
        let f = LtxFile::parse(&bytes).unwrap();
        let sum = f.verify().unwrap();
        let h = f.header();
        assert_eq!(h.page_size.get(), ps);
        assert_eq!(h.min_txid.0, 1);
        assert_eq!(h.commit as usize, original.len() / ps as usize);
        assert_eq!(f.index().len(), h.commit as usize);
        if extra.contains(&"--no-checksum") {
            assert_eq!(h.flags, 2);
            assert_eq!(h.max_txid.0, 42);
            assert_eq!(sum.trailer.post_apply_checksum, Checksum(0));
        } else {
            assert_eq!(h.flags, 0);
            assert_eq!(sum.trailer.post_apply_checksum, checksum_of(&original));
        }
        if extra.contains(&"--timestamp") {
            assert_eq!(h.timestamp, -5);
        }

        let out = dir.path().join(format!("restored-{ps}.db"));
        let a = ltx()
            .arg("apply")
            .arg("--db")
            .arg(&out)
            .arg(&snap)
            .assert()
            .success();
        assert!(stdout(&a).contains("applied"), "{}", stdout(&a));
        assert!(
            read(&out) == original,
            "page size {ps}: restored database differs"
        );
        integrity_ok(&out);
    }
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn encode_db_with_1k_pages_holds_every_page() {
    // (The lock page sits at byte offset 1 GiB whatever the page size, too
    // big for a unit test; skipping it is the encoder's rule, tested in
    // ltx-core.)
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("a.db");
    make_db(&db, 1024, 300);
    let snap = dir.path().join("a.ltx");
    ltx()
        .arg("encode-db")
        .arg(&db)
        .arg("-o")
        .arg(&snap)
        .assert()
        .success();
    let bytes = read(&snap);
    let f = LtxFile::parse(&bytes).unwrap();
    f.verify().unwrap();
    let pgnos: Vec<u32> = f.index().entries().iter().map(|e| e.pgno).collect();
    assert_eq!(pgnos, (1..=f.header().commit).collect::<Vec<_>>());
}

#[test]
fn conformance_chains_reproduce_final_db() {
    let dir = tempfile::tempdir().unwrap();
    let chains = cases("chain");
    assert!(chains.len() >= 4);
    for c in chains {
        let name = c["name"].as_str().unwrap();
        let files: Vec<PathBuf> = c["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| conformance().join(f.as_str().unwrap()))
            .collect();
        let steps = c["steps"].as_array().unwrap();
        let final_sha = steps.last().unwrap()["db_sha256"].as_str().unwrap();

        // All at once.
        let db = dir.path().join(format!("{name}.db"));
        ltx()
            .arg("apply")
            .arg("--db")
            .arg(&db)
            .args(&files)
            .assert()
            .success();
        let got = read(&db);
        assert_eq!(sha256(&got), final_sha, "{name}");
        assert!(
            got == read(&conformance().join(c["final_db"].as_str().unwrap())),
            "{name}"
        );

        // One invocation per file: each checks the pre-apply checksum
        // against the database left by the previous one.
        let db = dir.path().join(format!("{name}-steps.db"));
        for (f, s) in files.iter().zip(steps) {
            let a = ltx()
                .arg("apply")
                .arg("--db")
                .arg(&db)
                .arg(f)
                .assert()
                .success();
            let got = read(&db);
            assert_eq!(
                sha256(&got),
                s["db_sha256"].as_str().unwrap(),
                "{name} {}",
                f.display()
            );
            let want = s["db_checksum"].as_str().unwrap();
            assert!(
                stdout(&a).contains(want),
                "{name}: {} lacks {want}",
                stdout(&a)
            );
        }
    }
    assert!(temp_files(dir.path()).is_empty());
}

fn chain_files(name: &str) -> Vec<PathBuf> {
    let c = cases("chain")
        .into_iter()
        .find(|c| c["name"] == name)
        .unwrap();
    c["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| conformance().join(f.as_str().unwrap()))
        .collect()
}

/// Copies `src` into `dir` with one byte flipped in the middle of its frames.
fn corrupt_copy(src: &Path, dir: &Path) -> PathBuf {
    let mut b = read(src);
    let f = LtxFile::parse(&b).unwrap();
    let e = f.index().entries()[f.index().len() / 2];
    let at = (e.offset + e.size / 2) as usize;
    b[at] ^= 0x40;
    let dest = dir.join(format!(
        "corrupt-{}",
        src.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&dest, b).unwrap();
    dest
}

#[test]
fn apply_with_a_corrupt_third_file_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let files = chain_files("chain-4k-checksums");
    let db = dir.path().join("db.sqlite");
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .args(&files[..2])
        .assert()
        .success();
    let before = read(&db);

    let bad = corrupt_copy(&files[4], dir.path());
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .args([&files[2], &files[3], &bad, &files[5]])
        .assert()
        .code(1);
    let err = stderr(&a);
    assert!(
        err.contains("corrupt-") && err.contains("verification failed"),
        "{err}"
    );
    assert!(read(&db) == before, "database changed");
    assert!(
        temp_files(dir.path()).is_empty(),
        "{:?}",
        temp_files(dir.path())
    );

    // Without a database: nothing is created.
    let fresh = dir.path().join("fresh.db");
    let bad = corrupt_copy(&files[2], dir.path());
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&fresh)
        .args([&files[0], &files[1], &bad])
        .assert()
        .code(1);
    assert!(!fresh.exists());

    // A truncated file is refused before anything happens.
    let cut = dir.path().join("cut.ltx");
    let b = read(&files[2]);
    std::fs::write(&cut, &b[..b.len() - 20]).unwrap();
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&cut)
        .assert()
        .code(1);
    assert!(read(&db) == before);
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn apply_checks_the_chain_and_checksums() {
    let dir = tempfile::tempdir().unwrap();
    let files = chain_files("chain-4k-checksums");
    let db = dir.path().join("db.sqlite");
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .args(&files[..2])
        .assert()
        .success();
    let before = read(&db);

    // A TXID gap.
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .args([&files[2], &files[4]])
        .assert()
        .code(1);
    assert!(stderr(&a).contains("does not follow"), "{}", stderr(&a));
    // The wrong database state: pre-apply checksum mismatch.
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&files[3])
        .assert()
        .code(1);
    assert!(
        stderr(&a).contains("pre-apply checksum mismatch"),
        "{}",
        stderr(&a)
    );
    // An incremental file onto no database.
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(dir.path().join("none.db"))
        .arg(&files[3])
        .assert()
        .code(1);
    assert!(
        stderr(&a).contains("pre-apply checksum mismatch"),
        "{}",
        stderr(&a)
    );
    assert!(read(&db) == before);

    // A NoChecksum incremental onto an empty database needs a snapshot first.
    let nc = chain_files("chain-4k-nochecksum-wal");
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(dir.path().join("none.db"))
        .arg(&nc[1])
        .assert()
        .code(1);
    assert!(stderr(&a).contains("must be a snapshot"), "{}", stderr(&a));
    assert!(!dir.path().join("none.db").exists());
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn apply_refuses_a_database_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let files = chain_files("chain-4k-checksums");
    let db = dir.path().join("db.sqlite");
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&files[0])
        .assert()
        .success();
    let before = read(&db);
    let journal = dir.path().join("db.sqlite-journal");
    std::fs::write(
        &journal,
        [0xd9u8, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7, 0, 0, 0, 1],
    )
    .unwrap();
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&files[1])
        .assert()
        .code(2);
    assert!(stderr(&a).contains("hot journal"), "{}", stderr(&a));
    assert!(read(&db) == before);
    // A zeroed journal header (journal_mode=PERSIST after commit) is fine.
    std::fs::write(&journal, [0u8; 512]).unwrap();
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&files[1])
        .assert()
        .success();
}

/// Runs `diff OLD NEW -o DELTA`, checks the delta's header, applies it to a
/// copy of OLD and checks the result is NEW byte for byte.
fn delta_roundtrip(dir: &Path, old: &Path, new: &Path, tag: &str, extra: &[&str]) -> PathBuf {
    let delta = dir.join(format!("{tag}.ltx"));
    let a = ltx()
        .arg("diff")
        .arg(old)
        .arg(new)
        .arg("-o")
        .arg(&delta)
        .args(["--txid", "7"])
        .args(extra)
        .assert()
        .success();
    assert!(stdout(&a).contains("wrote"), "{}", stdout(&a));
    let (ob, nb) = (read(old), read(new));
    let bytes = read(&delta);
    let f = LtxFile::parse(&bytes).unwrap();
    let s = f.verify().unwrap();
    let h = f.header();
    assert_eq!((h.min_txid.0, h.max_txid.0), (7, 7), "{tag}");
    let ps = h.page_size.bytes();
    assert_eq!(h.commit as usize, nb.len() / ps, "{tag}");
    let nochk = extra.contains(&"--no-checksum");
    if nochk {
        assert_eq!(h.flags, 2);
        assert_eq!(h.pre_apply_checksum, Checksum(0));
        assert_eq!(s.trailer.post_apply_checksum, Checksum(0));
    } else {
        let norm = |c: Checksum| if c.0 == 0 { Checksum(1 << 63) } else { c };
        assert_eq!(h.pre_apply_checksum, norm(checksum_of(&ob)), "{tag}");
        assert_eq!(
            s.trailer.post_apply_checksum,
            norm(checksum_of(&nb)),
            "{tag}"
        );
    }
    // Exactly the pages of NEW that differ from OLD or lie beyond it.
    let want: Vec<u32> = (0..nb.len() / ps)
        .filter(|&i| ob.get(i * ps..(i + 1) * ps) != Some(&nb[i * ps..(i + 1) * ps]))
        .map(|i| i as u32 + 1)
        .collect();
    let got: Vec<u32> = f.index().entries().iter().map(|e| e.pgno).collect();
    assert_eq!(got, want, "{tag}");

    let copy = dir.join(format!("{tag}-applied.db"));
    std::fs::copy(old, &copy).unwrap();
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&copy)
        .arg(&delta)
        .assert()
        .success();
    assert!(
        read(&copy) == nb,
        "{tag}: applying the delta does not give NEW"
    );
    if !nb.is_empty() {
        integrity_ok(&copy);
    }
    delta
}

#[test]
fn diff_output_turns_old_into_new() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let v0 = d.join("v0.db");
    make_db(&v0, 4096, 3000);

    // Updates in place.
    let v1 = d.join("v1.db");
    std::fs::copy(&v0, &v1).unwrap();
    exec(
        &v1,
        "UPDATE t SET name = 'renamed' WHERE id % 97 = 1; UPDATE kv SET v = 'x' WHERE k = 'key10';",
    );
    delta_roundtrip(d, &v0, &v1, "updates", &[]);
    delta_roundtrip(d, &v0, &v1, "updates-nochecksum", &["--no-checksum"]);

    // Growth.
    let v2 = d.join("v2.db");
    std::fs::copy(&v1, &v2).unwrap();
    exec(
        &v2,
        "INSERT INTO t(name, body) SELECT 'grow', randomblob(3000) FROM t WHERE id < 200;",
    );
    assert!(read(&v2).len() > read(&v1).len());
    delta_roundtrip(d, &v1, &v2, "growth", &[]);

    // Shrink: delete most rows and VACUUM.
    let v3 = d.join("v3.db");
    std::fs::copy(&v2, &v3).unwrap();
    exec(&v3, "DELETE FROM t WHERE id > 100; DELETE FROM kv; VACUUM;");
    assert!(read(&v3).len() < read(&v2).len());
    delta_roundtrip(d, &v2, &v3, "shrink", &[]);

    // Deletion to an empty database (0 bytes): post-apply 8000000000000000.
    let v4 = d.join("v4.db");
    std::fs::write(&v4, b"").unwrap();
    let delta = delta_roundtrip(d, &v3, &v4, "deletion", &[]);
    let bytes = read(&delta);
    let f = LtxFile::parse(&bytes).unwrap();
    assert_eq!(f.header().commit, 0);
    assert_eq!(f.trailer().post_apply_checksum, Checksum(1 << 63));
    // ... and back from empty with a delta whose pre-apply is 8000000000000000.
    delta_roundtrip(d, &v4, &v3, "from-empty", &[]);

    // --txid 1: a snapshot of NEW, whatever OLD is.
    let snap = d.join("snap.ltx");
    ltx()
        .arg("diff")
        .arg(&v0)
        .arg(&v3)
        .args(["-o"])
        .arg(&snap)
        .args(["--txid", "1"])
        .assert()
        .success();
    let bytes = read(&snap);
    let f = LtxFile::parse(&bytes).unwrap();
    f.verify().unwrap();
    assert_eq!(f.index().len() as u32, f.header().commit);
    let fresh = d.join("fresh.db");
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&fresh)
        .arg(&snap)
        .assert()
        .success();
    assert!(read(&fresh) == read(&v3));
    assert!(temp_files(d).is_empty());
}

#[test]
fn diff_reports_pages_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = d.join("a.db");
    make_db(&a, 4096, 1000);
    let ab = read(&a);
    let n = ab.len() / 4096;
    // B: page 3 and page 5 changed, three pages appended.
    let mut bb = ab.clone();
    bb[2 * 4096 + 100] ^= 1;
    bb[4 * 4096 + 4000] ^= 1;
    bb.extend(std::iter::repeat_n(7u8, 3 * 4096));
    let b = d.join("b.db");
    std::fs::write(&b, &bb).unwrap();

    let out = ltx()
        .arg("diff")
        .arg(&a)
        .arg(&b)
        .arg("--json")
        .assert()
        .code(1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["identical"], false);
    assert_eq!(v["differ"], serde_json::json!([3, 5]));
    assert_eq!(v["only_in_a"], serde_json::json!([]));
    let extra: Vec<u32> = (n as u32 + 1..=n as u32 + 3).collect();
    assert_eq!(v["only_in_b"], serde_json::json!(extra));
    assert_eq!(v["a"]["kind"], "sqlite");
    assert_eq!(v["b"]["pages"], n + 3);

    // Text form with compact ranges.
    let out = ltx().arg("diff").arg(&a).arg(&b).assert().code(1);
    let text = stdout(&out);
    assert!(text.contains("pages that differ: 3, 5"), "{text}");
    assert!(
        text.contains(&format!("pages only in B: {}-{}", n + 1, n + 3)),
        "{text}"
    );
    let out = ltx().arg("diff").arg(&b).arg(&a).assert().code(1);
    assert!(stdout(&out).contains(&format!("pages only in A: {}-{}", n + 1, n + 3)));

    // Identical inputs: a database and its snapshot.
    let snap = d.join("a.ltx");
    ltx()
        .arg("encode-db")
        .arg(&a)
        .arg("-o")
        .arg(&snap)
        .assert()
        .success();
    let out = ltx().arg("diff").arg(&snap).arg(&a).assert().success();
    assert!(stdout(&out).contains("identical"));
    let out = ltx()
        .arg("diff")
        .arg(&a)
        .arg(&a)
        .arg("--json")
        .assert()
        .success();
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["identical"], true);

    // LTX vs LTX: header fields and pages.
    let files = chain_files("chain-4k-checksums");
    let out = ltx()
        .arg("diff")
        .arg(&files[1])
        .arg(&files[2])
        .arg("--json")
        .assert()
        .code(1);
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let fields: Vec<&str> = v["header"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in [
        "min_txid",
        "max_txid",
        "pre_apply_checksum",
        "post_apply_checksum",
        "file_checksum",
    ] {
        assert!(fields.contains(&f), "{fields:?}");
    }
    let (fa, fb) = (read(&files[1]), read(&files[2]));
    let (la, lb) = (LtxFile::parse(&fa).unwrap(), LtxFile::parse(&fb).unwrap());
    let pa: Vec<u32> = la.index().entries().iter().map(|e| e.pgno).collect();
    let pb: Vec<u32> = lb.index().entries().iter().map(|e| e.pgno).collect();
    let only_a: Vec<u32> = pa.iter().copied().filter(|p| !pb.contains(p)).collect();
    assert_eq!(v["only_in_a"], serde_json::json!(only_a));
    let mut differ = Vec::new();
    for p in pa.iter().filter(|p| pb.contains(p)) {
        let (mut x, mut y) = (vec![0u8; 4096], vec![0u8; 4096]);
        la.read_page(*p, &mut x).unwrap();
        lb.read_page(*p, &mut y).unwrap();
        if x != y {
            differ.push(*p);
        }
    }
    assert_eq!(v["differ"], serde_json::json!(differ));

    // Not a database or LTX file: an error (2), not a difference.
    let junk = d.join("junk");
    std::fs::write(&junk, b"hello world, this is not a database").unwrap();
    ltx().arg("diff").arg(&junk).arg(&a).assert().code(2);
}

fn header_json(h: &ltx_core::Header) -> Value {
    serde_json::json!({
        "flags": h.flags,
        "page_size": h.page_size.get(),
        "commit": h.commit,
        "min_txid": h.min_txid.to_string(),
        "max_txid": h.max_txid.to_string(),
        "timestamp": h.timestamp,
        "pre_apply_checksum": h.pre_apply_checksum.to_string(),
        "wal_offset": h.wal_offset,
        "wal_size": h.wal_size,
        "wal_salt1": h.wal_salt1,
        "wal_salt2": h.wal_salt2,
        "node_id": h.node_id,
    })
}

fn decoded_pages(f: &LtxFile<'_>) -> Vec<(u32, Vec<u8>)> {
    f.index()
        .entries()
        .iter()
        .map(|e| {
            let mut p = vec![0u8; f.header().page_size.bytes()];
            assert!(f.read_page(e.pgno, &mut p).unwrap());
            (e.pgno, p)
        })
        .collect()
}

#[test]
fn compact_matches_the_reference_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let comps = cases("compaction");
    assert!(comps.len() >= 9);
    for c in comps {
        let name = c["name"].as_str().unwrap();
        let inputs: Vec<PathBuf> = c["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| conformance().join(f.as_str().unwrap()))
            .collect();
        let out = dir.path().join(format!("{name}.ltx"));
        let mut cmd = ltx();
        cmd.arg("compact").arg("-o").arg(&out).args(&inputs);
        if c["header_flags"] == 2 {
            cmd.arg("--no-checksum");
        }
        let a = cmd.assert().success();
        assert!(stdout(&a).contains("wrote"), "{name}: {}", stdout(&a));

        let got = read(&out);
        let expected = read(&conformance().join(c["output"].as_str().unwrap()));
        let (g, e) = (
            LtxFile::parse(&got).unwrap(),
            LtxFile::parse(&expected).unwrap(),
        );
        g.verify().unwrap_or_else(|err| panic!("{name}: {err}"));
        assert_eq!(header_json(g.header()), c["header"], "{name}");
        assert_eq!(g.header(), e.header(), "{name}");
        assert_eq!(
            g.trailer().post_apply_checksum,
            e.trailer().post_apply_checksum,
            "{name}"
        );
        assert!(
            decoded_pages(&g) == decoded_pages(&e),
            "{name}: decoded pages differ"
        );
        if c["encoding"] == "block" && c["compactor"] == "current" && !name.contains("legacy") {
            // Block frames are copied byte for byte, as the reference does.
            assert!(
                got == expected,
                "{name}: not byte-identical to the reference output"
            );
        }

        // Applying it on top of the chain's state at base_txid gives db_after.
        let chain = chain_files(c["chain"].as_str().unwrap());
        let base = c["base_txid"].as_u64().unwrap() as usize;
        let db = dir.path().join(format!("{name}.db"));
        ltx()
            .arg("apply")
            .arg("--db")
            .arg(&db)
            .args(&chain[..base])
            .arg(&out)
            .assert()
            .success();
        assert_eq!(
            sha256(&read(&db)),
            c["db_after"]["sha256"].as_str().unwrap(),
            "{name}"
        );
    }

    // Output into a directory; a gap needs --allow-gaps; NoChecksum inputs need --no-checksum.
    let chain = chain_files("chain-4k-checksums");
    let a = ltx()
        .arg("compact")
        .arg("-o")
        .arg(dir.path())
        .args([&chain[0], &chain[1], &chain[2]])
        .assert()
        .success();
    assert!(
        dir.path()
            .join("0000000000000001-0000000000000003.ltx")
            .exists(),
        "{}",
        stdout(&a)
    );
    let a = ltx()
        .arg("compact")
        .arg("-o")
        .arg(dir.path().join("gap.ltx"))
        .args([&chain[1], &chain[3]])
        .assert()
        .code(1);
    assert!(stderr(&a).contains("gap"), "{}", stderr(&a));
    // The inputs are named by path.
    for p in [&chain[1], &chain[3]] {
        let p = p.display().to_string();
        assert!(stderr(&a).contains(&p), "{p}: {}", stderr(&a));
    }
    assert!(!dir.path().join("gap.ltx").exists());
    ltx()
        .arg("compact")
        .arg("-o")
        .arg(dir.path().join("gap.ltx"))
        .args([&chain[1], &chain[3]])
        .args(["--allow-gaps"])
        .assert()
        .success();
    // NoChecksum inputs: forced to track checksums, refused with the way
    // out; by default (--checksum auto) the output is NoChecksum, said so.
    let nc = chain_files("chain-4k-nochecksum-wal");
    let a = ltx()
        .arg("compact")
        .arg("-o")
        .arg(dir.path().join("nc.ltx"))
        .args(["--checksum", "track"])
        .args(&nc[..3])
        .assert()
        .code(1);
    assert!(stderr(&a).contains("--checksum none"), "{}", stderr(&a));
    assert!(
        stderr(&a).contains(&nc[0].display().to_string())
            || stderr(&a).contains(&nc[2].display().to_string()),
        "{}",
        stderr(&a)
    );
    assert!(!dir.path().join("nc.ltx").exists());
    let a = ltx()
        .arg("compact")
        .arg("-o")
        .arg(dir.path().join("nc.ltx"))
        .args(&nc[..3])
        .assert()
        .success();
    assert!(
        stderr(&a).contains("an input is NoChecksum"),
        "{}",
        stderr(&a)
    );
    assert!(stdout(&a).contains("flags 0x00000002"), "{}", stdout(&a));
    // A corrupt input is refused.
    let bad = corrupt_copy(&chain[2], dir.path());
    ltx()
        .arg("compact")
        .arg("-o")
        .arg(dir.path().join("bad.ltx"))
        .args([&chain[0], &chain[1], &bad])
        .assert()
        .code(1);
    assert!(!dir.path().join("bad.ltx").exists());
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn encode_db_refuses_uncheckpointed_wal_and_hot_journal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wal.db");
    let c = Connection::open(&db).unwrap();
    let mode: String = c
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    c.execute_batch(
        "PRAGMA wal_autocheckpoint = 0;
         CREATE TABLE t(x);
         INSERT INTO t VALUES (randomblob(5000));",
    )
    .unwrap();
    assert!(
        std::fs::metadata(dir.path().join("wal.db-wal"))
            .unwrap()
            .len()
            > 32
    );
    let out = dir.path().join("wal.ltx");
    let a = ltx()
        .arg("encode-db")
        .arg(&db)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(2);
    let err = stderr(&a);
    assert!(
        err.contains("wal.db-wal") && err.contains("checkpoint"),
        "{err}"
    );
    assert!(!out.exists());
    // diff -o refuses nothing about WAL (it compares files), but encode-db
    // works once the WAL is checkpointed.
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    ltx()
        .arg("encode-db")
        .arg(&db)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    drop(c);

    // A hot rollback journal.
    let db2 = dir.path().join("rollback.db");
    make_db(&db2, 4096, 10);
    std::fs::write(
        dir.path().join("rollback.db-journal"),
        [0xd9u8, 0xd5, 0x05, 0xf9, 0x20, 0xa1, 0x63, 0xd7, 0, 0, 0, 1],
    )
    .unwrap();
    let a = ltx()
        .arg("encode-db")
        .arg(&db2)
        .arg("-o")
        .arg(dir.path().join("r.ltx"))
        .assert()
        .code(2);
    assert!(stderr(&a).contains("hot journal"), "{}", stderr(&a));

    // Not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![1u8; 8192]).unwrap();
    let a = ltx()
        .arg("encode-db")
        .arg(&junk)
        .arg("-o")
        .arg(dir.path().join("j.ltx"))
        .assert()
        .code(2);
    assert!(
        stderr(&a).contains("not a SQLite database"),
        "{}",
        stderr(&a)
    );
    assert!(temp_files(dir.path()).is_empty());
}

#[test]
fn quickstart_runs_the_whole_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("qs");
    let a = ltx()
        .arg("quickstart")
        .arg("--dir")
        .arg(&work)
        .assert()
        .success();
    let text = stdout(&a);
    assert!(text.contains("quickstart: ok"), "{text}");
    let l0: Vec<_> = std::fs::read_dir(work.join("replica/ltx/0"))
        .unwrap()
        .collect();
    assert!(l0.len() >= 5);
    assert_eq!(
        std::fs::read_dir(work.join("replica/ltx/1"))
            .unwrap()
            .count(),
        1
    );
    assert!(read(&work.join("restore-l0.db")) == read(&work.join("app.db")));
    // A second run into the same directory refuses to overwrite it.
    ltx()
        .arg("quickstart")
        .arg("--dir")
        .arg(&work)
        .assert()
        .code(2);
    // And in a temporary directory.
    let a = ltx().arg("quickstart").assert().success();
    assert!(stdout(&a).contains("quickstart: ok"));
}

#[test]
fn apply_refuses_a_database_open_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("live.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0; CREATE TABLE t(x);")
        .unwrap();
    let before = read(&db);
    let snap = chain_files("chain-4k-checksums")[0].clone();
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&snap)
        .assert()
        .code(2);
    assert!(stderr(&a).contains("live.db-wal"), "{}", stderr(&a));
    assert!(read(&db) == before);
    drop(c);
    // Closed: SQLite checkpointed and removed the -wal.
    assert!(!dir.path().join("live.db-wal").exists());
    let before = read(&db);

    // A -wal holding only its header: encode-db may read the database, but
    // apply must not replace it.
    let wal = dir.path().join("live.db-wal");
    std::fs::write(&wal, [0x37u8; 32]).unwrap();
    let a = ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&snap)
        .assert()
        .code(2);
    assert!(stderr(&a).contains("WAL mode"), "{}", stderr(&a));
    assert!(read(&db) == before);
    ltx()
        .arg("encode-db")
        .arg(&db)
        .arg("-o")
        .arg(dir.path().join("live.ltx"))
        .assert()
        .success();
    // An empty -wal is harmless.
    std::fs::write(&wal, b"").unwrap();
    ltx()
        .arg("apply")
        .arg("--db")
        .arg(&db)
        .arg(&snap)
        .assert()
        .success();
    assert!(temp_files(dir.path()).is_empty());
}
