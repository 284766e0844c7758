//! Pure restore planning: the fewest files that rebuild a database at a
//! TXID, at a time, or at the latest reproducible state.
//!
//! Every file is an edge from TXID `min - 1` to `max` in a graph whose nodes
//! are TXIDs; a file with `min == 1` starts from the empty database (a
//! snapshot, or the first L0 file). Consecutive files may overlap
//! (`next.min <= cur.max + 1`, `next.max > cur.max`): applying the newer
//! versions of pages again is harmless. The plan is a shortest path (fewest
//! files, then fewest bytes) over every level and snapshot, ending exactly at
//! the target TXID. One pass over the files sorted by `max_txid` with a
//! range-minimum tree computes the shortest path to every TXID at once
//! ([`RestoreIndex`]), so the policy and the simulator can answer thousands
//! of targets cheaply.

use std::fmt;

use ltx_core::TxId;
use serde::Serialize;

use crate::catalog::{txid_serde, LtxObject};

/// What to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Exactly this transaction.
    Txid(TxId),
    /// The latest transaction at or before this time (ms since the epoch)
    /// that the bucket can reproduce.
    Time(i64),
    /// The latest reproducible transaction.
    Latest,
}

/// A restore plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestorePlan {
    /// Files in apply order; the first applies to an empty database.
    pub files: Vec<LtxObject>,
    /// The TXID the plan reproduces.
    #[serde(with = "txid_serde")]
    pub txid: TxId,
    /// Time of that transaction (ms): the header timestamp of a file ending at
    /// it when known (`timestamp_exact`), else the earliest last-modified time
    /// of such a file (an upper bound).
    pub timestamp_ms: i64,
    /// Whether `timestamp_ms` comes from a header timestamp.
    pub timestamp_exact: bool,
    /// Total bytes of the files.
    pub bytes: u64,
}

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreError {
    /// The catalog has no file starting from an empty database.
    NoBase,
    /// The TXID is not the end of any reachable chain. `below`/`above` are
    /// the nearest reproducible TXIDs.
    NotReproducible {
        /// Requested TXID.
        txid: TxId,
        /// Nearest reproducible TXID below.
        below: Option<TxId>,
        /// Nearest reproducible TXID above.
        above: Option<TxId>,
    },
    /// Nothing reproducible at or before that time; `earliest` is the
    /// earliest reproducible (TXID, time).
    TooEarly {
        /// Requested time.
        time_ms: i64,
        /// Earliest reproducible TXID and its time.
        earliest: Option<(TxId, i64)>,
    },
}

impl fmt::Display for RestoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RestoreError::NoBase => {
                f.write_str("no snapshot or other file starting at TXID 1: nothing to restore from")
            }
            RestoreError::NotReproducible { txid, below, above } => {
                write!(f, "TXID {txid} cannot be reproduced from this bucket")?;
                if let Some(b) = below {
                    write!(f, "; nearest below: {b}")?;
                }
                if let Some(a) = above {
                    write!(f, "; nearest above: {a}")?;
                }
                Ok(())
            }
            RestoreError::TooEarly { time_ms, earliest } => {
                write!(f, "nothing reproducible at or before {time_ms} ms")?;
                if let Some((t, ms)) = earliest {
                    write!(f, "; earliest: TXID {t} at {ms} ms")?;
                }
                Ok(())
            }
        }
    }
}
impl std::error::Error for RestoreError {}

/// Cost of a path: (files, bytes). Lexicographic.
type Cost = (u32, u64);

/// Suffix minima over a growing array: a stack of (slot, files, bytes) with
/// strictly increasing costs; the minimum over `[lo, len)` is the first
/// entry at or after `lo` (entries before a cheaper later one can never be
/// the minimum of a suffix, so they are dropped on push).
struct SuffixMin {
    stack: Vec<(usize, Cost)>,
}

