//! `ltx sql URL [--txid T | --timestamp TS] QUERY`: a read-only query
//! against the database as of a TXID or time, fetching only the pages the
//! query touches.
//!
//! The plan is a restore's (the fewest files reaching the target); every
//! planned file's header and page index is read (small files whole), then
//! SQLite runs the query through a read-only VFS ([`crate::vfs`]) whose
//! page reads are single frames, or short spans of neighbouring frames,
//! read from the file holding each page's newest copy
//! ([`ltx_compactor::pages::PitDb`]) and cached for the command's duration
//! ([`crate::pitr::PitPages`]).

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use ltx_compactor::pages::PitDb;
use ltx_core::TxId;
use rusqlite::types::ValueRef;
use serde::Serialize;

use crate::args::{parse_time, parse_txid};
use crate::pitr::{self, PitPages};
use crate::remote;
use crate::vfs::{PageSource, ReadOnlyVfs};

/// Arguments of `ltx sql`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
URL is one database of a bucket, or a root holding exactly one, as for `ltx
restore`: s3://bucket/prefix, gs://, az://, file:///dir or a replica directory.
Without --txid or --timestamp the query runs against the latest reproducible
state; --timestamp takes the latest transaction at or before that time.

Only the pages the query reads are fetched: every planned file's header and
page index first (one GET of a small file, two ranged GETs of a large one), then
each page from the newest planned file holding it (one ranged GET per page, or
per run of neighbouring frames; pages read in page order are fetched a few at a
time). Pages are cached for the command's duration (--cache-mib). Nothing is
written anywhere: the query runs read-only (a statement that would write is
refused) on SQLite opened immutable, whatever the database's journal mode.

Output: one row a line, columns joined by `|`, as the sqlite3 shell prints them
in its default mode: NULL as an empty string, numbers as SQLite converts them to
text (100.0, 1.0e+20), text and blobs as their bytes up to a first NUL byte; no
header line. --json prints an array of rows, each an array of values: integers
and reals as numbers (infinities as null), text as strings (invalid UTF-8
replaced), blobs as strings of lower-case hex digits, NULL as null.

--stats prints on standard error the TXID read, pages fetched, bytes read
(headers, indexes and frames), requests by kind, files touched and the share of
the database's size read (a JSON object with --json).

Exit codes: 0 ok; 1 no plan for the target or a page could not be read (the
message names the file); 2 usage errors, SQL errors, a statement that writes.

Examples:
  ltx sql s3://backups/app.db \"SELECT * FROM orders WHERE id = 42\"
  ltx sql /backups/app.db --txid 000000000000002a \"SELECT count(*) FROM t\" --stats
  ltx sql s3://backups/app.db --timestamp 2026-11-22T14:05:00Z --json \"SELECT id, total FROM orders LIMIT 3\"")]
pub struct Args {
    /// The database's URL or replica directory.
    pub url: String,
    /// One SQL statement that reads (SELECT, WITH, read-only PRAGMAs).
    pub query: String,
    /// Query exactly this transaction (16 hex digits, 0x-prefixed hex, or decimal).
    #[arg(long, conflicts_with = "timestamp", value_parser = parse_txid)]
    pub txid: Option<TxId>,
    /// Query the latest transaction at or before this time (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    pub timestamp: Option<i64>,
    /// Print the rows as a JSON array of arrays.
    #[arg(long)]
    pub json: bool,
    /// Print pages fetched, bytes read and requests on standard error.
    #[arg(long)]
    pub stats: bool,
    /// Pages kept in memory at most, in MiB.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    pub cache_mib: u64,
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let started = Instant::now();
    let rt = remote::runtime()?;
    let target = pitr::target(args.txid, args.timestamp);
    let p = pitr::plan(&rt, &args.url, target)?;
    let db = match rt.block_on(PitDb::open(
        &p.bucket,
        &p.db,
        p.plan,
        pitr::query_read_options(),
    )) {
        Ok(d) => d,
        Err(e) => return remote::fail(out, &format!("{e:#}")),
    };
    let pages = Arc::new(PitPages::new(rt, db, args.cache_mib << 20));
    let vfs = ReadOnlyVfs::register(pages.clone() as Arc<dyn PageSource>)?;
    let r = query(&vfs, &args, out);
    let r = match r {
        // A page that could not be read is the cause of SQLite's error.
        Err(e) => match vfs.take_error() {
            Some(m) => {
                out.flush().ok();
                eprintln!("ltx: error: {m}");
                eprintln!("ltx: (SQLite: {e:#})");
                Err(crate::Failed.into())
            }
            None => Err(e),
        },
        Ok(()) => Ok(()),
    };
    drop(vfs);
    if args.stats {
        out.flush().ok();
        print_stats(&pages, &p.bucket, args.json, started)?;
    }
    r
}

