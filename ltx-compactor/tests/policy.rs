//! The policy over simulated traffic: invariants after every pass.

use std::collections::HashSet;

use ltx_compactor::catalog::{format_key, parse_key, Layout, LtxObject, SNAPSHOT_LEVEL};
use ltx_compactor::policy::{
    check_contiguity, check_ladder, plan_pass, sort_deletions, CompactionKind, Config, PassPlan,
    Shape,
};
use ltx_compactor::restore::{RestoreIndex, Target};
use ltx_core::TxId;

const DAY: i64 = 86_400_000;
const T0: i64 = 1_767_225_600_000; // midnight UTC

struct Bucket {
    cat: Vec<LtxObject>,
    txid: u64,
    layout: Layout,
}

impl Bucket {
    fn new(layout: Layout, base_level: u8) -> Bucket {
        let mut b = Bucket {
            cat: Vec::new(),
            txid: 0,
            layout,
        };
        b.write(T0 + 1234, base_level);
        b
    }
    /// One transaction at `ts`, written as L0 (or `level` for the base).
    fn write(&mut self, ts: i64, level: u8) {
        self.txid += 1;
        let t = TxId(self.txid);
        self.cat.push(LtxObject {
            level,
            min_txid: if level == SNAPSHOT_LEVEL { TxId(1) } else { t },
            max_txid: t,
            size: 1 + self.txid % 7,
            created_ms: ts + 150,
            timestamp_ms: Some(ts),
            key: format_key(
                "tenant/db",
                self.layout,
                level,
                if level == SNAPSHOT_LEVEL { TxId(1) } else { t },
                t,
            ),
        });
    }
    fn apply(&mut self, plan: &PassPlan, now: i64) {
        for c in &plan.compactions {
            let size = c.inputs.iter().map(|i| i.size).sum();
            self.cat.push(c.output_object(size, now));
        }
        let del: HashSet<&str> = plan.deletions.iter().map(|d| d.key.as_str()).collect();
        self.cat.retain(|o| !del.contains(o.key.as_str()));
    }
}

/// Time of the latest compacted TXID (level >= 1 or a full image).
fn frontier(cat: &[LtxObject]) -> Option<(TxId, i64)> {
    cat.iter()
        .filter(|o| o.level >= 1 || o.is_base())
        .max_by_key(|o| o.max_txid)
        .map(|o| (o.max_txid, o.time_ms()))
}

fn check_plan(plan: &PassPlan, cat: &[LtxObject], cfg: &Config) {
    for c in &plan.compactions {
        // Snapshots never climb the ladder.
        if c.output_level < SNAPSHOT_LEVEL {
            assert!(c.min_txid.0 > 1, "ladder output from TXID 1: {c:?}");
            assert!(
                c.inputs.iter().all(|i| !i.is_base()),
                "full image as a ladder input: {c:?}"
            );
        } else {
            assert_eq!(c.min_txid, TxId(1));
        }
        // No single-input re-encode.
        if c.inputs.len() == 1 {
            assert_eq!(c.kind, CompactionKind::Copy);
            assert_eq!(c.inputs[0].level, 0, "only L0 files are promoted by copy");
            if cfg.shape == Shape::Ladder {
                // In ladder shape, only the L0 full image becomes a snapshot.
                assert!(
                    c.output_level == SNAPSHOT_LEVEL && c.inputs[0].is_base(),
                    "single-input copy up the ladder: {c:?}"
                );
            }
        } else {
            assert_eq!(c.kind, CompactionKind::Merge);
        }
        // Inputs contiguous and exactly covering the output.
        assert_eq!(c.inputs[0].min_txid, c.min_txid);
        assert_eq!(c.inputs.last().unwrap().max_txid, c.max_txid);
        for w in c.inputs.windows(2) {
            assert!(w[1].min_txid.0 <= w[0].max_txid.0 + 1 && w[1].max_txid > w[0].max_txid);
            assert!(w[1].min_txid >= c.min_txid);
        }
        // Keys in the database's layout.
        let k = parse_key(&c.output_key).unwrap();
        assert_eq!((k.db.as_str(), k.level), ("tenant/db", c.output_level));
        assert_eq!(
            Some(k.layout),
            cat.first()
                .and_then(|o| parse_key(&o.key))
                .map(|p| p.layout)
        );
        assert!(
            c.output_level == SNAPSHOT_LEVEL
                || cfg.levels.iter().any(|l| l.level == c.output_level)
        );
    }
    // No listed object planned for deletion is an input... only after outputs exist:
    // deletions are checked through restores after the pass.
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    if cfg.shape == Shape::Ladder {
        check_ladder_steps(plan, cat);
    }
}

