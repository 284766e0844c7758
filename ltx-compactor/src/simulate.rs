//! A deterministic simulator: synthetic L0 traffic, a simulated clock, the
//! real policy ([`plan_pass`]) in either shape or a model of Litestream's
//! ladder, and restore-plan sizes measured with the real planner
//! ([`RestoreIndex`]).
//!
//! Files are not encoded: each object carries the set of pages it holds
//! (sorted `Vec<u32>`, or "every page up to commit" for snapshots), and its
//! size is `pages × page_size × compression + overhead`. A merge's page set
//! is the union of its inputs'.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// FxHash: a fast non-cryptographic hasher for the simulator's maps.
#[derive(Default, Clone, Copy)]
struct Fx(u64);
impl Hasher for Fx {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(w))
                .wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}
type FxBuild = BuildHasherDefault<Fx>;

use ltx_core::TxId;
use serde::Serialize;

use crate::catalog::{format_key, Layout, LtxObject, SNAPSHOT_LEVEL};
use crate::policy::{check_ladder, plan_pass, CompactionKind, Config, Shape};
use crate::restore::RestoreIndex;

/// Synthetic traffic shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// An autoincrement table with an index on a monotonic column: the hot
    /// right-most table leaf and index leaf every transaction, their parents
    /// and page 1 when they split, and one random page (an update of an old
    /// row) in a quarter of the transactions: about 10% random pages.
    Default,
    /// Three uniformly random pages per transaction; fixed database size.
    Random,
}

/// Which ladder to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ladder {
    /// This crate's policy ([`plan_pass`]) with the given [`Config`]
    /// (cumulative by default).
    Ours,
    /// This crate's policy in [`Shape::Ladder`], with the ladder
    /// configuration ([`Config::litestream_ladder`] by default).
    OursLadder,
    /// Litestream v0.5's default ladder (model).
    Litestream,
}

impl Ladder {
    /// The name used in reports.
    pub fn label(self) -> &'static str {
        match self {
            Ladder::Ours => "ours",
            Ladder::OursLadder => "ours-ladder",
            Ladder::Litestream => "litestream",
        }
    }
}

/// Simulation parameters.
#[derive(Debug, Clone, Serialize)]
pub struct SimParams {
    /// Simulated days.
    pub days: f64,
    /// L0 files (transactions) per second.
    pub rate: f64,
    /// Traffic shape.
    pub workload: Workload,
    /// Database size at the start, in pages.
    pub db_pages: u32,
    /// Page size in bytes.
    pub page_size: u32,
    /// Compressed size of a page relative to its size.
    pub compression: f64,
    /// Seed of the (deterministic) random generator.
    pub seed: u64,
    /// Restore targets drawn at random per measurement (for the mean).
    pub samples: usize,
    /// Hours between measurements.
    pub measure_every_hours: f64,
}

impl Default for SimParams {
    fn default() -> SimParams {
        SimParams {
            days: 7.0,
            rate: 1.0,
            workload: Workload::Default,
            db_pages: 25_000,
            page_size: 4096,
            compression: 0.5,
            seed: 1,
            samples: 500,
            measure_every_hours: 6.0,
        }
    }
}

/// The simulation's generator: the workspace's SplitMix64
/// ([`ltx_core::rng`]; `below` by multiply-shift, `unit` of 53 bits).
pub type Rng = ltx_core::rng::SplitMix64;

/// The pages an object holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageSet {
    /// Every page `1..=n` (a snapshot).
    All(u32),
    /// These pages, sorted and distinct.
    Pages(Vec<u32>),
}

impl PageSet {
    /// Number of pages.
    pub fn len(&self) -> usize {
        match self {
            PageSet::All(n) => *n as usize,
            PageSet::Pages(v) => v.len(),
        }
    }
    /// Whether it holds no page.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Union of sets in TXID order, truncated to `commit` pages.
    pub fn union(sets: &[&PageSet], commit: u32) -> PageSet {
        if sets.iter().any(|s| matches!(s, PageSet::All(_))) {
            return PageSet::All(commit);
        }
        let mut out: Vec<u32> = Vec::new();
        for s in sets {
            if let PageSet::Pages(v) = s {
                if out.is_empty() {
                    out.extend_from_slice(v);
                } else if v.len() * 8 < out.len() {
                    for &p in v {
                        if let Err(i) = out.binary_search(&p) {
                            out.insert(i, p);
                        }
                    }
                } else {
                    out = merge_sorted(&out, v);
                }
            }
        }
        out.retain(|&p| p <= commit);
        PageSet::Pages(out)
    }
}

