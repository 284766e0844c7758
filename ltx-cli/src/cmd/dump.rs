//! `ltx dump`: everything in one file, decoded with the streaming decoder so
//! that a damaged file shows all that is readable before the damage.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use ltx_core::file::{parse_tail, TAIL_SIZE};
use ltx_core::header::TRAILER_SIZE;
use ltx_core::{IndexEntry, PageIndex, Summary, Trailer};
use serde::Serialize;

use crate::check::{Event, Streamer};
use crate::input;
use crate::output::{self, error_json, ErrorJson, HeaderJson, RawHeader};
use crate::version::{self, VersionArg};
use ltx_core::old::v1::V1_FLAG_LZ4;
use ltx_core::FormatVersion;

/// Arguments of `ltx dump`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Decodes the whole file with the streaming decoder and verifies it. On a damaged
file everything decoded before the damage is printed, then the error (with its
byte offset) goes to standard error and the exit code is 1.

Format versions 1 (LiteFS, Litestream before v0.5) and 2 are detected
automatically (the layout that validates is used; `version:` shows it) or forced
with --format-version. v1 has no page index; in a v1 file with an LZ4-compressed
page block, page offsets are offsets inside the decompressed page block.
Standard input is read into memory for detection unless --format-version is
given (then it streams).

Examples:
  ltx dump 0000000000000001-0000000000000064.ltx
  ltx dump --page 1 --hexdump FILE.ltx
  ltx dump --json FILE.ltx | jq .header
  aws s3 cp s3://bucket/db/0000/0000000000000001-0000000000000064.ltx - | ltx dump -")]
pub struct Args {
    /// LTX file to dump (`-` reads standard input, streaming).
    pub file: PathBuf,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Show only page PGNO in the page list and page index (exit 1 if the file
    /// does not hold it).
    #[arg(long, value_name = "PGNO")]
    pub page: Option<u32>,
    /// Hexdump the decompressed content of the selected page (every page
    /// without --page). In JSON: a `data_hex` string per page.
    #[arg(long)]
    pub hexdump: bool,
    /// In hexdumps, print runs of all-zero lines instead of one `*`.
    #[arg(long)]
    pub no_squeeze: bool,
    /// Header, trailer and totals only: no page list, no page index.
    #[arg(long, conflicts_with = "page")]
    pub summary: bool,
    /// `--format-version`: read the inputs as this LTX format version.
    #[command(flatten)]
    pub version: VersionArg,
}

/// Fixed-width columns, so that rows can be printed as pages are decoded.
fn page_cols() -> String {
    format!(
        "  {:>8}  {:<6}  {:<12}  {:>12}  {:>10}",
        "PGNO", "FLAGS", "ENCODING", "OFFSET", "FRAME_SIZE"
    )
}

fn index_cols() -> String {
    format!(
        "  {:>8}  {:>12}  {:>10}  {:>6}",
        "PGNO", "OFFSET", "FRAME_SIZE", "RATIO"
    )
}

struct Dump<'w> {
    args: Args,
    out: &'w mut dyn Write,
    /// Pages seen, and the selected page found.
    pages: u64,
    found: bool,
    page_size: u32,
    header_printed: bool,
    pages_json: Vec<PageJson>,
    version: FormatVersion,
    lz4_stream: bool,
}

