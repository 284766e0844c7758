//! `ltx diff A B`: compare two LTX files or SQLite databases (in any
//! combination), and `ltx diff OLD.db NEW.db -o DELTA.ltx`: write the
//! incremental LTX file that turns OLD into NEW.
//!
//! The pages of a database are all its pages except the lock page; the
//! pages of an LTX file are the pages it contains, decoded. Reported: header
//! fields that differ (LTX vs LTX; page size for any pair), pages only in A,
//! only in B, and pages whose content differs. Exit code 1 when anything
//! differs, 0 when identical. With `-o` the delta is written and the exit
//! code is 0.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use ltx_core::checksum::page_checksum;
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::types::CHECKSUM_FLAG;
use ltx_core::{Checksum, Header, LtxFile, PageSize, Pgno, Trailer, TxId};
use rayon::prelude::*;
use serde::Serialize;

use crate::db::{self, ranges, DbImage, TempFile};
use crate::encode::{self, LtxOptions, PostApply, Written};
use crate::output;
use crate::Failed;

/// Pages per rayon task when comparing.
const TASK_PAGES: usize = 256;

/// Arguments of `ltx diff`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Each side is an LTX file (its pages, decoded) or a SQLite database (all its \
pages but the lock page). Exit codes: 0 identical (or delta written with -o); 1 differences found; \
2 usage or I/O error, or an input that is not a valid LTX file or database.

Examples:
  ltx diff 0000000000000001-0000000000000001.ltx app.db
  ltx diff --json old.ltx new.ltx
  ltx diff old.db new.db -o 0000000000000002-0000000000000002.ltx --txid 2"
)]
pub struct Args {
    /// First (old) LTX file or SQLite database.
    pub a: PathBuf,
    /// Second (new) LTX file or SQLite database.
    pub b: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the incremental LTX file that turns database A into database B
    /// (exit code 0 once written).
    #[arg(short, long, value_name = "DELTA.ltx")]
    pub output: Option<PathBuf>,
    /// TXID of the delta (min = max; default 2). 1 writes a snapshot of B.
    #[arg(long, requires = "output", value_parser = crate::args::parse_txid)]
    pub txid: Option<TxId>,
    /// Timestamp of the delta in milliseconds since the Unix epoch (default: now).
    #[arg(
        long,
        requires = "output",
        value_name = "MS",
        allow_negative_numbers = true
    )]
    pub timestamp: Option<i64>,
    /// `--checksum` / `--no-checksum`: whether the output tracks checksums.
    #[command(flatten)]
    pub checksum: crate::convention::ChecksumArg,
}

/// One side of the comparison.
enum Side<'a> {
    Db(&'a DbImage),
    Ltx(LtxFile<'a>),
}

impl Side<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Side::Db(_) => "sqlite",
            Side::Ltx(_) => "ltx",
        }
    }
    fn page_size(&self) -> Option<PageSize> {
        match self {
            Side::Db(d) => d.page_size,
            Side::Ltx(f) => Some(f.header().page_size),
        }
    }
    fn pgnos(&self) -> Vec<Pgno> {
        match self {
            Side::Db(d) => {
                encode::all_pages(d.page_count(), d.page_size.map_or(0, |p| p.lock_pgno()))
            }
            Side::Ltx(f) => f.index().entries().iter().map(|e| e.pgno).collect(),
        }
    }
    /// Page `pgno` (which this side has), decoded into `buf` if needed.
    fn page<'b>(&'b self, pgno: Pgno, buf: &'b mut Vec<u8>) -> Result<&'b [u8]> {
        match self {
            Side::Db(d) => d
                .page(pgno)
                .ok_or_else(|| anyhow!("page {pgno} beyond the end")),
            Side::Ltx(f) => {
                buf.resize(f.header().page_size.bytes(), 0);
                f.read_page(pgno, buf)?;
                Ok(buf)
            }
        }
    }
}

/// The page-level differences.
#[derive(Debug, Default)]
pub struct PageDiff {
    /// Pages only in A.
    pub only_a: Vec<Pgno>,
    /// Pages only in B.
    pub only_b: Vec<Pgno>,
    /// Pages in both with different content.
    pub differ: Vec<Pgno>,
}

