//! `listing`: object keys from the input through `ltx_compactor::catalog`
//! (`parse_key`, `format_key`, `from_listing`, `DbLocation::detect`,
//! `level_gaps`) and `policy::check_contiguity`.
//!
//! Input bytes (a reader that yields zeros when exhausted):
//!
//! ```text
//! d: the database from_listing keeps (d % DBS.len(), see DBS)
//! then up to 64 keys, each: k, and by k % 4:
//!   0: an arbitrary key of (next byte % 96) bytes (UTF-8, lossy)
//!   1: <db>/ltx/<level>/<min>-<max>.ltx with a decimal level (0..=15, or a
//!      two-digit "0N" when the level byte is >= 0xf0)
//!   2: <db>/<level %04x>/<min>-<max>.ltx (level 0..=15; upper case, 3 or 5
//!      digits when the level byte is >= 0xf0)
//!   3: a canonical key (either layout) with one byte replaced
//!   then: db = DBS[k >> 4 % DBS.len()], TXIDs (byte b: 1 + b % 16, 0 if b == 0x7f,
//!   or the next 8 bytes if b >= 0x80), size and last-modified bytes
//! ```
//!
//! Checks: no panic; a key that parses has a level <= 9 and 1 <= min <= max,
//! and formats back to itself (every accepted key is canonical); a key
//! formatted from valid parts (a database of non-empty segments, level <= 9,
//! 1 <= min <= max) parses back to those parts; `from_listing` keeps exactly
//! the keys of its database, sorted, with their parsed fields, and returns
//! the others as foreign; `DbLocation::detect` finds that database and a
//! layout present (or `None` for an empty catalog); `level_gaps` names only
//! catalog keys; `check_contiguity` does not panic.

use ltx_compactor::catalog::{
    catalog_order, format_key, from_listing, level_gaps, parse_key, DbLocation, Layout,
    ListedObject, SNAPSHOT_LEVEL,
};
use ltx_compactor::policy::check_contiguity;
use ltx_core::TxId;

use crate::Bytes;

/// Database prefixes keys are built with (valid and not).
pub const DBS: &[&str] = &[
    "", "db", "a/b", "ltx", "db/ltx", "0001", "x//y", "/db", "db/", "ltx/1", "é/ü", "a/0009",
];

fn txid(r: &mut Bytes<'_>) -> u64 {
    let b = r.u8();
    match b {
        0x7f => 0,
        0x80..=0xff => r.u64(),
        _ => 1 + u64::from(b % 16),
    }
}

fn valid_db(db: &str) -> bool {
    db.is_empty() || db.split('/').all(|s| !s.is_empty())
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    let mut r = Bytes::new(data);
    let keep_db = DBS[usize::from(r.u8()) % DBS.len()];
    let mut listing = Vec::new();
    while !r.is_empty() && listing.len() < 64 {
        let k = r.u8();
        let db = DBS[usize::from(k >> 4) % DBS.len()];
        let key = match k % 4 {
            0 => {
                let n = usize::from(r.u8() % 96);
                String::from_utf8_lossy(r.take(n)).into_owned()
            }
            1 | 2 => {
                let lb = r.u8();
                let level = lb % 16;
                let (min, max) = (txid(&mut r), txid(&mut r));
                let level_s = match (k % 4, lb >= 0xf0) {
                    (1, false) => format!("ltx/{level}"),
                    (1, true) => format!("ltx/0{}", level % 10),
                    (_, false) => format!("{level:04x}"),
                    (_, true) => match lb % 3 {
                        0 => format!("{level:04X}"),
                        1 => format!("{level:03x}"),
                        _ => format!("{level:05x}"),
                    },
                };
                let sep = if db.is_empty() { "" } else { "/" };
                let name = ltx_core::format_filename(TxId(min), TxId(max));
                let key = format!("{db}{sep}{level_s}/{name}");
                // Valid parts format to exactly this key, which parses back.
                if lb < 0xf0 && level <= SNAPSHOT_LEVEL && valid_db(db) && 1 <= min && min <= max {
                    let layout = if k % 4 == 1 {
                        Layout::LtxDir
                    } else {
                        Layout::HexLevel
                    };
                    assert_eq!(format_key(db, layout, level, TxId(min), TxId(max)), key);
                    let p = parse_key(&key)
                        .unwrap_or_else(|| panic!("formatted key {key:?} does not parse"));
                    assert_eq!(
                        (p.db.as_str(), p.layout, p.level, p.min_txid.0, p.max_txid.0),
                        (db, layout, level, min, max),
                        "{key:?}"
                    );
                }
                key
            }
            _ => {
                let layout = if k & 0x08 != 0 {
                    Layout::HexLevel
                } else {
                    Layout::LtxDir
                };
                let level = r.u8() % 10;
                let (min, max) = (txid(&mut r), txid(&mut r));
                let mut key = format_key(db, layout, level, TxId(min), TxId(max)).into_bytes();
                let (pos, v) = (usize::from(r.u8()), r.u8());
                if !key.is_empty() {
                    let i = pos % key.len();
                    key[i] = v;
                }
                String::from_utf8_lossy(&key).into_owned()
            }
        };
        listing.push(ListedObject {
            key,
            size: u64::from(r.u8()),
            last_modified_ms: i64::from(r.u8()) * 1000,
        });
    }
    check(keep_db, &listing);
}

