//! The listing model: what the compactor knows about each LTX object in a
//! bucket, and the two Litestream key layouts.
//!
//! Litestream writes `<db>/ltx/<level>/<min>-<max>.ltx` (decimal level; file,
//! sftp, gs, abs, nats replicas) or `<db>/<level as %04x>/<min>-<max>.ltx`
//! (S3, OSS). Levels 0..=8 hold incremental files, level 9 snapshots.
//! Keys that do not parse are foreign (lease objects, temporary uploads,
//! other tools' files) and are ignored. Listing order is never trusted:
//! [`sort_catalog`] puts objects in a canonical order.

use std::cmp::Ordering;
use std::fmt;

use ltx_core::{format_filename, parse_filename, TxId};
use serde::{Deserialize, Serialize};

/// The highest level (snapshots).
pub const SNAPSHOT_LEVEL: u8 = 9;

/// One LTX object as the compactor sees it (from a listing, plus the header
/// timestamp when it has been read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LtxObject {
    /// 0..=8 for incremental levels, 9 for snapshots.
    pub level: u8,
    /// First transaction in the file.
    #[serde(with = "txid_serde")]
    pub min_txid: TxId,
    /// Last transaction in the file.
    #[serde(with = "txid_serde")]
    pub max_txid: TxId,
    /// Object size in bytes (0 for an output not written yet).
    pub size: u64,
    /// When the object was written (its last-modified time), ms since the epoch.
    pub created_ms: i64,
    /// The header timestamp (time of the `max_txid` transaction), ms, when known.
    pub timestamp_ms: Option<i64>,
    /// The object key.
    pub key: String,
}

impl LtxObject {
    /// Whether the file applies to an empty database (`min_txid == 1`): a full image.
    pub fn is_base(&self) -> bool {
        self.min_txid.0 == 1
    }
    /// Best known time of the `max_txid` transaction: the header timestamp,
    /// else the object's last-modified time (an upper bound).
    pub fn time_ms(&self) -> i64 {
        self.timestamp_ms.unwrap_or(self.created_ms)
    }
}

/// Serde for TXIDs as the reference's 16-hex-digit text.
pub mod txid_serde {
    use ltx_core::TxId;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialises as 16 hex digits.
    pub fn serialize<S: Serializer>(t: &TxId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_string())
    }
    /// Parses 16 hex digits.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<TxId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which key layout a database uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// `<db>/ltx/<level>/<min>-<max>.ltx` with a decimal level.
    LtxDir,
    /// `<db>/<level as %04x>/<min>-<max>.ltx`.
    HexLevel,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Layout::LtxDir => f.write_str("<db>/ltx/<level>/"),
            Layout::HexLevel => f.write_str("<db>/<%04x level>/"),
        }
    }
}

/// A parsed LTX key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    /// The database prefix (without trailing slash; empty at the bucket root).
    pub db: String,
    /// The layout the key is in.
    pub layout: Layout,
    /// The level (0..=9).
    pub level: u8,
    /// First TXID.
    pub min_txid: TxId,
    /// Last TXID.
    pub max_txid: TxId,
}

/// Parses a key in either Litestream layout; `None` for a foreign key.
///
/// ```
/// use ltx_compactor::catalog::{parse_key, Layout};
/// let k = parse_key("app/db1/ltx/1/0000000000000001-0000000000000005.ltx").unwrap();
/// assert_eq!((k.db.as_str(), k.layout, k.level), ("app/db1", Layout::LtxDir, 1));
/// let k = parse_key("db1/0009/0000000000000001-0000000000000005.ltx").unwrap();
/// assert_eq!((k.db.as_str(), k.layout, k.level), ("db1", Layout::HexLevel, 9));
/// assert!(parse_key("db1/lease.json").is_none());
/// ```
pub fn parse_key(key: &str) -> Option<ParsedKey> {
    let (dir, name) = key.rsplit_once('/')?;
    let (min, max) = parse_filename(name).ok()?;
    if min.0 == 0 || min > max {
        return None;
    }
    let (db, layout, level) = parse_level_dir(dir)?;
    Some(ParsedKey {
        db: db.to_string(),
        layout,
        level,
        min_txid: min,
        max_txid: max,
    })
}