impl PageDiff {
    fn is_empty(&self) -> bool {
        self.only_a.is_empty() && self.only_b.is_empty() && self.differ.is_empty()
    }
}

/// Compares the pages of two sides in parallel.
fn compare(a: &Side<'_>, b: &Side<'_>) -> Result<PageDiff> {
    let (pa, pb) = (a.pgnos(), b.pgnos());
    let mut d = PageDiff::default();
    let mut both = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < pa.len() || j < pb.len() {
        match (pa.get(i), pb.get(j)) {
            (Some(&x), Some(&y)) if x == y => {
                both.push(x);
                i += 1;
                j += 1;
            }
            (Some(&x), Some(&y)) if x < y => {
                d.only_a.push(x);
                i += 1;
            }
            (Some(&x), None) => {
                d.only_a.push(x);
                i += 1;
            }
            (_, Some(&y)) => {
                d.only_b.push(y);
                j += 1;
            }
            (None, None) => unreachable!(),
        }
    }
    let bar = crate::progress::pages(both.len() as u64, "comparing");
    let differ: Vec<Vec<Pgno>> = both
        .par_chunks(TASK_PAGES)
        .map_init(
            || (Vec::new(), Vec::new()),
            |(ba, bb), chunk| -> Result<Vec<Pgno>> {
                let mut v = Vec::new();
                for &p in chunk {
                    if a.page(p, ba)? != b.page(p, bb)? {
                        v.push(p);
                    }
                }
                bar.inc(chunk.len() as u64);
                Ok(v)
            },
        )
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    d.differ = differ.into_iter().flatten().collect();
    Ok(d)
}

/// One pass over two databases: the page differences and, when `sums`,
/// both rolling checksums.
fn compare_dbs(old: &DbImage, new: &DbImage, sums: bool) -> (PageDiff, Checksum, Checksum) {
    let (no, nn) = (old.page_count(), new.page_count());
    let n = no.max(nn);
    let lock_o = old.page_size.map_or(0, |p| p.lock_pgno());
    let lock_n = new.page_size.map_or(0, |p| p.lock_pgno());
    let same_ps = old.page_size == new.page_size;
    let starts: Vec<Pgno> = (1..=n).step_by(TASK_PAGES).collect();
    let bar = crate::progress::pages(u64::from(n), "comparing");
    let parts: Vec<(PageDiff, u64, u64)> = starts
        .par_iter()
        .map(|&s| {
            let e = (s + TASK_PAGES as Pgno - 1).min(n);
            let mut d = PageDiff::default();
            let (mut xo, mut xn) = (0u64, 0u64);
            for p in s..=e {
                let a = (p <= no && p != lock_o).then(|| old.page(p).expect("in range"));
                let b = (p <= nn && p != lock_n).then(|| new.page(p).expect("in range"));
                if sums {
                    if let Some(a) = a {
                        xo ^= page_checksum(p, a).0;
                    }
                    if let Some(b) = b {
                        xn ^= page_checksum(p, b).0;
                    }
                }
                match (a, b) {
                    (Some(a), Some(b)) if !same_ps || a != b => d.differ.push(p),
                    (Some(_), None) => d.only_a.push(p),
                    (None, Some(_)) => d.only_b.push(p),
                    _ => {}
                }
            }
            bar.inc(u64::from(e + 1 - s));
            (d, xo, xn)
        })
        .collect();
    bar.finish_and_clear();
    let mut d = PageDiff::default();
    let (mut xo, mut xn) = (0u64, 0u64);
    for (p, a, b) in parts {
        d.only_a.extend(p.only_a);
        d.only_b.extend(p.only_b);
        d.differ.extend(p.differ);
        xo ^= a;
        xn ^= b;
    }
    let sum = |pages: u32, x: u64| {
        if pages == 0 {
            Checksum(0)
        } else {
            Checksum(x | CHECKSUM_FLAG)
        }
    };
    (d, sum(no, xo), sum(nn, xn))
}

/// A header or trailer field that differs: name, A's value, B's value.
type FieldDiff = (&'static str, FieldValue, FieldValue);

/// The value of a header or trailer field: a number, a 16-hex-digit
/// string (TXIDs, checksums), or none (a database without pages has no
/// page size). In text as in JSON (strings quoted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
enum FieldValue {
    U(u64),
    I(i64),
    S(String),
    Null,
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::U(v) => write!(f, "{v}"),
            FieldValue::I(v) => write!(f, "{v}"),
            FieldValue::S(s) => write!(f, "{s:?}"),
            FieldValue::Null => f.write_str("null"),
        }
    }
}