impl SuffixMin {
    fn push(&mut self, slot: usize, c: Cost) {
        while self.stack.last().is_some_and(|t| t.1 >= c) {
            self.stack.pop();
        }
        self.stack.push((slot, c));
    }
    /// Cheapest slot at or after `lo` among those pushed.
    fn query(&self, lo: usize) -> Option<(usize, Cost)> {
        let i = self.stack.partition_point(|t| t.0 < lo);
        self.stack.get(i).copied()
    }
}

/// Shortest paths from a start TXID to every file end, over a set of files.
///
/// Built with `start = 1` it answers restores ([`RestoreIndex::plan`]); the
/// policy also builds it over the files inside a range to find the fewest
/// inputs that exactly cover that range.
pub struct RestoreIndex<'a> {
    files: Vec<&'a LtxObject>,
    /// Position of each file in the iterator the index was built from.
    pos: Vec<usize>,
    /// Distinct end TXIDs, ascending.
    ends: Vec<u64>,
    /// Best (files, bytes) to each end; `None` if unreachable.
    cost: Vec<Option<Cost>>,
    /// (file index, previous end slot) of the best path's last step.
    pred: Vec<(usize, Option<usize>)>,
    /// Time of each end: (ms, exact).
    time: Vec<(i64, bool)>,
    /// Reachable slots sorted by time, with the running maximum slot.
    by_time: Vec<(i64, usize)>,
}

impl<'a> RestoreIndex<'a> {
    /// Shortest paths from the empty database (`start = 1`).
    pub fn new(catalog: &'a [LtxObject]) -> RestoreIndex<'a> {
        Self::from_start(catalog.iter(), 1)
    }

    /// Shortest paths from TXID `start - 1` (files starting at `start` are
    /// first steps; files starting before `start` are ignored).
    pub fn from_start(files: impl IntoIterator<Item = &'a LtxObject>, start: u64) -> Self {
        Self::build(files, |f| f.min_txid.0 >= start, |f| f.min_txid.0 == start)
    }

    /// Shortest paths from the state at TXID `txid` (a database that
    /// already holds it): files ending after `txid` count; those starting
    /// at or before `txid + 1` are first steps (a file overlapping the
    /// state rewrites pages that already hold those versions, or newer
    /// ones it also holds: applying it gives the state at its end).
    pub fn after(files: impl IntoIterator<Item = &'a LtxObject>, txid: TxId) -> Self {
        Self::build(
            files,
            |f| f.max_txid > txid,
            |f| f.min_txid.0 <= txid.0.saturating_add(1),
        )
    }

    fn build(
        files: impl IntoIterator<Item = &'a LtxObject>,
        keep: impl Fn(&LtxObject) -> bool,
        first: impl Fn(&LtxObject) -> bool,
    ) -> Self {
        let mut tagged: Vec<(usize, &LtxObject)> = files
            .into_iter()
            .enumerate()
            .filter(|(_, f)| keep(f))
            .collect();
        tagged.sort_by(|(_, a), (_, b)| {
            (a.max_txid, a.min_txid, a.level, &a.key)
                .cmp(&(b.max_txid, b.min_txid, b.level, &b.key))
        });
        let pos: Vec<usize> = tagged.iter().map(|t| t.0).collect();
        let files: Vec<&LtxObject> = tagged.into_iter().map(|t| t.1).collect();
        let mut ends: Vec<u64> = files.iter().map(|f| f.max_txid.0).collect();
        ends.dedup();
        let mut tree = SuffixMin { stack: Vec::new() };
        let mut cost = vec![None; ends.len()];
        let mut pred = vec![(0usize, None); ends.len()];
        let mut time = vec![(i64::MAX, false); ends.len()];
        let mut i = 0;
        for (slot, &end) in ends.iter().enumerate() {
            let mut best: Option<(Cost, usize, Option<usize>)> = None;
            while i < files.len() && files[i].max_txid.0 == end {
                let f = files[i];
                // Time of the end: an exact header timestamp wins over
                // last-modified upper bounds.
                let t = match f.timestamp_ms {
                    Some(ts) => (ts, true),
                    None => (f.created_ms, false),
                };
                let cur = time[slot];
                time[slot] = match (cur.1, t.1) {
                    (true, false) => cur,
                    (false, true) => t,
                    _ => (cur.0.min(t.0), cur.1),
                };
                let cand = if first(f) {
                    Some(((1, f.size), None))
                } else {
                    let lo = ends.partition_point(|&e| e < f.min_txid.0 - 1);
                    tree.query(lo)
                        .map(|(p, c)| ((c.0 + 1, c.1.saturating_add(f.size)), Some(p)))
                };
                if let Some((c, p)) = cand {
                    if best.is_none_or(|b| c < b.0) {
                        best = Some((c, i, p));
                    }
                }
                i += 1;
            }
            if let Some((c, fi, p)) = best {
                cost[slot] = Some(c);
                pred[slot] = (fi, p);
                tree.push(slot, c);
            }
        }
        let mut by_time: Vec<(i64, usize)> = (0..ends.len())
            .filter(|&s| cost[s].is_some())
            .map(|s| (time[s].0, s))
            .collect();
        by_time.sort();
        let mut run = 0usize;
        for e in by_time.iter_mut() {
            run = run.max(e.1);
            e.1 = run;
        }
        RestoreIndex {
            files,
            pos,
            ends,
            cost,
            pred,
            time,
            by_time,
        }
    }

    fn slot(&self, txid: u64) -> Option<usize> {
        self.ends.binary_search(&txid).ok()
    }

    /// Whether `txid` is reproducible.
    pub fn reachable(&self, txid: TxId) -> bool {
        self.slot(txid.0).is_some_and(|s| self.cost[s].is_some())
    }

    /// Every reproducible TXID with its time (ms, exact), ascending by TXID.
    pub fn reachable_ends(&self) -> impl Iterator<Item = (TxId, i64, bool)> + '_ {
        (0..self.ends.len())
            .filter(|&s| self.cost[s].is_some())
            .map(|s| (TxId(self.ends[s]), self.time[s].0, self.time[s].1))
    }

