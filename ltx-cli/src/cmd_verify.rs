//! `ltx verify`: full verification of many files in parallel, and of the
//! TXID chain of every directory given.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use ltx_core::{Header, LtxFile, Pgno, Summary};
use rayon::prelude::*;
use serde_json::{json, Value};

use crate::check::{self, Streamer};
use crate::input::{self, LtxPath};
use crate::output::{self, hex16};
use crate::version::{self, VersionArg};
use ltx_core::FormatVersion;

/// Arguments of `ltx verify`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Every file is decoded completely: header rules, every page frame (LZ4),
page order, the page index, the file checksum, and for snapshots the
post-apply checksum. Files are checked in parallel.

For each directory given (recursively; a Litestream replica `ltx/<level>/` or
`<level as %04x>/` works), the files of each sub-directory (= level) are also
checked as a chain, in TXID order:
  gap              next.min_txid > prev.max_txid + 1
  overlap          next.min_txid <= prev.max_txid
  checksum-link    next.pre_apply_checksum != prev.post_apply_checksum
                   (both tracking checksums, contiguous)
  missing-pages    commit grows but the file lacks pages prev.commit+1..=commit
  page-size        the page size changes
  name-mismatch    the file name's TXIDs differ from its header's
A snapshot (min TXID 1) starts a new chain.

Format versions 1 and 2 (LiteFS, Litestream before v0.5) are detected per file
(the layout whose structure and file checksum validate) or forced with
--format-version; a file that validates under no layout (or under several)
fails, naming what each layout found. Chains may mix versions.

Output: `ok   PATH` or `FAIL PATH: error` per file, chain problems, then a
summary line. Exit code 1 if anything failed.")]
pub struct Args {
    /// LTX files and directories; `-` verifies standard input (streaming).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object (files, chain_problems, summary).
    #[arg(long)]
    pub json: bool,
    /// Do not check chains, only files.
    #[arg(long)]
    pub no_chain: bool,
    /// Print only failures and the summary.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub version: VersionArg,
}

/// The verdict on one file, and what the chain check needs from it.
struct FileResult {
    path: LtxPath,
    /// Whether it came from expanding a directory argument (chain-checked).
    in_dir: bool,
    size: u64,
    outcome: Outcome,
    /// The header, when it decodes (even if the file fails later).
    header: Option<Header>,
    /// Page numbers from the page index, when it parses.
    pgnos: Option<Vec<Pgno>>,
    /// The verified summary.
    summary: Option<Summary>,
    /// The format version the file was read as.
    version: Option<FormatVersion>,
    /// Detection's account when no (or more than one) layout validates.
    detect_note: Option<String>,
}

enum Outcome {
    Ok,
    Format(ltx_core::Error),
    Io(String),
}

impl FileResult {
    fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok)
    }
    fn error_message(&self) -> Option<String> {
        match &self.outcome {
            Outcome::Ok => None,
            Outcome::Format(e) => Some(match &self.detect_note {
                Some(n) => format!("{e} [{n}]"),
                None => e.to_string(),
            }),
            Outcome::Io(m) => Some(m.clone()),
        }
    }
}

/// A problem between two files of one chain (or with one file's name).
struct ChainProblem {
    kind: &'static str,
    dir: PathBuf,
    level: Option<u32>,
    prev: Option<String>,
    next: String,
    message: String,
}

fn verify_local(
    p: LtxPath,
    in_dir: bool,
    tick: &(dyn Fn(u64) + Sync),
    forced: Option<FormatVersion>,
) -> FileResult {
    let mut r = FileResult {
        path: p,
        in_dir,
        size: 0,
        outcome: Outcome::Ok,
        header: None,
        pgnos: None,
        summary: None,
        version: None,
        detect_note: None,
    };
    let bytes = match input::open(&r.path.path) {
        Ok(b) => b,
        Err(e) => {
            r.outcome = Outcome::Io(format!("{e:#}"));
            return r;
        }
    };
    verify_source(r, &bytes, tick, forced)
}

