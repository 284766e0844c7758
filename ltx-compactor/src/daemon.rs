//! The compaction job ([`Compactor::run`]): every database under the
//! bucket, one pass each under its lease, [`RunOptions::concurrency`] at a
//! time; once, or again at every slot boundary (plus the settle delay)
//! until shut down.
//!
//! Shutdown is a future the caller gives (`ltx-compactor run` resolves it
//! on SIGTERM or Ctrl-C; a test may pass a channel's receiver or
//! [`std::future::pending`]). When it resolves, running passes stop at
//! their next safe point ([`Compactor::request_stop`]: between
//! compactions, before deletions) and `run` returns once they have;
//! nothing is cut in the middle of a write. Logs go through `tracing`;
//! each pass report is also handed to [`RunOptions::on_pass`].

use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use tracing::{error, info, warn};

use crate::compact::{Compactor, PassReport};
use crate::lease::Lease;
use crate::store::now_ms;

/// What to do with each pass report (print it, …).
pub type OnPass = Arc<dyn Fn(&PassReport) + Send + Sync>;

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
    /// Called with every pass report.
    pub on_pass: Option<OnPass>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            once: false,
            concurrency: 4,
            holder: "ltx-compactor".into(),
            lease_ttl_ms: 60_000,
            now_ms: None,
            on_pass: None,
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
            .field("on_pass", &self.on_pass.is_some())
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
                    ok = &mut round => break ok,
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

    /// One pass over every database; whether all succeeded.
    async fn round(&self, opts: &RunOptions) -> bool {
        let dbs = match self.bucket.discover().await {
            Ok(d) => d,
            Err(e) => {
                error!("{e:#}");
                self.metrics().failure();
                return false;
            }
        };
        if dbs.is_empty() {
            warn!(url = self.bucket.url(), "no LTX databases found");
        }
        let results: Vec<bool> = futures::stream::iter(dbs)
            .map(|db| async move { self.one_db(opts, &db).await })
            .buffer_unordered(opts.concurrency.max(1))
            .collect()
            .await;
        results.into_iter().all(|ok| ok)
    }

    async fn one_db(&self, opts: &RunOptions, db: &str) -> bool {
        if self.stop_requested() {
            return true;
        }
        // Requests counted per pass (passes over several databases overlap).
        let bucket = self.bucket.with_own_counter();
        let loc = bucket.location(db);
        let dry_run = self.opts.dry_run;
        let lease = if dry_run {
            Lease::dry_run()
        } else {
            match Lease::acquire(&bucket, db, &opts.holder, opts.lease_ttl_ms).await {
                Ok(Some(l)) => l,
                Ok(None) => {
                    info!(db = loc, "lease held by another compactor: skipped");
                    self.metrics().lease_busy();
                    return true;
                }
                Err(e) => {
                    error!(db = loc, "{e:#}");
                    self.metrics().failure();
                    return false;
                }
            }
        };
        let now = opts.now_ms.unwrap_or_else(now_ms);
        let res = self.pass_on(&bucket, db, now, &lease).await;
        if !dry_run {
            if let Err(e) = lease.release().await {
                warn!(db = loc, "{e:#}");
            }
        }
        match res {
            Ok(r) => {
                if let Some(f) = &opts.on_pass {
                    f(&r);
                }
                log_report(&r);
                if let Some(why) = &r.refused {
                    error!(db = r.location, "refused: {why}");
                    self.metrics().failure();
                    return false;
                }
                self.metrics().pass(&r);
                r.contiguity.is_empty()
            }
            Err(e) => {
                error!(db = loc, "pass failed: {e:#}");
                self.metrics().failure();
                false
            }
        }
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
        "pass done"
    );
}
