//! `ltx restore`: rebuild a database file from a bucket (or a replica
//! directory) at a TXID, at a time, or at the latest reproducible state.
//!
//! The work is `ltx_compactor::fetch`: plan the fewest files, read each by
//! its size (small ones with one GET, a large one's header and index, then
//! its winning frames as a few streamed spans), write the pages in place
//! into a temporary file beside the output, check the database checksum,
//! fsync, rename. This module parses the target, runs the optional SQLite
//! integrity check on the temporary file before the rename, draws the
//! progress bar and prints the report.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Result};
use ltx_compactor::fetch::{self, RestoreOptions, RestoreReport};
use ltx_compactor::restore::Target;
use ltx_compactor::store::Bucket;
use ltx_core::TxId;
use serde::Serialize;

use crate::args::{parse_time, parse_txid};
pub use crate::db::{remove_stale_temps, sqlite_check, IntegrityCheck};
use crate::output;
use crate::remote;

/// Arguments of `ltx restore`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
URL is one database of a bucket, or a root holding exactly one (with several,
the error lists them): s3://bucket/prefix, gs://bucket/prefix,
az://container/prefix, file:///dir or a plain directory path. Credentials and
endpoints come from the environment as object_store reads them (AWS_ENDPOINT,
AWS_ALLOW_HTTP, AWS_REGION, GOOGLE_SERVICE_ACCOUNT, AZURE_STORAGE_ACCOUNT_NAME,
...). Both Litestream layouts are read: <db>/ltx/<level>/<min>-<max>.ltx and
<db>/<level as %04x>/<min>-<max>.ltx.

TXID forms: exactly 16 hex digits is hexadecimal, as the reference prints it
(000000000000002a is 42); a 0x prefix is hexadecimal (0x2a); any other run of
decimal digits is decimal (42). Without --txid or --timestamp the latest
reproducible transaction is restored. --timestamp restores the latest
transaction at or before that time that the bucket can still reproduce (a
transaction committed exactly at that time is included; Litestream takes
only files strictly before it), and says which TXID and time that was and
how much older than the requested time it is; a time after the newest
transaction restores the latest state and says so (Litestream answers
\"timestamp does not exist\").

For container entrypoints: --if-db-not-exists exits 0 without touching an
existing OUT, --if-replica-exists exits 0 when the URL holds no database.

The plan uses the fewest files over every level and snapshot (a TXID or latest
target reads no header to plan; a time target reads headers only where the
objects' last-modified times cannot decide). Small files are read with one GET
each (up to 32 at once) and kept in memory; a large file costs two requests for
its header and page index, then only the newest copy of each page is read, as
a few large streamed ranged GETs in parallel (--concurrency), decoded as the
bytes arrive and written in place into a temporary file beside OUT; its database checksum must
equal the last file's post-apply checksum; --integrity-check then runs
SQLite's PRAGMA integrity_check (or quick_check) on it; only then is it
fsynced and renamed over OUT. On any failure OUT is untouched. A temporary file left by a killed
restore (.OUT.ltx-restore-PID.tmp) is removed by the next restore of OUT.

--follow then keeps OUT current: at every --interval it lists the bucket,
plans the fewest files from the TXID OUT holds (any level: it continues from
the levels when L0 files were compacted away), fetches only their winning
frames and writes them into OUT's WAL as one SQLite transaction under
SQLite's own locks, so readers see each step wholly or not at all (OUT must
be a WAL-mode database; see README.md, \"How readers stay consistent\").
The TXID OUT holds is recorded in OUT.ltx-follow; a restart continues from
there. A gap no file bridges is reported on standard error (\"ltx: gap:\")
and retried; a checksum mismatch or a corrupt file stops it with exit 1 and
OUT at the last good state. One line per step (--json: one object per line).

Exit codes: 0 restored; 1 the restore failed (no plan for the target, a
corrupt or missing file, a checksum or integrity check mismatch: the message
names the file or TXID); 2 usage errors (bad TXID or time, OUT exists without
--force, bad URL).

Examples:
  ltx restore s3://backups/tenant-1/app.db -o app.db
  ltx restore /backups/app.db --txid 000000000000002a -o app.db --integrity-check
  ltx restore s3://backups/app.db --timestamp 2026-11-22T14:05:00Z -o app.db --force
  ltx restore s3://backups/app.db --dry-run --json
  ltx restore s3://backups/app.db -o replica.db --follow --interval 1s")]
pub struct Args {
    /// The database's URL or directory.
    pub url: String,
    /// The database file to write.
    #[arg(
        short = 'o',
        long = "output",
        value_name = "OUT",
        required_unless_present = "dry_run"
    )]
    pub output: Option<PathBuf>,
    /// Restore exactly this transaction (16 hex digits, 0x-prefixed hex, or decimal).
    #[arg(long, conflicts_with = "timestamp", value_parser = parse_txid)]
    pub txid: Option<TxId>,
    /// Restore the latest transaction at or before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub timestamp: Option<i64>,
    /// Print the plan (files, TXID, time, bytes); write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Check the result with SQLite before it replaces OUT: `quick`
    /// (PRAGMA quick_check), `full` (PRAGMA integrity_check; the default
    /// when the flag is given alone) or `none`.
    #[arg(
        long,
        value_enum,
        value_name = "LEVEL",
        num_args = 0..=1,
        require_equals = false,
        default_missing_value = "full",
        default_value = "none"
    )]
    pub integrity_check: IntegrityCheck,
    /// Replace an existing OUT.
    #[arg(long)]
    pub force: bool,
    /// Exit 0 without touching OUT when it already exists (as
    /// `litestream restore -if-db-not-exists`, for container entrypoints).
    #[arg(long)]
    pub if_db_not_exists: bool,
    /// Exit 0 when the URL holds no database (as `litestream restore
    /// -if-replica-exists`): a first start with an empty bucket.
    #[arg(long)]
    pub if_replica_exists: bool,
    /// Streamed ranged reads of frames in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub concurrency: u64,
    /// After the restore, keep OUT current: list the bucket at every
    /// --interval and apply each new step through OUT's WAL, under
    /// SQLite's locks (readers see whole steps). Runs until killed;
    /// restarts continue from OUT.ltx-follow.
    #[arg(
        long,
        requires = "output",
        conflicts_with_all = ["txid", "timestamp", "dry_run", "if_db_not_exists"]
    )]
    pub follow: bool,
    /// Time between listings with --follow (e.g. 500ms, 1s, 1m).
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval, requires = "follow")]
    pub interval: std::time::Duration,
}