fn header_fields(h: &Header, t: &Trailer) -> Vec<(&'static str, FieldValue)> {
    use FieldValue::{I, S, U};
    vec![
        ("flags", U(h.flags.into())),
        ("page_size", U(h.page_size.get().into())),
        ("commit", U(h.commit.into())),
        ("min_txid", S(h.min_txid.to_string())),
        ("max_txid", S(h.max_txid.to_string())),
        ("timestamp", I(h.timestamp)),
        ("pre_apply_checksum", S(h.pre_apply_checksum.to_string())),
        ("wal_offset", I(h.wal_offset)),
        ("wal_size", I(h.wal_size)),
        ("wal_salt1", U(h.wal_salt1.into())),
        ("wal_salt2", U(h.wal_salt2.into())),
        ("node_id", U(h.node_id)),
        ("post_apply_checksum", S(t.post_apply_checksum.to_string())),
        ("file_checksum", S(t.file_checksum.to_string())),
    ]
}

fn field_diffs(a: &Side<'_>, b: &Side<'_>) -> Vec<FieldDiff> {
    match (a, b) {
        (Side::Ltx(fa), Side::Ltx(fb)) => header_fields(fa.header(), fa.trailer())
            .into_iter()
            .zip(header_fields(fb.header(), fb.trailer()))
            .filter(|((_, x), (_, y))| x != y)
            .map(|((k, x), (_, y))| (k, x, y))
            .collect(),
        _ => {
            let (x, y) = (a.page_size(), b.page_size());
            if x != y {
                let v = |p: Option<PageSize>| {
                    p.map_or(FieldValue::Null, |p| FieldValue::U(p.get().into()))
                };
                vec![("page_size", v(x), v(y))]
            } else {
                Vec::new()
            }
        }
    }
}

/// Reads an input: a SQLite database (or an empty file, an empty database)
/// or a verified LTX file.
enum Loaded {
    Db(DbImage),
    Ltx(crate::input::Source),
}

fn load(path: &Path) -> Result<Loaded> {
    let src = crate::input::open(path)?;
    if src.is_empty() || db::is_sqlite(&src) {
        return Ok(Loaded::Db(DbImage::from_source(path, src)?));
    }
    if src.starts_with(b"LTX1") {
        crate::check::verify_bytes(&src)
            .map_err(|e| anyhow!("{}: not a valid LTX file: {e}", path.display()))?;
        return Ok(Loaded::Ltx(src));
    }
    bail!(
        "{}: neither an LTX file (magic \"LTX1\") nor a SQLite database (magic \"SQLite format 3\\0\")",
        path.display()
    )
}

fn side(l: &Loaded) -> Result<Side<'_>> {
    Ok(match l {
        Loaded::Db(d) => Side::Db(d),
        Loaded::Ltx(s) => Side::Ltx(LtxFile::parse(s)?),
    })
}

/// `ltx diff --json`.
#[derive(Serialize)]
struct DiffJson<'a> {
    a: SideJson,
    b: SideJson,
    identical: bool,
    header: Vec<FieldJson<'a>>,
    only_in_a: &'a [Pgno],
    only_in_b: &'a [Pgno],
    differ: &'a [Pgno],
    /// With `-o` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<WrittenJson>,
}

/// One input of `ltx diff --json`.
#[derive(Serialize)]
struct SideJson {
    path: String,
    kind: &'static str,
    page_size: Option<u32>,
    pages: usize,
}

/// A header or trailer field that differs.
#[derive(Serialize)]
struct FieldJson<'a> {
    field: &'static str,
    a: &'a FieldValue,
    b: &'a FieldValue,
}

/// The delta `ltx diff -o` wrote.
#[derive(Serialize)]
struct WrittenJson {
    path: String,
    min_txid: String,
    max_txid: String,
    flags: u32,
    commit: u32,
    pages: u64,
    bytes: u64,
    pre_apply_checksum: String,
    post_apply_checksum: String,
    file_checksum: String,
}

