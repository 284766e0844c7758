//! `ltx verify`: full verification of many files in parallel, and of the
//! TXID chain of every directory given, including a replay of the chain's
//! rolling database checksum from its snapshot.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Result;
use ltx_core::checksum::{page_checksum, PageChecksums};
use ltx_core::{Checksum, Header, LtxFile, PageSize, Pgno, Summary, TxId};
use rayon::prelude::*;
use serde::Serialize;

use crate::chain;
use crate::check::{self, Streamer};
use crate::db;
use crate::input::{self, LtxPath};
use crate::output;
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
  db-checksum      replaying the database checksum from the chain's snapshot
                   gives another value than a file's post-apply checksum
A snapshot (min TXID 1) starts a new chain. In a replica layout, a file that
starts just after a file of a coarser level (or a snapshot) of the same
database follows that file: its gap or overlap with the file before it in
its level is how the compactor's cumulative windows are laid out, not a
problem, and its checksum link and new pages are checked against the
coarser file instead. For each chain that starts with
a snapshot, the rolling database checksum is replayed file by file from one
checksum per page (8 bytes a page; the page checksums are computed while the
files are verified), which finds a page swapped in a file whose stored
checksums were kept. The replay is skipped, with the reason, for chains that
do not start with a snapshot and from the first file that has the NoChecksum
flag (as Litestream writes), fails verification, does not continue the chain
or lacks new pages. Each chain's verdict is printed as
`chain DIR: TXID A-B, N files: database checksum replay verified|skipped: …|failed: …`
(JSON: `chains[].db_checksum_replay`).

Format versions 1 and 2 (LiteFS, Litestream before v0.5) are detected per file
(the layout whose structure and file checksum validate) or forced with
--format-version; a file that validates under no layout (or under several)
fails, naming what each layout found. Chains may mix versions.

Output: `ok   PATH` or `FAIL PATH: error` per file, chain problems, then a
summary line. Exit code 1 if anything failed.

