//! `restore_plan`: builds a small catalog of LTX objects from the input and
//! checks `ltx_compactor`'s restore planner ([`RestoreIndex`],
//! [`plan_restore`]) against a brute-force shortest path, then runs the
//! compaction policy ([`plan_pass`]) on the same catalog.
//!
//! Input bytes (a reader that yields zeros when exhausted):
//!
//! ```text
//! c: number of files = c % 25
//! m: bit 0 wild TXIDs (near u64::MAX) | bit 1 wild header timestamps (any i64)
//!    | bits 2-3 target (Txid, Time, Latest, all three) | bit 4 hex-level layout
//!    | bit 5 database prefix "db" (else the bucket root)
//! now: 2 bytes, seconds after 2023-11-14
//! per file (6 bytes): level % 10 | min (1 + b % 24; wild: u64::MAX - b % 128 if
//!    b >= 0x80) | length (b % 8; wild: b % 8 << 56 if b >= 0xc0, to u64::MAX
//!    if b >= 0xf8) | size (b * 100)
//!    | created = now - b * 6 min | timestamp (bit 0: present; = created - (b >> 1) s,
//!    wild: 8 more bytes)
//! target: Txid(1 + b % 32, or wild u64), Time(now - b * 6 min)
//! ```
//!
//! Checks (no panic, and):
//! - the fewest (files, bytes) to every TXID equal the brute force
//!   (relaxation to a fixpoint over every file), so plans are minimal;
//! - every plan is a valid chain: the first file starts at TXID 1, each next
//!   one starts at or before the previous end + 1 and advances, the last ends
//!   at `plan.txid`; its bytes are the files' sum;
//! - `Txid(t)` ends at `t`, or fails with the nearest reproducible TXIDs
//!   below and above; `Time(ms)` is the latest reproducible TXID whose time
//!   (exact header timestamp if any file ending there has one, else the
//!   earliest last-modified) is at or before `ms`; `Latest` the latest one;
//! - `walk_path` visits the path's files (as catalog positions), last first;
//! - `plan_pass(&catalog, cfg, now)`, with `Config::default()` (cumulative)
//!   and `Config::litestream_ladder()` (ladder shape): every deletion is in
//!   the catalog, every compaction's inputs chain from its min to its max
//!   TXID and its output key parses to its level and range, and the latest
//!   reproducible TXID stays reproducible after the pass (deletions removed,
//!   outputs added). In ladder shape also: a single input only as the copy
//!   of an L0 full image to a snapshot, no ladder output from a full image;
//!   the outputs of a level that has files chain from its last file; the
//!   deletions of each level come before (in TXID order) every file it
//!   keeps, so only a prefix of a chain goes.

use std::collections::BTreeMap;
use std::ops::Bound::{Excluded, Unbounded};

use ltx_compactor::catalog::{format_key, parse_key, Layout, LtxObject, SNAPSHOT_LEVEL};
use ltx_compactor::policy::Shape;
use ltx_compactor::{plan_pass, plan_restore, Config, RestoreError, RestoreIndex, Target};
use ltx_core::TxId;

use crate::Bytes;

/// 2023-11-14T22:13:20Z in ms.
const EPOCH: i64 = 1_700_000_000_000;
const MIN6: i64 = 6 * 60_000;

/// The catalog, the targets and `now` an input describes.
#[derive(Debug, Clone)]
pub struct Case {
    /// The objects (any order, duplicates possible).
    pub catalog: Vec<LtxObject>,
    /// Targets to plan.
    pub targets: Vec<Target>,
    /// The clock for `plan_pass`.
    pub now: i64,
}

