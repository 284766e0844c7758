//! The compaction policy: a pure function of a listing, a configuration and
//! `now`, returning the compactions due and the deletions that are safe.
//!
//! Two shapes ([`Config::shape`]): [`Shape::Cumulative`] (the default,
//! described below: fewest files per restore) and [`Shape::Ladder`]
//! (Litestream's: every level one contiguous chain, for Litestream's VFS
//! read replicas and tools that expect it; its rules are in the `ladder`
//! submodule and on [`Shape::Ladder`]). Both share the retention
//! ([`retained`]), the single-input rule and the pruning of outputs the
//! retention would not keep.
//!
//! # The ladder: cumulative windows
//!
//! Time is cut into *slots* of the finest interval (L1, 30 s by default).
//! At the end `E` of every slot that saw transactions, one output is due, at
//! the level whose interval is the largest that divides `E` (level 9, a
//! snapshot, when the snapshot interval divides it). A level-`k` output
//! covers from just after the latest file of a *coarser* level (or a
//! snapshot) to the last transaction of the slot: its window starts where
//! its parent window starts. So a restore to any slot end takes at most one
//! file per level plus the snapshot: `1 + levels` files (9 with the default
//! 8 levels), whatever the rate, instead of Σ (interval ratio − 1) files on
//! Litestream's ladder.
//!
//! Bytes: a level-`k` file re-holds the pages of its window so far, so each
//! level stores about `(ratio − 1) / 2` copies of the changed pages, where
//! `ratio` is the parent's interval over the level's. Many levels with small
//! ratios (default: 30 s, 1 m, 2 m, 4 m, 8 m, 24 m, 72 m, 6 h, snapshot
//! 24 h) keep that low; `ltx-compactor simulate` measures it.
//!
//! # Rules
//! - Windows are found by time (the header timestamp, else last-modified,
//!   made monotonic in TXID order), but window *starts* are structural: the
//!   end of the latest coarser file, so late or missing timestamps can never
//!   open a TXID gap.
//! - Inputs are the fewest existing (or earlier planned) files that exactly
//!   cover the output's range, none starting before it: a full snapshot is
//!   never an input of a ladder file, and an output starting at TXID 1 is a
//!   snapshot (level 9). Snapshots merge the previous snapshot with the files
//!   after it; the live database is never needed.
//! - Single input (issue #1407): if the fewest files covering an output's
//!   range is one file of level ≥ 1, nothing is planned: that file serves
//!   (restore plans do not care about levels), so nothing is ever copied up
//!   the ladder. If it is one L0 file, the plan is a
//!   [`CompactionKind::Copy`]: a byte-for-byte (server-side) copy, never a
//!   decode/re-encode/upload, so that L0 stays a short queue that can be
//!   emptied under the normal rules.
//! - A backlog drains in one pass: every closed slot since the compacted
//!   frontier gets its output, in time order; later compactions of the same
//!   pass may take earlier outputs as inputs (the caller runs them in order).
//! - Deletions: the retained targets are every compacted TXID (end of a
//!   level ≥ 1 file) whose time is within the retention window, the latest
//!   compacted TXID at the start of the window (so a restore to exactly
//!   `now − retention` lands where it did), every TXID in the L0 retention window and
//!   everything not compacted yet. A file is kept if it is on the fewest-files
//!   restore path of any retained target; unreachable files are never
//!   deleted unless they end before the window's first target. The caller
//!   deletes only after every compaction of the pass has been written and
//!   verified.

use std::borrow::Cow;

use ltx_core::TxId;
use serde::{Deserialize, Serialize};

use crate::catalog::{sort_catalog, txid_serde, DbLocation, Layout, LtxObject, SNAPSHOT_LEVEL};
use crate::restore::RestoreIndex;

mod ladder;
pub use ladder::{check_ladder, ladder_retained, sort_deletions};

/// One incremental level of the ladder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LevelConfig {
    /// Level number, 1..=8.
    pub level: u8,
    /// Window interval ("30s", "5m", "1h", or a number of milliseconds).
    #[serde(with = "duration_serde")]
    pub interval: i64,
}

