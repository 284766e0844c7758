//! Many databases under one root, pure: which databases a worker takes
//! ([`Shard`]), the catalogue of a root built from one listing
//! ([`Scan`]), and what a round knows about each database between
//! rounds ([`FileEntry`]: a listed file without its key string, with its
//! header timestamp once read) so that it can tell an idle database
//! ([`same_listing`]) and never reads a header twice
//! ([`carry_timestamps`]), and that knowledge as a state file kept between
//! runs (`--state`: [`write_state`], [`read_state`], and whether a state
//! is usable for a root and shard, [`StateHead::check`]). No I/O: the
//! daemon ([`crate::daemon`]) lists, reads and writes around these.
//!
//! # Sharding
//!
//! A database belongs to shard [`shard_of`]`(db, n)`: the 64-bit FNV-1a
//! hash of its prefix (the key prefix inside the store, as
//! [`crate::catalog::parse_key`] returns it, e.g. `fleet/tenant-7/app.db`:
//! UTF-8 bytes, no trailing slash), through MurmurHash3's 64-bit finaliser
//! ([`fmix64`]), mapped to `0..n` by Lamping and Veach's jump consistent
//! hash ([`jump_hash`]). The same on every machine and every release
//! (tested against fixed values); growing `n` to `n + 1` moves only about
//! one database in `n + 1` (to the new shard), so a resize disturbs few
//! leases.
//!
//! ```
//! use ltx_compactor::fleet::{shard_of, Shard};
//! let s: Shard = "2/8".parse().unwrap();
//! assert_eq!((s.index, s.count), (2, 8));
//! let db = "fleet/tenant-7/app.db";
//! assert_eq!(s.contains(db), shard_of(db, 8) == 2);
//! // Exactly one shard of 8 holds each database.
//! let holders = (0..8).filter(|&k| Shard { index: k, count: 8 }.contains(db)).count();
//! assert_eq!(holders, 1);
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use ltx_core::{parse_filename, TxId};

use crate::catalog::{
    catalog_order, format_key, parse_key, parse_level_dir, Layout, LtxObject, SNAPSHOT_LEVEL,
};

/// The environment variable a Kubernetes Indexed Job sets to each pod's
/// index (`0..completions`), read by [`Shard::parse`] when only the shard
/// count is given.
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";

/// The 64-bit FNV-1a hash of `bytes`.
///
/// ```
/// use ltx_compactor::fleet::fnv1a64;
/// assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
/// assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
/// ```
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Lamping and Veach's jump consistent hash ("A Fast, Minimal Memory,
/// Consistent Hash Algorithm", 2014): a bucket in `0..buckets` (0 when
/// `buckets` is 0).
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < i64::from(buckets) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b.max(0) as u32
}

/// The shard (`0..n`) database prefix `db` belongs to (see the module
/// docs); 0 when `n` is 0 or 1.
pub fn shard_of(db: &str, n: u32) -> u32 {
    jump_hash(fmix64(fnv1a64(db.as_bytes())), n)
}

/// MurmurHash3's 64-bit finaliser: spreads FNV-1a's output over every
/// bit (prefixes that differ in their last characters only, as tenant
/// names do, would otherwise share their high bits).
pub fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// One worker's share of a root: shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    /// This worker's shard, `0..count`.
    pub index: u32,
    /// How many shards the root is split into (at least 1).
    pub count: u32,
}

impl Shard {
    /// Whether database prefix `db` belongs to this shard.
    pub fn contains(&self, db: &str) -> bool {
        self.count <= 1 || shard_of(db, self.count) == self.index
    }