/// Parses the directory part of a key (everything before the file name,
/// without the trailing slash) as a level directory of either Litestream
/// layout: the database prefix (empty at the root), the layout and the
/// level; `None` when it is no level directory. Litestream 0.5.17 names
/// levels 0..=9 only: `ltx/<one decimal digit>/` or `<%04x>/` in lower
/// case (`0000`..`0009`); `ltx/10/`, `000a/` and `000A/` are foreign. The
/// one rule for buckets and for local directories (`ltx verify DIR`).
///
/// ```
/// use ltx_compactor::catalog::{parse_level_dir, Layout};
/// assert_eq!(parse_level_dir("app/ltx/3"), Some(("app", Layout::LtxDir, 3)));
/// assert_eq!(parse_level_dir("0009"), Some(("", Layout::HexLevel, 9)));
/// assert_eq!(parse_level_dir("db/000A"), None);
/// ```
pub fn parse_level_dir(dir: &str) -> Option<(&str, Layout, u8)> {
    let (parent, level_s) = match dir.rsplit_once('/') {
        Some((p, l)) => (Some(p), l),
        None => (None, dir),
    };
    let valid_db = |p: &str| !p.is_empty() && p.split('/').all(|s| !s.is_empty());
    // `<db>/ltx/<level>/`: a single decimal digit under a directory named `ltx`.
    if level_s.len() == 1 && level_s.as_bytes()[0].is_ascii_digit() {
        let level = level_s.as_bytes()[0] - b'0';
        let db = match parent?.rsplit_once('/') {
            Some((db, "ltx")) if valid_db(db) => db,
            None if parent == Some("ltx") => "",
            _ => return None,
        };
        return (level <= SNAPSHOT_LEVEL).then_some((db, Layout::LtxDir, level));
    }
    // `<db>/<level as %04x>/`, lower case.
    if level_s.len() != 4
        || !level_s
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    let level = u8::try_from(u32::from_str_radix(level_s, 16).ok()?).ok()?;
    if level > SNAPSHOT_LEVEL {
        return None;
    }
    let db = match parent {
        Some(p) if valid_db(p) => p,
        Some(_) => return None,
        None => "",
    };
    Some((db, Layout::HexLevel, level))
}

/// The directory (prefix, with trailing slash) holding one level's files.
pub fn level_prefix(db: &str, layout: Layout, level: u8) -> String {
    let sep = if db.is_empty() { "" } else { "/" };
    match layout {
        Layout::LtxDir => format!("{db}{sep}ltx/{level}/"),
        Layout::HexLevel => format!("{db}{sep}{level:04x}/"),
    }
}

/// Formats a key in `layout`.
///
/// ```
/// use ltx_compactor::catalog::{format_key, Layout};
/// use ltx_core::TxId;
/// assert_eq!(format_key("db", Layout::HexLevel, 2, TxId(1), TxId(2)),
///            "db/0002/0000000000000001-0000000000000002.ltx");
/// ```
pub fn format_key(db: &str, layout: Layout, level: u8, min: TxId, max: TxId) -> String {
    format!(
        "{}{}",
        level_prefix(db, layout, level),
        format_filename(min, max)
    )
}

/// Where a database's files live: its prefix and layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbLocation {
    /// Database prefix (no trailing slash).
    pub db: String,
    /// Key layout.
    pub layout: Layout,
}

impl DbLocation {
    /// Key of a file in this database.
    pub fn key(&self, level: u8, min: TxId, max: TxId) -> String {
        format_key(&self.db, self.layout, level, min, max)
    }
    /// The location of the objects of a catalog: the layout most of its
    /// keys use (ties: `ltx/`), the database prefix of the first such key.
    pub fn detect(catalog: &[LtxObject]) -> Option<DbLocation> {
        // A sample is enough: a database uses one layout.
        let parsed: Vec<ParsedKey> = catalog
            .iter()
            .take(64)
            .chain(catalog.iter().rev().take(64))
            .filter_map(|o| parse_key(&o.key))
            .collect();
        let layout = detect_layout(parsed.iter().map(|p| p.layout))?;
        let db = parsed.iter().find(|p| p.layout == layout)?.db.clone();
        Some(DbLocation { db, layout })
    }
}