/// Policy configuration. Loaded from JSON (see `README.md`), e.g.
///
/// ```json
/// { "levels": [ {"level": 1, "interval": "30s"}, {"level": 2, "interval": "5m"},
///               {"level": 3, "interval": "1h"} ],
///   "snapshot_interval": "24h", "retention": "24h", "l0_retention": "0s", "settle": "1s",
///   "shape": "cumulative" }
/// ```
///
/// `shape` is optional (`"cumulative"` by default, or `"ladder"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Incremental levels, finest first. Each interval must divide the next
    /// and the snapshot interval.
    pub levels: Vec<LevelConfig>,
    /// Snapshot (level 9) interval, aligned to the epoch (24 h = UTC midnight).
    #[serde(with = "duration_serde")]
    pub snapshot_interval: i64,
    /// How long point-in-time restore must stay possible.
    #[serde(with = "duration_serde")]
    pub retention: i64,
    /// How long L0 files stay after they are compacted (every transaction
    /// stays a restore target meanwhile). 0: delete once compacted.
    #[serde(with = "duration_serde", default)]
    pub l0_retention: i64,
    /// How long after a slot ends before it is compacted (late uploads).
    #[serde(with = "duration_serde", default)]
    pub settle: i64,
    /// Which files the levels hold: [`Shape::Cumulative`] (default) or
    /// Litestream's [`Shape::Ladder`].
    #[serde(default)]
    pub shape: Shape,
}

/// What the files of a level cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Cumulative windows: a level-`k` file covers from just after the
    /// latest coarser file (or snapshot) to the end of its slot, so any slot
    /// end restores from at most `1 + levels` files. A level has holes that a
    /// coarser file bridges ([`check_contiguity`]).
    #[default]
    Cumulative,
    /// Litestream's ladder: every level is one contiguous, non-overlapping
    /// chain ([`check_ladder`]), what Litestream's own compaction and its VFS
    /// read replicas expect; restores take up to
    /// [`Config::worst_case_files`] files. At each boundary of its interval
    /// (wall-clock aligned), a level merges the files of the next finer
    /// configured level (L0 for the finest) that follow its own last TXID and
    /// fall in closed slots; snapshots (level 9, `1-<max>`) merge the
    /// previous snapshot with the files after it at every snapshot boundary.
    /// Unlike Litestream:
    /// - a window with a single input is not written (no byte-identical
    ///   copy up the ladder): the level waits for a second file, and its
    ///   next file starts where it stopped;
    /// - a level's first file starts where its consumer (the next coarser
    ///   level) ends, or after the latest snapshot or full image: no ladder
    ///   file starts at TXID 1 or takes a full image as input;
    /// - the one copy: an L0 full image (Litestream's first L0 file) with no
    ///   twin at a higher level is promoted to the snapshot of the same name
    ///   by [`CompactionKind::Copy`], so that L0 stays a queue whose
    ///   compacted prefix is deleted;
    /// - retention ([`ladder_retained`]) keeps what [`retained`] keeps, the
    ///   files a level has not consumed yet and everything after a kept file
    ///   in its level: only a prefix of a chain is ever deleted, oldest first
    ///   ([`sort_deletions`]), so every level stays one chain at every
    ///   intermediate point of a pass.
    Ladder,
}

const S: i64 = 1000;
const M: i64 = 60 * S;
const H: i64 = 60 * M;

impl Default for Config {
    /// Cumulative windows over 8 levels: 30 s, 1 m, 2 m, 4 m, 8 m, 24 m,
    /// 72 m, 6 h; snapshots every 24 h (UTC midnight); retention 24 h; L0
    /// deleted once compacted; 1 s settle. Small ratios at the busy fine
    /// levels, the large ones (5, 4) at the coarse levels where files are
    /// few and page sets saturate: measured with `simulate`.
    fn default() -> Config {
        let iv = [30 * S, M, 2 * M, 4 * M, 8 * M, 24 * M, 72 * M, 6 * H];
        Config {
            levels: iv
                .iter()
                .enumerate()
                .map(|(i, &interval)| LevelConfig {
                    level: i as u8 + 1,
                    interval,
                })
                .collect(),
            snapshot_interval: 24 * H,
            retention: 24 * H,
            l0_retention: 0,
            settle: S,
            shape: Shape::Cumulative,
        }
    }
}

impl Config {
    /// Litestream's intervals (L1 30 s, L2 5 m, L3 1 h, snapshots 24 h) run
    /// as cumulative windows by this policy (4 files worst case, more bytes).
    pub fn litestream_intervals() -> Config {
        Config {
            levels: [30 * S, 5 * M, H]
                .iter()
                .enumerate()
                .map(|(i, &interval)| LevelConfig {
                    level: i as u8 + 1,
                    interval,
                })
                .collect(),
            ..Config::default()
        }
    }

    /// Litestream 0.5's defaults in its own shape: L1 30 s, L2 5 m, L3 1 h,
    /// snapshots every 24 h, retention 24 h, L0 files kept 5 minutes after
    /// they are compacted (its `l0-retention`, which its VFS read replicas
    /// rely on), every level one contiguous chain ([`Shape::Ladder`]).
    pub fn litestream_ladder() -> Config {
        Config {
            l0_retention: 5 * M,
            shape: Shape::Ladder,
            ..Config::litestream_intervals()
        }
    }