/// Verifies the bytes of `r`'s file (detecting its format version).
fn verify_source(
    mut r: FileResult,
    bytes: &[u8],
    tick: &(dyn Fn(u64) + Sync),
    forced: Option<FormatVersion>,
) -> FileResult {
    r.size = bytes.len() as u64;
    let mut v3_pgnos = None;
    let detected = version::detect_with(bytes, forced, |bytes| match LtxFile::parse(bytes) {
        Ok(f) => {
            let mut pgnos: Vec<Pgno> = f.index().entries().iter().map(|e| e.pgno).collect();
            pgnos.sort_unstable();
            v3_pgnos = Some(pgnos);
            check::verify_with(&f, tick)
        }
        Err(parse_err) => Err(check::stream_error(bytes).unwrap_or(parse_err)),
    });
    let d = match detected {
        Ok(d) => d,
        Err(e) => {
            // Ambiguous: more than one layout validates.
            r.outcome = Outcome::Io(format!("{e:#}"));
            return r;
        }
    };
    r.version = Some(d.version);
    r.detect_note = match &d.none {
        Some(n) => Some(n.to_string()),
        None if d.forced && d.verdict.is_err() => Some(format!("read as format {}", d.version)),
        None => None,
    };
    r.header = match d.version {
        FormatVersion::V1 => {
            ltx_core::v1::decode_old_header(bytes, ltx_core::v1::V1_FLAG_MASK).ok()
        }
        FormatVersion::V2 => {
            ltx_core::v1::decode_old_header(bytes, ltx_core::v2::V2_FLAG_MASK).ok()
        }
        FormatVersion::V3 => Header::decode(bytes).ok(),
    };
    r.pgnos = match d.version {
        FormatVersion::V3 => v3_pgnos,
        v => {
            let mut pgnos = Vec::new();
            let _ = ltx_core::detect::for_each_page(bytes, v, |info, _| {
                pgnos.push(info.pgno);
                Ok(())
            });
            pgnos.sort_unstable();
            Some(pgnos)
        }
    };
    if d.version != FormatVersion::V3 {
        tick(r.size);
    }
    match d.verdict {
        Ok(s) => r.summary = Some(s),
        Err(e) => r.outcome = Outcome::Format(e),
    }
    r
}