/// Ladder shape at every intermediate state of a pass run in order: each
/// output of a level starts right after the level's last file (or the
/// level had none), and the deletions, run in [`sort_deletions`] order,
/// remove a prefix of each level's chain, oldest first.
fn check_ladder_steps(plan: &PassPlan, cat: &[LtxObject]) {
    let mut end = [None::<u64>; 10];
    for o in cat {
        let e = &mut end[o.level as usize];
        *e = (*e).max(Some(o.max_txid.0));
    }
    let mut after: Vec<LtxObject> = cat.to_vec();
    for c in &plan.compactions {
        if c.output_level < SNAPSHOT_LEVEL {
            if let Some(e) = end[c.output_level as usize] {
                assert_eq!(
                    c.min_txid.0,
                    e + 1,
                    "{} does not follow its level",
                    c.output_key
                );
            }
        }
        let e = &mut end[c.output_level as usize];
        *e = (*e).max(Some(c.max_txid.0));
        after.push(c.output_object(1, 0));
    }
    let mut dels: Vec<&LtxObject> = plan.deletions.iter().collect();
    sort_deletions(&mut dels, Shape::Ladder);
    for level in 0..SNAPSHOT_LEVEL {
        let mut files: Vec<&LtxObject> = after.iter().filter(|o| o.level == level).collect();
        files.sort_by_key(|o| (o.min_txid, o.max_txid));
        let gone: Vec<&LtxObject> = dels.iter().copied().filter(|o| o.level == level).collect();
        assert_eq!(
            gone,
            files[..gone.len()].to_vec(),
            "level {level}: the deletions are not the oldest files of the chain"
        );
    }
    let mut levels: Vec<u8> = dels.iter().map(|o| o.level).collect();
    levels.dedup();
    assert!(levels.windows(2).all(|w| w[0] < w[1]), "finer levels first");
}

/// Runs `hours` of traffic (one transaction every `gap_ms`), a pass every
/// 30 s, checking the invariants after every pass.
fn run(cfg: &Config, layout: Layout, base_level: u8, hours: i64, gap_ms: i64) -> Bucket {
    let mut b = Bucket::new(layout, base_level);
    let mut ts = T0 + 2000;
    let mut now = T0 + 30_000 + 1500;
    let mut worst = 0;
    let mut n_pass = 0;
    while now < T0 + hours * 3_600_000 {
        while ts <= now {
            b.write(ts, 0);
            ts += gap_ms;
        }
        let before = RestoreIndex::new(&b.cat);
        let before_frontier = frontier(&b.cat);
        // Compacted targets within retention before the pass.
        let cutoff = now - cfg.retention;
        let was: Vec<(TxId, i64)> = before
            .reachable_ends()
            .filter(|&(t, time, _)| {
                time > cutoff && b.cat.iter().any(|o| o.max_txid == t && o.level >= 1)
            })
            .map(|(t, time, _)| (t, time))
            .collect();
        let probes: Vec<i64> = (0..40)
            .map(|i| cutoff + (i * 7919 * 1000) % cfg.retention.max(1))
            .collect();
        let resolved_before: Vec<Option<TxId>> =
            probes.iter().map(|&p| before.resolve_time(p)).collect();
        drop(before);

        let plan = plan_pass(&b.cat, cfg, now);
        assert_eq!(
            plan,
            plan_pass(&b.cat, cfg, now),
            "plan_pass is deterministic"
        );
        check_plan(&plan, &b.cat, cfg);
        let newest_l0 = |cat: &[LtxObject]| {
            cat.iter()
                .filter(|o| o.level == 0)
                .map(|o| o.max_txid)
                .max()
        };
        let l0_before = newest_l0(&b.cat);
        b.apply(&plan, now);
        n_pass += 1;
        assert_eq!(
            newest_l0(&b.cat),
            l0_before,
            "pass {n_pass} deleted the newest L0 file"
        );

        let problems = check_contiguity(&b.cat);
        assert!(problems.is_empty(), "after pass {n_pass}: {problems:?}");
        if cfg.shape == Shape::Ladder {
            let problems = check_ladder(&b.cat);
            assert!(problems.is_empty(), "after pass {n_pass}: {problems:?}");
        }
        let after = RestoreIndex::new(&b.cat);
        // Every compacted target of the retention window is still reproducible.
        for (t, _) in &was {
            assert!(after.reachable(*t), "pass {n_pass} lost target {t}");
        }
        // Time targets older than the previous pass resolve as before, from at
        // most 1 + levels files.
        if let Some((_, ft)) = before_frontier {
            for (p, r) in probes.iter().zip(&resolved_before) {
                if *p <= ft {
                    let now_r = after.resolve_time(*p);
                    if cfg.l0_retention == 0 {
                        assert_eq!(now_r, *r, "pass {n_pass}: time {p} moved");
                    } else {
                        // L0 targets may age out into their slot's end.
                        assert!(now_r <= *r, "pass {n_pass}: time {p} moved later");
                    }
                    if let Some(t) = now_r {
                        if b.cat.iter().any(|o| o.max_txid == t && o.level >= 1) {
                            let n = after.plan(Target::Txid(t)).unwrap().files.len();
                            assert!(n <= cfg.worst_case_files(), "{n} files for {t}");
                            worst = worst.max(n);
                        }
                    }
                }
            }
        }
        // The second pass at the same time has nothing to compact.
        let again = plan_pass(&b.cat, cfg, now);
        assert!(
            again.compactions.is_empty(),
            "pass {n_pass} not idempotent: {:?}",
            again.compactions
        );
        now += 30_000;
    }
    assert!(worst >= 2, "the test should exercise real restore paths");
    b
}