    /// Like [`RestoreIndex::reachable_ends`], from `txid` on.
    pub fn reachable_ends_from(&self, txid: TxId) -> impl Iterator<Item = (TxId, i64, bool)> + '_ {
        let first = self.ends.partition_point(|&e| e < txid.0);
        (first..self.ends.len())
            .filter(|&s| self.cost[s].is_some())
            .map(|s| (TxId(self.ends[s]), self.time[s].0, self.time[s].1))
    }

    /// Number of files and bytes of the best path to `txid`.
    pub fn cost(&self, txid: TxId) -> Option<(u32, u64)> {
        self.slot(txid.0).and_then(|s| self.cost[s])
    }

    /// The files of the best path to `txid`, in apply order.
    pub fn path(&self, txid: TxId) -> Option<Vec<&'a LtxObject>> {
        let mut s = self.slot(txid.0)?;
        self.cost[s]?;
        let mut out = Vec::new();
        loop {
            let (fi, p) = self.pred[s];
            out.push(self.files[fi]);
            match p {
                Some(p) => s = p,
                None => break,
            }
        }
        out.reverse();
        Some(out)
    }

    /// Like [`RestoreIndex::path`], as positions in the iterator the index
    /// was built from, last file first; `visit` returns false to stop early
    /// (e.g. at a file already seen: paths share their beginnings).
    pub fn walk_path(&self, txid: TxId, mut visit: impl FnMut(usize) -> bool) -> bool {
        let Some(mut s) = self.slot(txid.0) else {
            return false;
        };
        if self.cost[s].is_none() {
            return false;
        }
        loop {
            let (fi, p) = self.pred[s];
            if !visit(self.pos[fi]) {
                return true;
            }
            match p {
                Some(p) => s = p,
                None => return true,
            }
        }
    }

    /// The latest reproducible TXID whose time is at or before `time_ms`.
    pub fn resolve_time(&self, time_ms: i64) -> Option<TxId> {
        let n = self.by_time.partition_point(|e| e.0 <= time_ms);
        (n > 0).then(|| TxId(self.ends[self.by_time[n - 1].1]))
    }

    /// The latest reproducible TXID.
    pub fn latest(&self) -> Option<TxId> {
        (0..self.ends.len())
            .rev()
            .find(|&s| self.cost[s].is_some())
            .map(|s| TxId(self.ends[s]))
    }

    /// Plans a restore.
    ///
    /// # Errors
    /// [`RestoreError`] when the target cannot be reproduced.
    pub fn plan(&self, target: Target) -> Result<RestorePlan, RestoreError> {
        if self.by_time.is_empty() {
            return Err(RestoreError::NoBase);
        }
        let txid = match target {
            Target::Latest => self.latest().ok_or(RestoreError::NoBase)?,
            Target::Time(ms) => self.resolve_time(ms).ok_or_else(|| {
                let first = self.by_time[0];
                RestoreError::TooEarly {
                    time_ms: ms,
                    earliest: Some((TxId(self.ends[first.1]), first.0)),
                }
            })?,
            Target::Txid(t) => {
                if !self.reachable(t) {
                    let r: Vec<TxId> = self.reachable_ends().map(|e| e.0).collect();
                    let n = r.partition_point(|&x| x < t);
                    return Err(RestoreError::NotReproducible {
                        txid: t,
                        below: n.checked_sub(1).map(|i| r[i]),
                        above: r.get(n).copied(),
                    });
                }
                t
            }
        };
        let s = self.slot(txid.0).expect("resolved TXIDs are ends");
        let files: Vec<LtxObject> = self
            .path(txid)
            .expect("resolved TXIDs are reachable")
            .into_iter()
            .cloned()
            .collect();
        Ok(RestorePlan {
            bytes: files.iter().map(|f| f.size).sum(),
            files,
            txid,
            timestamp_ms: self.time[s].0,
            timestamp_exact: self.time[s].1,
        })
    }
}

