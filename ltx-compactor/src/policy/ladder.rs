//! [`Shape::Ladder`]: Litestream's ladder, without its bugs.
//!
//! # Windows
//!
//! Every level `0..=8` is one contiguous, non-overlapping chain of files.
//! At each boundary of its interval (wall-clock aligned), a configured level
//! merges the files of its *source* (the next finer configured level; L0
//! for the finest) that start right after its own last TXID and whose
//! transactions fall in slots that ended by the boundary. Boundaries are
//! taken in time order, finest level first, so a backlog drains in one
//! pass and a level sees the outputs its source wrote at the same
//! boundary. Snapshots (level 9, named `1-<max>`) are written at every
//! snapshot boundary that saw transactions, merging the previous snapshot
//! with the fewest files after it up to the last transaction of the
//! boundary's slots (never the live database).
//!
//! # No copies up the ladder
//!
//! - *Deferral:* a window with a single input is not written: that file
//!   already serves restores, and writing it again one level up would be a
//!   byte-identical copy (Litestream #1407). The level waits until two or
//!   more files follow it; it stays contiguous because its next file starts
//!   where it stopped.
//! - *Chains start after the first full image:* a level that has no file
//!   yet starts where its consumer (the next coarser configured level) ends,
//!   or, when no coarser level has a file, after the latest snapshot or
//!   full image. So no ladder file starts at TXID 1 or takes a full image as
//!   input (Litestream #1510: its L1 1-1, L2 1-1, L3 1-N). The coarsest
//!   level, starting after a snapshot, may start with the source file that
//!   holds the snapshot's next transaction (it then overlaps the snapshot,
//!   which restores accept).
//! - *The one copy:* a full image in L0 (Litestream's first L0 file, `1-1`)
//!   without a twin at a higher level is promoted to a level-9 snapshot of
//!   the same name by [`CompactionKind::Copy`] (a server-side byte copy,
//!   never decoded or re-encoded). L0 must stay a queue whose compacted
//!   prefix is deleted; the base image is needed by every restore until the
//!   first daily snapshot, so without the copy either L0 would keep a hole
//!   after its first file or keep every file after it for up to a day. It
//!   goes to level 9, never up the ladder, and is not written when the
//!   retention would not keep it.
//!
//! # Retention and deletions
//!
//! [`ladder_retained`]: [`retained`] (every file on the fewest-files path of
//! a retained target, every file not compacted yet, the newest L0 file),
//! then:
//! - of files with the same range (twins: the promoted base and its L0
//!   original, Litestream's copies up the levels), one is needed: the
//!   newest L0 file if it is one of them (it stays anyway: then the base is
//!   promoted only once more L0 files follow it), else the one of the
//!   highest level;
//! - files a level has not consumed yet (its source's files after its last
//!   TXID, or after where it would restart) are kept, so that its chain can
//!   continue;
//! - in every level, everything after the first kept file is kept: only a
//!   prefix of each chain is ever deleted.
//!
//! The plan lists deletions finer levels first, oldest first within a
//! level ([`sort_deletions`]): deleted in that order, every level is a
//! contiguous chain at every intermediate point.

use std::borrow::{Borrow, Cow};
use std::cmp::Reverse;

use ltx_core::TxId;

#[cfg(test)]
use super::check_contiguity;
use super::{
    ceil_to, cover, prune_unretained, retained, Compaction, CompactionKind, Config, PassPlan, Shape,
};
use crate::catalog::{sort_catalog, DbLocation, LtxObject, SNAPSHOT_LEVEL};
use crate::restore::RestoreIndex;

/// Whether `input` alone may be the input of an output at `output_level`:
/// only the promotion of an L0 full image to a snapshot.
pub(super) fn promotes_base(output_level: u8, input: &LtxObject) -> bool {
    output_level == SNAPSHOT_LEVEL && input.level == 0 && input.is_base()
}

/// When each reproducible TXID is available to the windows: the end of the
/// slot of its time (the header timestamp, else last-modified), made
/// monotonic in TXID order, so that the TXIDs available at a boundary are a
/// prefix of the reproducible ones.
struct Clock {
    /// Reproducible end TXIDs, ascending.
    ends: Vec<u64>,
    /// Slot end of each (non-decreasing).
    slot_end: Vec<i64>,
}

