//! The compaction job ([`Compactor::run`]): rounds over every database
//! under the bucket (or this worker's shard of them), once, or again at
//! every slot boundary (plus the settle delay) until shut down.
//!
//! A round ([`Compactor::round`]) costs requests in proportion to the keys
//! in the root and to what changed, not to databases × levels:
//!
//! 1. One paginated listing of the root, no delimiter ([`Bucket::scan`]:
//!    `keys / 1000` list requests), streamed into compact per-database
//!    file entries of this shard ([`crate::fleet::Scan`]).
//! 2. Per database, [`RunOptions::concurrency`] at a time, the decision
//!    ([`crate::fleet::decide`]): the listing is compared with what the
//!    compactor remembers from its last round
//!    ([`crate::fleet::same_listing`]); header timestamps already read are
//!    carried over ([`crate::fleet::carry_timestamps`]), new files' headers
//!    read (one ranged GET each); the policy plans from that, without I/O.
//!    - *idle* (same listing, nothing due): no request at all;
//!    - *nothing due* (listing changed, or first seen, but nothing to
//!      compact or delete): only the new files' header reads (unless its
//!      levels have contiguity problems: then the leased path, whose
//!      owner check names another compactor's files);
//!    - *due*: the lease, one listing of the database under it (the plan
//!      that runs is made from a listing taken under the lease), the owner
//!      record, the compaction, the release.
//!
//! So a steady-state round over N databases and K keys makes about
//! `K/1000 + (databases with something due)` list requests, and an idle
//! database costs only its share of the root listing. A database whose
//! plan is empty and whose levels are contiguous is never leased: another
//! compactor's level files ([`crate::owner`]) are found (and the pass
//! refused) by the first pass that has something to write or finds a
//! level broken.
//!
//! [`Bucket::scan`]: crate::store::Bucket::scan
//!
//! What the compactor remembers lives in the process; with
//! [`RunOptions::state`] (`--state`) it is also written at the end of
//! every round ([`crate::fleet::write_state`]: per database, its files and
//! header timestamps) and read by the first round of the next process
//! while the root is listed, if it is of the same root, shard and format
//! version ([`crate::fleet::read_state`]); that first round is then like a
//! daemon's later round (an idle database costs nothing, a changed one its
//! new headers). A missing or unusable state is a first round (logged: info
//! or a warning saying why), a failed write a warning: neither fails the
//! round. The state's requests (its GET, its PUT) are the round's.
//!
//! Shutdown is a future the caller gives (`ltx-compactor run` resolves it
//! on SIGTERM or Ctrl-C; a test may pass a channel's receiver or
//! [`std::future::pending`]). When it resolves, running passes stop at
//! their next safe point ([`Compactor::request_stop`]: between
//! compactions, before deletions) and `run` returns once they have;
//! nothing is cut in the middle of a write. Logs go through `tracing`;
//! each pass report is also handed to [`RunOptions::on_pass`].

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use tracing::{error, info, warn};

use crate::catalog::DbLocation;
use crate::compact::{contiguity, level_lag, Compactor, PassReport};
use crate::fleet::{
    carry_timestamps, catalog_of, decide, entries_of, read_state, same_listing, write_state,
    Decision, FileEntry, Shard, STATE_MAX_BYTES,
};
use crate::lease::Lease;
use crate::policy::plan_pass_at;
pub use crate::report::RoundReport;
use crate::store::{now_ms, Bucket, StateLocation};

/// What to do with each pass report (print it, …).
pub type OnPass = Arc<dyn Fn(&PassReport) + Send + Sync>;

/// What to do with each round report.
pub type OnRound = Arc<dyn Fn(&RoundReport) + Send + Sync>;

/// What one database's turn in a round came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Outcome {
    /// Its listing changed since the last round (or it was first seen).
    changed: bool,
    /// Something was due.
    due: bool,
    /// Due, but another compactor held the lease.
    lease_busy: bool,
    /// An error, a refusal or a contiguity problem.
    failed: bool,
}

