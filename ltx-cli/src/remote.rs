//! `ltx list URL` and `ltx verify URL`: the same commands over a bucket
//! (`s3://`, `gs://`, `az://`, `file://`, `memory://`), through
//! `ltx_compactor::store`.
//!
//! `list` reads each object's header, tail and page index with ranged GETs
//! (never the pages). `verify` streams every object completely through
//! ltx-core's streaming decoder (bounded memory: one read buffer and the
//! decoder's state per object in flight, several objects at once), then
//! checks each database's chains with the same checker as `ltx verify DIR`
//! ([`crate::chain::Checker`], each level a sequence: gaps, overlaps, page
//! sizes, checksum links, missing pages, names against headers; coarser
//! levels bridge cumulative windows, as the compactor lays them out) and
//! that a restore plan to the latest TXID exists.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use futures::StreamExt;
use ltx_compactor::catalog::LtxObject;
use ltx_compactor::store::Bucket;
use ltx_core::{Header, Pgno, Summary};
use object_store::path::Path as ObjPath;
use object_store::ObjectStoreExt;
use serde::Serialize;

use crate::check::{Event, Streamer};
use crate::output::{self, Align};

/// Whether a command-line argument is a URL (anything with `://`) rather
/// than a local path.
pub fn is_url(s: &str) -> bool {
    s.contains("://")
}

/// The arguments as URLs when they are URLs; `None` for local paths.
///
/// # Errors
/// URLs mixed with local paths.
pub fn urls_of(paths: &[std::path::PathBuf]) -> Result<Option<Vec<String>>> {
    let urls: Vec<String> = paths
        .iter()
        .filter_map(|p| p.to_str().filter(|s| is_url(s)).map(str::to_string))
        .collect();
    if urls.is_empty() {
        return Ok(None);
    }
    if urls.len() != paths.len() {
        anyhow::bail!("give either bucket URLs or local paths, not both");
    }
    Ok(Some(urls))
}

/// A multi-threaded runtime for the store's async API.
///
/// # Errors
/// The runtime cannot start.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // Local reads and page writes run on blocking threads: a few are
        // enough to keep the disk and the cores busy, and every thread
        // costs a malloc arena that keeps what it once held.
        .max_blocking_threads(8)
        .build()
        .context("starting the async runtime")
}

/// Prints `msg` as an error on standard error (after flushing `out`) and
/// returns [`crate::Failed`] (exit code 1).
pub fn fail(out: &mut dyn Write, msg: &str) -> Result<()> {
    out.flush().ok();
    eprintln!("ltx: error: {msg}");
    Err(crate::Failed.into())
}

/// Opens a bucket and finds its databases.
async fn databases(url: &str) -> Result<(Bucket, Vec<String>)> {
    let bucket = Bucket::open(url)?;
    let dbs = bucket.discover().await?;
    if dbs.is_empty() {
        anyhow::bail!(
            "{url}: no LTX database found (expected ltx/<level>/ or <level as %04x>/ directories)"
        );
    }
    Ok((bucket, dbs))
}

/// Says which `.ltx` keys under a database's level prefixes are not read:
/// names Litestream does not read either (e.g. upper-case hex).
fn note_ignored(foreign: &[String]) {
    for k in foreign.iter().filter(|k| k.ends_with(".ltx")) {
        eprintln!(
            "ltx: ignoring {k}: not a Litestream file name (%016x-%016x.ltx, lower-case hex); Litestream does not read it either"
        );
    }
}

/// Display name of a database prefix.
fn db_name(db: &str) -> &str {
    if db.is_empty() {
        "."
    } else {
        db
    }
}

// ---------------------------------------------------------------- list

struct ListRow {
    db: String,
    obj: LtxObject,
    meta: Option<ltx_compactor::store::ObjectMeta>,
    error: Option<String>,
}