impl Clock {
    fn new(catalog: &[LtxObject], slot: i64) -> Clock {
        let idx = RestoreIndex::new(catalog);
        let mut run = i64::MIN;
        let (mut ends, mut slot_end) = (Vec::new(), Vec::new());
        for (t, time, _) in idx.reachable_ends() {
            run = run.max(time);
            ends.push(t.0);
            slot_end.push(ceil_to(run, slot));
        }
        Clock { ends, slot_end }
    }

    fn reachable(&self, t: u64) -> bool {
        self.ends.binary_search(&t).is_ok()
    }

    fn slot_end_of(&self, t: u64) -> Option<i64> {
        self.ends.binary_search(&t).ok().map(|i| self.slot_end[i])
    }

    /// The latest reproducible TXID whose slot ended by `e`.
    fn latest_by(&self, e: i64) -> Option<u64> {
        let n = self.slot_end.partition_point(|&s| s <= e);
        n.checked_sub(1).map(|i| self.ends[i])
    }

    /// The distinct slot ends of the TXIDs after `t`.
    fn slots_after(&self, t: u64) -> impl Iterator<Item = i64> + '_ {
        let first = self.ends.partition_point(|&x| x <= t);
        let mut last = None;
        self.slot_end[first..].iter().copied().filter(move |&s| {
            let new = last != Some(s);
            last = Some(s);
            new
        })
    }
}

/// The catalog as it will be after the pass (listing, then outputs), with
/// each level's files in chain order.
struct Levels<'c> {
    virt: Vec<Cow<'c, LtxObject>>,
    /// Positions in `virt` per level, sorted by (min, max).
    by_level: Vec<Vec<usize>>,
    /// Highest max TXID per level.
    max_end: [Option<u64>; SNAPSHOT_LEVEL as usize + 1],
    /// Highest max TXID of a full image.
    base_end: Option<u64>,
}