fn merge_sorted(a: &[u32], b: &[u32]) -> Vec<u32> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Generates transactions.
struct Traffic {
    kind: Workload,
    rng: Rng,
    db_pages: u32,
    leaf: u32,
    leaf_rows: u32,
    idx_leaf: u32,
    idx_rows: u32,
    interior: u32,
    interior_kids: u32,
}

impl Traffic {
    fn new(kind: Workload, db_pages: u32, seed: u64) -> Traffic {
        Traffic {
            kind,
            rng: Rng::new(seed),
            db_pages,
            leaf: db_pages - 1,
            leaf_rows: 0,
            idx_leaf: db_pages,
            idx_rows: 0,
            interior: db_pages - 2,
            interior_kids: 0,
        }
    }
    fn grow(&mut self) -> u32 {
        self.db_pages += 1;
        self.db_pages
    }
    /// Pages of the next transaction and the database size after it.
    fn next(&mut self) -> (Vec<u32>, u32) {
        let mut p = Vec::with_capacity(6);
        match self.kind {
            Workload::Random => {
                for _ in 0..3 {
                    p.push(2 + self.rng.below(self.db_pages as u64 - 1) as u32);
                }
            }
            Workload::Default => {
                // ~40 rows of ~100 bytes per 4 KiB table leaf, ~150 index entries per leaf.
                self.leaf_rows += 1;
                if self.leaf_rows > 40 {
                    self.leaf_rows = 1;
                    self.leaf = self.grow();
                    p.push(1);
                    p.push(self.interior);
                    self.interior_kids += 1;
                    if self.interior_kids > 300 {
                        self.interior_kids = 0;
                        self.interior = self.grow();
                        p.push(3);
                    }
                }
                p.push(self.leaf);
                self.idx_rows += 1;
                if self.idx_rows > 150 {
                    self.idx_rows = 1;
                    self.idx_leaf = self.grow();
                    p.push(1);
                    p.push(4);
                }
                p.push(self.idx_leaf);
                if self.rng.below(4) == 0 {
                    p.push(2 + self.rng.below(self.db_pages as u64 - 1) as u32);
                }
            }
        }
        p.sort_unstable();
        p.dedup();
        (p, self.db_pages)
    }
}