#[test]
fn a_day_of_traffic_keeps_every_invariant() {
    let cfg = Config {
        retention: 6 * 3_600_000,
        ..Config::default()
    };
    let b = run(&cfg, Layout::LtxDir, SNAPSHOT_LEVEL, 31, 7_000);
    // A snapshot was made at midnight, from the previous one and the ladder.
    assert!(b
        .cat
        .iter()
        .any(|o| o.level == SNAPSHOT_LEVEL && o.max_txid.0 > 1));
    // Retention deleted what the window no longer needs.
    assert!(b
        .cat
        .iter()
        .all(|o| o.level != SNAPSHOT_LEVEL || o.max_txid.0 > 1));
}

#[test]
fn starting_from_an_l0_full_image_and_hex_layout() {
    // Litestream's first L0 file is a full image: it must never climb.
    let cfg = Config {
        retention: 2 * 3_600_000,
        ..Config::default()
    };
    let b = run(&cfg, Layout::HexLevel, 0, 5, 3_000);
    assert!(b.cat.iter().all(|o| o.key.starts_with("tenant/db/000")));
}

#[test]
fn litestream_intervals_and_l0_retention() {
    let cfg = Config {
        retention: 3 * 3_600_000,
        l0_retention: 5 * 60_000,
        ..Config::litestream_intervals()
    };
    let b = run(&cfg, Layout::LtxDir, SNAPSHOT_LEVEL, 4, 2_000);
    // L0 files are kept 5 minutes after compaction.
    let l0 = b.cat.iter().filter(|o| o.level == 0).count();
    assert!((140..=190).contains(&l0), "{l0} L0 files");
}

#[test]
fn a_backlog_drains_in_one_pass() {
    backlog_drains_in_one_pass(&Config::default());
}

#[test]
fn a_backlog_drains_in_one_pass_in_ladder_shape() {
    backlog_drains_in_one_pass(&Config::litestream_ladder());
    backlog_drains_in_one_pass(&Config {
        shape: Shape::Ladder,
        ..Config::default()
    });
}

fn backlog_drains_in_one_pass(cfg: &Config) {
    let cfg = cfg.clone();
    let mut b = Bucket::new(Layout::LtxDir, SNAPSHOT_LEVEL);
    // 30 hours of traffic, no compactor running.
    let mut ts = T0 + 5000;
    while ts < T0 + 30 * 3_600_000 {
        b.write(ts, 0);
        ts += 20_000;
    }
    let now = ts + 5000;
    let plan = plan_pass(&b.cat, &cfg, now);
    check_plan(&plan, &b.cat, &cfg);
    assert!(plan
        .compactions
        .iter()
        .any(|c| c.output_level == SNAPSHOT_LEVEL));
    b.apply(&plan, now);
    assert!(plan_pass(&b.cat, &cfg, now).compactions.is_empty());
    assert!(check_contiguity(&b.cat).is_empty());
    let ladder = cfg.shape == Shape::Ladder;
    if ladder {
        assert_eq!(check_ladder(&b.cat), Vec::<String>::new());
    }
    // Everything closed is compacted, and every slot end of the window
    // restores from at most `worst_case_files` files (9 cumulative). In
    // ladder shape a 30-s window with a single transaction waits for the
    // next one, so a time may land up to one more slot earlier.
    let closed = (now - cfg.settle) / 30_000 * 30_000;
    let idx = RestoreIndex::new(&b.cat);
    let (ft, ftime) = frontier(&b.cat).unwrap();
    let lag = if ladder { 60_000 } else { 30_000 };
    assert!(
        ftime <= closed && ftime > closed - lag,
        "frontier {ft} at {ftime}"
    );
    let mut t = now - cfg.retention;
    let mut n = 0;
    while t <= ftime {
        let p = idx.plan(Target::Time(t)).unwrap();
        assert!(
            p.files.len() <= cfg.worst_case_files(),
            "{} files at {t}",
            p.files.len()
        );
        assert!(p.timestamp_ms <= t && p.timestamp_ms > t - lag - 20_000);
        t += 30_000;
        n += 1;
    }
    assert!(n > 2800);
    // L0 files compacted are gone, the rest remain, and so does the newest
    // (Litestream's replica position).
    let newest = b
        .cat
        .iter()
        .filter(|o| o.level == 0)
        .map(|o| o.max_txid)
        .max();
    assert_eq!(newest, Some(TxId(b.txid)));
    let compacted_l0 = b
        .cat
        .iter()
        .filter(|o| o.level == 1)
        .map(|o| o.max_txid)
        .max()
        .unwrap();
    let stale: Vec<_> = b
        .cat
        .iter()
        .filter(|o| {
            o.level == 0
                && o.max_txid <= ft
                && o.max_txid.0 != b.txid
                && o.created_ms < now - cfg.l0_retention
                && (!ladder || o.max_txid <= compacted_l0)
        })
        .map(|o| (&o.key, o.time_ms()))
        .collect();
    assert!(
        stale.is_empty(),
        "{} stale L0: {:?} frontier {ft}",
        stale.len(),
        &stale[..stale.len().min(5)]
    );
}

