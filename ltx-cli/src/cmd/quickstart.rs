//! `ltx quickstart [--dir DIR] [--keep]`: the whole workflow on a small
//! database, with no setup.
//!
//! 1. Build `app.db` with real SQLite transactions (rollback journal, so the
//!    file is complete after each commit).
//! 2. After each transaction write an LTX file into a Litestream-like layout,
//!    `replica/ltx/0/<min>-<max>.ltx`: a snapshot for the first (the
//!    `encode-db` code), then deltas (the `diff -o` code), TXIDs 1, 2, …
//!    with chained checksums.
//! 3. Verify them all and check the chain; compact them into `ltx/1/`;
//!    summarise the compacted file.
//! 4. Apply the L0 chain to a fresh database and the compacted file to
//!    another; both must be byte-identical to `app.db` and pass
//!    `PRAGMA integrity_check`.
//! 5. Copy the L0 files into `bucket/` (a local directory as a bucket), run
//!    one pass of the compaction job over it, restore the database from the
//!    bucket (`ltx restore`'s code) and compare it byte for byte.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use ltx_core::merge::MergeOptions;
use ltx_core::{format_filename, LtxFile, TxId};
use rusqlite::Connection;

use crate::db::{self, DbImage};
use crate::encode::{self, LtxOptions, Written};
use crate::input::Source;

/// Arguments of `ltx quickstart`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Work in this directory (created if needed; kept) instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Keep the temporary directory and print where it is.
    #[arg(long)]
    pub keep: bool,
}

/// The transactions run against the demo database.
const STEPS: &[(&str, &str)] = &[
    (
        "create tables, 300 customers",
        "BEGIN;
         CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE, country TEXT);
         CREATE TABLE orders(id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id),
                             total REAL, status TEXT, note TEXT);
         CREATE INDEX orders_customer ON orders(customer_id);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300)
         INSERT INTO customers SELECT i, 'customer ' || i, 'c' || i || '@example.com',
                                      substr('USDEFRJPBRIN', 1 + 2 * (i % 6), 2) FROM n;
         COMMIT;",
    ),
    (
        "insert 3000 orders",
        "BEGIN;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
         INSERT INTO orders(customer_id, total, status, note)
           SELECT 1 + (i * 7919) % 300, (i * 37 % 50000) / 100.0,
                  CASE i % 4 WHEN 0 THEN 'new' WHEN 1 THEN 'paid' WHEN 2 THEN 'shipped' ELSE 'cancelled' END,
                  'order ' || i || ' ' || hex(randomblob(8)) FROM n;
         COMMIT;",
    ),
    (
        "ship 500 paid orders",
        "BEGIN;
         UPDATE orders SET status = 'shipped', note = note || ' (shipped)'
           WHERE id IN (SELECT id FROM orders WHERE status = 'paid' LIMIT 500);
         COMMIT;",
    ),
    (
        "delete cancelled orders",
        "BEGIN; DELETE FROM orders WHERE status = 'cancelled'; COMMIT;",
    ),
    (
        "store a 200 KB attachment (the file grows)",
        "BEGIN;
         CREATE TABLE attachments(id INTEGER PRIMARY KEY, name TEXT, data BLOB);
         INSERT INTO attachments(name, data) VALUES ('invoice.pdf', randomblob(200000));
         COMMIT;",
    ),
    (
        "drop the attachment",
        "BEGIN; DROP TABLE attachments; COMMIT;",
    ),
    ("VACUUM (the file shrinks)", "VACUUM;"),
    (
        "one small update",
        "BEGIN; UPDATE customers SET country = 'NZ' WHERE id = 42; COMMIT;",
    ),
];

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let started = std::time::Instant::now();
    let (dir, tempdir) = match &args.dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .with_context(|| format!("{}: cannot create", d.display()))?;
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("ltx-quickstart-")
                .tempdir()
                .context("cannot create a temporary directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    writeln!(out, "quickstart: working in {}", dir.display())?;
    quickstart(&dir, out)?;
    writeln!(
        out,
        "quickstart: ok ({:.2}s)",
        started.elapsed().as_secs_f64()
    )?;
    let kept = match tempdir {
        Some(t) if args.keep => Some(t.keep()),
        Some(t) => {
            drop(t);
            None
        }
        None => Some(dir),
    };
    if let Some(d) = kept {
        writeln!(out, "quickstart: files kept in {}", d.display())?;
        writeln!(
            out,
            "try: ltx list {0}/replica; ltx verify {0}/replica; ltx dump {0}/replica/ltx/1/*.ltx; ltx diff {0}/app.db {0}/restore-l1.db; ltx-compactor run {0}/bucket --once --dry-run; ltx restore {0}/bucket -o {0}/r.db --dry-run",
            d.display()
        )?;
    }
    Ok(())
}