/// Figures for one ladder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LadderReport {
    /// Which ladder.
    pub ladder: String,
    /// Largest restore plan (files) over every slot end and sampled target
    /// of every measurement (targets older than the last compaction pass).
    pub max_restore_files: u32,
    /// Like `max_restore_files`, over targets that land on a compacted TXID
    /// (end of a level >= 1 file), i.e. leaving out the L0 files that a
    /// ladder keeps after compaction (Litestream: 5 min of L0).
    pub max_restore_files_compacted: u32,
    /// Mean restore plan size over the random targets.
    pub mean_restore_files: f64,
    /// Mean bytes read by a restore (random targets).
    pub mean_restore_bytes: f64,
    /// Bytes stored at the end.
    pub bytes_stored: u64,
    /// Mean of bytes stored over the measurements.
    pub mean_bytes_stored: f64,
    /// Bytes uploaded by compactions (merges; L0 uploads excluded).
    pub bytes_written: u64,
    /// Bytes copied server-side (single-input promotions).
    pub bytes_copied: u64,
    /// Objects stored at the end.
    pub files_stored: usize,
    /// Compactions run (merges + copies): objects written.
    pub compactions: u64,
    /// Of which server-side copies.
    pub copies: u64,
    /// Objects deleted.
    pub deletions: u64,
    /// Objects written (compactions) per simulated day.
    pub objects_written_per_day: f64,
    /// Objects deleted per simulated day.
    pub deletions_per_day: f64,
    /// Bytes stored per level at the end (index = level).
    pub bytes_per_level: Vec<u64>,
    /// Files stored per level at the end.
    pub files_per_level: Vec<usize>,
    /// Restore plan size by target age at the last measurement:
    /// (age in minutes, files), one point per slot end.
    #[serde(skip)]
    pub profile: Vec<(f64, u32)>,
    /// Invariant violations seen (should be empty).
    pub problems: Vec<String>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Parameters.
    pub params: SimParams,
    /// Our configuration.
    pub config: Config,
    /// Our configuration in ladder shape (for [`Ladder::OursLadder`]).
    pub ladder_config: Config,
    /// L0 files generated.
    pub l0_files: u64,
    /// L0 bytes uploaded (same for every ladder).
    pub l0_bytes: u64,
    /// Our ladder.
    pub ours: Option<LadderReport>,
    /// Our policy in ladder shape.
    pub ours_ladder: Option<LadderReport>,
    /// Litestream's ladder.
    pub litestream: Option<LadderReport>,
    /// ours.bytes_stored / litestream.bytes_stored, when both ran.
    pub bytes_stored_ratio: Option<f64>,
    /// ours.mean_bytes_stored / litestream.mean_bytes_stored.
    pub mean_bytes_stored_ratio: Option<f64>,
    /// ours_ladder.bytes_stored / litestream.bytes_stored, when both ran.
    pub ladder_bytes_stored_ratio: Option<f64>,
    /// ours_ladder.mean_bytes_stored / litestream.mean_bytes_stored.
    pub ladder_mean_bytes_stored_ratio: Option<f64>,
}

impl SimReport {
    /// The reports of the ladders that ran, in the order ours, ours in
    /// ladder shape, Litestream.
    pub fn ladders(&self) -> impl Iterator<Item = &LadderReport> {
        [&self.ours, &self.ours_ladder, &self.litestream]
            .into_iter()
            .flatten()
    }
}

/// Objects with their page sets.
struct Store {
    cat: Vec<LtxObject>,
    sets: HashMap<String, (PageSet, u32), FxBuild>,
    report: LadderReport,
}

impl Store {
    fn add(&mut self, o: LtxObject, set: PageSet, commit: u32) {
        self.sets.insert(o.key.clone(), (set, commit));
        self.cat.push(o);
    }
    fn delete<'a>(&mut self, dels: impl IntoIterator<Item = &'a LtxObject>) {
        // Objects are unique by (level, min, max) here: cheaper than keys.
        let mut ids: HashSet<(u8, u64, u64), FxBuild> = HashSet::default();
        for o in dels {
            ids.insert((o.level, o.min_txid.0, o.max_txid.0));
            self.sets.remove(&o.key);
        }
        if !ids.is_empty() {
            self.cat
                .retain(|o| !ids.contains(&(o.level, o.min_txid.0, o.max_txid.0)));
        }
    }
    fn bytes(&self) -> u64 {
        self.cat.iter().map(|o| o.size).sum()
    }
}

const SIM_START: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
const SLOT: i64 = 30_000;
const DB: &str = "db";

struct Sizer {
    page_size: f64,
    compression: f64,
}
impl Sizer {
    fn size(&self, pages: usize) -> u64 {
        // Header + trailer + end marker + index (~6 B/page) + frames (6 B header + 4 B size + data).
        (140.0 + pages as f64 * (16.0 + self.page_size * self.compression)) as u64
    }
}

/// Runs the simulation, [`Ladder::OursLadder`] with
/// [`Config::litestream_ladder`] at `cfg`'s retention.
pub fn run(params: &SimParams, cfg: &Config, ladders: &[Ladder]) -> SimReport {
    let ladder_cfg = Config {
        retention: cfg.retention,
        ..Config::litestream_ladder()
    };
    run_with(params, cfg, &ladder_cfg, ladders)
}