/// The layout most keys use (ties go to `ltx/`); `None` with no LTX keys.
pub fn detect_layout(layouts: impl IntoIterator<Item = Layout>) -> Option<Layout> {
    let (mut a, mut b) = (0usize, 0usize);
    for l in layouts {
        match l {
            Layout::LtxDir => a += 1,
            Layout::HexLevel => b += 1,
        }
    }
    match (a, b) {
        (0, 0) => None,
        _ if a >= b => Some(Layout::LtxDir),
        _ => Some(Layout::HexLevel),
    }
}

/// One entry of an object listing, as a store returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Full key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Last-modified, ms since the epoch.
    pub last_modified_ms: i64,
}

impl ParsedKey {
    /// The catalog entry of the listed object this key was parsed from
    /// (no header timestamp yet).
    ///
    /// ```
    /// use ltx_compactor::catalog::{parse_key, ListedObject};
    /// let o = ListedObject {
    ///     key: "db/ltx/1/0000000000000002-0000000000000005.ltx".into(),
    ///     size: 4096,
    ///     last_modified_ms: 7,
    /// };
    /// let obj = parse_key(&o.key).unwrap().object(o);
    /// assert_eq!((obj.level, obj.min_txid.0, obj.max_txid.0, obj.size), (1, 2, 5, 4096));
    /// ```
    pub fn object(&self, o: ListedObject) -> LtxObject {
        LtxObject {
            level: self.level,
            min_txid: self.min_txid,
            max_txid: self.max_txid,
            size: o.size,
            created_ms: o.last_modified_ms,
            timestamp_ms: None,
            key: o.key,
        }
    }
}

/// Builds a sorted catalog from a raw listing, keeping only keys of
/// database `db` (any layout) and returning the ignored (foreign) keys too.
pub fn from_listing(
    db: &str,
    listing: impl IntoIterator<Item = ListedObject>,
) -> (Vec<LtxObject>, Vec<String>) {
    let mut out = Vec::new();
    let mut foreign = Vec::new();
    for o in listing {
        match parse_key(&o.key) {
            Some(p) if p.db == db => out.push(p.object(o)),
            _ => foreign.push(o.key),
        }
    }
    sort_catalog(&mut out);
    (out, foreign)
}

/// The canonical order: by level, then min TXID, then max TXID, then key.
pub fn catalog_order(a: &LtxObject, b: &LtxObject) -> Ordering {
    (a.level, a.min_txid, a.max_txid)
        .cmp(&(b.level, b.min_txid, b.max_txid))
        .then_with(|| a.key.cmp(&b.key))
}

/// Sorts a catalog into the canonical order (never trust listing order).
pub fn sort_catalog(c: &mut [LtxObject]) {
    c.sort_by(catalog_order);
}

/// Gaps in one level: consecutive files (by max TXID) where the next does
/// not start at or before the previous end + 1, or does not advance. Returns
/// the offending pairs of keys.
pub fn level_gaps(catalog: &[LtxObject], level: u8) -> Vec<(String, String)> {
    let mut files: Vec<&LtxObject> = catalog.iter().filter(|o| o.level == level).collect();
    files.sort_by_key(|o| (o.max_txid, o.min_txid));
    files
        .windows(2)
        .filter(|w| {
            w[1].min_txid.0 > w[0].max_txid.0.saturating_add(1) || w[1].max_txid <= w[0].max_txid
        })
        .map(|w| (w[0].key.clone(), w[1].key.clone()))
        .collect()
}

