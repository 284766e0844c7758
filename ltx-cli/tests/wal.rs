//! `ltx wal dump` and `ltx wal encode` on real SQLite databases and WALs
//! (rusqlite, bundled SQLite), through the `ltx` binary.

use std::path::{Path, PathBuf};

use ltx_core::wal::{ByteOrder, WalBuilder};
use ltx_core::{parse_filename, LtxFile, PageSize, TxId};
use rusqlite::Connection;
use serde_json::Value;

mod support;
use support::run;

fn side(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A live WAL-mode database with autocheckpoint off, its WAL emptied.
fn open_wal_db(path: &Path, page_size: u32) -> Connection {
    let c = Connection::open(path).unwrap();
    c.execute_batch(&format!("PRAGMA page_size={page_size};"))
        .unwrap();
    let m: String = c
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .unwrap();
    assert_eq!(m, "wal");
    c.execute_batch(
        "PRAGMA wal_autocheckpoint=0;
         CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, k TEXT, v BLOB);
         CREATE INDEX IF NOT EXISTS t_k ON t(k);",
    )
    .unwrap();
    checkpoint(&c, "TRUNCATE");
    c
}

fn checkpoint(c: &Connection, mode: &str) -> (i64, i64) {
    let (busy, log, done): (i64, i64, i64) = c
        .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0);
    (log, done)
}

/// Transactions of every kind: inserts with overflow pages, updates,
/// deletes (freelist), a multi-statement transaction, one that shrinks
/// the file (VACUUM), and a rolled-back one (no frames).
fn workload(c: &Connection, seed: u64) {
    let mut rng = ltx_core::rng::SplitMix64::new(seed);
    for i in 0..12u64 {
        match rng.next_u64() % 5 {
            0 | 1 => {
                let (size, rows) = (rng.next_u64() % 6000, 1 + rng.next_u64() % 20);
                c.execute(
                    "WITH RECURSIVE n(j) AS (SELECT 1 UNION ALL SELECT j + 1 FROM n WHERE j < ?3)
                     INSERT INTO t(k, v) SELECT ?1 || j, randomblob(?2) FROM n",
                    rusqlite::params![format!("k{i}-"), size as i64, rows as i64],
                )
                .unwrap();
            }
            2 => {
                c.execute(
                    "UPDATE t SET v = randomblob(?1) WHERE id % 3 = ?2",
                    rusqlite::params![(rng.next_u64() % 3000) as i64, (i % 3) as i64],
                )
                .unwrap();
            }
            3 => {
                c.execute_batch(
                    "BEGIN; DELETE FROM t WHERE id % 4 = 0; INSERT INTO t(k, v) VALUES ('multi', randomblob(5000)); COMMIT;",
                )
                .unwrap();
            }
            _ => {
                c.execute_batch("BEGIN; DELETE FROM t WHERE id % 2 = 1; ROLLBACK;")
                    .unwrap();
                c.execute("DELETE FROM t WHERE id % 5 = 1", []).unwrap();
            }
        }
    }
    c.execute_batch("VACUUM;").unwrap();
    c.execute("INSERT INTO t(k, v) VALUES ('last', randomblob(100))", [])
        .unwrap();
}

/// Copies the database and its WAL (and wal-index) as they are now.
fn copy_live(db: &Path, to: &Path) {
    std::fs::copy(db, to).unwrap();
    std::fs::copy(side(db, "-wal"), side(to, "-wal")).unwrap();
    if side(db, "-shm").exists() {
        std::fs::copy(side(db, "-shm"), side(to, "-shm")).unwrap();
    }
}

