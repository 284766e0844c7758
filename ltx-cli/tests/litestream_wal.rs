//! Differential check of `ltx wal encode` against real Litestream 0.5.17:
//! the same live database and workload, Litestream's L0 files and ours from
//! the same WAL.
//!
//! Litestream ships what the WAL gained since its last sync as one L0 file
//! (its first file is a snapshot of the database at that WAL position); we
//! write the main file as a snapshot and one file per transaction. So each
//! Litestream file is matched with our files whose WAL ranges tile its
//! range, and:
//! - a file made of one transaction has the same page set, page bytes,
//!   commit, `wal_offset`, `wal_size`, salts, page size and (with
//!   `--no-checksum`) flags as ours;
//! - a file made of several has the pages our files leave (the last write
//!   of each page, none above the commit) and the last one's commit;
//! - applying Litestream's chain up to each of its files and ours up to
//!   the matching file gives the same database, which is also what the
//!   writer had at that moment.
//!
//! What differs: TXIDs (Litestream's first file bundles everything before
//! its first sync, and one sync can bundle transactions), timestamps (its
//! clock at sync time; ours `--timestamp`), and without `--no-checksum` our
//! flags and pre-/post-apply checksums (Litestream writes NoChecksum).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ltx_core::{Header, LtxFile};

mod support;
use support::litestream::{self, Kind, Mode, Site};
use support::run;

struct Ltx {
    path: PathBuf,
    header: Header,
    pages: BTreeMap<u32, Vec<u8>>,
}

fn read_dir(dir: &Path) -> Vec<Ltx> {
    let mut v: Vec<Ltx> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ltx"))
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            let f = LtxFile::parse(&bytes).unwrap();
            f.verify().unwrap();
            let ps = f.header().page_size.bytes();
            let mut pages = BTreeMap::new();
            for e in f.index().entries() {
                let mut b = vec![0u8; ps];
                assert!(f.read_page(e.pgno, &mut b).unwrap());
                pages.insert(e.pgno, b);
            }
            Ltx {
                header: *f.header(),
                path,
                pages,
            }
        })
        .collect();
    v.sort_by_key(|f| f.header.max_txid);
    v
}

fn wal_end(h: &Header) -> i64 {
    h.wal_offset + h.wal_size
}

/// `ltx apply` of `files` into a new database; its bytes.
fn apply(files: &[&Ltx], out: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(out);
    let mut args = vec![
        "apply".to_string(),
        "--db".into(),
        out.display().to_string(),
    ];
    args.extend(files.iter().map(|f| f.path.display().to_string()));
    let a: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run(&a);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    std::fs::read(out).unwrap()
}