/// Decodes an input (see the module doc).
pub fn build(data: &[u8]) -> Case {
    let mut r = Bytes::new(data);
    let n = usize::from(r.u8() % 25);
    let m = r.u8();
    let (wild_txid, wild_time) = (m & 1 != 0, m & 2 != 0);
    let layout = if m & 0x10 != 0 {
        Layout::HexLevel
    } else {
        Layout::LtxDir
    };
    let db = if m & 0x20 != 0 { "db" } else { "" };
    let now = EPOCH + i64::from(u16::from_be_bytes(r.array())) * 1000;
    let mut catalog = Vec::with_capacity(n);
    for _ in 0..n {
        let level = r.u8() % 10;
        let b = r.u8();
        let min = if wild_txid && b >= 0x80 {
            u64::MAX - u64::from(b % 128)
        } else {
            1 + u64::from(b % 24)
        };
        let l = r.u8();
        let len = if wild_txid && l >= 0xf8 {
            u64::MAX
        } else if wild_txid && l >= 0xc0 {
            u64::from(l % 8) << 56
        } else {
            u64::from(l % 8)
        };
        let max = min.saturating_add(len);
        let size = u64::from(r.u8()) * 100;
        let created_ms = now - i64::from(r.u8()) * MIN6;
        let t = r.u8();
        let timestamp_ms = if t & 1 == 0 {
            None
        } else if wild_time {
            Some(r.u64() as i64)
        } else {
            Some(created_ms - i64::from(t >> 1) * 1000)
        };
        catalog.push(LtxObject {
            level,
            min_txid: TxId(min),
            max_txid: TxId(max),
            size,
            created_ms,
            timestamp_ms,
            key: format_key(db, layout, level, TxId(min), TxId(max)),
        });
    }
    let txid_target = |r: &mut Bytes<'_>| {
        let b = r.u8();
        if wild_txid && b >= 0x80 {
            Target::Txid(TxId(r.u64()))
        } else {
            Target::Txid(TxId(1 + u64::from(b % 32)))
        }
    };
    let time_target = |r: &mut Bytes<'_>| Target::Time(now - i64::from(r.u8()) * MIN6);
    let targets = match (m >> 2) & 3 {
        0 => vec![txid_target(&mut r)],
        1 => vec![time_target(&mut r)],
        2 => vec![Target::Latest],
        _ => vec![txid_target(&mut r), time_target(&mut r), Target::Latest],
    };
    Case {
        catalog,
        targets,
        now,
    }
}

/// The fuzz target.
pub fn run(data: &[u8]) {
    check(&build(data));
}

/// Whether `f` can follow a chain ending at `cur` (0 = the empty database).
fn follows(f: &LtxObject, cur: u64) -> bool {
    if cur == 0 {
        f.min_txid.0 == 1
    } else {
        f.min_txid.0 - 1 <= cur && f.max_txid.0 > cur
    }
}

