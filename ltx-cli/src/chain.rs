//! The chain checker of `ltx verify`: one set of rules for the files of a
//! directory (`ltx verify DIR`, see `cmd::verify`) and for the objects of a
//! bucket (`ltx verify URL`, see [`crate::remote`]). Pure: it sees headers,
//! verified trailers and page numbers, and names files as the caller does
//! (a path, a file name or a key).
//!
//! Files are given as [`Link`]s. Each belongs to a database (the rules
//! across levels look only inside it) and, when chain-checked, to a
//! sequence: a directory of files, or one level of a replica. A sequence's
//! files are compared in TXID order with the file before them (gap,
//! overlap, page size, checksum link, missing pages), except where the
//! replica's layout says a file follows another level (see
//! [`Checker::check_sequence`]).

use std::collections::{HashMap, HashSet};

use ltx_core::{Header, Pgno, Trailer, TxId};

use crate::output::{self, hex16};

/// One file as the chain checker sees it.
#[derive(Debug, Clone)]
pub struct Link<'a> {
    /// Its name in reports (`prev` / `next`): a path or a key.
    pub name: String,
    /// Its name inside messages: a file name or a key.
    pub short: String,
    /// The database it belongs to (rules across levels stay inside one).
    pub db: usize,
    /// The sequence it is chain-checked in (a directory, or a level of a
    /// replica), or `None`: only its name is checked.
    pub seq: Option<usize>,
    /// Its level in a Litestream replica layout, `None` elsewhere.
    pub level: Option<u32>,
    /// The TXIDs its name gives (`%016x-%016x.ltx`), if it has such a name.
    pub named: Option<(TxId, TxId)>,
    /// Its header; a file without one is left out of the chains.
    pub header: Option<Header>,
    /// Its trailer, when the whole file verified.
    pub trailer: Option<Trailer>,
    /// Its page numbers, ascending, when its page index was read.
    pub pgnos: Option<&'a [Pgno]>,
}

/// A problem with one file (`next`), or between it and the file before it
/// (`prev`). Both are indices into the checker's links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `gap`, `overlap`, `page-size`, `checksum-link`, `missing-pages` or
    /// `name-mismatch`.
    pub kind: &'static str,
    /// The file it is compared with.
    pub prev: Option<usize>,
    /// The file with the problem.
    pub next: usize,
    /// What is wrong, naming the files.
    pub message: String,
}

/// The chain checker over a set of [`Link`]s.
///
/// ```
/// use ltx_cli::chain::{Checker, Link};
/// use ltx_core::{Header, PageSize, TxId};
/// let ps = PageSize::new(4096).unwrap();
/// let link = |a, b| {
///     let mut h = Header::new(ps, TxId(a), TxId(b));
///     h.commit = 1;
///     Link { name: format!("{a}-{b}"), short: format!("{a}-{b}"), db: 0, seq: Some(0),
///            level: None, named: None, header: Some(h), trailer: None, pgnos: None }
/// };
/// let files = [link(1, 3), link(4, 5), link(7, 9)];
/// let found = Checker::new(&files).check();
/// assert_eq!(found.len(), 1);
/// assert_eq!((found[0].kind, found[0].prev, found[0].next), ("gap", Some(1), 2));
/// ```
pub struct Checker<'a> {
    files: &'a [Link<'a>],
    /// Replica files by database and the TXID they end at.
    ends: HashMap<(usize, u64), Vec<usize>>,
    /// Replica files by database.
    by_db: HashMap<usize, Vec<usize>>,
    /// Databases whose replica files form the ladder Litestream writes.
    ladders: HashSet<usize>,
}