    /// Checks the configuration.
    ///
    /// # Errors
    /// A message naming the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.levels.is_empty() {
            return Err("at least one level is needed".into());
        }
        let mut prev: Option<&LevelConfig> = None;
        for l in &self.levels {
            if !(1..SNAPSHOT_LEVEL).contains(&l.level) {
                return Err(format!("level {} is not in 1..=8", l.level));
            }
            if l.interval <= 0 {
                return Err(format!("level {} interval must be positive", l.level));
            }
            if let Some(p) = prev {
                if l.level <= p.level {
                    return Err("levels must be listed in ascending order".into());
                }
                if l.interval <= p.interval || l.interval % p.interval != 0 {
                    return Err(format!(
                        "level {} interval ({} ms) must be a multiple of level {}'s ({} ms)",
                        l.level, l.interval, p.level, p.interval
                    ));
                }
            }
            prev = Some(l);
        }
        let last = prev.expect("non-empty");
        if self.snapshot_interval <= last.interval || self.snapshot_interval % last.interval != 0 {
            return Err(format!(
                "snapshot interval ({} ms) must be a multiple of level {}'s ({} ms)",
                self.snapshot_interval, last.level, last.interval
            ));
        }
        if self.retention < 0 || self.l0_retention < 0 || self.settle < 0 {
            return Err("durations must not be negative".into());
        }
        Ok(())
    }

    /// Parses and validates a JSON configuration.
    ///
    /// # Errors
    /// Syntax or validation errors.
    pub fn from_json(s: &str) -> Result<Config, String> {
        let c: Config = serde_json::from_str(s).map_err(|e| e.to_string())?;
        c.validate()?;
        Ok(c)
    }

    /// The finest interval (slot length).
    pub fn slot(&self) -> i64 {
        self.levels[0].interval
    }

    /// The level an output ending at slot boundary `e` belongs to.
    pub fn level_of(&self, e: i64) -> u8 {
        if e.rem_euclid(self.snapshot_interval) == 0 {
            return SNAPSHOT_LEVEL;
        }
        self.levels
            .iter()
            .rev()
            .find(|l| e.rem_euclid(l.interval) == 0)
            .map_or(self.levels[0].level, |l| l.level)
    }

    /// Worst-case restore plan size for targets on a compacted TXID.
    /// Cumulative: one file per level plus the snapshot. Ladder: the
    /// snapshot, then per level at most as many files as fit in its parent's
    /// interval (`ratio`), one fewer at the coarsest level: Σ ratio
    /// (46 for Litestream's 30 s / 5 m / 1 h / 24 h; its own ladder needs up
    /// to 44, we may hold one more file per finer level while a window waits
    /// for its second input).
    pub fn worst_case_files(&self) -> usize {
        match self.shape {
            Shape::Cumulative => self.levels.len() + 1,
            Shape::Ladder => self
                .intervals()
                .windows(2)
                .map(|w| usize::try_from(w[1] / w[0]).unwrap_or(usize::MAX))
                .fold(0usize, usize::saturating_add),
        }
    }

    /// Intervals of the levels, finest first, then the snapshot interval.
    fn intervals(&self) -> Vec<i64> {
        let mut iv: Vec<i64> = self.levels.iter().map(|l| l.interval).collect();
        iv.push(self.snapshot_interval);
        iv
    }
}

/// Durations as "500ms", "30s", "5m", "1h", "7d" or a number of milliseconds.
pub mod duration_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Formats with the largest exact unit.
    pub fn format(ms: i64) -> String {
        for (unit, n) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if ms != 0 && ms % n == 0 {
                return format!("{}{unit}", ms / n);
            }
        }
        format!("{ms}ms")
    }
    /// Parses a duration string.
    pub fn parse(s: &str) -> Option<i64> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit())?;
        let (n, unit) = s.split_at(split);
        let n: i64 = n.parse().ok()?;
        let mul = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        n.checked_mul(mul)
    }
    /// Serialises as a string.
    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*ms))
    }
    /// Accepts a string or milliseconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) => Ok(n),
            Raw::S(s) => parse(&s).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "bad duration {s:?} (e.g. 30s, 5m, 1h, 1d, 500ms)"
                ))
            }),
        }
    }
}

/// How a compaction is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactionKind {
    /// Merge the inputs (ltx-core `plan_merge`, frames copied).
    Merge,
    /// One input already holds exactly the output: copy its bytes to the
    /// output key (server-side copy where the store has one). Never re-encoded.
    Copy,
}