/// Checks one listing.
pub fn check(db: &str, listing: &[ListedObject]) {
    let mut all = Vec::new();
    for o in listing {
        let Some(p) = parse_key(&o.key) else { continue };
        assert!(p.level <= SNAPSHOT_LEVEL, "{:?}: level {}", o.key, p.level);
        assert!(
            1 <= p.min_txid.0 && p.min_txid <= p.max_txid,
            "{:?}: range {}-{}",
            o.key,
            p.min_txid,
            p.max_txid
        );
        assert!(valid_db(&p.db), "{:?}: database {:?}", o.key, p.db);
        let again = format_key(&p.db, p.layout, p.level, p.min_txid, p.max_txid);
        assert_eq!(again, o.key, "a parsed key does not format back to itself");
        all.push(p.object(o.clone()));
    }

    let (cat, foreign) = from_listing(db, listing.iter().cloned());
    assert_eq!(cat.len() + foreign.len(), listing.len());
    assert!(
        cat.windows(2).all(|w| catalog_order(&w[0], &w[1]).is_le()),
        "catalog not sorted"
    );
    for o in &cat {
        let p = parse_key(&o.key).expect("catalog keys parse");
        assert_eq!(p.db, db, "{:?} is not in {db:?}", o.key);
        assert_eq!(
            (o.level, o.min_txid, o.max_txid),
            (p.level, p.min_txid, p.max_txid)
        );
        assert!(listing
            .iter()
            .any(|l| l.key == o.key && l.size == o.size && l.last_modified_ms == o.created_ms));
    }
    for k in &foreign {
        assert!(
            parse_key(k).is_none_or(|p| p.db != db),
            "{k:?} is not foreign"
        );
    }
    let expected_in = listing
        .iter()
        .filter(|l| parse_key(&l.key).is_some_and(|p| p.db == db))
        .count();
    assert_eq!(cat.len(), expected_in);

    match DbLocation::detect(&cat) {
        None => assert!(cat.is_empty(), "no location for a non-empty catalog"),
        Some(loc) => {
            assert_eq!(loc.db, db);
            assert!(cat
                .iter()
                .any(|o| parse_key(&o.key).is_some_and(|p| p.layout == loc.layout)));
        }
    }
    // Mixed databases: any database and layout that occur.
    if let Some(loc) = DbLocation::detect(&all) {
        assert!(all
            .iter()
            .any(|o| parse_key(&o.key).is_some_and(|p| p.layout == loc.layout && p.db == loc.db)));
    } else {
        assert!(all.is_empty());
    }

    for c in [&cat, &all] {
        let _ = check_contiguity(c);
        for level in 0..=SNAPSHOT_LEVEL + 1 {
            for (a, b) in level_gaps(c, level) {
                assert!(c.iter().any(|o| o.key == a && o.level == level));
                assert!(c.iter().any(|o| o.key == b && o.level == level));
            }
        }
    }
}
