//! `ltx page`: one page, found through the page index and decoded without
//! reading the rest of the file; or, from a bucket or replica directory,
//! one page as of a TXID or time without building the database
//! ([`ltx_compactor::pages::find_page`]: the newest planned file holding
//! the page, one frame read).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ltx_core::checksum::{crc64, page_checksum};
use ltx_core::{LtxFile, PageInfo, Pgno, TxId};
use serde::Serialize;

use crate::check::{Event, Streamer};
use crate::cmd::dump::describe_pages;
use crate::input;
use crate::output;

/// Arguments of `ltx page`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
The page is located through the page index at the end of the file and only
its frame is decompressed. If the index is damaged, the frames are scanned
from the start instead (a warning says so). From standard input (`-`) the
frames are decoded in order until the page is found.

From a bucket (s3://bucket/prefix, gs://, az://, file:///dir) or a replica
directory: the page as of --txid, --timestamp (the latest transaction at or
before that time) or the latest state, from the newest file at or before the
target that holds it, found by walking the restore plan's files newest first
(headers and page indexes by ranged reads) and reading that one frame; no
database is built. A page beyond the database size at the target, page 0 and
the lock page are errors (exit 2). With --json, `path` is the object's location
and `key`, `level`, `txid`, `timestamp`, `commit` and `bytes_read` are added.

Examples:
  ltx page FILE.ltx 1                    # hexdump of page 1
  ltx page FILE.ltx 1 -o page1.bin       # raw bytes to a file
  ltx page FILE.ltx 1 --raw | sqlite3-page-decoder
  ltx page --json FILE.ltx 7
  ltx page s3://backups/app.db 1 --txid 000000000000002a
  ltx page /backups/app.db 5 --timestamp 2026-11-22T14:05:00Z -o page5.bin")]
pub struct Args {
    /// LTX file (`-` reads standard input), or a bucket URL or replica directory.
    pub file: PathBuf,
    /// Page number.
    pub pgno: Pgno,
    /// From a bucket: the page as of exactly this transaction (16 hex
    /// digits, 0x-prefixed hex, or decimal).
    #[arg(long, conflicts_with = "timestamp", value_parser = crate::args::parse_txid)]
    pub txid: Option<TxId>,
    /// From a bucket: the page as of the latest transaction at or before
    /// this time (RFC 3339).
    #[arg(long, value_parser = crate::args::parse_time)]
    pub timestamp: Option<i64>,
    /// Write the raw page bytes to this file.
    #[arg(short, long, value_name = "OUT")]
    pub output: Option<PathBuf>,
    /// Write the raw page bytes to standard output instead of a hexdump.
    #[arg(long, conflicts_with = "json")]
    pub raw: bool,
    /// Print the page's metadata as JSON instead of a hexdump.
    #[arg(long)]
    pub json: bool,
    /// In the hexdump, print runs of all-zero lines instead of one `*`.
    #[arg(long)]
    pub no_squeeze: bool,
}

struct Found {
    info: PageInfo,
    data: Vec<u8>,
    page_size: u32,
    /// From a bucket: where and as of when.
    remote: Option<RemoteJson>,
}

/// The fields `ltx page URL --json` adds.
#[derive(Serialize)]
struct RemoteJson {
    key: String,
    level: u8,
    txid: String,
    timestamp: String,
    commit: u32,
    bytes_read: u64,
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let mut name = args.file.display().to_string();
    let found = if crate::pitr::is_bucket(&args.file) {
        let (location, f) = find_remote(&args)?;
        name = location;
        f
    } else if args.txid.is_some() || args.timestamp.is_some() {
        anyhow::bail!(
            "{name}: --txid and --timestamp need a bucket URL or replica directory, not an LTX file"
        );
    } else if input::is_stdin(&args.file) {
        find_streaming(None, &name, args.pgno)?
    } else {
        let bytes = input::open(&args.file)?;
        match LtxFile::parse(&bytes) {
            Ok(f) => find_indexed(&f, &name, args.pgno)?,
            Err(e) => {
                eprintln!(
                    "ltx: warning: {name}: cannot use the page index ({e}); scanning the frames from the start"
                );
                find_streaming(Some(&bytes), &name, args.pgno)?
            }
        }
    };
    let Found {
        info,
        data,
        page_size,
        remote,
    } = found;

    if let Some(path) = &args.output {
        write_file(out, path, &data)?;
        eprintln!(
            "ltx: wrote page {} ({} bytes) to {}",
            info.pgno,
            data.len(),
            path.display()
        );
    }
    if args.json {
        output::write_json(
            out,
            &PageJson {
                path: name,
                pgno: info.pgno,
                page_size,
                flags: info.flags,
                encoding: output::page_encoding(info.flags),
                frame_offset: info.offset,
                frame_size: info.frame_len,
                ratio: output::ratio_json(page_size, info.frame_len),
                crc64: output::hex16(crc64(&data)),
                page_checksum: page_checksum(info.pgno, &data).to_string(),
                first_bytes_hex: output::hex(&data[..data.len().min(16)]),
                output: args.output.as_ref().map(|p| p.display().to_string()),
                remote,
            },
        )?;
    } else if args.raw {
        out.write_all(&data)?;
    } else if args.output.is_none() {
        output::hexdump(out, &data, !args.no_squeeze)?;
    }
    Ok(())
}

/// `ltx page --json`.
#[derive(Serialize)]
struct PageJson {
    path: String,
    pgno: Pgno,
    page_size: u32,
    flags: u16,
    encoding: &'static str,
    frame_offset: u64,
    frame_size: u64,
    ratio: f64,
    crc64: String,
    page_checksum: String,
    first_bytes_hex: String,
    output: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    remote: Option<RemoteJson>,
}

/// The page from a bucket: its file's location (for `path`) and the page.
fn find_remote(args: &Args) -> Result<(String, Found)> {
    let url = args.file.display().to_string();
    let rt = crate::remote::runtime()?;
    let target = crate::pitr::target(args.txid, args.timestamp);
    let p = crate::pitr::plan(&rt, &url, target)?;
    let opts = crate::pitr::query_read_options();
    let f = match rt.block_on(ltx_compactor::pages::find_page(
        &p.bucket, &p.plan, args.pgno, &opts,
    )) {
        Ok(f) => f,
        Err(e) if matches!(e.root(), ltx_compactor::Error::Usage(_)) => return Err(e.into()),
        Err(e) => {
            eprintln!("ltx: error: {e:#}");
            return Err(crate::Failed.into());
        }
    };
    let found = Found {
        info: PageInfo {
            pgno: f.pgno,
            flags: f.flags,
            offset: f.entry.offset,
            frame_len: f.entry.size,
        },
        page_size: f.page_size.get(),
        remote: Some(RemoteJson {
            key: f.key.clone(),
            level: f.level,
            txid: p.plan.txid.to_string(),
            timestamp: ltx_compactor::fetch::rfc3339(f.timestamp_ms),
            commit: f.commit,
            bytes_read: f.bytes_read,
        }),
        data: f.data,
    };
    Ok((p.bucket.location(&f.key), found))
}

/// Writes the page to `path`, or to `out` for `-o -`.
fn write_file(out: &mut dyn Write, path: &Path, data: &[u8]) -> Result<()> {
    if input::is_stdin(path) {
        out.write_all(data)?;
        return out.flush().context("writing standard output");
    }
    std::fs::write(path, data).with_context(|| format!("{}: cannot write", path.display()))
}

fn not_found(name: &str, pgno: Pgno, pgnos: &[Pgno]) -> anyhow::Error {
    eprintln!(
        "ltx: {name}: page {pgno} is not in this file; {}",
        describe_pages(pgnos)
    );
    crate::Failed.into()
}

fn find_indexed(f: &LtxFile<'_>, name: &str, pgno: Pgno) -> Result<Found> {
    let ps = f.header().page_size;
    let Some(e) = f.index().get(pgno).copied() else {
        let pgnos: Vec<Pgno> = f.index().entries().iter().map(|e| e.pgno).collect();
        return Err(not_found(name, pgno, &pgnos));
    };
    let mut data = vec![0u8; ps.bytes()];
    if let Err(err) = f.read_page(pgno, &mut data) {
        eprintln!("ltx: {name}: {err}");
        return Err(crate::Failed.into());
    }
    let frame = f.frame(&e);
    let flags = u16::from_be_bytes([frame[4], frame[5]]);
    Ok(Found {
        info: PageInfo {
            pgno,
            flags,
            offset: e.offset,
            frame_len: e.size,
        },
        data,
        page_size: ps.get(),
        remote: None,
    })
}

/// Decodes frames in order until `pgno` appears (from `bytes`, or standard
/// input when `None`).
fn find_streaming(bytes: Option<&[u8]>, name: &str, pgno: Pgno) -> Result<Found> {
    let mut st = Streamer::new();
    let mut found: Option<Found> = None;
    let mut seen: Vec<Pgno> = Vec::new();
    let mut page_size = 0u32;
    const STOP: &str = "found";
    let mut on = |e: Event<'_>| -> Result<()> {
        match e {
            Event::Header(h) => page_size = h.page_size.get(),
            Event::Page(info, data) => {
                seen.push(info.pgno);
                if info.pgno == pgno {
                    found = Some(Found {
                        info,
                        data: data.to_vec(),
                        page_size,
                        remote: None,
                    });
                    anyhow::bail!(STOP);
                }
            }
        }
        Ok(())
    };
    let r = match bytes {
        Some(b) => st.run_slice(b, 1 << 20, &mut on, &|_| {}),
        None => st.run(
            &mut std::io::stdin().lock(),
            "standard input",
            &mut on,
            &|_| {},
        ),
    };
    match r {
        Err(e) if e.to_string() == STOP => {}
        Err(e) => return Err(e),
        Ok(Err(e)) => {
            eprintln!("ltx: {name}: {e}");
            eprintln!(
                "ltx: {name}: page {pgno} was not found before the damage; {}",
                describe_pages(&seen)
            );
            return Err(crate::Failed.into());
        }
        Ok(Ok(_)) => {}
    }
    found.ok_or_else(|| not_found(name, pgno, &seen))
}
