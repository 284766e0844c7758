//! Crash test: `ltx-compactor run DIR --once` runs in a child process over a
//! local-directory bucket that keeps receiving L0 files (1–3 transactions of
//! a real SQLite workload before each run, 3 s of simulated time apart, the
//! policy clock given with `--now-ms`), and is SIGKILLed after a random
//! delay: between 0 and 1.3× the measured duration of a whole run (process
//! start to exit, measured on unkilled runs, separately for runs with and
//! without work), or, two times in three when the plan has work, between
//! 0.5× and 1.2× (where the uploads, deletions and lease release are). About
//! one run in seven is left to finish. Then it is simply started again.
//!
//! After every run (killed or not) the bucket is checked:
//! - every level is contiguous (`check_contiguity`);
//! - every LTX key holds a whole, valid LTX file whose header matches its
//!   name (`read_meta`): no partially written object is visible;
//! - the run wrote only outputs its plan named and deleted only files its
//!   plan allowed (the plan is recomputed in-process from the same listing
//!   and clock), so no L0 file went before a higher level covered it;
//! - the latest written TXID is the latest restorable one, and every TXID
//!   after the latest compacted one is still restorable;
//! - a sample of restores (the latest TXID, a random retained end, a random
//!   compacted end) reproduces the saved database state byte for byte;
//! - a run that was not killed exited 0.
//!
//! At the end, with faults stopped, one clean run converges (exit 0) and a
//! second writes and deletes nothing; then every retained end is restored
//! and compared.
//!
//! "Found already written" counts outputs a completed run reported as
//! `existed`; it stays near 0 because the policy sees an interrupted pass's
//! outputs in the listing and plans after them rather than again. At the
//! first violation the bucket is copied to `$TMPDIR/ltx-crash-seed*-it*`
//! and the run's plan and changes are printed.
//!
//! `LTX_CRASH_RUNS=N` sets the number of iterations (default 200),
//! `LTX_CRASH_SEED=S` the seed (default 1). Kill delays depend on the
//! machine's timing, so a seed reproduces the workload and the choice of
//! delays, not the exact instants the kills land at.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use ltx_compactor::catalog::{DbLocation, Layout, LtxObject};
use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
use ltx_compactor::policy::{check_contiguity, plan_pass_at, Config, PassPlan};
use ltx_compactor::restore::Target;
use ltx_compactor::store::{join, Bucket};
use ltx_compactor::RestoreIndex;
use ltx_core::rng::SplitMix64;
use ltx_core::TxId;

/// The ladder of e2e.rs: a few minutes of simulated time cross every level.
const SMALL_CONFIG: &str = r#"{"levels": [{"level": 1, "interval": "10s"}, {"level": 2, "interval": "20s"},
              {"level": 3, "interval": "40s"}, {"level": 4, "interval": "80s"},
              {"level": 5, "interval": "160s"}],
    "snapshot_interval": "640s", "retention": "900s", "l0_retention": "0s", "settle": "1s"}"#;

const T0: i64 = 1_800_000_000_000;
const DB: &str = "tenant-1/app.db";