/// Plans a restore over a catalog (any order; all levels and snapshots).
///
/// ```
/// use ltx_compactor::catalog::LtxObject;
/// use ltx_compactor::restore::{plan_restore, Target};
/// use ltx_core::TxId;
/// let f = |level, a, b| LtxObject { level, min_txid: TxId(a), max_txid: TxId(b), size: 1,
///     created_ms: b as i64, timestamp_ms: Some(b as i64), key: format!("{level}/{a}-{b}") };
/// let cat = vec![f(9, 1, 10), f(0, 11, 11), f(0, 12, 12), f(1, 11, 12)];
/// let plan = plan_restore(&cat, Target::Txid(TxId(12))).unwrap();
/// assert_eq!(plan.files.len(), 2);
/// assert_eq!(plan_restore(&cat, Target::Time(11)).unwrap().txid, TxId(11));
/// ```
///
/// # Errors
/// [`RestoreError`] when the target cannot be reproduced.
pub fn plan_restore(catalog: &[LtxObject], target: Target) -> Result<RestorePlan, RestoreError> {
    RestoreIndex::new(catalog).plan(target)
}

/// What a follower holding the state at some TXID can do next
/// ([`plan_follow`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowPlan {
    /// No file ends after the follower's TXID.
    UpToDate,
    /// `plan.files` take the follower's state to `plan.txid`, the latest
    /// state reachable from it; `gap` when the bucket holds later
    /// transactions that no chain reaches.
    Step {
        /// The files, in apply order (the first may start before the
        /// follower's TXID + 1).
        plan: RestorePlan,
        /// What cannot be reached after `plan.txid`.
        gap: Option<FollowGap>,
    },
    /// Files end after the follower's TXID but none can be reached from it.
    Gap(FollowGap),
}