fn describe(path: &Path, s: &Side<'_>) -> SideJson {
    SideJson {
        path: path.display().to_string(),
        kind: s.kind(),
        page_size: s.page_size().map(|p| p.get()),
        pages: s.pgnos().len(),
    }
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let la = load(&args.a)?;
    let lb = load(&args.b)?;
    let (a, b) = (side(&la)?, side(&lb)?);
    let mut delta: Option<(PathBuf, Written)> = None;
    let (fields, pages) = match (&la, &lb, &args.output) {
        (Loaded::Db(old), Loaded::Db(new), Some(dest)) => {
            db::check_not_input(dest, &[&args.a, &args.b])?;
            let opts = LtxOptions {
                txid: args.txid.unwrap_or(TxId(2)),
                timestamp: args.timestamp.unwrap_or_else(encode::now_ms),
                no_checksum: {
                    let d = args.checksum.decide(dest, false);
                    if let Some(r) = d.reason {
                        eprintln!("ltx: {r}");
                    }
                    d.no_checksum
                },
            };
            let (d, tmp, w) = delta_between(old, new, dest, &opts)?;
            tmp.commit(dest)?;
            delta = Some((dest.clone(), w));
            (field_diffs(&a, &b), d)
        }
        (_, _, Some(_)) => bail!("diff -o needs two SQLite databases (OLD.db NEW.db)"),
        (Loaded::Db(old), Loaded::Db(new), None) => {
            (field_diffs(&a, &b), compare_dbs(old, new, false).0)
        }
        _ => (field_diffs(&a, &b), compare(&a, &b)?),
    };
    let identical = fields.is_empty() && pages.is_empty();
    if args.json {
        output::write_json(
            out,
            &DiffJson {
                a: describe(&args.a, &a),
                b: describe(&args.b, &b),
                identical,
                header: fields
                    .iter()
                    .map(|(field, a, b)| FieldJson { field, a, b })
                    .collect(),
                only_in_a: &pages.only_a,
                only_in_b: &pages.only_b,
                differ: &pages.differ,
                delta: delta.as_ref().map(|(p, w)| written_json(p, w)),
            },
        )?;
    } else {
        for (name, path, s) in [("A", &args.a, &a), ("B", &args.b, &b)] {
            writeln!(
                out,
                "{name}: {} ({}, {}, {} pages)",
                path.display(),
                if s.kind() == "ltx" {
                    "LTX file"
                } else {
                    "SQLite database"
                },
                s.page_size()
                    .map_or("no pages".to_string(), |p| format!("{p}-byte pages")),
                s.pgnos().len()
            )?;
        }
        for (k, x, y) in &fields {
            writeln!(out, "{k}: A {x}, B {y}")?;
        }
        for (label, v) in [
            ("pages only in A", &pages.only_a),
            ("pages only in B", &pages.only_b),
            ("pages that differ", &pages.differ),
        ] {
            if !v.is_empty() {
                writeln!(
                    out,
                    "{label}: {} ({} page{})",
                    ranges(v),
                    v.len(),
                    if v.len() == 1 { "" } else { "s" }
                )?;
            }
        }
        if identical {
            writeln!(out, "identical")?;
        } else {
            writeln!(
                out,
                "different: {} header fields, {} pages only in A, {} only in B, {} differ",
                fields.len(),
                pages.only_a.len(),
                pages.only_b.len(),
                pages.differ.len()
            )?;
        }
        if let Some((p, w)) = &delta {
            writeln!(out, "{}", written_line(p, w))?;
        }
    }
    if identical || delta.is_some() {
        Ok(())
    } else {
        Err(Failed.into())
    }
}

/// One line describing a written file.
pub fn written_line(p: &Path, w: &Written) -> String {
    format!(
        "wrote {}: TXID {}-{}, {} pages, commit {}, {} bytes, pre-apply {}, post-apply {}, file checksum {}",
        p.display(),
        w.header.min_txid,
        w.header.max_txid,
        w.pages,
        w.header.commit,
        w.bytes,
        w.header.pre_apply_checksum,
        w.trailer.post_apply_checksum,
        w.trailer.file_checksum
    )
}

