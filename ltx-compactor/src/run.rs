//! `ltx-compactor run`: the job (once, or as a daemon).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use futures::StreamExt;
use ltx_compactor::compact::{run_pass, PassOptions, PassReport};
use ltx_compactor::lease::Lease;
use ltx_compactor::metrics::Metrics;
use ltx_compactor::policy::Config;
use ltx_compactor::store::{now_ms, Bucket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// Options of `run`.
pub struct RunArgs {
    pub url: String,
    pub once: bool,
    pub dry_run: bool,
    pub cfg: Config,
    pub concurrency: usize,
    pub metrics_addr: Option<SocketAddr>,
    pub holder: String,
    pub lease_ttl_ms: i64,
    pub json: bool,
    pub now_ms: Option<i64>,
    pub opts: PassOptions,
}

struct Shared {
    bucket: Bucket,
    args: RunArgs,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
    caches: std::sync::Mutex<HashMap<String, HashMap<String, i64>>>,
}

/// Runs the job; returns whether every pass succeeded.
pub async fn run(args: RunArgs) -> Result<bool> {
    let bucket = Bucket::open(&args.url)?;
    let stop = Arc::new(AtomicBool::new(false));
    let wake = Arc::new(Notify::new());
    {
        let (stop, wake) = (stop.clone(), wake.clone());
        tokio::spawn(async move {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            warn!("shutdown requested: finishing the current step");
            stop.store(true, Ordering::SeqCst);
            wake.notify_waiters();
        });
    }
    let shared = Arc::new(Shared {
        bucket,
        args,
        metrics: Metrics::default(),
        stop,
        caches: Default::default(),
    });
    if let Some(addr) = shared.args.metrics_addr {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding --metrics-addr {addr}"))?;
        info!(addr = %listener.local_addr()?, "serving Prometheus metrics");
        let sh = shared.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let body = sh.metrics.render();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
    }
    let mut all_ok = true;
    loop {
        let round_ok = round(&shared).await;
        all_ok &= round_ok;
        if shared.args.once || shared.stop.load(Ordering::SeqCst) {
            break;
        }
        // Wake at the next slot boundary (plus the settle delay).
        let slot = shared.args.cfg.slot().max(1000);
        let now = now_ms();
        let next = (now.div_euclid(slot) + 1) * slot + shared.args.cfg.settle;
        let wait = std::time::Duration::from_millis((next - now).max(100) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {}
        }
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
    }
    Ok(all_ok)
}

async fn round(sh: &Arc<Shared>) -> bool {
    let dbs = match sh.bucket.discover().await {
        Ok(d) => d,
        Err(e) => {
            error!("{e:#}");
            sh.metrics.failure();
            return false;
        }
    };
    if dbs.is_empty() {
        warn!(url = sh.bucket.url(), "no LTX databases found");
    }
    let results: Vec<bool> = futures::stream::iter(dbs)
        .map(|db| {
            let sh = sh.clone();
            async move { one_db(&sh, &db).await }
        })
        .buffer_unordered(sh.args.concurrency.max(1))
        .collect()
        .await;
    results.into_iter().all(|ok| ok)
}

async fn one_db(sh: &Shared, db: &str) -> bool {
    if sh.stop.load(Ordering::SeqCst) {
        return true;
    }
    let a = &sh.args;
    // Requests counted per pass (passes over several databases overlap).
    let bucket = sh.bucket.with_own_counter();
    let loc = bucket.location(db);
    let lease = if a.dry_run {
        Lease::dry_run()
    } else {
        match Lease::acquire(&bucket, db, &a.holder, a.lease_ttl_ms).await {
            Ok(Some(l)) => l,
            Ok(None) => {
                info!(db = loc, "lease held by another compactor: skipped");
                sh.metrics.lease_busy();
                return true;
            }
            Err(e) => {
                error!(db = loc, "{e:#}");
                sh.metrics.failure();
                return false;
            }
        }
    };
    let mut cache = sh
        .caches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(db)
        .unwrap_or_default();
    let now = a.now_ms.unwrap_or_else(now_ms);
    let res = run_pass(
        &bucket, db, &a.cfg, now, &lease, &a.opts, &mut cache, &sh.stop,
    )
    .await;
    sh.caches
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(db.to_string(), cache);
    if !a.dry_run {
        if let Err(e) = lease.release().await {
            warn!(db = loc, "{e:#}");
        }
    }
    match res {
        Ok(r) => {
            report(a, &r);
            if let Some(why) = &r.refused {
                error!(db = r.location, "refused: {why}");
                sh.metrics.failure();
                return false;
            }
            sh.metrics.pass(&r);
            r.contiguity.is_empty()
        }
        Err(e) => {
            error!(db = loc, "pass failed: {e:#}");
            sh.metrics.failure();
            false
        }
    }
}

fn report(a: &RunArgs, r: &PassReport) {
    if a.json {
        println!("{}", serde_json::to_string(r).expect("report serialises"));
    } else if a.dry_run {
        println!(
            "{}: {} files; plan: {} compactions, {} deletions",
            r.location,
            r.catalog_files,
            r.plan.compactions.len(),
            r.plan.deletions.len()
        );
        for c in &r.plan.compactions {
            println!(
                "  {:?} {} input(s) -> {}",
                c.kind,
                c.inputs.len(),
                c.output_key
            );
        }
        for d in &r.plan.deletions {
            println!("  delete {}", d.key);
        }
    }
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