A URL (s3://bucket/prefix, gs://, az://, file:///dir, memory://) verifies
every database under it: each object is streamed (GET, bounded memory,
several at once) through the streaming decoder and verified completely (a
failure names the key and byte offset); then per database, the chain rules
above with each level as a sequence (a file's pre-apply checksum is also
compared with the post-apply checksum of each verified file of another level
ending just before it, as in a replica directory), and a restore plan to the
latest TXID must exist from the files that verified. A database whose levels
form the ladder Litestream writes (each level one chain, its first file
applying on a reproducible state) has no gap before a level's first file,
in a bucket and in a replica directory alike. Credentials and endpoints come from the
environment (AWS_ENDPOINT, AWS_REGION, ...).")]
pub struct Args {
    /// LTX files and directories, or bucket URLs; `-` verifies standard input (streaming).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON object (files, chains, chain_problems, summary).
    #[arg(long)]
    pub json: bool,
    /// Do not check chains, only files.
    #[arg(long)]
    pub no_chain: bool,
    /// Print only failures and the summary.
    #[arg(long, short)]
    pub quiet: bool,
    /// `--format-version`: read the inputs as this LTX format version.
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
    /// Every page's [`page_checksum`], ascending, when the file verified,
    /// tracks checksums and is chain-checked (for the replay).
    page_sums: Option<Vec<(Pgno, Checksum)>>,
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

/// Verifies one local file; with `want_sums`, also keeps its page
/// checksums (when it tracks checksums) for the chain replay.
fn verify_local(
    p: LtxPath,
    in_dir: bool,
    want_sums: bool,
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
        page_sums: None,
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
    verify_source(r, &bytes, want_sums, tick, forced)
}

/// Verifies the bytes of `r`'s file (detecting its format version).
fn verify_source(
    mut r: FileResult,
    bytes: &[u8],
    want_sums: bool,
    tick: &(dyn Fn(u64) + Sync),
    forced: Option<FormatVersion>,
) -> FileResult {
    r.size = bytes.len() as u64;
    let mut v3_pgnos = None;
    let mut v3_sums = None;
    let detected = version::detect_with(bytes, forced, |bytes| match LtxFile::parse(bytes) {
        Ok(f) => {
            let mut pgnos: Vec<Pgno> = f.index().entries().iter().map(|e| e.pgno).collect();
            pgnos.sort_unstable();
            v3_pgnos = Some(pgnos);
            let want = want_sums && !f.header().no_checksum();
            check::verify_collecting(&f, tick, want).map(|(summary, sums)| {
                v3_sums = sums.map(|sums| {
                    // Verified: the index is in ascending page order.
                    let entries = f.index().entries().iter();
                    entries.map(|e| e.pgno).zip(sums).collect()
                });
                summary
            })
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
    r.header = Header::decode_as(bytes, d.version).ok();
    let want = want_sums && d.verdict.is_ok() && r.header.is_some_and(|h| !h.no_checksum());
    (r.pgnos, r.page_sums) = match d.version {
        FormatVersion::V3 => (v3_pgnos, v3_sums.filter(|_| want)),
        v => {
            let mut pgnos = Vec::new();
            let mut sums = Vec::new();
            let _ = ltx_core::old::for_each_page(bytes, v, |info, page| {
                pgnos.push(info.pgno);
                if want {
                    sums.push((info.pgno, page_checksum(info.pgno, page)));
                }
                Ok(())
            });
            pgnos.sort_unstable();
            sums.sort_unstable_by_key(|&(p, _)| p);
            (Some(pgnos), want.then_some(sums))
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
            page_sums: None,
            summary: None,
            version: None,
            detect_note: None,
        };
        return Ok(verify_source(r, &bytes, false, &|_| {}, None));
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
        page_sums: None,
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

/// The local files to verify, each with whether it came from a directory
/// argument (and is chain-checked), and whether `-` (standard input) was
/// given.
fn local_inputs(paths: &[PathBuf]) -> Result<(Vec<(LtxPath, bool)>, bool)> {
    // Expand each argument separately to know which files came from directories.
    let mut local: Vec<(LtxPath, bool)> = Vec::new();
    let mut stdin = false;
    for p in paths {
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
    if unique.is_empty() && !stdin {
        anyhow::bail!(
            "no LTX files found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok((unique, stdin))
}

/// Verifies the local files in parallel, then standard input.
fn verify_all(local: Vec<(LtxPath, bool)>, stdin: bool, args: &Args) -> Result<Vec<FileResult>> {
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
        .map(|(p, in_dir)| {
            let want_sums = in_dir && !args.no_chain;
            verify_local(p, in_dir, want_sums, &tick, args.version.forced())
        })
        .collect();
    pb.finish_and_clear();
    if stdin {
        let spb = output::progress(true, None, "verify -");
        results.push(verify_stdin(&|n| spb.inc(n), args.version.forced())?);
        spb.finish_and_clear();
    }
    Ok(results)
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    if let Some(urls) = crate::remote::urls_of(&args.paths)? {
        if args.version.forced().is_some() || args.no_chain {
            anyhow::bail!(
                "--format-version and --no-chain apply to local files, not to bucket URLs"
            );
        }
        return crate::remote::verify(&urls, args.json, args.quiet, out);
    }
    let (local, stdin) = local_inputs(&args.paths)?;
    let results = verify_all(local, stdin, &args)?;
    let (problems, chains) = if args.no_chain {
        (Vec::new(), Vec::new())
    } else {
        check_chains(&results)
    };
    let v = Verdict {
        failed: results.iter().filter(|r| !r.ok()).count(),
        replayed: chains
            .iter()
            .filter(|c| matches!(c.replay, Replay::Verified))
            .count(),
        results,
        problems,
        chains,
    };
    let io_errors = v
        .results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Io(_)))
        .count();
    if args.json {
        write_json(out, &v)?;
    } else {
        write_text(out, &v, args.quiet, args.no_chain)?;
    }

    if io_errors > 0 {
        out.flush().ok();
        anyhow::bail!("{io_errors} of {} files could not be read", v.results.len());
    }
    if v.failed > 0 || !v.problems.is_empty() {
        return Err(crate::Failed.into());
    }
    Ok(())
}

/// Everything `ltx verify` found over local files.
struct Verdict {
    results: Vec<FileResult>,
    problems: Vec<ChainProblem>,
    chains: Vec<Chain>,
    /// Files that failed.
    failed: usize,
    /// Chains whose database checksum replay verified.
    replayed: usize,
}

/// `ltx verify --json`: one object.
fn write_json(out: &mut dyn Write, v: &Verdict) -> Result<()> {
    let chains = v
        .chains
        .iter()
        .map(|c| ChainJson {
            dir: c.dir.display().to_string(),
            level: c.level,
            min_txid: c.min_txid.to_string(),
            max_txid: c.max_txid.to_string(),
            files: c.files,
            db_checksum_replay: c.replay.to_string(),
        })
        .collect();
    let chain_problems = v
        .problems
        .iter()
        .map(|p| ChainProblemJson {
            kind: p.kind,
            dir: p.dir.display().to_string(),
            level: p.level,
            prev: p.prev.as_deref(),
            next: &p.next,
            message: &p.message,
        })
        .collect();
    output::write_json(
        out,
        &VerifyJson {
            files: v.results.iter().map(file_json).collect(),
            chains,
            chain_problems,
            summary: SummaryJson {
                files: v.results.len(),
                ok: v.results.len() - v.failed,
                failed: v.failed,
                chain_problems: v.problems.len(),
                chains: v.chains.len(),
                chains_replayed: v.replayed,
            },
            ok: v.failed == 0 && v.problems.is_empty(),
        },
    )
}

/// `ltx verify`: a line per file (failures only with `quiet`), per chain
/// (not with `quiet`) and per chain problem, then the summary line.
fn write_text(out: &mut dyn Write, v: &Verdict, quiet: bool, no_chain: bool) -> Result<()> {
    for r in &v.results {
        match r.error_message() {
            None if !quiet => writeln!(out, "ok   {}", r.path.name())?,
            None => {}
            Some(m) => writeln!(out, "FAIL {}: {m}", r.path.name())?,
        }
    }
    for c in v.chains.iter().filter(|_| !quiet) {
        let level = c.level.map(|l| format!(" level {l}")).unwrap_or_default();
        writeln!(
            out,
            "chain {}{level}: TXID {}-{}, {} file{}: database checksum replay {}",
            c.dir.display(),
            c.min_txid,
            c.max_txid,
            c.files,
            if c.files == 1 { "" } else { "s" },
            c.replay
        )?;
    }
    for p in &v.problems {
        let level = p.level.map(|l| format!(" level {l}")).unwrap_or_default();
        writeln!(
            out,
            "CHAIN {}{level}: {}: {}",
            p.dir.display(),
            p.kind,
            p.message
        )?;
    }
    let n = v.results.len();
    let mut line = format!(
        "{n} file{} verified, {} failed",
        if n == 1 { "" } else { "s" },
        v.failed
    );
    if !no_chain {
        line.push_str(&format!(", {} chain problems", v.problems.len()));
        if !v.chains.is_empty() {
            line.push_str(&format!(
                ", database checksum replayed for {} of {} chain{}",
                v.replayed,
                v.chains.len(),
                if v.chains.len() == 1 { "" } else { "s" }
            ));
        }
    }
    writeln!(out, "{line}")?;
    Ok(())
}

/// `ltx verify --json` (local files).
#[derive(Serialize)]
struct VerifyJson<'a> {
    files: Vec<FileJson>,
    chains: Vec<ChainJson>,
    chain_problems: Vec<ChainProblemJson<'a>>,
    summary: SummaryJson,
    ok: bool,
}

#[derive(Serialize)]
struct SummaryJson {
    files: usize,
    ok: usize,
    failed: usize,
    chain_problems: usize,
    chains: usize,
    chains_replayed: usize,
}

#[derive(Serialize)]
struct ChainJson {
    dir: String,
    level: Option<u32>,
    min_txid: String,
    max_txid: String,
    files: usize,
    db_checksum_replay: String,
}

#[derive(Serialize)]
struct ChainProblemJson<'a> {
    kind: &'static str,
    dir: String,
    level: Option<u32>,
    prev: Option<&'a str>,
    next: &'a str,
    message: &'a str,
}

/// One file in `ltx verify --json`.
#[derive(Serialize)]
struct FileJson {
    path: String,
    format_version: Option<u8>,
    ok: bool,
    error: Option<String>,
    category: Option<&'static str>,
    offset: Option<u64>,
    pgno: Option<u32>,
    level: Option<u32>,
    min_txid: Option<String>,
    max_txid: Option<String>,
    commit: Option<u32>,
    pages: Option<u64>,
    file_size: u64,
    post_apply_checksum: Option<String>,
    file_checksum: Option<String>,
}

fn file_json(r: &FileResult) -> FileJson {
    let (category, offset, pgno) = match &r.outcome {
        Outcome::Format(e) => (e.category(), e.offset(), e.pgno()),
        Outcome::Io(_) => (Some("io"), None, None),
        Outcome::Ok => (None, None, None),
    };
    let h = r.header.as_ref();
    FileJson {
        path: r.path.name(),
        format_version: r.version.map(|v| v.number()),
        ok: r.ok(),
        error: r.error_message(),
        category,
        offset,
        pgno,
        level: r.path.level,
        min_txid: h.map(|h| h.min_txid.to_string()),
        max_txid: h.map(|h| h.max_txid.to_string()),
        commit: h.map(|h| h.commit),
        pages: r.summary.map(|s| s.page_count),
        file_size: r.size,
        post_apply_checksum: r.summary.map(|s| s.trailer.post_apply_checksum.to_string()),
        file_checksum: r.summary.map(|s| s.trailer.file_checksum.to_string()),
    }
}

/// Chain checks over the files that came from directories, by the one
/// chain checker ([`chain::Checker`]): each parent directory (one level of
/// a replica) is a sequence, each replica (the directory above the level
/// directories) a database. Returns the problems found, and each chain (a
/// snapshot and the files after it, or the files before a directory's
/// first snapshot) with its replay verdict.
fn check_chains(results: &[FileResult]) -> (Vec<ChainProblem>, Vec<Chain>) {
    let dirs: BTreeMap<PathBuf, usize> = results
        .iter()
        .filter(|r| r.in_dir)
        .map(|r| (parent(&r.path.path), 0))
        .collect();
    let dirs: BTreeMap<PathBuf, usize> = dirs.into_keys().zip(0..).collect();
    let mut dbs: std::collections::HashMap<PathBuf, usize> = std::collections::HashMap::new();
    let links: Vec<chain::Link> = results
        .iter()
        .map(|r| {
            let root = parent(&parent(&r.path.path));
            let n = dbs.len();
            chain::Link {
                name: r.path.name(),
                short: file_name(&r.path.path),
                db: *dbs.entry(root).or_insert(n),
                seq: r.in_dir.then(|| dirs[&parent(&r.path.path)]),
                level: r.path.level,
                named: r.path.txids,
                header: r.header,
                trailer: r.summary.map(|s| s.trailer),
                pgnos: r.pgnos.as_deref(),
            }
        })
        .collect();
    let checker = chain::Checker::new(&links);
    let problem = |f: chain::Finding| {
        let r = &results[f.next];
        ChainProblem {
            kind: f.kind,
            dir: parent(&r.path.path),
            level: r.path.level,
            prev: f.prev.map(|i| links[i].name.clone()),
            next: links[f.next].name.clone(),
            message: f.message,
        }
    };
    let mut problems: Vec<ChainProblem> =
        checker.name_mismatches().into_iter().map(problem).collect();
    let mut chains = Vec::new();
    for seq in checker.sequences() {
        problems.extend(checker.check_sequence(&seq).into_iter().map(problem));
        let files: Vec<&FileResult> = seq.iter().map(|&i| &results[i]).collect();
        replay_dir(
            &parent(&files[0].path.path),
            &files,
            &mut problems,
            &mut chains,
        );
    }
    (problems, chains)
}

/// Splits a directory's files (in TXID order) at every snapshot and
/// replays each chain's database checksum.
fn replay_dir(
    dir: &Path,
    files: &[&FileResult],
    problems: &mut Vec<ChainProblem>,
    chains: &mut Vec<Chain>,
) {
    let mut start = 0;
    while start < files.len() {
        let end = files[start + 1..]
            .iter()
            .position(|r| r.header.expect("filtered").is_snapshot())
            .map_or(files.len(), |i| start + 1 + i);
        let chain = &files[start..end];
        let (replay, problem) = replay_chain(chain);
        let (first, last) = (
            chain[0].header.unwrap(),
            chain[chain.len() - 1].header.unwrap(),
        );
        chains.push(Chain {
            dir: dir.to_path_buf(),
            level: chain[0].path.level,
            min_txid: first.min_txid,
            max_txid: last.max_txid,
            files: chain.len(),
            replay,
        });
        if let Some(p) = problem {
            problems.push(ChainProblem {
                kind: "db-checksum",
                dir: dir.to_path_buf(),
                level: chain[0].path.level,
                prev: p.prev,
                next: p.next,
                message: p.message,
            });
        }
        start = end;
    }
}

/// One chain of a directory and what replaying its database checksum found.
struct Chain {
    dir: PathBuf,
    level: Option<u32>,
    min_txid: TxId,
    max_txid: TxId,
    files: usize,
    replay: Replay,
}

/// The verdict of a chain's database checksum replay.
enum Replay {
    /// Every file's post-apply checksum (and every next pre-apply one)
    /// equals the checksum of the database replayed from the snapshot.
    Verified,
    /// The replay could not start, or stopped before the end (the reason
    /// says where and why, and up to which TXID it verified).
    Skipped(String),
    /// A file's stored checksum differs from the replayed one.
    Failed(String),
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Replay::Verified => f.write_str("verified"),
            Replay::Skipped(why) => write!(f, "skipped: {why}"),
            Replay::Failed(what) => write!(f, "failed: {what}"),
        }
    }
}

/// A database as one [`page_checksum`] per page (8 bytes a page, never the
/// pages themselves) and their XOR, updated file by file: ltx_core's
/// [`PageChecksums`], with what the replay accepts of a file.
struct ReplayDb(PageChecksums);

impl ReplayDb {
    fn new(page_size: PageSize) -> ReplayDb {
        ReplayDb(PageChecksums::new(page_size))
    }

    /// The rolling database checksum: 0 for a database with no pages.
    fn value(&self) -> Checksum {
        self.0.value()
    }

    /// Applies a verified file: its pages (`pages`, ascending), then its
    /// commit (a snapshot starts from an empty database).
    ///
    /// # Errors
    /// When the new database cannot be known, before changing anything: a
    /// page above `commit`, or pages between the old size and `commit`
    /// that the file does not hold (`ltx apply` would leave zeros there;
    /// the chain check reports them as missing-pages). Memory therefore
    /// grows only with pages that files hold, whatever a commit claims.
    fn apply(&mut self, h: &Header, pages: &[(Pgno, Checksum)]) -> Result<(), String> {
        if h.is_snapshot() {
            self.0.clear();
        }
        let old = self.0.page_count() as usize;
        let commit = h.commit as usize;
        if let Some(&(p, _)) = pages.iter().find(|&&(p, _)| p == 0 || p as usize > commit) {
            return Err(format!("it holds page {p}, outside 1..={commit}"));
        }
        if commit > old {
            // The pages are ascending and distinct (verified): counting those
            // above the old size tells whether every new page is there,
            // before anything is allocated for them.
            let lock = h.lock_pgno() as usize;
            let needed = commit - old - usize::from((old + 1..=commit).contains(&lock));
            let held = pages.len() - pages.partition_point(|&(p, _)| p as usize <= old);
            if held < needed {
                return Err(format!(
                    "it grows the database from {old} to {commit} pages without holding {} of the new pages",
                    needed - held
                ));
            }
        }
        self.0.resize(h.commit);
        for &(p, c) in pages {
            self.0.set(p, c).map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A post-apply checksum that the replay contradicts.
struct Mismatch {
    prev: Option<String>,
    next: String,
    message: String,
}

/// Replays the database checksum along `chain` (files of one directory in
/// TXID order, a snapshot only first): the verdict, and the problem to
/// report when a post-apply checksum differs.
fn replay_chain(chain: &[&FileResult]) -> (Replay, Option<Mismatch>) {
    let first = chain[0].header.expect("filtered");
    let name0 = file_name(&chain[0].path.path);
    if !first.is_snapshot() {
        return (
            Replay::Skipped(format!(
                "the chain starts at {name0} (TXID {}), not at a snapshot (min TXID 1): no known database to replay from",
                first.min_txid
            )),
            None,
        );
    }
    if chain
        .iter()
        .all(|r| r.header.is_some_and(|h| h.no_checksum()))
    {
        return (
            Replay::Skipped(
                "the files have the NoChecksum flag (as Litestream writes them): no database checksums to compare"
                    .into(),
            ),
            None,
        );
    }
    let mut db = ReplayDb::new(first.page_size);
    let mut through: Option<TxId> = None;
    for (i, r) in chain.iter().enumerate() {
        let h = r.header.expect("filtered");
        let name = file_name(&r.path.path);
        let stop = |why: String| {
            let done = match through {
                Some(t) => format!(" (verified through TXID {t})"),
                None => String::new(),
            };
            (Replay::Skipped(format!("{why}{done}")), None)
        };
        if i > 0 {
            let p = chain[i - 1].header.expect("filtered");
            if h.page_size != p.page_size || h.min_txid.0 != p.max_txid.0.wrapping_add(1) {
                return stop(format!(
                    "{name} does not continue the chain (see the chain problems)"
                ));
            }
        }
        let (Some(summary), Some(sums)) = (&r.summary, &r.page_sums) else {
            return stop(if r.summary.is_none() {
                format!("{name} failed verification")
            } else if h.no_checksum() {
                format!("{name} has the NoChecksum flag: no database checksums to compare")
            } else {
                format!("{name}: no page checksums")
            });
        };
        if i > 0 {
            let cur = db.value();
            if !db::same_checksum(cur, h.pre_apply_checksum) {
                // The stored link is broken too (reported as checksum-link):
                // the previous file's post-apply checksum equals `cur`.
                return (
                    Replay::Failed(format!(
                        "{name} (TXID {}-{}) expects pre-apply checksum {}, the replayed database is at {cur}",
                        h.min_txid, h.max_txid, h.pre_apply_checksum
                    )),
                    None,
                );
            }
        }
        if let Err(why) = db.apply(&h, sums) {
            return stop(format!("{name}: {why}"));
        }
        let (stored, cur) = (summary.trailer.post_apply_checksum, db.value());
        if !db::same_checksum(cur, stored) {
            let what = format!(
                "{name} (TXID {}-{}): post-apply checksum mismatch: the file says {stored}, replaying the chain from {name0} gives {cur}",
                h.min_txid, h.max_txid
            );
            let problem = Mismatch {
                prev: i.checked_sub(1).map(|j| chain[j].path.name()),
                next: r.path.name(),
                message: what.clone(),
            };
            return (Replay::Failed(what), Some(problem));
        }
        through = Some(h.max_txid);
    }
    (Replay::Verified, None)
}

fn parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| p.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ltx_core::DbChecksum;
    use std::collections::BTreeMap;

    /// `ReplayDb` against `DbChecksum` over the pages themselves, through
    /// a snapshot, rewrites, growth, truncation (to zero too) and a new
    /// snapshot.
    #[test]
    fn replay_db_matches_the_checksum_of_the_pages() {
        let ps = PageSize::new(512).unwrap();
        let page = |p: Pgno, v: u8| {
            let mut b = vec![v; 512];
            b[..4].copy_from_slice(&p.to_be_bytes());
            b
        };
        // (min TXID, commit, pages written as (pgno, fill byte))
        type Step = (u64, u32, &'static [(Pgno, u8)]);
        let steps: &[Step] = &[
            (1, 3, &[(1, 1), (2, 1), (3, 1)]),
            (2, 3, &[(2, 2)]),
            (3, 6, &[(1, 3), (4, 3), (5, 3), (6, 3)]),
            (4, 2, &[(2, 4)]),
            (5, 0, &[]),
            (6, 2, &[(1, 6), (2, 6)]),
            (7, 2, &[(1, 7), (2, 7)]),
            (1, 1, &[(1, 8)]),
        ];
        let mut model: BTreeMap<Pgno, Vec<u8>> = BTreeMap::new();
        let mut db = ReplayDb::new(ps);
        for &(min, commit, pages) in steps {
            let mut h = Header::new(ps, TxId(min), TxId(min));
            h.commit = commit;
            if h.is_snapshot() {
                model.clear();
            }
            let sums: Vec<(Pgno, Checksum)> = pages
                .iter()
                .map(|&(p, v)| {
                    model.insert(p, page(p, v));
                    (p, page_checksum(p, &page(p, v)))
                })
                .collect();
            model.retain(|&p, _| p <= commit);
            db.apply(&h, &sums).unwrap();
            let mut want = DbChecksum::new(ps);
            for (&p, b) in &model {
                want.add(p, b);
            }
            assert_eq!(db.value(), want.value(), "after TXID {min}");
        }
        assert_eq!(db.0.page_count(), 1);
    }

    #[test]
    fn replay_db_refuses_what_it_cannot_know() {
        let ps = PageSize::new(512).unwrap();
        let sum = |p: Pgno| (p, page_checksum(p, &[0u8; 512]));
        let mut h = Header::new(ps, TxId(1), TxId(1));
        h.commit = 2;
        let mut db = ReplayDb::new(ps);
        db.apply(&h, &[sum(1), sum(2)]).unwrap();
        let mut h = Header::new(ps, TxId(2), TxId(2));
        h.commit = 4;
        let e = db.apply(&h, &[sum(4)]).unwrap_err();
        assert!(
            e.contains("from 2 to 4 pages without holding 1 of the new pages"),
            "{e}"
        );
        // A commit that claims 2^32 - 1 pages: refused, nothing allocated.
        h.commit = u32::MAX;
        let e = db.apply(&h, &[sum(3)]).unwrap_err();
        assert!(
            e.contains("without holding 4294967291 of the new pages"),
            "{e}"
        );
        assert_eq!(db.0.page_count(), 2);
        let mut db = ReplayDb::new(ps);
        let mut h = Header::new(ps, TxId(1), TxId(1));
        h.commit = 1;
        let e = db.apply(&h, &[sum(1), sum(2)]).unwrap_err();
        assert!(e.contains("page 2, outside 1..=1"), "{e}");
    }
}