fn verify_stdin(tick: &dyn Fn(u64), forced: Option<FormatVersion>) -> Result<FileResult> {
    let Some(v) = forced else {
        // Detection needs the whole file: read it, then verify it like a file.
        let bytes = input::read_stdin()?;
        tick(bytes.len() as u64);
        let r = FileResult {
            path: LtxPath {
                path: PathBuf::from("-"),
                level: None,
                txids: None,
            },
            in_dir: false,
            size: 0,
            outcome: Outcome::Ok,
            header: None,
            pgnos: None,
            summary: None,
            version: None,
            detect_note: None,
        };
        return Ok(verify_source(r, &bytes, &|_| {}, None));
    };
    let mut st = Streamer::with_version(v);
    let mut header = None;
    let mut pgnos = Vec::new();
    let verdict = st.run(
        &mut std::io::stdin().lock(),
        "standard input",
        &mut |e| {
            match e {
                check::Event::Header(h) => header = Some(h),
                check::Event::Page(info, _) => pgnos.push(info.pgno),
            }
            Ok(())
        },
        tick,
    )?;
    let mut r = FileResult {
        path: LtxPath {
            path: PathBuf::from("-"),
            level: None,
            txids: None,
        },
        in_dir: false,
        size: st.fed(),
        outcome: Outcome::Ok,
        header,
        pgnos: Some({
            pgnos.sort_unstable();
            pgnos
        }),
        summary: None,
        version: Some(v),
        detect_note: None,
    };
    match verdict {
        Ok(s) => r.summary = Some(s),
        Err(e) => r.outcome = Outcome::Format(e),
    }
    Ok(r)
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    // Expand each argument separately to know which files came from directories.
    let mut local: Vec<(LtxPath, bool)> = Vec::new();
    let mut stdin = false;
    for p in &args.paths {
        if input::is_stdin(p) {
            stdin = true;
            continue;
        }
        let in_dir = p.is_dir();
        for lp in input::expand(std::slice::from_ref(p))? {
            local.push((lp, in_dir));
        }
    }
    // The same file reached through two arguments is verified once (and is
    // chain-checked if any of them was a directory).
    let mut first: std::collections::HashMap<PathBuf, usize> = std::collections::HashMap::new();
    let mut unique: Vec<(LtxPath, bool)> = Vec::with_capacity(local.len());
    for (p, in_dir) in local {
        match first.get(&p.path) {
            Some(&i) => unique[i].1 |= in_dir,
            None => {
                first.insert(p.path.clone(), unique.len());
                unique.push((p, in_dir));
            }
        }
    }
    let local = unique;
    if local.is_empty() && !stdin {
        anyhow::bail!(
            "no LTX files found in {}",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let total: u64 = local
        .iter()
        .filter_map(|(p, _)| std::fs::metadata(&p.path).ok().map(|m| m.len()))
        .sum();
    let pb = output::progress(total >= 32 << 20, Some(total), "verify");
    let done = AtomicU64::new(0);
    let tick = |n: u64| {
        let d = done.fetch_add(n, Ordering::Relaxed) + n;
        if d % (1 << 20) < n {
            pb.set_position(d);
        }
    };

    let mut results: Vec<FileResult> = local
        .into_par_iter()
        .map(|(p, in_dir)| verify_local(p, in_dir, &tick, args.version.forced()))
        .collect();
    pb.finish_and_clear();
    if stdin {
        let spb = output::progress(true, None, "verify -");
        results.push(verify_stdin(&|n| spb.inc(n), args.version.forced())?);
        spb.finish_and_clear();
    }

    let problems = if args.no_chain {
        Vec::new()
    } else {
        chain_problems(&results)
    };
    let failed = results.iter().filter(|r| !r.ok()).count();
    let io_errors = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Io(_)))
        .count();

    if args.json {
        let files: Vec<Value> = results.iter().map(file_json).collect();
        let chain: Vec<Value> = problems
            .iter()
            .map(|p| {
                json!({
                    "kind": p.kind,
                    "dir": p.dir.display().to_string(),
                    "level": p.level,
                    "prev": p.prev,
                    "next": p.next,
                    "message": p.message,
                })
            })
            .collect();
        let v = json!({
            "files": files,
            "chain_problems": chain,
            "summary": {
                "files": results.len(),
                "ok": results.len() - failed,
                "failed": failed,
                "chain_problems": problems.len(),
            },
            "ok": failed == 0 && problems.is_empty(),
        });
        serde_json::to_writer_pretty(&mut *out, &v)?;
        writeln!(out)?;
    } else {
        for r in &results {
            match r.error_message() {
                None if !args.quiet => writeln!(out, "ok   {}", r.path.name())?,
                None => {}
                Some(m) => writeln!(out, "FAIL {}: {m}", r.path.name())?,
            }
        }
        for p in &problems {
            let level = p.level.map(|l| format!(" level {l}")).unwrap_or_default();
            writeln!(
                out,
                "CHAIN {}{level}: {}: {}",
                p.dir.display(),
                p.kind,
                p.message
            )?;
        }
        let mut line = format!(
            "{} file{} verified, {failed} failed",
            results.len(),
            if results.len() == 1 { "" } else { "s" }
        );
        if !args.no_chain {
            line.push_str(&format!(", {} chain problems", problems.len()));
        }
        writeln!(out, "{line}")?;
    }

    if io_errors > 0 {
        out.flush().ok();
        anyhow::bail!("{io_errors} of {} files could not be read", results.len());
    }
    if failed > 0 || !problems.is_empty() {
        return Err(crate::Failed.into());
    }
    Ok(())
}

fn file_json(r: &FileResult) -> Value {
    let (category, offset, pgno) = match &r.outcome {
        Outcome::Format(e) => (json!(e.category()), json!(e.offset()), json!(e.pgno())),
        Outcome::Io(_) => (json!("io"), Value::Null, Value::Null),
        Outcome::Ok => (Value::Null, Value::Null, Value::Null),
    };
    let h = r.header.as_ref();
    json!({
        "path": r.path.name(),
        "format_version": r.version.map(|v| v.number()),
        "ok": r.ok(),
        "error": r.error_message(),
        "category": category,
        "offset": offset,
        "pgno": pgno,
        "level": r.path.level,
        "min_txid": h.map(|h| h.min_txid.to_string()),
        "max_txid": h.map(|h| h.max_txid.to_string()),
        "commit": h.map(|h| h.commit),
        "pages": r.summary.map(|s| s.page_count),
        "file_size": r.size,
        "post_apply_checksum": r.summary.map(|s| s.trailer.post_apply_checksum.to_string()),
        "file_checksum": r.summary.map(|s| s.trailer.file_checksum.to_string()),
    })
}