/// How [`Compactor::run`] works through a bucket.
#[derive(Clone)]
pub struct RunOptions {
    /// One round over every database, then return (cron, CronJob).
    pub once: bool,
    /// Databases compacted at once.
    pub concurrency: usize,
    /// Lease holder name.
    pub holder: String,
    /// Lease time to live, ms.
    pub lease_ttl_ms: i64,
    /// Policy clock override, ms since the epoch (tests, replays); `None`:
    /// the system clock at each pass.
    pub now_ms: Option<i64>,
    /// Take only the databases of this shard ([`crate::fleet`]); `None`:
    /// every database.
    pub shard: Option<Shard>,
    /// Where to keep what the rounds know (`--state`): read by the first
    /// round of the compactor, written at the end of every round (see
    /// [`Compactor::round`]). `None`: memory only (a new process starts
    /// with a first round).
    pub state: Option<StateLocation>,
    /// Called with every pass report.
    pub on_pass: Option<OnPass>,
    /// Called with every round report.
    pub on_round: Option<OnRound>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            once: false,
            concurrency: 4,
            holder: "ltx-compactor".into(),
            lease_ttl_ms: 60_000,
            now_ms: None,
            shard: None,
            state: None,
            on_pass: None,
            on_round: None,
        }
    }
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("once", &self.once)
            .field("concurrency", &self.concurrency)
            .field("holder", &self.holder)
            .field("lease_ttl_ms", &self.lease_ttl_ms)
            .field("now_ms", &self.now_ms)
            .field("shard", &self.shard)
            .field("state", &self.state.as_ref().map(|s| s.to_string()))
            .field("on_pass", &self.on_pass.is_some())
            .field("on_round", &self.on_round.is_some())
            .finish()
    }
}