/// Prepares, checks and runs the query, printing its rows.
fn query(vfs: &ReadOnlyVfs, args: &Args, out: &mut dyn Write) -> Result<()> {
    let conn = vfs.open()?;
    let mut stmt = match conn.prepare(&args.query) {
        Ok(s) => s,
        Err(rusqlite::Error::MultipleStatement) => {
            bail!("give one SQL statement (the query holds several)")
        }
        Err(e) => return Err(e).context("preparing the query"),
    };
    // SQLite compiles the first statement only: refuse a query with more.
    if let Some(first) = stmt.expanded_sql() {
        let rest = args.query.strip_prefix(first.as_str()).unwrap_or("");
        if !only_comments(rest) {
            bail!("give one SQL statement (the query holds several)");
        }
    }
    if !stmt.readonly() {
        bail!("ltx sql runs read-only queries: this statement would write to the database");
    }
    // SQLite's own text form of a REAL (what sqlite3_column_text gives,
    // hence what the shell prints).
    let mut real_text = conn.prepare("SELECT CAST(?1 AS TEXT)")?;
    let ncol = stmt.column_count();
    let mut rows = stmt.query([]).context("running the query")?;
    let mut first = true;
    if args.json {
        out.write_all(b"[")?;
    }
    while let Some(row) = rows.next().context("running the query")? {
        if args.json {
            out.write_all(if first { b"\n[" } else { b",\n[" })?;
            for i in 0..ncol {
                if i > 0 {
                    out.write_all(b",")?;
                }
                serde_json::to_writer(&mut *out, &json_value(row.get_ref(i)?))?;
            }
            out.write_all(b"]")?;
        } else {
            for i in 0..ncol {
                if i > 0 {
                    out.write_all(b"|")?;
                }
                match row.get_ref(i)? {
                    ValueRef::Null => {}
                    ValueRef::Integer(v) => write!(out, "{v}")?,
                    ValueRef::Real(v) => {
                        let t: String = real_text.query_row([v], |r| r.get(0))?;
                        out.write_all(t.as_bytes())?;
                    }
                    ValueRef::Text(b) | ValueRef::Blob(b) => out.write_all(upto_nul(b))?,
                }
            }
            out.write_all(b"\n")?;
        }
        first = false;
    }
    if args.json {
        out.write_all(if first { b"]\n" } else { b"\n]\n" })?;
    }
    Ok(())
}

/// Whether `s` holds nothing but white space, `;` and SQL comments.
fn only_comments(mut s: &str) -> bool {
    loop {
        s = s.trim_start_matches(|c: char| c.is_whitespace() || c == ';');
        if let Some(r) = s.strip_prefix("--") {
            s = r.split_once('\n').map_or("", |x| x.1);
        } else if let Some(r) = s.strip_prefix("/*") {
            s = r.split_once("*/").map_or("", |x| x.1);
        } else {
            return s.is_empty();
        }
    }
}

/// The bytes before the first NUL (the shell prints C strings).
fn upto_nul(b: &[u8]) -> &[u8] {
    match b.iter().position(|&c| c == 0) {
        Some(n) => &b[..n],
        None => b,
    }
}

/// One value in `--json`.
fn json_value(v: ValueRef<'_>) -> serde_json::Value {
    use serde_json::Value;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Blob(b) => Value::String(crate::output::hex(b)),
    }
}

/// `ltx sql --stats --json` (on standard error).
#[derive(Serialize)]
struct StatsJson {
    txid: String,
    timestamp: String,
    page_size: usize,
    commit: u32,
    database_bytes: u64,
    pages_fetched: u64,
    bytes_read: u64,
    read_percent: f64,
    requests: ltx_compactor::counting::RequestCounts,
    files_planned: usize,
    files_touched: usize,
    elapsed_ms: u64,
}

fn print_stats(
    pages: &PitPages,
    bucket: &ltx_compactor::store::Bucket,
    json: bool,
    started: Instant,
) -> Result<()> {
    let s = pages.stats();
    let db = pages.db();
    let ps = db.page_size().bytes();
    let size = u64::from(db.commit()) * ps as u64;
    let pct = if size == 0 {
        0.0
    } else {
        s.bytes_read as f64 * 100.0 / size as f64
    };
    let req = bucket.requests();
    let st = StatsJson {
        txid: db.plan().txid.to_string(),
        timestamp: ltx_compactor::fetch::rfc3339(db.timestamp_ms()),
        page_size: ps,
        commit: db.commit(),
        database_bytes: size,
        pages_fetched: s.pages,
        bytes_read: s.bytes_read,
        read_percent: (pct * 1000.0).round() / 1000.0,
        requests: req,
        files_planned: s.files_planned,
        files_touched: s.files_touched,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    if json {
        eprintln!("{}", serde_json::to_string(&st)?);
    } else {
        eprintln!(
            "ltx: TXID {} at {}: {} pages fetched, {} bytes read ({:.3}% of the database's {} bytes), {} requests (list {}, get {}, get_range {}), {} of {} planned files touched, {:.3}s",
            st.txid,
            st.timestamp,
            st.pages_fetched,
            st.bytes_read,
            pct,
            size,
            req.total(),
            req.list,
            req.get,
            req.get_range,
            st.files_touched,
            st.files_planned,
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_after_a_statement() {
        assert!(only_comments(""));
        assert!(only_comments(" ;\n -- done\n/* x */ ;"));
        assert!(only_comments("-- no newline"));
        assert!(!only_comments("; SELECT 2"));
        assert!(!only_comments("/* c */ SELECT 2"));
        assert_eq!(upto_nul(b"a\0b"), b"a");
        assert_eq!(upto_nul(b"ab"), b"ab");
    }
}