    /// Parses `K/N` (shard K of N, `0 <= K < N`), or `N` alone: shard
    /// `job_index` of N, the index a Kubernetes Indexed Job gives each pod
    /// in [`JOB_COMPLETION_INDEX`] (the caller reads the variable).
    ///
    /// ```
    /// use ltx_compactor::fleet::Shard;
    /// assert_eq!(Shard::parse("3/8", None).unwrap(), Shard { index: 3, count: 8 });
    /// assert_eq!(Shard::parse("8", Some("5")).unwrap(), Shard { index: 5, count: 8 });
    /// assert!(Shard::parse("8", None).unwrap_err().contains("JOB_COMPLETION_INDEX"));
    /// assert!(Shard::parse("8/8", None).is_err());
    /// ```
    ///
    /// # Errors
    /// Not a number, `N` of 0, `K` not below `N`, or `N` alone without an
    /// index (or with one that is not below `N`): a message saying which.
    pub fn parse(s: &str, job_index: Option<&str>) -> Result<Shard, String> {
        let num = |what: &str, v: &str| {
            v.trim().parse::<u32>().map_err(|_| {
                format!("--shard {s:?}: {what} {v:?} is not a whole number (expected K/N or N)")
            })
        };
        let (index, count) = match s.split_once('/') {
            Some((k, n)) => (num("shard", k)?, num("count", n)?),
            None => {
                let n = num("count", s)?;
                let Some(k) = job_index else {
                    return Err(format!(
                        "--shard {s:?}: only a count was given and {JOB_COMPLETION_INDEX} is not set \
                         (give K/N, or run as a Kubernetes Indexed Job)"
                    ));
                };
                let k = k.trim().parse::<u32>().map_err(|_| {
                    format!("--shard {s:?}: {JOB_COMPLETION_INDEX}={k:?} is not a whole number")
                })?;
                (k, n)
            }
        };
        if count == 0 {
            return Err(format!("--shard {s:?}: the count must be at least 1"));
        }
        if index >= count {
            return Err(format!(
                "--shard {s:?}: shard {index} is not below the count {count} (shards are 0..{count})"
            ));
        }
        Ok(Shard { index, count })
    }
}

impl FromStr for Shard {
    type Err = String;
    /// `K/N` only (see [`Shard::parse`] for `N` with an index from the
    /// environment).
    fn from_str(s: &str) -> Result<Shard, String> {
        if !s.contains('/') {
            return Err(format!("{s:?}: expected K/N"));
        }
        Shard::parse(s, None)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// One LTX file of a database as a round remembers it: what its key says
/// (the key itself is rebuilt from the database prefix: [`FileEntry::key`]),
/// what the listing said, and the header timestamp once read. 56 bytes,
/// whatever the key's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEntry {
    /// 0..=9.
    pub level: u8,
    /// The key layout.
    pub layout: Layout,
    /// First TXID.
    pub min_txid: TxId,
    /// Last TXID.
    pub max_txid: TxId,
    /// Object size.
    pub size: u64,
    /// Last-modified time from the listing, ms.
    pub created_ms: i64,
    /// Header timestamp, ms, once known.
    pub timestamp_ms: Option<i64>,
}

impl FileEntry {
    /// What identifies the file (its key, given the database): layout,
    /// level, TXIDs. The order [`Scan`] sorts a database's files in.
    pub fn ident(&self) -> (Layout, u8, TxId, TxId) {
        (self.layout, self.level, self.min_txid, self.max_txid)
    }

    /// The object key in database `db`.
    pub fn key(&self, db: &str) -> String {
        format_key(db, self.layout, self.level, self.min_txid, self.max_txid)
    }

    /// As a catalog object of database `db`.
    pub fn object(&self, db: &str) -> LtxObject {
        LtxObject {
            level: self.level,
            min_txid: self.min_txid,
            max_txid: self.max_txid,
            size: self.size,
            created_ms: self.created_ms,
            timestamp_ms: self.timestamp_ms,
            key: self.key(db),
        }
    }