/// `ltx list URL...`.
///
/// # Errors
/// Listing errors (exit 2); [`crate::Failed`] when an object cannot be read.
pub fn list(urls: &[String], json_out: bool, tsv: bool, out: &mut dyn Write) -> Result<()> {
    let rt = runtime()?;
    let mut rows: Vec<ListRow> = Vec::new();
    for url in urls {
        rows.extend(rt.block_on(list_url(url))?);
    }
    if json_out {
        let arr: Vec<ListJson> = rows.iter().map(list_json).collect();
        output::write_json(out, &arr)?;
    } else {
        let headers = [
            "level",
            "min_txid",
            "max_txid",
            "commit",
            "pages",
            "post_apply_checksum",
            "timestamp",
            "file_size",
            "key",
        ];
        let any_error = rows.iter().any(|r| r.error.is_some());
        let cells: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                let h = r.meta.as_ref().map(|m| &m.header);
                let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
                let mut c = vec![
                    r.obj.level.to_string(),
                    r.obj.min_txid.to_string(),
                    r.obj.max_txid.to_string(),
                    opt(h.map(|h| h.commit.to_string())),
                    opt(r.meta.as_ref().map(|m| m.index.len().to_string())),
                    opt(r
                        .meta
                        .as_ref()
                        .map(|m| m.trailer.post_apply_checksum.to_string())),
                    opt(h.map(|h| output::rfc3339_ms(h.timestamp))),
                    r.obj.size.to_string(),
                    r.obj.key.clone(),
                ];
                if tsv || any_error {
                    c.push(r.error.clone().unwrap_or_default());
                }
                c
            })
            .collect();
        let mut headers: Vec<&str> = headers.to_vec();
        if tsv || any_error {
            headers.push("error");
        }
        if tsv {
            writeln!(out, "{}", headers.join("\t"))?;
            for c in &cells {
                let c: Vec<String> = c.iter().map(|s| s.replace(['\t', '\n'], " ")).collect();
                writeln!(out, "{}", c.join("\t"))?;
            }
        } else {
            use Align::{Left, Right};
            let mut align = vec![Right, Left, Left, Right, Right, Left, Left, Right, Left];
            if any_error {
                align.push(Left);
            }
            let upper: Vec<String> = headers.iter().map(|h| h.to_uppercase()).collect();
            let upper: Vec<&str> = upper.iter().map(String::as_str).collect();
            output::write_table(out, "", &upper, &align, &cells)?;
        }
    }
    let bad: Vec<&ListRow> = rows.iter().filter(|r| r.error.is_some()).collect();
    if !bad.is_empty() {
        out.flush().ok();
        for r in &bad {
            eprintln!("ltx: {}", r.error.as_deref().unwrap_or(""));
        }
        return Err(crate::Failed.into());
    }
    Ok(())
}

async fn list_url(url: &str) -> Result<Vec<ListRow>> {
    let (bucket, dbs) = databases(url).await?;
    let mut rows = Vec::new();
    for db in dbs {
        let (cat, foreign) = bucket.catalog(&db).await?;
        note_ignored(&foreign);
        let metas: Vec<ListRow> = futures::stream::iter(cat)
            .map(|obj| {
                let (bucket, db) = (&bucket, &db);
                async move {
                    let (meta, error) = match bucket.read_meta(&obj.key, obj.size).await {
                        Ok(m) => (Some(m), None),
                        Err(e) => (None, Some(format!("{e:#}"))),
                    };
                    ListRow {
                        db: db.clone(),
                        obj,
                        meta,
                        error,
                    }
                }
            })
            .buffered(ltx_compactor::store::READ_CONCURRENCY)
            .collect()
            .await;
        rows.extend(metas);
    }
    Ok(rows)
}

/// One object in `ltx list URL --json`.
#[derive(Serialize)]
struct ListJson<'a> {
    db: &'a str,
    key: &'a str,
    level: u8,
    min_txid: String,
    max_txid: String,
    file_size: u64,
    last_modified_ms: i64,
    page_size: Option<usize>,
    commit: Option<u32>,
    pages: Option<usize>,
    flags: Option<u32>,
    timestamp: Option<i64>,
    timestamp_rfc3339: Option<String>,
    pre_apply_checksum: Option<String>,
    post_apply_checksum: Option<String>,
    file_checksum: Option<String>,
    /// The object's time as Litestream reads it on object stores (its
    /// `litestream-timestamp` metadata; on a `file` replica, the
    /// modification time: `last_modified_ms`).
    litestream_timestamp: Option<i64>,
    error: Option<&'a str>,
}