/// One planned output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compaction {
    /// Merge or copy.
    pub kind: CompactionKind,
    /// Inputs in TXID order. May include outputs of earlier compactions of
    /// the same pass (same keys): run compactions in order.
    pub inputs: Vec<LtxObject>,
    /// Output level (9 = snapshot).
    pub output_level: u8,
    /// Output key, in the database's layout.
    pub output_key: String,
    /// Output min TXID (= first input's).
    #[serde(with = "txid_serde")]
    pub min_txid: TxId,
    /// Output max TXID (= last input's).
    #[serde(with = "txid_serde")]
    pub max_txid: TxId,
    /// End of the slot (ms since the epoch) this output closes.
    pub window_end_ms: i64,
}

impl Compaction {
    /// The output as a catalog object (size to be filled in once written).
    pub fn output_object(&self, size: u64, created_ms: i64) -> LtxObject {
        LtxObject {
            level: self.output_level,
            min_txid: self.min_txid,
            max_txid: self.max_txid,
            size,
            created_ms,
            timestamp_ms: self.inputs.last().and_then(|i| i.timestamp_ms),
            key: self.output_key.clone(),
        }
    }
}

/// The result of [`plan_pass`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassPlan {
    /// Compactions to run, in order.
    pub compactions: Vec<Compaction>,
    /// Files safe to delete once every compaction is written and verified,
    /// in catalog order; run them in [`sort_deletions`] order for the
    /// configuration's shape.
    pub deletions: Vec<LtxObject>,
    /// Things the caller should log (gaps, unreachable files).
    pub warnings: Vec<String>,
}

/// `t` rounded up to a multiple of `step`, saturating (header timestamps
/// come from files and may be anything: found by the `restore_plan` fuzzer).
fn ceil_to(t: i64, step: i64) -> i64 {
    let down = t.div_euclid(step).saturating_mul(step);
    if t.rem_euclid(step) == 0 {
        down
    } else {
        down.saturating_add(step)
    }
}

/// Plans one compaction pass. Pure: the result depends only on the
/// arguments. The catalog may be in any order and may include foreign
/// levels' files (Litestream's own L1..L3); keys are written in the layout
/// most of the catalog uses.
pub fn plan_pass(catalog: &[LtxObject], cfg: &Config, now_ms: i64) -> PassPlan {
    let loc = DbLocation::detect(catalog).unwrap_or(DbLocation {
        db: String::new(),
        layout: Layout::LtxDir,
    });
    plan_pass_at(catalog, cfg, now_ms, &loc)
}

/// [`plan_pass`] with an explicit output location.
pub fn plan_pass_at(
    catalog: &[LtxObject],
    cfg: &Config,
    now_ms: i64,
    loc: &DbLocation,
) -> PassPlan {
    match cfg.shape {
        Shape::Cumulative => plan_cumulative(catalog, cfg, now_ms, loc),
        Shape::Ladder => ladder::plan_ladder(catalog, cfg, now_ms, loc),
    }
}