    /// The entry of a catalog object (`None` for a key in neither layout).
    pub fn of(o: &LtxObject) -> Option<FileEntry> {
        let p = parse_key(&o.key)?;
        Some(FileEntry {
            level: p.level,
            layout: p.layout,
            min_txid: p.min_txid,
            max_txid: p.max_txid,
            size: o.size,
            created_ms: o.created_ms,
            timestamp_ms: o.timestamp_ms,
        })
    }
}

/// Sorts files by [`FileEntry::ident`] and drops repeated entries (a key
/// listed twice, e.g. by a listing resumed after an error).
pub fn normalise(files: &mut Vec<FileEntry>) {
    files.sort_by_key(FileEntry::ident);
    files.dedup_by_key(|f| f.ident());
}

/// Entries of a catalog (keys in neither layout left out), normalised.
pub fn entries_of(catalog: &[LtxObject]) -> Vec<FileEntry> {
    let mut v: Vec<FileEntry> = catalog.iter().filter_map(FileEntry::of).collect();
    normalise(&mut v);
    v
}

/// The catalog of database `db` (canonical order, see
/// [`crate::catalog::sort_catalog`]).
pub fn catalog_of(db: &str, files: &[FileEntry]) -> Vec<LtxObject> {
    let mut c: Vec<LtxObject> = files.iter().map(|f| f.object(db)).collect();
    c.sort_by(catalog_order);
    c
}

/// Copies header timestamps known in `prev` to the same files in `cur`
/// (same key and size: keys are never overwritten, so a file's header
/// never changes); both normalised. Returns how many files of `cur` still
/// have none.
pub fn carry_timestamps(prev: &[FileEntry], cur: &mut [FileEntry]) -> usize {
    let mut missing = 0;
    for f in cur.iter_mut() {
        if f.timestamp_ms.is_none() {
            if let Ok(i) = prev.binary_search_by_key(&f.ident(), FileEntry::ident) {
                if prev[i].size == f.size {
                    f.timestamp_ms = prev[i].timestamp_ms;
                }
            }
        }
        missing += usize::from(f.timestamp_ms.is_none());
    }
    missing
}

/// Whether a database's listing is what it was at the end of the last
/// round (the same keys, the same sizes; both normalised). Times are not
/// compared: after a pass the outputs' modification times are only known
/// from the next listing.
pub fn same_listing(prev: &[FileEntry], cur: &[FileEntry]) -> bool {
    prev.len() == cur.len()
        && prev
            .iter()
            .zip(cur)
            .all(|(a, b)| a.ident() == b.ident() && a.size == b.size)
}

/// The catalogue of a root built from one listing, streamed: every key is
/// looked at once ([`Scan::add`]); the LTX files of the databases of this
/// worker's shard are kept as [`FileEntry`]s (no key strings), everything
/// else only counted.
#[derive(Debug, Default)]
pub struct Scan {
    shard: Option<Shard>,
    /// Database prefix → its files (normalised by [`Scan::finish`]).
    pub dbs: BTreeMap<String, Vec<FileEntry>>,
    /// Keys listed.
    pub keys: u64,
    /// Keys that are no LTX file of any database (leases, records,
    /// temporary uploads, other tools' files).
    pub foreign_keys: u64,
    /// LTX files of databases of other shards.
    pub other_shard_keys: u64,
    /// The database of the previous key and whether it is ours (keys of a
    /// database mostly come together: one hash per run of keys).
    recent: Option<(String, bool)>,
}

impl Scan {
    /// An empty scan taking the databases of `shard` (all without one).
    pub fn new(shard: Option<Shard>) -> Scan {
        Scan {
            shard,
            ..Default::default()
        }
    }

    /// Takes one listed key.
    ///
    /// ```
    /// use ltx_compactor::fleet::{Scan, Shard};
    /// let mut s = Scan::new(None);
    /// s.add("t1/app.db/ltx/0/0000000000000002-0000000000000002.ltx", 10, 5);
    /// s.add("t1/app.db/compactor.lease", 10, 5);
    /// s.add("t2/0009/0000000000000001-0000000000000009.ltx", 10, 5);
    /// s.finish();
    /// assert_eq!((s.keys, s.foreign_keys, s.dbs.len()), (3, 1, 2));
    /// assert_eq!(s.dbs["t1/app.db"][0].key("t1/app.db"),
    ///            "t1/app.db/ltx/0/0000000000000002-0000000000000002.ltx");
    /// ```
    pub fn add(&mut self, key: &str, size: u64, last_modified_ms: i64) {
        self.keys += 1;
        let Some((db, f)) = parse_entry(key, size, last_modified_ms) else {
            self.foreign_keys += 1;
            return;
        };
        let ours = match &self.recent {
            Some((d, ours)) if d == db => *ours,
            _ => {
                let ours = self.shard.is_none_or(|s| s.contains(db));
                self.recent = Some((db.to_string(), ours));
                ours
            }
        };
        if !ours {
            self.other_shard_keys += 1;
            return;
        }
        match self.dbs.get_mut(db) {
            Some(v) => v.push(f),
            None => {
                self.dbs.insert(db.to_string(), vec![f]);
            }
        }
    }

    /// Normalises every database's files (listing order is never trusted).
    pub fn finish(&mut self) {
        for v in self.dbs.values_mut() {
            normalise(v);
            v.shrink_to_fit();
        }
    }