fn ltx_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn apply(dir: &Path, out: &Path) {
    let r = run(&["apply", "--db", s(out), s(dir)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
}

/// `ltx wal encode` of a copy of a live database and its WAL, applied with
/// `ltx apply`, gives exactly the database SQLite makes of the two: at page
/// sizes 1024, 4096 and 65536, tracking checksums (`ltx verify` replays
/// them) and NoChecksum, with `--start-txid`.
#[test]
fn encode_then_apply_is_what_sqlite_sees() {
    for (ps, seed) in [(1024u32, 1u64), (4096, 2), (65536, 3)] {
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("app.db");
        let c = open_wal_db(&db, ps);
        workload(&c, seed);
        let copy = tmp.path().join("copy.db");
        copy_live(&db, &copy);
        checkpoint(&c, "TRUNCATE");
        let want = std::fs::read(&db).unwrap();
        let wal_txns = {
            let w = std::fs::read(side(&copy, "-wal")).unwrap();
            ltx_core::wal::scan(&w).transactions.len()
        };
        assert!(wal_txns >= 10, "{wal_txns}");

        // Tracking checksums, TXIDs from 1.
        let dir = tmp.path().join("ltx");
        let r = run(&["wal", "encode", s(&copy), "-o", s(&dir)]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        assert!(r.stdout.contains("wrote "), "{}", r.stdout);
        let names = ltx_names(&dir);
        assert_eq!(names.len(), 1 + wal_txns, "{names:?}");
        for (i, n) in names.iter().enumerate() {
            let (min, max) = parse_filename(n).unwrap();
            assert_eq!(max, TxId(i as u64 + 1));
            assert_eq!(min, if i == 0 { TxId(1) } else { max });
            let f = std::fs::read(dir.join(n)).unwrap();
            let f = LtxFile::parse(&f).unwrap();
            f.verify().unwrap();
            assert!(!f.header().no_checksum());
            if i > 0 {
                assert!(f.header().wal_offset >= 32 && f.header().wal_size > 0);
            }
        }
        let v = run(&["verify", s(&dir)]);
        assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
        assert!(
            v.stdout.contains("database checksum replay verified"),
            "{}",
            v.stdout
        );
        let out = tmp.path().join("restored.db");
        apply(&dir, &out);
        assert!(
            std::fs::read(&out).unwrap() == want,
            "page size {ps}: applied database differs"
        );

        // NoChecksum, from TXID 42, JSON.
        let dir2 = tmp.path().join("ltx2");
        let r = run(&[
            "wal",
            "encode",
            s(&copy),
            "--wal",
            s(&side(&copy, "-wal")),
            "-o",
            s(&dir2),
            "--start-txid",
            "42",
            "--no-checksum",
            "--json",
        ]);
        assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
        let j: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(j["no_checksum"], true);
        let files = j["files"].as_array().unwrap();
        assert_eq!(files.len(), 1 + wal_txns);
        assert_eq!(files[0]["name"], "0000000000000001-000000000000002a.ltx");
        assert_eq!(files[1]["name"], "000000000000002b-000000000000002b.ltx");
        assert_eq!(files[1]["wal_offset"], 32);
        for f in ltx_names(&dir2) {
            let b = std::fs::read(dir2.join(&f)).unwrap();
            assert!(LtxFile::parse(&b).unwrap().header().no_checksum(), "{f}");
        }
        let out2 = tmp.path().join("restored2.db");
        apply(&dir2, &out2);
        assert!(std::fs::read(&out2).unwrap() == want);
    }
}

/// A database file of 0 bytes whose whole content is in the WAL (SQLite
/// writes page 1 to the file when it switches to WAL mode, so here the
/// copy of the main file is cut to 0 bytes, as an interrupted copy leaves
/// it): the WAL's first transaction, which writes every page, is the
/// snapshot.
#[test]
fn empty_database_file() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("new.db");
    let c = Connection::open(&db).unwrap();
    c.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;
         CREATE TABLE a(x); INSERT INTO a VALUES (1), (2);",
    )
    .unwrap();
    c.execute("INSERT INTO a VALUES (3)", []).unwrap();
    let copy = tmp.path().join("copy.db");
    copy_live(&db, &copy);
    std::fs::write(&copy, b"").unwrap();
    let dir = tmp.path().join("ltx");
    let r = run(&["wal", "encode", s(&copy), "-o", s(&dir)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let names = ltx_names(&dir);
    assert_eq!(names[0], "0000000000000001-0000000000000001.ltx");
    let r = run(&[
        "wal",
        "encode",
        s(&copy),
        "-o",
        s(&tmp.path().join("x")),
        "--start-txid",
        "5",
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("can only be TXID 1"), "{}", r.stderr);
    checkpoint(&c, "TRUNCATE");
    let out = tmp.path().join("restored.db");
    apply(&dir, &out);
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&db).unwrap());
}

/// On a live database whose wal-index says a checkpoint already copied the
/// first transactions into the database file (a reader held the rest
/// back), those transactions are part of the snapshot; what is applied is
/// still exactly SQLite's database.
#[test]
fn backfilled_frames_are_in_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    let c = open_wal_db(&db, 4096);
    for i in 0..3 {
        c.execute(
            "INSERT INTO t(k, v) VALUES (?1, randomblob(3000))",
            [format!("a{i}")],
        )
        .unwrap();
    }
    // A reader pins the WAL after three transactions.
    let reader = Connection::open(&db).unwrap();
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM t;")
        .unwrap();
    for i in 0..4 {
        c.execute(
            "INSERT INTO t(k, v) VALUES (?1, randomblob(3000))",
            [format!("b{i}")],
        )
        .unwrap();
    }
    let (log, done) = checkpoint(&c, "PASSIVE");
    assert!(done > 0 && done < log, "{done} of {log}");
    let dir = tmp.path().join("ltx");
    let r = run(&["wal", "encode", s(&db), "-o", s(&dir)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("copied the first 3 transactions"),
        "{}",
        r.stderr
    );
    assert_eq!(ltx_names(&dir).len(), 1 + 4);
    // --no-shm: every transaction gets its file (applied over a snapshot
    // that already holds some of them: the same final database).
    let dir2 = tmp.path().join("ltx2");
    let r = run(&["wal", "encode", s(&db), "-o", s(&dir2), "--no-shm"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(ltx_names(&dir2).len(), 1 + 7);
    reader.execute_batch("COMMIT;").unwrap();
    let out = tmp.path().join("restored.db");
    apply(&dir, &out);
    drop(reader);
    checkpoint(&c, "TRUNCATE");
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&db).unwrap());
}

/// A WAL that does not belong to the database is refused before anything
/// is written: another page size, or other salts than the database's
/// wal-index names. A directory already holding LTX files is refused
/// unless --force.
#[test]
fn refuses_what_does_not_belong() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a.db");
    let b = tmp.path().join("b.db");
    let k = tmp.path().join("k.db");
    let ca = open_wal_db(&a, 4096);
    let cb = open_wal_db(&b, 4096);
    let ck = open_wal_db(&k, 1024);
    for c in [&ca, &cb, &ck] {
        c.execute("INSERT INTO t(k, v) VALUES ('x', randomblob(100))", [])
            .unwrap();
    }
    let dir = tmp.path().join("ltx");
    let r = run(&[
        "wal",
        "encode",
        s(&a),
        "--wal",
        s(&side(&k, "-wal")),
        "-o",
        s(&dir),
    ]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("does not belong"), "{}", r.stderr);
    assert!(r.stderr.contains("page size 1024"), "{}", r.stderr);
    let r = run(&[
        "wal",
        "encode",
        s(&a),
        "--wal",
        s(&side(&b, "-wal")),
        "--shm",
        s(&side(&a, "-shm")),
        "-o",
        s(&dir),
    ]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("not the one the database's connections use"),
        "{}",
        r.stderr
    );
    assert!(!dir.exists(), "nothing written");
    let r = run(&["wal", "encode", s(&a), "-o", s(&dir)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = run(&["wal", "encode", s(&a), "-o", s(&dir)]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("--force"), "{}", r.stderr);
    let r = run(&["wal", "encode", s(&a), "-o", s(&dir), "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(ltx_names(&dir).len(), 2);
}

/// `ltx wal dump`: every frame with its state, the transactions, and where
/// and why the valid part ends, in text and JSON, on a hand-built WAL with
/// a committed transaction, an uncommitted tail and frames of an older
/// generation.
#[test]
fn dump_states_and_end() {
    let ps = PageSize::new(512).unwrap();
    let mut w = Vec::new();
    let mut b = WalBuilder::new(ps, ByteOrder::Big, 4, 10, 20, &mut w);
    b.frame(&mut w, 1, 0, &[1u8; 512]);
    b.frame(&mut w, 2, 2, &[2u8; 512]);
    b.frame(&mut w, 3, 0, &[3u8; 512]); // uncommitted
    let mut old = Vec::new();
    let mut ob = WalBuilder::new(ps, ByteOrder::Big, 3, 9, 99, &mut old);
    for p in 1..=5 {
        ob.frame(&mut old, p, if p == 5 { 5 } else { 0 }, &[9u8; 512]);
    }
    // The new generation overwrote the start of the old one.
    let mut file = old.clone();
    file[..w.len()].copy_from_slice(&w);
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("x.db-wal");
    std::fs::write(&p, &file).unwrap();

    let r = run(&["wal", "dump", s(&p)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        "magic:           0x377f0683 (checksum words big-endian)",
        "checkpoint_seq:  4",
        "salt1:           0x0000000a",
        "committed (txn 0)",
        "uncommitted",
        "after-end",
        "differ from the header's 0000000a 00000014",
    ] {
        assert!(r.stdout.contains(want), "{want}: {}", r.stdout);
    }
    assert!(
        r.stdout
            .contains("valid up to byte 1104 (1 transactions, 2 frames)"),
        "{}",
        r.stdout
    );

    let r = run(&["wal", "dump", "--json", s(&p)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["header"]["valid"], true);
    assert_eq!(j["header"]["byte_order"], "big-endian");
    assert_eq!(j["header"]["page_size"], 512);
    assert_eq!(j["end"]["reason"], "salt-mismatch");
    assert_eq!(j["end"]["valid_end"], 32 + 2 * 536);
    assert_eq!(j["end"]["uncommitted_frames"], 1);
    let states: Vec<&str> = j["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["state"].as_str().unwrap())
        .collect();
    assert_eq!(
        states,
        [
            "committed",
            "committed",
            "uncommitted",
            "after-end",
            "after-end"
        ]
    );
    assert_eq!(j["frames"][3]["salt_ok"], false);
    assert_eq!(j["frames"][0]["transaction"], 0);
    assert_eq!(j["transactions"][0]["pgnos"], serde_json::json!([1, 2]));
    assert_eq!(j["transactions"][0]["commit"], 2);

    let r = run(&["wal", "dump", "--json", "--summary", s(&p)]);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(j.get("frames").is_none());

    // Not a WAL at all: dumped as a WAL with no valid frames.
    let junk = tmp.path().join("junk");
    std::fs::write(&junk, [7u8; 100]).unwrap();
    let r = run(&["wal", "dump", "--json", s(&junk)]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["header"]["valid"], false);
    assert_eq!(j["end"]["reason"], "bad-header");
    assert!(j["header"]["problem"].as_str().unwrap().contains("magic"));
    let r = run(&["wal", "dump", s(&tmp.path().join("missing"))]);
    assert_eq!(r.code, 2);
}

/// A real WAL dumped: frames and transactions agree with what SQLite wrote.
#[test]
fn dump_real_wal() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("app.db");
    let c = open_wal_db(&db, 4096);
    workload(&c, 9);
    let r = run(&["wal", "dump", "--json", s(&side(&db, "-wal"))]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    let w = std::fs::read(side(&db, "-wal")).unwrap();
    let scan = ltx_core::wal::scan(&w);
    assert_eq!(
        j["transactions"].as_array().unwrap().len(),
        scan.transactions.len()
    );
    assert_eq!(j["end"]["valid_end"], scan.end.valid_end);
    let frames = j["frames"].as_array().unwrap();
    assert!(frames
        .iter()
        .all(|f| f["checksum_ok"] == true && f["salt_ok"] == true));
    assert_eq!(frames.len() as u64, (w.len() as u64 - 32) / 4120);
}

/// A WAL larger than the 1 MiB reads `ltx wal` streams in, with frames
/// split across reads (64 KiB pages, 24-byte headers): the dump and the
/// encoding see what an in-memory scan sees.
#[test]
fn streamed_in_pieces() {
    let ps = PageSize::new(65536).unwrap();
    let mut w = Vec::new();
    let mut b = WalBuilder::new(ps, ByteOrder::Little, 0, 3, 4, &mut w);
    let mut db = Vec::new();
    for p in 1..=6u32 {
        let mut page = vec![p as u8; 65536];
        if p == 1 {
            page[..16].copy_from_slice(b"SQLite format 3\0");
            page[16..18].copy_from_slice(&1u16.to_be_bytes());
        }
        db.extend_from_slice(&page);
    }
    for t in 0..20u32 {
        for k in 0..3u32 {
            let pgno = 2 + (t + k) % 5;
            let commit = if k == 2 { 6 } else { 0 };
            b.frame(&mut w, pgno, commit, &vec![(t * 3 + k) as u8; 65536]);
        }
    }
    b.frame(&mut w, 2, 0, &[9u8; 65536]); // uncommitted tail
    assert!(w.len() > 3 << 20);
    let tmp = tempfile::tempdir().unwrap();
    let dbp = tmp.path().join("x.db");
    std::fs::write(&dbp, &db).unwrap();
    std::fs::write(side(&dbp, "-wal"), &w).unwrap();
    let scan = ltx_core::wal::scan(&w);
    assert_eq!(scan.transactions.len(), 20);

    let r = run(&["wal", "dump", "--json", s(&side(&dbp, "-wal"))]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let j: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(j["frames"].as_array().unwrap().len(), 61);
    assert_eq!(j["transactions"].as_array().unwrap().len(), 20);
    assert_eq!(j["end"]["valid_end"], scan.end.valid_end);
    assert_eq!(j["end"]["uncommitted_frames"], 1);

    let dir = tmp.path().join("ltx");
    let r = run(&["wal", "encode", s(&dbp), "-o", s(&dir)]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(ltx_names(&dir).len(), 21);
    let v = run(&["verify", s(&dir)]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    let out = tmp.path().join("out.db");
    apply(&dir, &out);
    // The model: the last committed frame of every page over the database.
    let mut want = db.clone();
    for t in &scan.transactions {
        for p in &t.pages {
            let off = p.data_offset() as usize;
            let at = (p.pgno as usize - 1) * 65536;
            want[at..at + 65536].copy_from_slice(&w[off..off + 65536]);
        }
    }
    assert!(std::fs::read(&out).unwrap() == want);
}