/// Runs the simulation: [`Ladder::Ours`] with `cfg`, [`Ladder::OursLadder`]
/// with `ladder_cfg` (its shape forced to [`Shape::Ladder`]).
pub fn run_with(
    params: &SimParams,
    cfg: &Config,
    ladder_cfg: &Config,
    ladders: &[Ladder],
) -> SimReport {
    let ladder_cfg = Config {
        shape: Shape::Ladder,
        ..ladder_cfg.clone()
    };
    let sizer = Sizer {
        page_size: params.page_size as f64,
        compression: params.compression,
    };
    let mut traffic = Traffic::new(params.workload, params.db_pages, params.seed);
    let mut target_rng = Rng::new(params.seed ^ 0x5EED);
    let end = SIM_START + (params.days * 86_400_000.0) as i64;
    let step = (1000.0 / params.rate).max(1.0);
    let mut stores: Vec<(Ladder, Store)> = ladders
        .iter()
        .map(|&l| {
            let mut s = Store {
                cat: Vec::new(),
                sets: HashMap::default(),
                report: LadderReport {
                    ladder: l.label().into(),
                    ..Default::default()
                },
            };
            // The bucket starts from a snapshot of the initial database.
            let o = LtxObject {
                level: SNAPSHOT_LEVEL,
                min_txid: TxId(1),
                max_txid: TxId(1),
                size: sizer.size(params.db_pages as usize),
                created_ms: SIM_START,
                timestamp_ms: Some(SIM_START),
                key: format_key(DB, Layout::LtxDir, SNAPSHOT_LEVEL, TxId(1), TxId(1)),
            };
            s.add(o, PageSet::All(params.db_pages), params.db_pages);
            (l, s)
        })
        .collect();
    let mut txid = 1u64;
    let mut next_tx = SIM_START as f64 + step;
    let (mut l0_files, mut l0_bytes) = (0u64, 0u64);
    let measure_every = (params.measure_every_hours * 3_600_000.0) as i64;
    let first_measure = SIM_START + cfg.retention.max(86_400_000) + measure_every;
    let mut next_measure = first_measure;
    let (mut sum_files, mut n_samples) = (vec![0u64; stores.len()], 0u64);
    let mut sum_bytes = vec![0f64; stores.len()];
    let mut sum_stored = vec![0f64; stores.len()];
    let mut n_measures = 0u64;
    let mut pass = SIM_START + SLOT;
    while pass <= end {
        let now = pass + 2000; // passes run 2 s after each slot ends
                               // Traffic up to now.
        while (next_tx as i64) <= now {
            let ts = next_tx as i64;
            txid += 1;
            let (pages, commit) = traffic.next();
            let o = LtxObject {
                level: 0,
                min_txid: TxId(txid),
                max_txid: TxId(txid),
                size: sizer.size(pages.len()),
                created_ms: ts,
                timestamp_ms: Some(ts),
                key: l0_key(txid),
            };
            l0_files += 1;
            l0_bytes += o.size;
            for (_, s) in stores.iter_mut() {
                s.add(o.clone(), PageSet::Pages(pages.clone()), commit);
            }
            next_tx += step;
        }
        for (ladder, s) in stores.iter_mut() {
            match ladder {
                Ladder::Ours => pass_ours(s, cfg, now, &sizer),
                Ladder::OursLadder => pass_ours(s, &ladder_cfg, now, &sizer),
                Ladder::Litestream => pass_litestream(s, pass, now, &sizer, cfg.retention),
            }
        }
        if now >= next_measure || pass + SLOT > end {
            if now >= next_measure {
                next_measure += measure_every;
            }
            n_measures += 1;
            // Targets: older than every ladder's last compaction pass.
            let frontier = stores
                .iter()
                .map(|(_, s)| compacted_frontier_time(&s.cat, &RestoreIndex::new(&s.cat)))
                .min()
                .unwrap_or(now);
            let lo = now - cfg.retention;
            let last = pass + SLOT > end;
            let randoms: Vec<i64> = (0..params.samples)
                .map(|_| lo + (target_rng.unit() * (frontier - lo) as f64) as i64)
                .collect();
            n_samples += randoms.len() as u64;
            for (i, (_, s)) in stores.iter_mut().enumerate() {
                sum_stored[i] += s.bytes() as f64;
                let idx = RestoreIndex::new(&s.cat);
                let mut compacted: Vec<u64> = s
                    .cat
                    .iter()
                    .filter(|o| o.level >= 1)
                    .map(|o| o.max_txid.0)
                    .collect();
                compacted.sort_unstable();
                let r = &mut s.report;
                for &t in &randoms {
                    let x = idx.resolve_time(t);
                    match x.and_then(|x| idx.cost(x)) {
                        Some((n, b)) => {
                            if x.is_some_and(|x| compacted.binary_search(&x.0).is_ok()) {
                                r.max_restore_files_compacted =
                                    r.max_restore_files_compacted.max(n);
                            }
                            sum_files[i] += n as u64;
                            sum_bytes[i] += b as f64;
                            r.max_restore_files = r.max_restore_files.max(n);
                        }
                        None => r.problems.push(format!("no restore for time {t} at {now}")),
                    }
                }
                // Every slot end (and just before it) in the window: the worst case.
                let mut profile = Vec::new();
                let mut t = lo.div_euclid(SLOT) * SLOT + SLOT;
                while t <= frontier {
                    for probe in [t - 1, t] {
                        let x = idx.resolve_time(probe);
                        if let Some((n, _)) = x.and_then(|x| idx.cost(x)) {
                            r.max_restore_files = r.max_restore_files.max(n);
                            if x.is_some_and(|x| compacted.binary_search(&x.0).is_ok()) {
                                r.max_restore_files_compacted =
                                    r.max_restore_files_compacted.max(n);
                            }
                            if last && probe == t {
                                profile.push(((now - t) as f64 / 60_000.0, n));
                            }
                        }
                    }
                    t += SLOT;
                }
                if last {
                    r.profile = profile;
                }
            }
        }
        pass += SLOT;
    }
    for (i, (_, s)) in stores.iter_mut().enumerate() {
        let r = &mut s.report;
        r.mean_restore_files = sum_files[i] as f64 / n_samples.max(1) as f64;
        r.mean_restore_bytes = sum_bytes[i] / n_samples.max(1) as f64;
        r.mean_bytes_stored = sum_stored[i] / n_measures.max(1) as f64;
        r.bytes_stored = s.cat.iter().map(|o| o.size).sum();
        r.files_stored = s.cat.len();
        r.bytes_per_level = (0..=SNAPSHOT_LEVEL)
            .map(|l| s.cat.iter().filter(|o| o.level == l).map(|o| o.size).sum())
            .collect();
        r.files_per_level = (0..=SNAPSHOT_LEVEL)
            .map(|l| s.cat.iter().filter(|o| o.level == l).count())
            .collect();
        r.objects_written_per_day = r.compactions as f64 / params.days;
        r.deletions_per_day = r.deletions as f64 / params.days;
        r.problems.truncate(20);
    }
    let (mut ours, mut ours_ladder, mut ls) = (None, None, None);
    for (l, s) in stores {
        match l {
            Ladder::Ours => ours = Some(s.report),
            Ladder::OursLadder => ours_ladder = Some(s.report),
            Ladder::Litestream => ls = Some(s.report),
        }
    }
    let ratio = |a: &Option<LadderReport>, f: fn(&LadderReport) -> f64| match (a, &ls) {
        (Some(a), Some(b)) => Some(f(a) / f(b)),
        _ => None,
    };
    SimReport {
        params: params.clone(),
        config: cfg.clone(),
        ladder_config: ladder_cfg,
        l0_files,
        l0_bytes,
        bytes_stored_ratio: ratio(&ours, |r| r.bytes_stored as f64),
        mean_bytes_stored_ratio: ratio(&ours, |r| r.mean_bytes_stored),
        ladder_bytes_stored_ratio: ratio(&ours_ladder, |r| r.bytes_stored as f64),
        ladder_mean_bytes_stored_ratio: ratio(&ours_ladder, |r| r.mean_bytes_stored),
        ours,
        ours_ladder,
        litestream: ls,
    }
}