fn list_json(r: &ListRow) -> ListJson<'_> {
    let h = r.meta.as_ref().map(|m| &m.header);
    let t = r.meta.as_ref().map(|m| &m.trailer);
    ListJson {
        db: &r.db,
        key: &r.obj.key,
        level: r.obj.level,
        min_txid: r.obj.min_txid.to_string(),
        max_txid: r.obj.max_txid.to_string(),
        file_size: r.obj.size,
        last_modified_ms: r.obj.created_ms,
        page_size: h.map(|h| h.page_size.bytes()),
        commit: h.map(|h| h.commit),
        pages: r.meta.as_ref().map(|m| m.index.len()),
        flags: h.map(|h| h.flags),
        timestamp: h.map(|h| h.timestamp),
        timestamp_rfc3339: h.map(|h| output::rfc3339_ms(h.timestamp)),
        pre_apply_checksum: h.map(|h| h.pre_apply_checksum.to_string()),
        post_apply_checksum: t.map(|t| t.post_apply_checksum.to_string()),
        file_checksum: t.map(|t| t.file_checksum.to_string()),
        litestream_timestamp: r.meta.as_ref().and_then(|m| m.litestream_ms),
        error: r.error.as_deref(),
    }
}

// ---------------------------------------------------------------- verify

/// The verdict on one object.
struct Checked {
    obj: LtxObject,
    /// Bytes read.
    read: u64,
    header: Option<Header>,
    summary: Option<Summary>,
    /// Page numbers decoded, ascending (for the missing-pages rule).
    pgnos: Vec<Pgno>,
    /// (message, byte offset) of the first problem.
    error: Option<(String, Option<u64>)>,
}

/// A problem in a database's catalog.
struct Problem {
    kind: &'static str,
    key: Option<String>,
    message: String,
}

/// Objects streamed at once.
const VERIFY_CONCURRENCY: usize = 8;

/// `ltx verify URL...`.
///
/// # Errors
/// Listing errors (exit 2); [`crate::Failed`] when any object or chain
/// check fails.
pub fn verify(urls: &[String], json_out: bool, quiet: bool, out: &mut dyn Write) -> Result<()> {
    let rt = runtime()?;
    // (URL, database, objects, problems, latest restorable TXID)
    type DbVerdict = (String, String, Vec<Checked>, Vec<Problem>, Option<String>);
    let mut all: Vec<DbVerdict> = Vec::new();
    for url in urls {
        let (bucket, dbs) = rt.block_on(databases(url))?;
        for db in dbs {
            let (cat, foreign) = rt.block_on(bucket.catalog(&db))?;
            note_ignored(&foreign);
            let total: u64 = cat.iter().map(|o| o.size).sum();
            let pb = output::progress(total >= 32 << 20, Some(total), "verify");
            let done = AtomicU64::new(0);
            let tick = |n: u64| {
                let d = done.fetch_add(n, Ordering::Relaxed) + n;
                pb.set_position(d);
            };
            let checked: Vec<Checked> = rt.block_on(
                futures::stream::iter(cat)
                    .map(|o| verify_object(&bucket, o, &tick))
                    .buffered(VERIFY_CONCURRENCY)
                    .collect(),
            );
            pb.finish_and_clear();
            let (problems, latest) = check_catalog(&checked);
            all.push((url.clone(), db, checked, problems, latest));
        }
    }

    let files: usize = all.iter().map(|a| a.2.len()).sum();
    let failed: usize = all
        .iter()
        .map(|a| a.2.iter().filter(|c| c.error.is_some()).count())
        .sum();
    let nproblems: usize = all.iter().map(|a| a.3.len()).sum();
    let bytes: u64 = all.iter().flat_map(|a| &a.2).map(|c| c.read).sum();
    if json_out {
        let databases = all
            .iter()
            .map(|(url, db, checked, problems, latest)| DatabaseJson {
                url,
                db,
                files: checked.iter().map(checked_json).collect(),
                problems: problems
                    .iter()
                    .map(|p| ProblemJson {
                        kind: p.kind,
                        key: p.key.as_deref(),
                        message: &p.message,
                    })
                    .collect(),
                latest_restorable_txid: latest.as_deref(),
                ok: problems.is_empty() && checked.iter().all(|c| c.error.is_none()),
            })
            .collect();
        output::write_json(
            out,
            &VerifyJson {
                databases,
                summary: VerifySummaryJson {
                    databases: all.len(),
                    files,
                    ok: files - failed,
                    failed,
                    problems: nproblems,
                    bytes_read: bytes,
                },
                ok: failed == 0 && nproblems == 0,
            },
        )?;
    } else {
        for (_, db, checked, problems, latest) in &all {
            for c in checked {
                match &c.error {
                    None if !quiet => writeln!(out, "ok   {}", c.obj.key)?,
                    None => {}
                    Some((m, _)) => writeln!(out, "FAIL {m}")?,
                }
            }
            for p in problems {
                writeln!(out, "CHAIN {}: {}: {}", db_name(db), p.kind, p.message)?;
            }
            if !quiet {
                let levels: BTreeMap<u8, usize> =
                    checked.iter().fold(BTreeMap::new(), |mut m, c| {
                        *m.entry(c.obj.level).or_default() += 1;
                        m
                    });
                let levels: Vec<String> =
                    levels.iter().map(|(l, n)| format!("L{l}: {n}")).collect();
                writeln!(
                    out,
                    "database {}: {} file{} ({}), latest restorable TXID {}",
                    db_name(db),
                    checked.len(),
                    if checked.len() == 1 { "" } else { "s" },
                    levels.join(", "),
                    latest.as_deref().unwrap_or("none")
                )?;
            }
        }
        writeln!(
            out,
            "{} database{}, {files} file{} verified ({bytes} bytes read), {failed} failed, {nproblems} chain problems",
            all.len(),
            if all.len() == 1 { "" } else { "s" },
            if files == 1 { "" } else { "s" },
        )?;
    }
    if failed > 0 || nproblems > 0 {
        return Err(crate::Failed.into());
    }
    Ok(())
}