impl<'a> Checker<'a> {
    /// Indexes the replica files (those with a level and a header) by
    /// database.
    pub fn new(files: &'a [Link<'a>]) -> Checker<'a> {
        let mut ends: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
        let mut by_db: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, f) in files.iter().enumerate() {
            if let (Some(h), Some(_)) = (f.header, f.level) {
                if f.seq.is_some() {
                    ends.entry((f.db, h.max_txid.0)).or_default().push(i);
                    by_db.entry(f.db).or_default().push(i);
                }
            }
        }
        let ladders = by_db
            .iter()
            .filter(|(_, idx)| is_ladder(files, idx))
            .map(|(&db, _)| db)
            .collect();
        Checker {
            files,
            ends,
            by_db,
            ladders,
        }
    }

    /// Every finding: names against headers, then each sequence in turn.
    pub fn check(&self) -> Vec<Finding> {
        let mut out = self.name_mismatches();
        for seq in self.sequences() {
            out.extend(self.check_sequence(&seq));
        }
        out
    }

    /// Files whose name gives other TXIDs than their header (any file).
    pub fn name_mismatches(&self) -> Vec<Finding> {
        let mut out = Vec::new();
        for (i, f) in self.files.iter().enumerate() {
            let (Some(h), Some(named)) = (&f.header, f.named) else {
                continue;
            };
            if let Some(message) = name_mismatch(&f.name, named, h) {
                out.push(Finding {
                    kind: "name-mismatch",
                    prev: None,
                    next: i,
                    message,
                });
            }
        }
        out
    }

    /// The chain-checked files with a header, by sequence (ascending
    /// sequence numbers), each in TXID order (then by name).
    pub fn sequences(&self) -> Vec<Vec<usize>> {
        let mut seqs: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, f) in self.files.iter().enumerate() {
            if let (Some(s), Some(_)) = (f.seq, f.header) {
                seqs.entry(s).or_default().push(i);
            }
        }
        seqs.into_values()
            .map(|mut v| {
                v.sort_by(|&a, &b| {
                    let (fa, fb) = (&self.files[a], &self.files[b]);
                    let (ha, hb) = (fa.header.expect("has one"), fb.header.expect("has one"));
                    (ha.min_txid, ha.max_txid, &fa.name).cmp(&(hb.min_txid, hb.max_txid, &fb.name))
                });
                v
            })
            .collect()
    }

    /// Checks one sequence (files in TXID order, as [`Checker::sequences`]
    /// gives them): its first file, then each file against the one before
    /// it. A snapshot (min TXID 1) starts a new chain. In a replica
    /// layout, a file that starts just after a file of a coarser level (or
    /// a snapshot) of the same database follows that file: its gap or
    /// overlap with the file before it in its level is how the compactor's
    /// cumulative windows are laid out, and its checksum link and new
    /// pages are checked against the coarser file instead; a file whose
    /// range lies inside a coarser file is redundant (Litestream keeps L0
    /// files after compacting them). A level's first file must apply on a
    /// state some file of the database ends at, or lie inside a coarser
    /// file, unless the database's files form Litestream's ladder (every
    /// level one chain whose first file applies on a reproducible state,
    /// [`ltx_compactor::policy::check_ladder`]).
    pub fn check_sequence(&self, seq: &[usize]) -> Vec<Finding> {
        let mut out = Vec::new();
        let Some(&first) = seq.first() else {
            return out;
        };
        self.check_first(first, &mut out);
        for w in seq.windows(2) {
            self.check_pair(w[0], w[1], &mut out);
        }
        out
    }

    fn header(&self, i: usize) -> Header {
        self.files[i]
            .header
            .expect("chain-checked files have a header")
    }

    /// A file's rank among levels: snapshots above every level.
    fn rank(&self, i: usize) -> u32 {
        match (self.files[i].header, self.files[i].level) {
            (Some(h), _) if h.is_snapshot() => u32::MAX,
            (_, l) => l.unwrap_or(0),
        }
    }

    /// The files `b` follows across levels: the coarser files (or
    /// snapshots) of its database that end just before it starts, as the
    /// compactor's cumulative windows do (level k's window starts where its
    /// parent's does, so level k alone overlaps itself and has holes its
    /// parent bridges). No coarser file ends there: the files of finer
    /// levels that do, since a restore path runs through them (a gap is a
    /// TXID no combination of files reaches; the compactor's check has the
    /// same rule).
    fn bridges(&self, b: usize) -> Vec<usize> {
        let f = &self.files[b];
        let (Some(h), Some(level)) = (f.header, f.level) else {
            return Vec::new();
        };
        let all: &[usize] = self
            .ends
            .get(&(f.db, h.min_txid.0.wrapping_sub(1)))
            .map_or(&[], Vec::as_slice);
        let coarser: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&r| self.rank(r) > level)
            .collect();
        if coarser.is_empty() {
            all.iter()
                .copied()
                .filter(|&r| self.rank(r) < level)
                .collect()
        } else {
            coarser
        }
    }

    /// Whether `b`'s whole range lies inside a file of a coarser level (or
    /// a snapshot) of the same database: redundant, never a gap or an
    /// overlap (the compactor's `check_contiguity` has the same rule).
    fn covered(&self, b: usize) -> bool {
        let f = &self.files[b];
        let (Some(h), Some(level)) = (f.header, f.level) else {
            return false;
        };
        self.by_db.get(&f.db).into_iter().flatten().any(|&r| {
            let hr = self.header(r);
            self.rank(r) > level && hr.min_txid <= h.min_txid && hr.max_txid >= h.max_txid
        })
    }

    fn check_first(&self, first: usize, out: &mut Vec<Finding>) {
        let f = &self.files[first];
        let h = self.header(first);
        if f.level.is_some()
            && !h.is_snapshot()
            && !self.ladders.contains(&f.db)
            && self.bridges(first).is_empty()
            && !self.covered(first)
        {
            out.push(Finding {
                kind: "gap",
                prev: None,
                next: first,
                message: format!(
                    "{} starts at TXID {} but no file of this database ends at {}",
                    f.short,
                    h.min_txid,
                    hex16(h.min_txid.0 - 1)
                ),
            });
        }
    }

    /// Checks `b` against `a`, the file before it in its sequence (or
    /// against the coarser files it follows).
    fn check_pair(&self, a: usize, b: usize, out: &mut Vec<Finding>) {
        let (ha, hb) = (self.header(a), self.header(b));
        let mut push = |kind: &'static str, prev: usize, message: String| {
            out.push(Finding {
                kind,
                prev: Some(prev),
                next: b,
                message,
            })
        };
        let (an, bn) = (&self.files[a].short, &self.files[b].short);
        if hb.is_snapshot() {
            return; // a snapshot starts a new chain
        }
        let contiguous = hb.min_txid.0 == ha.max_txid.0.saturating_add(1);
        if !contiguous && hb.max_txid > ha.max_txid {
            let coarser = self.bridges(b);
            if !coarser.is_empty() {
                for c in coarser {
                    let hc = self.header(c);
                    if hb.page_size != hc.page_size {
                        let cn = &self.files[c].short;
                        push(
                            "page-size",
                            c,
                            format!(
                                "{bn} has page size {}, {cn} before it has {}",
                                hb.page_size, hc.page_size
                            ),
                        );
                    }
                    for (kind, message) in self.link_problems(c, b) {
                        push(kind, c, message);
                    }
                }
                return;
            }
        }
        if !contiguous && self.covered(b) {
            return;
        }
        if hb.page_size != ha.page_size {
            push(
                "page-size",
                a,
                format!(
                    "{bn} has page size {}, {an} before it has {}",
                    hb.page_size, ha.page_size
                ),
            );
        }
        if hb.min_txid.0 > ha.max_txid.0.saturating_add(1) {
            push(
                "gap",
                a,
                format!(
                    "TXIDs {}..={} are missing between {an} and {bn}",
                    hex16(ha.max_txid.0 + 1),
                    hex16(hb.min_txid.0 - 1)
                ),
            );
            return;
        }
        if hb.min_txid <= ha.max_txid {
            push(
                "overlap",
                a,
                format!(
                    "{bn} (TXIDs {}-{}) overlaps {an} (TXIDs {}-{})",
                    hb.min_txid, hb.max_txid, ha.min_txid, ha.max_txid
                ),
            );
            return;
        }
        for (kind, message) in self.link_problems(a, b) {
            push(kind, a, message);
        }
        // In a replica, every other verified file of the database that ends
        // just before `b` (another level's) must leave the database where
        // `b` expects it too.
        let f = &self.files[b];
        if f.level.is_some() {
            let before = (f.db, hb.min_txid.0.wrapping_sub(1));
            for &c in self.ends.get(&before).into_iter().flatten() {
                let fc = &self.files[c];
                if c == a {
                    continue;
                }
                let Some(tc) = fc.trailer else { continue };
                if let Some(m) = checksum_link(&fc.short, &self.header(c), &tc, bn, &hb) {
                    push("checksum-link", c, m);
                }
            }
        }
    }

    /// What is wrong between `a` and `b` when `b` starts just after `a`
    /// ends (page sizes are compared by the caller): the checksum link
    /// (both tracking checksums, `a` verified) and pages missing where `b`
    /// grows the database.
    fn link_problems(&self, a: usize, b: usize) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let (fa, fb) = (&self.files[a], &self.files[b]);
        let (ha, hb) = (self.header(a), self.header(b));
        if let Some(ta) = &fa.trailer {
            if let Some(m) = checksum_link(&fa.short, &ha, ta, &fb.short, &hb) {
                out.push(("checksum-link", m));
            }
        }
        if hb.commit > ha.commit {
            if let Some(pgnos) = fb.pgnos {
                let lock = hb.lock_pgno();
                let missing: Vec<Pgno> = (ha.commit + 1..=hb.commit)
                    .filter(|&p| p != lock && pgnos.binary_search(&p).is_err())
                    .collect();
                if !missing.is_empty() {
                    out.push((
                        "missing-pages",
                        format!(
                            "{} grows the database from {} to {} pages but lacks {} of the new pages: {}",
                            fb.short,
                            ha.commit,
                            hb.commit,
                            missing.len(),
                            output::ranges(&missing, 8)
                        ),
                    ));
                }
            }
        }
        out
    }
}