#[test]
fn idle_database_consolidates_and_keeps_restores() {
    let cfg = Config {
        retention: DAY,
        ..Config::default()
    };
    let mut b = Bucket::new(Layout::LtxDir, SNAPSHOT_LEVEL);
    for i in 0..20 {
        b.write(T0 + 10_000 + i * 1000, 0);
    }
    let mut now = T0 + 60_000;
    for _ in 0..(3 * 24 * 4) {
        let plan = plan_pass(&b.cat, &cfg, now);
        check_plan(&plan, &b.cat, &cfg);
        b.apply(&plan, now);
        let pr = check_contiguity(&b.cat);
        let keys: Vec<_> = b.cat.iter().map(|o| (&o.key, o.created_ms - T0)).collect();
        assert!(pr.is_empty(), "{pr:?} {keys:#?} {:#?}", plan.compactions);
        let p = RestoreIndex::new(&b.cat).plan(Target::Latest).unwrap();
        assert_eq!(p.txid, TxId(21));
        now += 15 * 60_000;
    }
    // After days of idleness: one snapshot holds everything, beside the
    // newest L0 file (kept for Litestream's replica position).
    assert_eq!(b.cat.len(), 2, "{:#?}", b.cat);
    assert!(b
        .cat
        .iter()
        .any(|o| o.level == SNAPSHOT_LEVEL && o.max_txid == TxId(21)));
    assert!(b.cat.iter().any(|o| o.level == 0 && o.min_txid == TxId(21)));
}

#[test]
fn config_json() {
    let c = Config::from_json(
        r#"{"levels":[{"level":1,"interval":"30s"},{"level":3,"interval":"5m"},{"level":5,"interval":3600000}],
            "snapshot_interval":"1d","retention":"48h"}"#,
    )
    .unwrap();
    assert_eq!(c.levels[2].interval, 3_600_000);
    assert_eq!(c.retention, 2 * DAY);
    assert_eq!(c.l0_retention, 0);
    assert_eq!(c.level_of(T0 + 300_000), 3);
    assert_eq!(c.level_of(T0), SNAPSHOT_LEVEL);
    let round = Config::from_json(&serde_json::to_string(&Config::default()).unwrap()).unwrap();
    assert_eq!(round, Config::default());
    for bad in [
        r#"{"levels":[],"snapshot_interval":"1d","retention":"1d"}"#,
        r#"{"levels":[{"level":1,"interval":"7s"},{"level":2,"interval":"30s"}],"snapshot_interval":"1d","retention":"1d"}"#,
        r#"{"levels":[{"level":9,"interval":"30s"}],"snapshot_interval":"1d","retention":"1d"}"#,
        r#"{"levels":[{"level":1,"interval":"30s"}],"snapshot_interval":"1d","retention":"1d","x":1}"#,
        r#"{"levels":[{"level":1,"interval":"30 parsecs"}],"snapshot_interval":"1d","retention":"1d"}"#,
    ] {
        assert!(Config::from_json(bad).is_err(), "{bad}");
    }
}

#[test]
fn takes_over_a_litestream_ladder() {
    // A bucket as Litestream leaves it: snapshot, L3, L2, L1s, L0s (hex layout).
    let cfg = Config::default();
    let mk = |level: u8, a: u64, b: u64| LtxObject {
        level,
        min_txid: TxId(a),
        max_txid: TxId(b),
        size: 10,
        created_ms: T0 + b as i64 * 1000 + 500,
        timestamp_ms: Some(T0 + b as i64 * 1000),
        key: format_key("tenant/db", Layout::HexLevel, level, TxId(a), TxId(b)),
    };
    let mut cat = vec![
        mk(9, 1, 1),
        mk(3, 2, 100),
        mk(2, 101, 150),
        mk(1, 151, 160),
        mk(1, 161, 170),
    ];
    cat.extend((171..=200).map(|t| mk(0, t, t)));
    cat.reverse(); // listing order is never trusted
    assert!(check_contiguity(&cat).is_empty());
    let mut b = Bucket {
        cat,
        txid: 200,
        layout: Layout::HexLevel,
    };
    let before = RestoreIndex::new(&b.cat);
    let ends: Vec<TxId> = [100u64, 150, 160, 170, 180, 200]
        .iter()
        .map(|&t| TxId(t))
        .collect();
    assert!(ends.iter().all(|&t| before.reachable(t)));
    drop(before);
    let mut now = T0 + 201_000;
    for _ in 0..20 {
        let plan = plan_pass(&b.cat, &cfg, now);
        check_plan(&plan, &b.cat, &cfg);
        b.apply(&plan, now);
        assert!(
            check_contiguity(&b.cat).is_empty(),
            "{:?}",
            check_contiguity(&b.cat)
        );
        let idx = RestoreIndex::new(&b.cat);
        // Litestream's compacted ends stay restorable within the retention.
        for t in &ends[..4] {
            assert!(idx.reachable(*t), "{t}");
        }
        assert_eq!(idx.latest(), Some(TxId(200)));
        now += 30_000;
    }
    assert!(b.cat.iter().all(|o| o.key.starts_with("tenant/db/000")));
}