impl<'c> Levels<'c> {
    fn new(catalog: &'c [LtxObject]) -> Levels<'c> {
        let mut lv = Levels {
            virt: Vec::with_capacity(catalog.len() + 16),
            by_level: vec![Vec::new(); SNAPSHOT_LEVEL as usize + 1],
            max_end: [None; SNAPSHOT_LEVEL as usize + 1],
            base_end: None,
        };
        for f in catalog {
            lv.note(f);
            lv.virt.push(Cow::Borrowed(f));
        }
        for (l, v) in lv.by_level.iter_mut().enumerate() {
            v.extend(
                lv.virt
                    .iter()
                    .enumerate()
                    .filter(|(_, f)| f.level as usize == l)
                    .map(|(i, _)| i),
            );
            v.sort_by_key(|&i| (lv.virt[i].min_txid, lv.virt[i].max_txid));
        }
        lv
    }

    fn note(&mut self, f: &LtxObject) {
        let e = &mut self.max_end[f.level.min(SNAPSHOT_LEVEL) as usize];
        *e = (*e).max(Some(f.max_txid.0));
        if f.is_base() {
            self.base_end = self.base_end.max(Some(f.max_txid.0));
        }
    }

    fn push(&mut self, f: LtxObject) {
        self.note(&f);
        let i = self.virt.len();
        let key = (f.min_txid, f.max_txid);
        let v = &mut self.by_level[f.level.min(SNAPSHOT_LEVEL) as usize];
        let at = v.partition_point(|&j| (self.virt[j].min_txid, self.virt[j].max_txid) <= key);
        v.insert(at, i);
        self.virt.push(Cow::Owned(f));
    }

    fn end(&self, level: u8) -> Option<u64> {
        self.max_end[level as usize]
    }

    /// The highest TXID held by a file coarser than `level` or a full image.
    fn coarse_end(&self, level: u8) -> Option<u64> {
        self.max_end[level as usize + 1..]
            .iter()
            .copied()
            .chain([self.base_end])
            .max()
            .flatten()
    }

    /// Where configured level `i`, which has no file, starts: (TXID, exact).
    /// Right after the first configured coarser level that has a file
    /// (exactly there, or that level could not continue); with none, after
    /// the latest coarser file, snapshot or full image (the source file
    /// holding that point may start before it).
    fn restart_point(&self, cfg: &Config, i: usize) -> Option<(u64, bool)> {
        cfg.levels[i + 1..]
            .iter()
            .find_map(|l| self.end(l.level))
            .map(|e| (e, true))
            .or_else(|| {
                let top = cfg.levels.last().expect("validated: levels").level;
                self.coarse_end(top).map(|e| (e, false))
            })
            .filter(|&(e, _)| e > 0)
    }

    /// The files of `level` chained from `from`, each available (ending at
    /// or before `avail` on a reproducible TXID). At each step, of the files
    /// starting there, the one reaching furthest.
    fn chain(&self, level: u8, from: u64, avail: u64, clock: &Clock) -> Vec<LtxObject> {
        let v = &self.by_level[level as usize];
        let mut out = Vec::new();
        let mut cur = from;
        loop {
            let lo = v.partition_point(|&j| self.virt[j].min_txid.0 < cur);
            let hi = v.partition_point(|&j| self.virt[j].min_txid.0 <= cur);
            let next = v[lo..hi]
                .iter()
                .rev()
                .map(|&j| self.virt[j].as_ref())
                .find(|f| f.max_txid.0 <= avail && !f.is_base() && clock.reachable(f.max_txid.0));
            let Some(f) = next else { break };
            out.push(f.clone());
            match f.max_txid.0.checked_add(1) {
                Some(n) => cur = n,
                None => break,
            }
        }
        out
    }

    /// The available file of `level` holding TXID `t` (not a full image).
    fn holding(&self, level: u8, t: u64, avail: u64, clock: &Clock) -> Option<&LtxObject> {
        let v = &self.by_level[level as usize];
        let n = v.partition_point(|&j| self.virt[j].min_txid.0 <= t);
        v[..n]
            .iter()
            .rev()
            .map(|&j| self.virt[j].as_ref())
            .find(|f| {
                f.max_txid.0 >= t
                    && f.max_txid.0 <= avail
                    && !f.is_base()
                    && clock.reachable(f.max_txid.0)
            })
    }
}

/// The pass in [`Shape::Ladder`] (see the module documentation).
pub(super) fn plan_ladder(
    catalog: &[LtxObject],
    cfg: &Config,
    now_ms: i64,
    loc: &DbLocation,
) -> PassPlan {
    let mut plan = PassPlan::default();
    let slot = cfg.slot();
    let closed = now_ms
        .saturating_sub(cfg.settle)
        .div_euclid(slot)
        .saturating_mul(slot);
    let clock = Clock::new(catalog, slot);
    let mut lv = Levels::new(catalog);
    let intervals = cfg.intervals();
    let snap_iv = cfg.snapshot_interval;
    let source = |i: usize| if i == 0 { 0 } else { cfg.levels[i - 1].level };

    // 1. An L0 full image without a twin at a higher level becomes a
    //    snapshot of the same name (a byte copy), once its slot is closed.
    for f in catalog.iter().filter(|f| f.level == 0 && f.is_base()) {
        let twin = catalog
            .iter()
            .any(|g| g.level >= 1 && g.is_base() && g.max_txid == f.max_txid);
        let Some(e) = clock.slot_end_of(f.max_txid.0) else {
            continue;
        };
        if twin || e > closed || plan.compactions.iter().any(|c| c.max_txid == f.max_txid) {
            continue;
        }
        let c = Compaction {
            kind: CompactionKind::Copy,
            inputs: vec![f.clone()],
            output_level: SNAPSHOT_LEVEL,
            output_key: loc.key(SNAPSHOT_LEVEL, TxId(1), f.max_txid),
            min_txid: TxId(1),
            max_txid: f.max_txid,
            window_end_ms: e,
        };
        lv.push(c.output_object(f.size, now_ms));
        plan.compactions.push(c);
    }

    // 2. The boundaries that may be due: for each level, the boundaries of
    //    it and every coarser interval after the slots of the TXIDs it has
    //    not consumed; for snapshots, after the latest snapshot.
    let mut bounds: Vec<i64> = Vec::new();
    for i in 0..cfg.levels.len() {
        let from = lv
            .end(cfg.levels[i].level)
            .or_else(|| lv.restart_point(cfg, i).map(|r| r.0))
            .unwrap_or(0);
        for s in clock.slots_after(from) {
            for &iv in &intervals[i..] {
                let b = ceil_to(s, iv);
                if bounds.last() != Some(&b) {
                    bounds.push(b);
                }
            }
        }
    }
    for s in clock.slots_after(lv.end(SNAPSHOT_LEVEL).unwrap_or(0)) {
        bounds.push(ceil_to(s, snap_iv));
    }
    bounds.retain(|&b| b <= closed);
    bounds.sort_unstable();
    bounds.dedup();

    // 3. At each boundary, finest level first, then the snapshot.
    let mut stuck = vec![false; cfg.levels.len()];
    for &e in &bounds {
        let Some(avail) = clock.latest_by(e) else {
            continue;
        };
        for (i, lc) in cfg.levels.iter().enumerate() {
            if e.rem_euclid(lc.interval) != 0 {
                continue;
            }
            let src = source(i);
            let from = match lv.end(lc.level) {
                Some(end) => end.checked_add(1),
                None => match lv.restart_point(cfg, i) {
                    Some((r, true)) => r.checked_add(1),
                    Some((r, false)) => r
                        .checked_add(1)
                        .and_then(|t| lv.holding(src, t, avail, &clock))
                        .map(|f| f.min_txid.0),
                    None => None,
                },
            };
            let Some(from) = from else { continue };
            let inputs = lv.chain(src, from, avail, &clock);
            if inputs.is_empty() && !stuck[i] {
                // Nothing starts where the level stopped, yet an available
                // file of its source goes past that point (a gap or an
                // overlap in the source): not a shape this policy writes.
                let past = lv.by_level[src as usize].iter().any(|&j| {
                    let f = &lv.virt[j];
                    f.max_txid.0 >= from && f.max_txid.0 <= avail
                });
                if past {
                    stuck[i] = true;
                    plan.warnings.push(format!(
                        "level {}: no level-{src} file starts at {}, where the level stopped: it cannot continue",
                        lc.level,
                        TxId(from)
                    ));
                }
            }
            // A single input already serves: no copy up the ladder.
            if inputs.len() < 2 {
                continue;
            }
            let (min, max) = (inputs[0].min_txid, inputs[inputs.len() - 1].max_txid);
            let c = Compaction {
                kind: CompactionKind::Merge,
                output_level: lc.level,
                output_key: loc.key(lc.level, min, max),
                min_txid: min,
                max_txid: max,
                window_end_ms: e,
                inputs,
            };
            lv.push(c.output_object(0, now_ms));
            plan.compactions.push(c);
        }
        if e.rem_euclid(snap_iv) != 0 || lv.end(SNAPSHOT_LEVEL).is_some_and(|s| s >= avail) {
            continue;
        }
        let Some(inputs) = cover(lv.virt.iter().map(|c| c.as_ref()), 1, avail) else {
            plan.warnings.push(format!(
                "no contiguous chain of files covers {}-{} (snapshot at {e} ms): skipped",
                TxId(1),
                TxId(avail)
            ));
            continue;
        };
        let kind = match inputs.as_slice() {
            [one] if promotes_base(SNAPSHOT_LEVEL, one) => CompactionKind::Copy,
            // A full image of exactly this range already serves.
            [_] => continue,
            _ => CompactionKind::Merge,
        };
        let size = if kind == CompactionKind::Copy {
            inputs[0].size
        } else {
            0
        };
        let c = Compaction {
            kind,
            output_level: SNAPSHOT_LEVEL,
            output_key: loc.key(SNAPSHOT_LEVEL, TxId(1), TxId(avail)),
            min_txid: TxId(1),
            max_txid: TxId(avail),
            window_end_ms: e,
            inputs,
        };
        lv.push(c.output_object(size, now_ms));
        plan.compactions.push(c);
    }

    // 4. Outputs the retention would not keep are not written; 5. the
    //    retention over the catalog as it will be after the pass.
    let mut virt = lv.virt;
    let keep = prune_unretained(catalog, &mut plan, &mut virt, cfg, now_ms);
    plan.deletions = catalog
        .iter()
        .enumerate()
        .filter(|&(i, _)| !keep[i])
        .map(|(_, f)| f.clone())
        .collect();
    sort_catalog(&mut plan.deletions);
    plan
}

/// Which files must be kept in ladder shape (by position in `files`):
/// [`retained`], with twins resolved to the highest level, every file a
/// level has not consumed yet, and every file after a kept one in its
/// level (only a prefix of a chain is ever deleted). See the module
/// documentation of [`Shape::Ladder`].
pub fn ladder_retained(
    files: &[&LtxObject],
    cfg: &Config,
    now_ms: i64,
    warnings: &mut Vec<String>,
) -> Vec<bool> {
    let mut keep = retained(files, cfg, now_ms, warnings);
    let newest_l0 = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.level == 0)
        .max_by_key(|(_, f)| (f.max_txid, Reverse(f.min_txid)))
        .map(|(i, _)| i);