/// The test's only source of randomness (the workspace's one generator;
/// `below` by remainder, as this test always drew).
struct Rng(SplitMix64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(SplitMix64::new(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where in its pass a killed run was stopped, judged from the bucket.
#[derive(Default, Debug)]
struct Phases {
    /// The plan had nothing to do.
    idle: usize,
    /// Work planned, nothing visible yet (listing, reads, first upload).
    before_outputs: usize,
    /// Some but not all planned outputs present.
    between_outputs: usize,
    /// Every output present, no deletion yet.
    before_deletions: usize,
    /// Some but not all planned deletions done.
    mid_deletions: usize,
    /// Everything done (final listing, lease release, exit).
    after_deletions: usize,
}

#[derive(Default, Debug)]
struct Figures {
    iterations: usize,
    transactions: u64,
    killed_mid_run: usize,
    exited_before_kill: usize,
    left_to_finish: usize,
    phases: Phases,
    outputs_written: usize,
    outputs_found_existing: usize,
    deletions: usize,
    restores: usize,
    txids_checked: usize,
    staging_files: usize,
    typical_run_ms: f64,
    typical_work_ms: f64,
    violations: Vec<String>,
}

impl Figures {
    fn violation(&mut self, it: usize, msg: String) {
        eprintln!("VIOLATION (iteration {it}): {msg}");
        self.violations.push(format!("iteration {it}: {msg}"));
    }

    fn summary(&self, seed: u64, secs: f64) -> String {
        let p = &self.phases;
        format!(
            "crash summary: seed {seed}, {} iterations ({} transactions) in {secs:.1} s; \
             kills mid-run {}, exited before the kill {}, left to finish {}; \
             killed runs by phase: idle {}, before outputs {}, between outputs {}, \
             before deletions {}, mid deletions {}, after deletions {}; \
             outputs written {}, found already written {}; deletions {}; \
             restores checked {} (byte for byte), TXIDs checked restorable {}; \
             orphaned staging files {}; typical run {:.1} ms idle, {:.1} ms with work; violations {}",
            self.iterations,
            self.transactions,
            self.killed_mid_run,
            self.exited_before_kill,
            self.left_to_finish,
            p.idle,
            p.before_outputs,
            p.between_outputs,
            p.before_deletions,
            p.mid_deletions,
            p.after_deletions,
            self.outputs_written,
            self.outputs_found_existing,
            self.deletions,
            self.restores,
            self.txids_checked,
            self.staging_files,
            self.typical_run_ms,
            self.typical_work_ms,
            self.violations.len()
        )
    }
}

struct Harness {
    rt: tokio::runtime::Runtime,
    tmp: tempfile::TempDir,
    bucket_dir: std::path::PathBuf,
    bucket: Bucket,
    cfg: Config,
    cfg_path: std::path::PathBuf,
    w: Workload,
    now: i64,
}

/// How a child run ended.
struct RunEnd {
    killed: bool,
    success: bool,
    elapsed: Duration,
    stdout: String,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let bucket_dir = tmp.path().join("bucket");
        std::fs::create_dir(&bucket_dir).unwrap();
        let bucket = Bucket::open(bucket_dir.to_str().unwrap()).unwrap();
        let cfg = Config::from_json(SMALL_CONFIG).unwrap();
        let cfg_path = tmp.path().join("small.json");
        std::fs::write(&cfg_path, SMALL_CONFIG).unwrap();
        let wdir = tmp.path().join("work");
        std::fs::create_dir(&wdir).unwrap();
        let w = Workload::new(&wdir, seed);
        Harness {
            rt,
            tmp,
            bucket_dir,
            bucket,
            cfg,
            cfg_path,
            w,
            now: T0,
        }
    }

    fn db(&self) -> String {
        join(self.bucket.prefix(), DB)
    }

    /// Commits `n` transactions and uploads their L0 files.
    fn write(&mut self, n: u64) {
        let db = self.db();
        for _ in 0..n {
            self.now += 3_000;
            let (txid, ltx) = self.w.step(self.now);
            self.rt
                .block_on(put_l0(&self.bucket, &db, Layout::LtxDir, txid, ltx));
        }
    }

    fn last_txid(&self) -> u64 {
        self.w.txid
    }

    /// The policy clock of the runs: just after the last write.
    fn clock(&self) -> i64 {
        self.now + 1_500
    }

    /// Starts a run; kills it after `kill_after` (None: waits for it).
    fn run(&self, kill_after: Option<Duration>) -> RunEnd {
        let stderr = std::fs::File::create(self.tmp.path().join("stderr.log")).unwrap();
        let start = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ltx-compactor"))
            .arg("run")
            .arg(&self.bucket_dir)
            .arg("--once")
            .arg("--json")
            .arg("--config")
            .arg(&self.cfg_path)
            .arg("--now-ms")
            .arg(self.clock().to_string())
            // Every other run writes its outputs with multipart uploads
            // (tiny parts), so kills also land between parts.
            .args(if (self.now / 3_000) % 2 == 0 {
                &["--single-put-limit", "1", "--part-size", "8192"][..]
            } else {
                &[][..]
            })
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap();
        if let Some(d) = kill_after {
            std::thread::sleep(d);
            // SIGKILL; harmless if the child has already exited (not reaped yet).
            let _ = child.kill();
        }
        let out = child.wait_with_output().unwrap();
        let elapsed = start.elapsed();
        use std::os::unix::process::ExitStatusExt;
        RunEnd {
            killed: out.status.signal() == Some(9),
            success: out.status.success(),
            elapsed,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }

    fn stderr_tail(&self) -> String {
        let s = std::fs::read_to_string(self.tmp.path().join("stderr.log")).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(5)..].join(" | ")
    }

    /// The catalog with header timestamps.
    fn catalog(&self) -> Vec<LtxObject> {
        let db = self.db();
        self.rt.block_on(async {
            let (mut cat, _) = self.bucket.catalog(&db).await.unwrap();
            let mut cache = Default::default();
            self.bucket
                .fill_timestamps(&mut cat, &mut cache)
                .await
                .unwrap();
            cat
        })
    }

    /// What a pass at the runs' clock would do over `cat` (as the binary plans it).
    fn plan(&self, cat: &[LtxObject]) -> PassPlan {
        let Some(loc) = DbLocation::detect(cat) else {
            return PassPlan::default();
        };
        let loc = DbLocation {
            db: self.db(),
            ..loc
        };
        plan_pass_at(cat, &self.cfg, self.clock(), &loc)
    }

    /// Restores `txid` and compares it with the saved state.
    fn restore_matches(&self, txid: u64) -> Result<(), String> {
        let db = self.db();
        let out = self.tmp.path().join("restored.db");
        let got = self.rt.block_on(async {
            let (p, _) = plan(&self.bucket, &db, Target::Txid(TxId(txid)))
                .await
                .map_err(|e| format!("{e:#}"))?;
            let opts = RestoreOptions {
                force: true,
                ..Default::default()
            };
            let rep = restore_to_file(&self.bucket, &db, &p, &out, &opts)
                .await
                .map_err(|e| format!("{e:#}"))?;
            if rep.txid != TxId(txid) {
                return Err(format!("restored {} instead", rep.txid));
            }
            std::fs::read(&out).map_err(|e| e.to_string())
        });
        let got = got.map_err(|e| format!("restoring TXID {txid}: {e}"))?;
        let want = &self.w.states[txid as usize - 1];
        assert_eq!(want.0, txid);
        if got != want.2 {
            return Err(format!(
                "restoring TXID {txid}: database differs from the saved state ({} vs {} bytes)",
                got.len(),
                want.2.len()
            ));
        }
        Ok(())
    }

    /// At the first violation: copies the bucket and prints what the run
    /// was planned to do and what changed, for the report.
    fn keep_evidence(
        &self,
        seed: u64,
        it: usize,
        planned: &PassPlan,
        before: &BTreeSet<String>,
        end: &RunEnd,
    ) {
        let keep = std::env::temp_dir().join(format!("ltx-crash-seed{seed}-it{it}"));
        let _ = std::fs::remove_dir_all(&keep);
        let ok = Command::new("cp")
            .arg("-a")
            .arg(&self.bucket_dir)
            .arg(&keep)
            .status()
            .is_ok_and(|s| s.success());
        let after: BTreeSet<String> = self.catalog().into_iter().map(|o| o.key).collect();
        eprintln!(
            "first violation at iteration {it} (clock {}, last TXID {}); run killed {} after {:?}; bucket kept in {} ({ok})",
            self.clock(),
            self.last_txid(),
            end.killed,
            end.elapsed,
            keep.display()
        );
        for c in &planned.compactions {
            let ins: Vec<&str> = c.inputs.iter().map(|i| i.key.as_str()).collect();
            eprintln!("  planned {:?} {} <- {ins:?}", c.kind, c.output_key);
        }
        for d in &planned.deletions {
            eprintln!("  planned delete {}", d.key);
        }
        for k in after.difference(before) {
            eprintln!("  added {k}");
        }
        for k in before.difference(&after) {
            eprintln!("  removed {k}");
        }
        for k in &after {
            eprintln!("  now {k}");
        }
        eprintln!("  stderr: {}", self.stderr_tail());
    }

    /// Files an interrupted upload left behind (`key#N`; never listed).
    fn staging_files(&self) -> usize {
        fn walk(p: &std::path::Path, n: &mut usize) {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                let path = e.path();
                if path.is_dir() {
                    walk(&path, n);
                } else if let Some((_, suffix)) = e.file_name().to_string_lossy().split_once('#') {
                    if !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()) {
                        *n += 1;
                    }
                }
            }
        }
        let mut n = 0;
        walk(&self.bucket_dir, &mut n);
        n
    }

    /// Checks the bucket; returns the violations found and counts restores.
    fn check(&self, rng: &mut Rng, f: &mut Figures, restores: usize) -> Vec<String> {
        let mut v = Vec::new();
        let cat = self.catalog();
        for p in check_contiguity(&cat) {
            v.push(format!("contiguity: {p}"));
        }
        // Every LTX key is a whole file matching its name.
        let metas: Vec<_> = self.rt.block_on(async {
            let mut out = Vec::new();
            for o in &cat {
                out.push((o, self.bucket.read_meta(&o.key, o.size).await));
            }
            out
        });
        for (o, m) in metas {
            match m {
                Ok(m) if m.header.min_txid == o.min_txid && m.header.max_txid == o.max_txid => {}
                Ok(m) => v.push(format!(
                    "{} holds TXIDs {}-{}",
                    o.key, m.header.min_txid, m.header.max_txid
                )),
                Err(e) => v.push(format!("{} is not a valid LTX file: {e:#}", o.key)),
            }
        }
        let last = self.last_txid();
        let idx = RestoreIndex::new(&cat);
        if idx.latest() != Some(TxId(last)) {
            v.push(format!(
                "latest restorable TXID is {:?}, last written {last}",
                idx.latest()
            ));
        }
        let compacted = cat
            .iter()
            .filter(|o| o.level >= 1)
            .map(|o| o.max_txid.0)
            .max()
            .unwrap_or(0);
        for t in compacted + 1..=last {
            f.txids_checked += 1;
            if !idx.reachable(TxId(t)) {
                v.push(format!(
                    "TXID {t} (after the latest compacted TXID {compacted}) is not restorable"
                ));
            }
        }
        if compacted > 0 && !idx.reachable(TxId(compacted)) {
            v.push(format!(
                "latest compacted TXID {compacted} is not restorable"
            ));
        }
        // A sample of restores.
        let ends: Vec<u64> = idx.reachable_ends().map(|e| e.0 .0).collect();
        let compacted_ends: Vec<u64> = cat
            .iter()
            .filter(|o| o.level >= 1 && idx.reachable(o.max_txid))
            .map(|o| o.max_txid.0)
            .collect();
        let mut sample = BTreeSet::from([last]);
        if restores > 1 && !ends.is_empty() {
            sample.insert(ends[rng.below(ends.len() as u64) as usize]);
        }
        if restores > 2 && !compacted_ends.is_empty() {
            sample.insert(compacted_ends[rng.below(compacted_ends.len() as u64) as usize]);
        }
        if restores == usize::MAX {
            sample.extend(ends.iter().copied());
        }
        for t in sample {
            f.restores += 1;
            if let Err(e) = self.restore_matches(t) {
                v.push(e);
            }
        }
        v
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Counts the outputs of completed runs' JSON reports: (written, existed, deleted).
fn report_counts(stdout: &str) -> (usize, usize, usize) {
    let (mut w, mut e, mut d) = (0, 0, 0);
    for line in stdout.lines().filter(|l| l.starts_with('{')) {
        let r: serde_json::Value = serde_json::from_str(line).expect("pass report JSON");
        for o in r["written"].as_array().into_iter().flatten() {
            if o["existed"].as_bool() == Some(true) {
                e += 1;
            } else {
                w += 1;
            }
        }
        d += r["deleted"].as_array().map_or(0, |a| a.len());
    }
    (w, e, d)
}

#[test]
fn killed_compactor_loses_nothing() {
    let runs = env_u64("LTX_CRASH_RUNS", 200) as usize;
    let seed = env_u64("LTX_CRASH_SEED", 1);
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let mut h = Harness::new(seed);
    let mut f = Figures::default();

    // Measure a whole run (process start to exit) before killing any.
    let mut durations = Vec::new();
    for _ in 0..6 {
        h.write(1 + rng.below(3));
        let end = h.run(None);
        assert!(end.success, "warm-up run failed: {}", h.stderr_tail());
        durations.push(end.elapsed.as_secs_f64() * 1e3);
    }
    durations.sort_by(f64::total_cmp);
    let mut typical = durations[durations.len() / 2];
    // Runs with work take longer; their kills aim at the work (the last
    // part of the run) two times in three.
    let mut typical_work = typical * 1.5;

    for it in 0..runs {
        h.write(1 + rng.below(3));
        let cat = h.catalog();
        let before: BTreeSet<String> = cat.iter().map(|o| o.key.clone()).collect();
        let planned = h.plan(&cat);
        let outputs: BTreeSet<&str> = planned
            .compactions
            .iter()
            .map(|c| c.output_key.as_str())
            .collect();
        let deletable: BTreeSet<&str> = planned.deletions.iter().map(|o| o.key.as_str()).collect();
        let work = !outputs.is_empty() || !deletable.is_empty();

        let finish = rng.below(7) == 0;
        let u = rng.below(10_000) as f64 / 10_000.0;
        let delay = (!finish).then(|| {
            let ms = if work && rng.below(3) != 0 {
                typical_work * (0.5 + 0.7 * u)
            } else {
                (if work { typical_work } else { typical }) * 1.3 * u
            };
            Duration::from_micros((ms * 1e3) as u64)
        });
        let end = h.run(delay);
        f.iterations += 1;
        let mut v = Vec::new();
        if end.killed {
            f.killed_mid_run += 1;
            let after: BTreeSet<String> = h.catalog().into_iter().map(|o| o.key).collect();
            let added: Vec<&String> = after.difference(&before).collect();
            let removed: Vec<&String> = before.difference(&after).collect();
            for k in &added {
                if !outputs.contains(k.as_str()) {
                    v.push(format!("{k} appeared but was not a planned output"));
                }
            }
            for k in &removed {
                if !deletable.contains(k.as_str()) {
                    v.push(format!("{k} was deleted but the plan kept it"));
                }
            }
            let present = outputs.iter().filter(|k| after.contains(**k)).count();
            let p = &mut f.phases;
            if outputs.is_empty() && deletable.is_empty() {
                p.idle += 1;
            } else if removed.is_empty() && present == 0 {
                p.before_outputs += 1;
            } else if removed.is_empty() && present < outputs.len() {
                p.between_outputs += 1;
            } else if removed.is_empty() {
                p.before_deletions += 1;
            } else if removed.len() < deletable.len() {
                p.mid_deletions += 1;
            } else {
                p.after_deletions += 1;
            }
        } else {
            if finish {
                f.left_to_finish += 1;
                let ms = end.elapsed.as_secs_f64() * 1e3;
                if work {
                    typical_work = 0.7 * typical_work + 0.3 * ms;
                } else {
                    typical = 0.8 * typical + 0.2 * ms;
                }
            } else {
                f.exited_before_kill += 1;
            }
            if !end.success {
                v.push(format!(
                    "a run that was not killed failed: {}",
                    h.stderr_tail()
                ));
            }
            let (w, e, d) = report_counts(&end.stdout);
            f.outputs_written += w;
            f.outputs_found_existing += e;
            f.deletions += d;
        }
        v.extend(h.check(&mut rng, &mut f, 3));
        if !v.is_empty() && f.violations.is_empty() {
            h.keep_evidence(seed, it, &planned, &before, &end);
        }
        for msg in v {
            f.violation(it, format!("seed {seed}: {msg}"));
        }
        if it % 50 == 49 {
            eprintln!(
                "{} iterations, {:.1} s, typical run {typical:.1} ms ({typical_work:.1} ms with work), {} violations",
                it + 1,
                started.elapsed().as_secs_f64(),
                f.violations.len()
            );
        }
    }
    f.transactions = h.last_txid();
    f.typical_run_ms = typical;
    f.typical_work_ms = typical_work;

    // Faults stop: one clean run converges, a second has nothing to do.
    let end = h.run(None);
    if !end.success {
        f.violation(runs, format!("clean run failed: {}", h.stderr_tail()));
    }
    let (w, e, d) = report_counts(&end.stdout);
    f.outputs_written += w;
    f.outputs_found_existing += e;
    f.deletions += d;
    let again = h.run(None);
    let (w2, e2, d2) = report_counts(&again.stdout);
    if !again.success || w2 != 0 || d2 != 0 {
        f.violation(
            runs,
            format!(
                "second clean run did not converge: exit ok {}, {w2} written, {e2} existing, {d2} deleted",
                again.success
            ),
        );
    }
    for msg in h.check(&mut rng, &mut f, usize::MAX) {
        f.violation(runs, msg);
    }
    f.staging_files = h.staging_files();

    let summary = f.summary(seed, started.elapsed().as_secs_f64());
    eprintln!("{summary}");
    assert!(
        f.violations.is_empty(),
        "{summary}\nfirst violations:\n{}",
        f.violations[..f.violations.len().min(10)].join("\n")
    );
    assert!(f.killed_mid_run >= runs / 3, "too few kills landed mid-run");
}

/// The state a kill in the middle of a pass's deletions can leave: the
/// outputs written, and one L0 file in the middle of a compacted range
/// still present while its predecessor is gone (deletions run 16 at a time
/// in no particular order). Built deterministically from a completed pass
/// by putting one deleted file back; the next clean run must heal it (exit
/// 0, every level contiguous) and lose nothing.
#[test]
fn interrupted_deletions_heal() {
    let mut rng = Rng::new(5);
    let mut h = Harness::new(5);
    let snap = h.tmp.path().join("snapshot");
    let mut f = Figures::default();
    let mut leftover = None;
    for _ in 0..300 {
        h.write(1 + rng.below(3));
        let cat = h.catalog();
        let planned = h.plan(&cat);
        let mut l0: Vec<&LtxObject> = planned.deletions.iter().filter(|o| o.level == 0).collect();
        l0.sort_by_key(|o| o.max_txid);
        let middle = l0.windows(3).find(|w| {
            w[1].max_txid.0 == w[0].max_txid.0 + 1 && w[2].max_txid.0 == w[1].max_txid.0 + 1
        });
        let Some(w) = middle else {
            assert!(h.run(None).success, "{}", h.stderr_tail());
            continue;
        };
        let key = w[1].key.clone();
        let _ = std::fs::remove_dir_all(&snap);
        assert!(Command::new("cp")
            .arg("-a")
            .arg(&h.bucket_dir)
            .arg(&snap)
            .status()
            .unwrap()
            .success());
        assert!(h.run(None).success, "{}", h.stderr_tail());
        std::fs::copy(snap.join(&key), h.bucket_dir.join(&key)).unwrap();
        leftover = Some(key);
        break;
    }
    let key = leftover.expect("a pass deleting three consecutive L0 files");
    eprintln!("put back {key} after its pass");
    let end = h.run(None);
    let v = h.check(&mut rng, &mut f, usize::MAX);
    assert!(
        end.success && v.is_empty(),
        "after putting back {key}: run exit ok {}: {}; violations: {v:?}",
        end.success,
        h.stderr_tail()
    );
}