/// Whether the replica files `idx` form Litestream's ladder, by the
/// compactor's rule ([`ltx_compactor::policy::check_ladder`]).
fn is_ladder(files: &[Link<'_>], idx: &[usize]) -> bool {
    let mut catalog = Vec::with_capacity(idx.len());
    for &i in idx {
        let f = &files[i];
        let (Some(h), Some(level)) = (f.header, f.level) else {
            continue;
        };
        let Ok(level) = u8::try_from(level) else {
            return false;
        };
        catalog.push(ltx_compactor::catalog::LtxObject {
            level,
            min_txid: h.min_txid,
            max_txid: h.max_txid,
            size: 0,
            created_ms: 0,
            timestamp_ms: None,
            key: f.name.clone(),
        });
    }
    ltx_compactor::policy::check_ladder(&catalog).is_empty()
}

/// A file whose name (`%016x-%016x.ltx`: `named`) gives other TXIDs than
/// its header: the message, else `None`.
///
/// ```
/// use ltx_core::{Header, PageSize, TxId};
/// let h = Header::new(PageSize::new(4096).unwrap(), TxId(2), TxId(3));
/// let m = ltx_cli::chain::name_mismatch("a.ltx", (TxId(2), TxId(4)), &h).unwrap();
/// assert_eq!(m, "a.ltx: the name says TXIDs 0000000000000002-0000000000000004, the header says 0000000000000002-0000000000000003");
/// assert!(ltx_cli::chain::name_mismatch("a.ltx", (TxId(2), TxId(3)), &h).is_none());
/// ```
pub fn name_mismatch(name: &str, named: (TxId, TxId), h: &Header) -> Option<String> {
    let (a, b) = named;
    ((h.min_txid, h.max_txid) != named).then(|| {
        format!(
            "{name}: the name says TXIDs {a}-{b}, the header says {}-{}",
            h.min_txid, h.max_txid
        )
    })
}

/// The checksum link between `prev` (header `hp`, verified trailer `tp`)
/// and `next` (header `hn`), which starts right after it: when both track
/// checksums, `next`'s pre-apply checksum must be `prev`'s post-apply
/// checksum. The message when it is not, else `None`.
///
/// ```
/// use ltx_core::{Checksum, Header, PageSize, Trailer, TxId};
/// let ps = PageSize::new(4096).unwrap();
/// let hp = Header::new(ps, TxId(1), TxId(1));
/// let tp = Trailer { post_apply_checksum: Checksum(0x8000_0000_0000_0001), file_checksum: Checksum(0) };
/// let mut hn = Header::new(ps, TxId(2), TxId(2));
/// hn.pre_apply_checksum = Checksum(0x8000_0000_0000_0002);
/// let m = ltx_cli::chain::checksum_link("a", &hp, &tp, "b", &hn).unwrap();
/// assert_eq!(m, "b expects pre-apply checksum 8000000000000002, but a leaves the database at 8000000000000001");
/// hn.pre_apply_checksum = tp.post_apply_checksum;
/// assert!(ltx_cli::chain::checksum_link("a", &hp, &tp, "b", &hn).is_none());
/// ```
pub fn checksum_link(
    prev: &str,
    hp: &Header,
    tp: &Trailer,
    next: &str,
    hn: &Header,
) -> Option<String> {
    if hp.no_checksum() || hn.no_checksum() {
        return None;
    }
    let post = tp.post_apply_checksum;
    (hn.pre_apply_checksum != post).then(|| {
        format!(
            "{next} expects pre-apply checksum {}, but {prev} leaves the database at {post}",
            hn.pre_apply_checksum
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx_core::PageSize;

    fn link(level: u32, a: u64, b: u64) -> Link<'static> {
        let mut h = Header::new(PageSize::new(4096).unwrap(), TxId(a), TxId(b));
        h.commit = 1;
        let name = format!("{level}/{a}-{b}");
        Link {
            short: name.clone(),
            name,
            db: 0,
            seq: Some(level as usize),
            level: Some(level),
            named: None,
            header: Some(h),
            trailer: None,
            pgnos: None,
        }
    }

    fn found(files: &[Link]) -> Vec<(&'static str, String)> {
        Checker::new(files)
            .check()
            .into_iter()
            .map(|f| (f.kind, files[f.next].name.clone()))
            .collect()
    }

    /// Litestream's ladder: level 1's first file overlaps the snapshot
    /// that replaced older files, and no file ends just before it; it
    /// applies on the snapshot's state, so there is no gap. Without the
    /// ladder (a hole in level 0), the same first file is a gap.
    #[test]
    fn a_ladder_has_no_gap_before_a_level() {
        let ladder = [
            link(9, 1, 100),
            link(1, 50, 120),
            link(0, 121, 121),
            link(0, 122, 125),
        ];
        assert_eq!(found(&ladder), vec![]);
        let broken = [
            link(9, 1, 100),
            link(1, 50, 120),
            link(0, 121, 121),
            link(0, 123, 125),
        ];
        assert_eq!(
            found(&broken),
            vec![
                ("gap", "0/123-125".to_string()),
                ("gap", "1/50-120".to_string())
            ]
        );
    }

    /// Cumulative windows: level 1 restarts where level 2 ends (a hole in
    /// level 1 bridged by level 2); an L0 file inside level 1 is redundant.
    #[test]
    fn coarser_levels_bridge_and_cover() {
        let files = [
            link(9, 1, 10),
            link(2, 11, 40),
            link(1, 11, 20),
            link(1, 41, 50),
            link(0, 45, 45),
            link(0, 51, 51),
        ];
        assert_eq!(found(&files), vec![]);
        // Without level 2, level 1 has a hole and 41-50 follows nothing.
        let files = [
            link(9, 1, 10),
            link(1, 11, 20),
            link(1, 41, 50),
            link(0, 51, 51),
        ];
        assert_eq!(found(&files), vec![("gap", "1/41-50".to_string())]);
    }

    /// A bucket seen after a real pass beside Litestream (the compactor's
    /// `check_contiguity` test): level 2's last window starts after the L0
    /// file 14, through which the restore path runs. Without that file,
    /// 15-17 follows nothing (level 1's 15-16 lies inside it: redundant).
    #[test]
    fn finer_files_carry_a_chain() {
        let files = [
            link(0, 1, 1),
            link(0, 14, 14),
            link(0, 18, 18),
            link(1, 1, 2),
            link(1, 15, 16),
            link(2, 3, 5),
            link(2, 9, 11),
            link(2, 15, 17),
            link(3, 3, 8),
            link(9, 1, 13),
        ];
        assert_eq!(found(&files), vec![]);
        let without: Vec<Link> = files
            .iter()
            .filter(|l| l.name != "0/14-14")
            .cloned()
            .collect();
        assert_eq!(found(&without), vec![("gap", "2/15-17".to_string())]);
    }
}