impl Dump<'_> {
    fn selected(&self, pgno: u32) -> bool {
        !self.args.summary && self.args.page.is_none_or(|p| p == pgno)
    }

    fn on_event(&mut self, ev: Event<'_>) -> Result<()> {
        match ev {
            Event::Header(h) => {
                self.page_size = h.page_size.get();
                self.lz4_stream = self.version == FormatVersion::V1 && h.flags & V1_FLAG_LZ4 != 0;
                self.header_printed = true;
                if !self.args.json {
                    writeln!(self.out, "header:")?;
                    RawHeader::from_header(&h).write_text(self.out, "  ")?;
                    if !self.args.summary {
                        writeln!(self.out, "pages:")?;
                        writeln!(self.out, "{}", page_cols())?;
                    }
                }
            }
            Event::Page(info, data) => {
                self.pages += 1;
                if !self.selected(info.pgno) {
                    return Ok(());
                }
                self.found = true;
                let enc = match self.version {
                    FormatVersion::V3 => output::page_encoding(info.flags),
                    FormatVersion::V2 => "lz4-frame",
                    FormatVersion::V1 if self.lz4_stream => "lz4-stream",
                    FormatVersion::V1 => "raw",
                };
                if self.args.json {
                    let v = PageJson {
                        pgno: info.pgno,
                        flags: info.flags,
                        encoding: enc,
                        frame_offset: (!self.lz4_stream).then_some(info.offset),
                        stream_offset: self.lz4_stream.then_some(info.offset),
                        frame_size: info.frame_len,
                        ratio: output::ratio_json(self.page_size, info.frame_len),
                        data_hex: self.args.hexdump.then(|| output::hex(data)),
                    };
                    self.pages_json.push(v);
                } else {
                    writeln!(
                        self.out,
                        "  {:>8}  0x{:04x}  {:<12}  {:>12}  {:>10}",
                        info.pgno, info.flags, enc, info.offset, info.frame_len
                    )?;
                    if self.args.hexdump {
                        output::hexdump(self.out, data, !self.args.no_squeeze)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// The input, read (or about to be streamed) and its format version known.
struct Input {
    name: String,
    /// The bytes; `None` when standard input streams (a forced version).
    source: Option<input::Source>,
    detected: Option<version::Detected>,
    version: FormatVersion,
    /// `forced`, `likeliest` (no version validates) or `detected`.
    version_source: &'static str,
    /// The file's size (`None` for standard input).
    file_len: Option<u64>,
}

impl Input {
    fn open(args: &Args) -> Result<Input> {
        let path = &args.file;
        let name = path.display().to_string();
        let stdin = input::is_stdin(path);
        let forced = args.version.forced();
        let source = if stdin && forced.is_none() {
            Some(input::read_stdin()?)
        } else if stdin {
            None
        } else {
            Some(input::open(path)?)
        };
        let detected = match &source {
            Some(bytes) => {
                Some(version::detect(bytes, forced).map_err(|e| anyhow::anyhow!("{name}: {e}"))?)
            }
            None => None,
        };
        let version = detected
            .as_ref()
            .map(|d| d.version)
            .or(forced)
            .unwrap_or(FormatVersion::V3);
        let version_source = match &detected {
            _ if forced.is_some() => "forced",
            Some(d) if d.none.is_some() => "likeliest",
            _ => "detected",
        };
        let file_len = if stdin {
            None
        } else {
            source.as_ref().map(|s| s.len() as u64)
        };
        Ok(Input {
            name,
            source,
            detected,
            version,
            version_source,
            file_len,
        })
    }

    /// The text form's first lines: file, version, size.
    fn write_preamble(&self, out: &mut dyn Write) -> Result<()> {
        writeln!(out, "file: {}", self.name)?;
        let n = self.version.number();
        match self.version_source {
            "forced" => writeln!(out, "version: {n} (forced with --format-version)")?,
            "likeliest" => writeln!(
                out,
                "version: {n} (likeliest layout; no format version validates this file)"
            )?,
            _ => writeln!(out, "version: {n}")?,
        }
        if let Some(n) = self.file_len {
            writeln!(out, "size: {n} bytes")?;
        }
        Ok(())
    }
}

/// What decoding found, for the printers.
struct Report<'a> {
    input: &'a Input,
    /// `--summary`: no page list, no page index.
    summary_only: bool,
    selected_page: Option<u32>,
    /// Present when everything up to the trailer verified (trailing bytes
    /// still fail the file).
    summary: Option<Summary>,
    error: Option<ltx_core::Error>,
    raw_header: Option<RawHeader>,
    /// Bytes of the header read (of 100).
    head_len: usize,
    total_len: u64,
    /// The page index the decoder matched against the frames.
    verified_index: Option<(u64, &'a [IndexEntry])>,
    /// The page index as stored at the end of a damaged local file.
    stored_index: Option<Result<(u64, PageIndex), String>>,
    /// The last 16 bytes of a damaged file, when an index precedes them.
    stored_trailer: Option<Trailer>,
    pages: u64,
    page_size: u32,
    header_valid: bool,
    lz4_stream: bool,
    /// `--page N` on a file that verified but lacks page N.
    missing_page: bool,
}

impl Report<'_> {
    fn keep(&self, pgno: u32) -> bool {
        !self.summary_only && self.selected_page.is_none_or(|p| p == pgno)
    }
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let input = Input::open(&args)?;
    let json = args.json;
    if !json {
        input.write_preamble(out)?;
    }

    // Text on a terminal shows its own progress; small files need no bar.
    let show = (json || !output::stdout_is_tty()) && input.file_len.is_none_or(|n| n >= 32 << 20);
    let pb = output::progress(show, input.file_len, "dump");
    let mut d = Dump {
        args,
        out,
        pages: 0,
        found: false,
        page_size: 0,
        header_printed: false,
        pages_json: Vec::new(),
        version: input.version,
        lz4_stream: false,
    };
    let mut st = Streamer::with_version(input.version);
    let tick = |n: u64| pb.inc(n);
    let result = match &input.source {
        Some(bytes) => st.run_slice(bytes, 1 << 20, &mut |e| d.on_event(e), &tick)?,
        None => st.run(
            &mut std::io::stdin().lock(),
            "standard input",
            &mut |e| d.on_event(e),
            &tick,
        )?,
    };
    pb.finish_and_clear();
    let report = report(&input, &st, result, &d);
    let Dump {
        out, pages_json, ..
    } = d;
    if json {
        write_json(out, &report, pages_json)?;
    } else {
        write_text(out, &report)?;
    }

    let name = &input.name;
    if let Some(e) = &report.error {
        out.flush().ok();
        match input.detected.as_ref().and_then(|d| d.none.as_ref()) {
            Some(none) => eprintln!("ltx: {name}: {e} [{none}]"),
            None => eprintln!("ltx: {name}: {e}"),
        }
        return Err(crate::Failed.into());
    }
    if report.missing_page {
        out.flush().ok();
        let pgnos: Vec<u32> = st.decoder().frames().iter().map(|e| e.pgno).collect();
        eprintln!(
            "ltx: {name}: page {} is not in this file; {}",
            report.selected_page.unwrap_or(0),
            describe_pages(&pgnos)
        );
        return Err(crate::Failed.into());
    }
    Ok(())
}

/// Gathers what the streaming decoder `st` found (`result` is its verdict,
/// `d` what the page callback saw) and what a damaged local file still
/// shows at its end.
fn report<'a>(
    input: &'a Input,
    st: &'a Streamer,
    result: Result<Summary, ltx_core::Error>,
    d: &Dump<'_>,
) -> Report<'a> {
    let fversion = input.version;
    let summary: Option<Summary> = st.summary().copied();
    let raw_header = RawHeader::from_bytes(st.head());
    // The page index: verified (the decoder matched it against the frames),
    // or as stored at the end of a damaged local file.
    let verified_index = summary.map(|s| (s.index_size, st.decoder().frames()));
    let stored_index = match (&summary, &input.source) {
        _ if fversion == FormatVersion::V1 => None,
        (None, Some(bytes)) => Some(stored_index(bytes)),
        _ => None,
    };
    // Only believe the last 16 bytes are a trailer if an index precedes them.
    let stored_trailer = match (&summary, &input.source, &stored_index) {
        (None, Some(bytes), Some(Ok(_))) => Some(Trailer::from_bytes(
            bytes[bytes.len() - TRAILER_SIZE..].try_into().unwrap(),
        )),
        _ => None,
    };
    let page_size = if d.page_size != 0 {
        d.page_size
    } else {
        raw_header.map_or(0, |h| h.page_size)
    };
    Report {
        input,
        summary_only: d.args.summary,
        selected_page: d.args.page,
        summary,
        error: result.err(),
        raw_header,
        head_len: st.head().len(),
        total_len: input.file_len.unwrap_or(st.fed()),
        verified_index,
        stored_index,
        stored_trailer,
        pages: d.pages,
        page_size,
        header_valid: d.header_printed,
        lz4_stream: d.lz4_stream,
        missing_page: summary.is_some() && d.args.page.is_some() && !d.found,
    }
}

/// `ltx dump --json`: one object.
fn write_json(out: &mut dyn Write, r: &Report<'_>, pages_json: Vec<PageJson>) -> Result<()> {
    let fversion = r.input.version;
    let index_json = |size: u64, entries: &[IndexEntry], verified: bool| IndexJson::Entries {
        size,
        verified,
        entry_count: entries.len(),
        entries: entries
            .iter()
            .filter(|e| r.keep(e.pgno))
            .map(|e| IndexEntryJson {
                pgno: e.pgno,
                offset: e.offset,
                size: e.size,
                ratio: output::ratio_json(r.page_size, e.size),
            })
            .collect(),
    };
    let page_index = match (&r.verified_index, &r.stored_index) {
        _ if fversion == FormatVersion::V1 => None,
        (Some((size, entries)), _) => Some(index_json(*size, entries, true)),
        (None, Some(Ok((size, idx)))) => Some(index_json(*size, idx.entries(), false)),
        (None, Some(Err(e))) => Some(IndexJson::Unreadable {
            verified: false,
            unreadable: e.clone(),
        }),
        _ => None,
    };
    let trailer = match (&r.summary, &r.stored_trailer) {
        (Some(s), _) => Some(TrailerJson::of(&s.trailer, true)),
        (None, Some(t)) => Some(TrailerJson::of(t, false)),
        _ => None,
    };
    output::write_json(
        out,
        &DumpJson {
            path: r.input.name.clone(),
            format_version: fversion.number(),
            format_version_source: r.input.version_source,
            lz4_page_block: r.lz4_stream,
            file_size: r.total_len,
            header: r.raw_header.map(|h| h.to_json()),
            header_valid: r.header_valid,
            page_count: r.pages,
            page_index_size: r.summary.map(|s| s.index_size),
            page_index,
            trailer,
            computed_post_apply_checksum: r
                .summary
                .and_then(|s| s.computed_post_apply)
                .map(|c| c.to_string()),
            ok: r.error.is_none() && !r.missing_page,
            error: r.error.as_ref().map(error_json),
            pages: (!r.summary_only).then_some(pages_json),
        },
    )
}

/// The text form after the page list: an invalid header, the page index,
/// the trailer and the summary.
fn write_text(out: &mut dyn Write, r: &Report<'_>) -> Result<()> {
    if !r.header_valid {
        match r.raw_header {
            Some(h) => {
                writeln!(out, "header (INVALID, as stored):")?;
                h.write_text(out, "  ")?;
            }
            None => writeln!(out, "header: incomplete ({} of 100 bytes)", r.head_len)?,
        }
    } else if !r.summary_only {
        writeln!(
            out,
            "  ({} frame{})",
            r.pages,
            if r.pages == 1 { "" } else { "s" }
        )?;
    }
    if !r.summary_only {
        write_index_text(out, r)?;
    }
    match (&r.summary, &r.stored_trailer) {
        (Some(s), _) => {
            writeln!(out, "trailer:")?;
            writeln!(
                out,
                "  post_apply_checksum: {}",
                s.trailer.post_apply_checksum
            )?;
            writeln!(
                out,
                "  file_checksum: {} (verified)",
                s.trailer.file_checksum
            )?;
        }
        (None, Some(t)) => {
            writeln!(out, "trailer (last 16 bytes of the file, NOT verified):")?;
            writeln!(out, "  post_apply_checksum: {}", t.post_apply_checksum)?;
            writeln!(out, "  file_checksum: {}", t.file_checksum)?;
        }
        _ => writeln!(out, "trailer: not reached")?,
    }
    writeln!(out, "summary:")?;
    writeln!(out, "  file_size: {}", r.total_len)?;
    writeln!(out, "  page_count: {}", r.pages)?;
    if let Some(s) = &r.summary {
        writeln!(out, "  page_index_size: {}", s.index_size)?;
        if let Some(c) = s.computed_post_apply {
            writeln!(out, "  computed_post_apply_checksum: {c} (matches)")?;
        }
    }
    match &r.error {
        None => writeln!(
            out,
            "  result: ok (every frame decoded, file checksum verified)"
        )?,
        Some(e) => writeln!(
            out,
            "  result: FAILED ({}){}",
            e.category().unwrap_or("error"),
            match (e.offset(), e.pgno()) {
                (Some(o), Some(p)) => format!(" at byte offset {o}, page {p}"),
                (Some(o), None) => format!(" at byte offset {o}"),
                (None, Some(p)) => format!(" at page {p}"),
                (None, None) => String::new(),
            }
        )?,
    }
    Ok(())
}

/// The page index as a table (verified, or as stored in a damaged file).
fn write_index_text(out: &mut dyn Write, r: &Report<'_>) -> Result<()> {
    let mut index_table = |title: String, entries: &[IndexEntry]| -> Result<()> {
        writeln!(out, "{title}")?;
        writeln!(out, "{}", index_cols())?;
        for e in entries.iter().filter(|e| r.keep(e.pgno)) {
            writeln!(
                out,
                "  {:>8}  {:>12}  {:>10}  {:>6.2}",
                e.pgno,
                e.offset,
                e.size,
                output::ratio(r.page_size, e.size)
            )?;
        }
        Ok(())
    };
    match (&r.verified_index, &r.stored_index) {
        _ if r.input.version == FormatVersion::V1 => {
            writeln!(out, "page index: none (format version 1 has no page index)")?
        }
        (Some((size, entries)), _) => index_table(
            format!(
                "page index: {} entries, {size} bytes, matches the frames",
                entries.len()
            ),
            entries,
        )?,
        (None, Some(Ok((size, idx)))) => index_table(
            format!(
                "page index (as stored at the end of the file, NOT verified): {} entries, {size} bytes",
                idx.len()
            ),
            idx.entries(),
        )?,
        (None, Some(Err(e))) => writeln!(out, "page index: unreadable: {e}")?,
        _ => writeln!(out, "page index: not reached")?,
    }
    Ok(())
}

/// `ltx dump --json`.
#[derive(Serialize)]
struct DumpJson {
    path: String,
    format_version: u8,
    format_version_source: &'static str,
    lz4_page_block: bool,
    file_size: u64,
    header: Option<HeaderJson>,
    header_valid: bool,
    page_count: u64,
    page_index_size: Option<u64>,
    page_index: Option<IndexJson>,
    trailer: Option<TrailerJson>,
    computed_post_apply_checksum: Option<String>,
    ok: bool,
    error: Option<ErrorJson>,
    /// Without `--summary` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pages: Option<Vec<PageJson>>,
}

/// One page frame in `ltx dump --json`.
#[derive(Serialize)]
struct PageJson {
    pgno: u32,
    flags: u16,
    encoding: &'static str,
    /// The frame's offset in the file (every page block but v1's LZ4 stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    frame_offset: Option<u64>,
    /// The page's offset in a v1 LZ4-compressed page block, decompressed.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_offset: Option<u64>,
    frame_size: u64,
    ratio: f64,
    /// With `--hexdump` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    data_hex: Option<String>,
}

/// The page index in `ltx dump --json`.
#[derive(Serialize)]
#[serde(untagged)]
enum IndexJson {
    /// Verified against the frames, or as stored in a damaged file.
    Entries {
        size: u64,
        verified: bool,
        entry_count: usize,
        entries: Vec<IndexEntryJson>,
    },
    /// As stored, and unreadable.
    Unreadable { verified: bool, unreadable: String },
}

#[derive(Serialize)]
struct IndexEntryJson {
    pgno: u32,
    offset: u64,
    size: u64,
    ratio: f64,
}

/// The trailer in `ltx dump --json`.
#[derive(Serialize)]
struct TrailerJson {
    post_apply_checksum: String,
    file_checksum: String,
    verified: bool,
}

impl TrailerJson {
    fn of(t: &Trailer, verified: bool) -> TrailerJson {
        TrailerJson {
            post_apply_checksum: t.post_apply_checksum.to_string(),
            file_checksum: t.file_checksum.to_string(),
            verified,
        }
    }
}

/// `it has 11 pages: 1-2, 4-8, 11` / `it has no pages`.
pub fn describe_pages(pgnos: &[u32]) -> String {
    match (pgnos.first(), pgnos.last()) {
        (Some(a), Some(b)) => format!(
            "it has {} page{} in {a}..={b}: {}",
            pgnos.len(),
            if pgnos.len() == 1 { "" } else { "s" },
            output::ranges(pgnos, 12)
        ),
        _ => "it has no pages".to_string(),
    }
}

/// The page index as stored at the end of `bytes`, without checking it
/// against the frames.
fn stored_index(bytes: &[u8]) -> Result<(u64, PageIndex), String> {
    if bytes.len() < TAIL_SIZE {
        return Err(format!("the file is only {} bytes", bytes.len()));
    }
    let tail = parse_tail(
        bytes[bytes.len() - TAIL_SIZE..].try_into().unwrap(),
        bytes.len() as u64,
    )
    .map_err(|e| e.to_string())?;
    let r = tail.index_range.clone();
    let idx = PageIndex::decode(&bytes[r.start as usize..r.end as usize]).map_err(|e| {
        format!(
            "{e} (offsets relative to the index start at byte {})",
            r.start
        )
    })?;
    Ok((tail.index_size, idx))
}