#[test]
fn same_wal_same_l0_files_as_litestream() {
    let Some(bin) = litestream::binary() else {
        return;
    };
    let mut site = Site::new(&bin, Kind::File, Mode::ShipOnly, "walenc");
    site.start();
    // One transaction per step, each shipped before the next: inserts,
    // overflow pages, updates, deletes, a schema change, a shrinking
    // VACUUM, a multi-statement transaction. No checkpoint anywhere (the
    // site's Litestream config never checkpoints; the writer stays far
    // below SQLite's 1000-page autocheckpoint), so the WAL holds them all.
    let steps = [
        "INSERT INTO t(k, v) VALUES (1, randomblob(100));",
        "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 40) INSERT INTO t(k, v) SELECT i, randomblob(300) FROM n; COMMIT;",
        "INSERT INTO t(k, v) VALUES (2, randomblob(20000));",
        "UPDATE t SET v = randomblob(50) WHERE k % 3 = 0;",
        "CREATE INDEX t_k ON t(k);",
        "BEGIN; DELETE FROM t WHERE k % 2 = 0; INSERT INTO t(k, v) VALUES (3, randomblob(10)); COMMIT;",
        "DELETE FROM t WHERE k = 3;",
        "VACUUM;",
        "INSERT INTO t(k, v) VALUES (4, randomblob(5000));",
        "ALTER TABLE t ADD COLUMN note TEXT;",
        "UPDATE t SET note = 'x' WHERE k < 10;",
    ];
    for s in steps {
        site.step(s);
    }
    // The database and its WAL as they are, Litestream still holding its
    // read transaction.
    let copy = site.path("copy.db");
    for suffix in ["", "-wal", "-shm"] {
        let mut from = site.db.as_os_str().to_owned();
        from.push(suffix);
        let mut to = copy.as_os_str().to_owned();
        to.push(suffix);
        std::fs::copy(&from, &to).unwrap();
    }
    site.stop();

    let ours_dir = site.path("ours");
    let r = run(&[
        "wal",
        "encode",
        copy.to_str().unwrap(),
        "-o",
        ours_dir.to_str().unwrap(),
        "--no-checksum",
        "--timestamp",
        "1700000000000",
    ]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let ours = read_dir(&ours_dir);
    let theirs = read_dir(&site.tmp.path().join("replica/ltx/0"));
    assert!(theirs.len() > steps.len(), "{} files", theirs.len());
    let wal = std::fs::read(site.path("copy.db-wal")).unwrap();
    let wal_header = ltx_core::wal::scan(&wal).header.unwrap();

    let scratch = site.path("scratch.db");
    let mut one_to_one = 0;
    let mut matched = 0usize;
    for (i, l) in theirs.iter().enumerate() {
        let lh = &l.header;
        assert_eq!(
            (lh.wal_salt1, lh.wal_salt2),
            (wal_header.salt1, wal_header.salt2),
            "{}: not this WAL generation",
            l.path.display()
        );
        // Our files (after our snapshot) tiling Litestream's WAL range.
        let tile: Vec<&Ltx> = ours[1..]
            .iter()
            .filter(|o| o.header.wal_offset >= lh.wal_offset && wal_end(&o.header) <= wal_end(lh))
            .collect();
        assert!(
            !tile.is_empty(),
            "{}: no file of ours in its WAL range",
            l.path.display()
        );
        assert_eq!(tile[0].header.wal_offset, lh.wal_offset);
        assert_eq!(wal_end(&tile.last().unwrap().header), wal_end(lh));
        for w in tile.windows(2) {
            assert_eq!(wal_end(&w[0].header), w[1].header.wal_offset);
        }
        let last = tile.last().unwrap();
        assert_eq!(lh.commit, last.header.commit, "{}", l.path.display());
        assert_eq!(lh.page_size, last.header.page_size);
        if i > 0 {
            // The pages the tile leaves: last write wins, none above the commit.
            let mut left: BTreeMap<u32, &Vec<u8>> = BTreeMap::new();
            for o in &tile {
                for (p, b) in &o.pages {
                    left.insert(*p, b);
                }
            }
            left.retain(|p, _| *p <= lh.commit);
            let theirs_pages: BTreeMap<u32, &Vec<u8>> =
                l.pages.iter().map(|(p, b)| (*p, b)).collect();
            assert!(
                left.keys().eq(theirs_pages.keys()),
                "{}: page sets differ: ours {:?}, Litestream's {:?}",
                l.path.display(),
                left.keys().collect::<Vec<_>>(),
                theirs_pages.keys().collect::<Vec<_>>()
            );
            assert!(
                left == theirs_pages,
                "{}: page bytes differ",
                l.path.display()
            );
            if tile.len() == 1 {
                one_to_one += 1;
                let oh = &tile[0].header;
                assert_eq!(
                    (
                        oh.wal_offset,
                        oh.wal_size,
                        oh.wal_salt1,
                        oh.wal_salt2,
                        oh.flags
                    ),
                    (
                        lh.wal_offset,
                        lh.wal_size,
                        lh.wal_salt1,
                        lh.wal_salt2,
                        lh.flags
                    ),
                    "{}: header fields differ",
                    l.path.display()
                );
            }
        }
        // The same database after both chains, and the writer's.
        let upto = ours
            .iter()
            .position(|o| o.header.max_txid == last.header.max_txid)
            .unwrap();
        let a = apply(&theirs[..=i].iter().collect::<Vec<_>>(), &scratch);
        let b = apply(&ours[..=upto].iter().collect::<Vec<_>>(), &scratch);
        assert!(a == b, "after {}: the databases differ", l.path.display());
        if let Some(w) = site.states.get(&lh.max_txid.0) {
            assert!(
                *w == a,
                "after {}: not the writer's database",
                l.path.display()
            );
            matched += 1;
        }
    }
    eprintln!(
        "{} Litestream L0 files, {} of ours; {one_to_one} one-to-one, {matched} checked against the writer",
        theirs.len(),
        ours.len()
    );
    // Every step was shipped on its own.
    assert!(one_to_one >= steps.len(), "{one_to_one} one-to-one files");
    assert!(
        matched >= steps.len(),
        "{matched} states checked against the writer"
    );
    // Our chain covers the whole WAL, Litestream's too.
    assert_eq!(
        wal_end(&theirs.last().unwrap().header),
        wal_end(&ours.last().unwrap().header)
    );
}