    // Twins: files of the same range restore the same state; one serves:
    // the newest L0 file if it is one of them (it stays anyway), else the
    // one of the highest level.
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| {
        (
            files[i].min_txid,
            files[i].max_txid,
            Reverse(files[i].level),
        )
    });
    for group in order.chunk_by(|&a, &b| {
        (files[a].min_txid, files[a].max_txid) == (files[b].min_txid, files[b].max_txid)
    }) {
        if group.len() > 1 && group.iter().any(|&i| keep[i]) {
            let top = newest_l0.filter(|n| group.contains(n)).unwrap_or(group[0]);
            for &i in group {
                keep[i] = i == top;
            }
        }
    }

    let mut by_level: Vec<Vec<usize>> = vec![Vec::new(); SNAPSHOT_LEVEL as usize + 1];
    for (i, f) in files.iter().enumerate() {
        by_level[f.level.min(SNAPSHOT_LEVEL) as usize].push(i);
    }
    for v in &mut by_level {
        v.sort_by_key(|&i| (files[i].min_txid, files[i].max_txid));
    }
    let prefix_close = |keep: &mut Vec<bool>, level: u8| {
        let v = &by_level[level as usize];
        if let Some(p) = v.iter().position(|&i| keep[i]) {
            for &i in &v[p..] {
                keep[i] = true;
            }
        }
    };
    let configured = |l: u8| cfg.levels.iter().any(|c| c.level == l);
    for l in (1..SNAPSHOT_LEVEL).filter(|&l| !configured(l)) {
        prefix_close(&mut keep, l);
    }
    // Coarsest first: what a level keeps decides what its source must keep.
    // `cont`: where the level continues (its end, or where it would restart).
    let kept_end = |keep: &Vec<bool>, pred: &dyn Fn(&LtxObject) -> bool| {
        files
            .iter()
            .zip(keep.iter())
            .filter(|(f, &k)| k && pred(f))
            .map(|(f, _)| f.max_txid.0)
            .max()
    };
    let top = cfg.levels.last().map_or(0, |l| l.level);
    let mut cont = kept_end(&keep, &|f| f.level > top || f.is_base()).unwrap_or(0);
    for i in (0..cfg.levels.len()).rev() {
        let level = cfg.levels[i].level;
        prefix_close(&mut keep, level);
        if let Some(e) = kept_end(&keep, &|f| f.level == level) {
            cont = e;
        }
        let src = if i == 0 { 0 } else { cfg.levels[i - 1].level };
        for &j in &by_level[src as usize] {
            if files[j].max_txid.0 > cont {
                keep[j] = true;
            }
        }
    }
    prefix_close(&mut keep, 0);
    keep
}