fn written_json(p: &Path, w: &Written) -> WrittenJson {
    WrittenJson {
        path: p.display().to_string(),
        min_txid: w.header.min_txid.to_string(),
        max_txid: w.header.max_txid.to_string(),
        flags: w.header.flags,
        commit: w.header.commit,
        pages: w.pages,
        bytes: w.bytes,
        pre_apply_checksum: w.header.pre_apply_checksum.to_string(),
        post_apply_checksum: w.trailer.post_apply_checksum.to_string(),
        file_checksum: w.trailer.file_checksum.to_string(),
    }
}

/// Writes (into a temporary file beside `dest`, for the caller to commit)
/// the LTX file that turns `old` into `new`: TXID `opts.txid` (min = max),
/// commit = `new`'s page count, every page of `new` that differs from `old`
/// or lies beyond its end (never the lock page), pre-apply = checksum(old),
/// post-apply = checksum(new). TXID 1 writes a snapshot of `new` instead.
/// Returns the page differences too.
///
/// # Errors
/// Page sizes that differ (except for a snapshot); a NoChecksum deletion
/// (the reference encoder cannot write one); I/O errors.
pub fn delta_between(
    old: &DbImage,
    new: &DbImage,
    dest: &Path,
    opts: &LtxOptions,
) -> Result<(PageDiff, TempFile, Written)> {
    let snapshot = opts.txid.0 == 1;
    let ps = match (old.page_size, new.page_size) {
        (_, Some(n)) if snapshot => n,
        (Some(o), Some(n)) if o != n => bail!(
            "{} has {o}-byte pages but {} has {n}-byte pages: a delta cannot change the page size (write a snapshot with --txid 1)",
            old.path.display(),
            new.path.display()
        ),
        (_, Some(n)) => n,
        (Some(o), None) => o,
        (None, None) => bail!(
            "both {} and {} are empty: no page size to write",
            old.path.display(),
            new.path.display()
        ),
    };
    let sums = !opts.no_checksum;
    let (diff, sum_old, sum_new) = compare_dbs(old, new, sums && !snapshot);
    let commit = new.page_count();
    if opts.no_checksum && commit == 0 {
        bail!(
            "{} is empty: a deletion file must track checksums (the reference encoder cannot write a NoChecksum file with commit 0); drop --no-checksum",
            new.path.display()
        );
    }
    if sums && !snapshot && commit == 0 {
        eprintln!(
            "ltx: note: {} is empty, so the delta is a deletion file (commit 0, post-apply 8000000000000000); \
             `ltx apply` accepts it, the reference `ltx apply` refuses its post-apply checksum",
            new.path.display()
        );
    }
    if sums && !snapshot && old.page_count() == 0 && commit > 0 {
        eprintln!(
            "ltx: note: {} is empty, so the delta's pre-apply checksum is 8000000000000000 (as after a deletion file); \
             `ltx apply` accepts it, the reference `ltx apply` expects 0 and refuses it; --txid 1 writes a snapshot instead",
            old.path.display()
        );
    }
    let mut h = Header::new(ps, if snapshot { TxId(1) } else { opts.txid }, opts.txid);
    h.commit = commit;
    h.timestamp = opts.timestamp;
    let nonzero = |c: Checksum| if c.0 == 0 { Checksum(CHECKSUM_FLAG) } else { c };
    let (pgnos, post) = if snapshot {
        let post = if sums {
            PostApply::FromPages
        } else {
            PostApply::None
        };
        (encode::all_pages(commit, ps.lock_pgno()), post)
    } else {
        let mut v: Vec<Pgno> = diff.differ.iter().chain(&diff.only_b).copied().collect();
        v.sort_unstable();
        if sums {
            h.pre_apply_checksum = nonzero(sum_old);
            (v, PostApply::Given(nonzero(sum_new)))
        } else {
            (v, PostApply::None)
        }
    };
    if opts.no_checksum {
        h.flags = HEADER_FLAG_NO_CHECKSUM;
    }
    let data: &[u8] = &new.data;
    let psz = ps.bytes();
    let bar = crate::progress::pages(pgnos.len() as u64, "encoding");
    let (tmp, w) = encode::write_ltx_temp(
        dest,
        h,
        &pgnos,
        |p: Pgno| &data[(p as usize - 1) * psz..p as usize * psz],
        post,
        &bar,
    )
    .with_context(|| format!("{}: cannot write the delta", dest.display()))?;
    bar.finish_and_clear();
    Ok((diff, tmp, w))
}