/// Brute force: the best (files, bytes) to every reachable TXID, by
/// relaxing every file from every reached TXID until nothing changes.
pub fn brute(cat: &[LtxObject]) -> BTreeMap<u64, (u32, u64)> {
    let mut best: BTreeMap<u64, (u32, u64)> = BTreeMap::new();
    best.insert(0, (0, 0));
    loop {
        let mut changed = false;
        let snapshot: Vec<(u64, (u32, u64))> = best.iter().map(|(&k, &v)| (k, v)).collect();
        for (cur, (n, b)) in snapshot {
            for f in cat.iter().filter(|f| follows(f, cur)) {
                let c = (n + 1, b.saturating_add(f.size));
                let e = best.entry(f.max_txid.0).or_insert((u32::MAX, u64::MAX));
                if c < *e {
                    *e = c;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best.remove(&0);
    best
}

/// The time of each file end: the earliest header timestamp of a file
/// ending there if any has one (exact), else the earliest last-modified.
fn end_times(cat: &[LtxObject]) -> BTreeMap<u64, (i64, bool)> {
    let mut t: BTreeMap<u64, (i64, bool)> = BTreeMap::new();
    for f in cat {
        let cand = match f.timestamp_ms {
            Some(ts) => (ts, true),
            None => (f.created_ms, false),
        };
        let e = t.entry(f.max_txid.0).or_insert(cand);
        *e = match (e.1, cand.1) {
            (true, false) => *e,
            (false, true) => cand,
            _ => (e.0.min(cand.0), e.1),
        };
    }
    t
}

fn assert_chain(files: &[&LtxObject], end: u64, what: &str) {
    assert!(!files.is_empty(), "{what}: empty plan");
    assert_eq!(
        files[0].min_txid.0, 1,
        "{what}: first file does not start at 1"
    );
    for w in files.windows(2) {
        assert!(
            w[1].min_txid.0 - 1 <= w[0].max_txid.0 && w[1].max_txid > w[0].max_txid,
            "{what}: {} does not follow {}",
            w[1].key,
            w[0].key
        );
    }
    assert_eq!(
        files[files.len() - 1].max_txid.0,
        end,
        "{what}: plan does not end at {end}"
    );
}

/// Checks one case.
pub fn check(case: &Case) {
    let cat = &case.catalog;
    let want = brute(cat);
    let times = end_times(cat);
    let idx = RestoreIndex::new(cat);

    // Reachable ends and their times.
    let ends: Vec<(TxId, i64, bool)> = idx.reachable_ends().collect();
    let want_ends: Vec<(TxId, i64, bool)> = want
        .keys()
        .map(|&t| (TxId(t), times[&t].0, times[&t].1))
        .collect();
    assert_eq!(ends, want_ends, "reachable ends and times");
    assert_eq!(idx.latest().map(|t| t.0), want.keys().next_back().copied());

    // Every file end, and around it: costs, paths, plans.
    let mut probes: Vec<u64> = cat
        .iter()
        .flat_map(|f| [f.min_txid.0, f.max_txid.0, f.max_txid.0.saturating_add(1)])
        .collect();
    probes.extend([0, 1, u64::MAX]);
    probes.sort_unstable();
    probes.dedup();
    for &t in &probes {
        let w = want.get(&t).copied();
        assert_eq!(idx.cost(TxId(t)), w, "cost to {t}");
        assert_eq!(idx.reachable(TxId(t)), w.is_some());
        match w {
            Some((n, b)) => {
                let p = idx.path(TxId(t)).expect("path to a reachable TXID");
                assert_chain(&p, t, "path");
                assert_eq!(p.len() as u32, n, "path to {t} is not the fewest files");
                let bytes = p.iter().fold(0u64, |a, f| a.saturating_add(f.size));
                assert_eq!(bytes, b, "path to {t} is not the fewest bytes");
                let mut walked = Vec::new();
                assert!(idx.walk_path(TxId(t), |i| {
                    walked.push(i);
                    true
                }));
                walked.reverse();
                let walked: Vec<&LtxObject> = walked.iter().map(|&i| &cat[i]).collect();
                assert_eq!(walked, p, "walk_path and path differ");
            }
            None => {
                assert!(idx.path(TxId(t)).is_none());
                assert!(!idx.walk_path(TxId(t), |_| true));
            }
        }
        check_plan(cat, &idx, &want, &times, Target::Txid(TxId(t)));
    }
    for &target in &case.targets {
        check_plan(cat, &idx, &want, &times, target);
    }
    // Times: every reachable end's time, and around it.
    let mut tprobes: Vec<i64> = want
        .keys()
        .flat_map(|t| {
            let x = times[t].0;
            [x.saturating_sub(1), x, x.saturating_add(1)]
        })
        .collect();
    tprobes.extend([i64::MIN, i64::MAX, case.now]);
    for ms in tprobes {
        check_plan(cat, &idx, &want, &times, Target::Time(ms));
    }

    check_pass(case, &Config::default());
    check_pass(case, &Config::litestream_ladder());
}

fn check_plan(
    cat: &[LtxObject],
    idx: &RestoreIndex<'_>,
    want: &BTreeMap<u64, (u32, u64)>,
    times: &BTreeMap<u64, (i64, bool)>,
    target: Target,
) {
    let res = idx.plan(target);
    assert_eq!(
        res,
        plan_restore(cat, target),
        "plan_restore and RestoreIndex::plan differ for {target:?}"
    );
    let expect_txid: Option<u64> = match target {
        Target::Txid(t) => want.contains_key(&t.0).then_some(t.0),
        Target::Latest => want.keys().next_back().copied(),
        Target::Time(ms) => want.keys().rev().find(|t| times[t].0 <= ms).copied(),
    };
    let plan = match (res, expect_txid) {
        (Ok(p), Some(t)) => {
            assert_eq!(p.txid.0, t, "{target:?}: wrong TXID");
            p
        }
        (Err(RestoreError::NoBase), _) => {
            assert!(want.is_empty(), "{target:?}: NoBase with reachable TXIDs");
            return;
        }
        (Err(RestoreError::NotReproducible { txid, below, above }), None) => {
            let Target::Txid(t) = target else {
                panic!("{target:?}: NotReproducible for a non-TXID target");
            };
            assert_eq!(txid, t);
            assert_eq!(
                below.map(|x| x.0),
                want.range(..t.0).next_back().map(|e| *e.0)
            );
            assert_eq!(
                above.map(|x| x.0),
                want.range((Excluded(t.0), Unbounded)).next().map(|e| *e.0)
            );
            return;
        }
        (Err(RestoreError::TooEarly { time_ms, earliest }), None) => {
            let Target::Time(ms) = target else {
                panic!("{target:?}: TooEarly for a non-time target");
            };
            assert_eq!(time_ms, ms);
            let (et, ems) = earliest.expect("earliest reproducible");
            let min_time = want.keys().map(|t| times[t].0).min().unwrap();
            assert_eq!(ems, min_time, "earliest time");
            assert_eq!(times[&et.0].0, ems, "earliest TXID has that time");
            assert!(ems > ms);
            return;
        }
        (res, exp) => panic!("{target:?}: got {res:?}, expected TXID {exp:?} (brute force)"),
    };
    let files: Vec<&LtxObject> = plan.files.iter().collect();
    assert_chain(&files, plan.txid.0, &format!("{target:?}"));
    let (n, b) = want[&plan.txid.0];
    assert_eq!(
        plan.files.len() as u32,
        n,
        "{target:?}: not the fewest files"
    );
    assert_eq!(
        plan.bytes, b,
        "{target:?}: not the fewest bytes / bytes not the sum"
    );
    let (ms, exact) = times[&plan.txid.0];
    assert_eq!((plan.timestamp_ms, plan.timestamp_exact), (ms, exact));
    if let Target::Time(t) = target {
        assert!(
            plan.timestamp_ms <= t,
            "{target:?}: plan time {ms} after target"
        );
    }
}

/// `plan_pass` on the catalog.
fn check_pass(case: &Case, cfg: &Config) {
    let cat = &case.catalog;
    let pass = plan_pass(cat, cfg, case.now);
    // Deletions: each is a catalog object (as a multiset).
    let mut after: Vec<LtxObject> = cat.clone();
    for d in &pass.deletions {
        let i = after.iter().position(|o| o == d).unwrap_or_else(|| {
            panic!(
                "deletion {} is not in the catalog (or deleted twice)",
                d.key
            )
        });
        after.swap_remove(i);
    }
    for c in &pass.compactions {
        let inputs: Vec<&LtxObject> = c.inputs.iter().collect();
        assert!(
            !inputs.is_empty(),
            "compaction {} without inputs",
            c.output_key
        );
        assert_eq!(
            inputs[0].min_txid, c.min_txid,
            "{}: first input",
            c.output_key
        );
        for w in inputs.windows(2) {
            assert!(
                w[1].min_txid.0 - 1 <= w[0].max_txid.0 && w[1].max_txid > w[0].max_txid,
                "{}: input {} does not follow {}",
                c.output_key,
                w[1].key,
                w[0].key
            );
        }
        assert_eq!(
            inputs[inputs.len() - 1].max_txid,
            c.max_txid,
            "{}: last input",
            c.output_key
        );
        let k = parse_key(&c.output_key)
            .unwrap_or_else(|| panic!("output key {:?} does not parse", c.output_key));
        assert_eq!(
            (k.level, k.min_txid, k.max_txid),
            (c.output_level, c.min_txid, c.max_txid),
            "output key {}",
            c.output_key
        );
        assert!(c.output_level <= SNAPSHOT_LEVEL);
        assert_eq!(
            c.min_txid.0 == 1,
            c.output_level == SNAPSHOT_LEVEL,
            "{}: a full image is a snapshot",
            c.output_key
        );
        after.push(c.output_object(1, case.now));
    }
    if cfg.shape == Shape::Ladder {
        check_ladder_pass(cat, &pass, &after);
    }
    if let Some(latest) = RestoreIndex::new(cat).latest() {
        assert!(
            RestoreIndex::new(&after).reachable(latest),
            "the latest TXID {latest} is not reproducible after the pass (deleted {:?})",
            pass.deletions.iter().map(|d| &d.key).collect::<Vec<_>>()
        );
    }
}

/// The ladder-shape rules of a pass (`after`: the catalog without the
/// deletions, with the outputs).
fn check_ladder_pass(cat: &[LtxObject], pass: &ltx_compactor::PassPlan, after: &[LtxObject]) {
    let mut end: [Option<u64>; 10] = [None; 10];
    for o in cat {
        let e = &mut end[usize::from(o.level)];
        *e = (*e).max(Some(o.max_txid.0));
    }
    let listed: Vec<bool> = (0..10u8)
        .map(|l| cat.iter().any(|o| o.level == l))
        .collect();
    for c in &pass.compactions {
        if c.inputs.len() == 1 {
            let i = &c.inputs[0];
            assert!(
                c.output_level == SNAPSHOT_LEVEL && i.level == 0 && i.is_base(),
                "{}: a single input is only the copy of an L0 full image to a snapshot",
                c.output_key
            );
        }
        if c.output_level < SNAPSHOT_LEVEL {
            assert!(
                c.inputs.iter().all(|i| !i.is_base()),
                "{}: a full image as a ladder input",
                c.output_key
            );
            let l = usize::from(c.output_level);
            if listed[l] {
                assert_eq!(
                    Some(c.min_txid.0),
                    end[l].and_then(|e| e.checked_add(1)),
                    "{}: does not follow its level",
                    c.output_key
                );
            }
            end[l] = end[l].max(Some(c.max_txid.0));
        }
    }
    for level in 0..SNAPSHOT_LEVEL {
        let gone = pass
            .deletions
            .iter()
            .filter(|o| o.level == level)
            .map(|o| (o.min_txid, o.max_txid))
            .max();
        let kept = after
            .iter()
            .filter(|o| o.level == level)
            .map(|o| (o.min_txid, o.max_txid))
            .min();
        if let (Some(g), Some(k)) = (gone, kept) {
            assert!(g <= k, "level {level}: deleted {g:?} after kept {k:?}");
        }
    }
}