/// The pass in [`Shape::Cumulative`].
fn plan_cumulative(catalog: &[LtxObject], cfg: &Config, now_ms: i64, loc: &DbLocation) -> PassPlan {
    let mut plan = PassPlan::default();
    // The catalog as it will be after the pass: the listing, then outputs.
    let mut virt: Vec<Cow<'_, LtxObject>> = catalog.iter().map(Cow::Borrowed).collect();
    let slot = cfg.slot();

    // 1. Where compaction stopped, and the transactions after it.
    let (frontier, processed_upto, new_ends) = {
        let idx = RestoreIndex::new(catalog);
        let (frontier, _) = compacted_frontier(catalog.iter(), &idx);
        let processed_upto = frontier.map(|(_, time)| ceil_to(time, slot));
        let mut run = i64::MIN;
        let mut new_ends: Vec<(u64, i64)> = Vec::new(); // (txid, slot end)
        for (t, time, _) in idx.reachable_ends() {
            run = run.max(time);
            if frontier.is_some_and(|(f, _)| t.0 <= f) {
                continue;
            }
            let eff = match processed_upto {
                Some(p) => run.max(p.saturating_add(1)),
                None => run,
            };
            new_ends.push((t.0, ceil_to(eff, slot)));
        }
        (frontier.map(|f| f.0).unwrap_or(0), processed_upto, new_ends)
    };

    // 2. The boundaries due: slots that saw transactions, plus the first
    //    boundary of every coarser level after each (to close windows).
    let closed = (now_ms - cfg.settle).div_euclid(slot) * slot;
    let mut seeds: Vec<i64> = new_ends.iter().map(|e| e.1).collect();
    seeds.extend(processed_upto);
    seeds.sort_unstable();
    seeds.dedup();
    let mut intervals: Vec<i64> = cfg.levels.iter().map(|l| l.interval).collect();
    intervals.push(cfg.snapshot_interval);
    let mut bounds: Vec<i64> = Vec::new();
    for &s in &seeds {
        if processed_upto.is_none_or(|p| s > p) {
            bounds.push(s);
        }
        for &iv in &intervals[1..] {
            let b = s.div_euclid(iv).saturating_add(1).saturating_mul(iv);
            if processed_upto.is_none_or(|p| b > p) {
                bounds.push(b);
            }
        }
    }
    bounds.retain(|&b| b <= closed);
    bounds.sort_unstable();
    bounds.dedup();

    // 3. One output per boundary, in time order.
    let mut ni = 0;
    let mut cur_end = frontier;
    for &e in &bounds {
        while ni < new_ends.len() && new_ends[ni].1 <= e {
            cur_end = cur_end.max(new_ends[ni].0);
            ni += 1;
        }
        if cur_end == 0 {
            continue;
        }
        let level = cfg.level_of(e);
        let start = if level == SNAPSHOT_LEVEL {
            Some(1)
        } else {
            virt.iter()
                .filter(|f| (f.level > level || f.is_base()) && f.max_txid.0 <= cur_end)
                .map(|f| f.max_txid.0)
                .max()
                .map_or(Some(1), |m| m.checked_add(1))
        };
        // (`None`: a coarser file ends at TXID u64::MAX; nothing follows it.)
        let Some(start) = start.filter(|&s| s <= cur_end) else {
            continue;
        };
        // Start 1 means no coarser file or snapshot: the output would be a
        // full image, so it is a snapshot, never a ladder file.
        let level = if start == 1 { SNAPSHOT_LEVEL } else { level };
        if virt
            .iter()
            .any(|f| f.level >= level && f.min_txid.0 == start && f.max_txid.0 == cur_end)
        {
            continue;
        }
        let Some(inputs) = cover(virt.iter().map(|c| c.as_ref()), start, cur_end) else {
            plan.warnings.push(format!(
                "no contiguous chain of files covers {}-{} (level {level} at {e} ms): skipped",
                TxId(start),
                TxId(cur_end)
            ));
            continue;
        };
        // One input already holding exactly this range: a ladder file serves
        // as it is (restores do not care about levels); an L0 file is
        // promoted by a byte copy so that L0 stays a short queue.
        if inputs.len() == 1 && inputs[0].level >= 1 {
            continue;
        }
        let kind = if inputs.len() == 1 {
            CompactionKind::Copy
        } else {
            CompactionKind::Merge
        };
        let c = Compaction {
            kind,
            output_level: level,
            output_key: loc.key(level, TxId(start), TxId(cur_end)),
            min_txid: TxId(start),
            max_txid: TxId(cur_end),
            window_end_ms: e,
            inputs,
        };
        let size = if kind == CompactionKind::Copy {
            c.inputs[0].size
        } else {
            0
        };
        virt.push(Cow::Owned(c.output_object(size, now_ms)));
        plan.compactions.push(c);
    }

    // 4. Outputs the retention would not keep are not written (a backlog
    //    older than the retention needs only its newest states).
    // 5. Retention over the catalog as it will be after the pass (computed
    //    by the pruning's last round). Outputs come after the listing in
    //    `virt`, so positions below `catalog.len()` are listed objects.
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

/// The fewest files of `files` that exactly cover `start..=end`, none
/// starting before `start`, none a full image unless `start` is 1.
fn cover<'a>(
    files: impl Iterator<Item = &'a LtxObject>,
    start: u64,
    end: u64,
) -> Option<Vec<LtxObject>> {
    let within = files.filter(|f| f.max_txid.0 <= end && (start == 1 || !f.is_base()));
    RestoreIndex::from_start(within, start)
        .path(TxId(end))
        .map(|p| p.into_iter().cloned().collect())
}