impl Compactor {
    /// Runs the job (see the module docs) until `shutdown` resolves, or
    /// for one round with [`RunOptions::once`]. Returns whether every pass
    /// succeeded (no error, no refusal, no contiguity problem); errors are
    /// logged and counted in [`Compactor::metrics`], never returned: one
    /// database's failure does not stop the others.
    pub async fn run(&self, opts: &RunOptions, shutdown: impl Future<Output = ()>) -> bool {
        let shutdown = futures::FutureExt::fuse(shutdown);
        futures::pin_mut!(shutdown);
        let mut stopping = false;
        let mut all_ok = true;
        loop {
            let round = self.round(opts);
            futures::pin_mut!(round);
            let ok = loop {
                tokio::select! {
                    r = &mut round => break r.ok,
                    () = &mut shutdown, if !stopping => {
                        stopping = true;
                        self.shutdown_requested();
                    }
                }
            };
            all_ok &= ok;
            if opts.once || stopping || self.stop_requested() {
                break;
            }
            // Wake at the next slot boundary (plus the settle delay).
            let slot = self.cfg.slot().max(1000);
            let now = now_ms();
            let next = (now.div_euclid(slot) + 1) * slot + self.cfg.settle;
            let wait = std::time::Duration::from_millis((next - now).max(100) as u64);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = &mut shutdown, if !stopping => {
                    stopping = true;
                    self.shutdown_requested();
                }
            }
            if stopping || self.stop_requested() {
                break;
            }
        }
        all_ok
    }

    fn shutdown_requested(&self) {
        warn!("shutdown requested: finishing the current step");
        self.request_stop();
    }

    /// One round over every database of the root (of this worker's shard
    /// with [`RunOptions::shard`]): see the module docs. Logs the round at
    /// info level and hands its report to [`RunOptions::on_round`];
    /// failures are logged and counted, never returned.
    pub async fn round(&self, opts: &RunOptions) -> RoundReport {
        let started = std::time::Instant::now();
        let n = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        let before = self.bucket.requests();
        let mut r = RoundReport {
            round: n,
            url: self.bucket.url().to_string(),
            shard: opts.shard.map(|s| s.to_string()),
            ok: true,
            ..Default::default()
        };
        let lister = self.bucket.with_own_counter();
        // The first round loads the state (if any) while the root is listed.
        let load = async {
            match &opts.state {
                Some(loc) if n == 1 => Some(self.load_state(loc, opts.shard).await),
                Some(_) => Some(("in memory".to_string(), None)),
                None => None,
            }
        };
        let (scan, loaded) = tokio::join!(lister.scan(opts.shard), load);
        if let Some((state, dbs)) = loaded {
            (r.state, r.state_loaded_databases) = (Some(state), dbs);
        }
        r.listing = lister.requests();
        match scan {
            Err(e) => {
                error!("{e:#}");
                self.metrics().failure();
                r.ok = false;
                r.error = Some(format!("{e:#}"));
            }
            Ok(scan) => {
                if scan.dbs.is_empty() {
                    warn!(url = self.bucket.url(), "no LTX databases found");
                }
                (r.keys, r.foreign_keys, r.other_shard_keys) =
                    (scan.keys, scan.foreign_keys, scan.other_shard_keys);
                r.ltx_files = scan.ltx_files();
                r.databases = scan.dbs.len() as u64;
                self.forget_unless(|db| scan.dbs.contains_key(db));
                self.metrics()
                    .keep_databases(|db| scan.dbs.contains_key(db));
                let outcomes: Vec<Outcome> = futures::stream::iter(scan.dbs)
                    .map(|(db, files)| async move { self.one_db(opts, db, files).await })
                    .buffer_unordered(opts.concurrency.max(1))
                    .collect()
                    .await;
                for o in outcomes {
                    r.idle += u64::from(!o.changed && !o.due && !o.failed);
                    r.changed += u64::from(o.changed);
                    r.due += u64::from(o.due);
                    r.lease_busy += u64::from(o.lease_busy);
                    r.failed += u64::from(o.failed);
                }
                r.ok = r.failed == 0;
                if let Some(loc) = &opts.state {
                    r.state_written = Some(self.save_state(loc, opts.shard).await);
                }
            }
        }
        if opts.state.is_some() && r.state_written.is_none() {
            r.state_written = Some(false);
        }
        r.requests = self.bucket.requests().since(&before);
        r.elapsed_ms = started.elapsed().as_millis() as u64;
        self.metrics().round(&r);
        info!(
            round = r.round,
            shard = r.shard.as_deref().unwrap_or("-"),
            databases = r.databases,
            idle = r.idle,
            changed = r.changed,
            due = r.due,
            failed = r.failed,
            keys = r.keys,
            state = r.state.as_deref().unwrap_or("-"),
            elapsed_ms = r.elapsed_ms,
            "round done: {} requests ({} listing the root)",
            r.requests,
            r.listing.total()
        );
        if let Some(f) = &opts.on_round {
            f(&r);
        }
        r
    }

    /// Reads the state at `loc` and, if it is one of this root and
    /// `shard`, remembers its databases' files (see [`RunOptions::state`]).
    /// Returns the round report's `state` and `state_loaded_databases`.
    /// Nothing here fails the round: a state that cannot be used is
    /// logged (a warning naming the location and why) and ignored.
    async fn load_state(&self, loc: &StateLocation, shard: Option<Shard>) -> (String, Option<u64>) {
        let started = std::time::Instant::now();
        let bytes = match loc.read(&self.bucket.counter(), STATE_MAX_BYTES).await {
            Ok(Some(b)) => b,
            Ok(None) => {
                info!(
                    state = %loc,
                    "no state yet: a first round (every header of the shard read)"
                );
                return ("none".into(), None);
            }
            Err(e) => {
                warn!(
                    state = %loc,
                    "ignoring the state: {e:#}; a first round (every header of the shard read)"
                );
                return (format!("ignored: {e:#}"), None);
            }
        };
        let root = state_root(&self.bucket);
        match read_state(&bytes, &root, shard) {
            Ok(st) => {
                let (dbs, files) = (st.dbs.len() as u64, st.files);
                drop(bytes);
                for (db, f) in st.dbs {
                    self.remember_loaded(db, f);
                }
                info!(
                    state = %loc,
                    databases = dbs,
                    files,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "state loaded"
                );
                (format!("loaded {dbs} databases"), Some(dbs))
            }
            Err(why) => {
                warn!(
                    state = %loc,
                    "ignoring the state: {loc}: {why}; a first round (every header of the shard read)"
                );
                (format!("ignored: {loc}: {why}"), None)
            }
        }
    }

    /// Writes what the compactor knows to `loc` (see [`RunOptions::state`]);
    /// whether it was written. A failure is a warning, not a failed round:
    /// the next run is a first round.
    async fn save_state(&self, loc: &StateLocation, shard: Option<Shard>) -> bool {
        if self.opts.dry_run {
            info!(state = %loc, "dry run: the state is not written");
            return false;
        }
        let started = std::time::Instant::now();
        let root = state_root(&self.bucket);
        let mut counts = (0, 0);
        let res = loc
            .write(&self.bucket.counter(), |w| {
                self.with_known(|known| {
                    let mut dbs: Vec<(&str, &[FileEntry])> = known
                        .iter()
                        .map(|(db, f)| (db.as_str(), f.as_slice()))
                        .collect();
                    dbs.sort_unstable_by_key(|d| d.0);
                    counts = write_state(w, &root, shard, dbs)?;
                    Ok(())
                })
            })
            .await;
        match res {
            Ok(bytes) => {
                info!(
                    state = %loc,
                    databases = counts.0,
                    files = counts.1,
                    bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "state written"
                );
                true
            }
            Err(e) => {
                warn!(
                    state = %loc,
                    "the state was not written: {e:#}; the next run starts with a first round"
                );
                false
            }
        }
    }

    /// One database's turn in a round (see the module docs).
    async fn one_db(&self, opts: &RunOptions, db: String, mut files: Vec<FileEntry>) -> Outcome {
        let mut out = Outcome::default();
        if self.stop_requested() {
            return out;
        }
        let db = db.as_str();
        let prev = self.known(db);
        let mut changed = prev.as_ref().is_none_or(|p| !same_listing(p, &files));
        if let Some(p) = &prev {
            // (A header not read yet, e.g. after a failed read: read it now.)
            changed |= carry_timestamps(p, &mut files) > 0;
        }
        out.changed = changed;
        drop(prev);
        // Requests counted per database (several run at once).
        let bucket = self.bucket.with_own_counter();
        let loc = bucket.location(db);
        let mut catalog = catalog_of(db, &files);
        let now = opts.now_ms.unwrap_or_else(now_ms);
        if changed {
            let read = bucket
                .fill_timestamps(&mut catalog, &mut Default::default())
                .await;
            match read {
                Ok(()) => self.remember(db, entries_of(&catalog)),
                // A listed file is gone (another compactor passed since the
                // root listing): list it again under the lease.
                Err(e) if e.is_not_found() => {
                    info!(db = loc, "changed since the root listing: {e:#}");
                    out.due = true;
                    let (busy, ok) = self.pass_due(opts, &bucket, db, now).await;
                    out.lease_busy = busy;
                    out.failed = !ok;
                    return out;
                }
                Err(e) => {
                    error!(db = loc, "reading headers: {e:#}");
                    self.metrics().failure();
                    out.failed = true;
                    return out;
                }
            }
        }
        let Some(at) = DbLocation::detect(&catalog) else {
            return out;
        };
        let at = DbLocation {
            db: db.to_string(),
            ..at
        };
        let plan = plan_pass_at(&catalog, &self.cfg, now, &at);
        let due = !plan.compactions.is_empty() || !plan.deletions.is_empty();
        out.due = due;
        match decide(changed, due) {
            Decision::Idle => {
                self.metrics().idle(db, level_lag(&catalog, now));
                out
            }
            Decision::NothingDue => {
                let contiguity = contiguity(&self.cfg, &catalog);
                if !contiguity.is_empty() {
                    // A level file that follows nothing: a hole, or another
                    // compactor's files (Litestream's own compaction left
                    // on). The leased path lists again under the lease and
                    // checks who owns the levels, so that the refusal says
                    // why.
                    info!(
                        db = loc,
                        "contiguity problems without a plan: passing under the lease"
                    );
                    out.due = true;
                    let (busy, ok) = self.pass_due(opts, &bucket, db, now).await;
                    out.lease_busy = busy;
                    out.failed = !ok;
                    return out;
                }
                let r = PassReport {
                    db: db.to_string(),
                    location: loc,
                    catalog_files: catalog.len(),
                    level_lag_ms: level_lag(&catalog, now),
                    contiguity,
                    plan,
                    requests: bucket.requests(),
                    ..Default::default()
                };
                out.failed = !self.reported(opts, &r);
                out
            }
            Decision::Due => {
                let (busy, ok) = self.pass_due(opts, &bucket, db, now).await;
                out.lease_busy = busy;
                out.failed = !ok;
                out
            }
        }
    }

    /// A database with something due: lease, pass (which lists it again
    /// under the lease), release. Returns (lease busy, healthy).
    async fn pass_due(
        &self,
        opts: &RunOptions,
        bucket: &Bucket,
        db: &str,
        now: i64,
    ) -> (bool, bool) {
        let loc = bucket.location(db);
        let dry_run = self.opts.dry_run;
        let lease = if dry_run {
            Lease::dry_run()
        } else {
            match Lease::acquire(bucket, db, &opts.holder, opts.lease_ttl_ms).await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    info!(db = loc, "lease held by another compactor: skipped");
                    self.metrics().lease_busy();
                    return (true, true);
                }
                Err(e) => {
                    error!(db = loc, "{e:#}");
                    self.metrics().failure();
                    return (false, false);
                }
            }
        };
        let res = self.pass_on(bucket, db, now, &lease).await;
        if !dry_run {
            if let Err(e) = lease.release().await {
                warn!(db = loc, "{e:#}");
            }
        }
        match res {
            Ok(mut r) => {
                r.requests = bucket.requests();
                (false, self.reported(opts, &r))
            }
            Err(e) => {
                error!(db = loc, "pass failed: {e:#}");
                self.metrics().failure();
                (false, false)
            }
        }
    }

    /// Hands a pass report on, logs and counts it; whether it is healthy
    /// (not refused, contiguous).
    fn reported(&self, opts: &RunOptions, r: &PassReport) -> bool {
        if let Some(f) = &opts.on_pass {
            f(r);
        }
        log_report(r);
        if let Some(why) = &r.refused {
            error!(db = r.location, "refused: {why}");
            self.metrics().failure();
            return false;
        }
        self.metrics().pass(r);
        r.contiguity.is_empty()
    }
}

/// The root a state is written for and checked against: the local
/// directory (canonical) for a `file://` URL or a path, else the URL as
/// given, without trailing slashes.
fn state_root(bucket: &Bucket) -> String {
    match bucket.local_root() {
        Some(dir) => format!("file://{}", dir.display()),
        None => bucket.url().trim_end_matches('/').to_string(),
    }
}

fn log_report(r: &PassReport) {
    for w in &r.plan.warnings {
        warn!(db = r.location, "{w}");
    }
    for p in &r.contiguity {
        error!(db = r.location, "contiguity: {p}");
    }
    info!(
        db = r.location,
        files = r.catalog_files,
        written = r.written.len(),
        deleted = r.deleted.len(),
        bytes_written = r.bytes_written,
        bytes_read = r.bytes_read,
        abandoned = r.abandoned,
        "pass done: {} requests",
        r.requests
    );
}
