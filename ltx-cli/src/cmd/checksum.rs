//! `ltx checksum`: the rolling LTX checksum of a SQLite database file,
//! computed in parallel over a memory map.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use ltx_core::checksum::{page_checksum, DbChecksum};
use ltx_core::{Checksum, PageSize, Pgno};
use rayon::prelude::*;
use serde::Serialize;

use crate::db::{self, DbImage};
use crate::output::{self, hex16};

/// Pages per parallel task (1 MiB at 4 KiB pages).
const PAGES_PER_TASK: usize = 256;

/// Arguments of `ltx checksum`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
The checksum is what LTX files store as pre-/post-apply checksums: the XOR of
CRC-64/ISO(pgno ‖ page) over every page except the lock page, with bit 63
set; an empty (zero-length) database gives 0000000000000000. The page size is
read from the SQLite header (bytes 16..18).

Only the main database file is read: changes still in a `-wal` file are not
included (a warning says so when the WAL holds frames).

Examples:
  ltx checksum app.db
  ltx checksum --pages app.db | sort -k2 | uniq -d -f1
  ltx checksum --json app.db")]
pub struct Args {
    /// SQLite database file.
    pub db: PathBuf,
    /// Also print every page's checksum (`pgno checksum`; the lock page is left out).
    #[arg(long)]
    pub pages: bool,
    /// Print JSON: path, page_size, pages, checksum (and page_checksums with --pages).
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub fn run(args: Args, out: &mut dyn Write) -> Result<()> {
    let img = DbImage::open(&args.db, false)?;
    let wal = db::side_file(&args.db, "-wal");
    if let Ok(m) = std::fs::metadata(&wal) {
        if m.len() > db::WAL_HEADER_SIZE {
            eprintln!(
                "ltx: warning: {} holds {} bytes of WAL frames that are not in {} and not in this checksum",
                wal.display(),
                m.len() - db::WAL_HEADER_SIZE,
                args.db.display()
            );
        }
    }
    let n_pages = img.page_count();
    let (sum, per_page) = match img.page_size {
        None => (Checksum(0), Vec::new()),
        Some(ps) => compute(&img.data, ps, args.pages),
    };

    if args.json {
        output::write_json(
            out,
            &ChecksumJson {
                path: args.db.display().to_string(),
                page_size: img.page_size.map(|p| p.get()),
                pages: n_pages,
                checksum: sum.to_string(),
                page_checksums: args.pages.then(|| {
                    per_page
                        .iter()
                        .map(|&(pgno, c)| PageChecksumJson {
                            pgno,
                            checksum: hex16(c.0),
                        })
                        .collect()
                }),
            },
        )?;
    } else {
        if args.pages {
            for (p, c) in &per_page {
                writeln!(out, "{p} {c}")?;
            }
        }
        writeln!(out, "{sum}")?;
    }
    Ok(())
}

/// `ltx checksum --json`.
#[derive(Serialize)]
struct ChecksumJson {
    path: String,
    page_size: Option<u32>,
    pages: u32,
    checksum: String,
    /// With `--pages` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    page_checksums: Option<Vec<PageChecksumJson>>,
}

#[derive(Serialize)]
struct PageChecksumJson {
    pgno: Pgno,
    checksum: String,
}

/// The database checksum and, when `per_page`, each page's checksum.
fn compute(data: &[u8], ps: PageSize, per_page: bool) -> (Checksum, Vec<(Pgno, Checksum)>) {
    let chunk = ps.bytes() * PAGES_PER_TASK;
    let pb = output::progress(data.len() >= 1 << 30, Some(data.len() as u64), "checksum");
    let lock = ps.lock_pgno();
    let parts: Vec<(DbChecksum, Vec<(Pgno, Checksum)>)> = data
        .par_chunks(chunk)
        .enumerate()
        .map(|(i, c)| {
            let mut sum = DbChecksum::new(ps);
            let mut pages = Vec::new();
            let first = (i * PAGES_PER_TASK) as Pgno + 1;
            for (j, page) in c.chunks(ps.bytes()).enumerate() {
                let pgno = first + j as Pgno;
                if pgno == lock {
                    continue;
                }
                let pc = page_checksum(pgno, page);
                sum.add_checksum(pc);
                if per_page {
                    pages.push((pgno, pc));
                }
            }
            pb.inc(c.len() as u64);
            (sum, pages)
        })
        .collect();
    pb.finish_and_clear();
    let mut total = DbChecksum::new(ps);
    let mut all = Vec::new();
    for (s, p) in parts {
        total.merge(&s);
        all.extend(p);
    }
    (total.value(), all)
}
