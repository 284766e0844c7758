//! `ltx compact -o OUT FILES…`: merge LTX files into one, copying
//! compressed frames.
//!
//! Each input is verified completely first. `ltx_core::merge::plan_merge`
//! picks, for every page, the frame of the newest input holding it; the
//! frames are then prepared (decompressed once to hash them, legacy frames
//! re-encoded as blocks) in parallel batches and appended in page order,
//! while the next batch is prepared. The output goes to a temporary file
//! that is fsynced and renamed into place.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use ltx_core::error::MergeError;
use ltx_core::header::HEADER_FLAG_NO_CHECKSUM;
use ltx_core::merge::{
    plan_merge, prepare_frame, MergeInput, MergeOptions, MergePlan, PlannedFrame, PreparedFrame,
};
use ltx_core::old::merge_any;
use ltx_core::{format_filename, Encoder, ErrorKind, FormatVersion, Header, LtxFile, TxId};
use rayon::prelude::*;

use crate::db::TempFile;
use crate::encode::{Written, BATCH_PAGES};
use crate::input::Source;
use crate::version::VersionArg;
use crate::Failed;

/// Arguments of `ltx compact`.
#[derive(clap::Args, Debug)]
#[command(
    after_help = "Exit codes: 0 written; 1 an input failed verification or the inputs do not fit \
together (TXID gap, page sizes, checksums); 2 usage or I/O error.

Inputs of format versions 1 and 2 (LiteFS, Litestream before v0.5) are
detected (or forced with --format-version) and may be mixed with v3 inputs. The
output is always format version 3: pages of v1/v2 inputs are decompressed and
re-encoded as v3 block frames. From the inputs' headers the output takes the
page size, min TXID and pre-apply checksum (first input), max TXID, commit,
timestamp and post-apply checksum (last input); node ID and WAL fields are 0,
the flags are 0 or NoChecksum (the v1 LZ4 flag has no v3 meaning); the file
checksum is computed anew. With v1/v2 inputs the output is assembled in memory.