/// A catalog object for unit tests: database `d`, `<d>/ltx/<level>/` layout,
/// size 1, written at 0, header timestamp `max`.
#[cfg(test)]
pub(crate) fn test_object(level: u8, min: u64, max: u64) -> LtxObject {
    LtxObject {
        level,
        min_txid: TxId(min),
        max_txid: TxId(max),
        size: 1,
        created_ms: 0,
        timestamp_ms: Some(max as i64),
        key: format_key("d", Layout::LtxDir, level, TxId(min), TxId(max)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: &str = "0000000000000001-0000000000000005.ltx";

    #[test]
    fn both_layouts() {
        let k = parse_key(&format!("a/b/ltx/0/{N}")).unwrap();
        assert_eq!(k.db, "a/b");
        assert_eq!(k.layout, Layout::LtxDir);
        assert_eq!((k.level, k.min_txid, k.max_txid), (0, TxId(1), TxId(5)));
        let k = parse_key(&format!("ltx/9/{N}")).unwrap();
        assert_eq!((k.db.as_str(), k.level), ("", 9));
        let k = parse_key(&format!("x/000a/{N}"));
        assert!(k.is_none(), "level 10 is not a level");
        let k = parse_key(&format!("x/0003/{N}")).unwrap();
        assert_eq!(
            (k.db.as_str(), k.layout, k.level),
            ("x", Layout::HexLevel, 3)
        );
        let k = parse_key(&format!("0003/{N}")).unwrap();
        assert_eq!((k.db.as_str(), k.level), ("", 3));
        // A database literally named "ltx" in the hex layout.
        let k = parse_key(&format!("ltx/0001/{N}")).unwrap();
        assert_eq!((k.db.as_str(), k.layout), ("ltx", Layout::HexLevel));
    }

    #[test]
    fn odd_keys_are_foreign() {
        for k in [
            "".to_string(),
            N.to_string(),
            format!("db/ltx/10/{N}"),
            format!("db/ltx/01/{N}"),
            format!("db/1/{N}"),
            format!("db/ltx/a/{N}"),
            format!("db/00001/{N}"),
            format!("db/001/{N}"),
            format!("db/000A/{N}"),
            format!("db/000a/{N}"),
            format!("db/0001/{N}.tmp"),
            format!("db/0001/{}", N.to_uppercase()),
            "db/0001/0000000000000005-0000000000000001.ltx".to_string(),
            "db/0001/0000000000000000-0000000000000001.ltx".to_string(),
            format!("db//ltx/1/{N}"),
            format!("/0001/{N}").replacen('/', "//", 1),
            format!("db/notltx/1/{N}"),
            "db/lease".to_string(),
            "db/ltx/1/".to_string(),
        ] {
            assert!(parse_key(&k).is_none(), "{k:?} should be foreign");
        }
    }

    #[test]
    fn format_round_trips() {
        for layout in [Layout::LtxDir, Layout::HexLevel] {
            for db in ["", "a", "a/b/c"] {
                for level in 0..=9 {
                    let k = format_key(db, layout, level, TxId(7), TxId(0xabc));
                    let p = parse_key(&k).unwrap();
                    assert_eq!(
                        (p.db.as_str(), p.layout, p.level, p.min_txid, p.max_txid),
                        (db, layout, level, TxId(7), TxId(0xabc)),
                        "{k}"
                    );
                }
            }
        }
    }

    #[test]
    fn listing_sorted_and_filtered() {
        let l = |k: &str| ListedObject {
            key: k.into(),
            size: 1,
            last_modified_ms: 0,
        };
        let (c, foreign) = from_listing(
            "db",
            vec![
                l("db/0001/0000000000000003-0000000000000004.ltx"),
                l("db/0000/0000000000000002-0000000000000002.ltx"),
                l("db/0001/0000000000000001-0000000000000002.ltx"),
                l("other/0001/0000000000000001-0000000000000002.ltx"),
                l("db/lease.json"),
            ],
        );
        assert_eq!(foreign.len(), 2);
        let keys: Vec<_> = c.iter().map(|o| (o.level, o.min_txid.0)).collect();
        assert_eq!(keys, vec![(0, 2), (1, 1), (1, 3)]);
        assert_eq!(
            DbLocation::detect(&c),
            Some(DbLocation {
                db: "db".into(),
                layout: Layout::HexLevel
            })
        );
        assert!(level_gaps(&c, 1).is_empty());
    }
}
