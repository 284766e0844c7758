//! Builds the fleet of `benches/fleet.py`: many tiny databases under one
//! root, each a snapshot and a handful of L0 files (real LTX files,
//! `tests/common/tiny.rs`), uploaded in parallel; and adds one transaction
//! (an L0 file) to a slice of them between rounds.
//!
//! ```sh
//! cargo run --release -p ltx-compactor --example fleet -- build URL --dbs 10000 --now-ms MS
//! cargo run --release -p ltx-compactor --example fleet -- touch URL --dbs 10000 --now-ms MS --slice 0
//! ```
//!
//! Databases are `URL/t00000/app.db` …, in Litestream's `ltx/<level>/`
//! layout (`--layout ltx`, what its `file` replica writes) or the `%04x`
//! one (`--layout hex`, its S3 replica). Each holds a snapshot of TXIDs
//! 1..=10 (timestamp `now − 3 h`) and L0 files 11..=10+`--l0` (`now − 2 h`
//! and a second apart). `touch --slice R` adds the L0 file of the next
//! TXID (`now − 1 h`) to the databases whose number is R modulo
//! `--every` (100: 1 % of them), each of which must not have been
//! touched before. Prints what it did as one JSON line.

#[path = "../tests/common/tiny.rs"]
mod tiny;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use ltx_compactor::catalog::{format_key, Layout};
use ltx_compactor::store::Bucket;
use ltx_core::TxId;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

const SNAP: u64 = 10;
const HOUR: i64 = 3_600_000;

struct Args {
    cmd: String,
    url: String,
    dbs: usize,
    l0: u64,
    now_ms: i64,
    layout: Layout,
    every: usize,
    slice: usize,
    concurrency: usize,
}

fn args() -> Result<Args> {
    let mut it = std::env::args().skip(1);
    let usage = "usage: fleet build|touch URL --now-ms MS [--dbs N] [--l0 K] [--layout ltx|hex] [--every M] [--slice R] [--concurrency C]";
    let cmd = it.next().context(usage)?;
    let url = it.next().context(usage)?;
    let mut a = Args {
        cmd,
        url,
        dbs: 10_000,
        l0: 4,
        now_ms: 0,
        layout: Layout::LtxDir,
        every: 100,
        slice: 0,
        concurrency: 64,
    };
    while let Some(flag) = it.next() {
        let v = it.next().with_context(|| format!("{flag} needs a value"))?;
        let n = || v.parse::<u64>().with_context(|| format!("{flag} {v:?}"));
        match flag.as_str() {
            "--dbs" => a.dbs = n()? as usize,
            "--l0" => a.l0 = n()?,
            "--now-ms" => a.now_ms = n()? as i64,
            "--every" => a.every = n()?.max(1) as usize,
            "--slice" => a.slice = n()? as usize,
            "--concurrency" => a.concurrency = n()?.max(1) as usize,
            "--layout" => {
                a.layout = match v.as_str() {
                    "ltx" => Layout::LtxDir,
                    "hex" => Layout::HexLevel,
                    _ => bail!("--layout {v:?}: ltx or hex"),
                }
            }
            _ => bail!("unknown flag {flag}\n{usage}"),
        }
    }
    if a.now_ms <= 0 {
        bail!("--now-ms is required\n{usage}");
    }
    if a.l0 == 0 {
        bail!("--l0 must be at least 1");
    }
    Ok(a)
}

fn db_of(bucket: &Bucket, i: usize) -> String {
    ltx_compactor::store::join(bucket.prefix(), &format!("t{i:05}/app.db"))
}

async fn put_all(
    bucket: &Bucket,
    puts: Vec<(String, bytes::Bytes)>,
    concurrency: usize,
) -> Result<usize> {
    let n = puts.len();
    let results: Vec<Result<()>> = futures::stream::iter(puts)
        .map(|(k, b)| async move {
            bucket
                .store()
                .put(&Path::from(k.as_str()), PutPayload::from(b))
                .await
                .with_context(|| format!("PUT {k}"))?;
            Ok(())
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(n)
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let bucket = Bucket::open(&a.url)?;
    let started = Instant::now();
    let last = SNAP + a.l0;
    let mut puts = Vec::new();
    match a.cmd.as_str() {
        "build" => {
            let snap = bytes::Bytes::from(tiny::tiny_snapshot(SNAP, a.now_ms - 3 * HOUR));
            let l0s: Vec<(u64, bytes::Bytes)> = (SNAP + 1..=last)
                .map(|t| {
                    let ts = a.now_ms - 2 * HOUR + t as i64 * 1000;
                    (t, bytes::Bytes::from(tiny::tiny_l0(t, ts)))
                })
                .collect();
            for i in 0..a.dbs {
                let db = db_of(&bucket, i);
                puts.push((
                    format_key(&db, a.layout, 9, TxId(1), TxId(SNAP)),
                    snap.clone(),
                ));
                for (t, b) in &l0s {
                    puts.push((format_key(&db, a.layout, 0, TxId(*t), TxId(*t)), b.clone()));
                }
            }
        }
        "touch" => {
            let t = last + 1;
            let b = bytes::Bytes::from(tiny::tiny_l0(t, a.now_ms - HOUR));
            for i in (0..a.dbs).filter(|i| i % a.every == a.slice % a.every) {
                let db = db_of(&bucket, i);
                puts.push((format_key(&db, a.layout, 0, TxId(t), TxId(t)), b.clone()));
            }
        }
        c => bail!("unknown command {c:?}: build or touch"),
    }
    let n = put_all(&bucket, puts, a.concurrency).await?;
    println!(
        "{}",
        serde_json::json!({
            "command": a.cmd,
            "url": a.url,
            "objects": n,
            "seconds": started.elapsed().as_secs_f64(),
            "requests": bucket.requests(),
        })
    );
    Ok(())
}