/// Chain checks over the files that came from directories, grouped by
/// their parent directory (one level of a replica), in TXID order.
fn chain_problems(results: &[FileResult]) -> Vec<ChainProblem> {
    let mut problems = Vec::new();

    // File names that disagree with headers (any file).
    for r in results {
        if let (Some(h), Some((a, b))) = (&r.header, r.path.txids) {
            if (h.min_txid, h.max_txid) != (a, b) {
                problems.push(ChainProblem {
                    kind: "name-mismatch",
                    dir: parent(&r.path.path),
                    level: r.path.level,
                    prev: None,
                    next: r.path.name(),
                    message: format!(
                        "{}: the name says TXIDs {a}-{b}, the header says {}-{}",
                        r.path.name(),
                        h.min_txid,
                        h.max_txid
                    ),
                });
            }
        }
    }

    let mut groups: BTreeMap<PathBuf, Vec<&FileResult>> = BTreeMap::new();
    for r in results.iter().filter(|r| r.in_dir && r.header.is_some()) {
        groups.entry(parent(&r.path.path)).or_default().push(r);
    }
    for (dir, mut files) in groups {
        files.sort_by_key(|r| {
            let h = r.header.as_ref().expect("filtered");
            (h.min_txid, h.max_txid, r.path.path.clone())
        });
        for w in files.windows(2) {
            let (a, b) = (w[0], w[1]);
            let (ha, hb) = (a.header.unwrap(), b.header.unwrap());
            let mut push = |kind: &'static str, message: String| {
                problems.push(ChainProblem {
                    kind,
                    dir: dir.clone(),
                    level: b.path.level,
                    prev: Some(a.path.name()),
                    next: b.path.name(),
                    message,
                })
            };
            let (an, bn) = (file_name(&a.path.path), file_name(&b.path.path));
            if hb.is_snapshot() {
                continue; // a snapshot starts a new chain
            }
            if hb.page_size != ha.page_size {
                push(
                    "page-size",
                    format!(
                        "{bn} has page size {}, {an} before it has {}",
                        hb.page_size, ha.page_size
                    ),
                );
            }
            if hb.min_txid.0 > ha.max_txid.0.saturating_add(1) {
                push(
                    "gap",
                    format!(
                        "TXIDs {}..={} are missing between {an} and {bn}",
                        hex16(ha.max_txid.0 + 1),
                        hex16(hb.min_txid.0 - 1)
                    ),
                );
                continue;
            }
            if hb.min_txid <= ha.max_txid {
                push(
                    "overlap",
                    format!(
                        "{bn} (TXIDs {}-{}) overlaps {an} (TXIDs {}-{})",
                        hb.min_txid, hb.max_txid, ha.min_txid, ha.max_txid
                    ),
                );
                continue;
            }
            // Contiguous.
            if !ha.no_checksum() && !hb.no_checksum() {
                if let Some(sa) = &a.summary {
                    let post = sa.trailer.post_apply_checksum;
                    if hb.pre_apply_checksum != post {
                        push(
                            "checksum-link",
                            format!(
                                "{bn} expects pre-apply checksum {}, but {an} leaves the database at {post}",
                                hb.pre_apply_checksum
                            ),
                        );
                    }
                }
            }
            if hb.commit > ha.commit {
                if let Some(pgnos) = &b.pgnos {
                    let lock = hb.lock_pgno();
                    let missing: Vec<Pgno> = (ha.commit + 1..=hb.commit)
                        .filter(|&p| p != lock && pgnos.binary_search(&p).is_err())
                        .collect();
                    if !missing.is_empty() {
                        push(
                            "missing-pages",
                            format!(
                                "{bn} grows the database from {} to {} pages but lacks {} of the new pages: {}",
                                ha.commit,
                                hb.commit,
                                missing.len(),
                                output::ranges(&missing, 8)
                            ),
                        );
                    }
                }
            }
        }
    }
    problems
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}