    /// LTX files kept (this shard's).
    pub fn ltx_files(&self) -> u64 {
        self.dbs.values().map(|v| v.len() as u64).sum()
    }
}

/// Parses a key into its database prefix (borrowed from the key: no
/// allocation) and entry; `None` for a foreign key. Exactly the keys
/// [`parse_key`] accepts.
fn parse_entry(key: &str, size: u64, last_modified_ms: i64) -> Option<(&str, FileEntry)> {
    let (dir, name) = key.rsplit_once('/')?;
    let (min, max) = parse_filename(name).ok()?;
    if min.0 == 0 || min > max {
        return None;
    }
    let (db, layout, level) = parse_level_dir(dir)?;
    debug_assert!(level <= SNAPSHOT_LEVEL);
    Some((
        db,
        FileEntry {
            level,
            layout,
            min_txid: min,
            max_txid: max,
            size,
            created_ms: last_modified_ms,
            timestamp_ms: None,
        },
    ))
}

/// The `format` of a state file ([`write_state`]).
pub const STATE_FORMAT: &str = "ltx-compactor-state";

/// The format version of the state files this release writes and reads
/// (any other is ignored: a first round).
pub const STATE_VERSION: u64 = 1;

/// The largest state file read (bytes): a larger one is refused before
/// anything is allocated for it. About 50 bytes per LTX file: 256 MiB is
/// some 5 million files, 500 times the 10,000-database fleet's.
pub const STATE_MAX_BYTES: u64 = 256 << 20;

/// What a state file is for: the root (see [`write_state`]) and the shard
/// its databases are of. A state is used only by a run over the same root
/// and shard ([`StateHead::check`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct StateHead {
    /// [`STATE_FORMAT`].
    pub format: String,
    /// [`STATE_VERSION`] when written by this release.
    pub version: u64,
    /// The root the state was written for.
    pub root: String,
    /// Its shard (`K/N`), `None` for every database of the root.
    pub shard: Option<String>,
}

impl StateHead {
    /// Whether a state with this head may be used by a run over `root`
    /// (the same string [`write_state`] was given) with `shard`: `Err`
    /// says why not (another format version, another root, another shard).
    ///
    /// ```
    /// use ltx_compactor::fleet::{Shard, StateHead, STATE_FORMAT, STATE_VERSION};
    /// let head = StateHead {
    ///     format: STATE_FORMAT.into(),
    ///     version: STATE_VERSION,
    ///     root: "s3://b/replicas".into(),
    ///     shard: Some("1/4".into()),
    /// };
    /// assert!(head.check("s3://b/replicas", Some(Shard { index: 1, count: 4 })).is_ok());
    /// assert!(head.check("s3://b/replicas", Some(Shard { index: 2, count: 4 })).unwrap_err().contains("shard 1/4"));
    /// assert!(head.check("s3://b/other", Some(Shard { index: 1, count: 4 })).unwrap_err().contains("root"));
    /// ```
    pub fn check(&self, root: &str, shard: Option<Shard>) -> Result<(), String> {
        if self.format != STATE_FORMAT {
            return Err(format!(
                "not an ltx-compactor state (format {:?}, expected {STATE_FORMAT:?})",
                self.format
            ));
        }
        if self.version != STATE_VERSION {
            return Err(format!(
                "format version {}, this release reads version {STATE_VERSION}",
                self.version
            ));
        }
        if self.root != root {
            return Err(format!(
                "written for root {:?}, this run's root is {root:?}",
                self.root
            ));
        }
        let ours = shard.map(|s| s.to_string());
        if self.shard != ours {
            let name = |s: &Option<String>| match s {
                Some(s) => format!("shard {s}"),
                None => "every database (no --shard)".to_string(),
            };
            return Err(format!(
                "written for {}, this run takes {}",
                name(&self.shard),
                name(&ours)
            ));
        }
        Ok(())
    }
}

/// A state read back ([`read_state`]): per database, its files as the
/// last round of the run that wrote it knew them, header timestamps
/// included (normalised).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadedState {
    /// Database prefix → its files.
    pub dbs: Vec<(String, Vec<FileEntry>)>,
    /// Files in all.
    pub files: u64,
}

/// How [`write_state`] names a layout.
fn layout_name(l: Layout) -> &'static str {
    match l {
        Layout::LtxDir => "ltx",
        Layout::HexLevel => "hex",
    }
}

