//! The harness of the kill tests (`ltx apply` in `reliability.rs`,
//! `ltx restore` in `restore.rs`): time a whole run of the command, then
//! SIGKILL it after random delays up to 1.3× that time and classify what
//! the target holds afterwards: the state before, the state after, or
//! anything else (a defect).
#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

/// The workspace's SplitMix64 ([`ltx_core::rng`]).
pub type Rng = ltx_core::rng::SplitMix64;

/// The command under test and how to observe its target.
pub struct Subject<'a> {
    /// Starts the command (stdout and stderr discarded).
    pub spawn: &'a dyn Fn() -> Child,
    /// Puts the target back in the state before.
    pub reset: &'a dyn Fn(),
    /// The target's bytes now.
    pub read: &'a dyn Fn() -> Vec<u8>,
    /// Files beside the target that are not the target (temp files).
    pub leftovers: &'a dyn Fn() -> Vec<String>,
    /// Called after each kill with (run, the target is the "before" state,
    /// temp files were left); returns whether it re-ran the command over
    /// what the kill left (it asserts that this succeeds).
    pub after_kill: &'a dyn Fn(usize, bool, bool) -> bool,
}

/// What the kills left.
#[derive(Debug, Default)]
pub struct Outcomes {
    /// Median time of a whole run.
    pub typical: Duration,
    /// Kill delays were drawn from `0..max_delay`.
    pub max_delay: Duration,
    pub saw_before: u32,
    pub saw_after: u32,
    /// Runs in which the command had already exited when killed.
    pub exited_first: u32,
    /// Runs that left temp files beside the target.
    pub leftovers: u32,
    /// Runs after which `after_kill` re-ran the command.
    pub reran: u32,
    /// Runs whose target was neither state.
    pub bad: Vec<String>,
}

/// Runs the command three times whole (each must give `after`), then
/// `runs` times killed at a random moment (seeded by `seed`).
pub fn kill_sweep(s: &Subject, before: &[u8], after: &[u8], runs: usize, seed: u64) -> Outcomes {
    assert_ne!(before, after, "the command must change the target");
    let mut full = Vec::new();
    for _ in 0..3 {
        (s.reset)();
        let t = Instant::now();
        assert!((s.spawn)().wait().unwrap().success(), "a whole run failed");
        full.push(t.elapsed());
        assert!((s.read)() == after, "a whole run gave another state");
    }
    full.sort();
    let mut o = Outcomes {
        typical: full[1],
        max_delay: full[1] * 13 / 10,
        ..Default::default()
    };
    let max_us = (o.max_delay.as_micros() as u64).max(1);
    let mut rng = Rng::new(seed);
    for run in 0..runs {
        (s.reset)();
        let delay = Duration::from_micros(rng.next_u64() % max_us);
        let mut child = (s.spawn)();
        std::thread::sleep(delay);
        if let Ok(Some(_)) = child.try_wait() {
            o.exited_first += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let got = (s.read)();
        let left = !(s.leftovers)().is_empty();
        o.leftovers += left as u32;
        let is_before = got == before;
        if is_before {
            o.saw_before += 1;
        } else if got == after {
            o.saw_after += 1;
        } else {
            o.bad.push(format!(
                "run {run}: delay {delay:?}: the target is neither the state before nor after ({} bytes)",
                got.len()
            ));
        }
        if (s.after_kill)(run, is_before, left) {
            o.reran += 1;
        }
    }
    o
}

impl Outcomes {
    /// The line a test prints: what the target (`target`, its two states
    /// named `names`) held after the kills of `command`, and what
    /// `after_kill` did (`reran`).
    pub fn summary(&self, target: &str, names: (&str, &str), command: &str, reran: &str) -> String {
        format!(
            "  {target} after the kill: {} {}, {} {} (in {} runs {command} had already exited), neither {}; runs leaving temp files: {}; {reran}: {}",
            names.0,
            self.saw_before,
            names.1,
            self.saw_after,
            self.exited_first,
            self.bad.len(),
            self.leftovers,
            self.reran
        )
    }

    /// Fails on any mixed state, or when the delays never reached one of
    /// the two outcomes (the sweep would prove nothing).
    pub fn assert_held(&self) {
        assert!(self.bad.is_empty(), "{}", self.bad.join("\n"));
        assert!(
            self.saw_before > 0 && self.saw_after > 0,
            "the delays must cover both outcomes: {self:?}"
        );
    }
}