/// Drops the planned outputs that the retention, computed over the catalog
/// as it will be after the pass, would not keep: writing them would leave
/// files that only the next pass deletes, and that may hang after a file
/// this pass deletes (a first pass over a backlog older than the retention
/// wrote a ladder file starting after an L0 snapshot it deleted). The
/// remaining outputs take their inputs again from the listing and the
/// outputs kept, so none reads a dropped one. Repeats until every output is
/// kept; a round whose inputs cannot be re-covered (not expected: a dropped
/// output's inputs cover what it covered) is undone with a warning. Returns
/// which files of the catalog as it will be after the pass the retention
/// keeps (by position in `virt`), and adds its warnings to the plan's.
///
/// In ladder shape, a level's outputs chain from its listed files, which
/// stay until the deletions: an output before a kept one of the same level
/// is written too (it bridges the listed files and the kept output, so
/// that the level is one chain at every point of the pass, and a reader
/// following the chain finds every file), and the next pass deletes it if
/// the retention does not need it. This happens only when a level's listed
/// files all go in the pass that extends it (after an idle spell longer
/// than the retention).
fn prune_unretained<'c>(
    catalog: &'c [LtxObject],
    plan: &mut PassPlan,
    virt: &mut Vec<Cow<'c, LtxObject>>,
    cfg: &Config,
    now_ms: i64,
) -> Vec<bool> {
    let n = catalog.len();
    loop {
        let refs: Vec<&LtxObject> = virt.iter().map(|c| c.as_ref()).collect();
        let mut warnings = Vec::new();
        let mut keep = kept_by_shape(&refs, cfg, now_ms, &mut warnings);
        if cfg.shape == Shape::Ladder {
            for level in (1..SNAPSHOT_LEVEL).filter(|&l| catalog.iter().any(|f| f.level == l)) {
                let outs: Vec<usize> = (0..plan.compactions.len())
                    .filter(|&j| plan.compactions[j].output_level == level)
                    .collect();
                if let Some(last) = outs.iter().rposition(|&j| keep[n + j]) {
                    for &j in &outs[..last] {
                        keep[n + j] = true;
                    }
                }
            }
        }
        if keep[n..].iter().all(|&k| k) {
            plan.warnings.extend(warnings);
            return keep;
        }
        let mut kept: Vec<Compaction> = Vec::new();
        let mut outputs: Vec<LtxObject> = Vec::new();
        for (c, &k) in plan.compactions.iter().zip(&keep[n..]) {
            if !k {
                continue;
            }
            let avail = catalog.iter().chain(outputs.iter());
            let inputs = cover(avail, c.min_txid.0, c.max_txid.0);
            let single_ok = |i: &LtxObject| match cfg.shape {
                Shape::Cumulative => i.level == 0,
                Shape::Ladder => ladder::promotes_base(c.output_level, i),
            };
            let Some(inputs) = inputs.filter(|i| i.len() > 1 || single_ok(&i[0])) else {
                plan.warnings.push(format!(
                    "cannot re-plan the inputs of {} without the outputs the retention drops: all written",
                    c.output_key
                ));
                plan.warnings.extend(warnings);
                return keep;
            };
            let kind = if inputs.len() == 1 {
                CompactionKind::Copy
            } else {
                CompactionKind::Merge
            };
            let c = Compaction {
                kind,
                inputs,
                ..c.clone()
            };
            let size = if kind == CompactionKind::Copy {
                c.inputs[0].size
            } else {
                0
            };
            outputs.push(c.output_object(size, now_ms));
            kept.push(c);
        }
        virt.truncate(n);
        virt.extend(outputs.into_iter().map(Cow::Owned));
        plan.compactions = kept;
    }
}

/// Which files a pass keeps (by position in `files`): [`retained`], or
/// [`ladder_retained`] in ladder shape.
fn kept_by_shape(
    files: &[&LtxObject],
    cfg: &Config,
    now_ms: i64,
    warnings: &mut Vec<String>,
) -> Vec<bool> {
    match cfg.shape {
        Shape::Cumulative => retained(files, cfg, now_ms, warnings),
        Shape::Ladder => ladder_retained(files, cfg, now_ms, warnings),
    }
}

/// The latest reproducible TXID held by a compacted file (level ≥ 1 or a
/// full image) and its time; and the set of such TXIDs.
fn compacted_frontier<'a>(
    files: impl Iterator<Item = &'a LtxObject>,
    idx: &RestoreIndex,
) -> (Option<(u64, i64)>, Vec<u64>) {
    let mut compacted: Vec<u64> = files
        .filter(|f| f.level >= 1 || f.is_base())
        .map(|f| f.max_txid.0)
        .collect();
    compacted.sort_unstable();
    compacted.dedup();
    let frontier = compacted
        .iter()
        .rev()
        .find(|&&t| idx.reachable(TxId(t)))
        .and_then(|&t| idx.reachable_ends_from(TxId(t)).next())
        .map(|(t, time, _)| (t.0, time));
    (frontier, compacted)
}