/// Writes a state file (compact JSON, streamed) to `w`: what a run over
/// `root` (a string naming it, e.g. its URL) with `shard` knows of its
/// databases `dbs` at the end of a round. Only files whose header
/// timestamp is known are written (a database with some left out is
/// "changed" when read back: its listing differs, and the missing headers
/// are read). Returns (databases, files) written.
///
/// The format (version [`STATE_VERSION`]):
///
/// ```json
/// {"format":"ltx-compactor-state","version":1,"root":"s3://b/replicas","shard":"0/4",
///  "dbs":{"replicas/t1/app.db":[[0,"ltx",11,11,4152,1796590740000,1796590739000], …], …},
///  "databases":2,"files":3}
/// ```
///
/// Each file: level, layout (`ltx`: `<db>/ltx/<level>/`, `hex`:
/// `<db>/<%04x>/`), first and last TXID, size, the listing's
/// last-modified time (ms) and the header timestamp (ms).
///
/// # Errors
/// Those of `w`.
pub fn write_state<'a, W: std::io::Write + ?Sized>(
    w: &mut W,
    root: &str,
    shard: Option<Shard>,
    dbs: impl IntoIterator<Item = (&'a str, &'a [FileEntry])>,
) -> std::io::Result<(u64, u64)> {
    let json = |v: &str| serde_json::to_string(v).expect("a string serialises");
    let shard = match shard {
        Some(s) => json(&s.to_string()),
        None => "null".into(),
    };
    write!(
        w,
        "{{\"format\":{},\"version\":{STATE_VERSION},\"root\":{},\"shard\":{shard},\"dbs\":{{",
        json(STATE_FORMAT),
        json(root)
    )?;
    let (mut n_dbs, mut n_files) = (0u64, 0u64);
    for (db, files) in dbs {
        if n_dbs > 0 {
            w.write_all(b",")?;
        }
        n_dbs += 1;
        write!(w, "{}:[", json(db))?;
        let mut first = true;
        for f in files {
            let Some(ts) = f.timestamp_ms else { continue };
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            n_files += 1;
            write!(
                w,
                "[{},\"{}\",{},{},{},{},{ts}]",
                f.level,
                layout_name(f.layout),
                f.min_txid.0,
                f.max_txid.0,
                f.size,
                f.created_ms
            )?;
        }
        w.write_all(b"]")?;
    }
    writeln!(w, "}},\"databases\":{n_dbs},\"files\":{n_files}}}")?;
    Ok((n_dbs, n_files))
}

/// A layout as [`write_state`] names it.
#[derive(serde::Deserialize)]
enum LayoutName {
    #[serde(rename = "ltx")]
    Ltx,
    #[serde(rename = "hex")]
    Hex,
}

/// One file as [`write_state`] writes it.
type StateRow = (u8, LayoutName, u64, u64, u64, i64, i64);

#[derive(serde::Deserialize)]
struct StateBody {
    dbs: BTreeMap<String, Vec<StateRow>>,
}

/// Why a JSON document could not be read as a state.
fn json_problem(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => format!("truncated ({e})"),
        serde_json::error::Category::Syntax => format!("not valid JSON ({e})"),
        _ => format!("not an ltx-compactor state ({e})"),
    }
}

/// Reads a state file written by [`write_state`] for a run over `root`
/// with `shard` (see [`StateHead::check`]). Every file is checked: level
/// 0..=9, TXIDs `1 <= min <= max`, and its key, rebuilt from the database
/// prefix, one that a listing would give back as the same file.
///
/// # Errors
/// Why the state cannot be used: truncated, not JSON, not a state,
/// another format version, root or shard, an impossible file. The caller
/// bounds `bytes` ([`STATE_MAX_BYTES`]).
pub fn read_state(bytes: &[u8], root: &str, shard: Option<Shard>) -> Result<LoadedState, String> {
    let head: StateHead = serde_json::from_slice(bytes).map_err(|e| json_problem(&e))?;
    head.check(root, shard)?;
    let body: StateBody = serde_json::from_slice(bytes).map_err(|e| json_problem(&e))?;
    let mut out = LoadedState::default();
    for (db, rows) in body.dbs {
        let mut files = Vec::with_capacity(rows.len());
        for (i, (level, layout, min, max, size, created_ms, ts)) in rows.into_iter().enumerate() {
            let f = FileEntry {
                level,
                layout: match layout {
                    LayoutName::Ltx => Layout::LtxDir,
                    LayoutName::Hex => Layout::HexLevel,
                },
                min_txid: TxId(min),
                max_txid: TxId(max),
                size,
                created_ms,
                timestamp_ms: Some(ts),
            };
            let bad = || format!("database {db:?}, file {i}: level {level}, TXIDs {min}-{max}");
            if level > SNAPSHOT_LEVEL || min == 0 || min > max {
                return Err(format!("{} is impossible", bad()));
            }
            let key = f.key(&db);
            match parse_entry(&key, size, created_ms) {
                Some((d, g)) if d == db && g.ident() == f.ident() => {}
                _ => return Err(format!("{}: its key {key:?} is not an LTX file's", bad())),
            }
            files.push(f);
        }
        normalise(&mut files);
        out.files += files.len() as u64;
        out.dbs.push((db, files));
    }
    Ok(out)
}

/// What a round does with one database, decided from the listing and the
/// policy's plan (see [`decide`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Listing unchanged since the last round and nothing due: no request.
    Idle,
    /// Listing changed (or first seen) but nothing due: its new files'
    /// headers were read, nothing else.
    NothingDue,
    /// Something to compact or delete: lease, list under it, pass.
    Due,
}