/// A bucket a user points the job at for the first time: a chain of L0
/// files (the first a full image, as Litestream and the reference write
/// it), all or part of it older than the retention. One pass must leave
/// a contiguous bucket that restores the latest TXID, write nothing it
/// deletes again, and a second pass must have nothing to do.
#[test]
fn first_pass_over_an_old_backlog() {
    first_pass_over_an_old_backlog_with(&Config::default());
}

#[test]
fn first_pass_over_an_old_backlog_in_ladder_shape() {
    first_pass_over_an_old_backlog_with(&Config::litestream_ladder());
    first_pass_over_an_old_backlog_with(&Config {
        shape: Shape::Ladder,
        ..Config::default()
    });
}

fn first_pass_over_an_old_backlog_with(cfg: &Config) {
    let cfg = cfg.clone();
    let year = 365 * DAY;
    let now = T0 + 2 * year + 12_345;
    // (label, files: (level, min, max, time relative to now)).
    type Spec = (&'static str, Vec<(u8, u64, u64, i64)>);
    let l0_chain = |n: u64, first_age: i64, step: i64| -> Vec<(u8, u64, u64, i64)> {
        (1..=n)
            .map(|t| (0, t, t, -first_age + (t as i64 - 1) * step))
            .collect()
    };
    let mut specs: Vec<Spec> = vec![
        // All of it a year old, within three seconds (the conformance chains).
        ("all old, one slot", l0_chain(30, year, 100)),
        // A year old, spread over days.
        ("all old, over days", l0_chain(30, year, 7 * 3_600_000)),
        // Part outside the retention, part inside.
        ("half old", l0_chain(40, DAY + 3_600_000, 120_000)),
        // Just outside and just inside the 24 h window.
        ("straddling", l0_chain(10, DAY + 60_000, 20_000)),
        // Recent: all inside the retention.
        ("recent", l0_chain(20, 3_600_000, 60_000)),
        // One file.
        ("one old file", l0_chain(1, year, 0)),
        ("one recent file", l0_chain(1, 120_000, 0)),
        // A snapshot only (Litestream's level 9), old and recent.
        ("old snapshot only", vec![(SNAPSHOT_LEVEL, 1, 57, -year)]),
        (
            "recent snapshot only",
            vec![(SNAPSHOT_LEVEL, 1, 57, -90_000)],
        ),
    ];
    // An old snapshot followed by L0 files, old and new.
    let mut snap_then: Vec<(u8, u64, u64, i64)> = vec![(SNAPSHOT_LEVEL, 1, 10, -year)];
    snap_then.extend((11..=30).map(|t| (0, t, t, -2 * DAY + (t as i64) * 3_600_000)));
    specs.push(("old snapshot, L0 after", snap_then));
    for layout in [Layout::LtxDir, Layout::HexLevel] {
        for (label, files) in &specs {
            let mut b = Bucket {
                cat: Vec::new(),
                txid: 0,
                layout,
            };
            for &(level, min, max, age) in files {
                let ts = now + age;
                b.cat.push(LtxObject {
                    level,
                    min_txid: TxId(min),
                    max_txid: TxId(max),
                    size: 100,
                    created_ms: now - 5_000,
                    timestamp_ms: Some(ts),
                    key: format_key("tenant/db", layout, level, TxId(min), TxId(max)),
                });
                b.txid = max;
            }
            let latest = TxId(b.txid);
            let plan = plan_pass(&b.cat, &cfg, now);
            check_plan(&plan, &b.cat, &cfg);
            b.apply(&plan, now);
            let mut problems = check_contiguity(&b.cat);
            if cfg.shape == Shape::Ladder {
                problems.extend(check_ladder(&b.cat));
            }
            let keys: Vec<&str> = b.cat.iter().map(|o| o.key.as_str()).collect();
            assert!(
                problems.is_empty(),
                "{label} ({layout:?}, {:?}): after one pass: {problems:?}\nbucket: {keys:#?}",
                cfg.shape
            );
            let idx = RestoreIndex::new(&b.cat);
            assert_eq!(
                idx.latest(),
                Some(latest),
                "{label} ({layout:?}): {keys:#?}"
            );
            // Nothing written in this pass is already unnecessary: a second
            // pass at the same time neither compacts nor deletes.
            let again = plan_pass(&b.cat, &cfg, now);
            assert!(
                again.compactions.is_empty() && again.deletions.is_empty(),
                "{label} ({layout:?}): second pass: {:?} deletes {:?}\nbucket: {keys:#?}",
                again.compactions,
                again.deletions
            );
        }
    }
}

#[test]
fn a_day_of_traffic_in_ladder_shape() {
    // Litestream's intervals and L0 retention, every invariant after every
    // pass (see `run` and `check_plan`), then the shape of the result.
    let cfg = Config {
        retention: 6 * 3_600_000,
        ..Config::litestream_ladder()
    };
    assert_eq!(cfg.worst_case_files(), 46);
    let b = run(&cfg, Layout::LtxDir, SNAPSHOT_LEVEL, 31, 7_000);
    assert!(b
        .cat
        .iter()
        .any(|o| o.level == SNAPSHOT_LEVEL && o.max_txid.0 > 1));
    assert!(b
        .cat
        .iter()
        .all(|o| o.level != SNAPSHOT_LEVEL || o.max_txid.0 > 1));
    for level in 1..=3 {
        assert!(
            b.cat.iter().any(|o| o.level == level),
            "level {level} empty"
        );
    }
    // No ladder file from TXID 1 (the snapshot never climbs).
    assert!(b
        .cat
        .iter()
        .all(|o| o.level == SNAPSHOT_LEVEL || !o.is_base()));
    // L0 files stay 5 minutes after they are compacted.
    let l0 = b.cat.iter().filter(|o| o.level == 0).count();
    assert!((40..=50).contains(&l0), "{l0} L0 files");
}

#[test]
fn eight_levels_in_ladder_shape() {
    let cfg = Config {
        retention: 4 * 3_600_000,
        shape: Shape::Ladder,
        ..Config::default()
    };
    assert_eq!(cfg.worst_case_files(), 23);
    run(&cfg, Layout::HexLevel, SNAPSHOT_LEVEL, 27, 4_000);
}

#[test]
fn ladder_shape_at_a_low_rate() {
    // About one transaction per 30-s window or fewer: windows with a
    // single input wait for the next one, at every level.
    let cfg = Config {
        retention: 3 * 3_600_000,
        l0_retention: 0,
        ..Config::litestream_ladder()
    };
    let b = run(&cfg, Layout::LtxDir, SNAPSHOT_LEVEL, 26, 47_000);
    let l1: Vec<&LtxObject> = b.cat.iter().filter(|o| o.level == 1).collect();
    assert!(l1.len() > 100);
    assert!(l1.iter().all(|o| o.max_txid > o.min_txid));
}

#[test]
fn starting_from_an_l0_full_image_in_ladder_shape() {
    // Litestream's first L0 file is a full image: it becomes the snapshot
    // 1-1 by a byte copy (so that L0 stays a queue), never an L1 file.
    let cfg = Config {
        retention: 2 * 3_600_000,
        ..Config::litestream_ladder()
    };
    let mut b = Bucket::new(Layout::HexLevel, 0);
    for i in 0..5 {
        b.write(T0 + 3000 + i * 3000, 0);
    }
    let plan = plan_pass(&b.cat, &cfg, T0 + 31_500);
    check_plan(&plan, &b.cat, &cfg);
    let copy = &plan.compactions[0];
    assert_eq!(copy.kind, CompactionKind::Copy);
    assert_eq!(
        copy.output_key,
        "tenant/db/0009/0000000000000001-0000000000000001.ltx"
    );
    assert_eq!(plan.compactions[1].min_txid, TxId(2));
    b.apply(&plan, T0 + 31_500);
    // The L0 image goes at once: its copy serves.
    assert!(b.cat.iter().all(|o| o.level != 0 || o.min_txid.0 > 1));
    let b = run(&cfg, Layout::HexLevel, 0, 5, 3_000);
    assert!(b.cat.iter().all(|o| o.key.starts_with("tenant/db/000")));
}

#[test]
fn idle_database_in_ladder_shape() {
    let cfg = Config {
        retention: DAY,
        l0_retention: 0,
        ..Config::litestream_ladder()
    };
    let mut b = Bucket::new(Layout::LtxDir, SNAPSHOT_LEVEL);
    for i in 0..20 {
        b.write(T0 + 10_000 + i * 1000, 0);
    }
    let mut now = T0 + 60_000;
    for _ in 0..(3 * 24 * 4) {
        let plan = plan_pass(&b.cat, &cfg, now);
        check_plan(&plan, &b.cat, &cfg);
        b.apply(&plan, now);
        assert_eq!(check_ladder(&b.cat), Vec::<String>::new());
        assert_eq!(check_contiguity(&b.cat), Vec::<String>::new());
        let p = RestoreIndex::new(&b.cat).plan(Target::Latest).unwrap();
        assert_eq!(p.txid, TxId(21));
        now += 15 * 60_000;
    }
    // One snapshot holds everything, beside the newest L0 file.
    assert_eq!(b.cat.len(), 2, "{:#?}", b.cat);
    assert!(b
        .cat
        .iter()
        .any(|o| o.level == SNAPSHOT_LEVEL && o.max_txid == TxId(21)));
    // Traffic again: L1 starts right after the snapshot.
    let ts = now - 20_000;
    b.write(ts, 0);
    b.write(ts + 1000, 0);
    let plan = plan_pass(&b.cat, &cfg, now + 15_000);
    check_plan(&plan, &b.cat, &cfg);
    assert_eq!(plan.compactions.len(), 1);
    assert_eq!(
        (
            plan.compactions[0].output_level,
            plan.compactions[0].min_txid
        ),
        (1, TxId(22))
    );
}

/// A bucket as Litestream 0.5.17 leaves it (hex layout), listed in reverse.
fn litestream_bucket(extra: &[(u8, u64, u64)]) -> Vec<LtxObject> {
    let mk = |level: u8, a: u64, b: u64| LtxObject {
        level,
        min_txid: TxId(a),
        max_txid: TxId(b),
        size: 10,
        created_ms: T0 + b as i64 * 1000 + 500,
        timestamp_ms: Some(T0 + b as i64 * 1000),
        key: format_key("tenant/db", Layout::HexLevel, level, TxId(a), TxId(b)),
    };
    let mut cat: Vec<LtxObject> = extra.iter().map(|&(l, a, b)| mk(l, a, b)).collect();
    cat.extend((171..=200).map(|t| mk(0, t, t)));
    cat.reverse();
    cat
}

fn take_over(cfg: &Config, cat: Vec<LtxObject>, ends: &[u64]) -> Bucket {
    let mut b = Bucket {
        cat,
        txid: 200,
        layout: Layout::HexLevel,
    };
    let before = RestoreIndex::new(&b.cat);
    assert!(ends.iter().all(|&t| before.reachable(TxId(t))));
    drop(before);
    let mut now = T0 + 201_000;
    for pass in 0..20 {
        let plan = plan_pass(&b.cat, cfg, now);
        check_plan(&plan, &b.cat, cfg);
        b.apply(&plan, now);
        assert_eq!(check_contiguity(&b.cat), Vec::<String>::new());
        if cfg.shape == Shape::Ladder {
            let keys: Vec<&str> = b.cat.iter().map(|o| o.key.as_str()).collect();
            assert_eq!(
                check_ladder(&b.cat),
                Vec::<String>::new(),
                "pass {pass}: {keys:#?}"
            );
        }
        let idx = RestoreIndex::new(&b.cat);
        // Litestream's compacted ends stay restorable within the retention.
        for &t in ends {
            assert!(idx.reachable(TxId(t)), "{t}");
        }
        assert_eq!(idx.latest(), Some(TxId(200)));
        now += 30_000;
    }
    assert!(b.cat.iter().all(|o| o.key.starts_with("tenant/db/000")));
    b
}

#[test]
fn takes_over_a_litestream_ladder_in_ladder_shape() {
    let cfg = Config::litestream_ladder();
    let cat = litestream_bucket(&[
        (9, 1, 1),
        (3, 2, 100),
        (2, 101, 150),
        (1, 151, 160),
        (1, 161, 170),
    ]);
    assert_eq!(check_ladder(&cat), Vec::<String>::new());
    let b = take_over(&cfg, cat, &[100, 150, 160, 170]);
    // Each level continued its own chain.
    let mut l1: Vec<(u64, u64)> = b
        .cat
        .iter()
        .filter(|o| o.level == 1)
        .map(|o| (o.min_txid.0, o.max_txid.0))
        .collect();
    l1.sort_unstable();
    assert_eq!(l1, vec![(151, 160), (161, 170), (171, 180), (181, 200)]);
    let l2: Vec<(u64, u64)> = b
        .cat
        .iter()
        .filter(|o| o.level == 2)
        .map(|o| (o.min_txid.0, o.max_txid.0))
        .collect();
    assert!(l2.contains(&(151, 200)), "{l2:?}");
}

#[test]
fn takes_over_a_litestream_ladder_that_climbed() {
    // Litestream's copies of its first full image up the levels (L1 1-1,
    // L2 1-1, L3 1-100) and byte-identical single-input copies (L2 161-170
    // of L1 161-170): kept where a target needs them, never added to.
    let cfg = Config::litestream_ladder();
    let cat = litestream_bucket(&[
        (9, 1, 1),
        (0, 1, 1),
        (1, 1, 1),
        (2, 1, 1),
        (3, 1, 100),
        (2, 101, 150),
        (1, 151, 160),
        (2, 151, 160),
        (1, 161, 170),
    ]);
    let b = take_over(&cfg, cat, &[1, 100, 150, 160, 170]);
    // Of the twins 1-1, only the snapshot is left.
    let ones: Vec<u8> = b
        .cat
        .iter()
        .filter(|o| o.min_txid.0 == 1 && o.max_txid.0 == 1)
        .map(|o| o.level)
        .collect();
    assert_eq!(ones, vec![SNAPSHOT_LEVEL]);
}

#[test]
fn config_shape_json() {
    let base = r#""levels":[{"level":1,"interval":"30s"},{"level":2,"interval":"5m"}],
                  "snapshot_interval":"1d","retention":"1d""#;
    let c = Config::from_json(&format!("{{{base}}}")).unwrap();
    assert_eq!(c.shape, Shape::Cumulative);
    let c = Config::from_json(&format!("{{{base},\"shape\":\"ladder\"}}")).unwrap();
    assert_eq!(c.shape, Shape::Ladder);
    assert!(Config::from_json(&format!("{{{base},\"shape\":\"pyramid\"}}")).is_err());
    let l = Config::litestream_ladder();
    let json = serde_json::to_string(&l).unwrap();
    assert!(json.contains(r#""shape":"ladder""#), "{json}");
    assert_eq!(Config::from_json(&json).unwrap(), l);
    let file = include_str!("../configs/litestream-ladder.json");
    assert_eq!(Config::from_json(file).unwrap(), l);
}

/// The workspace's SplitMix64 ([`ltx_core::rng`]), reduced by `%` as the
/// schedules below always were.
struct Rng(ltx_core::rng::SplitMix64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0.next_u64() % n
    }
}

#[test]
fn ladder_shape_under_bursts_idleness_and_irregular_passes() {
    // Bursts, quiet spells and idle days; passes every 30 s to every few
    // hours (backlogs); every invariant after every pass.
    for seed in 0..60u64 {
        let mut rng = Rng(ltx_core::rng::SplitMix64::new(seed));
        let cfg = Config {
            retention: [3_600_000, 6 * 3_600_000, DAY][rng.below(3) as usize],
            l0_retention: [0, 5 * 60_000][rng.below(2) as usize],
            ..if seed % 3 == 2 {
                Config {
                    shape: Shape::Ladder,
                    ..Config::default()
                }
            } else {
                Config::litestream_ladder()
            }
        };
        let base = if seed % 2 == 0 { SNAPSHOT_LEVEL } else { 0 };
        let mut b = Bucket::new(Layout::LtxDir, base);
        let mut ts = T0 + 2000;
        let mut now = T0 + 30_000;
        let end = T0 + 3 * DAY;
        let mut passes = 0;
        let mut bridged = 0;
        while now < end {
            now += match rng.below(10) {
                0..=5 => 30_000,
                6 | 7 => 30_000 * (1 + rng.below(40) as i64),
                8 => 3_600_000 * (1 + rng.below(3) as i64),
                _ => 1000 + rng.below(29_000) as i64,
            };
            while ts <= now {
                b.write(ts, 0);
                ts += match rng.below(20) {
                    0..=9 => 200 + rng.below(5000) as i64,
                    10..=17 => 10_000 + rng.below(60_000) as i64,
                    18 => 600_000 + rng.below(3_600_000) as i64,
                    _ => 3_600_000 * (1 + rng.below(30) as i64),
                };
            }
            let before = RestoreIndex::new(&b.cat);
            let cutoff = now - cfg.retention;
            let was: Vec<TxId> = before
                .reachable_ends()
                .filter(|&(t, time, _)| {
                    time > cutoff && b.cat.iter().any(|o| o.max_txid == t && o.level >= 1)
                })
                .map(|(t, _, _)| t)
                .collect();
            let latest = before.latest();
            drop(before);
            let plan = plan_pass(&b.cat, &cfg, now);
            assert_eq!(plan, plan_pass(&b.cat, &cfg, now), "seed {seed}");
            check_plan(&plan, &b.cat, &cfg);
            let newest_l0 = b
                .cat
                .iter()
                .filter(|o| o.level == 0)
                .map(|o| o.max_txid)
                .max();
            b.apply(&plan, now);
            passes += 1;
            let keys = || {
                let mut c = b.cat.clone();
                c.sort_by_key(|o| (o.level, o.min_txid));
                c.iter()
                    .map(|o| format!("{} {}", o.key, o.time_ms() - T0))
                    .collect::<Vec<_>>()
            };
            assert_eq!(
                check_ladder(&b.cat),
                Vec::<String>::new(),
                "seed {seed} pass {passes}: {:#?}",
                keys()
            );
            assert_eq!(
                b.cat
                    .iter()
                    .filter(|o| o.level == 0)
                    .map(|o| o.max_txid)
                    .max(),
                newest_l0
            );
            let after = RestoreIndex::new(&b.cat);
            assert_eq!(after.latest(), latest, "seed {seed} pass {passes}");
            for t in &was {
                assert!(after.reachable(*t), "seed {seed} pass {passes} lost {t}");
            }
            // A second pass at the same time has nothing to compact; it may
            // delete the outputs that bridged a level's old files and its
            // new ones (see `prune_unretained`), then there is nothing left.
            let again = plan_pass(&b.cat, &cfg, now);
            assert!(
                again.compactions.is_empty(),
                "seed {seed} pass {passes}: second pass {:?}",
                again.compactions,
            );
            if !again.deletions.is_empty() {
                bridged += 1;
                check_plan(&again, &b.cat, &cfg);
                b.apply(&again, now);
                assert_eq!(check_ladder(&b.cat), Vec::<String>::new());
                let third = plan_pass(&b.cat, &cfg, now);
                assert!(third.compactions.is_empty() && third.deletions.is_empty());
            }
        }
        println!("seed {seed}: {passes} passes, {bridged} bridged");
        assert!(bridged * 20 < passes, "seed {seed}: {bridged} of {passes}");
    }
}