/// Which files must be kept (by position in `files`): every file on the
/// fewest-files path of a retained target, every file not compacted yet, and
/// unreachable files that do not end before the retention window's first
/// target.
pub fn retained(
    files: &[&LtxObject],
    cfg: &Config,
    now_ms: i64,
    warnings: &mut Vec<String>,
) -> Vec<bool> {
    let idx = RestoreIndex::from_start(files.iter().copied(), 1);
    let (frontier, compacted) = compacted_frontier(files.iter().copied(), &idx);
    let frontier = frontier.map_or(0, |f| f.0);
    let cutoff = now_ms - cfg.retention;
    let l0_cutoff = now_ms - cfg.l0_retention;
    // The latest compacted TXID at or before the cutoff: the oldest target.
    let anchor = idx
        .reachable_ends()
        .filter(|&(_, time, _)| time <= cutoff)
        .filter(|(t, _, _)| compacted.binary_search(&t.0).is_ok())
        .last()
        .map(|(t, _, _)| t.0)
        .or_else(|| idx.resolve_time(cutoff).map(|t| t.0))
        .unwrap_or(0);
    let mut l0_recent: Vec<u64> = files
        .iter()
        .filter(|f| f.level == 0 && f.created_ms >= l0_cutoff)
        .map(|f| f.max_txid.0)
        .collect();
    l0_recent.sort_unstable();
    let mut keep = vec![false; files.len()];
    for (t, _, _) in idx.reachable_ends() {
        // Ends after the anchor are exactly those later than the cutoff.
        let target = t.0 == anchor
            || t.0 > frontier
            || (t.0 > anchor
                && (compacted.binary_search(&t.0).is_ok()
                    || l0_recent.binary_search(&t.0).is_ok()));
        if target {
            idx.walk_path(t, |i| !std::mem::replace(&mut keep[i], true));
        }
    }
    let on_path = keep.clone();
    // A compacted file already inside a kept coarser file's range is a
    // leftover (e.g. of a pass killed mid-deletion): not worth keeping.
    let covered = |f: &LtxObject| {
        f.max_txid.0 <= frontier
            && files.iter().zip(&on_path).any(|(g, &k)| {
                k && g.level > f.level && g.min_txid <= f.min_txid && g.max_txid >= f.max_txid
            })
    };
    let mut unreachable = 0;
    for (i, f) in files.iter().enumerate() {
        let reachable = idx.reachable(f.max_txid);
        if (!reachable || f.max_txid.0 > frontier)
            && f.max_txid.0 >= anchor
            && !keep[i]
            && (reachable || !covered(f))
        {
            unreachable += usize::from(!reachable);
            keep[i] = true;
        }
    }
    if unreachable > 0 {
        warnings.push(format!(
            "{unreachable} files are not reachable from any snapshot: kept"
        ));
    }
    // Litestream (0.5.17) takes its replica position from the highest L0
    // TXID in the bucket: with no L0 file left, a restarted `litestream
    // replicate` cannot resume (it looks for L0 file 1) or ships its whole
    // local history again. The newest L0 file always stays.
    if let Some((i, _)) = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.level == 0)
        .max_by_key(|(_, f)| (f.max_txid, std::cmp::Reverse(f.min_txid)))
    {
        keep[i] = true;
    }
    keep
}

/// Checks that every level is contiguous: consecutive files of a level (by
/// max TXID) chain (`next.min <= cur.max + 1`, `next.max > cur.max`), and
/// where they do not, or before a level's first file, the next file starts
/// right after a file of a coarser level or a snapshot (the ladder bridges
/// the gap: cumulative windows restart at their parent's end), or right
/// after a TXID some chain of files reproduces (a gap is a TXID no
/// combination of files can reach). A file whose
/// whole range lies inside a file of a coarser level (or a snapshot) is
/// redundant, never a hole: e.g. the newest L0 file, kept for Litestream,
/// after it was compacted. Returns the problems found.
pub fn check_contiguity(catalog: &[LtxObject]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut coarse = CoarserCover::default();
    // TXIDs some chain of files reproduces from an empty database.
    let idx = RestoreIndex::new(catalog);
    // The coarsest level ending at each TXID (a full image counts as a snapshot).
    let mut coarsest: std::collections::HashMap<u64, u8> = std::collections::HashMap::new();
    for g in catalog {
        let l = if g.is_base() { SNAPSHOT_LEVEL } else { g.level };
        let e = coarsest.entry(g.max_txid.0).or_insert(l);
        *e = (*e).max(l);
    }
    for level in 0..=SNAPSHOT_LEVEL {
        let mut files: Vec<&LtxObject> = catalog.iter().filter(|f| f.level == level).collect();
        files.sort_by_key(|f| (f.max_txid, f.min_txid));
        let bridged = |f: &LtxObject| {
            f.is_base()
                || coarsest
                    .get(&(f.min_txid.0 - 1))
                    .is_some_and(|&l| l > level)
        };
        for (i, f) in files.iter().enumerate() {
            let chained = i > 0 && {
                let p = files[i - 1];
                f.min_txid.0 <= p.max_txid.0.saturating_add(1) && f.max_txid > p.max_txid
            };
            // Applies on a reproducible state through a finer file (e.g.
            // the path to a target runs through an L0 file): no hole.
            let follows = f.min_txid.0 > 1 && idx.reachable(TxId(f.min_txid.0 - 1));
            if !chained && !bridged(f) && !follows && !coarse.covers(catalog, f) {
                problems.push(format!(
                    "level {level}: {} does not follow its level or a coarser file",
                    f.key
                ));
            }
        }
    }
    problems
}