/// A path relative to the working directory, for printing.
fn rel(dir: &Path, p: &Path) -> String {
    p.strip_prefix(dir).unwrap_or(p).display().to_string()
}

fn read_db(path: &Path) -> Result<DbImage> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    DbImage::from_source(path, Source::Bytes(bytes))
}

fn quickstart(dir: &Path, out: &mut dyn Write) -> Result<()> {
    let db_path = dir.join("app.db");
    let l0 = dir.join("replica").join("ltx").join("0");
    let l1 = dir.join("replica").join("ltx").join("1");
    for p in [&db_path, &dir.join("replica")] {
        if p.exists() {
            bail!("{} already exists: give an empty directory", p.display());
        }
    }
    std::fs::create_dir_all(&l0).with_context(|| format!("{}: cannot create", l0.display()))?;
    std::fs::create_dir_all(&l1).with_context(|| format!("{}: cannot create", l1.display()))?;

    // 1-2. Transactions, each followed by an LTX file.
    writeln!(
        out,
        "\n== 1. a database with real transactions, one LTX file after each =="
    )?;
    let conn = Connection::open(&db_path)
        .with_context(|| format!("{}: cannot open", db_path.display()))?;
    conn.execute_batch("PRAGMA page_size = 4096; PRAGMA journal_mode = DELETE;")?;
    let mut prev: Option<DbImage> = None;
    let mut l0_files = Vec::new();
    let mut last_post = None;
    for (i, (label, sql)) in STEPS.iter().enumerate() {
        conn.execute_batch(sql)
            .with_context(|| format!("transaction {}: {label}", i + 1))?;
        let txid = TxId(i as u64 + 1);
        let cur = read_db(&db_path)?;
        let dest = l0.join(format_filename(txid, txid));
        let opts = LtxOptions {
            txid,
            timestamp: encode::now_ms(),
            no_checksum: false,
        };
        let w: Written = match &prev {
            None => {
                let (tmp, w) = encode::snapshot_db(&cur, &dest, &opts)?;
                tmp.commit(&dest)?;
                w
            }
            Some(old) => {
                let (_, tmp, w) = crate::cmd::diff::delta_between(old, &cur, &dest, &opts)?;
                tmp.commit(&dest)?;
                w
            }
        };
        writeln!(
            out,
            "txn {:>2} {:<44} db {:>3} pages -> {} ({}, {} pages, {} bytes, post-apply {})",
            txid.0,
            label,
            cur.page_count(),
            rel(dir, &dest),
            if w.header.is_snapshot() {
                "snapshot"
            } else {
                "delta"
            },
            w.pages,
            w.bytes,
            w.trailer.post_apply_checksum
        )?;
        last_post = Some(w.trailer.post_apply_checksum);
        l0_files.push(dest);
        prev = Some(cur);
    }
    drop(conn);
    let original = std::fs::read(&db_path)?;
    let original_sum = read_db(&db_path)?.checksum();
    ensure!(
        Some(original_sum) == last_post,
        "the last file's post-apply checksum {:?} is not the database's {original_sum}",
        last_post
    );

    // 3. Verify every file and the chain.
    writeln!(out, "\n== 2. verify every file and the chain ==")?;
    let mut prev_hdr: Option<(ltx_core::Header, ltx_core::Checksum)> = None;
    for p in &l0_files {
        let bytes = std::fs::read(p)?;
        let s = crate::check::verify_bytes(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
        if let Some((ph, ppost)) = prev_hdr {
            ensure!(
                s.header.min_txid.0 == ph.max_txid.0 + 1,
                "{}: TXID gap after {}",
                p.display(),
                ph.max_txid
            );
            ensure!(
                db::same_checksum(s.header.pre_apply_checksum, ppost),
                "{}: pre-apply {} does not follow post-apply {ppost}",
                p.display(),
                s.header.pre_apply_checksum
            );
        }
        writeln!(
            out,
            "ok  {}  TXID {}-{}  pre-apply {}  post-apply {}  file checksum {}",
            rel(dir, p),
            s.header.min_txid,
            s.header.max_txid,
            s.header.pre_apply_checksum,
            s.trailer.post_apply_checksum,
            s.trailer.file_checksum
        )?;
        prev_hdr = Some((s.header, s.trailer.post_apply_checksum));
    }
    writeln!(
        out,
        "{} files verified; TXIDs contiguous, each pre-apply checksum equals the previous post-apply checksum",
        l0_files.len()
    )?;

    // Compact L0 into one L1 file.
    writeln!(out, "\n== 3. compact level 0 into level 1 ==")?;
    let (l1_file, w, n) = crate::cmd::compact::compact(&l0_files, &l1, &MergeOptions::default())?;
    let l0_bytes: u64 = l0_files
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum();
    writeln!(
        out,
        "{} files ({} bytes) -> {} (TXID {}-{}, {} pages, commit {}, {} bytes, post-apply {}, file checksum {})",
        n,
        l0_bytes,
        rel(dir, &l1_file),
        w.header.min_txid,
        w.header.max_txid,
        w.pages,
        w.header.commit,
        w.bytes,
        w.trailer.post_apply_checksum,
        w.trailer.file_checksum
    )?;

    // Summarise the compacted file, with `ltx dump --summary`.
    writeln!(
        out,
        "\n== 4. what the compacted file holds (`ltx dump --summary {}`) ==",
        rel(dir, &l1_file)
    )?;
    #[derive(clap::Parser)]
    struct Dump {
        #[command(flatten)]
        args: crate::cmd::dump::Args,
    }
    let dump = <Dump as clap::Parser>::try_parse_from([
        "ltx dump".as_ref(),
        "--summary".as_ref(),
        l1_file.as_os_str(),
    ])?;
    crate::cmd::dump::run(dump.args, out)?;
    let bytes = std::fs::read(&l1_file)?;
    let f = LtxFile::parse(&bytes)?;
    let pgnos: Vec<u32> = f.index().entries().iter().map(|e| e.pgno).collect();
    let frame_bytes: u64 = f.index().entries().iter().map(|e| e.size).sum();
    writeln!(
        out,
        "pages {}: {} bytes of frames for {} bytes of pages",
        db::ranges(&pgnos),
        frame_bytes,
        pgnos.len() as u64 * u64::from(f.header().page_size.get()),
    )?;

    // 4. Restore both ways and compare.
    writeln!(
        out,
        "\n== 5. restore: apply the L0 chain, and the compacted file, to fresh databases =="
    )?;
    for (name, files) in [
        ("restore-l0.db", l0_files.clone()),
        ("restore-l1.db", vec![l1_file.clone()]),
    ] {
        let target = dir.join(name);
        let o = crate::cmd::apply::apply(&target, &files, &mut std::io::sink())?;
        let restored = std::fs::read(&target)?;
        ensure!(
            restored == original,
            "{name} differs from app.db ({} vs {} bytes)",
            restored.len(),
            original.len()
        );
        let conn =
            Connection::open_with_flags(&target, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
        ensure!(check == "ok", "{name}: integrity_check says {check}");
        let orders: i64 = conn.query_row("SELECT count(*) FROM orders", [], |r| r.get(0))?;
        writeln!(
            out,
            "{name}: {} file(s) applied, TXID {}, {} pages, checksum {}; byte-identical to app.db ({} bytes); integrity_check ok; {} orders",
            files.len(),
            o.txid,
            o.commit,
            o.checksum,
            restored.len(),
            orders
        )?;
    }
    compactor_step(dir, &l0_files, &original, out)
}

/// Step 6: the compaction job and `ltx restore` over a local directory used
/// as a bucket. The L0 files are copied into `bucket/app.db/ltx/0/`, one pass of
/// `ltx-compactor` (default policy, clock two minutes after the last
/// transaction so its window is closed) compacts them, then the database is
/// restored from the bucket and compared byte for byte.
fn compactor_step(
    dir: &Path,
    l0_files: &[PathBuf],
    original: &[u8],
    out: &mut dyn Write,
) -> Result<()> {
    use ltx_compactor::compact::{Compactor, PassOptions};
    use ltx_compactor::fetch::{plan, restore_to_file, RestoreOptions};
    use ltx_compactor::lease::Lease;
    use ltx_compactor::policy::Config;
    use ltx_compactor::restore::Target;
    use ltx_compactor::store::Bucket;

    writeln!(
        out,
        "\n== 6. the compaction job and `ltx restore` on a directory used as a bucket =="
    )?;
    let bucket_dir = dir.join("bucket");
    let l0_dir = bucket_dir.join("app.db/ltx/0");
    std::fs::create_dir_all(&l0_dir)?;
    let mut last_ts = 0;
    for f in l0_files {
        let b = std::fs::read(f)?;
        last_ts = last_ts.max(ltx_core::Header::decode(&b)?.timestamp);
        std::fs::write(l0_dir.join(f.file_name().context("file name")?), b)?;
    }
    let rt = crate::remote::runtime()?;
    let restored = dir.join("restore-bucket.db");
    let (report, rep) = rt.block_on(async {
        let bucket = Bucket::open(&bucket_dir.display().to_string())?;
        let db = bucket.single_db().await?;
        let lease = Lease::acquire(&bucket, &db, "quickstart", 60_000)
            .await?
            .context("lease held by another compactor")?;
        let c = Compactor::new(bucket.clone(), Config::default(), PassOptions::default());
        let report = c.pass(&db, last_ts + 120_000, &lease).await?;
        lease.release().await?;
        let (p, _) = plan(&bucket, &db, Target::Latest).await?;
        let opts = RestoreOptions {
            force: true,
            ..Default::default()
        };
        let rep = restore_to_file(&bucket, &db, &p, &restored, &opts).await?;
        anyhow::Ok((report, rep))
    })?;
    ensure!(
        report.contiguity.is_empty(),
        "contiguity: {:?}",
        report.contiguity
    );
    for w in &report.written {
        writeln!(
            out,
            "ltx-compactor: wrote {} ({} inputs, {} bytes)",
            w.key, w.inputs, w.size
        )?;
    }
    writeln!(
        out,
        "ltx-compactor: deleted {} compacted L0 files; every level contiguous",
        report.deleted.len()
    )?;
    let got = std::fs::read(&restored)?;
    ensure!(got == original, "restore-bucket.db differs from app.db");
    writeln!(
        out,
        "ltx restore: TXID {} at {} from {} file(s) -> {}; byte-identical to app.db",
        rep.txid,
        rep.timestamp,
        rep.files.len(),
        rel(dir, &restored)
    )?;
    Ok(())
}
