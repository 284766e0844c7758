//! Counters of a running compactor and their Prometheus text form.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::compact::PassReport;

/// Counters, shared by the passes of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    passes: AtomicU64,
    failures: AtomicU64,
    lease_busy: AtomicU64,
    files_compacted: AtomicU64,
    bytes_compacted: AtomicU64,
    bytes_read: AtomicU64,
    files_deleted: AtomicU64,
    contiguity_problems: AtomicU64,
    /// Per database, per level: lag (ms) at its last pass.
    lag: Mutex<BTreeMap<String, BTreeMap<u8, i64>>>,
}

impl Metrics {
    /// Records a finished pass.
    pub fn pass(&self, r: &PassReport) {
        self.passes.fetch_add(1, Ordering::Relaxed);
        let new = r.written.iter().filter(|w| !w.existed).count() as u64;
        self.files_compacted.fetch_add(new, Ordering::Relaxed);
        self.bytes_compacted
            .fetch_add(r.bytes_written, Ordering::Relaxed);
        self.bytes_read.fetch_add(r.bytes_read, Ordering::Relaxed);
        self.files_deleted
            .fetch_add(r.deleted.len() as u64, Ordering::Relaxed);
        self.contiguity_problems
            .fetch_add(r.contiguity.len() as u64, Ordering::Relaxed);
        self.lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(r.db.clone(), r.level_lag_ms.clone());
    }
    /// Records a failed pass.
    pub fn failure(&self) {
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
    /// Records a database skipped because another compactor holds its lease.
    pub fn lease_busy(&self) {
        self.lease_busy.fetch_add(1, Ordering::Relaxed);
    }
    /// Passes that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition (format 0.0.4). Lag per level is the
    /// maximum over databases.
    ///
    /// ```
    /// let m = ltx_compactor::metrics::Metrics::default();
    /// m.failure();
    /// assert!(m.render().contains("ltx_compactor_pass_failures_total 1\n"));
    /// ```
    pub fn render(&self) -> String {
        let mut s = String::new();
        let counters = [
            ("passes_total", "Compaction passes finished.", &self.passes),
            (
                "pass_failures_total",
                "Compaction passes that failed.",
                &self.failures,
            ),
            (
                "lease_busy_total",
                "Databases skipped: another compactor held the lease.",
                &self.lease_busy,
            ),
            (
                "files_compacted_total",
                "Output files written.",
                &self.files_compacted,
            ),
            (
                "bytes_compacted_total",
                "Output bytes written.",
                &self.bytes_compacted,
            ),
            (
                "bytes_read_total",
                "Input bytes read (indexes and frames).",
                &self.bytes_read,
            ),
            (
                "files_deleted_total",
                "Files deleted by retention.",
                &self.files_deleted,
            ),
            (
                "contiguity_problems_total",
                "Level contiguity problems found after passes.",
                &self.contiguity_problems,
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(s, "# HELP ltx_compactor_{name} {help}");
            let _ = writeln!(s, "# TYPE ltx_compactor_{name} counter");
            let _ = writeln!(s, "ltx_compactor_{name} {}", v.load(Ordering::Relaxed));
        }
        let lag = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        let mut max: BTreeMap<u8, i64> = BTreeMap::new();
        for levels in lag.values() {
            for (&l, &ms) in levels {
                let e = max.entry(l).or_insert(ms);
                *e = (*e).max(ms);
            }
        }
        let _ = writeln!(
            s,
            "# HELP ltx_compactor_databases Databases seen by the last passes."
        );
        let _ = writeln!(s, "# TYPE ltx_compactor_databases gauge");
        let _ = writeln!(s, "ltx_compactor_databases {}", lag.len());
        let _ = writeln!(
            s,
            "# HELP ltx_compactor_level_lag_seconds Age of the newest file of each level at the last pass (max over databases)."
        );
        let _ = writeln!(s, "# TYPE ltx_compactor_level_lag_seconds gauge");
        for (l, ms) in max {
            let _ = writeln!(
                s,
                "ltx_compactor_level_lag_seconds{{level=\"{l}\"}} {:.3}",
                ms as f64 / 1000.0
            );
        }
        s
    }
}