/// Answers "does a file of a coarser level (or a snapshot) contain this
/// range?" in O(log n) per question, built once per level asked about.
#[derive(Default)]
struct CoarserCover {
    level: Option<u8>,
    /// Coarser files as (min, running max of max), sorted by min.
    runs: Vec<(u64, u64)>,
}

impl CoarserCover {
    fn covers(&mut self, catalog: &[LtxObject], f: &LtxObject) -> bool {
        if self.level != Some(f.level) {
            let mut v: Vec<(u64, u64)> = catalog
                .iter()
                .filter(|g| g.level > f.level || (g.is_base() && g.level != f.level))
                .map(|g| (g.min_txid.0, g.max_txid.0))
                .collect();
            v.sort_unstable();
            let mut run = 0;
            for e in &mut v {
                run = run.max(e.1);
                e.1 = run;
            }
            self.runs = v;
            self.level = Some(f.level);
        }
        let n = self.runs.partition_point(|&(min, _)| min <= f.min_txid.0);
        n > 0 && self.runs[n - 1].1 >= f.max_txid.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::catalog::test_object as f;

    #[test]
    fn contiguity_check() {
        // Cumulative windows: L1 restarts after the L2 file; bridged.
        let ok = vec![
            f(9, 1, 10),
            f(2, 11, 20),
            f(1, 11, 15),
            f(1, 21, 25),
            f(0, 26, 26),
        ];
        assert!(
            check_contiguity(&ok).is_empty(),
            "{:?}",
            check_contiguity(&ok)
        );
        // A hole not bridged by a coarser level.
        let bad = vec![f(9, 1, 10), f(1, 11, 15), f(1, 17, 20)];
        assert_eq!(check_contiguity(&bad).len(), 1);
        // After a finer level's file: restorable (9, then 1, then 2), so
        // no hole; but with that file gone, a hole.
        let ok = vec![f(9, 1, 10), f(1, 11, 15), f(2, 16, 20)];
        assert!(
            check_contiguity(&ok).is_empty(),
            "{:?}",
            check_contiguity(&ok)
        );
        let bad = vec![f(9, 1, 10), f(2, 16, 20)];
        assert_eq!(check_contiguity(&bad).len(), 1);
        // Inside a coarser file: redundant, not a hole (the newest L0 file
        // kept after compaction), wherever it starts.
        let ok = vec![f(9, 1, 10), f(2, 11, 20), f(0, 20, 20), f(1, 14, 16)];
        assert!(
            check_contiguity(&ok).is_empty(),
            "{:?}",
            check_contiguity(&ok)
        );
        // Only partly inside: still a hole.
        let bad = vec![f(9, 1, 10), f(2, 11, 20), f(0, 19, 21)];
        assert_eq!(check_contiguity(&bad).len(), 1);
        // Following a reproducible state through a finer file: a bucket
        // seen after a real pass beside Litestream (the L3 file ending at 14
        // that the L2 window started after was not worth writing: the
        // restore path to 17 runs through the L0 file 14).
        let ok = vec![
            f(0, 1, 1),
            f(0, 14, 14),
            f(0, 18, 18),
            f(1, 1, 2),
            f(1, 15, 16),
            f(2, 3, 5),
            f(2, 9, 11),
            f(2, 15, 17),
            f(3, 3, 8),
            f(9, 1, 13),
        ];
        assert!(
            check_contiguity(&ok).is_empty(),
            "{:?}",
            check_contiguity(&ok)
        );
        // Without the L0 file 14, 15-17 hangs: a hole (15-16 of level 1
        // lies inside it: redundant).
        let bad: Vec<LtxObject> = ok.iter().filter(|o| o.max_txid.0 != 14).cloned().collect();
        let p = check_contiguity(&bad);
        assert!(
            p.len() == 1 && p[0].contains("000000000000000f-0000000000000011"),
            "{p:?}"
        );
    }

    #[test]
    fn durations() {
        use duration_serde::{format, parse};
        for (s, ms) in [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("7ms", 7),
        ] {
            assert_eq!(parse(s), Some(ms));
            assert_eq!(format(ms), s);
        }
        for bad in ["", "s", "5", "5x", "-5s", "1.5h"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn default_ladder() {
        let c = Config::default();
        c.validate().unwrap();
        assert_eq!(c.worst_case_files(), 9);
        assert!(Config::litestream_intervals().validate().is_ok());
        // Outputs go to the coarsest level whose interval divides the slot end.
        let day = 86_400_000 * 20_000;
        assert_eq!(c.level_of(day), SNAPSHOT_LEVEL);
        assert_eq!(c.level_of(day + 30_000), 1);
        assert_eq!(c.level_of(day + 60_000), 2);
        assert_eq!(c.level_of(day + 6 * 3_600_000), 8);
        assert_eq!(c.level_of(day + 72 * 60_000), 7);
    }
}