Examples:
  ltx compact -o replica/ltx/1/ replica/ltx/0/
  ltx compact --no-checksum -o 0000000000000001-0000000000000064.ltx L0/*.ltx

Checksums (--checksum auto, the default): an output inside a replica layout
follows that replica's newest file (Litestream's are NoChecksum, and its
restore refuses a file with a post-apply checksum); else any NoChecksum input
makes the output NoChecksum; else checksums are tracked. --checksum track or
none (--no-checksum) forces it."
)]
pub struct Args {
    /// Output file, or an existing directory to write `<min>-<max>.ltx` into.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Input LTX files (directories stand for their `*.ltx` files); merged in TXID order.
    #[arg(required = true, value_name = "FILES")]
    pub files: Vec<PathBuf>,
    /// `--checksum` / `--no-checksum`: whether the output tracks checksums.
    #[command(flatten)]
    pub checksum: crate::convention::ChecksumArg,
    /// Accept TXID gaps between inputs (when the missing range is known to be empty).
    #[arg(long)]
    pub allow_gaps: bool,
    /// `--format-version`: read the inputs as this LTX format version.
    #[command(flatten)]
    pub version: VersionArg,
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let paths: Vec<PathBuf> = crate::input::expand(&args.files)?
        .into_iter()
        .map(|l| l.path)
        .collect();
    // Any NoChecksum input (a header read; an unreadable input is reported
    // by the merge below).
    let any_no_checksum = paths.iter().any(|p| {
        use std::io::Read;
        let mut b = [0u8; ltx_core::header::HEADER_SIZE];
        std::fs::File::open(p)
            .and_then(|mut f| f.read_exact(&mut b))
            .ok()
            .and_then(|()| Header::decode_unvalidated(&b).ok())
            .is_some_and(|h| h.flags & HEADER_FLAG_NO_CHECKSUM != 0)
    });
    let probe = if args.output.is_dir() {
        args.output.join(format_filename(TxId(1), TxId(1)))
    } else {
        args.output.clone()
    };
    let decision = args.checksum.decide(&probe, any_no_checksum);
    if let Some(r) = &decision.reason {
        eprintln!("ltx: {r}");
    }
    let opts = MergeOptions {
        flags: if decision.no_checksum {
            HEADER_FLAG_NO_CHECKSUM
        } else {
            0
        },
        allow_gaps: args.allow_gaps,
    };
    let (dest, w, inputs) = compact_with(&paths, &args.output, &opts, args.version.forced())?;
    writeln!(
        out,
        "wrote {}: TXID {}-{} from {} files, {} pages, commit {}, flags 0x{:08x}, timestamp {}, {} bytes, pre-apply {}, post-apply {}, file checksum {}",
        dest.display(),
        w.header.min_txid,
        w.header.max_txid,
        inputs,
        w.pages,
        w.header.commit,
        w.header.flags,
        crate::output::rfc3339_ms(w.header.timestamp),
        w.bytes,
        w.header.pre_apply_checksum,
        w.trailer.post_apply_checksum,
        w.trailer.file_checksum
    )?;
    Ok(())
}

/// Verifies and merges the LTX files at `paths` (sorted by their headers'
/// TXIDs) into `output` (a file, or a directory to write
/// `<min>-<max>.ltx` into). Returns the output path, what was written and
/// the number of inputs.
///
/// # Errors
/// [`Failed`] (already reported on standard error) when an input fails
/// verification or the inputs do not fit together; I/O errors. The output
/// is not created on error.
#[allow(dead_code)] // shared API (the CLI calls compact_with)
pub fn compact(
    paths: &[PathBuf],
    output: &Path,
    opts: &MergeOptions,
) -> Result<(PathBuf, Written, usize)> {
    compact_with(paths, output, opts, None)
}

/// As [`compact`]; `forced` reads every input as that format version (else
/// each input's version is detected). Any v1 or v2 input sends the merge
/// through [`merge_any`] (pages decompressed and re-encoded as v3 blocks).
///
/// # Errors
/// As [`compact`].
pub fn compact_with(
    paths: &[PathBuf],
    output: &Path,
    opts: &MergeOptions,
    forced: Option<FormatVersion>,
) -> Result<(PathBuf, Written, usize)> {
    if paths.is_empty() {
        anyhow::bail!("no LTX files to compact");
    }
    let sources: Vec<Source> = paths
        .iter()
        .map(|p| crate::input::open(p))
        .collect::<Result<_>>()?;
    let mut versions = Vec::with_capacity(sources.len());
    for (p, s) in paths.iter().zip(&sources) {
        if let Some((v, r)) = crate::version::old_version(s, forced) {
            if let Err(e) = r {
                eprintln!(
                    "ltx: compact: {}: verification failed: {e} (read as format {v})",
                    p.display()
                );
                return Err(Failed.into());
            }
            versions.push(v);
            continue;
        }
        if let Err(e) = crate::check::verify_bytes(s) {
            let msg = match crate::version::detect(s, forced) {
                Ok(d) if d.verdict.is_err() => d.error_message().unwrap_or_else(|| e.to_string()),
                _ => e.to_string(),
            };
            eprintln!("ltx: compact: {}: verification failed: {msg}", p.display());
            return Err(Failed.into());
        }
        versions.push(FormatVersion::V3);
    }
    if versions.iter().any(|&v| v != FormatVersion::V3) {
        return compact_any(paths, &sources, &versions, output, opts);
    }
    let mut files: Vec<(&PathBuf, LtxFile<'_>)> = paths
        .iter()
        .zip(&sources)
        .map(|(p, s)| {
            LtxFile::parse(s)
                .map(|f| (p, f))
                .map_err(|e| anyhow!("{}: {e}", p.display()))
        })
        .collect::<Result<_>>()?;
    files.sort_by_key(|(_, f)| (f.header().min_txid, f.header().max_txid));
    let metas: Vec<MergeInput> = files
        .iter()
        .map(|(_, f)| MergeInput::from_file(f))
        .collect();
    let plan = match plan_merge(&metas, opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "ltx: compact: {}",
                merge_message(&e, |i| files[i].0.display().to_string())
            );
            return Err(Failed.into());
        }
    };
    let dest = if output.is_dir() {
        output.join(format_filename(plan.header.min_txid, plan.header.max_txid))
    } else {
        output.to_path_buf()
    };
    let inputs: Vec<LtxFile<'_>> = files.into_iter().map(|(_, f)| f).collect();
    let tmp = TempFile::beside(&dest, "compact")?;
    // Unbuffered: every write is a whole batch of frames.
    let mut w = tmp.file();
    let written = write_merge(&plan, &inputs, &mut w)
        .with_context(|| format!("{}: cannot write", dest.display()))?;
    tmp.commit(&dest)?;
    Ok((dest, written, inputs.len()))
}

/// Compacts inputs of any format version (already verified) with
/// [`merge_any`], in memory.
fn compact_any(
    paths: &[PathBuf],
    sources: &[Source],
    versions: &[FormatVersion],
    output: &Path,
    opts: &MergeOptions,
) -> Result<(PathBuf, Written, usize)> {
    let mut ins: Vec<(&PathBuf, &[u8], FormatVersion, Header)> = Vec::new();
    for ((p, s), &v) in paths.iter().zip(sources).zip(versions) {
        let h = Header::decode_as(s, v).map_err(|e| anyhow!("{}: {e}", p.display()))?;
        ins.push((p, &s[..], v, h));
    }
    ins.sort_by_key(|(_, _, _, h)| (h.min_txid, h.max_txid));
    let list: Vec<(&[u8], FormatVersion)> = ins.iter().map(|(_, b, v, _)| (*b, *v)).collect();
    let mut out = Vec::new();
    if let Err(e) = merge_any(&list, opts, &mut out) {
        eprintln!(
            "ltx: compact: {}",
            merge_message(&e, |i| ins[i].0.display().to_string())
        );
        return Err(Failed.into());
    }
    let f = LtxFile::parse(&out).context("internal error: the merged output does not parse")?;
    let written = Written {
        header: *f.header(),
        trailer: *f.trailer(),
        pages: f.index().len() as u64,
        bytes: out.len() as u64,
    };
    let dest = if output.is_dir() {
        output.join(format_filename(
            written.header.min_txid,
            written.header.max_txid,
        ))
    } else {
        output.to_path_buf()
    };
    let tmp = TempFile::beside(&dest, "compact")?;
    tmp.file()
        .write_all(&out)
        .with_context(|| format!("{}: cannot write", dest.display()))?;
    tmp.commit(&dest)?;
    Ok((dest, written, ins.len()))
}

/// The message for an error of `plan_merge` or `merge_any`, with each input
/// named by `name` (its path) rather than by its position, and the flag that
/// gets past a NoChecksum input.
fn merge_message(e: &ltx_core::Error, name: impl Fn(usize) -> String) -> String {
    match e.kind() {
        ErrorKind::Merge(MergeError::NoChecksumInput { input, last }) => format!(
            "cannot merge: output tracks checksums but the {} input, {}, has none (pass --checksum none)",
            if *last { "last" } else { "first" },
            name(*input)
        ),
        ErrorKind::Merge(m) => format!("cannot merge: {}", m.describe(name)),
        ErrorKind::MergeInput { input, error } => {
            format!("cannot merge: {}: {error}", name(*input))
        }
        _ => e.to_string(),
    }
}

type Prepared = Vec<ltx_core::Result<PreparedFrame>>;

fn prepare(plan: &MergePlan, inputs: &[LtxFile<'_>], batch: &[PlannedFrame]) -> Prepared {
    let ps = plan.header.page_size.bytes();
    batch
        .par_iter()
        .with_min_len(32)
        .map_init(
            || vec![0u8; ps],
            |page, f| prepare_frame(plan, f, inputs[f.input].frame(&f.entry), page),
        )
        .collect()
}

fn emit<W: Write + ?Sized>(
    plan: &MergePlan,
    inputs: &[LtxFile<'_>],
    batch: &[PlannedFrame],
    prepared: Prepared,
    enc: &mut Encoder,
    out: &mut Vec<u8>,
    w: &mut W,
) -> Result<()> {
    for (f, p) in batch.iter().zip(prepared) {
        let p = p?;
        plan.write_frame(enc, out, inputs[f.input].frame(&f.entry), &p)?;
    }
    w.write_all(out)?;
    out.clear();
    Ok(())
}

/// Writes the merged file to `w`, preparing one batch of frames in parallel
/// while the previous one is written.
///
/// # Errors
/// Frame errors in the inputs; encoder rules; write errors.
pub fn write_merge<W: Write + Send + ?Sized>(
    plan: &MergePlan,
    inputs: &[LtxFile<'_>],
    w: &mut W,
) -> Result<Written> {
    let mut out = Vec::new();
    let mut enc = plan.encoder(&mut out)?;
    let bar = crate::progress::pages(plan.frames.len() as u64, "compacting");
    let mut pending: Option<(&[PlannedFrame], Prepared)> = None;
    for batch in plan.frames.chunks(BATCH_PAGES) {
        let (next, r) = rayon::join(
            || prepare(plan, inputs, batch),
            || match pending.take() {
                Some((b, p)) => {
                    let n = b.len() as u64;
                    emit(plan, inputs, b, p, &mut enc, &mut out, w).map(|()| bar.inc(n))
                }
                None => Ok(()),
            },
        );
        r?;
        pending = Some((batch, next));
    }
    if let Some((b, p)) = pending.take() {
        emit(plan, inputs, b, p, &mut enc, &mut out, w)?;
    }
    bar.finish_and_clear();
    let bytes = enc.bytes_written();
    let trailer = enc.finish(&mut out, plan.post_apply)?;
    let bytes = bytes + out.len() as u64;
    w.write_all(&out)?;
    Ok(Written {
        header: plan.header,
        trailer,
        pages: plan.frames.len() as u64,
        bytes,
    })
}