/// `format_key(DB, LtxDir, 0, t, t)`, without the formatter (hot path).
fn l0_key(t: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut k = String::with_capacity(48);
    k.push_str(DB);
    k.push_str("/ltx/0/");
    for _ in 0..2 {
        for i in (0..16).rev() {
            k.push(HEX[((t >> (i * 4)) & 15) as usize] as char);
        }
        k.push('-');
    }
    k.pop();
    k.push_str(".ltx");
    k
}

/// Time of the latest TXID held by a compacted file (level ≥ 1 or a full image).
fn compacted_frontier_time(cat: &[LtxObject], idx: &RestoreIndex) -> i64 {
    let mut best: Option<(TxId, i64)> = None;
    for o in cat {
        if (o.level >= 1 || o.is_base())
            && idx.reachable(o.max_txid)
            && best.is_none_or(|b| o.max_txid > b.0)
        {
            best = Some((o.max_txid, o.time_ms()));
        }
    }
    best.map_or(i64::MIN, |b| b.1)
}

fn pass_ours(s: &mut Store, cfg: &Config, now: i64, sizer: &Sizer) {
    let plan = plan_pass(&s.cat, cfg, now);
    for p in &plan.warnings {
        if s.report.problems.len() < 20 {
            s.report.problems.push(p.clone());
        }
    }
    for c in &plan.compactions {
        let sets: Vec<&PageSet> = c.inputs.iter().map(|i| &s.sets[&i.key].0).collect();
        let commit = s.sets[&c.inputs.last().expect("inputs").key].1;
        let set = PageSet::union(&sets, commit);
        let size = sizer.size(set.len());
        match c.kind {
            CompactionKind::Merge => s.report.bytes_written += size,
            CompactionKind::Copy => {
                s.report.bytes_copied += size;
                s.report.copies += 1;
            }
        }
        s.report.compactions += 1;
        let o = c.output_object(size, now);
        s.add(o, set, commit);
    }
    s.report.deletions += plan.deletions.len() as u64;
    s.delete(&plan.deletions);
    if cfg.shape == Shape::Ladder {
        for p in check_ladder(&s.cat) {
            if s.report.problems.len() < 20 {
                s.report.problems.push(format!("at {now}: {p}"));
            }
        }
    }
}