/// Sorts deletions into the order to run them in: finer levels first;
/// within a level, newest first in cumulative shape (a file still listed
/// keeps its predecessor or its coarser bridge), oldest first in ladder
/// shape (only a prefix of each chain is deleted, so the rest stays one
/// chain). Either way every intermediate state (after a failure or a kill)
/// is as contiguous as the start and the end.
pub fn sort_deletions<T: Borrow<LtxObject>>(deletions: &mut [T], shape: Shape) {
    deletions.sort_by(|a, b| {
        let (a, b) = (a.borrow(), b.borrow());
        let level = a.level.cmp(&b.level);
        match shape {
            Shape::Cumulative => level.then(b.max_txid.cmp(&a.max_txid)),
            Shape::Ladder => level
                .then(a.min_txid.cmp(&b.min_txid))
                .then(a.max_txid.cmp(&b.max_txid)),
        }
    });
}

/// Checks the ladder shape: in every level `0..=8`, the files sorted by TXID
/// form one chain from the first (each starts right after the previous one
/// ends: no gap, no overlap); the first file of each level applies on a
/// reproducible state (some reproducible TXID lies in `min − 1 .. max`: its
/// prefix was deleted because other files serve, not lost), lies inside a
/// file of another level (a redundant leftover, e.g. the newest L0 file,
/// kept for Litestream after it was compacted) or is a full image; and every
/// snapshot (level 9) starts at TXID 1. Returns the problems found.
///
/// [`check_contiguity`](super::check_contiguity) asks more of a level's
/// first file (to start exactly after a coarser file), which a ladder does
/// not always give: e.g. the coarsest level's first file may overlap the
/// snapshot that replaced an older one.
///
/// ```
/// use ltx_compactor::catalog::LtxObject;
/// use ltx_compactor::policy::check_ladder;
/// use ltx_core::TxId;
/// let f = |level, a, b| LtxObject { level, min_txid: TxId(a), max_txid: TxId(b), size: 1,
///     created_ms: 0, timestamp_ms: None, key: format!("{level}/{a}-{b}") };
/// assert!(check_ladder(&[f(9, 1, 10), f(2, 2, 10), f(1, 11, 15), f(1, 16, 20), f(0, 20, 20)]).is_empty());
/// // A gap in level 1.
/// assert_eq!(check_ladder(&[f(9, 1, 10), f(1, 11, 15), f(1, 17, 20)]).len(), 1);
/// ```
pub fn check_ladder(catalog: &[LtxObject]) -> Vec<String> {
    let mut problems = Vec::new();
    let idx = RestoreIndex::new(catalog);
    for level in 0..SNAPSHOT_LEVEL {
        let mut files: Vec<&LtxObject> = catalog.iter().filter(|f| f.level == level).collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        if let Some(h) = files.first().filter(|h| !h.is_base()) {
            let applies = idx
                .reachable_ends_from(TxId(h.min_txid.0 - 1))
                .next()
                .is_some_and(|(e, _, _)| e < h.max_txid);
            let inside = || {
                catalog.iter().any(|g| {
                    g.level != level && g.min_txid <= h.min_txid && g.max_txid >= h.max_txid
                })
            };
            if !applies && !inside() {
                problems.push(format!(
                    "level {level}: {} follows no reproducible state (a hole before the level)",
                    h.key
                ));
            }
        }
        for w in files.windows(2) {
            let (p, f) = (w[0], w[1]);
            let next = p.max_txid.0.saturating_add(1);
            if f.min_txid.0 < next {
                problems.push(format!("level {level}: {} overlaps {}", f.key, p.key));
            } else if f.min_txid.0 > next {
                problems.push(format!(
                    "level {level}: gap before {}: {} ends at {}",
                    f.key, p.key, p.max_txid
                ));
            }
        }
    }
    for f in catalog.iter().filter(|f| f.level >= SNAPSHOT_LEVEL) {
        if f.level > SNAPSHOT_LEVEL || !f.is_base() {
            problems.push(format!(
                "level {}: {} is not a snapshot from TXID 1",
                f.level, f.key
            ));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::catalog::test_object as f;

    #[test]
    fn ladder_check() {
        // Litestream's shape: every level one chain, each starting after a
        // coarser file; the newest L0 file kept inside L1's range.
        let ok = vec![
            f(9, 1, 10),
            f(3, 11, 100),
            f(2, 101, 150),
            f(1, 151, 160),
            f(1, 161, 170),
            f(0, 170, 170),
        ];
        assert_eq!(check_ladder(&ok), Vec::<String>::new());
        // Cumulative windows are not a ladder: L1 restarts after the L2 file.
        let cumulative = vec![f(9, 1, 10), f(2, 11, 20), f(1, 11, 15), f(1, 21, 25)];
        assert!(check_contiguity(&cumulative).is_empty());
        assert_eq!(check_ladder(&cumulative).len(), 1);
        // A gap, an overlap, a duplicate range.
        let bad = [
            vec![f(9, 1, 10), f(1, 11, 15), f(1, 17, 20)],
            vec![f(9, 1, 10), f(1, 11, 15), f(1, 15, 20)],
            vec![f(9, 1, 10), f(1, 11, 15), f(1, 11, 15)],
        ];
        for b in &bad {
            assert_eq!(check_ladder(b).len(), 1, "{b:?}");
        }
        // A snapshot not from TXID 1.
        assert_eq!(check_ladder(&[f(9, 1, 10), f(9, 5, 12)]).len(), 1);
        // A level whose first file follows nothing reproducible (a lost
        // snapshot): a hole before the level, even though it is one chain.
        let lost = vec![f(3, 11, 100), f(2, 101, 150), f(0, 151, 151)];
        assert_eq!(check_ladder(&lost).len(), 3);
        // A head overlapping the snapshot that replaced an older one, and
        // one that follows a finer file: restorable, a ladder (though not
        // what `check_contiguity` accepts for the first).
        let overlap = vec![f(9, 1, 39), f(3, 36, 55), f(2, 40, 44), f(2, 45, 55)];
        assert_eq!(check_ladder(&overlap), Vec::<String>::new());
        assert_eq!(check_contiguity(&overlap).len(), 1);
        let finer = vec![f(9, 1, 160), f(1, 161, 163), f(1, 164, 170), f(3, 164, 170)];
        assert_eq!(check_ladder(&finer), Vec::<String>::new());
        // Full images at the head of a level (Litestream's climbed copies).
        let climbed = vec![f(9, 1, 1), f(1, 1, 1), f(1, 2, 5), f(2, 1, 5), f(3, 1, 5)];
        assert_eq!(check_ladder(&climbed), Vec::<String>::new());
    }

    #[test]
    fn deletion_orders() {
        let files = [f(1, 2, 5), f(0, 3, 3), f(1, 6, 9), f(0, 2, 2), f(2, 2, 9)];
        let keys = |v: &[&LtxObject]| -> Vec<(u8, u64)> {
            v.iter().map(|o| (o.level, o.min_txid.0)).collect()
        };
        let mut d: Vec<&LtxObject> = files.iter().collect();
        sort_deletions(&mut d, Shape::Ladder);
        assert_eq!(keys(&d), [(0, 2), (0, 3), (1, 2), (1, 6), (2, 2)]);
        sort_deletions(&mut d, Shape::Cumulative);
        assert_eq!(keys(&d), [(0, 3), (0, 2), (1, 6), (1, 2), (2, 2)]);
        // The plan's own order is the ladder's.
        let mut owned = files.to_vec();
        sort_catalog(&mut owned);
        let mut again = owned.clone();
        sort_deletions(&mut again, Shape::Ladder);
        assert_eq!(owned, again);
    }

    #[test]
    fn litestream_ladder_config() {
        let c = Config::litestream_ladder();
        c.validate().unwrap();
        assert_eq!(c.shape, Shape::Ladder);
        assert_eq!(c.worst_case_files(), 10 + 12 + 24);
        assert_eq!(
            Config {
                shape: Shape::Ladder,
                ..Config::default()
            }
            .worst_case_files(),
            2 + 2 + 2 + 2 + 3 + 3 + 5 + 4
        );
        assert_eq!(Config::default().shape, Shape::Cumulative);
    }
}