/// The decision for a database whose listing is `changed` (see
/// [`same_listing`]; a database seen for the first time is changed) and
/// whose plan has `due` compactions or deletions.
pub fn decide(changed: bool, due: bool) -> Decision {
    match (changed, due) {
        (_, true) => Decision::Due,
        (true, false) => Decision::NothingDue,
        (false, false) => Decision::Idle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(level: u8, min: u64, max: u64) -> FileEntry {
        FileEntry {
            level,
            layout: Layout::LtxDir,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size: 100,
            created_ms: 1,
            timestamp_ms: None,
        }
    }

    #[test]
    fn hashes_are_fixed() {
        // FNV-1a test vectors (Fowler, Noll, Vo).
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        // Jump hash: fixed outputs, so that shard assignment never changes
        // between releases or machines.
        let got: Vec<u32> = ["a", "tenant-1/app.db", "fleet/t0042/db"]
            .iter()
            .map(|d| shard_of(d, 16))
            .collect();
        // (Also computed by an independent Python implementation.)
        assert_eq!(got, vec![5, 7, 8]);
        assert_eq!(jump_hash(0, 1), 0);
        assert_eq!(jump_hash(12345, 0), 0);
        for k in [0u64, 1, 0xdead_beef, u64::MAX] {
            for n in 1..50 {
                assert!(jump_hash(k, n) < n);
            }
        }
    }

    #[test]
    fn shards_partition_and_balance() {
        let dbs: Vec<String> = (0..10_000)
            .map(|i| format!("fleet/tenant-{i:05}/app.db"))
            .collect();
        for n in [1u32, 2, 3, 8, 13] {
            let mut sizes = vec![0usize; n as usize];
            for db in &dbs {
                let holders: Vec<u32> = (0..n)
                    .filter(|&k| Shard { index: k, count: n }.contains(db))
                    .collect();
                assert_eq!(holders.len(), 1, "{db} in {holders:?} of {n}");
                sizes[holders[0] as usize] += 1;
            }
            // Within 4 standard deviations of a uniform draw (√mean).
            let mean = dbs.len() / n as usize;
            let sd = (mean as f64).sqrt();
            for s in &sizes {
                assert!(
                    (s.abs_diff(mean) as f64) < 4.0 * sd,
                    "{n} shards: {sizes:?}"
                );
            }
        }
        // Growing 8 → 9 shards moves about a ninth, only to the new shard.
        let moved: Vec<&String> = dbs
            .iter()
            .filter(|d| shard_of(d, 8) != shard_of(d, 9))
            .collect();
        assert!(moved.iter().all(|d| shard_of(d, 9) == 8));
        let ninth = dbs.len() / 9;
        assert!(
            (moved.len().abs_diff(ninth) as f64) < 4.0 * (ninth as f64).sqrt(),
            "{}",
            moved.len()
        );
    }

    #[test]
    fn shard_parsing() {
        assert_eq!(Shard::parse("0/1", None), Ok(Shard { index: 0, count: 1 }));
        assert_eq!(
            Shard::parse(" 2 / 4 ", None),
            Ok(Shard { index: 2, count: 4 })
        );
        assert_eq!(
            Shard::parse("4", Some("3")),
            Ok(Shard { index: 3, count: 4 })
        );
        // K/N wins over the environment.
        assert_eq!(
            Shard::parse("1/4", Some("3")),
            Ok(Shard { index: 1, count: 4 })
        );
        for (s, env, want) in [
            ("4/4", None, "not below"),
            ("0/0", None, "at least 1"),
            ("x/4", None, "not a whole number"),
            ("1/y", None, "not a whole number"),
            ("-1/4", None, "not a whole number"),
            ("4", None, "JOB_COMPLETION_INDEX is not set"),
            ("4", Some("4"), "not below"),
            ("4", Some("z"), "JOB_COMPLETION_INDEX=\"z\""),
            ("", None, "not a whole number"),
        ] {
            let e = Shard::parse(s, env).unwrap_err();
            assert!(e.contains(want), "{s:?} {env:?}: {e}");
        }
        assert!("4".parse::<Shard>().is_err());
        assert_eq!("1/4".parse::<Shard>().unwrap().to_string(), "1/4");
    }

    #[test]
    fn scan_matches_parse_key() {
        let keys = [
            "a/ltx/0/0000000000000001-0000000000000001.ltx",
            "a/ltx/9/0000000000000001-0000000000000005.ltx",
            "a/0001/0000000000000002-0000000000000003.ltx",
            "a/b/0000/0000000000000002-0000000000000003.ltx",
            "0009/0000000000000001-0000000000000003.ltx",
            "ltx/3/0000000000000001-0000000000000003.ltx",
            "a/ltx/10/0000000000000001-0000000000000001.ltx",
            "a/000A/0000000000000001-0000000000000001.ltx",
            "a/compactor.lease",
            "a/ltx-compactor.json",
            "a/.compactor.lock",
            "a/ltx/0/0000000000000003-0000000000000001.ltx",
            "a/0001/0000000000000002-0000000000000003.ltx.tmp",
        ];
        let mut s = Scan::new(None);
        for k in keys {
            s.add(k, 7, 9);
            // The same classification as the catalog's, and the key rebuilt
            // exactly.
            match (parse_key(k), parse_entry(k, 7, 9)) {
                (Some(p), Some((db, f))) => {
                    assert_eq!(p.db, db);
                    assert_eq!(f.key(db), k);
                    assert_eq!(f.object(db).key, k);
                }
                (None, None) => {}
                other => panic!("{k}: {other:?}"),
            }
        }
        s.add(keys[0], 7, 9);
        s.finish();
        assert_eq!(s.keys, keys.len() as u64 + 1);
        assert_eq!(s.foreign_keys, 7);
        let dbs: Vec<&str> = s.dbs.keys().map(String::as_str).collect();
        assert_eq!(dbs, vec!["", "a", "a/b"]);
        // The key listed twice is kept once.
        assert_eq!(s.dbs["a"].len(), 3);
        assert_eq!(s.ltx_files(), 6);
        let cat = catalog_of("a", &s.dbs["a"]);
        assert_eq!(entries_of(&cat), s.dbs["a"]);
    }

    #[test]
    fn scan_keeps_only_its_shard() {
        let n = 4;
        let mut all = 0;
        let mut union = Vec::new();
        for k in 0..n {
            let mut s = Scan::new(Some(Shard { index: k, count: n }));
            for i in 0..200 {
                s.add(
                    &format!("t{i}/0000/0000000000000001-0000000000000001.ltx"),
                    1,
                    1,
                );
                s.add(
                    &format!("t{i}/0009/0000000000000001-0000000000000001.ltx"),
                    1,
                    1,
                );
            }
            s.finish();
            assert_eq!(s.ltx_files() + s.other_shard_keys, 400);
            all += s.dbs.len();
            union.extend(s.dbs.keys().cloned());
        }
        union.sort();
        union.dedup();
        assert_eq!((all, union.len()), (200, 200));
    }

    #[test]
    fn timestamps_carry_over_and_listings_compare() {
        let mut prev = vec![entry(0, 5, 5), entry(1, 1, 4), entry(9, 1, 3)];
        prev[0].timestamp_ms = Some(50);
        prev[1].timestamp_ms = Some(40);
        normalise(&mut prev);
        let mut cur = vec![
            entry(9, 1, 3),
            entry(0, 5, 5),
            entry(1, 1, 4),
            entry(0, 6, 6),
        ];
        normalise(&mut cur);
        assert!(!same_listing(&prev, &cur));
        // The snapshot's header was never read; the new L0 file is new.
        assert_eq!(carry_timestamps(&prev, &mut cur), 2);
        let ts: Vec<Option<i64>> = cur.iter().map(|f| f.timestamp_ms).collect();
        assert_eq!(ts, vec![Some(50), None, Some(40), None]);
        // A size change is a different file: nothing carried.
        let mut changed = prev.clone();
        changed[0].size += 1;
        changed[0].timestamp_ms = None;
        assert_eq!(carry_timestamps(&prev, &mut changed), 2);
        assert!(!same_listing(&prev, &changed));
        // Same keys and sizes, other times: the same listing.
        let mut again = prev.clone();
        again.iter_mut().for_each(|f| f.created_ms += 1000);
        assert!(same_listing(&prev, &again));
        assert!(!same_listing(&prev, &prev[..2]));
    }

    fn state_bytes(root: &str, shard: Option<Shard>, dbs: &[(&str, Vec<FileEntry>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let it = dbs.iter().map(|(d, f)| (*d, f.as_slice()));
        write_state(&mut out, root, shard, it).unwrap();
        out
    }

    #[test]
    fn state_round_trips() {
        let mut a = vec![entry(9, 1, 10), entry(0, 11, 11), entry(1, 11, 12)];
        a[0].timestamp_ms = Some(-5);
        a[1].timestamp_ms = Some(1_800_000_000_000);
        a[1].size = u64::MAX;
        a[1].created_ms = i64::MIN;
        // Never read: left out.
        a[2].timestamp_ms = None;
        let mut b = vec![entry(0, 3, u64::MAX)];
        b[0].layout = Layout::HexLevel;
        b[0].timestamp_ms = Some(7);
        let dbs = [
            ("t1/app.db", a.clone()),
            ("\"odd\" é/db", b.clone()),
            ("", vec![]),
        ];
        let shard = Some(Shard { index: 1, count: 3 });
        let bytes = state_bytes("s3://b/r", shard, &dbs);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (v["databases"].as_u64(), v["files"].as_u64()),
            (Some(3), Some(3))
        );
        let got = read_state(&bytes, "s3://b/r", shard).unwrap();
        assert_eq!(got.files, 3);
        let mut want_a = a[..2].to_vec();
        normalise(&mut want_a);
        let want = vec![
            ("".to_string(), vec![]),
            ("\"odd\" é/db".to_string(), b),
            ("t1/app.db".to_string(), want_a),
        ];
        assert_eq!(got.dbs, want);
        // Nothing at all.
        let empty = state_bytes("file:///r", None, &[]);
        assert_eq!(
            read_state(&empty, "file:///r", None).unwrap(),
            LoadedState::default()
        );
    }

    #[test]
    fn unusable_states_say_why() {
        let mut f = entry(0, 2, 2);
        f.timestamp_ms = Some(1);
        let shard = Some(Shard { index: 0, count: 2 });
        let good = state_bytes("s3://b/r", shard, &[("db", vec![f])]);
        let text = String::from_utf8(good.clone()).unwrap();
        let check = |bytes: &[u8], root: &str, shard: Option<Shard>, want: &str| {
            let e = read_state(bytes, root, shard).unwrap_err();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        };
        check(&good, "s3://b/other", shard, "root \"s3://b/r\"");
        check(
            &good,
            "s3://b/r",
            Some(Shard { index: 1, count: 2 }),
            "shard 0/2",
        );
        check(
            &good,
            "s3://b/r",
            Some(Shard { index: 0, count: 3 }),
            "shard 0/3",
        );
        check(&good, "s3://b/r", None, "no --shard");
        let unsharded = state_bytes("s3://b/r", None, &[]);
        check(&unsharded, "s3://b/r", shard, "written for every database");
        for cut in [1, good.len() / 2, good.len() - 3] {
            check(&good[..cut], "s3://b/r", shard, "truncated");
        }
        check(b"\x00\x01garbage", "s3://b/r", shard, "not valid JSON");
        check(b"{}", "s3://b/r", shard, "not an ltx-compactor state");
        check(b"[1,2]", "s3://b/r", shard, "not an ltx-compactor state");
        let edit = |from: &str, to: &str| text.replacen(from, to, 1).into_bytes();
        check(
            &edit("\"version\":1", "\"version\":2"),
            "s3://b/r",
            shard,
            "format version 2",
        );
        // A future version is refused for its version, whatever its body.
        let future = br#"{"format":"ltx-compactor-state","version":9,"root":"s3://b/r","shard":"0/2","dbs":[1]}"#;
        check(future, "s3://b/r", shard, "format version 9");
        check(
            &edit("ltx-compactor-state", "other"),
            "s3://b/r",
            shard,
            "not an ltx-compactor state",
        );
        // Impossible files.
        let row = "[0,\"ltx\",2,2,100,1,1]";
        assert!(text.contains(row), "{text}");
        for (bad, want) in [
            ("[12,\"ltx\",2,2,100,1,1]", "level 12"),
            ("[0,\"ltx\",0,2,100,1,1]", "impossible"),
            ("[0,\"ltx\",3,2,100,1,1]", "impossible"),
            ("[0,\"zip\",2,2,100,1,1]", "not an ltx-compactor state"),
            ("[0,\"ltx\",2,2,100,1,null]", "not an ltx-compactor state"),
            ("[0,\"ltx\",2,2,-1,1,1]", "not an ltx-compactor state"),
            ("[0,\"ltx\",2,2]", "not an ltx-compactor state"),
        ] {
            check(&edit(row, bad), "s3://b/r", shard, want);
        }
        // A database prefix no listing gives.
        check(
            &edit("\"db\":", "\"a//b\":"),
            "s3://b/r",
            shard,
            "not an LTX file's",
        );
    }

    #[test]
    fn entries_are_small() {
        assert_eq!(std::mem::size_of::<FileEntry>(), 56);
    }

    #[test]
    fn decisions() {
        assert_eq!(decide(false, false), Decision::Idle);
        assert_eq!(decide(true, false), Decision::NothingDue);
        assert_eq!(decide(false, true), Decision::Due);
        assert_eq!(decide(true, true), Decision::Due);
    }
}