/// Litestream v0.5's default ladder: at each pass, L1 compacts the L0 files
/// after it (every 30 s); every 5 min L2 compacts the L1 files after it;
/// every hour L3 compacts L2; every 24 h a snapshot of the database. L0
/// files go 5 min after they are compacted into L1; snapshots older than the
/// retention go (the newest of them stays, so the whole window stays
/// restorable), and with them every L1..L3 file before the oldest snapshot.
fn pass_litestream(s: &mut Store, boundary: i64, now: i64, sizer: &Sizer, retention: i64) {
    let max_at = |s: &Store, level: u8| -> u64 {
        s.cat
            .iter()
            .filter(|o| o.level == level)
            .map(|o| o.max_txid.0)
            .max()
            .unwrap_or(1)
    };
    let compact = |s: &mut Store, from: u8, to: u8| {
        let after = max_at(s, to);
        let mut inputs: Vec<LtxObject> = s
            .cat
            .iter()
            .filter(|o| o.level == from && o.min_txid.0 > after)
            .cloned()
            .collect();
        inputs.sort_by_key(|o| o.min_txid);
        if inputs.is_empty() {
            return;
        }
        let sets: Vec<&PageSet> = inputs.iter().map(|i| &s.sets[&i.key].0).collect();
        let commit = s.sets[&inputs.last().expect("inputs").key].1;
        let set = PageSet::union(&sets, commit);
        let size = sizer.size(set.len());
        s.report.bytes_written += size;
        s.report.compactions += 1;
        let (a, b) = (inputs[0].min_txid, inputs.last().expect("inputs").max_txid);
        let o = LtxObject {
            level: to,
            min_txid: a,
            max_txid: b,
            size,
            created_ms: now,
            timestamp_ms: inputs.last().and_then(|i| i.timestamp_ms),
            key: format_key(DB, Layout::LtxDir, to, a, b),
        };
        s.add(o, set, commit);
    };
    compact(s, 0, 1);
    if boundary % 300_000 == 0 {
        compact(s, 1, 2);
    }
    if boundary % 3_600_000 == 0 {
        compact(s, 2, 3);
    }
    if boundary % 86_400_000 == 0 {
        let last = s
            .cat
            .iter()
            .filter(|o| o.level == 0)
            .max_by_key(|o| o.max_txid)
            .cloned();
        if let Some(l) = last {
            let commit = s.sets[&l.key].1;
            let size = sizer.size(commit as usize);
            s.report.bytes_written += size;
            s.report.compactions += 1;
            let o = LtxObject {
                level: SNAPSHOT_LEVEL,
                min_txid: TxId(1),
                max_txid: l.max_txid,
                size,
                created_ms: now,
                timestamp_ms: l.timestamp_ms,
                key: format_key(DB, Layout::LtxDir, SNAPSHOT_LEVEL, TxId(1), l.max_txid),
            };
            s.add(o, PageSet::All(commit), commit);
        }
    }
    // Retention.
    let l1_max = max_at(s, 1);
    let mut snaps: Vec<&LtxObject> = s.cat.iter().filter(|o| o.level == SNAPSHOT_LEVEL).collect();
    snaps.sort_by_key(|o| o.max_txid);
    let cutoff = now - retention;
    let keep_from = snaps
        .iter()
        .rposition(|o| o.time_ms() <= cutoff)
        .unwrap_or(0);
    let oldest = snaps[keep_from].max_txid.0;
    let mut del: Vec<LtxObject> = Vec::new();
    for o in &s.cat {
        let gone = match o.level {
            SNAPSHOT_LEVEL => o.max_txid.0 < oldest,
            0 => o.max_txid.0 <= l1_max && o.created_ms < now - 300_000,
            _ => o.max_txid.0 <= oldest,
        };
        if gone {
            del.push(o.clone());
        }
    }
    s.report.deletions += del.len() as u64;
    s.delete(&del);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_l0_key_matches_format_key() {
        for t in [1u64, 0xabc, u64::MAX] {
            assert_eq!(
                l0_key(t),
                format_key(DB, Layout::LtxDir, 0, TxId(t), TxId(t))
            );
        }
    }

    #[test]
    fn unions() {
        let a = PageSet::Pages(vec![1, 5, 9]);
        let b = PageSet::Pages(vec![2, 5, 12]);
        assert_eq!(
            PageSet::union(&[&a, &b], 10),
            PageSet::Pages(vec![1, 2, 5, 9])
        );
        assert_eq!(
            PageSet::union(&[&PageSet::All(4), &b], 20),
            PageSet::All(20)
        );
        let big = PageSet::Pages((1..100).collect());
        let c = PageSet::Pages(vec![2, 150]);
        let u = PageSet::union(&[&big, &c], 200);
        assert_eq!(u.len(), 100);
        assert_eq!(u, PageSet::Pages((1..100).chain([150]).collect()));
    }

    #[test]
    fn short_simulation_meets_the_goal_and_is_deterministic() {
        let p = SimParams {
            days: 1.3,
            rate: 0.2,
            samples: 50,
            measure_every_hours: 3.0,
            db_pages: 2000,
            ..SimParams::default()
        };
        let cfg = Config {
            retention: 6 * 3_600_000,
            ..Config::default()
        };
        let all = [Ladder::Ours, Ladder::OursLadder, Ladder::Litestream];
        let a = run(&p, &cfg, &all);
        let o = a.ours.as_ref().unwrap();
        let ol = a.ours_ladder.as_ref().unwrap();
        let l = a.litestream.as_ref().unwrap();
        for r in a.ladders() {
            assert!(r.problems.is_empty(), "{}: {:?}", r.ladder, r.problems);
        }
        assert!(o.max_restore_files <= 9, "{}", o.max_restore_files);
        assert!(l.max_restore_files > 20, "{}", l.max_restore_files);
        // Ladder shape: Litestream's bound on compacted targets (46 with
        // its intervals), never a single-input copy up the ladder (the bucket
        // starts from a snapshot: no L0 image to promote).
        assert_eq!(a.ladder_config.shape, Shape::Ladder);
        assert!(
            ol.max_restore_files_compacted as usize <= a.ladder_config.worst_case_files(),
            "{}",
            ol.max_restore_files_compacted
        );
        assert!(ol.max_restore_files_compacted > 9);
        assert_eq!(ol.copies, 0);
        assert!(ol.files_per_level[1..=3].iter().all(|&n| n > 0));
        let b = run(&p, &cfg, &all);
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
    }
}
