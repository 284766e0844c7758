//! `ltx-compactor run`: the job ([`Compactor::run`]) with what only a
//! process has: SIGTERM and Ctrl-C as its shutdown, the Prometheus
//! listener, the reports on stdout.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use ltx_compactor::compact::{Compactor, PassOptions, PassReport};
use ltx_compactor::daemon::{RoundReport, RunOptions};
use ltx_compactor::policy::Config;
use ltx_compactor::store::Bucket;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::info;

/// Options of `run`.
pub struct RunArgs {
    pub url: String,
    pub cfg: Config,
    pub metrics_addr: Option<SocketAddr>,
    pub json: bool,
    pub opts: PassOptions,
    pub run: RunOptions,
}

/// Runs the job; returns whether every pass succeeded.
pub async fn run(args: RunArgs) -> Result<bool> {
    let bucket = Bucket::open(&args.url)?;
    let c = Arc::new(Compactor::new(bucket, args.cfg, args.opts));
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, c.clone()).await?;
    }
    let (json, dry_run) = (args.json, c.opts.dry_run);
    let run = RunOptions {
        on_pass: Some(Arc::new(move |r: &PassReport| {
            print_report(json, dry_run, r)
        })),
        on_round: json.then(|| {
            Arc::new(|r: &RoundReport| {
                outln!("{}", serde_json::to_string(r).expect("report serialises"))
            }) as ltx_compactor::daemon::OnRound
        }),
        ..args.run
    };
    Ok(c.run(&run, shutdown()).await)
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// Serves `c`'s metrics (Prometheus text) on `addr`, in the background.
async fn serve_metrics(addr: SocketAddr, c: Arc<Compactor>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding --metrics-addr {addr}"))?;
    info!(addr = %listener.local_addr()?, "serving Prometheus metrics");
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let body = c.metrics().render();
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
    Ok(())
}

/// A pass report on stdout: one JSON line with `--json`, the plan in a dry
/// run (the log has the rest). With `--json` each round also ends with one
/// line, its [`RoundReport`] (the line with a `round` field).
fn print_report(json: bool, dry_run: bool, r: &PassReport) {
    if json {
        outln!("{}", serde_json::to_string(r).expect("report serialises"));
    } else if dry_run {
        outln!(
            "{}: {} files; plan: {} compactions, {} deletions",
            r.location,
            r.catalog_files,
            r.plan.compactions.len(),
            r.plan.deletions.len()
        );
        for c in &r.plan.compactions {
            outln!(
                "  {:?} {} input(s) -> {}",
                c.kind,
                c.inputs.len(),
                c.output_key
            );
        }
        for d in &r.plan.deletions {
            outln!("  delete {}", d.key);
        }
    }
}
