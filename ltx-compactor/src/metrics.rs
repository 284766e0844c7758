//! Counters of a running compactor and their Prometheus text form.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::counting::{RequestCounter, RequestCounts};
use crate::report::{PassReport, RoundReport};

/// Counters, shared by the passes of one process.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Every request of the compactor's bucket (live).
    requests: Option<RequestCounter>,
    rounds: AtomicU64,
    idle: AtomicU64,
    /// The last round finished.
    last_round: Mutex<Option<RoundReport>>,
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

/// The request kinds, with their names (as in [`RequestCounts`]' JSON).
fn kinds(n: &RequestCounts) -> [(&'static str, u64); 8] {
    [
        ("list", n.list),
        ("get", n.get),
        ("get_range", n.get_range),
        ("head", n.head),
        ("put", n.put),
        ("multipart_part", n.multipart_part),
        ("copy", n.copy),
        ("delete", n.delete),
    ]
}

impl Metrics {
    /// Metrics that also report the requests `counter` counts (a bucket's:
    /// [`crate::store::Bucket::counter`]), live.
    pub fn counting(counter: RequestCounter) -> Metrics {
        Metrics {
            requests: Some(counter),
            ..Default::default()
        }
    }

    /// Records a finished round.
    pub fn round(&self, r: &RoundReport) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        *self.last_round.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.clone());
    }

    /// Records an idle database (nothing listed changed, nothing due) and
    /// its lag per level now.
    pub fn idle(&self, db: &str, lag: BTreeMap<u8, i64>) {
        self.idle.fetch_add(1, Ordering::Relaxed);
        let mut m = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        match m.get_mut(db) {
            Some(l) => *l = lag,
            None => {
                m.insert(db.to_string(), lag);
            }
        }
    }

    /// Forgets the lag of databases `keep` says no to (gone, or another
    /// shard's).
    pub fn keep_databases(&self, keep: impl Fn(&str) -> bool) {
        self.lag
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|db, _| keep(db));
    }

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
    /// maximum over databases. Requests by kind: every request so far
    /// (`ltx_compactor_requests_total{kind=…}`), and those of the last round
    /// (`ltx_compactor_last_round_requests{kind=…}`, with the root
    /// listing's own in `ltx_compactor_last_round_listing_requests`; the
    /// `--state` GET and PUT are in the first two, not the listing's); per
    /// database they are in the logs and `--json` reports (a label per
    /// database would make one series per tenant).
    ///
    /// ```
    /// let m = ltx_compactor::metrics::Metrics::default();
    /// m.failure();
    /// assert!(m.render().contains("ltx_compactor_pass_failures_total 1\n"));
    /// ```
    pub fn render(&self) -> String {
        let mut s = String::new();
        let counters = [
            (
                "rounds_total",
                "Rounds over the root finished.",
                &self.rounds,
            ),
            (
                "idle_total",
                "Databases left alone in a round: listing unchanged, nothing due, no request.",
                &self.idle,
            ),
            (
                "passes_total",
                "Database passes finished (listing changed or something due).",
                &self.passes,
            ),
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
        if let Some(c) = &self.requests {
            let _ = writeln!(
                s,
                "# HELP ltx_compactor_requests_total Store requests by kind (list: pages of up to 1,000 keys)."
            );
            let _ = writeln!(s, "# TYPE ltx_compactor_requests_total counter");
            for (k, v) in kinds(&c.snapshot()) {
                let _ = writeln!(s, "ltx_compactor_requests_total{{kind=\"{k}\"}} {v}");
            }
        }
        if let Some(r) = &*self.last_round.lock().unwrap_or_else(|e| e.into_inner()) {
            for (name, help, n) in [
                (
                    "last_round_requests",
                    "Store requests of the last round by kind, the root listing included.",
                    &r.requests,
                ),
                (
                    "last_round_listing_requests",
                    "Store requests of the last round's root listing by kind.",
                    &r.listing,
                ),
            ] {
                let _ = writeln!(s, "# HELP ltx_compactor_{name} {help}");
                let _ = writeln!(s, "# TYPE ltx_compactor_{name} gauge");
                for (k, v) in kinds(n) {
                    let _ = writeln!(s, "ltx_compactor_{name}{{kind=\"{k}\"}} {v}");
                }
            }
            let _ = writeln!(
                s,
                "# HELP ltx_compactor_last_round_databases This shard's databases in the last round, by what they needed."
            );
            let _ = writeln!(s, "# TYPE ltx_compactor_last_round_databases gauge");
            for (k, v) in [
                ("all", r.databases),
                ("idle", r.idle),
                ("changed", r.changed),
                ("due", r.due),
                ("lease_busy", r.lease_busy),
                ("failed", r.failed),
            ] {
                let _ = writeln!(s, "ltx_compactor_last_round_databases{{state=\"{k}\"}} {v}");
            }
            let _ = writeln!(
                s,
                "# HELP ltx_compactor_last_round_keys Keys the last round's root listing returned."
            );
            let _ = writeln!(s, "# TYPE ltx_compactor_last_round_keys gauge");
            let _ = writeln!(s, "ltx_compactor_last_round_keys {}", r.keys);
            let _ = writeln!(
                s,
                "# HELP ltx_compactor_last_round_duration_seconds Wall time of the last round."
            );
            let _ = writeln!(s, "# TYPE ltx_compactor_last_round_duration_seconds gauge");
            let _ = writeln!(
                s,
                "ltx_compactor_last_round_duration_seconds {:.3}",
                r.elapsed_ms as f64 / 1000.0
            );
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