/// Parses `--interval`.
fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    match ltx_compactor::policy::duration_serde::parse(s) {
        Some(ms) if ms > 0 => Ok(std::time::Duration::from_millis(ms as u64)),
        _ => Err(format!(
            "{s:?} is not a positive duration (e.g. 500ms, 1s, 1m)"
        )),
    }
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    #[cfg(not(unix))]
    if args.follow {
        bail!("--follow needs a Unix system (SQLite's POSIX locks)");
    }
    #[cfg(unix)]
    if args.follow {
        return crate::follow::run(
            crate::follow::Options {
                url: args.url,
                out: args.output.expect("--follow requires -o"),
                interval: args.interval,
                force: args.force,
                json: args.json,
                concurrency: args.concurrency as usize,
                integrity: args.integrity_check,
                if_replica_exists: args.if_replica_exists,
            },
            out,
        );
    }
    let target = match (args.txid, args.timestamp) {
        (Some(t), _) => Target::Txid(t),
        (None, Some(ms)) => Target::Time(ms),
        (None, None) => Target::Latest,
    };
    if let Some(o) = &args.output {
        if args.if_db_not_exists && !args.dry_run && o.exists() {
            eprintln!(
                "ltx: {} exists: nothing restored (--if-db-not-exists)",
                o.display()
            );
            return Ok(());
        }
        if !args.dry_run {
            check_output(o, args.force)?;
        }
    }
    let rt = remote::runtime()?;
    let found = Bucket::open(&args.url).and_then(|b| {
        let dbs = rt.block_on(b.discover())?;
        Ok((b, dbs))
    });
    if args.if_replica_exists && found.as_ref().map_or(true, |(_, d)| d.is_empty()) {
        let why = match &found {
            Err(e) => format!("{e:#}"),
            Ok(_) => "no LTX database there".into(),
        };
        eprintln!(
            "ltx: {}: no replica ({why}): nothing restored (--if-replica-exists)",
            args.url
        );
        return Ok(());
    }
    let (bucket, dbs) = found?;
    let db = bucket.single_of(dbs)?;
    let (mut plan, catalog) = match rt.block_on(fetch::plan(&bucket, &db, target)) {
        Ok(p) => p,
        Err(e) => return remote::fail(out, &format!("{e:#}")),
    };

    // The database's name in reports: its prefix, or the URL when the URL
    // is the database itself.
    let db_label = if db.is_empty() {
        args.url.clone()
    } else {
        db.clone()
    };
    if args.dry_run {
        // The plan's time from its last file's header (the listing gives
        // only an upper bound).
        if let Err(e) = rt.block_on(fetch::exact_time(&bucket, &mut plan)) {
            return remote::fail(out, &format!("{e:#}"));
        }
        let mut rep = fetch::dry_run_report(&db, &plan);
        rep.db = db_label;
        rep.requests = bucket.requests();
        if args.json {
            serde_json::to_writer_pretty(&mut *out, &rep)?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "would restore TXID {} at {}{} from {} file{} ({} bytes){}",
                rep.txid,
                rep.timestamp,
                if rep.timestamp_exact {
                    ""
                } else {
                    " (upper bound: from last-modified times)"
                },
                plan.files.len(),
                if plan.files.len() == 1 { "" } else { "s" },
                rep.files_bytes,
                match &args.output {
                    Some(o) => format!(" to {}", o.display()),
                    None => String::new(),
                }
            )?;
            for f in &plan.files {
                writeln!(
                    out,
                    "  L{} {}-{} {:>12} bytes  {}",
                    f.level, f.min_txid, f.max_txid, f.size, f.key
                )?;
            }
        }
        return Ok(());
    }

    let outp = args.output.clone().expect("required without --dry-run");
    let removed = remove_stale_temps(&outp, "restore");
    for r in &removed {
        eprintln!(
            "ltx: removed {} (left by an interrupted restore)",
            r.display()
        );
    }
    let pb = output::progress(true, Some(plan.bytes), "restore");
    let pbc = pb.clone();
    let integrity = args.integrity_check;
    let landing = Landing::of(target, &plan, &catalog);
    let opts = RestoreOptions {
        concurrency: args.concurrency as usize,
        force: args.force,
        progress: Some(Arc::new(move |done, total| {
            pbc.set_length(total);
            pbc.set_position(done);
        })),
        pre_commit: (integrity != IntegrityCheck::None).then(|| {
            Arc::new(move |p: &Path| Ok(sqlite_check(p, integrity)?))
                as ltx_compactor::fetch::PreCommitCheck
        }),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let r = rt.block_on(fetch::restore_to_file(&bucket, &db, &plan, &outp, &opts));
    pb.finish_and_clear();
    let rep = match r {
        Ok(mut r) => {
            r.db = db_label;
            r
        }
        Err(e) => return remote::fail(out, &format!("{e:#} ({} left unchanged)", outp.display())),
    };
    if args.json {
        output::write_json(
            out,
            &RestoreJson {
                report: &rep,
                integrity_check: (integrity != IntegrityCheck::None).then_some("ok"),
                integrity_check_level: integrity.name(),
                requested: landing.requested_json(),
                behind_requested_ms: landing.behind_ms(),
                newest_at_or_before_requested: landing.newest,
                elapsed_ms: started.elapsed().as_millis() as u64,
            },
        )?;
    } else {
        print_report(out, &rep, integrity, started.elapsed())?;
        if let Some(line) = landing.describe() {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// `ltx restore --json`: the compactor's report and how the restore
/// landed.
#[derive(Serialize)]
struct RestoreJson<'a> {
    #[serde(flatten)]
    report: &'a RestoreReport,
    /// `ok` after a SQLite check, none without one.
    integrity_check: Option<&'static str>,
    integrity_check_level: &'static str,
    requested: RequestedJson,
    behind_requested_ms: Option<i64>,
    newest_at_or_before_requested: bool,
    elapsed_ms: u64,
}

/// What a restore was asked for.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum RequestedJson {
    Txid {
        txid: String,
    },
    Timestamp {
        timestamp_ms: i64,
        timestamp: String,
    },
    Latest,
}

/// Where a restore landed relative to what was asked.
struct Landing {
    target: Target,
    /// The restored TXID's time (ms).
    landed_ms: i64,
    /// Whether no transaction the bucket knows of lies between the restored
    /// one and the requested time (always true for TXID and latest targets).
    newest: bool,
    /// Whether the restored TXID is the newest the bucket holds.
    bucket_newest: bool,
}

impl Landing {
    /// `catalog` as [`fetch::plan`] returned it: a file's time is known
    /// from its header, or bounded above by its last-modified time (which
    /// the planner read headers to complete where it could not decide).
    fn of(
        target: Target,
        plan: &ltx_compactor::RestorePlan,
        catalog: &[ltx_compactor::catalog::LtxObject],
    ) -> Landing {
        let newest = match target {
            Target::Time(t) => !catalog.iter().any(|o| {
                o.max_txid > plan.txid && o.timestamp_ms.map_or(o.created_ms <= t, |ts| ts <= t)
            }),
            _ => true,
        };
        Landing {
            target,
            landed_ms: plan.timestamp_ms,
            newest,
            bucket_newest: catalog.iter().all(|o| o.max_txid <= plan.txid),
        }
    }

    fn behind_ms(&self) -> Option<i64> {
        match self.target {
            Target::Time(t) => Some(t - self.landed_ms),
            _ => None,
        }
    }

    fn requested_json(&self) -> RequestedJson {
        match self.target {
            Target::Txid(t) => RequestedJson::Txid {
                txid: t.to_string(),
            },
            Target::Time(ms) => RequestedJson::Timestamp {
                timestamp_ms: ms,
                timestamp: fetch::rfc3339(ms),
            },
            Target::Latest => RequestedJson::Latest,
        }
    }

    /// One line for a time target: how far before the requested time the
    /// restored state is, and why.
    fn describe(&self) -> Option<String> {
        let Target::Time(t) = self.target else {
            return None;
        };
        let asked = fetch::rfc3339(t);
        let behind = (t - self.landed_ms) as f64 / 1000.0;
        Some(if behind == 0.0 {
            format!("requested {asked}: the transaction committed at exactly that time")
        } else if !self.newest {
            format!(
                "requested {asked}: later transactions before that time are no longer reproducible (compacted); this is the latest reproducible state, {behind:.3} s older than requested"
            )
        } else if self.bucket_newest {
            format!(
                "requested {asked}: after the newest transaction in the bucket; this is the latest state, {behind:.3} s older than requested"
            )
        } else {
            format!(
                "requested {asked}: the latest transaction at or before that time, {behind:.3} s older than requested"
            )
        })
    }
}

fn print_report(
    out: &mut dyn Write,
    rep: &RestoreReport,
    integrity: IntegrityCheck,
    elapsed: std::time::Duration,
) -> Result<()> {
    writeln!(
        out,
        "restored TXID {} at {} from {} file{} ({} bytes) to {}",
        rep.txid,
        rep.timestamp,
        rep.files.len(),
        if rep.files.len() == 1 { "" } else { "s" },
        rep.files_bytes,
        rep.output
    )?;
    writeln!(
        out,
        "database: {} pages of {} bytes ({} bytes), {} pages written, {} bytes read in {:.2}s",
        rep.commit,
        rep.page_size,
        u64::from(rep.commit) * u64::from(rep.page_size),
        rep.pages,
        rep.bytes_read,
        elapsed.as_secs_f64()
    )?;
    writeln!(out, "requests: {}", rep.requests)?;
    match &rep.checksum {
        Some(c) => writeln!(
            out,
            "checksum: {c} (matches the last file's post-apply checksum)"
        )?,
        None => writeln!(out, "checksum: not tracked by these files (NoChecksum)")?,
    }
    match integrity {
        IntegrityCheck::None => {}
        IntegrityCheck::Quick => writeln!(out, "quick_check: ok")?,
        IntegrityCheck::Full => writeln!(out, "integrity_check: ok")?,
    }
    Ok(())
}

/// Usage checks on OUT before anything is fetched.
fn check_output(o: &Path, force: bool) -> Result<()> {
    if o.is_dir() {
        bail!("{}: is a directory", o.display());
    }
    if !force && o.exists() {
        bail!("{} exists (use --force to replace it)", o.display());
    }
    let wal = crate::db::side_file(o, "-wal");
    if wal.exists() {
        bail!(
            "{} exists: a WAL beside the output would be applied over the restored file; remove it first",
            wal.display()
        );
    }
    Ok(())
}