/// Streams one object through the decoder.
async fn verify_object(bucket: &Bucket, obj: LtxObject, tick: &(dyn Fn(u64) + Sync)) -> Checked {
    let mut c = Checked {
        obj,
        read: 0,
        header: None,
        summary: None,
        pgnos: Vec::new(),
        error: None,
    };
    let key = c.obj.key.clone();
    let url = bucket.url();
    let mut st = Streamer::new();
    let mut header = None;
    let mut pgnos = Vec::new();
    let r: Result<()> = async {
        let mut body = bucket
            .store()
            .get(&ObjPath::from(key.as_str()))
            .await
            .with_context(|| format!("{url}: GET {key}"))?
            .into_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.with_context(|| format!("{url}: {key}: reading at offset {}", st.fed()))?;
            st.feed(&chunk, &mut |e| {
                match e {
                    Event::Header(h) => header = Some(h),
                    Event::Page(info, _) => pgnos.push(info.pgno),
                }
                Ok(())
            })?;
            tick(chunk.len() as u64);
            // A format error stops decoding: do not download the rest.
            if st.summary().is_none() {
                if let Err(e) = st.finish() {
                    if e.category() != Some("truncated") {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    c.read = st.fed();
    c.header = header;
    pgnos.sort_unstable();
    c.pgnos = pgnos;
    match r {
        Err(e) => c.error = Some((format!("{e:#}"), None)),
        Ok(()) => match st.finish() {
            Ok(s) => c.summary = Some(s),
            Err(e) => c.error = Some((format!("{key}: {e}"), e.offset())),
        },
    }
    if c.error.is_none() && c.read != c.obj.size {
        c.error = Some((
            format!(
                "{key}: the listing says {} bytes, the body had {}",
                c.obj.size, c.read
            ),
            Some(c.read),
        ));
    }
    c
}

/// Chain checks over one database's verified objects, by the one chain
/// checker ([`crate::chain::Checker`], each level a sequence); returns the
/// problems and the latest restorable TXID.
fn check_catalog(checked: &[Checked]) -> (Vec<Problem>, Option<String>) {
    let links: Vec<crate::chain::Link> = checked
        .iter()
        .map(|c| crate::chain::Link {
            name: c.obj.key.clone(),
            short: c.obj.key.clone(),
            db: 0,
            seq: Some(usize::from(c.obj.level)),
            level: Some(u32::from(c.obj.level)),
            named: Some((c.obj.min_txid, c.obj.max_txid)),
            header: c.header,
            trailer: c.summary.map(|s| s.trailer),
            pgnos: (c.header.is_some() && c.error.is_none()).then_some(c.pgnos.as_slice()),
        })
        .collect();
    let mut problems: Vec<Problem> = crate::chain::Checker::new(&links)
        .check()
        .into_iter()
        .map(|f| Problem {
            kind: f.kind,
            key: Some(links[f.next].name.clone()),
            message: f.message,
        })
        .collect();
    let mut push = |kind, key: Option<&str>, message: String| {
        problems.push(Problem {
            kind,
            key: key.map(str::to_string),
            message,
        })
    };
    // A restore to the latest TXID is possible from the files that verified.
    let good: Vec<LtxObject> = checked
        .iter()
        .filter(|c| c.error.is_none())
        .map(|c| c.obj.clone())
        .collect();
    let latest_listed = checked.iter().map(|c| c.obj.max_txid).max();
    let latest = match ltx_compactor::plan_restore(&good, ltx_compactor::Target::Latest) {
        Ok(p) => {
            if latest_listed.is_some_and(|l| l > p.txid) {
                push(
                    "restore",
                    None,
                    format!(
                        "the newest listed TXID is {} but the verified files reproduce only up to {}",
                        latest_listed.expect("some"),
                        p.txid
                    ),
                );
            }
            Some(p.txid.to_string())
        }
        Err(e) => {
            push(
                "restore",
                None,
                format!("no restore plan to the latest TXID: {e}"),
            );
            None
        }
    };
    (problems, latest)
}

/// `ltx verify URL --json`.
#[derive(Serialize)]
struct VerifyJson<'a> {
    databases: Vec<DatabaseJson<'a>>,
    summary: VerifySummaryJson,
    ok: bool,
}

#[derive(Serialize)]
struct VerifySummaryJson {
    databases: usize,
    files: usize,
    ok: usize,
    failed: usize,
    problems: usize,
    bytes_read: u64,
}

/// One database in `ltx verify URL --json`.
#[derive(Serialize)]
struct DatabaseJson<'a> {
    url: &'a str,
    db: &'a str,
    files: Vec<CheckedJson<'a>>,
    problems: Vec<ProblemJson<'a>>,
    latest_restorable_txid: Option<&'a str>,
    ok: bool,
}

#[derive(Serialize)]
struct ProblemJson<'a> {
    kind: &'static str,
    key: Option<&'a str>,
    message: &'a str,
}

/// One object in `ltx verify URL --json`.
#[derive(Serialize)]
struct CheckedJson<'a> {
    key: &'a str,
    level: u8,
    min_txid: String,
    max_txid: String,
    file_size: u64,
    bytes_read: u64,
    ok: bool,
    error: Option<&'a str>,
    offset: Option<u64>,
    commit: Option<u32>,
    pages: Option<u64>,
    timestamp: Option<String>,
    post_apply_checksum: Option<String>,
    file_checksum: Option<String>,
}

fn checked_json(c: &Checked) -> CheckedJson<'_> {
    CheckedJson {
        key: &c.obj.key,
        level: c.obj.level,
        min_txid: c.obj.min_txid.to_string(),
        max_txid: c.obj.max_txid.to_string(),
        file_size: c.obj.size,
        bytes_read: c.read,
        ok: c.error.is_none(),
        error: c.error.as_ref().map(|e| e.0.as_str()),
        offset: c.error.as_ref().and_then(|e| e.1),
        commit: c.header.map(|h| h.commit),
        pages: c.summary.map(|s| s.page_count),
        timestamp: c.header.map(|h| output::rfc3339_ms(h.timestamp)),
        post_apply_checksum: c.summary.map(|s| s.trailer.post_apply_checksum.to_string()),
        file_checksum: c.summary.map(|s| s.trailer.file_checksum.to_string()),
    }
}
