//! WAL → LTX against real SQLite (rusqlite, bundled): random transactions
//! on a database in WAL mode with automatic checkpoints off; the database
//! file and the `-wal` file are copied before any checkpoint; the WAL is
//! read with our reader and encoded as an LTX chain (a snapshot of the
//! database file as TXID 1, then one L0 file per transaction), applied with
//! the streaming decoder, and compared byte for byte with the database
//! after `PRAGMA wal_checkpoint(TRUNCATE)`. Each post-apply checksum is
//! checked against the checksum of the database state it produces
//! (`common::apply`), with checksums tracked and as NoChecksum files.

mod common;

use std::path::{Path, PathBuf};

use ltx_core::wal::{self, WalEndReason};
use ltx_core::PageSize;
use proptest::prelude::*;
use rusqlite::{params, Connection};

struct Db {
    _dir: tempfile::TempDir,
    path: PathBuf,
    conn: Connection,
    page_size: PageSize,
}

fn wal_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

impl Db {
    fn open(page_size: u32, incremental_vacuum: bool) -> Db {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        let av = if incremental_vacuum {
            "INCREMENTAL"
        } else {
            "NONE"
        };
        conn.execute_batch(&format!(
            "PRAGMA page_size={page_size}; PRAGMA auto_vacuum={av};"
        ))
        .unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint=0;
             CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB);
             CREATE INDEX t_len ON t(length(v));",
        )
        .unwrap();
        let db = Db {
            _dir: dir,
            path,
            conn,
            page_size: PageSize::new(page_size).unwrap(),
        };
        db.checkpoint("TRUNCATE");
        db
    }

    fn checkpoint(&self, mode: &str) -> (i64, i64) {
        let (busy, log, done): (i64, i64, i64) = self
            .conn
            .query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(busy, 0, "checkpoint blocked");
        (log, done)
    }

    fn db_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.path).unwrap()
    }

    fn wal_bytes(&self) -> Vec<u8> {
        std::fs::read(wal_path(&self.path)).unwrap_or_default()
    }

    fn run(&self, op: &Op) {
        let c = &self.conn;
        let ps = self.page_size.get() as i64;
        match *op {
            Op::Insert { rows, size } => {
                c.execute(
                    "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < ?1)
                     INSERT INTO t(v) SELECT randomblob(?2) FROM n",
                    params![rows, size as i64 * ps / 1024],
                )
                .unwrap();
            }
            Op::Update { every, size } => {
                c.execute(
                    "UPDATE t SET v = randomblob(?1) WHERE id % ?2 = 0",
                    params![size as i64 * ps / 1024, every],
                )
                .unwrap();
            }
            Op::DeleteNewest(n) => {
                c.execute(
                    "DELETE FROM t WHERE id > (SELECT max(id) FROM t) - ?1",
                    params![n],
                )
                .unwrap();
            }
            Op::DeleteEvery(n) => {
                c.execute("DELETE FROM t WHERE id % ?1 = 1", params![n])
                    .unwrap();
            }
            Op::IncrementalVacuum => {
                // One page per step: step to the end.
                let mut st = c.prepare("PRAGMA incremental_vacuum").unwrap();
                let mut rows = st.query([]).unwrap();
                while rows.next().unwrap().is_some() {}
            }
            Op::Vacuum => c.execute_batch("VACUUM").unwrap(),
            Op::Batch(rows) => {
                c.execute_batch("BEGIN").unwrap();
                for i in 0..rows {
                    c.execute(
                        "INSERT INTO t(v) VALUES (randomblob(?1))",
                        params![(i as i64 * 37) % (2 * ps)],
                    )
                    .unwrap();
                }
                c.execute_batch("COMMIT").unwrap();
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// `rows` rows of `size` KiB per KiB of page size (big ones overflow).
    Insert {
        rows: u32,
        size: u32,
    },
    Update {
        every: u32,
        size: u32,
    },
    DeleteNewest(u32),
    DeleteEvery(u32),
    IncrementalVacuum,
    Vacuum,
    /// Many statements in one transaction.
    Batch(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (1u32..30, 0u32..3000).prop_map(|(rows, size)| Op::Insert { rows, size }),
        2 => (1u32..5, 0u32..2000).prop_map(|(every, size)| Op::Update { every, size }),
        2 => (1u32..40).prop_map(Op::DeleteNewest),
        1 => (2u32..4).prop_map(Op::DeleteEvery),
        1 => Just(Op::IncrementalVacuum),
        1 => Just(Op::Vacuum),
        1 => (2u32..50).prop_map(Op::Batch),
    ]
}

/// Runs `ops`, then checks the WAL → LTX chain against the checkpointed
/// database, from the database file as it was before the WAL.
fn check(db: &Db, ops: &[Op]) {
    let base = db.db_bytes();
    for op in ops {
        db.run(op);
    }
    assert_eq!(db.db_bytes(), base, "no checkpoint happened");
    let w = db.wal_bytes();
    db.checkpoint("TRUNCATE");
    let after = db.db_bytes();

    let scan = wal::scan(&w);
    if !w.is_empty() {
        assert_eq!(scan.end.reason, WalEndReason::EndOfInput, "{}", scan.end);
        assert_eq!(scan.end.uncommitted_frames, 0);
        assert_eq!(scan.end.valid_end, w.len() as u64);
        assert_eq!(scan.header.unwrap().page_size, db.page_size);
    }
    for checksums in [true, false] {
        let image = common::replay(db.page_size, &base, &w, checksums);
        assert_eq!(image.len(), after.len(), "database size");
        assert!(image == after, "database bytes differ");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn random_transactions_match_sqlite(
        ps in prop::sample::select(vec![512u32, 1024, 4096]),
        incremental in any::<bool>(),
        setup in prop::collection::vec(op(), 0..4),
        ops in prop::collection::vec(op(), 1..14),
    ) {
        let db = Db::open(ps, incremental);
        for op in &setup {
            db.run(op);
        }
        db.checkpoint("TRUNCATE");
        check(&db, &ops);
    }
}

#[test]
fn shrinking_transactions() {
    for incremental in [false, true] {
        let db = Db::open(1024, incremental);
        db.run(&Op::Insert {
            rows: 200,
            size: 1500,
        });
        db.checkpoint("TRUNCATE");
        let pages_before = db.db_bytes().len() / 1024;
        let ops = [
            Op::DeleteNewest(150),
            if incremental {
                Op::IncrementalVacuum
            } else {
                Op::Vacuum
            },
            Op::Insert { rows: 3, size: 100 },
        ];
        let base = db.db_bytes();
        for op in &ops {
            db.run(op);
        }
        let w = db.wal_bytes();
        let scan = wal::scan(&w);
        let shrink = scan
            .transactions
            .iter()
            .any(|t| (t.commit as usize) < pages_before / 2);
        let commits: Vec<u32> = scan.transactions.iter().map(|t| t.commit).collect();
        assert!(
            shrink,
            "a transaction shrinks the database from {pages_before} pages: {commits:?} (incremental {incremental})"
        );
        db.checkpoint("TRUNCATE");
        let after = db.db_bytes();
        for checksums in [true, false] {
            assert!(common::replay(db.page_size, &base, &w, checksums) == after);
        }
    }
}

#[test]
fn restarted_wal() {
    let db = Db::open(4096, false);
    db.run(&Op::Insert {
        rows: 100,
        size: 600,
    });
    // Checkpoint everything but leave the WAL as it is: SQLite restarts it
    // at the next write (new salts, checkpoint sequence + 1), leaving the
    // older frames behind the new ones.
    let (log, done) = db.checkpoint("PASSIVE");
    assert_eq!(log, done);
    let old = db.wal_bytes();
    let base = db.db_bytes();
    db.run(&Op::Insert { rows: 1, size: 10 });
    db.run(&Op::Update {
        every: 50,
        size: 20,
    });
    let w = db.wal_bytes();
    assert_eq!(
        w.len(),
        old.len(),
        "the new frames overwrite the start of the old ones"
    );
    assert_ne!(w[16..24], old[16..24], "new salts");
    let scan = wal::scan(&w);
    let h = scan.header.unwrap();
    assert_eq!(
        h.checkpoint_seq,
        wal::scan(&old).header.unwrap().checkpoint_seq + 1
    );
    assert_eq!(scan.transactions.len(), 2);
    assert!(
        matches!(scan.end.reason, WalEndReason::SaltMismatch { .. }),
        "{}",
        scan.end
    );
    assert!(scan.end.valid_end < w.len() as u64);
    db.checkpoint("TRUNCATE");
    let after = db.db_bytes();
    for checksums in [true, false] {
        assert!(common::replay(db.page_size, &base, &w, checksums) == after);
    }
}

#[test]
fn page_size_65536_from_sqlite() {
    let db = Db::open(65536, false);
    let base = db.db_bytes();
    db.run(&Op::Insert {
        rows: 20,
        size: 100,
    });
    db.run(&Op::Update { every: 3, size: 50 });
    let w = db.wal_bytes();
    // SQLite's WAL header stores the page size as is (its database header
    // is where 65536 is written as 1).
    assert_eq!(u32::from_be_bytes(w[8..12].try_into().unwrap()), 65536);
    let scan = wal::scan(&w);
    assert_eq!(scan.header.unwrap().page_size.get(), 65536);
    assert_eq!(scan.transactions.len(), 2);
    db.checkpoint("TRUNCATE");
    let after = db.db_bytes();
    assert_eq!(u16::from_be_bytes([after[16], after[17]]), 1);
    assert!(common::replay(db.page_size, &base, &w, true) == after);
}

fn shm(db: &Db) -> wal::ShmHeader {
    let mut p = db.path.as_os_str().to_owned();
    p.push("-shm");
    wal::ShmHeader::parse(&std::fs::read(PathBuf::from(p)).unwrap()).unwrap()
}

/// The `-shm` header of a live SQLite database names the WAL generation in
/// use (its salts), the last frame, the database size and how many frames a
/// checkpoint copied into the database file, at both page-size encodings.
#[test]
fn shm_header_from_sqlite() {
    for ps in [4096u32, 65536] {
        let db = Db::open(ps, false);
        db.run(&Op::Insert {
            rows: 30,
            size: 300,
        });
        db.run(&Op::Update { every: 2, size: 40 });
        let w = db.wal_bytes();
        let scan = wal::scan(&w);
        let h = scan.header.unwrap();
        let s = shm(&db);
        assert_eq!(s.page_size.unwrap().get(), ps);
        assert_eq!((s.salt1, s.salt2), (h.salt1, h.salt2));
        let frames = (scan.end.valid_end - 32) / h.frame_size() as u64;
        assert_eq!(u64::from(s.max_frame), frames);
        assert_eq!(s.db_pages, scan.transactions.last().unwrap().commit);
        assert_eq!(s.backfilled, 0);
        let (log, done) = db.checkpoint("PASSIVE");
        assert_eq!(log, done);
        let s2 = shm(&db);
        assert_eq!(u64::from(s2.backfilled), frames);
        assert_eq!(s2.max_frame, s.max_frame);
        // The next write restarts the WAL: new salts in both files.
        db.run(&Op::Insert { rows: 1, size: 10 });
        let h3 = wal::scan(&db.wal_bytes()).header.unwrap();
        let s3 = shm(&db);
        assert_eq!((s3.salt1, s3.salt2), (h3.salt1, h3.salt2));
        assert_ne!((s3.salt1, s3.salt2), (s.salt1, s.salt2));
        assert_eq!(s3.backfilled, 0);
    }
}

fn shm_bytes(db: &Db) -> Vec<u8> {
    let mut p = db.path.as_os_str().to_owned();
    p.push("-shm");
    std::fs::read(PathBuf::from(p)).unwrap()
}

/// Every valid frame of `w` up to the last commit: (frame number, page,
/// the frame's checksum).
fn committed_frames(w: &[u8]) -> Vec<(u32, u32, [u32; 2])> {
    let scan = wal::scan(w);
    let h = scan.header.unwrap();
    let fs = h.frame_size() as u64;
    let end = scan.transactions.last().map_or(32, |t| t.end());
    let be = |at: usize| u32::from_be_bytes(w[at..at + 4].try_into().unwrap());
    (0..(end - 32) / fs)
        .map(|i| {
            let at = (32 + i * fs) as usize;
            (i as u32 + 1, be(at), [be(at + 16), be(at + 20)])
        })
        .collect()
}

/// The wal-index SQLite builds for a WAL of thousands of frames (three
/// 32 KiB wal-index pages, so the first page's shorter page list and the
/// page boundaries are crossed) is byte for byte what `index_append`
/// builds from the WAL's frames: from nothing, and appended one
/// transaction at a time onto SQLite's own wal-index, including after a
/// WAL restart, where the older generation's entries are still in the
/// file. The header `ShmHeader::to_bytes` writes for the new state is
/// SQLite's, and `index_lookup` finds each page's newest frame.
#[test]
fn shm_hash_tables_from_sqlite() {
    let db = Db::open(512, false);
    let ops = [
        Op::Insert {
            rows: 2500,
            size: 1500,
        },
        Op::Update {
            every: 3,
            size: 900,
        },
        Op::Insert {
            rows: 1500,
            size: 2500,
        },
        Op::DeleteEvery(2),
    ];
    let mut before = shm_bytes(&db);
    for (k, op) in ops.iter().enumerate() {
        let prev = wal::ShmHeader::parse(&before).unwrap();
        db.run(op);
        let after = shm_bytes(&db);
        let w = db.wal_bytes();
        let frames = committed_frames(&w);
        let s = wal::ShmHeader::parse(&after).unwrap();
        assert_eq!(s.max_frame as usize, frames.len());
        // Appended onto SQLite's wal-index as it was before.
        let mut mine = before.clone();
        mine.resize(wal::shm_size_for(s.max_frame).max(mine.len()), 0);
        for &(f, pgno, _) in frames.iter().filter(|f| f.0 > prev.max_frame) {
            wal::index_append(&mut mine[..], prev.max_frame, f, pgno).unwrap();
        }
        assert_eq!(mine.len(), after.len(), "op {k}: wal-index size");
        assert!(
            mine[wal::SHM_HEADER_SIZE..] == after[wal::SHM_HEADER_SIZE..],
            "op {k}: hash tables differ from SQLite's"
        );
        // The header a writer publishes for the transaction.
        let want = wal::ShmHeader {
            change: prev.change.wrapping_add(1),
            max_frame: frames.len() as u32,
            db_pages: wal::scan(&w).transactions.last().unwrap().commit,
            frame_checksum: frames.last().unwrap().2,
            backfilled: s.backfilled,
            ..prev
        };
        assert_eq!(s, want, "op {k}");
        assert_eq!(want.to_bytes()[..], after[..48], "op {k}: header bytes");
        before = after;
    }
    let after = shm_bytes(&db);
    let frames = committed_frames(&db.wal_bytes());
    assert!(frames.len() > 2 * 4096, "{} frames", frames.len());
    // From nothing.
    let mut fresh = vec![0u8; wal::shm_size_for(frames.len() as u32)];
    for &(f, pgno, _) in &frames {
        wal::index_append(&mut fresh[..], 0, f, pgno).unwrap();
    }
    assert!(fresh[wal::SHM_HEADER_SIZE..] == after[wal::SHM_HEADER_SIZE..]);
    let mx = frames.len() as u32;
    let mut newest = std::collections::HashMap::new();
    for &(f, pgno, _) in &frames {
        newest.insert(pgno, f);
        assert_eq!(wal::index_frame_pgno(&after[..], f).unwrap(), pgno);
    }
    for (&pgno, &f) in &newest {
        assert_eq!(wal::index_lookup(&after[..], pgno, 1, mx).unwrap(), Some(f));
    }
    assert_eq!(
        wal::index_lookup(&after[..], 0x7fff_fff0, 1, mx).unwrap(),
        None
    );

    // A restart: the next transaction starts again at frame 1 with the
    // older generation's entries still in the file.
    let (log, done) = db.checkpoint("PASSIVE");
    assert_eq!(log, done);
    let before = shm_bytes(&db);
    db.run(&Op::Update {
        every: 7,
        size: 300,
    });
    let after = shm_bytes(&db);
    let frames = committed_frames(&db.wal_bytes());
    let mut mine = before.clone();
    for &(f, pgno, _) in &frames {
        wal::index_append(&mut mine[..], 0, f, pgno).unwrap();
    }
    assert!(mine[wal::SHM_HEADER_SIZE..] == after[wal::SHM_HEADER_SIZE..]);
}

/// An interrupted writer's entries past the committed last frame are
/// removed before new ones go in (SQLite's `walCleanupHash`).
#[test]
fn index_append_cleans_up_an_interrupted_writer() {
    let mut a = vec![0u8; wal::shm_size_for(20)];
    for f in 1..=10 {
        wal::index_append(&mut a[..], 0, f, f * 3).unwrap();
    }
    let committed = a.clone();
    // Frames 11..=14 written but never committed.
    for f in 11..=14 {
        wal::index_append(&mut a[..], 10, f, 1000 + f).unwrap();
    }
    assert_eq!(wal::index_lookup(&a[..], 1011, 1, 14).unwrap(), Some(11));
    // The next writer starts again at 11.
    wal::index_append(&mut a[..], 10, 11, 5).unwrap();
    let mut b = committed;
    wal::index_append(&mut b[..], 10, 11, 5).unwrap();
    assert!(a == b);
    assert_eq!(wal::index_lookup(&a[..], 1012, 1, 20).unwrap(), None);
    assert_eq!(
        wal::index_append(&mut a[..], 11, 11, 5),
        Err(wal::IndexProblem::BadFrame {
            frame: 11,
            max_frame: 11
        })
    );
}

/// A wal-index SQLite rebuilds from an empty WAL (the first connection
/// after every other one closed) has no page size yet: no frame has said
/// it. The first transaction's frames do.
#[test]
fn shm_header_of_an_empty_wal() {
    let db = Db::open(4096, false);
    db.run(&Op::Insert { rows: 3, size: 10 });
    let path = db.path.clone();
    let dir = db._dir;
    drop(db.conn);
    let c = Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 3);
    let mut p = path.as_os_str().to_owned();
    p.push("-shm");
    let s = wal::ShmHeader::parse(&std::fs::read(PathBuf::from(&p)).unwrap()).unwrap();
    assert_eq!(
        (s.page_size, s.max_frame, s.salt1, s.salt2),
        (None, 0, 0, 0)
    );
    c.execute("INSERT INTO t(v) VALUES (x'00')", []).unwrap();
    let s = wal::ShmHeader::parse(&std::fs::read(PathBuf::from(&p)).unwrap()).unwrap();
    assert_eq!(s.page_size, PageSize::new(4096));
    assert!(s.max_frame > 0);
    drop(c);
    drop(dir);
}