/// Transactions a follower cannot reach: nothing in the bucket starts at
/// or before `reached + 1` and ends after `reached`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FollowGap {
    /// The latest TXID the follower can reach.
    #[serde(with = "txid_serde")]
    pub reached: TxId,
    /// The earliest start of the files ending after it.
    #[serde(with = "txid_serde")]
    pub next_min: TxId,
    /// The newest TXID in the bucket.
    #[serde(with = "txid_serde")]
    pub newest: TxId,
}

impl fmt::Display for FollowGap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TXIDs {} to {} are in no file: the bucket holds transactions up to {}, but nothing reaches past {} (the next file starts at {})",
            TxId(self.reached.0 + 1),
            TxId(self.next_min.0 - 1),
            self.newest,
            self.reached,
            self.next_min
        )
    }
}

/// Plans the next step of a follower whose database holds the state at
/// `from`: the latest reproducible TXID after it, by the fewest files
/// (then bytes) over every level. A snapshot (a file from TXID 1, which
/// rewrites every page) is used only when the other files do not reach
/// as far. Pure; see [`RestoreIndex::after`].
///
/// ```
/// use ltx_compactor::catalog::LtxObject;
/// use ltx_compactor::restore::{plan_follow, FollowPlan};
/// use ltx_core::TxId;
/// let f = |level, a, b| LtxObject { level, min_txid: TxId(a), max_txid: TxId(b), size: 1,
///     created_ms: 0, timestamp_ms: None, key: format!("{level}/{a}-{b}") };
/// // The L0 files 11 and 12 were compacted into 9-12; the follower is at 10.
/// let cat = vec![f(9, 1, 8), f(1, 9, 12), f(0, 13, 13), f(0, 16, 16)];
/// let FollowPlan::Step { plan, gap } = plan_follow(&cat, TxId(10)) else { panic!() };
/// assert_eq!(plan.files.len(), 2);
/// assert_eq!(plan.txid, TxId(13));
/// assert_eq!(gap.unwrap().next_min, TxId(16));
/// assert!(matches!(plan_follow(&cat, TxId(13)), FollowPlan::Gap(_)));
/// assert_eq!(plan_follow(&cat, TxId(16)), FollowPlan::UpToDate);
/// ```
pub fn plan_follow(catalog: &[LtxObject], from: TxId) -> FollowPlan {
    let Some(newest) = catalog.iter().map(|f| f.max_txid).max() else {
        return FollowPlan::UpToDate;
    };
    if newest <= from {
        return FollowPlan::UpToDate;
    }
    let gap_after = |reached: TxId| FollowGap {
        reached,
        next_min: catalog
            .iter()
            .filter(|f| f.max_txid > reached)
            .map(|f| f.min_txid)
            .min()
            .unwrap_or(newest),
        newest,
    };
    let all = RestoreIndex::after(catalog, from);
    let Some(target) = all.latest() else {
        return FollowPlan::Gap(gap_after(from));
    };
    let incremental = RestoreIndex::after(catalog.iter().filter(|f| f.min_txid.0 > 1), from);
    let idx = if incremental.reachable(target) {
        &incremental
    } else {
        &all
    };
    let plan = idx
        .plan(Target::Txid(target))
        .expect("the latest reachable end has a plan");
    FollowPlan::Step {
        plan,
        gap: (target < newest).then(|| gap_after(target)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn obj(level: u8, a: u64, b: u64, size: u64) -> LtxObject {
        LtxObject {
            level,
            min_txid: TxId(a),
            max_txid: TxId(b),
            size,
            created_ms: b as i64 * 10,
            timestamp_ms: Some(b as i64 * 10),
            key: format!("{level}/{a}-{b}"),
        }
    }

    /// Every path (by DFS) from the empty database to `t`: the minimum (files, bytes).
    fn brute(cat: &[LtxObject], t: u64) -> Option<(u32, u64)> {
        fn go(cat: &[LtxObject], cur: u64, t: u64, n: u32, b: u64, best: &mut Option<(u32, u64)>) {
            if cur == t {
                if best.is_none_or(|x| (n, b) < x) {
                    *best = Some((n, b));
                }
                return;
            }
            for f in cat {
                let ok = if n == 0 {
                    f.min_txid.0 == 1
                } else {
                    f.min_txid.0 <= cur + 1 && f.max_txid.0 > cur
                };
                if ok && f.max_txid.0 <= t {
                    go(cat, f.max_txid.0, t, n + 1, b + f.size, best);
                }
            }
        }
        let mut best = None;
        go(cat, 0, t, 0, 0, &mut best);
        best
    }

    fn valid_path(path: &[&LtxObject], t: u64) -> bool {
        path.first().is_some_and(|f| f.min_txid.0 == 1)
            && path.last().is_some_and(|f| f.max_txid.0 == t)
            && path
                .windows(2)
                .all(|w| w[1].min_txid.0 <= w[0].max_txid.0 + 1 && w[1].max_txid > w[0].max_txid)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn fewest_files_matches_brute_force(
            raw in prop::collection::vec((0u8..10, 1u64..14, 0u64..5, 1u64..50), 0..12)
        ) {
            let cat: Vec<LtxObject> = raw.iter().map(|&(l, a, len, s)| obj(l, a, a + len, s)).collect();
            let idx = RestoreIndex::new(&cat);
            for t in 1..=20u64 {
                let want = brute(&cat, t);
                prop_assert_eq!(idx.cost(TxId(t)), want, "t={}", t);
                if want.is_some() {
                    let p = idx.path(TxId(t)).unwrap();
                    prop_assert!(valid_path(&p, t));
                    prop_assert_eq!(p.len() as u32, want.unwrap().0);
                    let plan = idx.plan(Target::Txid(TxId(t))).unwrap();
                    prop_assert_eq!(plan.files.len() as u32, want.unwrap().0);
                } else {
                    let is_not_reproducible = matches!(
                        idx.plan(Target::Txid(TxId(t))),
                        Err(RestoreError::NotReproducible { .. }) | Err(RestoreError::NoBase)
                    );
                    prop_assert!(is_not_reproducible);
                }
            }
            // Time targets: the latest reproducible TXID at or before the time.
            for ms in (0..220i64).step_by(7) {
                let want = (1..=20u64).filter(|&t| brute(&cat, t).is_some() && t as i64 * 10 <= ms).max();
                prop_assert_eq!(idx.resolve_time(ms).map(|t| t.0), want);
            }
            let latest = (1..=20u64).filter(|&t| brute(&cat, t).is_some()).max();
            prop_assert_eq!(idx.latest().map(|t| t.0), latest);
        }
    }

    /// Every path from the state at `from` to `t` (first file: starts at or
    /// before `from + 1`, ends after `from`): the minimum (files, bytes).
    fn brute_from(cat: &[LtxObject], from: u64, t: u64) -> Option<(u32, u64)> {
        fn go(cat: &[LtxObject], cur: u64, t: u64, n: u32, b: u64, best: &mut Option<(u32, u64)>) {
            if cur == t && n > 0 {
                if best.is_none_or(|x| (n, b) < x) {
                    *best = Some((n, b));
                }
                return;
            }
            for f in cat {
                if f.min_txid.0 <= cur + 1 && f.max_txid.0 > cur && f.max_txid.0 <= t {
                    go(cat, f.max_txid.0, t, n + 1, b + f.size, best);
                }
            }
        }
        let mut best = None;
        go(cat, from, t, 0, 0, &mut best);
        best
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn follow_plans_match_brute_force(
            raw in prop::collection::vec((0u8..10, 1u64..16, 0u64..5, 1u64..50), 0..12),
            from in 1u64..18,
        ) {
            let cat: Vec<LtxObject> = raw.iter().map(|&(l, a, len, s)| obj(l, a, a + len, s)).collect();
            let newest = cat.iter().map(|f| f.max_txid.0).max().unwrap_or(0);
            let reach = (from + 1..=newest).filter(|&t| brute_from(&cat, from, t).is_some()).max();
            let incremental: Vec<LtxObject> = cat.iter().filter(|f| f.min_txid.0 > 1).cloned().collect();
            match plan_follow(&cat, TxId(from)) {
                FollowPlan::UpToDate => prop_assert!(newest <= from),
                FollowPlan::Gap(g) => {
                    prop_assert!(newest > from);
                    prop_assert_eq!(reach, None);
                    prop_assert_eq!(g.reached, TxId(from));
                    prop_assert_eq!(g.newest, TxId(newest));
                    prop_assert!(g.next_min.0 > from + 1);
                }
                FollowPlan::Step { plan, gap } => {
                    prop_assert_eq!(Some(plan.txid.0), reach);
                    let t = plan.txid.0;
                    // A valid chain from `from` to `t`.
                    let mut cur = from;
                    for f in &plan.files {
                        prop_assert!(f.min_txid.0 <= cur + 1 && f.max_txid.0 > cur);
                        cur = f.max_txid.0;
                    }
                    prop_assert_eq!(cur, t);
                    // The fewest files without snapshots when they reach, else with.
                    let want = brute_from(&incremental, from, t).or_else(|| brute_from(&cat, from, t));
                    prop_assert_eq!(Some((plan.files.len() as u32, plan.bytes)), want);
                    prop_assert_eq!(gap.is_some(), t < newest);
                    if let Some(g) = gap {
                        prop_assert_eq!(g.reached.0, t);
                        prop_assert!(g.next_min.0 > t + 1);
                    }
                }
            }
        }
    }

    #[test]
    fn overlap_allowed_and_exact_end() {
        let cat = vec![
            obj(9, 1, 5, 100),
            obj(1, 3, 8, 10),
            obj(0, 9, 9, 1),
            obj(2, 7, 12, 5),
        ];
        let p = plan_restore(&cat, Target::Txid(TxId(12))).unwrap();
        assert_eq!(p.files.len(), 3);
        // 10 and 11 are inside a file: not reproducible.
        let e = plan_restore(&cat, Target::Txid(TxId(10))).unwrap_err();
        assert_eq!(
            e,
            RestoreError::NotReproducible {
                txid: TxId(10),
                below: Some(TxId(9)),
                above: Some(TxId(12))
            }
        );
        // Time 115 ms lands on TXID 9 (time 90), and says so.
        let p = plan_restore(&cat, Target::Time(115)).unwrap();
        assert_eq!(
            (p.txid, p.timestamp_ms, p.timestamp_exact),
            (TxId(9), 90, true)
        );
        assert!(matches!(
            plan_restore(&cat, Target::Time(10)),
            Err(RestoreError::TooEarly { .. })
        ));
        assert_eq!(plan_restore(&[], Target::Latest), Err(RestoreError::NoBase));
    }

    #[test]
    fn unknown_timestamps_use_the_earliest_upper_bound() {
        let mut a = obj(9, 1, 5, 1);
        a.timestamp_ms = None;
        a.created_ms = 500; // a compacted file written late
        let mut b = obj(0, 5, 5, 1);
        b.timestamp_ms = None;
        b.created_ms = 60;
        let idx = RestoreIndex::new(std::slice::from_ref(&a));
        assert_eq!(idx.resolve_time(100), None);
        let both = [a, b];
        let idx = RestoreIndex::new(&both);
        assert_eq!(idx.resolve_time(100), Some(TxId(5)));
        let mut c = obj(0, 5, 5, 1);
        c.timestamp_ms = Some(50);
        let all = [both[0].clone(), both[1].clone(), c];
        let p = RestoreIndex::new(&all).plan(Target::Time(55)).unwrap();
        assert_eq!((p.timestamp_ms, p.timestamp_exact), (50, true));
    }
}
