//! `ltx page`: one page, found through the page index and decoded without
//! reading the rest of the file.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ltx_core::checksum::{crc64, page_checksum};
use ltx_core::{LtxFile, PageInfo, Pgno};
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

Examples:
  ltx page FILE.ltx 1                    # hexdump of page 1
  ltx page FILE.ltx 1 -o page1.bin       # raw bytes to a file
  ltx page FILE.ltx 1 --raw | sqlite3-page-decoder
  ltx page --json FILE.ltx 7")]
pub struct Args {
    /// LTX file (`-` reads standard input).
    pub file: PathBuf,
    /// Page number.
    pub pgno: Pgno,
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
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let name = args.file.display().to_string();
    let found = if input::is_stdin(&args.file) {
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
